//! The cache through real tiers: `outpost up` with one parent and one edge in front of a
//! scriptable origin, driven by an HTTP client over loopback.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{Outpost, Reply, TestOrigin, cache_status, client, get_text, topology};
use tokio::sync::Notify;

const FAST: &str = "[cache]\nfirst_byte_timeout_ms = 1000\nbody_idle_timeout_ms = 1000\nconnect_timeout_ms = 500\n";

fn two_tiers(origin: &TestOrigin, extra: &str) -> Outpost {
    Outpost::up(&topology(&origin.url, 1, 1, extra), 2)
}

#[tokio::test]
async fn miss_then_hit_through_both_tiers() {
    let origin = TestOrigin::start(|_, _| {
        Reply::ok(
            &[("cache-control", "max-age=60"), ("etag", "\"v1\"")],
            "hello",
        )
    })
    .await;
    let cdn = two_tiers(&origin, "");
    let url = format!("{}/page", cdn.data("edge-0"));
    let http = client();

    let first = http.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let status = cache_status(&first);
    assert_eq!(
        status,
        "parent-0; fwd=uri-miss; fwd-status=200; ttl=60; stored, edge-0; fwd=uri-miss; fwd-status=200; ttl=60; stored"
    );
    assert_eq!(first.headers()["via"], "1.1 parent-0, 1.1 edge-0");
    assert_eq!(first.text().await.unwrap(), "hello");

    let second = http.get(&url).send().await.unwrap();
    let status = cache_status(&second);
    assert!(
        status.ends_with("edge-0; hit; ttl=60") || status.ends_with("edge-0; hit; ttl=59"),
        "{status}"
    );
    assert!(second.headers().contains_key("age"));
    assert_eq!(second.text().await.unwrap(), "hello");
    assert_eq!(origin.hits(), 1);

    // The origin saw the CDN's forwarding headers.
    let seen = &origin.seen()[0];
    assert_eq!(seen.header("cdn-loop"), Some("edge-0, parent-0"));
    assert!(
        seen.header("x-forwarded-for")
            .unwrap()
            .starts_with("127.0.0.1")
    );
    assert!(seen.header("forwarded").unwrap().contains("by=edge-0"));
}

#[tokio::test]
async fn concurrent_misses_coalesce_and_stream_before_the_last_byte() {
    let release = Arc::new(Notify::new());
    let held = release.clone();
    let origin = TestOrigin::start(move |_, _| Reply::Held {
        headers: crate::common::owned(&[("cache-control", "max-age=60")]),
        first: b"first-half;".to_vec(),
        release: held.clone(),
        rest: b"second-half".to_vec(),
    })
    .await;
    let cdn = two_tiers(&origin, "");
    let url = format!("{}/big", cdn.data("edge-0"));
    let http = client();

    let mut clients = Vec::new();
    for _ in 0..8 {
        let http = http.clone();
        let url = url.clone();
        clients.push(tokio::spawn(async move {
            let mut response = http.get(&url).send().await.unwrap();
            let status = cache_status(&response);
            let first = response.chunk().await.unwrap().unwrap();
            (response, status, first)
        }));
    }
    // Every client gets its first bytes while the origin still holds the rest back.
    let mut started = Vec::new();
    for client in clients {
        let (response, status, first) = tokio::time::timeout(Duration::from_secs(10), client)
            .await
            .expect("first bytes must arrive before the origin sends the last byte")
            .unwrap();
        assert_eq!(&first[..], b"first-half;");
        started.push((response, status));
    }
    release.notify_waiters();
    let mut collapsed = 0;
    for (mut response, status) in started {
        let mut rest = Vec::new();
        while let Some(chunk) = response.chunk().await.unwrap() {
            rest.extend_from_slice(&chunk);
        }
        assert_eq!(rest, b"second-half");
        collapsed += status.matches("collapsed").count();
    }
    assert_eq!(
        origin.hits(),
        1,
        "one origin fetch for eight concurrent clients"
    );
    assert!(collapsed >= 7, "waiters are marked collapsed ({collapsed})");
    let hit = http.get(&url).send().await.unwrap();
    assert!(cache_status(&hit).contains("edge-0; hit"));
    assert_eq!(hit.text().await.unwrap(), "first-half;second-half");
}

