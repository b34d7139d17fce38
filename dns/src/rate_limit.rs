//! Response rate limiting per client network (UDP only), so the server cannot be used to flood
//! a spoofed victim: a token bucket per network, and past it a truncated answer now and then
//! (a real client retries over TCP, which a spoofer cannot) while the rest are dropped.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use ipnet::IpNet;

use crate::config::{DnsError, RateLimit};

/// What to do with one UDP query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Answer,
    /// Send an empty answer with TC set.
    Slip,
    Drop,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
    /// Limited queries since the network went over, for `slip`.
    limited: u32,
}

/// One entry of the table: the network it counts for, and its bucket.
struct Slot {
    network: Option<IpNet>,
    bucket: Bucket,
}

/// Entries in the table (a power of two). It never grows: like BIND's RRL table, a packet
/// costs the same whatever the number of networks sending, and random spoofed sources only
/// push out other entries.
const SLOTS: usize = 1 << 15;

pub(crate) struct Limiter {
    rate: f64,
    burst: f64,
    slip: u32,
    v4_len: u8,
    v6_len: u8,
    /// Each network has two candidate slots (two halves of one hash); it lives in either.
    slots: Box<[Mutex<Slot>]>,
    hasher: std::hash::RandomState,
}

impl Limiter {
    /// `None` when rate limiting is off.
    pub(crate) fn new(config: &RateLimit) -> Result<Option<Self>, DnsError> {
        if config.ipv4_prefix_len > 32 || config.ipv6_prefix_len > 128 {
            return Err(DnsError::BadSetting {
                key: "dns.rate_limit",
                reason: format!(
                    "ipv4_prefix_len must be at most 32 and ipv6_prefix_len at most 128 (got {} and {})",
                    config.ipv4_prefix_len, config.ipv6_prefix_len
                ),
            });
        }
        if config.responses_per_second == 0 {
            return Ok(None);
        }
        let burst = if config.burst == 0 {
            config.responses_per_second
        } else {
            config.burst
        };
        let now = Instant::now();
        Ok(Some(Self {
            rate: f64::from(config.responses_per_second),
            burst: f64::from(burst),
            slip: config.slip,
            v4_len: config.ipv4_prefix_len,
            v6_len: config.ipv6_prefix_len,
            slots: (0..SLOTS)
                .map(|_| {
                    Mutex::new(Slot {
                        network: None,
                        bucket: Bucket {
                            tokens: 0.0,
                            last: now,
                            limited: 0,
                        },
                    })
                })
                .collect(),
            hasher: std::hash::RandomState::new(),
        }))
    }

    fn network(&self, source: IpAddr) -> IpNet {
        outpost_server::network::client_network(source, self.v4_len, self.v6_len)
    }

    fn slot(&self, index: usize) -> std::sync::MutexGuard<'_, Slot> {
        self.slots[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes one response from `source`'s network at `now`: at most two slots looked at, the
    /// same work for every packet.
    pub(crate) fn check(&self, source: IpAddr, now: Instant) -> Verdict {
        use std::hash::BuildHasher;
        let network = self.network(source);
        let hash = self.hasher.hash_one(network);
        let first = (hash as usize) & (SLOTS - 1);
        let second = ((hash >> 32) as usize) & (SLOTS - 1);
        let fresh = Bucket {
            tokens: self.burst,
            last: now,
            limited: 0,
        };
        // Where the network already is; else the candidate whose entry matters least: an
        // empty one, then one that is not being limited (forgetting it only gives it a fresh
        // burst), then the one idle longest. A limited network is what the table is for.
        let worth = |slot: &Slot| {
            slot.network.map(|_| {
                let elapsed = now
                    .saturating_duration_since(slot.bucket.last)
                    .as_secs_f64();
                let limited = slot.bucket.tokens + elapsed * self.rate < 1.0;
                (limited, slot.bucket.last)
            })
        };
        let index = {
            let a = self.slot(first);
            if a.network == Some(network) {
                first
            } else {
                let a_worth = worth(&a);
                drop(a);
                let b = self.slot(second);
                if b.network == Some(network) || a_worth > worth(&b) {
                    second
                } else {
                    first
                }
            }
        };
        let mut slot = self.slot(index);
        if slot.network != Some(network) {
            slot.network = Some(network);
            slot.bucket = fresh;
        }
        let bucket = &mut slot.bucket;
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            bucket.limited = 0;
            return Verdict::Answer;
        }
        bucket.limited = bucket.limited.wrapping_add(1);
        if self.slip > 0 && bucket.limited.is_multiple_of(self.slip) {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limiter(rate: u32, burst: u32, slip: u32) -> Limiter {
        Limiter::new(&RateLimit {
            responses_per_second: rate,
            burst,
            slip,
            ..RateLimit::default()
        })
        .unwrap()
        .unwrap()
    }

    #[test]
    fn a_network_gets_its_burst_then_its_rate() {
        let l = limiter(10, 5, 2);
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let neighbour: IpAddr = "192.0.2.200".parse().unwrap();
        for _ in 0..5 {
            assert_eq!(l.check(ip, t0), Verdict::Answer);
        }
        // Same /24: the same bucket.
        assert_eq!(l.check(neighbour, t0), Verdict::Drop);
        assert_eq!(l.check(ip, t0), Verdict::Slip);
        assert_eq!(l.check(ip, t0), Verdict::Drop);
        // Another network is not affected.
        assert_eq!(
            l.check("198.51.100.1".parse().unwrap(), t0),
            Verdict::Answer
        );
        // 100 ms at 10/s refills one token.
        assert_eq!(
            l.check(ip, t0 + Duration::from_millis(100)),
            Verdict::Answer
        );
        assert_ne!(
            l.check(ip, t0 + Duration::from_millis(100)),
            Verdict::Answer
        );
    }

    #[test]
    fn zero_rate_is_off_and_bad_prefixes_are_refused() {
        assert!(
            Limiter::new(&RateLimit {
                responses_per_second: 0,
                ..RateLimit::default()
            })
            .unwrap()
            .is_none()
        );
        assert!(
            Limiter::new(&RateLimit {
                ipv4_prefix_len: 33,
                ..RateLimit::default()
            })
            .is_err()
        );
    }

    #[test]
    fn spoofed_sources_neither_grow_the_table_nor_free_a_limited_network() {
        let l = limiter(10, 5, 0);
        let t0 = Instant::now();
        let victim: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..5 {
            assert_eq!(l.check(victim, t0), Verdict::Answer);
        }
        assert_eq!(l.check(victim, t0), Verdict::Drop);
        // A flood from a million random networks: the table stays the size it was.
        let mut x: u32 = 0x1234_5678;
        for _ in 0..1_000_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            l.check(IpAddr::from(x.to_be_bytes()), t0);
            // The victim keeps querying, so it stays in the table and stays limited.
            if x.is_multiple_of(1024) {
                assert_ne!(l.check(victim, t0), Verdict::Answer);
            }
        }
        assert_eq!(l.slots.len(), SLOTS);
        assert_ne!(l.check(victim, t0), Verdict::Answer);
    }

    #[test]
    fn slip_zero_drops_everything_over_the_limit() {
        let l = limiter(1, 1, 0);
        let t0 = Instant::now();
        let ip: IpAddr = "::1".parse().unwrap();
        assert_eq!(l.check(ip, t0), Verdict::Answer);
        for _ in 0..5 {
            assert_eq!(l.check(ip, t0), Verdict::Drop);
        }
    }
}
