//! A CustomResourceDefinition's own defaults and checks, as the apiextensions server applies
//! them when a definition is created or updated.

use serde_json::{Value, json};

use super::jsonpath;
use crate::Cause;
use crate::validation::field::{Errors, Path, items, text};
use crate::validation::{is_dns1035_label, is_dns1123_subdomain};

/// Defaults of a definition (apiextensions/v1's SetDefaults): singular and list kind from
/// the kind, conversion `None`.
pub fn defaults(crd: &mut Value) {
    let Some(spec) = crd.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    let kind = spec
        .pointer("/names/kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(names) = spec.get_mut("names").filter(|n| n.is_object()) {
        if names.get("singular").is_none_or(|s| s.as_str() == Some("")) && !kind.is_empty() {
            names["singular"] = json!(kind.to_ascii_lowercase());
        }
        if names.get("listKind").is_none_or(|s| s.as_str() == Some("")) && !kind.is_empty() {
            names["listKind"] = json!(format!("{kind}List"));
        }
    }
    if spec.get("conversion").is_none() {
        spec["conversion"] = json!({"strategy": "None"});
    }
}

const DNS1035: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

/// The internal versions as Go's encoder writes them in a `spec.versions` error: the
/// internal type has no JSON tags, so its fields are written by their Go names, in order;
/// what is the same in every version sits at the top of the spec, not here.
fn go_versions(versions: &[Value], hoisted: &[&str]) -> String {
    let items: Vec<String> = versions
        .iter()
        .map(|v| {
            let per = |key: &str| {
                if hoisted.contains(&key) {
                    "null".to_string()
                } else {
                    v.get(key).map(Value::to_string).unwrap_or_else(|| "null".into())
                }
            };
            format!(
                "{{\"Name\":{},\"Served\":{},\"Storage\":{},\"Deprecated\":{},\"DeprecationWarning\":{},\"Schema\":{},\"Subresources\":{},\"AdditionalPrinterColumns\":{},\"SelectableFields\":{}}}",
                json!(text(v, "name")),
                v["served"] == true,
                v["storage"] == true,
                v["deprecated"] == true,
                v.get("deprecationWarning").map(Value::to_string).unwrap_or_else(|| "null".into()),
                per("schema"),
                per("subresources"),
                per("additionalPrinterColumns"),
                per("selectableFields"),
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// Whether every version has the same `key` (then the apiextensions server checks it once,
/// at the top of the spec, and reports it there).
fn same_everywhere(versions: &[Value], key: &str) -> bool {
    versions.iter().all(|v| v.get(key) == versions[0].get(key)) && versions[0].get(key).is_some()
}

/// The checks of a whole definition, in the order and with the paths kube-apiserver reports.
pub fn validate(crd: &Value) -> Vec<Cause> {
    let mut errs = Errors::default();
    let spec = &crd["spec"];
    let at = Path::new("spec");
    let group = text(spec, "group");
    let plural = spec
        .pointer("/names/plural")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !name.is_empty() && name != format!("{plural}.{group}") {
        errs.invalid(
            &Path::new("metadata").child("name"),
            &json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        );
    }
    if group.is_empty() {
        errs.required(&at.child("group"), "");
    } else if !is_dns1123_subdomain(group) {
        errs.invalid(
            &at.child("group"),
            &json!(group),
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        );
    } else if !group.contains('.') {
        errs.invalid(
            &at.child("group"),
            &json!(group),
            "should be a domain with at least one dot",
        );
    }
    match spec.get("scope").and_then(Value::as_str) {
        None | Some("") => errs.required(&at.child("scope"), ""),
        Some("Cluster" | "Namespaced") => {}
        Some(s) => errs.not_supported(&at.child("scope"), &json!(s), &["Cluster", "Namespaced"]),
    }
    let versions = items(spec, "versions");
    let hoisted: Vec<&str> = [
        "schema",
        "subresources",
        "additionalPrinterColumns",
        "selectableFields",
    ]
    .into_iter()
    .filter(|k| !versions.is_empty() && same_everywhere(versions, k))
    .collect();
    for (i, v) in versions.iter().enumerate() {
        if v.pointer("/schema/openAPIV3Schema").is_none() {
            errs.required(
                &at.child("versions")
                    .index(i)
                    .child("schema")
                    .child("openAPIV3Schema"),
                "",
            );
        }
    }
    let mut seen = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        let vname = text(v, "name");
        if !is_dns1035_label(vname) {
            errs.invalid(
                &at.child("versions").index(i).child("name"),
                &json!(vname),
                DNS1035,
            );
        }
        if seen.contains(&vname) {
            errs.invalid_shown(
                &at.child("versions"),
                &go_versions(versions, &hoisted),
                "must contain unique version names",
            );
        }
        seen.push(vname);
    }
    if versions.iter().filter(|v| v["storage"] == true).count() != 1 {
        let shown = if spec.get("versions").is_some_and(Value::is_array) {
            go_versions(versions, &hoisted)
        } else {
            "null".into()
        };
        errs.invalid_shown(
            &at.child("versions"),
            &shown,
            "must have exactly one version marked as storage version",
        );
    }
    names(&spec["names"], &at.child("names"), &mut errs);
    for (i, v) in versions.iter().enumerate() {
        let here = at.child("versions").index(i);
        let place = |key: &str| {
            if hoisted.contains(&key) {
                at.clone()
            } else {
                here.clone()
            }
        };
        if let Some(s) = v.pointer("/schema/openAPIV3Schema")
            && (i == 0 || !hoisted.contains(&"schema"))
        {
            let p = if hoisted.contains(&"schema") {
                at.child("validation")
            } else {
                here.child("schema")
            };
            structural(s, &p.child("openAPIV3Schema"), true, &mut errs);
        }
        if let Some(scale) = v.pointer("/subresources/scale")
            && (i == 0 || !hoisted.contains(&"subresources"))
        {
            let sp = place("subresources").child("subresources");
            for (key, under, what) in [
                (
                    "specReplicasPath",
                    ".spec.",
                    "should be a json path under .spec",
                ),
                (
                    "statusReplicasPath",
                    ".status.",
                    "should be a json path under .status",
                ),
            ] {
                let path = text(scale, key);
                if path.is_empty() {
                    errs.required(&sp.child(&format!("scale.{key}")), "");
                } else if !path.starts_with(under) || !jsonpath::is_field_path(path) {
                    errs.invalid(&sp.child(&format!("scale.{key}")), &json!(path), what);
                }
            }
            if let Some(path) = scale.get("labelSelectorPath").and_then(Value::as_str)
                && (!(path.starts_with(".spec.") || path.starts_with(".status."))
                    || !jsonpath::is_field_path(path))
            {
                errs.invalid(
                    &sp.child("scale.labelSelectorPath"),
                    &json!(path),
                    "should be a json path under either .spec or .status",
                );
            }
        }
        if i > 0 && hoisted.contains(&"additionalPrinterColumns") {
            continue;
        }
        for (j, c) in items(v, "additionalPrinterColumns").iter().enumerate() {
            let cp = place("additionalPrinterColumns")
                .child("additionalPrinterColumns")
                .index(j);
            if text(c, "name").is_empty() {
                errs.required(&cp.child("name"), "");
            }
            const TYPES: &str = "must be one of boolean,date,integer,number,string";
            match c.get("type").and_then(Value::as_str) {
                None | Some("") => errs.required(&cp.child("type"), TYPES),
                Some(t) if !["integer", "number", "string", "boolean", "date"].contains(&t) => {
                    errs.invalid(&cp.child("type"), &json!(t), TYPES)
                }
                _ => {}
            }
            if let Some(f) = c.get("format").and_then(Value::as_str)
                && !f.is_empty()
                && ![
                    "byte",
                    "date",
                    "date-time",
                    "double",
                    "float",
                    "int32",
                    "int64",
                    "password",
                ]
                .contains(&f)
            {
                errs.invalid(
                    &cp.child("format"),
                    &json!(f),
                    "must be one of byte,date,date-time,double,float,int32,int64,password",
                );
            }
            let path = text(c, "jsonPath");
            if path.is_empty() {
                errs.required(&cp.child("JSONPath"), "");
            } else if !path.starts_with('.') {
                errs.invalid(
                    &cp.child("JSONPath"),
                    &json!(path),
                    "must be a simple json path starting with .",
                );
            }
        }
    }
    if let Some(strategy) = spec.pointer("/conversion/strategy").and_then(Value::as_str)
        && !matches!(strategy, "None" | "Webhook")
    {
        errs.not_supported(
            &at.child("conversion").child("strategy"),
            &json!(strategy),
            &["None", "Webhook"],
        );
    }
    errs.0
}

fn names(n: &Value, at: &Path, errs: &mut Errors) {
    for key in ["plural", "singular", "kind", "listKind"] {
        if text(n, key).is_empty() {
            errs.required(&at.child(key), "");
        }
    }
    for key in ["plural", "singular"] {
        let v = text(n, key);
        if !v.is_empty() && !is_dns1035_label(v) {
            errs.invalid(&at.child(key), &json!(v), DNS1035);
        }
    }
    for (i, s) in items(n, "shortNames").iter().enumerate() {
        if !s.as_str().is_some_and(is_dns1035_label) {
            errs.invalid(&at.child("shortNames").index(i), s, DNS1035);
        }
    }
    let kind = text(n, "kind");
    let list_kind = text(n, "listKind");
    for (key, v) in [("kind", kind), ("listKind", list_kind)] {
        if !v.is_empty() && !is_dns1035_label(&v.to_ascii_lowercase()) {
            errs.invalid(
                &at.child(key),
                &json!(v),
                &format!("may have mixed case, but should otherwise match: {DNS1035}"),
            );
        }
    }
    if !list_kind.is_empty() && list_kind == kind {
        errs.invalid(
            &at.child("listKind"),
            &json!(list_kind),
            "kind and listKind may not be the same",
        );
    }
    for (i, s) in items(n, "categories").iter().enumerate() {
        if !s.as_str().is_some_and(is_dns1035_label) {
            errs.invalid(&at.child("categories").index(i), s, DNS1035);
        }
    }
}

/// The structural schema rules: every node has a type (unless it is int-or-string or
/// preserves unknown fields), the root is an object, arrays have items, patterns compile.
fn structural(s: &Value, at: &Path, root: bool, errs: &mut Errors) {
    structural_node(s, at, if root { Place::Root } else { Place::Field }, errs);
}

#[derive(Clone, Copy, PartialEq)]
enum Place {
    Root,
    Field,
    Item,
}

fn structural_node(s: &Value, at: &Path, place: Place, errs: &mut Errors) {
    let free = s["x-kubernetes-int-or-string"] == true
        || s["x-kubernetes-preserve-unknown-fields"] == true;
    match (s.get("type").and_then(Value::as_str), place) {
        (None | Some(""), Place::Root) => {
            errs.required(&at.child("type"), "must not be empty at the root")
        }
        (None | Some(""), Place::Field) if !free => errs.required(
            &at.child("type"),
            "must not be empty for specified object fields",
        ),
        (None | Some(""), Place::Item) if !free => errs.required(
            &at.child("type"),
            "must not be empty for specified array items",
        ),
        (Some(t), Place::Root) if t != "object" => {
            errs.invalid(&at.child("type"), &json!(t), "must be object at the root")
        }
        (Some(t), _)
            if ![
                "object", "array", "string", "integer", "number", "boolean", "",
            ]
            .contains(&t) =>
        {
            errs.not_supported(
                &at.child("type"),
                &json!(t),
                &["array", "boolean", "integer", "number", "object", "string"],
            )
        }
        _ => {}
    }
    if let Some(p) = s.get("pattern").and_then(Value::as_str)
        && let Err(e) = regex::Regex::new(p)
    {
        errs.invalid(
            &at.child("pattern"),
            &json!(p),
            &format!("must be a valid regular expression, but isn't: {e}"),
        );
    }
    if s["type"] == "array" && s.get("items").is_none() {
        errs.required(&at.child("items"), "must be specified");
    }
    super::cel::check_rules(s, at, errs);
    if let Some(Value::Object(props)) = s.get("properties") {
        for (k, child) in props {
            if place == Place::Root && k == "metadata" {
                continue;
            }
            structural_node(child, &at.child("properties").key(k), Place::Field, errs);
        }
    }
    if let Some(child) = s.get("items").filter(|i| i.is_object()) {
        structural_node(child, &at.child("items"), Place::Item, errs);
    }
    if let Some(child) = s.get("additionalProperties").filter(|a| a.is_object()) {
        structural_node(child, &at.child("additionalProperties"), Place::Field, errs);
    }
}

/// What an update of a definition may not change: its group and plural, and once it is
/// established its scope and kind; nor may a version objects were stored in leave.
pub fn validate_update(old: &Value, new: &Value) -> Vec<Cause> {
    let mut errs = Errors::default();
    let at = Path::new("spec");
    let established = old["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Established" && c["status"] == "True");
    let mut fixed = vec![
        ("group", "/spec/group"),
        ("names.plural", "/spec/names/plural"),
    ];
    if established {
        fixed.push(("scope", "/spec/scope"));
        fixed.push(("names.kind", "/spec/names/kind"));
    }
    for (field, pointer) in fixed {
        let (was, now) = (old.pointer(pointer), new.pointer(pointer));
        if was != now {
            errs.invalid(
                &at.child(field),
                now.unwrap_or(&Value::Null),
                "field is immutable",
            );
        }
    }
    let listed: Vec<&str> = items(&new["spec"], "versions")
        .iter()
        .map(|v| text(v, "name"))
        .collect();
    for (i, s) in items(&new["status"], "storedVersions").iter().enumerate() {
        let v = s.as_str().unwrap_or_default();
        if !listed.contains(&v) {
            errs.invalid(
                &Path::new("status").child("storedVersions").index(i),
                s,
                &format!("missing from spec.versions; {v} was previously a storage version, and must remain in spec.versions until a storage migration ensures no data remains persisted in {v} and removes {v} from status.storedVersions"),
            );
        }
    }
    errs.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({"metadata": {"name": "widgets.example.com"}, "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object"}}}}}]}})
    }

    fn messages(c: &Value) -> Vec<String> {
        let mut c = c.clone();
        defaults(&mut c);
        validate(&c)
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn a_good_definition_passes_and_gets_defaults() {
        let mut c = crd();
        assert!(messages(&c).is_empty(), "{:?}", messages(&c));
        defaults(&mut c);
        assert!(validate(&c).is_empty());
        assert_eq!(c["spec"]["names"]["singular"], "widget");
        assert_eq!(c["spec"]["names"]["listKind"], "WidgetList");
        assert_eq!(c["spec"]["conversion"]["strategy"], "None");
    }

    #[test]
    fn bad_definitions_are_refused_with_field_paths() {
        let mut c = crd();
        c["metadata"]["name"] = json!("widget.example.com");
        c["spec"]["scope"] = json!("Galaxy");
        c["spec"]["versions"][0]["storage"] = json!(false);
        c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] =
            json!({"properties": {}});
        assert_eq!(
            messages(&c),
            [
                "metadata.name: Invalid value: \"widget.example.com\": must be spec.names.plural+\".\"+spec.group",
                "spec.scope: Unsupported value: \"Galaxy\": supported values: \"Cluster\", \"Namespaced\"",
                "spec.versions: Invalid value: [{\"Name\":\"v1\",\"Served\":true,\"Storage\":false,\"Deprecated\":false,\"DeprecationWarning\":null,\"Schema\":null,\"Subresources\":null,\"AdditionalPrinterColumns\":null,\"SelectableFields\":null}]: must have exactly one version marked as storage version",
                "spec.validation.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields",
            ]
        );
        let mut c = crd();
        c["spec"]["versions"][0]
            .as_object_mut()
            .map(|v| v.remove("schema"));
        c["spec"]["group"] = json!("example");
        c["metadata"]["name"] = json!("widgets.example");
        assert_eq!(
            messages(&c),
            [
                "spec.group: Invalid value: \"example\": should be a domain with at least one dot",
                "spec.versions[0].schema.openAPIV3Schema: Required value",
            ]
        );
    }
}
