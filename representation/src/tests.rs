use bytes::Bytes;
use http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, DATE, ETAG, EXPIRES,
    HeaderName, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE,
    LAST_MODIFIED, RANGE, VARY,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use crate::{
    ByteRange, EntityTag, ParsedRange, Selection, evaluate, parse_range, render, strong_etag,
};

const LM: &str = "Tue, 15 Nov 1994 08:12:31 GMT";
const BEFORE: &str = "Mon, 14 Nov 1994 08:12:31 GMT";
const AFTER: &str = "Wed, 16 Nov 1994 08:12:31 GMT";

fn response() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(ETAG, HeaderValue::from_static("\"v1\""));
    h.insert(LAST_MODIFIED, HeaderValue::from_static(LM));
    h
}

fn weak_response() -> HeaderMap {
    let mut h = response();
    h.insert(ETAG, HeaderValue::from_static("W/\"v1\""));
    h
}

fn req(pairs: &[(HeaderName, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.append(name.clone(), HeaderValue::from_str(value).unwrap());
    }
    h
}

fn get(pairs: &[(HeaderName, &str)]) -> Selection {
    evaluate(&Method::GET, &req(pairs), &response(), 1000)
}

fn r(start: u64, end: u64) -> ByteRange {
    ByteRange { start, end }
}

// ---- preconditions ----

#[test]
fn no_conditions_is_full() {
    assert_eq!(get(&[]), Selection::Full);
}

#[test]
fn if_match_uses_strong_comparison() {
    assert_eq!(get(&[(IF_MATCH, "\"v1\"")]), Selection::Full);
    assert_eq!(get(&[(IF_MATCH, "\"v0\", \"v1\"")]), Selection::Full);
    assert_eq!(get(&[(IF_MATCH, "\"v2\"")]), Selection::PreconditionFailed);
    assert_eq!(
        get(&[(IF_MATCH, "W/\"v1\"")]),
        Selection::PreconditionFailed
    );
    let weak = evaluate(
        &Method::GET,
        &req(&[(IF_MATCH, "\"v1\"")]),
        &weak_response(),
        10,
    );
    assert_eq!(weak, Selection::PreconditionFailed);
    assert_eq!(get(&[(IF_MATCH, "*")]), Selection::Full);
    // Several header lines form one list.
    assert_eq!(
        get(&[(IF_MATCH, "\"a\""), (IF_MATCH, "\"v1\"")]),
        Selection::Full
    );
}

#[test]
fn if_match_without_etag_fails_unless_star() {
    let mut resp = HeaderMap::new();
    resp.insert(LAST_MODIFIED, HeaderValue::from_static(LM));
    let sel = evaluate(&Method::GET, &req(&[(IF_MATCH, "\"v1\"")]), &resp, 10);
    assert_eq!(sel, Selection::PreconditionFailed);
    let sel = evaluate(&Method::GET, &req(&[(IF_MATCH, "*")]), &resp, 10);
    assert_eq!(sel, Selection::Full);
}

#[test]
fn if_unmodified_since() {
    assert_eq!(get(&[(IF_UNMODIFIED_SINCE, LM)]), Selection::Full);
    assert_eq!(get(&[(IF_UNMODIFIED_SINCE, AFTER)]), Selection::Full);
    assert_eq!(
        get(&[(IF_UNMODIFIED_SINCE, BEFORE)]),
        Selection::PreconditionFailed
    );
    // Ignored when invalid, or when If-Match is present.
    assert_eq!(get(&[(IF_UNMODIFIED_SINCE, "yesterday")]), Selection::Full);
    assert_eq!(
        get(&[(IF_MATCH, "\"v1\""), (IF_UNMODIFIED_SINCE, BEFORE)]),
        Selection::Full
    );
}

#[test]
fn if_none_match_uses_weak_comparison() {
    assert_eq!(get(&[(IF_NONE_MATCH, "\"v1\"")]), Selection::NotModified);
    assert_eq!(get(&[(IF_NONE_MATCH, "W/\"v1\"")]), Selection::NotModified);
    assert_eq!(
        get(&[(IF_NONE_MATCH, "\"x\", W/\"v1\"")]),
        Selection::NotModified
    );
    let weak = evaluate(
        &Method::GET,
        &req(&[(IF_NONE_MATCH, "\"v1\"")]),
        &weak_response(),
        10,
    );
    assert_eq!(weak, Selection::NotModified);
    assert_eq!(get(&[(IF_NONE_MATCH, "\"v2\"")]), Selection::Full);
    assert_eq!(get(&[(IF_NONE_MATCH, "*")]), Selection::NotModified);
    let head = evaluate(
        &Method::HEAD,
        &req(&[(IF_NONE_MATCH, "\"v1\"")]),
        &response(),
        10,
    );
    assert_eq!(head, Selection::NotModified);
    // Other methods fail the precondition instead.
    let put = evaluate(&Method::PUT, &req(&[(IF_NONE_MATCH, "*")]), &response(), 10);
    assert_eq!(put, Selection::PreconditionFailed);
}

#[test]
fn etag_with_comma_inside_is_one_tag() {
    let mut resp = response();
    resp.insert(ETAG, HeaderValue::from_static("\"a,b\""));
    let sel = evaluate(&Method::GET, &req(&[(IF_NONE_MATCH, "\"a,b\"")]), &resp, 10);
    assert_eq!(sel, Selection::NotModified);
    let sel = evaluate(&Method::GET, &req(&[(IF_NONE_MATCH, "\"a\"")]), &resp, 10);
    assert_eq!(sel, Selection::Full);
}

#[test]
fn if_modified_since() {
    assert_eq!(get(&[(IF_MODIFIED_SINCE, LM)]), Selection::NotModified);
    assert_eq!(get(&[(IF_MODIFIED_SINCE, AFTER)]), Selection::NotModified);
    assert_eq!(get(&[(IF_MODIFIED_SINCE, BEFORE)]), Selection::Full);
    assert_eq!(get(&[(IF_MODIFIED_SINCE, "garbage")]), Selection::Full);
    // Obsolete date formats are accepted too.
    assert_eq!(
        get(&[(IF_MODIFIED_SINCE, "Tuesday, 15-Nov-94 08:12:31 GMT")]),
        Selection::NotModified
    );
    // If-None-Match takes precedence: a mismatching tag means Full even if the date says 304.
    assert_eq!(
        get(&[(IF_NONE_MATCH, "\"v2\""), (IF_MODIFIED_SINCE, AFTER)]),
        Selection::Full
    );
    // Only for GET and HEAD.
    let post = evaluate(
        &Method::POST,
        &req(&[(IF_MODIFIED_SINCE, AFTER)]),
        &response(),
        10,
    );
    assert_eq!(post, Selection::Full);
}

#[test]
fn precondition_order() {
    // If-Match fails first even when If-None-Match would give 304.
    assert_eq!(
        get(&[(IF_MATCH, "\"nope\""), (IF_NONE_MATCH, "\"v1\"")]),
        Selection::PreconditionFailed
    );
    // A 304 wins over a Range.
    assert_eq!(
        get(&[(IF_NONE_MATCH, "\"v1\""), (RANGE, "bytes=0-1")]),
        Selection::NotModified
    );
}

// ---- ranges ----

#[test]
fn single_ranges() {
    assert_eq!(
        get(&[(RANGE, "bytes=0-99")]),
        Selection::Partial(vec![r(0, 99)])
    );
    assert_eq!(
        get(&[(RANGE, "bytes=100-")]),
        Selection::Partial(vec![r(100, 999)])
    );
    assert_eq!(
        get(&[(RANGE, "bytes=-500")]),
        Selection::Partial(vec![r(500, 999)])
    );
    assert_eq!(
        get(&[(RANGE, "bytes=990-2000")]),
        Selection::Partial(vec![r(990, 999)])
    );
    assert_eq!(
        get(&[(RANGE, "Bytes=1-1")]),
        Selection::Partial(vec![r(1, 1)])
    );
}

#[test]
fn suffix_longer_than_body_is_whole_body() {
    assert_eq!(
        get(&[(RANGE, "bytes=-5000")]),
        Selection::Partial(vec![r(0, 999)])
    );
}

#[test]
fn several_ranges() {
    assert_eq!(
        get(&[(RANGE, "bytes=500-599, 0-99,-10")]),
        Selection::Partial(vec![r(500, 599), r(0, 99), r(990, 999)])
    );
    // Unsatisfiable members are dropped.
    assert_eq!(
        get(&[(RANGE, "bytes=0-1,5000-6000")]),
        Selection::Partial(vec![r(0, 1)])
    );
}

#[test]
fn overlapping_ranges_are_coalesced() {
    assert_eq!(
        get(&[(RANGE, "bytes=50-150,0-99,151-160,500-501")]),
        Selection::Partial(vec![r(0, 160), r(500, 501)])
    );
}

#[test]
fn too_many_ranges_is_full() {
    let many: Vec<String> = (0..17)
        .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
        .collect();
    let value = format!("bytes={}", many.join(","));
    assert_eq!(get(&[(RANGE, &value)]), Selection::Full);
    let ok: Vec<String> = (0..16)
        .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
        .collect();
    let value = format!("bytes={}", ok.join(","));
    assert!(matches!(get(&[(RANGE, &value)]), Selection::Partial(v) if v.len() == 16));
}

#[test]
fn invalid_ranges_are_ignored() {
    for value in [
        "bytes=5-2",
        "bytes=abc",
        "bytes=",
        "bytes=1-2-3",
        "bytes=-",
        "bytes=0-1,5-2",
        "bytes=+1-2",
        "bytes=0x1-2",
        "items=0-1",
        "0-1",
        "bytes 0-1",
    ] {
        assert_eq!(get(&[(RANGE, value)]), Selection::Full, "{value}");
    }
    // Two Range header lines: ignored.
    assert_eq!(
        get(&[(RANGE, "bytes=0-1"), (RANGE, "bytes=2-3")]),
        Selection::Full
    );
}

#[test]
fn unsatisfiable_ranges() {
    assert_eq!(get(&[(RANGE, "bytes=1000-")]), Selection::Unsatisfiable);
    assert_eq!(
        get(&[(RANGE, "bytes=1000-1001, 5000-")]),
        Selection::Unsatisfiable
    );
    assert_eq!(get(&[(RANGE, "bytes=-0")]), Selection::Unsatisfiable);
    let empty = evaluate(&Method::GET, &req(&[(RANGE, "bytes=-5")]), &response(), 0);
    assert_eq!(empty, Selection::Unsatisfiable);
    assert_eq!(
        get(&[(RANGE, "bytes=99999999999999999999999-")]),
        Selection::Unsatisfiable
    );
    assert_eq!(
        get(&[(RANGE, "bytes=0-99999999999999999999999")]),
        Selection::Partial(vec![r(0, 999)])
    );
}

#[test]
fn range_only_for_get() {
    let head = evaluate(
        &Method::HEAD,
        &req(&[(RANGE, "bytes=0-1")]),
        &response(),
        10,
    );
    assert_eq!(head, Selection::Full);
    let post = evaluate(
        &Method::POST,
        &req(&[(RANGE, "bytes=0-1")]),
        &response(),
        10,
    );
    assert_eq!(post, Selection::Full);
}

#[test]
fn if_range() {
    let part = Selection::Partial(vec![r(0, 1)]);
    assert_eq!(get(&[(RANGE, "bytes=0-1"), (IF_RANGE, "\"v1\"")]), part);
    assert_eq!(get(&[(RANGE, "bytes=0-1"), (IF_RANGE, LM)]), part);
    // Mismatch, weak tags and other dates fall back to the full body.
    assert_eq!(
        get(&[(RANGE, "bytes=0-1"), (IF_RANGE, "\"v2\"")]),
        Selection::Full
    );
    assert_eq!(
        get(&[(RANGE, "bytes=0-1"), (IF_RANGE, "W/\"v1\"")]),
        Selection::Full
    );
    assert_eq!(
        get(&[(RANGE, "bytes=0-1"), (IF_RANGE, AFTER)]),
        Selection::Full
    );
    assert_eq!(
        get(&[(RANGE, "bytes=0-1"), (IF_RANGE, "garbage")]),
        Selection::Full
    );
    let weak = evaluate(
        &Method::GET,
        &req(&[(RANGE, "bytes=0-1"), (IF_RANGE, "\"v1\"")]),
        &weak_response(),
        10,
    );
    assert_eq!(weak, Selection::Full);
    // If-Range does not turn an unsatisfiable range into anything else when it holds.
    assert_eq!(
        get(&[(RANGE, "bytes=5000-"), (IF_RANGE, "\"v1\"")]),
        Selection::Unsatisfiable
    );
    assert_eq!(
        get(&[(RANGE, "bytes=5000-"), (IF_RANGE, "\"v2\"")]),
        Selection::Full
    );
}

#[test]
fn parse_range_directly() {
    assert_eq!(
        parse_range(b"bytes=0-0", 1),
        ParsedRange::Ranges(vec![r(0, 0)])
    );
    assert_eq!(parse_range(b"bytes=5-2", 10), ParsedRange::Invalid);
    assert_eq!(
        parse_range(b"bytes=, 1-2 ,", 10),
        ParsedRange::Ranges(vec![r(1, 2)])
    );
    assert_eq!(parse_range(b"bytes=\xff", 10), ParsedRange::Invalid);
}

#[test]
fn entity_tags() {
    assert_eq!(
        EntityTag::parse(b"\"x\""),
        Some(EntityTag {
            weak: false,
            opaque: b"x".to_vec()
        })
    );
    assert_eq!(
        EntityTag::parse(b"W/\"\""),
        Some(EntityTag {
            weak: true,
            opaque: Vec::new()
        })
    );
    assert_eq!(EntityTag::parse(b"x"), None);
    assert_eq!(EntityTag::parse(b"\"x"), None);
    assert_eq!(EntityTag::parse(b"\"x\" y"), None);
    assert_eq!(EntityTag::parse(b"w/\"x\""), None);
}

#[test]
fn strong_etag_is_quoted_and_content_derived() {
    let a = strong_etag(b"hello");
    let tag = EntityTag::parse(a.as_bytes()).unwrap();
    assert!(!tag.weak);
    assert_eq!(a, strong_etag(b"hello"));
    assert_ne!(a, strong_etag(b"hellp"));
}

// ---- render ----

fn full_headers() -> HeaderMap {
    let mut h = response();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(CONTENT_LENGTH, HeaderValue::from_static("26"));
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    h.insert(EXPIRES, HeaderValue::from_static(AFTER));
    h.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(DATE, HeaderValue::from_static(LM));
    h.insert("x-custom", HeaderValue::from_static("kept"));
    h
}

fn body() -> Bytes {
    Bytes::from_static(b"abcdefghijklmnopqrstuvwxyz")
}

#[test]
fn render_full() {
    let mut h = full_headers();
    let (status, out) = render(&Selection::Full, StatusCode::OK, &mut h, &body());
    assert_eq!(status, StatusCode::OK);
    assert_eq!(out, body());
    assert_eq!(h[ACCEPT_RANGES], "bytes");
    assert_eq!(h[CONTENT_LENGTH], "26");
    // A non-200 status passes through, without Accept-Ranges.
    let mut h = HeaderMap::new();
    let (status, _) = render(&Selection::Full, StatusCode::NOT_FOUND, &mut h, &body());
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!h.contains_key(ACCEPT_RANGES));
}

