//! The cluster network on a `tug up` cluster of three nodes, each in its own network namespace:
//! pods reach pods on other nodes, Services balance in the kernel, NodePorts answer on every
//! node, nothing for the cluster's ranges leaves the machine, and `tug down` leaves the host as
//! it found it.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use tug_testkit::kubectl::eventually_within as wait_until;
use tug_testkit::timeline::Timeline;
use tug_testkit::tug_bin;
use tug_testkit::up::{LeakCounter, LocalCluster, host};

const IMAGE: &str = "docker.io/library/busybox:test";

fn cluster(nodes: u8) -> (LocalCluster, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("tmp");
    let archive = tug_testkit::image::busybox_archive(tmp.path(), IMAGE);
    (LocalCluster::start(tug_bin!(), nodes, &[archive]), tmp)
}

/// Runs `script` in the client pod until its output passes `check` (30 s at most). A query
/// that timed out on a busy machine is asked again; a wrong answer still fails, with the last
/// output and the cluster's logs.
fn lookup(c: &LocalCluster, script: &str, check: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = c.kubectl(&["exec", "client", "--", "sh", "-c", script], None);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if check(&String::from_utf8_lossy(&out.stdout)) {
            return;
        }
        assert!(Instant::now() < deadline, "{script}:\n{text}\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// How many answers each pod gave to `n` requests for `url` from `pod`.
fn spread(c: &LocalCluster, pod: &str, url: &str, n: u32) -> BTreeMap<String, u32> {
    let out = c.sh(pod,
        &format!(
            "i=0; while [ $i -lt {n} ]; do timeout 3 wget -q -O - {url} || echo FAILED; i=$((i+1)); done"
        ),
    );
    let mut counts = BTreeMap::new();
    for l in out.lines() {
        *counts.entry(l.trim().to_string()).or_insert(0) += 1;
    }
    counts
}

#[test]
fn pods_services_and_nodeports_work_across_three_nodes_and_down_leaves_nothing() {
    let (mut c, _tmp) = cluster(3);
    let leaks = LeakCounter::install(&c);
    // Acceptance 7: the ranges are routed locally on the host.
    let routes = host(&["ip", "route", "show"]);
    for range in [c.cluster_cidr.as_str(), "10.96.0.0/12"] {
        assert!(
            routes
                .lines()
                .any(|l| l.starts_with(&format!("blackhole {range}"))),
            "{range} is not routed locally:\n{routes}"
        );
    }
    assert!(
        routes.contains(&format!("{}.0/24 dev {}0", c.node_net, c.name)),
        "{routes}"
    );

    // Acceptance 1: a pod on node-1 reaches a pod on node-2 by IP: ICMP, TCP and UDP.
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: echo}}
spec:
  nodeName: node-2
  containers:
  - name: http
    image: {IMAGE}
    command: [sh, -c, "mkdir -p /www && echo echo > /www/index.html && exec httpd -f -p 8080 -h /www"]
---
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  nodeName: node-1
  containers:
  - {{name: c, image: {IMAGE}, command: [sleep, "3600"]}}
"#
    ));
    c.wait_running("echo");
    c.wait_running("client");
    // Pods find the API server through the `kubernetes` Service and its variables.
    let env = c.sh("client", "env");
    assert!(env.contains("KUBERNETES_SERVICE_HOST=10.96.0.1"), "{env}");
    assert!(env.contains("KUBERNETES_SERVICE_PORT=443"), "{env}");
    // busybox's TLS knows none of the server's cipher suites: a TLS alert from the peer
    // shows the Service led to the API server.
    let healthz = c.sh("client",
        "timeout 5 wget -q -O - --no-check-certificate https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/healthz 2>&1; true",
    );
    assert!(
        healthz.trim() == "ok" || healthz.contains("TLS error from peer"),
        "{healthz}"
    );
    let echo_ip = c.jsonpath(&["pod", "echo"], "{.status.podIP}");
    let client_ip = c.jsonpath(&["pod", "client"], "{.status.podIP}");
    let cidr2 = c.jsonpath(&["node", "node-2"], "{.spec.podCIDR}");
    let cidr1 = c.jsonpath(&["node", "node-1"], "{.spec.podCIDR}");
    assert_ne!(cidr1, cidr2);
    let prefix = |cidr: &str| cidr.rsplit_once('.').map(|x| x.0).unwrap_or("").to_string();
    assert!(
        echo_ip.starts_with(&prefix(&cidr2)),
        "{echo_ip} not in {cidr2}"
    );
    assert!(
        client_ip.starts_with(&prefix(&cidr1)),
        "{client_ip} not in {cidr1}"
    );
    c.sh("client", &format!("ping -c 2 -W 3 {echo_ip}"));
    assert_eq!(
        c.sh(
            "client",
            &format!("timeout 5 wget -q -O - http://{echo_ip}:8080/")
        )
        .trim(),
        "echo"
    );
    // UDP: traceroute's datagrams reach the pod, whose kernel answers them (port unreachable),
    // which ends the trace at the pod's address.
    let trace = c.sh("client", &format!("traceroute -n -q 1 -w 2 -m 4 {echo_ip}"));
    assert!(
        trace.lines().last().is_some_and(|l| l.contains(&echo_ip)),
        "the UDP probes did not reach {echo_ip}:\n{trace}"
    );

    // Acceptance 2: three replicas on three nodes behind a ClusterIP (and NodePort) Service.
    c.apply(&format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - {{labelSelector: {{matchLabels: {{app: web}}}}, topologyKey: kubernetes.io/hostname}}
      containers:
      - name: httpd
        image: {IMAGE}
        command: [sh, -c, "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1, failureThreshold: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
"#
    ));
    wait_until("3 ready replicas", Duration::from_secs(90), || {
        c.jsonpath(&["deploy", "web"], "{.status.readyReplicas}") == "3"
    });
    let nodes = c.jsonpath(&["pods", "-l", "app=web"], "{.items[*].spec.nodeName}");
    let mut nodes: Vec<&str> = nodes.split_whitespace().collect();
    nodes.sort();
    assert_eq!(nodes, ["node-1", "node-2", "node-3"]);
    let names = c.jsonpath(&["pods", "-l", "app=web"], "{.items[*].metadata.name}");
    let names: Vec<String> = names.split_whitespace().map(String::from).collect();
    let vip = c.jsonpath(&["svc", "web"], "{.spec.clusterIP}");
    let counts = spread(&c, "client", &format!("http://{vip}/"), 300);
    assert_eq!(counts.values().sum::<u32>(), 300);
    assert!(!counts.contains_key("FAILED"), "{counts:?}");
    for n in &names {
        assert!(
            counts.get(n).copied().unwrap_or(0) >= 30,
            "uneven spread: {counts:?}"
        );
    }

    // sessionAffinity ClientIP: one client keeps to one replica.
    c.apply(
        r#"
apiVersion: v1
kind: Service
metadata: {name: web-sticky}
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}
  ports: [{port: 80, targetPort: http}]
