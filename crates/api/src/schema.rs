//! Object schemas, generated from the k8s-openapi types: the OpenAPI v3 components of each
//! group-version (with the `x-kubernetes-*` extensions clients rely on), and the unknown-field
//! check behind `fieldValidation`.

use std::collections::HashMap;
use std::sync::OnceLock;

use k8s_openapi::api;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

macro_rules! kinds {
    ($($g:literal $v:literal $k:literal => $t:ty,)*) => {
        /// Registers the schema of (group, version, kind) with `generator`; returns its component name.
        fn register(generator: &mut SchemaGenerator, group: &str, version: &str, kind: &str) -> Option<String> {
            let schema = match (group, version, kind) {
                $(($g, $v, $k) => generator.subschema_for::<$t>(),)*
                _ => return None,
            };
            schema
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.rsplit('/').next())
                .map(str::to_string)
        }
    };
}

kinds! {
    "" "v1" "Namespace" => api::core::v1::Namespace,
    "" "v1" "Pod" => api::core::v1::Pod,
    "" "v1" "Service" => api::core::v1::Service,
    "" "v1" "Endpoints" => api::core::v1::Endpoints,
    "" "v1" "ConfigMap" => api::core::v1::ConfigMap,
    "" "v1" "Secret" => api::core::v1::Secret,
    "" "v1" "ServiceAccount" => api::core::v1::ServiceAccount,
    "" "v1" "Node" => api::core::v1::Node,
    "" "v1" "Event" => api::core::v1::Event,
    "" "v1" "PersistentVolume" => api::core::v1::PersistentVolume,
    "" "v1" "PersistentVolumeClaim" => api::core::v1::PersistentVolumeClaim,
    "" "v1" "ResourceQuota" => api::core::v1::ResourceQuota,
    "" "v1" "LimitRange" => api::core::v1::LimitRange,
    "" "v1" "PodTemplate" => api::core::v1::PodTemplate,
    "" "v1" "ReplicationController" => api::core::v1::ReplicationController,
    "apps" "v1" "Deployment" => api::apps::v1::Deployment,
    "apps" "v1" "ReplicaSet" => api::apps::v1::ReplicaSet,
    "apps" "v1" "StatefulSet" => api::apps::v1::StatefulSet,
    "apps" "v1" "DaemonSet" => api::apps::v1::DaemonSet,
    "apps" "v1" "ControllerRevision" => api::apps::v1::ControllerRevision,
    "batch" "v1" "Job" => api::batch::v1::Job,
    "batch" "v1" "CronJob" => api::batch::v1::CronJob,
    "autoscaling" "v2" "HorizontalPodAutoscaler" => api::autoscaling::v2::HorizontalPodAutoscaler,
    "autoscaling" "v1" "HorizontalPodAutoscaler" => api::autoscaling::v1::HorizontalPodAutoscaler,
    "policy" "v1" "PodDisruptionBudget" => api::policy::v1::PodDisruptionBudget,
    "coordination.k8s.io" "v1" "Lease" => api::coordination::v1::Lease,
    "discovery.k8s.io" "v1" "EndpointSlice" => api::discovery::v1::EndpointSlice,
    "events.k8s.io" "v1" "Event" => api::events::v1::Event,
    "networking.k8s.io" "v1" "NetworkPolicy" => api::networking::v1::NetworkPolicy,
    "networking.k8s.io" "v1" "Ingress" => api::networking::v1::Ingress,
    "networking.k8s.io" "v1" "IngressClass" => api::networking::v1::IngressClass,
    "rbac.authorization.k8s.io" "v1" "Role" => api::rbac::v1::Role,
    "rbac.authorization.k8s.io" "v1" "ClusterRole" => api::rbac::v1::ClusterRole,
    "rbac.authorization.k8s.io" "v1" "RoleBinding" => api::rbac::v1::RoleBinding,
    "rbac.authorization.k8s.io" "v1" "ClusterRoleBinding" => api::rbac::v1::ClusterRoleBinding,
    "storage.k8s.io" "v1" "StorageClass" => api::storage::v1::StorageClass,
    "storage.k8s.io" "v1" "CSIDriver" => api::storage::v1::CSIDriver,
    "storage.k8s.io" "v1" "VolumeAttachment" => api::storage::v1::VolumeAttachment,
    "scheduling.k8s.io" "v1" "PriorityClass" => api::scheduling::v1::PriorityClass,
    "node.k8s.io" "v1" "RuntimeClass" => api::node::v1::RuntimeClass,
    "certificates.k8s.io" "v1" "CertificateSigningRequest" => api::certificates::v1::CertificateSigningRequest,
    "authorization.k8s.io" "v1" "SelfSubjectAccessReview" => api::authorization::v1::SelfSubjectAccessReview,
    "authorization.k8s.io" "v1" "SubjectAccessReview" => api::authorization::v1::SubjectAccessReview,
    "authorization.k8s.io" "v1" "LocalSubjectAccessReview" => api::authorization::v1::LocalSubjectAccessReview,
    "authorization.k8s.io" "v1" "SelfSubjectRulesReview" => api::authorization::v1::SelfSubjectRulesReview,
    "authentication.k8s.io" "v1" "SelfSubjectReview" => api::authentication::v1::SelfSubjectReview,
    "authentication.k8s.io" "v1" "TokenReview" => api::authentication::v1::TokenReview,
    "apiextensions.k8s.io" "v1" "CustomResourceDefinition" => apiextensions::CustomResourceDefinition,
    "apiregistration.k8s.io" "v1" "APIService" => apiregistration::APIService,
}

