//! The etcd member a server runs for its HA cluster: Debian's `etcd` binary, started and
//! restarted by the server, its data in `DATA_DIR/etcd`, serving its clients and peers over
//! TLS with certificates of the cluster CA. It dies with the server (a parent-death signal),
//! as an embedded member would, and is restarted when it exits on its own.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use tug_apiserver::pki::{Issued, Pki};
use tug_store::{EtcdStore, EtcdTls};

/// The etcd server binary (Debian's `etcd-server` package).
pub const ETCD: &str = "/usr/bin/etcd";

/// The cluster token etcd members are started with.
const CLUSTER_TOKEN: &str = "tugboat";

/// How long a started member has to serve a read (a joining member first syncs).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How a member starts.
#[derive(Clone, Debug)]
pub enum Start {
    /// The first member of a new cluster.
    New,
    /// A member added to a running cluster: `name=peerURL,…` of every member, itself included.
    Join(String),
    /// A member whose data directory already holds its state.
    Restart,
}

/// Where a member listens and what it is called (kept in `DATA_DIR/etcd/member.json`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct MemberConfig {
    /// The member's name (the server's node name).
    pub name: String,
    /// The address peers and the servers reach it at.
    pub address: IpAddr,
    /// The client port.
    pub client_port: u16,
    /// The peer port.
    pub peer_port: u16,
}

impl MemberConfig {
    /// `https://address:client_port`.
    pub fn client_url(&self) -> String {
        url(self.address, self.client_port)
    }

    /// `https://address:peer_port`.
    pub fn peer_url(&self) -> String {
        url(self.address, self.peer_port)
    }

