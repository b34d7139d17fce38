//! End-to-end tests: `serve` on loopback, queried over real UDP/TCP sockets.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
use outpost_dns::{DnsConfig, EdgeSite, GeoDns, RateLimit, ShedLoad, StaticRecord, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const AMS: &str = "127.0.0.11";
const NYC: &str = "127.0.0.12";
const SIN: &str = "127.0.0.13";

fn edges() -> Vec<EdgeSite> {
    [
        ("edge-ams", AMS, [52.4, 4.9]),
        ("edge-nyc", NYC, [40.7, -74.0]),
        ("edge-sin", SIN, [1.35, 103.8]),
    ]
    .into_iter()
    .map(|(name, addr, location)| EdgeSite {
        name: name.to_owned(),
        address: addr.parse().unwrap(),
        location,
    })
    .collect()
}

fn config() -> DnsConfig {
    let mut records = vec![
        StaticRecord {
            name: "alias".to_owned(),
            kind: "CNAME".to_owned(),
            value: "www".to_owned(),
            ttl_secs: None,
        },
        StaticRecord {
            name: "static.outpost.test.".to_owned(),
            kind: "A".to_owned(),
            value: "127.0.0.99".to_owned(),
            ttl_secs: Some(60),
        },
    ];
    for i in 0..40 {
        records.push(StaticRecord {
            name: "big".to_owned(),
            kind: "TXT".to_owned(),
            value: format!("record {i} {}", "x".repeat(40)),
            ttl_secs: None,
        });
    }
    DnsConfig {
        records,
        ..DnsConfig::default()
    }
}

struct Harness {
    dns: Arc<GeoDns>,
    addr: SocketAddr,
    /// Dropping it stops the server.
    _stop: outpost_server::Shutdown,
}

async fn start() -> Harness {
    start_with(config()).await
}

async fn start_with(config: DnsConfig) -> Harness {
    let dns = Arc::new(GeoDns::new(&config, edges()).unwrap());
    let (udp, tcp) = outpost_dns::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = udp.local_addr().unwrap();
    let stop = outpost_server::Shutdown::new();
    let server_dns = dns.clone();
    let signal = stop.signal();
    tokio::spawn(async move {
        serve(server_dns, udp, tcp, signal).await.unwrap();
    });
    Harness {
        dns,
        addr,
        _stop: stop,
    }
}

fn query(name: &str, rtype: RecordType, ecs: Option<(IpAddr, u8)>, edns: bool) -> Message {
    let mut msg = Message::query();
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if edns || ecs.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        if let Some((addr, prefix)) = ecs {
            e.options_mut()
                .insert(EdnsOption::Subnet(ClientSubnet::new(addr, prefix, 0)));
        }
        msg.set_edns(e);
    }
    msg
}

async fn udp_raw(server: SocketAddr, from: &str, bytes: &[u8]) -> Option<Message> {
    let sock = UdpSocket::bind(format!("{from}:0")).await.unwrap();
    sock.send_to(bytes, server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf))
        .await
        .ok()?
        .unwrap();
    Some(Message::from_vec(&buf[..n]).unwrap())
}

async fn udp(server: SocketAddr, from: &str, msg: &Message) -> Message {
    let reply = udp_raw(server, from, &msg.to_vec().unwrap())
        .await
        .expect("no reply");
    assert_eq!(reply.metadata.id, msg.metadata.id);
    assert_eq!(reply.metadata.message_type, MessageType::Response);
    reply
}

async fn tcp(server: SocketAddr, msg: &Message) -> Message {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let bytes = msg.to_vec().unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await.unwrap();
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.unwrap();
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

fn a_addrs(msg: &Message) -> Vec<String> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

fn ecs_of(msg: &Message) -> Option<ClientSubnet> {
    match msg.edns.as_ref()?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(s) => Some(*s),
        _ => None,
    }
}

