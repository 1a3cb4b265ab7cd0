//! A container's standard streams (pipes or a terminal) and the copy of its output into
//! its log and to attached clients.

use super::*;

/// The container's standard streams: pipes, or a terminal (`tty`), and a pipe for stdin when
/// the spec keeps stdin open.
pub(super) enum Stdio {
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
pub(super) struct ChildStdio<'a> {
    pub(super) stdin: Option<std::os::fd::BorrowedFd<'a>>,
    pub(super) stdout: std::os::fd::BorrowedFd<'a>,
    pub(super) stderr: std::os::fd::BorrowedFd<'a>,
    pub(super) terminal: bool,
}

fn cloexec(fd: &OwnedFd) -> anyhow::Result<()> {
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )?;
    Ok(())
}

impl Stdio {
    pub(super) fn new(spec: &ContainerSpec) -> anyhow::Result<Stdio> {
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

    pub(super) fn for_child(&self) -> ChildStdio<'_> {
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
    pub(super) fn for_shim(self) -> (Vec<(OwnedFd, &'static str)>, crate::attach::Input) {
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
pub(super) fn pump_output(
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
