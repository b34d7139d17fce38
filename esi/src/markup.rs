//! The ESI markup in a body, found incrementally: a [`Tokenizer`] is fed the body's chunks as
//! they arrive and gives back the text between ESI constructs (as slices of the chunks, not
//! copies) and the ESI tags themselves. Only `<esi:...>`, `</esi:...>`, `<!--esi` and the `-->`
//! that closes it are markup; everything else is text, however malformed. A tag split across
//! chunks is held back until it is whole; something that starts like a tag but is not one
//! (or grows past [`MAX_TAG`]) is text.
//!
//! Plain logic with no I/O.

use bytes::{Bytes, BytesMut};

/// The longest ESI tag (with its attributes) the tokenizer waits for; past it, the `<` is text.
pub const MAX_TAG: usize = 16 * 1024;

/// The ESI 1.0 elements, and any other `esi:` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Element {
    Include,
    Inline,
    Choose,
    When,
    Otherwise,
    Try,
    Attempt,
    Except,
    Vars,
    Remove,
    Comment,
    Unknown(String),
}

impl Element {
    fn named(name: &str) -> Self {
        match name {
            "include" => Self::Include,
            "inline" => Self::Inline,
            "choose" => Self::Choose,
            "when" => Self::When,
            "otherwise" => Self::Otherwise,
            "try" => Self::Try,
            "attempt" => Self::Attempt,
            "except" => Self::Except,
            "vars" => Self::Vars,
            "remove" => Self::Remove,
            "comment" => Self::Comment,
            other => Self::Unknown(other.to_owned()),
        }
    }
}

/// One thing found in a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// Bytes that are not ESI markup.
    Text(Bytes),
    /// `<esi:name attr="value" ...>`, or `.../>` when `empty`.
    Start {
        element: Element,
        attributes: Vec<(String, String)>,
        empty: bool,
        /// The tag as it was written, for `esi:inline` and for passing unknown markup on.
        raw: Bytes,
    },
    /// `</esi:name>`.
    End { element: Element, raw: Bytes },
    /// `<!--esi`: what follows up to the matching `-->` is processed as ESI.
    CommentOpen,
    /// The `-->` that closes a `<!--esi`.
    CommentClose,
}

impl Token {
    /// The bytes this token was made from.
    pub fn raw(&self) -> Bytes {
        match self {
            Token::Text(bytes) => bytes.clone(),
            Token::Start { raw, .. } | Token::End { raw, .. } => raw.clone(),
            Token::CommentOpen => Bytes::from_static(b"<!--esi"),
            Token::CommentClose => Bytes::from_static(b"-->"),
        }
    }
}

/// Finds ESI markup in a body fed chunk by chunk.
#[derive(Debug, Default)]
pub struct Tokenizer {
    /// The unfinished end of what was fed: a tag that is not whole yet.
    held: BytesMut,
    /// `<!--esi` open and not yet closed.
    open_comments: usize,
}

enum Scan {
    /// A token of this many bytes.
    Token(Token, usize),
    /// Not markup: the first byte is text.
    Text,
    /// Cannot tell yet: more bytes are needed.
    Incomplete,
}

