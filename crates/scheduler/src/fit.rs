//! Resource fit: what pods request, what nodes offer, whether one fits the other, and how full
//! a node would be.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use tug_api::quantity;

/// CPU (cores), memory and ephemeral storage (bytes), a pod count, and extended resources
/// (`example.com/gpu`) by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resources {
    pub cpu: f64,
    pub memory: f64,
    pub storage: f64,
    pub pods: f64,
    pub extended: Vec<(String, f64)>,
}

impl Resources {
    /// Adds `other`.
    pub fn add(&mut self, other: &Resources) {
        self.cpu += other.cpu;
        self.memory += other.memory;
        self.storage += other.storage;
        self.pods += other.pods;
        for (name, v) in &other.extended {
            *self.extended_mut(name) += v;
        }
    }

    /// Takes `other` away.
    pub fn sub(&mut self, other: &Resources) {
        self.cpu -= other.cpu;
        self.memory -= other.memory;
        self.storage -= other.storage;
        self.pods -= other.pods;
        for (name, v) in &other.extended {
            *self.extended_mut(name) -= v;
        }
    }

    /// Takes, per resource, the larger of this and `other`.
    fn max(&mut self, other: &Resources) {
        self.cpu = self.cpu.max(other.cpu);
        self.memory = self.memory.max(other.memory);
        self.storage = self.storage.max(other.storage);
        for (name, v) in &other.extended {
            let e = self.extended_mut(name);
            *e = e.max(*v);
        }
    }

    /// An extended resource's amount (0 when absent).
    pub fn extended(&self, name: &str) -> f64 {
        self.extended
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0.0, |(_, v)| *v)
    }

    fn extended_mut(&mut self, name: &str) -> &mut f64 {
        let i = match self.extended.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                self.extended.push((name.to_string(), 0.0));
                self.extended.len() - 1
            }
        };
        &mut self.extended[i].1
    }

    fn from_map(map: Option<&BTreeMap<String, Quantity>>) -> Self {
        let mut r = Resources::default();
        for (name, q) in map.into_iter().flatten() {
            let v = quantity::parse(&q.0).unwrap_or(0.0);
            match name.as_str() {
                "cpu" => r.cpu = v,
                "memory" => r.memory = v,
                "ephemeral-storage" => r.storage = v,
                "pods" => r.pods = v,
                other if other.contains('/') => r.extended.push((other.to_string(), v)),
                _ => {}
            }
        }
        r
    }
}

/// The resources a node lacks to take `want` on top of `used`, in Kubernetes' words
/// ("Insufficient cpu", "Too many pods").
pub fn insufficient(want: &Resources, used: &Resources, alloc: &Resources) -> Vec<String> {
    const SLACK: f64 = 1e-9;
    let mut out = Vec::new();
    if used.pods + want.pods > alloc.pods + SLACK {
        out.push("Too many pods".to_string());
    }
    for (name, w, u, a) in [
        ("cpu", want.cpu, used.cpu, alloc.cpu),
        ("memory", want.memory, used.memory, alloc.memory),
        (
            "ephemeral-storage",
            want.storage,
            used.storage,
            alloc.storage,
        ),
    ] {
        // A node that reports no ephemeral storage is not checked for it (as Kubernetes).
        if w > 0.0 && (name != "ephemeral-storage" || a > 0.0) && u + w > a + SLACK {
            out.push(format!("Insufficient {name}"));
        }
    }
    for (name, w) in &want.extended {
        if *w > 0.0 && used.extended(name) + w > alloc.extended(name) + SLACK {
            out.push(format!("Insufficient {name}"));
        }
    }
    out
}

