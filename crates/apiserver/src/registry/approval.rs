//! CertificateSigningRequests' `approval` and `status` subresources, as kube-apiserver's CSR
//! strategies keep them apart: the approval subresource changes only the Approved and Denied
//! conditions (the certificate and other conditions stay), the status subresource changes
//! everything in status but those two conditions.

use serde_json::{Value, json};
use tug_api::{ApiError, Cause};

const DECISIONS: [&str; 2] = ["Approved", "Denied"];

fn conditions(obj: &Value) -> Vec<Value> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn is_decision(c: &Value) -> bool {
    c["type"].as_str().is_some_and(|t| DECISIONS.contains(&t))
}

/// The request `new` (written to `approval`) becomes: `old` with `new`'s Approved and Denied
/// conditions and `old`'s others.
pub fn approval(old: &Value, new: &Value) -> Result<Value, ApiError> {
    let decisions: Vec<Value> = conditions(new).into_iter().filter(is_decision).collect();
    check(old, &decisions)?;
    let mut out = old.clone();
    let mut all = decisions;
    all.extend(conditions(old).into_iter().filter(|c| !is_decision(c)));
    set_conditions(&mut out, all);
    Ok(out)
}

/// The request `new` (written to `status`) becomes: `old` with `new`'s status, except that
/// the Approved and Denied conditions stay `old`'s.
pub fn status(old: &Value, new: &Value) -> Value {
    let mut out = old.clone();
    out["status"] = new.get("status").cloned().unwrap_or_else(|| json!({}));
    let mut all: Vec<Value> = conditions(old).into_iter().filter(is_decision).collect();
    all.extend(conditions(new).into_iter().filter(|c| !is_decision(c)));
    set_conditions(&mut out, all);
    out
}

fn set_conditions(obj: &mut Value, all: Vec<Value>) {
    if !obj["status"].is_object() {
        obj["status"] = json!({});
    }
    if all.is_empty() {
        if let Some(m) = obj["status"].as_object_mut() {
            m.remove("conditions");
        }
    } else {
        obj["status"]["conditions"] = Value::Array(all);
    }
}

/// kube-apiserver's checks of an approval: Approved and Denied exclude each other, and an
/// approval or denial once given is not taken back.
fn check(old: &Value, decisions: &[Value]) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    let has = |t: &str| decisions.iter().any(|c| c["type"] == t);
    if has("Approved") && has("Denied") {
        let i = decisions
            .iter()
            .position(|c| c["type"] == "Denied")
            .unwrap_or(0);
        causes.push(Cause::new(
            "FieldValueInvalid",
            &format!("status.conditions[{i}].type"),
            "Invalid value: \"Denied\": Approved and Denied conditions are mutually exclusive",
        ));
    }
    for t in DECISIONS {
        if conditions(old).iter().any(|c| c["type"] == t) && !has(t) {
            causes.push(Cause::new(
                "FieldValueForbidden",
                "status.conditions",
                format!("Forbidden: updates may not remove a condition of type {t:?}"),
            ));
        }
    }
    if causes.is_empty() {
        return Ok(());
    }
    let name = old["metadata"]["name"].as_str().unwrap_or_default();
    Err(ApiError::invalid(
        "certificates.k8s.io",
        "CertificateSigningRequest",
        name,
        causes,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(conditions: Value, cert: Option<&str>) -> Value {
        let mut v = json!({"metadata": {"name": "n"}, "spec": {"signerName": "s"},
                           "status": {"conditions": conditions}});
        if let Some(c) = cert {
            v["status"]["certificate"] = json!(c);
        }
        v
    }

    #[test]
    fn approval_changes_only_the_decision() {
        let old = csr(json!([{"type": "Failed"}]), Some("old-cert"));
        let new = csr(json!([{"type": "Approved"}]), Some("forged"));
        let out = approval(&old, &new).unwrap();
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "Approved"}, {"type": "Failed"}])
        );
        assert_eq!(out["status"]["certificate"], "old-cert");
    }

    #[test]
    fn status_keeps_the_decision() {
        let old = csr(json!([{"type": "Approved"}]), None);
        let new = csr(
            json!([{"type": "Denied"}, {"type": "Failed"}]),
            Some("cert"),
        );
        let out = status(&old, &new);
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "Approved"}, {"type": "Failed"}])
        );
        assert_eq!(out["status"]["certificate"], "cert");
    }

    #[test]
    fn decisions_exclude_each_other_and_stay() {
        let old = csr(json!([]), None);
        let both = csr(json!([{"type": "Approved"}, {"type": "Denied"}]), None);
        let e = approval(&old, &both).unwrap_err();
        assert!(
            e.message
                .contains("Approved and Denied conditions are mutually exclusive"),
            "{}",
            e.message
        );
        let approved = csr(json!([{"type": "Approved"}]), None);
        let e = approval(&approved, &old).unwrap_err();
        assert!(
            e.message
                .contains("updates may not remove a condition of type \"Approved\""),
            "{}",
            e.message
        );
    }
}
