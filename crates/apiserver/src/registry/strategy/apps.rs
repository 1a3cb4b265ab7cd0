//! Strategies of the apps and batch groups' kinds: workloads and Jobs.

use serde_json::{Value, json};
use tug_api::{Cause, Resource, defaults, validation};

use super::Strategy;

/// The strategy of apps or batch resource `r`, if it has one of its own.
pub(super) fn of(r: &Resource) -> Option<&'static dyn Strategy> {
    static DEPLOYMENT: Workload = Workload {
        kind: "Deployment",
        defaults: defaults::deployment,
        status: || json!({}),
    };
    static REPLICA_SET: Workload = Workload {
        kind: "ReplicaSet",
        defaults: defaults::replica_set,
        status: || json!({"replicas": 0}),
    };
    static STATEFUL_SET: Workload = Workload {
        kind: "StatefulSet",
        defaults: defaults::stateful_set,
        status: || json!({"replicas": 0, "availableReplicas": 0}),
    };
    static DAEMON_SET: Workload = Workload {
        kind: "DaemonSet",
        defaults: defaults::daemon_set,
        status: || {
            json!({"currentNumberScheduled": 0, "numberMisscheduled": 0,
                "desiredNumberScheduled": 0, "numberReady": 0})
        },
    };
    Some(match (r.group, r.kind) {
        ("apps", "Deployment") => &DEPLOYMENT,
        ("apps", "ReplicaSet") => &REPLICA_SET,
        ("apps", "StatefulSet") => &STATEFUL_SET,
        ("apps", "DaemonSet") => &DAEMON_SET,
        ("batch", "Job") => &Job,
        ("batch", "CronJob") => &CronJob,
        _ => return None,
    })
}

/// Deployments, ReplicaSets, StatefulSets and DaemonSets: their defaults, a zero status when
/// created, the workload checks, a selector that stays.
struct Workload {
    kind: &'static str,
    defaults: fn(&mut Value),
    status: fn() -> Value,
}

impl Strategy for Workload {
    fn defaults(&self, obj: &mut Value) {
        (self.defaults)(obj);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = (self.status)();
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validation::workload(self.kind, obj)
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<Cause> {
        validation::workload_update(old, new)
    }
}

/// Jobs: the selector kube-apiserver generates from the uid; selector and template stay.
struct Job;

impl Strategy for Job {
    fn defaults(&self, obj: &mut Value) {
        defaults::job(obj);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        defaults::generate_job_selector(obj);
        obj["status"] = json!({});
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validation::job(obj)
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<Cause> {
        validation::job_update(old, new)
    }
}

/// CronJobs.
struct CronJob;

impl Strategy for CronJob {
    fn defaults(&self, obj: &mut Value) {
        defaults::cron_job(obj);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({});
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validation::cron_job(obj)
    }
}