#[tokio::test]
async fn source_network_picks_nearest_edge() {
    let h = start().await;
    for (from, want) in [("127.0.1.7", AMS), ("127.0.2.7", NYC), ("127.0.3.7", SIN)] {
        let reply = udp(
            h.addr,
            from,
            &query("www.outpost.test.", RecordType::A, None, false),
        )
        .await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.metadata.authoritative);
        assert!(!reply.metadata.recursion_available);
        assert_eq!(a_addrs(&reply), vec![want.to_owned()], "client {from}");
        assert_eq!(reply.answers[0].ttl, 20);
        // The apex is dynamic too.
        let apex = udp(
            h.addr,
            from,
            &query("outpost.test.", RecordType::A, None, false),
        )
        .await;
        assert_eq!(a_addrs(&apex), vec![want.to_owned()]);
    }
    // Unknown network: first healthy edge in config order.
    let reply = udp(
        h.addr,
        "127.0.0.1",
        &query("www.outpost.test.", RecordType::A, None, false),
    )
    .await;
    assert_eq!(a_addrs(&reply), vec![AMS.to_owned()]);
}

#[tokio::test]
async fn client_subnet_overrides_source_and_is_echoed() {
    let h = start().await;
    for (subnet, want) in [
        ("192.0.2.0", AMS),
        ("198.51.100.0", NYC),
        ("203.0.113.0", SIN),
    ] {
        let q = query(
            "www.outpost.test.",
            RecordType::A,
            Some((subnet.parse().unwrap(), 24)),
            true,
        );
        // Sent from a European source: ECS must win.
        let reply = udp(h.addr, "127.0.1.7", &q).await;
        assert_eq!(a_addrs(&reply), vec![want.to_owned()], "subnet {subnet}");
        let ecs = ecs_of(&reply).expect("ECS echoed");
        assert_eq!(ecs.addr(), subnet.parse::<IpAddr>().unwrap());
        assert_eq!(ecs.source_prefix(), 24);
        assert_eq!(ecs.scope_prefix(), 24);
    }
    // A static answer does not depend on location: scope 0.
    let q = query(
        "static.outpost.test.",
        RecordType::A,
        Some((Ipv4Addr::new(192, 0, 2, 0).into(), 24)),
        true,
    );
    let reply = udp(h.addr, "127.0.1.7", &q).await;
    assert_eq!(a_addrs(&reply), vec!["127.0.0.99".to_owned()]);
    assert_eq!(ecs_of(&reply).unwrap().scope_prefix(), 0);
}

#[tokio::test]
async fn health_moves_answers_and_fails_open() {
    let h = start().await;
    let q = query("www.outpost.test.", RecordType::A, None, false);
    h.dns.set_healthy("edge-ams", false);
    let reply = udp(h.addr, "127.0.1.7", &q).await;
    assert_eq!(a_addrs(&reply), vec![NYC.to_owned()]);
    let text = h.dns.explain("127.0.1.7".parse().unwrap());
    assert!(text.contains("unhealthy"), "{text}");

    h.dns.set_healthy("edge-nyc", false);
    h.dns.set_healthy("edge-sin", false);
    let reply = udp(h.addr, "127.0.1.7", &q).await;
    let mut got = a_addrs(&reply);
    got.sort();
    assert_eq!(got, vec![AMS.to_owned(), NYC.to_owned(), SIN.to_owned()]);

    h.dns.set_healthy("edge-ams", true);
    let reply = udp(h.addr, "127.0.3.7", &q).await;
    assert_eq!(a_addrs(&reply), vec![AMS.to_owned()]);
}

