//! OpenAPI v3: the index at /openapi/v3 and one document per group-version, generated from
//! the catalog. Each document lists the resource paths and their operations, with the
//! `x-kubernetes-group-version-kind` and `x-kubernetes-action` extensions and the query
//! parameters each operation takes (kubectl looks for `fieldValidation` on PATCH to validate
//! server-side). The components hold every object schema, generated from the types.

use serde_json::{Map, Value, json};
use tug_api::catalog::{self, Catalog, Resource};

/// Changes whenever the documents would: clients cache by it. Custom resources' documents
/// change with their definitions.
fn hash(catalog: &Catalog, group: &str, version: &str) -> String {
    let base = format!("tugboat-{}", env!("CARGO_PKG_VERSION").replace('.', "-"));
    let custom: Vec<&Resource> = catalog
        .resources(group, version)
        .filter(|r| r.custom.is_some())
        .collect();
    if custom.is_empty() {
        return base;
    }
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for r in custom {
        (
            r.kind,
            r.plural,
            r.custom.map(|c| c.schema.as_ref().map(|s| s.to_string())),
        )
            .hash(&mut h);
    }
    format!("{base}-{:016x}", h.finish())
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `GET /openapi/v3`.
pub fn index(catalog: &Catalog) -> Value {
    let mut paths = Map::new();
    for (g, versions) in catalog.groups() {
        for v in versions {
            let p = gv_path(g, v);
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash(catalog, g, v))}),
            );
        }
    }
    json!({"paths": paths})
}

fn param(name: &str, kind: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": kind}, "uniqueItems": true})
}

fn path_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}, "uniqueItems": true})
}

fn operation(r: &Resource, action: &str, id: &str, params: Vec<Value>) -> Value {
    json!({
        "operationId": id,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
        "parameters": params,
        "responses": {"200": {"description": "OK"}, "401": {"description": "Unauthorized"}},
    })
}

fn write_params() -> Vec<Value> {
    vec![
        param("dryRun", "string"),
        param("fieldManager", "string"),
        param("fieldValidation", "string"),
    ]
}

/// `GET /openapi/v3/api/v1`, `GET /openapi/v3/apis/{group}/{version}`.
pub fn document(catalog: &Catalog, group: &str, version: &str) -> Option<Value> {
    let mut paths = Map::new();
    let mut any = false;
    let mut components = Map::new();
    for r in catalog.resources(group, version) {
        if let Some(c) = r.custom {
            custom_components(r, c, &mut components);
        }
        any = true;
        let base = format!("/{}", gv_path(group, version));
        let collection = if r.namespaced() {
            format!("{base}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{base}/{}", r.plural)
        };
        let item = format!("{collection}/{{name}}");
        let scope = |mut v: Vec<Value>| {
            if r.namespaced() {
                v.push(path_param("namespace"));
            }
            v
        };
        let kind = r.kind;
        let mut coll = Map::new();
        if r.allows("list") {
            coll.insert(
                "get".into(),
                operation(
                    r,
                    "list",
                    &format!("list{kind}"),
                    scope(vec![
                        param("labelSelector", "string"),
                        param("fieldSelector", "string"),
                        param("limit", "integer"),
                        param("continue", "string"),
                        param("resourceVersion", "string"),
                        param("resourceVersionMatch", "string"),
                        param("watch", "boolean"),
                        param("allowWatchBookmarks", "boolean"),
                        param("sendInitialEvents", "boolean"),
                        param("timeoutSeconds", "integer"),
                    ]),
                ),
            );
        }
        if r.allows("create") {
            coll.insert(
                "post".into(),
                operation(r, "post", &format!("create{kind}"), scope(write_params())),
            );
        }
        if r.allows("deletecollection") {
            coll.insert(
                "delete".into(),
                operation(
                    r,
                    "deletecollection",
                    &format!("deleteCollection{kind}"),
                    scope(vec![
                        param("dryRun", "string"),
                        param("labelSelector", "string"),
                        param("fieldSelector", "string"),
                    ]),
                ),
            );
        }
        paths.insert(collection, Value::Object(coll));
        if r.allows("get") {
            let with_name = |mut v: Vec<Value>| {
                v.push(path_param("name"));
                scope(v)
            };
            let mut patch_params = write_params();
            patch_params.push(param("force", "boolean"));
            paths.insert(
                item,
                json!({
                    "get": operation(r, "get", &format!("read{kind}"), with_name(vec![])),
                    "put": operation(r, "put", &format!("replace{kind}"), with_name(write_params())),
                    "patch": operation(r, "patch", &format!("patch{kind}"), with_name(patch_params)),
                    "delete": operation(r, "delete", &format!("delete{kind}"), with_name(vec![
                        param("dryRun", "string"),
                        param("gracePeriodSeconds", "integer"),
                        param("propagationPolicy", "string"),
                    ])),
                }),
            );
        }
    }
    if !any {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v{}.{}.0", crate::KUBE_VERSION.0, crate::KUBE_VERSION.1)},
        "paths": paths,
        "components": {"schemas": if components.is_empty() { tug_api::schema::components(group, version).clone() } else { components }},
    }))
}

