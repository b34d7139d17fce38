//! What the example workers share: reading a request, answering directly, and forwarding a
//! request on through the edge (its cache, the parent tier and the origin) with the answer
//! streamed back. Plain `wasi:http` 0.2 calls, nothing specific to Outpost.

pub use wasi;

use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingRequest, IncomingResponse, InputStream,
    OutgoingBody, OutgoingRequest, OutgoingResponse, OutputStream, ResponseOutparam,
};
use wasi::io::streams::StreamError;

/// Headers a proxy must not copy from one message to the next.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "http2-settings",
    "proxy-authenticate",
    "proxy-authorization",
];

/// The first value of a request header, as text.
pub fn header(request: &IncomingRequest, name: &str) -> Option<String> {
    request
        .headers()
        .get(name)
        .into_iter()
        .next()
        .and_then(|value| String::from_utf8(value).ok())
}

/// The value of cookie `name` in the request, if any.
pub fn cookie(request: &IncomingRequest, name: &str) -> Option<String> {
    request
        .headers()
        .get("cookie")
        .into_iter()
        .filter_map(|value| String::from_utf8(value).ok())
        .flat_map(|line| {
            line.split(';')
                .map(|pair| pair.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .find_map(|pair| {
            pair.split_once('=')
                .filter(|(key, _)| *key == name)
                .map(|(_, value)| value.to_owned())
        })
}

fn fields(headers: &[(&str, &str)]) -> Fields {
    let list: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.as_bytes().to_vec()))
        .collect();
    Fields::from_list(&list).unwrap_or_else(|_| Fields::new())
}

/// Answers with a complete response.
pub fn respond(out: ResponseOutparam, status: u16, headers: &[(&str, &str)], body: &[u8]) {
    let response = OutgoingResponse::new(fields(headers));
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        write_all(&stream, body);
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

/// Writes `bytes` in chunks the stream accepts.
pub fn write_all(stream: &OutputStream, bytes: &[u8]) -> bool {
    bytes
        .chunks(4096)
        .all(|chunk| stream.blocking_write_and_flush(chunk).is_ok())
}

/// Copies `input` to `output` until the input ends; false if either side failed. The host
/// moves the bytes (`splice`), so they never pass through the worker's memory.
fn pump(input: &InputStream, output: &OutputStream) -> bool {
    loop {
        match output.blocking_splice(input, 64 * 1024) {
            Ok(_) => {}
            Err(StreamError::Closed) => return true,
            Err(_) => return false,
        }
    }
}

/// How a forwarded request should differ from the one the worker got.
#[derive(Default)]
pub struct Forward<'a> {
    /// Another path (and query) instead of the request's.
    pub path: Option<&'a str>,
    /// Headers to add to the request.
    pub request_headers: &'a [(&'a str, &'a str)],
    /// Headers of the request not to send on (lowercase names).
    pub remove_request_headers: &'a [&'a str],
    /// Headers to add to the response.
    pub response_headers: &'a [(&'a str, &'a str)],
}

/// Sends the request on towards the origin through the edge and streams the answer back; a
/// failure to reach it is a 502.
pub fn forward(request: IncomingRequest, out: ResponseOutparam, change: Forward<'_>) {
    let response = match fetch(&request, &change) {
        Ok(response) => response,
        Err(error) => {
            let message = format!("upstream request failed: {error:?}\n");
            respond(out, 502, &[("content-type", "text/plain")], message.as_bytes());
            return;
        }
    };
    let headers: Vec<(String, Vec<u8>)> = response
        .headers()
        .entries()
        .into_iter()
        .filter(|(name, _)| !HOP_BY_HOP.contains(&name.to_ascii_lowercase().as_str()))
        .chain(
            change
                .response_headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec())),
        )
        .collect();
    let answer = OutgoingResponse::new(Fields::from_list(&headers).unwrap_or_else(|_| Fields::new()));
    let _ = answer.set_status_code(response.status());
    let Ok(outgoing) = answer.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(answer));
    let Ok(incoming) = response.consume() else {
        return;
    };
    let complete = match (incoming.stream(), outgoing.write()) {
        (Ok(input), Ok(output)) => pump(&input, &output),
        _ => false,
    };
    drop(IncomingBody::finish(incoming));
    if complete {
        let _ = OutgoingBody::finish(outgoing, None);
    }
    // An incomplete body is left unfinished, so the client sees it break.
}

/// Makes the outbound request and waits for the response head.
pub fn fetch(request: &IncomingRequest, change: &Forward<'_>) -> Result<IncomingResponse, ErrorCode> {
    let headers: Vec<(String, Vec<u8>)> = request
        .headers()
        .entries()
        .into_iter()
        .filter(|(name, _)| {
            let name = name.to_ascii_lowercase();
            !HOP_BY_HOP.contains(&name.as_str())
                && !change.remove_request_headers.contains(&name.as_str())
        })
        .chain(
            change
                .request_headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec())),
        )
        .collect();
    let outgoing = OutgoingRequest::new(Fields::from_list(&headers).unwrap_or_else(|_| Fields::new()));
    let _ = outgoing.set_method(&request.method());
    let _ = outgoing.set_scheme(request.scheme().as_ref());
    let _ = outgoing.set_authority(request.authority().as_deref());
    let path = change
        .path
        .map(str::to_owned)
        .or_else(|| request.path_with_query());
    let _ = outgoing.set_path_with_query(path.as_deref());
    let body = outgoing.body().map_err(|()| ErrorCode::InternalError(None))?;
    let pending = outgoing_handler::handle(outgoing, None)?;
    // The request body, if any, streams after the head.
    if let Ok(incoming) = request.consume() {
        if let (Ok(input), Ok(output)) = (incoming.stream(), body.write()) {
            pump(&input, &output);
        }
    }
    let _ = OutgoingBody::finish(body, None);
    pending.subscribe().block();
    match pending.get() {
        Some(Ok(result)) => result,
        _ => Err(ErrorCode::InternalError(Some("no response".to_owned()))),
    }
}
