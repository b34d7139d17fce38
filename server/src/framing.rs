//! A passive watch over the HTTP/1.1 request framing of one connection. It reads the bytes hyper
//! reads, finds each request head with the same parser (httparse), skips bodies as their
//! framing says, and notes a request that declares both Content-Length and Transfer-Encoding.
//! hyper accepts such a request by ignoring Content-Length and closes the connection after it
//! (RFC 9112 section 6.1); the listener refuses it instead, with 400, as hardened proxies do, so
//! none of it reaches an upstream that might frame it the other way.
//!
//! The watch never changes a byte. When it meets anything it does not follow (HTTP/2, an
//! upgrade, a head it cannot parse), it stops watching: hyper's own handling stands.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// No request of the connection declared both framings.
const NONE: u64 = u64::MAX;

/// Most header fields the watch parses in one head (more than `[limits] max_headers` by
/// default); past it the watch stops and hyper's own limit answers.
const MAX_HEADERS: usize = 128;

/// What the watch found, shared with the connection's request handler.
#[derive(Debug)]
pub struct FramingVerdict {
    /// The number (from 0) of the first request that declared both framings.
    conflicting: AtomicU64,
    /// Requests the handler has been given so far.
    handled: AtomicU64,
}

impl FramingVerdict {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            conflicting: AtomicU64::new(NONE),
            handled: AtomicU64::new(0),
        })
    }

    /// Called once per request, in order: whether this one declared both framings. A request's
    /// head is read (and watched) before hyper hands it over, so its verdict is known by then.
    pub fn next_is_conflicting(&self) -> bool {
        let number = self.handled.fetch_add(1, Ordering::Relaxed);
        self.conflicting.load(Ordering::Relaxed) == number
    }
}

/// Where the watch is in the byte stream.
#[derive(Debug)]
enum Position {
    /// Collecting a request head.
    Head,
    /// Skipping this many body bytes.
    Body(u64),
    /// In a chunked body: collecting a chunk-size line.
    ChunkSize,
    /// Skipping chunk data, then its CRLF.
    ChunkData(u64),
    /// Collecting trailer lines until an empty one.
    Trailers,
    /// Not watching any more.
    Off,
}

/// The framing state machine, apart from any I/O so it can be tested on its own.
#[derive(Debug)]
pub struct FramingTracker {
    position: Position,
    /// The bytes of the head, size line or trailer line being collected.
    pending: Vec<u8>,
    /// Heads seen so far.
    heads: u64,
    /// Longest head or line collected before the watch gives up.
    max_line: usize,
    verdict: Arc<FramingVerdict>,
}

impl FramingTracker {
    pub fn new(max_head_bytes: usize) -> Self {
        Self {
            position: Position::Head,
            pending: Vec::new(),
            heads: 0,
            max_line: max_head_bytes.saturating_add(1024),
            verdict: FramingVerdict::new(),
        }
    }

    pub fn verdict(&self) -> Arc<FramingVerdict> {
        self.verdict.clone()
    }

