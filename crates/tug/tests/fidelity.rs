//! Answers a client could tell from kube-apiserver's: Tables with the wide columns and the
//! rows' objects as `includeObject` asks, metadata-only objects for metadata clients, and the
//! status code of a server-side apply that creates. Driven by kubectl and kube-rs.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::{Value, json};
use tug_testkit::kubectl::{apply, eventually, jsonpath, ok};
use tug_testkit::server::TugServer;
use tug_testkit::tug_bin;

fn server(dir: &tempfile::TempDir) -> TugServer {
    TugServer::start_with(
        tug_bin!(),
        &dir.path().join("data"),
        &["--simulated-nodes", "1"],
    )
}

/// The header line of kubectl's output, split into its column names.
fn header(out: &str) -> Vec<String> {
    let first = out.lines().next().unwrap_or("");
    first
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn kubectl_sorts_tables_by_object_fields_and_shows_the_wide_columns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(&dir);
    // Two events, the later one created first: --sort-by needs each row's whole object
    // (includeObject=Object), not its metadata.
    for (name, reason, last) in [
        ("second", "SecondThing", "2026-01-02T00:00:00Z"),
        ("first", "FirstThing", "2026-01-01T00:00:00Z"),
    ] {
        apply(
            &s,
            &format!(
                "apiVersion: v1\nkind: Event\nmetadata: {{name: {name}}}\ninvolvedObject: {{kind: Pod, name: p, namespace: default}}\nreason: {reason}\nmessage: m\ntype: Normal\nfirstTimestamp: \"{last}\"\nlastTimestamp: \"{last}\"\ncount: 1\nsource: {{component: tester}}\n"
            ),
        );
    }
    let sorted = ok(&s, &["get", "events", "--sort-by=.lastTimestamp"]);
    let first = sorted.find("FirstThing");
    let second = sorted.find("SecondThing");
    assert!(
        first.is_some() && second.is_some() && first < second,
        "{sorted}"
    );
    let wide = ok(&s, &["get", "events", "-o", "wide"]);
    assert_eq!(
        header(&wide),
        [
            "LAST SEEN",
            "TYPE",
            "REASON",
            "OBJECT",
            "SUBOBJECT",
            "SOURCE",
            "MESSAGE",
            "FIRST SEEN",
            "COUNT",
            "NAME"
        ],
        "{wide}"
    );

    // Pods: IP, node, nominated node and readiness gates.
    apply(
        &s,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - {name: httpd, image: busybox}\n      - {name: side, image: nginx}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n",
    );
    eventually("the pod to run", || {
        !jsonpath(&s, &["pods", "-l", "app=web"], "{.items[0].status.podIP}").is_empty()
    });
    let pods = ok(&s, &["get", "pods", "-o", "wide"]);
    assert_eq!(
        header(&pods),
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED NODE",
            "READINESS GATES"
        ],
        "{pods}"
    );
    let ip = jsonpath(&s, &["pods", "-l", "app=web"], "{.items[0].status.podIP}");
    let node = jsonpath(&s, &["pods", "-l", "app=web"], "{.items[0].spec.nodeName}");
    let row = pods.lines().nth(1).unwrap_or("");
    assert!(
        row.contains(&ip) && row.contains(&node) && row.contains("<none>"),
        "{pods}"
    );

    // The scheduler tells of the binding, as kube-scheduler does.
    let pod = jsonpath(&s, &["pods", "-l", "app=web"], "{.items[0].metadata.name}");
    let assigned = format!("Successfully assigned default/{pod} to {node}");
    eventually("the Scheduled event", || {
        ok(&s, &["get", "events", "-o", "wide"]).lines().any(|l| {
            l.contains("Scheduled") && l.contains(&assigned) && l.contains("default-scheduler")
        })
    });

    let deploy = ok(&s, &["get", "deploy", "-o", "wide"]);
    assert_eq!(
        header(&deploy),
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ],
        "{deploy}"
    );
    assert!(
        deploy.contains("httpd,side")
            && deploy.contains("busybox,nginx")
            && deploy.contains("app=web"),
        "{deploy}"
    );
    let rs = ok(&s, &["get", "rs", "-o", "wide"]);
    assert!(
        header(&rs).ends_with(&["CONTAINERS".into(), "IMAGES".into(), "SELECTOR".into()]),
        "{rs}"
    );
    assert!(rs.contains("app=web,pod-template-hash="), "{rs}");
    let svc = ok(&s, &["get", "svc", "web", "-o", "wide"]);
    assert_eq!(
        header(&svc).last().map(String::as_str),
        Some("SELECTOR"),
        "{svc}"
    );
    assert!(svc.contains("app=web"), "{svc}");
    let nodes = ok(&s, &["get", "nodes", "-o", "wide"]);
    assert_eq!(
        header(&nodes),
        [
            "NAME",
            "STATUS",
            "ROLES",
            "AGE",
            "VERSION",
            "INTERNAL-IP",
            "EXTERNAL-IP",
            "OS-IMAGE",
            "KERNEL-VERSION",
            "CONTAINER-RUNTIME"
        ],
        "{nodes}"
    );
    assert!(nodes.contains("v1.37.0-tugboat-hollow"), "{nodes}");

    // APIService objects exist (aggregation itself is not served yet).
    apply(
        &s,
        "apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata: {name: v1beta1.metrics.k8s.io}\nspec:\n  group: metrics.k8s.io\n  version: v1beta1\n  groupPriorityMinimum: 100\n  versionPriority: 100\n  insecureSkipTLSVerify: true\n  service: {name: metrics-server, namespace: kube-system}\n",
    );
    let services = ok(&s, &["get", "apiservices"]);
    assert_eq!(
        header(&services),
        ["NAME", "SERVICE", "AVAILABLE", "AGE"],
        "{services}"
    );
    assert!(
        services.contains("v1beta1.metrics.k8s.io")
            && services.contains("kube-system/metrics-server"),
        "{services}"
    );
    // Every built-in group-version has its local APIService, available, as kube-apiserver
    // registers them.
    for name in [
        "v1.",
        "v1.apps",
        "v2.autoscaling",
        "v1.apiregistration.k8s.io",
    ] {
        let row = services
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_default();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells.get(1..3),
            Some(&["Local", "True"][..]),
            "{name}: {services}"
        );
    }
    assert_eq!(
        jsonpath(
            &s,
            &["apiservice", "v1.apps"],
            "{.spec.group} {.spec.groupPriorityMinimum} {.spec.versionPriority} {.status.conditions[0].reason}"
        ),
        "apps 17800 15 Local"
    );
    // An APIService is named after its version and group.
    let wrong = tug_testkit::kubectl::kubectl(
        &s,
        &["apply", "-f", "-"],
        Some(
            "apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata: {name: wrong}\nspec: {group: x.io, version: v1, groupPriorityMinimum: 1, versionPriority: 1}\n",
        ),
    );
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        err.contains("metadata.name: Invalid value: \"wrong\": must be `spec.version+\".\"+spec.group`: \"v1.x.io\""),
        "{err}"
    );
}

