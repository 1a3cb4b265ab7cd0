//! JSON written as kube-apiserver's Go encoder writes it: `kind` and `apiVersion` first, then
//! each struct's fields in the Go struct's order (the order of the protobuf message's fields
//! in `fields.txt`), with inlined structs in place and map keys sorted. Clients and tests
//! that compare bytes see the same text. Values of kinds this table does not know are written
//! with their keys sorted, as before.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

use serde_json::{Map, Value};

use super::{Field, Label, TABLE, json_name, table};

/// A message's fields in Go order: (JSON name, or `None` for an inlined struct; the field).
type Ordered = HashMap<&'static str, Vec<(Option<String>, &'static Field)>>;

fn ordered() -> &'static Ordered {
    static O: OnceLock<Ordered> = OnceLock::new();
    O.get_or_init(|| {
        let t = table();
        let mut out: Ordered = HashMap::new();
        let mut current: Option<&'static str> = None;
        for line in TABLE.lines() {
            let parts: Vec<&'static str> = line.split(' ').collect();
            match parts.as_slice() {
                ["M", name] => current = Some(name),
                ["F", tag, ..] => {
                    let (Some(msg), Ok(tag)) = (current, tag.parse::<u32>()) else {
                        continue;
                    };
                    if let Some(field) = t.get(msg).and_then(|fields| fields.get(&tag)) {
                        out.entry(msg)
                            .or_default()
                            .push((json_name(msg, field.name), field));
                    }
                }
                _ => {}
            }
        }
        out
    })
}

/// apiVersion -> kind -> its message, as looked up so far.
type Messages = RwLock<HashMap<String, HashMap<String, Option<&'static str>>>>;

/// The message a top-level object of this apiVersion and kind is.
pub(super) fn message_of(api_version: &str, kind: &str) -> Option<&'static str> {
    static CACHE: OnceLock<Messages> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Ok(c) = cache.read()
        && let Some(found) = c.get(api_version).and_then(|kinds| kinds.get(kind))
    {
        return *found;
    }
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let short = if group.is_empty() {
        "core"
    } else {
        group.split('.').next().unwrap_or("")
    };
    let found = crate::schema::kind_schema(group, version, kind)
        .into_iter()
        .chain([
            format!("io.k8s.api.{short}.{version}.{kind}"),
            format!("io.k8s.apimachinery.pkg.apis.meta.{version}.{kind}"),
        ])
        .find_map(|n| ordered().get_key_value(n.as_str()).map(|(k, _)| *k));
    if let Ok(mut c) = cache.write() {
        c.entry(api_version.to_string())
            .or_default()
            .insert(kind.to_string(), found);
    }
    found
}

/// Messages whose JSON form is not an object of their fields.
fn opaque(message: &str) -> bool {
    let short = message.rsplit('.').next().unwrap_or(message);
    matches!(
        short,
        "Time"
            | "MicroTime"
            | "IntOrString"
            | "Quantity"
            | "Duration"
            | "RawExtension"
            | "FieldsV1"
            | "JSON"
    )
}

/// Writes `v` as kube-apiserver would.
pub fn write(out: &mut Vec<u8>, v: &Value) {
    let message = match v {
        Value::Object(m) => {
            let text = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or_default();
            message_of(text("apiVersion"), text("kind"))
        }
        _ => None,
    };
    match (v, message) {
        (Value::Object(m), Some(msg)) => write_message(out, m, msg),
        _ => raw(out, v),
    }
}

/// `v` as kube-apiserver would write it, with the newline its encoder ends a body with.
pub fn to_vec(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write(&mut out, v);
    out.push(b'\n');
    out
}

fn raw(out: &mut Vec<u8>, v: &Value) {
    // Writing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(out, v);
}

fn key(out: &mut Vec<u8>, first: &mut bool, k: &str) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    // Writing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, k);
    out.push(b':');
}

