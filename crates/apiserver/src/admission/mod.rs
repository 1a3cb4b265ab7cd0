//! The admission chain, in kube-apiserver's order: the mutating built-ins (Priority,
//! ServiceAccount and DefaultTolerationSeconds run by the registry as it defaults a new
//! object, then LimitRanger's defaults, DefaultStorageClass and StorageObjectInUseProtection),
//! the MutatingAdmissionPolicies, the mutating webhooks (one reinvocation round for both), the
//! kind's own validation (the registry's), LimitRanger's checks,
//! PodSecurity, the ValidatingAdmissionPolicies, then the validating webhooks; ResourceQuota
//! stays last, in the registry. It runs for create, update (of objects and their
//! subresources), delete and connect, for dry runs too, and for custom resources.

pub mod default_storage_class;
pub mod limit_ranger;
pub mod metrics;
pub mod notes;
pub mod pod_security;
pub mod policy;
pub mod storage_protection;
pub mod webhook;

use std::sync::Arc;

use serde_json::{Value, json};
use tug_api::{ApiError, Resource};

use crate::auth::Identity;
use crate::registry::Registry;

/// The operation admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    /// The name rules and reviews use (`CREATE` …).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }

    /// The kind of the options sent with the operation (none for CONNECT).
    fn options_kind(self) -> Option<&'static str> {
        match self {
            Operation::Create => Some("CreateOptions"),
            Operation::Update => Some("UpdateOptions"),
            Operation::Delete => Some("DeleteOptions"),
            Operation::Connect => None,
        }
    }
}

/// What admission knows of a request.
#[derive(Clone, Debug)]
pub struct Attributes<'a> {
    pub resource: &'a Resource,
    /// The subresource written (`status`, `exec` …), if any.
    pub subresource: Option<&'a str>,
    /// The namespace (empty for cluster-scoped resources).
    pub namespace: &'a str,
    /// The object's name (empty when a create generates it).
    pub name: String,
    pub operation: Operation,
    /// Who asks; `None` for the server's own writes.
    pub user: Option<&'a Identity>,
    pub dry_run: bool,
    /// The stored object (update and delete).
    pub old: Option<&'a Value>,
    /// The field manager, sent in the options.
    pub field_manager: &'a str,
    /// For CONNECT, the kind of the options object (`PodExecOptions` …), the kind webhooks
    /// are told of.
    pub connect_kind: Option<&'static str>,
}

impl Attributes<'_> {
    /// The options object a review carries (`CreateOptions` …), or null.
    fn options(&self) -> Value {
        let Some(kind) = self.operation.options_kind() else {
            return Value::Null;
        };
        let mut o = json!({"kind": kind, "apiVersion": "meta.k8s.io/v1"});
        if self.dry_run {
            o["dryRun"] = json!(["All"]);
        }
        if !self.field_manager.is_empty() && self.operation != Operation::Delete {
            o["fieldManager"] = json!(self.field_manager);
        }
        o
    }

    /// The user as a review's `userInfo`.
    fn user_info(&self) -> Value {
        let fallback;
        let user = match self.user {
            Some(u) => u,
            None => {
                fallback = Identity {
                    user: "system:apiserver".into(),
                    uid: String::new(),
                    groups: vec!["system:masters".into(), "system:authenticated".into()],
                    extra: Default::default(),
                };
                &fallback
            }
        };
        let mut info = json!({"username": user.user, "groups": user.groups});
        if !user.uid.is_empty() {
            info["uid"] = json!(user.uid);
        }
        if !user.extra.is_empty() {
            info["extra"] = json!(user.extra);
        }
        info
    }
}

