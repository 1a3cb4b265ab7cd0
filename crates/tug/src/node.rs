//! A node agent, wired the one way both `tug server`'s built-in agent and `tug agent` use:
//! its flags ([`NodeFlags`]), then a [`Node`] naming where it runs and how it is trusted,
//! then [`Node::start`].

use std::path::PathBuf;

/// A node agent's flags, the same for `tug server`'s built-in agent and `tug agent`.
#[derive(clap::Args, Clone)]
pub struct NodeFlags {
    /// The node's name (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    /// The address the node reports and its kubelet API listens on.
    #[arg(long, default_value = "127.0.0.1")]
    node_ip: std::net::IpAddr,
    /// The kubelet API port (0: any free port).
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,
    /// The pod network's bridge.
    #[arg(long, default_value = "tug0")]
    pod_bridge: String,
    /// Image garbage collection starts when the image filesystem is this full (percent).
    #[arg(long, default_value_t = 85, value_parser = clap::value_parser!(u8).range(0..=100))]
    image_gc_high_threshold: u8,
    /// Image garbage collection stops once the image filesystem is below this (percent).
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(0..=100))]
    image_gc_low_threshold: u8,
    /// Seconds between image garbage collection passes (for tests).
    #[arg(long, default_value_t = 60, hide = true)]
    image_gc_period: u64,
    /// Seconds an image is kept after its last use before garbage collection may remove it.
    #[arg(long, default_value_t = 120)]
    image_gc_min_age: u64,
    /// A registry to pull from over plain HTTP (loopback registries always are); repeatable.
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
    /// Hard eviction thresholds behind the node's MemoryPressure, DiskPressure and
    /// PIDPressure conditions, e.g. `memory.available<100Mi,nodefs.available<10%`; signals not
    /// named keep Kubernetes' defaults.
    #[arg(long, default_value = "", value_parser = |s: &str| s.parse::<tug_kubelet::pressure::Thresholds>())]
    eviction_hard: tug_kubelet::pressure::Thresholds,
    /// A CRI v1 runtime to drive instead of the built-in one (`unix:///run/containerd/containerd.sock`);
    /// its CNI configuration then gives pods their network.
    #[arg(long)]
    container_runtime_endpoint: Option<String>,
    /// How long an exec, attach or port-forward session may pass no data before it is closed.
    #[arg(long, default_value = "4h0m0s", value_parser = tug_kubelet::server::parse_duration)]
    streaming_connection_idle_timeout: std::time::Duration,
    /// A CNI network configuration here (the first `.conflist`, `.conf` or `.json`) gives pods
    /// their network instead of the built-in bridge.
    #[arg(long, default_value = "/etc/cni/net.d")]
    cni_conf_dir: PathBuf,
    /// Reach loopback registries in this network namespace (a pinned namespace file) rather
    /// than the agent's own (set by `tug up` for its nodes).
    #[arg(long, hide = true)]
    loopback_registry_netns: Option<PathBuf>,
    /// How pods reach other nodes' pods: `host-gw` (routes through the nodes' addresses; nodes
    /// share a link) or `vxlan` (an overlay).
    #[arg(long, default_value = "host-gw", value_parser = ["host-gw", "vxlan"])]
    network_backend: String,
    /// Where CNI plugins are looked for (repeatable).
    #[arg(long = "cni-bin-dir", default_values = ["/opt/cni/bin", "/usr/lib/cni"])]
    cni_bin_dirs: Vec<PathBuf>,
}

impl NodeFlags {
    /// The node's name: `--node-name`, else the host name.
    pub fn node_name(&self) -> String {
        self.node_name
            .clone()
            .unwrap_or_else(tug_kubelet::agent::default_node_name)
    }

    /// The names the kubelet API's serving certificate covers.
    pub fn serving_sans(&self) -> Vec<String> {
        vec![
            self.node_ip.to_string(),
            self.node_name(),
            "localhost".into(),
        ]
    }
}

