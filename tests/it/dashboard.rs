//! The dashboard, seen in a browser: every node its own process, traffic through all three
//! edges, an edge stopped, a purge sent from the page.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::common::{Outpost, client, outpost_command};

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Health: probes every 250 ms, two failures withdraw (the horizon: 500 ms).
const HEALTH: &str = "interval_ms = 250\ntimeout_ms = 250\nrise = 2\nfall = 2";
const HORIZON_MS: u64 = 500;
const REFRESH_MS: u64 = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_traffic_a_stopped_edge_and_purges_from_the_page() {
    let _heavy = crate::common::HEAVY.lock().await;
    let root = env!("CARGO_MANIFEST_DIR");
    assert!(
        std::path::Path::new(&format!("{root}/tests/player/node_modules/playwright-core")).exists(),
        "the browser driver is not installed: run scripts/player-libs"
    );
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let next = || format!("127.0.0.1:{}", free_port());
    let (origin, origin_admin) = (next(), next());
    let parents = [("parent-eu", [50.1, 8.7]), ("parent-us", [39.0, -77.5])];
    let edges = [
        ("edge-ams", [52.4, 4.9]),
        ("edge-nyc", [40.7, -74.0]),
        ("edge-sin", [1.35, 103.8]),
    ];
    let mut toml = format!(
        "[admin]\ntoken = \"t\"\ntls = true\n[tls]\nstate_dir = \"{}\"\n[cache]\ndisk_mib = 0\n\
         [health]\n{HEALTH}\n[origin]\nlisten = \"{origin}\"\nadmin = \"{origin_admin}\"\n",
        state.display()
    );
    for (name, [lat, lon]) in parents {
        toml.push_str(&format!(
            "[[parents]]\nname = \"{name}\"\nlisten = \"{}\"\nadmin = \"{}\"\nlocation = [{lat}, {lon}]\n",
            next(),
            next()
        ));
    }
    let mut edge_data = Vec::new();
    for (name, [lat, lon]) in edges {
        let data = next();
        toml.push_str(&format!(
            "[[edges]]\nname = \"{name}\"\nlisten = \"{data}\"\nadmin = \"{}\"\nlocation = [{lat}, {lon}]\n",
            next()
        ));
        edge_data.push((name, data));
    }
    let dashboard = next();
    toml.push_str(&format!(
        "[dns]\nlisten = \"{}\"\nadmin = \"{}\"\n[dns.health]\n{HEALTH}\n\
         [anycast]\naddress = \"127.0.0.1\"\nhttp_port = {}\nhttps_port = {}\nadmin = \"{}\"\nhold_down_ms = 0\n[anycast.health]\n{HEALTH}\n\
         [control]\nlisten = \"{}\"\n[dashboard]\nlisten = \"{dashboard}\"\nrefresh_ms = {REFRESH_MS}\n",
        next(),
        next(),
        free_port(),
        free_port(),
        next(),
        next()
    ));
    let config = dir.path().join("outpost.toml");
    std::fs::write(&config, &toml).unwrap();
    let config = config.to_str().unwrap();
    let (ok, made) = outpost_command(&["certs", "init", "--config", config]);
    assert!(ok, "{made}");

    let spawn = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--config", config]);
        Outpost::spawn(&all, 1)
    };
    let _control = spawn(&["control"]);
    let _origin = spawn(&["origin"]);
    let _parents: Vec<Outpost> = parents
        .iter()
        .map(|(name, _)| spawn(&["parent", "--name", name]))
        .collect();
    let mut edge_nodes: Vec<(&str, Outpost)> = edges
        .iter()
        .map(|(name, _)| (*name, spawn(&["edge", "--name", name])))
        .collect();
    let _dns = spawn(&["dns"]);
    let _anycast = spawn(&["anycast"]);
    let _dashboard = spawn(&["dashboard"]);

    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&shots).unwrap();
    let purged_path = "/about.html";
    let mut driver = tokio::process::Command::new("node")
        .arg(format!("{root}/tests/player/dashboard.mjs"))
        .args(["--url", &format!("http://{dashboard}/")])
        .args(["--token", "t"])
        .args(["--shots", shots.to_str().unwrap()])
        .args(["--edges", "edge-ams,edge-nyc,edge-sin"])
        .args(["--kill", "edge-sin"])
        .args(["--purge", purged_path])
        .args(["--drain", "edge-ams"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (Node.js 20 or later)");
    let mut to_driver = driver.stdin.take().unwrap();
    let mut from_driver = BufReader::new(driver.stdout.take().unwrap()).lines();
    let mut step = async || -> serde_json::Value {
        let line = tokio::time::timeout(Duration::from_secs(60), from_driver.next_line())
            .await
            .expect("the browser driver answers in time")
            .unwrap()
            .expect("the browser driver ended early");
        let step: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_ne!(step["step"], "failed", "{step}");
        step
    };

    let traffic = step().await;
    assert_eq!(traffic["step"], "traffic");
    // Through every edge: a miss, then hits, on a few objects.
    let http = client();
    let paths = ["/", purged_path, "/robots.txt", "/video/player.html"];
    let mut sent = 0;
    for round in 0..5 {
        for (name, data) in &edge_data {
            for path in paths {
                let response = http
                    .get(format!("http://{data}{path}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200, "{name}{path} round {round}");
                response.bytes().await.unwrap();
                sent += 1;
            }
        }
    }
    // A player reporting through CMCD (a session id, its bitrate, an empty buffer).
    let cmcd = "br%3D3200%2Cbl%3D0%2Cbs%2Csid%3D%22viewer-7%22%2Ccid%3D%22demo%22%2Cst%3Dv";
    let (_, nyc) = &edge_data[1];
    let response = http
        .get(format!("http://{nyc}/robots.txt?CMCD={cmcd}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    sent += 1;
    to_driver
        .write_all(format!("sent {sent}\n").as_bytes())
        .await
        .unwrap();

    let kill = step().await;
    assert_eq!(kill["step"], "kill");
    let (_, edge_sin) = edge_nodes.pop().unwrap();
    edge_sin.signal("KILL");
    to_driver.write_all(b"killed\n").await.unwrap();

    let done = step().await;
    assert_eq!(done["step"], "done", "{done}");
    println!("{done}");
    let _ = std::io::stdout().flush();
    assert_eq!(
        done["errors"],
        serde_json::json!([]),
        "the page logged errors"
    );
    // The numbers moved with the traffic: every request counted, on every edge, and the hit
    // ratio with them.
    let before = &traffic["before"];
    let after = &done["after"];
    let total = |v: &serde_json::Value| v["total"].as_f64().unwrap_or(0.0);
    assert!(
        total(after) >= total(before) + f64::from(sent),
        "requests counted: {before} then {after}"
    );
    for (name, _) in &edge_data {
        let count = |v: &serde_json::Value| v["perEdge"][name].as_f64().unwrap_or(0.0);
        assert!(
            count(after) >= count(before) + 20.0,
            "{name}: {before} then {after}"
        );
    }
    assert_eq!(
        after["streams"],
        serde_json::json!([{"edge": "edge-nyc", "session": "viewer-7", "bitrate": "3200 kbit/s", "rebuffers": "1"}]),
        "the player's stream, as it reported"
    );
    let ratio = after["hitRatio"].as_f64().expect("a hit ratio");
    assert!(ratio > 0.7, "4 misses then 16 hits per edge: {ratio}");
    let moved = done["movedMs"].as_u64().unwrap();
    assert!(
        moved <= 2 * REFRESH_MS + 500,
        "numbers moved after {moved} ms"
    );
    // The stopped edge: down on the map, out of the DNS view and the routing table, within the
    // health horizon plus one refresh of the page.
    let lag = HORIZON_MS + REFRESH_MS + 300;
    for key in ["downMs", "dnsMs", "routingMs"] {
        let ms = done[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} never: {done}"));
        assert!(
            ms <= lag,
            "{key} {ms} ms (horizon {HORIZON_MS} + refresh {REFRESH_MS})"
        );
    }
    // The purge from the page: asked to confirm, acknowledged, listed.
    assert!(
        done["asked"].as_str().unwrap().contains(purged_path),
        "{done}"
    );
    assert_eq!(done["ok"], "true", "{done}");
    assert!(
        done["result"].as_str().unwrap().contains("acknowledged"),
        "{done}"
    );
    assert!(done["purgeRows"].as_u64().unwrap() >= 1, "{done}");
    // ... and the object is gone from every node still up: each edge fetches it again, and
    // the first one's parent does too (the second edge may then find it there).
    for (i, (name, data)) in edge_data[..2].iter().enumerate() {
        let response = http
            .get(format!("http://{data}{purged_path}"))
            .send()
            .await
            .unwrap();
        let status = response.headers()["cache-status"]
            .to_str()
            .unwrap()
            .to_owned();
        let entries: Vec<&str> = status.split(',').map(str::trim).collect();
        let missed = |entry: &&str| entry.contains("fwd=uri-miss");
        assert!(
            entries.len() == 2 && missed(&entries[1]) && (i > 0 || missed(&entries[0])),
            "{name} (and, the first time, its parent) fetch it again: {status}"
        );
    }
    // Drained and undrained from the page: asked first, answered by the edge, shown on the map.
    let drained = &done["drained"];
    assert!(
        drained["drain"]["question"]
            .as_str()
            .unwrap()
            .starts_with("Drain edge-ams?"),
        "{drained}"
    );
    assert_eq!(
        drained["drain"]["answer"], "edge-ams: draining",
        "{drained}"
    );
    assert_eq!(
        drained["undrain"]["answer"], "edge-ams: serving",
        "{drained}"
    );
    // Readable on a phone: nothing wider than its screen.
    assert!(done["phoneWidth"].as_u64().unwrap() <= 390, "{done}");
    for scheme in ["light", "dark"] {
        let shot = shots.join(format!("dashboard-{scheme}.png"));
        assert!(
            std::fs::metadata(&shot).unwrap().len() > 10_000,
            "{}",
            shot.display()
        );
        println!("screenshot: {}", shot.display());
    }
    drop(to_driver);
    let _ = tokio::time::timeout(Duration::from_secs(10), driver.wait()).await;
    drop(edge_nodes);
}

/// Every node role of one CDN, in this process, with an admin listener each.
fn every_role() -> Outpost {
    let toml = "[admin]\ntoken = \"t\"\n\
        [origin]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
        [[parents]]\nname = \"parent-eu\"\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nlocation = [50.1, 8.7]\n\
        [[edges]]\nname = \"edge-ams\"\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nlocation = [52.4, 4.9]\n\
        [dns]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
        [anycast]\naddress = \"127.0.0.1\"\nhttp_port = 0\nadmin = \"127.0.0.1:0\"\n\
        [control]\nlisten = \"127.0.0.1:0\"\n\
        [dashboard]\nlisten = \"127.0.0.1:0\"\n";
    Outpost::up(toml, 7)
}

/// One metric family of an exposition: its TYPE, whether it has HELP, and its samples.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    help: bool,
    samples: Vec<String>,
}

fn families(text: &str) -> std::collections::BTreeMap<String, Family> {
    let mut all: std::collections::BTreeMap<String, Family> = Default::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            all.entry(name.to_owned()).or_default().kind = kind.to_owned();
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            all.entry(name.to_owned()).or_default().help = true;
        } else if !line.starts_with('#') && !line.is_empty() {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = all
                .keys()
                .filter(|f| name.starts_with(f.as_str()))
                .max_by_key(|f| f.len())
                .cloned()
                .unwrap_or_else(|| panic!("a sample of no family: {line}"));
            all.get_mut(&family).unwrap().samples.push(line.to_owned());
        }
    }
    all
}

#[tokio::test]
async fn metric_names_follow_prometheus_conventions_and_the_grafana_board_names_only_real_ones() {
    let cdn = every_role();
    let http = client();
    // Some traffic, so that families with labels have series: through the cache, and through
    // a worker.
    let edge = cdn.data("edge-ams").to_owned();
    for _ in 0..2 {
        let response = http.get(format!("{edge}/")).send().await.unwrap();
        response.bytes().await.unwrap();
    }
    let hello = crate::workers::example("hello");
    let (ok, said) = crate::common::admin_command(
        &[
            "workers",
            "deploy",
            &hello,
            "--name",
            "hello",
            "--route",
            "hello.test/*",
        ],
        "t",
        &[cdn.admin("edge-ams")],
    );
    assert!(ok, "{said}");
    let greeting = http
        .get(format!("{edge}/"))
        .header("host", "hello.test")
        .send()
        .await
        .unwrap();
    assert_eq!(greeting.status(), 200);
    let mut names = std::collections::BTreeSet::new();
    for (node, role) in [
        ("origin", "origin"),
        ("parent-eu", "parent"),
        ("edge-ams", "edge"),
        ("dns", "dns"),
        ("anycast", "anycast"),
        ("control", "control"),
    ] {
        let text = cdn.metrics(node).await;
        for (name, family) in families(&text) {
            let at = format!("{node}: {name}");
            assert!(
                name.starts_with("outpost_")
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{at}: outpost_ and snake case"
            );
            assert!(family.help, "{at}: no HELP");
            // Base units, spelled out, at the end of the name.
            for bad in ["_ms", "_kbps", "milliseconds", "_kb", "_mb", "_percent"] {
                assert!(
                    !name.contains(bad),
                    "{at}: base units (seconds, bytes, bits)"
                );
            }
            match family.kind.as_str() {
                "counter" => {
                    assert!(
                        !name.ends_with("_total"),
                        "{at}: the _total goes on the samples"
                    );
                    for sample in &family.samples {
                        assert!(
                            sample.starts_with(&format!("{name}_total")),
                            "{at}: {sample}"
                        );
                    }
                }
                "histogram" => {
                    assert!(
                        ["_seconds", "_bytes", "_bits_per_second"]
                            .iter()
                            .any(|unit| name.ends_with(unit)),
                        "{at}: a histogram names its unit"
                    );
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
                "gauge" => assert!(!name.ends_with("_total"), "{at}: a gauge is no total"),
                other => panic!("{at}: unexpected type {other}"),
            }
            // The same two labels on every series of every role.
            for sample in &family.samples {
                assert!(
                    sample.contains(&format!("node=\"{node}\""))
                        && sample.contains(&format!("role=\"{role}\"")),
                    "{at}: {sample}"
                );
            }
            names.insert(if family.kind == "counter" {
                format!("{name}_total")
            } else {
                name.clone()
            });
        }
    }
    for required in [
        "outpost_requests_total",
        "outpost_upstream_latency_seconds_bucket",
        "outpost_dns_edge_serving",
        "outpost_anycast_network_edge",
        "outpost_purge_fanout_seconds_bucket",
        "outpost_worker_duration_seconds_bucket",
    ] {
        assert!(names.contains(required), "{required} in {names:?}");
    }

    let board: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/grafana/outpost.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let panels = board["panels"].as_array().unwrap();
    assert!(panels.len() >= 20);
    let mut queried = 0;
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(at) = rest.find("outpost_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    names.contains(&name),
                    "{}: {name} is no metric of Outpost's",
                    panel["title"]
                );
                queried += 1;
                rest = &rest[at + name.len()..];
            }
        }
    }
    assert!(queried >= 26);
}

