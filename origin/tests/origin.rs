//! `Origin::handle` end to end on real files in a temporary root.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{
    ACCEPT_RANGES, ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, DATE, ETAG,
    IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, LAST_MODIFIED, LOCATION, RANGE,
};
use http::{HeaderName, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use outpost_origin::{CacheRule, Origin, OriginConfig, OriginError, default_root};
use tempfile::TempDir;

const DATA_LEN: usize = 1000;

fn data() -> Vec<u8> {
    (0..DATA_LEN).map(|i| (i % 251) as u8).collect()
}

fn write(root: &Path, rel: &str, content: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// A site in a temporary directory, served with the default rules.
fn site() -> (TempDir, Origin) {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    write(root, "index.html", b"<!doctype html><title>home</title>");
    write(root, "about.html", b"<!doctype html><title>about</title>");
    write(root, "assets/style.9b1e0d.css", b"body { color: black }");
    write(root, "assets/app.3f9a2c.js", b"console.log(1)");
    write(root, "assets/plain.js", b"console.log(2)");
    write(
        root,
        "assets/logo.svg",
        b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
    );
    write(root, "data.bin", &data());
    write(
        root,
        "docs/index.html",
        b"<!doctype html><title>docs</title>",
    );
    write(root, "live/stream.m3u8", b"#EXTM3U\n");
    write(root, "live/manifest.mpd", b"<MPD/>");
    write(root, "live/seg1.ts", b"\x47\x00\x00");
    write(root, "live/seg1.m4s", b"\x00\x00\x00\x08styp");
    write(root, "a b.txt", b"space");
    write(root, "robots.txt", b"User-agent: *\n");
    std::fs::create_dir_all(root.join("empty")).unwrap();
    let origin = Origin::new(&OriginConfig {
        root: root.to_path_buf(),
        ..OriginConfig::default()
    })
    .unwrap();
    (dir, origin)
}

async fn send(
    origin: &Origin,
    method: Method,
    uri: &str,
    headers: &[(HeaderName, &str)],
) -> (Response<()>, Bytes) {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(name, *value);
    }
    let response: Response<Full<Bytes>> = origin.handle(builder.body(()).unwrap()).await;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (Response::from_parts(parts, ()), body)
}

async fn get(origin: &Origin, uri: &str) -> (Response<()>, Bytes) {
    send(origin, Method::GET, uri, &[]).await
}

fn header(response: &Response<()>, name: HeaderName) -> &str {
    response
        .headers()
        .get(&name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn serves_files_with_validators_and_types() {
    let (_dir, origin) = site();
    let (resp, body) = get(&origin, "/index.html").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(&body[..], b"<!doctype html><title>home</title>");
    assert_eq!(header(&resp, CONTENT_TYPE), "text/html; charset=utf-8");
    assert_eq!(header(&resp, CONTENT_LENGTH), body.len().to_string());
    assert_eq!(header(&resp, ACCEPT_RANGES), "bytes");
    let etag = header(&resp, ETAG);
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
        "{etag}"
    );
    assert_eq!(etag, outpost_representation::strong_etag(&body));
    httpdate::parse_http_date(header(&resp, LAST_MODIFIED)).unwrap();
    httpdate::parse_http_date(header(&resp, DATE)).unwrap();

    for (path, expected) in [
        ("/assets/style.9b1e0d.css", "text/css; charset=utf-8"),
        ("/assets/app.3f9a2c.js", "text/javascript; charset=utf-8"),
        ("/assets/logo.svg", "image/svg+xml; charset=utf-8"),
        ("/robots.txt", "text/plain; charset=utf-8"),
        ("/data.bin", "application/octet-stream"),
        ("/live/stream.m3u8", "application/vnd.apple.mpegurl"),
        ("/live/manifest.mpd", "application/dash+xml"),
        ("/live/seg1.ts", "video/mp2t"),
        ("/live/seg1.m4s", "video/iso.segment"),
        ("/a%20b.txt", "text/plain; charset=utf-8"),
    ] {
        let (resp, _) = get(&origin, path).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&resp, CONTENT_TYPE), expected, "{path}");
    }
}

