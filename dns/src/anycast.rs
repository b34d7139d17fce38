//! Simulated anycast: one address shared by every edge. Which edge a connection reaches is
//! decided by a routing table, not by DNS: every edge announces the anycast prefix with a path
//! cost from each client network (by default, the great-circle distance in km), and a new
//! connection goes to the lowest-cost announcing edge for its source network, forwarded at
//! layer 4 so TLS ends on the chosen edge. Equal costs spread flows by a hash of the flow
//! (ECMP).
//!
//! An edge whose health check fails `fall` times in a row withdraws its announcement; it
//! announces again after `rise` successes plus a hold-down. As in real anycast, connections
//! already open to a withdrawn edge break: they are closed when the route goes away.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use outpost_server::ShutdownSignal;

use crate::networks::NetworkTable;
use outpost_server::health::{HealthSettings, HealthTargets, Hysteresis, Probe, spawn_health_loop};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The `[anycast]` table of the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnycastConfig {
    /// The shared address.
    pub address: IpAddr,
    /// Port of the shared HTTP listener (forwarded to each edge's HTTP listener).
    pub http_port: u16,
    /// Port of the shared HTTPS listener (forwarded to each edge's HTTPS listener, so TLS
    /// ends on the chosen edge).
    pub https_port: Option<u16>,
    /// Plain-HTTP admin listener with /health and Prometheus /metrics (the routing gauges).
    pub admin: Option<std::net::SocketAddr>,
    /// How the router checks each edge (`[anycast.health]`).
    pub health: HealthSettings,
    /// After `rise` good probes, a withdrawn edge waits this long before announcing again.
    pub hold_down_ms: u64,
    /// Costs that replace the distance for one client network and edge (e.g. to drain an
    /// edge before withdrawing it).
    pub costs: Vec<CostOverride>,
}

