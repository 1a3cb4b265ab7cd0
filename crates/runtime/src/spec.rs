//! What the runtime is asked to run: pod sandboxes and containers, fully resolved by the
//! kubelet (argv, environment, user, mounts, limits), written to disk for the shim.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cgroup::Limits;

/// A pod sandbox: the namespaces a pod's containers share.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxSpec {
    /// The pod's UID: the sandbox's ID.
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// The pod's hostname (its own UTS namespace).
    pub hostname: String,
    /// Share the node's network namespace (and UTS namespace).
    pub host_network: bool,
    /// Share the node's IPC namespace.
    pub host_ipc: bool,
    /// Namespaced sysctls to set (`net.ipv4.ip_local_port_range`, ...).
    pub sysctls: Vec<(String, String)>,
}

/// A mount in a container.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    /// A host path to bind, or empty for a tmpfs.
    pub source: PathBuf,
    /// The path in the container.
    pub destination: String,
    pub read_only: bool,
    /// For a tmpfs: its size limit in bytes.
    #[serde(default)]
    pub tmpfs_size: Option<u64>,
}

/// A container, as the shim runs it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSpec {
    /// Filled in by the runtime.
    #[serde(default)]
    pub id: String,
    /// The pod sandbox's ID (the pod UID).
    pub sandbox: String,
    /// The container's name in the pod.
    pub name: String,
    /// How many times this container ran before in this pod.
    pub attempt: u32,
    /// The image's ID (its configuration digest).
    pub image_id: String,
    /// Unpacked layer directories, bottom first (filled in by the runtime from the image).
    #[serde(default)]
    pub layers: Vec<PathBuf>,
    /// The argv to execute.
    pub args: Vec<String>,
    /// `KEY=VALUE` pairs.
    pub env: Vec<String>,
    /// The working directory (`/` when empty).
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub supplementary_groups: Vec<u32>,
    pub mounts: Vec<Mount>,
    pub read_only_rootfs: bool,
    pub privileged: bool,
    /// Capabilities the process keeps (`CAP_CHOWN`, ...).
    pub capabilities: Vec<String>,
    /// Sets no_new_privs (allowPrivilegeEscalation: false).
    pub no_new_privs: bool,
    /// Applies the default seccomp profile (RuntimeDefault).
    pub seccomp_default: bool,
    pub limits: Limits,
    /// Where the shim writes the container's output (CRI log format).
    pub log_path: PathBuf,
    /// Bytes a log file may reach before it is rotated.
    pub log_max_bytes: u64,
    /// Rotated files kept.
    pub log_max_files: u32,
    /// Share the pod's process namespace instead of having its own.
    pub share_process_namespace: bool,
    /// Join the process namespace of this process (a target container's, for an ephemeral
    /// container) instead.
    #[serde(default)]
    pub target_pid: Option<i32>,
    /// That target container's ID (CRI runtimes join it by ID).
    #[serde(default)]
    pub target_id: Option<String>,
    /// Keep the container's stdin open for attaching clients (`stdin`).
    #[serde(default)]
    pub stdin: bool,
    /// Close stdin once the first attached client goes (`stdinOnce`).
    #[serde(default)]
    pub stdin_once: bool,
    /// Run the process on a terminal (`tty`).
    #[serde(default)]
    pub tty: bool,
}
