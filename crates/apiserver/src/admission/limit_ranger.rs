//! LimitRanger: the namespace's LimitRanges give containers their default requests and limits
//! (recorded in the pod's `kubernetes.io/limit-ranger` annotation), and refuse pods and
//! claims outside their minimums, maximums and limit/request ratios, with kube-apiserver's
//! messages. Pods are admitted on create only (their containers' resources do not change);
//! claims on create and update.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use tug_api::validation::field::items;
use tug_api::{ApiError, catalog, meta, quantity};

use super::{Attributes, Operation};
use crate::registry::{ListOptions, Registry};

/// The kinds LimitRanger looks at, and when.
fn applies(a: &Attributes<'_>) -> bool {
    let r = a.resource;
    if !r.group.is_empty() || a.subresource.is_some() {
        return false;
    }
    match r.kind {
        "Pod" => a.operation == Operation::Create,
        "PersistentVolumeClaim" => matches!(a.operation, Operation::Create | Operation::Update),
        _ => false,
    }
}

/// The `limits` items of the namespace's LimitRanges.
async fn items_of(registry: &Registry, namespace: &str) -> Result<Vec<Value>, ApiError> {
    let r = catalog::lookup("", "v1", "limitranges")
        .ok_or_else(|| ApiError::internal("limitranges missing from the catalog"))?;
    let list = registry
        .list(r, Some(namespace), &ListOptions::default())
        .await?;
    Ok(items(&list, "items")
        .iter()
        .flat_map(|lr| items(&lr["spec"], "limits").to_vec())
        .collect())
}

/// The mutating half: default requests and limits of the pod's containers.
pub async fn default(
    registry: &Registry,
    a: &Attributes<'_>,
    obj: &mut Value,
) -> Result<(), ApiError> {
    if !applies(a) || a.resource.kind != "Pod" {
        return Ok(());
    }
    let limits = items_of(registry, a.namespace).await?;
    let Some(item) = limits.iter().find(|i| i["type"] == "Container") else {
        return Ok(());
    };
    let (default_limits, default_requests) = (&item["default"], &item["defaultRequest"]);
    let mut said = Vec::new();
    for list in ["initContainers", "containers"] {
        let Some(Value::Array(containers)) = obj.pointer_mut(&format!("/spec/{list}")) else {
            continue;
        };
        for c in containers.iter_mut().filter(|c| c.is_object()) {
            let name = c["name"].as_str().unwrap_or_default().to_string();
            let set_limits = fill(c, "limits", default_limits);
            let set_requests = fill(c, "requests", default_requests);
            if !set_requests.is_empty() {
                said.push(format!(
                    "{} request for container {name}",
                    set_requests.join(", ")
                ));
            }
            if !set_limits.is_empty() {
                said.push(format!(
                    "{} limit for container {name}",
                    set_limits.join(", ")
                ));
            }
        }
    }
    if !said.is_empty() {
        let annotations = meta::metadata_mut(obj)
            .entry("annotations")
            .or_insert_with(|| json!({}));
        if let Value::Object(m) = annotations {
            m.insert(
                "kubernetes.io/limit-ranger".into(),
                json!(format!("LimitRanger plugin set: {}", said.join("; "))),
            );
        }
    }
    Ok(())
}

/// Sets the container's `resources.<key>` entries missing from `defaults`; returns their names.
fn fill(container: &mut Value, key: &str, defaults: &Value) -> Vec<String> {
    let Some(defaults) = defaults.as_object().filter(|d| !d.is_empty()) else {
        return Vec::new();
    };
    if !container["resources"].is_object() {
        container["resources"] = json!({});
    }
    if !container["resources"][key].is_object() {
        container["resources"][key] = json!({});
    }
    let mut set = Vec::new();
    if let Value::Object(have) = &mut container["resources"][key] {
        for (name, v) in defaults {
            if !have.contains_key(name) {
                have.insert(name.clone(), v.clone());
                set.push(name.clone());
            }
        }
    }
    set
}

