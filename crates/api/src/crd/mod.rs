//! Custom resources: what a CustomResourceDefinition serves (one [`Resource`] per served
//! version, each carrying its [`Custom`] description), the checks a definition must pass, and
//! its schema's validation, pruning and defaulting of custom objects.

pub mod cel;
pub mod definition;
pub mod jsonpath;
pub mod schema;
pub mod typecheck;

use serde_json::Value;

use crate::catalog::{Resource, Scope};

/// The finalizer that holds a definition until its objects are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// The verbs of a custom resource, in the order the apiextensions server lists them.
pub const VERBS: &[&str] = &[
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "create",
    "update",
    "watch",
];

/// The verbs of a custom resource whose definition is being deleted.
pub const TERMINATING_VERBS: &[&str] = &["delete", "deletecollection", "get", "list", "watch"];

/// What one served version of a custom resource adds to its catalog entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Custom {
    /// The definition's name (`<plural>.<group>`).
    pub definition: String,
    /// The lower-case singular name.
    pub singular: String,
    /// The kind of lists.
    pub list_kind: String,
    /// The version objects are stored in.
    pub storage_version: String,
    /// The version's `openAPIV3Schema`.
    pub schema: Option<Value>,
    /// The scale subresource's paths, when served.
    pub scale: Option<ScalePaths>,
    /// `additionalPrinterColumns`.
    pub columns: Vec<Column>,
    /// `selectableFields`' JSON paths (`.spec.color`).
    pub selectable_fields: Vec<String>,
    /// The warning sent with every request to a deprecated version.
    pub deprecation_warning: Option<String>,
    /// Whether the definition is being deleted (no object may be created).
    pub terminating: bool,
    /// Whether the schema sets defaults anywhere (applied on every read, as Kubernetes
    /// applies them when decoding from storage).
    pub defaults: bool,
}

/// Where the scale subresource reads and writes replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// One of `additionalPrinterColumns`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

/// The check of the replicas a scale subresource reads (`.spec.replicas: Invalid value: -1:
/// should be a non-negative integer`); absent replicas are fine.
pub fn scale_replicas(obj: &Value, path: &str) -> Vec<crate::Cause> {
    let Some(v) = jsonpath::select(obj, path).first().copied() else {
        return Vec::new();
    };
    let detail = match v.as_i64() {
        Some(n) if n < 0 => "should be a non-negative integer",
        Some(n) if n > i64::from(i32::MAX) => "should be less than or equal to 2147483647",
        Some(_) => return Vec::new(),
        None => return Vec::new(),
    };
    vec![crate::Cause::new(
        "FieldValueInvalid",
        path,
        format!("Invalid value: {v}: {detail}"),
    )]
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

fn leak_list(v: &Value) -> &'static [&'static str] {
    let list: Vec<&'static str> = v
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).map(leak).collect())
        .unwrap_or_default();
    Box::leak(list.into_boxed_slice())
}

