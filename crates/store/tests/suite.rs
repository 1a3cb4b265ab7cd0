//! One behaviour suite, run against every backend: memory, embedded (redb file) and a real
//! etcd 3.4 started by the test.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tug_store::{
    Compare, CompareOp, CompareTarget, DeleteRequest, Error, EventKind, KeyRange, LocalOptions,
    LocalStore, MAX_TXN_OPS, MAX_VALUE_BYTES, PutRequest, RangeOptions, Store, Txn, TxnOp,
    WatchOptions, WatchStream,
};

use tug_testkit::etcd::{EtcdProcess, etcdctl_snapshot_restore};

/// A store under test and whatever keeps it alive (the second fields are held, not read).
#[allow(dead_code)]
enum Fixture {
    Memory(LocalStore),
    Embedded(LocalStore, tempfile::TempDir),
    Etcd(
        tug_store::EtcdStore,
        Box<EtcdProcess>,
        Option<tempfile::TempDir>,
    ),
}

impl Fixture {
    async fn memory() -> Self {
        Fixture::Memory(LocalStore::memory_with(fast_options()).expect("memory store"))
    }
    async fn embedded() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = LocalStore::open(dir.path(), fast_options()).expect("embedded store");
        Fixture::Embedded(s, dir)
    }
    async fn etcd() -> Self {
        let p = EtcdProcess::start();
        let s = tug_store::EtcdStore::connect(std::slice::from_ref(&p.endpoint))
            .await
            .expect("connect to etcd");
        Fixture::Etcd(s, Box::new(p), None)
    }

    fn store(&self) -> Arc<dyn Store> {
        match self {
            Fixture::Memory(s) | Fixture::Embedded(s, _) => Arc::new(s.clone()),
            Fixture::Etcd(s, ..) => Arc::new(s.clone()),
        }
    }

    /// Takes a snapshot and restores it into a new, empty store of the same kind.
    async fn snapshot_restore(&self) -> Fixture {
        let mut bytes = Vec::new();
        let info = self.store().snapshot(&mut bytes).await.expect("snapshot");
        assert!(info.bytes > 0 && info.bytes as usize == bytes.len());
        match self {
            Fixture::Memory(_) => Fixture::Memory(
                LocalStore::memory_from_snapshot(&bytes, fast_options()).expect("restore"),
            ),
            Fixture::Embedded(..) => {
                let work = tempfile::tempdir().expect("tempdir");
                let file = work.path().join("snap.db");
                std::fs::write(&file, &bytes).expect("write snapshot");
                let dir = tempfile::tempdir().expect("tempdir");
                LocalStore::restore(&file, dir.path()).expect("restore");
                let s = LocalStore::open(dir.path(), fast_options()).expect("open restored");
                Fixture::Embedded(s, dir)
            }
            Fixture::Etcd(..) => {
                let work = tempfile::tempdir().expect("tempdir");
                let file = work.path().join("snap.db");
                std::fs::write(&file, &bytes).expect("write snapshot");
                let data = work.path().join("restored");
                etcdctl_snapshot_restore(&file, &data);
                let p = EtcdProcess::start_in(&data);
                let s = tug_store::EtcdStore::connect(std::slice::from_ref(&p.endpoint))
                    .await
                    .expect("connect to restored etcd");
                Fixture::Etcd(s, Box::new(p), Some(work))
            }
        }
    }
}

fn fast_options() -> LocalOptions {
    LocalOptions {
        auto_compaction: None,
        lease_check_interval: Duration::from_millis(50),
        ..Default::default()
    }
}

async fn get(store: &Arc<dyn Store>, key: &str, rev: i64) -> Result<Option<Vec<u8>>, Error> {
    let r = store
        .range(
            KeyRange::key(key),
            RangeOptions {
                revision: rev,
                ..Default::default()
            },
        )
        .await?;
    Ok(r.kvs.into_iter().next().map(|kv| kv.value))
}

async fn put(store: &Arc<dyn Store>, key: &str, value: &str) -> i64 {
    store
        .put(PutRequest::new(key, value))
        .await
        .expect("put")
        .revision
}

