//! Webhook configurations (`admissionregistration.k8s.io/v1` Mutating- and
//! ValidatingWebhookConfiguration): their defaults, their validation (refused at create with
//! kube-apiserver's field paths), and the hooks the dispatcher calls, parsed once per change.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tug_api::Cause;
use tug_api::selector::LabelSelector;
use tug_api::validation::field::{Errors, Path, items, text};

/// One webhook, ready to be matched and called.
#[derive(Debug)]
pub struct Hook {
    /// The configuration's name.
    pub configuration: String,
    pub name: String,
    pub client: Client,
    pub rules: Vec<Rule>,
    /// `failurePolicy: Fail` (the default).
    pub fail_closed: bool,
    /// `matchPolicy: Exact`.
    pub exact: bool,
    pub namespace_selector: Option<LabelSelector>,
    pub object_selector: Option<LabelSelector>,
    /// sideEffects None or NoneOnDryRun: may be called for dry runs.
    pub dry_run_safe: bool,
    pub timeout: Duration,
    /// `reinvocationPolicy: IfNeeded`.
    pub reinvoke: bool,
    /// matchConditions: (name, CEL expression).
    pub conditions: Vec<(String, String)>,
    /// Reviews are sent as `admission.k8s.io/v1beta1`: the first version of
    /// `admissionReviewVersions` this server speaks is v1beta1.
    pub v1beta1: bool,
}

/// Where a webhook is called.
#[derive(Debug)]
pub struct Client {
    pub target: Target,
    /// TLS trust: `caBundle` (or the system roots), built once.
    pub tls: Arc<rustls::ClientConfig>,
}

/// A webhook's address.
#[derive(Debug, Clone)]
pub enum Target {
    Url(String),
    Service {
        namespace: String,
        name: String,
        path: String,
        port: u16,
    },
}

/// One rule: operations and group/version/resource patterns.
#[derive(Debug, Clone)]
pub struct Rule {
    pub operations: Vec<String>,
    pub groups: Vec<String>,
    pub versions: Vec<String>,
    pub resources: Vec<String>,
    /// `*`, `Cluster` or `Namespaced`.
    pub scope: String,
}

/// Fills in what kube-apiserver defaults in a webhook configuration.
pub fn defaults(obj: &mut Value, mutating: bool) {
    let Some(Value::Array(hooks)) = obj.get_mut("webhooks") else {
        return;
    };
    for h in hooks.iter_mut().filter(|h| h.is_object()) {
        let set = |h: &mut Value, k: &str, v: Value| {
            if h.get(k).is_none_or(Value::is_null) {
                h[k] = v;
            }
        };
        set(h, "failurePolicy", json!("Fail"));
        set(h, "matchPolicy", json!("Equivalent"));
        set(h, "namespaceSelector", json!({}));
        set(h, "objectSelector", json!({}));
        set(h, "timeoutSeconds", json!(10));
        if mutating {
            set(h, "reinvocationPolicy", json!("Never"));
        }
        if let Some(Value::Array(rules)) = h.get_mut("rules") {
            for r in rules.iter_mut().filter(|r| r.is_object()) {
                set(r, "scope", json!("*"));
            }
        }
        if let Some(s) = h.pointer_mut("/clientConfig/service")
            && s.is_object()
        {
            set(s, "port", json!(443));
        }
    }
}

/// Validates a webhook configuration as kube-apiserver does on create and update.
pub fn validate(obj: &Value, mutating: bool) -> Vec<Cause> {
    let mut errs = Errors::default();
    let mut names = std::collections::BTreeSet::new();
    for (i, h) in items(obj, "webhooks").iter().enumerate() {
        let at = Path::new("webhooks").index(i);
        let name = text(h, "name");
        if name.is_empty() {
            errs.required(&at.child("name"), "");
        } else if name.split('.').filter(|s| !s.is_empty()).count() < 3 {
            errs.invalid(
                &at.child("name"),
                &json!(name),
                "should be a domain with at least three segments separated by dots",
            );
        } else if !names.insert(name.to_string()) {
            errs.duplicate(&at.child("name"), &json!(name));
        }
        validate_hook(h, &at, mutating, &mut errs);
    }
    errs.0
}

