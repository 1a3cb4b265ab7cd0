//! Admission policies in CEL (`admissionregistration.k8s.io/v1`): ValidatingAdmissionPolicy
//! and MutatingAdmissionPolicy, each bound to requests by its bindings. What the two share is
//! here: following policies and bindings, matching a request (`matchConstraints`, the
//! binding's `matchResources`), parameters (`paramKind`, `paramRef` by name or selector), the
//! variables the expressions see (`object`, `oldObject`, `request`, `params`,
//! `namespaceObject`, `variables`, and `authorizer` deciding checks for the requesting user),
//! `matchConditions` and `failurePolicy`. What each does with
//! a match is in [`validating`] and [`mutating`].

pub mod mutating;
pub mod validating;

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tug_api::validation::field::{Errors, Path, items, text};
use tug_api::{ApiError, Cause, catalog, meta};

use super::webhook::{config, rules, selected};
use super::{Attributes, Operation};
use crate::registry::{ListOptions, Registry};
use crate::swap::Swap;
use tug_api::crd::cel::{Authorize, AuthzCheck, Evaluator};

/// Which policies a [`Policies`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Validating,
    Mutating,
}

impl Kind {
    /// The kind's name (`ValidatingAdmissionPolicy` …), as messages give it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Validating => "ValidatingAdmissionPolicy",
            Kind::Mutating => "MutatingAdmissionPolicy",
        }
    }

    fn plurals(self) -> [&'static str; 2] {
        match self {
            Kind::Validating => [
                "validatingadmissionpolicies",
                "validatingadmissionpolicybindings",
            ],
            Kind::Mutating => [
                "mutatingadmissionpolicies",
                "mutatingadmissionpolicybindings",
            ],
        }
    }
}

/// The policies of one kind and their bindings in force, replaced whole when one changes.
pub struct Policies {
    kind: Kind,
    policies: Swap<Vec<Value>>,
    bindings: Swap<Vec<Value>>,
}

impl Policies {
    /// No policies of `kind` yet; [`Policies::start`] follows them.
    pub fn new(kind: Kind) -> Self {
        Policies {
            kind,
            policies: Swap::default(),
            bindings: Swap::default(),
        }
    }

    /// Mirrors policies and bindings.
    pub async fn start(self: &Arc<Self>, registry: &Registry) -> anyhow::Result<()> {
        for (slot, plural) in self.kind.plurals().into_iter().enumerate() {
            let r = catalog::lookup("admissionregistration.k8s.io", "v1", plural)
                .ok_or_else(|| anyhow::anyhow!("{plural} missing from the catalog"))?;
            let me = self.clone();
            let reg = registry.clone();
            crate::mirror::follow(registry, r, move |objects| {
                if slot == 0 && me.kind == Kind::Validating {
                    validating::check_types(&reg, objects);
                }
                let all = objects.values().cloned().collect();
                if slot == 0 {
                    me.policies.set(all);
                } else {
                    me.bindings.set(all);
                }
            })
            .await?;
        }
        Ok(())
    }

    /// Each binding in force with its policy, in the bindings' order; none for the
    /// resources policies never apply to.
    fn pairs(&self, a: &Attributes<'_>) -> Vec<(Value, Value)> {
        let bindings = self.bindings.get();
        if bindings.is_empty() || rules::exempt(a.resource) {
            return Vec::new();
        }
        let policies = self.policies.get();
        bindings
            .iter()
            .filter_map(|binding| {
                let name = text(&binding["spec"], "policyName");
                let policy = policies.iter().find(|p| meta::name(p) == name)?;
                Some((policy.clone(), binding.clone()))
            })
            .collect()
    }

    /// What a binding's policy sees of the request, if the request falls under the policy's
    /// `matchConstraints` and the binding's `matchResources`.
    async fn bind(
        &self,
        registry: &Registry,
        a: &Attributes<'_>,
        obj: Option<&Value>,
        policy: Value,
        binding: Value,
    ) -> Result<Option<Bound>, ApiError> {
        let catalog = registry.catalog();
        let spec = &policy["spec"];
        let Some(seen_as) = matches(registry, a, obj, &spec["matchConstraints"], &catalog).await?
        else {
            return Ok(None);
        };
        let mr = &binding["spec"]["matchResources"];
        if mr.is_object() && matches(registry, a, obj, mr, &catalog).await?.is_none() {
            return Ok(None);
        }
        // What no expression names is not looked up or built.
        let mut request = Value::Null;
        if mentions(spec, "request") {
            // The review's request without the objects, which are variables of their own.
            request = super::webhook::request_of(a, seen_as, None);
            if let Value::Object(m) = &mut request {
                m.remove("object");
                m.remove("oldObject");
            }
        }
        let namespace_object = if a.namespace.is_empty() || !mentions(spec, "namespaceObject") {
            Value::Null
        } else {
            let ns = catalog::lookup("", "v1", "namespaces")
                .ok_or_else(|| ApiError::internal("namespaces missing from the catalog"))?;
            registry
                .get(ns, None, a.namespace)
                .await
                .unwrap_or(Value::Null)
        };
        let params = params_of(registry, a, spec, &binding["spec"]).await;
        Ok(Some(Bound {
            authorize: mentions(spec, "authorizer").then(|| authorize(registry, a)),
            kind: self.kind,
            seen_as,
            request,
            namespace_object,
            params,
            policy,
            binding,
        }))
    }
}