#[test]
fn render_not_modified_strips_representation_headers() {
    let mut h = full_headers();
    h.insert(CONTENT_RANGE, HeaderValue::from_static("bytes 0-1/26"));
    let (status, out) = render(&Selection::NotModified, StatusCode::OK, &mut h, &body());
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(out.is_empty());
    for gone in [CONTENT_LENGTH, CONTENT_TYPE, CONTENT_RANGE] {
        assert!(!h.contains_key(&gone), "{gone} should be removed");
    }
    for kept in [ETAG, LAST_MODIFIED, CACHE_CONTROL, EXPIRES, VARY, DATE] {
        assert!(h.contains_key(&kept), "{kept} should be kept");
    }
    assert_eq!(h["x-custom"], "kept");
}

#[test]
fn render_precondition_failed() {
    let mut h = full_headers();
    let (status, out) = render(
        &Selection::PreconditionFailed,
        StatusCode::OK,
        &mut h,
        &body(),
    );
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert!(out.is_empty());
    assert_eq!(h[CONTENT_LENGTH], "0");
    assert!(!h.contains_key(CONTENT_TYPE));
}

#[test]
fn render_single_range() {
    let mut h = full_headers();
    let sel = Selection::Partial(vec![r(2, 5)]);
    let (status, out) = render(&sel, StatusCode::OK, &mut h, &body());
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&out[..], b"cdef");
    assert_eq!(h[CONTENT_RANGE], "bytes 2-5/26");
    assert_eq!(h[CONTENT_LENGTH], "4");
    assert_eq!(h[CONTENT_TYPE], "text/plain; charset=utf-8");
    assert_eq!(h[ACCEPT_RANGES], "bytes");
}

