//! Pod garbage collection, as kube-controller-manager's PodGC: deletes pods bound to a node
//! that has been gone for 40 s, pods being deleted that never reached a node, and the oldest
//! finished pods once there are more than the threshold (12,500 by default).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams};

use crate::common::Shared;

/// How long a node must have been gone before its pods are deleted.
const QUARANTINE: Duration = Duration::from_secs(40);

/// Runs the collector until the task is dropped.
pub async fn run(client: kube::Client, shared: Shared, threshold: usize) {
    let mut missing_since: HashMap<String, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        for (ns, name) in doomed(&client, &shared, threshold, &mut missing_since).await {
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            match api
                .delete(&name, &DeleteParams::default().grace_period(0))
                .await
            {
                Ok(_) => tracing::info!(namespace = %ns, pod = %name, "pod garbage-collected"),
                Err(e) => tracing::debug!(pod = %name, error = %e, "pod GC delete failed"),
            }
        }
    }
}

fn key(p: &Pod) -> (String, String) {
    (
        p.metadata.namespace.clone().unwrap_or_default(),
        p.metadata.name.clone().unwrap_or_default(),
    )
}

async fn doomed(
    client: &kube::Client,
    shared: &Shared,
    threshold: usize,
    missing_since: &mut HashMap<String, Instant>,
) -> Vec<(String, String)> {
    let pods = shared.pods.state();
    let nodes: HashSet<String> = shared
        .nodes
        .state()
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    let mut out = Vec::new();
    // Finished pods over the threshold, oldest first.
    let mut finished: Vec<_> = pods
        .iter()
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            matches!(phase, Some("Succeeded" | "Failed"))
        })
        .collect();
    if finished.len() > threshold {
        finished.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
        let excess = finished.len() - threshold;
        out.extend(finished.iter().take(excess).map(|p| key(p)));
    }
    // Pods on nodes that are gone (confirmed with the API after the quarantine).
    let mut still_missing = HashSet::new();
    for p in &pods {
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
        match node.filter(|n| !n.is_empty()) {
            Some(n) if !nodes.contains(&n) => {
                let since = *missing_since.entry(n.clone()).or_insert_with(Instant::now);
                still_missing.insert(n.clone());
                let gone = since.elapsed() >= QUARANTINE
                    && matches!(Api::<Node>::all(client.clone()).get_opt(&n).await, Ok(None));
                if gone {
                    out.push(key(p));
                }
            }
            Some(_) => {}
            // Being deleted without ever having been scheduled: nothing will finish it.
            None if p.metadata.deletion_timestamp.is_some() => out.push(key(p)),
            None => {}
        }
    }
    missing_since.retain(|n, _| still_missing.contains(n));
    out
}
