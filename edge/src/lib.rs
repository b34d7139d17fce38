//! The edge node: the tier clients talk to. It runs the shared cache engine
//! ([`outpost_cache::CacheNode`]) in front of a [`ParentSet`]: each object's parent is chosen by
//! consistent (rendezvous) hashing of its cache key, so every object is cached at one parent;
//! parents are health-checked actively, a parent that is down is skipped for the next one in
//! the object's order, and when no parent is healthy the edge goes to the origin itself.
//!
//! Per-hostname HTTPS policy (redirects to HTTPS, HSTS) lives here too; TLS termination itself
//! is the listener's ([`outpost_server::tls`]). ESI is `outpost-esi`'s, workers are
//! `outpost-workers`', caching rules live in `outpost-cache`.

mod cmcd;
pub mod cmcd_sessions;
mod cmsd;
mod cors;
mod health;
mod https;
mod parents;
mod paths;
mod prefetch;
mod protocols;
mod query;
mod signed;

pub use cmcd::{Cmcd, CmcdFront, CmcdMetrics, NextObject};
pub use cmsd::{CMSD_DYNAMIC, CmsdFront};
pub use cors::{Cors, CorsError, CorsRule, CorsRules};
pub use health::spawn_health_checks;
pub use https::{HostPolicy, HttpsPolicy};
pub use parents::{ParentSet, ParentTarget};
pub use paths::{OverlaySettings, PathStats};
pub use prefetch::{Prefetch, PrefetchConfig};
pub use protocols::{ClientProtocols, ProtocolCount};
pub use signed::{
    SignedUrls, Signing, SigningConfig, SigningError, SigningKey, TOKEN_COOKIE, TOKEN_PARAMETER,
    TokenRefusal,
};

use outpost_cache::{CacheConfig, CacheNode};
use outpost_server::admin::Registry;

/// An edge node's cache engine over its parents.
pub type Edge = CacheNode<ParentSet>;

/// Builds the edge `name` in front of `parents` (and `origin` as the last resort).
pub fn edge(name: &str, config: &CacheConfig, parents: ParentSet, registry: &mut Registry) -> Edge {
    let lease = parents.purge_lease();
    CacheNode::with_purge_lease(name, config, parents, registry, lease)
}
