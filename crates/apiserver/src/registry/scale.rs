//! The scale subresource (autoscaling/v1 Scale) of Deployments, ReplicaSets, StatefulSets and
//! ReplicationControllers, which reads and writes the parent's `spec.replicas`, and of custom
//! resources, which read and write the paths their definition names.

use serde_json::{Value, json};
use tug_api::crd::jsonpath;
use tug_api::{ApiError, Resource, meta, patch, strategic};

use super::{PatchType, Registry, WriteOptions};

/// The label selector of a workload as a string (`a=b,c=d`), as Scale reports it.
fn selector(obj: &Value) -> String {
    let labels = obj
        .pointer("/spec/selector/matchLabels")
        .or_else(|| obj.pointer("/spec/selector"))
        .and_then(Value::as_object);
    let mut parts: Vec<String> = labels
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
                .collect()
        })
        .unwrap_or_default();
    parts.sort();
    parts.join(",")
}

fn to_scale(r: &Resource, obj: &Value) -> Result<Value, ApiError> {
    let m = obj.get("metadata").cloned().unwrap_or(json!({}));
    let (spec, status, selector) = match r.custom.and_then(|c| c.scale.as_ref()) {
        Some(paths) => {
            let at = |p: &str| jsonpath::select(obj, p).first().map(|v| (*v).clone());
            (
                at(&paths.spec_replicas).ok_or_else(|| {
                    ApiError::internal(format!(
                        "Internal error occurred: the spec replicas field {:?} does not exist",
                        paths.spec_replicas
                    ))
                })?,
                at(&paths.status_replicas).unwrap_or(json!(0)),
                paths
                    .label_selector
                    .as_deref()
                    .and_then(at)
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
            )
        }
        None => (
            obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1)),
            obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            selector(obj),
        ),
    };
    let mut scale = json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m.get("name"),
            "namespace": m.get("namespace"),
            "uid": m.get("uid"),
            "resourceVersion": m.get("resourceVersion"),
            "creationTimestamp": m.get("creationTimestamp"),
        },
        "spec": {"replicas": spec},
        "status": {"replicas": status, "selector": selector},
    });
    // ScaleStatus.selector is omitempty.
    if r.custom.is_some()
        && scale["status"]["selector"] == ""
        && let Some(st) = scale["status"].as_object_mut()
    {
        st.remove("selector");
    }
    Ok(scale)
}

impl Registry {
    /// GET of the scale subresource.
    pub async fn get_scale(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        to_scale(r, &self.get(r, ns, name).await?)
    }

    /// PUT of the scale subresource: sets the parent's replicas.
    pub async fn update_scale(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
        scale: &Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let replicas = scale
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .ok_or_else(|| {
                ApiError::invalid(
                    "autoscaling",
                    "Scale",
                    name,
                    vec![tug_api::Cause::new(
                        "FieldValueRequired",
                        "spec.replicas",
                        "Required value",
                    )],
                )
            })?;
        if replicas < 0 && r.custom.is_none() {
            return Err(ApiError::invalid(
                "autoscaling",
                "Scale",
                name,
                vec![tug_api::Cause::new(
                    "FieldValueInvalid",
                    "spec.replicas",
                    format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                )],
            ));
        }
        let rv = meta::resource_version(scale);
        // A Scale without a resourceVersion is not conditional: retry on conflicts, each of which
        // means another write landed.
        for _ in 0..1000 {
            let (mut obj, kv) = self
                .current(r, ns, name)
                .await?
                .ok_or_else(|| ApiError::not_found(r.group, r.plural, name))?;
            if !rv.is_empty() && rv != kv.mod_revision.to_string() {
                return Err(stale(r, name));
            }
            match r.custom.and_then(|c| c.scale.as_ref()) {
                Some(paths) => jsonpath::set(&mut obj, &paths.spec_replicas, json!(replicas)),
                None => obj["spec"]["replicas"] = json!(replicas),
            }
            meta::set(&mut obj, "resourceVersion", kv.mod_revision.to_string());
            match self.update(r, ns, name, obj, None, opts).await {
                Err(e) if e.reason == "Conflict" && rv.is_empty() => continue,
                other => return other.and_then(|updated| to_scale(r, &updated)),
            }
        }
        Err(stale(r, name))
    }

    /// PATCH of the scale subresource.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch_scale(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
        kind: PatchType,
        body: &Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let mut scale = self.get_scale(r, ns, name).await?;
        match kind {
            PatchType::Json => patch::json_patch(&mut scale, body)?,
            PatchType::Strategic => strategic::strategic_merge(&mut scale, body),
            PatchType::Merge | PatchType::Apply => patch::merge_patch(&mut scale, body),
        }
        if !super::write::names_resource_version(kind, body) {
            meta::remove(&mut scale, "resourceVersion");
        }
        self.update_scale(r, ns, name, &scale, opts).await
    }
}

fn stale(r: &Resource, name: &str) -> ApiError {
    ApiError::conflict(
        r.group,
        r.plural,
        name,
        "the object has been modified; please apply your changes to the latest version and try again",
    )
}
