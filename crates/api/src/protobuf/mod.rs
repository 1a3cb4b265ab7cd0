//! Kubernetes protobuf request bodies, transcoded to JSON by one generic decoder.
//!
//! A body is `k8s\0` followed by a `runtime.Unknown` envelope naming the apiVersion and kind and
//! holding the object's bytes. The decoder walks the protobuf wire format guided by
//! `fields.txt` (every message's field numbers, names and types, generated from the k8s-pb
//! crate by tools/gen-proto-fields) and names fields as the object schemas do. Types that
//! Kubernetes encodes specially (Time, IntOrString, Quantity, RawExtension, ...) become their
//! JSON forms; fields Go omits when empty are omitted.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::ApiError;

mod encode;
pub mod gojson;

pub use encode::{encode, has_protobuf, watch_frame};

/// The magic prefix of a Kubernetes protobuf body.
pub const MAGIC: &[u8] = b"k8s\0";

const TABLE: &str = include_str!("fields.txt");

/// How a field repeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Label {
    Optional,
    Repeated,
    Map,
}

#[derive(Debug)]
struct Field {
    name: &'static str,
    label: Label,
    /// Scalar type, `message`, or for maps `key,value`.
    kind: &'static str,
    /// The message type, for message fields and message-valued maps.
    message: &'static str,
}

type Table = HashMap<&'static str, HashMap<u32, Field>>;

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        let mut out: Table = HashMap::new();
        let mut current: Option<&'static str> = None;
        for line in TABLE.lines() {
            let parts: Vec<&'static str> = line.split(' ').collect();
            match parts.as_slice() {
                ["M", name] => {
                    current = Some(name);
                    out.entry(name).or_default();
                }
                ["F", tag, name, label, kind, rest @ ..] => {
                    let (Some(msg), Ok(tag)) = (current, tag.parse::<u32>()) else {
                        continue;
                    };
                    let label = match *label {
                        "rep" => Label::Repeated,
                        "map" => Label::Map,
                        _ => Label::Optional,
                    };
                    let field = Field {
                        name,
                        label,
                        kind,
                        message: rest.first().copied().unwrap_or(""),
                    };
                    out.entry(msg).or_default().insert(tag, field);
                }
                _ => {}
            }
        }
        out
    })
}

/// Property names of every known object schema, by schema name.
fn properties() -> &'static HashMap<String, HashSet<String>> {
    static P: OnceLock<HashMap<String, HashSet<String>>> = OnceLock::new();
    P.get_or_init(|| {
        let mut out: HashMap<String, HashSet<String>> = HashMap::new();
        let groups = crate::catalog::groups();
        let every = groups
            .iter()
            .flat_map(|(g, versions)| versions.iter().map(|v| crate::schema::components(g, v)))
            .chain([crate::schema::subresource_components()]);
        for (name, schema) in every.flat_map(|c| c.iter()) {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                out.entry(name.clone())
                    .or_default()
                    .extend(props.keys().cloned());
            }
        }
        out
    })
}

fn normalize(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '_' | '-' | '$'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The JSON name of a field, from its message's schema; `None` when the schema has no such
/// property (a Go embedded struct, whose fields JSON inlines).
fn json_name(message: &str, rust: &str) -> Option<String> {
    match properties().get(message) {
        Some(props) => {
            let want = normalize(rust);
            props.iter().find(|p| normalize(p) == want).cloned()
        }
        None => Some(camel(rust)),
    }
}

fn camel(snake: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Fields that are pointers in Go, so an explicit zero or false is meaningful and kept.
const KEEP_ZERO: &[&str] = &[
    "replicas",
    "parallelism",
    "completions",
    "backoffLimit",
    "automountServiceAccountToken",
];

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = self.buf.split_first().ok_or("truncated varint")?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.buf.len() < n {
            return Err("truncated field".into());
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    fn len_delimited(&mut self) -> Result<&'a [u8], String> {
        let n = usize::try_from(self.varint()?).map_err(|_| "length too large")?;
        self.take(n)
    }
    fn skip(&mut self, wire: u64) -> Result<(), String> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => self.take(8).map(|_| ()),
            2 => self.len_delimited().map(|_| ()),
            5 => self.take(4).map(|_| ()),
            w => Err(format!("unsupported wire type {w}")),
        }
    }
}

