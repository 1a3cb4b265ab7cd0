//! Services and what comes with namespaces: ClusterIP and nodePort allocation at create,
//! Endpoints and EndpointSlices following pod readiness, default ServiceAccounts, pod GC.

use tug_testkit::kubectl::{apply, eventually, jsonpath_ok as jsonpath, kubectl, ok};
use tug_testkit::server::TugServer;
use tug_testkit::tug_bin;

fn server(dir: &tempfile::TempDir, extra: &[&str]) -> TugServer {
    TugServer::start_with(tug_bin!(), &dir.path().join("data"), extra)
}

#[test]
fn services_get_cluster_ips_and_node_ports_that_no_one_else_has() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(&dir, &[]);
    ok(
        &s,
        &["create", "service", "clusterip", "a", "--tcp=80:8080"],
    );
    let ip = jsonpath(&s, &["svc", "a"], "{.spec.clusterIP}");
    let octets: Vec<u8> = ip.split('.').filter_map(|o| o.parse().ok()).collect();
    assert!(
        octets.len() == 4 && octets[0] == 10 && (96..112).contains(&octets[1]),
        "ClusterIP {ip:?} outside 10.96.0.0/12"
    );
    // Asking for a taken address fails, naming the field; a free one is granted.
    let taken = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: b}}\nspec:\n  clusterIP: {ip}\n  ports: [{{port: 80}}]\n"
    );
    let o = kubectl(&s, &["apply", "-f", "-"], Some(&taken));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("spec.clusterIPs") && err.contains("provided IP is already allocated"),
        "{err}"
    );
    apply(
        &s,
        "apiVersion: v1\nkind: Service\nmetadata: {name: c}\nspec:\n  clusterIP: 10.96.0.50\n  ports: [{port: 80}]\n",
    );
    assert_eq!(
        jsonpath(&s, &["svc", "c"], "{.spec.clusterIP}"),
        "10.96.0.50"
    );
    let o = kubectl(
        &s,
        &["apply", "-f", "-"],
        Some(
            "apiVersion: v1\nkind: Service\nmetadata: {name: d}\nspec:\n  clusterIP: 192.168.1.1\n  ports: [{port: 80}]\n",
        ),
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("not in the valid range"));
    // Headless stays headless.
    apply(
        &s,
        "apiVersion: v1\nkind: Service\nmetadata: {name: h}\nspec:\n  clusterIP: None\n  ports: [{port: 80}]\n",
    );
    assert_eq!(jsonpath(&s, &["svc", "h"], "{.spec.clusterIP}"), "None");

    // NodePort: a port from 30000-32767, or the one asked for if free.
    ok(
        &s,
        &["create", "service", "nodeport", "np", "--tcp=80:8080"],
    );
    let port: i64 = jsonpath(&s, &["svc", "np"], "{.spec.ports[0].nodePort}")
        .parse()
        .expect("a nodePort");
    assert!((30000..=32767).contains(&port), "{port}");
    let same = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: np2}}\nspec:\n  type: NodePort\n  ports: [{{port: 80, nodePort: {port}}}]\n"
    );
    let o = kubectl(&s, &["apply", "-f", "-"], Some(&same));
    assert!(String::from_utf8_lossy(&o.stderr).contains("provided port is already allocated"));
    // Deleting a Service frees its addresses.
    ok(&s, &["delete", "svc", "np", "c"]);
    apply(&s, &same);
    apply(
        &s,
        "apiVersion: v1\nkind: Service\nmetadata: {name: c2}\nspec:\n  clusterIP: 10.96.0.50\n  ports: [{port: 80}]\n",
    );
}

