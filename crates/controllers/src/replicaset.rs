//! The ReplicaSet and ReplicationController controllers, one reconcile for both: keep
//! `spec.replicas` pods from the template running, owned by the set, and report how many are
//! ready.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use kube::api::{Api, DeleteParams, Patch};
use kube::runtime::controller::Action;
use serde_json::json;

use crate::common::{Error, Shared, controlled_by, owner_ref, pod_active, pod_ready};

/// What differs between a ReplicaSet and a ReplicationController: where the count, the
/// template and the reported status live.
pub trait Replicated: crate::claim::PodOwner {
    /// `spec.replicas` (1 when unset).
    fn replicas(&self) -> i32;
    /// `spec.template`.
    fn template(&self) -> PodTemplateSpec;
    /// The status as stored: replicas, readyReplicas, availableReplicas, observedGeneration.
    fn reported(&self) -> (i32, i32, i32, Option<i64>);
    /// The controller named in its events.
    fn component(&self) -> &'static str;
}

impl Replicated for ReplicaSet {
    fn component(&self) -> &'static str {
        "replicaset-controller"
    }
    fn replicas(&self) -> i32 {
        self.spec.replicas.unwrap_or(1)
    }
    fn template(&self) -> PodTemplateSpec {
        self.spec.template.clone().unwrap_or_default()
    }
    fn reported(&self) -> (i32, i32, i32, Option<i64>) {
        let s = self.status.clone().unwrap_or_default();
        (
            s.replicas,
            s.ready_replicas.unwrap_or(0),
            s.available_replicas.unwrap_or(0),
            s.observed_generation,
        )
    }
}

impl Replicated for ReplicationController {
    fn component(&self) -> &'static str {
        "replication-controller"
    }
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn template(&self) -> PodTemplateSpec {
        self.spec
            .as_ref()
            .and_then(|s| s.template.clone())
            .unwrap_or_default()
    }
    fn reported(&self) -> (i32, i32, i32, Option<i64>) {
        let s = self.status.clone().unwrap_or_default();
        (
            s.replicas,
            s.ready_replicas.unwrap_or(0),
            s.available_replicas.unwrap_or(0),
            s.observed_generation,
        )
    }
}

/// Runs the ReplicaSet controller.
pub async fn run(client: kube::Client, shared: Shared) {
    crate::claim::run_claiming::<ReplicaSet, _, _>(client, shared, reconcile).await;
}

/// Runs the ReplicationController controller.
pub async fn run_replication_controllers(client: kube::Client, shared: Shared) {
    crate::claim::run_claiming::<ReplicationController, _, _>(client, shared, reconcile).await;
}

async fn reconcile<K: Replicated>(
    client: kube::Client,
    rs: Arc<K>,
    ctx: Arc<Shared>,
) -> Result<Action, Error> {
    let ns = rs.meta().namespace.clone().unwrap_or_default();
    let name = rs.meta().name.clone().unwrap_or_default();
    let uid = rs.meta().uid.clone().unwrap_or_default();
    if rs.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // Active pods are claimed (adopted or released); finished ones it controls still count
    // for its expectations.
    let candidates: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|p| pod_active(p) || controlled_by(p.metadata.owner_references.as_ref(), &uid))
        .collect();
    let owned = crate::claim::claim_pods(&client, rs.as_ref(), candidates).await;
    let names: HashSet<String> = owned
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let active: Vec<&Arc<Pod>> = owned.iter().filter(|p| pod_active(p)).collect();
    let want = rs.replicas().max(0) as usize;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let (pp, dp) = (crate::common::post_params(), DeleteParams::default());

    if ctx.expectations.satisfied(&uid, &names) {
        if active.len() < want {
            let template = rs.template();
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
            let recorder = ctx.recorder(rs.component());
            let about = tug_events::Involved::of(rs.as_ref());
            for pod in &created {
                recorder
                    .event(
                        &about,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("Created pod: {pod}"),
                    )
                    .await;
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
            let recorder = ctx.recorder(rs.component());
            let about = tug_events::Involved::of(rs.as_ref());
            for pod in &doomed {
                recorder
                    .event(
                        &about,
                        "Normal",
                        "SuccessfulDelete",
                        &format!("Deleted pod: {pod}"),
                    )
                    .await;
            }
            ctx.expectations.expect(&uid, Vec::new(), doomed);
        }
    }

    let ready = active.iter().filter(|p| pod_ready(p)).count() as i32;
    let status = json!({"status": {
        "replicas": active.len() as i32,
        "fullyLabeledReplicas": active.len() as i32,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "observedGeneration": rs.meta().generation,
    }});
    let changed = rs.reported() != (active.len() as i32, ready, ready, rs.meta().generation);
    if changed {
        Api::<K>::namespaced(client, &ns)
            .patch_status(
                &name,
                &crate::common::patch_params(),
                &Patch::Merge(&status),
            )
            .await?;
    }
    Ok(Action::requeue(Duration::from_secs(30)))
}
