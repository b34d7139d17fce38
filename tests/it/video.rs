//! Video through the CDN: the demo's test stream (`scripts/make-test-stream`: fMP4/CMAF
//! segments with an HLS master playlist and a DASH MPD over them), read through an edge and
//! a parent by ffmpeg as a player would read it.

use crate::common::{Outpost, counter};

fn demo_cdn() -> Outpost {
    Outpost::up(&crate::common::demo_topology(1), 3)
}

/// ffmpeg reads every stream of `url` to the end (decoding it, writing nothing); its errors.
async fn ffmpeg_reads(url: &str) -> Result<(), String> {
    let output = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-i", url])
        .args(["-map", "0", "-f", "null", "-"])
        .output()
        .await
        .map_err(|e| format!("ffmpeg did not start (apt-get install ffmpeg): {e}"))?;
    let errors = String::from_utf8_lossy(&output.stderr).into_owned();
    // ffmpeg 5.1's DASH reader finds the end of a static SegmentTemplate by asking for the
    // segment after the last one (a 404) and logs that as an error; it is not one.
    let real = errors.lines().filter(|line| {
        !(line.contains("Error when loading first fragment of playlist")
            || line.trim_start().starts_with("Last message repeated"))
    });
    if output.status.success() && real.count() == 0 {
        Ok(())
    } else {
        Err(format!("{}: {errors}", output.status))
    }
}

#[tokio::test]
async fn ffmpeg_plays_the_vod_stream_through_the_edge_as_hls_and_as_dash() {
    let cdn = demo_cdn();
    let edge = cdn.data("edge-0").to_owned();
    for manifest in ["master.m3u8", "manifest.mpd"] {
        let url = format!("{edge}/video/vod/{manifest}");
        ffmpeg_reads(&url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    }
    // The second viewer's playlists and segments come from the edge's cache.
    let before = counter(&cdn.metrics("edge-0").await, "outpost_cache_hits_total");
    ffmpeg_reads(&format!("{edge}/video/vod/master.m3u8"))
        .await
        .unwrap();
    let hits = counter(&cdn.metrics("edge-0").await, "outpost_cache_hits_total") - before;
    // Three init segments and 31 media segments; the four playlists too when they are still
    // fresh (the origin gives every playlist two seconds, live or not).
    assert!(hits >= 34, "{hits} hits for the second viewer");
}

#[tokio::test]
async fn playlists_and_segments_get_lifetimes_by_type_when_the_origin_says_none() {
    use crate::common::{Reply, TestOrigin, cache_status, client, topology};
    let origin = TestOrigin::start(|seen, _| match seen.target.as_str() {
        // A heuristic would keep this playlist for a day (modified years ago).
        "/live/index.m3u8" => Reply::ok(
            &[
                ("content-type", "application/vnd.apple.mpegurl"),
                ("last-modified", "Thu, 01 Jan 2015 00:00:00 GMT"),
            ],
            "#EXTM3U\n",
        ),
        // No validator, no lifetime: no heuristic would store it.
        "/live/seg-1.m4s" => Reply::ok(&[("content-type", "video/iso.segment")], "segment"),
        "/live/said.m4s" => Reply::ok(
            &[
                ("content-type", "video/iso.segment"),
                ("cache-control", "max-age=7"),
            ],
            "segment",
        ),
        _ => Reply::status(404, &[], "no"),
    })
    .await;
    let cdn = Outpost::up(&topology(&origin.url, 0, 1, ""), 1);
    let edge = cdn.data("edge-0");
    let http = client();
    for (path, ttl) in [
        ("/live/index.m3u8", "ttl=1"),
        ("/live/seg-1.m4s", "ttl=86400"),
        ("/live/said.m4s", "ttl=7"),
    ] {
        let response = http.get(format!("{edge}{path}")).send().await.unwrap();
        let status = cache_status(&response);
        assert!(
            status.contains(ttl) && status.contains("stored"),
            "{path}: {status}"
        );
        response.text().await.unwrap();
    }
    let again = http
        .get(format!("{edge}/live/seg-1.m4s"))
        .send()
        .await
        .unwrap();
    assert!(cache_status(&again).contains("hit"));
    assert_eq!(
        origin
            .seen()
            .iter()
            .filter(|s| s.target == "/live/seg-1.m4s")
            .count(),
        1
    );
}

#[tokio::test]
async fn cors_is_answered_at_the_edge_for_the_paths_it_opens() {
    use crate::common::{Reply, TestOrigin, client, topology};
    let origin = TestOrigin::start(|_, _| {
        Reply::ok(
            &[
                ("cache-control", "max-age=60"),
                ("access-control-allow-origin", "https://someone-else.test"),
            ],
            "media",
        )
    })
    .await;
    let cdn = Outpost::up(
        &topology(
            &origin.url,
            0,
            1,
            "[[cors]]\npaths = [\"/video/**\"]\nallow_origins = [\"https://player.test\"]\nmax_age_secs = 300\n\n\
             [[cors]]\nhost = \"open.test\"\npaths = [\"/**\"]\nallow_origins = [\"*\"]\n",
        ),
        1,
    );
    let edge = cdn.data("edge-0");
    let http = client();
    // A preflight for a range request with CMCD is answered here, never sent upstream.
    let preflight = http
        .request(reqwest::Method::OPTIONS, format!("{edge}/video/seg.m4s"))
        .header("origin", "https://player.test")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "range, cmcd-request")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "https://player.test");
    assert_eq!(h["access-control-max-age"], "300");
    let allowed = h["access-control-allow-headers"].to_str().unwrap();
    assert!(
        allowed.contains("Range") && allowed.contains("CMCD-Request"),
        "{allowed}"
    );
    assert_eq!(origin.hits(), 0, "the preflight never left the edge");
    // The real request: the edge's answer replaces the origin's, and exposes Content-Range.
    let get = |from: &'static str, url: String| {
        let http = http.clone();
        async move { http.get(url).header("origin", from).send().await.unwrap() }
    };
    let response = get("https://player.test", format!("{edge}/video/seg.m4s")).await;
    let h = response.headers();
    assert_eq!(h["access-control-allow-origin"], "https://player.test");
    assert!(
        h["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("Content-Range")
    );
    assert!(h.get_all("vary").iter().any(|v| v == "Origin"));
    // An origin that is not allowed gets no CORS headers at all, not the origin's.
    let response = get("https://evil.test", format!("{edge}/video/seg.m4s")).await;
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-origin")
    );
    // A host opened to everyone.
    let response = http
        .get(format!("{edge}/anything"))
        .header("host", "open.test")
        .header("origin", "https://anyone.test")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    // Paths no rule names are the origin's business.
    let response = get("https://player.test", format!("{edge}/page")).await;
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://someone-else.test"
    );
}

