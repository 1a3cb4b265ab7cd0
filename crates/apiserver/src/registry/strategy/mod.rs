//! Per-kind strategies, as Kubernetes' registry has them (`pkg/registry/<group>/<kind>/
//! strategy.go`): what differs between kinds in the generic registry's create, update and
//! delete. The registry holds one path for every kind and asks the kind's strategy at each
//! point where kinds differ; [`of`] is the table attaching a strategy to each catalog entry.

mod apps;
mod core;
mod custom;
mod other;

use serde_json::{Value, json};
use tug_api::validation::NameRule;
use tug_api::{Cause, Resource};

/// What a kind does differently at each step of a write.
pub(crate) trait Strategy: Sync {
    /// How object names are checked.
    fn name_rule(&self) -> NameRule {
        NameRule::Subdomain
    }

    /// Checks made with the metadata's, before defaults: the keys of a ConfigMap's or
    /// Secret's data, which name files in a volume.
    fn validate_keys(&self, _obj: &Value) -> Vec<Cause> {
        Vec::new()
    }

    /// Defaults, applied to every object written (Kubernetes applies them as it decodes).
    fn defaults(&self, _obj: &mut Value) {}

    /// What a new object gets beyond its defaults (PrepareForCreate): generated fields and
    /// the status it starts with, whatever the body said. `obj` already has its uid.
    fn prepare_for_create(&self, _obj: &mut Value) {}

    /// The kind's field checks of a whole object (Validate).
    fn validate(&self, _obj: &Value) -> Vec<Cause> {
        Vec::new()
    }

    /// What an update may not change (ValidateUpdate).
    fn validate_update(&self, _old: &Value, _new: &Value) -> Vec<Cause> {
        Vec::new()
    }

    /// Whether a DELETE that removes an object answers with it rather than a Success Status
    /// (the registry's ReturnDeletedObject).
    fn returns_deleted_object(&self) -> bool {
        false
    }

    /// The finalizers that hold an object's deletion.
    fn finalizers(&self, obj: &Value) -> Vec<Value> {
        obj.pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }

    /// What a DELETE changes before the finalizers are looked at (a definition gets the
    /// finalizer that removes its objects first).
    fn on_delete(&self, _obj: &mut Value) {}

    /// What marking an object for deletion changes besides its deletionTimestamp.
    fn mark_deleting(&self, _obj: &mut Value) {}

    /// Whether deletion is graceful: the object stays, marked, until whoever runs it (the
    /// kubelet) confirms.
    fn graceful(&self) -> bool {
        false
    }
}

/// A kind with no behaviour of its own.
struct Plain;
impl Strategy for Plain {}

/// A kind whose objects start with a fixed zero status (what Go's encoder writes of the
/// kind's empty status struct) and, for some, a DELETE that answers with the object.
struct ZeroStatus {
    status: fn() -> Value,
    returns_deleted: bool,
}

impl Strategy for ZeroStatus {
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = (self.status)();
    }

    fn returns_deleted_object(&self) -> bool {
        self.returns_deleted
    }
}

/// A kind whose only difference is a DELETE that answers with the object.
struct ReturnsDeleted;
impl Strategy for ReturnsDeleted {
    fn returns_deleted_object(&self) -> bool {
        true
    }
}

/// A kind whose names are path segments of their own (RBAC roles and bindings, APIServices).
struct PathSegmentNames {
    check: Option<tug_api::validation::Check>,
}

impl Strategy for PathSegmentNames {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        self.check.map(|c| c(obj)).unwrap_or_default()
    }
}

fn empty() -> Value {
    json!({})
}

/// Mutating and validating webhook configurations: defaulted and checked as kube-apiserver
/// does.
struct WebhookConfiguration {
    mutating: bool,
}

impl Strategy for WebhookConfiguration {
    fn defaults(&self, obj: &mut Value) {
        crate::admission::webhook::config::defaults(obj, self.mutating);
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        crate::admission::webhook::config::validate(obj, self.mutating)
    }
}

/// Admission policies of either kind: defaulted and their expressions compiled on write.
struct AdmissionPolicy {
    mutating: bool,
}

