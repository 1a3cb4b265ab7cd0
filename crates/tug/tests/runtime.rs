//! The native runtime through the `tug` binary: images imported from an archive, containers
//! run in namespaces under cgroups with an overlayfs root. Needs root (CI is root).

use std::path::Path;
use std::process::Command;
use tug_testkit::tug_bin;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(tug_bin!())
        .args(args)
        .output()
        .expect("run tug");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// A data dir with the busybox test image imported as `IMAGE`.
fn with_image() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    let archive = tug_testkit::image::busybox_archive(dir.path(), IMAGE);
    let data = dir.path().join("agent");
    let (ok, out, err) = run(&[
        "image",
        "import",
        archive.to_str().expect("path"),
        "--data-dir",
        data.to_str().expect("path"),
    ]);
    assert!(ok, "import failed: {out}{err}");
    assert!(out.contains(IMAGE), "{out}");
    dir
}

const IMAGE: &str = "docker.io/library/busybox:test";

fn run_container(dir: &Path, extra: &[&str]) -> (String, serde_json::Value) {
    let data = dir.join("agent");
    let mut args = vec![
        "debug",
        "run-container",
        "--data-dir",
        data.to_str().expect("path"),
        "--image",
        "busybox:test",
    ];
    args.extend_from_slice(extra);
    let (ok, out, err) = run(&args);
    assert!(ok, "run-container failed: {out}{err}");
    let (log, exit) = out
        .trim_end()
        .rsplit_once('\n')
        .unwrap_or(("", out.trim_end()));
    (
        log.to_string(),
        serde_json::from_str(exit).unwrap_or_else(|e| panic!("exit record {exit:?}: {e}")),
    )
}

#[test]
fn an_imported_image_runs_a_container_in_its_own_namespaces() {
    let dir = with_image();
    let (ok, out, _) = run(&[
        "image",
        "ls",
        "--data-dir",
        dir.path().join("agent").to_str().expect("path"),
    ]);
    assert!(ok && out.contains(IMAGE), "{out}");
    let (log, exit) = run_container(
        dir.path(),
        &[
            "--",
            "sh",
            "-c",
            "echo hi; echo pid=$$; hostname; ls /; echo oops >&2; exit 3",
        ],
    );
    assert_eq!(exit["exitCode"], 3, "{log}");
    assert_eq!(exit["reason"], "Error");
    assert!(log.contains("hi\n"), "{log}");
    assert!(log.contains("pid=1\n"), "its own pid namespace: {log}");
    assert!(log.contains("debug\n"), "the sandbox's hostname: {log}");
    assert!(log.contains("oops"), "stderr is logged: {log}");
    assert!(log.contains("bin"), "the image's root: {log}");
}

#[test]
fn a_missing_executable_is_a_start_error() {
    let dir = with_image();
    let data = dir.path().join("agent");
    let (ok, out, err) = run(&[
        "debug",
        "run-container",
        "--data-dir",
        data.to_str().expect("path"),
        "--image",
        "busybox:test",
        "--",
        "no-such-binary",
    ]);
    assert!(!ok, "{out}");
    assert!(err.contains("executable file not found in $PATH"), "{err}");
}

#[test]
fn a_user_and_a_memory_limit_apply() {
    let dir = with_image();
    let (log, exit) = run_container(dir.path(), &["--uid", "65534", "--", "id", "-u"]);
    assert_eq!(exit["exitCode"], 0);
    assert_eq!(log.trim(), "65534");
    // Allocate 64 MiB under a 16 MiB limit: the kernel's OOM killer ends it.
    let (_, exit) = run_container(
        dir.path(),
        &[
            "--memory",
            "16777216",
            "--",
            "sh",
            "-c",
            "head -c 67108864 /dev/zero | tail > /dev/null",
        ],
    );
    assert_eq!(exit["reason"], "OOMKilled", "{exit}");
}
