//! HTTP/3 at the edge, with a Rust HTTP/3 client (h3 over quinn): the same cache as HTTP/1.1,
//! advertised by Alt-Svc, and garbage datagrams that change nothing.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Buf;

use crate::common::{Outpost, Reply, TestOrigin};

fn topology(origin: &str, state: &Path) -> String {
    format!(
        "[admin]\ntoken = \"t\"\n[tls]\nstate_dir = \"{}\"\n\
         [origin]\nurl = \"{origin}\"\n\
         [[edges]]\nname = \"edge-0\"\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\n",
        state.display()
    )
}

/// A QUIC client endpoint trusting the local CA at `ca`, speaking h3.
fn client(ca: &Path) -> quinn::Endpoint {
    let mut roots = rustls::RootCertStore::empty();
    for cert in outpost_certs::load_certificates(ca).unwrap() {
        roots.add(cert).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    // Willing to send early data, so that only the edge's refusal keeps it from doing so.
    tls.enable_early_data = true;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    endpoint
}

/// An open HTTP/3 connection: the QUIC connection, where requests are sent, and the task
/// that drives it.
struct H3Connection {
    quic: quinn::Connection,
    send: h3::client::SendRequest<h3_quinn::OpenStreams, bytes::Bytes>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for H3Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

async fn connect(endpoint: &quinn::Endpoint, addr: SocketAddr) -> H3Connection {
    let quic = endpoint
        .connect(addr, "www.outpost.test")
        .unwrap()
        .await
        .expect("QUIC handshake");
    let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(quic.clone()))
        .await
        .unwrap();
    let driver = tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    H3Connection { quic, send, driver }
}

impl H3Connection {
    /// One GET on this connection: status, headers, body.
    async fn get(&mut self, url: &str) -> (u16, http::HeaderMap, Vec<u8>) {
        let request = http::Request::get(url).body(()).unwrap();
        let mut stream = self.send.send_request(request).await.unwrap();
        stream.finish().await.unwrap();
        let response = stream.recv_response().await.unwrap();
        let mut body = Vec::new();
        while let Some(mut chunk) = stream.recv_data().await.unwrap() {
            body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
        }
        (response.status().as_u16(), response.headers().clone(), body)
    }

    /// The certificate the edge presented.
    fn certificate(&self) -> rustls::pki_types::CertificateDer<'static> {
        let identity = self.quic.peer_identity().expect("a certificate");
        let chain = identity
            .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
            .unwrap();
        chain[0].clone()
    }
}

/// One GET over a new HTTP/3 connection: status, headers, body.
async fn get(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    url: &str,
) -> (u16, http::HeaderMap, Vec<u8>) {
    connect(endpoint, addr).await.get(url).await
}

