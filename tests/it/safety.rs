//! Safety of the data path, tried as an attacker would: raw sockets on the client side, and an
//! origin that frames requests by Content-Length the way nginx, Go and Node do (not hyper).
//! Each test is named after what it guards.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{
    Outpost, Reply, Seen, TestOrigin, cache_status, client, counter, raw, status_line, topology,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

const FAST: &str = "[cache]\nfirst_byte_timeout_ms = 2000\nbody_idle_timeout_ms = 2000\nconnect_timeout_ms = 500\n";

fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = answer.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// An origin that answers each path with the path itself, cacheable for a minute.
async fn echo_origin() -> TestOrigin {
    TestOrigin::start(|seen: &Seen, _| {
        Reply::ok(&[("cache-control", "max-age=60")], seen.target.clone())
    })
    .await
}

fn one_edge(origin: &TestOrigin, extra: &str) -> Outpost {
    Outpost::up(&topology(&origin.url, 0, 1, &format!("{FAST}{extra}")), 1)
}

#[tokio::test]
async fn body_less_upstream_requests_carry_no_framing_headers() {
    let origin = echo_origin().await;
    let cdn = one_edge(&origin, "");
    let edge = cdn.data("edge-0");
    let cases: [(&str, &[u8]); 3] = [
        (
            "/cl",
            b"GET /cl HTTP/1.1\r\nhost: a.test\r\ncontent-length: 10\r\nconnection: close\r\n\r\n0123456789",
        ),
        (
            "/te",
            b"GET /te HTTP/1.1\r\nhost: a.test\r\ntransfer-encoding: chunked\r\ntrailer: x-t\r\nconnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "/expect",
            b"GET /expect HTTP/1.1\r\nhost: a.test\r\nexpect: 100-continue\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbody",
        ),
    ];
    for (path, request) in cases {
        let answer = raw(edge, request).await;
        assert!(status_line(&answer).contains("200"), "{path}: {answer}");
        assert!(
            answer.ends_with(path),
            "{path}: the origin answered {answer}"
        );
    }
    // The upstream saw each GET as the body-less request it is, framed by nothing, and the
    // pooled connection stayed in step: the next request is answered for itself.
    let follow = raw(
        edge,
        b"GET /next HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(body(&follow), "/next");
    for seen in origin.seen() {
        for name in ["content-length", "transfer-encoding", "expect", "trailer"] {
            assert_eq!(seen.header(name), None, "{} carried {name}", seen.target);
        }
        assert!(seen.body.is_empty());
    }
    assert_eq!(origin.hits(), 4);
}

#[tokio::test]
async fn the_upstream_sees_exactly_the_authority_of_the_key() {
    let origin = TestOrigin::start(|seen: &Seen, _| {
        let host = seen.header("host").unwrap_or("none").to_owned();
        Reply::ok(&[("cache-control", "max-age=60")], format!("for {host}"))
    })
    .await;
    let cdn = one_edge(&origin, "");
    let edge = cdn.data("edge-0");

    // Absolute form: keyed by its authority, and fetched for it.
    let answer = raw(
        edge,
        b"GET http://a.test/y HTTP/1.1\r\nhost: b.test\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(body(&answer), "for a.test");
    let answer = raw(
        edge,
        b"GET /y HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(body(&answer), "for a.test");
    assert!(header(&answer, "cache-status").unwrap().contains("hit"));
    let answer = raw(
        edge,
        b"GET /y HTTP/1.1\r\nhost: b.test\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(body(&answer), "for b.test");

    // Connection naming Host cannot strip it after keying: the request has no host at all.
    let answer = raw(
        edge,
        b"GET /z HTTP/1.1\r\nhost: a.test\r\nconnection: close, host\r\n\r\n",
    )
    .await;
    assert!(status_line(&answer).contains("400"), "{answer}");
    // Nor a header a variant depends on: Cookie named in Connection is gone before keying, and
    // never reaches the upstream.
    let answer = raw(
        edge,
        b"GET /c HTTP/1.1\r\nhost: a.test\r\ncookie: s=1\r\nconnection: close, cookie\r\n\r\n",
    )
    .await;
    assert!(status_line(&answer).contains("200"), "{answer}");
    let seen_c = origin
        .seen()
        .into_iter()
        .find(|s| s.target == "/c")
        .unwrap();
    assert_eq!(seen_c.header("cookie"), None);

    // HTTP/2: the :authority wins over a Host header that disagrees.
    let addr = edge.trim_start_matches("http://").to_owned();
    let stream = TcpStream::connect(&addr).await.unwrap();
    let mut sender = crate::common::http2(stream).await;
    let request = http::Request::get("http://h2.test/h2")
        .header("host", "other.test")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    use http_body_util::BodyExt;
    let text = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&text[..], b"for h2.test");
    for seen in origin.seen() {
        let host = seen.header("host").unwrap();
        assert!(
            ["a.test", "b.test", "h2.test"].contains(&host),
            "{}: Host {host}",
            seen.target
        );
    }
}

#[tokio::test]
async fn accept_encoding_goes_upstream_as_the_variant_key_has_it() {
    // An origin that compresses with the best coding it is offered, zstd first, as Chrome's
    // `zstd` would get from a modern server.
    let origin = TestOrigin::start(|seen: &Seen, _| {
        let offered = seen.header("accept-encoding").unwrap_or("").to_owned();
        let coding = ["zstd", "br", "gzip"]
            .into_iter()
            .find(|c| offered.contains(c));
        let mut headers = vec![("cache-control", "max-age=60")];
        if seen.target == "/vary" {
            headers.push(("vary", "Accept-Encoding"));
        }
        if let Some(coding) = coding {
            headers.push(("content-encoding", coding));
        }
        Reply::ok(&headers, coding.unwrap_or("identity"))
    })
    .await;
    let cdn = one_edge(&origin, "");
    let edge = cdn.data("edge-0");
    let get = |path: &str, ae: Option<&str>| {
        let ae = ae
            .map(|v| format!("accept-encoding: {v}\r\n"))
            .unwrap_or_default();
        format!("GET {path} HTTP/1.1\r\nhost: a.test\r\n{ae}connection: close\r\n\r\n")
    };
    let chrome = raw(
        edge,
        get("/vary", Some("gzip, deflate, br, zstd")).as_bytes(),
    )
    .await;
    assert_eq!(header(&chrome, "content-encoding"), Some("br"), "{chrome}");
    let br_only = raw(edge, get("/vary", Some("br")).as_bytes()).await;
    assert_ne!(header(&br_only, "content-encoding"), Some("zstd"));
    let plain = raw(edge, get("/vary", None).as_bytes()).await;
    assert_eq!(header(&plain, "content-encoding"), None, "{plain}");
    assert_eq!(body(&plain), "identity");
    for seen in origin.seen() {
        let offered = seen.header("accept-encoding").unwrap();
        assert!(
            ["br, gzip", "br", "gzip", "identity"].contains(&offered),
            "sent upstream: {offered}"
        );
    }

    // An origin that compresses but forgets Vary: a client that cannot decode the stored
    // coding is not served it from the cache.
    let gzip = raw(edge, get("/novary", Some("gzip")).as_bytes()).await;
    assert_eq!(header(&gzip, "content-encoding"), Some("gzip"));
    let curl = raw(edge, get("/novary", None).as_bytes()).await;
    assert_eq!(header(&curl, "content-encoding"), None, "{curl}");
    assert_eq!(body(&curl), "identity");
}

#[tokio::test]
async fn every_spelling_of_a_url_is_one_object_and_one_purge() {
    let origin = echo_origin().await;
    let cdn = one_edge(&origin, "");
    let edge = cdn.data("edge-0");
    let spellings: [&[u8]; 6] = [
        b"GET /private/a HTTP/1.1\r\nhost: www.outpost.test\r\nconnection: close\r\n\r\n",
        b"GET //private/a HTTP/1.1\r\nhost: www.outpost.test\r\nconnection: close\r\n\r\n",
        b"GET /%70rivate/a HTTP/1.1\r\nhost: www.outpost.test\r\nconnection: close\r\n\r\n",
        b"GET /x/../private/./a HTTP/1.1\r\nhost: www.outpost.test\r\nconnection: close\r\n\r\n",
        b"GET /private/a HTTP/1.1\r\nhost: WWW.outpost.test.\r\nconnection: close\r\n\r\n",
        b"GET /private/a HTTP/1.1\r\nhost: www.outpost.test:8080\r\nconnection: close\r\n\r\n",
    ];
    for (i, request) in spellings.iter().enumerate() {
        let answer = raw(edge, request).await;
        assert_eq!(body(&answer), "/private/a", "spelling {i}: {answer}");
        if i > 0 {
            assert!(
                header(&answer, "cache-status").unwrap().contains("hit"),
                "spelling {i} is the same object: {answer}"
            );
        }
    }
    assert_eq!(origin.hits(), 1);
    assert_eq!(origin.seen()[0].header("host"), Some("www.outpost.test"));

    // A purge of any spelling purges the one object.
    let purge = client()
        .post(format!("{}/purge", cdn.admin("edge-0")))
        .bearer_auth("test-token")
        .body(r#"{"urls": ["http://WWW.Outpost.Test.:8080//x/../private/%61"]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(purge.status(), 200);
    assert!(purge.text().await.unwrap().contains("\"purged\":1"));
    let answer = raw(edge, spellings[0]).await;
    assert!(!header(&answer, "cache-status").unwrap().contains("hit"));

    // Malformed spellings are refused, never guessed at.
    for request in [
        &b"GET /%zz HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nhost: [x\r\nconnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: a.test\r\nhost: b.test\r\nconnection: close\r\n\r\n",
    ] {
        let answer = raw(edge, request).await;
        assert!(status_line(&answer).contains("400"), "{answer}");
    }
}

#[tokio::test]
async fn clients_cannot_send_the_edges_own_headers() {
    let origin = echo_origin().await;
    let cdn = one_edge(&origin, "");
    let answer = raw(
        cdn.data("edge-0"),
        b"GET /who HTTP/1.1\r\nhost: a.test\r\noutpost-client-ip: 10.0.0.1\r\nOutpost-Edge: fake\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(status_line(&answer).contains("200"));
    let seen = &origin.seen()[0];
    assert!(
        seen.headers.iter().all(|(k, _)| !k.starts_with("outpost-")),
        "{:?}",
        seen.headers
    );
}

#[tokio::test]
async fn long_targets_get_414() {
    let origin = echo_origin().await;
    let cdn = one_edge(&origin, "[limits]\nmax_target_bytes = 1024\n");
    let request = format!(
        "GET /{} HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n",
        "a".repeat(2000)
    );
    let answer = raw(cdn.data("edge-0"), request.as_bytes()).await;
    assert!(status_line(&answer).contains("414"), "{answer}");
    assert_eq!(origin.hits(), 0);
}

#[tokio::test]
async fn bad_request_bodies_are_the_clients_fault_and_never_reach_the_upstream() {
    let origin = echo_origin().await;
    let cdn = one_edge(&origin, "");
    let edge = cdn.data("edge-0");
    for (what, request) in [
        (
            "bad chunk size",
            &b"POST /form HTTP/1.1\r\nhost: a.test\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\nzz\r\nmore\r\n0\r\n\r\n"[..],
        ),
        (
            "body shorter than declared",
            b"POST /form HTTP/1.1\r\nhost: a.test\r\ncontent-length: 100\r\n\r\nshort",
        ),
    ] {
        let mut stream = TcpStream::connect(edge.trim_start_matches("http://"))
            .await
            .unwrap();
        stream.write_all(request).await.unwrap();
        if what == "body shorter than declared" {
            // The client gives up half way.
            stream.shutdown().await.unwrap();
        }
        let mut answer = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(8), stream.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        if what == "bad chunk size" {
            assert!(status_line(&answer).contains("400"), "{what}: {answer}");
        } else {
            assert!(!status_line(&answer).contains("502"), "{what}: {answer}");
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(origin.hits(), 0, "{:?}", origin.seen());
    // A good one goes through whole, with its length declared.
    let ok = client()
        .post(format!("{edge}/form"))
        .body("a=1")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let seen = origin.seen().pop().unwrap();
    assert_eq!(seen.body, b"a=1");
    assert_eq!(seen.header("content-length"), Some("3"));
}

#[tokio::test]
async fn an_unsafe_method_invalidates_its_own_key_only() {
    let release = Arc::new(Notify::new());
    let held = release.clone();
    let origin = TestOrigin::start(move |seen: &Seen, _| {
        if seen.method == "GET" && seen.target == "/slow" {
            Reply::Held {
                headers: crate::common::owned(&[("cache-control", "max-age=600")]),
                first: b"slow-".to_vec(),
                release: held.clone(),
                rest: b"body".to_vec(),
            }
        } else {
            Reply::ok(&[("cache-control", "max-age=600")], "ok")
        }
    })
    .await;
    let cdn = one_edge(&origin, "");
    let edge = cdn.data("edge-0");
    let http = client();
    let mut slow = http.get(format!("{edge}/slow")).send().await.unwrap();
    assert_eq!(&slow.chunk().await.unwrap().unwrap()[..], b"slow-");
    // Writes to other URLs while /slow is being filled.
    for _ in 0..3 {
        let post = http
            .post(format!("{edge}/other"))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(post.status(), 200);
    }
    release.notify_waiters();
    while slow.chunk().await.unwrap().is_some() {}
    tokio::time::sleep(Duration::from_millis(100)).await;
    let again = http.get(format!("{edge}/slow")).send().await.unwrap();
    assert!(
        cache_status(&again).contains("hit"),
        "POSTs to /other must not stop /slow from being stored: {}",
        cache_status(&again)
    );
    assert_eq!(again.text().await.unwrap(), "slow-body");
}

#[tokio::test]
async fn headers_a_response_names_in_connection_are_never_stored_or_served() {
    let origin = TestOrigin::start(|_, _| {
        Reply::ok(
            &[
                ("cache-control", "max-age=60"),
                ("connection", "x-upstream-secret"),
                ("x-upstream-secret", "s3cr3t"),
            ],
            "page",
        )
    })
    .await;
    let cdn = one_edge(&origin, "");
    let url = format!("{}/page", cdn.data("edge-0"));
    for _ in 0..2 {
        let response = client().get(&url).send().await.unwrap();
        assert!(!response.headers().contains_key("x-upstream-secret"));
    }
}

#[tokio::test]
async fn a_304_with_other_validators_updates_nothing() {
    let origin = TestOrigin::start(|seen: &Seen, n| {
        if seen.header("if-none-match").is_some() && n == 2 {
            // Claims "not modified" for a different entity.
            Reply::status(
                304,
                &[("cache-control", "max-age=60"), ("etag", "\"v2\"")],
                "",
            )
        } else {
            Reply::ok(
                &[
                    ("cache-control", "max-age=1"),
                    ("etag", &format!("\"v{n}\"")),
                ],
                format!("version {n}"),
            )
        }
    })
    .await;
    let cdn = Outpost::up(
        &topology(
            &origin.url,
            0,
            1,
            &format!("{FAST}stale_if_error_secs = 0\n"),
        ),
        1,
    );
    let url = format!("{}/doc", cdn.data("edge-0"));
    let http = client();
    assert_eq!(
        http.get(&url).send().await.unwrap().text().await.unwrap(),
        "version 1"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let revalidated = http.get(&url).send().await.unwrap();
    assert!(
        cache_status(&revalidated).contains("detail=validator-mismatch"),
        "{}",
        cache_status(&revalidated)
    );
    // Nothing was refreshed for a minute on the strength of that 304: the next request fetches.
    let next = http.get(&url).send().await.unwrap();
    assert!(
        !cache_status(&next).contains("hit"),
        "{}",
        cache_status(&next)
    );
    assert_eq!(next.text().await.unwrap(), "version 3");
}

#[tokio::test]
async fn a_fill_too_large_to_keep_stops_buffering_and_still_serves_its_client() {
    // 3 MiB in 64 KiB chunks with no Content-Length, against a 1 MiB object cap.
    let origin = TestOrigin::start(|_, _| Reply::Chunked {
        headers: crate::common::owned(&[("cache-control", "max-age=600")]),
        chunk: 64 * 1024,
        chunks: 48,
        every: Duration::ZERO,
    })
    .await;
    let cdn = Outpost::up_process(
        &topology(
            &origin.url,
            0,
            1,
            &format!("{FAST}max_object_mib = 1\nfill_buffer_mib = 1\n"),
        ),
        1,
    );
    let url = format!("{}/big", cdn.data("edge-0"));
    let http = client();
    let first = http.get(&url).send().await.unwrap();
    assert_eq!(first.bytes().await.unwrap().len(), 3 * 1024 * 1024);
    // Not stored, and from now on passed straight through.
    let second = http.get(&url).send().await.unwrap();
    assert!(
        !cache_status(&second).contains("; hit"),
        "{}",
        cache_status(&second)
    );
    assert_eq!(second.bytes().await.unwrap().len(), 3 * 1024 * 1024);
    assert!(cdn.log().contains("too large to store"), "{}", cdn.log());
}

#[tokio::test]
async fn a_fill_that_drips_past_its_deadline_is_broken_and_not_stored() {
    // A byte every 300 ms: never idle for the 2 s idle timeout, but 10 s in all.
    let origin = TestOrigin::start(|_, n| {
        if n == 1 {
            Reply::Chunked {
                headers: crate::common::owned(&[("cache-control", "max-age=600")]),
                chunk: 1,
                chunks: 30,
                every: Duration::from_millis(300),
            }
        } else {
            Reply::ok(&[("cache-control", "max-age=600")], "whole")
        }
    })
    .await;
    let cdn = one_edge(&origin, "fill_deadline_secs = 1\n");
    let url = format!("{}/drip", cdn.data("edge-0"));
    let http = client();
    let started = std::time::Instant::now();
    let dripped = http.get(&url).send().await.unwrap();
    assert!(
        dripped.bytes().await.is_err(),
        "the client sees the body break"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let next = http.get(&url).send().await.unwrap();
    assert!(!cache_status(&next).contains("; hit"));
    assert_eq!(next.text().await.unwrap(), "whole");
}

/// Opens a connection to `edge` from `source` (any 127.0.0.0/8 address is ours).
async fn connect_from(edge: std::net::SocketAddr, source: [u8; 4]) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::from((source, 0)))
        .unwrap();
    socket.connect(edge).await.unwrap()
}

/// A connection from `source` that the edge took: it answers a request on it and keeps it.
async fn admitted(edge: std::net::SocketAddr, source: [u8; 4]) -> Result<TcpStream, String> {
    let mut stream = connect_from(edge, source).await;
    let request = b"GET /held HTTP/1.1\r\nhost: a.test\r\n\r\n";
    if let Err(error) = stream.write_all(request).await {
        return Err(error.to_string());
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&answer).ends_with("/held") {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
            other => {
                return Err(format!(
                    "{other:?} after {}",
                    String::from_utf8_lossy(&answer)
                ));
            }
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    if status_line(&answer).contains("200") {
        Ok(stream)
    } else {
        Err(answer.into_owned())
    }
}

/// What a connection from `source` that sends a request at once reads, to its end: a refused
/// one must get its answer, not a reset, although the edge never reads the request.
async fn refusal(edge: std::net::SocketAddr, source: [u8; 4]) -> String {
    let mut stream = connect_from(edge, source).await;
    let _ = stream
        .write_all(b"GET /refused HTTP/1.1\r\nhost: a.test\r\n\r\n")
        .await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    match read {
        Err(_) => panic!("a refused connection was kept open"),
        Ok(Err(error)) => panic!(
            "{error} after {:?}: the answer was lost",
            String::from_utf8_lossy(&answer)
        ),
        Ok(Ok(_)) => String::from_utf8_lossy(&answer).into_owned(),
    }
}

fn refused_count(metrics: &str, reason: &str) -> u64 {
    let series = format!(
        "outpost_connections_refused_total{{node=\"edge-0\",role=\"edge\",reason=\"{reason}\"}}"
    );
    counter(metrics, &series)
}

#[tokio::test]
async fn connections_are_capped_per_client_network_and_in_all() {
    let origin = echo_origin().await;
    let cdn = one_edge(
        &origin,
        // Loopback is trusted by default (the CDN's own hosts); here it is the public.
        "[limits]\nmax_connections = 6\nmax_connections_per_network = 4\ntrusted_networks = []\n",
    );
    let edge: std::net::SocketAddr = cdn
        .data("edge-0")
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let (network_a, network_b) = ([127, 0, 1, 1], [127, 0, 2, 1]);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(admitted(edge, network_a).await.unwrap());
    }
    // Another address of the same /24 is the same client network.
    let answer = refusal(edge, [127, 0, 1, 200]).await;
    assert!(status_line(&answer).contains("503"), "{answer}");
    assert!(
        answer.contains("client network's connection limit"),
        "{answer}"
    );
    // Another network gets what is left of the total.
    for _ in 0..2 {
        held.push(admitted(edge, network_b).await.unwrap());
    }
    let answer = refusal(edge, network_b).await;
    assert!(answer.contains("listener's connection limit"), "{answer}");
    // A connection that ends frees its place: the other network gets it.
    drop(held.remove(0));
    let mut freed = None;
    for _ in 0..50 {
        if let Ok(stream) = admitted(edge, network_b).await {
            freed = Some(stream);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        freed.is_some(),
        "the ended connection's place was never freed"
    );
    // Those held all along are still served, and the admin listener has its own count.
    let first = held.first_mut().unwrap();
    first
        .write_all(b"GET /again HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    first.read_to_end(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer).ends_with("/again"));
    let metrics = cdn.metrics("edge-0").await;
    assert_eq!(refused_count(&metrics, "network_full"), 1, "{metrics}");
    assert!(refused_count(&metrics, "listener_full") >= 1, "{metrics}");
    assert!(metrics.contains("outpost_connections_open"), "{metrics}");
}
