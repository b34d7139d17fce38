//! The cache pipeline in-process, in front of a scripted upstream: no sockets and no other
//! crate's node, so coalescing, revalidation, upstream errors and purge races are driven
//! exactly. The upstream records every request it gets.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use outpost_cache::{CacheConfig, CacheKey, CacheNode, Upstream, UpstreamError};
use outpost_server::admin::{Purge, PurgeRequest};
use outpost_server::body::{self, Body, BoxError};
use outpost_server::{Handler, Peer};
use tokio::sync::Notify;

type Reply = Result<Response<Body>, UpstreamError>;
type PendingReply = std::pin::Pin<Box<dyn std::future::Future<Output = Reply> + Send>>;
type ScriptFn = dyn Fn(usize, &HeaderMap) -> PendingReply + Send + Sync;

/// An upstream that answers from a script: `(n, request headers) -> reply`, `n` counting
/// from 0 the requests it has had.
#[derive(Clone)]
struct Scripted {
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
    script: Arc<ScriptFn>,
}

impl Scripted {
    fn new<F, Fut>(script: F) -> Self
    where
        F: Fn(usize, &HeaderMap) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Reply> + Send + 'static,
    {
        Self {
            calls: Arc::new(AtomicUsize::new(0)),
            seen: Arc::new(Mutex::new(Vec::new())),
            script: Arc::new(move |n, headers| Box::pin(script(n, headers))),
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The headers of the `n`th request the upstream got.
    fn seen(&self, n: usize) -> HeaderMap {
        self.seen.lock().unwrap()[n].clone()
    }
}

impl Upstream for Scripted {
    async fn send(&self, request: Request<Body>, _key: &CacheKey) -> Reply {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(request.headers().clone());
        (self.script)(n, request.headers()).await
    }
}

fn response(headers: &[(&str, &str)], body_text: &str) -> Response<Body> {
    let mut response = Response::new(body::full(Bytes::from(body_text.to_owned())));
    for (name, value) in headers {
        let name = http::HeaderName::from_bytes(name.as_bytes()).expect("a header name");
        response
            .headers_mut()
            .insert(name, value.parse().expect("a header value"));
    }
    response.headers_mut().insert(
        http::header::CONTENT_LENGTH,
        body_text.len().to_string().parse().unwrap(),
    );
    response
}

fn node(upstream: Scripted) -> CacheNode<Scripted> {
    let mut registry = prometheus_client::registry::Registry::default();
    CacheNode::new(
        "edge-test",
        &CacheConfig::default(),
        upstream,
        &mut registry,
    )
}

fn peer() -> Peer {
    Peer {
        remote: "127.0.0.1:40000".parse().unwrap(),
        local: "127.0.0.1:8080".parse().unwrap(),
        tls: false,
    }
}

async fn get(node: &CacheNode<Scripted>, path: &str) -> (StatusCode, String, String) {
    let request = Request::get(path)
        .header("host", "site.test")
        .body(body::empty())
        .unwrap();
    let response = node.handle(request, peer()).await;
    let status = response.status();
    let cache_status = response
        .headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = match response.into_body().collect().await {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
        Err(error) => format!("<broken: {error}>"),
    };
    (status, cache_status, text)
}

#[tokio::test]
async fn a_miss_is_stored_and_the_next_request_is_a_hit() {
    let upstream = Scripted::new(|n, _| async move {
        Ok(response(
            &[("cache-control", "max-age=60")],
            &format!("v{n}"),
        ))
    });
    let node = node(upstream.clone());
    let (status, first, body) = get(&node, "/a").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "v0"));
    assert!(
        first.contains("fwd=uri-miss") && first.contains("stored"),
        "{first}"
    );
    let (_, second, body) = get(&node, "/a").await;
    assert!(second.contains("; hit"), "{second}");
    assert_eq!((body.as_str(), upstream.calls()), ("v0", 1));
}

#[tokio::test]
async fn concurrent_misses_become_one_upstream_fetch() {
    let release = Arc::new(Notify::new());
    let gate = release.clone();
    let upstream = Scripted::new(move |n, _| {
        let gate = gate.clone();
        async move {
            gate.notified().await;
            Ok(response(
                &[("cache-control", "max-age=60")],
                &format!("v{n}"),
            ))
        }
    });
    let node = node(upstream.clone());
    let mut clients = Vec::new();
    for _ in 0..20 {
        let node = node.clone();
        clients.push(tokio::spawn(async move { get(&node, "/hot").await }));
    }
    // Every client has asked before the one fetch is answered.
    tokio::time::sleep(Duration::from_millis(100)).await;
    release.notify_one();
    let mut collapsed = 0;
    for client in clients {
        let (status, cache_status, body) = client.await.unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::OK, "v0"));
        collapsed += usize::from(cache_status.contains("collapsed"));
    }
    assert_eq!(upstream.calls(), 1);
    assert_eq!(
        collapsed, 19,
        "every client but the leader joined its fetch"
    );
}

