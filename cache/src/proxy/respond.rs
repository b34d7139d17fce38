//! The responder: what a client gets from a stored object, a fill in progress, an upstream
//! response passed through, or an error, with its headers finished (Age, Cache-Status, Via)
//! and counted.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode, Version};
use http_body_util::BodyExt;
use outpost_server::body::{self as bodies, Body};
use tokio::sync::oneshot;

use super::{Inner, Released, RequestHead};
use crate::coalesce::{Fill, FillHead, StreamHead};
use crate::headers;
use crate::key;
use crate::metrics::OutcomeLabel;
use crate::status::{self, CacheOutcome, Forward};
use crate::store::StoredObject;
use crate::upstream::Upstream;

impl<U: Upstream> Inner<U> {
    /// Answers a request from a fill. `None`: this request must fetch on its own (the
    /// response was uncacheable, or varies differently for this request).
    pub(super) async fn serve_from_fill(
        &self,
        head: &RequestHead,
        fill: &Arc<Fill>,
        released: Option<oneshot::Receiver<Released>>,
        fwd: Forward,
        collapsed: bool,
    ) -> Option<Response<Body>> {
        match fill.head().await {
            FillHead::Pending => None,
            FillHead::Released => {
                let (response, reason) = released?.await.ok()?;
                let status = response.status().as_u16();
                let outcome = CacheOutcome::Forwarded {
                    fwd,
                    status: Some(status),
                    stored: false,
                    collapsed: false,
                    ttl: None,
                    detail: Some(reason.detail()),
                };
                Some(self.relay(head, response, outcome))
            }
            FillHead::Failed(status, message) => {
                Some(self.error_response(status, &message, fwd, collapsed))
            }
            FillHead::Object(object, mut outcome) => {
                if collapsed
                    && (!object.matches(&head.headers)
                        || !key::encoding_accepted(
                            object.header(&header::CONTENT_ENCODING).as_ref(),
                            &head.headers,
                        ))
                {
                    return None;
                }
                if let CacheOutcome::Forwarded {
                    collapsed: c,
                    stored,
                    ..
                } = &mut outcome
                    && collapsed
                {
                    *c = true;
                    *stored = false;
                }
                Some(self.serve_object(head, &object, outcome))
            }
            FillHead::Streaming(stream) => {
                if collapsed
                    && (!stream.vary.is_empty()
                        && key::variant_key(&stream.vary, &head.headers) != stream.variant
                        || !key::encoding_accepted(
                            stream.headers.get(header::CONTENT_ENCODING),
                            &head.headers,
                        ))
                {
                    return None;
                }
                let mut outcome = stream.outcome.clone();
                if let CacheOutcome::Forwarded {
                    collapsed: c,
                    stored,
                    ..
                } = &mut outcome
                    && collapsed
                {
                    *c = true;
                    *stored = false;
                }
                Some(self.serve_stream(head, fill, &stream, outcome).await)
            }
        }
    }

    /// Serves a response whose body is still arriving.
    pub(super) async fn serve_stream(
        &self,
        head: &RequestHead,
        fill: &Arc<Fill>,
        stream: &StreamHead,
        outcome: CacheOutcome,
    ) -> Response<Body> {
        let wants_part = head.headers.contains_key(header::RANGE);
        let preconditions = [
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::IF_UNMODIFIED_SINCE,
        ]
        .iter()
        .any(|h| head.headers.contains_key(h));
        if wants_part
            && !preconditions
            && let Some(response) = self.range_from_fill(head, fill, stream, &outcome)
        {
            return response;
        }
        if wants_part || preconditions {
            // Ranges and preconditions are answered from the whole object.
            return match fill.complete().await {
                Ok(body) => {
                    let whole = Whole {
                        status: stream.status,
                        headers: stream.headers.clone(),
                        body,
                        age: stream.policy.timing.current_age(SystemTime::now()),
                    };
                    self.serve_whole(head, whole, outcome)
                }
                Err(broken) => self.error_response(
                    StatusCode::BAD_GATEWAY,
                    &broken.to_string(),
                    Forward::UriMiss,
                    false,
                ),
            };
        }
        let mut headers = stream.headers.clone();
        let age = stream.policy.timing.current_age(SystemTime::now());
        self.finish_headers(&mut headers, head.version, &outcome, Some(age));
        self.count(&outcome);
        let body = if head.method == Method::HEAD {
            bodies::empty()
        } else {
            let bytes = self.metrics.bytes.clone();
            fill.clone().body(move |n| {
                bytes.inc_by(n as u64);
            })
        };
        let mut response = Response::new(body);
        *response.status_mut() = stream.status;
        *response.headers_mut() = headers;
        response
    }

