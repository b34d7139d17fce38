//! The header fields of a stored response, kept in one compact block of bytes: a `HeaderMap`
//! costs several hundred bytes of buckets and indices for a handful of fields, and the values
//! of one parsed by hyper are slices of the connection's read buffer, which would keep that
//! whole buffer alive for as long as the object is cached.
//!
//! Each field starts with a code byte. The common response headers ([`KNOWN`]) are one byte
//! for their name, and their value is one of:
//! - the bytes of the value and `\n` (no header value can contain a newline);
//! - for an HTTP-date in its canonical form (Date, Last-Modified, Expires): the seconds since
//!   the epoch in 4 bytes, which format back to exactly the same 29 characters;
//! - for the fields whose values recur across objects (Content-Type, Cache-Control, ...): the
//!   2-byte number of the value in the node's [`Vocabulary`], when it is there;
//! - for an ETag that is a quoted run of lower-case hex digits (the MD5 or SHA digest that
//!   object stores such as S3 and GCS send): a flag for `W/`, the length and the digits as
//!   bytes, half the size.
//!
//! Any other name is `0xFF`, the name and `:`, then the value and `\n` (no name has a colon).
//! Serving rebuilds a `HeaderMap` without parsing the common names again: the text of all its
//! values is written into one buffer of exactly their size, which the values share.

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

/// The code of a field with a custom name.
const CUSTOM: u8 = 0xFF;
/// A known name whose value is an HTTP-date in 4 bytes (with the name's index in the low bits).
const DATE: u8 = 0x40;
/// A known name whose value is a number in the vocabulary, in 2 bytes.
const INTERNED: u8 = 0x80;
/// A known name whose value is a quoted hex digest: a byte with the `W/` flag, a byte of
/// length, the digest's bytes.
const HEX: u8 = 0xC0;
/// The bits of a code that say how its value is kept.
const FORM: u8 = 0xC0;
/// The bits of a code that give the known name's index.
const INDEX: u8 = 0x3F;

fn known_index(name: &HeaderName) -> Option<u8> {
    KNOWN
        .iter()
        .position(|k| k == name)
        .and_then(|i| u8::try_from(i).ok())
}

/// Names whose values are HTTP-dates.
fn is_date(name: &HeaderName) -> bool {
    [header::DATE, header::LAST_MODIFIED, header::EXPIRES].contains(name)
}

/// Names whose values recur across many objects (one content type for every image, one
/// Cache-Control for a whole site): worth one shared copy each.
fn recurs(name: &HeaderName) -> bool {
    [
        header::CACHE_CONTROL,
        header::CONTENT_TYPE,
        header::VARY,
        header::ACCEPT_RANGES,
        header::CONTENT_ENCODING,
        header::SERVER,
        header::CONTENT_LANGUAGE,
        header::CONTENT_SECURITY_POLICY,
        header::STRICT_TRANSPORT_SECURITY,
        header::X_CONTENT_TYPE_OPTIONS,
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::VIA,
    ]
    .contains(name)
}

/// The seconds of an HTTP-date, when formatting them gives back exactly `value` (so a date
/// in another form, or with odd spacing, is kept as it came).
pub(crate) fn canonical_date(value: &HeaderValue) -> Option<u32> {
    let text = value.to_str().ok()?;
    let time = httpdate::parse_http_date(text).ok()?;
    let secs = u32::try_from(time.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs()).ok()?;
    // The last second of u32 is kept as text: it marks an empty slot of `write_date`.
    (secs != u32::MAX && httpdate::fmt_http_date(time) == text).then_some(secs)
}

/// An ETag `"<hex>"` or `W/"<hex>"` with an even number of lower-case hex digits (at most
/// 510): whether it is weak, and the digest's bytes.
fn hex_etag(value: &HeaderValue) -> Option<(bool, Vec<u8>)> {
    let bytes = value.as_bytes();
    let (weak, quoted) = match bytes.strip_prefix(b"W/") {
        Some(rest) => (true, rest),
        None => (false, bytes),
    };
    let digits = quoted.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if digits.is_empty() || digits.len() % 2 != 0 || digits.len() > 510 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let digest = digits
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect::<Option<Vec<u8>>>()?;
    Some((weak, digest))
}

