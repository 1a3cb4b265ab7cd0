//! Admission webhooks through the real kubectl, against webhook servers the test runs
//! (HTTPS on loopback, certificates handed over as `caBundle`, AdmissionReview JSON as
//! Kubernetes' documentation shows it): a validating webhook refuses with its message and
//! warns; a dead or hanging webhook is ignored or refused by its failurePolicy in about its
//! timeout and never blocks writes to webhook configurations; a mutating webhook injects a
//! sidecar into pods of a labelled namespace and an earlier webhook is reinvoked; invalid
//! configurations are refused with field paths.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tug_testkit::kubectl::{eventually_within, kubectl, ok, text};
use tug_testkit::server::{TugServer, free_port};
use tug_testkit::tug_bin;
use tug_testkit::webhook::{Reply, Server, patch_field, review_response};

/// A webhook configuration of `kind` with one webhook `name` calling `url`.
fn configuration(kind: &str, config: &str, name: &str, url: &str, ca: &str, more: Value) -> String {
    let mut hook = json!({
        "name": name,
        "clientConfig": {"url": url, "caBundle": ca},
        "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"],
            "resources": ["configmaps"]}],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    });
    if let Value::Object(m) = more {
        for (k, v) in m {
            hook[k] = v;
        }
    }
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
        "metadata": {"name": config}, "webhooks": [hook]})
    .to_string()
}

fn create_configmap(
    s: &TugServer,
    name: &str,
    labels: Value,
    extra: &[&str],
) -> std::process::Output {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}});
    let mut args = vec!["create", "-f", "-"];
    args.extend_from_slice(extra);
    kubectl(s, &args, Some(&cm.to_string()))
}

/// Applies a configuration and waits (at most 5 s: the issue asks for a second) until a
/// probe write shows it in force.
fn install(s: &TugServer, yaml: &str, in_force: impl Fn() -> bool) {
    let o = kubectl(s, &["apply", "-f", "-"], Some(yaml));
    assert!(o.status.success(), "apply: {}", text(&o));
    eventually_within(
        "the webhook configuration in force",
        Duration::from_secs(5),
        in_force,
    );
}

