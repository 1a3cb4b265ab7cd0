//! Calling a webhook: the address (a `url`, or a `service` resolved by the upstream resolver
//! to a ready endpoint), TLS verified against the hook's `caBundle` with the name
//! `<service>.<namespace>.svc`, HTTP/1.1 POST of the AdmissionReview with `?timeout=`, and
//! kept-alive connections reused across calls.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use serde_json::Value;

use super::config::{Hook, Target};
use crate::registry::Registry;

/// Where one call goes.
struct Endpoint {
    addr: SocketAddr,
    /// The name the certificate must carry (and the Host header).
    server_name: String,
    host_header: String,
    /// The path and query sent.
    path: String,
    /// The URL as errors show it.
    shown: String,
}

type Pool = HashMap<(SocketAddr, String, usize), Vec<SendRequest<Full<Bytes>>>>;

/// Calls webhooks, keeping connections and resolved services for reuse.
#[derive(Default)]
pub struct Caller {
    pool: Mutex<Pool>,
    resolver: crate::upstream::Resolver,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Caller {
    /// POSTs `body` (an AdmissionReview) to the hook and returns the decoded answer, or the
    /// reason the call failed (as kube-apiserver words it, after `failed calling webhook`).
    pub async fn call(
        &self,
        registry: &Registry,
        hook: &Hook,
        body: Vec<u8>,
    ) -> Result<Value, String> {
        let timeout = hook.timeout;
        let ep = self
            .endpoint(registry, hook)
            .await
            .map_err(|e| format!("failed to call webhook: {e}"))?;
        let post = |e: &dyn std::fmt::Display| {
            format!("failed to call webhook: Post \"{}\": {e}", ep.shown)
        };
        let answer = tokio::time::timeout(timeout, self.post(hook, &ep, body)).await;
        let (status, bytes) = match answer {
            Err(_) => return Err(post(&"context deadline exceeded")),
            Ok(Err(e)) => return Err(post(&e)),
            Ok(Ok(a)) => a,
        };
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            let message = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| {
                    if status.is_server_error() {
                        format!(
                            "an error on the server (\"{}\") has prevented the request from succeeding",
                            text.trim()
                        )
                    } else {
                        format!("the server responded with the status code {} but did not return more information", status.as_u16())
                    }
                });
            return Err(format!("failed to call webhook: {message}"));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("failed to call webhook: {e}"))
    }

    async fn post(
        &self,
        hook: &Hook,
        ep: &Endpoint,
        body: Vec<u8>,
    ) -> Result<(http::StatusCode, Bytes), String> {
        let key = (
            ep.addr,
            ep.server_name.clone(),
            std::sync::Arc::as_ptr(&hook.client.tls) as usize,
        );
        let mut sender = match self.pooled(&key) {
            Some(s) => s,
            None => crate::upstream::connect(&hook.client.tls, ep.addr, &ep.server_name).await?,
        };
        let req = http::Request::post(&ep.path)
            .header(http::header::HOST, &ep.host_header)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json, */*")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let mut pool = lock(&self.pool);
        let idle = pool.entry(key).or_default();
        if idle.len() < 64 {
            idle.push(sender);
        }
        Ok((status, bytes))
    }

    fn pooled(&self, key: &(SocketAddr, String, usize)) -> Option<SendRequest<Full<Bytes>>> {
        let mut pool = lock(&self.pool);
        let idle = pool.get_mut(key)?;
        while let Some(s) = idle.pop() {
            if !s.is_closed() && s.is_ready() {
                return Some(s);
            }
        }
        None
    }

    async fn endpoint(&self, registry: &Registry, hook: &Hook) -> Result<Endpoint, String> {
        let secs = hook.timeout.as_secs().max(1);
        match &hook.client.target {
            Target::Url(url) => {
                let uri: http::Uri = url.parse().map_err(|e| format!("Unparsable URL: {e}"))?;
                let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
                let port = uri.port_u16().unwrap_or(443);
                let addr = tokio::net::lookup_host((host, port))
                    .await
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| format!("dial tcp: lookup {host}: no such host"))?;
                let path = uri.path();
                let path = format!("{path}?timeout={secs}s");
                Ok(Endpoint {
                    addr,
                    server_name: host.to_string(),
                    host_header: uri.authority().map(|a| a.to_string()).unwrap_or_default(),
                    shown: format!(
                        "https://{}{}",
                        uri.authority().map(|a| a.as_str()).unwrap_or(host),
                        path
                    ),
                    path,
                })
            }
            Target::Service {
                namespace,
                name,
                path,
                port,
            } => {
                let addr = self.resolver.pick(registry, namespace, name, *port).await?;
                let host = format!("{name}.{namespace}.svc");
                let path = format!(
                    "{}?timeout={secs}s",
                    if path.is_empty() { "/" } else { path }
                );
                Ok(Endpoint {
                    addr,
                    shown: format!("https://{host}:{port}{path}"),
                    host_header: format!("{host}:{port}"),
                    server_name: host,
                    path,
                })
            }
        }
    }
}
