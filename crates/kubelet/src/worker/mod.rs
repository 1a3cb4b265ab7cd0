//! One worker per pod: starts its sandbox, runs its init containers in order and then its
//! containers, restarts them as the restart policy says with the CrashLoopBackOff delays,
//! reports the pod's status, and stops everything when the pod goes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tug_api::time::now;

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::watch;
use tug_runtime::spec::SandboxSpec;
use tug_runtime::{ContainerState, Runtime};

use crate::agent::AgentConfig;
use crate::containers::{self, PodPaths};
use crate::volumes;

/// First restart delay; it doubles up to [`MAX_BACKOFF`].
const BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What a worker shares with the agent.
#[derive(Clone)]
pub struct Shared {
    pub client: kube::Client,
    pub runtime: Arc<dyn Runtime>,
    pub config: AgentConfig,
    pub recorder: Arc<tug_events::Recorder>,
    /// The pod network, once the node's podCIDR is known.
    pub network: Arc<tokio::sync::OnceCell<tug_network::PodNetwork>>,
    /// CNI plugins that give pods their network instead of the built-in bridge.
    pub cni: Option<Arc<tug_network::cni::Cni>>,
}

/// Seconds-precision RFC 3339 of a runtime time.
fn api_time(t: &str) -> String {
    t.parse::<jiff::Timestamp>()
        .map(tug_api::time::rfc3339)
        .unwrap_or_else(|_| now())
}

/// A container's place in the pod.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Init,
    Sidecar,
    App,
    /// Added to a running pod (`kubectl debug`): started once, never restarted or probed.
    Ephemeral,
}

/// The runtime's view of one container name in the pod: its latest and previous attempts.
#[derive(Default, Clone, Debug)]
struct Attempts {
    latest: Option<tug_runtime::Container>,
    previous: Option<tug_runtime::Container>,
}

/// Why a container is not running, as the status shows it.
#[derive(Clone, Debug, Default)]
struct Waiting {
    reason: String,
    message: String,
}

/// A pod worker's memory between passes.
#[derive(Default)]
pub struct PodState {
    /// Per container name: why it waits.
    waiting: HashMap<String, Waiting>,
    /// Per container name: when it may be restarted next, and the delay that led there.
    backoff: HashMap<String, (Instant, Duration)>,
    last_status: Option<Value>,
    start_time: Option<String>,
    probes: crate::probes::Probes,
    pulls: crate::images::PullBackoff,
    pod_ip: Option<String>,
    /// When API-backed volumes were last rewritten.
    volumes_refreshed: Option<Instant>,
    /// The pod ran past its activeDeadlineSeconds.
    deadline_exceeded: bool,
}

/// Runs a pod until it is gone from the API (`rx` yields None) and its containers are stopped.
pub async fn run(shared: Shared, mut rx: watch::Receiver<Option<Pod>>) {
    if let Some(p) = rx.borrow().as_ref() {
        tracing::debug!(pod = %name_of(p), "pod worker started");
    }
    let mut state = PodState::default();
    let mut last: Option<Pod> = None;
    loop {
        let current = rx.borrow_and_update().clone();
        match current {
            Some(pod) if pod.metadata.deletion_timestamp.is_none() => {
                if let Err(e) = sync(&shared, &pod, &mut state).await {
                    tracing::warn!(pod = %name_of(&pod), error = %e, "pod sync failed");
                }
                last = Some(pod);
            }
            Some(pod) => {
                // Marked for deletion: stop it, then delete it for good.
                terminate(&shared, &pod).await;
                crate::deletion::confirm(&shared.client, &pod).await;
                return;
            }
            None => {
                if let Some(pod) = last {
                    terminate(&shared, &pod).await;
                }
                return;
            }
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() {
                // The agent dropped the worker: the pod is gone.
                if let Some(pod) = last { terminate(&shared, &pod).await; }
                return;
            },
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// Records an event without holding up the pod's worker.
fn record(
    shared: &Shared,
    kind: &'static str,
    about: &tug_events::Involved,
    reason: &str,
    message: &str,
) {
    let (recorder, about) = (shared.recorder.clone(), about.clone());
    let (reason, message) = (reason.to_string(), message.to_string());
    tokio::spawn(async move { recorder.event(&about, kind, &reason, &message).await });
}

fn involved(pod: &Pod) -> tug_events::Involved {
    tug_events::Involved::pod(
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.uid.as_deref(),
    )
}

fn name_of(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// Where the pod's files are.
pub fn paths(cfg: &AgentConfig, pod: &Pod) -> PodPaths {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    PodPaths {
        dir: cfg.data_dir.join("pods").join(&uid),
        logs: cfg.data_dir.join("logs").join(format!(
            "{}_{}_{}",
            pod.metadata.namespace.as_deref().unwrap_or(""),
            pod.metadata.name.as_deref().unwrap_or(""),
            uid
        )),
    }
}

/// The containers of the pod, in start order, with their kind.
fn containers_of(pod: &Pod) -> Vec<(Kind, Container)> {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut out: Vec<(Kind, Container)> = spec
        .init_containers
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            let kind = if c.restart_policy.as_deref() == Some("Always") {
                Kind::Sidecar
            } else {
                Kind::Init
            };
            (kind, c)
        })
        .collect();
    out.extend(spec.containers.into_iter().map(|c| (Kind::App, c)));
    // Ephemeral containers carry a container's fields (and a target, read where the
    // container is built); probes, ports and lifecycle hooks are not theirs.
    out.extend(
        spec.ephemeral_containers
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| serde_json::to_value(e).ok())
            .filter_map(|v| serde_json::from_value::<Container>(v).ok())
            .map(|mut c| {
                c.liveness_probe = None;
                c.readiness_probe = None;
                c.startup_probe = None;
                c.lifecycle = None;
                c.ports = None;
                (Kind::Ephemeral, c)
            }),
    );
    out
}

/// The runtime's containers of this pod, by name.
fn attempts(rt: &dyn Runtime, uid: &str) -> BTreeMap<String, Attempts> {
    let mut by_name: BTreeMap<String, Vec<tug_runtime::Container>> = BTreeMap::new();
    for c in rt.list_in(uid) {
        by_name.entry(c.spec.name.clone()).or_default().push(c);
    }
    by_name
        .into_iter()
        .map(|(name, mut list)| {
            list.sort_by_key(|c| c.spec.attempt);
            let latest = list.pop();
            let previous = list.pop();
            // Older attempts are kept only as long as `--previous` may want them.
            for old in list {
                let _ = rt.remove_container(&old.spec.id);
            }
            (name, Attempts { latest, previous })
        })
        .collect()
}

fn restart_policy(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.clone())
        .unwrap_or_else(|| "Always".into())
}

