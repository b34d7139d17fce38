//! `outpost-node` starts an Outpost CDN in-process: [`Cdn::start`] binds every listener of a
//! [`Topology`] (origin, parents, edges, DNS, anycast), starts each node on them and hands back
//! a [`Running`] CDN that knows each node's bound addresses and stops them all with one
//! [`Shutdown`]. [`Cdn::start_node`] runs one node of a topology, [`Cdn::start_standalone`]
//! one edge or parent in front of a given upstream, as `varnishd -b` does.
//!
//! It owns the topology file's types and checks ([`topology`]), the wiring of each node role
//! onto its listeners, TLS from the local CA (certificates, origin shielding, reloads), the
//! admin token in the state directory, and the routing services (geo DNS, anycast) over the
//! edges where they really listen.
//!
//! It does not own what a node does with a request (the `edge`, `parent`, `cache`, `origin`,
//! `workers` and `dns` crates do), nor the command line: argument parsing, process signals
//! for shutdown, the admin client and log set-up live in the `outpost` binary.

pub mod control;
pub mod dashboard;
mod error;
mod nodes;
pub mod routing;
pub mod tls;
pub mod token;
pub mod topology;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use error::{StartError, TopologyError};
use outpost_edge::ParentTarget;
pub use outpost_server::Shutdown;
use tokio::task::JoinSet;
pub use topology::{DEFAULT_TOPOLOGY, Topology};

use crate::nodes::{Bound, Shared, WorkersSetup};

/// What a node does in the CDN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Origin,
    Parent,
    Edge,
    Dns,
    Anycast,
    Control,
    Dashboard,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Origin => "origin",
            Role::Parent => "parent",
            Role::Edge => "edge",
            Role::Dns => "dns",
            Role::Anycast => "anycast",
            Role::Control => "control",
            Role::Dashboard => "dashboard",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a running node listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddrs {
    pub name: String,
    pub role: Role,
    /// The data listener: HTTP, or UDP and TCP for the DNS.
    pub data: SocketAddr,
    /// The data listener serves TLS (a shielded origin).
    pub data_tls: bool,
    /// The admin listener (health, metrics, purge), if the node has one.
    pub admin: Option<SocketAddr>,
    pub admin_tls: bool,
    /// The HTTPS listener of an edge or of the anycast address.
    pub https: Option<SocketAddr>,
}

impl NodeAddrs {
    /// `http://ADDR` (or `https://`, `dns://`) of the data listener.
    pub fn data_url(&self) -> String {
        let scheme = match (self.role, self.data_tls) {
            (Role::Dns, _) => "dns",
            (_, true) => "https",
            (_, false) => "http",
        };
        format!("{scheme}://{}", self.data)
    }

    /// `http://ADDR` (or `https://`) of the admin listener.
    pub fn admin_url(&self) -> Option<String> {
        let scheme = if self.admin_tls { "https" } else { "http" };
        self.admin.map(|addr| format!("{scheme}://{addr}"))
    }

    /// The line the CLI prints when the node is ready, for people and scripts:
    /// `ready node=NAME role=ROLE data=URL admin=URL|- [https=URL]`.
    pub fn announcement(&self) -> String {
        let admin = self.admin_url().unwrap_or_else(|| "-".into());
        let https = self
            .https
            .map(|a| format!(" https=https://{a}"))
            .unwrap_or_default();
        format!(
            "ready node={} role={} data={} admin={admin}{https}",
            self.name,
            self.role,
            self.data_url()
        )
    }
}

/// Settings given outside the topology file, as the command line does.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// The state directory (local CA, certificates, token, workers) instead of the topology's
    /// `tls.state_dir`.
    pub state_dir: Option<PathBuf>,
    /// The file the topology was read from: anycast costs are read again from it on SIGHUP.
    pub config_path: Option<PathBuf>,
}