    /// Feeds bytes in the order they arrived.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            bytes = match self.position {
                Position::Off => return,
                Position::Body(left) => {
                    let skip = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
                    let left = left - skip as u64;
                    self.position = if left == 0 {
                        Position::Head
                    } else {
                        Position::Body(left)
                    };
                    &bytes[skip..]
                }
                Position::ChunkData(left) => {
                    let skip = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
                    let left = left - skip as u64;
                    self.position = if left == 0 {
                        // The CRLF after the data is collected as an empty size line.
                        Position::ChunkSize
                    } else {
                        Position::ChunkData(left)
                    };
                    &bytes[skip..]
                }
                Position::Head | Position::ChunkSize | Position::Trailers => self.collect(bytes),
            };
        }
    }

    /// Collects bytes of a head or line; returns what follows it once it is complete.
    fn collect<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        // The common case, a whole head in one read, is parsed where it lies, without a copy.
        if self.pending.is_empty() && matches!(self.position, Position::Head) {
            let leading = bytes
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            let bytes = &bytes[leading..];
            if let Some(at) = find(bytes, b"\r\n\r\n", 0) {
                self.head(&bytes[..at + 4]);
                return &bytes[at + 4..];
            }
            if bytes.is_empty() {
                return bytes;
            }
            return self.collect_pending(bytes);
        }
        self.collect_pending(bytes)
    }

    fn collect_pending<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        let before = self.pending.len();
        self.pending.extend_from_slice(bytes);
        let end = match self.position {
            Position::Head => {
                // Empty lines before a request are allowed (RFC 9112 section 2.2).
                let leading = self
                    .pending
                    .iter()
                    .take_while(|&&b| b == b'\r' || b == b'\n')
                    .count();
                self.pending.drain(..leading);
                let start = before.saturating_sub(leading).saturating_sub(3);
                find(&self.pending, b"\r\n\r\n", start).map(|at| at + 4)
            }
            _ => find(&self.pending, b"\n", before).map(|at| at + 1),
        };
        let Some(end) = end else {
            if self.pending.len() > self.max_line {
                self.stop();
            }
            return &[];
        };
        // The bytes of `bytes` that belong to what follows.
        let used = (end + bytes.len()).saturating_sub(self.pending.len());
        let rest = &bytes[used.min(bytes.len())..];
        let line = std::mem::take(&mut self.pending);
        match self.position {
            Position::Head => self.head(&line[..end]),
            Position::ChunkSize => self.chunk_size(&line[..end]),
            _ => {
                if line[..end] == *b"\r\n" || line[..end] == *b"\n" {
                    self.position = Position::Head;
                }
            }
        }
        // Keep the allocation for the next head.
        self.pending = line;
        self.pending.clear();
        rest
    }

    fn head(&mut self, head: &[u8]) {
        // Left uninitialised: filling 128 empty headers per request would cost more than
        // parsing the head.
        let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut []);
        let Ok(httparse::Status::Complete(_)) =
            request.parse_with_uninit_headers(head, &mut headers)
        else {
            return self.stop();
        };
        let number = self.heads;
        self.heads += 1;
        let (mut length, mut encoding, mut upgrade) = (None, None, false);
        for header in request.headers.iter() {
            if header.name.eq_ignore_ascii_case("content-length") {
                length = Some(header.value);
            } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                encoding = Some(header.value);
            } else if header.name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
        }
        if upgrade || request.method == Some("CONNECT") {
            return self.stop();
        }
        self.position = match (length, encoding) {
            (Some(_), Some(_)) => {
                let _ = self.verdict.conflicting.compare_exchange(
                    NONE,
                    number,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                // hyper closes the connection after this request.
                Position::Off
            }
            (None, Some(coding)) if ends_chunked(coding) => Position::ChunkSize,
            (None, Some(_)) => Position::Off,
            (Some(value), None) => match parse_length(value) {
                Some(0) => Position::Head,
                Some(length) => Position::Body(length),
                None => Position::Off,
            },
            (None, None) => Position::Head,
        };
    }

    fn chunk_size(&mut self, line: &[u8]) {
        if line == b"\r\n" {
            // The CRLF that ends a chunk's data.
            return;
        }
        self.position = match httparse::parse_chunk_size(line) {
            Ok(httparse::Status::Complete((_, 0))) => Position::Trailers,
            Ok(httparse::Status::Complete((_, size))) => Position::ChunkData(size),
            _ => Position::Off,
        };
    }

    fn stop(&mut self) {
        self.position = Position::Off;
        self.pending = Vec::new();
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|at| at + from)
}

