//! The columns of each kind's Table, in kube-apiserver's order, with how each cell is made.

use serde_json::{Value, json};

use super::cells::*;
use super::{Column, col, wide};

/// The Name column every kind but Event starts with.
const NAME: Column = Column {
    name: "Name",
    ty: "string",
    format: "name",
    priority: 0,
    cell: |o| json!(text(o, "/metadata/name")),
};

/// The Age column: how long ago the object was created.
const AGE: Column = col("Age", "string", |o| {
    json!(age(&text(o, "/metadata/creationTimestamp")))
});

/// The Created At column of kinds without a printer of their own (kube-apiserver's default
/// Table): the creation time as written.
const CREATED_AT: Column = col("Created At", "date", |o| {
    json!(text(o, "/metadata/creationTimestamp"))
});

/// A kind's columns, in order: Name, the kind's own, Age, then the wide ones, except where
/// Kubernetes places them otherwise.
pub(super) fn columns(kind: &str) -> Vec<Column> {
    let mut all = match kind {
        "Event" => return event_columns(),
        "Node" => return node_columns(),
        "CertificateSigningRequest" => vec![NAME, AGE],
        _ => vec![NAME],
    };
    all.extend(main_columns(kind));
    match kind {
        "CertificateSigningRequest" => {}
        "Role" | "ClusterRole" | "LimitRange" => all.push(CREATED_AT),
        "CustomResourceDefinition" => {
            all.extend(crd_columns());
            all.push(CREATED_AT);
        }
        _ => all.push(AGE),
    }
    all.extend(wide_columns(kind));
    all
}

/// Conditions a row carries: a finished pod's `Completed`.
pub(super) fn row_conditions(kind: &str, o: &Value) -> Option<Value> {
    if kind != "Pod" {
        return None;
    }
    let (reason, message) = match text(o, "/status/phase").as_str() {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
}

/// The Containers, Images and (optionally) Selector columns of a workload, from where its pod
/// template and selector sit.
fn workload_wide(selector: Option<fn(&Value) -> Value>) -> Vec<Column> {
    let mut v = vec![
        wide("Containers", "string", |o| {
            json!(container_field(template_containers(o), "name"))
        }),
        wide("Images", "string", |o| {
            json!(container_field(template_containers(o), "image"))
        }),
    ];
    if let Some(cell) = selector {
        v.push(wide("Selector", "string", cell));
    }
    v
}

/// A kind's priority-1 columns, after Age.
fn wide_columns(kind: &str) -> Vec<Column> {
    match kind {
        "Pod" => vec![
            wide("IP", "string", |o| {
                json!(or_none(text(o, "/status/podIPs/0/ip")))
            }),
            wide("Node", "string", |o| {
                json!(or_none(text(o, "/spec/nodeName")))
            }),
            wide("Nominated Node", "string", |o| {
                json!(or_none(text(o, "/status/nominatedNodeName")))
            }),
            wide("Readiness Gates", "string", |o| json!(readiness_gates(o))),
        ],
        "Service" => vec![wide("Selector", "string", |o| {
            json!(format_labels(o.pointer("/spec/selector")))
        })],
        "Deployment" => workload_wide(Some(|o| {
            json!(selector_string(o.pointer("/spec/selector")).unwrap_or_default())
        })),
        "ReplicaSet" | "DaemonSet" | "Job" => workload_wide(Some(|o| {
            json!(format_label_selector(o.pointer("/spec/selector")))
        })),
        "CronJob" => workload_wide(Some(|o| {
            json!(format_label_selector(
                o.pointer("/spec/jobTemplate/spec/selector")
            ))
        })),
        "ReplicationController" => {
            workload_wide(Some(|o| json!(format_labels(o.pointer("/spec/selector")))))
        }
        "StatefulSet" => workload_wide(None),
        "PersistentVolume" | "PersistentVolumeClaim" => vec![wide("VolumeMode", "string", |o| {
            json!(or_unset(text(o, "/spec/volumeMode")))
        })],
        "RoleBinding" | "ClusterRoleBinding" => vec![
            wide("Users", "string", |o| json!(subjects(o, "User"))),
            wide("Groups", "string", |o| json!(subjects(o, "Group"))),
            wide("ServiceAccounts", "string", |o| {
                json!(subjects(o, "ServiceAccount"))
            }),
        ],
        _ => Vec::new(),
    }
}

/// A node: Name, Status, Roles, Age, Version, then the wide ones.
fn node_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Status", "string", |o| json!(node_status(o))),
        col("Roles", "string", |o| json!(node_roles(o))),
        AGE,
        col("Version", "string", |o| {
            json!(text(o, "/status/nodeInfo/kubeletVersion"))
        }),
        wide("Internal-IP", "string", |o| {
            json!(node_address(o, "InternalIP"))
        }),
        wide("External-IP", "string", |o| {
            json!(node_address(o, "ExternalIP"))
        }),
        wide("OS-Image", "string", |o| {
            json!(or_unknown(text(o, "/status/nodeInfo/osImage")))
        }),
        wide("Kernel-Version", "string", |o| {
            json!(or_unknown(text(o, "/status/nodeInfo/kernelVersion")))
        }),
        wide("Container-Runtime", "string", |o| {
            json!(or_unknown(text(
                o,
                "/status/nodeInfo/containerRuntimeVersion"
            )))
        }),
    ]
}

