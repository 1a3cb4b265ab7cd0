//! Starting a pod's containers in order (init containers, sidecars, then the app
//! containers), with CrashLoopBackOff between restarts.

use super::*;

/// Starts what should run now, in order.
pub(super) async fn run_containers(
    shared: &Shared,
    pod: &Pod,
    state: &mut PodState,
    seen: &mut BTreeMap<String, Attempts>,
    paths: &PodPaths,
) -> anyhow::Result<()> {
    let policy = restart_policy(pod);
    let mut volumes_ready: Option<volumes::Mounted> = None;
    for (kind, c) in containers_of(pod) {
        let a = seen.get(&c.name).cloned().unwrap_or_default();
        let start = match &a.latest {
            None => true,
            Some(latest) => match &latest.state {
                ContainerState::Running { .. } | ContainerState::Unknown => false,
                ContainerState::Exited(exit) => {
                    if should_restart(kind, &policy, exit.exit_code) {
                        // Backoff: each restart waits twice as long, from 10 s up to 5 min,
                        // reset after 10 minutes of running well.
                        let ran = exit
                            .finished_at
                            .parse::<jiff::Timestamp>()
                            .ok()
                            .zip(exit.started_at.parse::<jiff::Timestamp>().ok())
                            .map(|(f, s)| f.as_second() - s.as_second())
                            .unwrap_or(0);
                        let now = Instant::now();
                        match state.backoff.get(&c.name).copied() {
                            Some((until, delay)) if now < until => {
                                state.waiting.insert(
                                    c.name.clone(),
                                    Waiting {
                                        reason: "CrashLoopBackOff".into(),
                                        message: format!(
                                            "back-off {}s restarting failed container={} pod={}_{}({})",
                                            delay.as_secs(),
                                            c.name,
                                            pod.metadata.name.as_deref().unwrap_or(""),
                                            pod.metadata.namespace.as_deref().unwrap_or(""),
                                            pod.metadata.uid.as_deref().unwrap_or("")
                                        ),
                                    },
                                );
                                false
                            }
                            previous => {
                                // Restart now; the next restart waits twice as long.
                                let next = match previous {
                                    Some((_, d)) if ran < 600 => (d * 2).min(MAX_BACKOFF),
                                    _ => BACKOFF,
                                };
                                state.backoff.insert(c.name.clone(), (now + next, next));
                                true
                            }
                        }
                    } else {
                        false
                    }
                }
            },
        };
        if start {
            if volumes_ready.is_none() {
                match volumes::setup(&shared.client, pod, &paths.dir).await {
                    Ok(v) => volumes_ready = Some(v),
                    Err(e) => {
                        record(shared, "Warning", &involved(pod), "FailedMount", &e.0);
                        state.waiting.insert(
                            c.name.clone(),
                            Waiting {
                                reason: "ContainerCreating".into(),
                                message: e.0.clone(),
                            },
                        );
                        return Ok(());
                    }
                }
            }
            let vols = volumes_ready.clone().unwrap_or_default();
            let attempt = a.latest.as_ref().map_or(0, |l| l.spec.attempt + 1);
            let t0 = Instant::now();
            start_container(shared, pod, state, &c, &vols, paths, attempt).await;
            tracing::debug!(pod = %name_of(pod), container = %c.name, took = ?t0.elapsed(), "container started");
            *seen = attempts(
                shared.runtime.as_ref(),
                pod.metadata.uid.as_deref().unwrap_or(""),
            );
        }
        // Ordering: an init container must finish, a sidecar must have started, before the
        // next one starts.
        let now_state = seen
            .get(&c.name)
            .and_then(|a| a.latest.clone())
            .map(|c| c.state);
        match kind {
            Kind::Init => match now_state {
                Some(ContainerState::Exited(e)) if e.exit_code == 0 => continue,
                _ => return Ok(()),
            },
            Kind::Sidecar => match now_state {
                Some(ContainerState::Running { .. }) => continue,
                _ => return Ok(()),
            },
            Kind::App | Kind::Ephemeral => continue,
        }
    }
    Ok(())
}

