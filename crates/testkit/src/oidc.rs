//! A minimal OpenID Connect identity provider for authentication tests: it serves its
//! discovery document and signing keys over HTTPS on loopback (a self-signed certificate the
//! test hands to the API server as the issuer's CA) and signs ID tokens with a real ECDSA
//! P-256 key pair.

use std::net::TcpListener;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// A running identity provider; dropping it stops the server.
pub struct Provider {
    /// The issuer URL (`https://127.0.0.1:PORT`), the `iss` of its tokens.
    pub issuer: String,
    /// The PEM certificate its HTTPS server presents (the API server's
    /// `certificateAuthority` for it).
    pub ca_pem: String,
    key: rcgen::KeyPair,
    runtime: Option<tokio::runtime::Runtime>,
}

const KEY_ID: &str = "test-key-1";

impl Provider {
    /// Starts the provider on a free loopback port.
    pub fn start() -> Provider {
        let key = rcgen::KeyPair::generate().expect("signing key");
        let tls_key = rcgen::KeyPair::generate().expect("TLS key");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("cert params");
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
        let cert = params
            .self_signed(&tls_key)
            .expect("self-signed certificate");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let issuer = format!(
            "https://127.0.0.1:{}",
            listener.local_addr().expect("addr").port()
        );
        let raw = key.public_key_raw();
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": KEY_ID,
            "x": URL_SAFE_NO_PAD.encode(&raw[1..33]), "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
        }]});
        let discovery = json!({
            "issuer": issuer, "jwks_uri": format!("{issuer}/keys"),
            "response_types_supported": ["id_token"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        });
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(tls_key.serialize_der().into()),
            )
            .expect("TLS config");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.spawn(serve(
            listener,
            Arc::new(config),
            discovery.to_string(),
            jwks.to_string(),
        ));
        Provider {
            issuer,
            ca_pem: cert.pem(),
            key,
            runtime: Some(runtime),
        }
    }

    /// An ID token with `claims` (`iss` and `exp` added unless given), signed with the
    /// provider's key.
    pub fn token(&self, claims: Value) -> String {
        sign(&self.key, self.with_defaults(claims))
    }

    /// A token like [`Provider::token`]'s but signed with another key under the same key id:
    /// its signature does not verify.
    pub fn forged_token(&self, claims: Value) -> String {
        sign(
            &rcgen::KeyPair::generate().expect("key"),
            self.with_defaults(claims),
        )
    }

    fn with_defaults(&self, mut claims: Value) -> Value {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if claims.get("iss").is_none() {
            claims["iss"] = json!(self.issuer);
        }
        if claims.get("exp").is_none() {
            claims["exp"] = json!(now + 600);
        }
        if claims.get("iat").is_none() {
            claims["iat"] = json!(now);
        }
        claims
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn sign(key: &rcgen::KeyPair, claims: Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(KEY_ID.into());
    let encoding = EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).expect("EC key");
    jsonwebtoken::encode(&header, &claims, &encoding).expect("sign")
}

/// Answers `/.well-known/openid-configuration` and `/keys` over TLS, HTTP/1.1, one request
/// per connection.
async fn serve(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    discovery: String,
    jwks: String,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    while let Ok((tcp, _)) = listener.accept().await {
        let (acceptor, discovery, jwks) = (acceptor.clone(), discovery.clone(), jwks.clone());
        tokio::spawn(async move {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&request);
            let path = line.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = match path {
                "/.well-known/openid-configuration" => ("200 OK", discovery),
                "/keys" => ("200 OK", jwks),
                _ => ("404 Not Found", "{}".to_string()),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.write_all(resp.as_bytes()).await;
            let _ = tls.shutdown().await;
        });
    }
}