#[tokio::test]
async fn zone_data_and_refusals() {
    let h = start().await;
    let from = "127.0.2.7";

    let reply = udp(
        h.addr,
        from,
        &query("example.com.", RecordType::A, None, false),
    )
    .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert!(reply.answers.is_empty());

    let reply = udp(
        h.addr,
        from,
        &query("nope.outpost.test.", RecordType::A, None, false),
    )
    .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert!(reply.metadata.authoritative);
    assert!(matches!(reply.authorities[0].data, RData::SOA(_)));

    let reply = udp(
        h.addr,
        from,
        &query("outpost.test.", RecordType::SOA, None, false),
    )
    .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(matches!(reply.answers[0].data, RData::SOA(_)));

    let reply = udp(
        h.addr,
        from,
        &query("outpost.test.", RecordType::NS, None, false),
    )
    .await;
    match &reply.answers[0].data {
        RData::NS(ns) => assert_eq!(ns.0.to_string(), "ns1.outpost.test."),
        other => panic!("not NS: {other:?}"),
    }
    assert_eq!(reply.additionals.len(), 1, "glue for ns1");
    let reply = udp(
        h.addr,
        from,
        &query("ns1.outpost.test.", RecordType::A, None, false),
    )
    .await;
    assert_eq!(a_addrs(&reply), vec!["127.0.0.1".to_owned()]);

    // AAAA on a dynamic name: NODATA with the SOA.
    let reply = udp(
        h.addr,
        from,
        &query("www.outpost.test.", RecordType::AAAA, None, false),
    )
    .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.answers.is_empty());
    assert!(matches!(reply.authorities[0].data, RData::SOA(_)));

    // CNAME to a dynamic name includes the target's geo answer.
    let reply = udp(
        h.addr,
        from,
        &query("alias.outpost.test.", RecordType::A, None, false),
    )
    .await;
    assert!(matches!(reply.answers[0].data, RData::CNAME(_)));
    assert_eq!(a_addrs(&reply), vec![NYC.to_owned()]);

    // ANY: minimal RFC 8482 answer.
    let reply = udp(
        h.addr,
        from,
        &query("www.outpost.test.", RecordType::ANY, None, false),
    )
    .await;
    assert_eq!(reply.answers.len(), 1);
    assert!(matches!(reply.answers[0].data, RData::HINFO(_)));

    // Zone transfers are refused, over UDP and TCP.
    let reply = udp(
        h.addr,
        from,
        &query("outpost.test.", RecordType::AXFR, None, false),
    )
    .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    let reply = tcp(
        h.addr,
        &query("outpost.test.", RecordType::AXFR, None, false),
    )
    .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);

    // Two questions: FORMERR.
    let mut two = query("www.outpost.test.", RecordType::A, None, false);
    two.add_query(Query::query(
        Name::from_ascii("outpost.test.").unwrap(),
        RecordType::A,
    ));
    let reply = udp(h.addr, from, &two).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    // Many long questions (found by the fuzzer): FORMERR without echoing them, within 512
    // bytes, not the 1,357 bytes the server used to send back.
    let mut many = query("www.outpost.test.", RecordType::A, None, false);
    for i in 0..40 {
        let name = format!("{}{i}.outpost.test.", "x".repeat(40));
        many.add_query(Query::query(
            Name::from_ascii(&name).unwrap(),
            RecordType::A,
        ));
    }
    let packet = many.to_vec().unwrap();
    assert!(packet.len() > 1232);
    let answer = h
        .dns
        .answer_datagram(&packet, "127.0.1.9".parse().unwrap())
        .unwrap();
    assert!(answer.len() <= 512, "{} bytes", answer.len());
    assert_eq!(
        Message::from_vec(&answer).unwrap().metadata.response_code,
        ResponseCode::FormErr
    );

    // Not a query opcode.
    let mut notify = query("outpost.test.", RecordType::SOA, None, false);
    notify.metadata.op_code = OpCode::Notify;
    let reply = udp(h.addr, from, &notify).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NotImp);
}

