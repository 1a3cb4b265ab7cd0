//! The scheduler's Prometheus metrics, named as kube-scheduler's: scheduling attempts by
//! result, how long an attempt takes, preemption attempts, and pods waiting in the queue.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The result of a scheduling attempt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

/// Every metric of the scheduler in this process.
pub struct Metrics {
    registry: Registry,
    pub attempts: Family<ResultLabel, Counter>,
    pub attempt_seconds: Histogram,
    pub preemptions: Counter,
    pub pending: Gauge,
}

/// The process's scheduler metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let attempts = Family::<ResultLabel, Counter>::default();
    let attempt_seconds = Histogram::new(exponential_buckets(0.00001, 2.0, 20));
    let preemptions = Counter::default();
    let pending = Gauge::default();
    let mut registry = Registry::default();
    registry.register(
        "scheduler_schedule_attempts",
        "Attempts to schedule pods, by result (scheduled, unschedulable, error)",
        attempts.clone(),
    );
    registry.register(
        "scheduler_scheduling_attempt_duration_seconds",
        "Time to filter and score the nodes for one pod (binding excluded)",
        attempt_seconds.clone(),
    );
    registry.register(
        "scheduler_preemption_attempts",
        "Preemptions that evicted pods to make room",
        preemptions.clone(),
    );
    registry.register(
        "scheduler_pending_pods",
        "Pods waiting in the scheduling queue",
        pending.clone(),
    );
    Metrics {
        registry,
        attempts,
        attempt_seconds,
        preemptions,
        pending,
    }
});

/// Counts an attempt's result.
pub fn attempt(result: &str) {
    METRICS
        .attempts
        .get_or_create(&ResultLabel {
            result: result.to_string(),
        })
        .inc();
}

/// The metrics in the text exposition format (without the closing `# EOF`).
pub fn render() -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &METRICS.registry).is_err() {
        out.clear();
    }
    out.trim_end_matches("# EOF\n").to_string()
}