/// The text of a hex digest ETag: `W/` when weak, the digits in quotes.
fn write_hex_etag(out: &mut Vec<u8>, weak: bool, digest: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    if weak {
        out.extend_from_slice(b"W/");
    }
    out.push(b'"');
    for byte in digest {
        out.push(DIGITS[usize::from(byte >> 4)]);
        out.push(DIGITS[usize::from(byte & 0x0F)]);
    }
    out.push(b'"');
}

fn hex_etag_len(weak: bool, digest_len: usize) -> usize {
    digest_len * 2 + 2 + if weak { 2 } else { 0 }
}

/// An HTTP-date is always this long (`Thu, 03 Dec 2026 18:36:30 GMT`).
const DATE_LEN: usize = 29;

/// The text of the HTTP-date `secs` seconds after the epoch. Each thread keeps the last few it
/// formatted: a hot object's dates are the same on every hit.
fn write_date(out: &mut Vec<u8>, secs: u32) {
    use std::cell::RefCell;
    use std::io::Write as _;
    const SLOTS: usize = 16;
    thread_local! {
        static FORMATTED: RefCell<[(u32, [u8; DATE_LEN]); SLOTS]> =
            const { RefCell::new([(u32::MAX, [0; DATE_LEN]); SLOTS]) };
    }
    FORMATTED.with_borrow_mut(|formatted| {
        let slot = &mut formatted[secs as usize % SLOTS];
        if slot.0 != secs {
            let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::from(secs));
            let mut text = &mut slot.1[..];
            // Always 29 bytes, which the slot has room for.
            let _ = write!(text, "{}", httpdate::HttpDate::from(time));
            slot.0 = secs;
        }
        out.extend_from_slice(&slot.1);
    });
}

pub(crate) fn date_value(secs: u32) -> Option<HeaderValue> {
    let mut text = Vec::with_capacity(DATE_LEN);
    write_date(&mut text, secs);
    HeaderValue::from_maybe_shared(Bytes::from(text)).ok()
}

/// A value a stored object gives from elsewhere than its header block.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Given {
    /// Content-Length: the body's length.
    Length(usize),
    /// Date: the policy's, in seconds since the epoch.
    Date(u32),
}

impl Given {
    fn name(self) -> HeaderName {
        match self {
            Given::Length(_) => header::CONTENT_LENGTH,
            Given::Date(_) => header::DATE,
        }
    }

    fn len(self) -> usize {
        match self {
            Given::Length(n) => n.checked_ilog10().map_or(1, |digits| digits as usize + 1),
            Given::Date(_) => DATE_LEN,
        }
    }

    fn write(self, out: &mut Vec<u8>) {
        match self {
            Given::Length(n) => {
                use std::io::Write as _;
                // Writing to a Vec cannot fail.
                let _ = write!(out, "{n}");
            }
            Given::Date(secs) => write_date(out, secs),
        }
    }
}

/// The node's shared copies of recurring header values: each stored once, numbered, and
/// referred to by number from every header block that has it. Bounded: past
/// [`Vocabulary::MAX_VALUES`] values (or for a value over [`Vocabulary::MAX_VALUE_BYTES`]) a
/// block keeps its own copy, so at most about 1 MiB is held here for the life of the process.
pub(crate) struct Vocabulary {
    numbers: std::sync::Mutex<std::collections::HashMap<HeaderValue, u16>>,
    /// Read on every hit, written only when a value is added: a snapshot readers load
    /// without a lock.
    values: arc_swap::ArcSwap<Vec<HeaderValue>>,
}

impl Vocabulary {
    pub(crate) const MAX_VALUES: usize = 4096;
    pub(crate) const MAX_VALUE_BYTES: usize = 200;

