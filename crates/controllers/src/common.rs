//! What the controllers share: the error type, watched stores of pods and replica sets, and
//! the expectations that keep a controller from acting twice on state its own writes have not
//! reached yet.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::Api;
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

/// A reconcile failure; the loop retries with backoff.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error(e.to_string())
    }
}

/// What a controller can watch and cache: a kube-rs resource type.
pub trait Object:
    kube::Resource<DynamicType = ()>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
    + Send
    + Sync
    + 'static
{
}

impl<T> Object for T where
    T: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// Stores every controller reads from, kept current by one watch each, and the changes of
/// those watches fanned out to the controllers that react to them (so that a pod change is
/// decoded once, not once per controller).
#[derive(Clone)]
pub struct Shared {
    pub pods: Store<Pod>,
    pub nodes: Store<Node>,
    pub replicasets: Store<ReplicaSet>,
    pub expectations: Arc<Expectations>,
    /// Replica counts controllers set on objects (by uid) and have not yet seen in their
    /// stores: until they do, the stores are stale for those objects.
    pub scaled: Arc<Mutex<HashMap<String, (i32, Instant)>>>,
    client: kube::Client,
    recorders: Arc<Mutex<HashMap<&'static str, Arc<tug_events::Recorder>>>>,
    pod_changes: broadcast::Sender<Arc<Pod>>,
    replicaset_changes: broadcast::Sender<Arc<ReplicaSet>>,
}

/// Changes buffered per subscriber; one that falls further behind misses changes (and
/// catches up at its periodic resync).
const FANOUT: usize = 4096;

fn watch_into<K>(api: Api<K>) -> (Store<K>, broadcast::Sender<Arc<K>>)
where
    K: Object,
{
    let (store, writer) = reflector::store();
    let (tx, _) = broadcast::channel(FANOUT);
    let changes = tx.clone();
    let stream = reflector(
        writer,
        watcher(api, watcher::Config::default())
            .default_backoff()
            // Managed fields are of no use to controllers and are most of an object's size.
            .modify(|o| o.managed_fields_mut().clear()),
    )
    .for_each(move |ev| {
        // Applied and deleted objects alike: owners react to both.
        if let Ok(
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o),
        ) = ev
        {
            let _ = changes.send(Arc::new(o));
        }
        std::future::ready(())
    });
    tokio::spawn(stream);
    (store, tx)
}

/// A stream of the changes a sender fans out.
fn subscribe<K: Clone + Send + Sync + 'static>(
    tx: &broadcast::Sender<Arc<K>>,
) -> BoxStream<'static, Arc<K>> {
    BroadcastStream::new(tx.subscribe())
        .filter_map(|r| std::future::ready(r.ok()))
        .boxed()
}

/// The objects of a watch of their own, for owners of a kind no one else watches.
pub fn watch_changes<K>(api: Api<K>) -> BoxStream<'static, Arc<K>>
where
    K: Object,
{
    watcher(api, watcher::Config::default())
        .default_backoff()
        .touched_objects()
        .filter_map(|r| std::future::ready(r.ok().map(Arc::new)))
        .boxed()
}

impl Shared {
    /// Starts the watches and waits for their first lists.
    pub async fn start(client: kube::Client) -> Self {
        let (pods, pod_changes) = watch_into(Api::<Pod>::all(client.clone()));
        let (replicasets, replicaset_changes) = watch_into(Api::<ReplicaSet>::all(client.clone()));
        let (nodes, _) = watch_into(Api::<Node>::all(client.clone()));
        let _ = pods.wait_until_ready().await;
        let _ = nodes.wait_until_ready().await;
        let _ = replicasets.wait_until_ready().await;
        Self {
            pods,
            nodes,
            replicasets,
            expectations: Arc::default(),
            scaled: Arc::default(),
            client,
            recorders: Arc::default(),
            pod_changes,
            replicaset_changes,
        }
    }

