//! `hello`: answers every request from the edge itself, never reaching the origin.

use outpost_guest::wasi;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Hello;

impl wasi::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let edge = outpost_guest::header(&request, "outpost-edge").unwrap_or_default();
        let body = format!("Hello from the edge {edge}!\n");
        outpost_guest::respond(
            out,
            200,
            &[("content-type", "text/plain; charset=utf-8")],
            body.as_bytes(),
        );
    }
}

wasi::http::proxy::export!(Hello with_types_in wasi);
