//! Node lifecycle: a node whose Lease has not been renewed for the grace period becomes
//! Ready=Unknown and gets the `node.kubernetes.io/unreachable:NoExecute` taint; when the Lease
//! is renewed again both go. A node reporting Ready=False gets
//! `node.kubernetes.io/not-ready:NoExecute` until it is Ready again. Pods on a node with a NoExecute taint they don't tolerate are
//! evicted at once, and those that tolerate it for `tolerationSeconds` after that long.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch};
use serde_json::{Value, json};

use crate::common::{Shared, patch_params};

const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The pressure conditions and the NoSchedule taints they bring.
const PRESSURE: [(&str, &str); 3] = [
    ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "node.kubernetes.io/pid-pressure"),
];
/// Every taint this controller manages.
const MANAGED: [&str; 5] = [
    UNREACHABLE,
    NOT_READY,
    PRESSURE[0].1,
    PRESSURE[1].1,
    PRESSURE[2].1,
];

fn ready_status(n: &Node) -> Option<String> {
    condition_status(n, "Ready")
}

/// The status of one of the node's conditions.
fn condition_status(n: &Node, kind: &str) -> Option<String> {
    n.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| c.status.clone())
}

/// When this controller last saw each node's Lease renewed: the renewTime it saw and when it
/// saw it change. Staleness is judged by this controller's own clock, as Kubernetes' node
/// lifecycle controller does (its probeTimestamp): a controller that has just taken over gives
/// every node a whole grace period, and agents' clocks do not matter.
type Observed = HashMap<String, (Option<jiff::Timestamp>, Instant)>;

/// Whether a node's Lease, renewed at `renewed` by its kubelet's clock, has gone unrenewed
/// for longer than `grace` as this controller has seen it.
fn is_stale(
    observed: &mut Observed,
    node: &str,
    renewed: Option<jiff::Timestamp>,
    now: Instant,
    grace: Duration,
) -> bool {
    let seen = observed.entry(node.to_string()).or_insert((renewed, now));
    if seen.0 != renewed {
        *seen = (renewed, now);
    }
    now.duration_since(seen.1) > grace
}

/// Runs the controller until the task is dropped.
pub async fn run(client: kube::Client, shared: Shared, grace: Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut observed = Observed::new();
    loop {
        tick.tick().await;
        if let Err(e) = pass(&client, &shared, grace, &mut observed).await {
            tracing::debug!(error = %e, "node lifecycle pass failed");
        }
    }
}

async fn pass(
    client: &kube::Client,
    shared: &Shared,
    grace: Duration,
    observed: &mut Observed,
) -> Result<(), kube::Error> {
    let leases = Api::<Lease>::namespaced(client.clone(), "kube-node-lease")
        .list(&ListParams::default().match_any())
        .await?;
    let now = jiff::Timestamp::now();
    let stamp = tug_api::time::rfc3339(now);
    let nodes: Api<Node> = Api::all(client.clone());
    let renewals: HashMap<&str, jiff::Timestamp> = leases
        .items
        .iter()
        .filter_map(|l| {
            let renewed = l.spec.as_ref()?.renew_time.as_ref()?.0;
            Some((l.metadata.name.as_deref()?, renewed))
        })
        .collect();
    let nodes_now = shared.nodes.state();
    observed.retain(|name, _| {
        nodes_now
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some(name.as_str()))
    });
    for node in nodes_now {
        let Some(name) = node.metadata.name.clone() else {
            continue;
        };
        let renewed = renewals.get(name.as_str()).copied();
        let stale = is_stale(observed, &name, renewed, Instant::now(), grace);
        let taints: Vec<Value> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|t| serde_json::to_value(t).unwrap_or(Value::Null))
            .collect();
        let ready = ready_status(&node);
        if stale && ready.as_deref() != Some("Unknown") {
            tracing::info!(node = %name, "node stopped renewing its lease: NotReady, unreachable");
            let condition = json!({"status": {"conditions": [{
                "type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                "message": "Kubelet stopped posting node status.", "lastHeartbeatTime": stamp,
                "lastTransitionTime": stamp}]}});
            nodes
                .patch_status(&name, &patch_params(), &Patch::Strategic(&condition))
                .await?;
            mark_pods_not_ready(client, shared, &name, &stamp).await;
        } else if !stale && ready.as_deref() == Some("Unknown") {
            tracing::info!(node = %name, "node renews its lease again: Ready");
            let condition = json!({"status": {"conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status", "lastHeartbeatTime": stamp,
                "lastTransitionTime": stamp}]}});
            nodes
                .patch_status(&name, &patch_params(), &Patch::Strategic(&condition))
                .await?;
        }
        // unreachable while the Lease is stale, not-ready while the node says it is not
        // Ready, as NoExecute taints (pods leave after their tolerationSeconds); and, as
        // Kubernetes' TaintNodesByCondition does, a NoSchedule taint per pressure condition.
        let mut wanted: Vec<(&str, &str)> = Vec::new();
        if stale {
            wanted.push((UNREACHABLE, "NoExecute"));
        } else {
            if ready.as_deref() == Some("False") {
                wanted.push((NOT_READY, "NoExecute"));
            }
            for (condition, key) in PRESSURE {
                if condition_status(&node, condition).as_deref() == Some("True") {
                    wanted.push((key, "NoSchedule"));
                }
            }
        }
        let ours = |t: &Value| MANAGED.iter().any(|k| t["key"] == *k);
        let is = |t: &Value, (k, e): &(&str, &str)| t["key"] == *k && t["effect"] == *e;
        let have: Vec<&Value> = taints.iter().filter(|t| ours(t)).collect();
        let right =
            have.len() == wanted.len() && wanted.iter().all(|w| have.iter().any(|t| is(t, w)));
        if !right {
            let mut all: Vec<Value> = taints
                .iter()
                .filter(|t| !ours(t) || wanted.iter().any(|w| is(t, w)))
                .cloned()
                .collect();
            for w in &wanted {
                if !all.iter().any(|t| is(t, w)) {
                    all.push(json!({"key": w.0, "effect": w.1, "timeAdded": stamp}));
                }
            }
            nodes
                .patch(
                    &name,
                    &patch_params(),
                    &Patch::Merge(&json!({"spec": {"taints": all}})),
                )
                .await?;
        }
    }
    evict(client, shared, now).await
}