/// The authorizer policies' `authorizer` checks ask: the requesting user's rights (or a
/// service account's, if the expression names one), as RBAC decides them.
fn authorize(registry: &Registry, a: &Attributes<'_>) -> Authorize {
    let authorizer = registry.authorizer.clone();
    let user = a.user.cloned();
    Arc::new(move |c: &AuthzCheck| {
        let who = match (&c.service_account, &user) {
            (Some((ns, name)), _) => crate::auth::Identity::service_account(ns, name),
            (None, Some(u)) => u.clone(),
            // The server's own writes may do anything.
            (None, None) => return (true, String::new()),
        };
        let attrs = match &c.path {
            Some(p) => crate::authz::Attributes::non_resource(&c.verb, p),
            None => crate::authz::Attributes::resource(
                &c.verb,
                &c.group,
                &c.resource,
                &c.subresource,
                &c.namespace,
                &c.name,
            ),
        };
        let d = authorizer.decide(&who, &attrs);
        (d.allowed, d.reason)
    })
}

/// A binding whose policy matches a request, with what the policy's expressions see.
struct Bound {
    /// Decides the expressions' `authorizer` checks (when they make any).
    authorize: Option<Authorize>,
    kind: Kind,
    /// The resource the request is seen as (matchPolicy Equivalent may convert it).
    seen_as: &'static tug_api::Resource,
    request: Value,
    namespace_object: Value,
    /// The parameter objects, or why there are none to be had.
    params: Result<Vec<Value>, String>,
    policy: Value,
    binding: Value,
}

impl Bound {
    fn policy_name(&self) -> &str {
        meta::name(&self.policy)
    }

    fn binding_name(&self) -> &str {
        meta::name(&self.binding)
    }

    fn spec(&self) -> &Value {
        &self.policy["spec"]
    }

    /// A failure of the policy itself (parameters missing, an expression erring): an error
    /// under failurePolicy Fail (the default), nothing under Ignore.
    fn failed(&self, a: &Attributes<'_>, message: String) -> Result<(), ApiError> {
        let (policy, binding) = (self.policy_name(), self.binding_name());
        tracing::warn!(kind = self.kind.name(), policy, binding, %message, "admission policy failed");
        if text(self.spec(), "failurePolicy") == "Ignore" {
            return Ok(());
        }
        Err(match self.kind {
            Kind::Validating => super::forbidden(
                a,
                &format!(
                    "ValidatingAdmissionPolicy '{policy}' with binding '{binding}' denied request: {message}"
                ),
            ),
            Kind::Mutating => mutating::failure(policy, binding, &message),
        })
    }

    /// The object as the policy sees it: converted to the version its rules matched.
    fn as_seen<'o>(&self, a: &Attributes<'_>, o: Option<&'o Value>) -> Cow<'o, Value> {
        match o {
            Some(o) if self.seen_as.api_version() != a.resource.api_version() => Cow::Owned(
                crate::registry::convert_between(a.resource, self.seen_as, o),
            ),
            Some(o) => Cow::Borrowed(o),
            None => Cow::Owned(Value::Null),
        }
    }

    /// Runs `f` once per parameter object, with the variables set and the policy's
    /// `variables` evaluated, when its `matchConditions` hold; `sources` are the
    /// expressions that construct objects (mutations).
    fn each_param(
        &self,
        a: &Attributes<'_>,
        obj: Option<&Value>,
        sources: &[&str],
        mut f: impl FnMut(&mut Evaluator<'_>) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let params = match &self.params {
            Ok(p) => p,
            Err(message) => return self.failed(a, message.clone()),
        };
        let object = self.as_seen(a, obj);
        let old = match a.operation {
            Operation::Create => Cow::Owned(Value::Null),
            _ => self.as_seen(a, a.old),
        };
        let r = a.resource;
        let authorizer = match self.authorize {
            Some(_) => tug_api::crd::cel::authorizer_variable(&AuthzCheck {
                group: r.group.to_string(),
                resource: r.plural.to_string(),
                subresource: a.subresource.unwrap_or_default().to_string(),
                namespace: a.namespace.to_string(),
                name: a.name.clone(),
                ..Default::default()
            }),
            None => Value::Null,
        };
        for param in params {
            let vars = [
                ("object", object.as_ref()),
                ("oldObject", old.as_ref()),
                ("request", &self.request),
                ("params", param),
                ("namespaceObject", &self.namespace_object),
                ("authorizer", &authorizer),
            ];
            let authorize = self.authorize.clone();
            tug_api::crd::cel::with_types_and_vars(sources, &vars, authorize, |ev| {
                if self.prepare(a, ev)? {
                    f(ev)?;
                }
                Ok::<(), ApiError>(())
            })?;
        }
        Ok(())
    }

