//! The resource metrics API (`metrics.k8s.io/v1beta1`, what `kubectl top` and autoscalers
//! read), served by the API server itself as metrics-server would serve it: every node's
//! kubelet is scraped at `/metrics/resource` each resolution period; CPU usage is the rate
//! between a series' last two cumulative samples, memory the latest working set, `window` the
//! time between the two samples. An object shows once two samples exist; NodeMetrics and
//! PodMetrics carry their Node's or Pod's labels, and list selectors are those objects'.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{Value, json};
use tug_api::{ApiError, Resource, meta};

use crate::registry::{ListOptions, Registry};

/// One reading of a cumulative CPU counter and a working set.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Sample {
    /// When the kubelet read it (Unix milliseconds).
    at_ms: i64,
    cpu_seconds: f64,
    memory: u64,
    /// When the container started (Unix milliseconds; 0 unknown or a node).
    started_ms: i64,
}

/// A series' last two readings.
#[derive(Clone, Copy, Debug)]
struct Series {
    previous: Option<Sample>,
    latest: Sample,
}

impl Series {
    /// The series after `next`: the old latest becomes previous unless the counter went back
    /// (a restarted container) or time did not move. A container that started within the
    /// last `fresh` has no earlier reading: as metrics-server does, it counts as having used
    /// nothing at its start, so it shows after one scrape instead of two.
    fn advance(old: Option<Series>, next: Sample, fresh: Duration) -> Series {
        let previous =
            old.map(|s| s.latest)
                .filter(|l| next.at_ms > l.at_ms && next.cpu_seconds >= l.cpu_seconds)
                .or_else(|| {
                    let age = next.at_ms - next.started_ms;
                    (next.started_ms > 0 && age >= 1000 && age <= fresh.as_millis() as i64)
                        .then_some(Sample {
                            at_ms: next.started_ms,
                            cpu_seconds: 0.0,
                            ..next
                        })
                });
        Series {
            previous,
            latest: next,
        }
    }

    /// Usage between the two readings: (timestamp ms, window ms, nanocores, bytes).
    fn usage(&self) -> Option<Usage> {
        let p = self.previous?;
        let window = self.latest.at_ms - p.at_ms;
        if window <= 0 {
            return None;
        }
        let cores = (self.latest.cpu_seconds - p.cpu_seconds) / (window as f64 / 1000.0);
        Some(Usage {
            at_ms: self.latest.at_ms,
            window_ms: window,
            nanocores: (cores * 1e9).round().max(0.0) as u64,
            memory: self.latest.memory,
        })
    }
}

/// Usage over a window.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Usage {
    at_ms: i64,
    window_ms: i64,
    nanocores: u64,
    memory: u64,
}

/// A container: namespace, pod, container name.
type ContainerKey = (String, String, String);

/// What one scrape of a node's `/metrics/resource` said.
#[derive(Debug, Default, PartialEq)]
struct Scrape {
    node: Option<Sample>,
    containers: BTreeMap<ContainerKey, Sample>,
}

/// The samples of every node and container.
#[derive(Default)]
pub struct ResourceMetrics {
    nodes: RwLock<HashMap<String, Series>>,
    /// Per node, its containers' series.
    containers: RwLock<HashMap<String, HashMap<ContainerKey, Series>>>,
}

impl ResourceMetrics {
    /// Takes in one scrape of `node`'s `/metrics/resource` text, taken every `resolution`.
    pub fn record(&self, node: &str, text: &str, resolution: Duration) {
        let scrape = parse(text);
        if let Some(sample) = scrape.node
            && let Ok(mut nodes) = self.nodes.write()
        {
            let old = nodes.get(node).copied();
            nodes.insert(
                node.to_string(),
                Series::advance(old, sample, Duration::ZERO),
            );
        }
        if let Ok(mut all) = self.containers.write() {
            let old = all.remove(node).unwrap_or_default();
            let now = scrape
                .containers
                .into_iter()
                .map(|(k, sample)| {
                    let series = Series::advance(old.get(&k).copied(), sample, resolution);
                    (k, series)
                })
                .collect();
            all.insert(node.to_string(), now);
        }
    }

    /// Forgets nodes no longer in the cluster.
    pub fn retain_nodes(&self, names: &[String]) {
        if let Ok(mut nodes) = self.nodes.write() {
            nodes.retain(|n, _| names.contains(n));
        }
        if let Ok(mut all) = self.containers.write() {
            all.retain(|n, _| names.contains(n));
        }
    }

