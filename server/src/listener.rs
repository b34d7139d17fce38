//! Accepting connections and serving a [`Handler`] on them with limits and graceful drain.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::access_log::{self, AccessRecord};
use crate::admission::{Admission, ConnectionCaps, NetworkCap, Refusal};
use crate::body::{self, Body};
use crate::framing::{FramingVerdict, Watched};
use crate::shutdown::ShutdownSignal;
use crate::tls::TlsTerminator;

/// What a node accepts from a peer before it refuses the request: the `[limits]` table of a
/// topology, durations in milliseconds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request head (request line plus headers) in bytes; past it, 431.
    pub max_header_bytes: usize,
    /// Most header fields in one request; past it, 431.
    pub max_headers: usize,
    /// Time a client has to send a complete request head (slowloris); past it the connection is
    /// closed.
    #[serde(rename = "header_read_timeout_ms", with = "crate::millis")]
    pub header_read_timeout: Duration,
    /// Largest request body in bytes; past it, 413.
    pub max_body_bytes: u64,
    /// Longest request target (path and query) in bytes; past it, 414.
    pub max_target_bytes: usize,
    /// Open connections a node's client listeners take in all (its admin listener has its
    /// own count); past it, a new connection is closed at once (plain HTTP gets a 503 first).
    pub max_connections: u32,
    /// Open connections one client network may have on an edge's client listeners (plain and
    /// HTTPS together); past it, its new ones are refused the same way. Parents and origins do
    /// not count per network: their clients are the CDN's own nodes.
    pub max_connections_per_network: u32,
    /// A client's network is its address's first this many bits.
    pub ipv4_prefix_len: u8,
    pub ipv6_prefix_len: u8,
    /// Sources counted in `max_connections` only, never per network: the CDN's own hosts,
    /// since an anycast router relays every client from its own address and health probes
    /// come from it too. Loopback by default.
    pub trusted_networks: Vec<ipnet::IpNet>,
    /// Time open connections get to finish after shutdown begins.
    #[serde(rename = "drain_timeout_ms", with = "crate::millis")]
    pub drain_timeout: Duration,
    /// Write one access-log line per request (set per listener, not in a config).
    #[serde(skip)]
    pub access_log: bool,
    /// `common` (the common log format, extended) or `json` (one object a line).
    pub access_log_format: crate::access_log::AccessLogFormat,
    /// The `Alt-Svc` value HTTPS answers carry (an edge with HTTP/3 sets it; not in a config).
    #[serde(skip)]
    pub alt_svc: Option<http::HeaderValue>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            header_read_timeout: Duration::from_secs(10),
            max_body_bytes: 16 * 1024 * 1024,
            max_target_bytes: 8 * 1024,
            max_connections: 10_000,
            max_connections_per_network: 1_024,
            ipv4_prefix_len: 24,
            ipv6_prefix_len: 48,
            trusted_networks: ["127.0.0.0/8", "::1/128"]
                .map(|net| net.parse().expect("a network"))
                .to_vec(),
            drain_timeout: Duration::from_secs(10),
            access_log: true,
            access_log_format: crate::access_log::AccessLogFormat::Common,
            alt_svc: None,
        }
    }
}

impl Limits {
    /// The connection caps of a listener: per client network where its clients are the
    /// public (`public`), in all only where they are the CDN's own nodes.
    pub fn connection_caps(&self, public: bool) -> ConnectionCaps {
        ConnectionCaps {
            max_connections: self.max_connections,
            per_network: public.then_some(NetworkCap {
                max_connections: self.max_connections_per_network,
                ipv4_prefix_len: self.ipv4_prefix_len,
                ipv6_prefix_len: self.ipv6_prefix_len,
                trusted: self.trusted_networks.clone(),
            }),
        }
    }
}

/// Who sent a request, and on which of our addresses it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub remote: SocketAddr,
    pub local: SocketAddr,
    /// The request arrived over TLS.
    pub tls: bool,
}

/// The meaning of requests: one per node role (edge, parent, origin, admin).
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        request: Request<Body>,
        peer: Peer,
    ) -> impl Future<Output = Response<Body>> + Send;
}