impl Default for AnycastConfig {
    fn default() -> Self {
        Self {
            address: IpAddr::from([127, 0, 0, 10]),
            http_port: 8080,
            https_port: Some(8443),
            admin: None,
            health: HealthSettings::new(500, 500, 2, 2),
            hold_down_ms: 2_000,
            costs: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostOverride {
    /// A client network prefix from the networks table, e.g. "127.0.2.0/24".
    pub network: String,
    pub edge: String,
    pub cost: u32,
}

/// An edge that announces the anycast prefix.
#[derive(Debug, Clone)]
pub struct AnycastEdge {
    pub name: String,
    pub location: [f64; 2],
    /// Where the edge's plain HTTP listener is (health checks go there too).
    pub http: SocketAddr,
    /// Where its HTTPS listener is, if any.
    pub https: Option<SocketAddr>,
}

/// Which of an edge's listeners an anycast listener forwards to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Http,
    Https,
}

#[derive(Debug, thiserror::Error)]
pub enum AnycastError {
    #[error("anycast.costs[{index}]: {reason}")]
    BadCost { index: usize, reason: String },
    #[error("anycast: no edge announces the prefix; expected at least one edge")]
    NoEdges,
}

struct EdgeRoute {
    edge: AnycastEdge,
    announced: AtomicBool,
    /// Bumped on every withdrawal: open connections watch it and close.
    withdrawals: watch::Sender<u64>,
    /// The health checks' view, with rise and fall.
    health: Hysteresis,
}

/// The routes of every client network: the shared network table and, per network, the cost
/// to each edge.
struct Routes {
    networks: NetworkTable,
    /// `costs[network][edge]`, indexed like `NetworkTable::networks` and `RoutingTable::edges`.
    costs: Vec<Vec<u32>>,
}

/// The simulated routing table: per client network, the cost to each announcing edge.
pub struct RoutingTable {
    edges: Vec<EdgeRoute>,
    /// Replaced whole when an operator changes the costs.
    routes: ArcSwap<Routes>,
    /// Cost for sources outside every known network, per edge.
    default_costs: Vec<u32>,
    /// When each edge's health first went bad (for convergence time).
    first_failure: Mutex<HashMap<usize, Instant>>,
    gauges: crate::view::RoutingGauges,
}

/// The cost from each client network to each edge: the distance, unless `config` overrides it.
fn routes(
    config: &AnycastConfig,
    edges: &[AnycastEdge],
    networks: &NetworkTable,
) -> Result<Routes, AnycastError> {
    let mut costs: Vec<Vec<u32>> = networks
        .networks()
        .iter()
        .map(|n| {
            edges
                .iter()
                .map(|e| distance_km(n.location, e.location))
                .collect()
        })
        .collect();
    for (index, cost) in config.costs.iter().enumerate() {
        let edge = edges
            .iter()
            .position(|e| e.name == cost.edge)
            .ok_or_else(|| AnycastError::BadCost {
                index,
                reason: format!("no edge named {:?}", cost.edge),
            })?;
        let network = networks
            .position(&cost.network)
            .ok_or_else(|| AnycastError::BadCost {
                index,
                reason: format!("no client network {:?} in the networks table", cost.network),
            })?;
        costs[network][edge] = cost.cost;
    }
    Ok(Routes {
        networks: networks.clone(),
        costs,
    })
}

impl RoutingTable {
    /// `networks`: the client networks table the DNS uses too.
    pub fn new(
        config: &AnycastConfig,
        edges: Vec<AnycastEdge>,
        networks: &NetworkTable,
    ) -> Result<Self, AnycastError> {
        if edges.is_empty() {
            return Err(AnycastError::NoEdges);
        }
        let parsed = routes(config, &edges, networks)?;
        let default_costs = vec![1000; edges.len()];
        let table = Self {
            edges: edges
                .into_iter()
                .map(|edge| EdgeRoute {
                    edge,
                    announced: AtomicBool::new(true),
                    withdrawals: watch::channel(0).0,
                    health: Hysteresis::new(),
                })
                .collect(),
            routes: ArcSwap::from_pointee(parsed),
            default_costs,
            first_failure: Mutex::new(HashMap::new()),
            gauges: crate::view::RoutingGauges::default(),
        };
        table.gauges.publish(&table.routing());
        Ok(table)
    }

    /// Registers the routing gauges (`outpost_anycast_*`) on an admin registry.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.gauges.register(registry, "anycast");
    }

    /// Changes the costs (an operator draining an edge by raising its cost, say) without
    /// touching open flows; the edges stay those the table was built with.
    pub fn update_costs(
        &self,
        config: &AnycastConfig,
        networks: &NetworkTable,
    ) -> Result<(), AnycastError> {
        let edges: Vec<AnycastEdge> = self.edges.iter().map(|e| e.edge.clone()).collect();
        self.routes
            .store(Arc::new(routes(config, &edges, networks)?));
        self.gauges.publish(&self.routing());
        Ok(())
    }

    /// The edge a flow from `source` reaches: the lowest-cost announcing edge; equal costs are
    /// split by a hash of the flow (ECMP). `None` when no edge announces.
    pub fn route(&self, source: SocketAddr, destination_port: u16) -> Option<usize> {
        let routes = self.routes.load();
        let costs = routes
            .networks
            .locate(source.ip(), 128)
            .and_then(|(index, _)| routes.costs.get(index))
            .map_or(&self.default_costs[..], |costs| &costs[..]);
        let best = self
            .edges
            .iter()
            .enumerate()
            .filter(|(_, e)| e.announced.load(Ordering::SeqCst))
            .map(|(i, _)| costs[i])
            .min()?;
        let tied: Vec<usize> = (0..self.edges.len())
            .filter(|&i| self.edges[i].announced.load(Ordering::SeqCst) && costs[i] == best)
            .collect();
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&(source, destination_port), &mut hasher);
        let hash = std::hash::Hasher::finish(&hasher);
        Some(tied[(hash % tied.len() as u64) as usize])
    }

    pub fn edge_name(&self, index: usize) -> &str {
        &self.edges[index].edge.name
    }

    /// Announces or withdraws an edge (health, or an operator).
    pub fn set_announced(&self, index: usize, announced: bool) {
        let route = &self.edges[index];
        if route.announced.swap(announced, Ordering::SeqCst) != announced {
            if !announced {
                route.withdrawals.send_modify(|n| *n += 1);
            }
            self.gauges.publish(&self.routing());
        }
    }

