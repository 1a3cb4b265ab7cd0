//! The RBAC authorizer: Roles, ClusterRoles and their bindings held as an index from
//! subjects to bindings, and evaluated as kube-apiserver's RBAC authorizer evaluates them
//! (ClusterRoleBindings first, then the RoleBindings of the request's namespace; the first
//! rule that allows wins; a binding whose role is missing adds to the reason of a denial).

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use serde_json::Value;

use super::request::Attributes;
use crate::auth::Identity;

/// A binding of a role to subjects, from a RoleBinding or a ClusterRoleBinding.
#[derive(Clone, Debug)]
struct Binding {
    name: String,
    /// The RoleBinding's namespace; empty for a ClusterRoleBinding.
    namespace: String,
    role_ref: RoleRef,
    subjects: Vec<Subject>,
}

/// Which bindings name a user, a group (or a service account, by its user name).
#[derive(Debug, Default)]
struct SubjectIndex {
    users: HashMap<String, Vec<usize>>,
    groups: HashMap<String, Vec<usize>>,
}

impl SubjectIndex {
    fn build(bindings: &[Binding]) -> Self {
        let mut index = Self::default();
        for (i, b) in bindings.iter().enumerate() {
            for s in &b.subjects {
                let (map, key) = match s.kind.as_str() {
                    "User" => (&mut index.users, s.name.clone()),
                    "Group" => (&mut index.groups, s.name.clone()),
                    "ServiceAccount" => match service_account_user(s, &b.namespace) {
                        Some(user) => (&mut index.users, user),
                        None => continue,
                    },
                    _ => continue,
                };
                let list = map.entry(key).or_default();
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        index
    }

    /// The bindings naming `user` or one of its groups, in the order they are listed.
    fn matching(&self, user: &Identity) -> Vec<usize> {
        let mut found: Vec<usize> = self.users.get(&user.user).cloned().unwrap_or_default();
        for g in &user.groups {
            if let Some(list) = self.groups.get(g) {
                found.extend_from_slice(list);
            }
        }
        found.sort_unstable();
        found.dedup();
        found
    }
}

/// The user name of a ServiceAccount subject (its namespace defaults to the binding's).
fn service_account_user(s: &Subject, binding_namespace: &str) -> Option<String> {
    let ns = s
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(binding_namespace);
    (!ns.is_empty()).then(|| format!("system:serviceaccount:{ns}:{}", s.name))
}

/// Whether a subject of a binding (in `namespace`) names the user.
fn applies_to(s: &Subject, user: &Identity, namespace: &str) -> bool {
    match s.kind.as_str() {
        "User" => s.name == user.user,
        "Group" => user.groups.contains(&s.name),
        "ServiceAccount" => service_account_user(s, namespace).is_some_and(|u| u == user.user),
        _ => false,
    }
}

/// How a reason names a subject, as kube-apiserver's does.
fn describe_subject(s: &Subject, binding_namespace: &str) -> String {
    match s.kind.as_str() {
        "ServiceAccount" => {
            let ns = s
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_namespace);
            format!("{} {:?}", s.kind, format!("{}/{ns}", s.name))
        }
        _ => format!("{} {:?}", s.kind, s.name),
    }
}

/// Every role and binding, indexed for evaluation. Immutable: a change builds a new one.
#[derive(Debug, Default)]
pub struct Policy {
    roles: HashMap<(String, String), Arc<[PolicyRule]>>,
    cluster_roles: HashMap<String, Arc<[PolicyRule]>>,
    cluster_bindings: Vec<Binding>,
    cluster_index: SubjectIndex,
    bindings: HashMap<String, (Vec<Binding>, SubjectIndex)>,
}

/// The objects a policy is built from, as stored.
#[derive(Debug, Default)]
pub struct Objects {
    pub roles: Vec<Value>,
    pub cluster_roles: Vec<Value>,
    pub role_bindings: Vec<Value>,
    pub cluster_role_bindings: Vec<Value>,
}

/// Decodes the objects of one kind, skipping (with a warning) any that do not decode.
fn decode<T: serde::de::DeserializeOwned>(items: &[Value]) -> Vec<T> {
    items
        .iter()
        .filter_map(|v| match serde_json::from_value(v.clone()) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(error = %e, name = %tug_api::meta::name(v), "an RBAC object does not decode; it grants nothing");
                None
            }
        })
        .collect()
}

