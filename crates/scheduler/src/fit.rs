//! Resource fit: what pods request, what nodes offer, whether one fits the other, and how full
//! a node would be.

use k8s_openapi::api::core::v1::{Node, Pod};
use tug_api::quantity;

/// CPU (cores), memory (bytes) and a pod count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resources {
    pub cpu: f64,
    pub memory: f64,
    pub pods: f64,
}

impl Resources {
    /// Adds `other`.
    pub fn add(&mut self, other: &Resources) {
        self.cpu += other.cpu;
        self.memory += other.memory;
        self.pods += other.pods;
    }
}

fn q(
    map: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
    name: &str,
) -> f64 {
    map.and_then(|m| m.get(name))
        .and_then(|v| quantity::parse(&v.0))
        .unwrap_or(0.0)
}

/// What a pod requests: the sum over its containers, or the largest init container when that
/// is more, plus one pod.
pub fn pod_requests(p: &Pod) -> Resources {
    let Some(spec) = p.spec.as_ref() else {
        return Resources {
            pods: 1.0,
            ..Default::default()
        };
    };
    let mut sum = Resources::default();
    for c in &spec.containers {
        let req = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        sum.cpu += q(req, "cpu");
        sum.memory += q(req, "memory");
    }
    for c in spec.init_containers.iter().flatten() {
        let req = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        sum.cpu = sum.cpu.max(q(req, "cpu"));
        sum.memory = sum.memory.max(q(req, "memory"));
    }
    sum.pods = 1.0;
    sum
}

/// What a node offers pods.
pub fn node_allocatable(n: &Node) -> Resources {
    let status = n.status.as_ref();
    let alloc = status
        .and_then(|s| s.allocatable.as_ref())
        .or(status.and_then(|s| s.capacity.as_ref()));
    Resources {
        cpu: q(alloc, "cpu"),
        memory: q(alloc, "memory"),
        pods: q(alloc, "pods"),
    }
}

/// NodeUnschedulable and readiness.
pub fn schedulable(n: &Node) -> bool {
    let unschedulable = n
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    let ready = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    !unschedulable && ready
}

/// LeastAllocated: the mean free share of CPU and memory after placing the pod (0..=1).
pub fn least_allocated(want: &Resources, used: &Resources, alloc: &Resources) -> f64 {
    let free = |w: f64, u: f64, a: f64| {
        if a <= 0.0 {
            0.0
        } else {
            ((a - u - w) / a).max(0.0)
        }
    };
    (free(want.cpu, used.cpu, alloc.cpu) + free(want.memory, used.memory, alloc.memory)) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_and_score() {
        let alloc = Resources {
            cpu: 4.0,
            memory: 16e9,
            pods: 110.0,
        };
        let used = Resources {
            cpu: 3.5,
            memory: 1e9,
            pods: 10.0,
        };
        let small = Resources {
            cpu: 0.5,
            memory: 1e9,
            pods: 1.0,
        };
        let big = Resources {
            cpu: 1000.0,
            memory: 0.0,
            pods: 1.0,
        };
        assert!(used.cpu + small.cpu <= alloc.cpu);
        assert!(used.cpu + big.cpu > alloc.cpu);
        let empty = Resources::default();
        assert!(least_allocated(&small, &empty, &alloc) > least_allocated(&small, &used, &alloc));
    }
}
