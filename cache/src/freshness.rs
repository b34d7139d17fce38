//! Freshness lifetime and age (RFC 9111 section 4.2): plain arithmetic on header values and
//! clock readings, no I/O.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode, header};

use crate::directives::ResponseDirectives;

/// The largest age or lifetime a cache needs to represent (RFC 9111 section 1.2.2).
const MAX_AGE_SECS: u64 = 1 << 31;

/// The clock readings and header values that give a stored response its age.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// When the request that produced the response was sent upstream.
    pub request_time: SystemTime,
    /// When the response head arrived.
    pub response_time: SystemTime,
    /// The response's `Date`, when it had a valid one.
    pub date: Option<SystemTime>,
    /// The response's `Age`, zero without one.
    pub age: Duration,
}

/// An Age value (RFC 9111 section 5.1): delta-seconds, digits only; anything else is ignored.
/// Only the first Age line counts (the caller passes it). Ages past 2^31 seconds, however many
/// digits, are capped (section 1.2.2).
fn parse_age(value: &[u8]) -> Option<Duration> {
    let value = value.trim_ascii();
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let secs = std::str::from_utf8(value)
        .ok()?
        .parse::<u64>()
        .unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs.min(MAX_AGE_SECS)))
}

impl Timing {
    pub fn from_headers(
        headers: &HeaderMap,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> Self {
        Self {
            request_time,
            response_time,
            date: http_date(headers, header::DATE),
            age: headers
                .get(header::AGE)
                .and_then(|v| parse_age(v.as_bytes()))
                .unwrap_or(Duration::ZERO),
        }
    }

    /// corrected_initial_age of RFC 9111 section 4.2.3.
    pub fn initial_age(&self) -> Duration {
        let apparent = self
            .date
            .and_then(|date| self.response_time.duration_since(date).ok())
            .unwrap_or(Duration::ZERO);
        let response_delay = self
            .response_time
            .duration_since(self.request_time)
            .unwrap_or(Duration::ZERO);
        apparent.max(self.age.saturating_add(response_delay))
    }

    /// current_age: the initial age plus the time the response has been resident here.
    pub fn current_age(&self, now: SystemTime) -> Duration {
        self.initial_age().saturating_add(
            now.duration_since(self.response_time)
                .unwrap_or(Duration::ZERO),
        )
    }
}

/// How heuristic freshness is granted when a response carries no explicit expiry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Heuristic {
    /// Fraction of the time since Last-Modified (RFC 9111 suggests 10%).
    pub fraction: f64,
    /// Cap on the heuristic lifetime.
    pub max: Duration,
}

impl Default for Heuristic {
    fn default() -> Self {
        Self {
            fraction: 0.1,
            max: Duration::from_secs(24 * 3600),
        }
    }
}

/// Status codes that are heuristically cacheable (RFC 9110 section 15.1).
pub fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// The freshness lifetime of a response for a shared cache: s-maxage, then max-age, then
/// Expires minus Date, then the heuristic. `None` when nothing grants any.
pub fn lifetime(
    status: StatusCode,
    headers: &HeaderMap,
    directives: &ResponseDirectives,
    heuristic: &Heuristic,
    response_time: SystemTime,
) -> Option<Duration> {
    if let Some(s_maxage) = directives.s_maxage {
        return Some(s_maxage);
    }
    if let Some(max_age) = directives.max_age {
        return Some(max_age);
    }
    if headers.contains_key(header::EXPIRES) {
        // An Expires that does not parse ("0", "-1") means already expired.
        let Some(expires) = http_date(headers, header::EXPIRES) else {
            return Some(Duration::ZERO);
        };
        let date = http_date(headers, header::DATE).unwrap_or(response_time);
        return Some(expires.duration_since(date).unwrap_or(Duration::ZERO));
    }
    if heuristically_cacheable(status) || directives.public {
        let last_modified = http_date(headers, header::LAST_MODIFIED)?;
        let date = http_date(headers, header::DATE).unwrap_or(response_time);
        let since = date.duration_since(last_modified).unwrap_or(Duration::ZERO);
        return Some(
            since
                .mul_f64(heuristic.fraction.clamp(0.0, 1.0))
                .min(heuristic.max),
        );
    }
    None
}

