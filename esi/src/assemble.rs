//! Assembling one page: every ESI part (the template, and each fragment that is itself ESI)
//! is read by its own task that tokenizes its body as it arrives and interprets the markup.
//! Each include starts its fetch the moment it is parsed, at any depth, and leaves a
//! placeholder in its part's output; the page's [`Output`] walks the parts in document order
//! and hands bytes on as soon as everything before them is out.
//!
//! The output of a part is a bounded channel of [`Piece`]s: bytes, a fragment still being
//! fetched, or a part that is ready. A `try` block is a task of its own that holds its
//! attempt's output back until every include in it has answered, then releases it, or the
//! except branch in its place.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response};
use http_body_util::BodyExt;
use outpost_cache::directives::ResponseDirectives;
use outpost_server::{Body, Handler, Peer};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::config::EsiConfig;
use crate::encoding::Decoder;
use crate::markup::{Element, Token, Tokenizer, attribute};
use crate::metrics::EsiMetrics;
use crate::vars::Variables;
use crate::{Failure, Rules};

/// Pieces a part's channel holds before its task waits for the page to catch up.
const PART_BUFFER: usize = 256;
/// Pieces a plain fragment's channel holds.
const FRAGMENT_BUFFER: usize = 16;

pub(crate) type Item = Result<Piece, Failure>;
pub(crate) type PartStream = mpsc::Receiver<Item>;
pub(crate) type Pending = oneshot::Receiver<Result<PartStream, Failure>>;
type Sink = mpsc::Sender<Item>;

/// One element of a part's output, in document order.
pub(crate) enum Piece {
    Bytes(Bytes),
    /// An include or try block whose output is not known yet.
    Pending(Pending),
    /// A part whose output is streaming.
    Ready(PartStream),
}

/// Fragments defined with `esi:inline`, by URL.
#[derive(Clone)]
pub(crate) struct InlineStore(moka::sync::Cache<String, Arc<InlineFragment>>);

pub(crate) struct InlineFragment {
    body: Bytes,
    expires: Instant,
    fetchable: bool,
}

/// What the inline fragments may hold in all, in bytes: their URLs and bodies and moka's
/// bookkeeping per entry (about 270 bytes measured, rounded up). Weighed, not counted: one
/// page can define a large fragment.
const INLINE_BYTES: u64 = 32 << 20;
const INLINE_ENTRY_OVERHEAD: usize = 320;

impl InlineStore {
    pub(crate) fn new() -> Self {
        Self(
            moka::sync::Cache::builder()
                .max_capacity(INLINE_BYTES)
                // Least recently used out: the default policy refuses a new entry that is
                // heavier than the ones it would evict, and a refused fragment would be fetched.
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .weigher(|url: &String, fragment: &Arc<InlineFragment>| {
                    let bytes = url.len() + fragment.body.len() + INLINE_ENTRY_OVERHEAD;
                    u32::try_from(bytes).unwrap_or(u32::MAX)
                })
                .build(),
        )
    }
}

/// What every part of one page shares.
pub(crate) struct Page<H> {
    pub(crate) next: Arc<H>,
    pub(crate) peer: Peer,
    pub(crate) config: Arc<EsiConfig>,
    pub(crate) rules: Arc<Rules>,
    pub(crate) inline: InlineStore,
    pub(crate) variables: Variables,
    /// The page's host, and the directory relative includes resolve against.
    pub(crate) host: String,
    pub(crate) directory: String,
    /// The client's headers that go on every fragment request.
    pub(crate) fragment_headers: HeaderMap,
    pub(crate) includes: AtomicUsize,
    pub(crate) tracker: Arc<Tracker>,
    pub(crate) metrics: EsiMetrics,
}

/// What the page's head is derived from, and whether all of it is known yet.
#[derive(Default)]
pub(crate) struct Tracker {
    /// Parts still being read and includes without an answer yet.
    open: AtomicUsize,
    settled: Notify,
    pub(crate) derived: Mutex<Derived>,
}

/// The page's headers as its parts make them.
#[derive(Debug, Default)]
pub(crate) struct Derived {
    /// The shortest remaining client lifetime over the parts, in seconds.
    pub(crate) lifetime: Option<u64>,
    pub(crate) private: bool,
    pub(crate) no_store: bool,
    /// One entry per part: its URL with its validator, and the hash of what it computed from
    /// the request (variables, choices).
    pub(crate) validators: Vec<String>,
    /// A part had no validator: the page gets none.
    pub(crate) unvalidated: bool,
}

