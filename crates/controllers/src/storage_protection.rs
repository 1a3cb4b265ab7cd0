//! The PVC and PV protection controllers, as kube-controller-manager's: a claim being deleted
//! keeps its `kubernetes.io/pvc-protection` finalizer while a pod that has not finished uses
//! it, and a volume being deleted keeps `kubernetes.io/pv-protection` while it is bound; then
//! the finalizer goes and the deletion completes. Claims and volumes without the finalizer
//! (made before it was added on create) get it.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::Api;
use kube::runtime::controller::Action;

use crate::common::{Error, Shared, post_params};

const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

/// The claims a pod's volumes use: named ones, and the ones its ephemeral volumes make
/// (`<pod>-<volume>`).
fn claims_of(pod: &Pod) -> impl Iterator<Item = String> + '_ {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(move |v| match (&v.persistent_volume_claim, &v.ephemeral) {
            (Some(c), _) => Some(c.claim_name.clone()),
            (None, Some(_)) => Some(format!("{pod_name}-{}", v.name)),
            _ => None,
        })
}

fn uses(pvc: &PersistentVolumeClaim, pod: &Pod) -> bool {
    pvc.metadata.namespace == pod.metadata.namespace
        && pvc
            .metadata
            .name
            .as_deref()
            .is_some_and(|n| claims_of(pod).any(|c| c == n))
}

/// Runs both controllers until the task is dropped, each with its own identity.
pub async fn run(claims: kube::Client, volumes: kube::Client, shared: Shared) {
    tokio::join!(
        crate::common::run_following_pods::<PersistentVolumeClaim, _, _>(
            claims,
            shared.clone(),
            uses,
            reconcile_claim,
        ),
        crate::common::run_owning::<PersistentVolume, PersistentVolume, _, _>(
            volumes,
            shared,
            futures::stream::empty().boxed(),
            reconcile_volume,
        ),
    );
}

/// The finalizers with `finalizer` present (`wanted`) or not, if that changes them.
fn with(current: Option<&Vec<String>>, finalizer: &str, wanted: bool) -> Option<Vec<String>> {
    let mut list = current.cloned().unwrap_or_default();
    let has = list.iter().any(|f| f == finalizer);
    match (has, wanted) {
        (false, true) => list.push(finalizer.to_string()),
        (true, false) => list.retain(|f| f != finalizer),
        _ => return None,
    }
    Some(list)
}

async fn reconcile_claim(
    client: kube::Client,
    pvc: Arc<PersistentVolumeClaim>,
    ctx: Arc<Shared>,
) -> Result<Action, Error> {
    let deleting = pvc.metadata.deletion_timestamp.is_some();
    let wanted = if deleting {
        // A pod that has not finished, scheduled or not, still uses the claim.
        ctx.pods.state().iter().any(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed")) && uses(&pvc, p)
        })
    } else {
        true
    };
    let Some(list) = with(pvc.metadata.finalizers.as_ref(), PVC_PROTECTION, wanted) else {
        return Ok(Action::await_change());
    };
    let ns = pvc.metadata.namespace.clone().unwrap_or_default();
    let name = pvc.metadata.name.clone().unwrap_or_default();
    // An update, as the controller's role allows (a conflict is retried).
    let mut updated = (*pvc).clone();
    updated.metadata.finalizers = Some(list);
    Api::<PersistentVolumeClaim>::namespaced(client, &ns)
        .replace(&name, &post_params(), &updated)
        .await
        .map_err(|e| Error(format!("claim {ns}/{name}: {e}")))?;
    if !wanted {
        tracing::info!(namespace = %ns, claim = %name, "claim no longer in use; protection removed");
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

async fn reconcile_volume(
    client: kube::Client,
    pv: Arc<PersistentVolume>,
    _ctx: Arc<Shared>,
) -> Result<Action, Error> {
    let bound = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let wanted = pv.metadata.deletion_timestamp.is_none() || bound;
    let Some(list) = with(pv.metadata.finalizers.as_ref(), PV_PROTECTION, wanted) else {
        return Ok(Action::await_change());
    };
    let name = pv.metadata.name.clone().unwrap_or_default();
    let mut updated = (*pv).clone();
    updated.metadata.finalizers = Some(list);
    Api::<PersistentVolume>::all(client)
        .replace(&name, &post_params(), &updated)
        .await
        .map_err(|e| Error(format!("volume {name}: {e}")))?;
    Ok(Action::requeue(Duration::from_secs(300)))
}