    /// The edge each network's flows reach now.
    pub fn routing(&self) -> crate::view::RoutingView {
        use crate::view::{EdgeRouting, NetworkRouting, RoutingView};
        let routes = self.routes.load();
        RoutingView {
            edges: self
                .edges
                .iter()
                .map(|e| EdgeRouting {
                    name: e.edge.name.clone(),
                    serving: e.announced.load(Ordering::SeqCst),
                    shedding: false,
                })
                .collect(),
            networks: routes
                .networks
                .networks()
                .iter()
                .map(|network| NetworkRouting {
                    prefix: network.prefix.to_string(),
                    location: network.location,
                    edges: self
                        .route(SocketAddr::new(network.prefix.network(), 0), 0)
                        .map(|i| self.edges[i].edge.name.clone())
                        .into_iter()
                        .collect(),
                })
                .collect(),
        }
    }

    /// The table, per client network: each edge's cost, whether it announces, and the winner.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let names: Vec<&str> = self.edges.iter().map(|e| e.edge.name.as_str()).collect();
        let routes = self.routes.load();
        for (network, costs) in routes.networks.networks().iter().zip(&routes.costs) {
            let winner = self
                .route(SocketAddr::new(network.prefix.network(), 0), 0)
                .map_or("(none: no edge announces)", |i| names[i]);
            out.push_str(&format!("{:<18} -> {winner}\n", network.prefix.to_string()));
            for (i, name) in names.iter().enumerate() {
                let state = if self.edges[i].announced.load(Ordering::SeqCst) {
                    "announced"
                } else {
                    "withdrawn"
                };
                out.push_str(&format!("    {name:<12} cost {:>6}  {state}\n", costs[i]));
            }
        }
        out
    }
}

/// Great-circle distance in km, rounded: the default path cost.
pub fn distance_km(a: [f64; 2], b: [f64; 2]) -> u32 {
    crate::networks::distance_km(a, b).round() as u32
}

/// Accepts connections on `listener` and forwards each, at layer 4, to the edge the routing
/// table picks for its source, until `shutdown` is triggered.
pub async fn serve(
    table: Arc<RoutingTable>,
    listener: TcpListener,
    service: Service,
    mut shutdown: ShutdownSignal,
) {
    let port = listener.local_addr().map_or(0, |a| a.port());
    loop {
        let (client, source) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "anycast accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = shutdown.triggered() => return,
        };
        let Some(index) = table.route(source, port) else {
            tracing::warn!(%source, "anycast: no edge announces the prefix; connection refused");
            continue;
        };
        let route = &table.edges[index];
        let target = match service {
            Service::Http => Some(route.edge.http),
            Service::Https => route.edge.https,
        };
        let Some(target) = target else { continue };
        let mut withdrawn = route.withdrawals.subscribe();
        let edge = route.edge.name.clone();
        tokio::spawn(async move {
            let Ok(mut upstream) = TcpStream::connect(target).await else {
                tracing::debug!(%edge, "anycast: the chosen edge refused the connection");
                return;
            };
            let _ = upstream.set_nodelay(true);
            let _ = client.set_nodelay(true);
            let mut client = client;
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                // The route went away: the flow breaks, as it does in real anycast.
                _ = withdrawn.changed() => tracing::debug!(%edge, %source, "anycast: route withdrawn, flow broken"),
            }
        });
    }
}

/// UDP flows (QUIC) the router keeps at once; past it, new flows are dropped until old ones
/// end.
pub const MAX_UDP_FLOWS: usize = 10_000;
/// A UDP flow with no datagram either way for this long is forgotten.
pub const UDP_FLOW_IDLE: Duration = Duration::from_secs(30);

/// By client address: the socket towards the edge its flow goes to.
type UdpFlows = Arc<Mutex<HashMap<SocketAddr, Arc<tokio::net::UdpSocket>>>>;