async fn client(server: &TugServer) -> Client {
    let kc = Kubeconfig::read_from(&server.kubeconfig).expect("read kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kube config");
    Client::try_from(config).expect("kube client")
}

/// A raw request: its status code and JSON body.
async fn send(
    client: &Client,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = http::Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(body).expect("request");
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .expect("send");
    let code = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect_bytes()
        .await
        .expect("read the body");
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_clients_get_metadata_and_tables_carry_what_they_ask() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(&dir);
    let c = client(&s).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("meta".into());
    cm.metadata.labels = Some([("app".to_string(), "x".to_string())].into());
    cm.data = Some([("secret".to_string(), "value".to_string())].into());
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create");

    // kube-rs' metadata API: get, list and watch of PartialObjectMetadata.
    let got = cms.get_metadata("meta").await.expect("get_metadata");
    let types = got.types.clone().expect("types");
    assert_eq!(types.kind, "PartialObjectMetadata");
    assert_eq!(types.api_version, "meta.k8s.io/v1");
    assert_eq!(got.metadata.labels, cm.metadata.labels);
    let listed = cms
        .list_metadata(&ListParams::default().labels("app=x"))
        .await
        .expect("list_metadata");
    assert_eq!(listed.items.len(), 1);
    assert_eq!(
        listed.items[0].types.as_ref().map(|t| t.kind.as_str()),
        Some("PartialObjectMetadata")
    );
    let rv = listed.metadata.resource_version.clone().unwrap_or_default();
    let mut watch = cms
        .watch_metadata(&WatchParams::default().labels("app=x").timeout(10), &rv)
        .await
        .expect("watch_metadata")
        .boxed();
    let mut changed = cm.clone();
    changed.data = Some([("secret".to_string(), "other".to_string())].into());
    cms.replace("meta", &PostParams::default(), &{
        let mut c = changed;
        c.metadata.resource_version = got.metadata.resource_version.clone();
        c
    })
    .await
    .expect("replace");
    let ev = tokio::time::timeout(Duration::from_secs(10), watch.try_next())
        .await
        .expect("an event in time")
        .expect("a watch event")
        .expect("not the end");
    match ev {
        WatchEvent::Modified(p) => {
            assert_eq!(
                p.types.map(|t| t.kind),
                Some("PartialObjectMetadata".to_string())
            )
        }
        other => panic!("wanted a modification after {rv:?}, got {other:?}"),
    }

    // What the bytes say: metadata only, no data.
    let path = "/api/v1/namespaces/default/configmaps";
    let (code, one) = send(
        &c,
        "GET",
        &format!("{path}/meta"),
        &[(
            "Accept",
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1beta1",
        )],
        Vec::new(),
    )
    .await;
    assert_eq!(code, 200, "{one}");
    assert_eq!(one["apiVersion"], "meta.k8s.io/v1beta1");
    assert!(one.get("data").is_none(), "{one}");
    // The wrong shape for the endpoint is a 406, as kube-apiserver words it.
    let (code, status) = send(
        &c,
        "GET",
        path,
        &[(
            "Accept",
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
        )],
        Vec::new(),
    )
    .await;
    assert_eq!(code, 406, "{status}");
    assert_eq!(status["reason"], "NotAcceptable");
    assert_eq!(
        status["message"],
        "you requested PartialObjectMetadata, but the requested object is a list (*core.ConfigMapList)"
    );

    // Tables: the rows' objects as includeObject asks; a bad value is a 400.
    let table = "application/json;as=Table;v=v1;g=meta.k8s.io";
    for (include, check) in [
        ("", json!("PartialObjectMetadata")),
        ("&includeObject=Metadata", json!("PartialObjectMetadata")),
        ("&includeObject=Object", json!("ConfigMap")),
        ("&includeObject=None", Value::Null),
    ] {
        let (code, t) = send(
            &c,
            "GET",
            &format!("{path}?labelSelector=app%3Dx{include}"),
            &[("Accept", table)],
            Vec::new(),
        )
        .await;
        assert_eq!(code, 200, "{t}");
        let object = &t["rows"][0]["object"];
        if check.is_null() {
            assert!(object.is_null(), "{include}: {t}");
        } else {
            assert_eq!(object["kind"], check, "{include}: {t}");
        }
        if include.ends_with("Object") {
            assert_eq!(object["data"]["secret"], "other", "{t}");
        }
    }
    let (code, status) = send(
        &c,
        "GET",
        &format!("{path}?includeObject=All"),
        &[("Accept", table)],
        Vec::new(),
    )
    .await;
    assert_eq!(code, 400, "{status}");
    assert_eq!(
        status["message"],
        "Unable to convert to Table as requested: includeObject: Invalid value: \"All\": must be 'Metadata', 'Object', 'None', or empty"
    );

    // Strict field validation refuses a field named twice, as it refuses unknown ones.
    let twice = br#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "twice"},
        "spec": {"replicas": 1, "replicas": 2, "selector": {"matchLabels": {"app": "t"}},
        "template": {"metadata": {"labels": {"app": "t"}}, "spec": {"containers": [{"name": "c", "image": "busybox", "bogus": 1}]}}}}"#;
    let deployments = "/apis/apps/v1/namespaces/default/deployments";
    let (code, status) = send(
        &c,
        "POST",
        &format!("{deployments}?fieldValidation=Strict"),
        &[("Content-Type", "application/json")],
        twice.to_vec(),
    )
    .await;
    assert_eq!(code, 400, "{status}");
    assert_eq!(
        status["message"],
        "Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: duplicate field \"spec.replicas\", unknown field \"spec.template.spec.containers[0].bogus\""
    );
    let (code, created) = send(
        &c,
        "POST",
        &format!("{deployments}?fieldValidation=Warn"),
        &[("Content-Type", "application/json")],
        twice.to_vec(),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["spec"]["replicas"], 2, "the last one counts");

    // ConfigMap keys name files: Kubernetes' rules, paths and words; label values too.
    let bad = br#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "badkeys", "labels": {"app": "a b"}},
        "data": {"..": "x", "ok.key": "y"}}"#;
    let (code, status) = send(
        &c,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        bad.to_vec(),
    )
    .await;
    assert_eq!(code, 422, "{status}");
    let causes: Vec<(String, String)> = status["details"]["causes"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|c| {
                    (
                        c["field"].as_str().unwrap_or("").to_string(),
                        c["message"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(
        causes.contains(&(
            "data[..]".into(),
            "Invalid value: \"..\": must not be '..'".into()
        )),
        "{status}"
    );
    assert!(
        causes.contains(&("metadata.labels".into(), "Invalid value: \"a b\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".into())),
        "{status}"
    );

    // Log options Kubernetes refuses are 400s, not ignored.
    let (code, status) = send(
        &c,
        "GET",
        "/api/v1/namespaces/default/pods/nobody/log?tailLines=-1",
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(code, 400, "{status}");
    assert!(
        status["message"].as_str().is_some_and(
            |m| m.contains("tailLines: Invalid value: -1: must be greater than or equal to 0")
        ),
        "{status}"
    );

    // Server-side apply: 201 when it creates the object, 200 after.
    let applied = br#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "1"}}"#;
    for want in [201, 200] {
        let (code, body) = send(
            &c,
            "PATCH",
            &format!("{path}/applied?fieldManager=fidelity"),
            &[("Content-Type", "application/apply-patch+yaml")],
            applied.to_vec(),
        )
        .await;
        assert_eq!(code, want, "{body}");
        assert_eq!(body["data"]["a"], "1");
    }
}

#[test]
fn an_agent_refuses_a_node_name_another_live_agent_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TugServer::start_with(tug_bin!(), &dir.path().join("data"), &[]);
    let token = std::fs::read_to_string(s.data_dir.join("token")).expect("admin token");
    let agent = |data: &str| {
        let mut cmd = std::process::Command::new(tug_bin!());
        cmd.args(["agent", "--simulate", "2", "--node-prefix", "twin"])
            .args(["--heartbeat-interval", "1", "--server", &s.url])
            .args(["--token", token.trim(), "--ca-cert"])
            .arg(s.data_dir.join("pki/ca.crt"))
            .arg("--data-dir")
            .arg(dir.path().join(data))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        cmd
    };
    let mut first = agent("first").spawn().expect("tug agent");
    eventually("the first agent's nodes", || {
        ok(&s, &["get", "nodes"]).matches(" Ready ").count() == 2
    });
    let second = agent("second").output().expect("tug agent");
    let _ = first.kill();
    let _ = first.wait();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "the second agent started: {err}");
    assert!(
        err.contains("hollow prefix twin: node name twin-0 is held by another agent")
            && err.contains("first"),
        "{err}"
    );
}

/// A deleted namespace waits for what finalizers hold, saying so in its conditions as the
/// namespace controller writes them, and goes once they are released.
#[test]
fn a_namespace_waits_for_finalizers_and_says_so_in_its_conditions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(&dir);
    ok(&s, &["create", "namespace", "held"]);
    apply(
        &s,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kept, namespace: held, finalizers: [example.com/block]}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain, namespace: held}\n",
    );
    ok(&s, &["delete", "namespace", "held", "--wait=false"]);
    let condition = |t: &str| {
        jsonpath(
            &s,
            &["namespace", "held"],
            &format!(
                "{{.status.conditions[?(@.type==\"{t}\")].status}}|{{.status.conditions[?(@.type==\"{t}\")].reason}}|{{.status.conditions[?(@.type==\"{t}\")].message}}"
            ),
        )
    };
    eventually("the conditions to name what is left", || {
        condition("NamespaceFinalizersRemaining")
            == "True|SomeFinalizersRemain|Some content in the namespace has finalizers remaining: example.com/block in 1 resource instances"
    });
    assert_eq!(
        condition("NamespaceContentRemaining"),
        "True|SomeResourcesRemain|Some resources are remaining: configmaps. has 1 resource instances"
    );
    assert_eq!(
        condition("NamespaceDeletionContentFailure"),
        "False|ContentDeleted|All content successfully deleted, may be waiting on finalization"
    );
    let types = jsonpath(
        &s,
        &["namespace", "held"],
        "{.status.phase} {.status.conditions[*].type}",
    );
    assert_eq!(
        types,
        "Terminating NamespaceDeletionDiscoveryFailure NamespaceDeletionGroupVersionParsingFailure NamespaceDeletionContentFailure NamespaceContentRemaining NamespaceFinalizersRemaining"
    );
    // The held object was deleted (it waits on its finalizer); the other one is gone.
    assert!(
        !jsonpath(
            &s,
            &["cm", "kept", "-n", "held"],
            "{.metadata.deletionTimestamp}"
        )
        .is_empty()
    );
    ok(
        &s,
        &[
            "patch",
            "cm",
            "kept",
            "-n",
            "held",
            "--type=merge",
            "-p",
            "{\"metadata\":{\"finalizers\":null}}",
        ],
    );
    eventually("the namespace to go", || {
        ok(&s, &["get", "namespaces", "-o", "name"])
            .lines()
            .all(|l| l != "namespace/held")
    });
}

