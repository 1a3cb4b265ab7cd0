//! The shape a client asks objects in: themselves, a Table (`as=Table`), or their metadata
//! only (`as=PartialObjectMetadata`, `as=PartialObjectMetadataList`), with meta.k8s.io `v1`
//! or `v1beta1`; and turning objects, lists and watch events into it.

use std::collections::HashMap;

use serde_json::{Value, json};
use tug_api::{ApiError, Resource};

use crate::registry::{self, IncludeObject, TableOptions};

/// What the client's Accept header asks for, from its first clause this server can answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Form {
    /// The objects themselves.
    Object,
    /// A Table, of meta.k8s.io at this version.
    Table(&'static str),
    /// One object's metadata, as a PartialObjectMetadata.
    Metadata(&'static str),
    /// A list's items' metadata, as a PartialObjectMetadataList.
    MetadataList(&'static str),
}

impl Form {
    /// The form one Accept clause (`application/json;as=Table;g=meta.k8s.io;v=v1`) asks for;
    /// `None` for a transformation this server does not make (another kind, group or version).
    pub(super) fn of_clause(clause: &str) -> Option<Form> {
        let mut params: HashMap<&str, &str> = HashMap::new();
        for p in clause.split(';').skip(1) {
            if let Some((k, v)) = p.split_once('=') {
                params.insert(k.trim(), v.trim());
            }
        }
        let Some(kind) = params.get("as") else {
            return Some(Form::Object);
        };
        if params.get("g") != Some(&"meta.k8s.io") {
            return None;
        }
        let version = match params.get("v") {
            Some(&"v1") => "v1",
            Some(&"v1beta1") => "v1beta1",
            _ => return None,
        };
        match *kind {
            "Table" => Some(Form::Table(version)),
            "PartialObjectMetadata" => Some(Form::Metadata(version)),
            "PartialObjectMetadataList" => Some(Form::MetadataList(version)),
            _ => None,
        }
    }
}

/// How this request's answers are shaped.
#[derive(Clone, Copy, Debug)]
pub(super) struct Shape {
    pub form: Form,
    table: TableOptions,
}

/// Go's name for the internal type of a kind (or its list), as kube-apiserver's errors give it.
fn go_type(r: &Resource, list: bool) -> String {
    let group = if r.group.is_empty() {
        "core"
    } else {
        r.group.split('.').next().unwrap_or(r.group)
    };
    format!("*{group}.{}{}", r.kind, if list { "List" } else { "" })
}

/// A `PartialObjectMetadata` of `obj`.
fn partial(obj: &Value, version: &str) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    })
}

impl Shape {
    /// The shape of `form` with the request's `includeObject`.
    pub(super) fn new(form: Form, query: &HashMap<String, String>) -> Result<Shape, ApiError> {
        let version = match form {
            Form::Table(v) => v,
            _ => "v1",
        };
        let include = match form {
            Form::Table(_) => IncludeObject::parse(query.get("includeObject").map(String::as_str))?,
            _ => IncludeObject::Metadata,
        };
        Ok(Shape {
            form,
            table: TableOptions {
                version,
                include,
                no_headers: false,
            },
        })
    }

    /// One object (a get's, or a write's answer) in this shape; a Status stays as it is.
    pub(super) fn object(&self, r: &Resource, obj: Value) -> Result<Value, ApiError> {
        if obj["kind"] == "Status" {
            return Ok(obj);
        }
        match self.form {
            Form::Object => Ok(obj),
            Form::Table(_) => Ok(registry::to_table(r, &obj, &self.table)),
            Form::Metadata(v) => Ok(partial(&obj, v)),
            Form::MetadataList(_) => Err(ApiError::not_acceptable(format!(
                "you requested PartialObjectMetadataList, but the requested object is not a list ({})",
                go_type(r, false)
            ))),
        }
    }

    /// An answer (one object, a Status, or a list such as a deletecollection's) in this shape.
    pub(super) fn answer(&self, r: &Resource, obj: Value) -> Result<Value, ApiError> {
        let Some(items) = obj.get("items").and_then(Value::as_array) else {
            return self.object(r, obj);
        };
        self.check_list(r)?;
        let items = items.iter().map(|i| self.item(r, i)).collect();
        Ok(self.list(r, items, &obj))
    }

    /// Refuses a shape a list cannot take (one object's metadata).
    pub(super) fn check_list(&self, r: &Resource) -> Result<(), ApiError> {
        match self.form {
            Form::Metadata(_) => Err(ApiError::not_acceptable(format!(
                "you requested PartialObjectMetadata, but the requested object is a list ({})",
                go_type(r, true)
            ))),
            _ => Ok(()),
        }
    }

