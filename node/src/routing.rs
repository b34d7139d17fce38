//! Request routing of a topology: the geo DNS and the simulated anycast address, over the
//! edges where they run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use outpost_dns::anycast::{self, AnycastEdge, RoutingTable, Service};
use outpost_dns::{EdgeSite, GeoDns};
use outpost_server::Shutdown;
use outpost_server::admin::{Admin, Registry};
use tokio::task::JoinSet;

use crate::error::StartError;
use crate::topology::Topology;
use crate::{NodeAddrs, Role};

/// Where an edge runs, as routing needs it.
pub struct EdgePlace {
    pub name: String,
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
    pub location: [f64; 2],
}

/// The edges of a topology at their configured addresses.
pub fn configured_edges(topology: &Topology) -> Vec<EdgePlace> {
    topology
        .edges
        .iter()
        .map(|e| EdgePlace {
            name: e.name.clone(),
            http: e.reached(e.listen),
            https: e.https.map(|a| e.reached(a)),
            location: e.location.unwrap_or_default(),
        })
        .collect()
}

/// Builds the geo DNS for `edges`.
pub fn geo_dns(topology: &Topology, edges: &[EdgePlace]) -> Result<Arc<GeoDns>, StartError> {
    let Some(dns) = topology.dns.as_ref() else {
        return Err(StartError::NoTable("dns"));
    };
    let sites = edges
        .iter()
        .map(|e| EdgeSite {
            name: e.name.clone(),
            address: e.http.ip(),
            location: e.location,
        })
        .collect();
    let geo = GeoDns::new(&dns.authority, sites).map_err(StartError::Dns)?;
    let configured = dns.authority.dynamic_ttl_secs;
    let geo = geo.cap_dynamic_ttl(dns.health.decision_horizon());
    if geo.dynamic_ttl() < configured {
        tracing::info!(
            target: "outpost",
            "dns: dynamic answers get a TTL of {} s, not {configured} s: no longer than the health checks take to move traffic (dns.health interval_ms x fall)",
            geo.dynamic_ttl()
        );
    }
    Ok(Arc::new(geo))
}

/// Starts the DNS server and its health checks of the edges; `None` when the topology has no
/// `[dns]`.
pub async fn start_dns(
    tasks: &mut JoinSet<()>,
    topology: &Topology,
    edges: &[EdgePlace],
    shutdown: &Shutdown,
) -> Result<Option<NodeAddrs>, StartError> {
    let Some(settings) = &topology.dns else {
        return Ok(None);
    };
    let dns = geo_dns(topology, edges)?;
    let bind_error = |listener, addr| {
        move |source| StartError::Bind {
            node: "dns".into(),
            listener,
            addr,
            source,
        }
    };
    let (udp, tcp) = outpost_dns::bind(settings.listen)
        .await
        .map_err(bind_error("UDP and TCP", settings.listen))?;
    let addr = udp
        .local_addr()
        .map_err(bind_error("UDP", settings.listen))?;
    outpost_dns::spawn_health_checks(
        dns.clone(),
        edges.iter().map(|e| (e.name.clone(), e.http)).collect(),
        settings.health.clone(),
        shutdown.signal(),
    );
    let admin = match settings.admin {
        Some(listen) => {
            let mut registry = crate::nodes::node_registry("dns", Role::Dns);
            dns.register_metrics(&mut registry);
            Some(serve_router_admin(tasks, "dns", listen, registry, shutdown).await?)
        }
        None => None,
    };
    let signal = shutdown.signal();
    tasks.spawn(async move {
        if let Err(error) = outpost_dns::serve(dns, udp, tcp, signal).await {
            tracing::error!(target: "outpost", "dns: {error}");
        }
    });
    Ok(Some(NodeAddrs {
        name: "dns".into(),
        role: Role::Dns,
        data: addr,
        data_tls: false,
        admin,
        admin_tls: false,
        https: None,
    }))
}

