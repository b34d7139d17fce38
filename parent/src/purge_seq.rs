//! A parent's place in the fleet's purge sequence, exchanged with the edges in front of it:
//! an edge names the last purge it applied in every request ([`PURGE_SEQ_HEADER`]), and the
//! parent names its own in every answer, health probes included. So a node cut off from the
//! control node learns from its peer that it missed a purge, and revalidates until it has
//! caught up instead of waiting for its lease to run out.
//!
//! The number is taken from whoever reaches the parent's data port: parents are meant to be
//! reached by edges only. A forged number beyond the control node's head costs the parent one
//! sync interval of revalidation; the control node's next answer forgets it.

use std::sync::Arc;

use http::{HeaderValue, Request, Response};
use outpost_cache::PurgeLease;
use outpost_server::{Body, Handler, PURGE_SEQ_HEADER, Peer};

/// Serves `inner` with the purge sequence exchanged through `lease`.
pub struct PurgeSeqFront<H> {
    inner: Arc<H>,
    lease: Arc<PurgeLease>,
}

impl<H> PurgeSeqFront<H> {
    pub fn new(inner: Arc<H>, lease: Arc<PurgeLease>) -> Self {
        Self { inner, lease }
    }
}

impl<H: Handler> Handler for PurgeSeqFront<H> {
    async fn handle(&self, mut request: Request<Body>, peer: Peer) -> Response<Body> {
        // Never sent on to the origin.
        if let Some(value) = request.headers_mut().remove(PURGE_SEQ_HEADER)
            && let Some(seq) = outpost_server::purge_seq(value.as_bytes())
        {
            self.lease.heard_of(seq);
        }
        let mut response = self.inner.handle(request, peer).await;
        if let Some(applied) = self.lease.announced() {
            response
                .headers_mut()
                .insert(PURGE_SEQ_HEADER, HeaderValue::from(applied));
        }
        response
    }
}
