//! Prometheus metrics of a cache node.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StatusLabel {
    pub class: &'static str,
}

/// Counters of one cache node, registered on its admin registry.
#[derive(Clone)]
pub struct CacheMetrics {
    pub(crate) requests: Family<OutcomeLabel, Counter>,
    pub(crate) responses: Family<StatusLabel, Counter>,
    pub(crate) hits: Counter,
    pub(crate) misses: Counter,
    pub(crate) stale: Counter,
    pub(crate) coalesced: Counter,
    pub(crate) bytes: Counter,
    pub(crate) upstream_latency: Histogram,
    pub(crate) upstream_errors: Counter,
    pub(crate) draining: Gauge,
}

impl CacheMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            responses: Family::default(),
            hits: Counter::default(),
            misses: Counter::default(),
            stale: Counter::default(),
            coalesced: Counter::default(),
            bytes: Counter::default(),
            upstream_latency: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            upstream_errors: Counter::default(),
            draining: Gauge::default(),
        };
        registry.register(
            "outpost_requests",
            "Requests by cache outcome (hit, miss, stale, revalidated, pass, error)",
            metrics.requests.clone(),
        );
        registry.register(
            "outpost_responses",
            "Responses by status class",
            metrics.responses.clone(),
        );
        registry.register(
            "outpost_cache_hits",
            "Requests served fresh from cache",
            metrics.hits.clone(),
        );
        registry.register(
            "outpost_cache_misses",
            "Requests forwarded upstream",
            metrics.misses.clone(),
        );
        registry.register(
            "outpost_cache_stale_serves",
            "Stale responses served (stale-while-revalidate, stale-if-error)",
            metrics.stale.clone(),
        );
        registry.register(
            "outpost_coalesced_waits",
            "Requests that waited on another request's upstream fetch",
            metrics.coalesced.clone(),
        );
        registry.register(
            "outpost_response_body_bytes",
            "Body bytes sent to clients",
            metrics.bytes.clone(),
        );
        registry.register(
            "outpost_upstream_latency_seconds",
            "Time to the upstream response head",
            metrics.upstream_latency.clone(),
        );
        registry.register(
            "outpost_upstream_errors",
            "Upstream fetches that failed (refused, timed out, garbage)",
            metrics.upstream_errors.clone(),
        );
        registry.register(
            "outpost_draining",
            "1 while the node drains (its health check answers 503, so DNS and anycast move its clients)",
            metrics.draining.clone(),
        );
        metrics
    }

    pub(crate) fn response(&self, status: http::StatusCode) {
        let class = match status.as_u16() {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.responses.get_or_create(&StatusLabel { class }).inc();
    }
}

/// Metrics of a node's disk tier, registered only when it has one.
#[derive(Clone, Default)]
pub struct DiskMetrics {
    pub(crate) bytes: Gauge,
    pub(crate) records: Gauge,
    pub(crate) writes: Counter,
    pub(crate) skipped: Counter,
    pub(crate) damaged: Counter,
}

impl DiskMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "outpost_disk_bytes",
            "Bytes of records in the disk tier",
            metrics.bytes.clone(),
        );
        registry.register(
            "outpost_disk_records",
            "Keys with a record in the disk tier",
            metrics.records.clone(),
        );
        registry.register(
            "outpost_disk_writes",
            "Evictions from memory written to the disk tier",
            metrics.writes.clone(),
        );
        registry.register(
            "outpost_disk_skipped",
            "Evictions not written: the disk writer was more than 64 MiB behind",
            metrics.skipped.clone(),
        );
        registry.register(
            "outpost_disk_damaged",
            "Damaged disk records found and dropped (never served)",
            metrics.damaged.clone(),
        );
        metrics
    }
}