/// Forwards UDP datagrams on `socket` (the shared HTTPS port, where QUIC arrives) to the HTTPS
/// port of the edge the routing table picks for each flow (client address and port), and the
/// edge's answers back, until `shutdown`. A flow stays on its edge until it is idle for
/// [`UDP_FLOW_IDLE`] or the edge's route is withdrawn; the client's next datagram then starts a
/// flow to the edge the table picks now (a QUIC connection there starts afresh, as after a
/// real anycast route change).
pub async fn serve_udp(
    table: Arc<RoutingTable>,
    socket: tokio::net::UdpSocket,
    mut shutdown: ShutdownSignal,
) {
    let socket = Arc::new(socket);
    let port = socket.local_addr().map_or(0, |a| a.port());
    let flows: UdpFlows = Arc::default();
    let mut buffer = vec![0u8; 65_535];
    loop {
        let (len, source) = tokio::select! {
            received = socket.recv_from(&mut buffer) => match received {
                Ok(received) => received,
                Err(error) => {
                    tracing::debug!(%error, "anycast: UDP receive failed");
                    continue;
                }
            },
            () = shutdown.triggered() => return,
        };
        let known = flows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&source)
            .cloned();
        let upstream = match known {
            Some(upstream) => upstream,
            None => {
                let Some(index) = table.route(source, port) else {
                    continue;
                };
                let route = &table.edges[index];
                let Some(target) = route.edge.https else {
                    continue;
                };
                if flows.lock().unwrap_or_else(|p| p.into_inner()).len() >= MAX_UDP_FLOWS {
                    tracing::warn!(%source, "anycast: too many UDP flows; datagram dropped");
                    continue;
                }
                let bind = SocketAddr::new(
                    if target.is_ipv4() {
                        std::net::Ipv4Addr::UNSPECIFIED.into()
                    } else {
                        std::net::Ipv6Addr::UNSPECIFIED.into()
                    },
                    0,
                );
                let Ok(upstream) = tokio::net::UdpSocket::bind(bind).await else {
                    continue;
                };
                if upstream.connect(target).await.is_err() {
                    continue;
                }
                let upstream = Arc::new(upstream);
                flows
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(source, upstream.clone());
                let (socket, flows, upstream_task) =
                    (socket.clone(), flows.clone(), upstream.clone());
                let mut withdrawn = route.withdrawals.subscribe();
                let edge = route.edge.name.clone();
                tokio::spawn(async move {
                    let mut answer = vec![0u8; 65_535];
                    loop {
                        tokio::select! {
                            received = tokio::time::timeout(UDP_FLOW_IDLE, upstream_task.recv(&mut answer)) => {
                                match received {
                                    Ok(Ok(len)) => {
                                        let _ = socket.send_to(&answer[..len], source).await;
                                    }
                                    // Idle, or the edge's port is gone.
                                    _ => break,
                                }
                            }
                            _ = withdrawn.changed() => {
                                tracing::debug!(%edge, %source, "anycast: route withdrawn, UDP flow ended");
                                break;
                            }
                        }
                    }
                    flows
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&source);
                });
                upstream
            }
        };
        let _ = upstream.send(&buffer[..len]).await;
    }
}

/// The edges as the router's health loop sees them.
struct EdgeRoutes {
    table: Arc<RoutingTable>,
    hold_down: Duration,
}

impl HealthTargets for EdgeRoutes {
    fn count(&self) -> usize {
        self.table.edges.len()
    }

    fn address(&self, index: usize) -> Option<(String, u16)> {
        let http = self.table.edges.get(index)?.edge.http;
        Some((http.ip().to_string(), http.port()))
    }

    fn health(&self, index: usize) -> &Hysteresis {
        &self.table.edges[index].health
    }

    fn probed(&self, index: usize, probe: Probe) {
        let mut failures = self
            .table
            .first_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if probe.is_up() {
            failures.remove(&index);
        } else {
            failures.entry(index).or_insert_with(Instant::now);
        }
    }

    fn changed(&self, index: usize, healthy: bool) {
        let table = &self.table;
        if !healthy {
            let since = table
                .first_failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&index)
                .map(|t| t.elapsed());
            table.set_announced(index, false);
            tracing::warn!(
                target: "outpost::anycast",
                "withdrawn edge={} convergence_ms={}",
                table.edges[index].edge.name,
                since.map_or(0, |d| d.as_millis())
            );
            return;
        }
        let (table, hold_down) = (table.clone(), self.hold_down);
        tokio::spawn(async move {
            tokio::time::sleep(hold_down).await;
            // Only if it stayed healthy through the hold-down.
            if table.edges[index].health.is_healthy() {
                table.set_announced(index, true);
                tracing::info!(target: "outpost::anycast", "announced edge={} after hold-down", table.edges[index].edge.name);
            }
        });
    }
}

