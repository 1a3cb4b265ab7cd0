//! The apiextensions controllers of kube-apiserver, in one loop: a CustomResourceDefinition's
//! names are accepted (or refused for a conflict) and it is established, its storage version
//! recorded, and its kinds served (the registry's catalog is rebuilt); a definition being
//! deleted first has every object of its kind deleted, then its cleanup finalizer removed.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use tug_api::catalog::{self, Catalog, Resource};
use tug_api::crd::{self, CLEANUP_FINALIZER};
use tug_api::{meta, time::now};

use crate::registry::{DeleteOptions, ListOptions, Registry, WatchOptions, WriteOptions};

fn definitions() -> anyhow::Result<&'static Resource> {
    catalog::lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .ok_or_else(|| anyhow::anyhow!("customresourcedefinitions missing from the catalog"))
}

/// Serves the definitions already stored (before the server takes requests), then keeps
/// serving what they say as they change.
pub async fn start(registry: &Registry) -> anyhow::Result<()> {
    let mut state = State::default();
    state.resync(registry).await?;
    let registry = registry.clone();
    tokio::spawn(async move {
        loop {
            if let Err(e) = state.follow(&registry).await {
                tracing::warn!(error = %e, "custom resource definitions: watch ended; relisting");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Err(e) = state.resync(&registry).await {
                tracing::warn!(error = %e, "custom resource definitions: relist failed");
            }
        }
    });
    Ok(())
}

#[derive(Default)]
struct State {
    /// The definitions, by name, as last seen.
    seen: BTreeMap<String, Value>,
    /// The custom resources served now (kept, so that an unchanged entry is not made again).
    served: Vec<&'static Resource>,
    /// The resourceVersion the watch goes on from.
    revision: String,
    /// The custom group-versions whose APIServices exist.
    registered: std::collections::BTreeSet<(String, String)>,
}

impl State {
    /// Reads every definition, settles each, and serves what they say.
    async fn resync(&mut self, registry: &Registry) -> anyhow::Result<()> {
        let list = registry
            .list(definitions()?, None, &ListOptions::default())
            .await
            .map_err(|e| anyhow::anyhow!("listing definitions: {e}"))?;
        self.revision = list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.seen.clear();
        for item in list["items"].as_array().cloned().unwrap_or_default() {
            self.seen.insert(meta::name(&item).to_string(), item);
        }
        self.serve(registry);
        let names: Vec<String> = self.seen.keys().cloned().collect();
        for name in names {
            self.settle(registry, &name).await;
        }
        self.register(registry).await;
        Ok(())
    }

    /// Keeps one local APIService per served custom group-version (built-in group-versions
    /// have theirs already), and removes those no definition serves any more.
    async fn register(&mut self, registry: &Registry) {
        let builtin: std::collections::BTreeSet<(&str, &str)> = catalog::BUILTIN
            .iter()
            .map(|r| (r.group, r.version))
            .collect();
        let wanted: std::collections::BTreeSet<(String, String)> = self
            .served
            .iter()
            .filter(|r| !builtin.contains(&(r.group, r.version)))
            .map(|r| (r.group.to_string(), r.version.to_string()))
            .collect();
        for (group, version) in wanted.difference(&self.registered.clone()) {
            match crate::apiservices::ensure(registry, group, version, 1000, 100).await {
                Ok(()) => {
                    self.registered.insert((group.clone(), version.clone()));
                }
                Err(e) => tracing::warn!(error = %e, "registering a custom group-version failed"),
            }
        }
        let stale: Vec<(String, String)> = self.registered.difference(&wanted).cloned().collect();
        for (group, version) in stale {
            match crate::apiservices::remove_local(registry, &group, &version).await {
                Ok(()) => {
                    self.registered.remove(&(group, version));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "removing a custom group-version's APIService failed")
                }
            }
        }
    }

    /// Follows changes of definitions until the watch ends. Definitions being deleted are
    /// looked at again every second while their objects go.
    async fn follow(&mut self, registry: &Registry) -> anyhow::Result<()> {
        let opts = WatchOptions {
            resource_version: self.revision.clone(),
            timeout: Some(Duration::from_secs(300)),
            ..Default::default()
        };
        let mut events = registry
            .watch(definitions()?, None, opts)
            .await
            .map_err(|e| anyhow::anyhow!("watching definitions: {e}"))?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                event = events.recv() => {
                    let Some(event) = event else { return Ok(()) };
                    let kind = event.kind().to_string();
                    let event = event.into_value();
                    let obj = &event["object"];
                    match kind.as_str() {
                        "ERROR" => anyhow::bail!("{}", obj["message"]),
                        "BOOKMARK" => continue,
                        _ => {}
                    }
                    let name = meta::name(obj).to_string();
                    self.revision = meta::resource_version(obj).to_string();
                    if kind == "DELETED" {
                        self.seen.remove(&name);
                    } else {
                        self.seen.insert(name.clone(), obj.clone());
                    }
                    self.serve(registry);
                    if kind != "DELETED" {
                        self.settle(registry, &name).await;
                    }
                    self.register(registry).await;
                }
                _ = tick.tick() => {
                    let deleting: Vec<String> = self
                        .seen
                        .iter()
                        .filter(|(_, d)| d.pointer("/metadata/deletionTimestamp").is_some())
                        .map(|(n, _)| n.clone())
                        .collect();
                    for name in deleting {
                        self.settle(registry, &name).await;
                    }
                }
            }
        }
    }

    /// Rebuilds the catalog from the established definitions.
    fn serve(&mut self, registry: &Registry) {
        let mut next: Vec<&'static Resource> = Vec::new();
        for d in self.seen.values().filter(|d| established(d)) {
            for r in crd::served(d) {
                match self.served.iter().find(|old| ***old == r) {
                    Some(old) => next.push(old),
                    None => next.push(Box::leak(Box::new(r))),
                }
            }
        }
        if next != self.served {
            self.served = next.clone();
            registry.set_catalog(Catalog::with_custom(next));
        }
    }

    /// Brings one definition's status (or deletion) forward; failures are logged and
    /// retried at the next change or resync.
    async fn settle(&mut self, registry: &Registry, name: &str) {
        let Some(d) = self.seen.get(name).cloned() else {
            return;
        };
        let result = if d.pointer("/metadata/deletionTimestamp").is_some() {
            self.clean_up(registry, &d).await
        } else {
            self.accept(registry, &d).await
        };
        if let Err(e) = result {
            tracing::warn!(definition = name, error = %e, "custom resource definition not settled yet");
        }
    }

    /// Accepts the names (unless another definition holds one of them), establishes the
    /// definition and records its storage version.
    async fn accept(&mut self, registry: &Registry, d: &Value) -> anyhow::Result<()> {
        let mut status = d.get("status").cloned().unwrap_or_else(|| json!({}));
        let conflict = self.conflict(d);
        let accepted = match &conflict {
            None => {
                status["acceptedNames"] = accepted_names(&d["spec"]["names"]);
                set_condition(
                    &mut status,
                    "NamesAccepted",
                    "True",
                    "NoConflicts",
                    "no conflicts found",
                );
                true
            }
            Some(why) => {
                set_condition(&mut status, "NamesAccepted", "False", "NameConflict", why);
                false
            }
        };
        if accepted || established(d) {
            set_condition(
                &mut status,
                "Established",
                "True",
                "InitialNamesAccepted",
                "the initial names have been accepted",
            );
        } else {
            set_condition(
                &mut status,
                "Established",
                "False",
                "NotAccepted",
                "not all names are accepted",
            );
        }
        if let Some(storage) = storage_version(d) {
            let stored = status["storedVersions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !stored.iter().any(|v| v == storage) {
                let mut stored = stored;
                stored.push(json!(storage));
                status["storedVersions"] = Value::Array(stored);
            }
        }
        if d.get("status") == Some(&status) {
            return Ok(());
        }
        let mut updated = d.clone();
        updated["status"] = status;
        let written = registry
            .update(
                definitions()?,
                None,
                meta::name(d),
                updated,
                Some("status"),
                &WriteOptions::default(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        tracing::info!(
            definition = meta::name(d),
            "custom resource definition established"
        );
        self.seen.insert(meta::name(d).to_string(), written);
        self.serve(registry);
        Ok(())
    }

    /// Why `d`'s names cannot be accepted: another definition of the group, accepted first,
    /// holds one of them.
    fn conflict(&self, d: &Value) -> Option<String> {
        let group = &d["spec"]["group"];
        let names = &d["spec"]["names"];
        let mine = |key: &str| names[key].as_str().filter(|s| !s.is_empty());
        for other in self.seen.values() {
            if meta::name(other) == meta::name(d) || &other["spec"]["group"] != group {
                continue;
            }
            let theirs = &other["status"]["acceptedNames"];
            let held: Vec<&str> = ["plural", "singular"]
                .iter()
                .filter_map(|k| theirs[*k].as_str())
                .chain(
                    theirs["shortNames"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str),
                )
                .collect();
            for key in ["plural", "singular"] {
                if let Some(n) = mine(key)
                    && held.contains(&n)
                {
                    return Some(format!("{n:?} is already in use"));
                }
            }
            for s in names["shortNames"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if held.contains(&s) {
                    return Some(format!("{s:?} is already in use"));
                }
            }
            for key in ["kind", "listKind"] {
                if let Some(n) = mine(key)
                    && (theirs["kind"].as_str() == Some(n)
                        || theirs["listKind"].as_str() == Some(n))
                {
                    return Some(format!("{n:?} is already in use"));
                }
            }
        }
        None
    }

    /// Deletes every object of a definition being deleted; once none is left, removes the
    /// cleanup finalizer (and the definition goes).
    async fn clean_up(&mut self, registry: &Registry, d: &Value) -> anyhow::Result<()> {
        let holds = d["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == CLEANUP_FINALIZER));
        if !holds {
            return Ok(());
        }
        let name = meta::name(d).to_string();
        let mut d = d.clone();
        let mut remaining = 0usize;
        if let Some(r) = self
            .served
            .iter()
            .copied()
            .find(|r| r.custom.is_some_and(|c| c.definition == name))
        {
            let list = registry
                .list(r, None, &ListOptions::default())
                .await
                .map_err(|e| anyhow::anyhow!("listing objects: {e}"))?;
            for item in list["items"].as_array().into_iter().flatten() {
                remaining += 1;
                if item.pointer("/metadata/deletionTimestamp").is_some() {
                    continue;
                }
                let ns = item.pointer("/metadata/namespace").and_then(Value::as_str);
                match registry
                    .delete(r, ns, meta::name(item), &DeleteOptions::default())
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.code == 404 => {}
                    Err(e) => {
                        tracing::warn!(definition = %name, error = %e, "deleting a custom resource failed")
                    }
                }
            }
        }
        let mut status = d.get("status").cloned().unwrap_or_else(|| json!({}));
        let done = remaining == 0;
        if done {
            set_condition(
                &mut status,
                "Terminating",
                "False",
                "InstanceDeletionCompleted",
                "removed all instances",
            );
        } else {
            set_condition(
                &mut status,
                "Terminating",
                "True",
                "InstanceDeletionInProgress",
                "CustomResource deletion is in progress",
            );
        }
        let res = definitions()?;
        if d.get("status") != Some(&status) {
            d["status"] = status;
            d = registry
                .update(
                    res,
                    None,
                    &name,
                    d,
                    Some("status"),
                    &WriteOptions::default(),
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        if !done {
            return Ok(());
        }
        if let Some(Value::Array(f)) = d.pointer_mut("/metadata/finalizers") {
            f.retain(|f| f != CLEANUP_FINALIZER);
        }
        registry
            .update(res, None, &name, d, None, &WriteOptions::default())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        tracing::info!(definition = %name, "custom resource definition's objects removed");
        Ok(())
    }
}

/// Whether a definition is established (its kinds are served).
fn established(d: &Value) -> bool {
    d["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Established" && c["status"] == "True")
}

fn storage_version(d: &Value) -> Option<&str> {
    d["spec"]["versions"]
        .as_array()?
        .iter()
        .find(|v| v["storage"] == true)?
        .get("name")?
        .as_str()
}

/// The names as accepted: the spec's, in the field order Kubernetes writes them.
fn accepted_names(names: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for key in [
        "plural",
        "singular",
        "shortNames",
        "kind",
        "listKind",
        "categories",
    ] {
        if let Some(v) = names.get(key).filter(|v| !v.is_null()) {
            out.insert(key.into(), v.clone());
        }
    }
    Value::Object(out)
}

/// Sets a condition, keeping its transition time when its status does not change.
fn set_condition(status: &mut Value, kind: &str, value: &str, reason: &str, message: &str) {
    let mut conditions = status["conditions"].as_array().cloned().unwrap_or_default();
    let fresh = json!({"type": kind, "status": value, "lastTransitionTime": now(), "reason": reason, "message": message});
    match conditions.iter_mut().find(|c| c["type"] == kind) {
        Some(c) => {
            if c["status"] == value {
                c["reason"] = json!(reason);
                c["message"] = json!(message);
            } else {
                *c = fresh;
            }
        }
        None => conditions.push(fresh),
    }
    status["conditions"] = Value::Array(conditions);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_keep_their_transition_time_while_unchanged() {
        let mut status = json!({});
        set_condition(
            &mut status,
            "NamesAccepted",
            "True",
            "NoConflicts",
            "no conflicts found",
        );
        let first = status["conditions"][0]["lastTransitionTime"].clone();
        set_condition(
            &mut status,
            "NamesAccepted",
            "True",
            "NoConflicts",
            "no conflicts found",
        );
        assert_eq!(status["conditions"][0]["lastTransitionTime"], first);
        set_condition(
            &mut status,
            "Established",
            "True",
            "InitialNamesAccepted",
            "x",
        );
        assert_eq!(status["conditions"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn a_second_definition_with_a_held_plural_is_refused() {
        let mut s = State::default();
        let held = json!({"metadata": {"name": "widgets.example.com"}, "spec": {"group": "example.com"},
            "status": {"acceptedNames": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]}}});
        s.seen.insert("widgets.example.com".into(), held);
        let other = json!({"metadata": {"name": "gadgets.example.com"}, "spec": {"group": "example.com",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "shortNames": ["wd"]}}});
        assert_eq!(
            s.conflict(&other).as_deref(),
            Some("\"wd\" is already in use")
        );
        let fine = json!({"metadata": {"name": "gadgets.example.com"}, "spec": {"group": "example.com",
            "names": {"plural": "gadgets", "kind": "Gadget"}}});
        assert_eq!(s.conflict(&fine), None);
    }
}
