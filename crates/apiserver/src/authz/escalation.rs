//! Privilege-escalation prevention, as kube-apiserver's RBAC storage does it: a Role or
//! ClusterRole may only be written by someone who holds every permission it grants (or may
//! `escalate` roles), and a binding only by someone who holds every permission of the role it
//! names (or may `bind` that role). `system:masters` is exempt.

use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef};
use serde_json::Value;
use tug_api::{ApiError, Resource, meta};

use super::{Attributes, Authorizer, MASTERS, forbidden_for};
use crate::auth::Identity;

const GROUP: &str = "rbac.authorization.k8s.io";

/// Checks a write of an RBAC object by `user` (`old` is the object an update replaces).
/// Other kinds pass.
pub fn confirm_write(
    authorizer: &Authorizer,
    user: &Identity,
    r: &Resource,
    namespace: &str,
    old: Option<&Value>,
    new: &Value,
) -> Result<(), ApiError> {
    if r.group != GROUP || user.groups.iter().any(|g| g == MASTERS) {
        return Ok(());
    }
    if let Some(old) = old
        && only_gc_fields_changed(old, new)
    {
        return Ok(());
    }
    let name = meta::name(new);
    // An update names its object in the URL; a create does not.
    let request_name = if old.is_some() { name } else { "" };
    let policy = authorizer.policy();
    let refuse = |why: String| forbidden_for(GROUP, r.plural, name, &why);
    match r.plural {
        "roles" | "clusterroles" => {
            let escalate =
                Attributes::resource("escalate", GROUP, r.plural, "", namespace, request_name);
            if authorizer.decide(user, &escalate).allowed {
                return Ok(());
            }
            let rules: Vec<PolicyRule> = decode_field(new, "rules")?.unwrap_or_default();
            confirm_covered(&policy, user, namespace, &rules).map_err(refuse)?;
            if r.plural == "clusterroles" && !new["aggregationRule"].is_null() {
                confirm_covered(&policy, user, namespace, &full_authority()).map_err(|_| {
                    refuse("must have cluster-admin privileges to use the aggregationRule".into())
                })?;
            }
            Ok(())
        }
        "rolebindings" | "clusterrolebindings" => {
            let Some(role_ref) = decode_field::<RoleRef>(new, "roleRef")? else {
                return Ok(()); // validation refuses it
            };
            let resource = match role_ref.kind.as_str() {
                "ClusterRole" => "clusterroles",
                "Role" => "roles",
                _ => return Ok(()), // validation refuses it
            };
            let group = role_ref.api_group.as_deref().unwrap_or_default();
            let bind = Attributes::resource("bind", group, resource, "", namespace, &role_ref.name);
            if authorizer.decide(user, &bind).allowed {
                return Ok(());
            }
            let rules = policy
                .role_rules(&role_ref, namespace)
                .map_err(|_| ApiError::not_found(GROUP, resource, &role_ref.name))?;
            confirm_covered(&policy, user, namespace, &rules).map_err(refuse)
        }
        _ => Ok(()),
    }
}

/// A field of an RBAC object, decoded; a field of the wrong shape is left to validation.
fn decode_field<T: serde::de::DeserializeOwned>(
    obj: &Value,
    field: &str,
) -> Result<Option<T>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => Ok(serde_json::from_value(v.clone()).ok()),
    }
}

/// Whether an update touches only what the garbage collector changes (owner references and
/// finalizers), which needs no check.
fn only_gc_fields_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        for f in [
            "ownerReferences",
            "finalizers",
            "resourceVersion",
            "managedFields",
            "generation",
        ] {
            meta::remove(&mut v, f);
        }
        v
    };
    strip(old) == strip(new)
}

/// Every permission there is (what `cluster-admin` holds).
fn full_authority() -> Vec<PolicyRule> {
    vec![
        PolicyRule {
            verbs: vec!["*".into()],
            api_groups: Some(vec!["*".into()]),
            resources: Some(vec!["*".into()]),
            ..Default::default()
        },
        PolicyRule {
            verbs: vec!["*".into()],
            non_resource_urls: Some(vec!["*".into()]),
            ..Default::default()
        },
    ]
}

