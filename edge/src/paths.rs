//! The overlay: how good each path from an edge to a parent is, measured all the time, and
//! which paths are too bad to keep their hashed share of objects.
//!
//! Every exchange with a parent is a sample (passive: the time to the response head, or a
//! failure), and so is every health probe (active, so an idle or avoided path is still
//! measured). A path's cost is its smoothed round-trip time, inflated by its smoothed failure
//! rate. A path whose cost is well above the best healthy path's is *degraded*: the objects
//! hashed to it go to the next parent in their rendezvous order instead. A path that recovers
//! gets them back, so with every path healthy the hashing alone decides and each object has
//! one parent. The two thresholds differ (hysteresis) so a path near the line does not flap.
//!
//! Plain logic with atomics; no I/O.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The `[overlay]` table: when an edge stops sending a parent its hashed share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OverlaySettings {
    /// Route around bad paths (false: the hash alone picks, as long as the parent is up).
    pub enabled: bool,
    /// A path is degraded when its cost exceeds `degrade_ratio` times the best path's cost
    /// plus `degrade_slack_ms`.
    pub degrade_ratio: f64,
    pub degrade_slack_ms: u64,
    /// It gets its share back when its cost falls under `recover_ratio` times the best plus
    /// `recover_slack_ms`.
    pub recover_ratio: f64,
    pub recover_slack_ms: u64,
    /// What a failed exchange costs, in milliseconds: cost = rtt + failure rate x penalty.
    pub failure_penalty_ms: u64,
    /// Also measure the path straight to the origin (probed like a parent when it is reached
    /// over plain HTTP), and go there first when every parent's path is degraded against it.
    /// Off by default: it skips the parents' shielding and coalescing.
    pub direct_origin: bool,
}

impl Default for OverlaySettings {
    fn default() -> Self {
        Self {
            enabled: true,
            degrade_ratio: 2.0,
            degrade_slack_ms: 50,
            recover_ratio: 1.5,
            recover_slack_ms: 20,
            failure_penalty_ms: 300,
            direct_origin: false,
        }
    }
}

impl OverlaySettings {
    /// The first problem with these settings, as (key, what is expected).
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if !(self.degrade_ratio >= 1.0 && self.degrade_ratio.is_finite()) {
            return Err(("degrade_ratio", "a number of at least 1"));
        }
        if !(self.recover_ratio >= 1.0 && self.recover_ratio <= self.degrade_ratio) {
            return Err(("recover_ratio", "a number from 1 to degrade_ratio"));
        }
        if self.recover_slack_ms > self.degrade_slack_ms {
            return Err(("recover_slack_ms", "at most degrade_slack_ms"));
        }
        Ok(())
    }
}

/// Smoothing of each new round trip: the estimate moves this share of the way to it.
const ALPHA: f64 = 1.0 / 3.0;
/// Smoothing of the failure rate: slower, so that one reset on a good path moves nothing
/// while a steady loss of a fifth of the exchanges does.
const FAILURE_ALPHA: f64 = 1.0 / 8.0;

/// What is known of one path, updated from any thread.
#[derive(Debug, Default)]
pub struct PathStats {
    /// Smoothed round trip, in microseconds (0: nothing measured yet).
    rtt_us: AtomicU64,
    /// Smoothed failure rate, in millionths.
    failure_ppm: AtomicU64,
    degraded: AtomicBool,
}

impl PathStats {
    /// One exchange that got an answer after `rtt`: a health probe, or a request the parent
    /// answered from its cache (what a miss adds upstream is not the path's).
    pub fn record_success(&self, rtt: Duration) {
        let rtt = rtt.as_micros().min(u128::from(u64::MAX)) as f64;
        let _ = self
            .rtt_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(if old == 0 {
                    rtt.max(1.0) as u64
                } else {
                    (old as f64 + ALPHA * (rtt - old as f64)).max(1.0) as u64
                })
            });
        self.update_failures(false);
    }

    /// One exchange that got an answer that says nothing of the path's round trip (a miss at
    /// the parent): only the failure rate learns from it.
    pub fn record_answer(&self) {
        self.update_failures(false);
    }

    /// One exchange that failed before any answer.
    pub fn record_failure(&self) {
        self.update_failures(true);
    }

    fn update_failures(&self, failed: bool) {
        let failed = if failed { 1_000_000.0 } else { 0.0 };
        let _ = self
            .failure_ppm
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some((old as f64 + FAILURE_ALPHA * (failed - old as f64)) as u64)
            });
    }

    /// The smoothed round trip; `None` before the first sample.
    pub fn rtt(&self) -> Option<Duration> {
        match self.rtt_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// The smoothed share of exchanges that failed, 0 to 1.
    pub fn failure_rate(&self) -> f64 {
        self.failure_ppm.load(Ordering::Relaxed) as f64 / 1_000_000.0
    }

    /// The path's cost in microseconds (`None`: not measured yet, so not judged).
    pub fn cost(&self, settings: &OverlaySettings) -> Option<f64> {
        let rtt = self.rtt()?.as_micros() as f64;
        Some(rtt + self.failure_rate() * settings.failure_penalty_ms as f64 * 1e3)
    }

    /// Forgets the failures (a parent that came back up is not judged by the failures of its
    /// absence) but keeps the round trip and the judgement: a path that went down and up again
    /// over a bad link (a lossy link fails probes in a row now and then) stays degraded, and one
    /// whose round trip is good again recovers at its next sample.
    pub fn forget_failures(&self) {
        self.failure_ppm.store(0, Ordering::Relaxed);
    }

    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }
}