fn ends_chunked(coding: &[u8]) -> bool {
    coding
        .rsplit(|&b| b == b',')
        .next()
        .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

fn parse_length(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// An I/O stream whose reads go through a [`FramingTracker`].
pub struct Watched<IO> {
    inner: IO,
    tracker: FramingTracker,
}

impl<IO> Watched<IO> {
    pub fn new(inner: IO, max_head_bytes: usize) -> Self {
        Self {
            inner,
            tracker: FramingTracker::new(max_head_bytes),
        }
    }

    pub fn verdict(&self) -> Arc<FramingVerdict> {
        self.tracker.verdict()
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.tracker.feed(&buf.filled()[before..]);
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bytes` split at every `step` bytes; returns the conflicting request's number.
    fn conflicting(bytes: &[u8], step: usize) -> Option<u64> {
        let mut tracker = FramingTracker::new(8192);
        for chunk in bytes.chunks(step) {
            tracker.feed(chunk);
        }
        let found = tracker.verdict.conflicting.load(Ordering::Relaxed);
        (found != NONE).then_some(found)
    }

    #[test]
    fn a_request_with_both_framings_is_found_after_bodies_of_either_kind() {
        let stream = b"GET /a HTTP/1.1\r\nhost: a\r\n\r\n\
            POST /b HTTP/1.1\r\nhost: a\r\ncontent-length: 30\r\n\r\n\
            GET /x HTTP/1.1\r\nhost: a\r\n\r\n01\
            POST /c HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip, chunked\r\n\r\n\
            5;ext=1\r\nhello\r\n0\r\ntrailer: t\r\n\r\n\
            \r\nPOST /d HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n";
        // Whatever way the bytes are cut up on the wire.
        for step in [1, 2, 3, 7, 64, stream.len()] {
            assert_eq!(conflicting(stream, step), Some(3), "step {step}");
        }
        let reversed =
            b"POST / HTTP/1.1\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n";
        assert_eq!(conflicting(reversed, 5), Some(0));
    }

    #[test]
    fn a_body_that_looks_like_a_request_is_skipped_as_a_body() {
        let inner = b"POST /in HTTP/1.1\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n";
        let mut stream = format!(
            "POST /outer HTTP/1.1\r\nhost: a\r\ncontent-length: {}\r\n\r\n",
            inner.len()
        )
        .into_bytes();
        stream.extend_from_slice(inner);
        stream.extend_from_slice(b"GET /next HTTP/1.1\r\nhost: a\r\n\r\n");
        assert_eq!(conflicting(&stream, 4), None);
    }

    #[test]
    fn what_the_watch_does_not_follow_turns_it_off() {
        let h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nPOST / HTTP/1.1\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n";
        assert_eq!(conflicting(h2, 9), None);
        let upgrade = b"GET / HTTP/1.1\r\nupgrade: websocket\r\n\r\nPOST / HTTP/1.1\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n";
        assert_eq!(conflicting(upgrade, 9), None);
        let mut tracker = FramingTracker::new(16);
        tracker.feed(&[b'a'; 2000]);
        assert!(matches!(tracker.position, Position::Off));
    }

    proptest::proptest! {
        /// Any bytes, cut up any way: no panic, and the same verdict as when they come at once.
        #[test]
        fn the_verdict_does_not_depend_on_how_the_bytes_arrive(
            pieces in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just(b"POST / HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc".to_vec()),
                    proptest::strategy::Just(b"GET / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n".to_vec()),
                    proptest::strategy::Just(b"3\r\nabc\r\n0\r\n\r\n".to_vec()),
                    proptest::strategy::Just(b"content-length: 1\r\n".to_vec()),
                    proptest::strategy::Just(b"\r\n".to_vec()),
                    proptest::collection::vec(proptest::num::u8::ANY, 0..40),
                ],
                0..12,
            ),
            step in 1usize..50,
        ) {
            let stream = pieces.concat();
            let whole = conflicting(&stream, stream.len().max(1));
            proptest::prop_assert_eq!(conflicting(&stream, step), whole);
        }
    }

    #[test]
    fn the_handler_learns_the_verdict_of_its_own_request_only() {
        let verdict = FramingVerdict::new();
        verdict.conflicting.store(1, Ordering::Relaxed);
        assert!(!verdict.next_is_conflicting());
        assert!(verdict.next_is_conflicting());
        assert!(!verdict.next_is_conflicting());
    }
}
