//! ValidatingAdmissionPolicy: CEL `validations` (`message` or `messageExpression`, `reason`)
//! and `auditAnnotations`, acted on as the binding's `validationActions` say: Deny refuses,
//! Warn warns, Audit annotates the audit event.

use serde_json::{Value, json};
use tug_api::validation::field::{Errors, Path, items, text};
use tug_api::{ApiError, Cause};

use super::{Policies, compiles, validate_common};
use crate::admission::{Attributes, notes};
use crate::registry::{PatchType, Registry, WriteOptions};

/// Checks a policy as kube-apiserver does on write: its expressions compile, its names and
/// actions are valid.
pub fn validate_policy(obj: &Value) -> Vec<Cause> {
    let mut errs = Errors::default();
    let spec = &obj["spec"];
    let at = Path::new("spec");
    if items(spec, "validations").is_empty() && items(spec, "auditAnnotations").is_empty() {
        errs.required(
            &at.child("validations"),
            "validations or auditAnnotations must contain at least one item",
        );
    }
    for (i, v) in items(spec, "validations").iter().enumerate() {
        let p = at.child("validations").index(i);
        compiles(&mut errs, &p.child("expression"), text(v, "expression"));
        let me = text(v, "messageExpression");
        if !me.is_empty() {
            compiles(&mut errs, &p.child("messageExpression"), me);
        }
    }
    validate_common(spec, &at, &mut errs);
    for (i, v) in items(spec, "auditAnnotations").iter().enumerate() {
        compiles(
            &mut errs,
            &at.child("auditAnnotations")
                .index(i)
                .child("valueExpression"),
            text(v, "valueExpression"),
        );
    }
    errs.0
}

/// Checks a binding: a policy name and at least one valid action.
pub fn validate_binding(obj: &Value) -> Vec<Cause> {
    let mut errs = Errors(super::validate_binding(obj));
    let at = Path::new("spec");
    let actions = items(&obj["spec"], "validationActions");
    if actions.is_empty() {
        errs.required(
            &at.child("validationActions"),
            "at least one validation action is required",
        );
    }
    for (i, a) in actions.iter().enumerate() {
        errs.one_of(
            &at.child("validationActions").index(i),
            Some(a),
            &["Audit", "Deny", "Warn"],
        );
    }
    errs.0
}

/// The most kinds one policy is type-checked against, as kube-controller-manager bounds it.
const MAX_TYPES_CHECKED: usize = 10;

/// The kinds a policy's rules name without wildcards (subresources left out), sorted and
/// without repeats: those its expressions are type-checked against.
fn kinds_checked(
    policy: &Value,
    catalog: &tug_api::catalog::Catalog,
) -> Vec<&'static tug_api::Resource> {
    let mut found = Vec::new();
    'rules: for rule in items(&policy["spec"]["matchConstraints"], "resourceRules") {
        let names = |f: &str| -> Vec<&str> {
            let mut v: Vec<&str> = items(rule, f).iter().filter_map(Value::as_str).collect();
            v.sort_unstable();
            v
        };
        let (groups, versions, resources) =
            (names("apiGroups"), names("apiVersions"), names("resources"));
        if groups.iter().chain(&versions).any(|g| g.contains('*')) {
            continue;
        }
        let mut counted = 0;
        for g in &groups {
            for v in &versions {
                for res in resources
                    .iter()
                    .filter(|r| !r.contains('*') && !r.contains('/'))
                {
                    if counted == MAX_TYPES_CHECKED {
                        break 'rules;
                    }
                    counted += 1;
                    if let Some(r) = catalog.lookup(g, v, res) {
                        found.push(r);
                    }
                }
            }
        }
    }
    found.sort_by_key(|r| (r.group, r.version, r.kind));
    found.dedup_by_key(|r| (r.group, r.version, r.kind));
    found
}

/// A policy's `status.typeChecking`: each validation's expression and messageExpression
/// checked against each kind its rules name, the problems as kube-controller-manager words
/// them (`apps/v1, Kind=Deployment: ERROR: <input>:1:22: …`).
pub fn type_checking(policy: &Value, catalog: &tug_api::catalog::Catalog) -> Value {
    let kinds = kinds_checked(policy, catalog);
    let mut warnings = Vec::new();
    for (i, v) in items(&policy["spec"], "validations").iter().enumerate() {
        for field in ["expression", "messageExpression"] {
            let expr = text(v, field);
            if expr.is_empty() {
                continue;
            }
            let found: Vec<String> = kinds
                .iter()
                .filter_map(|r| {
                    let issues = tug_api::crd::typecheck::check(expr, r)?;
                    Some(format!(
                        "{}/{}, Kind={}: {issues}\n",
                        r.group, r.version, r.kind
                    ))
                })
                .collect();
            if !found.is_empty() {
                warnings.push(json!({"fieldRef": format!("spec.validations[{i}].{field}"),
                    "warning": found.join("\n")}));
            }
        }
    }
    if warnings.is_empty() {
        json!({})
    } else {
        json!({"expressionWarnings": warnings})
    }
}

