//! `tug server` alone is a one-node cluster: its built-in agent runs real containers from an
//! imported busybox image. Needs root (CI is root). The cluster helpers live here; the tests,
//! by theme, in the modules.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tug_testkit::kubectl::{apply, eventually_within as wait_until, jsonpath, kubectl, ok};
use tug_testkit::server::TugServer;
use tug_testkit::tug_bin;

mod images;
mod lifecycle;
mod metrics;
mod network;
mod node;
mod security;
mod streams;
mod stress;
mod volumes;

const IMAGE: &str = "docker.io/library/busybox:test";

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
    let out = Command::new(tug_bin!())
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
    let s = TugServer::start_with(tug_bin!(), &data, &argv);
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