pub(crate) fn http_date(headers: &HeaderMap, name: header::HeaderName) -> Option<SystemTime> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v.trim()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn cc(h: &HeaderMap) -> ResponseDirectives {
        ResponseDirectives::for_cdn(h).0
    }

    #[test]
    fn s_maxage_beats_max_age_beats_expires() {
        let h = headers(&[
            ("cache-control", "max-age=10, s-maxage=20".into()),
            ("date", httpdate::fmt_http_date(at(0))),
            ("expires", httpdate::fmt_http_date(at(1000))),
        ]);
        let l = lifetime(StatusCode::OK, &h, &cc(&h), &Heuristic::default(), at(0));
        assert_eq!(l, Some(Duration::from_secs(20)));
        let h = headers(&[
            ("date", httpdate::fmt_http_date(at(0))),
            ("expires", httpdate::fmt_http_date(at(1000))),
        ]);
        let l = lifetime(StatusCode::OK, &h, &cc(&h), &Heuristic::default(), at(0));
        assert_eq!(l, Some(Duration::from_secs(1000)));
    }

    #[test]
    fn invalid_expires_is_expired() {
        let h = headers(&[("expires", "0".into())]);
        let l = lifetime(StatusCode::OK, &h, &cc(&h), &Heuristic::default(), at(0));
        assert_eq!(l, Some(Duration::ZERO));
    }

    #[test]
    fn heuristic_is_a_capped_fraction_of_last_modified_age() {
        let h = headers(&[
            ("date", httpdate::fmt_http_date(at(10_000))),
            ("last-modified", httpdate::fmt_http_date(at(0))),
        ]);
        let l = lifetime(
            StatusCode::OK,
            &h,
            &cc(&h),
            &Heuristic::default(),
            at(10_000),
        );
        assert_eq!(l, Some(Duration::from_secs(1000)));
        let capped = Heuristic {
            fraction: 0.1,
            max: Duration::from_secs(60),
        };
        assert_eq!(
            lifetime(StatusCode::OK, &h, &cc(&h), &capped, at(10_000)),
            Some(Duration::from_secs(60))
        );
        // 500 is not heuristically cacheable
        assert_eq!(
            lifetime(
                StatusCode::INTERNAL_SERVER_ERROR,
                &h,
                &cc(&h),
                &capped,
                at(10_000)
            ),
            None
        );
        // no Last-Modified, no heuristic
        let h = headers(&[("date", httpdate::fmt_http_date(at(0)))]);
        assert_eq!(lifetime(StatusCode::OK, &h, &cc(&h), &capped, at(0)), None);
    }

    #[test]
    fn age_is_digits_and_the_first_line_counts() {
        for (value, secs) in [("+5", 0), ("-5", 0), ("5, 6", 0), ("1e3", 0), (" 7 ", 7)] {
            let t = Timing::from_headers(&headers(&[("age", value.into())]), at(0), at(0));
            assert_eq!(t.age, Duration::from_secs(secs), "{value:?}");
        }
        let mut h = headers(&[("age", "10".into())]);
        h.append("age", http::HeaderValue::from_static("99"));
        assert_eq!(
            Timing::from_headers(&h, at(0), at(0)).age,
            Duration::from_secs(10)
        );
        let huge = headers(&[("age", "99999999999999999999999".into())]);
        assert_eq!(
            Timing::from_headers(&huge, at(0), at(0)).age,
            Duration::from_secs(MAX_AGE_SECS)
        );
    }

    #[test]
    fn age_counts_upstream_age_delay_and_residence() {
        let h = headers(&[
            ("date", httpdate::fmt_http_date(at(100))),
            ("age", "30".into()),
        ]);
        let t = Timing::from_headers(&h, at(100), at(102));
        // age 30 + response delay 2 beats the apparent age 2
        assert_eq!(t.initial_age(), Duration::from_secs(32));
        assert_eq!(t.current_age(at(112)), Duration::from_secs(42));
        // an absurd Age is capped instead of overflowing
        let h = headers(&[("age", "18446744073709551615".into())]);
        let t = Timing::from_headers(&h, at(0), at(5));
        assert_eq!(
            t.current_age(at(10_000)),
            Duration::from_secs((1 << 31) + 10_000)
        );
        // an origin clock ahead of ours gives no negative age
        let h = headers(&[("date", httpdate::fmt_http_date(at(500)))]);
        let t = Timing::from_headers(&h, at(100), at(100));
        assert_eq!(t.initial_age(), Duration::ZERO);
    }
}
