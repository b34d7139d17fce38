//! The fetch phase: one upstream request filling a [`Fill`] that the leading request, any
//! coalesced waiters and the store read from.

use std::sync::Arc;
use std::time::SystemTime;

use http::header::{self, HeaderMap};
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use outpost_server::body::Body;
use tokio::sync::oneshot;

use super::{AbandonGuard, Inner, Released, RequestHead, UpstreamMode};
use crate::coalesce::{BodyBroken, Fill, FillHead, StreamHead};
use crate::freshness::Timing;
use crate::headers;
use crate::key::{self, CacheKey};
use crate::policy::{self, Uncacheable};
use crate::status::{CacheOutcome, Forward};
use crate::store::{FillTicket, StoredObject};
use crate::upstream::Upstream;

/// Everything one fill carries from the request that started it to the upstream and back.
pub(super) struct Fetch {
    pub fill: Arc<Fill>,
    /// The fill is the key's shared one in the in-flight map, not a fetch of one request.
    pub registered: bool,
    pub head: RequestHead,
    pub key: CacheKey,
    /// The stored object being revalidated, if any.
    pub stale: Option<Arc<StoredObject>>,
    pub fwd: Forward,
    /// The leading request, waiting for the response itself when it cannot be shared.
    pub leader: Option<oneshot::Sender<Released>>,
}

impl Fetch {
    pub fn new(
        fill: Arc<Fill>,
        registered: bool,
        head: RequestHead,
        key: CacheKey,
        stale: Option<Arc<StoredObject>>,
        fwd: Forward,
    ) -> Self {
        Self {
            fill,
            registered,
            head,
            key,
            stale,
            fwd,
            leader: None,
        }
    }
}

/// When the request went upstream and when its response came: what the age calculation of
/// RFC 9111 section 4.2.3 starts from.
#[derive(Debug, Clone, Copy)]
struct Exchanged {
    request_time: SystemTime,
    response_time: SystemTime,
}

impl<U: Upstream> Inner<U> {
    /// Starts the upstream fetch that writes into the fetch's fill.
    pub(super) fn spawn_fill(self: Arc<Self>, fetch: Fetch) {
        tokio::spawn(async move {
            // Whatever happens to this task, readers of the fill are never left waiting and
            // the key is free for the next fetch.
            let _abandon = AbandonGuard {
                fill: fetch.fill.clone(),
                leave: fetch.registered.then(|| (self.clone(), fetch.key.shared())),
            };
            self.fill_from_upstream(fetch).await;
        });
    }

