//! `rewrite`: an A/B test. A share of new visitors (`$B_SHARE` percent, 50 by default) is
//! assigned variant B and sees the site under `$B_PREFIX` (`/b` by default): `/page` is fetched
//! as `/b/page`. The variant sticks through an `ab` cookie; the response says which it was in
//! `x-ab-variant`.

use outpost_guest::{Forward, wasi};
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Rewrite;

impl wasi::exports::http::incoming_handler::Guest for Rewrite {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let share: u64 = std::env::var("B_SHARE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(50);
        let prefix = std::env::var("B_PREFIX").unwrap_or_else(|_| "/b".to_owned());
        let sticky = outpost_guest::cookie(&request, "ab").filter(|v| v == "A" || v == "B");
        let variant = sticky.clone().unwrap_or_else(|| {
            let roll = wasi::random::random::get_random_u64() % 100;
            if roll < share { "B" } else { "A" }.to_owned()
        });
        let path = request.path_with_query().unwrap_or_else(|| "/".to_owned());
        let path = if variant == "B" {
            format!("{prefix}{path}")
        } else {
            path
        };
        let cookie = format!("ab={variant}; Path=/; Max-Age=2592000; SameSite=Lax");
        let mut response_headers = vec![("x-ab-variant", variant.as_str())];
        if sticky.is_none() {
            response_headers.push(("set-cookie", cookie.as_str()));
        }
        outpost_guest::forward(
            request,
            out,
            Forward {
                path: Some(&path),
                response_headers: &response_headers,
                ..Forward::default()
            },
        );
    }
}

wasi::http::proxy::export!(Rewrite with_types_in wasi);
