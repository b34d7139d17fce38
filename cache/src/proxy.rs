//! The pipeline from a downstream request to an upstream fetch: look up, serve a hit, serve
//! stale while revalidating, revalidate, coalesce misses, pass what cannot be cached, and
//! invalidate on unsafe methods.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use outpost_server::admin::{Purge, PurgeRequest};
use outpost_server::body::{self as bodies, Body};
use outpost_server::{Handler, Peer};
use prometheus_client::registry::Registry;
use tokio::sync::oneshot;

use crate::coalesce::{BodyBroken, Fill, FillHead, InFlight, Joined, StreamHead};
use crate::config::CacheConfig;
use crate::freshness::Timing;
use crate::headers;
use crate::key::{self, CacheKey};
use crate::metrics::{CacheMetrics, OutcomeLabel};
use crate::policy::{self, CacheRules, Reuse, Uncacheable};
use crate::status::{self, CacheOutcome, Forward};
use crate::store::{Lookup, Store, StoredObject};
use crate::upstream::{Upstream, UpstreamError};

pub use outpost_server::HEALTH_PATH;

const SUPPORTED: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::OPTIONS,
];

/// Memory for the keys remembered as uncacheable (hit-for-pass).
const HIT_FOR_PASS_BYTES: u64 = 16 << 20;

/// Whether a node faces clients (an edge) or other CDN nodes (a parent). Only a client-facing
/// node removes the CDN-only headers; a parent passes them on to the edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Edge,
    Parent,
}

/// A caching reverse proxy in front of an [`Upstream`]: the engine both tiers run.
pub struct CacheNode<U: Upstream> {
    inner: Arc<Inner<U>>,
}

impl<U: Upstream> Clone for CacheNode<U> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<U> {
    name: Arc<str>,
    tier: Tier,
    store: Store,
    inflight: InFlight,
    /// Keys whose last response was uncacheable: fetched without coalescing for a while.
    pass_keys: moka::sync::Cache<Arc<str>, ()>,
    rules: CacheRules,
    /// The port is part of the cache key (off: every port of a host shares its objects).
    key_port: bool,
    body_idle_timeout: Duration,
    fill_deadline: Duration,
    upstream: U,
    metrics: CacheMetrics,
    /// Draining: the health path fails so new clients go elsewhere; requests are still served.
    draining: std::sync::atomic::AtomicBool,
    /// Requests being answered (until the response head is ready), reported on the health
    /// path as the node's load.
    in_flight: std::sync::atomic::AtomicU64,
}

/// The parts of a request a fetch needs after the handler has returned.
#[derive(Debug, Clone)]
struct RequestHead {
    method: Method,
    version: Version,
    headers: HeaderMap,
    peer: Peer,
}

type Released = (Response<Incoming>, Uncacheable);

/// How a request goes upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UpstreamMode {
    /// A cache fill: GET for the whole object, with only our own validators.
    Fill,
    /// A GET for one client of an uncacheable key: the client's Range and preconditions go too.
    ClientOwn,
    /// Any other method, as the client sent it.
    Pass,
}

