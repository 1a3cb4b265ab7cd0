//! `tug` against a real etcd 3.4 (Debian's etcd-server), started by the test on loopback.

use std::process::Command;

use tug_store::{EtcdStore, KeyRange, PutRequest, RangeOptions, Store};
use tug_testkit::etcd::{EtcdProcess, etcdctl_snapshot_restore};
use tug_testkit::tug_bin;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_save_streams_etcds_own_snapshot() {
    let etcd = EtcdProcess::start();
    let store = EtcdStore::connect(std::slice::from_ref(&etcd.endpoint))
        .await
        .expect("connect");
    for i in 0..25 {
        store
            .put(PutRequest::new(format!("/registry/pods/{i}"), "x"))
            .await
            .expect("put");
    }
    let work = tempfile::tempdir().expect("tempdir");
    let snap = work.path().join("etcd.snap");
    let host_port = etcd.endpoint.trim_start_matches("http://");
    let out = Command::new(tug_bin!())
        .args(["snapshot", "save"])
        .arg(&snap)
        .args(["--datastore", &format!("etcd://{host_port}")])
        .output()
        .expect("run tug");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // It is etcd's format: etcdctl restores it, and an etcd started there has the keys.
    let restored = work.path().join("restored");
    etcdctl_snapshot_restore(&snap, &restored);
    let etcd2 = EtcdProcess::start_in(&restored);
    let store2 = EtcdStore::connect(std::slice::from_ref(&etcd2.endpoint))
        .await
        .expect("connect restored");
    let r = store2
        .range(KeyRange::prefix("/registry/"), RangeOptions::default())
        .await
        .expect("range");
    assert_eq!(r.kvs.len(), 25);

    // Restoring into etcd through tug says how to do it instead.
    let restore = Command::new(tug_bin!())
        .args(["snapshot", "restore"])
        .arg(&snap)
        .args(["--datastore", &format!("etcd://{host_port}")])
        .output()
        .expect("run tug");
    assert!(!restore.status.success());
    assert!(String::from_utf8_lossy(&restore.stderr).contains("etcdctl snapshot restore"));

    // An unreachable etcd is a clear error, not a hang.
    let dead = Command::new(tug_bin!())
        .args(["snapshot", "save"])
        .arg(work.path().join("x.snap"))
        .args(["--datastore", "etcd://127.0.0.1:1"])
        .output()
        .expect("run tug");
    assert!(!dead.status.success());
    assert!(
        String::from_utf8_lossy(&dead.stderr).contains("cannot reach etcd"),
        "{}",
        String::from_utf8_lossy(&dead.stderr)
    );
}

#[test]
fn the_api_server_runs_on_etcd() {
    use std::process::Stdio;
    let etcd = EtcdProcess::start();
    let work = tempfile::tempdir().expect("tempdir");
    let host_port = etcd.endpoint.trim_start_matches("http://").to_string();
    let datastore = format!("etcd://{host_port}");
    let server = tug_testkit::server::TugServer::start_with(
        tug_bin!(),
        &work.path().join("data"),
        &["--datastore", &datastore],
    );
    let kubectl = |args: &[&str], stdin: Option<&str>| {
        let mut child = Command::new(tug_testkit::server::kubectl_path())
            .args(args)
            .env("KUBECONFIG", &server.kubeconfig)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl");
        if let Some(input) = stdin
            && let Some(mut pipe) = child.stdin.take()
        {
            use std::io::Write;
            pipe.write_all(input.as_bytes()).expect("stdin");
        }
        let o = child.wait_with_output().expect("kubectl");
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    kubectl(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: on-etcd\ndata:\n  a: b\n"),
    );
    kubectl(&["create", "deployment", "web", "--image=nginx"], None);
    assert_eq!(
        kubectl(&["get", "cm", "on-etcd", "-o", "jsonpath={.data.a}"], None),
        "b"
    );
    let ns = kubectl(&["get", "ns", "-o", "name"], None);
    assert!(ns.contains("namespace/kube-system"), "{ns}");
    // The objects are in etcd, under Kubernetes' key layout.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let keys = rt.block_on(async {
        let store = EtcdStore::connect(std::slice::from_ref(&etcd.endpoint))
            .await
            .expect("connect");
        store
            .range(
                KeyRange::prefix("/registry/"),
                RangeOptions {
                    keys_only: true,
                    ..Default::default()
                },
            )
            .await
            .expect("range")
            .kvs
            .into_iter()
            .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
            .collect::<Vec<_>>()
    });
    assert!(
        keys.contains(&"/registry/configmaps/default/on-etcd".to_string()),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"/registry/apps/deployments/default/web".to_string()),
        "{keys:?}"
    );
}

