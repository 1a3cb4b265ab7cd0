//! Validation with Kubernetes' messages and field paths: names, labels and keys here, and
//! per-kind field checks in the submodules, run by [`validate_object`].

pub mod field;
mod networking;
pub(crate) mod pod;
pub mod selector;
mod service;
mod storage;
mod workloads;

use crate::status::Cause;
use field::{Errors, Path};

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Whether `s` is an RFC 1123 label: at most 63 lower-case alphanumerics or '-', starting and
/// ending with an alphanumeric.
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| is_lower_alnum(c) || c == '-')
        && s.starts_with(is_lower_alnum)
        && s.ends_with(is_lower_alnum)
}

/// Whether `s` is an RFC 1035 label: an RFC 1123 label that starts with a letter.
pub fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

/// Whether `s` is an RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// How a kind's object names are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// Most kinds: an RFC 1123 subdomain.
    Subdomain,
    /// Namespaces: an RFC 1123 label.
    Label,
    /// Services: an RFC 1035 label.
    Dns1035,
    /// Kinds whose names are paths of their own (RBAC roles): anything without '/' or '%'.
    PathSegment,
}

/// Checks an object name; returns the cause when it is not valid.
pub fn validate_name(rule: NameRule, name: &str, field: &str) -> Option<Cause> {
    if name.is_empty() {
        return Some(Cause::new(
            "FieldValueRequired",
            field,
            "Required value: name or generateName is required",
        ));
    }
    let problem = match rule {
        NameRule::Subdomain if !is_dns1123_subdomain(name) => Some(format!(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '{DNS1123_LABEL_FMT}(\\.{DNS1123_LABEL_FMT})*')"
        )),
        NameRule::Label if !is_dns1123_label(name) => Some(format!(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '{DNS1123_LABEL_FMT}')"
        )),
        NameRule::Dns1035 if !is_dns1035_label(name) => Some(format!(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '{DNS1035_LABEL_FMT}')"
        )),
        NameRule::PathSegment if name == "." || name == ".." || name.contains(['/', '%']) => {
            Some("may not be '.' or '..' and may not contain '/' or '%'".to_string())
        }
        _ => None,
    };
    problem.map(|p| {
        Cause::new(
            "FieldValueInvalid",
            field,
            format!("Invalid value: {name:?}: {p}"),
        )
    })
}

fn is_qualified_name_part(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(alnum)
        && s.ends_with(alnum)
}

/// Checks a label or annotation key (`[prefix/]name`).
pub fn validate_qualified_name(key: &str, field: &str) -> Option<Cause> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(is_dns1123_subdomain);
    if prefix_ok && is_qualified_name_part(name) {
        return None;
    }
    Some(Cause::new(
        "FieldValueInvalid",
        field,
        format!(
            "Invalid value: {key:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '{QUALIFIED_NAME_FMT}') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ),
    ))
}

/// Checks a label value: empty, or at most 63 characters of the qualified-name alphabet.
pub fn validate_label_value(value: &str, field: &str) -> Option<Cause> {
    if value.is_empty() || is_qualified_name_part(value) {
        return None;
    }
    Some(Cause::new(
        "FieldValueInvalid",
        field,
        format!(
            "Invalid value: {value:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        ),
    ))
}

/// Checks a ConfigMap or Secret key (a file name in a volume), as Kubernetes' IsConfigMapKey:
/// at most 253 characters of `[-._a-zA-Z0-9]`, and not `.`, `..` or anything starting `..`.
pub fn validate_config_key(key: &str, field: &str) -> Vec<Cause> {
    let mut messages = Vec::new();
    if key.len() > 253 {
        messages.push("must be no more than 253 characters".to_string());
    }
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        messages.push("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".to_string());
    }
    if key == "." {
        messages.push("must not be '.'".to_string());
    } else if key == ".." {
        messages.push("must not be '..'".to_string());
    } else if key.starts_with("..") {
        messages.push("must not start with '..'".to_string());
    }
    messages
        .into_iter()
        .map(|m| {
            Cause::new(
                "FieldValueInvalid",
                field,
                format!("Invalid value: {key:?}: {m}"),
            )
        })
        .collect()
}

