//! WATCH: a stream of ADDED / MODIFIED / DELETED / BOOKMARK / ERROR events from a
//! resourceVersion, fed by one store watch.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tug_api::{ApiError, Resource, meta};
use tug_store::{EventKind, KeyRange};

use super::{ListOptions, Registry, Selectors, decode, prefix, store_error};

/// Options of a watch.
#[derive(Clone, Debug, Default)]
pub struct WatchOptions {
    pub label_selector: String,
    pub field_selector: String,
    pub resource_version: String,
    pub allow_bookmarks: bool,
    pub send_initial_events: Option<bool>,
    pub timeout: Option<Duration>,
}

/// One event of a watch.
#[derive(Debug)]
pub enum WatchEvent {
    /// An event as a JSON value.
    Json(Value),
    /// An ADDED or MODIFIED event whose object is already JSON text (from the watch cache:
    /// encoded once, written to every watcher as is).
    Raw {
        kind: &'static str,
        object: std::sync::Arc<str>,
    },
}

impl WatchEvent {
    /// The event type: ADDED, MODIFIED, DELETED, BOOKMARK or ERROR.
    pub fn kind(&self) -> &str {
        match self {
            WatchEvent::Json(v) => v["type"].as_str().unwrap_or(""),
            WatchEvent::Raw { kind, .. } => kind,
        }
    }

    /// The event as a JSON value.
    pub fn into_value(self) -> Value {
        match self {
            WatchEvent::Json(v) => v,
            WatchEvent::Raw { kind, object } => {
                json!({"type": kind, "object": serde_json::from_str::<Value>(&object).unwrap_or(Value::Null)})
            }
        }
    }

    /// The event as one line of a watch stream.
    pub fn to_line(&self) -> String {
        match self {
            WatchEvent::Json(v) => {
                // Go's order: the type, then the object.
                let mut object = Vec::new();
                tug_api::protobuf::gojson::write(&mut object, &v["object"]);
                format!(
                    "{{\"type\":{},\"object\":{}}}\n",
                    v["type"],
                    String::from_utf8_lossy(&object)
                )
            }
            WatchEvent::Raw { kind, object } => {
                format!("{{\"type\":\"{kind}\",\"object\":{object}}}\n")
            }
        }
    }
}

fn event(kind: &str, object: Value) -> WatchEvent {
    WatchEvent::Json(json!({"type": kind, "object": object}))
}

fn bookmark(r: &Resource, rv: i64, initial_end: bool) -> WatchEvent {
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event(
        "BOOKMARK",
        json!({"kind": r.kind, "apiVersion": r.api_version(), "metadata": metadata}),
    )
}

/// How often an idle watch with bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(5);

