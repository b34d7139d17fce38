//! Each node role on its bound listeners: the origin, a parent, an edge (with its workers),
//! each with its admin listener.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use http_body_util::BodyExt;
use outpost_cache::{CacheConfig, HttpClient};
use outpost_edge::{ParentSet, ParentTarget};
use outpost_origin::{Origin, OriginConfig};
use outpost_server::admin::{Admin, AdminExtension, Purge, Registry};
use outpost_server::admission::Admission;
use outpost_server::health::HealthSettings;
use outpost_server::tls::TlsTerminator;
use outpost_server::{Body, Handler, Limits, Peer, Shutdown};
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::error::StartError;
use crate::{NodeAddrs, Role};

/// A node's two listeners, bound.
pub struct Bound {
    pub name: String,
    pub data: TcpListener,
    pub admin: TcpListener,
    /// The HTTPS listener, for edges that serve HTTPS.
    pub https: Option<TcpListener>,
    /// The admin listener serves TLS.
    pub admin_tls: bool,
}

impl Bound {
    pub async fn bind(name: &str, data: SocketAddr, admin: SocketAddr) -> Result<Self, StartError> {
        Ok(Self {
            name: name.to_owned(),
            data: listen(name, "data", data).await?,
            admin: listen(name, "admin", admin).await?,
            https: None,
            admin_tls: false,
        })
    }

    /// Also binds an HTTPS listener on `https`.
    pub async fn with_https(mut self, https: Option<SocketAddr>) -> Result<Self, StartError> {
        if let Some(addr) = https {
            self.https = Some(listen(&self.name, "HTTPS", addr).await?);
        }
        Ok(self)
    }

    pub fn data_addr(&self) -> SocketAddr {
        self.data
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Where the node listens, once it serves.
    fn addrs(&self, role: Role, data_tls: bool) -> NodeAddrs {
        NodeAddrs {
            name: self.name.clone(),
            role,
            data: self.data_addr(),
            data_tls,
            admin: Some(self.admin_addr()),
            admin_tls: self.admin_tls,
            https: self.https.as_ref().and_then(|l| l.local_addr().ok()),
        }
    }
}

pub async fn listen(
    node: &str,
    listener: &'static str,
    addr: SocketAddr,
) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            node: node.to_owned(),
            listener,
            addr,
            source,
        })
}

/// Everything a node needs besides its own addresses.
pub struct Shared {
    pub token: Option<String>,
    /// TLS for the edges' HTTPS listeners.
    pub edge_tls: Option<Arc<TlsTerminator>>,
    /// The local CA, when the origin is shielded by mutual TLS: each node gets a client
    /// certificate from it and trusts the origin's certificate through it.
    pub shield: Option<Arc<crate::tls::Shield>>,
    /// How to verify an `https://` upstream that is not a shielded origin (a standalone
    /// edge's); `None`: such upstreams fail to connect.
    pub upstream_tls: Option<rustls::ClientConfig>,
    /// TLS for every admin listener.
    pub admin_tls: Option<Arc<TlsTerminator>>,
    /// Per-hostname HTTPS policies of the edges.
    pub host_policies: Vec<outpost_edge::HostPolicy>,
    /// HTTP/3 on every edge's HTTPS port, advertised for this long (`None`: off).
    pub http3: Option<u64>,
    pub quic: outpost_server::h3::QuicSettings,
    /// CORS at the edges (checked when the topology was loaded).
    pub cors: outpost_edge::CorsRules,
    /// Signed URLs at the edges (checked when the topology was loaded).
    pub signing: outpost_edge::Signing,
    pub prefetch: outpost_edge::PrefetchConfig,
    pub cache: CacheConfig,
    pub esi: outpost_esi::EsiConfig,
    pub health: HealthSettings,
    /// How edges route around bad paths to their parents.
    pub overlay: outpost_edge::OverlaySettings,
    /// The control node edges and parents follow for purges, if the topology has one.
    pub control: Option<ControlLink>,
    pub limits: Limits,
    pub shutdown: Shutdown,
    /// Where each edge and parent keeps its pushed releases (a subdirectory per node).
    pub releases_dir: std::path::PathBuf,
    /// Edge workers: the process's wasm runtime and the directory deployed workers are kept
    /// in (one subdirectory per edge). `None`: edges run no workers.
    pub workers: Option<WorkersSetup>,
}

