//! The ReplicaSet controller: keeps `spec.replicas` pods from the template running, owned by
//! the set, and reports how many are ready.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch};
use kube::runtime::controller::Action;
use serde_json::json;

use crate::common::{Error, Shared, controlled_by, owner_ref, pod_active, pod_ready};

/// Runs the controller.
pub async fn run(client: kube::Client, shared: Shared) {
    let children = shared.pod_changes();
    crate::common::run_owning::<ReplicaSet, Pod, _, _>(client, shared, children, reconcile).await;
}

async fn reconcile(
    client: kube::Client,
    rs: Arc<ReplicaSet>,
    ctx: Arc<Shared>,
) -> Result<Action, Error> {
    let ns = rs.metadata.namespace.clone().unwrap_or_default();
    let name = rs.metadata.name.clone().unwrap_or_default();
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    if rs.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let owned: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|p| controlled_by(p.metadata.owner_references.as_ref(), &uid))
        .collect();
    let names: HashSet<String> = owned
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let active: Vec<&Arc<Pod>> = owned.iter().filter(|p| pod_active(p)).collect();
    let want = rs.spec.replicas.unwrap_or(1).max(0) as usize;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let (pp, dp) = (crate::common::post_params(), DeleteParams::default());

    if ctx.expectations.satisfied(&uid, &names) {
        if active.len() < want {
            let template = rs.spec.template.clone().unwrap_or_default();
            let mut meta = template.metadata.clone().unwrap_or_default();
            meta.generate_name = Some(format!("{name}-"));
            meta.name = None;
            meta.namespace = Some(ns.clone());
            meta.owner_references = owner_ref(rs.as_ref()).map(|r| vec![r]);
            let pod = Pod {
                metadata: meta,
                spec: template.spec.clone(),
                status: None,
            };
            let creates = (0..want - active.len()).map(|_| pods.create(&pp, &pod));
            let mut created = Vec::new();
            for result in futures::future::join_all(creates).await {
                match result {
                    Ok(p) => created.extend(p.metadata.name),
                    Err(e) => {
                        tracing::debug!(replicaset = %name, error = %e, "creating a pod failed")
                    }
                }
            }
            ctx.expectations.expect(&uid, created, Vec::new());
        } else if active.len() > want {
            // Unscheduled first, then not ready, then the newest.
            let mut victims: Vec<&Arc<Pod>> = active.clone();
            victims.sort_by_key(|p| {
                let scheduled = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
                (
                    scheduled,
                    pod_ready(p),
                    std::cmp::Reverse(p.metadata.creation_timestamp.clone().map(|t| t.0)),
                )
            });
            let doomed: Vec<String> = victims
                .iter()
                .take(active.len() - want)
                .filter_map(|p| p.metadata.name.clone())
                .collect();
            let deletes = doomed.iter().map(|n| pods.delete(n, &dp));
            futures::future::join_all(deletes).await;
            ctx.expectations.expect(&uid, Vec::new(), doomed);
        }
    }

    let ready = active.iter().filter(|p| pod_ready(p)).count() as i32;
    let status = json!({"status": {
        "replicas": active.len() as i32,
        "fullyLabeledReplicas": active.len() as i32,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "observedGeneration": rs.metadata.generation,
    }});
    let current = rs.status.as_ref();
    let changed = current.map(|s| s.replicas) != Some(active.len() as i32)
        || current.and_then(|s| s.ready_replicas).unwrap_or(0) != ready
        || current.and_then(|s| s.available_replicas).unwrap_or(0) != ready
        || current.and_then(|s| s.observed_generation) != rs.metadata.generation;
    if changed {
        Api::<ReplicaSet>::namespaced(client, &ns)
            .patch_status(
                &name,
                &crate::common::patch_params(),
                &Patch::Merge(&status),
            )
            .await?;
    }
    Ok(Action::requeue(Duration::from_secs(30)))
}
