//! The admission chain, in kube-apiserver's order: the mutating built-ins (Priority,
//! ServiceAccount and DefaultTolerationSeconds run by the registry as it defaults a new
//! object, then LimitRanger's defaults), the mutating webhooks (with reinvocation), the kind's
//! own validation (the registry's), LimitRanger's checks, PodSecurity, the ValidatingAdmissionPolicies,
//! then the validating webhooks;
//! ResourceQuota stays last, in the registry. It runs for create, update (of objects and their subresources),
//! delete and connect, for dry runs too, and for custom resources.

pub mod limit_ranger;
pub mod notes;
pub mod pod_security;
pub mod policy;
pub mod webhook;

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

/// The admission chain's configurable part: the webhooks (and what follows them).
#[derive(Default)]
pub struct Admission {
    webhooks: std::sync::Arc<webhook::Webhooks>,
    policies: std::sync::Arc<policy::Policies>,
}

impl Admission {
    /// Loads the stored webhook configurations and follows their changes.
    pub async fn start(&self, registry: &Registry) -> anyhow::Result<()> {
        self.policies.start(registry).await?;
        self.webhooks.start(registry).await
    }

    /// The mutating stage: may change `obj` (the object being created or the new version of
    /// an updated one).
    pub async fn mutate(
        &self,
        registry: &Registry,
        a: &Attributes<'_>,
        obj: &mut Value,
    ) -> Result<(), ApiError> {
        limit_ranger::default(registry, a, obj).await?;
        self.webhooks.mutate(registry, a, obj).await
    }

    /// The validating stage, after the kind's own validation; `obj` is `None` for delete.
    pub async fn validate(
        &self,
        registry: &Registry,
        a: &Attributes<'_>,
        obj: Option<&Value>,
    ) -> Result<(), ApiError> {
        limit_ranger::validate(registry, a, obj).await?;
        pod_security::validate(registry, a, obj).await?;
        self.policies.validate(registry, a, obj).await?;
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
        self.policies.validate(registry, a, obj).await?;
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
