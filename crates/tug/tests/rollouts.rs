//! Rollouts watched pod by pod on hollow nodes: Recreate, maxSurge and maxUnavailable, a
//! DaemonSet's node-by-node update, and a Deployment resized mid-rollout.

use std::process::Command;

use tug_testkit::kubectl::{apply, eventually, ok};
use tug_testkit::server::{TugServer, kubectl_path};
use tug_testkit::tug_bin;

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
struct PodWatch {
    child: std::process::Child,
    seen: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl PodWatch {
    /// Starts the watch and waits until it has listed the pods that exist now.
    fn start(s: &TugServer) -> Self {
        use std::io::BufRead;
        let existing = ok(s, &["get", "pods", "-o", "name"]).lines().count();
        let mut child = Command::new(kubectl_path())
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
        let stdout = child.stdout.take().expect("the watch's stdout");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = seen.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let mut all = sink.lock().unwrap_or_else(|e| e.into_inner());
                all.push_str(&line);
                all.push('\n');
            }
        });
        let watch = PodWatch {
            child,
            seen,
            reader: Some(reader),
        };
        eventually("the watch to list the existing pods", || {
            watch
                .seen()
                .lines()
                .filter(|l| l.starts_with("ADDED|"))
                .count()
                >= existing
        });
        watch
    }

    /// What the watch printed so far.
    fn seen(&self) -> String {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops the watch and returns what it printed.
    fn finish(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.seen()
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
        tug_bin!(),
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

/// A DaemonSet rolls a new template node by node, never leaving more than maxUnavailable (1)
/// nodes without a ready pod, and keeps its history.
#[test]
fn a_daemonset_rolls_updates_one_node_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        tug_bin!(),
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
        tug_bin!(),
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
