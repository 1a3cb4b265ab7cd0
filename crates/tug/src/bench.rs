//! `tug bench store`: durable write throughput and latency, range and watch latency, for the
//! embedded store and (when given) a real etcd, side by side in one run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;
use tug_store::{
    EtcdStore, KeyRange, LocalOptions, LocalStore, PutRequest, RangeOptions, Store, WatchOptions,
    WriterStats,
};

/// Benchmarks.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Benchmark the store backends.
    Store {
        /// Directory for the embedded store (a fresh temporary one by default).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// etcd endpoint to compare against, e.g. http://127.0.0.1:2379.
        #[arg(long)]
        etcd: Option<String>,
        /// Seconds each write phase runs.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Watchers for the watch-latency phase.
        #[arg(long, default_value_t = 100)]
        watchers: usize,
    },
    /// Benchmark the API server (starts its own `tug server`).
    Api {
        /// Seconds the create phase runs.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Pods stored for the list and memory figures.
        #[arg(long, default_value_t = 10_000)]
        pods: usize,
        /// Watchers for the delivery-latency phase.
        #[arg(long, default_value_t = 1000)]
        watchers: usize,
        /// Changes per second during the watch phase (it lasts 5 s).
        #[arg(long, default_value_t = 100)]
        changes_per_second: u64,
    },
    /// Benchmark the scheduler and controllers on hollow nodes (in one process).
    Scheduler(SchedulerArgs),
}

/// Options of `tug bench scheduler`.
#[derive(clap::Args)]
pub struct SchedulerArgs {
    /// Hollow nodes.
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    /// Pods scheduled in each throughput phase.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Replicas of the Deployment timed to fully Running.
    #[arg(long, default_value_t = 10_000)]
    deployment: usize,
    /// Pods held when the RSS is read.
    #[arg(long, default_value_t = 50_000)]
    total_pods: usize,
}

/// Figures of one backend.
#[derive(Default)]
struct Report {
    name: String,
    writes: Vec<(usize, f64, Duration, Duration)>,
    range_10k: Duration,
    watch_p50: Duration,
    watch_p99: Duration,
}

/// Runs a benchmark.
pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    let (data_dir, etcd, seconds, watchers) = match cmd {
        BenchCommand::Store {
            data_dir,
            etcd,
            seconds,
            watchers,
        } => (data_dir, etcd, seconds, watchers),
        BenchCommand::Scheduler(a) => {
            return crate::bench_scheduler::run(crate::bench_scheduler::SchedulerBench {
                nodes: a.nodes,
                pods: a.pods,
                deployment: a.deployment,
                total_pods: a.total_pods,
            })
            .await;
        }
        BenchCommand::Api {
            seconds,
            pods,
            watchers,
            changes_per_second,
        } => {
            return crate::bench_api::run(crate::bench_api::ApiBench {
                seconds,
                pods,
                watchers,
                changes_per_second,
            })
            .await;
        }
    };
    let tmp = tempdir()?;
    let dir = data_dir.unwrap_or_else(|| tmp.clone());
    let phase = Duration::from_secs(seconds);
    let mut reports = Vec::new();
    {
        let opened = Instant::now();
        let local = LocalStore::open(&dir, LocalOptions::default())?;
        eprintln!(
            "embedded store opened in {:?} at {}",
            opened.elapsed(),
            dir.display()
        );
        let store: Arc<dyn Store> = Arc::new(local.clone());
        reports.push(bench_backend("embedded (redb)", store, Some(&local), phase, watchers).await?);
    }
    if let Some(endpoint) = etcd {
        let store: Arc<dyn Store> = Arc::new(
            EtcdStore::connect(std::slice::from_ref(&endpoint))
                .await
                .with_context(|| format!("connecting to etcd at {endpoint}"))?,
        );
        reports.push(bench_backend("etcd 3.4", store, None, phase, watchers).await?);
    }
    eprintln!("embedded (redb): reopen after SIGKILL...");
    let reopen = crash_reopen(&tmp.join("crash"), phase).await?;
    let _ = std::fs::remove_dir_all(&tmp);
    print_reports(&reports, watchers);
    println!();
    println!(
        "embedded reopen after SIGKILL: {} ms with {:.1} MiB of log to replay ({} keys, {:.1} MiB data file); clean reopen {} ms",
        reopen.crash.as_millis(),
        reopen.log_bytes as f64 / (1 << 20) as f64,
        reopen.keys,
        reopen.data_bytes as f64 / (1 << 20) as f64,
        reopen.clean.as_millis(),
    );
    Ok(())
}

