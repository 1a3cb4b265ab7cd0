//! The kubelet's HTTPS API (port 10250), as the API server uses it: container logs
//! (`/containerLogs/{namespace}/{pod}/{container}`, with follow, tailLines, sinceSeconds,
//! sinceTime, timestamps, previous, limitBytes), exec (`/exec/...`, over a WebSocket), stats
//! and `/healthz`. The caller serves the router
//! over TLS that demands a client certificate from the cluster CA.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tug_runtime::logs::{self, ReadOptions};
use tug_runtime::{ContainerState, Runtime};

/// What the server reads from.
#[derive(Clone)]
pub struct ServerState {
    pub runtime: Arc<dyn Runtime>,
    /// The node's name, as the Summary API reports it.
    pub node_name: String,
    /// Earlier CPU readings, for rates.
    pub rates: Arc<crate::stats::Rates>,
    /// How long a streaming session (exec, attach, port-forward) may pass no data before it
    /// is closed.
    pub stream_idle_timeout: Duration,
}

/// The kubelet API router.
pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route("/exec/{namespace}/{pod}/{container}", get(exec).post(exec))
        .route(
            "/attach/{namespace}/{pod}/{container}",
            get(attach).post(attach),
        )
        .route(
            "/portForward/{namespace}/{pod}",
            get(port_forward).post(port_forward),
        )
        .route("/stats/summary", get(stats_summary))
        .route("/metrics/resource", get(metrics_resource))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn stats_summary(State(state): State<ServerState>) -> Response {
    let s = state.clone();
    match tokio::task::spawn_blocking(move || {
        crate::stats::summary(s.runtime.as_ref(), &s.node_name, &s.rates)
    })
    .await
    {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn metrics() -> Response {
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        tug_nodenet::metrics::render(),
    )
        .into_response()
}

async fn metrics_resource(State(state): State<ServerState>) -> Response {
    match tokio::task::spawn_blocking(move || {
        crate::stats::resource_metrics(state.runtime.as_ref())
    })
    .await
    {
        Ok(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The answer to a streaming request that is not a WebSocket upgrade (kubectl's SPDY
/// fallback, or a bad handshake).
fn not_websocket(what: &str, why: WebSocketUpgradeRejection) -> Response {
    let protocols = if what == "port-forward" {
        crate::portforward::TUNNEL_PROTOCOL.to_string()
    } else {
        crate::exec::PROTOCOLS.join(" or ")
    };
    error(
        StatusCode::BAD_REQUEST,
        format!("{what} is served over a WebSocket upgrade ({protocols}); SPDY is not ({why})"),
    )
}

fn error(code: StatusCode, msg: String) -> Response {
    tracing::info!(%code, %msg, "kubelet API request refused");
    (code, msg).into_response()
}

/// The runs of a pod's container, oldest first.
fn runs_of(rt: &dyn Runtime, ns: &str, pod: &str, container: &str) -> Vec<tug_runtime::Container> {
    let mut runs: Vec<tug_runtime::Container> = rt
        .list()
        .into_iter()
        .filter(|c| {
            c.spec.name == container
                && c.spec
                    .log_path
                    .parent()
                    .and_then(|p| p.parent())
                    .and_then(|p| p.file_name())
                    .is_some_and(|d| d.to_string_lossy().starts_with(&format!("{ns}_{pod}_")))
        })
        .collect();
    runs.sort_by_key(|c| c.spec.attempt);
    runs
}

/// `/exec/{namespace}/{pod}/{container}?command=...`: a command in the container's running
/// run, streamed over a WebSocket (see `exec`).
async fn exec(
    State(state): State<ServerState>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let params = crate::exec::Params::parse(query.as_deref().unwrap_or(""));
    if params.command.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "you must specify at least one command for the container".into(),
        );
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => return not_websocket("exec", e),
    };
    let rt = state.runtime.clone();
    let running = tokio::task::spawn_blocking(move || {
        runs_of(rt.as_ref(), &ns, &pod, &container)
            .into_iter()
            .rev()
            .find(|c| matches!(c.state, ContainerState::Running { .. }))
            .map(|c| c.spec.id)
            .ok_or_else(|| format!("container {container} is not running in pod {ns}/{pod}"))
    })
    .await;
    match running {
        Ok(Ok(id)) => {
            let (rt, command) = (state.runtime.clone(), params.command.clone());
            let start: crate::exec::Starter =
                Box::new(move |stdio| rt.exec_stream(&id, &command, stdio));
            crate::exec::serve(ws, start, params, state.stream_idle_timeout)
        }
        Ok(Err(msg)) => error(StatusCode::BAD_REQUEST, msg),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `/portForward/{namespace}/{pod}`: connections to the pod's ports, over SPDY tunnelled in a
/// WebSocket (see `portforward`).
async fn port_forward(
    State(state): State<ServerState>,
    Path((ns, pod)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => return not_websocket("port-forward", e),
    };
    let ports = match crate::portforward::query_ports(query.as_deref().unwrap_or("")) {
        Ok(p) => p,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let rt = state.runtime.clone();
    let (n, p) = (ns.clone(), pod.clone());
    let sandbox = tokio::task::spawn_blocking(move || {
        rt.sandboxes().into_iter().find(|uid| {
            rt.sandbox_spec(uid)
                .is_some_and(|s| s.namespace == n && s.name == p)
        })
    })
    .await
    .ok()
    .flatten();
    let Some(uid) = sandbox else {
        return error(
            StatusCode::NOT_FOUND,
            format!("pod {ns}/{pod} has no running sandbox on this node"),
        );
    };
    let rt = state.runtime.clone();
    let connect: crate::portforward::Connector = Arc::new(move |port| {
        let (rt, uid) = (rt.clone(), uid.clone());
        Box::pin(async move {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let conn = tokio::task::spawn_blocking(move || {
                rt.connect_in_pod(&uid, addr, Duration::from_secs(10))
            })
            .await
            .map_err(std::io::Error::other)?
            .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
            conn.set_nonblocking(true)?;
            tokio::net::TcpStream::from_std(conn)
        })
    });
    crate::portforward::serve(
        ws,
        format!("{ns}/{pod}"),
        ports,
        connect,
        state.stream_idle_timeout,
    )
}

/// The log file of a container's latest (or previous) run, and whether it still runs.
fn find_log(
    rt: &dyn Runtime,
    ns: &str,
    pod: &str,
    container: &str,
    previous: bool,
) -> Result<(PathBuf, bool), String> {
    let runs = runs_of(rt, ns, pod, container);
    let run = if previous {
        if runs.len() < 2 {
            return Err(format!(
                "previous terminated container \"{container}\" in pod \"{pod}\" not found"
            ));
        }
        runs.get(runs.len() - 2)
    } else {
        runs.last()
    };
    let Some(run) = run else {
        return Err(format!(
            "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
        ));
    };
    let running = matches!(run.state, ContainerState::Running { .. });
    Ok((run.spec.log_path.clone(), running))
}

async fn container_logs(
    State(state): State<ServerState>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let flag = |k: &str| q.get(k).is_some_and(|v| v == "true" || v == "1");
    let previous = flag("previous");
    let follow = flag("follow");
    let mut opts = ReadOptions {
        tail: q.get("tailLines").and_then(|v| v.parse().ok()),
        timestamps: flag("timestamps"),
        limit_bytes: q.get("limitBytes").and_then(|v| v.parse().ok()),
        since: None,
    };
    if let Some(s) = q.get("sinceSeconds").and_then(|v| v.parse::<i64>().ok()) {
        opts.since = jiff::Timestamp::now()
            .checked_sub(jiff::SignedDuration::from_secs(s))
            .ok();
    }
    if let Some(t) = q.get("sinceTime").and_then(|v| v.parse().ok()) {
        opts.since = Some(t);
    }
    let rt = state.runtime.clone();
    let found = {
        let (ns, pod, container) = (ns.clone(), pod.clone(), container.clone());
        tokio::task::spawn_blocking(move || find_log(rt.as_ref(), &ns, &pod, &container, previous))
            .await
    };
    let (path, running) = match found {
        Ok(Ok(f)) => f,
        Ok(Err(msg)) => return error(StatusCode::BAD_REQUEST, msg),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let first = match logs::read(&path, &opts) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    if !follow || previous {
        return Response::new(Body::from(first));
    }
    // Follow: send what is there, then new records as they are written, until the container
    // stops (and its last lines are out) or the client goes away.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(16);
    let (records_tx, mut records) = tokio::sync::mpsc::channel::<Vec<logs::Record>>(16);
    let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    tokio::spawn(follow_log(
        state.runtime.clone(),
        path,
        offset,
        running,
        records_tx,
    ));
    tokio::spawn(async move {
        if tx.send(Ok(first)).await.is_err() {
            return;
        }
        while let Some(batch) = records.recv().await {
            let mut out = Vec::new();
            for rec in &batch {
                logs::render(rec, opts.timestamps, &mut out);
            }
            if tx.send(Ok(out)).await.is_err() {
                return;
            }
        }
    });
    Response::new(Body::from_stream(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    ))
}

/// Sends the records written to a container's log from `offset` on, in batches, until the
/// container has stopped and its last lines are out, or the receiver is gone.
async fn follow_log(
    rt: Arc<dyn Runtime>,
    path: PathBuf,
    mut offset: u64,
    running: bool,
    tx: tokio::sync::mpsc::Sender<Vec<logs::Record>>,
) {
    let mut pending: Vec<u8> = Vec::new();
    let mut still_running = running;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if len < offset {
            // Rotated: start the new file from its beginning.
            offset = 0;
        }
        if len > offset {
            let Ok(bytes) = read_from(&path, offset) else {
                return;
            };
            offset += bytes.len() as u64;
            pending.extend_from_slice(&bytes);
            let mut batch = Vec::new();
            while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=pos).collect();
                batch.extend(logs::parse(&line[..line.len() - 1]));
            }
            if !batch.is_empty() && tx.send(batch).await.is_err() {
                return;
            }
        } else if !still_running {
            return;
        }
        if tx.is_closed() {
            return;
        }
        still_running = rt
            .list()
            .iter()
            .any(|c| c.spec.log_path == path && matches!(c.state, ContainerState::Running { .. }));
    }
}

/// `/attach/{namespace}/{pod}/{container}`: the running container's own process, over the
/// same WebSocket protocol as exec: its output from now on, and input to its stdin (and
/// terminal resizes) when the container keeps stdin open (otherwise input is dropped), until
/// it stops or the client goes.
async fn attach(
    State(state): State<ServerState>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => return not_websocket("attach", e),
    };
    let rt = state.runtime.clone();
    let found = tokio::task::spawn_blocking(move || {
        let run = runs_of(rt.as_ref(), &ns, &pod, &container)
            .into_iter()
            .rev()
            .find(|c| matches!(c.state, ContainerState::Running { .. }))
            .ok_or_else(|| format!("container {container} is not running in pod {ns}/{pod}"))?;
        rt.attach(&run.spec.id).map_err(|e| format!("{e:#}"))
    })
    .await;
    match found {
        Ok(Ok(socket)) => crate::exec::serve_attach(ws, socket, state.stream_idle_timeout),
        Ok(Err(msg)) => error(StatusCode::BAD_REQUEST, msg),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn read_from(path: &std::path::Path, offset: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    Ok(out)
}

/// Parses a duration as Kubernetes flags write them (Go's form): `4h0m0s`, `90s`, `1.5h`,
/// `500ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}: expected a form like 4h0m0s, 30s or 500ms");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(bad()),
        };
        total += value * seconds;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_kubernetes_flags_write_them() {
        assert_eq!(parse_duration("4h0m0s"), Ok(Duration::from_secs(4 * 3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "4", "h", "4x", "-1s", "1s2"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