/// One edge or parent in front of an upstream, without a topology file.
#[derive(Debug, Clone)]
pub struct Standalone {
    pub role: Role,
    pub name: String,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    /// `http://host:port` or `https://host:port` to cache in front of.
    pub upstream: http::Uri,
    /// CA certificates (PEM) an `https://` upstream is verified against instead of the public
    /// roots (Mozilla's, built in).
    pub upstream_ca: Option<PathBuf>,
    /// Bearer token for purge; without one, purge is refused.
    pub token: Option<String>,
}

/// Starts CDNs. Every listener is bound before any node runs, so port 0 works and a taken
/// address fails before anything serves.
pub struct Cdn;

/// A CDN (or one node of it) that is serving.
pub struct Running {
    nodes: Vec<NodeAddrs>,
    shutdown: Shutdown,
    tasks: JoinSet<()>,
    new_token: Option<(PathBuf, String)>,
}

impl Running {
    /// Every node, in the order they started (origin, parents, edges, DNS, anycast).
    pub fn nodes(&self) -> &[NodeAddrs] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&NodeAddrs> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// A token generated on this start (none was configured or stored), and the file holding
    /// it: shown once by the CLI.
    pub fn new_token(&self) -> Option<(&std::path::Path, &str)> {
        self.new_token
            .as_ref()
            .map(|(path, token)| (path.as_path(), token.as_str()))
    }

    /// The shutdown every listener of this CDN watches.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Resolves when a listener stops on its own, which is a fault: it should run until
    /// shutdown.
    pub async fn stopped(&mut self) {
        if self.tasks.join_next().await.is_none() {
            std::future::pending::<()>().await;
        }
    }

    /// Stops accepting and lets open requests finish, for at most `timeout`; `false` when
    /// that was not enough.
    pub async fn drain(mut self, timeout: Duration) -> bool {
        self.shutdown.trigger();
        tokio::time::timeout(timeout, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await
        .is_ok()
    }
}

/// What is built once per process and shared by its nodes.
struct Setup {
    shared: Shared,
    state_dir: PathBuf,
    new_token: Option<(PathBuf, String)>,
}

impl Setup {
    fn new(topology: &Topology, state_dir: PathBuf, token: Option<String>) -> Self {
        let mut cache = topology.cache.clone();
        // The disk tier lives in the state directory unless the config puts it elsewhere.
        if cache.disk_dir.is_none() {
            cache.disk_dir = Some(state_dir.join("cache"));
        }
        Self {
            shared: Shared {
                token,
                edge_tls: None,
                shield: None,
                upstream_tls: None,
                host_policies: topology.tls.hosts.clone(),
                http3: topology
                    .tls
                    .http3
                    .then_some(topology.tls.alt_svc_max_age_secs),
                quic: topology.tls.quic.clone(),
                cors: outpost_edge::CorsRules::compile(&topology.cors).unwrap_or_default(),
                signing: outpost_edge::Signing::new(&topology.signing).unwrap_or_default(),
                prefetch: topology.prefetch.clone(),
                admin_tls: None,
                cache,
                esi: topology.esi.clone(),
                health: topology.health.clone(),
                overlay: topology.overlay.clone(),
                control: None,
                limits: topology.limits.clone(),
                shutdown: Shutdown::new(),
                workers: None,
                releases_dir: state_dir.join("releases"),
            },
            state_dir,
            new_token: None,
        }
    }

    /// What the nodes of `topology` share, in the state directory `overrides` name (else the
    /// topology's), with the admin token.
    fn for_topology(topology: &Topology, overrides: &Overrides) -> Result<Self, StartError> {
        let state_dir = overrides
            .state_dir
            .clone()
            .unwrap_or_else(|| topology.tls.state_dir.clone());
        let mut setup = Self::new(topology, state_dir, None);
        setup.token(topology)?;
        Ok(setup)
    }

    /// The configured admin token, else the one in the state directory, else a new one.
    fn token(&mut self, topology: &Topology) -> Result<(), StartError> {
        let (token, new) = token::for_node(topology.admin.token.as_deref(), &self.state_dir)?;
        if new {
            self.new_token = Some((token::path(&self.state_dir), token.clone()));
        }
        self.shared.token = Some(token);
        Ok(())
    }