impl Policy {
    /// Builds the index of `objects`.
    pub fn new(objects: &Objects) -> Self {
        let mut p = Policy::default();
        for r in decode::<Role>(&objects.roles) {
            p.roles.insert(
                (
                    r.metadata.namespace.unwrap_or_default(),
                    r.metadata.name.unwrap_or_default(),
                ),
                r.rules.unwrap_or_default().into(),
            );
        }
        for r in decode::<ClusterRole>(&objects.cluster_roles) {
            p.cluster_roles.insert(
                r.metadata.name.unwrap_or_default(),
                r.rules.unwrap_or_default().into(),
            );
        }
        p.cluster_bindings = decode::<ClusterRoleBinding>(&objects.cluster_role_bindings)
            .into_iter()
            .map(|b| Binding {
                name: b.metadata.name.unwrap_or_default(),
                namespace: String::new(),
                role_ref: b.role_ref,
                subjects: b.subjects.unwrap_or_default(),
            })
            .collect();
        p.cluster_index = SubjectIndex::build(&p.cluster_bindings);
        let mut by_ns: HashMap<String, Vec<Binding>> = HashMap::new();
        for b in decode::<RoleBinding>(&objects.role_bindings) {
            let namespace = b.metadata.namespace.unwrap_or_default();
            by_ns.entry(namespace.clone()).or_default().push(Binding {
                name: b.metadata.name.unwrap_or_default(),
                namespace,
                role_ref: b.role_ref,
                subjects: b.subjects.unwrap_or_default(),
            });
        }
        p.bindings = by_ns
            .into_iter()
            .map(|(ns, list)| {
                let index = SubjectIndex::build(&list);
                (ns, (list, index))
            })
            .collect();
        p
    }

    /// The rules a role reference grants in `namespace` (a RoleBinding's Role is looked up
    /// there), or the error saying it is missing.
    pub fn role_rules(
        &self,
        role_ref: &RoleRef,
        namespace: &str,
    ) -> Result<Arc<[PolicyRule]>, String> {
        match role_ref.kind.as_str() {
            "ClusterRole" => self
                .cluster_roles
                .get(&role_ref.name)
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "clusterrole.rbac.authorization.k8s.io {:?} not found",
                        role_ref.name
                    )
                }),
            "Role" => self
                .roles
                .get(&(namespace.to_string(), role_ref.name.clone()))
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "role.rbac.authorization.k8s.io {:?} not found",
                        role_ref.name
                    )
                }),
            other => Err(format!("unsupported role reference kind: {other:?}")),
        }
    }

    /// Visits the rules that apply to `user` in `namespace` (cluster-wide ones only when it is
    /// empty) with a description of where each comes from, until `visit` returns false.
    /// Returns the errors met (bindings of missing roles).
    fn visit(
        &self,
        user: &Identity,
        namespace: &str,
        mut visit: impl FnMut(&dyn Fn() -> String, &PolicyRule) -> bool,
    ) -> Vec<String> {
        let mut errors = Vec::new();
        let mut sets: Vec<(&[Binding], Vec<usize>)> =
            vec![(&self.cluster_bindings, self.cluster_index.matching(user))];
        if !namespace.is_empty()
            && let Some((list, index)) = self.bindings.get(namespace)
        {
            sets.push((list, index.matching(user)));
        }
        for (list, found) in sets {
            for i in found {
                let b = &list[i];
                let Some(subject) = b
                    .subjects
                    .iter()
                    .find(|s| applies_to(s, user, &b.namespace))
                else {
                    continue;
                };
                let rules = match self.role_rules(&b.role_ref, &b.namespace) {
                    Ok(r) => r,
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                };
                let describe = || {
                    let (what, name) = if b.namespace.is_empty() {
                        ("ClusterRoleBinding", b.name.clone())
                    } else {
                        ("RoleBinding", format!("{}/{}", b.name, b.namespace))
                    };
                    format!(
                        "{what} {name:?} of {} {:?} to {}",
                        b.role_ref.kind,
                        b.role_ref.name,
                        describe_subject(subject, &b.namespace)
                    )
                };
                for rule in rules.iter() {
                    if !visit(&describe, rule) {
                        return errors;
                    }
                }
            }
        }
        errors
    }

    /// Whether RBAC allows the request, and why (the reason is empty for a plain denial).
    pub fn authorize(&self, user: &Identity, a: &Attributes) -> (bool, String) {
        let mut reason = None;
        let errors = self.visit(user, &a.namespace, |describe, rule| {
            if rule_allows(rule, a) {
                reason = Some(format!("RBAC: allowed by {}", describe()));
                false
            } else {
                true
            }
        });
        match reason {
            Some(r) => (true, r),
            None if errors.is_empty() => (false, String::new()),
            None => (false, format!("RBAC: {}", aggregate(errors))),
        }
    }

    /// Every rule that applies to `user` in `namespace`, and the errors met gathering them.
    pub fn rules_for(&self, user: &Identity, namespace: &str) -> (Vec<PolicyRule>, Vec<String>) {
        let mut rules = Vec::new();
        let errors = self.visit(user, namespace, |_, rule| {
            rules.push(rule.clone());
            true
        });
        (rules, errors)
    }
}

