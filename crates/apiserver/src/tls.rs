//! Serving over TLS: the server certificate, optional client certificates signed by the
//! cluster CA (user = CN, groups = O), and HTTP/1.1 or HTTP/2 per connection.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::auth::Identity;
use crate::pki::Pki;

fn certs(pem: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<_, _>>()
        .context("parsing a PEM certificate")
}

/// A TLS server's configuration, and (for the API server) how client certificates are
/// checked once the handshake is done.
#[derive(Clone)]
pub struct TlsServer {
    config: Arc<rustls::ServerConfig>,
    /// Verifies a connection's client certificate chain after the handshake; None where the
    /// handshake itself requires a valid one (the kubelet API).
    clients: Option<Arc<dyn ClientCertVerifier>>,
}

/// The rustls configuration for the API server. Any client certificate is taken in the
/// handshake (its signature over the handshake is checked); whether the cluster CA signed
/// it, and that it is in its validity period, is checked afterwards, so a certificate from
/// another CA or an expired one is answered with 401, as kube-apiserver answers it.
pub fn server_config(pki: &Pki) -> anyhow::Result<TlsServer> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(&pki.ca_cert)? {
        roots.add(c).context("adding the cluster CA")?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .context("building the client certificate verifier")?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut pki.server_key.as_bytes())
        .context("parsing the server key")?
        .context("no private key in pki/server.key")?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_client_cert_verifier(Arc::new(DeferredClientAuth(verifier.clone())))
        .with_single_cert(certs(&pki.server_cert)?, key)
        .context("loading the server certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsServer {
        config: Arc::new(config),
        clients: Some(verifier),
    })
}

/// Asks for a client certificate and checks its handshake signature, but leaves the chain to
/// [`serve`], which turns a bad one into 401 rather than a failed handshake.
#[derive(Debug)]
struct DeferredClientAuth(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for DeferredClientAuth {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Marks a request whose connection presented a client certificate the cluster CA did not
/// sign (or one out of its validity period): unless a bearer token authenticates it, 401.
#[derive(Clone, Copy, Debug)]
pub struct ClientCertRejected;

fn roots(ca_pem: &str) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca_pem)? {
        roots.add(c).context("adding the cluster CA")?;
    }
    Ok(roots)
}

fn private_key(pem: &str) -> anyhow::Result<PrivateKeyDer<'static>> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .context("parsing a private key")?
        .context("no private key in the PEM")
}

/// A kubelet's TLS: its serving certificate, and client certificates from the cluster CA
/// required (only the API server and administrators hold those).
pub fn kubelet_server_config(
    ca_pem: &str,
    serving: &crate::pki::Issued,
) -> anyhow::Result<TlsServer> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca_pem)?), provider.clone())
            .build()
            .context("building the client certificate verifier")?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&serving.cert)?, private_key(&serving.key)?)
        .context("loading the kubelet's certificate")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsServer {
        config: Arc::new(config),
        clients: None,
    })
}

/// A TLS client trusting the cluster CA and presenting `client`'s certificate.
pub fn client_config(
    ca_pem: &str,
    client: &crate::pki::Issued,
) -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots(ca_pem)?)
        .with_client_auth_cert(certs(&client.cert)?, private_key(&client.key)?)
        .context("loading the client certificate")?;
    // The HTTPS connector sets ALPN itself.
    config.alpn_protocols.clear();
    Ok(config)
}

/// A TLS client without a certificate of its own, trusting `ca_pem` (or, without one, the
/// public web's roots), for fetching from servers such as OIDC providers.
pub fn https_client_config(ca_pem: Option<&str>) -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match ca_pem {
        Some(pem) => roots(pem)?,
        None => rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols.clear();
    Ok(config)
}

/// The identity in a verified client certificate: CN is the user, each O a group (and
/// system:authenticated).
fn identity_of(cert: &CertificateDer<'_>) -> Option<Identity> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = parsed.subject();
    let user = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())?
        .to_string();
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    // Every authenticated user is in system:authenticated, as kube-apiserver adds it.
    if !groups
        .iter()
        .any(|g| g == "system:authenticated" || g == "system:unauthenticated")
    {
        groups.push("system:authenticated".into());
    }
    Some(Identity {
        user,
        groups,
        ..Default::default()
    })
}