/// Re-judges every path against the best one among those `usable` (healthy): marks each
/// degraded or not, with hysteresis. Returns the paths whose judgement changed, with the new
/// judgement.
pub fn judge<'a>(
    paths: impl Iterator<Item = (&'a PathStats, bool)> + Clone,
    settings: &OverlaySettings,
) -> Vec<(usize, bool)> {
    let best = paths
        .clone()
        .filter(|(_, usable)| *usable)
        .filter_map(|(path, _)| path.cost(settings))
        .fold(f64::INFINITY, f64::min);
    let mut changed = Vec::new();
    for (index, (path, usable)) in paths.enumerate() {
        let was = path.is_degraded();
        let now = match path.cost(settings) {
            _ if !settings.enabled || !best.is_finite() => false,
            None => false,
            // A path that is down is judged by the health checks, not here.
            Some(_) if !usable => was,
            Some(cost) if was => {
                cost >= settings.recover_ratio * best + settings.recover_slack_ms as f64 * 1e3
            }
            Some(cost) => {
                cost > settings.degrade_ratio * best + settings.degrade_slack_ms as f64 * 1e3
            }
        };
        if now != was {
            path.degraded.store(now, Ordering::Relaxed);
            changed.push((index, now));
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(rtt_ms: u64, samples: usize) -> PathStats {
        let path = PathStats::default();
        for _ in 0..samples {
            path.record_success(Duration::from_millis(rtt_ms));
        }
        path
    }

    #[test]
    fn a_slow_path_is_degraded_and_recovers_only_well_below_the_line() {
        let settings = OverlaySettings::default();
        let good = measured(2, 5);
        let bad = measured(202, 5);
        let paths = [&good, &bad];
        let changed = judge(paths.iter().map(|p| (*p, true)), &settings);
        assert_eq!(changed, vec![(1, true)]);
        assert!(bad.is_degraded() && !good.is_degraded());
        // Between the two lines (2 ms best: degrade above 54 ms, recover below 23 ms): stays.
        for _ in 0..30 {
            bad.record_success(Duration::from_millis(40));
        }
        assert!(judge(paths.iter().map(|p| (*p, true)), &settings).is_empty());
        assert!(bad.is_degraded());
        for _ in 0..30 {
            bad.record_success(Duration::from_millis(3));
        }
        assert_eq!(
            judge(paths.iter().map(|p| (*p, true)), &settings),
            vec![(1, false)]
        );
    }

    #[test]
    fn failures_make_a_fast_path_expensive() {
        let settings = OverlaySettings::default();
        let good = measured(5, 5);
        let lossy = measured(5, 5);
        // A third of the exchanges lost, the last one among them.
        for i in 1..=30 {
            if i % 3 == 0 {
                lossy.record_failure();
            } else {
                lossy.record_success(Duration::from_millis(5));
            }
        }
        judge([(&good, true), (&lossy, true)].into_iter(), &settings);
        assert!(lossy.is_degraded(), "rate {}", lossy.failure_rate());
        assert!(!good.is_degraded());
    }

    #[test]
    fn a_slow_path_back_from_down_stays_degraded_and_a_restarted_one_recovers() {
        let settings = OverlaySettings::default();
        let good = measured(2, 5);
        let slow = measured(202, 5);
        let restarted = measured(2, 5);
        for _ in 0..5 {
            slow.record_failure();
            restarted.record_failure();
        }
        let all = || [(&good, true), (&slow, true), (&restarted, true)].into_iter();
        judge(all(), &settings);
        assert!(slow.is_degraded() && restarted.is_degraded());
        // Both went down and came back up: their failures are forgotten, not their round trips.
        slow.forget_failures();
        restarted.forget_failures();
        slow.record_success(Duration::from_millis(202));
        restarted.record_success(Duration::from_millis(2));
        assert_eq!(judge(all(), &settings), vec![(2, false)]);
        assert!(slow.is_degraded());
    }

    #[test]
    fn one_failure_on_a_good_path_moves_nothing() {
        let settings = OverlaySettings::default();
        let a = measured(2, 5);
        let b = measured(2, 5);
        b.record_failure();
        assert!(judge([(&a, true), (&b, true)].into_iter(), &settings).is_empty());
        b.record_failure();
        b.record_failure();
        assert_eq!(
            judge([(&a, true), (&b, true)].into_iter(), &settings),
            vec![(1, true)],
            "three in a row do"
        );
    }

    #[test]
    fn equal_paths_unmeasured_paths_and_a_disabled_overlay_keep_the_hash() {
        let settings = OverlaySettings::default();
        let a = measured(10, 3);
        let b = measured(12, 3);
        let unmeasured = PathStats::default();
        assert!(
            judge(
                [(&a, true), (&b, true), (&unmeasured, true)].into_iter(),
                &settings
            )
            .is_empty()
        );
        let slow = measured(500, 3);
        let off = OverlaySettings {
            enabled: false,
            ..OverlaySettings::default()
        };
        assert!(judge([(&a, true), (&slow, true)].into_iter(), &off).is_empty());
        // The only usable path is never degraded by paths that are down.
        let down_but_fast = measured(1, 3);
        assert!(
            judge(
                [(&slow, true), (&down_but_fast, false)].into_iter(),
                &settings
            )
            .is_empty()
        );
    }
}