impl Derived {
    pub(crate) fn add_part(&mut self, url: &str, headers: &HeaderMap) {
        let directives = ResponseDirectives::parse(headers.get_all(header::CACHE_CONTROL).iter());
        let age = headers
            .get(header::AGE)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .unwrap_or(0);
        let lifetime = directives
            .max_age
            .map_or(0, |d| d.as_secs().saturating_sub(age));
        self.lifetime = Some(self.lifetime.map_or(lifetime, |l| l.min(lifetime)));
        self.private |= directives.private;
        self.no_store |= directives.no_store;
        let validator = headers
            .get(header::ETAG)
            .or_else(|| headers.get(header::LAST_MODIFIED))
            .and_then(|v| v.to_str().ok());
        match validator {
            Some(validator) => self.validators.push(format!("{url} {validator}")),
            None => self.unvalidated = true,
        }
    }

    /// `Cache-Control` for the page.
    pub(crate) fn cache_control(&self) -> String {
        if self.no_store {
            return "no-store".into();
        }
        let lifetime = self.lifetime.unwrap_or(0);
        if self.private {
            format!("private, max-age={lifetime}")
        } else {
            format!("max-age={lifetime}")
        }
    }

    /// A weak validator for the page, when every part has one.
    pub(crate) fn etag(&self) -> Option<String> {
        if self.unvalidated || self.validators.is_empty() {
            return None;
        }
        let mut sorted = self.validators.clone();
        sorted.sort();
        let hash = xxhash_rust::xxh3::xxh3_128(sorted.join("\n").as_bytes());
        Some(format!("W/\"esi-{hash:032x}\""))
    }
}

/// Counts one open thing of a page until dropped.
pub(crate) struct Hold(Arc<Tracker>);

impl Drop for Hold {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.settled.notify_waiters();
        }
    }
}

impl Tracker {
    pub(crate) fn hold(self: &Arc<Self>) -> Hold {
        self.open.fetch_add(1, Ordering::AcqRel);
        Hold(self.clone())
    }

    /// Waits until every part has been read and every include has answered.
    pub(crate) async fn settled(&self) {
        loop {
            let notified = self.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.open.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    pub(crate) fn is_settled(&self) -> bool {
        self.open.load(Ordering::Acquire) == 0
    }
}

/// Starts reading an ESI part; its output comes out of the returned stream.
pub(crate) fn start_part<H: Handler>(
    page: Arc<Page<H>>,
    url: String,
    body: Body,
    decoder: Decoder,
    depth: usize,
    ancestors: Arc<Vec<String>>,
) -> PartStream {
    let (sink, stream) = mpsc::channel(PART_BUFFER);
    let hold = page.tracker.hold();
    tokio::spawn(read_part(
        page, url, body, decoder, depth, ancestors, sink, hold,
    ));
    stream
}

#[allow(clippy::too_many_arguments)]
fn read_part<H: Handler>(
    page: Arc<Page<H>>,
    url: String,
    body: Body,
    decoder: Decoder,
    depth: usize,
    ancestors: Arc<Vec<String>>,
    sink: Sink,
    hold: Hold,
) -> BoxFuture<'static, ()> {
    async move {
        let timeout = page.config.fragment_timeout();
        let mut interpreter = Interpreter::new(page, url.clone(), depth, ancestors, sink.clone());
        let mut chunks = Chunks::new(body, decoder, timeout, url);
        let mut tokenizer = Tokenizer::new();
        let mut tokens = Vec::new();
        loop {
            let end = match chunks.next().await {
                Ok(Some(chunk)) => {
                    tokenizer.feed(chunk, &mut tokens);
                    false
                }
                Ok(None) => {
                    tokenizer.finish(&mut tokens);
                    true
                }
                Err(failure) => {
                    let _ = sink.send(Err(failure)).await;
                    return;
                }
            };
            for token in tokens.drain(..) {
                if interpreter.feed(token).await.is_err() {
                    return;
                }
            }
            if end {
                break;
            }
        }
        let _ = interpreter.finish().await;
        drop(hold);
    }
    .boxed()
}

/// A part's body as decoded chunks, each awaited for at most the fragment timeout.
struct Chunks {
    body: Body,
    decoder: Decoder,
    timeout: Duration,
    url: String,
    done: bool,
}

impl Chunks {
    fn new(body: Body, decoder: Decoder, timeout: Duration, url: String) -> Self {
        Self {
            body,
            decoder,
            timeout,
            url,
            done: false,
        }
    }

