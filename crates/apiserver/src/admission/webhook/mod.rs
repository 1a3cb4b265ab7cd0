//! Admission webhooks: the stored configurations (mirrored, so a change takes effect within
//! moments), matching, the AdmissionReview each matching webhook is sent, and what its
//! answer does: a denial, a JSON patch (mutating webhooks, called one after another in the
//! order of their configurations' names, with one reinvocation round), warnings and audit
//! annotations. A failed call is refused or ignored by the webhook's failurePolicy.

mod client;
pub mod config;
pub(crate) mod rules;

use std::sync::Arc;

use crate::swap::Swap;

use base64::Engine;
use serde_json::{Value, json};
use tug_api::{ApiError, Cause, Resource, catalog, meta};

use super::{Attributes, Operation, Reinvocation, notes};
use crate::registry::Registry;
use config::Hook;

/// The webhooks in force, replaced whole when a configuration changes.
#[derive(Default)]
pub struct Webhooks {
    mutating: Swap<Vec<Hook>>,
    validating: Swap<Vec<Hook>>,
    caller: client::Caller,
}

/// The hooks of all configurations, in the order of the configurations' names.
fn parse_all(objects: &crate::mirror::Objects) -> Vec<Hook> {
    // The mirror's keys are `/name` for these cluster-scoped kinds: already in name order.
    objects.values().flat_map(config::hooks).collect()
}

/// What a call's answer said (after the envelope checks).
struct Answer {
    allowed: bool,
    status: Value,
    patch: Option<Value>,
}

impl Webhooks {
    /// Mirrors both configuration kinds.
    pub async fn start(self: &Arc<Self>, registry: &Registry) -> anyhow::Result<()> {
        for (mutating, plural) in [
            (true, "mutatingwebhookconfigurations"),
            (false, "validatingwebhookconfigurations"),
        ] {
            let r = catalog::lookup("admissionregistration.k8s.io", "v1", plural)
                .ok_or_else(|| anyhow::anyhow!("{plural} missing from the catalog"))?;
            let me = self.clone();
            crate::mirror::follow(registry, r, move |objects| me.set(mutating, objects)).await?;
        }
        Ok(())
    }

    /// Replaces the hooks of one kind.
    pub fn set(&self, mutating: bool, objects: &crate::mirror::Objects) {
        let hooks = parse_all(objects);
        tracing::info!(
            mutating,
            webhooks = hooks.len(),
            "admission webhooks updated"
        );
        if mutating {
            self.mutating.set(hooks);
        } else {
            self.validating.set(hooks);
        }
    }

    /// The mutating webhooks: each matching one in turn, its patch applied before the next
    /// is called; in the reinvocation round only those asking for it whose output changed
    /// since. Whether the object changed.
    pub async fn mutate(
        &self,
        registry: &Registry,
        a: &Attributes<'_>,
        obj: &mut Value,
        rounds: &mut Reinvocation,
    ) -> Result<bool, ApiError> {
        let hooks = self.mutating.get();
        if hooks.is_empty() || rules::exempt(a.resource) {
            return Ok(false);
        }
        let mut changed = false;
        for (i, hook) in hooks.iter().enumerate() {
            let key = i.to_string();
            if !rounds.should_run(&key, hook.reinvoke, obj) {
                continue;
            }
            if let Some(out) = self
                .mutate_one(registry, a, hook, i, rounds.round, obj)
                .await?
            {
                changed |= out;
                rounds.ran(&key, obj);
            }
        }
        Ok(changed)
    }

    /// The mutating webhooks for an operation without a new object: called, but a patch is
    /// an error.
    pub async fn mutate_fixed(
        &self,
        registry: &Registry,
        a: &Attributes<'_>,
        obj: Option<&Value>,
    ) -> Result<(), ApiError> {
        let hooks = self.mutating.get();
        if hooks.is_empty() || rules::exempt(a.resource) {
            return Ok(());
        }
        for (i, hook) in hooks.iter().enumerate() {
            let Some(seen_as) = self.should_call(registry, a, hook, obj).await? else {
                continue;
            };
            let review = review(a, seen_as, obj);
            if let Some(answer) = self.call(registry, hook, &review, true).await?
                && answer.patch.is_some()
            {
                annotate_mutation(hook, 0, i, false);
                return Err(ApiError::internal(format!(
                    "Internal error occurred: admission webhook \"{}\" attempted to modify the object, which is not supported for this operation",
                    hook.name
                )));
            }
            annotate_mutation(hook, 0, i, false);
        }
        Ok(())
    }

