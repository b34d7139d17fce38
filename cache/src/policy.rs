//! Whether a response may be stored (RFC 9111 section 3) and how a stored one may be reused
//! (section 4): plain logic, no I/O.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method, StatusCode, header};
use serde::{Deserialize, Serialize};

use crate::directives::ResponseDirectives;
use crate::freshness::{self, Heuristic, Timing};

/// Operator settings for what the cache stores and for how long it may serve stale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheRules {
    /// Fraction of the time since Last-Modified granted as heuristic freshness.
    pub heuristic_fraction: f64,
    /// Cap on heuristic freshness, in seconds.
    pub heuristic_max_secs: u64,
    /// stale-while-revalidate window for responses that do not state one, in seconds.
    pub stale_while_revalidate_secs: u64,
    /// stale-if-error window for responses that do not state one, in seconds.
    pub stale_if_error_secs: u64,
    /// Store responses that carry Set-Cookie (off: they pass through uncached).
    pub cache_set_cookie: bool,
    /// Largest object stored, in bytes; larger ones are served but not kept.
    pub max_object_bytes: u64,
    /// Lifetimes by content type for responses that state none (no max-age, s-maxage or
    /// Expires), in place of the heuristic: what an object is says how long it lives.
    pub lifetimes: Vec<TypeLifetime>,
}

/// How long a response of these content types lives when it does not say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeLifetime {
    /// Media types without parameters, compared case-insensitively:
    /// `application/vnd.apple.mpegurl`, `video/iso.segment`.
    pub content_types: Vec<String>,
    pub ttl_secs: u64,
}

/// The video defaults: playlists and MPDs for half a 2-second target duration (a live
/// playlist changes every segment; AWS MediaPackage's rule), media and init segments for a
/// day (a segment never changes once published).
pub fn default_lifetimes() -> Vec<TypeLifetime> {
    let types = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect();
    vec![
        TypeLifetime {
            content_types: types(&[
                "application/vnd.apple.mpegurl",
                "application/x-mpegurl",
                "audio/mpegurl",
                "application/dash+xml",
            ]),
            ttl_secs: 1,
        },
        TypeLifetime {
            content_types: types(&[
                "video/iso.segment",
                "video/mp4",
                "audio/mp4",
                "video/mp2t",
                "audio/aac",
            ]),
            ttl_secs: 86_400,
        },
    ]
}

impl CacheRules {
    /// The configured lifetime of a response's content type, if any.
    fn type_lifetime(&self, response: &HeaderMap) -> Option<Duration> {
        let media = outpost_server::media_type::essence(response)?;
        self.lifetimes
            .iter()
            .find(|l| {
                l.content_types
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(media))
            })
            .map(|l| Duration::from_secs(l.ttl_secs))
    }
}

impl Default for CacheRules {
    fn default() -> Self {
        Self {
            heuristic_fraction: 0.1,
            heuristic_max_secs: 24 * 3600,
            stale_while_revalidate_secs: 0,
            stale_if_error_secs: 300,
            cache_set_cookie: false,
            max_object_bytes: 64 * 1024 * 1024,
            lifetimes: default_lifetimes(),
        }
    }
}

impl CacheRules {
    fn heuristic(&self) -> Heuristic {
        Heuristic {
            fraction: self.heuristic_fraction,
            max: Duration::from_secs(self.heuristic_max_secs),
        }
    }
}

/// Why a response is not stored; named as in the `detail` of Cache-Status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uncacheable {
    Method,
    Status,
    NoStore,
    Private,
    Authorization,
    SetCookie,
    VaryStar,
    NoFreshness,
    TooLarge,
    /// The body's end is marked only by the connection closing: a truncated one looks the same.
    Unframed,
    /// The key gave an uncacheable response recently: passed without a look.
    HitForPass,
}