    /// The next non-empty chunk; `None` once at the end (after what the decoder held back).
    async fn next(&mut self) -> Result<Option<Bytes>, Failure> {
        let body_failed = |url: &str, reason: String| Failure::Body {
            url: url.to_owned(),
            reason,
        };
        while !self.done {
            let frame = match tokio::time::timeout(self.timeout, self.body.frame()).await {
                Err(_) => {
                    return Err(Failure::Timeout {
                        url: self.url.clone(),
                    });
                }
                Ok(Some(Err(error))) => return Err(body_failed(&self.url, error.to_string())),
                Ok(Some(Ok(frame))) => frame,
                Ok(None) => {
                    self.done = true;
                    let rest = self
                        .decoder
                        .finish()
                        .map_err(|reason| body_failed(&self.url, reason))?;
                    if rest.is_empty() {
                        return Ok(None);
                    }
                    return Ok(Some(rest));
                }
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            let data = self
                .decoder
                .decode(&data)
                .map_err(|reason| body_failed(&self.url, reason))?;
            if !data.is_empty() {
                return Ok(Some(data));
            }
        }
        Ok(None)
    }
}

/// The part's reader stopped: the page no longer wants its output.
struct Closed;

enum Frame {
    /// Content that is dropped: `esi:remove`, `esi:comment`, a branch not taken.
    Skip {
        element: Element,
        depth: usize,
    },
    /// The content of `esi:except`, kept for when the attempt fails.
    Except {
        depth: usize,
        tokens: Vec<Token>,
        deliver: Option<oneshot::Sender<Vec<Token>>>,
    },
    Vars,
    Choose {
        taken: bool,
    },
    Branch(Element),
    Try {
        attempt: Option<Sink>,
        except: Option<oneshot::Sender<Vec<Token>>>,
    },
    Attempt,
    EsiComment,
    Inline {
        name: String,
        fetchable: bool,
        raw: BytesMut,
    },
    Unknown(Element),
}

impl Frame {
    fn element(&self) -> Option<&Element> {
        match self {
            Frame::Skip { element, .. } | Frame::Branch(element) | Frame::Unknown(element) => {
                Some(element)
            }
            Frame::Except { .. } => Some(&Element::Except),
            Frame::Vars => Some(&Element::Vars),
            Frame::Choose { .. } => Some(&Element::Choose),
            Frame::Try { .. } => Some(&Element::Try),
            Frame::Attempt => Some(&Element::Attempt),
            Frame::Inline { .. } => Some(&Element::Inline),
            Frame::EsiComment => None,
        }
    }
}

/// Interprets one part's tokens into its output.
pub(crate) struct Interpreter<H> {
    page: Arc<Page<H>>,
    url: String,
    depth: usize,
    ancestors: Arc<Vec<String>>,
    frames: Vec<Frame>,
    sinks: Vec<Sink>,
    /// What this part computed from the request, for the page's validator.
    dynamic: xxhash_rust::xxh3::Xxh3,
    computed: bool,
    /// Text inside `esi:vars` not substituted yet: a reference may be cut across chunks.
    vars_text: BytesMut,
}

impl<H: Handler> Interpreter<H> {
    fn new(
        page: Arc<Page<H>>,
        url: String,
        depth: usize,
        ancestors: Arc<Vec<String>>,
        sink: Sink,
    ) -> Self {
        Self {
            page,
            url,
            depth,
            ancestors,
            frames: Vec::new(),
            sinks: vec![sink],
            dynamic: xxhash_rust::xxh3::Xxh3::new(),
            computed: false,
            vars_text: BytesMut::new(),
        }
    }

    async fn emit(&mut self, piece: Piece) -> Result<(), Closed> {
        let Some(sink) = self.sinks.last() else {
            return Ok(());
        };
        if self.outside_branches() {
            return Ok(());
        }
        match sink.send(Ok(piece)).await {
            Ok(()) => Ok(()),
            // An attempt that already failed wants no more of its content; the part goes on
            // to its except branch and past it.
            Err(_) if self.sinks.len() > 1 => Ok(()),
            Err(_) => Err(Closed),
        }
    }

    /// The output being written is no longer read (an attempt that already failed): its
    /// includes need not be fetched.
    fn output_abandoned(&self) -> bool {
        self.sinks.len() > 1 && self.sinks.last().is_some_and(Sink::is_closed)
    }

    fn note_computed(&mut self, value: &[u8]) {
        self.computed = true;
        self.dynamic.update(value);
        self.dynamic.update(&[0]);
    }

