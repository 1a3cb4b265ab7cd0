//! A containerd (Debian's 1.6, with runc) for the CRI runtime tests: its own root, state,
//! socket, CNI configuration (a bridge on a test subnet, no masquerade) and registry hosts
//! directory in a temporary directory. On drop it kills its tasks, stops, and removes the
//! network namespaces, bridge and IP allocations it made.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running containerd.
pub struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
    /// The CRI endpoint, `unix:///…/containerd.sock`.
    pub endpoint: String,
    socket: PathBuf,
    bridge: String,
    network: String,
    netns_before: Vec<String>,
}

fn netns() -> Vec<String> {
    std::fs::read_dir("/var/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

impl Containerd {
    /// Starts containerd with pods on `subnet` (a /24 nobody else uses) behind bridge
    /// `bridge`, and `sandbox_image` as its pause image. Registries on loopback are reached
    /// over plain HTTP.
    pub fn start(subnet: &str, bridge: &str, sandbox_image: &str) -> Containerd {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path();
        let socket = d.join("containerd.sock");
        let network = format!("tugtest-{bridge}");
        for sub in ["root", "state", "cni", "certs.d"] {
            std::fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        let cni = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": network,
            "plugins": [
                {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                          "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        });
        std::fs::write(d.join("cni/10-tugtest.conflist"), cni.to_string()).expect("cni");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_cdi = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{certs}"
"#,
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = socket.display(),
            cni = d.join("cni").display(),
            certs = d.join("certs.d").display(),
        );
        std::fs::write(d.join("config.toml"), config).expect("config");
        let log = std::fs::File::create(d.join("containerd.log")).expect("log");
        let netns_before = netns();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start containerd (apt-get install containerd runc)");
        let c = Containerd {
            child,
            endpoint: format!("unix://{}", socket.display()),
            socket,
            bridge: bridge.to_string(),
            network,
            netns_before,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !c.socket.exists() || !c.ctr(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "containerd did not start: {}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    /// Lets containerd pull from `host` (a loopback registry) over plain HTTP.
    pub fn allow_http_registry(&self, host: &str) {
        let dir = self.dir.path().join("certs.d").join(host);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join("hosts.toml"),
            format!("server = \"http://{host}\"\n[host.\"http://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"),
        )
        .expect("hosts.toml");
    }

    /// Runs `ctr` against this containerd, in the CRI's namespace.
    pub fn ctr(&self, args: &[&str]) -> std::process::Output {
        Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", "k8s.io"])
            .args(args)
            .output()
            .expect("ctr")
    }

    /// Imports an OCI archive (named by its `io.containerd.image.name` annotation).
    pub fn import(&self, archive: &Path) {
        let out = self.ctr(&["images", "import", &archive.to_string_lossy()]);
        assert!(
            out.status.success(),
            "ctr images import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// containerd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // The containers go first (their shims outlive containerd), then containerd.
        let tasks = self.ctr(&["tasks", "ls", "--quiet"]);
        for id in String::from_utf8_lossy(&tasks.stdout).split_whitespace() {
            let _ = self.ctr(&["tasks", "kill", "--all", "--signal", "SIGKILL", id]);
        }
        std::thread::sleep(Duration::from_millis(300));
        for id in String::from_utf8_lossy(&tasks.stdout).split_whitespace() {
            let _ = self.ctr(&["tasks", "delete", "--force", id]);
        }
        let containers = self.ctr(&["containers", "ls", "--quiet"]);
        for id in String::from_utf8_lossy(&containers.stdout).split_whitespace() {
            let _ = self.ctr(&["containers", "delete", id]);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Network namespaces the CRI made for pods it never tore down.
        for ns in netns() {
            if ns.starts_with("cni-") && !self.netns_before.contains(&ns) {
                let path = format!("/var/run/netns/{ns}");
                let _ = nix::mount::umount2(path.as_str(), nix::mount::MntFlags::MNT_DETACH);
                let _ = std::fs::remove_file(&path);
            }
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(format!("/var/lib/cni/networks/{}", self.network));
        // Whatever containerd left mounted under its directories.
        let root = self.dir.path().to_string_lossy().into_owned();
        if let Ok(mounts) = std::fs::read_to_string("/proc/mounts") {
            let mut points: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter(|p| p.starts_with(&root))
                .collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in points {
                let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}
