//! API aggregation through the real kubectl: an HTTPS server the test runs (trusting only the
//! request-header CA the API server publishes in `extension-apiserver-authentication`) is
//! registered with an APIService for `wardle.example.com/v1alpha1`; kubectl discovers its
//! group and `kubectl get flunders` reaches it, with the user in the front-proxy headers; the
//! APIService becomes Available; deleting it removes the group.

use std::time::Duration;

use serde_json::{Value, json};
use tug_testkit::kubectl::{eventually_within, kubectl, ok, text};
use tug_testkit::server::TugServer;
use tug_testkit::tug_bin;
use tug_testkit::webhook::{Reply, Server};

const GV: &str = "/apis/wardle.example.com/v1alpha1";

fn answer(path: &str) -> Reply {
    let path = path.split('?').next().unwrap_or("");
    match path {
        GV => Reply::Json(json!({"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": "wardle.example.com/v1alpha1",
            "resources": [{"name": "flunders", "singularName": "flunder", "namespaced": true,
                "kind": "Flunder", "verbs": ["get", "list"], "shortNames": ["fl"]}]})),
        p if p == format!("{GV}/namespaces/default/flunders") || p == format!("{GV}/flunders") => {
            Reply::Json(
                json!({"kind": "FlunderList", "apiVersion": "wardle.example.com/v1alpha1",
                "metadata": {"resourceVersion": "1"},
                "items": [{"kind": "Flunder", "apiVersion": "wardle.example.com/v1alpha1",
                    "metadata": {"name": "first-flunder", "namespace": "default",
                        "creationTimestamp": "2026-01-01T00:00:00Z"}}]}),
            )
        }
        _ => Reply::Raw(
            404,
            "application/json",
            json!({"kind": "Status", "apiVersion": "v1",
            "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
            .to_string(),
        ),
    }
}

#[test]
fn an_apiservice_is_proxied_discovered_and_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_in(tug_bin!(), &dir.path().join("data"));
    // What extension servers read to trust the API server's proxied requests.
    let auth: Value = serde_json::from_str(&ok(
        &s,
        &[
            "get",
            "configmap",
            "-n",
            "kube-system",
            "extension-apiserver-authentication",
            "-o",
            "json",
        ],
    ))
    .expect("ConfigMap JSON");
    let data = &auth["data"];
    assert_eq!(
        data["requestheader-username-headers"],
        "[\"X-Remote-User\"]"
    );
    assert_eq!(data["requestheader-group-headers"], "[\"X-Remote-Group\"]");
    assert_eq!(
        data["requestheader-allowed-names"],
        "[\"front-proxy-client\"]"
    );
    assert!(
        data["client-ca-file"]
            .as_str()
            .is_some_and(|c| c.contains("BEGIN CERTIFICATE"))
    );
    let requestheader_ca = data["requestheader-client-ca-file"]
        .as_str()
        .expect("request-header CA");

    let backend =
        Server::start_for_clients_of("127.0.0.1", &["api.wardle.svc"], requestheader_ca, |r| {
            answer(&r.path)
        });
    let objects = json!([
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "wardle"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api", "namespace": "wardle"},
            "spec": {"ports": [{"port": 443, "targetPort": backend.port}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "api-1", "namespace": "wardle", "labels": {"kubernetes.io/service-name": "api"}},
            "addressType": "IPv4", "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
            "ports": [{"port": backend.port, "protocol": "TCP"}]},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": "v1alpha1.wardle.example.com"},
            "spec": {"group": "wardle.example.com", "version": "v1alpha1",
                "service": {"namespace": "wardle", "name": "api"}, "caBundle": backend.ca_bundle(),
                "groupPriorityMinimum": 1000, "versionPriority": 15}},
    ]);
    let stream: Vec<String> = objects
        .as_array()
        .into_iter()
        .flatten()
        .map(Value::to_string)
        .collect();
    let o = kubectl(&s, &["apply", "-f", "-"], Some(&stream.join("\n---\n")));
    assert!(o.status.success(), "{}", text(&o));

    // The APIService becomes Available once its server answers discovery.
    eventually_within("the APIService Available", Duration::from_secs(30), || {
        let o = kubectl(
            &s,
            &[
                "get",
                "apiservice",
                "v1alpha1.wardle.example.com",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Available\")].status}",
            ],
            None,
        );
        String::from_utf8_lossy(&o.stdout) == "True"
    });
    // kubectl discovers the group and reaches the server through the API server.
    let resources = ok(&s, &["api-resources", "--api-group", "wardle.example.com"]);
    assert!(
        resources.contains("flunders") && resources.contains("Flunder"),
        "{resources}"
    );
    let got = ok(&s, &["get", "flunders"]);
    assert!(got.contains("first-flunder"), "{got}");
    let got = ok(&s, &["get", "fl", "-o", "name"]);
    assert_eq!(got.trim(), "flunder.wardle.example.com/first-flunder");
    let listed = backend
        .requests()
        .into_iter()
        .find(|r| {
            r.path
                .starts_with(&format!("{GV}/namespaces/default/flunders"))
        })
        .expect("the list reached the aggregated server");
    assert_eq!(
        listed.headers.get("x-remote-user").map(String::as_str),
        Some("admin")
    );
    assert!(
        listed
            .headers
            .get("x-remote-group")
            .is_some_and(|g| g.split(',').any(|g| g == "system:masters")),
        "{:?}",
        listed.headers
    );
    assert!(
        !listed.headers.contains_key("authorization"),
        "the credentials were passed on"
    );
    let groups = ok(&s, &["get", "--raw", "/apis"]);
    assert!(groups.contains("wardle.example.com/v1alpha1"), "{groups}");

    // Deleting the APIService removes the group.
    ok(&s, &["delete", "apiservice", "v1alpha1.wardle.example.com"]);
    eventually_within("the group gone", Duration::from_secs(10), || {
        !ok(&s, &["get", "--raw", "/apis"]).contains("wardle.example.com")
    });
    let o = kubectl(&s, &["get", "flunders"], None);
    assert!(!o.status.success(), "{}", text(&o));
    let o = kubectl(
        &s,
        &["get", "--raw", &format!("{GV}/namespaces/default/flunders")],
        None,
    );
    assert!(
        text(&o).contains("NotFound") || text(&o).contains("not found"),
        "{}",
        text(&o)
    );
}
