//! What the geo DNS and the anycast router currently do, for operators: per edge whether it
//! is handed out, and per client network where its clients go. Served as JSON on the routing
//! admin endpoint (`GET /routing`) and drawn by the dashboard.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

/// One edge as the router sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeRouting {
    pub name: String,
    /// Healthy (DNS) or announced (anycast).
    pub serving: bool,
    /// The DNS hands it out only after every other healthy edge (it sheds load).
    #[serde(default)]
    pub shedding: bool,
}

/// One client network and where it goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkRouting {
    pub prefix: String,
    /// Latitude, longitude.
    pub location: [f64; 2],
    /// The edges its clients get, first first (one for anycast; none when no edge serves).
    pub edges: Vec<String>,
}

/// The routing of one router (the geo DNS or the anycast address).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutingView {
    pub edges: Vec<EdgeRouting>,
    pub networks: Vec<NetworkRouting>,
}

/// The routing as gauges, for Prometheus and the dashboard: `outpost_ROUTER_edge_serving{edge}`
/// (1 when the edge is handed out or announced) and `outpost_ROUTER_network_edge{network,edge}`
/// (1 for the edge a network's clients reach first). Set from a [`RoutingView`] whenever the
/// routing changes.
#[derive(Clone, Default)]
pub struct RoutingGauges {
    serving: Family<EdgeLabel, Gauge>,
    routes: Family<RouteLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EdgeLabel {
    edge: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    network: String,
    edge: String,
}

impl RoutingGauges {
    /// Registers them as `outpost_{router}_...` (`dns` or `anycast`).
    pub fn register(&self, registry: &mut Registry, router: &str) {
        registry.register(
            format!("outpost_{router}_edge_serving"),
            "1 when the edge is handed out (healthy, announced), 0 when not",
            self.serving.clone(),
        );
        registry.register(
            format!("outpost_{router}_network_edge"),
            "1 for the edge each client network reaches first",
            self.routes.clone(),
        );
    }

    pub fn publish(&self, view: &RoutingView) {
        for edge in &view.edges {
            self.serving
                .get_or_create(&EdgeLabel {
                    edge: edge.name.clone(),
                })
                .set(i64::from(edge.serving));
        }
        self.routes.clear();
        for network in &view.networks {
            if let Some(edge) = network.edges.first() {
                self.routes
                    .get_or_create(&RouteLabels {
                        network: network.prefix.clone(),
                        edge: edge.clone(),
                    })
                    .set(1);
            }
        }
    }
}
