//! HTTP/3 beside TCP: a QUIC endpoint (quinn) on the UDP port of an HTTPS listener, with the
//! same certificates and SNI as TLS over TCP (the terminator's resolver, so a reload reaches
//! both), serving each request through the same [`handle_one`] as HTTP/1.1 and HTTP/2: the
//! normal form, the limits, the handler, the access log.
//!
//! What QUIC connections may do is [`QuicSettings`]: streams per connection, the idle timeout,
//! connections in all and per client network, when clients must prove their address with a
//! Retry first (RFC 9000 section 8.1), and 0-RTT. 0-RTT is off by default; when on, only safe
//! methods are served from early data (forwarded with `Early-Data: 1`), and any other request
//! that arrives in it waits for the handshake to complete, which a replayed flight never does
//! (RFC 8470, RFC 9114 section 10.9).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::Response;
use http_body_util::BodyExt;

use crate::admission::{Admission, ConnectionCaps, NetworkCap, Refusal, Slot};
use crate::listener::{Handler, Limits, Peer, handle_one};
use crate::tls::TlsTerminator;
use crate::{Body, ShutdownSignal, body};

/// What the QUIC side of an HTTPS listener allows (`[tls.quic]` in a topology).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuicSettings {
    /// Concurrent requests (bidirectional streams) one connection may have open.
    pub max_streams: u32,
    /// A connection with nothing to say for this long is closed.
    #[serde(rename = "idle_timeout_ms", with = "crate::millis")]
    pub idle_timeout: Duration,
    /// Open connections (handshakes included) the listener takes in all; past it, refused.
    pub max_connections: u32,
    /// Open connections one client network may have; past it, its new ones are refused.
    pub max_connections_per_network: u32,
    /// The client network of an address: its first this many bits.
    pub ipv4_prefix_len: u8,
    pub ipv6_prefix_len: u8,
    /// Handshakes in progress from which a client whose address is not yet validated gets a
    /// Retry (it must echo a token before the edge keeps any state for it): 0 always sends
    /// one, `4294967295` never.
    pub retry_above_handshakes: u32,
    /// Accept 0-RTT early data from resuming clients (see the module's documentation).
    pub early_data: bool,
}

impl QuicSettings {
    fn caps(&self) -> ConnectionCaps {
        ConnectionCaps {
            max_connections: self.max_connections,
            per_network: Some(NetworkCap {
                max_connections: self.max_connections_per_network,
                ipv4_prefix_len: self.ipv4_prefix_len,
                ipv6_prefix_len: self.ipv6_prefix_len,
                trusted: Vec::new(),
            }),
        }
    }
}

impl Default for QuicSettings {
    fn default() -> Self {
        Self {
            max_streams: 100,
            idle_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_connections_per_network: 256,
            ipv4_prefix_len: 24,
            ipv6_prefix_len: 48,
            retry_above_handshakes: 64,
            early_data: false,
        }
    }
}

/// The request header that tells upstreams a request came in early data (RFC 8470 section 5.1).
pub const EARLY_DATA: http::HeaderName = http::HeaderName::from_static("early-data");