/// Serves `handler` on `listener` until `shutdown` fires, then stops accepting and gives open
/// connections `limits.drain_timeout` to finish. Each connection is taken only if `admission`
/// (which other listeners may share) has room for it.
pub async fn serve<H: Handler>(
    node: Arc<str>,
    listener: TcpListener,
    handler: Arc<H>,
    limits: Limits,
    admission: Arc<Admission>,
    shutdown: ShutdownSignal,
) {
    serve_with(node, listener, None, handler, limits, admission, shutdown).await;
}

/// [`serve`] behind TLS: every connection completes a handshake with `tls` first.
pub async fn serve_tls<H: Handler>(
    node: Arc<str>,
    listener: TcpListener,
    tls: Arc<TlsTerminator>,
    handler: Arc<H>,
    limits: Limits,
    admission: Arc<Admission>,
    shutdown: ShutdownSignal,
) {
    serve_with(
        node,
        listener,
        Some(tls),
        handler,
        limits,
        admission,
        shutdown,
    )
    .await;
}

async fn serve_with<H: Handler>(
    node: Arc<str>,
    listener: TcpListener,
    tls: Option<Arc<TlsTerminator>>,
    handler: Arc<H>,
    limits: Limits,
    admission: Arc<Admission>,
    mut shutdown: ShutdownSignal,
) {
    let local = match listener.local_addr() {
        Ok(addr) => addr,
        Err(error) => {
            tracing::error!(%node, %error, "listener has no local address");
            return;
        }
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers)
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        // A peer that vanished (its NAT forgot it, its host went down) stops holding its
        // connection and its place in the connection count after about 50 s.
        .keep_alive_interval(Some(H2_PING_INTERVAL))
        .keep_alive_timeout(H2_PING_TIMEOUT);
    if tls.is_some() {
        // Head and body in one buffer become one TLS record instead of two.
        builder.http1().writev(false);
    }
    let graceful = GracefulShutdown::new();
    let limits = Arc::new(limits);

    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(%node, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = shutdown.triggered() => break,
        };
        let slot = match admission.admit(remote.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                tracing::debug!(%node, %remote, %refusal, "connection refused");
                if tls.is_none() {
                    refuse(stream, refusal);
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let peer = Peer {
            remote,
            local,
            tls: tls.is_some(),
        };
        let handler = handler.clone();
        let max_head = limits.max_header_bytes;
        let limits = limits.clone();
        let node = node.clone();
        // One request handler per connection, told what the framing watch saw.
        let service = move |verdict: Arc<FramingVerdict>| {
            service_fn(move |request: Request<Incoming>| {
                let handler = handler.clone();
                let limits = limits.clone();
                let node = node.clone();
                let conflicting = verdict.next_is_conflicting();
                async move {
                    let mut response = if conflicting {
                        both_framings()
                    } else {
                        handle_one(&node, &*handler, &limits, request, peer).await
                    };
                    if let Some(alt_svc) = limits.alt_svc.as_ref().filter(|_| peer.tls) {
                        response
                            .headers_mut()
                            .entry(http::header::ALT_SVC)
                            .or_insert_with(|| alt_svc.clone());
                    }
                    Ok::<_, Infallible>(response)
                }
            })
        };
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let result = match tls {
                None => {
                    let stream = Watched::new(stream, max_head);
                    let service = service(stream.verdict());
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(connection.into_owned()).await
                }
                Some(tls) => {
                    let stream = match tls.accept(stream).await {
                        Ok(stream) => Watched::new(stream, max_head),
                        Err(error) => {
                            tracing::debug!(%remote, %error, "TLS handshake failed");
                            return;
                        }
                    };
                    let service = service(stream.verdict());
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(connection.into_owned()).await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%remote, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::debug!(%node, %local, "listener drained"),
        () = tokio::time::sleep(limits.drain_timeout) => {
            tracing::warn!(%node, %local, "drain timeout: closing remaining connections");
        }
    }
}

/// How often an HTTP/2 connection that sends nothing is pinged, and how long it has to answer.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// Refused connections still delivering their 503, in all listeners: past the bound, a refused
/// connection is closed at once, so a flood of them holds no more sockets than this.
static LINGERING: AtomicU32 = AtomicU32::new(0);
const MAX_LINGERING: u32 = 256;
/// How long a refused connection's request is read (and dropped) after its 503.
const LINGER: Duration = Duration::from_millis(500);

/// Writes a refused plain-HTTP connection its 503 and closes it. A socket closed with unread
/// bytes resets the connection, and the client then loses the answer: so what the client
/// sent is read and dropped for up to [`LINGER`] first, while few refusals are lingering.
fn refuse(stream: tokio::net::TcpStream, refusal: Refusal) {
    // A new connection's send buffer is empty: the answer fits.
    let _ = stream.try_write(&refused_answer(refusal));
    if LINGERING.fetch_add(1, Ordering::Relaxed) >= MAX_LINGERING {
        LINGERING.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    tokio::spawn(async move {
        let mut stream = stream;
        let _ = stream.shutdown().await;
        let mut sink = [0u8; 4096];
        let _ = tokio::time::timeout(LINGER, async {
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
        LINGERING.fetch_sub(1, Ordering::Relaxed);
    });
}

/// What a plain-HTTP client whose connection is refused reads before the connection closes.
fn refused_answer(refusal: Refusal) -> Vec<u8> {
    let text = format!("{refusal}\n");
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{text}",
        text.len()
    )
    .into_bytes()
}

/// The answer to a request that declared both Content-Length and Transfer-Encoding: refused
/// (RFC 9112 section 6.1 allows it), and the connection closed, since what follows it cannot be
/// trusted to be a request.
fn both_framings() -> Response<Body> {
    let mut response = body::text(
        StatusCode::BAD_REQUEST,
        "a request may declare Content-Length or Transfer-Encoding, not both",
    );
    response.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    response
}

/// One request on any transport (HTTP/1.1 and HTTP/2 from hyper, HTTP/3 from `h3`): its normal
/// form, the limits, the handler, the access log.
pub(crate) async fn handle_one<H: Handler, B>(
    node: &Arc<str>,
    handler: &H,
    limits: &Limits,
    request: Request<B>,
    peer: Peer,
) -> Response<Body>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<crate::BoxError>,
{
    let started = Instant::now();
    let method = request.method().clone();
    let version = request.version();
    let uri = request.uri().clone();

    let declared_length = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let (mut parts, incoming) = request.into_parts();
    let request_id = access_log::RequestId::next();
    parts.extensions.insert(request_id);
    let normal = crate::normal::normalize(&mut parts, peer.tls, limits.max_target_bytes);
    let response = if declared_length.is_some_and(|length| length > limits.max_body_bytes) {
        body::text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {} bytes", limits.max_body_bytes),
        )
    } else if let Err(refusal) = normal {
        let mut response = body::text(refusal.status(), refusal.to_string());
        // What follows a request we could not read may not be a request either.
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        response
    } else {
        let max = usize::try_from(limits.max_body_bytes).unwrap_or(usize::MAX);
        let request = Request::from_parts(parts, Limited::new(incoming, max).boxed_unsync());
        // Boxed: the handler chain's future is several kilobytes, and whatever holds this one
        // (hyper's task per HTTP/2 stream, ours per HTTP/3 request) is moved when spawned and
        // again when it completes; with the box those moves copy a pointer.
        Box::pin(handler.handle(request, peer)).await
    };

    if limits.access_log && uri.path() != crate::HEALTH_PATH && access_log::enabled() {
        let target = uri
            .path_and_query()
            .map_or_else(|| uri.to_string(), |pq| pq.to_string());
        let cache_status = response
            .headers()
            .get("cache-status")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let record = AccessRecord {
            format: limits.access_log_format,
            node: node.clone(),
            peer: peer.remote,
            method,
            target,
            version,
            status: response.status(),
            cache_status,
            started,
            first_byte: started.elapsed(),
            request_id: Some(request_id),
            note: response
                .extensions()
                .get::<access_log::AccessNote>()
                .map(|n| n.0.clone()),
        };
        let (parts, body) = response.into_parts();
        return Response::from_parts(parts, access_log::logged(body, record));
    }
    response
}