#[tokio::test]
async fn a_stale_object_is_revalidated_with_its_validator_and_refreshed_by_a_304() {
    let upstream = Scripted::new(|n, headers| {
        let revalidating = headers.get("if-none-match").cloned();
        async move {
            match (n, revalidating) {
                (0, None) => Ok(response(
                    &[("cache-control", "no-cache"), ("etag", "\"v1\"")],
                    "body-v1",
                )),
                (_, Some(etag)) if etag == "\"v1\"" => {
                    let mut not_modified = Response::new(body::empty());
                    *not_modified.status_mut() = StatusCode::NOT_MODIFIED;
                    not_modified
                        .headers_mut()
                        .insert("etag", "\"v1\"".parse().unwrap());
                    not_modified
                        .headers_mut()
                        .insert("x-refreshed", "yes".parse().unwrap());
                    Ok(not_modified)
                }
                _ => Ok(response(&[], "unexpected request")),
            }
        }
    });
    let node = node(upstream.clone());
    assert_eq!(get(&node, "/doc").await.2, "body-v1");
    let (status, cache_status, body) = get(&node, "/doc").await;
    assert_eq!(upstream.seen(1).get("if-none-match").unwrap(), "\"v1\"");
    assert_eq!((status, body.as_str()), (StatusCode::OK, "body-v1"));
    assert!(cache_status.contains("fwd=stale"), "{cache_status}");
    assert_eq!(upstream.calls(), 2);
}

#[tokio::test]
async fn an_upstream_that_fails_gets_stale_if_error_or_a_status_that_says_which_failure() {
    let upstream = Scripted::new(|n, _| async move {
        match n {
            0 => Ok(response(
                &[("cache-control", "max-age=0, stale-if-error=60")],
                "kept",
            )),
            1 | 2 => Err(UpstreamError::Connect {
                upstream: "scripted".into(),
                reason: "refused".into(),
            }),
            _ => Err(UpstreamError::Timeout {
                upstream: "scripted".into(),
                timeout: Duration::from_secs(1),
            }),
        }
    });
    let node = node(upstream.clone());
    assert_eq!(get(&node, "/s").await.2, "kept");
    let (status, cache_status, body) = get(&node, "/s").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "kept"));
    assert!(cache_status.contains("stale"), "{cache_status}");
    // Nothing to stand in: the client learns which side failed.
    assert_eq!(get(&node, "/never-stored").await.0, StatusCode::BAD_GATEWAY);
    assert_eq!(get(&node, "/slow").await.0, StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test]
async fn a_purge_that_races_a_fill_keeps_that_fill_out_of_the_cache() {
    let release = Arc::new(Notify::new());
    let gate = release.clone();
    let upstream = Scripted::new(move |n, _| {
        let gate = gate.clone();
        async move {
            if n == 0 {
                gate.notified().await;
            }
            Ok(response(
                &[("cache-control", "max-age=60")],
                &format!("v{n}"),
            ))
        }
    });
    let node = node(upstream.clone());
    let filling = {
        let node = node.clone();
        tokio::spawn(async move { get(&node, "/racy").await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    node.purge(&PurgeRequest {
        urls: vec!["http://site.test/racy".into()],
        tags: Vec::new(),
        soft: false,
        ..Default::default()
    });
    release.notify_one();
    // The client that asked before the purge still gets its answer...
    assert_eq!(filling.await.unwrap().2, "v0");
    // ...but what the purge raced is not kept.
    let (_, cache_status, body) = get(&node, "/racy").await;
    assert_eq!(body, "v1", "{cache_status}");
    assert_eq!(upstream.calls(), 2);
}

#[tokio::test]
async fn a_body_that_breaks_reaches_the_client_broken_and_is_not_stored() {
    let upstream = Scripted::new(|n, _| async move {
        if n > 0 {
            return Ok(response(&[("cache-control", "max-age=60")], "whole"));
        }
        let chunks: Vec<Result<http_body::Frame<Bytes>, BoxError>> = vec![
            Ok(http_body::Frame::data(Bytes::from_static(b"par"))),
            Err("connection reset".into()),
        ];
        let broken = StreamBody::new(futures_util::stream::iter(chunks)).boxed_unsync();
        let mut response = Response::new(broken);
        response
            .headers_mut()
            .insert("cache-control", "max-age=60".parse().unwrap());
        response
            .headers_mut()
            .insert("content-length", "10".parse().unwrap());
        Ok(response)
    });
    let node = node(upstream.clone());
    let (_, _, body) = get(&node, "/b").await;
    assert!(body.starts_with("<broken"), "{body}");
    assert_eq!(get(&node, "/b").await.2, "whole");
    assert_eq!(upstream.calls(), 2);
}
