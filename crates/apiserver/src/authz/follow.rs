//! Keeps the authorizer's RBAC policy current: one mirror per RBAC kind, and a new policy
//! built whenever any of them changes. The server starts serving once the first policy holds
//! everything stored.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;
use tug_api::catalog::{self, Resource};

use super::Authorizer;
use super::rbac::{Objects, Policy};
use crate::registry::Registry;

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
    for (slot, plural) in KINDS.iter().enumerate() {
        let (seen, changed) = (seen.clone(), changed.clone());
        crate::mirror::follow(registry, resource(plural)?, move |objects| {
            lock(&seen)[slot] = objects.clone();
            changed.notify_one();
        })
        .await?;
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
    let seen = lock(seen);
    let values = |slot: usize| seen[slot].values().cloned().collect::<Vec<_>>();
    Policy::new(&Objects {
        roles: values(0),
        cluster_roles: values(1),
        role_bindings: values(2),
        cluster_role_bindings: values(3),
    })
}

fn lock(seen: &Seen) -> std::sync::MutexGuard<'_, [BTreeMap<String, Value>; 4]> {
    match seen.lock() {
        Ok(s) => s,
        Err(poisoned) => poisoned.into_inner(),
    }
}
