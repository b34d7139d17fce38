//! Cache keys: the primary key of a request (host and target) and the secondary key of a
//! variant (the values of the request headers a response `Vary`s on).

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use outpost_server::normal;

/// The primary cache key: lower-cased host (with port, if any) and the request target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// `key` starts with the host; this is its length.
    host_len: usize,
    key: Arc<str>,
}

impl CacheKey {
    /// The key of a request, or `None` when it names no host (HTTP/1.1 requires one). The
    /// request is expected in the listener's normal form ([`outpost_server::normal`]); the
    /// port stays in the key only with `with_port`, so by default plain HTTP, HTTPS and the
    /// anycast address share one object.
    pub fn from_request(parts: &Parts, with_port: bool) -> Option<Self> {
        let host = match parts.uri.authority() {
            // Already parsed as an authority by the HTTP layer.
            Some(authority) => authority.as_str(),
            None => {
                let host = parts.headers.get(header::HOST)?.to_str().ok()?.trim();
                // A Host that is not a bare authority (`site.test/a`) could make two different
                // requests share a key: refuse it.
                http::uri::Authority::try_from(host).ok()?;
                host
            }
        };
        if host.contains('@') || host.is_empty() {
            return None;
        }
        let host = if with_port {
            host
        } else {
            normal::without_port(host)
        };
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        Some(Self::new(host, target))
    }

    /// The key for `host` and `target` (a path with an optional query).
    pub fn new(host: &str, target: &str) -> Self {
        let host = host.trim();
        let mut key = String::with_capacity(host.len() + target.len());
        key.push_str(host);
        key.make_ascii_lowercase();
        key.push_str(target);
        Self {
            host_len: host.len(),
            key: key.into(),
        }
    }

    /// The key of a URL such as `http://host/path?q`, as found in Location or a purge request,
    /// in the same normal form as a request's.
    pub fn from_url(url: &str, with_port: bool) -> Option<Self> {
        let uri: http::Uri = url.parse().ok()?;
        let authority = uri.authority()?;
        let default_port = if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        };
        let host = normal::host(authority.as_str(), default_port).ok()?;
        let host = if with_port {
            &host
        } else {
            normal::without_port(&host)
        };
        let target = normal::target(uri.path_and_query().map_or("/", |pq| pq.as_str())).ok()?;
        Some(Self::new(host, &target))
    }

    pub fn host(&self) -> &str {
        &self.key[..self.host_len]
    }

    /// The request target: path and query.
    pub fn target(&self) -> &str {
        &self.key[self.host_len..]
    }

    pub fn as_str(&self) -> &str {
        &self.key
    }

    pub(crate) fn shared(&self) -> Arc<str> {
        self.key.clone()
    }
}

/// The header names a response varies on; `None` for `Vary: *`.
pub fn vary_fields(response: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut fields = Vec::new();
    for value in response.get_all(header::VARY) {
        let Ok(value) = value.to_str() else { continue };
        for field in value.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            if field == "*" {
                return None;
            }
            if let Ok(name) = HeaderName::from_bytes(field.to_ascii_lowercase().as_bytes())
                && !fields.contains(&name)
            {
                fields.push(name);
            }
        }
    }
    fields.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    Some(fields)
}

/// The secondary key of a request for a response that varies on `fields`: each field's
/// normalised value. Accept-Encoding is reduced to the codings a CDN serves
/// ([`accepted_encodings`]).
pub fn variant_key(fields: &[HeaderName], request: &HeaderMap) -> String {
    let mut key = String::new();
    for field in fields {
        key.push_str(field.as_str());
        key.push('=');
        if field == header::ACCEPT_ENCODING {
            key.push_str(accepted_encodings(request));
        } else {
            let values: Vec<String> = request
                .get_all(field)
                .iter()
                .map(|v| {
                    String::from_utf8_lossy(v.as_bytes())
                        .split(',')
                        .map(str::trim)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .collect();
            key.push_str(&values.join(","));
        }
        key.push('\n');
    }
    key
}

/// Whether the client accepts `coding` by its Accept-Encoding: named (or `*`) with a
/// non-zero weight. A request without Accept-Encoding accepts no coding but identity: that is
/// what clients such as curl without `--compressed` can read.
fn accepts(request: &HeaderMap, coding: &str) -> bool {
    let mut named = None;
    let mut star = None;
    for item in request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q_zero = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        if name.eq_ignore_ascii_case(coding) {
            named = Some(!q_zero);
        } else if name == "*" {
            star = Some(!q_zero);
        }
    }
    named.or(star).unwrap_or(false)
}

/// The content codings a client accepts among those a CDN serves, as one of four normal
/// values. This is the value a variant is keyed by and exactly what a cache fill sends
/// upstream, so whatever comes back is fit for every client of the variant (a client that also
/// takes zstd is asked for br or gzip, never zstd).
pub fn accepted_encodings(request: &HeaderMap) -> &'static str {
    match (accepts(request, "br"), accepts(request, "gzip")) {
        (true, true) => "br, gzip",
        (true, false) => "br",
        (false, true) => "gzip",
        (false, false) => "identity",
    }
}

