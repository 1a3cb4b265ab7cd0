//! The StatefulSet controller: pods with stable names (`<set>-0`, `<set>-1`, ...), created in
//! order and removed in reverse, each waiting for the one before to be Running and Ready
//! (OrderedReady), or all at once (Parallel).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch};
use kube::runtime::controller::Action;
use serde_json::json;

use crate::common::{
    Error, Shared, controlled_by, owner_ref, patch_params, pod_active, pod_ready, post_params,
};

/// Runs the controller.
pub async fn run(client: kube::Client, shared: Shared) {
    let children = shared.pod_changes();
    crate::common::run_owning::<StatefulSet, Pod, _, _>(client, shared, children, reconcile).await;
}

/// The ordinal of a pod named `<set>-<n>`.
fn ordinal(set: &str, pod: &str) -> Option<i32> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

async fn reconcile(
    client: kube::Client,
    sts: Arc<StatefulSet>,
    ctx: Arc<Shared>,
) -> Result<Action, Error> {
    let ns = sts.metadata.namespace.clone().unwrap_or_default();
    let name = sts.metadata.name.clone().unwrap_or_default();
    let uid = sts.metadata.uid.clone().unwrap_or_default();
    if sts.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let spec = &sts.spec;
    let want = spec.replicas.unwrap_or(1).max(0);
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let mut owned: Vec<(i32, Arc<Pod>)> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|p| controlled_by(p.metadata.owner_references.as_ref(), &uid))
        .filter_map(|p| Some((ordinal(&name, p.metadata.name.as_deref()?)?, p)))
        .collect();
    owned.sort_by_key(|(i, _)| *i);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let healthy = |p: &Pod| pod_active(p) && pod_ready(p);

    // Scale up: create missing ordinals in order; OrderedReady waits for each to be ready.
    for i in 0..want {
        match owned.iter().find(|(o, _)| *o == i) {
            Some((_, p)) if healthy(p) => continue,
            Some(_) if parallel => continue,
            Some(_) => return Ok(Action::requeue(Duration::from_millis(200))),
            None => {
                let pod_name = format!("{name}-{i}");
                let mut meta = spec.template.metadata.clone().unwrap_or_default();
                let labels = meta.labels.get_or_insert_with(Default::default);
                labels.insert(
                    "statefulset.kubernetes.io/pod-name".into(),
                    pod_name.clone(),
                );
                labels.insert("apps.kubernetes.io/pod-index".into(), i.to_string());
                meta.name = Some(pod_name.clone());
                meta.namespace = Some(ns.clone());
                meta.owner_references = owner_ref(sts.as_ref()).map(|r| vec![r]);
                let mut pod_spec = spec.template.spec.clone().unwrap_or_default();
                pod_spec.hostname = Some(pod_name.clone());
                pod_spec.subdomain = spec.service_name.clone();
                let pod = Pod {
                    metadata: meta,
                    spec: Some(pod_spec),
                    status: None,
                };
                match pods.create(&post_params(), &pod).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => return Err(e.into()),
                }
                if !parallel {
                    return Ok(Action::requeue(Duration::from_millis(200)));
                }
            }
        }
    }
    // Scale down: the highest ordinals go first, one at a time unless Parallel.
    let extra: Vec<&(i32, Arc<Pod>)> = owned.iter().rev().filter(|(i, _)| *i >= want).collect();
    for (_, p) in &extra {
        if p.metadata.deletion_timestamp.is_none() {
            let pod_name = p.metadata.name.clone().unwrap_or_default();
            pods.delete(&pod_name, &DeleteParams::default()).await?;
        }
        if !parallel {
            return Ok(Action::requeue(Duration::from_millis(200)));
        }
    }

    let current: Vec<&Arc<Pod>> = owned
        .iter()
        .filter(|(i, p)| *i < want && pod_active(p))
        .map(|(_, p)| p)
        .collect();
    let ready = current.iter().filter(|p| pod_ready(p)).count() as i32;
    let replicas = current.len() as i32;
    let status = sts.status.clone().unwrap_or_default();
    if status.replicas != replicas
        || status.ready_replicas.unwrap_or(0) != ready
        || status.observed_generation != sts.metadata.generation
    {
        let patch = json!({"status": {
            "replicas": replicas, "readyReplicas": ready, "currentReplicas": replicas,
            "updatedReplicas": replicas, "availableReplicas": ready,
            "observedGeneration": sts.metadata.generation,
        }});
        Api::<StatefulSet>::namespaced(client, &ns)
            .patch_status(&name, &patch_params(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(Action::requeue(Duration::from_secs(30)))
}

#[cfg(test)]
mod tests {
    use super::ordinal;

    #[test]
    fn ordinals() {
        assert_eq!(ordinal("web", "web-2"), Some(2));
        assert_eq!(ordinal("web", "web-x"), None);
        assert_eq!(ordinal("web", "webby-1"), None);
    }
}
