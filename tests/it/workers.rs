//! Wasm edge workers on a running `outpost up`: the example workers are built for
//! wasm32-wasip2, deployed with `outpost workers deploy` to every edge, and driven over HTTP:
//! each example's behaviour, routing precedence, the key-value store and restarts, every limit
//! and bad input, and redeploys under load.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::common::{Outpost, Reply, TestOrigin, cache_status};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Builds the example workers once per test run; returns the directory of the .wasm files.
fn examples() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("workers/examples");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "--locked", "--target", "wasm32-wasip2"])
            .arg("--manifest-path")
            .arg(root.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(root.join("target"))
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET")
            // scripts/test-all lints the workspace through clippy-driver; the guests are not
            // part of it.
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .env_remove("CLIPPY_ARGS")
            .status()
            .expect("running cargo");
        assert!(
            status.success(),
            "building the example workers failed (is the wasm32-wasip2 target installed? scripts/test-all adds it)"
        );
        root.join("target/wasm32-wasip2/release")
    })
}

/// The path of the example worker `name`, built for wasm32-wasip2.
pub fn example(name: &str) -> String {
    examples()
        .join(format!("{name}.wasm"))
        .to_string_lossy()
        .into_owned()
}

/// Two edges (Amsterdam and Singapore) in front of `origin`, state kept in `state`.
fn topology(origin: &str, state: &Path) -> String {
    format!(
        "[admin]\ntoken = \"t\"\n[tls]\nstate_dir = \"{}\"\n[origin]\nurl = \"{origin}\"\n\
         [[edges]]\nname = \"edge-ams\"\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nlocation = [52.4, 4.9]\n\
         [[edges]]\nname = \"edge-sin\"\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nlocation = [1.35, 103.8]\n",
        state.display()
    )
}

/// Runs `outpost workers ARGS` against the edges of `cdn`; returns (success, stdout+stderr).
fn workers(cdn: &Outpost, args: &[&str]) -> (bool, String) {
    let args = [&["workers"], args].concat();
    crate::common::admin_command(&args, "t", &[cdn.admin("edge-ams"), cdn.admin("edge-sin")])
}

fn deploy(cdn: &Outpost, file: &str, name: &str, extra: &[&str]) {
    let mut args = vec!["deploy", file, "--name", name];
    args.extend_from_slice(extra);
    let (ok, text) = workers(cdn, &args);
    assert!(ok, "deploy {name}: {text}");
    assert!(text.contains("deployed on 2 edges"), "{text}");
}

async fn get(
    edge: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut request = crate::common::client()
        .get(format!("{edge}{path}"))
        .header("host", host);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap_or_default())
}

fn sign(user: &str, secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(user.as_bytes());
    let signature: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{user}.{signature}")
}

fn echo_origin() -> impl Fn(&crate::common::Seen, usize) -> Reply + Send + Sync + 'static {
    |seen, _| {
        let user = seen.header("outpost-user").unwrap_or("-").to_owned();
        let edge = seen.header("outpost-edge").unwrap_or("-").to_owned();
        Reply::ok(
            &[("cache-control", "max-age=60")],
            format!(
                "origin saw {} user={user} via-worker-on={edge}",
                seen.target
            ),
        )
    }
}

