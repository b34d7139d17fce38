//! h3load: GETs one URL over HTTP/3 from C connections with M requests in flight on each, for
//! a number of seconds, and prints `requests N seconds S errors E` (bench/h3.sh reads it).
//!
//!   h3load ADDR SNI URL CA_PEM CONNECTIONS STREAMS SECONDS

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Buf;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 8 {
        eprintln!("usage: h3load ADDR SNI URL CA_PEM CONNECTIONS STREAMS SECONDS");
        std::process::exit(2);
    }
    let addr: SocketAddr = args[1].parse().expect("ADDR");
    let sni = args[2].clone();
    let url = args[3].clone();
    let ca = std::fs::read(&args[4]).expect("CA_PEM");
    let connections: usize = args[5].parse().expect("CONNECTIONS");
    let streams: usize = args[6].parse().expect("STREAMS");
    let seconds: u64 = args[7].parse().expect("SECONDS");

    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca.as_slice()) {
        roots.add(cert.expect("a PEM certificate")).expect("a CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("0.0.0.0:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));

    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let connection = endpoint.connect(addr, &sni).unwrap().await.expect("QUIC handshake");
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(connection))
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        for _ in 0..streams {
            let (mut send, url, done, errors) =
                (send.clone(), url.clone(), done.clone(), errors.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < until {
                    let request = http::Request::get(url.as_str()).body(()).unwrap();
                    let result = async {
                        let mut stream = send.send_request(request).await?;
                        stream.finish().await?;
                        let response = stream.recv_response().await?;
                        while let Some(mut chunk) = stream.recv_data().await? {
                            chunk.advance(chunk.remaining());
                        }
                        Ok::<_, h3::error::StreamError>(response.status())
                    }
                    .await;
                    match result {
                        Ok(status) if status == 200 => done.fetch_add(1, Ordering::Relaxed),
                        _ => errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }));
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "requests {} seconds {elapsed:.3} errors {}",
        done.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed)
    );
}
