//! The scheduler's picture of the cluster, kept current from watches: every node with what is
//! placed on it, every placed pod (bound, or assumed while its binding is in flight), and
//! indexes that make the per-pod questions cheap ("how many pods matching this selector are
//! in each zone?") in clusters of thousands of nodes.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use tug_api::selector::LabelSelector;

use crate::fit::{self, Resources};
use crate::terms::{self, Namespaces, PodTerm};

/// A pod's namespace and name.
pub type Key = (String, String);

/// The key of a pod.
pub fn key(p: &Pod) -> Key {
    (
        p.metadata.namespace.clone().unwrap_or_default(),
        p.metadata.name.clone().unwrap_or_default(),
    )
}

/// A host port a pod holds: protocol, host IP (empty for every address) and port.
pub type HostPort = (String, String, i32);

/// The host ports a pod asks for.
pub fn host_ports(p: &Pod) -> Vec<HostPort> {
    let mut out = Vec::new();
    for c in p.spec.iter().flat_map(|s| s.containers.iter()) {
        for port in c.ports.iter().flatten() {
            if let Some(hp) = port.host_port.filter(|p| *p > 0) {
                let ip = port
                    .host_ip
                    .clone()
                    .filter(|ip| ip != "0.0.0.0")
                    .unwrap_or_default();
                out.push((port.protocol.clone().unwrap_or("TCP".into()), ip, hp));
            }
        }
    }
    out
}

/// Whether two host ports collide.
pub fn ports_collide(a: &HostPort, b: &HostPort) -> bool {
    a.0 == b.0 && a.2 == b.2 && (a.1.is_empty() || b.1.is_empty() || a.1 == b.1)
}

/// A pod's priority.
pub fn priority(p: &Pod) -> i32 {
    p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// A placed pod.
#[derive(Clone, Debug)]
pub struct PlacedPod {
    pub pod: Arc<Pod>,
    pub node: usize,
    pub priority: i32,
    pub requests: Resources,
    pub ports: Vec<HostPort>,
    group: usize,
    anti: Vec<usize>,
}

/// A node and what is placed on it. `node` is `None` while pods name a node the watch has
/// not delivered yet.
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    pub node: Option<Arc<Node>>,
    pub name: String,
    pub alloc: Resources,
    pub used: Resources,
    pub ready: bool,
    pub unschedulable: bool,
    pub pods: Vec<Key>,
    pub ports: Vec<HostPort>,
    /// Requests of pods nominated to this node by preemption: (pod, priority, requests).
    pub nominated: Vec<(Key, i32, Resources)>,
}

/// Pods sharing a namespace and a label set, and how many sit on each node.
#[derive(Debug)]
pub struct Group {
    pub namespace: String,
    pub labels: Vec<(String, String)>,
    pub per_node: HashMap<usize, u32>,
    pub total: u32,
}

/// Placed pods' required anti-affinity terms, grouped by term, and how many pods with the
/// term sit on each node (the symmetric side of anti-affinity).
#[derive(Debug)]
pub struct AntiGroup {
    pub term: PodTerm,
    pub per_node: HashMap<usize, u32>,
}

/// The values a topology key takes over the nodes, numbered.
#[derive(Debug, Default)]
pub struct Domains {
    /// The domain of each node (by node index), if the node has the key.
    pub of_node: Vec<Option<u32>>,
    /// The domains' values.
    pub values: Vec<String>,
}

/// The cluster as the scheduler sees it.
#[derive(Default)]
pub struct Cache {
    pub nodes: Vec<NodeInfo>,
    by_name: HashMap<String, usize>,
    pub pods: HashMap<Key, PlacedPod>,
    pub groups: Vec<Group>,
    group_index: HashMap<(String, Vec<(String, String)>), usize>,
    pub anti: Vec<AntiGroup>,
    anti_index: HashMap<String, usize>,
    domains: HashMap<String, Arc<Domains>>,
    /// Nodes that exist (have a Node object).
    pub live_nodes: usize,
}

