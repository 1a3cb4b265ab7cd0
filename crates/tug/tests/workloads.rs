//! Deployments and ReplicaSets on hollow nodes: `tug server --simulated-nodes 20`.

use std::process::Command;

use tug_testkit::kubectl::{apply, eventually, jsonpath, ok};
use tug_testkit::server::{TugServer, kubectl_path};
use tug_testkit::tug_bin;

#[test]
fn a_deployment_rolls_out_updates_rolls_back_and_scales() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        tug_bin!(),
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
        tug_bin!(),
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
        tug_bin!(),
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
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = seen.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(mut v) = sink.lock() {
                v.push(line);
            }
        }
    });
    let watched = || seen.lock().map(|v| v.clone()).unwrap_or_default();
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
    tug_testkit::kubectl::eventually("the watch to see the three deletions", || {
        watched()
            .iter()
            .filter(|l| l.starts_with("DELETED"))
            .count()
            >= 3
    });
    let _ = watch.kill();
    let _ = watch.wait();
    let _ = reader.join();
    let events = watched();
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
        tug_bin!(),
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
        tug_bin!(),
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
        tug_bin!(),
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

/// A StatefulSet gives each pod its own claim, records its revisions, and rolls a new
/// template from the highest ordinal down to the partition.
#[test]
fn a_statefulset_rolls_updates_down_to_its_partition_with_claims_per_pod() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        tug_bin!(),
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
        tug_bin!(),
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
        tug_bin!(),
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

/// Controllers record what they do as Events (`kubectl describe` shows them), at most 25 in a
/// burst per object, as client-go's recorder allows.
#[test]
fn controllers_record_events_within_the_spam_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        tug_bin!(),
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

#[test]
fn a_deployment_keeps_its_revision_history_limit_and_rolls_out_nothing_while_paused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        tug_bin!(),
        &dir.path().join("data"),
        &["--simulated-nodes", "2"],
    );
    apply(
        &s,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: kept}\nspec:\n  replicas: 2\n  revisionHistoryLimit: 2\n  selector: {matchLabels: {app: kept}}\n  template:\n    metadata: {labels: {app: kept}}\n    spec:\n      containers:\n      - {name: c, image: busybox, env: [{name: V, value: \"0\"}]}\n",
    );
    ok(&s, &["rollout", "status", "deploy/kept", "--timeout=60s"]);
    let sets = || {
        ok(
            &s,
            &[
                "get",
                "rs",
                "-l",
                "app=kept",
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ],
        )
        .split_whitespace()
        .count()
    };
    for v in 1..=4 {
        ok(&s, &["set", "env", "deploy/kept", &format!("V={v}")]);
        ok(&s, &["rollout", "status", "deploy/kept", "--timeout=60s"]);
    }
    // Five revisions: the current one and the two newest old ones are kept.
    eventually("old ReplicaSets pruned to the limit", || sets() == 3);
    let revision = || {
        ok(
            &s,
            &[
                "get",
                "deploy",
                "kept",
                "-o",
                "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
            ],
        )
    };
    assert_eq!(revision(), "5");
    ok(&s, &["rollout", "pause", "deploy/kept"]);
    ok(&s, &["set", "env", "deploy/kept", "V=paused"]);
    // The controller has seen the change (observedGeneration) and started nothing.
    let generation = ok(
        &s,
        &[
            "get",
            "deploy",
            "kept",
            "-o",
            "jsonpath={.metadata.generation}",
        ],
    );
    eventually("the paused change observed", || {
        ok(
            &s,
            &[
                "get",
                "deploy",
                "kept",
                "-o",
                "jsonpath={.status.observedGeneration}",
            ],
        ) == generation
            || sets() != 3
    });
    assert_eq!(sets(), 3, "a paused Deployment created a ReplicaSet");
    assert_eq!(revision(), "5");
    ok(&s, &["rollout", "resume", "deploy/kept"]);
    ok(&s, &["rollout", "status", "deploy/kept", "--timeout=60s"]);
    assert_eq!(revision(), "6");
    eventually("still three ReplicaSets", || sets() == 3);
}

/// ControllerRef: owners adopt the orphans they select and release the pods they stop
/// selecting (then replace them); a Job's selector is generated from its uid.
#[test]
fn owners_adopt_orphans_they_select_and_release_pods_they_stop_selecting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        tug_bin!(),
        &dir.path().join("data"),
        &["--simulated-nodes", "2"],
    );
    let controller = |pod: &str| {
        jsonpath(
            &s,
            &["pod", pod],
            "{.metadata.ownerReferences[?(@.controller==true)].kind}/{.metadata.ownerReferences[?(@.controller==true)].name}",
        )
    };
    // Orphans made first: a pod the ReplicaSet selects, one named and labelled like the
    // StatefulSet's first pod, and one the ReplicaSet does not select.
    apply(
        &s,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: orphan, labels: {app: adopt}}\nspec: {containers: [{name: c, image: busybox}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: db-0, labels: {app: db}}\nspec: {containers: [{name: c, image: busybox}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: stranger, labels: {app: other}}\nspec: {containers: [{name: c, image: busybox}]}\n",
    );
    apply(
        &s,
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: adopt}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: adopt}}\n  template:\n    metadata: {labels: {app: adopt}}\n    spec: {containers: [{name: c, image: busybox}]}\n---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  replicas: 1\n  serviceName: db\n  selector: {matchLabels: {app: db}}\n  template:\n    metadata: {labels: {app: db}}\n    spec: {containers: [{name: c, image: busybox}]}\n",
    );
    eventually("the orphans adopted", || {
        controller("orphan") == "ReplicaSet/adopt" && controller("db-0") == "StatefulSet/db"
    });
    let members = || {
        ok(&s, &["get", "pods", "-l", "app=adopt", "-o", "name"])
            .lines()
            .count()
    };
    eventually("two replicas, the orphan one of them", || {
        members() == 2 && jsonpath(&s, &["rs", "adopt"], "{.status.replicas}") == "2"
    });
    assert_eq!(
        controller("stranger"),
        "/",
        "a pod it does not select is left alone"
    );
    let adopted_uid = jsonpath(&s, &["rs", "adopt"], "{.metadata.uid}");
    assert!(
        jsonpath(&s, &["pod", "orphan"], "{.metadata.ownerReferences[0]}")
            .contains(&format!("\"uid\":\"{adopted_uid}\"")),
        "the owner reference names the ReplicaSet's uid"
    );
    // Relabelled out of the selector: released, and replaced.
    ok(&s, &["label", "pod", "orphan", "app=gone", "--overwrite"]);
    eventually("the pod released and replaced", || {
        controller("orphan") == "/" && members() == 2
    });
    // Jobs select their pods by the uid the API server generates a selector from.
    ok(&s, &["create", "job", "pi", "--image=busybox"]);
    let uid = jsonpath(&s, &["job", "pi"], "{.metadata.uid}");
    assert_eq!(
        jsonpath(
            &s,
            &["job", "pi"],
            "{.spec.selector.matchLabels.batch\\.kubernetes\\.io/controller-uid}"
        ),
        uid
    );
    assert_eq!(
        jsonpath(
            &s,
            &["job", "pi"],
            "{.spec.template.metadata.labels.job-name} {.metadata.labels.batch\\.kubernetes\\.io/job-name}"
        ),
        "pi pi"
    );
}
