//! [`EsiFront`]: the edge's handler in front of its cache. It announces the edge's ESI
//! capability upstream, processes the responses that ask for it, and removes the headers
//! meant for the CDN (`Surrogate-Control`, `Surrogate-Key`, ...) from every response.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use outpost_server::{Body, BoxError, Handler, Peer};

use crate::assemble::{InlineStore, Output, Page, Tracker, fragment_headers, start_part};
use crate::config::EsiConfig;
use crate::encoding::{Coding, Decoder, Encoder};
use crate::metrics::EsiMetrics;
use crate::vars::Variables;
use crate::{Failure, Rules};

/// Processes ESI in the responses of `next` (the edge's cache).
pub struct EsiFront<H> {
    next: Arc<H>,
    metrics: EsiMetrics,
    config: Arc<EsiConfig>,
    rules: Arc<Rules>,
    forward: Vec<HeaderName>,
    inline: InlineStore,
}

impl<H: Handler> EsiFront<H> {
    /// `next` is the edge's cache; counters go to `metrics` (see [`EsiMetrics::register`]).
    pub fn new(next: Arc<H>, config: &EsiConfig, metrics: EsiMetrics) -> Self {
        Self {
            next,
            metrics,
            rules: Arc::new(Rules::new(config)),
            forward: config
                .forward_headers
                .iter()
                .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
                .collect(),
            config: Arc::new(config.clone()),
            inline: InlineStore::new(),
        }
    }
}

/// How long the page's head waits for its parts by yielding rather than on a timer.
const SPIN: std::time::Duration = std::time::Duration::from_millis(1);

/// Request headers that make the cache answer with part of an object or none of it; a
/// template is fetched without them, since they are about the assembled page.
const PARTIAL: [HeaderName; 5] = [
    header::RANGE,
    header::IF_RANGE,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
];

impl<H: Handler> Handler for EsiFront<H> {
    async fn handle(&self, mut request: Request<Body>, peer: Peer) -> Response<Body> {
        let headers = request.headers_mut();
        headers.insert(
            "surrogate-capability",
            HeaderValue::from_static(outpost_cache::surrogate::CAPABILITY),
        );
        let method = request.method().clone();
        let uri = request.uri().clone();
        let partial = PARTIAL
            .iter()
            .any(|name| request.headers().contains_key(name));
        // What the page would read of the request, kept while the cache has the request: all
        // of it only when the template may have to be asked for again.
        let client = if partial {
            request.headers().clone()
        } else {
            self.page_view(request.headers())
        };
        let mut response = self.next.handle(request, peer).await;
        let host = client
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or(uri.host())
            .unwrap_or("");
        if !self.rules.wants_esi(host, uri.path(), response.headers()) {
            outpost_cache::headers::strip_cdn_only(response.headers_mut());
            return response;
        }
        if partial
            && matches!(
                response.status(),
                StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
            )
        {
            // The cache answered the client's range or precondition from the template: ask
            // again for all of it.
            let mut again = Request::builder()
                .method(method.clone())
                .uri(uri.clone())
                .body(outpost_server::body::empty())
                .unwrap_or_default();
            *again.headers_mut() = client.clone();
            for name in PARTIAL {
                again.headers_mut().remove(name);
            }
            response = self.next.handle(again, peer).await;
        }
        self.assemble(response, &method, &uri, host, &client, peer)
            .await
    }
}

/// The request headers an assembled page reads: variables, fragment requests, the client's
/// codings and validators.
const PAGE_VIEW: [HeaderName; 7] = [
    header::HOST,
    header::COOKIE,
    header::ACCEPT_LANGUAGE,
    header::REFERER,
    header::USER_AGENT,
    header::ACCEPT_ENCODING,
    header::IF_NONE_MATCH,
];

impl<H> EsiFront<H> {
    fn page_view(&self, headers: &HeaderMap) -> HeaderMap {
        let mut view = HeaderMap::with_capacity(8);
        for name in PAGE_VIEW.iter().chain(&self.forward) {
            for value in headers.get_all(name) {
                view.append(name.clone(), value.clone());
            }
        }
        view
    }
}