    /// Calls one mutating hook if it matches; `Some(changed)` when it was called.
    async fn mutate_one(
        &self,
        registry: &Registry,
        a: &Attributes<'_>,
        hook: &Hook,
        index: usize,
        round: usize,
        obj: &mut Value,
    ) -> Result<Option<bool>, ApiError> {
        let Some(seen_as) = self.should_call(registry, a, hook, Some(obj)).await? else {
            return Ok(None);
        };
        let review = review(a, seen_as, Some(obj));
        let Some(answer) = self.call(registry, hook, &review, true).await? else {
            annotate_mutation(hook, round, index, false);
            notes::annotate(
                &format!(
                    "failed-open.mutation.webhook.admission.k8s.io/round_{round}_index_{index}"
                ),
                &hook.name,
            );
            return Ok(Some(false));
        };
        let Some(patch) = answer.patch else {
            annotate_mutation(hook, round, index, false);
            return Ok(Some(false));
        };
        let equivalent = seen_as.api_version() != a.resource.api_version();
        let mut patched = if equivalent {
            crate::registry::convert_between(a.resource, seen_as, obj)
        } else {
            obj.clone()
        };
        tug_api::patch::json_patch(&mut patched, &patch)
            .map_err(|e| ApiError::internal(format!("Internal error occurred: {}", e.message)))?;
        if !patched.is_object() {
            return Err(ApiError::internal(
                "Internal error occurred: the patched object is not an object",
            ));
        }
        if equivalent {
            patched = crate::registry::convert_between(seen_as, a.resource, &patched);
        }
        patched["apiVersion"] = json!(a.resource.api_version());
        patched["kind"] = json!(a.resource.kind);
        crate::registry::default_again(a.resource, &mut patched);
        let changed = patched != *obj;
        *obj = patched;
        annotate_mutation(hook, round, index, changed);
        Ok(Some(changed))
    }

    /// The validating webhooks, all matching ones at once; the first refusal is the answer.
    pub async fn validate(
        &self,
        registry: &Registry,
        a: &Attributes<'_>,
        obj: Option<&Value>,
    ) -> Result<(), ApiError> {
        let hooks = self.validating.get();
        if hooks.is_empty() || rules::exempt(a.resource) {
            return Ok(());
        }
        let mut calls = Vec::new();
        for hook in hooks.iter() {
            if let Some(seen_as) = self.should_call(registry, a, hook, obj).await? {
                calls.push((hook, review(a, seen_as, obj)));
            }
        }
        let answers = futures::future::join_all(
            calls
                .iter()
                .map(|(hook, review)| self.call(registry, hook, review, false)),
        )
        .await;
        for (i, ((hook, _), answer)) in calls.iter().zip(answers).enumerate() {
            match answer {
                Err(e) => return Err(e),
                Ok(None) => notes::annotate(
                    &format!("failed-open.validating.webhook.admission.k8s.io/round_0_index_{i}"),
                    &hook.name,
                ),
                Ok(Some(_)) => {}
            }
        }
        Ok(())
    }

