//! The eviction subresource of pods (`POST pods/NAME/eviction`, what `kubectl drain` uses): the
//! pod is deleted unless a PodDisruptionBudget selecting it allows no more disruptions, in
//! which case the answer is 429 TooManyRequests and the caller retries. An allowed eviction
//! takes one disruption from the budget's status (and records the pod in `disruptedPods`) in
//! a guarded write before the pod is deleted, so concurrent evictions cannot overdraw it.

use serde_json::{Value, json};
use tug_api::selector::LabelSelector;
use tug_api::{ApiError, Cause, Resource, catalog, meta};

use super::write::{DeleteOptions, Guarded};
use super::{ListOptions, Registry, key};

/// Whether a budget selects a pod.
pub fn budget_selects(pdb: &Value, pod: &Value) -> bool {
    // A budget without a selector (or with one the API would refuse) selects nothing.
    let Some(sel) = pdb
        .pointer("/spec/selector")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .map(|s| LabelSelector::from_api(&s))
    else {
        return false;
    };
    let labels: Vec<(&str, &str)> = pod
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
        .collect();
    sel.matches(&labels)
}

impl Registry {
    /// Evicts pod `name` if its disruption budgets allow.
    pub async fn evict(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
        body: &Value,
        opts: DeleteOptions,
    ) -> Result<Value, ApiError> {
        let (pod, _) = self
            .current(r, ns, name)
            .await?
            .ok_or_else(|| ApiError::not_found(r.group, r.plural, name))?;
        let finished = matches!(
            pod.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        );
        let given = body.pointer("/metadata/name").and_then(Value::as_str);
        if given.is_some_and(|g| g != name) {
            return Err(ApiError::bad_request(format!(
                "name in URL does not match name in Eviction object ({name} and {})",
                given.unwrap_or_default()
            )));
        }
        if !finished && pod.pointer("/metadata/deletionTimestamp").is_none() {
            self.take_disruption(ns, name, &pod).await?;
        }
        self.delete(r, ns, name, &opts).await?;
        Ok(
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        )
    }

    async fn take_disruption(
        &self,
        ns: Option<&str>,
        name: &str,
        pod: &Value,
    ) -> Result<(), ApiError> {
        let pdbs = catalog::lookup("policy", "v1", "poddisruptionbudgets")
            .ok_or_else(|| ApiError::internal("poddisruptionbudgets missing from the catalog"))?;
        let list = self.list(pdbs, ns, &ListOptions::default()).await?;
        let matching: Vec<String> = list
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|b| budget_selects(b, pod))
            .map(|b| meta::name(b).to_string())
            .collect();
        if matching.len() > 1 {
            return Err(ApiError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
        let Some(budget) = matching.first() else {
            return Ok(());
        };
        // Read, check and spend in one guarded write (retried if the budget changed under us).
        for _ in 0..5 {
            let (mut pdb, kv) = self
                .current(pdbs, ns, budget)
                .await?
                .ok_or_else(|| ApiError::not_found("policy", "poddisruptionbudgets", budget))?;
            let status = &pdb["status"];
            let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0);
            let observed = status["observedGeneration"].as_i64().unwrap_or(-1);
            let generation = pdb
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if observed < generation || allowed <= 0 {
                let message = if observed < generation {
                    format!(
                        "The disruption budget {budget} is still being processed by the server."
                    )
                } else {
                    format!(
                        "The disruption budget {budget} needs {} healthy pods and has {} currently",
                        status["desiredHealthy"].as_i64().unwrap_or(0),
                        status["currentHealthy"].as_i64().unwrap_or(0)
                    )
                };
                let mut e = ApiError::new(
                    429,
                    "TooManyRequests",
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                );
                e.details = Some(Box::new(tug_api::status::Details {
                    name: name.to_string(),
                    group: "policy".into(),
                    kind: "poddisruptionbudgets".into(),
                    causes: vec![Cause::new("DisruptionBudget", "", message)],
                    retry_after: Some(1),
                }));
                return Err(e);
            }
            pdb["status"]["disruptionsAllowed"] = json!(allowed - 1);
            let now = tug_api::time::now();
            if !pdb["status"]["disruptedPods"].is_object() {
                pdb["status"]["disruptedPods"] = json!({});
            }
            pdb["status"]["disruptedPods"][name] = json!(now);
            meta::remove(&mut pdb, "resourceVersion");
            let stored = serde_json::to_vec(&pdb).map_err(|e| ApiError::internal(e.to_string()))?;
            match self
                .write_if_unchanged(
                    pdbs,
                    budget,
                    key(pdbs, ns, budget),
                    kv.mod_revision,
                    Guarded::Put(stored),
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if e.code == 409 => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ApiError::new(
            429,
            "TooManyRequests",
            "the disruption budget kept changing; try again",
        ))
    }
}
