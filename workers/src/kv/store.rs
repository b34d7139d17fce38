//! The data behind `wasi:keyvalue`: per worker, buckets of keys to bytes, local to the edge and
//! kept across restarts. Every change replaces the worker's file whole ([`crate::files`]).
//! Meant for the small state of edge workers: counters, flags, short lists.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Buckets of one worker.
type Buckets = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

/// One worker's key-value data.
pub struct KvStore {
    path: Option<PathBuf>,
    buckets: Mutex<Buckets>,
}

/// A failure of the store, as the guest sees it.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("the value under {0:?} is not a decimal u64")]
    NotACounter(String),
    #[error("the counter under {0:?} would overflow")]
    Overflow(String),
    #[error("writing the store: {0}")]
    Io(String),
}

impl KvStore {
    /// A store kept in `path` (loaded if it exists), or in memory only with `None`.
    pub fn open(path: Option<&Path>) -> Result<Self, KvError> {
        let buckets = match path {
            Some(path) if path.exists() => {
                let text = std::fs::read(path).map_err(|e| KvError::Io(e.to_string()))?;
                serde_json::from_slice(&text)
                    .map_err(|e| KvError::Io(format!("{}: {e}", path.display())))?
            }
            _ => Buckets::new(),
        };
        Ok(Self {
            path: path.map(Path::to_owned),
            buckets: Mutex::new(buckets),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets> {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(&self, buckets: &Buckets) -> Result<(), KvError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let bytes = serde_json::to_vec(buckets).map_err(|e| KvError::Io(e.to_string()))?;
        crate::files::replace(path, &bytes).map_err(|e| KvError::Io(e.to_string()))
    }

    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        self.lock().get(bucket)?.get(key).cloned()
    }

    pub fn exists(&self, bucket: &str, key: &str) -> bool {
        self.lock()
            .get(bucket)
            .is_some_and(|keys| keys.contains_key(key))
    }

    pub fn keys(&self, bucket: &str) -> Vec<String> {
        self.lock()
            .get(bucket)
            .map(|keys| keys.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Sets (`Some`) or deletes (`None`) several keys in one write.
    pub fn write(
        &self,
        bucket: &str,
        changes: Vec<(String, Option<Vec<u8>>)>,
    ) -> Result<(), KvError> {
        let mut buckets = self.lock();
        let keys = buckets.entry(bucket.to_owned()).or_default();
        for (key, value) in changes {
            match value {
                Some(value) => {
                    keys.insert(key, value);
                }
                None => {
                    keys.remove(&key);
                }
            }
        }
        self.persist(&buckets)
    }

    /// Adds `delta` to the decimal counter under `key` (0 when absent); returns the new value.
    pub fn increment(&self, bucket: &str, key: &str, delta: u64) -> Result<u64, KvError> {
        let mut buckets = self.lock();
        let keys = buckets.entry(bucket.to_owned()).or_default();
        let current = match keys.get(key) {
            None => 0,
            Some(bytes) => std::str::from_utf8(bytes)
                .ok()
                .and_then(|text| text.parse::<u64>().ok())
                .ok_or_else(|| KvError::NotACounter(key.to_owned()))?,
        };
        let next = current
            .checked_add(delta)
            .ok_or_else(|| KvError::Overflow(key.to_owned()))?;
        keys.insert(key.to_owned(), next.to_string().into_bytes());
        self.persist(&buckets)?;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_survives_reopening_and_counters_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counter.json");
        let store = KvStore::open(Some(&path)).unwrap();
        assert_eq!(store.increment("default", "hits", 1).unwrap(), 1);
        assert_eq!(store.increment("default", "hits", 41).unwrap(), 42);
        store
            .write("default", vec![("name".to_owned(), Some(b"edge".to_vec()))])
            .unwrap();
        store
            .write("other", vec![("gone".to_owned(), Some(vec![1]))])
            .unwrap();
        store
            .write("other", vec![("gone".to_owned(), None)])
            .unwrap();
        drop(store);

        let store = KvStore::open(Some(&path)).unwrap();
        assert_eq!(store.get("default", "hits").unwrap(), b"42");
        assert_eq!(store.get("default", "name").unwrap(), b"edge");
        assert!(!store.exists("other", "gone"));
        assert_eq!(store.keys("default"), ["hits", "name"]);
        assert!(matches!(
            store.increment("default", "name", 1),
            Err(KvError::NotACounter(_))
        ));
    }
}
