//! The catalog of built-in resources: what discovery lists and what the registry serves.

/// Whether objects of a resource live in a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// One resource at one group/version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// API group; empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// URL path segment, e.g. `deployments`.
    pub plural: &'static str,
    pub scope: Scope,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Subresources served, e.g. `status`, `scale`.
    pub subresources: &'static [&'static str],
    /// Verbs the resource answers.
    pub verbs: &'static [&'static str],
    /// Where objects are stored; versions of one resource share it.
    pub storage: &'static str,
    /// For a custom resource, what its definition says of this version.
    pub custom: Option<&'static crate::crd::Custom>,
}

impl Resource {
    /// `v1` for core, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The lower-case singular name.
    pub fn singular(&self) -> String {
        match self.custom {
            Some(c) => c.singular.clone(),
            None => self.kind.to_ascii_lowercase(),
        }
    }

    /// Whether objects live in namespaces.
    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    /// Whether the resource serves `sub` (`status`, `scale`, ...).
    pub fn has_subresource(&self, sub: &str) -> bool {
        self.subresources.contains(&sub)
    }

    /// Whether the resource answers `verb`.
    pub fn allows(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    /// The kind of its lists.
    pub fn list_kind(&self) -> String {
        match self.custom {
            Some(c) => c.list_kind.clone(),
            None => format!("{}List", self.kind),
        }
    }
}

/// Verbs of an ordinary stored resource.
pub const CRUD: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Verbs of a stored resource that cannot be deleted as a collection (namespaces).
pub const CRUD_ONE_BY_ONE: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
/// Verbs of a review resource that is only ever created.
pub const CREATE_ONLY: &[&str] = &["create"];
/// Verbs of a resource that is computed, never stored (metrics.k8s.io).
pub const GET_LIST: &[&str] = &["get", "list"];

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];
const STATUS: &[&str] = &["status"];
const STATUS_SCALE: &[&str] = &["status", "scale"];

macro_rules! res {
    ($g:expr, $v:expr, $kind:expr, $plural:expr, $scope:ident, $short:expr, $cat:expr, $sub:expr) => {
        res!(
            $g,
            $v,
            $kind,
            $plural,
            $scope,
            $short,
            $cat,
            $sub,
            CRUD,
            concat!($g, "/", $plural)
        )
    };
    ($g:expr, $v:expr, $kind:expr, $plural:expr, $scope:ident, $short:expr, $cat:expr, $sub:expr, $verbs:expr, $storage:expr) => {
        Resource {
            group: $g,
            version: $v,
            kind: $kind,
            plural: $plural,
            scope: Scope::$scope,
            short_names: $short,
            categories: $cat,
            subresources: $sub,
            verbs: $verbs,
            storage: $storage,
            custom: None,
        }
    };
}

