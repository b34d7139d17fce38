//! Health of the edges as the DNS sees it: `GET /_outpost/health` on each edge's HTTP
//! listener at an interval, with rise and fall thresholds, so one lost probe does not move
//! traffic and a flapping edge does not bounce.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::GeoDns;
use crate::anycast::{probe, stopped};

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
        let mut streaks = vec![0u32; edges.len()];
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
                let healthy = dns.is_healthy(name).unwrap_or(true);
                if ok == healthy {
                    streaks[i] = 0;
                    continue;
                }
                streaks[i] += 1;
                let threshold = if healthy {
                    settings.fall
                } else {
                    settings.rise
                };
                if streaks[i] >= threshold.max(1) {
                    streaks[i] = 0;
                    dns.set_healthy(name, ok);
                    tracing::warn!(target: "outpost::dns", "edge {name} is now {}", if ok { "up" } else { "down" });
                }
            }
        }
    });
}
