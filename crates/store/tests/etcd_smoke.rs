//! etcd-specific tests of the etcd backend (the shared behaviour suite is tests/suite.rs) against a real etcd (`/usr/bin/etcd`, Debian's
//! `etcd-server`), started per test on loopback ports.

use std::time::Duration;

use tug_store::{
    Compare, CompareOp, CompareTarget, DeleteRequest, Error, EtcdStore, EventKind, KeyRange,
    PutRequest, RangeOptions, Store, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchResponse,
    WatchStream,
};
use tug_testkit::etcd::EtcdProcess;

const STEP: Duration = Duration::from_secs(5);

async fn connect(etcd: &EtcdProcess) -> EtcdStore {
    EtcdStore::connect(std::slice::from_ref(&etcd.endpoint))
        .await
        .expect("connect to etcd")
}

async fn next(watch: &mut WatchStream) -> tug_store::Result<WatchResponse> {
    tokio::time::timeout(STEP, watch.next())
        .await
        .expect("watch response within 5s")
        .expect("watch stream ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_accepts_bare_host_port_and_reports_unreachable() {
    let etcd = EtcdProcess::start();
    let bare = etcd.endpoint.trim_start_matches("http://").to_string();
    let store = EtcdStore::connect(&[bare]).await.expect("bare host:port");
    assert!(store.current_revision().await.expect("revision") >= 1);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let err = EtcdStore::connect(&[format!("http://127.0.0.1:{port}")])
        .await
        .expect_err("nothing listens there");
    assert!(
        matches!(&err, Error::Etcd(m) if m.contains("cannot reach etcd")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_range_and_compare_and_swap() {
    let etcd = EtcdProcess::start();
    let store = connect(&etcd).await;

    let put = store
        .put(PutRequest::new("/a/1", "one"))
        .await
        .expect("put");
    store
        .put(PutRequest::new("/a/2", "two"))
        .await
        .expect("put");
    store
        .put(PutRequest::new("/b/1", "other"))
        .await
        .expect("put");

    let got = store
        .range(KeyRange::key("/a/1"), RangeOptions::default())
        .await
        .expect("range");
    assert_eq!(got.kvs.len(), 1);
    assert_eq!(got.kvs[0].value, b"one");
    assert_eq!(got.kvs[0].version, 1);
    assert_eq!(got.kvs[0].mod_revision, put.revision);
    assert_eq!(got.kvs[0].create_revision, put.revision);
    assert_eq!(got.revision, put.revision + 2);

    let prefix = store
        .range(
            KeyRange::prefix("/a/"),
            RangeOptions {
                limit: 1,
                ..Default::default()
            },
        )
        .await
        .expect("prefix range");
    assert_eq!(prefix.count, 2);
    assert!(prefix.more);
    assert_eq!(prefix.kvs.len(), 1);
    assert_eq!(prefix.kvs[0].key, b"/a/1");

    let all = store
        .range(KeyRange::all(), RangeOptions::default())
        .await
        .expect("all");
    assert_eq!(all.count, 3);
    let empty = store
        .range(KeyRange::range("/b", "/a"), RangeOptions::default())
        .await
        .expect("empty range");
    assert_eq!(empty.count, 0);

    // Reading the past.
    let old = store
        .range(
            KeyRange::prefix("/a/"),
            RangeOptions {
                revision: put.revision,
                ..Default::default()
            },
        )
        .await
        .expect("range at an old revision");
    assert_eq!(old.count, 1);

    // Compare-and-swap on the mod revision.
    let cas = |expect: i64, value: &'static str| Txn {
        compare: vec![Compare::new(
            "/a/1",
            CompareOp::Equal,
            CompareTarget::ModRevision(expect),
        )],
        success: vec![TxnOp::Put(PutRequest {
            prev_kv: true,
            ..PutRequest::new("/a/1", value)
        })],
        failure: vec![TxnOp::Range(KeyRange::key("/a/1"), RangeOptions::default())],
    };
    let won = store.txn(cas(put.revision, "uno")).await.expect("cas");
    assert!(won.succeeded);
    match &won.responses[..] {
        [TxnOpResponse::Put(p)] => {
            assert_eq!(p.revision, won.revision);
            assert_eq!(
                p.prev_kv.as_ref().map(|kv| kv.value.clone()),
                Some(b"one".to_vec())
            );
        }
        other => panic!("unexpected responses {other:?}"),
    }
    let lost = store.txn(cas(put.revision, "eins")).await.expect("cas");
    assert!(!lost.succeeded);
    assert_eq!(lost.revision, won.revision);
    match &lost.responses[..] {
        [TxnOpResponse::Range(r)] => {
            assert_eq!(r.kvs[0].value, b"uno");
            assert_eq!(r.kvs[0].version, 2);
        }
        other => panic!("unexpected responses {other:?}"),
    }

    // Value compare, NotEqual, and a create-if-absent.
    let txn = Txn {
        compare: vec![
            Compare::new(
                "/a/1",
                CompareOp::Equal,
                CompareTarget::Value(b"uno".to_vec()),
            ),
            Compare::new("/a/new", CompareOp::Equal, CompareTarget::CreateRevision(0)),
            Compare::new("/a/2", CompareOp::NotEqual, CompareTarget::Version(7)),
        ],
        success: vec![
            TxnOp::Put(PutRequest::new("/a/new", "x")),
            TxnOp::Delete(DeleteRequest {
                range: KeyRange::key("/b/1"),
                prev_kv: true,
            }),
        ],
        failure: vec![],
    };
    let resp = store.txn(txn).await.expect("txn");
    assert!(resp.succeeded);
    match &resp.responses[..] {
        [TxnOpResponse::Put(_), TxnOpResponse::Delete(d)] => {
            assert_eq!(d.deleted, 1);
            assert_eq!(d.prev_kvs[0].value, b"other");
        }
        other => panic!("unexpected responses {other:?}"),
    }

    // Reading a future revision.
    let err = store
        .range(
            KeyRange::key("/a/1"),
            RangeOptions {
                revision: resp.revision + 100,
                ..Default::default()
            },
        )
        .await
        .expect_err("future revision");
    assert!(
        matches!(err, Error::FutureRevision { requested, current } if requested == resp.revision + 100 && current == resp.revision),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_delivers_put_then_delete_with_prev_kv() {
    let etcd = EtcdProcess::start();
    let store = connect(&etcd).await;
    store.put(PutRequest::new("/w/k", "v1")).await.expect("put");

    let mut watch = store
        .watch(
            KeyRange::prefix("/w/"),
            WatchOptions {
                prev_kv: true,
                ..Default::default()
            },
        )
        .await
        .expect("watch");
    let put = store.put(PutRequest::new("/w/k", "v2")).await.expect("put");
    store
        .put(PutRequest::new("/elsewhere", "x"))
        .await
        .expect("put");
    let del = store
        .delete(DeleteRequest::key("/w/k"))
        .await
        .expect("delete");

    let mut events = Vec::new();
    while events.len() < 2 {
        let resp = next(&mut watch).await.expect("watch response");
        if resp.is_progress() {
            continue;
        }
        assert_eq!(
            resp.revision,
            resp.events
                .last()
                .map(|e| e.kv.mod_revision)
                .unwrap_or_default()
        );
        events.extend(resp.events);
    }
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].kind, EventKind::Put);
    assert_eq!(events[0].kv.key, b"/w/k");
    assert_eq!(events[0].kv.value, b"v2");
    assert_eq!(events[0].kv.mod_revision, put.revision);
    assert_eq!(events[0].kv.version, 2);
    assert_eq!(
        events[0].prev_kv.as_ref().map(|kv| kv.value.clone()),
        Some(b"v1".to_vec())
    );
    assert_eq!(events[1].kind, EventKind::Delete);
    assert_eq!(events[1].kv.key, b"/w/k");
    assert_eq!(events[1].kv.mod_revision, del.revision);
    assert!(events[1].kv.value.is_empty());
    assert_eq!(
        events[1].prev_kv.as_ref().map(|kv| kv.value.clone()),
        Some(b"v2".to_vec())
    );

    // A watch from an old revision replays history, and without prev_kv attaches none.
    let mut replay = store
        .watch(
            KeyRange::key("/w/k"),
            WatchOptions {
                start_revision: put.revision,
                ..Default::default()
            },
        )
        .await
        .expect("watch from the past");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let resp = next(&mut replay).await.expect("replay");
        seen.extend(resp.events);
    }
    assert_eq!(
        seen.iter()
            .map(|e| (e.kind, e.kv.mod_revision))
            .collect::<Vec<_>>(),
        vec![
            (EventKind::Put, put.revision),
            (EventKind::Delete, del.revision)
        ]
    );
    assert!(seen.iter().all(|e| e.prev_kv.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_history_is_refused() {
    let etcd = EtcdProcess::start();
    let store = connect(&etcd).await;
    let mut last = 0;
    for i in 0..5 {
        last = store
            .put(PutRequest::new("/c", format!("v{i}")))
            .await
            .expect("put")
            .revision;
    }
    let compact_at = last - 1;
    store.compact(compact_at).await.expect("compact");

    // A watch starting before the compaction.
    let res = store
        .watch(
            KeyRange::key("/c"),
            WatchOptions {
                start_revision: 2,
                ..Default::default()
            },
        )
        .await;
    let err = match res {
        Err(e) => e,
        Ok(mut w) => next(&mut w).await.expect_err("compacted watch"),
    };
    assert!(
        matches!(err, Error::Compacted { requested: 2, compacted } if compacted == compact_at),
        "{err:?}"
    );

    // A read before the compaction.
    let err = store
        .range(
            KeyRange::key("/c"),
            RangeOptions {
                revision: 2,
                ..Default::default()
            },
        )
        .await
        .expect_err("compacted read");
    assert!(
        matches!(err, Error::Compacted { requested: 2, compacted } if compacted == compact_at),
        "{err:?}"
    );

    // Compacting again at or below the compacted revision.
    let err = store.compact(compact_at).await.expect_err("compact twice");
    assert!(
        matches!(err, Error::Compacted { requested, compacted } if requested == compact_at && compacted == compact_at),
        "{err:?}"
    );

    // The latest value and a read at the compacted revision still work.
    let got = store
        .range(
            KeyRange::key("/c"),
            RangeOptions {
                revision: compact_at,
                ..Default::default()
            },
        )
        .await
        .expect("read at the compacted revision");
    assert_eq!(got.kvs[0].value, b"v3");
}
