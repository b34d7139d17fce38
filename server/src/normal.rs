//! The one normal form of a request's host and target, made once as a request arrives, so that
//! everything after it (worker routes, cache keys, purges, the request sent upstream) sees the
//! same URL whatever way a client spelled it (RFC 3986 section 6.2.2, plus merged slashes, as
//! nginx's `merge_slashes` and Outpost's own origin treat them):
//!
//! - the host lower-cased, one trailing dot dropped, the default port of the connection's
//!   scheme dropped; an absolute-form target or HTTP/2 `:authority` replaces `Host`, so the two
//!   can never disagree;
//! - in the path, percent-encoded unreserved characters decoded, other percent-encodings in
//!   upper case, `.` and `..` segments resolved and repeated slashes merged; in the query, only
//!   the percent-encodings normalised;
//! - headers named in `Connection` removed before anything reads them (RFC 9110 section 7.6.1).
//!
//! It is plain logic with no I/O.

use std::borrow::Cow;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Uri};

/// Why a request cannot be put in normal form: each is the client's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The request target is longer than the configured limit (answered 414).
    #[error("request target of {length} bytes is longer than the limit of {limit}")]
    TargetTooLong { length: usize, limit: usize },
    #[error("bad request target: {0}")]
    Target(&'static str),
    #[error("bad host: {0}")]
    Host(&'static str),
}

impl Refusal {
    pub fn status(&self) -> http::StatusCode {
        match self {
            Refusal::TargetTooLong { .. } => http::StatusCode::URI_TOO_LONG,
            _ => http::StatusCode::BAD_REQUEST,
        }
    }
}

/// Puts `parts` in normal form: `Host` holds the normal host, the URI is in origin form (or
/// `*`) with a normal path and query. `tls` tells the default port (443, else 80). A request
/// with no host at all keeps none: whether that is allowed is the handler's business.
pub fn normalize(parts: &mut Parts, tls: bool, max_target: usize) -> Result<(), Refusal> {
    remove_connection_listed(&mut parts.headers);
    let default_port = if tls { 443 } else { 80 };
    let target = parts.uri.path_and_query().map_or("", PathAndQuery::as_str);
    if target.len() > max_target {
        return Err(Refusal::TargetTooLong {
            length: target.len(),
            limit: max_target,
        });
    }
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let host_header = hosts.next();
    if hosts.next().is_some() {
        return Err(Refusal::Host("more than one Host header"));
    }
    let raw_host = match parts.uri.authority() {
        Some(authority) => Some(authority.as_str()),
        None => match host_header {
            Some(value) => Some(
                value
                    .to_str()
                    .map_err(|_| Refusal::Host("not visible ASCII"))?,
            ),
            None => None,
        },
    };
    if let Some(raw_host) = raw_host {
        let host = host(raw_host, default_port)?;
        if host_header.is_none_or(|h| h.as_bytes() != host.as_bytes()) {
            let value = HeaderValue::from_str(&host).map_err(|_| Refusal::Host("not a name"))?;
            parts.headers.insert(header::HOST, value);
        }
    }
    let normal = if target == "*" || target.is_empty() && parts.uri.authority().is_none() {
        None
    } else {
        match self::target(if target.is_empty() { "/" } else { target })? {
            Cow::Borrowed(_) if parts.uri.authority().is_none() => None,
            normal => Some(normal.into_owned()),
        }
    };
    if let Some(normal) = normal {
        parts.uri = Uri::try_from(normal).map_err(|_| Refusal::Target("not a URI path"))?;
    }
    Ok(())
}

/// The normal form of a host (`name`, `name:port` or `[v6]:port`), with `default_port` left
/// out.
pub fn host(raw: &str, default_port: u16) -> Result<Cow<'_, str>, Refusal> {
    let raw = raw.trim();
    if raw.contains('@') {
        return Err(Refusal::Host("user information is not allowed"));
    }
    let authority = Authority::try_from(raw).map_err(|_| Refusal::Host("not host or host:port"))?;
    let name = authority.host();
    if name.starts_with('.') || name.contains("..") {
        return Err(Refusal::Host("empty label"));
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err(Refusal::Host("empty label"));
    }
    let brackets = name.bytes().filter(|b| matches!(b, b'[' | b']')).count();
    if brackets != 0 && !(brackets == 2 && name.starts_with('[') && name.ends_with(']')) {
        return Err(Refusal::Host("brackets only around an IPv6 address"));
    }
    let port_text = &authority.as_str()[authority.host().len()..];
    let port = match authority.port() {
        // `host:` is the default port; any other text the http crate could not read as a port
        // (`host:99999`) is an error, not a port to drop.
        None if port_text.is_empty() || port_text == ":" => None,
        None => return Err(Refusal::Host("bad port")),
        Some(port) => match port.as_str().parse::<u16>() {
            Ok(n) if n == default_port => None,
            Ok(n) => Some(n),
            Err(_) => return Err(Refusal::Host("bad port")),
        },
    };
    // Most requests name their host in normal form already: no copy for them.
    let kept_as_is = name.len() == authority.host().len()
        && !name.bytes().any(|b| b.is_ascii_uppercase())
        && match port {
            None => port_text.is_empty(),
            // `:08080` is the same port as `:8080`: only the plain spelling is kept.
            Some(_) => !port_text.starts_with(":0"),
        };
    if kept_as_is {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = name.to_ascii_lowercase();
    if let Some(port) = port {
        out.push(':');
        out.push_str(&port.to_string());
    }
    Ok(Cow::Owned(out))
}

/// `host` without its port, for keys and routes that match any port.
pub fn without_port(host: &str) -> &str {
    if let Some(end) = host.strip_prefix('[').and_then(|h| h.find(']')) {
        return &host[..end + 2];
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// A URI reference found in a document a node served (an ESI `src`, a playlist's segment URI,
/// a player's CMCD `nor`), resolved against the document's `directory` (its path up to the
/// last `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// A path on the document's own host, in normal form (`/path?query`).
    SameHost(String),
    /// An absolute `http(s)://` URL: its host in normal form, and its target in normal form.
    /// Whether that host may be fetched is the caller's policy.
    Absolute { host: String, target: String },
}

/// Why a reference cannot be resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadReference {
    #[error("a scheme-relative URL")]
    SchemeRelative,
    #[error("a scheme other than http or https")]
    OtherScheme,
    #[error("not a host")]
    Host,
    #[error("not a URL path")]
    Target,
}

/// Resolves `reference` against `directory` (see [`Reference`]).
pub fn reference(directory: &str, reference: &str) -> Result<Reference, BadReference> {
    if let Some(rest) = reference
        .strip_prefix("http://")
        .or_else(|| reference.strip_prefix("https://"))
    {
        let (authority, target) = match rest.find(['/', '?']) {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let host = host(authority, 80).map_err(|_| BadReference::Host)?;
        return Ok(Reference::Absolute {
            host: host.into_owned(),
            target: normal_reference_target(target)?,
        });
    }
    if reference.starts_with("//") {
        return Err(BadReference::SchemeRelative);
    }
    if reference
        .split(['/', '?'])
        .next()
        .is_some_and(|first| first.contains(':'))
    {
        return Err(BadReference::OtherScheme);
    }
    let joined = if reference.starts_with('/') {
        Cow::Borrowed(reference)
    } else {
        Cow::Owned(format!("{directory}{reference}"))
    };
    Ok(Reference::SameHost(normal_reference_target(&joined)?))
}

fn normal_reference_target(target: &str) -> Result<String, BadReference> {
    let target = if target.starts_with('?') {
        Cow::Owned(format!("/{target}"))
    } else {
        Cow::Borrowed(target)
    };
    self::target(&target)
        .map(Cow::into_owned)
        .map_err(|_| BadReference::Target)
}

/// The normal form of an origin-form target (`/path?query`).
pub fn target(raw: &str) -> Result<Cow<'_, str>, Refusal> {
    let (path, query) = match raw.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (raw, None),
    };
    if !path.starts_with('/') {
        return Err(Refusal::Target("the path must start with /"));
    }
    let path_needs_work = path.contains('%')
        || path.contains("//")
        || path
            .split('/')
            .any(|segment| segment == "." || segment == "..");
    let query_needs_work = query.is_some_and(|q| q.contains('%'));
    if !path_needs_work && !query_needs_work {
        return Ok(Cow::Borrowed(raw));
    }
    let decoded = percent_normal(path)?;
    let mut out = resolve_segments(&decoded);
    if let Some(query) = query {
        out.push('?');
        out.push_str(&percent_normal(query)?);
    }
    Ok(Cow::Owned(out))
}

