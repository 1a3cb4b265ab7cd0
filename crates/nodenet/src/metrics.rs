//! The node agent's Prometheus metrics on the kubelet API's `/metrics`: the Service proxy's
//! programming latency and syncs, named as kube-proxy's.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

struct Metrics {
    registry: Registry,
    programming: Histogram,
    syncs: Counter,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let programming = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
    let syncs = Counter::default();
    let mut registry = Registry::default();
    registry.register(
        "kubeproxy_network_programming_duration_seconds",
        "Time from a Service or EndpointSlice change reaching the node to its rules being in the kernel",
        programming.clone(),
    );
    registry.register(
        "kubeproxy_sync_proxy_rules",
        "Batches of Service rule changes written to the kernel",
        syncs.clone(),
    );
    Metrics {
        registry,
        programming,
        syncs,
    }
});

/// Records one programming batch and how long each change in it waited.
pub fn observe_sync(waits: impl Iterator<Item = Duration>) {
    METRICS.syncs.inc();
    for w in waits {
        METRICS.programming.observe(w.as_secs_f64());
    }
}

/// The metrics in the text exposition format.
pub fn render() -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &METRICS.registry).is_err() {
        out.clear();
    }
    out
}
