//! Preemption: when a pod fits nowhere, find the node where evicting the fewest and least
//! important lower-priority pods makes room, as kube-scheduler's DefaultPreemption does
//! (evict every lower-priority pod in thought, then spare the most important ones that can
//! stay).

use crate::cache::{self, Cache, HostPort, Key};
use crate::filters::PodState;
use crate::fit::Resources;

/// Pods to evict from a node so that the preemptor fits there.
#[derive(Debug, PartialEq)]
pub struct Plan {
    pub node: usize,
    pub victims: Vec<Key>,
}

/// Whether the pod may preempt at all.
pub fn allowed(state: &PodState) -> bool {
    state
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.preemption_policy.as_deref())
        != Some("Never")
}

fn fits_without(state: &PodState, cache: &Cache, node: usize, gone: &[&Key]) -> bool {
    let info = &cache.nodes[node];
    let mut freed = Resources::default();
    let mut ports: Vec<HostPort> = info.ports.clone();
    for k in gone {
        if let Some(p) = cache.pods.get(*k) {
            freed.add(&p.requests);
            for port in &p.ports {
                if let Some(i) = ports.iter().position(|x| x == port) {
                    ports.swap_remove(i);
                }
            }
        }
    }
    let ports_free = state
        .ports
        .iter()
        .all(|p| !ports.iter().any(|q| cache::ports_collide(p, q)));
    ports_free && state.insufficient(info, Some(&freed)).is_empty()
}

/// The best plan over `candidates` (nodes whose only failures eviction could fix).
pub fn plan(state: &PodState, cache: &Cache, candidates: &[usize]) -> Option<Plan> {
    let mut best: Option<((i32, i64, usize), Plan)> = None;
    for &node in candidates {
        let mut lower: Vec<(&Key, i32)> = cache.nodes[node]
            .pods
            .iter()
            .filter_map(|k| cache.pods.get(k).map(|p| (k, p.priority)))
            .filter(|(_, prio)| *prio < state.priority)
            .collect();
        let all: Vec<&Key> = lower.iter().map(|(k, _)| *k).collect();
        if lower.is_empty() || !fits_without(state, cache, node, &all) {
            continue;
        }
        // Spare the most important first.
        lower.sort_by_key(|(k, prio)| (std::cmp::Reverse(*prio), (*k).clone()));
        let mut gone: Vec<&Key> = all.clone();
        let mut victims: Vec<(&Key, i32)> = Vec::new();
        for (k, prio) in &lower {
            gone.retain(|g| g != k);
            if !fits_without(state, cache, node, &gone) {
                gone.push(k);
                victims.push((k, *prio));
            }
        }
        let rank = (
            victims.iter().map(|(_, p)| *p).max().unwrap_or(i32::MIN),
            victims.iter().map(|(_, p)| i64::from(*p)).sum::<i64>(),
            victims.len(),
        );
        if best.as_ref().is_none_or(|(r, _)| rank < *r) {
            best = Some((
                rank,
                Plan {
                    node,
                    victims: victims.into_iter().map(|(k, _)| k.clone()).collect(),
                },
            ));
        }
    }
    best.map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn pod(name: &str, cpu: &str, priority: i32) -> Arc<k8s_openapi::api::core::v1::Pod> {
        Arc::new(serde_json::from_value(json!({"metadata": {"name": name, "namespace": "d"},
            "spec": {"priority": priority, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}}))
            .expect("pod"))
    }

    #[test]
    fn evicts_the_fewest_least_important() {
        let mut c = Cache::default();
        for n in ["a", "b"] {
            c.set_node(Arc::new(
                serde_json::from_value(json!({"metadata": {"name": n},
                "status": {"allocatable": {"cpu": "4", "memory": "4Gi", "pods": "10"},
                    "conditions": [{"type": "Ready", "status": "True"}]}}))
                .expect("node"),
            ));
        }
        // a: two low pods of 2 CPU; b: one low pod of 1 and one of medium priority of 3.
        c.add_pod(pod("a1", "2", 1), "a");
        c.add_pod(pod("a2", "2", 1), "a");
        c.add_pod(pod("b1", "1", 1), "b");
        c.add_pod(pod("b2", "3", 50), "b");
        let state = PodState::new(&mut c, pod("big", "2", 100));
        let p = plan(&state, &c, &[0, 1]).expect("a plan");
        // On a one 2-CPU pod of priority 1 goes; on b the priority-50 pod would have to.
        assert_eq!(p.node, 0);
        assert_eq!(p.victims.len(), 1);
        let low = PodState::new(&mut c, pod("low", "2", 1));
        assert_eq!(plan(&low, &c, &[0, 1]), None);
    }
}
