//! The one way the control plane's in-process components are wired to an API server: the
//! controller manager, the scheduler and hollow nodes, each an API client on the server's
//! in-process connection, acting as its own identity (the scheduler as
//! `system:kube-scheduler`, each controller as its service account in kube-system), so RBAC
//! holds each to its bootstrap role. Hollow nodes simulate many kubelets at once and act as
//! the API server itself. `tug server` and the benchmarks build theirs here.

use std::sync::Arc;

use tug_apiserver::ApiServer;
use tug_apiserver::auth::Identity;

/// The control plane's running components; dropping it stops them.
pub struct ControlPlane {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl ControlPlane {
    /// Stops the components, releasing the Leases this process holds so that another server
    /// takes over at once (waits at most a few seconds).
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        let tasks = std::mem::take(&mut self.tasks);
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(3),
            futures::future::join_all(tasks),
        )
        .await;
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// What a [`ControlPlane`] runs.
pub struct ControlPlaneBuilder {
    api: Arc<ApiServer>,
    controllers: Option<tug_controllers::Settings>,
    scheduler: bool,
    hollow: Option<tug_kubelet::hollow::HollowConfig>,
    identity: Option<(String, tug_controllers::leader::Timing)>,
}

impl ControlPlane {
    /// A control plane on `api` that runs nothing yet.
    pub fn builder(api: Arc<ApiServer>) -> ControlPlaneBuilder {
        ControlPlaneBuilder {
            api,
            controllers: None,
            scheduler: false,
            hollow: None,
            identity: None,
        }
    }
}

impl ControlPlaneBuilder {
    /// Runs the controller manager with `settings`.
    pub fn controllers(mut self, settings: tug_controllers::Settings) -> Self {
        self.controllers = Some(settings);
        self
    }

    /// Runs the scheduler (and serves its metrics on the API server's `/metrics`).
    pub fn scheduler(mut self) -> Self {
        self.scheduler = true;
        self
    }

    /// Runs simulated nodes.
    pub fn hollow_nodes(mut self, config: tug_kubelet::hollow::HollowConfig) -> Self {
        self.hollow = Some(config);
        self
    }

    /// Runs the controllers and the scheduler only while this process, as `identity`, holds
    /// their Leases in kube-system (several servers may share one store), as
    /// kube-controller-manager and kube-scheduler do.
    pub fn leader_election(
        mut self,
        identity: String,
        timing: tug_controllers::leader::Timing,
    ) -> Self {
        self.identity = Some((identity, timing));
        self
    }

    /// Starts what was asked for.
    pub fn start(self) -> ControlPlane {
        let mut tasks = Vec::new();
        let (shutdown, stopping) = tokio::sync::watch::channel(false);
        let api = &self.api;
        if let Some(settings) = self.controllers {
            let clients = controller_clients(api);
            let client = clients.manager();
            tasks.push(match self.identity.clone() {
                Some((identity, timing)) => tokio::spawn(async move {
                    tug_controllers::leader::run_elected(
                        client,
                        "kube-controller-manager",
                        &identity,
                        timing,
                        stopping,
                        move || tug_controllers::run(clients.clone(), settings.clone()),
                    )
                    .await
                }),
                None => tokio::spawn(tug_controllers::run(clients, settings)),
            });
        }
        if self.scheduler {
            api.add_metrics(tug_scheduler::metrics::render);
            let client = scheduler_client(api);
            let schedule = move || {
                let client = client.clone();
                async move {
                    if let Err(e) = tug_scheduler::run(client).await {
                        tracing::error!(error = %format!("{e:#}"), "scheduler stopped");
                    }
                }
            };
            tasks.push(match self.identity.clone() {
                Some((identity, timing)) => {
                    let client = scheduler_client(api);
                    let stopping = shutdown.subscribe();
                    tokio::spawn(async move {
                        tug_controllers::leader::run_elected(
                            client,
                            "kube-scheduler",
                            &identity,
                            timing,
                            stopping,
                            schedule,
                        )
                        .await
                    })
                }
                None => tokio::spawn(schedule()),
            });
        }
        if let Some(config) = self.hollow {
            let client = api.in_process_client();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = tug_kubelet::hollow::run(client, config).await {
                    tracing::error!(error = %format!("{e:#}"), "hollow nodes stopped");
                }
            }));
        }
        ControlPlane { tasks, shutdown }
    }
}

/// The controllers' clients: the controller manager as `system:kube-controller-manager`, each
/// controller as its service account in kube-system.
fn controller_clients(api: &Arc<ApiServer>) -> tug_controllers::Clients {
    let api = api.clone();
    tug_controllers::Clients::new(move |sa| {
        api.in_process_client_as(match sa {
            None => Identity::user("system:kube-controller-manager", &[]),
            Some(name) => Identity::service_account("kube-system", name),
        })
    })
}

/// The scheduler's client: `system:kube-scheduler`.
fn scheduler_client(api: &Arc<ApiServer>) -> kube::Client {
    api.in_process_client_as(Identity::user("system:kube-scheduler", &[]))
}
