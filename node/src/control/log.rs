//! The control node's purge log: the fleet-wide sequence of purges, the recent ones kept for
//! nodes that missed them, and when each node last heard the whole sequence (what its purge
//! lease runs from). Plain logic with no I/O.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use outpost_server::admin::PurgeRequest;
use serde::{Deserialize, Serialize};

/// What a node that asks for the purges after its last one gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catchup {
    /// The last purge of the fleet's sequence.
    pub head: u64,
    /// The purges after the one asked about, oldest first, each with its `seq`.
    pub purges: Vec<PurgeRequest>,
    /// False when the log no longer holds all of them (or the node is ahead of the log, as
    /// after a control node lost its state): the node must purge everything.
    pub complete: bool,
}

/// How a node that missed a purge's push stands, when the control node acknowledges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    /// It asked for the log after the purge was logged: it has it.
    CaughtUp,
    /// Its lease has run out: it revalidates everything until it catches up.
    LeaseLapsed,
    /// Neither yet: wait until `Instant`, when its lease runs out.
    Pending(Instant),
}

#[derive(Debug)]
pub struct PurgeLog {
    entries: VecDeque<PurgeRequest>,
    head: u64,
    capacity: usize,
    lease: Duration,
    /// When each node was last answered the log (its lease runs from before that).
    answered: HashMap<String, Instant>,
    /// When the log started: a node never answered may hold a lease a previous control node
    /// gave it, up to `lease` after this.
    started: Instant,
}

impl PurgeLog {
    /// A log continuing the sequence after `head`, keeping the last `capacity` purges; nodes
    /// hold leases of `lease`.
    pub fn new(head: u64, capacity: usize, lease: Duration, now: Instant) -> Self {
        Self {
            entries: VecDeque::new(),
            head,
            capacity: capacity.max(1),
            lease,
            answered: HashMap::new(),
            started: now,
        }
    }

    pub fn head(&self) -> u64 {
        self.head
    }

    /// Gives `request` the next number of the sequence and keeps it; returns the purge as
    /// logged.
    pub fn append(&mut self, mut request: PurgeRequest) -> PurgeRequest {
        self.head += 1;
        request.seq = Some(self.head);
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(request.clone());
        request
    }

    /// The purges after `after`, for `node`, answered at `now`.
    pub fn since(&mut self, node: &str, after: u64, now: Instant) -> Catchup {
        self.answered.insert(node.to_owned(), now);
        let oldest = self.head - self.entries.len() as u64 + 1;
        if after > self.head || (after + 1 < oldest && after < self.head) {
            return Catchup {
                head: self.head,
                purges: Vec::new(),
                complete: false,
            };
        }
        let skip = (after + 1).saturating_sub(oldest) as usize;
        Catchup {
            head: self.head,
            purges: self.entries.iter().skip(skip).cloned().collect(),
            complete: true,
        }
    }

    /// Where `node`, whose push of a purge logged at `logged` failed, stands at `now`.
    pub fn missed(&self, node: &str, logged: Instant, now: Instant) -> Missed {
        let last = self.answered.get(node).copied();
        if last.is_some_and(|at| at >= logged) {
            return Missed::CaughtUp;
        }
        let lapses = last.unwrap_or(self.started).max(self.started) + self.lease;
        if now >= lapses {
            Missed::LeaseLapsed
        } else {
            Missed::Pending(lapses)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn purge(url: &str) -> PurgeRequest {
        PurgeRequest {
            urls: vec![url.into()],
            ..PurgeRequest::default()
        }
    }

    #[test]
    fn numbers_purges_and_hands_out_what_a_node_missed() {
        let now = Instant::now();
        let mut log = PurgeLog::new(0, 3, Duration::from_secs(1), now);
        let first = log.append(purge("/a"));
        assert_eq!(first.seq, Some(1));
        log.append(purge("/b"));
        let up = log.since("edge", 0, now);
        assert!(up.complete);
        assert_eq!(up.head, 2);
        assert_eq!(
            up.purges.iter().map(|p| p.seq.unwrap()).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert!(log.since("edge", 2, now).purges.is_empty());
        // Past the window: the node must purge everything.
        log.append(purge("/c"));
        log.append(purge("/d"));
        log.append(purge("/e"));
        let behind = log.since("edge", 1, now);
        assert!(!behind.complete);
        assert_eq!(behind.head, 5);
        let in_window = log.since("edge", 2, now);
        assert!(in_window.complete);
        assert_eq!(in_window.purges.len(), 3);
        // Ahead of the log (a control node that lost its state).
        assert!(!log.since("edge", 9, now).complete);
    }

    #[test]
    fn a_missed_push_is_acknowledged_once_caught_up_or_once_the_lease_lapsed() {
        let start = Instant::now();
        let lease = Duration::from_secs(1);
        let mut log = PurgeLog::new(7, 100, lease, start);
        // Never heard from: a lease from a previous control node may still run.
        let logged = start + Duration::from_millis(10);
        assert_eq!(
            log.missed("edge", logged, logged),
            Missed::Pending(start + lease)
        );
        log.since("edge", 7, start + Duration::from_millis(100));
        log.append(purge("/x"));
        let logged = start + Duration::from_millis(200);
        assert_eq!(
            log.missed("edge", logged, logged),
            Missed::Pending(start + Duration::from_millis(1100))
        );
        assert_eq!(
            log.missed("edge", logged, start + Duration::from_millis(1100)),
            Missed::LeaseLapsed
        );
        log.since("edge", 7, start + Duration::from_millis(300));
        assert_eq!(
            log.missed("edge", logged, start + Duration::from_millis(300)),
            Missed::CaughtUp
        );
    }
}
