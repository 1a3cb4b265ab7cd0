//! ResourceQuota accounting: what one object counts against a quota's `hard` limits, by
//! resource name, as Kubernetes' quota evaluators count it. Shared by quota admission in the
//! API server and the quota controller that keeps `status.used`.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::quantity;

/// The amounts `obj` (of resource `plural` in `group`) counts for, by quota resource name.
pub fn usage(group: &str, plural: &str, obj: &Value) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let count = if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    };
    out.insert(count, 1.0);
    if !group.is_empty() {
        return out;
    }
    match plural {
        "pods" => {
            let phase = obj.pointer("/status/phase").and_then(Value::as_str);
            if matches!(phase, Some("Succeeded" | "Failed")) {
                // Finished pods hold no quota.
                out.clear();
                return out;
            }
            out.insert("pods".into(), 1.0);
            for (kind, prefix) in [("requests", "requests."), ("limits", "limits.")] {
                for name in ["cpu", "memory", "ephemeral-storage"] {
                    let total = container_sum(obj, kind, name);
                    out.insert(format!("{prefix}{name}"), total);
                    if kind == "requests" && name != "ephemeral-storage" {
                        out.insert(name.into(), total);
                    }
                }
            }
        }
        "services" => {
            out.insert("services".into(), 1.0);
            let kind = obj
                .pointer("/spec/type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP");
            let ports = obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map_or(0, Vec::len) as f64;
            if kind == "NodePort" || kind == "LoadBalancer" {
                out.insert("services.nodeports".into(), ports);
            }
            if kind == "LoadBalancer" {
                out.insert("services.loadbalancers".into(), 1.0);
            }
        }
        "persistentvolumeclaims" => {
            out.insert("persistentvolumeclaims".into(), 1.0);
            let storage = obj
                .pointer("/spec/resources/requests/storage")
                .and_then(Value::as_str)
                .and_then(quantity::parse)
                .unwrap_or(0.0);
            out.insert("requests.storage".into(), storage);
        }
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => {
            out.insert(plural.into(), 1.0);
        }
        _ => {}
    }
    out
}

/// The sum of one resource over a pod's containers (`requests` or `limits`), or what its
/// largest init container asks, whichever is more.
fn container_sum(pod: &Value, kind: &str, name: &str) -> f64 {
    let of = |c: &Value| {
        c.pointer(&format!("/resources/{kind}/{name}"))
            .and_then(|q| match q {
                Value::String(s) => quantity::parse(s),
                Value::Number(n) => n.as_f64(),
                _ => None,
            })
            .unwrap_or(0.0)
    };
    let list = |field: &str| {
        pod.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let sum: f64 = list("containers").iter().map(of).sum();
    let init = list("initContainers").iter().map(of).fold(0.0, f64::max);
    sum.max(init)
}

/// Containers of a pod that do not say `resource` (`requests.cpu`, `limits.memory`), which a
/// quota on it requires them to.
pub fn unspecified(pod: &Value, resource: &str) -> Vec<String> {
    let Some((kind, name)) = resource.split_once('.') else {
        return Vec::new();
    };
    if !matches!(kind, "requests" | "limits") || !matches!(name, "cpu" | "memory") {
        return Vec::new();
    }
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c.pointer(&format!("/resources/{kind}/{name}")).is_none())
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

/// An amount as a quantity string: whole numbers as they are, fractions in milli-units.
pub fn format(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{}m", (v * 1000.0).round() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pods_and_services_count() {
        let pod = json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "1"}}},
            {"name": "b", "resources": {"requests": {"cpu": "250m"}}}]}});
        let u = usage("", "pods", &pod);
        assert_eq!(u["pods"], 1.0);
        assert_eq!(u["requests.cpu"], 0.5);
        assert_eq!(u["cpu"], 0.5);
        assert_eq!(u["limits.cpu"], 1.0);
        assert_eq!(u["count/pods"], 1.0);
        assert_eq!(format(u["requests.cpu"]), "500m");
        assert_eq!(format(u["memory"]), "67108864");
        assert_eq!(unspecified(&pod, "requests.memory"), ["b"]);
        let done = json!({"status": {"phase": "Succeeded"}});
        assert!(usage("", "pods", &done).is_empty());
        let svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}});
        assert_eq!(usage("", "services", &svc)["services.nodeports"], 2.0);
        assert_eq!(
            usage("apps", "deployments", &json!({}))["count/deployments.apps"],
            1.0
        );
    }
}
