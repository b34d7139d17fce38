//! Request coalescing with read-while-writer: at most one upstream fetch per cache key at a
//! time. The fetch writes into a [`Fill`]; every request for the key reads from it as the bytes
//! arrive, so the first bytes reach every waiting client before the last byte has come from
//! upstream.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::stream;
use http::header::HeaderName;
use http::{HeaderMap, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use outpost_server::{Body, BoxError};
use tokio::sync::watch;

use crate::policy::StoredPolicy;
use crate::status::CacheOutcome;
use crate::store::StoredObject;

/// The response head of a fetch that is being streamed into the cache.
#[derive(Debug)]
pub(crate) struct StreamHead {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub policy: StoredPolicy,
    pub vary: Vec<HeaderName>,
    /// The secondary key of the request that started the fetch.
    pub variant: String,
    pub outcome: CacheOutcome,
}

/// What a fetch turned out to be, once its response head is known.
#[derive(Debug, Clone)]
pub(crate) enum FillHead {
    Pending,
    /// Cacheable: the body follows as chunks in the fill.
    Streaming(Arc<StreamHead>),
    /// Answered from a complete object: a revalidated one, or a stale one standing in for an
    /// upstream error.
    Object(Arc<StoredObject>, CacheOutcome),
    /// Not cacheable: the request that started the fetch gets the response itself; every
    /// waiter is released to fetch on its own.
    Released,
    /// Upstream failed and nothing can stand in.
    Failed(StatusCode, Arc<str>),
}

/// Why a streamed body ended early.
#[derive(Debug, thiserror::Error, Clone)]
#[error("upstream body broke: {0}")]
pub(crate) struct BodyBroken(pub Arc<str>);

#[derive(Debug)]
struct FillState {
    head: FillHead,
    /// The body's chunks from absolute index `base` on.
    chunks: VecDeque<Bytes>,
    base: usize,
    /// Not buffering for the cache any more (too large, or over the node's budget): chunks
    /// every reader has read are let go.
    relay: bool,
    /// Each reader's next chunk (absolute index), by reader number.
    cursors: Vec<(u64, usize)>,
    readers: u64,
    /// Bytes held in `chunks`, counted in the node's budget.
    held: u64,
    end: Option<Result<(), BodyBroken>>,
}

/// Bytes buffered by every fill of a node, against a limit.
#[derive(Debug)]
pub(crate) struct FillBudget {
    used: AtomicU64,
    limit: u64,
}

impl FillBudget {
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicU64::new(0),
            limit,
        })
    }

    pub fn exceeded(&self) -> bool {
        self.used.load(Ordering::Relaxed) > self.limit
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

/// One upstream fetch in progress, shared by every request for its key.
#[derive(Debug)]
pub(crate) struct Fill {
    state: Mutex<FillState>,
    version: watch::Sender<u64>,
    budget: Arc<FillBudget>,
}

impl Drop for Fill {
    fn drop(&mut self) {
        let held = self.lock().held;
        self.budget.used.fetch_sub(held, Ordering::Relaxed);
    }
}

impl Fill {
    fn new(budget: Arc<FillBudget>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(FillState {
                head: FillHead::Pending,
                chunks: VecDeque::new(),
                base: 0,
                relay: false,
                cursors: Vec::new(),
                readers: 0,
                held: 0,
                end: None,
            }),
            version: watch::channel(0).0,
            budget,
        })
    }

    /// Stops buffering for the cache: from now on only what some reader has yet to read is
    /// kept. Readers that come later cannot be served from this fill.
    pub fn relay(&self) {
        let mut state = self.lock();
        state.relay = true;
        self.let_go(&mut state);
    }

    pub fn is_relay(&self) -> bool {
        self.lock().relay
    }

    /// In relay mode, drops the chunks every reader is past.
    fn let_go(&self, state: &mut FillState) {
        if !state.relay {
            return;
        }
        let end = state.base + state.chunks.len();
        let keep_from = state
            .cursors
            .iter()
            .map(|(_, next)| *next)
            .min()
            .unwrap_or(end);
        while state.base < keep_from {
            let Some(chunk) = state.chunks.pop_front() else {
                break;
            };
            state.base += 1;
            state.held -= chunk.len() as u64;
            self.budget
                .used
                .fetch_sub(chunk.len() as u64, Ordering::Relaxed);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FillState> {
        // A panic while holding this lock cannot leave the state half-written (every update
        // is a single assignment or push), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    pub fn publish_head(&self, head: FillHead) {
        self.lock().head = head;
        self.bump();
    }

    pub fn push(&self, chunk: Bytes) {
        let mut state = self.lock();
        state.held += chunk.len() as u64;
        self.budget
            .used
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        state.chunks.push_back(chunk);
        self.let_go(&mut state);
        drop(state);
        self.bump();
    }

    /// Ends the body; `Ok` only when every byte arrived.
    pub fn finish(&self, end: Result<(), BodyBroken>) {
        self.lock().end = Some(end);
        self.bump();
    }

    /// Marks whatever is still pending as failed: a head that never came, a body that never
    /// ended. Does nothing to a fill that completed.
    pub fn abandon(&self) {
        let mut state = self.lock();
        let mut changed = false;
        if matches!(state.head, FillHead::Pending) {
            state.head =
                FillHead::Failed(StatusCode::BAD_GATEWAY, "upstream fetch abandoned".into());
            changed = true;
        }
        if matches!(state.head, FillHead::Streaming(_)) && state.end.is_none() {
            state.end = Some(Err(BodyBroken("upstream fetch abandoned".into())));
            changed = true;
        }
        drop(state);
        if changed {
            self.bump();
        }
    }

    /// Waits for the response head.
    pub async fn head(&self) -> FillHead {
        let mut changes = self.version.subscribe();
        loop {
            {
                let state = self.lock();
                if !matches!(state.head, FillHead::Pending) {
                    return state.head.clone();
                }
            }
            if changes.changed().await.is_err() {
                return FillHead::Failed(StatusCode::BAD_GATEWAY, "fetch abandoned".into());
            }
        }
    }

    /// The body received so far, in one piece (after a successful finish: all of it).
    pub fn collected(&self) -> Bytes {
        self.collected_with(None)
    }

    /// The body so far and then `last`, copied into one allocation of exactly their size.
    pub fn collected_with(&self, last: Option<&Bytes>) -> Bytes {
        let state = self.lock();
        debug_assert_eq!(state.base, 0, "a relayed fill is never collected");
        let chunks = || state.chunks.iter().chain(last);
        let mut all = Vec::with_capacity(chunks().map(Bytes::len).sum());
        chunks().for_each(|c| all.extend_from_slice(c));
        Bytes::from(all)
    }

    /// Waits for the whole body.
    pub async fn complete(&self) -> Result<Bytes, BodyBroken> {
        let mut changes = self.version.subscribe();
        loop {
            {
                let state = self.lock();
                if state.base > 0 {
                    return Err(BodyBroken("the object is too large to buffer".into()));
                }
                match &state.end {
                    Some(Ok(())) => {
                        drop(state);
                        return Ok(self.collected());
                    }
                    Some(Err(broken)) => return Err(broken.clone()),
                    None => {}
                }
            }
            if changes.changed().await.is_err() {
                return Err(BodyBroken("fetch abandoned".into()));
            }
        }
    }

    /// The body as it arrives, from the first byte; it errors if the upstream body breaks, or
    /// if the fill already let go of its first bytes.
    pub fn body(self: Arc<Self>, on_chunk: impl Fn(usize) + Send + 'static) -> Body {
        let changes = self.version.subscribe();
        let id = {
            let mut state = self.lock();
            state.readers += 1;
            let id = state.readers;
            // A reader that comes after the first bytes were let go errors at once; it must
            // not hold the others' bytes meanwhile.
            let from = state.base;
            state.cursors.push((id, from));
            id
        };
        let reader = Reader { fill: self, id };
        let chunks = stream::unfold(
            (reader, 0usize, changes, on_chunk),
            |(reader, next, mut changes, on_chunk)| async move {
                if next == usize::MAX {
                    // The stream already ended with an error.
                    return None;
                }
                loop {
                    let step = {
                        let mut state = reader.fill.lock();
                        if next < state.base {
                            Some(Err(BodyBroken(
                                "the object is too large to share: request it again".into(),
                            )))
                        } else if let Some(chunk) = state.chunks.get(next - state.base).cloned() {
                            if let Some(cursor) =
                                state.cursors.iter_mut().find(|(id, _)| *id == reader.id)
                            {
                                cursor.1 = next + 1;
                            }
                            reader.fill.let_go(&mut state);
                            Some(Ok(chunk))
                        } else {
                            match &state.end {
                                Some(Ok(())) => return None,
                                Some(Err(broken)) => Some(Err(broken.clone())),
                                None => None,
                            }
                        }
                    };
                    match step {
                        Some(Ok(chunk)) => {
                            on_chunk(chunk.len());
                            return Some((
                                Ok(Frame::data(chunk)),
                                (reader, next + 1, changes, on_chunk),
                            ));
                        }
                        Some(Err(broken)) => {
                            let error: BoxError = Box::new(broken);
                            return Some((Err(error), (reader, usize::MAX, changes, on_chunk)));
                        }
                        None => {
                            if changes.changed().await.is_err() {
                                let error: BoxError =
                                    Box::new(BodyBroken("fetch abandoned".into()));
                                return Some((Err(error), (reader, usize::MAX, changes, on_chunk)));
                            }
                        }
                    }
                }
            },
        );
        StreamBody::new(chunks).boxed_unsync()
    }
}

/// A reader of a fill's body; when it goes, the fill stops keeping chunks for it.
struct Reader {
    fill: Arc<Fill>,
    id: u64,
}

impl Drop for Reader {
    fn drop(&mut self) {
        let mut state = self.fill.lock();
        state.cursors.retain(|(id, _)| *id != self.id);
        self.fill.let_go(&mut state);
    }
}

/// The fetches in progress on one node, by primary cache key.
#[derive(Debug)]
pub(crate) struct InFlight {
    fills: Mutex<HashMap<Arc<str>, Arc<Fill>>>,
    budget: Arc<FillBudget>,
}

/// How a request joined the fetch for its key.
pub(crate) enum Joined {
    /// No fetch was in progress: this request starts one.
    Leader(Arc<Fill>),
    /// Another request's fetch is in progress: read from it.
    Waiter(Arc<Fill>),
}

impl InFlight {
    /// Fetches whose buffered bytes together count against `budget`.
    pub fn new(budget: Arc<FillBudget>) -> Self {
        Self {
            fills: Mutex::default(),
            budget,
        }
    }

    pub fn budget(&self) -> &FillBudget {
        &self.budget
    }

    pub fn join(&self, key: &Arc<str>) -> Joined {
        let mut fills = self.fills.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fill) = fills.get(key) {
            return Joined::Waiter(fill.clone());
        }
        let fill = Fill::new(self.budget.clone());
        fills.insert(key.clone(), fill.clone());
        Joined::Leader(fill)
    }

    /// A fill no request can join (for keys known to be uncacheable).
    pub fn solo(&self) -> Arc<Fill> {
        Fill::new(self.budget.clone())
    }

    pub fn is_in_flight(&self, key: &Arc<str>) -> bool {
        self.fills
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(key)
    }

    /// New requests for `key` no longer join the fetch in progress (after a purge).
    pub fn forget(&self, key: &Arc<str>) {
        self.fills
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// New requests for any key no longer join fetches in progress.
    pub fn forget_all(&self) {
        self.fills.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Ends coalescing on `fill` (new requests start their own fetch or hit the cache).
    pub fn leave(&self, key: &Arc<str>, fill: &Arc<Fill>) {
        let mut fills = self.fills.lock().unwrap_or_else(|p| p.into_inner());
        if fills
            .get(key)
            .is_some_and(|current| Arc::ptr_eq(current, fill))
        {
            fills.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readers_get_bytes_as_they_arrive_and_see_a_break() {
        let fill = Fill::new(FillBudget::new(u64::MAX));
        let mut body = fill.clone().body(|_| {});
        fill.push(Bytes::from_static(b"first"));
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "first");
        // The second reader starts late and still sees everything from the start.
        let mut late = fill.clone().body(|_| {});
        fill.finish(Err(BodyBroken("reset".into())));
        assert_eq!(
            late.frame().await.unwrap().unwrap().into_data().unwrap(),
            "first"
        );
        assert!(late.frame().await.unwrap().is_err());
        assert!(body.frame().await.unwrap().is_err());
        assert!(fill.complete().await.is_err());
    }

    #[tokio::test]
    async fn an_abandoned_fill_fails_its_readers_instead_of_hanging() {
        let fill = Fill::new(FillBudget::new(u64::MAX));
        fill.abandon();
        assert!(matches!(
            fill.head().await,
            FillHead::Failed(StatusCode::BAD_GATEWAY, _)
        ));
        let streaming = Fill::new(FillBudget::new(u64::MAX));
        let mut body = streaming.clone().body(|_| {});
        streaming.push(Bytes::from_static(b"part"));
        streaming.publish_head(FillHead::Released);
        streaming.abandon();
        // Released fills have no body to break; a streaming one does.
        let stream_head = Fill::new(FillBudget::new(u64::MAX));
        stream_head.lock().head = FillHead::Streaming(Arc::new(StreamHead {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            policy: crate::policy::StoredPolicy {
                timing: crate::freshness::Timing {
                    request_time: std::time::SystemTime::now(),
                    response_time: std::time::SystemTime::now(),
                    date: None,
                    age: std::time::Duration::ZERO,
                },
                lifetime: std::time::Duration::ZERO,
                stale_while_revalidate: std::time::Duration::ZERO,
                stale_if_error: std::time::Duration::ZERO,
                forbids_stale: false,
                no_cache: false,
                allows_authorization: false,
            },
            vary: Vec::new(),
            variant: String::new(),
            outcome: CacheOutcome::Hit { ttl: 0 },
        }));
        let mut reader = stream_head.clone().body(|_| {});
        stream_head.abandon();
        assert!(reader.frame().await.unwrap().is_err());
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "part"
        );
    }

    #[tokio::test]
    async fn a_relayed_fill_keeps_only_what_a_reader_still_needs() {
        let budget = FillBudget::new(u64::MAX);
        let fill = Fill::new(budget.clone());
        let mut fast = fill.clone().body(|_| {});
        let mut slow = fill.clone().body(|_| {});
        fill.relay();
        for i in 0..10u8 {
            fill.push(Bytes::from(vec![i; 1000]));
            let frame = fast.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap()[0], i);
        }
        // The slow reader has read nothing: everything is still held for it.
        assert_eq!(budget.used(), 10_000);
        for i in 0..10u8 {
            let frame = slow.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap()[0], i);
        }
        assert_eq!(budget.used(), 0, "both read it all: nothing held");
        // A reader that comes now cannot be given the start of the body.
        let mut late = fill.clone().body(|_| {});
        assert!(late.frame().await.unwrap().is_err());
        fill.push(Bytes::from_static(b"more"));
        drop(slow);
        let _ = fast.frame().await;
        fill.finish(Ok(()));
        drop((fast, late));
        assert!(fill.complete().await.is_err(), "a relay is never collected");
        drop(fill);
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn one_leader_per_key() {
        let inflight = InFlight::new(FillBudget::new(u64::MAX));
        let key: Arc<str> = "a/x".into();
        let Joined::Leader(fill) = inflight.join(&key) else {
            panic!("expected leader")
        };
        assert!(matches!(inflight.join(&key), Joined::Waiter(_)));
        inflight.leave(&key, &fill);
        assert!(matches!(inflight.join(&key), Joined::Leader(_)));
    }
}