/// Whether an exited container should run again.
fn should_restart(kind: Kind, policy: &str, exit_code: i32) -> bool {
    match kind {
        Kind::Sidecar => true,
        Kind::Init => policy != "Never" && exit_code != 0,
        Kind::App => policy == "Always" || (policy == "OnFailure" && exit_code != 0),
        Kind::Ephemeral => false,
    }
}

/// Writes the files every container of the pod mounts: /etc/hosts, hostname, resolv.conf.
fn write_pod_files(
    cfg: &AgentConfig,
    pod: &Pod,
    dir: &std::path::Path,
    pod_ip: Option<&str>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network == Some(true);
    let hostname = hostname_of(pod);
    let ip = pod_ip.map(str::to_string).unwrap_or_else(|| {
        if host_network {
            cfg.node_ip.clone()
        } else {
            String::new()
        }
    });
    let mut hosts = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    if !ip.is_empty() {
        hosts.push_str(&format!("{ip}\t{hostname}\n"));
    }
    for alias in spec.host_aliases.unwrap_or_default() {
        if let Some(names) = alias.hostnames {
            hosts.push_str(&format!("{}\t{}\n", alias.ip, names.join("\t")));
        }
    }
    std::fs::write(dir.join("etc-hosts"), hosts)?;
    std::fs::write(dir.join("etc-hostname"), format!("{hostname}\n"))?;
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolv = resolv_conf(cfg, pod, &host_resolv);
    std::fs::write(dir.join("resolv.conf"), resolv)?;
    Ok(())
}

/// A pod's resolv.conf, as its dnsPolicy and dnsConfig say: the cluster DNS with the
/// Kubernetes search path and `ndots:5` (ClusterFirst; with hostNetwork only for
/// ClusterFirstWithHostNet), the node's own (Default), or nothing but dnsConfig (None); then
/// dnsConfig's servers and searches appended and its options merged by name.
pub fn resolv_conf(cfg: &AgentConfig, pod: &Pod, host_resolv: &str) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network == Some(true);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let words = |key: &str| -> Vec<String> {
        host_resolv
            .lines()
            .filter_map(|l| l.trim().strip_prefix(key))
            .filter(|rest| rest.starts_with([' ', '\t']))
            .flat_map(|rest| rest.split_whitespace().map(String::from))
            .collect()
    };
    let (mut servers, mut searches, mut options) = match policy {
        "None" => (Vec::new(), Vec::new(), Vec::new()),
        "Default" => (words("nameserver"), words("search"), words("options")),
        "ClusterFirst" if host_network => (words("nameserver"), words("search"), words("options")),
        _ => {
            let ns = pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let d = &cfg.cluster_domain;
            let mut search = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()];
            search.extend(words("search"));
            (
                vec![cfg.cluster_dns.clone()],
                search,
                vec!["ndots:5".to_string()],
            )
        }
    };
    if let Some(c) = &spec.dns_config {
        servers.extend(c.nameservers.iter().flatten().cloned());
        searches.extend(c.searches.iter().flatten().cloned());
        for o in c.options.iter().flatten() {
            let Some(name) = o.name.as_deref() else {
                continue;
            };
            options.retain(|x| x.split(':').next() != Some(name));
            options.push(match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name.to_string(),
            });
        }
    }
    let mut seen = std::collections::HashSet::new();
    searches.retain(|s| seen.insert(s.clone()));
    servers.dedup();
    servers.truncate(3);
    searches.truncate(32);
    let mut out = String::new();
    if !searches.is_empty() {
        out.push_str(&format!("search {}\n", searches.join(" ")));
    }
    for s in &servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

fn hostname_of(pod: &Pod) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    spec.hostname
        .filter(|h| !h.is_empty())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default()
        .chars()
        .take(63)
        .collect()
}

