//! Cached objects in memory (quick_cache), weighted by size, with every variant of a key kept
//! together so a purge by URL removes them all.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use http::HeaderMap;
use http::header::HeaderName;
use quick_cache::sync::EntryAction;

use crate::disk::{DiskLookup, DiskTier};
use crate::key::{self, CacheKey};
use crate::metrics::DiskMetrics;
pub use crate::stored_object::StoredObject;

/// What the store holds for one primary key.
#[derive(Debug, Clone)]
enum Entry {
    /// The one object of a key whose response does not vary: most keys.
    One(Arc<StoredObject>),
    /// Every stored variant of a key whose responses vary.
    Varied(Arc<Variants>),
}

/// Every stored variant of one primary key. They all vary on the same fields (a response that
/// changes Vary drops the older variants), so a request's secondary key is computed once.
#[derive(Debug)]
struct Variants {
    vary: Vec<HeaderName>,
    objects: Vec<Arc<StoredObject>>,
}

impl Entry {
    /// The entry for these variants of one key (all with the same Vary); `None` for none.
    fn of(mut objects: Vec<Arc<StoredObject>>) -> Option<Self> {
        let first = objects.first()?;
        if first.vary().is_empty() && objects.len() == 1 {
            return objects.pop().map(Entry::One);
        }
        let vary = first.vary().to_vec();
        // Exactly as many slots as variants.
        objects.shrink_to_fit();
        Some(Entry::Varied(Arc::new(Variants { vary, objects })))
    }

    fn objects(&self) -> &[Arc<StoredObject>] {
        match self {
            Entry::One(object) => std::slice::from_ref(object),
            Entry::Varied(variants) => &variants.objects,
        }
    }

    /// The primary key this entry is stored under.
    fn key(&self) -> &str {
        self.objects().first().map_or("", |o| o.key())
    }

    /// Whether this entry is `key`'s, not another key's whose hash is the same.
    fn is_for(&self, key: &str) -> bool {
        self.key() == key
    }

    fn weight(&self) -> u64 {
        let objects: u64 = self.objects().iter().map(|o| o.weight()).sum();
        let variants = match self {
            Entry::One(_) => 0,
            Entry::Varied(v) => {
                std::mem::size_of::<Variants>() + 16 + v.vary.len() * 16 + v.objects.len() * 8
            }
        };
        // Never 0: quick_cache keeps weightless entries forever.
        (objects + (ENTRY_OVERHEAD + variants) as u64).max(1)
    }
}

/// Weighs an entry in bytes, for quick_cache.
#[derive(Debug, Clone, Copy)]
struct ByWeight;

impl quick_cache::Weighter<u64, Entry> for ByWeight {
    fn weight(&self, _: &u64, entry: &Entry) -> u64 {
        entry.weight()
    }
}

/// What one key costs besides its objects: quick_cache's slot and index for it (about 60
/// bytes), and the allocator's rounding of the key and header block up to a size class and
/// its partly used pages (about 35). Measured by `store::resident` (run by bench/memory.sh):
/// resident bytes per object minus what the objects themselves count, so that the capacity
/// bounds resident memory, not only the bytes of bodies and headers.
const ENTRY_OVERHEAD: usize = 96;

/// What a lookup found.
pub enum Lookup {
    Found(Arc<StoredObject>),
    /// The key is stored, but not the variant this request selects.
    VaryMiss,
    Miss,
}

/// Taken when a fill starts; the fill may store what it fetched only if no purge of its key
/// (and no purge by tag or path) came in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillTicket {
    slot: usize,
    generation: u64,
    scans: u64,
}

/// Purge generations: per key (striped over a fixed number of slots, so memory does not grow
/// with keys), and one for purges that scan the store (by tag or path), whose keys a fill in
/// progress cannot know yet.
struct Generations {
    slots: Box<[std::sync::Mutex<u64>]>,
    scans: std::sync::RwLock<u64>,
    /// The same counts, readable without a lock: the eviction hook runs inside an insert that
    /// holds the locks above, so it reads these.
    seen_slots: Box<[AtomicU64]>,
    seen_scans: AtomicU64,
    hasher: crate::key::KeyHasher,
}

const GENERATION_SLOTS: usize = 1024;

impl Generations {
    fn new() -> Self {
        Self {
            slots: (0..GENERATION_SLOTS)
                .map(|_| std::sync::Mutex::new(0))
                .collect(),
            scans: std::sync::RwLock::new(0),
            seen_slots: (0..GENERATION_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            seen_scans: AtomicU64::new(0),
            hasher: crate::key::KeyHasher::default(),
        }
    }

    /// The keyed hash of `key`: what the map is indexed by, and which generation slot counts
    /// its purges.
    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash(key)
    }

    fn slot_of(&self, key: &str) -> usize {
        (self.hash(key) % GENERATION_SLOTS as u64) as usize
    }