#[tokio::test]
async fn example_workers_run_on_their_routes_and_survive_a_restart() {
    let origin = TestOrigin::start(echo_origin()).await;
    let state = tempfile::tempdir().unwrap();
    let toml = topology(&origin.url, state.path());
    let mut cdn = Outpost::up_process(&toml, 2);
    let ams = cdn.data("edge-ams").to_owned();
    let sin = cdn.data("edge-sin").to_owned();

    deploy(
        &cdn,
        &example("passthrough"),
        "pass",
        &["--route", "*.outpost.test/*"],
    );
    deploy(
        &cdn,
        &example("hello"),
        "hello",
        &["--route", "www.outpost.test/hello"],
    );
    deploy(
        &cdn,
        &example("geo"),
        "geo",
        &["--route", "www.outpost.test/geo*"],
    );
    deploy(
        &cdn,
        &example("auth"),
        "auth",
        &[
            "--route",
            "www.outpost.test/private/*",
            "--env",
            "AUTH_TOKEN=s3cret",
            "--env",
            "SESSION_SECRET=k3y",
        ],
    );
    deploy(
        &cdn,
        &example("rewrite"),
        "rewrite",
        &["--route", "www.outpost.test/ab/*", "--env", "B_SHARE=100"],
    );
    deploy(
        &cdn,
        &example("counter"),
        "counter",
        &["--route", "www.outpost.test/count/*"],
    );

    // hello answers from the edge; the origin never sees it.
    let (status, _, body) = get(&ams, "www.outpost.test", "/hello", &[]).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "Hello from the edge edge-ams!\n")
    );
    let (_, _, body) = get(&sin, "www.outpost.test:8080", "/hello", &[]).await;
    assert_eq!(body, "Hello from the edge edge-sin!\n");
    // The exact route /hello, not the prefix: /hello/x falls to the wildcard host.
    let (_, _, body) = get(&ams, "www.outpost.test", "/hello/x", &[]).await;
    assert!(body.starts_with("origin saw /hello/x"), "{body}");
    assert!(origin.seen().iter().all(|s| s.target != "/hello"));

    // geo: the edge's location decides.
    let (_, headers, body) = get(&ams, "www.outpost.test", "/geo", &[]).await;
    assert_eq!(headers["x-region"], "europe");
    assert!(body.contains("edge-ams"), "{body}");
    let (_, headers, _) = get(&sin, "www.outpost.test", "/geo", &[]).await;
    assert_eq!(headers["x-region"], "asia-pacific");

    // auth: 401 without credentials, forwarded with a token or a signed cookie.
    let (status, headers, _) = get(&ams, "www.outpost.test", "/private/a", &[]).await;
    assert_eq!(status, 401);
    assert!(headers.contains_key("www-authenticate"));
    let (status, _, body) = get(
        &ams,
        "www.outpost.test",
        "/private/a",
        &[("authorization", "Bearer s3cret")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("user=token"), "{body}");
    assert!(
        origin
            .seen()
            .iter()
            .all(|s| s.header("authorization").is_none())
    );
    let cookie = format!("outpost_session={}", sign("alice", "k3y"));
    let (status, _, body) = get(
        &ams,
        "www.outpost.test",
        "/private/b",
        &[("cookie", &cookie)],
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("user=alice"), "{body}");
    let forged = format!("outpost_session={}", sign("alice", "wrong"));
    let (status, _, _) = get(
        &ams,
        "www.outpost.test",
        "/private/b",
        &[("cookie", &forged)],
    )
    .await;
    assert_eq!(status, 401);
    // Every other spelling of a private URL meets the same worker: the edge routes the one
    // normal form it also keys, purges and forwards.
    for (path, host) in [
        ("//private/a", "www.outpost.test"),
        ("/%70rivate/a", "www.outpost.test"),
        ("/public/../private/a", "www.outpost.test"),
        ("/private/a", "www.outpost.test."),
        ("/private/a", "WWW.Outpost.Test:8080"),
    ] {
        let answer = crate::common::raw(
            &ams,
            format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{host}{path}: {answer}");
    }
    assert!(
        origin
            .seen()
            .iter()
            .all(|s| !s.target.contains("rivate/a") || s.header("outpost-user").is_some())
    );
    // A host that is not one is refused, and the edge keeps serving.
    let answer = crate::common::raw(
        &ams,
        b"GET / HTTP/1.1\r\nhost: [x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    // rewrite: every new visitor is B here (B_SHARE=100), sticky by cookie; A stays A.
    let (_, headers, body) = get(&ams, "www.outpost.test", "/ab/page", &[]).await;
    assert!(body.starts_with("origin saw /b/ab/page"), "{body}");
    assert_eq!(headers["x-ab-variant"], "B");
    assert!(headers["set-cookie"].to_str().unwrap().starts_with("ab=B"));
    let (_, headers, body) = get(&ams, "www.outpost.test", "/ab/page", &[("cookie", "ab=A")]).await;
    assert!(body.starts_with("origin saw /ab/page"), "{body}");
    assert_eq!(headers["x-ab-variant"], "A");
    assert!(!headers.contains_key("set-cookie"));

    // passthrough on the wildcard host: the request goes through the edge's cache, so the
    // second one is a hit; a host no route covers skips workers entirely.
    let (_, _, body) = get(&ams, "img.outpost.test", "/logo.png", &[]).await;
    assert!(body.contains("via-worker-on=edge-ams"), "{body}");
    let response = crate::common::client()
        .get(format!("{ams}/logo.png"))
        .header("host", "img.outpost.test")
        .send()
        .await
        .unwrap();
    assert!(
        cache_status(&response).contains("edge-ams; hit"),
        "{}",
        cache_status(&response)
    );
    let (_, _, body) = get(&ams, "example.test", "/plain", &[]).await;
    assert!(body.contains("via-worker-on=-"), "{body}");

    // counter: the edge's key-value store.
    for expected in ["1", "2", "3"] {
        let (_, headers, _) = get(&ams, "www.outpost.test", "/count/x", &[]).await;
        assert_eq!(headers["x-count"], expected);
    }
    // Each edge has its own store.
    let (_, headers, _) = get(&sin, "www.outpost.test", "/count/x", &[]).await;
    assert_eq!(headers["x-count"], "1");

    let (ok, list) = workers(&cdn, &["list"]);
    assert!(ok, "{list}");
    assert!(
        list.contains(": auth routes=www.outpost.test/private/*"),
        "{list}"
    );
    assert!(list.contains("env=[AUTH_TOKEN,SESSION_SECRET]"), "{list}");
    assert!(!list.contains("s3cret"), "secrets are never shown: {list}");
    let metrics = cdn.metrics("edge-ams").await;
    assert!(
        metrics.contains(
            "outpost_worker_invocations_total{node=\"edge-ams\",role=\"edge\",worker=\"hello\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("outpost_worker_instantiation_seconds"),
        "{metrics}"
    );
    assert!(!cdn.log().contains("s3cret"), "secrets are never logged");

    // A restart: the workers and their data are still there, without a deploy.
    assert!(cdn.terminate());
    let cdn = Outpost::up_process(&toml, 2);
    let ams = cdn.data("edge-ams").to_owned();
    let (_, _, body) = get(&ams, "www.outpost.test", "/hello", &[]).await;
    assert_eq!(body, "Hello from the edge edge-ams!\n");
    let (_, headers, _) = get(&ams, "www.outpost.test", "/count/x", &[]).await;
    assert_eq!(headers["x-count"], "4");

    // Removed: the route falls back to the next most specific worker (passthrough).
    let (ok, text) = workers(&cdn, &["remove", "hello"]);
    assert!(ok, "{text}");
    let (_, _, body) = get(&ams, "www.outpost.test", "/hello", &[]).await;
    assert!(body.starts_with("origin saw /hello"), "{body}");

    // A catch-all worker that answers everything cannot answer the edge's health check, so
    // it cannot take the edge out of DNS and anycast.
    deploy(&cdn, &example("hello"), "everything", &["--route", "*/*"]);
    let (_, _, body) = get(&ams, "anything.test", "/x", &[]).await;
    assert_eq!(body, "Hello from the edge edge-ams!\n");
    let (status, _, body) = get(&ams, "anything.test", "/_outpost/health", &[]).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
}

#[tokio::test]
async fn every_limit_and_bad_input_fails_alone() {
    let origin = TestOrigin::start(echo_origin()).await;
    let state = tempfile::tempdir().unwrap();
    let cdn = Outpost::up_process(&topology(&origin.url, state.path()), 2);
    let ams = cdn.data("edge-ams").to_owned();
    deploy(
        &cdn,
        &example("hello"),
        "hello",
        &["--route", "www.outpost.test/hello"],
    );
    deploy(
        &cdn,
        &example("misbehave"),
        "bad",
        &[
            "--route",
            "bad.outpost.test/*",
            "--memory",
            "32",
            "--cpu-ms",
            "50",
        ],
    );

    for (path, status, needle) in [
        ("/loop", 500, "CPU-time limit"),
        ("/alloc", 500, "memory limit"),
        ("/panic", 500, "trapped"),
        ("/recurse", 500, "stack overflow"),
        (
            "/fetch-many",
            200,
            "fetched 8, then: ErrorCode::HttpRequestDenied",
        ),
        ("/forbidden", 502, "HttpRequestDenied"),
    ] {
        let (got, _, body) = get(&ams, "bad.outpost.test", path, &[]).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(body.contains(needle), "{path}: {body}");
        // Every other request goes on.
        let (status, _, body) = get(&ams, "www.outpost.test", "/hello", &[]).await;
        assert_eq!(
            (status, body.as_str()),
            (200, "Hello from the edge edge-ams!\n")
        );
    }
    // An endless body is cut off by the CPU-time limit: the client sees it break, never a
    // complete response.
    let response = crate::common::client()
        .get(format!("{ams}/endless"))
        .header("host", "bad.outpost.test")
        .send()
        .await
        .unwrap();
    assert!(
        response.bytes().await.is_err(),
        "an endless body never completes"
    );
    // A client that stops reading cannot hold an instance past the worker's deadline: with
    // one slot and no queue, the stalled response takes the slot, and the deadline frees it.
    deploy(
        &cdn,
        &example("misbehave"),
        "stall",
        &[
            "--route",
            "stall.outpost.test/*",
            "--max-concurrent",
            "1",
            "--max-queued",
            "0",
            "--cpu-ms",
            "30000",
            "--deadline-secs",
            "2",
        ],
    );
    let mut stalled = tokio::net::TcpStream::connect(ams.trim_start_matches("http://"))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut stalled,
        b"GET /endless HTTP/1.1\r\nhost: stall.outpost.test\r\n\r\n",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, _, _) = get(&ams, "stall.outpost.test", "/panic", &[]).await;
    assert_eq!(status, 503, "the stalled response holds the only slot");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, _, body) = get(&ams, "stall.outpost.test", "/panic", &[]).await;
    assert_eq!(status, 500, "the deadline freed the slot: {body}");
    drop(stalled);

    // The key-value quota: past it, the guest gets a clear error and the store keeps what
    // it had.
    deploy(
        &cdn,
        &example("counter"),
        "quota",
        &["--route", "quota.outpost.test/*", "--kv-max-keys", "2"],
    );
    for key in ["a", "b"] {
        let (status, _, _) = get(&ams, "quota.outpost.test", &format!("/count/{key}"), &[]).await;
        assert_eq!(status, 200);
    }
    let (status, _, body) = get(&ams, "quota.outpost.test", "/count/c", &[]).await;
    assert_eq!(status, 500);
    assert!(body.contains("quota"), "{body}");
    let (_, headers, _) = get(&ams, "quota.outpost.test", "/count/a", &[]).await;
    assert_eq!(headers["x-count"], "2");

    let log = cdn.log();
    assert!(
        log.contains("worker=bad"),
        "errors are logged with the worker's name"
    );
    assert!(
        log.contains("misbehave: a deliberate panic"),
        "the worker's stderr is logged"
    );

    // Bad deploys: a clear error, and the running workers stay.
    let dir = tempfile::tempdir().unwrap();
    let core_module = dir.path().join("module.wasm");
    std::fs::write(&core_module, b"\0asm\x01\0\0\0").unwrap();
    let empty_component = dir.path().join("empty.wasm");
    std::fs::write(&empty_component, b"\0asm\x0d\0\x01\0").unwrap();
    let text_file = dir.path().join("notes.wasm");
    std::fs::write(&text_file, b"hello").unwrap();
    let broken = dir.path().join("broken.wasm");
    std::fs::write(&broken, b"\0asm\x0d\0\x01\0\x07\x05garbage").unwrap();
    for (file, needle) in [
        (&core_module, "not a component"),
        (&empty_component, "wasi:http/proxy"),
        (&text_file, "not a WebAssembly file"),
        (&broken, "does not compile"),
    ] {
        let (ok, text) = workers(
            &cdn,
            &[
                "deploy",
                file.to_str().unwrap(),
                "--name",
                "hello",
                "--route",
                "www.outpost.test/*",
            ],
        );
        assert!(!ok, "{text}");
        assert!(text.contains(needle), "{needle}: {text}");
    }
    let (ok, text) = workers(
        &cdn,
        &[
            "deploy",
            &example("hello"),
            "--name",
            "Bad Name",
            "--route",
            "x/*",
        ],
    );
    assert!(!ok && text.contains("worker name"), "{text}");
    let (ok, text) = workers(
        &cdn,
        &[
            "deploy",
            &example("hello"),
            "--name",
            "h",
            "--route",
            "nopath",
        ],
    );
    assert!(!ok && text.contains("needs a path"), "{text}");
    let (_, _, body) = get(&ams, "www.outpost.test", "/hello", &[]).await;
    assert_eq!(body, "Hello from the edge edge-ams!\n");

    // One instance at a time and no queue: a second request while one runs gets 503.
    deploy(
        &cdn,
        &example("misbehave"),
        "bad",
        &[
            "--route",
            "bad.outpost.test/*",
            "--max-concurrent",
            "1",
            "--max-queued",
            "0",
        ],
    );
    let edge = ams.clone();
    let slow = tokio::spawn(async move { get(&edge, "bad.outpost.test", "/sleep", &[]).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (status, _, body) = get(&ams, "bad.outpost.test", "/ok", &[]).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("concurrency limit"), "{body}");
    assert_eq!(slow.await.unwrap().0, 200);
}

#[tokio::test]
async fn redeploying_under_load_fails_no_request() {
    let origin = TestOrigin::start(echo_origin()).await;
    let state = tempfile::tempdir().unwrap();
    let cdn = Outpost::up(&topology(&origin.url, state.path()), 2);
    let ams = cdn.data("edge-ams").to_owned();
    let route = ["--route", "www.outpost.test/*"];
    deploy(
        &cdn,
        &example("misbehave"),
        "app",
        &[&route[..], &["--env", "VERSION=1"]].concat(),
    );

    // Requests in flight (each takes half a second) and more arriving while v2 goes live.
    let mut requests = Vec::new();
    for i in 0..20 {
        let edge = ams.clone();
        requests.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(i * 40)).await;
            get(&edge, "www.outpost.test", "/sleep", &[]).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    deploy(
        &cdn,
        &example("misbehave"),
        "app",
        &[&route[..], &["--env", "VERSION=2"]].concat(),
    );
    let mut versions = Vec::new();
    for request in requests {
        let (status, _, body) = request.await.unwrap();
        assert_eq!(status, 200, "{body}");
        versions.push(body);
    }
    assert!(
        versions.iter().any(|b| b.contains("version 1")),
        "{versions:?}"
    );
    let (_, _, body) = get(&ams, "www.outpost.test", "/sleep", &[]).await;
    assert!(body.contains("version 2"), "{body}");
}