/// The plain-HTTP admin listener of the DNS or the anycast router: /health and /metrics.
async fn serve_router_admin(
    tasks: &mut JoinSet<()>,
    name: &'static str,
    listen: SocketAddr,
    registry: Registry,
    shutdown: &Shutdown,
) -> Result<SocketAddr, StartError> {
    let bind_error = |source| StartError::Bind {
        node: name.into(),
        listener: "admin",
        addr: listen,
        source,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    let handler = Arc::new(Admin::new(name, None, Arc::new(registry), None));
    let limits = outpost_server::Limits::default();
    let admission = outpost_server::admission::Admission::new(limits.connection_caps(false));
    tasks.spawn(outpost_server::serve(
        name.into(),
        listener,
        handler,
        limits,
        admission,
        shutdown.signal(),
    ));
    Ok(bound)
}

/// The routing table of the anycast address over `edges`.
pub fn routing_table(
    topology: &Topology,
    edges: &[EdgePlace],
) -> Result<Arc<RoutingTable>, StartError> {
    let config = topology.anycast.clone().unwrap_or_default();
    let edges = edges
        .iter()
        .map(|e| AnycastEdge {
            name: e.name.clone(),
            location: e.location,
            http: e.http,
            https: e.https,
        })
        .collect();
    Ok(Arc::new(
        RoutingTable::new(
            &config,
            edges,
            &topology.networks().map_err(StartError::Networks)?,
        )
        .map_err(StartError::Anycast)?,
    ))
}

/// Starts the anycast listeners and the health checks that withdraw and announce edges; `None`
/// when the topology has no `[anycast]`. On SIGHUP, the costs are read again from
/// `config_path` (an operator drains an edge by raising its cost: new flows move, open ones
/// stay).
pub async fn start_anycast(
    tasks: &mut JoinSet<()>,
    topology: &Topology,
    edges: &[EdgePlace],
    config_path: Option<&Path>,
    shutdown: &Shutdown,
) -> Result<Option<NodeAddrs>, StartError> {
    let Some(config) = &topology.anycast else {
        return Ok(None);
    };
    let table = routing_table(topology, edges)?;
    let bind = |listener, port| async move {
        let addr = SocketAddr::new(config.address, port);
        let bound = tokio::net::TcpListener::bind(addr).await;
        let bound = bound.and_then(|l| Ok((l.local_addr()?, l)));
        bound.map_err(|source| StartError::Bind {
            node: "anycast".into(),
            listener,
            addr,
            source,
        })
    };
    let (http_addr, http) = bind("HTTP", config.http_port).await?;
    let mut https_addr = None;
    if let Some(port) = config.https_port
        && edges.iter().any(|e| e.https.is_some())
    {
        let (addr, https) = bind("HTTPS", port).await?;
        https_addr = Some(addr);
        // QUIC to the edges' HTTP/3 on the same port number, over UDP.
        let udp = tokio::net::UdpSocket::bind(addr)
            .await
            .map_err(|source| StartError::Bind {
                node: "anycast".into(),
                listener: "HTTPS (UDP)",
                addr,
                source,
            })?;
        tasks.spawn(anycast::serve_udp(table.clone(), udp, shutdown.signal()));
        tasks.spawn(anycast::serve(
            table.clone(),
            https,
            Service::Https,
            shutdown.signal(),
        ));
    }
    tasks.spawn(anycast::serve(
        table.clone(),
        http,
        Service::Http,
        shutdown.signal(),
    ));
    let admin = match config.admin {
        Some(listen) => {
            let mut registry = crate::nodes::node_registry("anycast", Role::Anycast);
            table.register_metrics(&mut registry);
            Some(serve_router_admin(tasks, "anycast", listen, registry, shutdown).await?)
        }
        None => None,
    };
    anycast::spawn_health(table.clone(), config.clone(), shutdown.signal());
    if let Some(path) = config_path {
        spawn_cost_reloader(table, path.to_owned(), shutdown.signal())?;
    }
    Ok(Some(NodeAddrs {
        name: "anycast".into(),
        role: Role::Anycast,
        data: http_addr,
        data_tls: false,
        admin,
        admin_tls: false,
        https: https_addr,
    }))
}

/// Re-reads `[anycast] costs` (and the network table) from `path` on every SIGHUP.
fn spawn_cost_reloader(
    table: Arc<RoutingTable>,
    path: PathBuf,
    mut shutdown: outpost_server::ShutdownSignal,
) -> Result<(), StartError> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|source| StartError::Signal {
            signal: "SIGHUP",
            source,
        })?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                received = hangups.recv() => if received.is_none() { return },
                () = shutdown.triggered() => return,
            }
            let reloaded = Topology::load(&path)
                .map_err(StartError::from)
                .and_then(|topology| {
                    let config = topology.anycast.clone().unwrap_or_default();
                    let networks = topology.networks().map_err(StartError::Networks)?;
                    table
                        .update_costs(&config, &networks)
                        .map_err(StartError::Anycast)
                });
            match reloaded {
                Ok(()) => tracing::info!(
                    target: "outpost::anycast",
                    "costs reloaded from {}:\n{}",
                    path.display(),
                    table.render().trim_end()
                ),
                Err(error) => tracing::error!(
                    target: "outpost::anycast",
                    "costs not reloaded, the old ones stay: {error}"
                ),
            }
        }
    });
    Ok(())
}
