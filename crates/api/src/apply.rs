//! Server-side apply and field ownership (`metadata.managedFields`), the way Kubernetes'
//! structured merge works:
//!
//! - every write records which fields its manager set (`FieldsV1`, under `managedFields`);
//! - an apply sets the fields of its configuration, refuses (409) to change a field another
//!   manager owns with a different value unless forced, and removes fields it applied before
//!   and no longer applies, when nobody else owns them.
//!
//! Lists with a merge key (containers by name, ports by port, ...) are associative: their items
//! are owned one by one. Other lists are atomic.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::strategic::merge_key;
use crate::{ApiError, Cause};

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// An object field.
    Field(String),
    /// An item of an associative list, by its key fields (as a JSON object).
    Key(String),
}

/// A path to a field.
pub type FieldPath = Vec<Step>;
/// A set of owned fields.
pub type FieldSet = BTreeSet<FieldPath>;

/// Metadata fields nobody owns.
const UNOWNED_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

fn field_names(path: &[Step]) -> Vec<String> {
    path.iter()
        .filter_map(|s| match s {
            Step::Field(f) => Some(f.clone()),
            Step::Key(_) => None,
        })
        .collect()
}

fn key_of(item: &Value, keys: &[&str]) -> Option<String> {
    item_key(item, keys).map(|k| k.to_string())
}

/// The keys of an associative list under server-side apply (its `x-kubernetes-list-map-keys`):
/// ports are keyed by number and protocol, other lists by their merge key.
fn list_keys(path: &[String], field: &str) -> Option<&'static [&'static str]> {
    Some(match merge_key(path, field)? {
        "port" => &["port", "protocol"],
        "containerPort" => &["containerPort", "protocol"],
        "name" => &["name"],
        "mountPath" => &["mountPath"],
        "devicePath" => &["devicePath"],
        "ip" => &["ip"],
        "topologyKey" => &["topologyKey"],
        "type" => &["type"],
        "uid" => &["uid"],
        _ => return None,
    })
}

/// An item's key, as managedFields write it (`{"port":53,"protocol":"UDP"}`); a missing
/// protocol is TCP, its default.
fn item_key(item: &Value, keys: &[&str]) -> Option<Value> {
    let mut key = Map::new();
    for k in keys {
        let v = match item.get(*k) {
            Some(v) => v.clone(),
            None if *k == "protocol" => json!("TCP"),
            None => return None,
        };
        key.insert(k.to_string(), v);
    }
    Some(Value::Object(key))
}

/// Whether a list item has the key `key` (a JSON object of key fields).
fn has_key(item: &Value, key: &Value) -> bool {
    key.as_object().is_some_and(|fields| {
        !fields.is_empty()
            && fields.iter().all(|(f, v)| match item.get(f) {
                Some(iv) => iv == v,
                None => f == "protocol" && v == "TCP",
            })
    })
}

/// The fields an object (or applied configuration) sets.
pub fn fieldset(obj: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    if let Value::Object(m) = obj {
        for (k, v) in m {
            match k.as_str() {
                "apiVersion" | "kind" | "status" => {}
                "metadata" => {
                    if let Value::Object(meta) = v {
                        for (mk, mv) in meta {
                            if !UNOWNED_META.contains(&mk.as_str()) {
                                walk(
                                    mv,
                                    vec![Step::Field(k.clone()), Step::Field(mk.clone())],
                                    &mut out,
                                );
                            }
                        }
                    }
                }
                _ => walk(v, vec![Step::Field(k.clone())], &mut out),
            }
        }
    }
    out
}

fn walk(v: &Value, path: FieldPath, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                let mut p = path.clone();
                p.push(Step::Field(k.clone()));
                walk(child, p, out);
            }
        }
        Value::Array(items) => {
            let names = field_names(&path);
            let (parent, field) = names.split_at(names.len().saturating_sub(1));
            let keys = field.first().and_then(|f| list_keys(parent, f));
            match keys {
                Some(keys) if items.iter().all(|i| item_key(i, keys).is_some()) => {
                    for item in items {
                        let Some(key) = key_of(item, keys) else {
                            continue;
                        };
                        let mut p = path.clone();
                        p.push(Step::Key(key));
                        out.insert(p.clone());
                        walk(item, p, out);
                    }
                }
                _ => {
                    out.insert(path);
                }
            }
        }
        _ => {
            out.insert(path);
        }
    }
}

