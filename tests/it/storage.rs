//! The disk tier under the memory cache (issue 14): what memory evicts is served from disk,
//! purges reach it, and it survives a restart of the node.

use std::time::Duration;

use crate::common::{Outpost, Reply, TestOrigin, cache_status, client};

const OBJECTS: usize = 6;

/// Writes the config of one edge, `edge-0`, in front of `origin`, with the disk tier in `dir`
/// and `cache` (TOML lines) in its `[cache]` table; returns its path.
fn edge_config(dir: &std::path::Path, origin: &str, cache: &str) -> std::path::PathBuf {
    let config = format!(
        "[admin]\ntoken = \"t\"\n\n[cache]\n{cache}disk_dir = \"{}\"\n\n\
         [origin]\nurl = \"{origin}\"\n\n\
         [[edges]]\nname = \"edge-0\"\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n",
        dir.display()
    );
    let path = dir.join("edge.toml");
    std::fs::write(&path, config).unwrap();
    path
}

#[tokio::test]
async fn evicted_objects_are_served_from_disk_purged_there_and_kept_over_a_restart() {
    let _heavy = crate::common::HEAVY.lock().await;
    // Six objects of 400 kB through an edge with 1 MiB of memory: most cannot stay in memory.
    let origin = TestOrigin::start(|seen, _| {
        let fill = seen.target.bytes().last().unwrap_or(b'x');
        Reply::ok(&[("cache-control", "max-age=600")], vec![fill; 400_000])
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = edge_config(
        dir.path(),
        &origin.url,
        "capacity_mib = 1\nmax_object_mib = 1\nfill_buffer_mib = 8\ndisk_mib = 16\n",
    );
    let start = || Outpost::spawn_edge(&path, "edge-0");
    let http = client();
    let seen = |i: usize| {
        let target = format!("/o/{i}");
        origin.seen().iter().filter(|s| s.target == target).count()
    };
    let get = |edge: String, i: usize| {
        let http = http.clone();
        async move {
            let response = http.get(format!("{edge}/o/{i}")).send().await.unwrap();
            let status = cache_status(&response);
            let body = response.bytes().await.unwrap();
            assert_eq!(body.len(), 400_000);
            assert_eq!(body[0], b'0' + i as u8);
            status
        }
    };

    let mut edge = start();
    let url = edge.data("edge-0").to_owned();
    for i in 0..OBJECTS {
        get(url.clone(), i).await;
    }
    // The disk writer runs beside the requests.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut from_disk = Vec::new();
    let mut statuses = Vec::new();
    for i in 0..OBJECTS {
        let status = get(url.clone(), i).await;
        if status.contains("edge-0; hit;") && status.contains("detail=disk") {
            from_disk.push(i);
        }
        statuses.push(status);
    }
    assert!(
        !from_disk.is_empty(),
        "some evicted object came back from disk: {statuses:?}"
    );
    assert!(
        (0..OBJECTS).all(|i| seen(i) == 1),
        "the origin saw each object once"
    );
    let metrics = http
        .get(format!("{}/metrics", edge.admin("edge-0")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    assert!(
        value("outpost_disk_writes_total") >= from_disk.len() as u64,
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("outpost_requests_total{") && l.contains("outcome=\"disk-hit\"")),
        "{metrics}"
    );

    // A purge reaches the disk: the next request goes to the origin.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let purged = http
        .post(format!("{}/purge", edge.admin("edge-0")))
        .bearer_auth("t")
        .header("content-type", "application/json")
        .body(r#"{"urls":["/o/0","/o/1","/o/2","/o/3","/o/4","/o/5"]}"#)
        .send()
        .await
        .unwrap();
    assert!(purged.status().is_success(), "{:?}", purged.text().await);
    for i in 0..OBJECTS {
        get(url.clone(), i).await;
    }
    assert!(
        (0..OBJECTS).all(|i| seen(i) == 2),
        "purged everywhere, fetched again"
    );

    // Over a restart, what was on disk is still served without the origin.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(edge.terminate());
    let edge = start();
    let url = edge.data("edge-0").to_owned();
    let mut after = 0;
    for i in 0..OBJECTS {
        if get(url.clone(), i).await.contains("detail=disk") {
            after += 1;
        }
    }
    assert!(after > 0, "something came back from disk after the restart");
    let refetched = (0..OBJECTS).filter(|&i| seen(i) == 3).count();
    assert_eq!(
        refetched + after,
        OBJECTS,
        "each object either from disk or the origin"
    );
}

/// The body the test origin sends for `/PREFIX/N`: N's digits over and over, so a torn or
/// mixed-up body shows.
fn pattern(n: usize, length: usize) -> Vec<u8> {
    format!("[{n:06}]").bytes().cycle().take(length).collect()
}

/// An origin answering `/PREFIX/N` with [`pattern`] of `length` bytes, cacheable for 10 min.
async fn pattern_origin(length: usize) -> TestOrigin {
    TestOrigin::start(move |seen, _| {
        let n = seen
            .target
            .rsplit('/')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Reply::ok(&[("cache-control", "max-age=600")], pattern(n, length))
    })
    .await
}

#[tokio::test]
async fn a_working_set_ten_times_memory_is_served_and_kill_9_or_rot_never_serves_a_torn_body() {
    let _heavy = crate::common::HEAVY.lock().await;
    const LENGTH: usize = 300_000;
    const COUNT: usize = 60;
    let origin = pattern_origin(LENGTH).await;
    let dir = tempfile::tempdir().unwrap();
    let path = edge_config(
        dir.path(),
        &origin.url,
        "capacity_mib = 2\nmax_object_mib = 1\nfill_buffer_mib = 8\ndisk_mib = 64\n",
    );
    let http = client();
    // GETs /PREFIX/N; Ok(cache status) if the body came whole and right, Err if the response
    // broke off; a wrong body fails the test.
    let get = |edge: String, prefix: &'static str, n: usize| {
        let http = http.clone();
        async move {
            let response = http
                .get(format!("{edge}/{prefix}/{n}"))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = cache_status(&response);
            let body = response.bytes().await.map_err(|e| e.to_string())?;
            assert!(
                body[..] == pattern(n, LENGTH)[..],
                "/{prefix}/{n}: a wrong body ({} bytes)",
                body.len()
            );
            Ok::<String, String>(status)
        }
    };

    // 18 MB through 2 MiB of memory, twice: the second pass never reaches the origin.
    let edge = Outpost::spawn_edge(&path, "edge-0");
    let url = edge.data("edge-0").to_owned();
    for n in 0..COUNT {
        get(url.clone(), "o", n).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut disk_hits = 0;
    for n in 0..COUNT {
        disk_hits += get(url.clone(), "o", n)
            .await
            .unwrap()
            .contains("detail=disk") as usize;
    }
    assert_eq!(
        origin.hits(),
        COUNT,
        "every object came from memory or disk the second time"
    );
    assert!(disk_hits >= COUNT - 10, "most from disk: {disk_hits}");

    // kill -9 while fills and disk writes are under way.
    let fills: Vec<_> = (0..COUNT)
        .map(|n| tokio::spawn(get(url.clone(), "p", n)))
        .collect();
    while origin.hits() < COUNT + COUNT / 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    edge.signal("KILL");
    drop(edge);
    for fill in fills {
        let _ = fill.await.unwrap();
    }

    // After the restart every object is whole: from disk, or fetched again.
    let edge = Outpost::spawn_edge(&path, "edge-0");
    let url = edge.data("edge-0").to_owned();
    let before = origin.hits();
    for prefix in ["o", "p"] {
        for n in 0..COUNT {
            get(url.clone(), prefix, n).await.unwrap();
        }
    }
    assert!(
        origin.hits() - before < COUNT,
        "the disk tier kept most of /o/ over the kill"
    );

    // A body file that rots (same length, one byte changed) breaks off its response instead
    // of ending it, and is fetched again afterwards.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bodies: Vec<_> = std::fs::read_dir(dir.path().join("edge-0.bodies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(bodies.len() > 10, "{} body files", bodies.len());
    for file in &bodies {
        let mut bytes = std::fs::read(file).unwrap();
        bytes[LENGTH / 2] ^= 0x20;
        std::fs::write(file, bytes).unwrap();
    }
    let mut broken = Vec::new();
    for prefix in ["o", "p"] {
        for n in 0..COUNT {
            if get(url.clone(), prefix, n).await.is_err() {
                broken.push((prefix, n));
            }
        }
    }
    assert!(!broken.is_empty(), "rotten bodies were read");
    for (prefix, n) in broken {
        let again = get(url.clone(), prefix, n).await.unwrap();
        assert!(
            !again.contains("detail=disk"),
            "/{prefix}/{n} fetched again: {again}"
        );
    }
}

#[tokio::test]
async fn objects_under_a_keep_prefix_go_to_disk_at_once_and_outlast_eviction_and_restarts() {
    let _heavy = crate::common::HEAVY.lock().await;
    const LENGTH: usize = 200_000;
    let origin = pattern_origin(LENGTH).await;
    let dir = tempfile::tempdir().unwrap();
    // 1 MiB of memory over 4 MiB of disk: 40 other objects push everything unkept out.
    let path = edge_config(
        dir.path(),
        &origin.url,
        "capacity_mib = 1\nmax_object_mib = 1\nfill_buffer_mib = 8\ndisk_mib = 4\nkeep = [\"/library/\"]\n",
    );
    let http = client();
    let get = |url: String| {
        let http = http.clone();
        async move {
            let response = http.get(url).send().await.unwrap();
            let status = cache_status(&response);
            let body = response.bytes().await.unwrap();
            assert_eq!(body.len(), LENGTH);
            status
        }
    };
    let asked = |target: &str| origin.seen().iter().filter(|s| s.target == target).count();

    let edge = Outpost::spawn_edge(&path, "edge-0");
    let url = edge.data("edge-0").to_owned();
    for n in 0..3 {
        get(format!("{url}/library/{n}")).await;
    }
    for n in 0..40 {
        get(format!("{url}/other/{n}")).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in 0..3 {
        let status = get(format!("{url}/library/{n}")).await;
        assert!(
            status.contains("edge-0; hit"),
            "/library/{n} outlasted the churn: {status}"
        );
    }
    // Memory and disk hold about 25 of the 43 objects: unkept ones were pushed out.
    let mut cached = 0;
    for n in 0..40 {
        cached += get(format!("{url}/other/{n}"))
            .await
            .contains("edge-0; hit") as usize;
    }
    assert!(cached <= 25, "{cached} of 40 unkept objects still cached");

    // Kept at once: killed before memory ever evicted them, they are still on disk.
    get(format!("{url}/library/9")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    edge.signal("KILL");
    drop(edge);
    let edge = Outpost::spawn_edge(&path, "edge-0");
    let url = edge.data("edge-0").to_owned();
    for n in [0, 1, 2, 9] {
        let status = get(format!("{url}/library/{n}")).await;
        assert!(
            status.contains("detail=disk"),
            "/library/{n} from disk after the restart: {status}"
        );
        assert_eq!(
            asked(&format!("/library/{n}")),
            1,
            "/library/{n} fetched once"
        );
    }
}