    /// The configuration of the member this data directory ran last.
    pub fn load(data_dir: &Path) -> anyhow::Result<MemberConfig> {
        let path = dir(data_dir).join("member.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {}: is {} the data directory of a server started with --cluster-init \
                 or --join?",
                path.display(),
                data_dir.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

fn url(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("https://{v4}:{port}"),
        IpAddr::V6(v6) => format!("https://[{v6}]:{port}"),
    }
}

/// The directory of a server's etcd member.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("etcd")
}

/// Whether `data_dir` already holds an etcd member's state (the server ran one before).
pub fn exists(data_dir: &Path) -> bool {
    dir(data_dir).join("data").join("member").is_dir()
}

/// The client TLS the server uses towards etcd (a client certificate of the cluster CA, made
/// once and kept in `pki/`).
pub fn client_tls(pki: &Pki) -> anyhow::Result<EtcdTls> {
    let pair = kept(&pki.dir, "etcd-client", || {
        pki.issue("kube-apiserver-etcd-client", &[], &[], false)
    })?;
    Ok(EtcdTls {
        ca: pki.ca_cert.clone(),
        cert: pair.cert,
        key: pair.key,
    })
}

/// A certificate kept as `pki/NAME.crt` and `pki/NAME.key`, made by `make` when missing.
fn kept(
    dir: &Path,
    name: &str,
    make: impl FnOnce() -> anyhow::Result<Issued>,
) -> anyhow::Result<Issued> {
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    if let (Ok(cert), Ok(key)) = (std::fs::read_to_string(&crt), std::fs::read_to_string(&key)) {
        return Ok(Issued { cert, key });
    }
    let pair = make()?;
    std::fs::write(&crt, &pair.cert).with_context(|| format!("writing {}", crt.display()))?;
    tug_apiserver::pki::write_private(&key, &pair.key)?;
    Ok(pair)
}

/// A running, supervised member; dropping it stops the member.
pub struct EtcdMember {
    supervisor: tokio::task::JoinHandle<()>,
    stopping: tokio::sync::watch::Sender<bool>,
    /// The member's settings.
    pub config: MemberConfig,
}

/// How long a member stopping gracefully has (it hands raft leadership over first).
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

impl EtcdMember {
    /// Stops the member gracefully (SIGTERM): a leader hands raft leadership to another
    /// member first, so the cluster needs no election.
    pub async fn stop(mut self) {
        let _ = self.stopping.send(true);
        let supervisor = std::mem::replace(&mut self.supervisor, tokio::spawn(async {}));
        let _ = tokio::time::timeout(STOP_TIMEOUT + Duration::from_secs(1), supervisor).await;
    }
}

impl Drop for EtcdMember {
    fn drop(&mut self) {
        self.supervisor.abort();
    }
}

impl EtcdMember {
    /// Starts the member and returns once it serves reads.
    pub async fn start(
        data_dir: &Path,
        pki: &Pki,
        config: MemberConfig,
        start: Start,
    ) -> anyhow::Result<EtcdMember> {
        if !Path::new(ETCD).exists() {
            bail!(
                "--cluster-init and --join run an etcd member, and {ETCD} is missing: install \
                 it with `apt-get install etcd-server`"
            );
        }
        let dir = dir(data_dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut sans = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            config.address.to_string(),
        ];
        sans.dedup();
        let peer = kept(&pki.dir, "etcd-member", || {
            pki.issue_peer(&format!("etcd-{}", config.name), &sans)
        })?;
        let pem = |name: &str, text: &str| -> anyhow::Result<PathBuf> {
            let path = dir.join(name);
            tug_apiserver::pki::write_private(&path, text)?;
            Ok(path)
        };
        std::fs::write(dir.join("member.json"), serde_json::to_vec_pretty(&config)?)?;
        let files = Files {
            ca: pem("ca.crt", &pki.ca_cert)?,
            cert: pem("member.crt", &peer.cert)?,
            key: pem("member.key", &peer.key)?,
        };
        let mut first = Some(start);
        let (stopping, stop) = tokio::sync::watch::channel(false);
        let supervisor = {
            let (dir, config) = (dir.clone(), config.clone());
            tokio::spawn(async move {
                let mut backoff = Duration::from_millis(500);
                loop {
                    // After the first start the data directory holds the member.
                    let start = first.take().unwrap_or(Start::Restart);
                    let started = tokio::time::Instant::now();
                    let ran = run_once(&dir, &config, &files, &start, stop.clone()).await;
                    if *stop.borrow() {
                        return;
                    }
                    match ran {
                        Ok(status) => {
                            tracing::warn!(%status, member = %config.name, log = %dir.join("etcd.log").display(), "the etcd member exited; restarting it")
                        }
                        Err(e) => {
                            tracing::error!(error = %format!("{e:#}"), "cannot start the etcd member; retrying")
                        }
                    }
                    if started.elapsed() > Duration::from_secs(30) {
                        backoff = Duration::from_millis(500);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            })
        };
        let member = EtcdMember {
            supervisor,
            stopping,
            config,
        };
        member.wait_ready(pki).await?;
        Ok(member)
    }

    /// Polls the member until it serves a read.
    async fn wait_ready(&self, pki: &Pki) -> anyhow::Result<()> {
        let tls = client_tls(pki)?;
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        let url = self.config.client_url();
        loop {
            let last = match EtcdStore::connect_with(std::slice::from_ref(&url), Some(&tls)).await {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "the etcd member at {url} did not answer within {}s: {last}",
                    READY_TIMEOUT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The member's TLS files.
struct Files {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// Runs etcd until it exits.
async fn run_once(
    dir: &Path,
    config: &MemberConfig,
    files: &Files,
    start: &Start,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<std::process::ExitStatus> {
    let log_path = dir.join("etcd.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut cmd = tokio::process::Command::new(ETCD);
    cmd.arg("--name")
        .arg(&config.name)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--listen-client-urls")
        .arg(config.client_url())
        .arg("--advertise-client-urls")
        .arg(config.client_url())
        .arg("--listen-peer-urls")
        .arg(config.peer_url())
        .arg("--initial-advertise-peer-urls")
        .arg(config.peer_url())
        .arg("--initial-cluster-token")
        .arg(CLUSTER_TOKEN)
        .arg("--client-cert-auth")
        .arg("--trusted-ca-file")
        .arg(&files.ca)
        .arg("--cert-file")
        .arg(&files.cert)
        .arg("--key-file")
        .arg(&files.key)
        .arg("--peer-client-cert-auth")
        .arg("--peer-trusted-ca-file")
        .arg(&files.ca)
        .arg("--peer-cert-file")
        .arg(&files.cert)
        .arg("--peer-key-file")
        .arg(&files.key)
        .arg("--logger")
        .arg("zap")
        .arg("--log-outputs")
        .arg("stderr")
        .env_remove("ETCD_DATA_DIR")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    match start {
        Start::New => {
            cmd.arg("--initial-cluster")
                .arg(format!("{}={}", config.name, config.peer_url()))
                .arg("--initial-cluster-state")
                .arg("new");
        }
        Start::Join(cluster) => {
            cmd.arg("--initial-cluster")
                .arg(cluster)
                .arg("--initial-cluster-state")
                .arg("existing");
        }
        Start::Restart => {}
    }
    // SAFETY: prctl only sets this process's parent-death signal; it allocates nothing and
    // is async-signal-safe, as pre_exec requires.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().with_context(|| format!("starting {ETCD}"))?;
    tracing::info!(
        member = %config.name,
        client = %config.client_url(),
        peer = %config.peer_url(),
        pid = child.id().unwrap_or(0),
        "etcd member started"
    );
    tokio::select! {
        status = child.wait() => Ok(status?),
        _ = async { let _ = stop.wait_for(|s| *s).await; } => {
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
                Ok(status) => Ok(status?),
                Err(_) => {
                    let _ = child.kill().await;
                    Ok(child.wait().await?)
                }
            }
        }
    }
}

/// A client of the member of the server whose data directory is `data_dir` (for the
/// commands run beside a server: `tug server remove`, `tug snapshot save`).
pub async fn connect(data_dir: &Path) -> anyhow::Result<EtcdStore> {
    let config = MemberConfig::load(data_dir)?;
    let read = |name: &str| {
        let path = data_dir.join("pki").join(name);
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    let tls = EtcdTls {
        ca: read("ca.crt")?,
        cert: read("etcd-client.crt")?,
        key: read("etcd-client.key")?,
    };
    EtcdStore::connect_with(&[config.client_url()], Some(&tls))
        .await
        .with_context(|| {
            format!(
                "reaching this server's etcd member at {}",
                config.client_url()
            )
        })
}

/// Removes the member called `name` from the cluster of the server whose data directory is
/// `data_dir` (through that server's member).
pub async fn remove(data_dir: &Path, name: &str) -> anyhow::Result<()> {
    let etcd = connect(data_dir).await?;
    let members = etcd.members().await?;
    let Some(member) = members.iter().find(|m| m.name == name) else {
        let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
        bail!(
            "no server {name:?} in the cluster; its servers are {}",
            names.join(", ")
        );
    };
    if members.len() == 1 {
        bail!("{name:?} is the cluster's only server: it cannot be removed");
    }
    etcd.remove_member(member.id).await?;
    println!("removed server {name} (etcd member {:x})", member.id);
    Ok(())
}

/// Moves a member's data out of the way (to `etcd/data.before-<time>`), for a fresh start.
pub fn set_aside(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let data = dir(data_dir).join("data");
    let old = dir(data_dir).join(format!(
        "data.before-{}",
        jiff::Timestamp::now().as_second()
    ));
    std::fs::rename(&data, &old)
        .with_context(|| format!("moving {} to {}", data.display(), old.display()))?;
    Ok(old)
}

/// The etcdctl binary (Debian's `etcd-client` package), which restores snapshots.
pub const ETCDCTL: &str = "/usr/bin/etcdctl";

/// Restores an etcd snapshot into the member of `data_dir` (its server stopped), as a
/// cluster of that one member: the other servers rejoin when they start with --join. The
/// member's previous data is kept aside.
pub async fn restore(data_dir: &Path, file: &Path) -> anyhow::Result<PathBuf> {
    let config = MemberConfig::load(data_dir)?;
    if tokio::net::TcpStream::connect((config.address, config.client_port))
        .await
        .is_ok()
    {
        bail!(
            "the etcd member of {} answers at {}: stop its server (and the cluster's other \
             servers) before restoring",
            data_dir.display(),
            config.client_url()
        );
    }
    if !Path::new(ETCDCTL).exists() {
        bail!(
            "restoring an etcd snapshot needs {ETCDCTL}: install it with `apt-get install etcd-client`"
        );
    }
    let data = dir(data_dir).join("data");
    let kept = if data.exists() {
        Some(set_aside(data_dir)?)
    } else {
        None
    };
    let out = tokio::process::Command::new(ETCDCTL)
        .env("ETCDCTL_API", "3")
        .arg("snapshot")
        .arg("restore")
        .arg(file)
        .arg("--data-dir")
        .arg(&data)
        .arg("--name")
        .arg(&config.name)
        .arg("--initial-cluster")
        .arg(format!("{}={}", config.name, config.peer_url()))
        .arg("--initial-advertise-peer-urls")
        .arg(config.peer_url())
        .arg("--initial-cluster-token")
        .arg(CLUSTER_TOKEN)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {ETCDCTL}"))?;
    if !out.status.success() {
        // Put the member back as it was.
        let _ = std::fs::remove_dir_all(&data);
        if let Some(kept) = &kept {
            let _ = std::fs::rename(kept, &data);
        }
        bail!(
            "etcdctl could not restore {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(kept.unwrap_or(data))
}