#[tokio::test]
async fn etag_follows_content() {
    let (dir, origin) = site();
    let (first, _) = get(&origin, "/robots.txt").await;
    let (again, _) = get(&origin, "/robots.txt").await;
    assert_eq!(header(&first, ETAG), header(&again, ETAG));
    let file = std::fs::File::options()
        .write(true)
        .open(dir.path().join("robots.txt"))
        .unwrap();
    std::fs::write(
        dir.path().join("robots.txt"),
        b"User-agent: x\nDisallow: /\n",
    )
    .unwrap();
    file.set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    let (changed, body) = get(&origin, "/robots.txt").await;
    assert_ne!(header(&first, ETAG), header(&changed, ETAG));
    assert_eq!(
        header(&changed, ETAG),
        outpost_representation::strong_etag(&body)
    );
    // A modification time in the future is never announced as Last-Modified.
    let lm = httpdate::parse_http_date(header(&changed, LAST_MODIFIED)).unwrap();
    assert!(lm <= SystemTime::now());
}

#[tokio::test]
async fn not_modified_by_etag_and_by_date() {
    let (_dir, origin) = site();
    let (resp, _) = get(&origin, "/about.html").await;
    let etag = header(&resp, ETAG).to_owned();
    let last_modified = header(&resp, LAST_MODIFIED).to_owned();

    let (resp, body) = send(
        &origin,
        Method::GET,
        "/about.html",
        &[(IF_NONE_MATCH, &etag)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(header(&resp, ETAG), etag);
    assert!(resp.headers().contains_key(CACHE_CONTROL));
    assert!(!resp.headers().contains_key(CONTENT_TYPE));
    assert!(!resp.headers().contains_key(CONTENT_LENGTH));

    let weak = format!("W/{etag}");
    let (resp, _) = send(
        &origin,
        Method::GET,
        "/about.html",
        &[(IF_NONE_MATCH, &weak)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);

    let (resp, _) = send(
        &origin,
        Method::GET,
        "/about.html",
        &[(IF_NONE_MATCH, "\"other\"")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);

    let (resp, body) = send(
        &origin,
        Method::GET,
        "/about.html",
        &[(IF_MODIFIED_SINCE, &last_modified)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());

    let long_ago = "Sun, 06 Nov 1994 08:49:37 GMT";
    let (resp, _) = send(
        &origin,
        Method::GET,
        "/about.html",
        &[(IF_MODIFIED_SINCE, long_ago)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);

    let (resp, body) = send(
        &origin,
        Method::GET,
        "/about.html",
        &[(http::header::IF_MATCH, "\"other\"")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
    assert!(body.is_empty());
}

#[tokio::test]
async fn single_range() {
    let (_dir, origin) = site();
    let (resp, body) = send(&origin, Method::GET, "/data.bin", &[(RANGE, "bytes=10-19")]).await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(&body[..], &data()[10..20]);
    assert_eq!(header(&resp, CONTENT_RANGE), "bytes 10-19/1000");
    assert_eq!(header(&resp, CONTENT_LENGTH), "10");

    let (resp, body) = send(&origin, Method::GET, "/data.bin", &[(RANGE, "bytes=-100")]).await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(&body[..], &data()[900..]);

    // If-Range with the current ETag honours the range; a stale one gets the full body.
    let (full, _) = get(&origin, "/data.bin").await;
    let etag = header(&full, ETAG).to_owned();
    let (resp, _) = send(
        &origin,
        Method::GET,
        "/data.bin",
        &[(RANGE, "bytes=0-0"), (IF_RANGE, &etag)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    let (resp, body) = send(
        &origin,
        Method::GET,
        "/data.bin",
        &[(RANGE, "bytes=0-0"), (IF_RANGE, "\"stale\"")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body.len(), DATA_LEN);
}

#[tokio::test]
async fn multi_range_is_multipart() {
    let (_dir, origin) = site();
    let (resp, body) = send(
        &origin,
        Method::GET,
        "/data.bin",
        &[(RANGE, "bytes=0-4, 990-")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    let content_type = header(&resp, CONTENT_TYPE);
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap();
    assert_eq!(header(&resp, CONTENT_LENGTH), body.len().to_string());
    let mut expected = Vec::new();
    for (start, end) in [(0, 4), (990, 999)] {
        expected.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {start}-{end}/1000\r\n\r\n"
            )
            .as_bytes(),
        );
        expected.extend_from_slice(&data()[start..=end]);
        expected.extend_from_slice(b"\r\n");
    }
    expected.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    assert_eq!(&body[..], &expected[..]);
}

#[tokio::test]
async fn unsatisfiable_range() {
    let (_dir, origin) = site();
    let (resp, body) = send(&origin, Method::GET, "/data.bin", &[(RANGE, "bytes=5000-")]).await;
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&resp, CONTENT_RANGE), "bytes */1000");
    assert!(body.is_empty());
    // An invalid Range is ignored.
    let (resp, body) = send(&origin, Method::GET, "/data.bin", &[(RANGE, "bytes=5-2")]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body.len(), DATA_LEN);
}

#[tokio::test]
async fn head_has_headers_but_no_body() {
    let (_dir, origin) = site();
    let (get_resp, get_body) = get(&origin, "/data.bin").await;
    let (resp, body) = send(&origin, Method::HEAD, "/data.bin", &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(body.is_empty());
    assert_eq!(header(&resp, CONTENT_LENGTH), get_body.len().to_string());
    for name in [
        ETAG,
        LAST_MODIFIED,
        CONTENT_TYPE,
        CACHE_CONTROL,
        ACCEPT_RANGES,
    ] {
        assert_eq!(header(&resp, name.clone()), header(&get_resp, name));
    }
    let (resp, body) = send(&origin, Method::HEAD, "/missing", &[]).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(body.is_empty());
}

#[tokio::test]
async fn other_methods_are_not_allowed() {
    let (_dir, origin) = site();
    for method in [
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
        Method::PATCH,
    ] {
        let (resp, _) = send(&origin, method.clone(), "/index.html", &[]).await;
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(header(&resp, ALLOW), "GET, HEAD");
    }
}

#[tokio::test]
async fn missing_is_404_with_text() {
    let (_dir, origin) = site();
    for path in [
        "/nope.html",
        "/assets/nope.js",
        "/index.html/",
        "/nope/",
        "/empty/",
    ] {
        let (resp, body) = get(&origin, path).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(header(&resp, CONTENT_TYPE), "text/plain; charset=utf-8");
        assert!(!body.is_empty());
    }
}

fn assert_refused(status: StatusCode, path: &str) {
    assert!(
        status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND,
        "{path} gave {status}"
    );
}

#[tokio::test]
async fn traversal_is_refused_in_every_spelling() {
    let (dir, origin) = site();
    // Something worth stealing right next to the root, reachable by one `..`.
    let secret = dir.path().parent().unwrap().join(format!(
        "outpost-secret-{}",
        dir.path().file_name().unwrap().to_str().unwrap()
    ));
    std::fs::write(&secret, b"secret").unwrap();
    let secret_name = secret.file_name().unwrap().to_str().unwrap().to_owned();

    let mut paths = vec![
        "/../etc/passwd".to_owned(),
        "/%2e%2e/etc/passwd".to_owned(),
        "/%2E%2E/etc/passwd".to_owned(),
        "/a/%2e%2e/%2e%2e/x".to_owned(),
        "/..%2fetc".to_owned(),
        "/..%2fetc%2fpasswd".to_owned(),
        "/assets/..%2f..%2fetc%2fpasswd".to_owned(),
        "/..%5c..%5cetc%5cpasswd".to_owned(),
        "/index.html%00.txt".to_owned(),
        "/./index.html".to_owned(),
        format!("/../{secret_name}"),
        format!("/%2e%2e/{secret_name}"),
        format!("/..%2f{secret_name}"),
        format!("/docs/../../{secret_name}"),
        format!("/..%5c{secret_name}"),
    ];
    // A raw backslash is refused by the http crate's URI parser already; if it ever gets
    // through, the origin must refuse it too.
    for raw in ["/..\\etc\\passwd", "/a\\..\\..\\x"] {
        if Request::builder().uri(raw).body(()).is_ok() {
            paths.push(raw.to_owned());
        }
    }
    for path in &paths {
        let (resp, body) = get(&origin, path).await;
        assert_refused(resp.status(), path);
        assert_ne!(&body[..], b"secret", "{path}");
    }
    std::fs::remove_file(&secret).unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn symlinks_out_of_the_root_are_refused() {
    let (dir, origin) = site();
    let outside = TempDir::new().unwrap();
    std::fs::write(outside.path().join("secret.txt"), b"secret").unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        dir.path().join("leak.txt"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("outdir")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("passwd")).unwrap();
    for path in [
        "/leak.txt",
        "/outdir/secret.txt",
        "/outdir/",
        "/outdir",
        "/passwd",
    ] {
        let (resp, body) = get(&origin, path).await;
        assert_refused(resp.status(), path);
        assert_ne!(&body[..], b"secret", "{path}");
    }
    // A symlink that stays inside the root is fine.
    std::os::unix::fs::symlink(
        dir.path().join("robots.txt"),
        dir.path().join("robots2.txt"),
    )
    .unwrap();
    let (resp, _) = get(&origin, "/robots2.txt").await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn directory_index_and_redirect() {
    let (_dir, origin) = site();
    let (resp, body) = get(&origin, "/").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(&body[..], b"<!doctype html><title>home</title>");
    assert_eq!(header(&resp, CONTENT_TYPE), "text/html; charset=utf-8");

    let (resp, body) = get(&origin, "/docs/").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(&body[..], b"<!doctype html><title>docs</title>");
    assert_eq!(
        header(&resp, CACHE_CONTROL),
        "public, max-age=60, stale-while-revalidate=30"
    );

    let (resp, _) = get(&origin, "/docs").await;
    assert_eq!(resp.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(header(&resp, LOCATION), "/docs/");
    let (resp, _) = get(&origin, "/docs?lang=en").await;
    assert_eq!(header(&resp, LOCATION), "/docs/?lang=en");
    // Never a protocol-relative redirect to another host.
    let (resp, _) = get(&origin, "//docs").await;
    assert_eq!(header(&resp, LOCATION), "/docs/");
}

#[tokio::test]
async fn cache_rules_by_path() {
    let (_dir, origin) = site();
    for (path, expected) in [
        (
            "/assets/app.3f9a2c.js",
            "public, max-age=31536000, immutable",
        ),
        (
            "/assets/style.9b1e0d.css",
            "public, max-age=31536000, immutable",
        ),
        ("/assets/plain.js", "public, max-age=300"),
        ("/assets/logo.svg", "public, max-age=300"),
        ("/", "public, max-age=60, stale-while-revalidate=30"),
        (
            "/index.html",
            "public, max-age=60, stale-while-revalidate=30",
        ),
        (
            "/about.html",
            "public, max-age=60, stale-while-revalidate=30",
        ),
        ("/live/stream.m3u8", "public, max-age=2"),
        ("/live/manifest.mpd", "public, max-age=2"),
        ("/live/seg1.ts", "public, max-age=300"),
        ("/robots.txt", "public, max-age=300"),
    ] {
        let (resp, _) = get(&origin, path).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&resp, CACHE_CONTROL), expected, "{path}");
    }
}

#[tokio::test]
async fn no_matching_rule_means_no_cache_control() {
    let (dir, _) = site();
    let origin = Origin::new(&OriginConfig {
        root: dir.path().to_path_buf(),
        cache_rules: vec![CacheRule {
            path: "/assets/**".into(),
            cache_control: "no-store".into(),
            ..CacheRule::default()
        }],
        ..OriginConfig::default()
    })
    .unwrap();
    let (resp, _) = get(&origin, "/robots.txt").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(!resp.headers().contains_key(CACHE_CONTROL));
    let (resp, _) = get(&origin, "/assets/plain.js").await;
    assert_eq!(header(&resp, CACHE_CONTROL), "no-store");
}

#[test]
fn config_errors() {
    let missing = OriginConfig {
        root: PathBuf::from("/definitely/not/here"),
        ..OriginConfig::default()
    };
    assert!(matches!(
        Origin::new(&missing),
        Err(OriginError::Root { .. })
    ));

    let file = tempfile::NamedTempFile::new().unwrap();
    let not_dir = OriginConfig {
        root: file.path().to_path_buf(),
        ..OriginConfig::default()
    };
    assert!(matches!(
        Origin::new(&not_dir),
        Err(OriginError::RootNotDirectory { .. })
    ));

    let bad_glob = OriginConfig {
        cache_rules: vec![CacheRule {
            path: "{unclosed".into(),
            cache_control: "public".into(),
            ..CacheRule::default()
        }],
        ..OriginConfig::default()
    };
    let err = Origin::new(&bad_glob).unwrap_err();
    assert!(err.to_string().contains("cache rule 0"), "{err}");
}

#[test]
fn config_from_toml() {
    let config: OriginConfig = toml::from_str("").unwrap();
    assert_eq!(config.root, default_root());
    assert_eq!(config.cache_rules, outpost_origin::default_rules());
    Origin::new(&config).unwrap();

    let config: OriginConfig = toml::from_str(
        r#"
        root = "/srv/www"
        [[cache_rules]]
        path = "**/*.html"
        cache_control = "no-cache"
        "#,
    )
    .unwrap();
    assert_eq!(config.root, PathBuf::from("/srv/www"));
    assert_eq!(config.cache_rules.len(), 1);

    assert!(toml::from_str::<OriginConfig>("rooot = \"/x\"").is_err());
    assert!(
        toml::from_str::<OriginConfig>(
            "[[cache_rules]]\npath = \"**\"\ncache_control = \"x\"\nttl = 1"
        )
        .is_err()
    );

    // The default config round-trips.
    let text = toml::to_string(&OriginConfig::default()).unwrap();
    let back: OriginConfig = toml::from_str(&text).unwrap();
    assert_eq!(back.cache_rules, outpost_origin::default_rules());
}

// ---- the demo site ----

fn demo_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            demo_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn demo_urls() -> Vec<String> {
    let root = default_root();
    let mut files = Vec::new();
    demo_files(&root, &mut files);
    files.sort();
    files
        .iter()
        .map(|f| format!("/{}", f.strip_prefix(&root).unwrap().to_str().unwrap()))
        .collect()
}

#[tokio::test]
async fn every_demo_file_is_served() {
    let origin = Origin::new(&OriginConfig::default()).unwrap();
    let urls = demo_urls();
    assert!(urls.contains(&"/index.html".to_owned()), "{urls:?}");
    for url in &urls {
        let (resp, body) = get(&origin, url).await;
        assert_eq!(resp.status(), StatusCode::OK, "{url}");
        assert!(!body.is_empty(), "{url}");
        assert!(resp.headers().contains_key(CACHE_CONTROL), "{url}");
    }
    let (resp, body) = get(&origin, "/").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        std::str::from_utf8(&body)
            .unwrap()
            .contains("<title>Outpost demo</title>")
    );
}

#[tokio::test]
async fn demo_links_resolve_and_fingerprints_match_content() {
    let origin = Origin::new(&OriginConfig::default()).unwrap();
    for url in demo_urls() {
        let (resp, body) = get(&origin, &url).await;
        // `name.<hex>.ext`: the hex is the start of the content's ETag.
        let name = url.rsplit('/').next().unwrap();
        let parts: Vec<&str> = name.split('.').collect();
        if parts.len() == 3
            && parts[1].len() >= 6
            && parts[1].bytes().all(|b| b.is_ascii_hexdigit())
        {
            let etag = header(&resp, ETAG).trim_matches('"').to_owned();
            assert!(
                etag.starts_with(parts[1]),
                "{url}: fingerprint should be {}",
                &etag[..parts[1].len()]
            );
            assert_eq!(
                header(&resp, CACHE_CONTROL),
                "public, max-age=31536000, immutable"
            );
        }
        // Every local link in a page points at something served, and nothing points off-site.
        if url.ends_with(".html") {
            let text = std::str::from_utf8(&body).unwrap();
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{url}"
            );
            for attr in ["href=\"", "src=\""] {
                for piece in text.split(attr).skip(1) {
                    let link = piece.split('"').next().unwrap();
                    // The player page's icon is inline (no request), and its stream links are
                    // the page itself with another query.
                    if link.starts_with("data:") {
                        continue;
                    }
                    // Its players come from npm (scripts/player-libs), not from the repository.
                    if link.starts_with("lib/") && !origin.root().join("video/lib").exists() {
                        continue;
                    }
                    let link = if let Some(query) = link.strip_prefix('?') {
                        format!("{url}?{}", query.replace("&amp;", "&"))
                    } else if link.starts_with('/') {
                        link.to_owned()
                    } else {
                        format!("{}{link}", &url[..url.rfind('/').unwrap() + 1])
                    };
                    let (resp, _) = get(&origin, &link).await;
                    // The ESI demo includes one missing fragment on purpose, to show its alt.
                    let expected = if link.ends_with("/missing.html") {
                        StatusCode::NOT_FOUND
                    } else {
                        StatusCode::OK
                    };
                    assert_eq!(resp.status(), expected, "{url} links to {link}");
                }
            }
        }
    }
}
