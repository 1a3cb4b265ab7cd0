//! The node's Service proxy (kube-proxy's job): watches Services and EndpointSlices and keeps
//! the node's nf_tables Service rules ([`tug_network::proxy`]) in step, one Service at a time.
//!
//! Endpoints are chosen as Kubernetes does: the ready ones; when none is ready, the ones still
//! serving while they terminate. `internalTrafficPolicy: Local` keeps ClusterIP traffic on
//! this node's endpoints, `externalTrafficPolicy: Local` NodePort traffic (which then keeps
//! its client's address).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tug_network::proxy::{PortRules, Protocol, Proxy, ServiceRules};

use crate::worker::Shared;

/// The label naming an EndpointSlice's Service.
const SERVICE_NAME: &str = "kubernetes.io/service-name";

fn key_of(ns: Option<&String>, name: &str) -> String {
    format!("{}/{name}", ns.map(String::as_str).unwrap_or("default"))
}

/// The Service an EndpointSlice belongs to, as `namespace/name`.
fn slice_service(slice: &EndpointSlice) -> Option<String> {
    let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME)?;
    Some(key_of(slice.metadata.namespace.as_ref(), name))
}

/// One endpoint address and port, with what the proxy needs to know of it.
#[derive(Clone, Copy)]
struct Candidate {
    addr: SocketAddrV4,
    ready: bool,
    serving: bool,
    terminating: bool,
    local: bool,
}

/// Kubernetes' choice: the ready endpoints, or else the serving terminating ones.
fn usable(candidates: &[Candidate], local_only: bool) -> Vec<SocketAddrV4> {
    let pool: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| !local_only || c.local)
        .collect();
    let mut chosen: Vec<SocketAddrV4> = pool.iter().filter(|c| c.ready).map(|c| c.addr).collect();
    if chosen.is_empty() {
        chosen = pool
            .iter()
            .filter(|c| c.serving && c.terminating)
            .map(|c| c.addr)
            .collect();
    }
    chosen.sort();
    chosen.dedup();
    chosen
}

/// What this node programs for a Service, given its EndpointSlices; `None` for Services
/// without a virtual IP or NodePort of their own (headless, ExternalName, IPv6-only).
pub fn rules_for<'a>(
    svc: &Service,
    slices: impl Iterator<Item = &'a EndpointSlice> + Clone,
    node_name: &str,
) -> Option<ServiceRules> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    let cluster_ip = spec
        .cluster_ip
        .as_deref()
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
    let mut ports = Vec::new();
    for sp in spec.ports.iter().flatten() {
        let protocol = Protocol::parse(sp.protocol.as_deref().unwrap_or("TCP"))?;
        let Ok(port) = u16::try_from(sp.port) else {
            continue;
        };
        let node_port = sp.node_port.and_then(|p| u16::try_from(p).ok());
        let mut candidates = Vec::new();
        for slice in slices.clone() {
            if slice.address_type != "IPv4" {
                continue;
            }
            // The slice port serving this Service port: same name and protocol.
            let Some(target) = slice.ports.iter().flatten().find(|p| {
                p.name.as_deref().unwrap_or("") == sp.name.as_deref().unwrap_or("")
                    && p.protocol.as_deref().unwrap_or("TCP")
                        == sp.protocol.as_deref().unwrap_or("TCP")
            }) else {
                continue;
            };
            let Some(target) = target.port.and_then(|p| u16::try_from(p).ok()) else {
                continue;
            };
            for ep in slice.endpoints.iter().flatten() {
                let Some(ip) = ep
                    .addresses
                    .first()
                    .and_then(|a| a.parse::<Ipv4Addr>().ok())
                else {
                    continue;
                };
                let cond = ep.conditions.as_ref();
                let ready = cond.and_then(|c| c.ready).unwrap_or(true);
                candidates.push(Candidate {
                    addr: SocketAddrV4::new(ip, target),
                    ready,
                    serving: cond.and_then(|c| c.serving).unwrap_or(ready),
                    terminating: cond.and_then(|c| c.terminating).unwrap_or(false),
                    local: ep.node_name.as_deref() == Some(node_name),
                });
            }
        }
        ports.push(PortRules {
            protocol,
            port,
            node_port,
            endpoints: usable(&candidates, internal_local),
            external_endpoints: usable(&candidates, external_local),
            external_local,
        });
    }
    if cluster_ip.is_none() && ports.iter().all(|p| p.node_port.is_none()) {
        return None;
    }
    Some(ServiceRules { cluster_ip, ports })
}

/// An event of either watch.
enum Change {
    Service(Box<watcher::Event<Service>>),
    Slice(Box<watcher::Event<EndpointSlice>>),
}

/// What the proxy knows of the cluster.
#[derive(Default)]
struct View {
    services: HashMap<String, Service>,
    /// Service key -> slice name -> slice.
    slices: HashMap<String, BTreeMap<String, EndpointSlice>>,
    /// Keys seen during a watch's initial listing, to drop what vanished meanwhile.
    listing_services: Option<HashSet<String>>,
    listing_slices: Option<HashSet<(String, String)>>,
}

