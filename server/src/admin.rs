//! The admin listener of a node: `GET /health`, `GET /metrics` (Prometheus text format),
//! `POST /purge` (JSON [`PurgeRequest`]) and `POST /drain` / `POST /undrain` (bearer token
//! required for those). Its token is never logged.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
pub use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::body::{self, Body};
use crate::listener::{Handler, Peer};

/// What to purge: URLs (`http://host/path` for one host, or `/path` for that path on every
/// host) and surrogate keys / cache tags. A soft purge marks objects stale instead of removing
/// them, so stale-while-revalidate and stale-if-error still apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub soft: bool,
    /// Every object of the node (what a node that missed more purges than the control node
    /// remembers gets).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    /// The purge's place in the fleet's sequence, set by the control node that sent it (a
    /// node that sees a gap before it catches up on what it missed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// What a purge did on one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeReport {
    pub node: String,
    /// Cached objects removed or marked stale.
    pub purged: u64,
}

/// A node role that keeps a cache implements this to take purges (and drains) from its admin
/// listener.
pub trait Purge: Send + Sync + 'static {
    fn purge(&self, request: &PurgeRequest) -> u64;

    /// Starts (`true`) or ends draining: the node's health check fails, so DNS and anycast
    /// send new clients elsewhere, while it keeps serving. Returns whether the node supports it.
    fn drain(&self, _draining: bool) -> bool {
        false
    }
}

/// More admin endpoints under one path prefix (edge workers' `/workers`, say). Every request
/// to them needs the bearer token.
pub trait AdminExtension: Send + Sync + 'static {
    /// The path prefix it serves, e.g. `/workers`.
    fn prefix(&self) -> &'static str;

    fn handle(
        &self,
        request: Request<Body>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send + '_>>;
}

/// The admin handler of one node.
pub struct Admin {
    node: String,
    token: Option<String>,
    registry: Arc<Registry>,
    purge: Option<Arc<dyn Purge>>,
    extensions: Vec<Arc<dyn AdminExtension>>,
}

impl Admin {
    /// `token`: the bearer token purge requires; with `None`, purge is refused altogether.
    pub fn new(
        node: impl Into<String>,
        token: Option<String>,
        registry: Arc<Registry>,
        purge: Option<Arc<dyn Purge>>,
    ) -> Self {
        Self {
            node: node.into(),
            token,
            registry,
            purge,
            extensions: Vec::new(),
        }
    }

    /// Also serves `extension` under its prefix.
    pub fn with_extension(mut self, extension: Arc<dyn AdminExtension>) -> Self {
        self.extensions.push(extension);
        self
    }

    fn authorized(&self, request: &Request<Body>) -> bool {
        self.token
            .as_deref()
            .is_some_and(|token| bearer_matches(request, token))
    }

    fn metrics(&self) -> Response<Body> {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            return body::text(StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed");
        }
        let mut response = Response::new(body::full(text));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static(
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
        );
        response
    }

    async fn purge(&self, request: Request<Body>) -> Response<Body> {
        if !self.authorized(&request) {
            let mut response =
                body::text(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"outpost-admin\""),
            );
            return response;
        }
        let Some(purge) = &self.purge else {
            return body::text(StatusCode::NOT_FOUND, "this node keeps no cache");
        };
        let bytes = match request.into_body().collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => {
                return body::text(
                    StatusCode::BAD_REQUEST,
                    format!("reading the body: {error}"),
                );
            }
        };
        let purge_request: PurgeRequest = match serde_json::from_slice(&bytes) {
            Ok(parsed) => parsed,
            Err(error) => {
                return body::text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "expected JSON {{\"urls\": [..], \"tags\": [..], \"soft\": bool}}: {error}"
                    ),
                );
            }
        };
        let purged = purge.purge(&purge_request);
        tracing::info!(node = %self.node, urls = ?purge_request.urls, tags = ?purge_request.tags,
            soft = purge_request.soft, purged, "purge");
        let report = PurgeReport {
            node: self.node.clone(),
            purged,
        };
        body::json(&report)
    }
}

impl Handler for Admin {
    async fn handle(&self, request: Request<Body>, _peer: Peer) -> Response<Body> {
        for extension in &self.extensions {
            let path = request.uri().path();
            let prefix = extension.prefix();
            if path == prefix
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/'))
            {
                if !self.authorized(&request) {
                    return body::text(
                        StatusCode::UNAUTHORIZED,
                        "a valid bearer token is required",
                    );
                }
                return extension.handle(request).await;
            }
        }
        match (request.method(), request.uri().path()) {
            (&Method::GET | &Method::HEAD, "/health") => body::text(StatusCode::OK, "ok"),
            (&Method::GET | &Method::HEAD, "/metrics") => self.metrics(),
            (&Method::POST, "/purge") => self.purge(request).await,
            (&Method::POST, path @ ("/drain" | "/undrain")) => {
                if !self.authorized(&request) {
                    return body::text(
                        StatusCode::UNAUTHORIZED,
                        "a valid bearer token is required",
                    );
                }
                let draining = path == "/drain";
                match &self.purge {
                    Some(node) if node.drain(draining) => {
                        tracing::info!(node = %self.node, draining, "drain state changed");
                        body::text(
                            StatusCode::OK,
                            if draining { "draining" } else { "serving" },
                        )
                    }
                    _ => body::text(StatusCode::NOT_FOUND, "this node cannot drain"),
                }
            }
            (_, "/health" | "/metrics" | "/purge" | "/drain" | "/undrain") => {
                body::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here")
            }
            _ => body::text(
                StatusCode::NOT_FOUND,
                "admin endpoints: GET /health, GET /metrics, POST /purge, POST /drain, POST /undrain",
            ),
        }
    }
}

/// Whether `request` carries `Authorization: Bearer TOKEN` with `token` (compared in constant
/// time); an empty `token` matches nothing.
pub fn bearer_matches<B>(request: &Request<B>, token: &str) -> bool {
    let Some(given) = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
    else {
        return false;
    };
    !token.is_empty() && constant_time_eq(given.trim().as_bytes(), token.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
