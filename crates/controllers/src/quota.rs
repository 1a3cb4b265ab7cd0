//! The ResourceQuota controller: keeps each quota's `status.hard` and `status.used` current,
//! summing what the namespace's objects count for (the same accounting quota admission uses).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch};
use kube::runtime::controller::Action;
use serde_json::json;
use tug_api::{catalog, quota};

use crate::common::{Error, Shared, patch_params};

/// The (group, plural) whose objects count for a quota resource name.
fn counted_in(resource: &str) -> Option<(String, String)> {
    if let Some(rest) = resource.strip_prefix("count/") {
        let (plural, group) = rest.split_once('.').unwrap_or((rest, ""));
        return Some((group.to_string(), plural.to_string()));
    }
    let plural = match resource {
        "pods" | "cpu" | "memory" => "pods",
        r if (r.starts_with("requests.") || r.starts_with("limits."))
            && r != "requests.storage" =>
        {
            "pods"
        }
        "services" | "services.nodeports" | "services.loadbalancers" => "services",
        "persistentvolumeclaims" | "requests.storage" => "persistentvolumeclaims",
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => resource,
        _ => return None,
    };
    Some((String::new(), plural.to_string()))
}

/// A quota counts the pods of its namespace.
fn same_namespace(q: &ResourceQuota, pod: &Pod) -> bool {
    q.metadata.namespace == pod.metadata.namespace
}

/// Runs the controller until the task is dropped.
pub async fn run(client: kube::Client, shared: Shared) {
    crate::common::run_following_pods::<ResourceQuota, _, _>(
        client,
        shared,
        same_namespace,
        reconcile,
    )
    .await;
}

async fn reconcile(
    client: kube::Client,
    q: Arc<ResourceQuota>,
    _ctx: Arc<Shared>,
) -> Result<Action, Error> {
    let ns = q.metadata.namespace.clone().unwrap_or_default();
    let name = q.metadata.name.clone().unwrap_or_default();
    let hard = q
        .spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default();
    let kinds: BTreeSet<(String, String)> = hard.keys().filter_map(|k| counted_in(k)).collect();
    let mut used: BTreeMap<String, f64> = BTreeMap::new();
    for (group, plural) in kinds {
        let Some(r) = catalog::lookup_any_version(&group, &plural) else {
            continue;
        };
        let gvk = GroupVersionKind::gvk(r.group, r.version, r.kind);
        let api: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            &ns,
            &ApiResource::from_gvk_with_plural(&gvk, r.plural),
        );
        for item in api.list(&ListParams::default()).await?.items {
            let value = serde_json::to_value(&item).unwrap_or_default();
            for (k, v) in quota::usage(r.group, r.plural, &value) {
                *used.entry(k).or_default() += v;
            }
        }
    }
    let used: BTreeMap<String, String> = hard
        .keys()
        .map(|k| {
            (
                k.clone(),
                quota::format(used.get(k).copied().unwrap_or(0.0)),
            )
        })
        .collect();
    let current = q.status.clone().unwrap_or_default();
    let current_used: BTreeMap<String, String> = current
        .used
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    if current_used != used || current.hard.as_ref() != Some(&hard) {
        let status = json!({"status": {"hard": hard, "used": used}});
        Api::<ResourceQuota>::namespaced(client, &ns)
            .patch_status(&name, &patch_params(), &Patch::Merge(&status))
            .await?;
    }
    // Objects other than pods are not watched here: look again every so often.
    Ok(Action::requeue(Duration::from_secs(5)))
}