    /// TLS on the admin listeners, when the topology asks for it.
    fn admin_tls(&mut self, topology: &Topology) -> Result<(), StartError> {
        if topology.admin.tls {
            self.shared.admin_tls = Some(tls::terminator(tls::admin_settings(
                topology,
                &self.state_dir,
            )?)?);
        }
        Ok(())
    }

    /// A client for the admin listeners of `topology`'s nodes: TLS against the local CA when
    /// they serve TLS.
    fn admin_client(&self, topology: &Topology) -> Result<outpost_cache::HttpClient, StartError> {
        let timeouts = outpost_cache::UpstreamTimeouts {
            connect: Duration::from_secs(2),
            first_byte: Duration::from_secs(10),
        };
        if !topology.admin.tls {
            return Ok(outpost_cache::HttpClient::new(timeouts));
        }
        let config = tls::trusting(&self.state_dir.join("ca.pem"))?.with_no_client_auth();
        Ok(outpost_cache::HttpClient::with_tls(timeouts, config))
    }

    /// Makes edges and parents follow the control node of `topology`, reached at `addr`.
    fn follow_control(&mut self, topology: &Topology, addr: SocketAddr) -> Result<(), StartError> {
        let Some(control) = &topology.control else {
            return Ok(());
        };
        let scheme = if topology.admin.tls { "https" } else { "http" };
        let url = format!("{scheme}://{addr}")
            .parse()
            .map_err(|_| StartError::NoTable("control"))?;
        self.shared.control = Some(nodes::ControlLink {
            url,
            settings: control.purges.clone(),
            client: self.admin_client(topology)?,
        });
        Ok(())
    }

    /// The origin's TLS when it is shielded, for its data listener at `data`.
    fn origin_tls(
        &self,
        topology: &Topology,
        data: SocketAddr,
    ) -> Result<Option<Arc<outpost_server::tls::TlsTerminator>>, StartError> {
        match &self.shared.shield {
            Some(shield) => Ok(Some(tls::terminator(shield.origin_settings(
                data,
                Duration::from_millis(topology.tls.handshake_timeout_ms),
            )?)?)),
            None => Ok(None),
        }
    }

    fn shield(&mut self, topology: &Topology) -> Result<(), StartError> {
        if topology.origin.shielded {
            self.shared.shield = Some(Arc::new(tls::Shield::new(&self.state_dir, topology)?));
        }
        Ok(())
    }

    /// Loads the edges' certificates and starts reloading them on SIGHUP or file changes.
    fn edge_tls(&mut self, topology: &Topology) -> Result<(), StartError> {
        let settings = tls::edge_settings(topology, &self.state_dir)?;
        let files = settings
            .certificates
            .iter()
            .flat_map(|c| [c.cert.clone(), c.key.clone()])
            .collect();
        let terminator = tls::terminator(settings)?;
        let (renewing, dir) = (topology.clone(), self.state_dir.clone());
        tls::spawn_reloader(
            vec![terminator.clone()],
            files,
            Duration::from_millis(topology.tls.reload_check_ms),
            Some(Box::new(move || tls::renew_local(&renewing, &dir))),
            self.shared.shutdown.signal(),
        );
        self.shared.edge_tls = Some(terminator);
        Ok(())
    }

