//! The scheduler: a client of the API like every other component. It keeps nodes and pods
//! current from watches, and places each pending pod: filter the nodes that can run it, score
//! them, bind to the best through `pods/binding`.
//!
//! Filters so far: NodeUnschedulable, readiness, nodeSelector, taints and tolerations,
//! NodeResourcesFit (CPU, memory, pod count); score: LeastAllocated. A pod that fits nowhere
//! gets the PodScheduled=False condition and a FailedScheduling event saying why, in
//! Kubernetes' words.

mod filters;
mod fit;

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

pub use fit::{Resources, node_allocatable, pod_requests};

/// The scheduler's name: pods whose `spec.schedulerName` is this are ours.
pub const NAME: &str = "default-scheduler";

/// Runs the scheduler until the task is dropped.
pub async fn run(client: kube::Client) -> anyhow::Result<()> {
    let (nodes, node_writer) = reflector::store::<Node>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let node_stream = reflector(
        node_writer,
        watcher(Api::<Node>::all(client.clone()), watcher::Config::default()).default_backoff(),
    )
    .applied_objects()
    .for_each(|_| async {});
    let pod_stream = reflector(
        pod_writer,
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).default_backoff(),
    )
    .applied_objects()
    .for_each(|_| async {});
    tokio::spawn(node_stream);
    tokio::spawn(pod_stream);
    nodes.wait_until_ready().await?;
    pods.wait_until_ready().await?;
    tracing::info!("scheduler started");
    // Bindings made but not yet seen in the pod watch, so their resources count at once.
    let mut assumed: HashMap<(String, String), String> = HashMap::new();
    let mut reported: HashMap<(String, String), (String, std::time::Instant)> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        schedule_pending(&client, &nodes, &pods, &mut assumed, &mut reported).await;
    }
}

fn key(p: &Pod) -> (String, String) {
    (
        p.metadata.namespace.clone().unwrap_or_default(),
        p.metadata.name.clone().unwrap_or_default(),
    )
}

fn is_pending(p: &Pod) -> bool {
    let spec = p.spec.as_ref();
    p.metadata.deletion_timestamp.is_none()
        && spec
            .and_then(|s| s.node_name.as_deref())
            .is_none_or(str::is_empty)
        && spec
            .and_then(|s| s.scheduler_name.as_deref())
            .is_none_or(|n| n == NAME)
}

/// One pass over the pending pods.
async fn schedule_pending(
    client: &kube::Client,
    nodes: &Store<Node>,
    pods: &Store<Pod>,
    assumed: &mut HashMap<(String, String), String>,
    reported: &mut HashMap<(String, String), (String, std::time::Instant)>,
) {
    let all_pods = pods.state();
    // Forget assumptions the watch has caught up with.
    assumed.retain(|k, _| all_pods.iter().any(|p| &key(p) == k && is_pending(p)));
    let mut pending: Vec<_> = all_pods
        .iter()
        .filter(|p| is_pending(p) && !assumed.contains_key(&key(p)))
        .cloned()
        .collect();
    if pending.is_empty() {
        return;
    }
    // Priority first, then age.
    pending.sort_by_key(|p| {
        (
            std::cmp::Reverse(p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)),
            p.metadata.creation_timestamp.clone().map(|t| t.0),
        )
    });
    let mut used: HashMap<String, Resources> = HashMap::new();
    for p in all_pods.iter() {
        let node = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        let node = node.or_else(|| assumed.get(&key(p)).cloned());
        let done = matches!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if let Some(n) = node
            && !done
        {
            used.entry(n).or_default().add(&pod_requests(p));
        }
    }
    let node_list = nodes.state();
    for pod in pending {
        let want = pod_requests(&pod);
        let mut failures: std::collections::BTreeMap<String, usize> = Default::default();
        let mut best: Option<(f64, String)> = None;
        for n in node_list.iter() {
            let Some(node_name) = n.metadata.name.clone() else {
                continue;
            };
            let u = used.get(&node_name).cloned().unwrap_or_default();
            let why = filters::reasons(&pod, n, &want, &u);
            if why.is_empty() {
                let score = fit::least_allocated(&want, &u, &node_allocatable(n));
                if best.as_ref().is_none_or(|(b, _)| score > *b) {
                    best = Some((score, node_name));
                }
            } else {
                for r in why {
                    *failures.entry(r).or_default() += 1;
                }
            }
        }
        let (ns, name) = key(&pod);
        let Some((_, node)) = best else {
            let message = filters::message(node_list.len(), &failures);
            let k = (ns.clone(), name.clone());
            let fresh = reported
                .get(&k)
                .is_none_or(|(m, at)| *m != message || at.elapsed() > Duration::from_secs(30));
            if fresh {
                report_unschedulable(client, &pod, &message).await;
                reported.insert(k, (message, std::time::Instant::now()));
            }
            continue;
        };
        reported.remove(&(ns.clone(), name.clone()));
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let binding = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": ns},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        });
        match api
            .create_subresource::<_, serde_json::Value>(
                "binding",
                &name,
                &PostParams::default(),
                &binding,
            )
            .await
        {
            Ok(_) => {
                used.entry(node.clone()).or_default().add(&want);
                assumed.insert((ns, name), node);
            }
            Err(e) => tracing::debug!(pod = %name, error = %e, "binding failed; retrying"),
        }
    }
}

/// Records why a pod cannot be scheduled: the PodScheduled=False condition and a
/// FailedScheduling event, as kube-scheduler does.
async fn report_unschedulable(client: &kube::Client, pod: &Pod, message: &str) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let now = jiff_now();
    let status = json!({"status": {"conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": message, "lastProbeTime": null, "lastTransitionTime": now}]}});
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pp = kube::api::PatchParams {
        field_manager: Some(NAME.into()),
        ..Default::default()
    };
    if let Err(e) = pods
        .patch_status(&name, &pp, &kube::api::Patch::Strategic(&status))
        .await
    {
        tracing::debug!(pod = %name, error = %e, "recording the unschedulable condition failed");
    }
    let event: k8s_openapi::api::core::v1::Event = match serde_json::from_value(json!({
        "metadata": {"generateName": format!("{name}."), "namespace": ns},
        "involvedObject": {"kind": "Pod", "namespace": ns, "name": name, "uid": pod.metadata.uid, "apiVersion": "v1"},
        "reason": "FailedScheduling", "message": message, "type": "Warning",
        "source": {"component": NAME}, "reportingComponent": NAME, "reportingInstance": NAME,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    })) {
        Ok(e) => e,
        Err(_) => return,
    };
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), &ns);
    if let Err(e) = events.create(&PostParams::default(), &event).await {
        tracing::debug!(pod = %name, error = %e, "recording the FailedScheduling event failed");
    }
}

fn jiff_now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
