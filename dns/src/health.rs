//! Health of the edges as the DNS sees it: `GET /_outpost/health` on each edge's HTTP
//! listener at an interval, with rise and fall thresholds, so one lost probe does not move
//! traffic and a flapping edge does not bounce.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use outpost_server::health::Hysteresis;

use crate::GeoDns;
use outpost_server::health::{Probe, probe};

/// How edges are probed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSettings {
    /// Also bounds the TTL of dynamic answers: at most `interval_ms` x `fall`.
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub rise: u32,
    pub fall: u32,
}

impl HealthSettings {
    /// How long the checks take to take a failed edge out of the answers.
    pub fn decision_horizon(&self) -> Duration {
        Duration::from_millis(
            self.interval_ms
                .max(10)
                .saturating_mul(u64::from(self.fall.max(1))),
        )
    }
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
    mut shutdown: outpost_server::ShutdownSignal,
) {
    tokio::spawn(async move {
        let states: Vec<Hysteresis> = edges.iter().map(|_| Hysteresis::new()).collect();
        let mut ticker = tokio::time::interval(Duration::from_millis(settings.interval_ms.max(10)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let timeout = Duration::from_millis(settings.timeout_ms.max(1));
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.triggered() => return,
            }
            for (i, (name, addr)) in edges.iter().enumerate() {
                let probe = probe(*addr, timeout).await;
                if let Probe::Up { load: Some(load) } = probe
                    && let Some(shedding) = dns.set_load(name, load)
                {
                    if shedding {
                        tracing::warn!(target: "outpost::dns", "edge {name} sheds load: {load} in flight");
                    } else {
                        tracing::info!(target: "outpost::dns", "edge {name} accepts new clients again: {load} in flight");
                    }
                }
                if let Some(healthy) = states[i].record(probe.is_up(), settings.rise, settings.fall)
                {
                    dns.set_healthy(name, healthy);
                    tracing::warn!(target: "outpost::dns", "edge {name} is now {}", if healthy { "up" } else { "down" });
                }
            }
        }
    });
}
