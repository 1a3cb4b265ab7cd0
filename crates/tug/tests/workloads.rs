//! Deployments and ReplicaSets on hollow nodes: `tug server --simulated-nodes 20`.

use std::path::Path;
use std::process::Command;

use tug_testkit::kubectl::eventually;
use tug_testkit::server::{TugServer, kubectl_path};

/// `kubectl apply -f -` with `yaml` on its stdin; the test fails if it does.
fn apply(s: &TugServer, yaml: &str) {
    let mut c = Command::new(kubectl_path())
        .args(["apply", "-f", "-"])
        .env("KUBECONFIG", &s.kubeconfig)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl apply");
    if let Some(mut pipe) = c.stdin.take() {
        use std::io::Write;
        pipe.write_all(yaml.as_bytes()).expect("stdin");
    }
    assert!(c.wait().expect("apply").success());
}

fn ok(s: &TugServer, args: &[&str]) -> String {
    let o = Command::new(kubectl_path())
        .args(args)
        .env("KUBECONFIG", &s.kubeconfig)
        .output()
        .expect("kubectl");
    assert!(
        o.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_deployment_rolls_out_updates_rolls_back_and_scales() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        Path::new(env!("CARGO_BIN_EXE_tug")),
        &dir.path().join("data"),
        &["--simulated-nodes", "20"],
    );
    ok(
        &s,
        &[
            "create",
            "deployment",
            "web",
            "--image=busybox",
            "--replicas=100",
        ],
    );
    ok(&s, &["rollout", "status", "deploy/web", "--timeout=120s"]);
    let phases = ok(
        &s,
        &[
            "get",
            "pods",
            "-o",
            "jsonpath={range .items[*]}{.status.phase} {.spec.nodeName}{\"\\n\"}{end}",
        ],
    );
    assert_eq!(
        phases
            .lines()
            .filter(|l| l.starts_with("Running hollow-"))
            .count(),
        100,
        "{phases}"
    );
    assert_eq!(
        phases.lines().count(),
        100,
        "exactly the replicas: {phases}"
    );

    ok(&s, &["set", "image", "deploy/web", "busybox=busybox:2"]);
    ok(&s, &["rollout", "status", "deploy/web", "--timeout=120s"]);
    let images = ok(
        &s,
        &[
            "get",
            "pods",
            "-o",
            "jsonpath={range .items[*]}{.spec.containers[0].image}{\"\\n\"}{end}",
        ],
    );
    assert_eq!(
        images.lines().filter(|i| *i == "busybox:2").count(),
        100,
        "{images}"
    );
    assert_eq!(images.lines().count(), 100, "old pods are gone: {images}");
    let history = ok(&s, &["rollout", "history", "deploy/web"]);
    assert!(
        history.contains("\n1 ") && history.contains("\n2 "),
        "{history}"
    );

    ok(&s, &["rollout", "undo", "deploy/web"]);
    ok(&s, &["rollout", "status", "deploy/web", "--timeout=120s"]);
    assert_eq!(
        ok(
            &s,
            &[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.spec.template.spec.containers[0].image}"
            ]
        ),
        "busybox"
    );

    ok(&s, &["scale", "deploy/web", "--replicas=0"]);
    ok(&s, &["rollout", "status", "deploy/web", "--timeout=60s"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !ok(&s, &["get", "pods", "-o", "name"]).trim().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "pods remain after scaling to 0"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    ok(&s, &["scale", "deploy/web", "--replicas=7"]);
    ok(&s, &["rollout", "status", "deploy/web", "--timeout=60s"]);
    assert_eq!(ok(&s, &["get", "pods", "-o", "name"]).lines().count(), 7);
}

#[test]
fn deleting_a_deployment_collects_its_replicasets_and_pods_unless_orphaned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        Path::new(env!("CARGO_BIN_EXE_tug")),
        &dir.path().join("data"),
        &["--simulated-nodes", "3"],
    );
    let wait_for = |what: &str, want: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let n = ok(&s, &["get", what, "-o", "name"]).lines().count();
            if n == want {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: wanted {want}, have {n}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    ok(
        &s,
        &[
            "create",
            "deployment",
            "gone",
            "--image=busybox",
            "--replicas=4",
        ],
    );
    ok(&s, &["rollout", "status", "deploy/gone", "--timeout=60s"]);
    ok(&s, &["delete", "deployment", "gone"]);
    wait_for("replicasets", 0);
    wait_for("pods", 0);

    ok(
        &s,
        &[
            "create",
            "deployment",
            "kept",
            "--image=busybox",
            "--replicas=3",
        ],
    );
    ok(&s, &["rollout", "status", "deploy/kept", "--timeout=60s"]);
    ok(&s, &["delete", "deployment", "kept", "--cascade=orphan"]);
    wait_for("deployments", 0);
    std::thread::sleep(std::time::Duration::from_secs(2));
    wait_for("replicasets", 1);
    wait_for("pods", 3);
    let owners = ok(
        &s,
        &[
            "get",
            "rs",
            "-o",
            "jsonpath={.items[0].metadata.ownerReferences}",
        ],
    );
    assert!(
        owners.trim().is_empty() || owners.trim() == "[]",
        "the orphans were released: {owners}"
    );
}

