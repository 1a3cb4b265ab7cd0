//! Admission metrics, named as kube-apiserver names them: webhook call latency and
//! rejections, and admission policy checks. One set per process (rendered on `/metrics` by the
//! API server).

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    name: String,
    operation: String,
    rejected: String,
    r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectionLabels {
    error_type: String,
    name: String,
    operation: String,
    rejection_code: String,
    r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    enforcement_action: String,
    error_type: String,
    policy: String,
    policy_binding: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MutatingPolicyLabels {
    error_type: String,
    policy: String,
    policy_binding: String,
}

struct Metrics {
    registry: Registry,
    webhook_duration: Family<WebhookLabels, Histogram>,
    webhook_rejections: Family<RejectionLabels, Counter>,
    validating_checks: Family<PolicyLabels, Counter>,
    validating_duration: Family<PolicyLabels, Histogram>,
    mutating_checks: Family<MutatingPolicyLabels, Counter>,
}

fn histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let mut registry = Registry::default();
        let webhook_duration = Family::new_with_constructor(histogram as fn() -> Histogram);
        let webhook_rejections = Family::default();
        let validating_checks = Family::default();
        let validating_duration = Family::new_with_constructor(histogram as fn() -> Histogram);
        let mutating_checks = Family::default();
        registry.register(
            "apiserver_admission_webhook_admission_duration_seconds",
            "Admission webhook latency by webhook, operation, type and whether it rejected",
            webhook_duration.clone(),
        );
        registry.register(
            "apiserver_admission_webhook_rejection",
            "Admission webhook rejections by webhook, operation, type, error type and code",
            webhook_rejections.clone(),
        );
        registry.register(
            "apiserver_validating_admission_policy_check",
            "ValidatingAdmissionPolicy checks by policy, binding, action and error type",
            validating_checks.clone(),
        );
        registry.register(
            "apiserver_validating_admission_policy_check_duration_seconds",
            "ValidatingAdmissionPolicy check latency",
            validating_duration.clone(),
        );
        registry.register(
            "apiserver_mutating_admission_policy_check",
            "MutatingAdmissionPolicy checks by policy, binding and error type",
            mutating_checks.clone(),
        );
        Metrics {
            registry,
            webhook_duration,
            webhook_rejections,
            validating_checks,
            validating_duration,
            mutating_checks,
        }
    })
}

fn kind(mutating: bool) -> String {
    if mutating { "admit" } else { "validating" }.to_string()
}

/// One webhook call: how long it took and whether it refused the request.
pub fn webhook_called(name: &str, mutating: bool, operation: &str, rejected: bool, secs: f64) {
    metrics()
        .webhook_duration
        .get_or_create(&WebhookLabels {
            name: name.into(),
            operation: operation.into(),
            rejected: rejected.to_string(),
            r#type: kind(mutating),
        })
        .observe(secs);
}

/// A webhook's refusal: `no_error` for a denial (with its code), `calling_webhook_error`
/// for a failed call (code 0).
pub fn webhook_rejected(name: &str, mutating: bool, operation: &str, error_type: &str, code: u16) {
    metrics()
        .webhook_rejections
        .get_or_create(&RejectionLabels {
            error_type: error_type.into(),
            name: name.into(),
            operation: operation.into(),
            rejection_code: code.to_string(),
            r#type: kind(mutating),
        })
        .inc();
}

/// One validating policy binding checked: `allow`, `deny`, `warn` or `audit`, and
/// `no_error` or `invalid_error` (the policy itself failed).
pub fn validating_checked(policy: &str, binding: &str, action: &str, error_type: &str, secs: f64) {
    let labels = PolicyLabels {
        enforcement_action: action.into(),
        error_type: error_type.into(),
        policy: policy.into(),
        policy_binding: binding.into(),
    };
    let m = metrics();
    m.validating_checks.get_or_create(&labels).inc();
    m.validating_duration.get_or_create(&labels).observe(secs);
}

/// One mutating policy binding applied.
pub fn mutating_checked(policy: &str, binding: &str, error_type: &str) {
    metrics()
        .mutating_checks
        .get_or_create(&MutatingPolicyLabels {
            error_type: error_type.into(),
            policy: policy.into(),
            policy_binding: binding.into(),
        })
        .inc();
}

/// The metrics in the text format, without `# EOF`.
pub fn render() -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &metrics().registry).is_err() {
        out.clear();
    }
    out.trim_end_matches("# EOF\n").to_string()
}
