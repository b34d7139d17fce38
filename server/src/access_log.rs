//! One line per request on the `outpost::access` tracing target, written when the response
//! body has ended (or was cut off), so that it gives the bytes actually sent for streamed
//! responses too, the time to the response head and the total time, the upstream the answer
//! came through, the Cache-Status, and the request id workers see.
//!
//! Two formats (`[limits] access_log_format`): `common`, the common log format extended with
//! those fields, and `json`, one object a line for log shippers.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use serde::{Deserialize, Serialize};

use crate::body::{Body, BoxError};

/// A word a handler adds to its request's access-log line, as a response extension (the
/// edge's CMCD reader puts what the player reported there).
#[derive(Debug, Clone)]
pub struct AccessNote(pub String);

/// The id of one request, unique in the process, written `NODE-N` (N in hex) by
/// [`label`](Self::label). The listener puts it in the request's extensions; workers see it as
/// `outpost-request-id`, and the access log prints it. Only a number until someone writes it,
/// so a request nobody logs costs no allocation for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId(pub u64);

impl RequestId {
    pub(crate) fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// The id as logs and workers show it, for the node that took the request.
    pub fn label(&self, node: &str) -> String {
        format!("{node}-{:x}", self.0)
    }
}

/// How access-log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// `NODE IP - - [TIME] "METHOD TARGET VERSION" STATUS BYTES "CACHE-STATUS" TOTALms
    /// ttfb=MSms upstream=NAME id=ID [NOTE]`.
    #[default]
    Common,
    /// One JSON object a line.
    Json,
}

/// What is known of a request when its response head is ready.
pub(crate) struct AccessRecord {
    pub format: AccessLogFormat,
    pub node: Arc<str>,
    pub peer: SocketAddr,
    pub method: http::Method,
    pub target: String,
    pub version: http::Version,
    pub status: http::StatusCode,
    pub cache_status: Option<String>,
    pub started: Instant,
    pub first_byte: Duration,
    pub request_id: Option<RequestId>,
    pub note: Option<String>,
}

/// Whether access lines are wanted at all (`RUST_LOG` may turn them off).
pub(crate) fn enabled() -> bool {
    tracing::enabled!(target: "outpost::access", tracing::Level::INFO)
}

/// The node the answer came through: the Cache-Status entry before `node`'s own, when `node`
/// forwarded the request (`fwd=`), or the origin when no cache before it answered.
pub fn upstream_of(cache_status: &str, node: &str) -> Option<String> {
    let entries: Vec<&str> = cache_status.split(',').map(str::trim).collect();
    let own = entries
        .iter()
        .rposition(|e| e.split(';').next().map(str::trim) == Some(node))?;
    if !entries[own]
        .split(';')
        .any(|p| p.trim().starts_with("fwd="))
    {
        return None;
    }
    Some(match own.checked_sub(1) {
        Some(before) => entries[before]
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned(),
        None => "origin".to_owned(),
    })
}

/// Wraps a response body so that its line is logged when the body ends.
pub(crate) fn logged(body: Body, record: AccessRecord) -> Body {
    use http_body_util::BodyExt;
    LoggedBody {
        inner: body,
        sent: 0,
        record: Some(record),
    }
    .boxed_unsync()
}

struct LoggedBody {
    inner: Body,
    sent: u64,
    record: Option<AccessRecord>,
}

impl LoggedBody {
    fn finish(&mut self, complete: bool) {
        if let Some(record) = self.record.take() {
            write(&record, self.sent, complete);
        }
    }
}

impl HttpBody for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.sent += data.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.finish(true);
                }
            }
            Poll::Ready(Some(Err(_))) => self.finish(false),
            Poll::Ready(None) => self.finish(true),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        // A body never polled to its end: the client went away, or there was none to send
        // (HEAD, 304).
        let complete = self.inner.is_end_stream();
        self.finish(complete);
    }
}

#[derive(Serialize)]
struct JsonLine<'a> {
    time: String,
    node: &'a str,
    client: String,
    method: &'a str,
    target: &'a str,
    protocol: String,
    status: u16,
    bytes: u64,
    complete: bool,
    cache_status: Option<&'a str>,
    upstream: Option<String>,
    ttfb_ms: f64,
    total_ms: f64,
    request_id: Option<String>,
    note: Option<&'a str>,
}

fn write(record: &AccessRecord, sent: u64, complete: bool) {
    let total = record.started.elapsed();
    let upstream = record
        .cache_status
        .as_deref()
        .and_then(|c| upstream_of(c, &record.node));
    let request_id = record.request_id.map(|id| id.label(&record.node));
    match record.format {
        AccessLogFormat::Json => {
            let line = JsonLine {
                time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                node: &record.node,
                client: record.peer.ip().to_string(),
                method: record.method.as_str(),
                target: &record.target,
                protocol: format!("{:?}", record.version),
                status: record.status.as_u16(),
                bytes: sent,
                complete,
                cache_status: record.cache_status.as_deref(),
                upstream,
                ttfb_ms: record.first_byte.as_secs_f64() * 1e3,
                total_ms: total.as_secs_f64() * 1e3,
                request_id,
                note: record.note.as_deref(),
            };
            let json = serde_json::to_string(&line).unwrap_or_default();
            tracing::info!(target: "outpost::access", "{json}");
        }
        AccessLogFormat::Common => {
            let time = chrono::Utc::now().format("%d/%b/%Y:%H:%M:%S %z");
            tracing::info!(
                target: "outpost::access",
                "{node} {peer} - - [{time}] \"{method} {target} {version:?}\" {status} {sent}{cut} \"{cache}\" {total:.1}ms ttfb={ttfb:.1}ms upstream={upstream} id={id}{space}{note}",
                node = record.node,
                peer = record.peer.ip(),
                method = record.method,
                target = record.target,
                version = record.version,
                status = record.status.as_u16(),
                cut = if complete { "" } else { "(cut)" },
                cache = record.cache_status.as_deref().unwrap_or("-"),
                total = total.as_secs_f64() * 1e3,
                ttfb = record.first_byte.as_secs_f64() * 1e3,
                upstream = upstream.as_deref().unwrap_or("-"),
                id = request_id.as_deref().unwrap_or("-"),
                space = if record.note.is_some() { " " } else { "" },
                note = record.note.as_deref().unwrap_or(""),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_is_the_cache_before_this_node_when_it_forwarded() {
        let status = "parent-eu; fwd=uri-miss; stored, edge-ams; fwd=uri-miss; stored";
        assert_eq!(
            upstream_of(status, "edge-ams").as_deref(),
            Some("parent-eu")
        );
        assert_eq!(upstream_of(status, "parent-eu").as_deref(), Some("origin"));
        assert_eq!(
            upstream_of("parent-eu; hit, edge-ams; fwd=uri-miss", "edge-ams").as_deref(),
            Some("parent-eu")
        );
        assert_eq!(
            upstream_of("edge-ams; hit; ttl=5", "edge-ams"),
            None,
            "a hit went nowhere"
        );
        assert_eq!(upstream_of("edge-ams; hit", "edge-nyc"), None);
    }
}