#[test]
fn a_statefulset_creates_pods_in_order_and_removes_them_in_reverse() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        Path::new(env!("CARGO_BIN_EXE_tug")),
        &dir.path().join("data"),
        &["--simulated-nodes", "3"],
    );
    let mut watch = Command::new(kubectl_path())
        .args(["get", "pods", "-w", "--output-watch-events", "--no-headers"])
        .env("KUBECONFIG", &s.kubeconfig)
        .stdout(Stdio::piped())
        .spawn()
        .expect("kubectl get -w");
    let stdout = watch.stdout.take().expect("stdout");
    let lines = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    let sts = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: web\nspec:\n  replicas: 3\n  serviceName: web\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: c\n        image: busybox\n";
    apply(&s, sts);
    ok(
        &s,
        &["rollout", "status", "statefulset/web", "--timeout=60s"],
    );
    let names = ok(
        &s,
        &[
            "get",
            "pods",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.spec.hostname}{\"\\n\"}{end}",
        ],
    );
    assert_eq!(names, "web-0 web-0\nweb-1 web-1\nweb-2 web-2\n");
    ok(&s, &["scale", "statefulset/web", "--replicas=0"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !ok(&s, &["get", "pods", "-o", "name"]).trim().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "pods remain after scaling to 0"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let _ = watch.kill();
    let _ = watch.wait();
    let events = lines.join().expect("watch lines");
    let order = |kind: &str| -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        for l in &events {
            let mut f = l.split_whitespace();
            if f.next() == Some(kind)
                && let Some(name) = f.next()
                && !seen.iter().any(|s| s == name)
            {
                seen.push(name.to_string());
            }
        }
        seen
    };
    assert_eq!(order("ADDED"), ["web-0", "web-1", "web-2"], "{events:?}");
    assert_eq!(order("DELETED"), ["web-2", "web-1", "web-0"], "{events:?}");
}

