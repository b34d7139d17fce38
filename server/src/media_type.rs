//! The media type of a message, as the cache rules, the prefetcher and CMSD compare it: the
//! `type/subtype` of its `Content-Type`, parameters and spaces left out (RFC 9110 section
//! 8.3.1). Comparisons are the caller's, case-insensitively.

use http::header::{CONTENT_TYPE, HeaderMap};

/// The `type/subtype` of `headers`' Content-Type; `None` without one, or when it is not text.
pub fn essence(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next()?.trim();
    (!essence.is_empty()).then_some(essence)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn parameters_and_spaces_are_left_out() {
        let mut headers = HeaderMap::new();
        assert_eq!(essence(&headers), None);
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(" Application/Dash+XML ; charset=utf-8"),
        );
        assert_eq!(essence(&headers), Some("Application/Dash+XML"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(";x=1"));
        assert_eq!(essence(&headers), None);
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_bytes(b"video/\xff").unwrap(),
        );
        assert_eq!(essence(&headers), None);
    }
}
