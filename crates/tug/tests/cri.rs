//! The node agent on containerd: `tug server --container-runtime-endpoint` drives a real
//! containerd 1.6 with runc (started by the test with its own configuration, a CNI bridge on
//! a test subnet, and the busybox and pause test images imported), and the node agent's
//! scenarios run again on it: run and logs, a ready httpd reached by pod IP from the host and
//! from another pod, OOM kills, crash loops, probes, volumes, init containers, hooks, SIGTERM,
//! and logs -f / --previous. Needs root and containerd (CI installs it).

use std::path::Path;
use std::time::{Duration, Instant};

use tug_testkit::containerd::Containerd;
use tug_testkit::kubectl::{apply, eventually_within as wait_until, jsonpath, kubectl, ok};
use tug_testkit::server::TugServer;
use tug_testkit::tug_bin;

const IMAGE: &str = "docker.io/library/busybox:test";
const PAUSE: &str = "tug.test/pause:1";

fn wait_phase(s: &TugServer, c: &Containerd, pod: &str, phase: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while jsonpath(s, &["pod", pod], "{.status.phase}") != phase {
        assert!(
            Instant::now() < deadline,
            "{pod} never became {phase}: {}\n{}\ncontainerd: {}",
            jsonpath(s, &["pod", pod], "{.status}"),
            ok(s, &["get", "events"]),
            c.log()
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits for a container's whole log to be `want`.
fn wait_logs(s: &TugServer, pod: &str, container: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = kubectl(s, &["logs", pod, "-c", container], None);
        if o.stdout == want.as_bytes() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{pod}/{container} logged {:?} ({}), not {want:?}: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            jsonpath(s, &["pod", pod], "{.status}")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn restarts(s: &TugServer, pod: &str) -> u32 {
    jsonpath(
        s,
        &["pod", pod],
        "{.status.containerStatuses[0].restartCount}",
    )
    .parse()
    .unwrap_or(0)
}

/// containerd with the test images, and a server whose agent drives it.
fn cluster(dir: &Path) -> (TugServer, Containerd) {
    let n = std::process::id() % 200;
    let c = Containerd::start(&format!("10.250.{n}.0/24"), &format!("tugcri{n}"), PAUSE);
    let images = dir.join("images");
    std::fs::create_dir_all(&images).expect("mkdir");
    c.import(&tug_testkit::image::busybox_archive(&images, IMAGE));
    let pause = images.join("pause.tar");
    tug_testkit::image::write_oci_archive(&pause, PAUSE, &["sleep", "2147483647"]);
    c.import(&pause);
    let s = TugServer::start_with(
        tug_bin!(),
        &dir.join("data"),
        &[
            "--kubelet-port",
            "0",
            "--node-name",
            "node-cri",
            "--pod-bridge",
            &format!("tugcb{n}"),
            "--cluster-cidr",
            &format!("10.249.{n}.0/24"),
            "--container-runtime-endpoint",
            &c.endpoint,
        ],
    );
    wait_until("the node is Ready", Duration::from_secs(60), || {
        jsonpath(
            &s,
            &["node", "node-cri"],
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        ) == "True"
    });
    (s, c)
}

#[test]
fn the_node_agent_scenarios_pass_on_containerd() {
    let dir = tempfile::tempdir().expect("tmp");
    let (s, c) = cluster(dir.path());

    // 1. kubectl run completes, and its logs come back.
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
    wait_phase(&s, &c, "hello", "Succeeded");
    assert_eq!(ok(&s, &["logs", "hello"]), "hi\n");

    // 2. A Deployment of an httpd with a readiness probe becomes Ready; its pod IP answers
    // from the host and from another pod.
    apply(
        &s,
        &format!(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: {IMAGE}
        command: [sh, -c, "mkdir -p /www && echo hello from web > /www/index.html && exec httpd -f -p 8080 -h /www"]
        readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1}}
"#
        ),
    );
    wait_until(
        "the Deployment is available",
        Duration::from_secs(60),
        || jsonpath(&s, &["deployment", "web"], "{.status.readyReplicas}") == "1",
    );
    let web = jsonpath(&s, &["pods", "-l", "app=web"], "{.items[0].metadata.name}");
    let ip = jsonpath(&s, &["pod", &web], "{.status.podIP}");
    assert!(
        ip.starts_with("10.250."),
        "the pod IP {ip:?} is not from the CNI subnet"
    );
    // The node and its pods name the runtime, as kubelets on containerd do.
    assert!(
        jsonpath(
            &s,
            &["pod", &web],
            "{.status.containerStatuses[0].containerID}"
        )
        .starts_with("containerd://")
    );
    assert!(
        jsonpath(
            &s,
            &["node", "node-cri"],
            "{.status.nodeInfo.containerRuntimeVersion}"
        )
        .starts_with("containerd://1.")
    );
    // kubectl debug --target: an ephemeral container in the target's process namespace.
    ok(
        &s,
        &[
            "debug",
            &web,
            "--image=busybox:test",
            "--target=httpd",
            "-c",
            "dbg",
            "--",
            "sh",
            "-c",
            "pidof httpd >/dev/null && echo sees-the-target",
        ],
    );
    wait_logs(&s, &web, "dbg", "sees-the-target\n");
    // kubectl exec enters the containerd container.
    assert_eq!(
        ok(&s, &["exec", &web, "--", "cat", "/etc/hostname"]).trim(),
        web
    );
    let from_host = {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect((ip.as_str(), 8080)).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        conn.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("send");
        let mut out = String::new();
        let _ = conn.read_to_string(&mut out);
        out
    };
    assert!(from_host.ends_with("hello from web\n"), "{from_host}");
    apply(
        &s,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: client}}\nspec:\n  restartPolicy: Never\n  containers:\n  - {{name: c, image: {IMAGE}, command: [wget, -q, -O, -, \"http://{ip}:8080/\"]}}\n"
        ),
    );
    wait_phase(&s, &c, "client", "Succeeded");
    assert_eq!(ok(&s, &["logs", "client"]), "hello from web\n");

    // 3. OOM kills, crash loops with growing delays, liveness restarts, readiness.
    apply(
        &s,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: hog}}
spec:
  containers:
  - name: app
    image: {IMAGE}
    command: [sh, -c, "head -c 67108864 /dev/zero | tail > /dev/null"]
    resources: {{limits: {{memory: 16Mi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: crasher}}
spec:
  containers:
  - {{name: app, image: {IMAGE}, command: [sh, -c, "echo run at $(date +%s); exit 1"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: sickly}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {IMAGE}
    command: [sh, -c, "touch /tmp/healthy /tmp/ready; sleep 3; rm /tmp/healthy; sleep 3600"]
    livenessProbe: {{exec: {{command: [cat, /tmp/healthy]}}, periodSeconds: 1, failureThreshold: 1}}
    readinessProbe: {{exec: {{command: [cat, /tmp/ready]}}, periodSeconds: 1}}
"#
        ),
    );
    wait_until(
        "hog is OOMKilled and restarted",
        Duration::from_secs(90),
        || {
            jsonpath(
                &s,
                &["pod", "hog"],
                "{.status.containerStatuses[0].lastState.terminated.reason}",
            ) == "OOMKilled"
                && restarts(&s, "hog") >= 1
        },
    );
    wait_until(
        "crasher is in CrashLoopBackOff",
        Duration::from_secs(90),
        || {
            jsonpath(
                &s,
                &["pod", "crasher"],
                "{.status.containerStatuses[0].state.waiting.reason}",
            ) == "CrashLoopBackOff"
        },
    );
    assert_eq!(
        jsonpath(
            &s,
            &["pod", "crasher"],
            "{.status.containerStatuses[0].lastState.terminated.exitCode}"
        ),
        "1"
    );
    // 9. The previous run's logs.
    assert!(ok(&s, &["logs", "crasher", "--previous"]).starts_with("run at "));
    wait_until(
        "sickly restarts when its liveness probe fails",
        Duration::from_secs(60),
        || restarts(&s, "sickly") >= 1,
    );
    wait_until("sickly is Ready again", Duration::from_secs(30), || {
        jsonpath(
            &s,
            &["pod", "sickly"],
            "{.status.containerStatuses[0].ready}",
        ) == "true"
    });

    // 4. configMap, secret, downwardAPI and projected files with their modes, following
    // updates; an emptyDir shared by two containers; a local-path claim that outlives pods.
    apply(
        &s,
        &format!(
            r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: cfg}}
data: {{a: "1"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: sec}}
stringData: {{s: hush}}
---
apiVersion: v1
kind: Pod
metadata: {{name: files, labels: {{tier: backend}}}}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - {{name: cfg, configMap: {{name: cfg, defaultMode: 0400}}}}
  - {{name: sec, secret: {{secretName: sec, items: [{{key: s, path: s, mode: 0440}}]}}}}
  - {{name: down, downwardAPI: {{items: [{{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}]}}}}
  - name: proj
    projected:
      defaultMode: 0444
      sources:
      - configMap: {{name: cfg}}
      - downwardAPI: {{items: [{{path: ns, fieldRef: {{fieldPath: metadata.namespace}}}}]}}
  - {{name: shared, emptyDir: {{}}}}
  containers:
  - name: reader
    image: {IMAGE}
    command: [sh, -c, "stat -L -c '%a %n' /cfg/a /sec/s /down/labels /proj/a; cat /sec/s /down/labels /proj/ns; echo; while true; do echo cfg=$(cat /cfg/a) shared=$(cat /shared/x 2>/dev/null); sleep 0.3; done"]
    volumeMounts:
    - {{name: cfg, mountPath: /cfg}}
    - {{name: sec, mountPath: /sec}}
    - {{name: down, mountPath: /down}}
    - {{name: proj, mountPath: /proj}}
    - {{name: shared, mountPath: /shared}}
  - name: writer
    image: {IMAGE}
    command: [sh, -c, "echo from-writer > /shared/x; sleep 3600"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
"#
        ),
    );
    wait_until("files runs", Duration::from_secs(60), || {
        let out = kubectl(&s, &["logs", "files", "-c", "reader"], None);
        String::from_utf8_lossy(&out.stdout).contains("shared=from-writer")
    });
    let logs = ok(&s, &["logs", "files", "-c", "reader"]);
    for want in [
        "400 /cfg/a",
        "440 /sec/s",
        "644 /down/labels",
        "444 /proj/a",
        "hush",
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
        "the update reaches the volume",
        Duration::from_secs(60),
        || {
            let out = kubectl(&s, &["logs", "files", "-c", "reader", "--tail", "1"], None);
            String::from_utf8_lossy(&out.stdout).contains("cfg=2")
        },
    );
    let claim = |name: &str, cmd: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: Never\n  volumes: [{{name: data, persistentVolumeClaim: {{claimName: keep}}}}]\n  containers:\n  - {{name: c, image: {IMAGE}, command: [sh, -c, \"{cmd}\"], volumeMounts: [{{name: data, mountPath: /data}}]}}\n"
        )
    };
    apply(
        &s,
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: keep}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n",
    );
    apply(&s, &claim("first", "echo kept > /data/file"));
    wait_phase(&s, &c, "first", "Succeeded");
    ok(&s, &["delete", "pod", "first"]);
    apply(&s, &claim("second", "cat /data/file"));
    wait_phase(&s, &c, "second", "Succeeded");
    assert_eq!(ok(&s, &["logs", "second"]), "kept\n");

    // 5. A sidecar runs beside the app and stops after it.
    apply(
        &s,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: helped}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  volumes: [{{name: shared, emptyDir: {{}}}}]
  initContainers:
  - name: helper
    image: {IMAGE}
    restartPolicy: Always
    command: [sh, -c, "echo sidecar-up > /shared/sidecar; while true; do sleep 0.2; done"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
  containers:
  - {{name: app, image: {IMAGE}, command: [cat, /shared/sidecar], volumeMounts: [{{name: shared, mountPath: /shared}}]}}
"#
        ),
    );
    wait_phase(&s, &c, "helped", "Succeeded");
    assert_eq!(ok(&s, &["logs", "helped", "-c", "app"]), "sidecar-up\n");
    wait_until("the sidecar stops", Duration::from_secs(40), || {
        !jsonpath(
            &s,
            &["pod", "helped"],
            "{.status.initContainerStatuses[0].state.terminated.finishedAt}",
        )
        .is_empty()
    });

    // 4 and 5. Init containers in order, a configMap file, an emptyDir shared by two
    // containers, postStart, preStop, and SIGTERM with the grace period on deletion.
    apply(
        &s,
        &format!(
            r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings}}
data: {{greeting: hello-from-configmap}}
---
apiVersion: v1
kind: Pod
metadata: {{name: many}}
spec:
  terminationGracePeriodSeconds: 10
  initContainers:
  - {{name: first, image: {IMAGE}, command: [sh, -c, "echo first >> /work/order"], volumeMounts: [{{name: work, mountPath: /work}}]}}
  - {{name: second, image: {IMAGE}, command: [sh, -c, "echo second >> /work/order"], volumeMounts: [{{name: work, mountPath: /work}}]}}
  containers:
  - name: app
    image: {IMAGE}
    command: [sh, -c, "trap 'cat /hooks/prestop > /hooks/term; exit 0' TERM; cat /work/order /config/greeting; echo; while true; do sleep 0.2; done"]
    lifecycle:
      postStart: {{exec: {{command: [sh, -c, "echo started > /work/hook"]}}}}
      preStop: {{exec: {{command: [sh, -c, "echo pre-stop > /hooks/prestop"]}}}}
    volumeMounts: [{{name: work, mountPath: /work}}, {{name: config, mountPath: /config}}, {{name: hooks, mountPath: /hooks}}]
  - name: peer
    image: {IMAGE}
    command: [sh, -c, "trap 'exit 0' TERM; while [ ! -f /shared/hook ]; do sleep 0.2; done; cat /shared/hook; while true; do sleep 0.2; done"]
    volumeMounts: [{{name: work, mountPath: /shared}}]
  volumes:
  - {{name: work, emptyDir: {{}}}}
  - {{name: config, configMap: {{name: settings}}}}
  - {{name: hooks, hostPath: {{path: {hooks}, type: DirectoryOrCreate}}}}
"#,
            hooks = dir.path().join("hooks").display()
        ),
    );
    wait_phase(&s, &c, "many", "Running");
    wait_logs(&s, "many", "app", "first\nsecond\nhello-from-configmap\n");
    // The peer sees the postStart hook's file.
    wait_logs(&s, "many", "peer", "started\n");
    // 9. logs -f streams while the container writes.
    apply(
        &s,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: ticker}}\nspec:\n  restartPolicy: Never\n  containers:\n  - {{name: app, image: {IMAGE}, command: [sh, -c, \"for i in 1 2 3 4; do echo tick $i; sleep 0.5; done\"]}}\n"
        ),
    );
    wait_phase(&s, &c, "ticker", "Running");
    let started = Instant::now();
    let follow = ok(&s, &["logs", "-f", "ticker"]);
    assert!(follow.ends_with("tick 3\ntick 4\n"), "{follow}");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "logs -f did not wait"
    );

    // SIGTERM reaches the app on deletion, well within its grace period.
    let started = Instant::now();
    ok(&s, &["delete", "pod", "many", "--wait=true"]);
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "the app was killed at the end of its grace period, not stopped by SIGTERM"
    );
    // preStop ran first, then SIGTERM reached the process.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("hooks/term")).unwrap_or_default(),
        "pre-stop\n"
    );
    // Deleted pods leave nothing behind in containerd.
    ok(&s, &["delete", "deployment", "web"]);
    ok(
        &s,
        &["delete", "pods", "--all", "--grace-period=1", "--wait=true"],
    );
    wait_until(
        "containerd has no containers left",
        Duration::from_secs(60),
        || {
            String::from_utf8_lossy(&c.ctr(&["containers", "ls", "--quiet"]).stdout)
                .trim()
                .is_empty()
        },
    );
}

#[test]
fn a_runtime_endpoint_that_does_not_answer_stops_the_agent_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tmp");
    for (endpoint, says) in [
        (
            format!("unix://{}/nothing.sock", dir.path().display()),
            "is containerd running there?",
        ),
        ("tcp://127.0.0.1:1".to_string(), "must be unix:///"),
    ] {
        let out = std::process::Command::new(tug_bin!())
            .args(["server", "--listen", "127.0.0.1:0", "--kubelet-port", "0"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--container-runtime-endpoint", &endpoint])
            .output()
            .expect("tug server");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains(says), "{err}");
    }
}
