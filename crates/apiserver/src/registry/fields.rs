//! Field selectors: the fields each kind can be selected by, as Kubernetes supports them.

use serde_json::Value;
use tug_api::ApiError;
use tug_api::Resource;
use tug_api::selector::FieldSelector;

/// Fields (beyond metadata.name and metadata.namespace) a kind supports, with where they
/// live in the object.
fn kind_fields(kind: &str) -> &'static [(&'static str, &'static str)] {
    match kind {
        "Pod" => &[
            ("spec.nodeName", "/spec/nodeName"),
            ("spec.restartPolicy", "/spec/restartPolicy"),
            ("spec.schedulerName", "/spec/schedulerName"),
            ("spec.serviceAccountName", "/spec/serviceAccountName"),
            ("spec.hostNetwork", "/spec/hostNetwork"),
            ("status.phase", "/status/phase"),
            ("status.podIP", "/status/podIP"),
            ("status.nominatedNodeName", "/status/nominatedNodeName"),
        ],
        "Event" => &[
            ("involvedObject.kind", "/involvedObject/kind"),
            ("involvedObject.namespace", "/involvedObject/namespace"),
            ("involvedObject.name", "/involvedObject/name"),
            ("involvedObject.uid", "/involvedObject/uid"),
            ("involvedObject.apiVersion", "/involvedObject/apiVersion"),
            (
                "involvedObject.resourceVersion",
                "/involvedObject/resourceVersion",
            ),
            ("involvedObject.fieldPath", "/involvedObject/fieldPath"),
            ("reason", "/reason"),
            ("reportingComponent", "/reportingComponent"),
            ("source", "/source/component"),
            ("type", "/type"),
        ],
        "Secret" => &[("type", "/type")],
        "Node" => &[("spec.unschedulable", "/spec/unschedulable")],
        "Namespace" => &[("status.phase", "/status/phase")],
        "ReplicaSet" | "ReplicationController" => &[("status.replicas", "/status/replicas")],
        "Job" => &[("status.successful", "/status/succeeded")],
        "CertificateSigningRequest" => &[("spec.signerName", "/spec/signerName")],
        _ => &[],
    }
}

fn as_text(v: Option<&Value>, default: &str) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => default.to_string(),
    }
}

/// Parses a field selector and checks every field is supported for the resource.
pub fn parse(resource: &Resource, selector: &str) -> Result<FieldSelector, ApiError> {
    let sel = FieldSelector::parse(selector)?;
    for f in sel.fields() {
        let known = f == "metadata.name"
            || f == "metadata.namespace"
            || match resource.custom {
                Some(c) => c
                    .selectable_fields
                    .iter()
                    .any(|p| p.trim_start_matches('.') == f),
                None => kind_fields(resource.kind).iter().any(|(n, _)| *n == f),
            };
        if !known {
            return Err(ApiError::bad_request(format!(
                "field label not supported: {f}"
            )));
        }
    }
    Ok(sel)
}

/// Whether `obj` satisfies the selector.
pub fn matches(resource: &Resource, sel: &FieldSelector, obj: &Value) -> bool {
    sel.matches(|field| match field {
        "metadata.name" => tug_api::meta::name(obj).to_string(),
        "metadata.namespace" => tug_api::meta::namespace(obj).to_string(),
        other if resource.custom.is_some() => {
            // A custom resource's selectable fields are JSONPaths of its definition.
            let found = tug_api::crd::jsonpath::select(obj, &format!(".{other}"));
            as_text(found.first().copied(), "")
        }
        other => {
            let pointer = kind_fields(resource.kind)
                .iter()
                .find(|(n, _)| *n == other)
                .map(|(_, p)| *p)
                .unwrap_or("");
            // Booleans that are unset read as false, as Kubernetes' field sets report them.
            let default = if other == "spec.unschedulable" || other == "spec.hostNetwork" {
                "false"
            } else {
                ""
            };
            as_text(obj.pointer(pointer), default)
        }
    })
}
