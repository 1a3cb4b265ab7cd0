//! Discovery: /api, /apis, per-group-version resource lists, and aggregated discovery
//! (apidiscovery.k8s.io/v2), all generated from the resource catalog.

use serde_json::{Value, json};
use tug_api::catalog::{Catalog, Resource};

/// The media type of aggregated discovery documents.
pub const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether an Accept header asks for aggregated discovery.
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let p = part.replace(' ', "");
        p.contains("g=apidiscovery.k8s.io")
            && p.contains("v=v2")
            && p.contains("as=APIGroupDiscoveryList")
    })
}

fn sub_verbs(sub: &str) -> &'static [&'static str] {
    match sub {
        "binding" | "eviction" | "token" => &["create"],
        "log" => &["get"],
        "exec" | "attach" | "portforward" => &["create", "get"],
        "finalize" => &["update"],
        "proxy" => &["create", "delete", "get", "patch", "update"],
        _ => &["get", "patch", "update"],
    }
}

/// The kind a subresource answers with: (group, version, kind).
fn sub_kind(r: &Resource, sub: &str) -> (&'static str, &'static str, &'static str) {
    match sub {
        "scale" => ("autoscaling", "v1", "Scale"),
        "eviction" => ("policy", "v1", "Eviction"),
        "binding" => ("", "v1", "Binding"),
        "token" => ("authentication.k8s.io", "v1", "TokenRequest"),
        "log" | "exec" | "attach" | "portforward" | "proxy" => ("", "v1", r.kind),
        _ => (r.group, r.version, r.kind),
    }
}

/// `GET /api`.
pub fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    })
}

/// A group's entry in `APIGroupList` (its versions in preference order).
pub(crate) fn group_entry(group: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": vs,
        "preferredVersion": vs.first().cloned().unwrap_or(Value::Null),
    })
}

/// `GET /apis`.
pub fn group_list(catalog: &Catalog) -> Value {
    let groups: Vec<Value> = catalog
        .groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_entry(g, &vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/{group}`.
pub fn group(catalog: &Catalog, group: &str) -> Option<Value> {
    let (_, versions) = catalog
        .groups()
        .into_iter()
        .find(|(g, _)| *g == group && !g.is_empty())?;
    let mut g = group_entry(group, &versions);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

/// `GET /api/v1` or `GET /apis/{group}/{version}`.
pub fn resource_list(catalog: &Catalog, group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for r in catalog.resources(group, version) {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular(),
            "namespaced": r.namespaced(),
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        for sub in r.subresources {
            let (g, v, k) = sub_kind(r, sub);
            let mut s = json!({
                "name": format!("{}/{sub}", r.plural),
                "singularName": "",
                "namespaced": r.namespaced(),
                "kind": k,
                "verbs": sub_verbs(sub),
            });
            if (g, v) != (r.group, r.version) {
                s["group"] = json!(g);
                s["version"] = json!(v);
            }
            resources.push(s);
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }))
}

fn aggregated_group(catalog: &Catalog, group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = catalog
                .resources(group, v)
                .map(|r| {
                    let subs: Vec<Value> = r
                        .subresources
                        .iter()
                        .map(|sub| {
                            let (g, sv, k) = sub_kind(r, sub);
                            json!({
                                "subresource": sub,
                                "responseKind": {"group": g, "version": sv, "kind": k},
                                "verbs": sub_verbs(sub),
                            })
                        })
                        .collect();
                    let mut e = json!({
                        "resource": r.plural,
                        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                        "scope": if r.namespaced() { "Namespaced" } else { "Cluster" },
                        "singularResource": r.singular(),
                        "verbs": r.verbs,
                    });
                    if !r.short_names.is_empty() {
                        e["shortNames"] = json!(r.short_names);
                    }
                    if !r.categories.is_empty() {
                        e["categories"] = json!(r.categories);
                    }
                    if !subs.is_empty() {
                        e["subresources"] = Value::Array(subs);
                    }
                    e
                })
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let metadata = if group.is_empty() {
        json!({"creationTimestamp": null})
    } else {
        json!({"name": group, "creationTimestamp": null})
    };
    json!({"metadata": metadata, "versions": versions})
}

/// Aggregated discovery: `GET /api` (core only) or `GET /apis` (every named group).
pub fn aggregated(catalog: &Catalog, core: bool) -> Value {
    let items: Vec<Value> = catalog
        .groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, vs)| aggregated_group(catalog, g, &vs))
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_documents_list_the_catalog() {
        let c = Catalog::default();
        let resource_list = |g, v| super::resource_list(&c, g, v);
        let group_list = || super::group_list(&c);
        let aggregated = |core| super::aggregated(&c, core);
        let apps = resource_list("apps", "v1").expect("apps/v1");
        let deploy = apps["resources"]
            .as_array()
            .and_then(|r| r.iter().find(|e| e["name"] == "deployments"))
            .cloned()
            .expect("deployments");
        assert_eq!(deploy["shortNames"], json!(["deploy"]));
        assert_eq!(deploy["categories"], json!(["all"]));
        let scale = apps["resources"]
            .as_array()
            .and_then(|r| r.iter().find(|e| e["name"] == "deployments/scale"))
            .cloned()
            .expect("scale");
        assert_eq!(scale["group"], "autoscaling");
        assert!(resource_list("apps", "v9").is_none());
        let groups = group_list();
        assert!(
            groups["groups"]
                .as_array()
                .is_some_and(|g| g.iter().any(|g| g["name"] == "batch"))
        );
        let agg = aggregated(false);
        assert!(agg["items"].as_array().is_some_and(|i| i.len() > 10));
        assert_eq!(aggregated(true)["items"][0]["versions"][0]["version"], "v1");
        assert!(wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
        ));
        assert!(!wants_aggregated("application/json"));
    }
}
