//! The header fields of a stored response, kept in one compact block of bytes: a `HeaderMap`
//! costs several hundred bytes of buckets and indices for a handful of fields, and the values
//! of one parsed by hyper are slices of the connection's read buffer, which would keep that
//! whole buffer alive for as long as the object is cached.
//!
//! The block holds `name:value\n` lines (names lower-case as the http crate keeps them; no
//! header value can contain a newline). Serving rebuilds a `HeaderMap` whose values share the
//! block, without copying them.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredHeaders {
    block: Bytes,
}

impl StoredHeaders {
    /// The fields of `map`, copied into a block of their own.
    pub fn from_map(map: &HeaderMap) -> Self {
        let size = map
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 2)
            .sum();
        let mut block = Vec::with_capacity(size);
        for (name, value) in map {
            block.extend_from_slice(name.as_str().as_bytes());
            block.push(b':');
            block.extend_from_slice(value.as_bytes());
            block.push(b'\n');
        }
        Self {
            block: Bytes::from(block),
        }
    }

    /// Every field as (name, value) byte ranges of the block.
    fn fields(&self) -> impl Iterator<Item = (&[u8], std::ops::Range<usize>)> + '_ {
        let mut offset = 0;
        self.block.split(|b| *b == b'\n').filter_map(move |line| {
            let start = offset;
            offset += line.len() + 1;
            let colon = line.iter().position(|b| *b == b':')?;
            Some((&line[..colon], start + colon + 1..start + line.len()))
        })
    }

    fn value(&self, range: std::ops::Range<usize>) -> Option<HeaderValue> {
        HeaderValue::from_maybe_shared(self.block.slice(range)).ok()
    }

    /// The first value of `name`.
    pub fn get(&self, name: &HeaderName) -> Option<HeaderValue> {
        let name = name.as_str().as_bytes();
        self.fields()
            .find(|(field, _)| *field == name)
            .and_then(|(_, range)| self.value(range))
    }

    pub fn contains_key(&self, name: &HeaderName) -> bool {
        let name = name.as_str().as_bytes();
        self.fields().any(|(field, _)| field == name)
    }

    /// The fields as a map (values share this block).
    pub fn to_map(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.fields().count());
        for (name, range) in self.fields() {
            if let (Ok(name), Some(value)) = (HeaderName::from_bytes(name), self.value(range)) {
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
        let stored = StoredHeaders::from_map(&map);
        assert_eq!(stored.to_map(), map);
        assert_eq!(
            stored.get(&HeaderName::from_static("set-cookie")).unwrap(),
            "a=1"
        );
        assert!(stored.contains_key(&HeaderName::from_static("x-empty")));
        assert!(!stored.contains_key(&HeaderName::from_static("etag")));
        assert_eq!(StoredHeaders::from_map(&HeaderMap::new()).to_map().len(), 0);
    }
}
