//! TLS bootstrapping, as kubelets do it: with the join token, the agent asks the API server
//! for a client certificate (`CN=system:node:<name>, O=system:nodes`, signer
//! `kubernetes.io/kube-apiserver-client-kubelet`) and a serving certificate for its kubelet
//! API (signer `kubernetes.io/kubelet-serving`) through CertificateSigningRequests, waits for
//! them to be approved and signed, and keeps them in its data dir for the next start.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, PostParams};
use serde_json::json;

/// A certificate and its key, PEM.
#[derive(Clone, Debug)]
pub struct KeyAndCert {
    pub cert: String,
    pub key: String,
}

/// The node's certificates.
#[derive(Clone, Debug)]
pub struct NodeCerts {
    /// For talking to the API server.
    pub client: KeyAndCert,
    /// For serving the kubelet API.
    pub serving: KeyAndCert,
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// Loads the node's certificates from `dir`, or requests them with `client` (authenticated
/// with the join token) and saves them there.
pub async fn node_certs(
    client: &kube::Client,
    node: &str,
    sans: &[String],
    dir: &Path,
) -> anyhow::Result<NodeCerts> {
    std::fs::create_dir_all(dir)?;
    let client_pair = obtain(client, node, &[], dir, "kubelet-client", false).await?;
    let serving = obtain(client, node, sans, dir, "kubelet-serving", true).await?;
    Ok(NodeCerts {
        client: client_pair,
        serving,
    })
}

async fn obtain(
    client: &kube::Client,
    node: &str,
    sans: &[String],
    dir: &Path,
    file: &str,
    server: bool,
) -> anyhow::Result<KeyAndCert> {
    let (cert_path, key_path) = (
        dir.join(format!("{file}.crt")),
        dir.join(format!("{file}.key")),
    );
    if let (Ok(cert), Ok(key)) = (
        std::fs::read_to_string(&cert_path),
        std::fs::read_to_string(&key_path),
    ) {
        return Ok(KeyAndCert { cert, key });
    }
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    params.subject_alt_names = sans
        .iter()
        .map(|s| match s.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(rcgen::SanType::IpAddress(ip)),
            Err(_) => s.clone().try_into().map(rcgen::SanType::DnsName),
        })
        .collect::<Result<_, _>>()?;
    let request = params.serialize_request(&key)?.pem()?;
    let (signer, usages) = if server {
        (
            "kubernetes.io/kubelet-serving",
            json!(["digital signature", "server auth"]),
        )
    } else {
        (
            "kubernetes.io/kube-apiserver-client-kubelet",
            json!(["digital signature", "client auth"]),
        )
    };
    let suffix: u32 = rand_suffix();
    let name = format!("node-{node}-{file}-{suffix:08x}");
    let csr: CertificateSigningRequest = serde_json::from_value(json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {"request": base64::engine::general_purpose::STANDARD.encode(&request),
                 "signerName": signer, "usages": usages},
    }))?;
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let post = PostParams::default();
    match retry_unreachable(|| api.create(&post, &csr)).await {
        // A retry of a create the server had taken.
        Err(e)
            if e.downcast_ref::<kube::Error>()
                .is_some_and(|e| matches!(e, kube::Error::Api(s) if s.code == 409)) => {}
        r => {
            r?;
        }
    }
    tracing::info!(csr = %name, signer, "requested a node certificate; waiting for approval");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = retry_unreachable(|| api.get(&name)).await?;
        let status = got.status.unwrap_or_default();
        if let Some(c) = status
            .conditions
            .unwrap_or_default()
            .iter()
            .find(|c| c.type_ == "Denied" || c.type_ == "Failed")
        {
            anyhow::bail!(
                "certificate request {name} was {}: {}",
                c.type_.to_lowercase(),
                c.message.clone().unwrap_or_default()
            );
        }
        if let Some(cert) = status.certificate {
            let cert = String::from_utf8_lossy(&cert.0).to_string();
            let key_pem = key.serialize_pem();
            write_private(&key_path, &key_pem)?;
            std::fs::write(&cert_path, &cert)?;
            return Ok(KeyAndCert { cert, key: key_pem });
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "certificate request {name} was not approved within 2 minutes: is the server's \
                 controller manager running?"
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// How long a node keeps trying to reach an API server it cannot connect to before giving up.
const UNREACHABLE_LIMIT: Duration = Duration::from_secs(300);

/// Runs `call` until the server answers (a success or an API error), retrying with backoff
/// while it cannot be reached, as the kubelet keeps trying its bootstrap: a node may start
/// before its server, or while the link to it is still coming up.
async fn retry_unreachable<T, F, Fut>(mut call: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let start = Instant::now();
    let mut pause = Duration::from_millis(500);
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e @ kube::Error::Api(_)) => return Err(e.into()),
            Err(e) if start.elapsed() < UNREACHABLE_LIMIT => {
                tracing::warn!(error = %e, retry_in = ?pause, "cannot reach the API server yet; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(10));
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "the API server could not be reached for {UNREACHABLE_LIMIT:?}: check --server \
                     and that this node can connect to it"
                )));
            }
        }
    }
}

fn rand_suffix() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ std::process::id()
}
