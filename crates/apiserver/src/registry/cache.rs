//! The watch cache: per stored resource, the current objects and a window of recent events,
//! fed by one store watch. Objects are held as their JSON text, encoded once: a list or a
//! watch without selectors writes that text as is. Watches (and lists that accept any recent state, `resourceVersion=0`)
//! are served from memory, so a thousand watchers cost one store watch; each watcher reads the
//! shared events at its own pace, and one that falls behind the window is ended with 410 Gone
//! (it relists, as clients do) instead of holding anyone up.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tug_api::{ApiError, Resource, meta};
use tug_store::{EventKind, KeyRange, RangeOptions, Store};

use super::{Selectors, WatchEvent, decode, prefix, store_error};

/// Events kept for watches that resume from a resourceVersion.
const WINDOW: usize = 10_000;
/// Live events buffered per watcher before it counts as fallen behind.
const FANOUT: usize = 4096;

/// One change, as the cache saw it.
#[derive(Debug)]
pub(crate) struct Change {
    pub revision: i64,
    pub key: String,
    /// The object after the change (JSON); `None` for a deletion.
    pub object: Option<Arc<str>>,
    /// The object before it.
    pub previous: Option<Arc<str>>,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Arc<str>>,
    /// Every change up to here is applied.
    revision: i64,
    window: VecDeque<Arc<Change>>,
    /// The cache has failed (its store watch ended); requests go to the store.
    broken: bool,
    /// History up to here was compacted away in the store: watches from before it are sent to
    /// the store, which answers 410 Gone.
    compacted: i64,
}

/// The cache of one storage prefix.
pub(crate) struct WatchCache {
    /// apiVersion and kind the cached text carries.
    stamped: (String, &'static str),
    state: RwLock<State>,
    tx: broadcast::Sender<Arc<Change>>,
    /// The revision the cache is at, for requests waiting to be consistent.
    revision: tokio::sync::watch::Sender<i64>,
    /// Asks the current store watch for a progress notification.
    progress: Mutex<tug_store::ProgressHandle>,
    /// Set when the cache gives up: its watches end.
    ended: tokio::sync::watch::Sender<bool>,
}

/// How the cache watches the store from `revision` on.
fn watch_options(revision: i64) -> tug_store::WatchOptions {
    tug_store::WatchOptions {
        start_revision: revision,
        prev_kv: true,
        progress_interval: Some(Duration::from_secs(1)),
    }
}

/// Longest pause between attempts to watch the store again.
const REWATCH_MAX_PAUSE: Duration = Duration::from_secs(2);

/// Feeds a cache from its store watch for as long as the cache is in use. A store watch that
/// breaks (its etcd member restarting, a leader change) is resumed from the revision after the
/// last one applied, so nothing is missed and watchers never notice; only when that history is
/// gone (compacted) does the cache end, and with it its watches.
async fn feed(
    cache: std::sync::Weak<WatchCache>,
    store: Arc<dyn Store>,
    r: Resource,
    p: String,
    mut stream: tug_store::WatchStream,
) {
    loop {
        let lost = loop {
            match stream.next().await {
                Some(Ok(resp)) => match cache.upgrade() {
                    Some(cache) => cache.apply(&r, resp),
                    None => return,
                },
                Some(Err(e)) => break e,
                None => break tug_store::Error::Internal("store watch ended".into()),
            }
        };
        let Some(current) = cache.upgrade() else {
            return;
        };
        let Ok(from) = current.state.read().map(|s| s.revision + 1) else {
            return;
        };
        if matches!(lost, tug_store::Error::Compacted { .. }) {
            tracing::warn!(prefix = %p, from, "watch cache history compacted away; its watches end");
            current.end();
            return;
        }
        drop(current);
        tracing::warn!(prefix = %p, error = %lost, from, "watch cache lost its store watch; resuming");
        let mut pause = Duration::from_millis(100);
        stream = loop {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(REWATCH_MAX_PAUSE);
            let result = store
                .watch(KeyRange::prefix(p.clone()), watch_options(from))
                .await;
            let Some(current) = cache.upgrade() else {
                return;
            };
            match result {
                Ok(s) => {
                    if let Ok(mut progress) = current.progress.lock() {
                        *progress = s.progress_handle();
                    }
                    break s;
                }
                Err(tug_store::Error::Compacted { .. }) => {
                    tracing::warn!(prefix = %p, from, "watch cache history compacted away; its watches end");
                    current.end();
                    return;
                }
                Err(e) => {
                    tracing::debug!(prefix = %p, error = %e, "watching the store again failed; retrying");
                }
            }
        };
    }
}

/// How long a consistent read waits for the cache to catch up before reading the store.
const FRESH_WAIT: Duration = Duration::from_millis(250);

/// Every cache, by storage prefix.
#[derive(Default)]
pub(crate) struct Caches {
    by_prefix: Mutex<HashMap<String, Arc<WatchCache>>>,
}

fn lock_err() -> ApiError {
    ApiError::internal("watch cache lock poisoned")
}

impl Caches {
    /// Drops history the store compacted away from every cache's window.
    pub fn compacted(&self, revision: i64) {
        let Ok(all) = self.by_prefix.lock() else {
            return;
        };
        for cache in all.values() {
            if let Ok(mut s) = cache.state.write() {
                s.compacted = s.compacted.max(revision);
                s.window.retain(|c| c.revision > revision);
            }
        }
    }

