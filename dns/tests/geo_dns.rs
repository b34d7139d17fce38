//! End-to-end tests: `serve` on loopback, queried over real UDP/TCP sockets.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
use outpost_dns::{DnsConfig, EdgeSite, GeoDns, StaticRecord, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

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
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Harness {
    let dns = Arc::new(GeoDns::new(&config(), edges()).unwrap());
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    let tcp = TcpListener::bind(addr).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server_dns = dns.clone();
    tokio::spawn(async move {
        serve(server_dns, udp, tcp, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Harness {
        dns,
        addr,
        _stop: tx,
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
