//! Events, aggregated as Kubernetes' event recorder does: the same reason and message about
//! the same object again raises the first event's `count` and `lastTimestamp` instead of
//! adding another.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// (namespace, object, reason, message): what makes two events the same.
type Identity = (String, String, String, String);

/// Events already recorded, by identity: the event's name and its count.
const REMEMBERED: usize = 10_000;

/// Records events about pods for one component.
pub struct Recorder {
    client: kube::Client,
    component: &'static str,
    seen: Mutex<HashMap<Identity, (String, i32)>>,
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl Recorder {
    /// A recorder writing as `component`.
    pub fn new(client: kube::Client, component: &'static str) -> Self {
        Self {
            client,
            component,
            seen: Mutex::default(),
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
            "involvedObject": {"kind": "Pod", "namespace": ns, "name": name, "uid": uid, "apiVersion": "v1"},
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

    /// Forgets what was recorded about a pod that is gone.
    pub fn forget(&self, ns: &str, name: &str) {
        if let Ok(mut s) = self.seen.lock() {
            s.retain(|(n, o, _, _), _| n != ns || o != name);
        }
    }
}