/// Writes the type checking of each policy whose generation it has not yet seen
/// (`status.observedGeneration` behind `metadata.generation`), in the background.
pub(super) fn check_types(registry: &Registry, policies: &crate::mirror::Objects) {
    let stale: Vec<Value> = policies
        .values()
        .filter(|p| {
            let generation = p["metadata"]["generation"].as_i64().unwrap_or(0);
            p["status"]["observedGeneration"].as_i64().unwrap_or(0) < generation
        })
        .cloned()
        .collect();
    if stale.is_empty() {
        return;
    }
    let registry = registry.clone();
    tokio::spawn(async move {
        let Some(r) = tug_api::catalog::lookup(
            "admissionregistration.k8s.io",
            "v1",
            "validatingadmissionpolicies",
        ) else {
            return;
        };
        let catalog = registry.catalog();
        for p in stale {
            let mut checking = type_checking(&p, &catalog);
            if checking.get("expressionWarnings").is_none() {
                // A merge patch removes earlier warnings only when told to.
                checking["expressionWarnings"] = Value::Null;
            }
            let patch = json!({"status": {"observedGeneration": p["metadata"]["generation"],
                "typeChecking": checking}});
            let opts = WriteOptions {
                manager: "validatingadmissionpolicy-status".into(),
                ..Default::default()
            };
            let name = tug_api::meta::name(&p);
            if let Err(e) = registry
                .patch(
                    r,
                    None,
                    name,
                    PatchType::Merge,
                    &patch,
                    Some("status"),
                    &opts,
                )
                .await
            {
                tracing::debug!(policy = name, error = %e.message, "type checking not written");
            }
        }
    });
}

impl Policies {
    /// Evaluates every validating binding whose policy matches the request.
    pub async fn validate(
        &self,
        registry: &Registry,
        a: &Attributes<'_>,
        obj: Option<&Value>,
    ) -> Result<(), ApiError> {
        for (policy, binding) in self.pairs(a) {
            let Some(bound) = self.bind(registry, a, obj, policy, binding).await? else {
                continue;
            };
            let (policy_name, binding_name) = (bound.policy_name(), bound.binding_name());
            let spec = bound.spec();
            let actions: Vec<&str> = items(&bound.binding["spec"], "validationActions")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            // The action taken on a failed validation (`allow` when none failed).
            let mut action = "allow";
            let started = std::time::Instant::now();
            let checked = bound.each_param(a, obj, &[], |ev| {
                for (i, aa) in items(spec, "auditAnnotations").iter().enumerate() {
                    match ev.eval(text(aa, "valueExpression")) {
                        Ok(Value::String(s)) => {
                            notes::annotate(&format!("{policy_name}/{}", text(aa, "key")), &s)
                        }
                        Ok(Value::Null) => {}
                        Ok(_) | Err(_) => {
                            tracing::debug!(
                                policy = policy_name,
                                index = i,
                                "audit annotation skipped"
                            )
                        }
                    }
                }
                for (i, v) in items(spec, "validations").iter().enumerate() {
                    let expr = text(v, "expression");
                    let (message, reason) = match ev.eval(expr) {
                        Ok(Value::Bool(true)) => continue,
                        Ok(Value::Bool(false)) => {
                            (message_of(v, ev), text(v, "reason").to_string())
                        }
                        Ok(other) => {
                            return bound.failed(
                                a,
                                format!(
                                    "expression '{expr}' resulted in error: returned {other}, not a bool"
                                ),
                            );
                        }
                        Err(e) => {
                            return bound
                                .failed(a, format!("expression '{expr}' resulted in error: {e}"));
                        }
                    };
                    if actions.contains(&"Warn") {
                        action = "warn";
                        notes::warn(&format!(
                            "Validation failed for ValidatingAdmissionPolicy '{policy_name}' with binding '{binding_name}': {message}"
                        ));
                    }
                    if actions.contains(&"Audit") {
                        if action == "allow" {
                            action = "audit";
                        }
                        notes::annotate(
                            "validation.policy.admission.k8s.io/validation_failure",
                            &json!([{"message": message, "policy": policy_name,
                                "binding": binding_name, "expressionIndex": i,
                                "validationActions": actions}])
                            .to_string(),
                        );
                    }
                    if actions.contains(&"Deny") {
                        action = "deny";
                        return Err(deny(
                            a,
                            &reason,
                            format!(
                                "ValidatingAdmissionPolicy '{policy_name}' with binding '{binding_name}' denied request: {message}"
                            ),
                        ));
                    }
                }
                Ok(())
            });
            // A refusal that no Deny made is the policy's own failure.
            let (action, error_type) = match (&checked, action) {
                (Err(_), "deny") => ("deny", "no_error"),
                (Err(_), _) => ("deny", "invalid_error"),
                (Ok(()), action) => (action, "no_error"),
            };
            crate::admission::metrics::validating_checked(
                policy_name,
                binding_name,
                action,
                error_type,
                started.elapsed().as_secs_f64(),
            );
            checked?;
        }
        Ok(())
    }
}

/// A validation's message: its messageExpression's string, else its message, else the
/// failed expression.
fn message_of(v: &Value, ev: &tug_api::crd::cel::Evaluator<'_>) -> String {
    let me = text(v, "messageExpression");
    if !me.is_empty()
        && let Ok(Value::String(s)) = ev.eval(me)
        && !s.trim().is_empty()
    {
        return s;
    }
    match text(v, "message") {
        "" => format!("failed expression: {}", text(v, "expression")),
        m => m.to_string(),
    }
}

/// The error of a Deny: kube-apiserver's forbidden message, with the validation's reason
/// (Invalid by default) and its code, and the message as a cause.
fn deny(a: &Attributes<'_>, reason: &str, message: String) -> ApiError {
    let mut e = crate::admission::forbidden(a, &message);
    (e.code, e.reason) = match reason {
        "Unauthorized" => (401, "Unauthorized"),
        "Forbidden" => (403, "Forbidden"),
        "RequestEntityTooLarge" => (413, "RequestEntityTooLarge"),
        _ => (422, "Invalid"),
    };
    if let Some(d) = e.details.as_mut() {
        d.causes.push(Cause::new("", "", message));
    }
    e
}