    /// The cache of a resource, started (listed and watched) on first use.
    pub async fn get(
        &self,
        store: &Arc<dyn Store>,
        r: &Resource,
    ) -> Result<Arc<WatchCache>, ApiError> {
        let p = prefix(r, None);
        if let Some(c) = self.by_prefix.lock().map_err(|_| lock_err())?.get(&p)
            && !c.state.read().map_err(|_| lock_err())?.broken
        {
            return Ok(c.clone());
        }
        let cache = WatchCache::start(store.clone(), super::convert::stored_as(r), &p).await?;
        let mut all = self.by_prefix.lock().map_err(|_| lock_err())?;
        // Another request may have started one meanwhile; keep the first.
        let kept = all.entry(p).or_insert_with(|| cache.clone()).clone();
        Ok(kept)
    }
}

impl WatchCache {
    async fn start(
        store: Arc<dyn Store>,
        r: &Resource,
        p: &str,
    ) -> Result<Arc<WatchCache>, ApiError> {
        let resp = store
            .range(KeyRange::prefix(p.to_string()), RangeOptions::default())
            .await
            .map_err(store_error)?;
        let mut state = State {
            revision: resp.revision,
            ..Default::default()
        };
        for kv in &resp.kvs {
            state.objects.insert(
                String::from_utf8_lossy(&kv.key).into_owned(),
                Arc::from(go_text(&decode(r, kv, kv.mod_revision)?)),
            );
        }
        let stream = store
            .watch(
                KeyRange::prefix(p.to_string()),
                watch_options(resp.revision + 1),
            )
            .await
            .map_err(store_error)?;
        let (tx, _) = broadcast::channel(FANOUT);
        let cache = Arc::new(WatchCache {
            stamped: (r.api_version(), r.kind),
            revision: tokio::sync::watch::Sender::new(state.revision),
            state: RwLock::new(state),
            tx,
            progress: Mutex::new(stream.progress_handle()),
            ended: tokio::sync::watch::Sender::new(false),
        });
        tokio::spawn(feed(
            Arc::downgrade(&cache),
            store,
            r.clone(),
            p.to_string(),
            stream,
        ));
        Ok(cache)
    }

    /// Marks the cache broken (requests go to the store, a new cache is started on next use)
    /// and ends its watches: their clients resume from where they were, as from any ended watch.
    fn end(&self) {
        if let Ok(mut s) = self.state.write() {
            s.broken = true;
        }
        self.ended.send_replace(true);
    }

