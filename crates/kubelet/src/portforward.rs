//! Port forwarding (`/portForward/{namespace}/{pod}`), as kubectl reaches it through the API
//! server: SPDY/3.1 tunnelled in a WebSocket (`SPDY/3.1+portforward.k8s.io`). Each forwarded
//! connection is a pair of SPDY streams sharing a `requestid`: an error stream, where a
//! failure is written, and a data stream, whose bytes go to and from a TCP connection to the
//! port on the pod's loopback, opened inside the pod's network namespace.
//!
//! A connection that carries no data and opens no stream in either direction for the idle
//! timeout is closed, as the kubelet's `--streaming-connection-idle-timeout` does (pings do
//! not count).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::spdy::{self, Codec, Frame};
use crate::websocket::{Idle, writer};

/// The WebSocket subprotocol kubectl tunnels SPDY in.
pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// The largest data frame sent.
const CHUNK: usize = 32 * 1024;
/// How long the second stream of a pair may take to arrive.
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens a connection to a port on the pod's loopback.
pub type Connector = Arc<
    dyn Fn(u16) -> Pin<Box<dyn Future<Output = std::io::Result<TcpStream>> + Send>> + Send + Sync,
>;

/// The channel protocol non-Go clients (the Python client) forward over: each port named in
/// the query gets a data channel `2i` and an error channel `2i+1`.
pub const CHANNEL_PROTOCOL: &str = "v4.channel.k8s.io";

/// Upgrades the request and forwards the ports the client asks for to `connect`: over SPDY
/// streams (kubectl), or over channels for `ports` (named in the query).
pub fn serve(
    ws: WebSocketUpgrade,
    pod: String,
    ports: Vec<u16>,
    connect: Connector,
    idle: Duration,
) -> Response {
    ws.protocols([TUNNEL_PROTOCOL, CHANNEL_PROTOCOL])
        .on_upgrade(move |socket| async move {
            if socket.protocol().and_then(|p| p.to_str().ok()) == Some(TUNNEL_PROTOCOL) {
                tunnel(socket, pod, connect, idle).await
            } else {
                channels(socket, ports, connect).await
            }
        })
        .into_response()
}

/// The ports a channel-protocol request names (`ports=8080,9090` or `port=8080&port=9090`).
pub fn query_ports(query: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k == "port" || k == "ports" {
            for p in v.split(',').filter(|p| !p.is_empty()) {
                match p.trim().parse::<u16>() {
                    Ok(n) if n > 0 => ports.push(n),
                    _ => return Err(format!("invalid port {p:?}: ports are 1 to 65535")),
                }
            }
        }
    }
    if ports.len() > 64 {
        return Err(format!(
            "{} ports in one request are too many (64 at most)",
            ports.len()
        ));
    }
    Ok(ports)
}