#[test]
fn endpoints_and_slices_follow_pod_readiness() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(&dir, &["--simulated-nodes", "3"]);
    apply(
        &s,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: httpd, ports: [{name: http, containerPort: 8080}]}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: http}]\n",
    );
    ok(&s, &["rollout", "status", "deploy/web", "--timeout=60s"]);
    let pod_ips = || {
        let mut ips: Vec<String> =
            jsonpath(&s, &["pods", "-l", "app=web"], "{.items[*].status.podIP}")
                .split_whitespace()
                .map(str::to_string)
                .collect();
        ips.sort();
        ips
    };
    eventually(
        "Endpoints list the three ready pods on the named port",
        || {
            let mut ips: Vec<String> =
                jsonpath(&s, &["endpoints", "web"], "{.subsets[*].addresses[*].ip}")
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
            ips.sort();
            ips == pod_ips()
                && jsonpath(&s, &["endpoints", "web"], "{.subsets[0].ports[0].port}") == "8080"
        },
    );
    eventually("one EndpointSlice with three ready endpoints", || {
        jsonpath(
            &s,
            &["endpointslices", "-l", "kubernetes.io/service-name=web"],
            "{.items[*].endpoints[*].conditions.ready}",
        ) == "true true true"
    });
    // A pod that stops being ready moves to notReadyAddresses.
    let victim = jsonpath(&s, &["pods", "-l", "app=web"], "{.items[0].metadata.name}");
    let victim_ip = jsonpath(&s, &["pod", &victim], "{.status.podIP}");
    ok(
        &s,
        &[
            "patch",
            "pod",
            &victim,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"conditions":[{"type":"Ready","status":"False"}]}}"#,
        ],
    );
    eventually("the unready pod is listed as not ready", || {
        jsonpath(
            &s,
            &["endpoints", "web"],
            "{.subsets[*].notReadyAddresses[*].ip}",
        ) == victim_ip
            && !jsonpath(&s, &["endpoints", "web"], "{.subsets[*].addresses[*].ip}")
                .contains(&victim_ip)
    });
    // Deleting the Service takes its slice with it.
    ok(&s, &["delete", "svc", "web"]);
    eventually("the slice is collected", || {
        jsonpath(
            &s,
            &["endpointslices", "-l", "kubernetes.io/service-name=web"],
            "{.items[*].metadata.name}",
        )
        .is_empty()
    });
}

#[test]
fn every_namespace_gets_a_default_service_account() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(&dir, &[]);
    eventually("default/default exists", || {
        kubectl(
            &s,
            &["get", "serviceaccount", "default", "-n", "default"],
            None,
        )
        .status
        .success()
    });
    ok(&s, &["create", "namespace", "team"]);
    eventually("team/default exists", || {
        kubectl(
            &s,
            &["get", "serviceaccount", "default", "-n", "team"],
            None,
        )
        .status
        .success()
    });
    ok(&s, &["delete", "serviceaccount", "default", "-n", "team"]);
    eventually("team/default comes back", || {
        kubectl(
            &s,
            &["get", "serviceaccount", "default", "-n", "team"],
            None,
        )
        .status
        .success()
    });
}

#[test]
fn finished_pods_over_the_threshold_are_collected_oldest_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(
        &dir,
        &[
            "--simulated-nodes",
            "2",
            "--terminated-pod-gc-threshold",
            "3",
        ],
    );
    for i in 0..6 {
        apply(
            &s,
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: done-{i}}}\nspec:\n  restartPolicy: Never\n  containers: [{{name: c, image: busybox}}]\n"
            ),
        );
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    eventually("three finished pods are left, the newest", || {
        jsonpath(&s, &["pods"], "{.items[*].metadata.name}") == "done-3 done-4 done-5"
    });
}

#[test]
fn endpoint_slices_hold_at_most_a_hundred_endpoints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(&dir, &["--simulated-nodes", "3"]);
    apply(
        &s,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: big}\nspec:\n  replicas: 150\n  selector: {matchLabels: {app: big}}\n  template:\n    metadata: {labels: {app: big}}\n    spec: {containers: [{name: c, image: httpd}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: big}\nspec:\n  selector: {app: big}\n  ports: [{port: 80}]\n",
    );
    ok(&s, &["rollout", "status", "deploy/big", "--timeout=60s"]);
    let counts = || -> Vec<usize> {
        let out = ok(
            &s,
            &[
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=big",
                "-o",
                "jsonpath={range .items[*]}{.endpoints[*].conditions.ready}{\"\\n\"}{end}",
            ],
        );
        let mut v: Vec<usize> = out.lines().map(|l| l.split_whitespace().count()).collect();
        v.sort();
        v
    };
    eventually("150 endpoints in slices of 100 and 50", || {
        counts() == [50, 100]
    });
    ok(&s, &["scale", "deploy", "big", "--replicas=30"]);
    eventually("one slice of 30 left", || counts() == [30]);
}
