//! The handler that answers requests for pushed files from the node's live releases, in
//! front of the cache, and hands every other request on.

use std::sync::Arc;

use http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, VARY};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use outpost_representation::Extent;
use outpost_server::{Body, Handler, Peer, body};

use crate::manifest::FileEntry;
use crate::table::Release;
use crate::{RELEASE_HEADER, Releases};

/// Cache-Control of a pushed file whose push set none: caches keep it but check it with
/// the node on every use (a cheap 304 by ETag), so a new release is seen at once.
pub const DEFAULT_CACHE_CONTROL: &str = "public, max-age=0, must-revalidate";

/// Serves pushed files for the sites that have a live release, else calls `next`.
pub struct ReleaseFront<H> {
    releases: Arc<Releases>,
    next: Arc<H>,
    cache_status: HeaderValue,
}

impl<H: Handler> ReleaseFront<H> {
    pub fn new(releases: Arc<Releases>, next: Arc<H>) -> Self {
        let cache_status =
            HeaderValue::try_from(format!("{}; hit; detail=release", releases.node()))
                .unwrap_or(HeaderValue::from_static("outpost; hit; detail=release"));
        Self {
            releases,
            next,
            cache_status,
        }
    }
}

impl<H: Handler> Handler for ReleaseFront<H> {
    async fn handle(&self, request: Request<Body>, peer: Peer) -> Response<Body> {
        let table = self.releases.live();
        if table.is_empty() {
            return self.next.handle(request, peer).await;
        }
        let host = request
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(outpost_server::normal::without_port)
            .unwrap_or("");
        let Ok(path) = percent_encoding::percent_decode_str(request.uri().path()).decode_utf8()
        else {
            return self.next.handle(request, peer).await;
        };
        let pin = request
            .headers()
            .get(RELEASE_HEADER)
            .and_then(|v| v.to_str().ok());
        let Some(routed) = table.route(host, &path, pin) else {
            return self.next.handle(request, peer).await;
        };
        let release = routed.release.clone();
        let file = routed.file.cloned();
        drop(table);
        if request.method() != Method::GET && request.method() != Method::HEAD {
            let mut response = body::text(
                StatusCode::METHOD_NOT_ALLOWED,
                "pushed files are read with GET or HEAD",
            );
            response
                .headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            self.label(response.headers_mut(), &release);
            return response;
        }
        let (parts, _) = request.into_parts();
        let mut response = match file {
            Some(file) => self.serve(&parts, &file).await,
            None => body::text(StatusCode::NOT_FOUND, "not in this release"),
        };
        self.label(response.headers_mut(), &release);
        response
    }
}

impl<H> ReleaseFront<H> {
    /// The headers every answer from a release carries.
    fn label(&self, headers: &mut HeaderMap, release: &Release) {
        if let Ok(name) = HeaderValue::try_from(release.name.as_str()) {
            headers.insert(RELEASE_HEADER, name);
        }
        if let Ok(tag) = HeaderValue::try_from(release.site.tag()) {
            headers.insert("surrogate-key", tag);
        }
        // Caches below keep one copy per pinned release, and one unpinned.
        headers.insert(VARY, HeaderValue::from_static("Outpost-Release"));
        headers.insert("cache-status", self.cache_status.clone());
    }

    async fn serve(&self, request: &http::request::Parts, file: &FileEntry) -> Response<Body> {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::try_from(file.content_type.as_str()) {
            headers.insert(CONTENT_TYPE, value);
        }
        let cache_control = file
            .cache_control
            .as_deref()
            .unwrap_or(DEFAULT_CACHE_CONTROL);
        if let Ok(value) = HeaderValue::try_from(cache_control) {
            headers.insert(CACHE_CONTROL, value);
        }
        if let Ok(value) = HeaderValue::try_from(format!("\"{}\"", file.digest)) {
            headers.insert(ETAG, value);
        }
        let selection = outpost_representation::evaluate(
            &request.method,
            &request.headers,
            &headers,
            file.size,
        );
        let (status, extent) = outpost_representation::render_head(
            &selection,
            StatusCode::OK,
            &mut headers,
            file.size,
        );
        let (start, length) = match extent {
            Extent::Whole => (0, file.size),
            Extent::Range(range) => (range.start, range.len()),
            Extent::Nothing => (0, 0),
        };
        let body = if request.method == Method::HEAD || length == 0 {
            body::empty()
        } else {
            match self.open(file, start, length).await {
                Ok(body) => body,
                Err(error) => {
                    tracing::error!(node = %self.releases.node(), digest = %file.digest,
                        "a pushed object cannot be read: {error}");
                    return body::text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "this node has lost a file of the release",
                    );
                }
            }
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }

    /// `length` bytes of the object from `start`, streamed from its file.
    async fn open(&self, file: &FileEntry, start: u64, length: u64) -> std::io::Result<Body> {
        let handle = tokio::fs::File::open(self.releases.blobs().path(&file.digest)).await?;
        let on_disk = handle.metadata().await?.len();
        if on_disk != file.size {
            return Err(std::io::Error::other(format!(
                "{on_disk} bytes on disk, {} expected",
                file.size
            )));
        }
        Ok(body::stream(body::file_range(handle, start, length).await?))
    }
}