impl Tokenizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next chunk; returns every token it completes.
    pub fn feed(&mut self, chunk: Bytes, out: &mut Vec<Token>) {
        let buffer = if self.held.is_empty() {
            chunk
        } else {
            self.held.extend_from_slice(&chunk);
            self.held.split().freeze()
        };
        let rest = self.scan(buffer, out, false);
        self.held.extend_from_slice(&rest);
    }

    /// The body ended: whatever is held back is text.
    pub fn finish(&mut self, out: &mut Vec<Token>) {
        let held = self.held.split().freeze();
        let rest = self.scan(held, out, true);
        if !rest.is_empty() {
            out.push(Token::Text(rest));
        }
    }

    /// Tokenizes `buffer`, returning the tail that has to wait for more bytes.
    fn scan(&mut self, buffer: Bytes, out: &mut Vec<Token>, last: bool) -> Bytes {
        let mut text_start = 0;
        let mut at = 0;
        while at < buffer.len() {
            let Some(found) = self.next_candidate(&buffer[at..]) else {
                break;
            };
            let position = at + found;
            match self.scan_at(&buffer[position..], last) {
                Scan::Token(token, length) => {
                    if position > text_start {
                        out.push(Token::Text(buffer.slice(text_start..position)));
                    }
                    let token = match token {
                        Token::Start {
                            element,
                            attributes,
                            empty,
                            ..
                        } => Token::Start {
                            element,
                            attributes,
                            empty,
                            raw: buffer.slice(position..position + length),
                        },
                        Token::End { element, .. } => Token::End {
                            element,
                            raw: buffer.slice(position..position + length),
                        },
                        other => other,
                    };
                    match token {
                        Token::CommentOpen => self.open_comments += 1,
                        Token::CommentClose => self.open_comments -= 1,
                        _ => {}
                    }
                    out.push(token);
                    at = position + length;
                    text_start = at;
                }
                Scan::Text => at = position + 1,
                Scan::Incomplete => {
                    if position > text_start {
                        out.push(Token::Text(buffer.slice(text_start..position)));
                    }
                    return buffer.slice(position..);
                }
            }
        }
        if text_start < buffer.len() {
            out.push(Token::Text(buffer.slice(text_start..)));
        }
        Bytes::new()
    }

    /// Where the next thing that may be markup starts.
    fn next_candidate(&self, bytes: &[u8]) -> Option<usize> {
        if self.open_comments > 0 {
            memchr::memchr2(b'<', b'-', bytes)
        } else {
            memchr::memchr(b'<', bytes)
        }
    }

    fn scan_at(&self, bytes: &[u8], last: bool) -> Scan {
        let incomplete = if last { Scan::Text } else { Scan::Incomplete };
        if bytes[0] == b'-' {
            return match prefix(bytes, b"-->") {
                Prefix::Yes => Scan::Token(Token::CommentClose, 3),
                Prefix::Maybe => incomplete,
                Prefix::No => Scan::Text,
            };
        }
        match prefix(bytes, b"<!--esi") {
            Prefix::Yes => return Scan::Token(Token::CommentOpen, 7),
            Prefix::Maybe => return incomplete,
            Prefix::No => {}
        }
        let (closing, name_at) = match (prefix(bytes, b"<esi:"), prefix(bytes, b"</esi:")) {
            (Prefix::Yes, _) => (false, 5),
            (_, Prefix::Yes) => (true, 6),
            (Prefix::Maybe, _) | (_, Prefix::Maybe) => return incomplete,
            _ => return Scan::Text,
        };
        let Some(end) = tag_end(bytes) else {
            return if bytes.len() > MAX_TAG {
                Scan::Text
            } else {
                incomplete
            };
        };
        if end > MAX_TAG {
            return Scan::Text;
        }
        let Ok(inside) = std::str::from_utf8(&bytes[name_at..end]) else {
            return Scan::Text;
        };
        let name_len = inside
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .unwrap_or(inside.len());
        if name_len == 0 {
            return Scan::Text;
        }
        let element = Element::named(&inside[..name_len].to_ascii_lowercase());
        let length = end + 1;
        if closing {
            return Scan::Token(
                Token::End {
                    element,
                    raw: Bytes::new(),
                },
                length,
            );
        }
        let mut rest = inside[name_len..].trim_end();
        let empty = rest.ends_with('/');
        if empty {
            rest = &rest[..rest.len() - 1];
        }
        match attributes(rest) {
            Some(attributes) => Scan::Token(
                Token::Start {
                    element,
                    attributes,
                    empty,
                    raw: Bytes::new(),
                },
                length,
            ),
            None => Scan::Text,
        }
    }
}

enum Prefix {
    Yes,
    /// `bytes` is a proper prefix of the pattern.
    Maybe,
    No,
}

fn prefix(bytes: &[u8], pattern: &[u8]) -> Prefix {
    let n = bytes.len().min(pattern.len());
    if !bytes[..n].eq_ignore_ascii_case(&pattern[..n]) {
        Prefix::No
    } else if n < pattern.len() {
        Prefix::Maybe
    } else {
        Prefix::Yes
    }
}

/// The `>` that ends a tag, skipping quoted attribute values.
fn tag_end(bytes: &[u8]) -> Option<usize> {
    let mut quote = None;
    for (i, &b) in bytes.iter().enumerate() {
        match (quote, b) {
            (None, b'"' | b'\'') => quote = Some(b),
            (Some(q), _) if q == b => quote = None,
            (None, b'>') => return Some(i),
            _ => {}
        }
    }
    None
}

