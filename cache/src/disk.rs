//! The disk tier under the memory store: what memory evicts for room is kept here until the
//! disk's own size limit pushes it out (oldest written first). Each node has one redb database
//! of records (headers, freshness, and small bodies inline) and, beside it, a directory of
//! body files for bodies over [`INLINE_MAX`]. A memory miss asks it: a record with inline
//! bodies goes back to memory (promoted) and is taken off the disk; one with body files stays
//! on disk and is served by streaming the file, never read whole into memory.
//!
//! It survives a restart: the index is read back at start, and body files no record names
//! (a write cut short by a crash) are deleted. A body file is written under a temporary name,
//! synced and renamed before the record that names it is committed, so no record points at a
//! torn file; each record carries a checksum of its bytes and each body file's checksum is in
//! its record, so damage on disk is dropped, never served whole.
//!
//! It owns no policy: what it stores was stored in memory first, and freshness is decided as
//! for any stored object when it comes back. Its calls block (file I/O): call them from a
//! blocking thread. This is the first step of issue 14: `Store::with_disk` puts it under the memory store.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::policy::PackedPolicy;
use crate::store::StoredObject;

/// Primary key to the record of all its variants, checksum last.
const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records-2");
/// Primary key to its entry in the index (write order, size, tags, body files).
const INDEX: TableDefinition<&str, &[u8]> = TableDefinition::new("index-2");
/// The tables of the first format (bodies always inline), dropped at open.
const OLD_TABLES: [&str; 2] = ["records", "index"];

/// Bodies up to this size are kept inside their record (and promoted to memory on a hit);
/// larger ones get a file of their own and are streamed from it.
pub const INLINE_MAX: usize = 64 * 1024;

/// redb's page cache per node.
const REDB_CACHE_BYTES: usize = 8 << 20;

/// Why the disk tier failed: always the node's own disk, never a peer.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("disk cache {path}: {source}")]
    Open { path: String, source: redb::Error },
    #[error("disk cache: {0}")]
    Io(#[from] redb::Error),
    #[error("disk cache record does not encode: {0}")]
    Encode(#[from] postcard::Error),
    #[error("disk cache body file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
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
    tags: Box<[String]>,
    /// The body files its variants use.
    files: Box<[String]>,
    /// Under a `keep` prefix: never dropped to make room.
    pinned: bool,
}

/// A body kept in a file of its own: the file's name in the bodies directory, its length and
/// its checksum (xxh3).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct FileRef {
    name: String,
    length: u64,
    sum: u64,
}

/// Where a body stored on disk is, for the response that streams it.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskBody {
    pub path: std::path::PathBuf,
    pub length: u64,
    /// xxh3 of the whole body, checked as it is streamed.
    pub sum: u64,
}

/// One variant as written.
#[derive(Debug, Serialize, Deserialize)]
struct DiskVariant {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    /// The body, unless it is in a file.
    body: Vec<u8>,
    file: Option<FileRef>,
    /// The reuse policy in the form memory keeps it (milliseconds).
    policy: PackedPolicy,
    vary: Vec<String>,
    variant: String,
}