/// Reads `n` events (skipping progress notifications) or fails after 30 s.
async fn collect(w: &mut WatchStream, n: usize) -> Vec<tug_store::Event> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while out.len() < n {
        match tokio::time::timeout_at(deadline, w.next()).await {
            Ok(Some(Ok(resp))) => out.extend(resp.events),
            Ok(Some(Err(e))) => panic!("watch error after {} events: {e}", out.len()),
            Ok(None) => panic!("watch ended after {} events", out.len()),
            Err(_) => panic!("timed out with {} of {n} events", out.len()),
        }
    }
    out
}

async fn cas_under_contention(f: Fixture) {
    let store = f.store();
    put(&store, "/cas/counter", "0").await;
    let tasks = 64;
    let per_task = 10;
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut done = 0;
            let mut conflicts = 0u64;
            while done < per_task {
                let r = store
                    .range(KeyRange::key("/cas/counter"), RangeOptions::default())
                    .await
                    .expect("read counter");
                let kv = r.kvs.into_iter().next().expect("counter exists");
                let n: u64 = String::from_utf8_lossy(&kv.value).parse().expect("number");
                let txn = Txn {
                    compare: vec![Compare::new(
                        "/cas/counter",
                        CompareOp::Equal,
                        CompareTarget::ModRevision(kv.mod_revision),
                    )],
                    success: vec![TxnOp::Put(PutRequest::new(
                        "/cas/counter",
                        (n + 1).to_string(),
                    ))],
                    failure: vec![],
                };
                if store.txn(txn).await.expect("txn").succeeded {
                    done += 1;
                } else {
                    conflicts += 1;
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for h in handles {
        conflicts += h.await.expect("task");
    }
    let v = get(&store, "/cas/counter", 0)
        .await
        .expect("get")
        .expect("value");
    assert_eq!(String::from_utf8_lossy(&v), (tasks * per_task).to_string());
    // 64 tasks racing on one key must have collided; otherwise the compare was not tested.
    assert!(conflicts > 0, "no conflicting txn was seen");
}

async fn watchers_see_every_write_in_order(f: Fixture) {
    let store = f.store();
    let start = store.current_revision().await.expect("revision") + 1;
    let mut watchers = Vec::new();
    for _ in 0..10 {
        watchers.push(
            store
                .watch(
                    KeyRange::prefix("/w/"),
                    WatchOptions {
                        start_revision: start,
                        ..Default::default()
                    },
                )
                .await
                .expect("watch"),
        );
    }
    let writes = 1000;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in (t..writes).step_by(8) {
                store
                    .put(PutRequest::new(format!("/w/{}", i % 50), i.to_string()))
                    .await
                    .expect("put");
            }
        }));
    }
    // A write outside the prefix must not reach these watchers.
    put(&store, "/other", "x").await;
    for t in tasks {
        t.await.expect("writer");
    }
    for mut w in watchers {
        let events = collect(&mut w, writes).await;
        let revs: Vec<i64> = events.iter().map(|e| e.kv.mod_revision).collect();
        assert!(
            revs.windows(2).all(|p| p[0] < p[1]),
            "out of order or duplicated"
        );
        let values: BTreeSet<String> = events
            .iter()
            .map(|e| String::from_utf8_lossy(&e.kv.value).into_owned())
            .collect();
        assert_eq!(values.len(), writes, "every write exactly once");
        assert!(events.iter().all(|e| e.kv.key.starts_with(b"/w/")));
    }
}

async fn watch_resumes_from_a_middle_revision(f: Fixture) {
    let store = f.store();
    let mut revs = Vec::new();
    for i in 0..100 {
        revs.push(put(&store, &format!("/r/{}", i % 7), &i.to_string()).await);
    }
    let mid = revs[49];
    let mut w = store
        .watch(
            KeyRange::prefix("/r/"),
            WatchOptions {
                start_revision: mid + 1,
                prev_kv: true,
                ..Default::default()
            },
        )
        .await
        .expect("watch");
    let later = put(&store, "/r/late", "late").await;
    let events = collect(&mut w, 51).await;
    let got: Vec<i64> = events.iter().map(|e| e.kv.mod_revision).collect();
    let mut want = revs[50..].to_vec();
    want.push(later);
    assert_eq!(got, want);
    // prev_kv was asked for: a key written before carries its previous value.
    assert!(events[0].prev_kv.is_some());
    assert_eq!(events[0].kind, EventKind::Put);
    // Nothing more arrives.
    let extra = tokio::time::timeout(Duration::from_millis(300), w.next()).await;
    assert!(extra.is_err(), "unexpected extra event: {extra:?}");
}