fn quantities(v: &Value) -> BTreeMap<String, (f64, String)> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    let text = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    quantity::parse(&text).map(|q| (k.clone(), (q, text)))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A workload's requests and limits, by resource: (value, text).
struct Usage {
    requests: BTreeMap<String, (f64, String)>,
    limits: BTreeMap<String, (f64, String)>,
}

impl Usage {
    /// A container's: a request left out is its limit (as Kubernetes defaults it).
    fn of_container(c: &Value) -> Usage {
        let limits = quantities(&c["resources"]["limits"]);
        let mut requests = quantities(&c["resources"]["requests"]);
        for (k, v) in &limits {
            requests.entry(k.clone()).or_insert_with(|| v.clone());
        }
        Usage { requests, limits }
    }

    /// A pod's: its containers' summed; a resource counts only if every container has it.
    fn of_pod(containers: &[Usage]) -> Usage {
        let sum = |pick: fn(&Usage) -> &BTreeMap<String, (f64, String)>| {
            let mut out: BTreeMap<String, (f64, String)> = BTreeMap::new();
            let names: std::collections::BTreeSet<&String> =
                containers.iter().flat_map(|u| pick(u).keys()).collect();
            for name in names {
                if containers.iter().all(|u| pick(u).contains_key(name)) {
                    let total: f64 = containers.iter().map(|u| pick(u)[name].0).sum();
                    out.insert(name.clone(), (total, format_quantity(total, name)));
                }
            }
            out
        };
        Usage {
            requests: sum(|u| &u.requests),
            limits: sum(|u| &u.limits),
        }
    }
}

/// A summed quantity as Kubernetes prints one: millicores for fractional CPU, bytes otherwise.
fn format_quantity(v: f64, resource: &str) -> String {
    if resource == "cpu" && v.fract() != 0.0 {
        format!("{}m", (v * 1000.0).round() as i64)
    } else {
        format!("{}", v.round() as i64)
    }
}

/// Checks one usage against one LimitRange item; messages as kube-apiserver's.
fn check(kind: &str, item: &Value, usage: &Usage, errors: &mut Vec<String>) {
    for (name, (min, min_text)) in quantities(&item["min"]) {
        match usage.requests.get(&name) {
            None => errors.push(format!(
                "minimum {name} usage per {kind} is {min_text}.  No request is specified"
            )),
            Some((req, text)) if *req < min => errors.push(format!(
                "minimum {name} usage per {kind} is {min_text}, but request is {text}"
            )),
            _ => {}
        }
    }
    for (name, (max, max_text)) in quantities(&item["max"]) {
        match usage.limits.get(&name) {
            None => errors.push(format!(
                "maximum {name} usage per {kind} is {max_text}.  No limit is specified"
            )),
            Some((lim, text)) if *lim > max => errors.push(format!(
                "maximum {name} usage per {kind} is {max_text}, but limit is {text}"
            )),
            _ => {}
        }
    }
    for (name, (ratio, ratio_text)) in quantities(&item["maxLimitRequestRatio"]) {
        let req = usage.requests.get(&name).map(|r| r.0).unwrap_or(0.0);
        let lim = usage.limits.get(&name).map(|l| l.0).unwrap_or(0.0);
        if req == 0.0 {
            errors.push(format!(
                "{name} max limit to request ratio per {kind} is {ratio_text}, but no request is specified or request is 0"
            ));
        } else if lim == 0.0 {
            errors.push(format!(
                "{name} max limit to request ratio per {kind} is {ratio_text}, but no limit is specified or limit is 0"
            ));
        } else if lim / req > ratio {
            errors.push(format!(
                "{name} max limit to request ratio per {kind} is {ratio_text}, but provided ratio is {:.6}",
                lim / req
            ));
        }
    }
}

