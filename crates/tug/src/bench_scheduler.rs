//! `tug bench scheduler`: the scheduler and controllers at scale, in one process wired as
//! `tug server --simulated-nodes N` is (embedded store, API server, hollow nodes, scheduler,
//! controllers, all talking through the in-process API client):
//!
//! 1. scheduling throughput for pods created beforehand, with no constraints;
//! 2. the same with a zone topology spread and a required hostname anti-affinity per pod;
//! 3. the time for a large Deployment to be fully Running (controllers, scheduler and hollow
//!    kubelets all at work);
//! 4. the process's RSS once it holds the nodes and the total number of pods asked for.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tug_store::{LocalOptions, LocalStore, Store};

/// Options of the scheduler benchmark.
pub struct SchedulerBench {
    pub nodes: usize,
    pub pods: usize,
    pub deployment: usize,
    pub total_pods: usize,
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn create_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(())
}

/// Creates `count` pods from `make(i)`, 64 at a time.
async fn create_pods(
    client: &kube::Client,
    ns: &str,
    count: usize,
    make: impl Fn(usize) -> serde_json::Value,
) -> anyhow::Result<Duration> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let started = Instant::now();
    let pods: Vec<Pod> = (0..count)
        .map(|i| serde_json::from_value(make(i)))
        .collect::<Result<_, _>>()?;
    let pp = PostParams::default();
    let results: Vec<_> = futures::stream::iter(pods.iter())
        .map(|p| api.create(&pp, p))
        .buffer_unordered(64)
        .collect()
        .await;
    for r in results {
        r.context("creating a pod")?;
    }
    Ok(started.elapsed())
}