    /// Whether `hook` is called for the request, and as which resource; errors are what the
    /// hook's selectors or conditions make of the request.
    async fn should_call(
        &self,
        registry: &Registry,
        a: &Attributes<'_>,
        hook: &Hook,
        obj: Option<&Value>,
    ) -> Result<Option<&'static Resource>, ApiError> {
        let catalog = registry.catalog();
        let Some(seen_as) = rules::matched(hook, a, &catalog) else {
            return Ok(None);
        };
        if !selected(
            registry,
            a,
            hook.namespace_selector.as_ref(),
            hook.object_selector.as_ref(),
            obj,
        )
        .await?
        {
            return Ok(None);
        }
        if !hook.conditions.is_empty() {
            let request = request_of(a, seen_as, obj);
            let null = Value::Null;
            let vars = [
                ("object", obj.unwrap_or(&null)),
                ("oldObject", a.old.unwrap_or(&null)),
                ("request", &request),
            ];
            let mut errors = Vec::new();
            for (name, expr) in &hook.conditions {
                match tug_api::crd::cel::evaluate(expr, &vars) {
                    Ok(Value::Bool(true)) => {}
                    Ok(Value::Bool(false)) => return Ok(None),
                    Ok(other) => errors.push(format!(
                        "expression '{expr}' resulted in error: matchCondition {name} returned {other}, not a bool"
                    )),
                    Err(e) => errors.push(format!("expression '{expr}' resulted in error: {e}")),
                }
            }
            if !errors.is_empty() {
                if !hook.fail_closed {
                    return Ok(None);
                }
                return Err(super::forbidden(a, &errors.join(", ")));
            }
        }
        if a.dry_run && !hook.dry_run_safe {
            return Err(ApiError::bad_request(format!(
                "admission webhook \"{}\" does not support dry run",
                hook.name
            )));
        }
        Ok(Some(seen_as))
    }

    /// Calls a hook; `Ok(Some)` is an answer that allows the request, `Ok(None)` a failure
    /// ignored by the failure policy; a denial or a failure that fails closed is the error.
    async fn call(
        &self,
        registry: &Registry,
        hook: &Hook,
        review: &Value,
        mutating: bool,
    ) -> Result<Option<Answer>, ApiError> {
        let uid = review["request"]["uid"].as_str().unwrap_or_default();
        let body = if hook.v1beta1 {
            let mut old = review.clone();
            old["apiVersion"] = json!("admission.k8s.io/v1beta1");
            serde_json::to_vec(&old)
        } else {
            serde_json::to_vec(review)
        }
        .map_err(|e| ApiError::internal(e.to_string()))?;
        let operation = review["request"]["operation"].as_str().unwrap_or_default();
        let started = std::time::Instant::now();
        let answer = match self.caller.call(registry, hook, body).await {
            Ok(v) => check(&v, uid, mutating, hook.v1beta1)
                .map_err(|e| format!("received invalid webhook response: {e}")),
            Err(e) => Err(e),
        };
        let rejected = match &answer {
            Ok((a, _)) => !a.allowed,
            Err(_) => hook.fail_closed,
        };
        let secs = started.elapsed().as_secs_f64();
        super::metrics::webhook_called(&hook.name, mutating, operation, rejected, secs);
        let answer = match answer {
            Ok(a) => a,
            Err(reason) => {
                if hook.fail_closed {
                    super::metrics::webhook_rejected(
                        &hook.name,
                        mutating,
                        operation,
                        "calling_webhook_error",
                        0,
                    );
                }
                tracing::warn!(webhook = %hook.name, %reason, fail_closed = hook.fail_closed, "admission webhook call failed");
                if !hook.fail_closed {
                    return Ok(None);
                }
                let text = format!("failed calling webhook \"{}\": {reason}", hook.name);
                let mut e = ApiError::internal(format!("Internal error occurred: {text}"));
                e.details = Some(Box::new(tug_api::status::Details {
                    causes: vec![Cause::new("", "", text)],
                    ..Default::default()
                }));
                return Err(e);
            }
        };
        let response = &answer.1;
        for w in tug_api::validation::field::items(response, "warnings") {
            if let Some(w) = w.as_str() {
                notes::warn(w);
            }
        }
        if let Some(Value::Object(m)) = response.get("auditAnnotations") {
            for (k, v) in m {
                if let Some(v) = v.as_str() {
                    notes::annotate(&format!("{}/{k}", hook.name), v);
                }
            }
        }
        let answer = answer.0;
        if !answer.allowed {
            let e = denied(&hook.name, &answer.status);
            super::metrics::webhook_rejected(&hook.name, mutating, operation, "no_error", e.code);
            return Err(e);
        }
        Ok(Some(answer))
    }
}

