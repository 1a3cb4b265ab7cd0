//! The CronJob controller: creates a Job from the template at each time the schedule names (in
//! `spec.timeZone`, UTC by default), honouring concurrencyPolicy and suspend, and keeps the
//! configured history of finished Jobs.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use croner::Cron;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{Api, DeleteParams, ListParams, Patch};
use kube::runtime::controller::Action;
use serde_json::json;

use crate::common::{Error, Shared, controlled_by, owner_ref, patch_params, post_params};

/// Runs the controller.
pub async fn run(client: kube::Client, shared: Shared) {
    let children = crate::common::watch_changes(Api::<Job>::all(client.clone()));
    crate::common::run_owning::<CronJob, Job, _, _>(client, shared, children, reconcile).await;
}

fn finished(job: &Job) -> Option<bool> {
    let conds = job.status.as_ref()?.conditions.as_ref()?;
    if conds
        .iter()
        .any(|c| c.type_ == "Complete" && c.status == "True")
    {
        Some(true)
    } else if conds
        .iter()
        .any(|c| c.type_ == "Failed" && c.status == "True")
    {
        Some(false)
    } else {
        None
    }
}

async fn reconcile(
    client: kube::Client,
    cj: Arc<CronJob>,
    _ctx: Arc<Shared>,
) -> Result<Action, Error> {
    let ns = cj.metadata.namespace.clone().unwrap_or_default();
    let name = cj.metadata.name.clone().unwrap_or_default();
    let uid = cj.metadata.uid.clone().unwrap_or_default();
    if cj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let spec = cj.spec.clone();
    let jobs_api: Api<Job> = Api::namespaced(client.clone(), &ns);
    let mut jobs: Vec<Job> = jobs_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|j| controlled_by(j.metadata.owner_references.as_ref(), &uid))
        .collect();
    jobs.sort_by_key(|j| j.metadata.creation_timestamp.clone().map(|t| t.0));

    // History: keep the newest successful and failed Jobs up to their limits.
    for (ok, limit) in [
        (true, spec.successful_jobs_history_limit.unwrap_or(3)),
        (false, spec.failed_jobs_history_limit.unwrap_or(1)),
    ] {
        let done: Vec<&Job> = jobs.iter().filter(|j| finished(j) == Some(ok)).collect();
        let excess = done.len().saturating_sub(limit.max(0) as usize);
        for j in done.iter().take(excess) {
            if let Some(n) = &j.metadata.name {
                let _ = jobs_api.delete(n, &DeleteParams::background()).await;
            }
        }
    }
    let active: Vec<&Job> = jobs.iter().filter(|j| finished(j).is_none()).collect();

    let cron = Cron::from_str(&spec.schedule)
        .map_err(|e| Error(format!("schedule {:?}: {e}", spec.schedule)))?;
    let tz = spec
        .time_zone
        .as_deref()
        .and_then(|z| jiff::tz::TimeZone::get(z).ok())
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let last = cj
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .map(|t| t.0)
        .or_else(|| cj.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or_else(jiff::Timestamp::now);
    let next = cron
        .find_next_occurrence(&last.to_zoned(tz.clone()), false)
        .map_err(|e| Error(format!("schedule: {e}")))?;
    let now = jiff::Timestamp::now();
    if next.timestamp() <= now && spec.suspend != Some(true) {
        let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
        let blocked = policy == "Forbid" && !active.is_empty();
        if policy == "Replace" {
            for j in &active {
                if let Some(n) = &j.metadata.name {
                    let _ = jobs_api.delete(n, &DeleteParams::background()).await;
                }
            }
        }
        if !blocked {
            let scheduled = next.timestamp();
            let mut meta = spec.job_template.metadata.clone().unwrap_or_default();
            meta.name = Some(format!("{name}-{}", scheduled.as_second() / 60));
            meta.namespace = Some(ns.clone());
            meta.owner_references = owner_ref(cj.as_ref()).map(|r| vec![r]);
            let job = Job {
                metadata: meta,
                spec: spec.job_template.spec.clone(),
                status: None,
            };
            match jobs_api.create(&post_params(), &job).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        let stamp = tug_api::time::rfc3339(next.timestamp());
        Api::<CronJob>::namespaced(client, &ns)
            .patch_status(
                &name,
                &patch_params(),
                &Patch::Merge(&json!({"status": {"lastScheduleTime": stamp}})),
            )
            .await?;
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let wait = (next.timestamp().as_second() - now.as_second()).clamp(1, 60) as u64;
    Ok(Action::requeue(Duration::from_secs(wait)))
}
