//! Namespaces: the four every cluster starts with, and finalization of deleted namespaces:
//! everything in them is deleted through the registry (so graceful deletion and finalizers
//! hold it as they would anywhere), the namespace's conditions say what is left, and once
//! nothing is, the namespace itself goes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};
use tug_api::{catalog, meta};

use crate::registry::{DeleteOptions, ListOptions, Registry, WriteOptions};

/// Namespaces created at first start.
pub const DEFAULT_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

fn namespaces() -> anyhow::Result<&'static tug_api::Resource> {
    catalog::lookup("", "v1", "namespaces")
        .ok_or_else(|| anyhow::anyhow!("namespaces missing from the catalog"))
}

/// Creates the default namespaces that are missing.
pub async fn ensure_defaults(registry: &Registry) -> anyhow::Result<()> {
    let ns = namespaces()?;
    for name in DEFAULT_NAMESPACES {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        match registry
            .create(ns, None, obj, &WriteOptions::default())
            .await
        {
            Ok(_) => tracing::info!(namespace = name, "created namespace"),
            Err(e) if e.reason == "AlreadyExists" => {}
            Err(e) => anyhow::bail!("creating namespace {name}: {e}"),
        }
    }
    Ok(())
}

/// Every so often, finishes the deletion of namespaces marked for deletion.
pub async fn finalize_loop(registry: Registry) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        if let Err(e) = finalize_once(&registry).await {
            tracing::warn!(error = %e, "namespace finalization failed; retrying");
        }
    }
}

async fn finalize_once(registry: &Registry) -> anyhow::Result<()> {
    let ns_res = namespaces()?;
    let list = registry
        .list(ns_res, None, &ListOptions::default())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let terminating: Vec<Value> = list
        .get("items")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter(|n| n.pointer("/metadata/deletionTimestamp").is_some())
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    for ns in terminating {
        let name = meta::name(&ns).to_string();
        let content = delete_content(registry, &name).await;
        let ns = match record_conditions(registry, ns_res, ns, &content).await {
            Ok(ns) => ns,
            Err(e) => {
                tracing::debug!(namespace = %name, error = %e, "recording the namespace's conditions");
                continue;
            }
        };
        if !content.remaining.is_empty() {
            continue;
        }
        // Empty: drop the "kubernetes" finalizer; with none left, the namespace goes.
        let mut updated = ns;
        updated["spec"]["finalizers"] = json!([]);
        if let Err(e) = registry
            .update(
                ns_res,
                None,
                &name,
                updated,
                Some("finalize"),
                &WriteOptions::default(),
            )
            .await
        {
            tracing::debug!(namespace = %name, error = %e, "finalizing namespace");
        } else {
            tracing::info!(namespace = %name, "namespace deleted");
            // A namespace every cluster has (kube-node-lease: the others may not be deleted)
            // comes back at once, as kube-apiserver's system namespaces controller brings it.
            if DEFAULT_NAMESPACES.contains(&name.as_str()) {
                ensure_defaults(registry).await?;
            }
        }
    }
    Ok(())
}

/// What one pass over a terminating namespace's content found.
#[derive(Default)]
struct Content {
    /// `plural.group` -> objects still there.
    remaining: BTreeMap<String, usize>,
    /// Finalizer -> objects it still holds.
    finalizers: BTreeMap<String, usize>,
    /// Deletions that failed.
    failures: Vec<String>,
}