/// Why the QUIC endpoint did not start.
#[derive(Debug, thiserror::Error)]
pub enum H3Error {
    #[error("QUIC TLS configuration: {0}")]
    Tls(String),
    #[error("binding UDP {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Binds the QUIC endpoint on UDP `addr` with `tls`'s certificates.
pub fn bind(
    addr: SocketAddr,
    tls: &TlsTerminator,
    settings: &QuicSettings,
) -> Result<quinn::Endpoint, H3Error> {
    let crypto = tls
        .quic_config(settings.early_data)
        .map_err(|e| H3Error::Tls(e.to_string()))?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)
        .map_err(|e| H3Error::Tls(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(settings.max_streams.into())
        // Clients open a control stream and two QPACK streams, nothing more.
        .max_concurrent_uni_streams(8u32.into())
        .max_idle_timeout(settings.idle_timeout.try_into().ok());
    server.transport_config(Arc::new(transport));
    let socket =
        std::net::UdpSocket::bind(addr).map_err(|source| H3Error::Bind { addr, source })?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|source| H3Error::Bind { addr, source })
}

/// Serves `handler` over HTTP/3 on `endpoint` until `shutdown`, then closes every connection
/// after at most `limits.drain_timeout`.
pub async fn serve<H: Handler>(
    node: Arc<str>,
    endpoint: quinn::Endpoint,
    handler: Arc<H>,
    limits: Limits,
    settings: QuicSettings,
    mut shutdown: ShutdownSignal,
) {
    let local = endpoint
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let limits = Arc::new(limits);
    let early_data = settings.early_data;
    let admission = QuicAdmission::new(&settings);
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
            () = shutdown.triggered() => break,
        };
        let slot = match admission.admit(&incoming) {
            Admit::Accept(slot) => slot,
            Admit::Retry => {
                tracing::debug!(%node, remote = %incoming.remote_address(), "QUIC: Retry sent, the client must prove its address");
                let _ = incoming.retry();
                continue;
            }
            Admit::Refuse(why) => {
                tracing::info!(%node, remote = %incoming.remote_address(), %why, "QUIC connection refused");
                incoming.refuse();
                continue;
            }
        };
        let (node, handler, limits) = (node.clone(), handler.clone(), limits.clone());
        let handshaking = admission.handshaking.clone();
        handshaking.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let _slot = slot;
            let handshaken = handshake(&node, incoming, early_data).await;
            handshaking.fetch_sub(1, Ordering::Relaxed);
            let Some((connection, handshake)) = handshaken else {
                return;
            };
            let peer = Peer {
                remote: connection.remote_address(),
                local,
                tls: true,
            };
            let served = serve_connection(&node, connection, handshake, handler, limits, peer);
            if let Err(error) = served.await {
                tracing::debug!(%node, remote = %peer.remote, %error, "HTTP/3 connection ended with an error");
            }
        });
    }
    endpoint.close(0u32.into(), b"shutting down");
    let _ = tokio::time::timeout(limits.drain_timeout, endpoint.wait_idle()).await;
}

/// Whether a connection's handshake has completed: `true` once it has, and never if it fails.
type Handshake = tokio::sync::watch::Receiver<bool>;

/// Completes the handshake of `incoming`; with early data on, returns as soon as the
/// connection can carry requests (0-RTT), with the handshake's completion still to come.
async fn handshake(
    node: &Arc<str>,
    incoming: quinn::Incoming,
    early_data: bool,
) -> Option<(quinn::Connection, Handshake)> {
    let connecting = incoming
        .accept()
        .map_err(|error| tracing::debug!(%node, %error, "QUIC connection not accepted"))
        .ok()?;
    let (done, handshake) = tokio::sync::watch::channel(false);
    let connecting = if early_data {
        match connecting.into_0rtt() {
            Ok((connection, completed)) => {
                let watched = connection.clone();
                tokio::spawn(async move {
                    // This resolves when the handshake completes or fails (its value means
                    // nothing on a server); a failed one has closed the connection.
                    completed.await;
                    let _ = done.send(watched.close_reason().is_none());
                });
                return Some((connection, handshake));
            }
            Err(connecting) => connecting,
        }
    } else {
        connecting
    };
    match connecting.await {
        Ok(connection) => {
            let _ = done.send(true);
            Some((connection, handshake))
        }
        Err(error) => {
            tracing::debug!(%node, %error, "QUIC handshake failed");
            None
        }
    }
}

/// What RFC 8470 allows a request that arrived before the handshake completed: a safe method
/// is served at once and marked `Early-Data: 1` for upstreams; anything else waits for the
/// handshake (`false`: it failed, so the request is dropped unserved).
async fn settle_early_data(
    request: &mut http::Request<Body>,
    handshake: &mut Handshake,
    connection: &quinn::Connection,
) -> bool {
    if *handshake.borrow() {
        return true;
    }
    let method = request.method();
    if method == http::Method::GET
        || method == http::Method::HEAD
        || method == http::Method::OPTIONS
    {
        request
            .headers_mut()
            .insert(EARLY_DATA, http::HeaderValue::from_static("1"));
        return true;
    }
    handshake.wait_for(|done| *done).await.is_ok() && connection.close_reason().is_none()
}