fn validate_hook(h: &Value, at: &Path, mutating: bool, errs: &mut Errors) {
    let versions = items(h, "admissionReviewVersions");
    if versions.is_empty() {
        errs.required(
            &at.child("admissionReviewVersions"),
            "must specify one of v1, v1beta1",
        );
    } else if !versions.iter().any(|v| v == "v1" || v == "v1beta1") {
        errs.invalid(
            &at.child("admissionReviewVersions"),
            &json!(versions),
            "must include at least one of v1, v1beta1",
        );
    }
    match h.get("sideEffects") {
        None | Some(Value::Null) => errs.required(
            &at.child("sideEffects"),
            "must specify one of None, NoneOnDryRun",
        ),
        v => errs.one_of(&at.child("sideEffects"), v, &["None", "NoneOnDryRun"]),
    }
    if let Some(t) = h.get("timeoutSeconds").and_then(Value::as_i64)
        && !(1..=30).contains(&t)
    {
        errs.invalid(
            &at.child("timeoutSeconds"),
            &json!(t),
            "the timeout value must be between 1 and 30 seconds",
        );
    }
    errs.one_of(
        &at.child("failurePolicy"),
        h.get("failurePolicy"),
        &["Fail", "Ignore"],
    );
    errs.one_of(
        &at.child("matchPolicy"),
        h.get("matchPolicy"),
        &["Equivalent", "Exact"],
    );
    if mutating {
        errs.one_of(
            &at.child("reinvocationPolicy"),
            h.get("reinvocationPolicy"),
            &["IfNeeded", "Never"],
        );
    }
    for (j, r) in items(h, "rules").iter().enumerate() {
        validate_rule(r, &at.child("rules").index(j), errs);
    }
    for key in ["namespaceSelector", "objectSelector"] {
        if let Some(sel) = h.get(key).filter(|s| !s.is_null()) {
            tug_api::validation::selector::validate_label_selector(sel, &at.child(key), errs);
        }
    }
    validate_client(h.get("clientConfig"), &at.child("clientConfig"), errs);
    let mut seen = std::collections::BTreeSet::new();
    let conditions = items(h, "matchConditions");
    if conditions.len() > 64 {
        errs.0.push(Cause::new(
            "FieldValueTooMany",
            at.child("matchConditions").as_str(),
            format!("Too many: {}: must have at most 64 items", conditions.len()),
        ));
    }
    for (k, c) in conditions.iter().enumerate() {
        let cat = at.child("matchConditions").index(k);
        let name = text(c, "name");
        if name.is_empty() {
            errs.required(&cat.child("name"), "");
        } else if !seen.insert(name) {
            errs.duplicate(&cat.child("name"), &json!(name));
        } else if let Some(cause) =
            tug_api::validation::validate_qualified_name(name, cat.child("name").as_str())
        {
            errs.0.push(cause);
        }
        let expr = text(c, "expression");
        if expr.is_empty() {
            errs.required(&cat.child("expression"), "");
        } else if let Err(e) = tug_api::crd::cel::compile(expr) {
            errs.invalid(
                &cat.child("expression"),
                &json!(expr),
                &format!("compilation failed: {e}"),
            );
        }
    }
}

fn validate_rule(r: &Value, at: &Path, errs: &mut Errors) {
    for key in ["operations", "apiGroups", "apiVersions", "resources"] {
        let list = items(r, key);
        if list.is_empty() {
            errs.required(&at.child(key), "");
            continue;
        }
        let has_star = list.iter().any(|v| v == "*");
        if key != "resources" && has_star && list.len() > 1 {
            errs.invalid(
                &at.child(key),
                &json!(list),
                "if '*' is present, must not specify other values",
            );
        }
    }
    for (i, op) in items(r, "operations").iter().enumerate() {
        errs.one_of(
            &at.child("operations").index(i),
            Some(op),
            &["*", "CONNECT", "CREATE", "DELETE", "UPDATE"],
        );
    }
    let resources: Vec<&str> = items(r, "resources")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for (i, res) in resources.iter().enumerate() {
        let p = at.child("resources").index(i);
        if *res == "*/*" && resources.len() > 1 {
            errs.invalid(
                &p,
                &json!(res),
                "if '*/*' is present, must not specify other resources",
            );
        } else if *res == "*" && resources.iter().any(|o| !o.contains('/') && *o != "*") {
            errs.invalid(
                &p,
                &json!(res),
                "if '*' is present, must not specify other resources without subresources",
            );
        } else if let Some((main, "*")) = res.split_once('/')
            && resources.iter().any(|o| {
                o.split_once('/')
                    .is_some_and(|(m, s)| m == main && s != "*")
            })
        {
            errs.invalid(
                &p,
                &json!(res),
                &format!("if '{main}/*' is present, must not specify {main}/subresource"),
            );
        }
    }
    errs.one_of(
        &at.child("scope"),
        r.get("scope"),
        &["*", "Cluster", "Namespaced"],
    );
}

