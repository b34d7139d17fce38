//! ESI assembly over an in-memory site: a [`Site`] handler stands where the edge's cache
//! stands, answering templates and fragments with chosen delays, chunking and failures, so
//! that the parallel, streamed assembly can be checked against a plain sequential reference
//! on many random pages. The end-to-end tests through a real edge are in `tests/it/esi.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use outpost_esi::{EsiConfig, EsiFront};
use outpost_server::{Body, Handler, Peer};
use proptest::prelude::*;

/// One document the site serves.
#[derive(Debug, Clone)]
struct Doc {
    status: u16,
    body: String,
    esi: bool,
    delay: Duration,
    /// Bytes per body chunk (at least 1).
    chunk: usize,
    cache_control: &'static str,
    etag: Option<String>,
}

impl Doc {
    fn esi(body: impl Into<String>) -> Self {
        Self {
            status: 200,
            body: body.into(),
            esi: true,
            delay: Duration::ZERO,
            chunk: usize::MAX,
            cache_control: "max-age=60",
            etag: None,
        }
    }

    fn plain(body: impl Into<String>) -> Self {
        Self {
            esi: false,
            ..Self::esi(body)
        }
    }
}

#[derive(Default)]
struct Site {
    docs: Mutex<HashMap<String, Doc>>,
    requests: Mutex<Vec<http::request::Parts>>,
    count: AtomicUsize,
}

impl Site {
    fn with(docs: impl IntoIterator<Item = (&'static str, Doc)>) -> Arc<Self> {
        let site = Arc::new(Site::default());
        site.docs
            .lock()
            .unwrap()
            .extend(docs.into_iter().map(|(k, v)| (k.to_owned(), v)));
        site
    }
}

struct Serve(Arc<Site>);

impl Handler for Serve {
    async fn handle(&self, request: Request<Body>, _peer: Peer) -> Response<Body> {
        self.0.count.fetch_add(1, Ordering::SeqCst);
        let (parts, _) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        self.0.requests.lock().unwrap().push(parts);
        let doc = self.0.docs.lock().unwrap().get(&path).cloned();
        let Some(doc) = doc else {
            return outpost_server::body::text(StatusCode::NOT_FOUND, "no such doc");
        };
        if !doc.delay.is_zero() {
            tokio::time::sleep(doc.delay).await;
        }
        let chunks: Vec<Bytes> = doc
            .body
            .as_bytes()
            .chunks(doc.chunk.max(1))
            .map(Bytes::copy_from_slice)
            .collect();
        let stream = futures_util::stream::iter(chunks).then(|chunk| async move {
            tokio::task::yield_now().await;
            Ok::<_, outpost_server::BoxError>(http_body::Frame::data(chunk))
        });
        let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
        *response.status_mut() = StatusCode::from_u16(doc.status).unwrap();
        let headers = response.headers_mut();
        headers.insert("cache-control", doc.cache_control.parse().unwrap());
        if doc.esi {
            headers.insert("surrogate-control", "content=\"ESI/1.0\"".parse().unwrap());
        }
        if let Some(etag) = &doc.etag {
            headers.insert("etag", etag.parse().unwrap());
        }
        response
    }
}

use futures_util::StreamExt;

fn peer() -> Peer {
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    Peer {
        remote: addr,
        local: addr,
        tls: false,
    }
}

/// The page at `path`, as status, headers and body (or the body's error).
async fn get(
    front: &EsiFront<Serve>,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, Result<String, String>) {
    let mut request = Request::get(path)
        .header("host", "site.test")
        .body(outpost_server::body::empty())
        .unwrap();
    for (name, value) in headers {
        let name = http::HeaderName::from_bytes(name.as_bytes()).unwrap();
        request.headers_mut().append(name, value.parse().unwrap());
    }
    let response = front.handle(request, peer()).await;
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(collected) => Ok(String::from_utf8_lossy(&collected.to_bytes()).into_owned()),
        Err(error) => Err(error.to_string()),
    };
    (parts.status, parts.headers, body)
}

fn front(site: &Arc<Site>, config: EsiConfig) -> EsiFront<Serve> {
    EsiFront::new(Arc::new(Serve(site.clone())), &config, Default::default())
}