#[tokio::test]
async fn big_answers_truncate_over_udp_and_work_over_tcp() {
    let h = start().await;
    let q = query("big.outpost.test.", RecordType::TXT, None, false);
    let reply = udp(h.addr, "127.0.1.7", &q).await;
    assert!(reply.metadata.truncation);
    assert!(reply.answers.is_empty());

    // A bigger EDNS buffer is still not enough for ~40 * 60 bytes.
    let q_edns = query("big.outpost.test.", RecordType::TXT, None, true);
    let reply = udp(h.addr, "127.0.1.7", &q_edns).await;
    assert!(reply.metadata.truncation);
    assert!(reply.answers.is_empty());

    let reply = tcp(h.addr, &q).await;
    assert!(!reply.metadata.truncation);
    assert_eq!(reply.answers.len(), 40);
}

#[tokio::test]
async fn garbage_does_not_stop_the_server() {
    let h = start().await;
    let mut state: u64 = 0x1234_5678_9abc_def0;
    for len in [0usize, 3, 11, 12, 13, 40, 100, 512, 1400] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 33) as u8
            })
            .collect();
        let sock = UdpSocket::bind("127.0.1.8:0").await.unwrap();
        sock.send_to(&bytes, h.addr).await.unwrap();
    }
    // A header claiming one question, with the question missing: FORMERR.
    let reply = udp_raw(
        h.addr,
        "127.0.1.9",
        &[0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0],
    )
    .await;
    if let Some(reply) = reply {
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    }
    // Garbage over TCP too.
    let mut stream = TcpStream::connect(h.addr).await.unwrap();
    stream.write_all(&[0, 5, 1, 2, 3, 4, 5]).await.unwrap();
    drop(stream);

    let reply = udp(
        h.addr,
        "127.0.3.7",
        &query("www.outpost.test.", RecordType::A, None, false),
    )
    .await;
    assert_eq!(a_addrs(&reply), vec![SIN.to_owned()]);
}

#[tokio::test]
async fn explain_names_the_choice() {
    let dns = GeoDns::new(&config(), edges()).unwrap();
    let text = dns.explain("127.0.2.7".parse().unwrap());
    assert!(text.contains("127.0.2.0/24"), "{text}");
    assert!(text.contains("answer: edge-nyc"), "{text}");
    assert!(text.contains("km"), "{text}");
    let text = dns.explain("10.1.2.3".parse().unwrap());
    assert!(text.contains("no configured network"), "{text}");
    assert!(text.contains("answer: edge-ams"), "{text}");
}

#[test]
fn config_errors_name_the_culprit() {
    let mut cfg = DnsConfig::default();
    cfg.networks[0].prefix = "127.0.1.0/33".to_owned();
    let err = GeoDns::new(&cfg, edges()).err().unwrap().to_string();
    assert!(err.contains("127.0.1.0/33"), "{err}");

    let mut cfg = DnsConfig::default();
    cfg.records.push(StaticRecord {
        name: "www.example.com.".to_owned(),
        kind: "A".to_owned(),
        value: "127.0.0.1".to_owned(),
        ttl_secs: None,
    });
    let err = GeoDns::new(&cfg, edges()).err().unwrap().to_string();
    assert!(err.contains("outside the zone"), "{err}");

    let mut bad_edges = edges();
    bad_edges[1].location = [f64::NAN, 0.0];
    let err = GeoDns::new(&DnsConfig::default(), bad_edges)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("edge-nyc"), "{err}");

    let toml_like: Result<DnsConfig, _> =
        serde::Deserialize::deserialize(serde::de::value::MapDeserializer::<
            _,
            serde::de::value::Error,
        >::new(std::iter::once(("bogus", 1u32))));
    assert!(toml_like.is_err());
}

