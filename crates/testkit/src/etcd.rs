//! Starts a throwaway single-member etcd (Debian's `etcd-server` package) for tests.

use std::fs::File;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tug_store::{EtcdStore, Store};

/// The etcd server binary.
pub const ETCD: &str = "/usr/bin/etcd";
/// The etcdctl binary.
pub const ETCDCTL: &str = "/usr/bin/etcdctl";

/// How long a started etcd has to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running etcd on loopback ports, killed when dropped.
pub struct EtcdProcess {
    /// Client URL, e.g. `http://127.0.0.1:40123`.
    pub endpoint: String,
    /// The data directory in use.
    pub data_dir: PathBuf,
    /// Peer URL.
    peer: String,
    child: Child,
    log_path: PathBuf,
    /// Holds the log file (and the data dir when [`EtcdProcess::start`] made it).
    _logs: TempDir,
    _data: Option<TempDir>,
}

impl EtcdProcess {
    /// Starts etcd on a fresh, temporary data directory.
    pub fn start() -> EtcdProcess {
        let data = TempDir::new().expect("create etcd data dir");
        let dir = data.path().join("data");
        let mut p = Self::launch(&dir);
        p._data = Some(data);
        p
    }

    /// Starts etcd on an existing data directory (such as one made by
    /// [`etcdctl_snapshot_restore`]); the directory is left in place afterwards.
    pub fn start_in(data_dir: &Path) -> EtcdProcess {
        Self::launch(data_dir)
    }

    /// The log written so far (stdout and stderr).
    pub fn log(&self) -> String {
        read_tail(&self.log_path, usize::MAX)
    }

    /// Kills etcd (SIGKILL) and starts it again on the same data directory and ports, as
    /// a crashed member comes back; returns once it answers.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.data_dir, &self.endpoint, &self.peer, &self.log_path);
        self.wait_ready();
    }

    fn launch(data_dir: &Path) -> EtcdProcess {
        if !Path::new(ETCD).exists() {
            panic!("{ETCD} not found: install it with `apt-get install etcd-server`");
        }
        let logs = TempDir::new().expect("create etcd log dir");
        let log_path = logs.path().join("etcd.log");
        // Hold both listeners at once so the two ports differ, then free them for etcd.
        let (client_port, peer_port) = {
            let a = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
            let b = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
            (
                a.local_addr().expect("local addr").port(),
                b.local_addr().expect("local addr").port(),
            )
        };
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let child = spawn(data_dir, &client, &peer, &log_path);
        let mut p = EtcdProcess {
            endpoint: client,
            data_dir: data_dir.to_path_buf(),
            peer,
            child,
            log_path,
            _logs: logs,
            _data: None,
        };
        p.wait_ready();
        p
    }

    /// Polls until etcd serves a read, on a runtime of its own so that this works from both
    /// sync code and inside a tokio test.
    fn wait_ready(&mut self) {
        let endpoint = self.endpoint.clone();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "etcd exited early with {status}; log:\n{}",
                    read_tail(&self.log_path, 4000)
                );
            }
            let ep = endpoint.clone();
            let attempt = std::thread::spawn(move || -> Result<i64, String> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                rt.block_on(async move {
                    let store = EtcdStore::connect(&[ep]).await.map_err(|e| e.to_string())?;
                    store.current_revision().await.map_err(|e| e.to_string())
                })
            })
            .join();
            let last_err = match attempt {
                Ok(Ok(_)) => return,
                Ok(Err(e)) => e,
                Err(_) => "readiness probe panicked".to_string(),
            };
            if Instant::now() >= deadline {
                panic!(
                    "etcd at {endpoint} did not answer within {START_TIMEOUT:?} (last error: \
                     {last_err}); log tail:\n{}",
                    read_tail(&self.log_path, 4000)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts etcd serving clients at `client` and peers at `peer`, its output appended to
/// `log_path`.
fn spawn(data_dir: &Path, client: &str, peer: &str, log_path: &Path) -> Child {
    let log = File::options()
        .create(true)
        .append(true)
        .open(log_path)
        .expect("open etcd log file");
    let log2 = log.try_clone().expect("clone etcd log file handle");
    Command::new(ETCD)
        .arg("--name")
        .arg("default")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--listen-client-urls")
        .arg(client)
        .arg("--advertise-client-urls")
        .arg(client)
        .arg("--listen-peer-urls")
        .arg(peer)
        .arg("--initial-advertise-peer-urls")
        .arg(peer)
        .arg("--initial-cluster")
        .arg(format!("default={peer}"))
        .arg("--logger")
        .arg("zap")
        .arg("--log-outputs")
        .arg("stderr")
        .env_remove("ETCD_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {ETCD}: {e}"))
}

/// The last `max` bytes of a file, lossily decoded.
fn read_tail(path: &Path, max: usize) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_end(&mut buf);
    }
    let start = buf.len().saturating_sub(max);
    String::from_utf8_lossy(&buf[start..]).into_owned()
}

/// Restores an etcd snapshot file into `new_data_dir` (which must not exist yet) with
/// `etcdctl snapshot restore`, verifying the snapshot's hash; panics with etcdctl's output on
/// failure.
pub fn etcdctl_snapshot_restore(snapshot: &Path, new_data_dir: &Path) {
    if !Path::new(ETCDCTL).exists() {
        panic!("{ETCDCTL} not found: install it with `apt-get install etcd-client`");
    }
    assert!(
        !new_data_dir.exists(),
        "{} must not exist before a restore",
        new_data_dir.display()
    );
    let out = Command::new(ETCDCTL)
        .env("ETCDCTL_API", "3")
        .arg("snapshot")
        .arg("restore")
        .arg(snapshot)
        .arg("--data-dir")
        .arg(new_data_dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {ETCDCTL}: {e}"));
    if !out.status.success() {
        panic!(
            "etcdctl snapshot restore {} --data-dir {} failed with {}:\nstdout:\n{}\nstderr:\n{}",
            snapshot.display(),
            new_data_dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
