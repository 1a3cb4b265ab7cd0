//! Pulling images from OCI distribution registries: manifests and indexes (OCI and Docker v2
//! schema 2, linux/amd64 picked), blobs verified against their digests, anonymous, basic and
//! bearer-token auth, plain HTTP for loopback and registries configured as insecure.

use std::io::Write;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};

use super::layer::hex;
use super::manifest::{
    DOCKER_LIST, DOCKER_MANIFEST, Descriptor, Document, OCI_INDEX, OCI_MANIFEST,
};
use super::reference::Reference;
use super::store::{BlobSource, Image, ImageStore};

/// A user name and password for a registry.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// Why a pull failed; the message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The reference cannot be parsed.
    #[error("{0}")]
    InvalidReference(String),
    /// The registry has no such image.
    #[error("{0}")]
    NotFound(String),
    /// The registry refused the credentials (or wants some).
    #[error("{0}")]
    Unauthorized(String),
    /// Anything else: network, protocol, digests, disk.
    #[error("{0}")]
    Failed(String),
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<Connector>, Empty<Bytes>>;

/// The network namespace connections to loopback registries are made in, when it is not the
/// process's own (a node of `tug up` reaches the host's loopback registry this way).
static LOOPBACK_NETNS: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Makes connections to loopback registries in the network namespace at `path` (for example
/// a pinned handle of the host's). Set once, at start.
pub fn set_loopback_netns(path: &std::path::Path) {
    let _ = LOOPBACK_NETNS.set(path.to_path_buf());
}

/// Connects as hyper's HTTP connector does, except that loopback addresses are reached in
/// [`LOOPBACK_NETNS`] when it is set.
#[derive(Clone)]
struct Connector {
    http: HttpConnector,
}

impl tower::Service<http::Uri> for Connector {
    type Response = hyper_util::rt::TokioIo<tokio::net::TcpStream>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let host = uri
            .host()
            .unwrap_or("")
            .trim_matches(|c| c == '[' || c == ']');
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        match LOOPBACK_NETNS.get() {
            Some(netns) if loopback => {
                let netns = netns.clone();
                let port = uri.port_u16().unwrap_or(80);
                let host = host.to_string();
                Box::pin(async move {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    // A thread of its own joins the namespace (pooled threads must not).
                    std::thread::spawn(move || {
                        let connect = || -> std::io::Result<std::net::TcpStream> {
                            let ns = std::fs::File::open(&netns)?;
                            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                                .map_err(std::io::Error::from)?;
                            let s = std::net::TcpStream::connect((host.as_str(), port))?;
                            s.set_nonblocking(true)?;
                            Ok(s)
                        };
                        let _ = tx.send(connect());
                    });
                    let stream = rx.await.map_err(|_| "the connecting thread went away")??;
                    Ok(hyper_util::rt::TokioIo::new(
                        tokio::net::TcpStream::from_std(stream)?,
                    ))
                })
            }
            _ => {
                let fut = self.http.call(uri);
                Box::pin(async move { fut.await.map_err(Into::into) })
            }
        }
    }
}

/// A client for one repository, remembering how it authenticated.
struct Session {
    client: HttpsClient,
    base: String,
    repository: String,
    credentials: Option<Credentials>,
    authorization: Option<String>,
}

fn failed(e: impl std::fmt::Display) -> PullError {
    PullError::Failed(e.to_string())
}

/// Whether a registry is reached over plain HTTP: loopback addresses and the insecure list.
fn plain_http(registry: &str, insecure: &[String]) -> bool {
    let host = registry
        .rsplit_once(':')
        .filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
        .map_or(registry, |(h, _)| h)
        .trim_matches(|c| c == '[' || c == ']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
        || insecure.iter().any(|i| i == registry || i == host)
}

/// `key="value"` parameters of a WWW-Authenticate challenge.
fn challenge_params(h: &str) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    let rest = h.split_once(' ').map_or("", |(_, r)| r);
    for part in rest.split(',') {
        if let Some((k, v)) = part.split_once('=') {
            out.insert(
                k.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_string(),
            );
        }
    }
    out
}