/// Deletes everything in namespace `ns` as kube-controller-manager's namespace controller
/// does, through the registry (graceful deletion, finalizers and owners' rules apply), and
/// counts what is left.
async fn delete_content(registry: &Registry, ns: &str) -> Content {
    let mut content = Content::default();
    let mut seen = BTreeSet::new();
    let catalog = registry.catalog();
    let kinds = catalog
        .all()
        .filter(|r| r.namespaced() && !r.storage.is_empty());
    for r in kinds {
        // One resource per storage location (events live under two groups).
        if !seen.insert(crate::registry::prefix_of(r, ns)) {
            continue;
        }
        let items = |list: Result<Value, tug_api::ApiError>| -> Vec<Value> {
            list.ok()
                .and_then(|l| l.get("items").cloned())
                .and_then(|i| serde_json::from_value(i).ok())
                .unwrap_or_default()
        };
        let present = items(registry.list(r, Some(ns), &ListOptions::default()).await);
        if present.is_empty() {
            continue;
        }
        for obj in &present {
            if obj.pointer("/metadata/deletionTimestamp").is_some() {
                continue;
            }
            let name = meta::name(obj);
            match registry
                .delete(r, Some(ns), name, &DeleteOptions::default())
                .await
            {
                Ok(_) => {}
                Err(e) if e.reason == "NotFound" => {}
                Err(e) => content.failures.push(format!(
                    "unexpected items still remain in namespace: {ns} for gvr: {}/{}, Resource={}: {e}",
                    r.group, r.version, r.plural
                )),
            }
        }
        let left = items(registry.list(r, Some(ns), &ListOptions::default()).await);
        if left.is_empty() {
            continue;
        }
        content
            .remaining
            .insert(format!("{}.{}", r.plural, r.group), left.len());
        for obj in &left {
            let held = obj
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str);
            for f in held {
                *content.finalizers.entry(f.to_string()).or_default() += 1;
            }
        }
    }
    content
}

/// The deletion conditions kube-controller-manager keeps on a terminating namespace, in its
/// order: (type, failing?, reason, message).
fn conditions(content: &Content) -> [(&'static str, bool, &'static str, String); 5] {
    let ok = |t, reason, message: &str| (t, false, reason, message.to_string());
    let content_failure = if content.failures.is_empty() {
        ok(
            "NamespaceDeletionContentFailure",
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization",
        )
    } else {
        (
            "NamespaceDeletionContentFailure",
            true,
            "ContentDeletionFailed",
            format!(
                "Failed to delete all resource types, {} remaining: {}",
                content.failures.len(),
                content.failures.join(", ")
            ),
        )
    };
    let remaining = if content.remaining.is_empty() {
        ok(
            "NamespaceContentRemaining",
            "ContentRemoved",
            "All content successfully removed",
        )
    } else {
        let mut each: Vec<String> = content
            .remaining
            .iter()
            .map(|(r, n)| format!("{r} has {n} resource instances"))
            .collect();
        each.sort();
        (
            "NamespaceContentRemaining",
            true,
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", each.join(", ")),
        )
    };
    let finalizers = if content.finalizers.is_empty() {
        ok(
            "NamespaceFinalizersRemaining",
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished",
        )
    } else {
        let mut each: Vec<String> = content
            .finalizers
            .iter()
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect();
        each.sort();
        (
            "NamespaceFinalizersRemaining",
            true,
            "SomeFinalizersRemain",
            format!(
                "Some content in the namespace has finalizers remaining: {}",
                each.join(", ")
            ),
        )
    };
    [
        ok(
            "NamespaceDeletionDiscoveryFailure",
            "ResourcesDiscovered",
            "All resources successfully discovered",
        ),
        ok(
            "NamespaceDeletionGroupVersionParsingFailure",
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed",
        ),
        content_failure,
        remaining,
        finalizers,
    ]
}

/// Writes the namespace's deletion conditions when they changed (a condition's
/// lastTransitionTime moves only when its status does); returns the namespace as stored.
async fn record_conditions(
    registry: &Registry,
    ns_res: &tug_api::Resource,
    mut ns: Value,
    content: &Content,
) -> Result<Value, tug_api::ApiError> {
    let old: Vec<Value> = ns
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut new = old.clone();
    for (kind, failing, reason, message) in conditions(content) {
        let status = if failing { "True" } else { "False" };
        match new.iter_mut().find(|c| c["type"] == kind) {
            Some(c) => {
                if c["status"] != status {
                    c["lastTransitionTime"] = json!(tug_api::time::now());
                }
                c["status"] = json!(status);
                c["reason"] = json!(reason);
                c["message"] = json!(message);
            }
            None => new.push(json!({"type": kind, "status": status,
                "lastTransitionTime": tug_api::time::now(), "reason": reason, "message": message})),
        }
    }
    if new == old {
        return Ok(ns);
    }
    ns["status"]["conditions"] = json!(new);
    let name = meta::name(&ns).to_string();
    registry
        .update(
            ns_res,
            None,
            &name,
            ns,
            Some("status"),
            &WriteOptions::default(),
        )
        .await
}
