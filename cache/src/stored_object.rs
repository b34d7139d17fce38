//! One stored response, laid out for memory: a cache holds many small objects, and what each
//! costs beyond its body decides how many fit.
//!
//! An object is three allocations: this struct (in its `Arc`), one buffer with the key and the
//! header block ([`crate::stored_headers`]), and the body, exactly its length. Nothing in it is
//! a `Bytes`: a clone of one would allocate a shared header that stays for the object's life.
//! Serving makes what a response holds instead: a `Bytes` of the body that owns a reference to
//! the object, and one buffer with the text of every header value.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::key;
use crate::policy::{CompactPolicy, StoredPolicy};
use crate::stored_headers::{self, BlockInfo, Given, HeaderBlock};

/// One stored response: key, head, complete body and the policy that governs its reuse.
///
/// Most objects have no Vary, no tags and no body on disk: what only some have is kept out of
/// line ([`Rare`]), so that the common object costs one pointer for it.
#[derive(Debug)]
pub struct StoredObject {
    /// The primary key, then the header block (headers as received from upstream, hop-by-hop
    /// headers removed).
    meta: Box<[u8]>,
    body: Box<[u8]>,
    rare: Option<Box<Rare>>,
    policy: CompactPolicy,
    headers: BlockInfo,
    /// Seconds since the epoch of a soft purge (rounded down: stale a little early, never
    /// late); 0 when none.
    purged_at: AtomicU32,
    key_len: u32,
    status: StatusCode,
    /// The response's Content-Length was the body's length: it is not kept in the header
    /// block but given from the body.
    length_from_body: bool,
    /// The response's Date is the policy's: it is not kept in the header block but given
    /// from the policy.
    date_from_policy: bool,
}

/// The parts of a stored object that most objects do not have.
#[derive(Debug, Default)]
struct Rare {
    /// The request headers this response varies on, and their values for this variant.
    vary: Vec<HeaderName>,
    variant: String,
    /// Surrogate keys / cache tags, for purge by tag.
    tags: Vec<String>,
    /// Where the body is when it stayed on disk (`body` is then empty): such an object is
    /// served from its file and never held in memory.
    disk_body: Option<crate::disk::DiskBody>,
    /// When a request last selected this variant (the store's clock), to evict the least
    /// recently used variant of a key first.
    last_used: AtomicU64,
}

/// The body of an object, as the owner of the `Bytes` a response sends.
struct BodyOf(Arc<StoredObject>);

impl AsRef<[u8]> for BodyOf {
    fn as_ref(&self) -> &[u8] {
        &self.0.body
    }
}

impl StoredObject {
    /// The object stored under `key`. The body becomes the object's own buffer: without a
    /// copy when `body` is the only handle on a buffer of exactly its length (as a fill
    /// collects it), with one otherwise.
    pub fn new(
        key: &str,
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        policy: StoredPolicy,
        vary: Vec<HeaderName>,
        variant: String,
    ) -> Self {
        let tags = crate::headers::surrogate_keys(&headers);
        let mut headers = headers;
        let length_from_body = !body.is_empty() && {
            let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
            matches!(
                (lengths.next(), lengths.next()),
                (Some(length), None) if length.as_bytes() == body.len().to_string().as_bytes()
            )
        };
        if length_from_body {
            headers.remove(header::CONTENT_LENGTH);
        }
        let policy = CompactPolicy::pack(&policy);
        let date_from_policy = {
            let mut dates = headers.get_all(header::DATE).iter();
            match (dates.next(), dates.next()) {
                (Some(date), None) => {
                    policy.date_secs().is_some()
                        && stored_headers::canonical_date(date) == policy.date_secs()
                }
                _ => false,
            }
        };
        if date_from_policy {
            headers.remove(header::DATE);
        }
        let rare = (!vary.is_empty() || !variant.is_empty() || !tags.is_empty()).then(|| {
            Box::new(Rare {
                vary,
                variant,
                tags,
                ..Rare::default()
            })
        });
        let mut meta = Vec::with_capacity(key.len() + 16 * headers.len());
        meta.extend_from_slice(key.as_bytes());
        let info = stored_headers::encode(&headers, &mut meta);
        Self {
            key_len: u32::try_from(key.len()).unwrap_or(u32::MAX),
            meta: meta.into_boxed_slice(),
            body: Vec::from(body).into_boxed_slice(),
            status,
            length_from_body,
            date_from_policy,
            headers: info,
            policy,
            rare,
            purged_at: AtomicU32::new(0),
        }
    }