    /// The event recorder of a controller (`replicaset-controller`, ...), made on first use.
    pub fn recorder(&self, component: &'static str) -> Arc<tug_events::Recorder> {
        match self.recorders.lock() {
            Ok(mut m) => m
                .entry(component)
                .or_insert_with(|| {
                    Arc::new(tug_events::Recorder::new(self.client.clone(), component))
                })
                .clone(),
            Err(_) => Arc::new(tug_events::Recorder::new(self.client.clone(), component)),
        }
    }

    /// Pod changes (applied or deleted), from now on.
    pub fn pod_changes(&self) -> BoxStream<'static, Arc<Pod>> {
        subscribe(&self.pod_changes)
    }

    /// ReplicaSet changes (applied or deleted), from now on.
    pub fn replicaset_changes(&self) -> BoxStream<'static, Arc<ReplicaSet>> {
        subscribe(&self.replicaset_changes)
    }
}

/// A short, stable hash of the pod template (FNV-1a over its JSON), as the hash label.
pub fn template_hash(template: &serde_json::Value) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in template.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut out = String::new();
    for _ in 0..10 {
        out.push(ALPHABET[(h % ALPHABET.len() as u64) as usize] as char);
        h /= ALPHABET.len() as u64;
    }
    out
}

/// Makes sure a ControllerRevision named `revision`, owned by `owner`, records `template`
/// (numbered after the owner's other revisions), as StatefulSets and DaemonSets keep their
/// history for `kubectl rollout history`.
pub async fn record_revision<K: Resource<DynamicType = ()>>(
    client: &kube::Client,
    owner: &K,
    revision: &str,
    labels: Option<std::collections::BTreeMap<String, String>>,
    template: &serde_json::Value,
) -> Result<(), Error> {
    use k8s_openapi::api::apps::v1::ControllerRevision;
    let ns = owner.meta().namespace.clone().unwrap_or_default();
    let uid = owner.meta().uid.clone().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    if api.get_opt(revision).await?.is_some() {
        return Ok(());
    }
    let number = api
        .list(&kube::api::ListParams::default())
        .await?
        .items
        .iter()
        .filter(|r| controlled_by(r.metadata.owner_references.as_ref(), &uid))
        .filter_map(|r| r.revision)
        .max()
        .unwrap_or(0)
        + 1;
    let cr: ControllerRevision = serde_json::from_value(serde_json::json!({
        "metadata": {"name": revision, "namespace": ns, "labels": labels,
            "ownerReferences": owner_ref(owner).map(|r| vec![r])},
        "data": {"spec": {"template": template}},
        "revision": number,
    }))
    .map_err(|e| Error(e.to_string()))?;
    match api.create(&post_params(), &cr).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether `owner` (by uid) is the controller of an object.
pub fn controlled_by(refs: Option<&Vec<OwnerReference>>, uid: &str) -> bool {
    refs.is_some_and(|r| r.iter().any(|o| o.uid == uid && o.controller == Some(true)))
}

/// The owner reference a controller puts on what it creates.
pub fn owner_ref<K: Resource<DynamicType = ()>>(owner: &K) -> Option<OwnerReference> {
    let mut r = owner.controller_owner_ref(&())?;
    r.block_owner_deletion = Some(true);
    Some(r)
}

/// Names a controller created or deleted and has not yet seen come or go in its stores.
#[derive(Default)]
pub struct Expectations {
    pending: Mutex<HashMap<String, Expected>>,
}

/// What one owner waits to see: names to appear, names to disappear, since when.
type Expected = (HashSet<String>, HashSet<String>, Instant);

/// How long an expectation holds before the controller acts anyway.
const EXPECTATION_TTL: Duration = Duration::from_secs(30);

impl Expectations {
    /// Records creations and deletions made for `owner`.
    pub fn expect(&self, owner: &str, created: Vec<String>, deleted: Vec<String>) {
        if let Ok(mut p) = self.pending.lock() {
            let e = p
                .entry(owner.to_string())
                .or_insert_with(|| (HashSet::new(), HashSet::new(), Instant::now()));
            e.0.extend(created);
            e.1.extend(deleted);
            e.2 = Instant::now();
        }
    }

    /// Whether everything expected for `owner` has been seen, given the names that exist.
    pub fn satisfied(&self, owner: &str, existing: &HashSet<String>) -> bool {
        let Ok(mut p) = self.pending.lock() else {
            return true;
        };
        let Some(e) = p.get_mut(owner) else {
            return true;
        };
        e.0.retain(|n| !existing.contains(n));
        e.1.retain(|n| existing.contains(n));
        let done = (e.0.is_empty() && e.1.is_empty()) || e.2.elapsed() > EXPECTATION_TTL;
        if done {
            p.remove(owner);
        }
        done
    }
}

/// The field manager the controllers write as.
pub const MANAGER: &str = "kube-controller-manager";

/// Patch parameters naming the controllers' field manager.
pub fn patch_params() -> kube::api::PatchParams {
    kube::api::PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    }
}