async fn compacted_revisions_are_refused(f: Fixture) {
    let store = f.store();
    let first = put(&store, "/c/a", "1").await;
    put(&store, "/c/a", "2").await;
    let third = put(&store, "/c/a", "3").await;
    store.compact(third).await.expect("compact");
    // A read below the compacted revision fails; at it, it works.
    match get(&store, "/c/a", first).await {
        Err(Error::Compacted { .. }) => {}
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert_eq!(
        get(&store, "/c/a", third).await.expect("read"),
        Some(b"3".to_vec())
    );
    // A watch from a compacted revision gets the Compacted error (at once or as its first item).
    let opts = WatchOptions {
        start_revision: first,
        ..Default::default()
    };
    match store.watch(KeyRange::prefix("/c/"), opts).await {
        Err(Error::Compacted { .. }) => {}
        Err(e) => panic!("expected Compacted, got {e}"),
        Ok(mut w) => match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
            Ok(Some(Err(Error::Compacted { .. }))) => {}
            other => panic!("expected a Compacted error, got {other:?}"),
        },
    }
    // Compacting again at or below the compacted revision is an error too.
    assert!(matches!(
        store.compact(first).await,
        Err(Error::Compacted { .. })
    ));
}

async fn past_revision_reads(f: Fixture) {
    let store = f.store();
    let r1 = put(&store, "/p/k", "v1").await;
    let r2 = put(&store, "/p/k", "v2").await;
    let r3 = store
        .delete(DeleteRequest::key("/p/k"))
        .await
        .expect("delete")
        .revision;
    let r4 = put(&store, "/p/j", "j1").await;
    assert_eq!(get(&store, "/p/k", r1).await.unwrap(), Some(b"v1".to_vec()));
    assert_eq!(get(&store, "/p/k", r2).await.unwrap(), Some(b"v2".to_vec()));
    assert_eq!(get(&store, "/p/k", r3).await.unwrap(), None);
    assert_eq!(get(&store, "/p/k", 0).await.unwrap(), None);
    let at = |rev| {
        let store = store.clone();
        async move {
            store
                .range(
                    KeyRange::prefix("/p/"),
                    RangeOptions {
                        revision: rev,
                        ..Default::default()
                    },
                )
                .await
                .expect("range")
        }
    };
    let past = at(r2).await;
    assert_eq!(past.kvs.len(), 1);
    assert_eq!(past.kvs[0].mod_revision, r2);
    assert_eq!(past.kvs[0].create_revision, r1);
    assert_eq!(past.kvs[0].version, 2);
    assert!(past.revision >= r4, "responses carry the current revision");
    assert_eq!(at(r4).await.kvs.len(), 1);
    match get(&store, "/p/k", r4 + 1000).await {
        Err(Error::FutureRevision { .. }) => {}
        other => panic!("expected FutureRevision, got {other:?}"),
    }
    // limit, count and keys_only.
    for i in 0..5 {
        put(&store, &format!("/p/many/{i}"), "x").await;
    }
    let r = store
        .range(
            KeyRange::prefix("/p/many/"),
            RangeOptions {
                limit: 2,
                keys_only: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((r.kvs.len(), r.count, r.more), (2, 5, true));
    assert!(r.kvs.iter().all(|kv| kv.value.is_empty()));
    let c = store
        .range(
            KeyRange::prefix("/p/many/"),
            RangeOptions {
                count_only: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((c.kvs.len(), c.count), (0, 5));
}

async fn lease_expiry_deletes_its_keys(f: Fixture) {
    let store = f.store();
    let mut w = store
        .watch(KeyRange::prefix("/l/"), WatchOptions::default())
        .await
        .expect("watch");
    let short = store.lease_grant(1).await.expect("grant");
    let kept = store.lease_grant(1).await.expect("grant");
    for (key, lease) in [("/l/a", short.id), ("/l/b", short.id), ("/l/kept", kept.id)] {
        store
            .put(PutRequest {
                lease,
                ..PutRequest::new(key, "x")
            })
            .await
            .expect("put with lease");
    }
    put(&store, "/l/plain", "x").await;
    let keeper = {
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if store.lease_keep_alive(kept.id).await.is_err() {
                    return;
                }
            }
        })
    };
    let events = collect(&mut w, 6).await;
    keeper.abort();
    let deletes: BTreeSet<Vec<u8>> = events
        .iter()
        .filter(|e| e.kind == EventKind::Delete)
        .map(|e| e.kv.key.clone())
        .collect();
    assert_eq!(
        deletes,
        BTreeSet::from([b"/l/a".to_vec(), b"/l/b".to_vec()])
    );
    assert_eq!(get(&store, "/l/a", 0).await.unwrap(), None);
    assert!(
        get(&store, "/l/kept", 0).await.unwrap().is_some(),
        "kept alive"
    );
    assert!(get(&store, "/l/plain", 0).await.unwrap().is_some());
    // A put on an expired lease, and a keep-alive of it, are refused.
    let late = store
        .put(PutRequest {
            lease: short.id,
            ..PutRequest::new("/l/late", "x")
        })
        .await;
    assert!(matches!(late, Err(Error::LeaseNotFound(_))), "{late:?}");
    assert!(store.lease_keep_alive(short.id).await.is_err());
    // Revoking deletes at once.
    store.lease_revoke(kept.id).await.expect("revoke");
    assert_eq!(get(&store, "/l/kept", 0).await.unwrap(), None);
}

async fn snapshot_then_restore_is_identical(f: Fixture) {
    let store = f.store();
    for i in 0..300 {
        put(&store, &format!("/s/{:03}", i % 120), &format!("v{i}")).await;
    }
    store
        .delete(DeleteRequest {
            range: KeyRange::prefix("/s/01"),
            prev_kv: false,
        })
        .await
        .expect("delete");
    let all = |s: Arc<dyn Store>| async move {
        s.range(KeyRange::all(), RangeOptions::default())
            .await
            .expect("range")
    };
    let before = all(store.clone()).await;
    let restored = f.snapshot_restore().await;
    let after = all(restored.store()).await;
    assert_eq!(before.kvs.len(), 110);
    assert_eq!(before.kvs, after.kvs, "same keys, values and revisions");
    assert_eq!(before.revision, after.revision);
}

async fn limits_are_enforced(f: Fixture) {
    let store = f.store();
    let big = store
        .put(PutRequest::new("/big", vec![0u8; MAX_VALUE_BYTES + 1]))
        .await;
    assert!(matches!(big, Err(Error::ValueTooLarge { .. })), "{big:?}");
    let ops = (0..=MAX_TXN_OPS)
        .map(|i| TxnOp::Put(PutRequest::new(format!("/t/{i}"), "x")))
        .collect();
    let many = store.txn(Txn::always(ops)).await;
    assert!(
        matches!(many, Err(Error::TooManyOperations { .. })),
        "{many:?}"
    );
    // Nothing of either was written.
    assert_eq!(get(&store, "/big", 0).await.unwrap(), None);
    assert_eq!(get(&store, "/t/0", 0).await.unwrap(), None);
    // The empty key is refused.
    let empty = store.put(PutRequest::new("", "x")).await;
    assert!(matches!(empty, Err(Error::EmptyKey)), "{empty:?}");
    let empty = store
        .range(KeyRange::key(""), RangeOptions::default())
        .await;
    assert!(matches!(empty, Err(Error::EmptyKey)), "{empty:?}");
    // At the limit, values are accepted.
    store
        .put(PutRequest::new("/big", vec![1u8; 1024 * 1024]))
        .await
        .expect("a 1 MiB value is fine");
}

async fn idle_watch_gets_progress(f: Fixture) {
    let store = f.store();
    let rev = put(&store, "/prog/x", "1").await;
    let mut w = store
        .watch(
            KeyRange::prefix("/idle/"),
            WatchOptions {
                progress_interval: Some(Duration::from_millis(200)),
                ..Default::default()
            },
        )
        .await
        .expect("watch");
    let resp = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("a progress notification in time")
        .expect("stream open")
        .expect("no error");
    assert!(resp.is_progress());
    assert!(resp.revision >= rev, "progress {} < {rev}", resp.revision);
}

async fn txn_compares_and_branches(f: Fixture) {
    let store = f.store();
    // Create-if-absent: version == 0.
    let create = |v: &'static str| Txn {
        compare: vec![Compare::new(
            "/x/obj",
            CompareOp::Equal,
            CompareTarget::Version(0),
        )],
        success: vec![TxnOp::Put(PutRequest::new("/x/obj", v))],
        failure: vec![TxnOp::Range(
            KeyRange::key("/x/obj"),
            RangeOptions::default(),
        )],
    };
    let first = store.txn(create("a")).await.unwrap();
    assert!(first.succeeded);
    let second = store.txn(create("b")).await.unwrap();
    assert!(!second.succeeded);
    match &second.responses[0] {
        tug_store::TxnOpResponse::Range(r) => assert_eq!(r.kvs[0].value, b"a".to_vec()),
        other => panic!("expected a range response, got {other:?}"),
    }
    let value_cmp = Txn {
        compare: vec![Compare::new(
            "/x/obj",
            CompareOp::Equal,
            CompareTarget::Value(b"a".to_vec()),
        )],
        success: vec![TxnOp::Delete(DeleteRequest {
            range: KeyRange::key("/x/obj"),
            prev_kv: true,
        })],
        failure: vec![],
    };
    let del = store.txn(value_cmp).await.unwrap();
    assert!(del.succeeded);
    match &del.responses[0] {
        tug_store::TxnOpResponse::Delete(d) => {
            assert_eq!(d.deleted, 1);
            assert_eq!(d.prev_kvs[0].value, b"a".to_vec());
        }
        other => panic!("expected a delete response, got {other:?}"),
    }
    // Deleting nothing does not move the revision.
    let rev = store.current_revision().await.unwrap();
    store.delete(DeleteRequest::key("/x/none")).await.unwrap();
    assert_eq!(store.current_revision().await.unwrap(), rev);
}

