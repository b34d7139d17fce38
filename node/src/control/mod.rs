//! The control node, and the part of every edge and parent that follows it: purges that reach
//! the whole fleet at once and are never lost.
//!
//! The control node numbers every purge ([`log::PurgeLog`]) and pushes it to every edge and
//! parent concurrently. Each node also asks the control node for the purges after its last one
//! every `sync_interval_ms` ([`follower`]), which renews its purge lease
//! ([`outpost_cache::PurgeLease`]); a node that sees a gap in the numbers asks at once. A purge
//! is acknowledged when every node applied it or lost its lease, so a node that was cut off
//! revalidates what it stored until it has caught up and never serves what the purge removed.

pub mod follower;
pub mod log;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use outpost_cache::HttpClient;
use outpost_server::admin::{AdminExtension, PurgeReport, PurgeRequest, Registry};
use outpost_server::body::{self, Body};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use serde::{Deserialize, Serialize};

use self::log::{Catchup, Missed, PurgeLog};

/// How purges reach the fleet (`[control.purges]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PurgeSync {
    /// How long a node trusts its cache after it last heard every purge.
    pub lease_ms: u64,
    /// How often each node asks the control node for purges it missed (renewing its lease).
    pub sync_interval_ms: u64,
    /// How long the control node waits for one node to apply a pushed purge.
    pub push_timeout_ms: u64,
    /// Purges the control node remembers for nodes that missed them; a node further behind
    /// purges everything.
    pub log_entries: usize,
}

impl Default for PurgeSync {
    fn default() -> Self {
        Self {
            lease_ms: 2_000,
            sync_interval_ms: 250,
            push_timeout_ms: 1_000,
            log_entries: 100_000,
        }
    }
}

impl PurgeSync {
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }

    pub fn sync_interval(&self) -> Duration {
        Duration::from_millis(self.sync_interval_ms.max(10))
    }

    /// The first problem with these settings, as (key, what is expected).
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if self.sync_interval_ms == 0 || self.sync_interval_ms * 2 > self.lease_ms {
            return Err((
                "sync_interval_ms",
                "at least 1 and at most half of lease_ms (a node must renew its lease twice before it runs out)",
            ));
        }
        if self.log_entries == 0 {
            return Err(("log_entries", "at least 1"));
        }
        Ok(())
    }
}

/// What happened to one purge on one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeOutcome {
    pub node: String,
    /// `applied` (it took the push), `caught up` (it missed the push and fetched the purge
    /// from the log), or `lease lapsed` (unreachable: it revalidates until it catches up).
    pub outcome: String,
    /// Objects it purged, when it took the push.
    pub purged: Option<u64>,
    /// From the purge's arrival at the control node to this outcome.
    pub ms: f64,
    /// Why the push failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The control node's answer to a purge: acknowledged, with each node's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetPurgeReport {
    pub seq: u64,
    pub nodes: Vec<NodeOutcome>,
    /// From arrival to the last node applying it (every node took the push).
    pub last_node_ms: Option<f64>,
    /// From arrival to the acknowledgement.
    pub acknowledged_ms: f64,
}

/// A purge the control node acknowledged, as `GET /fleet/reports` lists the latest
/// [`RECENT_PURGES`] (newest first): what it covered and how long it took to reach the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecentPurge {
    pub seq: u64,
    /// When it arrived, in ms since the epoch.
    pub at_ms: u64,
    pub request: PurgeRequest,
    pub report: FleetPurgeReport,
}

/// How many acknowledged purges `GET /fleet/reports` keeps.
pub const RECENT_PURGES: usize = 20;

/// One edge's answer to a request the control node fanned out (a worker deploy, say).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeAnswer {
    pub node: String,
    /// Its status, or 0 when it did not answer (then `body` says why).
    pub status: u16,
    pub body: String,
    pub ms: f64,
}

/// The control node's answer to a request fanned out to every edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FanoutReport {
    pub nodes: Vec<EdgeAnswer>,
    /// From arrival to the last edge's answer.
    pub last_node_ms: f64,
}

