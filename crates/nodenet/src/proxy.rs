//! The node's Service proxy (kube-proxy's job): watches Services and EndpointSlices and keeps
//! the node's nf_tables Service rules ([`tug_network::proxy`]) in step, one Service at a time.
//!
//! Endpoints are chosen as Kubernetes does: the ready ones; when none is ready, the ones still
//! serving while they terminate. `internalTrafficPolicy: Local` keeps ClusterIP traffic on
//! this node's endpoints, `externalTrafficPolicy: Local` NodePort traffic (which then keeps
//! its client's address).

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tug_network::proxy::{PortRules, Protocol, Proxy, ServiceRules};

use crate::NodeNetwork;

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
    // sessionAffinity ClientIP, for timeoutSeconds (3 hours unless set).
    let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(10_800)
    });
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
            affinity_seconds: affinity,
        });
    }
    if cluster_ip.is_none() && ports.iter().all(|p| p.node_port.is_none()) {
        return None;
    }
    Some(ServiceRules { cluster_ip, ports })
}

/// An event of one of the proxy's watches.
enum Change {
    Service(Box<watcher::Event<Service>>),
    Slice(Box<watcher::Event<EndpointSlice>>),
    Pod(Box<watcher::Event<Pod>>),
}

/// The objects of one watch by `namespace/name`, with the rule keys each one feeds.
struct Mirror<T> {
    objects: HashMap<String, T>,
    /// Keys seen during a watch's initial listing, to drop what vanished meanwhile.
    listing: Option<HashSet<String>>,
    /// The rule keys an object feeds (a slice feeds its Service's).
    feeds: fn(&T) -> Option<String>,
}

impl<T: kube::Resource> Mirror<T> {
    fn new(feeds: fn(&T) -> Option<String>) -> Mirror<T> {
        Mirror {
            objects: HashMap::new(),
            listing: None,
            feeds,
        }
    }

    fn key(obj: &T) -> String {
        let m = obj.meta();
        key_of(m.namespace.as_ref(), m.name.as_deref().unwrap_or(""))
    }

    /// Applies one event; returns the rule keys it touches.
    fn apply(&mut self, ev: watcher::Event<T>) -> Vec<String> {
        let mut touched = Vec::new();
        match ev {
            watcher::Event::Init => self.listing = Some(HashSet::new()),
            watcher::Event::InitApply(o) | watcher::Event::Apply(o) => {
                let key = Self::key(&o);
                if let Some(l) = self.listing.as_mut() {
                    l.insert(key.clone());
                }
                touched.extend((self.feeds)(&o));
                if let Some(old) = self.objects.insert(key, o) {
                    touched.extend((self.feeds)(&old));
                }
            }
            watcher::Event::Delete(o) => {
                touched.extend((self.feeds)(&o));
                self.objects.remove(&Self::key(&o));
            }
            watcher::Event::InitDone => {
                let seen = self.listing.take().unwrap_or_default();
                let feeds = self.feeds;
                self.objects.retain(|k, o| {
                    let keep = seen.contains(k);
                    if !keep {
                        touched.extend(feeds(o));
                    }
                    keep
                });
            }
        }
        touched
    }
}

/// What the proxy knows of the cluster.
struct View {
    services: Mirror<Service>,
    slices: Mirror<EndpointSlice>,
    /// This node's pods (for their hostPorts).
    pods: Mirror<Pod>,
    /// Whether this proxy serves hostPorts.
    host_ports: bool,
}

/// The rule key of a pod's hostPorts (Service keys have no `:`).
fn pod_rules_key(pod: &Pod) -> Option<String> {
    Some(format!(
        "hostports:{}",
        key_of(
            pod.metadata.namespace.as_ref(),
            pod.metadata.name.as_deref()?
        )
    ))
}

impl View {
    fn new() -> View {
        View {
            services: Mirror::new(|s| {
                Some(key_of(
                    s.metadata.namespace.as_ref(),
                    s.metadata.name.as_deref()?,
                ))
            }),
            slices: Mirror::new(slice_service),
            pods: Mirror::new(pod_rules_key),
            host_ports: true,
        }
    }

    /// Applies one event; returns the rule keys it touches.
    fn apply(&mut self, change: Change) -> Vec<String> {
        match change {
            Change::Service(ev) => self.services.apply(*ev),
            Change::Slice(ev) => self.slices.apply(*ev),
            Change::Pod(ev) => self.pods.apply(*ev),
        }
    }

