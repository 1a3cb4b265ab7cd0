//! The built-in local-path provisioner: the `local-path` StorageClass (the cluster's default)
//! and, for each claim of that class (or of no class), a PersistentVolume backed by a
//! directory on the node, bound to the claim. Deleting the claim deletes the volume (reclaim
//! policy Delete); the directory is removed by the node that holds it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use serde_json::json;

use crate::common::{Error, post_params};

/// The class name.
pub const CLASS: &str = "local-path";
/// The provisioner name in the class.
pub const PROVISIONER: &str = "tugboat.dev/local-path";

struct Ctx {
    client: kube::Client,
    base: PathBuf,
}

/// The service account (in kube-system) the provisioner acts as.
pub const SERVICE_ACCOUNT: &str = "local-path-provisioner";

/// Makes sure the class exists, then provisions and binds until the task is dropped.
pub async fn run(client: kube::Client, base: PathBuf) {
    let classes: Api<StorageClass> = Api::all(client.clone());
    let class = json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": CLASS, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": PROVISIONER, "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate",
    });
    if let Ok(sc) = serde_json::from_value::<StorageClass>(class) {
        match classes.create(&post_params(), &sc).await {
            Ok(_) => tracing::info!("created the local-path storage class"),
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => tracing::warn!(error = %e, "creating the local-path storage class failed"),
        }
    }
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        base,
    });
    tokio::spawn(release_loop(client.clone()));
    Controller::new(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    )
    .run(reconcile, retry, ctx)
    .for_each(|_| async {})
    .await;
}

/// Whether the provisioner serves a claim.
fn ours(pvc: &PersistentVolumeClaim) -> bool {
    let class = pvc
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref());
    class.is_none_or(|c| c == CLASS)
}

async fn reconcile(pvc: Arc<PersistentVolumeClaim>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let (Some(ns), Some(name), Some(uid)) = (
        pvc.metadata.namespace.as_deref(),
        pvc.metadata.name.as_deref(),
        pvc.metadata.uid.as_deref(),
    ) else {
        return Ok(Action::await_change());
    };
    let spec = pvc.spec.clone().unwrap_or_default();
    let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let pv_name = format!("pvc-{uid}");
    if pvc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    if !ours(&pvc) || spec.volume_name.as_deref().is_some_and(|v| v != pv_name) {
        return Ok(Action::await_change());
    }
    let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    if bound {
        return Ok(Action::await_change());
    }
    let size = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map_or_else(|| "1Gi".to_string(), |q| q.0.clone());
    let modes = spec
        .access_modes
        .clone()
        .unwrap_or_else(|| vec!["ReadWriteOnce".into()]);
    let path = ctx.base.join(format!("{ns}_{name}_{pv_name}"));
    let pv = json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": modes,
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": CLASS,
            "hostPath": {"path": path.display().to_string(), "type": "DirectoryOrCreate"},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns, "name": name, "uid": uid},
        },
    });
    let pv: PersistentVolume = serde_json::from_value(pv).map_err(|e| Error(e.to_string()))?;
    match pvs.create(&post_params(), &pv).await {
        Ok(_) => {
            tracing::info!(claim = %format!("{ns}/{name}"), volume = %pv_name, "provisioned a local-path volume")
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    pvs.patch_status(
        &pv_name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"phase": "Bound"}})),
    )
    .await?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    claims
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"volumeName": pv_name, "storageClassName": CLASS}})),
        )
        .await?;
    claims
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"phase": "Bound", "accessModes": modes,
                "capacity": {"storage": size}}})),
        )
        .await?;
    Ok(Action::await_change())
}

/// Deletes provisioned volumes whose claim is gone (reclaim policy Delete), every few seconds.
async fn release_loop(client: kube::Client) {
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::all(client);
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (Ok(volumes), Ok(live)) = (
            pvs.list(&Default::default()).await,
            claims.list(&Default::default()).await,
        ) else {
            continue;
        };
        let uids: std::collections::HashSet<String> = live
            .items
            .iter()
            .filter_map(|c| c.metadata.uid.clone())
            .collect();
        for pv in volumes.items {
            let provisioned = pv
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("pv.kubernetes.io/provisioned-by"))
                .is_some_and(|p| p == PROVISIONER);
            let claim_uid = pv
                .spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref())
                .and_then(|c| c.uid.clone());
            if provisioned
                && claim_uid.is_some_and(|u| !uids.contains(&u))
                && let Some(name) = pv.metadata.name.as_deref()
            {
                tracing::info!(
                    volume = name,
                    "deleting a local-path volume whose claim is gone"
                );
                // Released first, as the volume controller marks a volume whose claim went:
                // the pv-protection finalizer holds a Bound volume.
                let _ = pvs
                    .patch_status(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(&json!({"status": {"phase": "Released"}})),
                    )
                    .await;
                let _ = pvs.delete(name, &Default::default()).await;
            }
        }
    }
}

fn retry(_: Arc<PersistentVolumeClaim>, e: &Error, _: Arc<Ctx>) -> Action {
    tracing::debug!(error = %e, "local-path provisioning failed; retrying");
    Action::requeue(Duration::from_secs(2))
}
