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
    /// A MaxMind-format database (GeoIP2 / GeoLite2 City) for clients the network table does
    /// not cover.
    pub geoip_database: Option<std::path::PathBuf>,
    /// More static records, from a zone file in RFC 1035 master-file format (`$ORIGIN` is the
    /// zone). An SOA or apex NS records there replace the generated ones.
    pub zone_file: Option<std::path::PathBuf>,
    /// An edge whose reported load (requests in flight) passes `high_watermark` sheds new
    /// clients to the next nearest edge until its load falls below `low_watermark`.
    pub shed: ShedLoad,
    /// Response rate limiting per client network (UDP only).
    pub rate_limit: RateLimit,
}

/// Load shedding thresholds (the `[dns.authority.shed]` table); `high_watermark = 0` turns
/// shedding off.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ShedLoad {
    pub high_watermark: u64,
    pub low_watermark: u64,
}

impl Default for ShedLoad {
    fn default() -> Self {
        Self {
            high_watermark: 512,
            low_watermark: 384,
        }
    }
}

/// Response rate limiting (the `[dns.authority.rate_limit]` table), as in BIND's RRL: each
/// client network gets `responses_per_second` UDP answers (with bursts up to `burst`); past
/// that, every `slip`-th query gets an empty truncated answer (so a real client retries over
/// TCP, which is not limited) and the rest are dropped. `responses_per_second = 0` turns it
/// off.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimit {
    pub responses_per_second: u32,
    /// Tokens a quiet network may save up; `responses_per_second` when 0.
    pub burst: u32,
    /// Every `slip`-th limited query gets a truncated answer; 0 drops them all.
    pub slip: u32,
    /// How IPv4 clients are grouped into networks.
    pub ipv4_prefix_len: u8,
    /// How IPv6 clients are grouped into networks.
    pub ipv6_prefix_len: u8,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            responses_per_second: 200,
            burst: 400,
            slip: 2,
            ipv4_prefix_len: 24,
            ipv6_prefix_len: 56,
        }
    }
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
            geoip_database: None,
            zone_file: None,
            shed: ShedLoad::default(),
            rate_limit: RateLimit::default(),
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
    /// The zone file cannot be read or parsed, or holds a bad record.
    #[error("dns.zone_file {path}: {reason}")]
    BadZoneFile { path: String, reason: String },
    /// The GeoIP database cannot be opened.
    #[error(
        "dns.geoip_database {path}: {reason} (a MaxMind DB file such as GeoLite2-City.mmdb is expected)"
    )]
    BadGeoIpDatabase { path: String, reason: String },
    /// `dns.shed` or `dns.rate_limit` is inconsistent.
    #[error("{key}: {reason}")]
    BadSetting { key: &'static str, reason: String },
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