/// Whether a stored response's Content-Encoding is one the client accepts.
pub fn encoding_accepted(content_encoding: Option<&HeaderValue>, request: &HeaderMap) -> bool {
    content_encoding
        .into_iter()
        .map(|v| v.to_str().unwrap_or("\u{0}"))
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"))
        .all(|coding| accepts(request, coding))
}

/// Hashes of cache keys, keyed by a secret of this process, so no client can aim two keys
/// at one hash: what the store's map and hit-for-pass are indexed by.
#[derive(Default)]
pub(crate) struct KeyHasher(std::hash::RandomState);

impl KeyHasher {
    pub(crate) fn hash(&self, key: &str) -> u64 {
        use std::hash::BuildHasher;
        self.0.hash_one(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn req(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn key_from_host_header_or_authority() {
        let (parts, ()) = http::Request::get("/a?b=1")
            .header("host", "WWW.Example.test:8080")
            .body(())
            .unwrap()
            .into_parts();
        let key = CacheKey::from_request(&parts, true).unwrap();
        assert_eq!(key.as_str(), "www.example.test:8080/a?b=1");
        let key = CacheKey::from_request(&parts, false).unwrap();
        assert_eq!(key.as_str(), "www.example.test/a?b=1");
        assert_eq!(key.target(), "/a?b=1");
        let (parts, ()) = http::Request::get("http://x.test/p")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(
            CacheKey::from_request(&parts, false).unwrap().as_str(),
            "x.test/p"
        );
        let (parts, ()) = http::Request::get("/p").body(()).unwrap().into_parts();
        assert!(CacheKey::from_request(&parts, false).is_none());
        for bad in ["site.test/a", "user@site.test", "a b"] {
            let (parts, ()) = http::Request::get("/b")
                .header("host", bad)
                .body(())
                .unwrap()
                .into_parts();
            assert!(CacheKey::from_request(&parts, false).is_none(), "{bad}");
        }
        assert_eq!(
            CacheKey::from_url("http://X.test/q?z", false)
                .unwrap()
                .as_str(),
            "x.test/q?z"
        );
        // Every spelling of one URL is one key.
        for url in [
            "http://www.outpost.test./private/a",
            "http://WWW.outpost.test:8080//private/a",
            "https://www.outpost.test:443/%70rivate/./a",
        ] {
            assert_eq!(
                CacheKey::from_url(url, false).unwrap().as_str(),
                "www.outpost.test/private/a",
                "{url}"
            );
        }
    }

    #[test]
    fn vary_fields_are_normalised_and_star_detected() {
        let h = req(&[
            ("vary", "Accept-Encoding, accept-language"),
            ("vary", "Accept-Encoding"),
        ]);
        let fields = vary_fields(&h).unwrap();
        assert_eq!(
            fields,
            vec![header::ACCEPT_ENCODING, header::ACCEPT_LANGUAGE]
        );
        assert!(vary_fields(&req(&[("vary", "cookie, *")])).is_none());
    }

    #[test]
    fn accept_encoding_collapses_to_the_coding_served() {
        let fields = [header::ACCEPT_ENCODING];
        let a = variant_key(&fields, &req(&[("accept-encoding", "gzip, deflate, br")]));
        let b = variant_key(
            &fields,
            &req(&[("accept-encoding", "br;q=1.0, gzip;q=0.8")]),
        );
        let c = variant_key(&fields, &req(&[("accept-encoding", "gzip")]));
        let d = variant_key(&fields, &req(&[("accept-encoding", "br;q=0, gzip")]));
        let e = variant_key(&fields, &req(&[]));
        let zstd = variant_key(&fields, &req(&[("accept-encoding", "zstd")]));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(c, d);
        assert!(e.contains("identity"));
        assert_eq!(zstd, e, "zstd is not a coding the CDN asks for");
        let chrome = req(&[("accept-encoding", "gzip, deflate, br, zstd")]);
        assert_eq!(accepted_encodings(&chrome), "br, gzip");
        assert_eq!(
            accepted_encodings(&req(&[("accept-encoding", "*")])),
            "br, gzip"
        );
        assert_eq!(
            accepted_encodings(&req(&[("accept-encoding", "*, gzip;q=0")])),
            "br"
        );
    }

    #[test]
    fn a_stored_coding_is_served_only_to_clients_that_accept_it() {
        let stored = |ce: &'static str| Some(HeaderValue::from_static(ce));
        let chrome = req(&[("accept-encoding", "gzip, deflate, br, zstd")]);
        let curl = req(&[]);
        assert!(encoding_accepted(stored("zstd").as_ref(), &chrome));
        assert!(!encoding_accepted(stored("zstd").as_ref(), &curl));
        assert!(!encoding_accepted(stored("gzip").as_ref(), &curl));
        assert!(encoding_accepted(stored("identity").as_ref(), &curl));
        assert!(encoding_accepted(None, &curl));
        assert!(!encoding_accepted(
            stored("br").as_ref(),
            &req(&[("accept-encoding", "gzip")])
        ));
    }

    #[test]
    fn other_fields_keep_their_values() {
        let fields = [header::ACCEPT_LANGUAGE];
        let en = variant_key(&fields, &req(&[("accept-language", "en")]));
        let fr = variant_key(&fields, &req(&[("accept-language", "fr")]));
        let en2 = variant_key(&fields, &req(&[("accept-language", "en")]));
        assert_ne!(en, fr);
        assert_eq!(en, en2);
    }

    mod properties {
        use super::super::*;
        use crate::directives::ResponseDirectives;
        use crate::freshness::Timing;
        use http::HeaderValue;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn keys_and_variants_of_any_input_do_not_panic(
                url in "\\PC{0,60}",
                host in "\\PC{0,30}",
                value in "[ -~]{0,60}",
            ) {
                let _ = CacheKey::from_url(&url, false);
                let _ = CacheKey::from_url(&format!("http://{host}/{url}"), true);
                if let Ok(value) = HeaderValue::from_str(&value) {
                    let mut request = HeaderMap::new();
                    request.insert(header::ACCEPT_ENCODING, value.clone());
                    request.insert(header::ACCEPT_LANGUAGE, value.clone());
                    let fields = [header::ACCEPT_ENCODING, header::ACCEPT_LANGUAGE];
                    let _ = variant_key(&fields, &request);
                    let _ = encoding_accepted(Some(&value), &request);
                    let mut response = HeaderMap::new();
                    response.insert(header::VARY, value.clone());
                    let _ = vary_fields(&response);
                }
            }

            #[test]
            fn any_cache_control_or_age_parses_without_a_panic(value in "[ -~]{0,80}") {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    let mut response = HeaderMap::new();
                    response.insert(header::CACHE_CONTROL, value.clone());
                    response.insert("cdn-cache-control", value.clone());
                    response.insert(header::AGE, value.clone());
                    response.insert(header::EXPIRES, value.clone());
                    let _ = ResponseDirectives::for_cdn(&response);
                    let now = std::time::SystemTime::now();
                    let timing = Timing::from_headers(&response, now, now);
                    let _ = timing.current_age(now);
                    let _ = crate::policy::storability(
                        &http::Method::GET,
                        &HeaderMap::new(),
                        http::StatusCode::OK,
                        &response,
                        &crate::policy::CacheRules::default(),
                        timing,
                    );
                }
            }
        }
    }
}