/// The nodes a control node sequences purges for: every edge and parent, by admin URL.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    /// (name, admin URL) of every edge and parent.
    pub nodes: Vec<(String, http::Uri)>,
    /// Which of them are edges (worker deploys go to these).
    pub edges: Vec<String>,
}

impl Fleet {
    /// The edges and parents of `topology` among `admin` (name, admin address), reached over
    /// HTTPS when the topology's admin listeners use TLS.
    pub fn new(
        topology: &crate::topology::Topology,
        admin: impl IntoIterator<Item = (String, std::net::SocketAddr)>,
    ) -> Self {
        let scheme = if topology.admin.tls { "https" } else { "http" };
        let is_edge = |name: &str| topology.edges.iter().any(|e| e.name == name);
        let is_parent = |name: &str| topology.parents.iter().any(|p| p.name == name);
        let nodes = admin
            .into_iter()
            .filter(|(name, _)| is_edge(name) || is_parent(name))
            .filter_map(|(name, addr)| Some((name, format!("{scheme}://{addr}").parse().ok()?)))
            .collect();
        let edges = topology.edges.iter().map(|e| e.name.clone()).collect();
        Self { nodes, edges }
    }
}

struct ControlMetrics {
    purges: Counter,
    fanout: Histogram,
    acknowledged: Histogram,
    missed: Counter,
    deploys: Histogram,
}

/// The control node's API, behind the admin token: `POST /fleet/purge` (a [`PurgeRequest`];
/// answers a [`FleetPurgeReport`] once acknowledged), `GET /fleet/purges?after=N&node=NAME` (a
/// [`Catchup`]), and `/fleet/edges/workers/...` (any method: sent on to `/workers/...` on
/// every edge at once; answers a [`FanoutReport`]).
pub struct Control {
    log: Mutex<PurgeLog>,
    fleet: Fleet,
    client: HttpClient,
    token: String,
    settings: PurgeSync,
    metrics: ControlMetrics,
    /// Where the sequence's head is kept, so a restarted control node continues it.
    head_file: Option<std::path::PathBuf>,
    recent: Mutex<std::collections::VecDeque<RecentPurge>>,
}

