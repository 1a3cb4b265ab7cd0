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
