use super::cells::pod_status;
use super::*;

#[test]
fn pod_status_shows_reasons_like_kubectl() {
    let pod = |status: Value, deleting: bool| {
        let mut p = json!({"metadata": {}, "spec": {"initContainers": [{}, {}]}, "status": status});
        if deleting {
            p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        p
    };
    let crashing = pod(
        json!({"phase": "Running", "containerStatuses": [
            {"state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
        false,
    );
    assert_eq!(pod_status(&crashing), "CrashLoopBackOff");
    let initializing = pod(
        json!({"phase": "Pending", "initContainerStatuses": [
            {"state": {"terminated": {"exitCode": 0}}},
            {"state": {"running": {}}}]}),
        false,
    );
    assert_eq!(pod_status(&initializing), "Init:1/2");
    let init_failed = pod(
        json!({"phase": "Pending", "initContainerStatuses": [
            {"state": {"terminated": {"exitCode": 2, "reason": "Error"}}}]}),
        false,
    );
    assert_eq!(pod_status(&init_failed), "Init:Error");
    let killed = pod(
        json!({"phase": "Running", "containerStatuses": [
            {"state": {"terminated": {"exitCode": 137, "signal": 9}}}]}),
        false,
    );
    assert_eq!(pod_status(&killed), "Signal:9");
    let running = pod(
        json!({"phase": "Running", "containerStatuses": [
            {"ready": true, "state": {"running": {}}}]}),
        false,
    );
    assert_eq!(pod_status(&running), "Running");
    assert_eq!(
        pod_status(&pod(json!({"phase": "Running"}), true)),
        "Terminating"
    );
}

#[test]
fn kinds_get_their_columns() {
    let cron = tug_api::catalog::lookup("batch", "v1", "cronjobs").expect("cronjobs");
    let t = to_table(
        cron,
        &json!({"metadata": {"name": "c", "creationTimestamp": "2020-01-01T00:00:00Z"}, "spec": {"schedule": "*/5 * * * *"}}),
        &TableOptions::default(),
    );
    let names: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        names,
        [
            "Name",
            "Schedule",
            "Timezone",
            "Suspend",
            "Active",
            "Last Schedule",
            "Age",
            "Containers",
            "Images",
            "Selector"
        ]
    );
    assert_eq!(t["rows"][0]["cells"][1], "*/5 * * * *");
    assert_eq!(t["rows"][0]["cells"][3], "<unset>");
    assert_eq!(t["rows"][0]["cells"][5], "<none>");
    let svc = tug_api::catalog::lookup("", "v1", "services").expect("services");
    let t = to_table(
        svc,
        &json!({"items": [{"metadata": {"name": "s"}, "spec": {"type": "NodePort", "selector": {"b": "2", "a": "1"}, "ports": [{"port": 80, "nodePort": 30080}]}}], "metadata": {"resourceVersion": "7"}}),
        &TableOptions::default(),
    );
    assert_eq!(t["rows"][0]["cells"][4], "80:30080/TCP");
    assert_eq!(t["rows"][0]["cells"][6], "a=1,b=2");
    assert_eq!(t["metadata"]["resourceVersion"], "7");
}

#[test]
fn ages_read_as_kubernetes_writes_them() {
    for (secs, want) in [
        (-5, "<invalid>"),
        (-1, "0s"),
        (119, "119s"),
        (330, "5m30s"),
        (600, "10m"),
        (3 * 3600 + 20 * 60, "3h20m"),
        (9 * 3600, "9h"),
        (2 * 86400 + 4 * 3600, "2d4h"),
        (400 * 86400, "400d"),
        (3 * 365 * 86400 + 20 * 86400, "3y20d"),
        (9 * 365 * 86400, "9y"),
    ] {
        assert_eq!(cells::human_duration(secs), want, "{secs}");
    }
}

#[test]
fn selectors_print_as_kubernetes_prints_them() {
    let sel = json!({"matchLabels": {"tier": "web"}, "matchExpressions": [
        {"key": "zone", "operator": "In", "values": ["b", "a"]},
        {"key": "gpu", "operator": "DoesNotExist"},
        {"key": "app", "operator": "Exists"}]});
    assert_eq!(
        cells::format_label_selector(Some(&sel)),
        "app,!gpu,tier=web,zone in (a,b)"
    );
    assert_eq!(cells::format_label_selector(Some(&json!({}))), "<none>");
    assert_eq!(cells::format_label_selector(None), "<none>");
}

#[test]
fn pods_have_wide_columns_after_age() {
    let pods = tug_api::catalog::lookup("", "v1", "pods").expect("pods");
    let defs = column_definitions(pods);
    let shown: Vec<(&str, i64)> = defs
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or(""),
                c["priority"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            ("Name", 0),
            ("Ready", 0),
            ("Status", 0),
            ("Restarts", 0),
            ("Age", 0),
            ("IP", 1),
            ("Node", 1),
            ("Nominated Node", 1),
            ("Readiness Gates", 1)
        ]
    );
    let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "containers": [{}],
        "readinessGates": [{"conditionType": "x"}]},
        "status": {"podIPs": [{"ip": "10.0.0.5"}], "conditions": [{"type": "x", "status": "True"}]}});
    let r = row(pods, &pod, &TableOptions::default());
    assert_eq!(r["cells"][5], "10.0.0.5");
    assert_eq!(r["cells"][6], "n1");
    assert_eq!(r["cells"][7], "<none>");
    assert_eq!(r["cells"][8], "1/1");
}

#[test]
fn rows_carry_what_include_object_asks() {
    let cms = tug_api::catalog::lookup("", "v1", "configmaps").expect("configmaps");
    let cm = json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "c"}, "data": {"a": "1"}});
    let with = |include| {
        row(
            cms,
            &cm,
            &TableOptions {
                include,
                ..TableOptions::default()
            },
        )["object"]
            .clone()
    };
    assert_eq!(with(IncludeObject::None), Value::Null);
    assert_eq!(with(IncludeObject::Object), cm);
    let partial = with(IncludeObject::Metadata);
    assert_eq!(partial["kind"], "PartialObjectMetadata");
    assert_eq!(partial["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(partial["metadata"]["name"], "c");
    assert!(partial.get("data").is_none());
    assert!(IncludeObject::parse(Some("Everything")).is_err());
    assert_eq!(
        IncludeObject::parse(None).ok(),
        Some(IncludeObject::Metadata)
    );
}

#[test]
fn nodes_show_roles_versions_and_addresses() {
    let nodes = tug_api::catalog::lookup("", "v1", "nodes").expect("nodes");
    let node = json!({"metadata": {"name": "n", "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "edge"}},
        "spec": {"unschedulable": true},
        "status": {"conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "10.1.0.2"}],
            "nodeInfo": {"kubeletVersion": "v1.37.0", "osImage": "Debian"}}});
    let r = row(nodes, &node, &TableOptions::default());
    let cells: Vec<&str> = r["cells"]
        .as_array()
        .map(|c| c.iter().map(|c| c.as_str().unwrap_or("")).collect())
        .unwrap_or_default();
    assert_eq!(cells[1], "Ready,SchedulingDisabled");
    assert_eq!(cells[2], "control-plane,edge");
    assert_eq!(cells[4], "v1.37.0");
    assert_eq!(
        &cells[5..],
        ["10.1.0.2", "<none>", "Debian", "<unknown>", "<unknown>"]
    );
}
