//! ResourceQuota: creates past a namespace's limits are refused; status.used follows.

use tug_testkit::kubectl::{apply, eventually, kubectl, ok};
use tug_testkit::server::TugServer;
use tug_testkit::tug_bin;

fn pod(name: &str, cpu: Option<&str>) -> String {
    let resources = cpu
        .map(|c| format!(", resources: {{requests: {{cpu: \"{c}\"}}}}"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: q}}\nspec:\n  containers: [{{name: c, image: busybox{resources}}}]\n"
    )
}

fn refused(s: &TugServer, yaml: &str) -> String {
    let o = kubectl(s, &["apply", "-f", "-"], Some(yaml));
    assert!(!o.status.success(), "created past the quota: {yaml}");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn creates_past_a_quota_are_refused_and_usage_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_in(tug_bin!(), &dir.path().join("data"));
    ok(&s, &["create", "namespace", "q"]);
    apply(
        &s,
        "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: small, namespace: q}\nspec:\n  hard: {pods: \"2\", requests.cpu: \"1\"}\n",
    );
    apply(&s, &pod("a", Some("400m")));
    apply(&s, &pod("b", Some("400m")));
    let err = refused(&s, &pod("c", Some("100m")));
    assert!(
        err.contains("exceeded quota: small, requested: pods=1, used: pods=2, limited: pods=2"),
        "{err}"
    );
    let err = refused(&s, &pod("bare", None));
    assert!(err.contains("must specify requests.cpu for: c"), "{err}");
    eventually("status.used reports two pods and 800m", || {
        ok(
            &s,
            &[
                "get",
                "quota",
                "small",
                "-n",
                "q",
                "-o",
                "jsonpath={.status.used.pods}/{.status.used.requests\\.cpu}",
            ],
        ) == "2/800m"
    });
    ok(&s, &["delete", "pod", "a", "-n", "q"]);
    let err = refused(&s, &pod("d", Some("700m")));
    assert!(
        err.contains(
            "requested: requests.cpu=700m, used: requests.cpu=400m, limited: requests.cpu=1"
        ),
        "{err}"
    );
    apply(&s, &pod("d", Some("600m")));
    eventually("status.used follows the delete and the create", || {
        ok(
            &s,
            &[
                "get",
                "quota",
                "small",
                "-n",
                "q",
                "-o",
                "jsonpath={.status.used.pods}/{.status.used.requests\\.cpu}",
            ],
        ) == "2/1"
    });
}
