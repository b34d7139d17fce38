//! Response rate limiting per client network (UDP only), so the server cannot be used to flood
//! a spoofed victim: a token bucket per network, and past it a truncated answer now and then
//! (a real client retries over TCP, which a spoofer cannot) while the rest are dropped.

use std::collections::HashMap;
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

struct Bucket {
    tokens: f64,
    last: Instant,
    /// Limited queries since the network went over, for `slip`.
    limited: u32,
}

/// Networks tracked at most; past it, idle ones are forgotten.
const MAX_NETWORKS: usize = 100_000;

pub(crate) struct Limiter {
    rate: f64,
    burst: f64,
    slip: u32,
    v4_len: u8,
    v6_len: u8,
    buckets: Mutex<HashMap<IpNet, Bucket>>,
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
        Ok(Some(Self {
            rate: f64::from(config.responses_per_second),
            burst: f64::from(burst),
            slip: config.slip,
            v4_len: config.ipv4_prefix_len,
            v6_len: config.ipv6_prefix_len,
            buckets: Mutex::new(HashMap::new()),
        }))
    }

    fn network(&self, source: IpAddr) -> IpNet {
        let source = source.to_canonical();
        let len = if source.is_ipv4() {
            self.v4_len
        } else {
            self.v6_len
        };
        IpNet::new(source, len)
            .map(|net| net.trunc())
            .unwrap_or_else(|_| IpNet::from(source))
    }

    /// Takes one response from `source`'s network at `now`.
    pub(crate) fn check(&self, source: IpAddr, now: Instant) -> Verdict {
        let network = self.network(source);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_NETWORKS && !buckets.contains_key(&network) {
            // A full second idle refills any bucket: those carry no state worth keeping.
            buckets.retain(|_, b| now.saturating_duration_since(b.last).as_secs_f64() < 1.0);
        }
        let bucket = buckets.entry(network).or_insert(Bucket {
            tokens: self.burst,
            last: now,
            limited: 0,
        });
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
