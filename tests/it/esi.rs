//! Edge Side Includes through a real edge and parent, against an origin that frames by
//! Content-Length (not hyper): pages assembled from fragments that keep their own cache
//! lifetimes, streamed in order, fetched in parallel at every depth, with the page's head
//! derived from its parts. The assembly's own rules are tested in `esi/tests/assembly.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{Outpost, Reply, TestOrigin, client, raw, topology};

const ESI: (&str, &str) = ("surrogate-control", "content=\"ESI/1.0\"");

fn esi_page(cache_control: &'static str, body: &str) -> Reply {
    Reply::ok(&[ESI, ("cache-control", cache_control)], body)
}

fn requests_for(origin: &TestOrigin, path: &str) -> usize {
    origin.seen().iter().filter(|s| s.target == path).count()
}

#[tokio::test]
async fn fragments_keep_their_own_lifetimes_through_both_tiers() {
    let origin = TestOrigin::start(|seen, _| match seen.target.as_str() {
        "/page" => esi_page(
            "max-age=3600",
            r#"<h1><esi:include src="/header"/></h1><p><esi:include src="/basket"/></p><esi:vars>hi $(HTTP_COOKIE{name}|'guest')</esi:vars>"#,
        ),
        "/header" => Reply::ok(&[("cache-control", "max-age=86400")], "Outpost"),
        "/basket" => Reply::ok(
            &[("cache-control", "private")],
            format!("{} items", seen.header("cookie").unwrap_or("no")),
        ),
        _ => Reply::status(404, &[], "no"),
    })
    .await;
    let cdn = Outpost::up(&topology(&origin.url, 1, 1, ""), 2);
    let url = format!("{}/page", cdn.data("edge-0"));
    let http = client();
    for cookie in ["name=Ada", "name=Bob"] {
        let response = http
            .get(&url)
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        for name in ["surrogate-control", "surrogate-key", "content-length"] {
            assert!(!response.headers().contains_key(name), "{name}");
        }
        let name = cookie.trim_start_matches("name=");
        assert_eq!(
            response.text().await.unwrap(),
            format!("<h1>Outpost</h1><p>{cookie} items</p>hi {name}")
        );
    }
    assert_eq!(requests_for(&origin, "/page"), 1, "the template is cached");
    assert_eq!(requests_for(&origin, "/header"), 1, "the header is cached");
    assert_eq!(
        requests_for(&origin, "/basket"),
        2,
        "the private basket is not"
    );
    let template = origin
        .seen()
        .into_iter()
        .find(|s| s.target == "/page")
        .unwrap();
    assert_eq!(
        template.header("surrogate-capability"),
        Some("outpost=\"ESI/1.0\""),
        "origins learn the edge does ESI"
    );
}

