//! A custom resource's OpenAPI v3 structural schema applied to its objects, as the
//! apiextensions server applies it: unknown fields pruned, defaults filled in, then every
//! value checked (types, formats, enum, pattern, bounds, required), with kube-openapi's
//! messages and field paths.

use serde_json::{Map, Value};

use crate::validation::field::{Errors, Path, show};

/// Removes the fields `schema` does not declare (unless it preserves unknown fields) and
/// returns their paths, for `fieldValidation` to report. `apiVersion`, `kind` and `metadata`
/// at the top are the API's own.
pub fn prune(obj: &mut Value, schema: &Value) -> Vec<String> {
    let mut pruned = Vec::new();
    if let Value::Object(m) = obj {
        for (k, v) in m.iter_mut() {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(s) = property(schema, k) {
                prune_value(v, s, &Path::new(k), &mut pruned);
            }
        }
        if !preserves_unknown(schema) {
            m.retain(|k, _| {
                let keep = matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
                    || property(schema, k).is_some();
                if !keep {
                    pruned.push(k.clone());
                }
                keep
            });
        }
    }
    pruned
}

fn preserves_unknown(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"] == true
}

/// The schema of property `name` (or of every value, through `additionalProperties`).
fn property<'a>(schema: &'a Value, name: &str) -> Option<&'a Value> {
    schema
        .get("properties")
        .and_then(|p| p.get(name))
        .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
}

fn prune_value(v: &mut Value, schema: &Value, path: &Path, pruned: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            let has_shape = schema.get("properties").is_some()
                || schema
                    .get("additionalProperties")
                    .is_some_and(Value::is_object);
            for (k, child) in m.iter_mut() {
                if let Some(s) = property(schema, k) {
                    prune_value(child, s, &path.child(k), pruned);
                }
            }
            if preserves_unknown(schema) || !has_shape && schema["type"] != "object" {
                return;
            }
            if schema.get("additionalProperties") == Some(&Value::Bool(true)) {
                return;
            }
            let embedded = schema["x-kubernetes-embedded-resource"] == true;
            m.retain(|k, _| {
                let keep = property(schema, k).is_some()
                    || embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata");
                if !keep {
                    pruned.push(path.child(k).as_str().to_string());
                }
                keep
            });
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_value(item, s, &path.index(i), pruned);
                }
            }
        }
        _ => {}
    }
}

/// Fills in the `default`s of absent properties, top-down (a default object then gets its
/// own properties' defaults).
pub fn default(obj: &mut Value, schema: &Value) {
    let Value::Object(m) = obj else { return };
    if let Some(Value::Object(props)) = schema.get("properties") {
        for (k, s) in props {
            if let Some(d) = s.get("default")
                && !m.contains_key(k)
            {
                m.insert(k.clone(), d.clone());
            }
            if let Some(child) = m.get_mut(k) {
                default_value(child, s);
            }
        }
    } else if let Some(s) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        for child in m.values_mut() {
            default_value(child, s);
        }
    }
}

fn default_value(v: &mut Value, schema: &Value) {
    match v {
        Value::Object(_) => default(v, schema),
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for item in items {
                    default_value(item, s);
                }
            }
        }
        _ => {}
    }
}

/// Whether any node of `schema` has a `default`.
pub fn has_defaults(schema: &Value) -> bool {
    schema.get("default").is_some()
        || schema
            .get("properties")
            .and_then(Value::as_object)
            .is_some_and(|p| p.values().any(has_defaults))
        || schema.get("items").is_some_and(has_defaults)
        || schema
            .get("additionalProperties")
            .filter(|a| a.is_object())
            .is_some_and(has_defaults)
}

/// Checks `obj` against `schema`; the causes carry kube-openapi's messages.
pub fn validate(obj: &Value, schema: &Value) -> Vec<crate::Cause> {
    let mut errs = Errors::default();
    if let (Value::Object(m), Some(Value::Object(props))) = (obj, schema.get("properties")) {
        for (k, s) in props {
            if matches!(k.as_str(), "metadata" | "apiVersion" | "kind") {
                continue;
            }
            if let Some(v) = m.get(k) {
                check(v, s, &Path::new(k), &mut errs);
            }
        }
        required(m, schema, &Path::new(""), &mut errs);
    }
    errs.0
}

fn required(m: &Map<String, Value>, schema: &Value, path: &Path, errs: &mut Errors) {
    for r in schema["required"].as_array().into_iter().flatten() {
        if let Some(name) = r.as_str()
            && !m.contains_key(name)
        {
            errs.required(&path.child(name), "");
        }
    }
}