    fn running(self, nodes: Vec<NodeAddrs>, tasks: JoinSet<()>) -> Running {
        Running {
            nodes,
            shutdown: self.shared.shutdown,
            tasks,
            new_token: self.new_token,
        }
    }
}

/// The parents an edge pulls through, at `url_of(parent)`.
fn parent_targets(
    topology: &Topology,
    edge: &topology::EdgeNodeSettings,
    url_of: impl Fn(&topology::CacheNodeSettings) -> Option<http::Uri>,
) -> Vec<ParentTarget> {
    topology
        .parents_of(edge)
        .into_iter()
        .filter_map(|p| {
            Some(ParentTarget {
                name: p.name.clone(),
                url: url_of(p)?,
            })
        })
        .collect()
}

/// The topology names no origin the CDN could pull from (its checks make this rare: a `url`
/// that does not parse as one).
fn no_origin() -> TopologyError {
    TopologyError::Invalid {
        file: "the topology".into(),
        problem: "origin: no address to pull from".into(),
    }
}

fn http_url(addr: SocketAddr) -> Option<http::Uri> {
    format!("http://{addr}").parse().ok()
}

impl Cdn {
    /// Runs the whole CDN of `topology` in this process: its origin (unless it is an external
    /// `url`), parents, edges, DNS and anycast. Must be called within a Tokio runtime, which
    /// then runs the nodes.
    pub async fn start(topology: &Topology, overrides: &Overrides) -> Result<Running, StartError> {
        let mut setup = Setup::for_topology(topology, overrides)?;
        if topology.edges.iter().any(|e| e.https.is_some()) {
            setup.edge_tls(topology)?;
        }
        setup.shield(topology)?;
        if !topology.edges.is_empty() {
            setup.shared.workers = Some(WorkersSetup::new(&setup.state_dir)?);
        }
        setup.admin_tls(topology)?;

        let origin = match (topology.origin.listen, topology.origin.admin) {
            (Some(listen), Some(admin)) => {
                Some(Bound::bind(&topology.origin.name, listen, admin).await?)
            }
            _ => None,
        };
        let mut parents = Vec::new();
        for parent in &topology.parents {
            parents.push(Bound::bind(&parent.name, parent.listen, parent.admin).await?);
        }
        let mut edges = Vec::new();
        for edge in &topology.edges {
            let bound = Bound::bind(&edge.name, edge.listen, edge.admin).await?;
            edges.push((edge, bound.with_https(edge.https).await?));
        }
        let control = match &topology.control {
            Some(control) => {
                let listener = nodes::listen(&control.name, "control", control.listen).await?;
                let addr = listener.local_addr().unwrap_or(control.listen);
                setup.follow_control(topology, addr)?;
                Some((control, listener))
            }
            None => None,
        };
        let fleet = control::Fleet::new(
            topology,
            parents
                .iter()
                .chain(edges.iter().map(|(_, bound)| bound))
                .map(|bound| (bound.name.clone(), bound.admin_addr())),
        );

        let mut tasks = JoinSet::new();
        let mut nodes = Vec::new();
        if let Some((control, listener)) = control {
            nodes.push(nodes::start_control(
                &mut tasks,
                &setup.shared,
                control,
                listener,
                fleet,
                setup.admin_client(topology)?,
                &setup.state_dir,
            ));
        }
        let shared = &setup.shared;
        let origin_url = match origin {
            Some(origin) => {
                let tls = setup.origin_tls(topology, origin.data_addr())?;
                let config = topology.origin.origin_config();
                let addrs = nodes::start_origin(&mut tasks, shared, origin, &config, tls)?;
                let url = addrs.data_url().parse().ok();
                nodes.push(addrs);
                url
            }
            None => topology.origin.upstream_url(),
        };
        let origin_url = origin_url.ok_or_else(no_origin)?;
        let parent_addrs: Vec<(String, SocketAddr)> = parents
            .iter()
            .map(|p| (p.name.clone(), p.data_addr()))
            .collect();
        for parent in parents {
            nodes.push(nodes::start_parent(
                &mut tasks,
                shared,
                parent,
                origin_url.clone(),
            )?);
        }
        let mut places = Vec::new();
        for (settings, bound) in edges {
            let targets = parent_targets(topology, settings, |p| {
                let (_, addr) = parent_addrs.iter().find(|(name, _)| *name == p.name)?;
                http_url(*addr)
            });
            let addrs = nodes::start_edge(
                &mut tasks,
                shared,
                bound,
                targets,
                Some(origin_url.clone()),
                settings.location,
            )?;
            places.push(routing::EdgePlace {
                name: settings.name.clone(),
                http: addrs.data,
                https: addrs.https,
                location: settings.location.unwrap_or_default(),
            });
            nodes.push(addrs);
        }
        let shutdown = &shared.shutdown;
        nodes.extend(routing::start_dns(&mut tasks, topology, &places, shutdown).await?);
        nodes.extend(
            routing::start_anycast(
                &mut tasks,
                topology,
                &places,
                overrides.config_path.as_deref(),
                shutdown,
            )
            .await?,
        );
        if let Some(settings) = &topology.dashboard {
            let listener = nodes::listen("dashboard", "dashboard", settings.listen).await?;
            let client = setup.admin_client(topology)?;
            let dashboard = nodes::start_dashboard(
                &mut tasks,
                &setup.shared,
                topology,
                listener,
                &nodes,
                client,
            );
            nodes.push(dashboard);
        }
        Ok(setup.running(nodes, tasks))
    }

