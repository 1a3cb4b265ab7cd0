//! The ephemeralcontainers subresource of pods (`kubectl debug`): a write through it may add
//! ephemeral containers to a pod, and change nothing else; ephemeral containers, once added,
//! cannot be changed or removed, and their names are unique among the pod's containers.

use serde_json::Value;
use tug_api::{ApiError, Cause};

fn ephemeral(pod: &Value) -> Vec<Value> {
    pod.pointer("/spec/ephemeralContainers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn names(pod: &Value, list: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{list}"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

/// The pod `old` with the ephemeral containers of `new`, when those only add to `old`'s.
pub(super) fn admit(old: &Value, new: &Value, name: &str) -> Result<Value, ApiError> {
    let (before, after) = (ephemeral(old), ephemeral(new));
    let invalid = |field: String, message: String| {
        ApiError::invalid(
            "",
            "Pod",
            name,
            vec![Cause::new("FieldValueForbidden", &field, message)],
        )
    };
    for (i, kept) in before.iter().enumerate() {
        let same = after.iter().find(|c| c["name"] == kept["name"]);
        if same != Some(kept) {
            return Err(invalid(
                format!("spec.ephemeralContainers[{i}]"),
                "Forbidden: existing ephemeral containers may not be changed or removed".into(),
            ));
        }
    }
    let mut taken = names(old, "containers");
    taken.extend(names(old, "initContainers"));
    let mut seen: Vec<String> = Vec::new();
    for (i, c) in after.iter().enumerate() {
        let n = c["name"].as_str().unwrap_or("");
        if n.is_empty() {
            return Err(invalid(
                format!("spec.ephemeralContainers[{i}].name"),
                "Required value".into(),
            ));
        }
        if taken.iter().any(|t| t == n) || seen.iter().any(|s| s == n) {
            return Err(invalid(
                format!("spec.ephemeralContainers[{i}].name"),
                format!("Duplicate value: \"{n}\""),
            ));
        }
        seen.push(n.to_string());
    }
    let mut out = old.clone();
    if let Some(spec) = out.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("ephemeralContainers".into(), Value::Array(after));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_additions_pass() {
        let old = json!({"spec": {"containers": [{"name": "app"}],
            "ephemeralContainers": [{"name": "dbg1", "image": "a"}]}});
        let added = json!({"spec": {"containers": [{"name": "changed"}],
            "ephemeralContainers": [{"name": "dbg1", "image": "a"}, {"name": "dbg2", "image": "b"}]}});
        let out = admit(&old, &added, "p").expect("an addition");
        assert_eq!(out["spec"]["ephemeralContainers"][1]["name"], "dbg2");
        assert_eq!(
            out["spec"]["containers"][0]["name"], "app",
            "nothing else changes"
        );
        let changed = json!({"spec": {"ephemeralContainers": [{"name": "dbg1", "image": "z"}]}});
        assert!(admit(&old, &changed, "p").is_err());
        let removed = json!({"spec": {"ephemeralContainers": []}});
        assert!(admit(&old, &removed, "p").is_err());
        let clash = json!({"spec": {"ephemeralContainers": [{"name": "dbg1", "image": "a"}, {"name": "app"}]}});
        assert!(admit(&old, &clash, "p").is_err());
    }
}
