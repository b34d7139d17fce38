//! The fleet as the dashboard shows it, computed from two scrapes of every node: plain logic
//! with no I/O. Counters become rates over the interval between the scrapes; ratios are taken
//! over everything since the nodes started, so they stay readable when traffic is thin.

use serde::{Deserialize, Serialize};

use outpost_edge::cmcd_sessions::SessionView;

use crate::series::Series;

/// What a node is, as the dashboard draws it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Origin,
    Parent,
    Edge,
    Control,
    Dns,
    Anycast,
}

/// One node of the layout: where it is drawn and where its metrics are read.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub role: Role,
    /// Its admin listener (`/metrics`); `None` when it has none.
    pub admin: Option<http::Uri>,
    /// Latitude, longitude.
    pub location: Option<[f64; 2]>,
}

/// A client network, drawn as a region on the map.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Region {
    pub prefix: String,
    pub location: [f64; 2],
}

/// Every node's metrics at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Seconds, on any monotonic clock.
    pub at: f64,
    /// By node name: its series, or why it could not be read.
    pub nodes: Vec<(String, Result<Series, String>)>,
    /// By edge name: the players it serves (`GET /cmcd/sessions`).
    pub sessions: Vec<(String, Vec<SessionView>)>,
}

impl Snapshot {
    fn series(&self, name: &str) -> Option<&Series> {
        self.nodes
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, s)| s.as_ref().ok())
    }

    fn error(&self, name: &str) -> Option<&str> {
        self.nodes
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, s)| s.as_ref().err())
            .map(String::as_str)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetView {
    pub refresh_ms: u64,
    /// Health interval x fall: how long the DNS and anycast take to move clients.
    pub health_horizon_ms: u64,
    pub totals: Totals,
    pub nodes: Vec<NodeView>,
    pub links: Vec<Link>,
    pub regions: Vec<RegionView>,
    pub workers: Vec<WorkerView>,
    pub video: Vec<VideoView>,
    /// Every player the edges serve, per CMCD session, the most recently seen first.
    pub streams: Vec<StreamView>,
    /// The control node's recent purges (`GET /fleet/reports`), newest first.
    pub purges: serde_json::Value,
}

/// The edges together: what clients see.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Totals {
    pub requests_total: f64,
    pub requests_per_s: f64,
    pub hit_ratio: Option<f64>,
    pub bytes_per_s: f64,
    /// The share of client requests that never reached the origin.
    pub origin_offload: Option<f64>,
    pub origin_requests_total: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeView {
    pub name: String,
    pub role: Role,
    pub location: Option<[f64; 2]>,
    /// `up`, `down` (its admin listener does not answer), `draining`, or `withdrawn` (up,
    /// but the DNS or the anycast router no longer hands it out).
    pub state: &'static str,
    pub error: Option<String>,
    pub requests_total: f64,
    pub requests_per_s: f64,
    pub hit_ratio: Option<f64>,
    pub bytes_per_s: f64,
    /// Mean time to the upstream's response head over the interval.
    pub upstream_ms: Option<f64>,
    /// Whether the DNS hands it out and the anycast router announces it (edges).
    pub dns_serving: Option<bool>,
    pub anycast_serving: Option<bool>,
    /// DNS answers naming it, per second.
    pub dns_answers_per_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Link {
    pub from: String,
    pub to: String,
    pub requests_per_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionView {
    pub prefix: String,
    pub location: [f64; 2],
    /// The edge the DNS answers first, and the edge the anycast address reaches.
    pub dns: Option<String>,
    pub anycast: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerView {
    pub edge: String,
    pub worker: String,
    pub invocations_total: f64,
    pub invocations_per_s: f64,
    pub errors_total: f64,
    pub mean_ms: Option<f64>,
}

/// What players report through CMCD at one edge.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VideoView {
    pub edge: String,
    pub requests_total: f64,
    pub requests_per_s: f64,
    pub mean_bitrate_kbps: Option<f64>,
    pub mean_buffer_s: Option<f64>,
    pub starvations_total: f64,
}

/// One player's stream at one edge.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamView {
    pub edge: String,
    #[serde(flatten)]
    pub session: SessionView,
}

/// The layout's nodes and regions, and the routing's horizon.
#[derive(Debug, Clone)]
pub struct Layout {
    pub nodes: Vec<Source>,
    pub regions: Vec<Region>,
    pub health_horizon_ms: u64,
}

/// The increase of a counter per second between two readings (0 across a restart).
fn rate(now: Option<f64>, before: Option<f64>, seconds: f64) -> f64 {
    match (now, before) {
        (Some(now), Some(before)) if seconds > 0.0 && now >= before => (now - before) / seconds,
        _ => 0.0,
    }
}

fn ratio(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| part / whole)
}

