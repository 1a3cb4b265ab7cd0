//! TLS bootstrapping, as kubelets do it: with the join token, the agent asks the API server
//! for a client certificate (`CN=system:node:<name>, O=system:nodes`, signer
//! `kubernetes.io/kube-apiserver-client-kubelet`), then, as the node, for a serving
//! certificate for its kubelet API (signer `kubernetes.io/kubelet-serving`), through
//! CertificateSigningRequests; it waits for them to be approved and signed, and keeps them in
//! its data dir for the next start.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

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

/// Loads the node's client certificate from `dir`, or requests it with `client` (the join
/// token's bootstrap identity, which may ask for node client certificates) and saves it there.
pub async fn client_cert(
    client: &kube::Client,
    node: &str,
    dir: &Path,
) -> anyhow::Result<KeyAndCert> {
    std::fs::create_dir_all(dir)?;
    obtain(client, node, &[], dir, "kubelet-client", false, true).await
}

/// Loads the kubelet API's serving certificate from `dir`, or requests it with `client` (the
/// node's own identity: serving certificates are approved only for the node itself).
pub async fn serving_cert(
    client: &kube::Client,
    node: &str,
    sans: &[String],
    dir: &Path,
) -> anyhow::Result<KeyAndCert> {
    std::fs::create_dir_all(dir)?;
    obtain(client, node, sans, dir, "kubelet-serving", true, true).await
}

async fn obtain(
    client: &kube::Client,
    node: &str,
    sans: &[String],
    dir: &Path,
    file: &str,
    server: bool,
    reuse: bool,
) -> anyhow::Result<KeyAndCert> {
    let (cert_path, key_path) = (
        dir.join(format!("{file}.crt")),
        dir.join(format!("{file}.key")),
    );
    if reuse
        && let (Ok(cert), Ok(key)) = (
            std::fs::read_to_string(&cert_path),
            std::fs::read_to_string(&key_path),
        )
        && validity(&cert).is_some_and(|(_, not_after)| not_after > SystemTime::now())
    {
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

/// The validity (notBefore, notAfter) of the first certificate in `pem`.
pub fn validity(pem: &str) -> Option<(SystemTime, SystemTime)> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = block.parse_x509().ok()?;
    let at = |t: i64| Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t).ok()?));
    let v = cert.validity();
    Some((at(v.not_before.timestamp())?, at(v.not_after.timestamp())?))
}

/// When a certificate valid from `not_before` to `not_after` is renewed: at a random point
/// between 70% and 90% of its lifetime, as the kubelet's certificate manager does.
pub fn renewal_time(not_before: SystemTime, not_after: SystemTime, jitter: f64) -> SystemTime {
    let life = not_after.duration_since(not_before).unwrap_or_default();
    not_before + life.mul_f64(0.7 + 0.2 * jitter.clamp(0.0, 1.0))
}

/// The node's client certificate as the TLS layer presents it, replaceable while the client
/// runs: connections made after a renewal present the new certificate.
#[derive(Clone, Debug)]
pub struct ClientIdentity(Arc<RwLock<Arc<rustls::sign::CertifiedKey>>>);

impl ClientIdentity {
    fn new(pair: &KeyAndCert) -> anyhow::Result<Self> {
        Ok(ClientIdentity(Arc::new(RwLock::new(certified_key(pair)?))))
    }

    fn set(&self, pair: &KeyAndCert) -> anyhow::Result<()> {
        let key = certified_key(pair)?;
        if let Ok(mut k) = self.0.write() {
            *k = key;
        }
        Ok(())
    }
}

impl rustls::client::ResolvesClientCert for ClientIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.0.read().ok().map(|k| k.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn certified_key(pair: &KeyAndCert) -> anyhow::Result<Arc<rustls::sign::CertifiedKey>> {
    let certs = rustls_pemfile::certs(&mut pair.cert.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut pair.key.as_bytes())?
        .ok_or_else(|| anyhow::anyhow!("no private key in the node's key file"))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider.key_provider.load_private_key(key)?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(certs, signing)))
}

/// An API client for `url` that trusts `ca_der` and presents the node's client certificate,
/// which [`keep_client_cert_fresh`] may replace while the client is in use.
pub fn node_client(
    url: http::Uri,
    ca_der: Vec<u8>,
    pair: &KeyAndCert,
) -> anyhow::Result<(kube::Client, ClientIdentity)> {
    use kube::client::ConfigExt;
    let identity = ClientIdentity::new(pair)?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from(ca_der))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(identity.clone()));
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    let hyper = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(https);
    let config = kube::Config::new(url);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .service(hyper);
    Ok((kube::Client::new(service, "default"), identity))
}

/// Renews the node's client certificate (in `dir`) before it expires, for ever: at 70-90% of
/// its lifetime it asks for a new one as the node itself (approved as `selfnodeclient`),
/// saves it and hands it to `identity`. A failed renewal is retried every 30 seconds.
pub async fn keep_client_cert_fresh(
    client: kube::Client,
    node: String,
    dir: std::path::PathBuf,
    identity: ClientIdentity,
    mut current: KeyAndCert,
) {
    loop {
        let Some((not_before, not_after)) = validity(&current.cert) else {
            tracing::warn!("the node's client certificate cannot be read; it will not be renewed");
            return;
        };
        let due = renewal_time(not_before, not_after, jitter());
        let wait = due.duration_since(SystemTime::now()).unwrap_or_default();
        tracing::info!(renew_in = ?wait, "node client certificate valid until {}", jiff::Timestamp::try_from(not_after).map(|t| t.to_string()).unwrap_or_default());
        tokio::time::sleep(wait).await;
        loop {
            match obtain(&client, &node, &[], &dir, "kubelet-client", false, false).await {
                Ok(pair) => match identity.set(&pair) {
                    Ok(()) => {
                        tracing::info!(node = %node, "renewed the node's client certificate");
                        current = pair;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "the renewed certificate cannot be used")
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "renewing the node's client certificate failed; retrying in 30s")
                }
            }
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    }
}

/// A number in [0, 1) that differs between nodes and runs.
fn jitter() -> f64 {
    f64::from(rand_suffix() % 10_000) / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_falls_between_70_and_90_percent_of_the_lifetime() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let end = start + Duration::from_secs(1000);
        assert_eq!(
            renewal_time(start, end, 0.0),
            start + Duration::from_secs(700)
        );
        assert_eq!(
            renewal_time(start, end, 1.0),
            start + Duration::from_secs(900)
        );
        assert_eq!(
            renewal_time(start, end, 0.5),
            start + Duration::from_secs(800)
        );
    }

    #[test]
    fn validity_reads_a_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.not_before = rcgen::date_time_ymd(2030, 1, 1);
        p.not_after = rcgen::date_time_ymd(2031, 1, 1);
        let pem = p.self_signed(&key).unwrap().pem();
        let (from, to) = validity(&pem).unwrap();
        assert_eq!(
            from.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            1_893_456_000
        );
        assert_eq!(to.duration_since(from).unwrap().as_secs(), 365 * 24 * 3600);
    }
}
