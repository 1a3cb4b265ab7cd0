//! The binding subresource of pods: how a scheduler assigns a pod to a node.

use serde_json::{Value, json};
use tug_api::{ApiError, Cause, Resource, meta};

use super::write::Guarded;
use super::{Registry, WriteOptions, key};

impl Registry {
    /// Binds pod `name` to the node a Binding targets: sets `spec.nodeName` (once) and the
    /// PodScheduled condition. 409 when the pod is already bound.
    pub async fn bind(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
        binding: &Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let node = binding
            .pointer("/target/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                ApiError::invalid(
                    "",
                    "Binding",
                    name,
                    vec![Cause::new(
                        "FieldValueRequired",
                        "target.name",
                        "Required value",
                    )],
                )
            })?
            .to_string();
        let (mut pod, kv) = self
            .current(r, ns, name)
            .await?
            .ok_or_else(|| ApiError::not_found(r.group, r.plural, name))?;
        if let Some(bound) = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            return Err(ApiError::conflict(
                r.group,
                r.plural,
                name,
                &format!("pod {name} is already assigned to node \"{bound}\""),
            ));
        }
        if pod.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::conflict(
                r.group,
                r.plural,
                name,
                "the pod is being deleted",
            ));
        }
        pod["spec"]["nodeName"] = json!(node);
        let now = tug_api::time::now();
        let scheduled = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
        let conditions = pod["status"]
            .as_object_mut()
            .map(|s| s.entry("conditions").or_insert_with(|| json!([])));
        if let Some(Value::Array(c)) = conditions {
            c.retain(|c| c["type"] != "PodScheduled");
            c.push(scheduled);
        }
        // spec.nodeName and the condition are written together, in one guarded write, as the
        // binding registry does: a bound pod is never seen without its node.
        meta::remove(&mut pod, "resourceVersion");
        if !opts.dry_run {
            let stored = serde_json::to_vec(&pod).map_err(|e| ApiError::internal(e.to_string()))?;
            self.write_if_unchanged(
                r,
                name,
                key(r, ns, name),
                kv.mod_revision,
                Guarded::Put(stored),
            )
            .await?;
        }
        Ok(tug_api::status::success("", "pods", name, meta::uid(&pod)))
    }
}