/// One pass over a pod: make the runtime match it, then report its status.
async fn sync(shared: &Shared, pod: &Pod, state: &mut PodState) -> anyhow::Result<()> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let cfg = &shared.config;
    let rt = shared.runtime.clone();
    let paths = paths(cfg, pod);
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    // A finished pod runs nothing more.
    let finished = phase == "Succeeded" || phase == "Failed";
    if state.start_time.is_none() {
        state.start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref().map(|t| t.0.to_string()))
            .or_else(|| Some(now()));
    }
    if !finished {
        let spec = pod.spec.clone().unwrap_or_default();
        let sandbox = SandboxSpec {
            uid: uid.clone(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            hostname: hostname_of(pod),
            host_network: spec.host_network == Some(true),
            host_ipc: spec.host_ipc == Some(true),
            sysctls: spec
                .security_context
                .and_then(|s| s.sysctls)
                .unwrap_or_default()
                .into_iter()
                .map(|s| (s.name, s.value))
                .collect(),
        };
        let host_network = sandbox.host_network;
        if let Err(message) = check_sysctls(&sandbox) {
            record(
                shared,
                "Warning",
                &involved(pod),
                "SysctlForbidden",
                &message,
            );
            return report(shared, pod, state, &BTreeMap::new(), Some(message)).await;
        }
        let rt2 = rt.clone();
        let t0 = Instant::now();
        let pid = match tokio::task::spawn_blocking(move || rt2.run_sandbox(&sandbox)).await? {
            Ok(pid) => pid,
            Err(e) => {
                record(
                    shared,
                    "Warning",
                    &involved(pod),
                    "FailedCreatePodSandBox",
                    &format!("Failed to create pod sandbox: {e:#}"),
                );
                return report(shared, pod, state, &BTreeMap::new(), Some(format!("{e:#}"))).await;
            }
        };
        let t_sandbox = t0.elapsed();
        if !host_network && state.pod_ip.is_none() {
            // A CRI runtime's own network (its CNI configuration) may have given the IP.
            let (rt2, uid2) = (rt.clone(), uid.clone());
            state.pod_ip = tokio::task::spawn_blocking(move || rt2.sandbox_ip(&uid2)).await?;
        }
        if !host_network && state.pod_ip.is_none() {
            match attach_network(shared, pod, pid).await {
                Ok(ip) => state.pod_ip = Some(ip.to_string()),
                Err(e) => {
                    record(
                        shared,
                        "Warning",
                        &involved(pod),
                        "FailedCreatePodSandBox",
                        &format!("Failed to set up the pod's network: {e:#}"),
                    );
                    return report(shared, pod, state, &BTreeMap::new(), Some(format!("{e:#}")))
                        .await;
                }
            }
        }
        write_pod_files(cfg, pod, &paths.dir, state.pod_ip.as_deref())?;
        tracing::debug!(pod = %name_of(pod), sandbox = ?t_sandbox, network = ?(t0.elapsed() - t_sandbox), "sandbox ready");
    }
    let deadline = pod.spec.as_ref().and_then(|s| s.active_deadline_seconds);
    if !finished
        && !state.deadline_exceeded
        && let (Some(limit), Some(start)) = (
            deadline,
            state
                .start_time
                .as_deref()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok()),
        )
        && jiff::Timestamp::now().as_second() - start.as_second() >= limit
    {
        state.deadline_exceeded = true;
        record(
            shared,
            "Normal",
            &involved(pod),
            "DeadlineExceeded",
            "Pod was active on the node longer than the specified deadline",
        );
    }
    let mut seen = attempts(rt.as_ref(), &uid);
    if !finished && !state.deadline_exceeded {
        run_containers(shared, pod, state, &mut seen, &paths).await?;
        seen = attempts(rt.as_ref(), &uid);
        run_probes(shared, pod, state, &seen).await;
        // configMap, secret and downward API updates reach mounted volumes within seconds.
        if state
            .volumes_refreshed
            .is_none_or(|t| t.elapsed() > Duration::from_secs(2))
        {
            state.volumes_refreshed = Some(Instant::now());
            volumes::refresh(&shared.client, pod, &paths.dir).await;
        }
    }
    report(shared, pod, state, &seen, None).await?;
    // A finished pod keeps nothing running: its sidecars stop once the app containers are done.
    let terminal = state
        .last_status
        .as_ref()
        .and_then(|s| s["phase"].as_str())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    let still_running: Vec<String> = seen
        .values()
        .filter_map(|a| a.latest.as_ref())
        .filter(|l| matches!(l.state, ContainerState::Running { .. }))
        .map(|l| l.spec.id.clone())
        .collect();
    if terminal && !still_running.is_empty() {
        let grace = pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
            .max(0) as u64;
        stop_hooks(shared, pod, grace).await;
        let rt = shared.runtime.clone();
        tokio::task::spawn_blocking(move || {
            std::thread::scope(|s| {
                for id in &still_running {
                    let rt = &rt;
                    s.spawn(move || rt.stop_container(id, Duration::from_secs(grace)));
                }
            })
        })
        .await?;
    }
    Ok(())
}

/// The sysctls any pod may set (Kubernetes' safe set); they are namespaced, so they are set
/// in the pod's own namespaces only.
const SAFE_SYSCTLS: [&str; 10] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// Refuses sysctls outside the safe set, and any a pod sharing the node's namespaces would
/// set on the node itself.
fn check_sysctls(sandbox: &SandboxSpec) -> Result<(), String> {
    for (name, _) in &sandbox.sysctls {
        if !SAFE_SYSCTLS.contains(&name.as_str()) {
            return Err(format!(
                "forbidden sysctl: \"{name}\" is not in the safe set the node allows"
            ));
        }
        let shared_with_node = if name.starts_with("net.") {
            sandbox.host_network
        } else {
            sandbox.host_ipc
        };
        if shared_with_node {
            return Err(format!(
                "forbidden sysctl: \"{name}\" would change the node, whose namespace the pod shares"
            ));
        }
    }
    Ok(())
}