/// Create parameters naming the controllers' field manager.
pub fn post_params() -> kube::api::PostParams {
    kube::api::PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    }
}

/// Whether a pod counts as Ready.
pub fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether a pod is still part of its controller's count (not finished, not being deleted).
pub fn pod_active(p: &Pod) -> bool {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    p.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// Runs the reconcile loop of a controller of `K` that owns `C`s: reconciles on every change
/// of either (kube-rs' `Controller`: watch, queue, reconcile, requeue). The one pattern every
/// controller follows.
pub async fn run_owning<K, C, F, Fut>(
    client: kube::Client,
    shared: Shared,
    children: BoxStream<'static, Arc<C>>,
    reconcile: F,
) where
    K: Object,
    C: Object,
    F: Fn(kube::Client, Arc<K>, Arc<Shared>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<kube::runtime::controller::Action, Error>>
        + Send
        + 'static,
{
    kube::runtime::Controller::new(Api::<K>::all(client.clone()), watcher::Config::default())
        .owns_shared_stream(children)
        .run(
            move |obj, ctx| reconcile(client.clone(), obj, ctx),
            retry,
            Arc::new(shared),
        )
        .for_each(|_| async {})
        .await;
}

/// Runs the reconcile loop of a controller of `K` that follows the pods it selects (a
/// Service, a PodDisruptionBudget, a ResourceQuota): reconciles on every change of a `K`, and
/// of every pod `follows(k, pod)` says it cares about, from the shared pod watch.
pub async fn run_following_pods<K, F, Fut>(
    client: kube::Client,
    shared: Shared,
    follows: fn(&K, &Pod) -> bool,
    reconcile: F,
) where
    K: Object,
    F: Fn(kube::Client, Arc<K>, Arc<Shared>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<kube::runtime::controller::Action, Error>>
        + Send
        + 'static,
{
    let controller =
        kube::runtime::Controller::new(Api::<K>::all(client.clone()), watcher::Config::default());
    let objects = controller.store();
    let pod_changes = shared.pod_changes();
    controller
        .watches_shared_stream(pod_changes, move |pod: Arc<Pod>| {
            objects
                .state()
                .into_iter()
                .filter(|k| follows(k, &pod))
                .map(|k| kube::runtime::reflector::ObjectRef::from_obj(k.as_ref()))
                .collect::<Vec<_>>()
        })
        .run(
            move |obj, ctx| reconcile(client.clone(), obj, ctx),
            retry,
            Arc::new(shared),
        )
        .for_each(|_| async {})
        .await;
}

/// The pod label naming the template revision a pod was made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// The template revision a pod was made from (empty when unlabelled).
pub fn revision_of(p: &Pod) -> String {
    p.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_LABEL))
        .cloned()
        .unwrap_or_default()
}

/// The error policy every controller uses: retry after a short pause.
pub(crate) fn retry<K>(_: Arc<K>, e: &Error, _: Arc<Shared>) -> kube::runtime::controller::Action {
    tracing::debug!(error = %e, "reconcile failed; retrying");
    kube::runtime::controller::Action::requeue(Duration::from_secs(1))
}
