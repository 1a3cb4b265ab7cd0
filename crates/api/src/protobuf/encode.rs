//! Kubernetes protobuf responses: the JSON form of an object encoded as its protobuf message
//! (guided by `fields.txt`, the decoder's table) inside the `k8s\0` + `runtime.Unknown`
//! envelope, for clients that ask for `application/vnd.kubernetes.protobuf` (client-go's
//! typed clients, kubelets and controllers). Fields follow their number order, as Go's
//! generated marshallers write them; map entries are sorted by key.

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine;
use serde_json::{Map, Value};

use super::gojson::message_of;
use super::{Field, Label, MAGIC, json_name, table};

/// The protobuf body of `obj`, or `None` when its kind (or a field of it) has no protobuf
/// form here; the caller then answers JSON.
pub fn encode(obj: &Value) -> Option<Vec<u8>> {
    let m = obj.as_object()?;
    let text = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or_default();
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    let message = message_of(api_version, kind)?;
    let raw = encode_message(message, m, 0)?;
    let mut type_meta = Vec::new();
    put_bytes(&mut type_meta, 1, api_version.as_bytes());
    put_bytes(&mut type_meta, 2, kind.as_bytes());
    let mut out = MAGIC.to_vec();
    put_bytes(&mut out, 1, &type_meta);
    put_bytes(&mut out, 2, &raw);
    put_bytes(&mut out, 3, b"");
    put_bytes(&mut out, 4, b"");
    Some(out)
}

/// Whether objects of `kind` in `api_version` have a protobuf form here (a watch of them can
/// be answered in protobuf).
pub fn has_protobuf(api_version: &str, kind: &str) -> bool {
    message_of(api_version, kind).is_some()
}

/// One frame of a protobuf watch stream (`application/vnd.kubernetes.protobuf;stream=watch`):
/// the event's length (4 bytes, big-endian), then a `metav1.WatchEvent` (type = 1, object =
/// 2, a RawExtension whose raw = 1 is the object's whole protobuf body, envelope and all), as
/// client-go's length-delimited framer reads it. `None` when the object has no protobuf form.
pub fn watch_frame(event_type: &str, object: &Value) -> Option<Vec<u8>> {
    let raw = encode(object)?;
    let mut extension = Vec::new();
    put_bytes(&mut extension, 1, &raw);
    let mut event = Vec::new();
    put_bytes(&mut event, 1, event_type.as_bytes());
    put_bytes(&mut event, 2, &extension);
    let len = u32::try_from(event.len()).ok()?;
    let mut frame = len.to_be_bytes().to_vec();
    frame.extend_from_slice(&event);
    Some(frame)
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, tag: u32, wire: u64) {
    varint(out, (u64::from(tag) << 3) | wire);
}

fn put_bytes(out: &mut Vec<u8>, tag: u32, b: &[u8]) {
    put_key(out, tag, 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// One scalar field; `None` when the JSON value does not fit its type.
fn put_scalar(out: &mut Vec<u8>, tag: u32, kind: &str, v: &Value) -> Option<()> {
    match kind {
        "string" => put_bytes(out, tag, v.as_str()?.as_bytes()),
        "bytes" => {
            let b = base64::engine::general_purpose::STANDARD
                .decode(v.as_str()?)
                .ok()?;
            put_bytes(out, tag, &b)
        }
        "bool" => {
            put_key(out, tag, 0);
            varint(out, u64::from(v.as_bool()?));
        }
        // Negative int32s and int64s are sign-extended to ten bytes.
        "int32" | "int64" => {
            put_key(out, tag, 0);
            varint(out, v.as_i64()? as u64);
        }
        "uint32" | "uint64" => {
            put_key(out, tag, 0);
            varint(out, v.as_u64()?);
        }
        "double" => {
            put_key(out, tag, 1);
            out.extend_from_slice(&v.as_f64()?.to_le_bytes());
        }
        "float" => {
            put_key(out, tag, 5);
            out.extend_from_slice(&(v.as_f64()? as f32).to_le_bytes());
        }
        _ => return None,
    }
    Some(())
}

/// Messages whose JSON form is a scalar or free-form JSON: their bytes, from that form.
fn special(message: &str, v: &Value) -> Option<Option<Vec<u8>>> {
    if !message.starts_with("io.k8s.apimachinery") && !message.ends_with(".JSON") {
        return None;
    }
    let short = message.rsplit('.').next().unwrap_or(message);
    let mut out = Vec::new();
    let done = match short {
        "Time" | "MicroTime" => (|| {
            let ts: jiff::Timestamp = v.as_str()?.parse().ok()?;
            put_key(&mut out, 1, 0);
            varint(&mut out, ts.as_second() as u64);
            if short == "MicroTime" || ts.subsec_nanosecond() != 0 {
                put_key(&mut out, 2, 0);
                varint(&mut out, ts.subsec_nanosecond() as i64 as u64);
            }
            Some(())
        })(),
        "IntOrString" => {
            let (kind, int, text) = match v {
                Value::Number(n) => (0u64, n.as_i64().unwrap_or(0), ""),
                Value::String(s) => (1, 0, s.as_str()),
                _ => return Some(None),
            };
            put_key(&mut out, 1, 0);
            varint(&mut out, kind);
            put_key(&mut out, 2, 0);
            varint(&mut out, int as u64);
            put_bytes(&mut out, 3, text.as_bytes());
            Some(())
        }
        "Quantity" => v.as_str().map(|s| put_bytes(&mut out, 1, s.as_bytes())),
        "Duration" => go_duration_nanos(v.as_str().unwrap_or_default()).map(|ns| {
            put_key(&mut out, 1, 0);
            varint(&mut out, ns as u64);
        }),
        "RawExtension" | "FieldsV1" | "JSON" => {
            put_bytes(&mut out, 1, v.to_string().as_bytes());
            Some(())
        }
        _ => return None,
    };
    Some(done.map(|()| out))
}

/// A Go duration string (`1h2m3.5s`, `300ms`) in nanoseconds.
fn go_duration_nanos(s: &str) -> Option<i64> {
    let (sign, mut rest) = match s.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, s),
    };
    if rest == "0" {
        return Some(0);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|n| *n > 0)?;
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let (unit, scale) = [
            ("ns", 1.0),
            ("us", 1e3),
            ("µs", 1e3),
            ("ms", 1e6),
            ("s", 1e9),
            ("m", 60e9),
            ("h", 3600e9),
        ]
        .into_iter()
        .filter(|(u, _)| rest.starts_with(u))
        .max_by_key(|(u, _)| u.len())?;
        total += value * scale;
        rest = &rest[unit.len()..];
    }
    Some((sign * total) as i64)
}