/// The node's pod network, set up on first use once the node has a podCIDR.
pub(crate) async fn network(shared: &Shared) -> anyhow::Result<&tug_network::PodNetwork> {
    shared
        .network
        .get_or_try_init(|| async {
            let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(shared.client.clone());
            let node = nodes.get(&shared.config.node_name).await?;
            let cidr = node
                .spec
                .and_then(|s| s.pod_cidr)
                .ok_or_else(|| anyhow::anyhow!("the node has no podCIDR yet (NetworkNotReady)"))?;
            let net = tug_network::PodNetwork::new(
                &cidr,
                &shared.config.bridge,
                &shared.config.data_dir.join("network"),
            )
            .await?;
            let cluster: tug_network::Cidr = shared.config.cluster_cidr.parse()?;
            let service: tug_network::Cidr = shared.config.service_cidr.parse()?;
            if let Err(e) = net.enable_egress(cluster, &[cluster, service]).await {
                // Pods on the node still reach each other and the node.
                tracing::warn!(error = %format!("{e:#}"), "pods cannot reach beyond the pod range");
            }
            if shared.config.overlay {
                let node_ip: std::net::Ipv4Addr = shared.config.node_ip.parse()?;
                let mac = net.enable_overlay(node_ip).await?;
                // Other nodes find this node's overlay device by its MAC.
                let patch = json!({"metadata": {"annotations": {
                    tug_network::vxlan::MAC_ANNOTATION: tug_network::vxlan::format_mac(&mac)
                }}});
                nodes
                    .patch(
                        &shared.config.node_name,
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?;
            }
            Ok(net)
        })
        .await
}

/// The node's pod network, waiting until the node has a podCIDR (for the node's network
/// services: the Service proxy, routes, NetworkPolicy).
pub(crate) async fn network_when_ready(shared: &Shared) -> &tug_network::PodNetwork {
    loop {
        match network(shared).await {
            Ok(n) => return n,
            Err(e) => {
                tracing::debug!(error = %format!("{e:#}"), "waiting for the pod network");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Connects a pod's sandbox to the pod network (the CNI plugins when configured, else the
/// built-in bridge); returns its address.
async fn attach_network(
    shared: &Shared,
    pod: &Pod,
    pid: i32,
) -> anyhow::Result<std::net::Ipv4Addr> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if let Some(cni) = shared.cni.clone() {
        let pod = pod.clone();
        return tokio::task::spawn_blocking(move || {
            let ports = host_ports(&pod);
            cni.add(
                &uid,
                std::path::Path::new(&format!("/proc/{pid}/ns/net")),
                &pod_ref(&pod),
                &ports,
            )
        })
        .await?;
    }
    network(shared).await?.attach(&uid, pid).await
}

/// The pod's identity as CNI plugins are told it.
fn pod_ref(pod: &Pod) -> tug_network::cni::PodRef<'_> {
    tug_network::cni::PodRef {
        namespace: pod.metadata.namespace.as_deref().unwrap_or("default"),
        name: pod.metadata.name.as_deref().unwrap_or(""),
        uid: pod.metadata.uid.as_deref().unwrap_or(""),
    }
}

/// The hostPorts of a pod's containers, for the portmap plugin.
fn host_ports(pod: &Pod) -> Vec<tug_network::cni::PortMapping> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            Some(tug_network::cni::PortMapping {
                host_port: u16::try_from(p.host_port?).ok().filter(|h| *h != 0)?,
                container_port: u16::try_from(p.container_port).ok()?,
                protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
            })
        })
        .collect()
}

/// When a runtime timestamp was, as an Instant.
fn instant_of(t: &str) -> Instant {
    let ago = t
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| jiff::Timestamp::now().duration_since(t))
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or_default();
    Instant::now().checked_sub(ago).unwrap_or_else(Instant::now)
}

/// Runs the probes that are due on running containers, and restarts those whose liveness or
/// startup probe failed.
async fn run_probes(
    shared: &Shared,
    pod: &Pod,
    state: &mut PodState,
    seen: &BTreeMap<String, Attempts>,
) {
    use crate::probes::Kind as Probe;
    let live: std::collections::HashSet<String> = seen
        .values()
        .filter_map(|a| a.latest.as_ref().map(|l| l.spec.id.clone()))
        .collect();
    state.probes.retain(&live);
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let pod_ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default();
    for (kind, c) in containers_of(pod) {
        if kind == Kind::Init {
            continue;
        }
        let Some(latest) = seen.get(&c.name).and_then(|a| a.latest.as_ref()) else {
            continue;
        };
        let ContainerState::Running { started_at, .. } = &latest.state else {
            continue;
        };
        let started = instant_of(started_at);
        let id = latest.spec.id.clone();
        let mut checks = Vec::new();
        match &c.startup_probe {
            Some(p) if state.probes.result(&id, Probe::Startup) != Some(true) => {
                checks.push((Probe::Startup, p.clone()))
            }
            _ => {
                if let Some(p) = &c.liveness_probe {
                    checks.push((Probe::Liveness, p.clone()));
                }
                if let Some(p) = &c.readiness_probe {
                    checks.push((Probe::Readiness, p.clone()));
                }
            }
        }
        for (probe_kind, probe) in checks {
            let probe = crate::probes::with_named_ports(&probe, &c);
            let Some(outcome) = state
                .probes
                .run(
                    &shared.runtime,
                    &uid,
                    &pod_ip,
                    &id,
                    probe_kind,
                    &probe,
                    started,
                )
                .await
            else {
                continue;
            };
            let about = involved(pod).field(&container_field(pod, &c.name));
            record(
                shared,
                "Warning",
                &about,
                "Unhealthy",
                &format!("{} probe failed: {}", outcome.kind.name(), outcome.message),
            );
            if outcome.settled && outcome.kind != Probe::Readiness {
                record(
                    shared,
                    "Normal",
                    &about,
                    "Killing",
                    &format!(
                        "Container {} failed {} probe, will be restarted",
                        c.name,
                        outcome.kind.name().to_lowercase()
                    ),
                );
                let grace = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
                    .unwrap_or(30)
                    .max(0) as u64;
                let rt = shared.runtime.clone();
                let id = id.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    rt.stop_container(&id, Duration::from_secs(grace))
                })
                .await;
                break;
            }
        }
    }
}

