//! The audit log (`--audit-policy-file`, `--audit-log-path`): a create, a denied request and a
//! secret read each appear with the level the policy gives them, the user and the response
//! code; a secret's data never reaches the log.

use serde_json::Value;
use tug_testkit::kubectl::{eventually, kubectl_with_token, ok};
use tug_testkit::server::TugServer;
use tug_testkit::tug_bin;

const POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  nonResourceURLs: ["/healthz*", "/livez*", "/readyz*", "/version", "/openapi*", "/api", "/api/*", "/apis", "/apis/*"]
- level: Metadata
  resources: [{group: "", resources: [secrets]}]
- level: RequestResponse
  resources: [{group: "", resources: [configmaps]}]
- level: Metadata
"#;

const SECRET: &str = "do-not-log-this-value";

fn events(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn creates_denials_and_secret_reads_are_recorded_at_their_levels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    let log = dir.path().join("audit/audit.log");
    std::fs::write(&policy, POLICY).expect("write policy");
    let s = TugServer::start_with(
        tug_bin!(),
        &dir.path().join("data"),
        &[
            "--audit-policy-file",
            policy.to_str().expect("utf-8"),
            "--audit-log-path",
            log.to_str().expect("utf-8"),
        ],
    );
    ok(
        &s,
        &[
            "create",
            "configmap",
            "settings",
            "--from-literal=mode=fast",
        ],
    );
    ok(
        &s,
        &[
            "create",
            "secret",
            "generic",
            "hidden",
            &format!("--from-literal=password={SECRET}"),
        ],
    );
    ok(&s, &["get", "secret", "hidden", "-o", "yaml"]);
    ok(&s, &["create", "serviceaccount", "nosy"]);
    let token = ok(&s, &["create", "token", "nosy"]).trim().to_string();
    let denied = kubectl_with_token(&s, &token, &["get", "pods"]);
    assert!(!denied.status.success());

    let find = |pred: &dyn Fn(&Value) -> bool| -> Option<Value> {
        events(&log).into_iter().find(|e| pred(e))
    };
    eventually("the denied list is recorded", || {
        find(&|e| e["responseStatus"]["code"] == 403).is_some()
    });
    let create = find(&|e| e["verb"] == "create" && e["objectRef"]["name"] == "settings")
        .expect("the configmap create");
    assert_eq!(create["level"], "RequestResponse");
    assert_eq!(create["stage"], "ResponseComplete");
    assert_eq!(create["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(create["kind"], "Event");
    assert_eq!(create["responseStatus"]["code"], 201);
    assert_eq!(create["objectRef"]["namespace"], "default");
    assert_eq!(create["objectRef"]["resource"], "configmaps");
    assert_eq!(create["requestObject"]["data"]["mode"], "fast");
    assert_eq!(create["responseObject"]["metadata"]["name"], "settings");
    assert_eq!(
        create["annotations"]["authorization.k8s.io/decision"],
        "allow"
    );
    assert!(
        create["user"]["groups"]
            .as_array()
            .is_some_and(|g| g.iter().any(|g| g == "system:masters"))
    );
    assert!(create["auditID"].as_str().is_some_and(|id| id.len() == 36));

    let read = find(&|e| e["verb"] == "get" && e["objectRef"]["name"] == "hidden")
        .expect("the secret read");
    assert_eq!(read["level"], "Metadata");
    assert_eq!(read["responseStatus"]["code"], 200);
    assert_eq!(read["objectRef"]["name"], "hidden");
    assert!(read.get("responseObject").is_none() && read.get("requestObject").is_none());

    let denied = find(&|e| e["responseStatus"]["code"] == 403).expect("the denial");
    assert_eq!(
        denied["user"]["username"],
        "system:serviceaccount:default:nosy"
    );
    assert_eq!(denied["verb"], "list");
    assert_eq!(denied["level"], "Metadata");
    assert_eq!(
        denied["annotations"]["authorization.k8s.io/decision"],
        "forbid"
    );

    // RequestReceived is omitted; health checks and discovery are not recorded.
    assert!(find(&|e| e["stage"] == "RequestReceived").is_none());
    assert!(find(&|e| e["requestURI"] == "/api").is_none());
    let text = std::fs::read_to_string(&log).expect("log");
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(SECRET);
    assert!(
        !text.contains(SECRET) && !text.contains(&encoded),
        "a secret's data is in the audit log"
    );
}

/// Every in-process component calls the API as its own identity, and the bootstrap policy
/// (with tugboat's supplements) lets each do its work: the audit log shows the scheduler, the
/// controllers' service accounts and the node controller at work, and never refused.
#[test]
fn components_act_as_their_own_identities_and_are_never_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    let log = dir.path().join("audit.log");
    std::fs::write(
        &policy,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n",
    )
    .expect("write policy");
    let s = TugServer::start_with(
        tug_bin!(),
        &dir.path().join("data"),
        &[
            "--simulated-nodes",
            "2",
            "--audit-policy-file",
            policy.to_str().expect("utf-8"),
            "--audit-log-path",
            log.to_str().expect("utf-8"),
        ],
    );
    ok(&s, &["create", "namespace", "work"]);
    ok(
        &s,
        &[
            "create",
            "deployment",
            "web",
            "--image=busybox",
            "--replicas=2",
            "-n",
            "work",
        ],
    );
    ok(
        &s,
        &["expose", "deployment", "web", "--port=80", "-n", "work"],
    );
    ok(
        &s,
        &["create", "job", "once", "--image=busybox", "-n", "work"],
    );
    ok(
        &s,
        &[
            "create",
            "cronjob",
            "tick",
            "--image=busybox",
            "--schedule=* * * * *",
            "-n",
            "work",
        ],
    );
    ok(
        &s,
        &[
            "create",
            "poddisruptionbudget",
            "web",
            "--selector=app=web",
            "--min-available=1",
            "-n",
            "work",
        ],
    );
    ok(
        &s,
        &["create", "quota", "q", "--hard=pods=20", "-n", "work"],
    );
    eventually("the deployment to be available", || {
        ok(
            &s,
            &[
                "get",
                "deployment",
                "web",
                "-n",
                "work",
                "-o",
                "jsonpath={.status.availableReplicas}",
            ],
        ) == "2"
    });
    eventually("the job to complete", || {
        ok(
            &s,
            &[
                "get",
                "job",
                "once",
                "-n",
                "work",
                "-o",
                "jsonpath={.status.succeeded}",
            ],
        ) == "1"
    });
    eventually("the quota to count the pods", || {
        !ok(
            &s,
            &[
                "get",
                "quota",
                "q",
                "-n",
                "work",
                "-o",
                "jsonpath={.status.used.pods}",
            ],
        )
        .is_empty()
    });
    eventually("the budget's status", || {
        !ok(
            &s,
            &[
                "get",
                "pdb",
                "web",
                "-n",
                "work",
                "-o",
                "jsonpath={.status.currentHealthy}",
            ],
        )
        .is_empty()
    });
    let all = events(&log);
    let by = |user: &str, verb: &str, resource: &str| {
        all.iter().any(|e| {
            e["user"]["username"] == user
                && e["verb"] == verb
                && e["objectRef"]["resource"] == resource
                && e["responseStatus"]["code"]
                    .as_u64()
                    .is_some_and(|c| c < 300)
        })
    };
    let sa = |name: &str| format!("system:serviceaccount:kube-system:{name}");
    for (user, verb, resource) in [
        ("system:kube-scheduler".to_string(), "create", "pods"),
        (sa("deployment-controller"), "create", "replicasets"),
        (sa("replicaset-controller"), "create", "pods"),
        (sa("job-controller"), "create", "pods"),
        (sa("endpointslice-controller"), "patch", "endpointslices"),
        (
            sa("service-account-controller"),
            "create",
            "serviceaccounts",
        ),
        (sa("root-ca-cert-publisher"), "create", "configmaps"),
        (sa("node-controller"), "patch", "nodes"),
    ] {
        assert!(
            by(&user, verb, resource),
            "no {verb} of {resource} by {user} in the audit log"
        );
    }
    // The scheduler's binding is its own, not the API server's.
    assert!(
        all.iter()
            .any(|e| e["user"]["username"] == "system:kube-scheduler"
                && e["objectRef"]["subresource"] == "binding")
    );
    let refused: Vec<String> = all
        .iter()
        .filter(|e| e["responseStatus"]["code"] == 403)
        .map(|e| {
            format!(
                "{} {} {}",
                e["user"]["username"], e["verb"], e["requestURI"]
            )
        })
        .collect();
    assert!(refused.is_empty(), "components were refused: {refused:#?}");
    assert!(
        !all.iter()
            .any(|e| e["user"]["username"] == "system:apiserver"
                && e["verb"] == "create"
                && e["objectRef"]["resource"] == "replicasets"),
        "the controllers act as the API server"
    );
}
