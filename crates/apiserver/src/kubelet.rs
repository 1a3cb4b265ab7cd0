//! The API server's side of the kubelet API: `pods/log` is answered by the kubelet of the
//! pod's node (`https://<InternalIP>:<kubelet port>/containerLogs/...`), reached over TLS with
//! a client certificate from the cluster CA, and streamed back to the client.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use http::{StatusCode, header};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tug_api::ApiError;

use crate::registry::Registry;

/// An HTTPS client for kubelets.
#[derive(Clone)]
pub struct KubeletClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>,
}

impl KubeletClient {
    /// A client presenting `tls`'s client certificate and trusting its roots.
    pub fn new(tls: rustls::ClientConfig) -> KubeletClient {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        KubeletClient {
            client: Client::builder(TokioExecutor::new()).build(https),
        }
    }
}

/// The query parameters of pods/log the kubelet understands.
const LOG_PARAMS: [&str; 7] = [
    "follow",
    "previous",
    "tailLines",
    "sinceSeconds",
    "sinceTime",
    "timestamps",
    "limitBytes",
];

/// Where a node's kubelet listens.
async fn kubelet_address(registry: &Registry, node: &str) -> Result<String, ApiError> {
    let nodes = tug_api::catalog::lookup("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("no nodes resource"))?;
    let n = registry.get(nodes, None, node).await?;
    let ip = n
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|x| x["type"] == "InternalIP")
                .or_else(|| a.first())
        })
        .and_then(|x| x["address"].as_str())
        .ok_or_else(|| ApiError::bad_request(format!("node {node} has no address")))?
        .to_string();
    let port = n
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .unwrap_or(10250);
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip
    };
    Ok(format!("{host}:{port}"))
}

/// GET nodes/{name}/proxy/{path}: the node's kubelet API (`stats/summary`,
/// `metrics/resource`, `healthz`, ...), as `kubectl get --raw` reaches it.
pub async fn node_proxy(
    registry: &Registry,
    kubelet: Option<&KubeletClient>,
    node: &str,
    path: &str,
    query: &str,
) -> Result<Response, ApiError> {
    let Some(client) = kubelet else {
        return Err(ApiError::new(
            503,
            "ServiceUnavailable",
            "this API server has no kubelet client configured",
        ));
    };
    let addr = kubelet_address(registry, node).await?;
    let uri = if query.is_empty() {
        format!("https://{addr}/{path}")
    } else {
        format!("https://{addr}/{path}?{query}")
    };
    forward(client, &uri).await
}

/// GETs `path` from a node's kubelet as text (the resource metrics scraper's request).
pub(crate) async fn get_text(
    registry: &Registry,
    client: &KubeletClient,
    node: &str,
    path: &str,
) -> Result<String, ApiError> {
    let uri = format!("https://{}/{path}", kubelet_address(registry, node).await?);
    let resp = send(client, http::Request::get(&uri), &uri).await?;
    let ok = resp.status().is_success();
    let text = body_text(resp).await;
    if ok {
        Ok(text)
    } else {
        Err(ApiError::internal(format!("{uri}: {}", text.trim())))
    }
}

/// Sends a bodiless request to a kubelet; a kubelet out of reach is a 502.
async fn send(
    client: &KubeletClient,
    req: http::request::Builder,
    uri: &str,
) -> Result<http::Response<hyper::body::Incoming>, ApiError> {
    let req = req
        .body(Body::empty())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    client.client.request(req).await.map_err(|e| {
        ApiError::new(
            502,
            "InternalError",
            format!("Get \"{uri}\": the node's kubelet cannot be reached: {e}"),
        )
    })
}

/// A kubelet's (error) answer as text.
async fn body_text(resp: http::Response<hyper::body::Incoming>) -> String {
    resp.into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).to_string())
        .unwrap_or_default()
}

