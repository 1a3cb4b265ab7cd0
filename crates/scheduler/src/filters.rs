//! The filters a node must pass to run a pod, in kube-scheduler's order, each failing with the
//! words Kubernetes uses in FailedScheduling events. What does not depend on the node (the
//! pod's requests, its parsed terms, pod counts per topology domain) is worked out once per
//! pod in [`PodState::new`], so that each node costs little.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, NodeSelectorTerm, Pod, Toleration};

use crate::cache::{self, Cache, Domains, HostPort, Key, NodeInfo};
use crate::fit::{self, Resources};
use crate::terms::{self, Namespaces, PodTerm};

/// Domains of one topology key in which some pods matching a term run.
pub struct DomainHits {
    pub domains: Arc<Domains>,
    pub hit: Vec<bool>,
}

impl DomainHits {
    fn new(domains: Arc<Domains>, per_node: impl IntoIterator<Item = usize>) -> Self {
        let mut hit = vec![false; domains.values.len()];
        for n in per_node {
            if let Some(Some(d)) = domains.of_node.get(n) {
                hit[*d as usize] = true;
            }
        }
        Self { domains, hit }
    }

    /// The node's domain, if it has the key.
    fn domain(&self, node: usize) -> Option<usize> {
        self.domains
            .of_node
            .get(node)
            .copied()
            .flatten()
            .map(|d| d as usize)
    }

    fn any(&self) -> bool {
        self.hit.iter().any(|h| *h)
    }

    fn hits(&self, node: usize) -> bool {
        self.domain(node).is_some_and(|d| self.hit[d])
    }
}

/// A topology spread constraint with the pods it counts, per domain.
pub struct Spread {
    pub domains: Arc<Domains>,
    pub counts: Vec<u32>,
    /// The smallest count over the eligible domains (0 when fewer than minDomains exist).
    pub min: u32,
    pub max_skew: i32,
    /// 1 when the pod itself matches the constraint's selector.
    pub self_match: u32,
}

impl Spread {
    /// The node's domain, if it has the key.
    pub fn domain(&self, node: usize) -> Option<usize> {
        self.domains
            .of_node
            .get(node)
            .copied()
            .flatten()
            .map(|d| d as usize)
    }
}

/// The claims and volumes the scheduler watches.
pub struct Storage {
    pub claims: kube::runtime::reflector::Store<k8s_openapi::api::core::v1::PersistentVolumeClaim>,
    pub volumes: kube::runtime::reflector::Store<k8s_openapi::api::core::v1::PersistentVolume>,
}

/// What the filters and scores need to know about the pod being placed.
pub struct PodState {
    pub pod: Arc<Pod>,
    pub key: Key,
    pub priority: i32,
    pub want: Resources,
    pub ports: Vec<HostPort>,
    pub tolerations: Vec<Toleration>,
    pub node_selector: Option<BTreeMap<String, String>>,
    pub node_terms: Option<Vec<NodeSelectorTerm>>,
    /// Required pod affinity; `affinity_self` lets the first pod of a group that matches its
    /// own terms go anywhere.
    pub affinity: Vec<DomainHits>,
    pub affinity_self: bool,
    pub anti: Vec<DomainHits>,
    pub existing_anti: Vec<DomainHits>,
    pub spread: Vec<Spread>,
    /// ScheduleAnyway constraints, for scoring.
    pub soft_spread: Vec<Spread>,
    /// The required node affinity of each bound PersistentVolume the pod uses.
    pub volume_terms: Vec<Vec<NodeSelectorTerm>>,
    /// Claims the pod uses that do not exist.
    pub missing_claims: Vec<String>,
}