/// Probes every edge's health path on its HTTP listener through the one health loop;
/// withdraws after `fall` failures and announces again after `rise` successes and the
/// hold-down.
pub fn spawn_health(table: Arc<RoutingTable>, config: AnycastConfig, shutdown: ShutdownSignal) {
    let routes = EdgeRoutes {
        table,
        hold_down: Duration::from_millis(config.hold_down_ms),
    };
    spawn_health_loop(Arc::new(routes), config.health, shutdown);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edges() -> Vec<AnycastEdge> {
        let at = |name: &str, location: [f64; 2], port: u16| AnycastEdge {
            name: name.into(),
            location,
            http: SocketAddr::from(([127, 0, 0, 1], port)),
            https: None,
        };
        vec![
            at("edge-ams", [52.4, 4.9], 1),
            at("edge-nyc", [40.7, -74.0], 2),
            at("edge-sin", [1.35, 103.8], 3),
        ]
    }

    fn networks() -> NetworkTable {
        let entry = |prefix: &str, location| crate::Network {
            prefix: prefix.into(),
            location,
        };
        NetworkTable::new(&[
            entry("127.0.1.0/24", [50.1, 8.7]),
            entry("127.0.2.0/24", [39.0, -77.5]),
            entry("127.0.3.0/24", [1.35, 103.8]),
        ])
        .unwrap()
    }

    fn from(ip: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::from((ip, port))
    }

    #[test]
    fn nearest_announcing_edge_wins_and_withdrawal_moves_flows() {
        let table = RoutingTable::new(&AnycastConfig::default(), edges(), &networks()).unwrap();
        assert_eq!(table.route(from([127, 0, 1, 5], 4000), 8080), Some(0));
        assert_eq!(table.route(from([127, 0, 2, 5], 4000), 8080), Some(1));
        assert_eq!(table.route(from([127, 0, 3, 5], 4000), 8080), Some(2));
        table.set_announced(0, false);
        // Europe goes to the next cheapest: New York is nearer Frankfurt than Singapore.
        assert_eq!(table.route(from([127, 0, 1, 5], 4000), 8080), Some(1));
        assert!(table.render().contains("withdrawn"));
        for i in 0..3 {
            table.set_announced(i, false);
        }
        assert_eq!(table.route(from([127, 0, 1, 5], 4000), 8080), None);
    }

    #[test]
    fn equal_costs_spread_flows_and_overrides_drain() {
        let config = AnycastConfig {
            costs: vec![
                CostOverride {
                    network: "127.0.1.0/24".into(),
                    edge: "edge-ams".into(),
                    cost: 10,
                },
                CostOverride {
                    network: "127.0.1.0/24".into(),
                    edge: "edge-nyc".into(),
                    cost: 10,
                },
            ],
            ..AnycastConfig::default()
        };
        let table = RoutingTable::new(&config, edges(), &networks()).unwrap();
        let mut seen = std::collections::HashSet::new();
        for port in 1000..1100 {
            seen.insert(table.route(from([127, 0, 1, 5], port), 8080).unwrap());
            // The same flow always takes the same path.
            assert_eq!(
                table.route(from([127, 0, 1, 5], port), 8080),
                table.route(from([127, 0, 1, 5], port), 8080)
            );
        }
        assert_eq!(seen.len(), 2, "ECMP uses both equal-cost edges");
        let bad = AnycastConfig {
            costs: vec![CostOverride {
                network: "10.0.0.0/8".into(),
                edge: "edge-ams".into(),
                cost: 1,
            }],
            ..AnycastConfig::default()
        };
        let error = RoutingTable::new(&bad, edges(), &networks())
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("anycast.costs[0]"), "{error}");
    }

    #[test]
    fn distances_are_great_circle() {
        let d = distance_km([52.4, 4.9], [40.7, -74.0]);
        assert!((5800..5900).contains(&d), "{d}");
    }
}
