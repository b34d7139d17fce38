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
