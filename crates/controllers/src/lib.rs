//! The controller manager. Every controller is the same pattern — kube-rs' `Controller`
//! (watch, queue, reconcile, requeue) around a reconcile function — and talks to the API only.

mod common;
mod cronjob;
mod daemonset;
mod deployment;
mod gc;
mod job;
mod replicaset;
mod statefulset;

pub use common::Error;

/// Runs every controller until the task is dropped.
pub async fn run(client: kube::Client) {
    let shared = common::Shared::start(client.clone()).await;
    tokio::join!(
        replicaset::run(client.clone(), shared.clone()),
        deployment::run(client.clone(), shared.clone()),
        statefulset::run(client.clone(), shared.clone()),
        daemonset::run(client.clone(), shared.clone()),
        job::run(client.clone(), shared.clone()),
        cronjob::run(client.clone(), shared),
        gc::run(client),
    );
}