#[tokio::test]
async fn the_first_bytes_leave_while_a_slow_fragment_is_pending() {
    let origin = TestOrigin::start(|seen, _| match seen.target.as_str() {
        "/page" => esi_page("max-age=60", r#"BEFORE<esi:include src="/slow"/>AFTER"#),
        "/slow" => Reply::Delayed(
            Duration::from_secs(2),
            Box::new(Reply::ok(&[("cache-control", "no-store")], "-slow-")),
        ),
        _ => Reply::status(404, &[], "no"),
    })
    .await;
    let cdn = Outpost::up(&topology(&origin.url, 0, 1, ""), 1);
    let url = format!("{}/page", cdn.data("edge-0"));
    let started = Instant::now();
    let mut response = client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["cache-control"],
        "private, no-cache",
        "the head left before every part was known"
    );
    let first = response.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], b"BEFORE");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the first bytes came before the fragment did"
    );
    let mut rest = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"-slow-AFTER");
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[tokio::test]
async fn includes_at_every_depth_are_fetched_in_parallel() {
    // A template with five fragments, each with five of its own: 31 objects. The origin holds
    // each request until every request of its depth has arrived (1, 5, then 25), so the page is
    // whole only if all includes of a depth are in flight together; one by one, the second
    // fragment is never asked for while the first is held, and the held one times out as 504.
    let gates = [1, 5, 25].map(|n| Arc::new(tokio::sync::Barrier::new(n)));
    let origin = TestOrigin::start(move |seen, _| {
        let path = seen.target.trim_start_matches('/').to_owned();
        let depth = path.matches('-').count();
        let children: String = (0..5)
            .map(|i| format!("<esi:include src=\"/{path}-{i}\"/>"))
            .collect();
        let reply = match depth {
            0 | 1 => esi_page("max-age=60", &format!("({path}:{children})")),
            _ => Reply::ok(&[("cache-control", "max-age=60")], format!("[{path}]")),
        };
        Reply::Gated(gates[depth].clone(), Box::new(reply))
    })
    .await;
    let cdn = Outpost::up(&topology(&origin.url, 1, 1, ""), 2);
    let body = client()
        .get(format!("{}/t", cdn.data("edge-0")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(origin.hits(), 31);
    assert!(body.starts_with("(t:(t-0:[t-0-0][t-0-1]"), "{body}");
    assert!(
        body.ends_with("[t-4-3][t-4-4])))") || body.ends_with("[t-4-4]))"),
        "{body}"
    );
    assert_eq!(body.matches('[').count(), 25, "{body}");
}

#[tokio::test]
async fn the_page_head_is_derived_and_a_revalidation_gets_304() {
    let origin = TestOrigin::start(|seen, _| match seen.target.as_str() {
        "/page" => Reply::ok(
            &[ESI, ("cache-control", "max-age=3600"), ("etag", "\"t1\"")],
            r#"<esi:include src="/day"/>|<esi:include src="/minute"/>"#,
        ),
        "/day" => Reply::ok(
            &[("cache-control", "max-age=86400"), ("etag", "\"d1\"")],
            "day",
        ),
        "/minute" => Reply::ok(
            &[("cache-control", "max-age=60"), ("etag", "\"m1\"")],
            "minute",
        ),
        _ => Reply::status(404, &[], "no"),
    })
    .await;
    let cdn = Outpost::up(
        &topology(&origin.url, 1, 1, "[esi]\nhead_wait_us = 5000000\n"),
        2,
    );
    let url = format!("{}/page", cdn.data("edge-0"));
    let http = client();
    let first = http.get(&url).send().await.unwrap();
    let cache_control = first.headers()["cache-control"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cache_control == "max-age=60" || cache_control == "max-age=59",
        "the shortest lifetime of the parts: {cache_control}"
    );
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with("W/\"esi-"), "{etag}");
    assert_eq!(first.text().await.unwrap(), "day|minute");
    let again = http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert_eq!(origin.hits(), 3, "everything came from cache");
}

#[tokio::test]
async fn a_fragment_failure_is_an_error_before_the_first_byte_and_an_abort_after() {
    let origin = TestOrigin::start(|seen, _| match seen.target.as_str() {
        "/early" => esi_page("max-age=60", r#"<esi:include src="/gone"/>rest"#),
        "/late" => esi_page(
            "max-age=60",
            r#"sent first<esi:include src="/late-gone"/>rest"#,
        ),
        "/late-gone" => Reply::Delayed(
            Duration::from_millis(300),
            Box::new(Reply::status(500, &[], "broken")),
        ),
        "/fallback" => esi_page(
            "max-age=60",
            r#"<esi:include src="/gone" alt="/alt"/>|<esi:include src="/gone" onerror="continue"/>|<esi:try><esi:attempt><esi:include src="/gone"/></esi:attempt><esi:except>except</esi:except></esi:try>"#,
        ),
        "/alt" => Reply::ok(&[("cache-control", "max-age=60")], "alt"),
        _ => Reply::status(404, &[], "no"),
    })
    .await;
    let cdn = Outpost::up(&topology(&origin.url, 0, 1, ""), 1);
    let edge = cdn.data("edge-0").to_owned();
    let http = client();
    let early = http.get(format!("{edge}/early")).send().await.unwrap();
    assert_eq!(early.status(), 502);
    assert!(early.text().await.unwrap().contains("/gone answered 404"));
    let fallback = http.get(format!("{edge}/fallback")).send().await.unwrap();
    assert_eq!(fallback.text().await.unwrap(), "alt||except");
    // After the first bytes went out, the page cannot become an error: the connection is cut
    // without the last chunk, so no client takes the page as complete.
    let host = edge.trim_start_matches("http://");
    let answer = raw(
        host,
        b"GET /late HTTP/1.1\r\nhost: www.outpost.test\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("transfer-encoding: chunked"), "{answer}");
    assert!(answer.contains("sent first"), "{answer}");
    assert!(
        !answer.ends_with("0\r\n\r\n"),
        "a complete chunked end: {answer:?}"
    );
    assert!(!answer.contains("rest"), "{answer}");
    let aborted = http.get(format!("{edge}/late")).send().await.unwrap();
    assert!(aborted.text().await.is_err(), "reqwest sees a broken body");
    // Over HTTP/2 the stream is reset and the connection lives on.
    use http_body_util::BodyExt;
    let tcp = tokio::net::TcpStream::connect(host).await.unwrap();
    let mut sender = crate::common::http2(tcp).await;
    let request = || {
        http::Request::get(format!("{edge}/late"))
            .header("host", "www.outpost.test")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    let response = sender.send_request(request()).await.unwrap();
    assert_eq!(response.status(), 200);
    let error = response.into_body().collect().await.unwrap_err();
    assert!(format!("{error:?}").contains("INTERNAL_ERROR"), "{error:?}");
    let fallback = http::Request::get(format!("{edge}/fallback"))
        .header("host", "www.outpost.test")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(fallback).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"alt||except", "the connection is still usable");
}

#[tokio::test]
async fn only_marked_responses_and_configured_paths_are_processed() {
    let markup = r#"<esi:include src="/f"/>"#;
    let origin = TestOrigin::start(move |seen, _| match seen.target.as_str() {
        "/plain" => Reply::ok(&[("cache-control", "max-age=60")], markup),
        "/other-device" => Reply::ok(
            &[
                ("cache-control", "max-age=60"),
                ("surrogate-control", "content=\"ESI/1.0\";akamai"),
            ],
            markup,
        ),
        "/ours" => Reply::ok(
            &[
                ("cache-control", "max-age=60"),
                ("surrogate-control", "content=\"ESI/1.0\";outpost"),
            ],
            markup,
        ),
        "/rule/page" => Reply::ok(&[("cache-control", "max-age=60")], markup),
        "/f" => Reply::ok(&[("cache-control", "max-age=60")], "fragment"),
        _ => Reply::status(404, &[], "no"),
    })
    .await;
    let cdn = Outpost::up(
        &topology(&origin.url, 0, 1, "[[esi.rules]]\npath = \"/rule/*\"\n"),
        1,
    );
    let edge = cdn.data("edge-0");
    let http = client();
    for (path, expected) in [
        ("/plain", markup),
        ("/other-device", markup),
        ("/ours", "fragment"),
        ("/rule/page", "fragment"),
    ] {
        let response = http.get(format!("{edge}{path}")).send().await.unwrap();
        assert!(!response.headers().contains_key("surrogate-control"));
        assert_eq!(response.text().await.unwrap(), expected, "{path}");
    }
}

#[tokio::test]
async fn surrogate_control_sets_the_edges_lifetime_and_never_reaches_the_client() {
    let origin = TestOrigin::start(|seen, _| match seen.target.as_str() {
        "/page" => Reply::ok(
            &[
                ("cache-control", "no-store"),
                ("surrogate-control", "max-age=300, content=\"ESI/1.0\""),
            ],
            r#"[<esi:include src="/f"/>]"#,
        ),
        "/f" => Reply::ok(&[("surrogate-control", "max-age=300")], "f"),
        _ => Reply::status(404, &[], "no"),
    })
    .await;
    let cdn = Outpost::up(
        &topology(&origin.url, 0, 1, "[esi]\nhead_wait_us = 5000000\n"),
        1,
    );
    let url = format!("{}/page", cdn.data("edge-0"));
    let http = client();
    for _ in 0..3 {
        let response = http.get(&url).send().await.unwrap();
        assert!(!response.headers().contains_key("surrogate-control"));
        assert_eq!(
            response.headers()["cache-control"],
            "no-store",
            "the client's lifetime comes from Cache-Control"
        );
        assert_eq!(response.text().await.unwrap(), "[f]");
    }
    assert_eq!(origin.hits(), 2, "the edge keeps both for 300 s");
}

#[tokio::test]
async fn a_standalone_edge_processes_esi() {
    let origin = TestOrigin::start(|seen, _| match seen.target.as_str() {
        "/page" => esi_page("max-age=60", r#"a<esi:include src="/f"/>c"#),
        "/f" => Reply::ok(&[("cache-control", "max-age=60")], "b"),
        _ => Reply::status(404, &[], "no"),
    })
    .await;
    let running = outpost_node::Cdn::start_standalone(&outpost_node::Standalone {
        role: outpost_node::Role::Edge,
        name: "edge-solo".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        admin: "127.0.0.1:0".parse().unwrap(),
        upstream: origin.url.parse().unwrap(),
        upstream_ca: None,
        token: None,
    })
    .await
    .unwrap();
    let url = format!("{}/page", running.nodes()[0].data_url());
    assert_eq!(
        client()
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "abc"
    );
    running.shutdown().trigger();
}

#[tokio::test]
async fn the_demo_site_has_an_esi_page() {
    let cdn = Outpost::up(&crate::common::demo_topology(1), 3);
    let url = format!("{}/esi/", cdn.data("edge-0"));
    let started = Instant::now();
    let mut response = client()
        .get(&url)
        .header("cookie", "name=Ada")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut page = Vec::new();
    let (mut greeted, mut slow) = (None, None);
    while let Some(chunk) = response.chunk().await.unwrap() {
        page.extend_from_slice(&chunk);
        let text = String::from_utf8_lossy(&page);
        if greeted.is_none() && text.contains("Hello, Ada!") {
            greeted = Some(started.elapsed());
        }
        if slow.is_none() && text.contains("one second later") {
            slow = Some(started.elapsed());
        }
    }
    let page = String::from_utf8(page).unwrap();
    let (greeted, slow) = (greeted.unwrap(), slow.unwrap());
    assert!(
        slow >= Duration::from_secs(1),
        "the slow fragment took {slow:?}"
    );
    assert!(
        greeted + Duration::from_millis(500) < slow,
        "the greeting ({greeted:?}) streamed before the slow fragment ({slow:?})"
    );
    for part in [
        "<nav><a href=\"/about.html\">About</a>",
        "Hello, Ada!",
        "This page was put together at the edge",
        "cached for five seconds",
        "<li>Fragments keep their own Cache-Control lifetimes</li>",
        "the <code>alt</code> fallback",
        "The slow fragment, one second later.",
        "Header and footer: fragments cached for a day",
    ] {
        assert!(page.contains(part), "{part} missing from {page}");
    }
    assert!(!page.contains("esi:"), "no markup is left: {page}");
    assert!(!page.contains("Without an ESI processor"));
}
