//! Fields a JSON body names twice (`{"spec": {"replicas": 1, "replicas": 2}}`): decoding keeps
//! the last, so only the text shows them. Strict field validation refuses them, as
//! kube-apiserver does, by their path (`spec.replicas`, `spec.containers[0].name`).

use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// The paths of the fields `json` names more than once in an object, in the order met; none
/// when it is not JSON.
pub fn duplicate_fields(json: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(json);
    let seed = Finder {
        path: String::new(),
        found: &mut found,
    };
    match seed.deserialize(&mut de) {
        Ok(()) => found,
        Err(_) => Vec::new(),
    }
}

/// Walks one value, noting repeated keys of the objects in it.
struct Finder<'a> {
    path: String,
    found: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for Finder<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Finder<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let found = self.found;
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if !seen.insert(key) {
                found.push(path.clone());
            }
            map.next_value_seed(Finder {
                path,
                found: &mut *found,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let found = self.found;
        let mut i = 0;
        while seq
            .next_element_seed(Finder {
                path: format!("{}[{i}]", self.path),
                found: &mut *found,
            })?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the scan costs per write body: a pod as the scheduler benchmark writes them.
    #[test]
    #[ignore = "a benchmark: run with --ignored --nocapture (in release)"]
    fn scan_cost_per_pod_body() {
        let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-5d8f7c9b4-abcde", "namespace": "plain", "labels": {"app": "web", "pod-template-hash": "5d8f7c9b4"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f7c9b4", "uid": "0b6c6a1e-1f2d-4c3b-9a8e-7d6c5b4a3f21", "controller": true, "blockOwnerDeletion": true}]},
            "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "Always"}],
                "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst", "serviceAccountName": "default",
                "schedulerName": "default-scheduler", "enableServiceLinks": true, "priority": 0, "preemptionPolicy": "PreemptLowerPriority",
                "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]}});
        let body = serde_json::to_vec(&pod).unwrap_or_default();
        let n = 20_000;
        let start = std::time::Instant::now();
        for _ in 0..n {
            assert!(duplicate_fields(&body).is_empty());
        }
        let scan = start.elapsed() / n;
        let start = std::time::Instant::now();
        for _ in 0..n {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            assert!(v.is_object());
        }
        let parse = start.elapsed() / n;
        println!(
            "{} bytes: duplicate scan {scan:?}, a plain parse to Value {parse:?}",
            body.len()
        );
    }

    #[test]
    fn repeated_keys_are_found_by_path() {
        let body = br#"{"kind": "Deployment", "spec": {"replicas": 1, "replicas": 2,
            "template": {"spec": {"containers": [{"name": "a"}, {"name": "b", "name": "c"}]}}},
            "kind": "Deployment"}"#;
        assert_eq!(
            duplicate_fields(body),
            [
                "spec.replicas",
                "spec.template.spec.containers[1].name",
                "kind"
            ]
        );
        assert!(duplicate_fields(br#"{"a": {"b": 1}, "c": {"b": 2}}"#).is_empty());
        assert!(duplicate_fields(b"a: 1\na: 2\n").is_empty());
    }
}
