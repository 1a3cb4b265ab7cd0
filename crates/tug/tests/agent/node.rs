//! The node itself: restarts of the agent, resource usage reports, pressure conditions.

use super::*;

#[test]
fn restarting_the_agent_keeps_containers_running_and_adopts_them() {
    let (mut s, dir, args) = cluster_and_args();
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: steady}
spec:
  containers:
  - {name: app, image: busybox:test, command: [sh, -c, "echo started; sleep 3600"]}
"#,
    );
    wait_until("steady to run", Duration::from_secs(60), || {
        !jsonpath(
            &s,
            &["pod", "steady"],
            "{.status.containerStatuses[0].state.running.startedAt}",
        )
        .is_empty()
    });
    let before = jsonpath(
        &s,
        &["pod", "steady"],
        "{.status.containerStatuses[0].containerID}",
    );
    let pid_file = s
        .data_dir
        .join("agent/containers")
        .join(before.trim_start_matches("tugboat://"))
        .join("pid");
    let pid = std::fs::read_to_string(&pid_file).expect("the container's pid");
    // The whole server goes, the agent with it; the container stays.
    s.kill();
    assert!(
        Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "the container survived its agent"
    );
    let data = dir.path().join("data");
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let s2 = TugServer::start_with(tug_bin!(), &data, &argv);
    wait_until(
        "the node to be Ready again",
        Duration::from_secs(60),
        || {
            ok(
                &s2,
                &[
                    "get",
                    "node",
                    "node-a",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ],
            ) == "True"
        },
    );
    // Same container, not restarted, still running, and its logs still served.
    std::thread::sleep(Duration::from_secs(2));
    let status = jsonpath(
        &s2,
        &["pod", "steady"],
        "{.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount} {.status.phase}",
    );
    assert_eq!(status, format!("{before} 0 Running"));
    assert_eq!(std::fs::read_to_string(&pid_file).expect("pid"), pid);
    assert_eq!(ok(&s2, &["logs", "steady"]).trim(), "started");
}

#[test]
fn the_kubelet_reports_resource_usage_per_pod_and_container() {
    let (s, _dir) = cluster();
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: busy}
spec:
  containers:
  - {name: app, image: busybox:test, command: [sh, -c, "head -c 8388608 /dev/zero > /dev/shm/fill; while true; do :; done"]}
"#,
    );
    wait_phase(&s, "busy", "Running", Duration::from_secs(60));
    let summary = |s: &TugServer| -> serde_json::Value {
        let raw = ok(
            s,
            &["get", "--raw", "/api/v1/nodes/node-a/proxy/stats/summary"],
        );
        serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{e}: {raw}"))
    };
    let mut pod = serde_json::Value::Null;
    wait_until("the pod's usage", Duration::from_secs(60), || {
        let doc = summary(&s);
        pod = doc["pods"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["podRef"]["name"] == "busy").cloned())
            .unwrap_or_default();
        pod["cpu"]["usageNanoCores"].as_u64().is_some_and(|n| n > 0)
    });
    assert_eq!(pod["podRef"]["namespace"], "default");
    assert_eq!(pod["containers"][0]["name"], "app");
    let memory = pod["memory"]["workingSetBytes"].as_u64().unwrap_or(0);
    assert!(memory >= 8 << 20, "the 8 MiB in /dev/shm count: {memory}");
    let metrics = ok(
        &s,
        &[
            "get",
            "--raw",
            "/api/v1/nodes/node-a/proxy/metrics/resource",
        ],
    );
    assert!(
        metrics.contains(
            r#"container_memory_working_set_bytes{container="app",namespace="default",pod="busy"}"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("node_cpu_usage_seconds_total "),
        "{metrics}"
    );
}

#[test]
fn crossing_an_eviction_threshold_puts_the_node_under_pressure_and_taints_it() {
    // No host has a petabyte free, every host has fewer threads than pid_max, and nothing is
    // below 0% free.
    let (s, _dir, _) = cluster_with(&[
        "--eviction-hard",
        "memory.available<1000Ti,pid.available<100%,nodefs.available<0%,imagefs.available<0%,nodefs.inodesFree<0%",
    ]);
    let condition = |kind: &str| {
        jsonpath(
            &s,
            &["node", "node-a"],
            &format!("{{.status.conditions[?(@.type==\"{kind}\")].status}}"),
        )
    };
    assert_eq!(condition("MemoryPressure"), "True");
    assert_eq!(condition("PIDPressure"), "True");
    assert_eq!(condition("DiskPressure"), "False");
    assert_eq!(condition("Ready"), "True");
    wait_until("the pressure taints", Duration::from_secs(30), || {
        let taints = jsonpath(&s, &["node", "node-a"], "{.spec.taints[*].key}");
        taints.contains("node.kubernetes.io/memory-pressure")
            && taints.contains("node.kubernetes.io/pid-pressure")
            && !taints.contains("node.kubernetes.io/disk-pressure")
    });
    // A pod that does not tolerate them is not scheduled there.
    ok(
        &s,
        &[
            "run",
            "shy",
            "--image=busybox:test",
            "--restart=Never",
            "--",
            "true",
        ],
    );
    wait_until(
        "the scheduler to refuse the node",
        Duration::from_secs(30),
        || {
            jsonpath(
                &s,
                &["pod", "shy"],
                "{.status.conditions[?(@.type==\"PodScheduled\")].message}",
            )
            .contains("node.kubernetes.io/memory-pressure")
        },
    );
}

#[test]
fn a_deleted_node_lease_is_renewed_into_existence_and_the_node_stays_ready() {
    let (s, _dir) = cluster();
    let lease = || {
        jsonpath(
            &s,
            &["lease", "-n", "kube-node-lease", "node-a"],
            "{.metadata.uid}",
        )
    };
    let before = lease();
    assert!(!before.is_empty(), "node-a has no Lease");
    ok(&s, &["delete", "lease", "-n", "kube-node-lease", "node-a"]);
    wait_until(
        "the kubelet to create its Lease again (it renews every 10 s)",
        Duration::from_secs(30),
        || {
            let now = lease();
            !now.is_empty() && now != before
        },
    );
    assert_eq!(
        jsonpath(
            &s,
            &["node", "node-a"],
            "{.status.conditions[?(@.type==\"Ready\")].status}"
        ),
        "True"
    );
}

/// A pod marked not Ready by someone else (the node lifecycle controller does it when a node
/// stops reporting) is marked Ready again by its kubelet once it sees the change, as
/// Kubernetes' status manager does: the kubelet's status wins for the conditions it owns.
#[test]
fn the_kubelet_puts_back_a_ready_condition_someone_else_changed() {
    let (s, _dir) = cluster();
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: steady}
spec:
  containers:
  - {name: app, image: busybox:test, command: [sleep, "3600"]}
"#,
    );
    let ready = || {
        jsonpath(
            &s,
            &["pod", "steady"],
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        )
    };
    wait_until("steady to be Ready", Duration::from_secs(60), || {
        ready() == "True"
    });
    let patched = ok(
        &s,
        &[
            "patch",
            "pod",
            "steady",
            "--subresource=status",
            "--type=strategic",
            "-p",
            r#"{"status":{"conditions":[{"type":"Ready","status":"False","reason":"NodeNotReady"}]}}"#,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status} {.status.conditions[?(@.type==\"Ready\")].reason}",
        ],
    );
    assert_eq!(patched, "False NodeNotReady", "the patch took");
    wait_until(
        "the kubelet to mark steady Ready again",
        Duration::from_secs(30),
        || ready() == "True",
    );
}