async fn watch_reports_puts_and_deletes_with_prev(f: Fixture) {
    let store = f.store();
    let mut w = store
        .watch(
            KeyRange::prefix("/d/"),
            WatchOptions {
                prev_kv: true,
                ..Default::default()
            },
        )
        .await
        .expect("watch");
    let r1 = put(&store, "/d/a", "1").await;
    put(&store, "/d/a", "2").await;
    let del = store
        .delete(DeleteRequest::key("/d/a"))
        .await
        .expect("delete")
        .revision;
    let e = collect(&mut w, 3).await;
    let kinds: Vec<EventKind> = e.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::Put, EventKind::Put, EventKind::Delete]);
    assert_eq!(e[0].prev_kv, None, "a new key has no previous value");
    assert_eq!(e[0].kv.create_revision, r1);
    assert_eq!(e[1].kv.version, 2);
    assert_eq!(
        e[1].prev_kv.as_ref().map(|p| p.value.clone()),
        Some(b"1".to_vec())
    );
    assert_eq!(e[2].kv.mod_revision, del);
    assert_eq!(e[2].kv.key, b"/d/a".to_vec());
    assert_eq!(
        e[2].prev_kv.as_ref().map(|p| p.value.clone()),
        Some(b"2".to_vec())
    );
}

async fn slow_watcher_does_not_stall_writers(f: Fixture) {
    let store = f.store();
    let opts = WatchOptions::default();
    let mut slow = store
        .watch(KeyRange::prefix("/slow/"), opts.clone())
        .await
        .expect("watch");
    let mut fast = store
        .watch(KeyRange::prefix("/slow/"), opts)
        .await
        .expect("watch");
    let writes = 3000;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..writes {
                store
                    .put(PutRequest::new(
                        format!("/slow/{}", i % 20),
                        vec![b'v'; 1024],
                    ))
                    .await
                    .expect("put");
            }
        })
    };
    // The fast watcher keeps up while the slow one is never read.
    let events = collect(&mut fast, writes).await;
    assert!(
        events
            .windows(2)
            .all(|p| p[0].kv.mod_revision + 1 == p[1].kv.mod_revision)
    );
    tokio::time::timeout(Duration::from_secs(60), writer)
        .await
        .expect("writers must not wait for a slow watcher")
        .expect("writer task");
    // Compact everything away, then read the slow watcher: whatever it delivers is a gapless
    // prefix, and if it could not deliver everything it ends with an error it can act on.
    let rev = store.current_revision().await.expect("revision");
    store.compact(rev).await.expect("compact");
    let first = events[0].kv.mod_revision;
    let mut next = first;
    let ended_with = loop {
        match tokio::time::timeout(Duration::from_secs(30), slow.next()).await {
            Ok(Some(Ok(resp))) => {
                for e in resp.events {
                    assert_eq!(e.kv.mod_revision, next, "gap or duplicate");
                    next += 1;
                }
                if next == first + writes as i64 {
                    break None;
                }
            }
            Ok(Some(Err(e))) => break Some(e),
            Ok(None) => panic!(
                "slow watch ended without an error after {} events",
                next - first
            ),
            Err(_) => panic!("slow watch stalled after {} events", next - first),
        }
    };
    eprintln!(
        "slow watcher: {} of {writes} events, then {ended_with:?}",
        next - first
    );
    match ended_with {
        None => {}
        Some(Error::Compacted { .. }) => assert!(next < first + writes as i64),
        Some(e) => panic!("expected Compacted for a watcher left behind, got {e}"),
    }
}