/// The validating half: the pod's containers and the pod as a whole, or the claim's storage,
/// within the namespace's limits.
pub async fn validate(
    registry: &Registry,
    a: &Attributes<'_>,
    obj: Option<&Value>,
) -> Result<(), ApiError> {
    let Some(obj) = obj.filter(|_| applies(a)) else {
        return Ok(());
    };
    let limits = items_of(registry, a.namespace).await?;
    if limits.is_empty() {
        return Ok(());
    }
    let mut errors = Vec::new();
    match a.resource.kind {
        "Pod" => {
            let containers: Vec<Usage> = items(&obj["spec"], "containers")
                .iter()
                .map(Usage::of_container)
                .collect();
            let init: Vec<Usage> = items(&obj["spec"], "initContainers")
                .iter()
                .map(Usage::of_container)
                .collect();
            for item in &limits {
                match item["type"].as_str() {
                    Some("Container") => {
                        for u in init.iter().chain(&containers) {
                            check("Container", item, u, &mut errors);
                        }
                    }
                    Some("Pod") => check("Pod", item, &Usage::of_pod(&containers), &mut errors),
                    _ => {}
                }
            }
        }
        _ => {
            let usage = Usage {
                requests: quantities(&obj["spec"]["resources"]["requests"]),
                limits: quantities(&obj["spec"]["resources"]["limits"]),
            };
            for item in limits
                .iter()
                .filter(|i| i["type"] == "PersistentVolumeClaim")
            {
                // A claim's maximum applies to its request (claims have no limits).
                let mut item = item.clone();
                if let Some(max) = item.get("max").cloned() {
                    let requests = Usage {
                        requests: usage.requests.clone(),
                        limits: usage.requests.clone(),
                    };
                    let only_max = json!({"max": max});
                    check("PersistentVolumeClaim", &only_max, &requests, &mut errors);
                    if let Value::Object(m) = &mut item {
                        m.remove("max");
                    }
                }
                check("PersistentVolumeClaim", &item, &usage, &mut errors);
            }
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    let err = if errors.len() == 1 {
        errors.remove(0)
    } else {
        format!("[{}]", errors.join(", "))
    };
    Err(super::forbidden(a, &err))
}

/// kube-apiserver's defaults of a LimitRange's items: a maximum is the default limit, a
/// default limit (or else a minimum) the default request.
pub fn default_limit_range(obj: &mut Value) {
    let Some(Value::Array(limits)) = obj.pointer_mut("/spec/limits") else {
        return;
    };
    for item in limits.iter_mut() {
        let Value::Object(m) = item else { continue };
        if m.get("type").and_then(Value::as_str) != Some("Container") {
            continue;
        }
        let mut default = m
            .get("default")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for (k, v) in m
            .get("max")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
        {
            default.entry(k).or_insert(v);
        }
        let mut request: Map<String, Value> = m
            .get("defaultRequest")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for source in ["default", "min"] {
            let values = if source == "default" {
                default.clone()
            } else {
                m.get("min")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default()
            };
            for (k, v) in values {
                request.entry(k).or_insert(v);
            }
        }
        if !default.is_empty() {
            m.insert("default".into(), Value::Object(default));
        }
        if !request.is_empty() {
            m.insert("defaultRequest".into(), Value::Object(request));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_range_defaults_follow_max_and_min() {
        let mut lr = json!({"spec": {"limits": [{"type": "Container",
            "max": {"cpu": "2", "memory": "1Gi"}, "min": {"cpu": "100m"},
            "default": {"memory": "512Mi"}}]}});
        default_limit_range(&mut lr);
        let item = &lr["spec"]["limits"][0];
        assert_eq!(item["default"], json!({"cpu": "2", "memory": "512Mi"}));
        assert_eq!(
            item["defaultRequest"],
            json!({"cpu": "2", "memory": "512Mi"})
        );
    }

    #[test]
    fn checks_word_their_failures_as_kubernetes() {
        let item = json!({"type": "Container", "max": {"cpu": "1"}, "min": {"memory": "64Mi"},
            "maxLimitRequestRatio": {"cpu": "2"}});
        let u = Usage::of_container(&json!({"resources": {"limits": {"cpu": "3"},
            "requests": {"cpu": "1"}}}));
        let mut errors = Vec::new();
        check("Container", &item, &u, &mut errors);
        assert_eq!(
            errors,
            [
                "minimum memory usage per Container is 64Mi.  No request is specified",
                "maximum cpu usage per Container is 1, but limit is 3",
                "cpu max limit to request ratio per Container is 2, but provided ratio is 3.000000",
            ]
        );
    }
}
