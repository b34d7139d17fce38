//! The parent tier: a regional cache between the edges and the origin. It runs the shared
//! cache engine ([`outpost_cache::CacheNode`]) with the origin as its only upstream, so a miss
//! at many edges for one object becomes one coalesced request here and one at the origin
//! (origin shielding).
//!
//! It authenticates to a shielded origin with the client certificate its [`HttpClient`]
//! carries. Caching rules live in `outpost-cache`, parent selection in `outpost-edge`.

mod purge_seq;

pub use purge_seq::PurgeSeqFront;

use http::{Request, Response, Uri};
use outpost_cache::{CacheConfig, CacheKey, CacheNode, HttpClient, Upstream, UpstreamError};
use outpost_server::Body;
use outpost_server::admin::Registry;

/// The origin a parent pulls from.
#[derive(Clone)]
pub struct OriginUpstream {
    origin: Uri,
    client: HttpClient,
}

impl OriginUpstream {
    pub fn new(origin: Uri, client: HttpClient) -> Self {
        Self { origin, client }
    }
}

impl Upstream for OriginUpstream {
    async fn send(
        &self,
        request: Request<Body>,
        _key: &CacheKey,
    ) -> Result<Response<Body>, UpstreamError> {
        self.client.send_to(&self.origin, request).await
    }
}

/// A parent node's cache engine over the origin.
pub type Parent = CacheNode<OriginUpstream>;

/// Builds the parent `name` in front of `origin`, reached through `client` (which carries the
/// parent's client certificate when the origin is shielded by mutual TLS).
pub fn parent(
    name: &str,
    config: &CacheConfig,
    origin: Uri,
    client: HttpClient,
    registry: &mut Registry,
) -> Parent {
    CacheNode::new(name, config, OriginUpstream::new(origin, client), registry)
}
