//! Prometheus metrics of the DNS: queries by type and transport, responses by code, answers by
//! edge, health and shedding changes, and rate-limited queries.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueryLabels {
    qtype: &'static str,
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RcodeLabel {
    rcode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EdgeLabel {
    edge: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChangeLabels {
    edge: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: &'static str,
}

/// Query types counted by name; the rest count as "other", and a query without a question
/// as "none".
const QTYPES: [(RecordType, &str); 10] = [
    (RecordType::A, "A"),
    (RecordType::AAAA, "AAAA"),
    (RecordType::ANY, "ANY"),
    (RecordType::CNAME, "CNAME"),
    (RecordType::NS, "NS"),
    (RecordType::SOA, "SOA"),
    (RecordType::TXT, "TXT"),
    (RecordType::MX, "MX"),
    (RecordType::AXFR, "AXFR"),
    (RecordType::IXFR, "IXFR"),
];
/// Response codes counted by name; the rest count as "other".
const RCODES: [(ResponseCode, &str); 6] = [
    (ResponseCode::NoError, "NOERROR"),
    (ResponseCode::NXDomain, "NXDOMAIN"),
    (ResponseCode::Refused, "REFUSED"),
    (ResponseCode::FormErr, "FORMERR"),
    (ResponseCode::NotImp, "NOTIMP"),
    (ResponseCode::ServFail, "SERVFAIL"),
];

/// Where a query type's counter is: one per named type, then "other", then "none".
fn qtype_index(qtype: Option<RecordType>) -> usize {
    match qtype {
        Some(qtype) => QTYPES
            .iter()
            .position(|(known, _)| *known == qtype)
            .unwrap_or(QTYPES.len()),
        None => QTYPES.len() + 1,
    }
}

/// Where a response code's counter is: one per named code, then "other".
fn rcode_index(rcode: ResponseCode) -> usize {
    RCODES
        .iter()
        .position(|(known, _)| *known == rcode)
        .unwrap_or(RCODES.len())
}

/// The DNS server's counters; [`DnsMetrics::register`] adds them to an admin registry. The
/// per-query counters are looked up once, here, not per query.
#[derive(Clone)]
pub(crate) struct DnsMetrics {
    queries: Family<QueryLabels, Counter>,
    responses: Family<RcodeLabel, Counter>,
    answers: Family<EdgeLabel, Counter>,
    changes: Family<ChangeLabels, Counter>,
    rate_limited: Family<ActionLabel, Counter>,
    /// `queries` by [qtype index][udp].
    query_counters: Vec<[Counter; 2]>,
    /// `responses` by rcode index.
    response_counters: Vec<Counter>,
}

impl Default for DnsMetrics {
    fn default() -> Self {
        let queries = Family::<QueryLabels, Counter>::default();
        let responses = Family::<RcodeLabel, Counter>::default();
        let query_counters = QTYPES
            .iter()
            .map(|(_, label)| *label)
            .chain(["other", "none"])
            .map(|qtype| {
                [false, true].map(|udp| {
                    queries
                        .get_or_create(&QueryLabels {
                            qtype,
                            protocol: if udp { "udp" } else { "tcp" },
                        })
                        .clone()
                })
            })
            .collect();
        let response_counters = RCODES
            .iter()
            .map(|(_, label)| *label)
            .chain(["other"])
            .map(|rcode| responses.get_or_create(&RcodeLabel { rcode }).clone())
            .collect();
        Self {
            queries,
            responses,
            answers: Family::default(),
            changes: Family::default(),
            rate_limited: {
                // Both actions exist from the start, at 0, so queries on them work before any
                // query was limited.
                let family: Family<ActionLabel, Counter> = Family::default();
                for action in ["slipped", "dropped"] {
                    let _ = family.get_or_create(&ActionLabel { action });
                }
                family
            },
            query_counters,
            response_counters,
        }
    }
}

impl DnsMetrics {
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "outpost_dns_queries",
            "DNS queries by type and transport",
            self.queries.clone(),
        );
        registry.register(
            "outpost_dns_responses",
            "DNS responses by response code",
            self.responses.clone(),
        );
        registry.register(
            "outpost_dns_answers",
            "Dynamic answers by edge handed out",
            self.answers.clone(),
        );
        registry.register(
            "outpost_dns_edge_changes",
            "Edge state changes (up, down, shedding, accepting)",
            self.changes.clone(),
        );
        registry.register(
            "outpost_dns_rate_limited",
            "UDP queries over their network's rate (slipped: truncated answer; dropped)",
            self.rate_limited.clone(),
        );
    }

    pub(crate) fn query(&self, qtype: Option<RecordType>, udp: bool) {
        self.query_counters[qtype_index(qtype)][usize::from(udp)].inc();
    }

    pub(crate) fn response(&self, rcode: ResponseCode) {
        self.response_counters[rcode_index(rcode)].inc();
    }

    /// The counter of answers naming `edge`, to keep beside the edge.
    pub(crate) fn answers_for(&self, edge: &str) -> Counter {
        self.answers
            .get_or_create(&EdgeLabel {
                edge: edge.to_owned(),
            })
            .clone()
    }

    pub(crate) fn change(&self, edge: &str, state: &'static str) {
        self.changes
            .get_or_create(&ChangeLabels {
                edge: edge.to_owned(),
                state,
            })
            .inc();
    }

    pub(crate) fn rate_limited(&self, slipped: bool) {
        self.rate_limited
            .get_or_create(&ActionLabel {
                action: if slipped { "slipped" } else { "dropped" },
            })
            .inc();
    }
}
