//! The agent's load balancer over the cluster's API servers, as k3s's agent runs one: the
//! agent's clients talk to `https://127.0.0.1:PORT`, and each connection is forwarded to a
//! healthy server. The list of servers starts with the one the agent was given and follows
//! the `kubernetes` Service's EndpointSlice, which lists every live server. Servers are
//! probed every second; when the one in use stops answering, the connections through it are
//! closed so that watches and requests reconnect to another within seconds.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::net::{TcpListener, TcpStream};

/// How long connecting to a server may take before another is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often servers are probed.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Default)]
struct State {
    /// The servers, the one the agent was given first.
    servers: Vec<SocketAddr>,
    /// Servers whose last probe failed.
    down: std::collections::HashSet<SocketAddr>,
    /// The server new connections go to while it is up.
    current: Option<SocketAddr>,
    /// The open connections through each server, to close when it goes down.
    connections: HashMap<SocketAddr, Vec<tokio::task::AbortHandle>>,
}

impl State {
    /// The servers to try, in order: the current one while it is up, then the others that
    /// are up, then the rest.
    fn candidates(&self) -> Vec<SocketAddr> {
        let mut order: Vec<SocketAddr> = self.current.into_iter().collect();
        order.extend(self.servers.iter().filter(|s| !self.down.contains(s)));
        order.extend(self.servers.iter().filter(|s| self.down.contains(s)));
        order.dedup();
        let mut seen = std::collections::HashSet::new();
        order.retain(|s| seen.insert(*s));
        order
    }
}

/// A running load balancer; cloning shares it.
#[derive(Clone)]
pub struct Balancer {
    state: Arc<Mutex<State>>,
    local: SocketAddr,
}

impl Balancer {
    /// Listens on a free loopback port and forwards to `server` (until the list grows).
    pub async fn start(server: SocketAddr) -> std::io::Result<Balancer> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), server).await
    }

    /// Listens on `listen` (port 0: a free one) and forwards to `server` (until the list
    /// grows).
    pub async fn start_on(listen: SocketAddr, server: SocketAddr) -> std::io::Result<Balancer> {
        let listener = TcpListener::bind(listen).await?;
        let balancer = Balancer {
            state: Arc::new(Mutex::new(State {
                servers: vec![server],
                current: Some(server),
                ..Default::default()
            })),
            local: listener.local_addr()?,
        };
        tokio::spawn(balancer.clone().accept(listener));
        tokio::spawn(balancer.clone().probe());
        Ok(balancer)
    }

    /// The URL the agent's clients use.
    pub fn url(&self) -> String {
        format!("https://{}", self.local)
    }

    /// The servers known now.
    pub fn servers(&self) -> Vec<SocketAddr> {
        self.lock().servers.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the list of servers (the first one given at start stays, as a last resort).
    pub fn set_servers(&self, mut servers: Vec<SocketAddr>) {
        let mut state = self.lock();
        if let Some(first) = state.servers.first().copied()
            && !servers.contains(&first)
        {
            servers.push(first);
        }
        if state.servers != servers {
            tracing::info!(?servers, "API servers changed");
            state.servers = servers;
        }
    }

    async fn accept(self, listener: TcpListener) {
        loop {
            let (inbound, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "load balancer: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let this = self.clone();
            tokio::spawn(async move { this.forward(inbound).await });
        }
    }

    /// Connects `inbound` to the first server that answers.
    async fn forward(self, mut inbound: TcpStream) {
        let candidates = self.lock().candidates();
        for server in candidates {
            let outbound =
                match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(server)).await {
                    Ok(Ok(s)) => s,
                    _ => {
                        self.mark(server, false);
                        continue;
                    }
                };
            let _ = outbound.set_nodelay(true);
            let _ = inbound.set_nodelay(true);
            let task = tokio::spawn(async move {
                let mut outbound = outbound;
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
            {
                let mut state = self.lock();
                if state.current != Some(server) {
                    tracing::info!(%server, "API server in use");
                    state.current = Some(server);
                }
                let list = state.connections.entry(server).or_default();
                list.retain(|h| !h.is_finished());
                list.push(task.abort_handle());
            }
            return;
        }
        tracing::warn!("no API server answers");
    }

    /// Records a probe's result; a server that went down has its connections closed.
    fn mark(&self, server: SocketAddr, up: bool) {
        let mut state = self.lock();
        if up {
            if state.down.remove(&server) {
                tracing::info!(%server, "API server answers again");
            }
            return;
        }
        if state.down.insert(server) {
            tracing::warn!(%server, "API server does not answer; moving to another");
        }
        if state.current == Some(server) {
            state.current = None;
        }
        for handle in state.connections.remove(&server).unwrap_or_default() {
            handle.abort();
        }
    }

    async fn probe(self) {
        loop {
            tokio::time::sleep(PROBE_INTERVAL).await;
            let servers = self.servers();
            let probes = servers.iter().map(|s| async move {
                let up = matches!(
                    tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(s)).await,
                    Ok(Ok(_))
                );
                (*s, up)
            });
            for (server, up) in futures::future::join_all(probes).await {
                self.mark(server, up);
            }
        }
    }
}

/// Keeps the balancer's servers in step with the `kubernetes` Service's EndpointSlice in
/// `default` (every live server, on the slice's port).
pub async fn follow_servers(client: kube::Client, balancer: Balancer) {
    let api: Api<EndpointSlice> = Api::namespaced(client, "default");
    let config = watcher::Config::default().fields("metadata.name=kubernetes");
    let mut stream = std::pin::pin!(watcher(api, config).default_backoff().applied_objects());
    while let Some(event) = stream.next().await {
        let slice = match event {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "watching the kubernetes EndpointSlice");
                continue;
            }
        };
        let servers = servers_of(&slice);
        if !servers.is_empty() {
            balancer.set_servers(servers);
        }
    }
}

/// The ready servers an EndpointSlice lists, on its https port.
fn servers_of(slice: &EndpointSlice) -> Vec<SocketAddr> {
    let port = slice
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("https"))
        .or_else(|| slice.ports.iter().flatten().next())
        .and_then(|p| p.port)
        .and_then(|p| u16::try_from(p).ok());
    let Some(port) = port else {
        return Vec::new();
    };
    slice
        .endpoints
        .iter()
        .flatten()
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
        .flat_map(|e| e.addresses.iter())
        .filter_map(|a| a.parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, port))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_prefer_the_current_then_the_live_servers() {
        let a: SocketAddr = "10.0.0.1:6443".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:6443".parse().unwrap();
        let c: SocketAddr = "10.0.0.3:6443".parse().unwrap();
        let mut state = State {
            servers: vec![a, b, c],
            current: Some(b),
            ..Default::default()
        };
        assert_eq!(state.candidates(), vec![b, a, c]);
        state.current = None;
        state.down.insert(a);
        assert_eq!(state.candidates(), vec![b, c, a]);
    }

    #[test]
    fn servers_come_from_the_slices_ready_endpoints() {
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "kubernetes"}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": true}},
                          {"addresses": ["10.0.0.2"], "conditions": {"ready": false}},
                          {"addresses": ["10.0.0.3"]}],
            "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
        }))
        .unwrap();
        assert_eq!(
            servers_of(&slice),
            vec![
                "10.0.0.1:6443".parse::<SocketAddr>().unwrap(),
                "10.0.0.3:6443".parse().unwrap()
            ]
        );
    }
}