impl PodState {
    /// Works out everything about `pod` that does not depend on the node.
    pub fn new(cache: &mut Cache, pod: Arc<Pod>) -> Self {
        let key = cache::key(&pod);
        let spec = pod.spec.clone().unwrap_or_default();
        let labels = terms::label_pairs(pod.metadata.labels.as_ref());
        let own_ns = key.0.clone();
        let node_terms = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|s| s.node_selector_terms.clone());
        let mut state = PodState {
            key,
            priority: cache::priority(&pod),
            want: fit::pod_requests(&pod),
            ports: cache::host_ports(&pod),
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            node_selector: spec.node_selector.clone(),
            node_terms,
            affinity: Vec::new(),
            affinity_self: false,
            anti: Vec::new(),
            existing_anti: Vec::new(),
            spread: Vec::new(),
            soft_spread: Vec::new(),
            volume_terms: Vec::new(),
            missing_claims: Vec::new(),
            pod: pod.clone(),
        };
        let pod_affinity = spec.affinity.as_ref().and_then(|a| a.pod_affinity.as_ref());
        let required = pod_affinity
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_deref()
            })
            .unwrap_or_default();
        let mut all_self = !required.is_empty();
        for t in required {
            let term = PodTerm::parse(t, &own_ns);
            all_self &= term.matches(&own_ns, &labels);
            state.affinity.push(hits(cache, &term));
        }
        state.affinity_self = all_self && state.affinity.iter().all(|h| !h.any());
        let anti = spec
            .affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_deref()
            })
            .unwrap_or_default();
        for t in anti {
            let term = PodTerm::parse(t, &own_ns);
            state.anti.push(hits(cache, &term));
        }
        let existing: Vec<(String, Vec<usize>)> = cache
            .anti
            .iter()
            .filter(|a| !a.per_node.is_empty() && a.term.matches(&own_ns, &labels))
            .map(|a| {
                (
                    a.term.topology_key.clone(),
                    a.per_node.keys().copied().collect(),
                )
            })
            .collect();
        for (topology_key, nodes) in existing {
            let domains = cache.domains(&topology_key);
            state.existing_anti.push(DomainHits::new(domains, nodes));
        }
        for c in spec.topology_spread_constraints.iter().flatten() {
            let mut selector = terms::label_selector(c.label_selector.as_ref()).unwrap_or_default();
            for k in c.match_label_keys.iter().flatten() {
                if let Some((_, v)) = labels.iter().find(|(lk, _)| lk == k) {
                    selector
                        .requirements
                        .push(tug_api::selector::Requirement::Equals(k.clone(), v.clone()));
                }
            }
            let honour_affinity = c.node_affinity_policy.as_deref() != Some("Ignore");
            let domains = cache.domains(&c.topology_key);
            // Nodes whose pods count: those the pod could go to by its node selector and
            // affinity (nodeAffinityPolicy Honor, the default).
            let eligible = |i: usize, cache: &Cache| {
                !honour_affinity
                    || cache.nodes[i]
                        .node
                        .as_ref()
                        .is_some_and(|n| state.node_affinity_ok(n))
            };
            let mut counts = vec![0u32; domains.values.len()];
            let mut present = vec![false; domains.values.len()];
            for (i, d) in domains.of_node.iter().enumerate() {
                if let Some(d) = d
                    && cache.nodes[i].node.is_some()
                    && eligible(i, cache)
                {
                    present[*d as usize] = true;
                }
            }
            let matching =
                cache.count_matching(&Namespaces::Only([own_ns.clone()].into()), &selector);
            for (node, n) in matching {
                if let Some(Some(d)) = domains.of_node.get(node)
                    && present[*d as usize]
                    && eligible(node, cache)
                {
                    counts[*d as usize] += n;
                }
            }
            let eligible_domains = present.iter().filter(|p| **p).count();
            let mut min = counts
                .iter()
                .zip(&present)
                .filter(|(_, p)| **p)
                .map(|(c, _)| *c)
                .min()
                .unwrap_or(0);
            if c.min_domains.is_some_and(|m| (eligible_domains as i32) < m) {
                min = 0;
            }
            let spread = Spread {
                domains,
                counts,
                min,
                max_skew: c.max_skew,
                self_match: u32::from(terms::matches(&selector, &labels)),
            };
            if c.when_unsatisfiable == "ScheduleAnyway" {
                state.soft_spread.push(spread);
            } else {
                state.spread.push(spread);
            }
        }
        state
    }

    /// Looks up the pod's claims: a bound one brings its volume's node affinity; a missing
    /// one makes the pod unschedulable (an unbound one does not, until volumes are
    /// provisioned).
    pub fn add_volumes(&mut self, storage: &Storage) {
        use kube::runtime::reflector::ObjectRef;
        let ns = self.key.0.clone();
        let claims: Vec<String> = self
            .pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .filter_map(|v| {
                v.persistent_volume_claim
                    .as_ref()
                    .map(|c| c.claim_name.clone())
            })
            .collect();
        for claim in claims {
            let Some(pvc) = storage.claims.get(&ObjectRef::new(&claim).within(&ns)) else {
                self.missing_claims.push(claim);
                continue;
            };
            let Some(volume) = pvc.spec.as_ref().and_then(|s| s.volume_name.clone()) else {
                continue;
            };
            if let Some(terms) = storage
                .volumes
                .get(&ObjectRef::new(&volume))
                .and_then(|pv| pv.spec.clone()?.node_affinity?.required)
                .map(|r| r.node_selector_terms)
            {
                self.volume_terms.push(terms);
            }
        }
    }

    /// nodeSelector and required node affinity.
    pub fn node_affinity_ok(&self, node: &Node) -> bool {
        let labels = node.metadata.labels.as_ref();
        let selector_ok = self.node_selector.as_ref().is_none_or(|sel| {
            sel.iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        });
        selector_ok
            && self
                .node_terms
                .as_ref()
                .is_none_or(|t| terms::node_terms_match(t, node))
    }

    /// Resources the node lacks for the pod, counting the requests of pods nominated there
    /// with at least its priority.
    pub fn insufficient(&self, info: &NodeInfo, freed: Option<&Resources>) -> Vec<String> {
        let mut used = info.used.clone();
        for (k, prio, r) in &info.nominated {
            if *k != self.key && *prio >= self.priority {
                used.add(r);
            }
        }
        if let Some(f) = freed {
            used.sub(f);
        }
        fit::insufficient(&self.want, &used, &info.alloc)
    }
}

