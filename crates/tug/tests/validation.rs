//! Field validation as kube-apiserver answers it, seen through kubectl: the paths, the words
//! and the status codes of refused objects of the main kinds.

use tug_testkit::kubectl::apply;
use tug_testkit::server::TugServer;
use tug_testkit::tug_bin;

/// What kubectl prints when the server refuses `yaml`.
fn refused(s: &TugServer, yaml: &str) -> String {
    let out = tug_testkit::kubectl::kubectl(s, &["create", "-f", "-"], Some(yaml));
    assert!(!out.status.success(), "the server took:\n{yaml}");
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Field checks of the main kinds answer with kube-apiserver's paths and words, as kubectl
/// prints them; a quantity that does not parse is a decoding error (400).
#[test]
fn field_checks_are_worded_as_kube_apiserver_words_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_in(tug_bin!(), &dir.path().join("data"));
    let cases: &[(&str, &[&str])] = &[
        (
            r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
              "spec": {"replicas": -1, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                  {"name": "c", "image": "busybox", "ports": [{"containerPort": 70000, "name": "web_port"}],
                   "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}]}}}}"#,
            &[
                "The Deployment \"web\" is invalid: ",
                "* spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "* spec.template.spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "* spec.template.spec.containers[0].ports[0].name: Invalid value: \"web_port\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                "* spec.template.spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
            ],
        ),
        (
            r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"},
              "spec": {"type": "Funnel", "ports": [{"port": 80}, {"port": 81, "protocol": "HTTP"}]}}"#,
            &[
                "* spec.ports[0].name: Required value",
                "* spec.ports[1].name: Required value",
                "* spec.ports[1].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "* spec.type: Unsupported value: \"Funnel\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
            ],
        ),
        (
            r#"{"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"},
              "spec": {"schedule": "61 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Always", "containers": [{"name": "c", "image": "busybox"}]}}}}}}"#,
            &[
                "* spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61",
                "* spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"",
            ],
        ),
        (
            r#"{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
              "spec": {"resources": {"requests": {"storage": "0"}}}}"#,
            &[
                "* spec.accessModes: Required value: at least 1 access mode is required",
                "* spec.resources[storage]: Invalid value: \"0\": must be greater than zero",
            ],
        ),
        (
            r#"{"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "ing"},
              "spec": {"rules": [{"host": "example.com", "http": {"paths": [{"path": "api",
                "pathType": "Prefix", "backend": {"service": {"name": "svc", "port": {"number": 80}}}}]}}]}}"#,
            &[
                "The Ingress \"ing\" is invalid: spec.rules[0].http.paths[0].path: Invalid value: \"api\": must be an absolute path",
            ],
        ),
        (
            r#"{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "np"},
              "spec": {"podSelector": {}, "ingress": [{"ports": [{"protocol": "ICMP"}]}]}}"#,
            &[
                "The NetworkPolicy \"np\" is invalid: spec.ingress[0].ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"TCP\", \"UDP\", \"SCTP\"",
            ],
        ),
        (
            r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
              "spec": {"containers": [{"name": "c", "image": "busybox",
                "resources": {"limits": {"memory": "lots"}}}]}}"#,
            &[
                "Error from server (BadRequest): error when creating \"STDIN\": Pod in version \"v1\" cannot be handled as a Pod: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            ],
        ),
    ];
    for (yaml, lines) in cases {
        let err = refused(&s, yaml);
        for line in *lines {
            assert!(
                err.lines().any(|l| l == *line || l.ends_with(line)),
                "missing {line:?} in:\n{err}"
            );
        }
    }
    // A valid object of each kind still goes in.
    apply(
        &s,
        r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "fine"},
          "spec": {"ports": [{"name": "web", "port": 80, "targetPort": "http"}, {"name": "dns", "port": 53, "protocol": "UDP"}]}}"#,
    );
}
