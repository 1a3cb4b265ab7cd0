//! PodDisruptionBudgets and the eviction API, driven by `kubectl drain`.

use tug_testkit::kubectl::{apply, eventually, kubectl, ok};
use tug_testkit::server::TugServer;
use tug_testkit::tug_bin;

fn nodes_of_web(s: &TugServer) -> Vec<String> {
    ok(
        s,
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={range .items[*]}{.spec.nodeName}{\"\\n\"}{end}",
        ],
    )
    .lines()
    .map(str::to_string)
    .collect()
}

#[test]
fn drain_evicts_within_the_disruption_budget_and_stops_at_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        tug_bin!(),
        &dir.path().join("data"),
        &["--simulated-nodes", "3"],
    );
    apply(
        &s,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: httpd}]}\n---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web}\nspec:\n  minAvailable: 2\n  selector: {matchLabels: {app: web}}\n",
    );
    ok(&s, &["rollout", "status", "deploy/web", "--timeout=60s"]);
    let allowed = || {
        ok(
            &s,
            &[
                "get",
                "pdb",
                "web",
                "-o",
                "jsonpath={.status.disruptionsAllowed}",
            ],
        )
    };
    eventually("the budget allows one disruption", || allowed() == "1");
    assert_eq!(
        ok(
            &s,
            &[
                "get",
                "pdb",
                "web",
                "-o",
                "jsonpath={.status.currentHealthy}/{.status.desiredHealthy}/{.status.expectedPods}"
            ]
        ),
        "3/2/3"
    );

    // Draining a node evicts its pods one budget-permitted disruption at a time.
    let drained = nodes_of_web(&s)[0].clone();
    ok(
        &s,
        &["drain", &drained, "--ignore-daemonsets", "--timeout=60s"],
    );
    assert!(
        ok(
            &s,
            &[
                "get",
                "node",
                &drained,
                "-o",
                "jsonpath={.spec.unschedulable}"
            ]
        ) == "true",
        "drain cordons"
    );
    eventually("three web pods ready, none on the drained node", || {
        let nodes = nodes_of_web(&s);
        nodes.len() == 3
            && !nodes.contains(&drained)
            && ok(
                &s,
                &[
                    "get",
                    "deploy",
                    "web",
                    "-o",
                    "jsonpath={.status.readyReplicas}",
                ],
            ) == "3"
    });

    // A budget that allows nothing stops the drain with the budget's reason.
    ok(
        &s,
        &[
            "patch",
            "pdb",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"minAvailable":3}}"#,
        ],
    );
    eventually("the budget allows none", || allowed() == "0");
    let target = nodes_of_web(&s)[0].clone();
    let o = kubectl(
        &s,
        &["drain", &target, "--ignore-daemonsets", "--timeout=5s"],
        None,
    );
    assert!(
        !o.status.success(),
        "drain went through a budget that allows nothing"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{err}"
    );
    assert!(
        nodes_of_web(&s).contains(&target),
        "a pod was evicted anyway"
    );
}
