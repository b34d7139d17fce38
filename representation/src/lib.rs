//! Serving one selected representation the way RFC 9110 says: validators (ETag, Last-Modified),
//! conditional requests (If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since,
//! section 13) and byte ranges (Range, If-Range, section 14), ending in a 200, 206, 304, 412 or
//! 416 with the right headers and body. Both the origin server and the caches use it, so a
//! cached copy answers exactly like the origin would.
//!
//! It is plain logic over header maps and bytes: it does no I/O, chooses no representation
//! (content negotiation and `Vary` belong to the caller), and knows nothing of caching rules
//! (freshness, `Cache-Control` directives, storage) — those live in the cache crate.

mod etag;
mod range;
mod render;

#[cfg(test)]
mod tests;

use http::header::{
    ETAG, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, LAST_MODIFIED,
    RANGE,
};
use http::{HeaderMap, HeaderValue, Method};

pub use etag::EntityTag;
pub use range::{MAX_RANGES, Parsed as ParsedRange, parse_range};
pub use render::{Extent, render, render_head};

/// One byte range of the full body, both ends inclusive (`bytes=0-0` is the first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    /// Number of bytes in the range.
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// A range always holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// What to send for a request, decided by [`evaluate`] and carried out by [`render`].
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// The whole representation with the status the handler chose (normally 200).
    Full,
    /// 304: the client's cached copy is current.
    NotModified,
    /// 412: an If-Match or If-Unmodified-Since precondition failed.
    PreconditionFailed,
    /// 206: these ranges, in the order to send them, each within the body.
    Partial(Vec<ByteRange>),
    /// 416: a valid Range header none of whose ranges overlaps the body.
    Unsatisfiable,
}

/// Evaluate the request's preconditions (If-Match, If-Unmodified-Since, If-None-Match,
/// If-Modified-Since, in the order of RFC 9110 section 13.2.2, with strong comparison for
/// If-Match and weak comparison for If-None-Match, and `*` meaning "any current
/// representation") and then the Range header.
///
/// Range is only honoured for GET, and only when If-Range (if present) holds: a strong ETag that
/// matches strongly, or an HTTP-date equal to Last-Modified. Only the `bytes` unit is
/// understood; a syntactically invalid Range header is ignored (`Full`), a valid one none of
/// whose ranges is satisfiable gives `Unsatisfiable`. Overlapping ranges are coalesced; more
/// than [`MAX_RANGES`] ranges are answered with the full body.
///
/// `response` holds the representation's headers (ETag, Last-Modified); `length` is the full
/// body length. The caller is responsible for only applying the result to a response that would
/// otherwise be 2xx ([`render`] ignores the selection for any other status).
pub fn evaluate(
    method: &Method,
    request: &HeaderMap,
    response: &HeaderMap,
    length: u64,
) -> Selection {
    let current_etag = response
        .get(ETAG)
        .and_then(|v| EntityTag::parse(v.as_bytes()));
    let last_modified = response.get(LAST_MODIFIED).and_then(http_date);
    let safe = method == Method::GET || method == Method::HEAD;

    // Step 1: If-Match, else step 2: If-Unmodified-Since.
    if let Some(list) = etag::parse_list(request.get_all(IF_MATCH)) {
        let matched = match list {
            etag::TagList::Any => true,
            etag::TagList::Tags(tags) => current_etag
                .as_ref()
                .is_some_and(|cur| tags.iter().any(|t| t.strong_eq(cur))),
        };
        if !matched {
            return Selection::PreconditionFailed;
        }
    } else if let Some(since) = single(request, IF_UNMODIFIED_SINCE).and_then(http_date)
        && let Some(modified) = last_modified
        && modified > since
    {
        return Selection::PreconditionFailed;
    }

    // Step 3: If-None-Match, else step 4: If-Modified-Since (GET and HEAD only).
    if let Some(list) = etag::parse_list(request.get_all(IF_NONE_MATCH)) {
        let matched = match list {
            etag::TagList::Any => true,
            etag::TagList::Tags(tags) => current_etag
                .as_ref()
                .is_some_and(|cur| tags.iter().any(|t| t.weak_eq(cur))),
        };
        if matched {
            return if safe {
                Selection::NotModified
            } else {
                Selection::PreconditionFailed
            };
        }
    } else if safe
        && let Some(since) = single(request, IF_MODIFIED_SINCE).and_then(http_date)
        && let Some(modified) = last_modified
        && modified <= since
    {
        return Selection::NotModified;
    }

    // Step 5: Range, for GET only, and only while If-Range holds.
    if method != Method::GET || !request.contains_key(RANGE) {
        return Selection::Full;
    }
    if request.contains_key(IF_RANGE)
        && !if_range_holds(request, current_etag.as_ref(), response.get(LAST_MODIFIED))
    {
        return Selection::Full;
    }
    let Some(value) = single(request, RANGE) else {
        return Selection::Full;
    };
    match range::parse_range(value.as_bytes(), length) {
        ParsedRange::Invalid | ParsedRange::TooMany => Selection::Full,
        ParsedRange::Unsatisfiable => Selection::Unsatisfiable,
        ParsedRange::Ranges(ranges) => Selection::Partial(ranges),
    }
}

/// If-Range (RFC 9110 section 13.1.5): a strong entity tag matching the current one strongly,
/// or an HTTP-date exactly equal to Last-Modified. Anything else (weak tag, bad date, several
/// values) does not hold, so the full representation is sent.
fn if_range_holds(
    request: &HeaderMap,
    current_etag: Option<&EntityTag>,
    last_modified: Option<&HeaderValue>,
) -> bool {
    let Some(value) = single(request, IF_RANGE) else {
        return false;
    };
    let bytes = value.as_bytes();
    if bytes.starts_with(b"\"") || bytes.starts_with(b"W/") {
        return match (EntityTag::parse(bytes), current_etag) {
            (Some(tag), Some(cur)) => tag.strong_eq(cur),
            _ => false,
        };
    }
    match (http_date(value), last_modified.and_then(http_date)) {
        (Some(date), Some(modified)) => date == modified,
        _ => false,
    }
}

/// The header's value when it occurs exactly once.
fn single(headers: &HeaderMap, name: http::header::HeaderName) -> Option<&HeaderValue> {
    let mut all = headers.get_all(name).iter();
    let first = all.next()?;
    all.next().is_none().then_some(first)
}

fn http_date(value: &HeaderValue) -> Option<std::time::SystemTime> {
    httpdate::parse_http_date(value.to_str().ok()?.trim()).ok()
}

/// A strong ETag computed from the content (a 128-bit xxh3 hash, hex, quoted). Equal bytes give
/// equal tags on every node, so the origin and every cache agree without coordination.
pub fn strong_etag(content: &[u8]) -> HeaderValue {
    let hash = xxhash_rust::xxh3::xxh3_128(content);
    HeaderValue::from_str(&format!("\"{hash:032x}\"")).expect("hex digits are a valid header value")
}