/// The options object of a CONNECT to a pod (`exec`, `attach`, `portforward`), from the
/// request's query, as kube-apiserver decodes it; `None` for other subresources.
pub fn connect_options(subresource: &str, query: &str) -> Option<(&'static str, Value)> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let flag = |name: &str| {
        pairs
            .iter()
            .any(|(k, v)| k == name && matches!(v.as_str(), "true" | "1"))
    };
    let one = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let all = |name: &str| -> Vec<String> {
        pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let (kind, mut o) = match subresource {
        "exec" => (
            "PodExecOptions",
            json!({"stdin": flag("stdin"), "stdout": flag("stdout"), "stderr": flag("stderr"),
                "tty": flag("tty"), "command": all("command")}),
        ),
        "attach" => (
            "PodAttachOptions",
            json!({"stdin": flag("stdin"), "stdout": flag("stdout"), "stderr": flag("stderr"),
                "tty": flag("tty")}),
        ),
        "portforward" => {
            let ports: Vec<Value> = all("ports")
                .iter()
                .flat_map(|p| p.split(',').map(str::to_string).collect::<Vec<_>>())
                .filter_map(|p| p.trim().parse::<u16>().ok())
                .map(|p| json!(p))
                .collect();
            ("PodPortForwardOptions", json!({"ports": ports}))
        }
        _ => return None,
    };
    o["kind"] = json!(kind);
    o["apiVersion"] = json!("v1");
    if let Some(c) = one("container") {
        o["container"] = json!(c);
    }
    Some((kind, o))
}

/// What a mutating plugin remembers from the first round for the reinvocation round: the
/// object as each of its mutators (a webhook, a policy binding) left it.
#[derive(Default)]
pub struct Reinvocation {
    /// 0, then 1 when mutators are reinvoked.
    pub round: usize,
    outputs: std::collections::HashMap<String, Value>,
}

impl Reinvocation {
    /// Whether the mutator `key` runs now: always in the first round; in the reinvocation
    /// round if it asks for it (`reinvoke`) and the object changed since it ran.
    pub fn should_run(&self, key: &str, reinvoke: bool, obj: &Value) -> bool {
        self.round == 0 || (reinvoke && self.outputs.get(key).is_some_and(|o| o != obj))
    }

    /// Records the object as mutator `key` left it.
    pub fn ran(&mut self, key: &str, obj: &Value) {
        if self.round == 0 {
            self.outputs.insert(key.to_string(), obj.clone());
        }
    }
}

/// The admission chain's configurable part: admission policies and webhooks, and the
/// plugins' configuration.
pub struct Admission {
    pod_security: crate::swap::Swap<pod_security::Config>,
    webhooks: Arc<webhook::Webhooks>,
    validating_policies: Arc<policy::Policies>,
    mutating_policies: Arc<policy::Policies>,
}

impl Default for Admission {
    fn default() -> Self {
        Admission {
            pod_security: Default::default(),
            webhooks: Arc::default(),
            validating_policies: Arc::new(policy::Policies::new(policy::Kind::Validating)),
            mutating_policies: Arc::new(policy::Policies::new(policy::Kind::Mutating)),
        }
    }
}

/// An `apiserver.config.k8s.io` AdmissionConfiguration (`--admission-control-config-file`):
/// the plugins' configurations, inline or in files of their own. PodSecurity's is read;
/// others are noted and ignored.
pub fn load_configuration(path: &std::path::Path) -> anyhow::Result<pod_security::Config> {
    let read = |p: &std::path::Path| -> anyhow::Result<Value> {
        let text = std::fs::read_to_string(p)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))?;
        serde_norway::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
    };
    let v = read(path)?;
    let api_version = v["apiVersion"].as_str().unwrap_or_default();
    if v["kind"] != "AdmissionConfiguration"
        || !matches!(
            api_version,
            "apiserver.config.k8s.io/v1"
                | "apiserver.config.k8s.io/v1alpha1"
                | "apiserver.k8s.io/v1alpha1"
        )
    {
        anyhow::bail!(
            "{}: expected kind AdmissionConfiguration of apiVersion apiserver.config.k8s.io/v1",
            path.display()
        );
    }
    let mut pod_security = pod_security::Config::default();
    for plugin in v["plugins"].as_array().into_iter().flatten() {
        let name = plugin["name"].as_str().unwrap_or_default();
        let configuration = match plugin["path"].as_str() {
            Some(p) => read(&path.parent().unwrap_or(std::path::Path::new(".")).join(p))?,
            None => plugin["configuration"].clone(),
        };
        match name {
            "PodSecurity" => {
                pod_security = pod_security::Config::parse(&configuration)
                    .map_err(|e| anyhow::anyhow!("{}: PodSecurity: {e}", path.display()))?;
            }
            other => tracing::warn!(plugin = other, "admission plugin configuration ignored"),
        }
    }
    Ok(pod_security)
}

