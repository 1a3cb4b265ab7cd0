//! Leader election through a coordination.k8s.io Lease, the way client-go's leaderelection
//! package elects: the holder renews the Lease every retry period and gives up leadership when
//! it has not managed to renew within the renew deadline; a candidate takes the Lease over once
//! it has seen the record unchanged for the lease duration (measured on its own clock, so
//! clock skew between servers does not matter), or at once when the holder released it on
//! shutdown (an empty holderIdentity). Work runs only while this process holds the Lease.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;
use tug_api::time::{now_micro, rfc3339_micro};

/// The timing of an election, as kube-controller-manager's and kube-scheduler's
/// `--leader-elect-lease-duration`, `--leader-elect-renew-deadline` and
/// `--leader-elect-retry-period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long candidates wait after the last observed renewal before taking over.
    pub lease_duration: Duration,
    /// How long the holder keeps trying to renew before it stops leading.
    pub renew_deadline: Duration,
    /// How often the holder renews and candidates try.
    pub retry_period: Duration,
}

impl Default for Timing {
    /// Kubernetes' defaults: 15 s, 10 s, 2 s.
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// client-go's JitterFactor: the renew deadline must leave room for a jittered retry.
const JITTER_FACTOR: f64 = 1.2;

impl Timing {
    /// Checks the timing as client-go's NewLeaderElector does, with its messages.
    pub fn validate(&self) -> Result<(), String> {
        if self.lease_duration <= self.renew_deadline {
            return Err("leaseDuration must be greater than renewDeadline".into());
        }
        if self.renew_deadline.as_secs_f64() <= JITTER_FACTOR * self.retry_period.as_secs_f64() {
            return Err(format!(
                "renewDeadline must be greater than retryPeriod*JitterFactor({JITTER_FACTOR})"
            ));
        }
        if self.lease_duration.is_zero() {
            return Err("leaseDuration must be greater than zero".into());
        }
        if self.renew_deadline.is_zero() {
            return Err("renewDeadline must be greater than zero".into());
        }
        if self.retry_period.is_zero() {
            return Err("retryPeriod must be greater than zero".into());
        }
        Ok(())
    }

    /// The Lease's `leaseDurationSeconds`: whole seconds, at least one.
    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }
}

/// What a candidate last saw of the Lease, and when (on its own clock).
struct Observed {
    /// holderIdentity and renewTime as read: a change of either is a renewal.
    record: (String, String),
    at: Instant,
    /// The holder's leaseDurationSeconds.
    duration: Duration,
}

/// One elector: `identity` competing for Lease `name` in kube-system.
struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    observed: Option<Observed>,
}

impl Elector {
    /// Tries once to acquire or renew the Lease; true when this process holds it afterwards.
    async fn try_hold(&mut self) -> bool {
        let lease = match self.api.get_opt(&self.name).await {
            Ok(lease) => lease,
            Err(e) => {
                tracing::debug!(lease = %self.name, error = %e, "reading the lease failed");
                return false;
            }
        };
        let Some(mut lease) = lease else {
            let fresh: Lease = match serde_json::from_value(json!({
                "metadata": {"name": self.name},
                "spec": {"holderIdentity": self.identity,
                         "leaseDurationSeconds": self.timing.duration_seconds(),
                         "acquireTime": now_micro(), "renewTime": now_micro(),
                         "leaseTransitions": 0},
            })) {
                Ok(l) => l,
                Err(_) => return false,
            };
            return self
                .api
                .create(&PostParams::default(), &fresh)
                .await
                .is_ok();
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let record = (
            holder.clone(),
            spec.renew_time
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
        );
        let now = Instant::now();
        if self.observed.as_ref().is_none_or(|o| o.record != record) {
            self.observed = Some(Observed {
                record,
                at: now,
                duration: Duration::from_secs(
                    u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0),
                ),
            });
        }
        let mine = holder == self.identity;
        let valid = self
            .observed
            .as_ref()
            .is_some_and(|o| now.duration_since(o.at) < o.duration);
        if !mine && !holder.is_empty() && valid {
            return false;
        }
        let mut new_spec = json!({
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.timing.duration_seconds(),
            "renewTime": now_micro(),
            "acquireTime": spec.acquire_time.as_ref().map(|t| rfc3339_micro(t.0)),
            "leaseTransitions": spec.lease_transitions.unwrap_or(0),
        });
        if !mine {
            new_spec["acquireTime"] = json!(now_micro());
            new_spec["leaseTransitions"] = json!(spec.lease_transitions.unwrap_or(0) + 1);
        }
        lease.spec = serde_json::from_value(new_spec).ok();
        // The replace carries the resourceVersion read: two candidates cannot both win.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                self.observed = None;
                true
            }
            Err(_) => false,
        }
    }

    /// Gives the Lease up (holderIdentity emptied), as client-go's ReleaseOnCancel does, so
    /// that a candidate takes over at its next try instead of after the lease duration.
    async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.name, "released the lease"),
            Err(e) => tracing::warn!(lease = %self.name, error = %e, "releasing the lease failed"),
        }
    }
}

/// Runs `work` while this process holds Lease `name` in kube-system, starting it anew after
/// each takeover and stopping it when the Lease is lost or could not be renewed within the
/// renew deadline. When `shutdown` turns true, the work stops and a held Lease is released.
pub async fn run_elected<F, Fut>(
    client: kube::Client,
    name: &str,
    identity: &str,
    timing: Timing,
    mut shutdown: watch::Receiver<bool>,
    work: F,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut elector = Elector {
        api: Api::namespaced(client, "kube-system"),
        name: name.to_string(),
        identity: identity.to_string(),
        timing,
        observed: None,
    };
    loop {
        if *shutdown.borrow() {
            return;
        }
        if !elector.try_hold().await {
            tokio::select! {
                _ = tokio::time::sleep(timing.retry_period) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        tracing::info!(lease = name, identity, "became leader");
        let task = tokio::spawn(work());
        let mut renewed = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(timing.retry_period) => {}
                _ = shutdown.changed() => {
                    task.abort();
                    elector.release().await;
                    return;
                }
            }
            let attempt = tokio::time::timeout(
                timing.renew_deadline.saturating_sub(renewed.elapsed()),
                elector.try_hold(),
            )
            .await;
            if attempt == Ok(true) {
                renewed = Instant::now();
                continue;
            }
            if renewed.elapsed() >= timing.renew_deadline {
                tracing::warn!(
                    lease = name,
                    identity,
                    deadline = ?timing.renew_deadline,
                    "failed to renew the lease within the renew deadline; stopping"
                );
                task.abort();
                break;
            }
            if attempt == Ok(false)
                && elector
                    .observed
                    .as_ref()
                    .is_some_and(|o| o.record.0 != identity)
            {
                tracing::warn!(
                    lease = name,
                    identity,
                    "another process holds the lease; stopping"
                );
                task.abort();
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_is_validated_as_client_go_validates_it() {
        assert_eq!(Timing::default().validate(), Ok(()));
        let s = Duration::from_secs;
        let bad = |l, d, r| {
            Timing {
                lease_duration: s(l),
                renew_deadline: s(d),
                retry_period: s(r),
            }
            .validate()
            .unwrap_err()
        };
        assert_eq!(
            bad(10, 10, 2),
            "leaseDuration must be greater than renewDeadline"
        );
        assert_eq!(
            bad(15, 6, 5),
            "renewDeadline must be greater than retryPeriod*JitterFactor(1.2)"
        );
        assert_eq!(bad(15, 10, 0), "retryPeriod must be greater than zero");
    }
}
