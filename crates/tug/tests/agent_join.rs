//! `tug agent` joining a `tug server` (without its own agent) as a real node: TLS bootstrap
//! through CertificateSigningRequests approved for the join token, then pods, logs and
//! status through the node's own certificates. Needs root (CI is root).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tug_testkit::kubectl::{eventually_within as wait_until, kubectl, ok};
use tug_testkit::server::{TugServer, kill_agent_processes};
use tug_testkit::tug_bin;

/// A `tug agent` process, stopped with its containers when dropped.
struct Agent {
    child: Child,
    dir: std::path::PathBuf,
    bridge: String,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        kill_agent_processes(&self.dir);
        tug_testkit::server::remove_pod_network(&self.bridge, Some(CLUSTER_CIDR));
    }
}

/// The pod network of the test's cluster (the server's and the agent's --cluster-cidr).
const CLUSTER_CIDR: &str = "10.90.0.0/16";

fn get(s: &TugServer, args: &[&str]) -> String {
    String::from_utf8_lossy(&kubectl(s, args, None).stdout).to_string()
}

#[test]
fn an_agent_joins_with_the_token_and_runs_pods() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = TugServer::start_with(
        tug_bin!(),
        &dir.path().join("server"),
        &["--cluster-cidr", CLUSTER_CIDR],
    );
    let agent_dir = dir.path().join("agent");
    let archive = tug_testkit::image::busybox_archive(dir.path(), "docker.io/library/busybox:test");
    let out = Command::new(tug_bin!())
        .args(["image", "import"])
        .arg(&archive)
        .arg("--data-dir")
        .arg(&agent_dir)
        .output()
        .expect("import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bridge = format!("tugj{}", std::process::id() % 100_000);
    let mut agent = Agent {
        child: spawn_agent(&s, &agent_dir, &bridge),
        dir: agent_dir.clone(),
        bridge: bridge.clone(),
    };
    wait_until(
        "the joined node to be Ready",
        Duration::from_secs(60),
        || {
            get(
                &s,
                &[
                    "get",
                    "node",
                    "joined",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ],
            ) == "True"
        },
    );
    // Both certificates came through approved requests, and the agent kept them.
    let csrs = get(
        &s,
        &[
            "get",
            "csr",
            "-o",
            "jsonpath={range .items[*]}{.spec.signerName} {.status.conditions[0].type}{\"\\n\"}{end}",
        ],
    );
    assert!(
        csrs.contains("kubernetes.io/kube-apiserver-client-kubelet Approved")
            && csrs.contains("kubernetes.io/kubelet-serving Approved"),
        "{csrs}"
    );
    assert!(agent_dir.join("pki/kubelet-client.crt").exists());
    ok(
        &s,
        &[
            "run",
            "hello",
            "--image=busybox:test",
            "--restart=Never",
            "--",
            "echo",
            "hi from the joined node",
        ],
    );
    wait_until("hello to succeed", Duration::from_secs(60), || {
        get(
            &s,
            &["get", "pod", "hello", "-o", "jsonpath={.status.phase}"],
        ) == "Succeeded"
    });
    assert_eq!(
        get(
            &s,
            &["get", "pod", "hello", "-o", "jsonpath={.spec.nodeName}"]
        ),
        "joined"
    );
    assert_eq!(ok(&s, &["logs", "hello"]).trim(), "hi from the joined node");
    // The kubelet API answers the API server and admins, not other nodes: the agent's own
    // node certificate is refused, the admin certificate is not.
    let port = get(
        &s,
        &[
            "get",
            "node",
            "joined",
            "-o",
            "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}",
        ],
    );
    let kubelet = |cert: &Path, key: &Path, path: &str| {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(s.data_dir.join("pki/ca.crt"))
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .arg(format!("https://127.0.0.1:{port}{path}"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let logs = "/containerLogs/default/hello/hello";
    let (node_cert, node_key) = (
        agent_dir.join("pki/kubelet-client.crt"),
        agent_dir.join("pki/kubelet-client.key"),
    );
    assert_eq!(kubelet(&node_cert, &node_key, logs), "403");
    assert_eq!(kubelet(&node_cert, &node_key, "/healthz"), "200");
    let (admin_cert, admin_key) = (
        s.data_dir.join("pki/admin.crt"),
        s.data_dir.join("pki/admin.key"),
    );
    assert_eq!(kubelet(&admin_cert, &admin_key, logs), "200");

    // A pod deleted while the agent is down is cleaned up when it comes back.
    ok(
        &s,
        &[
            "run",
            "orphan",
            "--image=busybox:test",
            "--",
            "sleep",
            "3600",
        ],
    );
    wait_until("orphan to run", Duration::from_secs(60), || {
        get(
            &s,
            &["get", "pod", "orphan", "-o", "jsonpath={.status.phase}"],
        ) == "Running"
    });
    let id = get(
        &s,
        &[
            "get",
            "pod",
            "orphan",
            "-o",
            "jsonpath={.status.containerStatuses[0].containerID}",
        ],
    );
    let container_dir = agent_dir
        .join("containers")
        .join(id.trim_start_matches("tugboat://"));
    let pid = std::fs::read_to_string(container_dir.join("pid")).expect("pid");
    let _ = agent.child.kill();
    let _ = agent.child.wait();
    // Forced: gone from the API at once, so only the node's leftovers remain to clean up.
    ok(
        &s,
        &["delete", "pod", "orphan", "--force", "--grace-period=0"],
    );
    assert!(
        Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "the container outlived its agent"
    );
    agent.child = spawn_agent(&s, &agent_dir, &bridge);
    wait_until(
        "the orphan's container to be stopped and removed",
        Duration::from_secs(60),
        || !container_dir.exists() && !Path::new(&format!("/proc/{}", pid.trim())).exists(),
    );
}

#[test]
fn the_node_renews_its_client_certificate_before_it_expires() {
    let dir = tempfile::tempdir().expect("tmp");
    // Certificates valid for 40 s: renewed 28-36 s after they are issued.
    let s = TugServer::start_with(
        tug_bin!(),
        &dir.path().join("server"),
        &[
            "--cluster-cidr",
            CLUSTER_CIDR,
            "--cluster-signing-duration",
            "40s",
        ],
    );
    let agent_dir = dir.path().join("agent");
    let bridge = format!("tugr{}", std::process::id() % 100_000);
    let _agent = Agent {
        child: spawn_agent(&s, &agent_dir, &bridge),
        dir: agent_dir.clone(),
        bridge,
    };
    let cert_path = agent_dir.join("pki/kubelet-client.crt");
    wait_until("the first certificate", Duration::from_secs(60), || {
        cert_path.exists()
    });
    let first = std::fs::read_to_string(&cert_path).expect("certificate");
    wait_until(
        "the certificate to be renewed",
        Duration::from_secs(90),
        || std::fs::read_to_string(&cert_path).is_ok_and(|c| c != first),
    );
    // The renewal was asked for by the node itself and approved as a self renewal.
    let csrs = get(
        &s,
        &[
            "get",
            "csr",
            "-o",
            "jsonpath={range .items[*]}{.spec.signerName} {.spec.username} {.status.conditions[0].message}{\"\\n\"}{end}",
        ],
    );
    assert!(
        csrs.lines().any(|l| l.starts_with(
            "kubernetes.io/kube-apiserver-client-kubelet system:node:joined Auto approving self kubelet client certificate"
        )),
        "{csrs}"
    );
    assert!(
        csrs.contains("system:bootstrap:node-token Auto approving kubelet client certificate after SubjectAccessReview."),
        "{csrs}"
    );
    // Past the first certificate's expiry the node is still Ready on the renewed one.
    std::thread::sleep(Duration::from_secs(15));
    wait_until(
        "the node to be Ready on its renewed certificate",
        Duration::from_secs(30),
        || {
            get(
                &s,
                &[
                    "get",
                    "node",
                    "joined",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ],
            ) == "True"
        },
    );
}

/// Starts `tug agent` for node `joined` on the server's token.
fn spawn_agent(s: &TugServer, agent_dir: &Path, bridge: &str) -> Child {
    let token = std::fs::read_to_string(s.data_dir.join("node-token")).expect("node token");
    Command::new(tug_bin!())
        .args(["agent", "--server", &s.url, "--token", token.trim()])
        .arg("--ca-cert")
        .arg(s.data_dir.join("pki/ca.crt"))
        .args([
            "--node-name",
            "joined",
            "--kubelet-port",
            "0",
            "--pod-bridge",
            bridge,
            "--cluster-cidr",
            CLUSTER_CIDR,
        ])
        .arg("--data-dir")
        .arg(agent_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tug agent")
}

#[test]
fn a_wrong_token_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = TugServer::start_with(tug_bin!(), &dir.path().join("server"), &[]);
    let out = Command::new(tug_bin!())
        .args(["agent", "--server", &s.url, "--token", "not-the-token"])
        .arg("--ca-cert")
        .arg(s.data_dir.join("pki/ca.crt"))
        .args(["--node-name", "intruder", "--kubelet-port", "0"])
        .arg("--data-dir")
        .arg(dir.path().join("agent"))
        .output()
        .expect("tug agent");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Unauthorized") || err.contains("401"), "{err}");
    assert!(get(&s, &["get", "nodes", "-o", "name"]).trim().is_empty());
}