impl Uncacheable {
    pub fn detail(self) -> &'static str {
        match self {
            Self::Method => "method",
            Self::Status => "status",
            Self::NoStore => "no-store",
            Self::Private => "private",
            Self::Authorization => "authorization",
            Self::SetCookie => "set-cookie",
            Self::VaryStar => "vary-star",
            Self::NoFreshness => "no-freshness",
            Self::TooLarge => "too-large",
            Self::Unframed => "unframed",
            Self::HitForPass => "hit-for-pass",
        }
    }
}

/// The reuse policy fixed when a response is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPolicy {
    pub timing: Timing,
    pub lifetime: Duration,
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
    /// must-revalidate, proxy-revalidate or no-cache: never served stale.
    pub forbids_stale: bool,
    /// no-cache: revalidated before every reuse.
    pub no_cache: bool,
    /// The response explicitly allows serving requests that carry Authorization.
    pub allows_authorization: bool,
}

#[cfg(test)]
impl StoredPolicy {
    /// A response fetched just now, with no Date and no Age, fresh for `lifetime`, no stale
    /// allowances: what tests of storing need.
    pub(crate) fn fresh_for(lifetime: Duration) -> Self {
        let now = SystemTime::now();
        Self {
            timing: Timing {
                request_time: now,
                response_time: now,
                date: None,
                age: Duration::ZERO,
            },
            lifetime,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            forbids_stale: false,
            no_cache: false,
            allows_authorization: false,
        }
    }
}

/// What a stored response is good for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Serve it as it is.
    Fresh,
    /// Serve it stale and refresh it in the background.
    StaleWhileRevalidate,
    /// Ask upstream first (with its validators).
    Revalidate,
}

/// Decides whether a response to `method` with `request` headers may be stored.
pub fn storability(
    method: &Method,
    request: &HeaderMap,
    status: StatusCode,
    response: &HeaderMap,
    rules: &CacheRules,
    timing: Timing,
) -> Result<StoredPolicy, Uncacheable> {
    if method != Method::GET && method != Method::HEAD {
        return Err(Uncacheable::Method);
    }
    // Only final, complete responses we understand; 206 is never stored (we fetch whole).
    if !(status.is_success() || status.is_redirection() || status.is_client_error())
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Err(Uncacheable::Status);
    }
    let (directives, _) = ResponseDirectives::for_cdn(response);
    if directives.no_store {
        return Err(Uncacheable::NoStore);
    }
    if directives.private {
        return Err(Uncacheable::Private);
    }
    let allows_authorization =
        directives.public || directives.s_maxage.is_some() || directives.must_revalidate;
    if request.contains_key(header::AUTHORIZATION) && !allows_authorization {
        return Err(Uncacheable::Authorization);
    }
    if response.contains_key(header::SET_COOKIE) && !rules.cache_set_cookie {
        return Err(Uncacheable::SetCookie);
    }
    if response
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|f| f.trim() == "*"))
    {
        return Err(Uncacheable::VaryStar);
    }
    if response
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|len| len > rules.max_object_bytes)
    {
        return Err(Uncacheable::TooLarge);
    }
    let stated = directives.s_maxage.is_some()
        || directives.max_age.is_some()
        || response.contains_key(header::EXPIRES);
    let by_type = if stated {
        None
    } else {
        rules.type_lifetime(response)
    };
    let lifetime = by_type.or_else(|| {
        freshness::lifetime(
            status,
            response,
            &directives,
            &rules.heuristic(),
            timing.response_time,
        )
    });
    let has_validator =
        response.contains_key(header::ETAG) || response.contains_key(header::LAST_MODIFIED);
    let lifetime = match lifetime {
        Some(lifetime) => lifetime,
        // Worth keeping only to revalidate cheaply.
        None if has_validator && directives.no_cache => Duration::ZERO,
        None => return Err(Uncacheable::NoFreshness),
    };
    if lifetime.is_zero() && !has_validator && directives.stale_if_error.is_none() {
        return Err(Uncacheable::NoFreshness);
    }
    Ok(StoredPolicy {
        timing,
        lifetime,
        // s-maxage carries the meaning of proxy-revalidate (RFC 9111 section 5.2.2.10): only
        // the response's own stale directives may allow stale, not the operator's defaults.
        stale_while_revalidate: directives.stale_while_revalidate.unwrap_or(default_stale(
            directives.s_maxage,
            rules.stale_while_revalidate_secs,
        )),
        stale_if_error: directives.stale_if_error.unwrap_or(default_stale(
            directives.s_maxage,
            rules.stale_if_error_secs,
        )),
        forbids_stale: directives.forbids_stale(),
        no_cache: directives.no_cache,
        allows_authorization,
    })
}

