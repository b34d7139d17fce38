//! What a release holds: its site (host and path prefix) and, for each file, the digest,
//! size and the headers it is served with. `outpost push` builds it; every node checks it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Digest;

/// Most files one release may hold.
pub const MAX_FILES: usize = 1_000_000;

/// Where a release is served: every path under `prefix`, on `host` or (with none) on every
/// host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Site {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Starts and ends with '/'.
    pub prefix: String,
}

impl Site {
    /// The surrogate key every file of the site's releases carries, so one tag purge empties
    /// the site from caches below the node that serves it.
    pub fn tag(&self) -> String {
        format!("outpost-release:{self}")
    }

    /// Whether a request for `host` and `path` (normal forms) falls within the site.
    pub fn contains(&self, host: &str, path: &str) -> bool {
        self.host.as_deref().is_none_or(|own| own == host) && path.starts_with(&self.prefix)
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.host.as_deref().unwrap_or("*"), self.prefix)
    }
}

/// One file of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub digest: Digest,
    pub size: u64,
    pub content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
}

/// A release as pushed: the site and its files by path below the prefix (`index.html`,
/// `css/site.css`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub site: Site,
    pub files: BTreeMap<String, FileEntry>,
}

/// What is wrong with a release name or manifest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error(
        "release name {0:?}: expected 1 to 64 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
    )]
    Name(String),
    #[error(
        "prefix {0:?}: expected a path that starts and ends with '/', without '.', '..' or empty segments"
    )]
    Prefix(String),
    #[error("host {0:?}: expected a lowercase host name without port")]
    Host(String),
    #[error("file {0:?}: expected a relative path without '.', '..' or empty segments")]
    Path(String),
    #[error("file {path:?}: {field} is not a valid header value")]
    Header { path: String, field: &'static str },
    #[error("a release holds at most {MAX_FILES} files")]
    TooMany,
}

/// Checks a release name: it appears in URLs, headers and file names.
pub fn check_name(name: &str) -> Result<(), ManifestError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(ManifestError::Name(name.to_owned()))
    }
}

impl Manifest {
    /// Checks everything a node relies on before it serves the release.
    pub fn check(&self) -> Result<(), ManifestError> {
        let prefix = &self.site.prefix;
        let valid = prefix == "/"
            || prefix
                .strip_prefix('/')
                .and_then(|p| p.strip_suffix('/'))
                .is_some_and(relative_path);
        if !valid {
            return Err(ManifestError::Prefix(prefix.clone()));
        }
        if let Some(host) = &self.site.host {
            let valid = !host.is_empty()
                && host.len() <= 253
                && host
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b));
            if !valid {
                return Err(ManifestError::Host(host.clone()));
            }
        }
        if self.files.len() > MAX_FILES {
            return Err(ManifestError::TooMany);
        }
        for (path, entry) in &self.files {
            if !relative_path(path) {
                return Err(ManifestError::Path(path.clone()));
            }
            let header = |field, value: &str| {
                http::HeaderValue::from_str(value)
                    .map(drop)
                    .map_err(|_| ManifestError::Header {
                        path: path.clone(),
                        field,
                    })
            };
            header("content_type", &entry.content_type)?;
            if let Some(cache_control) = &entry.cache_control {
                header("cache_control", cache_control)?;
            }
        }
        Ok(())
    }

    /// Bytes of all files.
    pub fn bytes(&self) -> u64 {
        self.files.values().map(|f| f.size).sum()
    }
}

/// `a/b.html`: non-empty segments, none `.` or `..`, no backslash or control character.
fn relative_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 4096
        && !path.contains('\\')
        && !path.chars().any(char::is_control)
        && path
            .split('/')
            .all(|segment| !segment.is_empty() && segment != "." && segment != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(prefix: &str, host: Option<&str>, paths: &[&str]) -> Manifest {
        Manifest {
            site: Site {
                host: host.map(str::to_owned),
                prefix: prefix.into(),
            },
            files: paths
                .iter()
                .map(|p| {
                    (
                        p.to_string(),
                        FileEntry {
                            digest: Digest::of(p.as_bytes()),
                            size: p.len() as u64,
                            content_type: "text/plain".into(),
                            cache_control: None,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn prefixes_and_paths_that_could_escape_the_site_are_refused() {
        assert_eq!(manifest("/", None, &["index.html"]).check(), Ok(()));
        assert_eq!(
            manifest("/docs/v1/", Some("www.outpost.test"), &["a/b.css"]).check(),
            Ok(())
        );
        for prefix in ["", "docs/", "/docs", "//", "/a//b/", "/../", "/./x/"] {
            assert!(
                matches!(
                    manifest(prefix, None, &[]).check(),
                    Err(ManifestError::Prefix(_))
                ),
                "{prefix}"
            );
        }
        for path in ["", "/abs", "a//b", "../up", "a/./b", "a\\b", "a\nb", "dir/"] {
            assert!(
                matches!(
                    manifest("/", None, &[path]).check(),
                    Err(ManifestError::Path(_))
                ),
                "{path:?}"
            );
        }
        for host in ["WWW.x", "a b", "x:80", ""] {
            assert!(
                matches!(
                    manifest("/", Some(host), &[]).check(),
                    Err(ManifestError::Host(_))
                ),
                "{host}"
            );
        }
    }

    #[test]
    fn headers_the_node_would_send_must_be_valid() {
        let mut bad = manifest("/", None, &["a"]);
        bad.files.get_mut("a").unwrap().cache_control = Some("max-age=1\r\nX: y".into());
        assert!(matches!(bad.check(), Err(ManifestError::Header { .. })));
    }

    #[test]
    fn names_are_url_and_file_safe() {
        for good in ["r1", "2026-12-02.1", "site_v2"] {
            assert_eq!(check_name(good), Ok(()));
        }
        for bad in ["", "-x", "A", "a/b", "a b", ".", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_site_contains_its_prefix_on_its_host() {
        let site = manifest("/docs/", Some("a.test"), &[]).site;
        assert!(site.contains("a.test", "/docs/x"));
        assert!(!site.contains("b.test", "/docs/x"));
        assert!(!site.contains("a.test", "/docsx"));
        let any = manifest("/", None, &[]).site;
        assert!(any.contains("b.test", "/x"));
        assert_eq!(any.tag(), "outpost-release:*/");
    }
}