#[test]
fn render_multipart() {
    let mut h = full_headers();
    let sel = Selection::Partial(vec![r(0, 2), r(23, 25)]);
    let (status, out) = render(&sel, StatusCode::OK, &mut h, &body());
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    let ct = h[CONTENT_TYPE].to_str().unwrap().to_owned();
    let boundary = ct
        .strip_prefix("multipart/byteranges; boundary=")
        .expect(&ct);
    assert!(!boundary.is_empty());
    assert!(!h.contains_key(CONTENT_RANGE));
    assert_eq!(h[CONTENT_LENGTH], out.len().to_string().as_str());
    assert_eq!(h[ACCEPT_RANGES], "bytes");
    let expected = format!(
        "--{b}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Range: bytes 0-2/26\r\n\r\nabc\r\n\
         --{b}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Range: bytes 23-25/26\r\n\r\nxyz\r\n\
         --{b}--\r\n",
        b = boundary
    );
    assert_eq!(std::str::from_utf8(&out).unwrap(), expected);
}

#[test]
fn render_unsatisfiable() {
    let mut h = full_headers();
    let (status, out) = render(&Selection::Unsatisfiable, StatusCode::OK, &mut h, &body());
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert!(out.is_empty());
    assert_eq!(h[CONTENT_RANGE], "bytes */26");
    assert_eq!(h[CONTENT_LENGTH], "0");
}

