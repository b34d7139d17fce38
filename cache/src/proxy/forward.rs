//! What goes upstream as the client sent it (methods that are never cached, with their
//! invalidations), and the one place requests are built for and sent to the upstream.

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use outpost_server::body::{self as bodies, Body};

use super::{Inner, RequestHead, UpstreamMode};
use crate::headers;
use crate::key::{self, CacheKey};
use crate::status::{CacheOutcome, Forward};
use crate::store::StoredObject;
use crate::upstream::{Upstream, UpstreamError};

impl<U: Upstream> Inner<U> {
    /// Unsafe and other uncacheable methods go upstream as they are; a success invalidates the
    /// target URI and the Location / Content-Location of the same host (RFC 9111 section 4.4).
    pub(super) async fn pass_method(
        self: Arc<Self>,
        head: RequestHead,
        body: Body,
        key: CacheKey,
    ) -> Response<Body> {
        // The whole body is read before anything goes upstream (as nginx's default
        // proxy_request_buffering): a body the client breaks or frames wrongly is the
        // client's error, and none of it reaches the upstream.
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => {
                let too_large = error.is::<http_body_util::LengthLimitError>();
                let (status, what) = if too_large {
                    (StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
                } else {
                    (StatusCode::BAD_REQUEST, "request body could not be read")
                };
                tracing::info!(node = %self.name, key = key.as_str(), %error, "{what}");
                let mut response = bodies::text(status, format!("{what}: {error}"));
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return response;
            }
        };
        let request = self.upstream_request(&head, &key, Some(body), UpstreamMode::Pass, None);
        match self.send(request, &key).await {
            Err(error) => {
                self.error_response(error.status(), &error.to_string(), Forward::Method, false)
            }
            Ok(response) => {
                let unsafe_method = head.method != Method::OPTIONS;
                if unsafe_method
                    && (response.status().is_success() || response.status().is_redirection())
                {
                    self.invalidate(&key, response.headers());
                }
                let outcome = CacheOutcome::Forwarded {
                    fwd: Forward::Method,
                    status: Some(response.status().as_u16()),
                    stored: false,
                    collapsed: false,
                    ttl: None,
                    detail: None,
                };
                self.relay(&head, response, outcome)
            }
        }
    }

    pub(super) fn invalidate(&self, key: &CacheKey, response: &HeaderMap) {
        self.inflight.forget(&key.shared());
        self.store.purge_key(key, false);
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            let Some(location) = response.get(&name).and_then(|v| v.to_str().ok()) else {
                continue;
            };
            let target = if location.starts_with('/') {
                Some(CacheKey::new(key.host(), location))
            } else {
                CacheKey::from_url(location, self.key_port)
                    .filter(|other| other.host() == key.host())
            };
            if let Some(target) = target {
                self.store.purge_key(&target, false);
            }
        }
    }

    /// The request sent upstream. A cache fill asks for the whole object with GET and only
    /// our own validators; a pass sends the client's request as it is, with the body read in
    /// full (`None`: no body). The Host is the key's, always: the upstream answers for exactly
    /// the authority the object is stored under.
    pub(super) fn upstream_request(
        &self,
        head: &RequestHead,
        key: &CacheKey,
        body: Option<bytes::Bytes>,
        mode: UpstreamMode,
        stale: Option<&StoredObject>,
    ) -> Request<Body> {
        let mut headers = head.headers.clone();
        headers::remove_hop_by_hop(&mut headers);
        // Framing is ours to set: a request that goes without a body declares none, so an
        // upstream that honours Content-Length never reads the next request as a body.
        headers::remove_request_framing(&mut headers);
        let for_cache = mode != UpstreamMode::Pass;
        if mode == UpstreamMode::Fill {
            for name in [
                header::RANGE,
                header::IF_RANGE,
                header::IF_MATCH,
                header::IF_NONE_MATCH,
                header::IF_MODIFIED_SINCE,
                header::IF_UNMODIFIED_SINCE,
            ] {
                headers.remove(name);
            }
            // Exactly the codings the variant key stands for: what comes back is fit for every
            // client that shares the variant.
            headers.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_static(key::accepted_encodings(&head.headers)),
            );
            if let Some(stale) = stale {
                if let Some(etag) = stale.header(&header::ETAG) {
                    headers.insert(header::IF_NONE_MATCH, etag);
                }
                if let Some(modified) = stale.header(&header::LAST_MODIFIED) {
                    headers.insert(header::IF_MODIFIED_SINCE, modified);
                }
            }
        }
        if let Ok(host) = HeaderValue::from_str(key.host()) {
            headers.insert(header::HOST, host);
        }
        headers::add_forwarding(
            &mut headers,
            &self.name,
            head.version,
            head.peer.remote,
            head.peer.tls,
        );
        let body = match body {
            Some(bytes) if !bytes.is_empty() || head.method != Method::GET => {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                bodies::full(bytes)
            }
            _ => bodies::empty(),
        };
        let mut request = Request::new(body);
        *request.method_mut() = if for_cache {
            Method::GET
        } else {
            head.method.clone()
        };
        *request.uri_mut() = Uri::try_from(key.target()).unwrap_or_else(|_| Uri::from_static("/"));
        *request.headers_mut() = headers;
        request
    }

    pub(super) async fn send(
        &self,
        request: Request<Body>,
        key: &CacheKey,
    ) -> Result<Response<Body>, UpstreamError> {
        let started = std::time::Instant::now();
        let result = self.upstream.send(request, key).await;
        match &result {
            Ok(_) => self
                .metrics
                .upstream_latency
                .observe(started.elapsed().as_secs_f64()),
            Err(_) => {
                self.metrics.upstream_errors.inc();
            }
        }
        result
    }
}