/// Open times of the embedded store.
struct Reopen {
    crash: Duration,
    clean: Duration,
    log_bytes: u64,
    data_bytes: u64,
    keys: i64,
}

/// Runs a writer process (this binary's `debug ack-writer`) that never checkpoints, kills it
/// with SIGKILL, and times opening the store (which replays the whole log), then a clean reopen.
async fn crash_reopen(dir: &std::path::Path, phase: Duration) -> anyhow::Result<Reopen> {
    let exe = std::env::current_exe().context("finding the tug binary")?;
    let mut child = tokio::process::Command::new(exe)
        .args([
            "debug",
            "ack-writer",
            "--writers",
            "64",
            "--checkpoint-bytes",
            "1099511627776",
        ])
        .arg("--data-dir")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("starting the writer process")?;
    tokio::time::sleep(phase).await;
    child.start_kill()?;
    child.wait().await?;
    let log_bytes = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("wal-"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    let t = Instant::now();
    let store = LocalStore::open(dir, LocalOptions::default())?;
    let crash = t.elapsed();
    let keys = store
        .range(
            KeyRange::prefix("ack/"),
            RangeOptions {
                count_only: true,
                ..Default::default()
            },
        )
        .await?
        .count;
    drop(store);
    let data_bytes = std::fs::metadata(dir.join(tug_store::DATA_FILE))?.len();
    let t = Instant::now();
    let store = LocalStore::open(dir, LocalOptions::default())?;
    let clean = t.elapsed();
    drop(store);
    Ok(Reopen {
        crash,
        clean,
        log_bytes,
        data_bytes,
        keys,
    })
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("tug-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

async fn bench_backend(
    name: &str,
    store: Arc<dyn Store>,
    local: Option<&LocalStore>,
    phase: Duration,
    watchers: usize,
) -> anyhow::Result<Report> {
    let mut report = Report {
        name: name.to_string(),
        ..Default::default()
    };
    for writers in [1usize, 64] {
        eprintln!("{name}: {writers} writer(s) for {phase:?}...");
        let before = local.map(LocalStore::writer_stats);
        let (rate, p50, p99) = write_phase(&store, writers, phase).await?;
        if let (Some(local), Some(before)) = (local, before) {
            print_writer_stats(&before, &local.writer_stats());
        }
        report.writes.push((writers, rate, p50, p99));
    }
    eprintln!("{name}: range of 10,000 keys...");
    report.range_10k = range_phase(&store).await?;
    eprintln!("{name}: watch latency to {watchers} watchers...");
    let (p50, p99) = watch_phase(&store, watchers).await?;
    report.watch_p50 = p50;
    report.watch_p99 = p99;
    Ok(report)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `writers` tasks put 256-byte values to distinct keys for `phase`.
async fn write_phase(
    store: &Arc<dyn Store>,
    writers: usize,
    phase: Duration,
) -> anyhow::Result<(f64, Duration, Duration)> {
    let value = vec![b'x'; 256];
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = 0u64;
            while start.elapsed() < phase {
                let key = format!("/bench/w{writers}/{w}/{n}");
                let t = Instant::now();
                store.put(PutRequest::new(key, value.clone())).await?;
                lat.push(t.elapsed());
                n += 1;
            }
            Ok::<_, tug_store::Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    Ok((
        all.len() as f64 / elapsed,
        percentile(&all, 0.5),
        percentile(&all, 0.99),
    ))
}

/// Loads 10,000 keys under one prefix, then times a range over all of them (median of 10).
async fn range_phase(store: &Arc<dyn Store>) -> anyhow::Result<Duration> {
    let value = vec![b'r'; 256];
    let mut tasks = Vec::new();
    for w in 0..50 {
        let store = store.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..200 {
                store
                    .put(PutRequest::new(
                        format!("/range/{w:02}/{n:04}"),
                        value.clone(),
                    ))
                    .await?;
            }
            Ok::<_, tug_store::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let mut times = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let resp = store
            .range(KeyRange::prefix("/range/"), RangeOptions::default())
            .await?;
        times.push(t.elapsed());
        anyhow::ensure!(
            resp.kvs.len() == 10_000,
            "range returned {} keys",
            resp.kvs.len()
        );
    }
    times.sort();
    Ok(percentile(&times, 0.5))
}

/// `watchers` watch one prefix; 200 writes at about 100/s each carry their send time; the
/// latency is from just before the put to each watcher's receipt.
async fn watch_phase(
    store: &Arc<dyn Store>,
    watchers: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let origin = Instant::now();
    let writes = 200usize;
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let mut w = store
            .watch(KeyRange::prefix("/watch/"), WatchOptions::default())
            .await?;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(writes);
            while lat.len() < writes {
                let Some(resp) = w.next().await else { break };
                let now = origin.elapsed();
                for e in resp?.events {
                    let sent = std::str::from_utf8(&e.kv.value)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                        .unwrap_or(0);
                    lat.push(now.saturating_sub(Duration::from_nanos(sent)));
                }
            }
            Ok::<_, tug_store::Error>(lat)
        }));
    }
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    for i in 0..writes {
        ticker.tick().await;
        let sent = origin.elapsed().as_nanos() as u64;
        store
            .put(PutRequest::new(
                format!("/watch/{}", i % 10),
                sent.to_string(),
            ))
            .await?;
    }
    let mut all = Vec::new();
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(30), t).await {
            Ok(r) => all.extend(r??),
            Err(_) => anyhow::bail!("a watcher did not receive every event within 30 s"),
        }
    }
    all.sort();
    Ok((percentile(&all, 0.5), percentile(&all, 0.99)))
}