/// The schemas of the kinds that subresources take and give (TokenRequest, Binding, Eviction,
/// Scale), which no group-version's components include; the protobuf decoder needs their
/// JSON field names.
pub fn subresource_components() -> &'static Map<String, Value> {
    static CACHE: OnceLock<Map<String, Value>> = OnceLock::new();
    CACHE.get_or_init(|| {
        let mut generator = SchemaSettings::openapi3().into_generator();
        generator.subschema_for::<api::authentication::v1::TokenRequest>();
        generator.subschema_for::<api::core::v1::Binding>();
        generator.subschema_for::<api::policy::v1::Eviction>();
        generator.subschema_for::<api::autoscaling::v1::Scale>();
        generator.take_definitions(true)
    })
}

/// List fields that merge by key, per (schema, property): the `x-kubernetes-patch-merge-key`.
const MERGE_KEYS: &[(&str, &str, &str)] = &[
    ("io.k8s.api.core.v1.PodSpec", "containers", "name"),
    ("io.k8s.api.core.v1.PodSpec", "initContainers", "name"),
    ("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", "name"),
    ("io.k8s.api.core.v1.PodSpec", "volumes", "name"),
    ("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", "name"),
    ("io.k8s.api.core.v1.PodSpec", "hostAliases", "ip"),
    (
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        "topologyKey",
    ),
    ("io.k8s.api.core.v1.Container", "env", "name"),
    ("io.k8s.api.core.v1.Container", "ports", "containerPort"),
    ("io.k8s.api.core.v1.Container", "volumeMounts", "mountPath"),
    (
        "io.k8s.api.core.v1.Container",
        "volumeDevices",
        "devicePath",
    ),
    ("io.k8s.api.core.v1.ServiceSpec", "ports", "port"),
    ("io.k8s.api.core.v1.ServiceAccount", "secrets", "name"),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        "uid",
    ),
];

/// The components of one group-version: every schema its kinds use, top-level kinds tagged
/// with `x-kubernetes-group-version-kind`.
pub fn components(group: &str, version: &str) -> &'static Map<String, Value> {
    static CACHE: OnceLock<HashMap<(String, String), Map<String, Value>>> = OnceLock::new();
    static EMPTY: OnceLock<Map<String, Value>> = OnceLock::new();
    let all = CACHE.get_or_init(|| {
        let mut out = HashMap::new();
        for (g, versions) in crate::catalog::groups() {
            for v in versions {
                out.insert((g.to_string(), v.to_string()), build(g, v));
            }
        }
        out
    });
    all.get(&(group.to_string(), version.to_string()))
        .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