fn default_stale(s_maxage: Option<Duration>, default_secs: u64) -> Duration {
    match s_maxage {
        Some(_) => Duration::ZERO,
        None => Duration::from_secs(default_secs),
    }
}

/// Whether a 304 answers for the stored response it would update (RFC 9111 section 4.3.4):
/// its entity tag matches the stored one, or, without one, its Last-Modified does; a 304
/// with no validator at all is taken to mean the one stored response.
pub fn not_modified_selects(stored: &HeaderMap, not_modified: &HeaderMap) -> bool {
    use outpost_representation::EntityTag;
    let tag = |h: &HeaderMap| {
        h.get(header::ETAG)
            .and_then(|v| EntityTag::parse(v.as_bytes()))
    };
    if not_modified.contains_key(header::ETAG) {
        return match (tag(stored), tag(not_modified)) {
            (Some(stored), Some(new)) => stored.weak_eq(&new),
            _ => false,
        };
    }
    match (
        stored.get(header::LAST_MODIFIED),
        not_modified.get(header::LAST_MODIFIED),
    ) {
        (_, None) => true,
        (Some(stored), Some(new)) => stored == new,
        (None, Some(_)) => false,
    }
}

impl StoredPolicy {
    /// Remaining freshness in whole seconds; negative once stale. A soft purge at `purged_at`
    /// ends freshness there.
    pub fn ttl(&self, now: SystemTime, purged_at: Option<SystemTime>) -> i64 {
        let natural = secs(self.lifetime) - secs(self.timing.current_age(now));
        match purged_at {
            Some(purged_at) => {
                let since_purge = now.duration_since(purged_at).unwrap_or(Duration::ZERO);
                natural.min(-secs(since_purge))
            }
            None => natural,
        }
    }

