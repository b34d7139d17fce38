//! Health of the edges as the DNS sees it: the one health loop
//! ([`outpost_server::health::spawn_health_loop`]) probing each edge's HTTP listener, with rise
//! and fall thresholds, so one lost probe does not move traffic and a flapping edge does not
//! bounce. The load each edge reports drives shedding.

use std::net::SocketAddr;
use std::sync::Arc;

use outpost_server::ShutdownSignal;
use outpost_server::health::{HealthSettings, HealthTargets, Hysteresis, Probe, spawn_health_loop};

use crate::GeoDns;

/// The DNS's checks of the edges, unless `[dns.health]` says otherwise. They also bound the
/// TTL of dynamic answers: at most `interval_ms` x `fall`.
pub const DNS_HEALTH: HealthSettings = HealthSettings::new(1_000, 500, 2, 3);

struct EdgeHealth {
    dns: Arc<GeoDns>,
    /// Name and HTTP address of each edge.
    edges: Vec<(String, SocketAddr)>,
    states: Vec<Hysteresis>,
}

impl HealthTargets for EdgeHealth {
    fn count(&self) -> usize {
        self.edges.len()
    }

    fn address(&self, index: usize) -> Option<(String, u16)> {
        let (_, addr) = self.edges.get(index)?;
        Some((addr.ip().to_string(), addr.port()))
    }

    fn health(&self, index: usize) -> &Hysteresis {
        &self.states[index]
    }

    fn probed(&self, index: usize, probe: Probe) {
        let name = &self.edges[index].0;
        if let Probe::Up {
            load: Some(load), ..
        } = probe
            && let Some(shedding) = self.dns.set_load(name, load)
        {
            if shedding {
                tracing::warn!(target: "outpost::dns", "edge {name} sheds load: {load} in flight");
            } else {
                tracing::info!(target: "outpost::dns", "edge {name} accepts new clients again: {load} in flight");
            }
        }
    }

    fn changed(&self, index: usize, healthy: bool) {
        let name = &self.edges[index].0;
        self.dns.set_healthy(name, healthy);
        tracing::warn!(target: "outpost::dns", "edge {name} is now {}", if healthy { "up" } else { "down" });
    }
}

/// Probes `edges` (name, HTTP address) until `shutdown`, telling `dns` when an edge goes down
/// (after `fall` failed probes) or comes back (after `rise` good ones), and the load each one
/// reports.
pub fn spawn_health_checks(
    dns: Arc<GeoDns>,
    edges: Vec<(String, SocketAddr)>,
    settings: HealthSettings,
    shutdown: ShutdownSignal,
) {
    let states = edges.iter().map(|_| Hysteresis::new()).collect();
    spawn_health_loop(
        Arc::new(EdgeHealth { dns, edges, states }),
        settings,
        shutdown,
    );
}
