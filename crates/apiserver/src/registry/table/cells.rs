//! What cells are made of: ages, labels and selectors, container lists, a pod's status.

use serde_json::{Value, json};

/// How long ago an RFC 3339 timestamp was, as Kubernetes prints ages; `<unknown>` without one.
pub fn age(timestamp: &str) -> String {
    let Ok(then) = timestamp.parse::<jiff::Timestamp>() else {
        return "<unknown>".into();
    };
    human_duration(jiff::Timestamp::now().as_second() - then.as_second())
}

/// A duration in seconds the way Kubernetes shows it: `45s`, `5m30s`, `3h20m`, `2d4h`, `400d`,
/// `3y20d`, more precise the shorter it is.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        return with_rest(minutes, "m", secs % 60, "s");
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return with_rest(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return with_rest(days, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return with_rest(years, "y", days % 365, "d");
    }
    format!("{years}y")
}

/// `5m` or `5m30s`.
fn with_rest(big: i64, unit: &str, rest: i64, rest_unit: &str) -> String {
    if rest == 0 {
        format!("{big}{unit}")
    } else {
        format!("{big}{unit}{rest}{rest_unit}")
    }
}

/// `value`, or `<none>` when it is empty.
pub fn or_none(value: String) -> String {
    or(value, "<none>")
}

/// `value`, or `<unset>` when it is empty.
pub fn or_unset(value: String) -> String {
    or(value, "<unset>")
}

/// `value`, or `<unknown>` when it is empty.
pub fn or_unknown(value: String) -> String {
    or(value, "<unknown>")
}

fn or(value: String, placeholder: &str) -> String {
    if value.is_empty() {
        placeholder.to_string()
    } else {
        value
    }
}

/// A label map as `k=v,k=v` (keys sorted), or `<none>`.
pub fn format_labels(map: Option<&Value>) -> String {
    let Some(m) = map.and_then(Value::as_object).filter(|m| !m.is_empty()) else {
        return "<none>".into();
    };
    let mut pairs: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    pairs.sort();
    pairs.join(",")
}