    async fn feed(&mut self, token: Token) -> Result<(), Closed> {
        if !self.vars_text.is_empty() && !matches!(token, Token::Text(_)) {
            self.flush_vars().await?;
        }
        // Content that is skipped or kept for later only counts its own nesting.
        match self.frames.last_mut() {
            Some(Frame::Skip { element, depth }) => {
                match &token {
                    Token::Start {
                        element: e,
                        empty: false,
                        ..
                    } if e == element => *depth += 1,
                    Token::End { element: e, .. } if e == element => {
                        *depth -= 1;
                        if *depth == 0 {
                            self.frames.pop();
                        }
                    }
                    _ => {}
                }
                return Ok(());
            }
            Some(Frame::Except { depth, tokens, .. }) => {
                match &token {
                    Token::Start {
                        element: Element::Except,
                        empty: false,
                        ..
                    } => *depth += 1,
                    Token::End {
                        element: Element::Except,
                        ..
                    } => {
                        *depth -= 1;
                        if *depth == 0 {
                            self.close_top();
                            return Ok(());
                        }
                    }
                    _ => {}
                }
                tokens.push(token);
                return Ok(());
            }
            _ => {}
        }
        let closes_inline = matches!(
            (&token, self.frames.last()),
            (
                Token::End {
                    element: Element::Inline,
                    ..
                },
                Some(Frame::Inline { .. })
            )
        );
        if !closes_inline
            && let Some(Frame::Inline { raw, .. }) = self
                .frames
                .iter_mut()
                .rev()
                .find(|f| matches!(f, Frame::Inline { .. }))
        {
            raw.extend_from_slice(&token.raw());
        }
        match token {
            Token::Text(text) => self.text(text).await,
            Token::CommentOpen => {
                self.frames.push(Frame::EsiComment);
                Ok(())
            }
            Token::CommentClose => {
                if let Some(at) = self
                    .frames
                    .iter()
                    .rposition(|f| matches!(f, Frame::EsiComment))
                {
                    while self.frames.len() > at {
                        self.close_top();
                    }
                    Ok(())
                } else {
                    self.emit(Piece::Bytes(Bytes::from_static(b"-->"))).await
                }
            }
            Token::Start {
                element,
                attributes,
                empty,
                ..
            } => self.start(element, attributes, empty).await,
            Token::End { element, .. } => {
                if let Some(at) = self
                    .frames
                    .iter()
                    .rposition(|f| f.element() == Some(&element))
                {
                    while self.frames.len() > at {
                        self.close_top();
                    }
                }
                Ok(())
            }
        }
    }

    /// Whether what is read now is in a choose or try outside its branches (under elements
    /// that keep no content of their own): only the branches have content. It must be
    /// dropped, not output: a try's result is in the part's output before it, and is only
    /// known once the try closes, so output here could fill the part's channel and wait for
    /// a reader that waits for this part to read on.
    fn outside_branches(&self) -> bool {
        self.frames
            .iter()
            .rev()
            .find(|f| !matches!(f, Frame::Unknown(_) | Frame::EsiComment | Frame::Vars))
            .is_some_and(|f| matches!(f, Frame::Choose { .. } | Frame::Try { .. }))
    }

    async fn text(&mut self, text: Bytes) -> Result<(), Closed> {
        if self.frames.iter().any(|f| matches!(f, Frame::Vars)) {
            // Gathered to be output when the vars close; `emit` drops what is outside branches.
            if !self.outside_branches() {
                self.vars_text.extend_from_slice(&text);
            }
            return Ok(());
        }
        self.emit(Piece::Bytes(text)).await
    }

    /// Substitutes the variables in the text gathered inside `esi:vars`.
    async fn flush_vars(&mut self) -> Result<(), Closed> {
        let text = self.vars_text.split().freeze();
        if memchr::memmem::find(&text, b"$(").is_none() {
            return self.emit(Piece::Bytes(text)).await;
        }
        let substituted = self
            .page
            .variables
            .substitute(&String::from_utf8_lossy(&text));
        self.note_computed(substituted.as_bytes());
        self.emit(Piece::Bytes(Bytes::from(substituted))).await
    }