async fn snapshot_during_writes_is_point_in_time(f: Fixture) {
    let store = f.store();
    for i in 0..200 {
        put(&store, &format!("/pit/{}", i % 50), &i.to_string()).await;
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let store = store.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                store
                    .put(PutRequest::new(format!("/pit/{}", i % 70), i.to_string()))
                    .await
                    .expect("put");
                i += 1;
            }
            i
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let restored = f.snapshot_restore().await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written_meanwhile = writer.await.expect("writer");
    assert!(written_meanwhile > 0, "writes went on during the snapshot");
    // The restored store is exactly the original as of the snapshot's revision.
    let at = restored.store().current_revision().await.expect("revision");
    let then = store
        .range(
            KeyRange::prefix("/pit/"),
            RangeOptions {
                revision: at,
                ..Default::default()
            },
        )
        .await
        .expect("range at the snapshot revision");
    let restored_kvs = restored
        .store()
        .range(KeyRange::prefix("/pit/"), RangeOptions::default())
        .await
        .expect("range restored")
        .kvs;
    assert_eq!(then.kvs, restored_kvs);
}

async fn requested_progress_reports_the_current_revision(f: Fixture) {
    let store = f.store();
    let mut w = store
        .watch(KeyRange::prefix("/quiet/"), WatchOptions::default())
        .await
        .expect("watch");
    // Writes elsewhere move the store's revision; the watch sees no event for them.
    let mut rev = 0;
    for i in 0..5 {
        rev = put(&store, &format!("/busy/{i}"), "x").await;
    }
    // A requested progress notification catches the watch up to them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        w.request_progress();
        match tokio::time::timeout(Duration::from_secs(2), w.next()).await {
            Ok(Some(Ok(resp))) => {
                assert!(resp.is_progress(), "no events were expected: {resp:?}");
                if resp.revision >= rev {
                    break;
                }
            }
            Ok(other) => panic!("unexpected watch item: {other:?}"),
            Err(_) => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "progress never reached {rev}"
        );
    }
}