/// Every message's fields by number, with their JSON names (`None`: inlined), worked out once.
type ByTag = HashMap<&'static str, Vec<(u32, Option<String>, &'static Field)>>;

fn by_tag() -> &'static ByTag {
    static T: OnceLock<ByTag> = OnceLock::new();
    T.get_or_init(|| {
        table()
            .iter()
            .map(|(message, fields)| {
                let mut list: Vec<(u32, Option<String>, &'static Field)> = fields
                    .iter()
                    .map(|(tag, f)| (*tag, json_name(message, f.name), f))
                    .collect();
                list.sort_by_key(|(tag, _, _)| *tag);
                (*message, list)
            })
            .collect()
    })
}

fn encode_message(message: &str, m: &Map<String, Value>, depth: usize) -> Option<Vec<u8>> {
    if depth > 64 {
        return None;
    }
    let fields = by_tag().get(message)?;
    let mut out = Vec::new();
    for (tag, name, f) in fields {
        let Some(name) = name else {
            // A struct Go inlines: its fields come from this same object.
            if f.kind == "message" {
                let inner = encode_message(f.message, m, depth + 1)?;
                put_bytes(&mut out, *tag, &inner);
            }
            continue;
        };
        let Some(v) = m.get(name.as_str()).filter(|v| !v.is_null()) else {
            continue;
        };
        encode_field(&mut out, *tag, f, v, depth)?;
    }
    Some(out)
}

fn encode_field(out: &mut Vec<u8>, tag: u32, f: &Field, v: &Value, depth: usize) -> Option<()> {
    match f.label {
        Label::Map => {
            let (key_kind, value_kind) = f.kind.split_once(',')?;
            for (k, item) in v.as_object()? {
                let mut entry = Vec::new();
                let key = match key_kind {
                    "string" => Value::String(k.clone()),
                    _ => k.parse::<i64>().ok().map(Value::from)?,
                };
                put_scalar(&mut entry, 1, key_kind, &key)?;
                if value_kind == "message" {
                    put_bytes(&mut entry, 2, &value_bytes(f.message, item, depth)?);
                } else {
                    put_scalar(&mut entry, 2, value_kind, item)?;
                }
                put_bytes(out, tag, &entry);
            }
        }
        Label::Repeated => {
            for item in v.as_array()? {
                single(out, tag, f, item, depth)?;
            }
        }
        Label::Optional => single(out, tag, f, v, depth)?,
    }
    Some(())
}

fn single(out: &mut Vec<u8>, tag: u32, f: &Field, v: &Value, depth: usize) -> Option<()> {
    if f.kind == "message" {
        put_bytes(out, tag, &value_bytes(f.message, v, depth)?);
        Some(())
    } else {
        put_scalar(out, tag, f.kind, v)
    }
}

/// The bytes of a message-typed value.
fn value_bytes(message: &str, v: &Value, depth: usize) -> Option<Vec<u8>> {
    if let Some(done) = special(message, v) {
        return done;
    }
    encode_message(message, v.as_object()?, depth + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_encode_to_what_the_decoder_reads_back() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "d", "labels": {"a": "1"},
                "creationTimestamp": "2026-01-02T03:04:05Z", "resourceVersion": "7"},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "resources": {"limits": {"cpu": "500m"}},
                "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}}],
                "volumes": [{"name": "v", "emptyDir": {}}], "priority": -5},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.1"}]}});
        let bytes = encode(&pod).expect("a Pod encodes");
        assert!(bytes.starts_with(MAGIC));
        let back = super::super::decode(&bytes).expect("decodes");
        assert_eq!(back, pod);
        let status = json!({"apiVersion": "v1", "kind": "Status", "metadata": {},
            "status": "Failure", "message": "nope", "reason": "NotFound",
            "details": {"name": "x", "kind": "pods"}, "code": 404});
        assert_eq!(
            super::super::decode(&encode(&status).unwrap()).unwrap(),
            status
        );
        let list = json!({"apiVersion": "v1", "kind": "ConfigMapList",
            "metadata": {"resourceVersion": "9"},
            "items": [{"metadata": {"name": "a"}, "data": {"k": "v"}}]});
        assert_eq!(super::super::decode(&encode(&list).unwrap()).unwrap(), list);
        assert!(encode(&json!({"apiVersion": "x/v1", "kind": "Nope"})).is_none());
        assert_eq!(go_duration_nanos("1m30s"), Some(90_000_000_000));
        assert_eq!(go_duration_nanos("250ms"), Some(250_000_000));
    }
}