"#,
    );
    let sticky = c.jsonpath(&["svc", "web-sticky"], "{.spec.clusterIP}");
    wait_until(
        "the sticky Service to answer",
        Duration::from_secs(10),
        || !spread(&c, "client", &format!("http://{sticky}/"), 1).contains_key("FAILED"),
    );
    let counts = spread(&c, "client", &format!("http://{sticky}/"), 30);
    assert_eq!(
        counts.len(),
        1,
        "the client moved between replicas: {counts:?}"
    );
    assert!(names.iter().any(|n| counts.contains_key(n)), "{counts:?}");

    // Acceptance 3: the NodePort answers on every node's address, from the host.
    let node_port = c.jsonpath(&["svc", "web"], "{.spec.ports[0].nodePort}");
    for i in 1..=3 {
        let url = format!("http://{}:{node_port}/", c.node_ip(i));
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", &url])
            .output()
            .expect("curl");
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            names.contains(&answer),
            "{url} answered {answer:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // hostPort: the node's address forwards to the pod; a hostNetwork pod listens on the
    // node's address itself.
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: hostport}}
spec:
  nodeName: node-3
  containers:
  - name: httpd
    image: {IMAGE}
    command: [sh, -c, "mkdir -p /www && echo hostport > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports: [{{containerPort: 8080, hostPort: 18080}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: hostnet}}
spec:
  nodeName: node-1
  hostNetwork: true
  containers:
  - name: httpd
    image: {IMAGE}
    command: [sh, -c, "mkdir -p /tmp/www && echo hostnet > /tmp/www/index.html && exec httpd -f -p 18081 -h /tmp/www"]
"#
    ));
    c.wait_running("hostport");
    c.wait_running("hostnet");
    for (url, want) in [
        (format!("http://{}:18080/", c.node_ip(3)), "hostport"),
        (format!("http://{}:18081/", c.node_ip(1)), "hostnet"),
    ] {
        wait_until(&format!("{url} to answer"), Duration::from_secs(10), || {
            let out = Command::new("curl")
                .args(["-sS", "--max-time", "3", &url])
                .output()
                .expect("curl");
            String::from_utf8_lossy(&out.stdout).trim() == want
        });
    }

    // Acceptance 4: names resolve through the cluster DNS, from a pod.
    c.apply(
        r#"
apiVersion: v1
kind: Service
metadata: {name: web-pods}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 8080}]
"#,
    );
    let resolv = c.sh("client", "cat /etc/resolv.conf");
    assert!(resolv.contains("nameserver 10.96.0.10"), "{resolv}");
    assert!(
        resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );
    assert!(resolv.contains("options ndots:5"), "{resolv}");
    // busybox's nslookup applies the search path only to names without a dot, asks every
    // search domain and fails if any says NXDOMAIN; the C library's resolver (wget, below)
    // applies it as ndots:5 says.
    for name in ["web", "web.default.svc.cluster.local"] {
        lookup(&c, &format!("nslookup {name}"), |out| {
            out.contains(&format!("Address: {vip}"))
        });
    }
    let pod_ips = c.jsonpath(&["pods", "-l", "app=web"], "{.items[*].status.podIP}");
    wait_until(
        "the headless Service to list the pods",
        Duration::from_secs(10),
        || {
            let out = c.sh(
                "client",
                "nslookup web-pods.default.svc.cluster.local; true",
            );
            pod_ips
                .split_whitespace()
                .all(|ip| out.contains(&format!("Address: {ip}")))
        },
    );
    lookup(
        &c,
        "nslookup -type=SRV _http._tcp.web.default.svc.cluster.local",
        |srv| srv.contains("web.default.svc.cluster.local") && srv.contains(" 80 "),
    );
    // A pod with a hostname and a subdomain naming a headless Service has a name of its own,
    // in DNS and in its /etc/hosts.
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: named}}
spec:
  clusterIP: None
  selector: {{app: named}}
  ports: [{{port: 80}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: named-pod, labels: {{app: named}}}}
