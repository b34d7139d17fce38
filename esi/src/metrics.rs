//! Prometheus metrics of an edge's ESI processing.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabel {
    pub outcome: &'static str,
}

/// Counters of one edge's ESI front.
#[derive(Clone, Default)]
pub struct EsiMetrics {
    /// Pages by outcome: assembled, not_modified, failed (before the first byte), aborted.
    pub(crate) pages: Family<OutcomeLabel, Counter>,
    /// Includes by outcome: fetched, alt (the fallback answered), continued (dropped by
    /// onerror), failed.
    pub(crate) includes: Family<OutcomeLabel, Counter>,
}

impl EsiMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "outpost_esi_pages",
            "ESI pages by outcome (assembled, not_modified, failed, aborted)",
            metrics.pages.clone(),
        );
        registry.register(
            "outpost_esi_includes",
            "ESI includes by outcome (fetched, alt, continued, failed)",
            metrics.includes.clone(),
        );
        metrics
    }

    pub(crate) fn page(&self, outcome: &'static str) {
        self.pages.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    pub(crate) fn include(&self, outcome: &'static str) {
        self.includes.get_or_create(&OutcomeLabel { outcome }).inc();
    }
}
