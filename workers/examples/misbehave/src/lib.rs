//! `misbehave`: a worker that breaks every limit on purpose, one per path, so tests can check
//! that the edge stops it and goes on serving: `/loop` never yields, `/alloc` allocates without
//! end, `/panic` traps, `/recurse` recurses without end, `/endless` writes a body forever,
//! `/fetch-many` makes outbound requests until refused, `/forbidden` tries a host it may not
//! reach, `/sleep` waits half a second without using CPU. Anything else answers 200.

use std::hint::black_box;

use outpost_guest::{Forward, wasi};
use wasi::http::types::{IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct Misbehave;

fn recurse(depth: u64) -> u64 {
    if depth == 0 {
        return 0;
    }
    black_box(recurse(black_box(depth - 1))) + 1
}

impl wasi::exports::http::incoming_handler::Guest for Misbehave {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        match path.as_str() {
            "/loop" => {
                let mut n = 0u64;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            }
            "/alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 8 << 20]);
                    black_box(&hoard);
                }
            }
            "/panic" => panic!("misbehave: a deliberate panic"),
            "/recurse" => {
                let depth = recurse(black_box(u64::MAX));
                outpost_guest::respond(out, 200, &[], depth.to_string().as_bytes());
            }
            "/endless" => {
                let response = OutgoingResponse::new(wasi::http::types::Fields::new());
                let body = response.body().unwrap();
                ResponseOutparam::set(out, Ok(response));
                let stream = body.write().unwrap();
                let chunk = vec![b'x'; 64 * 1024];
                while outpost_guest::write_all(&stream, &chunk) {}
                drop(stream);
                let _ = OutgoingBody::finish(body, None);
            }
            "/fetch-many" => {
                let mut fetched = 0;
                let mut last_error = String::new();
                for _ in 0..100 {
                    match outpost_guest::fetch(
                        &request,
                        &Forward {
                            path: Some("/"),
                            ..Forward::default()
                        },
                    ) {
                        Ok(_) => fetched += 1,
                        Err(error) => {
                            last_error = format!("{error:?}");
                            break;
                        }
                    }
                }
                let body = format!("fetched {fetched}, then: {last_error}\n");
                outpost_guest::respond(out, 200, &[], body.as_bytes());
            }
            "/forbidden" => {
                let outgoing = wasi::http::types::OutgoingRequest::new(wasi::http::types::Fields::new());
                let _ = outgoing.set_authority(Some("example.com"));
                let _ = outgoing.set_scheme(Some(&wasi::http::types::Scheme::Http));
                let _ = outgoing.set_path_with_query(Some("/"));
                let result = wasi::http::outgoing_handler::handle(outgoing, None).and_then(|pending| {
                    pending.subscribe().block();
                    pending.get().unwrap().unwrap()
                });
                let body = format!("{:?}\n", result.map(|r| r.status()));
                outpost_guest::respond(out, 502, &[], body.as_bytes());
            }
            "/sleep" => {
                // Waits without using CPU: holds its instance slot for half a second.
                wasi::clocks::monotonic_clock::subscribe_duration(500_000_000).block();
                let version = std::env::var("VERSION").unwrap_or_default();
                let body = format!("slept; version {version}\n");
                outpost_guest::respond(out, 200, &[], body.as_bytes());
            }
            _ => outpost_guest::respond(out, 200, &[], b"well behaved\n"),
        }
    }
}

wasi::http::proxy::export!(Misbehave with_types_in wasi);
