//! The cluster network's benchmarks (not timed tests: they assert only that the work was
//! done, and are ignored unless asked for):
//!
//! ```text
//! sudo cargo test --release -p tug --test bench_network -- --ignored --nocapture
//! ```
//!
//! - Service rule programming: with 1,000 Services of 10 endpoints each on a node, one
//!   EndpointSlice changes; the latency runs from the API call to the node's new rule, as
//!   `nft monitor` inside the node's namespace reports it.
//! - Requests through a ClusterIP against the same pod by its own address, in one run.
//! - Cluster DNS queries per second.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use tug_testkit::kubectl::eventually_within as wait_until;
use tug_testkit::tug_bin;
use tug_testkit::up::LocalCluster;

const IMAGE: &str = "docker.io/library/busybox:test";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn client(c: &LocalCluster) -> kube::Client {
    let kc = Kubeconfig::read_from(&c.kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    kube::Client::try_from(config).expect("client")
}

/// Runs `f` on a thread inside network namespace `netns`.
fn in_netns<T: Send + 'static>(netns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{netns}");
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path).expect("the node's namespace");
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("the namespace thread")
}

fn slice(name: &str, base: u32, version: u32) -> serde_json::Value {
    let endpoints: Vec<serde_json::Value> = (0..10)
        .map(|i| {
            let ip = std::net::Ipv4Addr::from(base + i * 256 + version);
            json!({"addresses": [ip.to_string()], "conditions": {"ready": true}})
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    })
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: run with --ignored --nocapture"]
async fn service_rule_programming_latency() {
    const SERVICES: u32 = 1000;
    let c = LocalCluster::start(tug_bin!(), 1, &[]);
    let client = client(&c).await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    // Endpoints are addresses in the cluster's pod range; nothing is sent to them.
    let pod_base = u32::from(
        c.cluster_cidr
            .split('/')
            .next()
            .and_then(|b| b.parse::<std::net::Ipv4Addr>().ok())
            .expect("pod range"),
    );
    let start = Instant::now();
    for i in 0..SERVICES {
        let name = format!("s{i}");
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}});
        services
            .create(
                &PostParams::default(),
                &serde_json::from_value(svc).unwrap(),
            )
            .await
            .expect("create service");
        slices
            .create(
                &PostParams::default(),
                &serde_json::from_value(slice(&name, pod_base + 2, 0)).unwrap(),
            )
            .await
            .expect("create slice");
    }
    let created = start.elapsed();
    let netns = c.netns(1);
    let table = "tugboat-svc-tug0";
    let count = || {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &netns,
                "nft",
                "list",
                "map",
                "ip",
                table,
                "cluster-ips",
            ])
            .output()
            .expect("nft");
        String::from_utf8_lossy(&out.stdout)
            .matches("goto vip/")
            .count()
    };
    wait_until(
        "1,000 Services in the kernel",
        Duration::from_secs(120),
        || count() >= SERVICES as usize,
    );
    println!(
        "{SERVICES} Services of 10 endpoints: created through the API in {created:?}, all in the kernel {:?} after the first",
        start.elapsed()
    );

    // `nft monitor` reports each rule the moment the kernel commits it.
    let mut monitor = Command::new("ip")
        .args([
            "netns", "exec", &netns, "stdbuf", "-oL", "nft", "monitor", "rules",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("nft monitor");
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    let stdout = monitor.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line)).is_err() {
                return;
            }
        }
    });
    // nft reads the whole ruleset before it reports anything: change one Service until the
    // monitor shows it.
    let pp = PatchParams::apply("bench").force();
    let warm = Instant::now();
    'warm: for v in 1000u32.. {
        slices
            .patch("s0", &pp, &Patch::Apply(slice("s0", pod_base, v)))
            .await
            .expect("patch slice");
        while let Ok((_, line)) = rx.recv_timeout(Duration::from_secs(2)) {
            if line.contains("svc/default/s0/") {
                break 'warm;
            }
        }
        assert!(
            warm.elapsed() < Duration::from_secs(180),
            "nft monitor reports nothing"
        );
    }
    while rx.recv_timeout(Duration::from_millis(500)).is_ok() {}
    let mut latencies = Vec::new();
    for round in 1..=200u32 {
        let i = (round * 37) % SERVICES;
        let name = format!("s{i}");
        let version = 2 + round;
        let want = std::net::Ipv4Addr::from(pod_base + version).to_string();
        let sent = Instant::now();
        slices
            .patch(&name, &pp, &Patch::Apply(slice(&name, pod_base, version)))
            .await
            .expect("patch slice");
        let mut other = Vec::new();
        let seen = loop {
            let Ok((at, line)) = rx.recv_timeout(Duration::from_secs(10)) else {
                panic!("no rule for {name} with {want}; the monitor said {other:?}");
            };
            if line.contains(&format!("svc/default/{name}/")) && line.contains(&want) {
                break at;
            }
            if other.len() < 5 {
                other.push(line);
            }
        };
        latencies.push(seen.saturating_duration_since(sent));
    }
    let _ = monitor.kill();
    let _ = monitor.wait();
    latencies.sort();
    println!(
        "endpoint change to rule in the kernel, {} changes: p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );
}

