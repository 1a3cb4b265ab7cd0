//! The scheduler: a client of the API like every other component, built like kube-scheduler.
//!
//! - A [`cache::Cache`] of nodes and placed pods is kept current from two watches.
//! - Pending pods wait in a priority [`queue::Queue`] with backoff; pods that fit nowhere are
//!   tried again when the cluster changes.
//! - Each pod is placed in a scheduling cycle on a thread of its own: the [`filters`] run over
//!   the nodes (in parallel in large clusters, stopping once enough feasible nodes are found,
//!   as kube-scheduler's percentageOfNodesToScore does), the [`scores`] rank the feasible
//!   ones, and the pod is assumed on the best node while its binding (`pods/binding`) runs
//!   asynchronously.
//! - A pod that fits nowhere gets the PodScheduled=False condition and a FailedScheduling
//!   event in Kubernetes' words; if it may preempt, lower-priority pods are evicted to make
//!   room ([`preempt`]) and it is nominated to that node.

pub mod cache;
pub mod filters;
pub mod fit;
pub mod metrics;
pub mod preempt;
pub mod queue;
pub mod scores;
pub mod terms;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant};
use tug_api::time::now;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use rayon::prelude::*;
use serde_json::json;

use cache::{Cache, Key};
use filters::{Failure, PodState};
use queue::Queue;

/// The scheduler's name: pods whose `spec.schedulerName` is this are ours.
pub const NAME: &str = "default-scheduler";

/// Pods bound by schedulers in this process.
static BOUND: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many pods schedulers in this process have bound so far.
pub fn bound_total() -> u64 {
    BOUND.load(Ordering::Relaxed)
}

/// How long an unschedulable pod's reason stands before the same reason is reported again
/// (as a higher count on the same event).
const REPORT_AGAIN: Duration = Duration::from_secs(5);

/// Clusters with at least this many nodes are filtered in parallel.
const PARALLEL_NODES: usize = 512;
/// Nodes one parallel task filters.
const CHUNK: usize = 128;

enum Msg {
    Pod(Box<watcher::Event<Pod>>),
    Node(Box<watcher::Event<Node>>),
    Bound { key: Key, ok: bool },
}

/// Aborts the tasks when dropped (with the scheduler).
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Sets the flag when dropped: the scheduling thread stops when `run` is cancelled (as when
/// leadership is lost).
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs the scheduler until the future is dropped.
pub async fn run(client: kube::Client) -> anyhow::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel::<Msg>();
    let stop = Arc::new(AtomicBool::new(false));
    let _stop = StopOnDrop(stop.clone());
    let scheduler = Scheduler {
        client: client.clone(),
        runtime: tokio::runtime::Handle::current(),
        tx: tx.clone(),
        stop,
        cache: Cache::default(),
        queue: Queue::default(),
        synced: (false, false),
        relist_pods: None,
        relist_nodes: None,
        next_start: 0,
        reported: HashMap::new(),
        recorder: Arc::new(tug_events::Recorder::new(client.clone(), NAME)),
        binds: Arc::new(tokio::sync::Semaphore::new(256)),
        changed: false,
        rng: 0x9e37_79b9_7f4a_7c15,
        storage: None,
    };
    // Claims and volumes, for the node affinity of bound PersistentVolumes.
    let (claims, claim_writer) = reflector::store::<PersistentVolumeClaim>();
    let (volumes, volume_writer) = reflector::store::<PersistentVolume>();
    let _watches = AbortOnDrop(vec![
        tokio::spawn(
            reflector(
                claim_writer,
                watcher(Api::all(client.clone()), watcher::Config::default()).default_backoff(),
            )
            .for_each(|_| std::future::ready(())),
        ),
        tokio::spawn(
            reflector(
                volume_writer,
                watcher(Api::all(client.clone()), watcher::Config::default()).default_backoff(),
            )
            .for_each(|_| std::future::ready(())),
        ),
    ]);
    claims.wait_until_ready().await?;
    volumes.wait_until_ready().await?;
    let mut scheduler = scheduler;
    scheduler.storage = Some(filters::Storage { claims, volumes });
    std::thread::Builder::new()
        .name("tug-scheduler".into())
        .spawn(move || scheduler.run(rx))?;
    // Managed fields are of no use here and are most of a pod's size: dropped, as
    // kube-scheduler's informers do.
    let pods = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(|p| p.managed_fields_mut().clear())
        .map(|e| e.map(|ev| Msg::Pod(Box::new(ev))))
        .boxed();
    let nodes = watcher(Api::<Node>::all(client), watcher::Config::default())
        .default_backoff()
        .modify(|n| n.managed_fields_mut().clear())
        .map(|e| e.map(|ev| Msg::Node(Box::new(ev))))
        .boxed();
    let mut events = futures::stream::select(pods, nodes);
    tracing::info!("scheduler started");
    while let Some(ev) = events.next().await {
        match ev {
            Ok(m) => {
                if tx.send(m).is_err() {
                    break;
                }
            }
            Err(e) => tracing::debug!(error = %e, "scheduler watch error; retrying"),
        }
    }
    Ok(())
}