    fn staleness(&self, now: SystemTime, purged_at: Option<SystemTime>) -> Option<Duration> {
        let age = self.timing.current_age(now);
        let natural = age.checked_sub(self.lifetime);
        let purged = purged_at.map(|at| now.duration_since(at).unwrap_or(Duration::ZERO));
        match (natural, purged) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// What the stored response is good for at `now`.
    pub fn reuse(&self, now: SystemTime, purged_at: Option<SystemTime>) -> Reuse {
        if self.no_cache {
            return Reuse::Revalidate;
        }
        match self.staleness(now, purged_at) {
            None => Reuse::Fresh,
            Some(stale) if !self.forbids_stale && stale <= self.stale_while_revalidate => {
                Reuse::StaleWhileRevalidate
            }
            Some(_) => Reuse::Revalidate,
        }
    }

    /// Whether the stored response may stand in for an upstream error at `now`.
    pub fn serves_stale_on_error(&self, now: SystemTime, purged_at: Option<SystemTime>) -> bool {
        if self.forbids_stale {
            return false;
        }
        match self.staleness(now, purged_at) {
            None => true,
            Some(stale) => stale <= self.stale_if_error,
        }
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn response(cc: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if !cc.is_empty() {
            h.insert("cache-control", HeaderValue::from_str(cc).unwrap());
        }
        h.insert(
            "date",
            HeaderValue::from_str(&httpdate::fmt_http_date(at(0))).unwrap(),
        );
        h
    }

    fn store(req: &HeaderMap, status: u16, resp: &HeaderMap) -> Result<StoredPolicy, Uncacheable> {
        let timing = Timing::from_headers(resp, at(0), at(0));
        storability(
            &Method::GET,
            req,
            StatusCode::from_u16(status).unwrap(),
            resp,
            &CacheRules::default(),
            timing,
        )
    }

    #[test]
    fn what_an_object_is_says_how_long_it_lives_when_it_does_not_say() {
        let none = HeaderMap::new();
        let typed = |content_type: &'static str, extra: &[(&'static str, &'static str)]| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            let date = httpdate::fmt_http_date(at(0));
            headers.insert(header::DATE, HeaderValue::from_str(&date).unwrap());
            for (name, value) in extra {
                headers.insert(*name, HeaderValue::from_static(value));
            }
            headers
        };
        // A playlist that a heuristic would keep for a day (modified long before) lives 1 s.
        let playlist = typed(
            "application/vnd.apple.mpegurl",
            &[("last-modified", "Thu, 01 Jan 2009 00:00:00 GMT")],
        );
        let p = store(&none, 200, &playlist).unwrap();
        assert_eq!(p.ttl(at(0), None), 1);
        // A segment with no validator at all, which no heuristic would store, lives a day.
        let p = store(&none, 200, &typed("video/iso.segment", &[])).unwrap();
        assert_eq!(p.ttl(at(0), None), 86_400);
        let p = store(&none, 200, &typed("audio/mp4; codecs=mp4a", &[])).unwrap();
        assert_eq!(p.ttl(at(0), None), 86_400);
        // What the origin says wins.
        let said = typed("application/dash+xml", &[("cache-control", "max-age=10")]);
        assert_eq!(store(&none, 200, &said).unwrap().ttl(at(0), None), 10);
        let said = typed("video/mp2t", &[("cache-control", "no-store")]);
        assert_eq!(store(&none, 200, &said).unwrap_err(), Uncacheable::NoStore);
        // Other types keep the heuristic.
        assert_eq!(
            store(&none, 200, &typed("text/html", &[])).unwrap_err(),
            Uncacheable::NoFreshness
        );
    }

    #[test]
    fn refuses_what_a_shared_cache_must_not_store() {
        let none = HeaderMap::new();
        assert_eq!(
            store(&none, 200, &response("no-store, max-age=60")),
            Err(Uncacheable::NoStore)
        );
        assert_eq!(
            store(&none, 200, &response("private, max-age=60")),
            Err(Uncacheable::Private)
        );
        assert_eq!(
            store(&none, 200, &response("")),
            Err(Uncacheable::NoFreshness)
        );
        assert_eq!(
            store(&none, 500, &response("max-age=60")),
            Err(Uncacheable::Status)
        );
        assert_eq!(
            store(&none, 206, &response("max-age=60")),
            Err(Uncacheable::Status)
        );
        let mut vary = response("max-age=60");
        vary.insert("vary", HeaderValue::from_static("accept, *"));
        assert_eq!(store(&none, 200, &vary), Err(Uncacheable::VaryStar));
        let mut cookie = response("max-age=60");
        cookie.insert("set-cookie", HeaderValue::from_static("a=b"));
        assert_eq!(store(&none, 200, &cookie), Err(Uncacheable::SetCookie));
        let policy = storability(
            &Method::POST,
            &none,
            StatusCode::OK,
            &response("max-age=60"),
            &CacheRules::default(),
            Timing::from_headers(&none, at(0), at(0)),
        );
        assert_eq!(policy, Err(Uncacheable::Method));
    }

    #[test]
    fn authorization_needs_explicit_permission() {
        let mut auth = HeaderMap::new();
        auth.insert("authorization", HeaderValue::from_static("Bearer x"));
        assert_eq!(
            store(&auth, 200, &response("max-age=60")),
            Err(Uncacheable::Authorization)
        );
        assert!(
            store(&auth, 200, &response("public, max-age=60"))
                .unwrap()
                .allows_authorization
        );
        assert!(store(&auth, 200, &response("s-maxage=60")).is_ok());
        assert!(store(&auth, 200, &response("max-age=60, must-revalidate")).is_ok());
    }

    #[test]
    fn fresh_then_swr_then_revalidate() {
        let p = store(
            &HeaderMap::new(),
            200,
            &response("max-age=10, stale-while-revalidate=5"),
        )
        .unwrap();
        assert_eq!(p.reuse(at(5), None), Reuse::Fresh);
        assert_eq!(p.ttl(at(5), None), 5);
        assert_eq!(p.reuse(at(12), None), Reuse::StaleWhileRevalidate);
        assert_eq!(p.reuse(at(16), None), Reuse::Revalidate);
        assert_eq!(p.ttl(at(16), None), -6);
        // default stale-if-error of 300 s applies
        assert!(p.serves_stale_on_error(at(300), None));
        assert!(!p.serves_stale_on_error(at(311), None));
    }

    #[test]
    fn must_revalidate_and_no_cache_never_serve_stale() {
        let p = store(
            &HeaderMap::new(),
            200,
            &response("max-age=10, must-revalidate, stale-while-revalidate=60"),
        )
        .unwrap();
        assert_eq!(p.reuse(at(11), None), Reuse::Revalidate);
        assert!(!p.serves_stale_on_error(at(11), None));
        let mut etag = response("no-cache");
        etag.insert("etag", HeaderValue::from_static("\"v1\""));
        let p = store(&HeaderMap::new(), 200, &etag).unwrap();
        assert_eq!(p.reuse(at(0), None), Reuse::Revalidate);
    }

    #[test]
    fn s_maxage_forbids_the_default_stale_windows() {
        let rules = CacheRules {
            stale_while_revalidate_secs: 30,
            stale_if_error_secs: 300,
            ..CacheRules::default()
        };
        let policy = |cc: &str| {
            let resp = response(cc);
            let timing = Timing::from_headers(&resp, at(0), at(0));
            storability(
                &Method::GET,
                &HeaderMap::new(),
                StatusCode::OK,
                &resp,
                &rules,
                timing,
            )
            .unwrap()
        };
        let p = policy("s-maxage=10");
        assert_eq!(p.reuse(at(12), None), Reuse::Revalidate);
        assert!(!p.serves_stale_on_error(at(12), None));
        // Its own stale directives still count.
        assert!(policy("s-maxage=10, stale-if-error=60").serves_stale_on_error(at(12), None));
        // Without s-maxage the defaults apply.
        assert_eq!(
            policy("max-age=10").reuse(at(12), None),
            Reuse::StaleWhileRevalidate
        );
        // proxy-revalidate forbids them too.
        let p = policy("max-age=10, proxy-revalidate");
        assert_eq!(p.reuse(at(12), None), Reuse::Revalidate);
        assert!(!p.serves_stale_on_error(at(12), None));
    }

    #[test]
    fn interim_responses_are_never_stored() {
        for status in [100, 103] {
            assert_eq!(
                store(&HeaderMap::new(), status, &response("max-age=60")),
                Err(Uncacheable::Status)
            );
        }
    }

    #[test]
    fn a_304_updates_only_the_response_it_validates() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        let stored = h(&[
            ("etag", "\"v1\""),
            ("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT"),
        ]);
        assert!(not_modified_selects(&stored, &h(&[("etag", "\"v1\"")])));
        assert!(not_modified_selects(&stored, &h(&[("etag", "W/\"v1\"")])));
        assert!(!not_modified_selects(&stored, &h(&[("etag", "\"v2\"")])));
        assert!(!not_modified_selects(&h(&[]), &h(&[("etag", "\"v1\"")])));
        assert!(not_modified_selects(
            &stored,
            &h(&[("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT")])
        ));
        assert!(!not_modified_selects(
            &stored,
            &h(&[("last-modified", "Tue, 02 Jan 2024 00:00:00 GMT")])
        ));
        assert!(not_modified_selects(&stored, &h(&[])));
    }

