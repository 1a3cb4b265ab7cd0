//! A multi-node cluster on this machine, made by `tug up` (the same machinery users run) with
//! names and ranges of the test's own, and removed by `tug down` when dropped. Nodes can be
//! cut off (their link set down) or killed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// A cluster of `tug up`.
pub struct LocalCluster {
    bin: PathBuf,
    /// The cluster's directory (`tug up --dir`).
    pub dir: tempfile::TempDir,
    /// Its short name: links are `<name>v<i>`, namespaces `<name>-node-<i>`.
    pub name: String,
    /// The node link's /24: the host is `.1`, node i `.(i+1)`.
    pub node_net: String,
    /// The pod range.
    pub cluster_cidr: String,
    pub kubeconfig: PathBuf,
    down: bool,
}

impl LocalCluster {
    /// Runs `bin up --nodes N` with ranges no other test uses at the same time, and imports
    /// the image archives into the nodes' shared store.
    pub fn start(bin: &Path, nodes: u8, images: &[PathBuf]) -> LocalCluster {
        Self::start_with(bin, nodes, images, &[])
    }

    /// [`LocalCluster::start`] with more `tug up` flags.
    pub fn start_with(bin: &Path, nodes: u8, images: &[PathBuf], extra: &[&str]) -> LocalCluster {
        static CLUSTERS: AtomicU32 = AtomicU32::new(0);
        // A node range no link on this host holds (a cluster of another test process, or one
        // a killed run left behind).
        let k = (0..20)
            .map(|_| (std::process::id() + CLUSTERS.fetch_add(1, Ordering::Relaxed)) % 20)
            .find(|k| range_free(&format!("10.245.{k}.0/24")))
            .expect("every test node range 10.245.0-19.0/24 is in use on this host");
        let name = format!("tk{}x{k}", std::process::id() % 1000);
        let node_net = format!("10.245.{k}");
        let cluster_cidr = format!("10.{}.0.0/16", 160 + k);
        let dir = tempfile::tempdir().expect("tmp");
        for archive in images {
            let out = Command::new(bin)
                .args(["image", "import"])
                .arg(archive)
                .arg("--data-dir")
                .arg(dir.path().join("shared"))
                .output()
                .expect("tug image import");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut c = LocalCluster {
            bin: bin.to_path_buf(),
            kubeconfig: dir.path().join("server").join("admin.kubeconfig"),
            dir,
            name,
            node_net,
            cluster_cidr,
            down: false,
        };
        let out = Command::new(bin)
            .arg("up")
            .args(["--nodes", &nodes.to_string()])
            .arg("--dir")
            .arg(c.dir.path())
            .args(["--name", &c.name])
            .args(["--node-cidr", &format!("{}.0/24", c.node_net)])
            .args(["--cluster-cidr", &c.cluster_cidr])
            .args(["--port", "0"])
            .args(extra)
            .output()
            .expect("tug up");
        if !out.status.success() {
            c.down = true;
            panic!(
                "tug up failed: {}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                c.logs()
            );
        }
        // An HA cluster's admin kubeconfig goes through `tug lb`, over every server.
        let through = c.dir.path().join("admin.kubeconfig");
        if through.exists() {
            c.kubeconfig = through;
        }
        c
    }

    /// Node `i`'s address (1-based).
    pub fn node_ip(&self, i: u32) -> String {
        format!("{}.{}", self.node_net, i + 1)
    }

    /// Node `i`'s network namespace.
    pub fn netns(&self, i: u32) -> String {
        format!("{}-node-{i}", self.name)
    }

    /// The host end of node `i`'s link.
    pub fn link(&self, i: u32) -> String {
        format!("{}v{i}", self.name)
    }

    /// Sets node `i`'s link down (`false`) or up again.
    pub fn set_link(&self, i: u32, up: bool) {
        let st = Command::new("ip")
            .args(["link", "set", &self.link(i), if up { "up" } else { "down" }])
            .status()
            .expect("ip");
        assert!(st.success());
    }

    /// Runs kubectl against the cluster.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        crate::kubectl::kubectl_with_config(&self.kubeconfig, args, stdin)
    }

