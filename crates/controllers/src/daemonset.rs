//! The DaemonSet controller: one pod per eligible node — every node whose labels match the
//! template's nodeSelector and whose taints the pods tolerate — following nodes as they come
//! and go. Pods are placed directly on their node. A new template rolls out node by node,
//! keeping at most maxUnavailable nodes without a ready pod (RollingUpdate), or waits for
//! pods to be deleted (OnDelete); each template is kept as a ControllerRevision.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod, Toleration};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch};
use kube::runtime::controller::Action;
use serde_json::json;

use crate::common::{
    Error, REVISION_LABEL, Shared, owner_ref, patch_params, pod_active, pod_ready, post_params,
    record_revision, revision_of, template_hash,
};

/// Tolerations every DaemonSet pod gets, as Kubernetes adds them.
fn default_tolerations() -> Vec<Toleration> {
    [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ]
    .iter()
    .map(|k| Toleration {
        key: Some((*k).into()),
        operator: Some("Exists".into()),
        effect: Some("NoExecute".into()),
        ..Default::default()
    })
    .chain(std::iter::once(Toleration {
        key: Some("node.kubernetes.io/unschedulable".into()),
        operator: Some("Exists".into()),
        effect: Some("NoSchedule".into()),
        ..Default::default()
    }))
    .collect()
}

/// Runs the controller. Nodes joining or changing are picked up by a short requeue.
pub async fn run(client: kube::Client, shared: Shared) {
    crate::claim::run_claiming::<DaemonSet, _, _>(client, shared, reconcile).await;
}

fn eligible(ds: &DaemonSet, node: &Node, tolerations: &[Toleration]) -> bool {
    let spec = ds.spec.template.spec.as_ref();
    let selector = spec
        .and_then(|s| s.node_selector.clone())
        .unwrap_or_default();
    let labels = node.metadata.labels.clone().unwrap_or_default();
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        && tug_api::taints::untolerated(tolerations, node).is_none()
}