    fn node(&self, name: &str) -> Option<Usage> {
        self.nodes.read().ok()?.get(name)?.usage()
    }

    /// A pod's containers' usage (sorted by name), once every container has two samples.
    fn pod(&self, namespace: &str, name: &str) -> Option<(Usage, Vec<(String, Usage)>)> {
        let all = self.containers.read().ok()?;
        let mut containers = Vec::new();
        for series in all.values() {
            for ((ns, pod, container), s) in series {
                if ns == namespace && pod == name {
                    containers.push((container.clone(), s.usage()?));
                }
            }
        }
        containers.sort_by(|a, b| a.0.cmp(&b.0));
        // The pod's timestamp and window are its earliest container's.
        let first = containers.iter().map(|(_, u)| *u).min_by_key(|u| u.at_ms)?;
        Some((first, containers))
    }
}

/// Parses the Prometheus text a kubelet's `/metrics/resource` serves (metric names as
/// Kubernetes' kubelet has them; samples carry millisecond timestamps).
fn parse(text: &str) -> Scrape {
    let mut out = Scrape::default();
    let mut node = (None, None, 0i64);
    let mut cpu: BTreeMap<ContainerKey, (f64, i64)> = BTreeMap::new();
    let mut memory: BTreeMap<ContainerKey, u64> = BTreeMap::new();
    let mut started: BTreeMap<ContainerKey, i64> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, labels, rest) = match line.find('{') {
            Some(open) => {
                let Some(close) = line[open..].find('}').map(|c| open + c) else {
                    continue;
                };
                (&line[..open], &line[open + 1..close], &line[close + 1..])
            }
            None => match line.split_once(' ') {
                Some((n, rest)) => (n, "", rest),
                None => continue,
            },
        };
        let mut fields = rest.split_whitespace();
        let Some(value) = fields.next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        let at = fields
            .next()
            .and_then(|t| t.parse::<i64>().ok())
            .unwrap_or_else(|| jiff::Timestamp::now().as_millisecond());
        let key = || {
            let l = labels_of(labels);
            let get = |k: &str| l.get(k).cloned().unwrap_or_default();
            (get("namespace"), get("pod"), get("container"))
        };
        match name {
            "node_cpu_usage_seconds_total" => {
                node.0 = Some(value);
                node.2 = at;
            }
            "node_memory_working_set_bytes" => node.1 = Some(value as u64),
            "container_cpu_usage_seconds_total" => {
                cpu.insert(key(), (value, at));
            }
            "container_memory_working_set_bytes" => {
                memory.insert(key(), value as u64);
            }
            "container_start_time_seconds" => {
                started.insert(key(), (value * 1000.0) as i64);
            }
            _ => {}
        }
    }
    // As metrics-server does, samples of zero are no samples.
    if let (Some(c), Some(m)) = (node.0, node.1)
        && c > 0.0
        && m > 0
    {
        out.node = Some(Sample {
            at_ms: node.2,
            cpu_seconds: c,
            memory: m,
            started_ms: 0,
        });
    }
    for (k, (c, at)) in cpu {
        if let Some(m) = memory.get(&k).copied()
            && c > 0.0
            && m > 0
        {
            let started_ms = started.get(&k).copied().unwrap_or(0);
            out.containers.insert(
                k,
                Sample {
                    at_ms: at,
                    cpu_seconds: c,
                    memory: m,
                    started_ms,
                },
            );
        }
    }
    out
}

/// `a="x",b="y"` as a map.
fn labels_of(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = text;
    while let Some(eq) = rest.find("=\"") {
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_string();
        let after = &rest[eq + 2..];
        let Some(end) = after.find('"') else { break };
        out.insert(key, after[..end].to_string());
        rest = &after[end + 1..];
    }
    out
}

/// CPU in nanocores as Kubernetes writes the quantity (`123456789n`, `5m`, `2`).
fn cpu_quantity(nanocores: u64) -> String {
    match nanocores {
        0 => "0".into(),
        n if n.is_multiple_of(1_000_000_000) => format!("{}", n / 1_000_000_000),
        n if n.is_multiple_of(1_000_000) => format!("{}m", n / 1_000_000),
        n if n.is_multiple_of(1_000) => format!("{}u", n / 1_000),
        n => format!("{n}n"),
    }
}