/// How many feasible nodes are enough to choose from, as kube-scheduler's adaptive
/// percentageOfNodesToScore: all of a small cluster, 50% less 1% per 125 nodes of a larger
/// one, never under 5% or 100 nodes.
pub fn feasible_target(nodes: usize) -> usize {
    if nodes < 100 {
        return nodes.max(1);
    }
    let percent = (50 - (nodes / 125) as i64).max(5) as usize;
    (nodes * percent / 100).max(100)
}

struct Scheduler {
    client: kube::Client,
    runtime: tokio::runtime::Handle,
    tx: Sender<Msg>,
    stop: Arc<AtomicBool>,
    cache: Cache,
    queue: Queue,
    /// (nodes, pods) listed.
    synced: (bool, bool),
    relist_pods: Option<HashSet<Key>>,
    relist_nodes: Option<HashSet<String>>,
    next_start: usize,
    reported: HashMap<Key, (String, Instant)>,
    recorder: Arc<tug_events::Recorder>,
    binds: Arc<tokio::sync::Semaphore>,
    /// Something changed that may let unschedulable pods fit.
    changed: bool,
    rng: u64,
    storage: Option<filters::Storage>,
}

fn is_ours(p: &Pod) -> bool {
    p.spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .is_none_or(|n| n == NAME)
}

fn bound_node(p: &Pod) -> Option<String> {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty())
}