/// Starts what should run now, in order.
async fn run_containers(
    shared: &Shared,
    pod: &Pod,
    state: &mut PodState,
    seen: &mut BTreeMap<String, Attempts>,
    paths: &PodPaths,
) -> anyhow::Result<()> {
    let policy = restart_policy(pod);
    let mut volumes_ready: Option<volumes::Mounted> = None;
    for (kind, c) in containers_of(pod) {
        let a = seen.get(&c.name).cloned().unwrap_or_default();
        let start = match &a.latest {
            None => true,
            Some(latest) => match &latest.state {
                ContainerState::Running { .. } | ContainerState::Unknown => false,
                ContainerState::Exited(exit) => {
                    if should_restart(kind, &policy, exit.exit_code) {
                        // Backoff: each restart waits twice as long, from 10 s up to 5 min,
                        // reset after 10 minutes of running well.
                        let ran = exit
                            .finished_at
                            .parse::<jiff::Timestamp>()
                            .ok()
                            .zip(exit.started_at.parse::<jiff::Timestamp>().ok())
                            .map(|(f, s)| f.as_second() - s.as_second())
                            .unwrap_or(0);
                        let now = Instant::now();
                        match state.backoff.get(&c.name).copied() {
                            Some((until, delay)) if now < until => {
                                state.waiting.insert(
                                    c.name.clone(),
                                    Waiting {
                                        reason: "CrashLoopBackOff".into(),
                                        message: format!(
                                            "back-off {}s restarting failed container={} pod={}_{}({})",
                                            delay.as_secs(),
                                            c.name,
                                            pod.metadata.name.as_deref().unwrap_or(""),
                                            pod.metadata.namespace.as_deref().unwrap_or(""),
                                            pod.metadata.uid.as_deref().unwrap_or("")
                                        ),
                                    },
                                );
                                false
                            }
                            previous => {
                                // Restart now; the next restart waits twice as long.
                                let next = match previous {
                                    Some((_, d)) if ran < 600 => (d * 2).min(MAX_BACKOFF),
                                    _ => BACKOFF,
                                };
                                state.backoff.insert(c.name.clone(), (now + next, next));
                                true
                            }
                        }
                    } else {
                        false
                    }
                }
            },
        };
        if start {
            if volumes_ready.is_none() {
                match volumes::setup(&shared.client, pod, &paths.dir).await {
                    Ok(v) => volumes_ready = Some(v),
                    Err(e) => {
                        record(shared, "Warning", &involved(pod), "FailedMount", &e.0);
                        state.waiting.insert(
                            c.name.clone(),
                            Waiting {
                                reason: "ContainerCreating".into(),
                                message: e.0.clone(),
                            },
                        );
                        return Ok(());
                    }
                }
            }
            let vols = volumes_ready.clone().unwrap_or_default();
            let attempt = a.latest.as_ref().map_or(0, |l| l.spec.attempt + 1);
            let t0 = Instant::now();
            start_container(shared, pod, state, &c, &vols, paths, attempt).await;
            tracing::debug!(pod = %name_of(pod), container = %c.name, took = ?t0.elapsed(), "container started");
            *seen = attempts(
                shared.runtime.as_ref(),
                pod.metadata.uid.as_deref().unwrap_or(""),
            );
        }
        // Ordering: an init container must finish, a sidecar must have started, before the
        // next one starts.
        let now_state = seen
            .get(&c.name)
            .and_then(|a| a.latest.clone())
            .map(|c| c.state);
        match kind {
            Kind::Init => match now_state {
                Some(ContainerState::Exited(e)) if e.exit_code == 0 => continue,
                _ => return Ok(()),
            },
            Kind::Sidecar => match now_state {
                Some(ContainerState::Running { .. }) => continue,
                _ => return Ok(()),
            },
            Kind::App | Kind::Ephemeral => continue,
        }
    }
    Ok(())
}

async fn start_container(
    shared: &Shared,
    pod: &Pod,
    state: &mut PodState,
    c: &Container,
    vols: &volumes::Mounted,
    paths: &PodPaths,
    attempt: u32,
) {
    let about = involved(pod).field(&container_field(pod, &c.name));
    let rt = shared.runtime.clone();
    let events = |kind: &'static str, reason: &str, message: &str| {
        record(shared, kind, &about, reason, message)
    };
    let image = match state.pulls.ensure(shared, pod, c, &events).await {
        crate::images::Ensure::Ready(i) => i,
        crate::images::Ensure::Waiting(reason, message) => {
            state.waiting.insert(
                c.name.clone(),
                Waiting {
                    reason: reason.into(),
                    message,
                },
            );
            return;
        }
    };
    let node = (
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        crate::node::Capacity::of_host(&shared.config.data_dir).memory_bytes,
    );
    let spec = match containers::build(
        &shared.client,
        pod,
        c,
        &image,
        shared.runtime.as_ref(),
        vols,
        paths,
        attempt,
        node,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            record(
                shared,
                "Warning",
                &about,
                "Failed",
                &format!("Error: {}", e.0),
            );
            state.waiting.insert(
                c.name.clone(),
                Waiting {
                    reason: "CreateContainerConfigError".into(),
                    message: e.0,
                },
            );
            return;
        }
    };
    let started = tokio::task::spawn_blocking(move || rt.start_container(spec)).await;
    match started {
        Ok(Ok(id)) => {
            if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
                let (ok, message) = crate::probes::run_hook(
                    &shared.runtime,
                    pod.metadata.uid.as_deref().unwrap_or(""),
                    state.pod_ip.as_deref().unwrap_or(""),
                    &id,
                    &crate::probes::hook_with_named_ports(hook, c),
                    Duration::from_secs(30),
                )
                .await;
                if !ok {
                    let msg = format!("PostStartHook failed: {message}");
                    record(shared, "Warning", &about, "FailedPostStartHook", &msg);
                    let rt = shared.runtime.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        rt.stop_container(&id, Duration::from_secs(2))
                    })
                    .await;
                    return;
                }
            }
            state.waiting.remove(&c.name);
            record(
                shared,
                "Normal",
                &about,
                "Created",
                &format!("Created container {}", c.name),
            );
            record(
                shared,
                "Normal",
                &about,
                "Started",
                &format!("Started container {}", c.name),
            );
        }
        Ok(Err(e)) => {
            let msg = format!("Error: failed to start container \"{}\": {e}", c.name);
            record(shared, "Warning", &about, "Failed", &msg);
            // The attempt is recorded as terminated with StartError; the restart policy decides
            // what comes next, as for any other exit.
            state.waiting.remove(&c.name);
        }
        Err(e) => tracing::error!(error = %e, "the start task failed"),
    }
}

