//! The shim (`tug __shim`): joins the pod's sandbox, forks the container's process and
//! supervises it, recording how it ended.

use super::*;

/// `tug __shim DIR`: starts the container described in DIR/config.json and supervises it.
pub fn container_main(dir: &Path) -> i32 {
    daemonize();
    detach_signals();
    let spec: ContainerSpec = match std::fs::read(dir.join("config.json"))
        .map_err(anyhow::Error::from)
        .and_then(|b| serde_json::from_slice(&b).map_err(anyhow::Error::from))
    {
        Ok(s) => s,
        Err(e) => {
            report(&format!(
                "error reading the container's configuration: {e:#}"
            ));
            return 1;
        }
    };
    match supervise(dir, &spec) {
        Ok(()) => 0,
        Err(e) => {
            report(&format!("error {e:#}"));
            1
        }
    }
}

fn supervise(dir: &Path, spec: &ContainerSpec) -> anyhow::Result<()> {
    // Who supervises: while this process lives, a container whose process has ended is still
    // being recorded, not lost.
    std::fs::write(dir.join("shim.pid"), std::process::id().to_string())?;
    let cgroups = Cgroups::detect()?;
    let sandbox_pid = state::read_pid(&state::sandbox_dir_of(dir, &spec.sandbox))
        .context("the pod's sandbox is not running")?;
    let stdio = Stdio::new(spec)?;
    let (sync_r, sync_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // Joining the pod's namespaces happens here, before the fork, so that the child is born
    // in the right pid namespace.
    join_sandbox(sandbox_pid, spec)?;
    // SAFETY: this process is single-threaded (the shim runs before any runtime starts).
    match unsafe { fork() }.context("fork")? {
        ForkResult::Child => {
            drop(sync_r);
            let err = child(spec, &cgroups, dir, stdio.for_child())
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default();
            let mut f = std::fs::File::from(sync_w);
            let _ = f.write_all(err.as_bytes());
            // SAFETY: _exit in the forked child, skipping the parent's atexit handlers.
            unsafe { libc::_exit(127) };
        }
        ForkResult::Parent { child } => {
            drop(sync_w);
            let (outputs, input) = stdio.for_shim();
            let started_at = state::now();
            let mut msg = String::new();
            std::io::Read::read_to_string(&mut std::fs::File::from(sync_r), &mut msg)?;
            if !msg.is_empty() {
                let _ = nix::sys::wait::waitpid(child, None);
                let exit = Exit {
                    exit_code: 128,
                    signal: None,
                    reason: "StartError".into(),
                    message: msg.clone(),
                    started_at: started_at.clone(),
                    finished_at: state::now(),
                };
                state::write_exit(dir, &exit)?;
                cgroups.remove(&state::cgroup_path(spec));
                bail!("{msg}");
            }
            let mut hub = crate::attach::Hub::listen(dir, input, spec.stdin_once);
            state::write_started(dir, child.as_raw(), &started_at)?;
            report(&format!("ok {child}"));
            pump_output(spec, dir, child, outputs, &mut hub);
            drop(hub);
            let status = nix::sys::wait::waitpid(child, None)?;
            let (exit_code, signal) = match status {
                nix::sys::wait::WaitStatus::Exited(_, c) => (c, None),
                nix::sys::wait::WaitStatus::Signaled(_, s, _) => (128 + s as i32, Some(s as i32)),
                _ => (255, None),
            };
            let oom = cgroups.oom_kills(&state::cgroup_path(spec)) > 0;
            let reason = if oom {
                "OOMKilled"
            } else if exit_code == 0 {
                "Completed"
            } else {
                "Error"
            };
            state::write_exit(
                dir,
                &Exit {
                    exit_code,
                    signal,
                    reason: reason.into(),
                    message: String::new(),
                    started_at,
                    finished_at: state::now(),
                },
            )?;
            // Wait for stray processes (those in the pod's pid namespace die with pid 1).
            for _ in 0..50 {
                if cgroups.pids(&state::cgroup_path(spec)).is_empty() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            cgroups.remove(&state::cgroup_path(spec));
            Ok(())
        }
    }
}

fn join_sandbox(pid: i32, spec: &ContainerSpec) -> anyhow::Result<()> {
    let ns = |kind: &str| PathBuf::from(format!("/proc/{pid}/ns/{kind}"));
    for (kind, flag) in [
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
    ] {
        let f = std::fs::File::open(ns(kind)).with_context(|| format!("opening {kind} ns"))?;
        setns(f.as_fd(), flag).with_context(|| format!("joining the pod's {kind} namespace"))?;
    }
    if let Some(target) = spec.target_pid {
        let f = std::fs::File::open(format!("/proc/{target}/ns/pid"))
            .context("opening the target container's pid namespace")?;
        setns(f.as_fd(), CloneFlags::CLONE_NEWPID)
            .context("joining the target container's pid namespace")?;
    } else if spec.share_process_namespace {
        let f = std::fs::File::open(ns("pid"))?;
        setns(f.as_fd(), CloneFlags::CLONE_NEWPID).context("joining the pod's pid namespace")?;
    } else {
        unshare(CloneFlags::CLONE_NEWPID).context("creating a pid namespace")?;
    }
    Ok(())
}

/// In the forked child: builds the container's world and execs its process. Returns only on
/// failure.
fn child(
    spec: &ContainerSpec,
    cgroups: &Cgroups,
    dir: &Path,
    stdio: ChildStdio<'_>,
) -> anyhow::Result<()> {
    cgroups
        .join_self(&state::cgroup_path(spec))
        .context("joining the container's cgroup")?;
    unshare(CloneFlags::CLONE_NEWNS).context("creating a mount namespace")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("making mounts private")?;
    let rootfs = dir.join("rootfs");
    mount_overlay(spec, dir, &rootfs)?;
    mount_system(&rootfs)?;
    for m in &spec.mounts {
        mount_one(&rootfs, m)?;
    }
    // Enter the new root.
    nix::unistd::chdir(&rootfs)?;
    nix::unistd::pivot_root(".", ".").context("pivot_root")?;
    umount2(".", MntFlags::MNT_DETACH).context("detaching the old root")?;
    nix::unistd::chdir("/")?;
    if spec.read_only_rootfs {
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .context("making the root filesystem read-only")?;
    }
    let program = resolve(spec)?;
    let cwd = if spec.cwd.is_empty() { "/" } else { &spec.cwd };
    if !Path::new(cwd).exists() {
        std::fs::create_dir_all(cwd)
            .with_context(|| format!("creating the working directory {cwd}"))?;
    }
    nix::unistd::chdir(cwd).with_context(|| format!("chdir to {cwd}"))?;
    // stdio: input from the shim (or nothing), output to the shim.
    let null = std::fs::File::open("/dev/null").context("opening /dev/null")?;
    let stdin = stdio.stdin.map_or(null.as_raw_fd(), |fd| fd.as_raw_fd());
    // SAFETY: dup2 onto the standard fds with valid open fds.
    unsafe {
        libc::dup2(stdin, 0);
        libc::dup2(stdio.stdout.as_raw_fd(), 1);
        libc::dup2(stdio.stderr.as_raw_fd(), 2);
    }
    if stdio.terminal {
        // A session of its own, with the terminal as its controlling one (job control,
        // ^C).
        nix::unistd::setsid().context("setsid")?;
        // SAFETY: TIOCSCTTY on fd 0, the terminal just put there.
        if unsafe { libc::ioctl(0, libc::TIOCSCTTY as _, 0) } < 0 {
            bail!(
                "making the terminal the controlling one: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    // The shim ignores terminal signals; the container starts with every default back (a
    // signal ignored at exec could not be trapped by a shell).
    for sig in [libc::SIGHUP, libc::SIGINT, libc::SIGTERM, libc::SIGPIPE] {
        // SAFETY: restoring a signal's default disposition is always sound.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    // Installed while the process may still (CAP_SYS_ADMIN), after the last mount.
    if spec.seccomp_default && !spec.privileged {
        crate::seccomp::apply_runtime_default()?;
    }
    drop_privileges(spec)?;
    if spec.no_new_privs {
        nix::sys::prctl::set_no_new_privs().context("setting no_new_privs")?;
    }
    let args: Vec<CString> = spec
        .args
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .context("an argument holds a NUL byte")?;
    let env: Vec<CString> = spec
        .env
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .context("an environment variable holds a NUL byte")?;
    let path = CString::new(program.as_os_str().as_bytes())?;
    let e = nix::unistd::execve(&path, &args, &env).unwrap_err();
    bail!(
        "exec {:?}: {e}",
        spec.args.first().cloned().unwrap_or_default()
    )
}