/// GETs a kubelet URL and streams the answer back; kubelet errors become API errors.
async fn forward(client: &KubeletClient, uri: &str) -> Result<Response, ApiError> {
    let resp = send(client, http::Request::get(uri), uri).await?;
    if !resp.status().is_success() {
        let code = resp.status().as_u16();
        let body = body_text(resp).await;
        return Err(if code == 400 || code == 404 {
            ApiError::bad_request(body.trim().to_string())
        } else {
            ApiError::internal(body.trim().to_string())
        });
    }
    let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
    let mut out = Response::new(Body::new(resp.into_body()));
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        content_type.unwrap_or(http::HeaderValue::from_static("text/plain")),
    );
    *out.status_mut() = StatusCode::OK;
    Ok(out)
}

/// GET pods/log: the container's log, from its node's kubelet.
pub async fn pod_log(
    registry: &Registry,
    kubelet: Option<&KubeletClient>,
    pods: &'static tug_api::Resource,
    namespace: &str,
    name: &str,
    query: &std::collections::HashMap<String, String>,
) -> Result<Response, ApiError> {
    check_log_options(query)?;
    let (container, node) = container_and_node(
        registry,
        pods,
        namespace,
        name,
        query.get("container").map(String::as_str),
    )
    .await?;
    let client = kubelet.ok_or_else(no_client)?;
    let addr = kubelet_address(registry, &node).await?;
    let params: Vec<String> = LOG_PARAMS
        .iter()
        .filter_map(|k| query.get(*k).map(|v| format!("{k}={}", encode(v))))
        .collect();
    let uri = format!(
        "https://{addr}/containerLogs/{namespace}/{name}/{container}?{}",
        params.join("&")
    );
    forward(client, &uri).await
}

/// Refuses log options Kubernetes refuses: numbers that are not numbers, a negative
/// `tailLines`, a `sinceSeconds` or `limitBytes` below 1, both `sinceSeconds` and `sinceTime`.
fn check_log_options(query: &std::collections::HashMap<String, String>) -> Result<(), ApiError> {
    let mut problems = Vec::new();
    for (name, least, rule) in [
        ("tailLines", 0, "must be greater than or equal to 0"),
        ("sinceSeconds", 1, "must be greater than 0"),
        ("limitBytes", 1, "must be greater than 0"),
    ] {
        let Some(raw) = query.get(name) else { continue };
        match raw.parse::<i64>() {
            Ok(n) if n >= least => {}
            Ok(n) => problems.push(format!("{name}: Invalid value: {n}: {rule}")),
            Err(_) => problems.push(format!(
                "{name}: Invalid value: {raw:?}: must be an integer"
            )),
        }
    }
    if query.contains_key("sinceSeconds") && query.contains_key("sinceTime") {
        problems.push(
            "sinceSeconds: Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"
                .to_string(),
        );
    }
    if let Some(t) = query.get("sinceTime")
        && t.parse::<jiff::Timestamp>().is_err()
    {
        problems.push(format!(
            "sinceTime: Invalid value: {t:?}: must be an RFC 3339 time"
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "PodLogOptions is invalid: {}",
        problems.join(", ")
    )))
}

/// The answer when no kubelet client is configured.
fn no_client() -> ApiError {
    ApiError::new(
        503,
        "ServiceUnavailable",
        "this API server has no kubelet client configured",
    )
}

/// The container a pod subresource (log, exec, attach) addresses (the `container` parameter,
/// or the pod's only container) and the node the pod runs on.
async fn container_and_node(
    registry: &Registry,
    pods: &'static tug_api::Resource,
    namespace: &str,
    name: &str,
    container: Option<&str>,
) -> Result<(String, String), ApiError> {
    let pod = registry.get(pods, Some(namespace), name).await?;
    let names: Vec<String> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let all_names: Vec<String> = ["/spec/initContainers", "/spec/ephemeralContainers"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .chain(names.iter().cloned())
        .collect();
    let container = match container.filter(|c| !c.is_empty()) {
        Some(c) if all_names.iter().any(|n| n == c) => c.to_string(),
        Some(c) => {
            return Err(ApiError::bad_request(format!(
                "container {c} is not valid for pod {name}"
            )));
        }
        None if names.len() == 1 => names[0].clone(),
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                names.join(" ")
            )));
        }
    };
    let Some(node) = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    else {
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"
        )));
    };
    Ok((container, node.to_string()))
}