/// IsDNS1123Label's messages for `s` (none when it is a label).
pub(crate) fn label_messages(s: &str) -> Vec<String> {
    let mut m = Vec::new();
    if s.len() > 63 {
        m.push("must be no more than 63 characters".to_string());
    }
    if !is_dns1123_label(&s[..s.len().min(63)]) || s.is_empty() {
        if is_dns1123_subdomain(s) {
            m.push("must not contain dots".to_string());
        } else {
            m.push(format!("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '{DNS1123_LABEL_FMT}')"));
        }
    }
    m
}

/// IsDNS1123Subdomain's messages for `s`.
pub(crate) fn subdomain_messages(s: &str) -> Vec<String> {
    let mut m = Vec::new();
    if s.len() > 253 {
        m.push("must be no more than 253 characters".to_string());
    }
    if s.is_empty() || !s.split('.').all(is_dns1123_label) {
        m.push(format!("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '{DNS1123_LABEL_FMT}(\\.{DNS1123_LABEL_FMT})*')"));
    }
    m
}

/// IsDNS1035Label's messages for `s`.
pub(crate) fn dns1035_messages(s: &str) -> Vec<String> {
    let mut m = Vec::new();
    if s.len() > 63 {
        m.push("must be no more than 63 characters".to_string());
    }
    let head = &s[..s.len().min(63)];
    if s.is_empty() || !is_dns1035_label(head) {
        m.push(format!("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '{DNS1035_LABEL_FMT}')"));
    }
    m
}

/// IsValidPortNum's message when `v` is not a port number (1 to 65535).
pub(crate) fn port_number_messages(v: &serde_json::Value) -> Vec<&'static str> {
    if v.as_i64().is_some_and(|n| (1..=65535).contains(&n)) {
        Vec::new()
    } else {
        vec!["must be between 1 and 65535, inclusive"]
    }
}

/// IsValidPortName's messages (an IANA service name: at most 15 of `[-a-z0-9]`, a letter,
/// no `--`, no hyphen at either end).
pub(crate) fn port_name_messages(name: &str) -> Vec<&'static str> {
    let mut m = Vec::new();
    if name.len() > 15 {
        m.push("must be no more than 15 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        || name.is_empty()
    {
        m.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        m.push("must contain at least one letter (a-z)");
    }
    if name.contains("--") {
        m.push("must not contain consecutive hyphens");
    }
    if name.starts_with('-') || name.ends_with('-') {
        m.push("must not begin or end with a hyphen");
    }
    m
}

/// A quantity's value, from a string or a JSON number.
pub(crate) fn quantity_value(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::String(s) => crate::quantity::parse(s),
        serde_json::Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_dns1123_subdomain("web-1.example"));
        assert!(!is_dns1123_subdomain("Web"));
        assert!(!is_dns1123_subdomain("-web"));
        assert!(!is_dns1123_subdomain(&"a".repeat(254)));
        assert!(is_dns1123_label("kube-system"));
        assert!(!is_dns1123_label("a.b"));
        assert!(!is_dns1035_label("1abc"));
        let c = validate_name(NameRule::Subdomain, "Bad_Name", "metadata.name");
        assert!(c.is_some_and(|c| c.message.starts_with("Invalid value: \"Bad_Name\"")));
        assert!(validate_name(NameRule::PathSegment, "system:admin", "metadata.name").is_none());
        assert!(validate_name(NameRule::Label, "", "metadata.name").is_some());
    }

    #[test]
    fn labels() {
        assert!(validate_qualified_name("app.kubernetes.io/name", "k").is_none());
        assert!(validate_qualified_name("app", "k").is_none());
        assert!(validate_qualified_name("-app", "k").is_some());
        assert!(validate_qualified_name("Bad Prefix/x", "k").is_some());
        assert!(validate_label_value("", "v").is_none());
        assert!(validate_label_value("v1.2_3", "v").is_none());
        assert!(validate_label_value("has space", "v").is_some());
        assert!(validate_label_value(&"a".repeat(64), "v").is_some());
        assert!(validate_config_key("app.properties", "data[app.properties]").is_empty());
        for bad in ["", ".", "..", "..data", "a b", "a/b"] {
            assert_eq!(validate_config_key(bad, "data").len(), 1, "{bad:?}");
        }
        let c = validate_config_key("..", "data[..]");
        assert_eq!(c[0].message, "Invalid value: \"..\": must not be '..'");
    }
}