spec:
  hostname: box
  subdomain: named
  hostAliases: [{{ip: 10.1.2.3, hostnames: [foo.remote, bar.remote]}}]
  containers:
  - {{name: c, image: {IMAGE}, command: [sleep, "3600"]}}
"#
    ));
    c.wait_running("named-pod");
    let named_ip = c.jsonpath(&["pod", "named-pod"], "{.status.podIP}");
    assert_eq!(
        c.sh("named-pod", "cat /etc/hosts; hostname"),
        format!(
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n{named_ip}\tbox.named.default.svc.cluster.local\tbox\n\n# Entries added by HostAliases.\n10.1.2.3\tfoo.remote\tbar.remote\nbox\n"
        )
    );
    lookup(&c, "nslookup box.named.default.svc.cluster.local", |out| {
        out.contains(&format!("Address: {named_ip}"))
    });
    lookup(&c, "nslookup nope.default.svc.cluster.local", |missing| {
        missing.contains("NXDOMAIN") && !missing.contains("Name:")
    });
    for name in ["web", "web.default", "web.default.svc.cluster.local"] {
        lookup(
            &c,
            &format!("timeout 5 wget -q -O - http://{name}/"),
            |by_name| names.contains(&by_name.trim().to_string()),
        );
    }

    // A replica scaled away leaves the rotation within 2 s, without a failed request.
    c.ok(&["scale", "deploy/web", "--replicas=2"]);
    let scaled = Instant::now();
    let mut gone = String::new();
    wait_until("a replica to terminate", Duration::from_secs(10), || {
        gone = c.jsonpath(
            &["pods", "-l", "app=web"],
            "{range .items[?(@.metadata.deletionTimestamp)]}{.metadata.name}{end}",
        );
        !gone.is_empty()
    });
    loop {
        let counts = spread(&c, "client", &format!("http://{vip}/"), 20);
        assert!(!counts.contains_key("FAILED"), "{counts:?}");
        if !counts.contains_key(&gone) {
            break;
        }
        assert!(
            scaled.elapsed() < Duration::from_secs(2),
            "the replica scaled away is still answering: {counts:?}"
        );
    }
    let names: Vec<String> = names.into_iter().filter(|n| *n != gone).collect();

    // A replica failing readiness leaves the rotation within 2 s of being marked unready.
    let victim = &names[0];
    c.sh(victim, "rm /www/index.html");
    wait_until("the replica to be unready", Duration::from_secs(10), || {
        c.jsonpath(
            &["pod", victim],
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        ) == "False"
    });
    let unready = Instant::now();
    loop {
        let counts = spread(&c, "client", &format!("http://{vip}/"), 20);
        if !counts.contains_key(victim) && !counts.contains_key("FAILED") {
            break;
        }
        assert!(
            unready.elapsed() < Duration::from_secs(2),
            "the unready replica is still answering: {counts:?}"
        );
    }

    // Acceptance 7: none of this left by the default route.
    assert_eq!(
        leaks.packets(),
        0,
        "packets for the cluster's ranges left the machine"
    );
    drop(leaks);

    // Acceptance 8: `tug down` removes every namespace, link, route and table it made.
    let out = c.down();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let netns = host(&["ip", "netns", "list"]);
    assert!(!netns.contains(&c.name), "{netns}");
    let links = host(&["ip", "-br", "link"]);
    assert!(!links.contains(&c.name), "{links}");
    let routes = host(&["ip", "route", "show"]);
    assert!(!routes.contains(&c.cluster_cidr), "{routes}");
    assert!(!routes.contains(&c.node_net), "{routes}");
    let tables = host(&["nft", "list", "tables"]);
    assert!(!tables.contains(&c.name), "{tables}");
    let procs = host(&["ps", "-eo", "args"]);
    assert!(
        !procs.contains(&c.dir.path().display().to_string()),
        "processes left: {procs}"
    );
}

