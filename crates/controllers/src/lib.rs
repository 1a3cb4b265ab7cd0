//! The controller manager. Every controller is the same pattern — kube-rs' `Controller`
//! (watch, queue, reconcile, requeue) around a reconcile function — and talks to the API only.

pub mod claim;
pub mod clusterdns;
mod clusterrole_aggregation;
mod common;
mod cronjob;
pub mod csrsigning;
mod daemonset;
mod deployment;
mod disruption;
mod endpoints;
mod gc;
mod job;
pub mod leader;
pub mod localpath;
pub mod namespace_objects;
mod nodeipam;
mod nodelifecycle;
mod podgc;
mod quota;
mod replicaset;
mod statefulset;

pub use common::Error;
pub use nodeipam::PodNetwork;

/// Settings of the controller manager.
#[derive(Clone)]
pub struct Settings {
    /// How long a node may go without renewing its Lease before it is NotReady.
    pub node_monitor_grace_period: std::time::Duration,
    /// Finished pods kept before the oldest are deleted.
    pub terminated_pod_gc_threshold: usize,
    /// Where nodes' pod CIDRs come from.
    pub pod_network: PodNetwork,
    /// Where the local-path provisioner puts volumes (on the node that uses them); None turns
    /// the provisioner off.
    pub local_path_dir: Option<std::path::PathBuf>,
    /// Signs node certificates (approving bootstrapping agents' requests); None turns the
    /// signer off.
    pub csr_signer: Option<csrsigning::Signer>,
    /// The cluster CA (PEM), published in every namespace's `kube-root-ca.crt` ConfigMap;
    /// None turns the publisher off.
    pub root_ca: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            node_monitor_grace_period: std::time::Duration::from_secs(40),
            terminated_pod_gc_threshold: 12_500,
            pod_network: PodNetwork::default(),
            local_path_dir: None,
            csr_signer: None,
            root_ca: None,
        }
    }
}

/// Runs every controller until the task is dropped.
pub async fn run(client: kube::Client, settings: Settings) {
    let shared = common::Shared::start(client.clone()).await;
    let (local_path, local_path_client) = (settings.local_path_dir.clone(), client.clone());
    let (signer, signer_client) = (settings.csr_signer.clone(), client.clone());
    let (root_ca, root_ca_client) = (settings.root_ca.clone(), client.clone());
    tokio::join!(
        replicaset::run(client.clone(), shared.clone()),
        replicaset::run_replication_controllers(client.clone(), shared.clone()),
        deployment::run(client.clone(), shared.clone()),
        statefulset::run(client.clone(), shared.clone()),
        daemonset::run(client.clone(), shared.clone()),
        job::run(client.clone(), shared.clone()),
        cronjob::run(client.clone(), shared.clone()),
        endpoints::run(client.clone(), shared.clone()),
        disruption::run(client.clone(), shared.clone()),
        quota::run(client.clone(), shared.clone()),
        nodeipam::run(client.clone(), shared.clone(), settings.pod_network),
        podgc::run(
            client.clone(),
            shared.clone(),
            settings.terminated_pod_gc_threshold
        ),
        nodelifecycle::run(client.clone(), shared, settings.node_monitor_grace_period),
        namespace_objects::run_service_accounts(client.clone()),
        async {
            if let Some(ca) = root_ca {
                namespace_objects::run_root_ca(root_ca_client, ca).await
            }
        },
        async {
            if let Some(dir) = local_path {
                localpath::run(local_path_client, dir).await
            }
        },
        async {
            if let Some(signer) = signer {
                csrsigning::run(signer_client, signer).await
            }
        },
        clusterrole_aggregation::run(client.clone()),
        gc::run(client),
    );
}