impl Scheduler {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut last_flush = Instant::now();
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            loop {
                match rx.try_recv() {
                    Ok(m) => self.handle(m),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            if last_flush.elapsed() >= Duration::from_millis(100) {
                metrics::METRICS.pending.set(self.queue.len() as i64);
                if std::mem::take(&mut self.changed) {
                    self.queue.cluster_changed();
                }
                self.queue.flush(Instant::now());
                last_flush = Instant::now();
            }
            let next = if self.synced == (true, true) {
                self.queue.pop()
            } else {
                None
            };
            match next {
                Some(pod) => self.schedule(pod),
                None => match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(m) => self.handle(m),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                },
            }
        }
    }

    fn handle(&mut self, m: Msg) {
        match m {
            Msg::Pod(ev) => match *ev {
                watcher::Event::Init => self.relist_pods = Some(HashSet::new()),
                watcher::Event::InitApply(p) => {
                    if let Some(seen) = &mut self.relist_pods {
                        seen.insert(cache::key(&p));
                    }
                    self.on_pod(p);
                }
                watcher::Event::InitDone => {
                    if let Some(seen) = self.relist_pods.take() {
                        let gone: Vec<Key> = self
                            .cache
                            .pods
                            .keys()
                            .filter(|k| !seen.contains(*k))
                            .cloned()
                            .collect();
                        for k in gone {
                            self.on_pod_gone(&k);
                        }
                    }
                    self.synced.1 = true;
                }
                watcher::Event::Apply(p) => self.on_pod(p),
                watcher::Event::Delete(p) => self.on_pod_gone(&cache::key(&p)),
            },
            Msg::Node(ev) => {
                match *ev {
                    watcher::Event::Init => self.relist_nodes = Some(HashSet::new()),
                    watcher::Event::InitApply(n) => {
                        if let (Some(seen), Some(name)) = (&mut self.relist_nodes, &n.metadata.name)
                        {
                            seen.insert(name.clone());
                        }
                        self.cache.set_node(Arc::new(n));
                    }
                    watcher::Event::InitDone => {
                        if let Some(seen) = self.relist_nodes.take() {
                            for name in self.cache.node_names() {
                                if !seen.contains(&name) {
                                    self.cache.remove_node(&name);
                                }
                            }
                        }
                        self.synced.0 = true;
                    }
                    watcher::Event::Apply(n) => self.cache.set_node(Arc::new(n)),
                    watcher::Event::Delete(n) => {
                        self.cache
                            .remove_node(n.metadata.name.as_deref().unwrap_or_default());
                    }
                }
                self.changed = true;
            }
            Msg::Bound { key, ok } => {
                if !ok {
                    // Forget the assumption, unless the watch has meanwhile shown the pod bound.
                    if self
                        .cache
                        .pods
                        .get(&key)
                        .is_some_and(|p| bound_node(&p.pod).is_none())
                    {
                        self.cache.remove_pod(&key);
                        self.changed = true;
                    }
                    self.queue.retry_later(&key);
                }
            }
        }
    }

    fn on_pod(&mut self, pod: Pod) {
        let k = cache::key(&pod);
        let terminal = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if let Some(node) = bound_node(&pod) {
            self.queue.remove(&k);
            if terminal {
                self.on_pod_gone(&k);
            } else {
                self.cache.add_pod(Arc::new(pod), &node);
            }
        } else if is_ours(&pod) && pod.metadata.deletion_timestamp.is_none() {
            self.queue.upsert(Arc::new(pod));
        } else {
            self.on_pod_gone(&k);
        }
    }

    fn on_pod_gone(&mut self, k: &Key) {
        self.queue.remove(k);
        if self.reported.remove(k).is_some() {
            self.recorder.forget(&k.0, &k.1);
        }
        self.cache.clear_nomination(k);
        if self.cache.remove_pod(k).is_some() {
            self.changed = true;
        }
    }

    /// Filters the nodes, starting where the last pod left off, until `want` feasible ones
    /// are found. Returns them, the failures seen, and how many nodes were looked at.
    fn find_feasible(
        &self,
        state: &PodState,
        want: usize,
    ) -> (Vec<usize>, Vec<(usize, Failure)>, usize) {
        let n = self.cache.nodes.len();
        let start = self.next_start % n.max(1);
        let cache = &self.cache;
        let one = |j: usize| -> Option<(usize, Result<(), Failure>)> {
            let i = (start + j) % n;
            cache.nodes[i].node.as_ref()?;
            Some((i, filters::check(state, cache, i)))
        };
        let mut feasible = Vec::new();
        let mut failures = Vec::new();
        if n < PARALLEL_NODES {
            let mut scanned = 0;
            for j in 0..n {
                scanned = j + 1;
                match one(j) {
                    Some((i, Ok(()))) => {
                        feasible.push(i);
                        if feasible.len() >= want {
                            break;
                        }
                    }
                    Some((i, Err(f))) => failures.push((i, f)),
                    None => {}
                }
            }
            return (feasible, failures, scanned);
        }
        let found = AtomicUsize::new(0);
        let chunks: Vec<_> = (0..n)
            .step_by(CHUNK)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|c0| {
                let mut ok = Vec::new();
                let mut bad = Vec::new();
                let mut scanned = 0;
                for j in c0..(c0 + CHUNK).min(n) {
                    if found.load(Ordering::Relaxed) >= want {
                        break;
                    }
                    scanned += 1;
                    match one(j) {
                        Some((i, Ok(()))) => {
                            ok.push(i);
                            found.fetch_add(1, Ordering::Relaxed);
                        }
                        Some((i, Err(f))) => bad.push((i, f)),
                        None => {}
                    }
                }
                (ok, bad, scanned)
            })
            .collect();
        let mut scanned = 0;
        for (ok, bad, s) in chunks {
            feasible.extend(ok);
            failures.extend(bad);
            scanned += s;
        }
        feasible.truncate(want);
        (feasible, failures, scanned)
    }

    fn schedule(&mut self, pod: Arc<Pod>) {
        let started = Instant::now();
        let mut state = PodState::new(&mut self.cache, pod);
        if let Some(storage) = &self.storage {
            state.add_volumes(storage);
        }
        let want = feasible_target(self.cache.live_nodes);
        let (feasible, failures, scanned) = self.find_feasible(&state, want);
        self.next_start = (self.next_start + scanned) % self.cache.nodes.len().max(1);
        if feasible.is_empty() {
            self.unschedulable(&state, failures);
            metrics::attempt("unschedulable");
            metrics::METRICS
                .attempt_seconds
                .observe(started.elapsed().as_secs_f64());
            return;
        }
        let scores = scores::score(&state, &mut self.cache, &feasible);
        // The best node; ties broken at random (reservoir sampling), as kube-scheduler does.
        let mut best = (f64::MIN, feasible[0]);
        let mut ties = 0u64;
        for (s, i) in scores.iter().zip(&feasible) {
            if *s > best.0 + 1e-9 {
                best = (*s, *i);
                ties = 1;
            } else if (*s - best.0).abs() <= 1e-9 {
                ties += 1;
                if self.random().is_multiple_of(ties) {
                    best = (*s, *i);
                }
            }
        }
        metrics::METRICS
            .attempt_seconds
            .observe(started.elapsed().as_secs_f64());
        self.bind(state, best.1);
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Assumes the pod on the node and binds it asynchronously.
    fn bind(&mut self, state: PodState, node: usize) {
        let name = self.cache.nodes[node].name.clone();
        let (ns, pod_name) = state.key.clone();
        self.cache.clear_nomination(&state.key);
        self.cache.add_pod(state.pod.clone(), &name);
        self.reported.remove(&state.key);
        let client = self.client.clone();
        let tx = self.tx.clone();
        let permits = self.binds.clone();
        let recorder = self.recorder.clone();
        let uid = state.pod.metadata.uid.clone();
        self.runtime.spawn(async move {
            let permit = permits.acquire_owned().await;
            let api: Api<Pod> = Api::namespaced(client, &ns);
            let binding = json!({
                "apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": pod_name, "namespace": ns},
                "target": {"apiVersion": "v1", "kind": "Node", "name": name},
            });
            let result = api
                .create_subresource::<_, serde_json::Value>(
                    "binding",
                    &pod_name,
                    &PostParams::default(),
                    &binding,
                )
                .await;
            drop(permit);
            match &result {
                Ok(_) => {
                    BOUND.fetch_add(1, Ordering::Relaxed);
                    metrics::attempt("scheduled");
                }
                Err(e) => {
                    metrics::attempt("error");
                    tracing::debug!(pod = %pod_name, node = %name, error = %e, "binding failed; retrying")
                }
            }
            let ok = result.is_ok();
            let _ = tx.send(Msg::Bound {
                key: (ns.clone(), pod_name.clone()),
                ok,
            });
            if ok {
                // As kube-scheduler tells of every binding.
                let message = format!("Successfully assigned {ns}/{pod_name} to {name}");
                recorder
                    .pod_event(&ns, &pod_name, uid.as_deref(), "Normal", "Scheduled", &message)
                    .await;
            }
        });
    }

    fn unschedulable(&mut self, state: &PodState, failures: Vec<(usize, Failure)>) {
        let nodes = self.cache.live_nodes;
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut candidates = Vec::new();
        for (i, f) in &failures {
            for r in &f.reasons {
                *counts.entry(r.clone()).or_default() += 1;
            }
            if f.resolvable {
                candidates.push(*i);
            }
        }
        let mut pre: BTreeMap<String, usize> = BTreeMap::new();
        let message = if nodes == 0 {
            "no nodes available to schedule pods".to_string()
        } else if !preempt::allowed(state) {
            format!(
                "{} preemption: not eligible due to preemptionPolicy=Never.",
                filters::message(nodes, &counts, &pre)
            )
        } else {
            match preempt::plan(state, &self.cache, &candidates) {
                Some(plan) => {
                    let m = filters::message(nodes, &counts, &pre);
                    self.preempt(state, plan);
                    m
                }
                None => {
                    if !candidates.is_empty() {
                        pre.insert(
                            "No preemption victims found for incoming pod".into(),
                            candidates.len(),
                        );
                    }
                    if nodes > candidates.len() {
                        pre.insert(
                            "Preemption is not helpful for scheduling".into(),
                            nodes - candidates.len(),
                        );
                    }
                    filters::message(nodes, &counts, &pre)
                }
            }
        };
        self.queue.unschedulable(&state.key);
        let fresh = self
            .reported
            .get(&state.key)
            .is_none_or(|(m, at)| *m != message || at.elapsed() > REPORT_AGAIN);
        if fresh {
            self.reported
                .insert(state.key.clone(), (message.clone(), Instant::now()));
            let client = self.client.clone();
            let recorder = self.recorder.clone();
            let pod = state.pod.clone();
            self.runtime.spawn(async move {
                report_unschedulable(&client, &recorder, &pod, &message).await
            });
        }
    }

    /// Evicts the victims (with the DisruptionTarget condition, as Kubernetes) and nominates
    /// the node for the preemptor.
    fn preempt(&mut self, state: &PodState, plan: preempt::Plan) {
        let node = self.cache.nodes[plan.node].name.clone();
        tracing::info!(pod = %state.key.1, node = %node, victims = plan.victims.len(), "preempting");
        metrics::METRICS.preemptions.inc();
        self.cache
            .nominate(&state.key, plan.node, state.priority, state.want.clone());
        let client = self.client.clone();
        let (ns, name) = state.key.clone();
        let uid = state.pod.metadata.uid.clone().unwrap_or_default();
        let victims = plan.victims;
        let recorder = self.recorder.clone();
        self.runtime.spawn(async move {
            let now = now();
            for (vns, vname) in victims {
                let api: Api<Pod> = Api::namespaced(client.clone(), &vns);
                let condition = json!({"status": {"conditions": [{"type": "DisruptionTarget",
                    "status": "True", "reason": "PreemptionByScheduler", "lastTransitionTime": now,
                    "message": format!("{NAME}: preempting to accommodate a higher priority pod")}]}});
                let pp = PatchParams {
                    field_manager: Some(NAME.into()),
                    ..Default::default()
                };
                let _ = api
                    .patch_status(&vname, &pp, &Patch::Strategic(&condition))
                    .await;
                if let Err(e) = api.delete(&vname, &DeleteParams::default()).await {
                    tracing::debug!(pod = %vname, error = %e, "evicting a preemption victim failed");
                }
                recorder
                    .pod_event(
                        &vns,
                        &vname,
                        None,
                        "Normal",
                        "Preempted",
                        &format!("Preempted by pod {uid} on node {node}"),
                    )
                    .await;
            }
            let api: Api<Pod> = Api::namespaced(client, &ns);
            let status = json!({"status": {"nominatedNodeName": node}});
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await
            {
                tracing::debug!(pod = %name, error = %e, "recording the nominated node failed");
            }
        });
    }
}

/// Records why a pod cannot be scheduled: the PodScheduled=False condition and a
/// FailedScheduling event, as kube-scheduler does.
async fn report_unschedulable(
    client: &kube::Client,
    recorder: &tug_events::Recorder,
    pod: &Pod,
    message: &str,
) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = json!({"status": {"conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": message, "lastProbeTime": null, "lastTransitionTime": now()}]}});
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pp = PatchParams {
        field_manager: Some(NAME.into()),
        ..Default::default()
    };
    if let Err(e) = pods
        .patch_status(&name, &pp, &Patch::Strategic(&status))
        .await
    {
        tracing::debug!(pod = %name, error = %e, "recording the unschedulable condition failed");
    }
    recorder
        .pod_event(
            &ns,
            &name,
            pod.metadata.uid.as_deref(),
            "Warning",
            "FailedScheduling",
            message,
        )
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feasible_share_shrinks_with_cluster_size() {
        assert_eq!(feasible_target(20), 20);
        assert_eq!(feasible_target(1000), 420);
        assert_eq!(feasible_target(5000), 500);
        assert_eq!(feasible_target(100_000), 5000);
    }
}
