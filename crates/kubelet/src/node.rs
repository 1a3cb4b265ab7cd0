//! The real node: its capacity read from the host, registration, and the heartbeats (the Lease
//! every 10 s, the Ready and pressure conditions in the node's status).

use std::path::Path;
use std::time::Duration;
use tug_api::time::now;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::agent::AgentConfig;

/// What the host offers.
#[derive(Clone, Debug)]
pub struct Capacity {
    pub cpus: usize,
    pub memory_bytes: u64,
    pub ephemeral_bytes: u64,
}

impl Capacity {
    /// Reads the host: online CPUs, MemTotal, and the size of the filesystem holding `dir`.
    pub fn of_host(dir: &Path) -> Capacity {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines().find_map(|l| {
                    let rest = l.strip_prefix("MemTotal:")?;
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
            })
            .map_or(0, |kb| kb * 1024);
        let ephemeral_bytes = nix::sys::statvfs::statvfs(dir)
            .map(|s| s.blocks() * s.fragment_size())
            .unwrap_or(0);
        Capacity {
            cpus,
            memory_bytes,
            ephemeral_bytes,
        }
    }
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "Linux".into())
}

/// The node's status: capacity, conditions, addresses, endpoints and versions.
fn status(cfg: &AgentConfig, cap: &Capacity) -> serde_json::Value {
    let pressure = crate::pressure::pressure(
        &cfg.eviction_hard,
        &crate::pressure::Signals::of_host(&cfg.data_dir),
    );
    // Keep some memory for the system, as kubelet's eviction threshold does.
    let reserved = 100 * 1024 * 1024;
    let condition = |t: &str, status: &str, reason: &str, message: &str| {
        json!({"type": t, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now(), "lastTransitionTime": now()})
    };
    json!({"status": {
        "capacity": {"cpu": cap.cpus.to_string(), "memory": format!("{}Ki", cap.memory_bytes / 1024),
                     "pods": cfg.max_pods.to_string(), "ephemeral-storage": format!("{}Ki", cap.ephemeral_bytes / 1024)},
        "allocatable": {"cpu": cap.cpus.to_string(),
                        "memory": format!("{}Ki", cap.memory_bytes.saturating_sub(reserved) / 1024),
                        "pods": cfg.max_pods.to_string(),
                        "ephemeral-storage": format!("{}Ki", cap.ephemeral_bytes * 9 / 10 / 1024)},
        "conditions": [
            if pressure.memory {
                condition("MemoryPressure", "True", "KubeletHasInsufficientMemory", "kubelet has insufficient memory available")
            } else {
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available")
            },
            if pressure.disk {
                condition("DiskPressure", "True", "KubeletHasDiskPressure", "kubelet has disk pressure")
            } else {
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure")
            },
            if pressure.pid {
                condition("PIDPressure", "True", "KubeletHasInsufficientPID", "kubelet has insufficient PID available")
            } else {
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available")
            },
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [{"type": "InternalIP", "address": cfg.node_ip},
                      {"type": "Hostname", "address": cfg.node_name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": cfg.kubelet_port}},
        "nodeInfo": {"kubeletVersion": concat!("v1.37.0-tugboat-", env!("CARGO_PKG_VERSION")),
            "kubeProxyVersion": "", "containerRuntimeVersion": cfg.runtime_version,
            "operatingSystem": "linux", "architecture": "amd64", "osImage": os_image(),
            "kernelVersion": kernel(),
            "machineID": std::fs::read_to_string("/etc/machine-id").unwrap_or_default().trim(),
            "systemUUID": "", "bootID": std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default().trim()},
    }})
}

/// Registers the node (creating or updating it) and posts its first status.
pub async fn register(client: &kube::Client, cfg: &AgentConfig) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let identity = crate::claim::agent_identity(&cfg.data_dir);
    crate::claim::check(client, &cfg.node_name, &identity).await?;
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": cfg.node_name, "labels": {
            "kubernetes.io/hostname": cfg.node_name, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": "amd64"},
            "annotations": {crate::claim::AGENT_ANNOTATION: identity}},
    });
    let pp = PatchParams::apply("tug-kubelet").force();
    nodes
        .patch(&cfg.node_name, &pp, &Patch::Apply(&node))
        .await?;
    let cap = Capacity::of_host(&cfg.data_dir);
    nodes
        .patch_status(
            &cfg.node_name,
            &PatchParams::default(),
            &Patch::Merge(&status(cfg, &cap)),
        )
        .await?;
    tracing::info!(node = %cfg.node_name, cpus = cap.cpus, memory = cap.memory_bytes, "node registered");
    Ok(())
}

/// Renews the node's Lease and refreshes its status every `every`, until dropped.
pub async fn heartbeat(client: kube::Client, cfg: AgentConfig, every: Duration) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(client);
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": cfg.node_name},
            "spec": {"holderIdentity": cfg.node_name, "leaseDurationSeconds": 40,
                     "renewTime": tug_api::time::now_micro()},
        });
        let pp = PatchParams::apply("tug-kubelet").force();
        if let Err(e) = leases
            .patch(&cfg.node_name, &pp, &Patch::Apply(&lease))
            .await
        {
            tracing::warn!(error = %e, "renewing the node lease failed");
        }
        let cap = Capacity::of_host(&cfg.data_dir);
        if let Err(e) = nodes
            .patch_status(
                &cfg.node_name,
                &PatchParams::default(),
                &Patch::Merge(&status(&cfg, &cap)),
            )
            .await
        {
            tracing::warn!(error = %e, "updating the node status failed");
        }
    }
}