    fn apply(&self, r: &Resource, resp: tug_store::WatchResponse) {
        let Ok(mut s) = self.state.write() else {
            return;
        };
        for ev in resp.events {
            let key = String::from_utf8_lossy(&ev.kv.key).into_owned();
            let previous = s.objects.get(&key).cloned();
            let object: Option<Arc<str>> = match ev.kind {
                EventKind::Put => match decode(r, &ev.kv, ev.kv.mod_revision) {
                    Ok(o) => Some(Arc::from(go_text(&o))),
                    Err(_) => continue,
                },
                EventKind::Delete => None,
            };
            match &object {
                Some(o) => {
                    s.objects.insert(key.clone(), o.clone());
                }
                None => {
                    s.objects.remove(&key);
                }
            }
            let change = Arc::new(Change {
                revision: ev.kv.mod_revision,
                key,
                object,
                previous,
            });
            s.revision = s.revision.max(change.revision);
            if s.window.len() == WINDOW {
                s.window.pop_front();
            }
            s.window.push_back(change.clone());
            // Sent while holding the lock, so subscribers that snapshot under it see no gap.
            let _ = self.tx.send(change);
        }
        s.revision = s.revision.max(resp.revision);
        let at = s.revision;
        drop(s);
        self.revision.send_replace(at);
    }

    /// Waits until the cache holds everything the store held when this was called, so that a
    /// consistent read can be served from memory (the way kube-apiserver asks etcd for a
    /// progress notification). False when that takes too long or the cache is broken.
    pub async fn fresh(&self, store: &Arc<dyn Store>) -> bool {
        let Ok(target) = store.current_revision().await else {
            return false;
        };
        let mut rx = self.revision.subscribe();
        if *rx.borrow() >= target {
            return true;
        }
        if let Ok(progress) = self.progress.lock() {
            progress.request();
        }
        tokio::time::timeout(FRESH_WAIT, rx.wait_for(|r| *r >= target))
            .await
            .is_ok_and(|r| r.is_ok())
            && self.state.read().is_ok_and(|s| !s.broken)
    }

    /// Whether the cached text carries `r`'s apiVersion and kind (versions of one resource
    /// share a cache) and nothing else is added on read.
    pub fn stamped_for(&self, r: &Resource) -> bool {
        self.stamped.0 == r.api_version()
            && self.stamped.1 == r.kind
            && !super::convert::converts(r)
            // Defaults of a definition that changed since the text was cached.
            && !r.custom.is_some_and(|c| c.defaults)
    }

