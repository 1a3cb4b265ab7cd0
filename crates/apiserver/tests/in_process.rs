//! The in-process kube-rs client: the whole API, with no TCP and no TLS.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use tug_apiserver::ApiServer;
use tug_store::LocalStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_client_creates_lists_and_watches() {
    let store = Arc::new(LocalStore::memory().expect("store"));
    let api = ApiServer::new(store, String::new());
    api.bootstrap().await.expect("bootstrap");
    let client = api.in_process_client();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let rv = cms
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    let mut watch = cms
        .watch(&WatchParams::default(), &rv)
        .await
        .expect("watch")
        .boxed();
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "local"}, "data": {"a": "b"}
    }))
    .expect("configmap");
    let created = cms
        .create(&PostParams::default(), &cm)
        .await
        .expect("create");
    assert!(
        created.metadata.uid.is_some(),
        "the registry filled in the uid"
    );
    match tokio::time::timeout(std::time::Duration::from_secs(10), watch.next()).await {
        Ok(Some(Ok(WatchEvent::Added(got)))) => {
            assert_eq!(got.metadata.name.as_deref(), Some("local"))
        }
        other => panic!("expected an ADDED event, got {other:?}"),
    }
    // Errors arrive as Kubernetes errors.
    match cms.create(&PostParams::default(), &cm).await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 409),
        other => panic!("expected 409, got {other:?}"),
    }
    let namespaces = Api::<k8s_openapi::api::core::v1::Namespace>::all(client)
        .list(&ListParams::default())
        .await
        .expect("namespaces");
    assert_eq!(namespaces.items.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_assigns_a_pod_to_a_node_once() {
    use k8s_openapi::api::core::v1::Pod;
    let store = Arc::new(LocalStore::memory().expect("store"));
    let api = ApiServer::new(store, String::new());
    api.bootstrap().await.expect("bootstrap");
    let pods: Api<Pod> = Api::namespaced(api.in_process_client(), "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create");
    let binding = serde_json::json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": "p"}, "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}
    });
    pods.create_subresource::<serde_json::Value, serde_json::Value>(
        "binding",
        "p",
        &PostParams::default(),
        &binding,
    )
    .await
    .expect("bind");
    let bound = pods.get("p").await.expect("get");
    assert_eq!(
        bound.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some("node-1")
    );
    let scheduled = bound
        .status
        .and_then(|s| s.conditions)
        .and_then(|c| c.into_iter().find(|c| c.type_ == "PodScheduled"))
        .expect("PodScheduled condition");
    assert_eq!(scheduled.status, "True");
    match pods
        .create_subresource::<serde_json::Value, serde_json::Value>(
            "binding",
            "p",
            &PostParams::default(),
            &binding,
        )
        .await
    {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 409),
        other => panic!("a second binding must conflict, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patches_without_a_resource_version_never_conflict_and_with_one_they_do() {
    use kube::api::{Patch, PatchParams};
    let store = Arc::new(LocalStore::memory().expect("store"));
    let api = ApiServer::new(store, String::new());
    api.bootstrap().await.expect("bootstrap");
    let cms: Api<ConfigMap> = Api::namespaced(api.in_process_client(), "default");
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({"metadata": {"name": "shared"}}))
        .expect("configmap");
    let created = cms
        .create(&PostParams::default(), &cm)
        .await
        .expect("create");
    // Many writers patch the same object at once; each patch applies to whatever is current.
    let writers = (0..24).map(|i| {
        let cms = cms.clone();
        tokio::spawn(async move {
            let body = serde_json::json!({"data": {format!("k{i}"): "v"}});
            cms.patch("shared", &PatchParams::default(), &Patch::Merge(&body))
                .await
        })
    });
    for writer in futures::future::join_all(writers).await {
        writer
            .expect("join")
            .expect("a patch without resourceVersion succeeds");
    }
    let data = cms
        .get("shared")
        .await
        .expect("get")
        .data
        .unwrap_or_default();
    assert_eq!(data.len(), 24, "every patch landed: {data:?}");
    // A patch naming an old version is conditional and conflicts.
    let stale = serde_json::json!({
        "metadata": {"resourceVersion": created.metadata.resource_version},
        "data": {"late": "v"}
    });
    match cms
        .patch("shared", &PatchParams::default(), &Patch::Merge(&stale))
        .await
    {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 409),
        other => panic!("expected 409, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_patches_race_other_writers_without_conflicts() {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Patch, PatchParams};
    let store = Arc::new(LocalStore::memory().expect("store"));
    let api = ApiServer::new(store, String::new());
    api.bootstrap().await.expect("bootstrap");
    let deploys: Api<Deployment> = Api::namespaced(api.in_process_client(), "default");
    let deploy: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}
            }
        }
    }))
    .expect("deployment");
    deploys
        .create(&PostParams::default(), &deploy)
        .await
        .expect("create");
    let writers = (0..16).map(|i| {
        let deploys = deploys.clone();
        tokio::spawn(async move {
            if i % 2 == 0 {
                let body = serde_json::json!({"spec": {"replicas": i}});
                deploys
                    .patch_scale("web", &PatchParams::default(), &Patch::Merge(&body))
                    .await
                    .map(|_| ())
            } else {
                let body = serde_json::json!({"metadata": {"labels": {format!("l{i}"): "x"}}});
                deploys
                    .patch("web", &PatchParams::default(), &Patch::Merge(&body))
                    .await
                    .map(|_| ())
            }
        })
    });
    for writer in futures::future::join_all(writers).await {
        writer
            .expect("join")
            .expect("an unconditional write succeeds");
    }
    let web = deploys.get("web").await.expect("get");
    assert_eq!(web.metadata.labels.unwrap_or_default().len(), 8);
    assert!(web.spec.replicas.is_some_and(|r| r % 2 == 0));
}
