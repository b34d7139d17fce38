//! Rise/fall hysteresis of a health state, shared by every health checker (parents at the
//! edge, edges at the DNS and at the anycast router): `fall` failed probes in a row take a
//! healthy target down, `rise` good ones in a row bring it back, so one lost probe moves no
//! traffic and a flapping target does not bounce.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

#[derive(Debug)]
pub struct Hysteresis {
    healthy: AtomicBool,
    /// Consecutive probe results that disagree with the current state.
    streak: AtomicU32,
}

impl Default for Hysteresis {
    fn default() -> Self {
        Self::new()
    }
}

impl Hysteresis {
    /// Starts healthy.
    pub fn new() -> Self {
        Self {
            healthy: AtomicBool::new(true),
            streak: AtomicU32::new(0),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
    }

    /// Records one probe; returns the new state when this probe changed it. Thresholds below 1
    /// count as 1.
    pub fn record(&self, ok: bool, rise: u32, fall: u32) -> Option<bool> {
        let healthy = self.is_healthy();
        if ok == healthy {
            self.streak.store(0, Ordering::SeqCst);
            return None;
        }
        let streak = self.streak.fetch_add(1, Ordering::SeqCst) + 1;
        let threshold = if healthy { fall } else { rise };
        if streak < threshold.max(1) {
            return None;
        }
        self.streak.store(0, Ordering::SeqCst);
        self.healthy.store(ok, Ordering::SeqCst);
        Some(ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_lost_probe_moves_nothing_and_thresholds_apply_both_ways() {
        let h = Hysteresis::new();
        assert_eq!(h.record(false, 2, 3), None);
        assert_eq!(h.record(true, 2, 3), None);
        assert_eq!(h.record(false, 2, 3), None);
        assert_eq!(h.record(false, 2, 3), None);
        assert_eq!(h.record(false, 2, 3), Some(false));
        assert!(!h.is_healthy());
        assert_eq!(h.record(true, 2, 3), None);
        assert_eq!(h.record(false, 2, 3), None);
        assert_eq!(h.record(true, 2, 3), None);
        assert_eq!(h.record(true, 2, 3), Some(true));
        assert!(h.is_healthy());
    }
}
