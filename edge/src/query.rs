//! The query-string and path-glob helpers the edge's fronts share: reading one query
//! parameter, taking one out of a URL before the cache keys on it, and path globs as every
//! Outpost table writes them (`*` within a segment, `**` across).

use globset::{GlobBuilder, GlobMatcher};
use http::Uri;

/// The percent-decoded value of query parameter `name`, if present.
pub(crate) fn parameter(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let value = pair.strip_prefix(name)?.strip_prefix('=')?;
        Some(
            percent_encoding::percent_decode_str(value)
                .decode_utf8_lossy()
                .into_owned(),
        )
    })
}

/// `uri` without query parameter `name`; `None` when it has none.
pub(crate) fn without_parameter(uri: &Uri, name: &str) -> Option<Uri> {
    let query = uri.query()?;
    let named = |pair: &&str| {
        pair.strip_prefix(name)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('='))
    };
    if !query.split('&').any(|pair| named(&pair)) {
        return None;
    }
    let kept: Vec<&str> = query.split('&').filter(|pair| !named(pair)).collect();
    let target = if kept.is_empty() {
        uri.path().to_owned()
    } else {
        format!("{}?{}", uri.path(), kept.join("&"))
    };
    target.parse().ok()
}

/// A path glob.
pub(crate) fn path_glob(pattern: &str) -> Result<GlobMatcher, globset::Error> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|glob| glob.compile_matcher())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_parameter_out_the_rest_kept() {
        let uri: Uri = "/a.m4s?x=1&token=abc%3D&tokenish=2&CMCD=br%3D1"
            .parse()
            .unwrap();
        assert_eq!(parameter(&uri, "token").as_deref(), Some("abc="));
        assert_eq!(parameter(&uri, "CMCD").as_deref(), Some("br=1"));
        assert_eq!(
            without_parameter(&uri, "token").unwrap(),
            "/a.m4s?x=1&tokenish=2&CMCD=br%3D1"
        );
        let only: Uri = "/a.m4s?token".parse().unwrap();
        assert_eq!(without_parameter(&only, "token").unwrap(), "/a.m4s");
        assert_eq!(without_parameter(&"/a?x=1".parse().unwrap(), "token"), None);
    }
}
