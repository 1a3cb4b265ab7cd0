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
mod storage_protection;

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

/// The API clients the controllers call with: the controller manager's own (its shared
/// caches), and one per controller acting as its service account in kube-system, as
/// kube-controller-manager's `--use-service-account-credentials` gives each controller.
#[derive(Clone)]
pub struct Clients(std::sync::Arc<MakeClient>);

/// Makes the client of the controller manager (`None`) or of a controller (its name).
type MakeClient = dyn Fn(Option<&str>) -> kube::Client + Send + Sync;

impl Clients {
    /// Clients made by `make`: `None` asks for the manager's, `Some(name)` for the service
    /// account `kube-system/name`'s.
    pub fn new(make: impl Fn(Option<&str>) -> kube::Client + Send + Sync + 'static) -> Self {
        Clients(std::sync::Arc::new(make))
    }

    /// The controller manager's own client.
    pub fn manager(&self) -> kube::Client {
        (self.0)(None)
    }

    /// The client of the controller whose service account is `kube-system/name`.
    pub fn controller(&self, name: &str) -> kube::Client {
        (self.0)(Some(name))
    }
}

/// Runs every controller until the task is dropped.
pub async fn run(clients: Clients, settings: Settings) {
    let shared = common::Shared::start(clients.manager()).await;
    let c = |name: &str| clients.controller(name);
    tokio::join!(
        replicaset::run(c("replicaset-controller"), shared.clone()),
        replicaset::run_replication_controllers(c("replication-controller"), shared.clone()),
        deployment::run(c("deployment-controller"), shared.clone()),
        statefulset::run(c("statefulset-controller"), shared.clone()),
        daemonset::run(c("daemon-set-controller"), shared.clone()),
        job::run(c("job-controller"), shared.clone()),
        cronjob::run(c("cronjob-controller"), shared.clone()),
        endpoints::run(c("endpointslice-controller"), shared.clone()),
        disruption::run(c("disruption-controller"), shared.clone()),
        quota::run(c("resourcequota-controller"), shared.clone()),
        nodeipam::run(c("node-controller"), shared.clone(), settings.pod_network),
        podgc::run(
            c("pod-garbage-collector"),
            shared.clone(),
            settings.terminated_pod_gc_threshold
        ),
        storage_protection::run(
            c("pvc-protection-controller"),
            c("pv-protection-controller"),
            shared.clone()
        ),
        nodelifecycle::run(
            c("node-controller"),
            shared,
            settings.node_monitor_grace_period
        ),
        namespace_objects::run_service_accounts(c("service-account-controller")),
        async {
            if let Some(ca) = settings.root_ca {
                namespace_objects::run_root_ca(c("root-ca-cert-publisher"), ca).await
            }
        },
        async {
            if let Some(dir) = settings.local_path_dir {
                localpath::run(c(localpath::SERVICE_ACCOUNT), dir).await
            }
        },
        async {
            if let Some(signer) = settings.csr_signer {
                csrsigning::run(c("certificate-controller"), signer).await
            }
        },
        clusterrole_aggregation::run(c("clusterrole-aggregation-controller")),
        gc::run(c("generic-garbage-collector")),
    );
}
