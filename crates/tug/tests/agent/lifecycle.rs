//! Pod lifecycle: running to completion, init containers and sidecars, restarts and back-off, error reasons, probes and hooks, deadlines, termination messages, graceful deletion.

use super::*;

#[test]
fn kubectl_run_completes_and_its_logs_come_back() {
    let (s, _dir) = cluster();
    ok(
        &s,
        &[
            "run",
            "hello",
            "--image=busybox:test",
            "--restart=Never",
            "--",
            "echo",
            "hi",
        ],
    );
    wait_phase(&s, "hello", "Succeeded", Duration::from_secs(60));
    assert_eq!(ok(&s, &["logs", "hello"]).trim(), "hi");
    let status = jsonpath(
        &s,
        &["pod", "hello"],
        "{.status.containerStatuses[0].state.terminated.reason} {.status.containerStatuses[0].state.terminated.exitCode} {.status.containerStatuses[0].imageID}",
    );
    assert!(
        status.starts_with("Completed 0 docker.io/library/busybox@sha256:"),
        "{status}"
    );
}

#[test]
fn init_containers_run_in_order_and_env_comes_from_configmaps_and_fields() {
    let (s, _dir) = cluster();
    apply(
        &s,
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {greeting: hello}
---
apiVersion: v1
kind: Pod
metadata: {name: ordered, labels: {app: demo}}
spec:
  restartPolicy: Never
  volumes: [{name: shared, emptyDir: {}}]
  initContainers:
  - {name: first, image: busybox:test, command: [sh, -c, "echo first >> /work/order"], volumeMounts: [{name: shared, mountPath: /work}]}
  - {name: second, image: busybox:test, command: [sh, -c, "echo second >> /work/order"], volumeMounts: [{name: shared, mountPath: /work}]}
  containers:
  - name: app
    image: busybox:test
    command: [sh, -c, 'cat /work/order; echo "$GREETING $(POD) $APP"']
    env:
    - {name: GREETING, valueFrom: {configMapKeyRef: {name: settings, key: greeting}}}
    - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: APP, value: "$(POD)-app"}
    volumeMounts: [{name: shared, mountPath: /work}]
"#,
    );
    wait_phase(&s, "ordered", "Succeeded", Duration::from_secs(60));
    assert_eq!(
        ok(&s, &["logs", "ordered", "-c", "app"]).trim(),
        "first\nsecond\nhello ordered ordered-app"
    );
}

#[test]
fn the_downward_api_gives_the_first_container_its_pods_addresses() {
    let (s, _dir) = cluster();
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: addressed}
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: busybox:test
    command: [sh, -c, 'echo "$IP|$IPS|$HOST|$NODE|$SA"']
    env:
    - {name: IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: IPS, valueFrom: {fieldRef: {fieldPath: status.podIPs}}}
    - {name: HOST, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}
    - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: SA, valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}}
"#,
    );
    wait_phase(&s, "addressed", "Succeeded", Duration::from_secs(60));
    let want = jsonpath(
        &s,
        &["pod", "addressed"],
        "{.status.podIP}|{.status.podIP}|{.status.hostIP}|{.spec.nodeName}|default",
    );
    assert!(!want.starts_with('|'), "no pod IP: {want}");
    assert_eq!(ok(&s, &["logs", "addressed"]).trim(), want);
}

