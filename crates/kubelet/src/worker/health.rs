//! Probes on running containers, and restarts of those whose liveness or startup probe
//! failed.

use super::*;

/// Runs the probes that are due on running containers, and restarts those whose liveness or
/// startup probe failed.
pub(super) async fn run_probes(
    shared: &Shared,
    pod: &Pod,
    state: &mut PodState,
    seen: &BTreeMap<String, Attempts>,
) {
    use crate::probes::Kind as Probe;
    let live: std::collections::HashSet<String> = seen
        .values()
        .filter_map(|a| a.latest.as_ref().map(|l| l.spec.id.clone()))
        .collect();
    state.probes.retain(&live);
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let pod_ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default();
    for (kind, c) in containers_of(pod) {
        if kind == Kind::Init {
            continue;
        }
        let Some(latest) = seen.get(&c.name).and_then(|a| a.latest.as_ref()) else {
            continue;
        };
        let ContainerState::Running { started_at, .. } = &latest.state else {
            continue;
        };
        let started = instant_of(started_at);
        let id = latest.spec.id.clone();
        let mut checks = Vec::new();
        match &c.startup_probe {
            Some(p) if state.probes.result(&id, Probe::Startup) != Some(true) => {
                checks.push((Probe::Startup, p.clone()))
            }
            _ => {
                if let Some(p) = &c.liveness_probe {
                    checks.push((Probe::Liveness, p.clone()));
                }
                if let Some(p) = &c.readiness_probe {
                    checks.push((Probe::Readiness, p.clone()));
                }
            }
        }
        for (probe_kind, probe) in checks {
            let probe = crate::probes::with_named_ports(&probe, &c);
            let Some(outcome) = state
                .probes
                .run(
                    &shared.runtime,
                    &uid,
                    &pod_ip,
                    &id,
                    probe_kind,
                    &probe,
                    started,
                )
                .await
            else {
                continue;
            };
            let about = involved(pod).field(&container_field(pod, &c.name));
            record(
                shared,
                "Warning",
                &about,
                "Unhealthy",
                &format!("{} probe failed: {}", outcome.kind.name(), outcome.message),
            );
            if outcome.settled && outcome.kind != Probe::Readiness {
                record(
                    shared,
                    "Normal",
                    &about,
                    "Killing",
                    &format!(
                        "Container {} failed {} probe, will be restarted",
                        c.name,
                        outcome.kind.name().to_lowercase()
                    ),
                );
                let grace = grace_period(pod);
                let rt = shared.runtime.clone();
                let id = id.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    rt.stop_container(&id, Duration::from_secs(grace))
                })
                .await;
                break;
            }
        }
    }
}
