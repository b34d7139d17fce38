//! The Range header (RFC 9110 section 14.2), `bytes` unit only.

use crate::ByteRange;

/// More ranges than this in one request are answered with the full body: many small ranges cost
/// far more to send than the body itself and are a known denial-of-service pattern.
pub const MAX_RANGES: usize = 16;

/// The outcome of parsing a Range header against a body of known length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Not a valid `bytes` range set: ignore the header.
    Invalid,
    /// Valid, but more than [`MAX_RANGES`] satisfiable ranges: send the full body.
    TooMany,
    /// Valid, and no range overlaps the body.
    Unsatisfiable,
    /// The satisfiable ranges, clipped to the body; coalesced (sorted and merged) when any of
    /// them overlap or touch, otherwise in the order requested.
    Ranges(Vec<ByteRange>),
}

/// Parse a Range field value such as `bytes=0-99, 200-, -500` for a body of `length` bytes.
pub fn parse_range(value: &[u8], length: u64) -> Parsed {
    let Ok(value) = std::str::from_utf8(value) else {
        return Parsed::Invalid;
    };
    let value = value.trim_matches([' ', '\t']);
    let Some((unit, set)) = value.split_once('=') else {
        return Parsed::Invalid;
    };
    if !unit.eq_ignore_ascii_case("bytes") {
        return Parsed::Invalid;
    }
    let mut ranges = Vec::new();
    let mut specs = 0usize;
    for spec in set.split(',') {
        let spec = spec.trim_matches([' ', '\t']);
        if spec.is_empty() {
            continue; // empty list elements are allowed
        }
        specs += 1;
        let Some((first, last)) = spec.split_once('-') else {
            return Parsed::Invalid;
        };
        let range = if first.is_empty() {
            // suffix-range: the last N bytes
            let Some(suffix) = digits(last) else {
                return Parsed::Invalid;
            };
            if suffix == 0 || length == 0 {
                None
            } else {
                Some(ByteRange {
                    start: length.saturating_sub(suffix),
                    end: length - 1,
                })
            }
        } else {
            let Some(first) = digits(first) else {
                return Parsed::Invalid;
            };
            let last = if last.is_empty() {
                None
            } else {
                let Some(last) = digits(last) else {
                    return Parsed::Invalid;
                };
                if last < first {
                    return Parsed::Invalid;
                }
                Some(last)
            };
            if first >= length {
                None
            } else {
                Some(ByteRange {
                    start: first,
                    end: last.map_or(length - 1, |l| l.min(length - 1)),
                })
            }
        };
        ranges.extend(range);
    }
    if specs == 0 {
        return Parsed::Invalid;
    }
    if ranges.is_empty() {
        return Parsed::Unsatisfiable;
    }
    if ranges.len() > MAX_RANGES {
        return Parsed::TooMany;
    }
    Parsed::Ranges(coalesce(ranges))
}

/// Sort and merge the ranges when any two overlap or touch; otherwise keep the requested order.
fn coalesce(ranges: Vec<ByteRange>) -> Vec<ByteRange> {
    let mut sorted = ranges.clone();
    sorted.sort_by_key(|r| (r.start, r.end));
    let touching = sorted
        .windows(2)
        .any(|w| w[1].start <= w[0].end.saturating_add(1));
    if !touching {
        return ranges;
    }
    let mut merged: Vec<ByteRange> = Vec::with_capacity(sorted.len());
    for r in sorted {
        match merged.last_mut() {
            Some(last) if r.start <= last.end.saturating_add(1) => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    merged
}

/// A non-empty run of ASCII digits that fits in a u64.
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Longer than u64: saturate, which is still "past the end" of any real body.
    Some(s.parse::<u64>().unwrap_or(u64::MAX))
}