/// An event: no Name first and no Age; the wide columns sit among the others.
fn event_columns() -> Vec<Column> {
    vec![
        col("Last Seen", "string", |o| json!(event_last_seen(o))),
        col("Type", "string", |o| json!(text(o, "/type"))),
        col("Reason", "string", |o| json!(text(o, "/reason"))),
        col("Object", "string", |o| {
            let kind = text(o, "/involvedObject/kind").to_ascii_lowercase();
            let name = text(o, "/involvedObject/name");
            json!(if name.is_empty() {
                kind
            } else {
                format!("{kind}/{name}")
            })
        }),
        wide("Subobject", "string", |o| {
            json!(text(o, "/involvedObject/fieldPath"))
        }),
        wide("Source", "string", |o| json!(event_source(o))),
        col("Message", "string", |o| json!(text(o, "/message").trim())),
        wide("First Seen", "string", |o| json!(event_first_seen(o))),
        wide("Count", "string", |o| json!(event_count(o))),
        Column {
            priority: 1,
            ..NAME
        },
    ]
}

/// A CustomResourceDefinition's Group, Scope and Versions.
fn crd_columns() -> Vec<Column> {
    vec![
        col("Group", "string", |o| json!(text(o, "/spec/group"))),
        col("Scope", "string", |o| json!(text(o, "/spec/scope"))),
        col("Versions", "string", |o| {
            let mut v: Vec<String> = o
                .pointer("/spec/versions")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(|v| text(v, "/name")).collect())
                .unwrap_or_default();
            v.sort();
            json!(v.join(","))
        }),
    ]
}

