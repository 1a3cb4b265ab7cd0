//! Priority admission: a pod's `priorityClassName` becomes its `priority` (and
//! `preemptionPolicy`) at create, from the named PriorityClass or the global default one, as
//! Kubernetes' Priority admission plugin does. The two system classes exist from the start.

use serde_json::{Value, json};
use tug_api::{ApiError, catalog};

use super::{ListOptions, Registry, WriteOptions};

/// The classes every cluster has: name and value.
pub const SYSTEM_CLASSES: &[(&str, i64)] = &[
    ("system-node-critical", 2_000_001_000),
    ("system-cluster-critical", 2_000_000_000),
];

fn classes() -> Result<&'static tug_api::Resource, ApiError> {
    catalog::lookup("scheduling.k8s.io", "v1", "priorityclasses")
        .ok_or_else(|| ApiError::internal("priorityclasses missing from the catalog"))
}

impl Registry {
    /// Creates the system PriorityClasses that are missing.
    pub async fn ensure_priority_classes(&self) -> anyhow::Result<()> {
        let r = classes().map_err(|e| anyhow::anyhow!("{e}"))?;
        for (name, value) in SYSTEM_CLASSES {
            let obj = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": name}, "value": value,
                "description": "Used for system critical pods that must not be moved from their current node."});
            match self.create(r, None, obj, &WriteOptions::default()).await {
                Ok(_) => tracing::info!(class = name, "created priority class"),
                Err(e) if e.reason == "AlreadyExists" => {}
                Err(e) => anyhow::bail!("creating priority class {name}: {e}"),
            }
        }
        Ok(())
    }

    /// Sets `spec.priority` and `spec.preemptionPolicy` of a pod being created.
    pub(super) async fn admit_priority(&self, pod: &mut Value) -> Result<(), ApiError> {
        let r = classes()?;
        let named = pod
            .pointer("/spec/priorityClassName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        let class = match &named {
            Some(name) => match self.current(r, None, name).await? {
                Some((class, _)) => Some(class),
                None => {
                    return Err(ApiError::forbidden(format!(
                        "pods \"{}\" is forbidden: no PriorityClass with name {name} was found",
                        tug_api::meta::name(pod)
                    )));
                }
            },
            None => self.global_default(r).await?,
        };
        let Some(class) = class else {
            return Ok(());
        };
        let value = class.get("value").and_then(Value::as_i64).unwrap_or(0);
        let given = pod.pointer("/spec/priority").and_then(Value::as_i64);
        if given.is_some_and(|g| g != value) {
            return Err(ApiError::forbidden(format!(
                "the integer value of priority ({}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name",
                given.unwrap_or_default()
            )));
        }
        let class_name = tug_api::meta::name(&class).to_string();
        let policy = class
            .get("preemptionPolicy")
            .cloned()
            .unwrap_or_else(|| json!("PreemptLowerPriority"));
        if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("priority".into(), json!(value));
            spec.insert("priorityClassName".into(), json!(class_name));
            spec.insert("preemptionPolicy".into(), policy);
        }
        Ok(())
    }

    /// The PriorityClass marked `globalDefault` (the highest, if several are).
    async fn global_default(&self, r: &tug_api::Resource) -> Result<Option<Value>, ApiError> {
        let list = self.list(r, None, &ListOptions::default()).await?;
        Ok(list
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|c| c.get("globalDefault").and_then(Value::as_bool) == Some(true))
            .max_by_key(|c| c.get("value").and_then(Value::as_i64).unwrap_or(0))
            .cloned())
    }
}
