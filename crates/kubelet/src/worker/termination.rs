//! Stopping a pod: preStop hooks, then its containers with their grace period, then its
//! sandbox, network and files.

use super::*;

/// Runs the preStop hooks of a pod's running containers, all at once, within `grace` seconds.
pub(super) async fn stop_hooks(shared: &Shared, pod: &Pod, grace: u64) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let running: Vec<tug_runtime::Container> = shared
        .runtime
        .list_in(&uid)
        .into_iter()
        .filter(|c| matches!(c.state, ContainerState::Running { .. }))
        .collect();
    let mut hooks = Vec::new();
    for (_, c) in containers_of(pod) {
        let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) else {
            continue;
        };
        let hook = crate::probes::hook_with_named_ports(hook, &c);
        let Some(run) = running.iter().find(|r| r.spec.name == c.name) else {
            continue;
        };
        let (rt, uid, id) = (shared.runtime.clone(), uid.clone(), run.spec.id.clone());
        let about = involved(pod).field(&container_field(pod, &c.name));
        let shared = shared.clone();
        hooks.push(async move {
            let (ok, message) = crate::probes::run_hook(
                &rt,
                &uid,
                "",
                &id,
                &hook,
                Duration::from_secs(grace.max(1)),
            )
            .await;
            if !ok {
                record(
                    &shared,
                    "Warning",
                    &about,
                    "FailedPreStopHook",
                    &format!("PreStopHook failed: {message}"),
                );
            }
        });
    }
    futures::future::join_all(hooks).await;
}

/// Stops a pod's containers (SIGTERM, then SIGKILL after its grace period), removes them and
/// its sandbox and files.
pub async fn terminate(shared: &Shared, pod: &Pod) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let grace = pod
        .metadata
        .deletion_grace_period_seconds
        .or(pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30)
        .max(0) as u64;
    stop_hooks(shared, pod, grace).await;
    shared.network.detach(pod).await;
    let rt = shared.runtime.clone();
    let paths = paths(&shared.config, pod);
    let _ = tokio::task::spawn_blocking(move || {
        let mine = rt.list_in(&uid);
        std::thread::scope(|s| {
            for c in &mine {
                let rt = &rt;
                s.spawn(move || rt.stop_container(&c.spec.id, Duration::from_secs(grace)));
            }
        });
        for c in mine {
            let _ = rt.remove_container(&c.spec.id);
        }
        rt.remove_sandbox(&uid);
        crate::volumes::teardown(&paths.dir);
        let _ = std::fs::remove_dir_all(&paths.dir);
        let _ = std::fs::remove_dir_all(&paths.logs);
    })
    .await;
    tracing::info!(pod = %name_of(pod), "pod stopped and cleaned up");
}
