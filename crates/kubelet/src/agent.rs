//! The real node agent: registers the node, keeps its heartbeats, and runs a worker per pod
//! bound to it on the native runtime. On start it adopts the containers a previous agent left
//! running, and cleans up after pods deleted while it was away.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tug_runtime::Runtime;

use crate::worker::{self, Shared};

/// How the agent runs.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub node_name: String,
    /// The container runtime, `name://version` (the runtime's [`Runtime::version`]).
    pub runtime_version: String,
    /// Where images, containers, pod files and logs live.
    pub data_dir: PathBuf,
    /// The address the node reports (and its kubelet server is reached at).
    pub node_ip: String,
    /// The kubelet server's port, as bound.
    pub kubelet_port: u16,
    pub max_pods: u32,
    /// The cluster DNS server pods are pointed at.
    pub cluster_dns: String,
    pub cluster_domain: String,
    /// Lease renewal and status period.
    pub heartbeat: Duration,
    /// Registries reached over plain HTTP (loopback ones always are).
    pub insecure_registries: Vec<String>,
    /// The node's network: the pod network, the Service proxy, NetworkPolicy.
    pub network: tug_nodenet::NodeNetConfig,
    /// When image garbage collection starts and stops removing unused images.
    pub image_gc: crate::imagegc::Thresholds,
    /// How often image garbage collection looks at the disk.
    pub image_gc_period: Duration,
    /// The hard eviction thresholds behind the node's pressure conditions.
    pub eviction_hard: crate::pressure::Thresholds,
}

impl AgentConfig {
    /// Defaults for a node named `node_name` keeping its state in `data_dir`.
    pub fn new(node_name: &str, data_dir: PathBuf) -> AgentConfig {
        AgentConfig {
            node_name: node_name.to_string(),
            data_dir,
            node_ip: "127.0.0.1".into(),
            kubelet_port: 10250,
            max_pods: 110,
            cluster_dns: tug_api::cluster::DNS_SERVICE_IP.into(),
            cluster_domain: tug_api::cluster::CLUSTER_DOMAIN.into(),
            heartbeat: Duration::from_secs(10),
            insecure_registries: Vec::new(),
            network: Default::default(),
            image_gc: Default::default(),
            image_gc_period: Duration::from_secs(60),
            eviction_hard: Default::default(),
            runtime_version: concat!("tugboat://", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// The node's name when none is given: the host name, lower case.
pub fn default_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_else(|_| "localhost".into())
        .trim()
        .to_ascii_lowercase()
}

/// The image references of a pod's containers.
fn images_of(pod: &Pod) -> Vec<String> {
    pod.spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
                .filter_map(|c| c.image.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the agent until the task is dropped.
pub async fn run(
    client: kube::Client,
    config: AgentConfig,
    runtime: Arc<dyn Runtime>,
) -> anyhow::Result<()> {
    crate::node::register(&client, &config).await?;
    let wanted: crate::imagegc::Wanted = Arc::default();
    tokio::spawn(crate::imagegc::run(
        runtime.clone(),
        config.image_gc,
        config.image_gc_period,
        wanted.clone(),
    ));
    tokio::spawn(crate::node::heartbeat(
        client.clone(),
        config.clone(),
        config.heartbeat,
    ));
    // The node's network runs beside the pods, as kube-proxy and a CNI daemon would.
    let node = tug_nodenet::NodeRef {
        name: config.node_name.clone(),
        ip: config.node_ip.clone(),
        data_dir: config.data_dir.clone(),
    };
    let network = tug_nodenet::NodeNetwork::new(client.clone(), node, config.network.clone())?;
    tokio::spawn(network.clone().run());
    let shared = Shared {
        client: client.clone(),
        runtime: runtime.clone(),
        config: config.clone(),
        recorder: Arc::new(tug_events::Recorder::new(client.clone(), "kubelet")),
        network: network.clone(),
    };
    let pods: Api<Pod> = Api::all(client);
    let selector = format!("spec.nodeName={}", config.node_name);
    let mut events = watcher(pods, watcher::Config::default().fields(&selector))
        .default_backoff()
        .boxed();
    let mut workers: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
    // Pods seen in the first full list: sandboxes of any other pod are leftovers.
    let mut listing: Option<HashSet<String>> = Some(HashSet::new());
    while let Some(ev) = events.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(error = %e, "watching pods failed; retrying");
                continue;
            }
        };
        match ev {
            watcher::Event::Init => listing = Some(HashSet::new()),
            watcher::Event::InitApply(pod) | watcher::Event::Apply(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if let Ok(mut w) = wanted.lock() {
                    w.insert(uid.clone(), images_of(&pod));
                }
                if let Some(l) = listing.as_mut() {
                    l.insert(uid.clone());
                }
                match workers.get(&uid) {
                    Some(tx) if !tx.is_closed() => {
                        let _ = tx.send(Some(pod));
                    }
                    _ => {
                        let (tx, rx) = watch::channel(Some(pod));
                        tokio::spawn(worker::run(shared.clone(), rx));
                        workers.insert(uid, tx);
                    }
                }
            }
            watcher::Event::Delete(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if let Ok(mut w) = wanted.lock() {
                    w.remove(&uid);
                }
                if let Some(tx) = workers.remove(&uid) {
                    let _ = tx.send(None);
                }
            }
            watcher::Event::InitDone => {
                let known = listing.take().unwrap_or_default();
                if let Ok(mut w) = wanted.lock() {
                    w.retain(|uid, _| known.contains(uid));
                }
                // Pods deleted while the agent was away: stop what they left behind.
                let gone: Vec<String> = workers
                    .keys()
                    .filter(|u| !known.contains(*u))
                    .cloned()
                    .collect();
                for uid in gone {
                    if let Some(tx) = workers.remove(&uid) {
                        let _ = tx.send(None);
                    }
                }
                let rt = runtime.clone();
                let shared = shared.clone();
                tokio::spawn(async move {
                    let leftovers: Vec<String> = rt
                        .sandboxes()
                        .into_iter()
                        .filter(|u| !known.contains(u))
                        .collect();
                    for uid in leftovers {
                        tracing::info!(pod_uid = %uid, "cleaning up a pod deleted while the agent was away");
                        let mut pod = Pod::default();
                        pod.metadata.uid = Some(uid);
                        pod.spec = Some(Default::default());
                        if let Some(s) = pod.spec.as_mut() {
                            s.termination_grace_period_seconds = Some(2);
                        }
                        worker::terminate(&shared, &pod).await;
                    }
                });
            }
        }
        workers.retain(|_, tx| !tx.is_closed());
    }
    Ok(())
}
