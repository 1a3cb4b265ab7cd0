//! Crash durability of the embedded store: a writer process that prints every acknowledged
//! write is killed with SIGKILL at a random moment; every acknowledged write must survive.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::Rng;
use tug_store::{KeyRange, LocalOptions, LocalStore, RangeOptions, Store};
use tug_testkit::tug_bin;

const ROUNDS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = rand::rng();
    let mut total_acked = 0usize;
    for round in 0..ROUNDS {
        // Every other round checkpoints every 64 KiB of log, so that kills also land around
        // checkpoints and log rotations; the others replay a long log on reopen.
        let checkpoint = if round % 2 == 0 {
            "65536"
        } else {
            "1073741824"
        };
        let mut child = Command::new(tug_bin!())
            .args([
                "debug",
                "ack-writer",
                "--writers",
                "16",
                "--checkpoint-bytes",
                checkpoint,
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the writer");
        let stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<String>>()
        });
        // Kill somewhere between just after start and well into steady writing.
        let wait = Duration::from_millis(rng.random_range(50..600));
        std::thread::sleep(wait);
        // SAFETY-free: kill(2) through the standard library sends SIGKILL on Unix.
        child.kill().expect("SIGKILL the writer");
        let status = child.wait().expect("reap the writer");
        assert!(!status.success(), "the writer must have died of the signal");
        let acked = reader.join().expect("reader thread");
        total_acked += acked.len();

        let store = LocalStore::open(dir.path(), LocalOptions::default())
            .unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        let present: BTreeSet<Vec<u8>> = store
            .range(
                KeyRange::prefix("ack/"),
                RangeOptions {
                    keys_only: true,
                    ..Default::default()
                },
            )
            .await
            .expect("range")
            .kvs
            .into_iter()
            .map(|kv| kv.key)
            .collect();
        let lost: Vec<&String> = acked
            .iter()
            .filter(|k| !present.contains(k.as_bytes()))
            .collect();
        assert!(
            lost.is_empty(),
            "round {round} (killed after {wait:?}): {} of {} acknowledged writes lost, e.g. {:?}",
            lost.len(),
            acked.len(),
            lost.first()
        );
        drop(store);
    }
    // The kills must have landed while writes were being acknowledged, or nothing was tested.
    assert!(
        total_acked > 100,
        "only {total_acked} writes were acknowledged in {ROUNDS} rounds"
    );
}

/// A write-ahead log damaged before its last record makes the open fail, naming the file,
/// instead of silently dropping acknowledged writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_write_ahead_log_fails_the_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(tug_bin!())
        .args(["debug", "ack-writer", "--writers", "4"])
        .args(["--checkpoint-bytes", "1073741824", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the writer");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    for _ in 0..500 {
        lines.next();
    }
    child.kill().expect("SIGKILL the writer");
    let _ = child.wait();
    let segment = std::fs::read_dir(dir.path())
        .expect("ls")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("wal-"))
        .expect("a log segment");
    let mut bytes = std::fs::read(&segment).expect("read log");
    assert!(bytes.len() > 10_000, "the log holds the writes");
    let at = bytes.len() / 3;
    bytes[at] ^= 0xff;
    std::fs::write(&segment, &bytes).expect("write log");
    let err = LocalStore::open(dir.path(), LocalOptions::default())
        .err()
        .expect("a damaged log must fail the open");
    let name = segment
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(err.to_string().contains(&name), "{err}");
}
