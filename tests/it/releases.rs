//! The push CDN (issue 14): `outpost push` publishes a directory as a release, staged on
//! every target and then committed on all of them; `outpost releases` lists, rolls back and
//! removes. Driven with the real CLI against a running CDN, checked over HTTP and on disk.

use std::path::Path;
use std::time::Duration;

use crate::common::{Outpost, Reply, TestOrigin, cache_status, client};

/// An origin that answers everything 200, so that a request it sees is a request a release
/// should have answered.
async fn origin() -> TestOrigin {
    TestOrigin::start(|_, _| Reply::ok(&[("cache-control", "max-age=60")], "from the origin")).await
}

/// A topology of `parents` parents and `edges` edges in front of `origin`, state in `state`.
fn topology(origin: &str, state: &Path, parents: usize, edges: usize, extra: &str) -> String {
    let mut toml = format!(
        "[admin]\ntoken = \"t\"\n[tls]\nstate_dir = \"{}\"\n{extra}\n[origin]\nurl = \"{origin}\"\n",
        state.display()
    );
    for i in 0..parents {
        toml.push_str(&format!(
            "[[parents]]\nname = \"parent-{i}\"\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n"
        ));
    }
    for i in 0..edges {
        toml.push_str(&format!(
            "[[edges]]\nname = \"edge-{i}\"\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n"
        ));
    }
    toml
}

/// Runs `outpost ARGS --token t` with `--admin` for each of `nodes`; returns (success, output).
fn outpost(cdn: &Outpost, args: &[&str], nodes: &[&str]) -> (bool, String) {
    let admins: Vec<&str> = nodes.iter().map(|node| cdn.admin(node)).collect();
    crate::common::admin_command(args, "t", &admins)
}

