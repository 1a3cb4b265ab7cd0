//! Images for a pod's containers: the pull policy, credentials from imagePullSecrets, and the
//! back-off after failed pulls (ErrImagePull, then ImagePullBackOff).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kube::api::Api;
use tug_runtime::Image;
use tug_runtime::image::pull::Credentials;

/// The pull policy of a container: as given, else Always for `:latest` (or no tag), else
/// IfNotPresent.
pub fn policy(c: &Container) -> String {
    let image = c.image.clone().unwrap_or_default();
    c.image_pull_policy.clone().unwrap_or_else(|| {
        let last = image.rsplit('/').next().unwrap_or_default();
        if image.contains('@') {
            "IfNotPresent".into()
        } else if !last.contains(':') || last.ends_with(":latest") {
            "Always".into()
        } else {
            "IfNotPresent".into()
        }
    })
}

/// Whether a registry key of a docker config (`https://host/v1/`, `host`, ...) names `registry`.
fn matches_registry(key: &str, registry: &str) -> bool {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    host == registry
        || (registry == "docker.io"
            && matches!(
                host,
                "index.docker.io" | "registry-1.docker.io" | "docker.io"
            ))
}

/// Credentials for `registry` from the pod's imagePullSecrets (dockerconfigjson or dockercfg).
pub async fn credentials(client: &kube::Client, pod: &Pod, registry: &str) -> Option<Credentials> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let refs = pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.clone())
        .unwrap_or_default();
    for r in refs {
        let Ok(Some(secret)) = secrets.get_opt(&r.name).await else {
            tracing::warn!(secret = %r.name, "an imagePullSecret is missing");
            continue;
        };
        let data = secret.data.unwrap_or_default();
        let auths = if let Some(b) = data.get(".dockerconfigjson") {
            serde_json::from_slice::<serde_json::Value>(&b.0)
                .ok()
                .and_then(|v| v.get("auths").cloned())
        } else {
            data.get(".dockercfg")
                .and_then(|b| serde_json::from_slice(&b.0).ok())
        };
        let Some(serde_json::Value::Object(auths)) = auths else {
            continue;
        };
        for (key, entry) in auths {
            if !matches_registry(&key, registry) {
                continue;
            }
            let (mut user, mut pass) = (
                entry["username"].as_str().unwrap_or_default().to_string(),
                entry["password"].as_str().unwrap_or_default().to_string(),
            );
            if user.is_empty()
                && let Some(auth) = entry["auth"].as_str()
                && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(auth)
                && let Some((u, p)) = String::from_utf8_lossy(&decoded).split_once(':')
            {
                (user, pass) = (u.to_string(), p.to_string());
            }
            return Some(Credentials {
                username: user,
                password: pass,
            });
        }
    }
    None
}

/// Failed pulls by image: when the next attempt may start and the delay that led there.
#[derive(Default)]
pub struct PullBackoff {
    next: HashMap<String, (Instant, Duration)>,
}

/// The outcome of making sure a container's image is there.
pub enum Ensure {
    Ready(Image),
    /// Not now: the waiting reason and message.
    Waiting(&'static str, String),
}

impl PullBackoff {
    /// Finds or pulls the image of `c` as its pull policy says; `events` hears about pulls.
    pub async fn ensure(
        &mut self,
        shared: &crate::worker::Shared,
        pod: &Pod,
        c: &Container,
        events: &(dyn Fn(&'static str, &str, &str) + Send + Sync),
    ) -> Ensure {
        let name = c.image.clone().unwrap_or_default();
        let policy = policy(c);
        let present = shared.runtime.find_image(&name);
        match (present, policy.as_str()) {
            (Some(i), "Never" | "IfNotPresent") => {
                events(
                    "Normal",
                    "Pulled",
                    &format!("Container image \"{name}\" already present on machine"),
                );
                return Ensure::Ready(i);
            }
            (None, "Never") => {
                let msg =
                    format!("Container image \"{name}\" is not present with pull policy of Never");
                events("Warning", "ErrImageNeverPull", &msg);
                return Ensure::Waiting("ErrImageNeverPull", msg);
            }
            _ => {}
        }
        if let Some((until, _)) = self.next.get(&name)
            && Instant::now() < *until
        {
            return Ensure::Waiting(
                "ImagePullBackOff",
                format!("Back-off pulling image \"{name}\""),
            );
        }
        let registry = tug_runtime::Reference::parse(&name)
            .map(|r| r.registry)
            .unwrap_or_default();
        let creds = credentials(&shared.client, pod, &registry).await;
        events("Normal", "Pulling", &format!("Pulling image \"{name}\""));
        let started = Instant::now();
        let pulled = shared
            .runtime
            .pull_image(&name, creds, &shared.config.insecure_registries)
            .await;
        match pulled {
            Ok(image) => {
                self.next.remove(&name);
                events(
                    "Normal",
                    "Pulled",
                    &format!(
                        "Successfully pulled image \"{name}\" in {:.3}s",
                        started.elapsed().as_secs_f64()
                    ),
                );
                Ensure::Ready(image)
            }
            Err(e) => {
                let delay = match self.next.get(&name) {
                    Some((_, d)) => (*d * 2).min(Duration::from_secs(300)),
                    None => Duration::from_secs(10),
                };
                self.next
                    .insert(name.clone(), (Instant::now() + delay, delay));
                let msg = format!("Failed to pull image \"{name}\": {e}");
                events("Warning", "Failed", &msg);
                Ensure::Waiting("ErrImagePull", msg)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_keys_match_hosts() {
        assert!(matches_registry("https://index.docker.io/v1/", "docker.io"));
        assert!(matches_registry("127.0.0.1:5000", "127.0.0.1:5000"));
        assert!(matches_registry("http://127.0.0.1:5000/", "127.0.0.1:5000"));
        assert!(!matches_registry("other:5000", "127.0.0.1:5000"));
    }

    #[test]
    fn latest_or_untagged_images_are_always_pulled() {
        let c = |image: &str| Container {
            image: Some(image.into()),
            ..Default::default()
        };
        assert_eq!(policy(&c("busybox")), "Always");
        assert_eq!(policy(&c("busybox:latest")), "Always");
        assert_eq!(policy(&c("127.0.0.1:5000/busybox")), "Always");
        assert_eq!(policy(&c("127.0.0.1:5000/busybox:1")), "IfNotPresent");
    }
}