    /// Answers one byte range of a 200 whose length is known as soon as the range's bytes
    /// have arrived, not when the whole object has; `None` when it cannot (several ranges, no
    /// Content-Length, If-Range), and the request waits for the whole object instead.
    fn range_from_fill(
        &self,
        head: &RequestHead,
        fill: &Arc<Fill>,
        stream: &StreamHead,
        outcome: &CacheOutcome,
    ) -> Option<Response<Body>> {
        if stream.status != StatusCode::OK
            || head.method != Method::GET
            || head.headers.contains_key(header::IF_RANGE)
        {
            return None;
        }
        let length = stream
            .headers
            .get(header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse::<u64>()
            .ok()?;
        let selection =
            outpost_representation::evaluate(&head.method, &head.headers, &stream.headers, length);
        let outpost_representation::Selection::Partial(ranges) = selection else {
            return None;
        };
        let [range] = ranges.as_slice() else {
            return None;
        };
        let mut headers = stream.headers.clone();
        let age = stream.policy.timing.current_age(SystemTime::now());
        self.finish_headers(&mut headers, head.version, outcome, Some(age));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(range.len()));
        let content_range = format!("bytes {}-{}/{length}", range.start, range.end);
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&content_range).ok()?,
        );
        self.count(outcome);
        let bytes = self.metrics.bytes.clone();
        let whole = fill.clone().body(move |n| {
            bytes.inc_by(n as u64);
        });
        let mut response = Response::new(slice(whole, range.start, range.len()));
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        *response.headers_mut() = headers;
        Some(response)
    }

    /// Serves a complete object, answering the client's own preconditions and ranges.
    pub(super) fn serve_object(
        &self,
        head: &RequestHead,
        object: &Arc<StoredObject>,
        outcome: CacheOutcome,
    ) -> Response<Body> {
        let age = object.policy().timing.current_age(SystemTime::now());
        let whole = Whole {
            status: object.status(),
            headers: object.header_map(),
            body: object.body(),
            age,
        };
        self.serve_whole(head, whole, outcome)
    }

    /// Serves a complete response, answering the client's own preconditions and ranges.
    fn serve_whole(
        &self,
        head: &RequestHead,
        whole: Whole,
        outcome: CacheOutcome,
    ) -> Response<Body> {
        let Whole {
            status,
            mut headers,
            body,
            age,
        } = whole;
        self.finish_headers(&mut headers, head.version, &outcome, Some(age));
        let (status, body) = if status == StatusCode::OK {
            let selection = outpost_representation::evaluate(
                &head.method,
                &head.headers,
                &headers,
                body.len() as u64,
            );
            outpost_representation::render(&selection, status, &mut headers, &body)
        } else {
            (status, body)
        };
        self.count(&outcome);
        let body = if head.method == Method::HEAD {
            bodies::empty()
        } else {
            self.metrics.bytes.inc_by(body.len() as u64);
            bodies::full(body)
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }

    /// Serves an object whose body stayed on disk: the response is built as for one in
    /// memory and the body streamed from its file. A body that turns out damaged (its
    /// checksum fails at the end) aborts the response, so no client gets it whole, and its
    /// record is dropped.
    pub(super) fn serve_from_disk(
        &self,
        head: &RequestHead,
        key: &crate::key::CacheKey,
        object: &Arc<StoredObject>,
        outcome: CacheOutcome,
    ) -> Response<Body> {
        let Some(disk) = object.disk_body().cloned() else {
            return self.serve_object(head, object, outcome);
        };
        let mut headers = object.header_map();
        let age = object.policy().timing.current_age(SystemTime::now());
        self.finish_headers(&mut headers, head.version, &outcome, Some(age));
        let (status, extent) = if object.status() == StatusCode::OK {
            let selection = outpost_representation::evaluate(
                &head.method,
                &head.headers,
                &headers,
                disk.length,
            );
            outpost_representation::render_head(
                &selection,
                object.status(),
                &mut headers,
                disk.length,
            )
        } else {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(disk.length));
            (object.status(), outpost_representation::Extent::Whole)
        };
        self.count(&outcome);
        let (start, length) = match extent {
            outpost_representation::Extent::Whole => (0, disk.length),
            outpost_representation::Extent::Range(range) => (range.start, range.len()),
            outpost_representation::Extent::Nothing => (0, 0),
        };
        let body = if head.method == Method::HEAD || length == 0 {
            bodies::empty()
        } else {
            self.metrics.bytes.inc_by(length);
            let damaged = {
                let (store, key) = (self.store.clone(), key.as_str().to_owned());
                move || {
                    tracing::error!(key, "disk cache body damaged: dropped");
                    tokio::task::spawn_blocking(move || store.drop_damaged(&key));
                }
            };
            bodies::stream(disk_body(disk, start, length, damaged))
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }

    /// Passes an upstream response through unchanged but for the proxy's headers.
    pub(super) fn relay(
        &self,
        head: &RequestHead,
        response: Response<Body>,
        outcome: CacheOutcome,
    ) -> Response<Body> {
        let (mut parts, body) = response.into_parts();
        headers::remove_hop_by_hop(&mut parts.headers);
        self.finish_headers(&mut parts.headers, head.version, &outcome, None);
        self.count(&outcome);
        let body = if head.method == Method::HEAD {
            bodies::empty()
        } else {
            let bytes = self.metrics.bytes.clone();
            body.map_frame(move |frame| {
                if let Some(data) = frame.data_ref() {
                    bytes.inc_by(data.len() as u64);
                }
                frame
            })
            .boxed_unsync()
        };
        Response::from_parts(parts, body)
    }

    /// Adds Age, Cache-Status and Via. The CDN-only headers stay: the edge's front
    /// (`outpost_esi::EsiFront`) reads them and removes them before the client.
    pub(super) fn finish_headers(
        &self,
        headers: &mut HeaderMap,
        version: Version,
        outcome: &CacheOutcome,
        age: Option<Duration>,
    ) {
        if let Some(age) = age
            && let Ok(value) = HeaderValue::from_str(&age.as_secs().to_string())
        {
            headers.insert(header::AGE, value);
        }
        status::append(headers, &self.name, outcome);
        headers::append_via(headers, version, &self.name);
    }

    pub(super) fn error_response(
        &self,
        status: StatusCode,
        message: &str,
        fwd: Forward,
        collapsed: bool,
    ) -> Response<Body> {
        let outcome = CacheOutcome::Forwarded {
            fwd,
            status: None,
            stored: false,
            collapsed,
            ttl: None,
            detail: Some(if status == StatusCode::GATEWAY_TIMEOUT {
                "upstream-timeout"
            } else {
                "upstream-error"
            }),
        };
        let mut response = bodies::text(status, message);
        self.finish_headers(response.headers_mut(), Version::HTTP_11, &outcome, None);
        self.metrics
            .requests
            .get_or_create(&OutcomeLabel { outcome: "error" })
            .inc();
        response
    }

    pub(super) fn count(&self, outcome: &CacheOutcome) {
        let label = outcome.label();
        self.metrics
            .requests
            .get_or_create(&OutcomeLabel { outcome: label })
            .inc();
        match label {
            "hit" | "disk-hit" => self.metrics.hits.inc(),
            "stale" => self.metrics.stale.inc(),
            _ => self.metrics.misses.inc(),
        };
    }
}

