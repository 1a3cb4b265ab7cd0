//! Defaulting, as Kubernetes applies it on every write: the values a field takes when the
//! client leaves it out. Idempotent.

use serde_json::{Map, Value, json};

/// Sets `obj[key] = value` when the key is absent (or null).
fn default(obj: &mut Map<String, Value>, key: &str, value: Value) {
    if obj.get(key).is_none_or(Value::is_null) {
        obj.insert(key.to_string(), value);
    }
}

/// The object at `pointer`, created as `{}` along the way when `create`.
fn object_at<'a>(root: &'a mut Value, path: &[&str]) -> Option<&'a mut Map<String, Value>> {
    let mut cur = root;
    for p in path {
        let m = cur.as_object_mut()?;
        cur = m.entry(p.to_string()).or_insert_with(|| json!({}));
    }
    cur.as_object_mut()
}

fn default_container(c: &mut Value) {
    let Some(c) = c.as_object_mut() else { return };
    default(c, "terminationMessagePath", json!("/dev/termination-log"));
    default(c, "terminationMessagePolicy", json!("File"));
    default(c, "resources", json!({}));
    if c.get("imagePullPolicy").is_none() {
        let image = c.get("image").and_then(Value::as_str).unwrap_or("");
        // The tag is after the last ':' that follows the last '/'; none or "latest" means Always.
        let name = image.rsplit('/').next().unwrap_or(image);
        let tag = name
            .split('@')
            .next()
            .and_then(|n| n.split_once(':'))
            .map(|(_, t)| t);
        let always = !image.contains('@') && matches!(tag, None | Some("latest"));
        c.insert(
            "imagePullPolicy".into(),
            json!(if always { "Always" } else { "IfNotPresent" }),
        );
    }
    if let Some(Value::Array(ports)) = c.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default(p, "protocol", json!("TCP"));
        }
    }
}

/// Defaults of a pod spec (in a Pod or in a template).
fn default_pod_spec(spec: &mut Map<String, Value>) {
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "securityContext", json!({}));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "enableServiceLinks", json!(true));
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            cs.iter_mut().for_each(default_container);
        }
    }
    // A volume that names no source is an emptyDir.
    if let Some(Value::Array(volumes)) = spec.get_mut("volumes") {
        for v in volumes.iter_mut().filter_map(Value::as_object_mut) {
            let sourced = crate::validation::pod::VOLUME_SOURCES
                .iter()
                .any(|s| v.get(*s).is_some_and(|s| !s.is_null()));
            if !sourced {
                v.insert("emptyDir".into(), json!({}));
            }
        }
    }
}

fn default_template(obj: &mut Value, path: &[&str]) {
    if let Some(spec) = object_at(obj, path) {
        default_pod_spec(spec);
    }
}

/// Pods: the pod spec's defaults, the `default` service account, priority 0, and the
/// DefaultTolerationSeconds admission plugin's tolerations.
pub fn pod(obj: &mut Value) {
    if let Some(spec) = object_at(obj, &["spec"]) {
        default_pod_spec(spec);
        default(spec, "serviceAccountName", json!("default"));
        default(spec, "priority", json!(0));
        default_toleration_seconds(spec);
    }
}

/// PodTemplates: their template's pod spec.
pub fn pod_template(obj: &mut Value) {
    default_template(obj, &["template", "spec"]);
}

/// Deployments.
pub fn deployment(obj: &mut Value) {
    if let Some(spec) = object_at(obj, &["spec"]) {
        default(spec, "replicas", json!(1));
        default(spec, "revisionHistoryLimit", json!(10));
        default(spec, "progressDeadlineSeconds", json!(600));
        default(
            spec,
            "strategy",
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
        );
    }
    default_template(obj, &["spec", "template", "spec"]);
}

/// ReplicaSets and ReplicationControllers.
pub fn replica_set(obj: &mut Value) {
    if let Some(spec) = object_at(obj, &["spec"]) {
        default(spec, "replicas", json!(1));
    }
    default_template(obj, &["spec", "template", "spec"]);
}

/// StatefulSets.
pub fn stateful_set(obj: &mut Value) {
    if let Some(spec) = object_at(obj, &["spec"]) {
        default(spec, "replicas", json!(1));
        default(spec, "podManagementPolicy", json!("OrderedReady"));
        default(spec, "revisionHistoryLimit", json!(10));
        default(
            spec,
            "updateStrategy",
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
        );
        default(
            spec,
            "persistentVolumeClaimRetentionPolicy",
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
        );
    }
    default_template(obj, &["spec", "template", "spec"]);
}