    fn node() -> &'static Self {
        static NODE: std::sync::LazyLock<Vocabulary> = std::sync::LazyLock::new(|| Vocabulary {
            numbers: std::sync::Mutex::new(std::collections::HashMap::new()),
            values: arc_swap::ArcSwap::from_pointee(Vec::new()),
        });
        &NODE
    }

    /// The number of `value`, added if there is room.
    fn number(&self, value: &HeaderValue) -> Option<u16> {
        if value.len() > Self::MAX_VALUE_BYTES {
            return None;
        }
        let mut numbers = self.numbers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(number) = numbers.get(value) {
            return Some(*number);
        }
        if numbers.len() >= Self::MAX_VALUES {
            return None;
        }
        let number = u16::try_from(numbers.len()).ok()?;
        // A copy of its own, not a slice of some response's read buffer.
        let value = HeaderValue::from_bytes(value.as_bytes()).ok()?;
        let mut values = Vec::clone(&self.values.load());
        values.push(value.clone());
        self.values.store(std::sync::Arc::new(values));
        numbers.insert(value, number);
        Some(number)
    }

    fn value(&self, number: u16) -> Option<HeaderValue> {
        self.values.load().get(usize::from(number)).cloned()
    }
}

/// What a stored header block holds, kept beside it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BlockInfo {
    /// Which of [`KNOWN`] occur: a lookup of an absent one needs no scan.
    present: u32,
}

/// Appends the fields of `map`, encoded, to `out`.
pub(crate) fn encode(map: &HeaderMap, out: &mut Vec<u8>) -> BlockInfo {
    let mut info = BlockInfo::default();
    for (name, value) in map {
        match known_index(name) {
            Some(index) => {
                info.present |= 1 << index;
                if is_date(name)
                    && let Some(secs) = canonical_date(value)
                {
                    out.push(DATE | index);
                    out.extend_from_slice(&secs.to_be_bytes());
                } else if *name == header::ETAG
                    && let Some((weak, digest)) = hex_etag(value)
                    && let Ok(length) = u8::try_from(digest.len())
                {
                    out.push(HEX | index);
                    out.push(u8::from(weak));
                    out.push(length);
                    out.extend_from_slice(&digest);
                } else if recurs(name)
                    && let Some(number) = Vocabulary::node().number(value)
                {
                    out.push(INTERNED | index);
                    out.extend_from_slice(&number.to_be_bytes());
                } else {
                    out.push(index);
                    out.extend_from_slice(value.as_bytes());
                    out.push(b'\n');
                }
            }
            None => {
                out.push(CUSTOM);
                out.extend_from_slice(name.as_str().as_bytes());
                out.push(b':');
                out.extend_from_slice(value.as_bytes());
                out.push(b'\n');
            }
        }
    }
    info
}

/// A stored header block, read in place.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeaderBlock<'a> {
    block: &'a [u8],
    info: BlockInfo,
}

impl<'a> HeaderBlock<'a> {
    pub(crate) fn new(block: &'a [u8], info: BlockInfo) -> Self {
        Self { block, info }
    }