    fn slot(&self, index: usize) -> std::sync::MutexGuard<'_, u64> {
        self.slots[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn scans(&self) -> std::sync::RwLockReadGuard<'_, u64> {
        self.scans
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Body bytes evicted from memory and waiting for the disk writer, at most: a quarter of the
/// memory capacity, between 4 and 64 MiB (it is memory beyond the capacity).
fn max_queued_for_disk(capacity_bytes: u64) -> u64 {
    (capacity_bytes / 4).clamp(4 << 20, 64 << 20)
}

/// Evictions the disk writer commits in one transaction, at most.
const DISK_BATCH: usize = 64;

/// A write for the disk writer: the key, its variants, the purge generation when memory let
/// it go (or stored it), and whether it is pinned (under a `keep` prefix).
type Evicted = (Arc<str>, Vec<Arc<StoredObject>>, FillTicket, bool);

/// The variants fit to go to disk: a soft-purged one must not come back fresh, so it stays
/// out (a record keeps no purge mark).
fn unpurged(objects: &[Arc<StoredObject>]) -> Vec<Arc<StoredObject>> {
    objects
        .iter()
        .filter(|o| o.purged_at().is_none())
        .cloned()
        .collect()
}

/// The way to the disk writer, bounded in bytes waiting.
struct DiskQueue {
    sender: std::sync::Mutex<std::sync::mpsc::Sender<Evicted>>,
    queued: Arc<AtomicU64>,
    max: u64,
}

impl DiskQueue {
    /// Hands a write to the writer, unless too much is waiting already.
    fn offer(&self, write: Evicted, metrics: &DiskMetrics) {
        let bytes: u64 = write.1.iter().map(|o| o.body_slice().len() as u64).sum();
        if self.queued.load(Ordering::Relaxed) + bytes > self.max {
            tracing::debug!(key = &*write.0, bytes, "disk writer behind: not written");
            metrics.skipped.inc();
            return;
        }
        self.queued.fetch_add(bytes, Ordering::Relaxed);
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        let _ = sender.send(write);
    }
}

/// The disk tier under a store, and the thread that writes what memory evicts to it.
struct DiskSide {
    tier: Arc<DiskTier>,
    metrics: DiskMetrics,
    /// Held while the writer checks an eviction's ticket and writes it, while a promotion
    /// reads, and while a purge removes: so nothing purged is written or promoted after it.
    lock: std::sync::Mutex<()>,
}

impl DiskSide {
    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The size gauges, after a change.
    fn report(&self) {
        let (records, bytes) = self.tier.usage();
        self.metrics
            .records
            .set(i64::try_from(records).unwrap_or(i64::MAX));
        self.metrics
            .bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
}

/// What a promotion from disk did.
#[derive(Debug)]
pub enum Promotion {
    /// The key's variants, handed to memory again (which may not keep them: then they go
    /// back to disk) and to the request that asked, which serves from these.
    Promoted(Vec<Arc<StoredObject>>),
    /// The key's variants with their bodies in files: served from disk, kept there.
    OnDisk(Vec<Arc<StoredObject>>),
    /// A damaged record was found and dropped.
    Damaged,
    /// Nothing on disk, or purged meanwhile, or the disk failed (logged).
    None,
}

/// A ticket for `key` as of now (see [`Store::insert_unless_purged`]).
fn ticket_of(generations: &Generations, key: &str) -> FillTicket {
    let slot = generations.slot_of(key);
    let scans = *generations.scans();
    let generation = *generations.slot(slot);
    FillTicket {
        slot,
        generation,
        scans,
    }
}

/// A ticket for `key` read without locks, for the eviction listener.
fn peek_ticket(generations: &Generations, key: &str) -> FillTicket {
    let slot = generations.slot_of(key);
    FillTicket {
        slot,
        generation: generations.seen_slots[slot].load(Ordering::SeqCst),
        scans: generations.seen_scans.load(Ordering::SeqCst),
    }
}

/// Whether no purge of the ticket's key (nor any scanning purge) came since it was taken,
/// read without locks; a purge counts before it removes anything from the disk.
fn still_valid(generations: &Generations, ticket: FillTicket) -> bool {
    generations.seen_scans.load(Ordering::SeqCst) == ticket.scans
        && generations.seen_slots[ticket.slot].load(Ordering::SeqCst) == ticket.generation
}

/// The memory store's map: keys to entries, weighed in bytes, evicting through [`Evictions`].
type Objects =
    quick_cache::sync::Cache<u64, Entry, ByWeight, quick_cache::DefaultHashBuilder, Evictions>;

/// Where what memory evicts for room goes: to the disk writer, when there is a disk tier.
#[derive(Clone)]
struct Evictions(Option<Arc<ToDisk>>);

struct ToDisk {
    generations: Arc<Generations>,
    side: Arc<DiskSide>,
    queue: Arc<DiskQueue>,
}

impl quick_cache::Lifecycle<u64, Entry> for Evictions {
    type RequestState = ();

    fn begin_request(&self) {}

    /// Runs inside the insert that made room (under the map's lock): it only hands the
    /// variants to the writer's queue.
    fn on_evict(&self, _: &mut (), _: u64, entry: Entry) {
        let Some(to_disk) = &self.0 else {
            return;
        };
        let key: Arc<str> = entry.key().into();
        // A kept key is on disk already.
        if to_disk.side.tier.pinned(&key) {
            return;
        }
        let objects = unpurged(entry.objects());
        if objects.is_empty() {
            return;
        }
        let ticket = peek_ticket(&to_disk.generations, &key);
        to_disk
            .queue
            .offer((key, objects, ticket, false), &to_disk.side.metrics);
    }
}

/// How many objects the map makes room for at first (it grows past that): the capacity over a
/// typical small object.
fn estimated_items(capacity_bytes: u64) -> usize {
    usize::try_from(capacity_bytes / 4096)
        .unwrap_or(usize::MAX)
        .clamp(1024, 1 << 20)
}

/// The map's shards: more shards, fewer writers waiting on one lock, but each shard holds a
/// share of the capacity and no object larger than about that share. So: as many as there are
/// room for two of the largest objects in each, at most four per core, a power of two.
fn shards(capacity_bytes: u64, max_object_bytes: u64) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let room = usize::try_from(capacity_bytes / max_object_bytes.max(1).saturating_mul(2))
        .unwrap_or(usize::MAX);
    let wanted = room.clamp(1, cores * 4);
    // The largest power of two not above it.
    1 << wanted.ilog2()
}

/// The in-memory object store of one node, over an optional disk tier.
#[derive(Clone)]
pub struct Store {
    objects: Arc<Objects>,
    generations: Arc<Generations>,
    disk: Option<Arc<DiskSide>>,
    queue: Option<Arc<DiskQueue>>,
    /// Path prefixes whose objects go to disk as soon as they are stored, pinned there.
    keep: Arc<Vec<String>>,
    /// Most variants kept per primary key; the least recently used goes first.
    max_variants: usize,
    started: std::time::Instant,
}

impl Store {
    /// A store holding up to `capacity_bytes` of objects (bodies plus headers), and at most
    /// `max_variants` variants of one key.
    #[cfg(test)]
    pub fn new(capacity_bytes: u64, max_variants: usize) -> Self {
        Self::with_disk(
            capacity_bytes,
            max_variants,
            capacity_bytes / 2,
            None,
            DiskMetrics::default(),
        )
    }

    /// A store as [`Store::new`], over `disk`: what memory evicts for room is written there
    /// by a thread of its own, and a memory miss can be promoted back from it.
    pub fn with_disk(
        capacity_bytes: u64,
        max_variants: usize,
        max_object_bytes: u64,
        disk: Option<DiskTier>,
        metrics: DiskMetrics,
    ) -> Self {
        let generations = Arc::new(Generations::new());
        let disk = disk.map(|tier| {
            let side = DiskSide {
                tier: Arc::new(tier),
                metrics,
                lock: std::sync::Mutex::new(()),
            };
            side.report();
            Arc::new(side)
        });
        let mut evictions = None;
        let mut queue = None;
        if let Some(side) = &disk {
            let (sender, receiver) = std::sync::mpsc::channel::<Evicted>();
            // Bytes waiting for the writer: past the bound, evictions are not written (a slow
            // disk must not make memory grow without limit).
            let queued = Arc::new(AtomicU64::new(0));
            let disk_queue = Arc::new(DiskQueue {
                sender: std::sync::Mutex::new(sender),
                queued: queued.clone(),
                max: max_queued_for_disk(capacity_bytes),
            });
            queue = Some(disk_queue.clone());
            evictions = Some(Arc::new(ToDisk {
                generations: generations.clone(),
                side: side.clone(),
                queue: disk_queue,
            }));
            let side = side.clone();
            let writer_generations = generations.clone();
            let spawned = std::thread::Builder::new()
                .name("outpost-disk-writer".into())
                .spawn(move || {
                    while let Ok(first) = receiver.recv() {
                        // What else is waiting goes in the same transaction.
                        let mut batch = vec![first];
                        while batch.len() < DISK_BATCH {
                            match receiver.try_recv() {
                                Ok(next) => batch.push(next),
                                Err(_) => break,
                            }
                        }
                        let bytes: u64 = batch
                            .iter()
                            .flat_map(|(_, objects, _, _)| objects.iter())
                            .map(|o| o.body_slice().len() as u64)
                            .sum();
                        {
                            let _guard = side.lock();
                            let writes: Vec<crate::disk::Write<'_>> = batch
                                .iter()
                                .filter(|(_, _, ticket, _)| still_valid(&writer_generations, *ticket))
                                .map(|(key, objects, _, pinned)| (&**key, objects.as_slice(), *pinned))
                                .collect();
                            match side.tier.put_many(&writes) {
                                Ok(written) => {
                                    side.metrics.writes.inc_by(written as u64);
                                }
                                Err(error) => {
                                    tracing::warn!(%error, keys = writes.len(), "evicted objects not written to disk");
                                }
                            }
                            side.report();
                        }
                        drop(batch);
                        queued.fetch_sub(bytes, Ordering::Relaxed);
                    }
                });
            if let Err(error) = spawned {
                tracing::error!(%error, "disk writer did not start");
            }
        }
        let options = quick_cache::OptionsBuilder::new()
            .weight_capacity(capacity_bytes)
            .estimated_items_capacity(estimated_items(capacity_bytes))
            .shards(shards(capacity_bytes, max_object_bytes))
            .build()
            .unwrap_or_else(|_| unreachable!("a weight capacity and an item estimate are set"));
        let objects = Objects::with_options(
            options,
            ByWeight,
            quick_cache::DefaultHashBuilder::default(),
            Evictions(evictions),
        );
        // Room for the expected number of objects from the start: grown by doubling, the map
        // would leave each smaller copy it outgrew to the allocator, about as much memory
        // again as its final size. Reserved, not touched: resident only as it fills.
        objects.reserve(estimated_items(capacity_bytes));
        Self {
            objects: Arc::new(objects),
            generations,
            disk,
            queue,
            keep: Arc::new(Vec::new()),
            max_variants: max_variants.max(1),
            started: std::time::Instant::now(),
        }
    }

    /// Objects under these path prefixes are written to disk as soon as they are stored, and
    /// kept there (pinned) until a purge or a newer copy replaces them.
    pub fn keeping(mut self, prefixes: &[String]) -> Self {
        self.keep = Arc::new(prefixes.to_vec());
        self
    }

    /// Whether `key`'s path is under a `keep` prefix.
    fn kept(&self, key: &CacheKey) -> bool {
        let key = key.as_str();
        let path = key.find('/').map_or("", |slash| &key[slash..]);
        self.keep
            .iter()
            .any(|prefix| path.starts_with(prefix.as_str()))
    }

    /// Whether the disk tier may hold `key` (an in-memory check, no I/O).
    pub fn on_disk(&self, key: &CacheKey) -> bool {
        self.disk
            .as_ref()
            .is_some_and(|d| d.tier.contains(key.as_str()))
    }

    /// Moves `key`'s variants from disk back to memory, unless a purge comes in between, or
    /// hands out those whose bodies stay in files. Blocks on file I/O: call it from a
    /// blocking thread.
    pub fn promote(&self, key: &CacheKey) -> Promotion {
        let Some(side) = &self.disk else {
            return Promotion::None;
        };
        let (ticket, found) = {
            let _guard = side.lock();
            (self.ticket(key), side.tier.take(key.as_str()))
        };
        match found {
            Ok(DiskLookup::Found(objects)) => {
                side.report();
                let mut stored = false;
                for object in &objects {
                    stored |= self.insert_unless_purged(key, object.clone(), ticket);
                }
                if stored {
                    Promotion::Promoted(objects)
                } else {
                    Promotion::None
                }
            }
            Ok(DiskLookup::OnDisk(objects)) => Promotion::OnDisk(objects),
            Ok(DiskLookup::Damaged) => {
                side.metrics.damaged.inc();
                side.report();
                Promotion::Damaged
            }
            Ok(DiskLookup::Miss) => Promotion::None,
            Err(error) => {
                tracing::warn!(%error, key = key.as_str(), "disk read failed");
                Promotion::None
            }
        }
    }

    /// Drops `key`'s record from the disk tier: its body file turned out damaged. Blocks on
    /// file I/O.
    pub fn drop_damaged(&self, key: &str) {
        if let Some(side) = &self.disk {
            let _guard = side.lock();
            if side.tier.remove(&[key.to_owned()]).is_ok_and(|n| n > 0) {
                side.metrics.damaged.inc();
                side.report();
            }
        }
    }

    /// Runs `remove` on the disk tier, if any, under its lock; the purged count.
    fn purge_disk(
        &self,
        remove: impl FnOnce(&DiskTier) -> Result<u64, crate::disk::DiskError>,
    ) -> u64 {
        let Some(side) = &self.disk else {
            return 0;
        };
        let removed = remove(&side.tier);
        side.report();
        match removed {
            Ok(n) => n,
            Err(error) => {
                tracing::error!(%error, "disk purge failed");
                0
            }
        }
    }

    /// The disk lock, for a purge to hold while it removes from memory and disk.
    fn disk_guard(&self) -> Option<std::sync::MutexGuard<'_, ()>> {
        self.disk.as_ref().map(|side| side.lock())
    }

    fn tick(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The variant of `objects` (every stored variant of one key, as a promotion from disk
    /// returns them) that `request` selects.
    pub fn select(objects: &[Arc<StoredObject>], request: &HeaderMap) -> Lookup {
        match objects.first() {
            None => Lookup::Miss,
            Some(first) if first.vary().is_empty() => Lookup::Found(first.clone()),
            Some(first) => {
                let wanted = key::variant_key(first.vary(), request);
                objects
                    .iter()
                    .find(|o| o.variant() == wanted)
                    .map_or(Lookup::VaryMiss, |o| Lookup::Found(o.clone()))
            }
        }
    }

    /// `key`'s entry. The map is indexed by a hash of the key: an entry under the same hash
    /// with another key (a collision) is not found, and the next store of either replaces it.
    fn entry_of(&self, key: &str) -> Option<Entry> {
        self.objects
            .get(&self.generations.hash(key))
            .filter(|entry| entry.is_for(key))
    }

    pub fn lookup(&self, key: &CacheKey, request: &HeaderMap) -> Lookup {
        match self.entry_of(key.as_str()) {
            None => Lookup::Miss,
            Some(Entry::One(object)) => Lookup::Found(object),
            Some(Entry::Varied(variants)) => {
                let wanted = key::variant_key(&variants.vary, request);
                match variants.objects.iter().find(|o| o.variant() == wanted) {
                    Some(object) => {
                        if variants.objects.len() > 1 {
                            object.touch(self.tick());
                        }
                        Lookup::Found(object.clone())
                    }
                    None => Lookup::VaryMiss,
                }
            }
        }
    }

    /// Stores `object`, replacing the variant with the same secondary key.
    pub fn insert(&self, key: &CacheKey, object: Arc<StoredObject>) {
        object.touch(self.tick());
        let max_variants = self.max_variants;
        let merged = |existing: Option<&Entry>| {
            let mut objects: Vec<Arc<StoredObject>> =
                existing.map(|e| e.objects().to_vec()).unwrap_or_default();
            // A changed Vary makes older variants unreachable: drop them.
            objects.retain(|o| o.vary() == object.vary() && o.variant() != object.variant());
            while objects.len() >= max_variants {
                let oldest = objects
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, o)| o.last_used())
                    .map_or(0, |(i, _)| i);
                objects.swap_remove(oldest);
            }
            objects.push(object.clone());
            Entry::of(objects)
        };
        let hash = self.generations.hash(key.as_str());
        // One step for the key: the variants read are the ones replaced (none when the hash's
        // entry is another key's).
        let replaced = self.objects.entry(&hash, None, |_, entry| {
            let existing = entry.is_for(key.as_str()).then_some(&*entry);
            match merged(existing) {
                Some(new) => *entry = new,
                None => return EntryAction::Remove,
            }
            EntryAction::Retain(())
        });
        if let quick_cache::sync::EntryResult::Vacant(guard) = replaced
            && let Some(new) = merged(None)
        {
            let _ = guard.insert(new);
        }
        if let (Some(queue), Some(side)) = (&self.queue, &self.disk)
            && self.kept(key)
            && let Some(entry) = self.entry_of(key.as_str())
        {
            let ticket = peek_ticket(&self.generations, key.as_str());
            let objects = unpurged(entry.objects());
            if !objects.is_empty() {
                queue.offer((key.shared(), objects, ticket, true), &side.metrics);
            }
        }
    }

    /// A ticket for a fill of `key` that starts now; see [`Store::insert_unless_purged`].
    pub fn ticket(&self, key: &CacheKey) -> FillTicket {
        ticket_of(&self.generations, key.as_str())
    }

    /// Stores `object` unless `key` was purged (or a purge by tag or path ran) since `ticket`
    /// was taken: then what was fetched may be exactly what the purge meant to remove. The
    /// check and the insert are one step for that key, so a racing purge either comes first
    /// (and nothing is stored) or removes what was stored. Returns whether it was stored.
    pub fn insert_unless_purged(
        &self,
        key: &CacheKey,
        object: Arc<StoredObject>,
        ticket: FillTicket,
    ) -> bool {
        let scans = self.generations.scans();
        let slot = self.generations.slot(ticket.slot);
        if *scans != ticket.scans || *slot != ticket.generation {
            return false;
        }
        self.insert(key, object);
        true
    }

    /// Removes (or, when `soft`, marks stale) every variant of `key`; a fill of `key` in
    /// progress will not store what it fetched. Returns how many.
    pub fn purge_key(&self, key: &CacheKey, soft: bool) -> u64 {
        let _disk = self.disk_guard();
        let index = self.generations.slot_of(key.as_str());
        let mut slot = self.generations.slot(index);
        *slot += 1;
        self.generations.seen_slots[index].store(*slot, Ordering::SeqCst);
        drop(slot);
        // On disk a purge always removes: a record keeps no soft-purge mark.
        let on_disk = self.purge_disk(|tier| tier.remove(&[key.as_str().to_owned()]));
        let Some(entry) = self.entry_of(key.as_str()) else {
            return on_disk;
        };
        if soft {
            let now = SystemTime::now();
            entry.objects().iter().for_each(|o| o.soft_purge(now));
        } else {
            self.objects
                .remove_if(&self.generations.hash(key.as_str()), |e| {
                    e.is_for(key.as_str())
                });
        }
        entry.objects().len() as u64
    }

    /// Purges every object whose key satisfies `matches` (a scan of the store).
    fn purge_where(&self, soft: bool, matches: impl Fn(&str, &StoredObject) -> bool) -> u64 {
        // Every fill in progress may bring a match: none of them stores. Anything stored
        // before this point is in the map for the scan to find.
        {
            let mut scans = self
                .generations
                .scans
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            *scans += 1;
            self.generations.seen_scans.store(*scans, Ordering::SeqCst);
        }
        let now = SystemTime::now();
        let mut purged = 0;
        for (hash, entry) in self.objects.iter() {
            let key = entry.key();
            let objects = entry.objects();
            let hits = objects.iter().filter(|o| matches(key, o)).count();
            if hits == 0 {
                continue;
            }
            purged += hits as u64;
            if soft {
                objects
                    .iter()
                    .filter(|o| matches(key, o))
                    .for_each(|o| o.soft_purge(now));
                continue;
            }
            let keep: Vec<Arc<StoredObject>> = objects
                .iter()
                .filter(|o| !matches(key, o))
                .cloned()
                .collect();
            match Entry::of(keep) {
                Some(kept) => {
                    self.objects.insert(hash, kept);
                }
                None => {
                    self.objects.remove(&hash);
                }
            }
        }
        purged
    }

    /// Purges `target` (path and query) under every host.
    pub fn purge_target(&self, target: &str, soft: bool) -> u64 {
        let _disk = self.disk_guard();
        let purged = self.purge_where(soft, |key, _| {
            key.find('/').is_some_and(|slash| &key[slash..] == target)
        });
        purged + self.purge_disk(|tier| tier.purge_target(target))
    }

    /// Purges every object.
    pub fn purge_all(&self, soft: bool) -> u64 {
        let _disk = self.disk_guard();
        let purged = self.purge_where(soft, |_, _| true);
        purged + self.purge_disk(|tier| tier.purge_all())
    }

    /// Purges every object tagged `tag` (Surrogate-Key / Cache-Tag).
    pub fn purge_tag(&self, tag: &str, soft: bool) -> u64 {
        let _disk = self.disk_guard();
        let purged = self.purge_where(soft, |_, object| object.tags().iter().any(|t| t == tag));
        purged + self.purge_disk(|tier| tier.purge_tag(tag))
    }

    /// Objects (variants) currently stored, and their total weight in bytes.
    #[cfg(test)]
    pub fn usage(&self) -> (u64, u64) {
        let objects = self
            .objects
            .iter()
            .map(|(_, entry)| entry.objects().len() as u64)
            .sum();
        (objects, self.objects.weight())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::StoredPolicy;
    use bytes::Bytes;
    use http::{HeaderValue, StatusCode};
    use std::time::Duration;

    fn object(
        key: &CacheKey,
        vary: &[HeaderName],
        request: &HeaderMap,
        body: &'static str,
        tags: &str,
    ) -> Arc<StoredObject> {
        let mut headers = HeaderMap::new();
        if !tags.is_empty() {
            headers.insert("surrogate-key", HeaderValue::from_str(tags).unwrap());
        }
        let policy = StoredPolicy::fresh_for(Duration::from_secs(60));
        Arc::new(StoredObject::new(
            key.as_str(),
            StatusCode::OK,
            headers,
            Bytes::from_static(body.as_bytes()),
            policy,
            vary.to_vec(),
            key::variant_key(vary, request),
        ))
    }

    #[test]
    fn what_memory_evicts_goes_to_disk_and_comes_back_and_purges_reach_it() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskTier::open(&dir.path().join("n.redb"), 64 << 20).unwrap();
        let store = Store::with_disk(1 << 20, 4, 1 << 20, Some(disk), DiskMetrics::default());
        let body: &'static str = Box::leak("b".repeat(300_000).into_boxed_str());
        let keys: Vec<CacheKey> = (0..8)
            .map(|i| CacheKey::new("a.test", &format!("/{i}")))
            .collect();
        for key in &keys {
            store.insert(key, object(key, &[], &HeaderMap::new(), body, "tag"));
        }
        let gone: Vec<&CacheKey> = keys
            .iter()
            .filter(|k| matches!(store.lookup(k, &HeaderMap::new()), Lookup::Miss))
            .collect();
        assert!(gone.len() >= 4, "1 MiB holds three of eight");
        // The writer thread runs beside.
        let wait = std::time::Instant::now();
        while gone.iter().any(|k| !store.on_disk(k)) && wait.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            gone.iter().all(|k| store.on_disk(k)),
            "every evicted key is on disk"
        );
        // Bodies this large stay in their files and are served from there.
        let Promotion::OnDisk(objects) = store.promote(gone[0]) else {
            panic!("not found on disk");
        };
        assert!(matches!(
            Store::select(&objects, &HeaderMap::new()),
            Lookup::Found(o) if o.disk_body().is_some_and(|b| b.length == 300_000)
        ));
        assert!(store.on_disk(gone[0]), "still on disk");
        // A purge by key and one by tag reach the disk.
        assert!(store.purge_key(gone[1], false) >= 1);
        assert!(!store.on_disk(gone[1]));
        assert!(matches!(store.promote(gone[1]), Promotion::None));
        store.purge_tag("tag", false);
        assert!(keys.iter().all(|k| !store.on_disk(k)));
    }

