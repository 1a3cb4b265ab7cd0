//! Strategic merge patch: a JSON merge patch in which lists of objects with a merge key (a
//! pod's `containers` by `name`, a container's `ports` by `containerPort`, ...) merge item by
//! item instead of being replaced, with the `$patch`, `$setElementOrder/` and
//! `$deleteFromPrimitiveList/` directives kubectl sends.

use serde_json::{Map, Value};

/// The merge key of list field `field` whose parent is at `path` (field names from the root;
/// array items add no name), or `None` for a list that is replaced whole.
pub fn merge_key(path: &[String], field: &str) -> Option<&'static str> {
    let parent = path.last().map(String::as_str).unwrap_or("");
    let in_container = path
        .iter()
        .any(|p| p == "containers" || p == "initContainers" || p == "ephemeralContainers");
    Some(match field {
        "containers" | "initContainers" | "ephemeralContainers" => "name",
        "env" | "volumes" | "imagePullSecrets" | "secrets" | "resourceClaims" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "hostAliases" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        "conditions" => "type",
        // Mutating- and ValidatingWebhookConfigurations' webhooks.
        "webhooks" if path.is_empty() => "name",
        "ownerReferences" => "uid",
        "ports" if in_container => "containerPort",
        "ports" if parent == "spec" => "port",
        _ => return None,
    })
}

/// Lists of scalars that merge as sets rather than being replaced.
fn is_merged_scalar_list(field: &str) -> bool {
    field == "finalizers"
}

/// Applies a strategic merge patch to `target`.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    merge_at(target, patch, &mut Vec::new());
}

fn merge_at(target: &mut Value, patch: &Value, path: &mut Vec<String>) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replaced = p.clone();
        replaced.remove("$patch");
        *target = Value::Object(replaced);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if k == "$patch" || k.starts_with("$setElementOrder/") || k == "$retainKeys" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(gone)) = (t.get_mut(field), v) {
                list.retain(|x| !gone.contains(x));
            }
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match v {
            Value::Object(inner)
                if inner.get("$patch").and_then(Value::as_str) == Some("delete") =>
            {
                t.remove(k);
            }
            Value::Object(_) => {
                path.push(k.clone());
                merge_at(t.entry(k.clone()).or_insert(Value::Null), v, path);
                path.pop();
            }
            Value::Array(items) => {
                let existing = t.entry(k.clone()).or_insert(Value::Null);
                match (merge_key(path, k), existing) {
                    (Some(mk), Value::Array(list)) => {
                        path.push(k.clone());
                        merge_list(list, items, mk, path);
                        path.pop();
                    }
                    (None, Value::Array(list)) if is_merged_scalar_list(k) => {
                        for item in items {
                            if !list.contains(item) {
                                list.push(item.clone());
                            }
                        }
                    }
                    (Some(_), slot) => {
                        *slot = Value::Array(
                            items.iter().filter(|i| !is_delete(i)).map(strip).collect(),
                        );
                    }
                    (None, slot) => *slot = v.clone(),
                }
            }
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
}

fn is_delete(item: &Value) -> bool {
    item.get("$patch").and_then(Value::as_str) == Some("delete")
}

/// An item without directives.
fn strip(item: &Value) -> Value {
    match item {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn merge_list(list: &mut Vec<Value>, items: &[Value], mk: &str, path: &mut Vec<String>) {
    for item in items {
        let key = item.get(mk);
        let pos = key.and_then(|k| list.iter().position(|e| e.get(mk) == Some(k)));
        match (pos, is_delete(item)) {
            (Some(i), true) => {
                list.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => merge_at(&mut list[i], item, path),
            (None, false) => list.push(strip(item)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name_and_ports_by_container_port() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80, "name": "http"}]},
            {"name": "side", "image": "busybox"}
        ]}}}});
        strategic_merge(
            &mut d,
            &json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}, {"name": "side"}],
                "containers": [
                    {"name": "web", "image": "nginx:2", "ports": [{"containerPort": 443}]},
                    {"name": "side", "$patch": "delete"}
                ]
            }}}}),
        );
        let c = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(c.as_array().map(Vec::len), Some(1));
        assert_eq!(c[0]["image"], "nginx:2");
        assert_eq!(c[0]["ports"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn maps_merge_lists_without_key_replace_and_directives_apply() {
        let mut d = json!({"metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x"]},
                           "spec": {"args": ["1", "2"], "ports": [{"port": 80}]}});
        strategic_merge(
            &mut d,
            &json!({"metadata": {"labels": {"a": null, "c": "3"}, "finalizers": ["y"]},
                    "spec": {"args": ["3"], "ports": [{"port": 443}]}}),
        );
        assert_eq!(d["metadata"]["labels"], json!({"b": "2", "c": "3"}));
        assert_eq!(d["metadata"]["finalizers"], json!(["x", "y"]));
        assert_eq!(d["spec"]["args"], json!(["3"]));
        assert_eq!(d["spec"]["ports"].as_array().map(Vec::len), Some(2));
        strategic_merge(
            &mut d,
            &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}}),
        );
        assert_eq!(d["metadata"]["finalizers"], json!(["y"]));
        strategic_merge(
            &mut d,
            &json!({"spec": {"$patch": "replace", "only": true}}),
        );
        assert_eq!(d["spec"], json!({"only": true}));
    }
}
