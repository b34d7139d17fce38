//! The `Cache-Status` entry (RFC 9211) each tier appends, named for what happened.

use http::HeaderMap;
use http::header::HeaderName;

use crate::headers;

/// Why a request was forwarded upstream (the `fwd` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// Nothing stored under the key.
    UriMiss,
    /// Stored, but not the variant this request selects.
    VaryMiss,
    /// Stored but stale (or no-cache): revalidated upstream.
    Stale,
    /// The method is never served from cache.
    Method,
    /// The request itself (Authorization) kept it from being served from cache.
    Request,
    /// The key is known to be uncacheable: fetched without coalescing.
    Bypass,
}

impl Forward {
    fn as_str(self) -> &'static str {
        match self {
            Self::UriMiss => "uri-miss",
            Self::VaryMiss => "vary-miss",
            Self::Stale => "stale",
            Self::Method => "method",
            Self::Request => "request",
            Self::Bypass => "bypass",
        }
    }
}

/// What this cache did for one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Served fresh from cache.
    Hit { ttl: i64 },
    /// Served fresh from the disk tier (and moved back to memory).
    DiskHit { ttl: i64 },
    /// Served stale from cache while a background fetch refreshes it.
    StaleWhileRevalidate { ttl: i64 },
    /// Forwarded upstream; `stored` when the response was kept, `collapsed` when this request
    /// waited on another's fetch.
    Forwarded {
        fwd: Forward,
        status: Option<u16>,
        stored: bool,
        collapsed: bool,
        ttl: Option<i64>,
        detail: Option<&'static str>,
    },
    /// Upstream failed and the stale copy stood in (stale-if-error).
    StaleIfError {
        fwd: Forward,
        status: Option<u16>,
        ttl: i64,
    },
}

impl CacheOutcome {
    /// The Cache-Status entry for `node`.
    pub fn entry(&self, node: &str) -> String {
        match self {
            Self::Hit { ttl } => format!("{node}; hit; ttl={ttl}"),
            Self::DiskHit { ttl } => format!("{node}; hit; ttl={ttl}; detail=disk"),
            Self::StaleWhileRevalidate { ttl } => {
                format!("{node}; hit; ttl={ttl}; detail=stale-while-revalidate")
            }
            Self::Forwarded {
                fwd,
                status,
                stored,
                collapsed,
                ttl,
                detail,
            } => {
                let mut entry = format!("{node}; fwd={}", fwd.as_str());
                if let Some(status) = status {
                    entry.push_str(&format!("; fwd-status={status}"));
                }
                if let Some(ttl) = ttl {
                    entry.push_str(&format!("; ttl={ttl}"));
                }
                if *stored {
                    entry.push_str("; stored");
                }
                if *collapsed {
                    entry.push_str("; collapsed");
                }
                if let Some(detail) = detail {
                    entry.push_str(&format!("; detail={detail}"));
                }
                entry
            }
            Self::StaleIfError { fwd, status, ttl } => {
                let mut entry = format!("{node}; hit; fwd={}", fwd.as_str());
                if let Some(status) = status {
                    entry.push_str(&format!("; fwd-status={status}"));
                }
                entry.push_str(&format!("; ttl={ttl}; detail=stale-if-error"));
                entry
            }
        }
    }

    /// The label used in metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Hit { .. } => "hit",
            Self::DiskHit { .. } => "disk-hit",
            Self::StaleWhileRevalidate { .. } | Self::StaleIfError { .. } => "stale",
            Self::Forwarded {
                fwd: Forward::Stale,
                ..
            } => "revalidated",
            Self::Forwarded { stored: true, .. } => "miss",
            Self::Forwarded {
                collapsed: true, ..
            } => "miss",
            Self::Forwarded { .. } => "pass",
        }
    }
}

/// Appends this node's entry to the response's Cache-Status (nearest the client last).
pub fn append(headers: &mut HeaderMap, node: &str, outcome: &CacheOutcome) {
    headers::append(
        headers,
        HeaderName::from_static("cache-status"),
        &outcome.entry(node),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_like_rfc_9211() {
        assert_eq!(
            CacheOutcome::Hit { ttl: 42 }.entry("edge-ams"),
            "edge-ams; hit; ttl=42"
        );
        let miss = CacheOutcome::Forwarded {
            fwd: Forward::UriMiss,
            status: Some(200),
            stored: true,
            collapsed: false,
            ttl: None,
            detail: None,
        };
        assert_eq!(
            miss.entry("parent-eu"),
            "parent-eu; fwd=uri-miss; fwd-status=200; stored"
        );
        let mut h = HeaderMap::new();
        append(&mut h, "parent-eu", &miss);
        append(&mut h, "edge-ams", &CacheOutcome::Hit { ttl: 3 });
        assert_eq!(
            h["cache-status"],
            "parent-eu; fwd=uri-miss; fwd-status=200; stored, edge-ams; hit; ttl=3"
        );
        let sie = CacheOutcome::StaleIfError {
            fwd: Forward::Stale,
            status: Some(503),
            ttl: -20,
        };
        assert_eq!(
            sie.entry("e"),
            "e; hit; fwd=stale; fwd-status=503; ttl=-20; detail=stale-if-error"
        );
    }
}
