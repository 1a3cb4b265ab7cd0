//! ControllerRef claiming, as kube-controller-manager's ControllerRefManager does it: an owner
//! of pods (a ReplicaSet, ReplicationController, StatefulSet, DaemonSet or Job) adopts orphan
//! pods it selects, by adding itself as their controller, and releases pods it controls that
//! it no longer selects, by removing itself; it never touches pods another controller owns.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, controller::Action, watcher};
use serde_json::json;

use crate::common::{Error, Object, Shared, owner_ref};

/// An owner of pods, and which pods it may claim.
pub trait PodOwner: Object + kube::Resource<Scope = NamespaceResourceScope> {
    /// Whether `pod` (in the owner's namespace) is one it would own: its selector matches,
    /// and for a StatefulSet the pod is named after it.
    fn claims(&self, pod: &Pod) -> bool;
}

fn selects(selector: Option<&LabelSelector>, pod: &Pod) -> bool {
    // A missing or empty selector selects nothing here (the API refuses both).
    selector
        .filter(|s| {
            s.match_labels.as_ref().is_some_and(|m| !m.is_empty())
                || s.match_expressions.as_ref().is_some_and(|e| !e.is_empty())
        })
        .is_some_and(|s| {
            tug_api::selector::LabelSelector::from_api(s)
                .matches_map(pod.metadata.labels.as_ref().unwrap_or(&Default::default()))
        })
}

impl PodOwner for ReplicaSet {
    fn claims(&self, pod: &Pod) -> bool {
        selects(Some(&self.spec.selector), pod)
    }
}

impl PodOwner for ReplicationController {
    fn claims(&self, pod: &Pod) -> bool {
        let selector = self.spec.as_ref().and_then(|s| s.selector.clone());
        let as_api = selector.map(|m| LabelSelector {
            match_labels: Some(m),
            ..Default::default()
        });
        selects(as_api.as_ref(), pod)
    }
}

impl PodOwner for StatefulSet {
    fn claims(&self, pod: &Pod) -> bool {
        let set = self.metadata.name.as_deref().unwrap_or_default();
        let member = pod
            .metadata
            .name
            .as_deref()
            .and_then(|n| n.strip_prefix(set)?.strip_prefix('-'))
            .is_some_and(|ordinal| ordinal.parse::<u32>().is_ok());
        member && selects(Some(&self.spec.selector), pod)
    }
}

impl PodOwner for DaemonSet {
    fn claims(&self, pod: &Pod) -> bool {
        selects(Some(&self.spec.selector), pod)
    }
}

impl PodOwner for Job {
    fn claims(&self, pod: &Pod) -> bool {
        match self.spec.as_ref().and_then(|s| s.selector.as_ref()) {
            Some(selector) => selects(Some(selector), pod),
            // Stored before selectors were generated: the uid label its pods carry.
            None => {
                let uid = self.metadata.uid.as_deref();
                let labels = pod.metadata.labels.as_ref();
                uid.is_some()
                    && labels
                        .and_then(|l| l.get("batch.kubernetes.io/controller-uid"))
                        .map(String::as_str)
                        == uid
            }
        }
    }
}

/// A pod's controller, if it has one.
pub fn controller_of(pod: &Pod) -> Option<&OwnerReference> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// The pods among `pods` that `owner` controls once it has claimed them: those it already
/// controls and still selects, and orphans it selects, adopted now. Pods it controls but no
/// longer selects are released (unless it is being deleted); adoption is skipped when a fresh
/// read shows the owner gone, replaced or being deleted.
pub async fn claim_pods<K: PodOwner>(
    client: &kube::Client,
    owner: &K,
    pods: Vec<Arc<Pod>>,
) -> Vec<Arc<Pod>> {
    let meta = owner.meta();
    let ns = meta.namespace.clone().unwrap_or_default();
    let uid = meta.uid.clone().unwrap_or_default();
    let deleting = meta.deletion_timestamp.is_some();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let mut can_adopt: Option<bool> = None;
    let mut claimed = Vec::new();
    for pod in pods {
        if pod.metadata.namespace.as_deref() != Some(ns.as_str()) {
            continue;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
        match controller_of(&pod) {
            Some(r) if r.uid != uid => {}
            Some(_) if owner.claims(&pod) || deleting => claimed.push(pod),
            Some(_) => {
                let release = json!({"metadata": {
                    "ownerReferences": [{"$patch": "delete", "uid": uid}],
                    "uid": pod_uid,
                }});
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Strategic(&release))
                    .await
                {
                    Ok(_) => {
                        tracing::info!(pod = %name, owner = %meta.name.as_deref().unwrap_or_default(), "released a pod its owner no longer selects")
                    }
                    Err(e) => tracing::debug!(pod = %name, error = %e, "releasing a pod failed"),
                }
            }
            None => {
                if deleting || pod.metadata.deletion_timestamp.is_some() || !owner.claims(&pod) {
                    continue;
                }
                if can_adopt.is_none() {
                    can_adopt = Some(still_current(client, owner).await);
                }
                let Some(reference) = owner_ref(owner).filter(|_| can_adopt == Some(true)) else {
                    continue;
                };
                let adopt = json!({"metadata": {"ownerReferences": [reference], "uid": pod_uid}});
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Strategic(&adopt))
                    .await
                {
                    Ok(p) => {
                        tracing::info!(pod = %name, owner = %meta.name.as_deref().unwrap_or_default(), "adopted an orphan pod");
                        claimed.push(Arc::new(p));
                    }
                    Err(e) => tracing::debug!(pod = %name, error = %e, "adopting a pod failed"),
                }
            }
        }
    }
    claimed
}

