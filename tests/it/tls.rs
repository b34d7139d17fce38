//! TLS at the edge, driven by real TLS clients (rustls): HTTP/1.1 and HTTP/2 by ALPN, SNI
//! choosing the certificate, resumption, reload while an old connection keeps working, and
//! what a misbehaving client gets.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{Outpost, Reply, TestOrigin, get_text};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub(crate) fn client_config(ca: &Path, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in outpost_certs::load_certificates(ca).unwrap() {
        roots.add(cert).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

pub(crate) async fn connect(
    addr: &str,
    sni: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(config)
        .connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp)
        .await
}

/// Sends one HTTP/1.1 request on `stream` (kept open) and returns the response head and body.
pub(crate) async fn http1(stream: &mut TlsStream<TcpStream>, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nhost: www.outpost.test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .unwrap()
            .unwrap();
        response.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&response);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= length {
                return text.into_owned();
            }
        }
        if n == 0 {
            return text.into_owned();
        }
    }
}

fn leaf_names(stream: &TlsStream<TcpStream>) -> String {
    let cert = &stream.get_ref().1.peer_certificates().unwrap()[0];
    // The SAN strings are visible in the DER; enough to tell certificates apart.
    String::from_utf8_lossy(cert.as_ref()).into_owned()
}

fn edge_topology(origin: &str, state: &Path, tls: &str) -> String {
    format!(
        "[admin]\ntoken = \"t\"\n[tls]\nstate_dir = \"{}\"\nhandshake_timeout_ms = 500\nreload_check_ms = 100\n{tls}\n\
         [origin]\nurl = \"{origin}\"\n\
         [[edges]]\nname = \"edge-0\"\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\n",
        state.display()
    )
}

#[tokio::test]
async fn https_serves_http1_and_http2_by_alpn_and_resumes_sessions() {
    let origin =
        TestOrigin::start(|_, _| Reply::ok(&[("cache-control", "max-age=60")], "secure")).await;
    let state = tempfile::tempdir().unwrap();
    let cdn = Outpost::up(&edge_topology(&origin.url, state.path(), ""), 1);
    let addr = cdn.https("edge-0");
    let ca = state.path().join("ca.pem");
    assert!(ca.exists(), "the local CA is created on first start");

    let h1 = client_config(&ca, &[b"http/1.1"]);
    let mut stream = connect(&addr, "www.outpost.test", h1.clone())
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let response = http1(&mut stream, "/page").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("secure"));

    // The same client config remembers the session: the second handshake resumes.
    let again = connect(&addr, "www.outpost.test", h1.clone())
        .await
        .unwrap();
    assert_eq!(
        again.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );

    // HTTP/2 when the client offers h2.
    let h2 = client_config(&ca, &[b"h2", b"http/1.1"]);
    let stream = connect(&addr, "www.outpost.test", h2).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut sender = crate::common::http2(stream).await;
    let request = http::Request::get("https://www.outpost.test/page")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let status = response.headers()["cache-status"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(status.contains("edge-0; hit"), "{status}");
    assert_eq!(origin.hits(), 1);
    // The origin learns the client came over HTTPS.
    assert!(
        origin.seen()[0]
            .header("forwarded")
            .unwrap()
            .contains("proto=https")
    );
}

