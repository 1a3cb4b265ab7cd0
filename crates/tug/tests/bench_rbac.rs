//! The RBAC benchmark (not a timed test: it asserts only that what it wrote was taken, and is
//! ignored unless asked for):
//!
//! ```text
//! cargo test --release -p tug --test bench_rbac -- --ignored --nocapture
//! ```
//!
//! ConfigMap creates per second from 32 clients as a service account that RBAC authorizes
//! (with 100 other Roles and 100 other RoleBindings in its namespace and 100 ClusterRoles
//! and ClusterRoleBindings besides the defaults), against the same run as the admin
//! (system:masters, which RBAC is not asked about), alternating, on one server.

use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use tug_testkit::server::TugServer;
use tug_testkit::tug_bin;

const CLIENTS: usize = 32;
const WRITES: usize = 4_000;
const NS: &str = "bench";

async fn config(s: &TugServer) -> kube::Config {
    let kc = Kubeconfig::read_from(&s.kubeconfig).expect("kubeconfig");
    kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config")
}

async fn create_all(api: &Api<ConfigMap>, prefix: &str) -> f64 {
    let started = Instant::now();
    futures::stream::iter(0..WRITES)
        .map(|i| {
            let api = api.clone();
            let name = format!("{prefix}-{i}");
            async move {
                let cm: ConfigMap = serde_json::from_value(
                    json!({"metadata": {"name": name}, "data": {"a": "1", "b": "two"}}),
                )
                .expect("configmap");
                api.create(&PostParams::default(), &cm)
                    .await
                    .expect("create");
            }
        })
        .buffer_unordered(CLIENTS)
        .collect::<Vec<()>>()
        .await;
    WRITES as f64 / started.elapsed().as_secs_f64()
}

async fn apply(client: &kube::Client, objects: Vec<serde_json::Value>) {
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    for o in objects {
        let kind = o["kind"].as_str().unwrap_or_default().to_string();
        let plural = format!("{}s", kind.to_lowercase());
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", &kind),
            &plural,
        );
        let api: Api<DynamicObject> = match o["metadata"]["namespace"].as_str() {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        let obj: DynamicObject = serde_json::from_value(o).expect("object");
        api.create(&PostParams::default(), &obj)
            .await
            .expect("create");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with --ignored --nocapture"]
async fn configmap_creates_authorized_by_rbac_against_the_admin() {
    let s = TugServer::start(tug_bin!());
    let admin_config = config(&s).await;
    let admin = kube::Client::try_from(admin_config.clone()).expect("client");
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NS}})).expect("ns");
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    let mut objects = Vec::new();
    for i in 0..100 {
        let rule = json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": [format!("s{i}")]}]);
        objects.push(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": format!("r{i}"), "namespace": NS}, "rules": rule}),
        );
        objects.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": format!("rb{i}"), "namespace": NS},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("r{i}")},
            "subjects": [{"kind": "User", "name": format!("user-{i}")}]}));
        objects.push(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": format!("cr{i}")}, "rules": rule}),
        );
        objects.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": format!("crb{i}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("cr{i}")},
            "subjects": [{"kind": "Group", "name": format!("group-{i}")}]}));
    }
    objects.push(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "writer", "namespace": NS},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}]}),
    );
    objects.push(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "writer", "namespace": NS},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "writer"},
        "subjects": [{"kind": "ServiceAccount", "name": "writer", "namespace": NS}]}),
    );
    apply(&admin, objects).await;
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "writer"}})).expect("sa");
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), NS);
    accounts
        .create(&PostParams::default(), &sa)
        .await
        .expect("sa");
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let token = accounts
        .create_token_request("writer", &PostParams::default(), &request)
        .await
        .expect("token")
        .status
        .expect("status")
        .token
        .expect("a token");
    let mut sa_config = admin_config.clone();
    sa_config.auth_info = kube::config::AuthInfo {
        token: Some(token.into()),
        ..Default::default()
    };
    let writer = kube::Client::try_from(sa_config).expect("client");
    let as_admin: Api<ConfigMap> = Api::namespaced(admin, NS);
    let as_writer: Api<ConfigMap> = Api::namespaced(writer, NS);
    // Warm up both paths (connections, caches), then alternate.
    create_all(&as_admin, "warm-admin").await;
    create_all(&as_writer, "warm-writer").await;
    let (mut admin_rates, mut writer_rates) = (Vec::new(), Vec::new());
    for round in 0..3 {
        admin_rates.push(create_all(&as_admin, &format!("admin-{round}")).await);
        writer_rates.push(create_all(&as_writer, &format!("writer-{round}")).await);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "ConfigMap creates/s, {CLIENTS} clients, {WRITES} per run: admin {:?} (mean {:.0}); RBAC-authorized service account {:?} (mean {:.0}); ratio {:.1}%",
        admin_rates.iter().map(|r| r.round()).collect::<Vec<_>>(),
        mean(&admin_rates),
        writer_rates.iter().map(|r| r.round()).collect::<Vec<_>>(),
        mean(&writer_rates),
        100.0 * mean(&writer_rates) / mean(&admin_rates)
    );
}