/// How edges and parents reach the control node.
#[derive(Clone)]
pub struct ControlLink {
    /// Its API's URL.
    pub url: http::Uri,
    pub settings: crate::control::PurgeSync,
    /// A client for admin listeners (TLS against the local CA when they serve TLS).
    pub client: HttpClient,
}

/// What every edge of the process shares to run workers.
#[derive(Clone)]
pub struct WorkersSetup {
    pub runtime: Arc<outpost_workers::Runtime>,
    pub dir: std::path::PathBuf,
}

impl WorkersSetup {
    /// The runtime, caching compiled code under `state_dir/wasm-cache`, and workers kept under
    /// `state_dir/workers`.
    pub fn new(state_dir: &std::path::Path) -> Result<Self, StartError> {
        let cache = state_dir.join("wasm-cache");
        let state = |source| StartError::State {
            what: "creating the compiled-code cache",
            path: cache.clone(),
            source,
        };
        let cache = std::path::absolute(&cache).map_err(state)?;
        std::fs::create_dir_all(&cache).map_err(state)?;
        let runtime =
            outpost_workers::Runtime::new(Some(&cache)).map_err(|source| StartError::Workers {
                node: "every edge".into(),
                source,
            })?;
        Ok(Self {
            runtime,
            dir: state_dir.join("workers"),
        })
    }
}

impl Shared {
    /// The client a node fetches upstream with: with its own client certificate when the
    /// origin is shielded.
    fn upstream_client(&self, node: &str) -> HttpClient {
        let timeouts = self.cache.timeouts();
        match self
            .shield
            .as_ref()
            .map(|shield| shield.client_config(node))
        {
            Some(Ok(config)) => HttpClient::with_tls(timeouts, config),
            Some(Err(error)) => {
                tracing::error!(
                    node,
                    "no client certificate for the shielded origin: {error}"
                );
                HttpClient::new(timeouts)
            }
            None => match &self.upstream_tls {
                Some(config) => HttpClient::with_tls(timeouts, config.clone()),
                None => HttpClient::new(timeouts),
            },
        }
    }
}

/// The purge endpoint of a cache node: the cache itself, or, when the topology has a control
/// node, the cache behind a follower of the control node's purge sequence (started here).
fn purge_endpoint<U: outpost_cache::Upstream>(
    shared: &Shared,
    name: &str,
    cache: &outpost_cache::CacheNode<U>,
) -> Arc<dyn Purge> {
    let own: Arc<dyn Purge> = Arc::new(cache.clone());
    let Some(control) = &shared.control else {
        return own;
    };
    let follower = crate::control::follower::Follower::new(
        name,
        control.url.clone(),
        shared.token.clone().unwrap_or_default(),
        control.client.clone(),
        own.clone(),
        cache.purge_lease(),
        control.settings.clone(),
    );
    follower.spawn(shared.shutdown.signal());
    Arc::new(crate::control::follower::SequencedPurge {
        cache: own,
        follower,
    })
}

