//! What a request asks for beyond its path: query parameters, write and delete options, field
//! validation and the field manager.

use std::collections::HashMap;

use axum::extract::{Query, Request};
use http::{HeaderMap, header};
use serde_json::Value;
use tug_api::{ApiError, Resource};

use crate::registry::{DeleteOptions, PatchType, WriteOptions};

/// The request's query parameters.
pub(super) fn query(req: &Request) -> HashMap<String, String> {
    Query::<HashMap<String, String>>::try_from_uri(req.uri())
        .map(|q| q.0)
        .unwrap_or_default()
}

pub(super) fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    matches!(q.get(name).map(String::as_str), Some("true" | "1"))
}

/// How unknown fields are treated (`fieldValidation`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

pub(super) fn field_validation(q: &HashMap<String, String>) -> FieldValidation {
    match q.get("fieldValidation").map(String::as_str) {
        Some("Strict") => FieldValidation::Strict,
        Some("Ignore") => FieldValidation::Ignore,
        _ => FieldValidation::Warn,
    }
}

/// Checks a body for fields its kind does not have, and (in the JSON text `raw`) fields named
/// twice: an error with Strict, else unknown fields are dropped (as decoding into the typed
/// object does) and, with Warn, both are reported as warnings. `whole` says the body is an
/// object being created or replaced, whose strict error kube-apiserver words as a decoding one.
/// A quantity that does not parse is a decoding error (400) in every mode.
pub(super) fn check_fields(
    r: &Resource,
    q: &HashMap<String, String>,
    body: &mut Value,
    raw: &[u8],
    whole: bool,
) -> Result<Vec<String>, ApiError> {
    let mode = field_validation(q);
    if let Some(custom) = r.custom {
        // Custom resources: the fields the schema would prune are the unknown ones.
        let unknown = match (&custom.schema, whole) {
            (Some(schema), true) => tug_api::crd::schema::prune(&mut body.clone(), schema),
            _ => Vec::new(),
        };
        return report(r, mode, raw, unknown, whole);
    }
    let found = tug_api::schema::inspect(
        r.group,
        r.version,
        r.kind,
        body,
        mode != FieldValidation::Strict,
    );
    // A quantity that does not parse fails decoding, whatever the field validation.
    if let Some(e) = found.bad_quantity {
        return Err(ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {e}",
            kind = r.kind,
            version = r.version,
        )));
    }
    report(r, mode, raw, found.unknown, whole)
}

/// What the field validation mode makes of unknown and duplicate fields: an error, warnings
/// or nothing.
fn report(
    r: &Resource,
    mode: FieldValidation,
    raw: &[u8],
    unknown: Vec<String>,
    whole: bool,
) -> Result<Vec<String>, ApiError> {
    let duplicates = if mode == FieldValidation::Ignore {
        Vec::new()
    } else {
        tug_api::duplicates::duplicate_fields(raw)
    };
    let list: Vec<String> = duplicates
        .iter()
        .map(|f| format!("duplicate field \"{f}\""))
        .chain(unknown.iter().map(|f| format!("unknown field \"{f}\"")))
        .collect();
    if list.is_empty() {
        return Ok(Vec::new());
    }
    match mode {
        FieldValidation::Strict if whole => Err(ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
            list.join(", "),
            kind = r.kind,
            version = r.version,
        ))),
        FieldValidation::Strict => Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            list.join(", ")
        ))),
        FieldValidation::Warn => Ok(list),
        FieldValidation::Ignore => Ok(Vec::new()),
    }
}

/// The field manager of a write that names none: the User-Agent's product, as Kubernetes does.
pub(super) fn default_manager(headers: &HeaderMap) -> String {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|p| !p.is_empty())
        .unwrap_or("unknown")
        .chars()
        .take(128)
        .collect()
}

pub(super) fn write_options(
    q: &HashMap<String, String>,
    manager: &str,
) -> Result<WriteOptions, ApiError> {
    let dry_run = match q.get("dryRun").map(String::as_str) {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid dryRun {other:?}: the only supported value is All"
            )));
        }
    };
    if let Some(v) = q.get("fieldValidation")
        && !matches!(v.as_str(), "Strict" | "Warn" | "Ignore" | "")
    {
        return Err(ApiError::bad_request(format!(
            "invalid fieldValidation {v:?}: must be one of Ignore, Warn or Strict"
        )));
    }
    Ok(WriteOptions {
        dry_run,
        manager: q
            .get("fieldManager")
            .filter(|m| !m.is_empty())
            .cloned()
            .unwrap_or_else(|| manager.to_string()),
        force: flag(q, "force"),
        user: None,
    })
}

/// The patch format a request's Content-Type names.
pub(super) fn patch_type(headers: &HeaderMap) -> Result<PatchType, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    PatchType::from_content_type(ct).ok_or_else(|| ApiError::unsupported_media_type(ct))
}

pub(super) fn delete_options(
    q: &HashMap<String, String>,
    body: &Value,
) -> Result<DeleteOptions, ApiError> {
    let dry_run = write_options(q, "")?.dry_run
        || body
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "All"));
    let grace = match q.get("gracePeriodSeconds") {
        Some(g) => Some(
            g.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {g:?}")))?,
        ),
        None => body.get("gracePeriodSeconds").and_then(Value::as_i64),
    };
    let policy = q
        .get("propagationPolicy")
        .cloned()
        .or_else(|| {
            body.get("propagationPolicy")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default();
    if !matches!(policy.as_str(), "" | "Orphan" | "Background" | "Foreground") {
        return Err(ApiError::bad_request(format!(
            "invalid propagationPolicy {policy:?}"
        )));
    }
    Ok(DeleteOptions {
        propagation: policy,
        dry_run,
        precondition_uid: body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        precondition_rv: body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
        grace_period_seconds: grace,
        user: None,
    })
}