#[tokio::test]
async fn uncacheable_responses_release_waiters_and_are_not_serialised() {
    let origin =
        TestOrigin::start(|_, n| Reply::ok(&[("cache-control", "no-store")], format!("n{n}")))
            .await;
    let cdn = two_tiers(&origin, "");
    let url = format!("{}/private", cdn.data("edge-0"));
    let http = client();
    let a = http.get(&url).send().await.unwrap();
    assert!(
        cache_status(&a).contains("detail=no-store"),
        "{}",
        cache_status(&a)
    );
    assert_eq!(a.text().await.unwrap(), "n1");
    let b = http.get(&url).send().await.unwrap();
    assert!(
        cache_status(&b).contains("edge-0; fwd=bypass"),
        "{}",
        cache_status(&b)
    );
    assert_eq!(b.text().await.unwrap(), "n2");
}

#[tokio::test]
async fn a_broken_upstream_body_is_never_cached_nor_passed_off_as_complete() {
    let origin = TestOrigin::start(|_, n| {
        if n == 1 {
            Reply::Broken {
                headers: crate::common::owned(&[("cache-control", "max-age=60")]),
                declared: 1000,
                sent: vec![b'x'; 100],
            }
        } else {
            Reply::ok(&[("cache-control", "max-age=60")], "whole")
        }
    })
    .await;
    let cdn = Outpost::up(&topology(&origin.url, 0, 1, FAST), 1);
    let url = format!("{}/broken", cdn.data("edge-0"));
    let http = client();
    let response = http.get(&url).send().await.unwrap();
    assert!(
        response.bytes().await.is_err(),
        "the client must see the body break"
    );
    let again = http.get(&url).send().await.unwrap();
    assert!(
        cache_status(&again).contains("fwd=uri-miss"),
        "{}",
        cache_status(&again)
    );
    assert_eq!(again.text().await.unwrap(), "whole");
    assert_eq!(origin.hits(), 2);
}

#[tokio::test]
async fn upstream_failures_map_to_504_and_502_and_the_node_keeps_serving() {
    let origin = TestOrigin::start(|seen, _| match seen.target.as_str() {
        "/hang" => Reply::Hang,
        "/garbage" => Reply::Garbage(b"this is not http\r\n\r\n".to_vec()),
        _ => Reply::ok(&[("cache-control", "max-age=60")], "fine"),
    })
    .await;
    let cdn = Outpost::up(&topology(&origin.url, 0, 1, FAST), 1);
    let edge = cdn.data("edge-0");
    let http = client();
    assert_eq!(
        http.get(format!("{edge}/hang"))
            .send()
            .await
            .unwrap()
            .status(),
        504
    );
    assert_eq!(
        http.get(format!("{edge}/garbage"))
            .send()
            .await
            .unwrap()
            .status(),
        502
    );
    let fine = http.get(format!("{edge}/ok")).send().await.unwrap();
    assert_eq!(fine.status(), 200);

    // A refused connection is a 502 too.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let cdn = Outpost::up(&topology(&dead, 0, 1, FAST), 1);
    let refused = http
        .get(format!("{}/x", cdn.data("edge-0")))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 502);
}