impl Session {
    fn basic(&self) -> Option<String> {
        self.credentials.as_ref().map(|c| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", c.username, c.password))
            )
        })
    }

    async fn send(
        &self,
        url: &str,
        accept: &str,
        auth: Option<&str>,
    ) -> Result<http::Response<hyper::body::Incoming>, PullError> {
        let mut req = Request::get(url)
            .header(header::ACCEPT, accept)
            .header(header::USER_AGENT, "tugboat")
            .body(Empty::new())
            .map_err(failed)?;
        if let Some(a) = auth
            && let Ok(v) = HeaderValue::from_str(a)
        {
            req.headers_mut().insert(header::AUTHORIZATION, v);
        }
        self.client
            .request(req)
            .await
            .map_err(|e| PullError::Failed(format!("GET {url}: {e}")))
    }

    /// GETs a registry path, authenticating as the registry asks (once), following redirects.
    async fn get(&mut self, path: &str, accept: &str) -> Result<Bytes, PullError> {
        let mut url = format!("{}{path}", self.base);
        for _ in 0..5 {
            let resp = self
                .send(&url, accept, self.authorization.as_deref())
                .await?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && self.authorization.is_none() {
                let challenge = resp
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                self.authorization = Some(self.authenticate(&challenge).await?);
                continue;
            }
            if status.is_redirection()
                && let Some(loc) = resp
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
            {
                url = if loc.starts_with('/') {
                    format!("{}{loc}", self.base)
                } else {
                    loc.to_string()
                };
                continue;
            }
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| PullError::Failed(format!("reading {url}: {e}")))?
                .to_bytes();
            return match status {
                s if s.is_success() => Ok(body),
                StatusCode::NOT_FOUND => Err(PullError::NotFound(format!(
                    "{url}: not found: {}",
                    String::from_utf8_lossy(&body).trim()
                ))),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    Err(PullError::Unauthorized(format!(
                        "{url}: {status}: the registry refused the credentials (check the pod's imagePullSecrets)"
                    )))
                }
                s => Err(PullError::Failed(format!(
                    "{url}: {s}: {}",
                    String::from_utf8_lossy(&body).trim()
                ))),
            };
        }
        Err(PullError::Failed(format!("{url}: too many redirects")))
    }

    /// The Authorization header a challenge asks for.
    async fn authenticate(&self, challenge: &str) -> Result<String, PullError> {
        let scheme = challenge
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if scheme == "basic" {
            return self.basic().ok_or_else(|| {
                PullError::Unauthorized(
                    "the registry requires credentials: add an imagePullSecret".into(),
                )
            });
        }
        if scheme != "bearer" {
            return Err(PullError::Unauthorized(format!(
                "unsupported authentication challenge {challenge:?}"
            )));
        }
        let p = challenge_params(challenge);
        let realm = p
            .get("realm")
            .ok_or_else(|| PullError::Failed("a bearer challenge without a realm".into()))?;
        let mut url = format!("{realm}?");
        if let Some(s) = p.get("service") {
            url.push_str(&format!("service={s}&"));
        }
        url.push_str(&format!("scope=repository:{}:pull", self.repository));
        let resp = self
            .send(&url, "application/json", self.basic().as_deref())
            .await?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map_err(failed)?.to_bytes();
        if !status.is_success() {
            return Err(PullError::Unauthorized(format!(
                "the token service {realm} answered {status}"
            )));
        }
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(failed)?;
        let token = v["token"]
            .as_str()
            .or(v["access_token"].as_str())
            .ok_or_else(|| PullError::Failed("the token service sent no token".into()))?;
        Ok(format!("Bearer {token}"))
    }
}

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// Blobs downloaded into the store.
struct StoreBlobs<'a>(&'a ImageStore);

impl BlobSource for StoreBlobs<'_> {
    fn open(&mut self, desc: &Descriptor) -> anyhow::Result<Box<dyn std::io::Read + '_>> {
        Ok(Box::new(std::fs::File::open(
            self.0.blob_path(&desc.digest)?,
        )?))
    }
}

