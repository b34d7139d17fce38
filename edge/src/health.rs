//! Active health checks of an edge's parents, run by the one health loop
//! ([`outpost_server::health::spawn_health_loop`]) with rise and fall thresholds.

use std::sync::Arc;

use outpost_server::ShutdownSignal;
use outpost_server::health::{HealthSettings, HealthTargets, Hysteresis, Probe, spawn_health_loop};

use crate::parents::ParentSet;

/// An edge's parents, as the health loop sees them.
struct ParentHealth(ParentSet);

impl HealthTargets for ParentHealth {
    /// The parents, and the origin after them when the overlay measures its path.
    fn count(&self) -> usize {
        self.0.parents.len() + usize::from(self.0.measures_origin())
    }

    fn address(&self, index: usize) -> Option<(String, u16)> {
        let url = &self.0.path_at(index)?.target.url;
        Some((url.host()?.to_owned(), url.port_u16().unwrap_or(80)))
    }

    fn health(&self, index: usize) -> &Hysteresis {
        match self.0.path_at(index) {
            Some(path) => &path.health,
            None => &self.0.origin_path.health,
        }
    }

    /// Every probe is also a sample of the path (the overlay's active measurement), and a
    /// parent's answer says its place in the purge sequence.
    fn probed(&self, index: usize, probe: Probe) {
        match probe {
            Probe::Up { rtt, purge_seq, .. } => {
                if let Some(seq) = purge_seq.filter(|_| index < self.0.parents.len()) {
                    self.0.purges.heard_of(seq);
                }
                self.0.record(index, Some(Some(rtt)));
            }
            Probe::Down => self.0.record(index, None),
        }
    }

    fn changed(&self, index: usize, healthy: bool) {
        let Some(parent) = self.0.path_at(index) else {
            return;
        };
        if healthy {
            parent.path.forget_failures();
        }
        tracing::warn!(parent = %parent.target.name, healthy, "parent health changed");
    }
}

/// Probes every parent of `parents` until `shutdown` fires.
pub fn spawn_health_checks(parents: ParentSet, settings: HealthSettings, shutdown: ShutdownSignal) {
    spawn_health_loop(Arc::new(ParentHealth(parents)), settings, shutdown);
}