    async fn start(
        &mut self,
        element: Element,
        attributes: Vec<(String, String)>,
        empty: bool,
    ) -> Result<(), Closed> {
        let skip = |element: Element| Frame::Skip { element, depth: 1 };
        let branch = matches!(
            element,
            Element::Attempt | Element::Except | Element::When | Element::Otherwise
        );
        if !branch && self.outside_branches() {
            // Dropped with all it holds: no include fetched, no try started.
            if !empty {
                self.frames.push(skip(element));
            }
            return Ok(());
        }
        match element {
            Element::Include => {
                if !empty {
                    self.frames.push(skip(Element::Include));
                }
                self.include(&attributes).await?;
            }
            Element::Comment | Element::Remove => {
                if !empty {
                    self.frames.push(skip(element));
                }
            }
            Element::Vars => {
                if !empty {
                    self.frames.push(Frame::Vars);
                }
            }
            Element::Choose => {
                if !empty {
                    self.frames.push(Frame::Choose { taken: false });
                }
            }
            Element::When | Element::Otherwise => {
                let take = match self.frames.last_mut() {
                    Some(Frame::Choose { taken }) if !*taken => {
                        let take = match (&element, attribute(&attributes, "test")) {
                            (Element::Otherwise, _) => true,
                            (_, Some(test)) => {
                                match crate::expr::evaluate(test, &self.page.variables) {
                                    Ok(value) => value,
                                    Err(error) => {
                                        tracing::warn!(part = %self.url, %error, "esi:when not taken");
                                        false
                                    }
                                }
                            }
                            (_, None) => false,
                        };
                        *taken = take;
                        take
                    }
                    _ => false,
                };
                if take {
                    self.note_computed(format!("branch {}", self.frames.len()).as_bytes());
                }
                if !empty {
                    self.frames.push(if take {
                        Frame::Branch(element)
                    } else {
                        skip(element)
                    });
                }
            }
            Element::Try => {
                if !empty {
                    self.start_try().await?;
                }
            }
            Element::Attempt => match self.frames.last_mut() {
                Some(Frame::Try { attempt, .. }) if attempt.is_some() && !empty => {
                    let sink = attempt.take();
                    self.sinks.extend(sink);
                    self.frames.push(Frame::Attempt);
                }
                _ if !empty => self.frames.push(skip(Element::Attempt)),
                _ => {}
            },
            Element::Except => match self.frames.last_mut() {
                Some(Frame::Try { except, .. }) if except.is_some() && !empty => {
                    let deliver = except.take();
                    self.frames.push(Frame::Except {
                        depth: 1,
                        tokens: Vec::new(),
                        deliver,
                    });
                }
                _ if !empty => self.frames.push(skip(Element::Except)),
                _ => {}
            },
            Element::Inline => {
                if !empty {
                    let name = attribute(&attributes, "name").unwrap_or("").to_owned();
                    let fetchable = !attribute(&attributes, "fetchable")
                        .is_some_and(|v| v.eq_ignore_ascii_case("no"));
                    self.frames.push(Frame::Inline {
                        name,
                        fetchable,
                        raw: BytesMut::new(),
                    });
                }
            }
            Element::Unknown(name) => {
                tracing::debug!(part = %self.url, element = %name, "unknown esi element ignored");
                if !empty {
                    self.frames.push(Frame::Unknown(Element::Unknown(name)));
                }
            }
        }
        Ok(())
    }

    async fn start_try(&mut self) -> Result<(), Closed> {
        let (attempt_sink, attempt) =
            mpsc::channel(PART_BUFFER.max(self.page.config.max_includes + 64));
        let (except_tx, except) = oneshot::channel();
        let (result_tx, result) = oneshot::channel();
        let hold = self.page.tracker.hold();
        tokio::spawn(run_try(
            self.page.clone(),
            self.url.clone(),
            self.depth,
            self.ancestors.clone(),
            attempt,
            except,
            result_tx,
            hold,
        ));
        // Its place in the output first: once the try is open, nothing outside its branches
        // is output.
        self.emit(Piece::Pending(result)).await?;
        self.frames.push(Frame::Try {
            attempt: Some(attempt_sink),
            except: Some(except_tx),
        });
        Ok(())
    }

    async fn include(&mut self, attributes: &[(String, String)]) -> Result<(), Closed> {
        if self.output_abandoned() {
            return Ok(());
        }
        let Some(src) = attribute(attributes, "src") else {
            tracing::warn!(part = %self.url, "esi:include without src ignored");
            return Ok(());
        };
        let variables = &self.page.variables;
        let src = variables.substitute(src);
        let alt = attribute(attributes, "alt").map(|alt| variables.substitute(alt));
        let continue_on_error =
            attribute(attributes, "onerror").is_some_and(|v| v.eq_ignore_ascii_case("continue"));
        let (result_tx, result) = oneshot::channel();
        let hold = self.page.tracker.hold();
        tokio::spawn(run_include(
            self.page.clone(),
            Include {
                src,
                alt,
                continue_on_error,
            },
            self.depth + 1,
            self.ancestors.clone(),
            result_tx,
            hold,
        ));
        self.emit(Piece::Pending(result)).await
    }

