//! The real kubectl 1.37 against a running `tug server`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tug_testkit::kubectl::ok_with_input as ok;
use tug_testkit::server::{TugServer, kubectl_path};
use tug_testkit::tug_bin;

/// Runs kubectl against `server`, feeding `stdin` when given.
fn kubectl(server: &TugServer, args: &[&str], stdin: Option<&str>) -> Output {
    tug_testkit::kubectl::kubectl(server, args, stdin)
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn all(o: &Output) -> String {
    format!("{}{}", out(o), String::from_utf8_lossy(&o.stderr))
}

/// Runs kubectl and requires failure; returns stdout and stderr.
fn fails(server: &TugServer, args: &[&str], stdin: Option<&str>) -> String {
    let o = kubectl(server, args, stdin);
    assert!(
        !o.status.success(),
        "kubectl {args:?} should have failed: {}",
        all(&o)
    );
    all(&o)
}

const APP: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  greeting: hello
---
apiVersion: v1
kind: Secret
metadata:
  name: web-secret
data:
  password: aHVudGVyMg==
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1
        ports:
        - containerPort: 8080
"#;

#[test]
fn version_discovery_and_apply() {
    let s = TugServer::start(tug_bin!());
    let v = ok(&s, &["version"], None);
    assert!(v.contains("Server Version: v1.37"), "{v}");
    let res = ok(&s, &["api-resources"], None);
    assert!(
        res.lines()
            .any(|l| l.starts_with("deployments") && l.contains("deploy") && l.contains("apps/v1")),
        "{res}"
    );

    let created = ok(&s, &["apply", "-f", "-"], Some(APP));
    assert_eq!(created.matches(" created").count(), 4, "{created}");
    let again = ok(&s, &["apply", "-f", "-"], Some(APP));
    assert_eq!(again.matches(" unchanged").count(), 4, "{again}");
    let edited = APP.replace("nginx:1", "nginx:2");
    let configured = ok(&s, &["apply", "-f", "-"], Some(&edited));
    assert!(
        configured.contains("deployment.apps/web configured"),
        "{configured}"
    );
    let image = ok(
        &s,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image} {.metadata.generation}",
        ],
        None,
    );
    assert_eq!(image, "nginx:2 2", "the image changed and generation moved");
    // Strategic merge kept the container's other fields.
    let port = ok(
        &s,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].ports[0].containerPort}",
        ],
        None,
    );
    assert_eq!(port, "8080");
    let ssa = ok(&s, &["apply", "--server-side", "-f", "-"], Some(&edited));
    assert_eq!(ssa.matches("serverside-applied").count(), 4, "{ssa}");

    let deploys = ok(&s, &["get", "deploy"], None);
    assert!(
        deploys.contains("READY") && deploys.contains("web"),
        "{deploys}"
    );
    let everything = ok(&s, &["get", "all"], None);
    assert!(
        everything.contains("service/web") && everything.contains("deployment.apps/web"),
        "{everything}"
    );
    let yaml = ok(&s, &["get", "cm", "web-config", "-o", "yaml"], None);
    assert!(
        yaml.contains("greeting: hello") && yaml.contains("resourceVersion:"),
        "{yaml}"
    );
    let json = ok(&s, &["get", "secret", "web-secret", "-o", "json"], None);
    assert!(json.contains("\"kind\": \"Secret\""), "{json}");
    // Defaults were applied, and stringData is folded into data, as Kubernetes does.
    let defaults = ok(
        &s,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.strategy.type} {.spec.template.spec.containers[0].imagePullPolicy} {.spec.template.spec.restartPolicy}",
        ],
        None,
    );
    assert_eq!(defaults, "RollingUpdate IfNotPresent Always");
    ok(
        &s,
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s2\nstringData:\n  k: hunter2\n"),
    );
    let data = ok(
        &s,
        &["get", "secret", "s2", "-o", "jsonpath={.type} {.data.k}"],
        None,
    );
    assert_eq!(data, "Opaque aHVudGVyMg==");
    let wide = ok(&s, &["get", "svc", "-o", "wide"], None);
    assert!(wide.contains("web"), "{wide}");
    let by_label = ok(&s, &["get", "deploy", "-l", "app=web", "-o", "name"], None);
    assert_eq!(by_label.trim(), "deployment.apps/web");
    let none = ok(
        &s,
        &["get", "deploy", "-l", "app=other", "-o", "name"],
        None,
    );
    assert_eq!(none.trim(), "");
    let by_field = ok(
        &s,
        &[
            "get",
            "cm",
            "--field-selector",
            "metadata.name=web-config",
            "-o",
            "name",
        ],
        None,
    );
    assert_eq!(by_field.trim(), "configmap/web-config");
}

