//! The pod's status as the kubelet reports it: each container's state, the conditions, the
//! phase.

use super::*;

/// A finished run's termination message: the end of the file the container wrote at its
/// terminationMessagePath (its last 4096 bytes), else with FallbackToLogsOnError and a failure
/// the end of its log as written (its last 80 lines, at most 2048 bytes), else the runtime's
/// message.
fn termination_message(
    c: &Container,
    run: &tug_runtime::Container,
    exit: &tug_runtime::state::Exit,
    pod_dir: &std::path::Path,
) -> String {
    let file = containers::termination_file(pod_dir, &run.spec.name, run.spec.attempt);
    let mut msg = std::fs::read(&file)
        .map(|b| String::from_utf8_lossy(&b[b.len().saturating_sub(4096)..]).to_string())
        .unwrap_or_default();
    if msg.is_empty()
        && exit.exit_code != 0
        && c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
    {
        let tail = tug_runtime::logs::read(
            &run.spec.log_path,
            &tug_runtime::logs::ReadOptions {
                tail: Some(80),
                ..Default::default()
            },
        )
        .unwrap_or_default();
        let start = tail.len().saturating_sub(2048);
        msg = String::from_utf8_lossy(&tail[start..]).to_string();
    }
    if msg.is_empty() {
        exit.message.clone()
    } else {
        msg
    }
}

/// What every container status of a pod is built from besides the container's own runs.
struct StatusContext<'a> {
    probes: &'a crate::probes::Probes,
    pod_dir: &'a std::path::Path,
    /// The runtime's name, which prefixes container IDs (`tugboat://`, `containerd://`).
    runtime: &'a str,
}

fn container_status(
    c: &Container,
    a: Option<&Attempts>,
    waiting: Option<&Waiting>,
    image_ref: &str,
    kind: Kind,
    ctx: &StatusContext,
) -> Value {
    let StatusContext {
        probes,
        pod_dir,
        runtime,
    } = ctx;
    let image = c.image.clone().unwrap_or_default();
    let terminated = |e: &tug_runtime::state::Exit, run: &tug_runtime::Container| {
        let mut t = json!({"exitCode": e.exit_code, "reason": e.reason,
            "startedAt": api_time(&e.started_at), "finishedAt": api_time(&e.finished_at),
            "containerID": format!("{runtime}://{}", run.spec.id)});
        if let Some(s) = e.signal {
            t["signal"] = json!(s);
        }
        let message = termination_message(c, run, e, pod_dir);
        if !message.is_empty() {
            t["message"] = json!(message);
        }
        t
    };
    let mut status = json!({"name": c.name, "image": image, "imageID": image_ref,
        "restartCount": a.and_then(|a| a.latest.as_ref()).map_or(0, |l| l.spec.attempt), "ready": false, "started": false,
        "state": {"waiting": {"reason": "ContainerCreating"}}});
    if let Some(latest) = a.and_then(|a| a.latest.as_ref()) {
        status["containerID"] = json!(format!("{runtime}://{}", latest.spec.id));
        match &latest.state {
            ContainerState::Running { started_at, .. } => {
                use crate::probes::Kind as Probe;
                let id = &latest.spec.id;
                status["state"] = json!({"running": {"startedAt": api_time(started_at)}});
                let started =
                    c.startup_probe.is_none() || probes.result(id, Probe::Startup) == Some(true);
                let ready = started
                    && (c.readiness_probe.is_none()
                        || probes.result(id, Probe::Readiness) == Some(true));
                status["started"] = json!(started);
                status["ready"] = json!(kind != Kind::Init && ready);
            }
            ContainerState::Exited(e) => {
                status["state"] = json!({"terminated": terminated(e, latest)});
            }
            ContainerState::Unknown => {}
        }
        if let Some(prev) = a.and_then(|a| a.previous.as_ref())
            && let ContainerState::Exited(e) = &prev.state
        {
            status["lastState"] = json!({"terminated": terminated(e, prev)});
        }
    }
    if let Some(w) = waiting {
        let running = status["state"].get("running").is_some();
        if !running {
            // The last run's end moves to lastState while the container waits to run again.
            if let Some(t) = status["state"].get("terminated").cloned() {
                status["lastState"] = json!({"terminated": t});
            }
            let mut wj = json!({"reason": w.reason});
            if !w.message.is_empty() {
                wj["message"] = json!(w.message);
            }
            status["state"] = json!({"waiting": wj});
        }
    }
    status
}

