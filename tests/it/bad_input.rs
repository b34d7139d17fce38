//! What a peer can send that a node must refuse with a clear 4xx while it keeps serving.

use std::time::Duration;

use crate::common::{Outpost, Reply, TestOrigin, client, raw, status_line, topology};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn malformed_requests_get_4xx_and_the_node_keeps_serving() {
    let origin =
        TestOrigin::start(|_, _| Reply::ok(&[("cache-control", "max-age=60")], "fine")).await;
    let cdn = Outpost::up(
        &topology(
            &origin.url,
            0,
            1,
            "[limits]\nmax_headers = 20\nmax_header_bytes = 8192\nmax_body_bytes = 1000\nheader_read_timeout_ms = 500\n",
        ),
        1,
    );
    let edge = cdn.data("edge-0").to_owned();
    let many_headers: String = (0..40).map(|i| format!("x-h{i}: v\r\n")).collect();
    let huge_header = format!("x-big: {}\r\n", "a".repeat(20_000));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("garbage request line", b"HELLO\r\n\r\n".to_vec(), "400"),
        (
            "bad version",
            b"GET / HTTP/9.9\r\nhost: a\r\n\r\n".to_vec(),
            "400",
        ),
        (
            "space in header name",
            b"GET / HTTP/1.1\r\nhost: a\r\nbad header: x\r\n\r\n".to_vec(),
            "400",
        ),
        (
            "two different content-lengths",
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd"
                .to_vec(),
            "400",
        ),
        (
            "content-length and transfer-encoding (smuggling)",
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            "400",
        ),
        (
            "transfer-encoding before content-length (smuggling)",
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n0\r\n\r\n".to_vec(),
            "400",
        ),
        (
            "transfer-encoding that is not chunked",
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip\r\n\r\n".to_vec(),
            "400",
        ),
        (
            "too many headers",
            format!("GET / HTTP/1.1\r\nhost: a\r\n{many_headers}\r\n").into_bytes(),
            "431",
        ),
        (
            "oversized header",
            format!("GET / HTTP/1.1\r\nhost: a\r\n{huge_header}\r\n").into_bytes(),
            "431",
        ),
        (
            "unknown method",
            b"BREW /pot HTTP/1.1\r\nhost: a\r\n\r\n".to_vec(),
            "405",
        ),
        ("no host", b"GET / HTTP/1.1\r\n\r\n".to_vec(), "400"),
        (
            "host with a path (key poisoning)",
            b"GET /b HTTP/1.1\r\nhost: site.test/a\r\n\r\n".to_vec(),
            "400",
        ),
        (
            "body over the limit",
            format!(
                "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5000\r\n\r\n{}",
                "x".repeat(5000)
            )
            .into_bytes(),
            "413",
        ),
    ];
    for (what, request, expected) in cases {
        let answer = raw(&edge, &request).await;
        assert!(
            status_line(&answer).contains(expected),
            "{what}: expected {expected}, got {:?}",
            status_line(&answer)
        );
    }
    // Both Content-Length and Transfer-Encoding (RFC 9112 section 6.1): refused with 400 and
    // the connection closed, also behind a good request on the same connection, so nothing
    // can be smuggled behind it and none of it reaches the origin.
    let smuggle = b"GET /before HTTP/1.1\r\nhost: a\r\n\r\nPOST /both HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: a\r\n\r\n";
    let answer = raw(&edge, smuggle).await;
    let statuses: Vec<&str> = answer
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| &answer[at + 9..at + 12])
        .collect();
    assert_eq!(
        statuses,
        ["200", "400"],
        "then the connection closed: {answer}"
    );
    assert!(
        origin
            .seen()
            .iter()
            .all(|s| s.target != "/smuggled" && s.target != "/both")
    );

    // A client that never finishes its headers is cut off (slowloris).
    let mut slow = TcpStream::connect(edge.trim_start_matches("http://"))
        .await
        .unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nhost: a\r\n")
        .await
        .unwrap();
    let mut buffer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buffer)).await;
    assert!(closed.is_ok(), "the stalled connection must be closed");

    // And after all that, the node still serves.
    let response = client().get(format!("{edge}/ok")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "fine");
}

#[tokio::test]
async fn the_origin_refuses_path_traversal_over_a_real_socket() {
    let outpost = Outpost::spawn(
        &[
            "origin",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ],
        1,
    );
    let origin = outpost.data("origin").to_owned();
    for path in [
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/assets/%2e%2e/%2e%2e/Cargo.toml",
        "/..%2fCargo.toml",
        "/%5c..%5cCargo.toml",
    ] {
        let answer = raw(
            &origin,
            format!("GET {path} HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        let status = status_line(&answer);
        assert!(
            status.contains("403") || status.contains("404") || status.contains("400"),
            "{path}: {status}"
        );
        assert!(
            !answer.contains("[workspace]"),
            "{path} leaked a file outside the root"
        );
    }
    let ok = client()
        .get(format!("{origin}/robots.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}