/// The field checks of one kind, as kube-apiserver's validation of that kind makes them:
/// required fields, ranges, supported values, names, and consistency (a workload's selector
/// must select its template, a Job's pods may not restart Always).
pub type Check = fn(&serde_json::Value) -> Vec<Cause>;

/// Runs `check` with a fresh set of field errors.
fn checked(check: impl FnOnce(&mut Errors)) -> Vec<Cause> {
    let mut e = Errors::default();
    check(&mut e);
    e.0
}

/// Pods.
pub fn pod(obj: &serde_json::Value) -> Vec<Cause> {
    checked(|e| pod::validate_pod_spec(obj.get("spec"), &Path::new("spec"), pod::Owner::Pod, e))
}

/// PodTemplates.
pub fn pod_template(obj: &serde_json::Value) -> Vec<Cause> {
    checked(|e| {
        let at = Path::new("template").child("spec");
        pod::validate_pod_spec(obj.pointer("/template/spec"), &at, pod::Owner::Template, e)
    })
}

/// ReplicationControllers.
pub fn replication_controller(obj: &serde_json::Value) -> Vec<Cause> {
    checked(|e| {
        let spec = Path::new("spec");
        e.non_negative(&spec.child("replicas"), obj.pointer("/spec/replicas"));
        let at = spec.child("template").child("spec");
        pod::validate_pod_spec(
            obj.pointer("/spec/template/spec"),
            &at,
            pod::Owner::Template,
            e,
        );
    })
}

/// Deployments, ReplicaSets, StatefulSets and DaemonSets (`kind` names them in messages).
pub fn workload(kind: &str, obj: &serde_json::Value) -> Vec<Cause> {
    checked(|e| workloads::validate_workload(kind, obj, e))
}

/// Jobs.
pub fn job(obj: &serde_json::Value) -> Vec<Cause> {
    checked(|e| workloads::validate_job_spec(obj.get("spec"), &Path::new("spec"), e))
}

/// CronJobs.
pub fn cron_job(obj: &serde_json::Value) -> Vec<Cause> {
    checked(|e| workloads::validate_cronjob(obj, e))
}

/// Services.
pub fn service(obj: &serde_json::Value) -> Vec<Cause> {
    checked(|e| service::validate_service(obj, e))
}

/// Ingresses.
pub fn ingress(obj: &serde_json::Value) -> Vec<Cause> {
    checked(|e| networking::validate_ingress(obj, e))
}

/// NetworkPolicies.
pub fn network_policy(obj: &serde_json::Value) -> Vec<Cause> {
    checked(|e| networking::validate_network_policy(obj, e))
}

/// PersistentVolumeClaims.
pub fn claim(obj: &serde_json::Value) -> Vec<Cause> {
    checked(|e| storage::validate_claim_spec(obj.get("spec"), &Path::new("spec"), e))
}

/// APIServices: named `version.group` (`v1.` for the core group).
pub fn api_service(obj: &serde_json::Value) -> Vec<Cause> {
    checked(|e| {
        let text = |p: &str| {
            obj.pointer(p)
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
        };
        let wanted = format!("{}.{}", text("/spec/version"), text("/spec/group"));
        let name = text("/metadata/name");
        if name != wanted {
            e.invalid(
                &Path::new("metadata").child("name"),
                &serde_json::Value::from(name),
                &format!("must be `spec.version+\".\"+spec.group`: \"{wanted}\""),
            );
        }
    })
}

