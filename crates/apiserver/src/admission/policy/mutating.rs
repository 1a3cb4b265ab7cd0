//! MutatingAdmissionPolicy: CEL `mutations` that change the object before the mutating
//! webhooks see it. An `ApplyConfiguration` expression builds a partial object (`Object{spec:
//! Object.spec{…}}`) merged into the object the way server-side apply merges (maps by key,
//! lists with a merge key item by item, other values replaced); a `JSONPatch` expression
//! builds a list of `JSONPatch{op, path, value}` operations applied in order. Mutations run
//! in order, each seeing the object as the ones before left it, and a policy with
//! `reinvocationPolicy: IfNeeded` runs again when a later mutator changed the object.

use serde_json::{Value, json};
use tug_api::validation::field::{Errors, Path, items, text};
use tug_api::{ApiError, Cause};

use super::{Policies, compiles, validate_common};
use crate::admission::{Attributes, Reinvocation};
use crate::registry::Registry;

/// The two kinds of mutation.
const PATCH_TYPES: [&str; 2] = ["ApplyConfiguration", "JSONPatch"];

/// Checks a policy as kube-apiserver does on write.
pub fn validate_policy(obj: &Value) -> Vec<Cause> {
    let mut errs = Errors::default();
    let spec = &obj["spec"];
    let at = Path::new("spec");
    let mutations = items(spec, "mutations");
    if mutations.is_empty() {
        errs.required(
            &at.child("mutations"),
            "mutations must contain at least one item",
        );
    }
    for (i, m) in mutations.iter().enumerate() {
        let p = at.child("mutations").index(i);
        let patch_type = text(m, "patchType");
        if patch_type.is_empty() {
            errs.required(&p.child("patchType"), "");
            continue;
        }
        errs.one_of(&p.child("patchType"), m.get("patchType"), &PATCH_TYPES);
        for (field, kind) in [
            ("applyConfiguration", "ApplyConfiguration"),
            ("jsonPatch", "JSONPatch"),
        ] {
            let set = m.get(field).is_some_and(|v| !v.is_null());
            if patch_type == kind && !set {
                errs.required(
                    &p.child(field),
                    &format!("must be specified when patchType is {kind}"),
                );
            } else if patch_type != kind && set && PATCH_TYPES.contains(&patch_type) {
                errs.invalid_shown(
                    &p.child(field),
                    &format!("{{{field}}}"),
                    &format!("must not be specified when patchType is {patch_type}"),
                );
            } else if set {
                compiles(
                    &mut errs,
                    &p.child(field).child("expression"),
                    text(&m[field], "expression"),
                );
            }
        }
    }
    validate_common(spec, &at, &mut errs);
    if spec.get("reinvocationPolicy").is_none_or(Value::is_null) {
        errs.required(&at.child("reinvocationPolicy"), "");
    } else {
        errs.one_of(
            &at.child("reinvocationPolicy"),
            spec.get("reinvocationPolicy"),
            &["Never", "IfNeeded"],
        );
    }
    mutating_operations(
        &spec["matchConstraints"],
        &at.child("matchConstraints"),
        &mut errs,
    );
    errs.0
}

/// Checks a binding: a policy name, parameters, and no DELETE in its matchResources.
pub fn validate_binding(obj: &Value) -> Vec<Cause> {
    let mut errs = Errors(super::validate_binding(obj));
    mutating_operations(
        &obj["spec"]["matchResources"],
        &Path::new("spec").child("matchResources"),
        &mut errs,
    );
    errs.0
}

/// Mutating policies match CREATE, UPDATE and CONNECT only (kube-apiserver reports the
/// operations field without an index).
fn mutating_operations(m: &Value, at: &Path, errs: &mut Errors) {
    let path = at.child("resourceRules").child("operations");
    for r in items(m, "resourceRules") {
        for op in items(r, "operations") {
            errs.one_of(&path, Some(op), &["*", "CONNECT", "CREATE", "UPDATE"]);
        }
    }
}

/// The error a failing mutating policy answers with under failurePolicy Fail: a 403 whose
/// reason is Invalid, the message without the resource in front, and the message again as
/// a cause.
pub(super) fn failure(policy: &str, binding: &str, message: &str) -> ApiError {
    let text = format!("policy '{policy}' with binding '{binding}' denied request: {message}");
    let mut e = ApiError::new(403, "Invalid", text.clone());
    e.details = Some(Box::new(tug_api::Details {
        causes: vec![Cause::new("", "", text)],
        ..Default::default()
    }));
    e
}

