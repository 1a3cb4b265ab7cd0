//! High availability: servers joined with `--cluster-init` / `--join`, each with its own etcd
//! member, sharing one CA and one set of tokens; agents and leases failing over when a server
//! dies; bad joins refused with clear errors.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tug_testkit::ha::HaCluster;
use tug_testkit::tug_bin;

/// `tug server --join` with extra arguments, expected to fail; returns its stderr.
fn failed_join(cluster: &HaCluster, url: &str, token: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(tug_bin!())
        .args(["server", "--disable-agent", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--join", url, "--token", token, "--node-name", "intruder"])
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
