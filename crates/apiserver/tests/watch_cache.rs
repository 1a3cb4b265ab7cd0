//! The watch cache: many watchers share one store watch; a watcher that falls behind is ended
//! with 410 Gone instead of holding the others up; lists with resourceVersion=0 are served from
//! memory.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ListParams, PostParams, VersionMatch, WatchEvent, WatchParams};
use tug_apiserver::ApiServer;
use tug_store::LocalStore;

fn cm(name: String) -> ConfigMap {
    serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("configmap")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_watcher_gets_410_while_a_fast_one_sees_everything() {
    let store = Arc::new(LocalStore::memory().expect("store"));
    let api = ApiServer::new(store, String::new());
    api.bootstrap().await.expect("bootstrap");
    let cms: Api<ConfigMap> = Api::namespaced(api.in_process_client(), "default");

    let mut fast = cms
        .watch(&WatchParams::default(), "0")
        .await
        .expect("watch")
        .boxed();
    let mut slow = cms
        .watch(&WatchParams::default(), "0")
        .await
        .expect("watch")
        .boxed();
    let total = 6000usize;
    let writer = {
        let cms = cms.clone();
        tokio::spawn(async move {
            for i in 0..total {
                cms.create(&PostParams::default(), &cm(format!("cm-{i:05}")))
                    .await
                    .expect("create");
            }
        })
    };
    let mut seen = 0usize;
    while seen < total {
        match tokio::time::timeout(Duration::from_secs(60), fast.next()).await {
            Ok(Some(Ok(WatchEvent::Added(_)))) => seen += 1,
            Ok(Some(Ok(WatchEvent::Bookmark(_)))) => {}
            other => panic!("fast watcher after {seen} events: {other:?}"),
        }
    }
    writer.await.expect("writer");

    // The slow watcher delivers what it had buffered, then 410.
    let mut delivered = 0usize;
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(30), slow.next()).await {
            Ok(Some(Ok(WatchEvent::Added(_)))) => delivered += 1,
            Ok(Some(Ok(WatchEvent::Bookmark(_)))) => {}
            Ok(Some(Ok(WatchEvent::Error(e)))) => break e.code,
            other => panic!("slow watcher after {delivered} events: {other:?}"),
        }
    };
    assert_eq!(ended, 410);
    assert!(
        delivered < total,
        "the slow watcher was cut off, not waited for"
    );

    // A list at resourceVersion=0 comes from the cache and has everything.
    let lp = ListParams {
        resource_version: Some("0".into()),
        version_match: None,
        ..Default::default()
    };
    assert_eq!(cms.list(&lp).await.expect("list").items.len(), total);
    // An exact list still reads the store.
    let rv = cms
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version;
    let exact = ListParams {
        resource_version: rv,
        version_match: Some(VersionMatch::Exact),
        ..Default::default()
    };
    assert_eq!(cms.list(&exact).await.expect("list").items.len(), total);
}
