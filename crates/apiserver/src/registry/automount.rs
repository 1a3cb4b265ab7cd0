//! ServiceAccount admission, as Kubernetes' plugin does it at pod create: the pod's service
//! account must exist; unless automounting is turned off (on the pod, or else on the service
//! account) every container gets a `kube-api-access-*` projected volume at
//! `/var/run/secrets/kubernetes.io/serviceaccount` holding a bound token, the cluster CA and
//! the namespace; and a pod without imagePullSecrets gets the service account's.

use std::time::Duration;

use serde_json::{Value, json};
use tug_api::{ApiError, catalog, meta};

use super::Registry;

/// Where containers find their service account credentials.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The prefix of the generated volume's name.
const VOLUME_PREFIX: &str = "kube-api-access-";
/// The lifetime the kubelet asks for the mounted token (Kubernetes' 1 h plus 7 s).
const TOKEN_EXPIRATION: i64 = 3607;
/// Looks for a namespace's `default` service account, which its controller may not have made
/// yet when the namespace is new: attempts and the pause between them.
const DEFAULT_SA_ATTEMPTS: u32 = 10;
const DEFAULT_SA_PAUSE: Duration = Duration::from_millis(150);

/// The projected volume Kubernetes adds: token, `ca.crt` from the namespace's
/// `kube-root-ca.crt` ConfigMap, and the namespace.
fn api_access_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    })
}

/// A random suffix from the alphabet Kubernetes' generated names use.
fn suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

impl Registry {
    /// Applies ServiceAccount admission to a pod being created in `ns`.
    pub(super) async fn admit_service_account(
        &self,
        ns: &str,
        pod: &mut Value,
    ) -> Result<(), ApiError> {
        let mirror = pod
            .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
            .is_some();
        if mirror {
            return Ok(());
        }
        let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        let name = spec
            .get("serviceAccountName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .or_else(|| spec.get("serviceAccount").and_then(Value::as_str))
            .filter(|n| !n.is_empty())
            .unwrap_or("default")
            .to_string();
        spec.insert("serviceAccountName".into(), json!(name));
        spec.insert("serviceAccount".into(), json!(name));
        let sa = self.service_account(ns, &name).await?.ok_or_else(|| {
            ApiError::forbidden(format!(
                "pods \"{}\" is forbidden: error looking up service account {ns}/{name}: serviceaccount \"{name}\" not found",
                meta::name(pod)
            ))
        })?;
        let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        let no_pull_secrets = spec
            .get("imagePullSecrets")
            .and_then(Value::as_array)
            .is_none_or(|s| s.is_empty());
        if no_pull_secrets
            && let Some(secrets) = sa
                .get("imagePullSecrets")
                .and_then(Value::as_array)
                .filter(|s| !s.is_empty())
        {
            spec.insert("imagePullSecrets".into(), json!(secrets));
        }
        let automount = spec
            .get("automountServiceAccountToken")
            .and_then(Value::as_bool)
            .or_else(|| {
                sa.get("automountServiceAccountToken")
                    .and_then(Value::as_bool)
            })
            .unwrap_or(true);
        if automount {
            mount_api_access(spec);
        }
        Ok(())
    }

    /// The service account, waiting a little for a `default` one its controller is about to
    /// create.
    async fn service_account(&self, ns: &str, name: &str) -> Result<Option<Value>, ApiError> {
        let r = catalog::lookup("", "v1", "serviceaccounts")
            .ok_or_else(|| ApiError::internal("serviceaccounts missing from the catalog"))?;
        let attempts = if name == "default" {
            DEFAULT_SA_ATTEMPTS
        } else {
            1
        };
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(DEFAULT_SA_PAUSE).await;
            }
            if let Some((sa, _)) = self.current(r, Some(ns), name).await? {
                return Ok(Some(sa));
            }
        }
        Ok(None)
    }
}

/// Adds the API access volume, and mounts it in every (init) container that has nothing at
/// the token path yet.
fn mount_api_access(spec: &mut serde_json::Map<String, Value>) {
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .find(|n| n.starts_with(VOLUME_PREFIX))
        .map(str::to_string);
    let volume = existing
        .clone()
        .unwrap_or_else(|| format!("{VOLUME_PREFIX}{}", suffix()));
    let mut needed = false;
    for list in ["initContainers", "containers"] {
        let Some(Value::Array(containers)) = spec.get_mut(list) else {
            continue;
        };
        for c in containers.iter_mut().filter_map(Value::as_object_mut) {
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            let Value::Array(mounts) = mounts else {
                continue;
            };
            if mounts.iter().any(|m| m["mountPath"] == TOKEN_MOUNT_PATH) {
                continue;
            }
            mounts.push(json!({"name": volume, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH}));
            needed = true;
        }
    }
    if needed && existing.is_none() {
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        if let Value::Array(v) = volumes {
            v.push(api_access_volume(&volume));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_container_mounts_one_generated_volume() {
        let mut pod = json!({"containers": [
            {"name": "a"},
            {"name": "b", "volumeMounts": [{"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]},
        ], "initContainers": [{"name": "i", "volumeMounts": []}]});
        let spec = pod.as_object_mut().unwrap();
        mount_api_access(spec);
        let volumes = spec["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 1);
        let name = volumes[0]["name"].as_str().unwrap();
        assert!(name.starts_with(VOLUME_PREFIX) && name.len() == VOLUME_PREFIX.len() + 5);
        assert_eq!(spec["containers"][0]["volumeMounts"][0]["name"], name);
        assert_eq!(spec["containers"][1]["volumeMounts"][0]["name"], "mine");
        assert_eq!(
            spec["containers"][1]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(spec["initContainers"][0]["volumeMounts"][0]["name"], name);
    }

    #[test]
    fn nothing_is_added_when_every_container_has_its_own_mount() {
        let mut pod = json!({"containers": [
            {"name": "b", "volumeMounts": [{"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]},
        ]});
        let spec = pod.as_object_mut().unwrap();
        mount_api_access(spec);
        assert!(spec.get("volumes").is_none());
    }
}
