//! The default RBAC policy every cluster starts with (`bootstrap_policy.txt`: kube-apiserver's
//! bootstrap ClusterRoles and bindings, the controller roles, the kube-system and kube-public
//! roles), reconciled at every start as kube-apiserver's `rbac/bootstrap-roles` hook does:
//! missing objects are created; existing ones get the rules, selectors, subjects, labels and
//! annotations they lack (nothing is removed); a binding whose roleRef differs is recreated;
//! an object annotated `rbac.authorization.kubernetes.io/autoupdate: "false"` is left alone.

use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::{Map, Value, json};
use tug_api::catalog::{self, Resource};
use tug_api::{ApiError, meta};

use crate::registry::{DeleteOptions, Registry, WriteOptions};

const GROUP: &str = "rbac.authorization.k8s.io";
const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";

/// The policy's text.
const POLICY: &str = include_str!("bootstrap_policy.txt");

/// The default policy's objects, in the order they are reconciled: roles before bindings.
pub fn objects() -> Result<Vec<Value>, String> {
    let mut roles = Vec::new();
    let mut bindings = Vec::new();
    for (n, line) in POLICY.lines().enumerate() {
        let at = |e: String| format!("bootstrap_policy.txt line {}: {e}", n + 1);
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if line.starts_with(' ') {
            let role: &mut Value = roles
                .last_mut()
                .ok_or_else(|| at("a rule outside a role".into()))?;
            let rule = parse_rule(t).map_err(at)?;
            match role["rules"].as_array_mut() {
                Some(rules) => rules.push(rule),
                None => role["rules"] = json!([rule]),
            }
        } else if let Some(rest) = t
            .strip_prefix("ClusterRoleBinding ")
            .or_else(|| t.strip_prefix("RoleBinding "))
        {
            bindings.push(parse_binding(t.starts_with("Cluster"), rest).map_err(at)?);
        } else if let Some(rest) = t
            .strip_prefix("ClusterRole ")
            .or_else(|| t.strip_prefix("Role "))
        {
            roles.push(parse_role(t.starts_with("Cluster"), rest).map_err(at)?);
        } else {
            return Err(at(format!("cannot read {t:?}")));
        }
    }
    roles.extend(bindings);
    Ok(roles)
}

/// Metadata of a default object: its name (and namespace), the bootstrapping label and the
/// autoupdate annotation, plus `labels`.
fn metadata(name_path: &str, cluster: bool, labels: Map<String, Value>) -> Result<Value, String> {
    let mut labels = labels;
    labels.insert("kubernetes.io/bootstrapping".into(), json!("rbac-defaults"));
    let mut m = json!({
        "name": name_path,
        "labels": labels,
        "annotations": {AUTOUPDATE: "true"},
    });
    if !cluster {
        let (ns, name) = name_path
            .split_once('/')
            .ok_or_else(|| format!("{name_path:?} names no namespace"))?;
        m["namespace"] = json!(ns);
        m["name"] = json!(name);
    }
    Ok(m)
}

fn key_values(text: &str, sep: char) -> Result<Map<String, Value>, String> {
    text.split(sep)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), json!(v.trim())))
                .ok_or_else(|| format!("{kv:?} is not key=value"))
        })
        .collect()
}

/// `NAME [labels: k=v,...] [aggregationRule selectors: k=v | ...]`
fn parse_role(cluster: bool, rest: &str) -> Result<Value, String> {
    let (name, mut tail) = rest.split_once(' ').unwrap_or((rest, ""));
    let mut labels = Map::new();
    let mut aggregation = None;
    while let Some(open) = tail.find('[') {
        let close = tail[open..]
            .find(']')
            .map(|c| open + c)
            .ok_or("an unclosed [")?;
        let part = &tail[open + 1..close];
        if let Some(l) = part.strip_prefix("labels:") {
            labels = key_values(l, ',')?;
        } else if let Some(s) = part.strip_prefix("aggregationRule selectors:") {
            let selectors: Vec<Value> = s
                .split('|')
                .map(|one| key_values(one, ',').map(|m| json!({"matchLabels": m})))
                .collect::<Result<_, _>>()?;
            aggregation = Some(json!({"clusterRoleSelectors": selectors}));
        } else {
            return Err(format!("cannot read [{part}]"));
        }
        tail = &tail[close + 1..];
    }
    let kind = if cluster { "ClusterRole" } else { "Role" };
    let mut role = json!({
        "apiVersion": format!("{GROUP}/v1"),
        "kind": kind,
        "metadata": metadata(name, cluster, labels)?,
    });
    if let Some(a) = aggregation {
        role["aggregationRule"] = a;
    }
    Ok(role)
}