fn container_field(pod: &Pod, name: &str) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let init = spec
        .init_containers
        .unwrap_or_default()
        .iter()
        .position(|c| c.name == name);
    match init {
        Some(i) => format!("spec.initContainers{{{name}}}").replace("{i}", &i.to_string()),
        None => format!("spec.containers{{{name}}}"),
    }
}

/// The status of one container.
/// A finished run's termination message: the file the container wrote at its
/// terminationMessagePath (at most 4096 bytes), else with FallbackToLogsOnError and a failure
/// the end of its log (at most 80 lines and 2048 bytes), else the runtime's message.
fn termination_message(
    c: &Container,
    run: &tug_runtime::Container,
    exit: &tug_runtime::state::Exit,
    pod_dir: &std::path::Path,
) -> String {
    let file = containers::termination_file(pod_dir, &run.spec.name, run.spec.attempt);
    let mut msg = std::fs::read(&file)
        .map(|mut b| {
            b.truncate(4096);
            String::from_utf8_lossy(&b).to_string()
        })
        .unwrap_or_default();
    if msg.is_empty()
        && exit.exit_code != 0
        && c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
    {
        let tail = tug_runtime::logs::read(
            &run.spec.log_path,
            &tug_runtime::logs::ReadOptions {
                tail: Some(80),
                ..Default::default()
            },
        )
        .unwrap_or_default();
        let start = tail.len().saturating_sub(2048);
        msg = String::from_utf8_lossy(&tail[start..]).to_string();
    }
    if msg.is_empty() {
        exit.message.clone()
    } else {
        msg
    }
}

/// What every container status of a pod is built from besides the container's own runs.
struct StatusContext<'a> {
    probes: &'a crate::probes::Probes,
    pod_dir: &'a std::path::Path,
    /// The runtime's name, which prefixes container IDs (`tugboat://`, `containerd://`).
    runtime: &'a str,
}

fn container_status(
    c: &Container,
    a: Option<&Attempts>,
    waiting: Option<&Waiting>,
    image_ref: &str,
    kind: Kind,
    ctx: &StatusContext,
) -> Value {
    let StatusContext {
        probes,
        pod_dir,
        runtime,
    } = ctx;
    let image = c.image.clone().unwrap_or_default();
    let terminated = |e: &tug_runtime::state::Exit, run: &tug_runtime::Container| {
        let mut t = json!({"exitCode": e.exit_code, "reason": e.reason,
            "startedAt": api_time(&e.started_at), "finishedAt": api_time(&e.finished_at),
            "containerID": format!("{runtime}://{}", run.spec.id)});
        if let Some(s) = e.signal {
            t["signal"] = json!(s);
        }
        let message = termination_message(c, run, e, pod_dir);
        if !message.is_empty() {
            t["message"] = json!(message);
        }
        t
    };
    let mut status = json!({"name": c.name, "image": image, "imageID": image_ref,
        "restartCount": a.and_then(|a| a.latest.as_ref()).map_or(0, |l| l.spec.attempt), "ready": false, "started": false,
        "state": {"waiting": {"reason": "ContainerCreating"}}});
    if let Some(latest) = a.and_then(|a| a.latest.as_ref()) {
        status["containerID"] = json!(format!("{runtime}://{}", latest.spec.id));
        match &latest.state {
            ContainerState::Running { started_at, .. } => {
                use crate::probes::Kind as Probe;
                let id = &latest.spec.id;
                status["state"] = json!({"running": {"startedAt": api_time(started_at)}});
                let started =
                    c.startup_probe.is_none() || probes.result(id, Probe::Startup) == Some(true);
                let ready = started
                    && (c.readiness_probe.is_none()
                        || probes.result(id, Probe::Readiness) == Some(true));
                status["started"] = json!(started);
                status["ready"] = json!(kind != Kind::Init && ready);
            }
            ContainerState::Exited(e) => {
                status["state"] = json!({"terminated": terminated(e, latest)});
            }
            ContainerState::Unknown => {}
        }
        if let Some(prev) = a.and_then(|a| a.previous.as_ref())
            && let ContainerState::Exited(e) = &prev.state
        {
            status["lastState"] = json!({"terminated": terminated(e, prev)});
        }
    }
    if let Some(w) = waiting {
        let running = status["state"].get("running").is_some();
        if !running {
            // The last run's end moves to lastState while the container waits to run again.
            if let Some(t) = status["state"].get("terminated").cloned() {
                status["lastState"] = json!({"terminated": t});
            }
            let mut wj = json!({"reason": w.reason});
            if !w.message.is_empty() {
                wj["message"] = json!(w.message);
            }
            status["state"] = json!({"waiting": wj});
        }
    }
    status
}

