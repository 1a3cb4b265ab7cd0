//! Finishing a graceful pod deletion: once the node has stopped a pod marked for deletion,
//! the kubelet deletes it for good (grace period 0, on the pod's UID), as Kubernetes' does.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Preconditions};

/// Attempts at the final delete before leaving it to the next event about the pod.
const ATTEMPTS: u32 = 5;

/// Deletes `pod` for good; a pod already gone, or replaced by another of the same name, is
/// left alone.
pub async fn confirm(client: &kube::Client, pod: &Pod) {
    let (Some(name), Some(uid)) = (pod.metadata.name.as_deref(), pod.metadata.uid.clone()) else {
        return;
    };
    let api: Api<Pod> = Api::namespaced(
        client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    );
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..Default::default()
    };
    for attempt in 0..ATTEMPTS {
        match api.delete(name, &params).await {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return,
            Err(e) => {
                tracing::warn!(pod = name, error = %e, attempt, "confirming a pod's deletion failed");
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
        }
    }
}