impl Registry {
    /// Starts a watch; events arrive on the returned channel until the client goes away, the
    /// timeout passes, or an ERROR event ends it.
    pub async fn watch(
        &self,
        r: &'static Resource,
        namespace: Option<String>,
        opts: WatchOptions,
    ) -> Result<mpsc::Receiver<WatchEvent>, ApiError> {
        let sel = Selectors::parse(r, &opts.label_selector, &opts.field_selector)?;
        let rv = &opts.resource_version;
        // "" and "0" start with the current state as ADDED events, as does sendInitialEvents.
        let initial = opts
            .send_initial_events
            .unwrap_or(rv.is_empty() || rv == "0");
        // The watch cache serves it when it can: one store watch for every watcher.
        if let Ok(cache) = self.caches.get(&self.store, r).await {
            let from = if initial {
                None
            } else {
                Some(rv.parse::<i64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion {rv:?}"))
                })?)
            };
            let served = super::cache::watch(
                &cache,
                r,
                prefix(r, namespace.as_deref()),
                Selectors::parse(r, &opts.label_selector, &opts.field_selector)?,
                from,
                opts.allow_bookmarks,
                opts.send_initial_events == Some(true) && opts.allow_bookmarks,
                opts.timeout,
            )?;
            if let Some(rx) = served {
                return Ok(rx);
            }
        }
        let (tx, rx) = mpsc::channel::<WatchEvent>(256);
        let mut initial_events = Vec::new();
        let start = if initial {
            let list = self
                .list(
                    r,
                    namespace.as_deref(),
                    &ListOptions {
                        label_selector: opts.label_selector.clone(),
                        field_selector: opts.field_selector.clone(),
                        ..Default::default()
                    },
                )
                .await?;
            let list_rv: i64 = meta::resource_version(&list).parse().unwrap_or(0);
            if let Some(items) = list.get("items").and_then(Value::as_array) {
                initial_events.extend(items.iter().cloned().map(|o| event("ADDED", o)));
            }
            if opts.send_initial_events == Some(true) && opts.allow_bookmarks {
                initial_events.push(bookmark(r, list_rv, true));
            }
            list_rv + 1
        } else {
            let n: i64 = rv
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?;
            n + 1
        };
        let stream = self
            .store
            .watch(
                KeyRange::prefix(prefix(r, namespace.as_deref())),
                tug_store::WatchOptions {
                    start_revision: start,
                    prev_kv: true,
                    progress_interval: opts.allow_bookmarks.then_some(BOOKMARK_EVERY),
                },
            )
            .await;
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                let err = store_error(e);
                if err.code == 410 {
                    // A too-old resourceVersion is reported in the stream, as Kubernetes does.
                    let _ = tx.send(event("ERROR", err.to_status())).await;
                    return Ok(rx);
                }
                return Err(err);
            }
        };
        tokio::spawn(async move {
            for e in initial_events {
                if tx.send(e).await.is_err() {
                    return;
                }
            }
            let deadline = opts.timeout.map(|t| tokio::time::Instant::now() + t);
            loop {
                let next = async {
                    match deadline {
                        Some(d) => tokio::time::timeout_at(d, stream.next()).await.ok(),
                        None => Some(stream.next().await),
                    }
                };
                tokio::select! {
                    got = next => match got {
                        None => return, // timeout
                        Some(None) => return,
                        Some(Some(Err(e))) => {
                            let _ = tx.send(event("ERROR", store_error(e).to_status())).await;
                            return;
                        }
                        Some(Some(Ok(resp))) => {
                            if resp.is_progress() {
                                if opts.allow_bookmarks && tx.send(bookmark(r, resp.revision, false)).await.is_err() {
                                    return;
                                }
                                continue;
                            }
                            for ev in resp.events {
                                if let Some(out) = translate(r, &sel, ev)
                                    && tx.send(out).await.is_err()
                                {
                                    return;
                                }
                            }
                        }
                    },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(rx)
    }
}

/// Turns a store event into a watch event, applying the selectors the way Kubernetes does:
/// an object that starts matching is ADDED, one that stops matching is DELETED.
fn translate(r: &Resource, sel: &Selectors, ev: tug_store::Event) -> Option<WatchEvent> {
    let prev = ev
        .prev_kv
        .as_ref()
        .and_then(|p| decode(r, p, p.mod_revision).ok());
    let prev_matches = prev.as_ref().is_some_and(|p| sel.matches(r, p));
    match ev.kind {
        EventKind::Put => {
            let obj = decode(r, &ev.kv, ev.kv.mod_revision).ok()?;
            let now = sel.matches(r, &obj);
            match (prev.is_some() && prev_matches, now) {
                (false, true) => Some(event("ADDED", obj)),
                (true, true) => Some(event("MODIFIED", obj)),
                (true, false) => Some(event("DELETED", obj)),
                (false, false) => None,
            }
        }
        EventKind::Delete => {
            let mut obj = prev?;
            if !prev_matches {
                return None;
            }
            meta::set(&mut obj, "resourceVersion", ev.kv.mod_revision.to_string());
            Some(event("DELETED", obj))
        }
    }
}
