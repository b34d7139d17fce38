//! The workers of one edge: deploy, remove and list them, find the one a request routes to,
//! and keep them on disk so a restarted edge runs the same workers. A deploy swaps the route
//! table atomically: requests in flight finish on the worker they started with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use http::{HeaderName, HeaderValue, Request, Response};
use outpost_server::{Body, Handler, Peer};

use crate::error::DeployError;
use crate::host::Pipeline;
use crate::kv::KvStore;
use crate::metrics::WorkersMetrics;
use crate::route::{HostPattern, RouteTable};
use crate::runtime::Runtime;
use crate::spec::WorkerSpec;
use crate::worker::Worker;

/// What workers are told about the edge they run on, as request headers.
#[derive(Debug, Clone)]
pub struct EdgeInfo {
    /// `outpost-edge`.
    pub name: String,
    /// `outpost-edge-location: LAT,LON`.
    pub location: Option<[f64; 2]>,
    /// Hosts outbound requests may reach when a worker's spec names none (besides the hosts of
    /// its own routes).
    pub origin_hosts: Vec<String>,
}

/// The request headers an edge sets for its workers (any a client sent are removed).
pub const EDGE_HEADER: &str = "outpost-edge";
pub const LOCATION_HEADER: &str = "outpost-edge-location";
pub const CLIENT_IP_HEADER: &str = "outpost-client-ip";
pub const REQUEST_ID_HEADER: &str = "outpost-request-id";

/// The workers of one edge.
pub struct Workers {
    runtime: Arc<Runtime>,
    dir: Option<PathBuf>,
    edge: EdgeInfo,
    metrics: WorkersMetrics,
    deployed: Mutex<BTreeMap<String, Arc<Worker>>>,
    /// Key-value stores by worker name: a redeploy keeps its data.
    stores: Mutex<BTreeMap<String, Arc<KvStore>>>,
    table: ArcSwap<RouteTable<Arc<Worker>>>,
    requests: AtomicU64,
}

impl Workers {
    /// The workers kept in `dir` (none, and nothing kept, with `None`), compiled and live.
    /// A stored worker that no longer loads is logged and skipped.
    pub fn open(
        runtime: Arc<Runtime>,
        dir: Option<PathBuf>,
        edge: EdgeInfo,
        metrics: WorkersMetrics,
    ) -> Result<Arc<Self>, DeployError> {
        if let Some(dir) = &dir {
            crate::files::private_dir(dir)
                .map_err(|e| DeployError::Storage(format!("{}: {e}", dir.display())))?;
        }
        let workers = Arc::new(Self {
            runtime,
            dir,
            edge,
            metrics,
            deployed: Mutex::new(BTreeMap::new()),
            stores: Mutex::new(BTreeMap::new()),
            table: ArcSwap::from_pointee(RouteTable::default()),
            requests: AtomicU64::new(0),
        });
        for (spec, bytes) in workers.stored() {
            let name = spec.name.clone();
            match workers.install(spec, &bytes) {
                Ok(()) => {
                    tracing::info!(target: "outpost::worker", edge = %workers.edge.name, worker = %name, "worker loaded")
                }
                Err(error) => {
                    tracing::error!(target: "outpost::worker", edge = %workers.edge.name, worker = %name, "stored worker not loaded: {error}")
                }
            }
        }
        Ok(workers)
    }

