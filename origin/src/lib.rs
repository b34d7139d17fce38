//! The origin server: the content provider's side of Outpost. It answers GET and HEAD for the
//! files under one root directory (the demo site in `origin/demo/` by default) with a
//! content-derived strong ETag, Last-Modified, a Content-Type from the extension, and a
//! Cache-Control chosen by the first matching [`CacheRule`]; conditional requests and byte
//! ranges are answered through `outpost-representation`. URL paths are decoded and checked so
//! that nothing outside the root (by `..`, encoded separators, backslashes, NUL or symlinks) is
//! ever served.
//!
//! It does not listen on sockets, authenticate callers, compress, cache responses or list
//! directories: the listener and the CLI wrap [`Origin::handle`], and caching is the tiers' job.

mod content_type;
mod live;
mod path;
mod rules;

use std::collections::HashMap;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{
    ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, DATE, ETAG, LAST_MODIFIED, LOCATION,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde::{Deserialize, Serialize};

pub use content_type::content_type;
pub use live::{LiveStream, default_live};
pub use rules::default_rules;

use live::LiveAnswer;
use path::UrlPath;
use rules::CompiledRule;

/// How the origin is set up: which directory it serves and how long its answers may be cached.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OriginConfig {
    /// The directory whose files are served; the built-in demo site by default.
    #[serde(default = "default_root")]
    pub root: PathBuf,
    /// Cache-Control by URL path; the first rule whose glob matches wins, and a path no rule
    /// matches gets no Cache-Control at all.
    #[serde(default = "default_rules")]
    pub cache_rules: Vec<CacheRule>,
    /// Live HLS streams made by looping a VOD stream under the root (the demo's
    /// `/video/live/`); one whose VOD playlists are not there is left out.
    #[serde(default = "default_live")]
    pub live: Vec<LiveStream>,
}

/// One Cache-Control rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CacheRule {
    /// A glob on the decoded URL path in globset syntax, e.g. `**/*.html` or
    /// `/assets/*.[0-9a-f][0-9a-f]*.js`. `*` stays within one path segment; `**` crosses them.
    /// A directory request (`/docs/`) also matches as its index file (`/docs/index.html`).
    pub path: String,
    /// The Cache-Control value to send, e.g. `public, max-age=60`; empty sends none.
    pub cache_control: String,
    /// A `Surrogate-Control` value to send too, e.g. `content="ESI/1.0"` for pages the edge
    /// assembles from fragments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surrogate_control: Option<String>,
    /// Wait this long before answering: a stand-in for a slow backend (the demo's slow ESI
    /// fragment uses it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
}

/// Where a container image puts the demo site (the source tree is not in it).
pub const INSTALLED_DEMO: &str = "/usr/share/outpost/demo";

/// The demo site shipped with the crate: in the source tree it was built from, else where
/// images install it ([`INSTALLED_DEMO`]).
pub fn default_root() -> PathBuf {
    let built = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/demo"));
    if !built.is_dir() && std::path::Path::new(INSTALLED_DEMO).is_dir() {
        return PathBuf::from(INSTALLED_DEMO);
    }
    built
}

impl Default for OriginConfig {
    fn default() -> Self {
        OriginConfig {
            root: default_root(),
            cache_rules: default_rules(),
            live: default_live(),
        }
    }
}

/// Why an [`OriginConfig`] cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error("origin root {}: {source}", path.display())]
    Root { path: PathBuf, source: io::Error },
    #[error("origin root {} is not a directory", path.display())]
    RootNotDirectory { path: PathBuf },
    #[error("cache rule {index} (path {pattern:?}) is not a valid glob: {source}")]
    BadGlob {
        index: usize,
        pattern: String,
        source: globset::Error,
    },
    #[error(
        "cache rule {index} (path {pattern:?}): cache_control {value:?} is not a valid header value"
    )]
    BadCacheControl {
        index: usize,
        pattern: String,
        value: String,
    },
}