impl Cache {
    /// The index of node `name`, made if new.
    fn node_index(&mut self, name: &str) -> usize {
        if let Some(i) = self.by_name.get(name) {
            return *i;
        }
        self.nodes.push(NodeInfo {
            name: name.to_string(),
            ..Default::default()
        });
        let i = self.nodes.len() - 1;
        self.by_name.insert(name.to_string(), i);
        i
    }

    /// Adds or updates a node.
    pub fn set_node(&mut self, node: Arc<Node>) {
        let Some(name) = node.metadata.name.clone() else {
            return;
        };
        let i = self.node_index(&name);
        let info = &mut self.nodes[i];
        let labels_changed = info
            .node
            .as_ref()
            .is_none_or(|old| old.metadata.labels != node.metadata.labels);
        if info.node.is_none() {
            self.live_nodes += 1;
        }
        info.alloc = fit::node_allocatable(&node);
        info.ready = fit::ready(&node);
        info.unschedulable = node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        info.node = Some(node);
        if labels_changed {
            self.domains.clear();
        }
    }

    /// Removes a node (its pods stay counted until they go).
    pub fn remove_node(&mut self, name: &str) {
        if let Some(i) = self.by_name.get(name)
            && self.nodes[*i].node.take().is_some()
        {
            self.live_nodes -= 1;
            self.domains.clear();
        }
    }

    /// The names of the nodes that exist.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.node.is_some())
            .map(|n| n.name.clone())
            .collect()
    }

    /// Places (or re-places) a pod on `node`.
    pub fn add_pod(&mut self, pod: Arc<Pod>, node: &str) {
        let k = key(&pod);
        self.remove_pod(&k);
        let idx = self.node_index(node);
        let labels = terms::label_pairs(pod.metadata.labels.as_ref());
        let group = self.group_for(&k.0, labels);
        let anti = self.anti_groups_for(&pod, &k.0);
        let placed = PlacedPod {
            node: idx,
            priority: priority(&pod),
            requests: fit::pod_requests(&pod),
            ports: host_ports(&pod),
            group,
            anti,
            pod,
        };
        let info = &mut self.nodes[idx];
        info.used.add(&placed.requests);
        info.ports.extend(placed.ports.iter().cloned());
        info.pods.push(k.clone());
        info.nominated.retain(|(n, _, _)| *n != k);
        let g = &mut self.groups[group];
        *g.per_node.entry(idx).or_default() += 1;
        g.total += 1;
        for a in &placed.anti {
            *self.anti[*a].per_node.entry(idx).or_default() += 1;
        }
        self.pods.insert(k, placed);
    }

    /// Forgets a placed pod.
    pub fn remove_pod(&mut self, k: &Key) -> Option<PlacedPod> {
        let placed = self.pods.remove(k)?;
        let info = &mut self.nodes[placed.node];
        info.used.sub(&placed.requests);
        for p in &placed.ports {
            if let Some(i) = info.ports.iter().position(|x| x == p) {
                info.ports.swap_remove(i);
            }
        }
        if let Some(i) = info.pods.iter().position(|x| x == k) {
            info.pods.swap_remove(i);
        }
        let g = &mut self.groups[placed.group];
        decrement(&mut g.per_node, placed.node);
        g.total -= 1;
        for a in &placed.anti {
            decrement(&mut self.anti[*a].per_node, placed.node);
        }
        Some(placed)
    }

    /// Records that preemption nominated `node` for a pod, so that lower-priority pods leave
    /// its room free.
    pub fn nominate(&mut self, k: &Key, node: usize, prio: i32, requests: Resources) {
        self.clear_nomination(k);
        self.nodes[node].nominated.push((k.clone(), prio, requests));
    }

    /// Drops a pod's nomination.
    pub fn clear_nomination(&mut self, k: &Key) {
        for n in &mut self.nodes {
            n.nominated.retain(|(x, _, _)| x != k);
        }
    }

    fn group_for(&mut self, ns: &str, labels: Vec<(String, String)>) -> usize {
        let id = (ns.to_string(), labels);
        if let Some(g) = self.group_index.get(&id) {
            return *g;
        }
        self.groups.push(Group {
            namespace: id.0.clone(),
            labels: id.1.clone(),
            per_node: HashMap::new(),
            total: 0,
        });
        let g = self.groups.len() - 1;
        self.group_index.insert(id, g);
        g
    }

    fn anti_groups_for(&mut self, pod: &Pod, ns: &str) -> Vec<usize> {
        let terms = pod
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            });
        let mut out = Vec::new();
        for t in terms.into_iter().flatten() {
            let id = format!("{ns}\n{}", serde_json::to_string(t).unwrap_or_default());
            let a = match self.anti_index.get(&id) {
                Some(a) => *a,
                None => {
                    self.anti.push(AntiGroup {
                        term: PodTerm::parse(t, ns),
                        per_node: HashMap::new(),
                    });
                    self.anti_index.insert(id, self.anti.len() - 1);
                    self.anti.len() - 1
                }
            };
            out.push(a);
        }
        out
    }

    /// The domains of a topology key over the nodes (cached until nodes change).
    pub fn domains(&mut self, topology_key: &str) -> Arc<Domains> {
        if let Some(d) = self.domains.get(topology_key) {
            return d.clone();
        }
        let mut d = Domains::default();
        let mut numbers: HashMap<String, u32> = HashMap::new();
        for n in &self.nodes {
            let value = n
                .node
                .as_ref()
                .and_then(|n| n.metadata.labels.as_ref())
                .and_then(|l| l.get(topology_key));
            let id = value.map(|v| {
                *numbers.entry(v.clone()).or_insert_with(|| {
                    d.values.push(v.clone());
                    (d.values.len() - 1) as u32
                })
            });
            d.of_node.push(id);
        }
        let d = Arc::new(d);
        self.domains.insert(topology_key.to_string(), d.clone());
        d
    }

    /// How many placed pods in `namespaces` match `selector`, per node.
    pub fn count_matching(
        &self,
        namespaces: &Namespaces,
        selector: &LabelSelector,
    ) -> HashMap<usize, u32> {
        let mut out: HashMap<usize, u32> = HashMap::new();
        for g in &self.groups {
            if g.total == 0
                || !namespaces.contains(&g.namespace)
                || !terms::matches(selector, &g.labels)
            {
                continue;
            }
            for (node, c) in &g.per_node {
                *out.entry(*node).or_default() += c;
            }
        }
        out
    }
}

