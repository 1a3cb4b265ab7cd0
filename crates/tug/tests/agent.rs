//! `tug server` alone is a one-node cluster: its built-in agent runs real containers from an
//! imported busybox image. Needs root (CI is root).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tug_testkit::kubectl::{apply, eventually_within as wait_until, kubectl, ok};
use tug_testkit::server::TugServer;

const IMAGE: &str = "docker.io/library/busybox:test";

fn tug() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tug"))
}

/// A server with its agent, and the busybox test image imported into the agent's store.
fn cluster() -> (TugServer, ClusterDir) {
    let (s, dir, _) = cluster_and_args();
    (s, dir)
}

/// The server's arguments for a node agent with a pod network of its own: a bridge and a
/// block nobody else uses.
fn agent_args() -> Vec<String> {
    static CLUSTERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = CLUSTERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    [
        "--kubelet-port".to_string(),
        "0".into(),
        "--node-name".into(),
        "node-a".into(),
        "--pod-bridge".into(),
        format!("tugt{}x{n}", std::process::id() % 10_000),
        "--cluster-cidr".into(),
        format!("10.{}.0.0/16", 100 + n),
    ]
    .into()
}

/// [`cluster`], and the arguments to start its server again with.
fn cluster_and_args() -> (TugServer, ClusterDir, Vec<String>) {
    cluster_with(&[])
}

