//! Strategies of the core group's kinds with behaviour of their own.

use serde_json::{Value, json};
use tug_api::time::now;
use tug_api::validation::{self, NameRule};
use tug_api::{Cause, defaults, meta};

use super::{Strategy, ZeroStatus};

/// The strategy of core kind `kind`, if it has one of its own.
pub(super) fn of(kind: &str) -> Option<&'static dyn Strategy> {
    static RESOURCE_QUOTA: ZeroStatus = ZeroStatus {
        status: super::empty,
        returns_deleted: false,
    };
    static VOLUME: ZeroStatus = ZeroStatus {
        status: || json!({"phase": "Pending", "lastPhaseTransitionTime": now()}),
        returns_deleted: true,
    };
    Some(match kind {
        "Pod" => &Pod,
        "Namespace" => &Namespace,
        "Service" => &Service,
        "ConfigMap" => &Config { secret: false },
        "Secret" => &Config { secret: true },
        "PersistentVolumeClaim" => &Claim,
        "PersistentVolume" => &VOLUME,
        "ResourceQuota" => &RESOURCE_QUOTA,
        "PodTemplate" => &PodTemplate,
        "ReplicationController" => &ReplicationController,
        "LimitRange" => &LimitRange,
        _ => return None,
    })
}

/// LimitRanges: their items' default limits and requests filled in from max and min.
struct LimitRange;

impl Strategy for LimitRange {
    fn defaults(&self, obj: &mut Value) {
        crate::admission::limit_ranger::default_limit_range(obj);
    }
}

/// Pods: Pending with their QoS class when created; graceful deletion the kubelet confirms.
struct Pod;

impl Strategy for Pod {
    fn defaults(&self, obj: &mut Value) {
        defaults::pod(obj);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        let qos = defaults::qos_class(obj.get("spec").unwrap_or(&Value::Null));
        obj["status"] = json!({"phase": "Pending", "qosClass": qos});
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validation::pod(obj)
    }

    fn returns_deleted_object(&self) -> bool {
        true
    }

    fn graceful(&self) -> bool {
        true
    }
}

/// Namespaces: named by RFC 1123 labels, held by the `kubernetes` finalizer in their spec,
/// Terminating once marked.
struct Namespace;

impl Strategy for Namespace {
    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if obj.pointer("/spec/finalizers").is_none() {
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
        }
        obj["status"] = json!({"phase": "Active"});
        let name = meta::name(obj).to_string();
        let labels = meta::metadata_mut(obj)
            .entry("labels")
            .or_insert_with(|| json!({}));
        if let Value::Object(l) = labels {
            l.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
    }

    fn returns_deleted_object(&self) -> bool {
        true
    }

    fn finalizers(&self, obj: &Value) -> Vec<Value> {
        ["/metadata/finalizers", "/spec/finalizers"]
            .iter()
            .filter_map(|p| obj.pointer(p).and_then(Value::as_array))
            .flatten()
            .cloned()
            .collect()
    }

    fn mark_deleting(&self, obj: &mut Value) {
        obj["status"]["phase"] = json!("Terminating");
    }
}

/// Services: RFC 1035 names, a load-balancer status, a cluster IP that stays.
struct Service;

impl Strategy for Service {
    fn name_rule(&self) -> NameRule {
        NameRule::Dns1035
    }

    fn defaults(&self, obj: &mut Value) {
        defaults::service(obj);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"loadBalancer": {}});
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validation::service(obj)
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<Cause> {
        validation::service_update(old, new)
    }

    fn returns_deleted_object(&self) -> bool {
        true
    }
}

/// ConfigMaps and Secrets: keys that name files, data that an immutable one keeps.
struct Config {
    secret: bool,
}

impl Strategy for Config {
    fn validate_keys(&self, obj: &Value) -> Vec<Cause> {
        let maps: &[&str] = if self.secret {
            &["data", "stringData"]
        } else {
            &["data", "binaryData"]
        };
        let mut causes = Vec::new();
        for m in maps {
            for key in obj[*m].as_object().into_iter().flat_map(|o| o.keys()) {
                // stringData is merged into data before Kubernetes validates it.
                let at = if *m == "stringData" { "data" } else { m };
                causes.extend(validation::validate_config_key(
                    key,
                    &format!("{at}[{key}]"),
                ));
            }
        }
        causes
    }

    fn defaults(&self, obj: &mut Value) {
        if self.secret {
            defaults::secret(obj);
        }
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<Cause> {
        validation::config_update(self.secret, old, new)
    }
}

/// PersistentVolumeClaims: Pending when created.
struct Claim;

impl Strategy for Claim {
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Pending"});
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validation::claim(obj)
    }

    fn returns_deleted_object(&self) -> bool {
        true
    }
}

/// PodTemplates: their template's defaults and checks.
struct PodTemplate;

impl Strategy for PodTemplate {
    fn defaults(&self, obj: &mut Value) {
        defaults::pod_template(obj);
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validation::pod_template(obj)
    }
}

/// ReplicationControllers: no replicas yet when created.
struct ReplicationController;

impl Strategy for ReplicationController {
    fn defaults(&self, obj: &mut Value) {
        defaults::replica_set(obj);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"replicas": 0});
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validation::replication_controller(obj)
    }
}