/// Whether `from` gets an answer from `ip:8080` within a few seconds.
fn reaches(c: &LocalCluster, from: &str, ip: &str) -> bool {
    let out = c.kubectl(
        &[
            "exec",
            from,
            "--",
            "sh",
            "-c",
            &format!("timeout 3 wget -q -O - http://{ip}:8080/"),
        ],
        None,
    );
    out.status.success()
}

/// Waits until `from` reaching `ip` is `want` (rules follow policy changes within seconds).
fn expect_reach(c: &LocalCluster, from: &str, to: &str, ip: &str, want: bool) {
    let start = Instant::now();
    while reaches(c, from, ip) != want {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{from} -> {to} should be {}\n{}",
            if want { "open" } else { "blocked" },
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn network_policies_block_and_admit_pods_across_nodes() {
    let (c, _tmp) = cluster(2);
    let pod = |name: &str, node: u32, labels: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{{labels}}}}}\nspec:\n  nodeName: node-{node}\n  containers:\n  - name: httpd\n    image: {IMAGE}\n    command: [sh, -c, \"mkdir -p /www && echo {name} > /www/index.html && exec httpd -f -p 8080 -h /www\"]\n    ports: [{{name: http, containerPort: 8080}}]\n"
        )
    };
    let all = [
        pod("db", 2, "app: db"),
        pod("api", 1, "role: api"),
        pod("api-near", 2, "role: api"),
        pod("other", 1, "role: other"),
        pod("other-near", 2, "role: other"),
    ]
    .join("---\n");
    c.apply(&all);
    for p in ["db", "api", "api-near", "other", "other-near"] {
        c.wait_running(p);
    }
    let ip = |p: &str| c.jsonpath(&["pod", p], "{.status.podIP}");
    let (db, api) = (ip("db"), ip("api"));
    for from in ["api", "api-near", "other", "other-near"] {
        expect_reach(&c, from, "db", &db, true);
    }

    // Default deny for the db pods: nobody gets in, from this node or another.
    c.apply(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-deny}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]