/// The value at a path, if present.
pub fn value_at<'a>(obj: &'a Value, path: &[Step]) -> Option<&'a Value> {
    let mut cur = obj;
    for s in path {
        cur = match s {
            Step::Field(f) => cur.get(f)?,
            Step::Key(k) => {
                let key: Value = serde_json::from_str(k).ok()?;
                cur.as_array()?.iter().find(|i| has_key(i, &key))?
            }
        };
    }
    Some(cur)
}

/// Removes the field at a path, if present.
fn remove_at(obj: &mut Value, path: &[Step]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for s in parent {
        let next = match s {
            Step::Field(f) => cur.get_mut(f),
            Step::Key(k) => {
                let Ok(key) = serde_json::from_str::<Value>(k) else {
                    return;
                };
                cur.as_array_mut()
                    .and_then(|a| a.iter_mut().find(|i| has_key(i, &key)))
            }
        };
        let Some(next) = next else { return };
        cur = next;
    }
    match last {
        Step::Field(f) => {
            if let Value::Object(m) = cur {
                m.remove(f);
            }
        }
        Step::Key(k) => {
            let Ok(key) = serde_json::from_str::<Value>(k) else {
                return;
            };
            if let Value::Array(a) = cur {
                a.retain(|i| !has_key(i, &key));
            }
        }
    }
}

/// `.spec.template.spec.containers[name="web"].image`, as Kubernetes prints field paths.
pub fn path_string(path: &[Step]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            Step::Field(f) => {
                s.push('.');
                s.push_str(f);
            }
            Step::Key(k) => {
                let key: Value = serde_json::from_str(k).unwrap_or(Value::Null);
                if let Some(fields) = key.as_object() {
                    let parts: Vec<String> =
                        fields.iter().map(|(kf, kv)| format!("{kf}={kv}")).collect();
                    s.push_str(&format!("[{}]", parts.join(",")));
                }
            }
        }
    }
    s
}

/// FieldsV1 JSON of a set.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for (i, step) in path.iter().enumerate() {
            let key = match step {
                Step::Field(f) => format!("f:{f}"),
                Step::Key(k) => format!("k:{k}"),
            };
            let entry = cur.entry(key).or_insert_with(|| json!({}));
            let Value::Object(next) = entry else { break };
            if i + 1 == path.len() && matches!(step, Step::Key(_)) {
                next.insert(".".into(), json!({}));
            }
            cur = next;
        }
    }
    Value::Object(root)
}

/// The set a FieldsV1 JSON describes.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn go(v: &Value, path: FieldPath, out: &mut FieldSet) {
        let Value::Object(m) = v else { return };
        if (m.is_empty() || m.contains_key(".")) && !path.is_empty() {
            out.insert(path.clone());
        }
        for (k, child) in m {
            let step = if let Some(f) = k.strip_prefix("f:") {
                Step::Field(f.to_string())
            } else if let Some(key) = k.strip_prefix("k:") {
                Step::Key(key.to_string())
            } else {
                continue;
            };
            let mut p = path.clone();
            p.push(step);
            go(child, p, out);
        }
    }
    let mut out = FieldSet::new();
    go(v, Vec::new(), &mut out);
    out
}

/// One `managedFields` entry.
#[derive(Clone, Debug)]
pub struct Manager {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub fields: FieldSet,
}