impl Admission {
    /// Configures PodSecurity (from the admission configuration file).
    pub fn set_pod_security(&self, config: pod_security::Config) {
        self.pod_security.set(config);
    }

    /// Loads the stored policies and webhook configurations and follows their changes.
    pub async fn start(&self, registry: &Registry) -> anyhow::Result<()> {
        self.validating_policies.start(registry).await?;
        self.mutating_policies.start(registry).await?;
        self.webhooks.start(registry).await
    }

    /// The mutating stage: may change `obj` (the object being created or the new version of
    /// an updated one). The mutating policies run, then the mutating webhooks; if any of
    /// them changed the object, those asking to be reinvoked run once more, in that order.
    pub async fn mutate(
        &self,
        registry: &Registry,
        a: &Attributes<'_>,
        obj: &mut Value,
    ) -> Result<(), ApiError> {
        limit_ranger::default(registry, a, obj).await?;
        default_storage_class::admit(registry, a, obj).await?;
        storage_protection::admit(a, obj)?;
        let (mut policies, mut webhooks) = (Reinvocation::default(), Reinvocation::default());
        let mut changed = self
            .mutating_policies
            .mutate(registry, a, obj, &mut policies)
            .await?;
        changed |= self
            .webhooks
            .mutate(registry, a, obj, &mut webhooks)
            .await?;
        if changed {
            (policies.round, webhooks.round) = (1, 1);
            self.mutating_policies
                .mutate(registry, a, obj, &mut policies)
                .await?;
            self.webhooks
                .mutate(registry, a, obj, &mut webhooks)
                .await?;
        }
        Ok(())
    }

    /// The validating stage, after the kind's own validation; `obj` is `None` for delete.
    pub async fn validate(
        &self,
        registry: &Registry,
        a: &Attributes<'_>,
        obj: Option<&Value>,
    ) -> Result<(), ApiError> {
        limit_ranger::validate(registry, a, obj).await?;
        pod_security::validate(registry, &self.pod_security.get(), a, obj).await?;
        self.validating_policies.validate(registry, a, obj).await?;
        self.webhooks.validate(registry, a, obj).await
    }

    /// Both stages for an operation without a new object (delete, connect): the mutating
    /// webhooks are called but may not change anything.
    pub async fn admit_without_object(
        &self,
        registry: &Registry,
        a: &Attributes<'_>,
        obj: Option<&Value>,
    ) -> Result<(), ApiError> {
        self.webhooks.mutate_fixed(registry, a, obj).await?;
        self.validating_policies.validate(registry, a, obj).await?;
        self.webhooks.validate(registry, a, obj).await
    }
}

/// A 403 for the request, as the admission chain words it.
pub(crate) fn forbidden(a: &Attributes<'_>, err: &str) -> ApiError {
    let r = a.resource;
    let what = if r.group.is_empty() {
        r.plural.to_string()
    } else {
        format!("{}.{}", r.plural, r.group)
    };
    let message = if a.name.is_empty() {
        format!("{what} is forbidden: {err}")
    } else {
        format!("{what} \"{}\" is forbidden: {err}", a.name)
    };
    ApiError::forbidden(message).with_details(r.group, r.plural, &a.name)
}