#[tokio::test]
async fn sni_picks_the_certificate_and_unknown_names_can_be_refused() {
    let origin = TestOrigin::start(|_, _| Reply::ok(&[], "x")).await;
    let state = tempfile::tempdir().unwrap();
    let ca = outpost_certs::LocalCa::load_or_create(state.path()).unwrap();
    let a = ca
        .ensure_server_cert("a", &["alpha.test".to_owned()])
        .unwrap();
    let b = ca
        .ensure_server_cert("b", &["*.beta.test".to_owned()])
        .unwrap();
    let tls = format!(
        "unknown_names = \"refuse\"\n\
         [[tls.certificates]]\nnames = [\"alpha.test\"]\ncert = \"{}\"\nkey = \"{}\"\n\
         [[tls.certificates]]\nnames = [\"*.beta.test\"]\ncert = \"{}\"\nkey = \"{}\"\n",
        a.cert.display(),
        a.key.display(),
        b.cert.display(),
        b.key.display()
    );
    let cdn = Outpost::up(&edge_topology(&origin.url, state.path(), &tls), 1);
    let addr = cdn.https("edge-0");
    let config = client_config(&ca.ca_cert_path(), &[b"http/1.1"]);
    let alpha = connect(&addr, "alpha.test", config.clone()).await.unwrap();
    assert!(leaf_names(&alpha).contains("alpha.test"));
    let beta = connect(&addr, "www.beta.test", config.clone())
        .await
        .unwrap();
    assert!(leaf_names(&beta).contains("beta.test"));
    // A wildcard covers one label only, and unknown names are refused cleanly.
    assert!(
        connect(&addr, "a.b.beta.test", config.clone())
            .await
            .is_err()
    );
    assert!(connect(&addr, "unknown.test", config).await.is_err());
    // The node keeps serving.
    assert!(
        connect(&addr, "alpha.test", client_config(&ca.ca_cert_path(), &[]))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn certificates_reload_without_dropping_open_connections_and_bad_files_keep_the_old_one() {
    let origin =
        TestOrigin::start(|_, n| Reply::ok(&[("cache-control", "no-store")], format!("n{n}")))
            .await;
    let state = tempfile::tempdir().unwrap();
    let (ca, first, tls) = own_certificate(state.path());
    let cdn = Outpost::up_process(&edge_topology(&origin.url, state.path(), &tls), 1);
    let addr = cdn.https("edge-0");
    let config = client_config(&ca.ca_cert_path(), &[b"http/1.1"]);
    let mut old = connect(&addr, "www.outpost.test", config.clone())
        .await
        .unwrap();
    let old_cert = old.get_ref().1.peer_certificates().unwrap()[0].clone();
    assert!(http1(&mut old, "/1").await.starts_with("HTTP/1.1 200"));

    // Garbage in place of the certificate: the reload fails, the old certificate stays.
    let pem = std::fs::read(&first.cert).unwrap();
    std::fs::write(&first.cert, "garbage").unwrap();
    wait_for_log(&cdn, "certificate reload failed").await;
    let during = connect(&addr, "www.outpost.test", config.clone())
        .await
        .unwrap();
    assert_eq!(during.get_ref().1.peer_certificates().unwrap()[0], old_cert);
    std::fs::write(&first.cert, pem).unwrap();

    // A new certificate for the same name replaces it for new connections.
    let renewed = ca
        .ensure_server_cert("renewed", &["www.outpost.test".to_owned()])
        .unwrap();
    std::fs::copy(&renewed.key, &first.key).unwrap();
    std::fs::copy(&renewed.cert, &first.cert).unwrap();
    let swapped = a_new_certificate_comes(&addr, &ca, &old_cert).await;
    assert!(swapped, "new connections get the new certificate");
    // The connection opened before the reload still works.
    assert!(http1(&mut old, "/2").await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn sighup_reloads_certificates_that_no_file_check_would_see_yet() {
    let origin = TestOrigin::start(|_, _| Reply::ok(&[("cache-control", "no-store")], "ok")).await;
    let state = tempfile::tempdir().unwrap();
    let (ca, first, tls) = own_certificate(state.path());
    // File checks once an hour: only the signal can make this reload happen in the test.
    let toml = edge_topology(&origin.url, state.path(), &tls)
        .replace("reload_check_ms = 100", "reload_check_ms = 3600000");
    let cdn = Outpost::up_process(&toml, 1);
    let addr = cdn.https("edge-0");
    let config = client_config(&ca.ca_cert_path(), &[b"http/1.1"]);
    let mut old = connect(&addr, "www.outpost.test", config.clone())
        .await
        .unwrap();
    let old_cert = old.get_ref().1.peer_certificates().unwrap()[0].clone();

    let renewed = ca
        .ensure_server_cert("renewed", &["www.outpost.test".to_owned()])
        .unwrap();
    std::fs::copy(&renewed.key, &first.key).unwrap();
    std::fs::copy(&renewed.cert, &first.cert).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = connect(&addr, "www.outpost.test", config.clone())
        .await
        .unwrap();
    assert_eq!(
        before.get_ref().1.peer_certificates().unwrap()[0],
        old_cert,
        "nothing reloads before the signal"
    );
    cdn.signal("HUP");
    let swapped = a_new_certificate_comes(&addr, &ca, &old_cert).await;
    assert!(swapped, "SIGHUP gives new connections the new certificate");
    assert!(http1(&mut old, "/still").await.starts_with("HTTP/1.1 200"));
}

/// A local CA in `state`, a certificate for www.outpost.test from it, and the config that
/// makes it the edge's own certificate (reloaded like an operator's).
pub(crate) fn own_certificate(
    state: &Path,
) -> (outpost_certs::LocalCa, outpost_certs::CertPaths, String) {
    let ca = outpost_certs::LocalCa::load_or_create(state).unwrap();
    let paths = ca
        .ensure_server_cert("site", &["www.outpost.test".to_owned()])
        .unwrap();
    let tls = format!(
        "[[tls.certificates]]\nnames = [\"www.outpost.test\"]\ncert = \"{}\"\nkey = \"{}\"\n",
        paths.cert.display(),
        paths.key.display()
    );
    (ca, paths, tls)
}

/// Whether new connections to `addr` get a certificate other than `old` within 5 s.
async fn a_new_certificate_comes(
    addr: &str,
    ca: &outpost_certs::LocalCa,
    old: &rustls::pki_types::CertificateDer<'_>,
) -> bool {
    for _ in 0..100 {
        let fresh_config = client_config(&ca.ca_cert_path(), &[b"http/1.1"]);
        if let Ok(new) = connect(addr, "www.outpost.test", fresh_config).await
            && new.get_ref().1.peer_certificates().unwrap()[0] != *old
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn wait_for_log(cdn: &Outpost, needle: &str) {
    for _ in 0..100 {
        if cdn.log().contains(needle) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("log never said {needle:?}:\n{}", cdn.log());
}

#[tokio::test]
async fn plain_http_and_stalled_handshakes_on_the_tls_port_are_cut_off() {
    let origin = TestOrigin::start(|_, _| Reply::ok(&[], "x")).await;
    let state = tempfile::tempdir().unwrap();
    let cdn = Outpost::up(&edge_topology(&origin.url, state.path(), ""), 1);
    let addr = cdn.https("edge-0");
    // Plain HTTP on the TLS port: the connection is closed, nothing is served.
    let mut plain = TcpStream::connect(&addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "closed");
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));
    // A client that stalls mid-handshake is timed out (handshake_timeout_ms = 500).
    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x50])
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut sink = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stalled.read_to_end(&mut sink)).await;
    assert!(
        read.is_ok(),
        "the stalled handshake must be closed by the server"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    // A ClientHello without SNI gets the default certificate.
    let config = client_config(&state.path().join("ca.pem"), &[]);
    let ip = connect(&addr, "127.0.0.1", config).await;
    assert!(
        ip.is_ok(),
        "IP addresses are in the local certificate: {:?}",
        ip.err()
    );
}

#[test]
fn a_missing_or_garbage_certificate_is_a_clear_error_at_start() {
    let state = tempfile::tempdir().unwrap();
    let garbage = state.path().join("garbage.pem");
    std::fs::write(&garbage, "not pem").unwrap();
    for (cert, expected) in [
        (state.path().join("missing.pem"), "missing.pem"),
        (garbage, "garbage.pem"),
    ] {
        let tls = format!(
            "[[tls.certificates]]\nnames = [\"x.test\"]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            cert.display()
        );
        let path = state.path().join("c.toml");
        std::fs::write(
            &path,
            edge_topology("http://127.0.0.1:1", state.path(), &tls),
        )
        .unwrap();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_outpost"))
            .args(["up", "--config", path.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{stderr}");
    }
    // A key that does not belong to the certificate.
    let ca = outpost_certs::LocalCa::load_or_create(state.path()).unwrap();
    let one = ca
        .ensure_server_cert("one", &["x.test".to_owned()])
        .unwrap();
    let two = ca
        .ensure_server_cert("two", &["x.test".to_owned()])
        .unwrap();
    let tls = format!(
        "[[tls.certificates]]\nnames = [\"x.test\"]\ncert = \"{}\"\nkey = \"{}\"\n",
        one.cert.display(),
        two.key.display()
    );
    let path = state.path().join("c.toml");
    std::fs::write(
        &path,
        edge_topology("http://127.0.0.1:1", state.path(), &tls),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(["up", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("two.key") && stderr.contains("does not fit"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_plain_port_speaks_http2_to_clients_with_prior_knowledge() {
    let origin =
        TestOrigin::start(|_, _| Reply::ok(&[("cache-control", "max-age=60")], "h2c")).await;
    let cdn = Outpost::up(&crate::common::topology(&origin.url, 0, 1, ""), 1);
    let tcp = TcpStream::connect(cdn.data("edge-0").trim_start_matches("http://"))
        .await
        .unwrap();
    let mut sender = crate::common::http2(tcp).await;
    let request = http::Request::get("http://www.outpost.test/x")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_shielded_origin_answers_the_cdn_only() {
    let state = tempfile::tempdir().unwrap();
    let config = format!(
        "[admin]\ntoken = \"t\"\n[tls]\nstate_dir = \"{}\"\n\
         [origin]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nshielded = true\n\
         [[parents]]\nname = \"parent-0\"\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [[edges]]\nname = \"edge-0\"\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n",
        state.path().display()
    );
    let cdn = Outpost::up(&config, 3);
    let origin = cdn.data("origin").to_owned();
    assert!(origin.starts_with("https://"), "{origin}");
    let origin_addr = origin.trim_start_matches("https://").to_owned();

    // Through the CDN: the parent authenticates with its client certificate.
    let through = crate::common::client()
        .get(format!("{}/about.html", cdn.data("edge-0")))
        .send()
        .await
        .unwrap();
    assert_eq!(through.status(), 200);
    assert!(crate::common::cache_status(&through).starts_with("parent-0; fwd=uri-miss"));

    // Straight at the origin: plain HTTP gets nothing, TLS without a client certificate is
    // refused, even with the right CA.
    let mut plain = TcpStream::connect(&origin_addr).await.unwrap();
    plain
        .write_all(b"GET /about.html HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));
    let ca = state.path().join("ca.pem");
    let refused = async {
        let mut stream = connect(
            &origin_addr,
            "localhost",
            client_config(&ca, &[b"http/1.1"]),
        )
        .await?;
        stream
            .write_all(b"GET /about.html HTTP/1.1\r\nhost: a\r\n\r\n")
            .await?;
        let mut buffer = Vec::new();
        stream.read_to_end(&mut buffer).await?;
        Ok::<_, std::io::Error>(buffer)
    };
    match tokio::time::timeout(Duration::from_secs(5), refused)
        .await
        .unwrap()
    {
        Err(_) => {}
        Ok(bytes) => assert!(
            !String::from_utf8_lossy(&bytes).contains("200 OK"),
            "served without a client certificate"
        ),
    }
    // The CA `outpost up` made vouches only for the topology's names: a certificate it signs
    // for any other site is refused by clients that trust it.
    use rustls::client::danger::ServerCertVerifier;
    let ca = outpost_certs::LocalCa::load_or_create(state.path()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(
            outpost_certs::load_certificates(&ca.ca_cert_path())
                .unwrap()
                .remove(0),
        )
        .unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    let forged = ca
        .ensure_server_cert("forged", &["bank.example".to_owned()])
        .unwrap();
    let leaf = outpost_certs::load_certificates(&forged.cert)
        .unwrap()
        .remove(0);
    let refused = verifier.verify_server_cert(
        &leaf,
        &[],
        &ServerName::try_from("bank.example").unwrap(),
        &[],
        rustls::pki_types::UnixTime::now(),
    );
    assert!(
        refused.is_err(),
        "a certificate for bank.example must not verify"
    );
}

#[tokio::test]
async fn hosts_can_ask_for_redirects_to_https_and_hsts() {
    let origin = TestOrigin::start(|_, _| Reply::ok(&[("cache-control", "max-age=60")], "x")).await;
    let state = tempfile::tempdir().unwrap();
    let tls = "[[tls.hosts]]\nname = \"www.outpost.test\"\nredirect_to_https = true\nhsts_max_age_secs = 63072000\nhsts_include_subdomains = true\n";
    let cdn = Outpost::up(&edge_topology(&origin.url, state.path(), tls), 1);
    let addr = cdn.https("edge-0");
    let port = addr.rsplit_once(':').unwrap().1.to_owned();
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let redirected = plain
        .get(format!("{}/page?q=1", cdn.data("edge-0")))
        .header("host", "www.outpost.test")
        .send()
        .await
        .unwrap();
    assert_eq!(redirected.status(), 308);
    assert_eq!(
        redirected.headers()["location"],
        format!("https://www.outpost.test:{port}/page?q=1")
    );
    // Other hosts are served over plain HTTP as before.
    let other = plain
        .get(format!("{}/page", cdn.data("edge-0")))
        .header("host", "other.test")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    assert!(!other.headers().contains_key("strict-transport-security"));
    // Over HTTPS the host gets HSTS.
    let mut stream = connect(
        &addr,
        "www.outpost.test",
        client_config(&state.path().join("ca.pem"), &[b"http/1.1"]),
    )
    .await
    .unwrap();
    let response = http1(&mut stream, "/page").await;
    assert!(
        response
            .to_ascii_lowercase()
            .contains("strict-transport-security: max-age=63072000; includesubdomains"),
        "{response}"
    );
}

#[tokio::test]
async fn admin_listeners_serve_tls_and_purge_goes_over_it() {
    let origin =
        TestOrigin::start(|_, n| Reply::ok(&[("cache-control", "max-age=600")], format!("n{n}")))
            .await;
    let state = tempfile::tempdir().unwrap();
    let config = edge_topology(&origin.url, state.path(), "")
        .replace("token = \"t\"\n", "token = \"secret-token\"\ntls = true\n");
    let cdn = Outpost::up_process(&config, 1);
    let admin = cdn.admin("edge-0").to_owned();
    assert!(admin.starts_with("https://"), "{admin}");
    let http = crate::common::client();
    get_text(&http, format!("{}/x", cdn.data("edge-0"))).await;
    // Plain HTTP to the admin port gets no answer.
    assert!(
        http.get(admin.replace("https://", "http://") + "/health")
            .send()
            .await
            .is_err()
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args([
            "purge",
            "--admin",
            &admin,
            "--cacert",
            state.path().join("ca.pem").to_str().unwrap(),
            "--token",
            "secret-token",
            "/x",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("edge-0: purged 1"));
    assert!(
        !cdn.log().contains("secret-token"),
        "the token is never logged"
    );
    assert_eq!(
        get_text(&http, format!("{}/x", cdn.data("edge-0"))).await,
        "n2"
    );
}