#[test]
fn a_daemonset_runs_one_pod_per_eligible_node_and_follows_nodes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        Path::new(env!("CARGO_BIN_EXE_tug")),
        &dir.path().join("data"),
        &["--simulated-nodes", "3"],
    );
    let nodes_of = |label: &str| -> Vec<String> {
        let mut v: Vec<String> = ok(
            &s,
            &[
                "get",
                "pods",
                "-l",
                label,
                "-o",
                "jsonpath={range .items[*]}{.spec.nodeName}{\"\\n\"}{end}",
            ],
        )
        .lines()
        .map(str::to_string)
        .collect();
        v.sort();
        v
    };
    let until = |label: &str, want: &[&str]| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let got = nodes_of(label);
            if got == want {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{label}: wanted {want:?}, have {got:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while ok(&s, &["get", "nodes", "-o", "name"]).lines().count() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "nodes never registered"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    ok(
        &s,
        &["taint", "node", "hollow-2", "dedicated=gpu:NoSchedule"],
    );
    let ds = |name: &str, tolerate: bool| {
        let tol = if tolerate {
            "      tolerations:\n      - key: dedicated\n        operator: Exists\n"
        } else {
            ""
        };
        format!(
            "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: {name}\nspec:\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n{tol}      containers:\n      - name: c\n        image: busybox\n"
        )
    };
    apply(&s, &ds("agent", false));
    until("app=agent", &["hollow-0", "hollow-1"]);
    apply(&s, &ds("tolerant", true));
    until("app=tolerant", &["hollow-0", "hollow-1", "hollow-2"]);
    // A node that joins gets a pod too.
    apply(
        &s,
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: extra\n  labels:\n    kubernetes.io/hostname: extra\n",
    );
    until("app=agent", &["extra", "hollow-0", "hollow-1"]);
    // Removing the taint brings the first set to the third node.
    ok(&s, &["taint", "node", "hollow-2", "dedicated-"]);
    until("app=agent", &["extra", "hollow-0", "hollow-1", "hollow-2"]);
}

#[test]
fn a_job_runs_its_completions_at_most_parallelism_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        Path::new(env!("CARGO_BIN_EXE_tug")),
        &dir.path().join("data"),
        &["--simulated-nodes", "3"],
    );
    let job = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: batch\nspec:\n  completions: 5\n  parallelism: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: c\n        image: busybox\n";
    apply(&s, job);
    // Never more than two running at once, sampled while it runs.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let phases = ok(
            &s,
            &[
                "get",
                "pods",
                "-l",
                "batch.kubernetes.io/job-name=batch",
                "-o",
                "jsonpath={range .items[*]}{.status.phase}{\"\\n\"}{end}",
            ],
        );
        let running = phases
            .lines()
            .filter(|p| *p != "Succeeded" && *p != "Failed")
            .count();
        assert!(running <= 2, "parallelism 2 exceeded: {phases}");
        let done = ok(
            &s,
            &[
                "get",
                "job",
                "batch",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Complete\")].status}",
            ],
        );
        if done == "True" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the job never completed: {phases}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        ok(
            &s,
            &["get", "job", "batch", "-o", "jsonpath={.status.succeeded}"]
        ),
        "5"
    );
    ok(
        &s,
        &[
            "wait",
            "--for=condition=complete",
            "job/batch",
            "--timeout=10s",
        ],
    );
}

#[test]
fn a_cronjob_creates_jobs_on_schedule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        Path::new(env!("CARGO_BIN_EXE_tug")),
        &dir.path().join("data"),
        &["--simulated-nodes", "2"],
    );
    let cj = "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: tick\nspec:\n  schedule: \"* * * * *\"\n  successfulJobsHistoryLimit: 1\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers:\n          - name: c\n            image: busybox\n";
    apply(&s, cj);
    // The first run comes at the next minute boundary, and completes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(75);
    let job = loop {
        let jobs = ok(&s, &["get", "jobs", "-o", "name"]);
        if let Some(j) = jobs.lines().next() {
            break j.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no job was created within a minute"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert!(job.starts_with("job.batch/tick-"), "{job}");
    ok(
        &s,
        &["wait", "--for=condition=complete", &job, "--timeout=30s"],
    );
    let owner = ok(
        &s,
        &[
            "get",
            &job,
            "-o",
            "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}",
        ],
    );
    assert_eq!(owner, "CronJob/tick");
    let last = ok(
        &s,
        &[
            "get",
            "cronjob",
            "tick",
            "-o",
            "jsonpath={.status.lastScheduleTime}",
        ],
    );
    assert!(last.ends_with(":00Z"), "scheduled on the minute: {last}");
    ok(
        &s,
        &[
            "patch",
            "cronjob",
            "tick",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"suspend":true}}"#,
        ],
    );
    assert_eq!(
        ok(
            &s,
            &["get", "cronjob", "tick", "-o", "jsonpath={.spec.suspend}"]
        ),
        "true"
    );
}

