//! The planning step of a GET or HEAD: from what the store found and the request alone, what
//! the node does next. Plain logic with no I/O; the pipeline carries the plan out.

use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderMap;
use http::header;

use crate::key;
use crate::policy::Reuse;
use crate::status::Forward;
use crate::store::{Lookup, StoredObject};

/// What happens to a cacheable request.
#[derive(Debug)]
pub enum CachePlan {
    /// Served from the stored object, which is fresh for `ttl` more seconds.
    Hit { object: Arc<StoredObject>, ttl: i64 },
    /// Served stale from the stored object now, while a background fetch refreshes it.
    StaleWhileRevalidate { object: Arc<StoredObject>, ttl: i64 },
    /// Fetched upstream.
    Fetch(FetchPlan),
}

/// How a request goes upstream.
#[derive(Debug)]
pub struct FetchPlan {
    /// Why it goes upstream (the `fwd` of its Cache-Status).
    pub fwd: Forward,
    /// The stored object being revalidated: its validators go upstream, and it stands in
    /// when the upstream fails and its stale-if-error allows.
    pub stale: Option<Arc<StoredObject>>,
    pub sharing: Sharing,
}

/// Whether other requests for the key may share the fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Coalesced: the first request leads the fill, the others read it as it arrives.
    Coalesced,
    /// For this request alone: an answer to an authenticated request is never shared while
    /// in flight, and a key marked hit-for-pass is not coalesced.
    Alone,
}