/// [`cluster_and_args`], with more server arguments.
fn cluster_with(extra: &[&str]) -> (TugServer, ClusterDir, Vec<String>) {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let archive = tug_testkit::image::busybox_archive(dir.path(), IMAGE);
    let out = Command::new(tug())
        .args(["image", "import"])
        .arg(&archive)
        .arg("--data-dir")
        .arg(data.join("agent"))
        .output()
        .expect("tug image import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut args = agent_args();
    args.extend(extra.iter().map(|a| a.to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = TugServer::start_with(tug(), &data, &argv);
    // The node may not be registered yet: a failed get is a "not yet".
    wait_until("the node is Ready", Duration::from_secs(60), || {
        jsonpath(
            &s,
            &["node", "node-a"],
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        ) == "True"
    });
    let dir = ClusterDir {
        dir,
        server: s.pid(),
    };
    (s, dir, args)
}

/// A cluster's temporary directory. Tests bind it after the server, so it is dropped first:
/// it stops the server (and so its agent) and the containers before the files go, so that
/// the agent cannot start anything in a directory being removed.
struct ClusterDir {
    dir: tempfile::TempDir,
    server: u32,
}

impl std::ops::Deref for ClusterDir {
    type Target = tempfile::TempDir;
    fn deref(&self) -> &tempfile::TempDir {
        &self.dir
    }
}

impl Drop for ClusterDir {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", &self.server.to_string()])
            .status();
        // Dead once it is a zombie (its TugServer reaps it) or gone.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && std::fs::read_to_string(format!("/proc/{}/stat", self.server))
                .is_ok_and(|st| !st.contains(") Z "))
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        tug_testkit::server::kill_agent_processes(&self.dir.path().join("data").join("agent"));
    }
}

/// Waits for a pod's phase; on timeout the failure shows the pod's status and events.
fn wait_phase(s: &TugServer, pod: &str, phase: &str, limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if jsonpath(s, &["pod", pod], "{.status.phase}") == phase {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "timed out after {limit:?} waiting for {pod} to be {phase}: {}\nevents:\n{}",
        jsonpath(s, &["pod", pod], "{.status}"),
        ok(
            s,
            &[
                "get",
                "events",
                "--field-selector",
                &format!("involvedObject.name={pod}")
            ]
        )
    );
}

/// The waiting reasons of a pod's first container, as a watch saw them over `limit`.
fn watched_reasons(kubeconfig: &Path, pod: &str, limit: Duration) -> Vec<String> {
    let out = Command::new("timeout")
        .arg(limit.as_secs().to_string())
        .arg(tug_testkit::server::kubectl_path())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args([
            "get",
            "pod",
            pod,
            "--watch",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting.reason}{\"\\n\"}",
        ])
        .output()
        .expect("kubectl get --watch");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn jsonpath(s: &TugServer, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let p = format!("jsonpath={path}");
    args.extend_from_slice(&["-o", &p]);
    let out = kubectl(s, &args, None);
    String::from_utf8_lossy(&out.stdout).to_string()
}

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
fn security_context_sets_the_user_a_read_only_root_and_capabilities() {
    let (s, _dir) = cluster();
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: secure}
spec:
  restartPolicy: Never
  securityContext: {runAsUser: 65534, runAsGroup: 65534}
  containers:
  - name: app
    image: busybox:test
    command: [sh, -c, "id -u; touch /x 2>/dev/null && echo writable || echo read-only; grep CapBnd /proc/self/status"]
    securityContext:
      readOnlyRootFilesystem: true
      allowPrivilegeEscalation: false
      capabilities: {drop: [NET_RAW]}
---
apiVersion: v1
kind: Pod
metadata: {name: plain}
spec:
  restartPolicy: Never
  containers:
  - {name: app, image: busybox:test, command: [sh, -c, "touch /x && echo writable; grep CapBnd /proc/self/status"]}
"#,
    );
    for p in ["secure", "plain"] {
        wait_phase(&s, p, "Succeeded", Duration::from_secs(60));
    }
    let secure = ok(&s, &["logs", "secure"]);
    let plain = ok(&s, &["logs", "plain"]);
    let lines: Vec<&str> = secure.lines().collect();
    assert_eq!(lines.first().copied(), Some("65534"), "{secure}");
    assert_eq!(lines.get(1).copied(), Some("read-only"), "{secure}");
    assert!(plain.starts_with("writable"), "{plain}");
    let bounding = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("CapBnd:"))
            .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
            .unwrap_or_else(|| panic!("no CapBnd in {text}"))
    };
    const NET_RAW: u64 = 1 << 13;
    assert_ne!(bounding(&plain) & NET_RAW, 0, "the default set has NET_RAW");
    assert_eq!(
        bounding(&secure) & NET_RAW,
        0,
        "a dropped capability is absent"
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
    let s2 = TugServer::start_with(tug(), &data, &argv);
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
fn logs_follow_streams_while_the_container_writes() {
    let (s, _dir) = cluster();
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: ticker}
spec:
  restartPolicy: Never
  containers:
  - {name: app, image: busybox:test, command: [sh, -c, "for i in 1 2 3 4 5 6; do echo tick $i; sleep 0.5; done"]}
"#,
    );
    wait_phase(&s, "ticker", "Running", Duration::from_secs(60));
    let mut child = Command::new(tug_testkit::server::kubectl_path())
        .arg("--kubeconfig")
        .arg(&s.kubeconfig)
        .args(["logs", "-f", "ticker"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl logs -f");
    use std::io::BufRead;
    let out = child.stdout.take().expect("stdout");
    let started = Instant::now();
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(out).lines() {
        let line = line.expect("line");
        lines.push((started.elapsed(), line));
    }
    let _ = child.wait();
    let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(
        text,
        ["tick 1", "tick 2", "tick 3", "tick 4", "tick 5", "tick 6"]
    );
    // Streamed: the last line came well after the first.
    let spread = lines[5].0 - lines[0].0;
    assert!(
        spread >= Duration::from_millis(800),
        "lines arrived at once: {lines:?}"
    );
}

#[test]
fn images_are_pulled_from_a_loopback_registry_with_and_without_basic_auth() {
    use tug_testkit::registry::Registry;
    let open = Registry::start(None);
    let locked = Registry::start(Some(("puller", "s3cret")));
    let image = tug_testkit::image::busybox(&["sh", "-c", "echo pulled"]);
    open.push("test/busybox", "v1", &image);
    locked.push("test/busybox", "v1", &image);
    let (s, _dir) = cluster();
    let pod = |name: &str, host: &str, tag: &str, secret: Option<&str>| {
        let secrets = secret
            .map(|n| format!("  imagePullSecrets: [{{name: {n}}}]\n"))
            .unwrap_or_default();
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: Never\n{secrets}  containers:\n  - {{name: app, image: \"{host}/test/busybox:{tag}\", imagePullPolicy: Always}}\n"
        )
    };
    apply(&s, &pod("anonymous", &open.host, "v1", None));
    apply(&s, &pod("missing", &open.host, "nope", None));
    apply(&s, &pod("refused", &locked.host, "v1", None));
    let out = kubectl(
        &s,
        &[
            "create",
            "secret",
            "docker-registry",
            "pull-creds",
            &format!("--docker-server={}", locked.host),
            "--docker-username=puller",
            "--docker-password=s3cret",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    apply(
        &s,
        &pod("authorized", &locked.host, "v1", Some("pull-creds")),
    );
    for p in ["anonymous", "authorized"] {
        wait_phase(&s, p, "Succeeded", Duration::from_secs(90));
        assert_eq!(ok(&s, &["logs", p]).trim(), "pulled");
    }
    let image_id = jsonpath(
        &s,
        &["pod", "anonymous"],
        "{.status.containerStatuses[0].imageID}",
    );
    assert_eq!(
        image_id,
        format!("{}/test/busybox@{}", open.host, image.digest())
    );
    // A failed pull shows ErrImagePull, then ImagePullBackOff until the next attempt (10 s
    // later), which fails the same way: a watch over that cycle sees both, in order.
    let watchers: Vec<_> = ["missing", "refused"]
        .into_iter()
        .map(|p| {
            let kubeconfig = s.kubeconfig.clone();
            std::thread::spawn(move || {
                (p, watched_reasons(&kubeconfig, p, Duration::from_secs(25)))
            })
        })
        .collect();
    for w in watchers {
        let (p, seen) = w.join().expect("watcher");
        let err = seen.iter().position(|r| r == "ErrImagePull");
        let backoff = seen.iter().rposition(|r| r == "ImagePullBackOff");
        assert!(
            matches!((err, backoff), (Some(e), Some(b)) if e < b),
            "{p}: expected ErrImagePull then ImagePullBackOff, saw {seen:?}; status {}",
            jsonpath(&s, &["pod", p], "{.status}")
        );
    }
    let message = jsonpath(
        &s,
        &[
            "events",
            "--field-selector",
            "involvedObject.name=refused,reason=Failed",
        ],
        "{.items[0].message}",
    );
    assert!(message.contains("imagePullSecret"), "{message}");
}

#[test]
fn a_deployment_becomes_ready_and_its_pods_answer_from_the_node_and_from_other_pods() {
    let (s, _dir) = cluster();
    apply(
        &s,
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: httpd
        image: busybox:test
        command: [sh, -c, "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
"#,
    );
    wait_until(
        "the deployment to be available",
        Duration::from_secs(60),
        || jsonpath(&s, &["deploy", "web"], "{.status.readyReplicas}") == "2",
    );
    let pods = jsonpath(
        &s,
        &["pods", "-l", "app=web"],
        "{range .items[*]}{.metadata.name} {.status.podIP}{\"\\n\"}{end}",
    );
    let pods: Vec<(String, String)> = pods
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, ip)| (n.to_string(), ip.to_string()))
        .collect();
    assert_eq!(pods.len(), 2, "{pods:?}");
    assert_ne!(pods[0].1, pods[1].1, "each pod has its own address");
    // From the node: the pod's address, over the bridge.
    for (name, ip) in &pods {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", &format!("http://{ip}:8080/")])
            .output()
            .expect("curl");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            name,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // From another pod.
    apply(
        &s,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: client}}\nspec:\n  restartPolicy: Never\n  containers:\n  - {{name: c, image: busybox:test, command: [sh, -c, \"timeout 5 wget -q -O - http://{}:8080/\"]}}\n",
            pods[0].1
        ),
    );
    wait_phase(&s, "client", "Succeeded", Duration::from_secs(60));
    assert_eq!(ok(&s, &["logs", "client"]).trim(), pods[0].0);
}

#[test]
fn volumes_carry_files_with_their_modes_follow_updates_and_keep_claimed_data() {
    let (s, _dir) = cluster();
    apply(
        &s,
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {a: "1"}
---
apiVersion: v1
kind: Secret
metadata: {name: sec}
stringData: {s: hush}
---
apiVersion: v1
kind: Pod
metadata: {name: files, labels: {tier: backend}}
spec:
  volumes:
  - {name: cfg, configMap: {name: cfg, defaultMode: 0400}}
  - {name: sec, secret: {secretName: sec, items: [{key: s, path: s, mode: 0440}]}}
  - {name: down, downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}, {path: name, fieldRef: {fieldPath: metadata.name}}]}}
  - name: proj
    projected:
      defaultMode: 0444
      sources:
      - configMap: {name: cfg}
      - downwardAPI: {items: [{path: ns, fieldRef: {fieldPath: metadata.namespace}}]}
  - {name: shared, emptyDir: {}}
  containers:
  - name: reader
    image: busybox:test
    command: [sh, -c, "stat -L -c '%a %n' /cfg/a /sec/s /down/name /proj/a; cat /sec/s /down/name /down/labels /proj/ns; echo; while true; do echo cfg=$(cat /cfg/a) shared=$(cat /shared/x 2>/dev/null); sleep 0.3; done"]
    volumeMounts:
    - {name: cfg, mountPath: /cfg}
    - {name: sec, mountPath: /sec}
    - {name: down, mountPath: /down}
    - {name: proj, mountPath: /proj}
    - {name: shared, mountPath: /shared}
  - name: writer
    image: busybox:test
    command: [sh, -c, "echo from-writer > /shared/x; sleep 3600"]
    volumeMounts: [{name: shared, mountPath: /shared}]
"#,
    );
    wait_until("files to run", Duration::from_secs(60), || {
        let out = kubectl(&s, &["logs", "files", "-c", "reader"], None);
        String::from_utf8_lossy(&out.stdout).contains("shared=from-writer")
    });
    let logs = ok(&s, &["logs", "files", "-c", "reader"]);
    for want in [
        "400 /cfg/a",
        "440 /sec/s",
        "644 /down/name",
        "444 /proj/a",
        "hush",
        "files",
        "tier=\"backend\"",
        "default",
        "cfg=1",
    ] {
        assert!(logs.contains(want), "{want:?} missing from:\n{logs}");
    }
    ok(
        &s,
        &["patch", "configmap", "cfg", "-p", r#"{"data":{"a":"2"}}"#],
    );
    wait_until(
        "the update to reach the volume",
        Duration::from_secs(60),
        || {
            let out = kubectl(&s, &["logs", "files", "-c", "reader", "--tail", "1"], None);
            String::from_utf8_lossy(&out.stdout).contains("cfg=2")
        },
    );

    // A claim on local-path keeps its data across the pod's deletion and re-creation.
    let claim = |name: &str, cmd: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: Never\n  volumes: [{{name: data, persistentVolumeClaim: {{claimName: keep}}}}]\n  containers:\n  - {{name: c, image: busybox:test, command: [sh, -c, \"{cmd}\"], volumeMounts: [{{name: data, mountPath: /data}}]}}\n"
        )
    };
    apply(
        &s,
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: keep}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n",
    );
    wait_until("the claim to bind", Duration::from_secs(60), || {
        jsonpath(&s, &["pvc", "keep"], "{.status.phase}") == "Bound"
    });
    assert_eq!(
        jsonpath(&s, &["pvc", "keep"], "{.spec.storageClassName}"),
        "local-path"
    );
    apply(&s, &claim("first", "echo kept > /data/file"));
    wait_phase(&s, "first", "Succeeded", Duration::from_secs(60));
    ok(&s, &["delete", "pod", "first"]);
    apply(&s, &claim("second", "cat /data/file"));
    wait_phase(&s, "second", "Succeeded", Duration::from_secs(60));
    assert_eq!(ok(&s, &["logs", "second"]).trim(), "kept");
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
  - {name: custom, image: busybox:test, terminationMessagePath: /tmp/why, command: [sh, -c, "echo -n custom > /tmp/why"]}
  - {name: logs, image: busybox:test, terminationMessagePolicy: FallbackToLogsOnError, command: [sh, -c, "echo oops; exit 1"]}
"#,
    );
    wait_phase(&s, "farewell", "Failed", Duration::from_secs(60));
    let message = |c: &str| {
        jsonpath(
            &s,
            &["pod", "farewell"],
            &format!("{{.status.containerStatuses[?(@.name==\"{c}\")].state.terminated.message}}"),
        )
    };
    assert_eq!(message("file"), "bye");
    assert_eq!(message("custom"), "custom");
    assert_eq!(message("logs").trim(), "oops");
}

#[test]
fn image_garbage_collection_removes_unused_images_only() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let agent_dir = data.join("agent");
    // Two images (their configurations differ), sharing their one layer.
    for (name, cmd) in [(IMAGE, "sh"), ("docker.io/library/spare:1", "true")] {
        let archive = dir.path().join("image.tar");
        tug_testkit::image::write_oci_archive(&archive, name, &[cmd]);
        let out = Command::new(tug())
            .args(["image", "import"])
            .arg(&archive)
            .arg("--name")
            .arg(name)
            .arg("--data-dir")
            .arg(&agent_dir)
            .output()
            .expect("import");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut args = agent_args();
    // Collect whenever anything is on disk, every second, images unused for 10 s.
    for a in [
        "--image-gc-high-threshold",
        "0",
        "--image-gc-low-threshold",
        "0",
        "--image-gc-period",
        "1",
        "--image-gc-min-age",
        "10",
    ] {
        args.push(a.to_string());
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = TugServer::start_with(tug(), &data, &argv);
    apply(
        &s,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: user}\nspec:\n  containers:\n  - {name: c, image: busybox:test, imagePullPolicy: Never, command: [sleep, \"3600\"]}\n",
    );
    wait_phase(&s, "user", "Running", Duration::from_secs(60));
    let images = || {
        let out = Command::new(tug())
            .args(["image", "ls", "--data-dir"])
            .arg(&agent_dir)
            .output()
            .expect("image ls");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    wait_until(
        "the unused image to be collected",
        Duration::from_secs(60),
        || !images().contains("spare"),
    );
    assert!(
        images().contains("busybox:test"),
        "the image in use stays: {}",
        images()
    );
}

#[test]
fn the_runtime_default_seccomp_profile_refuses_what_it_should() {
    let (s, _dir) = cluster();
    // unshare(2) of a user namespace needs no privilege: only the profile refuses it.
    let pod = |name: &str, profile: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: Never\n  securityContext: {{seccompProfile: {{type: {profile}}}}}\n  containers:\n  - {{name: c, image: busybox:test, command: [sh, -c, \"unshare -U true && echo allowed || echo refused\"]}}\n"
        )
    };
    apply(&s, &pod("confined", "RuntimeDefault"));
    apply(&s, &pod("unconfined", "Unconfined"));
    for p in ["confined", "unconfined"] {
        wait_phase(&s, p, "Succeeded", Duration::from_secs(60));
    }
    assert!(ok(&s, &["logs", "confined"]).contains("refused"));
    assert!(ok(&s, &["logs", "unconfined"]).contains("allowed"));
    let status = jsonpath(
        &s,
        &["pod", "confined"],
        "{.status.containerStatuses[0].state.terminated.reason}",
    );
    assert_eq!(status, "Completed");
}

#[test]
fn containers_get_service_account_tokens_that_the_api_server_accepts() {
    use base64::Engine;
    let (s, _dir) = cluster();
    apply(
        &s,
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: creds}}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: {IMAGE}
    command: [sh, -c, 'd=/var/run/secrets/kubernetes.io/serviceaccount; cat $d/namespace; echo; cat $d/token; echo; cat /var/run/secrets/tokens/vault; echo; stat -L -c %a /var/run/secrets/tokens/vault; cat $d/ca.crt']
    volumeMounts: [{{name: vault, mountPath: /var/run/secrets/tokens}}]
  volumes:
  - name: vault
    projected:
      defaultMode: 0440
      sources: [{{serviceAccountToken: {{audience: vault, expirationSeconds: 600, path: vault}}}}]
"#
        ),
    );
    wait_phase(&s, "creds", "Succeeded", Duration::from_secs(60));
    let logs = ok(&s, &["logs", "creds"]);
    let mut lines = logs.lines();
    let (namespace, token, vault, mode) = (
        lines.next().unwrap_or_default(),
        lines.next().unwrap_or_default().to_string(),
        lines.next().unwrap_or_default().to_string(),
        lines.next().unwrap_or_default(),
    );
    let ca: Vec<&str> = lines.collect();
    assert_eq!(namespace, "default", "{logs}");
    assert_eq!(mode, "440", "{logs}");
    let cluster_ca = std::fs::read_to_string(s.data_dir.join("pki/ca.crt")).expect("ca.crt");
    assert_eq!(ca.join("\n").trim(), cluster_ca.trim(), "{logs}");

    // The mounted token is the pod's: the API server knows who it is and which pod holds it.
    let o = tug_testkit::kubectl::kubectl_with_token(&s, &token, &["auth", "whoami", "-o", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let review: serde_json::Value = serde_json::from_slice(&o.stdout).expect("whoami json");
    let user = &review["status"]["userInfo"];
    assert_eq!(user["username"], "system:serviceaccount:default:default");
    assert_eq!(
        user["extra"]["authentication.kubernetes.io/pod-name"][0],
        "creds"
    );
    assert_eq!(
        user["extra"]["authentication.kubernetes.io/node-name"][0],
        "node-a"
    );

    // The projected one is for its audience only.
    let payload = vault.split('.').nth(1).expect("a JWT");
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url"),
    )
    .expect("claims");
    assert_eq!(claims["aud"], serde_json::json!(["vault"]));
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], "creds");
    assert_eq!(
        claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0),
        600
    );
    let o = tug_testkit::kubectl::kubectl_with_token(&s, &vault, &["auth", "whoami"]);
    assert!(
        !o.status.success(),
        "a token for another audience was accepted"
    );
}