/// A message's JSON fields, inlined structs flattened in place: name -> (position, field),
/// and whether it has a `kind` of its own (an OwnerReference's, not TypeMeta's).
struct Layout {
    position: HashMap<String, (usize, &'static Field)>,
    own_kind: bool,
}

fn layouts() -> &'static HashMap<&'static str, Layout> {
    static L: OnceLock<HashMap<&'static str, Layout>> = OnceLock::new();
    L.get_or_init(|| {
        fn flatten(msg: &str, out: &mut Vec<(String, &'static Field)>, depth: usize) {
            for (name, field) in ordered().get(msg).into_iter().flatten() {
                match name {
                    Some(n) => out.push((n.clone(), field)),
                    None if field.kind == "message" && depth < 8 => {
                        flatten(field.message, out, depth + 1)
                    }
                    None => {}
                }
            }
        }
        ordered()
            .keys()
            .map(|msg| {
                let mut list = Vec::new();
                flatten(msg, &mut list, 0);
                let own_kind = ordered()
                    .get(msg)
                    .is_some_and(|l| l.iter().any(|(n, _)| n.as_deref() == Some("kind")));
                let mut position = HashMap::new();
                for (i, (name, field)) in list.into_iter().enumerate() {
                    position.entry(name).or_insert((i, field));
                }
                (*msg, Layout { position, own_kind })
            })
            .collect()
    })
}

fn write_message(out: &mut Vec<u8>, m: &Map<String, Value>, msg: &str) {
    let Some(layout) = layouts().get(msg) else {
        return raw(out, &Value::Object(m.clone()));
    };
    // Each key at its field's place: TypeMeta first (unless the struct has its own kind),
    // unknown keys last in their sorted order.
    let mut keys: Vec<(usize, &String, &Value, Option<&Field>)> = m
        .iter()
        .map(|(k, v)| match layout.position.get(k.as_str()) {
            Some((i, f)) => (i + 2, k, v, Some(*f)),
            None if !layout.own_kind && k == "kind" => (0, k, v, None),
            None if !layout.own_kind && k == "apiVersion" => (1, k, v, None),
            None => (usize::MAX, k, v, None),
        })
        .collect();
    keys.sort_by_key(|(i, ..)| *i);
    out.push(b'{');
    let mut first = true;
    for (_, k, v, f) in keys {
        key(out, &mut first, k);
        match f {
            Some(f) => value(out, v, f),
            None => raw(out, v),
        }
    }
    out.push(b'}');
}

fn value(out: &mut Vec<u8>, v: &Value, f: &Field) {
    let message = (f.kind == "message" || f.kind.ends_with(",message")).then_some(f.message);
    match (f.label, v, message) {
        (Label::Map, Value::Object(m), _) => {
            out.push(b'{');
            let mut first = true;
            for (k, item) in m {
                key(out, &mut first, k);
                element(out, item, message);
            }
            out.push(b'}');
        }
        (Label::Repeated, Value::Array(items), _) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                element(out, item, message);
            }
            out.push(b']');
        }
        _ => element(out, v, message),
    }
}

