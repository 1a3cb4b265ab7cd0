//! `tug bench api`: the API server's figures, measured against a `tug server` process started
//! for the run: start-to-ready time, idle RSS, durable create throughput and latency with 32
//! clients, list latency over 10,000 pods, watch delivery latency to many watchers, and RSS
//! holding 10,000 pods.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// Options of the API benchmark.
pub struct ApiBench {
    pub seconds: u64,
    pub pods: usize,
    pub watchers: usize,
    pub changes_per_second: u64,
}

struct Server {
    child: Child,
    dir: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Starts `tug server`; returns it and the time until it reported ready.
fn start_server() -> anyhow::Result<(Server, Duration)> {
    let dir = std::env::temp_dir().join(format!("tug-bench-api-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let exe = std::env::current_exe()?;
    let started = Instant::now();
    let mut child = Command::new(exe)
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("starting tug server")?;
    let stderr = child.stderr.take().context("server stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let ready = loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("API server ready") => break started.elapsed(),
            Some(Ok(_)) => continue,
            _ => bail!("tug server exited before it was ready"),
        }
    };
    // Keep draining the log so the server never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    Ok((Server { child, dir }, ready))
}

async fn client(kubeconfig: &Path) -> anyhow::Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn pod(name: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": "bench", "tier": "web"}},
        "spec": {"containers": [{"name": "web", "image": "registry.local/web:1.0",
                 "ports": [{"containerPort": 8080}],
                 "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}
    }))?)
}

/// Runs the API benchmark and prints its figures as Markdown.
pub async fn run(opts: ApiBench) -> anyhow::Result<()> {
    let (server, ready) = start_server()?;
    let pid = server.child.id();
    let kubeconfig = server.dir.join("admin.kubeconfig");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = rss_mib(pid);
    let c = client(&kubeconfig).await?;

    eprintln!("creates: 32 clients for {} s...", opts.seconds);
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let phase = Duration::from_secs(opts.seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..32 {
        let cms = cms.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = 0u64;
            while start.elapsed() < phase {
                let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("cm-{w}-{n}")}, "data": {"key": "value"}
                }))?;
                let t = Instant::now();
                cms.create(&PostParams::default(), &cm).await?;
                lat.push(t.elapsed());
                n += 1;
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let create_rate = lat.len() as f64 / start.elapsed().as_secs_f64();
    lat.sort();

    // A fresh server for the pods: its memory then holds the pods alone.
    drop(c);
    drop(server);
    let (server, _) = start_server()?;
    let pid = server.child.id();
    let c = client(&server.dir.join("admin.kubeconfig")).await?;
    eprintln!("storing {} pods (fresh server)...", opts.pods);
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let pods = pods.clone();
        let next = next.clone();
        let total = opts.pods;
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                pods.create(&PostParams::default(), &pod(&format!("pod-{i:05}"))?)
                    .await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let rss_stored = rss_mib(pid);
    let mut lists = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let l = pods.list(&ListParams::default()).await?;
        lists.push(t.elapsed());
        anyhow::ensure!(l.items.len() == opts.pods, "listed {} pods", l.items.len());
    }
    lists.sort();
    let rss_pods = rss_mib(pid);

    eprintln!(
        "watch: {} watchers, {} changes/s...",
        opts.watchers, opts.changes_per_second
    );
    let origin = Instant::now();
    let watched: Api<ConfigMap> = Api::namespaced(c.clone(), "kube-public");
    let rv = watched
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let changes = (opts.changes_per_second * 5) as usize;
    let mut watchers = Vec::new();
    for _ in 0..opts.watchers {
        let watched = watched.clone();
        let rv = rv.clone();
        watchers.push(tokio::spawn(async move {
            let mut stream = watched.watch(&WatchParams::default(), &rv).await?.boxed();
            let mut lat = Vec::with_capacity(changes);
            while lat.len() < changes {
                match tokio::time::timeout(Duration::from_secs(60), stream.next()).await {
                    Ok(Some(Ok(WatchEvent::Added(cm) | WatchEvent::Modified(cm)))) => {
                        let now = origin.elapsed();
                        let sent: u64 = cm
                            .data
                            .and_then(|d| d.get("sent").and_then(|s| s.parse().ok()))
                            .unwrap_or(0);
                        lat.push(now.saturating_sub(Duration::from_nanos(sent)));
                    }
                    Ok(Some(Ok(_))) => {}
                    _ => break,
                }
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut tick = tokio::time::interval(Duration::from_nanos(
        1_000_000_000 / opts.changes_per_second.max(1),
    ));
    for i in 0..changes {
        tick.tick().await;
        let sent = origin.elapsed().as_nanos() as u64;
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("w-{i}")}, "data": {"sent": sent.to_string()}
        }))?;
        watched.create(&PostParams::default(), &cm).await?;
    }
    let mut wlat = Vec::new();
    let mut complete = 0;
    for w in watchers {
        let l = w.await??;
        if l.len() == changes {
            complete += 1;
        }
        wlat.extend(l);
    }
    wlat.sort();

    println!("| figure | value |");
    println!("|---|---|");
    println!("| start to ready (TLS, fresh data dir) | {} |", ms(ready));
    println!("| idle RSS | {idle_rss:.1} MiB |");
    println!("| durable ConfigMap creates/s, 32 clients | {create_rate:.0} |");
    println!(
        "| create latency p50 / p99 | {} / {} |",
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99))
    );
    println!(
        "| list of {} pods (median of 5) | {} |",
        opts.pods,
        ms(pct(&lists, 0.5))
    );
    println!(
        "| RSS holding {} pods, before / after the lists | {rss_stored:.1} / {rss_pods:.1} MiB |",
        opts.pods
    );
    println!(
        "| watch delivery p50 / p99, {} watchers, {} changes/s ({complete} of them saw all {changes}) | {} / {} |",
        opts.watchers,
        opts.changes_per_second,
        ms(pct(&wlat, 0.5)),
        ms(pct(&wlat, 0.99))
    );
    drop(server);
    Ok(())
}