#[test]
fn a_failing_container_restarts_with_growing_delays_and_previous_logs() {
    let (s, _dir) = cluster();
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  containers:
  - {name: app, image: busybox:test, command: [sh, -c, "echo run at $(date +%s); exit 1"]}
"#,
    );
    wait_until("crasher to restart", Duration::from_secs(60), || {
        jsonpath(
            &s,
            &["pod", "crasher"],
            "{.status.containerStatuses[0].restartCount}",
        )
        .parse::<u32>()
        .is_ok_and(|n| n >= 1)
    });
    wait_until("CrashLoopBackOff", Duration::from_secs(60), || {
        jsonpath(
            &s,
            &["pod", "crasher"],
            "{.status.containerStatuses[0].state.waiting.reason}",
        ) == "CrashLoopBackOff"
    });
    let message = jsonpath(
        &s,
        &["pod", "crasher"],
        "{.status.containerStatuses[0].state.waiting.message}",
    );
    assert!(message.contains("back-off 10s"), "{message}");
    let last = jsonpath(
        &s,
        &["pod", "crasher"],
        "{.status.containerStatuses[0].lastState.terminated.exitCode}",
    );
    assert_eq!(last, "1");
    assert!(ok(&s, &["logs", "crasher", "--previous"]).starts_with("run at "));
    // After the 10 s delay it runs again, then waits 20 s.
    wait_until("a second restart", Duration::from_secs(40), || {
        jsonpath(
            &s,
            &["pod", "crasher"],
            "{.status.containerStatuses[0].restartCount}",
        )
        .parse::<u32>()
        .is_ok_and(|n| n >= 2)
    });
    wait_until("a 20 s back-off", Duration::from_secs(60), || {
        jsonpath(
            &s,
            &["pod", "crasher"],
            "{.status.containerStatuses[0].state.waiting.message}",
        )
        .contains("back-off 20s")
    });
}

#[test]
fn a_bad_command_and_a_missing_image_give_kubernetes_reasons() {
    let (s, _dir) = cluster();
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: badcmd}
spec:
  restartPolicy: Never
  containers:
  - {name: app, image: busybox:test, command: [no-such-command]}
---
apiVersion: v1
kind: Pod
metadata: {name: noimage}
spec:
  containers:
  - {name: app, image: "busybox:missing", imagePullPolicy: Never}
---
apiVersion: v1
kind: Pod
metadata: {name: nocm}
spec:
  containers:
  - name: app
    image: busybox:test
    env: [{name: X, valueFrom: {configMapKeyRef: {name: absent, key: k}}}]
"#,
    );
    wait_phase(&s, "badcmd", "Failed", Duration::from_secs(60));
    let t = jsonpath(
        &s,
        &["pod", "badcmd"],
        "{.status.containerStatuses[0].state.terminated.reason}: {.status.containerStatuses[0].state.terminated.message}",
    );
    assert!(t.starts_with("StartError"), "{t}");
    assert!(t.contains("executable file not found"), "{t}");
    wait_until("ErrImageNeverPull", Duration::from_secs(60), || {
        jsonpath(
            &s,
            &["pod", "noimage"],
            "{.status.containerStatuses[0].state.waiting.reason}",
        ) == "ErrImageNeverPull"
    });
    wait_until(
        "CreateContainerConfigError",
        Duration::from_secs(60),
        || {
            jsonpath(
                &s,
                &["pod", "nocm"],
                "{.status.containerStatuses[0].state.waiting.reason}",
            ) == "CreateContainerConfigError"
        },
    );
    let events = ok(
        &s,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=noimage",
            "-o",
            "jsonpath={.items[*].reason}",
        ],
    );
    assert!(events.contains("ErrImageNeverPull"), "{events}");
}

#[test]
fn deleting_a_pod_stops_its_container_with_sigterm() {
    let (s, dir) = cluster();
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: graceful}
spec:
  terminationGracePeriodSeconds: 20
  volumes: [{name: out, hostPath: {path: HOSTDIR, type: DirectoryOrCreate}}]
  containers:
  - name: app
    image: busybox:test
    command: [sh, -c, "trap 'echo got-term >> /out/order; exit 0' TERM; echo up > /out/up; while true; do sleep 0.1; done"]
    lifecycle:
      preStop: {exec: {command: [sh, -c, "echo pre-stop >> /out/order"]}}
    volumeMounts: [{name: out, mountPath: /out}]