    /// The same object with its body in a file on disk (`body` stays empty).
    pub fn with_disk_body(mut self, disk_body: Option<crate::disk::DiskBody>) -> Self {
        if disk_body.is_some() {
            self.rare.get_or_insert_default().disk_body = disk_body;
        }
        self
    }

    /// The primary key it is stored under.
    pub fn key(&self) -> &str {
        let len = usize::try_from(self.key_len).unwrap_or(usize::MAX);
        self.meta
            .get(..len)
            .and_then(|key| std::str::from_utf8(key).ok())
            .unwrap_or("")
    }

    fn header_block(&self) -> HeaderBlock<'_> {
        let start = usize::try_from(self.key_len).unwrap_or(usize::MAX);
        HeaderBlock::new(self.meta.get(start..).unwrap_or_default(), self.headers)
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The first value of the stored header `name`.
    pub fn header(&self, name: &HeaderName) -> Option<HeaderValue> {
        if self.length_from_body && name == header::CONTENT_LENGTH {
            return Some(HeaderValue::from(self.body.len()));
        }
        if self.date_from_policy && name == header::DATE {
            return self.policy.date_secs().and_then(stored_headers::date_value);
        }
        self.header_block().get(name)
    }

    /// The stored headers as a map (their values in one buffer made for it).
    pub fn header_map(&self) -> HeaderMap {
        let length = self
            .length_from_body
            .then_some(Given::Length(self.body.len()));
        let date = self
            .policy
            .date_secs()
            .filter(|_| self.date_from_policy)
            .map(Given::Date);
        match (length, date) {
            (Some(length), Some(date)) => self.header_block().to_map(&[length, date]),
            (Some(one), None) | (None, Some(one)) => self.header_block().to_map(&[one]),
            (None, None) => self.header_block().to_map(&[]),
        }
    }

    /// The body, sharing the object's memory.
    pub fn body(self: &Arc<Self>) -> Bytes {
        if self.body.is_empty() {
            return Bytes::new();
        }
        Bytes::from_owner(BodyOf(self.clone()))
    }

    /// Bytes of the key and header block together.
    #[cfg(test)]
    pub(crate) fn meta_len(&self) -> usize {
        self.meta.len()
    }

    /// The body's bytes, borrowed.
    pub fn body_slice(&self) -> &[u8] {
        &self.body
    }

    /// The request headers this response varies on (none without Vary).
    pub fn vary(&self) -> &[HeaderName] {
        self.rare.as_ref().map_or(&[], |r| &r.vary)
    }

    /// This variant's secondary key: the values of the [`vary`](Self::vary) headers.
    pub fn variant(&self) -> &str {
        self.rare.as_ref().map_or("", |r| &r.variant)
    }

    /// Surrogate keys / cache tags, for purge by tag.
    pub fn tags(&self) -> &[String] {
        self.rare.as_ref().map_or(&[], |r| &r.tags)
    }

    /// Where the body is when it stayed on disk.
    pub fn disk_body(&self) -> Option<&crate::disk::DiskBody> {
        self.rare.as_ref().and_then(|r| r.disk_body.as_ref())
    }

    pub(crate) fn touch(&self, tick: u64) {
        if let Some(rare) = &self.rare {
            rare.last_used.store(tick, Ordering::Relaxed);
        }
    }

    pub(crate) fn last_used(&self) -> u64 {
        self.rare
            .as_ref()
            .map_or(0, |r| r.last_used.load(Ordering::Relaxed))
    }

    /// The reuse policy fixed when it was stored.
    pub fn policy(&self) -> StoredPolicy {
        self.policy.unpack()
    }