#[test]
fn label_annotate_patch_replace_and_delete() {
    let s = TugServer::start(tug_bin!());
    ok(&s, &["apply", "-f", "-"], Some(APP));
    ok(&s, &["label", "cm", "web-config", "tier=front"], None);
    ok(&s, &["annotate", "cm", "web-config", "note=hi"], None);
    let meta = ok(
        &s,
        &[
            "get",
            "cm",
            "web-config",
            "-o",
            "jsonpath={.metadata.labels.tier} {.metadata.annotations.note}",
        ],
        None,
    );
    assert_eq!(meta, "front hi");

    ok(
        &s,
        &[
            "patch",
            "cm",
            "web-config",
            "--type",
            "json",
            "-p",
            r#"[{"op":"add","path":"/data/b","value":"2"}]"#,
        ],
        None,
    );
    ok(
        &s,
        &[
            "patch",
            "cm",
            "web-config",
            "--type",
            "merge",
            "-p",
            r#"{"data":{"c":"3"}}"#,
        ],
        None,
    );
    ok(
        &s,
        &[
            "patch",
            "deploy",
            "web",
            "--type",
            "strategic",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:3"}]}}}}"#,
        ],
        None,
    );
    let data = ok(
        &s,
        &[
            "get",
            "cm",
            "web-config",
            "-o",
            "jsonpath={.data.b}{.data.c}{.data.greeting}",
        ],
        None,
    );
    assert_eq!(data, "23hello");
    let image = ok(
        &s,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}:{.spec.template.spec.containers[0].ports[0].containerPort}",
        ],
        None,
    );
    assert_eq!(image, "nginx:3:8080", "strategic merge by container name");

    // replace with a stale resourceVersion is a conflict.
    let current = ok(&s, &["get", "cm", "web-config", "-o", "json"], None);
    ok(&s, &["label", "cm", "web-config", "bump=1"], None);
    let conflict = fails(&s, &["replace", "-f", "-"], Some(&current));
    assert!(
        conflict.contains("Conflict") || conflict.contains("the object has been modified"),
        "{conflict}"
    );

    // Server-side dry run writes nothing.
    let dry = ok(
        &s,
        &["apply", "--dry-run=server", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dry\n"),
    );
    assert!(dry.contains("dry"), "{dry}");
    let missing = fails(&s, &["get", "cm", "dry"], None);
    assert!(
        missing.contains("NotFound") || missing.contains("not found"),
        "{missing}"
    );

    // An invalid name is refused with the field at fault.
    let bad = fails(
        &s,
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n"),
    );
    assert!(
        bad.contains("metadata.name") && bad.contains("Invalid value"),
        "{bad}"
    );

    let deleted = ok(&s, &["delete", "-f", "-"], Some(APP));
    assert_eq!(deleted.matches("deleted").count(), 4, "{deleted}");
    let gone = ok(&s, &["get", "cm,secret,svc,deploy", "-o", "name"], None);
    // What is left is the cluster CA every namespace holds.
    assert_eq!(gone.trim(), "configmap/kube-root-ca.crt");
}