    #[test]
    fn soft_purge_makes_stale_but_keeps_stale_windows() {
        let p = store(
            &HeaderMap::new(),
            200,
            &response("max-age=600, stale-while-revalidate=30"),
        )
        .unwrap();
        assert_eq!(p.reuse(at(10), Some(at(5))), Reuse::StaleWhileRevalidate);
        assert!(p.ttl(at(10), Some(at(5))) <= -5);
        assert_eq!(p.reuse(at(100), Some(at(5))), Reuse::Revalidate);
        assert!(p.serves_stale_on_error(at(100), Some(at(5))));
    }
}

/// A [`StoredPolicy`] as the disk tier writes it: times in milliseconds since the epoch and
/// durations in milliseconds (sub-millisecond parts are dropped, which no freshness decision
/// can notice). Memory keeps the smaller [`CompactPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PackedPolicy {
    request_ms: u64,
    /// The response came this long after the request was sent.
    response_after_ms: u32,
    /// `u64::MAX` when the response had no valid Date.
    date_ms: u64,
    age_ms: u64,
    lifetime_ms: u64,
    stale_while_revalidate_ms: u64,
    stale_if_error_ms: u64,
    forbids_stale: bool,
    no_cache: bool,
    allows_authorization: bool,
}

fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX - 1))
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl PackedPolicy {
    pub(crate) fn pack(policy: &StoredPolicy) -> Self {
        let timing = &policy.timing;
        let request_ms = epoch_ms(timing.request_time);
        let response_after_ms =
            u32::try_from(epoch_ms(timing.response_time).saturating_sub(request_ms))
                .unwrap_or(u32::MAX);
        Self {
            request_ms,
            response_after_ms,
            date_ms: timing.date.map_or(u64::MAX, epoch_ms),
            age_ms: duration_ms(timing.age),
            lifetime_ms: duration_ms(policy.lifetime),
            stale_while_revalidate_ms: duration_ms(policy.stale_while_revalidate),
            stale_if_error_ms: duration_ms(policy.stale_if_error),
            forbids_stale: policy.forbids_stale,
            no_cache: policy.no_cache,
            allows_authorization: policy.allows_authorization,
        }
    }

    pub(crate) fn unpack(&self) -> StoredPolicy {
        let at = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
        StoredPolicy {
            timing: Timing {
                request_time: at(self.request_ms),
                response_time: at(self
                    .request_ms
                    .saturating_add(u64::from(self.response_after_ms))),
                date: (self.date_ms != u64::MAX).then(|| at(self.date_ms)),
                age: Duration::from_millis(self.age_ms),
            },
            lifetime: Duration::from_millis(self.lifetime_ms),
            stale_while_revalidate: Duration::from_millis(self.stale_while_revalidate_ms),
            stale_if_error: Duration::from_millis(self.stale_if_error_ms),
            forbids_stale: self.forbids_stale,
            no_cache: self.no_cache,
            allows_authorization: self.allows_authorization,
        }
    }
}

