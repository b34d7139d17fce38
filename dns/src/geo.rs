//! The zone data and the nearest-healthy-edge decision.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordSet;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, HINFO, NS, SOA, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::txt::Parser;
use ipnet::IpNet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tracing::warn;

use crate::config::{DnsConfig, DnsError, EdgeSite, ShedLoad};
use crate::geoip::GeoIpDatabase;
use crate::metrics::DnsMetrics;
use crate::rate_limit::Limiter;

/// How many CNAMEs inside the zone one answer follows.
const MAX_CNAME_CHAIN: usize = 8;

pub(crate) struct Edge {
    pub(crate) site: EdgeSite,
    healthy: AtomicBool,
    /// The load the edge last reported (requests in flight).
    load: AtomicU64,
    /// Above its high watermark and not yet below the low one: new clients go elsewhere.
    shedding: AtomicBool,
    /// Answers that named this edge.
    answers: Counter,
}

/// The authoritative geo DNS: the zone's records and the edges with their health.
///
/// It is the [`hickory_server::server::RequestHandler`]; run it with [`crate::serve`].
pub struct GeoDns {
    pub(crate) origin: LowerName,
    origin_name: Name,
    pub(crate) soa: Record,
    dynamic: HashSet<LowerName>,
    /// Static records by owner name (SOA, NS, glue and configured records).
    records: HashMap<LowerName, Vec<Record>>,
    /// Every name that exists: owners, dynamic names and the empty non-terminals above them.
    existing: HashSet<LowerName>,
    pub(crate) edges: Vec<Edge>,
    /// Longest prefix first.
    networks: Vec<(IpNet, [f64; 2])>,
    dynamic_ttl: u32,
    static_ttl: u32,
    answers: usize,
    shed: ShedLoad,
    pub(crate) limiter: Option<Limiter>,
    pub(crate) metrics: DnsMetrics,
    geoip: Option<GeoIpDatabase>,
}

/// Where a client is, as far as the network table knows.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Located {
    pub(crate) network: Option<(IpNet, [f64; 2])>,
    /// The network and location come from the GeoIP database, not the network table.
    pub(crate) from_database: bool,
}

/// The outcome of a lookup, before it is put on the wire.
pub(crate) struct Lookup {
    pub(crate) rcode: ResponseCode,
    pub(crate) answers: Vec<Record>,
    pub(crate) authorities: Vec<Record>,
    pub(crate) additionals: Vec<Record>,
    /// The answer depended on the client's location.
    pub(crate) used_location: bool,
}

fn parse_name(name: &str, origin: &Name) -> Result<Name, String> {
    let name = name.trim();
    let parsed = if name == "@" || name.is_empty() {
        origin.clone()
    } else if name.ends_with('.') {
        Name::from_ascii(name).map_err(|e| e.to_string())?
    } else {
        Name::from_ascii(name)
            .and_then(|n| n.append_domain(origin))
            .map_err(|e| e.to_string())?
    };
    Ok(parsed.to_lowercase())
}

/// Parses a master file; records without a TTL get `default_ttl` (a `$TTL` line overrides
/// it). Errors name the line when it can be found.
fn parse_zone_file(
    text: &str,
    path: &std::path::Path,
    origin: &Name,
    default_ttl: u32,
) -> Result<
    (
        Name,
        std::collections::BTreeMap<hickory_proto::rr::RrKey, RecordSet>,
    ),
    String,
> {
    let parse = |body: &str| {
        Parser::new(
            format!("$TTL {default_ttl}\n{body}"),
            Some(path.to_path_buf()),
            Some(origin.clone()),
        )
        .parse()
    };
    parse(text).map_err(|error| {
        let message = error.to_string();
        // The parser does not say where: the first prefix of the file that fails the same way
        // ends on the culprit line.
        let lines: Vec<&str> = text.lines().collect();
        let line = (1..=lines.len()).find(|&n| {
            parse(&lines[..n].join("\n"))
                .err()
                .is_some_and(|e| e.to_string() == message)
        });
        match line {
            Some(n) => format!("line {n}: {message} (in {:?})", lines[n - 1].trim()),
            None => message,
        }
    })
}

