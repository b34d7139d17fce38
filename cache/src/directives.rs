//! Cache-Control directives (RFC 9111 section 5.2), and which header carries them for a CDN:
//! `CDN-Cache-Control` (RFC 9213) first, then `Surrogate-Control`, then `Cache-Control`.

use std::time::Duration;

use http::HeaderMap;

use crate::surrogate::SurrogateControl;

/// The response directives a shared cache acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseDirectives {
    pub max_age: Option<Duration>,
    pub s_maxage: Option<Duration>,
    pub no_store: bool,
    /// `no-cache`, qualified or not: the response must be revalidated before every reuse.
    pub no_cache: bool,
    /// `private`, qualified or not: a shared cache never stores it.
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub immutable: bool,
    pub stale_while_revalidate: Option<Duration>,
    pub stale_if_error: Option<Duration>,
}

/// Which header the directives came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectiveSource {
    CdnCacheControl,
    SurrogateControl,
    CacheControl,
    /// No header at all: freshness can only be heuristic or from Expires.
    None,
}

impl ResponseDirectives {
    /// The directives this CDN obeys for a response: `CDN-Cache-Control` when present replaces
    /// `Cache-Control` entirely (RFC 9213 section 2.1); so does `Surrogate-Control` when the
    /// controls that apply to this device say how long to keep it or not to store it
    /// ([`SurrogateControl`]); one that only asks for ESI leaves `Cache-Control` in charge.
    pub fn for_cdn(headers: &HeaderMap) -> (Self, DirectiveSource) {
        if headers.contains_key("cdn-cache-control") {
            let lines = headers.get_all("cdn-cache-control").iter();
            return (Self::parse(lines), DirectiveSource::CdnCacheControl);
        }
        let surrogate = SurrogateControl::of(headers);
        if surrogate.governs_storage() {
            let directives = Self {
                max_age: surrogate.max_age,
                no_store: surrogate.no_store,
                stale_if_error: surrogate.stale_if_error,
                ..Self::default()
            };
            return (directives, DirectiveSource::SurrogateControl);
        }
        if headers.contains_key("cache-control") {
            let lines = headers.get_all("cache-control").iter();
            return (Self::parse(lines), DirectiveSource::CacheControl);
        }
        (Self::default(), DirectiveSource::None)
    }

    /// Parses every line of a directive header. Unknown directives are ignored; a delta-seconds
    /// value that does not parse makes the response stale (max-age 0), as RFC 9111 section
    /// 4.2.1 advises; a duplicated directive keeps its first valid value.
    pub fn parse<'a>(lines: impl Iterator<Item = &'a http::HeaderValue>) -> Self {
        let mut directives = Self::default();
        for line in lines {
            let Ok(line) = line.to_str() else {
                // Not visible ASCII: the whole line is unusable; be conservative.
                directives.no_cache = true;
                continue;
            };
            for (name, value) in split_directives(line) {
                match name.to_ascii_lowercase().as_str() {
                    "max-age" => set_seconds(&mut directives.max_age, value),
                    "s-maxage" => set_seconds(&mut directives.s_maxage, value),
                    "no-store" => directives.no_store = true,
                    "no-cache" => directives.no_cache = true,
                    "private" => directives.private = true,
                    "public" => directives.public = true,
                    "must-revalidate" => directives.must_revalidate = true,
                    "proxy-revalidate" => directives.proxy_revalidate = true,
                    "immutable" => directives.immutable = true,
                    "stale-while-revalidate" => {
                        set_window(&mut directives.stale_while_revalidate, value);
                    }
                    "stale-if-error" => set_window(&mut directives.stale_if_error, value),
                    _ => {}
                }
            }
        }
        directives
    }

    /// Whether a stale copy may ever be served without revalidating (RFC 9111 section 4.2.4).
    pub fn forbids_stale(&self) -> bool {
        self.must_revalidate || self.proxy_revalidate || self.no_cache
    }
}

fn set_seconds(slot: &mut Option<Duration>, value: Option<&str>) {
    let parsed = parse_delta_seconds(value);
    match (&slot, parsed) {
        (None, Some(seconds)) => *slot = Some(seconds),
        (None, None) => *slot = Some(Duration::ZERO),
        (Some(_), _) => {}
    }
}

fn set_window(slot: &mut Option<Duration>, value: Option<&str>) {
    if slot.is_none() {
        // An invalid window grants nothing.
        *slot = parse_delta_seconds(value);
    }
}

