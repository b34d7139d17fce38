//! Request routing in `outpost up`: the geo DNS answers with the nearest healthy edge, the
//! anycast address forwards each client network to its nearest announcing edge, and draining
//! an edge moves both within the health checks' interval times their fall threshold.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::common::{Outpost, Reply, TestOrigin, cache_status};
use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

/// Runs dig (bind9-dnsutils; `scripts/test-all` installs it) against 127.0.0.1 and returns
/// its output, trimmed.
fn dig(args: &[&str]) -> String {
    let output = std::process::Command::new("dig")
        .arg("@127.0.0.1")
        .args(["+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("dig is installed (apt-get install bind9-dnsutils; scripts/test-all does it)");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn topology(origin: &str) -> String {
    let mut toml = format!(
        "[admin]\ntoken = \"t\"\n[origin]\nurl = \"{origin}\"\n\
         [dns]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n[dns.health]\ninterval_ms = 100\ntimeout_ms = 200\nrise = 2\nfall = 2\n\
         [anycast]\naddress = \"127.0.0.10\"\nhttp_port = 0\nhold_down_ms = 300\n\
         [anycast.health]\ninterval_ms = 100\ntimeout_ms = 200\nrise = 2\nfall = 2\n"
    );
    for (name, ip, location) in [
        ("edge-ams", "127.0.0.11", "[52.4, 4.9]"),
        ("edge-nyc", "127.0.0.12", "[40.7, -74.0]"),
        ("edge-sin", "127.0.0.13", "[1.35, 103.8]"),
    ] {
        toml.push_str(&format!(
            "[[edges]]\nname = \"{name}\"\nlisten = \"{ip}:0\"\nadmin = \"{ip}:0\"\nlocation = {location}\n"
        ));
    }
    toml
}

async fn resolve(
    server: SocketAddr,
    from: &str,
    ecs: Option<(&str, u8)>,
) -> (Vec<String>, Option<ClientSubnet>) {
    let mut query = Message::query();
    query.add_query(Query::query(
        Name::from_ascii("www.outpost.test.").unwrap(),
        RecordType::A,
    ));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    if let Some((addr, prefix)) = ecs {
        edns.options_mut()
            .insert(EdnsOption::Subnet(ClientSubnet::new(
                addr.parse::<IpAddr>().unwrap(),
                prefix,
                0,
            )));
    }
    query.set_edns(edns);
    let socket = UdpSocket::bind(format!("{from}:0")).await.unwrap();
    socket
        .send_to(&query.to_vec().unwrap(), server)
        .await
        .unwrap();
    let mut buffer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buffer))
        .await
        .unwrap()
        .unwrap();
    let reply = Message::from_vec(&buffer[..n]).unwrap();
    let answers = reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    let subnet = reply.edns.as_ref().and_then(|e| {
        match e
            .options()
            .get(hickory_proto::rr::rdata::opt::EdnsCode::Subnet)
        {
            Some(EdnsOption::Subnet(s)) => Some(*s),
            _ => None,
        }
    });
    (answers, subnet)
}

async fn via_anycast(anycast: &str, from: [u8; 4]) -> String {
    let client = reqwest::Client::builder()
        .local_address(IpAddr::from(from))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let response = client.get(format!("{anycast}/page")).send().await.unwrap();
    let status = cache_status(&response);
    let last = status.rsplit(", ").next().unwrap_or("").to_owned();
    last.split(';').next().unwrap_or("").to_owned()
}