#[test]
fn a_memory_backed_empty_dir_is_a_tmpfs_of_its_size_limit_gone_with_the_pod() {
    let (s, _dir) = cluster();
    apply(
        &s,
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: ram}}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: {IMAGE}
    command: [sh, -c, 'grep " /cache " /proc/mounts | cut -d" " -f1,3; dd if=/dev/zero of=/cache/a bs=1024 count=512 2>/dev/null && echo fits; dd if=/dev/zero of=/cache/b bs=1024 count=1024 2>/dev/null || echo full; sleep 3600']
    volumeMounts: [{{name: cache, mountPath: /cache}}]
  volumes:
  - name: cache
    emptyDir: {{medium: Memory, sizeLimit: 1Mi}}
"#
        ),
    );
    wait_phase(&s, "ram", "Running", Duration::from_secs(60));
    wait_until("the writes to finish", Duration::from_secs(30), || {
        ok(&s, &["logs", "ram"]).contains("full")
    });
    assert_eq!(ok(&s, &["logs", "ram"]), "tmpfs tmpfs\nfits\nfull\n");
    let uid = jsonpath(&s, &["pod", "ram"], "{.metadata.uid}");
    let on_host = || {
        std::fs::read_to_string("/proc/mounts")
            .expect("/proc/mounts")
            .lines()
            .filter(|l| l.contains(&uid) && l.contains("empty-dir"))
            .count()
    };
    assert_eq!(
        on_host(),
        1,
        "the tmpfs is mounted under the pod's directory"
    );
    ok(&s, &["delete", "pod", "ram", "--grace-period=1"]);
    wait_until("the tmpfs to be unmounted", Duration::from_secs(30), || {
        on_host() == 0
    });
}

