//! One line per request, in the common log format extended with the cache status and the time
//! taken, on the `outpost::access` tracing target.

use std::net::SocketAddr;
use std::time::Duration;

/// A word a handler adds to its request's access-log line, as a response extension (the
/// edge's CMCD reader puts what the player reported there).
#[derive(Debug, Clone)]
pub struct AccessNote(pub String);

pub(crate) struct AccessRecord<'a> {
    pub node: &'a str,
    pub peer: SocketAddr,
    pub method: &'a http::Method,
    pub target: &'a str,
    pub version: http::Version,
    pub status: http::StatusCode,
    pub length: Option<u64>,
    pub cache_status: Option<&'a str>,
    pub elapsed: Duration,
    pub note: Option<&'a str>,
}

/// Whether access lines are wanted at all (`RUST_LOG` may turn them off).
pub(crate) fn enabled() -> bool {
    tracing::enabled!(target: "outpost::access", tracing::Level::INFO)
}

pub(crate) fn log(record: &AccessRecord<'_>) {
    let time = chrono::Utc::now().format("%d/%b/%Y:%H:%M:%S %z");
    let length = record
        .length
        .map_or_else(|| "-".to_owned(), |n| n.to_string());
    tracing::info!(
        target: "outpost::access",
        "{node} {peer} - - [{time}] \"{method} {target} {version:?}\" {status} {length} \"{cache}\" {ms:.1}ms{space}{note}",
        node = record.node,
        peer = record.peer.ip(),
        method = record.method,
        target = record.target,
        version = record.version,
        status = record.status.as_u16(),
        cache = record.cache_status.unwrap_or("-"),
        ms = record.elapsed.as_secs_f64() * 1000.0,
        space = if record.note.is_some() { " " } else { "" },
        note = record.note.unwrap_or(""),
    );
}
