//! Reaching servers the API server calls out to (admission webhooks, aggregated APIs): a
//! Service resolved through its EndpointSlices to ready endpoints (so that servers in pods
//! answer), and TLS connections speaking HTTP/1.1.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tug_api::catalog;
use tug_api::validation::field::items;

use crate::registry::{ListOptions, Registry};

/// Resolved services' endpoints by (namespace, name, port), with when they were resolved.
type Resolved = HashMap<(String, String, u16), (Vec<SocketAddr>, Instant)>;

/// Resolves Services to their ready endpoints, remembering each answer for a second.
#[derive(Default)]
pub struct Resolver {
    resolved: Mutex<Resolved>,
    next: std::sync::atomic::AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Resolver {
    /// One ready endpoint of the service's port, taken in turn.
    pub async fn pick(
        &self,
        registry: &Registry,
        namespace: &str,
        name: &str,
        port: u16,
    ) -> Result<SocketAddr, String> {
        let addrs = self.resolve(registry, namespace, name, port).await?;
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(addrs[i % addrs.len()])
    }

    /// The ready endpoints of a service's port, from its EndpointSlices.
    pub async fn resolve(
        &self,
        registry: &Registry,
        namespace: &str,
        name: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, String> {
        let key = (namespace.to_string(), name.to_string(), port);
        if let Some((addrs, at)) = lock(&self.resolved).get(&key)
            && at.elapsed() < Duration::from_secs(1)
        {
            return Ok(addrs.clone());
        }
        let services = catalog::lookup("", "v1", "services").ok_or("services are not served")?;
        let slices = catalog::lookup("discovery.k8s.io", "v1", "endpointslices")
            .ok_or("endpointslices are not served")?;
        let svc = registry
            .get(services, Some(namespace), name)
            .await
            .map_err(|_| format!("service \"{name}\" not found"))?;
        let svc_port = items(&svc["spec"], "ports")
            .iter()
            .find(|p| p["port"].as_u64() == Some(u64::from(port)))
            .ok_or_else(|| format!("no service port {port} found for service \"{name}\""))?;
        let port_name = svc_port["name"].as_str().unwrap_or("");
        let list = registry
            .list(
                slices,
                Some(namespace),
                &ListOptions {
                    label_selector: format!("kubernetes.io/service-name={name}"),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| e.message)?;
        let mut addrs = Vec::new();
        for slice in items(&list, "items") {
            let Some(target) = items(slice, "ports")
                .iter()
                .find(|p| p["name"].as_str().unwrap_or("") == port_name)
                .and_then(|p| p["port"].as_u64())
                .and_then(|p| u16::try_from(p).ok())
            else {
                continue;
            };
            for e in items(slice, "endpoints") {
                if e.pointer("/conditions/ready") == Some(&Value::Bool(false)) {
                    continue;
                }
                if let Some(ip) = e
                    .pointer("/addresses/0")
                    .and_then(Value::as_str)
                    .and_then(|a| a.parse::<std::net::IpAddr>().ok())
                {
                    addrs.push(SocketAddr::new(ip, target));
                }
            }
        }
        if addrs.is_empty() {
            return Err(format!("no endpoints available for service \"{name}\""));
        }
        lock(&self.resolved).insert(key, (addrs.clone(), Instant::now()));
        Ok(addrs)
    }
}

/// A new TLS connection to `addr` (verified as `server_name`), HTTP/1.1 over it.
pub async fn connect(
    tls: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    server_name: &str,
) -> Result<SendRequest<Full<Bytes>>, String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| {
        format!(
            "dial tcp {}: connect: {}",
            addr,
            lower_first(&e.to_string())
        )
    })?;
    let _ = tcp.set_nodelay(true);
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
        .map_err(|e| format!("invalid server name {:?}: {e}", server_name))?;
    let tls = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Go's wording of connection errors: `connection refused`, not `Connection refused (os error 111)`.
fn lower_first(text: &str) -> String {
    let text = text.split(" (os error").next().unwrap_or(text);
    let mut c = text.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}
