//! `tug server` on the embedded store: starts, reports ready, serves snapshot requests, stops
//! cleanly on SIGINT; a bad `--datastore` is refused with a clear message.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tug_testkit::tug_bin;

#[test]
fn server_starts_serves_a_snapshot_and_stops_on_sigint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let started = Instant::now();
    let mut server = Command::new(tug_bin!())
        .args(["server", "--data-dir"])
        .arg(&data)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tug server");
    let mut log = BufReader::new(server.stderr.take().expect("stderr")).lines();
    loop {
        match log.next() {
            Some(Ok(line)) if line.contains("store ready") => break,
            Some(Ok(_)) => continue,
            _ => panic!("tug server exited before it was ready"),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    // Keep reading the log: a server writing into a full pipe would block.
    std::thread::spawn(move || log.for_each(drop));
    // The store is locked by the server; the snapshot goes through its socket.
    let snap = dir.path().join("s.snap");
    let save = Command::new(tug_bin!())
        .args(["snapshot", "save"])
        .arg(&snap)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .expect("run snapshot save");
    assert!(
        save.status.success(),
        "{}",
        String::from_utf8_lossy(&save.stderr)
    );
    assert!(snap.exists());

    let pid = server.id().to_string();
    let sent = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill -INT");
    assert!(sent.success());
    let status = server.wait().expect("wait for tug server");
    assert!(
        status.success(),
        "tug server should exit 0 on SIGINT: {status}"
    );
    assert!(
        !data.join("snapshot.sock").exists(),
        "the socket is removed on exit"
    );
    // Its built-in agent made the default pod network: leave the host as it was.
    tug_testkit::server::remove_pod_network("tug0", Some("10.244.0.0/16"));
    let _ = Command::new("ip")
        .args(["route", "del", "blackhole", "10.96.0.0/12"])
        .stderr(Stdio::null())
        .status();
}

#[test]
fn unknown_datastore_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(tug_bin!())
        .args(["server", "--datastore", "postgres://x", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run tug server");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown --datastore"), "{err}");
}