/// Starts the control node `settings` on `listener`, sequencing purges for `fleet` and keeping
/// the sequence's head in `state_dir`.
pub fn start_control(
    tasks: &mut JoinSet<()>,
    shared: &Shared,
    settings: &crate::topology::ControlNode,
    listener: TcpListener,
    fleet: crate::control::Fleet,
    client: HttpClient,
    state_dir: &std::path::Path,
) -> NodeAddrs {
    let name = settings.name.as_str();
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let mut registry = node_registry(name, Role::Control);
    let control = crate::control::Control::new(
        fleet,
        client,
        shared.token.clone().unwrap_or_default(),
        settings.purges.clone(),
        Some(state_dir.join(format!("{name}.purge-seq"))),
        &mut registry,
    );
    serve_admin(
        tasks,
        shared,
        name,
        listener,
        registry,
        None,
        vec![Arc::new(crate::control::ControlApi(Arc::new(control)))],
    );
    NodeAddrs {
        name: name.to_owned(),
        role: Role::Control,
        data: addr,
        data_tls: shared.admin_tls.is_some(),
        admin: Some(addr),
        admin_tls: shared.admin_tls.is_some(),
        https: None,
    }
}

/// Starts the dashboard of `topology` on `listener`, reading `nodes` (and the control node's
/// recent purges) through `client`.
pub fn start_dashboard(
    tasks: &mut JoinSet<()>,
    shared: &Shared,
    topology: &crate::topology::Topology,
    listener: TcpListener,
    nodes: &[NodeAddrs],
    client: HttpClient,
) -> NodeAddrs {
    let settings = topology.dashboard.clone().unwrap_or_default();
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let layout = crate::dashboard::layout(topology, nodes);
    let control = nodes
        .iter()
        .find(|n| n.role == Role::Control)
        .and_then(|n| n.admin_url()?.parse().ok());
    let dashboard = outpost_dashboard::Dashboard::new(
        layout,
        control,
        client,
        shared.token.clone().unwrap_or_default(),
        settings,
        shared.shutdown.signal(),
    );
    dashboard.spawn_collector();
    let mut limits = shared.limits.clone();
    limits.access_log = false;
    let admission = Admission::new(limits.connection_caps(false));
    spawn_listener(
        tasks,
        shared,
        "dashboard",
        (listener, None),
        dashboard,
        limits,
        admission,
    );
    NodeAddrs {
        name: "dashboard".into(),
        role: Role::Dashboard,
        data: addr,
        data_tls: false,
        admin: None,
        admin_tls: false,
        https: None,
    }
}

fn serve_admin(
    tasks: &mut JoinSet<()>,
    shared: &Shared,
    name: &str,
    admin: TcpListener,
    registry: Registry,
    purge: Option<Arc<dyn Purge>>,
    extensions: Vec<Arc<dyn AdminExtension>>,
) {
    let mut handler = Admin::new(name, shared.token.clone(), Arc::new(registry), purge);
    for extension in extensions {
        handler = handler.with_extension(extension);
    }
    let handler = Arc::new(handler);
    let tls = shared.admin_tls.clone();
    let mut limits = shared.limits.clone();
    limits.access_log = false;
    // Pushed objects (video files among them) arrive here, streamed to disk; every endpoint
    // that reads a body checks the token first.
    limits.max_body_bytes = limits.max_body_bytes.max(ADMIN_MAX_BODY_BYTES);
    // Its own count, so a flood on the data port cannot lock the operator out.
    let admission = Admission::new(limits.connection_caps(false));
    spawn_listener(
        tasks,
        shared,
        name,
        (admin, tls),
        handler,
        limits,
        admission,
    );
}

/// The largest request body the admin listener takes: one pushed object.
pub const ADMIN_MAX_BODY_BYTES: u64 = 64 << 30;

/// Serves `handler` on one of a node's listeners, behind `tls` when given, with or without
/// access-log lines, taking the connections `admission` has room for.
fn spawn_listener<H: Handler>(
    tasks: &mut JoinSet<()>,
    shared: &Shared,
    name: &str,
    (listener, tls): (TcpListener, Option<Arc<TlsTerminator>>),
    handler: Arc<H>,
    limits: Limits,
    admission: Arc<Admission>,
) {
    let (name, signal) = (name.into(), shared.shutdown.signal());
    match tls {
        Some(tls) => tasks.spawn(outpost_server::serve_tls(
            name, listener, tls, handler, limits, admission, signal,
        )),
        None => tasks.spawn(outpost_server::serve(
            name, listener, handler, limits, admission, signal,
        )),
    };
}

