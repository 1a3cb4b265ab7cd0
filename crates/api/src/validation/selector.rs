//! Label selector checks (apimachinery's `ValidateLabelSelector`), and whether a selector
//! selects a template's labels.

use serde_json::Value;

use super::field::{Errors, Path, items, text};
use super::{validate_label_value, validate_qualified_name};

/// Checks a label selector's matchLabels and matchExpressions.
pub fn validate_label_selector(selector: &Value, at: &Path, e: &mut Errors) {
    if let Some(Value::Object(labels)) = selector.get("matchLabels") {
        let path = at.child("matchLabels");
        for (k, v) in labels {
            e.extend(validate_qualified_name(k, path.as_str()));
            e.extend(validate_label_value(
                v.as_str().unwrap_or_default(),
                path.as_str(),
            ));
        }
    }
    for (i, req) in items(selector, "matchExpressions").iter().enumerate() {
        let path = at.child("matchExpressions").index(i);
        let values = items(req, "values");
        match text(req, "operator") {
            "In" | "NotIn" if values.is_empty() => e.required(
                &path.child("values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            ),
            "Exists" | "DoesNotExist" if !values.is_empty() => e.forbidden(
                &path.child("values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            ),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            op => e.invalid(
                &path.child("operator"),
                &Value::from(op),
                "not a valid selector operator",
            ),
        }
        e.extend(validate_qualified_name(
            text(req, "key"),
            path.child("key").as_str(),
        ));
        for (j, v) in values.iter().enumerate() {
            let value = v.as_str().unwrap_or_default();
            e.extend(validate_label_value(
                value,
                path.child("values").index(j).as_str(),
            ));
        }
    }
}

/// Whether `selector` (API form) selects an object with `labels`; a selector that cannot be
/// read selects nothing.
pub fn selects(selector: &Value, labels: &serde_json::Map<String, Value>) -> bool {
    let Ok(parsed) = serde_json::from_value::<
        k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    >(selector.clone()) else {
        return false;
    };
    let pairs: Vec<(&str, &str)> = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default()))
        .collect();
    crate::selector::LabelSelector::from_api(&parsed).matches(&pairs)
}
