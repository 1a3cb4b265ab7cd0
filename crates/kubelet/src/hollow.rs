//! Hollow nodes: kubelets without containers.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tug_api::time::{now, now_micro};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

/// How hollow nodes behave.
#[derive(Clone, Debug)]
pub struct HollowConfig {
    /// Node names are `<prefix>-<i>`.
    pub prefix: String,
    pub count: usize,
    pub cpu: String,
    pub memory: String,
    pub pods: String,
    /// How long a pod that runs to completion (restartPolicy Never or OnFailure) runs.
    pub completion: Duration,
    /// How often each node's Lease is renewed.
    pub heartbeat: Duration,
    /// When more than 0, nodes are spread over this many zones
    /// (`topology.kubernetes.io/zone: zone-<i % zones>`).
    pub zones: usize,
    /// Who runs these nodes (see [`crate::claim`]): another live agent holding the prefix
    /// makes this one refuse to start.
    pub identity: String,
}

/// Requests a hollow node process keeps in flight at once.
const CONCURRENCY: usize = 64;

impl Default for HollowConfig {
    fn default() -> Self {
        Self {
            prefix: "hollow".into(),
            count: 1,
            cpu: "4".into(),
            memory: "16Gi".into(),
            pods: "110".into(),
            completion: Duration::from_secs(1),
            heartbeat: Duration::from_secs(10),
            zones: 0,
            identity: format!("hollow:{}", std::process::id()),
        }
    }
}

/// Registers the nodes and runs them until the task is dropped.
pub async fn run(client: kube::Client, cfg: HollowConfig) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let names: Vec<String> = (0..cfg.count)
        .map(|i| format!("{}-{i}", cfg.prefix))
        .collect();
    if let Some(first) = names.first() {
        crate::claim::check(&client, first, &cfg.identity)
            .await
            .map_err(|e| anyhow::anyhow!("hollow prefix {}: {e}", cfg.prefix))?;
    }
    futures::stream::iter(names.clone().into_iter().enumerate())
        .map(|(i, name)| {
            let (nodes, cfg) = (nodes.clone(), cfg.clone());
            async move { register(&nodes, &cfg, i, &name).await }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<anyhow::Result<()>>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<()>>()?;
    tracing::info!(count = cfg.count, prefix = %cfg.prefix, "hollow nodes registered");
    let names = Arc::new(names);
    tokio::spawn(heartbeat(client.clone(), names.clone(), cfg.heartbeat));
    play_pods(client, names, cfg).await
}

/// Registers node `i`: the Node, then its status.
async fn register(
    nodes: &Api<Node>,
    cfg: &HollowConfig,
    i: usize,
    name: &str,
) -> anyhow::Result<()> {
    let mut labels = json!({
        "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "hollow"});
    if cfg.zones > 0 {
        labels["topology.kubernetes.io/zone"] = json!(format!("zone-{}", i % cfg.zones));
    }
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels,
            "annotations": {crate::claim::AGENT_ANNOTATION: cfg.identity}},
    });
    let pp = PatchParams::apply("tug-hollow-kubelet").force();
    nodes.patch(name, &pp, &Patch::Apply(&node)).await?;
    let status = json!({"status": {
        "capacity": {"cpu": cfg.cpu, "memory": cfg.memory, "pods": cfg.pods},
        "allocatable": {"cpu": cfg.cpu, "memory": cfg.memory, "pods": cfg.pods},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "hollow kubelet is posting ready status",
            "lastHeartbeatTime": now(), "lastTransitionTime": now()}],
        "addresses": [{"type": "InternalIP", "address": format!("10.0.{}.{}", i / 250, i % 250 + 1)},
                      {"type": "Hostname", "address": name}],
        "nodeInfo": {"kubeletVersion": "v1.37.0-tugboat-hollow", "containerRuntimeVersion": "hollow://0",
            "operatingSystem": "linux", "architecture": "amd64", "osImage": "hollow", "kernelVersion": "",
            "machineID": "", "systemUUID": "", "bootID": "", "kubeProxyVersion": ""},
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

/// Renews every node's Lease.
async fn heartbeat(client: kube::Client, names: Arc<Vec<String>>, every: Duration) {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client, "kube-node-lease");
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        futures::stream::iter(names.iter().cloned())
            .for_each_concurrent(CONCURRENCY, |name| {
                let leases = leases.clone();
                async move {
                    let lease = json!({
                        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                        "metadata": {"name": name},
                        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now_micro()},
                    });
                    let pp = PatchParams::apply("tug-hollow-kubelet").force();
                    if let Err(e) = leases.patch(&name, &pp, &Patch::Apply(&lease)).await {
                        tracing::debug!(node = %name, error = %e, "lease renewal failed");
                    }
                }
            })
            .await;
    }
}