    /// Evaluates the policy's variables, then its matchConditions: whether they all hold.
    fn prepare(&self, a: &Attributes<'_>, ev: &mut Evaluator<'_>) -> Result<bool, ApiError> {
        let spec = self.spec();
        let mut variables = Map::new();
        ev.set("variables", &Value::Object(variables.clone()));
        for v in items(spec, "variables") {
            match ev.eval(text(v, "expression")) {
                Ok(value) => {
                    variables.insert(text(v, "name").to_string(), value);
                    ev.set("variables", &Value::Object(variables.clone()));
                }
                Err(e) => {
                    self.failed(a, format!("variable {:?}: {e}", text(v, "name")))?;
                    return Ok(false);
                }
            }
        }
        for c in items(spec, "matchConditions") {
            let expr = text(c, "expression");
            let err = match ev.eval(expr) {
                Ok(Value::Bool(true)) => continue,
                Ok(Value::Bool(false)) => return Ok(false),
                Ok(other) => format!(
                    "matchCondition {:?} returned {other}, not a bool",
                    text(c, "name")
                ),
                Err(e) => format!("expression '{expr}' resulted in error: {e}"),
            };
            self.failed(a, err)?;
            return Ok(false);
        }
        Ok(true)
    }
}

/// Whether any text in `v` (a policy's spec: its expressions) contains `word`.
fn mentions(v: &Value, word: &str) -> bool {
    match v {
        Value::String(s) => s.contains(word),
        Value::Array(items) => items.iter().any(|i| mentions(i, word)),
        Value::Object(m) => m.values().any(|i| mentions(i, word)),
        _ => false,
    }
}

/// Checks what both kinds of policy have: variables, matchConditions, failurePolicy and
/// matchConstraints.
fn validate_common(spec: &Value, at: &Path, errs: &mut Errors) {
    for (i, v) in items(spec, "variables").iter().enumerate() {
        let p = at.child("variables").index(i);
        if text(v, "name").is_empty() {
            errs.required(&p.child("name"), "");
        }
        compiles(errs, &p.child("expression"), text(v, "expression"));
    }
    for (i, v) in items(spec, "matchConditions").iter().enumerate() {
        compiles(
            errs,
            &at.child("matchConditions").index(i).child("expression"),
            text(v, "expression"),
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
}

/// Records an error at `path` unless `expr` is a CEL expression that compiles.
fn compiles(errs: &mut Errors, path: &Path, expr: &str) {
    if expr.is_empty() {
        errs.required(path, "");
    } else if let Err(e) = tug_api::crd::cel::compile(expr) {
        errs.invalid(path, &json!(expr), &format!("compilation failed: {e}"));
    }
}

/// Checks what bindings of both kinds have: a policy name.
pub fn validate_binding(obj: &Value) -> Vec<Cause> {
    let mut errs = Errors::default();
    let spec = &obj["spec"];
    let at = Path::new("spec");
    if text(spec, "policyName").is_empty() {
        errs.required(&at.child("policyName"), "");
    }
    let pr = &spec["paramRef"];
    if pr.is_object() {
        let p = at.child("paramRef");
        let named = !text(pr, "name").is_empty();
        let selects = pr.get("selector").is_some_and(|s| !s.is_null());
        if named && selects {
            for f in ["name", "selector"] {
                errs.forbidden(&p.child(f), "name and selector are mutually exclusive");
            }
        } else if !named && !selects {
            errs.required(&p, "one of name or selector must be specified");
        }
        if text(pr, "parameterNotFoundAction").is_empty() {
            errs.required(&p.child("parameterNotFoundAction"), "");
        } else {
            errs.one_of(
                &p.child("parameterNotFoundAction"),
                pr.get("parameterNotFoundAction"),
                &["Deny", "Allow"],
            );
        }
    }
    errs.0
}

/// kube-apiserver's defaults of a policy of either kind: failurePolicy Fail, matchPolicy
/// Equivalent, empty selectors, rule scope `*`.
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
