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
//!
//! The lease also carries the node's place in the fleet's purge sequence: the last purge it
//! applied with every one before it, and the highest it has heard of, from a push or from a
//! peer (an edge's parent says its own place in every answer). A node that heard of a purge
//! it has not applied stops trusting its cache at once, before its lease would run out.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct PurgeLease {
    epoch: Instant,
    /// Microseconds since `epoch` until which the lease holds.
    until_us: AtomicU64,
    required: AtomicBool,
    /// The last purge applied, with every one before it.
    applied: AtomicU64,
    /// The highest purge heard of (pushed, or named by a peer).
    heard: AtomicU64,
    /// Rung when a purge is heard of that is not the next one: the follower syncs at once.
    gap: tokio::sync::Notify,
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
            applied: AtomicU64::new(0),
            heard: AtomicU64::new(0),
            gap: tokio::sync::Notify::new(),
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

    /// Whether stored objects may be served now: renewed in time, and no purge heard of that
    /// is not applied.
    pub fn holds(&self) -> bool {
        !self.required.load(Ordering::Relaxed)
            || (self.micros(Instant::now()) < self.until_us.load(Ordering::Relaxed)
                && self.heard.load(Ordering::Relaxed) <= self.applied.load(Ordering::Relaxed))
    }

    /// The last purge applied with every one before it.
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::SeqCst)
    }

    /// What to tell peers: the last purge applied, when this node follows a sequence.
    pub fn announced(&self) -> Option<u64> {
        self.required
            .load(Ordering::Relaxed)
            .then(|| self.applied.load(Ordering::Relaxed))
    }

    /// Purge `seq` was applied (pushed): the sequence moves on when it was the next one;
    /// a later one means some were missed (see [`heard_of`](Self::heard_of)).
    pub fn applied_one(&self, seq: u64) {
        let moved = self
            .applied
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |applied| {
                (seq == applied + 1).then_some(seq)
            });
        if moved.is_err() {
            self.heard_of(seq);
        }
    }

    /// A push or a peer named purge `seq`: if this node has not applied it, the lease stops
    /// holding until it has, and the follower is woken to catch up.
    pub fn heard_of(&self, seq: u64) {
        if seq <= self.applied.load(Ordering::Relaxed) {
            return;
        }
        self.heard.fetch_max(seq, Ordering::SeqCst);
        self.gap.notify_one();
    }

    /// The control node said its sequence's head is `head` and this node has everything up
    /// to it. What was heard beyond the head is forgotten: the control node numbers the
    /// purges, so a higher number was forged or arrived while the answer was on its way (then
    /// its push or the next sync brings it).
    pub fn caught_up(&self, head: u64) {
        self.applied.fetch_max(head, Ordering::SeqCst);
        let applied = self.applied.load(Ordering::SeqCst);
        let _ = self
            .heard
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |heard| {
                (heard > applied).then_some(applied)
            });
    }

    /// Resolves when a purge was heard of that is not the next one.
    pub async fn gap(&self) {
        self.gap.notified().await;
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

    #[test]
    fn a_purge_heard_of_and_not_applied_breaks_the_lease_until_caught_up() {
        let lease = PurgeLease::new();
        assert_eq!(lease.announced(), None, "not following a sequence");
        lease.require();
        lease.renew(Instant::now() + Duration::from_secs(60));
        lease.applied_one(1);
        lease.applied_one(2);
        assert_eq!((lease.applied(), lease.announced()), (2, Some(2)));
        assert!(lease.holds());
        // A peer has applied 4: this node missed 3 and 4.
        lease.heard_of(4);
        assert!(!lease.holds(), "revalidates before the lease would run out");
        // A push of 5 does not move the sequence past the gap.
        lease.applied_one(5);
        assert_eq!(lease.applied(), 2);
        assert!(!lease.holds());
        lease.caught_up(5);
        assert_eq!(lease.applied(), 5);
        assert!(lease.holds());
        // Older numbers change nothing; a number beyond the control node's head is forgotten
        // at the next sync.
        lease.heard_of(3);
        assert!(lease.holds());
        lease.heard_of(1_000_000);
        assert!(!lease.holds());
        lease.caught_up(5);
        assert!(lease.holds());
    }
}