#[test]
fn chunked_list_is_paged_and_watch_sees_changes() {
    let s = TugServer::start(tug_bin!());
    let many: String = (0..120)
        .map(|i| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:03}\n---\n"))
        .collect();
    ok(&s, &["apply", "-f", "-"], Some(&many));
    let o = kubectl(
        &s,
        &["get", "cm", "--chunk-size=10", "-o", "name", "-v=6"],
        None,
    );
    assert!(o.status.success(), "{}", all(&o));
    assert_eq!(
        out(&o)
            .lines()
            .filter(|l| l.starts_with("configmap/cm-"))
            .count(),
        120
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    let pages = stderr
        .lines()
        .filter(|l| l.contains("limit=10") && l.contains("continue="))
        .count();
    assert!(
        pages >= 11,
        "expected 12 pages of 10, saw {pages} continued requests"
    );

    let mut watch = Command::new(kubectl_path())
        .args(["get", "cm", "-w", "--output-watch-events"])
        .env("KUBECONFIG", &s.kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w");
    let stdout = watch.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // The initial list arrives first; then a change made by another client.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen_initial = 0;
    // A header line, then one ADDED row per existing object.
    while seen_initial < 121 && Instant::now() < deadline {
        if rx.recv_timeout(Duration::from_secs(5)).is_ok() {
            seen_initial += 1;
        }
    }
    ok(&s, &["label", "cm", "cm-007", "changed=yes"], None);
    let mut saw = false;
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(line) if line.contains("MODIFIED") && line.contains("cm-007") => {
                saw = true;
                break;
            }
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(saw, "kubectl get -w did not show the change");
}

#[test]
fn deleting_a_namespace_removes_everything_in_it_and_restart_keeps_objects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut s = TugServer::start_in(tug_bin!(), &data);
    ok(
        &s,
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: doomed\n"),
    );
    ok(&s, &["apply", "-n", "doomed", "-f", "-"], Some(APP));
    ok(
        &s,
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keeper\n"),
    );
    // Writes into a missing namespace fail.
    let missing = fails(
        &s,
        &["apply", "-n", "nowhere", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"),
    );
    assert!(missing.contains("not found"), "{missing}");

    ok(
        &s,
        &[
            "delete",
            "namespace",
            "doomed",
            "--wait=true",
            "--timeout=30s",
        ],
        None,
    );
    let ns = fails(&s, &["get", "ns", "doomed"], None);
    assert!(ns.contains("not found"), "{ns}");
    let left = ok(
        &s,
        &["get", "cm,deploy,svc,secret", "-n", "doomed", "-o", "name"],
        None,
    );
    assert_eq!(left.trim(), "", "everything in the namespace is gone");

    // A restart keeps every object.
    s.kill();
    let s = TugServer::start_in(tug_bin!(), &data);
    let kept = ok(&s, &["get", "cm", "keeper", "-o", "name"], None);
    assert_eq!(kept.trim(), "configmap/keeper");
    let namespaces = ok(&s, &["get", "ns", "-o", "name"], None);
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(
            namespaces.contains(&format!("namespace/{n}")),
            "{namespaces}"
        );
    }
}

#[test]
fn explain_and_server_side_field_validation() {
    let s = TugServer::start(tug_bin!());
    let explain = ok(&s, &["explain", "deployment.spec.replicas"], None);
    assert!(explain.contains("FIELD: replicas <integer>"), "{explain}");
    assert!(explain.contains("Number of desired pods"), "{explain}");
    let bogus = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: strict\nbogus: 1\n";
    let refused = fails(&s, &["apply", "-f", "-"], Some(bogus));
    assert!(
        refused.contains(r#"strict decoding error: unknown field "bogus""#),
        "{refused}"
    );
    let warned = kubectl(&s, &["apply", "--validate=warn", "-f", "-"], Some(bogus));
    assert!(warned.status.success(), "{}", all(&warned));
    assert!(
        all(&warned).contains(r#"Warning: unknown field "bogus""#),
        "{}",
        all(&warned)
    );
    let stored: serde_json::Value =
        serde_json::from_str(&ok(&s, &["get", "cm", "strict", "-o", "json"], None)).expect("json");
    assert!(
        stored.get("bogus").is_none(),
        "unknown fields are dropped: {stored}"
    );
    let bad_field = fails(&s, &["get", "cm", "--field-selector", "spec.nope=1"], None);
    assert!(
        bad_field.contains("field label not supported"),
        "{bad_field}"
    );
}

#[test]
fn create_subcommands_and_auth_send_protobuf() {
    let s = TugServer::start(tug_bin!());
    ok(&s, &["create", "namespace", "made"], None);
    ok(
        &s,
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx:3",
            "--replicas=3",
            "-n",
            "made",
        ],
        None,
    );
    ok(
        &s,
        &[
            "create",
            "configmap",
            "cfg",
            "--from-literal=a=b",
            "-n",
            "made",
        ],
        None,
    );
    ok(
        &s,
        &[
            "create",
            "secret",
            "generic",
            "sec",
            "--from-literal=p=hunter2",
            "-n",
            "made",
        ],
        None,
    );
    let d = ok(
        &s,
        &[
            "get",
            "deploy",
            "web",
            "-n",
            "made",
            "-o",
            "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image} {.spec.selector.matchLabels.app}",
        ],
        None,
    );
    assert_eq!(d, "3 nginx:3 web");
    assert_eq!(
        ok(
            &s,
            &["get", "cm", "cfg", "-n", "made", "-o", "jsonpath={.data.a}"],
            None
        ),
        "b"
    );
    assert_eq!(
        ok(
            &s,
            &[
                "get",
                "secret",
                "sec",
                "-n",
                "made",
                "-o",
                "jsonpath={.data.p}"
            ],
            None
        ),
        "aHVudGVyMg=="
    );
    let dry = ok(
        &s,
        &[
            "create",
            "configmap",
            "dry",
            "--from-literal=a=b",
            "--dry-run=server",
            "-o",
            "name",
        ],
        None,
    );
    assert_eq!(dry.trim(), "configmap/dry");
    assert!(fails(&s, &["get", "cm", "dry"], None).contains("not found"));
    assert_eq!(
        ok(&s, &["auth", "can-i", "create", "pods"], None).trim(),
        "yes"
    );
    let whoami = ok(&s, &["auth", "whoami"], None);
    assert!(
        whoami.contains("admin") && whoami.contains("system:masters"),
        "{whoami}"
    );
    // kubectl prefers protobuf answers, and decodes ours: the object it prints from the
    // create response is the one the server stored.
    let traced = kubectl(
        &s,
        &[
            "create",
            "service",
            "clusterip",
            "pb",
            "--tcp=80:8080",
            "-o",
            "json",
            "-v=8",
        ],
        None,
    );
    assert!(traced.status.success(), "{traced:?}");
    let trace = String::from_utf8_lossy(&traced.stderr);
    assert!(
        trace.contains("Content-Type: application/vnd.kubernetes.protobuf")
            && trace.contains("status=\"201 Created\""),
        "{trace}"
    );
    let created: serde_json::Value =
        serde_json::from_slice(&traced.stdout).expect("created service");
    let stored: serde_json::Value =
        serde_json::from_str(&ok(&s, &["get", "svc", "pb", "-o", "json"], None)).expect("json");
    assert_eq!(created["spec"], stored["spec"]);
    assert_eq!(created["metadata"]["uid"], stored["metadata"]["uid"]);
    assert!(
        created["spec"]["clusterIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10."))
    );
    // Errors come back as protobuf Statuses, which kubectl reads as well.
    let again = fails(
        &s,
        &["create", "service", "clusterip", "pb", "--tcp=80:8080"],
        None,
    );
    assert!(
        again.contains("failed to create ClusterIP service: services \"pb\" already exists"),
        "{again}"
    );
}

#[test]
fn scale_and_diff() {
    let s = TugServer::start(tug_bin!());
    ok(&s, &["apply", "-f", "-"], Some(APP));
    let scaled = ok(&s, &["scale", "deploy", "web", "--replicas=5"], None);
    assert!(scaled.contains("scaled"), "{scaled}");
    assert_eq!(
        ok(
            &s,
            &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"],
            None
        ),
        "5"
    );
    let scale = ok(
        &s,
        &[
            "get",
            "--raw",
            "/apis/apps/v1/namespaces/default/deployments/web/scale",
        ],
        None,
    );
    let scale: serde_json::Value = serde_json::from_str(&scale).expect("scale json");
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 5);
    assert_eq!(scale["status"]["selector"], "app=web");
    let negative = fails(&s, &["scale", "deploy", "web", "--replicas=-1"], None);
    assert!(negative.contains("replicas"), "{negative}");
    // diff shows what apply would change, and changes nothing.
    let o = kubectl(
        &s,
        &["diff", "-f", "-"],
        Some(&APP.replace("nginx:1", "nginx:9")),
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "diff exits 1 when there are differences: {}",
        all(&o)
    );
    assert!(
        out(&o)
            .lines()
            .any(|l| l.starts_with('+') && l.contains("image: nginx:9")),
        "{}",
        out(&o)
    );
    let image = ok(
        &s,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
        None,
    );
    assert_eq!(image, "nginx:1");
}

