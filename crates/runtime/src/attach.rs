//! Attaching to a container's own process: the shim listens on `attach.sock` in the
//! container's directory, copies the container's output to every attached client as it copies
//! it into the log, and feeds what clients send to the container's stdin (a pipe, or the
//! terminal the container runs on when its spec asks for a tty).
//!
//! Both directions are frames: a kind byte, a 32-bit big-endian length, the payload. From the
//! shim: `STDOUT` and `STDERR` output. To the shim: `STDIN` data, `CLOSE_STDIN`, and `RESIZE`
//! (width and height as 16-bit big-endian numbers).

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

/// Output the container wrote to stdout (or its terminal).
pub const STDOUT: u8 = 1;
/// Output the container wrote to stderr.
pub const STDERR: u8 = 2;
/// Input for the container's stdin.
pub const STDIN: u8 = 0;
/// The client's input ended.
pub const CLOSE_STDIN: u8 = 3;
/// The client's terminal changed size.
pub const RESIZE: u8 = 4;

/// The largest frame a client may send.
const MAX_FRAME: usize = 1 << 20;

/// The socket's name in a container's directory.
pub const SOCKET: &str = "attach.sock";

/// Encodes a frame.
pub fn frame(kind: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + data.len());
    out.push(kind);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// A frame longer than any client may send.
#[derive(Debug, PartialEq)]
pub struct TooLarge;

/// Takes the first whole frame off `buf`.
pub fn take_frame(buf: &mut Vec<u8>) -> Result<Option<(u8, Vec<u8>)>, TooLarge> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > MAX_FRAME {
        return Err(TooLarge);
    }
    if buf.len() < 5 + len {
        return Ok(None);
    }
    let kind = buf[0];
    let data = buf[5..5 + len].to_vec();
    buf.drain(..5 + len);
    Ok(Some((kind, data)))
}

/// Where the container's input goes.
pub enum Input {
    /// No stdin: input is dropped.
    None,
    /// The write end of the container's stdin pipe (`None` once closed).
    Pipe(Option<OwnedFd>),
    /// The container's terminal.
    Terminal(OwnedFd),
}

struct Client {
    stream: UnixStream,
    buf: Vec<u8>,
}

/// The shim's side: the listening socket and the attached clients.
pub struct Hub {
    listener: Option<UnixListener>,
    clients: Vec<Client>,
    input: Input,
    /// Close stdin once the first client that attached goes (`stdinOnce`).
    stdin_once: bool,
}

impl Hub {
    /// Listens in `dir`; a hub that cannot listen still runs the container (attach fails).
    pub fn listen(dir: &Path, input: Input, stdin_once: bool) -> Hub {
        let path = dir.join(SOCKET);
        let _ = std::fs::remove_file(&path);
        let listener = match UnixListener::bind(&path) {
            Ok(l) => {
                let _ = l.set_nonblocking(true);
                Some(l)
            }
            Err(e) => {
                eprintln!("cannot listen on {}: {e}", path.display());
                None
            }
        };
        Hub {
            listener,
            clients: Vec::new(),
            input,
            stdin_once,
        }
    }

    /// The descriptors to poll for reading: the listener, then each client.
    pub fn fds(&self) -> Vec<std::os::fd::BorrowedFd<'_>> {
        self.listener
            .iter()
            .map(|l| l.as_fd())
            .chain(self.clients.iter().map(|c| c.stream.as_fd()))
            .collect()
    }

    /// Acts on the descriptors `ready` (in the order of `fds`) says are readable.
    pub fn serve(&mut self, ready: &[bool]) {
        let mut ready = ready.iter().copied();
        if self.listener.is_some() && ready.next() == Some(true) {
            self.accept();
        }
        let mut gone = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        for (i, is_ready) in ready.enumerate() {
            if !is_ready || i >= self.clients.len() {
                continue;
            }
            match self.clients[i].stream.read(&mut buf) {
                Ok(0) => gone.push(i),
                Ok(n) => {
                    self.clients[i].buf.extend_from_slice(&buf[..n]);
                    if !self.take_frames(i) {
                        gone.push(i);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => gone.push(i),
            }
        }
        for i in gone.into_iter().rev() {
            self.clients.remove(i);
            if self.stdin_once {
                self.close_stdin();
            }
        }
    }

    fn accept(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        while let Ok((stream, _)) = listener.accept() {
            let _ = stream.set_nonblocking(false);
            // A client that stops reading is dropped rather than stalling the container.
            let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
            let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
            self.clients.push(Client {
                stream,
                buf: Vec::new(),
            });
        }
    }

    /// Applies the whole frames client `i` sent; false drops the client.
    fn take_frames(&mut self, i: usize) -> bool {
        loop {
            let Ok(next) = take_frame(&mut self.clients[i].buf) else {
                return false;
            };
            let Some((kind, data)) = next else {
                return true;
            };
            match kind {
                STDIN => self.write_input(&data),
                CLOSE_STDIN => self.close_stdin(),
                RESIZE if data.len() == 4 => {
                    if let Input::Terminal(t) = &self.input {
                        let width = u16::from_be_bytes([data[0], data[1]]);
                        let height = u16::from_be_bytes([data[2], data[3]]);
                        resize(t, width, height);
                    }
                }
                _ => {}
            }
        }
    }

    fn write_input(&mut self, data: &[u8]) {
        let fd = match &self.input {
            Input::Pipe(Some(fd)) | Input::Terminal(fd) => fd,
            _ => return,
        };
        let mut rest = data;
        while !rest.is_empty() {
            match nix::unistd::write(fd, rest) {
                Ok(n) => rest = &rest[n..],
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return,
            }
        }
    }

    fn close_stdin(&mut self) {
        if let Input::Pipe(p) = &mut self.input {
            *p = None;
        }
    }

    /// Copies output to every client; a client that cannot take it is dropped.
    pub fn broadcast(&mut self, kind: u8, data: &[u8]) {
        if self.clients.is_empty() {
            return;
        }
        let f = frame(kind, data);
        self.clients.retain_mut(|c| c.stream.write_all(&f).is_ok());
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(l) = &self.listener
            && let Ok(addr) = l.local_addr()
            && let Some(path) = addr.as_pathname()
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Sets a terminal's size.
pub fn resize(terminal: &impl AsRawFd, width: u16, height: u16) {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize we own, on a descriptor we hold.
    unsafe { libc::ioctl(terminal.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_and_join() {
        let mut wire = frame(STDIN, b"ls\n");
        wire.extend(frame(RESIZE, &[0, 80, 0, 24]));
        let mut partial = wire[..4].to_vec();
        assert_eq!(take_frame(&mut partial), Ok(None));
        assert_eq!(take_frame(&mut wire), Ok(Some((STDIN, b"ls\n".to_vec()))));
        assert_eq!(
            take_frame(&mut wire),
            Ok(Some((RESIZE, vec![0, 80, 0, 24])))
        );
        assert_eq!(take_frame(&mut wire), Ok(None));
        let mut huge = vec![STDIN, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(take_frame(&mut huge), Err(TooLarge));
    }
}
