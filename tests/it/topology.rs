//! The tiers together: consistent hashing over parents, failover, purge across the topology,
//! metrics, and the demo origin behind `outpost up`.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::{Outpost, Reply, TestOrigin, cache_status, client, get_text, topology};

#[tokio::test]
async fn each_object_is_fetched_once_from_the_origin_however_many_edges_ask() {
    let origin = TestOrigin::start(|seen, _| {
        Reply::ok(&[("cache-control", "max-age=600")], seen.target.clone())
    })
    .await;
    let cdn = Outpost::up(&topology(&origin.url, 2, 3, ""), 5);
    let http = client();
    let mut parent_of: HashMap<String, String> = HashMap::new();
    for edge in ["edge-0", "edge-1", "edge-2"] {
        for i in 0..20 {
            let path = format!("/objects/{i}");
            // Clients of every edge ask for the same site.
            let response = http
                .get(format!("{}{path}", cdn.data(edge)))
                .header("host", "www.outpost.test")
                .send()
                .await
                .unwrap();
            let status = cache_status(&response);
            let parent = status.split(';').next().unwrap().to_owned();
            assert!(parent.starts_with("parent-"), "{status}");
            // Every edge picks the same parent for the same object.
            assert_eq!(
                parent_of.entry(path.clone()).or_insert(parent.clone()),
                &parent
            );
            assert_eq!(response.text().await.unwrap(), path);
        }
    }
    assert_eq!(origin.hits(), 20, "one origin fetch per object");
    let used: std::collections::HashSet<_> = parent_of.values().collect();
    assert_eq!(used.len(), 2, "objects are spread over both parents");
}

