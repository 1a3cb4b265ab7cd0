//! Graceful pod deletion, as Kubernetes' pod strategy decides it: a running pod on a node is
//! marked (`deletionTimestamp` in the future, `deletionGracePeriodSeconds`) and stays until its
//! kubelet has stopped it and deletes it for good with a grace period of 0.

use serde_json::Value;

/// `terminationGracePeriodSeconds` when a pod does not say.
const DEFAULT_GRACE_SECONDS: i64 = 30;

/// The grace period a delete gives `pod`: the one asked for, else the pod's own. Pods that
/// never reached a node, and pods already finished, go at once; a negative period is 1 s.
pub(super) fn pod_grace(pod: &Value, requested: Option<i64>) -> i64 {
    let scheduled = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    if !scheduled || finished {
        return 0;
    }
    let grace = requested.unwrap_or_else(|| {
        pod.pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(DEFAULT_GRACE_SECONDS)
    });
    if grace < 0 { 1 } else { grace }
}

/// The grace period of a deletion under way (0 when none is, or it was forced).
pub(super) fn grace_of(obj: &Value) -> i64 {
    if obj.pointer("/metadata/deletionTimestamp").is_none() {
        return 0;
    }
    obj.pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn grace_comes_from_the_request_then_the_pod_and_is_zero_off_node_or_finished() {
        let running = json!({"spec": {"nodeName": "n", "terminationGracePeriodSeconds": 7},
            "status": {"phase": "Running"}});
        assert_eq!(pod_grace(&running, None), 7);
        assert_eq!(pod_grace(&running, Some(2)), 2);
        assert_eq!(pod_grace(&running, Some(0)), 0);
        assert_eq!(pod_grace(&running, Some(-5)), 1);
        let defaulted = json!({"spec": {"nodeName": "n"}});
        assert_eq!(pod_grace(&defaulted, None), 30);
        let unscheduled = json!({"spec": {"terminationGracePeriodSeconds": 7}});
        assert_eq!(pod_grace(&unscheduled, None), 0);
        let done = json!({"spec": {"nodeName": "n"}, "status": {"phase": "Succeeded"}});
        assert_eq!(pod_grace(&done, Some(10)), 0);
        assert_eq!(grace_of(&running), 0);
        let marked =
            json!({"metadata": {"deletionTimestamp": "t", "deletionGracePeriodSeconds": 7}});
        assert_eq!(grace_of(&marked), 7);
    }
}