/// With `strategy: Recreate` no pod of the new template is created while a pod of the old one
/// still exists, even a terminating one: a finalizer holds the old pods until the test lifts it.
/// Checked on the pod watch stream seen through `kubectl get -w`, whose first events (ADDED)
/// list the old pods.
#[test]
fn a_recreate_deployment_removes_old_pods_before_creating_new_ones() {
    let (_dir, s) = rolled_out(
        "db",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: db}\nspec:\n  replicas: 10\n  strategy: {type: Recreate}\n  selector: {matchLabels: {app: db}}\n  template:\n    metadata: {labels: {app: db}, finalizers: [example.com/hold]}\n    spec: {containers: [{name: db, image: 'db:1'}]}\n",
    );
    let old_names = ok(&s, &["get", "pods", "-o", "name"]);
    assert_eq!(old_names.lines().count(), 10, "{old_names}");

    let watch = PodWatch::start(&s);
    std::thread::sleep(std::time::Duration::from_secs(1));
    ok(&s, &["set", "image", "deploy/db", "db=db:2"]);

    // The old pods are terminating, held by the finalizer: no new pod may appear meanwhile.
    eventually("the 10 old pods are terminating", || {
        let terminating = ok(
            &s,
            &[
                "get",
                "pods",
                "-o",
                "jsonpath={range .items[?(@.metadata.deletionTimestamp)]}{.metadata.name}{\"\\n\"}{end}",
            ],
        );
        terminating.lines().count() == 10
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    let images = pod_images(&s);
    assert!(
        !images.contains("db:2"),
        "new pods while old ones terminate: {images}"
    );

    for pod in old_names.lines() {
        ok(
            &s,
            &[
                "patch",
                pod,
                "--type=merge",
                "-p",
                r#"{"metadata":{"finalizers":null}}"#,
            ],
        );
    }
    ok(&s, &["rollout", "status", "deploy/db", "--timeout=60s"]);
    eventually("10 new pods and no others", || {
        let images = pod_images(&s);
        images.lines().filter(|i| *i == "db:2").count() == 10 && images.lines().count() == 10
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    let events = watch.finish();

    let mut live: std::collections::HashMap<String, String> = Default::default();
    let (mut old_deleted, mut new_added) = (0, 0);
    for PodEvent {
        kind, name, image, ..
    } in PodWatch::parse(&events)
    {
        match kind {
            "ADDED" | "MODIFIED" => {
                if kind == "ADDED" && image == "db:2" {
                    let old: Vec<&String> = live
                        .iter()
                        .filter(|(_, i)| *i == "db:1")
                        .map(|(n, _)| n)
                        .collect();
                    assert!(
                        old.is_empty(),
                        "new pod {name} created while old pods {old:?} exist:\n{events}"
                    );
                    new_added += 1;
                }
                live.insert(name.to_string(), image.to_string());
            }
            "DELETED" => {
                if image == "db:1" {
                    old_deleted += 1;
                }
                live.remove(name);
            }
            _ => {}
        }
    }
    assert_eq!(old_deleted, 10, "{events}");
    assert_eq!(new_added, 10, "{events}");
}

/// The image of every pod's first container, one per line.
fn pod_images(s: &TugServer) -> String {
    ok(
        s,
        &[
            "get",
            "pods",
            "-o",
            "jsonpath={range .items[*]}{.spec.containers[0].image}{\"\\n\"}{end}",
        ],
    )
}

/// `kubectl get pods --watch --output-watch-events`, running in the background: the initial
/// list arrives as ADDED events, then every change.
struct PodWatch(std::process::Child);

impl PodWatch {
    fn start(s: &TugServer) -> Self {
        let child = Command::new(kubectl_path())
            .args([
                "get",
                "pods",
                "--watch",
                "--output-watch-events",
                "-o",
                "jsonpath={.type}|{.object.metadata.name}|{.object.spec.containers[0].image}|{.object.status.conditions[?(@.type==\"Ready\")].status}|{.object.metadata.deletionTimestamp}{\"\\n\"}",
            ])
            .env("KUBECONFIG", &s.kubeconfig)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl watch");
        PodWatch(child)
    }

    /// Stops the watch and returns what it printed.
    fn finish(mut self) -> String {
        let _ = self.0.kill();
        let out = self.0.wait_with_output().expect("watch output");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Each event line, parsed.
    fn parse(events: &str) -> impl Iterator<Item = PodEvent<'_>> {
        events.lines().filter_map(|line| {
            let mut parts = line.split('|');
            Some(PodEvent {
                kind: parts.next()?,
                name: parts.next()?,
                image: parts.next()?,
                ready: parts.next()? == "True",
                terminating: parts.next().is_some_and(|t| !t.trim().is_empty()),
            })
        })
    }
}

/// One pod event seen by a [`PodWatch`].
struct PodEvent<'a> {
    kind: &'a str,
    name: &'a str,
    image: &'a str,
    ready: bool,
    terminating: bool,
}

/// Sets a new image on `what` while watching its pods, waits for the rollout and for
/// `count` pods on `image`, and returns what the watch saw.
fn watched_update(s: &TugServer, what: &str, set: &str, image: &str, count: usize) -> String {
    let watch = PodWatch::start(s);
    std::thread::sleep(std::time::Duration::from_secs(1));
    ok(s, &["set", "image", what, set]);
    ok(s, &["rollout", "status", what, "--timeout=120s"]);
    eventually(&format!("{count} pods on {image} and no others"), || {
        let images = pod_images(s);
        images.lines().filter(|i| *i == image).count() == count && images.lines().count() == count
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    watch.finish()
}

/// Ready, non-terminating pods over a watch: whether all `full` were ever ready at once, the
/// fewest from then on, and the most at any time.
fn ready_counts(events: &str, full: usize) -> (bool, usize, usize) {
    let mut ready: std::collections::HashSet<&str> = Default::default();
    let (mut started, mut lowest, mut most) = (false, usize::MAX, 0);
    for e in PodWatch::parse(events) {
        if e.kind != "DELETED" && e.ready && !e.terminating {
            ready.insert(e.name);
        } else {
            ready.remove(e.name);
        }
        started |= ready.len() == full;
        if started {
            lowest = lowest.min(ready.len());
        }
        if !e.terminating && e.kind != "DELETED" {
            most = most.max(ready.len());
        }
    }
    (started, lowest, most)
}

/// A rolling update with maxSurge 2 and maxUnavailable 0 never runs more than replicas + 2
/// pods that are not terminating, as seen on the watch stream, and ends on the new image.
#[test]
fn a_rolling_update_stays_within_max_surge() {
    let (_dir, s) = rolled_out(
        "web",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 12\n  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 2, maxUnavailable: 0}}\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: 'web:1'}]}\n",
    );
    let events = watched_update(&s, "deploy/web", "web=web:2", "web:2", 12);

    let mut live: std::collections::HashSet<&str> = Default::default();
    let (mut peak, mut new_added) = (0, 0);
    for e in PodWatch::parse(&events) {
        if e.kind == "ADDED" && e.image == "web:2" {
            new_added += 1;
        }
        if e.kind == "DELETED" || e.terminating {
            live.remove(e.name);
        } else {
            live.insert(e.name);
        }
        peak = peak.max(live.len());
    }
    assert_eq!(new_added, 12, "{events}");
    assert!(
        peak <= 14,
        "{peak} pods at once, more than 12 + maxSurge 2:\n{events}"
    );
    assert!(peak > 12, "the update surged: peak {peak}\n{events}");
}

