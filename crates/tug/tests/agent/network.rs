//! The pod network: pods reach each other and the node; traffic leaving the pod range is masqueraded.

use super::*;

#[test]
fn a_deployment_becomes_ready_and_its_pods_answer_from_the_node_and_from_other_pods() {
    let (s, _dir) = cluster();
    apply(
        &s,
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: httpd
        image: busybox:test
        command: [sh, -c, "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
"#,
    );
    wait_until(
        "the deployment to be available",
        Duration::from_secs(60),
        || jsonpath(&s, &["deploy", "web"], "{.status.readyReplicas}") == "2",
    );
    let pods = jsonpath(
        &s,
        &["pods", "-l", "app=web"],
        "{range .items[*]}{.metadata.name} {.status.podIP}{\"\\n\"}{end}",
    );
    let pods: Vec<(String, String)> = pods
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, ip)| (n.to_string(), ip.to_string()))
        .collect();
    assert_eq!(pods.len(), 2, "{pods:?}");
    assert_ne!(pods[0].1, pods[1].1, "each pod has its own address");
    // From the node: the pod's address, over the bridge.
    for (name, ip) in &pods {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", &format!("http://{ip}:8080/")])
            .output()
            .expect("curl");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            name,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // From another pod.
    apply(
        &s,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: client}}\nspec:\n  restartPolicy: Never\n  containers:\n  - {{name: c, image: busybox:test, command: [sh, -c, \"timeout 5 wget -q -O - http://{}:8080/\"]}}\n",
            pods[0].1
        ),
    );
    wait_phase(&s, "client", "Succeeded", Duration::from_secs(60));
    assert_eq!(ok(&s, &["logs", "client"]).trim(), pods[0].0);
}

/// The outside network's addresses: the node's end and the namespace's (198.18.0.0/15 is set
/// aside for tests like this; these machines' own network is 192.0.2.0/24).
const OUTSIDE_NODE: &str = "198.18.7.1";
const OUTSIDE_FAR: &str = "198.18.7.2";

/// A network namespace of the test's own standing for the world outside the cluster: a veth
/// pair with OUTSIDE_NODE/30 on the node's side and OUTSIDE_FAR/30 inside, where busybox httpd
/// answers `/cgi-bin/ip` with the address the request came from. Removed when dropped.
struct Outside {
    ns: String,
    httpd: std::process::Child,
}

impl Outside {
    fn start(dir: &Path) -> Outside {
        let id = std::process::id() % 100_000;
        let (ns, host, inner) = (
            format!("tugout{id}"),
            format!("tugo{id}h"),
            format!("tugo{id}i"),
        );
        let www = dir.join("outside-www");
        std::fs::create_dir_all(www.join("cgi-bin")).expect("www");
        std::fs::write(
            www.join("cgi-bin/ip"),
            "#!/bin/sh\necho Content-Type: text/plain\necho\necho \"$REMOTE_ADDR\"\n",
        )
        .expect("cgi script");
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(www.join("cgi-bin/ip"), mode).expect("chmod");
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("ip");
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let addrs = Command::new("ip")
            .args(["-br", "addr"])
            .output()
            .expect("ip addr");
        assert!(
            !String::from_utf8_lossy(&addrs.stdout).contains("198.18.7."),
            "the outside network's range is in use on this machine"
        );
        ip(&["netns", "add", &ns]);
        ip(&[
            "link", "add", &host, "type", "veth", "peer", "name", &inner, "netns", &ns,
        ]);
        ip(&["addr", "add", &format!("{OUTSIDE_NODE}/30"), "dev", &host]);
        ip(&["link", "set", &host, "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{OUTSIDE_FAR}/30"),
            "dev",
            &inner,
        ]);
        ip(&["-n", &ns, "link", "set", &inner, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        let httpd = Command::new("ip")
            .args([
                "netns", "exec", &ns, "busybox", "httpd", "-f", "-p", "8080", "-h",
            ])
            .arg(&www)
            .spawn()
            .expect("httpd in the outside namespace");
        Outside { ns, httpd }
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = self.httpd.kill();
        let _ = self.httpd.wait();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

#[test]
fn traffic_leaving_the_pod_range_is_masqueraded_and_pod_to_pod_traffic_is_not() {
    let (s, dir) = cluster();
    let _outside = Outside::start(dir.path());
    let echo_ip = "mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' > /www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && exec httpd -f -p 8080 -h /www";
    apply(
        &s,
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: echo}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: c, image: {IMAGE}, command: [sh, -c, "{echo_ip}"]}}
"#
        ),
    );
    wait_phase(&s, "echo", "Running", Duration::from_secs(60));
    let echo = jsonpath(&s, &["pod", "echo"], "{.status.podIP}");
    apply(
        &s,
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: {IMAGE}
    command: [sh, -c, "sleep 1; timeout 10 wget -q -O - http://{OUTSIDE_FAR}:8080/cgi-bin/ip; timeout 10 wget -q -O - http://{echo}:8080/cgi-bin/ip"]
"#
        ),
    );
    wait_phase(&s, "client", "Succeeded", Duration::from_secs(60));
    let client = jsonpath(&s, &["pod", "client"], "{.status.podIP}");
    let seen = ok(&s, &["logs", "client"]);
    // httpd reports IPv4 peers of its dual-stack socket as [::ffff:a.b.c.d].
    let mut lines = seen
        .lines()
        .map(|l| l.trim_start_matches("[::ffff:").trim_end_matches(']'));
    // Outside the cluster the pod appears as the node; inside it, as itself.
    assert_eq!(lines.next(), Some(OUTSIDE_NODE), "{seen}");
    assert_eq!(lines.next(), Some(client.as_str()), "{seen}");
}