    fn lang(l: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("accept-language", HeaderValue::from_static(l));
        h
    }

    #[test]
    fn variants_live_side_by_side_and_purge_together() {
        let store = Store::new(1 << 20, 64);
        let key = CacheKey::new("a.test", "/x");
        let vary = [http::header::ACCEPT_LANGUAGE];
        store.insert(&key, object(&key, &vary, &lang("en"), "hello", "t1"));
        store.insert(&key, object(&key, &vary, &lang("fr"), "bonjour", "t2"));
        let Lookup::Found(en) = store.lookup(&key, &lang("en")) else {
            panic!("en missing")
        };
        assert_eq!(en.body(), "hello");
        let Lookup::Found(fr) = store.lookup(&key, &lang("fr")) else {
            panic!("fr missing")
        };
        assert_eq!(fr.body(), "bonjour");
        assert!(matches!(store.lookup(&key, &lang("de")), Lookup::VaryMiss));
        assert_eq!(store.purge_key(&key, false), 2);
        assert!(matches!(store.lookup(&key, &lang("en")), Lookup::Miss));
    }

    #[test]
    fn purge_by_tag_and_target_and_soft() {
        let store = Store::new(1 << 20, 64);
        let none = HeaderMap::new();
        let a = CacheKey::new("a.test", "/p");
        let b = CacheKey::new("b.test", "/p");
        let c = CacheKey::new("a.test", "/q");
        store.insert(&a, object(&a, &[], &none, "a", "red"));
        store.insert(&b, object(&b, &[], &none, "b", "blue"));
        store.insert(&c, object(&c, &[], &none, "c", "red blue"));
        assert_eq!(store.purge_tag("red", true), 2);
        let Lookup::Found(soft) = store.lookup(&a, &none) else {
            panic!()
        };
        assert!(soft.purged_at().is_some());
        assert_eq!(store.purge_target("/p", false), 2);
        assert!(matches!(store.lookup(&a, &none), Lookup::Miss));
        assert!(matches!(store.lookup(&b, &none), Lookup::Miss));
        assert_eq!(store.purge_tag("blue", false), 1);
        assert!(matches!(store.lookup(&c, &none), Lookup::Miss));
    }