/// The connection count of a node's data listeners, shown in its metrics: per client network
/// on an edge (`public`), in all only on a parent or origin, whose clients are our own nodes.
fn data_admission(shared: &Shared, registry: &mut Registry, public: bool) -> Arc<Admission> {
    let admission = Admission::new(shared.limits.connection_caps(public));
    admission.register_metrics(registry);
    admission
}

/// The limits of a data listener: the topology's, with access-log lines.
fn data_limits(shared: &Shared) -> Limits {
    let mut limits = shared.limits.clone();
    limits.access_log = true;
    limits
}

/// Opens the releases node `name` keeps.
fn open_releases(
    shared: &Shared,
    name: &str,
) -> Result<Arc<outpost_releases::Releases>, StartError> {
    outpost_releases::Releases::open(name, &shared.releases_dir.join(name)).map_err(|source| {
        StartError::Releases {
            node: name.to_owned(),
            source,
        }
    })
}

/// Starts an edge pulling through `parents`, with `origin` as the last resort, and its
/// workers in front when the process runs workers.
pub fn start_edge(
    tasks: &mut JoinSet<()>,
    shared: &Shared,
    bound: Bound,
    parents: Vec<ParentTarget>,
    origin: Option<http::Uri>,
    location: Option<[f64; 2]>,
) -> Result<NodeAddrs, StartError> {
    let mut bound = bound;
    bound.admin_tls = shared.admin_tls.is_some();
    let addrs = bound.addrs(Role::Edge, false);
    let mut registry = node_registry(&bound.name, Role::Edge);
    let client = shared.upstream_client(&bound.name);
    let origin_hosts = origin
        .as_ref()
        .and_then(|uri| uri.host())
        .map(str::to_owned)
        .into_iter()
        .collect();
    let set =
        ParentSet::new(&bound.name, parents, origin, client).with_overlay(shared.overlay.clone());
    set.register_metrics(&mut registry);
    outpost_edge::spawn_health_checks(set.clone(), shared.health.clone(), shared.shutdown.signal());
    let edge = outpost_edge::edge(&bound.name, &shared.cache, set, &mut registry);
    let esi_metrics = outpost_esi::EsiMetrics::register(&mut registry);
    let cmcd_metrics = outpost_edge::CmcdMetrics::register(&mut registry);
    let protocols = outpost_edge::ClientProtocols::register(&mut registry);
    let workers = match &shared.workers {
        Some(setup) => {
            let metrics = outpost_workers::WorkersMetrics::default();
            metrics.register(&mut registry);
            Some(
                outpost_workers::Workers::open(
                    setup.runtime.clone(),
                    Some(setup.dir.join(&bound.name)),
                    outpost_workers::EdgeInfo {
                        name: bound.name.clone(),
                        location,
                        origin_hosts,
                    },
                    metrics,
                )
                .map_err(|source| StartError::Workers {
                    node: bound.name.clone(),
                    source,
                })?,
            )
        }
        None => None,
    };
    let releases = open_releases(shared, &bound.name)?;
    let mut extensions: Vec<Arc<dyn AdminExtension>> = vec![
        Arc::new(outpost_releases::ReleasesAdmin(releases.clone())),
        Arc::new(outpost_edge::cmcd_sessions::SessionsAdmin(
            cmcd_metrics.sessions(),
        )),
    ];
    if let Some(workers) = &workers {
        extensions.push(Arc::new(outpost_workers::WorkersAdmin(workers.clone())));
    }
    let admission = data_admission(shared, &mut registry, true);
    serve_admin(
        tasks,
        shared,
        &bound.name,
        bound.admin,
        registry,
        Some(purge_endpoint(shared, &bound.name, &edge)),
        extensions,
    );
    let https_port = bound
        .https
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.port())
        .unwrap_or(443);
    let name = bound.name.clone();
    let listeners = (bound.data, bound.https, admission);
    let pushed = outpost_releases::ReleaseFront::new(releases, Arc::new(edge));
    let esi = outpost_esi::EsiFront::new(Arc::new(pushed), &shared.esi, esi_metrics);
    // Below the workers, nearest the client first: prefetch, ESI, pushed releases, the cache.
    let below_workers = outpost_edge::Prefetch::new(
        Arc::new(esi),
        &shared.prefetch,
        Arc::new(shared.signing.clone()),
    );
    let fronts = (name.as_str(), https_port, cmcd_metrics, protocols);
    match workers {
        Some(workers) => {
            let front = outpost_workers::WorkerFront::new(workers, Arc::new(below_workers));
            let handler = client_fronts(front, shared, fronts);
            spawn_edge_listeners(tasks, shared, &name, listeners, handler);
        }
        None => {
            let handler = client_fronts(below_workers, shared, fronts);
            spawn_edge_listeners(tasks, shared, &name, listeners, handler);
        }
    }
    Ok(addrs)
}

