//! The garbage collector: dependents whose owners are all gone are deleted (Background);
//! owners deleted with Foreground wait for their dependents to go; owners deleted with Orphan
//! release their dependents first. Owners and dependents are matched by uid through
//! `metadata.ownerReferences`, across the kinds that own things; an owner of another kind (a
//! custom resource, a ConfigMap) is looked up before its dependent is taken for an orphan,
//! as Kubernetes' collector confirms absence with a live read.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
};
use serde_json::{Value, json};

use crate::common::patch_params;

/// The kinds that own or are owned, for now.
const KINDS: &[(&str, &str, &str)] = &[
    ("apps", "v1", "Deployment"),
    ("apps", "v1", "ReplicaSet"),
    ("apps", "v1", "StatefulSet"),
    ("apps", "v1", "DaemonSet"),
    ("apps", "v1", "ControllerRevision"),
    ("batch", "v1", "Job"),
    ("batch", "v1", "CronJob"),
    ("", "v1", "Pod"),
    ("", "v1", "ReplicationController"),
    ("", "v1", "Service"),
    ("discovery.k8s.io", "v1", "EndpointSlice"),
];

/// How often the collector looks, at most.
const PERIOD: Duration = Duration::from_secs(1);

struct Found {
    api: ApiResource,
    obj: DynamicObject,
}

fn finalizers(o: &DynamicObject) -> Vec<String> {
    o.metadata.finalizers.clone().unwrap_or_default()
}

/// Runs the collector until the task is dropped.
pub async fn run(client: kube::Client) {
    loop {
        let started = std::time::Instant::now();
        if let Err(e) = collect(&client).await {
            tracing::debug!(error = %e, "garbage collection pass failed");
        }
        // Each pass lists every owning kind: in a large cluster, rest four times as long as
        // the pass took, so that collection never takes more than a fifth of the time.
        tokio::time::sleep(PERIOD.max(started.elapsed() * 4)).await;
    }
}

fn api(client: &kube::Client, ar: &ApiResource, ns: Option<&str>) -> Api<DynamicObject> {
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    }
}

async fn collect(client: &kube::Client) -> Result<(), kube::Error> {
    let mut all = Vec::new();
    for (g, v, k) in KINDS {
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(g, v, k));
        let list = api(client, &ar, None)
            .list(&ListParams::default().match_any())
            .await?;
        all.extend(list.items.into_iter().map(|obj| Found {
            api: ar.clone(),
            obj,
        }));
    }
    let uids: HashSet<String> = all
        .iter()
        .filter_map(|f| f.obj.metadata.uid.clone())
        .collect();
    let mut dependents: HashMap<String, Vec<&Found>> = HashMap::new();
    for f in &all {
        for r in f.obj.metadata.owner_references.iter().flatten() {
            dependents.entry(r.uid.clone()).or_default().push(f);
        }
    }
    let dp = DeleteParams::background();
    let mut kinds = HashMap::new();
    for f in &all {
        let ns = f.obj.metadata.namespace.as_deref();
        let name = f.obj.metadata.name.clone().unwrap_or_default();
        let uid = f.obj.metadata.uid.clone().unwrap_or_default();
        // Background: every owner is gone.
        let owners = f
            .obj
            .metadata
            .owner_references
            .as_deref()
            .unwrap_or_default();
        if !owners.is_empty()
            && owners.iter().all(|o| !uids.contains(&o.uid))
            && f.obj.metadata.deletion_timestamp.is_none()
            && all_absent(client, &mut kinds, ns, owners).await
        {
            let _ = api(client, &f.api, ns).delete(&name, &dp).await;
            continue;
        }
        if f.obj.metadata.deletion_timestamp.is_none() {
            continue;
        }
        let fins = finalizers(&f.obj);
        let mine = dependents.get(&uid).cloned().unwrap_or_default();
        if fins.iter().any(|x| x == "orphan") {
            // Release every dependent, then let the owner go.
            for d in &mine {
                let refs: Vec<Value> = d
                    .obj
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .filter(|r| r.uid != uid)
                    .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
                    .collect();
                let patch = json!({"metadata": {"ownerReferences": refs}});
                let dname = d.obj.metadata.name.clone().unwrap_or_default();
                api(client, &d.api, d.obj.metadata.namespace.as_deref())
                    .patch(&dname, &patch_params(), &Patch::Merge(&patch))
                    .await?;
            }
            remove_finalizer(client, f, &fins, "orphan").await?;
        } else if fins.iter().any(|x| x == "foregroundDeletion") {
            if mine.is_empty() {
                remove_finalizer(client, f, &fins, "foregroundDeletion").await?;
            } else {
                for d in &mine {
                    let dname = d.obj.metadata.name.clone().unwrap_or_default();
                    let _ = api(client, &d.api, d.obj.metadata.namespace.as_deref())
                        .delete(&dname, &DeleteParams::foreground())
                        .await;
                }
            }
        }
    }
    Ok(())
}

/// Whether every owner is gone: not found by a live read (or found with another uid, a
/// namesake). An owner whose kind the server does not serve, or a read that fails, counts
/// as present: a dependent is deleted only on proof.
async fn all_absent(
    client: &kube::Client,
    kinds: &mut HashMap<(String, String), Option<(ApiResource, bool)>>,
    ns: Option<&str>,
    owners: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference],
) -> bool {
    for o in owners {
        let key = (o.api_version.clone(), o.kind.clone());
        if !kinds.contains_key(&key) {
            let (group, version) = match o.api_version.split_once('/') {
                Some((g, v)) => (g, v),
                None => ("", o.api_version.as_str()),
            };
            let gvk = GroupVersionKind::gvk(group, version, &o.kind);
            let found = kube::discovery::pinned_kind(client, &gvk)
                .await
                .ok()
                .map(|(ar, caps)| (ar, caps.scope == kube::discovery::Scope::Namespaced));
            kinds.insert(key.clone(), found);
        }
        let Some(Some((ar, namespaced))) = kinds.get(&key) else {
            return false;
        };
        if *namespaced && ns.is_none() {
            return false;
        }
        let owner_ns = if *namespaced { ns } else { None };
        match api(client, ar, owner_ns).get_opt(&o.name).await {
            Ok(None) => {}
            Ok(Some(live)) if live.metadata.uid.as_deref() != Some(o.uid.as_str()) => {}
            _ => return false,
        }
    }
    true
}

async fn remove_finalizer(
    client: &kube::Client,
    f: &Found,
    fins: &[String],
    which: &str,
) -> Result<(), kube::Error> {
    let left: Vec<&String> = fins.iter().filter(|x| *x != which).collect();
    let name = f.obj.metadata.name.clone().unwrap_or_default();
    let patch = json!({"metadata": {"finalizers": left}});
    api(client, &f.api, f.obj.metadata.namespace.as_deref())
        .patch(&name, &patch_params(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}
