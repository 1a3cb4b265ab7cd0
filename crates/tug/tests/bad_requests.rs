//! Bad requests get the right code and a Status body, and the server keeps serving.

use std::process::Command;

use serde_json::Value;
use tug_testkit::server::TugServer;
use tug_testkit::tug_bin;

struct Client<'a> {
    server: &'a TugServer,
    token: String,
}

impl Client<'_> {
    /// Sends a request with curl; returns the status code and the parsed body.
    fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&[u8]>,
        auth: bool,
        accept: Option<&str>,
    ) -> (u16, Value) {
        let dir = tempfile::tempdir().expect("tempdir");
        let body_file = dir.path().join("body");
        let out_file = dir.path().join("out");
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-o"])
            .arg(&out_file)
            .args(["-w", "%{http_code}", "-X", method, "--cacert"])
            .arg(self.server.data_dir.join("pki/ca.crt"))
            .args(["-H", &format!("Content-Type: {content_type}")]);
        if auth {
            cmd.args(["-H", &format!("Authorization: Bearer {}", self.token)]);
        }
        if let Some(a) = accept {
            cmd.args(["-H", &format!("Accept: {a}")]);
        }
        if let Some(b) = body {
            std::fs::write(&body_file, b).expect("write body");
            cmd.arg("--data-binary")
                .arg(format!("@{}", body_file.display()));
        }
        cmd.arg(format!("{}{path}", self.server.url));
        let o = cmd.output().expect("run curl (apt-get install curl)");
        let code: u16 = String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        let text = std::fs::read_to_string(&out_file).unwrap_or_default();
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// (description, method, path, content type, body, authenticated, accept, expected code, reason)
type Case<'a> = (
    &'a str,
    &'a str,
    String,
    &'a str,
    Option<Vec<u8>>,
    bool,
    Option<&'a str>,
    u16,
    &'a str,
);