#[tokio::test]
async fn an_overloaded_edge_sheds_to_the_next_nearest_until_below_its_low_watermark() {
    let h = start_with(DnsConfig {
        shed: ShedLoad {
            high_watermark: 100,
            low_watermark: 50,
        },
        ..config()
    })
    .await;
    let www = query("www.outpost.test.", RecordType::A, None, false);
    let europe = || async { a_addrs(&udp(h.addr, "127.0.1.7", &www).await) };
    assert_eq!(europe().await, vec![AMS.to_owned()]);

    assert_eq!(
        h.dns.set_load("edge-ams", 100),
        None,
        "at the mark is not above it"
    );
    assert_eq!(h.dns.set_load("edge-ams", 101), Some(true));
    // The next nearest edge to Amsterdam is New York.
    assert_eq!(europe().await, vec![NYC.to_owned()]);
    // Between the watermarks: still shedding (hysteresis).
    assert_eq!(h.dns.set_load("edge-ams", 60), None);
    assert_eq!(europe().await, vec![NYC.to_owned()]);
    assert!(
        h.dns
            .explain("127.0.1.7".parse().unwrap())
            .contains("shedding")
    );
    // Asia is not affected.
    let asia = udp(h.addr, "127.0.3.7", &www).await;
    assert_eq!(a_addrs(&asia), vec![SIN.to_owned()]);
    assert_eq!(h.dns.set_load("edge-ams", 49), Some(false));
    assert_eq!(europe().await, vec![AMS.to_owned()]);

    // When every healthy edge sheds, the nearest is still answered: shedding orders, it never
    // empties an answer.
    for edge in ["edge-ams", "edge-nyc", "edge-sin"] {
        h.dns.set_load(edge, 1_000);
    }
    assert_eq!(europe().await, vec![AMS.to_owned()]);
    // A shedding edge still beats a dead one.
    h.dns.set_load("edge-ams", 0);
    h.dns.set_healthy("edge-ams", false);
    assert_eq!(europe().await, vec![NYC.to_owned()]);
}