/// The name of a custom kind's schema: the group reversed, then version and kind
/// (`com.example.v1.Widget`), as the apiextensions server names it.
fn custom_schema_name(r: &Resource) -> String {
    let group: Vec<&str> = r.group.split('.').rev().collect();
    format!("{}.{}.{}", group.join("."), r.version, r.kind)
}

/// A custom kind's schema and its list's, with the metadata types they refer to.
fn custom_components(r: &Resource, c: &tug_api::crd::Custom, out: &mut Map<String, Value>) {
    const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
    const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
    let gvk = |kind: &str| json!([{"group": r.group, "version": r.version, "kind": kind}]);
    let mut schema = c
        .schema
        .clone()
        .unwrap_or_else(|| json!({"type": "object"}));
    let props = schema
        .as_object_mut()
        .map(|m| m.entry("properties").or_insert_with(|| json!({})));
    if let Some(Value::Object(p)) = props {
        p.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
        p.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
        p.insert("metadata".into(), json!({"allOf": [{"$ref": format!("#/components/schemas/{META}")}], "description": "Standard object's metadata."}));
    }
    schema["x-kubernetes-group-version-kind"] = gvk(r.kind);
    let name = custom_schema_name(r);
    out.insert(
        format!("{name}List"),
        json!({
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": {"type": "string"},
                "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{name}")}},
                "kind": {"type": "string"},
                "metadata": {"allOf": [{"$ref": format!("#/components/schemas/{LIST_META}")}]},
            },
            "x-kubernetes-group-version-kind": gvk(&r.list_kind()),
        }),
    );
    out.insert(name, schema);
    for (k, v) in tug_api::schema::components("", "v1") {
        if k.starts_with("io.k8s.apimachinery.pkg.apis.meta.v1.") {
            out.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

/// `GET /openapi/v2`: one Swagger 2.0 document for every group-version, built once.
pub fn v2() -> &'static str {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        let mut paths = Map::new();
        let mut definitions = Map::new();
        let builtin = Catalog::default();
        for (g, versions) in catalog::groups() {
            for v in versions {
                if let Some(doc) = document(&builtin, g, v)
                    && let Some(p) = doc["paths"].as_object()
                {
                    for (path, ops) in p {
                        let mut ops = ops.clone();
                        // Swagger 2 parameters carry their type directly.
                        if let Some(ops) = ops.as_object_mut() {
                            for op in ops.values_mut() {
                                if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
                                    for p in params.iter_mut() {
                                        if let Some(kind) = p.get("schema").and_then(|s| s.get("type")).cloned() {
                                            p["type"] = kind;
                                            if let Some(m) = p.as_object_mut() {
                                                m.remove("schema");
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        paths.insert(path.clone(), ops);
                    }
                }
                for (name, schema) in tug_api::schema::components(g, v) {
                    definitions.entry(name.clone()).or_insert_with(|| schema.clone());
                }
            }
        }
        let doc = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": format!("v{}.{}.0", crate::KUBE_VERSION.0, crate::KUBE_VERSION.1)},
            "paths": paths,
            "definitions": definitions,
        });
        doc.to_string().replace("#/components/schemas/", "#/definitions/")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_operations_offer_field_validation() {
        let c = Catalog::default();
        let document = |g, v| super::document(&c, g, v);
        let idx = index(&c);
        assert!(
            idx["paths"]["apis/apps/v1"]["serverRelativeURL"]
                .as_str()
                .is_some_and(|u| u.starts_with("/openapi/v3/apis/apps/v1?hash="))
        );
        let doc = document("apps", "v1").expect("apps/v1");
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(patch["parameters"].as_array().is_some_and(|p| {
            p.iter()
                .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
        }));
        assert!(document("apps", "v0").is_none());
    }

    #[test]
    fn v2_has_definitions_and_paths_with_swagger_refs() {
        let doc: Value = serde_json::from_str(v2()).expect("json");
        assert_eq!(doc["swagger"], "2.0");
        assert!(doc["definitions"]["io.k8s.api.apps.v1.Deployment"].is_object());
        assert!(doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"].is_object());
        assert!(!v2().contains("#/components/schemas/"));
    }
}