    /// Runs the one node of `topology` called `name` (its origin, a parent or an edge of it),
    /// reaching the other nodes at their configured addresses; the DNS and the anycast router
    /// have no name (a topology has one of each).
    pub async fn start_node(
        topology: &Topology,
        role: Role,
        name: &str,
        overrides: &Overrides,
    ) -> Result<Running, StartError> {
        match role {
            Role::Dns => return Self::start_dns(topology).await,
            Role::Anycast => return Self::start_anycast(topology, overrides).await,
            Role::Origin | Role::Parent | Role::Edge | Role::Control | Role::Dashboard => {}
        }
        let mut setup = Setup::for_topology(topology, overrides)?;
        setup.shield(topology)?;
        setup.admin_tls(topology)?;
        if matches!(role, Role::Parent | Role::Edge)
            && let Some(control) = &topology.control
        {
            setup.follow_control(topology, control.reached())?;
        }
        let unknown = || StartError::UnknownNode {
            role: role.as_str(),
            name: name.to_owned(),
        };
        let mut tasks = JoinSet::new();
        let addrs = match role {
            Role::Origin => {
                let origin = &topology.origin;
                let (Some(listen), Some(admin)) = (origin.listen, origin.admin) else {
                    return Err(unknown());
                };
                if origin.name != name {
                    return Err(unknown());
                }
                let bound = Bound::bind(&origin.name, listen, admin).await?;
                let tls = setup.origin_tls(topology, origin.reached(listen))?;
                nodes::start_origin(
                    &mut tasks,
                    &setup.shared,
                    bound,
                    &origin.origin_config(),
                    tls,
                )?
            }
            Role::Edge => {
                let origin_url = topology.origin.upstream_url().ok_or_else(no_origin)?;
                let settings = topology
                    .edges
                    .iter()
                    .find(|e| e.name == name)
                    .ok_or_else(unknown)?;
                let targets = parent_targets(topology, settings, |p| http_url(p.reached(p.listen)));
                if settings.https.is_some() {
                    setup.edge_tls(topology)?;
                }
                let bound = Bound::bind(&settings.name, settings.listen, settings.admin)
                    .await?
                    .with_https(settings.https)
                    .await?;
                setup.shared.workers = Some(WorkersSetup::new(&setup.state_dir)?);
                nodes::start_edge(
                    &mut tasks,
                    &setup.shared,
                    bound,
                    targets,
                    Some(origin_url),
                    settings.location,
                )?
            }
            Role::Parent => {
                let origin_url = topology.origin.upstream_url().ok_or_else(no_origin)?;
                let settings = topology
                    .parents
                    .iter()
                    .find(|p| p.name == name)
                    .ok_or_else(unknown)?;
                let bound = Bound::bind(&settings.name, settings.listen, settings.admin).await?;
                nodes::start_parent(&mut tasks, &setup.shared, bound, origin_url)?
            }
            Role::Control => {
                let control = topology
                    .control
                    .as_ref()
                    .filter(|c| c.name == name)
                    .ok_or_else(unknown)?;
                let listener = nodes::listen(&control.name, "control", control.listen).await?;
                let fleet = control::Fleet::new(topology, topology.admin_addresses());
                nodes::start_control(
                    &mut tasks,
                    &setup.shared,
                    control,
                    listener,
                    fleet,
                    setup.admin_client(topology)?,
                    &setup.state_dir,
                )
            }
            Role::Dashboard => {
                let settings = topology.dashboard.as_ref().ok_or_else(unknown)?;
                let listener = nodes::listen("dashboard", "dashboard", settings.listen).await?;
                nodes::start_dashboard(
                    &mut tasks,
                    &setup.shared,
                    topology,
                    listener,
                    &dashboard::configured_nodes(topology),
                    setup.admin_client(topology)?,
                )
            }
            Role::Dns | Role::Anycast => return Err(unknown()),
        };
        Ok(setup.running(vec![addrs], tasks))
    }