/// Milliseconds since the epoch.
fn ms(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl DiskVariant {
    /// The record of `object`, its body inline or in the file `file`.
    fn of(object: &Arc<StoredObject>, file: Option<FileRef>) -> Self {
        Self {
            status: object.status().as_u16(),
            headers: object
                .header_map()
                .iter()
                .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
                .collect(),
            body: if file.is_some() {
                Vec::new()
            } else {
                object.body_slice().to_vec()
            },
            file,
            policy: PackedPolicy::pack(&object.policy()),
            vary: object
                .vary()
                .iter()
                .map(|n| n.as_str().to_owned())
                .collect(),
            variant: object.variant().to_owned(),
        }
    }

    /// The object of `key` again, its body in `bodies` when it has a file; `None` when a name
    /// or value no longer parses (never written so).
    fn object(self, key: &str, bodies: &Path) -> Option<StoredObject> {
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
        let policy = self.policy.unpack();
        let object = StoredObject::new(
            key,
            StatusCode::from_u16(self.status).ok()?,
            headers,
            Bytes::from(self.body),
            policy,
            vary,
            self.variant,
        )
        .with_disk_body(self.file.map(|file| DiskBody {
            path: bodies.join(&file.name),
            length: file.length,
            sum: file.sum,
        }));
        Some(object)
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
    /// One allocation per key, shared by both maps: the index is memory beyond the cache's
    /// capacity, one entry per record on disk.
    entries: HashMap<Arc<str>, IndexEntry>,
    by_sequence: BTreeMap<u64, Arc<str>>,
    bytes: u64,
    next: u64,
    /// Body files named in this run.
    names: u64,
}

impl Index {
    fn next_name(&mut self) -> u64 {
        self.names += 1;
        self.names
    }

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
        let key: Arc<str> = key.into();
        self.by_sequence.insert(entry.sequence, key.clone());
        self.entries.insert(key, entry);
    }
}

/// What [`DiskTier::take`] found.
#[derive(Debug)]
pub enum DiskLookup {
    /// Variants with inline bodies, taken off the disk (they go back to memory).
    Found(Vec<Arc<StoredObject>>),
    /// Variants whose bodies are files ([`StoredObject::disk_body`]): they stay on disk and
    /// are served from there.
    OnDisk(Vec<Arc<StoredObject>>),
    /// A record whose checksum failed, or whose body file is gone or the wrong size: dropped.
    Damaged,
    Miss,
}

/// One key's record for [`DiskTier::put_many`]: the key, its variants, and whether it is
/// pinned (never dropped to make room).
pub type Write<'a> = (&'a str, &'a [Arc<StoredObject>], bool);

/// One node's disk cache.
pub struct DiskTier {
    db: redb::Database,
    /// The body files.
    bodies: std::path::PathBuf,
    capacity: u64,
    index: Mutex<Index>,
    /// When this run opened the tier (ms since the epoch): with a counter, body file names
    /// are never reused, so a file being written never has the name of one being read.
    run: u64,
}

impl DiskTier {
    /// Opens (or creates) the disk cache at `path` (its body files in `path` with the
    /// extension `bodies`), at most `capacity` bytes of records and bodies, reads its index
    /// back and deletes the body files no record names.
    pub fn open(path: &Path, capacity: u64) -> Result<Self, DiskError> {
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let bodies = path.with_extension("bodies");
        std::fs::create_dir_all(&bodies).map_err(|source| DiskError::File {
            path: bodies.display().to_string(),
            source,
        })?;
        // Records are small (bodies over INLINE_MAX are files): a small page cache is enough,
        // and it counts against the node's memory.
        let db = redb::Builder::new()
            .set_cache_size(REDB_CACHE_BYTES)
            .create(path)
            .map_err(|source| DiskError::Open {
                path: path.display().to_string(),
                source: source.into(),
            })?;
        let write = db.begin_write()?;
        for old in OLD_TABLES {
            let _ = write.delete_table(TableDefinition::<&str, &[u8]>::new(old));
        }
        write.commit()?;
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
        let named: std::collections::HashSet<&str> = index
            .entries
            .values()
            .flat_map(|e| e.files.iter().map(String::as_str))
            .collect();
        if let Ok(entries) = std::fs::read_dir(&bodies) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                if !name.to_str().is_some_and(|n| named.contains(n)) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(Self {
            db,
            bodies,
            capacity,
            index: Mutex::new(index),
            run: ms(SystemTime::now()),
        })
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `key` has a record (the in-memory index; no I/O).
    pub fn contains(&self, key: &str) -> bool {
        self.index().entries.contains_key(key)
    }

    /// Whether `key` has a pinned record (no I/O).
    pub fn pinned(&self, key: &str) -> bool {
        self.index().entries.get(key).is_some_and(|e| e.pinned)
    }

    /// Keys and bytes on disk.
    pub fn usage(&self) -> (usize, u64) {
        let index = self.index();
        (index.entries.len(), index.bytes)
    }

    /// Writes every variant of `key`, replacing what was there, then makes room by dropping
    /// the oldest records. A record larger than the whole disk cache is not written.
    pub fn put(&self, key: &str, variants: &[Arc<StoredObject>]) -> Result<bool, DiskError> {
        Ok(self.put_many(&[(key, variants, false)])? == 1)
    }

    /// Writes several keys' records in one transaction (one sync of the database for all);
    /// returns how many were written. Body files are written and synced first.
    pub fn put_many(&self, writes: &[Write<'_>]) -> Result<usize, DiskError> {
        // A key written twice in one batch: only its last write counts.
        let mut last = HashMap::new();
        for (i, (key, _, _)) in writes.iter().enumerate() {
            last.insert(*key, i);
        }
        let mut prepared = Vec::with_capacity(writes.len());
        for (i, (key, variants, pinned)) in writes.iter().enumerate() {
            if last.get(key) != Some(&i) {
                continue;
            }
            // A pinned record stays pinned when a newer copy replaces it.
            let pinned = *pinned || self.pinned(key);
            match self.prepare(key, variants, pinned) {
                Ok(Some(record)) => prepared.push(record),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, key, "not written to disk");
                }
            }
        }
        if prepared.is_empty() {
            return Ok(0);
        }
        let mut index = self.index();
        for (i, (_, _, entry)) in prepared.iter_mut().enumerate() {
            entry.sequence = index.next + i as u64;
        }
        let mut dropped: Vec<String> = Vec::new();
        let mut bytes = index.bytes;
        for (key, _, entry) in &prepared {
            bytes = bytes + entry.size - index.entries.get(key.as_str()).map_or(0, |e| e.size);
        }
        let writing: std::collections::HashSet<&str> =
            prepared.iter().map(|(k, _, _)| k.as_str()).collect();
        for (_, oldest) in index.by_sequence.iter() {
            if bytes <= self.capacity {
                break;
            }
            let entry = &index.entries[oldest];
            if !writing.contains(&**oldest) && !entry.pinned {
                bytes -= entry.size;
                dropped.push(oldest.to_string());
            }
        }
        if bytes > self.capacity {
            // Pinned records fill the disk: nothing is written until a purge makes room.
            drop(index);
            for (key, _, entry) in &prepared {
                tracing::warn!(key, "disk tier full of kept objects: not written");
                self.delete_files(&entry.files);
            }
            return Ok(0);
        }
        let committed = (|| -> Result<(), DiskError> {
            let write = self.db.begin_write()?;
            {
                let mut records = write.open_table(RECORDS)?;
                let mut table = write.open_table(INDEX)?;
                for old in &dropped {
                    records.remove(old.as_str())?;
                    table.remove(old.as_str())?;
                }
                for (key, record, entry) in &prepared {
                    records.insert(key.as_str(), record.as_slice())?;
                    table.insert(key.as_str(), postcard::to_allocvec(entry)?.as_slice())?;
                }
            }
            write.commit()?;
            Ok(())
        })();
        if let Err(error) = committed {
            // Body files no record will name.
            for (_, _, entry) in &prepared {
                self.delete_files(&entry.files);
            }
            return Err(error);
        }
        let mut unused = Vec::new();
        for old in &dropped {
            if let Some(entry) = index.remove(old) {
                unused.extend(entry.files);
            }
        }
        let written = prepared.len();
        for (key, _, entry) in prepared {
            if let Some(replaced) = index.entries.get(key.as_str()) {
                unused.extend(replaced.files.iter().cloned());
            }
            index.add(key, entry);
        }
        drop(index);
        self.delete_files(&unused);
        Ok(written)
    }

    /// The sealed record and index entry of one key, its large bodies written to their files;
    /// `None` when it is larger than the whole disk cache.
    fn prepare(
        &self,
        key: &str,
        variants: &[Arc<StoredObject>],
        pinned: bool,
    ) -> Result<Option<(String, Vec<u8>, IndexEntry)>, DiskError> {
        let total: u64 = variants.iter().map(|o| o.body_slice().len() as u64).sum();
        if total > self.capacity {
            return Ok(None);
        }
        let number = self.index().next_name();
        let mut files = Vec::new();
        let mut encoded = Vec::with_capacity(variants.len());
        for (i, object) in variants.iter().enumerate() {
            let file = if object.body_slice().len() > INLINE_MAX {
                let name = format!("{:012x}-{number:x}-{i}", self.run);
                match self.write_file(&name, object.body_slice()) {
                    Ok(file) => {
                        files.push(name);
                        Some(file)
                    }
                    Err(error) => {
                        self.delete_files(&files);
                        return Err(error);
                    }
                }
            } else {
                None
            };
            encoded.push(DiskVariant::of(object, file));
        }
        let record = seal(&encoded)?;
        let size = (record.len() + key.len()) as u64
            + encoded
                .iter()
                .filter_map(|v| v.file.as_ref().map(|f| f.length))
                .sum::<u64>();
        if size > self.capacity {
            self.delete_files(&files);
            return Ok(None);
        }
        let entry = IndexEntry {
            sequence: 0,
            size,
            tags: variants
                .iter()
                .flat_map(|o| o.tags().iter().cloned())
                .collect::<Vec<_>>()
                .into(),
            files: files.into(),
            pinned,
        };
        Ok(Some((key.to_owned(), record, entry)))
    }

    /// Writes one body file: under a temporary name, synced, then renamed, so the name only
    /// ever holds a whole body.
    fn write_file(&self, name: &str, body: &[u8]) -> Result<FileRef, DiskError> {
        use std::io::Write as _;
        let path = self.bodies.join(name);
        if path.exists() {
            // Never over a file a record may name (a clock that went back, say).
            return Err(DiskError::File {
                path: path.display().to_string(),
                source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            });
        }
        let temporary = self.bodies.join(format!("{name}.tmp"));
        let failed = |source| DiskError::File {
            path: path.display().to_string(),
            source,
        };
        let mut file = std::fs::File::create(&temporary).map_err(failed)?;
        file.write_all(body)
            .and_then(|()| file.sync_data())
            .and_then(|()| std::fs::rename(&temporary, &path))
            .map_err(|source| {
                let _ = std::fs::remove_file(&temporary);
                failed(source)
            })?;
        Ok(FileRef {
            name: name.to_owned(),
            length: body.len() as u64,
            sum: xxhash_rust::xxh3::xxh3_64(body),
        })
    }

    fn delete_files(&self, names: &[String]) {
        for name in names {
            let _ = std::fs::remove_file(self.bodies.join(name));
        }
    }

    /// `key`'s variants: those with inline bodies are taken off the disk (they go back to
    /// memory); those with body files stay and are served from them. A damaged record, or one
    /// whose body file is missing or the wrong size, is removed and reported, never returned.
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
        let Some(sealed) = sealed else {
            self.remove(&[key.to_owned()])?;
            return Ok(DiskLookup::Miss);
        };
        let objects = open(&sealed).and_then(|variants| {
            variants
                .into_iter()
                .map(|v| v.object(key, &self.bodies).map(Arc::new))
                .collect::<Option<Vec<_>>>()
        });
        let objects = match objects {
            Some(objects) if !objects.is_empty() => objects,
            _ => {
                self.remove(&[key.to_owned()])?;
                return Ok(DiskLookup::Damaged);
            }
        };
        if !objects.iter().any(|o| o.disk_body().is_some()) {
            // A pinned record stays on disk while memory holds a copy too.
            if !self.pinned(key) {
                self.remove(&[key.to_owned()])?;
            }
            return Ok(DiskLookup::Found(objects));
        }
        let whole = objects
            .iter()
            .filter_map(|o| o.disk_body())
            .all(|body| std::fs::metadata(&body.path).is_ok_and(|m| m.len() == body.length));
        if !whole {
            self.remove(&[key.to_owned()])?;
            return Ok(DiskLookup::Damaged);
        }
        Ok(DiskLookup::OnDisk(objects))
    }

    /// Removes `keys` (and their body files); returns how many were there.
    pub fn remove(&self, keys: &[String]) -> Result<u64, DiskError> {
        let mut index = self.index();
        let present: Vec<&String> = keys
            .iter()
            .filter(|k| index.entries.contains_key(k.as_str()))
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
        let mut unused = Vec::new();
        for key in &present {
            if let Some(entry) = index.remove(key) {
                unused.extend(entry.files);
            }
        }
        drop(index);
        self.delete_files(&unused);
        Ok(present.len() as u64)
    }

    /// Removes every key whose target (path and query) is `target`, under any host.
    pub fn purge_target(&self, target: &str) -> Result<u64, DiskError> {
        let keys: Vec<String> = self
            .index()
            .entries
            .keys()
            .filter(|key| key.find('/').is_some_and(|slash| &key[slash..] == target))
            .map(|key| key.to_string())
            .collect();
        self.remove(&keys)
    }

    /// Removes every key.
    pub fn purge_all(&self) -> Result<u64, DiskError> {
        let keys: Vec<String> = self.index().entries.keys().map(|k| k.to_string()).collect();
        self.remove(&keys)
    }

    /// Removes every key with a variant tagged `tag`.
    pub fn purge_tag(&self, tag: &str) -> Result<u64, DiskError> {
        let keys: Vec<String> = self
            .index()
            .entries
            .iter()
            .filter(|(_, entry)| entry.tags.iter().any(|t| t == tag))
            .map(|(key, _)| key.to_string())
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
    use crate::freshness::Timing;
    use crate::policy::StoredPolicy;
    use std::time::Duration;

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
            "a.test/x",
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
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(first.body(), "gzip body");
        assert_eq!(first.variant(), "gzip");
        assert_eq!(first.vary(), [http::header::ACCEPT_ENCODING]);
        assert_eq!(first.tags(), ["t1".to_owned()]);
        let headers = first.header_map();
        assert_eq!(headers.get_all("x-two").iter().count(), 2);
        assert_eq!(first.policy().timing, variants[0].policy().timing);
        assert_eq!(first.policy().lifetime, Duration::from_secs(60));
        assert!(first.policy().allows_authorization);
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
        assert_eq!(
            found(disk.take("a.test/4").unwrap())[0].body(),
            body.as_str()
        );
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
        assert_eq!(found(disk.take("a.test/r").unwrap())[0].body(), "4");
    }

    fn body_files(dir: &Path) -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    #[test]
    fn large_bodies_live_in_files_that_stay_on_disk_and_go_with_their_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edge.redb");
        let bodies = dir.path().join("edge.bodies");
        let large = "L".repeat(INLINE_MAX + 1);
        {
            let disk = DiskTier::open(&path, 1 << 20).unwrap();
            assert!(
                disk.put("a.test/large", &[object(&large, "t", "")])
                    .unwrap()
            );
            assert!(
                disk.put("a.test/small", &[object("small", "t", "")])
                    .unwrap()
            );
            assert_eq!(
                body_files(&bodies).len(),
                1,
                "only the large body has a file"
            );
            let DiskLookup::OnDisk(objects) = disk.take("a.test/large").unwrap() else {
                panic!("a body in a file is served from disk");
            };
            let body = objects[0].disk_body().cloned().unwrap();
            assert!(objects[0].body().is_empty());
            assert_eq!(body.length, large.len() as u64);
            assert_eq!(std::fs::read(&body.path).unwrap(), large.as_bytes());
            assert_eq!(body.sum, xxhash_rust::xxh3::xxh3_64(large.as_bytes()));
            assert!(disk.contains("a.test/large"), "it stays on disk");
            // A write cut short by a crash leaves a file no record names.
            std::fs::write(bodies.join("left-over.tmp"), "torn").unwrap();
        }
        let disk = DiskTier::open(&path, 1 << 20).unwrap();
        assert_eq!(
            body_files(&bodies).len(),
            1,
            "files no record names are deleted at open"
        );
        assert!(matches!(
            disk.take("a.test/large").unwrap(),
            DiskLookup::OnDisk(_)
        ));
        // Replacing the record replaces its file; removing it removes the file.
        assert!(
            disk.put("a.test/large", &[object(&large, "t", "")])
                .unwrap()
        );
        assert_eq!(body_files(&bodies).len(), 1);
        assert_eq!(disk.purge_tag("t").unwrap(), 2);
        assert!(body_files(&bodies).is_empty());
    }

    #[test]
    fn a_body_file_gone_or_cut_short_drops_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskTier::open(&dir.path().join("edge.redb"), 1 << 20).unwrap();
        let large = "L".repeat(INLINE_MAX * 2);
        disk.put("a.test/x", &[object(&large, "t", "")]).unwrap();
        let file = body_files(&dir.path().join("edge.bodies")).remove(0);
        std::fs::write(&file, &large[..100]).unwrap();
        assert!(matches!(
            disk.take("a.test/x").unwrap(),
            DiskLookup::Damaged
        ));
        assert!(!disk.contains("a.test/x"));
        assert_eq!(disk.usage(), (0, 0));
    }

    #[test]
    fn a_key_twice_in_one_batch_counts_once() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskTier::open(&dir.path().join("edge.redb"), 1 << 20).unwrap();
        let large = [object(&"L".repeat(500_000), "t", "")];
        let small = [object("s", "t", "")];
        disk.put("a.test/k", &large).unwrap();
        let writes: Vec<Write<'_>> = vec![("a.test/k", &small, false), ("a.test/k", &small, false)];
        assert_eq!(disk.put_many(&writes).unwrap(), 1);
        let (keys, bytes) = disk.usage();
        assert_eq!(keys, 1);
        assert!(bytes < 1_000, "{bytes}");
    }

    #[test]
    fn a_batch_is_written_in_one_go_and_counts_bodies_against_the_capacity() {
        let dir = tempfile::tempdir().unwrap();
        // Room for three large bodies, not four.
        let disk = DiskTier::open(
            &dir.path().join("edge.redb"),
            3 * (INLINE_MAX as u64 + 2_000),
        )
        .unwrap();
        let large = "L".repeat(INLINE_MAX + 1);
        let objects: Vec<Vec<Arc<StoredObject>>> =
            (0..4).map(|_| vec![object(&large, "t", "")]).collect();
        let keys: Vec<String> = (0..4).map(|i| format!("a.test/{i}")).collect();
        let writes: Vec<Write<'_>> = keys
            .iter()
            .zip(&objects)
            .take(2)
            .map(|(k, o)| (k.as_str(), o.as_slice(), false))
            .collect();
        assert_eq!(disk.put_many(&writes).unwrap(), 2);
        let writes: Vec<Write<'_>> = keys
            .iter()
            .zip(&objects)
            .skip(2)
            .map(|(k, o)| (k.as_str(), o.as_slice(), false))
            .collect();
        assert_eq!(disk.put_many(&writes).unwrap(), 2);
        assert_eq!(disk.usage().0, 3, "the oldest made room");
        assert!(!disk.contains("a.test/0"));
        assert_eq!(body_files(&dir.path().join("edge.bodies")).len(), 3);
    }
}