#[tokio::test]
async fn stale_if_error_serves_the_stale_copy_on_5xx_timeout_and_refusal() {
    let origin = TestOrigin::start(|seen, n| match (seen.target.as_str(), n) {
        (_, 1) | (_, 2) => Reply::ok(
            &[("cache-control", "max-age=1, stale-if-error=60")],
            "cached",
        ),
        ("/a", _) => Reply::status(503, &[], "down"),
        _ => Reply::Hang,
    })
    .await;
    let cdn = Outpost::up(&topology(&origin.url, 0, 1, FAST), 1);
    let edge = cdn.data("edge-0");
    let http = client();
    for path in ["/a", "/b"] {
        assert_eq!(get_text(&http, format!("{edge}{path}")).await, "cached");
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let a = http.get(format!("{edge}/a")).send().await.unwrap();
    assert_eq!(a.status(), 200);
    assert!(
        cache_status(&a).contains("fwd-status=503")
            && cache_status(&a).contains("detail=stale-if-error"),
        "{}",
        cache_status(&a)
    );
    assert_eq!(a.text().await.unwrap(), "cached");
    let b = http.get(format!("{edge}/b")).send().await.unwrap();
    assert_eq!(b.status(), 200);
    assert!(
        cache_status(&b).contains("detail=stale-if-error"),
        "{}",
        cache_status(&b)
    );
}

#[tokio::test]
async fn stale_while_revalidate_serves_stale_and_refreshes_once_in_the_background() {
    let origin = TestOrigin::start(|_, n| {
        Reply::ok(
            &[("cache-control", "max-age=1, stale-while-revalidate=30")],
            format!("v{n}"),
        )
    })
    .await;
    let cdn = Outpost::up(&topology(&origin.url, 0, 1, ""), 1);
    let url = format!("{}/swr", cdn.data("edge-0"));
    let http = client();
    assert_eq!(get_text(&http, &url).await, "v1");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let stale = http.get(&url).send().await.unwrap();
    assert!(
        cache_status(&stale).contains("detail=stale-while-revalidate"),
        "{}",
        cache_status(&stale)
    );
    assert_eq!(stale.text().await.unwrap(), "v1");
    // The background refresh lands; the next request is a fresh hit on the new copy.
    let mut body = String::new();
    for _ in 0..50 {
        let response = http.get(&url).send().await.unwrap();
        let status = cache_status(&response);
        body = response.text().await.unwrap();
        if body == "v2" {
            assert!(status.contains("hit"), "{status}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(body, "v2");
    assert_eq!(origin.hits(), 2);
}

#[tokio::test]
async fn stale_objects_revalidate_with_validators_and_a_304_refreshes_them() {
    let origin = TestOrigin::start(|seen, _| {
        if seen.header("if-none-match") == Some("\"v1\"") {
            Reply::status(
                304,
                &[
                    ("cache-control", "max-age=60"),
                    ("etag", "\"v1\""),
                    ("x-refreshed", "yes"),
                ],
                "",
            )
        } else {
            Reply::ok(
                &[("cache-control", "max-age=1"), ("etag", "\"v1\"")],
                "body-v1",
            )
        }
    })
    .await;
    let cdn = Outpost::up(&topology(&origin.url, 0, 1, ""), 1);
    let url = format!("{}/reval", cdn.data("edge-0"));
    let http = client();
    get_text(&http, &url).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let revalidated = http.get(&url).send().await.unwrap();
    assert!(
        cache_status(&revalidated).contains("fwd=stale; fwd-status=304"),
        "{}",
        cache_status(&revalidated)
    );
    assert_eq!(revalidated.headers()["x-refreshed"], "yes");
    assert_eq!(revalidated.headers()["cache-control"], "max-age=60");
    assert_eq!(revalidated.text().await.unwrap(), "body-v1");
    let hit = http.get(&url).send().await.unwrap();
    assert!(cache_status(&hit).contains("hit"), "{}", cache_status(&hit));
    assert_eq!(origin.seen()[1].header("if-none-match"), Some("\"v1\""));
}

#[tokio::test]
async fn what_a_shared_cache_must_not_store_is_not_stored() {
    let origin = TestOrigin::start(|seen, n| {
        let body = format!("{}#{n}", seen.target);
        match seen.target.as_str() {
            "/no-store" => Reply::ok(&[("cache-control", "no-store, max-age=60")], body),
            "/private" => Reply::ok(&[("cache-control", "private, max-age=60")], body),
            "/cookie" => Reply::ok(
                &[("cache-control", "max-age=60"), ("set-cookie", "s=1")],
                body,
            ),
            "/vary-star" => Reply::ok(&[("cache-control", "max-age=60"), ("vary", "*")], body),
            "/auth" => Reply::ok(&[("cache-control", "max-age=60")], body),
            "/auth-public" => Reply::ok(&[("cache-control", "public, max-age=60")], body),
            _ => Reply::ok(&[], body),
        }
    })
    .await;
    let cdn = Outpost::up(&topology(&origin.url, 0, 1, ""), 1);
    let edge = cdn.data("edge-0");
    let http = client();
    for path in ["/no-store", "/private", "/cookie", "/vary-star"] {
        let one = get_text(&http, format!("{edge}{path}")).await;
        let two = get_text(&http, format!("{edge}{path}")).await;
        assert_ne!(one, two, "{path} must not be served from cache");
    }
    let get = |path: &str| {
        http.get(format!("{edge}{path}"))
            .header("authorization", "Bearer t")
    };
    let one = get("/auth").send().await.unwrap().text().await.unwrap();
    let two = get("/auth").send().await.unwrap().text().await.unwrap();
    assert_ne!(one, two, "Authorization without public is not shared");
    let one = get("/auth-public")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let two = get("/auth-public")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        one, two,
        "public allows serving requests with Authorization"
    );
}

#[tokio::test]
async fn vary_keeps_a_variant_per_value_with_accept_encoding_normalised() {
    let origin = TestOrigin::start(|seen, n| {
        let lang = seen.header("accept-language").unwrap_or("none").to_owned();
        Reply::ok(
            &[
                ("cache-control", "max-age=60"),
                ("vary", "Accept-Language, Accept-Encoding"),
            ],
            format!("{lang}#{n}"),
        )
    })
    .await;
    let cdn = Outpost::up(&topology(&origin.url, 0, 1, ""), 1);
    let url = format!("{}/v", cdn.data("edge-0"));
    let http = client();
    let get = |lang: &'static str, enc: &'static str| {
        http.get(&url)
            .header("accept-language", lang)
            .header("accept-encoding", enc)
            .send()
    };
    let en = get("en", "gzip, br").await.unwrap().text().await.unwrap();
    let fr = get("fr", "gzip, br").await.unwrap().text().await.unwrap();
    assert!(en.starts_with("en#") && fr.starts_with("fr#"));
    assert_eq!(
        get("en", "br;q=1, gzip;q=0.5")
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        en
    );
    assert_eq!(
        get("fr", "gzip,br").await.unwrap().text().await.unwrap(),
        fr
    );
    let vary_miss = get("de", "gzip").await.unwrap();
    assert!(
        cache_status(&vary_miss).contains("fwd=vary-miss"),
        "{}",
        cache_status(&vary_miss)
    );
    assert_eq!(origin.hits(), 3);
}

#[tokio::test]
async fn unsafe_methods_pass_through_and_invalidate() {
    let origin = TestOrigin::start(|seen, n| match seen.method.as_str() {
        "POST" => Reply::status(
            201,
            &[("location", "/items/2")],
            format!("posted {}", String::from_utf8_lossy(&seen.body)),
        ),
        _ => Reply::ok(
            &[("cache-control", "max-age=600")],
            format!("{}#{n}", seen.target),
        ),
    })
    .await;
    let cdn = two_tiers(&origin, "");
    let edge = cdn.data("edge-0");
    let http = client();
    let items = get_text(&http, format!("{edge}/items")).await;
    let item2 = get_text(&http, format!("{edge}/items/2")).await;
    assert_eq!(get_text(&http, format!("{edge}/items")).await, items);
    let posted = http
        .post(format!("{edge}/items"))
        .body("data")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 201);
    assert!(cache_status(&posted).contains("edge-0; fwd=method"));
    assert_eq!(posted.text().await.unwrap(), "posted data");
    assert_ne!(get_text(&http, format!("{edge}/items")).await, items);
    assert_ne!(get_text(&http, format!("{edge}/items/2")).await, item2);
}

#[tokio::test]
async fn conditional_and_range_requests_are_answered_from_the_stored_object() {
    let body: String = (0..100)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let stored = body.clone();
    let origin = TestOrigin::start(move |_, _| {
        Reply::ok(
            &[("cache-control", "max-age=60"), ("etag", "\"e1\"")],
            stored.clone(),
        )
    })
    .await;
    let cdn = Outpost::up(&topology(&origin.url, 0, 1, ""), 1);
    let url = format!("{}/r", cdn.data("edge-0"));
    let http = client();
    // A range on a miss still fills the cache with the whole object.
    let part = http
        .get(&url)
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], "bytes 10-19/100");
    assert_eq!(part.text().await.unwrap(), &body[10..20]);
    assert!(
        origin.seen()[0].header("range").is_none(),
        "the fill asks for the whole object"
    );
    let not_modified = http
        .get(&url)
        .header("if-none-match", "\"e1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), 304);
    let multi = http
        .get(&url)
        .header("range", "bytes=0-1,50-51")
        .send()
        .await
        .unwrap();
    assert_eq!(multi.status(), 206);
    assert!(
        multi.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("multipart/byteranges")
    );
    let unsatisfiable = http
        .get(&url)
        .header("range", "bytes=500-")
        .send()
        .await
        .unwrap();
    assert_eq!(unsatisfiable.status(), 416);
    assert_eq!(unsatisfiable.headers()["content-range"], "bytes */100");
    let head = http.head(&url).send().await.unwrap();
    assert_eq!(head.headers()["content-length"], "100");
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn cdn_only_headers_steer_the_cache_and_never_reach_the_client() {
    let origin = TestOrigin::start(|_, n| {
        Reply::ok(
            &[
                ("cache-control", "no-store"),
                ("cdn-cache-control", "max-age=120"),
                ("surrogate-key", "product-1 catalog"),
                ("cache-tag", "blue"),
            ],
            format!("n{n}"),
        )
    })
    .await;
    let cdn = two_tiers(&origin, "");
    let url = format!("{}/p", cdn.data("edge-0"));
    let http = client();
    let first = http.get(&url).send().await.unwrap();
    for name in [
        "cdn-cache-control",
        "surrogate-key",
        "cache-tag",
        "surrogate-control",
    ] {
        assert!(
            !first.headers().contains_key(name),
            "{name} must be stripped at the edge"
        );
    }
    assert_eq!(
        first.headers()["cache-control"],
        "no-store",
        "Cache-Control is the client's"
    );
    first.text().await.unwrap();
    let second = http.get(&url).send().await.unwrap();
    // CDN-Cache-Control's 120 s, less the second or so that may have passed.
    let status = cache_status(&second);
    let ttl: u64 = status
        .split_once("edge-0; hit; ttl=")
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("a hit at the edge: {status}"));
    assert!((115..=120).contains(&ttl), "{status}");
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn loops_are_refused_with_508() {
    let origin = TestOrigin::start(|_, _| Reply::ok(&[], "x")).await;
    let cdn = Outpost::up(&topology(&origin.url, 0, 1, ""), 1);
    let response = client()
        .get(format!("{}/", cdn.data("edge-0")))
        .header("cdn-loop", "other-cdn, edge-0")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 508);
    assert_eq!(origin.hits(), 0);
}

#[tokio::test]
async fn absurd_upstream_ages_and_unframed_bodies_do_no_harm() {
    let origin = TestOrigin::start(|seen, n| match seen.target.as_str() {
        "/old" => Reply::ok(
            &[
                ("cache-control", "max-age=60, stale-if-error=0"),
                ("age", "18446744073709551615"),
            ],
            format!("old{n}"),
        ),
        _ => Reply::Garbage(
            format!("HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\n\r\nunframed{n}").into_bytes(),
        ),
    })
    .await;
    let cdn = Outpost::up(&topology(&origin.url, 0, 1, ""), 1);
    let edge = cdn.data("edge-0");
    let http = client();
    // An Age past 2^31 is capped: the response is simply stale, and the node does not fall over.
    for _ in 0..3 {
        let response = http.get(format!("{edge}/old")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap();
    }
    // A body that ends only when the connection closes could be truncated: never stored.
    let first = http.get(format!("{edge}/unframed")).send().await.unwrap();
    assert!(
        cache_status(&first).contains("detail=unframed"),
        "{}",
        cache_status(&first)
    );
    assert!(first.text().await.unwrap().starts_with("unframed"));
    let health = http
        .get(format!("{edge}/_outpost/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn a_purge_during_a_fetch_keeps_the_fetched_copy_out_of_the_cache() {
    let release = Arc::new(Notify::new());
    let held = release.clone();
    let origin = TestOrigin::start(move |_, n| {
        if n == 1 {
            Reply::Held {
                headers: crate::common::owned(&[("cache-control", "max-age=600")]),
                first: b"old-".to_vec(),
                release: held.clone(),
                rest: b"version".to_vec(),
            }
        } else {
            Reply::ok(&[("cache-control", "max-age=600")], "new-version")
        }
    })
    .await;
    let cdn = Outpost::up(&topology(&origin.url, 0, 1, ""), 1);
    let url = format!("{}/doc", cdn.data("edge-0"));
    let http = client();
    let mut first = http.get(&url).send().await.unwrap();
    assert_eq!(&first.chunk().await.unwrap().unwrap()[..], b"old-");
    let purge = http
        .post(format!("{}/purge", cdn.admin("edge-0")))
        .bearer_auth("test-token")
        .body(r#"{"urls": ["/doc"]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(purge.status(), 200);
    // A request after the purge does not join the old fetch.
    let after = http.get(&url).send().await.unwrap();
    assert_eq!(after.text().await.unwrap(), "new-version");
    release.notify_waiters();
    let mut rest = Vec::new();
    while let Some(chunk) = first.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"version");
    // And the old fetch did not overwrite the cache once it finished.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(get_text(&http, &url).await, "new-version");
}

#[tokio::test]
async fn ranges_of_an_uncacheable_object_go_upstream_as_ranges() {
    let origin = TestOrigin::start(|seen, _| match seen.header("range") {
        Some("bytes=0-3") => Reply::status(
            206,
            &[
                ("cache-control", "no-store"),
                ("content-range", "bytes 0-3/10"),
            ],
            "0123",
        ),
        _ => Reply::ok(&[("cache-control", "no-store")], "0123456789"),
    })
    .await;
    let cdn = Outpost::up(&topology(&origin.url, 0, 1, ""), 1);
    let url = format!("{}/video.mp4", cdn.data("edge-0"));
    let http = client();
    // The first request learns that the key is uncacheable.
    assert_eq!(get_text(&http, &url).await, "0123456789");
    // A seek afterwards reaches the origin as a Range request and comes back as 206.
    let seek = http
        .get(&url)
        .header("range", "bytes=0-3")
        .send()
        .await
        .unwrap();
    assert_eq!(seek.status(), 206);
    assert!(
        cache_status(&seek).contains("fwd=bypass"),
        "{}",
        cache_status(&seek)
    );
    assert_eq!(seek.headers()["content-range"], "bytes 0-3/10");
    assert_eq!(seek.text().await.unwrap(), "0123");
}
