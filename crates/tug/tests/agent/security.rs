//! Security settings: users, read-only roots, capabilities, seccomp, and the pod's process namespace.

use super::*;

#[test]
fn security_context_sets_the_user_a_read_only_root_and_capabilities() {
    let (s, _dir) = cluster();
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: secure}
spec:
  restartPolicy: Never
  securityContext: {runAsUser: 65534, runAsGroup: 65534}
  containers:
  - name: app
    image: busybox:test
    command: [sh, -c, "id -u; touch /x 2>/dev/null && echo writable || echo read-only; grep CapBnd /proc/self/status"]
    securityContext:
      readOnlyRootFilesystem: true
      allowPrivilegeEscalation: false
      capabilities: {drop: [NET_RAW]}
---
apiVersion: v1
kind: Pod
metadata: {name: plain}
spec:
  restartPolicy: Never
  containers:
  - {name: app, image: busybox:test, command: [sh, -c, "touch /x && echo writable; grep CapBnd /proc/self/status"]}
"#,
    );
    for p in ["secure", "plain"] {
        wait_phase(&s, p, "Succeeded", Duration::from_secs(60));
    }
    let secure = ok(&s, &["logs", "secure"]);
    let plain = ok(&s, &["logs", "plain"]);
    let lines: Vec<&str> = secure.lines().collect();
    assert_eq!(lines.first().copied(), Some("65534"), "{secure}");
    assert_eq!(lines.get(1).copied(), Some("read-only"), "{secure}");
    assert!(plain.starts_with("writable"), "{plain}");
    let bounding = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("CapBnd:"))
            .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
            .unwrap_or_else(|| panic!("no CapBnd in {text}"))
    };
    const NET_RAW: u64 = 1 << 13;
    assert_ne!(bounding(&plain) & NET_RAW, 0, "the default set has NET_RAW");
    assert_eq!(
        bounding(&secure) & NET_RAW,
        0,
        "a dropped capability is absent"
    );
}

#[test]
fn the_runtime_default_seccomp_profile_refuses_what_it_should() {
    let (s, _dir) = cluster();
    // unshare(2) of a user namespace needs no privilege: only the profile refuses it.
    let pod = |name: &str, profile: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: Never\n  securityContext: {{seccompProfile: {{type: {profile}}}}}\n  containers:\n  - {{name: c, image: busybox:test, command: [sh, -c, \"unshare -U true && echo allowed || echo refused\"]}}\n"
        )
    };
    apply(&s, &pod("confined", "RuntimeDefault"));
    apply(&s, &pod("unconfined", "Unconfined"));
    for p in ["confined", "unconfined"] {
        wait_phase(&s, p, "Succeeded", Duration::from_secs(60));
    }
    assert!(ok(&s, &["logs", "confined"]).contains("refused"));
    assert!(ok(&s, &["logs", "unconfined"]).contains("allowed"));
    let status = jsonpath(
        &s,
        &["pod", "confined"],
        "{.status.containerStatuses[0].state.terminated.reason}",
    );
    assert_eq!(status, "Completed");
}

#[test]
fn containers_see_each_others_processes_only_when_the_pod_shares_its_process_namespace() {
    let (s, _dir) = cluster();
    for (name, share) in [("shared", true), ("apart", false)] {
        apply(
            &s,
            &format!(
                r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  shareProcessNamespace: {share}
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: a, image: {IMAGE}, command: [tail, -f, /dev/null]}}
  - name: b
    image: {IMAGE}
    command: [sh, -c, 'sleep 1; pidof tail >/dev/null && echo sees-tail || echo no-tail; tr "\0" " " </proc/1/cmdline; echo; sleep 3600']
"#
            ),
        );
    }
    for name in ["shared", "apart"] {
        wait_phase(&s, name, "Running", Duration::from_secs(60));
        wait_until("b's report", Duration::from_secs(30), || {
            ok(&s, &["logs", name, "-c", "b"]).lines().count() >= 2
        });
    }
    let shared = ok(&s, &["logs", "shared", "-c", "b"]);
    let mut lines = shared.lines();
    assert_eq!(lines.next(), Some("sees-tail"), "{shared}");
    // Pid 1 is the pod's sandbox, as the pause container is in Kubernetes.
    assert!(
        lines.next().is_some_and(|l| l.contains("__sandbox")),
        "{shared}"
    );
    let apart = ok(&s, &["logs", "apart", "-c", "b"]);
    let mut lines = apart.lines();
    assert_eq!(lines.next(), Some("no-tail"), "{apart}");
    assert!(
        lines.next().is_some_and(|l| l.starts_with("sh -c")),
        "{apart}"
    );
}
