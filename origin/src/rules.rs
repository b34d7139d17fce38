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
        ..CacheRule::default()
    };
    let esi = |path: &str, cache_control: &str, template: bool, delay_ms: Option<u64>| CacheRule {
        path: path.to_owned(),
        cache_control: cache_control.to_owned(),
        surrogate_control: template.then(|| "content=\"ESI/1.0\"".to_owned()),
        delay_ms,
    };
    vec![
        // The ESI demo: pages assembled at the edge, fragments with lifetimes of their own.
        esi("/esi/*.html", "public, max-age=60", true, None),
        esi(
            "/esi/fragments/header.html",
            "public, max-age=86400",
            false,
            None,
        ),
        esi(
            "/esi/fragments/footer.html",
            "public, max-age=86400",
            false,
            None,
        ),
        esi(
            "/esi/fragments/latest.html",
            "public, max-age=5",
            false,
            None,
        ),
        esi("/esi/fragments/slow.html", "no-store", false, Some(1000)),
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
    pub(crate) cache_control: Option<HeaderValue>,
    pub(crate) surrogate_control: Option<HeaderValue>,
    pub(crate) delay: Option<std::time::Duration>,
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
            let surrogate_control = match &rule.surrogate_control {
                None => None,
                Some(value) => Some(HeaderValue::from_str(value.trim()).map_err(|_| {
                    OriginError::BadCacheControl {
                        index,
                        pattern: rule.path.clone(),
                        value: value.clone(),
                    }
                })?),
            };
            Ok(CompiledRule {
                matcher: glob.compile_matcher(),
                cache_control,
                surrogate_control,
                delay: rule.delay_ms.map(std::time::Duration::from_millis),
            })
        })
        .collect()
}

/// The first rule matching any of `paths` (the URL path, and for a directory its index file).
pub(crate) fn lookup<'a>(rules: &'a [CompiledRule], paths: &[&str]) -> Option<&'a CompiledRule> {
    rules
        .iter()
        .find(|rule| paths.iter().any(|p| rule.matcher.is_match(p)))
}

#[cfg(test)]
mod tests {
    use super::{compile, default_rules, lookup};
    use crate::{CacheRule, OriginError};

    fn cc(path: &str) -> Option<String> {
        let rules = compile(&default_rules()).unwrap();
        lookup(&rules, &[path])
            .and_then(|rule| rule.cache_control.as_ref())
            .map(|v| v.to_str().unwrap().to_owned())
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
                ..CacheRule::default()
            },
            CacheRule {
                path: "/a/**".into(),
                cache_control: "public, max-age=1".into(),
                ..CacheRule::default()
            },
            CacheRule {
                path: "/quiet/**".into(),
                cache_control: String::new(),
                ..CacheRule::default()
            },
        ])
        .unwrap();
        assert_eq!(
            lookup(&rules, &["/a/x"])
                .and_then(|r| r.cache_control.as_ref())
                .unwrap(),
            "no-store"
        );
        assert_eq!(
            lookup(&rules, &["/a/b/x"])
                .and_then(|r| r.cache_control.as_ref())
                .unwrap(),
            "public, max-age=1"
        );
        assert_eq!(
            lookup(&rules, &["/quiet/x"]).and_then(|r| r.cache_control.as_ref()),
            None
        );
        assert_eq!(
            lookup(&rules, &["/b"]).and_then(|r| r.cache_control.as_ref()),
            None
        );
    }

    #[test]
    fn bad_rules_say_which_and_why() {
        let bad = [
            CacheRule {
                path: "**".into(),
                cache_control: "public".into(),
                ..CacheRule::default()
            },
            CacheRule {
                path: "/a/[b".into(),
                cache_control: "public".into(),
                ..CacheRule::default()
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
            ..CacheRule::default()
        }];
        let err = compile(&bad).unwrap_err();
        assert!(
            matches!(err, OriginError::BadCacheControl { index: 0, .. }),
            "{err:?}"
        );
    }
}
