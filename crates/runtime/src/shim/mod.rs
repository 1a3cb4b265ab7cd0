//! The processes the runtime starts with the `tug` binary itself (so that nothing else needs
//! installing): the sandbox, which holds a pod's namespaces as a pause container does, and the
//! shim, which starts one container, copies its output into the log and records how it ended.
//! Both run single-threaded and detached from the agent, so they outlive its restarts.
//!
//! Both tell the agent how the start went on their stdout: `ok <pid>` or `error <message>`.

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
fn report(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    if let Ok(null) = std::fs::File::options().write(true).open("/dev/null") {
        // SAFETY: dup2 onto fd 1 with a valid open fd.
        unsafe { libc::dup2(null.as_raw_fd(), 1) };
    }
}

/// Ignores the signals a terminal or the agent's process group could send.
fn detach_signals() {
    for s in [libc::SIGHUP, libc::SIGINT, libc::SIGTERM, libc::SIGPIPE] {
        // SAFETY: setting a signal's disposition to ignore is always sound.
        unsafe { libc::signal(s, libc::SIG_IGN) };
    }
}

/// Leaves the agent: forks, the parent exits at once (the agent reaps it), and the child
/// carries on in a session of its own, to be adopted by init.
fn daemonize() {
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

/// `tug __sandbox DIR`: creates the pod's namespaces and holds them until killed.
pub fn sandbox_main(dir: &Path) -> i32 {
    daemonize();
    match sandbox_setup(dir) {
        Ok(()) => {}
        Err(e) => {
            report(&format!("error {e:#}"));
            return 1;
        }
    }
    // The pod's pid namespace (set up above) takes effect for children: the sandbox carries on
    // as its first process, pid 1, which containers sharing the namespace see and which reaps
    // their orphans, as the pause container does.
    // SAFETY: still single-threaded.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => {
            // SAFETY: leaving without running destructors the child still needs.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Child) => {}
        Err(e) => {
            report(&format!("error fork: {e}"));
            return 1;
        }
    }
    // The node's /proc names this process by its pid outside the pod's namespace.
    let host_pid = std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str().and_then(|p| p.parse::<u32>().ok()))
        .unwrap_or_else(std::process::id);
    report(&format!("ok {host_pid}"));
    for s in [libc::SIGHUP, libc::SIGINT, libc::SIGPIPE] {
        // SAFETY: as above.
        unsafe { libc::signal(s, libc::SIG_IGN) };
    }
    // Hold the namespaces until killed, or until the sandbox's directory is gone (its data dir
    // was removed: nothing will ever stop this sandbox otherwise), or if the agent never
    // recorded this sandbox's pid (it died while starting it, and will not find it). Reap what
    // is orphaned in the pod's pid namespace meanwhile.
    let started = std::time::Instant::now();
    while dir.exists() {
        if started.elapsed() > std::time::Duration::from_secs(10) && !dir.join("pid").exists() {
            return 0;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
        while let Ok(status) =
            nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG))
        {
            if status == nix::sys::wait::WaitStatus::StillAlive {
                break;
            }
        }
    }
    0
}

fn sandbox_setup(dir: &Path) -> anyhow::Result<()> {
    let spec: SandboxSpec = serde_json::from_slice(&std::fs::read(dir.join("sandbox.json"))?)?;
    let mut flags = CloneFlags::empty();
    if !spec.host_network {
        flags |= CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWUTS;
    }
    if !spec.host_ipc {
        flags |= CloneFlags::CLONE_NEWIPC;
    }
    // For the children: see sandbox_main.
    flags |= CloneFlags::CLONE_NEWPID;
    unshare(flags).context("creating the pod's namespaces")?;
    if !spec.host_network {
        nix::unistd::sethostname(&spec.hostname).context("setting the hostname")?;
        loopback_up().context("bringing up lo")?;
    }
    for (key, value) in &spec.sysctls {
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        std::fs::write(&path, value).with_context(|| format!("setting sysctl {key}={value}"))?;
    }
    Ok(())
}

/// `ip link set lo up`, with an ioctl.
fn loopback_up() -> anyhow::Result<()> {
    // SAFETY: a plain socket() call; the fd is wrapped right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: fd is a fresh, owned socket.
    let sock: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
    }
    Ok(())
}

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

/// The container's standard streams: pipes, or a terminal (`tty`), and a pipe for stdin when
/// the spec keeps stdin open.
enum Stdio {
    Pipes {
        stdin: Option<(OwnedFd, OwnedFd)>,
        out: (OwnedFd, OwnedFd),
        err: (OwnedFd, OwnedFd),
    },
    Terminal {
        master: OwnedFd,
        slave: OwnedFd,
    },
}