#[test]
fn containers_see_each_others_processes_only_when_the_pod_shares_its_process_namespace() {
    let (s, _dir) = cluster();
    for (name, share) in [("shared", true), ("apart", false)] {
        apply(
            &s,
            &format!(
                r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  shareProcessNamespace: {share}
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: a, image: {IMAGE}, command: [tail, -f, /dev/null]}}
  - name: b
    image: {IMAGE}
    command: [sh, -c, 'sleep 1; pidof tail >/dev/null && echo sees-tail || echo no-tail; tr "\0" " " </proc/1/cmdline; echo; sleep 3600']
"#
            ),
        );
    }
    for name in ["shared", "apart"] {
        wait_phase(&s, name, "Running", Duration::from_secs(60));
        wait_until("b's report", Duration::from_secs(30), || {
            ok(&s, &["logs", name, "-c", "b"]).lines().count() >= 2
        });
    }
    let shared = ok(&s, &["logs", "shared", "-c", "b"]);
    let mut lines = shared.lines();
    assert_eq!(lines.next(), Some("sees-tail"), "{shared}");
    // Pid 1 is the pod's sandbox, as the pause container is in Kubernetes.
    assert!(
        lines.next().is_some_and(|l| l.contains("__sandbox")),
        "{shared}"
    );
    let apart = ok(&s, &["logs", "apart", "-c", "b"]);
    let mut lines = apart.lines();
    assert_eq!(lines.next(), Some("no-tail"), "{apart}");
    assert!(
        lines.next().is_some_and(|l| l.starts_with("sh -c")),
        "{apart}"
    );
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