/// How the embedded writer batched a phase: the group-commit figures behind its throughput.
fn print_writer_stats(before: &WriterStats, after: &WriterStats) {
    let commits = (after.commits - before.commits).max(1) as f64;
    let per_commit = |a: Duration, b: Duration| (a - b).as_secs_f64() * 1e6 / commits;
    eprintln!(
        "  writer: {} commits, {:.1} writes per commit, {:.0} us applying and {:.0} us committing per commit",
        after.commits - before.commits,
        (after.requests - before.requests) as f64 / commits,
        per_commit(after.apply, before.apply),
        per_commit(after.commit, before.commit),
    );
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn print_reports(reports: &[Report], watchers: usize) {
    println!("| backend | writers | durable writes/s | p50 | p99 |");
    println!("|---|---|---|---|---|");
    for r in reports {
        for (w, rate, p50, p99) in &r.writes {
            println!(
                "| {} | {w} | {rate:.0} | {} | {} |",
                r.name,
                ms(*p50),
                ms(*p99)
            );
        }
    }
    println!();
    println!(
        "| backend | range 10,000 keys (median) | watch p50 ({watchers} watchers) | watch p99 |"
    );
    println!("|---|---|---|---|");
    for r in reports {
        println!(
            "| {} | {} | {} | {} |",
            r.name,
            ms(r.range_10k),
            ms(r.watch_p50),
            ms(r.watch_p99)
        );
    }
    if let [local, etcd] = reports {
        let ratio =
            local.writes.last().map_or(0.0, |w| w.1) / etcd.writes.last().map_or(1.0, |w| w.1);
        println!();
        println!("embedded / etcd write throughput at 64 writers: {ratio:.1}x");
    }
}
