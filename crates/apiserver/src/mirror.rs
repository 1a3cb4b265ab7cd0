//! Mirrors of one kind's stored objects, kept current through the watch cache: a watch that
//! starts with the stored objects (up to the mark of their end) and goes on with changes, and
//! starts again when it ends. The server's own consumers (the RBAC policy, the admission
//! webhooks and policies) build what they need from the mirror each time it changes.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use tug_api::catalog::Resource;
use tug_api::meta;

use crate::registry::{Registry, WatchOptions};

/// The objects of one kind by `namespace/name`.
pub type Objects = BTreeMap<String, Value>;

/// Follows `r` for ever, calling `changed` with all its objects once they are loaded and
/// after each change; returns once the first call has been made.
pub async fn follow<F>(registry: &Registry, r: &'static Resource, changed: F) -> anyhow::Result<()>
where
    F: Fn(&Objects) + Send + Sync + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let registry = registry.clone();
    tokio::spawn(async move {
        let mut ready = Some(tx);
        loop {
            if let Err(e) = watch_once(&registry, r, &changed, &mut ready).await {
                tracing::warn!(error = %e, resource = r.plural, "mirror: watch ended; starting again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    rx.await
        .map_err(|_| anyhow::anyhow!("reading the stored {} failed", r.plural))
}

async fn watch_once<F: Fn(&Objects)>(
    registry: &Registry,
    r: &'static Resource,
    changed: &F,
    ready: &mut Option<tokio::sync::oneshot::Sender<()>>,
) -> anyhow::Result<()> {
    let opts = WatchOptions {
        send_initial_events: Some(true),
        allow_bookmarks: true,
        resource_version: String::new(),
        timeout: Some(Duration::from_secs(600)),
        ..Default::default()
    };
    let mut events = registry
        .watch(r, None, opts)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut objects = Objects::new();
    let mut loaded = false;
    while let Some(event) = events.recv().await {
        let kind = event.kind().to_string();
        let event = event.into_value();
        let obj = &event["object"];
        match kind.as_str() {
            "ERROR" => anyhow::bail!("{}", obj["message"]),
            "BOOKMARK" => {
                let end = obj
                    .pointer("/metadata/annotations/k8s.io~1initial-events-end")
                    .is_some();
                if end && !loaded {
                    loaded = true;
                    changed(&objects);
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                }
                continue;
            }
            _ => {}
        }
        let key = format!("{}/{}", meta::namespace(obj), meta::name(obj));
        if kind == "DELETED" {
            objects.remove(&key);
        } else {
            objects.insert(key, obj.clone());
        }
        if loaded {
            changed(&objects);
        }
    }
    Ok(())
}