/// The JSON type name kube-openapi reports for a value.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_error(errs: &mut Errors, path: &Path, v: &Value, want: &str) {
    let got = type_name(v);
    errs.invalid(
        path,
        &Value::String(got.into()),
        &format!(
            "{} in body must be of type {want}: \"{got}\"",
            path.as_str()
        ),
    );
}

fn check(v: &Value, schema: &Value, path: &Path, errs: &mut Errors) {
    if v.is_null() {
        if schema["nullable"] == true {
            return;
        }
        if let Some(t) = schema["type"].as_str() {
            type_error(errs, path, v, t);
        }
        return;
    }
    if schema["x-kubernetes-int-or-string"] == true {
        if !(v.is_string() || v.is_i64() || v.is_u64()) {
            type_error(errs, path, v, "integer,string");
            return;
        }
    } else if let Some(t) = schema["type"].as_str() {
        let ok = match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "boolean" => v.is_boolean(),
            "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
            "number" => v.is_number(),
            _ => true,
        };
        if !ok {
            type_error(errs, path, v, t);
            return;
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(v)
    {
        let shown: Vec<String> = allowed.iter().map(show).collect();
        let supported: Vec<&str> = shown.iter().map(String::as_str).collect();
        errs.0.push(crate::Cause::new(
            "FieldValueNotSupported",
            path.as_str(),
            format!(
                "Unsupported value: {}: supported values: {}",
                show(v),
                supported.join(", ")
            ),
        ));
    }
    let at = path.as_str();
    match v {
        Value::String(s) => {
            let len = s.chars().count() as i64;
            if let Some(max) = schema["maxLength"].as_i64()
                && len > max
            {
                errs.0.push(crate::Cause::new(
                    "FieldValueTooLong",
                    at,
                    format!("Too long: may not be more than {max} bytes"),
                ));
            }
            if let Some(min) = schema["minLength"].as_i64()
                && len < min
            {
                errs.invalid(
                    path,
                    v,
                    &format!("{at} in body should be at least {min} chars long"),
                );
            }
            if let Some(p) = schema["pattern"].as_str() {
                match regex::Regex::new(p) {
                    Ok(re) if !re.is_match(s) => {
                        errs.invalid(path, v, &format!("{at} in body should match '{p}'"))
                    }
                    _ => {}
                }
            }
            if let Some(f) = schema["format"].as_str()
                && !format_ok(f, s)
            {
                errs.invalid(
                    path,
                    v,
                    &format!("{at} in body must be of type {f}: {}", show(v)),
                );
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or_default();
            if let Some(max) = schema["maximum"].as_f64() {
                let exclusive = schema["exclusiveMaximum"] == true;
                if x > max || exclusive && x == max {
                    let word = if exclusive {
                        "less than"
                    } else {
                        "less than or equal to"
                    };
                    errs.invalid(
                        path,
                        v,
                        &format!("{at} in body should be {word} {}", schema["maximum"]),
                    );
                }
            }
            if let Some(min) = schema["minimum"].as_f64() {
                let exclusive = schema["exclusiveMinimum"] == true;
                if x < min || exclusive && x == min {
                    let word = if exclusive {
                        "greater than"
                    } else {
                        "greater than or equal to"
                    };
                    errs.invalid(
                        path,
                        v,
                        &format!("{at} in body should be {word} {}", schema["minimum"]),
                    );
                }
            }
            if let Some(m) = schema["multipleOf"].as_f64()
                && m > 0.0
                && (x / m).fract() != 0.0
            {
                errs.invalid(
                    path,
                    v,
                    &format!(
                        "{at} in body should be a multiple of {}",
                        schema["multipleOf"]
                    ),
                );
            }
        }
        Value::Array(items) => {
            let n = items.len() as i64;
            if let Some(max) = schema["maxItems"].as_i64()
                && n > max
            {
                errs.0.push(crate::Cause::new(
                    "FieldValueTooMany",
                    at,
                    format!("Too many: {n}: must have at most {max} items"),
                ));
            }
            if let Some(min) = schema["minItems"].as_i64()
                && n < min
            {
                errs.invalid(
                    path,
                    v,
                    &format!("{at} in body should have at least {min} items"),
                );
            }
            if schema["uniqueItems"] == true || schema["x-kubernetes-list-type"] == "set" {
                for (i, item) in items.iter().enumerate() {
                    if items[..i].contains(item) {
                        errs.duplicate(&path.index(i), item);
                    }
                }
            }
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item, s, &path.index(i), errs);
                }
            }
        }
        Value::Object(m) => {
            let n = m.len() as i64;
            if let Some(max) = schema["maxProperties"].as_i64()
                && n > max
            {
                errs.0.push(crate::Cause::new(
                    "FieldValueTooMany",
                    at,
                    format!("Too many: {n}: must have at most {max} items"),
                ));
            }
            if let Some(min) = schema["minProperties"].as_i64()
                && n < min
            {
                errs.invalid(
                    path,
                    v,
                    &format!("{at} in body should have at least {min} properties"),
                );
            }
            if schema["x-kubernetes-embedded-resource"] == true {
                for k in ["apiVersion", "kind"] {
                    if m.get(k).and_then(Value::as_str).is_none_or(str::is_empty) {
                        errs.required(&path.child(k), "must not be empty");
                    }
                }
            }
            for (k, child) in m {
                if let Some(s) = schema.get("properties").and_then(|p| p.get(k)) {
                    check(child, s, &path.child(k), errs);
                } else if let Some(s) = schema.get("additionalProperties").filter(|a| a.is_object())
                {
                    check(child, s, &path.child(k), errs);
                }
            }
            required(m, schema, path, errs);
        }
        Value::Bool(_) | Value::Null => {}
    }
}