fn build(group: &str, version: &str) -> Map<String, Value> {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut kinds = Vec::new();
    for r in crate::catalog::resources(group, version) {
        if let Some(name) = register(&mut generator, group, version, r.kind) {
            kinds.push((name, r.kind));
        }
    }
    let mut defs = generator.take_definitions(true);
    for (name, kind) in kinds {
        if let Some(Value::Object(s)) = defs.get_mut(&name) {
            s.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": group, "version": version, "kind": kind}]),
            );
        }
    }
    for (schema, prop, key) in MERGE_KEYS {
        if let Some(Value::Object(p)) = defs
            .get_mut(*schema)
            .and_then(|s| s.get_mut("properties"))
            .and_then(|p| p.get_mut(*prop))
        {
            p.insert("x-kubernetes-patch-merge-key".into(), json!(key));
            p.insert("x-kubernetes-patch-strategy".into(), json!("merge"));
            // The same lists are associative for server-side apply.
            p.insert("x-kubernetes-list-type".into(), json!("map"));
            p.insert("x-kubernetes-list-map-keys".into(), json!([key]));
        }
    }
    defs
}

/// The component name of a kind's schema in its group-version.
pub fn kind_schema(group: &str, version: &str, kind: &str) -> Option<String> {
    components(group, version).iter().find_map(|(name, s)| {
        let gvk = s.get("x-kubernetes-group-version-kind")?.as_array()?;
        gvk.iter()
            .any(|e| e["group"] == group && e["version"] == version && e["kind"] == kind)
            .then(|| name.clone())
    })
}

/// The schemas a value must satisfy: the schema itself, its `$ref` target and the members of
/// `allOf`, flattened.
fn resolve<'a>(
    schema: &'a Value,
    defs: &'a Map<String, Value>,
    out: &mut Vec<&'a Value>,
    depth: usize,
) {
    if depth > 32 {
        return;
    }
    if let Some(r) = schema.get("$ref").and_then(Value::as_str)
        && let Some(target) = r.rsplit('/').next().and_then(|n| defs.get(n))
    {
        resolve(target, defs, out, depth + 1);
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            resolve(s, defs, out, depth + 1);
        }
    }
    out.push(schema);
}

/// What decoding a body into its kind's typed object finds.
#[derive(Debug, Default)]
pub struct Findings {
    /// Fields the kind does not have, as `spec.template.foo` paths.
    pub unknown: Vec<String>,
    /// The first quantity that does not parse: decoding fails with this error.
    pub bad_quantity: Option<&'static str>,
}

/// Finds the fields of `obj` its schema does not know, as `spec.template.foo` paths; with
/// `prune`, removes them (as decoding into the typed object would).
pub fn unknown_fields(
    group: &str,
    version: &str,
    kind: &str,
    obj: &mut Value,
    prune: bool,
) -> Vec<String> {
    inspect(group, version, kind, obj, prune).unknown
}

/// Reads `obj` against its kind's schema as decoding it would: fields the kind does not have
/// (removed with `prune`), and quantities that do not parse.
pub fn inspect(group: &str, version: &str, kind: &str, obj: &mut Value, prune: bool) -> Findings {
    let defs = components(group, version);
    let mut found = Findings::default();
    let Some(root) = kind_schema(group, version, kind).and_then(|name| defs.get(&name)) else {
        return found;
    };
    walk(root, defs, obj, String::new(), prune, &mut found);
    found
}

/// The component name of resource quantities.
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

