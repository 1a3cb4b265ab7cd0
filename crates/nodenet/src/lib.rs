//! The node's network, beside the kubelet as kube-proxy and a CNI daemon sit beside it.
//!
//! [`NodeNetwork`] owns the pod network of one node: it is set up on first use once the node
//! has a podCIDR, the kubelet asks it to [`attach`](NodeNetwork::attach) and
//! [`detach`](NodeNetwork::detach) each pod's sandbox, and [`run`](NodeNetwork::run) keeps the
//! node's network services in step with the API: `routes` (other nodes' pods), `proxy`
//! (Services, kube-proxy's job) and `netpol` (NetworkPolicy). The kernel work (netlink,
//! nf_tables, CNI plugin calls) is `tug-network`'s.

pub mod metrics;
pub mod netpol;
pub mod proxy;
mod routes;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tug_network::PodNetwork;
use tug_network::cni::{Cni, PodRef, PortMapping};

/// How the node's network is set up.
#[derive(Clone, Debug)]
pub struct NodeNetConfig {
    /// The pod network's bridge.
    pub bridge: String,
    /// The cluster's pod range: traffic from it to elsewhere is masqueraded.
    pub cluster_cidr: String,
    /// The cluster's Service range, routed locally like the pod range.
    pub service_cidr: String,
    /// Where a CNI network configuration, if any, is (it replaces the built-in bridge).
    pub cni_conf_dir: PathBuf,
    /// Where CNI plugins are looked for.
    pub cni_bin_dirs: Vec<PathBuf>,
    /// Reach other nodes' pods through the VXLAN overlay instead of host-gw routes.
    pub overlay: bool,
}

impl Default for NodeNetConfig {
    fn default() -> Self {
        NodeNetConfig {
            bridge: tug_network::BRIDGE.into(),
            cluster_cidr: tug_api::cluster::POD_CIDR.into(),
            service_cidr: tug_api::cluster::SERVICE_CIDR.into(),
            cni_conf_dir: "/etc/cni/net.d".into(),
            cni_bin_dirs: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()],
            overlay: false,
        }
    }
}

/// The node a network belongs to.
#[derive(Clone, Debug)]
pub struct NodeRef {
    /// The node whose podCIDR the pod network takes its addresses from.
    pub name: String,
    /// The node's address: other nodes' routes and the overlay point at it.
    pub ip: String,
    /// Where the network keeps its state (`network/` for addresses, `cni/` for CNI's cache).
    pub data_dir: PathBuf,
}

/// One node's network: the pod network, set up once the node has a podCIDR, and the CNI
/// plugins that replace its bridge when a CNI configuration is present.
pub struct NodeNetwork {
    client: kube::Client,
    node: NodeRef,
    config: NodeNetConfig,
    pods: tokio::sync::OnceCell<PodNetwork>,
    cni: Option<Arc<Cni>>,
}

impl NodeNetwork {
    /// The node's network, with the CNI configuration in `config.cni_conf_dir` loaded if
    /// there is one. Nothing is set up in the kernel until first use.
    pub fn new(
        client: kube::Client,
        node: NodeRef,
        config: NodeNetConfig,
    ) -> anyhow::Result<Arc<NodeNetwork>> {
        let cni = Cni::load(
            &config.cni_conf_dir,
            config.cni_bin_dirs.clone(),
            &node.data_dir.join("cni"),
        )?;
        if let Some(c) = &cni {
            tracing::info!(network = %c.name(), config = %c.source.display(), "pods get their network from CNI plugins");
        }
        Ok(Arc::new(NodeNetwork {
            client,
            node,
            config,
            pods: Default::default(),
            cni: cni.map(Arc::new),
        }))
    }

    /// Keeps the node's network services (routes to other nodes, the Service proxy,
    /// NetworkPolicy) in step with the API until the task is dropped. Each starts once the
    /// pod network exists, which routes the pod and Service ranges locally first.
    pub async fn run(self: Arc<Self>) {
        /// Aborts the services when the task running them is dropped.
        struct Services(Vec<tokio::task::JoinHandle<()>>);
        impl Drop for Services {
            fn drop(&mut self) {
                self.0.iter().for_each(|t| t.abort());
            }
        }
        let mut services = Services(vec![
            tokio::spawn(proxy::run(self.clone())),
            tokio::spawn(routes::run(self.clone())),
            tokio::spawn(netpol::run(self)),
        ]);
        // A service that stops on its own has logged why; the others go on.
        futures::future::join_all(services.0.iter_mut()).await;
    }

