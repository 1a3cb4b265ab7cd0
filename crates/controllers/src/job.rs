//! The Job controller: runs pods until `completions` succeed, at most `parallelism` at a time,
//! and marks the Job Complete; more than `backoffLimit` failures mark it Failed.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, PodFailurePolicy};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch};
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use crate::common::{Error, Shared, owner_ref, patch_params, post_params};

/// Runs the controller.
pub async fn run(client: kube::Client, shared: Shared) {
    crate::claim::run_claiming::<Job, _, _>(client, shared, reconcile).await;
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// A finished Job with ttlSecondsAfterFinished is deleted (with its pods) that long after it
/// finished.
async fn collect_finished(
    client: &kube::Client,
    job: &Job,
    ttl: Option<i32>,
) -> Result<Action, Error> {
    let Some(ttl) = ttl else {
        return Ok(Action::await_change());
    };
    let finished = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .filter_map(|c| c.last_transition_time.as_ref().map(|t| t.0))
        .max();
    let Some(finished) = finished else {
        return Ok(Action::await_change());
    };
    let left = i64::from(ttl) - (jiff::Timestamp::now().as_second() - finished.as_second());
    if left > 0 {
        return Ok(Action::requeue(Duration::from_secs(left as u64)));
    }
    let ns = job.metadata.namespace.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    tracing::info!(job = %name, "deleting a finished job after its ttlSecondsAfterFinished");
    Api::<Job>::namespaced(client.clone(), &ns)
        .delete(&name, &kube::api::DeleteParams::background())
        .await?;
    Ok(Action::await_change())
}

/// Deletes the pods of a failed Job that still run.
async fn stop_active(client: &kube::Client, ns: &str, owned: &[Arc<Pod>]) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    for p in owned
        .iter()
        .filter(|p| !matches!(phase(p), "Succeeded" | "Failed"))
    {
        if let Some(n) = &p.metadata.name {
            let _ = pods.delete(n, &Default::default()).await;
        }
    }
}

/// The action of the first podFailurePolicy rule a failed pod matches, with Kubernetes'
/// message for it.
fn failure_action(policy: Option<&PodFailurePolicy>, pod: &Pod) -> Option<(String, String)> {
    let pod_name = format!(
        "{}/{}",
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default()
    );
    let status = pod.status.as_ref();
    for (i, rule) in policy?.rules.iter().enumerate() {
        let action = rule.action.clone();
        if let Some(codes) = &rule.on_exit_codes {
            for cs in status
                .and_then(|s| s.container_statuses.as_ref())
                .into_iter()
                .flatten()
            {
                if codes.container_name.as_ref().is_some_and(|n| *n != cs.name) {
                    continue;
                }
                let Some(code) = cs
                    .state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .map(|t| t.exit_code)
                else {
                    continue;
                };
                let listed = codes.values.contains(&code);
                let hit = match codes.operator.as_str() {
                    "In" => listed,
                    "NotIn" => code != 0 && !listed,
                    _ => false,
                };
                if hit {
                    return Some((
                        action.clone(),
                        format!(
                            "Container {} for pod {pod_name} failed with exit code {code} matching {action} rule at index {i}",
                            cs.name
                        ),
                    ));
                }
            }
        }
        for pc in rule.on_pod_conditions.iter().flatten() {
            let want = pc.status.as_deref().unwrap_or("True");
            let has = status
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == pc.type_ && c.status == want));
            if has {
                return Some((
                    action.clone(),
                    format!(
                        "Pod {pod_name} has condition {} matching {action} rule at index {i}",
                        pc.type_
                    ),
                ));
            }
        }
    }
    None
}

/// The annotation (and label) carrying an Indexed job pod's completion index.
const INDEX: &str = "batch.kubernetes.io/job-completion-index";

fn completion_index(p: &Pod) -> Option<i32> {
    p.metadata.annotations.as_ref()?.get(INDEX)?.parse().ok()
}

/// Indexes as Kubernetes writes completedIndexes: "0-2,4,6-7".
fn index_ranges(indexes: &std::collections::BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut run: Option<(i32, i32)> = None;
    for &i in indexes {
        run = match run {
            Some((a, b)) if i == b + 1 => Some((a, i)),
            Some((a, b)) => {
                parts.push(if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                });
                Some((i, i))
            }
            None => Some((i, i)),
        };
    }
    if let Some((a, b)) = run {
        parts.push(if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        });
    }
    parts.join(",")
}