/// The node a pod runs on (port-forwarding needs one).
async fn pod_node(
    registry: &Registry,
    pods: &'static tug_api::Resource,
    namespace: &str,
    name: &str,
) -> Result<String, ApiError> {
    let pod = registry.get(pods, Some(namespace), name).await?;
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "unable to upgrade connection: pod {name} is not scheduled to a node yet"
            ))
        })
}

/// Request headers a WebSocket handshake carries through to the kubelet.
const HANDSHAKE: [header::HeaderName; 5] = [
    header::CONNECTION,
    header::UPGRADE,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_PROTOCOL,
];

/// pods/exec, pods/attach and pods/portforward (`kind`): the client's WebSocket upgrade is
/// relayed to the kubelet of the pod's node (`/exec/...`, `/attach/...` or `/portForward/...`,
/// with the client certificate of the API server), and once both sides have switched
/// protocols, bytes flow between them (see [`relay`]).
pub async fn stream(
    registry: &Registry,
    kubelet: Option<&KubeletClient>,
    pods: &'static tug_api::Resource,
    kind: &str,
    namespace: &str,
    name: &str,
    mut req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let query = req.uri().query().unwrap_or("").to_string();
    let (path, node) = if kind == "portforward" {
        let node = pod_node(registry, pods, namespace, name).await?;
        (
            format!("portForward/{}/{}", encode(namespace), encode(name)),
            node,
        )
    } else {
        let container = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "container")
            .map(|(_, v)| v.into_owned());
        let (container, node) =
            container_and_node(registry, pods, namespace, name, container.as_deref()).await?;
        let path = format!(
            "{kind}/{}/{}/{}",
            encode(namespace),
            encode(name),
            encode(&container)
        );
        (path, node)
    };
    let client = kubelet.ok_or_else(no_client)?;
    if !req.headers().contains_key(header::UPGRADE) {
        return Err(ApiError::bad_request(format!(
            "{kind} is served over a WebSocket upgrade; SPDY is not"
        )));
    }
    let addr = kubelet_address(registry, &node).await?;
    let uri = format!("https://{addr}/{path}?{query}");
    let mut out = http::Request::get(&uri);
    for h in &HANDSHAKE {
        if let Some(v) = req.headers().get(h) {
            out = out.header(h, v);
        }
    }
    let resp = send(client, out, &uri).await?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let body = body_text(resp).await;
        return Err(ApiError::bad_request(body.trim().to_string()));
    }
    let mut answer = Response::new(Body::empty());
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for h in [
        header::CONNECTION,
        header::UPGRADE,
        header::SEC_WEBSOCKET_ACCEPT,
        header::SEC_WEBSOCKET_PROTOCOL,
    ] {
        if let Some(v) = resp.headers().get(&h) {
            answer.headers_mut().insert(h, v.clone());
        }
    }
    let from_client = hyper::upgrade::on(&mut req);
    let to_kubelet = hyper::upgrade::on(resp);
    tokio::spawn(async move {
        let (Ok(client), Ok(kubelet)) = (from_client.await, to_kubelet.await) else {
            tracing::debug!("a pod stream ended before it was upgraded");
            return;
        };
        relay(
            hyper_util::rt::TokioIo::new(client),
            hyper_util::rt::TokioIo::new(kubelet),
        )
        .await;
    });
    Ok(answer)
}

