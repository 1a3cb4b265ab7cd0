//! Behaviour of the local (memory and embedded) store that the etcd backend configures on the
//! etcd side instead: automatic compaction, and reopening.

use std::time::Duration;

use tug_store::{
    AutoCompaction, Error, KeyRange, LocalOptions, LocalStore, PutRequest, RangeOptions, Store,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_compaction_keeps_the_configured_history() {
    let store = LocalStore::memory_with(LocalOptions {
        auto_compaction: Some(AutoCompaction {
            retain_revisions: 10,
            interval: Duration::from_millis(50),
        }),
        ..Default::default()
    })
    .expect("store");
    for i in 0..50 {
        store
            .put(PutRequest::new("/ac/k", i.to_string()))
            .await
            .expect("put");
    }
    let read_at = |rev| {
        let store = store.clone();
        async move {
            store
                .range(
                    KeyRange::key("/ac/k"),
                    RangeOptions {
                        revision: rev,
                        ..Default::default()
                    },
                )
                .await
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        // A tick may land while the writes are still going on; the one after them compacts
        // to exactly 50 - 10.
        match read_at(5).await {
            Err(Error::Compacted { compacted: 40, .. }) => break,
            Err(Error::Compacted { compacted, .. }) if compacted < 40 => {}
            Ok(_) => {}
            other => panic!("unexpected read result: {other:?}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "history was not compacted to keep the last 10 revisions in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The retained revisions are still readable.
    let r = read_at(45).await.expect("revision 45 is retained");
    assert_eq!(r.kvs[0].value, b"44".to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_keeps_data_history_and_leases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = LocalOptions {
        auto_compaction: None,
        ..Default::default()
    };
    let lease = {
        let store = LocalStore::open(dir.path(), opts.clone()).expect("open");
        let lease = store.lease_grant(60).await.expect("grant");
        store
            .put(PutRequest {
                lease: lease.id,
                ..PutRequest::new("/re/leased", "x")
            })
            .await
            .expect("put");
        for i in 0..10 {
            store
                .put(PutRequest::new("/re/k", i.to_string()))
                .await
                .expect("put");
        }
        lease
    };
    let store = LocalStore::open(dir.path(), opts).expect("reopen");
    assert_eq!(store.current_revision().await.expect("rev"), 11);
    let past = store
        .range(
            KeyRange::key("/re/k"),
            RangeOptions {
                revision: 3,
                ..Default::default()
            },
        )
        .await
        .expect("past read after reopen");
    assert_eq!(past.kvs[0].value, b"1".to_vec());
    // The lease survived the restart and still owns its key.
    assert_eq!(store.lease_keep_alive(lease.id).await.expect("alive"), 60);
    store.lease_revoke(lease.id).await.expect("revoke");
    let gone = store
        .range(KeyRange::key("/re/leased"), RangeOptions::default())
        .await
        .expect("range");
    assert!(gone.kvs.is_empty());
}

/// Dropping the last handle of an embedded store frees its file at once, whatever its
/// background tasks (lease expiry, compaction; here every millisecond) were doing: the next
/// open of the same directory never finds it "in use by another process".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_frees_the_file_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = LocalOptions {
        lease_check_interval: Duration::from_millis(1),
        auto_compaction: Some(AutoCompaction {
            retain_revisions: 1,
            interval: Duration::from_millis(1),
        }),
        ..Default::default()
    };
    for i in 0..200 {
        let store =
            LocalStore::open(dir.path(), opts.clone()).unwrap_or_else(|e| panic!("open {i}: {e}"));
        store
            .put(PutRequest::new("/reopen/k", i.to_string()))
            .await
            .expect("put");
        // Let the background tasks run a few times.
        tokio::time::sleep(Duration::from_millis(i % 4)).await;
        drop(store);
    }
    let store = LocalStore::open(dir.path(), opts).expect("open");
    let got = store
        .range(KeyRange::key("/reopen/k"), RangeOptions::default())
        .await
        .expect("range");
    assert_eq!(got.kvs[0].value, b"199");
}