/// Whether `s` has format `f` (the formats kube-openapi checks; others pass).
fn format_ok(f: &str, s: &str) -> bool {
    match f {
        "int32" | "int64" | "float" | "double" => true,
        "date-time" => s.parse::<jiff::Timestamp>().is_ok(),
        "date" => s.len() == 10 && s.parse::<jiff::civil::Date>().is_ok(),
        "byte" => base64::Engine::decode(&base64::engine::general_purpose::STANDARD, s).is_ok(),
        "uuid" => {
            s.len() == 36
                && s.chars().enumerate().all(|(i, c)| {
                    if matches!(i, 8 | 13 | 18 | 23) {
                        c == '-'
                    } else {
                        c.is_ascii_hexdigit()
                    }
                })
        }
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => super::cel::is_cidr(s),
        "hostname" => crate::validation::is_dns1123_subdomain(s),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["size"], "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 10, "default": 3},
                "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
                "when": {"type": "string", "format": "date-time"},
                "port": {"x-kubernetes-int-or-string": true},
                "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            }},
            "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
        }})
    }

    fn messages(obj: Value) -> Vec<String> {
        validate(&obj, &schema())
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn values_are_checked_with_kube_openapi_messages() {
        assert!(messages(json!({"spec": {"size": 2, "port": "http", "tags": ["a"]}})).is_empty());
        assert_eq!(
            messages(json!({"spec": {"size": "two"}})),
            [
                "spec.size: Invalid value: \"string\": spec.size in body must be of type integer: \"string\""
            ]
        );
        assert_eq!(messages(json!({"spec": {}})), ["spec.size: Required value"]);
        assert_eq!(
            messages(json!({"spec": {"size": 11, "color": "pink"}})),
            [
                "spec.color: Unsupported value: \"pink\": supported values: \"red\", \"blue\"",
                "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10",
            ]
        );
        assert_eq!(
            messages(json!({"spec": {"size": 1, "name": "Abcdefg"}})),
            [
                "spec.name: Too long: may not be more than 5 bytes",
                "spec.name: Invalid value: \"Abcdefg\": spec.name in body should match '^[a-z]+$'",
            ]
        );
        assert_eq!(
            messages(
                json!({"spec": {"size": 1, "tags": ["a", "b", "c"], "port": true, "labels": {"a": 1}}})
            ),
            [
                "spec.labels.a: Invalid value: \"integer\": spec.labels.a in body must be of type string: \"integer\"",
                "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\"",
                "spec.tags: Too many: 3: must have at most 2 items",
            ]
        );
        assert_eq!(
            messages(json!({"spec": {"size": 1, "when": "yesterday"}})),
            [
                "spec.when: Invalid value: \"yesterday\": spec.when in body must be of type date-time: \"yesterday\""
            ]
        );
    }

    #[test]
    fn unknown_fields_are_pruned_and_defaults_filled() {
        let mut obj = json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "a"},
            "extra": 1, "spec": {"bogus": true, "free": {"any": {"thing": 1}}}});
        let pruned = prune(&mut obj, &schema());
        assert_eq!(pruned, ["spec.bogus", "extra"]);
        default(&mut obj, &schema());
        assert_eq!(
            obj["spec"],
            json!({"free": {"any": {"thing": 1}}, "size": 3, "color": "red"})
        );
        assert_eq!(obj["metadata"]["name"], "a");
    }
}