"#,
    );
    for from in ["api", "api-near", "other", "other-near"] {
        expect_reach(&c, from, "db", &db, false);
    }
    // Pods no policy selects stay open.
    expect_reach(&c, "other", "api", &api, true);

    // An allow rule admits only the pods it selects, on the port it names.
    c.apply(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-api}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {role: api}}}]
    ports: [{port: http}]
"#,
    );
    expect_reach(&c, "api", "db", &db, true);
    expect_reach(&c, "api-near", "db", &db, true);
    expect_reach(&c, "other", "db", &db, false);
    expect_reach(&c, "other-near", "db", &db, false);

    // Egress: the api pod on node-1 may reach only 10.0.0.0/8 minus the db's address.
    c.apply(&format!(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: api-egress}}
spec:
  podSelector: {{matchLabels: {{role: api}}}}
  policyTypes: [Egress]
  egress:
  - to: [{{ipBlock: {{cidr: 10.0.0.0/8, except: [{db}/32]}}}}]
"#
    ));
    expect_reach(&c, "api", "db", &db, false);
    expect_reach(&c, "api", "other", &ip("other"), true);

    // Policies gone: everything is open again.
    c.ok(&["delete", "networkpolicy", "--all"]);
    for from in ["api", "other", "other-near"] {
        expect_reach(&c, from, "db", &db, true);
    }
}

/// A Deployment `web` of `replicas` httpd pods answering with their names, with a readiness
/// probe and a preStop pause, behind ClusterIP Service `web`; `extra` goes into the pod spec.
fn web_deployment(replicas: u32, extra: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: {replicas}
  strategy: {{rollingUpdate: {{maxUnavailable: 0, maxSurge: 1}}}}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 10
{extra}
      containers:
      - name: httpd
        image: {IMAGE}
        env: [{{name: VERSION, value: "1"}}]
        command: [sh, -c, "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
        readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1, failureThreshold: 1}}
        lifecycle: {{preStop: {{exec: {{command: [sleep, "2"]}}}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
"#
    )
}

/// Starts `seconds` of requests to `url` from pod `from`, 20 ms apart; each output line is
/// `<unix second the request started> ok|fail`.
fn request_loop(c: &LocalCluster, from: &str, url: &str, seconds: u32) -> std::process::Child {
    let script = format!(
        "end=$(($(date +%s)+{seconds})); while [ $(date +%s) -lt $end ]; do s=$(date +%s); if e=$(timeout 5 wget -O /dev/null {url} 2>&1); then echo \"$s ok\"; else echo \"$s fail (exit $?) $e; neighbours: $(ip neigh 2>&1)\" | tr '\\n' ' '; echo; fi; usleep 20000; done"
    );
    Command::new(tug_testkit::server::kubectl_path())
        .args(["exec", from, "--", "sh", "-c", &script])
        .env("KUBECONFIG", &c.kubeconfig)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl exec")
}

/// The loop's results: (unix second, succeeded).
fn results(child: std::process::Child) -> Vec<(u64, bool)> {
    let out = child.wait_with_output().expect("the request loop");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(t, r)| {
            if r != "ok" {
                eprintln!("request at {t}: {r}");
            }
            Some((t.parse().ok()?, r == "ok"))
        })
        .collect()
}

fn client_pod(c: &LocalCluster, node: u32) {
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: client}}\nspec:\n  nodeName: node-{node}\n  containers:\n  - {{name: c, image: {IMAGE}, command: [sleep, \"3600\"]}}\n"
    ));
    c.wait_running("client");
}

