//! Table output (`as=Table;g=meta.k8s.io;v=v1`): the columns kubectl prints for a kind.

use serde_json::{Value, json};
use tug_api::{Resource, meta};

/// How long ago an RFC 3339 timestamp was, the way kubectl shows ages (`5s`, `3m`, `2d`).
pub fn age(timestamp: &str) -> String {
    let Ok(then) = timestamp.parse::<jiff::Timestamp>() else {
        return "<unknown>".into();
    };
    let secs = (jiff::Timestamp::now().as_second() - then.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 * 3 => format!("{}m", s / 60),
        s if s < 86400 * 2 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn text(obj: &Value, pointer: &str) -> String {
    match obj.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

fn count(obj: &Value, pointer: &str) -> usize {
    match obj.pointer(pointer) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

fn num(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// Columns after NAME and before AGE, per kind: (name, type, cell).
type Column = (&'static str, &'static str, fn(&Value) -> Value);

/// The reason a container's state gives, as kubectl's STATUS column shows it: the waiting
/// reason, or the terminated reason (else the signal or exit code).
fn state_reason(state: &Value) -> Option<String> {
    if let Some(w) = state.get("waiting") {
        return w["reason"]
            .as_str()
            .filter(|r| !r.is_empty())
            .map(str::to_string);
    }
    let t = state.get("terminated")?;
    if let Some(r) = t["reason"].as_str().filter(|r| !r.is_empty()) {
        return Some(r.to_string());
    }
    Some(match t["signal"].as_i64().filter(|s| *s != 0) {
        Some(sig) => format!("Signal:{sig}"),
        None => format!("ExitCode:{}", t["exitCode"].as_i64().unwrap_or(0)),
    })
}

/// A pod's STATUS column, as Kubernetes prints it: the phase, or the reason of the first
/// init container not done (`Init:...`), or of the last container not running, and
/// `Terminating` while it is being deleted.
fn pod_status(pod: &Value) -> String {
    let mut reason = text(pod, "/status/reason");
    if reason.is_empty() {
        reason = text(pod, "/status/phase");
    }
    let statuses = |p: &str| {
        pod.pointer(p)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let inits = statuses("/status/initContainerStatuses");
    let total_inits = count(pod, "/spec/initContainers");
    let mut initializing = false;
    for (i, c) in inits.iter().enumerate() {
        let state = &c["state"];
        let done = state["terminated"]["exitCode"].as_i64() == Some(0);
        let sidecar_started = c["started"] == json!(true) && state.get("running").is_some();
        if done || sidecar_started {
            continue;
        }
        initializing = true;
        reason = match state_reason(state) {
            Some(r) if r != "PodInitializing" => format!("Init:{r}"),
            _ => format!("Init:{i}/{total_inits}"),
        };
        break;
    }
    if !initializing {
        let mut running = false;
        for c in statuses("/status/containerStatuses").iter().rev() {
            match state_reason(&c["state"]) {
                Some(r) => reason = r,
                None if c["state"].get("running").is_some() && c["ready"] == json!(true) => {
                    running = true
                }
                None => {}
            }
        }
        if reason == "Completed" && running {
            reason = "Running".into();
        }
    }
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        reason = if text(pod, "/status/reason") == "NodeLost" {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    reason
}

fn columns(kind: &str) -> Vec<Column> {
    match kind {
        "Namespace" => vec![("Status", "string", |o| json!(text(o, "/status/phase")))],
        "ConfigMap" => vec![("Data", "integer", |o| {
            json!(count(o, "/data") + count(o, "/binaryData"))
        })],
        "Secret" => vec![
            ("Type", "string", |o| json!(text(o, "/type"))),
            ("Data", "integer", |o| json!(count(o, "/data"))),
        ],
        "Deployment" => vec![
            ("Ready", "string", |o| {
                json!(format!(
                    "{}/{}",
                    num(o, "/status/readyReplicas"),
                    num(o, "/spec/replicas")
                ))
            }),
            ("Up-to-date", "integer", |o| {
                json!(num(o, "/status/updatedReplicas"))
            }),
            ("Available", "integer", |o| {
                json!(num(o, "/status/availableReplicas"))
            }),
        ],
        "ReplicaSet" => vec![
            ("Desired", "integer", |o| json!(num(o, "/spec/replicas"))),
            ("Current", "integer", |o| json!(num(o, "/status/replicas"))),
            ("Ready", "integer", |o| {
                json!(num(o, "/status/readyReplicas"))
            }),
        ],
        "Pod" => vec![
            ("Ready", "string", |o| {
                let total = count(o, "/spec/containers");
                let ready = o
                    .pointer("/status/containerStatuses")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter(|c| c["ready"] == json!(true)).count())
                    .unwrap_or(0);
                json!(format!("{ready}/{total}"))
            }),
            ("Status", "string", |o| json!(pod_status(o))),
            ("Restarts", "integer", |o| {
                json!(
                    o.pointer("/status/containerStatuses")
                        .and_then(Value::as_array)
                        .map(|a| a
                            .iter()
                            .map(|c| c["restartCount"].as_i64().unwrap_or(0))
                            .sum::<i64>())
                        .unwrap_or(0)
                )
            }),
        ],
        "Service" => vec![
            ("Type", "string", |o| json!(text(o, "/spec/type"))),
            ("Cluster-IP", "string", |o| {
                json!(text(o, "/spec/clusterIP"))
            }),
            ("External-IP", "string", |o| {
                let ext = text(o, "/spec/externalIPs/0");
                json!(if ext.is_empty() {
                    "<none>".to_string()
                } else {
                    ext
                })
            }),
            ("Port(s)", "string", |o| {
                let ports: Vec<String> = o
                    .pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .map(|p| {
                                format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("TCP"))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                json!(if ports.is_empty() {
                    "<none>".to_string()
                } else {
                    ports.join(",")
                })
            }),
        ],
        "StatefulSet" => vec![("Ready", "string", |o| {
            json!(format!(
                "{}/{}",
                num(o, "/status/readyReplicas"),
                num(o, "/spec/replicas")
            ))
        })],
        "DaemonSet" => vec![
            ("Desired", "integer", |o| {
                json!(num(o, "/status/desiredNumberScheduled"))
            }),
            ("Current", "integer", |o| {
                json!(num(o, "/status/currentNumberScheduled"))
            }),
            ("Ready", "integer", |o| json!(num(o, "/status/numberReady"))),
            ("Up-to-date", "integer", |o| {
                json!(num(o, "/status/updatedNumberScheduled"))
            }),
            ("Available", "integer", |o| {
                json!(num(o, "/status/numberAvailable"))
            }),
        ],
        "Job" => vec![
            ("Status", "string", |o| {
                let conds = o.pointer("/status/conditions").and_then(Value::as_array);
                let has = |t: &str| {
                    conds.is_some_and(|c| c.iter().any(|c| c["type"] == t && c["status"] == "True"))
                };
                json!(if has("Complete") {
                    "Complete"
                } else if has("Failed") {
                    "Failed"
                } else {
                    "Running"
                })
            }),
            ("Completions", "string", |o| {
                json!(format!(
                    "{}/{}",
                    num(o, "/status/succeeded"),
                    o.pointer("/spec/completions")
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                ))
            }),
        ],
        "CronJob" => vec![
            ("Schedule", "string", |o| json!(text(o, "/spec/schedule"))),
            ("Suspend", "boolean", |o| {
                json!(
                    o.pointer("/spec/suspend")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                )
            }),
            ("Active", "integer", |o| json!(count(o, "/status/active"))),
            ("Last Schedule", "string", |o| {
                let t = text(o, "/status/lastScheduleTime");
                json!(if t.is_empty() {
                    "<none>".to_string()
                } else {
                    age(&t)
                })
            }),
        ],
        "Endpoints" => vec![("Endpoints", "string", |o| {
            let mut eps = Vec::new();
            for subset in o
                .pointer("/subsets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let ports: Vec<i64> = subset["ports"]
                    .as_array()
                    .map(|p| p.iter().filter_map(|p| p["port"].as_i64()).collect())
                    .unwrap_or_default();
                for a in subset["addresses"].as_array().into_iter().flatten() {
                    let ip = a["ip"].as_str().unwrap_or("");
                    if ports.is_empty() {
                        eps.push(ip.to_string())
                    } else {
                        eps.extend(ports.iter().map(|p| format!("{ip}:{p}")))
                    }
                }
            }
            json!(if eps.is_empty() {
                "<none>".to_string()
            } else {
                eps.join(",")
            })
        })],
        "PersistentVolumeClaim" => vec![
            ("Status", "string", |o| json!(text(o, "/status/phase"))),
            ("Volume", "string", |o| json!(text(o, "/spec/volumeName"))),
            ("Capacity", "string", |o| {
                json!(text(o, "/status/capacity/storage"))
            }),
            ("Storage Class", "string", |o| {
                json!(text(o, "/spec/storageClassName"))
            }),
        ],
        "PersistentVolume" => vec![
            ("Capacity", "string", |o| {
                json!(text(o, "/spec/capacity/storage"))
            }),
            ("Reclaim Policy", "string", |o| {
                json!(text(o, "/spec/persistentVolumeReclaimPolicy"))
            }),
            ("Status", "string", |o| json!(text(o, "/status/phase"))),
            ("Storage Class", "string", |o| {
                json!(text(o, "/spec/storageClassName"))
            }),
        ],
        "Ingress" => vec![
            ("Class", "string", |o| {
                let c = text(o, "/spec/ingressClassName");
                json!(if c.is_empty() {
                    "<none>".to_string()
                } else {
                    c
                })
            }),
            ("Hosts", "string", |o| {
                let hosts: Vec<String> = o
                    .pointer("/spec/rules")
                    .and_then(Value::as_array)
                    .map(|r| {
                        r.iter()
                            .filter_map(|r| r["host"].as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                json!(if hosts.is_empty() {
                    "*".to_string()
                } else {
                    hosts.join(",")
                })
            }),
        ],
        "Event" => vec![
            ("Type", "string", |o| json!(text(o, "/type"))),
            ("Reason", "string", |o| json!(text(o, "/reason"))),
            ("Object", "string", |o| {
                json!(format!(
                    "{}/{}",
                    text(o, "/involvedObject/kind").to_ascii_lowercase(),
                    text(o, "/involvedObject/name")
                ))
            }),
            ("Message", "string", |o| json!(text(o, "/message"))),
        ],
        "ServiceAccount" => vec![("Secrets", "integer", |o| json!(count(o, "/secrets")))],
        "Lease" => vec![("Holder", "string", |o| {
            json!(text(o, "/spec/holderIdentity"))
        })],
        "StorageClass" => vec![
            ("Provisioner", "string", |o| json!(text(o, "/provisioner"))),
            ("Reclaim Policy", "string", |o| {
                let p = text(o, "/reclaimPolicy");
                json!(if p.is_empty() {
                    "Delete".to_string()
                } else {
                    p
                })
            }),
        ],
        "PriorityClass" => vec![
            ("Value", "integer", |o| json!(num(o, "/value"))),
            ("Global-Default", "boolean", |o| {
                json!(
                    o.pointer("/globalDefault")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                )
            }),
        ],
        "HorizontalPodAutoscaler" => vec![
            ("Reference", "string", |o| {
                json!(format!(
                    "{}/{}",
                    text(o, "/spec/scaleTargetRef/kind"),
                    text(o, "/spec/scaleTargetRef/name")
                ))
            }),
            ("MinPods", "integer", |o| {
                json!(
                    o.pointer("/spec/minReplicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                )
            }),
            ("MaxPods", "integer", |o| json!(num(o, "/spec/maxReplicas"))),
            ("Replicas", "integer", |o| {
                json!(num(o, "/status/currentReplicas"))
            }),
        ],
        "PodDisruptionBudget" => vec![
            ("Min Available", "string", |o| {
                let v = text(o, "/spec/minAvailable");
                json!(if v.is_empty() { "N/A".to_string() } else { v })
            }),
            ("Max Unavailable", "string", |o| {
                let v = text(o, "/spec/maxUnavailable");
                json!(if v.is_empty() { "N/A".to_string() } else { v })
            }),
            ("Allowed Disruptions", "integer", |o| {
                json!(num(o, "/status/disruptionsAllowed"))
            }),
        ],
        "Role" | "ClusterRole" => vec![("Created At", "date", |o| {
            json!(text(o, "/metadata/creationTimestamp"))
        })],
        "RoleBinding" | "ClusterRoleBinding" => vec![("Role", "string", |o| {
            json!(format!(
                "{}/{}",
                text(o, "/roleRef/kind"),
                text(o, "/roleRef/name")
            ))
        })],
        "NetworkPolicy" => vec![("Pod-Selector", "string", |o| {
            let labels: Vec<String> = o
                .pointer("/spec/podSelector/matchLabels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect()
                })
                .unwrap_or_default();
            json!(if labels.is_empty() {
                "<none>".to_string()
            } else {
                labels.join(",")
            })
        })],
        "IngressClass" => vec![("Controller", "string", |o| {
            json!(text(o, "/spec/controller"))
        })],
        "RuntimeClass" => vec![("Handler", "string", |o| json!(text(o, "/handler")))],
        "CSIDriver" => vec![("Attach-Required", "boolean", |o| {
            json!(
                o.pointer("/spec/attachRequired")
                    .and_then(Value::as_bool)
                    .unwrap_or(true)
            )
        })],
        "VolumeAttachment" => vec![
            ("Attacher", "string", |o| json!(text(o, "/spec/attacher"))),
            ("PV", "string", |o| {
                json!(text(o, "/spec/source/persistentVolumeName"))
            }),
            ("Node", "string", |o| json!(text(o, "/spec/nodeName"))),
            ("Attached", "boolean", |o| {
                json!(
                    o.pointer("/status/attached")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                )
            }),
        ],
        "CertificateSigningRequest" => vec![
            ("SignerName", "string", |o| {
                json!(text(o, "/spec/signerName"))
            }),
            ("Requestor", "string", |o| json!(text(o, "/spec/username"))),
            ("Condition", "string", |o| {
                let conds: Vec<String> = o
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .map(|c| {
                        c.iter()
                            .filter_map(|c| c["type"].as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                json!(if conds.is_empty() {
                    "Pending".to_string()
                } else {
                    conds.join(",")
                })
            }),
        ],
        "CustomResourceDefinition" => vec![("Created At", "date", |o| {
            json!(text(o, "/metadata/creationTimestamp"))
        })],
        "EndpointSlice" => vec![
            ("AddressType", "string", |o| json!(text(o, "/addressType"))),
            ("Ports", "string", |o| {
                let ports: Vec<String> = o
                    .pointer("/ports")
                    .and_then(Value::as_array)
                    .map(|p| {
                        p.iter()
                            .filter_map(|p| p["port"].as_i64().map(|n| n.to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                json!(if ports.is_empty() {
                    "<unset>".to_string()
                } else {
                    ports.join(",")
                })
            }),
            ("Endpoints", "string", |o| {
                let addrs: Vec<String> = o
                    .pointer("/endpoints")
                    .and_then(Value::as_array)
                    .map(|e| {
                        e.iter()
                            .filter_map(|e| e["addresses"][0].as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                json!(if addrs.is_empty() {
                    "<unset>".to_string()
                } else {
                    addrs.join(",")
                })
            }),
        ],
        "ResourceQuota" => vec![("Request", "string", |o| {
            let hard = o
                .pointer("/status/hard")
                .or_else(|| o.pointer("/spec/hard"))
                .and_then(Value::as_object);
            let used = o.pointer("/status/used").and_then(Value::as_object);
            let parts: Vec<String> = hard
                .map(|h| {
                    h.iter()
                        .map(|(k, v)| {
                            format!(
                                "{k}: {}/{}",
                                used.and_then(|u| u.get(k))
                                    .and_then(Value::as_str)
                                    .unwrap_or("0"),
                                v.as_str().unwrap_or("")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!(parts.join(", "))
        })],
        "ReplicationController" => vec![
            ("Desired", "integer", |o| json!(num(o, "/spec/replicas"))),
            ("Current", "integer", |o| json!(num(o, "/status/replicas"))),
            ("Ready", "integer", |o| {
                json!(num(o, "/status/readyReplicas"))
            }),
        ],
        "ControllerRevision" => vec![
            ("Controller", "string", |o| {
                let owner = o.pointer("/metadata/ownerReferences/0");
                json!(
                    owner
                        .map(|r| format!(
                            "{}/{}",
                            r["kind"].as_str().unwrap_or("").to_ascii_lowercase(),
                            r["name"].as_str().unwrap_or("")
                        ))
                        .unwrap_or_default()
                )
            }),
            ("Revision", "integer", |o| json!(num(o, "/revision"))),
        ],
        "Node" => vec![("Status", "string", |o| {
            let ready = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|c| c["type"] == "Ready"))
                .map(|c| c["status"] == "True");
            json!(match ready {
                Some(true) => "Ready",
                _ => "NotReady",
            })
        })],
        _ => Vec::new(),
    }
}

/// The column definitions of a kind's Table.
pub fn column_definitions(r: &Resource) -> Vec<Value> {
    let mut defs = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    for (name, ty, _) in columns(r.kind) {
        defs.push(
            json!({"name": name, "type": ty, "format": "", "description": "", "priority": 0}),
        );
    }
    defs.push(json!({"name": "Age", "type": "string", "format": "", "description": "CreationTimestamp", "priority": 0}));
    defs
}

/// One Table row for an object.
pub fn row(r: &Resource, item: &Value) -> Value {
    let mut cells = vec![json!(meta::name(item))];
    for (_, _, cell) in columns(r.kind) {
        cells.push(cell(item));
    }
    cells.push(json!(age(&text(item, "/metadata/creationTimestamp"))));
    let partial = json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": item.get("metadata").cloned().unwrap_or(Value::Null),
    });
    json!({"cells": cells, "object": partial})
}

/// A Table from rows and the list metadata they came with.
pub fn table_of(r: &Resource, rows: Vec<Value>, list_metadata: Option<&Value>) -> Value {
    let mut metadata = json!({});
    if let Some(m) = list_metadata {
        for k in ["resourceVersion", "continue", "remainingItemCount"] {
            if let Some(v) = m.get(k) {
                metadata[k] = v.clone();
            }
        }
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": column_definitions(r),
        "rows": rows,
    })
}

/// The Table of a list or of one object.
pub fn to_table(r: &Resource, obj: &Value) -> Value {
    match obj.get("items").and_then(Value::as_array) {
        Some(items) => table_of(
            r,
            items.iter().map(|i| row(r, i)).collect(),
            obj.get("metadata"),
        ),
        None => table_of(r, vec![row(r, obj)], None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_status_shows_reasons_like_kubectl() {
        let pod = |status: Value, deleting: bool| {
            let mut p =
                json!({"metadata": {}, "spec": {"initContainers": [{}, {}]}, "status": status});
            if deleting {
                p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            }
            p
        };
        let crashing = pod(
            json!({"phase": "Running", "containerStatuses": [
                {"state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
            false,
        );
        assert_eq!(pod_status(&crashing), "CrashLoopBackOff");
        let initializing = pod(
            json!({"phase": "Pending", "initContainerStatuses": [
                {"state": {"terminated": {"exitCode": 0}}},
                {"state": {"running": {}}}]}),
            false,
        );
        assert_eq!(pod_status(&initializing), "Init:1/2");
        let init_failed = pod(
            json!({"phase": "Pending", "initContainerStatuses": [
                {"state": {"terminated": {"exitCode": 2, "reason": "Error"}}}]}),
            false,
        );
        assert_eq!(pod_status(&init_failed), "Init:Error");
        let killed = pod(
            json!({"phase": "Running", "containerStatuses": [
                {"state": {"terminated": {"exitCode": 137, "signal": 9}}}]}),
            false,
        );
        assert_eq!(pod_status(&killed), "Signal:9");
        let running = pod(
            json!({"phase": "Running", "containerStatuses": [
                {"ready": true, "state": {"running": {}}}]}),
            false,
        );
        assert_eq!(pod_status(&running), "Running");
        assert_eq!(
            pod_status(&pod(json!({"phase": "Running"}), true)),
            "Terminating"
        );
    }

    #[test]
    fn kinds_get_their_columns() {
        let cron = tug_api::catalog::lookup("batch", "v1", "cronjobs").expect("cronjobs");
        let t = to_table(
            cron,
            &json!({"metadata": {"name": "c", "creationTimestamp": "2020-01-01T00:00:00Z"}, "spec": {"schedule": "*/5 * * * *"}}),
        );
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(
            names,
            [
                "Name",
                "Schedule",
                "Suspend",
                "Active",
                "Last Schedule",
                "Age"
            ]
        );
        assert_eq!(t["rows"][0]["cells"][1], "*/5 * * * *");
        assert_eq!(t["rows"][0]["cells"][4], "<none>");
        let svc = tug_api::catalog::lookup("", "v1", "services").expect("services");
        let t = to_table(
            svc,
            &json!({"items": [{"metadata": {"name": "s"}, "spec": {"type": "ClusterIP", "ports": [{"port": 80}]}}], "metadata": {"resourceVersion": "7"}}),
        );
        assert_eq!(t["rows"][0]["cells"][4], "80/TCP");
        assert_eq!(t["metadata"]["resourceVersion"], "7");
    }
}
