//! Name and label validation, with Kubernetes' messages.

use crate::status::Cause;

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

impl NameRule {
    /// The rule Kubernetes applies to objects of `kind`.
    pub fn for_kind(kind: &str) -> Self {
        match kind {
            "Namespace" => NameRule::Label,
            "Service" => NameRule::Dns1035,
            "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding" | "APIService" => {
                NameRule::PathSegment
            }
            _ => NameRule::Subdomain,
        }
    }
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

/// Field checks of a whole object, per kind: required fields, and consistency Kubernetes
/// insists on (a workload's selector must match its template's labels, a Job's pods may not
/// restart Always).
pub fn validate_object(kind: &str, obj: &serde_json::Value) -> Vec<Cause> {
    use serde_json::Value;
    let mut causes = Vec::new();
    let required = |causes: &mut Vec<Cause>, field: &str| {
        causes.push(Cause::new("FieldValueRequired", field, "Required value"));
    };
    let check_pod_spec = |causes: &mut Vec<Cause>, spec: Option<&Value>, at: &str| {
        let containers = spec
            .and_then(|s| s.get("containers"))
            .and_then(Value::as_array);
        match containers {
            None => required(causes, &format!("{at}.containers")),
            Some(cs) if cs.is_empty() => required(causes, &format!("{at}.containers")),
            Some(cs) => {
                for (i, c) in cs.iter().enumerate() {
                    for f in ["name", "image"] {
                        if c.get(f).and_then(Value::as_str).is_none_or(str::is_empty) {
                            required(causes, &format!("{at}.containers[{i}].{f}"));
                        }
                    }
                }
            }
        }
    };
    match kind {
        "Pod" => check_pod_spec(&mut causes, obj.get("spec"), "spec"),
        // An APIService is named `version.group` (`v1.` for the core group).
        "APIService" => {
            let text = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or_default();
            let wanted = format!("{}.{}", text("/spec/version"), text("/spec/group"));
            let name = text("/metadata/name");
            if name != wanted {
                causes.push(Cause::new(
                    "FieldValueInvalid",
                    "metadata.name",
                    format!(
                        "Invalid value: \"{name}\": must be `spec.version+\".\"+spec.group`: \"{wanted}\""
                    ),
                ));
            }
        }
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => {
            let selector = obj.pointer("/spec/selector");
            if selector.is_none_or(|s| s.as_object().is_none_or(|m| m.is_empty())) {
                required(&mut causes, "spec.selector");
            }
            let labels = obj
                .pointer("/spec/template/metadata/labels")
                .and_then(Value::as_object);
            if let Some(Value::Object(want)) = obj.pointer("/spec/selector/matchLabels") {
                let matches = want
                    .iter()
                    .all(|(k, v)| labels.is_some_and(|l| l.get(k) == Some(v)));
                if !matches {
                    causes.push(Cause::new(
                        "FieldValueInvalid",
                        "spec.template.metadata.labels",
                        "Invalid value: `selector` does not match template `labels`",
                    ));
                }
            }
            check_pod_spec(
                &mut causes,
                obj.pointer("/spec/template/spec"),
                "spec.template.spec",
            );
        }
        "Job" => {
            check_pod_spec(
                &mut causes,
                obj.pointer("/spec/template/spec"),
                "spec.template.spec",
            );
            let policy = obj
                .pointer("/spec/template/spec/restartPolicy")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !matches!(policy, "OnFailure" | "Never") {
                causes.push(Cause::new(
                    "FieldValueNotSupported",
                    "spec.template.spec.restartPolicy",
                    format!(
                        "Unsupported value: {policy:?}: supported values: \"OnFailure\", \"Never\""
                    ),
                ));
            }
        }
        "Service" => {
            let kind = obj
                .pointer("/spec/type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP");
            let headless = obj.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");
            let ports = obj.pointer("/spec/ports").and_then(Value::as_array);
            if kind != "ExternalName" && !headless && ports.is_none_or(|p| p.is_empty()) {
                required(&mut causes, "spec.ports");
            }
        }
        _ => {}
    }
    causes
}

/// Checks an update against the old object: fields Kubernetes does not let change.
pub fn validate_update(kind: &str, old: &serde_json::Value, new: &serde_json::Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let immutable = |causes: &mut Vec<Cause>, pointer: &str, field: &str| {
        let (o, n) = (old.pointer(pointer), new.pointer(pointer));
        if o != n && o.is_some() {
            causes.push(Cause::new(
                "FieldValueInvalid",
                field,
                format!(
                    "Invalid value: {}: field is immutable",
                    n.map_or("null".to_string(), |v| v.to_string())
                ),
            ));
        }
    };
    match kind {
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => {
            immutable(&mut causes, "/spec/selector", "spec.selector");
        }
        "Job" => {
            immutable(&mut causes, "/spec/selector", "spec.selector");
            immutable(
                &mut causes,
                "/spec/template/spec/containers",
                "spec.template",
            );
        }
        "Service"
            if old
                .pointer("/spec/clusterIP")
                .and_then(|v| v.as_str())
                .is_some_and(|ip| !ip.is_empty()) =>
        {
            immutable(&mut causes, "/spec/clusterIP", "spec.clusterIP");
        }
        "ConfigMap" | "Secret" => {
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
            if kind == "Secret" {
                immutable(&mut causes, "/type", "type");
            }
        }
        _ => {}
    }
    causes
}

#[cfg(test)]
mod object_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn required_fields_and_selector_match() {
        let d = json!({"spec": {"selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c"}]}}}});
        let fields: Vec<String> = validate_object("Deployment", &d)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.template.metadata.labels",
                "spec.template.spec.containers[0].image"
            ]
        );
        let job = json!({"spec": {"template": {"spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "i"}]}}}});
        assert_eq!(
            validate_object("Job", &job)[0].field,
            "spec.template.spec.restartPolicy"
        );
        assert_eq!(
            validate_object("Service", &json!({"spec": {}}))[0].field,
            "spec.ports"
        );
        assert!(validate_object("Service", &json!({"spec": {"clusterIP": "None"}})).is_empty());
        assert!(validate_object("ConfigMap", &json!({})).is_empty());
    }

    #[test]
    fn immutable_fields() {
        let old = json!({"spec": {"selector": {"matchLabels": {"app": "a"}}}});
        let new = json!({"spec": {"selector": {"matchLabels": {"app": "b"}}}});
        assert_eq!(
            validate_update("Deployment", &old, &new)[0].field,
            "spec.selector"
        );
        let cm = json!({"immutable": true, "data": {"a": "1"}});
        let changed = json!({"immutable": true, "data": {"a": "2"}});
        assert_eq!(validate_update("ConfigMap", &cm, &changed)[0].field, "data");
        assert!(validate_update("ConfigMap", &cm, &cm).is_empty());
    }
}
