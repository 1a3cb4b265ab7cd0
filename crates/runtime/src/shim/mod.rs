//! The processes the runtime starts with the `tug` binary itself (so that nothing else needs
//! installing): the sandbox, which holds a pod's namespaces as a pause container does, and the
//! shim, which starts one container, copies its output into the log and records how it ended.
//! Both run single-threaded and detached from the agent, so they outlive its restarts.
//!
//! Both tell the agent how the start went on their stdout: `ok <pid>` or `error <message>`.
//!
//! `sandbox` is the pause process, `container` the shim and the forked child that becomes
//! the container, `stdio` its streams, `mounts` its root filesystem, `exec` a command run in a
//! running container. Each `unsafe` block says why it is sound in a `// SAFETY:` comment.

mod container;
mod exec;
mod mounts;
mod sandbox;
mod stdio;

pub use container::container_main;
pub use exec::exec_main;
use mounts::{mount_one, mount_overlay, mount_system};
pub use sandbox::sandbox_main;
use stdio::{ChildStdio, Stdio, pump_output};

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use nix::unistd::{ForkResult, Gid, Pid, Uid, fork};

use crate::cgroup::Cgroups;
use crate::logs::{LineSplitter, LogWriter};
use crate::spec::{ContainerSpec, SandboxSpec};
use crate::state::{self, Exit};

/// Tells the agent how the start went, then lets go of stdout.
pub(super) fn report(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    if let Ok(null) = std::fs::File::options().write(true).open("/dev/null") {
        // SAFETY: dup2 onto fd 1 with a valid open fd.
        unsafe { libc::dup2(null.as_raw_fd(), 1) };
    }
}

/// Ignores the signals a terminal or the agent's process group could send.
pub(super) fn detach_signals() {
    for s in [libc::SIGHUP, libc::SIGINT, libc::SIGTERM, libc::SIGPIPE] {
        // SAFETY: setting a signal's disposition to ignore is always sound.
        unsafe { libc::signal(s, libc::SIG_IGN) };
    }
}

/// Leaves the agent: forks, the parent exits at once (the agent reaps it), and the child
/// carries on in a session of its own, to be adopted by init.
pub(super) fn daemonize() {
    // SAFETY: called first thing in a single-threaded process.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => {
            // SAFETY: leaving the parent without running destructors the child still needs.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Child) => {
            let _ = nix::unistd::setsid();
        }
        Err(e) => {
            report(&format!("error fork: {e}"));
            // SAFETY: as above.
            unsafe { libc::_exit(1) }
        }
    }
}

/// The executable for argv[0], looked up in the container's PATH as runc does.
pub(super) fn resolve(spec: &ContainerSpec) -> anyhow::Result<PathBuf> {
    let Some(arg0) = spec.args.first() else {
        bail!("no command given and the image has none");
    };
    if arg0.contains('/') {
        if !Path::new(arg0).exists() {
            bail!("exec: \"{arg0}\": stat {arg0}: no such file or directory");
        }
        return Ok(PathBuf::from(arg0));
    }
    let path_var = spec
        .env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path_var.split(':') {
        let candidate = Path::new(dir).join(arg0);
        if let Ok(meta) = std::fs::metadata(&candidate) {
            use std::os::unix::fs::PermissionsExt;
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    bail!("exec: \"{arg0}\": executable file not found in $PATH")
}

pub(super) fn drop_privileges(spec: &ContainerSpec) -> anyhow::Result<()> {
    use caps::{CapSet, Capability, CapsHashSet};
    let keep: CapsHashSet = if spec.privileged {
        caps::all()
    } else {
        spec.capabilities
            .iter()
            .filter_map(|c| c.parse::<Capability>().ok())
            .collect()
    };
    for cap in caps::all() {
        if !keep.contains(&cap) {
            let _ = caps::drop(None, CapSet::Bounding, cap);
        }
    }
    let mut groups: Vec<Gid> = spec
        .supplementary_groups
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    groups.dedup();
    nix::unistd::setgroups(&groups).context("setgroups")?;
    nix::unistd::setgid(Gid::from_raw(spec.gid)).context("setgid")?;
    nix::unistd::setuid(Uid::from_raw(spec.uid)).context("setuid")?;
    if spec.uid == 0 {
        caps::set(None, CapSet::Inheritable, &keep).context("setting capabilities")?;
        caps::set(None, CapSet::Effective, &keep).context("setting capabilities")?;
        caps::set(None, CapSet::Permitted, &keep).context("setting capabilities")?;
    }
    Ok(())
}

/// Sends `sig` to a process, ignoring a process already gone.
pub fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
}