/// Bytes as Kubernetes writes a binary quantity (`12345Ki`, `1Mi`, `1000`).
fn memory_quantity(bytes: u64) -> String {
    const UNITS: [(&str, u64); 5] = [
        ("Pi", 1 << 50),
        ("Ti", 1 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ];
    UNITS
        .iter()
        .find(|(_, size)| bytes >= *size && bytes.is_multiple_of(*size))
        .map(|(unit, size)| format!("{}{unit}", bytes / size))
        .unwrap_or_else(|| bytes.to_string())
}

/// A duration as Go prints one (`15.012s`, `1m0s`, `500ms`).
fn go_duration(ms: i64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let seconds = |ms: i64| {
        let text = format!("{}.{:03}", ms / 1000, ms % 1000);
        format!("{}s", text.trim_end_matches('0').trim_end_matches('.'))
    };
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    match (h, m) {
        (0, 0) => seconds(rest),
        (0, m) => format!("{m}m{}", seconds(rest)),
        (h, m) => format!("{h}h{m}m{}", seconds(rest)),
    }
}

fn timestamp(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(tug_api::time::rfc3339)
        .unwrap_or_default()
}

/// The usage part of an object: timestamp, window and usage.
fn usage_fields(u: &Usage) -> (String, String, Value) {
    (
        timestamp(u.at_ms),
        go_duration(u.window_ms),
        json!({"cpu": cpu_quantity(u.nanocores), "memory": memory_quantity(u.memory)}),
    )
}

/// A NodeMetrics for `node` (a Node object), if it has usage.
fn node_metrics(m: &ResourceMetrics, node: &Value) -> Option<Value> {
    let u = m.node(meta::name(node))?;
    let (ts, window, usage) = usage_fields(&u);
    Some(json!({
        "metadata": {"name": meta::name(node), "creationTimestamp": tug_api::time::now(),
                     "labels": node.pointer("/metadata/labels").cloned().unwrap_or(json!({}))},
        "timestamp": ts, "window": window, "usage": usage,
    }))
}

/// A PodMetrics for `pod` (a Running Pod object), if its containers have usage.
fn pod_metrics(m: &ResourceMetrics, pod: &Value) -> Option<Value> {
    if pod.pointer("/status/phase").and_then(Value::as_str) != Some("Running") {
        return None;
    }
    let (first, containers) = m.pod(meta::namespace(pod), meta::name(pod))?;
    let (ts, window, _) = usage_fields(&first);
    let containers: Vec<Value> = containers
        .iter()
        .map(|(name, u)| json!({"name": name, "usage": usage_fields(u).2}))
        .collect();
    Some(json!({
        "metadata": {"name": meta::name(pod), "namespace": meta::namespace(pod),
                     "creationTimestamp": tug_api::time::now(),
                     "labels": pod.pointer("/metadata/labels").cloned().unwrap_or(json!({}))},
        "timestamp": ts, "window": window, "containers": containers,
    }))
}

/// Answers GET (one object, or a list) on `r`, a resource of metrics.k8s.io.
pub(crate) async fn answer(
    registry: &Registry,
    metrics: &ResourceMetrics,
    r: &'static Resource,
    namespace: Option<&str>,
    name: Option<&str>,
    label_selector: &str,
) -> Result<Value, ApiError> {
    let nodes_resource = r.plural == "nodes";
    let source = tug_api::catalog::lookup("", "v1", r.plural)
        .ok_or_else(|| ApiError::internal(format!("no core resource {}", r.plural)))?;
    let namespace = if nodes_resource { None } else { namespace };
    let make = |o: &Value| {
        if nodes_resource {
            node_metrics(metrics, o)
        } else {
            pod_metrics(metrics, o)
        }
    };
    let stamp = |mut o: Value| {
        let mut out = json!({"kind": r.kind, "apiVersion": r.api_version()});
        if let (Some(out), Some(o)) = (out.as_object_mut(), o.as_object_mut()) {
            out.append(o);
        }
        out
    };
    if let Some(name) = name {
        let object = registry.get(source, namespace, name).await?;
        return make(&object).map(stamp).ok_or_else(|| {
            let shown = match namespace {
                Some(ns) => format!("{ns}/{name}"),
                None => name.to_string(),
            };
            // As metrics-server words it.
            ApiError::not_found("metrics.k8s.io", &r.kind.to_lowercase(), &shown)
        });
    }
    let list = registry
        .list(
            source,
            namespace,
            &ListOptions {
                label_selector: label_selector.to_string(),
                resource_version: "0".into(),
                ..Default::default()
            },
        )
        .await?;
    let items: Vec<Value> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(make)
        .collect();
    Ok(json!({
        "kind": format!("{}List", r.kind), "apiVersion": r.api_version(),
        "metadata": {}, "items": items,
    }))
}

/// The pod annotations that set a hollow node's containers' simulated usage (each of its
/// containers uses this much; without them a container uses its requests).
pub const SIMULATED_CPU: &str = "tugboat.dev/simulated-cpu";
/// See [`SIMULATED_CPU`].
pub const SIMULATED_MEMORY: &str = "tugboat.dev/simulated-memory";

/// What a hollow node's kubelet would say at `now_ms`, had it one: each Running pod's
/// containers use the pod's simulated usage (or their requests) steadily since they started,
/// the node the sum of its pods' plus a base of 100m and 256Mi.
fn simulated_text(node: &Value, pods: &[Value], now_ms: i64) -> String {
    let since = |o: &Value, pointer: &str| {
        o.pointer(pointer)
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map_or(now_ms, |t| t.as_millisecond())
    };
    let mut out = String::new();
    let (mut node_cores, mut node_memory) = (0.1, 256.0 * 1024.0 * 1024.0);
    for pod in pods {
        if pod.pointer("/status/phase").and_then(Value::as_str) != Some("Running") {
            continue;
        }
        let annotation = |key: &str| {
            pod.pointer(&format!("/metadata/annotations/{}", key.replace('/', "~1")))
                .and_then(Value::as_str)
                .and_then(tug_api::quantity::parse)
        };
        let started = if pod.pointer("/status/startTime").is_some() {
            since(pod, "/status/startTime")
        } else {
            since(pod, "/metadata/creationTimestamp")
        };
        for c in pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let request = |r: &str| {
                c.pointer(&format!("/resources/requests/{r}"))
                    .and_then(Value::as_str)
                    .and_then(tug_api::quantity::parse)
            };
            let cores = annotation(SIMULATED_CPU)
                .or_else(|| request("cpu"))
                .unwrap_or(0.001);
            let memory = annotation(SIMULATED_MEMORY)
                .or_else(|| request("memory"))
                .unwrap_or(4.0 * 1024.0 * 1024.0);
            node_cores += cores;
            node_memory += memory;
            let labels = format!(
                "container=\"{}\",namespace=\"{}\",pod=\"{}\"",
                c["name"].as_str().unwrap_or_default(),
                meta::namespace(pod),
                meta::name(pod)
            );
            let used = cores * (now_ms - started).max(0) as f64 / 1000.0;
            out.push_str(&format!(
                "container_cpu_usage_seconds_total{{{labels}}} {used} {now_ms}\n\
                 container_memory_working_set_bytes{{{labels}}} {} {now_ms}\n\
                 container_start_time_seconds{{{labels}}} {} {now_ms}\n",
                memory as u64,
                started / 1000
            ));
        }
    }
    let up = since(node, "/metadata/creationTimestamp");
    out.push_str(&format!(
        "node_cpu_usage_seconds_total {} {now_ms}\nnode_memory_working_set_bytes {} {now_ms}\n",
        node_cores * (now_ms - up).max(1) as f64 / 1000.0,
        node_memory as u64
    ));
    out
}