#[test]
fn server_side_apply_owns_fields_conflicts_and_forces() {
    let s = TugServer::start(tug_bin!());
    let full = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ssa\n  labels:\n    app: ssa\n    extra: \"yes\"\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: ssa\n  template:\n    metadata:\n      labels:\n        app: ssa\n    spec:\n      containers:\n      - name: web\n        image: nginx:1\n      - name: side\n        image: busybox\n";
    let trimmed = full
        .replace("    extra: \"yes\"\n", "")
        .replace("      - name: side\n        image: busybox\n", "");
    ok(&s, &["apply", "--server-side", "-f", "-"], Some(full));
    ok(&s, &["apply", "--server-side", "-f", "-"], Some(&trimmed));
    let got = ok(
        &s,
        &[
            "get",
            "deploy",
            "ssa",
            "-o",
            "jsonpath={.metadata.labels} {.spec.template.spec.containers[*].name}",
        ],
        None,
    );
    assert_eq!(
        got, r#"{"app":"ssa"} web"#,
        "fields no longer applied are removed"
    );
    let managed = ok(
        &s,
        &[
            "get",
            "deploy",
            "ssa",
            "-o",
            "jsonpath={.metadata.managedFields[?(@.manager==\"kubectl\")].operation}",
        ],
        None,
    );
    assert_eq!(managed, "Apply");

    // Another manager takes replicas; applying a different value then conflicts.
    ok(
        &s,
        &[
            "patch",
            "deploy",
            "ssa",
            "--field-manager=autoscaler",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"replicas":5}}"#,
        ],
        None,
    );
    let conflict = fails(&s, &["apply", "--server-side", "-f", "-"], Some(&trimmed));
    assert!(
        conflict.contains(r#".spec.replicas: conflict with "autoscaler""#),
        "{conflict}"
    );
    assert_eq!(
        ok(
            &s,
            &["get", "deploy", "ssa", "-o", "jsonpath={.spec.replicas}"],
            None
        ),
        "5"
    );
    ok(
        &s,
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        Some(&trimmed),
    );
    assert_eq!(
        ok(
            &s,
            &["get", "deploy", "ssa", "-o", "jsonpath={.spec.replicas}"],
            None
        ),
        "2"
    );
}

