//! The resource metrics API on hollow nodes: their usage is simulated from their pods
//! (`tugboat.dev/simulated-cpu` / `-memory`, else the containers' requests), so that
//! `kubectl top` and autoscalers can be tested at scale.

use std::time::Duration;

use tug_testkit::kubectl::{apply, eventually_within, kubectl};
use tug_testkit::server::TugServer;
use tug_testkit::tug_bin;

#[test]
fn hollow_nodes_report_the_usage_their_pods_simulate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        tug_bin!(),
        &dir.path().join("data"),
        &["--simulated-nodes", "1", "--metric-resolution", "1s"],
    );
    apply(
        &s,
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: sim}
spec:
  replicas: 2
  selector: {matchLabels: {app: sim}}
  template:
    metadata:
      labels: {app: sim}
      annotations: {tugboat.dev/simulated-cpu: 250m, tugboat.dev/simulated-memory: 100Mi}
    spec:
      containers: [{name: c, image: busybox}]
"#,
    );
    let mut pods = String::new();
    eventually_within(
        "kubectl top pod to show both pods",
        Duration::from_secs(60),
        || {
            let o = kubectl(&s, &["top", "pod", "-l", "app=sim", "--no-headers"], None);
            pods = String::from_utf8_lossy(&o.stdout).into_owned();
            o.status.success() && pods.lines().count() == 2
        },
    );
    for line in pods.lines() {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells.get(1..3), Some(&["250m", "100Mi"][..]), "{pods}");
    }
    let mut nodes = String::new();
    eventually_within(
        "kubectl top node to show the hollow node with its pods' usage",
        Duration::from_secs(30),
        || {
            let o = kubectl(&s, &["top", "node", "--no-headers"], None);
            nodes = String::from_utf8_lossy(&o.stdout).into_owned();
            // 100m of the node's own and 250m for each of the two pods (at least).
            o.status.success()
                && nodes
                    .split_whitespace()
                    .nth(1)
                    .and_then(|c| c.strip_suffix('m'))
                    .and_then(|m| m.parse::<u32>().ok())
                    .is_some_and(|m| m >= 600)
        },
    );
}
