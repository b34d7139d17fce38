//! The disk tier under the memory store: what memory evicts for room is kept here, in one redb
//! database per node, until the disk's own size limit pushes it out (oldest written first). A
//! memory miss asks it; what it finds goes back to memory (promoted) and is taken off the disk.
//! It survives a restart: the index is read back at start. Each record carries a checksum of
//! its bytes, so a record damaged on disk is dropped, never served; redb's own transactions
//! keep a crash from leaving half a record.
//!
//! It owns no policy: what it stores was stored in memory first, and freshness is decided as
//! for any stored object when it comes back. Its calls block (file I/O): call them from a
//! blocking thread. This is the first step of issue 14: `Store::with_disk` puts it under the memory store.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::freshness::Timing;
use crate::policy::StoredPolicy;
use crate::store::StoredObject;

/// Primary key to the record of all its variants, checksum last.
const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
/// Primary key to its entry in the index (write order, size, tags).
const INDEX: TableDefinition<&str, &[u8]> = TableDefinition::new("index");

/// Why the disk tier failed: always the node's own disk, never a peer.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("disk cache {path}: {source}")]
    Open { path: String, source: redb::Error },
    #[error("disk cache: {0}")]
    Io(#[from] redb::Error),
    #[error("disk cache record does not encode: {0}")]
    Encode(#[from] postcard::Error),
}

macro_rules! from_redb {
    ($($error:ty),*) => {$(
        impl From<$error> for DiskError {
            fn from(error: $error) -> Self {
                DiskError::Io(error.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// What the index remembers of one key without reading its record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct IndexEntry {
    /// Write order: the smallest goes first when the disk is full.
    sequence: u64,
    /// Bytes of the record.
    size: u64,
    /// Every variant's surrogate keys, for purge by tag.
    tags: Vec<String>,
}

/// One variant as written.
#[derive(Debug, Serialize, Deserialize)]
struct DiskVariant {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    request_time_ms: u64,
    response_time_ms: u64,
    date_ms: Option<u64>,
    age_ms: u64,
    lifetime_ms: u64,
    stale_while_revalidate_ms: u64,
    stale_if_error_ms: u64,
    forbids_stale: bool,
    no_cache: bool,
    allows_authorization: bool,
    vary: Vec<String>,
    variant: String,
}

fn ms(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn time(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

impl DiskVariant {
    fn of(object: &StoredObject) -> Self {
        let policy = &object.policy;
        Self {
            status: object.status.as_u16(),
            headers: object
                .headers
                .to_map()
                .iter()
                .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
                .collect(),
            body: object.body.to_vec(),
            request_time_ms: ms(policy.timing.request_time),
            response_time_ms: ms(policy.timing.response_time),
            date_ms: policy.timing.date.map(ms),
            age_ms: duration_ms(policy.timing.age),
            lifetime_ms: duration_ms(policy.lifetime),
            stale_while_revalidate_ms: duration_ms(policy.stale_while_revalidate),
            stale_if_error_ms: duration_ms(policy.stale_if_error),
            forbids_stale: policy.forbids_stale,
            no_cache: policy.no_cache,
            allows_authorization: policy.allows_authorization,
            vary: object.vary.iter().map(|n| n.as_str().to_owned()).collect(),
            variant: object.variant.clone(),
        }
    }

    /// The object again; `None` when a name or value no longer parses (never written so).
    fn object(self) -> Option<StoredObject> {
        let mut headers = HeaderMap::with_capacity(self.headers.len());
        for (name, value) in self.headers {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).ok()?,
                HeaderValue::from_bytes(&value).ok()?,
            );
        }
        let vary = self
            .vary
            .iter()
            .map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .collect::<Option<Vec<_>>>()?;
        let policy = StoredPolicy {
            timing: Timing {
                request_time: time(self.request_time_ms),
                response_time: time(self.response_time_ms),
                date: self.date_ms.map(time),
                age: Duration::from_millis(self.age_ms),
            },
            lifetime: Duration::from_millis(self.lifetime_ms),
            stale_while_revalidate: Duration::from_millis(self.stale_while_revalidate_ms),
            stale_if_error: Duration::from_millis(self.stale_if_error_ms),
            forbids_stale: self.forbids_stale,
            no_cache: self.no_cache,
            allows_authorization: self.allows_authorization,
        };
        Some(StoredObject::new(
            StatusCode::from_u16(self.status).ok()?,
            headers,
            Bytes::from(self.body),
            policy,
            vary,
            self.variant,
        ))
    }
}

/// A record's bytes with its checksum appended.
fn seal(variants: &[DiskVariant]) -> Result<Vec<u8>, DiskError> {
    let mut bytes = postcard::to_allocvec(variants)?;
    let sum = xxhash_rust::xxh3::xxh3_64(&bytes);
    bytes.extend_from_slice(&sum.to_le_bytes());
    Ok(bytes)
}

/// A record's variants, if its checksum holds.
fn open(sealed: &[u8]) -> Option<Vec<DiskVariant>> {
    let split = sealed.len().checked_sub(8)?;
    let (bytes, sum) = sealed.split_at(split);
    let sum = u64::from_le_bytes(sum.try_into().ok()?);
    if xxhash_rust::xxh3::xxh3_64(bytes) != sum {
        return None;
    }
    postcard::from_bytes(bytes).ok()
}

/// The in-memory copy of the index.
#[derive(Debug, Default)]
struct Index {
    entries: HashMap<String, IndexEntry>,
    by_sequence: BTreeMap<u64, String>,
    bytes: u64,
    next: u64,
}

impl Index {
    fn remove(&mut self, key: &str) -> Option<IndexEntry> {
        let entry = self.entries.remove(key)?;
        self.by_sequence.remove(&entry.sequence);
        self.bytes -= entry.size;
        Some(entry)
    }

    fn add(&mut self, key: String, entry: IndexEntry) {
        self.remove(&key);
        self.next = self.next.max(entry.sequence + 1);
        self.bytes += entry.size;
        self.by_sequence.insert(entry.sequence, key.clone());
        self.entries.insert(key, entry);
    }
}

/// What [`DiskTier::take`] found.
#[derive(Debug)]
pub enum DiskLookup {
    Found(Vec<Arc<StoredObject>>),
    /// A record whose checksum failed: dropped.
    Damaged,
    Miss,
}

/// One node's disk cache.
pub struct DiskTier {
    db: redb::Database,
    capacity: u64,
    index: Mutex<Index>,
}

impl DiskTier {
    /// Opens (or creates) the disk cache at `path`, at most `capacity` bytes of records, and
    /// reads its index back.
    pub fn open(path: &Path, capacity: u64) -> Result<Self, DiskError> {
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let db = redb::Database::create(path).map_err(|source| DiskError::Open {
            path: path.display().to_string(),
            source: source.into(),
        })?;
        let mut index = Index::default();
        {
            let read = db.begin_read()?;
            match read.open_table(INDEX) {
                Ok(table) => {
                    for entry in table.iter()? {
                        let (key, value) = entry?;
                        if let Ok(entry) = postcard::from_bytes::<IndexEntry>(value.value()) {
                            index.add(key.value().to_owned(), entry);
                        }
                    }
                }
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(Self {
            db,
            capacity,
            index: Mutex::new(index),
        })
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `key` has a record (the in-memory index; no I/O).
    pub fn contains(&self, key: &str) -> bool {
        self.index().entries.contains_key(key)
    }

    /// Keys and bytes on disk.
    pub fn usage(&self) -> (usize, u64) {
        let index = self.index();
        (index.entries.len(), index.bytes)
    }

    /// Writes every variant of `key`, replacing what was there, then makes room by dropping
    /// the oldest records. A record larger than the whole disk cache is not written.
    pub fn put(&self, key: &str, variants: &[Arc<StoredObject>]) -> Result<bool, DiskError> {
        let encoded: Vec<DiskVariant> = variants.iter().map(|o| DiskVariant::of(o)).collect();
        let record = seal(&encoded)?;
        let size = (record.len() + key.len()) as u64;
        if size > self.capacity {
            return Ok(false);
        }
        let mut index = self.index();
        let entry = IndexEntry {
            sequence: index.next,
            size,
            tags: variants
                .iter()
                .flat_map(|o| o.tags.iter().cloned())
                .collect(),
        };
        let mut dropped = Vec::new();
        let mut bytes = index.bytes + size - index.entries.get(key).map_or(0, |e| e.size);
        for (_, oldest) in index.by_sequence.iter() {
            if bytes <= self.capacity {
                break;
            }
            if oldest != key {
                bytes -= index.entries[oldest].size;
                dropped.push(oldest.clone());
            }
        }
        let write = self.db.begin_write()?;
        {
            let mut records = write.open_table(RECORDS)?;
            let mut table = write.open_table(INDEX)?;
            for old in &dropped {
                records.remove(old.as_str())?;
                table.remove(old.as_str())?;
            }
            records.insert(key, record.as_slice())?;
            table.insert(key, postcard::to_allocvec(&entry)?.as_slice())?;
        }
        write.commit()?;
        for old in &dropped {
            index.remove(old);
        }
        index.add(key.to_owned(), entry);
        Ok(true)
    }

    /// Takes `key`'s variants off the disk (they go back to memory). A damaged record is
    /// removed and reported, never returned.
    pub fn take(&self, key: &str) -> Result<DiskLookup, DiskError> {
        if !self.index().entries.contains_key(key) {
            return Ok(DiskLookup::Miss);
        }
        let sealed = {
            let read = self.db.begin_read()?;
            let records = match read.open_table(RECORDS) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(DiskLookup::Miss),
                Err(error) => return Err(error.into()),
            };
            records.get(key)?.map(|v| v.value().to_vec())
        };
        self.remove(&[key.to_owned()])?;
        let Some(sealed) = sealed else {
            return Ok(DiskLookup::Miss);
        };
        let objects = open(&sealed).and_then(|variants| {
            variants
                .into_iter()
                .map(|v| v.object().map(Arc::new))
                .collect::<Option<Vec<_>>>()
        });
        Ok(match objects {
            Some(objects) if !objects.is_empty() => DiskLookup::Found(objects),
            _ => DiskLookup::Damaged,
        })
    }

    /// Removes `keys`; returns how many were there.
    pub fn remove(&self, keys: &[String]) -> Result<u64, DiskError> {
        let mut index = self.index();
        let present: Vec<&String> = keys
            .iter()
            .filter(|k| index.entries.contains_key(*k))
            .collect();
        if present.is_empty() {
            return Ok(0);
        }
        let write = self.db.begin_write()?;
        {
            let mut records = write.open_table(RECORDS)?;
            let mut table = write.open_table(INDEX)?;
            for key in &present {
                records.remove(key.as_str())?;
                table.remove(key.as_str())?;
            }
        }
        write.commit()?;
        for key in &present {
            index.remove(key);
        }
        Ok(present.len() as u64)
    }

    /// Removes every key whose target (path and query) is `target`, under any host.
    pub fn purge_target(&self, target: &str) -> Result<u64, DiskError> {
        let keys: Vec<String> = self
            .index()
            .entries
            .keys()
            .filter(|key| key.find('/').is_some_and(|slash| &key[slash..] == target))
            .cloned()
            .collect();
        self.remove(&keys)
    }

    /// Removes every key with a variant tagged `tag`.
    pub fn purge_tag(&self, tag: &str) -> Result<u64, DiskError> {
        let keys: Vec<String> = self
            .index()
            .entries
            .iter()
            .filter(|(_, entry)| entry.tags.iter().any(|t| t == tag))
            .map(|(key, _)| key.clone())
            .collect();
        self.remove(&keys)
    }

    /// Corrupts `key`'s record in place, for the test that a damaged record is never served.
    #[cfg(test)]
    fn damage(&self, key: &str) {
        let write = self.db.begin_write().unwrap();
        {
            let mut records = write.open_table(RECORDS).unwrap();
            let mut bytes = records.get(key).unwrap().unwrap().value().to_vec();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0xff;
            records.insert(key, bytes.as_slice()).unwrap();
        }
        write.commit().unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(body: &str, tag: &str, variant: &str) -> Arc<StoredObject> {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        headers.insert("surrogate-key", HeaderValue::from_str(tag).unwrap());
        headers.append("x-two", HeaderValue::from_static("a"));
        headers.append("x-two", HeaderValue::from_static("b"));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let policy = StoredPolicy {
            timing: Timing {
                request_time: now,
                response_time: now + Duration::from_millis(3),
                date: Some(now),
                age: Duration::from_secs(2),
            },
            lifetime: Duration::from_secs(60),
            stale_while_revalidate: Duration::from_secs(5),
            stale_if_error: Duration::ZERO,
            forbids_stale: false,
            no_cache: false,
            allows_authorization: true,
        };
        let vary = if variant.is_empty() {
            vec![]
        } else {
            vec![http::header::ACCEPT_ENCODING]
        };
        Arc::new(StoredObject::new(
            StatusCode::OK,
            headers,
            Bytes::from(body.to_owned()),
            policy,
            vary,
            variant.to_owned(),
        ))
    }

    fn found(lookup: DiskLookup) -> Vec<Arc<StoredObject>> {
        match lookup {
            DiskLookup::Found(objects) => objects,
            other => panic!("not found: {other:?}"),
        }
    }

    #[test]
    fn what_is_put_comes_back_whole_and_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskTier::open(&dir.path().join("edge.redb"), 1 << 20).unwrap();
        let variants = [
            object("gzip body", "t1", "gzip"),
            object("plain body", "t1", ""),
        ];
        assert!(disk.put("a.test/x", &variants).unwrap());
        let back = found(disk.take("a.test/x").unwrap());
        assert_eq!(back.len(), 2);
        let first = &back[0];
        assert_eq!(first.status, StatusCode::OK);
        assert_eq!(first.body, "gzip body");
        assert_eq!(first.variant, "gzip");
        assert_eq!(first.vary, vec![http::header::ACCEPT_ENCODING]);
        assert_eq!(first.tags, vec!["t1".to_owned()]);
        let headers = first.headers.to_map();
        assert_eq!(headers.get_all("x-two").iter().count(), 2);
        assert_eq!(first.policy.timing, variants[0].policy.timing);
        assert_eq!(first.policy.lifetime, Duration::from_secs(60));
        assert!(first.policy.allows_authorization);
        // Taken off the disk: it lives in memory again.
        assert!(matches!(disk.take("a.test/x").unwrap(), DiskLookup::Miss));
        assert_eq!(disk.usage(), (0, 0));
    }

    #[test]
    fn it_survives_a_restart_and_keeps_inside_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache/parent.redb");
        let body = "x".repeat(1000);
        {
            // Room for about three records of 1 kB: the oldest go first.
            let disk = DiskTier::open(&path, 3_600).unwrap();
            for i in 0..5 {
                assert!(
                    disk.put(&format!("a.test/{i}"), &[object(&body, "t", "")])
                        .unwrap()
                );
            }
            let (keys, bytes) = disk.usage();
            assert_eq!(keys, 3);
            assert!(bytes <= 3_600);
            // Too large for the whole disk cache: not written.
            assert!(
                !disk
                    .put("a.test/huge", &[object(&"y".repeat(5000), "t", "")])
                    .unwrap()
            );
        }
        let disk = DiskTier::open(&path, 3_600).unwrap();
        assert_eq!(disk.usage().0, 3);
        assert!(matches!(disk.take("a.test/0").unwrap(), DiskLookup::Miss));
        assert!(matches!(disk.take("a.test/1").unwrap(), DiskLookup::Miss));
        assert_eq!(found(disk.take("a.test/4").unwrap())[0].body, body.as_str());
        // Written after the restart, in order after what was there.
        assert!(disk.put("a.test/5", &[object(&body, "t", "")]).unwrap());
        assert!(disk.put("a.test/6", &[object(&body, "t", "")]).unwrap());
        assert!(matches!(disk.take("a.test/2").unwrap(), DiskLookup::Miss));
        assert_eq!(disk.usage().0, 3);
    }

    #[test]
    fn a_damaged_record_is_dropped_never_served() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskTier::open(&dir.path().join("edge.redb"), 1 << 20).unwrap();
        disk.put("a.test/x", &[object("body", "t", "")]).unwrap();
        disk.damage("a.test/x");
        assert!(matches!(
            disk.take("a.test/x").unwrap(),
            DiskLookup::Damaged
        ));
        assert!(matches!(disk.take("a.test/x").unwrap(), DiskLookup::Miss));
        assert!(open(b"short").is_none());
        assert!(open(&[]).is_none());
    }

    #[test]
    fn purges_reach_the_disk_by_target_and_by_tag() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskTier::open(&dir.path().join("edge.redb"), 1 << 20).unwrap();
        disk.put("a.test/p?x=1", &[object("1", "red", "")]).unwrap();
        disk.put("b.test/p?x=1", &[object("2", "blue", "")])
            .unwrap();
        disk.put("a.test/q", &[object("3", "red", "")]).unwrap();
        disk.put("a.test/r", &[object("4", "green", "")]).unwrap();
        assert_eq!(disk.purge_target("/p?x=1").unwrap(), 2);
        assert_eq!(disk.purge_tag("red").unwrap(), 1);
        assert_eq!(disk.usage().0, 1);
        assert_eq!(found(disk.take("a.test/r").unwrap())[0].body, "4");
    }
}