    /// Fetches from upstream into the fill: the head is published as soon as it is known
    /// (stored, relayed, failed, or a stale stand-in), then the body as it arrives; what is
    /// storable is stored before its last byte is released.
    async fn fill_from_upstream(&self, mut fetch: Fetch) {
        let leader = fetch.leader.take();
        let Fetch {
            fill,
            registered,
            head,
            key,
            stale,
            fwd,
            ..
        } = &fetch;
        let (registered, fwd) = (*registered, *fwd);
        let request_time = SystemTime::now();
        let ticket = self.store.ticket(key);
        // A key known to be uncacheable is fetched for this client alone: its Range and
        // preconditions go upstream, so a seek in a large uncacheable video stays a seek.
        let mode = if fwd == Forward::Bypass {
            UpstreamMode::ClientOwn
        } else {
            UpstreamMode::Fill
        };
        let request = self.upstream_request(head, key, None, mode, stale.as_deref());
        let result = self.send(request, key).await;
        let response_time = SystemTime::now();
        // Without the purge lease, a stored object may be one a missed purge covers: it
        // never stands in for the upstream.
        let trusted = self.lease.holds();
        let stand_in = |status: Option<StatusCode>| {
            let stale = stale.as_ref().filter(|_| trusted)?;
            let purged_at = stale.purged_at();
            let policy = stale.policy();
            policy
                .serves_stale_on_error(response_time, purged_at)
                .then(|| {
                    let outcome = CacheOutcome::StaleIfError {
                        fwd,
                        status: status.map(|s| s.as_u16()),
                        ttl: policy.ttl(response_time, purged_at),
                    };
                    FillHead::Object(stale.clone(), outcome)
                })
        };
        let response = match result {
            Err(error) => {
                tracing::warn!(node = %self.name, key = key.as_str(), %error, "upstream fetch failed");
                let head = stand_in(None)
                    .unwrap_or_else(|| FillHead::Failed(error.status(), error.to_string().into()));
                fill.publish_head(head);
                return;
            }
            Ok(response) => response,
        };
        let status = response.status();
        if status.is_server_error()
            && let Some(stand_in) = stand_in(Some(status))
        {
            fill.publish_head(stand_in);
            return;
        }
        if status == StatusCode::NOT_MODIFIED
            && let Some(stale) = &stale
        {
            let exchanged = Exchanged {
                request_time,
                response_time,
            };
            self.refresh_after_304(&fetch, stale, response.headers(), exchanged, ticket);
            return;
        }

        let (mut parts, body) = response.into_parts();
        // A body ended only by the connection closing cannot be told from a truncated one.
        let delimited = parts.headers.contains_key(header::CONTENT_LENGTH)
            || parts.headers.contains_key(header::TRANSFER_ENCODING)
            || status == StatusCode::NO_CONTENT;
        let expected_length = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        headers::remove_hop_by_hop(&mut parts.headers);
        let timing = Timing::from_headers(&parts.headers, request_time, response_time);
        let vary = key::vary_fields(&parts.headers);
        let storable = match &vary {
            // Hit-for-pass: relayed straight through, never buffered for sharing.
            _ if fwd == Forward::Bypass => Err(Uncacheable::HitForPass),
            None => Err(Uncacheable::VaryStar),
            Some(_) if !delimited => Err(Uncacheable::Unframed),
            Some(_) => policy::storability(
                &Method::GET,
                &head.headers,
                status,
                &parts.headers,
                &self.rules,
                timing,
            ),
        };
        let policy = match storable {
            Ok(policy) => policy,
            Err(reason) => {
                // An error status says nothing about the URL's cacheability; marking it would
                // switch coalescing off exactly while the upstream struggles.
                if registered && reason != Uncacheable::Status {
                    self.hit_for_pass.mark(key);
                }
                fill.publish_head(FillHead::Released);
                if let Some(leader) = leader {
                    let _ = leader.send((Response::from_parts(parts, body), reason));
                }
                return;
            }
        };
        let vary = vary.unwrap_or_default();
        let variant = key::variant_key(&vary, &head.headers);
        let ttl = policy.ttl(response_time, None);
        fill.publish_head(FillHead::Streaming(Arc::new(StreamHead {
            status,
            headers: parts.headers.clone(),
            policy: policy.clone(),
            vary: vary.clone(),
            variant: variant.clone(),
            outcome: CacheOutcome::Forwarded {
                fwd,
                status: Some(status.as_u16()),
                stored: true,
                collapsed: false,
                ttl: Some(ttl),
                detail: None,
            },
        })));
        drop(leader);

        let streamed = match tokio::time::timeout(
            self.fill_deadline,
            self.stream_body(fill, registered.then_some(key), body, expected_length),
        )
        .await
        {
            Ok(streamed) => streamed,
            Err(_) => Err(BodyBroken(
                format!(
                    "the fill took longer than its deadline of {} s",
                    self.fill_deadline.as_secs()
                )
                .into(),
            )),
        };
        match streamed {
            Ok((length, last)) if fill.is_relay() && length <= self.rules.max_object_bytes => {
                // Relayed for want of buffer memory: served, not stored.
                tracing::info!(node = %self.name, key = key.as_str(), length, buffered = self.inflight.budget().used(), "fill buffers over budget: relayed, not stored");
                if let Some(last) = last {
                    fill.push(last);
                }
                fill.finish(Ok(()));
            }
            Ok((length, last)) if length <= self.rules.max_object_bytes => {
                // A copy of exactly the body's size: the chunks are slices of larger read
                // buffers, which the cache must not keep alive.
                let whole = fill.collected_with(last.as_ref());
                let object = StoredObject::new(
                    key.as_str(),
                    status,
                    parts.headers,
                    whole,
                    policy,
                    vary,
                    variant,
                );
                // Stored before the client gets its last byte, so a request that follows at
                // once is a hit.
                self.store
                    .insert_unless_purged(key, Arc::new(object), ticket);
                if let Some(last) = last {
                    fill.push(last);
                }
                fill.finish(Ok(()));
            }
            Ok((length, last)) => {
                // Too large to keep (no Content-Length told us in advance): later requests
                // pass straight through instead of buffering it again.
                tracing::info!(node = %self.name, key = key.as_str(), length, "object too large to store: passing it from now on");
                self.hit_for_pass.mark(key);
                if let Some(last) = last {
                    fill.push(last);
                }
                fill.finish(Ok(()));
            }
            Err(broken) => {
                tracing::warn!(node = %self.name, key = key.as_str(), error = %broken, "upstream body broke; not stored");
                fill.finish(Err(broken));
            }
        }
    }