/// The managers recorded on an object.
pub fn managers(obj: &Value) -> Vec<Manager> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|e| Manager {
                    manager: e["manager"].as_str().unwrap_or("").to_string(),
                    operation: e["operation"].as_str().unwrap_or("Update").to_string(),
                    api_version: e["apiVersion"].as_str().unwrap_or("").to_string(),
                    time: e["time"].as_str().unwrap_or("").to_string(),
                    fields: from_fields_v1(&e["fieldsV1"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Writes managers back into `metadata.managedFields` (dropping empty ones).
pub fn set_managers(obj: &mut Value, managers: &[Manager]) {
    let entries: Vec<Value> = managers
        .iter()
        .filter(|m| !m.fields.is_empty())
        .map(|m| {
            json!({
                "manager": m.manager,
                "operation": m.operation,
                "apiVersion": m.api_version,
                "time": m.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&m.fields),
            })
        })
        .collect();
    crate::meta::metadata_mut(obj).insert("managedFields".into(), Value::Array(entries));
}

/// Merges an applied configuration into `live`: objects merge, associative lists merge by key,
/// everything else is replaced.
fn merge(live: &mut Value, applied: &Value, names: &mut Vec<String>) {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            for (k, v) in a {
                let slot = l.entry(k.clone()).or_insert(Value::Null);
                match (slot, v) {
                    (slot @ Value::Object(_), Value::Object(_)) => {
                        names.push(k.clone());
                        merge(slot, v, names);
                        names.pop();
                    }
                    (Value::Array(items), Value::Array(new_items))
                        if list_keys(names, k).is_some() =>
                    {
                        let keys = list_keys(names, k).unwrap_or(&["name"]);
                        names.push(k.clone());
                        for ni in new_items {
                            let key = item_key(ni, keys);
                            match items.iter_mut().find(|i| {
                                key.as_ref()
                                    .is_some_and(|key| item_key(i, keys).as_ref() == Some(key))
                            }) {
                                Some(existing) => merge(existing, ni, names),
                                None => items.push(ni.clone()),
                            }
                        }
                        names.pop();
                    }
                    (slot, v) => *slot = v.clone(),
                }
            }
        }
        (live, applied) => *live = applied.clone(),
    }
}

/// Merges an apply configuration into `obj` without recording ownership, as a mutating
/// admission policy's `ApplyConfiguration` mutation does: objects merge, lists with a merge
/// key merge item by item, other values are replaced.
pub fn merge_configuration(obj: &mut Value, config: &Value) -> Result<(), String> {
    if !obj.is_object() || !config.is_object() {
        return Err("an apply configuration and its object must be objects".into());
    }
    let mut atomic = Vec::new();
    atomic_lists(config, &mut Vec::new(), "", &mut atomic);
    if !atomic.is_empty() {
        return Err(format!(
            "invalid ApplyConfiguration: may not mutate atomic arrays, maps or structs: {}",
            atomic.join(", ")
        ));
    }
    merge(obj, config, &mut Vec::new());
    Ok(())
}

/// The paths (`.spec.containers[name="app"].args`) of the lists in `config` that have no merge
/// key: atomic, replaced whole by a merge, so an apply configuration may not set them.
fn atomic_lists(config: &Value, names: &mut Vec<String>, at: &str, out: &mut Vec<String>) {
    let Value::Object(fields) = config else {
        return;
    };
    for (k, v) in fields {
        let path = format!("{at}.{k}");
        match v {
            Value::Object(_) => {
                names.push(k.clone());
                atomic_lists(v, names, &path, out);
                names.pop();
            }
            Value::Array(items) => match merge_key(names, k) {
                Some(mk) => {
                    names.push(k.clone());
                    for item in items {
                        let key = item.get(mk).map(Value::to_string).unwrap_or_default();
                        atomic_lists(item, names, &format!("{path}[{mk}={key}]"), out);
                    }
                    names.pop();
                }
                None => out.push(path),
            },
            _ => {}
        }
    }
}

/// What an apply produces.
pub struct Applied {
    pub object: Value,
}