/// Whether a request passes a namespace selector (the namespace's labels; a Namespace's own
/// for its create and update) and an object selector (the object's or the old object's
/// labels); `None` selectors select everything.
pub(crate) async fn selected(
    registry: &Registry,
    a: &Attributes<'_>,
    namespace_selector: Option<&tug_api::selector::LabelSelector>,
    object_selector: Option<&tug_api::selector::LabelSelector>,
    obj: Option<&Value>,
) -> Result<bool, ApiError> {
    if let Some(sel) = object_selector {
        let matches = |o: Option<&Value>| {
            o.filter(|o| o.get("metadata").is_some())
                .is_some_and(|o| sel.matches(&meta::labels(o)))
        };
        if !matches(obj) && !matches(a.old) {
            return Ok(false);
        }
    }
    if let Some(sel) = namespace_selector {
        let is_namespace = a.resource.group.is_empty() && a.resource.plural == "namespaces";
        if is_namespace && a.subresource.is_none() && a.operation != Operation::Delete {
            let o = obj.or(a.old);
            return Ok(o.is_some_and(|o| sel.matches(&meta::labels(o))));
        } else if is_namespace || a.resource.namespaced() {
            let ns_name = if is_namespace {
                a.name.as_str()
            } else {
                a.namespace
            };
            let ns_res = catalog::lookup("", "v1", "namespaces")
                .ok_or_else(|| ApiError::internal("namespaces missing from the catalog"))?;
            let ns = registry.get(ns_res, None, ns_name).await?;
            return Ok(sel.matches(&meta::labels(&ns)));
        }
    }
    Ok(true)
}

/// The AdmissionReview request for a call.
pub(crate) fn request_of(a: &Attributes<'_>, seen_as: &Resource, obj: Option<&Value>) -> Value {
    let gvk = |r: &Resource| json!({"group": r.group, "version": r.version, "kind": r.kind});
    let gvr = |r: &Resource| json!({"group": r.group, "version": r.version, "resource": r.plural});
    let as_seen = |o: &Value| {
        if seen_as.api_version() != a.resource.api_version() && o.is_object() {
            crate::registry::convert_between(a.resource, seen_as, o)
        } else {
            o.clone()
        }
    };
    let kind = match a.connect_kind {
        Some(k) => json!({"group": "", "version": "v1", "kind": k}),
        None => gvk(seen_as),
    };
    let mut req = json!({
        "uid": uuid::Uuid::new_v4().to_string(),
        "kind": kind.clone(),
        "resource": gvr(seen_as),
        "requestKind": if a.connect_kind.is_some() { kind } else { gvk(a.resource) },
        "requestResource": gvr(a.resource),
        "operation": a.operation.as_str(),
        "userInfo": a.user_info(),
        "object": obj.map(as_seen).unwrap_or(Value::Null),
        "oldObject": a.old.map(as_seen).unwrap_or(Value::Null),
        "dryRun": a.dry_run,
        "options": a.options(),
    });
    if let Some(sub) = a.subresource {
        req["subResource"] = json!(sub);
        req["requestSubResource"] = json!(sub);
    }
    if !a.name.is_empty() {
        req["name"] = json!(a.name);
    }
    if !a.namespace.is_empty() {
        req["namespace"] = json!(a.namespace);
    }
    req
}

fn review(a: &Attributes<'_>, seen_as: &Resource, obj: Option<&Value>) -> Value {
    json!({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
        "request": request_of(a, seen_as, obj)})
}

/// Checks an answer's envelope as kube-apiserver does; returns what it said and the
/// `response`. A v1beta1 answer's kind, version and uid are not checked, and its patch needs
/// no patchType (JSONPatch is the only one).
fn check(v: &Value, uid: &str, mutating: bool, v1beta1: bool) -> Result<(Answer, Value), String> {
    let response = v
        .get("response")
        .filter(|r| r.is_object())
        .ok_or("webhook response was absent")?;
    let got_uid = response["uid"].as_str().unwrap_or_default();
    if got_uid != uid && !v1beta1 {
        return Err(format!("expected response.uid={uid:?}, got {got_uid:?}"));
    }
    let api_version = v["apiVersion"].as_str().unwrap_or_default();
    let kind = v["kind"].as_str().unwrap_or_default();
    if (api_version != "admission.k8s.io/v1" || kind != "AdmissionReview") && !v1beta1 {
        let (g, ver) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        return Err(format!(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {g}/{ver}, Kind={kind}"
        ));
    }
    let patch = patch_bytes(response.get("patch"))?.filter(|p| !p.is_empty());
    let patch_type = response
        .get("patchType")
        .and_then(Value::as_str)
        .or((v1beta1 && patch.is_some()).then_some("JSONPatch"));
    if !mutating {
        if patch.is_some() {
            return Err("validating webhook may not return response.patch".into());
        }
        if patch_type.is_some() {
            return Err("validating webhook may not return response.patchType".into());
        }
    }
    let patch = match (patch, patch_type) {
        (None, None) => None,
        (Some(_), None) => {
            return Err("webhook returned response.patch but not response.patchType".into());
        }
        (None, Some(_)) => {
            return Err("webhook returned response.patchType but not response.patch".into());
        }
        (Some(_), Some("")) => {
            return Err("webhook returned invalid response.patchType of \"\"".into());
        }
        (Some(_), Some(t)) if t != "JSONPatch" => {
            return Err(format!("unsupported patch type {t:?}"));
        }
        (Some(bytes), Some(_)) => Some(
            serde_json::from_slice::<Value>(&bytes)
                .map_err(|e| format!("received undecodable patch in webhook response: {e}"))?,
        ),
    };
    Ok((
        Answer {
            allowed: response["allowed"].as_bool().unwrap_or(false),
            status: response.get("status").cloned().unwrap_or(Value::Null),
            patch,
        },
        response.clone(),
    ))
}

