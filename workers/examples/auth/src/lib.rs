//! `auth`: lets a request through only with `Authorization: Bearer $AUTH_TOKEN` or a session
//! cookie `outpost_session=USER.SIGNATURE`, where SIGNATURE is the hex HMAC-SHA256 of USER under
//! `$SESSION_SECRET`; anything else gets 401. Accepted requests go on towards the origin with
//! `outpost-user` set (and the credentials removed).

use hmac::{Hmac, Mac};
use outpost_guest::{Forward, wasi};
use sha2::Sha256;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Auth;

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The user a valid session cookie names.
fn session_user(cookie: &str, secret: &str) -> Option<String> {
    let (user, signature) = cookie.rsplit_once('.')?;
    let signature: Vec<u8> = (0..signature.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(signature.get(i..i + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(user.as_bytes());
    mac.verify_slice(&signature).ok()?;
    Some(user.to_owned())
}

impl wasi::exports::http::incoming_handler::Guest for Auth {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let token = std::env::var("AUTH_TOKEN").unwrap_or_default();
        let secret = std::env::var("SESSION_SECRET").unwrap_or_default();
        let bearer = outpost_guest::header(&request, "authorization")
            .and_then(|value| value.strip_prefix("Bearer ").map(str::to_owned));
        let user = match bearer {
            Some(given) if !token.is_empty() && constant_time_eq(given.as_bytes(), token.as_bytes()) => {
                Some("token".to_owned())
            }
            _ if !secret.is_empty() => outpost_guest::cookie(&request, "outpost_session")
                .and_then(|cookie| session_user(&cookie, &secret)),
            _ => None,
        };
        let Some(user) = user else {
            eprintln!("auth: refused {}", request.path_with_query().unwrap_or_default());
            outpost_guest::respond(
                out,
                401,
                &[
                    ("content-type", "text/plain"),
                    ("www-authenticate", "Bearer realm=\"outpost\""),
                ],
                b"a bearer token or a signed session cookie is required\n",
            );
            return;
        };
        outpost_guest::forward(
            request,
            out,
            Forward {
                request_headers: &[("outpost-user", &user)],
                remove_request_headers: &["authorization", "outpost-user"],
                ..Forward::default()
            },
        );
    }
}

wasi::http::proxy::export!(Auth with_types_in wasi);