#[tokio::test]
async fn dns_and_anycast_send_each_network_to_its_nearest_healthy_edge() {
    let origin = TestOrigin::start(|_, _| Reply::ok(&[("cache-control", "max-age=60")], "x")).await;
    let cdn = Outpost::up_process(&topology(&origin.url), 5);
    let dns: SocketAddr = cdn
        .data("dns")
        .trim_start_matches("dns://")
        .parse()
        .unwrap();
    let anycast = cdn.data("anycast").to_owned();

    // By source address.
    assert_eq!(resolve(dns, "127.0.1.7", None).await.0, ["127.0.0.11"]);
    assert_eq!(resolve(dns, "127.0.2.7", None).await.0, ["127.0.0.12"]);
    assert_eq!(resolve(dns, "127.0.3.7", None).await.0, ["127.0.0.13"]);
    // By EDNS Client Subnet, echoed with the scope the answer depended on.
    for (subnet, edge) in [
        ("192.0.2.0", "127.0.0.11"),
        ("198.51.100.0", "127.0.0.12"),
        ("203.0.113.0", "127.0.0.13"),
    ] {
        let (answers, echoed) = resolve(dns, "127.0.1.7", Some((subnet, 24))).await;
        assert_eq!(answers, [edge], "{subnet}");
        assert_eq!(echoed.map(|s| s.scope_prefix()), Some(24));
    }
    // The same with dig, the client operators use.
    let port = dns.port().to_string();
    assert_eq!(
        dig(&["-p", &port, "-b", "127.0.2.5", "www.outpost.test", "+short"]),
        "127.0.0.12"
    );
    assert_eq!(
        dig(&[
            "-p",
            &port,
            "www.outpost.test",
            "+subnet=203.0.113.0/24",
            "+short"
        ]),
        "127.0.0.13"
    );
    assert_eq!(
        dig(&[
            "-p",
            &port,
            "+tcp",
            "-b",
            "127.0.1.5",
            "www.outpost.test",
            "+short"
        ]),
        "127.0.0.11"
    );
    let refused = dig(&["-p", &port, "example.com", "+noall", "+comments"]);
    assert!(refused.contains("status: REFUSED"), "{refused}");
    // dig's own recursion request changes nothing: no open resolver.
    let refused = dig(&[
        "-p",
        &port,
        "+recurse",
        "www.example.net",
        "+noall",
        "+comments",
    ]);
    assert!(refused.contains("status: REFUSED"), "{refused}");

    // Anycast: one address, the nearest edge per client network.
    assert_eq!(via_anycast(&anycast, [127, 0, 1, 1]).await, "edge-ams");
    assert_eq!(via_anycast(&anycast, [127, 0, 2, 1]).await, "edge-nyc");
    assert_eq!(via_anycast(&anycast, [127, 0, 3, 1]).await, "edge-sin");

    // A connection open to edge-ams through the anycast address, used once and kept alive.
    let anycast_addr: SocketAddr = anycast.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.1.2:0".parse().unwrap()).unwrap();
    let mut open_flow = socket.connect(anycast_addr).await.unwrap();
    let answer = request_on(&mut open_flow).await;
    assert!(answer.contains("edge-ams"), "{answer}");

    // Drain edge-ams: its health check fails, DNS and anycast move Europe to the next nearest.
    let http = crate::common::client();
    let drained = http
        .post(format!("{}/drain", cdn.admin("edge-ams")))
        .bearer_auth("t")
        .send()
        .await
        .unwrap();
    assert_eq!(drained.status(), 200);
    let started = Instant::now();
    let mut moved = None;
    while started.elapsed() < Duration::from_secs(5) {
        if resolve(dns, "127.0.1.7", None).await.0 == ["127.0.0.12"] {
            moved = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let moved = moved.expect("DNS stops handing out a drained edge");
    // interval 100 ms x fall 2, plus a probe's worth of slack.
    assert!(moved < Duration::from_millis(1000), "took {moved:?}");
    let mut shifted = false;
    for _ in 0..100 {
        if via_anycast(&anycast, [127, 0, 1, 1]).await == "edge-nyc" {
            shifted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(shifted, "anycast withdraws the drained edge");
    // The flow that was open to edge-ams broke, as it would in real anycast.
    let mut buffer = vec![0u8; 64];
    let broken = tokio::time::timeout(Duration::from_secs(2), open_flow.read(&mut buffer))
        .await
        .expect("the open flow is closed when its route is withdrawn");
    assert!(matches!(broken, Ok(0) | Err(_)), "{broken:?}");

    // The DNS reports what it did on its admin listener.
    let metrics = cdn.metrics("dns").await;
    for needle in [
        "outpost_dns_queries_total{node=\"dns\",role=\"dns\",qtype=\"A\",protocol=\"udp\"",
        "outpost_dns_queries_total{node=\"dns\",role=\"dns\",qtype=\"A\",protocol=\"tcp\"",
        "outpost_dns_responses_total{node=\"dns\",role=\"dns\",rcode=\"REFUSED\"",
        "outpost_dns_answers_total{node=\"dns\",role=\"dns\",edge=\"edge-nyc\"",
        "outpost_dns_edge_changes_total{node=\"dns\",role=\"dns\",edge=\"edge-ams\",state=\"down\"} 1",
    ] {
        assert!(metrics.contains(needle), "{needle} in {metrics}");
    }
    assert!(
        cdn.log()
            .contains("withdrawn edge=edge-ams convergence_ms=")
    );

    // Back in service: answers return after the rise threshold (and anycast's hold-down).
    http.post(format!("{}/undrain", cdn.admin("edge-ams")))
        .bearer_auth("t")
        .send()
        .await
        .unwrap();
    let mut back = false;
    for _ in 0..150 {
        if resolve(dns, "127.0.1.7", None).await.0 == ["127.0.0.11"]
            && via_anycast(&anycast, [127, 0, 1, 1]).await == "edge-ams"
        {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(back, "edge-ams comes back");
}

#[tokio::test]
async fn an_overloaded_edge_sheds_new_clients_until_its_load_falls() {
    let origin = TestOrigin::start(|seen, _| {
        if seen.target.starts_with("/slow/") {
            Reply::Hang
        } else {
            Reply::ok(&[("cache-control", "max-age=60")], "x")
        }
    })
    .await;
    let mut toml = topology(&origin.url);
    toml.push_str(
        "[cache]\nfirst_byte_timeout_ms = 1500\n\
         [dns.authority.shed]\nhigh_watermark = 3\nlow_watermark = 1\n",
    );
    let cdn = Outpost::up_process(&toml, 5);
    let dns: SocketAddr = cdn
        .data("dns")
        .trim_start_matches("dns://")
        .parse()
        .unwrap();
    assert_eq!(resolve(dns, "127.0.1.7", None).await.0, ["127.0.0.11"]);

    // Five requests held at edge-ams by a slow origin: above its high watermark.
    let edge = cdn.data("edge-ams").to_owned();
    let mut held = Vec::new();
    for i in 0..5 {
        let url = format!("{edge}/slow/{i}");
        held.push(tokio::spawn(async move {
            crate::common::client()
                .get(url)
                .send()
                .await
                .map(|r| r.status())
        }));
    }
    let started = Instant::now();
    let mut shed = false;
    while started.elapsed() < Duration::from_secs(1) {
        if resolve(dns, "127.0.1.7", None).await.0 == ["127.0.0.12"] {
            shed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(shed, "new European clients go to the next nearest edge");
    // The edge still serves what it has (it is loaded, not down).
    let page = crate::common::client()
        .get(format!("{edge}/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);

    // The origin's silence ends in a 504 after 1.5 s; the load falls and Europe comes back.
    for request in held {
        assert_eq!(request.await.unwrap().unwrap(), 504);
    }
    let mut back = false;
    for _ in 0..50 {
        if resolve(dns, "127.0.1.7", None).await.0 == ["127.0.0.11"] {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        back,
        "edge-ams takes new clients again below its low watermark: {}",
        cdn.log()
    );
    // The log is read from the process's stderr by a thread of its own: it may trail the DNS.
    let mut log = cdn.log();
    for _ in 0..100 {
        if log.contains("edge edge-ams accepts new clients again") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        log = cdn.log();
    }
    assert!(log.contains("edge edge-ams sheds load"), "{log}");
    assert!(
        log.contains("edge edge-ams accepts new clients again"),
        "{log}"
    );
}

/// Sends one request on an open keep-alive connection and returns the whole answer (head
/// and `content-length` body), lowercased.
async fn request_on(flow: &mut tokio::net::TcpStream) -> String {
    flow.write_all(b"GET /page HTTP/1.1\r\nhost: www.outpost.test\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buffer = vec![0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&answer).to_lowercase();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if answer.len() >= end + 4 + length {
                return text;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(2), flow.read(&mut buffer))
            .await
            .expect("an answer on the open flow")
            .unwrap();
        assert!(n > 0, "the flow closed mid-answer");
        answer.extend_from_slice(&buffer[..n]);
    }
}

#[tokio::test]
async fn raising_an_edges_cost_moves_new_flows_and_keeps_open_ones() {
    let origin = TestOrigin::start(|_, _| Reply::ok(&[("cache-control", "max-age=60")], "x")).await;
    let toml = topology(&origin.url);
    let cdn = Outpost::up_process(&toml, 5);
    let anycast = cdn.data("anycast").to_owned();
    let anycast_addr: SocketAddr = anycast.trim_start_matches("http://").parse().unwrap();
    assert_eq!(via_anycast(&anycast, [127, 0, 1, 1]).await, "edge-ams");
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.1.3:0".parse().unwrap()).unwrap();
    let mut open_flow = socket.connect(anycast_addr).await.unwrap();
    let head = request_on(&mut open_flow).await;
    assert!(head.contains("edge-ams"), "{head}");

    // The operator raises edge-ams's cost from Europe above every other edge and reloads.
    std::fs::write(
        cdn.config_path(),
        format!(
            "{toml}[[anycast.costs]]\nnetwork = \"127.0.1.0/24\"\nedge = \"edge-ams\"\ncost = 100000\n"
        ),
    )
    .unwrap();
    cdn.signal("HUP");
    let mut moved = false;
    for _ in 0..100 {
        if via_anycast(&anycast, [127, 0, 1, 1]).await == "edge-nyc" {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        moved,
        "new European flows go to the next cheapest edge: {}",
        cdn.log()
    );
    // The flow that was open keeps its edge: nothing was withdrawn.
    let head = request_on(&mut open_flow).await;
    assert!(head.contains("edge-ams"), "{head}");
    assert!(cdn.log().contains("costs reloaded"));

    // A broken config keeps the costs in force and says why.
    std::fs::write(
        cdn.config_path(),
        format!(
            "{toml}[[anycast.costs]]\nnetwork = \"10.9.9.0/24\"\nedge = \"edge-ams\"\ncost = 1\n"
        ),
    )
    .unwrap();
    cdn.signal("HUP");
    let mut refused = false;
    for _ in 0..100 {
        if cdn.log().contains("costs not reloaded") {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "{}", cdn.log());
    assert_eq!(via_anycast(&anycast, [127, 0, 1, 1]).await, "edge-nyc");
}