    /// Runs one edge or parent in front of `node.upstream`, with the built-in defaults.
    pub async fn start_standalone(node: &Standalone) -> Result<Running, StartError> {
        let topology = Topology::default_topology();
        let mut setup = Setup::new(
            &topology,
            topology.tls.state_dir.clone(),
            node.token.clone(),
        );
        // A standalone node (like `varnishd -b`) caches in memory only: it has no topology
        // that would say where a disk tier may live.
        setup.shared.cache.disk_mib = 0;
        if node.upstream.scheme() == Some(&http::uri::Scheme::HTTPS) {
            setup.shared.upstream_tls = Some(tls::upstream_client(node.upstream_ca.as_deref())?);
        }
        let bound = Bound::bind(&node.name, node.listen, node.admin).await?;
        let mut tasks = JoinSet::new();
        let upstream = node.upstream.clone();
        let addrs = match node.role {
            Role::Edge => nodes::start_edge(
                &mut tasks,
                &setup.shared,
                bound,
                Vec::new(),
                Some(upstream),
                None,
            )?,
            Role::Parent => nodes::start_parent(&mut tasks, &setup.shared, bound, upstream)?,
            role => {
                return Err(StartError::UnknownNode {
                    role: role.as_str(),
                    name: node.name.clone(),
                });
            }
        };
        Ok(setup.running(vec![addrs], tasks))
    }

    /// Runs Outpost's origin server alone, serving `root` (default: the shipped demo site).
    pub async fn start_origin(
        root: Option<PathBuf>,
        listen: SocketAddr,
        admin: SocketAddr,
    ) -> Result<Running, StartError> {
        let topology = Topology::default_topology();
        let setup = Setup::new(&topology, topology.tls.state_dir.clone(), None);
        let mut config = topology.origin.origin_config();
        if let Some(root) = root {
            config.root = root;
        }
        let bound = Bound::bind("origin", listen, admin).await?;
        let mut tasks = JoinSet::new();
        let addrs = nodes::start_origin(&mut tasks, &setup.shared, bound, &config, None)?;
        Ok(setup.running(vec![addrs], tasks))
    }

    /// Runs the geo DNS of `topology` alone, over its edges at their configured addresses.
    pub async fn start_dns(topology: &Topology) -> Result<Running, StartError> {
        let setup = Setup::new(topology, topology.tls.state_dir.clone(), None);
        let edges = routing::configured_edges(topology);
        let mut tasks = JoinSet::new();
        let dns = routing::start_dns(&mut tasks, topology, &edges, &setup.shared.shutdown)
            .await?
            .ok_or(StartError::NoTable("dns"))?;
        Ok(setup.running(vec![dns], tasks))
    }

    /// Runs the simulated anycast router of `topology` alone, over its edges at their
    /// configured addresses; on SIGHUP it reads its costs again from `overrides.config_path`.
    pub async fn start_anycast(
        topology: &Topology,
        overrides: &Overrides,
    ) -> Result<Running, StartError> {
        let setup = Setup::new(topology, topology.tls.state_dir.clone(), None);
        let edges = routing::configured_edges(topology);
        let mut tasks = JoinSet::new();
        let anycast = routing::start_anycast(
            &mut tasks,
            topology,
            &edges,
            overrides.config_path.as_deref(),
            &setup.shared.shutdown,
        )
        .await?
        .ok_or(StartError::NoTable("anycast"))?;
        Ok(setup.running(vec![anycast], tasks))
    }
}