    fn rules(&self, key: &str, node_name: &str) -> Option<ServiceRules> {
        if let Some(pod) = key.strip_prefix("hostports:") {
            if !self.host_ports {
                return None;
            }
            return self.pods.objects.get(pod).and_then(host_port_rules);
        }
        let svc = self.services.objects.get(key)?;
        let slices = self
            .slices
            .objects
            .values()
            .filter(|s| slice_service(s).as_deref() == Some(key));
        rules_for(svc, slices, node_name)
    }
}

/// A running pod's hostPorts, as NodePorts with the pod as their one endpoint (the client's
/// address kept, as the CNI portmap plugin does).
pub fn host_port_rules(pod: &Pod) -> Option<ServiceRules> {
    let ip: Ipv4Addr = pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?;
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let spec = pod.spec.as_ref()?;
    if spec.host_network == Some(true) {
        return None;
    }
    let ports: Vec<PortRules> = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host = u16::try_from(p.host_port?).ok().filter(|h| *h != 0)?;
            let target = SocketAddrV4::new(ip, u16::try_from(p.container_port).ok()?);
            Some(PortRules {
                protocol: Protocol::parse(p.protocol.as_deref().unwrap_or("TCP"))?,
                port: host,
                node_port: Some(host),
                endpoints: Vec::new(),
                external_endpoints: vec![target],
                external_local: true,
                affinity_seconds: None,
            })
        })
        .collect();
    (!ports.is_empty()).then_some(ServiceRules {
        cluster_ip: None,
        ports,
    })
}

/// Runs the proxy until the task is dropped. It starts once the node's pod network exists,
/// which routes the Service range locally before any rule is installed.
pub(crate) async fn run(nodenet: std::sync::Arc<NodeNetwork>) {
    let net = nodenet.when_ready().await;
    let service_cidr = match nodenet.config.service_cidr.parse() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "bad Service range; no Service proxy");
            return;
        }
    };
    if let Err(e) = net.route_services(service_cidr).await {
        tracing::error!(error = %format!("{e:#}"), "cannot route the Service range locally; no Service proxy");
        return;
    }
    let Ok(node_ip) = nodenet.ip().parse::<Ipv4Addr>() else {
        tracing::error!(node_ip = %nodenet.ip(), "the node address is not IPv4; no Service proxy");
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
        Api::<Service>::all(nodenet.client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .map(|e| e.map(|ev| Change::Service(Box::new(ev))));
    let slices = watcher(
        Api::<EndpointSlice>::all(nodenet.client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .map(|e| e.map(|ev| Change::Slice(Box::new(ev))));
    let pods = watcher(
        Api::<Pod>::all(nodenet.client.clone()),
        watcher::Config::default().fields(&format!("spec.nodeName={}", nodenet.name())),
    )
    .default_backoff()
    .map(|e| e.map(|ev| Change::Pod(Box::new(ev))));
    let mut events =
        futures::stream::select(futures::stream::select(services, slices), pods).boxed();
    let mut view = View::new();
    // hostPorts are the portmap plugin's when CNI plugins give pods their network.
    view.host_ports = nodenet.cni.is_none();
    let mut dirty: HashMap<String, Instant> = HashMap::new();
    loop {
        // Gather what arrives together, then program it in one batch.
        let ev = if dirty.is_empty() {
            events.next().await
        } else {
            match tokio::time::timeout(Duration::from_millis(5), events.next()).await {
                Ok(ev) => ev,
                Err(_) => {
                    sync(&mut proxy, &view, &mut dirty, nodenet.name());
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
            sync(&mut proxy, &view, &mut dirty, nodenet.name());
        }
    }
}

/// Programs the dirty Services; on failure they stay dirty for the next round.
fn sync(proxy: &mut Proxy, view: &View, dirty: &mut HashMap<String, Instant>, node: &str) {
    let changes: Vec<(String, Option<ServiceRules>)> = dirty
        .keys()
        .map(|k| (k.clone(), view.rules(k, node)))
        .collect();
    let result = proxy.apply(changes.clone());
    if let Err(e) = result {
        // One bad change (a hostPort taken by a NodePort, say) must not hold up the others:
        // apply them one by one and leave out what the kernel refuses.
        tracing::warn!(error = %format!("{e:#}"), "programming Service rules failed; applying them one by one");
        for change in changes {
            let key = change.0.clone();
            if let Err(e) = proxy.apply([change]) {
                tracing::warn!(service = %key, error = %format!("{e:#}"), "cannot program this Service's rules");
            }
        }
    }
    crate::metrics::observe_sync(dirty.values().map(|t| t.elapsed()));
    dirty.clear();
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