/// The origin server for one root directory. Cheap to clone: clones share the same state.
#[derive(Debug, Clone)]
pub struct Origin {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The canonical root: every served file's canonical path must lie under it.
    root: PathBuf,
    rules: Vec<CompiledRule>,
    etags: Mutex<HashMap<PathBuf, CachedTag>>,
    live: Vec<live::Live>,
}

/// A computed ETag, valid while the file keeps this modification time and length.
#[derive(Debug, Clone)]
struct CachedTag {
    modified: Option<SystemTime>,
    len: u64,
    etag: HeaderValue,
}

/// Past this many remembered ETags the memo is cleared rather than grown.
const MAX_CACHED_TAGS: usize = 10_000;

type Body = Full<Bytes>;

/// Common Media Server Data (CTA-5006) about the object: the live stream's responses carry it.
const CMSD_STATIC: &str = "cmsd-static";

impl Origin {
    /// Check the configuration (root exists and is a directory, rules compile) and build the
    /// server.
    pub fn new(config: &OriginConfig) -> Result<Origin, OriginError> {
        let root = std::fs::canonicalize(&config.root).map_err(|source| OriginError::Root {
            path: config.root.clone(),
            source,
        })?;
        let meta = std::fs::metadata(&root).map_err(|source| OriginError::Root {
            path: config.root.clone(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(OriginError::RootNotDirectory {
                path: config.root.clone(),
            });
        }
        let rules = rules::compile(&config.cache_rules)?;
        let live = config
            .live
            .iter()
            .filter_map(|stream| load_live(&root, stream))
            .collect();
        Ok(Origin {
            inner: Arc::new(Inner {
                root,
                rules,
                etags: Mutex::new(HashMap::new()),
                live,
            }),
        })
    }

    /// What a live stream answers for `path` with `query`, if `path` is under one: held
    /// (a blocking reload, the hinted next part) until it is there. With it, the CMSD-Static
    /// value for the response.
    async fn live(
        &self,
        path: &str,
        query: Option<&str>,
    ) -> Option<(LiveAnswer, Option<HeaderValue>)> {
        let live = self
            .inner
            .live
            .iter()
            .find(|l| path.starts_with(&l.stream.path))?;
        let name = &path[live.stream.path.len()..];
        let start = epoch_ms();
        let mut now = start;
        let answer = loop {
            match live.answer(name, query, now) {
                LiveAnswer::HoldUntil(until) => {
                    // `Live` refuses what it would hold for more than a few segments.
                    tokio::time::sleep(Duration::from_millis(until.saturating_sub(now))).await;
                    now = until.max(epoch_ms());
                }
                answer => break answer,
            }
        };
        let server_data = live.server_data(name).and_then(|mut value| {
            if now > start {
                value.push_str(&format!(",ht={}", now - start));
            }
            HeaderValue::from_str(&value).ok()
        });
        Some((answer, server_data))
    }

    /// The canonical root directory being served.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The Cache-Control value for a decoded URL path, from the first matching rule.
    pub fn cache_control_for(&self, url_path: &str) -> Option<HeaderValue> {
        rules::lookup(&self.inner.rules, &[url_path]).and_then(|rule| rule.cache_control.clone())
    }

    /// Answer one request. The request body is ignored. Never panics on any input.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>> {
        let head = req.method() == Method::HEAD;
        let mut response = self.respond(&req).await;
        if head {
            *response.body_mut() = Full::new(Bytes::new());
        }
        response
    }

    async fn respond<B>(&self, req: &Request<B>) -> Response<Body> {
        let method = req.method();
        if method != Method::GET && method != Method::HEAD {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n");
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let url = match UrlPath::parse(req.uri().path()) {
            Ok(url) => url,
            Err(reason) => {
                tracing::debug!(path = req.uri().path(), reason, "refused request path");
                return text(StatusCode::FORBIDDEN, "403 Forbidden\n");
            }
        };
        let mut part = None;
        let (live, server_data) = match self.live(&url.decoded(), req.uri().query()).await {
            Some((answer, server_data)) => (Some(answer), server_data),
            None => (None, None),
        };
        let url = match live {
            None => url,
            Some(LiveAnswer::Missing) => return not_found(),
            Some(LiveAnswer::BadRequest(reason)) => {
                tracing::debug!(uri = %req.uri(), reason, "refused blocking reload");
                return text(StatusCode::BAD_REQUEST, "400 Bad Request\n");
            }
            Some(LiveAnswer::HoldUntil(_)) => return not_found(),
            Some(LiveAnswer::Made {
                text,
                content_type,
                max_age,
            }) => {
                let mut response = Response::new(Full::new(Bytes::from(text)));
                let headers = response.headers_mut();
                headers.insert(DATE, http_date(SystemTime::now()));
                headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
                if let Ok(value) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
                    headers.insert(CACHE_CONTROL, value);
                }
                if let Some(value) = server_data {
                    headers.insert(CMSD_STATIC, value);
                }
                return response;
            }
            Some(LiveAnswer::File(path)) => match UrlPath::parse(&path) {
                Ok(url) => url,
                Err(_) => return not_found(),
            },
            Some(LiveAnswer::Part { path, range }) => match UrlPath::parse(&path) {
                Ok(url) => {
                    part = Some(range);
                    url
                }
                Err(_) => return not_found(),
            },
        };
        match self.serve(req, &url, part).await {
            Ok(mut response) => {
                if let Some(value) = server_data
                    && response.status().is_success()
                {
                    response.headers_mut().insert(CMSD_STATIC, value);
                }
                response
            }
            Err(err) => match err.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => not_found(),
                io::ErrorKind::PermissionDenied => text(StatusCode::FORBIDDEN, "403 Forbidden\n"),
                _ => {
                    tracing::warn!(path = req.uri().path(), error = %err, "origin read failed");
                    text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "500 Internal Server Error\n",
                    )
                }
            },
        }
    }

    /// Serve the file at `url`, or only its bytes in `part` (a live stream's partial
    /// segment, which is an object of its own, not a range response).
    async fn serve<B>(
        &self,
        req: &Request<B>,
        url: &UrlPath,
        part: Option<Range<usize>>,
    ) -> io::Result<Response<Body>> {
        let root = &self.inner.root;
        let mut file = self.contained(&url.fs_path(root)).await?;
        let mut meta = tokio::fs::metadata(&file).await?;
        let mut rule_paths = vec![url.decoded()];
        if meta.is_dir() {
            if !url.trailing_slash {
                return Ok(redirect(&url.directory_location(req.uri().query())));
            }
            file = self.contained(&file.join("index.html")).await?;
            meta = tokio::fs::metadata(&file).await?;
            rule_paths.push(format!("{}index.html", url.decoded()));
        } else if url.trailing_slash {
            // `/file.txt/` names a directory that is not there.
            return Ok(not_found());
        }
        if !meta.is_file() {
            // Directories without an index, sockets, FIFOs, devices: nothing to serve.
            return Ok(not_found());
        }

        let modified = meta.modified().ok();
        let mut content = Bytes::from(tokio::fs::read(&file).await?);
        if let Some(range) = part {
            match content.get(range.clone()) {
                Some(_) => content = content.slice(range),
                None => return Ok(not_found()),
            }
        }

        let mut headers = HeaderMap::new();
        let now = SystemTime::now();
        headers.insert(DATE, http_date(now));
        headers.insert(CONTENT_TYPE, content_type(&file));
        headers.insert(ETAG, self.etag(&file, modified, &content));
        if let Some(modified) = modified {
            headers.insert(LAST_MODIFIED, http_date(modified.min(now)));
        }
        let paths: Vec<&str> = rule_paths.iter().map(String::as_str).collect();
        if let Some(rule) = rules::lookup(&self.inner.rules, &paths) {
            if let Some(cache_control) = &rule.cache_control {
                headers.insert(CACHE_CONTROL, cache_control.clone());
            }
            if let Some(surrogate_control) = &rule.surrogate_control {
                headers.insert("surrogate-control", surrogate_control.clone());
            }
            if let Some(delay) = rule.delay {
                tokio::time::sleep(delay).await;
            }
        }

        let selection = outpost_representation::evaluate(
            req.method(),
            req.headers(),
            &headers,
            content.len() as u64,
        );
        let (status, body) =
            outpost_representation::render(&selection, StatusCode::OK, &mut headers, &content);
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Ok(response)
    }

    /// Canonicalize `path` and make sure it is still under the root (symlinks may point
    /// anywhere). Escaping the root reads as "not found".
    async fn contained(&self, path: &Path) -> io::Result<PathBuf> {
        let canonical = tokio::fs::canonicalize(path).await?;
        if canonical.starts_with(&self.inner.root) {
            Ok(canonical)
        } else {
            tracing::debug!(path = %path.display(), target = %canonical.display(), "path escapes the origin root");
            Err(io::ErrorKind::NotFound.into())
        }
    }

    fn etag(&self, file: &Path, modified: Option<SystemTime>, content: &[u8]) -> HeaderValue {
        let len = content.len() as u64;
        if let Ok(tags) = self.inner.etags.lock()
            && let Some(cached) = tags.get(file)
            && modified.is_some()
            && cached.modified == modified
            && cached.len == len
        {
            return cached.etag.clone();
        }
        let etag = outpost_representation::strong_etag(content);
        if let Ok(mut tags) = self.inner.etags.lock() {
            if tags.len() >= MAX_CACHED_TAGS {
                tags.clear();
            }
            tags.insert(
                file.to_path_buf(),
                CachedTag {
                    modified,
                    len,
                    etag: etag.clone(),
                },
            );
        }
        etag
    }
}

