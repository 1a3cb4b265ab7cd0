//! An HA control plane for a test: `tug server --cluster-init` and servers that `--join` it,
//! each on a loopback address of its own (127.0.X.1, 127.0.X.2, …, all on one port, as
//! servers of one cluster share a port) with its etcd member beside it. Killed when dropped
//! (their etcd members die with them).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::server::{TugServer, free_port, kubectl_path};

/// Leader election fast enough for tests: takeover within about 4 s.
pub const FAST_ELECTION: &[&str] = &[
    "--leader-elect-lease-duration",
    "4s",
    "--leader-elect-renew-deadline",
    "3s",
    "--leader-elect-retry-period",
    "1s",
];

/// Servers of one HA cluster.
pub struct HaCluster {
    /// The servers, in the order they started (None once stopped).
    pub servers: Vec<Option<TugServer>>,
    /// Their addresses.
    pub addresses: Vec<String>,
    /// The API port every server listens on.
    pub port: u16,
    /// The etcd client and peer ports (the same on every address).
    pub etcd_ports: (u16, u16),
    bin: PathBuf,
    extra: Vec<String>,
    dir: TempDir,
}

impl HaCluster {
    /// Starts `count` servers: the first with --cluster-init, the others joining it.
    pub fn start(bin: &Path, count: usize) -> HaCluster {
        Self::start_with(bin, count, &[])
    }

    /// Starts `count` servers with `extra` arguments each.
    pub fn start_with(bin: &Path, count: usize, extra: &[&str]) -> HaCluster {
        let dir = TempDir::new().expect("temp dir");
        // A /24 of loopback of its own, so that tests side by side do not meet.
        static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let block = 100 + ((std::process::id() * 7 + n * 13) % 150) as u8;
        let block = (block..250)
            .chain(100..block)
            .find(|b| std::net::TcpListener::bind((format!("127.0.{b}.1"), 0)).is_ok())
            .unwrap_or(block);
        let mut cluster = HaCluster {
            servers: Vec::new(),
            addresses: (1..=count).map(|i| format!("127.0.{block}.{i}")).collect(),
            port: free_port(),
            etcd_ports: (free_port(), free_port()),
            bin: bin.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            dir,
        };
        for i in 0..count {
            let server = cluster.launch(i, &[]);
            cluster.servers.push(Some(server));
        }
        cluster
    }

    /// The data directory of server `i`.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("s{i}"))
    }

    /// The server token of the cluster.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir(0).join("server-token"))
            .expect("server token")
            .trim()
            .to_string()
    }

    /// The URL of server `i`.
    pub fn url(&self, i: usize) -> String {
        format!("https://{}:{}", self.addresses[i], self.port)
    }

    /// The arguments server `i` starts with (`extra` added): --cluster-init for the first,
    /// --join of the first for the others.
    pub fn args(&self, i: usize, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "--listen",
            &format!("{}:{}", self.addresses[i], self.port),
            "--advertise-address",
            &self.addresses[i],
            "--cluster-dns-port",
            "0",
            "--node-name",
            &format!("s{i}"),
            "--etcd-client-port",
            &self.etcd_ports.0.to_string(),
            "--etcd-peer-port",
            &self.etcd_ports.1.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let own_election = self
            .extra
            .iter()
            .chain(
                extra
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .iter(),
            )
            .any(|a| a.starts_with("--leader-elect"));
        if !own_election {
            args.extend(FAST_ELECTION.iter().map(|s| s.to_string()));
        }
        if i == 0 {
            args.push("--cluster-init".into());
        } else {
            args.extend(["--join".into(), self.url(0), "--token".into(), self.token()]);
        }
        args.extend(self.extra.iter().cloned());
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    fn launch(&self, i: usize, extra: &[&str]) -> TugServer {
        let args = self.args(i, extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        TugServer::start_with(&self.bin, &self.data_dir(i), &args)
    }

    /// Kills server `i` (SIGKILL; its etcd member dies with it).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut s) = self.servers[i].take() {
            s.kill();
        }
    }

    /// Stops server `i` gracefully (SIGTERM): it releases its Leases first.
    pub fn terminate(&mut self, i: usize) {
        if let Some(mut s) = self.servers[i].take() {
            s.terminate();
        }
    }

    /// Starts server `i` again on its data directory.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        let server = self.launch(i, &[]);
        self.servers[i] = Some(server);
    }

    /// Runs `tug ARGS` (such as `snapshot ls --data-dir …`) and returns its output.
    pub fn tug(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .args(args)
            .output()
            .expect("run tug")
    }

    /// The admin kubeconfig of server `i` (pointing at that server).
    pub fn kubeconfig(&self, i: usize) -> PathBuf {
        self.data_dir(i).join("admin.kubeconfig")
    }

    /// Runs kubectl against server `i`.
    pub fn kubectl(&self, i: usize, args: &[&str]) -> Output {
        Command::new(kubectl_path())
            .args(args)
            .arg("--request-timeout=5s")
            .env("KUBECONFIG", self.kubeconfig(i))
            .output()
            .expect("run kubectl")
    }

    /// Runs kubectl against server `i` and returns its output, failing the test on an error.
    pub fn ok(&self, i: usize, args: &[&str]) -> String {
        let out = self.kubectl(i, args);
        assert!(
            out.status.success(),
            "kubectl {args:?} against server {i} failed: {}\nserver log tail:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_tail(i)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls `check` every 200 ms until it returns Some, or fails the test after `limit`.
    pub fn wait_for<T>(
        &self,
        what: &str,
        limit: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The last lines of server `i`'s log.
    pub fn log_tail(&self, i: usize) -> String {
        let log = std::fs::read_to_string(self.data_dir(i).join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}