    fn stored(&self) -> Vec<(WorkerSpec, Vec<u8>)> {
        let Some(dir) = &self.dir else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "spec") {
                continue;
            }
            let loaded = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|text| {
                    serde_json::from_slice::<WorkerSpec>(&text).map_err(|e| e.to_string())
                })
                .and_then(|spec| {
                    std::fs::read(path.with_extension("wasm"))
                        .map(|bytes| (spec, bytes))
                        .map_err(|e| e.to_string())
                });
            match loaded {
                Ok(worker) => found.push(worker),
                Err(error) => {
                    tracing::error!(target: "outpost::worker", "stored worker {}: {error}", path.display())
                }
            }
        }
        found
    }

    fn store_for(&self, spec: &WorkerSpec) -> Result<Arc<KvStore>, DeployError> {
        let name = &spec.name;
        let quota = spec.kv_quota();
        let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(store) = stores.get(name) {
            store.set_quota(quota);
            return Ok(store.clone());
        }
        let path = self.dir.as_ref().map(|d| d.join(format!("{name}.kv.redb")));
        let store = Arc::new(
            KvStore::open(path.as_deref(), quota)
                .map_err(|e| DeployError::Storage(e.to_string()))?,
        );
        stores.insert(name.to_owned(), store.clone());
        Ok(store)
    }

    /// Compiles and makes live, without storing.
    fn install(&self, spec: WorkerSpec, bytes: &[u8]) -> Result<(), DeployError> {
        let worker = self.build(spec, bytes)?;
        self.go_live(worker);
        Ok(())
    }

    /// Checks the spec and compiles the component: a worker ready to go live.
    fn build(&self, spec: WorkerSpec, bytes: &[u8]) -> Result<Arc<Worker>, DeployError> {
        let routes = spec.validate()?;
        let pre = self.runtime.compile(bytes)?;
        let allowed: Vec<HostPattern> = if spec.allowed_hosts.is_empty() {
            let origin = self
                .edge
                .origin_hosts
                .iter()
                .map(|h| HostPattern::allowed(h));
            origin
                .chain(routes.iter().map(|r| r.host().clone()))
                .collect()
        } else {
            spec.allowed_hosts
                .iter()
                .map(|h| HostPattern::allowed(h))
                .collect()
        };
        let kv = self.store_for(&spec)?;
        let metrics = self.metrics.for_worker(&spec.name);
        Ok(Arc::new(Worker::new(
            spec,
            routes,
            pre,
            self.runtime.clone(),
            kv,
            allowed,
            metrics,
        )))
    }

    /// Puts `worker` on its routes, in place of any worker of the same name.
    fn go_live(&self, worker: Arc<Worker>) {
        let mut deployed = self.deployed.lock().unwrap_or_else(|p| p.into_inner());
        deployed.insert(worker.spec.name.clone(), worker);
        self.publish(&deployed);
    }

    fn publish(&self, deployed: &BTreeMap<String, Arc<Worker>>) {
        let entries = deployed.values().flat_map(|worker| {
            worker
                .routes
                .iter()
                .map(move |route| (route.clone(), worker.clone()))
        });
        self.table.store(Arc::new(RouteTable::new(entries)));
    }

    fn path_of(&self, name: &str, extension: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{name}.{extension}")))
    }

    /// Validates, compiles, stores and makes live a worker (replacing one of the same name).
    /// CPU-heavy: call it off the async threads.
    pub fn deploy(&self, spec: WorkerSpec, bytes: &[u8]) -> Result<(), DeployError> {
        // Compile before storing: a bad deploy leaves the old worker running.
        let worker = self.build(spec, bytes)?;
        let name = worker.spec.name.clone();
        if let (Some(wasm), Some(spec_path)) =
            (self.path_of(&name, "wasm"), self.path_of(&name, "spec"))
        {
            let spec_json = serde_json::to_vec_pretty(&worker.spec)
                .map_err(|e| DeployError::Storage(e.to_string()))?;
            write_atomically(&wasm, bytes)?;
            write_atomically(&spec_path, &spec_json)?;
        }
        self.go_live(worker);
        tracing::info!(target: "outpost::worker", edge = %self.edge.name, worker = %name, "worker deployed");
        Ok(())
    }

    /// Takes a worker off its routes and off disk; its key-value data stays.
    pub fn remove(&self, name: &str) -> Result<(), DeployError> {
        let mut deployed = self.deployed.lock().unwrap_or_else(|p| p.into_inner());
        if deployed.remove(name).is_none() {
            return Err(DeployError::Unknown(name.to_owned()));
        }
        self.publish(&deployed);
        for extension in ["wasm", "spec"] {
            if let Some(path) = self.path_of(name, extension) {
                let _ = std::fs::remove_file(path);
            }
        }
        tracing::info!(target: "outpost::worker", edge = %self.edge.name, worker = %name, "worker removed");
        Ok(())
    }

    /// The deployed workers' specs.
    pub fn list(&self) -> Vec<WorkerSpec> {
        self.deployed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|w| w.spec().clone())
            .collect()
    }

    pub fn edge(&self) -> &EdgeInfo {
        &self.edge
    }

    /// The worker `request` routes to, if any.
    fn route(&self, request: &Request<Body>) -> Option<Arc<Worker>> {
        let table = self.table.load();
        if table.is_empty() {
            return None;
        }
        let host = request.uri().authority().map(|a| a.as_str()).or_else(|| {
            request
                .headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })?;
        table.find(host, request.uri().path()).cloned()
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), DeployError> {
    crate::files::replace(path, bytes)
        .map_err(|e| DeployError::Storage(format!("{}: {e}", path.display())))
}

