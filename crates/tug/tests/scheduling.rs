//! The scheduler and hollow nodes: `tug server --simulated-nodes 3` places pods on nodes that
//! can hold them and plays them Running (or Succeeded).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tug_testkit::kubectl::{kubectl, ok_with_input as ok};
use tug_testkit::server::TugServer;
use tug_testkit::tug_bin;

fn pod(name: &str, cpu: &str, restart: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: {restart}\n  containers:\n  - name: c\n    image: busybox\n    resources:\n      requests:\n        cpu: \"{cpu}\"\n"
    )
}

/// Waits for `jsonpath` of `what` to read `want`; an object that does not exist yet (a node
/// still registering) is a "not yet".
fn until(s: &TugServer, what: &str, jsonpath: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = kubectl(
            s,
            &["get", what, "-o", &format!("jsonpath={jsonpath}")],
            None,
        );
        let got = if o.status.success() {
            String::from_utf8_lossy(&o.stdout).into_owned()
        } else {
            String::from_utf8_lossy(&o.stderr).into_owned()
        };
        if o.status.success() && got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} {jsonpath}: wanted {want:?}, last {got:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn pods_are_scheduled_on_hollow_nodes_that_fit_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        tug_bin!(),
        &dir.path().join("data"),
        &["--simulated-nodes", "3"],
    );
    // The hollow nodes register just after the server is ready.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = ok(&s, &["get", "nodes"], None);
        if ready.matches(" Ready ").count() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "three Ready nodes never appeared: {ready}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    ok(
        &s,
        &["apply", "-f", "-"],
        Some(&pod("small", "500m", "Always")),
    );
    until(&s, "pod/small", "{.status.phase}", "Running");
    let node = ok(
        &s,
        &["get", "pod", "small", "-o", "jsonpath={.spec.nodeName}"],
        None,
    );
    assert!(node.starts_with("hollow-"), "{node}");
    ok(
        &s,
        &[
            "wait",
            "--for=condition=Ready",
            "pod/small",
            "--timeout=30s",
        ],
        None,
    );

    // Four 1-CPU pods per 4-CPU node: twelve fit, the thirteenth does not.
    let many: String = (0..13)
        .map(|i| pod(&format!("cpu-{i:02}"), "1", "Always") + "---\n")
        .collect();
    ok(&s, &["delete", "pod", "small"], None);
    ok(&s, &["apply", "-f", "-"], Some(&many));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let phases = ok(
            &s,
            &[
                "get",
                "pods",
                "-o",
                "jsonpath={range .items[*]}{.status.phase}{\"\\n\"}{end}",
            ],
            None,
        );
        if phases.lines().filter(|p| *p == "Running").count() == 12 {
            assert_eq!(
                phases.lines().filter(|p| *p == "Pending").count(),
                1,
                "{phases}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "twelve pods never ran: {phases}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let per_node = ok(
        &s,
        &[
            "get",
            "pods",
            "-o",
            "jsonpath={range .items[*]}{.spec.nodeName}{\"\\n\"}{end}",
        ],
        None,
    );
    for i in 0..3 {
        assert_eq!(
            per_node
                .lines()
                .filter(|n| *n == format!("hollow-{i}"))
                .count(),
            4,
            "{per_node}"
        );
    }

    // A pod that asks for too much stays Pending, unbound.
    ok(
        &s,
        &["apply", "-f", "-"],
        Some(&pod("huge", "1000", "Always")),
    );
    // Once the scheduler has tried it (and said why it could not place it).
    tug_testkit::kubectl::eventually("a FailedScheduling event for huge", || {
        ok(&s, &["get", "events", "-o", "wide"], None)
            .lines()
            .any(|l| l.contains("FailedScheduling") && l.contains("pod/huge"))
    });
    assert_eq!(
        ok(
            &s,
            &[
                "get",
                "pod",
                "huge",
                "-o",
                "jsonpath={.spec.nodeName}|{.status.phase}"
            ],
            None
        ),
        "|Pending"
    );

    // A pod that runs to completion succeeds.
    ok(&s, &["delete", "pods", "--all"], None);
    ok(
        &s,
        &["apply", "-f", "-"],
        Some(&pod("once", "100m", "Never")),
    );
    until(&s, "pod/once", "{.status.phase}", "Succeeded");

    // The scheduler's metrics are served with the API server's.
    let metrics = ok(&s, &["get", "--raw", "/metrics"], None);
    let scheduled: f64 = metrics
        .lines()
        .find(|l| l.starts_with("scheduler_schedule_attempts_total{result=\"scheduled\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(scheduled >= 1.0, "{metrics}");
    assert!(metrics.contains("scheduler_pending_pods"), "{metrics}");
    assert!(metrics.contains("apiserver_request_total"), "{metrics}");
    assert_eq!(metrics.matches("# EOF").count(), 1, "{metrics}");
}

#[test]
fn unschedulable_pods_say_why_and_selectors_and_taints_are_honoured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        tug_bin!(),
        &dir.path().join("data"),
        &["--simulated-nodes", "3"],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while ok(&s, &["get", "nodes"], None).matches(" Ready ").count() < 3 {
        assert!(Instant::now() < deadline, "three nodes never became Ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let scheduled_reason = "{.status.conditions[?(@.type==\"PodScheduled\")].reason}";

    // Too big for any node: Pending, with the condition and a FailedScheduling event.
    ok(
        &s,
        &["apply", "-f", "-"],
        Some(&pod("huge", "1000", "Always")),
    );
    until(&s, "pod/huge", scheduled_reason, "Unschedulable");
    let events = ok(
        &s,
        &[
            "get",
            "events",
            "--field-selector",
            "reason=FailedScheduling,involvedObject.name=huge",
            "-o",
            "jsonpath={.items[0].message}",
        ],
        None,
    );
    assert!(
        events.starts_with("0/3 nodes are available: 3 Insufficient cpu."),
        "{events}"
    );
    // Tried again after a cluster change, for the same reason: the same event, counted twice.
    std::thread::sleep(Duration::from_secs(6));
    ok(&s, &["label", "node", "hollow-0", "retry=1"], None);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let counts = ok(
            &s,
            &[
                "get",
                "events",
                "--field-selector",
                "reason=FailedScheduling,involvedObject.name=huge",
                "-o",
                "jsonpath={.items[*].count}",
            ],
            None,
        );
        if counts == "2" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not aggregated into one event: counts {counts:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // nodeSelector: only the labelled node.
    ok(&s, &["label", "node", "hollow-1", "disk=ssd"], None);
    let picky = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: picky\nspec:\n  nodeSelector:\n    disk: ssd\n  containers:\n  - name: c\n    image: busybox\n";
    ok(&s, &["apply", "-f", "-"], Some(picky));
    until(&s, "pod/picky", "{.spec.nodeName}", "hollow-1");

    // A tainted node refuses pods that don't tolerate the taint, and says so.
    ok(
        &s,
        &["taint", "node", "hollow-2", "dedicated=gpu:NoSchedule"],
        None,
    );
    let shy = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: shy\nspec:\n  nodeSelector:\n    kubernetes.io/hostname: hollow-2\n  containers:\n  - name: c\n    image: busybox\n";
    ok(&s, &["apply", "-f", "-"], Some(shy));
    until(&s, "pod/shy", scheduled_reason, "Unschedulable");
    let msg = ok(
        &s,
        &[
            "get",
            "pod",
            "shy",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].message}",
        ],
        None,
    );
    assert!(
        msg.contains("1 node(s) had untolerated taint {dedicated: gpu}"),
        "{msg}"
    );
    assert!(
        msg.contains("2 node(s) didn't match Pod's node affinity/selector"),
        "{msg}"
    );
    let tolerant = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: tolerant\nspec:\n  nodeSelector:\n    kubernetes.io/hostname: hollow-2\n  tolerations:\n  - key: dedicated\n    operator: Equal\n    value: gpu\n    effect: NoSchedule\n  containers:\n  - name: c\n    image: busybox\n";
    ok(&s, &["apply", "-f", "-"], Some(tolerant));
    until(&s, "pod/tolerant", "{.spec.nodeName}", "hollow-2");
}

#[test]
fn losing_an_agent_makes_its_nodes_not_ready_and_its_pods_move() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let s = TugServer::start_with(
        tug_bin!(),
        &data,
        &["--simulated-nodes", "2", "--node-monitor-grace-period", "3"],
    );
    let token = std::fs::read_to_string(data.join("token")).expect("admin token");
    let mut agent = Command::new(env!("CARGO_BIN_EXE_tug"))
        .args([
            "agent",
            "--simulate",
            "2",
            "--node-prefix",
            "remote",
            "--heartbeat-interval",
            "0.5",
        ])
        .args(["--server", &s.url, "--token", token.trim(), "--ca-cert"])
        .arg(data.join("pki/ca.crt"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tug agent");
    let deadline = Instant::now() + Duration::from_secs(30);
    while ok(&s, &["get", "nodes"], None).matches(" Ready ").count() < 4 {
        assert!(Instant::now() < deadline, "four Ready nodes never appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
    let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: moving\nspec:\n  replicas: 8\n  selector:\n    matchLabels:\n      app: moving\n  template:\n    metadata:\n      labels:\n        app: moving\n    spec:\n      tolerations:\n      - key: node.kubernetes.io/unreachable\n        operator: Exists\n        effect: NoExecute\n        tolerationSeconds: 2\n      containers:\n      - name: c\n        image: busybox\n        resources:\n          requests:\n            cpu: 500m\n";
    ok(&s, &["apply", "-f", "-"], Some(deploy));
    ok(
        &s,
        &["rollout", "status", "deploy/moving", "--timeout=60s"],
        None,
    );
    let placed = ok(
        &s,
        &[
            "get",
            "pods",
            "-o",
            "jsonpath={range .items[*]}{.spec.nodeName}{\"\\n\"}{end}",
        ],
        None,
    );
    assert!(
        placed.lines().any(|n| n.starts_with("remote-")),
        "some pods run on the agent's nodes: {placed}"
    );

    let _ = agent.kill();
    let _ = agent.wait();
    // Within the grace period (3 s, checked every second) the agent's nodes are NotReady...
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let nodes = ok(&s, &["get", "nodes", "--no-headers"], None);
        if nodes
            .lines()
            .filter(|l| l.starts_with("remote-") && l.contains("NotReady"))
            .count()
            == 2
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the agent's nodes never became NotReady: {nodes}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let taints = ok(
        &s,
        &[
            "get",
            "node",
            "remote-0",
            "-o",
            "jsonpath={.spec.taints[*].key}",
        ],
        None,
    );
    assert!(
        taints.contains("node.kubernetes.io/unreachable"),
        "{taints}"
    );
    // ...and after tolerationSeconds the pods are evicted and replaced on the live nodes.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let placed = ok(
            &s,
            &[
                "get",
                "pods",
                "-o",
                "jsonpath={range .items[*]}{.spec.nodeName} {.metadata.deletionTimestamp} {.status.phase}{\"\\n\"}{end}",
            ],
            None,
        );
        let running_here = placed
            .lines()
            .filter(|l| l.starts_with("hollow-") && l.ends_with("  Running"))
            .count();
        // As in Kubernetes, the evicted pods stay Terminating while their node is unreachable
        // (no kubelet confirms their end); the ReplicaSet no longer counts them.
        let terminating_there = placed
            .lines()
            .filter(|l| l.starts_with("remote-"))
            .all(|l| l.split(' ').nth(1).is_some_and(|t| !t.is_empty()));
        if running_here == 8 && terminating_there {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pods were not moved off the lost nodes: {placed}\n{}",
            ok(
                &s,
                &[
                    "get",
                    "pods,rs",
                    "-o",
                    "custom-columns=NAME:.metadata.name,NODE:.spec.nodeName,PHASE:.status.phase,DEL:.metadata.deletionTimestamp,REPLICAS:.status.replicas"
                ],
                None
            )
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The nodes the pods with `selector` in namespace `ns` run on (one line each; empty for
/// pending pods).
fn placements(s: &TugServer, ns: &str, selector: &str) -> Vec<String> {
    let out = ok(
        s,
        &[
            "get",
            "pods",
            "-n",
            ns,
            "-l",
            selector,
            "-o",
            "jsonpath={range .items[*]}{.spec.nodeName}{\"\\n\"}{end}",
        ],
        None,
    );
    out.lines().map(str::to_string).collect()
}

/// Waits until `count` pods match and `check` holds for their placements.
fn placed(
    s: &TugServer,
    ns: &str,
    selector: &str,
    count: usize,
    check: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = placements(s, ns, selector);
        if p.len() == count && check(&p) {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "{ns}/{selector}: placements never settled: {p:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn deployment(ns: &str, name: &str, replicas: u32, cpu: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n{extra_spec}      containers:\n      - name: c\n        image: busybox\n        resources:\n          requests:\n            cpu: \"{cpu}\"\n"
    )
}

#[test]
fn anti_affinity_spread_and_preemption_place_pods_as_promised() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        tug_bin!(),
        &dir.path().join("data"),
        &["--simulated-nodes", "4"],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while ok(&s, &["get", "nodes"], None).matches(" Ready ").count() < 4 {
        assert!(Instant::now() < deadline, "four nodes never became Ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    for (node, zone) in [
        ("hollow-0", "a"),
        ("hollow-1", "a"),
        ("hollow-2", "a"),
        ("hollow-3", "b"),
    ] {
        ok(
            &s,
            &[
                "label",
                "node",
                node,
                &format!("topology.kubernetes.io/zone={zone}"),
            ],
            None,
        );
    }
    for ns in ["anti", "spread", "prio"] {
        ok(&s, &["create", "namespace", ns], None);
    }

    // Required anti-affinity on the hostname: at most one per node; the two left over stay
    // Pending and say why.
    let anti = "      affinity:\n        podAntiAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n          - topologyKey: kubernetes.io/hostname\n            labelSelector:\n              matchLabels:\n                app: lonely\n";
    ok(
        &s,
        &["apply", "-f", "-"],
        Some(&deployment("anti", "lonely", 6, "10m", anti)),
    );
    let p = placed(&s, "anti", "app=lonely", 6, |p| {
        p.iter().filter(|n| !n.is_empty()).count() == 4
    });
    let mut nodes: Vec<&String> = p.iter().filter(|n| !n.is_empty()).collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 4, "two lonely pods share a node: {p:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = ok(
            &s,
            &[
                "get",
                "events",
                "-n",
                "anti",
                "--field-selector",
                "reason=FailedScheduling",
                "-o",
                "jsonpath={.items[*].message}",
            ],
            None,
        );
        if events.contains("4 node(s) didn't match pod anti-affinity rules") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no anti-affinity FailedScheduling: {events}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Topology spread over zones (maxSkew 1): 6 replicas split 3 and 3, although zone a has
    // three nodes and zone b one (resource scores alone would favour a).
    let spread = "      topologySpreadConstraints:\n      - maxSkew: 1\n        topologyKey: topology.kubernetes.io/zone\n        whenUnsatisfiable: DoNotSchedule\n        labelSelector:\n          matchLabels:\n            app: even\n";
    ok(
        &s,
        &["apply", "-f", "-"],
        Some(&deployment("spread", "even", 6, "10m", spread)),
    );
    let p = placed(&s, "spread", "app=even", 6, |p| {
        p.iter().all(|n| !n.is_empty())
    });
    let in_a = p.iter().filter(|n| *n != "hollow-3").count();
    assert_eq!(in_a, 3, "zones unevenly used: {p:?}");

    // Preemption: low-priority pods fill every node; a high-priority pod evicts one of them.
    let classes = "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: low\nvalue: 10\n---\napiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: high\nvalue: 1000\n";
    ok(&s, &["apply", "-f", "-"], Some(classes));
    ok(
        &s,
        &["apply", "-f", "-"],
        Some(&deployment(
            "prio",
            "filler",
            4,
            "3",
            "      priorityClassName: low\n",
        )),
    );
    placed(&s, "prio", "app=filler", 4, |p| {
        p.iter().all(|n| !n.is_empty())
    });
    let vip = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: vip\n  namespace: prio\nspec:\n  priorityClassName: high\n  containers:\n  - name: c\n    image: busybox\n    resources:\n      requests:\n        cpu: \"3\"\n";
    ok(&s, &["apply", "-f", "-"], Some(vip));
    assert_eq!(
        ok(
            &s,
            &[
                "get",
                "pod",
                "vip",
                "-n",
                "prio",
                "-o",
                "jsonpath={.spec.priority}"
            ],
            None
        ),
        "1000"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let node = ok(
            &s,
            &[
                "get",
                "pod",
                "vip",
                "-n",
                "prio",
                "-o",
                "jsonpath={.spec.nodeName}",
            ],
            None,
        );
        if !node.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the high-priority pod never ran");
        std::thread::sleep(Duration::from_millis(200));
    }
    let preempted = ok(
        &s,
        &[
            "get",
            "events",
            "-n",
            "prio",
            "--field-selector",
            "reason=Preempted",
            "-o",
            "jsonpath={.items[*].message}",
        ],
        None,
    );
    assert!(preempted.contains("Preempted by pod"), "{preempted}");
    // The evicted filler's replacement has nowhere to go: it waits, and cannot preempt the
    // more important pod.
    placed(&s, "prio", "app=filler", 4, |p| {
        p.iter().filter(|n| n.is_empty()).count() == 1
    });
    // A pod naming a class that does not exist is refused at admission.
    let o = kubectl(
        &s,
        &["apply", "-f", "-"],
        Some(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: nope\nspec:\n  priorityClassName: missing\n  containers:\n  - name: c\n    image: busybox\n",
        ),
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no PriorityClass with name missing was found"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn a_node_reporting_not_ready_is_tainted_until_it_is_ready_again() {
    use tug_testkit::kubectl::eventually;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        tug_bin!(),
        &dir.path().join("data"),
        &["--simulated-nodes", "1"],
    );
    until(
        &s,
        "node/hollow-0",
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        "True",
    );
    let set_ready = |status: &str| {
        let patch = format!(
            r#"{{"status":{{"conditions":[{{"type":"Ready","status":"{status}","reason":"Test"}}]}}}}"#
        );
        ok(
            &s,
            &[
                "patch",
                "node",
                "hollow-0",
                "--subresource=status",
                "--type=strategic",
                "-p",
                &patch,
            ],
            None,
        );
    };
    set_ready("False");
    let taints = || {
        ok(
            &s,
            &[
                "get",
                "node",
                "hollow-0",
                "-o",
                "jsonpath={.spec.taints[*].key}:{.spec.taints[*].effect}",
            ],
            None,
        )
    };
    eventually("the not-ready NoExecute taint", || {
        taints() == "node.kubernetes.io/not-ready:NoExecute"
    });
    set_ready("True");
    eventually("the taint removed", || taints() == ":");
}

#[test]
fn nodes_get_distinct_pod_cidrs_and_pods_their_addresses_from_them() {
    use tug_testkit::kubectl::eventually;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        tug_bin!(),
        &dir.path().join("data"),
        &["--simulated-nodes", "3", "--cluster-cidr", "10.50.0.0/16"],
    );
    let cidrs = || -> Vec<String> {
        ok(
            &s,
            &["get", "nodes", "-o", "jsonpath={.items[*].spec.podCIDR}"],
            None,
        )
        .split_whitespace()
        .map(str::to_string)
        .collect()
    };
    eventually("three nodes with pod CIDRs", || cidrs().len() == 3);
    let mut seen = cidrs();
    assert!(
        seen.iter()
            .all(|c| c.starts_with("10.50.") && c.ends_with(".0/24")),
        "{seen:?}"
    );
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 3, "shared blocks: {seen:?}");
    ok(&s, &["apply", "-f", "-"], Some(&pod("ip", "10m", "Always")));
    until(&s, "pod/ip", "{.status.phase}", "Running");
    let node = ok(
        &s,
        &["get", "pod", "ip", "-o", "jsonpath={.spec.nodeName}"],
        None,
    );
    let block = ok(
        &s,
        &["get", "node", &node, "-o", "jsonpath={.spec.podCIDR}"],
        None,
    );
    let ip = ok(
        &s,
        &["get", "pod", "ip", "-o", "jsonpath={.status.podIP}"],
        None,
    );
    let prefix = block.trim_end_matches("0/24");
    assert!(
        ip.starts_with(prefix),
        "pod IP {ip} outside its node's block {block}"
    );
}

#[test]
fn pods_follow_the_node_affinity_of_their_bound_volumes() {
    use tug_testkit::kubectl::{apply, eventually};
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        tug_bin!(),
        &dir.path().join("data"),
        &["--simulated-nodes", "3"],
    );
    eventually("three Ready nodes", || {
        ok(&s, &["get", "nodes"], None).matches(" Ready ").count() == 3
    });
    // A local volume on hollow-2, bound to a claim.
    apply(
        &s,
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: local-2}\nspec:\n  capacity: {storage: 1Gi}\n  accessModes: [ReadWriteOnce]\n  hostPath: {path: /tmp/x}\n  nodeAffinity:\n    required:\n      nodeSelectorTerms:\n      - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [hollow-2]}]\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n  volumeName: local-2\n",
    );
    for i in 0..3 {
        apply(
            &s,
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: user-{i}}}\nspec:\n  containers: [{{name: c, image: busybox}}]\n  volumes: [{{name: d, persistentVolumeClaim: {{claimName: data}}}}]\n"
            ),
        );
    }
    eventually("every user of the volume on hollow-2", || {
        ok(
            &s,
            &["get", "pods", "-o", "jsonpath={.items[*].spec.nodeName}"],
            None,
        ) == "hollow-2 hollow-2 hollow-2"
    });
    // A claim that does not exist keeps the pod Pending, saying so.
    apply(
        &s,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: lost}\nspec:\n  containers: [{name: c, image: busybox}]\n  volumes: [{name: d, persistentVolumeClaim: {claimName: nowhere}}]\n",
    );
    until(
        &s,
        "pod/lost",
        "{.status.conditions[?(@.type==\"PodScheduled\")].message}",
        "0/3 nodes are available: 3 persistentvolumeclaim \"nowhere\" not found. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
    );
}
