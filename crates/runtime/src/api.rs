//! What a node agent needs from a container runtime, shaped like CRI's RuntimeService and
//! ImageService: the kubelet drives this trait and does not know which runtime is behind it.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::image::Image;
use crate::image::pull::{Credentials, PullError};
use crate::spec::{ContainerSpec, SandboxSpec};
use crate::state::Exit;

/// What a container is doing.
#[derive(Clone, Debug, PartialEq)]
pub enum ContainerState {
    /// Its process runs.
    Running { pid: i32, started_at: String },
    /// It ended.
    Exited(Exit),
    /// It was being started, or its shim died without a record.
    Unknown,
}

/// A container the runtime knows.
#[derive(Clone, Debug)]
pub struct Container {
    pub spec: ContainerSpec,
    pub state: ContainerState,
}

/// Why a container did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Its image is not in the store.
    #[error("image {0} is not present")]
    ImageMissing(String),
    /// Setting it up or executing its process failed (the message says which).
    #[error("{0}")]
    Failed(String),
}

/// A future returned by a runtime.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A container runtime. Blocking methods do file and process work: call them off the async
/// threads.
pub trait Runtime: Send + Sync {
    /// `name://version`, as a node reports its container runtime (the name also prefixes
    /// container IDs in pod statuses).
    fn version(&self) -> String {
        concat!("tugboat://", env!("CARGO_PKG_VERSION")).to_string()
    }
    /// The image a reference (or an image ID) names, if present.
    fn find_image(&self, name: &str) -> Option<Image>;
    /// Pulls an image from its registry.
    fn pull_image<'a>(
        &'a self,
        name: &'a str,
        credentials: Option<Credentials>,
        insecure: &'a [String],
    ) -> BoxFuture<'a, Result<Image, PullError>>;
    /// Every image.
    fn list_images(&self) -> Vec<Image>;
    /// Removes an image by ID (refused while a container uses it).
    fn remove_image(&self, id: &str) -> anyhow::Result<()>;
    /// Bytes used and in all on the filesystem holding the images.
    fn image_fs(&self) -> (u64, u64);
    /// The uid and gid of a user name in an image's /etc/passwd.
    fn image_user(&self, image: &Image, user: &str) -> Option<(u32, u32)>;

    /// Starts a pod's sandbox (or finds it running); returns the pid holding its namespaces.
    fn run_sandbox(&self, spec: &SandboxSpec) -> anyhow::Result<i32>;
    /// The pod IP, for runtimes that set up the pod network themselves (CRI runtimes, through
    /// their CNI configuration); `None` when the agent attaches the network.
    fn sandbox_ip(&self, _uid: &str) -> Option<String> {
        None
    }
    /// Stops and forgets a sandbox.
    fn remove_sandbox(&self, uid: &str);
    /// The sandboxes present.
    fn sandboxes(&self) -> Vec<String>;
    /// What a sandbox was started with.
    fn sandbox_spec(&self, uid: &str) -> Option<SandboxSpec>;

    /// Creates and starts a container; returns its ID.
    fn start_container(&self, spec: ContainerSpec) -> Result<String, StartError>;
    /// Every container.
    fn list(&self) -> Vec<Container>;
    /// The containers of one sandbox.
    fn list_in(&self, sandbox: &str) -> Vec<Container>;
    /// SIGTERM, then SIGKILL after `grace`; returns once the container ended.
    fn stop_container(&self, id: &str, grace: Duration);
    /// Removes a stopped container.
    fn remove_container(&self, id: &str) -> anyhow::Result<()>;
    /// CPU and memory a container uses, from its cgroup.
    fn usage(&self, container: &Container) -> crate::cgroup::Usage;
    /// Runs a command in a running container: its exit code and output.
    fn exec(&self, id: &str, args: &[String], timeout: Duration) -> anyhow::Result<(i32, Vec<u8>)>;
    /// Starts `args` in running container `id` with the streams a streaming exec session
    /// asked for (see [`crate::exec`]).
    fn exec_stream(
        &self,
        id: &str,
        args: &[String],
        stdio: crate::exec::ExecStdio,
    ) -> anyhow::Result<crate::exec::ExecProcess>;
    /// Connects to the attach socket of running container `id` (see [`crate::attach`]).
    fn attach(&self, id: &str) -> anyhow::Result<std::os::unix::net::UnixStream>;
    /// Connects to an address from inside a pod's network namespace.
    fn connect_in_pod(
        &self,
        uid: &str,
        addr: SocketAddr,
        timeout: Duration,
    ) -> anyhow::Result<TcpStream>;
}