/// Marks the pods of a node that stopped reporting as not Ready, so that they leave their
/// Services' endpoints at once rather than when they are evicted (Kubernetes'
/// MarkPodsNotReady).
async fn mark_pods_not_ready(client: &kube::Client, shared: &Shared, node: &str, stamp: &str) {
    for pod in shared.pods.state() {
        if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node) {
            continue;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded") | Some("Failed")) {
            continue;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let patch = json!({"status": {"conditions": [{
            "type": "Ready", "status": "False", "reason": "NodeNotReady",
            "message": "The node's kubelet stopped reporting", "lastTransitionTime": stamp}]}});
        if let Err(e) = Api::<Pod>::namespaced(client.clone(), &ns)
            .patch_status(&name, &patch_params(), &Patch::Strategic(&patch))
            .await
        {
            tracing::debug!(pod = %name, error = %e, "marking a pod not ready failed");
        }
    }
}

/// Deletes the pods a NoExecute taint no longer lets stay.
async fn evict(
    client: &kube::Client,
    shared: &Shared,
    now: jiff::Timestamp,
) -> Result<(), kube::Error> {
    let nodes = shared.nodes.state();
    for pod in shared.pods.state() {
        let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(node) = nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(node_name.as_str()))
        else {
            continue;
        };
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default();
        let taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let must_go = taints
            .iter()
            .filter(|t| t.effect == "NoExecute")
            .any(|taint| {
                match tolerations
                    .iter()
                    .find(|t| tug_api::taints::tolerates(t, taint))
                {
                    None => true,
                    Some(t) => match t.toleration_seconds {
                        None => false,
                        Some(secs) => {
                            let added = taint
                                .time_added
                                .as_ref()
                                .map(|t| t.0.as_second())
                                .unwrap_or(now.as_second());
                            now.as_second() >= added + secs
                        }
                    },
                }
            });
        if must_go {
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            tracing::info!(pod = %name, node = %node_name, "evicting: the node is tainted NoExecute");
            let _ = Api::<Pod>::namespaced(client.clone(), &ns)
                .delete(&name, &DeleteParams::default())
                .await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staleness_is_judged_by_when_renewals_were_seen_not_by_their_timestamps() {
        let grace = Duration::from_secs(40);
        let start = Instant::now();
        let mut observed = Observed::new();
        // Renewed an hour ago by the kubelet's clock (or this controller just took over):
        // a whole grace period first.
        let old = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
        assert!(!is_stale(&mut observed, "a", Some(old), start, grace));
        assert!(!is_stale(
            &mut observed,
            "a",
            Some(old),
            start + grace,
            grace
        ));
        assert!(is_stale(
            &mut observed,
            "a",
            Some(old),
            start + grace + Duration::from_secs(1),
            grace
        ));
        // A renewal seen resets the clock, whatever time it carries.
        let renewed = old + jiff::SignedDuration::from_secs(10);
        let later = start + grace + Duration::from_secs(2);
        assert!(!is_stale(&mut observed, "a", Some(renewed), later, grace));
        assert!(!is_stale(
            &mut observed,
            "a",
            Some(renewed),
            later + Duration::from_secs(39),
            grace
        ));
        // A node without a Lease goes stale a grace period after it was first seen.
        assert!(!is_stale(&mut observed, "b", None, later, grace));
        assert!(is_stale(
            &mut observed,
            "b",
            None,
            later + Duration::from_secs(41),
            grace
        ));
    }
}