/// The channel protocol: one connection per port. The first message on each of a port's
/// channels is the port (16 bits, little-endian); after that, data channel messages carry
/// bytes both ways and the error channel carries a failure. The WebSocket closes once every
/// port's connection has ended.
async fn channels(socket: WebSocket, ports: Vec<u16>, connect: Connector) {
    let (sink, mut incoming) = socket.split();
    let (tx, writer) = writer(sink, |m: Vec<u8>| Message::Binary(m.into()));
    let mut inputs = Vec::new();
    let mut tasks = JoinSet::new();
    for (i, port) in ports.iter().copied().enumerate() {
        let (data, error) = ((2 * i) as u8, (2 * i + 1) as u8);
        let (input_tx, input) = mpsc::unbounded_channel::<Option<Vec<u8>>>();
        inputs.push(input_tx);
        let (tx, connect) = (tx.clone(), connect.clone());
        tasks.spawn(async move {
            for ch in [data, error] {
                let mut first = vec![ch];
                first.extend_from_slice(&port.to_le_bytes());
                let _ = tx.send(first).await;
            }
            let conn = match connect(port).await {
                Ok(c) => c,
                Err(e) => {
                    let mut msg = vec![error];
                    msg.extend_from_slice(
                        format!("error forwarding port {port}: failed to connect to localhost:{port} inside the pod's network namespace: {e}").as_bytes(),
                    );
                    let _ = tx.send(msg).await;
                    return;
                }
            };
            copy(conn, input, &tx, |bytes| {
                let mut m = Vec::with_capacity(bytes.len() + 1);
                m.push(data);
                m.extend_from_slice(bytes);
                m
            })
            .await;
        });
    }
    drop(tx);
    loop {
        tokio::select! {
            done = tasks.join_next() => if done.is_none() { break },
            msg = incoming.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    let Some((&ch, data)) = b.split_first() else { continue };
                    if let Some(input) = inputs.get(usize::from(ch / 2)).filter(|_| ch % 2 == 0)
                        && !data.is_empty()
                    {
                        let _ = input.send(Some(data.to_vec()));
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    tasks.shutdown().await;
                    break;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    drop(inputs);
    crate::websocket::close(incoming, writer).await;
}

/// The streams of one forwarded connection, as they arrive.
#[derive(Default)]
struct Pair {
    port: Option<u16>,
    error: Option<u32>,
    data: Option<u32>,
    since: Option<Instant>,
}

/// One connection's state, as the reading side keeps it.
struct Session {
    pod: String,
    connect: Connector,
    out: mpsc::Sender<Frame>,
    pairs: HashMap<String, Pair>,
    /// Where the client's bytes for a data stream go (`None`: the client's side ended).
    inputs: HashMap<u32, mpsc::UnboundedSender<Option<Vec<u8>>>>,
    tasks: JoinSet<()>,
    /// The task forwarding each data stream.
    forwarding: HashMap<u32, tokio::task::AbortHandle>,
}

async fn tunnel(socket: WebSocket, pod: String, connect: Connector, idle: Duration) {
    let mut idle = Idle::new(idle);
    let (sink, mut incoming) = socket.split();
    // Frames are encoded (one header-compression stream each way) and sent as binary
    // messages; only data counts as activity.
    let mut encoder = Codec::new();
    let sent = idle.activity().clone();
    let (out, writer) = writer(sink, move |frame: Frame| {
        if matches!(frame, Frame::Data { .. }) {
            sent.touch();
        }
        Message::Binary(encoder.encode(&frame).into())
    });
    let mut session = Session {
        pod,
        connect,
        out,
        pairs: HashMap::new(),
        inputs: HashMap::new(),
        tasks: JoinSet::new(),
        forwarding: HashMap::new(),
    };
    let mut codec = Codec::new();
    let mut buf = Vec::new();
    let mut pair_timer = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            msg = incoming.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    buf.extend_from_slice(&b);
                    loop {
                        match codec.decode(&mut buf) {
                            Ok(Some(frame)) => {
                                // Pings keep the connection, not the streams, alive.
                                if matches!(frame, Frame::Data { .. } | Frame::SynStream { .. }) {
                                    idle.activity().touch();
                                }
                                if !session.handle(frame).await {
                                    return session.end(writer, incoming).await;
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                tracing::debug!(error = %e, pod = %session.pod, "port-forward: a bad frame ends the connection");
                                return session.end(writer, incoming).await;
                            }
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            Some(done) = session.tasks.join_next_with_id(), if !session.tasks.is_empty() => {
                // A finished forward forgets its stream.
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => e.id(),
                };
                let streams: Vec<u32> = session
                    .forwarding
                    .iter()
                    .filter(|(_, task)| task.id() == id)
                    .map(|(stream, _)| *stream)
                    .collect();
                for stream in streams {
                    session.forwarding.remove(&stream);
                    session.inputs.remove(&stream);
                }
            }
            () = idle.expired() => {
                tracing::debug!(pod = %session.pod, limit = ?idle.limit(), "port-forward: the connection was idle too long");
                let _ = session.out.send(Frame::GoAway).await;
                break;
            }
            _ = pair_timer.tick() => session.expire_pairs().await,
        }
    }
    session.end(writer, incoming).await;
}

impl Session {
    /// Acts on a frame from the client; false ends the connection.
    async fn handle(&mut self, frame: Frame) -> bool {
        match frame {
            Frame::SynStream {
                stream, headers, ..
            } => self.open(stream, &headers).await,
            Frame::Data { stream, fin, data } => {
                if let Some(input) = self.inputs.get(&stream) {
                    if !data.is_empty() {
                        let _ = input.send(Some(data));
                    }
                    if fin {
                        let _ = input.send(None);
                        self.inputs.remove(&stream);
                    }
                }
            }
            Frame::RstStream { stream, .. } => {
                self.inputs.remove(&stream);
                if let Some(task) = self.forwarding.remove(&stream) {
                    task.abort();
                }
            }
            Frame::Ping(id) => {
                let _ = self.out.send(Frame::Ping(id)).await;
            }
            Frame::GoAway => return false,
            Frame::SynReply { .. }
            | Frame::Headers { .. }
            | Frame::Settings { .. }
            | Frame::WindowUpdate { .. }
            | Frame::Other(_) => {}
        }
        true
    }

    /// A new stream: accepted, and paired with the other stream of its request.
    async fn open(&mut self, stream: u32, headers: &[spdy::Header]) {
        let _ = self
            .out
            .send(Frame::SynReply {
                stream,
                headers: Vec::new(),
            })
            .await;
        let kind = spdy::header(headers, "streamtype");
        let Some(request) = spdy::header(headers, "requestid") else {
            return self.refuse(stream).await;
        };
        let port = spdy::header(headers, "port").and_then(|p| p.parse::<u16>().ok());
        let pair = self.pairs.entry(request.to_string()).or_default();
        pair.since.get_or_insert_with(Instant::now);
        match kind {
            Some("error") => pair.error = Some(stream),
            Some("data") => {
                pair.data = Some(stream);
                pair.port = port;
            }
            _ => return self.refuse(stream).await,
        }
        if let (Some(error), Some(data)) = (pair.error, pair.data) {
            let port = pair.port;
            self.pairs.remove(request);
            self.forward(port, error, data);
        }
    }

    async fn refuse(&mut self, stream: u32) {
        let _ = self
            .out
            .send(Frame::RstStream {
                stream,
                status: spdy::CANCEL,
            })
            .await;
    }

    /// Streams whose partner never came are reset.
    async fn expire_pairs(&mut self) {
        let stale: Vec<String> = self
            .pairs
            .iter()
            .filter(|(_, p)| p.since.is_some_and(|t| t.elapsed() > PAIR_TIMEOUT))
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            if let Some(pair) = self.pairs.remove(&key) {
                for stream in [pair.error, pair.data].into_iter().flatten() {
                    self.refuse(stream).await;
                }
            }
        }
    }

    /// Starts forwarding a pair of streams to a port.
    fn forward(&mut self, port: Option<u16>, error: u32, data: u32) {
        let (tx, rx) = mpsc::unbounded_channel();
        self.inputs.insert(data, tx);
        let out = self.out.clone();
        let connect = self.connect.clone();
        let pod = self.pod.clone();
        let task = self.tasks.spawn(async move {
            let Some(port) = port else {
                let msg = "the data stream names no valid port".to_string();
                return fail(&out, error, data, msg).await;
            };
            match connect(port).await {
                Ok(conn) => {
                    let wrap = |bytes: &[u8]| Frame::Data {
                        stream: data,
                        fin: false,
                        data: bytes.to_vec(),
                    };
                    if copy(conn, rx, &out, wrap).await {
                        let _ = out.send(fin(data)).await;
                    }
                }
                Err(e) => {
                    let msg = format!(
                        "error forwarding port {port} to pod {pod}: failed to connect to localhost:{port} inside the pod's network namespace: {e}"
                    );
                    return fail(&out, error, data, msg).await;
                }
            }
            let _ = out.send(fin(error)).await;
        });
        self.forwarding.insert(data, task);
    }

    /// The connection is over: every forwarded connection closes with it, then the
    /// WebSocket (see [`crate::websocket::close`]).
    async fn end(
        mut self,
        writer: tokio::task::JoinHandle<()>,
        incoming: futures::stream::SplitStream<WebSocket>,
    ) {
        self.tasks.shutdown().await;
        drop(self.inputs);
        drop(self.out);
        crate::websocket::close(incoming, writer).await;
    }
}

fn fin(stream: u32) -> Frame {
    Frame::Data {
        stream,
        fin: true,
        data: Vec::new(),
    }
}

/// Reports a failure on the error stream and ends both streams.
async fn fail(out: &mpsc::Sender<Frame>, error: u32, data: u32, message: String) {
    tracing::debug!(%message, "port-forward");
    let _ = out
        .send(Frame::Data {
            stream: error,
            fin: true,
            data: message.into_bytes(),
        })
        .await;
    let _ = out.send(fin(data)).await;
}

/// Copies between a client's stream and the pod's connection: the client's input (`None`
/// ends it) half-closes the connection, and what the pod sends goes to `out`, each read
/// wrapped by `wrap`. True once the pod's side has ended (the caller then ends the stream);
/// false if either side failed first.
async fn copy<T>(
    conn: TcpStream,
    mut input: mpsc::UnboundedReceiver<Option<Vec<u8>>>,
    out: &mpsc::Sender<T>,
    wrap: impl Fn(&[u8]) -> T,
) -> bool {
    let (mut from_pod, mut to_pod) = conn.into_split();
    let upstream = async move {
        while let Some(Some(chunk)) = input.recv().await {
            if to_pod.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to_pod.shutdown().await;
        // Keep the write half (and so the connection) until the pod's side ends.
        std::future::pending::<()>().await;
    };
    let downstream = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match from_pod.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => {
                    if out.send(wrap(&buf[..n])).await.is_err() {
                        return false;
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = upstream => false,
        ended = downstream => ended,
    }
}