/// The bytes of a response's `patch`: base64 text, as most webhooks send it, or a JSON array
/// of byte values (kube-rs' `AdmissionResponse` serialises its `Vec<u8>` so), both of which
/// kube-apiserver's decoder takes for Go's `[]byte`.
fn patch_bytes(patch: Option<&Value>) -> Result<Option<Vec<u8>>, String> {
    let undecodable =
        |e: &dyn std::fmt::Display| format!("received undecodable patch in webhook response: {e}");
    match patch {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(Some)
            .map_err(|e| undecodable(&e)),
        Some(Value::Array(items)) => items
            .iter()
            .map(|b| {
                b.as_u64()
                    .and_then(|b| u8::try_from(b).ok())
                    .ok_or_else(|| undecodable(&format!("{b} is not a byte")))
            })
            .collect::<Result<Vec<u8>, String>>()
            .map(Some),
        Some(other) => Err(undecodable(&format!("{other} is not base64 text"))),
    }
}

/// A webhook's denial as the client sees it.
fn denied(name: &str, status: &Value) -> ApiError {
    let code = status["code"]
        .as_u64()
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| *c >= 400)
        .unwrap_or(400);
    let said = status["message"]
        .as_str()
        .filter(|m| !m.is_empty())
        .or_else(|| status["reason"].as_str().filter(|r| !r.is_empty()));
    let message = match said {
        Some(m) => format!("admission webhook \"{name}\" denied the request: {m}"),
        None => format!("admission webhook \"{name}\" denied the request without explanation"),
    };
    let reason = match status["reason"].as_str().unwrap_or_default() {
        "BadRequest" => "BadRequest",
        "Unauthorized" => "Unauthorized",
        "Forbidden" => "Forbidden",
        "NotFound" => "NotFound",
        "AlreadyExists" => "AlreadyExists",
        "Conflict" => "Conflict",
        "Gone" => "Gone",
        "Invalid" => "Invalid",
        "ServerTimeout" => "ServerTimeout",
        "Timeout" => "Timeout",
        "TooManyRequests" => "TooManyRequests",
        "MethodNotAllowed" => "MethodNotAllowed",
        "InternalError" => "InternalError",
        "ServiceUnavailable" => "ServiceUnavailable",
        "RequestEntityTooLarge" => "RequestEntityTooLarge",
        _ => "",
    };
    let mut e = ApiError::new(code, reason, message);
    if let Some(d) = status.get("details").filter(|d| d.is_object()) {
        let causes = tug_api::validation::field::items(d, "causes")
            .iter()
            .map(|c| {
                Cause::new(
                    c["reason"].as_str().unwrap_or_default(),
                    c["field"].as_str().unwrap_or_default(),
                    c["message"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        e.details = Some(Box::new(tug_api::status::Details {
            name: d["name"].as_str().unwrap_or_default().to_string(),
            group: d["group"].as_str().unwrap_or_default().to_string(),
            kind: d["kind"].as_str().unwrap_or_default().to_string(),
            causes,
            retry_after: None,
        }));
    }
    e
}

fn annotate_mutation(hook: &Hook, round: usize, index: usize, mutated: bool) {
    notes::annotate(
        &format!("mutation.webhook.admission.k8s.io/round_{round}_index_{index}"),
        &json!({"configuration": hook.configuration, "webhook": hook.name, "mutated": mutated})
            .to_string(),
    );
}