#[test]
fn a_rolling_update_loses_no_request_made_to_the_service() {
    let (c, _tmp) = cluster(2);
    client_pod(&c, 1);
    c.apply(&web_deployment(3, ""));
    wait_until("3 ready replicas", Duration::from_secs(90), || {
        c.jsonpath(&["deploy", "web"], "{.status.readyReplicas}") == "3"
    });
    let vip = c.jsonpath(&["svc", "web"], "{.spec.clusterIP}");
    let before = c.jsonpath(&["pods", "-l", "app=web"], "{.items[*].metadata.name}");
    // Each node's pod bridge keeps its address as pods come and go (pods' ARP entries for
    // their gateway stay true): it was set, not taken from a port.
    let bridge = |node: u32, what: &str| {
        host(&[
            "ip",
            "netns",
            "exec",
            &c.netns(node),
            "cat",
            &format!("/sys/class/net/tug0/{what}"),
        ])
        .trim()
        .to_string()
    };
    let macs: Vec<String> = (1..=2).map(|n| bridge(n, "address")).collect();
    let requests = request_loop(&c, "client", &format!("http://{vip}/"), 25);
    std::thread::sleep(Duration::from_secs(2));
    c.ok(&["set", "env", "deploy/web", "VERSION=2"]);
    wait_until("the rollout", Duration::from_secs(60), || {
        let out = c.kubectl(&["rollout", "status", "deploy/web", "--timeout=1s"], None);
        out.status.success()
    });
    let r = results(requests);
    let after = c.jsonpath(
        &["pods", "-l", "app=web"],
        "{range .items[*]}{.metadata.name} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
    );
    let after: Vec<&str> = after
        .lines()
        .filter(|l| l.split_whitespace().count() == 1)
        .collect();
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(
        before.split_whitespace().all(|p| !after.contains(&p)),
        "every pod was replaced: {before} -> {after:?}"
    );
    for n in 1..=2 {
        // NET_ADDR_SET: the address was given, so the kernel never replaces it.
        assert_eq!(bridge(n, "addr_assign_type"), "3", "node-{n}'s bridge");
        assert_eq!(
            bridge(n, "address"),
            macs[n as usize - 1],
            "node-{n}'s bridge"
        );
    }
    let failed = r.iter().filter(|(_, ok)| !ok).count();
    assert!(r.len() > 50, "too few requests: {}", r.len());
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed during the rollout",
        r.len()
    );
}