#[tokio::test]
async fn signed_urls_are_checked_at_the_edge_and_never_split_the_cache() {
    use crate::common::{Reply, TestOrigin, cache_status, client, topology};
    let origin =
        TestOrigin::start(|_, _| Reply::ok(&[("cache-control", "max-age=600")], "segment")).await;
    let signing_toml = "[signing]\npaths = [\"/video/**\"]\n\
                        keys = [{ id = \"new\", secret = \"fresh-secret\" }, { id = \"old\", secret = \"old-secret\" }]\n";
    let cdn = Outpost::up(&topology(&origin.url, 0, 1, signing_toml), 1);
    let edge = cdn.data("edge-0");
    let http = client();
    // A token from `outpost sign`, as an operator makes one.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(["sign", "/video/vod/*", "--expires-in", "600", "--config"])
        .arg(cdn.config_path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let url = |path: &str, token: &str| format!("{edge}{path}?token={token}");
    let first = http
        .get(url("/video/vod/seg-1.m4s", &token))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(
        first.text().await.unwrap(),
        "segment",
        "read whole, so it is stored"
    );
    assert_eq!(
        origin.seen()[0].target,
        "/video/vod/seg-1.m4s",
        "the token never reaches the origin"
    );
    // Another viewer's token (signed with the old key, still valid while rotating), in a
    // cookie: the same cached object.
    let keys = outpost_edge::Signing::new(&outpost_edge::SigningConfig {
        keys: vec![
            outpost_edge::SigningKey {
                id: "new".into(),
                secret: "fresh-secret".into(),
            },
            outpost_edge::SigningKey {
                id: "old".into(),
                secret: "old-secret".into(),
            },
        ],
        paths: vec![],
    })
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let old = keys.sign("/video/*", now + 600, None, Some("old")).unwrap();
    let second = http
        .get(format!("{edge}/video/vod/seg-1.m4s"))
        .header("cookie", format!("outpost_token={old}"))
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 200);
    assert!(
        cache_status(&second).contains("hit"),
        "{}",
        cache_status(&second)
    );
    // Everything else is 403 at the edge.
    let expired = keys.sign("/video/*", now - 1, None, None).unwrap();
    let forged = token.replace("acl=/video/vod/*", "acl=/video/*");
    let elsewhere = keys
        .sign("/video/*", now + 600, Some("192.0.2.0/24"), None)
        .unwrap();
    for (case, request) in [
        ("no token", format!("{edge}/video/vod/seg-2.m4s")),
        ("expired", url("/video/vod/seg-2.m4s", &expired)),
        ("forged", url("/video/live/seg-2.m4s", &forged)),
        ("wrong path", url("/video/live/seg-2.m4s", &token)),
        (
            "wrong client network",
            url("/video/vod/seg-2.m4s", &elsewhere),
        ),
        ("garbage", url("/video/vod/seg-2.m4s", "exp=1~hmac=zz")),
    ] {
        let response = http.get(&request).send().await.unwrap();
        assert_eq!(response.status(), 403, "{case}");
        assert_eq!(response.headers()["cache-control"], "no-store");
    }
    assert_eq!(origin.hits(), 1, "refused requests never leave the edge");
    // Unprotected paths need nothing.
    let open = http.get(format!("{edge}/page")).send().await.unwrap();
    assert_eq!(open.status(), 200);
}