fn walk(
    schema: &Value,
    defs: &Map<String, Value>,
    obj: &mut Value,
    path: String,
    prune: bool,
    found: &mut Findings,
) {
    if found.bad_quantity.is_none()
        && let Value::String(q) = obj
        && schema
            .get("$ref")
            .and_then(Value::as_str)
            .is_some_and(|r| r.ends_with(QUANTITY))
    {
        found.bad_quantity = crate::quantity::check(q).err();
    }
    let mut schemas = Vec::new();
    resolve(schema, defs, &mut schemas, 0);
    if schemas
        .iter()
        .any(|s| s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)))
    {
        return;
    }
    match obj {
        Value::Object(map) => {
            let props: Vec<&Map<String, Value>> = schemas
                .iter()
                .filter_map(|s| s.get("properties").and_then(Value::as_object))
                .collect();
            let additional = schemas.iter().find_map(|s| s.get("additionalProperties"));
            if props.is_empty() && additional.is_none() {
                return; // a free-form object, or a type encoded as an object we don't model
            }
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if k.starts_with('$') {
                    continue; // strategic merge patch directives
                }
                let child_path = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                let sub = props.iter().find_map(|p| p.get(&k)).or(match additional {
                    Some(Value::Object(_)) => additional,
                    _ => None,
                });
                match sub {
                    Some(sub) => {
                        if let Some(v) = map.get_mut(&k) {
                            walk(sub, defs, v, child_path, prune, found);
                        }
                    }
                    None if additional == Some(&Value::Bool(true)) => {}
                    None => {
                        found.unknown.push(child_path);
                        if prune {
                            map.remove(&k);
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schemas.iter().find_map(|s| s.get("items")) {
                for (i, v) in items.iter_mut().enumerate() {
                    walk(item_schema, defs, v, format!("{path}[{i}]"), prune, found);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_carry_kinds_and_merge_keys() {
        let apps = components("apps", "v1");
        let name = kind_schema("apps", "v1", "Deployment").expect("Deployment schema");
        assert_eq!(name, "io.k8s.api.apps.v1.Deployment");
        assert!(apps.contains_key("io.k8s.api.core.v1.PodSpec"));
        assert_eq!(
            apps["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]["x-kubernetes-patch-merge-key"],
            "name"
        );
        assert_eq!(
            apps["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]["x-kubernetes-list-map-keys"],
            json!(["name"])
        );
        assert!(
            apps["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["replicas"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("Number of desired pods"))
        );
    }

    #[test]
    fn unknown_fields_are_found_and_pruned() {
        let mut d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "x", "labels": {"a": "b"}, "bogus": 1},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}}, "extra": true,
                     "template": {"metadata": {"labels": {"a": "b"}},
                                  "spec": {"containers": [{"name": "c", "image": "i", "imagePolicy": "x",
                                           "resources": {"limits": {"cpu": "1"}}}]}}}
        });
        let found = unknown_fields("apps", "v1", "Deployment", &mut d, true);
        assert_eq!(
            found,
            vec![
                "metadata.bogus",
                "spec.extra",
                "spec.template.spec.containers[0].imagePolicy"
            ]
        );
        assert!(d["spec"].get("extra").is_none());
        assert_eq!(
            d["metadata"]["labels"]["a"], "b",
            "maps of strings are kept"
        );
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"],
            "1"
        );
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "v"}});
        assert!(unknown_fields("", "v1", "ConfigMap", &mut cm, false).is_empty());
    }

    #[test]
    fn quantities_that_do_not_parse_are_found() {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
            "spec": {"containers": [{"name": "c", "image": "i",
                "resources": {"limits": {"cpu": "1", "memory": "lots"}}}]}});
        let found = inspect("", "v1", "Pod", &mut pod, false);
        assert_eq!(
            found
                .bad_quantity
                .map(|e| e.starts_with("quantities must match")),
            Some(true)
        );
        let mut ok = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
            "spec": {"containers": [{"name": "c", "image": "i",
                "resources": {"limits": {"cpu": 1, "memory": "64Mi"}}}]}});
        assert_eq!(inspect("", "v1", "Pod", &mut ok, false).bad_quantity, None);
    }
}