/// A [`StoredPolicy`] as the memory store keeps it, in 40 bytes instead of 120: the request
/// time and the lifetime in milliseconds, and what HTTP only ever gives in whole seconds (Date,
/// Age, stale-while-revalidate, stale-if-error) in seconds. Rounding goes the safe way: a Date
/// a fraction earlier makes the response a fraction older, and a stale allowance a fraction
/// shorter serves stale a fraction less.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CompactPolicy {
    request_ms: u64,
    lifetime_ms: u64,
    /// The response came this long after the request was sent.
    response_after_ms: u32,
    /// `u32::MAX` when the response had no valid Date.
    date_secs: u32,
    age_secs: u32,
    stale_while_revalidate_secs: u32,
    stale_if_error_secs: u32,
    forbids_stale: bool,
    no_cache: bool,
    allows_authorization: bool,
}

/// Whole seconds of `ms` milliseconds, rounded down, at most `u32::MAX`.
fn ms_to_secs(ms: u64) -> u32 {
    u32::try_from(ms / 1000).unwrap_or(u32::MAX)
}

impl CompactPolicy {
    pub(crate) fn pack(policy: &StoredPolicy) -> Self {
        let packed = PackedPolicy::pack(policy);
        Self {
            request_ms: packed.request_ms,
            lifetime_ms: packed.lifetime_ms,
            response_after_ms: packed.response_after_ms,
            // A Date past 2106 reads as the last second before (never "no Date").
            date_secs: if packed.date_ms == u64::MAX {
                u32::MAX
            } else {
                ms_to_secs(packed.date_ms).min(u32::MAX - 1)
            },
            age_secs: ms_to_secs(packed.age_ms),
            stale_while_revalidate_secs: ms_to_secs(packed.stale_while_revalidate_ms),
            stale_if_error_secs: ms_to_secs(packed.stale_if_error_ms),
            forbids_stale: packed.forbids_stale,
            no_cache: packed.no_cache,
            allows_authorization: packed.allows_authorization,
        }
    }