/// One Event, two APIs: written through events.k8s.io/v1 it reads back through core/v1 with
/// core's field names and the other way round, as kube-apiserver converts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_read_the_same_through_both_event_apis() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(&dir);
    let c = client(&s).await;
    let new_api: Api<Event> = Api::namespaced(c.clone(), "default");
    let core_api: Api<CoreEvent> = Api::namespaced(c, "default");
    let written: Event = serde_json::from_value(json!({
        "metadata": {"name": "from-new"},
        "eventTime": "2026-01-02T03:04:05.000000Z",
        "reportingController": "example.com/ctl", "reportingInstance": "ctl-1",
        "action": "Reconcile", "reason": "Synced", "note": "all good", "type": "Normal",
        "regarding": {"kind": "ConfigMap", "namespace": "default", "name": "cfg"},
        "series": {"count": 2, "lastObservedTime": "2026-01-02T03:04:06.000000Z"}
    }))
    .expect("event");
    let created = new_api
        .create(&PostParams::default(), &written)
        .await
        .expect("create through events.k8s.io");
    assert_eq!(created.note.as_deref(), Some("all good"));
    let core = core_api.get("from-new").await.expect("get through core");
    assert_eq!(core.message.as_deref(), Some("all good"));
    assert_eq!(core.involved_object.name.as_deref(), Some("cfg"));
    assert_eq!(core.reporting_component.as_deref(), Some("example.com/ctl"));
    assert_eq!(core.action.as_deref(), Some("Reconcile"));
    assert_eq!(core.series.and_then(|s| s.count), Some(2));

    let old: CoreEvent = serde_json::from_value(json!({
        "metadata": {"name": "from-core"},
        "involvedObject": {"kind": "Pod", "namespace": "default", "name": "p"},
        "reason": "Started", "message": "Started container c", "type": "Normal",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": "2026-01-02T03:04:05Z", "lastTimestamp": "2026-01-02T03:05:05Z",
        "count": 4
    }))
    .expect("core event");
    core_api
        .create(&PostParams::default(), &old)
        .await
        .expect("create through core");
    let seen = new_api
        .get("from-core")
        .await
        .expect("get through events.k8s.io");
    assert_eq!(seen.note.as_deref(), Some("Started container c"));
    assert_eq!(seen.regarding.and_then(|r| r.name).as_deref(), Some("p"));
    assert_eq!(seen.deprecated_count, Some(4));
    assert_eq!(
        seen.deprecated_source.and_then(|s| s.component).as_deref(),
        Some("kubelet")
    );
    assert!(seen.deprecated_last_timestamp.is_some());
    // Lists and patches go through the same conversion.
    let listed = new_api.list(&ListParams::default()).await.expect("list");
    let notes: Vec<_> = listed.items.iter().filter_map(|e| e.note.clone()).collect();
    assert!(
        notes.contains(&"Started container c".to_string()),
        "{notes:?}"
    );
    let patched = new_api
        .patch(
            "from-core",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"note": "changed"})),
        )
        .await
        .expect("patch");
    assert_eq!(patched.note.as_deref(), Some("changed"));
    let core = core_api.get("from-core").await.expect("get");
    assert_eq!(core.message.as_deref(), Some("changed"));
    assert_eq!(core.count, Some(4));
    // kubectl prints either API's events with the same columns.
    let table = ok(&s, &["get", "events.v1.events.k8s.io", "from-core"]);
    assert!(
        table.contains("pod/p") && table.contains("changed"),
        "{table}"
    );
}

