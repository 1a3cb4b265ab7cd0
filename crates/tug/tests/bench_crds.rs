//! The custom resources benchmark (not a timed test: it asserts only that what it wrote was
//! taken, and is ignored unless asked for):
//!
//! ```text
//! cargo test --release -p tug --test bench_crds -- --ignored --nocapture
//! ```
//!
//! How soon a created CustomResourceDefinition's kind is served (its group-version in
//! discovery), custom resource creates per second with a ~50-field schema and 3 CEL rules
//! from 32 clients against ConfigMap creates of the same size on the same server, and the
//! server's memory holding 10,000 of each (each on a fresh server).

use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};
use tug_testkit::server::{TugServer, rss_kib};
use tug_testkit::tug_bin;

const FIELDS: usize = 50;
const CLIENTS: usize = 32;
const WRITES: usize = 4_000;
const HELD: usize = 10_000;

async fn client(s: &TugServer) -> kube::Client {
    let kc = Kubeconfig::read_from(&s.kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    kube::Client::try_from(config).expect("client")
}

/// A definition of group `group` whose spec has [`FIELDS`] fields and 3 rules.
fn definition(group: &str) -> Value {
    let mut props = serde_json::Map::new();
    for i in 0..FIELDS {
        let schema = if i % 2 == 0 {
            json!({"type": "string", "maxLength": 64})
        } else {
            json!({"type": "integer", "minimum": 0})
        };
        props.insert(format!("f{i}"), schema);
    }
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("things.{group}")},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "things", "kind": "Thing"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"spec": {
                    "type": "object",
                    "properties": props,
                    "x-kubernetes-validations": [
                        {"rule": "self.f1 <= self.f3 + 1000000", "message": "f1 too large"},
                        {"rule": "self.f0.startsWith('v')", "message": "f0 must start with v"},
                        {"rule": "size(self.f2) < 64", "message": "f2 too long"},
                    ],
                }},
            }}}],
        },
    })
}

/// The fields of an object: strings of 16 characters and small integers.
fn fields() -> serde_json::Map<String, Value> {
    (0..FIELDS)
        .map(|i| {
            let v = if i % 2 == 0 {
                json!(format!("value-{i:010}"))
            } else {
                json!(i)
            };
            (format!("f{i}"), v)
        })
        .collect()
}

fn thing(name: &str) -> Value {
    json!({"apiVersion": "bench.example.com/v1", "kind": "Thing",
        "metadata": {"name": name}, "spec": fields()})
}

fn config_map(name: &str) -> Value {
    let data: serde_json::Map<String, Value> = fields()
        .into_iter()
        .map(|(k, v)| (k, json!(v.to_string().trim_matches('"'))))
        .collect();
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

fn things(c: &kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("bench.example.com", "v1", "Thing"),
        "things",
    );
    Api::namespaced_with(c.clone(), "default", &ar)
}

fn config_maps(c: &kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("", "v1", "ConfigMap"),
        "configmaps",
    );
    Api::namespaced_with(c.clone(), "default", &ar)
}

/// Creates `n` objects made by `make` from [`CLIENTS`] concurrent writers; objects per second.
async fn create_all(
    api: &Api<DynamicObject>,
    prefix: &str,
    n: usize,
    make: fn(&str) -> Value,
) -> f64 {
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let obj: DynamicObject =
                    serde_json::from_value(make(&format!("{prefix}-{i}"))).expect("object");
                api.create(&PostParams::default(), &obj)
                    .await
                    .expect("create");
            }
        })
        .buffer_unordered(CLIENTS)
        .collect::<Vec<()>>()
        .await;
    n as f64 / started.elapsed().as_secs_f64()
}

async fn established(c: &kube::Client, group: &str) -> Duration {
    let crds: Api<DynamicObject> = Api::all_with(
        c.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    let crd: DynamicObject = serde_json::from_value(definition(group)).expect("crd");
    let started = Instant::now();
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("create crd");
    loop {
        let req = http::Request::get(format!("/apis/{group}/v1"))
            .body(Vec::new())
            .expect("request");
        if let Ok(text) = c.request_text(req).await
            && text.contains("\"things\"")
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{group} never served"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with --ignored --nocapture"]
async fn custom_resources_served_written_and_held() {
    let s = TugServer::start(tug_bin!());
    let c = client(&s).await;
    // Definition created -> its group-version in discovery.
    let mut latencies = Vec::new();
    for i in 0..50 {
        latencies.push(established(&c, &format!("g{i}.bench.example.com")).await);
    }
    latencies.sort();
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    println!(
        "CRD created -> served in discovery, 50 definitions: p50 {:?}, p99 {:?}, max {:?}",
        at(0.5),
        at(0.99),
        latencies[latencies.len() - 1]
    );
    established(&c, "bench.example.com").await;
    // Creates per second, 32 clients, interleaved runs so that neither gets a warmer server.
    let mut cr_rates = Vec::new();
    let mut cm_rates = Vec::new();
    for round in 0..2 {
        cm_rates.push(
            create_all(
                &config_maps(&c),
                &format!("cm{round}"),
                WRITES / 2,
                config_map,
            )
            .await,
        );
        cr_rates.push(create_all(&things(&c), &format!("cr{round}"), WRITES / 2, thing).await);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (cr, cm) = (mean(&cr_rates), mean(&cm_rates));
    println!(
        "creates/s with {CLIENTS} clients, {FIELDS}-field objects: custom resources (3 CEL rules) {cr:.0}, ConfigMaps {cm:.0}: {:.0}% of the ConfigMap rate (rounds: {cr_rates:.0?} / {cm_rates:.0?})",
        100.0 * cr / cm
    );
    drop(s);

    // Memory: 10,000 of each, each kind on a fresh server.
    let mut held = Vec::new();
    for custom in [false, true] {
        let s = TugServer::start(tug_bin!());
        let c = client(&s).await;
        if custom {
            established(&c, "bench.example.com").await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = rss_kib(s.pid());
        if custom {
            create_all(&things(&c), "held", HELD, thing).await;
        } else {
            create_all(&config_maps(&c), "held", HELD, config_map).await;
        }
        // Lists fill the watch cache as clients would.
        let api = if custom { things(&c) } else { config_maps(&c) };
        let listed = api
            .list(&Default::default())
            .await
            .expect("list")
            .items
            .len();
        assert!(listed >= HELD, "{listed} listed");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = rss_kib(s.pid());
        held.push((custom, before, after));
    }
    for (custom, before, after) in &held {
        println!(
            "{HELD} {}: RSS {before} KiB -> {after} KiB (+{} KiB)",
            if *custom {
                "custom resources"
            } else {
                "ConfigMaps"
            },
            after.saturating_sub(*before)
        );
    }
    let growth = |custom: bool| {
        held.iter()
            .find(|h| h.0 == custom)
            .map(|h| h.2.saturating_sub(h.1))
            .unwrap_or(0) as f64
    };
    println!(
        "custom resources grow the server by {:.0}% of what ConfigMaps of the same size do",
        100.0 * growth(true) / growth(false).max(1.0)
    );
}