fn validate_client(c: Option<&Value>, at: &Path, errs: &mut Errors) {
    let c = c.filter(|c| c.is_object());
    let url = c.and_then(|c| c.get("url")).and_then(Value::as_str);
    let service = c.and_then(|c| c.get("service")).filter(|s| s.is_object());
    match (url, service) {
        (Some(_), Some(_)) | (None, None) => {
            errs.required(at, "exactly one of url or service is required")
        }
        (Some(u), None) => {
            let p = at.child("url");
            match u.parse::<http::Uri>() {
                Err(e) => errs.invalid(&p, &json!(u), &format!("host must be specified: {e}")),
                Ok(uri) => {
                    if uri.scheme_str() != Some("https") {
                        errs.invalid(&p, &json!(u), "'https' is the only allowed URL scheme");
                    }
                    if uri.host().is_none_or(str::is_empty) {
                        errs.invalid(&p, &json!(u), "host must be specified");
                    }
                    if uri.query().is_some() {
                        errs.invalid(&p, &json!(u), "query parameters are not allowed");
                    }
                    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
                        errs.invalid(
                            &p,
                            &json!(u),
                            "user information is not permitted in the URL",
                        );
                    }
                    if u.contains('#') {
                        errs.invalid(&p, &json!(u), "fragments are not permitted in the URL");
                    }
                }
            }
        }
        (None, Some(s)) => {
            let p = at.child("service");
            for key in ["name", "namespace"] {
                if text(s, key).is_empty() {
                    errs.required(&p.child(key), &format!("service {key} is required"));
                }
            }
            if let Some(port) = s.get("port").and_then(Value::as_i64)
                && !(1..=65535).contains(&port)
            {
                errs.invalid(
                    &p.child("port"),
                    &json!(port),
                    "port is not valid: must be between 1 and 65535, inclusive",
                );
            }
            let path = text(s, "path");
            if !path.is_empty() && !path.starts_with('/') {
                errs.invalid(&p.child("path"), &json!(path), "must start with a '/'");
            }
        }
    }
    if let Some(ca) = c.and_then(|c| c.get("caBundle")).and_then(Value::as_str)
        && !ca.is_empty()
        && ca_bundle(ca).is_err()
    {
        errs.invalid(
            &at.child("caBundle"),
            &json!("<bytes>"),
            "must be a base64-encoded bundle of PEM certificates",
        );
    }
}

/// The PEM text of a `caBundle` (base64 in JSON).
fn ca_bundle(b64: &str) -> anyhow::Result<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64.trim())?;
    let pem = String::from_utf8(bytes)?;
    crate::tls::https_client_config(Some(&pem))?;
    Ok(pem)
}