/// Whether the owner, read fresh, is still the same object and not being deleted (a cached
/// copy may be stale: adopting for a deleted owner would orphan the pod again).
async fn still_current<K: PodOwner>(client: &kube::Client, owner: &K) -> bool {
    let meta = owner.meta();
    let api: Api<K> = Api::namespaced(
        client.clone(),
        meta.namespace.as_deref().unwrap_or_default(),
    );
    match api.get_opt(meta.name.as_deref().unwrap_or_default()).await {
        Ok(Some(fresh)) => {
            fresh.meta().uid == meta.uid && fresh.meta().deletion_timestamp.is_none()
        }
        _ => false,
    }
}

/// Runs the reconcile loop of an owner of pods: like [`crate::common::run_owning`], and an
/// orphan pod's change also wakes every owner that would claim it.
pub async fn run_claiming<K, F, Fut>(client: kube::Client, shared: Shared, reconcile: F)
where
    K: PodOwner,
    F: Fn(kube::Client, Arc<K>, Arc<Shared>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Action, Error>> + Send + 'static,
{
    let controller = Controller::new(Api::<K>::all(client.clone()), watcher::Config::default());
    let owners = controller.store();
    let owned = shared.pod_changes();
    let orphans = shared.pod_changes();
    controller
        .owns_shared_stream(owned)
        .watches_shared_stream(orphans, move |pod: Arc<Pod>| {
            if controller_of(&pod).is_some() {
                return Vec::new();
            }
            owners
                .state()
                .into_iter()
                .filter(|k| k.meta().namespace == pod.metadata.namespace && k.claims(&pod))
                .map(|k| ObjectRef::from_obj(k.as_ref()))
                .collect::<Vec<_>>()
        })
        .run(
            move |obj, ctx| reconcile(client.clone(), obj, ctx),
            crate::common::retry,
            Arc::new(shared),
        )
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, labels: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": "d", "labels": labels}}),
        )
        .unwrap()
    }

    #[test]
    fn owners_claim_the_pods_they_select() {
        let rs: ReplicaSet = serde_json::from_value(json!({"metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {}}}))
        .unwrap();
        assert!(rs.claims(&pod("x", json!({"app": "web", "more": "1"}))));
        assert!(!rs.claims(&pod("x", json!({"app": "db"}))));
        let rc: ReplicationController = serde_json::from_value(
            json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}}}),
        )
        .unwrap();
        assert!(rc.claims(&pod("x", json!({"app": "web"}))));
        assert!(!rc.claims(&pod("x", json!({}))));
        let sts: StatefulSet = serde_json::from_value(json!({"metadata": {"name": "db"},
            "spec": {"selector": {"matchLabels": {"app": "db"}}, "template": {}}}))
        .unwrap();
        assert!(sts.claims(&pod("db-0", json!({"app": "db"}))));
        assert!(!sts.claims(&pod("db-x", json!({"app": "db"}))));
        assert!(!sts.claims(&pod("other-0", json!({"app": "db"}))));
        let job: Job =
            serde_json::from_value(json!({"metadata": {"name": "j"}, "spec": {"template": {}}}))
                .unwrap();
        assert!(
            !job.claims(&pod("j-1", json!({"app": "j"}))),
            "no selector, no claim"
        );
        let mut old_job = job.clone();
        old_job.metadata.uid = Some("u1".into());
        assert!(old_job.claims(&pod(
            "j-1",
            json!({"batch.kubernetes.io/controller-uid": "u1"})
        )));
    }
}