/// Several errors as Kubernetes' aggregate error writes them: one alone, more in brackets,
/// each message once.
pub fn aggregate(mut errors: Vec<String>) -> String {
    let mut seen = std::collections::HashSet::new();
    errors.retain(|e| seen.insert(e.clone()));
    match errors.as_slice() {
        [one] => one.clone(),
        _ => format!("[{}]", errors.join(", ")),
    }
}

fn has(list: &Option<Vec<String>>, want: &str) -> bool {
    list.as_deref()
        .unwrap_or_default()
        .iter()
        .any(|v| v == "*" || v == want)
}

/// Whether one rule allows the request.
pub fn rule_allows(rule: &PolicyRule, a: &Attributes) -> bool {
    if !rule.verbs.iter().any(|v| v == "*" || *v == a.verb) {
        return false;
    }
    if a.resource_request {
        has(&rule.api_groups, &a.api_group)
            && resource_matches(rule, &a.resource_and_subresource(), &a.subresource)
            && name_matches(rule, &a.name)
    } else {
        non_resource_url_matches(rule, &a.path)
    }
}

/// A rule's resources match `pods/log` by `*`, by `pods/log`, or by `*/log`.
fn resource_matches(rule: &PolicyRule, combined: &str, subresource: &str) -> bool {
    rule.resources
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|r| {
            r == "*"
                || r == combined
                || (!subresource.is_empty() && r.strip_prefix("*/") == Some(subresource))
        })
}

/// A rule without resourceNames matches any name; one with them only those.
fn name_matches(rule: &PolicyRule, name: &str) -> bool {
    match rule.resource_names.as_deref() {
        None | Some([]) => true,
        Some(names) => names.iter().any(|n| n == name),
    }
}