"#
        .replace("HOSTDIR", &dir.path().join("out").display().to_string())
        .as_str(),
    );
    let out = dir.path().join("out");
    wait_until("the container to start", Duration::from_secs(60), || {
        out.join("up").exists()
    });
    assert_eq!(
        jsonpath(&s, &["pod", "graceful"], "{.status.phase}"),
        "Running"
    );
    ok(&s, &["delete", "pod", "graceful", "--wait=false"]);
    // The preStop hook runs first, then SIGTERM reaches the process, which exits within its
    // grace period.
    wait_until("preStop, then SIGTERM", Duration::from_secs(60), || {
        std::fs::read_to_string(out.join("order")).is_ok_and(|t| t.trim() == "pre-stop\ngot-term")
    });
}

#[test]
fn a_sidecar_runs_beside_the_app_and_post_start_runs() {
    let (s, _dir) = cluster();
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: helped}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  volumes: [{name: shared, emptyDir: {}}]
  initContainers:
  - name: helper
    image: busybox:test
    restartPolicy: Always
    command: [sh, -c, "echo sidecar-up > /shared/sidecar; while true; do sleep 0.2; done"]
    volumeMounts: [{name: shared, mountPath: /shared}]
  containers:
  - name: app
    image: busybox:test
    command: [sh, -c, "while [ ! -f /shared/poststart ]; do sleep 0.1; done; cat /shared/sidecar /shared/poststart"]
    lifecycle:
      postStart: {exec: {command: [sh, -c, "echo post-start > /shared/poststart"]}}
    volumeMounts: [{name: shared, mountPath: /shared}]
"#,
    );
    wait_phase(&s, "helped", "Succeeded", Duration::from_secs(60));
    assert_eq!(
        ok(&s, &["logs", "helped", "-c", "app"]).trim(),
        "sidecar-up\npost-start"
    );
    // Once the app is done, the sidecar is stopped too.
    wait_until("the sidecar to stop", Duration::from_secs(40), || {
        !jsonpath(
            &s,
            &["pod", "helped"],
            "{.status.initContainerStatuses[0].state.terminated.finishedAt}",
        )
        .is_empty()
    });
}

#[test]
fn probes_gate_readiness_and_restart_unhealthy_containers() {
    let (s, _dir) = cluster();
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: httpd
    image: busybox:test
    command: [sh, -c, "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"]
    readinessProbe: {httpGet: {path: /index.html, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: flaky}
spec:
  containers:
  - name: app
    image: busybox:test
    command: [sh, -c, "touch /tmp/ready; sleep 3; rm /tmp/ready; sleep 3600"]
    readinessProbe: {exec: {command: [cat, /tmp/ready]}, periodSeconds: 1, failureThreshold: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: dying}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox:test
    command: [sh, -c, "touch /tmp/alive; sleep 2; rm /tmp/alive; sleep 3600"]
    livenessProbe: {exec: {command: [cat, /tmp/alive]}, periodSeconds: 1, failureThreshold: 2}
"#,
    );
    let ready = |pod: &str| {
        jsonpath(
            &s,
            &["pod", pod],
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        )
    };
    wait_until(
        "web to be Ready through its HTTP probe",
        Duration::from_secs(60),
        || ready("web") == "True",
    );
    wait_until("flaky to be Ready", Duration::from_secs(60), || {
        ready("flaky") == "True"
    });
    wait_until(
        "flaky's failing probe to clear Ready",
        Duration::from_secs(60),
        || ready("flaky") == "False",
    );
    assert_eq!(
        jsonpath(&s, &["pod", "flaky"], "{.status.phase}"),
        "Running",
        "a failing readiness probe does not stop the container"
    );
    wait_until(
        "the liveness probe to restart dying",
        Duration::from_secs(40),
        || {
            jsonpath(
                &s,
                &["pod", "dying"],
                "{.status.containerStatuses[0].restartCount}",
            )
            .parse::<u32>()
            .is_ok_and(|n| n >= 1)
        },
    );
    let events = ok(
        &s,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=dying",
            "-o",
            "jsonpath={.items[*].reason}",
        ],
    );
    assert!(
        events.contains("Unhealthy") && events.contains("Killing"),
        "{events}"
    );
}

