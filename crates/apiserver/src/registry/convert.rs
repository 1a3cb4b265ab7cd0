//! Versions of one resource that differ in shape: objects are stored in one form and served
//! in each version's. Today that is the Event: stored as a core/v1 Event, served through
//! events.k8s.io/v1 with that API's field names (`note` for `message`, `regarding` for
//! `involvedObject`, `deprecatedCount` for `count` …), as kube-apiserver converts them.

use std::borrow::Cow;

use serde_json::{Map, Value, json};
use tug_api::Resource;

/// Whether `r`'s objects are served in another shape than they are stored in.
pub(crate) fn converts(r: &Resource) -> bool {
    r.group == "events.k8s.io"
}

/// The resource whose shape `r`'s objects are stored in (the watch cache holds them so).
pub(crate) fn stored_as(r: &Resource) -> &Resource {
    if converts(r) {
        tug_api::catalog::lookup("", "v1", "events").unwrap_or(r)
    } else {
        r
    }
}

/// Stamps `r`'s apiVersion and kind on a stored object and gives it `r`'s shape (and a
/// custom resource its schema's defaults).
pub(crate) fn to_served(r: &Resource, obj: &mut Value) {
    if converts(r)
        && let Value::Object(m) = obj
    {
        *m = event_from_core(std::mem::take(m));
    }
    if let Value::Object(m) = obj {
        m.insert("apiVersion".into(), json!(r.api_version()));
        m.insert("kind".into(), json!(r.kind));
    }
    // A custom resource's defaults apply on read too: a default added to the definition
    // shows on objects stored before it.
    if let Some(schema) = r
        .custom
        .filter(|c| c.defaults)
        .and_then(|c| c.schema.as_ref())
    {
        tug_api::crd::schema::default(obj, schema);
    }
}

/// The stored form of an object written through `r`: a custom resource is stored in its
/// definition's storage version (without a conversion webhook, only apiVersion differs).
pub(crate) fn to_stored<'a>(r: &Resource, obj: &'a Value) -> Cow<'a, Value> {
    match obj {
        Value::Object(m) if converts(r) => Cow::Owned(Value::Object(core_from_event(m.clone()))),
        Value::Object(m) if r.custom.is_some_and(|c| c.storage_version != r.version) => {
            let mut m = m.clone();
            let storage = r
                .custom
                .map(|c| c.storage_version.as_str())
                .unwrap_or_default();
            m.insert("apiVersion".into(), json!(format!("{}/{storage}", r.group)));
            Cow::Owned(Value::Object(m))
        }
        _ => Cow::Borrowed(obj),
    }
}

/// Moves `from` of `m` to `to` of `out`; `zero` is what Go writes when the field is unset
/// (`None`: nothing, the field has omitempty).
fn carry(
    m: &mut Map<String, Value>,
    out: &mut Map<String, Value>,
    from: &str,
    to: &str,
    zero: Option<Value>,
) {
    match m.remove(from).filter(|v| !v.is_null()) {
        Some(v) => {
            out.insert(to.into(), v);
        }
        None => {
            if let Some(z) = zero {
                out.insert(to.into(), z);
            }
        }
    }
}

/// A core/v1 Event as an events.k8s.io/v1 Event.
fn event_from_core(mut m: Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("kind".into(), json!("Event"));
    out.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    carry(&mut m, &mut out, "metadata", "metadata", Some(json!({})));
    carry(
        &mut m,
        &mut out,
        "eventTime",
        "eventTime",
        Some(Value::Null),
    );
    carry(&mut m, &mut out, "series", "series", None);
    carry(
        &mut m,
        &mut out,
        "reportingComponent",
        "reportingController",
        None,
    );
    carry(
        &mut m,
        &mut out,
        "reportingInstance",
        "reportingInstance",
        None,
    );
    carry(&mut m, &mut out, "action", "action", None);
    carry(&mut m, &mut out, "reason", "reason", None);
    carry(
        &mut m,
        &mut out,
        "involvedObject",
        "regarding",
        Some(json!({})),
    );
    carry(&mut m, &mut out, "related", "related", None);
    carry(&mut m, &mut out, "message", "note", None);
    carry(&mut m, &mut out, "type", "type", None);
    carry(
        &mut m,
        &mut out,
        "source",
        "deprecatedSource",
        Some(json!({})),
    );
    carry(
        &mut m,
        &mut out,
        "firstTimestamp",
        "deprecatedFirstTimestamp",
        Some(Value::Null),
    );
    carry(
        &mut m,
        &mut out,
        "lastTimestamp",
        "deprecatedLastTimestamp",
        Some(Value::Null),
    );
    if m.get("count").and_then(Value::as_i64).unwrap_or(0) != 0 {
        carry(&mut m, &mut out, "count", "deprecatedCount", None);
    }
    out
}