#[tokio::test]
async fn every_element_of_esi_1_0() {
    let template = r#"<html>
<esi:include src="/header"/>
<esi:include src="/missing" alt="/alt"/>
<esi:include src="/missing" onerror="continue"/>
<esi:try><esi:attempt>A<esi:include src="/missing"/></esi:attempt><esi:except>E<esi:include src="/alt"/></esi:except></esi:try>
<esi:try><esi:attempt>kept</esi:attempt><esi:except>never</esi:except></esi:try>
<esi:choose>
  <esi:when test="$(HTTP_COOKIE{group}) == 'admin'">admin</esi:when>
  <esi:when test="$(HTTP_COOKIE{group}) == 'user'">user</esi:when>
  <esi:otherwise>nobody</esi:otherwise>
</esi:choose>
<esi:choose><esi:when test="((1 == 2))">no</esi:when><esi:otherwise>other</esi:otherwise></esi:choose>
<esi:choose><esi:when test="bad expression ==">no</esi:when></esi:choose>
<esi:vars>hello $(HTTP_COOKIE{name}|'guest') from $(HTTP_HOST) q=$(QUERY_STRING{q}) lang=$(HTTP_ACCEPT_LANGUAGE{de}) ua=$(HTTP_USER_AGENT{browser})/$(HTTP_USER_AGENT{os}) ref=$(HTTP_REFERER|none)</esi:vars>
not vars: $(HTTP_HOST)
<esi:remove>removed <esi:include src="/header"/></esi:remove>
<esi:comment text="a comment"/>
<!--esi <esi:vars>in esi comment $(HTTP_COOKIE{name})</esi:vars> -->
<esi:inline name="/inline-frag" fetchable="no">inline body</esi:inline>
<esi:include src="$(QUERY_STRING{frag}|/header)"/>
<esi:unknown>unknown kept</esi:unknown>
</html>"#;
    let site = Site::with([
        ("/page?q=rust&frag=/nested", Doc::esi(template)),
        ("/header", Doc::plain("HEADER")),
        ("/alt", Doc::plain("ALT")),
        (
            "/nested",
            Doc::esi(r#"N[<esi:include src="nested-child"/>]"#),
        ),
        ("/nested-child", Doc::plain("child")),
    ]);
    let front = front(&site, EsiConfig::default());
    let (status, headers, body) = get(
        &front,
        "/page?q=rust&frag=/nested",
        &[
            ("cookie", "name=Ada; group=user"),
            ("accept-language", "de, en;q=0.5"),
            ("user-agent", "Mozilla/5.0 (Windows NT 10.0)"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert!(!headers.contains_key("surrogate-control"));
    let expected = r#"<html>
HEADER
ALT

EALT
kept
user
other

hello Ada from site.test q=rust lang=true ua=MOZILLA/WIN ref=none
not vars: $(HTTP_HOST)


 in esi comment Ada 
inline body
N[child]
unknown kept
</html>"#;
    assert_eq!(body.unwrap(), expected);
    // The inline fragment is served from the page that defined it, never fetched.
    site.docs.lock().unwrap().insert(
        "/uses-inline".into(),
        Doc::esi(r#"[<esi:include src="/inline-frag"/>]"#),
    );
    let (_, _, body) = get(&front, "/uses-inline", &[]).await;
    assert_eq!(body.unwrap(), "[inline body]");
    let fetched: Vec<String> = site
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|p| p.uri.to_string())
        .collect();
    assert!(
        !fetched.iter().any(|u| u.contains("inline-frag")),
        "{fetched:?}"
    );
}

#[tokio::test]
async fn fragment_requests_carry_only_the_chosen_headers() {
    let site = Site::with([
        ("/page", Doc::esi(r#"<esi:include src="/f"/>"#)),
        ("/f", Doc::plain("f")),
    ]);
    let config = EsiConfig {
        forward_headers: vec!["x-tenant".into()],
        ..EsiConfig::default()
    };
    let front = front(&site, config);
    let (_, _, body) = get(
        &front,
        "/page",
        &[
            ("cookie", "a=1"),
            ("accept-language", "fr"),
            ("authorization", "Bearer secret"),
            ("x-tenant", "t1"),
            ("x-other", "no"),
            ("surrogate-capability", "evil=\"ESI/1.0\""),
        ],
    )
    .await;
    assert_eq!(body.unwrap(), "f");
    let requests = site.requests.lock().unwrap();
    let page = &requests[0];
    assert_eq!(page.headers["surrogate-capability"], "outpost=\"ESI/1.0\"");
    let fragment = &requests[1];
    let mut names: Vec<&str> = fragment.headers.keys().map(|k| k.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "accept-language",
            "cookie",
            "host",
            "surrogate-capability",
            "x-tenant"
        ]
    );
    assert_eq!(fragment.headers["host"], "site.test");
    assert_eq!(
        fragment.headers["surrogate-capability"],
        "outpost=\"ESI/1.0\""
    );
}

#[tokio::test]
async fn includes_may_not_leave_the_allowed_hosts() {
    let site = Site::with([
        (
            "/page",
            Doc::esi(
                r#"<esi:include src="http://evil.test/x" alt="/ok"/>|<esi:include src="//evil.test/x" onerror="continue"/>|<esi:include src="file:///etc/passwd" onerror="continue"/>|<esi:include src="http://127.0.0.1:9090/metrics" onerror="continue"/>|<esi:include src="http://cdn.test/y"/>|<esi:include src="http://SITE.test/ok"/>"#,
            ),
        ),
        ("/ok", Doc::plain("ok")),
        ("/y", Doc::plain("y")),
    ]);
    let config = EsiConfig {
        allowed_hosts: vec!["cdn.test".into()],
        ..EsiConfig::default()
    };
    let front = front(&site, config);
    let (_, _, body) = get(&front, "/page", &[]).await;
    assert_eq!(body.unwrap(), "ok||||y|ok");
    let hosts: Vec<String> = site
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|p| p.headers["host"].to_str().unwrap().to_owned())
        .collect();
    assert!(
        hosts.iter().all(|h| h == "site.test" || h == "cdn.test"),
        "{hosts:?}"
    );
}

#[tokio::test]
async fn limits_stop_loops_depth_count_and_size() {
    let site = Site::with([
        (
            "/loop",
            Doc::esi(r#"a<esi:include src="/loop2" onerror="continue"/>b"#),
        ),
        (
            "/loop2",
            Doc::esi(r#"[<esi:include src="/loop" onerror="continue"/>]"#),
        ),
        ("/self", Doc::esi(r#"a<esi:include src="/self"/>b"#)),
        ("/deep", Doc::esi(r#"0<esi:include src="/d1"/>"#)),
        ("/d1", Doc::esi(r#"1<esi:include src="/d2"/>"#)),
        (
            "/d2",
            Doc::esi(r#"2<esi:include src="/d3" onerror="continue"/>"#),
        ),
        ("/d3", Doc::esi("3")),
        ("/many", Doc::esi(r#"<esi:include src="/x"/>"#.repeat(5))),
        ("/x", Doc::plain("x")),
        (
            "/big",
            Doc::esi(r#"<esi:include src="/large"/><esi:include src="/large"/>"#),
        ),
        ("/large", Doc::plain("L".repeat(600))),
    ]);
    let config = EsiConfig {
        max_depth: 2,
        max_includes: 4,
        max_page_bytes: 1000,
        ..EsiConfig::default()
    };
    let front = front(&site, config);
    // /loop2 includes /loop, an ancestor: that include is refused (and dropped, by its
    // onerror); a page that includes itself with no onerror fails.
    let (status, _, body) = get(&front, "/loop", &[]).await;
    assert_eq!((status, body.unwrap()), (StatusCode::OK, "a[]b".to_owned()));
    let (status, _, body) = get(&front, "/self", &[]).await;
    assert_eq!(status, 200);
    assert!(body.unwrap_err().contains("points back"));
    let (_, _, body) = get(&front, "/deep", &[]).await;
    assert_eq!(body.unwrap(), "012", "depth 3 is past the limit of 2");
    // Four includes succeed; the fifth is over the limit and fails the page mid-stream.
    let (status, _, body) = get(&front, "/many", &[]).await;
    assert_eq!(status, 200);
    assert!(body.is_err(), "the fifth include is refused: {body:?}");
    let (status, _, body) = get(&front, "/big", &[]).await;
    assert!(
        status == StatusCode::BAD_GATEWAY || body.is_err(),
        "1200 bytes is over the page limit: {status} {body:?}"
    );
}

#[tokio::test]
async fn a_failure_before_the_first_byte_is_an_error_response() {
    let site = Site::with([
        ("/page", Doc::esi(r#"<esi:include src="/gone"/>after"#)),
        (
            "/later",
            Doc::esi(r#"before<esi:include src="/slow-gone"/>after"#),
        ),
        (
            "/slow-gone",
            Doc {
                status: 500,
                delay: Duration::from_millis(50),
                ..Doc::plain("x")
            },
        ),
    ]);
    let front = front(&site, EsiConfig::default());
    let (status, headers, body) = get(&front, "/page", &[]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(headers["cache-control"], "no-store");
    assert!(body.unwrap().contains("/gone answered 404"));
    let (status, _, body) = get(&front, "/later", &[]).await;
    assert_eq!(status, 200, "the head left with the first bytes");
    let error = body.unwrap_err();
    assert!(error.contains("answered 500"), "{error}");
}

#[tokio::test]
async fn the_page_head_is_derived_from_its_parts() {
    let with = |body: &str, cache_control: &'static str, etag: &str, esi: bool| Doc {
        cache_control,
        etag: Some(etag.to_owned()),
        ..if esi {
            Doc::esi(body)
        } else {
            Doc::plain(body)
        }
    };
    let site = Site::with([
        (
            "/page",
            with(
                r#"<esi:include src="/day"/><esi:include src="/minute"/>"#,
                "max-age=3600",
                "\"t1\"",
                true,
            ),
        ),
        ("/day", with("day", "max-age=86400", "\"d1\"", false)),
        ("/minute", with("minute", "max-age=60", "\"m1\"", false)),
        (
            "/personal",
            with(
                r#"<esi:include src="/day"/><esi:include src="/basket"/>"#,
                "max-age=3600",
                "\"t1\"",
                true,
            ),
        ),
        (
            "/basket",
            with("basket", "private, max-age=0", "\"b1\"", false),
        ),
    ]);
    let config = EsiConfig {
        head_wait_us: 5_000_000,
        ..EsiConfig::default()
    };
    let front = front(&site, config);
    let (_, headers, body) = get(&front, "/page", &[]).await;
    assert_eq!(body.unwrap(), "dayminute");
    assert_eq!(
        headers["cache-control"], "max-age=60",
        "the shortest part's"
    );
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with("W/\"esi-"), "{etag}");
    let (status, headers, body) = get(&front, "/page", &[("if-none-match", &etag)]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert_eq!(headers["etag"], etag.as_str());
    assert_eq!(body.unwrap(), "");
    // One part changes: a new validator, and the old one gets the whole page.
    site.docs.lock().unwrap().insert(
        "/minute".into(),
        with("minute2", "max-age=60", "\"m2\"", false),
    );
    let (status, headers, body) = get(&front, "/page", &[("if-none-match", &etag)]).await;
    assert_eq!(status, 200);
    assert_ne!(headers["etag"], etag.as_str());
    assert_eq!(body.unwrap(), "dayminute2");
    let (_, headers, _) = get(&front, "/personal", &[]).await;
    assert_eq!(headers["cache-control"], "private, max-age=0");
}

#[tokio::test]
async fn variables_make_the_validator_personal() {
    let site = Site::with([(
        "/page",
        Doc {
            etag: Some("\"t\"".into()),
            ..Doc::esi("<esi:vars>hi $(HTTP_COOKIE{name})</esi:vars>")
        },
    )]);
    let config = EsiConfig {
        head_wait_us: 5_000_000,
        ..EsiConfig::default()
    };
    let front = front(&site, config);
    let (_, a, _) = get(&front, "/page", &[("cookie", "name=a")]).await;
    let (_, b, _) = get(&front, "/page", &[("cookie", "name=b")]).await;
    let (_, a2, _) = get(&front, "/page", &[("cookie", "name=a")]).await;
    assert_ne!(a["etag"], b["etag"]);
    assert_eq!(a["etag"], a2["etag"]);
}

#[tokio::test]
async fn compressed_templates_are_decoded_and_pages_compressed() {
    use std::io::{Read, Write};
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(br#"<p><esi:include src="/f"/></p>"#).unwrap();
    let compressed = gz.finish().unwrap();
    struct Gzipped(Vec<u8>);
    impl Handler for Gzipped {
        async fn handle(&self, request: Request<Body>, _peer: Peer) -> Response<Body> {
            if request.uri().path() == "/f" {
                return Response::new(outpost_server::body::full("frag"));
            }
            let mut response = Response::new(outpost_server::body::full(self.0.clone()));
            response
                .headers_mut()
                .insert("content-encoding", "gzip".parse().unwrap());
            response
                .headers_mut()
                .insert("surrogate-control", "content=\"ESI/1.0\"".parse().unwrap());
            response
        }
    }
    let front = EsiFront::new(
        Arc::new(Gzipped(compressed)),
        &EsiConfig::default(),
        Default::default(),
    );
    for (accept, coding) in [
        ("gzip", Some("gzip")),
        ("br;q=1, gzip", Some("br")),
        ("identity", None),
    ] {
        let request = Request::get("/p")
            .header("host", "site.test")
            .header("accept-encoding", accept)
            .body(outpost_server::body::empty())
            .unwrap();
        let response = front.handle(request, peer()).await;
        assert_eq!(
            response
                .headers()
                .get("content-encoding")
                .map(|v| v.to_str().unwrap()),
            coding
        );
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let mut text = String::new();
        match coding {
            Some("gzip") => {
                flate2::read::GzDecoder::new(&bytes[..])
                    .read_to_string(&mut text)
                    .unwrap();
            }
            Some(_) => {
                brotli::Decompressor::new(&bytes[..], 4096)
                    .read_to_string(&mut text)
                    .unwrap();
            }
            None => text = String::from_utf8(bytes.to_vec()).unwrap(),
        }
        assert_eq!(text, "<p>frag</p>", "{accept}");
    }
}

#[tokio::test]
async fn malformed_markup_never_panics() {
    let nasty = [
        "<esi:include",
        "<esi:include src=\"/f\"",
        "<esi:try><esi:attempt>",
        "<esi:choose><esi:when test=\"(((\">x",
        "</esi:try></esi:choose></esi:vars>",
        "<!--esi <!--esi --> --> -->",
        "<esi:inline>no name</esi:inline>",
        "<esi:except>stray</esi:except><esi:attempt>stray</esi:attempt>",
        "<esi:when test=\"1\">outside</esi:when><esi:otherwise>o</esi:otherwise>",
        "<esi:vars>$($($(</esi:vars>",
        "\u{0}\u{ff}<esi:\u{1}>",
    ];
    let site = Site::with([("/f", Doc::plain("f"))]);
    let front = front(&site, EsiConfig::default());
    for (i, body) in nasty.iter().enumerate() {
        let path: &'static str = Box::leak(format!("/n{i}").into_boxed_str());
        site.docs
            .lock()
            .unwrap()
            .insert(path.into(), Doc::esi(*body));
        let (status, _, _) = get(&front, path, &[]).await;
        assert!(status == 200 || status == 502, "{body}: {status}");
    }
}

/// Content a try or choose holds outside its branches, under an unknown element, an ESI
/// comment or vars, or as stray `-->`, arriving a byte at a time (a piece each): the page
/// used to wait forever once the part's output held 256 pieces behind the try's result.
#[tokio::test]
async fn content_outside_the_branches_of_a_try_or_choose_is_dropped_and_never_stalls_the_page() {
    let filler = "x".repeat(600);
    let bodies = [
        format!("a<esi:try><esi:t>{filler}</esi:t><esi:attempt>b</esi:attempt></esi:try>c"),
        format!("a<esi:try><!--esi {filler} --><esi:attempt>b</esi:attempt></esi:try>c"),
        format!("a<esi:try><esi:vars>{filler}</esi:vars><esi:attempt>b</esi:attempt></esi:try>c"),
        format!(
            "a<esi:try>{}<esi:attempt>b</esi:attempt></esi:try>c",
            "-->".repeat(300)
        ),
        format!("a<esi:try><esi:t><esi:include src=\"/f\"/>{filler}</esi:t></esi:try>c"),
        format!(
            "a<esi:choose><esi:t>{filler}</esi:t><esi:when test=\"1==1\">b</esi:when></esi:choose>c"
        ),
        // Never closed: the end of the page closes it.
        format!("a<esi:try><esi:t>{filler}"),
    ];
    let site = Site::with([("/f", Doc::plain("f"))]);
    let front = front(&site, EsiConfig::default());
    for (i, body) in bodies.iter().enumerate() {
        let path: &'static str = Box::leak(format!("/outside{i}").into_boxed_str());
        site.docs.lock().unwrap().insert(
            path.into(),
            Doc {
                chunk: 1,
                ..Doc::esi(body.clone())
            },
        );
        let (status, _, page) =
            tokio::time::timeout(Duration::from_secs(20), get(&front, path, &[]))
                .await
                .unwrap_or_else(|_| panic!("page {i} never finished"));
        assert_eq!(status, 200, "page {i}");
        let page = page.unwrap();
        assert!(
            !page.contains('x') && !page.contains("-->"),
            "page {i}: {page}"
        );
        assert!(page.starts_with('a'), "page {i}: {page}");
    }
    assert_eq!(
        site.count.load(Ordering::SeqCst),
        bodies.len(),
        "no include outside a branch is fetched"
    );
}

// ----- the property: parallel, streamed assembly equals a sequential reference -----

/// A page as a tree, rendered to ESI markup for the edge and evaluated directly for the
/// reference.
#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Include {
        src: usize,
        alt: Option<usize>,
        continue_on_error: bool,
    },
    Try(Vec<Node>, Vec<Node>),
    Choose(Vec<(String, Vec<Node>)>, Option<Vec<Node>>),
    Vars(String),
    Remove(String),
}

#[derive(Debug, Clone)]
struct Fragment {
    nodes: Vec<Node>,
    esi: bool,
    fails: bool,
    delay_ms: u64,
    chunk: usize,
}

fn render(nodes: &[Node]) -> String {
    let mut out = String::new();
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Include {
                src,
                alt,
                continue_on_error,
            } => {
                out.push_str(&format!("<esi:include src=\"/f{src}\""));
                if let Some(alt) = alt {
                    out.push_str(&format!(" alt=\"/f{alt}\""));
                }
                if *continue_on_error {
                    out.push_str(" onerror=\"continue\"");
                }
                out.push_str("/>");
            }
            Node::Try(attempt, except) => out.push_str(&format!(
                "<esi:try><esi:attempt>{}</esi:attempt><esi:except>{}</esi:except></esi:try>",
                render(attempt),
                render(except)
            )),
            Node::Choose(whens, otherwise) => {
                out.push_str("<esi:choose>");
                for (group, body) in whens {
                    out.push_str(&format!(
                        "<esi:when test=\"$(HTTP_COOKIE{{group}})=='{group}'\">{}</esi:when>",
                        render(body)
                    ));
                }
                if let Some(body) = otherwise {
                    out.push_str(&format!("<esi:otherwise>{}</esi:otherwise>", render(body)));
                }
                out.push_str("</esi:choose>");
            }
            Node::Vars(name) => out.push_str(&format!(
                "<esi:vars>[$(HTTP_COOKIE{{{name}}}|'none')]</esi:vars>"
            )),
            Node::Remove(t) => out.push_str(&format!("<esi:remove>{t}</esi:remove>")),
        }
    }
    out
}

/// Why the reference gave up: a fragment that failed (handled by alt, onerror and try), or a
/// failure no construct handles (the whole page fails).
#[derive(Debug)]
enum Fail {
    Include,
    Page,
}

const COOKIES: [(&str, &str); 2] = [("group", "b"), ("name", "Ada")];

fn reference(nodes: &[Node], frags: &[Fragment], depth: usize) -> Result<String, Fail> {
    let mut out = String::new();
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Include {
                src,
                alt,
                continue_on_error,
            } => {
                let fetched = fetch(*src, frags, depth).or_else(|fail| match (fail, alt) {
                    (Fail::Include, Some(alt)) => fetch(*alt, frags, depth),
                    (fail, _) => Err(fail),
                });
                match fetched {
                    Ok(text) => out.push_str(&text),
                    Err(Fail::Include) if *continue_on_error => {}
                    Err(Fail::Include) => return Err(Fail::Page),
                    Err(Fail::Page) => return Err(Fail::Page),
                }
            }
            Node::Try(attempt, except) => {
                // The attempt fails when an include in it (not in a fragment it includes)
                // fails; failures inside included fragments fail the page.
                if attempt_fails(attempt, frags) {
                    out.push_str(&reference(except, frags, depth)?);
                } else {
                    out.push_str(&reference(attempt, frags, depth)?);
                }
            }
            Node::Choose(whens, otherwise) => {
                if let Some(body) = taken(whens, otherwise) {
                    out.push_str(&reference(body, frags, depth)?);
                }
            }
            Node::Vars(name) => {
                let value = COOKIES
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or("none", |(_, v)| v);
                out.push_str(&format!("[{value}]"));
            }
            Node::Remove(_) => {}
        }
    }
    Ok(out)
}

fn taken<'a>(
    whens: &'a [(String, Vec<Node>)],
    otherwise: &'a Option<Vec<Node>>,
) -> Option<&'a Vec<Node>> {
    whens
        .iter()
        .find(|(g, _)| g == COOKIES[0].1)
        .map(|(_, body)| body)
        .or(otherwise.as_ref())
}

fn attempt_fails(nodes: &[Node], frags: &[Fragment]) -> bool {
    nodes.iter().any(|n| match n {
        Node::Include {
            src,
            alt,
            continue_on_error,
        } => !continue_on_error && frags[*src].fails && alt.is_none_or(|alt| frags[alt].fails),
        Node::Choose(whens, otherwise) => {
            taken(whens, otherwise).is_some_and(|b| attempt_fails(b, frags))
        }
        _ => false,
    })
}

/// At most how many includes expanding `nodes` starts, with `expanded[i]` for fragment i.
fn include_bound(nodes: &[Node], frags: &[Fragment], expanded: &[u64]) -> u64 {
    let sub = |i: usize| if frags[i].esi { expanded[i] } else { 0 };
    nodes
        .iter()
        .map(|n| match n {
            Node::Include { src, alt, .. } => 1u64
                .saturating_add(sub(*src))
                .saturating_add(alt.map_or(0, sub)),
            Node::Try(a, e) => {
                include_bound(a, frags, expanded).saturating_add(include_bound(e, frags, expanded))
            }
            Node::Choose(w, o) => w
                .iter()
                .map(|(_, b)| include_bound(b, frags, expanded))
                .chain(o.iter().map(|b| include_bound(b, frags, expanded)))
                .fold(0u64, u64::saturating_add),
            _ => 0,
        })
        .fold(0u64, u64::saturating_add)
}

fn fetch(index: usize, frags: &[Fragment], depth: usize) -> Result<String, Fail> {
    let frag = &frags[index];
    if frag.fails {
        return Err(Fail::Include);
    }
    if frag.esi {
        reference(&frag.nodes, frags, depth + 1)
    } else {
        Ok(render(&frag.nodes))
    }
}

fn text() -> impl Strategy<Value = String> {
    "[a-z <>/\"=-]{0,12}".prop_map(|s| s.replace("<esi", "<xsi").replace("<!--esi", "<!--xsi"))
}

/// Nodes that include only fragments with a higher index than `from` (so there are no
/// cycles), up to `frags`.
fn nodes(from: usize, frags: usize) -> impl Strategy<Value = Vec<Node>> {
    let include = (
        from + 1..frags.max(from + 2),
        proptest::option::of(from + 1..frags.max(from + 2)),
        any::<bool>(),
    )
        .prop_map(move |(src, alt, continue_on_error)| Node::Include {
            src: src.min(frags - 1),
            alt: alt.map(|a| a.min(frags - 1)),
            continue_on_error,
        });
    let leaf = prop_oneof![
        3 => text().prop_map(Node::Text),
        3 => include,
        1 => prop_oneof![Just("name".to_owned()), Just("other".to_owned())].prop_map(Node::Vars),
        1 => text().prop_map(Node::Remove),
    ];
    let node = leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            (
                proptest::collection::vec(inner.clone(), 0..3),
                proptest::collection::vec(inner.clone(), 0..3)
            )
                .prop_map(|(a, e)| Node::Try(a, e)),
            (
                proptest::collection::vec(
                    (
                        prop_oneof![Just("a".to_owned()), Just("b".to_owned())],
                        proptest::collection::vec(inner.clone(), 0..3)
                    ),
                    0..3
                ),
                proptest::option::of(proptest::collection::vec(inner, 0..3))
            )
                .prop_map(|(w, o)| Node::Choose(w, o)),
        ]
    });
    proptest::collection::vec(node, 0..6)
}

fn site_strategy() -> impl Strategy<Value = Vec<Fragment>> {
    const FRAGS: usize = 8;
    let fragments: Vec<_> = (0..FRAGS)
        .map(|i| {
            (
                if i + 1 < FRAGS {
                    nodes(i, FRAGS).boxed()
                } else {
                    Just(vec![Node::Text("leaf".into())]).boxed()
                },
                proptest::bool::weighted(if i == 0 { 0.0 } else { 0.2 }),
                0..4u64,
                1..40usize,
            )
                .prop_map(|(nodes, fails, delay_ms, chunk)| Fragment {
                    nodes,
                    esi: false,
                    fails,
                    delay_ms,
                    chunk,
                })
        })
        .collect();
    fragments
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn streamed_parallel_assembly_equals_the_sequential_reference(frags in site_strategy(), esi_mask in any::<u8>()) {
        let mut frags = frags;
        for (i, frag) in frags.iter_mut().enumerate() {
            // Fragment 0 is the template; about half the others are plain.
            frag.esi = i == 0 || esi_mask & (1 << i) != 0;
        }
        let site = Arc::new(Site::default());
        for (i, frag) in frags.iter().enumerate() {
            site.docs.lock().unwrap().insert(format!("/f{i}"), Doc {
                status: if frag.fails { 503 } else { 200 },
                delay: Duration::from_millis(frag.delay_ms),
                chunk: frag.chunk,
                ..if frag.esi { Doc::esi(render(&frag.nodes)) } else { Doc::plain(render(&frag.nodes)) }
            });
        }
        let mut expanded = vec![0u64; frags.len()];
        for i in (0..frags.len()).rev() {
            expanded[i] = include_bound(&frags[i].nodes, &frags, &expanded);
        }
        prop_assume!(expanded[0] <= 2_000);
        let expected = reference(&frags[0].nodes, &frags, 0);
        let front = front(&site, EsiConfig { max_depth: 10, max_includes: 10_000, ..EsiConfig::default() });
        let (status, _, body) = runtime().block_on(get(&front, "/f0", &[("cookie", "group=b; name=Ada")]));
        match expected {
            Ok(expected) => {
                prop_assert_eq!(status, StatusCode::OK);
                prop_assert_eq!(body, Ok(expected));
            }
            Err(_) => prop_assert!(status == StatusCode::BAD_GATEWAY || body.is_err(), "{status} {body:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_that_answer_quickly_give_a_derived_head() {
    let fragment = |body: &str| Doc {
        etag: Some("\"f\"".into()),
        cache_control: "max-age=300",
        ..Doc::plain(body)
    };
    let includes: String = (0..10)
        .map(|i| format!("<div><esi:include src=\"/f{i}\"/></div>"))
        .collect();
    let mut docs = vec![(
        "/page",
        Doc {
            etag: Some("\"t\"".into()),
            ..Doc::esi(format!("<html>{includes}</html>"))
        },
    )];
    let names: Vec<&'static str> = (0..10)
        .map(|i| &*Box::leak(format!("/f{i}").into_boxed_str()))
        .collect();
    for name in &names {
        docs.push((name, fragment("x")));
    }
    let site = Site::with(docs);
    // The default (500 µs) is what a release build's cached parts take; a test build is
    // several times slower.
    let config = EsiConfig {
        head_wait_us: 20_000,
        ..EsiConfig::default()
    };
    let front = front(&site, config);
    let (_, headers, body) = get(&front, "/page", &[]).await;
    assert_eq!(body.unwrap().matches('x').count(), 10);
    assert_eq!(headers["cache-control"], "max-age=60");
    assert!(headers.contains_key("etag"));
}

#[tokio::test]
async fn content_after_a_failed_include_in_an_attempt_does_not_stop_the_page() {
    // The attempt fails as soon as its include answers 503, while the rest of the attempt is
    // still arriving a byte at a time.
    let site = Site::with([
        (
            "/p",
            Doc {
                chunk: 1,
                ..Doc::esi(
                    r#"<esi:try><esi:attempt><esi:include src="/f1"/>more <esi:include src="/f2"/></esi:attempt><esi:except>"</esi:except></esi:try>after"#,
                )
            },
        ),
        (
            "/f1",
            Doc {
                status: 503,
                ..Doc::plain("")
            },
        ),
        ("/f2", Doc::plain("f2")),
    ]);
    let front = front(&site, EsiConfig::default());
    let (_, _, body) = get(&front, "/p", &[]).await;
    assert_eq!(body.unwrap(), "\"after");
}