    /// The objects under `prefix` (a namespace's, or all) and the revision they are at.
    pub fn snapshot(&self, prefix: &str) -> Result<(Vec<Arc<str>>, i64), ApiError> {
        let s = self.state.read().map_err(|_| lock_err())?;
        let items = s
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        Ok((items, s.revision))
    }
}

/// An object's text as kube-apiserver writes it (Go's field order): cached once, written to
/// every reader as is.
fn go_text(o: &Value) -> String {
    let mut out = Vec::new();
    tug_api::protobuf::gojson::write(&mut out, o);
    String::from_utf8(out).unwrap_or_default()
}

/// Parses cached text.
pub(crate) fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// An object as served for `r` (its apiVersion and kind).
fn served(r: &Resource, o: &str) -> Value {
    let mut o = parse(o);
    super::convert::to_served(r, &mut o);
    o
}

/// The watch event a change makes for a watcher with these selectors, if any. Without
/// selectors and in the cache's own version, the cached text goes out as is.
fn event_for(cache: &WatchCache, r: &Resource, sel: &Selectors, c: &Change) -> Option<WatchEvent> {
    let raw = sel.is_empty() && cache.stamped_for(r);
    let (before, now) = if sel.is_empty() {
        (c.previous.is_some(), c.object.is_some())
    } else {
        (
            c.previous
                .as_deref()
                .is_some_and(|o| sel.matches(r, &served(r, o))),
            c.object
                .as_deref()
                .is_some_and(|o| sel.matches(r, &served(r, o))),
        )
    };
    let kind = match (before, now) {
        (false, true) => "ADDED",
        (true, true) => "MODIFIED",
        (true, false) => "DELETED",
        (false, false) => return None,
    };
    match (&c.object, kind) {
        (Some(o), "ADDED" | "MODIFIED") if raw => Some(WatchEvent::Raw {
            kind,
            object: o.clone(),
        }),
        (Some(o), _) => Some(WatchEvent::Json(
            json!({"type": kind, "object": served(r, o)}),
        )),
        (None, _) => {
            let mut o = served(r, c.previous.as_deref().unwrap_or("{}"));
            meta::set(&mut o, "resourceVersion", c.revision.to_string());
            Some(WatchEvent::Json(json!({"type": "DELETED", "object": o})))
        }
    }
}

/// A watch served from the cache: `from` is the resourceVersion to resume after (`None`: start
/// with the current objects as ADDED events). `Ok(None)` when `from` is older than the window
/// (the caller falls back to the store).
#[allow(clippy::too_many_arguments)]
pub(crate) fn watch(
    cache: &Arc<WatchCache>,
    r: &'static Resource,
    namespace_prefix: String,
    sel: Selectors,
    from: Option<i64>,
    bookmarks: bool,
    initial_events_end: bool,
    timeout: Option<Duration>,
) -> Result<Option<mpsc::Receiver<WatchEvent>>, ApiError> {
    let (mut live, mut backlog, revision) = {
        let s = cache.state.read().map_err(|_| lock_err())?;
        let live = cache.tx.subscribe();
        let raw = sel.is_empty() && cache.stamped_for(r);
        let backlog: Vec<WatchEvent> = match from {
            None => s
                .objects
                .range(namespace_prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&namespace_prefix))
                .filter_map(|(_, o)| {
                    if raw {
                        return Some(WatchEvent::Raw {
                            kind: "ADDED",
                            object: o.clone(),
                        });
                    }
                    let v = served(r, o);
                    sel.matches(r, &v)
                        .then(|| WatchEvent::Json(json!({"type": "ADDED", "object": v})))
                })
                .collect(),
            Some(rv) => {
                let oldest = s.window.front().map_or(s.revision + 1, |c| c.revision);
                if (rv + 1 < oldest && rv < s.revision) || rv < s.compacted {
                    return Ok(None);
                }
                s.window
                    .iter()
                    .filter(|c| c.revision > rv && c.key.starts_with(&namespace_prefix))
                    .filter_map(|c| event_for(cache, r, &sel, c))
                    .collect()
            }
        };
        (live, backlog, s.revision)
    };
    if initial_events_end {
        backlog.push(WatchEvent::Json(json!({"type": "BOOKMARK", "object": {
            "kind": r.kind, "apiVersion": r.api_version(),
            "metadata": {"resourceVersion": revision.to_string(),
                         "annotations": {"k8s.io/initial-events-end": "true"}}}})));
    }
    let cache = cache.clone();
    let mut ended = cache.ended.subscribe();
    if *ended.borrow() {
        return Ok(None);
    }
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        for e in backlog {
            if tx.send(e).await.is_err() {
                return;
            }
        }
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut last = revision;
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.tick().await;
        loop {
            let until = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                got = live.recv() => match got {
                    Ok(c) => {
                        // A watch from a future resourceVersion skips what comes before it.
                        if from.is_some_and(|rv| c.revision <= rv) {
                            continue;
                        }
                        last = last.max(c.revision);
                        if c.key.starts_with(&namespace_prefix)
                            && let Some(e) = event_for(&cache, r, &sel, &c)
                            && tx.send(e).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Fallen behind the shared buffer: end with 410; the client relists.
                        let status = ApiError::gone(format!(
                            "too old resource version: the watcher fell behind after {last}"
                        ))
                        .to_status();
                        let _ = tx.send(WatchEvent::Json(json!({"type": "ERROR", "object": status}))).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick(), if bookmarks => {
                    // With nothing left unread, everything up to the cache's revision was seen.
                    if live.is_empty()
                        && let Ok(s) = cache.state.read()
                    {
                        last = last.max(s.revision);
                    }
                    let bookmark = WatchEvent::Json(json!({"type": "BOOKMARK", "object": {
                        "kind": r.kind, "apiVersion": r.api_version(),
                        "metadata": {"resourceVersion": last.to_string()}}}));
                    if tx.send(bookmark).await.is_err() {
                        return;
                    }
                }
                _ = until => return,
                _ = tx.closed() => return,
                // The only change is to ended.
                _ = ended.changed() => return,
            }
        }
    });
    Ok(Some(rx))
}
