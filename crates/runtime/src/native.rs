//! The native runtime: runs sandboxes and containers with the shim (the `tug` binary itself)
//! and finds them again after a restart from what they left on disk.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::Signal;

pub use crate::api::{Container, ContainerState, StartError};
use crate::cgroup::{Cgroups, Usage};
use crate::image::ImageStore;
use crate::shim;
use crate::spec::{ContainerSpec, SandboxSpec};
use crate::state::{self, Exit};

/// Opens a TCP connection from inside the network namespace of process `pid`.
pub(crate) fn connect_in_netns(
    pid: i32,
    addr: std::net::SocketAddr,
    timeout: Duration,
) -> anyhow::Result<std::net::TcpStream> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    // A thread of its own joins the namespace; the socket keeps it after the thread ends.
    std::thread::scope(|s| {
        s.spawn(|| -> anyhow::Result<std::net::TcpStream> {
            nix::sched::setns(
                std::os::fd::AsFd::as_fd(&ns),
                nix::sched::CloneFlags::CLONE_NEWNET,
            )
            .context("joining the pod's network namespace")?;
            Ok(std::net::TcpStream::connect_timeout(&addr, timeout)?)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the connecting thread panicked"))?
    })
}

/// The native runtime.
pub struct NativeRuntime {
    root: PathBuf,
    /// The image store.
    pub images: std::sync::Arc<ImageStore>,
    cgroups: Cgroups,
    exe: PathBuf,
    /// Container specs by ID (they never change once written), read from disk once.
    specs: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<ContainerSpec>>>,
}

/// Starts `exe <verb> <dir>` and reads its `ok <pid>` or `error <message>` line.
fn spawn_helper(exe: &Path, verb: &str, dir: &Path) -> Result<i32, String> {
    let log = std::fs::File::create(dir.join(format!("{verb}.log")))
        .map_err(|e| format!("creating the helper's log: {e}"))?;
    let mut child = Command::new(exe)
        .arg(verb)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .env_remove("RUST_LOG")
        .spawn()
        .map_err(|e| format!("starting {}: {e}", exe.display()))?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    // The helper's first process exits at once, leaving its daemon behind.
    let _ = child.wait();
    let line = line.trim();
    if let Some(pid) = line.strip_prefix("ok ") {
        return pid
            .parse()
            .map_err(|_| format!("the helper reported {line:?}"));
    }
    Err(line
        .strip_prefix("error ")
        .unwrap_or(if line.is_empty() {
            "the helper exited without a word"
        } else {
            line
        })
        .to_string())
}

fn read_spec(dir: &Path) -> Option<ContainerSpec> {
    serde_json::from_slice(&std::fs::read(dir.join("config.json")).ok()?).ok()
}

fn random_id() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..32)
        .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
        .collect()
}