#[tokio::test]
async fn cmcd_goes_to_the_log_and_metrics_never_to_the_cache_key() {
    use crate::common::{Reply, TestOrigin, cache_status, client, topology};
    let origin =
        TestOrigin::start(|_, _| Reply::ok(&[("cache-control", "max-age=600")], "segment")).await;
    let cdn = Outpost::up_process(&topology(&origin.url, 0, 1, ""), 1);
    let edge = cdn.data("edge-0");
    let http = client();
    let first = http
        .get(format!(
            "{edge}/video/seg-7.m4s?CMCD=br%3D3200%2Cbl%3D21300%2Cbs%2Cot%3Dv%2Csid%3D%22viewer-1%22"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(
        first.text().await.unwrap(),
        "segment",
        "read whole, so it is stored"
    );
    // Another player, its CMCD in headers: the same object, from cache.
    let second = http
        .get(format!("{edge}/video/seg-7.m4s"))
        .header("cmcd-object", "br=3200,ot=v")
        .header("cmcd-request", "bl=8000")
        .header("cmcd-session", "sid=\"viewer-2\"")
        .send()
        .await
        .unwrap();
    assert!(
        cache_status(&second).contains("hit"),
        "{}",
        cache_status(&second)
    );
    assert_eq!(origin.hits(), 1);
    assert_eq!(
        origin.seen()[0].target,
        "/video/seg-7.m4s",
        "CMCD stays at the edge"
    );
    let metrics = cdn.metrics("edge-0").await;
    for line in [
        "outpost_cmcd_requests_total{node=\"edge-0\",role=\"edge\",object=\"v\"} 2",
        "outpost_cmcd_buffer_starvations_total{node=\"edge-0\",role=\"edge\"} 1",
        "outpost_cmcd_bitrate_bits_per_second_count{node=\"edge-0\",role=\"edge\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    assert!(
        !metrics.contains("viewer-1"),
        "a session id is never a label"
    );
    let wait = std::time::Instant::now();
    while !cdn.log().contains("sid=viewer-2") && wait.elapsed() < std::time::Duration::from_secs(5)
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let log = cdn.log();
    assert!(
        log.contains("cmcd(br=3200 bl=21300 bs ot=v sid=viewer-1)"),
        "{log}"
    );
    assert!(log.contains("sid=viewer-2"), "{log}");
}

#[tokio::test]
async fn the_live_stream_slides_and_plays_through_the_edge() {
    let cdn = demo_cdn();
    let edge = cdn.data("edge-0").to_owned();
    let http = crate::common::client();
    let playlist = || async {
        let response = http
            .get(format!("{edge}/video/live/media_0.m3u8"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    };
    let sequence = |text: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
            .unwrap()
            .parse()
            .unwrap()
    };
    let first = playlist().await;
    assert!(!first.contains("#EXT-X-ENDLIST"), "{first}");
    let segments: Vec<&str> = first.lines().filter(|l| l.ends_with(".m4s")).collect();
    assert_eq!(segments.len(), 6, "a window of six: {first}");
    // The newest segment is there; one from the future is not.
    let newest = segments.last().unwrap();
    let got = http
        .get(format!("{edge}/video/live/{newest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "video/iso.segment");
    let future = sequence(&first) + 20;
    let missing = http
        .get(format!("{edge}/video/live/seg-0-{future}.m4s"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    // Two seconds on, the window has moved on (the playlist lives 1 s at the edge).
    tokio::time::sleep(std::time::Duration::from_millis(2_600)).await;
    let later = playlist().await;
    assert!(sequence(&later) > sequence(&first), "{first}\n{later}");
    // And a player reads it.
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        tokio::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "error"])
            .arg("-i")
            .arg(format!("{edge}/video/live/master.m3u8"))
            // Frames, not seconds: where the loop starts again the timestamps jump back.
            .args(["-map", "0:v:0", "-frames:v", "90", "-f", "null", "-"])
            .output(),
    )
    .await
    .expect("ffmpeg read three seconds (90 frames) of the live stream in time")
    .unwrap();
    assert!(read.status.success(), "{read:?}");
}

#[tokio::test]
async fn a_range_on_a_miss_is_answered_as_its_bytes_arrive() {
    use crate::common::{Reply, TestOrigin, cache_status, client, owned, topology};
    use std::sync::Arc;
    let release = Arc::new(tokio::sync::Notify::new());
    let held = release.clone();
    let origin = TestOrigin::start(move |_, _| Reply::Held {
        headers: owned(&[
            ("content-type", "video/iso.segment"),
            ("cache-control", "max-age=600"),
        ]),
        first: vec![b'a'; 1000],
        release: held.clone(),
        rest: vec![b'b'; 9000],
    })
    .await;
    let cdn = Outpost::up(&topology(&origin.url, 1, 1, ""), 2);
    let url = format!("{}/video/big.m4s", cdn.data("edge-0"));
    let http = client();
    // The first 1000 bytes have arrived at both tiers; the other 9000 are held at the origin.
    let part = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        http.get(&url).header("range", "bytes=100-199").send(),
    )
    .await
    .expect("the range came before the whole object")
    .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], "bytes 100-199/10000");
    let body = tokio::time::timeout(std::time::Duration::from_secs(5), part.bytes())
        .await
        .expect("the range's bytes came before the whole object")
        .unwrap();
    assert_eq!(&body[..], &[b'a'; 100][..]);
    // Once the rest arrives, the object is whole in the cache.
    // notify_one keeps the wake-up even if the origin is not waiting yet.
    release.notify_one();
    let mut whole = None;
    for _ in 0..50 {
        let response = http.get(&url).send().await.unwrap();
        let status = cache_status(&response);
        let bytes = response.bytes().await.unwrap();
        if status.ends_with("hit") || status.contains("edge-0; hit") {
            whole = Some(bytes);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let whole = whole.expect("the object was stored");
    assert_eq!(whole.len(), 10_000);
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn the_edge_warms_the_next_segment_of_a_playlist_it_served() {
    use crate::common::{Reply, TestOrigin, cache_status, client, topology};
    let origin = TestOrigin::start(|seen, _| match seen.target.as_str() {
        "/hashed/index.m3u8" => Reply::ok(
            &[
                ("content-type", "application/vnd.apple.mpegurl"),
                ("cache-control", "max-age=1"),
            ],
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n9f1c.m4s\n#EXTINF:2,\n03ab.m4s\n#EXTINF:2,\nd7e2.m4s\n",
        ),
        path if path.ends_with(".m4s") => Reply::ok(
            &[
                ("content-type", "video/iso.segment"),
                ("cache-control", "max-age=600"),
            ],
            path.as_bytes().to_vec(),
        ),
        _ => Reply::status(404, &[], "no"),
    })
    .await;
    let cdn = Outpost::up(&topology(&origin.url, 1, 1, ""), 2);
    let edge = cdn.data("edge-0");
    let http = client();
    let seen = |path: &str| origin.seen().iter().filter(|s| s.target == path).count();
    let playlist = http
        .get(format!("{edge}/hashed/index.m3u8"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        playlist.contains("03ab.m4s"),
        "the playlist reaches the client whole"
    );
    assert_eq!(
        seen("/hashed/03ab.m4s"),
        0,
        "nothing is warmed before a segment is taken"
    );
    let first = http
        .get(format!("{edge}/hashed/9f1c.m4s"))
        .send()
        .await
        .unwrap();
    assert_eq!(first.text().await.unwrap(), "/hashed/9f1c.m4s");
    // The next segment, by the playlist's order and not by its name, is warmed.
    let wait = std::time::Instant::now();
    while seen("/hashed/03ab.m4s") == 0 && wait.elapsed() < std::time::Duration::from_secs(5) {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(seen("/hashed/03ab.m4s"), 1, "prefetched once");
    assert_eq!(
        seen("/hashed/d7e2.m4s"),
        0,
        "one segment ahead, as configured"
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let next = http
        .get(format!("{edge}/hashed/03ab.m4s"))
        .send()
        .await
        .unwrap();
    let status = cache_status(&next);
    assert!(
        status.ends_with("edge-0; hit") || status.contains("edge-0; hit;"),
        "{status}"
    );
    assert_eq!(next.text().await.unwrap(), "/hashed/03ab.m4s");
    assert_eq!(
        seen("/hashed/03ab.m4s"),
        1,
        "the client's request was a hit"
    );
}

/// What the browser driver (`tests/player/play.mjs`) saw on one player page.
#[derive(Debug, serde::Deserialize)]
struct Watched {
    url: String,
    player: String,
    advanced: f64,
    errors: Vec<String>,
    console: Vec<String>,
    segments: Vec<Segment>,
    /// The rendition the player showed last, and how long the page was watched.
    rendition: Option<String>,
    ms: u64,
}

#[derive(Debug, serde::Deserialize)]
struct Segment {
    url: String,
    status: u16,
    #[serde(rename = "cacheStatus")]
    cache_status: String,
}

#[tokio::test]
async fn a_browser_plays_hls_and_dash_vod_and_live_through_the_edge() {
    let _heavy = crate::common::HEAVY.lock().await;
    let root = env!("CARGO_MANIFEST_DIR");
    let driver = format!("{root}/tests/player/play.mjs");
    assert!(
        std::path::Path::new(&format!("{root}/tests/player/node_modules/playwright-core")).exists()
            && std::path::Path::new(&format!("{root}/origin/demo/video/lib/hls.min.js")).exists(),
        "the player libraries are not installed: run scripts/player-libs"
    );
    let cdn = demo_cdn();
    let edge = cdn.data("edge-0").to_owned();
    let page = |src: &str| format!("{edge}/video/player.html?src={src}");
    let streams = [
        "/video/vod/master.m3u8",
        "/video/vod/manifest.mpd",
        "/video/live/master.m3u8",
        "/video/live/manifest.mpd",
    ];
    // Every stream at once, then a second viewer of each VOD stream.
    let mut command = tokio::process::Command::new("node");
    command.arg(&driver).args(["--seconds", "6"]);
    command.args(streams.iter().map(|s| page(s)));
    command
        .arg("--then")
        .args(streams[..2].iter().map(|s| page(s)));
    let output = tokio::time::timeout(std::time::Duration::from_secs(150), command.output())
        .await
        .expect("the browser finished in time")
        .expect("node runs (Node.js 20 or later)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let phases: Vec<Vec<Watched>> = serde_json::from_slice(&output.stdout).unwrap();
    let [first, second] = &phases[..] else {
        panic!("two phases: {phases:?}");
    };
    for watched in first.iter().chain(second) {
        let seen = format!(
            "{} ({}): errors {:?}, console {:?}",
            watched.url, watched.player, watched.errors, watched.console
        );
        assert!(watched.errors.is_empty(), "{seen}");
        assert!(
            watched.advanced >= 6.0,
            "advanced {} s in {} ms (rendition {:?}): {seen}; segments {:?}",
            watched.advanced,
            watched.ms,
            watched.rendition,
            watched.segments
        );
        // Status 0: a request the player itself aborted (switching rendition, seeking).
        assert!(
            watched
                .segments
                .iter()
                .all(|s| s.status == 200 || s.status == 0),
            "{seen}: {:?}",
            watched.segments
        );
        let expected = if watched.url.ends_with(".mpd") {
            "dash.js"
        } else {
            "hls.js"
        };
        assert!(watched.player.starts_with(expected), "{seen}");
    }
    // The second viewer's segments that the first had fetched are hits at the edge.
    for (before, after) in first[..2].iter().zip(second) {
        let fetched: std::collections::HashSet<&str> =
            before.segments.iter().map(|s| s.url.as_str()).collect();
        let shared: Vec<&Segment> = after
            .segments
            .iter()
            .filter(|s| fetched.contains(s.url.as_str()))
            .collect();
        assert!(shared.len() >= 4, "{}: {:?}", after.url, after.segments);
        for segment in shared {
            assert!(
                segment.cache_status.ends_with("edge-0; hit")
                    || segment.cache_status.contains("edge-0; hit;"),
                "{}: {segment:?}",
                after.url
            );
        }
    }
}

/// The `(msn, part)` a live playlist's preload hint names: the next part.
fn preload_hint(playlist: &str) -> (u64, u64) {
    let uri = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg-0-"))
        .unwrap_or_else(|| panic!("no preload hint: {playlist}"));
    let (msn, part) = uri.trim_end_matches(".m4s\"").split_once('.').unwrap();
    (msn.parse().unwrap(), part.parse().unwrap())
}

#[tokio::test]
async fn low_latency_hls_parts_and_blocking_reloads_work_through_the_edge() {
    let cdn = demo_cdn();
    let edge = cdn.data("edge-0").to_owned();
    let http = crate::common::client();
    let get = |path: String| {
        let http = http.clone();
        let edge = edge.clone();
        async move { http.get(format!("{edge}{path}")).send().await.unwrap() }
    };
    let playlist = get("/video/live/media_0.m3u8".into())
        .await
        .text()
        .await
        .unwrap();
    assert!(
        playlist.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES"),
        "{playlist}"
    );
    assert!(
        playlist.contains("#EXT-X-PART-INF:PART-TARGET="),
        "{playlist}"
    );
    let (msn, part) = preload_hint(&playlist);
    // The hinted part is held until it exists, then it is the chunk the segment starts with
    // (or goes on with): an fMP4 box.
    let hinted = get(format!("/video/live/seg-0-{msn}.{part}.m4s")).await;
    assert_eq!(hinted.status(), 200);
    let bytes = hinted.bytes().await.unwrap();
    let kind = &bytes[4..8];
    assert!(
        kind == b"styp" || kind == b"sidx" || kind == b"moof",
        "{kind:?}"
    );
    // A blocking reload for the part after it waits for that part and lists it.
    let (next_msn, next_part) = if part == 3 {
        (msn + 1, 0)
    } else {
        (msn, part + 1)
    };
    let blocked = get(format!(
        "/video/live/media_0.m3u8?_HLS_msn={next_msn}&_HLS_part={next_part}"
    ))
    .await;
    assert_eq!(blocked.status(), 200);
    // CMSD: the origin says what the object is and how long it held the reload; the edge adds
    // its own response delay (rd) after the parent's hop.
    let static_data = blocked.headers()["cmsd-static"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(static_data.starts_with("ot=m,sf=h,st=l"), "{static_data}");
    // Held (ht) unless this test was paused for longer than a part.
    let held: u64 = static_data
        .split_once(",ht=")
        .map_or(0, |(_, ms)| ms.parse().unwrap());
    let dynamic = blocked.headers()["cmsd-dynamic"]
        .to_str()
        .unwrap()
        .to_owned();
    let rd: u64 = dynamic
        .strip_prefix("\"edge-0\";rd=")
        .unwrap_or_else(|| panic!("{dynamic}"))
        .parse()
        .unwrap();
    assert!(
        rd + 5 >= held,
        "the edge waited as long as the origin held: {rd} ms, {held} ms"
    );
    let text = blocked.text().await.unwrap();
    assert!(
        text.contains(&format!("URI=\"seg-0-{next_msn}.{next_part}.m4s\"")),
        "{text}"
    );
    // An msn more than two beyond the last segment is refused at once, as the spec says.
    let far = get(format!("/video/live/media_0.m3u8?_HLS_msn={}", msn + 5)).await;
    assert_eq!(far.status(), 400);
    let bad = get("/video/live/media_0.m3u8?_HLS_part=1".into()).await;
    assert_eq!(bad.status(), 400);
    // The live MPD is dynamic, and the segments it names are the HLS stream's.
    let mpd = get("/video/live/manifest.mpd".into()).await;
    assert_eq!(mpd.headers()["content-type"], "application/dash+xml");
    let mpd = mpd.text().await.unwrap();
    assert!(
        mpd.contains("type=\"dynamic\"") && mpd.contains("urn:mpeg:dash:utc:direct:2014"),
        "{mpd}"
    );
    assert!(
        mpd.contains("media=\"seg-$RepresentationID$-$Number$.m4s\""),
        "{mpd}"
    );
    let complete = get(format!("/video/live/seg-2-{}.m4s", msn - 1)).await;
    assert_eq!(complete.status(), 200);
}

#[tokio::test]
async fn blocking_reloads_are_held_once_per_part_at_each_tier() {
    use crate::common::{Reply, TestOrigin, client, topology};
    use std::time::Duration;
    // An LL-HLS origin that holds each blocking reload 800 ms, as ours does until the part
    // exists.
    let origin = TestOrigin::start(|seen, _| {
        if seen.target.starts_with("/ll/media.m3u8?_HLS_msn=") {
            Reply::Delayed(
                Duration::from_millis(800),
                Box::new(Reply::ok(
                    &[
                        ("content-type", "application/vnd.apple.mpegurl"),
                        ("cache-control", "public, max-age=12"),
                    ],
                    format!("#EXTM3U\n# answer to {}\n", seen.target),
                )),
            )
        } else {
            Reply::status(404, &[], "no")
        }
    })
    .await;
    let cdn = Outpost::up(&topology(&origin.url, 1, 2, ""), 3);
    let http = client();
    let target = "/ll/media.m3u8?_HLS_msn=41&_HLS_part=2";
    let mut viewers = Vec::new();
    for i in 0..100 {
        let url = format!("{}{target}", cdn.data(&format!("edge-{}", i % 2)));
        let http = http.clone();
        viewers.push(tokio::spawn(async move {
            let response = http.get(url).send().await.unwrap();
            (response.status(), response.text().await.unwrap())
        }));
    }
    for viewer in viewers {
        let (status, body) = viewer.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, format!("#EXTM3U\n# answer to {target}\n"));
    }
    let held = origin.seen().iter().filter(|s| s.target == target).count();
    assert_eq!(
        held, 1,
        "100 viewers on two edges, one held request at the origin"
    );
    // Another part is another request.
    let other = http
        .get(format!(
            "{}/ll/media.m3u8?_HLS_msn=41&_HLS_part=3",
            cdn.data("edge-0")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    assert_eq!(origin.hits(), 2);
}

#[tokio::test]
async fn prefetch_follows_dash_templates_byte_ranges_preload_hints_and_cmcd_nor() {
    use crate::common::{Reply, TestOrigin, client, topology};
    let origin = TestOrigin::start(|seen, _| match seen.target.as_str() {
        "/d/manifest.mpd" => Reply::ok(
            &[("content-type", "application/dash+xml"), ("cache-control", "max-age=60")],
            "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" type=\"static\" mediaPresentationDuration=\"PT6S\">\
             <Period><AdaptationSet><Representation id=\"hd\" bandwidth=\"1\">\
             <SegmentTemplate timescale=\"1\" duration=\"2\" startNumber=\"1\" media=\"$RepresentationID$/$Number%02d$.m4s\"/>\
             </Representation></AdaptationSet></Period></MPD>",
        ),
        "/r/index.m3u8" => Reply::ok(
            &[("content-type", "application/vnd.apple.mpegurl"), ("cache-control", "max-age=1")],
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n#EXT-X-BYTERANGE:4@0\nall.mp4\n\
             #EXTINF:2,\n#EXT-X-BYTERANGE:4@4\nall.mp4\n#EXTINF:2,\nnext.mp4\n\
             #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"hinted.m4s\"\n",
        ),
        path if path.ends_with(".m4s") || path.ends_with(".mp4") => Reply::ok(
            &[("content-type", "video/iso.segment"), ("cache-control", "max-age=600")],
            "abcdefgh",
        ),
        _ => Reply::status(404, &[], "no"),
    })
    .await;
    let cdn = Outpost::up(&topology(&origin.url, 1, 1, ""), 2);
    let edge = cdn.data("edge-0");
    let http = client();
    let seen = |path: &str| origin.seen().iter().filter(|s| s.target == path).count();
    let eventually = |path: &'static str| {
        let seen = &seen;
        async move {
            let wait = std::time::Instant::now();
            while seen(path) == 0 && wait.elapsed() < std::time::Duration::from_secs(5) {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            seen(path)
        }
    };
    let get = |path: &str| http.get(format!("{edge}{path}")).send();

    // DASH: segment 1 of a template warms segment 2; the last one warms nothing.
    assert_eq!(get("/d/manifest.mpd").await.unwrap().status(), 200);
    assert_eq!(get("/d/hd/01.m4s").await.unwrap().status(), 200);
    assert_eq!(eventually("/d/hd/02.m4s").await, 1);
    assert_eq!(get("/d/hd/03.m4s").await.unwrap().status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(seen("/d/hd/04.m4s"), 0, "three segments of 2 s in 6 s");

    // HLS: serving the playlist warms its preload hint at once; a byte range of all.mp4 warms
    // the next object, not all.mp4 again.
    assert_eq!(get("/r/index.m3u8").await.unwrap().status(), 200);
    assert_eq!(eventually("/r/hinted.m4s").await, 1);
    let range = http
        .get(format!("{edge}/r/all.mp4"))
        .header("range", "bytes=0-3")
        .send()
        .await
        .unwrap();
    assert_eq!(range.status(), 206);
    assert_eq!(range.text().await.unwrap(), "abcd");
    assert_eq!(eventually("/r/next.mp4").await, 1);

    // CMCD nor: the object the player names next is warmed, relative to the request.
    let named = http
        .get(format!("{edge}/n/a.m4s"))
        .header("cmcd-request", "nor=\"..%2Fn2%2Fb.m4s\"")
        .send()
        .await
        .unwrap();
    assert_eq!(named.status(), 200);
    assert_eq!(eventually("/n2/b.m4s").await, 1);
    // ... but never to another host.
    let elsewhere = http
        .get(format!("{edge}/n/c.m4s"))
        .header("cmcd-request", "nor=\"http%3A%2F%2Fother.test%2Fx.m4s\"")
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(seen("/x.m4s"), 0);
}

#[tokio::test]
async fn a_live_segment_burst_on_two_edges_is_one_origin_fetch_streamed_to_every_viewer() {
    use crate::common::{Reply, TestOrigin, client, topology};
    use std::sync::Arc;
    use tokio::sync::Notify;
    let release = Arc::new(Notify::new());
    let held = release.clone();
    // The newest segment: its first chunk is out, the rest comes when the encoder has it.
    let origin = TestOrigin::start(move |_, _| Reply::Held {
        headers: crate::common::owned(&[
            ("content-type", "video/iso.segment"),
            ("cache-control", "max-age=600"),
        ]),
        first: b"moof-and-first-samples;".to_vec(),
        release: held.clone(),
        rest: b"the-rest".to_vec(),
    })
    .await;
    let cdn = Outpost::up(&topology(&origin.url, 1, 2, ""), 3);
    let http = client();
    let mut viewers = Vec::new();
    for i in 0..100 {
        let url = format!("{}/live/seg-0-81.m4s", cdn.data(&format!("edge-{}", i % 2)));
        let http = http.clone();
        viewers.push(tokio::spawn(async move {
            let mut response = http.get(url).send().await.unwrap();
            let first = response.chunk().await.unwrap().unwrap();
            (response, first)
        }));
    }
    // Every viewer, on both edges, has the first bytes while the origin holds the rest.
    let mut started = Vec::new();
    for viewer in viewers {
        let (response, first) = tokio::time::timeout(std::time::Duration::from_secs(10), viewer)
            .await
            .expect("first bytes arrive before the origin sends the last")
            .unwrap();
        assert_eq!(&first[..], b"moof-and-first-samples;");
        started.push(response);
    }
    release.notify_waiters();
    for mut response in started {
        let mut rest = Vec::new();
        while let Some(chunk) = response.chunk().await.unwrap() {
            rest.extend_from_slice(&chunk);
        }
        assert_eq!(rest, b"the-rest");
    }
    assert_eq!(
        origin.hits(),
        1,
        "100 viewers, two edges, one parent: one origin fetch"
    );
}