/// Plays the pods bound to the nodes: each new one is marked Running (and, if it would run
/// to completion, Succeeded a little later), several at a time.
async fn play_pods(
    client: kube::Client,
    names: Arc<Vec<String>>,
    cfg: HollowConfig,
) -> anyhow::Result<()> {
    let index: HashMap<String, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), i))
        .collect();
    // Pods (by uid) marked Running or being marked.
    let started: Arc<Mutex<HashSet<String>>> = Arc::default();
    // Pods (by uid) whose graceful deletion is being finished.
    let deleting: Arc<Mutex<HashSet<String>>> = Arc::default();
    let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut counter = 0usize;
    let cidrs = pod_cidrs(client.clone());
    while let Some(ev) = events.next().await {
        let pod = match ev {
            Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => p,
            Ok(watcher::Event::Delete(p)) => {
                if let Some(uid) = &p.metadata.uid
                    && let Ok(mut s) = started.lock()
                {
                    s.remove(uid);
                }
                continue;
            }
            _ => continue,
        };
        let Some(idx) = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .and_then(|n| index.get(n).copied())
        else {
            continue;
        };
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if pod.metadata.deletion_timestamp.is_some() {
            // Nothing runs to stop: finish a graceful deletion at once (once per pod).
            let graceful = pod.metadata.deletion_grace_period_seconds.unwrap_or(0) > 0;
            if graceful && deleting.lock().is_ok_and(|mut d| d.insert(uid.clone())) {
                let (client, deleting) = (client.clone(), deleting.clone());
                tokio::spawn(async move {
                    crate::deletion::confirm(&client, &pod).await;
                    if let Ok(mut d) = deleting.lock() {
                        d.remove(&uid);
                    }
                });
            }
            continue;
        }
        let fresh = started.lock().is_ok_and(|mut s| s.insert(uid.clone()));
        if !phase.is_empty() && phase != "Pending" || !fresh {
            continue;
        }
        counter += 1;
        let cidr = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .and_then(|n| cidrs.lock().ok()?.get(n).cloned());
        let ip = pod_ip(cidr.as_deref(), counter)
            .unwrap_or_else(|| format!("10.244.{}.{}", idx % 256, counter % 250 + 2));
        let permit = permits.clone().acquire_owned().await?;
        let (client, started, completion) = (client.clone(), started.clone(), cfg.completion);
        tokio::spawn(async move {
            let _permit = permit;
            if !start_pod(client, &pod, idx, &ip, completion).await
                && let Ok(mut s) = started.lock()
            {
                s.remove(&uid);
            }
        });
    }
    Ok(())
}

/// The podCIDRs the node IPAM controller gave the nodes, kept current from a watch.
fn pod_cidrs(client: kube::Client) -> Arc<Mutex<HashMap<String, String>>> {
    let cidrs: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let writer = cidrs.clone();
    let api: Api<Node> = Api::all(client);
    let config = watcher::Config::default().labels("node.kubernetes.io/instance-type=hollow");
    tokio::spawn(
        watcher(api, config)
            .default_backoff()
            .applied_objects()
            .for_each(move |n| {
                if let Ok(n) = n
                    && let (Some(name), Some(cidr)) =
                        (n.metadata.name, n.spec.and_then(|s| s.pod_cidr))
                    && let Ok(mut m) = writer.lock()
                {
                    m.insert(name, cidr);
                }
                std::future::ready(())
            }),
    );
    cidrs
}

/// The `n`th pod address of an IPv4 block (skipping its network, gateway and broadcast
/// addresses).
fn pod_ip(cidr: Option<&str>, n: usize) -> Option<String> {
    let block = tug_api::cidr::Cidr::parse_block(cidr?)
        .ok()
        .filter(|c| c.prefix <= 30)?;
    let hosts = block.size() - 3;
    block.nth(2 + n as u64 % hosts).map(|ip| ip.to_string())
}

/// Marks a pod Running and Ready; one that runs to completion finishes after `completion`.
/// False when the status could not be written.
async fn start_pod(
    client: kube::Client,
    pod: &Pod,
    idx: usize,
    ip: &str,
    completion: Duration,
) -> bool {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client, &ns);
    let containers: Vec<serde_json::Value> = pod
        .spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| {
                    json!({"name": c.name, "image": c.image, "imageID": "", "ready": true,
                    "restartCount": 0, "started": true, "state": {"running": {"startedAt": now()}}})
                })
                .collect()
        })
        .unwrap_or_default();
    let running = json!({"status": {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": format!("10.0.{}.{}", idx / 250, idx % 250 + 1),
        "startTime": now(), "containerStatuses": containers,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now()},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now()},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now()},
            {"type": "Ready", "status": "True", "lastTransitionTime": now()}],
    }});
    if let Err(e) = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&running))
        .await
    {
        tracing::debug!(pod = %name, error = %e, "marking the pod running failed");
        return false;
    }
    let completes = matches!(
        pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()),
        Some("Never" | "OnFailure")
    );
    if completes {
        tokio::spawn(async move {
            tokio::time::sleep(completion).await;
            // Only a pod still running finishes: one failed or deleted meanwhile stays so.
            let running = api
                .get_opt(&name)
                .await
                .ok()
                .flatten()
                .is_some_and(|p| p.status.and_then(|s| s.phase).as_deref() == Some("Running"));
            if !running {
                return;
            }
            let done = json!({"status": {"phase": "Succeeded", "conditions": [
                {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now()}]}});
            let _ = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&done))
                .await;
        });
    }
    true
}

#[cfg(test)]
mod tests {
    use super::pod_ip;

    #[test]
    fn pod_addresses_come_from_the_block() {
        assert_eq!(
            pod_ip(Some("10.244.3.0/24"), 0).as_deref(),
            Some("10.244.3.2")
        );
        assert_eq!(
            pod_ip(Some("10.244.3.0/24"), 252).as_deref(),
            Some("10.244.3.254")
        );
        assert_eq!(
            pod_ip(Some("10.244.3.0/24"), 253).as_deref(),
            Some("10.244.3.2")
        );
        assert_eq!(pod_ip(None, 1), None);
        assert_eq!(pod_ip(Some("junk"), 1), None);
    }
}
