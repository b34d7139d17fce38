//! The data behind `wasi:keyvalue`: per worker, buckets of keys to bytes, local to the edge and
//! kept across restarts, within a quota of keys and bytes.
//!
//! Reads are served from memory. Every change is applied in memory at once and handed to the
//! store's own writer thread, which commits it to a redb database (only what changed, in one
//! transaction per batch, fsynced): guests never wait for the disk, and the async threads never
//! block on it. A crash can lose the changes of the last moments, never leave a torn store.
//! Meant for the small state of edge workers: counters, flags, short lists.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

/// Buckets of one worker.
type Buckets = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

/// One change for the writer: (bucket, key) set to a value, or deleted.
type Change = ((String, String), Option<Vec<u8>>);

const TABLE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("kv");

/// How much one worker may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvQuota {
    pub max_keys: u64,
    /// Bucket names, keys and values together.
    pub max_bytes: u64,
}

/// One worker's key-value data.
pub struct KvStore {
    state: Mutex<State>,
    quota: Mutex<KvQuota>,
    writer: Option<mpsc::Sender<Vec<Change>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct State {
    buckets: Buckets,
    keys: u64,
    bytes: u64,
}

/// A failure of the store, as the guest sees it.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("the value under {0:?} is not a decimal u64")]
    NotACounter(String),
    #[error("the counter under {0:?} would overflow")]
    Overflow(String),
    #[error("over the worker's key-value quota: {0}")]
    Quota(String),
    #[error("the key-value store: {0}")]
    Io(String),
}

fn size(bucket: &str, key: &str, value: &[u8]) -> u64 {
    (bucket.len() + key.len() + value.len()) as u64
}

impl KvStore {
    /// A store kept in the redb database at `path` (created 0600 if need be; a legacy JSON
    /// store beside it, `NAME.kv.json`, is imported once), or in memory only with `None`.
    pub fn open(path: Option<&Path>, quota: KvQuota) -> Result<Self, KvError> {
        let io = |e: &dyn std::fmt::Display| KvError::Io(e.to_string());
        let Some(path) = path else {
            return Ok(Self::with(Buckets::new(), quota, None, None));
        };
        let fresh = !path.exists();
        let db = redb::Database::create(path).map_err(|e| io(&e))?;
        crate::files::owner_only(path).map_err(|e| io(&e))?;
        let mut buckets = Buckets::new();
        {
            let read = db.begin_read().map_err(|e| io(&e))?;
            match read.open_table(TABLE) {
                Ok(table) => {
                    for entry in table.iter().map_err(|e| io(&e))? {
                        let (key, value) = entry.map_err(|e| io(&e))?;
                        let (bucket, key) = key.value();
                        buckets
                            .entry(bucket.to_owned())
                            .or_default()
                            .insert(key.to_owned(), value.value().to_vec());
                    }
                }
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(io(&e)),
            }
        }
        let legacy = path.with_extension("json");
        let mut import = Vec::new();
        if fresh && legacy.exists() {
            let text = std::fs::read(&legacy).map_err(|e| io(&e))?;
            let old: Buckets = serde_json::from_slice(&text)
                .map_err(|e| KvError::Io(format!("{}: {e}", legacy.display())))?;
            for (bucket, keys) in old {
                for (key, value) in keys {
                    import.push(((bucket.clone(), key.clone()), Some(value.clone())));
                    buckets
                        .entry(bucket.clone())
                        .or_default()
                        .insert(key, value);
                }
            }
        }
        let (sender, receiver) = mpsc::channel::<Vec<Change>>();
        let name = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("outpost-kv".to_owned())
            .spawn(move || write_loop(&db, &receiver, &name))
            .map_err(|e| io(&e))?;
        if !import.is_empty() {
            let _ = sender.send(import);
        }
        Ok(Self::with(buckets, quota, Some(sender), Some(thread)))
    }