fn decrement(map: &mut HashMap<usize, u32>, node: usize) {
    if let Some(c) = map.get_mut(&node) {
        *c -= 1;
        if *c == 0 {
            map.remove(&node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, labels: serde_json::Value, cpu: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": name, "namespace": "default", "labels": labels},
                "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}},
                    "ports": [{"containerPort": 80, "hostPort": 8080}]}]}}),
            )
            .expect("pod"),
        )
    }

    #[test]
    fn pods_count_on_their_nodes_until_removed() {
        let mut c = Cache::default();
        c.add_pod(pod("a", json!({"app": "web"}), "1"), "n1");
        c.add_pod(pod("b", json!({"app": "web"}), "2"), "n1");
        c.add_pod(pod("b", json!({"app": "web"}), "2"), "n2");
        let n1 = c.by_name["n1"];
        let n2 = c.by_name["n2"];
        assert_eq!(c.nodes[n1].used.cpu, 1.0);
        assert_eq!(c.nodes[n2].used.cpu, 2.0);
        assert_eq!(
            c.nodes[n1].ports,
            [("TCP".to_string(), String::new(), 8080)]
        );
        let web = terms::label_selector(Some(
            &serde_json::from_value(json!({"matchLabels": {"app": "web"}})).expect("sel"),
        ))
        .expect("selector");
        let counts = c.count_matching(&Namespaces::All, &web);
        assert_eq!((counts[&n1], counts[&n2]), (1, 1));
        c.remove_pod(&("default".into(), "a".into()));
        assert_eq!(c.nodes[n1].used.cpu, 0.0);
        assert!(c.nodes[n1].ports.is_empty());
        assert!(!c.count_matching(&Namespaces::All, &web).contains_key(&n1));
    }
}
