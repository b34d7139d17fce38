//! The HTTP listener every Outpost node runs: accepting connections on a socket, serving a
//! [`Handler`] over HTTP/1.1 and HTTP/2 (prior knowledge) with hyper, enforcing the limits that
//! protect a node from its peers (header size and count, header read time, request body size),
//! writing the access log, and draining connections on shutdown. It also serves the admin
//! listener (health, Prometheus metrics, purge).
//!
//! TLS termination ([`tls`]) happens here too: rustls, SNI, ALPN, resumption and reload.
//!
//! Every request reaches its handler in one normal form ([`normal`]): host, target and
//! hop-by-hop headers.
//!
//! It knows nothing of caching, routing or content: what a request means is the handler's
//! business.

mod access_log;
pub mod admin;
pub mod admission;
pub mod body;
pub mod files;
mod framing;
pub mod h3;
pub mod health;
mod listener;
pub mod media_type;
pub mod network;
pub mod normal;
mod shutdown;
pub mod tls;

/// A [`std::time::Duration`] in a config as whole milliseconds.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, to: S) -> Result<S::Ok, S::Error> {
        to.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(from: D) -> Result<Duration, D::Error> {
        u64::deserialize(from).map(Duration::from_millis)
    }
}

pub use access_log::{AccessLogFormat, AccessNote, RequestId};
pub use body::{Body, BoxError};

/// The path every node answers itself on its data port, for health checks; it is left out of
/// the access log.
pub const HEALTH_PATH: &str = "/_outpost/health";
/// Names a pushed release: on responses, the release that answered; on requests, the
/// release to answer from (a page pins its assets to its own release). The one `outpost-*`
/// request header a client may send.
pub const RELEASE_HEADER: &str = "outpost-release";

/// The last purge of the fleet's sequence a node has applied, with every one before it: sent
/// by an edge to its parents and by a parent in its answers (health probes too), so a node
/// cut off from the control node learns from a peer that it missed a purge.
pub const PURGE_SEQ_HEADER: &str = "outpost-purge-seq";

/// The purge sequence number a [`PURGE_SEQ_HEADER`] value names.
pub fn purge_seq(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}
pub use listener::{Handler, Limits, Peer, serve, serve_tls};
pub use shutdown::{Shutdown, ShutdownSignal};