impl<H: Handler> EsiFront<H> {
    async fn assemble(
        &self,
        response: Response<Body>,
        method: &Method,
        uri: &http::Uri,
        host: &str,
        client: &HeaderMap,
        peer: Peer,
    ) -> Response<Body> {
        let (mut parts, body) = response.into_parts();
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        let url = format!("{host}{target}");
        let tracker = Arc::new(Tracker::default());
        tracker
            .derived
            .lock()
            .unwrap()
            .add_part(&url, &parts.headers);
        let decoder = Decoder::limited(&parts.headers, self.config.max_page_bytes);
        let headers = &mut parts.headers;
        for name in [
            header::CONTENT_LENGTH,
            header::ETAG,
            header::LAST_MODIFIED,
            header::ACCEPT_RANGES,
            header::CONTENT_ENCODING,
        ] {
            headers.remove(name);
        }
        outpost_cache::headers::strip_cdn_only(headers);
        let decoder = match decoder {
            Ok(decoder) => decoder,
            Err(reason) => {
                let failure = Failure::Body { url, reason };
                self.metrics.page("failed");
                return failed(&failure);
            }
        };
        if *method == Method::HEAD {
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-cache"),
            );
            return Response::from_parts(parts, outpost_server::body::empty());
        }
        let path = uri.path();
        let directory = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        let page = Arc::new(Page {
            next: self.next.clone(),
            peer,
            config: self.config.clone(),
            rules: self.rules.clone(),
            inline: self.inline.clone(),
            variables: Variables::from_request(client, uri.query()),
            host: host.to_owned(),
            directory: if directory.is_empty() {
                "/".into()
            } else {
                directory.to_owned()
            },
            fragment_headers: fragment_headers(client, &self.forward),
            includes: AtomicUsize::new(0),
            tracker: tracker.clone(),
            metrics: self.metrics.clone(),
        });
        let template = start_part(page, url.clone(), body, decoder, 0, Arc::new(vec![url]));
        let mut output = Output::new(template, self.config.max_page_bytes);
        // The head waits for the first bytes, so a page that fails at once gets an error.
        let first = match output.next_batch().await {
            Some(Err(failure)) => {
                self.metrics.page("failed");
                return failed(&failure);
            }
            first => first,
        };
        let condition = client.get(header::IF_NONE_MATCH).cloned();
        let wait = if condition.is_some() {
            self.config.fragment_timeout()
        } else {
            self.config.head_wait()
        };
        // Parts that are cache hits answer within a few hundred microseconds: the head gives
        // them that by yielding to them (a timer's millisecond granularity would hold every
        // page back), and waits on a timer only past a millisecond.
        let started = std::time::Instant::now();
        let spin = wait.min(SPIN);
        while !tracker.is_settled() && started.elapsed() < spin {
            tokio::task::yield_now().await;
        }
        if !tracker.is_settled() && wait > spin {
            let _ =
                tokio::time::timeout(wait - started.elapsed().min(wait), tracker.settled()).await;
        }
        let headers = &mut parts.headers;
        if tracker.is_settled() {
            let derived = tracker.derived.lock().unwrap();
            let etag = derived.etag();
            if let Ok(value) = HeaderValue::from_str(&derived.cache_control()) {
                headers.insert(header::CACHE_CONTROL, value);
            }
            if let Some(etag) = etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
                if condition.is_some() && not_modified(client, &etag) {
                    let mut not_modified = Response::new(outpost_server::body::empty());
                    *not_modified.status_mut() = StatusCode::NOT_MODIFIED;
                    for name in [header::CACHE_CONTROL, header::VARY, header::DATE] {
                        if let Some(value) = headers.get(&name) {
                            not_modified.headers_mut().insert(name, value.clone());
                        }
                    }
                    not_modified.headers_mut().insert(header::ETAG, etag);
                    self.metrics.page("not_modified");
                    return not_modified;
                }
                headers.insert(header::ETAG, etag);
            }
        } else {
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-cache"),
            );
        }
        let coding = Coding::accepted(client);
        if let Some(coding) = coding {
            headers.insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_static(coding.name()),
            );
        }
        if coding.is_some() || client.contains_key(header::ACCEPT_ENCODING) {
            headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
        self.metrics.page("assembled");
        let body = PageBody {
            metrics: self.metrics.clone(),
            first,
            output,
            encoder: coding.map(Encoder::new),
            done: false,
        };
        let stream = futures_util::stream::unfold(body, |mut body| async move {
            let item = body.next().await?;
            Some((item, body))
        });
        Response::from_parts(parts, StreamBody::new(stream).boxed_unsync())
    }
}

/// The response for a page that failed before any of it was sent.
fn failed(failure: &Failure) -> Response<Body> {
    tracing::warn!(%failure, "ESI page failed before its first byte");
    let mut response = outpost_server::body::text(
        failure.status(),
        format!("ESI processing failed: {failure}"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Whether the client's preconditions say its copy of the page (validator `etag`) is current:
/// RFC 9110 as the origin and cached objects apply it (`outpost_representation`).
fn not_modified(client: &HeaderMap, etag: &HeaderValue) -> bool {
    let mut page = HeaderMap::new();
    page.insert(header::ETAG, etag.clone());
    outpost_representation::evaluate(&Method::GET, client, &page, 0)
        == outpost_representation::Selection::NotModified
}

/// The assembled page's body: the bytes that were waited for, then the rest as they come,
/// compressed when the client accepts it. A failure ends it with an error, so the connection
/// is aborted rather than the page ended as if complete.
struct PageBody {
    metrics: EsiMetrics,
    first: Option<Result<Bytes, Failure>>,
    output: Output,
    encoder: Option<Encoder>,
    done: bool,
}

impl PageBody {
    async fn next(&mut self) -> Option<Result<http_body::Frame<Bytes>, BoxError>> {
        if self.done {
            return None;
        }
        let batch = match self.first.take() {
            Some(first) => Some(first),
            None => self.output.next_batch().await,
        };
        let bytes = match batch {
            Some(Ok(bytes)) => match &mut self.encoder {
                Some(encoder) => encoder.encode(&bytes).map_err(BoxError::from),
                None => Ok(bytes),
            },
            Some(Err(failure)) => {
                tracing::warn!(%failure, "ESI page cut off after its first bytes");
                self.metrics.page("aborted");
                Err(BoxError::from(failure))
            }
            None => {
                self.done = true;
                match self.encoder.take() {
                    Some(encoder) => encoder.finish().map_err(BoxError::from),
                    None => return None,
                }
            }
        };
        match bytes {
            Ok(bytes) => Some(Ok(http_body::Frame::data(bytes))),
            Err(error) => {
                self.done = true;
                Some(Err(error))
            }
        }
    }
}
