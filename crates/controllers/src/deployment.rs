//! The Deployment controller: one ReplicaSet per pod template (named by its hash), rolled from
//! the old ones to the new within maxSurge and maxUnavailable (or all at once with Recreate),
//! with the revision annotations and the status conditions `kubectl rollout status` reads.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, Patch};
use kube::runtime::controller::Action;
use serde_json::json;

use crate::common::{Error, Shared, controlled_by, owner_ref, template_hash};

const REVISION: &str = "deployment.kubernetes.io/revision";
/// The annotation recording the Deployment replicas a ReplicaSet was sized for.
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const HASH_LABEL: &str = "pod-template-hash";

/// Runs the controller.
pub async fn run(client: kube::Client, shared: Shared) {
    let children = shared.replicaset_changes();
    crate::common::run_owning::<Deployment, ReplicaSet, _, _>(client, shared, children, reconcile)
        .await;
}

/// maxSurge / maxUnavailable against the desired count (percentages round up for surge, down
/// for unavailable, as Kubernetes does).
fn resolve(v: Option<&IntOrString>, desired: i32, round_up: bool, default: &str) -> i32 {
    let v = v.cloned().unwrap_or(IntOrString::String(default.into()));
    match v {
        IntOrString::Int(n) => n.max(0),
        IntOrString::String(s) => {
            let pct: f64 = s.trim_end_matches('%').parse().unwrap_or(0.0);
            let x = f64::from(desired) * pct / 100.0;
            (if round_up { x.ceil() } else { x.floor() }) as i32
        }
    }
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.replicas.unwrap_or(0)
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The Deployment owning a ReplicaSet, as the object of its events.
fn deployment_of(rs: &ReplicaSet) -> Option<tug_events::Involved> {
    let o = rs
        .metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "Deployment")?;
    Some(tug_events::Involved {
        api_version: o.api_version.clone(),
        kind: o.kind.clone(),
        namespace: rs.metadata.namespace.clone().unwrap_or_default(),
        name: o.name.clone(),
        uid: Some(o.uid.clone()),
        field_path: None,
    })
}

/// The Deployment's replicas a ReplicaSet was last sized for (Kubernetes'
/// `deployment.kubernetes.io/desired-replicas`).
fn sized_for(rs: &ReplicaSet) -> Option<i32> {
    rs.metadata.annotations.as_ref()?.get(DESIRED)?.parse().ok()
}

/// Sizes a ReplicaSet, recording the Deployment's replicas it was sized for.
async fn scale(
    api: &Api<ReplicaSet>,
    rs: &ReplicaSet,
    replicas: i32,
    desired: i32,
    ctx: &Shared,
) -> Result<(), Error> {
    if spec_replicas(rs) == replicas && sized_for(rs) == Some(desired) {
        return Ok(());
    }
    if let Some(uid) = rs.metadata.uid.clone()
        && let Ok(mut m) = ctx.scaled.lock()
    {
        m.insert(uid, (replicas, std::time::Instant::now()));
    }
    let name = rs.metadata.name.clone().unwrap_or_default();
    api.patch(
        &name,
        &crate::common::patch_params(),
        &Patch::Merge(
            &json!({"metadata": {"annotations": {DESIRED: desired.to_string()}},
            "spec": {"replicas": replicas}}),
        ),
    )
    .await?;
    let from = spec_replicas(rs);
    if from != replicas
        && let Some(owner) = deployment_of(rs)
    {
        let direction = if replicas > from { "up" } else { "down" };
        ctx.recorder("deployment-controller")
            .event(
                &owner,
                "Normal",
                "ScalingReplicaSet",
                &format!("Scaled {direction} replica set {name} from {from} to {replicas}"),
            )
            .await;
    }
    Ok(())
}