#[tokio::test]
async fn rate_limit_slips_truncated_answers_and_tcp_still_answers() {
    let h = start_with(DnsConfig {
        rate_limit: RateLimit {
            responses_per_second: 5,
            burst: 5,
            slip: 2,
            ..RateLimit::default()
        },
        ..config()
    })
    .await;
    let www = query("www.outpost.test.", RecordType::A, None, false);
    let sock = UdpSocket::bind("127.0.1.20:0").await.unwrap();
    let bytes = www.to_vec().unwrap();
    for _ in 0..30 {
        sock.send_to(&bytes, h.addr).await.unwrap();
    }
    let (mut answered, mut truncated) = (0, 0);
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(500), sock.recv(&mut buf)).await
    {
        let reply = Message::from_vec(&buf[..n]).unwrap();
        if reply.metadata.truncation {
            assert!(reply.answers.is_empty());
            truncated += 1;
        } else {
            answered += 1;
        }
    }
    // The burst of 5 plus what 5/s refills while the 30 queries are handled.
    assert!((5..=8).contains(&answered), "answered {answered}");
    // Every second limited query slips, the rest are dropped.
    assert!((10..=13).contains(&truncated), "truncated {truncated}");
    assert!(answered + truncated < 30);

    // Another client network has its own budget.
    let other = udp(h.addr, "127.0.3.7", &www).await;
    assert_eq!(a_addrs(&other), vec![SIN.to_owned()]);
    // TCP, where the source address cannot be spoofed, is not limited.
    let over_tcp = tcp(h.addr, &www).await;
    assert_eq!(over_tcp.answers.len(), 1);

    let mut registry = prometheus_client::registry::Registry::default();
    h.dns.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("outpost_dns_rate_limited_total{action=\"slipped\"}"),
        "{text}"
    );
    assert!(
        text.contains("outpost_dns_queries_total{qtype=\"A\",protocol=\"udp\"} 31"),
        "{text}"
    );
    assert!(
        text.contains("outpost_dns_answers_total{edge=\"edge-sin\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn no_udp_answer_is_bigger_than_the_question_invites() {
    let mut config = config();
    // About 900 bytes of TXT: more than 512, less than 1232.
    config.records.retain(|r| r.name != "big");
    for i in 0..15 {
        config.records.push(StaticRecord {
            name: "mid".to_owned(),
            kind: "TXT".to_owned(),
            value: format!("record {i} {}", "y".repeat(40)),
            ttl_secs: None,
        });
    }
    let h = start_with(config).await;
    let plain = query("mid.outpost.test.", RecordType::TXT, None, false);
    let reply = udp_raw(h.addr, "127.0.1.7", &plain.to_vec().unwrap())
        .await
        .unwrap();
    assert!(reply.metadata.truncation, "no EDNS: 512 bytes at most");
    let mut small = query("mid.outpost.test.", RecordType::TXT, None, true);
    small.edns.as_mut().unwrap().set_max_payload(700);
    let reply = udp(h.addr, "127.0.1.7", &small).await;
    assert!(
        reply.metadata.truncation,
        "the client's buffer is the limit"
    );
    let edns = query("mid.outpost.test.", RecordType::TXT, None, true);
    let sock = UdpSocket::bind("127.0.1.7:0").await.unwrap();
    sock.send_to(&edns.to_vec().unwrap(), h.addr).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let n = sock.recv(&mut buf).await.unwrap();
    assert!(n <= 1232, "{n} bytes");
    let reply = Message::from_vec(&buf[..n]).unwrap();
    assert!(!reply.metadata.truncation);
    assert_eq!(reply.answers.len(), 15);
    // A client claiming a 64 KiB buffer still gets at most 1232 bytes.
    let mut huge = query("big.outpost.test.", RecordType::TXT, None, true);
    huge.edns.as_mut().unwrap().set_max_payload(65_000);
    let h2 = start().await;
    sock.send_to(&huge.to_vec().unwrap(), h2.addr)
        .await
        .unwrap();
    let n = sock.recv(&mut buf).await.unwrap();
    assert!(n <= 1232, "{n} bytes");
    assert!(Message::from_vec(&buf[..n]).unwrap().metadata.truncation);
}

#[tokio::test]
async fn zone_file_records_are_served_beside_the_dynamic_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outpost.test.zone");
    std::fs::write(
        &path,
        "$ORIGIN outpost.test.\n\
         $TTL 3600\n\
         @       IN SOA ns.outpost.test. admin.outpost.test. ( 7 3600 600 86400 30 )\n\
         @       IN MX 10 mail\n\
         mail    IN A 192.0.2.25\n\
         docs    IN CNAME www ; follows the dynamic name\n",
    )
    .unwrap();
    let h = start_with(DnsConfig {
        zone_file: Some(path.clone()),
        ..config()
    })
    .await;
    let mail = udp(
        h.addr,
        "127.0.1.7",
        &query("mail.outpost.test.", RecordType::A, None, false),
    )
    .await;
    assert_eq!(a_addrs(&mail), vec!["192.0.2.25".to_owned()]);
    assert_eq!(mail.answers[0].ttl, 3600);
    let mx = udp(
        h.addr,
        "127.0.1.7",
        &query("outpost.test.", RecordType::MX, None, false),
    )
    .await;
    assert_eq!(mx.answers.len(), 1);
    let docs = udp(
        h.addr,
        "127.0.3.7",
        &query("docs.outpost.test.", RecordType::A, None, false),
    )
    .await;
    assert_eq!(docs.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(a_addrs(&docs), vec![SIN.to_owned()]);
    let soa = udp(
        h.addr,
        "127.0.1.7",
        &query("outpost.test.", RecordType::SOA, None, false),
    )
    .await;
    match &soa.answers[0].data {
        RData::SOA(soa) => assert_eq!(soa.serial, 7),
        other => panic!("{other:?}"),
    }
    // NXDOMAIN carries the file's SOA, with its minimum as the negative TTL.
    let missing = udp(
        h.addr,
        "127.0.1.7",
        &query("nope.outpost.test.", RecordType::A, None, false),
    )
    .await;
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(missing.authorities[0].ttl, 30);

    // Bad zone files name the file and the problem.
    for (text, needle) in [
        ("www IN A 192.0.2.1\n", "dynamically"),
        ("elsewhere.example. IN A 192.0.2.1\n", "outside the zone"),
        ("mail IN A 192.0.2.25\nmail IN A not-an-address\n", "line 2"),
    ] {
        std::fs::write(&path, text).unwrap();
        let error = GeoDns::new(
            &DnsConfig {
                zone_file: Some(path.clone()),
                ..config()
            },
            edges(),
        )
        .err()
        .expect("refused");
        let message = error.to_string();
        assert!(message.contains("outpost.test.zone"), "{message}");
        assert!(message.contains(needle), "{message}");
    }
}

#[test]
fn dynamic_ttl_never_outlives_the_health_decision() {
    let dns = GeoDns::new(&config(), edges()).unwrap();
    assert_eq!(dns.dynamic_ttl(), 20);
    let dns = dns.cap_dynamic_ttl(Duration::from_millis(6_000));
    assert_eq!(dns.dynamic_ttl(), 6);
    let dns = dns.cap_dynamic_ttl(Duration::from_millis(1_500));
    assert_eq!(dns.dynamic_ttl(), 2);
    let dns = dns.cap_dynamic_ttl(Duration::ZERO);
    assert_eq!(dns.dynamic_ttl(), 1);
    let dns = GeoDns::new(&config(), edges())
        .unwrap()
        .cap_dynamic_ttl(Duration::from_secs(3_600));
    assert_eq!(dns.dynamic_ttl(), 20);
}

#[tokio::test]
async fn a_maxmind_database_locates_clients_the_network_table_does_not_know() {
    #[derive(serde::Serialize)]
    struct Location {
        latitude: f64,
        longitude: f64,
    }
    #[derive(serde::Serialize)]
    struct City {
        location: Location,
    }
    let mut writer = mmdb_writer::Writer::new("GeoLite2-City");
    // Tokyo: nearest to Singapore. Paris: nearest to Amsterdam.
    for (net, latitude, longitude) in [("10.1.0.0/16", 35.7, 139.7), ("10.2.0.0/16", 48.9, 2.35)] {
        writer
            .insert(
                net.parse::<ipnet::IpNet>().unwrap(),
                &City {
                    location: Location {
                        latitude,
                        longitude,
                    },
                },
            )
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("GeoLite2-City.mmdb");
    std::fs::write(&path, writer.to_bytes().unwrap()).unwrap();

    let h = start_with(DnsConfig {
        geoip_database: Some(path.clone()),
        ..config()
    })
    .await;
    let www = |subnet: &str| {
        query(
            "www.outpost.test.",
            RecordType::A,
            Some((subnet.parse().unwrap(), 24)),
            true,
        )
    };
    let tokyo = udp(h.addr, "127.0.1.7", &www("10.1.7.0")).await;
    assert_eq!(a_addrs(&tokyo), vec![SIN.to_owned()]);
    // The answer holds for the database's whole /16.
    assert_eq!(ecs_of(&tokyo).unwrap().scope_prefix(), 16);
    let paris = udp(h.addr, "127.0.3.7", &www("10.2.9.0")).await;
    assert_eq!(a_addrs(&paris), vec![AMS.to_owned()]);
    // The network table still comes first.
    let table = udp(h.addr, "127.0.1.7", &www("203.0.113.0")).await;
    assert_eq!(a_addrs(&table), vec![SIN.to_owned()]);
    let text = h.dns.explain("10.2.9.9".parse().unwrap());
    assert!(text.contains("GeoIP database"), "{text}");
    assert!(text.contains("answer: edge-ams"), "{text}");

    // Not a database: a clear error at start.
    std::fs::write(&path, b"not a database").unwrap();
    let error = GeoDns::new(
        &DnsConfig {
            geoip_database: Some(path.clone()),
            ..config()
        },
        edges(),
    )
    .err()
    .expect("refused")
    .to_string();
    assert!(error.contains("GeoLite2-City.mmdb"), "{error}");
    assert!(error.contains("MaxMind DB"), "{error}");
}
