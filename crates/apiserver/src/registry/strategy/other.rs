//! Strategies of the other groups' kinds with behaviour of their own: networking, autoscaling
//! and disruption budgets.

use serde_json::{Value, json};
use tug_api::{Cause, validation};

use super::{Strategy, ZeroStatus};

/// Ingresses and NetworkPolicies.
pub(super) fn networking(kind: &str) -> Option<&'static dyn Strategy> {
    static INGRESS: Checked = Checked {
        check: validation::ingress,
        status: Some(|| json!({"loadBalancer": {}})),
    };
    static NETWORK_POLICY: Checked = Checked {
        check: validation::network_policy,
        status: None,
    };
    Some(match kind {
        "Ingress" => &INGRESS,
        "NetworkPolicy" => &NETWORK_POLICY,
        _ => return None,
    })
}

/// HorizontalPodAutoscalers: their zero status differs between v1 and v2.
pub(super) fn autoscaler(version: &str) -> &'static dyn Strategy {
    static V1: ZeroStatus = ZeroStatus {
        status: || json!({"currentReplicas": 0, "desiredReplicas": 0}),
        returns_deleted: false,
    };
    static V2: ZeroStatus = ZeroStatus {
        status: || json!({"desiredReplicas": 0, "currentMetrics": null}),
        returns_deleted: false,
    };
    if version == "v1" { &V1 } else { &V2 }
}

/// PodDisruptionBudgets.
pub(super) fn disruption_budget() -> &'static dyn Strategy {
    static PDB: ZeroStatus = ZeroStatus {
        status: || {
            json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0,
                "expectedPods": 0})
        },
        returns_deleted: false,
    };
    &PDB
}

/// A kind with field checks and, for some, a zero status when created.
struct Checked {
    check: validation::Check,
    status: Option<fn() -> Value>,
}

impl Strategy for Checked {
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(status) = self.status {
            obj["status"] = status();
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        (self.check)(obj)
    }
}