#[tokio::test]
async fn a_certificate_reload_reaches_quic_and_an_open_connection_keeps_working() {
    let origin =
        TestOrigin::start(|_, n| Reply::ok(&[("cache-control", "no-store")], format!("n{n}")))
            .await;
    let state = tempfile::tempdir().unwrap();
    let (ca, first, tls) = crate::tls::own_certificate(state.path());
    let toml = topology(&origin.url, state.path())
        .replace("[origin]", &format!("reload_check_ms = 100\n{tls}[origin]"));
    let cdn = Outpost::up(&toml, 1);
    let addr: SocketAddr = cdn.https("edge-0").parse().unwrap();
    let endpoint = client(&ca.ca_cert_path());
    let mut open = connect(&endpoint, addr).await;
    let old = open.certificate();
    assert_eq!(open.get("https://www.outpost.test/1").await.0, 200);
    let renewed = ca
        .ensure_server_cert("renewed", &["www.outpost.test".to_owned()])
        .unwrap();
    std::fs::copy(&renewed.key, &first.key).unwrap();
    std::fs::copy(&renewed.cert, &first.cert).unwrap();
    let mut swapped = false;
    for _ in 0..100 {
        // A fresh client each time: no resumed session, a full handshake.
        if connect(&client(&ca.ca_cert_path()), addr)
            .await
            .certificate()
            != old
        {
            swapped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(swapped, "new QUIC connections get the new certificate");
    let (status, _, body) = open.get("https://www.outpost.test/2").await;
    assert_eq!(
        status, 200,
        "the connection opened before the reload still works"
    );
    assert!(String::from_utf8_lossy(&body).starts_with('n'));
}

#[tokio::test]
async fn http3_shares_the_cache_with_http1_is_advertised_and_survives_garbage() {
    let origin =
        TestOrigin::start(|_, _| Reply::ok(&[("cache-control", "max-age=60")], "over quic")).await;
    let state = tempfile::tempdir().unwrap();
    let cdn = Outpost::up(&topology(&origin.url, state.path()), 1);
    let https = cdn.https("edge-0");
    let addr: SocketAddr = https.parse().unwrap();
    let endpoint = client(&state.path().join("ca.pem"));

    // A miss, then a hit, over HTTP/3.
    let (status, headers, body) = get(&endpoint, addr, "https://www.outpost.test/q").await;
    assert_eq!((status, body.as_slice()), (200, &b"over quic"[..]));
    let cache = headers["cache-status"].to_str().unwrap().to_owned();
    assert!(cache.contains("edge-0; fwd=uri-miss"), "{cache}");
    let (_, headers, _) = get(&endpoint, addr, "https://www.outpost.test/q").await;
    assert!(
        headers["cache-status"]
            .to_str()
            .unwrap()
            .contains("edge-0; hit")
    );
    // The same object over HTTP/1.1 (plain and TLS): a hit, the origin asked once.
    let http = crate::common::client();
    let plain = http
        .get(format!("{}/q", cdn.data("edge-0")))
        .header("host", "www.outpost.test")
        .send()
        .await
        .unwrap();
    assert!(
        plain.headers()["cache-status"]
            .to_str()
            .unwrap()
            .contains("edge-0; hit")
    );
    assert_eq!(origin.hits(), 1);

    // HTTPS over TCP advertises HTTP/3 on the same port.
    let config = crate::tls::client_config(&state.path().join("ca.pem"), &[b"http/1.1"]);
    let mut stream = crate::tls::connect(&https, "www.outpost.test", config)
        .await
        .unwrap();
    let answer = crate::tls::http1(&mut stream, "/q")
        .await
        .to_ascii_lowercase();
    assert!(
        answer.contains(&format!("alt-svc: h3=\":{}\"; ma=86400", addr.port())),
        "{answer}"
    );

    // Garbage datagrams and a truncated QUIC Initial: no crash, the edge serves on.
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut initial = vec![0xc0, 0x00, 0x00, 0x00, 0x01, 0x08];
    initial.extend_from_slice(&[7; 8]);
    for datagram in [vec![0u8; 1], vec![0xff; 1200], initial, vec![0x40; 30]] {
        socket.send_to(&datagram, addr).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _, _) = get(&endpoint, addr, "https://www.outpost.test/q").await;
    assert_eq!(status, 200);

    // Client requests by protocol: three over HTTP/3, two over HTTP/1.1 (plain and TLS).
    let metrics = cdn.metrics("edge-0").await;
    for line in [
        "outpost_client_requests_total{node=\"edge-0\",role=\"edge\",protocol=\"h3\"} 3",
        "outpost_client_requests_total{node=\"edge-0\",role=\"edge\",protocol=\"http/1.1\"} 2",
        "outpost_client_requests_total{node=\"edge-0\",role=\"edge\",protocol=\"h2\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

#[tokio::test]
async fn esi_and_workers_run_over_http3_and_early_data_is_never_taken() {
    let state = tempfile::tempdir().unwrap();
    let toml = format!(
        "[admin]\ntoken = \"t\"\n[tls]\nstate_dir = \"{}\"\n[cache]\ndisk_mib = 0\n\
         [origin]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [[edges]]\nname = \"edge-0\"\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\n",
        state.path().display()
    );
    let cdn = Outpost::up(&toml, 2);
    let addr: SocketAddr = cdn.https("edge-0").parse().unwrap();
    let endpoint = client(&state.path().join("ca.pem"));
    // The demo's ESI page, assembled at the edge.
    let (status, _, body) = get(&endpoint, addr, "https://www.outpost.test/esi/").await;
    let page = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{page}");
    assert!(!page.contains("<esi:") && page.contains("<html"), "{page}");
    // A worker on its route.
    let hello = crate::workers::example("hello");
    let (ok, said) = crate::common::admin_command(
        &[
            "workers",
            "deploy",
            &hello,
            "--name",
            "hello",
            "--route",
            "hello.test/*",
        ],
        "t",
        &[cdn.admin("edge-0")],
    );
    assert!(ok, "{said}");
    let (status, _, body) = get(&endpoint, addr, "https://hello.test/").await;
    assert_eq!(
        (status, String::from_utf8_lossy(&body).as_ref()),
        (200, "Hello from the edge edge-0!\n")
    );
    // 0-RTT is off: after a full handshake the client holds a ticket, and it still may not
    // send anything before the handshake completes (so nothing can be replayed).
    let connecting = endpoint.connect(addr, "www.outpost.test").unwrap();
    assert!(
        connecting.into_0rtt().is_err(),
        "the edge accepted early data"
    );
}

#[tokio::test]
async fn chromium_loads_the_demo_page_and_its_assets_over_http3() {
    let _heavy = crate::common::HEAVY.lock().await;
    let root = env!("CARGO_MANIFEST_DIR");
    let state = tempfile::tempdir().unwrap();
    let toml = format!(
        "[admin]\ntoken = \"t\"\n[tls]\nstate_dir = \"{}\"\n[cache]\ndisk_mib = 0\n\
         [origin]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [[edges]]\nname = \"edge-0\"\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\n",
        state.path().display()
    );
    let cdn = Outpost::up(&toml, 2);
    let port = cdn.https("edge-0").rsplit(':').next().unwrap().to_owned();
    // The edge certificate's key, as Chromium names a certificate it is told to trust.
    let spki = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64",
            state.path().join("edge.pem").display()
        ))
        .output()
        .expect("openssl");
    let spki = String::from_utf8(spki.stdout).unwrap().trim().to_owned();
    assert_eq!(spki.len(), 44, "a base64 SHA-256");
    let origin = format!("www.outpost.test:{port}");
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("node")
            .arg(format!("{root}/tests/player/h3.mjs"))
            .args([&format!("https://{origin}/"), &origin, &spki])
            .output(),
    )
    .await
    .expect("the browser finished in time")
    .expect("node runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(seen["status"], 200, "{seen}");
    assert_eq!(seen["errors"], serde_json::json!([]), "{seen}");
    let protocols = seen["protocols"].as_array().unwrap();
    assert!(protocols.len() >= 3, "the page and its assets: {seen}");
    for entry in protocols {
        assert_eq!(entry[1], "h3", "{entry} over HTTP/3: {seen}");
    }
}

#[tokio::test]
async fn http3_through_the_anycast_address_moves_off_a_withdrawn_edge() {
    let origin =
        TestOrigin::start(|_, _| Reply::ok(&[("cache-control", "max-age=60")], "anycast")).await;
    let state = tempfile::tempdir().unwrap();
    let health = "interval_ms = 200\ntimeout_ms = 200\nrise = 2\nfall = 2";
    let toml = format!(
        "[admin]\ntoken = \"t\"\n[tls]\nstate_dir = \"{}\"\n[origin]\nurl = \"{}\"\n\
         [[edges]]\nname = \"edge-ams\"\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\nlocation = [52.4, 4.9]\n\
         [[edges]]\nname = \"edge-nyc\"\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\nlocation = [40.7, -74.0]\n\
         [anycast]\naddress = \"127.0.0.1\"\nhttp_port = 0\nhttps_port = 0\nhold_down_ms = 0\n[anycast.health]\n{health}\n",
        state.path().display(),
        origin.url
    );
    let cdn = Outpost::up(&toml, 3);
    let anycast: SocketAddr = cdn.https("anycast").parse().unwrap();
    let endpoint = client(&state.path().join("ca.pem"));
    let served_by = |headers: &http::HeaderMap| {
        let status = headers["cache-status"].to_str().unwrap().to_owned();
        ["edge-ams", "edge-nyc"]
            .into_iter()
            .find(|edge| status.contains(edge))
            .unwrap_or_else(|| panic!("{status}"))
    };
    let (status, headers, body) = get(&endpoint, anycast, "https://www.outpost.test/a").await;
    assert_eq!((status, body.as_slice()), (200, &b"anycast"[..]));
    let first = served_by(&headers);
    let other = if first == "edge-ams" {
        "edge-nyc"
    } else {
        "edge-ams"
    };
    // Drain the edge that answered: the router withdraws it, and new flows reach the other.
    let drained = crate::common::client()
        .post(format!("{}/drain", cdn.admin(first)))
        .bearer_auth("t")
        .send()
        .await
        .unwrap();
    assert_eq!(drained.status(), 200);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    for _ in 0..5 {
        let (status, headers, _) = get(&endpoint, anycast, "https://www.outpost.test/a").await;
        assert_eq!(status, 200);
        assert_eq!(
            served_by(&headers),
            other,
            "a new flow after the withdrawal"
        );
    }
}

/// A UDP relay in front of a QUIC listener, as a network path an attacker can see: each client
/// address gets a socket of its own towards the target; the relay keeps every datagram clients
/// sent (for a replay) and counts the Retry packets the target sent back.
struct Relay {
    addr: SocketAddr,
    sent: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    retries: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A QUIC version 1 Retry packet: long header, type 3 (RFC 9000 section 17.2.5).
fn is_retry(packet: &[u8]) -> bool {
    packet.len() > 5 && packet[0] & 0xf0 == 0xf0 && packet[1..5] == [0, 0, 0, 1]
}

/// A recording relay in front of `target`; `delay` holds each client-to-edge datagram that
/// long (a slow uplink), so that the edge reads early data well before the client's handshake
/// can complete.
async fn relay(target: SocketAddr, delay: Duration) -> Relay {
    use std::collections::HashMap;
    use std::sync::atomic::Ordering;
    let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = front.local_addr().unwrap();
    let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
    let retries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (kept, counted) = (sent.clone(), retries.clone());
    let task = tokio::spawn(async move {
        let mut paths: HashMap<SocketAddr, Arc<tokio::net::UdpSocket>> = HashMap::new();
        let mut buffer = vec![0u8; 65536];
        let mut backs = tokio::task::JoinSet::new();
        loop {
            let Ok((n, client)) = front.recv_from(&mut buffer).await else {
                return;
            };
            let datagram = buffer[..n].to_vec();
            kept.lock().unwrap().push(datagram.clone());
            let path = match paths.get(&client) {
                Some(path) => path.clone(),
                None => {
                    let path = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
                    path.connect(target).await.unwrap();
                    let (back, front, counted) = (path.clone(), front.clone(), counted.clone());
                    backs.spawn(async move {
                        let mut buffer = vec![0u8; 65536];
                        while let Ok(n) = back.recv(&mut buffer).await {
                            if is_retry(&buffer[..n]) {
                                counted.fetch_add(1, Ordering::SeqCst);
                            }
                            let _ = front.send_to(&buffer[..n], client).await;
                        }
                    });
                    paths.insert(client, path.clone());
                    path
                }
            };
            if delay.is_zero() {
                let _ = path.send(&datagram).await;
            } else {
                backs.spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = path.send(&datagram).await;
                });
            }
        }
    });
    Relay {
        addr,
        sent,
        retries,
        task,
    }
}

#[tokio::test]
async fn quic_limits_streams_header_fields_connections_per_network_and_retry_under_load() {
    let origin = TestOrigin::start(|seen, _| {
        let reply = Reply::ok(&[("cache-control", "no-store")], "ok");
        if seen.target.starts_with("/slow") {
            Reply::Delayed(Duration::from_millis(300), Box::new(reply))
        } else {
            reply
        }
    })
    .await;
    let state = tempfile::tempdir().unwrap();
    // Retry for every client (as under load), two streams and two connections per network.
    let toml = topology(&origin.url, state.path()).replace(
        "[origin]",
        "[[tls.hosts]]\nname = \"quiet.test\"\nhttp3 = false\n\
         [tls.quic]\nmax_streams = 2\nmax_connections_per_network = 2\nretry_above_handshakes = 0\n[origin]",
    );
    let cdn = Outpost::up(&toml, 1);
    let addr: SocketAddr = cdn.https("edge-0").parse().unwrap();
    let endpoint = client(&state.path().join("ca.pem"));

    // Retry: the client must echo the edge's token before the edge keeps state for it; the
    // request goes through all the same.
    let path = relay(addr, Duration::ZERO).await;
    let mut retried = connect(&endpoint, path.addr).await;
    assert_eq!(retried.get("https://www.outpost.test/a").await.0, 200);
    assert!(
        path.retries.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "no Retry packet came back"
    );
    retried.quic.close(0u32.into(), b"done");
    drop(retried);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Two streams per connection: four slow requests at once take two rounds.
    let mut first = connect(&endpoint, addr).await;
    let started = std::time::Instant::now();
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..4 {
        let mut send = first.send.clone();
        requests.spawn(async move {
            let request = http::Request::get(format!("https://www.outpost.test/slow?{i}"))
                .body(())
                .unwrap();
            let mut stream = send.send_request(request).await.unwrap();
            stream.finish().await.unwrap();
            let response = stream.recv_response().await.unwrap();
            while stream.recv_data().await.unwrap().is_some() {}
            response.status().as_u16()
        });
    }
    while let Some(status) = requests.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(590),
        "four 300 ms requests over two streams took {took:?}"
    );

    // Header fields: more than max_headers (100) get 431, as on TCP; a field section past
    // max_header_bytes is refused too; neither reaches the origin.
    let before = origin.hits();
    let mut request = http::Request::get("https://www.outpost.test/many");
    for i in 0..150 {
        request = request.header(format!("x-field-{i}"), "v");
    }
    let mut stream = first
        .send
        .send_request(request.body(()).unwrap())
        .await
        .unwrap();
    stream.finish().await.unwrap();
    assert_eq!(stream.recv_response().await.unwrap().status(), 431);
    let huge = http::Request::get("https://www.outpost.test/huge")
        .header("x-huge", "h".repeat(70 * 1024))
        .body(())
        .unwrap();
    let refused = match first.send.send_request(huge).await {
        Err(_) => true,
        Ok(mut stream) => {
            let _ = stream.finish().await;
            stream
                .recv_response()
                .await
                .map_or(true, |r| r.status() == 431)
        }
    };
    assert!(refused, "a 70 KiB field section was served");
    assert_eq!(origin.hits(), before);

    // Two connections per client network: a third is refused until one closes.
    let second = connect(&endpoint, addr).await;
    let third = endpoint.connect(addr, "www.outpost.test").unwrap().await;
    assert!(
        third.is_err(),
        "a third connection from 127.0.0.0/24 was taken"
    );
    first.quic.close(0u32.into(), b"done");
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = connect(&endpoint, addr).await;
    assert_eq!(again.get("https://www.outpost.test/b").await.0, 200);
    drop(second);

    // A host with HTTP/3 turned off is told to forget it (`Alt-Svc: clear`) over TCP; the
    // others are still offered it.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = crate::tls::client_config(&state.path().join("ca.pem"), &[b"http/1.1"]);
    for (host, wanted) in [
        ("quiet.test", "alt-svc: clear".to_owned()),
        (
            "www.outpost.test",
            format!("alt-svc: h3=\":{}\"", addr.port()),
        ),
    ] {
        let mut stream =
            crate::tls::connect(&cdn.https("edge-0"), "www.outpost.test", config.clone())
                .await
                .unwrap();
        let request = format!("GET /c HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer).await;
        let answer = answer.to_ascii_lowercase();
        assert!(answer.contains(&wanted), "{host}: {answer}");
    }
}

#[tokio::test]
async fn early_data_serves_safe_requests_at_once_and_a_replayed_post_never_reaches_the_origin() {
    let origin = TestOrigin::start(|_, _| Reply::ok(&[("cache-control", "no-store")], "ok")).await;
    let state = tempfile::tempdir().unwrap();
    let toml = topology(&origin.url, state.path())
        .replace("[origin]", "[tls.quic]\nearly_data = true\n[origin]");
    let cdn = Outpost::up(&toml, 1);
    let addr: SocketAddr = cdn.https("edge-0").parse().unwrap();
    let endpoint = client(&state.path().join("ca.pem"));
    // A first connection leaves the client a ticket to resume with.
    let mut warm = connect(&endpoint, addr).await;
    assert_eq!(warm.get("https://www.outpost.test/warm").await.0, 200);
    // Let the ticket arrive, then go.
    tokio::time::sleep(Duration::from_millis(200)).await;
    warm.quic.close(0u32.into(), b"done");
    drop(warm);

    // Resuming through a path an attacker records: a GET and a POST sent in early data.
    // Its uplink is slow: the edge has 200 ms with the early data before the client's Finished
    // can arrive, however busy the machine.
    let path = relay(addr, Duration::from_millis(200)).await;
    let connecting = endpoint.connect(path.addr, "www.outpost.test").unwrap();
    let (quic, _accepted) = connecting
        .into_0rtt()
        .unwrap_or_else(|_| panic!("the edge offered no 0-RTT"));
    let (mut driver, mut send) = h3::client::new(h3_quinn::Connection::new(quic.clone()))
        .await
        .unwrap();
    let driving = tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    let mut get = send
        .send_request(
            http::Request::get("https://www.outpost.test/early")
                .body(())
                .unwrap(),
        )
        .await
        .unwrap();
    get.finish().await.unwrap();
    let mut post = send
        .send_request(
            http::Request::post("https://www.outpost.test/order")
                .body(())
                .unwrap(),
        )
        .await
        .unwrap();
    post.send_data(bytes::Bytes::from_static(b"one order"))
        .await
        .unwrap();
    post.finish().await.unwrap();
    assert_eq!(get.recv_response().await.unwrap().status(), 200);
    assert_eq!(post.recv_response().await.unwrap().status(), 200);
    quic.close(0u32.into(), b"done");
    driving.abort();
    drop(send);

    let seen = origin.seen();
    let early = seen
        .iter()
        .find(|s| s.target == "/early")
        .expect("GET /early");
    assert_eq!(
        early.header("early-data"),
        Some("1"),
        "the GET did not come in early data, so nothing here was tested"
    );
    let order = seen
        .iter()
        .find(|s| s.target == "/order")
        .expect("POST /order");
    assert_eq!(
        order.header("early-data"),
        None,
        "the POST was served before the handshake completed"
    );

    // The attacker replays everything the client sent, from an address of its own.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let replay = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let recorded = path.sent.lock().unwrap().clone();
    for datagram in &recorded {
        replay.send_to(datagram, addr).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let orders = origin
        .seen()
        .iter()
        .filter(|s| s.method == "POST" && s.target == "/order")
        .count();
    assert_eq!(orders, 1, "the replayed POST reached the origin");
    // The edge serves on.
    assert_eq!(get_once(&endpoint, addr).await, 200);
}

async fn get_once(endpoint: &quinn::Endpoint, addr: SocketAddr) -> u16 {
    get(endpoint, addr, "https://www.outpost.test/after")
        .await
        .0
}