/// A kind's priority-0 columns between Name and Age.
fn main_columns(kind: &str) -> Vec<Column> {
    match kind {
        "Namespace" => vec![col("Status", "string", |o| json!(text(o, "/status/phase")))],
        "ConfigMap" => vec![col("Data", "string", |o| {
            json!(count(o, "/data") + count(o, "/binaryData"))
        })],
        "Secret" => vec![
            col("Type", "string", |o| json!(text(o, "/type"))),
            col("Data", "string", |o| json!(count(o, "/data"))),
        ],
        "Deployment" => vec![
            col("Ready", "string", |o| {
                json!(format!(
                    "{}/{}",
                    num(o, "/status/readyReplicas"),
                    num(o, "/spec/replicas")
                ))
            }),
            col("Up-to-date", "string", |o| {
                json!(num(o, "/status/updatedReplicas"))
            }),
            col("Available", "string", |o| {
                json!(num(o, "/status/availableReplicas"))
            }),
        ],
        "ReplicaSet" => vec![
            col("Desired", "integer", |o| json!(num(o, "/spec/replicas"))),
            col("Current", "integer", |o| json!(num(o, "/status/replicas"))),
            col("Ready", "integer", |o| {
                json!(num(o, "/status/readyReplicas"))
            }),
        ],
        "Pod" => vec![
            col("Ready", "string", |o| json!(pod_ready(o))),
            col("Status", "string", |o| json!(pod_status(o))),
            col("Restarts", "string", |o| json!(pod_restarts(o))),
        ],
        "Service" => vec![
            col("Type", "string", |o| json!(text(o, "/spec/type"))),
            col("Cluster-IP", "string", |o| {
                let ip = text(o, "/spec/clusterIPs/0");
                json!(or_none(if ip.is_empty() {
                    text(o, "/spec/clusterIP")
                } else {
                    ip
                }))
            }),
            col("External-IP", "string", |o| json!(service_external_ip(o))),
            col("Port(s)", "string", |o| json!(service_ports(o))),
        ],
        "StatefulSet" => vec![col("Ready", "string", |o| {
            json!(format!(
                "{}/{}",
                num(o, "/status/readyReplicas"),
                num(o, "/spec/replicas")
            ))
        })],
        "DaemonSet" => vec![
            col("Desired", "integer", |o| {
                json!(num(o, "/status/desiredNumberScheduled"))
            }),
            col("Current", "integer", |o| {
                json!(num(o, "/status/currentNumberScheduled"))
            }),
            col("Ready", "integer", |o| json!(num(o, "/status/numberReady"))),
            col("Up-to-date", "integer", |o| {
                json!(num(o, "/status/updatedNumberScheduled"))
            }),
            col("Available", "integer", |o| {
                json!(num(o, "/status/numberAvailable"))
            }),
            col("Node Selector", "string", |o| {
                json!(format_labels(o.pointer("/spec/template/spec/nodeSelector")))
            }),
        ],
        "Job" => vec![
            col("Status", "string", |o| json!(job_status(o))),
            col("Completions", "string", |o| {
                let succeeded = num(o, "/status/succeeded");
                json!(
                    match o.pointer("/spec/completions").and_then(Value::as_i64) {
                        Some(c) => format!("{succeeded}/{c}"),
                        None => match num(o, "/spec/parallelism") {
                            p if p > 1 => format!("{succeeded}/1 of {p}"),
                            _ => format!("{succeeded}/1"),
                        },
                    }
                )
            }),
            col("Duration", "string", |o| json!(job_duration(o))),
        ],
        "CronJob" => vec![
            col("Schedule", "string", |o| json!(text(o, "/spec/schedule"))),
            col("Timezone", "string", |o| {
                json!(or_none(text(o, "/spec/timeZone")))
            }),
            col("Suspend", "boolean", |o| {
                json!(match o.pointer("/spec/suspend").and_then(Value::as_bool) {
                    Some(true) => "True",
                    Some(false) => "False",
                    None => "<unset>",
                })
            }),
            col("Active", "integer", |o| json!(count(o, "/status/active"))),
            col("Last Schedule", "string", |o| {
                let t = text(o, "/status/lastScheduleTime");
                json!(if t.is_empty() {
                    "<none>".to_string()
                } else {
                    age(&t)
                })
            }),
        ],
        "Endpoints" => vec![col("Endpoints", "string", |o| {
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
            col("Status", "string", |o| json!(text(o, "/status/phase"))),
            col("Volume", "string", |o| json!(text(o, "/spec/volumeName"))),
            col("Capacity", "string", |o| {
                json!(text(o, "/status/capacity/storage"))
            }),
            col("Storage Class", "string", |o| {
                json!(text(o, "/spec/storageClassName"))
            }),
        ],
        "PersistentVolume" => vec![
            col("Capacity", "string", |o| {
                json!(text(o, "/spec/capacity/storage"))
            }),
            col("Reclaim Policy", "string", |o| {
                json!(text(o, "/spec/persistentVolumeReclaimPolicy"))
            }),
            col("Status", "string", |o| json!(text(o, "/status/phase"))),
            col("Storage Class", "string", |o| {
                json!(text(o, "/spec/storageClassName"))
            }),
        ],
        "Ingress" => vec![
            col("Class", "string", |o| {
                let c = text(o, "/spec/ingressClassName");
                json!(if c.is_empty() {
                    "<none>".to_string()
                } else {
                    c
                })
            }),
            col("Hosts", "string", |o| {
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
        "ServiceAccount" => vec![col("Secrets", "string", |o| json!(count(o, "/secrets")))],
        "Lease" => vec![col("Holder", "string", |o| {
            json!(text(o, "/spec/holderIdentity"))
        })],
        "StorageClass" => vec![
            col("Provisioner", "string", |o| json!(text(o, "/provisioner"))),
            col("Reclaim Policy", "string", |o| {
                let p = text(o, "/reclaimPolicy");
                json!(if p.is_empty() {
                    "Delete".to_string()
                } else {
                    p
                })
            }),
        ],
        "PriorityClass" => vec![
            col("Value", "integer", |o| json!(num(o, "/value"))),
            col("Global-Default", "boolean", |o| {
                json!(
                    o.pointer("/globalDefault")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                )
            }),
        ],
        "HorizontalPodAutoscaler" => vec![
            col("Reference", "string", |o| {
                json!(format!(
                    "{}/{}",
                    text(o, "/spec/scaleTargetRef/kind"),
                    text(o, "/spec/scaleTargetRef/name")
                ))
            }),
            col("MinPods", "integer", |o| {
                json!(
                    o.pointer("/spec/minReplicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                )
            }),
            col("MaxPods", "integer", |o| json!(num(o, "/spec/maxReplicas"))),
            col("Replicas", "integer", |o| {
                json!(num(o, "/status/currentReplicas"))
            }),
        ],
        "PodDisruptionBudget" => vec![
            col("Min Available", "string", |o| {
                let v = text(o, "/spec/minAvailable");
                json!(if v.is_empty() { "N/A".to_string() } else { v })
            }),
            col("Max Unavailable", "string", |o| {
                let v = text(o, "/spec/maxUnavailable");
                json!(if v.is_empty() { "N/A".to_string() } else { v })
            }),
            col("Allowed Disruptions", "integer", |o| {
                json!(num(o, "/status/disruptionsAllowed"))
            }),
        ],
        "RoleBinding" | "ClusterRoleBinding" => vec![col("Role", "string", |o| {
            json!(format!(
                "{}/{}",
                text(o, "/roleRef/kind"),
                text(o, "/roleRef/name")
            ))
        })],
        "NetworkPolicy" => vec![col("Pod-Selector", "string", |o| {
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
        "IngressClass" => vec![col("Controller", "string", |o| {
            json!(text(o, "/spec/controller"))
        })],
        "RuntimeClass" => vec![col("Handler", "string", |o| json!(text(o, "/handler")))],
        "CSIDriver" => vec![col("Attach-Required", "boolean", |o| {
            json!(
                o.pointer("/spec/attachRequired")
                    .and_then(Value::as_bool)
                    .unwrap_or(true)
            )
        })],
        "VolumeAttachment" => vec![
            col("Attacher", "string", |o| json!(text(o, "/spec/attacher"))),
            col("PV", "string", |o| {
                json!(text(o, "/spec/source/persistentVolumeName"))
            }),
            col("Node", "string", |o| json!(text(o, "/spec/nodeName"))),
            col("Attached", "boolean", |o| {
                json!(
                    o.pointer("/status/attached")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                )
            }),
        ],
        "CertificateSigningRequest" => vec![
            col("SignerName", "string", |o| {
                json!(or_none(text(o, "/spec/signerName")))
            }),
            col("Requestor", "string", |o| json!(text(o, "/spec/username"))),
            col("RequestedDuration", "string", |o| {
                json!(
                    match o.pointer("/spec/expirationSeconds").and_then(Value::as_i64) {
                        Some(s) => human_duration(s),
                        None => "<none>".to_string(),
                    }
                )
            }),
            col("Condition", "string", |o| json!(csr_condition(o))),
        ],
        "EndpointSlice" => vec![
            col("AddressType", "string", |o| json!(text(o, "/addressType"))),
            col("Ports", "string", |o| {
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
            col("Endpoints", "string", |o| {
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
        "ResourceQuota" => vec![col("Request", "string", |o| {
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
            col("Desired", "integer", |o| json!(num(o, "/spec/replicas"))),
            col("Current", "integer", |o| json!(num(o, "/status/replicas"))),
            col("Ready", "integer", |o| {
                json!(num(o, "/status/readyReplicas"))
            }),
        ],
        "ControllerRevision" => vec![
            col("Controller", "string", |o| {
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
            col("Revision", "string", |o| json!(num(o, "/revision"))),
        ],
        "APIService" => vec![
            col("Service", "string", |o| {
                json!(match o.pointer("/spec/service").filter(|s| !s.is_null()) {
                    Some(svc) => format!("{}/{}", text(svc, "/namespace"), text(svc, "/name")),
                    None => "Local".to_string(),
                })
            }),
            col("Available", "string", |o| json!(api_service_available(o))),
        ],
        _ => Vec::new(),
    }
}
