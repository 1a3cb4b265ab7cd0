//! High availability: servers joined with `--cluster-init` / `--join`, each with its own etcd
//! member, sharing one CA and one set of tokens; agents and leases failing over when a server
//! dies; bad joins refused with clear errors.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tug_testkit::ha::HaCluster;
use tug_testkit::tug_bin;

/// `tug server --join` with extra arguments, expected to fail; returns its stderr.
fn failed_join(cluster: &HaCluster, url: &str, token: &str) -> String {
    failed_join_as(cluster, url, token, "intruder")
}

/// [`failed_join`] under a node name of our choosing.
fn failed_join_as(cluster: &HaCluster, url: &str, token: &str, name: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(tug_bin!())
        .args(["server", "--disable-agent", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--join", url, "--token", token, "--node-name", name])
        .args(["--etcd-client-port", &cluster.etcd_ports.0.to_string()])
        .args(["--etcd-peer-port", &cluster.etcd_ports.1.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("run tug server");
    assert!(!out.status.success(), "a bad join succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The addresses the `kubernetes` EndpointSlice lists, read through server `i`.
fn endpoints(cluster: &HaCluster, i: usize) -> String {
    cluster.ok(
        i,
        &[
            "get",
            "endpointslice",
            "kubernetes",
            "-o",
            "jsonpath={.endpoints[*].addresses[0]}",
        ],
    )
}

/// Who holds the scheduler's Lease, read through server `i`.
fn holder(cluster: &HaCluster, i: usize) -> String {
    cluster.ok(
        i,
        &[
            "get",
            "lease",
            "-n",
            "kube-system",
            "kube-scheduler",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
    )
}

#[test]
fn servers_join_share_credentials_and_survive_losing_one() {
    let bin = tug_bin!();
    let mut cluster = HaCluster::start(bin, 3);

    // One CA, one admin token: a token of the first server works on the third.
    let ca = |i: usize| std::fs::read(cluster.data_dir(i).join("pki/ca.crt")).expect("ca");
    assert_eq!(ca(0), ca(2), "servers share the cluster CA");
    let admin_token = std::fs::read_to_string(cluster.data_dir(0).join("token")).expect("token");
    let out = Command::new(tug_testkit::server::kubectl_path())
        .args(["--server", &cluster.url(2), "--token", admin_token.trim()])
        .arg("--certificate-authority")
        .arg(cluster.data_dir(0).join("pki/ca.crt"))
        .args(["get", "namespace", "kube-system", "-o", "name"])
        .output()
        .expect("kubectl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "namespace/kube-system",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Writes through one server are read through another.
    cluster.ok(
        0,
        &["create", "configmap", "written-on-0", "--from-literal=k=v"],
    );
    assert_eq!(
        cluster.ok(
            2,
            &[
                "get",
                "configmap",
                "written-on-0",
                "-o",
                "jsonpath={.data.k}"
            ]
        ),
        "v"
    );
    // The kubernetes Service lists every server.
    cluster.wait_for(
        "every server in the kubernetes EndpointSlice",
        Duration::from_secs(20),
        || {
            let listed = endpoints(&cluster, 1);
            cluster
                .addresses
                .iter()
                .all(|a| listed.split_whitespace().any(|l| l == a))
                .then_some(())
        },
    );

    // Two servers asked for the same ClusterIP at the same moment: one Service gets it.
    let results: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = [1usize, 2]
            .iter()
            .map(|&i| {
                let cluster = &cluster;
                scope.spawn(move || {
                    cluster
                        .kubectl(
                            i,
                            &[
                                "create",
                                "service",
                                "clusterip",
                                &format!("same-ip-{i}"),
                                "--tcp=80:80",
                                "--clusterip=10.96.7.7",
                            ],
                        )
                        .status
                        .success()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(false))
            .collect()
    });
    assert_eq!(
        results.iter().filter(|ok| **ok).count(),
        1,
        "exactly one Service gets 10.96.7.7: {results:?}"
    );

    // Bad joins say why.
    let token = cluster.token();
    let (hash, secret) = token.split_once("::server:").expect("token shape");
    let wrong_secret = format!("{hash}::server:{secret}x");
    let e = failed_join(&cluster, &cluster.url(0), &wrong_secret);
    assert!(
        e.contains("401") && e.contains("the server token is not this cluster's"),
        "{e}"
    );
    let other_ca = format!("K10{}::server:{secret}", "0".repeat(64));
    let e = failed_join(&cluster, &cluster.url(0), &other_ca);
    assert!(
        e.contains("holds a CA with hash") && e.contains("the token is for another cluster"),
        "{e}"
    );
    let e = failed_join_as(&cluster, &cluster.url(0), &token, "s1");
    assert!(
        e.contains("409") && e.contains("a member named \"s1\" already exists"),
        "{e}"
    );
    let e = failed_join(&cluster, &cluster.url(0), "not-a-token");
    assert!(
        e.contains("--token") && e.contains("not a server token"),
        "{e}"
    );

    // Hollow nodes joined through the first server.
    let agent_dir = tempfile::tempdir().expect("tempdir");
    let agent_log = agent_dir.path().join("agent.log");
    let mut agent = Command::new(bin)
        .args(["agent", "--simulate", "2", "--heartbeat-interval", "1"])
        .args(["--server", &cluster.url(0), "--token", admin_token.trim()])
        .arg("--ca-cert")
        .arg(cluster.data_dir(0).join("pki/ca.crt"))
        .arg("--data-dir")
        .arg(agent_dir.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&agent_log).expect("agent log"))
        .spawn()
        .expect("tug agent");
    cluster.ok(
        1,
        &[
            "create",
            "deployment",
            "web",
            "--image=busybox",
            "--replicas=2",
        ],
    );
    cluster.ok(1, &["rollout", "status", "deploy/web", "--timeout=60s"]);
    assert!(
        holder(&cluster, 1).starts_with("s0_"),
        "the first server leads: {}",
        holder(&cluster, 1)
    );

    // Kill the first server (the leader, and the agent's server): writes go on through the
    // others, the leases move within the lease duration, the agent moves to another server.
    cluster.kill(0);
    let killed = Instant::now();
    cluster.wait_for("a write through server 1", Duration::from_secs(5), || {
        cluster
            .kubectl(1, &["create", "configmap", "after-the-kill"])
            .status
            .success()
            .then_some(())
    });
    cluster.wait_for(
        "the scheduler's lease to move",
        Duration::from_secs(15),
        || (!holder(&cluster, 1).starts_with("s0_")).then_some(()),
    );
    let takeover = killed.elapsed();
    cluster.ok(1, &["scale", "deploy/web", "--replicas=4"]);
    cluster.wait_for(
        "4 ready replicas after the takeover",
        Duration::from_secs(40),
        || {
            (cluster.ok(
                2,
                &[
                    "get",
                    "deploy",
                    "web",
                    "-o",
                    "jsonpath={.status.readyReplicas}",
                ],
            ) == "4")
                .then_some(())
        },
    );
    let log = std::fs::read_to_string(&agent_log).unwrap_or_default();
    assert!(
        log.contains("moving to another"),
        "the agent did not move:\n{log}"
    );
    for node in ["hollow-0", "hollow-1"] {
        let ready = cluster.ok(
            1,
            &[
                "get",
                "node",
                node,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ],
        );
        assert_eq!(ready, "True", "{node} stays Ready through the failover");
    }
    // The dead server leaves the kubernetes Service once its Lease runs out.
    cluster.wait_for(
        "the dead server to leave the EndpointSlice",
        Duration::from_secs(30),
        || {
            (!endpoints(&cluster, 1)
                .split_whitespace()
                .any(|a| a == cluster.addresses[0]))
            .then_some(())
        },
    );
    eprintln!("leases moved {takeover:?} after the kill");

    // Remove the dead server's member; a second removal says there is no such server.
    let remove = |name: &str| {
        Command::new(bin)
            .args(["server", "remove", name, "--data-dir"])
            .arg(cluster.data_dir(1))
            .output()
            .expect("tug server remove")
    };
    let out = remove("s0");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed server s0"));
    let out = remove("s0");
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && e.contains("no server \"s0\"") && e.contains("s1"),
        "{e}"
    );
    // Still writable with two of two members.
    cluster.ok(2, &["create", "configmap", "after-the-removal"]);

    let _ = agent.kill();
    let _ = agent.wait();
}

/// The names and UIDs of the ConfigMaps in `ns`, read through server `i`.
fn configmap_uids(cluster: &HaCluster, i: usize, ns: &str) -> Vec<String> {
    let out = cluster.ok(
        i,
        &[
            "get",
            "configmaps",
            "-n",
            ns,
            "-l",
            "drill",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.metadata.uid}{\"\\n\"}{end}",
        ],
    );
    let mut lines: Vec<String> = out.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// Restore drill: scheduled snapshots (kept to their retention) are listed; after a
/// namespace full of objects is deleted, the whole cluster is restored from one snapshot
/// (the first server reset to a one-member etcd from it, the others rejoining from scratch)
/// and everything is back with the same UIDs, revisions moving forward. A damaged snapshot
/// is refused before anything changes.
#[test]
fn a_cluster_comes_back_from_a_scheduled_snapshot() {
    let bin = tug_bin!();
    let mut cluster = HaCluster::start_with(
        bin,
        3,
        &[
            "--snapshot-schedule",
            "*/2 * * * * *",
            "--snapshot-retention",
            "3",
        ],
    );
    cluster.ok(0, &["create", "namespace", "drill"]);
    for i in 0..20 {
        let name = format!("cm-{i}");
        cluster.ok(
            0,
            &[
                "create",
                "configmap",
                &name,
                "-n",
                "drill",
                &format!("--from-literal=i={i}"),
            ],
        );
        cluster.ok(
            0,
            &["label", "configmap", &name, "-n", "drill", "drill=yes"],
        );
    }
    let before = configmap_uids(&cluster, 1, "drill");
    assert_eq!(before.len(), 20);
    let written: i64 = cluster
        .ok(
            0,
            &[
                "get",
                "configmap",
                "cm-19",
                "-n",
                "drill",
                "-o",
                "jsonpath={.metadata.resourceVersion}",
            ],
        )
        .parse()
        .expect("resourceVersion");

    // A scheduled snapshot taken after the writes, listed by `tug snapshot ls`; retention
    // keeps at most 3 of server 0's.
    let dir0 = cluster.data_dir(0);
    let dir0 = dir0.to_str().expect("utf-8");
    let snapshot = cluster.wait_for(
        "a snapshot after the writes",
        Duration::from_secs(30),
        || {
            let out = cluster.tug(&["snapshot", "ls", "--data-dir", dir0]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.lines()
                .skip(1)
                .filter_map(|l| {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    let revision: i64 = cols.get(2)?.parse().ok()?;
                    (revision >= written && cols.get(3) == Some(&"etcd"))
                        .then(|| cols[0].to_string())
                })
                .next()
        },
    );
    // Keep the chosen snapshot (and its record) from being pruned.
    let file = cluster.data_dir(0).join("snapshots").join(&snapshot);
    let kept = cluster.data_dir(0).join("drill.snap");
    std::fs::copy(&file, &kept).expect("copy the snapshot");
    std::fs::copy(
        format!("{}.json", file.display()),
        format!("{}.json", kept.display()),
    )
    .expect("copy its record");
    std::thread::sleep(Duration::from_secs(7));
    let listed = cluster.tug(&["snapshot", "ls", "--data-dir", dir0]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let count = listed
        .lines()
        .filter(|l| l.starts_with("tug-snapshot-s0-"))
        .count();
    assert_eq!(count, 3, "retention keeps 3:\n{listed}");

    cluster.ok(1, &["delete", "namespace", "drill", "--timeout=60s"]);
    assert!(
        cluster
            .kubectl(1, &["get", "namespace", "drill"])
            .status
            .code()
            .is_some_and(|c| c != 0)
    );

    // Every server stops; a damaged copy is refused and changes nothing.
    for i in 0..3 {
        cluster.kill(i);
    }
    let damaged = cluster.data_dir(0).join("damaged.snap");
    let mut bytes = std::fs::read(&kept).expect("read snapshot");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&damaged, bytes).expect("write damaged copy");
    std::fs::copy(
        format!("{}.json", kept.display()),
        format!("{}.json", damaged.display()),
    )
    .expect("copy record");
    let out = cluster.tug(&[
        "snapshot",
        "restore",
        damaged.to_str().expect("utf-8"),
        "--data-dir",
        dir0,
    ]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("is damaged"), "{e}");

    // Restore into server 0, start it, then the others: they rejoin from scratch.
    let out = cluster.tug(&[
        "snapshot",
        "restore",
        kept.to_str().expect("utf-8"),
        "--data-dir",
        dir0,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("as a cluster of one"));
    cluster.restart(0);
    cluster.restart(1);
    cluster.restart(2);
    assert_eq!(
        configmap_uids(&cluster, 2, "drill"),
        before,
        "the same objects, same UIDs"
    );
    cluster.ok(2, &["create", "configmap", "after-restore", "-n", "drill"]);
    let after: i64 = cluster
        .ok(
            0,
            &[
                "get",
                "configmap",
                "after-restore",
                "-n",
                "drill",
                "-o",
                "jsonpath={.metadata.resourceVersion}",
            ],
        )
        .parse()
        .expect("resourceVersion");
    assert!(
        after > written,
        "revisions move forward: {after} after {written}"
    );
    for i in 1..3 {
        let log =
            std::fs::read_to_string(cluster.data_dir(i).join("server.log")).unwrap_or_default();
        assert!(
            log.contains("joining it again with fresh etcd data"),
            "server {i} did not rejoin:\n{}",
            cluster.log_tail(i)
        );
    }
    // Three members again: every server serves the cluster.
    cluster.wait_for(
        "every server in the kubernetes EndpointSlice",
        Duration::from_secs(30),
        || {
            let listed = endpoints(&cluster, 0);
            (listed.split_whitespace().count() == 3).then_some(())
        },
    );

    // The same snapshot onto a fresh cluster of its own: the objects come back there too.
    let mut fresh = HaCluster::start(bin, 1);
    fresh.kill(0);
    let fresh_dir = fresh.data_dir(0);
    let out = fresh.tug(&[
        "snapshot",
        "restore",
        kept.to_str().expect("utf-8"),
        "--data-dir",
        fresh_dir.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fresh.restart(0);
    assert_eq!(
        configmap_uids(&fresh, 0, "drill"),
        before,
        "the fresh cluster holds them too"
    );
}

/// A server whose etcd lost its quorum reports not ready, naming etcd, and acknowledges no
/// write; it recovers when a member comes back. A server stopped gracefully hands its
/// Leases over at once.
#[test]
fn lost_quorum_is_not_ready_and_a_graceful_stop_hands_over_at_once() {
    let bin = tug_bin!();
    // A long lease: a takeover within seconds can only come from a released Lease.
    let mut cluster = HaCluster::start_with(
        bin,
        3,
        &[
            "--leader-elect-lease-duration",
            "30s",
            "--leader-elect-renew-deadline",
            "20s",
            "--leader-elect-retry-period",
            "1s",
        ],
    );
    assert_eq!(cluster.ok(0, &["get", "--raw", "/readyz"]), "ok");
    let verbose = cluster.ok(0, &["get", "--raw", "/readyz?verbose"]);
    assert!(
        verbose.contains("[+]etcd ok") && verbose.ends_with("readyz check passed\n"),
        "{verbose}"
    );

    cluster.kill(1);
    cluster.kill(2);
    let not_ready = cluster.wait_for(
        "server 0 to report not ready",
        Duration::from_secs(20),
        || {
            let out = cluster.kubectl(0, &["get", "--raw", "/readyz?verbose"]);
            (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
        },
    );
    assert!(not_ready.contains("[-]etcd failed"), "{not_ready}");
    let out = cluster.kubectl(0, &["get", "--raw", "/readyz/etcd"]);
    let reason = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success() && reason.contains("etcd"), "{reason}");
    let out = cluster.kubectl(0, &["create", "configmap", "without-quorum"]);
    assert!(
        !out.status.success(),
        "a write was acknowledged without quorum"
    );

    // A member back: ready again, writes go through, the refused write is not there.
    cluster.restart(1);
    cluster.wait_for(
        "server 0 to be ready again",
        Duration::from_secs(30),
        || {
            cluster
                .kubectl(0, &["get", "--raw", "/readyz"])
                .status
                .success()
                .then_some(())
        },
    );
    cluster.ok(0, &["create", "configmap", "with-quorum"]);
    let listed = cluster.ok(1, &["get", "configmaps", "-o", "name"]);
    assert!(listed.contains("configmap/with-quorum"), "{listed}");

    cluster.restart(2);
    // The leader stopped with SIGTERM releases its Leases: the other takes over within a
    // retry period or two, not a lease duration.
    let leader = holder(&cluster, 1);
    let leading = if leader.starts_with("s0_") { 0 } else { 1 };
    let other = 1 - leading;
    let stopped = Instant::now();
    cluster.terminate(leading);
    cluster.wait_for(
        "another server to take over",
        Duration::from_secs(25),
        || {
            let now = holder(&cluster, other);
            (!now.is_empty() && !now.starts_with(&format!("s{leading}_"))).then_some(())
        },
    );
    let handover = stopped.elapsed();
    assert!(
        handover < Duration::from_secs(4),
        "handover took {handover:?}"
    );
}
