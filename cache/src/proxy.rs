//! The pipeline from a downstream request to an upstream fetch, in phases: the request is
//! checked and keyed here; `crate::plan` decides from the lookup alone (hit, stale while
//! revalidating, fetch shared or alone); `fetch` fills from the upstream; `respond` finishes
//! what the client gets; `forward` passes uncacheable methods and builds every upstream
//! request.

mod fetch;
mod forward;
mod respond;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use outpost_server::admin::{Purge, PurgeRequest};
use outpost_server::body::{self as bodies, Body};
use outpost_server::{Handler, Peer};
use prometheus_client::registry::Registry;
use tokio::sync::oneshot;

use self::fetch::Fetch;
use crate::PurgeLease;
use crate::coalesce::{Fill, InFlight, Joined};
use crate::config::CacheConfig;
use crate::headers;
use crate::hit_for_pass::HitForPass;
use crate::key::CacheKey;
use crate::metrics::CacheMetrics;
use crate::plan::{self, CachePlan, FetchPlan, Sharing};
use crate::policy::{CacheRules, Uncacheable};
use crate::status::{CacheOutcome, Forward};
use crate::store::{Lookup, Promotion, Store, StoredObject};
use crate::upstream::Upstream;

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
    store: Store,
    inflight: InFlight,
    /// Keys whose last response was uncacheable: fetched without coalescing for a while.
    hit_for_pass: HitForPass,
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
    /// Whether stored objects may be served as they are (see [`PurgeLease`]).
    lease: Arc<PurgeLease>,
}

/// The parts of a request a fetch needs after the handler has returned.
#[derive(Debug, Clone)]
struct RequestHead {
    method: Method,
    version: Version,
    headers: HeaderMap,
    peer: Peer,
}

type Released = (Response<Body>, Uncacheable);

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
    pub fn new(name: &str, config: &CacheConfig, upstream: U, registry: &mut Registry) -> Self {
        Self::with_purge_lease(name, config, upstream, registry, Arc::default())
    }

    /// As [`new`](Self::new), with a purge lease the caller shares (an edge's parent set
    /// tells its parents the lease's place in the purge sequence, and hears theirs).
    pub fn with_purge_lease(
        name: &str,
        config: &CacheConfig,
        upstream: U,
        registry: &mut Registry,
        lease: Arc<PurgeLease>,
    ) -> Self {
        let disk = open_disk(name, config);
        let disk_metrics = if disk.is_some() {
            crate::metrics::DiskMetrics::register(registry)
        } else {
            crate::metrics::DiskMetrics::default()
        };
        Self {
            inner: Arc::new(Inner {
                name: name.into(),
                store: Store::with_disk(
                    config.capacity_mib << 20,
                    config.max_variants,
                    config.max_object_mib << 20,
                    disk,
                    disk_metrics,
                )
                .keeping(&config.keep),
                inflight: InFlight::new(crate::coalesce::FillBudget::new(
                    config.fill_buffer_mib << 20,
                )),
                hit_for_pass: HitForPass::new(Duration::from_secs(config.hit_for_pass_secs)),
                rules: config.rules(),
                key_port: config.key_port,
                body_idle_timeout: config.body_idle_timeout(),
                fill_deadline: Duration::from_secs(config.fill_deadline_secs),
                upstream,
                metrics: CacheMetrics::register(registry),
                draining: std::sync::atomic::AtomicBool::new(false),
                in_flight: std::sync::atomic::AtomicU64::new(0),
                lease,
            }),
        }
    }

    /// The node's purge lease: required and renewed by whoever follows a control node's
    /// purges; while it does not hold, stored objects are revalidated before they are served.
    pub fn purge_lease(&self) -> Arc<PurgeLease> {
        self.inner.lease.clone()
    }
}

