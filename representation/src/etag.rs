//! Entity tags (RFC 9110 section 8.8.3) and their two comparison functions.

use http::HeaderValue;
use http::header::GetAll;

/// A parsed entity tag: `"xyzzy"` (strong) or `W/"xyzzy"` (weak).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityTag {
    pub weak: bool,
    /// The opaque tag without its quotes.
    pub opaque: Vec<u8>,
}

impl EntityTag {
    /// Parse exactly one entity tag (surrounding whitespace allowed).
    pub fn parse(bytes: &[u8]) -> Option<EntityTag> {
        let (tag, rest) = parse_one(trim(bytes))?;
        rest.is_empty().then_some(tag)
    }

    /// Strong comparison: both strong and the opaque tags equal.
    pub fn strong_eq(&self, other: &EntityTag) -> bool {
        !self.weak && !other.weak && self.opaque == other.opaque
    }

    /// Weak comparison: the opaque tags equal, whatever the weakness.
    pub fn weak_eq(&self, other: &EntityTag) -> bool {
        self.opaque == other.opaque
    }
}

/// The value of If-Match or If-None-Match.
pub(crate) enum TagList {
    Any,
    Tags(Vec<EntityTag>),
}

/// Parse every line of an If-Match / If-None-Match header as one list. `None` when the header
/// is absent or malformed (a malformed precondition is ignored, like an absent one).
pub(crate) fn parse_list(values: GetAll<'_, HeaderValue>) -> Option<TagList> {
    let mut tags = Vec::new();
    let mut any = false;
    let mut present = false;
    for value in values {
        present = true;
        let mut rest = value.as_bytes();
        loop {
            rest = skip_separators(rest);
            if rest.is_empty() {
                break;
            }
            if rest[0] == b'*' {
                any = true;
                rest = &rest[1..];
            } else {
                let (tag, after) = parse_one(rest)?;
                tags.push(tag);
                rest = after;
            }
            // After an element only whitespace and then a comma (or the end) may follow.
            rest = trim_start(rest);
            match rest.first() {
                None => break,
                Some(b',') => {}
                Some(_) => return None,
            }
        }
    }
    if !present {
        return None;
    }
    match (any, tags.is_empty()) {
        (true, true) => Some(TagList::Any),
        (false, false) => Some(TagList::Tags(tags)),
        // `*` mixed with tags, or an empty value: not a valid field value.
        _ => None,
    }
}

/// Parse one entity tag at the start of `bytes`, returning it and the rest.
fn parse_one(bytes: &[u8]) -> Option<(EntityTag, &[u8])> {
    let (weak, rest) = match bytes.strip_prefix(b"W/") {
        Some(rest) => (true, rest),
        None => (false, bytes),
    };
    let rest = rest.strip_prefix(b"\"")?;
    let end = rest.iter().position(|&b| b == b'"')?;
    let opaque = &rest[..end];
    // etagc = %x21 / %x23-7E / obs-text
    if !opaque
        .iter()
        .all(|&b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
    {
        return None;
    }
    Some((
        EntityTag {
            weak,
            opaque: opaque.to_vec(),
        },
        &rest[end + 1..],
    ))
}

fn skip_separators(mut bytes: &[u8]) -> &[u8] {
    while let Some((&b, rest)) = bytes.split_first() {
        if b == b',' || b == b' ' || b == b'\t' {
            bytes = rest;
        } else {
            break;
        }
    }
    bytes
}

fn trim_start(mut bytes: &[u8]) -> &[u8] {
    while let Some((&b, rest)) = bytes.split_first() {
        if b == b' ' || b == b'\t' {
            bytes = rest;
        } else {
            break;
        }
    }
    bytes
}

fn trim(bytes: &[u8]) -> &[u8] {
    let mut bytes = trim_start(bytes);
    while let Some((&b, rest)) = bytes.split_last() {
        if b == b' ' || b == b'\t' {
            bytes = rest;
        } else {
            break;
        }
    }
    bytes
}