/// Downloads a blob into the store (unless there already), checking its digest.
async fn fetch_blob(
    s: &mut Session,
    store: &ImageStore,
    repository: &str,
    desc: &Descriptor,
) -> Result<Bytes, PullError> {
    let path = store.blob_path(&desc.digest).map_err(failed)?;
    if let Ok(bytes) = std::fs::read(&path)
        && digest_of(&bytes) == desc.digest
    {
        return Ok(Bytes::from(bytes));
    }
    let bytes = s
        .get(&format!("/v2/{repository}/blobs/{}", desc.digest), "*/*")
        .await?;
    if digest_of(&bytes) != desc.digest {
        return Err(PullError::Failed(format!(
            "blob {} arrived with another digest: corrupt or tampered",
            desc.digest
        )));
    }
    // Two pulls of one blob at once each write their own file; the rename picks one.
    let tmp = path.with_extension(format!("partial-{}", rand::random::<u64>()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(failed)?;
    Ok(bytes)
}

/// Pulls `reference` into the store. `progress` hears about each layer.
pub async fn pull(
    store: Arc<ImageStore>,
    reference: &str,
    credentials: Option<Credentials>,
    insecure: &[String],
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<Image, PullError> {
    let r = Reference::parse(reference).map_err(PullError::InvalidReference)?;
    let host = if r.registry == super::reference::DEFAULT_REGISTRY {
        "registry-1.docker.io".to_string()
    } else {
        r.registry.clone()
    };
    let scheme = if plain_http(&r.registry, insecure) {
        "http"
    } else {
        "https"
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(Connector { http });
    let mut s = Session {
        client: Client::builder(TokioExecutor::new()).build(https),
        base: format!("{scheme}://{host}"),
        repository: r.repository.clone(),
        credentials,
        authorization: None,
    };
    let accept = [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST].join(", ");
    let body = s
        .get(
            &format!("/v2/{}/manifests/{}", r.repository, r.object()),
            &accept,
        )
        .await?;
    let mut digest = digest_of(&body);
    if let Some(d) = &r.digest
        && *d != digest
    {
        return Err(PullError::Failed(format!(
            "the registry sent a manifest with digest {digest}, not {d}"
        )));
    }
    let mut manifest: Document = serde_json::from_slice(&body).map_err(failed)?;
    if manifest.manifests.is_some() {
        let pick = manifest
            .pick_platform()
            .cloned()
            .ok_or_else(|| PullError::NotFound(format!("{reference} has no linux/amd64 image")))?;
        let body = s
            .get(
                &format!("/v2/{}/manifests/{}", r.repository, pick.digest),
                &accept,
            )
            .await?;
        if digest_of(&body) != pick.digest {
            return Err(PullError::Failed(format!(
                "manifest {} arrived with another digest",
                pick.digest
            )));
        }
        digest = pick.digest.clone();
        manifest = serde_json::from_slice(&body).map_err(failed)?;
    }
    let config = manifest
        .config
        .clone()
        .ok_or_else(|| PullError::Failed("the manifest has no config".into()))?;
    let config_bytes = fetch_blob(&mut s, &store, &r.repository, &config).await?;
    let diff_ids = serde_json::from_slice::<super::manifest::ImageConfigBlob>(&config_bytes)
        .map_err(|e| PullError::Failed(format!("parsing the image configuration: {e}")))?
        .rootfs
        .map(|r| r.diff_ids)
        .unwrap_or_default();
    let layers = manifest.layers.clone().unwrap_or_default();
    for (i, desc) in layers.iter().enumerate() {
        // Layers already unpacked (shared with another image) are not fetched again.
        if diff_ids
            .get(i)
            .and_then(|d| store.layer_dir(d).ok())
            .is_some_and(|d| d.exists())
        {
            continue;
        }
        progress(&format!(
            "pulling layer {}/{}: {} ({} bytes)",
            i + 1,
            layers.len(),
            desc.digest,
            desc.size
        ));
        fetch_blob(&mut s, &store, &r.repository, desc).await?;
    }
    let names = if r.tag.is_some() {
        vec![r.to_string()]
    } else {
        Vec::new()
    };
    let repo_digest = format!("{}@{digest}", r.name());
    let store2 = store.clone();
    let image = tokio::task::spawn_blocking(move || {
        store2.add(
            &names,
            &[repo_digest],
            &manifest,
            &mut StoreBlobs(&store2),
            &mut |_| {},
        )
    })
    .await
    .map_err(failed)?
    .map_err(|e| PullError::Failed(format!("{e:#}")))?;
    // The unpacked layers are what containers use; the compressed copies can go.
    for l in layers {
        if let Ok(p) = store.blob_path(&l.digest) {
            let _ = std::fs::remove_file(p);
        }
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_insecure_registries_use_plain_http() {
        assert!(plain_http("127.0.0.1:5000", &[]));
        assert!(plain_http("localhost:5000", &[]));
        assert!(plain_http("[::1]:5000", &[]));
        assert!(!plain_http("registry.example.com", &[]));
        assert!(plain_http(
            "registry.example.com:5000",
            &["registry.example.com:5000".into()]
        ));
    }

    #[test]
    fn bearer_challenges_are_parsed() {
        let p = challenge_params(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull""#,
        );
        assert_eq!(p["realm"], "https://auth.example.com/token");
        assert_eq!(p["service"], "registry.example.com");
    }
}
