//! The header fields of a stored response, kept in one compact block of bytes: a `HeaderMap`
//! costs several hundred bytes of buckets and indices for a handful of fields, and the values
//! of one parsed by hyper are slices of the connection's read buffer, which would keep that
//! whole buffer alive for as long as the object is cached.
//!
//! Each field is a line: the name as one byte when it is one of the common response headers
//! ([`KNOWN`]), else `0xFF`, the name and `:`; then the value and `\n` (no header value can
//! contain a newline, no name a colon). Serving rebuilds a `HeaderMap` whose values share the
//! block, without copying them and without parsing the common names again.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Response headers common enough to be stored as one byte. At most 32 (a bit each in
/// [`StoredHeaders::present`]).
const KNOWN: [HeaderName; 24] = [
    header::CACHE_CONTROL,
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::ETAG,
    header::LAST_MODIFIED,
    header::DATE,
    header::EXPIRES,
    header::VARY,
    header::ACCEPT_RANGES,
    header::CONTENT_ENCODING,
    header::AGE,
    header::SERVER,
    header::SET_COOKIE,
    header::CONTENT_LANGUAGE,
    header::LOCATION,
    header::CONTENT_LOCATION,
    header::CONTENT_DISPOSITION,
    header::CONTENT_SECURITY_POLICY,
    header::STRICT_TRANSPORT_SECURITY,
    header::X_CONTENT_TYPE_OPTIONS,
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::LINK,
    header::CONTENT_RANGE,
    header::VIA,
];

const CUSTOM: u8 = 0xFF;

fn known_index(name: &HeaderName) -> Option<u8> {
    KNOWN
        .iter()
        .position(|k| k == name)
        .and_then(|i| u8::try_from(i).ok())
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredHeaders {
    block: Bytes,
    /// Fields in the block.
    count: u16,
    /// Which of [`KNOWN`] occur: a lookup of an absent one needs no scan.
    present: u32,
}

impl StoredHeaders {
    /// The fields of `map`, copied into a block of their own.
    pub fn from_map(map: &HeaderMap) -> Self {
        let size = map
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 2)
            .sum();
        let mut block = Vec::with_capacity(size);
        let mut present = 0u32;
        let mut count = 0u16;
        for (name, value) in map {
            match known_index(name) {
                Some(index) => {
                    present |= 1 << index;
                    block.push(index);
                }
                None => {
                    block.push(CUSTOM);
                    block.extend_from_slice(name.as_str().as_bytes());
                    block.push(b':');
                }
            }
            block.extend_from_slice(value.as_bytes());
            block.push(b'\n');
            count = count.saturating_add(1);
        }
        block.shrink_to_fit();
        Self {
            block: Bytes::from(block),
            count,
            present,
        }
    }

    /// Every field: its known index or custom name, and the byte range of its value.
    fn fields(&self) -> Fields<'_> {
        Fields {
            block: &self.block,
            at: 0,
        }
    }

    fn value(&self, range: std::ops::Range<usize>) -> Option<HeaderValue> {
        HeaderValue::from_maybe_shared(self.block.slice(range)).ok()
    }

    /// The first value of `name`.
    pub fn get(&self, name: &HeaderName) -> Option<HeaderValue> {
        let wanted = match known_index(name) {
            Some(index) if self.present & (1 << index) == 0 => return None,
            Some(index) => Name::Known(index),
            None => Name::Custom(name.as_str().as_bytes()),
        };
        self.fields()
            .find(|(field, _)| *field == wanted)
            .and_then(|(_, range)| self.value(range))
    }

    #[cfg(test)]
    pub fn contains_key(&self, name: &HeaderName) -> bool {
        self.get(name).is_some()
    }

    /// The fields as a map (values share this block).
    pub fn to_map(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(usize::from(self.count));
        for (name, range) in self.fields() {
            let name = match name {
                Name::Known(index) => KNOWN.get(usize::from(index)).cloned(),
                Name::Custom(bytes) => HeaderName::from_bytes(bytes).ok(),
            };
            if let (Some(name), Some(value)) = (name, self.value(range)) {
                map.append(name, value);
            }
        }
        map
    }

    /// Bytes the block takes.
    pub fn size(&self) -> usize {
        self.block.len()
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Name<'a> {
    Known(u8),
    Custom(&'a [u8]),
}

struct Fields<'a> {
    block: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Fields<'a> {
    type Item = (Name<'a>, std::ops::Range<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        let block = self.block;
        let code = *block.get(self.at)?;
        let mut start = self.at + 1;
        let name = if code == CUSTOM {
            let colon = start + block.get(start..)?.iter().position(|b| *b == b':')?;
            let name = Name::Custom(&block[start..colon]);
            start = colon + 1;
            name
        } else {
            Name::Known(code)
        };
        let end = start + block.get(start..)?.iter().position(|b| *b == b'\n')?;
        self.at = end + 1;
        Some((name, start..end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_survive_the_round_trip_in_order() {
        let mut map = HeaderMap::new();
        map.insert("content-type", HeaderValue::from_static("text/html"));
        map.append("set-cookie", HeaderValue::from_static("a=1"));
        map.append("set-cookie", HeaderValue::from_static("b=2: c"));
        map.insert("x-empty", HeaderValue::from_static(""));
        map.insert("x-latin", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        map.insert("etag", HeaderValue::from_static("\"v1\""));
        let stored = StoredHeaders::from_map(&map);
        assert_eq!(stored.to_map(), map);
        assert_eq!(
            stored.get(&HeaderName::from_static("set-cookie")).unwrap(),
            "a=1"
        );
        assert_eq!(stored.get(&header::ETAG).unwrap(), "\"v1\"");
        assert!(stored.contains_key(&HeaderName::from_static("x-empty")));
        assert!(!stored.contains_key(&header::LAST_MODIFIED));
        assert!(!stored.contains_key(&HeaderName::from_static("x-missing")));
        assert_eq!(StoredHeaders::from_map(&HeaderMap::new()).to_map().len(), 0);
        // Common names take one byte.
        assert!(stored.size() < 60, "{}", stored.size());
    }
}