/// What clients meet first at an edge, outermost first: the count by protocol, CMSD, the
/// hosts' HTTPS policies, CORS, signed URLs and CMCD, in front of `inner` (the workers, or what
/// lies below them). `(name, https_port, cmcd, protocols)` are the edge's.
fn client_fronts<H: Handler>(
    inner: H,
    shared: &Shared,
    (name, https_port, cmcd, protocols): (
        &str,
        u16,
        outpost_edge::CmcdMetrics,
        outpost_edge::ClientProtocols,
    ),
) -> Arc<impl Handler> {
    Arc::new(outpost_edge::ProtocolCount::new(
        outpost_edge::CmsdFront::new(
            outpost_edge::HttpsPolicy::new(
                outpost_edge::Cors::new(
                    outpost_edge::SignedUrls::new(
                        outpost_edge::CmcdFront::new(inner, cmcd),
                        shared.signing.clone(),
                    ),
                    shared.cors.clone(),
                ),
                &shared.host_policies,
                https_port,
            ),
            name,
        ),
        protocols,
    ))
}

/// An edge's plain and HTTPS data listeners, both serving `handler` and sharing `admission`.
fn spawn_edge_listeners<H: Handler>(
    tasks: &mut JoinSet<()>,
    shared: &Shared,
    name: &str,
    (data, https, admission): (TcpListener, Option<TcpListener>, Arc<Admission>),
    handler: Arc<H>,
) {
    if let (Some(https), Some(tls)) = (https, &shared.edge_tls) {
        let mut limits = data_limits(shared);
        if let (Some(max_age), Ok(addr)) = (shared.http3, https.local_addr()) {
            // QUIC on the same port number, over UDP.
            match outpost_server::h3::bind(addr, tls, &shared.quic) {
                Ok(endpoint) => {
                    limits.alt_svc = http::HeaderValue::from_str(&format!(
                        "h3=\":{}\"; ma={max_age}",
                        addr.port()
                    ))
                    .ok();
                    tasks.spawn(outpost_server::h3::serve(
                        name.into(),
                        endpoint,
                        handler.clone(),
                        data_limits(shared),
                        shared.quic.clone(),
                        shared.shutdown.signal(),
                    ));
                }
                Err(error) => {
                    tracing::error!(target: "outpost", node = name, %error, "HTTP/3 not served: HTTPS goes on over TCP alone");
                }
            }
        }
        spawn_listener(
            tasks,
            shared,
            name,
            (https, Some(tls.clone())),
            handler.clone(),
            limits,
            admission.clone(),
        );
    }
    spawn_listener(
        tasks,
        shared,
        name,
        (data, None),
        handler,
        data_limits(shared),
        admission,
    );
}