#[test]
fn validating_webhooks_refuse_warn_and_fail_by_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_in(tug_bin!(), &dir.path().join("data"));
    let hook = Server::start("127.0.0.1", &[], |r| {
        let review = r.json();
        let blocked =
            review.pointer("/request/object/metadata/labels/team") == Some(&json!("blocked"));
        Reply::Json(review_response(
            &review,
            !blocked,
            json!({"status": {"code": 403, "message": "team blocked may not write configmaps"},
                "warnings": ["checked by the test webhook"],
                "auditAnnotations": {"verdict": if blocked { "deny" } else { "allow" }}}),
        ))
    });
    install(
        &s,
        &configuration(
            "ValidatingWebhookConfiguration",
            "deny-blocked",
            "deny.blocked.example.com",
            &format!("{}/validate", hook.url),
            &hook.ca_bundle(),
            json!({}),
        ),
        || {
            !create_configmap(
                &s,
                &format!("probe-{}", free_port()),
                json!({"team": "blocked"}),
                &[],
            )
            .status
            .success()
        },
    );

    // A labelled ConfigMap is refused with the webhook's message and code.
    let o = create_configmap(&s, "blocked", json!({"team": "blocked"}), &[]);
    assert!(!o.status.success());
    let out = text(&o);
    assert!(
        out.contains("admission webhook \"deny.blocked.example.com\" denied the request: team blocked may not write configmaps"),
        "{out}"
    );
    assert!(
        out.contains("checked by the test webhook"),
        "denials carry warnings: {out}"
    );
    let o = kubectl(&s, &["get", "configmap", "blocked"], None);
    assert!(!o.status.success(), "a refused object is not stored");
    // The refusal is counted, and the calls timed, as kube-apiserver's metrics do.
    let metrics = ok(&s, &["get", "--raw", "/metrics"]);
    assert!(
        metrics.contains("apiserver_admission_webhook_rejection_total{error_type=\"no_error\",name=\"deny.blocked.example.com\",operation=\"CREATE\",rejection_code=\"403\",type=\"validating\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("apiserver_admission_webhook_admission_duration_seconds_count{name=\"deny.blocked.example.com\",operation=\"CREATE\",rejected=\"true\",type=\"validating\"}"),
        "{metrics}"
    );

    // Others pass, with the webhook's warning shown by kubectl.
    let o = create_configmap(&s, "fine", json!({"team": "ok"}), &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Warning: checked by the test webhook"),
        "{}",
        text(&o)
    );
    // What the webhook was sent: an AdmissionReview v1 as documented.
    let sent = hook
        .requests()
        .into_iter()
        .map(|r| r.json())
        .find(|v| v.pointer("/request/name") == Some(&json!("fine")))
        .expect("the webhook saw the create");
    let req = &sent["request"];
    assert_eq!(sent["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(sent["kind"], "AdmissionReview");
    assert_eq!(
        req["kind"],
        json!({"group": "", "version": "v1", "kind": "ConfigMap"})
    );
    assert_eq!(
        req["resource"],
        json!({"group": "", "version": "v1", "resource": "configmaps"})
    );
    assert_eq!(req["operation"], "CREATE");
    assert_eq!(req["namespace"], "default");
    assert_eq!(req["userInfo"]["username"], "admin");
    assert_eq!(req["object"]["data"]["k"], "v");
    assert_eq!(req["oldObject"], Value::Null);
    assert_eq!(req["dryRun"], false);
    assert_eq!(req["options"]["kind"], "CreateOptions");
    assert!(req["uid"].as_str().is_some_and(|u| u.len() == 36), "{req}");
    assert!(
        hook.requests()[0].path.starts_with("/validate?timeout=10s"),
        "{}",
        hook.requests()[0].path
    );
    // Updates are reviewed with the old object.
    ok(&s, &["label", "configmap", "fine", "extra=1"]);
    let update = hook
        .requests()
        .into_iter()
        .map(|r| r.json())
        .find(|v| v.pointer("/request/operation") == Some(&json!("UPDATE")))
        .expect("the webhook saw the update");
    assert_eq!(
        update["request"]["oldObject"]["metadata"]["labels"],
        json!({"team": "ok"})
    );
    assert_eq!(
        update["request"]["object"]["metadata"]["labels"]["extra"],
        "1"
    );
    // A dry run is reviewed too (sideEffects None), with dryRun set.
    let o = create_configmap(&s, "dry", json!({"team": "blocked"}), &["--dry-run=server"]);
    assert!(
        !o.status.success() && text(&o).contains("denied the request"),
        "{}",
        text(&o)
    );

    // A dead webhook: Ignore lets writes through, Fail refuses them.
    let dead = format!("https://127.0.0.1:{}/dead", free_port());
    ok(
        &s,
        &["delete", "validatingwebhookconfiguration", "deny-blocked"],
    );
    let ignore = configuration(
        "ValidatingWebhookConfiguration",
        "dead",
        "dead.example.com",
        &dead,
        &hook.ca_bundle(),
        json!({"failurePolicy": "Ignore", "timeoutSeconds": 2}),
    );
    install(&s, &ignore, || true);
    let o = create_configmap(&s, "through", json!({}), &[]);
    assert!(o.status.success(), "Ignore: {}", text(&o));
    let fail = ignore.replace("\"Ignore\"", "\"Fail\"");
    install(&s, &fail, || {
        !create_configmap(&s, &format!("probe-{}", free_port()), json!({}), &[])
            .status
            .success()
    });
    let o = create_configmap(&s, "refused", json!({}), &[]);
    let out = text(&o);
    assert!(!o.status.success(), "Fail let a write through");
    assert!(
        out.contains("Internal error occurred: failed calling webhook \"dead.example.com\": failed to call webhook: Post \"https://127.0.0.1:")
            && out.contains("connect: connection refused"),
        "{out}"
    );

    // A hanging webhook costs its timeout, and webhook configurations stay writable.
    let hang = Server::start("127.0.0.1", &[], |_| Reply::Hang);
    let hanging = configuration(
        "ValidatingWebhookConfiguration",
        "dead",
        "dead.example.com",
        &format!("{}/hang", hang.url),
        &hang.ca_bundle(),
        json!({"failurePolicy": "Fail", "timeoutSeconds": 2,
            "rules": [{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*/*"]}]}),
    );
    install(&s, &hanging, || {
        !hang.requests().is_empty() || {
            let _ = create_configmap(&s, &format!("probe-{}", free_port()), json!({}), &[]);
            !hang.requests().is_empty()
        }
    });
    let started = Instant::now();
    let o = create_configmap(&s, "slow", json!({}), &[]);
    let took = started.elapsed();
    assert!(!o.status.success());
    assert!(
        text(&o).contains("context deadline exceeded"),
        "{}",
        text(&o)
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "a 2 s webhook timeout took {took:?}"
    );
    let started = Instant::now();
    ok(&s, &["delete", "validatingwebhookconfiguration", "dead"]);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "deleting the configuration waited for the hanging webhook"
    );

    // Garbage from a webhook is a failure, named.
    let garbage = Server::start("127.0.0.1", &[], |_| {
        Reply::Raw(
            200,
            "application/json",
            "{\"response\": {\"allowed\": true}}".into(),
        )
    });
    install(
        &s,
        &configuration(
            "ValidatingWebhookConfiguration",
            "garbage",
            "garbage.example.com",
            &garbage.url,
            &garbage.ca_bundle(),
            json!({}),
        ),
        || {
            !create_configmap(&s, &format!("probe-{}", free_port()), json!({}), &[])
                .status
                .success()
        },
    );
    let out = text(&create_configmap(&s, "garbled", json!({}), &[]));
    assert!(
        out.contains("failed calling webhook \"garbage.example.com\": received invalid webhook response: expected response.uid="),
        "{out}"
    );
}

#[test]
fn mutating_webhooks_inject_a_sidecar_and_reinvoke() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_in(tug_bin!(), &dir.path().join("data"));
    // "a-env" adds an environment variable to every container lacking it.
    let env_hook = Server::start("127.0.0.1", &[], |r| {
        let review = r.json();
        let mut ops = Vec::new();
        for (i, c) in review["request"]["object"]["spec"]["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let has = c["env"]
                .as_array()
                .is_some_and(|e| e.iter().any(|v| v["name"] == "INJECTED"));
            if !has {
                if c.get("env").is_none() {
                    ops.push(json!({"op": "add", "path": format!("/spec/containers/{i}/env"), "value": []}));
                }
                ops.push(
                    json!({"op": "add", "path": format!("/spec/containers/{i}/env/-"),
                    "value": {"name": "INJECTED", "value": "1"}}),
                );
            }
        }
        let more = if ops.is_empty() {
            json!({})
        } else {
            json!({"patchType": "JSONPatch", "patch": patch_field(&json!(ops))})
        };
        Reply::Json(review_response(&review, true, more))
    });
    // "b-sidecar" adds the sidecar, in namespaces labelled inject=yes.
    let sidecar_hook = Server::start("127.0.0.1", &[], |r| {
        let review = r.json();
        let has = review["request"]["object"]["spec"]["containers"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["name"] == "sidecar"));
        let more = if has {
            json!({})
        } else {
            json!({"patchType": "JSONPatch", "patch": patch_field(&json!([{"op": "add",
                "path": "/spec/containers/-", "value": {"name": "sidecar", "image": "registry.example/sidecar:1"}}]))})
        };
        Reply::Json(review_response(&review, true, more))
    });
    let pods = json!({"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]});
    let selector = json!({"matchLabels": {"inject": "yes"}});
    for (config, name, server, more) in [
        (
            "a-env",
            "env.example.com",
            &env_hook,
            json!({"reinvocationPolicy": "IfNeeded"}),
        ),
        ("b-sidecar", "sidecar.example.com", &sidecar_hook, json!({})),
    ] {
        let mut more = more;
        more["rules"] = json!([pods]);
        more["namespaceSelector"] = selector.clone();
        let yaml = configuration(
            "MutatingWebhookConfiguration",
            config,
            name,
            &server.url,
            &server.ca_bundle(),
            more,
        );
        let o = kubectl(&s, &["apply", "-f", "-"], Some(&yaml));
        assert!(o.status.success(), "{}", text(&o));
    }
    ok(&s, &["create", "namespace", "injected"]);
    ok(&s, &["label", "namespace", "injected", "inject=yes"]);
    ok(&s, &["create", "namespace", "plain"]);
    let pod = |ns: &str, name: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"nodeName": "nowhere", "containers": [{"name": "app", "image": "registry.example/app:1"}]}})
        .to_string()
    };
    eventually_within(
        "the mutating webhooks in force",
        Duration::from_secs(5),
        || {
            let name = format!("probe-{}", free_port());
            let o = kubectl(
                &s,
                &["create", "-f", "-", "-o", "json"],
                Some(&pod("injected", &name)),
            );
            let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
            v["spec"]["containers"]
                .as_array()
                .is_some_and(|c| c.len() == 2)
        },
    );
    let o = kubectl(&s, &["create", "-f", "-"], Some(&pod("injected", "web")));
    assert!(o.status.success(), "{}", text(&o));
    let got: Value = serde_json::from_str(&ok(
        &s,
        &["get", "pod", "web", "-n", "injected", "-o", "json"],
    ))
    .expect("pod JSON");
    let containers = got["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = containers
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["app", "sidecar"], "{got}");
    // The env webhook ran before the sidecar existed, and was reinvoked for it.
    for c in &containers {
        assert!(
            c["env"]
                .as_array()
                .is_some_and(|e| e.iter().any(|v| v["name"] == "INJECTED")),
            "container {} lacks the env webhook's variable: {got}",
            c["name"]
        );
    }
    let calls = env_hook
        .requests()
        .iter()
        .filter(|r| r.json().pointer("/request/name") == Some(&json!("web")))
        .count();
    assert_eq!(calls, 2, "the env webhook is called, then reinvoked once");
    // Defaults still apply to the injected container.
    assert_eq!(containers[1]["imagePullPolicy"], "IfNotPresent", "{got}");
    // A namespace without the label is left alone.
    let o = kubectl(
        &s,
        &["create", "-f", "-", "-o", "json"],
        Some(&pod("plain", "web")),
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    assert_eq!(
        v["spec"]["containers"].as_array().map(Vec::len),
        Some(1),
        "{}",
        text(&o)
    );
}

#[test]
fn invalid_webhook_configurations_are_refused_with_field_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_in(tug_bin!(), &dir.path().join("data"));
    let bad = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "bad"},
        "webhooks": [{"name": "nodots", "clientConfig": {"url": "http://127.0.0.1/x"},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "timeoutSeconds": 60, "admissionReviewVersions": ["v1"]}]});
    let o = kubectl(&s, &["create", "-f", "-"], Some(&bad.to_string()));
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    for want in [
        "The ValidatingWebhookConfiguration \"bad\" is invalid",
        "webhooks[0].name: Invalid value: \"nodots\": should be a domain with at least three segments separated by dots",
        "webhooks[0].sideEffects: Required value",
        "webhooks[0].timeoutSeconds: Invalid value: 60: the timeout value must be between 1 and 30 seconds",
        "webhooks[0].clientConfig.url: Invalid value: \"http://127.0.0.1/x\": 'https' is the only allowed URL scheme",
    ] {
        assert!(out.contains(want), "missing {want:?} in: {out}");
    }
    // Defaults are filled in as kube-apiserver fills them.
    let good = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "good"},
        "webhooks": [{"name": "good.example.com", "clientConfig": {"service": {"namespace": "default", "name": "svc"}},
            "sideEffects": "None", "admissionReviewVersions": ["v1"]}]});
    let o = kubectl(
        &s,
        &["create", "-f", "-", "-o", "json"],
        Some(&good.to_string()),
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let h = &v["webhooks"][0];
    assert_eq!(h["failurePolicy"], "Fail");
    assert_eq!(h["matchPolicy"], "Equivalent");
    assert_eq!(h["timeoutSeconds"], 10);
    assert_eq!(h["reinvocationPolicy"], "Never");
    assert_eq!(h["namespaceSelector"], json!({}));
    assert_eq!(h["clientConfig"]["service"]["port"], 443);
}

#[test]
fn limit_ranges_default_and_bound_pods() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_in(tug_bin!(), &dir.path().join("data"));
    ok(&s, &["create", "namespace", "limited"]);
    let lr = json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "limits", "namespace": "limited"},
        "spec": {"limits": [
            {"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"},
                "defaultRequest": {"cpu": "100m", "memory": "128Mi"}, "max": {"cpu": "1", "memory": "512Mi"}},
            {"type": "Pod", "max": {"memory": "1Gi"}}]}});
    let o = kubectl(&s, &["create", "-f", "-"], Some(&lr.to_string()));
    assert!(o.status.success(), "{}", text(&o));
    // kube-apiserver's LimitRange defaults: a maximum alone becomes the default limit and request.
    let only_max = json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "max-only", "namespace": "default"},
        "spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}}]}});
    let o = kubectl(
        &s,
        &["create", "-f", "-", "-o", "json"],
        Some(&only_max.to_string()),
    );
    let v: Value = serde_json::from_slice(&o.stdout).expect("LimitRange JSON");
    assert_eq!(
        v["spec"]["limits"][0]["default"],
        json!({"cpu": "2"}),
        "{v}"
    );
    assert_eq!(
        v["spec"]["limits"][0]["defaultRequest"],
        json!({"cpu": "2"}),
        "{v}"
    );

    let pod = |name: &str, resources: Value| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "limited"},
            "spec": {"nodeName": "nowhere", "containers": [{"name": "app", "image": "registry.example/app:1",
                "resources": resources}]}})
        .to_string()
    };
    // A pod without resources gets the namespace's defaults, and says who set them.
    let o = kubectl(&s, &["create", "-f", "-"], Some(&pod("plain", json!({}))));
    assert!(o.status.success(), "{}", text(&o));
    let got: Value = serde_json::from_str(&ok(
        &s,
        &["get", "pod", "plain", "-n", "limited", "-o", "json"],
    ))
    .expect("pod JSON");
    let res = &got["spec"]["containers"][0]["resources"];
    assert_eq!(
        res["limits"],
        json!({"cpu": "500m", "memory": "256Mi"}),
        "{got}"
    );
    assert_eq!(
        res["requests"],
        json!({"cpu": "100m", "memory": "128Mi"}),
        "{got}"
    );
    assert_eq!(
        got["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app"
    );
    assert_eq!(got["status"]["qosClass"], "Burstable", "{got}");
    // A pod above the maximum is refused with Kubernetes' message.
    let o = kubectl(
        &s,
        &["create", "-f", "-"],
        Some(&pod("big", json!({"limits": {"cpu": "2"}}))),
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains(
            "pods \"big\" is forbidden: maximum cpu usage per Container is 1, but limit is 2"
        ),
        "{}",
        text(&o)
    );
    // Several violations are listed together.
    let o = kubectl(
        &s,
        &["create", "-f", "-"],
        Some(&pod(
            "bigger",
            json!({"limits": {"cpu": "2", "memory": "2Gi"}}),
        )),
    );
    assert!(
        text(&o).contains("pods \"bigger\" is forbidden: [maximum cpu usage per Container is 1, but limit is 2, maximum memory usage per Container is 512Mi, but limit is 2Gi, maximum memory usage per Pod is 1Gi, but limit is 2147483648]"),
        "{}",
        text(&o)
    );
    // Other namespaces are not limited by it.
    ok(&s, &["create", "namespace", "free"]);
    let o = kubectl(
        &s,
        &["create", "-f", "-"],
        Some(&pod("big", json!({"limits": {"cpu": "1500m"}})).replace("\"limited\"", "\"free\"")),
    );
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn pod_security_enforces_and_warns_by_namespace_labels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_in(tug_bin!(), &dir.path().join("data"));
    let pod = |ns: &str, name: &str, security: Value| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"nodeName": "nowhere", "containers": [{"name": "app", "image": "registry.example/app:1",
                "securityContext": security}]}})
        .to_string()
    };
    ok(&s, &["create", "namespace", "strict"]);
    ok(
        &s,
        &[
            "label",
            "namespace",
            "strict",
            "pod-security.kubernetes.io/enforce=restricted",
        ],
    );
    let o = kubectl(
        &s,
        &["create", "-f", "-"],
        Some(&pod("strict", "priv", json!({"privileged": true}))),
    );
    assert!(!o.status.success(), "a privileged pod was admitted");
    let want = "pods \"priv\" is forbidden: violates PodSecurity \"restricted:latest\": privileged (container \"app\" must not set securityContext.privileged=true), allowPrivilegeEscalation != false (container \"app\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"app\" must set securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \"app\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \"app\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")";
    assert!(text(&o).contains(want), "{}", text(&o));
    // A pod meeting the restricted profile is admitted.
    let o = kubectl(
        &s,
        &["create", "-f", "-"],
        Some(&pod(
            "strict",
            "good",
            json!({"allowPrivilegeEscalation": false, "runAsNonRoot": true,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}),
        )),
    );
    assert!(o.status.success(), "{}", text(&o));
    // Deployments are warned, not refused.
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "strict"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "registry.example/web:1", "securityContext": {"privileged": true}}]}}}});
    let o = kubectl(&s, &["create", "-f", "-"], Some(&deployment.to_string()));
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("Warning: would violate PodSecurity \"restricted:latest\": privileged (container \"web\" must not set securityContext.privileged=true)"),
        "{}",
        text(&o)
    );

    // warn=baseline only warns.
    ok(&s, &["create", "namespace", "lenient"]);
    ok(
        &s,
        &[
            "label",
            "namespace",
            "lenient",
            "pod-security.kubernetes.io/warn=baseline",
        ],
    );
    let o = kubectl(
        &s,
        &["create", "-f", "-"],
        Some(&pod("lenient", "priv", json!({"privileged": true}))),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Warning: would violate PodSecurity \"baseline:latest\": privileged (container \"app\" must not set securityContext.privileged=true)"),
        "{}",
        text(&o)
    );
    // Making the namespace enforce baseline warns of the pod it would now refuse.
    let o = kubectl(
        &s,
        &[
            "label",
            "namespace",
            "lenient",
            "pod-security.kubernetes.io/enforce=baseline",
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("existing pods in namespace \"lenient\" violate the new PodSecurity enforce level \"baseline:latest\"")
            && out.contains("priv: privileged"),
        "{out}"
    );
    // Invalid labels are refused with their field.
    let o = kubectl(
        &s,
        &[
            "label",
            "namespace",
            "lenient",
            "--overwrite",
            "pod-security.kubernetes.io/enforce=bogus",
        ],
        None,
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: \"bogus\": must be one of privileged, baseline, restricted"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_validating_admission_policy_limits_replicas_from_a_param() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy_file = dir.path().join("audit-policy.yaml");
    let log = dir.path().join("audit.log");
    std::fs::write(
        &policy_file,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n",
    )
    .expect("write policy");
    let s = TugServer::start_with(
        tug_bin!(),
        &dir.path().join("data"),
        &[
            "--audit-policy-file",
            policy_file.to_str().expect("utf-8"),
            "--audit-log-path",
            log.to_str().expect("utf-8"),
        ],
    );
    let docs = [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "capped", "labels": {"replicas": "deny"}}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "watched", "labels": {"replicas": "warn"}}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "replica-limit", "namespace": "capped"},
            "data": {"maxReplicas": "3"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "replica-limit", "namespace": "watched"},
            "data": {"maxReplicas": "2"}}),
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": "replica-limit"},
            "spec": {"paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
                "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
                    "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}]},
                "variables": [{"name": "limit", "expression": "int(params.data.maxReplicas)"}],
                "validations": [
                    {"expression": "object.spec.replicas <= variables.limit",
                        "messageExpression": "'replicas must be no greater than ' + string(variables.limit)"},
                    {"expression": "has(object.metadata.labels) && 'app' in object.metadata.labels",
                        "message": "deployments need an app label"},
                    {"expression": "object.spec.template.spec.containers.all(c, !c.image.endsWith(':latest'))",
                        "message": "no latest images"}]}}),
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": "replica-limit-deny"},
            "spec": {"policyName": "replica-limit", "validationActions": ["Deny"],
                "paramRef": {"name": "replica-limit", "parameterNotFoundAction": "Deny"},
                "matchResources": {"namespaceSelector": {"matchLabels": {"replicas": "deny"}}}}}),
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": "replica-limit-warn"},
            "spec": {"policyName": "replica-limit", "validationActions": ["Warn", "Audit"],
                "paramRef": {"name": "replica-limit", "parameterNotFoundAction": "Deny"},
                "matchResources": {"namespaceSelector": {"matchLabels": {"replicas": "warn"}}}}}),
    ];
    for d in &docs {
        let o = kubectl(&s, &["create", "-f", "-"], Some(&d.to_string()));
        assert!(o.status.success(), "{}", text(&o));
    }
    let deployment = |ns: &str, name: &str, replicas: u32| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "c", "image": "registry.example/app:1"}]}}}})
        .to_string()
    };
    // Deny: above the namespace's parameter is refused with the policy's message.
    let mut refused = String::new();
    eventually_within("the policy in force", Duration::from_secs(5), || {
        let o = kubectl(
            &s,
            &["create", "-f", "-"],
            Some(&deployment("capped", "big", 5)),
        );
        refused = text(&o);
        !o.status.success()
    });
    // kubectl renders the 422 from its cause, as Kubernetes' documentation shows it.
    assert!(
        refused.contains("The deployments \"big\" is invalid: : ValidatingAdmissionPolicy 'replica-limit' with binding 'replica-limit-deny' denied request: replicas must be no greater than 3"),
        "{refused}"
    );
    let o = kubectl(
        &s,
        &["create", "-f", "-"],
        Some(&deployment("capped", "small", 3)),
    );
    assert!(o.status.success(), "{}", text(&o));
    let metrics = ok(&s, &["get", "--raw", "/metrics"]);
    for checked in [
        "apiserver_validating_admission_policy_check_total{enforcement_action=\"deny\",error_type=\"no_error\",policy=\"replica-limit\",policy_binding=\"replica-limit-deny\"}",
        "apiserver_validating_admission_policy_check_total{enforcement_action=\"allow\",error_type=\"no_error\",policy=\"replica-limit\",policy_binding=\"replica-limit-deny\"}",
    ] {
        assert!(metrics.contains(checked), "{checked} in {metrics}");
    }
    // Scaling past the limit is an update the policy refuses too.
    let o = kubectl(
        &s,
        &[
            "scale",
            "deployment",
            "small",
            "-n",
            "capped",
            "--replicas=4",
        ],
        None,
    );
    assert!(
        !o.status.success() && text(&o).contains("replicas must be no greater than 3"),
        "{}",
        text(&o)
    );
    // Warn and Audit: the write goes through, with a warning and an audit annotation.
    let o = kubectl(
        &s,
        &["create", "-f", "-"],
        Some(&deployment("watched", "big", 5)),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Warning: Validation failed for ValidatingAdmissionPolicy 'replica-limit' with binding 'replica-limit-warn': replicas must be no greater than 2"),
        "{}",
        text(&o)
    );
    eventually_within("the audit annotation", Duration::from_secs(5), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .any(|l| {
                let v: Value = serde_json::from_str(l).unwrap_or(Value::Null);
                v["objectRef"]["name"] == "big"
                    && v["objectRef"]["namespace"] == "watched"
                    && v["annotations"]["validation.policy.admission.k8s.io/validation_failure"]
                        .as_str()
                        .is_some_and(|a| {
                            let failures: Value = serde_json::from_str(a).unwrap_or(Value::Null);
                            failures[0]["binding"] == "replica-limit-warn"
                                && failures[0]["validationActions"] == json!(["Warn", "Audit"])
                        })
            })
    });
    // Namespaces the bindings do not select are left alone.
    ok(&s, &["create", "namespace", "free"]);
    let o = kubectl(
        &s,
        &["create", "-f", "-"],
        Some(&deployment("free", "big", 9)),
    );
    assert!(o.status.success(), "{}", text(&o));
    // An expression that does not compile is refused at write with its field.
    let bad = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "bad"},
        "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
            "operations": ["CREATE"], "resources": ["pods"]}]},
            "validations": [{"expression": "object.spec.("}]}});
    let o = kubectl(&s, &["create", "-f", "-"], Some(&bad.to_string()));
    assert!(!o.status.success());
    assert!(
        text(&o).contains(
            "spec.validations[0].expression: Invalid value: \"object.spec.(\": compilation failed"
        ),
        "{}",
        text(&o)
    );
}

#[test]
fn exec_is_admitted_as_a_connect_with_its_options() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_in(tug_bin!(), &dir.path().join("data"));
    let hook = Server::start("127.0.0.1", &[], |r| {
        let review = r.json();
        let command = review["request"]["object"]["command"].clone();
        let destructive = command
            .as_array()
            .is_some_and(|c| c.iter().any(|a| a == "rm"));
        Reply::Json(review_response(
            &review,
            !destructive,
            json!({"status": {"message": "no rm in exec sessions"}}),
        ))
    });
    let yaml = configuration(
        "ValidatingWebhookConfiguration",
        "exec-guard",
        "exec.guard.example.com",
        &hook.url,
        &hook.ca_bundle(),
        json!({"rules": [{"operations": ["CONNECT"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods/exec"]}]}),
    );
    let o = kubectl(&s, &["apply", "-f", "-"], Some(&yaml));
    assert!(o.status.success(), "{}", text(&o));
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {"nodeName": "nowhere", "containers": [{"name": "app", "image": "registry.example/app:1"}]}});
    let o = kubectl(&s, &["create", "-f", "-"], Some(&pod.to_string()));
    assert!(o.status.success(), "{}", text(&o));
    let mut out = String::new();
    eventually_within("the exec webhook in force", Duration::from_secs(5), || {
        out = text(&kubectl(
            &s,
            &["exec", "web", "-c", "app", "--", "rm", "-rf", "/data"],
            None,
        ));
        out.contains("no rm in exec sessions")
    });
    assert!(
        out.contains("admission webhook \"exec.guard.example.com\" denied the request: no rm in exec sessions"),
        "{out}"
    );
    let review = hook
        .requests()
        .into_iter()
        .map(|r| r.json())
        .find(|v| v.pointer("/request/name") == Some(&json!("web")))
        .expect("the webhook saw the exec");
    let req = &review["request"];
    assert_eq!(req["operation"], "CONNECT");
    assert_eq!(req["subResource"], "exec");
    assert_eq!(
        req["kind"],
        json!({"group": "", "version": "v1", "kind": "PodExecOptions"})
    );
    assert_eq!(req["object"]["kind"], "PodExecOptions");
    assert_eq!(req["object"]["container"], "app");
    assert_eq!(req["object"]["command"], json!(["rm", "-rf", "/data"]));
    assert_eq!(req["oldObject"], Value::Null);
    // Writes are not what this webhook looks at.
    let o = create_configmap(&s, "unrelated", json!({}), &[]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn claims_without_a_class_get_the_default_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_in(tug_bin!(), &dir.path().join("data"));
    let claim = |name: &str, class: Option<&str>| {
        let mut c = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        if let Some(class) = class {
            c["spec"]["storageClassName"] = json!(class);
        }
        let o = kubectl(
            &s,
            &["create", "-f", "-", "-o", "json"],
            Some(&c.to_string()),
        );
        assert!(o.status.success(), "{}", text(&o));
        let v: Value = serde_json::from_slice(&o.stdout).expect("claim JSON");
        v["spec"]["storageClassName"].clone()
    };
    let class = |name: &str| {
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": name, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "example.com/disks"})
        .to_string()
    };
    assert_eq!(
        claim("before", None),
        Value::Null,
        "no default class, no class"
    );
    let o = kubectl(&s, &["create", "-f", "-"], Some(&class("standard")));
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(claim("plain", None), json!("standard"));
    assert_eq!(
        claim("none", Some("")),
        json!(""),
        "an empty class asks for none"
    );
    // With two defaults, the newest wins.
    std::thread::sleep(Duration::from_millis(1100));
    let o = kubectl(&s, &["create", "-f", "-"], Some(&class("fast")));
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(claim("newer", None), json!("fast"));
}

#[test]
fn an_equivalent_version_is_matched_and_converted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_in(tug_bin!(), &dir.path().join("data"));
    let hook = Server::start("127.0.0.1", &[], |r| {
        let review = r.json();
        let refused = review.pointer("/request/object/note") == Some(&json!("refuse me"));
        Reply::Json(review_response(
            &review,
            !refused,
            json!({"status": {"message": "events saying 'refuse me' are refused"}}),
        ))
    });
    // The webhook asks for events.k8s.io/v1 Events; a core/v1 Event is the same resource.
    let events = json!({"operations": ["CREATE"], "apiGroups": ["events.k8s.io"], "apiVersions": ["v1"], "resources": ["events"]});
    let yaml = configuration(
        "ValidatingWebhookConfiguration",
        "events",
        "events.example.com",
        &hook.url,
        &hook.ca_bundle(),
        json!({"rules": [events]}),
    );
    let o = kubectl(&s, &["apply", "-f", "-"], Some(&yaml));
    assert!(o.status.success(), "{}", text(&o));
    let event = |name: &str, message: &str| {
        json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": name},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
            "reason": "Testing", "message": message, "type": "Normal"})
        .to_string()
    };
    let mut out = String::new();
    eventually_within(
        "the events webhook in force",
        Duration::from_secs(5),
        || {
            let o = kubectl(
                &s,
                &["create", "-f", "-"],
                Some(&event(&format!("probe-{}", free_port()), "refuse me")),
            );
            out = text(&o);
            !o.status.success()
        },
    );
    assert!(
        out.contains("events saying 'refuse me' are refused"),
        "{out}"
    );
    let o = kubectl(&s, &["create", "-f", "-"], Some(&event("fine", "all good")));
    assert!(o.status.success(), "{}", text(&o));
    let review = hook
        .requests()
        .into_iter()
        .map(|r| r.json())
        .find(|v| v.pointer("/request/name") == Some(&json!("fine")))
        .expect("the webhook saw the core/v1 create");
    let req = &review["request"];
    assert_eq!(
        req["kind"],
        json!({"group": "events.k8s.io", "version": "v1", "kind": "Event"})
    );
    assert_eq!(
        req["resource"],
        json!({"group": "events.k8s.io", "version": "v1", "resource": "events"})
    );
    assert_eq!(
        req["requestKind"],
        json!({"group": "", "version": "v1", "kind": "Event"})
    );
    assert_eq!(req["object"]["apiVersion"], "events.k8s.io/v1");
    assert_eq!(
        req["object"]["note"], "all good",
        "the object is in the webhook's version"
    );
    assert_eq!(req["object"]["regarding"]["name"], "web");
    // With matchPolicy Exact, the core/v1 request is not the webhook's.
    let exact = configuration(
        "ValidatingWebhookConfiguration",
        "events",
        "events.example.com",
        &hook.url,
        &hook.ca_bundle(),
        json!({"rules": [events], "matchPolicy": "Exact"}),
    );
    let o = kubectl(&s, &["apply", "-f", "-"], Some(&exact));
    assert!(o.status.success(), "{}", text(&o));
    eventually_within("the exact policy in force", Duration::from_secs(5), || {
        kubectl(
            &s,
            &["create", "-f", "-"],
            Some(&event(&format!("exact-{}", free_port()), "refuse me")),
        )
        .status
        .success()
    });
}

/// A webhook built on kube-rs' admission types (`kube::core::admission`), the way operators
/// written in Rust build theirs: the request decodes into kube-rs' `AdmissionRequest`, and the
/// answers are kube-rs' `AdmissionResponse`s, denying or patching.
#[test]
fn a_webhook_built_on_kube_rs_admission_types_works() {
    use kube::core::DynamicObject;
    use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_in(tug_bin!(), &dir.path().join("data"));
    let hook = Server::start("127.0.0.1", &[], |r| {
        let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(&r.body) {
            Ok(review) => review,
            Err(e) => {
                return Reply::Json(
                    serde_json::to_value(AdmissionResponse::invalid(e.to_string()).into_review())
                        .unwrap_or_default(),
                );
            }
        };
        let req: AdmissionRequest<DynamicObject> = match review.try_into() {
            Ok(req) => req,
            Err(e) => {
                return Reply::Json(
                    serde_json::to_value(AdmissionResponse::invalid(e.to_string()).into_review())
                        .unwrap_or_default(),
                );
            }
        };
        let labels = req
            .object
            .as_ref()
            .and_then(|o| o.metadata.labels.clone())
            .unwrap_or_default();
        let response = if labels.contains_key("illegal") {
            AdmissionResponse::from(&req).deny("objects labelled illegal are refused")
        } else {
            let patch: json_patch::Patch = serde_json::from_value(json!([{"op": "add",
                "path": "/metadata/labels/admission", "value": "modified-by-kube-rs"}]))
            .unwrap_or_else(|_| json_patch::Patch(Vec::new()));
            match AdmissionResponse::from(&req).with_patch(patch) {
                Ok(r) => r,
                Err(e) => AdmissionResponse::invalid(e.to_string()),
            }
        };
        Reply::Json(serde_json::to_value(response.into_review()).unwrap_or_default())
    });
    let yaml = configuration(
        "MutatingWebhookConfiguration",
        "kube-rs",
        "kube-rs.example.com",
        &hook.url,
        &hook.ca_bundle(),
        json!({"rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
            "objectSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}}),
    );
    let o = kubectl(&s, &["apply", "-f", "-"], Some(&yaml));
    assert!(o.status.success(), "{}", text(&o));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let got = loop {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("probe-{}", free_port()), "labels": {"app": "web"}}});
        let o = kubectl(
            &s,
            &["create", "-f", "-", "-o", "json"],
            Some(&cm.to_string()),
        );
        let got: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
        if got.pointer("/metadata/labels/admission").is_some() {
            break got;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the kube-rs webhook never patched: {}",
            text(&o)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        got["metadata"]["labels"]["admission"], "modified-by-kube-rs",
        "{got}"
    );
    let o = create_configmap(&s, "bad", json!({"app": "web", "illegal": "yes"}), &[]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("admission webhook \"kube-rs.example.com\" denied the request: objects labelled illegal are refused"),
        "{}",
        text(&o)
    );
    // The object selector keeps the webhook away from unlabelled objects.
    let o = kubectl(
        &s,
        &["create", "-f", "-", "-o", "json"],
        Some(
            &json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "unlabelled"}})
            .to_string(),
        ),
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    assert!(v.pointer("/metadata/labels/admission").is_none(), "{v}");
}

/// MutatingAdmissionPolicies through kubectl: an ApplyConfiguration that injects a sidecar
/// (its image from a param ConfigMap) and a label, a JSONPatch with an escaped key and one
/// whose `test` fails (nothing applied, no error), reinvocation of a policy that depends on
/// a later one, a mutation refused for setting an atomic list, and invalid policies refused
/// with kube-apiserver's field paths.
#[test]
fn mutating_admission_policies_apply_configurations_and_json_patches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_in(tug_bin!(), &dir.path().join("data"));
    let pods = json!({"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
        "resources": ["pods"]});
    let policy = |name: &str, reinvoke: &str, mutations: Value, more: Value| {
        let mut p = json!({"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingAdmissionPolicy", "metadata": {"name": name},
            "spec": {"matchConstraints": {"resourceRules": [pods]},
                "reinvocationPolicy": reinvoke, "mutations": mutations}});
        if let Value::Object(m) = more {
            for (k, v) in m {
                p["spec"][k] = v;
            }
        }
        p
    };
    let binding = |name: &str, more: Value| {
        let mut b = json!({"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingAdmissionPolicyBinding", "metadata": {"name": name},
            "spec": {"policyName": name,
                "matchResources": {"namespaceSelector": {"matchLabels": {"inject": "yes"}}}}});
        if let Value::Object(m) = more {
            for (k, v) in m {
                b["spec"][k] = v;
            }
        }
        b
    };
    let apply = |e: &str| json!({"patchType": "ApplyConfiguration", "applyConfiguration": {"expression": e}});
    let patch = |e: &str| json!({"patchType": "JSONPatch", "jsonPatch": {"expression": e}});
    let docs = [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mutated", "labels": {"inject": "yes"}}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "sidecar", "namespace": "mutated"},
            "data": {"image": "registry.example/sidecar:2"}}),
        // "a-count" runs first and is reinvoked after "b-sidecar" adds a container.
        policy(
            "a-count",
            "IfNeeded",
            json!([apply(
                "Object{metadata: Object.metadata{labels: {'containers': string(size(object.spec.containers))}}}"
            )]),
            json!({}),
        ),
        policy(
            "b-sidecar",
            "Never",
            json!([
                apply(
                    "Object{spec: Object.spec{containers: [Object.spec.containers{name: 'sidecar', image: params.data.image}]}}"
                ),
                patch(
                    "[JSONPatch{op: 'add', path: '/metadata/labels/' + jsonpatch.escapeKey('example.com/tier'), value: variables.tier}]"
                ),
                patch(
                    "[JSONPatch{op: 'test', path: '/metadata/labels/app', value: 'other'}, JSONPatch{op: 'add', path: '/metadata/labels/never', value: 'x'}]"
                ),
            ]),
            json!({"paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
            "variables": [{"name": "tier", "expression": "object.metadata.labels.app + '-tier'"}],
            "matchConditions": [{"name": "no-sidecar-yet",
                "expression": "!object.spec.containers.exists(c, c.name == 'sidecar')"}]}),
        ),
        policy(
            "c-atomic",
            "Never",
            json!([apply(
                "Object{spec: Object.spec{containers: [Object.spec.containers{name: 'app', args: ['--debug']}]}}"
            )]),
            json!({"matchConstraints": {"resourceRules": [pods],
                "objectSelector": {"matchLabels": {"debug": "yes"}}}}),
        ),
        policy(
            "d-unknown",
            "Never",
            json!([apply("Object{spec: Object.spec{sidecarz: true}}")]),
            json!({"matchConstraints": {"resourceRules": [pods],
                "objectSelector": {"matchLabels": {"typo": "yes"}}}}),
        ),
        binding("a-count", json!({})),
        binding(
            "b-sidecar",
            json!({"paramRef": {"name": "sidecar", "parameterNotFoundAction": "Deny"}}),
        ),
        binding("c-atomic", json!({})),
        binding("d-unknown", json!({})),
    ];
    for d in &docs {
        let o = kubectl(&s, &["create", "-f", "-"], Some(&d.to_string()));
        assert!(o.status.success(), "{}", text(&o));
    }
    let pod = |name: &str, labels: Value| {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "mutated", "labels": labels},
            "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}})
        .to_string()
    };
    let mut created = Value::Null;
    eventually_within("the policies in force", Duration::from_secs(5), || {
        let name = format!("probe-{}", free_port());
        let o = kubectl(
            &s,
            &["create", "-o", "json", "-f", "-"],
            Some(&pod(&name, json!({"app": "web"}))),
        );
        created = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
        created.pointer("/metadata/labels/containers") == Some(&json!("2"))
    });
    let names: Vec<&str> = created["spec"]["containers"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["app", "sidecar"], "{created}");
    assert_eq!(
        created["spec"]["containers"][1]["image"], "registry.example/sidecar:2",
        "the image comes from the param"
    );
    assert_eq!(
        created["spec"]["containers"][1]["imagePullPolicy"], "IfNotPresent",
        "an injected container is defaulted"
    );
    let labels = &created["metadata"]["labels"];
    assert_eq!(labels["example.com/tier"], "web-tier", "{labels}");
    assert_eq!(labels["containers"], "2", "a-count was reinvoked: {labels}");
    assert!(
        labels.get("never").is_none(),
        "a failed test applies nothing: {labels}"
    );
    // What kubectl reads back is what was stored.
    let name = created["metadata"]["name"].as_str().unwrap_or_default();
    let got = ok(
        &s,
        &[
            "get",
            "pod",
            name,
            "-n",
            "mutated",
            "-o",
            "jsonpath={.spec.containers[*].name}",
        ],
    );
    assert_eq!(got.trim(), "app sidecar");

    // Setting an atomic list is refused with kube-apiserver's message (failurePolicy Fail).
    let o = kubectl(
        &s,
        &["create", "-f", "-"],
        Some(&pod("debug", json!({"app": "web", "debug": "yes"}))),
    );
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("policy 'c-atomic' with binding 'c-atomic' denied request: error applying patch: invalid ApplyConfiguration: may not mutate atomic arrays, maps or structs: .spec.containers[name=\"app\"].args"),
        "{out}"
    );
    // A field the kind does not have is refused.
    let o = kubectl(
        &s,
        &["create", "-f", "-"],
        Some(&pod("typo", json!({"app": "web", "typo": "yes"}))),
    );
    let out = text(&o);
    assert!(
        !o.status.success()
            && out.contains("policy 'd-unknown' with binding 'd-unknown' denied request: error applying patch: failed to convert patch object to typed object: .spec.sidecarz: field not declared in schema"),
        "{out}"
    );
    // Outside the bound namespace nothing changes.
    let o = kubectl(
        &s,
        &["create", "-o", "json", "-f", "-"],
        Some(&pod("plain", json!({"app": "web"})).replace("\"mutated\"", "\"default\"")),
    );
    assert!(o.status.success(), "{}", text(&o));
    let plain: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    assert_eq!(
        plain["spec"]["containers"].as_array().map(Vec::len),
        Some(1)
    );

    // Invalid policies and bindings are refused with field paths.
    let bad = [
        (
            json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicy",
                "metadata": {"name": "bad"},
                "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                    "operations": ["DELETE"], "resources": ["pods"]}]},
                    "mutations": [{"patchType": "JSONPatch"}, {"patchType": "ApplyConfiguration",
                        "applyConfiguration": {"expression": "Object{"}}]}}),
            vec![
                "spec.mutations[0].jsonPatch: Required value: must be specified when patchType is JSONPatch",
                "spec.mutations[1].applyConfiguration.expression: Invalid value",
                "spec.reinvocationPolicy: Required value",
                "spec.matchConstraints.resourceRules.operations: Unsupported value: \"DELETE\"",
            ],
        ),
        (
            json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicy",
                "metadata": {"name": "empty"}, "spec": {"reinvocationPolicy": "Sometimes"}}),
            vec![
                "spec.mutations: Required value: mutations must contain at least one item",
                "spec.matchConstraints: Required value",
                "spec.reinvocationPolicy: Unsupported value: \"Sometimes\"",
            ],
        ),
        (
            json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicyBinding",
                "metadata": {"name": "bad"}, "spec": {"paramRef": {"name": "x", "selector": {}}}}),
            vec![
                "spec.policyName: Required value",
                "spec.paramRef.name: Forbidden: name and selector are mutually exclusive",
                "spec.paramRef.parameterNotFoundAction: Required value",
            ],
        ),
    ];
    for (doc, wanted) in bad {
        let o = kubectl(&s, &["create", "-f", "-"], Some(&doc.to_string()));
        let out = text(&o);
        assert!(!o.status.success(), "{out}");
        for w in wanted {
            assert!(out.contains(w), "{w} in {out}");
        }
    }
    let listed = ok(&s, &["get", "mutatingadmissionpolicies", "-o", "name"]);
    assert!(
        listed.contains("mutatingadmissionpolicy.admissionregistration.k8s.io/b-sidecar"),
        "{listed}"
    );
}

/// ValidatingAdmissionPolicy type checking, as kube-controller-manager reports it in
/// `status.typeChecking` (Kubernetes' e2e "should type check validation expressions" and
/// "should type check a CRD"): none for a policy that checks, the operator and field
/// problems with their field references otherwise, and again after the spec changes.
#[test]
fn validating_admission_policies_report_type_checking() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_in(tug_bin!(), &dir.path().join("data"));
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "jobs.batch.example.com"},
        "spec": {"group": "batch.example.com", "scope": "Namespaced",
            "names": {"plural": "jobs", "singular": "job", "kind": "Job"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}}}}]}});
    let o = kubectl(&s, &["create", "-f", "-"], Some(&crd.to_string()));
    assert!(o.status.success(), "{}", text(&o));
    eventually_within("the custom kind served", Duration::from_secs(10), || {
        kubectl(&s, &["get", "jobs.batch.example.com"], None)
            .status
            .success()
    });
    let policy = |name: &str, group: &str, resource: &str, validations: Value| {
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": [group], "apiVersions": ["v1"],
                "operations": ["CREATE"], "resources": [resource]}]},
                "validations": validations}})
        .to_string()
    };
    for doc in [
        policy(
            "correct",
            "apps",
            "deployments",
            json!([{"expression": "object.spec.replicas > 1"}]),
        ),
        policy(
            "confused",
            "apps",
            "deployments",
            json!([{"expression": "object.spec.replicas > '1'",
            "messageExpression": "'wants replicas > 1, got ' + object.spec.replicas"}]),
        ),
        policy(
            "custom",
            "batch.example.com",
            "jobs",
            json!([{"expression": "object.spec.replicas > '1'"},
            {"expression": "object.spec.maxRetries < 10"}]),
        ),
    ] {
        let o = kubectl(&s, &["create", "-f", "-"], Some(&doc));
        assert!(o.status.success(), "{}", text(&o));
    }
    let status = |name: &str| -> Value {
        let out = ok(
            &s,
            &["get", "validatingadmissionpolicy", name, "-o", "json"],
        );
        serde_json::from_str::<Value>(&out).unwrap_or(Value::Null)["status"].clone()
    };
    let checked = |name: &str| -> Value {
        let mut found = Value::Null;
        eventually_within("the type checking", Duration::from_secs(5), || {
            found = status(name);
            found.get("typeChecking").is_some()
        });
        found
    };
    assert_eq!(
        checked("correct"),
        json!({"observedGeneration": 1, "typeChecking": {}})
    );

    let confused = checked("confused");
    let warnings = confused["typeChecking"]["expressionWarnings"].clone();
    assert_eq!(warnings.as_array().map(Vec::len), Some(2), "{confused}");
    assert_eq!(warnings[0]["fieldRef"], "spec.validations[0].expression");
    assert_eq!(
        warnings[0]["warning"],
        "apps/v1, Kind=Deployment: ERROR: <input>:1:22: found no matching overload for '_>_' applied to '(int, string)'\n | object.spec.replicas > '1'\n | .....................^\n"
    );
    assert_eq!(
        warnings[1]["fieldRef"],
        "spec.validations[0].messageExpression"
    );
    assert!(
        warnings[1]["warning"].as_str().is_some_and(
            |w| w.contains("found no matching overload for '_+_' applied to '(string, int)'")
        ),
        "{confused}"
    );

    let custom = checked("custom");
    let warnings = &custom["typeChecking"]["expressionWarnings"];
    assert_eq!(
        warnings[0]["fieldRef"], "spec.validations[0].expression",
        "{custom}"
    );
    assert!(
        warnings[0]["warning"].as_str().is_some_and(|w| w.starts_with(
            "batch.example.com/v1, Kind=Job: ERROR: <input>:1:22: found no matching overload for '_>_'"
        )),
        "{custom}"
    );
    assert_eq!(warnings[1]["fieldRef"], "spec.validations[1].expression");
    assert!(
        warnings[1]["warning"]
            .as_str()
            .is_some_and(|w| w.contains("undefined field 'maxRetries'")),
        "{custom}"
    );

    // Fixing the expression is checked again: the warnings go.
    let o = kubectl(
        &s,
        &[
            "patch",
            "validatingadmissionpolicy",
            "confused",
            "--type=json",
            "-p",
            r#"[{"op": "replace", "path": "/spec/validations/0", "value": {"expression": "object.spec.replicas > 1"}}]"#,
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    let mut fixed = Value::Null;
    eventually_within(
        "the type checking of generation 2",
        Duration::from_secs(5),
        || {
            fixed = status("confused");
            fixed["observedGeneration"] == 2
        },
    );
    assert_eq!(fixed["typeChecking"], json!({}), "{fixed}");
}

/// A webhook that only speaks `admission.k8s.io/v1beta1` (`admissionReviewVersions:
/// ["v1beta1"]`) is sent v1beta1 reviews, and its answers are taken as kube-apiserver takes
/// v1beta1 ones: no kind, version or uid needed, a patch without patchType is a JSON patch.
#[test]
fn a_v1beta1_webhook_is_sent_and_answers_v1beta1_reviews() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_in(tug_bin!(), &dir.path().join("data"));
    let hook = Server::start("127.0.0.1", &[], |_| {
        Reply::Json(json!({"response": {"allowed": true,
            "patch": patch_field(&json!([{"op": "add", "path": "/data/reviewed", "value": "v1beta1"}]))}}))
    });
    install(
        &s,
        &configuration(
            "MutatingWebhookConfiguration",
            "old-style",
            "old.style.example.com",
            &format!("{}/mutate", hook.url),
            &hook.ca_bundle(),
            json!({"admissionReviewVersions": ["v1beta1"]}),
        ),
        || {
            let name = format!("probe-{}", free_port());
            let o = create_configmap(&s, &name, json!({}), &["-o", "json"]);
            let cm: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
            cm.pointer("/data/reviewed") == Some(&json!("v1beta1"))
        },
    );
    let sent = hook.requests().last().map(|r| r.json()).unwrap_or_default();
    assert_eq!(sent["apiVersion"], "admission.k8s.io/v1beta1", "{sent}");
    assert_eq!(sent["request"]["operation"], "CREATE");
}

/// StorageObjectInUseProtection and the protection controllers: a new claim and a new volume
/// get their protection finalizers; a claim a pod uses outlives its deletion until the pod
/// is gone; an unbound volume goes at once.
#[test]
fn claims_in_use_outlive_their_deletion_until_no_pod_uses_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_in(tug_bin!(), &dir.path().join("data"));
    let docs = [
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "default"},
            "spec": {"storageClassName": "", "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "user", "namespace": "default"},
            "spec": {"nodeName": "nowhere", "containers": [{"name": "c", "image": "registry.example/app:1"}],
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}),
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "spare"},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                "hostPath": {"path": "/tmp/spare"}}}),
    ];
    for d in &docs {
        let o = kubectl(&s, &["create", "-f", "-"], Some(&d.to_string()));
        assert!(o.status.success(), "{}", text(&o));
    }
    let finalizers = |what: &[&str]| {
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        args.extend_from_slice(&["-o", "jsonpath={.metadata.finalizers}"]);
        ok(&s, &args)
    };
    assert_eq!(
        finalizers(&["pvc", "data"]),
        r#"["kubernetes.io/pvc-protection"]"#
    );
    assert_eq!(
        finalizers(&["pv", "spare"]),
        r#"["kubernetes.io/pv-protection"]"#
    );

    // In use: the deletion waits.
    ok(&s, &["delete", "pvc", "data", "--wait=false"]);
    std::thread::sleep(Duration::from_secs(2));
    let o = kubectl(
        &s,
        &[
            "get",
            "pvc",
            "data",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ],
        None,
    );
    assert!(
        o.status.success() && !text(&o).trim().is_empty(),
        "a claim in use stays, being deleted: {}",
        text(&o)
    );
    // The pod goes: so does the claim.
    ok(
        &s,
        &["delete", "pod", "user", "--grace-period=0", "--force"],
    );
    eventually_within("the claim gone", Duration::from_secs(15), || {
        !kubectl(&s, &["get", "pvc", "data"], None).status.success()
    });
    // An unbound volume goes at once.
    ok(&s, &["delete", "pv", "spare", "--wait=false"]);
    eventually_within("the volume gone", Duration::from_secs(15), || {
        !kubectl(&s, &["get", "pv", "spare"], None).status.success()
    });
}

/// The `authorizer` variable of admission policies: a ValidatingAdmissionPolicy lets only
/// users who may also delete ConfigMaps create ones labelled `locked`, checked against RBAC for
/// the requesting user (here alice, who may create but not delete, and the admin).
#[test]
fn admission_policies_ask_the_authorizer_for_the_requesting_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_in(tug_bin!(), &dir.path().join("data"));
    let docs = [
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "writer", "namespace": "default"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "alice-writes", "namespace": "default"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "writer"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]}),
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": "locked"},
            "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE"], "resources": ["configmaps"]}],
                "objectSelector": {"matchLabels": {"locked": "yes"}}},
                "validations": [{"expression": "authorizer.requestResource.check('delete').allowed()",
                    "messageExpression": "'only those who may delete configmaps may lock them: ' + authorizer.group('').resource('configmaps').namespace(object.metadata.namespace).check('delete').reason()"}]}}),
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": "locked"},
            "spec": {"policyName": "locked", "validationActions": ["Deny"]}}),
    ];
    for d in &docs {
        let o = kubectl(&s, &["create", "-f", "-"], Some(&d.to_string()));
        assert!(o.status.success(), "{}", text(&o));
    }
    let cm = |name: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default", "labels": {"locked": "yes"}}})
        .to_string()
    };
    let mut refused = String::new();
    eventually_within("the policy in force", Duration::from_secs(5), || {
        let o = kubectl(
            &s,
            &["create", "--as=alice", "-f", "-"],
            Some(&cm(&format!("probe-{}", free_port()))),
        );
        refused = text(&o);
        !o.status.success()
    });
    assert!(
        refused.contains("ValidatingAdmissionPolicy 'locked' with binding 'locked' denied request: only those who may delete configmaps may lock them"),
        "{refused}"
    );
    // The admin may delete, so may lock.
    let o = kubectl(&s, &["create", "-f", "-"], Some(&cm("admins")));
    assert!(o.status.success(), "{}", text(&o));
    // alice may still create what the policy does not select.
    let o = kubectl(&s, &["create", "configmap", "plain", "--as=alice"], None);
    assert!(o.status.success(), "{}", text(&o));
}

/// PodSecurity configured through `--admission-control-config-file` (a PodSecurityConfiguration
/// in an AdmissionConfiguration, from a file of its own): unlabelled namespaces enforce the
/// configured default; exempt namespaces, users and runtime classes are not checked; a
/// version label evaluates that version's checks.
#[test]
fn pod_security_defaults_exemptions_and_versions_come_from_its_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("pod-security.yaml"),
        "apiVersion: pod-security.admission.config.k8s.io/v1\nkind: PodSecurityConfiguration\n\
         defaults: {enforce: baseline, enforce-version: latest}\n\
         exemptions: {usernames: [alice], runtimeClasses: [trusted], namespaces: [exempt]}\n",
    )
    .expect("write");
    let config = dir.path().join("admission.yaml");
    std::fs::write(
        &config,
        "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\n\
         plugins:\n- name: PodSecurity\n  path: pod-security.yaml\n",
    )
    .expect("write");
    let s = TugServer::start_with(
        tug_bin!(),
        &dir.path().join("data"),
        &[
            "--admission-control-config-file",
            config.to_str().expect("utf-8"),
        ],
    );
    let pod = |ns: &str, name: &str, spec: Value| {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"nodeName": "nowhere", "containers": [{"name": "app", "image": "registry.example/app:1"}]}});
        if let Value::Object(m) = spec {
            for (k, v) in m {
                p["spec"][k] = v;
            }
        }
        p.to_string()
    };
    let privileged = json!({"containers": [{"name": "app", "image": "registry.example/app:1",
        "securityContext": {"privileged": true}}]});
    // The default: baseline enforced where no label says otherwise.
    let o = kubectl(
        &s,
        &["create", "-f", "-"],
        Some(&pod("default", "priv", privileged.clone())),
    );
    assert!(
        !o.status.success()
            && text(&o).contains("violates PodSecurity \"baseline:latest\": privileged (container \"app\" must not set securityContext.privileged=true)"),
        "{}",
        text(&o)
    );
    // Exempt: a namespace, a user, a runtime class.
    ok(&s, &["create", "namespace", "exempt"]);
    let o = kubectl(
        &s,
        &["create", "-f", "-"],
        Some(&pod("exempt", "priv", privileged.clone())),
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = kubectl(
        &s,
        &[
            "create",
            "--as=alice",
            "--as-group=system:masters",
            "-f",
            "-",
        ],
        Some(&pod("default", "alices", privileged.clone())),
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = kubectl(
        &s,
        &["create", "-f", "-"],
        Some(
            &json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                "metadata": {"name": "trusted"}, "handler": "runc"})
            .to_string(),
        ),
    );
    assert!(o.status.success(), "{}", text(&o));
    let mut trusted = privileged.clone();
    trusted["runtimeClassName"] = json!("trusted");
    let o = kubectl(
        &s,
        &["create", "-f", "-"],
        Some(&pod("default", "trusted", trusted)),
    );
    assert!(o.status.success(), "{}", text(&o));

    // A version label: runAsUser=0 is refused by restricted only from v1.23.
    ok(&s, &["create", "namespace", "pinned"]);
    ok(
        &s,
        &[
            "label",
            "namespace",
            "pinned",
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/enforce-version=v1.22",
        ],
    );
    let root = json!({"securityContext": {"runAsUser": 0, "runAsNonRoot": true,
            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "app", "image": "registry.example/app:1",
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]});
    let o = kubectl(
        &s,
        &["create", "-f", "-"],
        Some(&pod("pinned", "old-rules", root.clone())),
    );
    assert!(o.status.success(), "{}", text(&o));
    ok(
        &s,
        &[
            "label",
            "--overwrite",
            "namespace",
            "pinned",
            "pod-security.kubernetes.io/enforce-version=v1.23",
        ],
    );
    let o = kubectl(
        &s,
        &["create", "-f", "-"],
        Some(&pod("pinned", "new-rules", root)),
    );
    assert!(
        !o.status.success()
            && text(&o).contains("violates PodSecurity \"restricted:v1.23\": runAsUser=0 (pod must not set runAsUser=0)"),
        "{}",
        text(&o)
    );
}