/// Writes `files` (path, content) under `dir`, replacing what was there.
fn site(dir: &Path, files: &[(&str, &str)]) {
    let _ = std::fs::remove_dir_all(dir);
    for (path, content) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

struct Answer {
    status: u16,
    release: String,
    cache_status: String,
    headers: reqwest::header::HeaderMap,
    body: String,
}

async fn get(url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = client().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    Answer {
        status: response.status().as_u16(),
        release: response
            .headers()
            .get("outpost-release")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default(),
        cache_status: cache_status(&response),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

#[tokio::test]
async fn a_push_to_the_parents_is_served_through_every_edge_then_rolled_back_and_removed() {
    let origin = origin().await;
    let state = tempfile::tempdir().unwrap();
    let cdn = Outpost::up(&topology(&origin.url, state.path(), 2, 2, ""), 4);
    let (parents, edges) = (["parent-0", "parent-1"], ["edge-0", "edge-1"]);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("site");
    site(
        &dir,
        &[
            ("index.html", "<h1>one</h1>"),
            ("app.js", "console.log('one')"),
            ("css/site.css", "body{}"),
            (
                "css/site.css.cache-control",
                "public, max-age=31536000, immutable\n",
            ),
            (".hidden", "never published"),
        ],
    );
    let push = |name: &str| {
        let mut args = vec![
            "push",
            dir.to_str().unwrap(),
            "--prefix",
            "/site/",
            "--name",
            name,
        ];
        for edge in edges {
            args.extend(["--purge-edge", cdn.admin(edge)]);
        }
        outpost(&cdn, &args, &parents)
    };
    let (ok, text) = push("one");
    assert!(ok, "{text}");
    assert!(
        text.contains("parent-0") || text.contains(cdn.admin("parent-0")),
        "{text}"
    );
    assert!(text.contains("3 files"), "{text}");

    for edge in edges {
        let page = get(&format!("{}/site/", cdn.data(edge)), &[]).await;
        assert_eq!(
            (page.status, page.body.as_str()),
            (200, "<h1>one</h1>"),
            "{edge}"
        );
        assert_eq!(page.release, "one");
        assert!(
            page.cache_status.contains("; hit; detail=release"),
            "{}",
            page.cache_status
        );
        assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
        assert_eq!(
            page.headers["cache-control"],
            "public, max-age=0, must-revalidate"
        );
        let css = get(&format!("{}/site/css/site.css", cdn.data(edge)), &[]).await;
        assert_eq!(
            css.headers["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(css.headers["content-type"], "text/css; charset=utf-8");
        let hidden = get(&format!("{}/site/.hidden", cdn.data(edge)), &[]).await;
        assert_eq!(
            (hidden.status, hidden.release.as_str()),
            (404, "one"),
            "not in the release"
        );
        // Ranges and validators are answered from the stored object.
        let part = get(
            &format!("{}/site/app.js", cdn.data(edge)),
            &[("range", "bytes=8-10")],
        )
        .await;
        assert_eq!((part.status, part.body.as_str()), (206, "log"));
        let etag = part.headers["etag"].to_str().unwrap().to_owned();
        let again = get(
            &format!("{}/site/app.js", cdn.data(edge)),
            &[("if-none-match", &etag)],
        )
        .await;
        assert_eq!(again.status, 304);
    }
    let asked: Vec<String> = origin.seen().iter().map(|s| s.target.clone()).collect();
    assert!(
        !asked.iter().any(|t| t.starts_with("/site/")),
        "the origin was asked {asked:?}"
    );
    // Outside the release's prefix the CDN pulls from the origin as before.
    let other = get(&format!("{}/elsewhere", cdn.data("edge-0")), &[]).await;
    assert_eq!(
        (other.body.as_str(), other.release.as_str()),
        ("from the origin", "")
    );

    // A second release replaces the first at once, but a page of the first can still pin it.
    site(
        &dir,
        &[
            ("index.html", "<h1>two</h1>"),
            ("app.js", "console.log('two')"),
        ],
    );
    let (ok, text) = push("two");
    assert!(ok, "{text}");
    assert!(text.contains("two replaced one"), "{text}");
    for edge in edges {
        let page = get(&format!("{}/site/index.html", cdn.data(edge)), &[]).await;
        assert_eq!(
            (page.body.as_str(), page.release.as_str()),
            ("<h1>two</h1>", "two"),
            "{edge}"
        );
        let gone = get(&format!("{}/site/css/site.css", cdn.data(edge)), &[]).await;
        assert_eq!(gone.status, 404, "{edge}: a file the new release dropped");
        let pinned = get(
            &format!("{}/site/app.js", cdn.data(edge)),
            &[("outpost-release", "one")],
        )
        .await;
        assert_eq!(
            (pinned.body.as_str(), pinned.release.as_str()),
            ("console.log('one')", "one"),
            "{edge}: {}",
            pinned.cache_status
        );
        let unpinned = get(&format!("{}/site/app.js", cdn.data(edge)), &[]).await;
        assert_eq!(
            unpinned.body, "console.log('two')",
            "{edge}: pinned and unpinned copies stay apart"
        );
    }

    let all = [parents[0], parents[1], edges[0], edges[1]];
    let (ok, text) = outpost(&cdn, &["releases", "list"], &all);
    assert!(ok, "{text}");
    assert_eq!(
        text.matches("two live */site/ files=2").count(),
        2,
        "{text}"
    );
    assert_eq!(
        text.matches("one retired */site/ files=3").count(),
        2,
        "{text}"
    );
    assert_eq!(
        text.matches("no releases").count(),
        2,
        "edges hold none: {text}"
    );

    let (ok, text) = outpost(&cdn, &["releases", "remove", "two"], &all);
    assert!(
        !ok && text.contains("is live"),
        "a live release cannot be removed: {text}"
    );
    let (ok, text) = outpost(&cdn, &["releases", "rollback", "two"], &all);
    assert!(ok, "{text}");
    assert!(text.contains("one live again"), "{text}");
    // The rollback reached the parents; the edges revalidate every use (max-age=0).
    for edge in edges {
        let page = get(&format!("{}/site/", cdn.data(edge)), &[]).await;
        assert_eq!(
            (page.body.as_str(), page.release.as_str()),
            ("<h1>one</h1>", "one"),
            "{edge}"
        );
    }
    let objects =
        |node: &str| walk(&state.path().join("releases").join(node).join("objects")).len();
    assert_eq!(objects("parent-0"), 5, "three objects of one, two of two");
    let (ok, text) = outpost(&cdn, &["releases", "remove", "two"], &all);
    assert!(ok, "{text}");
    assert_eq!(objects("parent-0"), 3, "objects only two used are deleted");
    let (ok, text) = outpost(&cdn, &["releases", "rollback", "two"], &all);
    assert!(!ok && text.contains("no node holds two"), "{text}");
}

/// Every file below `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn a_corrupt_object_on_one_node_blocks_the_commit_everywhere() {
    let origin = origin().await;
    let state = tempfile::tempdir().unwrap();
    let cdn = Outpost::up(&topology(&origin.url, state.path(), 1, 2, ""), 3);
    let nodes = ["parent-0", "edge-0", "edge-1"];
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("site");
    site(&dir, &[("index.html", "one"), ("logo.svg", "<svg/>")]);
    let push = |name: &str| {
        outpost(
            &cdn,
            &[
                "push",
                dir.to_str().unwrap(),
                "--name",
                name,
                "--to",
                "edges",
            ],
            &nodes,
        )
    };
    let (ok, text) = push("one");
    assert!(ok, "{text}");

    // The logo's object rots on one edge's disk; the next release uses it too.
    let logo = outpost_releases::Digest::of(b"<svg/>").to_string();
    let on_disk = state
        .path()
        .join("releases/edge-1/objects")
        .join(&logo[..2])
        .join(&logo);
    std::fs::write(&on_disk, "<svg>rotten</svg>").unwrap();
    site(&dir, &[("index.html", "two"), ("logo.svg", "<svg/>")]);
    let (ok, text) = push("two");
    assert!(!ok, "{text}");
    assert!(text.contains("not committed on any node"), "{text}");
    assert!(text.contains("corrupt"), "{text}");
    for node in nodes {
        let page = get(&format!("{}/", cdn.data(node)), &[]).await;
        assert_eq!(
            (page.body.as_str(), page.release.as_str()),
            ("one", "one"),
            "{node}"
        );
    }
    let (ok, text) = outpost(&cdn, &["releases", "list"], &nodes);
    assert!(
        ok && !text.contains("two"),
        "the staged copies were withdrawn: {text}"
    );

    // The node dropped what it found corrupt, so pushing again uploads it and succeeds.
    let (ok, text) = push("two");
    assert!(ok, "{text}");
    assert!(
        text.contains("edge-1") || text.contains("1 of 2 objects uploaded"),
        "{text}"
    );
    for node in nodes {
        let page = get(&format!("{}/", cdn.data(node)), &[]).await;
        assert_eq!(
            (page.body.as_str(), page.release.as_str()),
            ("two", "two"),
            "{node}"
        );
        let logo = get(&format!("{}/logo.svg", cdn.data(node)), &[]).await;
        assert_eq!(logo.body, "<svg/>", "{node}");
    }

    // An upload that does not hash to its name is refused and leaves nothing behind.
    let digest = outpost_releases::Digest::of(b"the real bytes").to_string();
    let refused = client()
        .put(format!("{}/releases/objects/{digest}", cdn.admin("edge-0")))
        .bearer_auth("t")
        .body("other bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    let head = client()
        .head(format!("{}/releases/objects/{digest}", cdn.admin("edge-0")))
        .bearer_auth("t")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 404);
    let anonymous = client()
        .put(format!("{}/releases/objects/{digest}", cdn.admin("edge-0")))
        .body("the real bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401, "uploads need the token");
    // A manifest naming objects the node lacks is refused with the list of them.
    let manifest = format!(
        "{{\"site\":{{\"prefix\":\"/x/\"}},\"files\":{{\"a\":{{\"digest\":\"{digest}\",\"size\":14,\"content_type\":\"text/plain\"}}}}}}"
    );
    let staged = client()
        .put(format!("{}/releases/bad", cdn.admin("edge-0")))
        .bearer_auth("t")
        .body(manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(staged.status(), 409);
    assert!(staged.text().await.unwrap().contains(&digest));
}

#[tokio::test]
async fn pushed_files_survive_eviction_pressure_and_a_restart() {
    // Memory for about two of the origin's objects; the release lives on disk beside it.
    let origin = TestOrigin::start(|_, _| {
        Reply::ok(&[("cache-control", "max-age=600")], vec![b'o'; 300_000])
    })
    .await;
    let state = tempfile::tempdir().unwrap();
    let config = topology(
        &origin.url,
        state.path(),
        0,
        1,
        "[cache]\ncapacity_mib = 1\nmax_object_mib = 1\ndisk_mib = 0\n",
    );
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("library");
    let video = "v".repeat(200_000);
    site(&dir, &[("index.m3u8", "#EXTM3U\n"), ("seg-1.m4s", &video)]);
    let mut cdn = Outpost::up_process(&config, 1);
    let (ok, text) = outpost(
        &cdn,
        &[
            "push",
            dir.to_str().unwrap(),
            "--prefix",
            "/vod/",
            "--name",
            "lib",
            "--to",
            "edges",
        ],
        &["edge-0"],
    );
    assert!(ok, "{text}");
    let http = client();
    for i in 0..20 {
        let body = http
            .get(format!("{}/churn/{i}", cdn.data("edge-0")))
            .send()
            .await
            .unwrap();
        assert_eq!(body.bytes().await.unwrap().len(), 300_000);
    }
    let segment = get(&format!("{}/vod/seg-1.m4s", cdn.data("edge-0")), &[]).await;
    assert_eq!((segment.status, segment.body.len()), (200, 200_000));
    assert_eq!(segment.headers["content-type"], "video/iso.segment");
    assert!(cdn.terminate(), "the edge drains and exits");

    let before = origin.hits();
    let cdn = Outpost::up_process(&config, 1);
    for path in ["/vod/index.m3u8", "/vod/seg-1.m4s"] {
        let answer = get(&format!("{}{path}", cdn.data("edge-0")), &[]).await;
        assert_eq!(
            (answer.status, answer.release.as_str()),
            (200, "lib"),
            "{path}"
        );
    }
    assert_eq!(
        origin.hits(),
        before,
        "the release came back from disk, not from the origin"
    );
    tokio::time::sleep(Duration::from_millis(1)).await;
}