/// The node's disk tier when `[cache] disk_mib` turns it on and `disk_dir` says where (the
/// node layer sets it to the state directory's `cache/`): `DIR/NAME.redb`. One that does not
/// open is logged and left out; the node runs on memory alone.
fn open_disk(name: &str, config: &CacheConfig) -> Option<crate::disk::DiskTier> {
    let dir = config.disk_dir.as_ref().filter(|_| config.disk_mib > 0)?;
    let path = dir.join(format!("{name}.redb"));
    match crate::disk::DiskTier::open(&path, config.disk_mib << 20) {
        Ok(tier) => {
            let (keys, bytes) = tier.usage();
            tracing::info!(node = name, path = %path.display(), keys, bytes, "disk cache opened");
            Some(tier)
        }
        Err(error) => {
            tracing::error!(node = name, %error, "disk cache left out");
            None
        }
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
        if request.all {
            return store.purge_all(request.soft);
        }
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
        self.inner.metrics.draining.set(i64::from(draining));
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

    /// GET and HEAD: planned from the lookup (`plan::plan`), then served from the store or
    /// fetched.
    async fn serve_cacheable(self: Arc<Self>, head: RequestHead, key: CacheKey) -> Response<Body> {
        let mut lookup = self.store.lookup(&key, &head.headers);
        let mut from_disk = false;
        // Variants left on disk, served from their files: only while fresh.
        let mut streamed = false;
        if matches!(lookup, Lookup::Miss) && self.store.on_disk(&key) {
            let store = self.store.clone();
            let wanted = key.clone();
            let promoted = tokio::task::spawn_blocking(move || store.promote(&wanted))
                .await
                .unwrap_or(Promotion::None);
            match promoted {
                Promotion::Promoted(ref objects) | Promotion::OnDisk(ref objects) => {
                    lookup = Store::select(objects, &head.headers);
                    from_disk = matches!(lookup, Lookup::Found(_));
                    streamed = from_disk && matches!(promoted, Promotion::OnDisk(_));
                }
                Promotion::Damaged => {
                    tracing::warn!(
                        node = &*self.name,
                        key = key.as_str(),
                        "damaged disk record dropped"
                    );
                }
                Promotion::None => {}
            }
        }
        let marked = || self.hit_for_pass.is_marked(&key);
        let trusted = self.lease.holds();
        let mut plan = plan::plan(lookup, &head.headers, trusted, marked, SystemTime::now());
        if streamed && !matches!(plan, CachePlan::Hit { .. }) {
            // A stale copy whose body is a file is not revalidated or served stale: fetched
            // afresh, the fill replaces it.
            plan = plan::plan(
                Lookup::Miss,
                &head.headers,
                trusted,
                marked,
                SystemTime::now(),
            );
        }
        match plan {
            CachePlan::Hit { object, ttl } if object.disk_body().is_some() => {
                self.serve_from_disk(&head, &key, &object, CacheOutcome::DiskHit { ttl })
            }
            CachePlan::Hit { object, ttl } => {
                let outcome = if from_disk {
                    CacheOutcome::DiskHit { ttl }
                } else {
                    CacheOutcome::Hit { ttl }
                };
                self.serve_object(&head, &object, outcome)
            }
            CachePlan::StaleWhileRevalidate { object, ttl } => {
                self.clone()
                    .refresh_in_background(&head, &key, object.clone());
                self.serve_object(&head, &object, CacheOutcome::StaleWhileRevalidate { ttl })
            }
            CachePlan::Fetch(plan) => self.fetch(head, key, plan).await,
        }
    }

    /// Carries out a fetch plan: a shared fetch leads or joins the key's fill; a request that
    /// finds the shared fill unfit for it (not storable, or another variant) fetches alone
    /// after all.
    async fn fetch(
        self: Arc<Self>,
        head: RequestHead,
        key: CacheKey,
        plan: FetchPlan,
    ) -> Response<Body> {
        let FetchPlan {
            fwd,
            stale,
            sharing,
        } = plan;
        if sharing == Sharing::Alone {
            return self.fetch_alone(head, key, stale, fwd).await;
        }
        let answered = match self.inflight.join(&key.shared()) {
            Joined::Leader(fill) => {
                let fetch = Fetch::new(fill, true, head.clone(), key.clone(), stale, fwd);
                self.clone().lead(fetch).await
            }
            Joined::Waiter(fill) => {
                self.metrics.coalesced.inc();
                self.serve_from_fill(&head, &fill, None, fwd, true).await
            }
        };
        match answered {
            Some(response) => response,
            None => self.fetch_alone(head, key, None, fwd).await,
        }
    }

    /// A fetch no other request joins.
    async fn fetch_alone(
        self: Arc<Self>,
        head: RequestHead,
        key: CacheKey,
        stale: Option<Arc<StoredObject>>,
        fwd: Forward,
    ) -> Response<Body> {
        let fetch = Fetch::new(self.inflight.solo(), false, head, key, stale, fwd);
        match self.clone().lead(fetch).await {
            Some(response) => response,
            None => self.error_response(
                StatusCode::BAD_GATEWAY,
                "upstream fetch abandoned",
                fwd,
                false,
            ),
        }
    }

    /// Starts `fetch` and answers its request from the fill; `None` when the request must
    /// fetch on its own after all.
    async fn lead(self: Arc<Self>, mut fetch: Fetch) -> Option<Response<Body>> {
        let (leader, released) = oneshot::channel();
        fetch.leader = Some(leader);
        let (head, fill, fwd) = (fetch.head.clone(), fetch.fill.clone(), fetch.fwd);
        self.clone().spawn_fill(fetch);
        self.serve_from_fill(&head, &fill, Some(released), fwd, false)
            .await
    }

    /// Refreshes a stale object without making anyone wait, unless a fill of its key is
    /// already under way.
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
            let fetch = Fetch::new(
                fill,
                true,
                head.clone(),
                key.clone(),
                Some(stale),
                Forward::Stale,
            );
            self.spawn_fill(fetch);
        }
    }
}