/// Bodies are written as kube-apiserver's Go encoder writes them: `kind`, `apiVersion`, then
/// each struct's fields in Go's order, map keys sorted, and a closing newline; watch events
/// as `{"type":…,"object":…}` lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_written_in_go_field_order_with_a_closing_newline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(&dir);
    apply(
        &s,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ordered, labels: {z: '1', a: '2'}}\ndata: {k: v}\n",
    );
    let one = ok(
        &s,
        &[
            "get",
            "--raw",
            "/api/v1/namespaces/default/configmaps/ordered",
        ],
    );
    assert!(
        one.starts_with("{\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"ordered\",\"namespace\":\"default\",\"uid\":"),
        "{one}"
    );
    assert!(
        one.contains("\"labels\":{\"a\":\"2\",\"z\":\"1\"}"),
        "{one}"
    );
    assert!(one.ends_with("},\"data\":{\"k\":\"v\"}}\n"), "{one}");
    let list = ok(
        &s,
        &["get", "--raw", "/api/v1/namespaces/default/configmaps"],
    );
    assert!(
        list.starts_with(
            "{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":"
        ),
        "{list}"
    );
    assert!(list.ends_with("]}\n"), "{list}");
    // Items of a typed list carry no kind and apiVersion, from the store or the watch cache.
    for rv in ["", "?resourceVersion=0"] {
        let list = ok(
            &s,
            &[
                "get",
                "--raw",
                &format!("/api/v1/namespaces/default/configmaps{rv}"),
            ],
        );
        assert!(
            list.contains("\"items\":[{\"metadata\":{\"name\":"),
            "{list}"
        );
        assert!(!list.contains("\"kind\":\"ConfigMap\""), "{list}");
    }
    let watch = ok(
        &s,
        &[
            "get",
            "--raw",
            "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1&fieldSelector=metadata.name%3Dordered",
        ],
    );
    assert!(
        watch.starts_with("{\"type\":\"ADDED\",\"object\":{\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"ordered\""),
        "{watch}"
    );
    // A Status: kind, apiVersion, metadata, status, message, reason, details, code.
    let c = client(&s).await;
    let req = http::Request::get("/api/v1/namespaces/default/configmaps/missing")
        .body(Vec::new())
        .expect("request");
    let resp = c
        .send(req.map(kube::client::Body::from))
        .await
        .expect("send");
    assert_eq!(resp.status(), 404);
    use http_body_util::BodyExt;
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(
        String::from_utf8_lossy(&body),
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"configmaps \\\"missing\\\" not found\",\"reason\":\"NotFound\",\"details\":{\"name\":\"missing\",\"kind\":\"configmaps\"},\"code\":404}\n"
    );
}

