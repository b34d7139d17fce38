//! Hit-for-pass: keys whose last response could not be stored (private, no-store, too large,
//! Vary: *) are remembered for a while, so their requests go upstream each for itself instead
//! of queueing behind one another's fill. Weighed in bytes, like the store: huge keys cannot
//! make it large.

use std::sync::Arc;
use std::time::Duration;

use crate::key::CacheKey;

/// Memory for the remembered keys.
const CAPACITY_BYTES: u64 = 16 << 20;

/// What one remembered key costs besides its text (the map's entry and moka's bookkeeping).
const ENTRY_OVERHEAD: usize = 96;

pub struct HitForPass {
    keys: moka::sync::Cache<Arc<str>, ()>,
}

impl HitForPass {
    /// Keys are remembered for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        let keys = moka::sync::Cache::builder()
            .max_capacity(CAPACITY_BYTES)
            .weigher(|key: &Arc<str>, ()| {
                u32::try_from(key.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            })
            .time_to_live(ttl.max(Duration::from_secs(1)))
            .build();
        Self { keys }
    }

    /// Remembers `key` as uncacheable.
    pub fn mark(&self, key: &CacheKey) {
        self.keys.insert(key.shared(), ());
    }

    pub fn is_marked(&self, key: &CacheKey) -> bool {
        self.keys.contains_key(key.as_str())
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
}
