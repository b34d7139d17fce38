//! The upstream side of a cache node: the [`Upstream`] role each tier implements (an edge picks
//! a parent, a parent goes to the origin), and the pooled HTTP client they share.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use outpost_server::Body;

use crate::key::CacheKey;

/// Why an upstream fetch failed. Each maps to what the client sees.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The connection was refused or could not be made: nothing was sent.
    #[error("connecting to {upstream}: {reason}")]
    Connect { upstream: String, reason: String },
    /// No response head within the first-byte timeout.
    #[error("{upstream} sent no response within {timeout:?}")]
    Timeout { upstream: String, timeout: Duration },
    /// The upstream answered with something that is not HTTP, or broke the exchange.
    #[error("{upstream} broke the exchange: {reason}")]
    Protocol { upstream: String, reason: String },
    /// No upstream is configured or healthy.
    #[error("no upstream available")]
    Unavailable,
}

impl UpstreamError {
    /// The status a client gets when nothing can stand in for the upstream.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Connect { .. } | Self::Protocol { .. } => StatusCode::BAD_GATEWAY,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Whether nothing reached the upstream, so another upstream may be tried.
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect { .. })
    }
}

/// Where a cache node sends what it cannot answer. The request carries an origin-form URI and
/// a Host header; `key` lets the implementation route by object (consistent hashing). The
/// response body is the crate's own [`Body`], so anything can stand in for a network upstream
/// (a test's script, a worker, a disk).
pub trait Upstream: Send + Sync + 'static {
    fn send(
        &self,
        request: Request<Body>,
        key: &CacheKey,
    ) -> impl Future<Output = Result<Response<Body>, UpstreamError>> + Send;
}

/// Timeouts of upstream connections.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamTimeouts {
    pub connect: Duration,
    pub first_byte: Duration,
}

/// A pooled keep-alive HTTP/1.1 client for upstream fetches, over plain TCP for `http://`
/// upstreams and over TLS for `https://` ones.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Body>,
    timeouts: UpstreamTimeouts,
}

impl HttpClient {
    /// A client for plain-HTTP upstreams (an `https://` upstream fails to connect).
    pub fn new(timeouts: UpstreamTimeouts) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| {
                b.with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            });
        match config {
            Ok(config) => Self::with_tls(timeouts, config),
            // The ring provider supports the default versions; this cannot fail in practice.
            Err(error) => unreachable!("rustls defaults: {error}"),
        }
    }

    /// A client that verifies `https://` upstreams and authenticates itself as `tls` says
    /// (roots and, for mutual TLS, a client certificate).
    pub fn with_tls(timeouts: UpstreamTimeouts, tls: rustls::ClientConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeouts.connect));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(connector);
        Self { client, timeouts }
    }

    /// Sends `request` (origin-form URI) to `base` (`http://host:port`).
    pub async fn send_to(
        &self,
        base: &Uri,
        mut request: Request<Body>,
    ) -> Result<Response<Body>, UpstreamError> {
        let upstream = base.to_string();
        let target = request
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        let uri = Uri::builder()
            .scheme(base.scheme().cloned().unwrap_or(http::uri::Scheme::HTTP))
            .authority(base.authority().map_or("", |a| a.as_str()))
            .path_and_query(target)
            .build()
            .map_err(|e| UpstreamError::Protocol {
                upstream: upstream.clone(),
                reason: format!("bad upstream URI: {e}"),
            })?;
        *request.uri_mut() = uri;
        *request.version_mut() = http::Version::HTTP_11;
        match tokio::time::timeout(self.timeouts.first_byte, self.client.request(request)).await {
            Err(_) => Err(UpstreamError::Timeout {
                upstream,
                timeout: self.timeouts.first_byte,
            }),
            Ok(Err(error)) if error.is_connect() => Err(UpstreamError::Connect {
                upstream,
                reason: error_chain(&error),
            }),
            Ok(Err(error)) => Err(UpstreamError::Protocol {
                upstream,
                reason: error_chain(&error),
            }),
            Ok(Ok(response)) => Ok(response.map(|body| body.map_err(Into::into).boxed_unsync())),
        }
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