async fn reconcile(
    client: kube::Client,
    ds: Arc<DaemonSet>,
    ctx: Arc<Shared>,
) -> Result<Action, Error> {
    let ns = ds.metadata.namespace.clone().unwrap_or_default();
    let name = ds.metadata.name.clone().unwrap_or_default();
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let mut tolerations = ds
        .spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    tolerations.extend(default_tolerations());
    let template = serde_json::to_value(&ds.spec.template).unwrap_or_default();
    let hash = template_hash(&template);
    let labels = ds
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone());
    record_revision(
        &client,
        ds.as_ref(),
        &format!("{name}-{hash}"),
        labels,
        &template,
    )
    .await?;
    let nodes = ctx.nodes.state();
    let owned = crate::claim::claim_pods(&client, ds.as_ref(), ctx.pods.state()).await;
    let mut by_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
    for p in &owned {
        if pod_active(p)
            && let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone())
        {
            by_node.entry(node).or_default().push(p.clone());
        }
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let existing: std::collections::HashSet<String> = owned
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    // Until our last creations show up in the watch, count but don't act.
    let act = ctx.expectations.satisfied(&uid, &existing);
    let mut created = Vec::new();
    let (mut desired, mut scheduled, mut ready, mut misscheduled, mut updated) = (0, 0, 0, 0, 0);
    // Pods of an older template, ready ones last: candidates for the rolling update.
    let mut outdated: Vec<Arc<Pod>> = Vec::new();
    for node in &nodes {
        let Some(node_name) = node.metadata.name.clone() else {
            continue;
        };
        let on_node = by_node.remove(&node_name).unwrap_or_default();
        if eligible(&ds, node, &tolerations) {
            desired += 1;
            if on_node.is_empty() && act {
                let mut meta = ds.spec.template.metadata.clone().unwrap_or_default();
                meta.generate_name = Some(format!("{name}-"));
                meta.namespace = Some(ns.clone());
                meta.owner_references = owner_ref(ds.as_ref()).map(|r| vec![r]);
                meta.labels
                    .get_or_insert_with(Default::default)
                    .insert(REVISION_LABEL.into(), hash.clone());
                let mut spec = ds.spec.template.spec.clone().unwrap_or_default();
                spec.node_name = Some(node_name.clone());
                spec.tolerations = Some(tolerations.clone());
                let pod = Pod {
                    metadata: meta,
                    spec: Some(spec),
                    status: None,
                };
                let made = pods.create(&post_params(), &pod).await?.metadata.name;
                if let Some(pod_name) = &made {
                    ctx.recorder("daemonset-controller")
                        .event(
                            &tug_events::Involved::of(ds.as_ref()),
                            "Normal",
                            "SuccessfulCreate",
                            &format!("Created pod: {pod_name}"),
                        )
                        .await;
                }
                created.extend(made);
            } else if !on_node.is_empty() {
                scheduled += 1;
                ready += on_node.iter().take(1).filter(|p| pod_ready(p)).count() as i32;
                match on_node.first() {
                    Some(p) if revision_of(p) == hash => updated += 1,
                    Some(p) => outdated.push(p.clone()),
                    None => {}
                }
                // One per node: extras go.
                for extra in on_node.iter().skip(1) {
                    if let Some(n) = &extra.metadata.name {
                        pods.delete(n, &DeleteParams::default()).await?;
                    }
                }
            }
        } else {
            for p in on_node {
                misscheduled += 1;
                if let Some(n) = &p.metadata.name {
                    pods.delete(n, &DeleteParams::default()).await?;
                }
            }
        }
    }
    ctx.expectations.expect(&uid, created, Vec::new());
    // RollingUpdate: replace outdated pods, keeping at most maxUnavailable (1 by default)
    // nodes without a ready pod; each comes back on the new template in a later pass.
    let strategy = ds.spec.update_strategy.as_ref();
    let rolling = strategy
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate");
    if rolling && act && !outdated.is_empty() {
        let max_unavailable = strategy
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.max_unavailable.as_ref())
            .map_or(1, |v| match v {
                IntOrString::Int(n) => *n,
                IntOrString::String(p) => {
                    let pct: f64 = p.trim_end_matches('%').parse().unwrap_or(0.0);
                    (pct * f64::from(desired) / 100.0).floor() as i32
                }
            })
            .max(1);
        let unavailable = desired - ready;
        outdated.sort_by_key(|p| pod_ready(p));
        let room = (max_unavailable - unavailable).max(0) as usize;
        // Not-ready outdated pods cost nothing more to replace.
        let free = outdated.iter().take_while(|p| !pod_ready(p)).count();
        for p in outdated.iter().take(free + room) {
            if let Some(n) = &p.metadata.name {
                pods.delete(n, &DeleteParams::default()).await?;
            }
        }
    }
    // Pods on nodes that no longer exist.
    for p in by_node.into_values().flatten() {
        if let Some(n) = &p.metadata.name {
            pods.delete(n, &DeleteParams::default()).await?;
        }
    }
    let status = ds.status.clone().unwrap_or_default();
    if status.desired_number_scheduled != desired
        || status.current_number_scheduled != scheduled
        || status.updated_number_scheduled.unwrap_or(0) != updated
        || status.number_ready != ready
        || status.observed_generation != ds.metadata.generation
    {
        let patch = json!({"status": {
            "desiredNumberScheduled": desired, "currentNumberScheduled": scheduled,
            "numberReady": ready, "updatedNumberScheduled": updated, "numberAvailable": ready,
            "numberUnavailable": (desired - ready).max(0),
            "numberMisscheduled": misscheduled, "observedGeneration": ds.metadata.generation,
        }});
        Api::<DaemonSet>::namespaced(client, &ns)
            .patch_status(&name, &patch_params(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(Action::requeue(Duration::from_secs(2)))
}