impl Policies {
    /// Runs the mutating bindings whose policy matches (in a reinvocation round, only those
    /// asking for it whose output a later mutator changed); whether the object changed.
    pub async fn mutate(
        &self,
        registry: &Registry,
        a: &Attributes<'_>,
        obj: &mut Value,
        rounds: &mut Reinvocation,
    ) -> Result<bool, ApiError> {
        let mut changed = false;
        for (policy, binding) in self.pairs(a) {
            let key = tug_api::meta::name(&binding).to_string();
            let reinvoke = text(&policy["spec"], "reinvocationPolicy") == "IfNeeded";
            if !rounds.should_run(&key, reinvoke, obj) {
                continue;
            }
            let Some(bound) = self.bind(registry, a, Some(obj), policy, binding).await? else {
                continue;
            };
            let mutations = items(bound.spec(), "mutations");
            let sources: Vec<&str> = mutations.iter().map(expression).collect();
            let mut patched = bound.as_seen(a, Some(obj)).into_owned();
            let applied = bound.each_param(a, Some(obj), &sources, |ev| {
                for m in mutations {
                    let result = match ev.eval(expression(m)) {
                        Ok(r) => r,
                        Err(e) => {
                            return bound.failed(
                                a,
                                format!("expression '{}' resulted in error: {e}", expression(m)),
                            );
                        }
                    };
                    let patch_type = text(m, "patchType");
                    if let Err(message) = apply(&mut patched, bound.seen_as, patch_type, result) {
                        return bound.failed(a, message);
                    }
                    ev.set("object", &patched);
                }
                Ok(())
            });
            crate::admission::metrics::mutating_checked(
                bound.policy_name(),
                bound.binding_name(),
                if applied.is_ok() {
                    "no_error"
                } else {
                    "invalid_error"
                },
            );
            applied?;
            if bound.seen_as.api_version() != a.resource.api_version() {
                patched = crate::registry::convert_between(bound.seen_as, a.resource, &patched);
            }
            patched["apiVersion"] = json!(a.resource.api_version());
            patched["kind"] = json!(a.resource.kind);
            crate::registry::default_again(a.resource, &mut patched);
            let this_changed = patched != *obj;
            *obj = patched;
            rounds.ran(&key, obj);
            changed |= this_changed;
        }
        Ok(changed)
    }
}

/// A mutation's expression, whichever its kind.
fn expression(m: &Value) -> &str {
    match text(m, "patchType") {
        "JSONPatch" => text(&m["jsonPatch"], "expression"),
        _ => text(&m["applyConfiguration"], "expression"),
    }
}

/// Applies one mutation's result to `obj`, an object of `r`.
fn apply(
    obj: &mut Value,
    r: &tug_api::Resource,
    patch_type: &str,
    result: Value,
) -> Result<(), String> {
    match patch_type {
        "JSONPatch" => {
            let Value::Array(ops) = &result else {
                return Err(
                    "type mismatch: JSONPatchType.expression should evaluate to array".into(),
                );
            };
            if let Some(other) = ops.iter().find(|op| !op.is_object()) {
                return Err(format!(
                    "type mismatch: JSONPatchType.expression should evaluate to array of JSONPatch: got element of {}",
                    kind_of(other)
                ));
            }
            // A failed `test` leaves the object as it was, the patch's other operations too.
            tug_api::patch::json_patch_unless_test_fails(obj, &result)
                .map(|_| ())
                .map_err(|e| format!("JSON Patch: {e}"))
        }
        _ => {
            if !result.is_object() {
                return Err(format!(
                    "unsupported return type from ApplyConfiguration expression: {}",
                    kind_of(&result)
                ));
            }
            // Fields the kind does not have are refused, as converting the configuration to
            // the kind's type refuses them.
            let mut unknown = tug_api::schema::unknown_fields(
                r.group,
                r.version,
                r.kind,
                &mut result.clone(),
                false,
            );
            if !unknown.is_empty() {
                unknown.sort();
                let errors: Vec<String> = unknown
                    .iter()
                    .map(|f| format!(".{f}: field not declared in schema"))
                    .collect();
                let listed = match errors.as_slice() {
                    [one] => one.clone(),
                    many => format!("errors:\n  {}", many.join("\n  ")),
                };
                return Err(format!(
                    "error applying patch: failed to convert patch object to typed object: {listed}"
                ));
            }
            tug_api::apply::merge_configuration(obj, &result)
                .map_err(|e| format!("error applying patch: {e}"))
        }
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "double",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}
