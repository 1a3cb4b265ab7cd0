//! Streaming exec and attach (`/exec/...` and `/attach/{namespace}/{pod}/{container}`), as
//! kubectl reaches them through the API server: a WebSocket speaking Kubernetes' channel protocol (`v5.channel.k8s.io`, or
//! `v4.channel.k8s.io`). Every binary message starts with its stream: 0 stdin, 1 stdout,
//! 2 stderr, 3 the final Status, 4 terminal resizes; under v5, `[255, 0]` closes stdin. The
//! command runs through the runtime's exec helper in a process group that is killed if the
//! client goes away first.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tug_runtime::exec::{ExecProcess, ExecStdio};

/// The subprotocols served, preferred first.
pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
const RESIZE: u8 = 4;
/// v5's close signal: `[CLOSE, stream]`.
const CLOSE: u8 = 255;

/// What an exec request asks for (its query parameters).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Params {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Params {
    /// Parses `command=...&command=...&stdin=true&...`.
    pub fn parse(query: &str) -> Params {
        let mut p = Params::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let on = v == "true" || v == "1";
            match k.as_ref() {
                "command" => p.command.push(v.into_owned()),
                "input" | "stdin" => p.stdin = on,
                "output" | "stdout" => p.stdout = on,
                "error" | "stderr" => p.stderr = on,
                "tty" => p.tty = on,
                _ => {}
            }
        }
        p
    }
}

/// The Status that ends a session: Success, or the command's non-zero exit code as
/// Kubernetes reports it (kubectl exits with that code).
fn final_status(command: &[String], code: Option<i32>) -> serde_json::Value {
    match code {
        Some(0) => json!({"metadata": {}, "status": "Success"}),
        Some(code) => json!({
            "metadata": {}, "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        None => json!({
            "metadata": {}, "status": "Failure",
            "message": "command terminated by a signal", "reason": "InternalError",
        }),
    }
}

fn frame(stream: u8, data: &[u8]) -> Message {
    let mut b = Vec::with_capacity(data.len() + 1);
    b.push(stream);
    b.extend_from_slice(data);
    Message::Binary(b.into())
}

/// Starts a command in a running container, for a session (a runtime's `exec_stream`).
pub type Starter = Box<dyn FnOnce(ExecStdio) -> anyhow::Result<ExecProcess> + Send + 'static>;

/// Upgrades the request and runs the command `start` starts over it.
pub fn serve(ws: WebSocketUpgrade, start: Starter, params: Params, idle: Duration) -> Response {
    ws.protocols(PROTOCOLS)
        .on_upgrade(move |socket| session(socket, start, params, Idle::new(idle)))
        .into_response()
}

use crate::websocket::Idle;

/// The Status that ends a session idle for longer than `idle` allows.
fn idle_status(idle: &Idle) -> serde_json::Value {
    json!({"metadata": {}, "status": "Failure", "reason": "Timeout", "code": 408,
        "message": format!("the stream carried no data for {:?} (--streaming-connection-idle-timeout)", idle.limit())})
}

/// A client message's bytes: its stream byte, then the data. Text frames count as binary
/// ones, as in Kubernetes (the Python client writes stdin as text).
fn channel_bytes(m: Message) -> bytes::Bytes {
    match m {
        Message::Binary(b) => b,
        Message::Text(t) => bytes::Bytes::copy_from_slice(t.as_str().as_bytes()),
        _ => bytes::Bytes::new(),
    }
}

/// The size a resize message (`{"Width":W,"Height":H}`) gives.
fn terminal_size(message: &[u8]) -> Option<(u16, u16)> {
    let size = serde_json::from_slice::<serde_json::Value>(message).ok()?;
    let dim = |k: &str| size[k].as_u64().and_then(|v| u16::try_from(v).ok());
    Some((dim("Width")?, dim("Height")?))
}