/// delta-seconds: digits only; values past 2^31 are capped as RFC 9111 section 1.2.2 says.
pub(crate) fn parse_delta_seconds(value: Option<&str>) -> Option<Duration> {
    let value = value?.trim_matches('"');
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seconds = value.parse::<u64>().unwrap_or(u64::MAX).min(1 << 31);
    Some(Duration::from_secs(seconds))
}

/// Splits `a, b=1, c="x, y"` into `(name, value)` pairs, respecting quoted strings.
pub(crate) fn split_directives(line: &str) -> Vec<(&str, Option<&str>)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let bytes = line.as_bytes();
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                push_directive(&mut out, &line[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    push_directive(&mut out, &line[start..]);
    out
}

fn push_directive<'a>(out: &mut Vec<(&'a str, Option<&'a str>)>, item: &'a str) {
    let item = item.trim();
    if item.is_empty() {
        return;
    }
    match item.split_once('=') {
        Some((name, value)) => out.push((name.trim(), Some(value.trim()))),
        None => out.push((item, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn parse(s: &str) -> ResponseDirectives {
        ResponseDirectives::parse(std::iter::once(&HeaderValue::from_str(s).unwrap()))
    }

    #[test]
    fn parses_common_directives() {
        let d = parse(
            "public, max-age=60, s-maxage=120, stale-while-revalidate=30, stale-if-error=600",
        );
        assert!(d.public);
        assert_eq!(d.max_age, Some(Duration::from_secs(60)));
        assert_eq!(d.s_maxage, Some(Duration::from_secs(120)));
        assert_eq!(d.stale_while_revalidate, Some(Duration::from_secs(30)));
        assert_eq!(d.stale_if_error, Some(Duration::from_secs(600)));
        assert!(!d.forbids_stale());
    }

    #[test]
    fn qualified_forms_and_quotes() {
        let d = parse(r#"private="set-cookie, x", no-cache="a,b", MAX-AGE="10""#);
        assert!(d.private);
        assert!(d.no_cache);
        assert_eq!(d.max_age, Some(Duration::from_secs(10)));
    }

    #[test]
    fn invalid_max_age_means_stale() {
        assert_eq!(parse("max-age=abc").max_age, Some(Duration::ZERO));
        assert_eq!(parse("max-age=-5").max_age, Some(Duration::ZERO));
        assert_eq!(parse("max-age").max_age, Some(Duration::ZERO));
        // the first valid value wins over a later duplicate
        assert_eq!(
            parse("max-age=5, max-age=50").max_age,
            Some(Duration::from_secs(5))
        );
        assert_eq!(parse("stale-if-error=x").stale_if_error, None);
    }

    #[test]
    fn huge_values_are_capped() {
        assert_eq!(
            parse("max-age=99999999999999999999999").max_age,
            Some(Duration::from_secs(1 << 31))
        );
    }

    #[test]
    fn cdn_cache_control_takes_precedence() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "cache-control",
            HeaderValue::from_static("private, no-store"),
        );
        headers.insert("cdn-cache-control", HeaderValue::from_static("max-age=300"));
        headers.insert("surrogate-control", HeaderValue::from_static("max-age=5"));
        let (d, source) = ResponseDirectives::for_cdn(&headers);
        assert_eq!(source, DirectiveSource::CdnCacheControl);
        assert_eq!(d.max_age, Some(Duration::from_secs(300)));
        assert!(!d.no_store && !d.private);
        headers.remove("cdn-cache-control");
        let (d, source) = ResponseDirectives::for_cdn(&headers);
        assert_eq!(source, DirectiveSource::SurrogateControl);
        assert_eq!(d.max_age, Some(Duration::from_secs(5)));
        headers.insert(
            "surrogate-control",
            HeaderValue::from_static("content=\"ESI/1.0\""),
        );
        let (d, source) = ResponseDirectives::for_cdn(&headers);
        assert_eq!(
            source,
            DirectiveSource::CacheControl,
            "ESI alone says nothing on storing"
        );
        assert!(d.no_store);
    }

    #[test]
    fn revalidation_directives_forbid_stale() {
        assert!(parse("max-age=10, must-revalidate").forbids_stale());
        assert!(parse("s-maxage=10, proxy-revalidate").forbids_stale());
        assert!(parse("no-cache").forbids_stale());
    }
}