    fn close_top(&mut self) {
        let Some(frame) = self.frames.pop() else {
            return;
        };
        match frame {
            Frame::Attempt => {
                self.sinks.pop();
            }
            Frame::Except {
                tokens,
                deliver: Some(deliver),
                ..
            } => {
                let _ = deliver.send(tokens);
            }
            Frame::Inline {
                name,
                fetchable,
                raw,
            } if !name.is_empty() => {
                if let Some(key) = self
                    .page
                    .resolve(&name)
                    .ok()
                    .map(|(host, target)| format!("{host}{target}"))
                {
                    let lifetime = Duration::from_secs(60);
                    self.page.inline.0.insert(
                        key,
                        Arc::new(InlineFragment {
                            // Exactly its length: the buffer grew by doubling.
                            body: Bytes::copy_from_slice(&raw),
                            expires: Instant::now() + lifetime,
                            fetchable,
                        }),
                    );
                }
            }
            _ => {}
        }
    }

    async fn finish(&mut self) -> Result<(), Closed> {
        if !self.vars_text.is_empty() {
            self.flush_vars().await?;
        }
        while !self.frames.is_empty() {
            self.close_top();
        }
        let dynamic = if self.computed {
            Some(self.dynamic.digest128())
        } else {
            None
        };
        if let Some(dynamic) = dynamic {
            let entry = format!("{} computed {dynamic:032x}", self.url);
            let mut derived = self.page.tracker.derived.lock().unwrap();
            derived.validators.push(entry);
            // Made from this client's request: no shared cache may keep it for others.
            derived.private = true;
        }
        Ok(())
    }
}

/// An `esi:include`.
struct Include {
    src: String,
    alt: Option<String>,
    continue_on_error: bool,
}

fn run_include<H: Handler>(
    page: Arc<Page<H>>,
    include: Include,
    depth: usize,
    ancestors: Arc<Vec<String>>,
    result: oneshot::Sender<Result<PartStream, Failure>>,
    hold: Hold,
) -> BoxFuture<'static, ()> {
    async move {
        let counted = page.includes.fetch_add(1, Ordering::AcqRel) + 1;
        let outcome = if counted > page.config.max_includes {
            Err(Failure::TooManyIncludes {
                limit: page.config.max_includes,
            })
        } else {
            let first = fetch_part(&page, &include.src, depth, &ancestors).await;
            match (first, &include.alt) {
                (Err(failure), Some(alt)) if failure.may_fall_back() => {
                    tracing::info!(%failure, alt = %alt, "esi:include failed, trying alt");
                    let second = fetch_part(&page, alt, depth, &ancestors).await;
                    if second.is_ok() {
                        page.metrics.include("alt");
                    }
                    second
                }
                (first, _) => {
                    if first.is_ok() {
                        page.metrics.include("fetched");
                    }
                    first
                }
            }
        };
        let outcome = match outcome {
            Err(failure) if include.continue_on_error => {
                tracing::info!(%failure, "esi:include failed, onerror=continue");
                page.metrics.include("continued");
                let (_, empty) = mpsc::channel(1);
                Ok(empty)
            }
            Err(failure) => {
                tracing::warn!(%failure, src = %include.src, "esi:include failed");
                page.metrics.include("failed");
                Err(failure)
            }
            ok => ok,
        };
        let _ = result.send(outcome);
        drop(hold);
    }
    .boxed()
}

/// Fetches one fragment through the edge's pipeline and starts its output.
async fn fetch_part<H: Handler>(
    page: &Arc<Page<H>>,
    src: &str,
    depth: usize,
    ancestors: &Arc<Vec<String>>,
) -> Result<PartStream, Failure> {
    let (host, target) = page.resolve(src).map_err(|reason| Failure::Refused {
        src: src.to_owned(),
        reason,
    })?;
    let url = format!("{host}{target}");
    if depth > page.config.max_depth {
        return Err(Failure::TooDeep {
            url,
            limit: page.config.max_depth,
        });
    }
    if ancestors.contains(&url) {
        return Err(Failure::Loop { url });
    }
    if let Some(inline) = page.inline.0.get(&url) {
        if inline.expires > Instant::now() {
            let mut chain = (**ancestors).clone();
            chain.push(url.clone());
            let body = outpost_server::body::full(inline.body.clone());
            return Ok(start_part(
                page.clone(),
                url,
                body,
                Decoder::Identity,
                depth,
                Arc::new(chain),
            ));
        }
        if !inline.fetchable {
            return Err(Failure::Unfetchable { url });
        }
    }
    let mut request = Request::get(target.as_str())
        .body(outpost_server::body::empty())
        .map_err(|_| Failure::Refused {
            src: src.to_owned(),
            reason: "not a URL path",
        })?;
    *request.headers_mut() = page.fragment_headers.clone();
    if let Ok(value) = HeaderValue::from_str(&host) {
        request.headers_mut().insert(header::HOST, value);
    }
    let timeout = page.config.fragment_timeout();
    let response: Response<Body> =
        match tokio::time::timeout(timeout, page.next.handle(request, page.peer)).await {
            Ok(response) => response,
            Err(_) => return Err(Failure::Timeout { url }),
        };
    let status = response.status();
    if !status.is_success() {
        return Err(Failure::Status {
            url,
            status: status.as_u16(),
        });
    }
    let (parts, body) = response.into_parts();
    page.tracker
        .derived
        .lock()
        .unwrap()
        .add_part(&url, &parts.headers);
    let path = target.split('?').next().unwrap_or("/");
    if page.rules.wants_esi(&host, path, &parts.headers) {
        let decoder = Decoder::for_response(&parts.headers).map_err(|reason| Failure::Body {
            url: url.clone(),
            reason,
        })?;
        let mut chain = (**ancestors).clone();
        chain.push(url.clone());
        return Ok(start_part(
            page.clone(),
            url,
            body,
            decoder,
            depth,
            Arc::new(chain),
        ));
    }
    Ok(forward_fragment(
        url,
        body,
        Decoder::for_response(&parts.headers).ok(),
        timeout,
    ))
}

/// A fragment that is not ESI: its body, chunk by chunk.
fn forward_fragment(
    url: String,
    body: Body,
    decoder: Option<Decoder>,
    timeout: Duration,
) -> PartStream {
    let (sink, stream) = mpsc::channel(FRAGMENT_BUFFER);
    tokio::spawn(async move {
        let Some(decoder) = decoder else {
            let reason = "unsupported content-coding".to_owned();
            let _ = sink.send(Err(Failure::Body { url, reason })).await;
            return;
        };
        let mut chunks = Chunks::new(body, decoder, timeout, url);
        loop {
            let item = match chunks.next().await {
                Ok(Some(data)) => Ok(Piece::Bytes(data)),
                Ok(None) => return,
                Err(failure) => Err(failure),
            };
            let failed = item.is_err();
            if sink.send(item).await.is_err() || failed {
                return;
            }
        }
    });
    stream
}

#[allow(clippy::too_many_arguments)]
fn run_try<H: Handler>(
    page: Arc<Page<H>>,
    url: String,
    depth: usize,
    ancestors: Arc<Vec<String>>,
    mut attempt: PartStream,
    except: oneshot::Receiver<Vec<Token>>,
    result: oneshot::Sender<Result<PartStream, Failure>>,
    hold: Hold,
) -> BoxFuture<'static, ()> {
    async move {
        let mut pieces = Vec::new();
        let mut failed = None;
        while let Some(item) = attempt.recv().await {
            match item {
                Ok(Piece::Pending(pending)) => match pending.await {
                    Ok(Ok(stream)) => pieces.push(Piece::Ready(stream)),
                    Ok(Err(failure)) => {
                        failed = Some(failure);
                        break;
                    }
                    Err(_) => {
                        failed = Some(Failure::Lost);
                        break;
                    }
                },
                Ok(piece) => pieces.push(piece),
                Err(failure) => {
                    failed = Some(failure);
                    break;
                }
            }
        }
        drop(attempt);
        let (sink, stream) = mpsc::channel(pieces.len().max(PART_BUFFER));
        if let Some(failure) = failed {
            tracing::info!(%failure, part = %url, "esi:attempt failed, using esi:except");
            drop(pieces);
            let _ = result.send(Ok(stream));
            let tokens = except.await.unwrap_or_default();
            let mut interpreter = Interpreter::new(page, url, depth, ancestors, sink);
            for token in tokens {
                if interpreter.feed(token).await.is_err() {
                    return;
                }
            }
            let _ = interpreter.finish().await;
        } else {
            for piece in pieces {
                // The channel holds them all: this never waits.
                if sink.send(Ok(piece)).await.is_err() {
                    break;
                }
            }
            let _ = result.send(Ok(stream));
        }
        drop(hold);
    }
    .boxed()
}

