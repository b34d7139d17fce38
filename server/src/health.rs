//! Health checking, one way for every checker (parents at the edge, edges at the DNS and at
//! the anycast router): the probe of a node's health path, rise/fall hysteresis (`fall` failed
//! probes in a row take a healthy target down, `rise` good ones in a row bring it back, so one
//! lost probe moves no traffic and a flapping target does not bounce), and the one loop that
//! runs them ([`spawn_health_loop`]) with its settings ([`HealthSettings`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};

use crate::shutdown::ShutdownSignal;

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

/// How a health loop probes: `GET /_outpost/health` every `interval_ms`, each probe given
/// `timeout_ms`; `fall` failures in a row mark a target down, `rise` successes in a row mark it
/// up again. One type for every loop (an edge's parents, the DNS's and the anycast router's
/// edges); each role has its own defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSettings {
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub rise: u32,
    pub fall: u32,
}

impl HealthSettings {
    pub const fn new(interval_ms: u64, timeout_ms: u64, rise: u32, fall: u32) -> Self {
        Self {
            interval_ms,
            timeout_ms,
            rise,
            fall,
        }
    }

    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms.max(10))
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }

    /// How long the checks take at most to take a failed target out: `interval` x `fall`.
    pub fn decision_horizon(&self) -> Duration {
        self.interval().saturating_mul(self.fall.max(1))
    }
}

impl Default for HealthSettings {
    /// The edge's checks of its parents.
    fn default() -> Self {
        Self::new(2_000, 1_000, 2, 3)
    }
}

/// What one health loop watches: a fixed list of targets, each with its [`Hysteresis`].
pub trait HealthTargets: Send + Sync + 'static {
    /// How many targets there are; they are numbered from 0.
    fn count(&self) -> usize;

    /// Host and port of target `index`'s HTTP listener; `None`: it cannot be probed (counts
    /// as down).
    fn address(&self, index: usize) -> Option<(String, u16)>;

    fn health(&self, index: usize) -> &Hysteresis;

    /// Every probe's result, before the thresholds apply (a node's reported load).
    fn probed(&self, _index: usize, _probe: Probe) {}

    /// Target `index` went down (`false`) or came back (`true`).
    fn changed(&self, index: usize, healthy: bool);
}

/// The one health loop: probes every target of `targets` each interval until `shutdown`,
/// applies the rise and fall thresholds and reports changes.
pub fn spawn_health_loop<T: HealthTargets>(
    targets: Arc<T>,
    settings: HealthSettings,
    mut shutdown: ShutdownSignal,
) {
    if targets.count() == 0 {
        return;
    }
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(settings.interval());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.triggered() => return,
            }
            for index in 0..targets.count() {
                let result = match targets.address(index) {
                    Some(address) => probe(address, settings.timeout()).await,
                    None => Probe::Down,
                };
                targets.probed(index, result);
                let health = targets.health(index);
                if let Some(healthy) = health.record(result.is_up(), settings.rise, settings.fall) {
                    targets.changed(index, healthy);
                }
            }
        }
    });
}

/// The header on a health response that carries the node's load: the requests it is
/// handling right now. The DNS sheds traffic from an edge whose load passes its high watermark.
pub const LOAD_HEADER: &str = "outpost-load";

/// What one health probe saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The health path answered 200, with the load and its place in the purge sequence
    /// ([`crate::PURGE_SEQ_HEADER`]) when the node reports them, in `rtt` (connection, request
    /// and response head: the path's round trips).
    Up {
        load: Option<u64>,
        purge_seq: Option<u64>,
        rtt: Duration,
    },
    /// No connection, no answer in time, or an answer other than 200.
    Down,
}

impl Probe {
    pub fn is_up(self) -> bool {
        matches!(self, Probe::Up { .. })
    }
}

/// The most a health response head may take.
const MAX_HEAD: usize = 4096;

/// One health probe of a node: `GET /_outpost/health` on its data port must answer 200 within
/// `timeout`; the [`LOAD_HEADER`] of the answer, if any, is the node's load.
pub async fn probe(addr: impl ToSocketAddrs, timeout: Duration) -> Probe {
    let started = std::time::Instant::now();
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let request = format!(
            "GET {} HTTP/1.1\r\nhost: health.outpost\r\nconnection: close\r\n\r\n",
            crate::HEALTH_PATH
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = Vec::with_capacity(256);
        loop {
            let mut chunk = [0u8; 512];
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            head.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&head) {
                Ok(httparse::Status::Complete(_)) => {
                    if response.code != Some(200) {
                        return Some(Probe::Down);
                    }
                    let number = |name: &str| {
                        response
                            .headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case(name))
                            .and_then(|h| std::str::from_utf8(h.value).ok())
                            .and_then(|v| v.trim().parse().ok())
                    };
                    return Some(Probe::Up {
                        load: number(LOAD_HEADER),
                        purge_seq: number(crate::PURGE_SEQ_HEADER),
                        rtt: started.elapsed(),
                    });
                }
                Ok(httparse::Status::Partial) if head.len() < MAX_HEAD => {}
                _ => return None,
            }
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Some(probe)) => probe,
        _ => Probe::Down,
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
