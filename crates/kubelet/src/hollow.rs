//! Hollow nodes: kubelets without containers.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

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
}

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
        }
    }
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn now_micro() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// Registers the nodes and runs them until the task is dropped.
pub async fn run(client: kube::Client, cfg: HollowConfig) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let names: Vec<String> = (0..cfg.count)
        .map(|i| format!("{}-{i}", cfg.prefix))
        .collect();
    for (i, name) in names.iter().enumerate() {
        let node = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {
                "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": "hollow"}},
            "spec": {"podCIDR": format!("10.244.{}.0/24", i % 256)},
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
    }
    tracing::info!(count = cfg.count, prefix = %cfg.prefix, "hollow nodes registered");
    let names = Arc::new(names);
    tokio::spawn(heartbeat(client.clone(), names.clone(), cfg.heartbeat));
    play_pods(client, names, cfg).await
}

/// Renews every node's Lease.
async fn heartbeat(client: kube::Client, names: Arc<Vec<String>>, every: Duration) {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client, "kube-node-lease");
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        for name in names.iter() {
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now_micro()},
            });
            let pp = PatchParams::apply("tug-hollow-kubelet").force();
            if let Err(e) = leases.patch(name, &pp, &Patch::Apply(&lease)).await {
                tracing::debug!(node = %name, error = %e, "lease renewal failed");
            }
        }
    }
}

/// Plays the pods bound to the nodes.
async fn play_pods(
    client: kube::Client,
    names: Arc<Vec<String>>,
    cfg: HollowConfig,
) -> anyhow::Result<()> {
    let ours: HashSet<String> = names.iter().cloned().collect();
    let mut started: HashSet<(String, String)> = HashSet::new();
    let mut events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(ev) = events.next().await {
        let Ok(pod) = ev else { continue };
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        if !ours.contains(&node) || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        if phase != "Pending" && !phase.is_empty() || !started.insert((ns.clone(), name.clone())) {
            continue;
        }
        let idx = names.iter().position(|n| n == &node).unwrap_or(0);
        let ip = format!("10.244.{}.{}", idx % 256, started.len() % 250 + 2);
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let containers: Vec<serde_json::Value> = pod
            .spec
            .as_ref()
            .map(|s| {
                s.containers
                    .iter()
                    .map(|c| json!({"name": c.name, "image": c.image, "imageID": "", "ready": true,
                        "restartCount": 0, "started": true, "state": {"running": {"startedAt": now()}}}))
                    .collect()
            })
            .unwrap_or_default();
        let running = json!({"status": {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": format!("10.0.0.{}", idx % 250 + 1),
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
            started.remove(&(ns, name));
            continue;
        }
        let completes = matches!(
            pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()),
            Some("Never" | "OnFailure")
        );
        if completes {
            let after = cfg.completion;
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let done = json!({"status": {"phase": "Succeeded", "conditions": [
                    {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now()}]}});
                let _ = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&done))
                    .await;
            });
        }
    }
    Ok(())
}