/// Plans a GET or HEAD. `trusted`: the node holds its purge lease, so what it stored may be
/// served as it is (otherwise every stored object is revalidated first). `hit_for_pass` says
/// whether the key is marked uncacheable; it is asked only when the request goes upstream, so
/// a hit costs no lookup of the mark.
pub fn plan(
    lookup: Lookup,
    request: &HeaderMap,
    trusted: bool,
    hit_for_pass: impl FnOnce() -> bool,
    now: SystemTime,
) -> CachePlan {
    let has_authorization = request.contains_key(header::AUTHORIZATION);
    let mut fwd = Forward::UriMiss;
    let mut stale = None;
    match lookup {
        Lookup::Found(object) if has_authorization && !object.policy().allows_authorization => {
            fwd = Forward::Request;
        }
        // Stored compressed in a coding this client cannot decode (the origin did not say it
        // varies on Accept-Encoding): fetch what this client can take.
        Lookup::Found(object)
            if !key::encoding_accepted(
                object.header(&header::CONTENT_ENCODING).as_ref(),
                request,
            ) =>
        {
            fwd = Forward::VaryMiss;
        }
        // A purge may have been missed: what is stored is only a set of validators.
        Lookup::Found(object) if !trusted => {
            fwd = Forward::Stale;
            stale = Some(object);
        }
        Lookup::Found(object) => {
            let purged_at = object.purged_at();
            // Unpacked once per hit: the store keeps it packed.
            let policy = object.policy();
            match policy.reuse(now, purged_at) {
                Reuse::Fresh => {
                    let ttl = policy.ttl(now, purged_at);
                    return CachePlan::Hit { object, ttl };
                }
                Reuse::StaleWhileRevalidate => {
                    let ttl = policy.ttl(now, purged_at);
                    return CachePlan::StaleWhileRevalidate { object, ttl };
                }
                Reuse::Revalidate => {
                    fwd = Forward::Stale;
                    stale = Some(object);
                }
            }
        }
        Lookup::VaryMiss => fwd = Forward::VaryMiss,
        Lookup::Miss => {}
    }
    let (fwd, sharing) = if has_authorization {
        (Forward::Request, Sharing::Alone)
    } else if hit_for_pass() {
        (Forward::Bypass, Sharing::Alone)
    } else {
        (fwd, Sharing::Coalesced)
    };
    CachePlan::Fetch(FetchPlan {
        fwd,
        stale,
        sharing,
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::{HeaderValue, Method, StatusCode};

    use std::time::Duration;

    use super::*;
    use crate::CacheConfig;
    use crate::freshness::Timing;
    use crate::policy;

    /// An object stored a moment ago with these response headers.
    fn stored(response: &[(&'static str, &'static str)]) -> Arc<StoredObject> {
        let mut headers = HeaderMap::new();
        for (name, value) in response {
            headers.insert(*name, HeaderValue::from_static(value));
        }
        let now = SystemTime::now();
        let policy = policy::storability(
            &Method::GET,
            &HeaderMap::new(),
            StatusCode::OK,
            &headers,
            &CacheConfig::default().rules(),
            Timing::from_headers(&headers, now, now),
        )
        .expect("storable");
        Arc::new(StoredObject::new(
            "a.test/x",
            StatusCode::OK,
            headers,
            Bytes::from_static(b"body"),
            policy,
            Vec::new(),
            String::new(),
        ))
    }

    fn request(headers: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn fetch(plan: CachePlan) -> FetchPlan {
        match plan {
            CachePlan::Fetch(fetch) => fetch,
            other => panic!("expected a fetch, got {other:?}"),
        }
    }

    fn never_marked() -> bool {
        false
    }

    #[test]
    fn a_fresh_object_is_a_hit_and_asks_nothing_of_hit_for_pass() {
        let object = stored(&[("cache-control", "max-age=60")]);
        let plan = plan(
            Lookup::Found(object),
            &request(&[]),
            true,
            || panic!("a hit looks up no mark"),
            SystemTime::now(),
        );
        assert!(
            matches!(plan, CachePlan::Hit { ttl, .. } if ttl >= 59),
            "{plan:?}"
        );
    }

    #[test]
    fn a_stale_object_within_its_window_is_served_while_it_revalidates() {
        let object = stored(&[("cache-control", "max-age=1, stale-while-revalidate=60")]);
        let plan = plan(
            Lookup::Found(object),
            &request(&[]),
            true,
            never_marked,
            SystemTime::now() + Duration::from_secs(5),
        );
        assert!(
            matches!(plan, CachePlan::StaleWhileRevalidate { .. }),
            "{plan:?}"
        );
    }

    #[test]
    fn a_stale_object_past_its_windows_is_revalidated_by_a_shared_fetch() {
        let object = stored(&[("cache-control", "no-cache"), ("etag", "\"1\"")]);
        let fetch = fetch(plan(
            Lookup::Found(object.clone()),
            &request(&[]),
            true,
            never_marked,
            SystemTime::now(),
        ));
        assert_eq!(
            (fetch.fwd, fetch.sharing),
            (Forward::Stale, Sharing::Coalesced)
        );
        assert!(Arc::ptr_eq(fetch.stale.as_ref().unwrap(), &object));
    }

    #[test]
    fn misses_say_which_kind_and_are_coalesced() {
        let miss = fetch(plan(
            Lookup::Miss,
            &request(&[]),
            true,
            never_marked,
            SystemTime::now(),
        ));
        assert_eq!(
            (miss.fwd, miss.sharing),
            (Forward::UriMiss, Sharing::Coalesced)
        );
        let vary = fetch(plan(
            Lookup::VaryMiss,
            &request(&[]),
            true,
            never_marked,
            SystemTime::now(),
        ));
        assert_eq!(vary.fwd, Forward::VaryMiss);
        assert!(miss.stale.is_none() && vary.stale.is_none());
    }

    #[test]
    fn an_authenticated_request_is_fetched_alone_unless_the_object_allows_sharing() {
        let private = stored(&[("cache-control", "max-age=60")]);
        let asked = request(&[("authorization", "Bearer x")]);
        let alone = fetch(plan(
            Lookup::Found(private),
            &asked,
            true,
            never_marked,
            SystemTime::now(),
        ));
        assert_eq!(
            (alone.fwd, alone.sharing),
            (Forward::Request, Sharing::Alone)
        );
        let public = stored(&[("cache-control", "public, max-age=60")]);
        let plan = plan(
            Lookup::Found(public),
            &asked,
            true,
            never_marked,
            SystemTime::now(),
        );
        assert!(matches!(plan, CachePlan::Hit { .. }), "{plan:?}");
    }

    #[test]
    fn a_key_marked_hit_for_pass_is_fetched_alone() {
        let fetch = fetch(plan(
            Lookup::Miss,
            &request(&[]),
            true,
            || true,
            SystemTime::now(),
        ));
        assert_eq!(
            (fetch.fwd, fetch.sharing),
            (Forward::Bypass, Sharing::Alone)
        );
    }

    #[test]
    fn a_stored_coding_the_client_cannot_decode_is_not_served() {
        let gzipped = stored(&[
            ("cache-control", "max-age=60"),
            ("content-encoding", "gzip"),
        ]);
        let fetch = fetch(plan(
            Lookup::Found(gzipped),
            &request(&[]),
            true,
            never_marked,
            SystemTime::now(),
        ));
        assert_eq!(fetch.fwd, Forward::VaryMiss);
    }

    #[test]
    fn without_the_purge_lease_a_fresh_object_is_only_validators() {
        let object = stored(&[("cache-control", "max-age=60")]);
        let plan = plan(
            Lookup::Found(object),
            &request(&[]),
            false,
            never_marked,
            SystemTime::now(),
        );
        let CachePlan::Fetch(fetch) = plan else {
            panic!("an untrusted store serves nothing as it is: {plan:?}");
        };
        assert_eq!(fetch.fwd, Forward::Stale);
        assert!(fetch.stale.is_some(), "its validators go upstream");
    }
}