/// A bracketed list: `[a,b]`, `[""]` for the core group.
fn list(text: &str) -> Result<Vec<String>, String> {
    let inner = text
        .trim()
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(|| format!("{text:?} is not a [list]"))?;
    Ok(inner
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .collect())
}

/// `groups=[...], resources=[...], verbs=[...][, names=[...]]` or `urls=[...], verbs=[...]`.
fn parse_rule(text: &str) -> Result<Value, String> {
    let mut rule = PolicyRule::default();
    let mut rest = text;
    while !rest.is_empty() {
        let (field, tail) = rest
            .split_once('=')
            .ok_or_else(|| format!("{rest:?}: no field"))?;
        let end = tail.find(']').ok_or("an unclosed [")? + 1;
        let values = list(&tail[..end])?;
        match field.trim() {
            "groups" => rule.api_groups = Some(values),
            "resources" => rule.resources = Some(values),
            "verbs" => rule.verbs = values,
            "names" => rule.resource_names = Some(values),
            "urls" => rule.non_resource_urls = Some(values),
            other => return Err(format!("unknown rule field {other:?}")),
        }
        rest = tail[end..].trim_start_matches([',', ' ']);
    }
    serde_json::to_value(rule).map_err(|e| e.to_string())
}

/// `NAME -> KIND ROLE : Kind:Name, ...`
fn parse_binding(cluster: bool, rest: &str) -> Result<Value, String> {
    let (name, rest) = rest.split_once(" -> ").ok_or("no ->")?;
    let (role, subjects) = rest.split_once(" :").ok_or("no :")?;
    let (role_kind, role_name) = role.trim().split_once(' ').ok_or("no role kind")?;
    let subjects: Vec<Value> = subjects
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (kind, who) = s.split_once(':').ok_or_else(|| format!("{s:?}: no kind"))?;
            Ok(if kind == "ServiceAccount" {
                let (ns, n) = who
                    .split_once('/')
                    .ok_or_else(|| format!("{s:?}: no namespace"))?;
                json!({"kind": kind, "name": n, "namespace": ns})
            } else {
                json!({"kind": kind, "apiGroup": GROUP, "name": who})
            })
        })
        .collect::<Result<_, String>>()?;
    let kind = if cluster {
        "ClusterRoleBinding"
    } else {
        "RoleBinding"
    };
    let mut binding = json!({
        "apiVersion": format!("{GROUP}/v1"),
        "kind": kind,
        "metadata": metadata(name.trim(), cluster, Map::new())?,
        "roleRef": {"apiGroup": GROUP, "kind": role_kind, "name": role_name.trim()},
    });
    if !subjects.is_empty() {
        binding["subjects"] = json!(subjects);
    }
    Ok(binding)
}

fn resource_of(obj: &Value) -> anyhow::Result<&'static Resource> {
    let plural = match obj["kind"].as_str() {
        Some("ClusterRole") => "clusterroles",
        Some("Role") => "roles",
        Some("ClusterRoleBinding") => "clusterrolebindings",
        _ => "rolebindings",
    };
    catalog::lookup(GROUP, "v1", plural)
        .ok_or_else(|| anyhow::anyhow!("{plural} missing from the catalog"))
}

/// Creates or completes every default object. A failure for one object is logged and the
/// others go on, as kube-apiserver's hook does.
pub async fn reconcile(registry: &Registry) -> anyhow::Result<()> {
    let objects = objects().map_err(|e| anyhow::anyhow!(e))?;
    let (mut created, mut updated) = (0, 0);
    for want in objects {
        let r = resource_of(&want)?;
        match reconcile_one(registry, r, want.clone()).await {
            Ok(Outcome::Created) => created += 1,
            Ok(Outcome::Updated) => updated += 1,
            Ok(Outcome::Unchanged) => {}
            Err(e) => {
                tracing::warn!(kind = r.kind, name = meta::name(&want), error = %e, "reconciling a default RBAC object failed")
            }
        }
    }
    tracing::info!(created, updated, "default RBAC policy reconciled");
    Ok(())
}

enum Outcome {
    Created,
    Updated,
    Unchanged,
}