/// A rolling update with maxSurge 0 and maxUnavailable 3 never has fewer than 12 - 3 ready
/// pods, as seen on the watch stream, and does use the room it has.
#[test]
fn a_rolling_update_keeps_max_unavailable() {
    let (_dir, s) = rolled_out(
        "web",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 12\n  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 0, maxUnavailable: 3}}\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: 'web:1'}]}\n",
    );
    let events = watched_update(&s, "deploy/web", "web=web:2", "web:2", 12);

    let (started, lowest, most) = ready_counts(&events, 12);
    assert!(started, "never saw 12 ready pods:\n{events}");
    assert!(
        lowest >= 9,
        "{lowest} ready pods at one point, fewer than 12 - maxUnavailable 3:\n{events}"
    );
    assert!(
        lowest < 12,
        "the update never used its unavailability:\n{events}"
    );
    assert!(most <= 12, "maxSurge 0 but {most} ready pods:\n{events}");
}

/// A server on 5 hollow nodes with the Deployment `name` from `manifest` applied and rolled out.
fn rolled_out(name: &str, manifest: &str) -> (tempfile::TempDir, TugServer) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        Path::new(env!("CARGO_BIN_EXE_tug")),
        &dir.path().join("data"),
        &["--simulated-nodes", "5"],
    );
    apply(&s, manifest);
    ok(
        &s,
        &[
            "rollout",
            "status",
            &format!("deploy/{name}"),
            "--timeout=60s",
        ],
    );
    (dir, s)
}