/// Every built-in resource, in the order discovery lists them. Preferred versions first within
/// a group.
pub static BUILTIN: &[Resource] = &[
    // core/v1
    res!(
        "",
        "v1",
        "Namespace",
        "namespaces",
        Cluster,
        &["ns"],
        NONE,
        &["status", "finalize"],
        CRUD_ONE_BY_ONE,
        "/namespaces"
    ),
    res!(
        "",
        "v1",
        "Pod",
        "pods",
        Namespaced,
        &["po"],
        ALL,
        &[
            "status",
            "binding",
            "eviction",
            "log",
            "exec",
            "attach",
            "portforward",
            "ephemeralcontainers"
        ]
    ),
    res!(
        "",
        "v1",
        "Service",
        "services",
        Namespaced,
        &["svc"],
        ALL,
        STATUS
    ),
    res!(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        Namespaced,
        &["ep"],
        NONE,
        NONE
    ),
    res!(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        Namespaced,
        &["cm"],
        NONE,
        NONE
    ),
    res!("", "v1", "Secret", "secrets", Namespaced, NONE, NONE, NONE),
    res!(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        Namespaced,
        &["sa"],
        NONE,
        &["token"]
    ),
    res!(
        "",
        "v1",
        "Node",
        "nodes",
        Cluster,
        &["no"],
        NONE,
        &["status", "proxy"]
    ),
    res!("", "v1", "Event", "events", Namespaced, &["ev"], NONE, NONE),
    res!(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        Cluster,
        &["pv"],
        NONE,
        STATUS
    ),
    res!(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        Namespaced,
        &["pvc"],
        NONE,
        STATUS
    ),
    res!(
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        Namespaced,
        &["quota"],
        NONE,
        STATUS
    ),
    res!(
        "",
        "v1",
        "LimitRange",
        "limitranges",
        Namespaced,
        &["limits"],
        NONE,
        NONE
    ),
    res!(
        "",
        "v1",
        "PodTemplate",
        "podtemplates",
        Namespaced,
        NONE,
        NONE,
        NONE
    ),
    res!(
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        Namespaced,
        &["rc"],
        ALL,
        STATUS_SCALE
    ),
    // apps/v1
    res!(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        Namespaced,
        &["deploy"],
        ALL,
        STATUS_SCALE
    ),
    res!(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        Namespaced,
        &["rs"],
        ALL,
        STATUS_SCALE
    ),
    res!(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        Namespaced,
        &["sts"],
        ALL,
        STATUS_SCALE
    ),
    res!(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        Namespaced,
        &["ds"],
        ALL,
        STATUS
    ),
    res!(
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        Namespaced,
        NONE,
        NONE,
        NONE
    ),
    // batch/v1
    res!("batch", "v1", "Job", "jobs", Namespaced, NONE, ALL, STATUS),
    res!(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        Namespaced,
        &["cj"],
        ALL,
        STATUS
    ),
    // autoscaling: v2 preferred, v1 served from the same storage
    res!(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        Namespaced,
        &["hpa"],
        ALL,
        STATUS
    ),
    res!(
        "autoscaling",
        "v1",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        Namespaced,
        &["hpa"],
        ALL,
        STATUS
    ),
    // policy/v1
    res!(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        Namespaced,
        &["pdb"],
        NONE,
        STATUS
    ),
    // coordination.k8s.io/v1
    res!(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        Namespaced,
        NONE,
        NONE,
        NONE
    ),
    // discovery.k8s.io/v1
    res!(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        Namespaced,
        NONE,
        NONE,
        NONE
    ),
    // events.k8s.io/v1: the same objects as core events
    res!(
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        Namespaced,
        &["ev"],
        NONE,
        NONE,
        CRUD,
        "/events"
    ),
    // networking.k8s.io/v1
    res!(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        Namespaced,
        &["netpol"],
        NONE,
        NONE
    ),
    res!(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        Namespaced,
        &["ing"],
        NONE,
        STATUS
    ),
    res!(
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        Cluster,
        NONE,
        NONE,
        NONE
    ),
    // rbac.authorization.k8s.io/v1
    res!(
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        Namespaced,
        NONE,
        NONE,
        NONE
    ),
    res!(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        Cluster,
        NONE,
        NONE,
        NONE
    ),
    res!(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        Namespaced,
        NONE,
        NONE,
        NONE
    ),
    res!(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        Cluster,
        NONE,
        NONE,
        NONE
    ),
    // storage.k8s.io/v1
    res!(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        Cluster,
        &["sc"],
        NONE,
        NONE
    ),
    res!(
        "storage.k8s.io",
        "v1",
        "CSIDriver",
        "csidrivers",
        Cluster,
        NONE,
        NONE,
        NONE
    ),
    res!(
        "storage.k8s.io",
        "v1",
        "VolumeAttachment",
        "volumeattachments",
        Cluster,
        NONE,
        NONE,
        STATUS
    ),
    // scheduling.k8s.io/v1
    res!(
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        Cluster,
        &["pc"],
        NONE,
        NONE
    ),
    // node.k8s.io/v1
    res!(
        "node.k8s.io",
        "v1",
        "RuntimeClass",
        "runtimeclasses",
        Cluster,
        NONE,
        NONE,
        NONE
    ),
    // certificates.k8s.io/v1
    res!(
        "certificates.k8s.io",
        "v1",
        "CertificateSigningRequest",
        "certificatesigningrequests",
        Cluster,
        &["csr"],
        NONE,
        &["status", "approval"]
    ),
    // authorization.k8s.io/v1 and authentication.k8s.io/v1: reviews, never stored
    res!(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        Cluster,
        NONE,
        NONE,
        NONE,
        CREATE_ONLY,
        ""
    ),
    res!(
        "authorization.k8s.io",
        "v1",
        "SubjectAccessReview",
        "subjectaccessreviews",
        Cluster,
        NONE,
        NONE,
        NONE,
        CREATE_ONLY,
        ""
    ),
    res!(
        "authorization.k8s.io",
        "v1",
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
        Namespaced,
        NONE,
        NONE,
        NONE,
        CREATE_ONLY,
        ""
    ),
    res!(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        Cluster,
        NONE,
        NONE,
        NONE,
        CREATE_ONLY,
        ""
    ),
    res!(
        "authentication.k8s.io",
        "v1",
        "SelfSubjectReview",
        "selfsubjectreviews",
        Cluster,
        NONE,
        NONE,
        NONE,
        CREATE_ONLY,
        ""
    ),
    res!(
        "authentication.k8s.io",
        "v1",
        "TokenReview",
        "tokenreviews",
        Cluster,
        NONE,
        NONE,
        NONE,
        CREATE_ONLY,
        ""
    ),
    // metrics.k8s.io/v1beta1: resource usage from the kubelets, never stored
    res!(
        "metrics.k8s.io",
        "v1beta1",
        "NodeMetrics",
        "nodes",
        Cluster,
        NONE,
        NONE,
        NONE,
        GET_LIST,
        ""
    ),
    res!(
        "metrics.k8s.io",
        "v1beta1",
        "PodMetrics",
        "pods",
        Namespaced,
        NONE,
        NONE,
        NONE,
        GET_LIST,
        ""
    ),
    // admissionregistration.k8s.io/v1
    res!(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        Cluster,
        NONE,
        &["api-extensions"],
        NONE
    ),
    res!(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingAdmissionPolicy",
        "mutatingadmissionpolicies",
        Cluster,
        NONE,
        &["api-extensions"],
        NONE
    ),
    res!(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingAdmissionPolicyBinding",
        "mutatingadmissionpolicybindings",
        Cluster,
        NONE,
        &["api-extensions"],
        NONE
    ),
    res!(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicy",
        "validatingadmissionpolicies",
        Cluster,
        NONE,
        &["api-extensions"],
        STATUS
    ),
    res!(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
        Cluster,
        NONE,
        &["api-extensions"],
        NONE
    ),
    res!(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        Cluster,
        NONE,
        &["api-extensions"],
        NONE
    ),
    // apiextensions.k8s.io/v1
    // apiregistration.k8s.io/v1 (the objects; aggregation itself is not served yet)
    res!(
        "apiregistration.k8s.io",
        "v1",
        "APIService",
        "apiservices",
        Cluster,
        NONE,
        &["api-extensions"],
        STATUS
    ),
    res!(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        Cluster,
        &["crd", "crds"],
        &["api-extensions"],
        STATUS
    ),
];

