//! Namespaces: the four every cluster starts with, and finalization of deleted namespaces
//! (everything in them is removed, then the namespace itself).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use tug_api::{catalog, meta};
use tug_store::{DeleteRequest, KeyRange};

use crate::registry::{ListOptions, Registry, WriteOptions};

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
        // Remove everything stored in the namespace, once per storage location.
        let prefixes: BTreeSet<String> = catalog::BUILTIN
            .iter()
            .filter(|r| r.namespaced() && !r.storage.is_empty())
            .map(|r| crate::registry::prefix_of(r, &name))
            .collect();
        for p in prefixes {
            registry
                .store
                .delete(DeleteRequest {
                    range: KeyRange::prefix(p),
                    prev_kv: false,
                })
                .await?;
        }
        // Then drop the "kubernetes" finalizer; with none left, the namespace goes.
        let mut updated = ns.clone();
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