impl Control {
    pub fn new(
        fleet: Fleet,
        client: HttpClient,
        token: String,
        settings: PurgeSync,
        head_file: Option<std::path::PathBuf>,
        registry: &mut Registry,
    ) -> Self {
        let head = head_file
            .as_ref()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0);
        let metrics = ControlMetrics {
            purges: Counter::default(),
            fanout: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            acknowledged: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            missed: Counter::default(),
            deploys: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
        };
        registry.register(
            "outpost_deploy_fanout_seconds",
            "From a worker deploy or removal's arrival to the last edge's answer",
            metrics.deploys.clone(),
        );
        registry.register(
            "outpost_control_purges",
            "Purges the control node sequenced and fanned out",
            metrics.purges.clone(),
        );
        registry.register(
            "outpost_purge_fanout_seconds",
            "From a purge's arrival to the last node applying it (purges every node took)",
            metrics.fanout.clone(),
        );
        registry.register(
            "outpost_purge_acknowledged_seconds",
            "From a purge's arrival to its acknowledgement (every node applied it or lost its lease)",
            metrics.acknowledged.clone(),
        );
        registry.register(
            "outpost_purge_push_missed",
            "Pushes of a purge that a node did not take",
            metrics.missed.clone(),
        );
        Self {
            log: Mutex::new(PurgeLog::new(
                head,
                settings.log_entries,
                settings.lease(),
                Instant::now(),
            )),
            fleet,
            client,
            token,
            settings,
            metrics,
            head_file,
            recent: Mutex::default(),
        }
    }

    /// Sends `method path` with `body` to every edge's admin listener at once.
    pub async fn to_every_edge(
        &self,
        method: Method,
        path: &str,
        content_type: Option<http::HeaderValue>,
        body: bytes::Bytes,
    ) -> FanoutReport {
        let arrived = Instant::now();
        let sends = self
            .fleet
            .nodes
            .iter()
            .filter(|(name, _)| self.fleet.edges.contains(name))
            .map(|(name, admin)| {
                let (method, content_type, body) =
                    (method.clone(), content_type.clone(), body.clone());
                async move {
                    let answer = match admin_exchange(
                        &self.client,
                        admin,
                        &self.token,
                        method,
                        path,
                        content_type,
                        body,
                    )
                    .await
                    {
                        Ok((status, bytes)) => (
                            status.as_u16(),
                            String::from_utf8_lossy(&bytes).into_owned(),
                        ),
                        Err(error) => (0, error),
                    };
                    EdgeAnswer {
                        node: name.clone(),
                        status: answer.0,
                        body: answer.1,
                        ms: arrived.elapsed().as_secs_f64() * 1e3,
                    }
                }
            });
        let nodes = join_all(sends).await;
        let last = arrived.elapsed();
        self.metrics.deploys.observe(last.as_secs_f64());
        FanoutReport {
            nodes,
            last_node_ms: last.as_secs_f64() * 1e3,
        }
    }

    fn log(&self) -> std::sync::MutexGuard<'_, PurgeLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sequences `request`, pushes it to every node and waits until it is acknowledged.
    pub async fn purge(&self, request: PurgeRequest) -> FleetPurgeReport {
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let asked = request.clone();
        let report = self.sequence(request).await;
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.push_front(RecentPurge {
            seq: report.seq,
            at_ms,
            request: asked,
            report: report.clone(),
        });
        recent.truncate(RECENT_PURGES);
        report
    }

    /// The acknowledged purges, newest first.
    pub fn recent(&self) -> Vec<RecentPurge> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().cloned().collect()
    }

    async fn sequence(&self, request: PurgeRequest) -> FleetPurgeReport {
        let arrived = Instant::now();
        let (logged, logged_at) = {
            let mut log = self.log();
            let logged = log.append(request);
            // Taken under the lock: a node answered after this has the purge.
            let logged_at = Instant::now();
            if let Some(path) = &self.head_file
                && let Err(error) = std::fs::write(path, log.head().to_string())
            {
                tracing::error!(path = %path.display(), %error, "the purge sequence's head was not saved");
            }
            (logged, logged_at)
        };
        let seq = logged.seq.unwrap_or_default();
        self.metrics.purges.inc();
        let body = serde_json::to_vec(&logged).unwrap_or_default();
        let pushes = self.fleet.nodes.iter().map(|(name, admin)| {
            let body = body.clone();
            async move { (name, self.push(admin, body).await, arrived.elapsed()) }
        });
        let mut nodes = Vec::new();
        let mut missed = Vec::new();
        for (name, result, took) in join_all(pushes).await {
            match result {
                Ok(purged) => nodes.push(NodeOutcome {
                    node: name.clone(),
                    outcome: "applied".into(),
                    purged: Some(purged),
                    ms: took.as_secs_f64() * 1e3,
                    error: None,
                }),
                Err(error) => {
                    self.metrics.missed.inc();
                    tracing::warn!(node = %name, seq, %error, "purge push missed: waiting for it to catch up or lose its lease");
                    missed.push((name.clone(), error));
                }
            }
        }
        let last_node_ms = missed.is_empty().then(|| {
            let last = nodes.iter().map(|n| n.ms).fold(0.0, f64::max);
            self.metrics.fanout.observe(last / 1e3);
            last
        });
        for (name, error) in missed {
            let outcome = loop {
                let state = self.log().missed(&name, logged_at, Instant::now());
                match state {
                    Missed::CaughtUp => break "caught up",
                    Missed::LeaseLapsed => break "lease lapsed",
                    Missed::Pending(until) => {
                        let wait = until.saturating_duration_since(Instant::now());
                        tokio::time::sleep(wait.min(Duration::from_millis(20))).await;
                    }
                }
            };
            nodes.push(NodeOutcome {
                node: name,
                outcome: outcome.into(),
                purged: None,
                ms: arrived.elapsed().as_secs_f64() * 1e3,
                error: Some(error),
            });
        }
        let acknowledged = arrived.elapsed();
        self.metrics
            .acknowledged
            .observe(acknowledged.as_secs_f64());
        FleetPurgeReport {
            seq,
            nodes,
            last_node_ms,
            acknowledged_ms: acknowledged.as_secs_f64() * 1e3,
        }
    }

    /// Pushes one logged purge to the admin listener at `admin`; how many objects it purged.
    async fn push(&self, admin: &http::Uri, body: Vec<u8>) -> Result<u64, String> {
        let exchange = async {
            let answer = admin_exchange(
                &self.client,
                admin,
                &self.token,
                Method::POST,
                "/purge",
                Some(http::HeaderValue::from_static("application/json")),
                body.into(),
            )
            .await?;
            let report: PurgeReport = serde_json::from_slice(&success(answer)?)
                .map_err(|e| format!("its report: {e}"))?;
            Ok(report.purged)
        };
        tokio::time::timeout(
            Duration::from_millis(self.settings.push_timeout_ms),
            exchange,
        )
        .await
        .map_err(|_| format!("no answer within {} ms", self.settings.push_timeout_ms))?
    }

    fn catchup(&self, query: Option<&str>) -> Result<Catchup, String> {
        let mut after = None;
        let mut node = None;
        for pair in query.unwrap_or("").split('&') {
            match pair.split_once('=') {
                Some(("after", value)) => after = value.parse::<u64>().ok(),
                Some(("node", value)) => node = Some(value.to_owned()),
                _ => {}
            }
        }
        let (Some(after), Some(node)) = (after, node) else {
            return Err("expected ?after=SEQ&node=NAME".into());
        };
        if !self.fleet.nodes.iter().any(|(name, _)| *name == node) {
            return Err(format!("{node} is not a node of the topology"));
        }
        Ok(self.log().since(&node, after, Instant::now()))
    }
}