/// What the child's fds 0, 1 and 2 become (`None` for stdin: /dev/null), and whether they are
/// a terminal to make the controlling one.
struct ChildStdio<'a> {
    stdin: Option<std::os::fd::BorrowedFd<'a>>,
    stdout: std::os::fd::BorrowedFd<'a>,
    stderr: std::os::fd::BorrowedFd<'a>,
    terminal: bool,
}

fn cloexec(fd: &OwnedFd) -> anyhow::Result<()> {
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )?;
    Ok(())
}

impl Stdio {
    fn new(spec: &ContainerSpec) -> anyhow::Result<Stdio> {
        let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC);
        if spec.tty {
            let pty = nix::pty::openpty(None, None).context("opening a terminal")?;
            cloexec(&pty.master)?;
            cloexec(&pty.slave)?;
            return Ok(Stdio::Terminal {
                master: pty.master,
                slave: pty.slave,
            });
        }
        Ok(Stdio::Pipes {
            stdin: if spec.stdin { Some(pipe()?) } else { None },
            out: pipe()?,
            err: pipe()?,
        })
    }

    fn for_child(&self) -> ChildStdio<'_> {
        match self {
            Stdio::Pipes { stdin, out, err } => ChildStdio {
                stdin: stdin.as_ref().map(|(r, _)| r.as_fd()),
                stdout: out.1.as_fd(),
                stderr: err.1.as_fd(),
                terminal: false,
            },
            Stdio::Terminal { slave, .. } => ChildStdio {
                stdin: Some(slave.as_fd()),
                stdout: slave.as_fd(),
                stderr: slave.as_fd(),
                terminal: true,
            },
        }
    }

    /// The shim's ends: the outputs to read (with their stream) and where input goes. The
    /// child's ends close here, so that the outputs end when the container's do.
    fn for_shim(self) -> (Vec<(OwnedFd, &'static str)>, crate::attach::Input) {
        use crate::attach::Input;
        match self {
            Stdio::Pipes { stdin, out, err } => (
                vec![(out.0, "stdout"), (err.0, "stderr")],
                match stdin {
                    Some((_, w)) => Input::Pipe(Some(w)),
                    None => Input::None,
                },
            ),
            Stdio::Terminal { master, slave } => {
                drop(slave);
                match master.try_clone() {
                    Ok(input) => (vec![(master, "stdout")], Input::Terminal(input)),
                    Err(_) => (vec![(master, "stdout")], Input::None),
                }
            }
        }
    }
}

/// Copies the container's output into its log and to attached clients, and clients' input
/// to the container, until the outputs close.
fn pump_output(
    spec: &ContainerSpec,
    dir: &Path,
    child: Pid,
    outputs: Vec<(OwnedFd, &'static str)>,
    hub: &mut crate::attach::Hub,
) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut log = match LogWriter::open(&spec.log_path, spec.log_max_bytes, spec.log_max_files) {
        Ok(l) => Some(l),
        Err(e) => {
            eprintln!("cannot open the log {}: {e}", spec.log_path.display());
            None
        }
    };
    let mut streams: Vec<(Option<OwnedFd>, &str, LineSplitter)> = outputs
        .into_iter()
        .map(|(fd, name)| (Some(fd), name, LineSplitter::default()))
        .collect();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let open: Vec<usize> = (0..streams.len())
            .filter(|i| streams[*i].0.is_some())
            .collect();
        if open.is_empty() {
            return;
        }
        let (ready, hub_ready): (Vec<(usize, bool)>, Vec<bool>) = {
            let hub_fds = hub.fds();
            let mut fds: Vec<PollFd> = open
                .iter()
                .filter_map(|i| streams[*i].0.as_ref())
                .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
                .chain(hub_fds.iter().map(|fd| PollFd::new(*fd, PollFlags::POLLIN)))
                .collect();
            match poll(&mut fds, PollTimeout::from(2000u16)) {
                Err(_) => continue,
                Ok(0) => {
                    // Quiet: if the container's directory is gone (its data dir was removed),
                    // nothing will ever stop it; end it.
                    if !dir.exists() {
                        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                    }
                    continue;
                }
                Ok(_) => {}
            }
            let readable = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
            (
                open.iter()
                    .zip(fds.iter())
                    .map(|(i, fd)| (*i, readable(fd)))
                    .collect(),
                fds[open.len()..].iter().map(readable).collect(),
            )
        };
        hub.serve(&hub_ready);
        for (i, is_ready) in ready {
            if !is_ready {
                continue;
            }
            let (fd, stream, splitter) = &mut streams[i];
            let n = match fd.as_ref().map(|f| nix::unistd::read(f, &mut buf)) {
                Some(Ok(n)) => n,
                Some(Err(nix::errno::Errno::EINTR)) => continue,
                // A terminal whose other side closed reads EIO: the end, as for a pipe.
                _ => 0,
            };
            let mut emit = |partial: bool, line: &[u8]| match log.as_mut() {
                Some(l) => l.record(stream, partial, line),
                None => Ok(()),
            };
            if n == 0 {
                let _ = splitter.finish(&mut emit);
                *fd = None;
            } else {
                let _ = splitter.feed(&buf[..n], &mut emit);
                let kind = if *stream == "stderr" {
                    crate::attach::STDERR
                } else {
                    crate::attach::STDOUT
                };
                hub.broadcast(kind, &buf[..n]);
            }
        }
    }
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