#[test]
fn render_ignores_ranges_that_do_not_apply() {
    // Not a 200: the selection is not applied.
    let mut h = HeaderMap::new();
    let sel = Selection::Partial(vec![r(0, 1)]);
    let (status, out) = render(&sel, StatusCode::NOT_FOUND, &mut h, &body());
    assert_eq!((status, out), (StatusCode::NOT_FOUND, body()));
    // Ranges past the body: full response rather than a panic.
    let mut h = HeaderMap::new();
    let sel = Selection::Partial(vec![r(0, 100)]);
    let (status, out) = render(&sel, StatusCode::OK, &mut h, &body());
    assert_eq!((status, out), (StatusCode::OK, body()));
    let mut h = HeaderMap::new();
    let (status, _) = render(
        &Selection::NotModified,
        StatusCode::NOT_FOUND,
        &mut h,
        &body(),
    );
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[test]
fn evaluate_then_render_end_to_end() {
    let mut h = full_headers();
    let b = body();
    let sel = evaluate(
        &Method::GET,
        &req(&[(RANGE, "bytes=-3")]),
        &h,
        b.len() as u64,
    );
    let (status, out) = render(&sel, StatusCode::OK, &mut h, &b);
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&out[..], b"xyz");
    assert_eq!(h[CONTENT_RANGE], "bytes 23-25/26");
}

