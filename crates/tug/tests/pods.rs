//! Pods in the API, through kubectl. Graceful deletion: a pod on a node is marked and kept for
//! its kubelet; a shorter grace period brings the deadline forward, a longer one does not; a
//! forced delete, an unscheduled pod and a finished pod go at once; finalizers still hold a
//! confirmed deletion. Updates: only images, the active deadline, new tolerations (and the
//! ephemeral containers subresource) may change a pod's spec.

use tug_testkit::kubectl::{apply, kubectl, ok};
use tug_testkit::server::TugServer;
use tug_testkit::tug_bin;

fn pod(name: &str, node: Option<&str>, extra_meta: &str) -> String {
    let node = node
        .map(|n| format!("  nodeName: {n}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}{extra_meta}}}\nspec:\n{node}  terminationGracePeriodSeconds: 40\n  containers: [{{name: c, image: busybox}}]\n"
    )
}

fn marks(s: &TugServer, name: &str) -> String {
    ok(
        s,
        &[
            "get",
            "pod",
            name,
            "-o",
            "jsonpath={.metadata.deletionGracePeriodSeconds} {.metadata.deletionTimestamp}",
        ],
    )
}

fn exists(s: &TugServer, name: &str) -> bool {
    kubectl(s, &["get", "pod", name], None).status.success()
}

#[test]
fn pods_on_nodes_are_marked_for_their_kubelet_and_others_go_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_in(tug_bin!(), &dir.path().join("data"));
    // No kubelet serves node "away": its pods stay marked until deleted for good.
    apply(&s, &pod("placed", Some("away"), ""));
    ok(&s, &["delete", "pod", "placed", "--wait=false"]);
    let first = marks(&s, "placed");
    assert!(first.starts_with("40 "), "{first}");
    let deadline = first.split(' ').nth(1).unwrap_or_default().to_string();

    ok(
        &s,
        &[
            "delete",
            "pod",
            "placed",
            "--grace-period=60",
            "--wait=false",
        ],
    );
    assert_eq!(
        marks(&s, "placed"),
        first,
        "a longer grace period changes nothing"
    );
    ok(
        &s,
        &[
            "delete",
            "pod",
            "placed",
            "--grace-period=5",
            "--wait=false",
        ],
    );
    let shorter = marks(&s, "placed");
    assert!(shorter.starts_with("5 "), "{shorter}");
    assert!(
        shorter.split(' ').nth(1).unwrap_or_default() < deadline.as_str(),
        "{shorter} vs {first}"
    );
    ok(
        &s,
        &["delete", "pod", "placed", "--force", "--grace-period=0"],
    );
    assert!(!exists(&s, "placed"));

    // Unscheduled and finished pods have nothing to stop.
    apply(&s, &pod("floating", None, ""));
    ok(&s, &["delete", "pod", "floating", "--wait=false"]);
    assert!(!exists(&s, "floating"));
    apply(&s, &pod("done", Some("away"), ""));
    ok(
        &s,
        &[
            "patch",
            "pod",
            "done",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Succeeded"}}"#,
        ],
    );
    ok(&s, &["delete", "pod", "done", "--wait=false"]);
    assert!(!exists(&s, "done"));

    // An update while the kubelet stops the pod (a status report, say) keeps it.
    apply(&s, &pod("stopping", Some("away"), ""));
    ok(&s, &["delete", "pod", "stopping", "--wait=false"]);
    ok(&s, &["label", "pod", "stopping", "seen=yes"]);
    assert!(
        exists(&s, "stopping"),
        "an update ended a graceful deletion"
    );

    // A confirmed deletion still waits for the finalizers.
    apply(
        &s,
        &pod("held", Some("away"), ", finalizers: [example.com/hold]"),
    );
    ok(&s, &["delete", "pod", "held", "--wait=false"]);
    ok(
        &s,
        &[
            "delete",
            "pod",
            "held",
            "--force",
            "--grace-period=0",
            "--wait=false",
        ],
    );
    let confirmed = marks(&s, "held");
    assert!(confirmed.starts_with("0 "), "{confirmed}");
    ok(
        &s,
        &[
            "patch",
            "pod",
            "held",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ],
    );
    assert!(!exists(&s, "held"));
}

#[test]
fn pod_updates_change_only_what_kubernetes_lets_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_in(tug_bin!(), &dir.path().join("data"));
    apply(&s, &pod("steady", None, ""));
    let patch = |p: &str| kubectl(&s, &["patch", "pod", "steady", "-p", p], None);
    let o = patch(
        r#"{"spec":{"containers":[{"name":"c","image":"busybox:2"}],"activeDeadlineSeconds":60,"tolerations":[{"key":"k","operator":"Exists"}]}}"#,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        ok(
            &s,
            &[
                "get",
                "pod",
                "steady",
                "-o",
                "jsonpath={.spec.containers[0].image} {.spec.activeDeadlineSeconds}"
            ]
        ),
        "busybox:2 60"
    );
    for forbidden in [
        r#"{"spec":{"containers":[{"name":"c","command":["sh"]}]}}"#,
        r#"{"spec":{"activeDeadlineSeconds":120}}"#,
        r#"{"spec":{"ephemeralContainers":[{"name":"e","image":"busybox"}]}}"#,
        r#"{"spec":{"restartPolicy":"Never"}}"#,
    ] {
        let o = patch(forbidden);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains("pod updates may not change fields other than"),
            "{forbidden}: {err}"
        );
    }
    // Labels and annotations are metadata, not spec.
    ok(&s, &["label", "pod", "steady", "tier=web"]);
}