async fn reconcile_one(
    registry: &Registry,
    r: &'static Resource,
    want: Value,
) -> Result<Outcome, ApiError> {
    let ns = (!meta::namespace(&want).is_empty()).then(|| meta::namespace(&want).to_string());
    let ns = ns.as_deref();
    let name = meta::name(&want).to_string();
    let opts = WriteOptions::default();
    let have = match registry.get(r, ns, &name).await {
        Ok(h) => h,
        Err(e) if e.code == 404 => {
            registry.create(r, ns, want, &opts).await?;
            return Ok(Outcome::Created);
        }
        Err(e) => return Err(e),
    };
    if have.pointer(&format!(
        "/metadata/annotations/{}",
        AUTOUPDATE.replace('/', "~1")
    )) == Some(&json!("false"))
    {
        return Ok(Outcome::Unchanged);
    }
    let is_binding = r.plural.ends_with("bindings");
    if is_binding && have["roleRef"] != want["roleRef"] {
        registry
            .delete(r, ns, &name, &DeleteOptions::default())
            .await?;
        registry.create(r, ns, want, &opts).await?;
        return Ok(Outcome::Updated);
    }
    let mut next = have.clone();
    for field in ["labels", "annotations"] {
        let mut merged = want["metadata"][field]
            .as_object()
            .cloned()
            .unwrap_or_default();
        if let Some(existing) = have["metadata"][field].as_object() {
            merged.extend(existing.clone());
        }
        next["metadata"][field] = Value::Object(merged);
    }
    if is_binding {
        append_missing(&mut next, &want, "subjects");
    } else {
        let rules = |v: &Value| -> Vec<PolicyRule> {
            serde_json::from_value(v["rules"].clone()).unwrap_or_default()
        };
        let missing = super::escalation::uncovered(&rules(&have), &rules(&want));
        if !missing.is_empty() {
            let mut all = have["rules"].as_array().cloned().unwrap_or_default();
            all.extend(
                missing
                    .into_iter()
                    .filter_map(|m| serde_json::to_value(m).ok()),
            );
            next["rules"] = json!(all);
        }
        if want["aggregationRule"].is_null() {
            if let Some(m) = next.as_object_mut() {
                m.remove("aggregationRule");
            }
        } else {
            if next["aggregationRule"].is_null() {
                next["aggregationRule"] = json!({"clusterRoleSelectors": []});
            }
            let mut target = next["aggregationRule"].clone();
            append_missing(
                &mut target,
                &want["aggregationRule"],
                "clusterRoleSelectors",
            );
            next["aggregationRule"] = target;
        }
    }
    if next == have {
        return Ok(Outcome::Unchanged);
    }
    registry.update(r, ns, &name, next, None, &opts).await?;
    Ok(Outcome::Updated)
}

/// Appends to `have[field]` the entries of `want[field]` it lacks.
fn append_missing(have: &mut Value, want: &Value, field: &str) {
    let mut list = have[field].as_array().cloned().unwrap_or_default();
    for w in want[field].as_array().into_iter().flatten() {
        if !list.contains(w) {
            list.push(w.clone());
        }
    }
    if !list.is_empty() {
        have[field] = json!(list);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_reads_whole() {
        let objects = objects().expect("the policy parses");
        let count = |kind: &str| objects.iter().filter(|o| o["kind"] == kind).count();
        assert_eq!(count("ClusterRole"), 84);
        assert_eq!(count("ClusterRoleBinding"), 68);
        assert_eq!(count("Role"), 7);
        assert_eq!(count("RoleBinding"), 7);
        let find = |name: &str| {
            objects
                .iter()
                .find(|o| o["metadata"]["name"] == name)
                .cloned()
                .unwrap_or_default()
        };
        assert_eq!(
            find("cluster-admin")["rules"],
            json!([
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]}
            ])
        );
        assert_eq!(
            find("view")["aggregationRule"],
            json!({"clusterRoleSelectors": [{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}]})
        );
        assert_eq!(
            find("view")["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"],
            "true"
        );
        assert_eq!(
            objects
                .iter()
                .find(|o| o["kind"] == "ClusterRoleBinding"
                    && o["metadata"]["name"] == "system:public-info-viewer")
                .map(|b| b["subjects"].clone())
                .unwrap_or_default(),
            json!([
                {"kind": "Group", "apiGroup": GROUP, "name": "system:authenticated"},
                {"kind": "Group", "apiGroup": GROUP, "name": "system:unauthenticated"}
            ])
        );
        let leader = find("system::leader-locking-kube-scheduler");
        assert_eq!(leader["metadata"]["namespace"], "kube-system");
        let node_binding = objects
            .iter()
            .find(|o| o["kind"] == "ClusterRoleBinding" && o["metadata"]["name"] == "system:node");
        assert_eq!(node_binding.map(|b| b.get("subjects")), Some(None));
    }
}