/// A scalar from its wire form.
fn scalar(kind: &str, wire: u64, r: &mut Reader<'_>) -> Result<Value, String> {
    Ok(match (kind, wire) {
        ("string", 2) => Value::String(
            String::from_utf8(r.len_delimited()?.to_vec()).map_err(|_| "invalid UTF-8")?,
        ),
        ("bytes", 2) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(r.len_delimited()?))
        }
        ("bool", 0) => Value::Bool(r.varint()? != 0),
        ("int32", 0) => json!(r.varint()? as i64 as i32),
        ("int64", 0) => json!(r.varint()? as i64),
        ("uint32" | "uint64", 0) => json!(r.varint()?),
        ("double", 1) => {
            let b = r.take(8)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            json!(f64::from_le_bytes(a))
        }
        ("float", 5) => {
            let b = r.take(4)?;
            let mut a = [0u8; 4];
            a.copy_from_slice(b);
            json!(f32::from_le_bytes(a))
        }
        (k, w) => return Err(format!("field of type {k} has wire type {w}")),
    })
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Decodes one message of type `name` into its JSON form.
fn message(name: &str, buf: &[u8], depth: usize) -> Result<Value, String> {
    if depth > 64 {
        return Err("message nesting too deep".into());
    }
    if let Some(v) = special(name, buf)? {
        return Ok(v);
    }
    let fields = table()
        .get(name)
        .ok_or_else(|| format!("unknown message {name}"))?;
    let mut out = Map::new();
    let mut inline = Map::new();
    let mut r = Reader { buf };
    while !r.buf.is_empty() {
        let key = r.varint()?;
        let (tag, wire) = ((key >> 3) as u32, key & 7);
        let Some(f) = fields.get(&tag) else {
            r.skip(wire)?;
            continue;
        };
        let value = match (f.label, f.kind) {
            (Label::Map, kv) => {
                let entry = r.len_delimited()?;
                let (kt, vt) = kv.split_once(',').unwrap_or(("string", "string"));
                let mut er = Reader { buf: entry };
                let (mut k, mut v) = (Value::String(String::new()), Value::Null);
                while !er.buf.is_empty() {
                    let ek = er.varint()?;
                    match (ek >> 3, ek & 7) {
                        (1, w) => k = scalar(kt, w, &mut er)?,
                        (2, 2) if vt == "message" => {
                            v = message(f.message, er.len_delimited()?, depth + 1)?
                        }
                        (2, w) => v = scalar(vt, w, &mut er)?,
                        (_, w) => er.skip(w)?,
                    }
                }
                if v.is_null() {
                    v = match vt {
                        "string" | "bytes" => json!(""),
                        _ => json!({}),
                    };
                }
                let key = match k {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                let slot = out
                    .entry(json_name(name, f.name).unwrap_or_else(|| camel(f.name)))
                    .or_insert_with(|| json!({}));
                if let Value::Object(m) = slot {
                    m.insert(key, v);
                }
                continue;
            }
            (label, "message") => {
                let v = message(f.message, r.len_delimited()?, depth + 1)?;
                if label == Label::Repeated {
                    push(&mut out, name, f, v);
                    continue;
                }
                v
            }
            (Label::Repeated, kind) if wire == 2 && kind != "string" && kind != "bytes" => {
                // Packed scalars.
                let mut pr = Reader {
                    buf: r.len_delimited()?,
                };
                let inner_wire = match kind {
                    "double" => 1,
                    "float" => 5,
                    _ => 0,
                };
                while !pr.buf.is_empty() {
                    let v = scalar(kind, inner_wire, &mut pr)?;
                    push(&mut out, name, f, v);
                }
                continue;
            }
            (Label::Repeated, kind) => {
                let v = scalar(kind, wire, &mut r)?;
                push(&mut out, name, f, v);
                continue;
            }
            (Label::Optional, kind) => scalar(kind, wire, &mut r)?,
        };
        match json_name(name, f.name) {
            Some(json) => {
                // A message on the wire was set, even if empty (`emptyDir: {}`).
                let set_message = f.kind == "message" && value.is_object();
                if set_message
                    || !is_zero(&value)
                    || KEEP_ZERO.contains(&json.as_str()) && !value.is_null()
                {
                    out.insert(json, value);
                }
            }
            // An embedded struct: JSON inlines its fields.
            None => {
                if let Value::Object(m) = value {
                    inline.extend(m);
                }
            }
        }
    }
    for (k, v) in inline {
        out.entry(k).or_insert(v);
    }
    Ok(Value::Object(out))
}

fn push(out: &mut Map<String, Value>, message: &str, f: &Field, v: Value) {
    let key = json_name(message, f.name).unwrap_or_else(|| camel(f.name));
    if let Value::Array(a) = out.entry(key).or_insert_with(|| json!([])) {
        a.push(v);
    }
}

/// The raw fields of a small message: tag -> (wire type, bytes of a LEN field, varint value).
type RawFields = HashMap<u64, (u64, Vec<u8>, u64)>;

/// Messages Kubernetes encodes as something other than an object in JSON.
fn special(name: &str, buf: &[u8]) -> Result<Option<Value>, String> {
    let short = name.rsplit('.').next().unwrap_or(name);
    let fields = |buf: &[u8]| -> Result<RawFields, String> {
        // tag -> (wire, bytes for LEN, varint value)
        let mut r = Reader { buf };
        let mut out = HashMap::new();
        while !r.buf.is_empty() {
            let key = r.varint()?;
            let (tag, wire) = (key >> 3, key & 7);
            match wire {
                0 => {
                    let v = r.varint()?;
                    out.insert(tag, (wire, Vec::new(), v));
                }
                2 => {
                    let b = r.len_delimited()?.to_vec();
                    out.insert(tag, (wire, b, 0));
                }
                w => r.skip(w)?,
            }
        }
        Ok(out)
    };
    let text = |f: &RawFields, tag: u64| {
        f.get(&tag)
            .map(|(_, b, _)| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    };
    Ok(match (name.starts_with("io.k8s.apimachinery"), short) {
        (true, "Time" | "MicroTime") => {
            let f = fields(buf)?;
            let secs = f.get(&1).map(|(_, _, v)| *v as i64).unwrap_or(0);
            let nanos = f.get(&2).map(|(_, _, v)| *v as i64).unwrap_or(0);
            if secs == -62135596800 || (secs == 0 && nanos == 0 && f.is_empty()) {
                Some(Value::Null)
            } else {
                let ts = jiff::Timestamp::new(secs, nanos as i32).map_err(|e| e.to_string())?;
                let s = if short == "MicroTime" {
                    crate::time::rfc3339_micro(ts)
                } else {
                    crate::time::rfc3339(ts)
                };
                Some(Value::String(s))
            }
        }
        (true, "IntOrString") => {
            let f = fields(buf)?;
            let is_string = f.get(&1).map(|(_, _, v)| *v).unwrap_or(0) == 1;
            if is_string {
                Some(Value::String(text(&f, 3)))
            } else {
                Some(json!(
                    f.get(&2).map(|(_, _, v)| *v as i64 as i32).unwrap_or(0)
                ))
            }
        }
        (true, "Quantity") => Some(Value::String(text(&fields(buf)?, 1))),
        (true, "Duration") => {
            let ns = fields(buf)?.get(&1).map(|(_, _, v)| *v as i64).unwrap_or(0);
            Some(Value::String(format!("{}s", ns as f64 / 1e9)))
        }
        (true, "RawExtension" | "FieldsV1") | (false, "JSON") => {
            let f = fields(buf)?;
            let raw = f.get(&1).map(|(_, b, _)| b.clone()).unwrap_or_default();
            if raw.is_empty() {
                Some(Value::Null)
            } else {
                Some(serde_json::from_slice(&raw).map_err(|e| format!("embedded JSON: {e}"))?)
            }
        }
        _ => None,
    })
}

/// Decodes a Kubernetes protobuf request body (`k8s\0` + runtime.Unknown) into the JSON object.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let bad =
        |e: String| ApiError::bad_request(format!("the protobuf body could not be decoded: {e}"));
    let inner = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("it does not start with the k8s\\0 prefix".into()))?;
    // runtime.Unknown: 1 typeMeta {1 apiVersion, 2 kind}, 2 raw, 3 contentEncoding, 4 contentType
    let mut r = Reader { buf: inner };
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    while !r.buf.is_empty() {
        let key = r.varint().map_err(bad)?;
        match (key >> 3, key & 7) {
            (1, 2) => {
                let mut tr = Reader {
                    buf: r.len_delimited().map_err(bad)?,
                };
                while !tr.buf.is_empty() {
                    let k = tr.varint().map_err(bad)?;
                    match (k >> 3, k & 7) {
                        (1, 2) => {
                            api_version = String::from_utf8_lossy(tr.len_delimited().map_err(bad)?)
                                .into_owned()
                        }
                        (2, 2) => {
                            kind = String::from_utf8_lossy(tr.len_delimited().map_err(bad)?)
                                .into_owned()
                        }
                        (_, w) => tr.skip(w).map_err(bad)?,
                    }
                }
            }
            (2, 2) => raw = r.len_delimited().map_err(bad)?,
            (_, w) => r.skip(w).map_err(bad)?,
        }
    }
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), api_version.clone()),
    };
    let short_group = if group.is_empty() {
        "core"
    } else {
        group.split('.').next().unwrap_or("")
    };
    let name = crate::schema::kind_schema(&group, &version, &kind)
        .or_else(|| {
            // Kinds outside the catalog that clients send: DeleteOptions, Scale, Eviction, ...
            [
                format!("io.k8s.api.{short_group}.{version}.{kind}"),
                format!("io.k8s.apimachinery.pkg.apis.meta.v1.{kind}"),
            ]
            .into_iter()
            .find(|n| table().contains_key(n.as_str()))
        })
        .ok_or_else(|| {
            ApiError::new(
                415,
                "UnsupportedMediaType",
                format!("protobuf bodies of {api_version} {kind} are not supported; send JSON"),
            )
        })?;
    let mut obj = message(&name, raw, 0).map_err(bad)?;
    if let Value::Object(m) = &mut obj {
        m.insert("apiVersion".into(), json!(api_version));
        m.insert("kind".into(), json!(kind));
    }
    Ok(obj)
}

#[cfg(test)]
mod tests;