#[tokio::test]
async fn the_access_log_gives_bytes_streamed_both_times_the_upstream_and_the_request_id() {
    use crate::common::{Reply, TestOrigin};
    // 4 chunks of 1000 bytes with no Content-Length: the edge streams it as it arrives.
    let origin = TestOrigin::start(|_, _| Reply::Chunked {
        headers: crate::common::owned(&[("cache-control", "max-age=60")]),
        chunk: 1000,
        chunks: 4,
        every: Duration::from_millis(30),
    })
    .await;
    let toml = format!(
        "[admin]\ntoken = \"t\"\n[limits]\naccess_log_format = \"json\"\n[cache]\ndisk_mib = 0\n\
         [origin]\nurl = \"{}\"\n\
         [[parents]]\nname = \"parent-0\"\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [[edges]]\nname = \"edge-0\"\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n",
        origin.url
    );
    let cdn = Outpost::up_process(&toml, 2);
    let edge = cdn.data("edge-0").to_owned();
    let http = client();
    for _ in 0..2 {
        let body = http
            .get(format!("{edge}/stream"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(body.len(), 4000);
    }
    let lines = || -> Vec<serde_json::Value> {
        cdn.log()
            .lines()
            .filter_map(|line| line.find("{\"time\"").map(|at| &line[at..]))
            .filter_map(|json| serde_json::from_str(json).ok())
            .filter(|line: &serde_json::Value| line["node"] == "edge-0")
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while lines().len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines = lines();
    let [miss, hit] = &lines[..] else {
        panic!("two lines of edge-0: {lines:?}\n{}", cdn.log());
    };
    for line in [miss, hit] {
        assert_eq!(line["bytes"], 4000, "{line}");
        assert_eq!(line["complete"], true, "{line}");
        assert_eq!(
            (&line["method"], &line["status"]),
            (&"GET".into(), &200.into())
        );
        let (ttfb, total) = (
            line["ttfb_ms"].as_f64().unwrap(),
            line["total_ms"].as_f64().unwrap(),
        );
        assert!(ttfb <= total, "{line}");
        assert!(
            line["request_id"].as_str().unwrap().starts_with("edge-0-"),
            "{line}"
        );
    }
    assert_ne!(miss["request_id"], hit["request_id"]);
    // The miss streamed as the origin sent it (four chunks 30 ms apart), after its head.
    assert!(miss["total_ms"].as_f64().unwrap() >= 80.0, "{miss}");
    assert_eq!(miss["upstream"], "parent-0", "{miss}");
    assert!(
        miss["cache_status"]
            .as_str()
            .unwrap()
            .contains("edge-0; fwd=uri-miss")
    );
    assert_eq!(hit["upstream"], serde_json::Value::Null, "{hit}");
    assert!(
        hit["cache_status"]
            .as_str()
            .unwrap()
            .contains("edge-0; hit")
    );
}