/// Computes and writes the pod's status when it changed.
pub(super) async fn report(
    shared: &Shared,
    pod: &Pod,
    state: &mut PodState,
    seen: &BTreeMap<String, Attempts>,
    sandbox_error: Option<String>,
) -> anyhow::Result<()> {
    let policy = restart_policy(pod);
    let mut init_statuses = Vec::new();
    let mut app_statuses = Vec::new();
    let mut ephemeral_statuses = Vec::new();
    let mut initialized = true;
    let mut all_app_ready = true;
    let mut app_running = 0;
    let mut app_succeeded = 0;
    let mut app_failed = 0;
    let mut app_total = 0;
    let mut init_failed = false;
    for (kind, c) in containers_of(pod) {
        let a = seen.get(&c.name);
        let image_ref = a
            .and_then(|a| a.latest.as_ref())
            .and_then(|l| shared.runtime.find_image(&l.spec.image_id))
            .map(|i| i.repo_digests.first().cloned().unwrap_or(i.id))
            .unwrap_or_default();
        let s = container_status(
            &c,
            a,
            state.waiting.get(&c.name),
            &image_ref,
            kind,
            &StatusContext {
                probes: &state.probes,
                pod_dir: &paths(&shared.config, pod).dir,
                runtime: shared
                    .config
                    .runtime_version
                    .split("://")
                    .next()
                    .unwrap_or("tugboat"),
            },
        );
        let latest = a.and_then(|a| a.latest.as_ref()).map(|l| &l.state);
        match kind {
            Kind::Init => {
                let done = matches!(latest, Some(ContainerState::Exited(e)) if e.exit_code == 0);
                if !done {
                    initialized = false;
                }
                if let Some(ContainerState::Exited(e)) = latest
                    && e.exit_code != 0
                    && policy == "Never"
                {
                    init_failed = true;
                }
                init_statuses.push(s);
            }
            Kind::Sidecar => {
                if !matches!(latest, Some(ContainerState::Running { .. })) {
                    initialized = false;
                }
                init_statuses.push(s);
            }
            Kind::App => {
                app_total += 1;
                match latest {
                    Some(ContainerState::Running { .. }) => app_running += 1,
                    Some(ContainerState::Exited(e)) => {
                        if e.exit_code == 0 {
                            app_succeeded += 1
                        } else {
                            app_failed += 1
                        }
                    }
                    _ => {}
                }
                if s["ready"] != json!(true) {
                    all_app_ready = false;
                }
                app_statuses.push(s);
            }
            Kind::Ephemeral => ephemeral_statuses.push(s),
        }
    }
    let restarts_pending = state
        .waiting
        .values()
        .any(|w| w.reason == "CrashLoopBackOff");
    let phase = if init_failed || state.deadline_exceeded {
        "Failed"
    } else if app_running > 0 || restarts_pending && app_total > 0 && initialized {
        "Running"
    } else if app_total > 0 && app_succeeded + app_failed == app_total {
        match policy.as_str() {
            "Always" => "Running",
            "OnFailure" if app_failed > 0 => "Running",
            _ if app_failed > 0 => "Failed",
            _ => "Succeeded",
        }
    } else {
        "Pending"
    };
    let ready = phase == "Running" && all_app_ready && initialized;
    let previous_phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    // A finished pod's phase never goes back.
    let phase = if previous_phase == "Succeeded" || previous_phase == "Failed" {
        previous_phase.as_str()
    } else {
        phase
    };
    let cond = |t: &str, ok: bool, reason: Option<&str>| {
        let mut c =
            json!({"type": t, "status": if ok {"True"} else {"False"}, "lastProbeTime": null});
        if let Some(r) = reason {
            c["reason"] = json!(r);
        }
        c
    };
    let not_ready_reason = if phase == "Succeeded" || phase == "Failed" {
        Some("PodCompleted")
    } else {
        Some("ContainersNotReady")
    };
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let mut status = json!({
        "phase": phase,
        "hostIP": shared.config.node_ip,
        "hostIPs": [{"ip": shared.config.node_ip}],
        "startTime": state.start_time.clone().map(|t| api_time(&t)),
        "qosClass": qos_class(pod),
        "conditions": [
            cond("PodReadyToStartContainers", sandbox_error.is_none(), None),
            cond("Initialized", initialized, (!initialized).then_some("ContainersNotInitialized")),
            cond("Ready", ready, if ready { None } else { not_ready_reason }),
            cond("ContainersReady", ready, if ready { None } else { not_ready_reason }),
            cond("PodScheduled", true, None),
        ],
        "containerStatuses": app_statuses,
    });
    if !init_statuses.is_empty() {
        status["initContainerStatuses"] = json!(init_statuses);
    }
    if !ephemeral_statuses.is_empty() {
        status["ephemeralContainerStatuses"] = json!(ephemeral_statuses);
    }
    if state.deadline_exceeded {
        status["reason"] = json!("DeadlineExceeded");
        status["message"] = json!("Pod was active on the node longer than the specified deadline");
    }
    let pod_ip = if host_network {
        Some(shared.config.node_ip.clone())
    } else {
        state.pod_ip.clone()
    };
    if let Some(ip) = pod_ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{ "ip": ip }]);
    }
    if state.last_status.as_ref() == Some(&status)
        && !changed_by_others(pod, &status, state.written)
    {
        return Ok(());
    }
    // Transition times: keep the old one where the condition's status did not change.
    let mut to_send = status.clone();
    let old_conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    if let Some(conds) = to_send["conditions"].as_array_mut() {
        for c in conds {
            let t = c["type"].as_str().unwrap_or_default().to_string();
            let keep = old_conditions
                .iter()
                .find(|o| o.type_ == t && Some(o.status.as_str()) == c["status"].as_str())
                .and_then(|o| o.last_transition_time.as_ref().map(|t| t.0.to_string()));
            c["lastTransitionTime"] = json!(keep.map(|k| api_time(&k)).unwrap_or_else(now));
        }
    }
    let api: Api<Pod> = Api::namespaced(
        shared.client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    );
    let t0 = Instant::now();
    let written = api
        .patch_status(
            pod.metadata.name.as_deref().unwrap_or(""),
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": to_send})),
        )
        .await?;
    tracing::debug!(pod = %name_of(pod), phase, ready, took = ?t0.elapsed(), "status written");
    state.last_status = Some(status);
    state.written = revision(&written);
    Ok(())
}