/// Starts a parent pulling from `origin`.
pub fn start_parent(
    tasks: &mut JoinSet<()>,
    shared: &Shared,
    bound: Bound,
    origin: http::Uri,
) -> Result<NodeAddrs, StartError> {
    let mut bound = bound;
    bound.admin_tls = shared.admin_tls.is_some();
    let addrs = bound.addrs(Role::Parent, false);
    let mut registry = node_registry(&bound.name, Role::Parent);
    let client = shared.upstream_client(&bound.name);
    let parent = outpost_parent::parent(&bound.name, &shared.cache, origin, client, &mut registry);
    let admission = data_admission(shared, &mut registry, false);
    let releases = open_releases(shared, &bound.name)?;
    serve_admin(
        tasks,
        shared,
        &bound.name,
        bound.admin,
        registry,
        Some(purge_endpoint(shared, &bound.name, &parent)),
        vec![Arc::new(outpost_releases::ReleasesAdmin(releases.clone()))],
    );
    let lease = parent.purge_lease();
    let front = outpost_releases::ReleaseFront::new(releases, Arc::new(parent));
    spawn_listener(
        tasks,
        shared,
        &bound.name,
        (bound.data, None),
        Arc::new(outpost_parent::PurgeSeqFront::new(Arc::new(front), lease)),
        data_limits(shared),
        admission,
    );
    Ok(addrs)
}

/// Starts the origin server.
pub fn start_origin(
    tasks: &mut JoinSet<()>,
    shared: &Shared,
    bound: Bound,
    config: &OriginConfig,
    tls: Option<Arc<TlsTerminator>>,
) -> Result<NodeAddrs, StartError> {
    let origin = Origin::new(config).map_err(|source| StartError::Origin {
        node: bound.name.clone(),
        source,
    })?;
    let mut bound = bound;
    bound.admin_tls = shared.admin_tls.is_some();
    let addrs = bound.addrs(Role::Origin, tls.is_some());
    tracing::info!(target: "outpost", "origin serves {}", origin.root().display());
    let mut registry = node_registry(&bound.name, Role::Origin);
    let requests = Counter::default();
    registry.register(
        "outpost_origin_requests",
        "Requests the origin answered",
        requests.clone(),
    );
    let admission = data_admission(shared, &mut registry, false);
    serve_admin(
        tasks,
        shared,
        &bound.name,
        bound.admin,
        registry,
        None,
        Vec::new(),
    );
    let handler = Arc::new(OriginService { origin, requests });
    spawn_listener(
        tasks,
        shared,
        &bound.name,
        (bound.data, tls),
        handler,
        data_limits(shared),
        admission,
    );
    Ok(addrs)
}

/// A node's metrics registry: every series carries `node` (its name) and `role` (origin,
/// parent, edge, control, dns, anycast), so one query selects a tier or a node.
pub(crate) fn node_registry(name: &str, role: Role) -> Registry {
    Registry::with_labels(
        [
            (
                std::borrow::Cow::Borrowed("node"),
                std::borrow::Cow::Owned(name.to_owned()),
            ),
            (
                std::borrow::Cow::Borrowed("role"),
                std::borrow::Cow::Borrowed(role.as_str()),
            ),
        ]
        .into_iter(),
    )
}

struct OriginService {
    origin: Origin,
    requests: Counter,
}

impl Handler for OriginService {
    async fn handle(&self, request: Request<Body>, _peer: Peer) -> Response<Body> {
        // Health probes are not requests for content: they are not counted.
        if request.uri().path() == outpost_cache::HEALTH_PATH {
            return outpost_server::body::text(http::StatusCode::OK, "ok");
        }
        self.requests.inc();
        // The origin reads no request bodies.
        self.origin.handle(request.map(|_| ())).await.map(|body| {
            body.map_err(|never: std::convert::Infallible| match never {})
                .boxed_unsync()
        })
    }
}