/// The first served version of `plural` in `group`.
pub fn lookup_any_version(group: &str, plural: &str) -> Option<&'static Resource> {
    BUILTIN
        .iter()
        .find(|r| r.group == group && r.plural == plural)
}

/// The resource `plural` of `group` at `version`.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    BUILTIN
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The groups in discovery order, each with its versions (preferred first).
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    Catalog::default().groups()
}

/// The resources of one group/version.
pub fn resources(group: &str, version: &str) -> impl Iterator<Item = &'static Resource> {
    let group = group.to_string();
    let version = version.to_string();
    BUILTIN
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

/// Every resource a server serves: the built-in ones and those its custom resource
/// definitions add.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    custom: Vec<&'static Resource>,
}

impl Catalog {
    /// The built-in resources and `custom`, whose groups discovery lists after the built-in
    /// ones in name order, each group's versions in Kubernetes' version priority
    /// (`v2` before `v1` before `v1beta1`).
    pub fn with_custom(mut custom: Vec<&'static Resource>) -> Self {
        custom.sort_by(|a, b| {
            a.group
                .cmp(b.group)
                .then_with(|| version_priority(a.version).cmp(&version_priority(b.version)))
                .then_with(|| a.plural.cmp(b.plural))
        });
        Self { custom }
    }

