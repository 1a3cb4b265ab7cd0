//! ValidatingAdmissionPolicy (`admissionregistration.k8s.io/v1`): policies of CEL validations
//! bound to requests by ValidatingAdmissionPolicyBindings, with parameters from a `paramKind`
//! object (`paramRef` by name or selector), `matchConstraints` and the binding's
//! `matchResources`, `matchConditions`, `variables`, `validations` (`message` or
//! `messageExpression`, `reason`), `auditAnnotations`, `failurePolicy`, and the binding's
//! `validationActions`: Deny refuses, Warn warns, Audit annotates. Evaluated with the same
//! CEL engine and libraries as custom resources' rules.

use std::sync::{Arc, RwLock};

use serde_json::{Map, Value, json};
use tug_api::validation::field::{Errors, Path, items, text};
use tug_api::{ApiError, Cause, catalog, meta};

use super::webhook::{config, rules, selected};
use super::{Attributes, notes};
use crate::registry::{ListOptions, Registry};

/// The policies and bindings in force, replaced whole when one changes.
#[derive(Default)]
pub struct Policies {
    policies: RwLock<Arc<Vec<Value>>>,
    bindings: RwLock<Arc<Vec<Value>>>,
}

fn read(l: &RwLock<Arc<Vec<Value>>>) -> Arc<Vec<Value>> {
    match l.read() {
        Ok(g) => g.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

fn write(l: &RwLock<Arc<Vec<Value>>>, v: Vec<Value>) {
    match l.write() {
        Ok(mut g) => *g = Arc::new(v),
        Err(poisoned) => *poisoned.into_inner() = Arc::new(v),
    }
}

/// Checks a policy as kube-apiserver does on write: its expressions compile, its names and
/// actions are valid.
pub fn validate_policy(obj: &Value) -> Vec<Cause> {
    let mut errs = Errors::default();
    let spec = &obj["spec"];
    let at = Path::new("spec");
    let compiles = |errs: &mut Errors, path: &Path, expr: &str| {
        if expr.is_empty() {
            errs.required(path, "");
        } else if let Err(e) = tug_api::crd::cel::compile(expr) {
            errs.invalid(path, &json!(expr), &format!("compilation failed: {e}"));
        }
    };
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
    for (i, v) in items(spec, "variables").iter().enumerate() {
        let p = at.child("variables").index(i);
        if text(v, "name").is_empty() {
            errs.required(&p.child("name"), "");
        }
        compiles(&mut errs, &p.child("expression"), text(v, "expression"));
    }
    for (i, v) in items(spec, "matchConditions").iter().enumerate() {
        compiles(
            &mut errs,
            &at.child("matchConditions").index(i).child("expression"),
            text(v, "expression"),
        );
    }
    for (i, v) in items(spec, "auditAnnotations").iter().enumerate() {
        compiles(
            &mut errs,
            &at.child("auditAnnotations")
                .index(i)
                .child("valueExpression"),
            text(v, "valueExpression"),
        );
    }
    errs.one_of(
        &at.child("failurePolicy"),
        spec.get("failurePolicy"),
        &["Fail", "Ignore"],
    );
    if spec.get("matchConstraints").is_none_or(Value::is_null) {
        errs.required(&at.child("matchConstraints"), "");
    }
    errs.0
}

/// Checks a binding: a policy name and at least one valid action.
pub fn validate_binding(obj: &Value) -> Vec<Cause> {
    let mut errs = Errors::default();
    let spec = &obj["spec"];
    let at = Path::new("spec");
    if text(spec, "policyName").is_empty() {
        errs.required(&at.child("policyName"), "");
    }
    let actions = items(spec, "validationActions");
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

/// kube-apiserver's defaults of a policy: failurePolicy Fail, matchPolicy Equivalent, empty
/// selectors, rule scope `*`.
pub fn default_policy(obj: &mut Value) {
    if !obj["spec"].is_object() {
        return;
    }
    let spec = &mut obj["spec"];
    if spec.get("failurePolicy").is_none_or(Value::is_null) {
        spec["failurePolicy"] = json!("Fail");
    }
    if spec["matchConstraints"].is_object() {
        let mc = &mut spec["matchConstraints"];
        for (k, v) in [
            ("matchPolicy", json!("Equivalent")),
            ("namespaceSelector", json!({})),
            ("objectSelector", json!({})),
        ] {
            if mc.get(k).is_none_or(Value::is_null) {
                mc[k] = v;
            }
        }
        if let Some(Value::Array(rules)) = mc.get_mut("resourceRules") {
            for r in rules.iter_mut().filter(|r| r.is_object()) {
                if r.get("scope").is_none_or(Value::is_null) {
                    r["scope"] = json!("*");
                }
            }
        }
    }
}

impl Policies {
    /// Mirrors policies and bindings.
    pub async fn start(self: &Arc<Self>, registry: &Registry) -> anyhow::Result<()> {
        for (slot, plural) in [
            (0, "validatingadmissionpolicies"),
            (1, "validatingadmissionpolicybindings"),
        ] {
            let r = catalog::lookup("admissionregistration.k8s.io", "v1", plural)
                .ok_or_else(|| anyhow::anyhow!("{plural} missing from the catalog"))?;
            let me = self.clone();
            crate::mirror::follow(registry, r, move |objects| {
                let all = objects.values().cloned().collect();
                write(
                    if slot == 0 {
                        &me.policies
                    } else {
                        &me.bindings
                    },
                    all,
                );
            })
            .await?;
        }
        Ok(())
    }

    /// Evaluates every binding whose policy matches the request.
    pub async fn validate(
        &self,
        registry: &Registry,
        a: &Attributes<'_>,
        obj: Option<&Value>,
    ) -> Result<(), ApiError> {
        let bindings = read(&self.bindings);
        if bindings.is_empty() || rules::exempt(a.resource) {
            return Ok(());
        }
        let policies = read(&self.policies);
        for binding in bindings.iter() {
            let policy_name = text(&binding["spec"], "policyName");
            let Some(policy) = policies.iter().find(|p| meta::name(p) == policy_name) else {
                continue;
            };
            self.evaluate(registry, a, obj, policy, binding).await?;
        }
        Ok(())
    }

    async fn evaluate(
        &self,
        registry: &Registry,
        a: &Attributes<'_>,
        obj: Option<&Value>,
        policy: &Value,
        binding: &Value,
    ) -> Result<(), ApiError> {
        let spec = &policy["spec"];
        let catalog = registry.catalog();
        let mc = &spec["matchConstraints"];
        let Some(seen_as) = matches(registry, a, obj, mc, &catalog).await? else {
            return Ok(());
        };
        let mr = &binding["spec"]["matchResources"];
        if mr.is_object() && matches(registry, a, obj, mr, &catalog).await?.is_none() {
            return Ok(());
        }
        let policy_name = meta::name(policy);
        let binding_name = meta::name(binding);
        let fail_closed = text(spec, "failurePolicy") != "Ignore";
        let actions: Vec<&str> = items(&binding["spec"], "validationActions")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let request = super::webhook::request_of(a, seen_as, obj);
        let namespace_object = if a.namespace.is_empty() {
            Value::Null
        } else {
            let ns = catalog::lookup("", "v1", "namespaces")
                .ok_or_else(|| ApiError::internal("namespaces missing from the catalog"))?;
            registry
                .get(ns, None, a.namespace)
                .await
                .unwrap_or(Value::Null)
        };
        // Failures of the policy itself (params missing, expressions erring) go by its
        // failurePolicy.
        let failed = |message: String| -> Result<(), ApiError> {
            tracing::warn!(policy = policy_name, binding = binding_name, %message, "admission policy failed");
            if fail_closed {
                Err(super::forbidden(
                    a,
                    &format!(
                        "ValidatingAdmissionPolicy '{policy_name}' with binding '{binding_name}' denied request: {message}"
                    ),
                ))
            } else {
                Ok(())
            }
        };
        let params = match params_of(registry, a, spec, &binding["spec"]).await {
            Ok(p) => p,
            Err(message) => return failed(message),
        };
        let null = Value::Null;
        for param in params {
            let vars = [
                ("object", obj.unwrap_or(&null)),
                ("oldObject", a.old.unwrap_or(&null)),
                ("request", &request),
                ("params", &param),
                ("namespaceObject", &namespace_object),
            ];
            tug_api::crd::cel::with_vars(&vars, |ev| -> Result<(), ApiError> {
                let mut variables = Map::new();
                ev.set("variables", &Value::Object(variables.clone()));
                for v in items(spec, "variables") {
                    match ev.eval(text(v, "expression")) {
                        Ok(value) => {
                            variables.insert(text(v, "name").to_string(), value);
                            ev.set("variables", &Value::Object(variables.clone()));
                        }
                        Err(e) => return failed(format!("variable {:?}: {e}", text(v, "name"))),
                    }
                }
                let mut conditions_pass = true;
                for c in items(spec, "matchConditions") {
                    match ev.eval(text(c, "expression")) {
                        Ok(Value::Bool(true)) => {}
                        Ok(Value::Bool(false)) => {
                            conditions_pass = false;
                            break;
                        }
                        Ok(other) => {
                            return failed(format!(
                                "matchCondition {:?} returned {other}, not a bool",
                                text(c, "name")
                            ));
                        }
                        Err(e) => {
                            return failed(format!(
                                "expression '{}' resulted in error: {e}",
                                text(c, "expression")
                            ));
                        }
                    }
                }
                if !conditions_pass {
                    return Ok(());
                }
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
                            return failed(format!(
                                "expression '{expr}' resulted in error: returned {other}, not a bool"
                            ));
                        }
                        Err(e) => {
                            return failed(format!("expression '{expr}' resulted in error: {e}"));
                        }
                    };
                    let text_of = format!(
                        "ValidatingAdmissionPolicy '{policy_name}' with binding '{binding_name}' denied request: {message}"
                    );
                    if actions.contains(&"Warn") {
                        notes::warn(&format!(
                            "Validation failed for ValidatingAdmissionPolicy '{policy_name}' with binding '{binding_name}': {message}"
                        ));
                    }
                    if actions.contains(&"Audit") {
                        notes::annotate(
                        "validation.policy.admission.k8s.io/validation_failure",
                        &json!([{"message": message, "policy": policy_name, "binding": binding_name,
                            "expressionIndex": i, "validationActions": actions}])
                        .to_string(),
                    );
                    }
                    if actions.contains(&"Deny") {
                        return Err(deny(a, &reason, text_of));
                    }
                }
                Ok(())
            })?;
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
    let mut e = super::forbidden(a, &message);
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

/// Whether a request falls under match constraints (or a binding's matchResources); the
/// resource it is seen as.
async fn matches(
    registry: &Registry,
    a: &Attributes<'_>,
    obj: Option<&Value>,
    m: &Value,
    catalog: &tug_api::catalog::Catalog,
) -> Result<Option<&'static tug_api::Resource>, ApiError> {
    let rules_ = config::parse_rules(m, "resourceRules");
    let exact = text(m, "matchPolicy") == "Exact";
    let seen_as = if rules_.is_empty() {
        catalog.lookup(a.resource.group, a.resource.version, a.resource.plural)
    } else {
        rules::matched_by(&rules_, exact, a, catalog)
    };
    let Some(seen_as) = seen_as else {
        return Ok(None);
    };
    let excluded = config::parse_rules(m, "excludeResourceRules");
    if !excluded.is_empty() && rules::matched_by(&excluded, exact, a, catalog).is_some() {
        return Ok(None);
    }
    // resourceNames narrow a rule to named objects.
    let names: Vec<&str> = items(m, "resourceRules")
        .iter()
        .flat_map(|r| items(r, "resourceNames").iter().filter_map(Value::as_str))
        .collect();
    if !names.is_empty() && !names.contains(&a.name.as_str()) {
        return Ok(None);
    }
    let ok = selected(
        registry,
        a,
        config::selector(m, "namespaceSelector").as_ref(),
        config::selector(m, "objectSelector").as_ref(),
        obj,
    )
    .await?;
    Ok(ok.then_some(seen_as))
}

/// The parameter objects a binding gives its policy: none (`params` is null) without a
/// `paramKind`, else the one named or those selected; a missing one is an error unless the
/// binding says to allow it.
async fn params_of(
    registry: &Registry,
    a: &Attributes<'_>,
    policy: &Value,
    binding: &Value,
) -> Result<Vec<Value>, String> {
    let kind = &policy["paramKind"];
    if !kind.is_object() {
        return Ok(vec![Value::Null]);
    }
    let api_version = text(kind, "apiVersion");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let catalog = registry.catalog();
    let Some(r) = catalog
        .all()
        .find(|r| r.group == group && r.version == version && r.kind == text(kind, "kind"))
    else {
        return Err(format!(
            "failed to find resource referenced by paramKind: '{api_version}, Kind={}'",
            text(kind, "kind")
        ));
    };
    let pr = &binding["paramRef"];
    let namespace = if r.namespaced() {
        let ns = text(pr, "namespace");
        Some(if ns.is_empty() { a.namespace } else { ns })
    } else {
        None
    };
    let mut found = Vec::new();
    let name = text(pr, "name");
    if !name.is_empty() {
        if let Ok(p) = registry.get(r, namespace, name).await {
            found.push(p);
        }
    } else if pr.get("selector").is_some() {
        let sel = config::selector(pr, "selector");
        let list = registry
            .list(r, namespace, &ListOptions::default())
            .await
            .map_err(|e| e.message)?;
        for item in items(&list, "items") {
            if sel.as_ref().is_none_or(|s| s.matches(&meta::labels(item))) {
                found.push(item.clone());
            }
        }
    }
    if found.is_empty() {
        if text(pr, "parameterNotFoundAction") == "Allow" {
            return Ok(Vec::new());
        }
        return Err(
            "no params found for policy binding with `Deny` parameterNotFoundAction".into(),
        );
    }
    Ok(found)
}
