//! Turning a [`Selection`] and a full response into the response to send.

use std::hash::{BuildHasher, Hasher};

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{
    ACCEPT_RANGES, CONTENT_ENCODING, CONTENT_LANGUAGE, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
    TRAILER, TRANSFER_ENCODING,
};
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::{ByteRange, Selection};

/// Representation metadata a 304 must not carry (RFC 9110 section 15.4.5): the client keeps its
/// own. Validators and caching fields (ETag, Last-Modified, Cache-Control, Expires, Vary, Date,
/// Content-Location) and anything else the caller set stay.
const NOT_FOR_304: [http::header::HeaderName; 7] = [
    CONTENT_LENGTH,
    CONTENT_TYPE,
    CONTENT_RANGE,
    CONTENT_ENCODING,
    CONTENT_LANGUAGE,
    TRANSFER_ENCODING,
    TRAILER,
];

/// Apply `selection` to a full response with `status`, `headers` and `body`; returns the status
/// and body to send and edits `headers` to match:
///
/// - `Full`: status and body unchanged, Content-Length set.
/// - `NotModified`: 304, empty body, representation metadata (Content-Length, Content-Type,
///   Content-Range, Content-Encoding, ...) removed; ETag, Last-Modified, Cache-Control, Expires,
///   Vary and Date kept.
/// - `Partial`: 206; one range gets `Content-Range: bytes s-e/len`, several get a
///   `multipart/byteranges` body whose parts carry the original Content-Type and their own
///   Content-Range.
/// - `Unsatisfiable`: 416, `Content-Range: bytes */len`, empty body.
/// - `PreconditionFailed`: 412, empty body.
///
/// `Accept-Ranges: bytes` is set on every 200 and 206. Conditional and range selections only
/// apply to a 2xx (ranges only to a 200): for any other status the response is sent as `Full`,
/// as are ranges that do not fit in `body`.
pub fn render(
    selection: &Selection,
    status: StatusCode,
    headers: &mut HeaderMap,
    body: &Bytes,
) -> (StatusCode, Bytes) {
    let length = body.len() as u64;
    if let Selection::Partial(ranges) = selection
        && ranges.len() > 1
        && ranges_apply(status, ranges, length)
    {
        headers.remove(TRANSFER_ENCODING);
        headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        let part = multipart(ranges, headers, body);
        headers.insert(CONTENT_LENGTH, HeaderValue::from(part.len()));
        return (StatusCode::PARTIAL_CONTENT, part);
    }
    let (status, extent) = render_head(selection, status, headers, length);
    let body = match extent {
        Extent::Whole => body.clone(),
        Extent::Range(range) => body.slice(range.start as usize..=range.end as usize),
        Extent::Nothing => Bytes::new(),
    };
    (status, body)
}

/// Which bytes of the representation a response from [`render_head`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// The whole body.
    Whole,
    /// One range of it (206).
    Range(ByteRange),
    /// No body (304, 412, 416).
    Nothing,
}