#[test]
fn a_container_past_its_memory_limit_is_oom_killed_and_restarted() {
    let (s, _dir) = cluster();
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: hog}
spec:
  containers:
  - name: app
    image: busybox:test
    command: [sh, -c, "head -c 67108864 /dev/zero | tail > /dev/null"]
    resources: {limits: {memory: 16Mi}}
"#,
    );
    wait_until("OOMKilled", Duration::from_secs(60), || {
        jsonpath(
            &s,
            &["pod", "hog"],
            "{.status.containerStatuses[0].lastState.terminated.reason}{.status.containerStatuses[0].state.terminated.reason}",
        )
        .contains("OOMKilled")
    });
    wait_until("a restart", Duration::from_secs(60), || {
        jsonpath(
            &s,
            &["pod", "hog"],
            "{.status.containerStatuses[0].restartCount}",
        )
        .parse::<u32>()
        .is_ok_and(|n| n >= 1)
    });
}

#[test]
fn a_pod_past_its_active_deadline_fails() {
    let (s, _dir) = cluster();
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: bounded}
spec:
  activeDeadlineSeconds: 2
  terminationGracePeriodSeconds: 1
  containers:
  - {name: app, image: busybox:test, command: [sleep, "3600"]}
"#,
    );
    wait_until("DeadlineExceeded", Duration::from_secs(60), || {
        jsonpath(&s, &["pod", "bounded"], "{.status.phase} {.status.reason}")
            == "Failed DeadlineExceeded"
    });
    wait_until("the container to stop", Duration::from_secs(60), || {
        !jsonpath(
            &s,
            &["pod", "bounded"],
            "{.status.containerStatuses[0].state.terminated.finishedAt}",
        )
        .is_empty()
    });
}

#[test]
fn termination_messages_come_from_the_file_or_the_log() {
    let (s, _dir) = cluster();
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: farewell}
spec:
  restartPolicy: Never
  containers:
  - {name: file, image: busybox:test, command: [sh, -c, "echo -n bye > /dev/termination-log; exit 2"]}
  - {name: custom, image: busybox:test, terminationMessagePath: /tmp/why, securityContext: {runAsUser: 1000}, command: [sh, -c, "echo -n custom > /tmp/why"]}
  - {name: logs, image: busybox:test, terminationMessagePolicy: FallbackToLogsOnError, command: [sh, -c, "echo -n DONE; exit 1"]}
  - {name: lines, image: busybox:test, terminationMessagePolicy: FallbackToLogsOnError, command: [sh, -c, "for i in $(seq 1 100); do echo line-$i; done; exit 1"]}
  - {name: bytes, image: busybox:test, terminationMessagePolicy: FallbackToLogsOnError, command: [sh, -c, "for i in $(seq 1 30); do printf '%0100d\\n' $i; done; exit 1"]}
