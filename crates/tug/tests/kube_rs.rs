//! kube-rs (the Rust client) against `tug server`: a reflector stays in sync across a server
//! restart.

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Config};
use tug_testkit::server::{TugServer, free_port};
use tug_testkit::tug_bin;

async fn client(server: &TugServer) -> Client {
    let kc = Kubeconfig::read_from(&server.kubeconfig).expect("read kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kube config");
    Client::try_from(config).expect("kube client")
}

fn cm(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Waits until the reflector's store satisfies `pred`.
async fn until(store: &reflector::Store<ConfigMap>, what: &str, pred: impl Fn(&[String]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut names: Vec<String> = store
            .state()
            .iter()
            .filter_map(|c| c.metadata.name.clone())
            // The controller-published cluster CA is in every namespace.
            .filter(|n| n != "kube-root-ca.crt")
            .collect();
        names.sort();
        if pred(&names) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "reflector never reached {what}: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reflector_stays_in_sync_across_a_server_restart() {
    let bin = tug_bin!();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut server = TugServer::start_with(bin, &data, &["--listen", &listen]);
    let c = client(&server).await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    api.create(&PostParams::default(), &cm("before"))
        .await
        .expect("create");

    let (store, writer) = reflector::store();
    let stream = reflector(
        writer,
        watcher(api.clone(), watcher::Config::default()).default_backoff(),
    )
    .applied_objects();
    let task = tokio::spawn(stream.for_each(|_| async {}));
    until(&store, "the first object", |n| n == ["before"]).await;

    // Restart the server on the same port and data dir while the watch is open.
    server.kill();
    let _server = TugServer::start_with(bin, &data, &["--listen", &listen]);
    let api: Api<ConfigMap> = Api::namespaced(client(&_server).await, "default");
    api.create(&PostParams::default(), &cm("after"))
        .await
        .expect("create after restart");
    api.delete("before", &DeleteParams::default())
        .await
        .expect("delete");
    until(&store, "the changes made after the restart", |n| {
        n == ["after"]
    })
    .await;
    task.abort();
}
