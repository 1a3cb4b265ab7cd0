//! Scores for the nodes that passed the filters, each 0..=100 and weighted as in
//! kube-scheduler's default profile: LeastAllocated and BalancedAllocation (1), preferred
//! node affinity (2), preferred taint toleration (3), preferred inter-pod affinity (2),
//! ScheduleAnyway topology spread (2), image locality (1).

use std::collections::HashMap;

use crate::cache::Cache;
use crate::filters::PodState;
use crate::fit;
use crate::terms::{self, PodTerm};

/// The weighted score of each feasible node (same order as `feasible`).
pub fn score(state: &PodState, cache: &mut Cache, feasible: &[usize]) -> Vec<f64> {
    let mut total: Vec<f64> = feasible
        .iter()
        .map(|i| {
            let n = &cache.nodes[*i];
            fit::least_allocated(&state.want, &n.used, &n.alloc)
                + fit::balanced(&state.want, &n.used, &n.alloc)
        })
        .collect();
    let mut add = |raw: Vec<f64>, weight: f64, higher_is_better: bool| {
        let (lo, hi) = raw
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        if raw.is_empty() || hi <= lo {
            return;
        }
        for (t, v) in total.iter_mut().zip(&raw) {
            let norm = (v - lo) / (hi - lo) * 100.0;
            *t += weight * if higher_is_better { norm } else { 100.0 - norm };
        }
    };
    let spec = state.pod.spec.clone().unwrap_or_default();
    let affinity = spec.affinity.clone().unwrap_or_default();
    // Preferred node affinity: the weights of the terms each node matches.
    if let Some(prefs) = affinity.node_affinity.as_ref().and_then(|a| {
        a.preferred_during_scheduling_ignored_during_execution
            .as_ref()
    }) {
        let raw = feasible
            .iter()
            .map(|i| {
                let Some(node) = cache.nodes[*i].node.as_deref() else {
                    return 0.0;
                };
                prefs
                    .iter()
                    .filter(|p| terms::node_term_matches(&p.preference, node))
                    .map(|p| f64::from(p.weight))
                    .sum()
            })
            .collect();
        add(raw, 2.0, true);
    }
    // Taints the pod would rather avoid (PreferNoSchedule) and does not tolerate.
    let tolerations = &state.tolerations;
    let raw: Vec<f64> = feasible
        .iter()
        .map(|i| {
            cache.nodes[*i]
                .node
                .as_ref()
                .and_then(|n| n.spec.as_ref())
                .and_then(|s| s.taints.as_ref())
                .into_iter()
                .flatten()
                .filter(|t| t.effect == "PreferNoSchedule")
                .filter(|t| {
                    !tolerations
                        .iter()
                        .any(|tol| tug_api::taints::tolerates(tol, t))
                })
                .count() as f64
        })
        .collect();
    add(raw, 3.0, false);
    // Preferred pod affinity (+weight per matching pod in the node's domain) and
    // anti-affinity (-weight).
    let own_ns = state.key.0.clone();
    let mut weighted: Vec<(PodTerm, f64)> = Vec::new();
    for p in affinity
        .pod_affinity
        .as_ref()
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
    {
        weighted.push((
            PodTerm::parse(&p.pod_affinity_term, &own_ns),
            f64::from(p.weight),
        ));
    }
    for p in affinity
        .pod_anti_affinity
        .as_ref()
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
    {
        weighted.push((
            PodTerm::parse(&p.pod_affinity_term, &own_ns),
            -f64::from(p.weight),
        ));
    }
    if !weighted.is_empty() {
        let mut raw = vec![0.0; feasible.len()];
        for (term, weight) in weighted {
            let Some(sel) = &term.selector else { continue };
            let domains = cache.domains(&term.topology_key);
            let mut per_domain: HashMap<u32, f64> = HashMap::new();
            for (node, c) in cache.count_matching(&term.namespaces, sel) {
                if let Some(Some(d)) = domains.of_node.get(node) {
                    *per_domain.entry(*d).or_default() += f64::from(c);
                }
            }
            for (r, i) in raw.iter_mut().zip(feasible) {
                if let Some(Some(d)) = domains.of_node.get(*i) {
                    *r += weight * per_domain.get(d).copied().unwrap_or(0.0);
                }
            }
        }
        add(raw, 2.0, true);
    }
    // ScheduleAnyway spread: fewer matching pods in the node's domains is better.
    if !state.soft_spread.is_empty() {
        let raw = feasible
            .iter()
            .map(|i| {
                state
                    .soft_spread
                    .iter()
                    .map(|s| s.domain(*i).map_or(0.0, |d| f64::from(s.counts[d])))
                    .sum()
            })
            .collect();
        add(raw, 2.0, false);
    }
    // Image locality: the node already has the pod's images.
    let images: Vec<&str> = spec
        .containers
        .iter()
        .filter_map(|c| c.image.as_deref())
        .collect();
    let raw: Vec<f64> = feasible
        .iter()
        .map(|i| {
            let have = cache.nodes[*i]
                .node
                .as_ref()
                .and_then(|n| n.status.as_ref())
                .and_then(|s| s.images.as_ref());
            let Some(have) = have else { return 0.0 };
            images
                .iter()
                .filter_map(|img| {
                    have.iter()
                        .find(|h| {
                            h.names
                                .iter()
                                .flatten()
                                .any(|n| n == img || n.ends_with(&format!("/{img}")))
                        })
                        .map(|h| h.size_bytes.unwrap_or(0) as f64)
                })
                .sum()
        })
        .collect();
    add(raw, 1.0, true);
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn preferences_pull_and_push() {
        let mut c = Cache::default();
        for (name, zone) in [("a", "z1"), ("b", "z2")] {
            c.set_node(Arc::new(
                serde_json::from_value(json!({"metadata": {"name": name,
                "labels": {"zone": zone}}, "spec": {"taints": if name == "a" {
                    json!([{"key": "soft", "effect": "PreferNoSchedule"}]) } else { json!([]) }},
                "status": {"allocatable": {"cpu": "4", "memory": "4Gi", "pods": "10"},
                    "conditions": [{"type": "Ready", "status": "True"}]}}))
                .expect("node"),
            ));
        }
        let plain: Arc<k8s_openapi::api::core::v1::Pod> = Arc::new(
            serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": [{"name": "c"}]}}))
            .expect("pod"),
        );
        let state = PodState::new(&mut c, plain);
        let s = score(&state, &mut c, &[0, 1]);
        assert!(s[1] > s[0], "the PreferNoSchedule taint pushes away: {s:?}");
        let likes_a: Arc<k8s_openapi::api::core::v1::Pod> = Arc::new(serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": [{"name": "c"}],
            "tolerations": [{"key": "soft", "operator": "Exists"}],
            "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 50, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}}]}}}})).expect("pod"));
        let state = PodState::new(&mut c, likes_a);
        let s = score(&state, &mut c, &[0, 1]);
        assert!(s[0] > s[1], "preferred node affinity pulls: {s:?}");
    }
}
