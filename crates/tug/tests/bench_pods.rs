//! The node agent's benchmark (not a timed test: it asserts only that the pods ran, and is
//! ignored unless asked for):
//!
//! ```text
//! cargo test --release -p tug --test bench_pods -- --ignored --nocapture
//! ```
//!
//! Pod startup latency (created until Running and Ready, as a watch sees it) over 100 pods on
//! one node with the image present, pods started per second, and the agent's idle memory.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use tug_testkit::server::{TugServer, rss_kib};
use tug_testkit::tug_bin;

const PODS: usize = 100;

fn start(dir: &Path, agent: bool, n: u32) -> TugServer {
    let data = dir.join(format!("data{n}"));
    if agent {
        let archive = tug_testkit::image::busybox_archive(dir, "docker.io/library/busybox:bench");
        let out = Command::new(tug_bin!())
            .args(["image", "import"])
            .arg(&archive)
            .arg("--data-dir")
            .arg(data.join("agent"))
            .output()
            .expect("import");
        assert!(out.status.success());
    }
    let bridge = format!("tugb{}x{n}", std::process::id() % 10_000);
    let cidr = format!("10.{}.0.0/16", 150 + n);
    let mut args = vec!["--pod-bridge", &bridge, "--cluster-cidr", &cidr];
    if agent {
        args.extend_from_slice(&["--kubelet-port", "0", "--node-name", "bench"]);
    }
    TugServer::start_with(tug_bin!(), &data, &args)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with --ignored --nocapture"]
async fn pod_startup_latency_and_agent_memory() {
    let dir = tempfile::tempdir().expect("tmp");
    // Idle memory: the server with its agent and no pods, against the server alone.
    let plain = start(dir.path(), false, 0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let plain_rss = rss_kib(plain.pid());
    drop(plain);
    let s = start(dir.path(), true, 1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let with_agent_rss = rss_kib(s.pid());

    let kc = Kubeconfig::read_from(&s.kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    let client = kube::Client::try_from(config).expect("client");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    // Wait for the node.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "warmup"},
            "spec": {"containers": [{"name": "c", "image": "busybox:bench", "command": ["sleep", "3600"]}]}
        }))
        .expect("pod");
        if pods.create(&PostParams::default(), &pod).await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the API never took the warm-up pod"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    let mut events = watcher(pods.clone(), watcher::Config::default()).boxed();
    // The warm-up pod first: the node is up and the image is in the page cache.
    loop {
        if let Some(Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p))) =
            events.next().await
            && p.metadata.name.as_deref() == Some("warmup")
            && ready(&p)
        {
            break;
        }
    }
    drop(events);
    // At a steady 20 pods/s (the way Kubernetes' startup SLO is measured), then all at once,
    // each on an empty node.
    let (steady, steady_wall) = batch(&pods, "steady", Some(20.0)).await;
    clear(&pods).await;
    let (burst, burst_wall) = batch(&pods, "burst", None).await;
    let busy_rss = rss_kib(s.pid());
    println!("pods: {PODS} per batch on one node, image present");
    for (what, sorted, wall) in [
        ("all at once", &burst, burst_wall),
        ("20 pods/s", &steady, steady_wall),
    ] {
        println!(
            "{what}: startup latency (created -> Ready, watched) p50 {:?}, p99 {:?}, max {:?}; {:.1} pods/s ({PODS} in {:?})",
            percentile(sorted, 0.5),
            percentile(sorted, 0.99),
            sorted[sorted.len() - 1],
            PODS as f64 / wall.as_secs_f64(),
            wall
        );
    }
    println!(
        "idle RSS: server alone {} KiB, server with agent {} KiB (agent ~{} KiB); with {} pods (and a warm-up pod) {} KiB",
        plain_rss,
        with_agent_rss,
        with_agent_rss.saturating_sub(plain_rss),
        PODS,
        busy_rss
    );
    let _ = pods
        .delete_collection(&DeleteParams::default(), &Default::default())
        .await;
}

/// Deletes every pod and waits until the agent has stopped their containers.
async fn clear(pods: &Api<Pod>) {
    pods.delete_collection(&DeleteParams::default(), &Default::default())
        .await
        .expect("delete");
    // Deletion is graceful: the pods stay until the agent has stopped them (their `sleep`
    // ignores SIGTERM, so that takes the 30 s grace period), then a little more for cleanup.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pods
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the pods were not deleted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
}

/// Creates [`PODS`] pods named `<prefix>-<i>` (all at once, or at `rate` per second) and
/// returns each one's time from its create call to Ready as a watch saw it, sorted, and the
/// time until the last was Ready.
async fn batch(pods: &Api<Pod>, prefix: &str, rate: Option<f64>) -> (Vec<Duration>, Duration) {
    batch_of(pods, prefix, rate, PODS).await
}

