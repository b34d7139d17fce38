//! Per-hostname HTTPS policy at the edge: redirect plain HTTP to HTTPS, send HSTS on HTTPS
//! responses, and leave HTTP/3 unadvertised (`Alt-Svc: clear`), for the hosts the config names.

use std::collections::HashMap;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use outpost_server::{Body, Handler, Peer, body};
use serde::{Deserialize, Serialize};

/// What one hostname asks of the edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostPolicy {
    /// The hostname (exact, or `*.example.test` for one label under it).
    pub name: String,
    /// Answer plain HTTP with a permanent redirect to HTTPS.
    #[serde(default)]
    pub redirect_to_https: bool,
    /// `Strict-Transport-Security: max-age=...` on HTTPS responses, in seconds.
    pub hsts_max_age_secs: Option<u64>,
    #[serde(default)]
    pub hsts_include_subdomains: bool,
    /// Advertise HTTP/3 (`Alt-Svc: h3=...`) on this host's HTTPS answers; `false` sends
    /// `Alt-Svc: clear` instead, so clients forget any alternative they knew (RFC 7838).
    #[serde(default = "advertised")]
    pub http3: bool,
}

fn advertised() -> bool {
    true
}

/// The edge's front for client requests: it removes the `outpost-*` headers a client sent,
/// then applies the hosts' HTTPS policies.
pub struct HttpsPolicy<H> {
    inner: H,
    exact: HashMap<String, HostPolicy>,
    wildcard: HashMap<String, HostPolicy>,
    /// The port of the HTTPS listener, for redirect targets.
    https_port: u16,
}

impl<H: Handler> HttpsPolicy<H> {
    pub fn new(inner: H, hosts: &[HostPolicy], https_port: u16) -> Self {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for host in hosts {
            let name = host.name.to_ascii_lowercase();
            match name.strip_prefix("*.") {
                Some(suffix) => wildcard.insert(suffix.to_owned(), host.clone()),
                None => exact.insert(name, host.clone()),
            };
        }
        Self {
            inner,
            exact,
            wildcard,
            https_port,
        }
    }

    fn policy(&self, host: &str) -> Option<&HostPolicy> {
        self.exact.get(host).or_else(|| {
            host.split_once('.')
                .and_then(|(_, parent)| self.wildcard.get(parent))
        })
    }
}

/// The hostname of a request, lower-cased, without port.
fn hostname(request: &Request<Body>) -> Option<String> {
    let host = request.uri().host().map(str::to_owned).or_else(|| {
        request
            .headers()
            .get(header::HOST)?
            .to_str()
            .ok()
            .map(str::to_owned)
    })?;
    let host = match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name.to_owned()
        }
        _ => host,
    };
    Some(host.to_ascii_lowercase())
}

impl<H: Handler> Handler for HttpsPolicy<H> {
    async fn handle(&self, mut request: Request<Body>, peer: Peer) -> Response<Body> {
        // Every client request enters the edge here. What the edge tells workers and origins
        // about a request (`outpost-client-ip`, ...) is the edge's to say, never a client's.
        outpost_cache::headers::remove_edge_only(request.headers_mut());
        if self.exact.is_empty() && self.wildcard.is_empty() {
            return self.inner.handle(request, peer).await;
        }
        let Some(policy) =
            hostname(&request).and_then(|host| self.policy(&host).cloned().map(|p| (host, p)))
        else {
            return self.inner.handle(request, peer).await;
        };
        let (host, policy) = policy;
        if !peer.tls && policy.redirect_to_https {
            let port = if self.https_port == 443 {
                String::new()
            } else {
                format!(":{}", self.https_port)
            };
            let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
            let location = format!("https://{host}{port}{target}");
            let mut response = body::text(
                StatusCode::PERMANENT_REDIRECT,
                format!("moved to {location}"),
            );
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            return response;
        }
        let mut response = self.inner.handle(request, peer).await;
        if peer.tls && !policy.http3 {
            response
                .headers_mut()
                .insert(header::ALT_SVC, HeaderValue::from_static("clear"));
        }
        if peer.tls
            && let Some(max_age) = policy.hsts_max_age_secs
        {
            let mut value = format!("max-age={max_age}");
            if policy.hsts_include_subdomains {
                value.push_str("; includeSubDomains");
            }
            if let Ok(value) = HeaderValue::from_str(&value) {
                response
                    .headers_mut()
                    .insert(header::STRICT_TRANSPORT_SECURITY, value);
            }
        }
        response
    }
}