/// A rule's nonResourceURLs match a path exactly, by `*`, or by a prefix ending in `*`.
fn non_resource_url_matches(rule: &PolicyRule, path: &str) -> bool {
    rule.non_resource_urls
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|u| {
            u == "*"
                || u == path
                || u.strip_suffix('*')
                    .is_some_and(|prefix| path.starts_with(prefix))
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn user(name: &str, groups: &[&str]) -> Identity {
        Identity {
            user: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    fn policy() -> Policy {
        Policy::new(&Objects {
            roles: vec![json!({
                "metadata": {"name": "reader", "namespace": "team"},
                "rules": [
                    {"apiGroups": [""], "resources": ["configmaps", "pods/log"], "verbs": ["get", "list"]},
                    {"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["update"]},
                    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["one"]}
                ]
            })],
            cluster_roles: vec![json!({
                "metadata": {"name": "health"},
                "rules": [{"nonResourceURLs": ["/healthz", "/logs/*"], "verbs": ["get"]}]
            })],
            role_bindings: vec![
                json!({
                    "metadata": {"name": "robots-read", "namespace": "team"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
                    "subjects": [{"kind": "ServiceAccount", "name": "robot"}]
                }),
                json!({
                    "metadata": {"name": "ghost", "namespace": "team"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "missing"},
                    "subjects": [{"kind": "Group", "name": "devs"}]
                }),
            ],
            cluster_role_bindings: vec![json!({
                "metadata": {"name": "everyone-health"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "health"},
                "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:authenticated"}]
            })],
        })
    }

    fn get(resource: &str, sub: &str, ns: &str, name: &str) -> Attributes {
        Attributes::resource("get", "", resource, sub, ns, name)
    }

    #[test]
    fn a_role_binding_grants_in_its_namespace_only() {
        let p = policy();
        let robot = user(
            "system:serviceaccount:team:robot",
            &["system:authenticated"],
        );
        let (allowed, reason) = p.authorize(&robot, &get("configmaps", "", "team", "x"));
        assert!(allowed);
        assert_eq!(
            reason,
            "RBAC: allowed by RoleBinding \"robots-read/team\" of Role \"reader\" to ServiceAccount \"robot/team\""
        );
        assert!(!p.authorize(&robot, &get("configmaps", "", "other", "x")).0);
        assert!(!p.authorize(&robot, &get("configmaps", "", "", "")).0);
        // Another namespace's account of the same name is someone else.
        let other = user("system:serviceaccount:other:robot", &[]);
        assert!(!p.authorize(&other, &get("configmaps", "", "team", "x")).0);
    }

    #[test]
    fn subresources_names_and_urls_match_as_kubernetes_matches_them() {
        let p = policy();
        let robot = user(
            "system:serviceaccount:team:robot",
            &["system:authenticated"],
        );
        assert!(p.authorize(&robot, &get("pods", "log", "team", "p")).0);
        assert!(!p.authorize(&robot, &get("pods", "", "team", "p")).0);
        let scale = Attributes::resource("update", "apps", "deployments", "scale", "team", "d");
        assert!(p.authorize(&robot, &scale).0);
        assert!(p.authorize(&robot, &get("secrets", "", "team", "one")).0);
        assert!(!p.authorize(&robot, &get("secrets", "", "team", "two")).0);
        let health = Attributes::non_resource("get", "/healthz");
        let (ok, reason) = p.authorize(&robot, &health);
        assert!(ok, "{reason}");
        assert!(
            reason.ends_with("to Group \"system:authenticated\""),
            "{reason}"
        );
        assert!(
            p.authorize(&robot, &Attributes::non_resource("get", "/logs/a/b"))
                .0
        );
        assert!(
            !p.authorize(&robot, &Attributes::non_resource("post", "/healthz"))
                .0
        );
        assert!(
            !p.authorize(&robot, &Attributes::non_resource("get", "/metrics"))
                .0
        );
    }

    #[test]
    fn a_binding_to_a_missing_role_says_so_in_the_denial() {
        let p = policy();
        let dev = user("dana", &["devs"]);
        assert_eq!(
            p.authorize(&dev, &get("pods", "", "team", "")),
            (
                false,
                "RBAC: role.rbac.authorization.k8s.io \"missing\" not found".to_string()
            )
        );
        assert_eq!(
            aggregate(vec!["a".into(), "b".into(), "a".into()]),
            "[a, b]"
        );
    }

    /// The decision time with 1,000 bindings (docs/benchmarks.md):
    /// `cargo test -p tug-apiserver --release --lib decision_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn decision_cost() {
        let mut objects = Objects::default();
        for i in 0..1000 {
            let ns = format!("ns-{}", i % 50);
            objects.roles.push(json!({
                "metadata": {"name": format!("role-{i}"), "namespace": ns},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "create"]}]
            }));
            objects.role_bindings.push(json!({
                "metadata": {"name": format!("binding-{i}"), "namespace": ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("role-{i}")},
                "subjects": [{"kind": "User", "name": format!("user-{i}")}, {"kind": "Group", "name": "team"}]
            }));
        }
        for name in ["a", "b", "c"] {
            objects.cluster_role_bindings.push(json!({
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "none"},
                "subjects": [{"kind": "Group", "name": "system:authenticated"}]
            }));
        }
        let policy = Policy::new(&objects);
        let authorizer = super::super::Authorizer::default();
        authorizer.set_policy(Policy::new(&objects));
        let mut plain = Vec::new();
        let mut cached = Vec::new();
        for i in 0..20_000 {
            let u = user(&format!("user-{}", i % 1000), &["system:authenticated"]);
            let a = Attributes::resource(
                "create",
                "",
                "configmaps",
                "",
                &format!("ns-{}", i % 1000 % 50),
                "",
            );
            let t = std::time::Instant::now();
            assert!(policy.authorize(&u, &a).0);
            plain.push(t.elapsed());
            let t = std::time::Instant::now();
            assert!(authorizer.decide(&u, &a).allowed);
            cached.push(t.elapsed());
        }
        for (what, mut times) in [("RBAC evaluation", plain), ("authorizer (cached)", cached)] {
            times.sort();
            let p = |q: f64| times[((times.len() as f64) * q) as usize - 1];
            println!(
                "{what}, 1,000 bindings: p50 {:?}, p99 {:?}, max {:?}",
                p(0.5),
                p(0.99),
                times[times.len() - 1]
            );
        }
    }
}