/// `Ok` when the user's rules in `namespace` cover `rules`; otherwise the message naming
/// what is missing, as kube-apiserver words it.
fn confirm_covered(
    policy: &super::rbac::Policy,
    user: &Identity,
    namespace: &str,
    rules: &[PolicyRule],
) -> Result<(), String> {
    let (owned, errors) = policy.rules_for(user, namespace);
    let missing = uncovered(&owned, rules);
    if missing.is_empty() {
        return Ok(());
    }
    let mut lines: Vec<String> = compact(missing).iter().map(compact_string).collect();
    lines.sort();
    lines.dedup();
    let mut msg = format!(
        "user {:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        user.user,
        go_quoted(&user.groups),
        lines.join("\n")
    );
    if !errors.is_empty() {
        msg.push_str(&format!("; resolution errors: [{}]", errors.join(" ")));
    }
    Err(msg)
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_quoted(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", items.join(" "))
}

/// The one-verb, one-resource, one-name pieces of `rules` that no rule of `owned` covers.
pub fn uncovered(owned: &[PolicyRule], rules: &[PolicyRule]) -> Vec<PolicyRule> {
    rules
        .iter()
        .flat_map(breakdown)
        .filter(|piece| !owned.iter().any(|o| covers(o, piece)))
        .collect()
}

fn list(v: &Option<Vec<String>>) -> &[String] {
    v.as_deref().unwrap_or_default()
}

/// A rule as pieces of at most one group, resource, verb and name (or one URL and verb).
fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let one = |s: &String| Some(vec![s.clone()]);
    let mut pieces = Vec::new();
    for group in list(&rule.api_groups) {
        for resource in list(&rule.resources) {
            for verb in &rule.verbs {
                let piece = |names: Option<Vec<String>>| PolicyRule {
                    api_groups: one(group),
                    resources: one(resource),
                    verbs: vec![verb.clone()],
                    resource_names: names,
                    ..Default::default()
                };
                if list(&rule.resource_names).is_empty() {
                    pieces.push(piece(None));
                } else {
                    pieces.extend(list(&rule.resource_names).iter().map(|n| piece(one(n))));
                }
            }
        }
    }
    for url in list(&rule.non_resource_urls) {
        for verb in &rule.verbs {
            pieces.push(PolicyRule {
                non_resource_urls: one(url),
                verbs: vec![verb.clone()],
                ..Default::default()
            });
        }
    }
    pieces
}

fn has(set: &[String], want: &str) -> bool {
    set.iter().any(|s| s == want)
}

fn has_all(set: &[String], wants: &[String]) -> bool {
    wants.iter().all(|w| has(set, w))
}

/// Whether `owner` covers a piece made by `breakdown`.
fn covers(owner: &PolicyRule, piece: &PolicyRule) -> bool {
    let verbs = has(&owner.verbs, "*") || has_all(&owner.verbs, &piece.verbs);
    let groups = has(list(&owner.api_groups), "*")
        || has_all(list(&owner.api_groups), list(&piece.api_groups));
    let resources = resources_cover(list(&owner.resources), list(&piece.resources));
    let urls = list(&piece.non_resource_urls).iter().all(|p| {
        list(&owner.non_resource_urls)
            .iter()
            .any(|o| o == p || o.ends_with('*') && p.starts_with(o.trim_end_matches('*')))
    });
    let names = if list(&piece.resource_names).is_empty() {
        list(&owner.resource_names).is_empty()
    } else {
        list(&owner.resource_names).is_empty()
            || has_all(list(&owner.resource_names), list(&piece.resource_names))
    };
    verbs && groups && resources && names && urls
}

fn resources_cover(set: &[String], wants: &[String]) -> bool {
    if has(set, "*") || has_all(set, wants) {
        return true;
    }
    wants.iter().all(|w| {
        has(set, w)
            || w.split_once('/')
                .is_some_and(|(_, sub)| has(set, &format!("*/{sub}")))
    })
}