/// Copies a child's output into frames of `stream` until it ends.
async fn pump(mut from: tug_runtime::exec::ExecOutput, stream: u8, to: mpsc::Sender<Message>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.send(frame(stream, &buf[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Ends a session: the final Status on its stream, then the closing handshake (see
/// [`crate::websocket::close`]).
async fn finish(
    tx: mpsc::Sender<Message>,
    writer: tokio::task::JoinHandle<()>,
    incoming: Incoming,
    status: serde_json::Value,
) {
    let _ = tx.send(frame(STATUS, status.to_string().as_bytes())).await;
    drop(tx);
    crate::websocket::close(incoming, writer).await;
}

/// The client's half of a session's WebSocket.
type Incoming = futures::stream::SplitStream<WebSocket>;

/// Upgrades the request and joins the client to a container's own process through the
/// shim's attach socket (see `tug_runtime::attach`) until the container's output ends or the
/// client goes.
pub fn serve_attach(
    ws: WebSocketUpgrade,
    shim: std::os::unix::net::UnixStream,
    idle: Duration,
) -> Response {
    ws.protocols(PROTOCOLS)
        .on_upgrade(move |socket| attach_session(socket, shim, Idle::new(idle)))
        .into_response()
}

async fn attach_session(socket: WebSocket, shim: std::os::unix::net::UnixStream, mut idle: Idle) {
    use tug_runtime::attach;
    let v5 = socket.protocol().and_then(|h| h.to_str().ok()) == Some(PROTOCOLS[0]);
    let (sink, mut incoming) = socket.split();
    let sent = idle.activity().clone();
    let (tx, writer) = crate::websocket::writer(sink, move |m: Message| {
        sent.touch();
        m
    });
    let shim = match shim
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixStream::from_std(shim))
    {
        Ok(s) => s,
        Err(e) => {
            let status = json!({"metadata": {}, "status": "Failure", "reason": "InternalError",
                "message": format!("attaching to the container: {e}")});
            return finish(tx, writer, incoming, status).await;
        }
    };
    let (mut from_shim, mut to_shim) = shim.into_split();
    let mut pending = Vec::new();
    let mut chunk = vec![0u8; 32 * 1024];
    loop {
        tokio::select! {
            n = from_shim.read(&mut chunk) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    pending.extend_from_slice(&chunk[..n]);
                    while let Ok(Some((kind, data))) = attach::take_frame(&mut pending) {
                        let stream = if kind == attach::STDERR { STDERR } else { STDOUT };
                        if tx.send(frame(stream, &data)).await.is_err() {
                            return;
                        }
                    }
                }
            },
            () = idle.expired() => {
                return finish(tx, writer, incoming, idle_status(&idle)).await;
            }
            msg = incoming.next() => {
                if matches!(msg, Some(Ok(Message::Binary(_)))) {
                    idle.activity().touch();
                }
                let to_send = match msg {
                    Some(Ok(m @ (Message::Binary(_) | Message::Text(_)))) => {
                        let b = channel_bytes(m);
                        match b.first() {
                        Some(&STDIN) => Some(attach::frame(attach::STDIN, &b[1..])),
                        Some(&CLOSE) if v5 && b.get(1) == Some(&STDIN) => {
                            Some(attach::frame(attach::CLOSE_STDIN, &[]))
                        }
                        Some(&RESIZE) => terminal_size(&b[1..]).map(|(w, h)| {
                            let mut size = w.to_be_bytes().to_vec();
                            size.extend_from_slice(&h.to_be_bytes());
                            attach::frame(attach::RESIZE, &size)
                        }),
                        _ => None,
                        }
                    }
                    // The client went: leaving the socket detaches (and, for stdinOnce,
                    // closes the container's stdin).
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => None,
                };
                if let Some(bytes) = to_send
                    && to_shim.write_all(&bytes).await.is_err()
                {
                    break;
                }
            }
        }
    }
    finish(
        tx,
        writer,
        incoming,
        json!({"metadata": {}, "status": "Success"}),
    )
    .await;
}

async fn session(socket: WebSocket, start: Starter, p: Params, mut idle: Idle) {
    let v5 = socket.protocol().and_then(|h| h.to_str().ok()) == Some(PROTOCOLS[0]);
    let (sink, mut incoming) = socket.split();
    let sent = idle.activity().clone();
    let (tx, writer) = crate::websocket::writer(sink, move |m: Message| {
        sent.touch();
        m
    });
    let stdio = ExecStdio {
        stdin: p.stdin,
        stdout: p.stdout,
        stderr: p.stderr,
        tty: p.tty,
    };
    let started = tokio::task::spawn_blocking(move || start(stdio))
        .await
        .map_err(anyhow::Error::from)
        .and_then(|r| r);
    let mut child = match started {
        Ok(c) => c,
        Err(e) => {
            let status = json!({"metadata": {}, "status": "Failure", "reason": "InternalError",
                "message": format!("starting the command: {e:#}")});
            finish(tx, writer, incoming, status).await;
            return;
        }
    };
    let outputs = [(child.stdout.take(), STDOUT), (child.stderr.take(), STDERR)];
    let stdin = child.stdin.take();
    let pumps: Vec<_> = outputs
        .into_iter()
        .filter_map(|(from, stream)| Some(tokio::spawn(pump(from?, stream, tx.clone()))))
        .collect();
    // Stdin is written by a task of its own, so that a command not reading it never holds up
    // the session.
    let (stdin_tx, mut stdin_rx) = mpsc::channel::<Option<bytes::Bytes>>(32);
    if let Some(mut stdin) = stdin {
        tokio::spawn(async move {
            while let Some(Some(data)) = stdin_rx.recv().await {
                if stdin.write_all(&data).await.is_err() || stdin.flush().await.is_err() {
                    return;
                }
            }
            // End of input (or the session is over): dropping stdin closes it.
        });
    }
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            () = idle.expired() => {
                child.kill().await;
                return finish(tx, writer, incoming, idle_status(&idle)).await;
            }
            msg = incoming.next() => match msg {
                Some(Ok(m @ (Message::Binary(_) | Message::Text(_)))) => {
                    let b = channel_bytes(m);
                    idle.activity().touch();
                    match b.first() {
                        Some(&STDIN) => {
                            let _ = stdin_tx.send(Some(b.slice(1..))).await;
                        }
                        Some(&CLOSE) if v5 && b.get(1) == Some(&STDIN) => {
                            let _ = stdin_tx.send(None).await;
                        }
                        Some(&RESIZE) => {
                            if let Some((w, h)) = terminal_size(&b[1..]) {
                                child.resize(w, h);
                            }
                        }
                        _ => {}
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    // The client is gone: so is the command, and everything it started.
                    child.kill().await;
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    };
    drop(stdin_tx);
    // Everything the command wrote goes out before its status; the client is still heard
    // meanwhile (its pings answered, nothing left unread).
    crate::websocket::reading(&mut incoming, async {
        for p in pumps {
            let _ = p.await;
        }
    })
    .await;
    finish(tx, writer, incoming, final_status(&p.command, status)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_and_final_statuses() {
        let p =
            Params::parse("command=sh&command=-c&command=exit%203&stdin=true&stdout=1&tty=false");
        assert_eq!(p.command, ["sh", "-c", "exit 3"]);
        assert!(p.stdin && p.stdout && !p.stderr && !p.tty);
        let failed = final_status(&p.command, Some(3));
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "3");
        assert_eq!(final_status(&p.command, Some(0))["status"], "Success");
    }
}