#[test]
fn render_head_says_which_bytes_a_streamed_body_sends() {
    use crate::{Extent, render_head};
    let head = |selection: &Selection| {
        let mut headers = response();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
        let (status, extent) = render_head(selection, StatusCode::OK, &mut headers, 1000);
        (status, extent, headers)
    };
    let (status, extent, headers) = head(&Selection::Full);
    assert_eq!((status, extent), (StatusCode::OK, Extent::Whole));
    assert_eq!(headers[CONTENT_LENGTH], "1000");
    assert_eq!(headers[ACCEPT_RANGES], "bytes");

    let (status, extent, headers) = head(&Selection::Partial(vec![r(10, 19)]));
    assert_eq!(
        (status, extent),
        (StatusCode::PARTIAL_CONTENT, Extent::Range(r(10, 19)))
    );
    assert_eq!(headers[CONTENT_LENGTH], "10");
    assert_eq!(headers[CONTENT_RANGE], "bytes 10-19/1000");

    // Several ranges: the whole body, as a 200 (no multipart built from a stream).
    let (status, extent, headers) = head(&Selection::Partial(vec![r(0, 1), r(5, 6)]));
    assert_eq!((status, extent), (StatusCode::OK, Extent::Whole));
    assert_eq!(headers[CONTENT_TYPE], "video/mp4");
    // A range past the end is not applied.
    let (status, extent, _) = head(&Selection::Partial(vec![r(990, 1000)]));
    assert_eq!((status, extent), (StatusCode::OK, Extent::Whole));

    let (status, extent, headers) = head(&Selection::NotModified);
    assert_eq!(
        (status, extent),
        (StatusCode::NOT_MODIFIED, Extent::Nothing)
    );
    assert!(!headers.contains_key(CONTENT_LENGTH) && !headers.contains_key(CONTENT_TYPE));
    let (status, extent, headers) = head(&Selection::Unsatisfiable);
    assert_eq!(
        (status, extent),
        (StatusCode::RANGE_NOT_SATISFIABLE, Extent::Nothing)
    );
    assert_eq!(headers[CONTENT_RANGE], "bytes */1000");
    let (status, extent, _) = head(&Selection::PreconditionFailed);
    assert_eq!(
        (status, extent),
        (StatusCode::PRECONDITION_FAILED, Extent::Nothing)
    );
}