/// The field checks of `kind`, for callers that hold only its name (tests, tools); the API
/// server runs each kind's through its registry strategy.
pub fn validate_object(kind: &str, obj: &serde_json::Value) -> Vec<Cause> {
    let check: Check = match kind {
        "Pod" => pod,
        "PodTemplate" => pod_template,
        "ReplicationController" => replication_controller,
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => {
            return workload(kind, obj);
        }
        "Job" => job,
        "CronJob" => cron_job,
        "Service" => service,
        "Ingress" => ingress,
        "NetworkPolicy" => network_policy,
        "PersistentVolumeClaim" => claim,
        "APIService" => api_service,
        _ => return Vec::new(),
    };
    check(obj)
}

/// A cause when the field at `pointer` changed (and had a value): `field is immutable`.
fn immutable(
    old: &serde_json::Value,
    new: &serde_json::Value,
    pointer: &str,
    field: &str,
) -> Option<Cause> {
    let (o, n) = (old.pointer(pointer), new.pointer(pointer));
    (o != n && o.is_some()).then(|| {
        Cause::new(
            "FieldValueInvalid",
            field,
            format!(
                "Invalid value: {}: field is immutable",
                n.map_or("null".to_string(), |v| v.to_string())
            ),
        )
    })
}

/// Updates of Deployments, ReplicaSets, StatefulSets and DaemonSets: the selector stays.
pub fn workload_update(old: &serde_json::Value, new: &serde_json::Value) -> Vec<Cause> {
    immutable(old, new, "/spec/selector", "spec.selector")
        .into_iter()
        .collect()
}

