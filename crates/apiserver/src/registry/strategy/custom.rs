//! Custom resources' strategy, built from their definition's version (the schema that prunes,
//! defaults and validates them), and the strategy of the definitions themselves.

use serde_json::{Value, json};
use tug_api::crd::{self, Custom, cel, schema};
use tug_api::{Cause, meta};

use super::Strategy;

/// Objects of one served version of a custom resource.
#[derive(Clone, Copy)]
pub(crate) struct CustomResource {
    pub(super) custom: &'static Custom,
    pub(super) has_status: bool,
}

impl Strategy for CustomResource {
    fn defaults(&self, obj: &mut Value) {
        if let Some(s) = &self.custom.schema {
            schema::prune(obj, s);
            schema::default(obj, s);
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        // With a status subresource, status is written there only.
        if self.has_status
            && let Value::Object(m) = obj
        {
            m.remove("status");
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let Some(s) = &self.custom.schema else {
            return Vec::new();
        };
        let mut causes = schema::validate(obj, s);
        if let Some(scale) = &self.custom.scale {
            causes.extend(crd::scale_replicas(obj, &scale.spec_replicas));
        }
        // Rules run on objects the schema accepts; kube-apiserver says when it skipped them.
        if blocking(&causes) {
            if cel::has_rules(s) {
                causes.push(cel::not_checked());
            }
        } else {
            causes.extend(cel::validate(obj, None, s, cel::Pass::Plain));
        }
        causes
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<Cause> {
        match &self.custom.schema {
            Some(s) if !blocking(&schema::validate(new, s)) => {
                cel::validate(new, Some(old), s, cel::Pass::Transition)
            }
            _ => Vec::new(),
        }
    }
}

/// Whether schema errors keep the rules from running (kube-apiserver's list: unsupported,
/// required, too long, too many, wrong type).
fn blocking(causes: &[Cause]) -> bool {
    causes.iter().any(|c| {
        matches!(
            c.reason.as_str(),
            "FieldValueNotSupported"
                | "FieldValueRequired"
                | "FieldValueTooLong"
                | "FieldValueTooMany"
        ) || c.message.contains(" in body must be of type ")
    })
}

/// CustomResourceDefinitions: checked and defaulted as the apiextensions server does; their
/// deletion waits for their objects to go (the cleanup finalizer).
pub(super) struct Definition;

impl Strategy for Definition {
    fn defaults(&self, obj: &mut Value) {
        crd::definition::defaults(obj);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        let storage: Vec<Value> = obj
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|v| v["storage"] == true)
            .filter_map(|v| v.get("name").cloned())
            .collect();
        obj["status"] = json!({
            "conditions": null,
            "acceptedNames": {"plural": "", "kind": ""},
            "storedVersions": storage,
        });
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        crd::definition::validate(obj)
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<Cause> {
        crd::definition::validate_update(old, new)
    }

    fn returns_deleted_object(&self) -> bool {
        true
    }

    fn on_delete(&self, obj: &mut Value) {
        if obj.pointer("/metadata/deletionTimestamp").is_some() {
            return;
        }
        let mut conditions = obj["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        conditions.retain(|c| c["type"] != "Terminating");
        conditions.push(json!({
            "type": "Terminating",
            "status": "True",
            "lastTransitionTime": tug_api::time::now(),
            "reason": "InstanceDeletionPending",
            "message": "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
        }));
        obj["status"]["conditions"] = Value::Array(conditions);
        let finalizers = meta::metadata_mut(obj)
            .entry("finalizers")
            .or_insert_with(|| json!([]));
        if let Value::Array(f) = finalizers
            && !f.iter().any(|f| f == crd::CLEANUP_FINALIZER)
        {
            f.push(json!(crd::CLEANUP_FINALIZER));
        }
    }
}