/// Accepts TLS connections on `listener` and serves `app` on each, until the task is dropped.
pub async fn serve(listener: TcpListener, server: TlsServer, app: Router) {
    serve_until(
        listener,
        server,
        app,
        std::future::pending(),
        Duration::ZERO,
    )
    .await;
}

/// Accepts TLS connections on `listener` and serves `app` on each until `stop` completes;
/// then stops accepting, asks every connection to close once its requests are answered
/// (HTTP/2 GOAWAY; HTTP/1 closes when idle) and returns when they all have, or after `drain`
/// (long-running requests such as watches are cut then). A server going away this way
/// answers what it took, and its clients move on at once instead of waiting for a timeout.
pub async fn serve_until(
    listener: TcpListener,
    server: TlsServer,
    app: Router,
    stop: impl std::future::Future<Output = ()>,
    drain: Duration,
) {
    let acceptor = TlsAcceptor::from(server.config.clone());
    let (closing, closed) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        while connections.try_join_next().is_some() {}
        let _ = tcp.set_nodelay(true);
        connections.spawn(connection(
            tcp,
            peer,
            acceptor.clone(),
            app.clone(),
            server.clients.clone(),
            closed.clone(),
        ));
    }
    drop(listener);
    let _ = closing.send(true);
    let open = connections.len();
    tracing::info!(
        connections = open,
        "no longer accepting; closing connections"
    );
    let drained = tokio::time::timeout(drain, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::info!(
            still_open = connections.len(),
            "cutting the connections still open (watches)"
        );
    }
}

/// Serves one connection until it ends, closing it gracefully once `closing` turns true.
async fn connection(
    tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    acceptor: TlsAcceptor,
    app: Router,
    clients: Option<Arc<dyn ClientCertVerifier>>,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let identity = tls.get_ref().1.peer_certificates().and_then(|chain| {
        let (first, rest) = chain.split_first()?;
        if let Some(v) = &clients
            && let Err(e) = v.verify_client_cert(first, rest, UnixTime::now())
        {
            tracing::debug!(%peer, error = %e, "a client certificate was refused");
            return Some(Err(ClientCertRejected));
        }
        identity_of(first).map(Ok)
    });
    let svc = app.map_request(move |req: http::Request<hyper::body::Incoming>| {
        let mut req = req.map(axum::body::Body::new);
        req.extensions_mut().insert(PeerAddr(peer));
        match &identity {
            Some(Ok(id)) => {
                req.extensions_mut().insert(id.clone());
            }
            Some(Err(rejected)) => {
                req.extensions_mut().insert(*rejected);
            }
            None => {}
        }
        req
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn =
        builder.serve_connection_with_upgrades(TokioIo::new(tls), TowerToHyperService::new(svc));
    tokio::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => Some(r),
        // Only ever changes to true (or its sender goes, which means the same).
        _ = closing.changed() => None,
    };
    let result = match ended {
        Some(r) => r,
        None => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Lets through only callers whose client certificate puts them in `group`, apart from the
/// `open` paths (any certificate of the cluster CA). The kubelet API is served this way: the
/// API server (its kubelet client is in system:masters) and cluster admins reach exec, logs
/// and stats; other nodes and users are refused with 403.
pub fn only_group(router: Router, group: &'static str, open: &'static [&'static str]) -> Router {
    router.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| async move {
            let id = req.extensions().get::<Identity>().cloned();
            let allowed = open.contains(&req.uri().path())
                || id
                    .as_ref()
                    .is_some_and(|i| i.groups.iter().any(|g| g == group));
            if allowed {
                return next.run(req).await;
            }
            let user = id
                .map(|i| i.user)
                .unwrap_or_else(|| "system:anonymous".into());
            axum::response::IntoResponse::into_response((
                http::StatusCode::FORBIDDEN,
                format!(
                    "Forbidden (user={user}, verb={}, resource=nodes, subresource=proxy)",
                    req.method().as_str().to_ascii_lowercase()
                ),
            ))
        },
    ))
}

/// The address a request's connection came from (a request extension).
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// A TLS verifier that accepts any server certificate (signatures are still checked): an
/// APIService's `insecureSkipTLSVerify`, and fetching a CA whose hash is checked afterwards.
#[derive(Debug)]
pub struct SkipVerify(pub Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
