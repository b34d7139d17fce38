//! Configuration of the geo DNS: zone, dynamic names, static records and the client network table.

use serde::{Deserialize, Serialize};

/// The DNS server's configuration (the `[dns]` table).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// The zone this server is authoritative for, e.g. `outpost.test.`.
    pub zone: String,
    /// Names answered dynamically (nearest healthy edge), relative to the zone. The apex is
    /// always answered dynamically too.
    pub service_names: Vec<String>,
    /// TTL of dynamic answers.
    pub dynamic_ttl_secs: u32,
    /// TTL of static records without their own TTL (and of SOA/NS).
    pub static_ttl_secs: u32,
    /// How many nearest healthy edges a dynamic answer carries.
    pub answers: usize,
    /// Static records; names relative to the zone (`@` is the apex) or absolute inside it.
    pub records: Vec<StaticRecord>,
    /// Client network -> location table, longest prefix wins.
    pub networks: Vec<Network>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            zone: "outpost.test.".to_owned(),
            service_names: vec!["www".to_owned()],
            dynamic_ttl_secs: 20,
            static_ttl_secs: 300,
            answers: 1,
            records: Vec::new(),
            networks: default_networks(),
        }
    }
}

/// Europe (Amsterdam), North America (New York), Asia (Singapore).
const EUROPE: [f64; 2] = [52.4, 4.9];
const NORTH_AMERICA: [f64; 2] = [40.7, -74.0];
const ASIA: [f64; 2] = [1.35, 103.8];

/// The demo client networks from DESIGN.md.
pub fn default_networks() -> Vec<Network> {
    [
        ("127.0.1.0/24", EUROPE),
        ("192.0.2.0/24", EUROPE),
        ("127.0.2.0/24", NORTH_AMERICA),
        ("198.51.100.0/24", NORTH_AMERICA),
        ("127.0.3.0/24", ASIA),
        ("203.0.113.0/24", ASIA),
    ]
    .into_iter()
    .map(|(prefix, location)| Network {
        prefix: prefix.to_owned(),
        location,
    })
    .collect()
}

/// One static resource record.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StaticRecord {
    /// Owner name, relative to the zone (`@` = apex) or absolute (ending in `.`) inside it.
    pub name: String,
    /// `A`, `AAAA`, `CNAME` or `TXT`.
    pub kind: String,
    /// Address, target name (relative or absolute, like `name`) or text.
    pub value: String,
    /// TTL; `static_ttl_secs` when absent.
    #[serde(default)]
    pub ttl_secs: Option<u32>,
}

/// A client network and where its clients are.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// CIDR prefix, e.g. `127.0.1.0/24`.
    pub prefix: String,
    /// Latitude, longitude in degrees.
    pub location: [f64; 2],
}

/// An edge the DNS can hand out.
#[derive(Debug, Clone)]
pub struct EdgeSite {
    /// Edge name, e.g. `edge-ams`; the key for [`crate::GeoDns::set_healthy`].
    pub name: String,
    /// Address returned in A records.
    pub address: std::net::IpAddr,
    /// Latitude, longitude in degrees.
    pub location: [f64; 2],
}

/// Invalid configuration or a server failure.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// `dns.zone` is not a valid domain name.
    #[error("dns.zone {zone:?} is not a valid domain name: {reason}")]
    BadZone { zone: String, reason: String },
    /// An entry of `dns.service_names` is invalid.
    #[error("dns.service_names entry {name:?} is invalid: {reason}")]
    BadServiceName { name: String, reason: String },
    /// An entry of `dns.networks` is invalid.
    #[error("dns.networks entry {prefix:?} is invalid: {reason}")]
    BadNetwork { prefix: String, reason: String },
    /// An entry of `dns.records` is invalid.
    #[error("dns.records entry {name:?} {kind} {value:?} is invalid: {reason}")]
    BadRecord {
        name: String,
        kind: String,
        value: String,
        reason: String,
    },
    /// An edge is unusable (bad coordinates, duplicate name, ...).
    #[error("edge {edge:?} is invalid: {reason}")]
    BadEdge { edge: String, reason: String },
    /// `dns.answers` is 0.
    #[error("dns.answers must be at least 1")]
    BadAnswers,
    /// No edges at all.
    #[error("the DNS needs at least one edge to hand out")]
    NoEdges,
    /// The DNS server failed.
    #[error("dns server: {0}")]
    Server(String),
}