impl View {
    /// Applies one event; returns the Services it touches.
    fn apply(&mut self, change: Change) -> Vec<String> {
        match change {
            Change::Service(ev) => match *ev {
                watcher::Event::Init => {
                    self.listing_services = Some(HashSet::new());
                    Vec::new()
                }
                watcher::Event::InitApply(s) | watcher::Event::Apply(s) => {
                    let key = key_of(
                        s.metadata.namespace.as_ref(),
                        s.metadata.name.as_deref().unwrap_or(""),
                    );
                    if let Some(l) = self.listing_services.as_mut() {
                        l.insert(key.clone());
                    }
                    self.services.insert(key.clone(), s);
                    vec![key]
                }
                watcher::Event::Delete(s) => {
                    let key = key_of(
                        s.metadata.namespace.as_ref(),
                        s.metadata.name.as_deref().unwrap_or(""),
                    );
                    self.services.remove(&key);
                    vec![key]
                }
                watcher::Event::InitDone => {
                    let seen = self.listing_services.take().unwrap_or_default();
                    let gone: Vec<String> = self
                        .services
                        .keys()
                        .filter(|k| !seen.contains(*k))
                        .cloned()
                        .collect();
                    for k in &gone {
                        self.services.remove(k);
                    }
                    gone
                }
            },
            Change::Slice(ev) => match *ev {
                watcher::Event::Init => {
                    self.listing_slices = Some(HashSet::new());
                    Vec::new()
                }
                watcher::Event::InitApply(s) | watcher::Event::Apply(s) => {
                    let Some(key) = slice_service(&s) else {
                        return Vec::new();
                    };
                    let name = s.metadata.name.clone().unwrap_or_default();
                    if let Some(l) = self.listing_slices.as_mut() {
                        l.insert((key.clone(), name.clone()));
                    }
                    self.slices.entry(key.clone()).or_default().insert(name, s);
                    vec![key]
                }
                watcher::Event::Delete(s) => {
                    let Some(key) = slice_service(&s) else {
                        return Vec::new();
                    };
                    let name = s.metadata.name.clone().unwrap_or_default();
                    if let Some(m) = self.slices.get_mut(&key) {
                        m.remove(&name);
                        if m.is_empty() {
                            self.slices.remove(&key);
                        }
                    }
                    vec![key]
                }
                watcher::Event::InitDone => {
                    let seen = self.listing_slices.take().unwrap_or_default();
                    let mut touched = Vec::new();
                    for (key, m) in self.slices.iter_mut() {
                        let before = m.len();
                        m.retain(|name, _| seen.contains(&(key.clone(), name.clone())));
                        if m.len() != before {
                            touched.push(key.clone());
                        }
                    }
                    self.slices.retain(|_, m| !m.is_empty());
                    touched
                }
            },
        }
    }

    fn rules(&self, key: &str, node_name: &str) -> Option<ServiceRules> {
        let svc = self.services.get(key)?;
        let slices = self.slices.get(key);
        rules_for(svc, slices.into_iter().flat_map(|m| m.values()), node_name)
    }
}

