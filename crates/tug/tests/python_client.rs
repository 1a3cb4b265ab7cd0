//! The official Python client (kubernetes 37.x) against `tug server`.

use std::path::Path;

use tug_testkit::server::{TugServer, run_python};
use tug_testkit::tug_bin;

/// Runs `tests/python/SCRIPT` against `s`; it must succeed and print `done`.
fn script_passes(s: &TugServer, script: &str, done: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let out = run_python(&script, &s.kubeconfig, &[]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(done));
}

#[test]
fn python_client_pages_watches_and_relists_after_410() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        tug_bin!(),
        &dir.path().join("data"),
        &["--etcd-compaction-interval", "1"],
    );
    script_passes(&s, "client.py", "python client: ok");
}

#[test]
fn python_typed_models_decode_what_create_and_delete_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(tug_bin!(), &dir.path().join("data"), &[]);
    script_passes(&s, "typed.py", "python typed models: ok");
}

#[test]
fn python_dynamic_client_works_with_a_custom_resource() {
    let s = TugServer::start(tug_bin!());
    script_passes(&s, "dynamic.py", "python dynamic client: ok");
}