/// `pod` with its IP (from its sandbox) and its node's IP in its status, where the status
/// does not carry them yet.
fn with_addresses(pod: &Pod, pod_ip: Option<&str>, host_ip: &str) -> Pod {
    let mut pod = pod.clone();
    let status = pod.status.get_or_insert_with(Default::default);
    if let Some(ip) = pod_ip.filter(|ip| !ip.is_empty()) {
        if status.pod_ip.as_deref().is_none_or(str::is_empty) {
            status.pod_ip = Some(ip.to_string());
        }
        if status.pod_ips.as_ref().is_none_or(Vec::is_empty) {
            status.pod_ips = Some(vec![k8s_openapi::api::core::v1::PodIP {
                ip: ip.to_string(),
            }]);
        }
    }
    if status.host_ip.as_deref().is_none_or(str::is_empty) && !host_ip.is_empty() {
        status.host_ip = Some(host_ip.to_string());
        status.host_ips = Some(vec![k8s_openapi::api::core::v1::HostIP {
            ip: host_ip.to_string(),
        }]);
    }
    pod
}

async fn start_container(
    shared: &Shared,
    pod: &Pod,
    state: &mut PodState,
    c: &Container,
    vols: &volumes::Mounted,
    paths: &PodPaths,
    attempt: u32,
) {
    let about = involved(pod).field(&container_field(pod, &c.name));
    let rt = shared.runtime.clone();
    let events = |kind: &'static str, reason: &str, message: &str| {
        record(shared, kind, &about, reason, message)
    };
    let image = match state.pulls.ensure(shared, pod, c, &events).await {
        crate::images::Ensure::Ready(i) => i,
        crate::images::Ensure::Waiting(reason, message) => {
            state.waiting.insert(
                c.name.clone(),
                Waiting {
                    reason: reason.into(),
                    message,
                },
            );
            return;
        }
    };
    let node = (
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        crate::node::Capacity::of_host(&shared.config.data_dir).memory_bytes,
    );
    // The pod's addresses are known before its status says them: the Downward API sees them.
    let addressed = with_addresses(pod, state.pod_ip.as_deref(), &shared.config.node_ip);
    let spec = match containers::build(
        &shared.client,
        &addressed,
        c,
        &image,
        shared.runtime.as_ref(),
        vols,
        paths,
        attempt,
        node,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            record(
                shared,
                "Warning",
                &about,
                "Failed",
                &format!("Error: {}", e.0),
            );
            state.waiting.insert(
                c.name.clone(),
                Waiting {
                    reason: "CreateContainerConfigError".into(),
                    message: e.0,
                },
            );
            return;
        }
    };
    let started = tokio::task::spawn_blocking(move || rt.start_container(spec)).await;
    match started {
        Ok(Ok(id)) => {
            if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
                let (ok, message) = crate::probes::run_hook(
                    &shared.runtime,
                    pod.metadata.uid.as_deref().unwrap_or(""),
                    state.pod_ip.as_deref().unwrap_or(""),
                    &id,
                    &crate::probes::hook_with_named_ports(hook, c),
                    Duration::from_secs(30),
                )
                .await;
                if !ok {
                    let msg = format!("PostStartHook failed: {message}");
                    record(shared, "Warning", &about, "FailedPostStartHook", &msg);
                    let rt = shared.runtime.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        rt.stop_container(&id, Duration::from_secs(2))
                    })
                    .await;
                    return;
                }
            }
            state.waiting.remove(&c.name);
            record(
                shared,
                "Normal",
                &about,
                "Created",
                &format!("Created container {}", c.name),
            );
            record(
                shared,
                "Normal",
                &about,
                "Started",
                &format!("Started container {}", c.name),
            );
        }
        Ok(Err(e)) => {
            let msg = format!("Error: failed to start container \"{}\": {e}", c.name);
            record(shared, "Warning", &about, "Failed", &msg);
            // The attempt is recorded as terminated with StartError; the restart policy decides
            // what comes next, as for any other exit.
            state.waiting.remove(&c.name);
        }
        Err(e) => tracing::error!(error = %e, "the start task failed"),
    }
}
