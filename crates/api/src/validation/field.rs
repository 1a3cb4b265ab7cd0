//! Field errors as Kubernetes words them (apimachinery's `field.Error`): a path, a type
//! (`Required value`, `Invalid value`, `Unsupported value`, ...), the bad value printed the
//! way Go prints it, and a detail.

use serde_json::Value;

use crate::status::Cause;

/// A field path being built (`spec.containers[0].ports[1].containerPort`).
#[derive(Clone, Debug)]
pub struct Path(String);

impl Path {
    /// A path starting at field `name`.
    pub fn new(name: &str) -> Path {
        Path(name.to_string())
    }

    /// The path of child field `name`.
    pub fn child(&self, name: &str) -> Path {
        if self.0.is_empty() {
            Path(name.to_string())
        } else {
            Path(format!("{}.{name}", self.0))
        }
    }

    /// The path of element `i` of this list.
    pub fn index(&self, i: usize) -> Path {
        Path(format!("{}[{i}]", self.0))
    }

    /// The path of entry `key` of this map.
    pub fn key(&self, key: &str) -> Path {
        Path(format!("{}[{key}]", self.0))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How Go's `field.Error` prints a bad value: strings quoted, numbers and booleans bare,
/// `null` for nothing, anything else as JSON.
pub fn show(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// The field errors found in one object, in the order found.
#[derive(Debug, Default)]
pub struct Errors(pub Vec<Cause>);

impl Errors {
    /// `Required value`, with an optional detail.
    pub fn required(&mut self, path: &Path, detail: &str) {
        let message = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        self.0
            .push(Cause::new("FieldValueRequired", path.as_str(), message));
    }

    /// `Invalid value: VALUE: DETAIL`.
    pub fn invalid(&mut self, path: &Path, value: &Value, detail: &str) {
        let mut message = format!("Invalid value: {}", show(value));
        if !detail.is_empty() {
            message.push_str(": ");
            message.push_str(detail);
        }
        self.0
            .push(Cause::new("FieldValueInvalid", path.as_str(), message));
    }

    /// `Invalid value: SHOWN: DETAIL`, the value already printed (as Go's encoder writes a
    /// struct, its fields in declaration order).
    pub fn invalid_shown(&mut self, path: &Path, shown: &str, detail: &str) {
        self.0.push(Cause::new(
            "FieldValueInvalid",
            path.as_str(),
            format!("Invalid value: {shown}: {detail}"),
        ));
    }

    /// `Unsupported value: VALUE: supported values: "a", "b"`.
    pub fn not_supported(&mut self, path: &Path, value: &Value, supported: &[&str]) {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        self.0.push(Cause::new(
            "FieldValueNotSupported",
            path.as_str(),
            format!(
                "Unsupported value: {}: supported values: {}",
                show(value),
                list.join(", ")
            ),
        ));
    }

    /// `Duplicate value: VALUE`.
    pub fn duplicate(&mut self, path: &Path, value: &Value) {
        self.0.push(Cause::new(
            "FieldValueDuplicate",
            path.as_str(),
            format!("Duplicate value: {}", show(value)),
        ));
    }

    /// `Forbidden: DETAIL`.
    pub fn forbidden(&mut self, path: &Path, detail: &str) {
        self.0.push(Cause::new(
            "FieldValueForbidden",
            path.as_str(),
            format!("Forbidden: {detail}"),
        ));
    }

    /// Adds causes found elsewhere.
    pub fn extend(&mut self, causes: impl IntoIterator<Item = Cause>) {
        self.0.extend(causes);
    }

    /// A `field` value that must be a non-negative integer when present
    /// (`must be greater than or equal to 0`).
    pub fn non_negative(&mut self, path: &Path, value: Option<&Value>) {
        if let Some(v) = value
            && v.as_i64().is_some_and(|n| n < 0)
        {
            self.invalid(path, v, "must be greater than or equal to 0");
        }
    }

    /// A string field that must be one of `supported` when present.
    pub fn one_of(&mut self, path: &Path, value: Option<&Value>, supported: &[&str]) {
        if let Some(v) = value
            && !v.as_str().is_some_and(|s| supported.contains(&s))
        {
            self.not_supported(path, v, supported);
        }
    }
}

/// The string at `key` of `obj`, or "".
pub fn text<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The items of the list at `key` of `obj` (none when absent).
pub fn items<'a>(obj: &'a Value, key: &str) -> &'a [Value] {
    obj.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_print_values_as_go_does() {
        let mut e = Errors::default();
        let p = Path::new("spec").child("ports").index(0).child("port");
        e.invalid(&p, &json!(70000), "must be between 1 and 65535, inclusive");
        e.not_supported(
            &Path::new("spec.type"),
            &json!("Foo"),
            &["ClusterIP", "NodePort"],
        );
        e.duplicate(&Path::new("spec.ports[1].name"), &json!("http"));
        e.required(&Path::new("spec.selector"), "");
        let got: Vec<(String, String)> = e.0.into_iter().map(|c| (c.field, c.message)).collect();
        assert_eq!(
            got,
            [
                (
                    "spec.ports[0].port".to_string(),
                    "Invalid value: 70000: must be between 1 and 65535, inclusive".to_string()
                ),
                (
                    "spec.type".into(),
                    "Unsupported value: \"Foo\": supported values: \"ClusterIP\", \"NodePort\""
                        .into()
                ),
                (
                    "spec.ports[1].name".into(),
                    "Duplicate value: \"http\"".into()
                ),
                ("spec.selector".into(), "Required value".into()),
            ]
        );
    }
}