/// A LabelSelector as Kubernetes writes selectors: one requirement per key, sorted by key
/// (`app=web`, `tier in (a,b)`, `tier notin (a)`, `gpu`, `!gpu`); `None` for no selector.
pub fn selector_string(selector: Option<&Value>) -> Option<String> {
    let sel = selector.filter(|s| !s.is_null())?;
    let mut reqs: Vec<(String, String)> = Vec::new();
    for (k, v) in sel["matchLabels"].as_object().into_iter().flatten() {
        reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or(""))));
    }
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or("").to_string();
        let mut values: Vec<&str> = e["values"]
            .as_array()
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        values.sort_unstable();
        values.dedup();
        let text = match e["operator"].as_str().unwrap_or("") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.clone(),
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other} ({})", values.join(",")),
        };
        reqs.push((key, text));
    }
    reqs.sort();
    Some(
        reqs.into_iter()
            .map(|(_, t)| t)
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// A LabelSelector as the workloads' Selector column shows it: `<none>` when it selects
/// nothing in particular.
pub fn format_label_selector(selector: Option<&Value>) -> String {
    or_none(selector_string(selector).unwrap_or_default())
}

/// The containers of a workload's pod template (a CronJob's, through its Job template).
pub fn template_containers(o: &Value) -> Option<&Vec<Value>> {
    o.pointer("/spec/template/spec/containers")
        .or_else(|| o.pointer("/spec/jobTemplate/spec/template/spec/containers"))
        .and_then(Value::as_array)
}

/// One field of each container, comma-joined.
pub fn container_field(containers: Option<&Vec<Value>>, field: &str) -> String {
    containers
        .map(|c| {
            c.iter()
                .map(|c| c[field].as_str().unwrap_or(""))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// The names of a binding's subjects of one kind, `, `-joined (ServiceAccounts as
/// `namespace/name`).
pub fn subjects(o: &Value, kind: &str) -> String {
    o["subjects"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter(|s| s["kind"] == kind)
                .map(|s| {
                    let name = s["name"].as_str().unwrap_or("");
                    if kind == "ServiceAccount" {
                        format!("{}/{name}", s["namespace"].as_str().unwrap_or(""))
                    } else {
                        name.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// A pod's Ready column: ready containers (sidecars counted) of all.
pub fn pod_ready(o: &Value) -> String {
    let sidecars = o
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .map(|c| c.iter().filter(|c| c["restartPolicy"] == "Always").count())
        .unwrap_or(0);
    let total = count(o, "/spec/containers") + sidecars;
    let ready_in = |pointer: &str| {
        o.pointer(pointer)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter(|c| c["ready"] == json!(true) && c["state"].get("running").is_some())
                    .count()
            })
            .unwrap_or(0)
    };
    let ready = ready_in("/status/containerStatuses") + ready_in("/status/initContainerStatuses");
    format!("{ready}/{total}")
}

/// A pod's Restarts column: the restarts of its containers, and how long ago the last one
/// ended (`3 (5m ago)`).
pub fn pod_restarts(o: &Value) -> String {
    let mut restarts = 0;
    let mut last: Option<jiff::Timestamp> = None;
    for pointer in ["/status/initContainerStatuses", "/status/containerStatuses"] {
        for c in o
            .pointer(pointer)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            restarts += c["restartCount"].as_i64().unwrap_or(0);
            let finished = c
                .pointer("/lastState/terminated/finishedAt")
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<jiff::Timestamp>().ok());
            if let Some(t) = finished {
                last = Some(last.map_or(t, |l| l.max(t)));
            }
        }
    }
    match last {
        Some(t) if restarts != 0 => format!(
            "{restarts} ({} ago)",
            human_duration(jiff::Timestamp::now().as_second() - t.as_second())
        ),
        _ => restarts.to_string(),
    }
}

/// A pod's Readiness Gates column: gates whose condition is True, of all; `<none>`.
pub fn readiness_gates(o: &Value) -> String {
    let Some(gates) = o
        .pointer("/spec/readinessGates")
        .and_then(Value::as_array)
        .filter(|g| !g.is_empty())
    else {
        return "<none>".into();
    };
    let conditions = o.pointer("/status/conditions").and_then(Value::as_array);
    let met = gates
        .iter()
        .filter(|g| {
            conditions
                .and_then(|c| c.iter().find(|c| c["type"] == g["conditionType"]))
                .is_some_and(|c| c["status"] == "True")
        })
        .count();
    format!("{met}/{}", gates.len())
}

/// A node's Status column: its Ready condition, and `SchedulingDisabled` when cordoned.
pub fn node_status(o: &Value) -> String {
    let ready = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"));
    let mut status = match ready {
        Some(c) if c["status"] == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }
    .to_string();
    if o.pointer("/spec/unschedulable") == Some(&json!(true)) {
        status.push_str(",SchedulingDisabled");
    }
    status
}

/// A node's Roles column, from its `node-role.kubernetes.io/ROLE` and `kubernetes.io/role`
/// labels; `<none>`.
pub fn node_roles(o: &Value) -> String {
    let mut roles: Vec<String> = Vec::new();
    for (k, v) in o
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let role = if let Some(r) = k.strip_prefix("node-role.kubernetes.io/") {
            r.to_string()
        } else if k == "kubernetes.io/role" {
            v.as_str().unwrap_or("").to_string()
        } else {
            continue;
        };
        if !role.is_empty() && !roles.contains(&role) {
            roles.push(role);
        }
    }
    roles.sort();
    or_none(roles.join(","))
}

/// A node's first address of one type; `<none>`.
pub fn node_address(o: &Value, kind: &str) -> String {
    let found = o
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|a| a["type"] == kind))
        .map(|a| text(a, "/address"))
        .unwrap_or_default();
    or_none(found)
}

/// An event's First Seen: the age of its firstTimestamp, or else of its eventTime.
pub fn event_first_seen(o: &Value) -> String {
    let first = text(o, "/firstTimestamp");
    if !first.is_empty() {
        return age(&first);
    }
    age(&text(o, "/eventTime"))
}

/// An event's Last Seen: the age of its series' last observation, or of its lastTimestamp,
/// or else its First Seen.
pub fn event_last_seen(o: &Value) -> String {
    let series = text(o, "/series/lastObservedTime");
    if !series.is_empty() {
        return age(&series);
    }
    let last = text(o, "/lastTimestamp");
    if !last.is_empty() {
        return age(&last);
    }
    event_first_seen(o)
}

/// An event's Source: `component, host` (or the reporting controller and instance).
pub fn event_source(o: &Value) -> String {
    let component = or(
        text(o, "/source/component"),
        &text(o, "/reportingController"),
    );
    let host = or(text(o, "/source/host"), &text(o, "/reportingInstance"));
    if host.is_empty() {
        component
    } else {
        format!("{component}, {host}")
    }
}

/// An event's Count: its series' count, or its count (at least 1).
pub fn event_count(o: &Value) -> i64 {
    if let Some(n) = o.pointer("/series/count").and_then(Value::as_i64) {
        return n;
    }
    match num(o, "/count") {
        0 => 1,
        n => n,
    }
}

/// A Service's External-IP column, by type.
pub fn service_external_ip(o: &Value) -> String {
    let strings = |pointer: &str| -> Vec<String> {
        o.pointer(pointer)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let external = strings("/spec/externalIPs");
    match text(o, "/spec/type").as_str() {
        "ClusterIP" | "NodePort" | "" => or_none(external.join(",")),
        "LoadBalancer" => {
            let mut lb: Vec<String> = o
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|i| or(text(i, "/ip"), &text(i, "/hostname")))
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            lb.sort();
            lb.dedup();
            lb.extend(external);
            or(lb.join(","), "<pending>")
        }
        "ExternalName" => text(o, "/spec/externalName"),
        _ => "<unknown>".into(),
    }
}

/// A Service's Port(s) column: `port/PROTO` or `port:nodePort/PROTO`, or `<none>`.
pub fn service_ports(o: &Value) -> String {
    let ports: Vec<String> = o
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|p| {
                    let proto = p["protocol"].as_str().unwrap_or("TCP");
                    match p["nodePort"].as_i64().filter(|n| *n > 0) {
                        Some(np) => format!("{}:{np}/{proto}", p["port"]),
                        None => format!("{}/{proto}", p["port"]),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    or_none(ports.join(","))
}

/// A Job's Status column: its first true condition of Complete, Failed (or Terminating while
/// deleted), Suspended, FailureTarget; else Running.
pub fn job_status(o: &Value) -> &'static str {
    let conds = o.pointer("/status/conditions").and_then(Value::as_array);
    let has = |t: &str| {
        conds
            .and_then(|c| c.iter().find(|c| c["type"] == t))
            .is_some_and(|c| c["status"] == "True")
    };
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if o.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    }
}

/// A Job's Duration column: from its start to its completion, or to now.
pub fn job_duration(o: &Value) -> String {
    let time = |p: &str| {
        o.pointer(p)
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    };
    let Some(start) = time("/status/startTime") else {
        return String::new();
    };
    let end = time("/status/completionTime").unwrap_or_else(jiff::Timestamp::now);
    human_duration(end.as_second() - start.as_second())
}

/// A CSR's Condition column: Denied, Approved or Pending, then Failed and Issued.
pub fn csr_condition(o: &Value) -> String {
    let conds = o.pointer("/status/conditions").and_then(Value::as_array);
    let has = |t: &str| conds.is_some_and(|c| c.iter().any(|c| c["type"] == t));
    let mut out = if has("Denied") {
        "Denied"
    } else if has("Approved") {
        "Approved"
    } else {
        "Pending"
    }
    .to_string();
    if has("Failed") {
        out.push_str(",Failed");
    }
    if !text(o, "/status/certificate").is_empty() {
        out.push_str(",Issued");
    }
    out
}

pub fn text(obj: &Value, pointer: &str) -> String {
    match obj.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

pub fn count(obj: &Value, pointer: &str) -> usize {
    match obj.pointer(pointer) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

pub fn num(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// The reason a container's state gives, as kubectl's STATUS column shows it: the waiting
/// reason, or the terminated reason (else the signal or exit code).
pub fn state_reason(state: &Value) -> Option<String> {
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
pub fn pod_status(pod: &Value) -> String {
    let mut reason = text(pod, "/status/reason");
    if reason.is_empty() {
        reason = text(pod, "/status/phase");
    }
    let conditions = pod.pointer("/status/conditions").and_then(Value::as_array);
    if conditions.is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "PodScheduled" && c["reason"] == "SchedulingGated")
    }) {
        reason = "SchedulingGated".into();
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
            let ready = conditions.is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            reason = if ready { "Running" } else { "NotReady" }.into();
        }
    }
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        let phase = text(pod, "/status/phase");
        if text(pod, "/status/reason") == "NodeLost" {
            reason = "Unknown".into();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".into();
        }
    }
    reason
}

/// An APIService's Available column: its Available condition's status, with the reason when
/// it is not True; `Unknown` without one.
pub fn api_service_available(o: &Value) -> String {
    let Some(c) = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| c["type"] == "Available"))
    else {
        return "Unknown".into();
    };
    let status = text(c, "/status");
    let reason = text(c, "/reason");
    if status == "True" || reason.is_empty() {
        status
    } else {
        format!("{status} ({reason})")
    }
}