    #[test]
    fn a_purge_stops_the_fills_of_its_key_only() {
        let store = Store::new(1 << 20, 64);
        let none = HeaderMap::new();
        let a = CacheKey::new("a.test", "/a");
        let b = CacheKey::new("a.test", "/b");
        let (ticket_a, ticket_b) = (store.ticket(&a), store.ticket(&b));
        // An unsafe method on /a (or a purge of it) while both are being fetched.
        store.purge_key(&a, false);
        assert!(!store.insert_unless_purged(&a, object(&a, &[], &none, "old a", ""), ticket_a));
        assert!(store.insert_unless_purged(&b, object(&b, &[], &none, "b", ""), ticket_b));
        assert!(matches!(store.lookup(&a, &none), Lookup::Miss));
        assert!(matches!(store.lookup(&b, &none), Lookup::Found(_)));
        // A purge by tag cannot know the keys of fills in progress: none of them stores.
        let ticket = store.ticket(&a);
        store.purge_tag("t", false);
        assert!(!store.insert_unless_purged(&a, object(&a, &[], &none, "a", ""), ticket));
    }

    #[test]
    fn variants_per_key_are_capped_least_recently_used_first() {
        let store = Store::new(1 << 20, 3);
        let key = CacheKey::new("a.test", "/v");
        let vary = [http::header::ACCEPT_LANGUAGE];
        for l in ["en", "fr", "de"] {
            store.insert(&key, object(&key, &vary, &lang(l), "x", ""));
            std::thread::sleep(Duration::from_millis(2));
        }
        // en is used, so fr is now the least recently used.
        assert!(matches!(store.lookup(&key, &lang("en")), Lookup::Found(_)));
        store.insert(&key, object(&key, &vary, &lang("nl"), "x", ""));
        assert!(matches!(store.lookup(&key, &lang("fr")), Lookup::VaryMiss));
        for l in ["en", "de", "nl"] {
            assert!(
                matches!(store.lookup(&key, &lang(l)), Lookup::Found(_)),
                "{l}"
            );
        }
    }