impl Strategy for AdmissionPolicy {
    fn defaults(&self, obj: &mut Value) {
        crate::admission::policy::default_policy(obj);
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        if self.mutating {
            crate::admission::policy::mutating::validate_policy(obj)
        } else {
            crate::admission::policy::validating::validate_policy(obj)
        }
    }
}

/// Admission policy bindings: a policy, and valid actions for validating ones.
struct AdmissionPolicyBinding {
    mutating: bool,
}

impl Strategy for AdmissionPolicyBinding {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        if self.mutating {
            crate::admission::policy::mutating::validate_binding(obj)
        } else {
            crate::admission::policy::validating::validate_binding(obj)
        }
    }
}

/// A resource's strategy: a built-in kind's, or one made from a custom resource's definition.
pub(crate) enum Chosen {
    Builtin(&'static dyn Strategy),
    Custom(custom::CustomResource),
}

impl std::ops::Deref for Chosen {
    type Target = dyn Strategy;

    fn deref(&self) -> &Self::Target {
        match self {
            Chosen::Builtin(s) => *s,
            Chosen::Custom(c) => c,
        }
    }
}

/// The strategy of resource `r`.
pub(crate) fn of(r: &Resource) -> Chosen {
    match r.custom {
        Some(custom) => Chosen::Custom(custom::CustomResource {
            custom,
            has_status: r.has_subresource("status"),
        }),
        None => Chosen::Builtin(builtin(r)),
    }
}

fn builtin(r: &Resource) -> &'static dyn Strategy {
    static PLAIN: Plain = Plain;
    static RETURNS_DELETED: ReturnsDeleted = ReturnsDeleted;
    static EMPTY_STATUS: ZeroStatus = ZeroStatus {
        status: empty,
        returns_deleted: false,
    };
    static RBAC: PathSegmentNames = PathSegmentNames { check: None };
    static API_SERVICE: PathSegmentNames = PathSegmentNames {
        check: Some(tug_api::validation::api_service),
    };
    static MUTATING_WEBHOOKS: WebhookConfiguration = WebhookConfiguration { mutating: true };
    static VALIDATING_WEBHOOKS: WebhookConfiguration = WebhookConfiguration { mutating: false };
    static VALIDATING_POLICIES: AdmissionPolicy = AdmissionPolicy { mutating: false };
    static MUTATING_POLICIES: AdmissionPolicy = AdmissionPolicy { mutating: true };
    static VALIDATING_POLICY_BINDINGS: AdmissionPolicyBinding =
        AdmissionPolicyBinding { mutating: false };
    static MUTATING_POLICY_BINDINGS: AdmissionPolicyBinding =
        AdmissionPolicyBinding { mutating: true };
    match (r.group, r.kind) {
        ("", kind) => core::of(kind).unwrap_or(&PLAIN),
        ("apps", _) | ("batch", _) => apps::of(r).unwrap_or(&PLAIN),
        ("networking.k8s.io", kind) => other::networking(kind).unwrap_or(&PLAIN),
        ("autoscaling", "HorizontalPodAutoscaler") => other::autoscaler(r.version),
        ("policy", "PodDisruptionBudget") => other::disruption_budget(),
        ("certificates.k8s.io", "CertificateSigningRequest") => &EMPTY_STATUS,
        (
            "storage.k8s.io",
            "StorageClass" | "CSIDriver" | "CSINode" | "VolumeAttachment" | "VolumeAttributesClass",
        )
        | (
            "resource.k8s.io",
            "ResourceClaim" | "ResourceClaimTemplate" | "ResourceSlice" | "DeviceClass",
        ) => &RETURNS_DELETED,
        (
            "rbac.authorization.k8s.io",
            "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding",
        ) => &RBAC,
        ("apiregistration.k8s.io", "APIService") => &API_SERVICE,
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => &MUTATING_WEBHOOKS,
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => &VALIDATING_WEBHOOKS,
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => &VALIDATING_POLICIES,
        ("admissionregistration.k8s.io", "MutatingAdmissionPolicy") => &MUTATING_POLICIES,
        ("admissionregistration.k8s.io", "MutatingAdmissionPolicyBinding") => {
            &MUTATING_POLICY_BINDINGS
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => {
            &VALIDATING_POLICY_BINDINGS
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => &custom::Definition,
        _ => &PLAIN,
    }
}
