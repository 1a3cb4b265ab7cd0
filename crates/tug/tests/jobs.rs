//! Job deadlines and clean-up on hollow nodes (which finish a run-to-completion pod after 1 s).

use tug_testkit::kubectl::{apply, eventually, kubectl, ok};
use tug_testkit::server::TugServer;
use tug_testkit::tug_bin;

#[test]
fn jobs_fail_past_their_deadline_and_are_deleted_after_their_ttl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        tug_bin!(),
        &dir.path().join("data"),
        &["--simulated-nodes", "2"],
    );
    // 50 completions one at a time take ~50 s; the deadline is 3 s.
    apply(
        &s,
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: slow}\nspec:\n  completions: 50\n  parallelism: 1\n  activeDeadlineSeconds: 3\n  template:\n    spec: {restartPolicy: Never, containers: [{name: c, image: busybox}]}\n",
    );
    let reason = || {
        ok(
            &s,
            &[
                "get",
                "job",
                "slow",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Failed\")].reason}",
            ],
        )
    };
    eventually("the job fails with DeadlineExceeded", || {
        reason() == "DeadlineExceeded"
    });
    eventually("its running pod is stopped", || {
        ok(
            &s,
            &[
                "get",
                "pods",
                "-l",
                "job-name=slow",
                "--field-selector=status.phase=Running",
                "-o",
                "name",
            ],
        )
        .is_empty()
    });

    apply(
        &s,
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: brief}\nspec:\n  ttlSecondsAfterFinished: 1\n  template:\n    spec: {restartPolicy: Never, containers: [{name: c, image: busybox}]}\n",
    );
    eventually("the finished job is deleted", || {
        !kubectl(&s, &["get", "job", "brief"], None).status.success()
    });
    eventually("and its pods with it", || {
        ok(&s, &["get", "pods", "-l", "job-name=brief", "-o", "name"]).is_empty()
    });
}

#[test]
fn an_indexed_job_runs_each_index_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        tug_bin!(),
        &dir.path().join("data"),
        &["--simulated-nodes", "2"],
    );
    apply(
        &s,
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: shards}\nspec:\n  completions: 4\n  parallelism: 2\n  completionMode: Indexed\n  template:\n    spec: {restartPolicy: Never, containers: [{name: c, image: busybox}]}\n",
    );
    eventually("the job completes every index", || {
        ok(
            &s,
            &[
                "get",
                "job",
                "shards",
                "-o",
                "jsonpath={.status.completedIndexes}/{.status.succeeded}",
            ],
        ) == "0-3/4"
    });
    let mut hosts: Vec<String> = ok(
        &s,
        &[
            "get",
            "pods",
            "-l",
            "job-name=shards",
            "-o",
            "jsonpath={.items[*].spec.hostname}",
        ],
    )
    .split_whitespace()
    .map(str::to_string)
    .collect();
    hosts.sort();
    assert_eq!(hosts, ["shards-0", "shards-1", "shards-2", "shards-3"]);
    let env = ok(
        &s,
        &[
            "get",
            "pods",
            "-l",
            "batch.kubernetes.io/job-completion-index=2",
            "-o",
            "jsonpath={.items[0].spec.containers[0].env[0].name}",
        ],
    );
    assert_eq!(env, "JOB_COMPLETION_INDEX");
}

/// Fails a running pod with an exit code, as a kubelet would report it.
fn fail_pod(s: &TugServer, pod: &str, code: i32) {
    let patch = format!(
        r#"{{"status":{{"phase":"Failed","containerStatuses":[{{"name":"c","image":"busybox","imageID":"","ready":false,"restartCount":0,"state":{{"terminated":{{"exitCode":{code}}}}}}}]}}}}"#
    );
    ok(
        s,
        &[
            "patch",
            "pod",
            pod,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ],
    );
}

