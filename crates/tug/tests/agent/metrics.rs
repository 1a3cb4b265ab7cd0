//! The resource metrics API: `kubectl top` against the server's own metrics.k8s.io, fed by
//! scraping the node's kubelet.

use super::*;

/// CPU seconds a process has used, from /proc/PID/stat (utime + stime, in clock ticks).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the burner's stat");
    // Fields after the command (which is in parentheses): state is field 3, utime 14, stime 15.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|f| f.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
}

#[test]
fn kubectl_top_shows_a_cpu_burner_and_the_node() {
    let (s, _dir) = cluster();
    // Without metrics yet, kubectl says so rather than "Metrics API not available".
    let early = kubectl(&s, &["top", "pod", "-A"], None);
    let early_err = String::from_utf8_lossy(&early.stderr);
    assert!(
        !early_err.contains("Metrics API not available"),
        "{early_err}"
    );
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: burner, labels: {app: burn}}
spec:
  containers:
  - name: loop
    image: busybox:test
    command: [sh, -c, "while :; do :; done"]
    resources: {limits: {cpu: 400m}}
"#,
    );
    wait_phase(&s, "burner", "Running", Duration::from_secs(60));
    let running = Instant::now();
    // Shown within 30 s of running (scraped every 15 s; a fresh container after one scrape).
    let mut line = String::new();
    wait_until(
        "kubectl top pod to show the burner",
        Duration::from_secs(30),
        || {
            let o = kubectl(&s, &["top", "pod", "burner", "--no-headers"], None);
            line = String::from_utf8_lossy(&o.stdout).trim().to_string();
            o.status.success() && line.starts_with("burner")
        },
    );
    eprintln!("kubectl top pod after {:?}: {line}", running.elapsed());
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "NAME CPU MEMORY: {line}");
    let top_cores: f64 = fields[1]
        .strip_suffix('m')
        .and_then(|m| m.parse::<f64>().ok())
        .map(|m| m / 1000.0)
        .unwrap_or_else(|| panic!("CPU in millicores: {line}"));
    assert!(fields[2].ends_with("Mi"), "memory in Mi: {line}");

    // What /proc says of the burner's process over a few seconds.
    let id = jsonpath(
        &s,
        &["pod", "burner"],
        "{.status.containerStatuses[0].containerID}",
    );
    let pid_file = s
        .data_dir
        .join("agent/containers")
        .join(id.trim_start_matches("tugboat://"))
        .join("pid");
    let pid = std::fs::read_to_string(&pid_file).expect("the burner's pid");
    let (c0, t0) = (cpu_seconds(pid.trim()), Instant::now());
    std::thread::sleep(Duration::from_secs(5));
    let proc_cores = (cpu_seconds(pid.trim()) - c0) / t0.elapsed().as_secs_f64();
    assert!(
        (top_cores - proc_cores).abs() <= 0.3 * proc_cores,
        "kubectl top says {top_cores:.3} cores, /proc says {proc_cores:.3}"
    );

    // Per container, by label, and the node.
    let containers = ok(
        &s,
        &[
            "top",
            "pod",
            "-l",
            "app=burn",
            "--containers",
            "--no-headers",
        ],
    );
    assert!(
        containers.split_whitespace().take(2).eq(["burner", "loop"]),
        "POD NAME CPU MEMORY: {containers}"
    );
    // A node shows after two scrapes of it (no start time to count from).
    let mut nodes = String::new();
    wait_until(
        "kubectl top node to show the node",
        Duration::from_secs(60),
        || {
            let o = kubectl(&s, &["top", "node", "--no-headers"], None);
            nodes = String::from_utf8_lossy(&o.stdout).into_owned();
            o.status.success()
        },
    );
    let node: Vec<&str> = nodes.split_whitespace().collect();
    assert_eq!(node.first(), Some(&"node-a"), "{nodes}");
    assert!(
        node.get(1).is_some_and(|c| c.ends_with('m'))
            && node.get(3).is_some_and(|m| m.ends_with("Mi")),
        "NAME CPU CPU% MEMORY MEMORY%: {nodes}"
    );
    // The API itself, as metrics-server serves it.
    let raw = ok(
        &s,
        &[
            "get",
            "--raw",
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/burner",
        ],
    );
    let doc: serde_json::Value = serde_json::from_str(&raw).expect("PodMetrics JSON");
    assert_eq!(doc["kind"], "PodMetrics");
    assert_eq!(doc["metadata"]["labels"]["app"], "burn");
    assert_eq!(doc["containers"][0]["name"], "loop");
    assert!(
        doc["window"].as_str().is_some_and(|w| w.ends_with('s')),
        "{raw}"
    );
    let missing = kubectl(
        &s,
        &["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes/nowhere"],
        None,
    );
    assert!(!missing.status.success());
    let missing_pod = kubectl(
        &s,
        &[
            "get",
            "--raw",
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/nowhere",
        ],
        None,
    );
    assert!(
        String::from_utf8_lossy(&missing_pod.stderr).contains("NotFound")
            || String::from_utf8_lossy(&missing_pod.stderr).contains("not found"),
        "{}",
        String::from_utf8_lossy(&missing_pod.stderr)
    );
}
