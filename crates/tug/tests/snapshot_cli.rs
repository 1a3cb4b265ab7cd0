//! `tug snapshot save` and `tug snapshot restore` from the command line.

use std::path::Path;
use std::process::{Command, Output};

use tug_store::{KeyRange, LocalOptions, LocalStore, PutRequest, RangeOptions, Store};
use tug_testkit::kubectl::text;
use tug_testkit::tug_bin;

fn tug(args: &[&str], data_dir: &Path) -> Output {
    Command::new(tug_bin!())
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run tug")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_then_restore_round_trips_and_damage_is_refused() {
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("src");
    {
        let store = LocalStore::open(&src, LocalOptions::default()).expect("open");
        for i in 0..50 {
            store
                .put(PutRequest::new(
                    format!("/registry/configmaps/{i}"),
                    format!("v{i}"),
                ))
                .await
                .expect("put");
        }
    }
    let snap = work.path().join("backup.snap");
    let snap_s = snap.to_str().expect("utf-8 path");
    let saved = tug(&["snapshot", "save", snap_s], &src);
    assert!(saved.status.success(), "{}", text(&saved));
    assert!(text(&saved).contains("revision 50"), "{}", text(&saved));

    let dst = work.path().join("dst");
    let restored = tug(&["snapshot", "restore", snap_s], &dst);
    assert!(restored.status.success(), "{}", text(&restored));
    {
        let store = LocalStore::open(&dst, LocalOptions::default()).expect("open restored");
        let r = store
            .range(KeyRange::prefix("/registry/"), RangeOptions::default())
            .await
            .expect("range");
        assert_eq!((r.kvs.len(), r.revision), (50, 50));
    }

    // Restoring over an existing store is refused.
    let again = tug(&["snapshot", "restore", snap_s], &dst);
    assert!(!again.status.success());
    assert!(text(&again).contains("empty data dir"), "{}", text(&again));

    // A damaged snapshot names the file and leaves the target untouched.
    let mut bytes = std::fs::read(&snap).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&snap, bytes).expect("write");
    let fresh = work.path().join("fresh");
    let bad = tug(&["snapshot", "restore", snap_s], &fresh);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("backup.snap"), "{}", text(&bad));
    assert!(!fresh.join(tug_store::DATA_FILE).exists());

    // Saving from a directory without a store says so.
    let empty = work.path().join("nothing");
    let none = tug(&["snapshot", "save", snap_s], &empty);
    assert!(!none.status.success());
    assert!(text(&none).contains("no store"), "{}", text(&none));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_works_while_another_process_is_writing() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let mut writer = Command::new(tug_bin!())
        .args(["debug", "ack-writer", "--writers", "4", "--data-dir"])
        .arg(&data)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start writer");
    let mut lines = BufReader::new(writer.stdout.take().expect("stdout")).lines();
    let mut acked_before = Vec::new();
    while acked_before.len() < 200 {
        match lines.next() {
            Some(Ok(l)) => acked_before.push(l),
            _ => panic!("writer stopped after {} acks", acked_before.len()),
        }
    }
    let snap = work.path().join("live.snap");
    let snap_s = snap.to_str().expect("utf-8 path");
    let saved = tug(&["snapshot", "save", snap_s], &data);
    // Let the writer go on a little after the snapshot, then stop it.
    for _ in 0..50 {
        let _ = lines.next();
    }
    writer.kill().expect("kill writer");
    let _ = writer.wait();
    assert!(saved.status.success(), "{}", text(&saved));

    let dst = work.path().join("restored");
    let restored = tug(&["snapshot", "restore", snap_s], &dst);
    assert!(restored.status.success(), "{}", text(&restored));
    let store = LocalStore::open(&dst, LocalOptions::default()).expect("open restored");
    for key in &acked_before {
        let r = store
            .range(KeyRange::key(key.as_str()), RangeOptions::default())
            .await
            .expect("range");
        assert_eq!(r.kvs.len(), 1, "{key} was acknowledged before the snapshot");
    }
}
