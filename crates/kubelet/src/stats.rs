//! Resource usage as the kubelet reports it: `/stats/summary` (the Summary API's JSON, what
//! metrics-server and `kubectl top` read) and `/metrics/resource` (Prometheus text), for the
//! node and each running pod and container, from the cgroups.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;
use tug_api::time::now;

use serde_json::{Value, json};
use tug_runtime::{ContainerState, Runtime};

/// Earlier CPU readings, to turn counters into rates (nanocores).
#[derive(Default)]
pub struct Rates {
    last: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Rates {
    /// The rate of `key`'s CPU counter since its last reading, in nanocores.
    fn nanocores(&self, key: &str, cpu_ns: u64) -> u64 {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let rate = match last.get(key) {
            Some((at, prev)) if now > *at && cpu_ns >= *prev => {
                ((cpu_ns - prev) as f64 / now.duration_since(*at).as_secs_f64()) as u64
            }
            _ => 0,
        };
        last.insert(key.to_string(), (now, cpu_ns));
        rate
    }
}

/// One running container's usage.
struct Sample {
    pod_uid: String,
    namespace: String,
    pod: String,
    container: String,
    cpu_ns: u64,
    memory: u64,
    /// When the container started (Unix seconds; 0 when unknown).
    started: i64,
}

fn samples(rt: &dyn Runtime) -> Vec<Sample> {
    let mut specs: HashMap<String, Option<tug_runtime::spec::SandboxSpec>> = HashMap::new();
    rt.list()
        .into_iter()
        .filter(|c| matches!(c.state, ContainerState::Running { .. }))
        .filter_map(|c| {
            let sandbox = specs
                .entry(c.spec.sandbox.clone())
                .or_insert_with(|| rt.sandbox_spec(&c.spec.sandbox))
                .clone()?;
            let u = rt.usage(&c);
            let started = match &c.state {
                ContainerState::Running { started_at, .. } => started_at
                    .parse::<jiff::Timestamp>()
                    .map_or(0, |t| t.as_second()),
                _ => 0,
            };
            Some(Sample {
                pod_uid: c.spec.sandbox.clone(),
                namespace: sandbox.namespace,
                pod: sandbox.name,
                container: c.spec.name.clone(),
                cpu_ns: u.cpu_ns,
                memory: u.memory_working_set,
                started,
            })
        })
        .collect()
}

/// The node's CPU time (ns, from /proc/stat) and memory in use (bytes, total less available).
fn node_usage() -> (u64, u64) {
    let ticks_per_s = 100u64;
    let cpu = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let line = s.lines().next()?.to_string();
            let f: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            // user nice system (idle, iowait excluded) irq softirq steal
            Some(
                [0usize, 1, 2, 5, 6, 7]
                    .iter()
                    .filter_map(|i| f.get(*i))
                    .sum::<u64>(),
            )
        })
        .map_or(0, |t| t * 1_000_000_000 / ticks_per_s);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kb = |key: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let memory = (kb("MemTotal:").saturating_sub(kb("MemAvailable:"))) * 1024;
    (cpu, memory)
}

/// The Summary API document.
pub fn summary(rt: &dyn Runtime, node: &str, rates: &Rates) -> Value {
    let t = now();
    let (node_cpu, node_mem) = node_usage();
    let mut pods: BTreeMap<String, (String, String, Vec<Value>, u64, u64)> = BTreeMap::new();
    for s in samples(rt) {
        let key = format!("{}/{}", s.pod_uid, s.container);
        let cores = rates.nanocores(&key, s.cpu_ns);
        let entry = pods
            .entry(s.pod_uid.clone())
            .or_insert_with(|| (s.namespace.clone(), s.pod.clone(), Vec::new(), 0, 0));
        entry.2.push(json!({
            "name": s.container, "startTime": t,
            "cpu": {"time": t, "usageNanoCores": cores, "usageCoreNanoSeconds": s.cpu_ns},
            "memory": {"time": t, "workingSetBytes": s.memory, "usageBytes": s.memory},
        }));
        entry.3 += s.cpu_ns;
        entry.4 += s.memory;
    }
    let pods: Vec<Value> = pods
        .into_iter()
        .map(|(uid, (ns, name, containers, cpu, mem))| {
            let cores = rates.nanocores(&uid, cpu);
            json!({
                "podRef": {"name": name, "namespace": ns, "uid": uid},
                "startTime": t,
                "containers": containers,
                "cpu": {"time": t, "usageNanoCores": cores, "usageCoreNanoSeconds": cpu},
                "memory": {"time": t, "workingSetBytes": mem, "usageBytes": mem},
            })
        })
        .collect();
    json!({
        "node": {
            "nodeName": node, "startTime": t,
            "cpu": {"time": t, "usageNanoCores": rates.nanocores("node", node_cpu), "usageCoreNanoSeconds": node_cpu},
            "memory": {"time": t, "workingSetBytes": node_mem, "usageBytes": node_mem},
        },
        "pods": pods,
    })
}