async fn serve_connection<H: Handler>(
    node: &Arc<str>,
    connection: quinn::Connection,
    handshake: Handshake,
    handler: Arc<H>,
    limits: Arc<Limits>,
    peer: Peer,
) -> Result<(), h3::error::ConnectionError> {
    let quic = connection.clone();
    let mut h3 = h3::server::builder()
        .max_field_section_size(u64::try_from(limits.max_header_bytes).unwrap_or(u64::MAX))
        .build::<_, Bytes>(h3_quinn::Connection::new(connection))
        .await?;
    while let Some(resolver) = h3.accept().await? {
        let (node, handler, limits) = (node.clone(), handler.clone(), limits.clone());
        let (mut handshake, quic) = (handshake.clone(), quic.clone());
        tokio::spawn(async move {
            let (request, stream) = match resolver.resolve_request().await {
                Ok(resolved) => resolved,
                Err(error) => {
                    tracing::debug!(%node, %error, "HTTP/3 request head unreadable");
                    return;
                }
            };
            if request.headers().len() > limits.max_headers {
                // As hyper answers on TCP past `max_headers`.
                let refused = body::text(
                    http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "too many header fields",
                );
                let (mut send, _) = stream.split();
                let _ = respond(&mut send, refused).await;
                return;
            }
            let (mut send, recv) = stream.split();
            let mut request = request.map(|()| request_body(recv));
            if !settle_early_data(&mut request, &mut handshake, &quic).await {
                tracing::info!(%node, remote = %peer.remote, method = %request.method(), "request in early data dropped: the handshake never completed");
                return;
            }
            let response = handle_one(&node, &*handler, &limits, request, peer).await;
            if let Err(error) = respond(&mut send, response).await {
                tracing::debug!(%node, %error, "HTTP/3 response not sent whole");
            }
        });
    }
    Ok(())
}

type RecvStream = h3::server::RequestStream<h3_quinn::RecvStream, Bytes>;
type SendStream = h3::server::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;

/// The request body as it arrives on the stream.
fn request_body(recv: RecvStream) -> Body {
    let chunks = futures_util::stream::unfold(Some(recv), |recv| async move {
        let mut recv = recv?;
        match recv.recv_data().await {
            Ok(Some(mut data)) => Some((Ok(data.copy_to_bytes(data.remaining())), Some(recv))),
            Ok(None) => None,
            Err(error) => Some((Err(std::io::Error::other(error.to_string())), None)),
        }
    });
    body::stream(chunks)
}

/// Sends the response head, then the body as it comes, then the end of the stream.
async fn respond(send: &mut SendStream, response: Response<Body>) -> Result<(), String> {
    let (parts, mut body) = response.into_parts();
    let mut head = Response::from_parts(parts, ());
    // Connection-specific fields have no meaning in HTTP/3 (RFC 9114 section 4.2).
    for name in [
        http::header::CONNECTION,
        http::header::TRANSFER_ENCODING,
        http::header::UPGRADE,
        http::HeaderName::from_static("keep-alive"),
        http::HeaderName::from_static("proxy-connection"),
    ] {
        head.headers_mut().remove(name);
    }
    send.send_response(head).await.map_err(|e| e.to_string())?;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        match frame.into_data() {
            Ok(data) => send.send_data(data).await.map_err(|e| e.to_string())?,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    send.send_trailers(trailers)
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
        }
    }
    send.finish().await.map_err(|e| e.to_string())
}

/// Which connections the endpoint takes: the open ones, in all and per client network
/// ([`crate::admission`]), and whether a client must first prove its address.
struct QuicAdmission {
    connections: Arc<Admission>,
    retry_above_handshakes: u32,
    handshaking: Arc<AtomicU32>,
}

enum Admit {
    Accept(Slot),
    Retry,
    Refuse(Refusal),
}

impl QuicAdmission {
    fn new(settings: &QuicSettings) -> Self {
        Self {
            connections: Admission::new(settings.caps()),
            retry_above_handshakes: settings.retry_above_handshakes,
            handshaking: Arc::new(AtomicU32::new(0)),
        }
    }

    fn admit(&self, incoming: &quinn::Incoming) -> Admit {
        if !incoming.remote_address_validated()
            && incoming.may_retry()
            && self.handshaking.load(Ordering::Relaxed) >= self.retry_above_handshakes
        {
            return Admit::Retry;
        }
        match self.connections.admit(incoming.remote_address().ip()) {
            Ok(slot) => Admit::Accept(slot),
            Err(refusal) => Admit::Refuse(refusal),
        }
    }
}