#[test]
fn a_pod_failure_policy_ignores_some_exit_codes_and_fails_the_job_on_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(
        tug_bin!(),
        &dir.path().join("data"),
        &["--simulated-nodes", "2", "--simulated-pod-seconds", "600"],
    );
    apply(
        &s,
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: picky}\nspec:\n  completions: 3\n  backoffLimit: 0\n  podFailurePolicy:\n    rules:\n    - {action: Ignore, onExitCodes: {operator: In, values: [1]}}\n    - {action: FailJob, onExitCodes: {operator: In, values: [42]}}\n  template:\n    spec: {restartPolicy: Never, containers: [{name: c, image: busybox}]}\n",
    );
    let running = || {
        ok(
            &s,
            &[
                "get",
                "pods",
                "-l",
                "job-name=picky",
                "--field-selector=status.phase=Running",
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ],
        )
    };
    eventually("a running pod", || !running().is_empty());
    let first = running();
    fail_pod(&s, &first, 1);
    // Exit code 1 is ignored: within backoffLimit 0, the job goes on with a new pod.
    eventually("a second pod runs", || {
        let r = running();
        !r.is_empty() && r != first
    });
    let state = ok(
        &s,
        &[
            "get",
            "job",
            "picky",
            "-o",
            "jsonpath={.status.failed}|{.status.conditions[*].type}",
        ],
    );
    assert!(
        state == "0|" || state == "|",
        "an ignored failure counted: {state}"
    );
    let second = running();
    fail_pod(&s, &second, 42);
    eventually("the job fails by its policy", || {
        ok(
            &s,
            &[
                "get",
                "job",
                "picky",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Failed\")].reason}",
            ],
        ) == "PodFailurePolicy"
    });
    let message = ok(
        &s,
        &[
            "get",
            "job",
            "picky",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Failed\")].message}",
        ],
    );
    assert!(
        message.contains("failed with exit code 42 matching FailJob rule at index 1"),
        "{message}"
    );
}

#[test]
fn a_suspended_job_runs_nothing_until_resumed_and_suspending_stops_its_pods() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Pods run for a minute: long enough to be running when the Job is suspended again.
    let s = TugServer::start_with(
        tug_bin!(),
        &dir.path().join("data"),
        &["--simulated-nodes", "2", "--simulated-pod-seconds", "60"],
    );
    apply(
        &s,
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: later}\nspec:\n  suspend: true\n  completions: 4\n  parallelism: 2\n  template:\n    spec: {restartPolicy: Never, containers: [{name: c, image: busybox}]}\n",
    );
    let condition = |field: &str| {
        ok(
            &s,
            &[
                "get",
                "job",
                "later",
                "-o",
                &format!("jsonpath={{.status.conditions[?(@.type==\"Suspended\")].{field}}}"),
            ],
        )
    };
    let pods = || {
        ok(
            &s,
            &[
                "get",
                "pods",
                "-l",
                "job-name=later",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
            ],
        )
    };
    let live = || {
        pods()
            .lines()
            .filter(|l| l.split_whitespace().count() == 1)
            .count()
    };
    eventually("the Suspended condition", || {
        condition("status") == "True" && condition("reason") == "JobSuspended"
    });
    assert_eq!(pods(), "", "a suspended Job created pods");
    assert_eq!(
        ok(
            &s,
            &["get", "job", "later", "-o", "jsonpath={.status.startTime}"]
        ),
        "",
        "a Job suspended from the start has not started"
    );
    ok(
        &s,
        &[
            "patch",
            "job",
            "later",
            "--type=merge",
            "-p",
            r#"{"spec":{"suspend":false}}"#,
        ],
    );
    eventually("two pods once resumed", || live() == 2);
    eventually("the Resumed condition", || {
        condition("status") == "False" && condition("reason") == "JobResumed"
    });
    assert!(
        !ok(
            &s,
            &["get", "job", "later", "-o", "jsonpath={.status.startTime}"]
        )
        .is_empty()
    );
    ok(
        &s,
        &[
            "patch",
            "job",
            "later",
            "--type=merge",
            "-p",
            r#"{"spec":{"suspend":true}}"#,
        ],
    );
    eventually("its pods stopped when suspended again", || live() == 0);
    eventually("suspended again", || {
        condition("status") == "True"
            && ok(
                &s,
                &["get", "job", "later", "-o", "jsonpath={.status.active}"],
            ) == "0"
    });
    let events = ok(
        &s,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=later",
        ],
    );
    assert!(
        events.contains("Job suspended") && events.contains("Job resumed"),
        "{events}"
    );
}