async fn wait_for(
    what: &str,
    limit: Duration,
    mut done: impl AsyncFnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut last_report = Instant::now();
    while !done().await? {
        if started.elapsed() > limit {
            anyhow::bail!("{what}: not done after {limit:?}");
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("  … still waiting for {what} ({:.0?})", started.elapsed());
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(started.elapsed())
}

/// Schedules the pods already in `ns` with a fresh scheduler; returns pods per second, from
/// the scheduler's start (its initial lists included) to its last successful binding.
async fn schedule_all(client: &kube::Client, ns: &str, pods: usize) -> anyhow::Result<f64> {
    let before = tug_scheduler::bound_total() as usize;
    let scheduler = tokio::spawn(tug_scheduler::run(client.clone()));
    let took = wait_for(
        &format!("{pods} pods in {ns} to be bound"),
        Duration::from_secs(600),
        async || Ok(tug_scheduler::bound_total() as usize - before >= pods),
    )
    .await;
    scheduler.abort();
    let took = took?;
    Ok(pods as f64 / took.as_secs_f64())
}

async fn deployment_ready(api: &Api<Deployment>, want: usize) -> anyhow::Result<bool> {
    let status = api.get("web").await?.status.unwrap_or_default();
    Ok(status.ready_replicas.unwrap_or(0) as usize >= want
        && status.updated_replicas.unwrap_or(0) as usize >= want)
}

/// Runs the benchmark and prints its figures.
pub async fn run(opts: SchedulerBench) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("tug-bench-scheduler-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let local = LocalStore::open(&dir, LocalOptions::default())?;
    let store: Arc<dyn Store> = Arc::new(local);
    let api = tug_apiserver::ApiServer::new(store, "bench".into());
    api.bootstrap().await?;
    let client = api.in_process_client();

    let t = Instant::now();
    let hollow = tug_kubelet::hollow::HollowConfig {
        count: opts.nodes,
        zones: 10,
        ..Default::default()
    };
    let _nodes = crate::control_plane::ControlPlane::builder(api.clone())
        .hollow_nodes(hollow)
        .start();
    let nodes_api: Api<Node> = Api::all(client.clone());
    let want_nodes = opts.nodes;
    let registered = wait_for(
        &format!("{want_nodes} hollow nodes"),
        Duration::from_secs(300),
        async || {
            let list = nodes_api.list_metadata(&ListParams::default()).await?;
            Ok(list.items.len() >= want_nodes)
        },
    )
    .await?;
    // Registration is two writes per node; let the last status land.
    tokio::time::sleep(Duration::from_secs(1)).await;
    eprintln!(
        "{} hollow nodes registered in {:.1?} (RSS {:.0} MiB)",
        opts.nodes,
        registered.max(t.elapsed()),
        rss_mib()
    );

    // 1. No constraints.
    create_namespace(&client, "plain").await?;
    let created = create_pods(&client, "plain", opts.pods, |i| {
        json!({"metadata": {"name": format!("p-{i}"), "labels": {"app": "plain"}},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}})
    })
    .await?;
    eprintln!(
        "{} pods created in {created:.1?} (RSS {:.0} MiB)",
        opts.pods,
        rss_mib()
    );
    let plain = schedule_all(&client, "plain", opts.pods).await?;
    eprintln!(
        "unconstrained: {plain:.0} pods/s (RSS {:.0} MiB)",
        rss_mib()
    );

    // 2. Zone spread and hostname anti-affinity within groups small enough to fit.
    let group_size = (opts.nodes * 2 / 5).max(1);
    create_namespace(&client, "constrained").await?;
    let created = create_pods(&client, "constrained", opts.pods, |i| {
        let group = format!("g{}", i / group_size);
        json!({"metadata": {"name": format!("c-{i}"), "labels": {"group": group}},
            "spec": {
                "containers": [{"name": "c", "image": "busybox",
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}],
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"group": group}}}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"group": group}}}]}}}})
    })
    .await?;
    eprintln!("{} constrained pods created in {created:.1?}", opts.pods);
    let constrained = schedule_all(&client, "constrained", opts.pods).await?;
    eprintln!(
        "spread + anti-affinity: {constrained:.0} pods/s (RSS {:.0} MiB)",
        rss_mib()
    );

    // 3. A Deployment, with the controllers and a scheduler running.
    let controllers = crate::control_plane::ControlPlane::builder(api.clone())
        .controllers(tug_controllers::Settings {
            // Room for 32,768 nodes' /24 blocks.
            pod_network: tug_controllers::PodNetwork::parse("10.128.0.0/9", 24)
                .map_err(anyhow::Error::msg)?,
            ..Default::default()
        })
        .scheduler()
        .start();
    create_namespace(&client, "deploy").await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "deploy");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": opts.deployment, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}))?;
    deployments.create(&PostParams::default(), &d).await?;
    let rollout = wait_for(
        &format!("a {}-replica Deployment to be Running", opts.deployment),
        Duration::from_secs(900),
        async || deployment_ready(&deployments, opts.deployment).await,
    )
    .await?;
    eprintln!(
        "Deployment of {} replicas fully Running in {rollout:.1?}",
        opts.deployment
    );

    // 4. RSS holding the nodes and the total number of pods.
    let rest = opts
        .total_pods
        .saturating_sub(2 * opts.pods)
        .max(opts.deployment);
    if rest > opts.deployment {
        let scale = json!({"spec": {"replicas": rest}});
        deployments
            .patch_scale("web", &PatchParams::default(), &Patch::Merge(&scale))
            .await?;
        wait_for(
            &format!("the Deployment to reach {rest} ready replicas"),
            Duration::from_secs(1800),
            async || deployment_ready(&deployments, rest).await,
        )
        .await?;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss = rss_mib();
    drop(controllers);
    println!("| Measure | Result |");
    println!("|---|---|");
    println!(
        "| Scheduling, {} pods on {} nodes, no constraints | {plain:.0} pods/s |",
        opts.pods, opts.nodes
    );
    println!(
        "| Scheduling, {} pods, zone spread + hostname anti-affinity | {constrained:.0} pods/s |",
        opts.pods
    );
    println!(
        "| {}-replica Deployment created to fully Running | {:.1} s |",
        opts.deployment,
        rollout.as_secs_f64()
    );
    println!(
        "| RSS with {} nodes and {} pods (one process: store, API, scheduler, controllers, hollow nodes) | {rss:.0} MiB |",
        opts.nodes,
        2 * opts.pods + rest
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