/// A Job suspended (or resumed): its Suspended condition, and the event Kubernetes records.
async fn suspension(ctx: &Shared, job: &Job, suspended: bool, now: &str) -> Value {
    let (status, reason, event, message) = if suspended {
        ("True", "JobSuspended", "Suspended", "Job suspended")
    } else {
        ("False", "JobResumed", "Resumed", "Job resumed")
    };
    ctx.recorder("job-controller")
        .event(&tug_events::Involved::of(job), "Normal", event, message)
        .await;
    json!([{"type": "Suspended", "status": status, "reason": reason, "message": message,
        "lastProbeTime": now, "lastTransitionTime": now}])
}

fn has_condition(job: &Job, t: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == t && c.status == "True"))
}

async fn reconcile(client: kube::Client, job: Arc<Job>, ctx: Arc<Shared>) -> Result<Action, Error> {
    let ns = job.metadata.namespace.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let spec = job.spec.clone().unwrap_or_default();
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    if has_condition(&job, "Complete") || has_condition(&job, "Failed") {
        return collect_finished(&client, &job, spec.ttl_seconds_after_finished).await;
    }
    let completions = spec.completions.unwrap_or(1);
    let parallelism = spec.parallelism.unwrap_or(1);
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let owned: Vec<Arc<Pod>> =
        crate::claim::claim_pods(&client, job.as_ref(), ctx.pods.state()).await;
    let names: std::collections::HashSet<String> = owned
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    // Indexed jobs count completions by index: index i is done once a pod for it succeeded.
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let done_indexes: std::collections::BTreeSet<i32> = owned
        .iter()
        .filter(|p| phase(p) == "Succeeded")
        .filter_map(|p| completion_index(p))
        .filter(|i| *i < completions)
        .collect();
    let busy_indexes: std::collections::BTreeSet<i32> = owned
        .iter()
        .filter(|p| {
            !matches!(phase(p), "Succeeded" | "Failed") && p.metadata.deletion_timestamp.is_none()
        })
        .filter_map(|p| completion_index(p))
        .collect();
    let succeeded = if indexed {
        done_indexes.len() as i32
    } else {
        owned.iter().filter(|p| phase(p) == "Succeeded").count() as i32
    };
    // Failed pods, judged by the podFailurePolicy: Ignore'd ones do not count against the
    // backoffLimit; a FailJob match fails the Job at once.
    let policy = spec.pod_failure_policy.as_ref();
    let judged: Vec<Option<(String, String)>> = owned
        .iter()
        .filter(|p| phase(p) == "Failed")
        .map(|p| failure_action(policy, p))
        .collect();
    let failed = judged
        .iter()
        .filter(|a| a.as_ref().is_none_or(|(action, _)| action != "Ignore"))
        .count() as i32;
    let fail_job = judged
        .iter()
        .flatten()
        .find(|(action, _)| action == "FailJob")
        .map(|(_, message)| message.clone());
    let active = owned
        .iter()
        .filter(|p| {
            !matches!(phase(p), "Succeeded" | "Failed") && p.metadata.deletion_timestamp.is_none()
        })
        .count() as i32;
    let now = tug_api::time::now();
    // A suspended Job runs nothing; resumed, its clock (activeDeadlineSeconds) starts again.
    let suspended = spec.suspend == Some(true);
    let was_suspended = has_condition(&job, "Suspended");
    let started = job
        .status
        .as_ref()
        .and_then(|s| s.start_time.clone())
        .map(|t| json!(t));
    let start_time = match started {
        _ if !suspended && was_suspended => json!(now),
        Some(t) => t,
        None if suspended => Value::Null,
        None => json!(now),
    };
    let mut status = json!({
        "active": active, "succeeded": succeeded, "failed": failed, "startTime": start_time,
    });
    if indexed {
        status["completedIndexes"] = json!(index_ranges(&done_indexes));
    }
    if succeeded >= completions {
        ctx.recorder("job-controller")
            .event(
                &tug_events::Involved::of(job.as_ref()),
                "Normal",
                "Completed",
                "Job completed",
            )
            .await;
        status["completionTime"] = json!(now);
        status["conditions"] = json!([
            {"type": "SuccessCriteriaMet", "status": "True", "lastProbeTime": now, "lastTransitionTime": now},
            {"type": "Complete", "status": "True", "lastProbeTime": now, "lastTransitionTime": now},
        ]);
    } else if let Some(message) = fail_job {
        stop_active(&client, &ns, &owned).await;
        status["active"] = json!(0);
        status["conditions"] = json!([
            {"type": "FailureTarget", "status": "True", "reason": "PodFailurePolicy", "message": message, "lastProbeTime": now, "lastTransitionTime": now},
            {"type": "Failed", "status": "True", "reason": "PodFailurePolicy", "message": message, "lastProbeTime": now, "lastTransitionTime": now},
        ]);
    } else if suspended {
        stop_active(&client, &ns, &owned).await;
        status["active"] = json!(0);
        if !was_suspended {
            status["conditions"] = suspension(&ctx, &job, true, &now).await;
        }
    } else if let Some(limit) = spec.active_deadline_seconds
        && !was_suspended
        && job
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .is_some_and(|t| jiff::Timestamp::now().as_second() - t.0.as_second() >= limit)
    {
        // Past activeDeadlineSeconds: stop what runs and fail.
        stop_active(&client, &ns, &owned).await;
        status["active"] = json!(0);
        status["conditions"] = json!([
            {"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded", "lastProbeTime": now, "lastTransitionTime": now},
            {"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
             "message": "Job was active longer than specified deadline", "lastProbeTime": now, "lastTransitionTime": now},
        ]);
    } else if failed > backoff_limit {
        status["conditions"] = json!([
            {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "lastProbeTime": now, "lastTransitionTime": now},
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
             "message": "Job has reached the specified backoff limit", "lastProbeTime": now, "lastTransitionTime": now},
        ]);
    } else if ctx.expectations.satisfied(&uid, &names) {
        if was_suspended {
            status["conditions"] = suspension(&ctx, &job, false, &now).await;
        }
        let want = parallelism.min(completions - succeeded) - active;
        let mut free_indexes =
            (0..completions).filter(|i| !done_indexes.contains(i) && !busy_indexes.contains(i));
        let mut created = Vec::new();
        for _ in 0..want.max(0) {
            let mut meta = spec.template.metadata.clone().unwrap_or_default();
            let mut pod_spec = spec.template.spec.clone();
            meta.generate_name = Some(format!("{name}-"));
            if indexed {
                let Some(i) = free_indexes.next() else { break };
                meta.generate_name = Some(format!("{name}-{i}-"));
                meta.annotations
                    .get_or_insert_with(Default::default)
                    .insert(INDEX.into(), i.to_string());
                meta.labels
                    .get_or_insert_with(Default::default)
                    .insert(INDEX.into(), i.to_string());
                if let Some(ps) = pod_spec.as_mut() {
                    ps.hostname = Some(format!("{name}-{i}"));
                    for c in ps
                        .containers
                        .iter_mut()
                        .chain(ps.init_containers.iter_mut().flatten())
                    {
                        c.env.get_or_insert_with(Vec::new).push(
                            serde_json::from_value(json!({"name": "JOB_COMPLETION_INDEX",
                                "valueFrom": {"fieldRef": {"fieldPath": format!("metadata.annotations['{INDEX}']")}}}))
                            .map_err(|e| Error(e.to_string()))?,
                        );
                    }
                }
            }
            meta.namespace = Some(ns.clone());
            meta.owner_references = owner_ref(job.as_ref()).map(|r| vec![r]);
            let labels = meta.labels.get_or_insert_with(Default::default);
            labels.insert("batch.kubernetes.io/job-name".into(), name.clone());
            // The older labels, which kubectl users and charts still select on.
            labels.insert("job-name".into(), name.clone());
            labels.insert("controller-uid".into(), uid.clone());
            labels.insert("batch.kubernetes.io/controller-uid".into(), uid.clone());
            let pod = Pod {
                metadata: meta,
                spec: pod_spec,
                status: None,
            };
            created.extend(
                Api::<Pod>::namespaced(client.clone(), &ns)
                    .create(&post_params(), &pod)
                    .await?
                    .metadata
                    .name,
            );
        }
        let recorder = ctx.recorder("job-controller");
        for pod in &created {
            recorder
                .event(
                    &tug_events::Involved::of(job.as_ref()),
                    "Normal",
                    "SuccessfulCreate",
                    &format!("Created pod: {pod}"),
                )
                .await;
        }
        ctx.expectations.expect(&uid, created, Vec::new());
    }
    Api::<Job>::namespaced(client, &ns)
        .patch_status(
            &name,
            &patch_params(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await?;
    Ok(Action::requeue(Duration::from_millis(500)))
}

#[cfg(test)]
mod tests {
    use super::index_ranges;

    #[test]
    fn completed_indexes_as_ranges() {
        assert_eq!(index_ranges(&[0, 1, 2, 4, 6, 7].into()), "0-2,4,6-7");
        assert_eq!(index_ranges(&[3].into()), "3");
        assert_eq!(index_ranges(&Default::default()), "");
    }
}