#[test]
fn one_request_cannot_destroy_what_the_cluster_needs() {
    let dir = tempfile::tempdir().expect("tempdir");
    // An advertise address: the server publishes the kubernetes Service.
    let s = TugServer::start_with(
        tug_bin!(),
        &dir.path().join("data"),
        &[
            "--advertise-address",
            "127.0.0.1",
            "--cluster-dns-port",
            "0",
        ],
    );
    // The immortal namespaces, as Kubernetes' NamespaceLifecycle admission keeps them: dry
    // runs are refused too.
    for ns in ["default", "kube-system", "kube-public"] {
        for dry_run in [None, Some("--dry-run=server")] {
            let mut args = vec!["delete", "namespace", ns];
            args.extend(dry_run);
            let err = fails(&s, &args, None);
            assert!(
                err.contains(&format!(
                    "Error from server (Forbidden): namespaces \"{ns}\" is forbidden: this namespace may not be deleted"
                )),
                "{err}"
            );
        }
    }
    let raw = kubectl(
        &s,
        &["get", "--raw", "/api/v1/namespaces/kube-system"],
        None,
    );
    assert!(out(&raw).contains("\"phase\":\"Active\""), "{}", all(&raw));
    // Namespaces are not deleted as a collection: the verb is not theirs.
    let err = fails(&s, &["delete", "--raw", "/api/v1/namespaces"], None);
    assert!(
        err.contains("the server does not allow this method on the requested resource"),
        "{err}"
    );
    let discovery = ok(&s, &["get", "--raw", "/api/v1"], None);
    let discovery: serde_json::Value = serde_json::from_str(&discovery).expect("discovery");
    let verbs = discovery["resources"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == "namespaces"))
        .map(|r| r["verbs"].clone())
        .unwrap_or_default();
    assert_eq!(
        verbs,
        serde_json::json!([
            "create", "delete", "get", "list", "patch", "update", "watch"
        ])
    );
    // `delete ns --all` goes one by one: the others go, the immortal ones stay, and
    // kube-node-lease (not immortal, as in Kubernetes) comes straight back.
    ok(&s, &["create", "namespace", "scratch"], None);
    let err = fails(&s, &["delete", "namespace", "--all", "--wait=false"], None);
    assert!(err.contains("may not be deleted"), "{err}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let names = ok(&s, &["get", "ns", "-o", "name"], None);
        // Between its deletion and its return, kube-node-lease is NotFound: not yet.
        let active = out(&kubectl(
            &s,
            &[
                "get",
                "ns",
                "kube-node-lease",
                "-o",
                "jsonpath={.status.phase}",
            ],
            None,
        ));
        if !names.contains("namespace/scratch") && active == "Active" {
            for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                assert!(names.contains(&format!("namespace/{n}")), "{names}");
            }
            break;
        }
        assert!(Instant::now() < deadline, "namespaces: {names}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The system PriorityClasses.
    for class in ["system-node-critical", "system-cluster-critical"] {
        let err = fails(&s, &["delete", "priorityclass", class], None);
        assert!(
            err.contains(&format!(
                "priorityclasses.scheduling.k8s.io \"{class}\" is forbidden: this is a system priority class and cannot be deleted"
            )),
            "{err}"
        );
    }
    // The `kubernetes` Service and its EndpointSlice come back, as kube-apiserver brings them.
    let uid = |what: &str| {
        out(&kubectl(
            &s,
            &["get", what, "kubernetes", "-o", "jsonpath={.metadata.uid}"],
            None,
        ))
    };
    let (svc, slice) = (uid("service"), uid("endpointslice"));
    assert!(!svc.is_empty() && !slice.is_empty(), "not published");
    ok(&s, &["delete", "service", "kubernetes"], None);
    ok(&s, &["delete", "endpointslice", "kubernetes"], None);
    let deadline = Instant::now() + Duration::from_secs(15);
    while [uid("service"), uid("endpointslice")]
        .iter()
        .zip([&svc, &slice])
        .any(|(now, before)| now.is_empty() || now == before)
    {
        assert!(
            Instant::now() < deadline,
            "the kubernetes Service was not published again"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let ip = ok(
        &s,
        &[
            "get",
            "svc",
            "kubernetes",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
        None,
    );
    assert_eq!(ip, "10.96.0.1");
}
