//! ResourceQuota admission: a create that would take a namespace past a quota's `hard` limits
//! is refused (403, naming the quota, what was asked, used and allowed), as Kubernetes'
//! ResourceQuota admission does. Usage is summed from the stored objects of the same kind,
//! under one lock held until the object is stored, so concurrent creates cannot overshoot.

use std::collections::BTreeMap;

use serde_json::Value;
use tug_api::{ApiError, Resource, catalog, meta, quota};

use super::{ListOptions, Registry};

/// A quota resource a create would take past its limit.
struct Over<'a> {
    resource: &'a str,
    requested: f64,
    used: f64,
    limited: f64,
}

fn hard_limits(q: &Value) -> BTreeMap<String, f64> {
    q.pointer("/spec/hard")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), tug_api::quantity::parse(v.as_str()?)?)))
        .collect()
}

fn items(list: &Value) -> impl Iterator<Item = &Value> {
    list.get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

impl Registry {
    /// Checks a create of `obj` in `ns` against the namespace's quotas. The returned guard is
    /// held until the object is stored.
    pub(super) async fn admit_quota(
        &self,
        r: &Resource,
        ns: &str,
        obj: &Value,
    ) -> Result<Option<tokio::sync::OwnedMutexGuard<()>>, ApiError> {
        let quotas_res = catalog::lookup("", "v1", "resourcequotas")
            .ok_or_else(|| ApiError::internal("resourcequotas missing from the catalog"))?;
        let quotas = self
            .list(quotas_res, Some(ns), &ListOptions::default())
            .await?;
        let wants = quota::usage(r.group, r.plural, obj);
        let relevant: Vec<&Value> = items(&quotas)
            .filter(|q| hard_limits(q).keys().any(|k| wants.contains_key(k)))
            .collect();
        if relevant.is_empty() {
            return Ok(None);
        }
        let guard = self.quota_lock.clone().lock_owned().await;
        let existing = self.list(r, Some(ns), &ListOptions::default()).await?;
        let mut used: BTreeMap<String, f64> = BTreeMap::new();
        for item in items(&existing) {
            for (k, v) in quota::usage(r.group, r.plural, item) {
                *used.entry(k).or_default() += v;
            }
        }
        let what = format!("{} \"{}\" is forbidden", r.plural, meta::name(obj));
        for q in relevant {
            let qname = meta::name(q);
            let hard = hard_limits(q);
            if r.plural == "pods" && r.group.is_empty() {
                for res in hard.keys() {
                    let missing = quota::unspecified(obj, res);
                    if !missing.is_empty() {
                        return Err(ApiError::forbidden(format!(
                            "{what}: failed quota: {qname}: must specify {res} for: {}",
                            missing.join(",")
                        )));
                    }
                }
            }
            let over: Vec<Over> = hard
                .iter()
                .filter_map(|(res, limit)| {
                    let want = *wants.get(res)?;
                    let have = used.get(res).copied().unwrap_or(0.0);
                    (want > 0.0 && have + want > limit + 1e-9).then_some(Over {
                        resource: res,
                        requested: want,
                        used: have,
                        limited: *limit,
                    })
                })
                .collect();
            if !over.is_empty() {
                let part = |f: fn(&Over) -> f64| {
                    over.iter()
                        .map(|o| format!("{}={}", o.resource, quota::format(f(o))))
                        .collect::<Vec<_>>()
                        .join(",")
                };
                return Err(ApiError::forbidden(format!(
                    "{what}: exceeded quota: {qname}, requested: {}, used: {}, limited: {}",
                    part(|o| o.requested),
                    part(|o| o.used),
                    part(|o| o.limited)
                )));
            }
        }
        Ok(Some(guard))
    }
}
