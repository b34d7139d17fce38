//! Cache-Control rules: globs on the URL path, first match wins.

use globset::{GlobBuilder, GlobMatcher};
use http::HeaderValue;

use crate::{CacheRule, OriginError};

/// The demo's rules: fingerprinted assets are immutable, pages are short-lived and may be served
/// stale while revalidating, live streaming manifests are fresh for two seconds, the rest five
/// minutes.
pub fn default_rules() -> Vec<CacheRule> {
    const HEX6: &str = "[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]";
    let rule = |path: String, cache_control: &str| CacheRule {
        path,
        cache_control: cache_control.to_owned(),
    };
    vec![
        // `app.3f9a2c.js`, `style.9b1e0d.css`: a 6+ hex-digit fingerprint before the extension.
        rule(
            format!(
                "**/*.{HEX6}*.{{css,js,mjs,map,json,svg,png,jpg,jpeg,gif,webp,avif,ico,woff,woff2,ttf,otf,wasm}}"
            ),
            "public, max-age=31536000, immutable",
        ),
        rule(
            "{/,**/*.html,**/*.htm}".to_owned(),
            "public, max-age=60, stale-while-revalidate=30",
        ),
        rule("**/*.{m3u8,mpd}".to_owned(), "public, max-age=2"),
        rule("**".to_owned(), "public, max-age=300"),
    ]
}

#[derive(Debug)]
pub(crate) struct CompiledRule {
    matcher: GlobMatcher,
    /// `None` when the rule's cache_control is empty: send no Cache-Control.
    cache_control: Option<HeaderValue>,
}

pub(crate) fn compile(rules: &[CacheRule]) -> Result<Vec<CompiledRule>, OriginError> {
    rules
        .iter()
        .enumerate()
        .map(|(index, rule)| {
            let glob = GlobBuilder::new(&rule.path)
                .literal_separator(true)
                .build()
                .map_err(|source| OriginError::BadGlob {
                    index,
                    pattern: rule.path.clone(),
                    source,
                })?;
            let value = rule.cache_control.trim();
            let cache_control = if value.is_empty() {
                None
            } else {
                Some(
                    HeaderValue::from_str(value).map_err(|_| OriginError::BadCacheControl {
                        index,
                        pattern: rule.path.clone(),
                        value: rule.cache_control.clone(),
                    })?,
                )
            };
            Ok(CompiledRule {
                matcher: glob.compile_matcher(),
                cache_control,
            })
        })
        .collect()
}

/// The first rule matching any of `paths` (the URL path, and for a directory its index file).
pub(crate) fn lookup(rules: &[CompiledRule], paths: &[&str]) -> Option<HeaderValue> {
    rules
        .iter()
        .find(|rule| paths.iter().any(|p| rule.matcher.is_match(p)))
        .and_then(|rule| rule.cache_control.clone())
}

#[cfg(test)]
mod tests {
    use super::{compile, default_rules, lookup};
    use crate::{CacheRule, OriginError};

    fn cc(path: &str) -> Option<String> {
        let rules = compile(&default_rules()).unwrap();
        lookup(&rules, &[path]).map(|v| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn default_rules_compile_and_are_valid() {
        let rules = default_rules();
        assert_eq!(compile(&rules).unwrap().len(), rules.len());
        for rule in &rules {
            assert!(!rule.cache_control.is_empty());
        }
        // The last rule catches everything, so every path gets a Cache-Control.
        assert_eq!(rules.last().unwrap().path, "**");
    }

    #[test]
    fn default_rules_match() {
        const IMMUTABLE: &str = "public, max-age=31536000, immutable";
        const PAGE: &str = "public, max-age=60, stale-while-revalidate=30";
        const DEFAULT: &str = "public, max-age=300";
        for (path, expected) in [
            ("/assets/app.3f9a2c.js", IMMUTABLE),
            ("/assets/style.9b1e0d.css", IMMUTABLE),
            ("/app.3f9a2c0011.js", IMMUTABLE),
            ("/deep/er/x.abcdef.woff2", IMMUTABLE),
            ("/assets/app.3f9a2.js", DEFAULT), // only 5 hex digits
            ("/assets/app.js", DEFAULT),
            ("/assets/logo.svg", DEFAULT),
            ("/assets/app.3F9A2C.js", DEFAULT), // fingerprints are lower-case
            ("/assets.3f9a2c/app.js", DEFAULT), // `*` stays in one segment
            ("/", PAGE),
            ("/index.html", PAGE),
            ("/docs/about.html", PAGE),
            ("/live/stream.m3u8", "public, max-age=2"),
            ("/vod/manifest.mpd", "public, max-age=2"),
            ("/robots.txt", DEFAULT),
            ("/live/seg1.ts", DEFAULT),
        ] {
            assert_eq!(cc(path).as_deref(), Some(expected), "{path}");
        }
    }

    #[test]
    fn first_match_wins_and_no_match_means_none() {
        let rules = compile(&[
            CacheRule {
                path: "/a/*".into(),
                cache_control: "no-store".into(),
            },
            CacheRule {
                path: "/a/**".into(),
                cache_control: "public, max-age=1".into(),
            },
            CacheRule {
                path: "/quiet/**".into(),
                cache_control: String::new(),
            },
        ])
        .unwrap();
        assert_eq!(lookup(&rules, &["/a/x"]).unwrap(), "no-store");
        assert_eq!(lookup(&rules, &["/a/b/x"]).unwrap(), "public, max-age=1");
        assert_eq!(lookup(&rules, &["/quiet/x"]), None);
        assert_eq!(lookup(&rules, &["/b"]), None);
    }

    #[test]
    fn bad_rules_say_which_and_why() {
        let bad = [
            CacheRule {
                path: "**".into(),
                cache_control: "public".into(),
            },
            CacheRule {
                path: "/a/[b".into(),
                cache_control: "public".into(),
            },
        ];
        let err = compile(&bad).unwrap_err();
        assert!(
            matches!(err, OriginError::BadGlob { index: 1, .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("cache rule 1") && msg.contains("/a/[b"),
            "{msg}"
        );

        let bad = [CacheRule {
            path: "**".into(),
            cache_control: "public\nx".into(),
        }];
        let err = compile(&bad).unwrap_err();
        assert!(
            matches!(err, OriginError::BadCacheControl { index: 0, .. }),
            "{err:?}"
        );
    }
}