    #[test]
    fn an_entry_under_a_keys_hash_with_another_key_is_never_served_as_it() {
        // The map is indexed by a hash of the key. Two keys with one hash cannot be made
        // without the process's secret, so the collision is set up by hand: b's entry placed
        // where a's hash points.
        let store = Store::new(1 << 20, 4);
        let none = HeaderMap::new();
        let (a, b) = (CacheKey::new("a.test", "/a"), CacheKey::new("b.test", "/b"));
        let hash_a = store.generations.hash(a.as_str());
        store
            .objects
            .insert(hash_a, Entry::One(object(&b, &[], &none, "b's body", "")));
        assert!(matches!(store.lookup(&a, &none), Lookup::Miss));
        // A purge of a leaves what is not a's alone; a store of a takes the place.
        assert_eq!(store.purge_key(&a, false), 0);
        assert!(store.objects.get(&hash_a).is_some());
        store.insert(&a, object(&a, &[], &none, "a's body", ""));
        let Lookup::Found(found) = store.lookup(&a, &none) else {
            panic!("a is stored");
        };
        assert_eq!(
            (found.key(), found.body()),
            ("a.test/a", Bytes::from("a's body"))
        );
    }

    #[test]
    fn capacity_is_bounded_by_weight() {
        let store = Store::new(64 * 1024, 64);
        let none = HeaderMap::new();
        let big: &'static str = Box::leak("x".repeat(10_000).into_boxed_str());
        for i in 0..50 {
            let key = CacheKey::new("a.test", &format!("/{i}"));
            store.insert(&key, object(&key, &[], &none, big, ""));
        }
        let (_, bytes) = store.usage();
        assert!(bytes <= 64 * 1024, "weighted size {bytes} over capacity");
    }
}