    /// The resources custom resource definitions add.
    pub fn custom(&self) -> &[&'static Resource] {
        &self.custom
    }

    /// Every resource, built-in ones first.
    pub fn all(&self) -> impl Iterator<Item = &'static Resource> + '_ {
        BUILTIN.iter().chain(self.custom.iter().copied())
    }

    /// The resource `plural` of `group` at `version`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
        self.all()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// The preferred version of `plural` in `group`.
    pub fn lookup_any_version(&self, group: &str, plural: &str) -> Option<&'static Resource> {
        self.all().find(|r| r.group == group && r.plural == plural)
    }

    /// The groups in discovery order, each with its versions (preferred first).
    pub fn groups(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
        for r in self.all() {
            match out.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, versions)) => {
                    if !versions.contains(&r.version) {
                        versions.push(r.version);
                    }
                }
                None => out.push((r.group, vec![r.version])),
            }
        }
        out
    }

    /// The resources of one group/version.
    pub fn resources<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'static Resource> + 'a {
        self.all()
            .filter(move |r| r.group == group && r.version == version)
    }
}

/// Sort key of a version in Kubernetes' order: GA before beta before alpha, higher numbers
/// first, versions that do not look like Kubernetes versions last, by name.
pub fn version_priority(v: &str) -> (u8, i64, i64, String) {
    let parse = || -> Option<(u8, i64, i64)> {
        let rest = v.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: i64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((0, -major, 0));
        }
        let (level, num) = if let Some(n) = tail.strip_prefix("beta") {
            (1, n)
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (2, n)
        } else {
            return None;
        };
        let minor: i64 = num.parse().ok()?;
        Some((level, -major, -minor))
    };
    match parse() {
        Some((level, major, minor)) => (level, major, minor, String::new()),
        None => (3, 0, 0, v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_as_kubernetes_sorts_them() {
        let mut v = vec![
            "v1alpha1",
            "foo",
            "v1",
            "v2beta1",
            "v1beta2",
            "v2",
            "v11alpha2",
            "v1beta1",
        ];
        v.sort_by_key(|v| version_priority(v));
        assert_eq!(
            v,
            [
                "v2",
                "v1",
                "v2beta1",
                "v1beta2",
                "v1beta1",
                "v11alpha2",
                "v1alpha1",
                "foo"
            ]
        );
    }

    #[test]
    fn catalog_is_consistent() {
        for r in BUILTIN {
            assert!(!r.verbs.is_empty(), "{}", r.plural);
            assert_eq!(r.plural, r.plural.to_ascii_lowercase());
            // Each (group, version, plural) appears once.
            assert_eq!(
                BUILTIN
                    .iter()
                    .filter(|o| o.group == r.group
                        && o.version == r.version
                        && o.plural == r.plural)
                    .count(),
                1
            );
        }
        assert_eq!(
            lookup("apps", "v1", "deployments").map(|r| r.kind),
            Some("Deployment")
        );
        assert_eq!(
            lookup("", "v1", "pods").map(|r| r.api_version()),
            Some("v1".into())
        );
        let groups = groups();
        assert_eq!(groups[0].0, "");
        let autoscaling = groups
            .iter()
            .find(|(g, _)| *g == "autoscaling")
            .map(|g| g.1.clone());
        assert_eq!(autoscaling, Some(vec!["v2", "v1"]));
        // Both HPA versions share storage; so do the two Event APIs.
        let hpa: Vec<_> = BUILTIN
            .iter()
            .filter(|r| r.plural == "horizontalpodautoscalers")
            .map(|r| r.storage)
            .collect();
        assert!(hpa.windows(2).all(|w| w[0] == w[1]));
        let ev: Vec<_> = BUILTIN
            .iter()
            .filter(|r| r.plural == "events")
            .map(|r| r.storage)
            .collect();
        assert!(ev.windows(2).all(|w| w[0] == w[1]));
    }
}