    /// Copies the upstream body into the fill; on success, the length and, when the declared
    /// length told which chunk completes the body, that chunk, held back for the caller.
    async fn stream_body(
        &self,
        fill: &Arc<Fill>,
        registered: Option<&CacheKey>,
        mut body: Body,
        expected: Option<u64>,
    ) -> Result<(u64, Option<bytes::Bytes>), BodyBroken> {
        let mut length = 0u64;
        let mut relaying = false;
        loop {
            // Too large to keep, or the node's fills hold too much: stop buffering for the
            // cache at once, and let no new request join what is now only a relay.
            if !relaying
                && (length > self.rules.max_object_bytes || self.inflight.budget().exceeded())
            {
                relaying = true;
                fill.relay();
                if let Some(key) = registered {
                    self.inflight.leave(&key.shared(), fill);
                }
            }
            match tokio::time::timeout(self.body_idle_timeout, body.frame()).await {
                Err(_) => return Err(BodyBroken("upstream body stalled".into())),
                Ok(None) => return Ok((length, None)),
                Ok(Some(Err(error))) => return Err(BodyBroken(error.to_string().into())),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        length += data.len() as u64;
                        if Some(length) == expected {
                            return Ok((length, Some(data)));
                        }
                        fill.push(data);
                    }
                }
            }
        }
    }

    /// A 304 to a revalidation: the stored object with the 304's headers is stored again
    /// when the 304's validators select it; otherwise it is served once more and dropped.
    fn refresh_after_304(
        &self,
        fetch: &Fetch,
        stale: &Arc<StoredObject>,
        not_modified: &HeaderMap,
        exchanged: Exchanged,
        ticket: FillTicket,
    ) {
        let Fetch {
            fill, head, key, ..
        } = fetch;
        let Exchanged {
            request_time,
            response_time,
        } = exchanged;
        let mut fresh = not_modified.clone();
        headers::remove_hop_by_hop(&mut fresh);
        let stored = stale.header_map();
        let mut merged = stored.clone();
        // The 304 vouches for the object as of now: the stored Date and Age describe the old
        // response, so they go unless the 304 brings its own.
        for name in [header::DATE, header::AGE] {
            if !fresh.contains_key(&name) {
                merged.remove(name);
            }
        }
        for name in fresh.keys() {
            if matches!(name.as_str(), "content-length" | "content-range") {
                continue;
            }
            merged.remove(name);
            for value in fresh.get_all(name) {
                merged.append(name.clone(), value.clone());
            }
        }
        // The stale object is served once more but not kept: the next request fetches whole.
        let not_stored = |detail: &'static str| {
            self.store.purge_key(key, false);
            fill.publish_head(FillHead::Object(
                stale.clone(),
                CacheOutcome::Forwarded {
                    fwd: Forward::Stale,
                    status: Some(304),
                    stored: false,
                    collapsed: false,
                    ttl: None,
                    detail: Some(detail),
                },
            ));
        };
        if !policy::not_modified_selects(&stored, &fresh) {
            // A 304 for some other response: nothing of it is kept.
            tracing::info!(node = %self.name, key = key.as_str(), "304 with other validators: not stored");
            not_stored("validator-mismatch");
            return;
        }
        let timing = Timing::from_headers(&merged, request_time, response_time);
        match policy::storability(
            &Method::GET,
            &head.headers,
            stale.status(),
            &merged,
            &self.rules,
            timing,
        ) {
            Ok(policy) => {
                let ttl = policy.ttl(response_time, None);
                let object = Arc::new(StoredObject::new(
                    key.as_str(),
                    stale.status(),
                    merged,
                    stale.body(),
                    policy,
                    stale.vary().to_vec(),
                    stale.variant().to_owned(),
                ));
                self.store.insert_unless_purged(key, object.clone(), ticket);
                fill.publish_head(FillHead::Object(
                    object,
                    CacheOutcome::Forwarded {
                        fwd: Forward::Stale,
                        status: Some(304),
                        stored: true,
                        collapsed: false,
                        ttl: Some(ttl),
                        detail: None,
                    },
                ));
            }
            Err(reason) => not_stored(reason.detail()),
        }
    }
}