fn hits(cache: &mut Cache, term: &PodTerm) -> DomainHits {
    let domains = cache.domains(&term.topology_key);
    let per_node = match &term.selector {
        Some(sel) => cache.count_matching(&term.namespaces, sel),
        None => Default::default(),
    };
    DomainHits::new(domains, per_node.into_keys())
}

/// Why a node cannot run the pod: the reasons, and whether evicting lower-priority pods could
/// change that.
#[derive(Debug, PartialEq)]
pub struct Failure {
    pub reasons: Vec<String>,
    pub resolvable: bool,
}

fn fail(reason: impl Into<String>) -> Result<(), Failure> {
    Err(Failure {
        reasons: vec![reason.into()],
        resolvable: false,
    })
}

/// Runs the filters on node `idx` (stopping at the first that fails, as kube-scheduler does).
pub fn check(state: &PodState, cache: &Cache, idx: usize) -> Result<(), Failure> {
    let info = &cache.nodes[idx];
    let Some(node) = info.node.as_deref() else {
        return fail("node(s) not found");
    };
    if info.unschedulable {
        return fail("node(s) were unschedulable");
    }
    if !info.ready {
        return fail("node(s) were not ready");
    }
    if let Some(t) = tug_api::taints::untolerated(&state.tolerations, node) {
        let value = t.value.clone().unwrap_or_default();
        return fail(format!(
            "node(s) had untolerated taint {{{}: {value}}}",
            t.key
        ));
    }
    if !state.node_affinity_ok(node) {
        return fail("node(s) didn't match Pod's node affinity/selector");
    }
    if state
        .ports
        .iter()
        .any(|p| info.ports.iter().any(|q| cache::ports_collide(p, q)))
    {
        return Err(Failure {
            reasons: vec!["node(s) didn't have free ports for the requested pod ports".into()],
            resolvable: true,
        });
    }
    let short = state.insufficient(info, None);
    if !short.is_empty() {
        return Err(Failure {
            reasons: short,
            resolvable: true,
        });
    }
    if let Some(claim) = state.missing_claims.first() {
        return fail(format!("persistentvolumeclaim \"{claim}\" not found"));
    }
    if !state
        .volume_terms
        .iter()
        .all(|t| terms::node_terms_match(t, node))
    {
        return fail("node(s) had volume node affinity conflict");
    }
    for s in &state.spread {
        let Some(d) = s.domain(idx) else {
            return fail(
                "node(s) didn't match pod topology spread constraints (missing required label)",
            );
        };
        if (s.counts[d] + s.self_match) as i64 - s.min as i64 > s.max_skew as i64 {
            return fail("node(s) didn't match pod topology spread constraints");
        }
    }
    if !state.affinity.is_empty() {
        let ok = if state.affinity_self {
            state.affinity.iter().all(|h| h.domain(idx).is_some())
        } else {
            state.affinity.iter().all(|h| h.hits(idx))
        };
        if !ok {
            return fail("node(s) didn't match pod affinity rules");
        }
    }
    if state.anti.iter().any(|h| h.hits(idx)) {
        return fail("node(s) didn't match pod anti-affinity rules");
    }
    if state.existing_anti.iter().any(|h| h.hits(idx)) {
        return fail("node(s) didn't satisfy existing pods anti-affinity rules");
    }
    Ok(())
}

