//! HTTP/3 beside TCP: a QUIC endpoint (quinn) on the UDP port of an HTTPS listener, with the
//! same certificates and SNI as TLS over TCP (the terminator's resolver, so a reload reaches
//! both), serving each request through the same [`handle_one`] as HTTP/1.1 and HTTP/2: the
//! normal form, the limits, the handler, the access log.
//!
//! 0-RTT is off: early data is never accepted, so no request can be replayed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::Response;
use http_body_util::BodyExt;

use crate::listener::{Handler, Limits, Peer, handle_one};
use crate::tls::TlsTerminator;
use crate::{Body, ShutdownSignal, body};

/// Concurrent requests (bidirectional streams) one QUIC connection may have open.
const MAX_STREAMS: u32 = 100;
/// A connection with nothing to say for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

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
pub fn bind(addr: SocketAddr, tls: &TlsTerminator) -> Result<quinn::Endpoint, H3Error> {
    let crypto = tls.quic_config().map_err(|e| H3Error::Tls(e.to_string()))?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)
        .map_err(|e| H3Error::Tls(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(MAX_STREAMS.into())
        // Clients open a control stream and two QPACK streams, nothing more.
        .max_concurrent_uni_streams(8u32.into())
        .max_idle_timeout(IDLE_TIMEOUT.try_into().ok());
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
    mut shutdown: ShutdownSignal,
) {
    let local = endpoint
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let limits = Arc::new(limits);
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
            () = shutdown.triggered() => break,
        };
        let (node, handler, limits) = (node.clone(), handler.clone(), limits.clone());
        tokio::spawn(async move {
            let connection = match incoming.await {
                Ok(connection) => connection,
                Err(error) => {
                    tracing::debug!(%node, %error, "QUIC handshake failed");
                    return;
                }
            };
            let peer = Peer {
                remote: connection.remote_address(),
                local,
                tls: true,
            };
            if let Err(error) = serve_connection(&node, connection, handler, limits, peer).await {
                tracing::debug!(%node, remote = %peer.remote, %error, "HTTP/3 connection ended with an error");
            }
        });
    }
    endpoint.close(0u32.into(), b"shutting down");
    let _ = tokio::time::timeout(limits.drain_timeout, endpoint.wait_idle()).await;
}

async fn serve_connection<H: Handler>(
    node: &Arc<str>,
    connection: quinn::Connection,
    handler: Arc<H>,
    limits: Arc<Limits>,
    peer: Peer,
) -> Result<(), h3::error::ConnectionError> {
    let mut h3 = h3::server::builder()
        .max_field_section_size(u64::try_from(limits.max_header_bytes).unwrap_or(u64::MAX))
        .build::<_, Bytes>(h3_quinn::Connection::new(connection))
        .await?;
    while let Some(resolver) = h3.accept().await? {
        let (node, handler, limits) = (node.clone(), handler.clone(), limits.clone());
        tokio::spawn(async move {
            let (request, stream) = match resolver.resolve_request().await {
                Ok(resolved) => resolved,
                Err(error) => {
                    tracing::debug!(%node, %error, "HTTP/3 request head unreadable");
                    return;
                }
            };
            let (mut send, recv) = stream.split();
            let request = request.map(|()| request_body(recv));
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