/// Two servers on one etcd: one runs the scheduler; killing it hands scheduling to the other.
#[test]
fn killing_the_leader_hands_scheduling_to_the_other_server() {
    use std::time::{Duration, Instant};
    let etcd = EtcdProcess::start();
    let work = tempfile::tempdir().expect("tempdir");
    let datastore = format!("etcd://{}", etcd.endpoint.trim_start_matches("http://"));
    let bin = tug_bin!();
    let mut first = tug_testkit::server::TugServer::start_with(
        bin,
        &work.path().join("a"),
        &["--datastore", &datastore],
    );
    std::thread::sleep(Duration::from_secs(1));
    let second = tug_testkit::server::TugServer::start_with(
        bin,
        &work.path().join("b"),
        &["--datastore", &datastore],
    );
    // Hollow nodes joined to the second server, so they outlive the first.
    let token = std::fs::read_to_string(second.data_dir.join("token")).expect("admin token");
    let mut agent = Command::new(bin)
        .args(["agent", "--simulate", "2", "--heartbeat-interval", "1"])
        .args([
            "--server",
            &second.url,
            "--token",
            token.trim(),
            "--ca-cert",
        ])
        .arg(second.data_dir.join("pki/ca.crt"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("tug agent");
    let kubectl = |s: &tug_testkit::server::TugServer, args: &[&str]| {
        let o = Command::new(tug_testkit::server::kubectl_path())
            .args(args)
            .env("KUBECONFIG", &s.kubeconfig)
            .output()
            .expect("kubectl");
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let holder = |s: &tug_testkit::server::TugServer| {
        kubectl(
            s,
            &[
                "get",
                "lease",
                "-n",
                "kube-system",
                "kube-scheduler",
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ],
        )
    };
    let first_holder = holder(&second);
    assert!(!first_holder.is_empty());
    kubectl(
        &second,
        &[
            "create",
            "deployment",
            "web",
            "--image=busybox",
            "--replicas=2",
        ],
    );
    kubectl(
        &second,
        &["rollout", "status", "deploy/web", "--timeout=60s"],
    );

    // Kill the first server (the leader: it started first) and scale: the other takes over.
    first.kill();
    kubectl(&second, &["scale", "deploy/web", "--replicas=4"]);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let ready = kubectl(
            &second,
            &[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.status.readyReplicas}",
            ],
        );
        if ready == "4" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the survivor never took over: ready {ready}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_ne!(holder(&second), first_holder, "the lease changed hands");
    let _ = agent.kill();
    let _ = agent.wait();
}

/// A watch outlives its etcd restarting: the server's watch cache resumes its store watch
/// from the last revision it applied, so a watcher sees every change made once etcd is back
/// (it used to go on receiving bookmarks and nothing else, forever).
#[test]
fn a_watch_goes_on_after_etcd_restarts() {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, PostParams, WatchEvent, WatchParams};
    use std::time::{Duration, Instant};

    let mut etcd = EtcdProcess::start();
    let work = tempfile::tempdir().expect("tempdir");
    let datastore = format!("etcd://{}", etcd.endpoint.trim_start_matches("http://"));
    let server = tug_testkit::server::TugServer::start_with(
        tug_bin!(),
        &work.path().join("data"),
        &["--datastore", &datastore],
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let kc = kube::config::Kubeconfig::read_from(&server.kubeconfig).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("config");
        let cms: Api<ConfigMap> =
            Api::namespaced(kube::Client::try_from(config).expect("client"), "default");
        let cm = |name: &str| -> ConfigMap {
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
                .expect("configmap")
        };
        let mut watch = cms
            .watch(&WatchParams::default().timeout(290), "0")
            .await
            .expect("watch")
            .boxed();
        // Waits for the watch to tell of `name` being added.
        async fn added(
            watch: &mut (impl futures::Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin),
            name: &str,
        ) {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                match tokio::time::timeout_at(deadline, watch.next()).await {
                    Ok(Some(Ok(WatchEvent::Added(o))))
                        if o.metadata.name.as_deref() == Some(name) =>
                    {
                        return;
                    }
                    Ok(Some(Ok(_))) => {}
                    other => panic!("waiting for {name} to be added, the watch gave {other:?}"),
                }
            }
        }
        cms.create(&PostParams::default(), &cm("before"))
            .await
            .expect("create before");
        added(&mut watch, "before").await;

        tokio::task::block_in_place(|| etcd.restart());
        // The server reconnects on its own; writes are accepted again within seconds.
        let start = Instant::now();
        while let Err(e) = cms.create(&PostParams::default(), &cm("after")).await {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "writes after etcd restarted: {e}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        added(&mut watch, "after").await;
    });
}
