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