/// `a="x" b='y' c=z` into pairs; `None` when it is not attribute syntax.
fn attributes(mut rest: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return Some(out);
        }
        let name_len = rest
            .find(|c: char| c == '=' || c.is_ascii_whitespace())
            .unwrap_or(rest.len());
        let name = &rest[..name_len];
        if name.is_empty() || name.contains(['"', '\'', '<', '>']) {
            return None;
        }
        rest = rest[name_len..].trim_start();
        let Some(after) = rest.strip_prefix('=') else {
            // An attribute with no value.
            out.push((name.to_ascii_lowercase(), String::new()));
            continue;
        };
        rest = after.trim_start();
        let value;
        match rest.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let close = rest[1..].find(q)?;
                value = &rest[1..1 + close];
                rest = &rest[close + 2..];
            }
            Some(_) => {
                let len = rest.find(char::is_whitespace).unwrap_or(rest.len());
                value = &rest[..len];
                rest = &rest[len..];
            }
            None => return None,
        }
        out.push((name.to_ascii_lowercase(), unescape(value)));
    }
}

/// The XML entities ESI attribute values may use.
fn unescape(value: &str) -> String {
    if !value.contains('&') {
        return value.to_owned();
    }
    value
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// An attribute's value, by name.
pub fn attribute<'a>(attributes: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(chunks: &[&str]) -> Vec<Token> {
        let mut tokenizer = Tokenizer::new();
        let mut out = Vec::new();
        for chunk in chunks {
            tokenizer.feed(Bytes::copy_from_slice(chunk.as_bytes()), &mut out);
        }
        tokenizer.finish(&mut out);
        out
    }

    /// Text tokens merged, for comparing tokenizations of differently cut input.
    fn merged(tokens: Vec<Token>) -> Vec<Token> {
        let mut out: Vec<Token> = Vec::new();
        for token in tokens {
            if let (Some(Token::Text(previous)), Token::Text(next)) = (out.last_mut(), &token) {
                let mut joined = BytesMut::from(&previous[..]);
                joined.extend_from_slice(next);
                *previous = joined.freeze();
                continue;
            }
            out.push(token);
        }
        out
    }

    #[test]
    fn finds_tags_between_text() {
        let t = tokens(&[r#"a<esi:include src="/x" onerror='continue'/>b</esi:remove>c"#]);
        assert_eq!(t.len(), 5);
        assert_eq!(t[0], Token::Text(Bytes::from_static(b"a")));
        let Token::Start {
            element,
            attributes,
            empty,
            raw,
        } = &t[1]
        else {
            panic!("{t:?}")
        };
        assert_eq!(*element, Element::Include);
        assert!(*empty);
        assert_eq!(attribute(attributes, "src"), Some("/x"));
        assert_eq!(attribute(attributes, "onerror"), Some("continue"));
        assert_eq!(&raw[..], br#"<esi:include src="/x" onerror='continue'/>"#);
        assert!(matches!(
            &t[3],
            Token::End {
                element: Element::Remove,
                ..
            }
        ));
    }

    #[test]
    fn a_tag_cut_anywhere_is_the_same_tag() {
        let page =
            r#"<p><!--esi <esi:vars>$(HTTP_HOST)</esi:vars> --> <esi:include src="/a>b"/></p>"#;
        let whole = merged(tokens(&[page]));
        for cut in 0..page.len() {
            let (a, b) = page.split_at(cut);
            assert_eq!(merged(tokens(&[a, b])), whole, "cut at {cut}");
        }
        assert!(whole.contains(&Token::CommentOpen));
        assert!(whole.contains(&Token::CommentClose));
    }

    #[test]
    fn things_that_only_look_like_markup_are_text() {
        for text in [
            "<es",
            "<esi:",
            "<esi:include src=\"x",
            "< esi:include/>",
            "a-->b",
            "<esi:=x/>",
        ] {
            let t = tokens(&[text]);
            assert_eq!(
                merged(t),
                vec![Token::Text(Bytes::copy_from_slice(text.as_bytes()))],
                "{text}"
            );
        }
    }

    #[test]
    fn an_overlong_tag_is_text() {
        let long = format!("<esi:include src=\"{}", "x".repeat(MAX_TAG + 10));
        let mut tokenizer = Tokenizer::new();
        let mut out = Vec::new();
        tokenizer.feed(Bytes::from(long.clone()), &mut out);
        assert!(
            tokenizer.held.is_empty(),
            "nothing past MAX_TAG is held back"
        );
        tokenizer.finish(&mut out);
        assert_eq!(merged(out), vec![Token::Text(Bytes::from(long))]);
    }
}