impl<U: Upstream> CacheNode<U> {
    /// A node called `name`, caching in front of `upstream`, its metrics registered on
    /// `registry`.
    pub fn new(
        name: &str,
        tier: Tier,
        config: &CacheConfig,
        upstream: U,
        registry: &mut Registry,
    ) -> Self {
        // Weighed in bytes, like the store: huge keys cannot make it large.
        let pass_keys = moka::sync::Cache::builder()
            .max_capacity(HIT_FOR_PASS_BYTES)
            .weigher(|key: &Arc<str>, ()| u32::try_from(key.len() + 96).unwrap_or(u32::MAX))
            .time_to_live(Duration::from_secs(config.hit_for_pass_secs.max(1)))
            .build();
        Self {
            inner: Arc::new(Inner {
                name: name.into(),
                tier,
                store: Store::new(config.capacity_mib << 20, config.max_variants),
                inflight: InFlight::new(crate::coalesce::FillBudget::new(
                    config.fill_buffer_mib << 20,
                )),
                pass_keys,
                rules: config.rules(),
                key_port: config.key_port,
                body_idle_timeout: config.body_idle_timeout(),
                fill_deadline: Duration::from_secs(config.fill_deadline_secs),
                upstream,
                metrics: CacheMetrics::register(registry),
                draining: std::sync::atomic::AtomicBool::new(false),
                in_flight: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn upstream(&self) -> &U {
        &self.inner.upstream
    }
}

/// Counts one request in [`Inner::in_flight`] for as long as it lives.
struct InFlightGuard<'a>(&'a std::sync::atomic::AtomicU64);

impl<'a> InFlightGuard<'a> {
    fn enter(counter: &'a std::sync::atomic::AtomicU64) -> Self {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl<U: Upstream> Handler for CacheNode<U> {
    async fn handle(&self, request: Request<Body>, peer: Peer) -> Response<Body> {
        // Health probes (several checkers may probe at once) are not load.
        let _counted = (request.uri().path() != HEALTH_PATH)
            .then(|| InFlightGuard::enter(&self.inner.in_flight));
        let response = self.inner.clone().respond(request, peer).await;
        self.inner.metrics.response(response.status());
        response
    }
}

impl<U: Upstream> Purge for CacheNode<U> {
    fn purge(&self, request: &PurgeRequest) -> u64 {
        let store = &self.inner.store;
        // Fetches already under way may bring what is being purged: new requests start anew.
        self.inner.inflight.forget_all();
        let mut purged = 0;
        for url in &request.urls {
            if url.starts_with('/') {
                if let Ok(target) = outpost_server::normal::target(url) {
                    purged += store.purge_target(&target, request.soft);
                }
            } else if let Some(key) = CacheKey::from_url(url, self.inner.key_port) {
                purged += store.purge_key(&key, request.soft);
            }
        }
        for tag in &request.tags {
            purged += store.purge_tag(tag, request.soft);
        }
        purged
    }

    fn drain(&self, draining: bool) -> bool {
        self.inner
            .draining
            .store(draining, std::sync::atomic::Ordering::Relaxed);
        true
    }
}

/// Ends a fill that its task left unfinished (a panic or a cancelled task): a pending head
/// becomes a 502 and an unfinished body breaks.
struct AbandonGuard<U: Upstream> {
    fill: Arc<Fill>,
    /// The node and key the fill is registered under, to leave the in-flight map.
    leave: Option<(Arc<Inner<U>>, Arc<str>)>,
}

impl<U: Upstream> Drop for AbandonGuard<U> {
    fn drop(&mut self) {
        self.fill.abandon();
        if let Some((node, key)) = &self.leave {
            node.inflight.leave(key, &self.fill);
        }
    }
}

impl<U: Upstream> Inner<U> {
    async fn respond(self: Arc<Self>, request: Request<Body>, peer: Peer) -> Response<Body> {
        let (parts, body) = request.into_parts();
        if parts.uri.path() == HEALTH_PATH && matches!(parts.method, Method::GET | Method::HEAD) {
            if self.draining.load(std::sync::atomic::Ordering::Relaxed) {
                return bodies::text(StatusCode::SERVICE_UNAVAILABLE, "draining");
            }
            let mut response = bodies::text(StatusCode::OK, "ok");
            let load = self.in_flight.load(std::sync::atomic::Ordering::Relaxed);
            response
                .headers_mut()
                .insert(outpost_server::health::LOAD_HEADER, HeaderValue::from(load));
            return response;
        }
        if !SUPPORTED.contains(&parts.method) {
            let mut response = bodies::text(StatusCode::METHOD_NOT_ALLOWED, "method not supported");
            response.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"),
            );
            return response;
        }
        if headers::cdn_loop_contains(&parts.headers, &self.name) {
            tracing::warn!(node = %self.name, uri = %parts.uri, "request loop refused");
            return bodies::text(
                StatusCode::LOOP_DETECTED,
                format!("request loop: already passed through {}", self.name),
            );
        }
        let Some(key) = CacheKey::from_request(&parts, self.key_port) else {
            return bodies::text(
                StatusCode::BAD_REQUEST,
                "a valid Host header (host or host:port) is required",
            );
        };
        let head = RequestHead {
            method: parts.method,
            version: parts.version,
            headers: parts.headers,
            peer,
        };
        if head.method == Method::GET || head.method == Method::HEAD {
            self.serve_cacheable(head, key).await
        } else {
            self.pass_method(head, body, key).await
        }
    }

    /// GET and HEAD: from the cache when possible, else through a (coalesced) fetch.
    async fn serve_cacheable(self: Arc<Self>, head: RequestHead, key: CacheKey) -> Response<Body> {
        let now = SystemTime::now();
        let has_authorization = head.headers.contains_key(header::AUTHORIZATION);
        let mut fwd = Forward::UriMiss;
        let mut stale = None;
        match self.store.lookup(&key, &head.headers) {
            Lookup::Found(object) if has_authorization && !object.policy.allows_authorization => {
                fwd = Forward::Request;
            }
            // Stored compressed in a coding this client cannot decode (the origin did not say
            // it varies on Accept-Encoding): fetch what this client can take.
            Lookup::Found(object)
                if !key::encoding_accepted(
                    object.headers.get(&header::CONTENT_ENCODING).as_ref(),
                    &head.headers,
                ) =>
            {
                fwd = Forward::VaryMiss;
            }
            Lookup::Found(object) => {
                let purged_at = object.purged_at();
                match object.policy.reuse(now, purged_at) {
                    Reuse::Fresh => {
                        let ttl = object.policy.ttl(now, purged_at);
                        return self.serve_object(&head, &object, CacheOutcome::Hit { ttl });
                    }
                    Reuse::StaleWhileRevalidate => {
                        let ttl = object.policy.ttl(now, purged_at);
                        self.clone()
                            .refresh_in_background(&head, &key, object.clone());
                        return self.serve_object(
                            &head,
                            &object,
                            CacheOutcome::StaleWhileRevalidate { ttl },
                        );
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

        let shared_key = key.shared();
        if has_authorization {
            // Answers to authenticated requests are never shared while in flight.
            return self.solo_fetch(head, key, stale, Forward::Request).await;
        }
        if self.pass_keys.contains_key(&shared_key) {
            return self.solo_fetch(head, key, stale, Forward::Bypass).await;
        }
        match self.inflight.join(&shared_key) {
            Joined::Leader(fill) => {
                let led = self
                    .clone()
                    .lead(fill, true, head.clone(), key.clone(), stale, fwd)
                    .await;
                match led {
                    Some(response) => response,
                    None => self.solo_fetch(head, key, None, fwd).await,
                }
            }
            Joined::Waiter(fill) => {
                self.metrics.coalesced.inc();
                match self.serve_from_fill(&head, &fill, None, fwd, true).await {
                    Some(response) => response,
                    None => self.solo_fetch(head, key, None, fwd).await,
                }
            }
        }
    }

    /// A fetch no other request joins.
    async fn solo_fetch(
        self: Arc<Self>,
        head: RequestHead,
        key: CacheKey,
        stale: Option<Arc<StoredObject>>,
        fwd: Forward,
    ) -> Response<Body> {
        match self
            .clone()
            .lead(self.inflight.solo(), false, head, key, stale, fwd)
            .await
        {
            Some(response) => response,
            None => self.error_response(
                StatusCode::BAD_GATEWAY,
                "upstream fetch abandoned",
                fwd,
                false,
            ),
        }
    }

    /// Starts the fetch that writes into `fill` and answers this request from it; `None`
    /// when the request must fetch on its own after all.
    async fn lead(
        self: Arc<Self>,
        fill: Arc<Fill>,
        registered: bool,
        head: RequestHead,
        key: CacheKey,
        stale: Option<Arc<StoredObject>>,
        fwd: Forward,
    ) -> Option<Response<Body>> {
        let (leader, released) = oneshot::channel();
        self.clone().spawn_fill(
            fill.clone(),
            registered,
            head.clone(),
            key,
            stale,
            fwd,
            Some(leader),
        );
        self.serve_from_fill(&head, &fill, Some(released), fwd, false)
            .await
    }

    fn refresh_in_background(
        self: Arc<Self>,
        head: &RequestHead,
        key: &CacheKey,
        stale: Arc<StoredObject>,
    ) {
        let shared_key = key.shared();
        if self.inflight.is_in_flight(&shared_key) {
            return;
        }
        if let Joined::Leader(fill) = self.inflight.join(&shared_key) {
            self.spawn_fill(
                fill,
                true,
                head.clone(),
                key.clone(),
                Some(stale),
                Forward::Stale,
                None,
            );
        }
    }

    /// Starts the upstream fetch that writes into `fill`.
    #[allow(clippy::too_many_arguments)]
    fn spawn_fill(
        self: Arc<Self>,
        fill: Arc<Fill>,
        registered: bool,
        head: RequestHead,
        key: CacheKey,
        stale: Option<Arc<StoredObject>>,
        fwd: Forward,
        leader: Option<oneshot::Sender<Released>>,
    ) {
        tokio::spawn(async move {
            // Whatever happens to this task, readers of the fill are never left waiting and
            // the key is free for the next fetch.
            let _abandon = AbandonGuard {
                fill: fill.clone(),
                leave: registered.then(|| (self.clone(), key.shared())),
            };
            self.fill_from_upstream(&fill, registered, &head, &key, stale, fwd, leader)
                .await;
        });
    }

    #[allow(clippy::too_many_arguments)]
    async fn fill_from_upstream(
        &self,
        fill: &Arc<Fill>,
        registered: bool,
        head: &RequestHead,
        key: &CacheKey,
        stale: Option<Arc<StoredObject>>,
        fwd: Forward,
        leader: Option<oneshot::Sender<Released>>,
    ) {
        let request_time = SystemTime::now();
        let ticket = self.store.ticket(key);
        // A key known to be uncacheable is fetched for this client alone: its Range and
        // preconditions go upstream, so a seek in a large uncacheable video stays a seek.
        let mode = if fwd == Forward::Bypass {
            UpstreamMode::ClientOwn
        } else {
            UpstreamMode::Fill
        };
        let request = self.upstream_request(head, key, None, mode, stale.as_deref());
        let result = self.send(request, key).await;
        let response_time = SystemTime::now();
        let stand_in = |status: Option<StatusCode>| {
            let stale = stale.as_ref()?;
            let purged_at = stale.purged_at();
            stale
                .policy
                .serves_stale_on_error(response_time, purged_at)
                .then(|| {
                    let outcome = CacheOutcome::StaleIfError {
                        fwd,
                        status: status.map(|s| s.as_u16()),
                        ttl: stale.policy.ttl(response_time, purged_at),
                    };
                    FillHead::Object(stale.clone(), outcome)
                })
        };
        let response = match result {
            Err(error) => {
                tracing::warn!(node = %self.name, key = key.as_str(), %error, "upstream fetch failed");
                let head = stand_in(None)
                    .unwrap_or_else(|| FillHead::Failed(error.status(), error.to_string().into()));
                fill.publish_head(head);
                return;
            }
            Ok(response) => response,
        };
        let status = response.status();
        if status.is_server_error()
            && let Some(stand_in) = stand_in(Some(status))
        {
            fill.publish_head(stand_in);
            return;
        }
        if status == StatusCode::NOT_MODIFIED
            && let Some(stale) = &stale
        {
            self.refresh_after_304(
                fill,
                head,
                key,
                stale,
                response.headers(),
                request_time,
                response_time,
                ticket,
            );
            return;
        }

        let (mut parts, body) = response.into_parts();
        // A body ended only by the connection closing cannot be told from a truncated one.
        let delimited = parts.headers.contains_key(header::CONTENT_LENGTH)
            || parts.headers.contains_key(header::TRANSFER_ENCODING)
            || status == StatusCode::NO_CONTENT;
        let expected_length = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        headers::remove_hop_by_hop(&mut parts.headers);
        let timing = Timing::from_headers(&parts.headers, request_time, response_time);
        let vary = key::vary_fields(&parts.headers);
        let storable = match &vary {
            // Hit-for-pass: relayed straight through, never buffered for sharing.
            _ if fwd == Forward::Bypass => Err(Uncacheable::HitForPass),
            None => Err(Uncacheable::VaryStar),
            Some(_) if !delimited => Err(Uncacheable::Unframed),
            Some(_) => policy::storability(
                &Method::GET,
                &head.headers,
                status,
                &parts.headers,
                &self.rules,
                timing,
            ),
        };
        let policy = match storable {
            Ok(policy) => policy,
            Err(reason) => {
                // An error status says nothing about the URL's cacheability; marking it would
                // switch coalescing off exactly while the upstream struggles.
                if registered && reason != Uncacheable::Status {
                    self.pass_keys.insert(key.shared(), ());
                }
                fill.publish_head(FillHead::Released);
                if let Some(leader) = leader {
                    let _ = leader.send((Response::from_parts(parts, body), reason));
                }
                return;
            }
        };
        let vary = vary.unwrap_or_default();
        let variant = key::variant_key(&vary, &head.headers);
        let ttl = policy.ttl(response_time, None);
        fill.publish_head(FillHead::Streaming(Arc::new(StreamHead {
            status,
            headers: parts.headers.clone(),
            policy: policy.clone(),
            vary: vary.clone(),
            variant: variant.clone(),
            outcome: CacheOutcome::Forwarded {
                fwd,
                status: Some(status.as_u16()),
                stored: true,
                collapsed: false,
                ttl: Some(ttl),
                detail: None,
            },
        })));
        drop(leader);

        let streamed = match tokio::time::timeout(
            self.fill_deadline,
            self.stream_body(fill, registered.then_some(key), body, expected_length),
        )
        .await
        {
            Ok(streamed) => streamed,
            Err(_) => Err(BodyBroken(
                format!(
                    "the fill took longer than its deadline of {} s",
                    self.fill_deadline.as_secs()
                )
                .into(),
            )),
        };
        match streamed {
            Ok((length, last)) if fill.is_relay() && length <= self.rules.max_object_bytes => {
                // Relayed for want of buffer memory: served, not stored.
                tracing::info!(node = %self.name, key = key.as_str(), length, buffered = self.inflight.budget().used(), "fill buffers over budget: relayed, not stored");
                if let Some(last) = last {
                    fill.push(last);
                }
                fill.finish(Ok(()));
            }
            Ok((length, last)) if length <= self.rules.max_object_bytes => {
                // A copy of exactly the body's size: the chunks are slices of larger read
                // buffers, which the cache must not keep alive.
                let whole = fill.collected_with(last.as_ref());
                let object = StoredObject::new(status, parts.headers, whole, policy, vary, variant);
                // Stored before the client gets its last byte, so a request that follows at
                // once is a hit.
                self.store
                    .insert_unless_purged(key, Arc::new(object), ticket);
                if let Some(last) = last {
                    fill.push(last);
                }
                fill.finish(Ok(()));
            }
            Ok((length, last)) => {
                // Too large to keep (no Content-Length told us in advance): later requests
                // pass straight through instead of buffering it again.
                tracing::info!(node = %self.name, key = key.as_str(), length, "object too large to store: passing it from now on");
                self.pass_keys.insert(key.shared(), ());
                if let Some(last) = last {
                    fill.push(last);
                }
                fill.finish(Ok(()));
            }
            Err(broken) => {
                tracing::warn!(node = %self.name, key = key.as_str(), error = %broken, "upstream body broke; not stored");
                fill.finish(Err(broken));
            }
        }
    }

    /// Copies the upstream body into the fill; on success, the length and, when the declared
    /// length told which chunk completes the body, that chunk, held back for the caller.
    async fn stream_body(
        &self,
        fill: &Arc<Fill>,
        registered: Option<&CacheKey>,
        mut body: Incoming,
        expected: Option<u64>,
    ) -> Result<(u64, Option<bytes::Bytes>), BodyBroken> {
        let mut length = 0u64;
        let mut relaying = false;
        loop {
            // Too large to keep, or the node's fills hold too much: stop buffering for the
            // cache at once, and let no new request join what is now only a relay.
            if !relaying
                && (length > self.rules.max_object_bytes || self.inflight.budget().exceeded())
            {
                relaying = true;
                fill.relay();
                if let Some(key) = registered {
                    self.inflight.leave(&key.shared(), fill);
                }
            }
            match tokio::time::timeout(self.body_idle_timeout, body.frame()).await {
                Err(_) => return Err(BodyBroken("upstream body stalled".into())),
                Ok(None) => return Ok((length, None)),
                Ok(Some(Err(error))) => return Err(BodyBroken(error.to_string().into())),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        length += data.len() as u64;
                        if Some(length) == expected {
                            return Ok((length, Some(data)));
                        }
                        fill.push(data);
                    }
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn refresh_after_304(
        &self,
        fill: &Fill,
        head: &RequestHead,
        key: &CacheKey,
        stale: &Arc<StoredObject>,
        not_modified: &HeaderMap,
        request_time: SystemTime,
        response_time: SystemTime,
        ticket: crate::store::FillTicket,
    ) {
        let mut fresh = not_modified.clone();
        headers::remove_hop_by_hop(&mut fresh);
        let stored = stale.headers.to_map();
        let mut merged = stored.clone();
        // The 304 vouches for the object as of now: the stored Date and Age describe the old
        // response, so they go unless the 304 brings its own.
        for name in [header::DATE, header::AGE] {
            if !fresh.contains_key(&name) {
                merged.remove(name);
            }
        }
        for name in fresh.keys() {
            if matches!(name.as_str(), "content-length" | "content-range") {
                continue;
            }
            merged.remove(name);
            for value in fresh.get_all(name) {
                merged.append(name.clone(), value.clone());
            }
        }
        // The stale object is served once more but not kept: the next request fetches whole.
        let not_stored = |detail: &'static str| {
            self.store.purge_key(key, false);
            fill.publish_head(FillHead::Object(
                stale.clone(),
                CacheOutcome::Forwarded {
                    fwd: Forward::Stale,
                    status: Some(304),
                    stored: false,
                    collapsed: false,
                    ttl: None,
                    detail: Some(detail),
                },
            ));
        };
        if !policy::not_modified_selects(&stored, &fresh) {
            // A 304 for some other response: nothing of it is kept.
            tracing::info!(node = %self.name, key = key.as_str(), "304 with other validators: not stored");
            not_stored("validator-mismatch");
            return;
        }
        let timing = Timing::from_headers(&merged, request_time, response_time);
        match policy::storability(
            &Method::GET,
            &head.headers,
            stale.status,
            &merged,
            &self.rules,
            timing,
        ) {
            Ok(policy) => {
                let ttl = policy.ttl(response_time, None);
                let object = Arc::new(StoredObject::new(
                    stale.status,
                    merged,
                    stale.body.clone(),
                    policy,
                    stale.vary.clone(),
                    stale.variant.clone(),
                ));
                self.store.insert_unless_purged(key, object.clone(), ticket);
                fill.publish_head(FillHead::Object(
                    object,
                    CacheOutcome::Forwarded {
                        fwd: Forward::Stale,
                        status: Some(304),
                        stored: true,
                        collapsed: false,
                        ttl: Some(ttl),
                        detail: None,
                    },
                ));
            }
            Err(reason) => not_stored(reason.detail()),
        }
    }

    /// Answers a request from a fill. `None`: this request must fetch on its own (the
    /// response was uncacheable, or varies differently for this request).
    async fn serve_from_fill(
        &self,
        head: &RequestHead,
        fill: &Arc<Fill>,
        released: Option<oneshot::Receiver<Released>>,
        fwd: Forward,
        collapsed: bool,
    ) -> Option<Response<Body>> {
        match fill.head().await {
            FillHead::Pending => None,
            FillHead::Released => {
                let (response, reason) = released?.await.ok()?;
                let status = response.status().as_u16();
                let outcome = CacheOutcome::Forwarded {
                    fwd,
                    status: Some(status),
                    stored: false,
                    collapsed: false,
                    ttl: None,
                    detail: Some(reason.detail()),
                };
                Some(self.relay(head, response, outcome))
            }
            FillHead::Failed(status, message) => {
                Some(self.error_response(status, &message, fwd, collapsed))
            }
            FillHead::Object(object, mut outcome) => {
                if collapsed
                    && (!object.matches(&head.headers)
                        || !key::encoding_accepted(
                            object.headers.get(&header::CONTENT_ENCODING).as_ref(),
                            &head.headers,
                        ))
                {
                    return None;
                }
                if let CacheOutcome::Forwarded {
                    collapsed: c,
                    stored,
                    ..
                } = &mut outcome
                    && collapsed
                {
                    *c = true;
                    *stored = false;
                }
                Some(self.serve_object(head, &object, outcome))
            }
            FillHead::Streaming(stream) => {
                if collapsed
                    && (!stream.vary.is_empty()
                        && key::variant_key(&stream.vary, &head.headers) != stream.variant
                        || !key::encoding_accepted(
                            stream.headers.get(header::CONTENT_ENCODING),
                            &head.headers,
                        ))
                {
                    return None;
                }
                let mut outcome = stream.outcome.clone();
                if let CacheOutcome::Forwarded {
                    collapsed: c,
                    stored,
                    ..
                } = &mut outcome
                    && collapsed
                {
                    *c = true;
                    *stored = false;
                }
                Some(self.serve_stream(head, fill, &stream, outcome).await)
            }
        }
    }

    /// Serves a response whose body is still arriving.
    async fn serve_stream(
        &self,
        head: &RequestHead,
        fill: &Arc<Fill>,
        stream: &StreamHead,
        outcome: CacheOutcome,
    ) -> Response<Body> {
        let wants_part = head.headers.contains_key(header::RANGE);
        let preconditions = [
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::IF_UNMODIFIED_SINCE,
        ]
        .iter()
        .any(|h| head.headers.contains_key(h));
        if wants_part || preconditions {
            // Ranges and preconditions are answered from the whole object.
            return match fill.complete().await {
                Ok(body) => {
                    let object = StoredObject::new(
                        stream.status,
                        stream.headers.clone(),
                        body,
                        stream.policy.clone(),
                        stream.vary.clone(),
                        stream.variant.clone(),
                    );
                    self.serve_object(head, &object, outcome)
                }
                Err(broken) => self.error_response(
                    StatusCode::BAD_GATEWAY,
                    &broken.to_string(),
                    Forward::UriMiss,
                    false,
                ),
            };
        }
        let mut headers = stream.headers.clone();
        let age = stream.policy.timing.current_age(SystemTime::now());
        self.finish_headers(&mut headers, head.version, &outcome, Some(age));
        self.count(&outcome);
        let body = if head.method == Method::HEAD {
            bodies::empty()
        } else {
            let bytes = self.metrics.bytes.clone();
            fill.clone().body(move |n| {
                bytes.inc_by(n as u64);
            })
        };
        let mut response = Response::new(body);
        *response.status_mut() = stream.status;
        *response.headers_mut() = headers;
        response
    }

    /// Serves a complete object, answering the client's own preconditions and ranges.
    fn serve_object(
        &self,
        head: &RequestHead,
        object: &StoredObject,
        outcome: CacheOutcome,
    ) -> Response<Body> {
        let mut headers = object.headers.to_map();
        let age = object.policy.timing.current_age(SystemTime::now());
        self.finish_headers(&mut headers, head.version, &outcome, Some(age));
        let (status, body) = if object.status == StatusCode::OK {
            let selection = outpost_representation::evaluate(
                &head.method,
                &head.headers,
                &headers,
                object.body.len() as u64,
            );
            outpost_representation::render(&selection, object.status, &mut headers, &object.body)
        } else {
            (object.status, object.body.clone())
        };
        self.count(&outcome);
        let body = if head.method == Method::HEAD {
            bodies::empty()
        } else {
            self.metrics.bytes.inc_by(body.len() as u64);
            bodies::full(body)
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }

    /// Passes an upstream response through unchanged but for the proxy's headers.
    fn relay(
        &self,
        head: &RequestHead,
        response: Response<Incoming>,
        outcome: CacheOutcome,
    ) -> Response<Body> {
        let (mut parts, body) = response.into_parts();
        headers::remove_hop_by_hop(&mut parts.headers);
        self.finish_headers(&mut parts.headers, head.version, &outcome, None);
        self.count(&outcome);
        let body = if head.method == Method::HEAD {
            bodies::empty()
        } else {
            let bytes = self.metrics.bytes.clone();
            body.map_frame(move |frame| {
                if let Some(data) = frame.data_ref() {
                    bytes.inc_by(data.len() as u64);
                }
                frame
            })
            .map_err(Into::into)
            .boxed_unsync()
        };
        Response::from_parts(parts, body)
    }

    /// Unsafe and other uncacheable methods go upstream as they are; a success invalidates the
    /// target URI and the Location / Content-Location of the same host (RFC 9111 section 4.4).
    async fn pass_method(
        self: Arc<Self>,
        head: RequestHead,
        body: Body,
        key: CacheKey,
    ) -> Response<Body> {
        // The whole body is read before anything goes upstream (as nginx's default
        // proxy_request_buffering): a body the client breaks or frames wrongly is the
        // client's error, and none of it reaches the upstream.
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => {
                let too_large = error.is::<http_body_util::LengthLimitError>();
                let (status, what) = if too_large {
                    (StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
                } else {
                    (StatusCode::BAD_REQUEST, "request body could not be read")
                };
                tracing::info!(node = %self.name, key = key.as_str(), %error, "{what}");
                let mut response = bodies::text(status, format!("{what}: {error}"));
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return response;
            }
        };
        let request = self.upstream_request(&head, &key, Some(body), UpstreamMode::Pass, None);
        match self.send(request, &key).await {
            Err(error) => {
                self.error_response(error.status(), &error.to_string(), Forward::Method, false)
            }
            Ok(response) => {
                let unsafe_method = head.method != Method::OPTIONS;
                if unsafe_method
                    && (response.status().is_success() || response.status().is_redirection())
                {
                    self.invalidate(&key, response.headers());
                }
                let outcome = CacheOutcome::Forwarded {
                    fwd: Forward::Method,
                    status: Some(response.status().as_u16()),
                    stored: false,
                    collapsed: false,
                    ttl: None,
                    detail: None,
                };
                self.relay(&head, response, outcome)
            }
        }
    }

    fn invalidate(&self, key: &CacheKey, response: &HeaderMap) {
        self.inflight.forget(&key.shared());
        self.store.purge_key(key, false);
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            let Some(location) = response.get(&name).and_then(|v| v.to_str().ok()) else {
                continue;
            };
            let target = if location.starts_with('/') {
                Some(CacheKey::new(key.host(), location))
            } else {
                CacheKey::from_url(location, self.key_port)
                    .filter(|other| other.host() == key.host())
            };
            if let Some(target) = target {
                self.store.purge_key(&target, false);
            }
        }
    }

    /// The request sent upstream. A cache fill asks for the whole object with GET and only
    /// our own validators; a pass sends the client's request as it is, with the body read in
    /// full (`None`: no body). The Host is the key's, always: the upstream answers for exactly
    /// the authority the object is stored under.
    fn upstream_request(
        &self,
        head: &RequestHead,
        key: &CacheKey,
        body: Option<bytes::Bytes>,
        mode: UpstreamMode,
        stale: Option<&StoredObject>,
    ) -> Request<Body> {
        let mut headers = head.headers.clone();
        headers::remove_hop_by_hop(&mut headers);
        // Framing is ours to set: a request that goes without a body declares none, so an
        // upstream that honours Content-Length never reads the next request as a body.
        headers::remove_request_framing(&mut headers);
        let for_cache = mode != UpstreamMode::Pass;
        if mode == UpstreamMode::Fill {
            for name in [
                header::RANGE,
                header::IF_RANGE,
                header::IF_MATCH,
                header::IF_NONE_MATCH,
                header::IF_MODIFIED_SINCE,
                header::IF_UNMODIFIED_SINCE,
            ] {
                headers.remove(name);
            }
            // Exactly the codings the variant key stands for: what comes back is fit for every
            // client that shares the variant.
            headers.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_static(key::accepted_encodings(&head.headers)),
            );
            if let Some(stale) = stale {
                if let Some(etag) = stale.headers.get(&header::ETAG) {
                    headers.insert(header::IF_NONE_MATCH, etag);
                }
                if let Some(modified) = stale.headers.get(&header::LAST_MODIFIED) {
                    headers.insert(header::IF_MODIFIED_SINCE, modified);
                }
            }
        }
        if let Ok(host) = HeaderValue::from_str(key.host()) {
            headers.insert(header::HOST, host);
        }
        headers::add_forwarding(
            &mut headers,
            &self.name,
            head.version,
            head.peer.remote,
            head.peer.tls,
        );
        let body = match body {
            Some(bytes) if !bytes.is_empty() || head.method != Method::GET => {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                bodies::full(bytes)
            }
            _ => bodies::empty(),
        };
        let mut request = Request::new(body);
        *request.method_mut() = if for_cache {
            Method::GET
        } else {
            head.method.clone()
        };
        *request.uri_mut() = Uri::try_from(key.target()).unwrap_or_else(|_| Uri::from_static("/"));
        *request.headers_mut() = headers;
        request
    }

    async fn send(
        &self,
        request: Request<Body>,
        key: &CacheKey,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let started = std::time::Instant::now();
        let result = self.upstream.send(request, key).await;
        match &result {
            Ok(_) => self
                .metrics
                .upstream_latency
                .observe(started.elapsed().as_secs_f64()),
            Err(_) => {
                self.metrics.upstream_errors.inc();
            }
        }
        result
    }

    /// Adds Age, Cache-Status and Via, and removes the CDN-only headers at the edge.
    fn finish_headers(
        &self,
        headers: &mut HeaderMap,
        version: Version,
        outcome: &CacheOutcome,
        age: Option<Duration>,
    ) {
        if let Some(age) = age
            && let Ok(value) = HeaderValue::from_str(&age.as_secs().to_string())
        {
            headers.insert(header::AGE, value);
        }
        status::append(headers, &self.name, outcome);
        headers::append_via(headers, version, &self.name);
        if self.tier == Tier::Edge {
            headers::strip_cdn_only(headers);
        }
    }

    fn error_response(
        &self,
        status: StatusCode,
        message: &str,
        fwd: Forward,
        collapsed: bool,
    ) -> Response<Body> {
        let outcome = CacheOutcome::Forwarded {
            fwd,
            status: None,
            stored: false,
            collapsed,
            ttl: None,
            detail: Some(if status == StatusCode::GATEWAY_TIMEOUT {
                "upstream-timeout"
            } else {
                "upstream-error"
            }),
        };
        let mut response = bodies::text(status, message);
        self.finish_headers(response.headers_mut(), Version::HTTP_11, &outcome, None);
        self.metrics
            .requests
            .get_or_create(&OutcomeLabel { outcome: "error" })
            .inc();
        response
    }

    fn count(&self, outcome: &CacheOutcome) {
        let label = outcome.label();
        self.metrics
            .requests
            .get_or_create(&OutcomeLabel { outcome: label })
            .inc();
        match label {
            "hit" => self.metrics.hits.inc(),
            "stale" => self.metrics.stale.inc(),
            _ => self.metrics.misses.inc(),
        };
    }
}
