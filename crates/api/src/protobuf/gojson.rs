//! JSON written as kube-apiserver's Go encoder writes it: `kind` and `apiVersion` first, then
//! each struct's fields in the Go struct's order (the order of the protobuf message's fields
//! in `fields.txt`), with inlined structs in place and map keys sorted. Clients and tests
//! that compare bytes see the same text. Values of kinds this table does not know are written
//! with their keys sorted, as before.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};

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

/// (apiVersion, kind) -> its message, as looked up so far.
type Messages = Mutex<HashMap<(String, String), Option<&'static str>>>;

/// The message a top-level object of this apiVersion and kind is.
pub(super) fn message_of(api_version: &str, kind: &str) -> Option<&'static str> {
    static CACHE: OnceLock<Messages> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (api_version.to_string(), kind.to_string());
    if let Ok(c) = cache.lock()
        && let Some(found) = c.get(&key)
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
    if let Ok(mut c) = cache.lock() {
        c.insert(key, found);
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
    raw(out, &Value::String(k.to_string()));
    out.push(b':');
}

fn write_message(out: &mut Vec<u8>, m: &Map<String, Value>, msg: &str) {
    out.push(b'{');
    let mut first = true;
    let mut written: HashSet<&str> = HashSet::new();
    // TypeMeta, inlined first, unless the struct has its own `kind` (an OwnerReference's).
    let own_kind = ordered()
        .get(msg)
        .is_some_and(|l| l.iter().any(|(n, _)| n.as_deref() == Some("kind")));
    for k in ["kind", "apiVersion"] {
        if !own_kind && let Some(v) = m.get(k) {
            key(out, &mut first, k);
            raw(out, v);
            written.insert(k);
        }
    }
    fields(out, m, msg, &mut written, &mut first, 0);
    for (k, v) in m {
        if !written.contains(k.as_str()) {
            key(out, &mut first, k);
            raw(out, v);
        }
    }
    out.push(b'}');
}

fn fields<'m>(
    out: &mut Vec<u8>,
    m: &'m Map<String, Value>,
    msg: &str,
    written: &mut HashSet<&'m str>,
    first: &mut bool,
    depth: usize,
) {
    let Some(list) = ordered().get(msg) else {
        return;
    };
    for (name, field) in list {
        match name {
            Some(name) => {
                if let Some((k, v)) = m.get_key_value(name.as_str())
                    && !written.contains(k.as_str())
                {
                    key(out, first, k);
                    value(out, v, field);
                    written.insert(k.as_str());
                }
            }
            // A struct Go inlines: its fields sit here.
            None if field.kind == "message" && depth < 8 => {
                fields(out, m, field.message, written, first, depth + 1)
            }
            None => {}
        }
    }
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
}