pub(crate) use outpost_cache::admin::{exchange as admin_exchange, success};

/// The control node's API as an admin extension.
pub struct ControlApi(pub Arc<Control>);

impl AdminExtension for ControlApi {
    fn prefix(&self) -> &'static str {
        "/fleet"
    }

    fn handle(
        &self,
        request: Request<Body>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send + '_>> {
        Box::pin(async move {
            match (request.method(), request.uri().path()) {
                (&Method::POST, "/fleet/purge") => {
                    let bytes = match request.into_body().collect().await {
                        Ok(collected) => collected.to_bytes(),
                        Err(_) => return body::text(StatusCode::BAD_REQUEST, "unreadable body"),
                    };
                    let purge: PurgeRequest = match serde_json::from_slice(&bytes) {
                        Ok(purge) => purge,
                        Err(error) => {
                            return body::text(
                                StatusCode::BAD_REQUEST,
                                format!("expected a purge request: {error}"),
                            );
                        }
                    };
                    if purge.seq.is_some() {
                        return body::text(
                            StatusCode::BAD_REQUEST,
                            "seq is the control node's to give",
                        );
                    }
                    body::json(&self.0.purge(purge).await)
                }
                (&Method::GET, "/fleet/reports") => body::json(&self.0.recent()),
                (&Method::GET, "/fleet/purges") => match self.0.catchup(request.uri().query()) {
                    Ok(catchup) => body::json(&catchup),
                    Err(problem) => body::text(StatusCode::BAD_REQUEST, problem),
                },
                (_, path) if path.starts_with("/fleet/edges/workers") => {
                    let target = path.trim_start_matches("/fleet/edges").to_owned();
                    let method = request.method().clone();
                    let content_type = request.headers().get(header::CONTENT_TYPE).cloned();
                    let bytes = match request.into_body().collect().await {
                        Ok(collected) => collected.to_bytes(),
                        Err(_) => return body::text(StatusCode::BAD_REQUEST, "unreadable body"),
                    };
                    body::json(
                        &self
                            .0
                            .to_every_edge(method, &target, content_type, bytes)
                            .await,
                    )
                }
                _ => body::text(
                    StatusCode::NOT_FOUND,
                    "control endpoints: POST /fleet/purge, GET /fleet/purges?after=SEQ&node=NAME, GET /fleet/reports, /fleet/edges/workers/...",
                ),
            }
        })
    }
}