    fn with(
        buckets: Buckets,
        quota: KvQuota,
        writer: Option<mpsc::Sender<Vec<Change>>>,
        thread: Option<std::thread::JoinHandle<()>>,
    ) -> Self {
        let keys = buckets.values().map(|k| k.len() as u64).sum();
        let bytes = buckets
            .iter()
            .flat_map(|(b, keys)| keys.iter().map(move |(k, v)| size(b, k, v)))
            .sum();
        Self {
            state: Mutex::new(State {
                buckets,
                keys,
                bytes,
            }),
            quota: Mutex::new(quota),
            writer,
            thread,
        }
    }

    /// The quota from now on (a redeploy may change it; what is stored stays).
    pub fn set_quota(&self, quota: KvQuota) {
        *self.quota.lock().unwrap_or_else(|p| p.into_inner()) = quota;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        self.lock().buckets.get(bucket)?.get(key).cloned()
    }

    pub fn exists(&self, bucket: &str, key: &str) -> bool {
        self.lock()
            .buckets
            .get(bucket)
            .is_some_and(|keys| keys.contains_key(key))
    }

    pub fn keys(&self, bucket: &str) -> Vec<String> {
        self.lock()
            .buckets
            .get(bucket)
            .map(|keys| keys.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Keys and bytes in use.
    pub fn usage(&self) -> (u64, u64) {
        let state = self.lock();
        (state.keys, state.bytes)
    }

    /// Sets (`Some`) or deletes (`None`) several keys in one write: all of them, or, past the
    /// quota, none.
    pub fn write(
        &self,
        bucket: &str,
        changes: Vec<(String, Option<Vec<u8>>)>,
    ) -> Result<(), KvError> {
        let mut state = self.lock();
        self.apply(&mut state, bucket, changes)
    }

    /// Adds `delta` to the decimal counter under `key` (0 when absent); returns the new value.
    pub fn increment(&self, bucket: &str, key: &str, delta: u64) -> Result<u64, KvError> {
        // One lock for the read and the write, so increments from concurrent requests all
        // count.
        let mut state = self.lock();
        let current = match state.buckets.get(bucket).and_then(|k| k.get(key)) {
            None => 0,
            Some(bytes) => std::str::from_utf8(bytes)
                .ok()
                .and_then(|text| text.parse::<u64>().ok())
                .ok_or_else(|| KvError::NotACounter(key.to_owned()))?,
        };
        let next = current
            .checked_add(delta)
            .ok_or_else(|| KvError::Overflow(key.to_owned()))?;
        let value = next.to_string().into_bytes();
        self.apply(&mut state, bucket, vec![(key.to_owned(), Some(value))])?;
        Ok(next)
    }

    /// Checks `changes` against the quota, applies them and hands them to the writer.
    fn apply(
        &self,
        state: &mut State,
        bucket: &str,
        changes: Vec<(String, Option<Vec<u8>>)>,
    ) -> Result<(), KvError> {
        let (mut keys, mut bytes) = (state.keys, state.bytes);
        {
            let mut seen: BTreeMap<&str, Option<&[u8]>> = BTreeMap::new();
            let current = state.buckets.get(bucket);
            for (key, value) in &changes {
                let before = match seen.get(key.as_str()) {
                    Some(before) => *before,
                    None => current.and_then(|k| k.get(key)).map(Vec::as_slice),
                };
                if let Some(before) = before {
                    keys -= 1;
                    bytes -= size(bucket, key, before);
                }
                if let Some(value) = value {
                    keys += 1;
                    bytes += size(bucket, key, value);
                }
                seen.insert(key, value.as_deref());
            }
        }
        // A write that shrinks the store is always allowed, even over a lowered quota.
        let quota = *self.quota.lock().unwrap_or_else(|p| p.into_inner());
        if keys > quota.max_keys && keys > state.keys {
            return Err(KvError::Quota(format!(
                "{keys} keys, at most {} allowed",
                quota.max_keys
            )));
        }
        if bytes > quota.max_bytes && bytes > state.bytes {
            return Err(KvError::Quota(format!(
                "{bytes} bytes, at most {} allowed",
                quota.max_bytes
            )));
        }
        let entries = state.buckets.entry(bucket.to_owned()).or_default();
        for (key, value) in &changes {
            match value {
                Some(value) => {
                    entries.insert(key.clone(), value.clone());
                }
                None => {
                    entries.remove(key);
                }
            }
        }
        if entries.is_empty() {
            state.buckets.remove(bucket);
        }
        state.keys = keys;
        state.bytes = bytes;
        self.persist(
            changes
                .into_iter()
                .map(|(key, value)| ((bucket.to_owned(), key), value))
                .collect(),
        )
    }

    fn persist(&self, changes: Vec<Change>) -> Result<(), KvError> {
        match &self.writer {
            None => Ok(()),
            Some(writer) => writer
                .send(changes)
                .map_err(|_| KvError::Io("the store's writer has stopped".to_owned())),
        }
    }
}

impl Drop for KvStore {
    /// Waits for what was written to reach the disk.
    fn drop(&mut self) {
        self.writer = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Commits batches of changes as they come, several queued batches in one transaction.
fn write_loop(db: &redb::Database, changes: &mpsc::Receiver<Vec<Change>>, name: &str) {
    while let Ok(first) = changes.recv() {
        let mut batch = first;
        while let Ok(more) = changes.try_recv() {
            batch.extend(more);
        }
        let committed = (|| -> Result<(), redb::Error> {
            let write = db.begin_write()?;
            {
                let mut table = write.open_table(TABLE)?;
                for ((bucket, key), value) in &batch {
                    match value {
                        Some(value) => {
                            table.insert((bucket.as_str(), key.as_str()), value.as_slice())?;
                        }
                        None => {
                            table.remove((bucket.as_str(), key.as_str()))?;
                        }
                    }
                }
            }
            write.commit()?;
            Ok(())
        })();
        if let Err(error) = committed {
            tracing::error!(target: "outpost::worker", store = name, %error, "key-value changes not written");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOMY: KvQuota = KvQuota {
        max_keys: 1000,
        max_bytes: 1 << 20,
    };

    #[test]
    fn data_survives_reopening_and_counters_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counter.kv.redb");
        let store = KvStore::open(Some(&path), ROOMY).unwrap();
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
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let store = KvStore::open(Some(&path), ROOMY).unwrap();
        assert_eq!(store.get("default", "hits").unwrap(), b"42");
        assert_eq!(store.get("default", "name").unwrap(), b"edge");
        assert!(!store.exists("other", "gone"));
        assert_eq!(store.keys("default"), ["hits", "name"]);
        assert!(matches!(
            store.increment("default", "name", 1),
            Err(KvError::NotACounter(_))
        ));
    }

    #[test]
    fn the_quota_refuses_a_write_whole_and_says_why() {
        let store = KvStore::open(
            None,
            KvQuota {
                max_keys: 2,
                max_bytes: 100,
            },
        )
        .unwrap();
        store
            .write("b", vec![("a".into(), Some(vec![0; 10]))])
            .unwrap();
        let too_many = store.write(
            "b",
            vec![("x".into(), Some(vec![1])), ("y".into(), Some(vec![1]))],
        );
        assert!(matches!(&too_many, Err(KvError::Quota(m)) if m.contains("3 keys")));
        assert!(
            !store.exists("b", "x"),
            "nothing of a refused write is kept"
        );
        let too_big = store.write("b", vec![("x".into(), Some(vec![0; 200]))]);
        assert!(matches!(too_big, Err(KvError::Quota(m)) if m.contains("bytes")));
        // Replacing and deleting within the quota is fine.
        store
            .write("b", vec![("a".into(), Some(vec![0; 50]))])
            .unwrap();
        store.write("b", vec![("a".into(), None)]).unwrap();
        assert_eq!(store.usage(), (0, 0));
    }

    #[test]
    fn a_legacy_json_store_is_imported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("w.kv.json"),
            r#"{"default":{"hits":[52,50]}}"#,
        )
        .unwrap();
        let path = dir.path().join("w.kv.redb");
        drop(KvStore::open(Some(&path), ROOMY).unwrap());
        let store = KvStore::open(Some(&path), ROOMY).unwrap();
        assert_eq!(store.get("default", "hits").unwrap(), b"42");
    }
}
