//! The sandbox (`tug __sandbox`): creates a pod's namespaces and holds them, as a pause
//! container does.

use super::*;

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
