//! Keeps the authorizer's RBAC policy current: one watch per RBAC kind (through the watch
//! cache), and a new policy built whenever any of them changes. The server starts serving
//! once the first policy holds everything stored.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;
use tug_api::catalog::{self, Resource};
use tug_api::meta;

use super::Authorizer;
use super::rbac::{Objects, Policy};
use crate::registry::{Registry, WatchOptions};

/// The RBAC kinds, in the order `Objects` holds them.
const KINDS: [&str; 4] = [
    "roles",
    "clusterroles",
    "rolebindings",
    "clusterrolebindings",
];

/// What the watches have seen: each kind's objects by namespace/name.
type Seen = Arc<Mutex<[BTreeMap<String, Value>; 4]>>;

fn resource(plural: &str) -> anyhow::Result<&'static Resource> {
    catalog::lookup("rbac.authorization.k8s.io", "v1", plural)
        .ok_or_else(|| anyhow::anyhow!("{plural} missing from the catalog"))
}

/// Loads the stored policy into `authorizer`, then keeps it current in the background.
pub async fn start(registry: &Registry, authorizer: Arc<Authorizer>) -> anyhow::Result<()> {
    let seen: Seen = Arc::default();
    let changed = Arc::new(Notify::new());
    let mut ready = Vec::new();
    for (slot, plural) in KINDS.iter().enumerate() {
        let r = resource(plural)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        ready.push(rx);
        tokio::spawn(follow(
            registry.clone(),
            r,
            slot,
            seen.clone(),
            changed.clone(),
            tx,
        ));
    }
    for rx in ready {
        rx.await
            .map_err(|_| anyhow::anyhow!("reading the RBAC policy failed"))?;
    }
    authorizer.set_policy(build(&seen));
    tokio::spawn(async move {
        loop {
            changed.notified().await;
            // Changes often come in bursts (a chart, a bootstrap): let them land together.
            tokio::time::sleep(Duration::from_millis(2)).await;
            authorizer.set_policy(build(&seen));
        }
    });
    Ok(())
}

fn build(seen: &Seen) -> Policy {
    let seen = match seen.lock() {
        Ok(s) => s,
        Err(poisoned) => poisoned.into_inner(),
    };
    let values = |slot: usize| seen[slot].values().cloned().collect::<Vec<_>>();
    Policy::new(&Objects {
        roles: values(0),
        cluster_roles: values(1),
        role_bindings: values(2),
        cluster_role_bindings: values(3),
    })
}

/// Follows one kind for ever: each watch starts with the stored objects (then the mark of
/// their end) and goes on with changes; a watch that ends is started again.
async fn follow(
    registry: Registry,
    r: &'static Resource,
    slot: usize,
    seen: Seen,
    changed: Arc<Notify>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    loop {
        if let Err(e) = watch_once(&registry, r, slot, &seen, &changed, &mut ready).await {
            tracing::warn!(error = %e, resource = r.plural, "RBAC policy: watch ended; starting again");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn watch_once(
    registry: &Registry,
    r: &'static Resource,
    slot: usize,
    seen: &Seen,
    changed: &Notify,
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
    // The stored objects, gathered until the initial events end, then swapped in whole.
    let mut initial = Some(BTreeMap::new());
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
                if end && let Some(objects) = initial.take() {
                    lock(seen)[slot] = objects;
                    changed.notify_one();
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                }
                continue;
            }
            _ => {}
        }
        let key = format!("{}/{}", meta::namespace(obj), meta::name(obj));
        match &mut initial {
            Some(objects) => {
                objects.insert(key, obj.clone());
            }
            None => {
                let mut s = lock(seen);
                if kind == "DELETED" {
                    s[slot].remove(&key);
                } else {
                    s[slot].insert(key, obj.clone());
                }
                drop(s);
                changed.notify_one();
            }
        }
    }
    Ok(())
}

fn lock(seen: &Seen) -> std::sync::MutexGuard<'_, [BTreeMap<String, Value>; 4]> {
    match seen.lock() {
        Ok(s) => s,
        Err(poisoned) => poisoned.into_inner(),
    }
}
