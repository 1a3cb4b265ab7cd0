//! Which requests a webhook sees: its rules (operations, groups, versions, resources with
//! subresources, scope), tried on the request's own group/version/resource and then, with
//! `matchPolicy: Equivalent`, on every other version of the same stored resource.

use tug_api::Resource;
use tug_api::catalog::Catalog;

use super::config::{Hook, Rule};
use crate::admission::Attributes;

fn any_or(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == "*" || v == value)
}

/// Whether `pattern` (`pods`, `pods/status`, `*`, `*/status`, `*/*`) covers a resource and
/// subresource.
fn resource_matches(pattern: &str, resource: &str, sub: &str) -> bool {
    let (main, pattern_sub) = pattern.split_once('/').unwrap_or((pattern, ""));
    (main == "*" || main == resource) && (pattern_sub == "*" || pattern_sub == sub)
}

fn rule_matches(rule: &Rule, a: &Attributes<'_>, r: &Resource) -> bool {
    let sub = a.subresource.unwrap_or("");
    let namespaces = r.group.is_empty() && r.plural == "namespaces";
    let namespaced = !a.namespace.is_empty() && !namespaces;
    let scope_ok = match rule.scope.as_str() {
        "Namespaced" => namespaced,
        "Cluster" => !namespaced,
        _ => true,
    };
    scope_ok
        && any_or(&rule.operations, a.operation.as_str())
        && any_or(&rule.groups, r.group)
        && any_or(&rule.versions, r.version)
        && rule
            .resources
            .iter()
            .any(|p| resource_matches(p, r.plural, sub))
}

/// The resource a hook sees the request as: the request's own if a rule covers it, else
/// (matchPolicy Equivalent) the first other version of the same stored resource a rule
/// covers; `None` when the hook does not match.
pub fn matched(hook: &Hook, a: &Attributes<'_>, catalog: &Catalog) -> Option<&'static Resource> {
    matched_by(&hook.rules, hook.exact, a, catalog)
}

/// [`matched`] for any list of rules (an admission policy's too).
pub fn matched_by(
    rules: &[Rule],
    exact: bool,
    a: &Attributes<'_>,
    catalog: &Catalog,
) -> Option<&'static Resource> {
    let own = a.resource;
    if rules.iter().any(|rule| rule_matches(rule, a, own)) {
        return catalog.lookup(own.group, own.version, own.plural);
    }
    if exact {
        return None;
    }
    for rule in rules {
        for other in catalog.all() {
            if other.storage == own.storage
                && (other.group, other.version) != (own.group, own.version)
                && rule_matches(rule, a, other)
            {
                return Some(other);
            }
        }
    }
    None
}

/// Kinds webhooks are never called for: the admission configuration itself, so that a broken
/// webhook cannot lock its own configuration.
pub fn exempt(r: &Resource) -> bool {
    r.group == "admissionregistration.k8s.io"
        && matches!(
            r.kind,
            "ValidatingWebhookConfiguration"
                | "MutatingWebhookConfiguration"
                | "ValidatingAdmissionPolicy"
                | "ValidatingAdmissionPolicyBinding"
                | "MutatingAdmissionPolicy"
                | "MutatingAdmissionPolicyBinding"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_patterns() {
        assert!(resource_matches("pods", "pods", ""));
        assert!(!resource_matches("pods", "pods", "status"));
        assert!(resource_matches("*", "configmaps", ""));
        assert!(!resource_matches("*", "pods", "exec"));
        assert!(resource_matches("pods/*", "pods", ""));
        assert!(resource_matches("pods/*", "pods", "exec"));
        assert!(resource_matches("*/status", "deployments", "status"));
        assert!(resource_matches("*/*", "deployments", "scale"));
        assert!(!resource_matches("pods/status", "pods", "exec"));
    }
}