/// One node agent to start: its flags, where its state lives, its API client and the TLS
/// identity of its kubelet API.
pub struct Node<'a> {
    pub flags: &'a NodeFlags,
    /// Where the runtime keeps images, containers and pod files.
    pub data_dir: &'a std::path::Path,
    /// The node's API client (its own certificate, or the server's in-process client).
    pub client: kube::Client,
    /// The cluster CA: kubelet API clients must present a certificate it signed.
    pub ca_pem: &'a str,
    /// The kubelet API's serving certificate and key.
    pub serving: &'a tug_apiserver::pki::Issued,
    /// The cluster's pod range.
    pub cluster_cidr: &'a str,
    /// How often the node renews its Lease and status.
    pub heartbeat: std::time::Duration,
}

impl Node<'_> {
    /// Opens the native runtime (or connects to the CRI runtime) in `data_dir`, serves the
    /// kubelet API over TLS, and starts the kubelet and the node's network on `client`.
    pub async fn start(self) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let Node {
            flags,
            data_dir,
            client,
            ca_pem,
            serving,
            cluster_cidr,
            heartbeat,
        } = self;
        use anyhow::Context;
        if !nix::unistd::geteuid().is_root() {
            anyhow::bail!(
                "the node agent runs containers and needs root (namespaces, cgroups, mounts): \
                 run it as root (`tug server --disable-agent` runs a control plane without one)"
            );
        }
        let runtime: std::sync::Arc<dyn tug_runtime::Runtime> =
            match &flags.container_runtime_endpoint {
                Some(endpoint) => {
                    let endpoint = endpoint.clone();
                    std::sync::Arc::new(
                        tokio::task::spawn_blocking(move || {
                            tug_runtime::cri::CriRuntime::connect(&endpoint)
                        })
                        .await??,
                    )
                }
                None => {
                    let exe = std::env::current_exe()
                        .context("finding the tug binary (the container shim)")?;
                    std::sync::Arc::new(
                        tug_runtime::NativeRuntime::open(data_dir, &exe).with_context(|| {
                            format!("opening the runtime in {}", data_dir.display())
                        })?,
                    )
                }
            };
        let tls = tug_apiserver::tls::kubelet_server_config(ca_pem, serving)?;
        let listener = tokio::net::TcpListener::bind((flags.node_ip, flags.kubelet_port))
            .await
            .with_context(|| {
                format!(
                    "listening on {}:{} (--kubelet-port)",
                    flags.node_ip, flags.kubelet_port
                )
            })?;
        let port = listener.local_addr()?.port();
        tokio::spawn(tug_apiserver::tls::serve(
            listener,
            tls,
            // Only the API server (and cluster admins) may use the kubelet API.
            tug_apiserver::tls::only_group(
                tug_kubelet::server::router(tug_kubelet::server::ServerState {
                    runtime: runtime.clone(),
                    node_name: flags.node_name(),
                    rates: Default::default(),
                    stream_idle_timeout: flags.streaming_connection_idle_timeout,
                }),
                "system:masters",
                &["/healthz"],
            ),
        ));
        let node_name = flags.node_name();
        let mut config = tug_kubelet::agent::AgentConfig::new(&node_name, data_dir.to_path_buf());
        config.node_ip = flags.node_ip.to_string();
        config.kubelet_port = port;
        config.insecure_registries = flags.insecure_registries.clone();
        config.eviction_hard = flags.eviction_hard.clone();
        config.runtime_version = runtime.version();
        config.network.bridge = flags.pod_bridge.clone();
        config.network.cluster_cidr = cluster_cidr.to_string();
        config.heartbeat = heartbeat;
        config.network.cni_conf_dir = flags.cni_conf_dir.clone();
        config.network.overlay = flags.network_backend == "vxlan";
        if let Some(ns) = &flags.loopback_registry_netns {
            tug_runtime::image::pull::set_loopback_netns(ns);
        }
        config.network.cni_bin_dirs = flags.cni_bin_dirs.clone();
        config.image_gc = tug_kubelet::imagegc::Thresholds {
            high: flags.image_gc_high_threshold,
            low: flags.image_gc_low_threshold,
            min_age: std::time::Duration::from_secs(flags.image_gc_min_age),
        };
        config.image_gc_period = std::time::Duration::from_secs(flags.image_gc_period.max(1));
        tracing::info!(node = %node_name, kubelet_port = port, "node agent started");
        Ok(tokio::spawn(async move {
            if let Err(e) = tug_kubelet::agent::run(client, config, runtime).await {
                tracing::error!(error = %format!("{e:#}"), "the node agent stopped");
            }
        }))
    }
}