/// Runs the proxy until the task is dropped. It starts once the node's pod network exists,
/// which routes the Service range locally before any rule is installed.
pub async fn run(shared: Shared) {
    let net = loop {
        match crate::worker::network(&shared).await {
            Ok(n) => break n,
            Err(e) => {
                tracing::debug!(error = %format!("{e:#}"), "the Service proxy waits for the pod network");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let service_cidr = match shared.config.service_cidr.parse() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "bad Service range; no Service proxy");
            return;
        }
    };
    if let Err(e) = net.route_locally(&[service_cidr]).await {
        tracing::error!(error = %format!("{e:#}"), "cannot route the Service range locally; no Service proxy");
        return;
    }
    let Ok(node_ip) = shared.config.node_ip.parse::<Ipv4Addr>() else {
        tracing::error!(node_ip = %shared.config.node_ip, "the node address is not IPv4; no Service proxy");
        return;
    };
    let table = tug_network::proxy::table_for(net.bridge());
    let mut proxy = match Proxy::new(&table, node_ip) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot install the Service proxy table");
            return;
        }
    };
    tracing::info!(%table, "Service proxy started");
    let services = watcher(
        Api::<Service>::all(shared.client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .map(|e| e.map(|ev| Change::Service(Box::new(ev))));
    let slices = watcher(
        Api::<EndpointSlice>::all(shared.client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .map(|e| e.map(|ev| Change::Slice(Box::new(ev))));
    let mut events = futures::stream::select(services, slices).boxed();
    let mut view = View::default();
    let mut dirty: HashMap<String, Instant> = HashMap::new();
    loop {
        // Gather what arrives together, then program it in one batch.
        let ev = if dirty.is_empty() {
            events.next().await
        } else {
            match tokio::time::timeout(Duration::from_millis(5), events.next()).await {
                Ok(ev) => ev,
                Err(_) => {
                    sync(&mut proxy, &view, &mut dirty, &shared.config.node_name);
                    continue;
                }
            }
        };
        match ev {
            Some(Ok(change)) => {
                for key in view.apply(change) {
                    dirty.entry(key).or_insert_with(Instant::now);
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "watching Services failed; retrying"),
            None => return,
        }
        if dirty.len() >= 1000 {
            sync(&mut proxy, &view, &mut dirty, &shared.config.node_name);
        }
    }
}

/// Programs the dirty Services; on failure they stay dirty for the next round.
fn sync(proxy: &mut Proxy, view: &View, dirty: &mut HashMap<String, Instant>, node: &str) {
    let changes: Vec<(String, Option<ServiceRules>)> = dirty
        .keys()
        .map(|k| (k.clone(), view.rules(k, node)))
        .collect();
    match proxy.apply(changes) {
        Ok(n) => {
            let oldest = dirty.values().min().map(|t| t.elapsed());
            tracing::debug!(changed = n, latency = ?oldest, "Service rules programmed");
            crate::metrics::observe_sync(dirty.values().map(|t| t.elapsed()));
            dirty.clear();
        }
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "programming Service rules failed; retrying");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(yaml: &str) -> Service {
        serde_json::from_value(json(yaml)).unwrap()
    }

    fn slice(yaml: &str) -> EndpointSlice {
        serde_json::from_value(json(yaml)).unwrap()
    }

    /// The JSON these tests write.
    fn json(s: &str) -> serde_json::Value {
        serde_json::from_str(s).unwrap()
    }

    const SVC: &str = r#"{"metadata":{"name":"web","namespace":"default"},
        "spec":{"clusterIP":"10.96.0.7","type":"NodePort",
        "ports":[{"name":"http","port":80,"protocol":"TCP","nodePort":30080}]}}"#;

    fn endpoints(eps: &str) -> EndpointSlice {
        slice(&format!(
            r#"{{"metadata":{{"name":"web-1","namespace":"default","labels":{{"kubernetes.io/service-name":"web"}}}},
            "addressType":"IPv4","ports":[{{"name":"http","port":8080,"protocol":"TCP"}}],
            "endpoints":[{eps}]}}"#
        ))
    }

    #[test]
    fn ready_endpoints_are_used_and_terminating_ones_only_when_none_is_ready() {
        let svc = service(SVC);
        let s = endpoints(
            r#"{"addresses":["10.1.0.2"],"conditions":{"ready":true},"nodeName":"a"},
               {"addresses":["10.1.1.2"],"conditions":{"ready":false,"serving":true,"terminating":true},"nodeName":"b"},
               {"addresses":["10.1.2.2"],"conditions":{"ready":false},"nodeName":"b"}"#,
        );
        let r = rules_for(&svc, [&s].into_iter(), "a").unwrap();
        assert_eq!(r.cluster_ip, Some("10.96.0.7".parse().unwrap()));
        assert_eq!(r.ports[0].node_port, Some(30080));
        assert_eq!(r.ports[0].endpoints, ["10.1.0.2:8080".parse().unwrap()]);
        let s = endpoints(
            r#"{"addresses":["10.1.1.2"],"conditions":{"ready":false,"serving":true,"terminating":true}},
               {"addresses":["10.1.2.2"],"conditions":{"ready":false,"serving":false,"terminating":true}}"#,
        );
        let r = rules_for(&svc, [&s].into_iter(), "a").unwrap();
        assert_eq!(r.ports[0].endpoints, ["10.1.1.2:8080".parse().unwrap()]);
    }

    #[test]
    fn traffic_policies_local_keep_to_this_nodes_endpoints() {
        let mut svc = service(SVC);
        if let Some(s) = svc.spec.as_mut() {
            s.external_traffic_policy = Some("Local".into());
        }
        let s = endpoints(
            r#"{"addresses":["10.1.0.2"],"nodeName":"a"},{"addresses":["10.1.1.2"],"nodeName":"b"}"#,
        );
        let r = rules_for(&svc, [&s].into_iter(), "a").unwrap();
        assert_eq!(r.ports[0].endpoints.len(), 2);
        assert_eq!(
            r.ports[0].external_endpoints,
            ["10.1.0.2:8080".parse().unwrap()]
        );
        assert!(r.ports[0].external_local);
        if let Some(sp) = svc.spec.as_mut() {
            sp.internal_traffic_policy = Some("Local".into());
        }
        let r = rules_for(&svc, [&s].into_iter(), "b").unwrap();
        assert_eq!(r.ports[0].endpoints, ["10.1.1.2:8080".parse().unwrap()]);
    }

    #[test]
    fn headless_and_external_name_services_get_no_rules() {
        let headless = service(
            r#"{"metadata":{"name":"h"},"spec":{"clusterIP":"None","ports":[{"port":80}]}}"#,
        );
        assert!(rules_for(&headless, std::iter::empty(), "a").is_none());
        let ext = service(
            r#"{"metadata":{"name":"e"},"spec":{"type":"ExternalName","externalName":"example.invalid"}}"#,
        );
        assert!(rules_for(&ext, std::iter::empty(), "a").is_none());
    }
}