/// Server-side apply of `config` by `manager` onto `live` (or onto nothing, for a create).
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    api_version: &str,
    force: bool,
    now: &str,
) -> Result<Applied, ApiError> {
    let mut config = config.clone();
    if let Value::Object(m) = &mut config {
        m.remove("status");
    }
    let new_set = fieldset(&config);
    let mut object = live.cloned().unwrap_or_else(|| json!({}));
    let mut mgrs = live.map(managers).unwrap_or_default();
    let prev: FieldSet = mgrs
        .iter()
        .filter(|m| m.manager == manager && m.operation == "Apply")
        .flat_map(|m| m.fields.iter().cloned())
        .collect();

    // Conflicts: a field another manager owns, which this apply would change.
    let mut conflicts = Vec::new();
    for m in mgrs
        .iter()
        .filter(|m| !(m.manager == manager && m.operation == "Apply"))
    {
        for p in m.fields.intersection(&new_set) {
            if matches!(p.last(), Some(Step::Key(_))) {
                continue; // owning a list item is not owning its fields
            }
            if value_at(&object, p) != value_at(&config, p) {
                conflicts.push((m.manager.clone(), m.api_version.clone(), p.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        let causes: Vec<Cause> = conflicts
            .iter()
            .map(|(mgr, av, p)| {
                Cause::new(
                    "FieldManagerConflict",
                    &path_string(p),
                    format!("conflict with \"{mgr}\" using {av}"),
                )
            })
            .collect();
        let list = conflicts
            .iter()
            .map(|(mgr, av, p)| format!("- {}: conflict with \"{mgr}\" using {av}", path_string(p)))
            .collect::<Vec<_>>()
            .join("\n");
        let mut e = ApiError::new(
            409,
            "Conflict",
            format!(
                "Apply failed with {} conflict{}:\n{list}",
                conflicts.len(),
                if conflicts.len() == 1 { "" } else { "s" }
            ),
        );
        e.details = Some(Box::new(crate::Details {
            causes,
            ..Default::default()
        }));
        return Err(e);
    }
    // Forced: the others lose what they conflicted on.
    for (mgr, _, p) in &conflicts {
        for m in mgrs.iter_mut().filter(|m| &m.manager == mgr) {
            m.fields.remove(p);
        }
    }

    merge(&mut object, &config, &mut Vec::new());

    // Fields this manager applied before and no longer applies go, unless someone else owns them.
    // Shortest first: a list item goes whole before its fields (its key among them) would.
    let mut dropped: Vec<&FieldPath> = prev.difference(&new_set).collect();
    dropped.sort_by_key(|p| p.len());
    for p in dropped {
        let owned_elsewhere = mgrs
            .iter()
            .filter(|m| !(m.manager == manager && m.operation == "Apply"))
            .any(|m| m.fields.iter().any(|f| f.starts_with(p)));
        if !owned_elsewhere {
            remove_at(&mut object, p);
        }
    }

    mgrs.retain(|m| !(m.manager == manager && m.operation == "Apply"));
    mgrs.push(Manager {
        manager: manager.to_string(),
        operation: "Apply".into(),
        api_version: api_version.to_string(),
        time: now.to_string(),
        fields: new_set,
    });
    set_managers(&mut object, &mgrs);
    Ok(Applied { object })
}

/// Records an ordinary write (create, update, patch) by `manager`: it owns the fields it
/// changed, which the other managers lose.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    now: &str,
) {
    let old_set = old.map(fieldset).unwrap_or_default();
    let new_set = fieldset(new);
    let changed: FieldSet = new_set
        .iter()
        .filter(|p| old.and_then(|o| value_at(o, p)) != value_at(new, p))
        .cloned()
        .collect();
    let removed: FieldSet = old_set.difference(&new_set).cloned().collect();
    let mut mgrs = old.map(managers).unwrap_or_default();
    if changed.is_empty() && removed.is_empty() {
        set_managers(new, &mgrs);
        return;
    }
    for m in mgrs.iter_mut() {
        m.fields
            .retain(|p| !changed.contains(p) && !removed.iter().any(|r| p.starts_with(r)));
    }
    match mgrs
        .iter_mut()
        .find(|m| m.manager == manager && m.operation == "Update")
    {
        Some(m) => {
            m.fields.extend(changed);
            m.time = now.to_string();
        }
        None => mgrs.push(Manager {
            manager: manager.to_string(),
            operation: "Update".into(),
            api_version: api_version.to_string(),
            time: now.to_string(),
            fields: changed,
        }),
    }
    set_managers(new, &mgrs);
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "2026-01-01T00:00:00Z";

    fn deploy(replicas: i64, image: &str, extra_label: bool) -> Value {
        let mut labels = json!({"app": "web"});
        if extra_label {
            labels["extra"] = json!("yes");
        }
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": labels},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "web", "image": image}]}}}
        })
    }

    #[test]
    fn fieldsets_key_associative_lists_and_round_trip() {
        let set = fieldset(&deploy(1, "nginx", false));
        let fv1 = to_fields_v1(&set);
        assert!(fv1["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"]["f:image"].is_object());
        assert!(fv1["f:metadata"]["f:labels"]["f:app"].is_object());
        assert!(fv1["f:metadata"].get("f:name").is_none());
        assert_eq!(from_fields_v1(&fv1), set);
    }

    #[test]
    fn apply_removes_what_it_stopped_applying() {
        let first =
            apply(None, &deploy(1, "nginx", true), "mgr", "apps/v1", false, T).expect("apply");
        let second = apply(
            Some(&first.object),
            &deploy(1, "nginx", false),
            "mgr",
            "apps/v1",
            false,
            T,
        )
        .expect("apply");
        assert!(second.object.pointer("/metadata/labels/extra").is_none());
        assert_eq!(second.object["metadata"]["labels"]["app"], "web");
    }

    #[test]
    fn apply_removes_list_items_it_stopped_applying() {
        let mut two = deploy(1, "nginx", false);
        two["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .expect("containers")
            .push(json!({"name": "side", "image": "busybox"}));
        let first = apply(None, &two, "mgr", "apps/v1", false, T).expect("apply");
        let second = apply(
            Some(&first.object),
            &deploy(1, "nginx", false),
            "mgr",
            "apps/v1",
            false,
            T,
        )
        .expect("apply");
        assert_eq!(
            second.object["spec"]["template"]["spec"]["containers"],
            json!([{"name": "web", "image": "nginx"}])
        );
    }

    /// Service ports are keyed by port and protocol (53/UDP and 53/TCP are two items), as
    /// their x-kubernetes-list-map-keys say; re-applying changes them in place.
    #[test]
    fn ports_are_keyed_by_number_and_protocol() {
        let svc = |target: u16| {
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dns"},
                   "spec": {"ports": [
                       {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": target},
                       {"name": "dns-tcp", "port": 53, "targetPort": target}]}})
        };
        let first = apply(None, &svc(1000), "m", "v1", false, T).expect("apply");
        let second = apply(Some(&first.object), &svc(2000), "m", "v1", false, T).expect("apply");
        assert_eq!(
            second.object["spec"]["ports"],
            json!([{"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 2000},
                   {"name": "dns-tcp", "port": 53, "targetPort": 2000}])
        );
        let fields = to_fields_v1(&fieldset(&svc(1)));
        assert!(
            fields["f:spec"]["f:ports"]
                .get(r#"k:{"port":53,"protocol":"UDP"}"#)
                .is_some(),
            "{fields}"
        );
        assert!(
            fields["f:spec"]["f:ports"]
                .get(r#"k:{"port":53,"protocol":"TCP"}"#)
                .is_some(),
            "{fields}"
        );
    }

    #[test]
    fn conflicts_with_other_managers_unless_forced() {
        let first = apply(
            None,
            &deploy(1, "nginx", false),
            "alice",
            "apps/v1",
            false,
            T,
        )
        .expect("apply");
        let err = apply(
            Some(&first.object),
            &deploy(3, "nginx", false),
            "bob",
            "apps/v1",
            false,
            T,
        )
        .err()
        .expect("a conflict");
        assert_eq!(err.code, 409);
        assert!(
            err.message
                .contains(".spec.replicas: conflict with \"alice\""),
            "{}",
            err.message
        );
        // Same value: shared ownership, no conflict.
        let shared = apply(
            Some(&first.object),
            &deploy(1, "nginx", false),
            "bob",
            "apps/v1",
            false,
            T,
        )
        .expect("no conflict on equal values");
        assert_eq!(managers(&shared.object).len(), 2);
        let forced = apply(
            Some(&first.object),
            &deploy(3, "nginx", false),
            "bob",
            "apps/v1",
            true,
            T,
        )
        .expect("forced");
        assert_eq!(forced.object["spec"]["replicas"], 3);
        let alice = managers(&forced.object)
            .into_iter()
            .find(|m| m.manager == "alice")
            .expect("alice");
        assert!(!alice.fields.contains(&vec![
            Step::Field("spec".into()),
            Step::Field("replicas".into())
        ]));
    }

    #[test]
    fn updates_take_ownership_of_what_they_change() {
        let first = apply(
            None,
            &deploy(1, "nginx", false),
            "alice",
            "apps/v1",
            false,
            T,
        )
        .expect("apply");
        let mut scaled = first.object.clone();
        scaled["spec"]["replicas"] = json!(5);
        record_update(Some(&first.object), &mut scaled, "hpa", "apps/v1", T);
        let m = managers(&scaled);
        let hpa = m.iter().find(|m| m.manager == "hpa").expect("hpa");
        assert!(hpa.fields.contains(&vec![
            Step::Field("spec".into()),
            Step::Field("replicas".into())
        ]));
        // alice re-applying 1 replica now conflicts with hpa.
        let err = apply(
            Some(&scaled),
            &deploy(1, "nginx", false),
            "alice",
            "apps/v1",
            false,
            T,
        )
        .err();
        assert!(err.is_some_and(|e| e.message.contains("conflict with \"hpa\"")));
    }
}