impl NativeRuntime {
    /// Opens the runtime's state in `root`; `exe` is the `tug` binary that serves as shim.
    pub fn open(root: &Path, exe: &Path) -> anyhow::Result<NativeRuntime> {
        for d in ["sandboxes", "containers"] {
            std::fs::create_dir_all(root.join(d))
                .with_context(|| format!("creating {}", root.join(d).display()))?;
        }
        let rt = NativeRuntime {
            root: root.to_path_buf(),
            images: std::sync::Arc::new(ImageStore::open(&root.join("images"))?),
            cgroups: Cgroups::detect()?,
            exe: exe.to_path_buf(),
            specs: Default::default(),
        };
        // Index what a previous agent left.
        if let Ok(entries) = std::fs::read_dir(root.join("containers")) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().to_string();
                if let Some(spec) = read_spec(&e.path()) {
                    rt.lock_specs().insert(id, std::sync::Arc::new(spec));
                }
            }
        }
        Ok(rt)
    }

    fn sandbox_dir(&self, uid: &str) -> PathBuf {
        self.root.join("sandboxes").join(uid)
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    /// The image store, shared (pulls hold it across awaits).
    pub fn images_arc(&self) -> std::sync::Arc<ImageStore> {
        self.images.clone()
    }

    /// The cgroup layout in use.
    pub fn cgroups(&self) -> &Cgroups {
        &self.cgroups
    }

    /// Starts a pod's sandbox, or returns the running one's pid.
    pub fn run_sandbox(&self, spec: &SandboxSpec) -> anyhow::Result<i32> {
        let dir = self.sandbox_dir(&spec.uid);
        if let Ok(pid) = state::read_pid(&dir) {
            return Ok(pid);
        }
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("sandbox.json"), serde_json::to_vec(spec)?)?;
        let pid = spawn_helper(&self.exe, "__sandbox", &dir).map_err(anyhow::Error::msg)?;
        std::fs::write(dir.join("pid"), pid.to_string())?;
        Ok(pid)
    }

    /// The pid of a pod's running sandbox.
    pub fn sandbox_pid(&self, uid: &str) -> Option<i32> {
        state::read_pid(&self.sandbox_dir(uid)).ok()
    }

    /// Pod UIDs with a sandbox on disk.
    pub fn sandboxes(&self) -> Vec<String> {
        std::fs::read_dir(self.root.join("sandboxes"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Stops and forgets a pod's sandbox (its containers must be gone).
    pub fn remove_sandbox(&self, uid: &str) {
        let dir = self.sandbox_dir(uid);
        if let Ok(pid) = state::read_pid(&dir) {
            shim::signal(pid, Signal::SIGKILL);
        }
        let _ = std::fs::remove_dir_all(&dir);
        self.cgroups.remove(&format!("tugboat/pod{uid}"));
    }

    /// Creates and starts a container; returns its ID. The image must be in the store.
    pub fn start_container(&self, mut spec: ContainerSpec) -> Result<String, StartError> {
        let image = self
            .images
            .find(&spec.image_id)
            .ok_or_else(|| StartError::ImageMissing(spec.image_id.clone()))?;
        spec.image_id = image.id.clone();
        spec.layers = image
            .layers
            .iter()
            .map(|l| self.images.layer_dir(l))
            .collect::<anyhow::Result<_>>()
            .map_err(|e| StartError::Failed(format!("{e:#}")))?;
        self.images.touch(&image.id);
        spec.id = random_id();
        let dir = self.container_dir(&spec.id);
        let fail = |e: anyhow::Error| StartError::Failed(format!("{e:#}"));
        std::fs::create_dir_all(&dir)
            .context("creating the container's directory")
            .map_err(fail)?;
        std::fs::write(
            dir.join("config.json"),
            serde_json::to_vec(&spec).map_err(|e| fail(e.into()))?,
        )
        .map_err(|e| fail(e.into()))?;
        self.lock_specs()
            .insert(spec.id.clone(), std::sync::Arc::new(spec.clone()));
        self.cgroups
            .create(&state::cgroup_path(&spec), &spec.limits)
            .map_err(fail)?;
        match spawn_helper(&self.exe, "__shim", &dir) {
            Ok(_) => Ok(spec.id),
            Err(msg) => {
                // The shim recorded the failure as the container's exit when it got that far.
                if state::read_exit(&dir).is_none() {
                    let _ = state::write_exit(
                        &dir,
                        &Exit {
                            exit_code: 128,
                            signal: None,
                            reason: "StartError".into(),
                            message: msg.clone(),
                            started_at: String::new(),
                            finished_at: state::now(),
                        },
                    );
                }
                self.cgroups.remove(&state::cgroup_path(&spec));
                Err(StartError::Failed(msg))
            }
        }
    }

    fn lock_specs(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, std::sync::Arc<ContainerSpec>>>
    {
        self.specs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A container by ID.
    pub fn container(&self, id: &str) -> Option<Container> {
        let dir = self.container_dir(id);
        let cached = self.lock_specs().get(id).cloned();
        let spec = match cached {
            Some(s) => (*s).clone(),
            None => {
                let s = read_spec(&dir)?;
                self.lock_specs()
                    .insert(id.to_string(), std::sync::Arc::new(s.clone()));
                s
            }
        };
        let state = if let Some(exit) = state::read_exit(&dir) {
            ContainerState::Exited(exit)
        } else if let Ok(pid) = state::read_pid(&dir) {
            ContainerState::Running {
                pid,
                started_at: std::fs::read_to_string(dir.join("started_at")).unwrap_or_default(),
            }
        } else if dir.join("pid").exists()
            && let Ok(shim) = state::read_pid_file(&dir.join("shim.pid"))
            && state::alive(shim)
        {
            // The process ended a moment ago; its shim is recording how.
            ContainerState::Running {
                pid: std::fs::read_to_string(dir.join("pid"))
                    .ok()
                    .and_then(|p| p.trim().parse().ok())
                    .unwrap_or(0),
                started_at: std::fs::read_to_string(dir.join("started_at")).unwrap_or_default(),
            }
        } else if let Some(exit) = state::read_exit(&dir) {
            // The shim recorded the end and left between the first look and now.
            ContainerState::Exited(exit)
        } else if dir.join("pid").exists() {
            // The shim died without recording the end (killed with the machine, say).
            ContainerState::Exited(Exit {
                exit_code: 255,
                signal: None,
                reason: "Error".into(),
                message: "the container's supervisor went away".into(),
                started_at: std::fs::read_to_string(dir.join("started_at")).unwrap_or_default(),
                finished_at: state::now(),
            })
        } else {
            ContainerState::Unknown
        };
        Some(Container { spec, state })
    }

    /// Every container.
    pub fn list(&self) -> Vec<Container> {
        let ids: Vec<String> = self.lock_specs().keys().cloned().collect();
        ids.iter().filter_map(|id| self.container(id)).collect()
    }

    /// The containers of one pod sandbox.
    pub fn list_in(&self, sandbox: &str) -> Vec<Container> {
        let ids: Vec<String> = self
            .lock_specs()
            .iter()
            .filter(|(_, s)| s.sandbox == sandbox)
            .map(|(id, _)| id.clone())
            .collect();
        ids.iter().filter_map(|id| self.container(id)).collect()
    }

    /// Sends `signal` to a container's process.
    pub fn kill(&self, id: &str, signal: Signal) {
        if let Some(Container {
            state: ContainerState::Running { pid, .. },
            ..
        }) = self.container(id)
        {
            shim::signal(pid, signal);
        }
    }

    /// Stops a container: SIGTERM, then SIGKILL once `grace` has passed. Blocks until it ended.
    pub fn stop_container(&self, id: &str, grace: Duration) {
        let deadline = Instant::now() + grace;
        let mut term_sent = false;
        let mut kill_sent = false;
        loop {
            match self.container(id).map(|c| c.state) {
                Some(ContainerState::Running { pid, .. }) => {
                    if !term_sent {
                        shim::signal(pid, Signal::SIGTERM);
                        term_sent = true;
                    } else if Instant::now() >= deadline && !kill_sent {
                        shim::signal(pid, Signal::SIGKILL);
                        kill_sent = true;
                    }
                }
                _ => return,
            }
            if kill_sent && Instant::now() > deadline + Duration::from_secs(10) {
                tracing::warn!(container = %id, "container survives SIGKILL");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Removes a stopped container and its files.
    pub fn remove_container(&self, id: &str) -> anyhow::Result<()> {
        if let Some(c) = self.container(id) {
            if let ContainerState::Running { .. } = c.state {
                bail!("container {id} is running");
            }
            self.cgroups.remove(&state::cgroup_path(&c.spec));
        }
        let dir = self.container_dir(id);
        self.lock_specs().remove(id);
        // The overlay lives in the container's own mount namespace, gone with its processes.
        std::fs::remove_dir_all(&dir).or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(e)
            }
        })?;
        Ok(())
    }

    /// The command that runs `args` in container `id` (the `tug __exec` helper), in a process
    /// group of its own, for the caller to give stdio to and spawn.
    fn exec_command(&self, id: &str, args: &[String]) -> Command {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(&self.exe);
        cmd.arg("__exec")
            .arg(self.container_dir(id))
            .args(args)
            .env_remove("RUST_LOG")
            .process_group(0);
        cmd
    }

    /// Runs `args` in a running container and returns its exit code and output (stdout, then
    /// stderr), killing it after `timeout`.
    pub fn exec(
        &self,
        id: &str,
        args: &[String],
        timeout: Duration,
    ) -> anyhow::Result<(i32, Vec<u8>)> {
        let mut child = self
            .exec_command(id, args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the exec helper")?;
        let pgid = child.id() as i32;
        let deadline = Instant::now() + timeout;
        loop {
            if child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() >= deadline {
                let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), Signal::SIGKILL);
                let _ = child.wait();
                bail!("command timed out after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let out = child.wait_with_output()?;
        let mut output = out.stdout;
        output.extend_from_slice(&out.stderr);
        Ok((out.status.code().unwrap_or(255), output))
    }

    /// Opens a TCP connection from inside a pod's network namespace (probes reach pods this
    /// way whether or not the pod network routes to them).
    pub fn connect_in_pod(
        &self,
        uid: &str,
        addr: std::net::SocketAddr,
        timeout: Duration,
    ) -> anyhow::Result<std::net::TcpStream> {
        let pid = self
            .sandbox_pid(uid)
            .context("the pod's sandbox is not running")?;
        connect_in_netns(pid, addr, timeout)
    }

    /// CPU and memory a container uses.
    pub fn usage(&self, c: &Container) -> Usage {
        self.cgroups.usage(&state::cgroup_path(&c.spec))
    }
}

impl crate::api::Runtime for NativeRuntime {
    fn find_image(&self, name: &str) -> Option<crate::image::Image> {
        self.images.find(name)
    }

    fn pull_image<'a>(
        &'a self,
        name: &'a str,
        credentials: Option<crate::image::pull::Credentials>,
        insecure: &'a [String],
    ) -> crate::api::BoxFuture<'a, Result<crate::image::Image, crate::image::pull::PullError>> {
        Box::pin(crate::image::pull::pull(
            self.images.clone(),
            name,
            credentials,
            insecure,
            &|step| tracing::info!("{step}"),
        ))
    }

    fn list_images(&self) -> Vec<crate::image::Image> {
        self.images.list()
    }

    fn remove_image(&self, id: &str) -> anyhow::Result<()> {
        let in_use: std::collections::HashSet<String> =
            self.list().into_iter().map(|c| c.spec.image_id).collect();
        self.images.remove(id, &in_use).map(|_| ())
    }

    fn image_fs(&self) -> (u64, u64) {
        nix::sys::statvfs::statvfs(&self.root)
            .map(|s| {
                let total = s.blocks() * s.fragment_size();
                let free = s.blocks_available() * s.fragment_size();
                (total.saturating_sub(free), total)
            })
            .unwrap_or((0, 0))
    }

    fn image_user(&self, image: &crate::image::Image, user: &str) -> Option<(u32, u32)> {
        // The top-most layer holding /etc/passwd decides.
        for diff_id in image.layers.iter().rev() {
            let dir = self.images.layer_dir(diff_id).ok()?;
            if let Ok(text) = std::fs::read_to_string(dir.join("etc/passwd")) {
                return text.lines().find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() > 3 && f[0] == user)
                        .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
                });
            }
        }
        None
    }

    fn run_sandbox(&self, spec: &SandboxSpec) -> anyhow::Result<i32> {
        NativeRuntime::run_sandbox(self, spec)
    }

    fn remove_sandbox(&self, uid: &str) {
        NativeRuntime::remove_sandbox(self, uid)
    }

    fn sandboxes(&self) -> Vec<String> {
        NativeRuntime::sandboxes(self)
    }

    fn sandbox_spec(&self, uid: &str) -> Option<SandboxSpec> {
        serde_json::from_slice(&std::fs::read(self.sandbox_dir(uid).join("sandbox.json")).ok()?)
            .ok()
    }

    fn usage(&self, container: &Container) -> Usage {
        NativeRuntime::usage(self, container)
    }

    fn start_container(&self, spec: ContainerSpec) -> Result<String, StartError> {
        NativeRuntime::start_container(self, spec)
    }

    fn list(&self) -> Vec<Container> {
        NativeRuntime::list(self)
    }

    fn list_in(&self, sandbox: &str) -> Vec<Container> {
        NativeRuntime::list_in(self, sandbox)
    }

    fn stop_container(&self, id: &str, grace: Duration) {
        NativeRuntime::stop_container(self, id, grace)
    }

    fn remove_container(&self, id: &str) -> anyhow::Result<()> {
        NativeRuntime::remove_container(self, id)
    }

    fn exec(&self, id: &str, args: &[String], timeout: Duration) -> anyhow::Result<(i32, Vec<u8>)> {
        NativeRuntime::exec(self, id, args, timeout)
    }

    fn exec_stream(
        &self,
        id: &str,
        args: &[String],
        stdio: crate::exec::ExecStdio,
    ) -> anyhow::Result<crate::exec::ExecProcess> {
        crate::exec::ExecProcess::spawn(self.exec_command(id, args), stdio)
            .context("starting the exec helper")
    }

    fn attach(&self, id: &str) -> anyhow::Result<std::os::unix::net::UnixStream> {
        let path = self.container_dir(id).join(crate::attach::SOCKET);
        std::os::unix::net::UnixStream::connect(&path).with_context(|| {
            format!(
                "connecting to the container's attach socket {}",
                path.display()
            )
        })
    }

    fn connect_in_pod(
        &self,
        uid: &str,
        addr: std::net::SocketAddr,
        timeout: Duration,
    ) -> anyhow::Result<std::net::TcpStream> {
        NativeRuntime::connect_in_pod(self, uid, addr, timeout)
    }
}
