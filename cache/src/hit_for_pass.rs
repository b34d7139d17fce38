//! Hit-for-pass: keys whose last response could not be stored (private, no-store, too large,
//! Vary: *) are remembered for a while, so their requests go upstream each for itself instead
//! of queueing behind one another's fill.
//!
//! A mark is the key's keyed hash and the millisecond its mark ends: fixed in size, so huge
//! keys cannot make the marks large. At most [`CAPACITY_MARKS`] are kept (quick_cache's
//! CLOCK-Pro eviction picks which go), about 70 bytes allocated each, some 9 MiB in all
//! (`resident_bytes_per_mark`). Two keys under one hash (a chance of about 2^-64 per pair,
//! and no client can aim for it: the hash is keyed by a secret of the process) would only
//! make the other key's requests pass for a while: nothing is served from a mark.

use std::time::{Duration, Instant};

use crate::key::{CacheKey, KeyHasher};

/// How many keys are remembered at most.
pub const CAPACITY_MARKS: usize = 128 * 1024;

pub struct HitForPass {
    /// A key's hash and when its mark ends, in milliseconds after `start`.
    marks: quick_cache::sync::Cache<u64, u64>,
    hasher: KeyHasher,
    start: Instant,
    ttl_ms: u64,
}

impl HitForPass {
    /// Keys are remembered for `ttl` (at least a second).
    pub fn new(ttl: Duration) -> Self {
        let ttl = ttl.max(Duration::from_secs(1));
        Self {
            marks: quick_cache::sync::Cache::new(CAPACITY_MARKS),
            hasher: KeyHasher::default(),
            start: Instant::now(),
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Remembers `key` as uncacheable.
    pub fn mark(&self, key: &CacheKey) {
        let until = self.now_ms().saturating_add(self.ttl_ms);
        self.marks.insert(self.hasher.hash(key.as_str()), until);
    }

    pub fn is_marked(&self, key: &CacheKey) -> bool {
        let hash = self.hasher.hash(key.as_str());
        match self.marks.get(&hash) {
            Some(until) if self.now_ms() < until => true,
            Some(until) => {
                // Ended: gone, unless it was marked again meanwhile.
                self.marks.remove_if(&hash, |current| *current == until);
                false
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marked_key_is_remembered_and_others_are_not() {
        let marks = HitForPass::new(Duration::from_secs(60));
        let key = CacheKey::new("site.test", "/private");
        assert!(!marks.is_marked(&key));
        marks.mark(&key);
        assert!(marks.is_marked(&key));
        assert!(!marks.is_marked(&CacheKey::new("site.test", "/other")));
    }

    #[test]
    fn a_mark_ends_after_its_time() {
        let marks = HitForPass::new(Duration::from_secs(2));
        let key = CacheKey::new("site.test", "/private");
        marks.mark(&key);
        assert!(marks.is_marked(&key));
        std::thread::sleep(Duration::from_millis(1000));
        assert!(
            marks.is_marked(&key),
            "a mark lasts its whole time, not whole seconds of it"
        );
        std::thread::sleep(Duration::from_millis(1100));
        assert!(!marks.is_marked(&key));
        assert_eq!(marks.marks.len(), 0, "an ended mark is removed");
    }

    #[test]
    fn marks_are_bounded_in_number_whatever_the_keys() {
        let marks = HitForPass::new(Duration::from_secs(60));
        let long = "a".repeat(64 * 1024);
        for i in 0..64 {
            marks.mark(&CacheKey::new("site.test", &format!("/{long}?{i}")));
        }
        assert_eq!(
            marks.marks.len(),
            64,
            "a huge key is one mark like any other"
        );
        for i in 0..2 * CAPACITY_MARKS {
            marks.mark(&CacheKey::new("site.test", &format!("/?{i}")));
        }
        assert!(
            marks.marks.len() <= CAPACITY_MARKS,
            "{} marks",
            marks.marks.len()
        );
        let last = CacheKey::new("site.test", &format!("/?{}", 2 * CAPACITY_MARKS - 1));
        assert!(marks.is_marked(&last), "the newest mark is kept");
    }

    /// A full set of marks, of short keys and of 4 KiB ones: allocated bytes per mark, which
    /// the module's documentation states (and which must not depend on the key). Resident
    /// bytes are printed too, but they count the pages the keys made on the way as well.
    #[test]
    #[ignore = "a measurement, alone in its process"]
    fn resident_bytes_per_mark() {
        use crate::store::resident::{GLOBAL, rss};
        for padding in [0, 4096] {
            let pad = "p".repeat(padding);
            let key = |i: usize| CacheKey::new("www.outpost.test", &format!("/orders?id={i}{pad}"));
            let (rss_before, allocated_before) = (rss(), GLOBAL.allocated());
            let marks = HitForPass::new(Duration::from_secs(600));
            for i in 0..CAPACITY_MARKS {
                marks.mark(&key(i));
            }
            let n = marks.marks.len();
            let resident = (rss() - rss_before) / n as i64;
            let allocated = (GLOBAL.allocated() - allocated_before) / n;
            eprintln!(
                "keys of {} bytes: {n} marks, {resident} bytes resident and {allocated} \
                 allocated per mark",
                key(1).as_str().len()
            );
            assert!(allocated <= 80, "{allocated} bytes allocated per mark");
        }
    }
}