/// What a pod requests, counted as Kubernetes does: the sum over its containers and running
/// sidecars, or what an init container needs (with the sidecars started before it) when that
/// is more, plus the pod overhead and one pod.
pub fn pod_requests(p: &Pod) -> Resources {
    let mut sum = Resources::default();
    if let Some(spec) = p.spec.as_ref() {
        let req = |c: &k8s_openapi::api::core::v1::Container| {
            Resources::from_map(c.resources.as_ref().and_then(|r| r.requests.as_ref()))
        };
        for c in &spec.containers {
            sum.add(&req(c));
        }
        let mut sidecars = Resources::default();
        let mut init_peak = Resources::default();
        for c in spec.init_containers.iter().flatten() {
            if c.restart_policy.as_deref() == Some("Always") {
                sidecars.add(&req(c));
                init_peak.max(&sidecars);
            } else {
                let mut during = req(c);
                during.add(&sidecars);
                init_peak.max(&during);
            }
        }
        sum.add(&sidecars);
        sum.max(&init_peak);
        sum.add(&Resources::from_map(spec.overhead.as_ref()));
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
    Resources::from_map(alloc)
}

/// Whether the node is Ready.
pub fn ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// LeastAllocated: the mean free share of CPU and memory after placing the pod (0..=100).
pub fn least_allocated(want: &Resources, used: &Resources, alloc: &Resources) -> f64 {
    let free = |w: f64, u: f64, a: f64| {
        if a <= 0.0 {
            0.0
        } else {
            ((a - u - w) / a).max(0.0)
        }
    };
    50.0 * (free(want.cpu, used.cpu, alloc.cpu) + free(want.memory, used.memory, alloc.memory))
}

/// BalancedAllocation: how evenly CPU and memory would be used after placing the pod
/// (100 when the two shares are equal).
pub fn balanced(want: &Resources, used: &Resources, alloc: &Resources) -> f64 {
    let share = |w: f64, u: f64, a: f64| {
        if a <= 0.0 {
            1.0
        } else {
            ((u + w) / a).min(1.0)
        }
    };
    let c = share(want.cpu, used.cpu, alloc.cpu);
    let m = share(want.memory, used.memory, alloc.memory);
    // The standard deviation of two values is half their difference.
    100.0 * (1.0 - (c - m).abs() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn res(cpu: f64, memory: f64, pods: f64) -> Resources {
        Resources {
            cpu,
            memory,
            pods,
            ..Default::default()
        }
    }

    #[test]
    fn fit_and_score() {
        let alloc = res(4.0, 16e9, 110.0);
        let used = res(3.5, 1e9, 10.0);
        assert!(insufficient(&res(0.5, 1e9, 1.0), &used, &alloc).is_empty());
        assert_eq!(
            insufficient(&res(1000.0, 0.0, 1.0), &used, &alloc),
            ["Insufficient cpu"]
        );
        assert_eq!(
            insufficient(&res(0.0, 0.0, 1.0), &res(0.0, 0.0, 110.0), &alloc),
            ["Too many pods"]
        );
        let small = res(0.5, 1e9, 1.0);
        let empty = Resources::default();
        assert!(least_allocated(&small, &empty, &alloc) > least_allocated(&small, &used, &alloc));
        assert!(balanced(&res(2.0, 8e9, 1.0), &empty, &alloc) > balanced(&small, &used, &alloc));
    }

    #[test]
    fn requests_count_init_containers_sidecars_and_overhead() {
        let pod: Pod = serde_json::from_value(json!({"spec": {
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "1", "example.com/gpu": "1"}}},
                           {"name": "b", "resources": {"requests": {"cpu": "500m"}}}],
            "initContainers": [
                {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}},
                {"name": "big", "resources": {"requests": {"cpu": "3", "memory": "1Gi"}}}],
            "overhead": {"cpu": "50m"}}}))
        .expect("pod");
        let r = pod_requests(&pod);
        // max(1 + 0.5 + 0.1 sidecar, 3 + 0.1 sidecar) + 0.05 overhead
        assert!((r.cpu - 3.15).abs() < 1e-9, "{r:?}");
        assert_eq!(r.memory, 1024.0 * 1024.0 * 1024.0);
        assert_eq!(r.extended("example.com/gpu"), 1.0);
        let node: Node =
            serde_json::from_value(json!({"status": {"allocatable": {"cpu": "4", "pods": "10"}}}))
                .expect("node");
        assert_eq!(
            insufficient(&r, &Resources::default(), &node_allocatable(&node)),
            ["Insufficient memory", "Insufficient example.com/gpu"]
        );
    }
}