/// DaemonSets.
pub fn daemon_set(obj: &mut Value) {
    if let Some(spec) = object_at(obj, &["spec"]) {
        default(spec, "revisionHistoryLimit", json!(10));
        default(
            spec,
            "updateStrategy",
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
        );
    }
    default_template(obj, &["spec", "template", "spec"]);
}

/// Jobs.
pub fn job(obj: &mut Value) {
    default_job_spec(obj, &["spec"]);
}

/// CronJobs, and the Job template they hold.
pub fn cron_job(obj: &mut Value) {
    if let Some(spec) = object_at(obj, &["spec"]) {
        default(spec, "concurrencyPolicy", json!("Allow"));
        default(spec, "suspend", json!(false));
        default(spec, "successfulJobsHistoryLimit", json!(3));
        default(spec, "failedJobsHistoryLimit", json!(1));
    }
    default_job_spec(obj, &["spec", "jobTemplate", "spec"]);
}

/// The defaults of `kind`, for callers that hold only its name (tests, tools); the API
/// server applies each kind's through its registry strategy.
pub fn apply(kind: &str, obj: &mut Value) {
    let by_kind: fn(&mut Value) = match kind {
        "Pod" => pod,
        "PodTemplate" => pod_template,
        "Deployment" => deployment,
        "ReplicaSet" | "ReplicationController" => replica_set,
        "StatefulSet" => stateful_set,
        "DaemonSet" => daemon_set,
        "Job" => job,
        "CronJob" => cron_job,
        "Service" => service,
        "Secret" => secret,
        _ => return,
    };
    by_kind(obj);
}

/// Pods tolerate a not-ready or unreachable node for 300 s unless they say otherwise (the
/// DefaultTolerationSeconds admission plugin).
fn default_toleration_seconds(spec: &mut Map<String, Value>) {
    let list = spec.entry("tolerations").or_insert_with(|| json!([]));
    let Value::Array(tolerations) = list else {
        return;
    };
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let covered = tolerations.iter().any(|t| {
            (t["key"] == key || (t.get("key").is_none() && t["operator"] == "Exists"))
                && (t.get("effect").is_none() || t["effect"] == "NoExecute")
        });
        if !covered {
            tolerations.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
}

fn default_job_spec(obj: &mut Value, path: &[&str]) {
    if let Some(spec) = object_at(obj, path) {
        let unset = spec.get("completions").is_none() && spec.get("parallelism").is_none();
        if unset {
            spec.insert("completions".into(), json!(1));
        }
        default(spec, "parallelism", json!(1));
        default(spec, "backoffLimit", json!(6));
        default(spec, "completionMode", json!("NonIndexed"));
        default(spec, "suspend", json!(false));
        default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    }
    let mut template = path.to_vec();
    template.extend(["template", "spec"]);
    if let Some(spec) = object_at(obj, &template) {
        default_pod_spec(spec);
    }
}

/// A new Job's generated selector, as kube-apiserver makes it unless `manualSelector` is
/// true: the template gets `job-name` and `controller-uid` labels (both the legacy and the
/// `batch.kubernetes.io/` forms, where not set) and the selector matches
/// `batch.kubernetes.io/controller-uid`. A Job with no labels of its own takes its template's.
/// Needs the Job's uid, so it runs once the uid is set.
pub fn generate_job_selector(obj: &mut Value) {
    let name = obj.pointer("/metadata/name").cloned().unwrap_or(json!(""));
    let uid = obj.pointer("/metadata/uid").cloned().unwrap_or(json!(""));
    if obj.pointer("/spec/manualSelector") == Some(&json!(true)) {
        return;
    }
    if let Some(labels) = object_at(obj, &["spec", "template", "metadata", "labels"]) {
        for (key, value) in [
            ("job-name", &name),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("batch.kubernetes.io/controller-uid", &uid),
        ] {
            default(labels, key, value.clone());
        }
    }
    if let Some(selector) = object_at(obj, &["spec", "selector", "matchLabels"]) {
        default(selector, "batch.kubernetes.io/controller-uid", uid);
    }
    let template_labels = obj
        .pointer("/spec/template/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    if let Some(meta) = object_at(obj, &["metadata"]) {
        let has_labels = meta
            .get("labels")
            .and_then(Value::as_object)
            .is_some_and(|l| !l.is_empty());
        if !has_labels {
            meta.insert("labels".into(), template_labels);
        }
    }
}

/// Services: type, session affinity, IP families, port protocols and target ports.
pub fn service(obj: &mut Value) {
    let Some(spec) = object_at(obj, &["spec"]) else {
        return;
    };
    default(spec, "type", json!("ClusterIP"));
    default(spec, "sessionAffinity", json!("None"));
    let is_external = spec.get("type") == Some(&json!("ExternalName"));
    if !is_external {
        default(spec, "ipFamilyPolicy", json!("SingleStack"));
        default(spec, "ipFamilies", json!(["IPv4"]));
        default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default(p, "protocol", json!("TCP"));
            if let Some(port) = p.get("port").cloned() {
                default(p, "targetPort", port);
            }
        }
    }
}