/// Merges pieces that differ only in their verb, as Kubernetes compacts the missing rules.
fn compact(pieces: Vec<PolicyRule>) -> Vec<PolicyRule> {
    let mut out: Vec<PolicyRule> = Vec::new();
    let mut simple: Vec<PolicyRule> = Vec::new();
    for p in pieces {
        let is_simple = list(&p.api_groups).len() == 1
            && list(&p.resources).len() == 1
            && list(&p.resource_names).len() <= 1
            && list(&p.non_resource_urls).is_empty();
        if !is_simple {
            out.push(p);
            continue;
        }
        match simple.iter_mut().find(|s| {
            s.api_groups == p.api_groups
                && s.resources == p.resources
                && list(&s.resource_names) == list(&p.resource_names)
        }) {
            Some(s) => {
                for v in p.verbs {
                    if !has(&s.verbs, &v) {
                        s.verbs.push(v);
                    }
                }
            }
            None => simple.push(p),
        }
    }
    out.extend(simple);
    out
}

/// A rule as Kubernetes' escalation messages show it:
/// `{APIGroups:[""], Resources:["secrets"], Verbs:["get" "list"]}`.
pub fn compact_string(r: &PolicyRule) -> String {
    let mut parts = Vec::new();
    for (label, values) in [
        ("APIGroups", list(&r.api_groups)),
        ("Resources", list(&r.resources)),
        ("NonResourceURLs", list(&r.non_resource_urls)),
        ("ResourceNames", list(&r.resource_names)),
        ("Verbs", r.verbs.as_slice()),
    ] {
        if !values.is_empty() {
            parts.push(format!("{label}:{}", go_quoted(values)));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
        let v = |l: &[&str]| Some(l.iter().map(|s| s.to_string()).collect());
        PolicyRule {
            api_groups: v(groups),
            resources: v(resources),
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_broader_rule_covers_and_a_narrower_one_does_not() {
        let owned = [
            rule(&[""], &["configmaps", "pods/*"], &["get", "list"]),
            rule(&["apps"], &["*"], &["*"]),
        ];
        assert!(uncovered(&owned, &[rule(&["apps"], &["deployments"], &["create"])]).is_empty());
        assert!(uncovered(&owned, &[rule(&[""], &["configmaps"], &["get"])]).is_empty());
        let missing = uncovered(
            &owned,
            &[rule(
                &[""],
                &["secrets", "configmaps"],
                &["get", "list", "delete"],
            )],
        );
        let shown: Vec<String> = compact(missing).iter().map(compact_string).collect();
        assert_eq!(
            shown,
            [
                r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get" "list" "delete"]}"#,
                r#"{APIGroups:[""], Resources:["configmaps"], Verbs:["delete"]}"#,
            ]
        );
    }

    #[test]
    fn subresources_and_urls_are_covered_by_wildcards() {
        let owned = [
            rule(&[""], &["*/status"], &["get"]),
            PolicyRule {
                verbs: vec!["get".into()],
                non_resource_urls: Some(vec!["/logs/*".into()]),
                ..Default::default()
            },
        ];
        assert!(uncovered(&owned, &[rule(&[""], &["pods/status"], &["get"])]).is_empty());
        assert!(!uncovered(&owned, &[rule(&[""], &["pods"], &["get"])]).is_empty());
        let url = |u: &str| PolicyRule {
            verbs: vec!["get".into()],
            non_resource_urls: Some(vec![u.into()]),
            ..Default::default()
        };
        assert!(uncovered(&owned, &[url("/logs/kube")]).is_empty());
        assert!(!uncovered(&owned, &[url("/metrics")]).is_empty());
    }

    #[test]
    fn named_rules_cover_only_their_names() {
        let mut named = rule(&[""], &["secrets"], &["get"]);
        named.resource_names = Some(vec!["a".into()]);
        assert!(
            uncovered(
                std::slice::from_ref(&named),
                &[rule(&[""], &["secrets"], &["get"])]
            )
            .len()
                == 1
        );
        let mut want = rule(&[""], &["secrets"], &["get"]);
        want.resource_names = Some(vec!["a".into()]);
        assert!(uncovered(&[named], &[want]).is_empty());
    }
}