    /// Refuses a shape a watch cannot take (a list's metadata: watches send objects).
    pub(super) fn check_watch(&self, r: &Resource) -> Result<(), ApiError> {
        match self.form {
            Form::MetadataList(_) => Err(ApiError::not_acceptable(format!(
                "you requested PartialObjectMetadataList, but the requested object is not a list ({})",
                go_type(r, false)
            ))),
            _ => Ok(()),
        }
    }

    /// One list item in this shape (a Table row, a PartialObjectMetadata, or itself).
    pub(super) fn item(&self, r: &Resource, item: &Value) -> Value {
        match self.form {
            Form::Table(_) => registry::row(r, item, &self.table),
            Form::Metadata(v) | Form::MetadataList(v) => partial(item, v),
            Form::Object => item.clone(),
        }
    }

    /// The list made of items already in this shape, with the list metadata they came with.
    pub(super) fn list(&self, r: &Resource, items: Vec<Value>, list: &Value) -> Value {
        match self.form {
            Form::Table(_) => registry::table_of(r, items, list.get("metadata"), &self.table),
            Form::Metadata(v) | Form::MetadataList(v) => {
                let mut metadata = json!({});
                for k in ["resourceVersion", "continue", "remainingItemCount"] {
                    if let Some(x) = list.pointer(&format!("/metadata/{k}")) {
                        metadata[k] = x.clone();
                    }
                }
                json!({
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": format!("meta.k8s.io/{v}"),
                    "metadata": metadata,
                    "items": items,
                })
            }
            Form::Object => {
                let mut l = list.clone();
                l["items"] = Value::Array(items);
                l
            }
        }
    }

    /// A watch event's object in this shape; a Table carries its column definitions with the
    /// stream's first event only.
    pub(super) fn event_object(&mut self, r: &Resource, obj: &Value) -> Value {
        match self.form {
            Form::Table(_) => {
                let t = registry::to_table(r, obj, &self.table);
                self.table.no_headers = true;
                t
            }
            Form::Metadata(v) | Form::MetadataList(v) => partial(obj, v),
            Form::Object => obj.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clauses_ask_for_forms_the_server_makes() {
        let of = Form::of_clause;
        assert_eq!(of("application/json"), Some(Form::Object));
        assert_eq!(
            of("application/json;as=Table;v=v1;g=meta.k8s.io"),
            Some(Form::Table("v1"))
        );
        assert_eq!(
            of("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1beta1"),
            Some(Form::Metadata("v1beta1"))
        );
        assert_eq!(
            of("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"),
            Some(Form::MetadataList("v1"))
        );
        assert_eq!(
            of("application/json;as=Table;v=v1alpha1;g=meta.k8s.io"),
            None
        );
        assert_eq!(of("application/json;as=Pod;v=v1;g=meta.k8s.io"), None);
        assert_eq!(of("application/json;as=Table;v=v1;g=apps"), None);
    }

    #[test]
    fn lists_and_objects_refuse_the_others_metadata_form() {
        let pods = tug_api::catalog::lookup("", "v1", "pods").expect("pods");
        let q = HashMap::new();
        let one = Shape::new(Form::Metadata("v1"), &q).expect("shape");
        let e = one.check_list(pods).expect_err("a list");
        assert_eq!(e.code, 406);
        assert!(
            e.message.ends_with("is a list (*core.PodList)"),
            "{}",
            e.message
        );
        let many = Shape::new(Form::MetadataList("v1"), &q).expect("shape");
        let e = many
            .object(pods, json!({"kind": "Pod", "metadata": {"name": "p"}}))
            .expect_err("not a list");
        assert!(
            e.message.ends_with("is not a list (*core.Pod)"),
            "{}",
            e.message
        );
        let deployments =
            tug_api::catalog::lookup("apps", "v1", "deployments").expect("deployments");
        assert_eq!(go_type(deployments, true), "*apps.DeploymentList");
    }

    #[test]
    fn a_watch_sends_column_definitions_once() {
        let cms = tug_api::catalog::lookup("", "v1", "configmaps").expect("configmaps");
        let mut s = Shape::new(Form::Table("v1"), &HashMap::new()).expect("shape");
        let cm = json!({"metadata": {"name": "c", "resourceVersion": "5"}});
        let first = s.event_object(cms, &cm);
        let second = s.event_object(cms, &cm);
        assert!(first["columnDefinitions"].is_array());
        assert!(second["columnDefinitions"].is_null());
        assert_eq!(second["metadata"]["resourceVersion"], "5");
        assert_eq!(second["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }
}
