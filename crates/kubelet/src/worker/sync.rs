//! One pass over a pod: its sandbox and network, its deadline, its containers and probes,
//! its status; a finished pod's leftovers stopped.

use super::*;
use files::hostname_of;

/// One pass over a pod: make the runtime match it, then report its status.
pub(super) async fn sync(shared: &Shared, pod: &Pod, state: &mut PodState) -> anyhow::Result<()> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let cfg = &shared.config;
    let rt = shared.runtime.clone();
    let paths = paths(cfg, pod);
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    // A finished pod runs nothing more.
    let finished = phase == "Succeeded" || phase == "Failed";
    if state.start_time.is_none() {
        state.start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref().map(|t| t.0.to_string()))
            .or_else(|| Some(now()));
    }
    if !finished {
        let spec = pod.spec.clone().unwrap_or_default();
        let sandbox = SandboxSpec {
            uid: uid.clone(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            hostname: hostname_of(pod),
            host_network: spec.host_network == Some(true),
            host_ipc: spec.host_ipc == Some(true),
            sysctls: spec
                .security_context
                .and_then(|s| s.sysctls)
                .unwrap_or_default()
                .into_iter()
                .map(|s| (s.name, s.value))
                .collect(),
        };
        let host_network = sandbox.host_network;
        if let Err(message) = check_sysctls(&sandbox) {
            record(
                shared,
                "Warning",
                &involved(pod),
                "SysctlForbidden",
                &message,
            );
            return report(shared, pod, state, &BTreeMap::new(), Some(message)).await;
        }
        let rt2 = rt.clone();
        let t0 = Instant::now();
        let pid = match tokio::task::spawn_blocking(move || rt2.run_sandbox(&sandbox)).await? {
            Ok(pid) => pid,
            Err(e) => {
                let message = format!("Failed to create pod sandbox: {e:#}");
                return sandbox_failed(shared, pod, state, &message, e).await;
            }
        };
        let t_sandbox = t0.elapsed();
        if !host_network && state.pod_ip.is_none() {
            // A CRI runtime's own network (its CNI configuration) may have given the IP.
            let (rt2, uid2) = (rt.clone(), uid.clone());
            state.pod_ip = tokio::task::spawn_blocking(move || rt2.sandbox_ip(&uid2)).await?;
        }
        if !host_network && state.pod_ip.is_none() {
            match shared.network.attach(pod, pid).await {
                Ok(ip) => state.pod_ip = Some(ip.to_string()),
                Err(e) => {
                    let message = format!("Failed to set up the pod's network: {e:#}");
                    return sandbox_failed(shared, pod, state, &message, e).await;
                }
            }
        }
        write_pod_files(cfg, pod, &paths.dir, state.pod_ip.as_deref())?;
        tracing::debug!(pod = %name_of(pod), sandbox = ?t_sandbox, network = ?(t0.elapsed() - t_sandbox), "sandbox ready");
    }
    let deadline = pod.spec.as_ref().and_then(|s| s.active_deadline_seconds);
    if !finished
        && !state.deadline_exceeded
        && let (Some(limit), Some(start)) = (
            deadline,
            state
                .start_time
                .as_deref()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok()),
        )
        && jiff::Timestamp::now().as_second() - start.as_second() >= limit
    {
        state.deadline_exceeded = true;
        record(
            shared,
            "Normal",
            &involved(pod),
            "DeadlineExceeded",
            "Pod was active on the node longer than the specified deadline",
        );
    }
    let mut seen = attempts(rt.as_ref(), &uid);
    if !finished && !state.deadline_exceeded {
        run_containers(shared, pod, state, &mut seen, &paths).await?;
        seen = attempts(rt.as_ref(), &uid);
        run_probes(shared, pod, state, &seen).await;
        // configMap, secret and downward API updates reach mounted volumes within seconds.
        if state
            .volumes_refreshed
            .is_none_or(|t| t.elapsed() > Duration::from_secs(2))
        {
            state.volumes_refreshed = Some(Instant::now());
            volumes::refresh(&shared.client, pod, &paths.dir).await;
        }
    }
    report(shared, pod, state, &seen, None).await?;
    // A finished pod keeps nothing running: its sidecars stop once the app containers are done.
    let terminal = state
        .last_status
        .as_ref()
        .and_then(|s| s["phase"].as_str())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    let still_running: Vec<String> = seen
        .values()
        .filter_map(|a| a.latest.as_ref())
        .filter(|l| matches!(l.state, ContainerState::Running { .. }))
        .map(|l| l.spec.id.clone())
        .collect();
    if terminal && !still_running.is_empty() {
        let grace = grace_period(pod);
        stop_hooks(shared, pod, grace).await;
        let rt = shared.runtime.clone();
        tokio::task::spawn_blocking(move || {
            std::thread::scope(|s| {
                for id in &still_running {
                    let rt = &rt;
                    s.spawn(move || rt.stop_container(id, Duration::from_secs(grace)));
                }
            })
        })
        .await?;
    }
    Ok(())
}

/// Records why the pod's sandbox could not be made ready (FailedCreatePodSandBox) and
/// reports the pod with the error.
async fn sandbox_failed(
    shared: &Shared,
    pod: &Pod,
    state: &mut PodState,
    message: &str,
    error: anyhow::Error,
) -> anyhow::Result<()> {
    record(
        shared,
        "Warning",
        &involved(pod),
        "FailedCreatePodSandBox",
        message,
    );
    let error = format!("{error:#}");
    report(shared, pod, state, &BTreeMap::new(), Some(error)).await
}

/// The sysctls any pod may set (Kubernetes' safe set); they are namespaced, so they are set
/// in the pod's own namespaces only.
const SAFE_SYSCTLS: [&str; 10] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// Refuses sysctls outside the safe set, and any a pod sharing the node's namespaces would
/// set on the node itself.
fn check_sysctls(sandbox: &SandboxSpec) -> Result<(), String> {
    for (name, _) in &sandbox.sysctls {
        if !SAFE_SYSCTLS.contains(&name.as_str()) {
            return Err(format!(
                "forbidden sysctl: \"{name}\" is not in the safe set the node allows"
            ));
        }
        let shared_with_node = if name.starts_with("net.") {
            sandbox.host_network
        } else {
            sandbox.host_ipc
        };
        if shared_with_node {
            return Err(format!(
                "forbidden sysctl: \"{name}\" would change the node, whose namespace the pod shares"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(sysctls: &[&str], host_network: bool) -> SandboxSpec {
        SandboxSpec {
            host_network,
            sysctls: sysctls
                .iter()
                .map(|s| (s.to_string(), "1".to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn only_safe_sysctls_in_the_pods_own_namespaces_pass() {
        assert!(check_sysctls(&sandbox(&["net.ipv4.tcp_syncookies"], false)).is_ok());
        assert!(check_sysctls(&sandbox(&["kernel.shm_rmid_forced"], true)).is_ok());
        assert!(check_sysctls(&sandbox(&["net.ipv4.ip_forward"], false)).is_err());
        assert!(check_sysctls(&sandbox(&["net.ipv4.tcp_syncookies"], true)).is_err());
    }
}
