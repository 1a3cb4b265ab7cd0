//! The StatefulSet controller: pods with stable names (`<set>-0`, `<set>-1`, ...), created in
//! order and removed in reverse, each waiting for the one before to be Running and Ready
//! (OrderedReady), or all at once (Parallel). Each pod gets its own PersistentVolumeClaims
//! from the volumeClaimTemplates (`<claim>-<set>-<n>`, kept when the pod goes). Template
//! changes are recorded as ControllerRevisions (`kubectl rollout history`) and rolled out
//! from the highest ordinal down to `partition`, one pod at a time (RollingUpdate), or left
//! for the user to delete pods (OnDelete).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, Patch};
use kube::runtime::controller::Action;
use serde_json::json;

use crate::common::{
    Error, REVISION_LABEL, Shared, owner_ref, patch_params, pod_active, pod_ready, post_params,
    record_revision, revision_of, template_hash,
};

/// Runs the controller.
pub async fn run(client: kube::Client, shared: Shared) {
    crate::claim::run_claiming::<StatefulSet, _, _>(client, shared, reconcile).await;
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
    if sts.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let spec = &sts.spec;
    let want = spec.replicas.unwrap_or(1).max(0);
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let mut owned: Vec<(i32, Arc<Pod>)> =
        crate::claim::claim_pods(&client, sts.as_ref(), ctx.pods.state())
            .await
            .into_iter()
            .filter_map(|p| Some((ordinal(&name, p.metadata.name.as_deref()?)?, p)))
            .collect();
    owned.sort_by_key(|(i, _)| *i);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let healthy = |p: &Pod| pod_active(p) && pod_ready(p);
    let template = serde_json::to_value(&spec.template).unwrap_or_default();
    let update_revision = format!("{name}-{}", template_hash(&template));
    let labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone());
    record_revision(&client, sts.as_ref(), &update_revision, labels, &template).await?;

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
                labels.insert(REVISION_LABEL.into(), update_revision.clone());
                meta.name = Some(pod_name.clone());
                meta.namespace = Some(ns.clone());
                meta.owner_references = owner_ref(sts.as_ref()).map(|r| vec![r]);
                let mut pod_spec = spec.template.spec.clone().unwrap_or_default();
                pod_spec.hostname = Some(pod_name.clone());
                pod_spec.subdomain = spec.service_name.clone();
                for claim in ensure_claims(&client, &sts, i).await? {
                    let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
                    volumes.retain(|v| v.name != claim.0);
                    volumes.push(
                        serde_json::from_value(json!({"name": claim.0,
                        "persistentVolumeClaim": {"claimName": claim.1}}))
                        .map_err(|e| Error(e.to_string()))?,
                    );
                }
                let pod = Pod {
                    metadata: meta,
                    spec: Some(pod_spec),
                    status: None,
                };
                match pods.create(&post_params(), &pod).await {
                    Ok(_) => {
                        ctx.recorder("statefulset-controller")
                            .event(
                                &tug_events::Involved::of(sts.as_ref()),
                                "Normal",
                                "SuccessfulCreate",
                                &format!("create Pod {pod_name} in StatefulSet {name} successful"),
                            )
                            .await;
                    }
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

    // Rolling update: once every pod is there and healthy, replace the highest ordinal at or
    // above the partition that runs an old revision (it comes back on the new one above).
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate");
    let partition = spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0);
    let all_healthy = owned.iter().filter(|(i, _)| *i < want).count() == want as usize
        && owned.iter().all(|(_, p)| healthy(p));
    if rolling && all_healthy {
        let stale = owned
            .iter()
            .rev()
            .find(|(i, p)| *i >= partition && *i < want && revision_of(p) != update_revision);
        if let Some((_, p)) = stale {
            let pod_name = p.metadata.name.clone().unwrap_or_default();
            tracing::info!(statefulset = %name, pod = %pod_name, revision = %update_revision, "rolling a pod to the new revision");
            pods.delete(&pod_name, &DeleteParams::default()).await?;
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
    let updated = current
        .iter()
        .filter(|p| revision_of(p) == update_revision)
        .count() as i32;
    let status = sts.status.clone().unwrap_or_default();
    // The current revision becomes the update revision once every pod runs it.
    let current_revision = if updated == replicas && replicas == want {
        update_revision.clone()
    } else {
        status
            .current_revision
            .clone()
            .unwrap_or_else(|| update_revision.clone())
    };
    if status.replicas != replicas
        || status.ready_replicas.unwrap_or(0) != ready
        || status.updated_replicas.unwrap_or(0) != updated
        || status.update_revision.as_deref() != Some(update_revision.as_str())
        || status.current_revision.as_deref() != Some(current_revision.as_str())
        || status.observed_generation != sts.metadata.generation
    {
        let patch = json!({"status": {
            "replicas": replicas, "readyReplicas": ready, "currentReplicas": replicas - updated
                + if current_revision == update_revision { updated } else { 0 },
            "updatedReplicas": updated, "availableReplicas": ready,
            "currentRevision": current_revision, "updateRevision": update_revision,
            "observedGeneration": sts.metadata.generation,
        }});
        Api::<StatefulSet>::namespaced(client, &ns)
            .patch_status(&name, &patch_params(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(Action::requeue(Duration::from_secs(30)))
}

/// Creates the PersistentVolumeClaims of ordinal `i` that are missing; returns
/// (volume name, claim name) for each template.
async fn ensure_claims(
    client: &kube::Client,
    sts: &StatefulSet,
    i: i32,
) -> Result<Vec<(String, String)>, Error> {
    let ns = sts.metadata.namespace.clone().unwrap_or_default();
    let set = sts.metadata.name.clone().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let mut out = Vec::new();
    for t in sts.spec.volume_claim_templates.iter().flatten() {
        let volume = t.metadata.name.clone().unwrap_or_default();
        let claim = format!("{volume}-{set}-{i}");
        let mut pvc = t.clone();
        pvc.metadata.name = Some(claim.clone());
        pvc.metadata.namespace = Some(ns.clone());
        pvc.status = None;
        let labels = pvc.metadata.labels.get_or_insert_with(Default::default);
        for (k, v) in sts.spec.selector.match_labels.iter().flatten() {
            labels.insert(k.clone(), v.clone());
        }
        match api.create(&post_params(), &pvc).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        out.push((volume, claim));
    }
    Ok(out)
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
