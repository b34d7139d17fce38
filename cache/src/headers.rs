//! Header rules of a proxy: hop-by-hop removal (RFC 9110 section 7.6.1), the CDN-only headers
//! stripped before clients, surrogate keys, Via, CDN-Loop (RFC 8586) and forwarding headers.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
];

/// Headers meant for the CDN alone, removed before a response reaches a client.
const CDN_ONLY: [&str; 4] = [
    "cdn-cache-control",
    "surrogate-control",
    "surrogate-key",
    "cache-tag",
];

/// Removes hop-by-hop headers, including those the Connection header names.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    outpost_server::normal::remove_connection_listed(headers);
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::PROXY_AUTHENTICATE);
}

/// Request headers that say how a message is framed or continued: set by whoever sends the
/// message, never copied from another one.
const REQUEST_FRAMING: [&str; 4] = ["content-length", "transfer-encoding", "expect", "trailer"];

/// Removes a request's framing headers (Content-Length, Transfer-Encoding, Expect, Trailer):
/// the request sent upstream declares its own body, or none.
pub fn remove_request_framing(headers: &mut HeaderMap) {
    for name in REQUEST_FRAMING {
        headers.remove(name);
    }
}

/// The prefix of the request headers an edge sets itself (for workers and origins:
/// `outpost-client-ip`, `outpost-edge`, ...); a client's own are removed.
pub const EDGE_HEADER_PREFIX: &str = "outpost-";

/// Removes every `outpost-*` header a client sent, but for the release pin
/// ([`outpost_server::RELEASE_HEADER`]), which is the client's to choose.
pub fn remove_edge_only(headers: &mut HeaderMap) {
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            name.as_str().starts_with(EDGE_HEADER_PREFIX)
                && name.as_str() != outpost_server::RELEASE_HEADER
        })
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
}

/// Removes the CDN-only headers before a response goes to a client.
pub fn strip_cdn_only(headers: &mut HeaderMap) {
    for name in CDN_ONLY {
        headers.remove(name);
    }
}

/// The purge tags of a response: `Surrogate-Key` (space-separated) and `Cache-Tag`
/// (comma-separated).
pub fn surrogate_keys(headers: &HeaderMap) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    let mut add = |tag: &str| {
        let tag = tag.trim();
        if !tag.is_empty() && !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_owned());
        }
    };
    for value in headers.get_all("surrogate-key") {
        value
            .to_str()
            .unwrap_or("")
            .split_whitespace()
            .for_each(&mut add);
    }
    for value in headers.get_all("cache-tag") {
        value.to_str().unwrap_or("").split(',').for_each(&mut add);
    }
    tags
}

/// Whether the request has already passed through `node` (RFC 8586).
pub fn cdn_loop_contains(headers: &HeaderMap, node: &str) -> bool {
    headers
        .get_all("cdn-loop")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|entry| {
            entry
                .split(';')
                .next()
                .is_some_and(|id| id.trim().eq_ignore_ascii_case(node))
        })
}

/// Adds `node` to CDN-Loop, Via, X-Forwarded-For and Forwarded on a request going upstream.
pub fn add_forwarding(
    headers: &mut HeaderMap,
    node: &str,
    version: http::Version,
    client: SocketAddr,
    tls: bool,
) {
    let proto = if tls { "https" } else { "http" };
    append(headers, HeaderName::from_static("cdn-loop"), node);
    append_via(headers, version, node);
    append(
        headers,
        HeaderName::from_static("x-forwarded-for"),
        &client.ip().to_string(),
    );
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| h.bytes().all(|b| b.is_ascii_graphic()) && !h.contains('"'))
        .map(|h| format!(";host=\"{h}\""))
        .unwrap_or_default();
    let forwarded_for = match client {
        SocketAddr::V4(v4) => v4.ip().to_string(),
        SocketAddr::V6(v6) => format!("\"[{}]\"", v6.ip()),
    };
    append(
        headers,
        header::FORWARDED,
        &format!("for={forwarded_for};by={node};proto={proto}{host}"),
    );
}

/// Adds this node to Via.
pub fn append_via(headers: &mut HeaderMap, version: http::Version, node: &str) {
    let protocol = match version {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    };
    append(headers, header::VIA, &format!("{protocol} {node}"));
}

/// Appends `value` to a list-valued header, joining every existing line into one.
pub(crate) fn append(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if !headers.contains_key(&name) {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
        return;
    }
    let mut joined: Vec<&str> = headers
        .get_all(&name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
        .collect();
    joined.push(value);
    let joined = joined.join(", ");
    if let Ok(value) = HeaderValue::from_str(&joined) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_listed_headers_go() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("content-type"));
    }

    #[test]
    fn surrogate_keys_from_both_headers() {
        let mut h = HeaderMap::new();
        h.insert("surrogate-key", HeaderValue::from_static("a b  c"));
        h.insert("cache-tag", HeaderValue::from_static("c, d"));
        assert_eq!(surrogate_keys(&h), vec!["a", "b", "c", "d"]);
        strip_cdn_only(&mut h);
        assert!(h.is_empty());
    }

    #[test]
    fn loops_are_detected_and_forwarding_appended() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("www.outpost.test"));
        add_forwarding(
            &mut h,
            "edge-ams",
            http::Version::HTTP_11,
            "127.0.1.5:5000".parse().unwrap(),
            false,
        );
        add_forwarding(
            &mut h,
            "parent-eu",
            http::Version::HTTP_11,
            "127.0.0.11:4000".parse().unwrap(),
            false,
        );
        assert!(cdn_loop_contains(&h, "edge-ams"));
        assert!(cdn_loop_contains(&h, "PARENT-EU"));
        assert!(!cdn_loop_contains(&h, "edge-nyc"));
        assert_eq!(h["via"], "1.1 edge-ams, 1.1 parent-eu");
        assert_eq!(h["x-forwarded-for"], "127.0.1.5, 127.0.0.11");
        assert!(
            h["forwarded"]
                .to_str()
                .unwrap()
                .starts_with("for=127.0.1.5;by=edge-ams;proto=http;host=\"www.outpost.test\"")
        );
    }
}