/// A StatefulSet gives each pod its own claim, records its revisions, and rolls a new
/// template from the highest ordinal down to the partition.
#[test]
fn a_statefulset_rolls_updates_down_to_its_partition_with_claims_per_pod() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        Path::new(env!("CARGO_BIN_EXE_tug")),
        &dir.path().join("data"),
        &["--simulated-nodes", "3"],
    );
    apply(
        &s,
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  replicas: 3\n  serviceName: db\n  selector: {matchLabels: {app: db}}\n  updateStrategy: {type: RollingUpdate, rollingUpdate: {partition: 1}}\n  template:\n    metadata: {labels: {app: db}}\n    spec: {containers: [{name: db, image: 'db:1'}]}\n  volumeClaimTemplates:\n  - metadata: {name: data}\n    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n",
    );
    ok(&s, &["rollout", "status", "sts/db", "--timeout=60s"]);
    assert_eq!(
        ok(
            &s,
            &["get", "pvc", "-o", "jsonpath={.items[*].metadata.name}"]
        ),
        "data-db-0 data-db-1 data-db-2"
    );
    assert_eq!(
        ok(
            &s,
            &[
                "get",
                "pod",
                "db-1",
                "-o",
                "jsonpath={.spec.volumes[?(@.name==\"data\")].persistentVolumeClaim.claimName}"
            ]
        ),
        "data-db-1"
    );
    let images = || {
        ok(
            &s,
            &[
                "get",
                "pods",
                "-l",
                "app=db",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name}={.spec.containers[0].image} {end}",
            ],
        )
    };
    ok(&s, &["set", "image", "sts/db", "db=db:2"]);
    eventually(
        "db-2 and db-1 on the new image, db-0 kept by the partition",
        || {
            images().trim() == "db-0=db:1 db-1=db:2 db-2=db:2"
                && ok(
                    &s,
                    &[
                        "get",
                        "sts",
                        "db",
                        "-o",
                        "jsonpath={.status.updatedReplicas}/{.status.readyReplicas}",
                    ],
                ) == "2/3"
        },
    );
    ok(&s, &["rollout", "status", "sts/db", "--timeout=60s"]);
    ok(
        &s,
        &[
            "patch",
            "sts",
            "db",
            "--type=merge",
            "-p",
            r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#,
        ],
    );
    eventually("every pod on the new image", || {
        images().trim() == "db-0=db:2 db-1=db:2 db-2=db:2"
    });
    ok(&s, &["rollout", "status", "sts/db", "--timeout=60s"]);
    let history = ok(&s, &["rollout", "history", "sts/db"]);
    assert!(history.contains('1') && history.contains('2'), "{history}");
    let mut numbers: Vec<String> = ok(
        &s,
        &[
            "get",
            "controllerrevisions",
            "-l",
            "app=db",
            "-o",
            "jsonpath={.items[*].revision}",
        ],
    )
    .split_whitespace()
    .map(str::to_string)
    .collect();
    numbers.sort();
    assert_eq!(numbers, ["1", "2"]);
}

