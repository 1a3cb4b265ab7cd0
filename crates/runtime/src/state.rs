//! Where the runtime keeps what it runs, so that a restarted agent finds it again:
//!
//! ```text
//! ROOT/sandboxes/<pod uid>/sandbox.json, pid
//! ROOT/containers/<id>/config.json, pid, started_at, exit.json, upper/, work/, rootfs/
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::spec::ContainerSpec;

/// How a container ended.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Exit {
    pub exit_code: i32,
    pub signal: Option<i32>,
    /// `Completed`, `Error`, `OOMKilled` or `StartError`.
    pub reason: String,
    pub message: String,
    pub started_at: String,
    pub finished_at: String,
}

/// Now, as RFC 3339 with nanoseconds.
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        .to_string()
}

/// The sandbox directory of a container's pod, from the container's directory.
pub fn sandbox_dir_of(container_dir: &Path, sandbox: &str) -> PathBuf {
    container_dir
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("/"))
        .join("sandboxes")
        .join(sandbox)
}

/// The cgroup of a container, relative to each hierarchy's root.
pub fn cgroup_path(spec: &ContainerSpec) -> String {
    format!("tugboat/pod{}/{}", spec.sandbox, spec.id)
}

/// Whether a process is alive and is the one recorded (its start time matches).
pub fn alive(pid: i32) -> bool {
    pid > 0
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
}

/// The live process recorded in `dir/pid`.
pub fn read_pid(dir: &Path) -> anyhow::Result<i32> {
    let text = std::fs::read_to_string(dir.join("pid"))
        .with_context(|| format!("reading {}", dir.join("pid").display()))?;
    let pid: i32 = text.trim().parse().context("a corrupt pid file")?;
    if !alive(pid) {
        anyhow::bail!("process {pid} is gone");
    }
    Ok(pid)
}

/// The pid in a pid file, alive or not.
pub fn read_pid_file(path: &Path) -> anyhow::Result<i32> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.trim().parse().context("a corrupt pid file")
}

/// Records a started container.
pub fn write_started(dir: &Path, pid: i32, started_at: &str) -> anyhow::Result<()> {
    std::fs::write(dir.join("started_at"), started_at)?;
    std::fs::write(dir.join("pid"), pid.to_string())?;
    Ok(())
}

/// Records how a container ended.
pub fn write_exit(dir: &Path, exit: &Exit) -> anyhow::Result<()> {
    let tmp = dir.join("exit.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(exit)?)?;
    std::fs::rename(&tmp, dir.join("exit.json"))?;
    Ok(())
}

/// How a container ended, if it did.
pub fn read_exit(dir: &Path) -> Option<Exit> {
    serde_json::from_slice(&std::fs::read(dir.join("exit.json")).ok()?).ok()
}