/// Computes and writes the pod's status when it changed.
async fn report(
    shared: &Shared,
    pod: &Pod,
    state: &mut PodState,
    seen: &BTreeMap<String, Attempts>,
    sandbox_error: Option<String>,
) -> anyhow::Result<()> {
    let policy = restart_policy(pod);
    let mut init_statuses = Vec::new();
    let mut app_statuses = Vec::new();
    let mut ephemeral_statuses = Vec::new();
    let mut initialized = true;
    let mut all_app_ready = true;
    let mut app_running = 0;
    let mut app_succeeded = 0;
    let mut app_failed = 0;
    let mut app_total = 0;
    let mut init_failed = false;
    for (kind, c) in containers_of(pod) {
        let a = seen.get(&c.name);
        let image_ref = a
            .and_then(|a| a.latest.as_ref())
            .and_then(|l| shared.runtime.find_image(&l.spec.image_id))
            .map(|i| i.repo_digests.first().cloned().unwrap_or(i.id))
            .unwrap_or_default();
        let s = container_status(
            &c,
            a,
            state.waiting.get(&c.name),
            &image_ref,
            kind,
            &StatusContext {
                probes: &state.probes,
                pod_dir: &paths(&shared.config, pod).dir,
                runtime: shared
                    .config
                    .runtime_version
                    .split("://")
                    .next()
                    .unwrap_or("tugboat"),
            },
        );
        let latest = a.and_then(|a| a.latest.as_ref()).map(|l| &l.state);
        match kind {
            Kind::Init => {
                let done = matches!(latest, Some(ContainerState::Exited(e)) if e.exit_code == 0);
                if !done {
                    initialized = false;
                }
                if let Some(ContainerState::Exited(e)) = latest
                    && e.exit_code != 0
                    && policy == "Never"
                {
                    init_failed = true;
                }
                init_statuses.push(s);
            }
            Kind::Sidecar => {
                if !matches!(latest, Some(ContainerState::Running { .. })) {
                    initialized = false;
                }
                init_statuses.push(s);
            }
            Kind::App => {
                app_total += 1;
                match latest {
                    Some(ContainerState::Running { .. }) => app_running += 1,
                    Some(ContainerState::Exited(e)) => {
                        if e.exit_code == 0 {
                            app_succeeded += 1
                        } else {
                            app_failed += 1
                        }
                    }
                    _ => {}
                }
                if s["ready"] != json!(true) {
                    all_app_ready = false;
                }
                app_statuses.push(s);
            }
            Kind::Ephemeral => ephemeral_statuses.push(s),
        }
    }
    let restarts_pending = state
        .waiting
        .values()
        .any(|w| w.reason == "CrashLoopBackOff");
    let phase = if init_failed || state.deadline_exceeded {
        "Failed"
    } else if app_running > 0 || restarts_pending && app_total > 0 && initialized {
        "Running"
    } else if app_total > 0 && app_succeeded + app_failed == app_total {
        match policy.as_str() {
            "Always" => "Running",
            "OnFailure" if app_failed > 0 => "Running",
            _ if app_failed > 0 => "Failed",
            _ => "Succeeded",
        }
    } else {
        "Pending"
    };
    let ready = phase == "Running" && all_app_ready && initialized;
    let previous_phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    // A finished pod's phase never goes back.
    let phase = if previous_phase == "Succeeded" || previous_phase == "Failed" {
        previous_phase.as_str()
    } else {
        phase
    };
    let cond = |t: &str, ok: bool, reason: Option<&str>| {
        let mut c =
            json!({"type": t, "status": if ok {"True"} else {"False"}, "lastProbeTime": null});
        if let Some(r) = reason {
            c["reason"] = json!(r);
        }
        c
    };
    let not_ready_reason = if phase == "Succeeded" || phase == "Failed" {
        Some("PodCompleted")
    } else {
        Some("ContainersNotReady")
    };
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let mut status = json!({
        "phase": phase,
        "hostIP": shared.config.node_ip,
        "hostIPs": [{"ip": shared.config.node_ip}],
        "startTime": state.start_time.clone().map(|t| api_time(&t)),
        "qosClass": qos_class(pod),
        "conditions": [
            cond("PodReadyToStartContainers", sandbox_error.is_none(), None),
            cond("Initialized", initialized, (!initialized).then_some("ContainersNotInitialized")),
            cond("Ready", ready, if ready { None } else { not_ready_reason }),
            cond("ContainersReady", ready, if ready { None } else { not_ready_reason }),
            cond("PodScheduled", true, None),
        ],
        "containerStatuses": app_statuses,
    });
    if !init_statuses.is_empty() {
        status["initContainerStatuses"] = json!(init_statuses);
    }
    if !ephemeral_statuses.is_empty() {
        status["ephemeralContainerStatuses"] = json!(ephemeral_statuses);
    }
    if state.deadline_exceeded {
        status["reason"] = json!("DeadlineExceeded");
        status["message"] = json!("Pod was active on the node longer than the specified deadline");
    }
    let pod_ip = if host_network {
        Some(shared.config.node_ip.clone())
    } else {
        state.pod_ip.clone()
    };
    if let Some(ip) = pod_ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{ "ip": ip }]);
    }
    if state.last_status.as_ref() == Some(&status) {
        return Ok(());
    }
    // Transition times: keep the old one where the condition's status did not change.
    let mut to_send = status.clone();
    let old_conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    if let Some(conds) = to_send["conditions"].as_array_mut() {
        for c in conds {
            let t = c["type"].as_str().unwrap_or_default().to_string();
            let keep = old_conditions
                .iter()
                .find(|o| o.type_ == t && Some(o.status.as_str()) == c["status"].as_str())
                .and_then(|o| o.last_transition_time.as_ref().map(|t| t.0.to_string()));
            c["lastTransitionTime"] = json!(keep.map(|k| api_time(&k)).unwrap_or_else(now));
        }
    }
    let api: Api<Pod> = Api::namespaced(
        shared.client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    );
    let t0 = Instant::now();
    api.patch_status(
        pod.metadata.name.as_deref().unwrap_or(""),
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": to_send})),
    )
    .await?;
    tracing::debug!(pod = %name_of(pod), phase, ready, took = ?t0.elapsed(), "status written");
    state.last_status = Some(status);
    Ok(())
}

/// Guaranteed, Burstable or BestEffort, from requests and limits (the API server's rule).
fn qos_class(pod: &Pod) -> &'static str {
    let spec = serde_json::to_value(&pod.spec).unwrap_or_default();
    tug_api::defaults::qos_class(&spec)
}