/// Updates of Jobs: the selector and the pod template stay.
pub fn job_update(old: &serde_json::Value, new: &serde_json::Value) -> Vec<Cause> {
    [
        immutable(old, new, "/spec/selector", "spec.selector"),
        immutable(old, new, "/spec/template/spec/containers", "spec.template"),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Updates of Services: an allocated cluster IP stays.
pub fn service_update(old: &serde_json::Value, new: &serde_json::Value) -> Vec<Cause> {
    let allocated = old
        .pointer("/spec/clusterIP")
        .and_then(|v| v.as_str())
        .is_some_and(|ip| !ip.is_empty());
    if !allocated {
        return Vec::new();
    }
    immutable(old, new, "/spec/clusterIP", "spec.clusterIP")
        .into_iter()
        .collect()
}

/// Updates of ConfigMaps and Secrets: nothing of an immutable one's data changes, and a
/// Secret keeps its type.
pub fn config_update(secret: bool, old: &serde_json::Value, new: &serde_json::Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if old.get("immutable") == Some(&serde_json::Value::Bool(true)) {
        for (pointer, field) in [
            ("/data", "data"),
            ("/binaryData", "binaryData"),
            ("/immutable", "immutable"),
        ] {
            if old.pointer(pointer) != new.pointer(pointer) {
                causes.push(Cause::new(
                    "FieldValueForbidden",
                    field,
                    "Forbidden: field is immutable when `immutable` is set",
                ));
            }
        }
    }
    if secret {
        causes.extend(immutable(old, new, "/type", "type"));
    }
    causes
}

#[cfg(test)]
mod object_tests {
    use super::*;
    use serde_json::json;

    /// The causes for `obj` of `kind` after Kubernetes' defaults, as (field, message).
    fn check(kind: &str, mut obj: serde_json::Value) -> Vec<(String, String)> {
        crate::defaults::apply(kind, &mut obj);
        validate_object(kind, &obj)
            .into_iter()
            .map(|c| (c.field, c.message))
            .collect()
    }

    fn pair(field: &str, message: &str) -> (String, String) {
        (field.to_string(), message.to_string())
    }

    #[test]
    fn required_fields_and_selector_match() {
        let d = json!({"spec": {"selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c"}]}}}});
        assert_eq!(
            check("Deployment", d),
            [
                pair(
                    "spec.template.metadata.labels",
                    "Invalid value: map[string]string{\"app\":\"b\"}: `selector` does not match template `labels`"
                ),
                pair("spec.template.spec.containers[0].image", "Required value"),
            ]
        );
        let job = json!({"spec": {"template": {"spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "i"}]}}}});
        assert_eq!(
            check("Job", job),
            [pair(
                "spec.template.spec.restartPolicy",
                "Required value: valid values: \"OnFailure\", \"Never\""
            )]
        );
        assert_eq!(
            check("Service", json!({"spec": {}})),
            [pair("spec.ports", "Required value")]
        );
        assert!(check("Service", json!({"spec": {"clusterIP": "None"}})).is_empty());
        assert!(check("ConfigMap", json!({})).is_empty());
    }

    #[test]
    fn container_ports_names_env_and_resources() {
        let pod = json!({"spec": {"containers": [
            {"name": "web", "image": "nginx", "ports": [
                {"containerPort": 70000}, {"containerPort": 80, "name": "Http"},
                {"containerPort": 81, "name": "a", "protocol": "HTTP"},
                {"containerPort": 82, "name": "a"}],
             "env": [{"name": "A=B", "value": "x"}],
             "resources": {"requests": {"cpu": "2", "memory": "-1"}, "limits": {"cpu": "1", "gpu": "1"}}},
            {"name": "web", "image": " busybox"}]}});
        let got = check("Pod", pod);
        let want = [
            pair(
                "spec.containers[0].ports[0].containerPort",
                "Invalid value: 70000: must be between 1 and 65535, inclusive",
            ),
            pair(
                "spec.containers[0].ports[1].name",
                "Invalid value: \"Http\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
            ),
            pair(
                "spec.containers[0].ports[2].protocol",
                "Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            ),
            pair("spec.containers[0].ports[3].name", "Duplicate value: \"a\""),
            pair(
                "spec.containers[0].env[0].name",
                "Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
            ),
            pair(
                "spec.containers[0].resources.limits[gpu]",
                "Invalid value: \"gpu\": must be a standard resource type or fully qualified",
            ),
            pair(
                "spec.containers[0].resources.limits[gpu]",
                "Invalid value: \"gpu\": must be a standard resource for containers",
            ),
            pair(
                "spec.containers[0].resources.requests",
                "Invalid value: \"2\": must be less than or equal to cpu limit of 1",
            ),
            pair(
                "spec.containers[0].resources.requests[memory]",
                "Invalid value: \"-1\": must be greater than or equal to 0",
            ),
            pair("spec.containers[1].name", "Duplicate value: \"web\""),
            pair(
                "spec.containers[1].image",
                "Invalid value: \" busybox\": must not have leading or trailing whitespace",
            ),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn volumes_and_mounts() {
        let pod = json!({"spec": {"volumes": [{"name": "a", "emptyDir": {}}, {"name": "a", "emptyDir": {}},
                {"name": "b"}, {"name": "Bad_Name", "emptyDir": {}, "configMap": {"name": "x"}}],
            "containers": [{"name": "c", "image": "i", "volumeMounts": [
                {"name": "a", "mountPath": "/a"}, {"name": "zz", "mountPath": "/a"}]}]}});
        let got = check("Pod", pod);
        assert_eq!(
            got[0],
            pair("spec.volumes[1].name", "Duplicate value: \"a\"")
        );
        // Volume b names no source: it is defaulted to an emptyDir, as Kubernetes does.
        assert_eq!(got[1].0, "spec.volumes[3].name");
        assert_eq!(
            got[2],
            pair(
                "spec.volumes[3].configMap",
                "Forbidden: may not specify more than 1 volume type"
            )
        );
        assert_eq!(
            got[3],
            pair(
                "spec.containers[0].volumeMounts[1].name",
                "Not found: \"zz\""
            )
        );
        assert_eq!(
            got[4],
            pair(
                "spec.containers[0].volumeMounts[1].mountPath",
                "Invalid value: \"/a\": must be unique"
            )
        );
        assert_eq!(got.len(), 5, "{got:?}");
        let bare = json!({"spec": {"volumes": [{"name": "b"}], "restartPolicy": "Always",
            "dnsPolicy": "ClusterFirst", "containers": [{"name": "c", "image": "i"}]}});
        assert_eq!(
            validate_object("Pod", &bare)[0].message,
            "Required value: must specify a volume type"
        );
    }

    #[test]
    fn services() {
        let svc = json!({"spec": {"type": "Foo", "sessionAffinity": "Sticky", "ports": [
            {"port": 0}, {"name": "web", "port": 80, "targetPort": "Not_A_Name"},
            {"name": "web", "port": 81, "nodePort": 30001}]}});
        let got = check("Service", svc);
        let want = [
            pair("spec.ports[0].name", "Required value"),
            pair(
                "spec.ports[0].port",
                "Invalid value: 0: must be between 1 and 65535, inclusive",
            ),
            pair(
                "spec.ports[0].targetPort",
                "Invalid value: 0: must be between 1 and 65535, inclusive",
            ),
            pair(
                "spec.ports[1].targetPort",
                "Invalid value: \"Not_A_Name\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
            ),
            pair("spec.ports[2].name", "Duplicate value: \"web\""),
            pair(
                "spec.ports[2].nodePort",
                "Forbidden: may not be used when `type` is 'Foo'",
            ),
            pair(
                "spec.type",
                "Unsupported value: \"Foo\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
            ),
            pair(
                "spec.sessionAffinity",
                "Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\"",
            ),
        ];
        assert_eq!(got, want);
        let external = check("Service", json!({"spec": {"type": "ExternalName"}}));
        assert_eq!(external, [pair("spec.externalName", "Required value")]);
    }

    #[test]
    fn workloads() {
        let template = json!({"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let d = json!({"spec": {"replicas": -1, "selector": {"matchLabels": {"app": "a"}}, "template": template,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "0%"}}}});
        assert_eq!(
            check("Deployment", d),
            [
                pair(
                    "spec.replicas",
                    "Invalid value: -1: must be greater than or equal to 0"
                ),
                pair(
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    "Invalid value: 0: may not be 0 when `maxSurge` is 0"
                ),
            ]
        );
        let sts = json!({"spec": {"selector": {"matchLabels": {"app": "a"}}, "template": template,
            "podManagementPolicy": "Random"}});
        assert_eq!(
            check("StatefulSet", sts),
            [pair(
                "spec.podManagementPolicy",
                "Invalid value: \"Random\": must be 'OrderedReady' or 'Parallel'"
            )]
        );
        let cron = json!({"spec": {"schedule": "every minute", "concurrencyPolicy": "Sometimes",
            "jobTemplate": {"spec": {"backoffLimit": -2, "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "c", "image": "i"}]}}}}}});
        assert_eq!(
            check("CronJob", cron),
            [
                pair(
                    "spec.schedule",
                    "Invalid value: \"every minute\": expected exactly 5 fields, found 2: [every minute]"
                ),
                pair(
                    "spec.concurrencyPolicy",
                    "Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\""
                ),
                pair(
                    "spec.jobTemplate.spec.backoffLimit",
                    "Invalid value: -2: must be greater than or equal to 0"
                ),
            ]
        );
    }

    #[test]
    fn ingresses_policies_and_claims() {
        let ing = json!({"spec": {"rules": [{"host": "1.2.3.4", "http": {"paths": [
            {"path": "api", "pathType": "Prefix", "backend": {"service": {"name": "s", "port": {}}}},
            {"path": "/", "backend": {"service": {"name": "s", "port": {"number": 80}}}}]}}]}});
        assert_eq!(
            check("Ingress", ing),
            [
                pair(
                    "spec.rules[0].host",
                    "Invalid value: \"1.2.3.4\": must be a DNS name, not an IP address"
                ),
                pair(
                    "spec.rules[0].http.paths[0].path",
                    "Invalid value: \"api\": must be an absolute path"
                ),
                pair(
                    "spec.rules[0].http.paths[0].backend",
                    "Required value: port name or number is required"
                ),
                pair(
                    "spec.rules[0].http.paths[1].pathType",
                    "Required value: pathType must be specified"
                ),
            ]
        );
        let np = json!({"spec": {"podSelector": {}, "policyTypes": ["Sideways"],
            "ingress": [{"ports": [{"protocol": "ICMP", "port": 70000}], "from": [{}]}]}});
        assert_eq!(
            check("NetworkPolicy", np),
            [
                pair(
                    "spec.ingress[0].ports[0].protocol",
                    "Unsupported value: \"ICMP\": supported values: \"TCP\", \"UDP\", \"SCTP\""
                ),
                pair(
                    "spec.ingress[0].ports[0].port",
                    "Invalid value: 70000: must be between 1 and 65535, inclusive"
                ),
                pair(
                    "spec.ingress[0].from[0]",
                    "Required value: must specify a peer"
                ),
                pair(
                    "spec.policyTypes[0]",
                    "Unsupported value: \"Sideways\": supported values: \"Ingress\", \"Egress\""
                ),
            ]
        );
        let pvc = json!({"spec": {"resources": {"requests": {"storage": "0"}}}});
        assert_eq!(
            check("PersistentVolumeClaim", pvc),
            [
                pair(
                    "spec.accessModes",
                    "Required value: at least 1 access mode is required"
                ),
                pair(
                    "spec.resources[storage]",
                    "Invalid value: \"0\": must be greater than zero"
                ),
            ]
        );
    }

    /// What the field checks cost per object: a typical Deployment (one container with
    /// ports, env, resources and a mount) and a Service, after defaults.
    #[test]
    #[ignore = "a benchmark: run with --release --ignored --nocapture"]
    fn validation_cost() {
        let mut d = json!({"spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                "volumes": [{"name": "conf", "configMap": {"name": "web"}}],
                "containers": [{"name": "web", "image": "nginx:1.27",
                    "ports": [{"name": "http", "containerPort": 80}],
                    "env": [{"name": "MODE", "value": "prod"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                                  "limits": {"cpu": "1", "memory": "128Mi"}},
                    "volumeMounts": [{"name": "conf", "mountPath": "/etc/web"}]}]}}}});
        crate::defaults::apply("Deployment", &mut d);
        let mut svc = json!({"spec": {"ports": [{"name": "http", "port": 80, "targetPort": "http"},
            {"name": "metrics", "port": 9090}], "selector": {"app": "web"}}});
        crate::defaults::apply("Service", &mut svc);
        let n = 50_000;
        for (kind, obj) in [("Deployment", &d), ("Service", &svc)] {
            let start = std::time::Instant::now();
            let mut causes = 0;
            for _ in 0..n {
                causes += validate_object(kind, obj).len();
            }
            let micros = start.elapsed().as_secs_f64() * 1e6 / f64::from(n);
            eprintln!("{kind}: {micros:.2} µs per object");
            assert_eq!(causes, 0);
        }
    }

    #[test]
    fn immutable_fields() {
        let old = json!({"spec": {"selector": {"matchLabels": {"app": "a"}}}});
        let new = json!({"spec": {"selector": {"matchLabels": {"app": "b"}}}});
        assert_eq!(workload_update(&old, &new)[0].field, "spec.selector");
        let cm = json!({"immutable": true, "data": {"a": "1"}});
        let changed = json!({"immutable": true, "data": {"a": "2"}});
        assert_eq!(config_update(false, &cm, &changed)[0].field, "data");
        assert!(config_update(false, &cm, &cm).is_empty());
    }
}