/// How long a relay whose kubelet side has ended waits for the client to close its own.
const CLIENT_CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Relays an upgraded connection between a client and a kubelet until both directions have
/// ended. Each direction is copied on its own, so one ending or failing never cuts the other
/// short: everything the kubelet sent is flushed to the client before the client's side is
/// closed (TLS close_notify, then FIN), and the client's end of input half-closes the
/// kubelet's side.
async fn relay<C, K>(client: C, kubelet: K)
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    K: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    use tokio::io::AsyncWriteExt;
    let (mut from_client, mut to_client) = tokio::io::split(client);
    let (mut from_kubelet, mut to_kubelet) = tokio::io::split(kubelet);
    let mut up = tokio::spawn(async move {
        let copied = tokio::io::copy(&mut from_client, &mut to_kubelet).await;
        let _ = to_kubelet.shutdown().await;
        copied
    });
    let copied = tokio::io::copy(&mut from_kubelet, &mut to_client).await;
    // What was read has been handed to the client's connection; shutting it down flushes it
    // out, also when the kubelet's side ended in an error.
    let closed = to_client.shutdown().await;
    if let Err(e) = copied.as_ref().and(closed.as_ref()) {
        tracing::debug!(error = %e, "a pod stream from the kubelet ended with an error");
    }
    match tokio::time::timeout(CLIENT_CLOSE_WAIT, &mut up).await {
        Ok(Ok(Err(e))) => {
            tracing::debug!(error = %e, "a pod stream from the client ended with an error")
        }
        Ok(_) => {}
        Err(_) => up.abort(),
    }
}

fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Shared handle to the client, as the API server holds it.
pub type Shared = Arc<std::sync::OnceLock<KubeletClient>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_options_kubernetes_refuses_are_400s() {
        let q = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<std::collections::HashMap<_, _>>()
        };
        assert!(check_log_options(&q(&[("tailLines", "0"), ("limitBytes", "10")])).is_ok());
        for bad in [
            q(&[("tailLines", "-1")]),
            q(&[("tailLines", "ten")]),
            q(&[("sinceSeconds", "0")]),
            q(&[("limitBytes", "0")]),
            q(&[("sinceSeconds", "5"), ("sinceTime", "2026-01-01T00:00:00Z")]),
            q(&[("sinceTime", "yesterday")]),
        ] {
            let e = check_log_options(&bad).expect_err("refused");
            assert_eq!(e.code, 400, "{bad:?}");
        }
        let e = check_log_options(&q(&[("tailLines", "-1")])).expect_err("refused");
        assert!(
            e.message
                .ends_with("tailLines: Invalid value: -1: must be greater than or equal to 0")
        );
    }
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A kubelet that sends 4 MiB and hangs up while the client, reading slowly, still writes
    /// (as kubectl's pings do): the write to the kubelet fails, and the client must still get
    /// every byte, then the end of the stream.
    #[tokio::test]
    async fn a_relay_delivers_everything_the_kubelet_sent_when_the_client_writes_after_it_left() {
        let (client, mut client_end) = tokio::io::duplex(64 << 10);
        let (kubelet, mut kubelet_end) = tokio::io::duplex(64 << 10);
        let relayed = tokio::spawn(relay(client, kubelet));
        let sent: Vec<u8> = (0..4u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
        let data = sent.clone();
        let kubelet_side = tokio::spawn(async move {
            kubelet_end.write_all(&data).await.expect("kubelet writes");
            // Gone at once, as a process that closed its socket.
        });
        let mut got = Vec::new();
        let mut buf = vec![0u8; 16 << 10];
        let mut pinged = false;
        loop {
            let n = client_end.read(&mut buf).await.expect("client reads");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            // Once the kubelet is gone (its last bytes still on their way), the client's
            // next write fails inside the relay.
            if !pinged && kubelet_side.is_finished() {
                assert!(got.len() < sent.len(), "nothing left in flight");
                let _ = client_end.write_all(b"ping").await;
                let _ = client_end.flush().await;
                pinged = true;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        assert!(pinged);
        assert_eq!(got.len(), sent.len());
        assert!(got == sent, "the relayed bytes differ");
        drop(client_end);
        tokio::time::timeout(std::time::Duration::from_secs(5), relayed)
            .await
            .expect("the relay ends once both sides have")
            .expect("relay task");
    }
}
