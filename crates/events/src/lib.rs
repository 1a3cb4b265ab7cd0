//! Events, recorded as client-go's event recorder does: the same reason and message about
//! the same object again raises the first event's `count` and `lastTimestamp` instead of
//! adding another, and each object gets at most 25 events in a burst, then one per five
//! minutes (the spam filter), so that a controller creating 10,000 pods writes a few events,
//! not 10,000.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tug_api::time::now;

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// (namespace, object, reason, message): what makes two events the same.
type Identity = (String, String, String, String);

/// Events an object may get at once, and how often one more is allowed after that.
const BURST: f64 = 25.0;
const REFILL: Duration = Duration::from_secs(300);

/// The object an event is about.
#[derive(Clone, Debug, Default)]
pub struct Involved {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    /// The part of the object the event is about (`spec.containers{web}`).
    pub field_path: Option<String>,
}

impl Involved {
    /// The object `obj` of a kube-rs resource type.
    pub fn of<K: kube::Resource<DynamicType = ()>>(obj: &K) -> Self {
        Self {
            api_version: K::api_version(&()).to_string(),
            kind: K::kind(&()).to_string(),
            namespace: obj.meta().namespace.clone().unwrap_or_default(),
            name: obj.meta().name.clone().unwrap_or_default(),
            uid: obj.meta().uid.clone(),
            field_path: None,
        }
    }

    /// A pod by namespace and name.
    pub fn pod(namespace: &str, name: &str, uid: Option<&str>) -> Self {
        Self {
            api_version: "v1".into(),
            kind: "Pod".into(),
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.map(str::to_string),
            field_path: None,
        }
    }

    /// The same object, narrowed to one of its parts.
    pub fn field(mut self, path: &str) -> Self {
        self.field_path = Some(path.to_string());
        self
    }
}

/// Events already recorded, by identity: the event's name and its count.
const REMEMBERED: usize = 10_000;

/// Records events for one component.
pub struct Recorder {
    client: kube::Client,
    component: &'static str,
    seen: Mutex<HashMap<Identity, (String, i32)>>,
    /// Tokens left per object (namespace, name) and when they were counted.
    buckets: Mutex<HashMap<(String, String), (f64, Instant)>>,
}

impl Recorder {
    /// A recorder writing as `component`.
    pub fn new(client: kube::Client, component: &'static str) -> Self {
        Self {
            client,
            component,
            seen: Mutex::default(),
            buckets: Mutex::default(),
        }
    }

    /// Takes a token for an event about `(ns, name)`; false when the object has had its share.
    fn allow(&self, ns: &str, name: &str) -> bool {
        let Ok(mut b) = self.buckets.lock() else {
            return true;
        };
        if b.len() >= REMEMBERED {
            b.retain(|_, (_, at)| at.elapsed() < REFILL * 25);
        }
        let now = Instant::now();
        let (tokens, at) = b
            .entry((ns.to_string(), name.to_string()))
            .or_insert((BURST, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() / REFILL.as_secs_f64()).min(BURST);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Records an event about pod `ns/name`.
    pub async fn pod_event(
        &self,
        ns: &str,
        name: &str,
        uid: Option<&str>,
        kind: &str,
        reason: &str,
        message: &str,
    ) {
        self.event(&Involved::pod(ns, name, uid), kind, reason, message)
            .await;
    }

    /// Records an event (`kind` Normal or Warning) about an object.
    pub async fn event(&self, about: &Involved, kind: &str, reason: &str, message: &str) {
        let (ns, name) = (about.namespace.as_str(), about.name.as_str());
        if !self.allow(ns, name) {
            return;
        }
        let id: Identity = (ns.into(), name.into(), reason.into(), message.into());
        let prior = self.seen.lock().ok().and_then(|s| s.get(&id).cloned());
        let events: Api<Event> = Api::namespaced(self.client.clone(), ns);
        let now = now();
        if let Some((event, count)) = prior {
            let patch = json!({"count": count + 1, "lastTimestamp": now});
            let bumped = events
                .patch(&event, &PatchParams::default(), &Patch::Merge(&patch))
                .await;
            if bumped.is_ok() {
                if let Ok(mut s) = self.seen.lock() {
                    s.insert(id, (event, count + 1));
                }
                return;
            }
            // The event is gone (expired or deleted): record it afresh.
        }
        let nanos = jiff::Timestamp::now().as_nanosecond();
        let event_name = format!("{name}.{nanos:x}");
        let event: Event = match serde_json::from_value(json!({
            "metadata": {"name": event_name, "namespace": ns},
            "involvedObject": {"kind": about.kind, "namespace": ns, "name": name, "uid": about.uid,
                "apiVersion": about.api_version, "fieldPath": about.field_path},
            "reason": reason, "message": message, "type": kind,
            "source": {"component": self.component}, "reportingComponent": self.component,
            "reportingInstance": self.component,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        })) {
            Ok(e) => e,
            Err(_) => return,
        };
        match events.create(&PostParams::default(), &event).await {
            Ok(_) => {
                if let Ok(mut s) = self.seen.lock() {
                    if s.len() >= REMEMBERED {
                        s.clear();
                    }
                    s.insert(id, (event_name, 1));
                }
            }
            Err(e) => tracing::debug!(pod = %name, error = %e, "recording an event failed"),
        }
    }

    /// Forgets what was recorded about an object that is gone.
    pub fn forget(&self, ns: &str, name: &str) {
        if let Ok(mut s) = self.seen.lock() {
            s.retain(|(n, o, _, _), _| n != ns || o != name);
        }
    }
}
