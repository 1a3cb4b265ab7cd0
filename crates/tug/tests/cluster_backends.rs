//! The node network's other shapes on `tug up` clusters: CNI plugins instead of the built-in
//! network, pulls from a registry on the host's loopback, the VXLAN overlay, and `tug up`
//! refusing a node range the host already uses.

use std::process::Command;
use std::time::{Duration, Instant};

use tug_testkit::kubectl::eventually_within as wait_until;
use tug_testkit::tug_bin;
use tug_testkit::up::{LocalCluster, host};

const IMAGE: &str = "docker.io/library/busybox:test";

#[test]
fn cni_plugins_give_pods_their_network_when_configured() {
    let tmp = tempfile::tempdir().expect("tmp");
    let archive = tug_testkit::image::busybox_archive(tmp.path(), IMAGE);
    let conf = tmp.path().join("net.d");
    let ipam = tmp.path().join("ipam");
    std::fs::create_dir_all(&conf).expect("conf dir");
    let subnet = format!("10.246.{}.0/24", std::process::id() % 250);
    // Debian's bridge, host-local and portmap plugins (/usr/lib/cni).
    let list = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "tugtest-cni",
        "plugins": [
            {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                      "routes": [{"dst": "0.0.0.0/0"}], "dataDir": ipam}},
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    });
    std::fs::write(conf.join("10-tugtest.conflist"), list.to_string()).expect("conflist");
    let conf_arg = conf.display().to_string();
    let c = LocalCluster::start_with(tug_bin!(), 1, &[archive], &["--cni-conf-dir", &conf_arg]);
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  containers:
  - name: httpd
    image: {IMAGE}
    command: [sh, -c, "mkdir -p /www && echo cni > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports: [{{containerPort: 8080, hostPort: 18090}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  containers:
  - {{name: c, image: {IMAGE}, command: [sleep, "3600"]}}
"#
    ));
    c.wait_running("web");
    c.wait_running("client");
    let ip = c.jsonpath(&["pod", "web"], "{.status.podIP}");
    let prefix = subnet.trim_end_matches("0/24");
    assert!(
        ip.starts_with(prefix),
        "{ip} is not from the CNI range {subnet}"
    );
    // The bridge plugin's network: pod to pod.
    assert_eq!(
        c.sh(
            "client",
            &format!("timeout 5 wget -q -O - http://{ip}:8080/")
        )
        .trim(),
        "cni"
    );
    // portmap: the hostPort on the node's address.
    let url = format!("http://{}:18090/", c.node_ip(1));
    wait_until("the hostPort to answer", Duration::from_secs(10), || {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "3", &url])
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).trim() == "cni"
    });
    // DEL gives the address back.
    let held = || {
        std::fs::read_dir(ipam.join("tugtest-cni"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(held(), 2);
    c.ok(&["delete", "pod", "web", "--grace-period=1"]);
    wait_until(
        "the address to be released",
        Duration::from_secs(30),
        || held() == 1,
    );
}

#[test]
fn every_node_pulls_from_a_registry_on_the_hosts_loopback() {
    let registry = tug_testkit::registry::Registry::start(None);
    let image = tug_testkit::image::busybox(&["sh", "-c", "echo pulled"]);
    registry.push("test/busybox", "v1", &image);
    // No image imported: each node must pull.
    let c = LocalCluster::start(tug_bin!(), 2, &[]);
    for node in [1, 2] {
        c.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: pull-{node}}}\nspec:\n  nodeName: node-{node}\n  restartPolicy: Never\n  containers:\n  - {{name: app, image: \"{}/test/busybox:v1\"}}\n",
            registry.host
        ));
    }
    for node in [1, 2] {
        let pod = format!("pull-{node}");
        let start = Instant::now();
        while c.jsonpath(&["pod", &pod], "{.status.phase}") != "Succeeded" {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{pod} did not run: {}\n{}",
                c.ok(&["describe", "pod", &pod]),
                c.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(c.ok(&["logs", &pod]).trim(), "pulled");
    }
}

#[test]
fn the_vxlan_overlay_carries_pods_across_nodes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let archive = tug_testkit::image::busybox_archive(tmp.path(), IMAGE);
    let c = LocalCluster::start_with(tug_bin!(), 2, &[archive], &["--backend", "vxlan"]);
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: server}}
spec:
  nodeName: node-2
  containers:
  - name: httpd
    image: {IMAGE}
    command: [sh, -c, "mkdir -p /www && dd if=/dev/zero of=/www/big bs=1k count=512 && echo overlay > /www/index.html && exec httpd -f -p 8080 -h /www"]
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
    c.wait_running("server");
    c.wait_running("client");
    let ip = c.jsonpath(&["pod", "server"], "{.status.podIP}");
    let cidr2 = c.jsonpath(&["node", "node-2"], "{.spec.podCIDR}");
    // node-1 reaches node-2's pods through the overlay device, not a route via node-2.
    let route = host(&[
        "ip",
        "netns",
        "exec",
        &c.netns(1),
        "ip",
        "route",
        "show",
        &cidr2,
    ]);
    assert!(route.contains("dev tugvx0"), "{route}");
    // Pods' MTU leaves room for the encapsulation.
    let mtu = c.sh("client", "cat /sys/class/net/eth0/mtu");
    assert_eq!(mtu.trim(), "1450");
    c.sh("client", &format!("ping -c 2 -W 3 {ip}"));
    assert_eq!(
        c.sh(
            "client",
            &format!("timeout 5 wget -q -O - http://{ip}:8080/")
        )
        .trim(),
        "overlay"
    );
    // Full-size packets cross too: 512 KiB byte for byte.
    let size = c.sh(
        "client",
        &format!("timeout 10 wget -q -O - http://{ip}:8080/big | wc -c"),
    );
    assert_eq!(size.trim(), "524288");
}

/// `tug up` refuses a node range that a link on the host already holds (the nodes' traffic
/// would go to that link), names the link, and leaves nothing behind.
#[test]
fn up_refuses_a_node_range_already_on_the_host() {
    let link = format!("tkbusy{}", std::process::id() % 10000);
    let range = format!("10.245.{}", 200 + std::process::id() % 50);
    let st = Command::new("ip")
        .args(["link", "add", &link, "type", "bridge"])
        .status()
        .expect("ip");
    assert!(st.success(), "ip link add {link}");
    struct Removed(String);
    impl Drop for Removed {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["link", "del", &self.0]).status();
        }
    }
    let _removed = Removed(link.clone());
    host(&["ip", "addr", "add", &format!("{range}.9/24"), "dev", &link]);
    let dir = tempfile::tempdir().expect("tmp");
    let out = Command::new(tug_bin!())
        .arg("up")
        .args(["--nodes", "1", "--name", "tkbusy"])
        .arg("--dir")
        .arg(dir.path())
        .args(["--node-cidr", &format!("{range}.0/24")])
        .output()
        .expect("tug up");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "tug up took a range in use: {err}");
    assert!(
        err.contains(&format!("{range}.9 on {link}")) && err.contains("is in use on this host"),
        "{err}"
    );
    assert!(
        host(&["ip", "-br", "link"])
            .lines()
            .all(|l| !l.starts_with("tkbusy0")),
        "the bridge was left behind"
    );
}