/// "0/5 nodes are available: 3 Insufficient cpu, 2 node(s) had untolerated taint {a: b}.
/// preemption: ..."
pub fn message(
    nodes: usize,
    counts: &BTreeMap<String, usize>,
    preemption: &BTreeMap<String, usize>,
) -> String {
    let join = |m: &BTreeMap<String, usize>| {
        m.iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut msg = format!("0/{nodes} nodes are available: {}.", join(counts));
    if !preemption.is_empty() {
        msg.push_str(&format!(
            " preemption: 0/{nodes} nodes are available: {}.",
            join(preemption)
        ));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(v: serde_json::Value) -> Arc<Node> {
        Arc::new(serde_json::from_value(v).expect("node"))
    }

    fn ready_node(name: &str, zone: &str) -> Arc<Node> {
        node(
            json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "zone": zone}},
            "status": {"allocatable": {"cpu": "4", "memory": "4Gi", "pods": "10"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}),
        )
    }

    fn pod(v: serde_json::Value) -> Arc<Pod> {
        Arc::new(serde_json::from_value(v).expect("pod"))
    }

    fn feasible(cache: &mut Cache, p: &Arc<Pod>) -> Vec<String> {
        let state = PodState::new(cache, p.clone());
        (0..cache.nodes.len())
            .filter(|i| check(&state, cache, *i).is_ok())
            .map(|i| cache.nodes[i].name.clone())
            .collect()
    }

    #[test]
    fn taints_selectors_resources_in_order() {
        let mut c = Cache::default();
        c.set_node(node(
            json!({"metadata": {"name": "n", "labels": {"disk": "ssd"}},
            "spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]},
            "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "10"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}),
        ));
        let p = pod(
            json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": [{"name": "c",
            "resources": {"requests": {"cpu": "2"}}}], "nodeSelector": {"disk": "hdd"}}}),
        );
        let state = PodState::new(&mut c, p);
        let f = check(&state, &c, 0).expect_err("taint");
        assert_eq!(
            f.reasons,
            ["node(s) had untolerated taint {dedicated: gpu}"]
        );
        assert!(!f.resolvable);
        let tolerant = pod(
            json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": [{"name": "c",
            "resources": {"requests": {"cpu": "2"}}}],
            "tolerations": [{"key": "dedicated", "operator": "Exists"}]}}),
        );
        let state = PodState::new(&mut c, tolerant);
        let f = check(&state, &c, 0).expect_err("cpu");
        assert_eq!(f.reasons, ["Insufficient cpu"]);
        assert!(f.resolvable);
        let mut counts = BTreeMap::new();
        counts.insert("Insufficient cpu".to_string(), 3);
        assert_eq!(
            message(3, &counts, &BTreeMap::new()),
            "0/3 nodes are available: 3 Insufficient cpu."
        );
    }

    #[test]
    fn anti_affinity_and_spread() {
        let mut c = Cache::default();
        for (n, z) in [("a", "z1"), ("b", "z1"), ("c", "z2")] {
            c.set_node(ready_node(n, z));
        }
        let anti = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "web"}}}]}});
        let web = |name: &str| {
            pod(
                json!({"metadata": {"name": name, "namespace": "d", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c"}], "affinity": anti}}),
            )
        };
        c.add_pod(web("w1"), "a");
        assert_eq!(feasible(&mut c, &web("w2")), ["b", "c"]);
        // A pod without the rule is still kept off "a" by w1's rule if w1's selector picks it.
        let plain = pod(
            json!({"metadata": {"name": "x", "namespace": "d", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c"}]}}),
        );
        assert_eq!(feasible(&mut c, &plain), ["b", "c"]);

        let spread = |name: &str| {
            pod(
                json!({"metadata": {"name": name, "namespace": "d", "labels": {"app": "db"}},
            "spec": {"containers": [{"name": "c"}], "topologySpreadConstraints": [{"maxSkew": 1,
                "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app": "db"}}}]}}),
            )
        };
        c.add_pod(spread("d1"), "a");
        // z1 has one, z2 none: only z2 keeps the skew within 1.
        assert_eq!(feasible(&mut c, &spread("d2")), ["c"]);
        c.add_pod(spread("d2"), "c");
        assert_eq!(feasible(&mut c, &spread("d3")), ["a", "b", "c"]);
    }

    #[test]
    fn pod_affinity_follows_matching_pods() {
        let mut c = Cache::default();
        for (n, z) in [("a", "z1"), ("b", "z2")] {
            c.set_node(ready_node(n, z));
        }
        let near = |name: &str| {
            pod(
                json!({"metadata": {"name": name, "namespace": "d", "labels": {"app": "cache"}},
            "spec": {"containers": [{"name": "c"}], "affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "zone", "labelSelector": {"matchLabels": {"app": "cache"}}}]}}}}),
            )
        };
        // The first of the group goes anywhere; the next follow it.
        assert_eq!(feasible(&mut c, &near("c1")), ["a", "b"]);
        c.add_pod(near("c1"), "b");
        assert_eq!(feasible(&mut c, &near("c2")), ["b"]);
    }
}