/// [`batch`] with `count` pods.
async fn batch_of(
    pods: &Api<Pod>,
    prefix: &str,
    rate: Option<f64>,
    count: usize,
) -> (Vec<Duration>, Duration) {
    let ready = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    let mut events = watcher(pods.clone(), watcher::Config::default()).boxed();
    // The watch is established before the first create.
    while let Some(Ok(ev)) = events.next().await {
        if matches!(ev, watcher::Event::InitDone) {
            break;
        }
    }
    let started = Instant::now();
    let creates = (0..count).map(|i| {
        let pods = pods.clone();
        let name = format!("{prefix}-{i}");
        async move {
            if let Some(r) = rate {
                tokio::time::sleep(Duration::from_secs_f64(i as f64 / r)).await;
            }
            let pod: Pod = serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "spec": {"terminationGracePeriodSeconds": 0,
                         "containers": [{"name": "c", "image": "busybox:bench", "command": ["sleep", "3600"]}]}
            }))
            .expect("pod");
            let at = Instant::now();
            pods.create(&PostParams::default(), &pod).await.expect("create");
            (name, at)
        }
    });
    let creating = tokio::spawn(futures::future::join_all(creates));
    let mut seen_ready: HashMap<String, Instant> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while seen_ready.len() < count && Instant::now() < deadline {
        let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(5), events.next()).await else {
            continue;
        };
        if let Ok(watcher::Event::Apply(p)) = ev
            && let Some(name) = p.metadata.name.clone()
            && name.starts_with(prefix)
            && ready(&p)
        {
            seen_ready.entry(name).or_insert_with(Instant::now);
        }
    }
    let wall = started.elapsed();
    let created: HashMap<String, Instant> = creating.await.expect("creates").into_iter().collect();
    assert_eq!(seen_ready.len(), count, "every pod became Ready");
    let mut sorted: Vec<Duration> = seen_ready
        .iter()
        .map(|(n, at)| at.duration_since(created[n]))
        .collect();
    sorted.sort();
    (sorted, wall)
}

/// `kubectl exec POD -- true`, one after another: the round trip of a whole exec session
/// (kubectl's start, the WebSocket through the API server to the kubelet, the exec helper
/// joining the container, the final Status).
#[test]
#[ignore = "a benchmark: run with --ignored --nocapture"]
fn exec_round_trip_latency() {
    const RUNS: usize = 50;
    let dir = tempfile::tempdir().expect("tmp");
    let s = start(dir.path(), true, 2);
    let kubectl = |args: &[&str]| {
        Command::new(tug_testkit::server::kubectl_path())
            .env("KUBECONFIG", &s.kubeconfig)
            .args(args)
            .output()
            .expect("kubectl")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !kubectl(&[
        "run",
        "target",
        "--image=busybox:bench",
        "--",
        "sleep",
        "3600",
    ])
    .status
    .success()
    {
        assert!(Instant::now() < deadline, "the API never took the pod");
        std::thread::sleep(Duration::from_millis(200));
    }
    while !kubectl(&["exec", "target", "--", "true"]).status.success() {
        assert!(Instant::now() < deadline, "exec never worked");
        std::thread::sleep(Duration::from_millis(200));
    }
    // kubectl's own start, for comparison: a request that needs no exec.
    let mut plain: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            assert!(
                kubectl(&["get", "pod", "target", "-o", "name"])
                    .status
                    .success()
            );
            t.elapsed()
        })
        .collect();
    let mut exec: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            assert!(kubectl(&["exec", "target", "--", "true"]).status.success());
            t.elapsed()
        })
        .collect();
    plain.sort();
    exec.sort();
    println!(
        "kubectl exec POD -- true, {RUNS} in a row: p50 {:?}, p99 {:?}; kubectl get pod for comparison: p50 {:?}, p99 {:?}",
        percentile(&exec, 0.5),
        percentile(&exec, 0.99),
        percentile(&plain, 0.5),
        percentile(&plain, 0.99)
    );
}

/// An HTTP/1.0 GET of `path` from `addr`: the bytes of the whole response.
fn http_get_len(addr: (&str, u16), path: &str) -> usize {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).expect("connect");
    write!(c, "GET {path} HTTP/1.0\r\n\r\n").expect("request");
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        match c.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) => panic!("reading the response: {e}"),
        }
    }
}