fn element(out: &mut Vec<u8>, v: &Value, message: Option<&str>) {
    match (v, message) {
        (Value::Object(m), Some(msg)) if !opaque(msg) && !msg.is_empty() => {
            // An embedded object (a List's items) may name its own kind.
            write_message(out, m, msg)
        }
        _ => raw(out, v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(v: &Value) -> String {
        String::from_utf8(to_vec(v)).unwrap()
    }

    #[test]
    fn objects_are_written_in_go_struct_order() {
        let pod = json!({"status": {"phase": "Running"}, "spec": {"containers": [{"name": "c",
            "image": "busybox", "resources": {"limits": {"memory": "1Gi", "cpu": "1"}}}]},
            "metadata": {"name": "p", "namespace": "d", "labels": {"b": "2", "a": "1"}},
            "kind": "Pod", "apiVersion": "v1"});
        assert_eq!(
            text(&pod),
            "{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"p\",\"namespace\":\"d\",\"labels\":{\"a\":\"1\",\"b\":\"2\"}},\"spec\":{\"containers\":[{\"name\":\"c\",\"image\":\"busybox\",\"resources\":{\"limits\":{\"cpu\":\"1\",\"memory\":\"1Gi\"}}}]},\"status\":{\"phase\":\"Running\"}}\n"
        );
        let status = json!({"kind": "Status", "apiVersion": "v1", "code": 404,
            "details": {"name": "x", "kind": "pods"}, "reason": "NotFound",
            "message": "pods \"x\" not found", "status": "Failure", "metadata": {}});
        assert_eq!(
            text(&status),
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"pods \\\"x\\\" not found\",\"reason\":\"NotFound\",\"details\":{\"name\":\"x\",\"kind\":\"pods\"},\"code\":404}\n"
        );
        // Volume inlines its VolumeSource; a probe its handler.
        let vol = json!({"kind": "Pod", "apiVersion": "v1", "spec": {"volumes": [
            {"emptyDir": {}, "name": "v"}], "containers": [{"name": "c",
            "readinessProbe": {"periodSeconds": 1, "httpGet": {"port": 80, "path": "/"}}}]}});
        let t = text(&vol);
        assert!(t.contains("{\"name\":\"v\",\"emptyDir\":{}}"), "{t}");
        assert!(
            t.contains("{\"httpGet\":{\"path\":\"/\",\"port\":80},\"periodSeconds\":1}"),
            "{t}"
        );
        // A list: items as their own kind.
        let list = json!({"items": [{"metadata": {"name": "a"}, "data": {"k": "v"}}],
            "metadata": {"resourceVersion": "5"}, "apiVersion": "v1", "kind": "ConfigMapList"});
        assert_eq!(
            text(&list),
            "{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":\"5\"},\"items\":[{\"metadata\":{\"name\":\"a\"},\"data\":{\"k\":\"v\"}}]}\n"
        );
        // Unknown kinds keep sorted keys.
        assert_eq!(text(&json!({"b": 1, "a": 2})), "{\"a\":2,\"b\":1}\n");
    }

    /// What writing in Go's order costs beside serde_json's sorted writing, and what the
    /// protobuf encoding costs, for a typical scheduled pod (about 2 KB of JSON).
    #[test]
    #[ignore = "a benchmark: run with --release --ignored --nocapture"]
    fn encode_cost() {
        let pod = json!({"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": "web-7d4b9c8f6-x2k4p", "generateName": "web-7d4b9c8f6-",
                "namespace": "default", "uid": "0b6f7f9e-3c1a-4d2e-9f00-1a2b3c4d5e6f",
                "resourceVersion": "123456", "creationTimestamp": "2026-12-07T06:00:00Z",
                "labels": {"app": "web", "pod-template-hash": "7d4b9c8f6"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web-7d4b9c8f6", "uid": "9a8b7c6d-5e4f-3a2b-1c0d-ffeeddccbbaa",
                    "controller": true, "blockOwnerDeletion": true}]},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}],
                "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
                "dnsPolicy": "ClusterFirst", "serviceAccountName": "default",
                "nodeName": "node-17", "securityContext": {}, "schedulerName": "default-scheduler",
                "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                    "effect": "NoExecute", "tolerationSeconds": 300}],
                "priority": 0, "enableServiceLinks": true, "preemptionPolicy": "PreemptLowerPriority"},
            "status": {"phase": "Running", "qosClass": "Burstable", "podIP": "10.244.17.5",
                "hostIP": "10.0.0.17", "startTime": "2026-12-07T06:00:01Z",
                "conditions": [{"type": "Ready", "status": "True",
                    "lastTransitionTime": "2026-12-07T06:00:03Z"}]}});
        let n = 20_000;
        let time = |f: &dyn Fn() -> usize| {
            let start = std::time::Instant::now();
            let mut bytes = 0;
            for _ in 0..n {
                bytes += f();
            }
            (start.elapsed().as_secs_f64() * 1e6 / n as f64, bytes / n)
        };
        let (sorted, len) = time(&|| serde_json::to_vec(&pod).map(|v| v.len()).unwrap_or(0));
        let (go, go_len) = time(&|| to_vec(&pod).len());
        let (pb, pb_len) = time(&|| super::super::encode(&pod).map(|v| v.len()).unwrap_or(0));
        eprintln!(
            "per pod: serde_json {sorted:.2} µs ({len} B); Go order {go:.2} µs ({go_len} B); protobuf {pb:.2} µs ({pb_len} B)"
        );
        assert!(go_len > 0 && pb_len > 0);
    }
}
