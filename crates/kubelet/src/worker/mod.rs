//! One worker per pod: starts its sandbox, runs its init containers in order and then its
//! containers, restarts them as the restart policy says with the CrashLoopBackOff delays,
//! reports the pod's status, and stops everything when the pod goes.
//!
//! One pass (`sync`) sets up the sandbox and the pod's files (`files`), starts what should
//! run (`start`), runs probes (`health`) and reports the status (`status`); `termination`
//! stops the pod when it goes.

mod files;
mod health;
mod start;
mod status;
mod sync;
mod termination;

pub use files::resolv_conf;
use files::write_pod_files;
use health::run_probes;
use start::run_containers;
use status::report;
use sync::sync;
use termination::stop_hooks;
pub use termination::terminate;

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
    /// The node's network, which pods are attached to and detached from.
    pub network: Arc<tug_nodenet::NodeNetwork>,
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
    /// The pod's resourceVersion after the kubelet last wrote its status.
    written: i64,
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

/// The pod's terminationGracePeriodSeconds (30 when unset), in whole seconds.
fn grace_period(pod: &Pod) -> u64 {
    pod.spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30)
        .max(0) as u64
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

#[cfg(test)]
mod tests {
    use super::*;

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