const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[test]
fn bad_requests_get_status_errors_and_the_server_keeps_serving() {
    let server = TugServer::start(tug_bin!());
    let token = std::fs::read_to_string(server.data_dir.join("token")).expect("token");
    let c = Client {
        server: &server,
        token: token.trim().to_string(),
    };
    let json = "application/json";
    let cm = |name: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}},"data":{{"a":"1"}}}}"#
        )
    };
    let (code, _) = c.send("POST", CMS, json, Some(cm("exists").as_bytes()), true, None);
    assert_eq!(code, 201);
    let existing = c
        .send("GET", &format!("{CMS}/exists"), json, None, true, None)
        .1;
    let stale = existing.clone();
    let (code, _) = c.send(
        "PATCH",
        &format!("{CMS}/exists"),
        "application/merge-patch+json",
        Some(br#"{"data":{"b":"2"}}"#),
        true,
        None,
    );
    assert_eq!(code, 200);
    let big = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"a":"{}"}}}}"#,
        "x".repeat(4 << 20)
    );

    let cases: Vec<Case> = vec![
        ("invalid JSON", "POST", CMS.into(), json, Some(b"{not json".to_vec()), true, None, 400, "BadRequest"),
        ("invalid YAML", "POST", CMS.into(), "application/yaml", Some(b"a: [unclosed".to_vec()), true, None, 400, "BadRequest"),
        ("empty body", "POST", CMS.into(), json, Some(Vec::new()), true, None, 400, "BadRequest"),
        ("a body that is not an object", "POST", CMS.into(), json, Some(b"[1,2]".to_vec()), true, None, 400, "BadRequest"),
        ("kind not matching the URL", "POST", CMS.into(), json, Some(br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"}}"#.to_vec()), true, None, 400, "BadRequest"),
        ("apiVersion not matching the URL", "POST", CMS.into(), json, Some(br#"{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"s"}}"#.to_vec()), true, None, 400, "BadRequest"),
        ("namespace not matching the URL", "POST", CMS.into(), json, Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"s","namespace":"kube-system"}}"#.to_vec()), true, None, 400, "BadRequest"),
        ("name not matching the URL", "PUT", format!("{CMS}/exists"), json, Some(cm("other").into_bytes()), true, None, 400, "BadRequest"),
        ("oversized body", "POST", CMS.into(), json, Some(big.into_bytes()), true, None, 413, "RequestEntityTooLarge"),
        ("unknown field with Strict", "POST", format!("{CMS}?fieldValidation=Strict"), json, Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"s"},"bogus":1}"#.to_vec()), true, None, 400, "BadRequest"),
        ("invalid fieldValidation", "POST", format!("{CMS}?fieldValidation=Loose"), json, Some(cm("s").into_bytes()), true, None, 400, "BadRequest"),
        ("invalid dryRun", "POST", format!("{CMS}?dryRun=Some"), json, Some(cm("s").into_bytes()), true, None, 400, "BadRequest"),
        ("patch of a missing object", "PATCH", format!("{CMS}/missing"), "application/merge-patch+json", Some(b"{}".to_vec()), true, None, 404, "NotFound"),
        ("JSON patch that is not a list", "PATCH", format!("{CMS}/exists"), "application/json-patch+json", Some(b"{}".to_vec()), true, None, 400, "BadRequest"),
        ("JSON patch test that fails", "PATCH", format!("{CMS}/exists"), "application/json-patch+json", Some(br#"[{"op":"test","path":"/data/a","value":"nope"}]"#.to_vec()), true, None, 422, "Invalid"),
        ("unsupported patch type", "PATCH", format!("{CMS}/exists"), "text/plain", Some(b"x".to_vec()), true, None, 415, "UnsupportedMediaType"),
        ("unsupported body type", "POST", CMS.into(), "application/xml", Some(b"<x/>".to_vec()), true, None, 415, "UnsupportedMediaType"),
        ("malformed label selector", "GET", format!("{CMS}?labelSelector=a%20in%20b"), json, None, true, None, 400, "BadRequest"),
        ("malformed field selector", "GET", format!("{CMS}?fieldSelector=metadata.name"), json, None, true, None, 400, "BadRequest"),
        ("unsupported field selector", "GET", format!("{CMS}?fieldSelector=spec.x%3D1"), json, None, true, None, 400, "BadRequest"),
        ("invalid limit", "GET", format!("{CMS}?limit=many"), json, None, true, None, 400, "BadRequest"),
        ("invalid continue token", "GET", format!("{CMS}?limit=1&continue=%21%21"), json, None, true, None, 400, "BadRequest"),
        ("unknown resource", "GET", "/api/v1/namespaces/default/widgets".into(), json, None, true, None, 404, "NotFound"),
        ("unknown subpath", "GET", "/api/v1/namespaces/default/configmaps/exists/nope".into(), json, None, true, None, 404, "NotFound"),
        ("missing object", "GET", format!("{CMS}/missing"), json, None, true, None, 404, "NotFound"),
        ("create of an existing object", "POST", CMS.into(), json, Some(cm("exists").into_bytes()), true, None, 409, "AlreadyExists"),
        ("update with a stale resourceVersion", "PUT", format!("{CMS}/exists"), json, Some(stale.to_string().into_bytes()), true, None, 409, "Conflict"),
        ("invalid name", "POST", CMS.into(), json, Some(cm("Bad_Name").into_bytes()), true, None, 422, "Invalid"),
        ("invalid label value", "POST", CMS.into(), json, Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"l","labels":{"a":"has space"}}}"#.to_vec()), true, None, 422, "Invalid"),
        ("create in a missing namespace", "POST", "/api/v1/namespaces/nowhere/configmaps".into(), json, Some(cm("s").into_bytes()), true, None, 404, "NotFound"),
        ("PUT on a collection", "PUT", CMS.into(), json, Some(cm("s").into_bytes()), true, None, 405, "MethodNotAllowed"),
        ("unacceptable Accept", "GET", CMS.into(), json, None, true, Some("application/xml"), 406, "NotAcceptable"),
        ("no credentials: the anonymous user, refused", "GET", CMS.into(), json, None, false, None, 403, "Forbidden"),
    ];
    assert!(cases.len() >= 20);
    for (what, method, path, ct, body, auth, accept, code, reason) in cases {
        let (got, status) = c.send(method, &path, ct, body.as_deref(), auth, accept);
        assert_eq!(got, code, "{what}: {status}");
        assert_eq!(status["kind"], "Status", "{what}: {status}");
        assert_eq!(status["code"], code, "{what}: {status}");
        assert_eq!(status["reason"], reason, "{what}: {status}");
    }
    // A wrong token is refused too.
    let wrong = Client {
        server: &server,
        token: "wrong".into(),
    };
    assert_eq!(wrong.send("GET", CMS, json, None, true, None).0, 401);
    // The invalid-name error names the field.
    let (_, invalid) = c.send(
        "POST",
        CMS,
        json,
        Some(cm("Bad_Name").as_bytes()),
        true,
        None,
    );
    assert_eq!(invalid["details"]["causes"][0]["field"], "metadata.name");
    // Every request was counted, by code, on /metrics.
    let (code, metrics) = c.send("GET", "/metrics", json, None, true, None);
    assert_eq!(code, 200);
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    assert!(
        metrics
            .contains(r#"apiserver_request_total{verb="post",resource="configmaps",code="422"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("apiserver_request_duration_seconds_bucket"),
        "{metrics}"
    );
    // Still serving, and nothing half-written.
    assert_eq!(c.send("GET", "/healthz", json, None, false, None).0, 200);
    let list = c.send("GET", CMS, json, None, true, None).1;
    let names: Vec<&str> = list["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["metadata"]["name"].as_str())
                // Every namespace holds the cluster CA too.
                .filter(|n| *n != "kube-root-ca.crt")
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(names, vec!["exists"]);
}
