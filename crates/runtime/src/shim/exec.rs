//! `tug __exec`: a command run inside a running container.

use super::*;

/// `tug __exec DIR ARGS...`: runs a command in a running container (its namespaces, cgroup,
/// user, capabilities and environment), with this process's stdio, and exits with its status.
pub fn exec_main(dir: &Path, args: &[String]) -> i32 {
    match exec_in(dir, args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e:#}");
            126
        }
    }
}

fn exec_in(dir: &Path, args: &[String]) -> anyhow::Result<i32> {
    let spec: ContainerSpec = serde_json::from_slice(&std::fs::read(dir.join("config.json"))?)?;
    let pid = state::read_pid(dir).context("the container is not running")?;
    let cgroups = Cgroups::detect()?;
    cgroups
        .join_self(&state::cgroup_path(&spec))
        .context("joining the container's cgroup")?;
    // Open every namespace first: after joining the mount namespace /proc is the container's.
    let kinds = [
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ];
    let files = kinds
        .iter()
        .map(|(k, f)| {
            std::fs::File::open(format!("/proc/{pid}/ns/{k}"))
                .map(|file| (file, *f))
                .with_context(|| format!("opening the container's {k} namespace"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    for (file, flag) in &files {
        setns(file.as_fd(), *flag).context("joining the container's namespaces")?;
    }
    // SAFETY: single-threaded helper process.
    match unsafe { fork() }.context("fork")? {
        ForkResult::Child => {
            let err = (|| -> anyhow::Result<()> {
                let cwd = if spec.cwd.is_empty() { "/" } else { &spec.cwd };
                let _ = nix::unistd::chdir(cwd);
                // Given a terminal (`exec -t`), make it the command's controlling terminal in
                // a session of its own, for job control and window size signals.
                if nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
                    let _ = nix::unistd::setsid();
                    // SAFETY: TIOCSCTTY on our own stdin, with no pointer argument.
                    unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
                }
                for sig in [libc::SIGHUP, libc::SIGINT, libc::SIGTERM, libc::SIGPIPE] {
                    // SAFETY: restoring a default disposition.
                    unsafe { libc::signal(sig, libc::SIG_DFL) };
                }
                if spec.seccomp_default && !spec.privileged {
                    crate::seccomp::apply_runtime_default()?;
                }
                drop_privileges(&spec)?;
                if spec.no_new_privs {
                    nix::sys::prctl::set_no_new_privs()?;
                }
                let run = ContainerSpec {
                    args: args.to_vec(),
                    ..spec.clone()
                };
                let program = resolve(&run)?;
                let argv: Vec<CString> = args
                    .iter()
                    .map(|a| CString::new(a.as_bytes()))
                    .collect::<Result<_, _>>()?;
                let env: Vec<CString> = spec
                    .env
                    .iter()
                    .map(|a| CString::new(a.as_bytes()))
                    .collect::<Result<_, _>>()?;
                let path = CString::new(program.as_os_str().as_bytes())?;
                let e = nix::unistd::execve(&path, &argv, &env).unwrap_err();
                bail!("exec {:?}: {e}", args.first().cloned().unwrap_or_default())
            })()
            .err();
            if let Some(e) = err {
                eprintln!("{e:#}");
            }
            // SAFETY: leaving the forked child.
            unsafe { libc::_exit(126) };
        }
        ForkResult::Parent { child } => Ok(match nix::sys::wait::waitpid(child, None)? {
            nix::sys::wait::WaitStatus::Exited(_, c) => c,
            nix::sys::wait::WaitStatus::Signaled(_, s, _) => 128 + s as i32,
            _ => 255,
        }),
    }
}
