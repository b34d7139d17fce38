//! Wiring of request routing: the geo DNS and the simulated anycast address.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::borrow::Cow;

use anyhow::Context;
use outpost_dns::anycast::{self, AnycastEdge, RoutingTable, Service};
use outpost_dns::{EdgeSite, GeoDns};
use outpost_server::Shutdown;
use outpost_server::admin::{Admin, Registry};
use tokio::task::JoinSet;

use crate::config::Topology;

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
            http: e.listen,
            https: e.https,
            location: e.location.unwrap_or_default(),
        })
        .collect()
}

/// Builds the geo DNS for `edges`.
pub fn geo_dns(topology: &Topology, edges: &[EdgePlace]) -> anyhow::Result<Arc<GeoDns>> {
    let dns = topology
        .dns
        .as_ref()
        .context("no [dns] table in the config")?;
    let sites = edges
        .iter()
        .map(|e| EdgeSite {
            name: e.name.clone(),
            address: e.http.ip(),
            location: e.location,
        })
        .collect();
    let geo = GeoDns::new(&dns.authority, sites).context("dns")?;
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

/// Starts the DNS server and its health checks of the edges.
pub async fn start_dns(
    tasks: &mut JoinSet<()>,
    topology: &Topology,
    edges: &[EdgePlace],
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let Some(settings) = &topology.dns else {
        return Ok(());
    };
    let dns = geo_dns(topology, edges)?;
    let (udp, tcp) = outpost_dns::bind(settings.listen)
        .await
        .with_context(|| format!("dns: binding UDP and TCP {}", settings.listen))?;
    let addr = udp.local_addr()?;
    outpost_dns::spawn_health_checks(
        dns.clone(),
        edges.iter().map(|e| (e.name.clone(), e.http)).collect(),
        settings.health.clone(),
        shutdown.signal().into_receiver(),
    );
    let admin = match settings.admin {
        Some(listen) => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("dns: binding the admin listener on {listen}"))?;
            let bound = listener.local_addr()?;
            let mut registry =
                Registry::with_labels([(Cow::Borrowed("node"), Cow::Borrowed("dns"))].into_iter());
            dns.register_metrics(&mut registry);
            let handler = Arc::new(Admin::new("dns", None, Arc::new(registry), None));
            tasks.spawn(outpost_server::serve(
                "dns".into(),
                listener,
                handler,
                outpost_server::Limits::default(),
                shutdown.signal(),
            ));
            format!("http://{bound}")
        }
        None => "-".to_owned(),
    };
    tracing::info!(target: "outpost", "ready node=dns role=dns data=dns://{addr} admin={admin}");
    let mut signal = shutdown.signal();
    tasks.spawn(async move {
        if let Err(error) =
            outpost_dns::serve(dns, udp, tcp, async move { signal.triggered().await }).await
        {
            tracing::error!(target: "outpost", "dns: {error}");
        }
    });
    Ok(())
}

/// The routing table of the anycast address over `edges`.
pub fn routing_table(
    topology: &Topology,
    edges: &[EdgePlace],
) -> anyhow::Result<Arc<RoutingTable>> {
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
        RoutingTable::new(&config, edges, &topology.networks()).context("anycast")?,
    ))
}

/// Starts the anycast listeners and the health checks that withdraw and announce edges. On
/// SIGHUP, the costs are read again from `config_path` (an operator drains an edge by raising
/// its cost: new flows move, open ones stay).
pub async fn start_anycast(
    tasks: &mut JoinSet<()>,
    topology: &Topology,
    edges: &[EdgePlace],
    config_path: Option<&Path>,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let Some(config) = &topology.anycast else {
        return Ok(());
    };
    let table = routing_table(topology, edges)?;
    let http = tokio::net::TcpListener::bind((config.address, config.http_port))
        .await
        .with_context(|| format!("anycast: binding {}:{}", config.address, config.http_port))?;
    let http_addr = http.local_addr()?;
    let mut https_line = String::new();
    if let Some(port) = config.https_port
        && edges.iter().any(|e| e.https.is_some())
    {
        let https = tokio::net::TcpListener::bind((config.address, port))
            .await
            .with_context(|| format!("anycast: binding {}:{port}", config.address))?;
        https_line = format!(" https=https://{}", https.local_addr()?);
        tasks.spawn(anycast::serve(
            table.clone(),
            https,
            Service::Https,
            shutdown.signal().into_receiver(),
        ));
    }
    tasks.spawn(anycast::serve(
        table.clone(),
        http,
        Service::Http,
        shutdown.signal().into_receiver(),
    ));
    anycast::spawn_health(
        table.clone(),
        config.clone(),
        shutdown.signal().into_receiver(),
    );
    if let Some(path) = config_path {
        spawn_cost_reloader(table, path.to_owned(), shutdown.signal().into_receiver())?;
    }
    tracing::info!(target: "outpost", "ready node=anycast role=anycast data=http://{http_addr} admin=-{https_line}");
    Ok(())
}

/// Re-reads `[anycast] costs` (and the network table) from `path` on every SIGHUP.
fn spawn_cost_reloader(
    table: Arc<RoutingTable>,
    path: PathBuf,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut hangups =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).context("SIGHUP")?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                received = hangups.recv() => if received.is_none() { return },
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            let reloaded = Topology::load(&path).and_then(|topology| {
                let config = topology.anycast.clone().unwrap_or_default();
                table
                    .update_costs(&config, &topology.networks())
                    .context("anycast")
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
                    "costs not reloaded, the old ones stay: {error:#}"
                ),
            }
        }
    });
    Ok(())
}
