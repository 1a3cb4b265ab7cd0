//! PersistentVolumeClaim checks (kube-apiserver's `ValidatePersistentVolumeClaimSpec`).

use serde_json::Value;

use super::field::{Errors, Path, items};

const ACCESS_MODES: [&str; 4] = [
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

/// Checks a PersistentVolumeClaim's spec at `at`.
pub fn validate_claim_spec(spec: Option<&Value>, at: &Path, e: &mut Errors) {
    let empty = Value::Null;
    let spec = spec.unwrap_or(&empty);
    let modes = items(spec, "accessModes");
    if modes.is_empty() {
        e.required(
            &at.child("accessModes"),
            "at least 1 access mode is required",
        );
    }
    for m in modes {
        if !m.as_str().is_some_and(|m| ACCESS_MODES.contains(&m)) {
            e.not_supported(&at.child("accessModes"), m, &ACCESS_MODES);
        }
    }
    let storage = at.child("resources").key("storage");
    match spec.pointer("/resources/requests/storage") {
        None => e.required(&storage, ""),
        Some(v) => match super::quantity_value(v) {
            Some(q) if q <= 0.0 => e.invalid(&storage, v, "must be greater than zero"),
            _ => {}
        },
    }
    e.one_of(
        &at.child("volumeMode"),
        spec.get("volumeMode"),
        &["Block", "Filesystem"],
    );
}
