//! Health of the edges as the DNS sees it: `GET /_outpost/health` on each edge's HTTP
//! listener at an interval, with rise and fall thresholds, so one lost probe does not move
//! traffic and a flapping edge does not bounce.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use outpost_server::health::Hysteresis;

use crate::GeoDns;
use outpost_server::health::probe;

use crate::anycast::stopped;

/// How edges are probed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSettings {
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub rise: u32,
    pub fall: u32,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            interval_ms: 1_000,
            timeout_ms: 500,
            rise: 2,
            fall: 3,
        }
    }
}

/// Probes `edges` (name, HTTP address) until `shutdown` resolves, telling `dns` when an edge
/// goes down (after `fall` failed probes) or comes back (after `rise` good ones).
pub fn spawn_health_checks(
    dns: Arc<GeoDns>,
    edges: Vec<(String, SocketAddr)>,
    settings: HealthSettings,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let states: Vec<Hysteresis> = edges.iter().map(|_| Hysteresis::new()).collect();
        let mut ticker = tokio::time::interval(Duration::from_millis(settings.interval_ms.max(10)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let timeout = Duration::from_millis(settings.timeout_ms.max(1));
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = stopped(&mut shutdown) => return,
            }
            for (i, (name, addr)) in edges.iter().enumerate() {
                let ok = probe(*addr, timeout).await;
                if let Some(healthy) = states[i].record(ok, settings.rise, settings.fall) {
                    dns.set_healthy(name, healthy);
                    tracing::warn!(target: "outpost::dns", "edge {name} is now {}", if healthy { "up" } else { "down" });
                }
            }
        }
    });
}