/// Secrets: type Opaque, and `stringData` folded into `data` (base64), as the API server does.
pub fn secret(obj: &mut Value) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    default(root, "type", json!("Opaque"));
    if let Some(Value::Object(strings)) = root.remove("stringData") {
        let data = root.entry("data").or_insert_with(|| json!({}));
        if let Some(data) = data.as_object_mut() {
            for (k, v) in strings {
                if let Some(s) = v.as_str() {
                    data.insert(k, json!(base64_encode(s.as_bytes())));
                }
            }
        }
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The QoS class of a pod spec: Guaranteed when every container limits CPU and memory with
/// requests equal to limits, BestEffort when none requests or limits anything, else Burstable.
pub fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|l| spec.get(*l).and_then(Value::as_array))
        .flatten()
        .collect();
    let res =
        |c: &Value, kind: &str, r: &str| c.pointer(&format!("/resources/{kind}/{r}")).cloned();
    let any = containers.iter().any(|c| {
        ["requests", "limits"].iter().any(|k| {
            c.pointer(&format!("/resources/{k}"))
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty())
        })
    });
    if !any {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let limit = res(c, "limits", r);
            limit.is_some() && (res(c, "requests", r).is_none() || res(c, "requests", r) == limit)
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_get_a_selector_on_their_uid_unless_manual() {
        let mut job = json!({"metadata": {"name": "pi", "uid": "u1"},
            "spec": {"template": {"metadata": {"labels": {"job-name": "mine"}}, "spec": {}}}});
        generate_job_selector(&mut job);
        assert_eq!(
            job["spec"]["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}})
        );
        let labels = json!({"job-name": "mine", "batch.kubernetes.io/job-name": "pi",
            "controller-uid": "u1", "batch.kubernetes.io/controller-uid": "u1"});
        assert_eq!(job["spec"]["template"]["metadata"]["labels"], labels);
        assert_eq!(job["metadata"]["labels"], labels);
        let mut manual = json!({"metadata": {"name": "m", "uid": "u2", "labels": {"a": "b"}},
            "spec": {"manualSelector": true, "selector": {"matchLabels": {"a": "b"}}, "template": {}}});
        let before = manual.clone();
        generate_job_selector(&mut manual);
        assert_eq!(manual, before);
    }

    #[test]
    fn deployment_and_containers_get_kubernetes_defaults() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "nginx", "ports": [{"containerPort": 80}]},
            {"name": "b", "image": "registry:5000/x/nginx:1.2"},
            {"name": "c", "image": "nginx:latest", "imagePullPolicy": "Never"}
        ]}}}});
        apply("Deployment", &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        let c = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(c[0]["imagePullPolicy"], "Always");
        assert_eq!(c[1]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c[2]["imagePullPolicy"], "Never");
        assert_eq!(c[0]["ports"][0]["protocol"], "TCP");
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
        let once = d.clone();
        apply("Deployment", &mut d);
        assert_eq!(d, once, "defaulting is idempotent");
    }

    #[test]
    fn services_and_secrets() {
        let mut s = json!({"spec": {"ports": [{"port": 80}]}});
        apply("Service", &mut s);
        assert_eq!(s["spec"]["type"], "ClusterIP");
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        let mut sec = json!({"stringData": {"password": "hunter2"}, "data": {"a": "Yg=="}});
        apply("Secret", &mut sec);
        assert_eq!(sec["type"], "Opaque");
        assert_eq!(sec["data"]["password"], "aHVudGVyMg==");
        assert!(sec.get("stringData").is_none());
        assert_eq!(base64_encode(b"ab"), "YWI=");
        assert_eq!(base64_encode(b"a"), "YQ==");
    }
}
