//! The admission webhook benchmark (not a timed test: it asserts only that what it wrote was
//! taken and that the webhook saw it, and is ignored unless asked for):
//!
//! ```text
//! cargo test --release -p tug --test bench_admission -- --ignored --nocapture
//! ```
//!
//! Pod creates per second from 32 clients with one validating webhook for pods, and with one
//! ValidatingAdmissionPolicy of 3 CEL validations, against the same run with neither,
//! alternating, on one server. The webhook (the test kit's HTTPS server,
//! answering in well under a millisecond) runs in this process and is reached as a webhook
//! on the cluster network is: through a Service whose EndpointSlice holds its address,
//! verified against its caBundle.

use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use tug_testkit::server::TugServer;
use tug_testkit::tug_bin;
use tug_testkit::webhook::{Reply, Server, review_response};

const CLIENTS: usize = 32;
const WRITES: usize = 2_000;

async fn create_pods(api: &Api<Pod>, prefix: &str) -> f64 {
    let started = Instant::now();
    futures::stream::iter(0..WRITES)
        .map(|i| {
            let api = api.clone();
            let name = format!("{prefix}-{i}");
            async move {
                let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name},
                    "spec": {"nodeName": "nowhere", "containers": [{"name": "c", "image": "registry.example/app:1"}]}}))
                .expect("pod");
                api.create(&PostParams::default(), &pod).await.expect("create");
            }
        })
        .buffer_unordered(CLIENTS)
        .collect::<Vec<()>>()
        .await;
    WRITES as f64 / started.elapsed().as_secs_f64()
}

async fn create(client: &kube::Client, obj: serde_json::Value) {
    let (group, version) = match obj["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .split_once('/')
    {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (
            String::new(),
            obj["apiVersion"].as_str().unwrap_or_default().to_string(),
        ),
    };
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    let plural = match kind.as_str() {
        "EndpointSlice" => "endpointslices".to_string(),
        "ValidatingAdmissionPolicy" => "validatingadmissionpolicies".to_string(),
        k => format!("{}s", k.to_lowercase()),
    };
    let ar = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk(&group, &version, &kind),
        &plural,
    );
    let api: Api<DynamicObject> = match obj["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    let o: DynamicObject = serde_json::from_value(obj).expect("object");
    api.create(&PostParams::default(), &o)
        .await
        .expect("create");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with --ignored --nocapture"]
async fn pod_creates_with_a_validating_webhook_against_none() {
    let s = TugServer::start(tug_bin!());
    let kc = Kubeconfig::read_from(&s.kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    let client = kube::Client::try_from(config).expect("client");
    let hook = Server::start("127.0.0.1", &["bench.default.svc"], |r| {
        Reply::Json(review_response(&r.json(), true, json!({})))
    });
    create(&client, json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bench", "namespace": "default"},
        "spec": {"ports": [{"port": 443, "targetPort": hook.port}]}})).await;
    create(&client, json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "bench-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "bench"}},
        "addressType": "IPv4", "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
        "ports": [{"port": hook.port, "protocol": "TCP"}]})).await;
    let configuration = json!({"apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "bench"},
        "webhooks": [{"name": "bench.default.example.com",
            "clientConfig": {"service": {"namespace": "default", "name": "bench"}, "caBundle": hook.ca_bundle()},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "sideEffects": "None", "admissionReviewVersions": ["v1"]}]});
    let configs: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk(
                "admissionregistration.k8s.io",
                "v1",
                "ValidatingWebhookConfiguration",
            ),
            "validatingwebhookconfigurations",
        ),
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // Warm up both paths.
    create_pods(&pods, "warm").await;
    let mut without = Vec::new();
    let mut with = Vec::new();
    for round in 0..3 {
        without.push(create_pods(&pods, &format!("plain-{round}")).await);
        create(&client, configuration.clone()).await;
        // In force once a create reaches the webhook.
        let seen = hook.requests().len();
        let mut probe = 0;
        while hook.requests().len() == seen {
            probe += 1;
            let pod: Pod = serde_json::from_value(
                json!({"metadata": {"name": format!("probe-{round}-{probe}")},
                "spec": {"nodeName": "nowhere", "containers": [{"name": "c", "image": "x"}]}}),
            )
            .expect("pod");
            pods.create(&PostParams::default(), &pod)
                .await
                .expect("probe");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let before = hook.requests().len();
        with.push(create_pods(&pods, &format!("hooked-{round}")).await);
        assert!(
            hook.requests().len() >= before + WRITES,
            "the webhook saw every create"
        );
        configs
            .delete("bench", &Default::default())
            .await
            .expect("delete configuration");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    // The policy: three validations every bench pod passes, bound with Deny.
    let policy = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "bench"},
        "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
            "operations": ["CREATE"], "resources": ["pods"]}]},
            "validations": [
                {"expression": "!object.metadata.name.startsWith('forbidden-')"},
                {"expression": "object.spec.containers.size() > 0 && object.spec.containers.size() <= 10"},
                {"expression": "object.spec.containers.all(c, c.image != '' && !c.image.endsWith(':latest'))"}]}});
    let binding = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "bench"}, "spec": {"policyName": "bench", "validationActions": ["Deny"]}});
    create(&client, policy).await;
    let bindings: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk(
                "admissionregistration.k8s.io",
                "v1",
                "ValidatingAdmissionPolicyBinding",
            ),
            "validatingadmissionpolicybindings",
        ),
    );
    let mut plain = Vec::new();
    let mut with_policy = Vec::new();
    for round in 0..3 {
        plain.push(create_pods(&pods, &format!("unbound-{round}")).await);
        create(&client, binding.clone()).await;
        // In force once a forbidden name is refused.
        let mut probe = 0;
        loop {
            probe += 1;
            let pod: Pod = serde_json::from_value(
                json!({"metadata": {"name": format!("forbidden-{round}-{probe}")},
                "spec": {"nodeName": "nowhere", "containers": [{"name": "c", "image": "x"}]}}),
            )
            .expect("pod");
            if pods.create(&PostParams::default(), &pod).await.is_err() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        with_policy.push(create_pods(&pods, &format!("policed-{round}")).await);
        bindings
            .delete("bench", &Default::default())
            .await
            .expect("delete binding");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let rounded = |v: &[f64]| v.iter().map(|r| r.round()).collect::<Vec<_>>();
    println!(
        "pod creates/s from {CLIENTS} clients, {WRITES} per round: without webhook {:?} (mean {:.0}), with one validating webhook {:?} (mean {:.0}), ratio {:.1}%",
        rounded(&without),
        mean(&without),
        rounded(&with),
        mean(&with),
        100.0 * mean(&with) / mean(&without)
    );
    println!(
        "pod creates/s: without policy {:?} (mean {:.0}), with a 3-validation ValidatingAdmissionPolicy {:?} (mean {:.0}), cost {:.1}%",
        rounded(&plain),
        mean(&plain),
        rounded(&with_policy),
        mean(&with_policy),
        100.0 * (1.0 - mean(&with_policy) / mean(&plain))
    );
}