/// The `length` bytes of `body` from `start` on, sent as they arrive.
fn slice(body: Body, start: u64, length: u64) -> Body {
    let stream = futures_util::stream::unfold(
        (body, start, length),
        |(mut body, mut skip, mut left)| async move {
            loop {
                if left == 0 {
                    return None;
                }
                let frame = match body.frame().await? {
                    Ok(frame) => frame,
                    Err(error) => return Some((Err(error), (body, skip, 0))),
                };
                let Ok(mut data) = frame.into_data() else {
                    continue;
                };
                let len = data.len() as u64;
                if skip >= len {
                    skip -= len;
                    continue;
                }
                let from = usize::try_from(skip).unwrap_or(usize::MAX);
                skip = 0;
                data = data.slice(from..);
                let take = usize::try_from(left.min(data.len() as u64)).unwrap_or(data.len());
                data.truncate(take);
                left -= take as u64;
                return Some((Ok(http_body::Frame::data(data)), (body, skip, left)));
            }
        },
    );
    http_body_util::StreamBody::new(stream).boxed_unsync()
}

/// `length` bytes from `start` of a body kept in a file; when that is the whole body, its
/// checksum is checked as it goes, and a mismatch ends the stream in an error (and calls
/// `damaged`) instead of its last piece.
fn disk_body(
    disk: crate::disk::DiskBody,
    start: u64,
    length: u64,
    damaged: impl FnOnce() + Send + 'static,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    use futures_util::{StreamExt, TryStreamExt};
    let whole = start == 0 && length == disk.length;
    let opened = async move {
        let file = tokio::fs::File::open(&disk.path).await?;
        bodies::file_range(file, start, length).await
    };
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut seen = 0u64;
    let mut damaged = Some(damaged);
    futures_util::stream::once(opened)
        .try_flatten()
        .map(move |chunk| {
            let chunk = chunk?;
            seen += chunk.len() as u64;
            if whole {
                hasher.update(&chunk);
                if seen == length && hasher.digest() != disk.sum {
                    if let Some(damaged) = damaged.take() {
                        damaged();
                    }
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "disk cache body damaged",
                    ));
                }
            }
            Ok(chunk)
        })
}

/// A complete response to serve: from a stored object, or from a fill just completed.
struct Whole {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    /// The response's current age.
    age: std::time::Duration,
}