    /// The node's name.
    fn name(&self) -> &str {
        &self.node.name
    }

    /// The node's address.
    fn ip(&self) -> &str {
        &self.node.ip
    }

    /// The node's pod network, set up on first use once the node has a podCIDR.
    pub async fn pod_network(&self) -> anyhow::Result<&PodNetwork> {
        self.pods.get_or_try_init(|| self.set_up()).await
    }

    /// The node's pod network, waiting until the node has a podCIDR.
    pub async fn when_ready(&self) -> &PodNetwork {
        loop {
            match self.pod_network().await {
                Ok(n) => return n,
                Err(e) => {
                    tracing::debug!(error = %format!("{e:#}"), "waiting for the pod network");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Connects a pod's sandbox (its process `pid`) to the pod network: the CNI plugins when
    /// configured, else the built-in bridge. Returns the pod's address.
    pub async fn attach(&self, pod: &Pod, pid: i32) -> anyhow::Result<Ipv4Addr> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if let Some(cni) = self.cni.clone() {
            let pod = pod.clone();
            return tokio::task::spawn_blocking(move || {
                let ports = host_ports(&pod);
                cni.add(
                    &uid,
                    Path::new(&format!("/proc/{pid}/ns/net")),
                    &pod_ref(&pod),
                    &ports,
                )
            })
            .await?;
        }
        self.pod_network().await?.attach(&uid, pid).await
    }

    /// Disconnects a pod from the pod network and frees its address. Failures are logged:
    /// a pod that goes must not be held up by its network.
    pub async fn detach(&self, pod: &Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if let Some(cni) = self.cni.clone() {
            let (pod, uid) = (pod.clone(), uid.clone());
            let del = tokio::task::spawn_blocking(move || cni.del(&uid, &pod_ref(&pod))).await;
            if let Ok(Err(e)) = del {
                tracing::warn!(error = %format!("{e:#}"), "CNI DEL failed");
            }
        }
        if let Some(net) = self.pods.get() {
            net.detach(&uid).await;
        }
    }

    /// Creates the pod network from the node's podCIDR: the bridge, masquerade for traffic
    /// leaving the cluster, and the VXLAN device when the overlay is on.
    async fn set_up(&self) -> anyhow::Result<PodNetwork> {
        let (cfg, me) = (&self.config, &self.node);
        let nodes: Api<Node> = Api::all(self.client.clone());
        let node = nodes.get(&me.name).await?;
        let cidr = node
            .spec
            .and_then(|s| s.pod_cidr)
            .ok_or_else(|| anyhow::anyhow!("the node has no podCIDR yet (NetworkNotReady)"))?;
        let net = PodNetwork::new(&cidr, &cfg.bridge, &me.data_dir.join("network")).await?;
        let cluster: tug_network::Cidr = cfg.cluster_cidr.parse()?;
        let service: tug_network::Cidr = cfg.service_cidr.parse()?;
        if let Err(e) = net.enable_egress(cluster, &[cluster, service]).await {
            // Pods on the node still reach each other and the node.
            tracing::warn!(error = %format!("{e:#}"), "pods cannot reach beyond the pod range");
        }
        if cfg.overlay {
            let node_ip: Ipv4Addr = me.ip.parse()?;
            let mac = net.enable_overlay(node_ip).await?;
            // Other nodes find this node's overlay device by its MAC.
            let patch = json!({"metadata": {"annotations": {
                tug_network::vxlan::MAC_ANNOTATION: tug_network::vxlan::format_mac(&mac)
            }}});
            nodes
                .patch(&me.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        Ok(net)
    }
}

/// The pod's identity as CNI plugins are told it.
fn pod_ref(pod: &Pod) -> PodRef<'_> {
    PodRef {
        namespace: pod.metadata.namespace.as_deref().unwrap_or("default"),
        name: pod.metadata.name.as_deref().unwrap_or(""),
        uid: pod.metadata.uid.as_deref().unwrap_or(""),
    }
}

/// The hostPorts of a pod's containers, for the portmap plugin.
fn host_ports(pod: &Pod) -> Vec<PortMapping> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            Some(PortMapping {
                host_port: u16::try_from(p.host_port?).ok().filter(|h| *h != 0)?,
                container_port: u16::try_from(p.container_port).ok()?,
                protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
            })
        })
        .collect()
}
