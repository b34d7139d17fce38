//! The zone data and the nearest-healthy-edge decision.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, CNAME, HINFO, NS};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use ipnet::IpNet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tracing::warn;

use crate::config::{DnsConfig, DnsError, EdgeSite, ShedLoad};
use crate::geoip::GeoIpDatabase;
use crate::metrics::DnsMetrics;
use crate::networks::{NetworkTable, distance_km};
use crate::rate_limit::Limiter;
use crate::zone::Zone;

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
    /// What the zone holds, static and dynamic names.
    pub(crate) zone: Zone,
    pub(crate) edges: Vec<Edge>,
    networks: NetworkTable,
    dynamic_ttl: u32,
    answers: usize,
    shed: ShedLoad,
    pub(crate) limiter: Option<Limiter>,
    pub(crate) metrics: DnsMetrics,
    geoip: Option<GeoIpDatabase>,
    routing_gauges: crate::view::RoutingGauges,
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

impl GeoDns {
    /// Builds the zone from `config` and the edges to hand out (all start healthy).
    pub fn new(config: &DnsConfig, edges: Vec<EdgeSite>) -> Result<Self, DnsError> {
        if config.answers == 0 {
            return Err(DnsError::BadAnswers);
        }
        if edges.is_empty() {
            return Err(DnsError::NoEdges);
        }
        let mut seen = HashSet::new();
        for edge in &edges {
            if !crate::networks::valid_location(edge.location) {
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

        let networks = NetworkTable::new(&config.networks).map_err(|e| DnsError::BadNetwork {
            prefix: e.prefix,
            reason: e.reason,
        })?;

        let zone = Zone::new(config)?;

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

        let dns = Self {
            zone,
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
            answers: config.answers,
            shed: config.shed,
            limiter,
            metrics,
            geoip,
            routing_gauges: crate::view::RoutingGauges::default(),
        };
        dns.routing_gauges.publish(&dns.routing());
        Ok(dns)
    }

    /// Marks an edge (by name) healthy or not. Unknown names are logged and ignored.
    pub fn set_healthy(&self, edge: &str, healthy: bool) {
        match self.edges.iter().find(|e| e.site.name == edge) {
            Some(e) => {
                if e.healthy.swap(healthy, Ordering::Relaxed) != healthy {
                    self.metrics
                        .change(edge, if healthy { "up" } else { "down" });
                    self.routing_gauges.publish(&self.routing());
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
        self.routing_gauges.publish(&self.routing());
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
        self.routing_gauges.register(registry, "dns");
    }

    /// Whether the named edge is currently considered healthy (`None` if unknown).
    pub fn is_healthy(&self, edge: &str) -> Option<bool> {
        self.edges
            .iter()
            .find(|e| e.site.name == edge)
            .map(|e| e.healthy.load(Ordering::Relaxed))
    }

    /// The answers each network of the table gets now.
    pub fn routing(&self) -> crate::view::RoutingView {
        let networks = self
            .networks
            .networks()
            .iter()
            .map(|network| {
                let located = Located {
                    network: Some((network.prefix, network.location)),
                    from_database: false,
                };
                let (chosen, _) = self.choose(located);
                crate::view::NetworkRouting {
                    prefix: network.prefix.to_string(),
                    location: network.location,
                    edges: chosen
                        .into_iter()
                        .map(|i| self.edges[i].site.name.clone())
                        .collect(),
                }
            })
            .collect();
        crate::view::RoutingView {
            edges: self
                .edges
                .iter()
                .map(|e| crate::view::EdgeRouting {
                    name: e.site.name.clone(),
                    serving: e.healthy.load(Ordering::Relaxed),
                    shedding: e.shedding.load(Ordering::Relaxed),
                })
                .collect(),
            networks,
        }
    }

    /// The zone this server is authoritative for.
    pub fn zone(&self) -> &Name {
        &self.zone.origin_name
    }

    /// Finds the client's network; `max_prefix` is the ECS source prefix (a network longer
    /// than what the client revealed cannot be matched).
    pub(crate) fn locate(&self, addr: IpAddr, max_prefix: u8) -> Located {
        let addr = addr.to_canonical();
        let network = self
            .networks
            .locate(addr, max_prefix)
            .map(|(_, n)| (n.prefix, n.location));
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
                    distance_km(loc, self.edges[a].site.location)
                        .total_cmp(&distance_km(loc, self.edges[b].site.location))
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
                Some((_, loc)) => format!("{:.0} km", distance_km(loc, edge.site.location)),
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
            if self.zone.existing.contains(qname) {
                lookup.answers.push(Record::from_rdata(
                    Name::from(qname),
                    self.zone.static_ttl,
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
                .zone
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
                if !self.zone.origin.zone_of(&target) {
                    // Out of zone: the client resolves the rest itself.
                    return lookup;
                }
                name = target;
                continue;
            }

            if !self.zone.existing.contains(&name) {
                lookup.rcode = ResponseCode::NXDomain;
                lookup.authorities.push(self.negative_soa());
                return lookup;
            }

            if qtype == RecordType::A && self.zone.dynamic.contains(&name) {
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
                        && let Some(glue) = self.zone.records.get(&LowerName::new(target))
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
        let mut soa = self.zone.soa.clone();
        if let RData::SOA(data) = &soa.data {
            soa.ttl = soa.ttl.min(data.minimum);
        }
        soa
    }
}