    /// kubectl's standard output; panics (with its error and the cluster's logs) on failure.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args, None);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// `kubectl apply -f -` of `yaml`.
    pub fn apply(&self, yaml: &str) {
        let out = self.kubectl(&["apply", "-f", "-"], Some(yaml));
        assert!(
            out.status.success(),
            "apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `kubectl get WHAT -o jsonpath=PATH`, trimmed; empty when kubectl fails (an object
    /// not there yet).
    pub fn jsonpath(&self, what: &[&str], path: &str) -> String {
        crate::kubectl::jsonpath_with_config(&self.kubeconfig, what, path)
            .trim()
            .to_string()
    }

    /// Waits up to 60 s for `pod` to be Running; fails with its description and the logs.
    pub fn wait_running(&self, pod: &str) {
        let start = std::time::Instant::now();
        while self.jsonpath(&["pod", pod], "{.status.phase}") != "Running" {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "pod {pod} is not Running: {}\n{}",
                self.ok(&["describe", "pod", pod]),
                self.logs()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// `kubectl exec POD -- sh -c SCRIPT`: its output, or the failure with the cluster's logs.
    pub fn sh(&self, pod: &str, script: &str) -> String {
        let out = self.kubectl(&["exec", pod, "--", "sh", "-c", script], None);
        assert!(
            out.status.success(),
            "{script}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// The tails of the server's and nodes' logs, for failures.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "log") {
                    let text = std::fs::read_to_string(&p).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(30).collect();
                    s.push_str(&format!("--- {}\n", p.display()));
                    for l in tail.into_iter().rev() {
                        s.push_str(l);
                        s.push('\n');
                    }
                }
            }
        }
        s
    }

    /// The processes `tug up` started (from `up.json`): name, network namespace, arguments
    /// and log file.
    fn processes(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read(self.dir.path().join("up.json")).unwrap_or_default();
        let state: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
        state["processes"].as_array().cloned().unwrap_or_default()
    }

    fn process(&self, name: &str) -> serde_json::Value {
        self.processes()
            .into_iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("tug up started no process {name:?}"))
    }

    /// The data directory of process `name` (`server-2`, `node-1`).
    pub fn data_dir_of(&self, name: &str) -> PathBuf {
        let p = self.process(name);
        let args: Vec<&str> = p["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str())
            .collect();
        args.windows(2)
            .find(|w| w[0] == "--data-dir")
            .map(|w| PathBuf::from(w[1]))
            .unwrap_or_else(|| panic!("{name} has no --data-dir"))
    }

    /// The PIDs of processes whose program is `program` and whose command line holds
    /// `marker`.
    pub fn pids_of(program: &str, marker: &str) -> Vec<u32> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if args.first().is_some_and(|a| a.ends_with(program))
                && args.iter().any(|a| a.contains(marker))
            {
                out.push(pid);
            }
        }
        out
    }

    /// The PID of tug process `name` (its role and data directory on its command line).
    pub fn pid(&self, name: &str) -> Option<u32> {
        let dir = self.data_dir_of(name).display().to_string();
        Self::pids_of("tug", &dir).into_iter().find(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.get(1)
                .is_some_and(|a| *a == b"server".as_slice() || *a == b"agent".as_slice())
                && args
                    .windows(2)
                    .any(|w| w[0] == b"--data-dir" && w[1] == dir.as_bytes())
        })
    }

    /// Sends `signal` (`KILL`, `TERM`) to process `name` and waits (up to 30 s) until it is
    /// gone. Its containers keep running (they outlive agents by design).
    pub fn stop_process(&self, name: &str, signal: &str) {
        let Some(pid) = self.pid(name) else {
            return;
        };
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
        {
            assert!(std::time::Instant::now() < deadline, "{name} did not stop");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Starts process `name` again as `tug up` started it (in its network namespace, its
    /// output appended to its log).
    pub fn start_process(&self, name: &str) {
        let p = self.process(name);
        let args: Vec<String> = p["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(p["log"].as_str().unwrap_or("/dev/null"))
            .expect("open the process log");
        let mut cmd = match p["netns"].as_str() {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        use std::os::unix::process::CommandExt;
        cmd.args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .env("NO_COLOR", "1")
            .process_group(0);
        let mut child = cmd.spawn().expect("restart a tug process");
        // Reaped when it exits (killed by a test or by `tug down`).
        std::thread::spawn(move || {
            let _ = child.wait();
        });
    }

    /// The host end of server `j`'s link (an HA cluster of `tug up --servers`).
    pub fn server_link(&self, j: u32) -> String {
        format!("{}s{j}", self.name)
    }

    /// The admin kubeconfig of server `j` (1-based), naming that server alone.
    pub fn server_kubeconfig(&self, j: u32) -> PathBuf {
        if j == 1 {
            self.dir.path().join("server").join("admin.kubeconfig")
        } else {
            self.dir
                .path()
                .join(format!("server-{j}"))
                .join("admin.kubeconfig")
        }
    }

    /// Runs `tug down`; returns its output.
    pub fn down(&mut self) -> Output {
        self.down = true;
        Command::new(&self.bin)
            .arg("down")
            .arg("--dir")
            .arg(self.dir.path())
            .output()
            .expect("tug down")
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if !self.down {
            let _ = self.down();
        }
    }
}

/// A command on the host: its standard output; the test fails if it cannot be run.
pub fn host(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A table on the host counting packets for the cluster's ranges that leave by the default
/// route's device; removed when dropped.
pub struct LeakCounter {
    table: String,
}

impl LeakCounter {
    /// Installs the counter for `c`'s ranges.
    pub fn install(c: &LocalCluster) -> LeakCounter {
        let dev = host(&["ip", "route", "show", "default"])
            .split_whitespace()
            .skip_while(|w| *w != "dev")
            .nth(1)
            .unwrap_or("eth0")
            .to_string();
        let table = format!("{}-leaks", c.name);
        let ranges = format!(
            "{{ {}, 10.96.0.0/12, {}.0/24 }}",
            c.cluster_cidr, c.node_net
        );
        let script = format!(
            "table ip {table} {{\n chain out {{ type filter hook postrouting priority 0; oifname \"{dev}\" ip daddr {ranges} counter\n }}\n}}\n"
        );
        let mut child = Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("nft");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(script.as_bytes())
            .expect("write");
        assert!(child.wait().expect("nft").success());
        LeakCounter { table }
    }

    /// Packets counted so far.
    pub fn packets(&self) -> u64 {
        let text = host(&["nft", "list", "table", "ip", &self.table]);
        text.split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("the counter")
    }
}

impl Drop for LeakCounter {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &self.table])
            .status();
    }
}

/// Whether no address of `range` is on a link of this host.
fn range_free(range: &str) -> bool {
    Command::new("ip")
        .args(["-o", "-4", "addr", "show", "to", range])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.is_empty())
}