/// Runs the preStop hooks of a pod's running containers, all at once, within `grace` seconds.
async fn stop_hooks(shared: &Shared, pod: &Pod, grace: u64) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let running: Vec<tug_runtime::Container> = shared
        .runtime
        .list_in(&uid)
        .into_iter()
        .filter(|c| matches!(c.state, ContainerState::Running { .. }))
        .collect();
    let mut hooks = Vec::new();
    for (_, c) in containers_of(pod) {
        let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) else {
            continue;
        };
        let hook = crate::probes::hook_with_named_ports(hook, &c);
        let Some(run) = running.iter().find(|r| r.spec.name == c.name) else {
            continue;
        };
        let (rt, uid, id) = (shared.runtime.clone(), uid.clone(), run.spec.id.clone());
        let about = involved(pod).field(&container_field(pod, &c.name));
        let shared = shared.clone();
        hooks.push(async move {
            let (ok, message) = crate::probes::run_hook(
                &rt,
                &uid,
                "",
                &id,
                &hook,
                Duration::from_secs(grace.max(1)),
            )
            .await;
            if !ok {
                record(
                    &shared,
                    "Warning",
                    &about,
                    "FailedPreStopHook",
                    &format!("PreStopHook failed: {message}"),
                );
            }
        });
    }
    futures::future::join_all(hooks).await;
}

/// Stops a pod's containers (SIGTERM, then SIGKILL after its grace period), removes them and
/// its sandbox and files.
pub async fn terminate(shared: &Shared, pod: &Pod) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let grace = pod
        .metadata
        .deletion_grace_period_seconds
        .or(pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30)
        .max(0) as u64;
    stop_hooks(shared, pod, grace).await;
    if let Some(cni) = shared.cni.clone() {
        let (pod, uid) = (pod.clone(), uid.clone());
        let del = tokio::task::spawn_blocking(move || cni.del(&uid, &pod_ref(&pod))).await;
        if let Ok(Err(e)) = del {
            tracing::warn!(error = %format!("{e:#}"), "CNI DEL failed");
        }
    }
    if let Some(net) = shared.network.get() {
        net.detach(&uid).await;
    }
    let rt = shared.runtime.clone();
    let paths = paths(&shared.config, pod);
    let _ = tokio::task::spawn_blocking(move || {
        let mine = rt.list_in(&uid);
        std::thread::scope(|s| {
            for c in &mine {
                let rt = &rt;
                s.spawn(move || rt.stop_container(&c.spec.id, Duration::from_secs(grace)));
            }
        });
        for c in mine {
            let _ = rt.remove_container(&c.spec.id);
        }
        rt.remove_sandbox(&uid);
        crate::volumes::teardown(&paths.dir);
        let _ = std::fs::remove_dir_all(&paths.dir);
        let _ = std::fs::remove_dir_all(&paths.logs);
    })
    .await;
    tracing::info!(pod = %name_of(pod), "pod stopped and cleaned up");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_follows_dns_policy_and_dns_config() {
        let cfg = AgentConfig::new("n", "/tmp".into());
        let host = "search corp.example\nnameserver 198.51.100.1\noptions edns0\n";
        let pod = |spec: serde_json::Value| -> Pod {
            serde_json::from_value(
                json!({"metadata": {"name": "p", "namespace": "team"}, "spec": spec}),
            )
            .unwrap()
        };
        let first = resolv_conf(&cfg, &pod(json!({"containers": []})), host);
        assert_eq!(
            first,
            "search team.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
        let default = resolv_conf(
            &cfg,
            &pod(json!({"containers": [], "dnsPolicy": "Default"})),
            host,
        );
        assert_eq!(
            default,
            "search corp.example\nnameserver 198.51.100.1\noptions edns0\n"
        );
        let host_net = resolv_conf(
            &cfg,
            &pod(json!({"containers": [], "hostNetwork": true})),
            host,
        );
        assert_eq!(host_net, default);
        let with_host_net = resolv_conf(
            &cfg,
            &pod(
                json!({"containers": [], "hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"}),
            ),
            host,
        );
        assert!(with_host_net.contains("nameserver 10.96.0.10"));
        let none = resolv_conf(
            &cfg,
            &pod(json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {
                "nameservers": ["198.51.100.7"], "searches": ["a.example"],
                "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}})),
            host,
        );
        assert_eq!(
            none,
            "search a.example\nnameserver 198.51.100.7\noptions ndots:2 edns0\n"
        );
        let merged = resolv_conf(
            &cfg,
            &pod(
                json!({"containers": [], "dnsConfig": {"options": [{"name": "ndots", "value": "1"}]}}),
            ),
            host,
        );
        assert!(merged.ends_with("options ndots:1\n"), "{merged}");
    }

    fn sandbox(sysctls: &[&str], host_network: bool) -> SandboxSpec {
        SandboxSpec {
            host_network,
            sysctls: sysctls
                .iter()
                .map(|s| (s.to_string(), "1".to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn only_safe_sysctls_in_the_pods_own_namespaces_pass() {
        assert!(check_sysctls(&sandbox(&["net.ipv4.tcp_syncookies"], false)).is_ok());
        assert!(check_sysctls(&sandbox(&["kernel.shm_rmid_forced"], true)).is_ok());
        assert!(check_sysctls(&sandbox(&["net.ipv4.ip_forward"], false)).is_err());
        assert!(check_sysctls(&sandbox(&["net.ipv4.tcp_syncookies"], true)).is_err());
    }

    #[test]
    fn restart_rules_follow_the_policy() {
        assert!(should_restart(Kind::App, "Always", 0));
        assert!(!should_restart(Kind::App, "OnFailure", 0));
        assert!(should_restart(Kind::App, "OnFailure", 1));
        assert!(!should_restart(Kind::App, "Never", 1));
        assert!(should_restart(Kind::Init, "Always", 1));
        assert!(!should_restart(Kind::Init, "Never", 1));
        assert!(should_restart(Kind::Sidecar, "Never", 0));
    }
}