    /// When this object was soft-purged, if it was.
    pub fn purged_at(&self) -> Option<SystemTime> {
        match self.purged_at.load(Ordering::Relaxed) {
            0 => None,
            secs => Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(secs))),
        }
    }

    pub(crate) fn soft_purge(&self, now: SystemTime) {
        let secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX).max(1));
        // Keep the earliest purge.
        let _ = self
            .purged_at
            .compare_exchange(0, secs, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// What the object costs in memory: body, key and header block, the rare parts and the
    /// fixed size of the object itself with its `Arc`'s counts.
    pub(crate) fn weight(&self) -> u64 {
        let rare = self.rare.as_ref().map_or(0, |r| {
            let tags: usize = r.tags.iter().map(|t| t.len() + 24).sum();
            std::mem::size_of::<Rare>() + r.variant.len() + r.vary.len() * 16 + tags
        });
        let own = std::mem::size_of::<Self>() + 16;
        (self.body.len() + self.meta.len() + rare + own) as u64
    }

    /// Whether this variant is the one `request` selects.
    pub fn matches(&self, request: &HeaderMap) -> bool {
        self.vary().is_empty() || key::variant_key(self.vary(), request) == self.variant()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> StoredPolicy {
        StoredPolicy::fresh_for(Duration::from_secs(60))
    }

    #[test]
    fn an_object_gives_back_its_key_headers_and_body() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        headers.insert("x-origin", HeaderValue::from_static("a"));
        headers.insert("content-length", HeaderValue::from_static("4"));
        let object = Arc::new(StoredObject::new(
            "a.test/x?y=1",
            StatusCode::NOT_FOUND,
            headers.clone(),
            Bytes::from_static(b"gone"),
            policy(),
            Vec::new(),
            String::new(),
        ));
        assert_eq!(object.key(), "a.test/x?y=1");
        assert_eq!(object.status(), StatusCode::NOT_FOUND);
        assert_eq!(object.header_map(), headers);
        assert_eq!(
            object.header(&HeaderName::from_static("x-origin")).unwrap(),
            "a"
        );
        assert_eq!(object.header(&header::CONTENT_LENGTH).unwrap(), "4");
        assert!(
            object.length_from_body,
            "a Content-Length equal to the body's is not stored"
        );
        assert_eq!(object.body(), "gone");
        assert_eq!(object.body().slice(1..3), "on");
        // The handles a response holds keep the object alive after the store let it go.
        let (body, map) = (object.body(), object.header_map());
        drop(object);
        assert_eq!((body, map), (Bytes::from_static(b"gone"), headers));
    }

    #[test]
    fn a_date_the_policy_holds_is_given_from_it_and_any_other_kept() {
        let text = "Thu, 03 Dec 2026 18:36:30 GMT";
        let date = httpdate::parse_http_date(text).unwrap();
        let mut with_date = policy();
        with_date.timing.date = Some(date);
        let mut headers = HeaderMap::new();
        headers.insert("date", HeaderValue::from_static(text));
        let make = |policy: StoredPolicy| {
            Arc::new(StoredObject::new(
                "a.test/d",
                StatusCode::OK,
                headers.clone(),
                Bytes::from_static(b"x"),
                policy,
                Vec::new(),
                String::new(),
            ))
        };
        let given = make(with_date.clone());
        assert!(given.date_from_policy);
        assert_eq!(given.header(&header::DATE).unwrap(), text);
        assert_eq!(given.header_map().get(header::DATE).unwrap(), text);
        // A policy without that Date (a 304 that brought none, say): the header stays.
        let mut other = with_date;
        other.timing.date = Some(date + Duration::from_secs(5));
        let kept = make(other);
        assert!(!kept.date_from_policy);
        assert_eq!(kept.header_map(), headers);
    }

    #[test]
    fn a_collected_body_becomes_the_object_without_a_copy() {
        let body = Bytes::from(vec![7u8; 4096]);
        let at = body.as_ptr();
        let object = StoredObject::new(
            "a.test/big",
            StatusCode::OK,
            HeaderMap::new(),
            body,
            policy(),
            Vec::new(),
            String::new(),
        );
        assert_eq!(object.body_slice().as_ptr(), at);
    }
}
