//! The ClusterRole aggregation controller: a ClusterRole with an `aggregationRule` holds the
//! rules of every ClusterRole its selectors match (selectors in order, roles by name, each
//! rule once, never its own), written by server-side apply whenever any ClusterRole changes,
//! as kube-controller-manager's clusterrole-aggregation controller keeps them.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio::sync::Notify;
use tug_api::selector::LabelSelector;

/// The field manager the aggregated rules are applied under.
const MANAGER: &str = "clusterrole-aggregation-controller";

/// Keeps aggregated ClusterRoles current until dropped.
pub async fn run(client: kube::Client) {
    let api: Api<ClusterRole> = Api::all(client);
    let (store, writer) = reflector::store();
    let mut changes = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .touched_objects()
        .boxed();
    // The watch fills the store; each change wakes the loop below (a burst wakes it once).
    let changed = Arc::new(Notify::new());
    let wake = changed.clone();
    tokio::spawn(async move {
        while changes.next().await.is_some() {
            wake.notify_one();
        }
    });
    if store.wait_until_ready().await.is_err() {
        return;
    }
    loop {
        // Every change of any ClusterRole may change what an aggregated one should hold.
        let retry = if sync_all(&api, &store).await {
            Duration::from_secs(3600)
        } else {
            Duration::from_secs(1)
        };
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(retry) => {}
        }
        // Let a burst of changes (a chart's roles) land before settling.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Settles every aggregated role; false if a write failed (to be tried again).
async fn sync_all(api: &Api<ClusterRole>, store: &Store<ClusterRole>) -> bool {
    let roles = store.state();
    let mut ok = true;
    for role in roles.iter().filter(|r| r.aggregation_rule.is_some()) {
        let Some(name) = role.metadata.name.as_deref() else {
            continue;
        };
        let rules = aggregated_rules(role, &roles);
        if role.rules.as_deref().unwrap_or_default() == rules.as_slice() && role.rules.is_some() {
            continue;
        }
        let patch = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": rules,
        });
        match api
            .patch(
                name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
        {
            Ok(_) => tracing::info!(
                clusterrole = name,
                rules = rules.len(),
                "aggregated rules updated"
            ),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                tracing::warn!(clusterrole = name, error = %e, "updating aggregated rules failed; trying again");
                ok = false;
            }
        }
    }
    ok
}

/// The rules `role` aggregates from `roles`.
fn aggregated_rules(role: &ClusterRole, roles: &[std::sync::Arc<ClusterRole>]) -> Vec<PolicyRule> {
    let mut rules: Vec<PolicyRule> = Vec::new();
    let own = role.metadata.name.as_deref();
    let selectors = role
        .aggregation_rule
        .as_ref()
        .and_then(|a| a.cluster_role_selectors.clone())
        .unwrap_or_default();
    let mut sorted: Vec<&ClusterRole> = roles.iter().map(|r| r.as_ref()).collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for selector in &selectors {
        let selector = LabelSelector::from_api(selector);
        for other in &sorted {
            if other.metadata.name.as_deref() == own {
                continue;
            }
            let labels = other.metadata.labels.clone().unwrap_or_default();
            if !selector.matches_map(&labels) {
                continue;
            }
            for rule in other.rules.iter().flatten() {
                if !rules.contains(rule) {
                    rules.push(rule.clone());
                }
            }
        }
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::AggregationRule;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        LabelSelector as ApiSelector, ObjectMeta,
    };
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn role(name: &str, label: Option<&str>, verbs: &[&str]) -> Arc<ClusterRole> {
        Arc::new(ClusterRole {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: label.map(|l| BTreeMap::from([(l.to_string(), "true".to_string())])),
                ..Default::default()
            },
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec!["".into()]),
                resources: Some(vec!["pods".into()]),
                verbs: verbs.iter().map(|v| v.to_string()).collect(),
                ..Default::default()
            }]),
            ..Default::default()
        })
    }

    #[test]
    fn rules_come_from_matching_roles_by_name_once_each() {
        let mut view = (*role("view", None, &["nothing"])).clone();
        view.aggregation_rule = Some(AggregationRule {
            cluster_role_selectors: Some(vec![ApiSelector {
                match_labels: Some(BTreeMap::from([("agg".to_string(), "true".to_string())])),
                ..Default::default()
            }]),
        });
        let roles = vec![
            role("b", Some("agg"), &["list"]),
            role("a", Some("agg"), &["get"]),
            role("c", Some("agg"), &["get"]),
            role("d", None, &["delete"]),
            Arc::new(view.clone()),
        ];
        let rules = aggregated_rules(&view, &roles);
        let verbs: Vec<&str> = rules.iter().map(|r| r.verbs[0].as_str()).collect();
        assert_eq!(verbs, ["get", "list"]);
    }
}