macro_rules! suite {
    ($backend:ident) => {
        mod $backend {
            use super::*;

            async fn fixture() -> Fixture {
                Fixture::$backend().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn cas_under_contention_is_exact() {
                cas_under_contention(fixture().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn ten_watchers_see_1000_writes_in_order() {
                watchers_see_every_write_in_order(fixture().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn watch_resumes_from_a_middle_revision() {
                super::watch_resumes_from_a_middle_revision(fixture().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn compacted_revisions_are_refused() {
                super::compacted_revisions_are_refused(fixture().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn past_revision_reads() {
                super::past_revision_reads(fixture().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lease_expiry_deletes_its_keys() {
                super::lease_expiry_deletes_its_keys(fixture().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn snapshot_then_restore_is_identical() {
                super::snapshot_then_restore_is_identical(fixture().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn limits_are_enforced() {
                super::limits_are_enforced(fixture().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn idle_watch_gets_progress() {
                super::idle_watch_gets_progress(fixture().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn watch_reports_puts_and_deletes_with_prev() {
                super::watch_reports_puts_and_deletes_with_prev(fixture().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn slow_watcher_does_not_stall_writers() {
                super::slow_watcher_does_not_stall_writers(fixture().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn snapshot_during_writes_is_point_in_time() {
                super::snapshot_during_writes_is_point_in_time(fixture().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn requested_progress_reports_the_current_revision() {
                super::requested_progress_reports_the_current_revision(fixture().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn txn_compares_and_branches() {
                super::txn_compares_and_branches(fixture().await).await
            }
        }
    };
}

suite!(memory);
suite!(embedded);
suite!(etcd);
