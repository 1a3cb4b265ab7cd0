//! Streaming exec: a command running in a container with the stdio a client asked for (pipes,
//! or a pseudo-terminal), in a process group of its own so that it and everything it started
//! can be killed together. Each runtime says how to enter its containers; the session is the
//! same for all of them.

use std::process::Stdio;

use tokio::io::{AsyncRead, AsyncWrite};

/// The streams a client asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecStdio {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// A terminal instead of pipes: one output stream, resizable.
    pub tty: bool,
}

/// Where the command's input goes.
pub type ExecInput = Box<dyn AsyncWrite + Unpin + Send>;
/// One of the command's outputs.
pub type ExecOutput = Box<dyn AsyncRead + Unpin + Send>;

/// A command running in a container.
pub struct ExecProcess {
    child: tokio::process::Child,
    group: Option<nix::unistd::Pid>,
    /// Its input, when asked for (the terminal's, with a tty).
    pub stdin: Option<ExecInput>,
    /// Its standard output (the terminal's output, with a tty).
    pub stdout: Option<ExecOutput>,
    /// Its standard error (none with a tty).
    pub stderr: Option<ExecOutput>,
    terminal: Option<std::fs::File>,
}

impl ExecProcess {
    /// Spawns `command` (built by a runtime to enter a container) with `stdio` wired; the
    /// command is put in a process group of its own.
    pub(crate) fn spawn(command: std::process::Command, stdio: ExecStdio) -> std::io::Result<Self> {
        let mut cmd = tokio::process::Command::from(command);
        cmd.kill_on_drop(true).process_group(0);
        let terminal = if stdio.tty {
            let pty = nix::pty::openpty(None, None).map_err(std::io::Error::from)?;
            let slave = pty.slave;
            cmd.stdin(Stdio::from(slave.try_clone()?))
                .stdout(Stdio::from(slave.try_clone()?))
                .stderr(Stdio::from(slave));
            Some(std::fs::File::from(pty.master))
        } else {
            let pipe = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
            cmd.stdin(pipe(stdio.stdin))
                .stdout(pipe(stdio.stdout))
                .stderr(pipe(stdio.stderr));
            None
        };
        let spawned = cmd.spawn();
        // Our copies of a terminal's slave end go now, so that reads of the master end when
        // the command's do.
        drop(cmd);
        let mut child = spawned?;
        let group = child.id().map(|pid| nix::unistd::Pid::from_raw(pid as i32));
        let (stdin, stdout, stderr): (Option<ExecInput>, Option<ExecOutput>, Option<ExecOutput>) =
            match &terminal {
                Some(master) => (
                    Some(Box::new(tokio::fs::File::from_std(master.try_clone()?))),
                    Some(Box::new(tokio::fs::File::from_std(master.try_clone()?))),
                    None,
                ),
                None => (
                    child.stdin.take().map(|s| Box::new(s) as ExecInput),
                    child.stdout.take().map(|s| Box::new(s) as ExecOutput),
                    child.stderr.take().map(|s| Box::new(s) as ExecOutput),
                ),
            };
        Ok(ExecProcess {
            child,
            group,
            stdin,
            stdout,
            stderr,
            terminal,
        })
    }

    /// Waits for the command to end; its exit code (`None` when a signal ended it).
    pub async fn wait(&mut self) -> Option<i32> {
        self.child.wait().await.ok().and_then(|s| s.code())
    }

    /// Kills the command and everything it started, and waits for it.
    pub async fn kill(&mut self) {
        if let Some(g) = self.group {
            let _ = nix::sys::signal::killpg(g, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.child.wait().await;
    }

    /// Resizes the command's terminal (nothing without one).
    pub fn resize(&self, width: u16, height: u16) {
        if let Some(t) = &self.terminal {
            crate::attach::resize(t, width, height);
        }
    }
}
