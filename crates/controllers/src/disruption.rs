//! The disruption controller: keeps each PodDisruptionBudget's status current from the pods it
//! selects (expectedPods, currentHealthy, desiredHealthy, disruptionsAllowed and the
//! DisruptionAllowed condition), which the eviction subresource spends from.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, Patch};
use kube::runtime::controller::Action;
use serde_json::json;

use crate::common::{Error, Shared, patch_params, pod_active, pod_ready};

fn selects(pdb: &PodDisruptionBudget, pod: &Pod) -> bool {
    if pdb.metadata.namespace != pod.metadata.namespace {
        return false;
    }
    let Some(sel) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    tug_api::selector::LabelSelector::from_api(sel)
        .matches_map(&pod.metadata.labels.clone().unwrap_or_default())
}

/// An int-or-percent of `total` (percentages rounded up, as Kubernetes does for budgets).
fn scaled(v: &IntOrString, total: i32) -> i32 {
    match v {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => {
            let pct: f64 = s.trim_end_matches('%').parse().unwrap_or(0.0);
            (pct * f64::from(total) / 100.0).ceil() as i32
        }
    }
}

/// Runs the controller until the task is dropped.
pub async fn run(client: kube::Client, shared: Shared) {
    crate::common::run_following_pods::<PodDisruptionBudget, _, _>(
        client, shared, selects, reconcile,
    )
    .await;
}

async fn reconcile(
    client: kube::Client,
    pdb: Arc<PodDisruptionBudget>,
    ctx: Arc<Shared>,
) -> Result<Action, Error> {
    let ns = pdb.metadata.namespace.clone().unwrap_or_default();
    let name = pdb.metadata.name.clone().unwrap_or_default();
    let pods: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| selects(&pdb, p) && pod_active(p))
        .collect();
    // Expected: the replicas of the ReplicaSets that own the pods, or the pods themselves.
    let owners: HashSet<String> = pods
        .iter()
        .flat_map(|p| p.metadata.owner_references.iter().flatten())
        .filter(|o| o.controller == Some(true) && o.kind == "ReplicaSet")
        .map(|o| o.uid.clone())
        .collect();
    let from_owners: i32 = ctx
        .replicasets
        .state()
        .iter()
        .filter(|rs| rs.metadata.uid.as_ref().is_some_and(|u| owners.contains(u)))
        .map(|rs| rs.spec.replicas.unwrap_or(1))
        .sum();
    let expected = from_owners.max(pods.len() as i32);
    let spec = pdb.spec.clone().unwrap_or_default();
    let desired = match (&spec.min_available, &spec.max_unavailable) {
        (Some(min), _) => scaled(min, expected),
        (None, Some(max)) => (expected - scaled(max, expected)).max(0),
        (None, None) => 1,
    };
    // Evicted pods still counted until they are gone (or two minutes passed).
    let names: HashSet<String> = pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let now = jiff::Timestamp::now();
    let disrupted: BTreeMap<String, String> = pdb
        .status
        .as_ref()
        .and_then(|s| s.disrupted_pods.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|(n, t)| names.contains(n) && now.as_second() - t.0.as_second() < 120)
        .map(|(n, t)| (n, tug_api::time::rfc3339(t.0)))
        .collect();
    let healthy = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && pod_ready(p))
        .filter(|p| {
            p.metadata
                .name
                .as_ref()
                .is_none_or(|n| !disrupted.contains_key(n))
        })
        .count() as i32;
    let allowed = (healthy - desired).max(0);
    let stamp = tug_api::time::rfc3339(now);
    let status = json!({"status": {
        "observedGeneration": pdb.metadata.generation,
        "expectedPods": expected, "currentHealthy": healthy, "desiredHealthy": desired,
        "disruptionsAllowed": allowed, "disruptedPods": disrupted,
        "conditions": [{"type": "DisruptionAllowed",
            "status": if allowed > 0 { "True" } else { "False" },
            "reason": if allowed > 0 { "SufficientPods" } else { "InsufficientPods" },
            "message": "", "observedGeneration": pdb.metadata.generation,
            "lastTransitionTime": stamp}],
    }});
    let current = pdb.status.clone().unwrap_or_default();
    let changed = current.observed_generation != pdb.metadata.generation
        || current.expected_pods != Some(expected)
        || current.current_healthy != Some(healthy)
        || current.desired_healthy != Some(desired)
        || current.disruptions_allowed != Some(allowed)
        || current.disrupted_pods.unwrap_or_default().len() != disrupted.len();
    if changed {
        Api::<PodDisruptionBudget>::namespaced(client, &ns)
            .patch_status(&name, &patch_params(), &Patch::Merge(&status))
            .await?;
    }
    Ok(Action::requeue(Duration::from_secs(30)))
}