/// Proportional scaling: the Deployment was resized while several of its ReplicaSets run
/// pods. The change (to replicas + maxSurge in all) is shared among them in proportion to
/// their sizes, the rounding remainder going to the newest when growing and to the largest
/// when shrinking, as Kubernetes does.
fn proportional(sizes: &[i32], allowed: i32) -> Vec<i32> {
    let total: i32 = sizes.iter().sum();
    let change = allowed - total;
    if total <= 0 || change == 0 {
        return sizes.to_vec();
    }
    let mut out: Vec<i32> = sizes
        .iter()
        .map(|s| s + (f64::from(*s) * f64::from(change) / f64::from(total)).trunc() as i32)
        .collect();
    let rest = allowed - out.iter().sum::<i32>();
    let target = if change > 0 {
        out.len() - 1
    } else {
        (0..out.len()).max_by_key(|i| out[*i]).unwrap_or(0)
    };
    out[target] += rest;
    out.into_iter().map(|s| s.max(0)).collect()
}

async fn reconcile(
    client: kube::Client,
    d: Arc<Deployment>,
    ctx: Arc<Shared>,
) -> Result<Action, Error> {
    let ns = d.metadata.namespace.clone().unwrap_or_default();
    let name = d.metadata.name.clone().unwrap_or_default();
    let uid = d.metadata.uid.clone().unwrap_or_default();
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let spec = d.spec.clone();
    let desired = spec.replicas.unwrap_or(1);
    let template = serde_json::to_value(&spec.template).map_err(|e| Error(e.to_string()))?;
    let hash = template_hash(&template);
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let mut owned: Vec<Arc<ReplicaSet>> = ctx
        .replicasets
        .state()
        .into_iter()
        .filter(|rs| rs.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|rs| controlled_by(rs.metadata.owner_references.as_ref(), &uid))
        .collect();
    owned.sort_by_key(|rs| revision(rs));
    // Sets whose last scaling has not reached the store yet (proportional scaling waits for
    // them: sizes read before would be shared out twice).
    let stale = ctx.scaled.lock().is_ok_and(|mut m| {
        m.retain(|_, (_, at)| at.elapsed() < Duration::from_secs(10));
        owned.iter().any(|rs| {
            let uid = rs.metadata.uid.as_deref().unwrap_or_default();
            match m.get(uid) {
                Some((want, _)) if *want != spec_replicas(rs) => true,
                Some(_) => {
                    m.remove(uid);
                    false
                }
                None => false,
            }
        })
    });
    let is_new = |rs: &ReplicaSet| {
        rs.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL)) == Some(&hash)
    };
    let max_revision = owned.iter().map(|rs| revision(rs)).max().unwrap_or(0);
    let new_rs = match owned.iter().find(|rs| is_new(rs)) {
        Some(rs) => (**rs).clone(),
        // Paused: a changed template starts no rollout until resumed (the change is seen).
        None if spec.paused == Some(true) => {
            let seen = json!({"status": {"observedGeneration": d.metadata.generation}});
            Api::<Deployment>::namespaced(client.clone(), &ns)
                .patch_status(&name, &crate::common::patch_params(), &Patch::Merge(&seen))
                .await?;
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
        None => {
            let mut labels = spec
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            labels.insert(HASH_LABEL.into(), hash.clone());
            let mut selector = spec.selector.clone();
            selector
                .match_labels
                .get_or_insert_with(Default::default)
                .insert(HASH_LABEL.into(), hash.clone());
            let mut tmpl = spec.template.clone();
            tmpl.metadata.get_or_insert_with(Default::default).labels = Some(labels.clone());
            let old_exists = owned.iter().any(|rs| spec_replicas(rs) > 0);
            let recreate =
                spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
            let start = if old_exists { 0 } else { desired };
            let rs: ReplicaSet = serde_json::from_value(json!({
                "metadata": {
                    "name": format!("{name}-{hash}"),
                    "namespace": ns,
                    "labels": labels,
                    "annotations": {REVISION: (max_revision + 1).to_string(), DESIRED: desired.to_string()},
                    "ownerReferences": owner_ref(d.as_ref()).map(|r| vec![r]),
                },
                "spec": {"replicas": if recreate && old_exists { 0 } else { start }, "selector": selector, "template": tmpl},
            }))
            .map_err(|e| Error(e.to_string()))?;
            match api.create(&crate::common::post_params(), &rs).await {
                Ok(created) => {
                    let size = spec_replicas(&created);
                    if size > 0 {
                        ctx.recorder("deployment-controller")
                            .event(
                                &tug_events::Involved::of(d.as_ref()),
                                "Normal",
                                "ScalingReplicaSet",
                                &format!(
                                    "Scaled up replica set {} from 0 to {size}",
                                    created.metadata.name.clone().unwrap_or_default()
                                ),
                            )
                            .await;
                    }
                    created
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    // Created already (the store had not caught up): try again shortly.
                    return Ok(Action::requeue(Duration::from_millis(200)));
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    let olds: Vec<&Arc<ReplicaSet>> = owned.iter().filter(|rs| !is_new(rs)).collect();
    let status_of = |rs: &ReplicaSet| rs.status.clone().unwrap_or_default();
    let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
    if spec.paused != Some(true) {
        if recreate {
            // Like Kubernetes, wait for every old pod to be gone, terminating ones included
            // (a ReplicaSet's status no longer counts those).
            let old_uids: Vec<&str> = olds
                .iter()
                .filter_map(|rs| rs.metadata.uid.as_deref())
                .collect();
            let old_pods = ctx
                .pods
                .state()
                .into_iter()
                .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
                .filter(|p| {
                    old_uids
                        .iter()
                        .any(|u| controlled_by(p.metadata.owner_references.as_ref(), u))
                })
                .filter(|p| {
                    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                    !matches!(phase, Some("Succeeded" | "Failed"))
                })
                .count();
            for rs in &olds {
                scale(&api, rs, 0, desired, &ctx).await?;
            }
            if old_pods == 0 {
                scale(&api, &new_rs, desired, desired, &ctx).await?;
            } else {
                // Pod deletions do not touch the ReplicaSets this controller watches: look again.
                return Ok(Action::requeue(Duration::from_millis(500)));
            }
        } else {
            let ru = spec
                .strategy
                .as_ref()
                .and_then(|s| s.rolling_update.as_ref());
            let mut surge = resolve(ru.and_then(|r| r.max_surge.as_ref()), desired, true, "25%");
            let unavailable = resolve(
                ru.and_then(|r| r.max_unavailable.as_ref()),
                desired,
                false,
                "25%",
            );
            if surge == 0 && unavailable == 0 {
                surge = 1;
            }
            let mut active: Vec<&Arc<ReplicaSet>> =
                owned.iter().filter(|rs| spec_replicas(rs) > 0).collect();
            active.sort_by_key(|rs| revision(rs));
            let resized = active
                .iter()
                .any(|rs| sized_for(rs).is_some_and(|n| n != desired));
            if active.len() > 1 && resized {
                if stale {
                    return Ok(Action::requeue(Duration::from_millis(100)));
                }
                let sizes: Vec<i32> = active.iter().map(|rs| spec_replicas(rs)).collect();
                for (rs, size) in active.iter().zip(proportional(&sizes, desired + surge)) {
                    scale(&api, rs, size, desired, &ctx).await?;
                }
                return Ok(Action::requeue(Duration::from_millis(200)));
            }
            // Scale the new set up within maxSurge.
            let total: i32 = owned.iter().map(|rs| spec_replicas(rs)).sum::<i32>()
                + if owned.iter().any(|rs| is_new(rs)) {
                    0
                } else {
                    spec_replicas(&new_rs)
                };
            let new_spec = spec_replicas(&new_rs);
            if new_spec > desired {
                scale(&api, &new_rs, desired, desired, &ctx).await?;
            } else if new_spec < desired {
                let room = desired + surge - total;
                if room > 0 {
                    scale(&api, &new_rs, (new_spec + room).min(desired), desired, &ctx).await?;
                }
            }
            // Scale old sets down within maxUnavailable.
            // A set scaled down but whose status has not caught up still counts the pods it is
            // deleting; those are going, so count no more than the set's spec (else a second
            // pass would scale down again before the first took effect).
            let all_pods: i32 = owned
                .iter()
                .map(|rs| status_of(rs).replicas.min(spec_replicas(rs)))
                .sum();
            let new_status = status_of(&new_rs);
            let new_unavailable = (new_spec - new_status.available_replicas.unwrap_or(0)).max(0);
            let min_available = desired - unavailable;
            let mut budget = all_pods - min_available - new_unavailable;
            for rs in &olds {
                if budget <= 0 {
                    break;
                }
                let s = spec_replicas(rs);
                if s == 0 {
                    continue;
                }
                let by = s.min(budget);
                scale(&api, rs, s - by, desired, &ctx).await?;
                budget -= by;
            }
        }
    }

    // Status from the sets as the store has them.
    let all: Vec<ReplicaSet> = owned.iter().map(|rs| (**rs).clone()).collect();
    let sum = |f: &dyn Fn(&ReplicaSet) -> i32| all.iter().map(f).sum::<i32>();
    let replicas = sum(&|rs| status_of(rs).replicas);
    let ready = sum(&|rs| status_of(rs).ready_replicas.unwrap_or(0));
    let available = sum(&|rs| status_of(rs).available_replicas.unwrap_or(0));
    let updated = all
        .iter()
        .filter(|rs| is_new(rs))
        .map(|rs| status_of(rs).replicas)
        .sum::<i32>();
    let ru = spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    let min_available = desired
        - resolve(
            ru.and_then(|r| r.max_unavailable.as_ref()),
            desired,
            false,
            "25%",
        );
    let complete = updated == desired && replicas == desired && available == desired;
    if complete || spec.paused == Some(true) {
        prune_history(&api, &olds, spec.revision_history_limit.unwrap_or(10)).await?;
    }
    let now = tug_api::time::now();
    // Progress: any change in the counts renews the Progressing condition's lastUpdateTime; a
    // rollout that makes none for progressDeadlineSeconds (600 by default) has failed.
    let current = d.status.clone().unwrap_or_default();
    let progressed = current.replicas.unwrap_or(0) != replicas
        || current.updated_replicas.unwrap_or(0) != updated
        || current.ready_replicas.unwrap_or(0) != ready
        || current.available_replicas.unwrap_or(0) != available
        || current.observed_generation != d.metadata.generation;
    let previous = current
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_.as_deref() == Some("Progressing"))
        .cloned();
    let last_progress = previous
        .as_ref()
        .filter(|_| !progressed)
        .and_then(|c| c.last_update_time.as_ref().map(|t| t.0));
    let deadline = i64::from(spec.progress_deadline_seconds.unwrap_or(600));
    let stalled = !complete
        && spec.paused != Some(true)
        && last_progress
            .is_some_and(|t| jiff::Timestamp::now().as_second() - t.as_second() > deadline);
    let progress_time = last_progress
        .map(tug_api::time::rfc3339)
        .unwrap_or_else(|| now.clone());
    let rs_name = new_rs.metadata.name.clone().unwrap_or_default();
    let (progress_status, progress_reason, progress_message) = if stalled {
        (
            "False",
            "ProgressDeadlineExceeded",
            format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
        )
    } else if complete {
        (
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
        )
    } else {
        (
            "True",
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{rs_name}\" is progressing."),
        )
    };
    let new_revision = revision(&new_rs).max(max_revision.min(revision(&new_rs)));
    let status = json!({"status": {
        "observedGeneration": d.metadata.generation,
        "replicas": replicas,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "unavailableReplicas": (desired - available).max(0),
        "conditions": [
            {"type": "Available", "status": if available >= min_available { "True" } else { "False" },
             "reason": if available >= min_available { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
             "message": "Deployment availability", "lastUpdateTime": now, "lastTransitionTime": now},
            {"type": "Progressing", "status": progress_status, "reason": progress_reason,
             "message": progress_message, "lastUpdateTime": progress_time,
             "lastTransitionTime": progress_time},
        ],
    }});
    let deployments: Api<Deployment> = Api::namespaced(client, &ns);
    let has_revision = d
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        == Some(&new_revision.to_string());
    if !has_revision {
        deployments
            .patch(
                &name,
                &crate::common::patch_params(),
                &Patch::Merge(
                    &json!({"metadata": {"annotations": {REVISION: new_revision.to_string()}}}),
                ),
            )
            .await?;
    }
    let changed =
        progressed || previous.as_ref().and_then(|c| c.reason.as_deref()) != Some(progress_reason);
    if changed {
        deployments
            .patch_status(
                &name,
                &crate::common::patch_params(),
                &Patch::Merge(&status),
            )
            .await?;
    }
    Ok(Action::requeue(if complete {
        Duration::from_secs(30)
    } else {
        Duration::from_millis(500)
    }))
}

/// Deletes the oldest of the old ReplicaSets beyond the Deployment's revisionHistoryLimit, as
/// Kubernetes does once a rollout is complete (or while paused): only sets scaled to zero, with
/// no pods left and their latest spec seen.
async fn prune_history(
    api: &Api<ReplicaSet>,
    olds: &[&Arc<ReplicaSet>],
    limit: i32,
) -> Result<(), Error> {
    let mut alive: Vec<&Arc<ReplicaSet>> = olds
        .iter()
        .copied()
        .filter(|rs| rs.metadata.deletion_timestamp.is_none())
        .collect();
    let excess = alive.len() as i64 - i64::from(limit.max(0));
    if excess <= 0 {
        return Ok(());
    }
    alive.sort_by_key(|rs| revision(rs));
    for rs in alive.into_iter().take(excess as usize) {
        let status = rs.status.clone().unwrap_or_default();
        let seen = rs.metadata.generation.unwrap_or(0) <= status.observed_generation.unwrap_or(0);
        if status.replicas != 0 || spec_replicas(rs) != 0 || !seen {
            continue;
        }
        let Some(name) = rs.metadata.name.as_deref() else {
            continue;
        };
        match api.delete(name, &Default::default()).await {
            Ok(_) => tracing::info!(replicaset = %name, "pruned beyond revisionHistoryLimit"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resizing_mid_rollout_is_shared_in_proportion() {
        // 10 old and 3 new, resized to 20 with maxSurge 3: 10 more shared 7 and 2, plus 1
        // left over for the newest.
        assert_eq!(proportional(&[10, 3], 23), [17, 6]);
        // Shrinking to 5 + 3: the largest takes the rounding.
        assert_eq!(proportional(&[17, 6], 8), [5, 3]);
        assert_eq!(proportional(&[4, 0], 4), [4, 0]);
    }

    #[test]
    fn hashes_and_surge() {
        let a = template_hash(&json!({"spec": {"containers": [{"image": "a"}]}}));
        let b = template_hash(&json!({"spec": {"containers": [{"image": "b"}]}}));
        assert_ne!(a, b);
        assert_eq!(
            a,
            template_hash(&json!({"spec": {"containers": [{"image": "a"}]}}))
        );
        assert_eq!(a.len(), 10);
        assert_eq!(resolve(None, 10, true, "25%"), 3);
        assert_eq!(resolve(None, 10, false, "25%"), 2);
        assert_eq!(resolve(Some(&IntOrString::Int(1)), 10, true, "25%"), 1);
    }
}
