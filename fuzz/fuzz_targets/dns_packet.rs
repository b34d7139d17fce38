//! Raw UDP datagrams to the geo DNS, from sources all over the address space, through the
//! same path the server takes (rate limit, parse, answer, size limits).
#![no_main]

use std::net::IpAddr;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use outpost_dns::{DnsConfig, EdgeSite, GeoDns};

fn dns() -> &'static GeoDns {
    static DNS: OnceLock<GeoDns> = OnceLock::new();
    DNS.get_or_init(|| {
        let edges = [
            ("edge-ams", "127.0.0.11", [52.4, 4.9]),
            ("edge-nyc", "127.0.0.12", [40.7, -74.0]),
            ("edge-sin", "127.0.0.13", [1.35, 103.8]),
        ]
        .into_iter()
        .map(|(name, address, location)| EdgeSite {
            name: name.to_owned(),
            address: address.parse().unwrap(),
            location,
        })
        .collect();
        GeoDns::new(&DnsConfig::default(), edges).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, packet)) = data.split_first() else {
        return;
    };
    let source = IpAddr::from([127, 0, first % 4, first]);
    if let Some(answer) = dns().answer_datagram(packet, source) {
        assert!(answer.len() <= 1232, "UDP answer of {} bytes", answer.len());
    }
});
