//! The JSONPath subset custom resource definitions use in printer columns, scale paths and
//! selectable fields: `.a.b`, `['a.b']`, `[0]`, `[*]` and filters `[?(@.type=="Ready")]`.

use serde_json::Value;

enum Step {
    Field(String),
    Index(usize),
    All,
    Filter {
        path: Vec<String>,
        equal: bool,
        value: Value,
    },
}

/// Parses `path`; `None` when it is not in the subset.
fn parse(path: &str) -> Option<Vec<Step>> {
    let p = path.trim();
    let p = p
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(p);
    let mut p = p.strip_prefix('$').unwrap_or(p);
    let mut steps = Vec::new();
    while !p.is_empty() {
        if let Some(rest) = p.strip_prefix('.') {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            if end == 0 {
                return None;
            }
            steps.push(Step::Field(rest[..end].to_string()));
            p = &rest[end..];
        } else if let Some(rest) = p.strip_prefix('[') {
            let end = closing(rest)?;
            let inner = rest[..end].trim();
            p = &rest[end + 1..];
            steps.push(bracket(inner)?);
        } else {
            return None;
        }
    }
    Some(steps)
}

/// Where the `]` closing a bracket starting at `s` is (quotes may hold `]`).
fn closing(s: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, ']') => return Some(i),
            _ => {}
        }
    }
    None
}

fn unquote(s: &str) -> Option<&str> {
    let s = s.trim();
    s.strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| s.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
}

fn bracket(inner: &str) -> Option<Step> {
    if inner == "*" {
        return Some(Step::All);
    }
    if let Ok(i) = inner.parse::<usize>() {
        return Some(Step::Index(i));
    }
    if let Some(name) = unquote(inner) {
        return Some(Step::Field(name.to_string()));
    }
    let cond = inner.strip_prefix("?(")?.strip_suffix(')')?;
    let (lhs, equal, rhs) = if let Some((l, r)) = cond.split_once("==") {
        (l, true, r)
    } else {
        let (l, r) = cond.split_once("!=")?;
        (l, false, r)
    };
    let path = lhs
        .trim()
        .strip_prefix("@.")?
        .split('.')
        .map(str::to_string)
        .collect();
    let rhs = rhs.trim();
    let value = match unquote(rhs) {
        Some(s) => Value::String(s.to_string()),
        None => serde_json::from_str(rhs).ok()?,
    };
    Some(Step::Filter { path, equal, value })
}

/// The values `path` selects in `obj` (none when it selects nothing or is not understood).
pub fn select<'a>(obj: &'a Value, path: &str) -> Vec<&'a Value> {
    let Some(steps) = parse(path) else {
        return Vec::new();
    };
    let mut current = vec![obj];
    for step in &steps {
        let mut next = Vec::new();
        for v in current {
            match step {
                Step::Field(f) => next.extend(v.get(f.as_str())),
                Step::Index(i) => next.extend(v.get(*i)),
                Step::All => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Filter { path, equal, value } => {
                    for item in v.as_array().into_iter().flatten() {
                        let mut at = Some(item);
                        for f in path {
                            at = at.and_then(|a| a.get(f.as_str()));
                        }
                        if (at == Some(value)) == *equal {
                            next.push(item);
                        }
                    }
                }
            }
        }
        current = next;
    }
    current
}

/// Whether `path` is a plain field path (`.spec.replicas`), as scale paths must be.
pub fn is_field_path(path: &str) -> bool {
    path.starts_with('.')
        && parse(path)
            .is_some_and(|s| !s.is_empty() && s.iter().all(|s| matches!(s, Step::Field(_))))
}

/// The field names of a plain field path.
pub fn fields(path: &str) -> Vec<String> {
    parse(path)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|s| match s {
            Step::Field(f) => Some(f),
            _ => None,
        })
        .collect()
}

/// Sets the value at plain field path `path`, creating objects on the way.
pub fn set(obj: &mut Value, path: &str, value: Value) {
    let mut at = obj;
    for f in fields(path) {
        if !at.is_object() {
            *at = Value::Object(Default::default());
        }
        at = &mut at[f.as_str()];
    }
    *at = value;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selects_what_printer_columns_ask_for() {
        let obj = json!({"spec": {"replicas": 3, "a.b": 1, "items": [{"n": "x"}, {"n": "y"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "False"}]}});
        assert_eq!(select(&obj, ".spec.replicas"), [&json!(3)]);
        assert_eq!(select(&obj, "{.spec['a.b']}"), [&json!(1)]);
        assert_eq!(select(&obj, ".spec.items[1].n"), [&json!("y")]);
        assert_eq!(select(&obj, ".spec.items[*].n"), [&json!("x"), &json!("y")]);
        assert_eq!(
            select(&obj, r#".status.conditions[?(@.type=="Ready")].status"#),
            [&json!("True")]
        );
        assert!(select(&obj, ".spec.missing").is_empty());
        assert!(select(&obj, "spec..x[").is_empty());
        assert!(is_field_path(".spec.replicas") && !is_field_path(".spec.items[0]"));
        let mut o = json!({});
        set(&mut o, ".status.replicas", json!(2));
        assert_eq!(o, json!({"status": {"replicas": 2}}));
    }
}
