//! The caching reverse-proxy engine both tiers of Outpost run (edge and parent).
//!
//! It owns the cache rules of RFC 9111 as plain logic with no I/O ([`directives`],
//! [`freshness`], [`policy`], [`key`], `status`, [`headers`]), the planning step that turns
//! a lookup into what happens next (`plan`), the object `store` on quick_cache with the [`disk`] tier
//! under it, request
//! coalescing with read-while-writer, hit-for-pass, purge, and the pipeline ([`CacheNode`])
//! from a downstream request to an [`Upstream`] fetch, in named phases: plan, fetch, respond.
//!
//! It does not choose upstreams (an edge hashes over parents, a parent goes to the origin: each
//! tier implements [`Upstream`]), terminate TLS, assemble ESI or run workers, and it leaves the
//! CDN-only response headers (`Surrogate-Control`, `Surrogate-Key`, ...) in place: the edge's
//! front removes them before a client sees them.

pub mod admin;
mod coalesce;
pub mod config;
pub mod directives;
pub mod disk;
pub mod freshness;
pub mod headers;
mod hit_for_pass;
pub mod key;
mod lease;
mod metrics;
mod plan;
pub mod policy;
mod proxy;
mod status;
mod store;
mod stored_headers;
mod stored_object;
pub mod surrogate;
pub mod upstream;

pub use config::CacheConfig;
pub use key::CacheKey;
pub use lease::PurgeLease;
pub use proxy::{CacheNode, HEALTH_PATH};
pub use surrogate::SurrogateControl;
pub use upstream::{HttpClient, Upstream, UpstreamError, UpstreamTimeouts};
