//! Leader election through a coordination.k8s.io Lease, the way Kubernetes components elect:
//! the holder renews the Lease; a candidate takes it over once it has gone unrenewed for its
//! duration. Work runs only while this process holds the Lease.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use serde_json::json;
use tug_api::time::{now_micro, rfc3339_micro};

/// How long a Lease holds without renewal.
const DURATION_SECS: i64 = 15;
/// How often the holder renews, and a candidate retries.
const RETRY: Duration = Duration::from_secs(2);

/// Tries once to hold `name` in kube-system as `identity`; true when this process holds it.
async fn try_hold(api: &Api<Lease>, name: &str, identity: &str) -> bool {
    let now = jiff::Timestamp::now();
    match api.get_opt(name).await {
        Ok(None) => {
            let lease: Lease = match serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {"holderIdentity": identity, "leaseDurationSeconds": DURATION_SECS,
                         "acquireTime": now_micro(), "renewTime": now_micro(), "leaseTransitions": 0},
            })) {
                Ok(l) => l,
                Err(_) => return false,
            };
            api.create(&PostParams::default(), &lease).await.is_ok()
        }
        Ok(Some(mut lease)) => {
            let spec = lease.spec.clone().unwrap_or_default();
            let mine = spec.holder_identity.as_deref() == Some(identity);
            let renewed = spec
                .renew_time
                .as_ref()
                .map(|t| t.0.as_second())
                .unwrap_or(0);
            let duration = i64::from(spec.lease_duration_seconds.unwrap_or(DURATION_SECS as i32));
            let expired = now.as_second() - renewed > duration;
            if !mine && !expired {
                return false;
            }
            let mut new_spec = json!({
                "holderIdentity": identity, "leaseDurationSeconds": DURATION_SECS, "renewTime": now_micro(),
                "acquireTime": spec.acquire_time.as_ref().map(|t| rfc3339_micro(t.0)),
                "leaseTransitions": spec.lease_transitions.unwrap_or(0),
            });
            if !mine {
                new_spec["acquireTime"] = json!(now_micro());
                new_spec["leaseTransitions"] = json!(spec.lease_transitions.unwrap_or(0) + 1);
            }
            lease.spec = serde_json::from_value(new_spec).ok();
            // The replace carries the resourceVersion read: two candidates cannot both win.
            api.replace(name, &PostParams::default(), &lease)
                .await
                .is_ok()
        }
        Err(_) => false,
    }
}

/// Runs `work` while this process holds Lease `name`, starting it anew after each takeover and
/// stopping it when the Lease is lost.
pub async fn run_elected<F, Fut>(client: kube::Client, name: &str, identity: &str, work: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let api: Api<Lease> = Api::namespaced(client, "kube-system");
    loop {
        if !try_hold(&api, name, identity).await {
            tokio::time::sleep(RETRY).await;
            continue;
        }
        tracing::info!(lease = name, identity, "became leader");
        let task = tokio::spawn(work());
        loop {
            tokio::time::sleep(RETRY).await;
            if !try_hold(&api, name, identity).await {
                tracing::warn!(lease = name, identity, "lost the lease; stopping");
                task.abort();
                break;
            }
        }
    }
}
