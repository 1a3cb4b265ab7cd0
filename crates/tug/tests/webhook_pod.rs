//! A validating webhook served from a pod on a `tug up` cluster (acceptance 1 of the
//! admission issue): the webhook is this very test binary, started inside the pod (from the
//! host's file system, mounted read-only) in its serving role, behind a Service the API server
//! resolves through its EndpointSlice. It refuses ConfigMaps labelled `team=blocked` with its
//! message; stopped, it lets writes through under `failurePolicy: Ignore` and refuses them
//! under `Fail` in about `timeoutSeconds`.
//!
//! The target has no test harness (`harness = false`): its `main` is the test, unless the
//! environment says to serve.

use std::time::{Duration, Instant};

use serde_json::json;
use tug_testkit::tug_bin;
use tug_testkit::up::LocalCluster;
use tug_testkit::webhook::{Reply, Server, certificate, review_response};

const IMAGE: &str = "docker.io/library/busybox:test";
const SERVE: &str = "TUG_TEST_WEBHOOK_SERVE";

fn main() {
    if std::env::var_os(SERVE).is_some() {
        serve();
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        // `cargo test -- --list` asks every target for its tests.
        println!("webhook_in_a_pod: test");
        return;
    }
    webhook_in_a_pod();
    println!("test webhook_in_a_pod ... ok");
}

/// The serving role: the certificate from the environment, port 8443, for ever.
fn serve() {
    let cert = std::env::var("TUG_TEST_WEBHOOK_CERT").unwrap_or_default();
    let key = std::env::var("TUG_TEST_WEBHOOK_KEY").unwrap_or_default();
    let _server = Server::start_with_certificate("0.0.0.0:8443", &cert, &key, |r| {
        let review = r.json();
        let team = review.pointer("/request/object/metadata/labels/team");
        if team == Some(&json!("slow")) {
            return Reply::Hang;
        }
        let blocked = team == Some(&json!("blocked"));
        Reply::Json(review_response(
            &review,
            !blocked,
            json!({"status": {"code": 403, "message": "configmaps of team blocked are refused by the in-cluster webhook"}}),
        ))
    });
    eprintln!("webhook serving on :8443");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn webhook_in_a_pod() {
    let tmp = tempfile::tempdir().expect("tmp");
    let archive = tug_testkit::image::busybox_archive(tmp.path(), IMAGE);
    let c = LocalCluster::start(tug_bin!(), 1, &[archive]);
    let (cert, key) = certificate(&["policy.default.svc"]);
    let exe = std::env::current_exe().expect("test executable");
    let exe = exe.to_str().expect("path");
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "policy", "labels": {"app": "policy"}},
        "spec": {
            "containers": [{"name": "webhook", "image": IMAGE,
                "command": ["/host/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "--library-path",
                    "/host/usr/lib/x86_64-linux-gnu",
                    format!("/host{exe}")],
                "env": [{"name": SERVE, "value": "1"},
                    {"name": "TUG_TEST_WEBHOOK_CERT", "value": cert},
                    {"name": "TUG_TEST_WEBHOOK_KEY", "value": key}],
                "ports": [{"containerPort": 8443, "name": "https"}],
                "volumeMounts": [{"name": "host", "mountPath": "/host", "readOnly": true}]}],
            "volumes": [{"name": "host", "hostPath": {"path": "/"}}]}});
    let service = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "policy"},
        "spec": {"selector": {"app": "policy"}, "ports": [{"port": 443, "targetPort": "https"}]}});
    c.apply(&pod.to_string());
    c.apply(&service.to_string());
    c.wait_running("policy");
    let config = |policy: &str| {
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "in-cluster"},
            "webhooks": [{"name": "policy.webhooks.example.com",
                "clientConfig": {"service": {"namespace": "default", "name": "policy", "path": "/validate"},
                    "caBundle": base64_of(&cert)},
                "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
                "failurePolicy": policy, "timeoutSeconds": 3,
                "sideEffects": "None", "admissionReviewVersions": ["v1"]}]})
        .to_string()
    };
    c.apply(&config("Fail"));
    let cm = |name: &str, team: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"team": team}}})
            .to_string()
    };
    let create = |name: &str, team: &str| {
        let o = c.kubectl(&["create", "-f", "-"], Some(&cm(name, team)));
        (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    };
    // The webhook answers from the pod once its endpoint is ready.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    loop {
        n += 1;
        let (created, out) = create(&format!("probe-{n}"), "blocked");
        if !created && out.contains("refused by the in-cluster webhook") {
            assert!(
                out.contains("admission webhook \"policy.webhooks.example.com\" denied the request: configmaps of team blocked are refused by the in-cluster webhook"),
                "{out}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the in-cluster webhook never answered: {out}\n{}\n{}\n{}",
            c.ok(&["get", "endpointslices", "-o", "yaml"]),
            String::from_utf8_lossy(&c.kubectl(&["logs", "policy"], None).stderr),
            String::from_utf8_lossy(&c.kubectl(&["logs", "policy"], None).stdout),
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let (created, out) = create("allowed", "ok");
    assert!(created, "{out}");

    // A webhook that hangs costs its timeout: Fail refuses in about timeoutSeconds.
    let started = Instant::now();
    let (created, out) = create("slow", "slow");
    let took = started.elapsed();
    assert!(!created, "a hanging webhook let a write through");
    assert!(
        out.contains("failed calling webhook \"policy.webhooks.example.com\"")
            && out.contains("context deadline exceeded"),
        "{out}"
    );
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(10),
        "a 3 s timeout took {took:?}"
    );

    // The webhook's pod gone: Ignore lets writes through, Fail refuses them.
    c.ok(&["delete", "pod", "policy", "--grace-period=0", "--force"]);
    c.apply(&config("Ignore"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    loop {
        n += 1;
        let (created, out) = create(&format!("ignored-{n}"), "blocked");
        if created {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Ignore never let a write through: {out}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    c.apply(&config("Fail"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    loop {
        n += 1;
        let (created, out) = create(&format!("refused-{n}"), "ok");
        if !created {
            assert!(
                out.contains("failed calling webhook \"policy.webhooks.example.com\": failed to call webhook: no endpoints available for service \"policy\""),
                "{out}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Fail never refused a write with the webhook gone"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}