/// `/metrics/resource` in the Prometheus text format.
pub fn resource_metrics(rt: &dyn Runtime) -> String {
    let ms = jiff::Timestamp::now().as_millisecond();
    let (node_cpu, node_mem) = node_usage();
    let mut out = String::new();
    let samples = samples(rt);
    let _ = writeln!(
        out,
        "# HELP node_cpu_usage_seconds_total Cumulative cpu time consumed by the node in core-seconds\n# TYPE node_cpu_usage_seconds_total counter\nnode_cpu_usage_seconds_total {} {ms}",
        node_cpu as f64 / 1e9
    );
    let _ = writeln!(
        out,
        "# HELP node_memory_working_set_bytes Current working set of the node in bytes\n# TYPE node_memory_working_set_bytes gauge\nnode_memory_working_set_bytes {node_mem} {ms}"
    );
    let _ = writeln!(
        out,
        "# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed by the container in core-seconds\n# TYPE container_cpu_usage_seconds_total counter"
    );
    for s in &samples {
        let _ = writeln!(
            out,
            "container_cpu_usage_seconds_total{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}} {} {ms}",
            s.container,
            s.namespace,
            s.pod,
            s.cpu_ns as f64 / 1e9
        );
    }
    let _ = writeln!(
        out,
        "# HELP container_memory_working_set_bytes Current working set of the container in bytes\n# TYPE container_memory_working_set_bytes gauge"
    );
    for s in &samples {
        let _ = writeln!(
            out,
            "container_memory_working_set_bytes{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}} {} {ms}",
            s.container, s.namespace, s.pod, s.memory
        );
    }
    let _ = writeln!(
        out,
        "# HELP container_start_time_seconds Start time of the container since unix epoch in seconds\n# TYPE container_start_time_seconds gauge"
    );
    for s in samples.iter().filter(|s| s.started > 0) {
        let _ = writeln!(
            out,
            "container_start_time_seconds{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}} {} {ms}",
            s.container, s.namespace, s.pod, s.started
        );
    }
    let mut per_pod: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for s in &samples {
        let e = per_pod
            .entry((s.namespace.clone(), s.pod.clone()))
            .or_default();
        e.0 += s.cpu_ns;
        e.1 += s.memory;
    }
    let _ = writeln!(
        out,
        "# HELP pod_cpu_usage_seconds_total Cumulative cpu time consumed by the pod in core-seconds\n# TYPE pod_cpu_usage_seconds_total counter"
    );
    for ((ns, pod), (cpu, _)) in &per_pod {
        let _ = writeln!(
            out,
            "pod_cpu_usage_seconds_total{{namespace=\"{ns}\",pod=\"{pod}\"}} {} {ms}",
            *cpu as f64 / 1e9
        );
    }
    let _ = writeln!(
        out,
        "# HELP pod_memory_working_set_bytes Current working set of the pod in bytes\n# TYPE pod_memory_working_set_bytes gauge"
    );
    for ((ns, pod), (_, mem)) in &per_pod {
        let _ = writeln!(
            out,
            "pod_memory_working_set_bytes{{namespace=\"{ns}\",pod=\"{pod}\"}} {mem} {ms}"
        );
    }
    out
}