fn text(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The resources a definition serves, one per served version, in the definition's order,
/// built from its accepted names. Empty until the names are accepted. The catalog entries
/// live as long as the process (the catalog hands out `&'static Resource`): a changed
/// definition costs its size once.
pub fn served(crd: &Value) -> Vec<Resource> {
    let names = &crd["status"]["acceptedNames"];
    let (Some(kind), Some(plural)) = (
        names["kind"].as_str().filter(|k| !k.is_empty()),
        names["plural"].as_str().filter(|p| !p.is_empty()),
    ) else {
        return Vec::new();
    };
    let group = text(crd, "/spec/group");
    let terminating = crd.pointer("/metadata/deletionTimestamp").is_some();
    let scope = match crd.pointer("/spec/scope").and_then(Value::as_str) {
        Some("Cluster") => Scope::Cluster,
        _ => Scope::Namespaced,
    };
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let storage_version = versions
        .iter()
        .find(|v| v["storage"] == true)
        .map(|v| text(v, "/name"))
        .unwrap_or_default();
    let singular = match names["singular"].as_str() {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => kind.to_ascii_lowercase(),
    };
    let list_kind = match names["listKind"].as_str() {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => format!("{kind}List"),
    };
    versions
        .iter()
        .filter(|v| v["served"] == true)
        .map(|v| {
            let subs = &v["subresources"];
            let mut subresources: Vec<&'static str> = Vec::new();
            if subs.get("status").is_some() {
                subresources.push("status");
            }
            let scale = subs.get("scale").map(|s| ScalePaths {
                spec_replicas: text(s, "/specReplicasPath"),
                status_replicas: text(s, "/statusReplicasPath"),
                label_selector: s["labelSelectorPath"].as_str().map(str::to_string),
            });
            if scale.is_some() {
                subresources.push("scale");
            }
            let columns = v["additionalPrinterColumns"]
                .as_array()
                .map(|cols| {
                    cols.iter()
                        .map(|c| Column {
                            name: text(c, "/name"),
                            type_: text(c, "/type"),
                            format: text(c, "/format"),
                            description: text(c, "/description"),
                            priority: c["priority"].as_i64().unwrap_or(0),
                            json_path: text(c, "/jsonPath"),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let selectable_fields = v["selectableFields"]
                .as_array()
                .map(|f| f.iter().map(|f| text(f, "/jsonPath")).collect())
                .unwrap_or_default();
            let deprecation_warning = (v["deprecated"] == true).then(|| {
                v["deprecationWarning"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| {
                        let mut w = format!("{group}/{} {kind} is deprecated", text(v, "/name"));
                        // Kubernetes points to the preferred version that is not deprecated.
                        let mut current: Vec<&str> = versions
                            .iter()
                            .filter(|o| o["served"] == true && o["deprecated"] != true)
                            .filter_map(|o| o["name"].as_str())
                            .collect();
                        current.sort_by_key(|v| crate::catalog::version_priority(v));
                        if let Some(best) = current.first() {
                            w.push_str(&format!("; use {group}/{best} {kind}"));
                        }
                        w
                    })
            });
            let schema = v.pointer("/schema/openAPIV3Schema").cloned();
            let defaults = schema.as_ref().is_some_and(schema::has_defaults);
            let custom = Custom {
                definition: text(crd, "/metadata/name"),
                singular: singular.clone(),
                list_kind: list_kind.clone(),
                storage_version: storage_version.clone(),
                schema,
                scale,
                columns,
                selectable_fields,
                deprecation_warning,
                terminating,
                defaults,
            };
            Resource {
                group: leak(&group),
                version: leak(&text(v, "/name")),
                kind: leak(kind),
                plural: leak(plural),
                scope,
                short_names: leak_list(&names["shortNames"]),
                categories: leak_list(&names["categories"]),
                subresources: Box::leak(subresources.into_boxed_slice()),
                verbs: if terminating {
                    TERMINATING_VERBS
                } else {
                    VERBS
                },
                storage: leak(&format!("{group}/{plural}")),
                custom: Some(Box::leak(Box::new(custom))),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_definition_serves_its_served_versions_by_accepted_names() {
        let mut crd = json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Cluster",
                "names": {"plural": "widgets", "kind": "Widget"},
                "versions": [
                    {"name": "v1", "served": true, "storage": true,
                     "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                     "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}]},
                    {"name": "v2", "served": false, "storage": false}]},
        });
        assert!(served(&crd).is_empty(), "names not accepted yet");
        crd["status"] = json!({"acceptedNames": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"], "categories": ["all"]}});
        let rs = served(&crd);
        assert_eq!(rs.len(), 1);
        let r = &rs[0];
        assert_eq!(
            (r.group, r.version, r.kind, r.plural),
            ("example.com", "v1", "Widget", "widgets")
        );
        assert_eq!(r.scope, Scope::Cluster);
        assert_eq!(r.short_names, &["wd"]);
        assert_eq!(r.subresources, &["status", "scale"]);
        assert_eq!(r.storage, "example.com/widgets");
        let c = r.custom.expect("custom");
        assert_eq!(c.storage_version, "v1");
        assert_eq!(c.columns[0].json_path, ".spec.size");
        assert_eq!(c.list_kind, "WidgetList");
    }
}