impl<H> Page<H> {
    /// An include's `src` as the host and normal target it is fetched from.
    pub(crate) fn resolve(&self, src: &str) -> Result<(String, String), &'static str> {
        use outpost_server::normal::{BadReference, Reference, without_port};
        let resolved =
            outpost_server::normal::reference(&self.directory, src).map_err(|e| match e {
                BadReference::SchemeRelative => "a scheme-relative URL",
                BadReference::OtherScheme => "a scheme other than http or https",
                BadReference::Host => "not a host",
                BadReference::Target => "not a URL path",
            })?;
        match resolved {
            Reference::SameHost(target) => Ok((self.host.clone(), target)),
            Reference::Absolute { host, target } => {
                let bare = without_port(&host);
                let own = without_port(&self.host);
                if !bare.eq_ignore_ascii_case(own)
                    && !self
                        .config
                        .allowed_hosts
                        .iter()
                        .any(|allowed| allowed.eq_ignore_ascii_case(bare))
                {
                    return Err("a host outside the allowed set");
                }
                Ok((host, target))
            }
        }
    }
}

/// The headers a fragment request copies from the client's.
pub(crate) fn fragment_headers(client: &HeaderMap, forward: &[HeaderName]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for name in [header::COOKIE, header::ACCEPT_LANGUAGE]
        .iter()
        .chain(forward)
    {
        for value in client.get_all(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(
        "surrogate-capability",
        HeaderValue::from_static(outpost_cache::surrogate::CAPABILITY),
    );
    headers
}

/// The page's bytes in document order, as they become available.
pub(crate) struct Output {
    stack: Vec<Level>,
    emitted: u64,
    limit: u64,
}

enum Level {
    Stream(PartStream),
    Waiting(Pending),
}

impl Output {
    pub(crate) fn new(template: PartStream, limit: u64) -> Self {
        Self {
            stack: vec![Level::Stream(template)],
            emitted: 0,
            limit,
        }
    }

    /// The next bytes, waiting for them; `None` at the end. Cancel-safe.
    async fn next_piece(&mut self) -> Option<Result<Bytes, Failure>> {
        loop {
            match self.stack.last_mut()? {
                Level::Waiting(pending) => {
                    let resolved = pending.await;
                    match resolved {
                        Ok(Ok(stream)) => {
                            if let Some(top) = self.stack.last_mut() {
                                *top = Level::Stream(stream);
                            }
                        }
                        Ok(Err(failure)) => return Some(Err(failure)),
                        Err(_) => return Some(Err(Failure::Lost)),
                    }
                }
                Level::Stream(stream) => match stream.recv().await {
                    None => {
                        self.stack.pop();
                    }
                    Some(Ok(Piece::Bytes(bytes))) => return Some(Ok(bytes)),
                    Some(Ok(Piece::Pending(pending))) => self.stack.push(Level::Waiting(pending)),
                    Some(Ok(Piece::Ready(stream))) => self.stack.push(Level::Stream(stream)),
                    Some(Err(failure)) => return Some(Err(failure)),
                },
            }
        }
    }

    /// The bytes available now, at least one chunk (waiting for it), joined; `None` at the end.
    pub(crate) async fn next_batch(&mut self) -> Option<Result<Bytes, Failure>> {
        let first = match self.next_piece().await? {
            Ok(bytes) => bytes,
            Err(failure) => return Some(Err(failure)),
        };
        let mut batch: Option<BytesMut> = None;
        let mut failure = None;
        while batch.as_ref().map_or(first.len(), BytesMut::len) < 64 * 1024 {
            match self.next_piece().now_or_never() {
                Some(Some(Ok(more))) => batch
                    .get_or_insert_with(|| BytesMut::from(&first[..]))
                    .extend_from_slice(&more),
                Some(Some(Err(error))) => {
                    failure = Some(error);
                    break;
                }
                Some(None) | None => break,
            }
        }
        let bytes = batch.map_or(first, BytesMut::freeze);
        self.emitted += bytes.len() as u64;
        if self.emitted > self.limit {
            return Some(Err(Failure::TooLarge { limit: self.limit }));
        }
        if let Some(failure) = failure {
            // What came before the failure goes out first; the failure comes next.
            self.stack.clear();
            let (sink, stream) = mpsc::channel(1);
            let _ = sink.try_send(Err(failure));
            self.stack.push(Level::Stream(stream));
        }
        Some(Ok(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_fragments_are_held_within_their_bytes() {
        let store = InlineStore::new();
        // 64 MiB of fragments, twice what the store may hold.
        for i in 0..64 {
            store.0.insert(
                format!("site.test/fragment/{i}"),
                Arc::new(InlineFragment {
                    body: Bytes::from(vec![b'x'; 1 << 20]),
                    expires: Instant::now() + Duration::from_secs(60),
                    fetchable: true,
                }),
            );
        }
        store.0.run_pending_tasks();
        assert!(store.0.weighted_size() <= INLINE_BYTES);
        assert!(store.0.entry_count() <= 32);
        assert!(store.0.entry_count() > 0);
    }
}