/// Splits text into DNS character-strings of at most 255 bytes, on character boundaries.
fn character_strings(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    for ch in text.chars() {
        if cur.len() + ch.len_utf8() > 255 {
            parts.push(std::mem::take(&mut cur));
        }
        cur.push(ch);
    }
    parts.push(cur);
    parts
}

/// Adds one static record, refusing what would make the zone inconsistent: names outside it,
/// a CNAME beside other data, static addresses on a dynamic name.
fn insert_static(
    records: &mut HashMap<LowerName, Vec<Record>>,
    dynamic: &HashSet<LowerName>,
    origin: &Name,
    record: Record,
) -> Result<(), String> {
    let owner = &record.name;
    if !origin.zone_of(owner) {
        return Err(format!("{owner} is outside the zone {origin}"));
    }
    let lower = LowerName::new(owner);
    let kind = record.record_type();
    let is_dynamic = dynamic.contains(&lower);
    let existing = records.get(&lower).map(Vec::as_slice).unwrap_or_default();
    if kind == RecordType::CNAME && (is_dynamic || !existing.is_empty()) {
        return Err(
            "a CNAME cannot share its name with other records or a dynamic name".to_owned(),
        );
    }
    if existing
        .iter()
        .any(|r| r.record_type() == RecordType::CNAME)
    {
        return Err("the name already has a CNAME".to_owned());
    }
    if is_dynamic && matches!(kind, RecordType::A | RecordType::AAAA) {
        return Err(format!(
            "{owner} is answered dynamically; it cannot have static {kind} records"
        ));
    }
    records.entry(lower).or_default().push(record);
    Ok(())
}