/// A rollout whose pods can never run fails after progressDeadlineSeconds, and
/// `kubectl rollout status` says so.
#[test]
fn a_rollout_that_makes_no_progress_fails_after_its_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        Path::new(env!("CARGO_BIN_EXE_tug")),
        &dir.path().join("data"),
        &["--simulated-nodes", "2"],
    );
    apply(
        &s,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: stuck}\nspec:\n  replicas: 2\n  progressDeadlineSeconds: 2\n  selector: {matchLabels: {app: stuck}}\n  template:\n    metadata: {labels: {app: stuck}}\n    spec: {nodeSelector: {disk: none}, containers: [{name: c, image: busybox}]}\n",
    );
    eventually("Progressing=False with ProgressDeadlineExceeded", || {
        ok(
            &s,
            &[
                "get",
                "deploy",
                "stuck",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Progressing\")].status}/{.status.conditions[?(@.type==\"Progressing\")].reason}",
            ],
        ) == "False/ProgressDeadlineExceeded"
    });
    let o = Command::new(kubectl_path())
        .args(["rollout", "status", "deploy/stuck", "--timeout=30s"])
        .env("KUBECONFIG", &s.kubeconfig)
        .output()
        .expect("kubectl");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("exceeded its progress deadline"), "{err}");
}

/// A ReplicationController keeps its replicas, as a ReplicaSet does.
#[test]
fn a_replication_controller_keeps_its_replicas() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        Path::new(env!("CARGO_BIN_EXE_tug")),
        &dir.path().join("data"),
        &["--simulated-nodes", "2"],
    );
    apply(
        &s,
        "apiVersion: v1\nkind: ReplicationController\nmetadata: {name: old}\nspec:\n  replicas: 3\n  selector: {app: old}\n  template:\n    metadata: {labels: {app: old}}\n    spec: {containers: [{name: c, image: busybox}]}\n",
    );
    let ready = || {
        ok(
            &s,
            &["get", "rc", "old", "-o", "jsonpath={.status.readyReplicas}"],
        )
    };
    eventually("three ready replicas", || ready() == "3");
    let victim = ok(
        &s,
        &[
            "get",
            "pods",
            "-l",
            "app=old",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ],
    );
    ok(&s, &["delete", "pod", &victim]);
    eventually("a replacement", || {
        let names = ok(
            &s,
            &[
                "get",
                "pods",
                "-l",
                "app=old",
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ],
        );
        names.split_whitespace().count() == 3 && !names.contains(&victim) && ready() == "3"
    });
    ok(&s, &["scale", "rc", "old", "--replicas=1"]);
    eventually("scaled to one", || {
        ok(&s, &["get", "pods", "-l", "app=old", "-o", "name"])
            .lines()
            .count()
            == 1
            && ready() == "1"
    });
}

/// A DaemonSet rolls a new template node by node, never leaving more than maxUnavailable (1)
/// nodes without a ready pod, and keeps its history.
#[test]
fn a_daemonset_rolls_updates_one_node_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        Path::new(env!("CARGO_BIN_EXE_tug")),
        &dir.path().join("data"),
        &["--simulated-nodes", "4"],
    );
    apply(
        &s,
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agent}\nspec:\n  selector: {matchLabels: {app: agent}}\n  template:\n    metadata: {labels: {app: agent}}\n    spec: {containers: [{name: agent, image: 'agent:1'}]}\n",
    );
    ok(&s, &["rollout", "status", "ds/agent", "--timeout=60s"]);
    let events = watched_update(&s, "ds/agent", "agent=agent:2", "agent:2", 4);
    let (_, lowest, _) = ready_counts(&events, 4);
    assert!(
        lowest >= 3,
        "{lowest} ready daemon pods at one point:\n{events}"
    );
    let history = ok(&s, &["rollout", "history", "ds/agent"]);
    assert!(history.contains('1') && history.contains('2'), "{history}");
}

