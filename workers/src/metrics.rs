//! Per-worker Prometheus metrics: invocations, errors by kind, duration, and the time to make
//! a fresh instance.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::error::InvokeError;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabel {
    worker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    worker: String,
    kind: &'static str,
}

type Histograms = Family<WorkerLabel, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 100 µs to ~3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

fn instantiation_histogram() -> Histogram {
    // 1 µs to ~20 ms in steps of 25%, fine enough to read a median and a p99 from.
    Histogram::new(exponential_buckets(0.000_001, 1.25, 45))
}

/// The metric families of an edge's workers.
#[derive(Clone)]
pub struct WorkersMetrics {
    invocations: Family<WorkerLabel, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Histograms,
    instantiation: Histograms,
}

impl Default for WorkersMetrics {
    fn default() -> Self {
        Self {
            invocations: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            instantiation: Family::new_with_constructor(instantiation_histogram),
        }
    }
}

impl WorkersMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "outpost_worker_invocations",
            "Requests handled by each worker",
            self.invocations.clone(),
        );
        registry.register(
            "outpost_worker_errors",
            "Failed invocations by worker and kind (overloaded, cpu_time, memory, trap, no_response)",
            self.errors.clone(),
        );
        registry.register(
            "outpost_worker_duration_seconds",
            "Time from the request to the response head",
            self.duration.clone(),
        );
        registry.register(
            "outpost_worker_instantiation_seconds",
            "Time to make a fresh instance from the pre-instantiated component",
            self.instantiation.clone(),
        );
    }

    /// One worker's handles, looked up once so an invocation costs no label lookup.
    pub(crate) fn for_worker(&self, name: &str) -> WorkerMetrics {
        let label = WorkerLabel {
            worker: name.to_owned(),
        };
        for kind in InvokeError::KINDS {
            let _ = self.errors.get_or_create(&ErrorLabels {
                worker: name.to_owned(),
                kind,
            });
        }
        WorkerMetrics {
            invocations: self.invocations.get_or_create(&label).clone(),
            duration: self.duration.get_or_create(&label).clone(),
            instantiation: self.instantiation.get_or_create(&label).clone(),
            name: label.worker,
            errors: self.errors.clone(),
        }
    }
}

/// The metrics of one worker.
#[derive(Clone)]
pub(crate) struct WorkerMetrics {
    name: String,
    invocations: Counter,
    duration: Histogram,
    instantiation: Histogram,
    errors: Family<ErrorLabels, Counter>,
}

impl WorkerMetrics {
    pub(crate) fn instantiated(&self, took: Duration) {
        self.instantiation.observe(took.as_secs_f64());
    }

    pub(crate) fn finished(&self, took: Duration, error: Option<&InvokeError>) {
        self.invocations.inc();
        self.duration.observe(took.as_secs_f64());
        if let Some(error) = error {
            self.failed(error);
        }
    }

    /// A failed invocation, before or after its response head.
    pub(crate) fn failed(&self, error: &InvokeError) {
        self.errors
            .get_or_create(&ErrorLabels {
                worker: self.name.clone(),
                kind: error.kind(),
            })
            .inc();
    }
}