pub(crate) fn haversine_km(a: [f64; 2], b: [f64; 2]) -> f64 {
    const EARTH_RADIUS_KM: f64 = 6371.0;
    let (lat1, lon1) = (a[0].to_radians(), a[1].to_radians());
    let (lat2, lon2) = (b[0].to_radians(), b[1].to_radians());
    let dlat = lat2 - lat1;
    let dlon = lon2 - lon1;
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

fn valid_location(loc: [f64; 2]) -> bool {
    loc[0].is_finite()
        && loc[1].is_finite()
        && (-90.0..=90.0).contains(&loc[0])
        && (-180.0..=180.0).contains(&loc[1])
}

impl GeoDns {
    /// Builds the zone from `config` and the edges to hand out (all start healthy).
    pub fn new(config: &DnsConfig, edges: Vec<EdgeSite>) -> Result<Self, DnsError> {
        let origin_name = Name::from_ascii(config.zone.trim())
            .map_err(|e| DnsError::BadZone {
                zone: config.zone.clone(),
                reason: e.to_string(),
            })?
            .to_lowercase();
        if !origin_name.is_fqdn() || origin_name.is_root() {
            return Err(DnsError::BadZone {
                zone: config.zone.clone(),
                reason: "must be an absolute name ending in '.', not the root".to_owned(),
            });
        }
        if config.answers == 0 {
            return Err(DnsError::BadAnswers);
        }
        if edges.is_empty() {
            return Err(DnsError::NoEdges);
        }
        let mut seen = HashSet::new();
        for edge in &edges {
            if !valid_location(edge.location) {
                return Err(DnsError::BadEdge {
                    edge: edge.name.clone(),
                    reason: format!(
                        "location {:?} is not a latitude/longitude pair",
                        edge.location
                    ),
                });
            }
            if !edge.address.is_ipv4() {
                return Err(DnsError::BadEdge {
                    edge: edge.name.clone(),
                    reason: format!("address {} is not IPv4", edge.address),
                });
            }
            if !seen.insert(edge.name.as_str()) {
                return Err(DnsError::BadEdge {
                    edge: edge.name.clone(),
                    reason: "duplicate edge name".to_owned(),
                });
            }
        }

        let mut networks = Vec::with_capacity(config.networks.len());
        for net in &config.networks {
            let parsed = IpNet::from_str(net.prefix.trim()).map_err(|e| DnsError::BadNetwork {
                prefix: net.prefix.clone(),
                reason: e.to_string(),
            })?;
            if parsed != parsed.trunc() {
                return Err(DnsError::BadNetwork {
                    prefix: net.prefix.clone(),
                    reason: format!("host bits set; did you mean {}?", parsed.trunc()),
                });
            }
            if !valid_location(net.location) {
                return Err(DnsError::BadNetwork {
                    prefix: net.prefix.clone(),
                    reason: format!(
                        "location {:?} is not a latitude/longitude pair",
                        net.location
                    ),
                });
            }
            networks.push((parsed, net.location));
        }
        networks.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));

        let origin = LowerName::new(&origin_name);
        let static_ttl = config.static_ttl_secs;
        let ns_name = Name::from_ascii("ns1")
            .and_then(|n| n.append_domain(&origin_name))
            .map_err(|e| DnsError::BadZone {
                zone: config.zone.clone(),
                reason: e.to_string(),
            })?;
        let hostmaster = Name::from_ascii("hostmaster")
            .and_then(|n| n.append_domain(&origin_name))
            .map_err(|e| DnsError::BadZone {
                zone: config.zone.clone(),
                reason: e.to_string(),
            })?;
        let default_ns = ns_name.clone();
        let soa = Record::from_rdata(
            origin_name.clone(),
            static_ttl,
            RData::SOA(SOA::new(
                ns_name.clone(),
                hostmaster,
                1,
                3600,
                600,
                86400,
                config.dynamic_ttl_secs.min(static_ttl),
            )),
        );
        let mut records: HashMap<LowerName, Vec<Record>> = HashMap::new();
        records.entry(origin.clone()).or_default().extend([
            soa.clone(),
            Record::from_rdata(
                origin_name.clone(),
                static_ttl,
                RData::NS(NS(ns_name.clone())),
            ),
        ]);
        records
            .entry(LowerName::new(&ns_name))
            .or_default()
            .push(Record::from_rdata(
                ns_name,
                static_ttl,
                RData::A(A::new(127, 0, 0, 1)),
            ));

        let mut dynamic = HashSet::new();
        dynamic.insert(origin.clone());
        for name in &config.service_names {
            let parsed =
                parse_name(name, &origin_name).map_err(|reason| DnsError::BadServiceName {
                    name: name.clone(),
                    reason,
                })?;
            if !origin_name.zone_of(&parsed) {
                return Err(DnsError::BadServiceName {
                    name: name.clone(),
                    reason: format!("{parsed} is outside the zone {origin_name}"),
                });
            }
            dynamic.insert(LowerName::new(&parsed));
        }

        for rec in &config.records {
            let bad = |reason: String| DnsError::BadRecord {
                name: rec.name.clone(),
                kind: rec.kind.clone(),
                value: rec.value.clone(),
                reason,
            };
            let owner = parse_name(&rec.name, &origin_name).map_err(&bad)?;
            let kind = rec.kind.trim().to_ascii_uppercase();
            let rdata = match kind.as_str() {
                "A" => RData::A(A(rec
                    .value
                    .trim()
                    .parse()
                    .map_err(|e| bad(format!("not an IPv4 address: {e}")))?)),
                "AAAA" => RData::AAAA(AAAA(
                    rec.value
                        .trim()
                        .parse()
                        .map_err(|e| bad(format!("not an IPv6 address: {e}")))?,
                )),
                "CNAME" => RData::CNAME(CNAME(parse_name(&rec.value, &origin_name).map_err(&bad)?)),
                "TXT" => RData::TXT(TXT::new(character_strings(&rec.value))),
                other => {
                    return Err(bad(format!(
                        "unsupported kind {other:?} (use A, AAAA, CNAME or TXT)"
                    )));
                }
            };
            let ttl = rec.ttl_secs.unwrap_or(static_ttl);
            insert_static(
                &mut records,
                &dynamic,
                &origin_name,
                Record::from_rdata(owner, ttl, rdata),
            )
            .map_err(bad)?;
        }

        let mut soa = soa;
        if let Some(path) = &config.zone_file {
            let bad = |reason: String| DnsError::BadZoneFile {
                path: path.display().to_string(),
                reason,
            };
            let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
            let (file_origin, sets) =
                parse_zone_file(&text, path, &origin_name, static_ttl).map_err(bad)?;
            if file_origin.to_lowercase() != origin_name {
                return Err(bad(format!(
                    "its origin {file_origin} is not the zone {origin_name}"
                )));
            }
            let file_has_apex_ns = sets.values().any(|set: &RecordSet| {
                set.record_type() == RecordType::NS && set.name().to_lowercase() == origin_name
            });
            for set in sets.values() {
                for record in set.records_without_rrsigs() {
                    let mut record = record.clone();
                    record.name = record.name.to_lowercase();
                    let at_apex = record.name == origin_name;
                    match record.record_type() {
                        RecordType::SOA if at_apex => {
                            let apex = records.entry(origin.clone()).or_default();
                            apex.retain(|r| r.record_type() != RecordType::SOA);
                            apex.push(record.clone());
                            soa = record;
                        }
                        RecordType::SOA => {
                            return Err(bad(format!(
                                "an SOA record at {} is not the apex",
                                record.name
                            )));
                        }
                        _ => insert_static(&mut records, &dynamic, &origin_name, record)
                            .map_err(&bad)?,
                    }
                }
            }
            if file_has_apex_ns {
                // Keep only the file's NS records at the apex.
                let apex = records.entry(origin.clone()).or_default();
                apex.retain(|r| {
                    !(r.record_type() == RecordType::NS
                        && matches!(&r.data, RData::NS(NS(target)) if *target == default_ns))
                });
            }
        }

        let limiter = Limiter::new(&config.rate_limit)?;
        if config.shed.high_watermark > 0 && config.shed.low_watermark >= config.shed.high_watermark
        {
            return Err(DnsError::BadSetting {
                key: "dns.shed",
                reason: format!(
                    "low_watermark ({}) must be below high_watermark ({})",
                    config.shed.low_watermark, config.shed.high_watermark
                ),
            });
        }
        let metrics = DnsMetrics::default();
        let geoip = config
            .geoip_database
            .as_deref()
            .map(GeoIpDatabase::open)
            .transpose()?;

        let mut existing = HashSet::new();
        for name in records.keys().chain(dynamic.iter()) {
            let mut n = name.clone();
            loop {
                let at_origin = n == origin;
                existing.insert(n.clone());
                if at_origin || n.is_root() {
                    break;
                }
                n = n.base_name();
            }
        }

        Ok(Self {
            origin,
            origin_name,
            soa,
            dynamic,
            records,
            existing,
            edges: edges
                .into_iter()
                .map(|site| Edge {
                    answers: metrics.answers_for(&site.name),
                    site,
                    healthy: AtomicBool::new(true),
                    load: AtomicU64::new(0),
                    shedding: AtomicBool::new(false),
                })
                .collect(),
            networks,
            dynamic_ttl: config.dynamic_ttl_secs,
            static_ttl,
            answers: config.answers,
            shed: config.shed,
            limiter,
            metrics,
            geoip,
        })
    }

    /// Marks an edge (by name) healthy or not. Unknown names are logged and ignored.
    pub fn set_healthy(&self, edge: &str, healthy: bool) {
        match self.edges.iter().find(|e| e.site.name == edge) {
            Some(e) => {
                if e.healthy.swap(healthy, Ordering::Relaxed) != healthy {
                    self.metrics
                        .change(edge, if healthy { "up" } else { "down" });
                }
            }
            None => warn!(edge, "set_healthy for an unknown edge"),
        }
    }

    /// Records the load an edge reported; returns `Some(shedding)` when this report made it
    /// start (above the high watermark) or stop (below the low one) shedding new clients.
    pub fn set_load(&self, edge: &str, load: u64) -> Option<bool> {
        let Some(e) = self.edges.iter().find(|e| e.site.name == edge) else {
            warn!(edge, "set_load for an unknown edge");
            return None;
        };
        e.load.store(load, Ordering::Relaxed);
        if self.shed.high_watermark == 0 {
            return None;
        }
        let shedding = e.shedding.load(Ordering::Relaxed);
        let now = if shedding {
            load >= self.shed.low_watermark
        } else {
            load > self.shed.high_watermark
        };
        if now == shedding {
            return None;
        }
        e.shedding.store(now, Ordering::Relaxed);
        self.metrics
            .change(edge, if now { "shedding" } else { "accepting" });
        Some(now)
    }

    /// Lowers the TTL of dynamic answers to `horizon` (rounded up to whole seconds, at least
    /// one): the time the health checks take to move traffic off a failed edge, so that no
    /// client keeps an answer much longer than it stays true.
    pub fn cap_dynamic_ttl(mut self, horizon: Duration) -> Self {
        let secs = u32::try_from(horizon.as_millis().div_ceil(1000))
            .unwrap_or(u32::MAX)
            .max(1);
        self.dynamic_ttl = self.dynamic_ttl.min(secs);
        self
    }

    /// The TTL of dynamic answers.
    pub fn dynamic_ttl(&self) -> u32 {
        self.dynamic_ttl
    }

    /// Registers the DNS metrics on an admin registry.
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.metrics.register(registry);
    }

    /// Whether the named edge is currently considered healthy (`None` if unknown).
    pub fn is_healthy(&self, edge: &str) -> Option<bool> {
        self.edges
            .iter()
            .find(|e| e.site.name == edge)
            .map(|e| e.healthy.load(Ordering::Relaxed))
    }

    /// The zone this server is authoritative for.
    pub fn zone(&self) -> &Name {
        &self.origin_name
    }

    /// Finds the client's network; `max_prefix` is the ECS source prefix (a network longer
    /// than what the client revealed cannot be matched).
    pub(crate) fn locate(&self, addr: IpAddr, max_prefix: u8) -> Located {
        let addr = addr.to_canonical();
        let network = self
            .networks
            .iter()
            .find(|(net, _)| net.prefix_len() <= max_prefix && net.contains(&addr))
            .copied();
        match (network, &self.geoip) {
            (None, Some(db)) => Located {
                network: db.locate(addr),
                from_database: true,
            },
            _ => Located {
                network,
                from_database: false,
            },
        }
    }

    /// Edge indices to answer with, and whether we failed open.
    pub(crate) fn choose(&self, located: Located) -> (Vec<usize>, bool) {
        let healthy: Vec<usize> = (0..self.edges.len())
            .filter(|&i| self.edges[i].healthy.load(Ordering::Relaxed))
            .collect();
        if healthy.is_empty() {
            return ((0..self.edges.len()).collect(), true);
        }
        let mut chosen = healthy;
        // Edges that shed load go after every other healthy edge; nearest first within each.
        let shedding = |i: usize| self.edges[i].shedding.load(Ordering::Relaxed);
        match located.network {
            Some((_, loc)) => chosen.sort_by(|&a, &b| {
                shedding(a).cmp(&shedding(b)).then_with(|| {
                    haversine_km(loc, self.edges[a].site.location)
                        .total_cmp(&haversine_km(loc, self.edges[b].site.location))
                })
            }),
            None => chosen.sort_by_key(|&i| shedding(i)),
        }
        chosen.truncate(self.answers);
        (chosen, false)
    }

    /// Explains which edge(s) `client` gets and why.
    pub fn explain(&self, client: IpAddr) -> String {
        let located = self.locate(client, 128);
        let (chosen, fail_open) = self.choose(located);
        let mut out = String::new();
        match located.network {
            Some((net, loc)) => {
                let _ = writeln!(
                    out,
                    "client {client}: network {net} ({}) -> location ({:.2}, {:.2}); nearest healthy edge by great-circle distance",
                    if located.from_database {
                        "GeoIP database"
                    } else {
                        "network table"
                    },
                    loc[0],
                    loc[1]
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "client {client}: no configured network {}matches; answering with the first healthy edge(s) in config order",
                    if self.geoip.is_some() {
                        "or GeoIP database entry "
                    } else {
                        ""
                    }
                );
            }
        }
        for (i, edge) in self.edges.iter().enumerate() {
            let healthy = edge.healthy.load(Ordering::Relaxed);
            let load = edge.load.load(Ordering::Relaxed);
            let shedding = if edge.shedding.load(Ordering::Relaxed) {
                format!(
                    ", shedding (load {load} above {}, until below {})",
                    self.shed.high_watermark, self.shed.low_watermark
                )
            } else {
                format!(", load {load}")
            };
            let distance = match located.network {
                Some((_, loc)) => format!("{:.0} km", haversine_km(loc, edge.site.location)),
                None => "distance unknown".to_owned(),
            };
            let _ = writeln!(
                out,
                "  {} {} ({:.2}, {:.2}): {distance}, {}{shedding}{}",
                edge.site.name,
                edge.site.address,
                edge.site.location[0],
                edge.site.location[1],
                if healthy { "healthy" } else { "unhealthy" },
                if chosen.contains(&i) {
                    " <- chosen"
                } else {
                    ""
                },
            );
        }
        if fail_open {
            let _ = writeln!(
                out,
                "every edge is unhealthy: failing open, answering with all edges"
            );
        }
        let names: Vec<&str> = chosen
            .iter()
            .map(|&i| self.edges[i].site.name.as_str())
            .collect();
        let _ = write!(out, "answer: {}", names.join(", "));
        out
    }

    /// Resolves one in-zone question. `qname` must be inside the zone.
    pub(crate) fn lookup(&self, qname: &LowerName, qtype: RecordType, located: Located) -> Lookup {
        let mut lookup = Lookup {
            rcode: ResponseCode::NoError,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
            used_location: false,
        };

        if qtype == RecordType::ANY {
            // RFC 8482: a minimal answer instead of everything.
            if self.existing.contains(qname) {
                lookup.answers.push(Record::from_rdata(
                    Name::from(qname),
                    self.static_ttl,
                    RData::HINFO(HINFO::new("RFC8482".to_owned(), String::new())),
                ));
            } else {
                lookup.rcode = ResponseCode::NXDomain;
                lookup.authorities.push(self.negative_soa());
            }
            return lookup;
        }

        let mut name = qname.clone();
        for _ in 0..MAX_CNAME_CHAIN {
            let statics = self
                .records
                .get(&name)
                .map(Vec::as_slice)
                .unwrap_or_default();
            if qtype != RecordType::CNAME
                && let Some(cname) = statics
                    .iter()
                    .find(|r| r.record_type() == RecordType::CNAME)
            {
                lookup.answers.push(cname.clone());
                let RData::CNAME(CNAME(target)) = &cname.data else {
                    break;
                };
                let target = LowerName::new(target);
                if !self.origin.zone_of(&target) {
                    // Out of zone: the client resolves the rest itself.
                    return lookup;
                }
                name = target;
                continue;
            }

            if !self.existing.contains(&name) {
                lookup.rcode = ResponseCode::NXDomain;
                lookup.authorities.push(self.negative_soa());
                return lookup;
            }

            if qtype == RecordType::A && self.dynamic.contains(&name) {
                lookup.used_location = true;
                let (chosen, fail_open) = self.choose(located);
                if fail_open {
                    warn!(%name, "every edge is unhealthy; failing open with all edges");
                }
                let owner = Name::from(&name);
                for i in chosen {
                    self.edges[i].answers.inc();
                    if let IpAddr::V4(v4) = self.edges[i].site.address {
                        lookup.answers.push(Record::from_rdata(
                            owner.clone(),
                            self.dynamic_ttl,
                            RData::A(A(v4)),
                        ));
                    }
                }
            } else {
                lookup
                    .answers
                    .extend(statics.iter().filter(|r| r.record_type() == qtype).cloned());
            }

            if lookup.answers.is_empty() {
                lookup.authorities.push(self.negative_soa());
            } else if qtype == RecordType::NS {
                // Glue for in-zone name servers.
                for rec in &lookup.answers {
                    if let RData::NS(NS(target)) = &rec.data
                        && let Some(glue) = self.records.get(&LowerName::new(target))
                    {
                        lookup.additionals.extend(
                            glue.iter()
                                .filter(|r| {
                                    matches!(r.record_type(), RecordType::A | RecordType::AAAA)
                                })
                                .cloned(),
                        );
                    }
                }
            }
            return lookup;
        }
        warn!(%qname, "CNAME chain too long");
        lookup.rcode = ResponseCode::ServFail;
        lookup
    }

    fn negative_soa(&self) -> Record {
        let mut soa = self.soa.clone();
        if let RData::SOA(data) = &soa.data {
            soa.ttl = soa.ttl.min(data.minimum);
        }
        soa
    }
}
