//! The caching reverse-proxy engine both tiers of Outpost run (edge and parent).
//!
//! It owns the cache rules of RFC 9111 as plain logic with no I/O ([`directives`],
//! [`freshness`], [`policy`], [`key`], [`status`], [`headers`]), the object [`store`] on moka,
//! request coalescing with read-while-writer, purge, and the pipeline ([`CacheNode`]) from a
//! downstream request to an [`Upstream`] fetch.
//!
//! It does not choose upstreams (an edge hashes over parents, a parent goes to the origin: each
//! tier implements [`Upstream`]), terminate TLS, assemble ESI or run workers.

mod coalesce;
pub mod config;
pub mod directives;
pub mod freshness;
pub mod headers;
pub mod key;
mod metrics;
pub mod policy;
mod proxy;
pub mod status;
pub mod store;
mod stored_headers;
pub mod upstream;

pub use config::CacheConfig;
pub use key::CacheKey;
pub use metrics::CacheMetrics;
pub use proxy::{CacheNode, HEALTH_PATH, Tier};
pub use upstream::{HttpClient, Upstream, UpstreamError, UpstreamTimeouts};
