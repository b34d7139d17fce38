//! Cache keys: the primary key of a request (host and target) and the secondary key of a
//! variant (the values of the request headers a response `Vary`s on).

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName};
use http::request::Parts;

/// The primary cache key: lower-cased host (with port, if any) and the request target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// `key` starts with the host; this is its length.
    host_len: usize,
    key: Arc<str>,
}

impl CacheKey {
    /// The key of a request, or `None` when it names no host (HTTP/1.1 requires one).
    pub fn from_request(parts: &Parts) -> Option<Self> {
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
        if host.contains('@') {
            return None;
        }
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

    /// The key of a URL such as `http://host/path?q`, as found in Location or a purge request.
    pub fn from_url(url: &str) -> Option<Self> {
        let uri: http::Uri = url.parse().ok()?;
        let authority = uri.authority()?;
        Some(Self::new(
            authority.as_str(),
            uri.path_and_query().map_or("/", |pq| pq.as_str()),
        ))
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
/// normalised value. Accept-Encoding is reduced to the one coding we would pick.
pub fn variant_key(fields: &[HeaderName], request: &HeaderMap) -> String {
    let mut key = String::new();
    for field in fields {
        key.push_str(field.as_str());
        key.push('=');
        if field == header::ACCEPT_ENCODING {
            key.push_str(preferred_encoding(request));
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

/// The coding a client accepts that a CDN would serve: br, then gzip, else identity.
fn preferred_encoding(request: &HeaderMap) -> &'static str {
    let accepts = |coding: &str| {
        request
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|item| {
                let mut parts = item.split(';');
                let name = parts.next().unwrap_or("").trim();
                let q_zero = parts.any(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|q| q.trim().parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0)
                });
                name.eq_ignore_ascii_case(coding) && !q_zero
            })
    };
    if accepts("br") {
        "br"
    } else if accepts("gzip") {
        "gzip"
    } else {
        "identity"
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
        let key = CacheKey::from_request(&parts).unwrap();
        assert_eq!(key.as_str(), "www.example.test:8080/a?b=1");
        assert_eq!(key.target(), "/a?b=1");
        let (parts, ()) = http::Request::get("http://x.test/p")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(CacheKey::from_request(&parts).unwrap().as_str(), "x.test/p");
        let (parts, ()) = http::Request::get("/p").body(()).unwrap().into_parts();
        assert!(CacheKey::from_request(&parts).is_none());
        for bad in ["site.test/a", "user@site.test", "a b"] {
            let (parts, ()) = http::Request::get("/b")
                .header("host", bad)
                .body(())
                .unwrap()
                .into_parts();
            assert!(CacheKey::from_request(&parts).is_none(), "{bad}");
        }
        assert_eq!(
            CacheKey::from_url("http://X.test/q?z").unwrap().as_str(),
            "x.test/q?z"
        );
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
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(c, d);
        assert!(e.contains("identity"));
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
}