/// The non-empty label selector at `key`, if any.
pub(crate) fn selector(h: &Value, key: &str) -> Option<LabelSelector> {
    let s = h
        .get(key)
        .filter(|s| s.as_object().is_some_and(|m| !m.is_empty()))?;
    let parsed: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector =
        serde_json::from_value(s.clone()).unwrap_or_default();
    Some(LabelSelector::from_api(&parsed))
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    items(v, key)
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// The rules at `key` of `v`.
pub(crate) fn parse_rules(v: &Value, key: &str) -> Vec<Rule> {
    items(v, key)
        .iter()
        .map(|r| Rule {
            operations: strings(r, "operations"),
            groups: strings(r, "apiGroups"),
            versions: strings(r, "apiVersions"),
            resources: strings(r, "resources"),
            scope: r
                .get("scope")
                .and_then(Value::as_str)
                .unwrap_or("*")
                .to_string(),
        })
        .collect()
}

/// The hooks of one stored configuration (already validated when written); a hook whose
/// client cannot be built is left out, with a log line.
pub fn hooks(config: &Value) -> Vec<Hook> {
    let configuration = tug_api::meta::name(config).to_string();
    let mut out = Vec::new();
    for h in items(config, "webhooks") {
        let name = text(h, "name").to_string();
        let cc = &h["clientConfig"];
        let target = if let Some(url) = cc.get("url").and_then(Value::as_str) {
            Target::Url(url.to_string())
        } else {
            let s = &cc["service"];
            Target::Service {
                namespace: text(s, "namespace").to_string(),
                name: text(s, "name").to_string(),
                path: text(s, "path").to_string(),
                port: s
                    .get("port")
                    .and_then(Value::as_u64)
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(443),
            }
        };
        let pem = match cc.get("caBundle").and_then(Value::as_str) {
            Some(b) if !b.is_empty() => match ca_bundle(b) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(webhook = %name, error = %e, "webhook caBundle unusable; webhook skipped");
                    continue;
                }
            },
            _ => None,
        };
        let tls = match crate::tls::https_client_config(pem.as_deref()) {
            Ok(mut t) => {
                t.alpn_protocols = vec![b"http/1.1".to_vec()];
                Arc::new(t)
            }
            Err(e) => {
                tracing::warn!(webhook = %name, error = %e, "webhook TLS unusable; webhook skipped");
                continue;
            }
        };
        let rules = parse_rules(h, "rules");
        out.push(Hook {
            configuration: configuration.clone(),
            name,
            client: Client { target, tls },
            rules,
            fail_closed: text(h, "failurePolicy") != "Ignore",
            exact: text(h, "matchPolicy") == "Exact",
            namespace_selector: selector(h, "namespaceSelector"),
            object_selector: selector(h, "objectSelector"),
            dry_run_safe: matches!(text(h, "sideEffects"), "None" | "NoneOnDryRun"),
            timeout: Duration::from_secs(
                h.get("timeoutSeconds")
                    .and_then(Value::as_u64)
                    .unwrap_or(10)
                    .clamp(1, 30),
            ),
            reinvoke: text(h, "reinvocationPolicy") == "IfNeeded",
            v1beta1: items(h, "admissionReviewVersions")
                .iter()
                .find(|v| *v == "v1" || *v == "v1beta1")
                .is_some_and(|v| v == "v1beta1"),
            conditions: items(h, "matchConditions")
                .iter()
                .map(|c| {
                    (
                        text(c, "name").to_string(),
                        text(c, "expression").to_string(),
                    )
                })
                .collect(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(hook: Value) -> Value {
        let mut c = json!({"metadata": {"name": "c"}, "webhooks": [hook]});
        defaults(&mut c, true);
        c
    }

    #[test]
    fn defaults_and_a_valid_hook() {
        let c = config(json!({"name": "a.b.c", "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "clientConfig": {"service": {"namespace": "ns", "name": "svc"}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                "resources": ["pods"]}]}));
        assert_eq!(c["webhooks"][0]["failurePolicy"], "Fail");
        assert_eq!(c["webhooks"][0]["timeoutSeconds"], 10);
        assert_eq!(c["webhooks"][0]["rules"][0]["scope"], "*");
        assert_eq!(c["webhooks"][0]["clientConfig"]["service"]["port"], 443);
        assert_eq!(validate(&c, true), vec![]);
        let hooks = hooks(&c);
        assert_eq!(hooks.len(), 1);
        assert!(hooks[0].fail_closed && !hooks[0].reinvoke && hooks[0].dry_run_safe);
    }

    #[test]
    fn bad_hooks_name_their_fields() {
        let c = config(json!({"name": "short", "timeoutSeconds": 31,
            "clientConfig": {"url": "http://x.example/p"},
            "rules": [{"operations": ["GET"], "apiGroups": ["*", "apps"], "apiVersions": ["v1"],
                "resources": ["*/*", "pods"]}],
            "matchConditions": [{"name": "c", "expression": "object.("}]}));
        let fields: Vec<String> = validate(&c, true)
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let all = fields.join("\n");
        for want in [
            "webhooks[0].name: Invalid value: \"short\": should be a domain with at least three segments separated by dots",
            "webhooks[0].admissionReviewVersions: Required value: must specify one of v1, v1beta1",
            "webhooks[0].sideEffects: Required value: must specify one of None, NoneOnDryRun",
            "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds",
            "webhooks[0].rules[0].operations[0]: Unsupported value: \"GET\"",
            "webhooks[0].rules[0].apiGroups: Invalid value",
            "webhooks[0].rules[0].resources[0]: Invalid value: \"*/*\": if '*/*' is present, must not specify other resources",
            "webhooks[0].clientConfig.url: Invalid value: \"http://x.example/p\": 'https' is the only allowed URL scheme",
            "webhooks[0].matchConditions[0].expression: Invalid value: \"object.(\": compilation failed",
        ] {
            assert!(
                fields.iter().any(|f| f.starts_with(want)),
                "missing {want}:\n{all}"
            );
        }
    }
}
