//! CORS at the edge, for players and pages on other origins: the paths an operator opens
//! (`[[cors]]`) get `Access-Control-Allow-Origin` for the allowed origins, preflights are
//! answered at the edge and never go upstream, and the headers a video player reads are
//! exposed. What the origin said about CORS on those paths is replaced, so one table decides.

use globset::GlobMatcher;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use outpost_server::{Body, Handler, Peer};
use serde::{Deserialize, Serialize};

/// One `[[cors]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsRule {
    /// The hostname it applies to; empty or left out: every host.
    #[serde(default)]
    pub host: String,
    /// Globs on the path (`/video/**`).
    pub paths: Vec<String>,
    /// Origins allowed (`https://player.example`), or `*` for any.
    pub allow_origins: Vec<String>,
    /// How long a browser may keep a preflight's answer, in seconds.
    #[serde(default = "default_max_age")]
    pub max_age_secs: u64,
}

fn default_max_age() -> u64 {
    600
}

/// Request headers a player may send (`Range` for byte ranges, CMCD for its state).
const ALLOW_HEADERS: &str = "Range, CMCD-Request, CMCD-Object, CMCD-Status, CMCD-Session";
/// Response headers a player may read.
const EXPOSE_HEADERS: &str =
    "Content-Range, Content-Length, Accept-Ranges, CMSD-Static, CMSD-Dynamic, Cache-Status, Age";
const ALLOW_METHODS: &str = "GET, HEAD, OPTIONS";

struct Compiled {
    host: String,
    paths: Vec<GlobMatcher>,
    any_origin: bool,
    origins: Vec<String>,
    max_age: HeaderValue,
}

/// Why a `[[cors]]` entry cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CorsError {
    #[error("cors rule {index}: path {path:?} is not a glob: {source}")]
    Path {
        index: usize,
        path: String,
        source: globset::Error,
    },
}

/// `[[cors]]` entries, checked and compiled.
#[derive(Clone, Default)]
pub struct CorsRules(std::sync::Arc<Vec<Compiled>>);

impl CorsRules {
    pub fn compile(rules: &[CorsRule]) -> Result<Self, CorsError> {
        let rules = rules
            .iter()
            .enumerate()
            .map(|(index, rule)| {
                let paths = rule
                    .paths
                    .iter()
                    .map(|path| {
                        crate::query::path_glob(path).map_err(|source| CorsError::Path {
                            index,
                            path: path.clone(),
                            source,
                        })
                    })
                    .collect::<Result<_, _>>()?;
                Ok(Compiled {
                    host: rule.host.to_ascii_lowercase(),
                    paths,
                    any_origin: rule.allow_origins.iter().any(|o| o == "*"),
                    origins: rule.allow_origins.clone(),
                    max_age: HeaderValue::from(rule.max_age_secs),
                })
            })
            .collect::<Result<_, CorsError>>()?;
        Ok(Self(std::sync::Arc::new(rules)))
    }

    fn rule(&self, request: &Request<Body>) -> Option<&Compiled> {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(outpost_server::normal::without_port)
            .unwrap_or("");
        let path = request.uri().path();
        self.0.iter().find(|rule| {
            (rule.host.is_empty() || rule.host == host)
                && rule.paths.iter().any(|p| p.is_match(path))
        })
    }
}

/// The edge's CORS front.
pub struct Cors<H> {
    inner: H,
    rules: CorsRules,
}

impl<H: Handler> Cors<H> {
    pub fn new(inner: H, rules: CorsRules) -> Self {
        Self { inner, rules }
    }
}

impl Compiled {
    /// The `Access-Control-Allow-Origin` value for `origin`, if it is allowed.
    fn allow(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        if self.any_origin {
            return Some(HeaderValue::from_static("*"));
        }
        let origin_text = origin.to_str().ok()?;
        self.origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin_text))
            .then(|| origin.clone())
    }
}

/// Removes whatever CORS headers the upstream sent.
fn clear(headers: &mut HeaderMap) {
    for name in [
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        header::ACCESS_CONTROL_ALLOW_METHODS,
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        header::ACCESS_CONTROL_MAX_AGE,
    ] {
        headers.remove(name);
    }
}

impl<H: Handler> Handler for Cors<H> {
    async fn handle(&self, request: Request<Body>, peer: Peer) -> Response<Body> {
        if self.rules.0.is_empty() {
            return self.inner.handle(request, peer).await;
        }
        let Some(rule) = self.rules.rule(&request) else {
            return self.inner.handle(request, peer).await;
        };
        let origin = request.headers().get(header::ORIGIN).cloned();
        let preflight = request.method() == Method::OPTIONS
            && request
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        if preflight {
            // Answered here: a preflight is the browser asking the edge, not the origin.
            let mut response = Response::new(outpost_server::body::empty());
            *response.status_mut() = StatusCode::NO_CONTENT;
            let headers = response.headers_mut();
            if let Some(allow) = origin.as_ref().and_then(|o| rule.allow(o)) {
                let vary_origin = allow != "*";
                headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static(ALLOW_METHODS),
                );
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static(ALLOW_HEADERS),
                );
                headers.insert(header::ACCESS_CONTROL_MAX_AGE, rule.max_age.clone());
                if vary_origin {
                    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
                }
            }
            return response;
        }
        let mut response = self.inner.handle(request, peer).await;
        let headers = response.headers_mut();
        clear(headers);
        if let Some(allow) = origin.as_ref().and_then(|o| rule.allow(o)) {
            if allow != "*" {
                headers.append(header::VARY, HeaderValue::from_static("Origin"));
            }
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSE_HEADERS),
            );
        }
        response
    }
}