    /// The response's Date, in seconds since the epoch.
    pub(crate) fn date_secs(&self) -> Option<u32> {
        (self.date_secs != u32::MAX).then_some(self.date_secs)
    }

    pub(crate) fn unpack(&self) -> StoredPolicy {
        let ms = |secs: u32| u64::from(secs) * 1000;
        PackedPolicy {
            request_ms: self.request_ms,
            response_after_ms: self.response_after_ms,
            date_ms: self.date_secs().map_or(u64::MAX, ms),
            age_ms: ms(self.age_secs),
            lifetime_ms: self.lifetime_ms,
            stale_while_revalidate_ms: ms(self.stale_while_revalidate_secs),
            stale_if_error_ms: ms(self.stale_if_error_secs),
            forbids_stale: self.forbids_stale,
            no_cache: self.no_cache,
            allows_authorization: self.allows_authorization,
        }
        .unpack()
    }
}

#[cfg(test)]
mod compact_tests {
    use super::*;

    #[test]
    fn the_compact_policy_keeps_what_http_gives_and_rounds_the_safe_way() {
        let request = SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_123);
        let policy = StoredPolicy {
            timing: Timing {
                request_time: request,
                response_time: request + Duration::from_millis(40),
                date: Some(request - Duration::from_millis(500)),
                age: Duration::from_secs(7),
            },
            lifetime: Duration::from_millis(31_536_000_250),
            stale_while_revalidate: Duration::from_millis(30_900),
            stale_if_error: Duration::from_secs(86_400),
            forbids_stale: true,
            no_cache: false,
            allows_authorization: true,
        };
        assert_eq!(std::mem::size_of::<CompactPolicy>(), 40);
        let back = CompactPolicy::pack(&policy).unpack();
        assert_eq!(back.timing.request_time, request);
        assert_eq!(back.timing.response_time, policy.timing.response_time);
        assert_eq!(back.lifetime, policy.lifetime);
        assert_eq!(back.timing.age, Duration::from_secs(7));
        assert_eq!(back.stale_if_error, Duration::from_secs(86_400));
        // Whole seconds, rounded down: a Date no later, stale for no longer.
        assert!(back.timing.date.unwrap() <= policy.timing.date.unwrap());
        assert!(
            policy
                .timing
                .date
                .unwrap()
                .duration_since(back.timing.date.unwrap())
                .unwrap()
                < Duration::from_secs(1)
        );
        assert_eq!(back.stale_while_revalidate, Duration::from_secs(30));
        assert_eq!(
            (back.forbids_stale, back.no_cache, back.allows_authorization),
            (true, false, true)
        );
        let no_date = StoredPolicy {
            timing: Timing {
                date: None,
                ..policy.timing
            },
            ..policy
        };
        assert_eq!(CompactPolicy::pack(&no_date).unpack().timing.date, None);
    }
}
