//! From a request's URL path to a relative file path, refusing every spelling of "outside".

use std::path::{Path, PathBuf};

use percent_encoding::percent_decode_str;

/// A URL path that is safe to join onto the root: decoded segments, none of them empty, `.`,
/// `..`, or holding a separator or NUL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UrlPath {
    /// The segments as the client spelled them (still percent-encoded), for redirects.
    raw: Vec<String>,
    /// The same segments decoded.
    segments: Vec<String>,
    /// Whether the path ends in `/` (a directory is asked for).
    pub(crate) trailing_slash: bool,
}

impl UrlPath {
    /// Check and decode `raw`, the path component of a request URI. The error says why the path
    /// is refused (for logs only).
    pub(crate) fn parse(raw: &str) -> Result<UrlPath, &'static str> {
        let Some(rest) = raw.strip_prefix('/') else {
            return Err("not an absolute path");
        };
        if raw.contains('\\') {
            return Err("backslash");
        }
        let mut url = UrlPath {
            raw: Vec::new(),
            segments: Vec::new(),
            trailing_slash: rest.is_empty() || rest.ends_with('/'),
        };
        for raw_segment in rest.split('/') {
            if raw_segment.is_empty() {
                continue; // `//` collapses, like nginx's merge_slashes
            }
            let decoded = percent_decode_str(raw_segment)
                .decode_utf8()
                .map_err(|_| "not UTF-8")?;
            if decoded == "." || decoded == ".." {
                return Err("dot segment");
            }
            if decoded.contains(['/', '\\', '\0']) {
                return Err("separator or NUL inside a segment");
            }
            if decoded.chars().any(char::is_control) {
                return Err("control character");
            }
            url.raw.push(raw_segment.to_owned());
            url.segments.push(decoded.into_owned());
        }
        Ok(url)
    }

    /// The file system path under `root`.
    pub(crate) fn fs_path(&self, root: &Path) -> PathBuf {
        let mut path = root.to_path_buf();
        path.extend(&self.segments);
        path
    }

    /// The decoded, normalised URL path (`/a/b` or `/a/b/`), as cache rules see it.
    pub(crate) fn decoded(&self) -> String {
        let mut out = String::from("/");
        out.push_str(&self.segments.join("/"));
        if self.trailing_slash && !self.segments.is_empty() {
            out.push('/');
        }
        out
    }

    /// Where to redirect a directory asked for without its trailing slash. Built from the
    /// client's own (checked) segments, so it is always a path on this host, never `//host`.
    pub(crate) fn directory_location(&self, query: Option<&str>) -> String {
        let mut out = String::from("/");
        for segment in &self.raw {
            out.push_str(segment);
            out.push('/');
        }
        if let Some(query) = query {
            out.push('?');
            out.push_str(query);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::UrlPath;

    #[test]
    fn accepts_ordinary_paths() {
        let url = UrlPath::parse("/assets/app%20x.js").unwrap();
        assert_eq!(url.decoded(), "/assets/app x.js");
        assert!(!url.trailing_slash);
        let url = UrlPath::parse("/").unwrap();
        assert_eq!(url.decoded(), "/");
        assert!(url.trailing_slash);
        let url = UrlPath::parse("//docs//").unwrap();
        assert_eq!(url.decoded(), "/docs/");
        assert_eq!(url.directory_location(Some("a=1")), "/docs/?a=1");
        // Three dots is an ordinary name.
        assert!(UrlPath::parse("/.../x").is_ok());
    }

    #[test]
    fn refuses_traversal_in_every_spelling() {
        for raw in [
            "/../etc/passwd",
            "/a/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2E/etc/passwd",
            "/.%2e/etc/passwd",
            "/a/%2e%2e/%2e%2e/x",
            "/..%2fetc",
            "/..%2Fetc%2Fpasswd",
            "/a/./b",
            "/a\\..\\..\\etc",
            "/..%5c..%5cetc",
            "/a%00.html",
            "/%ff",
            "etc/passwd",
            "*",
            "",
        ] {
            assert!(UrlPath::parse(raw).is_err(), "{raw} should be refused");
        }
    }
}
