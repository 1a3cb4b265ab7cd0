//! RBAC on a `tug up` cluster with real containers: a Helm chart creates a ServiceAccount, a
//! Role and a RoleBinding, and its Job, running the real kubectl inside its pod with the pod's
//! own token through the `kubernetes` Service, reads the ConfigMaps the Role allows and is
//! refused the Secret and the other namespace.

use std::path::{Path, PathBuf};
use std::process::Command;

use tug_testkit::server::kubectl_path;
use tug_testkit::tug_bin;
use tug_testkit::up::LocalCluster;

const IMAGE: &str = "docker.io/library/busybox:test";

fn helm_path() -> PathBuf {
    let p = std::env::var_os("TUG_HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/tug-clients/bin/helm"));
    assert!(
        p.exists(),
        "helm not found at {}: run scripts/test.sh, which installs it",
        p.display()
    );
    p
}

fn helm(c: &LocalCluster, args: &[&str]) -> String {
    let home = c.dir.path().join("helm");
    let o = Command::new(helm_path())
        .args(args)
        .env("KUBECONFIG", &c.kubeconfig)
        .env("HOME", &home)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .expect("helm runs");
    assert!(
        o.status.success(),
        "helm {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_charts_job_reads_what_its_role_allows_from_inside_the_cluster() {
    let tmp = tempfile::tempdir().expect("tmp");
    let archive = tug_testkit::image::busybox_archive(tmp.path(), IMAGE);
    let c = LocalCluster::start(tug_bin!(), 2, &[archive]);
    let kubectl = std::fs::canonicalize(kubectl_path()).expect("kubectl path");
    let kubectl_dir = kubectl.parent().expect("kubectl's directory");
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/charts/reader");
    let installed = helm(
        &c,
        &[
            "install",
            "reader",
            chart.to_str().expect("utf-8 path"),
            "--set",
            &format!("kubectlDir={}", kubectl_dir.display()),
            "--set",
            &format!("image={IMAGE}"),
        ],
    );
    assert!(installed.contains("STATUS: deployed"), "{installed}");
    let done = c.kubectl(
        &[
            "wait",
            "--for=condition=Complete",
            "job/reader-check",
            "--timeout=180s",
        ],
        None,
    );
    let logs = c.kubectl(&["logs", "-l", "job-name=reader-check", "--tail=50"], None);
    assert!(
        done.status.success(),
        "the Job did not complete: {}\n{}{}\n{}",
        String::from_utf8_lossy(&done.stderr),
        String::from_utf8_lossy(&logs.stdout),
        c.ok(&["describe", "job", "reader-check"]),
        c.logs()
    );
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("all checks passed"),
        "{}",
        String::from_utf8_lossy(&logs.stdout)
    );
    helm(&c, &["uninstall", "reader", "--wait"]);
    assert!(
        c.jsonpath(&["serviceaccount", "reader-reader"], "{.metadata.name}")
            .is_empty()
    );
}
