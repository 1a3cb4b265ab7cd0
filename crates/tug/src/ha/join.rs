//! Joining a server to another's HA cluster, both sides.
//!
//! The joining server first fetches the cluster CA from `GET /cacerts` (without trusting the
//! connection yet) and checks it against the hash its server token carries; from then on it
//! trusts only that CA. It then asks `POST /v1-tug/join` with the token's secret: the server
//! adds it as an etcd member and answers with the cluster's shared secrets (CA and
//! front-proxy CA keys, the service-account key, the admin and node tokens, the server token,
//! the encryption configuration) and the member list to start etcd with, so that every server
//! signs and accepts the same credentials.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tug_store::EtcdStore;

use super::token::{ServerToken, ca_hash};

/// The path of the join request.
pub const JOIN_PATH: &str = "/v1-tug/join";
/// The path the cluster CA is served at, to anyone (it is public).
pub const CACERTS_PATH: &str = "/cacerts";

/// How long joining waits for the server to answer and etcd to accept another member.
pub const JOIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The files every server of a cluster shares, relative to the data directory.
pub const SHARED_FILES: &[&str] = &[
    "pki/ca.crt",
    "pki/ca.key",
    "pki/front-proxy-ca.crt",
    "pki/front-proxy-ca.key",
    "pki/sa.key",
    "token",
    "node-token",
    super::token::FILE,
];

/// Where a joined server keeps the encryption configuration it was given.
pub const ENCRYPTION_FILE: &str = "encryption-config.yaml";

/// What the joining server asks for.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    /// The new member's name.
    pub name: String,
    /// Where its peers will reach it.
    #[serde(rename = "peerURL")]
    pub peer_url: String,
}

/// What it gets back.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinResponse {
    /// The shared files, by path relative to the data directory.
    pub files: std::collections::BTreeMap<String, String>,
    /// The encryption configuration in force, if any.
    pub encryption_config: Option<String>,
    /// `name=peerURL,…` of every member, the new one included.
    pub initial_cluster: String,
    /// Whether the member was added now (false: it was a member already, and restarts on
    /// its own data).
    #[serde(default)]
    pub added: bool,
}

/// What the join endpoint needs.
pub struct JoinService {
    /// The server's data directory (the shared files are read from it).
    pub data_dir: PathBuf,
    /// The server token joining servers must present.
    pub token: ServerToken,
    /// The etcd cluster new members are added to.
    pub etcd: EtcdStore,
    /// The encryption configuration file in force.
    pub encryption_config: Option<PathBuf>,
}

/// Routes for `/cacerts` and the join endpoint, to merge into the API server's router.
pub fn routes(service: Arc<JoinService>) -> axum::Router {
    axum::Router::new()
        .route(CACERTS_PATH, axum::routing::get(cacerts))
        .route(JOIN_PATH, axum::routing::post(join))
        .with_state(service)
}

async fn cacerts(State(s): State<Arc<JoinService>>) -> Response {
    match std::fs::read_to_string(s.data_dir.join("pki/ca.crt")) {
        Ok(pem) => ([(header::CONTENT_TYPE, "text/plain")], pem).into_response(),
        Err(e) => status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            &format!("reading the CA: {e}"),
        ),
    }
}

/// A Kubernetes `Status` response.
fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code.as_u16()})
        .to_string(),
    )
        .into_response()
}

async fn join(
    State(s): State<Arc<JoinService>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !s.token.accepts(secret) {
        tracing::warn!("a join request with a wrong server token was refused");
        return status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "the server token is not this cluster's: use DATA_DIR/server-token of one of its servers",
        );
    }
    let req: JoinRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("the join request is not valid: {e}"),
            );
        }
    };
    match admit(&s, &req).await {
        Ok(resp) => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_string(&resp).unwrap_or_default(),
        )
            .into_response(),
        // Another member under that name: retrying would not help.
        Err(e) if e.downcast_ref::<NameTaken>().is_some() => {
            status(StatusCode::CONFLICT, "AlreadyExists", &format!("{e:#}"))
        }
        Err(e) => status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            &format!("{e:#}"),
        ),
    }
}

/// A member of that name exists at another peer URL.
#[derive(Debug)]
struct NameTaken(String);

impl std::fmt::Display for NameTaken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NameTaken {}

