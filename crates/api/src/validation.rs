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
            "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding" => NameRule::PathSegment,
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
    }
}
