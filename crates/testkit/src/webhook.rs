//! A small HTTPS server for admission webhook and aggregated API tests: a self-signed
//! certificate for the names it is asked for (its PEM is the `caBundle`), HTTP/1.1 with
//! keep-alive, every request recorded, each answered by the test's handler. It speaks the
//! AdmissionReview JSON exactly as Kubernetes' documentation shows it
//! (<https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/>).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

/// One request the server received.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Header names in lower case; repeated headers joined with `,`.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    /// The body as JSON (null if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// What the handler answers.
pub enum Reply {
    /// 200 with a JSON body.
    Json(Value),
    /// Any status with a body.
    Raw(u16, &'static str, String),
    /// Never answers (until the client gives up).
    Hang,
}

type Handler = dyn Fn(&Received) -> Reply + Send + Sync;

/// A running server; dropping it stops it.
pub struct Server {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    pub port: u16,
    /// The certificate's PEM.
    pub ca_pem: String,
    /// What was received, in order.
    pub received: Arc<Mutex<Vec<Received>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Server {
    /// Starts on a free port of `bind` (an address such as `127.0.0.1`), with a certificate
    /// for `names` (DNS names or IP addresses) besides `localhost` and 127.0.0.1.
    pub fn start(
        bind: &str,
        names: &[&str],
        handler: impl Fn(&Received) -> Reply + Send + Sync + 'static,
    ) -> Server {
        let (cert, key) = certificate(names);
        let listener = TcpListener::bind(format!("{bind}:0")).expect("bind");
        Self::serve_on(listener, &cert, &key, Arc::new(handler))
    }

    /// Starts on `addr` (`0.0.0.0:8443` …) with a given certificate and key (PEM).
    pub fn start_with_certificate(
        addr: &str,
        cert_pem: &str,
        key_pem: &str,
        handler: impl Fn(&Received) -> Reply + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind(addr).expect("bind");
        Self::serve_on(listener, cert_pem, key_pem, Arc::new(handler))
    }

    /// [`Server::start`] that takes only clients with a certificate signed by `client_ca`
    /// (PEM): an aggregated API server trusting the request-header CA.
    pub fn start_for_clients_of(
        bind: &str,
        names: &[&str],
        client_ca: &str,
        handler: impl Fn(&Received) -> Reply + Send + Sync + 'static,
    ) -> Server {
        let (cert, key) = certificate(names);
        let listener = TcpListener::bind(format!("{bind}:0")).expect("bind");
        Self::serve_with(listener, &cert, &key, Some(client_ca), Arc::new(handler))
    }

    fn serve_on(
        listener: TcpListener,
        cert_pem: &str,
        key_pem: &str,
        handler: Arc<Handler>,
    ) -> Server {
        Self::serve_with(listener, cert_pem, key_pem, None, handler)
    }

    fn serve_with(
        listener: TcpListener,
        cert_pem: &str,
        key_pem: &str,
        client_ca: Option<&str>,
        handler: Arc<Handler>,
    ) -> Server {
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let config = Arc::new(server_config(cert_pem, key_pem, client_ca));
        let received = Arc::new(Mutex::new(Vec::new()));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.spawn(serve(listener, config, handler, received.clone()));
        Server {
            url: format!("https://127.0.0.1:{port}"),
            port,
            ca_pem: cert_pem.to_string(),
            received,
            runtime: Some(runtime),
        }
    }

    /// The certificate as a webhook's `caBundle` (base64 of the PEM).
    pub fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.ca_pem)
    }

    /// What was received so far.
    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A self-signed certificate and its key (PEM) for `names`, `localhost` and 127.0.0.1.
pub fn certificate(names: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("TLS key");
    let mut dns = vec!["localhost".to_string()];
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("cert params");
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
    for n in names {
        match n.parse::<std::net::IpAddr>() {
            Ok(ip) => params.subject_alt_names.push(rcgen::SanType::IpAddress(ip)),
            Err(_) => dns.push(n.to_string()),
        }
    }
    for d in dns {
        params
            .subject_alt_names
            .push(rcgen::SanType::DnsName(d.try_into().expect("DNS name")));
    }
    let cert = params.self_signed(&key).expect("self-signed certificate");
    (cert.pem(), key.serialize_pem())
}

fn server_config(cert_pem: &str, key_pem: &str, client_ca: Option<&str>) -> rustls::ServerConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("certificate PEM");
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .expect("key PEM")
        .expect("a key");
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions");
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pemfile::certs(&mut ca.as_bytes()) {
                roots.add(c.expect("client CA PEM")).expect("client CA");
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).expect("TLS config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

async fn serve(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    handler: Arc<Handler>,
    received: Arc<Mutex<Vec<Received>>>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    while let Ok((tcp, _)) = listener.accept().await {
        let _ = tcp.set_nodelay(true);
        let (acceptor, handler, received) = (acceptor.clone(), handler.clone(), received.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (handler, received) = (handler.clone(), received.clone());
                    async move {
                        Ok::<_, std::convert::Infallible>(answer(req, &*handler, &received).await)
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        });
    }
}

async fn answer(
    req: http::Request<hyper::body::Incoming>,
    handler: &Handler,
    received: &Mutex<Vec<Received>>,
) -> http::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let mut headers = BTreeMap::new();
    for (k, v) in &parts.headers {
        let v = String::from_utf8_lossy(v.as_bytes()).to_string();
        headers
            .entry(k.as_str().to_string())
            .and_modify(|e: &mut String| {
                e.push(',');
                e.push_str(&v);
            })
            .or_insert(v);
    }
    let r = Received {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        headers,
        body,
    };
    if let Ok(mut l) = received.lock() {
        l.push(r.clone());
    }
    let (status, ct, body) = match handler(&r) {
        Reply::Json(v) => (200, "application/json", v.to_string()),
        Reply::Raw(code, ct, text) => (code, ct, text),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            (504, "text/plain", String::new())
        }
    };
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, ct)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

/// The AdmissionReview answering `review` (as a webhook's handler got it): allowed or not,
/// with more response fields (`status`, `patch` …) merged in.
pub fn review_response(review: &Value, allowed: bool, more: Value) -> Value {
    let mut response = json!({"uid": review["request"]["uid"], "allowed": allowed});
    if let Value::Object(m) = more {
        for (k, v) in m {
            response[k] = v;
        }
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

/// A JSON patch as a response's `patch` field (base64).
pub fn patch_field(patch: &Value) -> Value {
    json!(base64::engine::general_purpose::STANDARD.encode(patch.to_string()))
}
