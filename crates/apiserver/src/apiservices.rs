//! The local APIServices: one `apiregistration.k8s.io/v1` APIService per built-in group and
//! version (`v1.apps`, `v1.` for the core group …), served by this server itself
//! (`spec.service` unset, `Available` with reason `Local`), with the group and version
//! priorities kube-apiserver gives them; `kubectl get apiservices` lists them as it does on
//! Kubernetes. Custom resources' group-versions get theirs too (priorities 1000 and 100, as
//! kube-apiserver's CRD registration gives them), for as long as a definition serves them.

use serde_json::{Value, json};
use tug_api::catalog;

use crate::registry::{Registry, WriteOptions};

/// kube-apiserver's (groupPriorityMinimum, versionPriority) for a group-version; `None` for
/// one it registers no APIService for.
fn priority(group: &str, version: &str) -> Option<(i64, i64)> {
    Some(match (group, version) {
        ("", "v1") => (18000, 1),
        ("apiregistration.k8s.io", "v1") => (18000, 15),
        ("apps", "v1") => (17800, 15),
        ("events.k8s.io", "v1") => (17750, 15),
        ("authentication.k8s.io", "v1") => (17700, 15),
        ("authorization.k8s.io", "v1") => (17600, 15),
        ("autoscaling", "v1") => (17500, 15),
        ("autoscaling", "v2") => (17500, 30),
        ("batch", "v1") => (17400, 15),
        ("certificates.k8s.io", "v1") => (17300, 15),
        ("networking.k8s.io", "v1") => (17200, 15),
        ("policy", "v1") => (17100, 15),
        ("rbac.authorization.k8s.io", "v1") => (17000, 15),
        ("storage.k8s.io", "v1") => (16800, 15),
        ("apiextensions.k8s.io", "v1") | ("admissionregistration.k8s.io", "v1") => (16700, 15),
        ("scheduling.k8s.io", "v1") => (16600, 15),
        ("coordination.k8s.io", "v1") => (16500, 15),
        ("node.k8s.io", "v1") => (16300, 15),
        ("discovery.k8s.io", "v1") => (16200, 15),
        ("flowcontrol.apiserver.k8s.io", "v1") => (16100, 21),
        // As metrics-server's APIService has it.
        ("metrics.k8s.io", "v1beta1") => (100, 100),
        _ => return None,
    })
}

/// Creates the local APIService of every built-in group-version that lacks one, and marks
/// each available.
pub async fn ensure_local(registry: &Registry) -> anyhow::Result<()> {
    for (group, versions) in catalog::groups() {
        for version in versions {
            if let Some((group_priority, version_priority)) = priority(group, version) {
                ensure(registry, group, version, group_priority, version_priority).await?;
            }
        }
    }
    Ok(())
}

fn apiservices() -> anyhow::Result<&'static tug_api::Resource> {
    catalog::lookup("apiregistration.k8s.io", "v1", "apiservices")
        .ok_or_else(|| anyhow::anyhow!("apiservices missing from the catalog"))
}

/// Creates the local APIService of `group`/`version` if it lacks one, and marks it available.
pub(crate) async fn ensure(
    registry: &Registry,
    group: &str,
    version: &str,
    group_priority: i64,
    version_priority: i64,
) -> anyhow::Result<()> {
    let r = apiservices()?;
    let name = format!("{version}.{group}");
    let obj = json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": name},
        "spec": {"group": group, "version": version,
            "groupPriorityMinimum": group_priority, "versionPriority": version_priority}});
    match registry
        .create(r, None, obj, &WriteOptions::default())
        .await
    {
        Ok(_) => {}
        Err(e) if e.reason == "AlreadyExists" => {}
        Err(e) => anyhow::bail!("creating APIService {name}: {e}"),
    }
    let mut current = registry
        .get(r, None, &name)
        .await
        .map_err(|e| anyhow::anyhow!("reading APIService {name}: {e}"))?;
    let local = current.pointer("/spec/service").is_none_or(Value::is_null);
    let available = current
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Available" && c["status"] == "True")
        });
    if local && !available {
        current["status"] = json!({"conditions": [{"type": "Available", "status": "True",
            "lastTransitionTime": tug_api::time::now(), "reason": "Local",
            "message": "Local APIServices are always available"}]});
        registry
            .update(
                r,
                None,
                &name,
                current,
                Some("status"),
                &WriteOptions::default(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("marking APIService {name} available: {e}"))?;
    }
    Ok(())
}

/// Deletes the local APIService of `group`/`version` (one that points at a service is
/// someone else's and stays).
pub(crate) async fn remove_local(
    registry: &Registry,
    group: &str,
    version: &str,
) -> anyhow::Result<()> {
    let r = apiservices()?;
    let name = format!("{version}.{group}");
    match registry.get(r, None, &name).await {
        Ok(current) if current.pointer("/spec/service").is_none_or(Value::is_null) => {
            match registry.delete(r, None, &name, &Default::default()).await {
                Ok(_) => Ok(()),
                Err(e) if e.code == 404 => Ok(()),
                Err(e) => anyhow::bail!("deleting APIService {name}: {e}"),
            }
        }
        Ok(_) => Ok(()),
        Err(e) if e.code == 404 => Ok(()),
        Err(e) => anyhow::bail!("reading APIService {name}: {e}"),
    }
}
