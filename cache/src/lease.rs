//! The purge lease: whether this node may trust what it has stored.
//!
//! A node that takes purges from a control node ([`PurgeLease::require`]) may serve stored
//! objects only while it holds a lease, renewed each time it hears from the control node that
//! it has every purge so far. A node that cannot hear (cut off, or the control node down)
//! loses the lease when it runs out; until it catches up it revalidates every stored object
//! before serving it and never serves one in place of an upstream error, because any of them
//! may be covered by a purge it missed. The control node acknowledges a purge only once every
//! node has applied it or has lost its lease, so nothing a node serves is older than an
//! acknowledged purge.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct PurgeLease {
    epoch: Instant,
    /// Microseconds since `epoch` until which the lease holds.
    until_us: AtomicU64,
    required: AtomicBool,
}

impl Default for PurgeLease {
    fn default() -> Self {
        Self::new()
    }
}

impl PurgeLease {
    /// A lease that always holds, until [`require`](Self::require) is called.
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            until_us: AtomicU64::new(0),
            required: AtomicBool::new(false),
        }
    }

    /// From now on the lease holds only while renewed (it does not hold until then).
    pub fn require(&self) {
        self.required.store(true, Ordering::SeqCst);
    }

    /// Extends the lease until `until` (never shortens it).
    pub fn renew(&self, until: Instant) {
        let us = self.micros(until);
        self.until_us.fetch_max(us, Ordering::SeqCst);
    }

    /// Whether stored objects may be served now.
    pub fn holds(&self) -> bool {
        !self.required.load(Ordering::Relaxed)
            || self.micros(Instant::now()) < self.until_us.load(Ordering::Relaxed)
    }

    /// How long the lease still holds (zero when it does not, `None` when not required).
    pub fn remaining(&self) -> Option<Duration> {
        if !self.required.load(Ordering::Relaxed) {
            return None;
        }
        let now = self.micros(Instant::now());
        Some(Duration::from_micros(
            self.until_us.load(Ordering::Relaxed).saturating_sub(now),
        ))
    }

    fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_until_required_then_only_while_renewed() {
        let lease = PurgeLease::new();
        assert!(lease.holds());
        lease.require();
        assert!(!lease.holds(), "a required lease holds only once renewed");
        lease.renew(Instant::now() + Duration::from_secs(60));
        assert!(lease.holds());
        // Renewing with an earlier end does not shorten it.
        lease.renew(Instant::now());
        assert!(lease.holds());
        let short = PurgeLease::new();
        short.require();
        short.renew(Instant::now() + Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!short.holds());
        assert_eq!(short.remaining(), Some(Duration::ZERO));
    }
}