fn unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Decodes percent-encoded unreserved characters and upper-cases the rest.
fn percent_normal(text: &str) -> Result<String, Refusal> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = |b: Option<&u8>| b.and_then(|b| char::from(*b).to_digit(16));
        let (Some(high), Some(low)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) else {
            return Err(Refusal::Target("malformed percent-encoding"));
        };
        let byte = u8::try_from(high * 16 + low).unwrap_or(0);
        if unreserved(byte) {
            out.push(byte);
        } else {
            out.extend_from_slice(format!("%{byte:02X}").as_bytes());
        }
        i += 3;
    }
    // Only ASCII replaced ASCII: what was UTF-8 still is.
    String::from_utf8(out).map_err(|_| Refusal::Target("not UTF-8"))
}

/// Resolves `.` and `..` (RFC 3986 section 5.2.4; `..` never climbs above the root) and merges
/// repeated slashes.
fn resolve_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing = false;
    for segment in path.split('/').skip(1) {
        trailing = false;
        match segment {
            "" => trailing = true,
            "." => trailing = true,
            ".." => {
                segments.pop();
                trailing = true;
            }
            segment => segments.push(segment),
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if trailing || segments.is_empty() {
        out.push('/');
    }
    out
}

/// Removes the headers a request's `Connection` header names, and `Connection` itself: they
/// are for this hop only and must not reach a cache key or an upstream (the HTTP layer has
/// read what it needs from them already). Doing it twice changes nothing.
pub fn remove_connection_listed(headers: &mut HeaderMap) {
    if !headers.contains_key(header::CONNECTION) {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .filter(|name| name != header::CONNECTION)
        .collect();
    for name in listed {
        headers.remove(name);
    }
    headers.remove(header::CONNECTION);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_against_the_document() {
        let same = |t: &str| Ok(Reference::SameHost(t.to_owned()));
        assert_eq!(
            reference("/v/live/", "seg-1.m4s"),
            same("/v/live/seg-1.m4s")
        );
        assert_eq!(reference("/v/", "../x/9f.m4s"), same("/x/9f.m4s"));
        assert_eq!(reference("/v/", "/abs?q=1"), same("/abs?q=1"));
        assert_eq!(
            reference("/v/", "http://A.Test:80/s.m4s"),
            Ok(Reference::Absolute {
                host: "a.test".into(),
                target: "/s.m4s".into()
            })
        );
        assert_eq!(
            reference("/v/", "https://a.test?x"),
            Ok(Reference::Absolute {
                host: "a.test".into(),
                target: "/?x".into()
            })
        );
        assert_eq!(
            reference("/v/", "//b.test/x"),
            Err(BadReference::SchemeRelative)
        );
        assert_eq!(
            reference("/v/", "data:text/plain,x"),
            Err(BadReference::OtherScheme)
        );
        assert_eq!(reference("/v/", "http://a b/x"), Err(BadReference::Host));
    }

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::get(uri);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn targets_take_one_form() {
        for (raw, normal) in [
            ("/a/b", "/a/b"),
            ("//private/a", "/private/a"),
            ("/%70rivate/a", "/private/a"),
            ("/%2e%2E/private/./a", "/private/a"),
            ("/a/b/../../../c", "/c"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/a//", "/a/"),
            ("/a%2fb", "/a%2Fb"),
            ("/x?q=%7e%2f", "/x?q=~%2F"),
            ("/x?a=//..", "/x?a=//.."),
            ("/", "/"),
        ] {
            assert_eq!(target(raw).unwrap(), normal, "{raw}");
            // Normal forms are fixed points.
            assert_eq!(target(normal).unwrap(), normal, "{normal}");
        }
        assert!(matches!(target("/%zz"), Err(Refusal::Target(_))));
        assert!(matches!(target("/%4"), Err(Refusal::Target(_))));
    }

    #[test]
    fn hosts_take_one_form() {
        for (raw, normal) in [
            ("WWW.Outpost.Test", "www.outpost.test"),
            ("www.outpost.test.", "www.outpost.test"),
            ("www.outpost.test:80", "www.outpost.test"),
            ("www.outpost.test.:8080", "www.outpost.test:8080"),
            ("[::1]:80", "[::1]"),
        ] {
            assert_eq!(host(raw, 80).unwrap(), normal, "{raw}");
        }
        assert_eq!(host("a.test:443", 443).unwrap(), "a.test");
        assert_eq!(host("a.test:08080", 80).unwrap(), "a.test:8080");
        assert!(matches!(host("a.test:8080", 80), Ok(Cow::Borrowed(_))));
        for bad in [
            "-[]..",
            "a]",
            "[x",
            "a b",
            "user@a.test",
            "",
            ".",
            "a..b",
            "a.test:99999",
            "a/b",
        ] {
            assert!(host(bad, 80).is_err(), "{bad:?}");
        }
        assert_eq!(without_port("a.test:8080"), "a.test");
        assert_eq!(without_port("[::1]:8080"), "[::1]");
        assert_eq!(without_port("[::1]"), "[::1]");
        assert_eq!(without_port("[x"), "[x");
    }

    #[test]
    fn the_authority_replaces_host_and_connection_listed_headers_go() {
        let mut p = parts(
            "http://A.test/y/../z",
            &[
                ("host", "b.test"),
                ("connection", "x-a, Cookie"),
                ("cookie", "c=1"),
                ("x-a", "1"),
            ],
        );
        normalize(&mut p, false, 8192).unwrap();
        assert_eq!(p.headers["host"], "a.test");
        assert_eq!(p.uri, "/z");
        assert!(!p.headers.contains_key("cookie"));
        assert!(!p.headers.contains_key("x-a"));

        let mut p = parts("/a", &[("host", "a.test"), ("connection", "host")]);
        normalize(&mut p, false, 8192).unwrap();
        assert!(
            !p.headers.contains_key("host"),
            "refused later for want of a host"
        );

        // Found by the fuzzer: an absolute form with `Connection: host` kept its Connection
        // header, so a second pass took away the host the first had set.
        let mut p = parts("http://y~/", &[("connection", "host,,,, cookie")]);
        normalize(&mut p, false, 8192).unwrap();
        let once = (p.uri.clone(), p.headers.clone());
        normalize(&mut p, false, 8192).unwrap();
        assert_eq!(once, (p.uri.clone(), p.headers.clone()));
        assert_eq!(p.headers["host"], "y~");

        let mut p = parts("/a", &[("host", "a.test"), ("host", "b.test")]);
        assert!(normalize(&mut p, false, 8192).is_err());

        let mut p = parts(&format!("/{}", "a".repeat(100)), &[("host", "a.test")]);
        assert_eq!(
            normalize(&mut p, false, 50).unwrap_err().status(),
            http::StatusCode::URI_TOO_LONG
        );
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// Paths from the characters that matter: separators, dots, percent signs, hex.
        fn tricky_target() -> impl Strategy<Value = String> {
            "(/|\\.|%|[0-9a-fA-F]|[a-z]|\\?|=|&|~){0,40}".prop_map(|t| format!("/{t}"))
        }

        proptest! {
            #[test]
            fn a_normal_target_is_its_own_normal_form(raw in tricky_target()) {
                if let Ok(normal) = target(&raw) {
                    let again = target(&normal).unwrap();
                    prop_assert_eq!(again.as_ref(), normal.as_ref());
                    let path = normal.split('?').next().unwrap();
                    prop_assert!(!path.contains("//"), "{}", normal);
                    prop_assert!(!path.split('/').any(|s| s == "." || s == ".."), "{}", normal);
                }
            }

            #[test]
            fn any_target_or_host_is_answered_without_a_panic(raw in "\\PC{0,64}", port in any::<u16>()) {
                let _ = target(&raw);
                if let Ok(normal) = host(&raw, port) {
                    prop_assert_eq!(host(&normal, port).unwrap(), normal.clone());
                    let _ = without_port(&normal);
                }
                let _ = without_port(&raw);
            }

            #[test]
            fn any_request_head_normalises_or_is_refused(
                target_text in tricky_target(),
                host_text in "[a-zA-Z0-9.:\\[\\]@-]{0,30}",
                tls in any::<bool>(),
            ) {
                let Ok(request) = http::Request::get(target_text.as_str())
                    .header("host", host_text.as_str())
                    .body(())
                else {
                    return Ok(());
                };
                let (mut parts, ()) = request.into_parts();
                if normalize(&mut parts, tls, 8192).is_ok() {
                    // A second pass changes nothing.
                    let before = (parts.uri.clone(), parts.headers.clone());
                    normalize(&mut parts, tls, 8192).unwrap();
                    prop_assert_eq!(before, (parts.uri.clone(), parts.headers.clone()));
                }
            }
        }
    }
}
