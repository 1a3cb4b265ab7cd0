//! StorageObjectInUseProtection: a new PersistentVolumeClaim gets the
//! `kubernetes.io/pvc-protection` finalizer and a new PersistentVolume
//! `kubernetes.io/pv-protection`, as kube-apiserver's plugin adds them, so that neither goes
//! while in use; the controller manager's protection controllers remove them once a claim no
//! pod uses, or a volume no claim is bound to, is being deleted.

use serde_json::{Value, json};
use tug_api::ApiError;

use super::{Attributes, Operation};

/// The claims' finalizer.
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
/// The volumes' finalizer.
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

/// Adds the protection finalizer to a new claim or volume.
pub fn admit(a: &Attributes<'_>, obj: &mut Value) -> Result<(), ApiError> {
    let r = a.resource;
    if !r.group.is_empty() || a.operation != Operation::Create || a.subresource.is_some() {
        return Ok(());
    }
    let finalizer = match r.kind {
        "PersistentVolumeClaim" => PVC_PROTECTION,
        "PersistentVolume" => PV_PROTECTION,
        _ => return Ok(()),
    };
    if !obj["metadata"].is_object() {
        return Ok(());
    }
    let meta = &mut obj["metadata"];
    match meta.get_mut("finalizers") {
        Some(Value::Array(list)) => {
            if !list.iter().any(|f| f == finalizer) {
                list.push(json!(finalizer));
            }
        }
        _ => meta["finalizers"] = json!([finalizer]),
    }
    Ok(())
}
