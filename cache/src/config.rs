//! Settings of a cache node, as they appear in the TOML config.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::policy::CacheRules;
use crate::upstream::UpstreamTimeouts;

/// The `[cache]` table: storage, freshness defaults and upstream timeouts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Memory for stored objects, in MiB.
    pub capacity_mib: u64,
    /// Largest object stored, in MiB.
    pub max_object_mib: u64,
    /// Fraction of the time since Last-Modified granted as heuristic freshness.
    pub heuristic_fraction: f64,
    /// Cap on heuristic freshness, in seconds.
    pub heuristic_max_secs: u64,
    /// stale-while-revalidate for responses that do not state one, in seconds.
    pub stale_while_revalidate_secs: u64,
    /// stale-if-error for responses that do not state one, in seconds.
    pub stale_if_error_secs: u64,
    /// Store responses that carry Set-Cookie.
    pub cache_set_cookie: bool,
    /// Most variants (by Vary) kept of one URL; the least recently used goes first.
    pub max_variants: usize,
    /// Keep the port in cache keys (off: http, https and every port of a host share objects).
    pub key_port: bool,
    /// How long a key that gave an uncacheable response skips coalescing, in seconds.
    pub hit_for_pass_secs: u64,
    /// Upstream connect timeout, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Upstream time to the response head, in milliseconds (then 504 or stale-if-error).
    pub first_byte_timeout_ms: u64,
    /// Longest pause inside an upstream body, in milliseconds (then the body is broken).
    pub body_idle_timeout_ms: u64,
    /// Longest a whole cache fill may take, in seconds: an upstream that drips bytes just
    /// inside the idle timeout cannot hold a fill (and its buffer) for ever.
    pub fill_deadline_secs: u64,
    /// Memory all fills in progress may buffer together, in MiB (at least max_object_mib).
    /// Past it, fills stop buffering for the cache and only relay to their clients.
    pub fill_buffer_mib: u64,
    /// Disk tier under the memory store, in MiB: what memory evicts for room is kept on disk
    /// and served from there (and moved back to memory) until the disk is full. 0: off.
    /// 1 GiB by default.
    pub disk_mib: u64,
    /// Where the disk tier's database lives (`NODE.redb` in it); a node started from a
    /// topology uses `STATE_DIR/cache/` when this is not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_dir: Option<std::path::PathBuf>,
    /// Path prefixes whose objects are kept on disk as soon as they are fetched, and never
    /// dropped to make room (only purges and replacements remove them): a library pushed
    /// lazily by its first viewers.
    pub keep: Vec<String>,
    /// Lifetimes by content type for responses that state none (`[[cache.lifetimes]]`
    /// `content_types = [...]`, `ttl_secs`); by default, video playlists 1 s and segments a
    /// day. Giving the table replaces the defaults.
    pub lifetimes: Vec<crate::policy::TypeLifetime>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        let rules = CacheRules::default();
        Self {
            capacity_mib: 256,
            max_object_mib: rules.max_object_bytes >> 20,
            heuristic_fraction: rules.heuristic_fraction,
            heuristic_max_secs: rules.heuristic_max_secs,
            stale_while_revalidate_secs: rules.stale_while_revalidate_secs,
            stale_if_error_secs: rules.stale_if_error_secs,
            cache_set_cookie: rules.cache_set_cookie,
            max_variants: 64,
            key_port: false,
            hit_for_pass_secs: 60,
            connect_timeout_ms: 2_000,
            first_byte_timeout_ms: 30_000,
            body_idle_timeout_ms: 30_000,
            fill_deadline_secs: 600,
            fill_buffer_mib: 256,
            disk_mib: 1024,
            disk_dir: None,
            keep: Vec::new(),
            lifetimes: rules.lifetimes,
        }
    }
}

impl CacheConfig {
    pub fn rules(&self) -> CacheRules {
        CacheRules {
            heuristic_fraction: self.heuristic_fraction,
            heuristic_max_secs: self.heuristic_max_secs,
            stale_while_revalidate_secs: self.stale_while_revalidate_secs,
            stale_if_error_secs: self.stale_if_error_secs,
            cache_set_cookie: self.cache_set_cookie,
            max_object_bytes: self.max_object_mib << 20,
            lifetimes: self.lifetimes.clone(),
        }
    }

    pub fn timeouts(&self) -> UpstreamTimeouts {
        UpstreamTimeouts {
            connect: Duration::from_millis(self.connect_timeout_ms),
            first_byte: Duration::from_millis(self.first_byte_timeout_ms),
        }
    }

    pub fn body_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.body_idle_timeout_ms)
    }

    /// Checks values serde cannot: returns the offending key and what is expected.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if self.capacity_mib == 0 {
            return Err(("capacity_mib", "a capacity of at least 1 MiB"));
        }
        if !(0.0..=1.0).contains(&self.heuristic_fraction) {
            return Err(("heuristic_fraction", "a fraction between 0 and 1"));
        }
        if self.fill_buffer_mib < self.max_object_mib {
            return Err(("fill_buffer_mib", "at least max_object_mib"));
        }
        if self.fill_deadline_secs == 0 {
            return Err(("fill_deadline_secs", "a deadline above 0 s"));
        }
        if self.first_byte_timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return Err(("first_byte_timeout_ms", "timeouts above 0 ms"));
        }
        Ok(())
    }
}
