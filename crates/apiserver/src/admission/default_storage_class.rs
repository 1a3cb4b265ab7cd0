//! DefaultStorageClass: a PersistentVolumeClaim created without `storageClassName` gets the
//! default StorageClass's name (the class annotated `storageclass.kubernetes.io/is-default-
//! class: "true"`, the newest if several are), as kube-apiserver's plugin gives it. A claim
//! that says `""` asks for no class and keeps it.

use serde_json::{Value, json};
use tug_api::validation::field::{items, text};
use tug_api::{ApiError, catalog, meta};

use super::{Attributes, Operation};
use crate::registry::{ListOptions, Registry};

const DEFAULT: &str = "storageclass.kubernetes.io/is-default-class";
const DEFAULT_BETA: &str = "storageclass.beta.kubernetes.io/is-default-class";

/// Sets a new claim's class to the default one, if there is one.
pub async fn admit(
    registry: &Registry,
    a: &Attributes<'_>,
    obj: &mut Value,
) -> Result<(), ApiError> {
    let r = a.resource;
    if !(r.group.is_empty() && r.kind == "PersistentVolumeClaim")
        || a.operation != Operation::Create
        || a.subresource.is_some()
        || obj
            .pointer("/spec/storageClassName")
            .is_some_and(|c| !c.is_null())
        || !obj["spec"].is_object()
    {
        return Ok(());
    }
    let classes = catalog::lookup("storage.k8s.io", "v1", "storageclasses")
        .ok_or_else(|| ApiError::internal("storageclasses missing from the catalog"))?;
    let list = registry
        .list(classes, None, &ListOptions::default())
        .await?;
    let default = items(&list, "items")
        .iter()
        .filter(|c| {
            let a = &c["metadata"]["annotations"];
            a[DEFAULT] == "true" || a[DEFAULT_BETA] == "true"
        })
        .max_by(|x, y| {
            let at = |c: &Value| text(&c["metadata"], "creationTimestamp").to_string();
            at(x).cmp(&at(y)).then(meta::name(y).cmp(meta::name(x)))
        });
    if let Some(class) = default {
        obj["spec"]["storageClassName"] = json!(meta::name(class));
    }
    Ok(())
}