/// [`render`] for a body the caller streams itself (a file, say): edits `headers` the same
/// way and returns the status and which bytes of the `length`-byte body to send. Several
/// ranges are answered with the whole body (RFC 9110 allows ignoring Range), so no
/// multipart body has to be built from a stream.
pub fn render_head(
    selection: &Selection,
    status: StatusCode,
    headers: &mut HeaderMap,
    length: u64,
) -> (StatusCode, Extent) {
    let applicable = match selection {
        Selection::Full => false,
        Selection::NotModified | Selection::PreconditionFailed => status.is_success(),
        Selection::Unsatisfiable => status == StatusCode::OK,
        Selection::Partial(ranges) => ranges.len() == 1 && ranges_apply(status, ranges, length),
    };
    if !applicable {
        return (full(status, headers, length), Extent::Whole);
    }
    match selection {
        Selection::Full => (full(status, headers, length), Extent::Whole),
        Selection::NotModified => {
            for name in NOT_FOR_304 {
                headers.remove(name);
            }
            headers.remove(ACCEPT_RANGES);
            (StatusCode::NOT_MODIFIED, Extent::Nothing)
        }
        Selection::PreconditionFailed => {
            empty(headers);
            (StatusCode::PRECONDITION_FAILED, Extent::Nothing)
        }
        Selection::Unsatisfiable => {
            empty(headers);
            headers.insert(CONTENT_RANGE, header_value(format!("bytes */{length}")));
            (StatusCode::RANGE_NOT_SATISFIABLE, Extent::Nothing)
        }
        Selection::Partial(ranges) => {
            let range = ranges[0];
            headers.remove(TRANSFER_ENCODING);
            headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            headers.insert(CONTENT_RANGE, content_range(&range, length));
            headers.insert(CONTENT_LENGTH, HeaderValue::from(range.len()));
            (StatusCode::PARTIAL_CONTENT, Extent::Range(range))
        }
    }
}

/// Ranges are only applied to a 200, and only when each lies within the body.
fn ranges_apply(status: StatusCode, ranges: &[ByteRange], length: u64) -> bool {
    status == StatusCode::OK
        && !ranges.is_empty()
        && ranges.iter().all(|r| r.start <= r.end && r.end < length)
}

fn full(status: StatusCode, headers: &mut HeaderMap, length: u64) -> StatusCode {
    if status == StatusCode::OK {
        headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    if status != StatusCode::NOT_MODIFIED && status != StatusCode::NO_CONTENT {
        headers.remove(TRANSFER_ENCODING);
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
    status
}

/// Headers for a response with an empty body that is not the representation.
fn empty(headers: &mut HeaderMap) {
    for name in [
        CONTENT_TYPE,
        CONTENT_RANGE,
        CONTENT_ENCODING,
        CONTENT_LANGUAGE,
        TRANSFER_ENCODING,
        TRAILER,
        ACCEPT_RANGES,
    ] {
        headers.remove(name);
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(0u64));
}

/// The `multipart/byteranges` body (RFC 9110 section 14.6); sets Content-Type to it.
fn multipart(ranges: &[ByteRange], headers: &mut HeaderMap, body: &Bytes) -> Bytes {
    let length = body.len() as u64;
    let part_type = headers.remove(CONTENT_TYPE);
    let boundary = boundary(ranges, body);
    let mut out = BytesMut::new();
    for range in ranges {
        out.put_slice(b"--");
        out.put_slice(boundary.as_bytes());
        out.put_slice(b"\r\n");
        if let Some(part_type) = &part_type {
            out.put_slice(b"Content-Type: ");
            out.put_slice(part_type.as_bytes());
            out.put_slice(b"\r\n");
        }
        out.put_slice(b"Content-Range: ");
        out.put_slice(content_range(range, length).as_bytes());
        out.put_slice(b"\r\n\r\n");
        out.put_slice(&body[range.start as usize..=range.end as usize]);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"--");
    out.put_slice(boundary.as_bytes());
    out.put_slice(b"--\r\n");
    headers.insert(
        CONTENT_TYPE,
        header_value(format!("multipart/byteranges; boundary={boundary}")),
    );
    out.freeze()
}

/// A random boundary that occurs in none of the parts.
fn boundary(ranges: &[ByteRange], body: &Bytes) -> String {
    loop {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let boundary = format!("outpost-{random:016x}");
        let clash = ranges.iter().any(|r| {
            body[r.start as usize..=r.end as usize]
                .windows(boundary.len())
                .any(|w| w == boundary.as_bytes())
        });
        if !clash {
            return boundary;
        }
    }
}

fn content_range(range: &ByteRange, length: u64) -> HeaderValue {
    header_value(format!("bytes {}-{}/{length}", range.start, range.end))
}

fn header_value(s: String) -> HeaderValue {
    HeaderValue::try_from(s).expect("ASCII without control characters")
}