/// The outside network's addresses: the node's end and the namespace's (198.18.0.0/15 is set
/// aside for tests like this; these machines' own network is 192.0.2.0/24).
const OUTSIDE_NODE: &str = "198.18.7.1";
const OUTSIDE_FAR: &str = "198.18.7.2";

/// A network namespace of the test's own standing for the world outside the cluster: a veth
/// pair with OUTSIDE_NODE/30 on the node's side and OUTSIDE_FAR/30 inside, where busybox httpd
/// answers `/cgi-bin/ip` with the address the request came from. Removed when dropped.
struct Outside {
    ns: String,
    httpd: std::process::Child,
}

impl Outside {
    fn start(dir: &Path) -> Outside {
        let id = std::process::id() % 100_000;
        let (ns, host, inner) = (
            format!("tugout{id}"),
            format!("tugo{id}h"),
            format!("tugo{id}i"),
        );
        let www = dir.join("outside-www");
        std::fs::create_dir_all(www.join("cgi-bin")).expect("www");
        std::fs::write(
            www.join("cgi-bin/ip"),
            "#!/bin/sh\necho Content-Type: text/plain\necho\necho \"$REMOTE_ADDR\"\n",
        )
        .expect("cgi script");
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(www.join("cgi-bin/ip"), mode).expect("chmod");
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("ip");
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let addrs = Command::new("ip")
            .args(["-br", "addr"])
            .output()
            .expect("ip addr");
        assert!(
            !String::from_utf8_lossy(&addrs.stdout).contains("198.18.7."),
            "the outside network's range is in use on this machine"
        );
        ip(&["netns", "add", &ns]);
        ip(&[
            "link", "add", &host, "type", "veth", "peer", "name", &inner, "netns", &ns,
        ]);
        ip(&["addr", "add", &format!("{OUTSIDE_NODE}/30"), "dev", &host]);
        ip(&["link", "set", &host, "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{OUTSIDE_FAR}/30"),
            "dev",
            &inner,
        ]);
        ip(&["-n", &ns, "link", "set", &inner, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        let httpd = Command::new("ip")
            .args([
                "netns", "exec", &ns, "busybox", "httpd", "-f", "-p", "8080", "-h",
            ])
            .arg(&www)
            .spawn()
            .expect("httpd in the outside namespace");
        Outside { ns, httpd }
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = self.httpd.kill();
        let _ = self.httpd.wait();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

#[test]
fn traffic_leaving_the_pod_range_is_masqueraded_and_pod_to_pod_traffic_is_not() {
    let (s, dir) = cluster();
    let _outside = Outside::start(dir.path());
    let echo_ip = "mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' > /www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && exec httpd -f -p 8080 -h /www";
    apply(
        &s,
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: echo}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: c, image: {IMAGE}, command: [sh, -c, "{echo_ip}"]}}
"#
        ),
    );
    wait_phase(&s, "echo", "Running", Duration::from_secs(60));
    let echo = jsonpath(&s, &["pod", "echo"], "{.status.podIP}");
    apply(
        &s,
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: {IMAGE}
    command: [sh, -c, "sleep 1; timeout 10 wget -q -O - http://{OUTSIDE_FAR}:8080/cgi-bin/ip; timeout 10 wget -q -O - http://{echo}:8080/cgi-bin/ip"]
"#
        ),
    );
    wait_phase(&s, "client", "Succeeded", Duration::from_secs(60));
    let client = jsonpath(&s, &["pod", "client"], "{.status.podIP}");
    let seen = ok(&s, &["logs", "client"]);
    // httpd reports IPv4 peers of its dual-stack socket as [::ffff:a.b.c.d].
    let mut lines = seen
        .lines()
        .map(|l| l.trim_start_matches("[::ffff:").trim_end_matches(']'));
    // Outside the cluster the pod appears as the node; inside it, as itself.
    assert_eq!(lines.next(), Some(OUTSIDE_NODE), "{seen}");
    assert_eq!(lines.next(), Some(client.as_str()), "{seen}");
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
fn kubectl_exec_runs_commands_passes_stdin_and_exit_codes_and_cleans_up_after_a_lost_client() {
    let (s, _dir) = cluster();
    apply(
        &s,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: shell}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: c, image: {IMAGE}, command: [sleep, \"3600\"]}}\n"
        ),
    );
    wait_phase(&s, "shell", "Running", Duration::from_secs(60));
    assert_eq!(
        ok(&s, &["exec", "shell", "--", "cat", "/etc/hostname"]).trim(),
        "shell"
    );
    let o = kubectl(
        &s,
        &[
            "exec",
            "shell",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        None,
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n");
    assert!(String::from_utf8_lossy(&o.stderr).contains("err"));
    let o = kubectl(
        &s,
        &["exec", "-i", "shell", "--", "tr", "a-z", "A-Z"],
        Some("piped in\n"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "PIPED IN\n");
    let o = kubectl(&s, &["exec", "shell", "--", "no-such-command"], None);
    assert!(!o.status.success());

    // A client that goes away mid-command takes the command with it.
    let mut lost = Command::new(tug_testkit::server::kubectl_path())
        .env("KUBECONFIG", &s.kubeconfig)
        .args([
            "exec",
            "shell",
            "--",
            "sh",
            "-c",
            "echo started; exec sleep 4242",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl exec");
    let sleeping = || {
        std::fs::read_dir("/proc")
            .expect("/proc")
            .flatten()
            .filter(|e| {
                std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x004242\x00")
            })
            .count()
    };
    wait_until("the command to start", Duration::from_secs(30), || {
        sleeping() == 1
    });
    let _ = lost.kill();
    let _ = lost.wait();
    wait_until("the command to be killed", Duration::from_secs(30), || {
        sleeping() == 0
    });
}

#[test]
fn kubectl_cp_copies_a_file_in_and_a_directory_out_byte_for_byte() {
    let (s, dir) = cluster();
    apply(
        &s,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: box}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: c, image: {IMAGE}, command: [sleep, \"3600\"]}}\n"
        ),
    );
    wait_phase(&s, "box", "Running", Duration::from_secs(60));
    // Every byte value, more than one pipe buffer's worth.
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let local = dir.path().join("payload.bin");
    std::fs::write(&local, &payload).expect("payload");
    ok(
        &s,
        &["cp", &local.display().to_string(), "box:/tmp/payload.bin"],
    );
    ok(
        &s,
        &[
            "exec",
            "box",
            "--",
            "sh",
            "-c",
            "mkdir -p /out/sub && cp /tmp/payload.bin /out/sub/copy.bin && echo note > /out/note.txt",
        ],
    );
    let back = dir.path().join("back");
    ok(&s, &["cp", "box:/out", &back.display().to_string()]);
    assert_eq!(
        std::fs::read(back.join("sub/copy.bin")).expect("copied out"),
        payload
    );
    assert_eq!(
        std::fs::read_to_string(back.join("note.txt")).expect("note"),
        "note\n"
    );
}

#[test]
fn kubectl_attach_sees_what_a_running_container_writes() {
    let (s, _dir) = cluster();
    apply(
        &s,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: talker}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: c, image: {IMAGE}, command: [sh, -c, 'i=0; while true; do i=$((i+1)); echo tick-$i; echo tock-$i >&2; sleep 0.2; done']}}\n"
        ),
    );
    wait_phase(&s, "talker", "Running", Duration::from_secs(60));
    let mut attached = Command::new(tug_testkit::server::kubectl_path())
        .env("KUBECONFIG", &s.kubeconfig)
        .args(["attach", "talker"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl attach");
    std::thread::sleep(Duration::from_secs(3));
    let _ = attached.kill();
    let out = attached.wait_with_output().expect("attach output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ticks: Vec<&str> = stdout.lines().filter(|l| l.starts_with("tick-")).collect();
    assert!(ticks.len() >= 5, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("tock-"), "stderr: {stderr}");
    // Only what was written after attaching: not the container's first line.
    assert!(!ticks.contains(&"tick-1"), "{stdout}");
}

#[test]
fn an_interactive_exec_through_a_terminal_runs_commands_and_sees_resizes() {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let (s, _dir) = cluster();
    apply(
        &s,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: term}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: c, image: {IMAGE}, command: [sleep, \"3600\"]}}\n"
        ),
    );
    wait_phase(&s, "term", "Running", Duration::from_secs(60));
    let size = |rows, cols| nix::libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // kubectl gets a terminal of its own, as a user's shell would give it.
    let pty = nix::pty::openpty(Some(&size(24, 80)), None).expect("openpty");
    let slave = std::fs::File::from(pty.slave);
    let mut cmd = Command::new(tug_testkit::server::kubectl_path());
    cmd.env("KUBECONFIG", &s.kubeconfig)
        .args(["exec", "-it", "term", "--", "sh"])
        .stdin(slave.try_clone().expect("slave"))
        .stdout(slave.try_clone().expect("slave"))
        .stderr(slave);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::libc::setsid();
            nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0);
            Ok(())
        });
    }
    let mut kubectl = cmd.spawn().expect("kubectl exec -it");
    drop(cmd);
    let mut master = std::fs::File::from(pty.master);
    let screen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    {
        let (mut reader, screen) = (master.try_clone().expect("master"), screen.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut sc) = screen.lock() {
                    sc.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
    }
    let seen = |what: &str| screen.lock().map(|s| s.contains(what)).unwrap_or(false);
    std::thread::sleep(Duration::from_secs(1));
    master.write_all(b"echo answer-$((6*7))\n").expect("type");
    wait_until("the shell to answer", Duration::from_secs(30), || {
        seen("answer-42")
    });
    // The terminal grows: kubectl passes it on, and the shell's terminal follows.
    // SAFETY: TIOCSWINSZ with a winsize we own.
    unsafe { nix::libc::ioctl(master.as_raw_fd(), nix::libc::TIOCSWINSZ, &size(33, 101)) };
    std::thread::sleep(Duration::from_secs(1));
    master.write_all(b"stty size\n").expect("type");
    wait_until("the new size inside", Duration::from_secs(30), || {
        seen("33 101")
    });
    master.write_all(b"exit 5\n").expect("type");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = kubectl.try_wait().expect("wait") {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "kubectl did not end: {}",
            screen.lock().map(|s| s.clone()).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(5));
}
