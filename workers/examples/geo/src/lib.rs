//! `geo`: personalises by where the edge is. The edge tells its workers its name and location
//! (`outpost-edge`, `outpost-edge-location: LAT,LON`); this worker greets the visitor for that
//! region and says which edge answered.

use outpost_guest::wasi;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Geo;

/// A region and its greeting, from the edge's coordinates.
fn region(latitude: f64, longitude: f64) -> (&'static str, &'static str) {
    if longitude < -30.0 {
        ("americas", "Hello")
    } else if longitude > 60.0 || latitude < -10.0 {
        ("asia-pacific", "Selamat datang")
    } else {
        ("europe", "Welkom")
    }
}

impl wasi::exports::http::incoming_handler::Guest for Geo {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let edge = outpost_guest::header(&request, "outpost-edge").unwrap_or_default();
        let location = outpost_guest::header(&request, "outpost-edge-location")
            .and_then(|value| {
                let (lat, lon) = value.split_once(',')?;
                Some((lat.trim().parse().ok()?, lon.trim().parse().ok()?))
            });
        let Some((latitude, longitude)) = location else {
            outpost_guest::respond(out, 500, &[("content-type", "text/plain")], b"the edge sent no location\n");
            return;
        };
        let (region, greeting) = region(latitude, longitude);
        let body = format!(
            "<!doctype html><title>{greeting}</title><h1>{greeting}!</h1><p>Served by {edge} in the {region} region ({latitude:.2}, {longitude:.2}).</p>\n"
        );
        outpost_guest::respond(
            out,
            200,
            &[
                ("content-type", "text/html; charset=utf-8"),
                ("x-region", region),
                ("cache-control", "private, max-age=0"),
            ],
            body.as_bytes(),
        );
    }
}

wasi::http::proxy::export!(Geo with_types_in wasi);
