//! Active health checks of an edge's parents, with rise and fall thresholds.

use std::time::Duration;

use outpost_server::ShutdownSignal;
use outpost_server::health::probe;
use serde::{Deserialize, Serialize};

use crate::parents::ParentSet;

/// How parents are probed: `GET /_outpost/health` every `interval_ms`; `fall` failures in a
/// row mark a parent down, `rise` successes in a row mark it up again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheck {
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub rise: u32,
    pub fall: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            interval_ms: 2_000,
            timeout_ms: 1_000,
            rise: 2,
            fall: 3,
        }
    }
}

/// Probes every parent of `parents` until `shutdown` fires.
pub fn spawn_health_checks(parents: ParentSet, check: HealthCheck, mut shutdown: ShutdownSignal) {
    if parents.parents.is_empty() {
        return;
    }
    let timeout = Duration::from_millis(check.timeout_ms.max(1));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_millis(check.interval_ms.max(10)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.triggered() => return,
            }
            for parent in parents.parents.iter() {
                let url = &parent.target.url;
                let ok = match url.host() {
                    Some(host) => probe((host, url.port_u16().unwrap_or(80)), timeout)
                        .await
                        .is_up(),
                    None => false,
                };
                if let Some(healthy) = parent.health.record(ok, check.rise, check.fall) {
                    tracing::warn!(parent = %parent.target.name, healthy, "parent health changed");
                }
            }
        }
    });
}