/// `n` HTTP/1.0 GETs of `/` to `addr` from `threads` threads in the node's namespace; returns
/// requests per second and the sorted latencies.
fn http_load(netns: &str, addr: SocketAddr, threads: usize, n: usize) -> (f64, Vec<Duration>) {
    let netns = netns.to_string();
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let netns = netns.clone();
            std::thread::spawn(move || {
                in_netns(&netns, move || {
                    let mut lat = Vec::with_capacity(n / threads);
                    let mut buf = Vec::new();
                    for _ in 0..n / threads {
                        let t = Instant::now();
                        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                            .expect("connect");
                        s.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("send");
                        buf.clear();
                        s.read_to_end(&mut buf).expect("read");
                        assert!(
                            buf.starts_with(b"HTTP/1.") && buf.get(8..12) == Some(b" 200"),
                            "{}",
                            String::from_utf8_lossy(&buf)
                        );
                        lat.push(t.elapsed());
                    }
                    lat
                })
            })
        })
        .collect();
    let mut all: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("load"))
        .collect();
    let rate = all.len() as f64 / start.elapsed().as_secs_f64();
    all.sort();
    (rate, all)
}

/// One DNS query for `name` (type A), by hand: a header and one question.
fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

#[test]
#[ignore = "a benchmark: run with --ignored --nocapture"]
fn clusterip_against_pod_ip_and_dns_queries() {
    let tmp = tempfile::tempdir().expect("tmp");
    let archive = tug_testkit::image::busybox_archive(tmp.path(), IMAGE);
    let c = LocalCluster::start(tug_bin!(), 2, &[archive]);
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: web, labels: {{app: web}}}}
spec:
  nodeName: node-2
  containers:
  - name: httpd
    image: {IMAGE}
    command: [sh, -c, "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 8080 -h /www"]
    readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
"#
    ));
    let get = |what: &[&str], path: &str| {
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        let p = format!("jsonpath={path}");
        args.extend(["-o", &p]);
        String::from_utf8_lossy(&c.kubectl(&args, None).stdout)
            .trim()
            .to_string()
    };
    wait_until("the endpoint", Duration::from_secs(60), || {
        !get(
            &["endpointslices", "-l", "kubernetes.io/service-name=web"],
            "{.items[*].endpoints[*].addresses[0]}",
        )
        .is_empty()
    });
    let pod_ip: std::net::Ipv4Addr = get(&["pod", "web"], "{.status.podIP}")
        .parse()
        .expect("pod IP");
    let vip: std::net::Ipv4Addr = get(&["svc", "web"], "{.spec.clusterIP}")
        .parse()
        .expect("ClusterIP");
    let netns = c.netns(1);
    // The node's rules for the Service may trail the endpoint by a moment.
    let target = SocketAddr::from((vip, 80));
    let ready = in_netns(&netns, move || {
        (0..100).any(|_| {
            let ok = TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok();
            if !ok {
                std::thread::sleep(Duration::from_millis(100));
            }
            ok
        })
    });
    assert!(
        ready,
        "the ClusterIP does not answer from node-1\n{}",
        c.logs()
    );
    // Warm up both paths, then alternate rounds so that both see the same machine.
    http_load(&netns, SocketAddr::from((vip, 80)), 2, 200);
    http_load(&netns, SocketAddr::from((pod_ip, 8080)), 2, 200);
    let mut rounds: VecDeque<(&str, SocketAddr)> = VecDeque::new();
    for _ in 0..3 {
        rounds.push_back(("pod IP", SocketAddr::from((pod_ip, 8080))));
        rounds.push_back(("ClusterIP", SocketAddr::from((vip, 80))));
    }
    let mut results: Vec<(&str, f64, Duration, Duration)> = Vec::new();
    for (what, addr) in rounds {
        let (rate, lat) = http_load(&netns, addr, 4, 2000);
        println!(
            "{what:9}: {rate:.0} requests/s, p50 {:?}, p99 {:?}",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );
        results.push((what, rate, percentile(&lat, 0.5), percentile(&lat, 0.99)));
    }
    let mean = |w: &str| {
        let v: Vec<f64> = results.iter().filter(|r| r.0 == w).map(|r| r.1).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    println!(
        "ClusterIP / pod IP throughput: {:.2}",
        mean("ClusterIP") / mean("pod IP")
    );

    // DNS: queries for the Service's name to the cluster DNS address, from the node.
    let dns = SocketAddr::from(([10, 96, 0, 10], 53));
    for threads in [1usize, 4] {
        let per = 5000;
        let start = Instant::now();
        let answered: usize = (0..threads)
            .map(|t| {
                let netns = netns.clone();
                std::thread::spawn(move || {
                    in_netns(&netns, move || {
                        let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
                        sock.set_read_timeout(Some(Duration::from_secs(2)))
                            .expect("timeout");
                        let mut buf = [0u8; 512];
                        let mut ok = 0;
                        for i in 0..per {
                            let id = (t * per + i) as u16;
                            sock.send_to(&dns_query(id, "web.default.svc.cluster.local"), dns)
                                .expect("send");
                            if let Ok((n, _)) = sock.recv_from(&mut buf)
                                && n > 12
                                && buf[..2] == id.to_be_bytes()
                                && buf[7] == 1
                            {
                                ok += 1;
                            }
                        }
                        ok
                    })
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().expect("dns"))
            .sum();
        let elapsed = start.elapsed();
        assert!(answered > threads * per * 9 / 10, "only {answered} answers");
        println!(
            "DNS, {threads} client(s): {:.0} queries/s ({answered} of {} answered with one record)",
            answered as f64 / elapsed.as_secs_f64(),
            threads * per
        );
    }
}