#[test]
fn a_node_cut_off_is_replaced_and_the_service_keeps_answering() {
    let tmp = tempfile::tempdir().expect("tmp");
    let archive = tug_testkit::image::busybox_archive(tmp.path(), IMAGE);
    let c = LocalCluster::start_with(
        tug_bin!(),
        3,
        &[archive],
        &[
            "--node-monitor-grace-period",
            "4",
            "--heartbeat-interval",
            "1",
        ],
    );
    client_pod(&c, 1);
    // One replica on each node, as a preference, so that replacements may share a node; pods
    // leave an unreachable node after 3 s instead of the default 300.
    let spread = "      topologySpreadConstraints:\n      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: web}}}\n      tolerations:\n      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 3}";
    c.apply(&web_deployment(3, spread));
    wait_until("3 ready replicas", Duration::from_secs(90), || {
        c.jsonpath(&["deploy", "web"], "{.status.readyReplicas}") == "3"
    });
    // The replicas on node-3: name and address.
    let on_node_3 = c.jsonpath(
        &[
            "pods",
            "-l",
            "app=web",
            "--field-selector",
            "spec.nodeName=node-3",
        ],
        "{range .items[*]}{.metadata.name} {.status.podIP}{\"\\n\"}{end}",
    );
    let (doomed, doomed_ips): (Vec<&str>, Vec<&str>) =
        on_node_3.lines().filter_map(|l| l.split_once(' ')).unzip();
    assert!(!doomed.is_empty(), "no replica on node-3");
    let vip = c.jsonpath(&["svc", "web"], "{.spec.clusterIP}");
    // Node-1's connections carry their start time, so a hung request's connection can be
    // found among them afterwards.
    host(&[
        "ip",
        "netns",
        "exec",
        &c.netns(1),
        "sysctl",
        "-qw",
        "net.netfilter.nf_conntrack_timestamp=1",
    ]);
    let timeline = Timeline::start(&c, 1, "app=web");
    let requests = request_loop(&c, "client", &format!("http://{vip}/"), 30);
    std::thread::sleep(Duration::from_secs(2));
    c.set_link(3, false);
    let cut = Instant::now();
    wait_until("node-3 to be NotReady", Duration::from_secs(30), || {
        c.jsonpath(
            &["node", "node-3"],
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        ) != "True"
    });
    let not_ready = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    eprintln!("node-3 NotReady {:?} after its link was cut", cut.elapsed());
    // The condition the client's requests depend on: the dead replica gone from the Service
    // rules of the client's node (node-1).
    let rules = || host(&["ip", "netns", "exec", &c.netns(1), "nft", "list", "ruleset"]);
    wait_until(
        "node-1 to drop the dead replica from its rules",
        Duration::from_secs(30),
        || {
            let rules = rules();
            assert!(
                rules.contains("dnat"),
                "no Service rules on node-1: {rules}"
            );
            doomed_ips
                .iter()
                .all(|ip| !rules.contains(&format!("{ip}:8080")))
        },
    );
    let left = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    eprintln!(
        "node-1's rules dropped {doomed_ips:?} {:?} after the cut",
        cut.elapsed()
    );
    wait_until(
        "replacements on the other nodes",
        Duration::from_secs(60),
        || {
            let ready: u32 = c
                .jsonpath(&["deploy", "web"], "{.status.readyReplicas}")
                .parse()
                .unwrap_or(0);
            let wanted: u32 = c
                .jsonpath(&["deploy", "web"], "{.spec.replicas}")
                .parse()
                .unwrap_or(0);
            let running = c.jsonpath(&[
                    "pods",
                    "-l",
                    "app=web",
                    "--field-selector",
                    "status.phase=Running",
                ],
                "{range .items[*]}{.metadata.name} {.spec.nodeName} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
            );
            let live_elsewhere = running
                .lines()
                .filter(|l| !l.contains("node-3") && l.split_whitespace().count() == 2)
                .count() as u32;
            ready >= wanted && live_elsewhere >= wanted
        },
    );
    for p in &doomed {
        let ts = c.jsonpath(&["pod", p], "{.metadata.deletionTimestamp}");
        assert!(
            !ts.is_empty() || !c.kubectl(&["get", "pod", p], None).status.success(),
            "{p} was not evicted"
        );
    }
    let r = results(requests);
    let timeline = timeline.finish();
    eprintln!("timeline:\n{timeline}");
    // Connections still unanswered on node-1 show which endpoint a hung request was sent to.
    let conntrack = host(&[
        "ip",
        "netns",
        "exec",
        &c.netns(1),
        "cat",
        "/proc/net/nf_conntrack",
    ]);
    let unanswered: Vec<&str> = conntrack
        .lines()
        .filter(|l| l.contains(&vip) && !l.contains("ASSURED"))
        .collect();
    let dumped = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Every connection to the Service, stamped with the second it started.
    let connections: Vec<String> = conntrack
        .lines()
        .filter(|l| l.contains(&vip))
        .filter_map(|l| {
            let delta: u64 = l
                .split_once("delta-time=")?
                .1
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            Some(format!("{} {l}", dumped.saturating_sub(delta)))
        })
        .collect();
    assert!(r.len() > 30, "too few requests: {}", r.len());
    // Requests are stamped with the second they started in: one started in the second the
    // rules changed may have gone to the dead replica.
    let window: Vec<_> = r.iter().filter(|(t, ok)| !ok && *t <= left).collect();
    let late: Vec<_> = r.iter().filter(|(t, ok)| !ok && *t > left).collect();
    eprintln!(
        "{} requests; {} failed while the dead replica was in node-1's rules, {} after",
        r.len(),
        window.len(),
        late.len()
    );
    assert!(
        late.is_empty(),
        "requests failed after node-1 dropped the dead replica (at {left}; node-3 NotReady at {not_ready}): {late:?}; all failures {:?}\nconnections to the Service never answered:\n{}\nconnections to the Service started in a failed request's seconds:\n{}\ntimeline:\n{timeline}",
        r.iter().filter(|(_, ok)| !ok).collect::<Vec<_>>(),
        unanswered.join("\n"),
        connections
            .iter()
            .filter(|l| late
                .iter()
                .any(|(t, _)| l.starts_with(&format!("{t} "))
                    || l.starts_with(&format!("{} ", t + 1))))
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    c.set_link(3, true);
}