const REQUESTS: &str = "outpost_requests_total";
const HITS: &str = "outpost_cache_hits_total";
const MISSES: &str = "outpost_cache_misses_total";
const BYTES: &str = "outpost_response_body_bytes_total";
const ORIGIN_REQUESTS: &str = "outpost_origin_requests_total";

/// Computes the view of `now`, with rates against `before`.
pub fn fleet_view(
    layout: &Layout,
    before: Option<&Snapshot>,
    now: &Snapshot,
    purges: serde_json::Value,
    refresh_ms: u64,
) -> FleetView {
    let seconds = before.map_or(0.0, |b| now.at - b.at);
    let counter = |node: &str, metric: &str| -> (Option<f64>, Option<f64>) {
        (
            now.series(node).and_then(|s| s.sum(metric)),
            before
                .and_then(|b| b.series(node))
                .and_then(|s| s.sum(metric)),
        )
    };
    let per_s = |node: &str, metric: &str| {
        let (n, b) = counter(node, metric);
        rate(n, b, seconds)
    };
    let router = |role: Role| {
        layout
            .nodes
            .iter()
            .find(|n| n.role == role)
            .and_then(|n| now.series(&n.name))
    };
    let (dns, anycast) = (router(Role::Dns), router(Role::Anycast));
    let dns_name = layout.nodes.iter().find(|n| n.role == Role::Dns);
    let serving = |router: Option<&Series>, prefix: &str, edge: &str| {
        router
            .and_then(|s| s.sum_where(&format!("outpost_{prefix}_edge_serving"), "edge", edge))
            .map(|v| v == 1.0)
    };

    let mut nodes = Vec::new();
    for source in &layout.nodes {
        let name = source.name.as_str();
        let series = now.series(name);
        let requests_metric = if source.role == Role::Origin {
            ORIGIN_REQUESTS
        } else {
            REQUESTS
        };
        let (dns_serving, anycast_serving) = if source.role == Role::Edge {
            (serving(dns, "dns", name), serving(anycast, "anycast", name))
        } else {
            (None, None)
        };
        let draining = series
            .and_then(|s| s.sum("outpost_draining"))
            .is_some_and(|v| v == 1.0);
        let state = match series {
            None if source.admin.is_some() => "down",
            _ if draining => "draining",
            _ if dns_serving == Some(false) || anycast_serving == Some(false) => "withdrawn",
            _ => "up",
        };
        let hits = series.and_then(|s| s.sum(HITS)).unwrap_or(0.0);
        let misses = series.and_then(|s| s.sum(MISSES)).unwrap_or(0.0);
        let (sum_now, sum_before) = counter(name, "outpost_upstream_latency_seconds_sum");
        let (count_now, count_before) = counter(name, "outpost_upstream_latency_seconds_count");
        let upstream_ms = match (sum_now, sum_before, count_now, count_before) {
            (Some(s), Some(sb), Some(c), Some(cb)) if c > cb => Some((s - sb) / (c - cb) * 1e3),
            _ => None,
        };
        let dns_answers_per_s = (source.role == Role::Edge)
            .then_some(dns_name)
            .flatten()
            .map(|dns_node| {
                let metric = "outpost_dns_answers_total";
                rate(
                    dns.and_then(|s| s.sum_where(metric, "edge", name)),
                    before
                        .and_then(|b| b.series(&dns_node.name))
                        .and_then(|s| s.sum_where(metric, "edge", name)),
                    seconds,
                )
            });
        nodes.push(NodeView {
            name: name.to_owned(),
            role: source.role,
            location: source.location,
            state,
            error: now.error(name).map(str::to_owned),
            requests_total: series.and_then(|s| s.sum(requests_metric)).unwrap_or(0.0),
            requests_per_s: per_s(name, requests_metric),
            hit_ratio: ratio(hits, hits + misses),
            bytes_per_s: per_s(name, BYTES),
            upstream_ms,
            dns_serving,
            anycast_serving,
            dns_answers_per_s,
        });
    }

    let edges: Vec<&NodeView> = nodes.iter().filter(|n| n.role == Role::Edge).collect();
    let sum = |f: &dyn Fn(&NodeView) -> f64| edges.iter().map(|n| f(n)).sum::<f64>();
    let edge_hits: f64 = edges
        .iter()
        .filter_map(|n| now.series(&n.name)?.sum(HITS))
        .sum();
    let edge_misses: f64 = edges
        .iter()
        .filter_map(|n| now.series(&n.name)?.sum(MISSES))
        .sum();
    let origin_node = layout.nodes.iter().find(|n| n.role == Role::Origin);
    let origin_requests = match origin_node.and_then(|o| now.series(&o.name)) {
        Some(series) => series.sum(ORIGIN_REQUESTS).unwrap_or(0.0),
        // An origin of the user's own: what the parents (or edges) fetched.
        None => layout
            .nodes
            .iter()
            .filter(|n| n.role == Role::Parent)
            .filter_map(|n| now.series(&n.name)?.sum(MISSES))
            .sum(),
    };
    let requests_total = sum(&|n| n.requests_total);
    let totals = Totals {
        requests_total,
        requests_per_s: sum(&|n| n.requests_per_s),
        hit_ratio: ratio(edge_hits, edge_hits + edge_misses),
        bytes_per_s: sum(&|n| n.bytes_per_s),
        origin_offload: ratio(requests_total - origin_requests, requests_total).map(|r| r.max(0.0)),
        origin_requests_total: origin_requests,
    };

    let mut links = Vec::new();
    for source in &layout.nodes {
        let Some(series) = now.series(&source.name) else {
            continue;
        };
        match source.role {
            Role::Edge => {
                let earlier = before.and_then(|b| b.series(&source.name));
                for (upstream, value) in series.by("outpost_upstream_requests_total", "upstream") {
                    let was = earlier.and_then(|s| {
                        s.sum_where("outpost_upstream_requests_total", "upstream", &upstream)
                    });
                    let to = match origin_node {
                        Some(origin) if upstream == "origin" => origin.name.clone(),
                        _ => upstream,
                    };
                    links.push(Link {
                        from: source.name.clone(),
                        to,
                        requests_per_s: rate(Some(value), was, seconds),
                    });
                }
            }
            Role::Parent => {
                if let Some(origin) = origin_node {
                    links.push(Link {
                        from: source.name.clone(),
                        to: origin.name.clone(),
                        requests_per_s: per_s(&source.name, MISSES),
                    });
                }
            }
            _ => {}
        }
    }

    let first = |router: Option<&Series>, prefix: &str, network: &str| {
        router.and_then(|s| {
            s.pairs(&format!("outpost_{prefix}_network_edge"), "network", "edge")
                .into_iter()
                .find(|(n, _)| n == network)
                .map(|(_, edge)| edge)
        })
    };
    let regions = layout
        .regions
        .iter()
        .map(|region| RegionView {
            prefix: region.prefix.clone(),
            location: region.location,
            dns: first(dns, "dns", &region.prefix),
            anycast: first(anycast, "anycast", &region.prefix),
        })
        .collect();

    let mut workers = Vec::new();
    let mut video = Vec::new();
    for edge in layout.nodes.iter().filter(|n| n.role == Role::Edge) {
        let Some(series) = now.series(&edge.name) else {
            continue;
        };
        let earlier = before.and_then(|b| b.series(&edge.name));
        for (worker, invocations) in series.by("outpost_worker_invocations_total", "worker") {
            let was = |metric: &str| earlier.and_then(|s| s.sum_where(metric, "worker", &worker));
            let here = |metric: &str| series.sum_where(metric, "worker", &worker);
            let (sum, count) = (
                "outpost_worker_duration_seconds_sum",
                "outpost_worker_duration_seconds_count",
            );
            let mean_ms = match (here(sum), was(sum), here(count), was(count)) {
                (Some(s), Some(sb), Some(c), Some(cb)) if c > cb => Some((s - sb) / (c - cb) * 1e3),
                (Some(s), None, Some(c), None) if c > 0.0 => Some(s / c * 1e3),
                _ => None,
            };
            workers.push(WorkerView {
                edge: edge.name.clone(),
                invocations_per_s: rate(
                    Some(invocations),
                    was("outpost_worker_invocations_total"),
                    seconds,
                ),
                invocations_total: invocations,
                errors_total: here("outpost_worker_errors_total").unwrap_or(0.0),
                worker,
                mean_ms,
            });
        }
        let cmcd = series.sum("outpost_cmcd_requests_total").unwrap_or(0.0);
        if cmcd > 0.0 {
            let mean = |metric: &str| {
                ratio(
                    series.sum(&format!("{metric}_sum")).unwrap_or(0.0),
                    series.sum(&format!("{metric}_count")).unwrap_or(0.0),
                )
            };
            video.push(VideoView {
                edge: edge.name.clone(),
                requests_total: cmcd,
                requests_per_s: per_s(&edge.name, "outpost_cmcd_requests_total"),
                mean_bitrate_kbps: mean("outpost_cmcd_bitrate_bits_per_second").map(|b| b / 1e3),
                mean_buffer_s: mean("outpost_cmcd_buffer_seconds"),
                starvations_total: series
                    .sum("outpost_cmcd_buffer_starvations_total")
                    .unwrap_or(0.0),
            });
        }
    }

    let mut streams: Vec<StreamView> = now
        .sessions
        .iter()
        .flat_map(|(edge, sessions)| {
            sessions.iter().map(|session| StreamView {
                edge: edge.clone(),
                session: session.clone(),
            })
        })
        .collect();
    streams.sort_by(|a, b| a.session.idle_s.total_cmp(&b.session.idle_s));
    streams.truncate(50);

    FleetView {
        streams,
        refresh_ms,
        health_horizon_ms: layout.health_horizon_ms,
        totals,
        nodes,
        links,
        regions,
        workers,
        video,
        purges,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(name: &str, role: Role) -> Source {
        Source {
            name: name.into(),
            role,
            admin: Some("http://127.0.0.1:1".parse().unwrap()),
            location: None,
        }
    }

    fn layout() -> Layout {
        Layout {
            nodes: vec![
                source("origin", Role::Origin),
                source("parent-eu", Role::Parent),
                source("edge-ams", Role::Edge),
                source("edge-nyc", Role::Edge),
                source("edge-sin", Role::Edge),
                source("dns", Role::Dns),
            ],
            regions: vec![Region {
                prefix: "127.0.1.0/24".into(),
                location: [52.4, 4.9],
            }],
            health_horizon_ms: 500,
        }
    }

    fn edge(requests: u32, hits: u32, misses: u32, to_parent: u32, draining: bool) -> Series {
        Series::parse(&format!(
            "outpost_requests_total{{outcome=\"hit\"}} {requests}\n\
             outpost_cache_hits_total {hits}\noutpost_cache_misses_total {misses}\n\
             outpost_response_body_bytes_total {}\n\
             outpost_upstream_requests_total{{upstream=\"parent-eu\"}} {to_parent}\n\
             outpost_draining {}\n",
            requests * 1000,
            u8::from(draining)
        ))
    }

    fn snapshot(at: f64, scale: u32, nyc_up: bool) -> Snapshot {
        let dns = Series::parse(
            "outpost_dns_edge_serving{edge=\"edge-ams\"} 1\n\
             outpost_dns_edge_serving{edge=\"edge-nyc\"} 1\n\
             outpost_dns_edge_serving{edge=\"edge-sin\"} 0\n\
             outpost_dns_network_edge{network=\"127.0.1.0/24\",edge=\"edge-ams\"} 1\n",
        );
        let mut nodes = vec![
            (
                "origin".to_owned(),
                Ok(Series::parse(&format!(
                    "outpost_origin_requests_total {}",
                    2 * scale
                ))),
            ),
            (
                "parent-eu".to_owned(),
                Ok(Series::parse(&format!(
                    "outpost_cache_misses_total {}",
                    2 * scale
                ))),
            ),
            (
                "edge-ams".to_owned(),
                Ok(edge(10 * scale, 8 * scale, 2 * scale, 2 * scale, false)),
            ),
            (
                "edge-sin".to_owned(),
                Ok(edge(10 * scale, 8 * scale, 2 * scale, 0, false)),
            ),
            ("dns".to_owned(), Ok(dns)),
        ];
        nodes.push((
            "edge-nyc".to_owned(),
            if nyc_up {
                Ok(edge(0, 0, 0, 0, true))
            } else {
                Err("connection refused".to_owned())
            },
        ));
        Snapshot {
            at,
            nodes,
            sessions: Vec::new(),
        }
    }

    #[test]
    fn rates_ratios_states_links_and_regions_from_two_readings() {
        let layout = layout();
        let first = snapshot(10.0, 1, true);
        let second = snapshot(12.0, 3, false);
        let view = fleet_view(&layout, Some(&first), &second, serde_json::json!([]), 1000);
        let node = |name: &str| view.nodes.iter().find(|n| n.name == name).unwrap();
        let ams = node("edge-ams");
        assert_eq!(ams.requests_total, 30.0);
        assert_eq!(ams.requests_per_s, 10.0, "20 requests in 2 s");
        assert_eq!(ams.bytes_per_s, 10_000.0);
        assert_eq!(ams.hit_ratio, Some(0.8));
        assert_eq!((ams.state, ams.dns_serving), ("up", Some(true)));
        assert_eq!(node("edge-nyc").state, "down");
        assert_eq!(
            node("edge-sin").state,
            "withdrawn",
            "up, but the DNS no longer hands it out"
        );
        assert_eq!(node("origin").requests_total, 6.0);
        // 60 client requests, 6 of them reached the origin.
        assert_eq!(view.totals.requests_total, 60.0);
        assert_eq!(view.totals.origin_offload, Some(0.9));
        assert_eq!(view.totals.hit_ratio, Some(0.8));
        let link = view
            .links
            .iter()
            .find(|l| l.from == "edge-ams" && l.to == "parent-eu")
            .unwrap();
        assert_eq!(link.requests_per_s, 2.0);
        let parent_link = view.links.iter().find(|l| l.from == "parent-eu").unwrap();
        assert_eq!(
            (parent_link.to.as_str(), parent_link.requests_per_s),
            ("origin", 2.0)
        );
        assert_eq!(view.regions[0].dns.as_deref(), Some("edge-ams"));
        assert_eq!(
            view.regions[0].anycast, None,
            "no anycast router in the layout"
        );
        // A draining edge is shown draining; a counter that went backwards (a restart) is no
        // negative rate.
        let restarted = fleet_view(&layout, Some(&second), &first, serde_json::json!([]), 1000);
        let nyc = restarted
            .nodes
            .iter()
            .find(|n| n.name == "edge-nyc")
            .unwrap();
        assert_eq!(nyc.state, "draining");
        assert!(restarted.nodes.iter().all(|n| n.requests_per_s >= 0.0));
    }
}
