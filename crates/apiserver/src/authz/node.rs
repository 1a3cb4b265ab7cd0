//! The Node authorizer and NodeRestriction admission, as kube-apiserver has them: a node agent
//! (user `system:node:NAME` in `system:nodes`) may read only the Secrets, ConfigMaps,
//! PersistentVolumeClaims (and their volumes) and service account tokens of pods bound to it;
//! it may change only its own Node and Lease and its own pods' status; it cannot label itself
//! into `node-restriction.kubernetes.io/`. Everything else it may do is a fixed rule set: the
//! `system:node` role's, plus what tugboat's node agent needs as the cluster's network proxy
//! (Services, EndpointSlices, NetworkPolicies, Namespaces).
//!
//! Which objects a node's pods use is kept in a graph, fed by a watch of every pod.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;
use tug_api::{ApiError, Resource, meta};

use super::Attributes;
use crate::auth::Identity;
use crate::registry::{Registry, WatchOptions};

/// The node a user is, when it is one: `system:node:NAME` in group `system:nodes`.
pub fn node_name(user: &Identity) -> Option<&str> {
    if !user.groups.iter().any(|g| g == "system:nodes") {
        return None;
    }
    user.user
        .strip_prefix("system:node:")
        .filter(|n| !n.is_empty())
}

/// An object a pod uses.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Use {
    resource: &'static str,
    namespace: String,
    name: String,
}

/// Which node each pod is bound to, and what the pods of each node use.
#[derive(Default)]
struct Graph {
    pods: HashMap<(String, String), (String, Vec<Use>)>,
    by_node: HashMap<String, HashMap<Use, usize>>,
}

impl Graph {
    fn remove(&mut self, key: &(String, String)) {
        let Some((node, uses)) = self.pods.remove(key) else {
            return;
        };
        if let Some(m) = self.by_node.get_mut(&node) {
            for u in uses {
                if let Some(n) = m.get_mut(&u) {
                    *n -= 1;
                    if *n == 0 {
                        m.remove(&u);
                    }
                }
            }
            if m.is_empty() {
                self.by_node.remove(&node);
            }
        }
    }

    fn put(&mut self, pod: &Value) {
        let key = (
            meta::namespace(pod).to_string(),
            meta::name(pod).to_string(),
        );
        self.remove(&key);
        let node = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if node.is_empty() {
            return;
        }
        let uses = uses_of(pod);
        let m = self.by_node.entry(node.to_string()).or_default();
        for u in &uses {
            *m.entry(u.clone()).or_default() += 1;
        }
        self.pods.insert(key, (node.to_string(), uses));
    }
}

/// What a pod uses: its service account, pull secrets, the secrets, config maps and claims
/// of its volumes (projected ones too), and those its containers' environment names.
fn uses_of(pod: &Value) -> Vec<Use> {
    let ns = meta::namespace(pod).to_string();
    let mut found: BTreeSet<(&'static str, String)> = BTreeSet::new();
    let spec = &pod["spec"];
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    found.insert((
        "serviceaccounts",
        text(&spec["serviceAccountName"]).unwrap_or_else(|| "default".into()),
    ));
    found.insert(("pods", meta::name(pod).to_string()));
    for s in spec["imagePullSecrets"].as_array().into_iter().flatten() {
        found.extend(text(&s["name"]).map(|n| ("secrets", n)));
    }
    for v in spec["volumes"].as_array().into_iter().flatten() {
        found.extend(text(&v["secret"]["secretName"]).map(|n| ("secrets", n)));
        found.extend(text(&v["configMap"]["name"]).map(|n| ("configmaps", n)));
        found.extend(
            text(&v["persistentVolumeClaim"]["claimName"]).map(|n| ("persistentvolumeclaims", n)),
        );
        for s in v["projected"]["sources"].as_array().into_iter().flatten() {
            found.extend(text(&s["secret"]["name"]).map(|n| ("secrets", n)));
            found.extend(text(&s["configMap"]["name"]).map(|n| ("configmaps", n)));
        }
    }
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in spec[list].as_array().into_iter().flatten() {
            for e in c["env"].as_array().into_iter().flatten() {
                found.extend(text(&e["valueFrom"]["secretKeyRef"]["name"]).map(|n| ("secrets", n)));
                found.extend(
                    text(&e["valueFrom"]["configMapKeyRef"]["name"]).map(|n| ("configmaps", n)),
                );
            }
            for e in c["envFrom"].as_array().into_iter().flatten() {
                found.extend(text(&e["secretRef"]["name"]).map(|n| ("secrets", n)));
                found.extend(text(&e["configMapRef"]["name"]).map(|n| ("configmaps", n)));
            }
        }
    }
    found
        .into_iter()
        .map(|(resource, name)| Use {
            resource,
            namespace: ns.clone(),
            name,
        })
        .collect()
}