/// A pod's resourceVersion as a number (0 when it has none).
fn revision(pod: &Pod) -> i64 {
    pod.metadata
        .resource_version
        .as_deref()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

/// Whether someone else changed what the kubelet reports since it last wrote it (the pod is
/// newer than that write and its phase or a condition the kubelet owns says otherwise), as
/// the node lifecycle controller does when it marks the pods of an unreachable node not
/// Ready: the kubelet then writes its status again, as Kubernetes' status manager does.
fn changed_by_others(pod: &Pod, status: &Value, written: i64) -> bool {
    if revision(pod) <= written {
        return false;
    }
    let Some(current) = pod.status.as_ref() else {
        return true;
    };
    if current.phase.as_deref() != status["phase"].as_str() {
        return true;
    }
    let conditions = current.conditions.as_deref().unwrap_or_default();
    status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|want| {
            !conditions.iter().any(|c| {
                Some(c.type_.as_str()) == want["type"].as_str()
                    && Some(c.status.as_str()) == want["status"].as_str()
            })
        })
}

/// Guaranteed, Burstable or BestEffort, from requests and limits (the API server's rule).
fn qos_class(pod: &Pod) -> &'static str {
    let spec = serde_json::to_value(&pod.spec).unwrap_or_default();
    tug_api::defaults::qos_class(&spec)
}
