//! The official Python client (kubernetes 37.x) against `tug server`.

use std::path::{Path, PathBuf};
use std::process::Command;

use tug_testkit::server::TugServer;
use tug_testkit::tug_bin;

fn python() -> PathBuf {
    let p = std::env::var_os("TUG_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/tug-clients/bin/python"));
    assert!(
        p.exists(),
        "{} not found: run scripts/test.sh, which installs the Python client",
        p.display()
    );
    p
}

#[test]
fn python_client_pages_watches_and_relists_after_410() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        tug_bin!(),
        &dir.path().join("data"),
        &["--etcd-compaction-interval", "1"],
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/client.py");
    let out = Command::new(python())
        .arg(&script)
        .env("KUBECONFIG", &s.kubeconfig)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("python client: ok"));
}

#[test]
fn python_typed_models_decode_what_create_and_delete_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(tug_bin!(), &dir.path().join("data"), &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/typed.py");
    let out = Command::new(python())
        .arg(&script)
        .env("KUBECONFIG", &s.kubeconfig)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("python typed models: ok"));
}