#[tokio::test]
async fn an_edge_fails_over_to_the_next_parent_and_then_to_the_origin() {
    let origin = TestOrigin::start(|seen, _| {
        Reply::ok(&[("cache-control", "no-store")], seen.target.clone())
    })
    .await;
    // One live parent in its own process, one address where nothing listens.
    let mut live = Outpost::spawn(
        &[
            "parent",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--upstream",
            &origin.url,
            "--name",
            "parent-live",
        ],
        1,
    );
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let live_addr = live
        .data("parent-live")
        .trim_start_matches("http://")
        .to_owned();
    let config = format!(
        "[health]\ninterval_ms = 100\ntimeout_ms = 200\nrise = 1\nfall = 1\n\n[origin]\nurl = \"{}\"\n\n\
         [[parents]]\nname = \"parent-dead\"\nlisten = \"{dead_addr}\"\nadmin = \"127.0.0.1:0\"\n\n\
         [[parents]]\nname = \"parent-live\"\nlisten = \"{live_addr}\"\nadmin = \"127.0.0.1:1\"\n\n\
         [[edges]]\nname = \"edge-0\"\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n",
        origin.url
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    std::fs::write(&path, config).unwrap();
    let edge = Outpost::spawn_edge(&path, "edge-0");
    let http = client();
    for i in 0..10 {
        let response = http
            .get(format!("{}/o/{i}", edge.data("edge-0")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            cache_status(&response).starts_with("parent-live"),
            "{}",
            cache_status(&response)
        );
    }
    // With no parent left, the edge goes to the origin itself.
    assert!(live.terminate());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let response = http
        .get(format!("{}/o/after", edge.data("edge-0")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        cache_status(&response).starts_with("edge-0"),
        "{}",
        cache_status(&response)
    );
    // The log is read from the process's stderr by a thread: give it a moment.
    let wait = std::time::Instant::now();
    while !edge.log().contains("no healthy parent") && wait.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(edge.log().contains("no healthy parent"), "{}", edge.log());
}

#[tokio::test]
async fn purge_by_url_and_tag_reaches_every_node_and_needs_the_token() {
    let origin = TestOrigin::start(|seen, n| {
        Reply::ok(
            &[
                ("cache-control", "max-age=600"),
                ("surrogate-key", "catalog"),
            ],
            format!("{}#{n}", seen.target),
        )
    })
    .await;
    let cdn = Outpost::up(&topology(&origin.url, 1, 1, ""), 2);
    let http = client();
    let edge = cdn.data("edge-0").to_owned();
    for path in ["/a", "/b"] {
        get_text(&http, format!("{edge}{path}")).await;
    }
    assert_eq!(origin.hits(), 2);
    let admins = [cdn.admin("edge-0"), cdn.admin("parent-0")];
    let purge = |args: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_outpost"));
        command.arg("purge");
        for admin in admins {
            command.args(["--admin", admin]);
        }
        command
            .args(args)
            .env_remove("OUTPOST_ADMIN_TOKEN")
            .output()
            .unwrap()
    };
    let refused = purge(&["--token", "wrong", "/a"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"));
    let hit = http.get(format!("{edge}/a")).send().await.unwrap();
    assert!(cache_status(&hit).contains("edge-0; hit"));

    let purged = purge(&["--token", "test-token", "/a"]);
    assert!(
        purged.status.success(),
        "{}",
        String::from_utf8_lossy(&purged.stderr)
    );
    let stdout = String::from_utf8_lossy(&purged.stdout);
    assert!(
        stdout.contains("edge-0: purged 1") && stdout.contains("parent-0: purged 1"),
        "{stdout}"
    );
    let miss = http.get(format!("{edge}/a")).send().await.unwrap();
    assert!(
        cache_status(&miss).starts_with("parent-0; fwd=uri-miss"),
        "{}",
        cache_status(&miss)
    );
    assert_eq!(origin.hits(), 3);

    let purged = purge(&["--token", "test-token", "--tag", "catalog"]);
    assert!(purged.status.success());
    assert!(String::from_utf8_lossy(&purged.stdout).contains("edge-0: purged 2"));
    get_text(&http, format!("{edge}/b")).await;
    assert_eq!(origin.hits(), 4);

    // Soft purge keeps the copy for stale-if-error while marking it stale.
    let purged = purge(&["--token", "test-token", "--soft", &format!("{edge}/b")]);
    assert!(purged.status.success());
    let after = http.get(format!("{edge}/b")).send().await.unwrap();
    assert!(
        cache_status(&after).contains("edge-0; fwd=stale"),
        "{}",
        cache_status(&after)
    );
}

#[tokio::test]
async fn nodes_expose_health_and_prometheus_metrics() {
    let origin = TestOrigin::start(|_, _| Reply::ok(&[("cache-control", "max-age=60")], "m")).await;
    let cdn = Outpost::up(&topology(&origin.url, 0, 1, ""), 1);
    let http = client();
    for _ in 0..3 {
        get_text(&http, format!("{}/m", cdn.data("edge-0"))).await;
    }
    let health = http
        .get(format!("{}/health", cdn.admin("edge-0")))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let metrics = cdn.metrics("edge-0").await;
    for line in [
        "outpost_cache_hits_total{node=\"edge-0\",role=\"edge\"} 2",
        "outpost_cache_misses_total{node=\"edge-0\",role=\"edge\"} 1",
        "outpost_requests_total{node=\"edge-0\",role=\"edge\",outcome=\"hit\"} 2",
        "outpost_response_body_bytes_total{node=\"edge-0\",role=\"edge\"} 3",
        "outpost_upstream_latency_seconds_count{node=\"edge-0\",role=\"edge\"} 1",
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    assert!(metrics.contains("outpost_coalesced_waits_total"));
    assert!(metrics.contains("outpost_cache_stale_serves_total"));
}

#[tokio::test]
async fn outpost_up_serves_the_demo_site_through_an_edge_and_drains_on_sigterm() {
    let config = crate::common::demo_topology(2);
    let mut cdn = Outpost::up_process(&config, 4);
    let http = client();
    let edge = cdn.data("edge-0").to_owned();
    let page = http.get(format!("{edge}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.headers()["cache-control"],
        "public, max-age=60, stale-while-revalidate=30"
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("Outpost demo"));
    let asset = html
        .split('"')
        .find(|s| s.starts_with("/assets/app.") && s.ends_with(".js"))
        .unwrap()
        .to_owned();
    let js = http.get(format!("{edge}{asset}")).send().await.unwrap();
    assert_eq!(
        js.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    // Read to the end: until then the object is still arriving, and a second request would
    // join that fetch (collapsed) rather than hit.
    js.text().await.unwrap();
    let again = http.get(format!("{edge}{asset}")).send().await.unwrap();
    assert!(cache_status(&again).contains("edge-0; hit"));
    assert!(
        cdn.log().contains("\"GET / HTTP/1.1\" 200"),
        "access log line"
    );
    assert!(cdn.terminate(), "outpost exits cleanly on SIGTERM");
    assert!(cdn.log().contains("stopped"));
}

#[tokio::test]
async fn without_a_configured_token_each_installation_makes_its_own() {
    let origin =
        TestOrigin::start(|_, _| Reply::ok(&[("cache-control", "max-age=600")], "x")).await;
    let state = tempfile::tempdir().unwrap();
    let toml = topology(&origin.url, 0, 1, "")
        .replace("token = \"test-token\"\n", "")
        .replace(
            "[origin]",
            &format!(
                "[tls]\nstate_dir = \"{}\"\n\n[origin]",
                state.path().display()
            ),
        );
    let cdn = Outpost::up_process(&toml, 1);
    let file = state.path().join("admin-token");
    let token = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert_eq!(token.len(), 48, "a random token: {token}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!cdn.log().contains(&token), "the token is not logged");
    let purge = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_outpost"))
            .arg("purge")
            .args(["--admin", cdn.admin("edge-0")])
            .args(["--config", cdn.config_path().to_str().unwrap()])
            .args(args)
            .env_remove("OUTPOST_ADMIN_TOKEN")
            .output()
            .unwrap()
    };
    // The CLI finds the token where the CDN made it; a guessed one is refused.
    let purged = purge(&["/a"]);
    assert!(
        purged.status.success(),
        "{}",
        String::from_utf8_lossy(&purged.stderr)
    );
    let refused = purge(&["--token", "outpost-dev-token", "/a"]);
    assert!(!refused.status.success());
}
