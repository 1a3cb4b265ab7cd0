//! helm 4 against `tug server`: install a local chart, upgrade with new values, roll back,
//! uninstall.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tug_testkit::server::{TugServer, kubectl_path};
use tug_testkit::tug_bin;

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

fn run(bin: &Path, s: &TugServer, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env("KUBECONFIG", &s.kubeconfig)
        .env("HOME", &s.data_dir)
        .env("HELM_CACHE_HOME", s.data_dir.join("helm-cache"))
        .env("HELM_CONFIG_HOME", s.data_dir.join("helm-config"))
        .env("HELM_DATA_HOME", s.data_dir.join("helm-data"))
        .output()
        .expect("run")
}

fn ok(bin: &Path, s: &TugServer, args: &[&str]) -> String {
    let o = run(bin, s, args);
    assert!(
        o.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn install_upgrade_rollback_uninstall() {
    let s = TugServer::start(tug_bin!());
    let (helm, kubectl) = (helm_path(), kubectl_path());
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/charts/demo");
    let chart = chart.to_str().expect("utf-8 path");
    let get = |jsonpath: &str, what: &str| {
        ok(
            &kubectl,
            &s,
            &["get", what, "-o", &format!("jsonpath={jsonpath}")],
        )
    };

    let installed = ok(&helm, &s, &["install", "demo", chart]);
    assert!(installed.contains("STATUS: deployed"), "{installed}");
    assert_eq!(get("{.data.greeting}", "cm/demo-config"), "hello");
    assert_eq!(get("{.spec.replicas}", "deploy/demo-web"), "1");
    assert_eq!(get("{.spec.ports[0].port}", "svc/demo-svc"), "80");

    ok(
        &helm,
        &s,
        &[
            "upgrade",
            "demo",
            chart,
            "--set",
            "greeting=bye",
            "--set",
            "replicas=3",
        ],
    );
    assert_eq!(get("{.data.greeting}", "cm/demo-config"), "bye");
    assert_eq!(get("{.spec.replicas}", "deploy/demo-web"), "3");

    // An upgrade that no longer renders a field removes it (helm 4 applies server-side).
    ok(
        &helm,
        &s,
        &[
            "upgrade",
            "demo",
            chart,
            "--set",
            "greeting=bye",
            "--set",
            "replicas=3",
            "--set",
            "extra=true",
        ],
    );
    assert_eq!(get("{.data.extra}", "cm/demo-config"), "present");
    ok(
        &helm,
        &s,
        &[
            "upgrade",
            "demo",
            chart,
            "--set",
            "greeting=bye",
            "--set",
            "replicas=3",
        ],
    );
    assert_eq!(
        get("{.data.extra}", "cm/demo-config"),
        "",
        "the key the chart stopped rendering is gone"
    );

    ok(&helm, &s, &["rollback", "demo", "1"]);
    assert_eq!(get("{.data.greeting}", "cm/demo-config"), "hello");
    assert_eq!(get("{.spec.replicas}", "deploy/demo-web"), "1");
    let list = ok(&helm, &s, &["list"]);
    assert!(list.contains("demo") && list.contains("deployed"), "{list}");
    let history = ok(&helm, &s, &["history", "demo"]);
    assert_eq!(
        history.lines().count(),
        6,
        "five revisions and a header: {history}"
    );

    ok(&helm, &s, &["uninstall", "demo"]);
    let left = ok(&kubectl, &s, &["get", "cm,deploy,svc,secret", "-o", "name"]);
    assert!(
        !left.contains("demo"),
        "uninstall removes everything, release secrets too: {left}"
    );
}