/// Resizing a Deployment in the middle of a rollout shares the change among its
/// ReplicaSets in proportion; pause holds a rollout and resume releases it.
#[test]
fn a_deployment_resized_mid_rollout_scales_proportionally_and_pauses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        Path::new(env!("CARGO_BIN_EXE_tug")),
        &dir.path().join("data"),
        &["--simulated-nodes", "3"],
    );
    apply(
        &s,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 10\n  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 3, maxUnavailable: 0}}\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: 'web:1'}]}\n",
    );
    ok(&s, &["rollout", "status", "deploy/web", "--timeout=60s"]);
    // The new pods can never run: the rollout stays at 10 old + 3 new.
    ok(
        &s,
        &[
            "patch",
            "deploy",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"template":{"spec":{"nodeSelector":{"disk":"none"}}}}}"#,
        ],
    );
    // "revision=replicas" of each ReplicaSet, oldest first.
    let sizes = || {
        let mut v: Vec<String> = ok(
            &s,
            &["get", "rs", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.metadata.annotations.deployment\\.kubernetes\\.io/revision}={.spec.replicas} {end}"],
        )
        .split_whitespace()
        .map(str::to_string)
        .collect();
        v.sort();
        v.join(" ")
    };

    eventually("10 old and 3 new", || sizes() == "1=10 2=3");
    ok(&s, &["scale", "deploy", "web", "--replicas=20"]);
    eventually(
        "20 + maxSurge 3 shared in proportion: 17 old, 6 new",
        || sizes() == "1=17 2=6",
    );

    // Paused: a template change makes no new ReplicaSet until resumed.
    ok(
        &s,
        &[
            "patch",
            "deploy",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":4,"template":{"spec":{"nodeSelector":null}}}}"#,
        ],
    );
    ok(&s, &["rollout", "status", "deploy/web", "--timeout=60s"]);
    ok(&s, &["rollout", "pause", "deploy/web"]);
    ok(&s, &["set", "image", "deploy/web", "web=web:2"]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        pod_images(&s).lines().all(|i| i == "web:1"),
        "a paused deployment rolled: {}",
        pod_images(&s)
    );
    ok(&s, &["rollout", "resume", "deploy/web"]);
    ok(&s, &["rollout", "status", "deploy/web", "--timeout=60s"]);
    eventually("4 pods on web:2", || {
        let images = pod_images(&s);
        images.lines().filter(|i| *i == "web:2").count() == 4 && images.lines().count() == 4
    });
}

/// Controllers record what they do as Events (`kubectl describe` shows them), at most 25 in a
/// burst per object, as client-go's recorder allows.
#[test]
fn controllers_record_events_within_the_spam_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        Path::new(env!("CARGO_BIN_EXE_tug")),
        &dir.path().join("data"),
        &["--simulated-nodes", "3"],
    );
    ok(
        &s,
        &[
            "create",
            "deployment",
            "web",
            "--image=busybox",
            "--replicas=40",
        ],
    );
    ok(&s, &["rollout", "status", "deploy/web", "--timeout=60s"]);
    let described = ok(&s, &["describe", "deployment", "web"]);
    assert!(
        described.contains("ScalingReplicaSet") && described.contains("from 0 to 40"),
        "{described}"
    );
    let creates = ok(
        &s,
        &[
            "get",
            "events",
            "--field-selector",
            "reason=SuccessfulCreate,involvedObject.kind=ReplicaSet",
            "-o",
            "name",
        ],
    );
    let n = creates.lines().count();
    assert!(
        (1..=25).contains(&n),
        "{n} SuccessfulCreate events for 40 pods"
    );
}