/// Scrapes every node's kubelet each `resolution` into `metrics`, until the task is dropped.
/// Hollow nodes (label `node.kubernetes.io/instance-type=hollow`) have no kubelet to ask:
/// their usage is simulated from their pods ([`SIMULATED_CPU`]).
pub(crate) async fn scrape_loop(
    registry: Registry,
    kubelet: crate::kubelet::KubeletClient,
    metrics: Arc<ResourceMetrics>,
    resolution: Duration,
) {
    let mut tick = tokio::time::interval(resolution);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let Some(nodes) = tug_api::catalog::lookup("", "v1", "nodes") else {
        return;
    };
    loop {
        tick.tick().await;
        let list = match registry
            .list(
                nodes,
                None,
                &ListOptions {
                    resource_version: "0".into(),
                    ..Default::default()
                },
            )
            .await
        {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e.message, "resource metrics: listing nodes failed");
                continue;
            }
        };
        let all: Vec<&Value> = list["items"].as_array().into_iter().flatten().collect();
        let is_hollow = |n: &Value| {
            n.pointer("/metadata/labels/node.kubernetes.io~1instance-type")
                .and_then(Value::as_str)
                == Some("hollow")
        };
        let every: Vec<String> = all.iter().map(|n| meta::name(n).to_string()).collect();
        metrics.retain_nodes(&every);
        let hollow: Vec<&Value> = all.iter().copied().filter(|n| is_hollow(n)).collect();
        if !hollow.is_empty() {
            simulate(&registry, &metrics, &hollow, resolution).await;
        }
        let names: Vec<String> = all
            .iter()
            .filter(|n| !is_hollow(n))
            .map(|n| meta::name(n).to_string())
            .collect();
        let scrapes = names.iter().map(|node| {
            let (registry, kubelet) = (&registry, &kubelet);
            async move {
                let text = tokio::time::timeout(
                    resolution,
                    crate::kubelet::get_text(registry, kubelet, node, "metrics/resource"),
                )
                .await;
                (node, text)
            }
        });
        for (node, text) in futures::future::join_all(scrapes).await {
            match text {
                Ok(Ok(text)) => metrics.record(node, &text, resolution),
                Ok(Err(e)) => {
                    tracing::debug!(node = %node, error = %e.message, "resource metrics: scrape failed")
                }
                Err(_) => tracing::debug!(node = %node, "resource metrics: scrape timed out"),
            }
        }
    }
}

