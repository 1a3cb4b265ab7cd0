//! The access reviews of authorization.k8s.io, answered (never stored) as kube-apiserver
//! answers them: SubjectAccessReview and LocalSubjectAccessReview for any user,
//! SelfSubjectAccessReview and SelfSubjectRulesReview for the caller.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tug_api::{ApiError, Cause, Resource};

use super::{Attributes, Authorizer};
use crate::auth::Identity;

/// Answers a review of `r`'s kind posted as `body` by `caller` (in `namespace` for a
/// LocalSubjectAccessReview). `None` when `r` is not an access review.
pub fn answer(
    authorizer: &Authorizer,
    r: &Resource,
    namespace: Option<&str>,
    mut body: Value,
    caller: &Identity,
) -> Option<Result<Value, ApiError>> {
    let kind = r.kind;
    let result = match kind {
        "SubjectAccessReview" | "LocalSubjectAccessReview" | "SelfSubjectAccessReview" => {
            access_review(authorizer, r, namespace, &mut body, caller).map(|status| {
                body["status"] = status;
                body
            })
        }
        "SelfSubjectRulesReview" => rules_review(authorizer, &body, caller),
        _ => return None,
    };
    Some(result.map(|mut out| {
        out["kind"] = json!(r.kind);
        out["apiVersion"] = json!(r.api_version());
        if out.get("metadata").is_none_or(Value::is_null) {
            out["metadata"] = json!({});
        }
        out
    }))
}

fn invalid(r: &Resource, causes: Vec<Cause>) -> ApiError {
    ApiError::invalid(r.group, r.kind, "", causes)
}

fn invalid_value(field: &str, value: &Value, detail: &str) -> Cause {
    Cause::new(
        "FieldValueInvalid",
        field,
        format!("Invalid value: {}: {detail}", go_value(value)),
    )
}

/// A value as Kubernetes' field errors print it: strings quoted, objects as JSON.
fn go_value(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// The status of a SubjectAccessReview, LocalSubjectAccessReview or SelfSubjectAccessReview.
fn access_review(
    authorizer: &Authorizer,
    r: &Resource,
    namespace: Option<&str>,
    body: &mut Value,
    caller: &Identity,
) -> Result<Value, ApiError> {
    let spec = body.get("spec").cloned().unwrap_or(Value::Null);
    let resource = spec.get("resourceAttributes").filter(|v| !v.is_null());
    let non_resource = spec.get("nonResourceAttributes").filter(|v| !v.is_null());
    let mut causes = Vec::new();
    let mut metadata = body.get("metadata").cloned().unwrap_or(json!({}));
    if let Some(m) = metadata.as_object_mut() {
        m.remove("managedFields");
        m.remove("creationTimestamp");
    }
    match (resource, non_resource) {
        (Some(_), Some(n)) => causes.push(invalid_value(
            "spec.nonResourceAttributes",
            n,
            "cannot be specified in combination with resourceAttributes",
        )),
        (None, None) => causes.push(invalid_value(
            "spec.resourceAttributes",
            &Value::Null,
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
        _ => {}
    }
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let user = if r.kind == "SelfSubjectAccessReview" {
        caller.clone()
    } else {
        let groups: Vec<String> = spec
            .get("groups")
            .and_then(|g| serde_json::from_value(g.clone()).ok())
            .unwrap_or_default();
        let name = text(&spec, "user");
        if name.is_empty() && groups.is_empty() {
            causes.push(invalid_value(
                "spec.user",
                &json!(name),
                "at least one of user or group must be specified",
            ));
        }
        Identity {
            user: name,
            groups,
            uid: text(&spec, "uid"),
            extra: spec
                .get("extra")
                .and_then(|e| {
                    serde_json::from_value::<BTreeMap<String, Vec<String>>>(e.clone()).ok()
                })
                .unwrap_or_default(),
        }
    };
    if r.kind == "LocalSubjectAccessReview" {
        let ns = namespace.unwrap_or("");
        let body_ns = text(&metadata, "namespace");
        if !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        body["metadata"]["namespace"] = json!(ns);
        if let Some(m) = metadata.as_object_mut() {
            m.remove("namespace");
        }
        if !metadata.as_object().is_none_or(|m| m.is_empty()) {
            causes.insert(
                0,
                invalid_value("metadata", &metadata, "must be empty except for namespace"),
            );
        }
        if let Some(res) = resource
            && text(res, "namespace") != ns
        {
            causes.push(invalid_value(
                "spec.resourceAttributes.namespace",
                &json!(text(res, "namespace")),
                "must match metadata.namespace",
            ));
        }
        if let Some(n) = non_resource {
            causes.push(invalid_value(
                "spec.nonResourceAttributes",
                n,
                "disallowed on this kind of request",
            ));
        }
    } else if !metadata.as_object().is_none_or(|m| m.is_empty()) {
        causes.insert(0, invalid_value("metadata", &metadata, "must be empty"));
    }
    if !causes.is_empty() {
        return Err(invalid(r, causes));
    }
    let attributes = match (resource, non_resource) {
        (Some(a), _) => Attributes::resource(
            &text(a, "verb"),
            &text(a, "group"),
            &text(a, "resource"),
            &text(a, "subresource"),
            &text(a, "namespace"),
            &text(a, "name"),
        ),
        (_, Some(a)) => Attributes::non_resource(&text(a, "verb"), &text(a, "path")),
        (None, None) => return Err(invalid(r, Vec::new())),
    };
    let decision = authorizer.decide(&user, &attributes);
    let mut status = json!({"allowed": decision.allowed});
    if !decision.reason.is_empty() {
        status["reason"] = json!(decision.reason);
    }
    Ok(status)
}

/// A SelfSubjectRulesReview: every rule that applies to the caller in the namespace asked
/// about, one entry per rule, as RBAC holds them.
fn rules_review(
    authorizer: &Authorizer,
    body: &Value,
    caller: &Identity,
) -> Result<Value, ApiError> {
    let namespace = body
        .pointer("/spec/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    if namespace.is_empty() {
        return Err(ApiError::bad_request("no namespace on request"));
    }
    let (rules, errors) = authorizer.policy().rules_for(caller, namespace);
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    let non_empty = |l: &Option<Vec<String>>| l.as_ref().filter(|l| !l.is_empty()).cloned();
    for rule in rules {
        if rule.resources.as_ref().is_some_and(|r| !r.is_empty()) {
            let mut entry = json!({"verbs": rule.verbs});
            if let Some(g) = non_empty(&rule.api_groups) {
                entry["apiGroups"] = json!(g);
            }
            if let Some(r) = non_empty(&rule.resources) {
                entry["resources"] = json!(r);
            }
            if let Some(n) = non_empty(&rule.resource_names) {
                entry["resourceNames"] = json!(n);
            }
            resource_rules.push(entry);
        }
        if let Some(urls) = non_empty(&rule.non_resource_urls) {
            non_resource_rules.push(json!({"verbs": rule.verbs, "nonResourceURLs": urls}));
        }
    }
    let mut status = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": false,
    });
    if !errors.is_empty() {
        status["evaluationError"] = json!(super::rbac::aggregate(errors));
    }
    Ok(json!({"metadata": {}, "spec": {}, "status": status}))
}
