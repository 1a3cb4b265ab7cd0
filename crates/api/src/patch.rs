//! JSON merge patch (RFC 7386) and JSON patch (RFC 6902) over JSON values.

use serde_json::Value;

use crate::ApiError;

/// Applies a JSON merge patch: objects merge recursively, `null` deletes, anything else
/// replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(serde_json::Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// Splits a JSON pointer into its unescaped tokens.
fn tokens(path: &str) -> Result<Vec<String>, ApiError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| ApiError::bad_request(format!("invalid JSON pointer {path:?}")))?;
    Ok(rest.split('/').map(unescape).collect())
}

fn parent<'a>(doc: &'a mut Value, toks: &[String], path: &str) -> Result<&'a mut Value, ApiError> {
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m.get_mut(t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| {
            ApiError::new(
                422,
                "Invalid",
                format!("the JSON patch path {path:?} does not exist"),
            )
        })?;
    }
    Ok(cur)
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), ApiError> {
    let toks = tokens(path)?;
    let Some((last, init)) = toks.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent(doc, init, path)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            let i = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>()
                    .ok()
                    .filter(|i| *i <= a.len())
                    .ok_or_else(|| {
                        ApiError::new(422, "Invalid", format!("index out of range in {path:?}"))
                    })?
            };
            a.insert(i, value);
            Ok(())
        }
        _ => Err(ApiError::new(
            422,
            "Invalid",
            format!("cannot add at {path:?}"),
        )),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, ApiError> {
    let toks = tokens(path)?;
    let Some((last, init)) = toks.split_last() else {
        return Err(ApiError::new(
            422,
            "Invalid",
            "cannot remove the whole document",
        ));
    };
    let missing = || {
        ApiError::new(
            422,
            "Invalid",
            format!("the JSON patch path {path:?} does not exist"),
        )
    };
    match parent(doc, init, path)? {
        Value::Object(m) => m.remove(last).ok_or_else(missing),
        Value::Array(a) => {
            let i = last
                .parse::<usize>()
                .ok()
                .filter(|i| *i < a.len())
                .ok_or_else(missing)?;
            Ok(a.remove(i))
        }
        _ => Err(missing()),
    }
}

fn get(doc: &Value, path: &str) -> Result<Value, ApiError> {
    let toks = tokens(path)?;
    let mut cur = doc;
    for t in &toks {
        cur = match cur {
            Value::Object(m) => m.get(t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        }
        .ok_or_else(|| {
            ApiError::new(
                422,
                "Invalid",
                format!("the JSON patch path {path:?} does not exist"),
            )
        })?;
    }
    Ok(cur.clone())
}

/// Applies a JSON patch (a list of add/remove/replace/move/copy/test operations). All or
/// nothing: on error `doc` is unchanged.
pub fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| ApiError::bad_request("a JSON patch must be an array of operations"))?;
    let mut work = doc.clone();
    for (i, op) in ops.iter().enumerate() {
        let field = |name: &str| {
            op.get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    ApiError::bad_request(format!("JSON patch operation {i} has no {name:?}"))
                })
        };
        let value = || {
            op.get("value").cloned().ok_or_else(|| {
                ApiError::bad_request(format!("JSON patch operation {i} has no \"value\""))
            })
        };
        let path = field("path")?;
        match field("op")?.as_str() {
            "add" => add(&mut work, &path, value()?)?,
            "remove" => {
                remove(&mut work, &path)?;
            }
            "replace" => {
                remove(&mut work, &path)?;
                add(&mut work, &path, value()?)?;
            }
            "move" => {
                let from = field("from")?;
                let v = remove(&mut work, &from)?;
                add(&mut work, &path, v)?;
            }
            "copy" => {
                let from = field("from")?;
                let v = get(&work, &from)?;
                add(&mut work, &path, v)?;
            }
            "test" => {
                if get(&work, &path)? != value()? {
                    return Err(ApiError::new(
                        422,
                        "Invalid",
                        format!("JSON patch test operation {i} failed at {path:?}"),
                    ));
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "JSON patch operation {i}: unknown op {other:?}"
                )));
            }
        }
    }
    *doc = work;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
        let mut arr = json!({"a": [1, 2]});
        merge_patch(&mut arr, &json!({"a": [3]}));
        assert_eq!(arr, json!({"a": [3]}));
    }

    #[test]
    fn json_patch_ops_and_atomicity() {
        let mut d = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"list": [1, 2]}});
        json_patch(
            &mut d,
            &json!([
                {"op": "add", "path": "/metadata/labels/b~1c", "value": "2"},
                {"op": "replace", "path": "/spec/list/0", "value": 9},
                {"op": "add", "path": "/spec/list/-", "value": 3},
                {"op": "remove", "path": "/metadata/labels/a"},
                {"op": "test", "path": "/spec/list/2", "value": 3},
                {"op": "copy", "from": "/spec/list", "path": "/spec/copy"},
                {"op": "move", "from": "/spec/copy", "path": "/spec/moved"}
            ]),
        )
        .expect("patch applies");
        assert_eq!(d["metadata"]["labels"], json!({"b/c": "2"}));
        assert_eq!(d["spec"]["list"], json!([9, 2, 3]));
        assert_eq!(d["spec"]["moved"], json!([9, 2, 3]));
        let before = d.clone();
        let err = json_patch(
            &mut d,
            &json!([{"op": "remove", "path": "/spec/list/0"}, {"op": "remove", "path": "/nope"}]),
        );
        assert!(err.is_err());
        assert_eq!(d, before, "a failed patch changes nothing");
        assert!(json_patch(&mut d, &json!({"op": "add"})).is_err());
    }
}