/// Records the simulated usage of hollow nodes from their pods.
async fn simulate(
    registry: &Registry,
    metrics: &ResourceMetrics,
    hollow: &[&Value],
    resolution: Duration,
) {
    let Some(pods) = tug_api::catalog::lookup("", "v1", "pods") else {
        return;
    };
    let list = match registry
        .list(
            pods,
            None,
            &ListOptions {
                resource_version: "0".into(),
                field_selector: "status.phase=Running".into(),
                ..Default::default()
            },
        )
        .await
    {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!(error = %e.message, "resource metrics: listing pods failed");
            return;
        }
    };
    let mut by_node: HashMap<&str, Vec<Value>> = HashMap::new();
    for pod in list["items"].as_array().into_iter().flatten() {
        if let Some(node) = pod.pointer("/spec/nodeName").and_then(Value::as_str) {
            by_node.entry(node).or_default().push(pod.clone());
        }
    }
    let now_ms = jiff::Timestamp::now().as_millisecond();
    for node in hollow {
        let pods = by_node.get(meta::name(node)).map_or(&[][..], Vec::as_slice);
        metrics.record(
            meta::name(node),
            &simulated_text(node, pods, now_ms),
            resolution,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: &str = "# HELP node_cpu_usage_seconds_total x\n\
        node_cpu_usage_seconds_total 100.5 1000000\n\
        node_memory_working_set_bytes 2097152 1000000\n\
        container_cpu_usage_seconds_total{container=\"app\",namespace=\"default\",pod=\"web\"} 2 1000000\n\
        container_memory_working_set_bytes{container=\"app\",namespace=\"default\",pod=\"web\"} 1048576 1000000\n\
        container_cpu_usage_seconds_total{container=\"idle\",namespace=\"default\",pod=\"web\"} 0 1000000\n\
        container_memory_working_set_bytes{container=\"idle\",namespace=\"default\",pod=\"web\"} 4096 1000000\n";

    #[test]
    fn the_kubelets_text_is_parsed_and_zero_samples_dropped() {
        let s = parse(FIRST);
        assert_eq!(
            s.node,
            Some(Sample {
                at_ms: 1_000_000,
                cpu_seconds: 100.5,
                memory: 2_097_152,
                started_ms: 0,
            })
        );
        assert_eq!(s.containers.len(), 1, "{s:?}");
        let app = &s.containers[&("default".into(), "web".into(), "app".into())];
        assert_eq!(app.memory, 1_048_576);
    }

    const RESOLUTION: Duration = Duration::from_secs(15);

    #[test]
    fn a_container_started_since_the_last_scrape_shows_after_one() {
        let m = ResourceMetrics::default();
        // Started 5 s before the scrape (1000 s), having used 0.5 s of CPU: 100m.
        let text = "container_cpu_usage_seconds_total{container=\"c\",namespace=\"ns\",pod=\"p\"} 0.5 1000000\n\
            container_memory_working_set_bytes{container=\"c\",namespace=\"ns\",pod=\"p\"} 8192 1000000\n\
            container_start_time_seconds{container=\"c\",namespace=\"ns\",pod=\"p\"} 995 1000000\n";
        m.record("n1", text, RESOLUTION);
        let (u, containers) = m.pod("ns", "p").expect("usage after one scrape");
        assert_eq!((u.window_ms, u.nanocores), (5_000, 100_000_000));
        assert_eq!(containers[0].0, "c");
        // One that has run for longer than a resolution waits for a second reading.
        let m = ResourceMetrics::default();
        m.record("n1", &text.replace("} 995 ", "} 900 "), RESOLUTION);
        assert!(m.pod("ns", "p").is_none());
    }

    #[test]
    fn usage_is_the_rate_between_two_scrapes() {
        let m = ResourceMetrics::default();
        m.record("n1", FIRST, RESOLUTION);
        assert_eq!(m.node("n1"), None, "one sample gives no rate");
        assert!(m.pod("default", "web").is_none());
        let second = FIRST
            .replace("100.5 1000000", "102 1015000")
            .replace("} 2 1000000", "} 2.3 1015000")
            .replace("1048576 1000000", "1048576 1015000")
            .replace("2097152 1000000", "2097152 1015000");
        m.record("n1", &second, RESOLUTION);
        let node = m.node("n1").expect("node usage");
        assert_eq!(node.window_ms, 15_000);
        assert_eq!(node.nanocores, 100_000_000); // 1.5 s of CPU over 15 s
        let (first, containers) = m.pod("default", "web").expect("pod usage");
        assert_eq!(first.at_ms, 1_015_000);
        assert_eq!(containers.len(), 1);
        assert_eq!(containers[0].1.nanocores, 20_000_000);
        // A counter that goes back (a restarted container) starts over.
        m.record("n1", FIRST, RESOLUTION);
        assert!(m.pod("default", "web").is_none());
        // A node gone from the cluster is forgotten.
        m.retain_nodes(&[]);
        assert_eq!(m.node("n1"), None);
    }

    #[test]
    fn hollow_nodes_use_what_their_pods_say_or_request() {
        let node = json!({"metadata": {"name": "h1", "creationTimestamp": "1970-01-01T00:16:00Z"}});
        let pod = |name: &str, annotations: Value| {
            json!({"metadata": {"name": name, "namespace": "ns", "annotations": annotations},
                   "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "200m", "memory": "32Mi"}}}]},
                   "status": {"phase": "Running", "startTime": "1970-01-01T00:16:30Z"}})
        };
        let pods = [
            pod("asks", json!({})),
            pod(
                "says",
                json!({SIMULATED_CPU: "750m", SIMULATED_MEMORY: "1Gi"}),
            ),
        ];
        let m = ResourceMetrics::default();
        // Two scrapes 15 s apart (pods started 30 s after the node, at 990 s).
        m.record("h1", &simulated_text(&node, &pods, 1_000_000), RESOLUTION);
        m.record("h1", &simulated_text(&node, &pods, 1_015_000), RESOLUTION);
        let (_, asks) = m.pod("ns", "asks").expect("asks");
        assert_eq!(
            (asks[0].1.nanocores, asks[0].1.memory),
            (200_000_000, 32 << 20)
        );
        let (_, says) = m.pod("ns", "says").expect("says");
        assert_eq!(
            (says[0].1.nanocores, says[0].1.memory),
            (750_000_000, 1 << 30)
        );
        let n = m.node("h1").expect("node");
        assert_eq!(n.nanocores, 1_050_000_000); // 100m base + 200m + 750m
        assert_eq!(n.memory, (256 << 20) + (32 << 20) + (1 << 30));
    }

    #[test]
    fn quantities_and_windows_are_written_as_kubernetes_writes_them() {
        assert_eq!(cpu_quantity(123_456_789), "123456789n");
        assert_eq!(cpu_quantity(123_456_000), "123456u");
        assert_eq!(cpu_quantity(5_000_000), "5m");
        assert_eq!(cpu_quantity(2_000_000_000), "2");
        assert_eq!(cpu_quantity(0), "0");
        assert_eq!(memory_quantity(12_345 * 1024), "12345Ki");
        assert_eq!(memory_quantity(1 << 20), "1Mi");
        assert_eq!(memory_quantity(1000), "1000");
        assert_eq!(go_duration(15_012), "15.012s");
        assert_eq!(go_duration(15_000), "15s");
        assert_eq!(go_duration(60_000), "1m0s");
        assert_eq!(go_duration(75_500), "1m15.5s");
        assert_eq!(go_duration(500), "500ms");
    }
}
