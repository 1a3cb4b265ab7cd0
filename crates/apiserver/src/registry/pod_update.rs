//! What an update may change in a pod's spec, as Kubernetes' pod validation allows it: the
//! containers' and init containers' images, `activeDeadlineSeconds` (set, or lowered),
//! additions to `tolerations`, removals from `schedulingGates`, and a negative
//! `terminationGracePeriodSeconds` raised to 1. Anything else is Forbidden. (Ephemeral
//! containers have a subresource of their own; scheduling goes through binding.)

use serde_json::{Value, json};
use tug_api::{ApiError, Cause};

const FORBIDDEN: &str = "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Copies the images of `from`'s containers in list `list` onto `to`'s, where names match.
fn images(to: &mut Value, from: &Value, list: &str) {
    let Some(Value::Array(targets)) = to.get_mut(list) else {
        return;
    };
    for t in targets.iter_mut() {
        let image = from
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|c| c["name"] == t["name"])
            .map(|c| c["image"].clone());
        if let Some(image) = image {
            t["image"] = image;
        }
    }
}

fn list(spec: &Value, key: &str) -> Vec<Value> {
    spec.get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Refuses an update of `name` whose spec changes anything but what a pod may change.
pub(super) fn check(old: &Value, new: &Value, name: &str) -> Result<(), ApiError> {
    let (Some(before), Some(after)) = (old.get("spec"), new.get("spec")) else {
        return Ok(());
    };
    // `after` with every allowed change undone must be `before`.
    let mut undone = after.clone();
    images(&mut undone, before, "containers");
    images(&mut undone, before, "initContainers");
    let deadline = |s: &Value| s.get("activeDeadlineSeconds").and_then(Value::as_i64);
    if let Some(d) = deadline(after)
        && deadline(before).is_none_or(|b| d <= b)
    {
        undone["activeDeadlineSeconds"] = before
            .get("activeDeadlineSeconds")
            .cloned()
            .unwrap_or(Value::Null);
    }
    let (old_tol, new_tol) = (list(before, "tolerations"), list(after, "tolerations"));
    if old_tol.iter().all(|t| new_tol.contains(t)) {
        undone["tolerations"] = before.get("tolerations").cloned().unwrap_or(Value::Null);
    }
    let (old_gates, new_gates) = (
        list(before, "schedulingGates"),
        list(after, "schedulingGates"),
    );
    if new_gates.iter().all(|g| old_gates.contains(g)) {
        undone["schedulingGates"] = before
            .get("schedulingGates")
            .cloned()
            .unwrap_or(Value::Null);
    }
    let grace = |s: &Value| {
        s.get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
    };
    if grace(before).is_some_and(|g| g < 0) && grace(after) == Some(1) {
        undone["terminationGracePeriodSeconds"] = json!(grace(before));
    }
    // Fields absent and null are the same.
    let strip = |v: &mut Value| {
        if let Value::Object(m) = v {
            m.retain(|_, x| !x.is_null());
        }
    };
    let (mut a, mut b) = (undone, before.clone());
    strip(&mut a);
    strip(&mut b);
    if a == b {
        return Ok(());
    }
    Err(ApiError::invalid(
        "",
        "Pod",
        name,
        vec![Cause::new("FieldValueForbidden", "spec", FORBIDDEN)],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_deadlines_and_new_tolerations_pass_and_the_rest_is_forbidden() {
        let old = json!({"spec": {"containers": [{"name": "c", "image": "a", "command": ["x"]}],
            "tolerations": [{"key": "k"}], "activeDeadlineSeconds": 100}});
        let ok = json!({"spec": {"containers": [{"name": "c", "image": "b", "command": ["x"]}],
            "tolerations": [{"key": "k"}, {"key": "new"}], "activeDeadlineSeconds": 50}});
        assert!(check(&old, &ok, "p").is_ok());
        let command = json!({"spec": {"containers": [{"name": "c", "image": "a", "command": ["y"]}],
            "tolerations": [{"key": "k"}], "activeDeadlineSeconds": 100}});
        assert!(check(&old, &command, "p").is_err());
        let longer = json!({"spec": {"containers": [{"name": "c", "image": "a", "command": ["x"]}],
            "tolerations": [{"key": "k"}], "activeDeadlineSeconds": 200}});
        assert!(check(&old, &longer, "p").is_err());
        let dropped = json!({"spec": {"containers": [{"name": "c", "image": "a", "command": ["x"]}],
            "activeDeadlineSeconds": 100}});
        assert!(check(&old, &dropped, "p").is_err());
        let ephemeral = json!({"spec": {"containers": [{"name": "c", "image": "a", "command": ["x"]}],
            "tolerations": [{"key": "k"}], "activeDeadlineSeconds": 100,
            "ephemeralContainers": [{"name": "e"}]}});
        assert!(check(&old, &ephemeral, "p").is_err());
    }
}