"#,
    );
    wait_phase(&s, "farewell", "Failed", Duration::from_secs(60));
    let pod: serde_json::Value =
        serde_json::from_str(&ok(&s, &["get", "pod", "farewell", "-o", "json"])).expect("json");
    let message = |c: &str| -> String {
        pod["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"] == c)
            .and_then(|s| s["state"]["terminated"]["message"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(message("file"), "bye");
    // A user other than root can write the file at its own path.
    assert_eq!(message("custom"), "custom");
    // The log's end as written: no newline added to a last line that had none.
    assert_eq!(message("logs"), "DONE");
    // kubectl logs gives the output byte for byte: the partial last line stays partial.
    assert_eq!(ok(&s, &["logs", "farewell", "-c", "logs"]), "DONE");
    let mut stamped = ok(&s, &["logs", "farewell", "-c", "lines", "--tail", "2"]);
    assert_eq!(stamped, "line-99\nline-100\n");
    stamped = ok(&s, &["logs", "farewell", "-c", "logs", "--timestamps"]);
    assert!(stamped.ends_with("Z DONE"), "{stamped:?}");
    // At most the last 80 lines ...
    let lines: String = (21..=100).map(|i| format!("line-{i}\n")).collect();
    assert_eq!(message("lines"), lines);
    // ... and at most their last 2048 bytes.
    let all: String = (1..=30).map(|i| format!("{i:0100}\n")).collect();
    assert_eq!(message("bytes"), all[all.len() - 2048..]);
}

#[test]
fn grpc_probes_ask_the_health_service_and_probes_find_named_ports() {
    let (s, _dir) = cluster();
    // The health server listens on the node's loopback: hostNetwork pods probe it there.
    let health = tug_testkit::grpc::HealthServer::start();
    for (name, service) in [("grpc-up", ""), ("grpc-down", "down")] {
        apply(
            &s,
            &format!(
                r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {IMAGE}
    command: [sleep, "3600"]
    readinessProbe: {{grpc: {{port: {port}, service: "{service}"}}, periodSeconds: 1}}
"#,
                port = health.port
            ),
        );
    }
    apply(
        &s,
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: named}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: {IMAGE}
    command: [sh, -c, "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports: [{{name: web, containerPort: 8080}}]
    readinessProbe: {{httpGet: {{port: web, path: /}}, periodSeconds: 1}}
    livenessProbe: {{tcpSocket: {{port: nowhere}}, periodSeconds: 1, failureThreshold: 100}}
"#
        ),
    );
    let ready = |pod: &str| {
        jsonpath(
            &s,
            &["pod", pod],
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        )
    };
    for pod in ["grpc-up", "named"] {
        wait_until(
            &format!("{pod} to be Ready"),
            Duration::from_secs(60),
            || ready(pod) == "True",
        );
    }
    let events = |pod: &str| {
        ok(
            &s,
            &[
                "get",
                "events",
                "--field-selector",
                &format!("involvedObject.name={pod},reason=Unhealthy"),
                "-o",
                "jsonpath={.items[*].message}",
            ],
        )
    };
    wait_until(
        "the NOT_SERVING service to fail its probe",
        Duration::from_secs(60),
        || events("grpc-down").contains("service unhealthy (responded with \"NOT_SERVING\")"),
    );
    assert_eq!(ready("grpc-down"), "False");
    wait_until(
        "a port name the container lacks to fail its probe",
        Duration::from_secs(60),
        || events("named").contains("couldn't find port: nowhere"),
    );
}

#[test]
fn a_deleted_pod_shows_terminating_until_its_containers_have_stopped() {
    let (s, _dir) = cluster();
    apply(
        &s,
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: leaving}}
spec:
  terminationGracePeriodSeconds: 30
  containers:
  - name: c
    image: {IMAGE}
    command: [sh, -c, "trap 'sleep 2; exit 0' TERM; while true; do sleep 0.1; done"]
"#
        ),
    );
    wait_phase(&s, "leaving", "Running", Duration::from_secs(60));
    let asked = Instant::now();
    ok(&s, &["delete", "pod", "leaving", "--wait=false"]);
    assert_eq!(
        jsonpath(
            &s,
            &["pod", "leaving"],
            "{.metadata.deletionGracePeriodSeconds}"
        ),
        "30"
    );
    let listed = ok(&s, &["get", "pod", "leaving", "--no-headers"]);
    assert!(listed.contains("Terminating"), "{listed}");
    ok(
        &s,
        &["wait", "--for=delete", "pod/leaving", "--timeout=60s"],
    );
    // The container took 2 s to exit after SIGTERM; the kubelet deleted the pod after that,
    // well within the grace period.
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(30),
        "{took:?}"
    );
}
