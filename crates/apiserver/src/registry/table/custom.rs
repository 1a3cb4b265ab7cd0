//! Custom resources' Tables: Name, then the definition's `additionalPrinterColumns` (an Age
//! column where it has none), each cell read by the column's JSONPath.

use serde_json::{Value, json};
use tug_api::crd::{Column, Custom, jsonpath};

fn age_column() -> Column {
    Column {
        name: "Age".into(),
        type_: "date".into(),
        format: String::new(),
        description: "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata".into(),
        priority: 0,
        json_path: ".metadata.creationTimestamp".into(),
    }
}

fn columns(c: &Custom) -> Vec<Column> {
    if c.columns.is_empty() {
        vec![age_column()]
    } else {
        c.columns.clone()
    }
}

/// The column definitions.
pub(super) fn definitions(c: &Custom) -> Vec<Value> {
    let mut out = vec![json!({"name": "Name", "type": "string", "format": "name",
        "description": "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
        "priority": 0})];
    out.extend(columns(c).iter().map(|col| {
        json!({"name": col.name, "type": col.type_, "format": col.format,
            "description": col.description, "priority": col.priority})
    }));
    out
}

/// One row's cells.
pub(super) fn cells(c: &Custom, obj: &Value) -> Vec<Value> {
    let mut out = vec![json!(
        obj.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    )];
    for col in columns(c) {
        let found = jsonpath::select(obj, &col.json_path);
        out.push(match found.as_slice() {
            [] => Value::Null,
            [one] => match one {
                Value::String(t) if col.type_ == "date" => json!(super::cells::age(t)),
                Value::Object(_) | Value::Array(_) => json!(one.to_string()),
                v => (*v).clone(),
            },
            many => json!(
                many.iter()
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        });
    }
    out
}
