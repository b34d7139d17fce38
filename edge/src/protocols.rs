//! Client requests by protocol at the edge (`outpost_client_requests_total{protocol}`: `http/1.0`,
//! `http/1.1`, `h2`, `h3`), counted as they enter, before any worker, ESI or cache.

use http::{Request, Response, Version};
use outpost_server::{Body, Handler, Peer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabel {
    protocol: &'static str,
}

/// The counters, one per protocol, made once.
#[derive(Clone)]
pub struct ClientProtocols {
    counts: [Counter; 4],
}

const PROTOCOLS: [&str; 4] = ["http/1.0", "http/1.1", "h2", "h3"];

impl ClientProtocols {
    pub fn register(registry: &mut Registry) -> Self {
        let family: Family<ProtocolLabel, Counter> = Family::default();
        let counts =
            PROTOCOLS.map(|protocol| family.get_or_create(&ProtocolLabel { protocol }).clone());
        registry.register(
            "outpost_client_requests",
            "Client requests by protocol (http/1.0, http/1.1, h2, h3)",
            family,
        );
        Self { counts }
    }

    fn count(&self, version: Version) {
        let index = match version {
            Version::HTTP_10 | Version::HTTP_09 => 0,
            Version::HTTP_2 => 2,
            Version::HTTP_3 => 3,
            _ => 1,
        };
        self.counts[index].inc();
    }
}

/// Counts each client request by its protocol, then hands it on.
pub struct ProtocolCount<H> {
    inner: H,
    protocols: ClientProtocols,
}

impl<H> ProtocolCount<H> {
    pub fn new(inner: H, protocols: ClientProtocols) -> Self {
        Self { inner, protocols }
    }
}

impl<H: Handler> Handler for ProtocolCount<H> {
    async fn handle(&self, request: Request<Body>, peer: Peer) -> Response<Body> {
        if request.uri().path() != outpost_server::HEALTH_PATH {
            self.protocols.count(request.version());
        }
        self.inner.handle(request, peer).await
    }
}