/// A watch asked for in protobuf (as client-go's typed clients ask) is answered with
/// `application/vnd.kubernetes.protobuf;stream=watch`: length-delimited `metav1.WatchEvent`
/// frames whose objects are whole protobuf bodies, read here with kube-rs' protobuf structs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_clients_watch_in_protobuf_frames() {
    use k8s_pb::api::core::v1 as core;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    use k8s_pb::apimachinery::pkg::runtime::Unknown;
    use prost::Message;

    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(&dir);
    let c = client(&s).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "watched"},
        "data": {"k": "v"}}))
    .expect("configmap");
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create");
    let req = http::Request::builder()
        .uri("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=0&timeoutSeconds=2&fieldSelector=metadata.name%3Dwatched")
        .header(
            "Accept",
            "application/vnd.kubernetes.protobuf, application/json",
        )
        .body(Vec::new())
        .expect("request");
    let resp = c
        .send(req.map(kube::client::Body::from))
        .await
        .expect("watch");
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/vnd.kubernetes.protobuf;stream=watch")
    );
    // A change while the watch is open arrives as a second frame.
    let update = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let patch = kube::api::Patch::Merge(json!({"data": {"k": "w"}}));
        cms.patch("watched", &Default::default(), &patch)
            .await
            .expect("patch");
    });
    let body = resp.into_body().collect_bytes().await.expect("body");
    update.await.expect("update");
    let mut events = Vec::new();
    let mut rest = &body[..];
    while rest.len() >= 4 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        assert!(rest.len() >= 4 + len, "a frame cut short");
        let event = meta::WatchEvent::decode(&rest[4..4 + len]).expect("a WatchEvent");
        rest = &rest[4 + len..];
        let kind = event.r#type().to_string();
        let raw = event
            .object
            .and_then(|o| o.raw)
            .expect("the event's object");
        let unknown =
            Unknown::decode(raw.strip_prefix(b"k8s\0").expect("the envelope")).expect("an Unknown");
        let type_meta = unknown.type_meta.clone().expect("typeMeta");
        assert_eq!(
            (type_meta.api_version(), type_meta.kind()),
            ("v1", "ConfigMap")
        );
        let object = core::ConfigMap::decode(unknown.raw()).expect("a ConfigMap");
        let name = object.metadata.as_ref().map(|m| m.name().to_string());
        events.push((kind, name, object.data.get("k").cloned()));
    }
    assert!(rest.is_empty(), "bytes after the last frame");
    assert_eq!(
        events,
        [
            ("ADDED".into(), Some("watched".into()), Some("v".into())),
            ("MODIFIED".into(), Some("watched".into()), Some("w".into())),
        ]
    );
}
