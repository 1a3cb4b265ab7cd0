//! The filters a node must pass to run a pod, each answering with the reason it failed in the
//! words Kubernetes uses in FailedScheduling events.

use k8s_openapi::api::core::v1::{Node, Pod, Taint};

use crate::fit::{self, Resources};

/// Why a node cannot run a pod, as Kubernetes phrases it (counted per node).
pub fn reasons(pod: &Pod, node: &Node, want: &Resources, used: &Resources) -> Vec<String> {
    let mut out = Vec::new();
    if node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        out.push("node(s) were unschedulable".to_string());
        return out;
    }
    if !fit::schedulable(node) {
        out.push("node(s) were not ready".to_string());
        return out;
    }
    if !selector_matches(pod, node) {
        out.push("node(s) didn't match Pod's node affinity/selector".to_string());
    }
    if let Some(t) = untolerated(pod, node) {
        let value = t.value.clone().unwrap_or_default();
        out.push(format!(
            "node(s) had untolerated taint {{{}: {value}}}",
            t.key
        ));
    }
    let alloc = fit::node_allocatable(node);
    if used.cpu + want.cpu > alloc.cpu + 1e-9 {
        out.push("Insufficient cpu".to_string());
    }
    if used.memory + want.memory > alloc.memory + 1e-9 {
        out.push("Insufficient memory".to_string());
    }
    if used.pods + want.pods > alloc.pods + 1e-9 {
        out.push("Too many pods".to_string());
    }
    out
}

/// nodeSelector: every label it names, with that value.
fn selector_matches(pod: &Pod, node: &Node) -> bool {
    let Some(sel) = pod.spec.as_ref().and_then(|s| s.node_selector.as_ref()) else {
        return true;
    };
    let labels = node.metadata.labels.clone().unwrap_or_default();
    sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The first NoSchedule or NoExecute taint of the node the pod does not tolerate.
pub fn untolerated<'a>(pod: &Pod, node: &'a Node) -> Option<&'a Taint> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    tug_api::taints::untolerated(&tolerations, node)
}

/// "0/5 nodes are available: 3 Insufficient cpu, 2 node(s) had untolerated taint {a: b}."
pub fn message(nodes: usize, counts: &std::collections::BTreeMap<String, usize>) -> String {
    let parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    format!(
        "0/{nodes} nodes are available: {}. preemption: 0/{nodes} nodes are available: {nodes} Preemption is not helpful for scheduling.",
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).expect("node")
    }

    #[test]
    fn taints_selectors_and_messages() {
        let n = node(json!({"metadata": {"name": "n", "labels": {"disk": "ssd"}},
            "spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]},
            "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "10"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}));
        let pod: Pod = serde_json::from_value(
            json!({"spec": {"containers": [{"name": "c"}], "nodeSelector": {"disk": "hdd"}}}),
        )
        .expect("pod");
        let want = Resources {
            cpu: 2.0,
            memory: 0.0,
            pods: 1.0,
        };
        let r = reasons(&pod, &n, &want, &Resources::default());
        assert_eq!(
            r,
            [
                "node(s) didn't match Pod's node affinity/selector",
                "node(s) had untolerated taint {dedicated: gpu}",
                "Insufficient cpu",
            ]
        );
        let tolerant: Pod = serde_json::from_value(json!({"spec": {"containers": [{"name": "c"}],
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}})).expect("pod");
        assert!(untolerated(&tolerant, &n).is_none());
        let mut counts = std::collections::BTreeMap::new();
        counts.insert("Insufficient cpu".to_string(), 3);
        assert!(message(3, &counts).starts_with("0/3 nodes are available: 3 Insufficient cpu."));
    }
}
