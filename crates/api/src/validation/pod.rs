//! Pod spec checks (kube-apiserver's `ValidatePodSpec`): containers, their ports, environment
//! and resources, volumes and their mounts, and the pod-level policies. Workloads run the same
//! checks on their templates, under `spec.template.spec`.

use std::collections::HashSet;

use serde_json::Value;

use super::field::{Errors, Path, items, text};
use super::{
    is_dns1123_label, label_messages, port_name_messages, port_number_messages, quantity_value,
};

/// The restart policies a pod may have.
pub const RESTART_POLICIES: [&str; 3] = ["Always", "OnFailure", "Never"];
const PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];
const PULL_POLICIES: [&str; 3] = ["Always", "IfNotPresent", "Never"];
const DNS_POLICIES: [&str; 4] = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const MESSAGE_POLICIES: [&str; 2] = ["File", "FallbackToLogsOnError"];
/// The fields of a volume that name its source; exactly one must be set.
pub(crate) const VOLUME_SOURCES: [&str; 30] = [
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];
/// Resources a container may ask for without a domain prefix.
const CONTAINER_RESOURCES: [&str; 4] = ["cpu", "memory", "ephemeral-storage", "hugepages-"];

/// Whether the spec checked is a Pod's own or a template's: some checks are for Pods only.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// A Pod.
    Pod,
    /// A pod template (workloads, PodTemplates).
    Template,
}

/// Checks a pod spec at `at`.
pub fn validate_pod_spec(spec: Option<&Value>, at: &Path, owner: Owner, e: &mut Errors) {
    let empty = Value::Null;
    let spec = spec.unwrap_or(&empty);
    let volumes = validate_volumes(items(spec, "volumes"), &at.child("volumes"), e);
    let mut names = HashSet::new();
    let containers = items(spec, "containers");
    if containers.is_empty() {
        e.required(&at.child("containers"), "");
    }
    for (kind, list) in [
        ("initContainers", items(spec, "initContainers")),
        ("containers", containers),
    ] {
        for (i, c) in list.iter().enumerate() {
            validate_container(c, &at.child(kind).index(i), &volumes, &mut names, owner, e);
        }
    }
    let policy = spec.get("restartPolicy");
    match policy.and_then(Value::as_str) {
        None | Some("") => e.required(&at.child("restartPolicy"), ""),
        Some(_) => e.one_of(&at.child("restartPolicy"), policy, &RESTART_POLICIES),
    }
    match spec.get("dnsPolicy").and_then(Value::as_str) {
        None | Some("") => e.required(&at.child("dnsPolicy"), ""),
        Some(_) => e.one_of(&at.child("dnsPolicy"), spec.get("dnsPolicy"), &DNS_POLICIES),
    }
    if let Some(v) = spec.get("activeDeadlineSeconds")
        && v.as_i64()
            .is_some_and(|n| !(1..=i64::from(i32::MAX)).contains(&n))
    {
        e.invalid(
            &at.child("activeDeadlineSeconds"),
            v,
            "must be between 1 and 2147483647, inclusive",
        );
    }
    for field in ["hostname", "subdomain"] {
        let value = text(spec, field);
        if !value.is_empty() {
            for m in label_messages(value) {
                e.invalid(&at.child(field), &Value::from(value), &m);
            }
        }
    }
    if let Some(Value::Object(selector)) = spec.get("nodeSelector") {
        for (k, v) in selector {
            let path = at.child("nodeSelector");
            e.extend(super::validate_qualified_name(k, path.as_str()));
            if let Some(s) = v.as_str() {
                e.extend(super::validate_label_value(s, path.as_str()));
            }
        }
    }
}

/// Checks the `name` of a volume or container at `at`: required, an RFC 1123 label, and not
/// one already `seen` (valid names are added to it).
fn unique_name(item: &Value, at: &Path, seen: &mut HashSet<String>, e: &mut Errors) {
    let name = text(item, "name");
    let path = at.child("name");
    if name.is_empty() {
        e.required(&path, "");
    } else if !is_dns1123_label(name) {
        for m in label_messages(name) {
            e.invalid(&path, &Value::from(name), &m);
        }
    } else if !seen.insert(name.to_string()) {
        e.duplicate(&path, &Value::from(name));
    }
}

/// Checks the volumes; returns their names.
fn validate_volumes(volumes: &[Value], at: &Path, e: &mut Errors) -> HashSet<String> {
    let mut names = HashSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let path = at.index(i);
        unique_name(v, &path, &mut names, e);
        let sources: Vec<&str> = VOLUME_SOURCES
            .iter()
            .copied()
            .filter(|s| v.get(*s).is_some_and(|s| !s.is_null()))
            .collect();
        match sources.as_slice() {
            [] => e.required(&path, "must specify a volume type"),
            [_] => {}
            [_, rest @ ..] => {
                for s in rest {
                    e.forbidden(&path.child(s), "may not specify more than 1 volume type");
                }
            }
        }
    }
    names
}