/// An events.k8s.io/v1 Event as a core/v1 Event.
fn core_from_event(mut m: Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("kind".into(), json!("Event"));
    out.insert("apiVersion".into(), json!("v1"));
    carry(&mut m, &mut out, "metadata", "metadata", Some(json!({})));
    carry(
        &mut m,
        &mut out,
        "regarding",
        "involvedObject",
        Some(json!({})),
    );
    carry(&mut m, &mut out, "reason", "reason", None);
    carry(&mut m, &mut out, "note", "message", None);
    carry(
        &mut m,
        &mut out,
        "deprecatedSource",
        "source",
        Some(json!({})),
    );
    carry(
        &mut m,
        &mut out,
        "deprecatedFirstTimestamp",
        "firstTimestamp",
        Some(Value::Null),
    );
    carry(
        &mut m,
        &mut out,
        "deprecatedLastTimestamp",
        "lastTimestamp",
        Some(Value::Null),
    );
    if m.get("deprecatedCount")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        != 0
    {
        carry(&mut m, &mut out, "deprecatedCount", "count", None);
    }
    carry(&mut m, &mut out, "type", "type", None);
    carry(
        &mut m,
        &mut out,
        "eventTime",
        "eventTime",
        Some(Value::Null),
    );
    carry(&mut m, &mut out, "series", "series", None);
    carry(&mut m, &mut out, "action", "action", None);
    carry(&mut m, &mut out, "related", "related", None);
    carry(
        &mut m,
        &mut out,
        "reportingController",
        "reportingComponent",
        Some(json!("")),
    );
    carry(
        &mut m,
        &mut out,
        "reportingInstance",
        "reportingInstance",
        Some(json!("")),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events_v1() -> &'static Resource {
        tug_api::catalog::lookup("events.k8s.io", "v1", "events").unwrap()
    }

    #[test]
    fn events_convert_both_ways() {
        let core = json!({"kind": "Event", "apiVersion": "v1",
            "metadata": {"name": "e", "namespace": "d"},
            "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "Started",
            "message": "Started container", "source": {"component": "kubelet"},
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:05Z",
            "count": 3, "type": "Normal", "eventTime": null,
            "reportingComponent": "kubelet", "reportingInstance": "n1"});
        let mut served = core.clone();
        to_served(events_v1(), &mut served);
        let mut keys: Vec<&str> = served
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "apiVersion",
                "deprecatedCount",
                "deprecatedFirstTimestamp",
                "deprecatedLastTimestamp",
                "deprecatedSource",
                "eventTime",
                "kind",
                "metadata",
                "note",
                "reason",
                "regarding",
                "reportingController",
                "reportingInstance",
                "type"
            ]
        );
        assert_eq!(served["note"], "Started container");
        assert_eq!(served["regarding"]["name"], "p");
        assert_eq!(served["deprecatedCount"], 3);
        assert_eq!(served["reportingController"], "kubelet");
        let back = to_stored(events_v1(), &served);
        assert_eq!(*back, core);
        // An event written through events.k8s.io carries only that API's fields.
        let written = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "n"}, "eventTime": "2026-01-01T00:00:00.000000Z",
            "reportingController": "me", "reportingInstance": "i", "action": "Did",
            "reason": "Because", "regarding": {"kind": "Node", "name": "x"}, "note": "hello",
            "type": "Warning"});
        let stored = to_stored(events_v1(), &written).into_owned();
        assert_eq!(stored["message"], "hello");
        assert_eq!(stored["involvedObject"]["kind"], "Node");
        assert_eq!(stored["firstTimestamp"], Value::Null);
        assert!(stored.get("count").is_none());
        let mut again = stored.clone();
        to_served(events_v1(), &mut again);
        assert_eq!(again["note"], "hello");
        assert!(again.get("deprecatedCount").is_none());
    }
}