/// An edge's request handler with workers in front of `next` (the edge's cache pipeline):
/// requests on a worker's route run the worker, whose outbound requests go to `next`; every
/// other request goes straight to `next`.
pub struct WorkerFront<H> {
    workers: Arc<Workers>,
    next: Arc<H>,
    /// `next`, as the workers' outbound requests see it.
    pipeline: Arc<dyn Pipeline>,
    /// The headers that say which edge this is, the same on every request.
    edge_headers: Vec<(HeaderName, HeaderValue)>,
}

impl<H: Handler> WorkerFront<H> {
    pub fn new(workers: Arc<Workers>, next: Arc<H>) -> Self {
        let edge = &workers.edge;
        let location = edge.location.map(|[lat, lon]| format!("{lat},{lon}"));
        let edge_headers = [
            (EDGE_HEADER, Some(edge.name.as_str())),
            (LOCATION_HEADER, location.as_deref()),
        ]
        .into_iter()
        .filter_map(|(name, value)| {
            let value = HeaderValue::from_str(value?).ok()?;
            Some((HeaderName::from_static(name), value))
        })
        .collect();
        Self {
            pipeline: Arc::new(HandlerPipeline(next.clone())),
            workers,
            next,
            edge_headers,
        }
    }
}

struct HandlerPipeline<H>(Arc<H>);

impl<H: Handler> Pipeline for HandlerPipeline<H> {
    fn fetch(
        &self,
        request: Request<Body>,
        peer: Peer,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send>> {
        let handler = self.0.clone();
        Box::pin(async move {
            // A worker's request gets the same normal form as a client's.
            let (mut parts, body) = request.into_parts();
            if let Err(refusal) =
                outpost_server::normal::normalize(&mut parts, peer.tls, usize::MAX)
            {
                return outpost_server::body::text(refusal.status(), refusal.to_string());
            }
            handler.handle(Request::from_parts(parts, body), peer).await
        })
    }
}

impl<H: Handler> Handler for WorkerFront<H> {
    async fn handle(&self, mut request: Request<Body>, peer: Peer) -> Response<Body> {
        // The health check answers for the edge, never a worker: a catch-all route must not
        // take the edge out of DNS and anycast.
        if request.uri().path() == outpost_server::HEALTH_PATH {
            return self.next.handle(request, peer).await;
        }
        let Some(worker) = self.workers.route(&request) else {
            return self.next.handle(request, peer).await;
        };
        // The listener's id for the request, which the access log prints too; a request that
        // came another way gets one of the workers' own.
        let request_id: Arc<str> = match request.extensions().get::<outpost_server::RequestId>() {
            Some(id) => id.label(&self.workers.edge.name).into(),
            None => {
                let number = self.workers.requests.fetch_add(1, Ordering::Relaxed);
                format!("{}-w{number:x}", self.workers.edge.name).into()
            }
        };
        let headers = request.headers_mut();
        for name in [
            EDGE_HEADER,
            LOCATION_HEADER,
            CLIENT_IP_HEADER,
            REQUEST_ID_HEADER,
        ] {
            headers.remove(name);
        }
        for (name, value) in &self.edge_headers {
            headers.insert(name.clone(), value.clone());
        }
        let mut set = |name: &'static str, value: &str| {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        };
        set(CLIENT_IP_HEADER, &peer.remote.ip().to_string());
        set(REQUEST_ID_HEADER, &request_id);
        worker
            .invoke(request, peer, request_id, self.pipeline.clone())
            .await
    }
}