fn mount_overlay(spec: &ContainerSpec, dir: &Path, rootfs: &Path) -> anyhow::Result<()> {
    let upper = dir.join("upper");
    let work = dir.join("work");
    for d in [&upper, &work, &rootfs.to_path_buf()] {
        std::fs::create_dir_all(d)?;
    }
    let empty = dir.join("empty");
    let mut lowers: Vec<PathBuf> = spec.layers.iter().rev().cloned().collect();
    if lowers.is_empty() {
        std::fs::create_dir_all(&empty)?;
        lowers.push(empty);
    }
    // Layer paths are long; relative to their common directory they fit in a page.
    let common = lowers[0]
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let relative = lowers.iter().all(|l| l.parent() == Some(common.as_path()));
    let lower = lowers
        .iter()
        .map(|l| {
            if relative {
                l.file_name()
                    .map(|f| f.to_string_lossy().to_string())
                    .unwrap_or_default()
            } else {
                l.display().to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(":");
    let data = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    if relative {
        nix::unistd::chdir(&common)?;
    }
    mount(
        Some("overlay"),
        rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .context("mounting the overlay root filesystem")?;
    Ok(())
}

/// /proc, /sys, /dev and its device nodes.
fn mount_system(rootfs: &Path) -> anyhow::Result<()> {
    let at = |p: &str| rootfs.join(p.trim_start_matches('/'));
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    std::fs::create_dir_all(at("/proc"))?;
    mount(
        Some("proc"),
        &at("/proc"),
        Some("proc"),
        nosuid,
        None::<&str>,
    )
    .context("mounting /proc")?;
    std::fs::create_dir_all(at("/sys"))?;
    if mount(
        Some("sysfs"),
        &at("/sys"),
        Some("sysfs"),
        nosuid | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .is_err()
    {
        // A container in the node's network namespace may not mount a fresh sysfs.
        mount(
            Some("/sys"),
            &at("/sys"),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .context("binding /sys")?;
        let _ = mount(
            None::<&str>,
            &at("/sys"),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        );
    }
    std::fs::create_dir_all(at("/dev"))?;
    mount(
        Some("tmpfs"),
        &at("/dev"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )
    .context("mounting /dev")?;
    for dev in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = at(&format!("/dev/{dev}"));
        std::fs::write(&target, b"")?;
        mount(
            Some(format!("/dev/{dev}").as_str()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .with_context(|| format!("binding /dev/{dev}"))?;
    }
    std::fs::create_dir_all(at("/dev/pts"))?;
    mount(
        Some("devpts"),
        &at("/dev/pts"),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .context("mounting /dev/pts")?;
    std::fs::create_dir_all(at("/dev/shm"))?;
    mount(
        Some("shm"),
        &at("/dev/shm"),
        Some("tmpfs"),
        nosuid,
        Some("mode=1777,size=65536k"),
    )
    .context("mounting /dev/shm")?;
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        std::os::unix::fs::symlink(target, at(&format!("/dev/{link}")))?;
    }
    Ok(())
}

fn mount_one(rootfs: &Path, m: &crate::spec::Mount) -> anyhow::Result<()> {
    let target = rootfs.join(m.destination.trim_start_matches('/'));
    if m.source.as_os_str().is_empty() {
        std::fs::create_dir_all(&target)?;
        let size = m
            .tmpfs_size
            .map(|s| format!(",size={s}"))
            .unwrap_or_default();
        mount(
            Some("tmpfs"),
            &target,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(format!("mode=1777{size}").as_str()),
        )
        .with_context(|| format!("mounting a tmpfs at {}", m.destination))?;
        return Ok(());
    }
    if m.source.is_dir() {
        std::fs::create_dir_all(&target)?;
    } else if !target.exists() {
        if let Some(p) = target.parent() {
            std::fs::create_dir_all(p)?;
        }
        std::fs::write(&target, b"")?;
    }
    mount(
        Some(&m.source),
        &target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .with_context(|| format!("mounting {} at {}", m.source.display(), m.destination))?;
    if m.read_only {
        mount(
            None::<&str>,
            &target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC,
            None::<&str>,
        )
        .with_context(|| format!("making {} read-only", m.destination))?;
    }
    Ok(())
}

/// The executable for argv[0], looked up in the container's PATH as runc does.
fn resolve(spec: &ContainerSpec) -> anyhow::Result<PathBuf> {
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

fn drop_privileges(spec: &ContainerSpec) -> anyhow::Result<()> {
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
