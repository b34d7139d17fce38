//! `passthrough`: sends every request on unchanged, through the edge's cache, the parent tier
//! and the origin, and streams the answer back. The cost of a worker on the route, and nothing
//! else.

use outpost_guest::{Forward, wasi};
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Passthrough;

impl wasi::exports::http::incoming_handler::Guest for Passthrough {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        outpost_guest::forward(request, out, Forward::default());
    }
}

wasi::http::proxy::export!(Passthrough with_types_in wasi);