/// `kubectl port-forward` throughput against a direct connection to the pod IP, in the same
/// run: an httpd in the pod serves 64 MiB, fetched 5 times each way.
#[test]
#[ignore = "a benchmark: run with --ignored --nocapture"]
fn port_forward_throughput() {
    const MIB: usize = 64;
    let dir = tempfile::tempdir().expect("tmp");
    let s = start(dir.path(), true, 3);
    let kubectl = |args: &[&str]| tug_testkit::kubectl::kubectl(&s, args, None);
    let script = format!(
        "mkdir -p /www && head -c {} /dev/zero > /www/blob && exec httpd -f -p 8080 -h /www",
        MIB << 20
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !kubectl(&[
        "run",
        "web",
        "--image=busybox:bench",
        "--",
        "sh",
        "-c",
        &script,
    ])
    .status
    .success()
    {
        assert!(Instant::now() < deadline, "the API never took the pod");
        std::thread::sleep(Duration::from_millis(200));
    }
    let ip = loop {
        let o = kubectl(&["get", "pod", "web", "-o", "jsonpath={.status.podIP}"]);
        let ip = String::from_utf8_lossy(&o.stdout).into_owned();
        if !ip.is_empty() && std::net::TcpStream::connect((ip.as_str(), 8080)).is_ok() {
            break ip;
        }
        assert!(Instant::now() < deadline, "the httpd never answered");
        std::thread::sleep(Duration::from_millis(200));
    };
    let port = tug_testkit::server::free_port();
    let mut pf = Command::new(tug_testkit::server::kubectl_path())
        .env("KUBECONFIG", &s.kubeconfig)
        .args(["port-forward", "pod/web", &format!("{port}:8080")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kubectl port-forward");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port-forward never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    let rate = |addr: (&str, u16)| {
        let mut rates: Vec<f64> = (0..5)
            .map(|_| {
                let t = Instant::now();
                let n = http_get_len(addr, "/blob");
                assert!(n > MIB << 20, "a short response: {n} bytes");
                n as f64 / (1 << 20) as f64 / t.elapsed().as_secs_f64()
            })
            .collect();
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    let direct = rate((ip.as_str(), 8080));
    let forwarded = rate(("127.0.0.1", port));
    let _ = pf.kill();
    let _ = pf.wait();
    println!(
        "{MIB} MiB over HTTP, median of 5: direct to the pod IP {direct:.0} MiB/s; through kubectl port-forward {forwarded:.0} MiB/s ({:.0}% of direct)",
        forwarded / direct * 100.0
    );
}

/// Pod startup on the native runtime and on containerd + runc (driven over CRI), side by
/// side: the same pods, at 20 pods/s and all at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with --ignored --nocapture"]
async fn native_and_containerd_pod_startup() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut results = Vec::new();
    for runtime in ["native", "containerd"] {
        let mut containerd = None;
        let s = if runtime == "native" {
            start(dir.path(), true, 4)
        } else {
            let n = std::process::id() % 200;
            let c = tug_testkit::containerd::Containerd::start(
                &format!("10.248.{n}.0/24"),
                &format!("tugbc{n}"),
                "tug.test/pause:1",
            );
            let images = dir.path().join("images");
            std::fs::create_dir_all(&images).expect("mkdir");
            c.import(&tug_testkit::image::busybox_archive(
                &images,
                "docker.io/library/busybox:bench",
            ));
            let pause = images.join("pause.tar");
            tug_testkit::image::write_oci_archive(
                &pause,
                "tug.test/pause:1",
                &["sleep", "2147483647"],
            );
            c.import(&pause);
            let bridge = format!("tugb{}x5", std::process::id() % 10_000);
            let endpoint = c.endpoint.clone();
            containerd = Some(c);
            TugServer::start_with(
                tug_bin!(),
                &dir.path().join("data5"),
                &[
                    "--pod-bridge",
                    &bridge,
                    "--cluster-cidr",
                    "10.155.0.0/16",
                    "--kubelet-port",
                    "0",
                    "--node-name",
                    "bench",
                    "--container-runtime-endpoint",
                    &endpoint,
                ],
            )
        };
        let kc = Kubeconfig::read_from(&s.kubeconfig).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .expect("config");
        let pods: Api<Pod> =
            Api::namespaced(kube::Client::try_from(config).expect("client"), "default");
        // The node takes pods once it is registered.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let node: Api<k8s_openapi::api::core::v1::Node> = Api::all(pods.clone().into_client());
            if node.get("bench").await.is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "the node never registered");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Slowly enough that no pod waits for another: each pod's own startup.
        let (slow, _) = batch_of(&pods, "slow", Some(2.0), 20).await;
        clear(&pods).await;
        let (steady, _) = batch(&pods, "steady", Some(20.0)).await;
        clear(&pods).await;
        let (burst, burst_wall) = batch(&pods, "burst", None).await;
        clear(&pods).await;
        results.push((runtime, slow, steady, burst, burst_wall));
        drop(s);
        drop(containerd);
    }
    println!("pods: {PODS} per batch on one node, image present");
    for (runtime, slow, steady, burst, wall) in &results {
        println!(
            "{runtime}: 20 pods at 2 pods/s p50 {:?} p99 {:?}; 20 pods/s p50 {:?} p99 {:?}; all at once p50 {:?} p99 {:?}, {:.1} pods/s",
            percentile(slow, 0.5),
            percentile(slow, 0.99),
            percentile(steady, 0.5),
            percentile(steady, 0.99),
            percentile(burst, 0.5),
            percentile(burst, 0.99),
            PODS as f64 / wall.as_secs_f64()
        );
    }
}