/// What a node's request amounts to.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Not for the node rules to allow; RBAC may still (the reason joins a refusal).
    NoOpinion(String),
}

/// The node authorizer's state: the graph of pods and what they use.
#[derive(Default)]
pub struct NodeAuthorizer {
    graph: RwLock<Graph>,
}

/// What every node may do besides its own objects (the `system:node` role's rules and the
/// network proxy's reads), as (groups, resources, verbs).
const NODE_RULES: &[(&[&str], &[&str], &[&str])] = &[
    (&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
    (
        &["authorization.k8s.io"],
        &["localsubjectaccessreviews", "subjectaccessreviews"],
        &["create"],
    ),
    (
        &[""],
        &["services", "endpoints", "namespaces"],
        &["get", "list", "watch"],
    ),
    // Kubernetes follows a claim to its volume; tugboat lets nodes read volumes.
    (&[""], &["persistentvolumes"], &["get"]),
    (
        &[""],
        &["nodes"],
        &["create", "get", "list", "watch", "update", "patch"],
    ),
    (&[""], &["nodes/status"], &["patch", "update"]),
    (
        &["", "events.k8s.io"],
        &["events"],
        &["create", "patch", "update"],
    ),
    (
        &[""],
        &["pods"],
        &["get", "list", "watch", "create", "delete"],
    ),
    (&[""], &["pods/status"], &["patch", "update"]),
    (&[""], &["pods/eviction"], &["create"]),
    (
        &["certificates.k8s.io"],
        &["certificatesigningrequests"],
        &["create", "get", "list", "watch"],
    ),
    (
        &["coordination.k8s.io"],
        &["leases"],
        &["create", "delete", "get", "patch", "update"],
    ),
    (
        &["storage.k8s.io"],
        &["volumeattachments", "csidrivers"],
        &["get", "list", "watch"],
    ),
    (
        &["storage.k8s.io"],
        &["csinodes"],
        &["create", "delete", "get", "patch", "update"],
    ),
    (
        &["node.k8s.io"],
        &["runtimeclasses"],
        &["get", "list", "watch"],
    ),
    (
        &["discovery.k8s.io"],
        &["endpointslices"],
        &["get", "list", "watch"],
    ),
    (
        &["networking.k8s.io"],
        &["networkpolicies", "servicecidrs"],
        &["get", "list", "watch"],
    ),
];

fn node_rules_allow(a: &Attributes) -> bool {
    let resource = a.resource_and_subresource();
    NODE_RULES.iter().any(|(groups, resources, verbs)| {
        groups.contains(&a.api_group.as_str())
            && resources.contains(&resource.as_str())
            && verbs.contains(&a.verb.as_str())
    })
}

impl NodeAuthorizer {
    /// Decides what node `node` may do.
    pub fn decide(&self, node: &str, a: &Attributes) -> Verdict {
        if !a.resource_request {
            return Verdict::NoOpinion(String::new());
        }
        match (a.api_group.as_str(), a.resource.as_str()) {
            ("", "secrets" | "configmaps") => self.read_used(node, a),
            ("", "persistentvolumeclaims") => {
                if a.verb != "get" {
                    return Verdict::NoOpinion(
                        "can only get individual resources of this type".into(),
                    );
                }
                self.used(node, a)
            }
            ("", "serviceaccounts") => {
                if a.verb != "create" || a.subresource != "token" {
                    return Verdict::NoOpinion(
                        "can only create tokens for individual service accounts".into(),
                    );
                }
                self.used(node, a)
            }
            _ if node_rules_allow(a) => Verdict::Allow,
            _ => Verdict::NoOpinion(String::new()),
        }
    }

    fn read_used(&self, node: &str, a: &Attributes) -> Verdict {
        if !matches!(a.verb.as_str(), "get" | "list" | "watch") {
            return Verdict::NoOpinion("can only read resources of this type".into());
        }
        if !a.subresource.is_empty() {
            return Verdict::NoOpinion("cannot read subresource".into());
        }
        if a.namespace.is_empty() {
            return Verdict::NoOpinion("can only read namespaced object of this type".into());
        }
        self.used(node, a)
    }

    /// Allows when a pod bound to the node uses the object the request names.
    fn used(&self, node: &str, a: &Attributes) -> Verdict {
        if a.name.is_empty() {
            return Verdict::NoOpinion("No Object name found".into());
        }
        let wanted = Use {
            resource: match a.resource.as_str() {
                "secrets" => "secrets",
                "configmaps" => "configmaps",
                "persistentvolumeclaims" => "persistentvolumeclaims",
                _ => "serviceaccounts",
            },
            namespace: a.namespace.clone(),
            name: a.name.clone(),
        };
        let graph = match self.graph.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if graph
            .by_node
            .get(node)
            .is_some_and(|m| m.contains_key(&wanted))
        {
            Verdict::Allow
        } else {
            Verdict::NoOpinion(format!(
                "no relationship found between node '{node}' and this object"
            ))
        }
    }

    /// The node a pod is bound to, as last seen.
    fn node_of_pod(&self, namespace: &str, name: &str) -> Option<String> {
        let graph = match self.graph.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        graph
            .pods
            .get(&(namespace.to_string(), name.to_string()))
            .map(|(n, _)| n.clone())
    }

    fn apply(&self, kind: &str, pod: &Value) {
        let mut graph = match self.graph.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if kind == "DELETED" {
            graph.remove(&(
                meta::namespace(pod).to_string(),
                meta::name(pod).to_string(),
            ));
        } else {
            graph.put(pod);
        }
    }

    /// Loads the pods, then follows them in the background.
    pub async fn start(self: &Arc<Self>, registry: &Registry) -> anyhow::Result<()> {
        let pods = tug_api::catalog::lookup("", "v1", "pods")
            .ok_or_else(|| anyhow::anyhow!("pods missing from the catalog"))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let me = self.clone();
        let registry = registry.clone();
        tokio::spawn(async move {
            let mut ready = Some(tx);
            loop {
                if let Err(e) = me.follow(&registry, pods, &mut ready).await {
                    tracing::warn!(error = %e, "node authorizer: pod watch ended; starting again");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        rx.await
            .map_err(|_| anyhow::anyhow!("the node authorizer could not read the pods"))
    }

    async fn follow(
        &self,
        registry: &Registry,
        pods: &'static Resource,
        ready: &mut Option<tokio::sync::oneshot::Sender<()>>,
    ) -> anyhow::Result<()> {
        let opts = WatchOptions {
            send_initial_events: Some(true),
            allow_bookmarks: true,
            timeout: Some(Duration::from_secs(600)),
            ..Default::default()
        };
        let mut events = registry
            .watch(pods, None, opts)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut initial = Some(Graph::default());
        while let Some(event) = events.recv().await {
            let kind = event.kind().to_string();
            let event = event.into_value();
            let obj = &event["object"];
            match kind.as_str() {
                "ERROR" => anyhow::bail!("{}", obj["message"]),
                "BOOKMARK" => {
                    if obj
                        .pointer("/metadata/annotations/k8s.io~1initial-events-end")
                        .is_some()
                        && let Some(g) = initial.take()
                    {
                        match self.graph.write() {
                            Ok(mut graph) => *graph = g,
                            Err(poisoned) => *poisoned.into_inner() = g,
                        }
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                    }
                }
                _ => match &mut initial {
                    Some(g) => g.put(obj),
                    None => self.apply(&kind, obj),
                },
            }
        }
        Ok(())
    }

    /// NodeRestriction: what a node may write (`old` is the object an update replaces; `new`
    /// is `None` for a delete).
    pub fn admit(
        &self,
        node: &str,
        r: &Resource,
        at: &Written,
        old: Option<&Value>,
        new: Option<&Value>,
    ) -> Result<(), ApiError> {
        let Written {
            subresource,
            namespace,
            name,
        } = *at;
        let refuse = |why: String| super::forbidden_for(r.group, r.plural, name, &why);
        match (r.group, r.plural) {
            ("", "nodes") => {
                if name != node {
                    return Err(refuse(format!(
                        "node {node:?} is not allowed to modify node {name:?}"
                    )));
                }
                let labels = |v: Option<&Value>| -> BTreeSet<(String, String)> {
                    v.and_then(|v| v.pointer("/metadata/labels"))
                        .and_then(Value::as_object)
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                        .collect()
                };
                let (before, after) = (labels(old), labels(new));
                let changed: BTreeSet<&str> = before
                    .symmetric_difference(&after)
                    .map(|(k, _)| k.as_str())
                    .filter(|k| restricted_label(k))
                    .collect();
                if !changed.is_empty() {
                    let list: Vec<&str> = changed.into_iter().collect();
                    return Err(refuse(format!(
                        "is not allowed to modify labels: {}",
                        list.join(", ")
                    )));
                }
                Ok(())
            }
            ("", "pods") => {
                let bound = new
                    .or(old)
                    .and_then(|p| p.pointer("/spec/nodeName"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or_else(|| self.node_of_pod(namespace, name));
                match (old, new, subresource) {
                    (None, Some(pod), None) => {
                        if pod
                            .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
                            .is_none()
                        {
                            return Err(refuse(format!(
                                "pod does not have \"kubernetes.io/config.mirror\" annotation, node {node:?} can only create mirror pods"
                            )));
                        }
                        if bound.as_deref() != Some(node) {
                            return Err(refuse(format!(
                                "node {node:?} can only create pods with spec.nodeName set to itself"
                            )));
                        }
                        Ok(())
                    }
                    (_, None, _) if bound.as_deref() != Some(node) => Err(refuse(format!(
                        "node {node:?} can only delete pods with spec.nodeName set to itself"
                    ))),
                    (Some(_), Some(_), _) if bound.as_deref() != Some(node) => {
                        Err(refuse(format!(
                            "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
                        )))
                    }
                    _ => Ok(()),
                }
            }
            ("coordination.k8s.io", "leases") => {
                if namespace != "kube-node-lease" || name != node {
                    return Err(refuse(
                        "can only access node lease with the same name as the requesting node"
                            .into(),
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Where a write lands: the object's namespace and name, and the subresource written.
#[derive(Clone, Copy, Debug)]
pub struct Written<'a> {
    pub subresource: Option<&'a str>,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// Labels a node may not set on itself (kubelets may not claim them).
fn restricted_label(key: &str) -> bool {
    let domain = key.split_once('/').map(|(d, _)| d).unwrap_or("");
    domain == "node-restriction.kubernetes.io"
        || domain.ends_with(".node-restriction.kubernetes.io")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(name: &str, node: &str) -> Value {
        json!({
            "metadata": {"name": name, "namespace": "apps"},
            "spec": {
                "nodeName": node,
                "serviceAccountName": "runner",
                "volumes": [{"name": "s", "secret": {"secretName": "db"}}, {"name": "p", "projected": {"sources": [{"configMap": {"name": "cfg"}}]}}],
                "containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "env"}}]}]
            }
        })
    }

    fn get(resource: &str, name: &str) -> Attributes {
        Attributes::resource("get", "", resource, "", "apps", name)
    }

    #[test]
    fn a_node_reads_only_what_its_pods_use() {
        let n = NodeAuthorizer::default();
        n.apply("ADDED", &pod("web", "node-a"));
        assert_eq!(n.decide("node-a", &get("secrets", "db")), Verdict::Allow);
        assert_eq!(n.decide("node-a", &get("secrets", "env")), Verdict::Allow);
        assert_eq!(
            n.decide("node-a", &get("configmaps", "cfg")),
            Verdict::Allow
        );
        assert_eq!(
            n.decide("node-b", &get("secrets", "db")),
            Verdict::NoOpinion(
                "no relationship found between node 'node-b' and this object".into()
            )
        );
        assert!(matches!(
            n.decide("node-a", &get("secrets", "other")),
            Verdict::NoOpinion(_)
        ));
        let token =
            Attributes::resource("create", "", "serviceaccounts", "token", "apps", "runner");
        assert_eq!(n.decide("node-a", &token), Verdict::Allow);
        let list = Attributes::resource("list", "", "secrets", "", "apps", "");
        assert_eq!(
            n.decide("node-a", &list),
            Verdict::NoOpinion("No Object name found".into())
        );
        // Once the pod goes, so does the access.
        n.apply("DELETED", &pod("web", "node-a"));
        assert!(matches!(
            n.decide("node-a", &get("secrets", "db")),
            Verdict::NoOpinion(_)
        ));
    }

    fn at<'a>(subresource: Option<&'a str>, namespace: &'a str, name: &'a str) -> Written<'a> {
        Written {
            subresource,
            namespace,
            name,
        }
    }

    #[test]
    fn a_node_changes_only_its_own_objects() {
        let n = NodeAuthorizer::default();
        n.apply("ADDED", &pod("web", "node-a"));
        let nodes = tug_api::catalog::lookup("", "v1", "nodes").expect("nodes");
        let pods = tug_api::catalog::lookup("", "v1", "pods").expect("pods");
        let leases =
            tug_api::catalog::lookup("coordination.k8s.io", "v1", "leases").expect("leases");
        let me = json!({"metadata": {"name": "node-a", "labels": {"a": "1"}}});
        let own = at(None, "", "node-a");
        assert!(n.admit("node-a", nodes, &own, Some(&me), Some(&me)).is_ok());
        let other = at(None, "", "node-b");
        assert!(
            n.admit("node-a", nodes, &other, Some(&me), Some(&me))
                .is_err()
        );
        let claimed = json!({"metadata": {"name": "node-a", "labels": {"a": "1", "node-restriction.kubernetes.io/pci": "yes"}}});
        let err = n
            .admit("node-a", nodes, &own, Some(&me), Some(&claimed))
            .expect_err("refused");
        assert!(
            err.message
                .ends_with("is not allowed to modify labels: node-restriction.kubernetes.io/pci"),
            "{}",
            err.message
        );
        let web = pod("web", "node-a");
        let web_at = at(None, "apps", "web");
        assert!(n.admit("node-a", pods, &web_at, Some(&web), None).is_ok());
        assert!(n.admit("node-b", pods, &web_at, Some(&web), None).is_err());
        let status = at(Some("status"), "apps", "web");
        assert!(
            n.admit("node-b", pods, &status, Some(&web), Some(&web))
                .is_err()
        );
        assert!(
            n.admit("node-a", pods, &status, Some(&web), Some(&web))
                .is_ok()
        );
        let created = pod("new", "node-a");
        assert!(
            n.admit(
                "node-a",
                pods,
                &at(None, "apps", "new"),
                None,
                Some(&created)
            )
            .is_err()
        );
        let lease = json!({});
        let own_lease = at(None, "kube-node-lease", "node-a");
        assert!(
            n.admit("node-a", leases, &own_lease, None, Some(&lease))
                .is_ok()
        );
        let other_lease = at(None, "kube-node-lease", "node-b");
        assert!(
            n.admit("node-a", leases, &other_lease, None, Some(&lease))
                .is_err()
        );
    }
}