fn http_date(time: SystemTime) -> HeaderValue {
    HeaderValue::try_from(httpdate::fmt_http_date(time))
        .expect("an HTTP date is a valid header value")
}

/// A small plain-text response (errors and redirects).
fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(DATE, http_date(SystemTime::now()));
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    response
}

fn not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, "404 Not Found\n")
}

fn redirect(location: &str) -> Response<Body> {
    let mut response = text(StatusCode::MOVED_PERMANENTLY, "301 Moved Permanently\n");
    match HeaderValue::from_str(location) {
        Ok(value) => {
            response.headers_mut().insert(LOCATION, value);
            response
        }
        Err(_) => not_found(),
    }
}

/// Reads the VOD files a live stream loops (media playlists, segments for their chunks, the
/// MPD); `None` (logged) when they are not there.
fn load_live(root: &Path, stream: &LiveStream) -> Option<live::Live> {
    let source = root.join(stream.source.trim_start_matches('/'));
    let Ok(master) = std::fs::read_to_string(source.join("master.m3u8")) else {
        tracing::warn!(path = %stream.path, source = %source.display(), "live stream left out: no master.m3u8");
        return None;
    };
    let mut renditions = HashMap::new();
    for line in master.lines() {
        let uri = line
            .split("URI=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or(line.trim());
        let Some(rendition) = uri
            .strip_prefix("media_")
            .and_then(|n| n.strip_suffix(".m3u8"))
        else {
            continue;
        };
        let text = std::fs::read_to_string(source.join(uri)).ok()?;
        let playlist = live::MediaPlaylist::parse(&text)?;
        let parts = playlist
            .segments
            .iter()
            .map(|(_, uri)| std::fs::read(source.join(uri)).map(|bytes| live::chunk_ranges(&bytes)))
            .collect::<io::Result<Vec<_>>>()
            .ok()?;
        renditions.insert(rendition.to_owned(), live::Rendition { playlist, parts });
    }
    let mpd = std::fs::read_to_string(source.join("manifest.mpd"))
        .ok()
        .and_then(|mpd| live::MpdTemplate::from_vod(&mpd));
    let live = live::Live::new(stream.clone(), renditions, mpd);
    match &live {
        Some(_) => tracing::debug!(path = %stream.path, "live stream"),
        None => {
            tracing::warn!(path = %stream.path, "live stream left out: its VOD playlists do not loop")
        }
    }
    live
}

/// Milliseconds since the epoch.
fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