fn validate_container(
    c: &Value,
    at: &Path,
    volumes: &HashSet<String>,
    names: &mut HashSet<String>,
    owner: Owner,
    e: &mut Errors,
) {
    unique_name(c, at, names, e);
    let image = text(c, "image");
    if image.is_empty() {
        e.required(&at.child("image"), "");
    } else if owner == Owner::Pod && image.trim() != image {
        e.invalid(
            &at.child("image"),
            &Value::from(image),
            "must not have leading or trailing whitespace",
        );
    }
    e.one_of(
        &at.child("imagePullPolicy"),
        c.get("imagePullPolicy"),
        &PULL_POLICIES,
    );
    e.one_of(
        &at.child("terminationMessagePolicy"),
        c.get("terminationMessagePolicy"),
        &MESSAGE_POLICIES,
    );
    validate_ports(items(c, "ports"), &at.child("ports"), e);
    validate_env(items(c, "env"), &at.child("env"), e);
    validate_resources(c.get("resources"), &at.child("resources"), e);
    let mut paths = HashSet::new();
    for (i, m) in items(c, "volumeMounts").iter().enumerate() {
        let path = at.child("volumeMounts").index(i);
        let name = text(m, "name");
        if name.is_empty() {
            e.required(&path.child("name"), "");
        } else if !volumes.contains(name) {
            e.0.push(crate::status::Cause::new(
                "FieldValueNotFound",
                path.child("name").as_str(),
                format!("Not found: {name:?}"),
            ));
        }
        let mount = text(m, "mountPath");
        if mount.is_empty() {
            e.required(&path.child("mountPath"), "");
        } else if !paths.insert(mount.to_string()) {
            e.invalid(
                &path.child("mountPath"),
                &Value::from(mount),
                "must be unique",
            );
        }
    }
}

fn validate_ports(ports: &[Value], at: &Path, e: &mut Errors) {
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let path = at.index(i);
        match p.get("containerPort") {
            None => e.required(&path.child("containerPort"), ""),
            Some(v) if v.as_i64() == Some(0) => e.required(&path.child("containerPort"), ""),
            Some(v) => {
                for m in port_number_messages(v) {
                    e.invalid(&path.child("containerPort"), v, m);
                }
            }
        }
        if let Some(v) = p.get("hostPort").filter(|v| v.as_i64() != Some(0)) {
            for m in port_number_messages(v) {
                e.invalid(&path.child("hostPort"), v, m);
            }
        }
        let name = text(p, "name");
        if !name.is_empty() {
            let problems = port_name_messages(name);
            for m in &problems {
                e.invalid(&path.child("name"), &Value::from(name), m);
            }
            if problems.is_empty() && !names.insert(name.to_string()) {
                e.duplicate(&path.child("name"), &Value::from(name));
            }
        }
        match p.get("protocol") {
            None => e.required(&path.child("protocol"), ""),
            v => e.one_of(&path.child("protocol"), v, &PROTOCOLS),
        }
    }
}

fn validate_env(env: &[Value], at: &Path, e: &mut Errors) {
    for (i, var) in env.iter().enumerate() {
        let path = at.index(i);
        let name = text(var, "name");
        if name.is_empty() {
            e.required(&path.child("name"), "");
        } else if !name
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'=')
        {
            e.invalid(
                &path.child("name"),
                &Value::from(name),
                "a valid environment variable name must consist only of printable ASCII characters other than '='",
            );
        }
        if !text(var, "value").is_empty() && var.get("valueFrom").is_some_and(|v| !v.is_null()) {
            e.invalid(
                &path.child("valueFrom"),
                &Value::from(""),
                "may not be specified when `value` is not empty",
            );
        }
    }
}

fn validate_resources(resources: Option<&Value>, at: &Path, e: &mut Errors) {
    let Some(resources) = resources else {
        return;
    };
    let amounts = |key: &str| -> Vec<(String, Value, Option<f64>)> {
        resources
            .get(key)
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.clone(), quantity_value(v)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let limits = amounts("limits");
    for (key, list) in [("limits", &limits), ("requests", &amounts("requests"))] {
        for (name, value, amount) in list {
            let path = at.child(key).key(name);
            let shown = Value::from(name.as_str());
            if let Some(c) = super::validate_qualified_name(name, path.as_str()) {
                e.extend([c]);
            } else if !name.contains('/') {
                let standard = CONTAINER_RESOURCES
                    .iter()
                    .any(|r| name == r || (r.ends_with('-') && name.starts_with(r)));
                if !standard {
                    e.invalid(
                        &path,
                        &shown,
                        "must be a standard resource type or fully qualified",
                    );
                    e.invalid(&path, &shown, "must be a standard resource for containers");
                }
            }
            if amount.is_some_and(|a| a < 0.0) {
                e.invalid(
                    &path,
                    &quantity_text(value),
                    "must be greater than or equal to 0",
                );
            }
            if key == "requests"
                && let Some((_, limit, Some(l))) = limits.iter().find(|(n, ..)| n == name)
                && amount.is_some_and(|a| a > *l)
            {
                let limit = quantity_text(limit);
                e.invalid(
                    &at.child("requests"),
                    &quantity_text(value),
                    &format!(
                        "must be less than or equal to {name} limit of {}",
                        limit.as_str().unwrap_or_default()
                    ),
                );
            }
        }
    }
}

/// A quantity as validation prints it: its text, quoted (numbers as written).
fn quantity_text(v: &Value) -> Value {
    match v {
        Value::String(_) => v.clone(),
        other => Value::from(other.to_string()),
    }
}