    /// Every field: its known index or custom name, and where its value is.
    fn fields(&self) -> Fields<'a> {
        Fields {
            block: self.block,
            at: 0,
        }
    }

    /// The first value of `name` (a copy).
    pub(crate) fn get(&self, name: &HeaderName) -> Option<HeaderValue> {
        let wanted = match known_index(name) {
            Some(index) if self.info.present & (1 << index) == 0 => return None,
            Some(index) => Name::Known(index),
            None => Name::Custom(name.as_str().as_bytes()),
        };
        let (_, value) = self.fields().find(|(field, _)| *field == wanted)?;
        match value {
            Value::Raw(range) => HeaderValue::from_bytes(self.block.get(range)?).ok(),
            Value::Date(secs) => date_value(secs),
            Value::Interned(number) => Vocabulary::node().value(number),
            Value::Hex(weak, range) => {
                let digest = self.block.get(range)?;
                let mut text = Vec::with_capacity(hex_etag_len(weak, digest.len()));
                write_hex_etag(&mut text, weak, digest);
                HeaderValue::from_maybe_shared(Bytes::from(text)).ok()
            }
        }
    }

    /// The length of a value's text as served (none for a vocabulary value, which is shared).
    fn text_len(value: &Value) -> usize {
        match value {
            Value::Raw(range) => range.len(),
            Value::Date(_) => DATE_LEN,
            Value::Interned(_) => 0,
            Value::Hex(weak, range) => hex_etag_len(*weak, range.len()),
        }
    }

    /// The fields as a map, and then the `given` ones. The text of every value is written into
    /// one buffer of exactly its size (dates formatted, digests in hex), which the values share:
    /// one allocation for all of them, whatever their number.
    pub(crate) fn to_map(self, given: &[Given]) -> HeaderMap {
        let size = self
            .fields()
            .map(|(_, v)| Self::text_len(&v))
            .sum::<usize>()
            + given.iter().map(|g| g.len()).sum::<usize>();
        let mut text = Vec::with_capacity(size);
        for (_, value) in self.fields() {
            match value {
                Value::Raw(range) => {
                    text.extend_from_slice(self.block.get(range).unwrap_or_default())
                }
                Value::Date(secs) => write_date(&mut text, secs),
                Value::Interned(_) => {}
                Value::Hex(weak, range) => {
                    write_hex_etag(&mut text, weak, self.block.get(range).unwrap_or_default());
                }
            }
        }
        for value in given {
            value.write(&mut text);
        }
        debug_assert_eq!(text.len(), size, "the values' text is the size counted");
        let text = Bytes::from(text);
        // Room for the known names; a custom one may make the map grow.
        let known = usize::try_from(self.info.present.count_ones()).unwrap_or(0);
        let mut map = HeaderMap::with_capacity(known + given.len() + 2);
        let vocabulary = Vocabulary::node().values.load();
        let mut at = 0;
        let mut next = |len: usize| {
            let range = at..(at + len).min(text.len());
            at = range.end;
            HeaderValue::from_maybe_shared(text.slice(range)).ok()
        };
        for (name, value) in self.fields() {
            let name = match name {
                Name::Known(index) => KNOWN.get(usize::from(index)).cloned(),
                Name::Custom(bytes) => HeaderName::from_bytes(bytes).ok(),
            };
            let value = match value {
                Value::Interned(number) => vocabulary.get(usize::from(number)).cloned(),
                other => next(Self::text_len(&other)),
            };
            if let (Some(name), Some(value)) = (name, value) {
                map.append(name, value);
            }
        }
        for value in given {
            if let Some(text) = next(value.len()) {
                map.insert(value.name(), text);
            }
        }
        map
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Name<'a> {
    Known(u8),
    Custom(&'a [u8]),
}

enum Value {
    /// The value's bytes, at this range of the block.
    Raw(std::ops::Range<usize>),
    Date(u32),
    Interned(u16),
    /// A hex digest ETag: whether weak, and where its bytes are.
    Hex(bool, std::ops::Range<usize>),
}

struct Fields<'a> {
    block: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Fields<'a> {
    type Item = (Name<'a>, Value);

    fn next(&mut self) -> Option<Self::Item> {
        let block = self.block;
        let code = *block.get(self.at)?;
        let start = self.at + 1;
        if code != CUSTOM && code & FORM == HEX {
            let weak = *block.get(start)? != 0;
            let length = usize::from(*block.get(start + 1)?);
            let digest = start + 2..start + 2 + length;
            block.get(digest.clone())?;
            self.at = digest.end;
            return Some((Name::Known(code & INDEX), Value::Hex(weak, digest)));
        }
        if code != CUSTOM && code & FORM == DATE {
            let bytes: [u8; 4] = block.get(start..start + 4)?.try_into().ok()?;
            self.at = start + 4;
            return Some((
                Name::Known(code & INDEX),
                Value::Date(u32::from_be_bytes(bytes)),
            ));
        }
        if code != CUSTOM && code & FORM == INTERNED {
            let bytes: [u8; 2] = block.get(start..start + 2)?.try_into().ok()?;
            self.at = start + 2;
            return Some((
                Name::Known(code & INDEX),
                Value::Interned(u16::from_be_bytes(bytes)),
            ));
        }
        let (name, start) = if code == CUSTOM {
            let colon = start + block.get(start..)?.iter().position(|b| *b == b':')?;
            (Name::Custom(block.get(start..colon)?), colon + 1)
        } else {
            (Name::Known(code), start)
        };
        let end = start + block.get(start..)?.iter().position(|b| *b == b'\n')?;
        self.at = end + 1;
        Some((name, Value::Raw(start..end)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(map: &HeaderMap) -> (Bytes, BlockInfo) {
        let mut block = Vec::new();
        let info = encode(map, &mut block);
        (Bytes::from(block), info)
    }

    #[test]
    fn fields_survive_the_round_trip_in_order() {
        let mut map = HeaderMap::new();
        map.insert("content-type", HeaderValue::from_static("text/html"));
        map.append("set-cookie", HeaderValue::from_static("a=1"));
        map.append("set-cookie", HeaderValue::from_static("b=2: c"));
        map.insert("x-empty", HeaderValue::from_static(""));
        map.insert("x-latin", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        map.insert("etag", HeaderValue::from_static("\"v1\""));
        map.insert(
            "date",
            HeaderValue::from_static("Thu, 03 Dec 2026 18:36:30 GMT"),
        );
        // Not canonical (a two-digit year): kept as it came.
        map.insert(
            "expires",
            HeaderValue::from_static("Thursday, 03-Dec-26 18:36:30 GMT"),
        );
        map.insert("last-modified", HeaderValue::from_static("yesterday"));
        let (block, info) = stored(&map);
        let view = HeaderBlock::new(&block, info);
        assert_eq!(view.to_map(&[]), map);
        assert_eq!(
            view.get(&HeaderName::from_static("set-cookie")).unwrap(),
            "a=1"
        );
        assert_eq!(view.get(&header::ETAG).unwrap(), "\"v1\"");
        assert_eq!(
            view.get(&header::DATE).unwrap(),
            "Thu, 03 Dec 2026 18:36:30 GMT"
        );
        assert_eq!(view.get(&header::CONTENT_TYPE).unwrap(), "text/html");
        assert_eq!(view.get(&HeaderName::from_static("x-empty")).unwrap(), "");
        assert!(view.get(&header::CONTENT_LENGTH).is_none());
        assert!(view.get(&HeaderName::from_static("x-missing")).is_none());
        let (empty, info) = stored(&HeaderMap::new());
        assert_eq!(HeaderBlock::new(&empty, info).to_map(&[]).len(), 0);
        // A common name takes one byte, a canonical date four more, a recurring value two.
        let one = |name: &'static str, value: &'static str| {
            let mut map = HeaderMap::new();
            map.insert(name, HeaderValue::from_static(value));
            stored(&map).0.len()
        };
        assert_eq!(one("date", "Thu, 03 Dec 2026 18:36:30 GMT"), 5);
        assert_eq!(one("content-type", "text/html"), 3);
        assert_eq!(one("etag", "\"v1\""), 6);
        assert_eq!(one("x-id", "42"), 9);
    }

    #[test]
    fn hex_digest_etags_are_kept_in_half_and_others_as_they_came() {
        for (etag, size) in [
            ("\"445dcf97d7880d62fc56a7ce85b3164a\"", 19),
            ("W/\"0a\"", 4),
            // Upper case, odd length, empty, not hex, unquoted: as they came.
            ("\"445DCF97\"", 12),
            ("\"abc\"", 7),
            ("\"\"", 4),
            ("\"5f3c-1a2b\"", 13),
            ("445dcf97", 10),
        ] {
            let mut map = HeaderMap::new();
            map.insert("etag", HeaderValue::from_static(etag));
            let (block, info) = stored(&map);
            let view = HeaderBlock::new(&block, info);
            assert_eq!(view.get(&header::ETAG).unwrap(), etag);
            assert_eq!(view.to_map(&[]), map, "{etag}");
            assert_eq!(block.len(), size, "{etag}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// A header value as an origin might send it: free text, a date (canonical or not), a
        /// hex digest ETag (weak or strong, any case), or a small set of recurring values.
        fn value() -> impl Strategy<Value = HeaderValue> {
            prop_oneof![
                proptest::collection::vec(0x20u8..0x7f, 0..40)
                    .prop_map(|bytes| HeaderValue::from_bytes(&bytes).unwrap()),
                (0u64..5_000_000_000).prop_map(|secs| {
                    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
                    HeaderValue::try_from(httpdate::fmt_http_date(time)).unwrap()
                }),
                (
                    any::<bool>(),
                    proptest::collection::vec(any::<u8>(), 0..40),
                    any::<bool>()
                )
                    .prop_map(|(weak, digest, upper)| {
                        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                        let hex = if upper { hex.to_uppercase() } else { hex };
                        let prefix = if weak { "W/" } else { "" };
                        HeaderValue::try_from(format!("{prefix}\"{hex}\"")).unwrap()
                    }),
                prop_oneof![Just("text/html"), Just("public, max-age=60"), Just("bytes")]
                    .prop_map(HeaderValue::from_static),
            ]
        }

        fn name() -> impl Strategy<Value = HeaderName> {
            prop_oneof![
                (0..KNOWN.len()).prop_map(|i| KNOWN[i].clone()),
                "x-[a-z]{1,12}".prop_map(|n| HeaderName::try_from(n).unwrap()),
            ]
        }

        proptest! {
            #[test]
            fn any_fields_come_back_as_they_were_sent(
                fields in proptest::collection::vec((name(), value()), 0..16)
            ) {
                let mut map = HeaderMap::new();
                for (name, value) in fields {
                    map.append(name, value);
                }
                let (block, info) = stored(&map);
                let view = HeaderBlock::new(&block, info);
                prop_assert_eq!(&view.to_map(&[]), &map);
                for name in map.keys() {
                    let first = view.get(name);
                    prop_assert_eq!(first.as_ref(), map.get(name));
                }
            }
        }
    }

    #[test]
    fn a_block_at_an_offset_of_a_larger_buffer_reads_the_same() {
        let mut map = HeaderMap::new();
        map.insert(
            "cache-control",
            HeaderValue::from_static("public, max-age=60"),
        );
        map.insert("x-id", HeaderValue::from_static("42"));
        let mut buffer = b"a.test/key".to_vec();
        let info = encode(&map, &mut buffer);
        let shared = Bytes::from(buffer);
        let view = HeaderBlock::new(&shared[10..], info);
        assert_eq!(view.to_map(&[]), map);
        // Values given from elsewhere come after, with their text in the same buffer.
        let given = view.to_map(&[
            Given::Length(1024),
            Given::Date(1_796_150_190),
            Given::Length(0),
        ]);
        assert_eq!(given.get("content-length").unwrap(), "0");
        assert_eq!(given.get("date").unwrap(), "Tue, 01 Dec 2026 18:36:30 GMT");
        assert_eq!(given.get("x-id").unwrap(), "42");
    }

    #[test]
    fn the_vocabulary_is_bounded_and_long_values_stay_inline() {
        let long = HeaderValue::from_str(&"x".repeat(Vocabulary::MAX_VALUE_BYTES + 1)).unwrap();
        let mut map = HeaderMap::new();
        map.insert("content-type", long.clone());
        let (block, info) = stored(&map);
        assert!(block.len() > Vocabulary::MAX_VALUE_BYTES);
        assert_eq!(
            HeaderBlock::new(&block, info).get(&header::CONTENT_TYPE),
            Some(long)
        );
        // A vocabulary of its own, filled: further values are kept inline, never lost.
        let vocabulary = Vocabulary {
            numbers: std::sync::Mutex::new(std::collections::HashMap::new()),
            values: arc_swap::ArcSwap::from_pointee(Vec::new()),
        };
        for n in 0..Vocabulary::MAX_VALUES {
            let value = HeaderValue::from_str(&format!("v{n}")).unwrap();
            assert_eq!(vocabulary.number(&value), u16::try_from(n).ok());
        }
        assert_eq!(
            vocabulary.number(&HeaderValue::from_static("one more")),
            None
        );
        assert_eq!(vocabulary.number(&HeaderValue::from_static("v7")), Some(7));
        assert_eq!(vocabulary.value(7).unwrap(), "v7");
    }
}