/// Adds the member (or finds it, when a join is retried) and gathers the shared files.
async fn admit(s: &JoinService, req: &JoinRequest) -> anyhow::Result<JoinResponse> {
    let existing = s.etcd.members().await?;
    if let Some(m) = existing
        .iter()
        .find(|m| m.name == req.name && !m.peer_urls.contains(&req.peer_url))
    {
        return Err(NameTaken(format!(
            "a member named {:?} already exists at {}: remove it first (`tug server remove {}`) \
             or pick another --node-name",
            req.name,
            m.peer_urls.join(","),
            req.name
        ))
        .into());
    }
    let added = !existing.iter().any(|m| m.peer_urls.contains(&req.peer_url));
    let members = if added {
        tracing::info!(name = %req.name, peer = %req.peer_url, "adding an etcd member");
        s.etcd.add_member(&req.peer_url).await?.1
    } else {
        existing
    };
    let initial_cluster = members
        .iter()
        .flat_map(|m| {
            let name = if m.peer_urls.contains(&req.peer_url) {
                req.name.clone()
            } else {
                m.name.clone()
            };
            m.peer_urls.iter().map(move |u| format!("{name}={u}"))
        })
        .collect::<Vec<_>>()
        .join(",");
    let mut files = std::collections::BTreeMap::new();
    for name in SHARED_FILES {
        let path = s.data_dir.join(name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        files.insert(name.to_string(), text);
    }
    let encryption_config = match &s.encryption_config {
        Some(p) => {
            Some(std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
        }
        None => None,
    };
    Ok(JoinResponse {
        files,
        encryption_config,
        initial_cluster,
        added,
    })
}

/// Asks the server at `url` to let this server join; writes the shared files into
/// `data_dir` and returns the answer. Refuses a server whose CA is not the token's, and a
/// data directory that already belongs to another cluster.
pub async fn request(
    url: &str,
    token: &ServerToken,
    data_dir: &Path,
    req: &JoinRequest,
    patience: std::time::Duration,
) -> anyhow::Result<JoinResponse> {
    let base = url.trim_end_matches('/');
    let deadline = tokio::time::Instant::now() + patience;
    let cacerts = format!("{base}{CACERTS_PATH}");
    let ca = retrying(deadline, || fetch(&cacerts, None, None))
        .await
        .with_context(|| format!("fetching the cluster CA from {base}"))?;
    let presented = ca_hash(&ca);
    if presented != token.ca_hash {
        bail!(
            "the server at {base} holds a CA with hash {presented}, but the token expects {}: \
             the token is for another cluster (or something sits between you and the server)",
            token.ca_hash
        );
    }
    if let Ok(mine) = std::fs::read_to_string(data_dir.join("pki/ca.crt"))
        && mine != ca
    {
        bail!(
            "{} already belongs to another cluster (its pki/ca.crt is not the CA of {base}): \
             join with an empty --data-dir",
            data_dir.display()
        );
    }
    let body = serde_json::to_vec(req)?;
    // etcd refuses a new member until the last one added has been up for a few seconds
    // ("unhealthy cluster"): retrying waits for it.
    let join = format!("{base}{JOIN_PATH}");
    let answer = retrying(deadline, || {
        fetch(&join, Some(&ca), Some((&token.secret, body.clone())))
    })
    .await
    .with_context(|| format!("joining the cluster of {base}"))?;
    let resp: JoinResponse =
        serde_json::from_str(&answer).context("the join answer is not valid")?;
    std::fs::create_dir_all(data_dir.join("pki"))
        .with_context(|| format!("creating {}", data_dir.join("pki").display()))?;
    for (name, text) in &resp.files {
        if !SHARED_FILES.contains(&name.as_str()) {
            bail!("the join answer carries an unexpected file {name:?}");
        }
        tug_apiserver::pki::write_private(&data_dir.join(name), text)?;
    }
    if let Some(config) = &resp.encryption_config {
        tug_apiserver::pki::write_private(&data_dir.join(ENCRYPTION_FILE), config)?;
    }
    Ok(resp)
}

/// Runs `attempt` until it succeeds, fails for good (a refusal), or `deadline` passes.
/// Connection errors and 5xx answers (a server still starting, etcd not ready for another
/// member) are retried, each logged.
async fn retrying<F, Fut>(deadline: tokio::time::Instant, attempt: F) -> anyhow::Result<String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<String, FetchError>>,
{
    loop {
        match attempt().await {
            Ok(answer) => return Ok(answer),
            Err(FetchError::Transient(e)) if tokio::time::Instant::now() < deadline => {
                tracing::info!(error = %format!("{e:#}"), "the server is not ready for this server to join yet; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(FetchError::Transient(e) | FetchError::Refused(e)) => return Err(e),
        }
    }
}

/// Why a fetch failed.
enum FetchError {
    /// Worth retrying: no connection, or a 5xx answer.
    Transient(anyhow::Error),
    /// The server said no (4xx), or the answer cannot be used.
    Refused(anyhow::Error),
}

/// GETs `url` (or POSTs `body` with a bearer secret), trusting `ca` or, without it, any
/// certificate (only for the public CA, whose hash is checked afterwards). Returns the body
/// of a 2xx answer; otherwise the server's message.
async fn fetch(
    url: &str,
    ca: Option<&str>,
    post: Option<(&str, Vec<u8>)>,
) -> Result<String, FetchError> {
    use http_body_util::{BodyExt, Full};
    let tls = match ca {
        Some(pem) => tug_apiserver::tls::https_client_config(Some(pem)),
        None => insecure_config(),
    }
    .map_err(FetchError::Refused)?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Full<bytes::Bytes>>(https);
    let mut builder = http::Request::builder().uri(url);
    let body = match post {
        Some((secret, body)) => {
            builder = builder
                .method(http::Method::POST)
                .header(header::AUTHORIZATION, format!("Bearer {secret}"))
                .header(header::CONTENT_TYPE, "application/json");
            body
        }
        None => Vec::new(),
    };
    let request = builder
        .body(Full::new(bytes::Bytes::from(body)))
        .map_err(|e| FetchError::Refused(e.into()))?;
    let resp =
        match tokio::time::timeout(std::time::Duration::from_secs(30), client.request(request))
            .await
        {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => return Err(FetchError::Transient(e.into())),
            Err(_) => {
                return Err(FetchError::Transient(anyhow::anyhow!(
                    "no answer within 30 s"
                )));
            }
        };
    let code = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| FetchError::Transient(e.into()))?
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if !code.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or(text);
        let e = anyhow::anyhow!("{code}: {message}");
        return Err(if code.is_server_error() {
            FetchError::Transient(e)
        } else {
            FetchError::Refused(e)
        });
    }
    Ok(text)
}

/// A TLS client that accepts any server certificate (signatures still checked), for fetching
/// the public CA before it can be trusted.
fn insecure_config() -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(tug_apiserver::tls::SkipVerify(provider)))
        .with_no_client_auth();
    config.alpn_protocols.clear();
    Ok(config)
}
