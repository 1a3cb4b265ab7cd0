//! Table output (`as=Table;g=meta.k8s.io;v=v1`): the columns kubectl prints for a kind, wide
//! ones (priority 1) included, as kube-apiserver always sends them; and each row's object as
//! `includeObject` asks.

mod cells;
mod columns;
mod custom;

use serde_json::{Value, json};
use tug_api::{ApiError, Resource};

/// One column of a kind's Table: its definition, and how a row's cell is made.
#[derive(Clone, Copy)]
pub(crate) struct Column {
    name: &'static str,
    ty: &'static str,
    format: &'static str,
    priority: u8,
    cell: fn(&Value) -> Value,
}

/// A column kubectl always shows.
const fn col(name: &'static str, ty: &'static str, cell: fn(&Value) -> Value) -> Column {
    Column {
        name,
        ty,
        format: "",
        priority: 0,
        cell,
    }
}

/// A column kubectl shows with `-o wide`.
const fn wide(name: &'static str, ty: &'static str, cell: fn(&Value) -> Value) -> Column {
    Column {
        name,
        ty,
        format: "",
        priority: 1,
        cell,
    }
}

/// What each row carries besides its cells (`includeObject`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    /// Nothing (`"object": null`).
    None,
    /// The object's metadata, as a PartialObjectMetadata (the default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// The `includeObject` query parameter; anything but the three values (or nothing) is a
    /// 400, worded as kube-apiserver words it.
    pub fn parse(value: Option<&str>) -> Result<IncludeObject, ApiError> {
        match value.unwrap_or("") {
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "None" => Ok(IncludeObject::None),
            "Object" => Ok(IncludeObject::Object),
            other => Err(ApiError::bad_request(format!(
                "Unable to convert to Table as requested: includeObject: Invalid value: \"{other}\": must be 'Metadata', 'Object', 'None', or empty"
            ))),
        }
    }
}

/// How a Table is made: the version of meta.k8s.io asked for, what rows carry, and whether
/// the column definitions are left out (a watch sends them with its first event only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableOptions {
    /// `v1` or `v1beta1`.
    pub version: &'static str,
    pub include: IncludeObject,
    pub no_headers: bool,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            version: "v1",
            include: IncludeObject::Metadata,
            no_headers: false,
        }
    }
}

/// The column definitions of a kind's Table.
pub fn column_definitions(r: &Resource) -> Vec<Value> {
    if let Some(c) = r.custom {
        return custom::definitions(c);
    }
    columns::columns(r.kind)
        .iter()
        .map(|c| {
            json!({"name": c.name, "type": c.ty, "format": c.format,
                "description": description(c.name), "priority": c.priority})
        })
        .collect()
}

/// The description of the columns every kind shares (others have none here; clients show
/// descriptions nowhere).
fn description(column: &str) -> &'static str {
    match column {
        "Name" => "Name must be unique within a namespace.",
        "Age" | "Created At" => "CreationTimestamp",
        _ => "",
    }
}

/// One Table row for an object.
pub fn row(r: &Resource, item: &Value, opts: &TableOptions) -> Value {
    // Columns read the stored shape (events.k8s.io Events print as core ones do).
    let stored = super::convert::to_stored(r, item);
    let cells: Vec<Value> = match r.custom {
        Some(c) => custom::cells(c, item),
        None => columns::columns(r.kind)
            .iter()
            .map(|c| (c.cell)(&stored))
            .collect(),
    };
    let object = match opts.include {
        IncludeObject::None => Value::Null,
        IncludeObject::Object => item.clone(),
        IncludeObject::Metadata => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": format!("meta.k8s.io/{}", opts.version),
            "metadata": item.get("metadata").cloned().unwrap_or(json!({})),
        }),
    };
    let mut row = json!({"cells": cells});
    if let Some(conditions) = columns::row_conditions(r.kind, item) {
        row["conditions"] = conditions;
    }
    row["object"] = object;
    row
}

/// A Table from rows and the list metadata they came with.
pub fn table_of(
    r: &Resource,
    rows: Vec<Value>,
    list_metadata: Option<&Value>,
    opts: &TableOptions,
) -> Value {
    let mut metadata = json!({});
    if let Some(m) = list_metadata {
        for k in ["resourceVersion", "continue", "remainingItemCount"] {
            if let Some(v) = m.get(k) {
                metadata[k] = v.clone();
            }
        }
    }
    let definitions = if opts.no_headers {
        Value::Null
    } else {
        Value::Array(column_definitions(r))
    };
    json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{}", opts.version),
        "metadata": metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

/// The Table of a list or of one object (whose resourceVersion it carries).
pub fn to_table(r: &Resource, obj: &Value, opts: &TableOptions) -> Value {
    match obj.get("items").and_then(Value::as_array) {
        Some(items) => table_of(
            r,
            items.iter().map(|i| row(r, i, opts)).collect(),
            obj.get("metadata"),
            opts,
        ),
        None => {
            let rv = obj.pointer("/metadata/resourceVersion").cloned();
            let meta = rv.map(|rv| json!({"resourceVersion": rv}));
            table_of(r, vec![row(r, obj, opts)], meta.as_ref(), opts)
        }
    }
}

#[cfg(test)]
mod tests;
