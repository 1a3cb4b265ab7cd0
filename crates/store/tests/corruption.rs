//! Damaged data files and snapshots fail loudly, naming the file, and change nothing.

use std::path::Path;
use std::time::Duration;

use tug_store::{DATA_FILE, LocalOptions, LocalStore, PutRequest, Store};

fn options() -> LocalOptions {
    LocalOptions {
        auto_compaction: None,
        lease_check_interval: Duration::from_millis(50),
        ..Default::default()
    }
}

async fn fill(dir: &Path) {
    let store = LocalStore::open(dir, options()).expect("open");
    for i in 0..2000 {
        store
            .put(PutRequest::new(format!("/k/{i:05}"), vec![b'v'; 200]))
            .await
            .expect("put");
    }
}

fn damage(path: &Path, at: impl Fn(u64) -> u64) {
    let mut bytes = std::fs::read(path).expect("read");
    let len = bytes.len() as u64;
    let start = at(len) as usize;
    for b in bytes.iter_mut().skip(start).take(4096) {
        *b ^= 0x5a;
    }
    std::fs::write(path, bytes).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_data_file_fails_to_open_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    fill(dir.path()).await;
    let file = dir.path().join(DATA_FILE);
    let len = std::fs::metadata(&file).expect("metadata").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .expect("open file")
        .set_len(len / 2)
        .expect("truncate");
    let err = LocalStore::open(dir.path(), options())
        .err()
        .expect("opening a truncated file must fail");
    assert!(err.to_string().contains(DATA_FILE), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_data_file_fails_to_open_naming_the_file() {
    for (name, at) in [
        ("header", (|_| 0) as fn(u64) -> u64),
        ("middle", |len| len / 2),
        ("late", |len| len * 3 / 4),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        fill(dir.path()).await;
        let file = dir.path().join(DATA_FILE);
        damage(&file, at);
        let err = LocalStore::open(dir.path(), options())
            .err()
            .unwrap_or_else(|| panic!("opening a file damaged at its {name} must fail"));
        assert!(err.to_string().contains(DATA_FILE), "{name}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_snapshot_fails_to_restore_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    fill(dir.path()).await;
    let store = LocalStore::open(dir.path(), options()).expect("open");
    let snap = dir.path().join("backup.snap");
    let mut out = std::fs::File::create(&snap).expect("create");
    store.snapshot(&mut out).await.expect("snapshot");
    drop(out);
    let good = std::fs::read(&snap).expect("read");

    for (what, bytes) in [
        ("truncated", good[..good.len() - 100].to_vec()),
        ("flipped", {
            let mut b = good.clone();
            let mid = b.len() / 2;
            b[mid] ^= 1;
            b
        }),
        ("empty", Vec::new()),
    ] {
        std::fs::write(&snap, &bytes).expect("write");
        let target = tempfile::tempdir().expect("tempdir");
        let err = LocalStore::restore(&snap, target.path())
            .err()
            .unwrap_or_else(|| panic!("restoring a {what} snapshot must fail"));
        assert!(err.to_string().contains("backup.snap"), "{what}: {err}");
        let left: Vec<_> = std::fs::read_dir(target.path()).expect("ls").collect();
        assert!(
            left.is_empty(),
            "{what}: restore left files behind: {left:?}"
        );
    }

    // The intact snapshot restores, and not over an existing store.
    std::fs::write(&snap, &good).expect("write");
    let target = tempfile::tempdir().expect("tempdir");
    LocalStore::restore(&snap, target.path()).expect("restore");
    let again = LocalStore::restore(&snap, target.path());
    assert!(
        again.is_err(),
        "restore over an existing store must be refused"
    );
}
