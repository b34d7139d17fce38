//! `counter`: counts visits per path in the edge's key-value store (`wasi:keyvalue`, local to
//! the edge and kept across restarts) and says how many there have been. `POST /reset` empties
//! the count of `/`.

use outpost_guest::wasi;
use wasi::http::types::{IncomingRequest, Method, ResponseOutparam};

mod keyvalue {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "wasi:keyvalue/imports@0.2.0-draft",
        generate_all,
    });
}

use keyvalue::wasi::keyvalue::{atomics, store};

struct Counter;

impl wasi::exports::http::incoming_handler::Guest for Counter {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_else(|| "/".to_owned());
        let bucket = match store::open("visits") {
            Ok(bucket) => bucket,
            Err(error) => {
                let body = format!("no store: {error:?}\n");
                outpost_guest::respond(out, 500, &[], body.as_bytes());
                return;
            }
        };
        if matches!(request.method(), Method::Post) && path == "/reset" {
            let _ = bucket.delete("/");
            outpost_guest::respond(out, 200, &[], b"reset\n");
            return;
        }
        match atomics::increment(&bucket, &path, 1) {
            Ok(count) => {
                let body = format!("{path} has been visited {count} times on this edge\n");
                outpost_guest::respond(
                    out,
                    200,
                    &[
                        ("content-type", "text/plain"),
                        ("x-count", &count.to_string()),
                        ("cache-control", "no-store"),
                    ],
                    body.as_bytes(),
                );
            }
            Err(error) => {
                let body = format!("increment failed: {error:?}\n");
                outpost_guest::respond(out, 500, &[], body.as_bytes());
            }
        }
    }
}

wasi::http::proxy::export!(Counter with_types_in wasi);
