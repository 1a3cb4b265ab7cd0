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

/// GETs a kubelet URL and streams the answer back; kubelet errors become API errors.
async fn forward(client: &KubeletClient, uri: &str) -> Result<Response, ApiError> {
    let req = http::Request::get(uri)
        .body(Body::empty())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let resp = client.client.request(req).await.map_err(|e| {
        ApiError::new(
            502,
            "InternalError",
            format!("Get \"{uri}\": the node's kubelet cannot be reached: {e}"),
        )
    })?;
    if !resp.status().is_success() {
        let code = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).to_string())
            .unwrap_or_default();
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
    let all_names: Vec<String> = pod
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .chain(names.iter().cloned())
        .collect();
    let container = match query.get("container").filter(|c| !c.is_empty()) {
        Some(c) if all_names.contains(c) => c.clone(),
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
    let Some(client) = kubelet else {
        return Err(ApiError::new(
            503,
            "ServiceUnavailable",
            "this API server has no kubelet client configured",
        ));
    };
    let addr = kubelet_address(registry, node).await?;
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