/// What a stored object costs in memory, measured: bench/memory.sh runs this (it is ignored in
/// the test suite, as other tests allocating beside it would disturb the counts).
#[cfg(test)]
pub(crate) mod resident {
    use super::*;

    use crate::policy::{CompactPolicy, StoredPolicy};
    use bytes::Bytes;
    use http::StatusCode;
    use std::time::Duration;

    /// The test binary's allocator, counting what is allocated (for the measurements here and
    /// in `hit_for_pass`).
    #[global_allocator]
    pub(crate) static GLOBAL: cap::Cap<mimalloc::MiMalloc> =
        cap::Cap::new(mimalloc::MiMalloc, usize::MAX);

    pub(crate) fn rss() -> i64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS")).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<i64>()
            .unwrap()
            * 1024
    }

    /// 200,000 objects of 1 KiB with the headers Outpost's origin sends, stored and each hit
    /// once, as bench/memory.sh fills an edge: resident and allocated bytes per object, and
    /// what the weigher counts (which must not be below what is allocated).
    #[test]
    #[ignore = "a measurement for bench/memory.sh, alone in its process"]
    fn resident_bytes_per_object() {
        let n = 200_000usize;
        let store = Store::new(1 << 30, 64);
        let body = vec![b'x'; 1024];
        let make = |i: usize| {
            let mut h = HeaderMap::new();
            for (name, value) in [
                ("date", "Thu, 03 Dec 2026 18:36:30 GMT"),
                ("content-type", "text/plain; charset=utf-8"),
                ("etag", "\"445dcf97d7880d62fc56a7ce85b3164a\""),
                ("last-modified", "Thu, 03 Dec 2026 18:36:29 GMT"),
                ("cache-control", "public, max-age=300"),
                ("accept-ranges", "bytes"),
                ("content-length", "1024"),
            ] {
                h.insert(name, value.parse().unwrap());
            }
            let now = SystemTime::now();
            let policy = StoredPolicy {
                // As a fill finds it: the Date header's time.
                timing: crate::freshness::Timing::from_headers(&h, now, now),
                lifetime: Duration::from_secs(300),
                stale_while_revalidate: Duration::ZERO,
                stale_if_error: Duration::ZERO,
                forbids_stale: false,
                no_cache: false,
                allows_authorization: false,
            };
            let key = CacheKey::new("127.0.0.52", &format!("/obj.txt?n={i}"));
            let object = StoredObject::new(
                key.as_str(),
                StatusCode::OK,
                h,
                Bytes::from(body.clone()),
                policy,
                Vec::new(),
                String::new(),
            );
            (key, object)
        };
        // Warm-up, as the bench does.
        for i in 0..2000 {
            let (k, o) = make(n + i);
            store.insert(&k, Arc::new(o));
        }
        let (rss_before, allocated_before) = (rss(), GLOBAL.allocated());
        let none = HeaderMap::new();
        for i in 0..n {
            let (k, o) = make(i);
            store.insert(&k, Arc::new(o));
            // A hit shares the body and the header block.
            if let Lookup::Found(o) = store.lookup(&k, &none) {
                let _ = (o.body(), o.header_map());
            }
        }
        let resident = (rss() - rss_before) / n as i64;
        let allocated = (GLOBAL.allocated() - allocated_before) / n;
        let weight = store.objects.weight() / store.objects.len() as u64;
        let (_, sample) = make(1);
        eprintln!(
            "per stored object: {resident} bytes resident, {allocated} allocated, {weight} \
             weighed; the object {} bytes (policy {}), its key and header block {}",
            std::mem::size_of::<StoredObject>(),
            std::mem::size_of::<CompactPolicy>(),
            sample.meta_len(),
        );
        assert!(
            weight as usize >= allocated,
            "the weigher counts less than is allocated"
        );
    }
}
