//! NetworkPolicy on the node: watches policies, pods and namespaces, works out for each pod of
//! this node what its policies allow (peers resolved to pod addresses and ipBlocks, named
//! ports to the pod's container ports), and keeps the node's policy rules
//! ([`tug_network::policy`]) in step, one pod at a time.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tug_api::selector::LabelSelector;
use tug_network::Cidr;
use tug_network::policy::{Allow, Firewall, PodPolicy, PortRange};
use tug_network::proxy::Protocol;

use crate::NodeNetwork;

fn labels(meta: &kube::api::ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

fn pod_ip(pod: &Pod) -> Option<Ipv4Addr> {
    if pod.spec.as_ref()?.host_network == Some(true) {
        return None;
    }
    pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

/// What policy evaluation reads: every pod, every namespace's labels.
pub struct Cluster<'a> {
    pub pods: &'a [std::sync::Arc<Pod>],
    pub namespaces: &'a HashMap<String, BTreeMap<String, String>>,
}

impl Cluster<'_> {
    /// The addresses a peer stands for, seen from a policy in `ns`.
    fn peer(&self, peer: &NetworkPolicyPeer, ns: &str) -> Vec<Cidr> {
        if let Some(block) = &peer.ip_block {
            let Ok(cidr) = Cidr::parse_block(&block.cidr) else {
                return Vec::new();
            };
            let mut parts = vec![cidr];
            for hole in block.except.iter().flatten() {
                if let Ok(h) = Cidr::parse_block(hole) {
                    parts = parts.into_iter().flat_map(|p| p.subtract(h)).collect();
                }
            }
            return parts;
        }
        let pod_sel = peer.pod_selector.as_ref().map(LabelSelector::from_api);
        let ns_sel = peer
            .namespace_selector
            .as_ref()
            .map(LabelSelector::from_api);
        let empty = BTreeMap::new();
        self.pods
            .iter()
            .filter(|p| {
                let pns = p.metadata.namespace.as_deref().unwrap_or("default");
                let ns_ok = match &ns_sel {
                    Some(sel) => sel.matches_map(self.namespaces.get(pns).unwrap_or(&empty)),
                    None => pns == ns,
                };
                ns_ok
                    && pod_sel
                        .as_ref()
                        .is_none_or(|s| s.matches_map(&labels(&p.metadata)))
            })
            .filter_map(|p| pod_ip(p))
            .map(Cidr::host)
            .collect()
    }
}

/// A policy port as ranges; a named port resolves against `target`'s container ports (an
/// unknown name allows nothing).
fn ports(ports: &[NetworkPolicyPort], target: Option<&Pod>) -> Vec<PortRange> {
    let mut out = Vec::new();
    for p in ports {
        let Some(protocol) = Protocol::parse(p.protocol.as_deref().unwrap_or("TCP")) else {
            continue;
        };
        match &p.port {
            None => out.push(PortRange {
                protocol,
                lo: 1,
                hi: u16::MAX,
            }),
            Some(IntOrString::Int(n)) => {
                let Ok(lo) = u16::try_from(*n) else {
                    continue;
                };
                let hi = p
                    .end_port
                    .and_then(|e| u16::try_from(e).ok())
                    .filter(|e| *e >= lo)
                    .unwrap_or(lo);
                out.push(PortRange { protocol, lo, hi });
            }
            Some(IntOrString::String(name)) => {
                let found = target
                    .and_then(|t| t.spec.as_ref())
                    .into_iter()
                    .flat_map(|s| s.containers.iter())
                    .flat_map(|c| c.ports.iter().flatten())
                    .find(|cp| cp.name.as_deref() == Some(name.as_str()))
                    .and_then(|cp| u16::try_from(cp.container_port).ok());
                if let Some(port) = found {
                    out.push(PortRange {
                        protocol,
                        lo: port,
                        hi: port,
                    });
                }
            }
        }
    }
    out
}

/// What the policies of the pod's namespace allow it; `None` when none selects it.
pub fn policy_for(
    pod: &Pod,
    policies: &[std::sync::Arc<NetworkPolicy>],
    cluster: &Cluster,
) -> Option<PodPolicy> {
    let ip = pod_ip(pod)?;
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let pod_labels = labels(&pod.metadata);
    let mut ingress: Option<Vec<Allow>> = None;
    let mut egress: Option<Vec<Allow>> = None;
    for pol in policies {
        if pol.metadata.namespace.as_deref().unwrap_or("default") != ns {
            continue;
        }
        let Some(spec) = &pol.spec else {
            continue;
        };
        // An absent podSelector, like an empty one, selects every pod of the namespace.
        let selects = spec
            .pod_selector
            .as_ref()
            .is_none_or(|s| LabelSelector::from_api(s).matches_map(&pod_labels));
        if !selects {
            continue;
        }
        let types: Vec<String> = spec.policy_types.clone().unwrap_or_else(|| {
            let mut t = vec!["Ingress".to_string()];
            if spec.egress.is_some() {
                t.push("Egress".into());
            }
            t
        });
        if types.iter().any(|t| t == "Ingress") {
            let allows = ingress.get_or_insert_with(Vec::new);
            for rule in spec.ingress.iter().flatten() {
                allows.push(Allow {
                    peers: rule
                        .from
                        .as_ref()
                        .filter(|f| !f.is_empty())
                        .map(|from| from.iter().flat_map(|p| cluster.peer(p, ns)).collect()),
                    ports: rule
                        .ports
                        .as_ref()
                        .filter(|p| !p.is_empty())
                        .map(|p| ports(p, Some(pod))),
                });
            }
        }
        if types.iter().any(|t| t == "Egress") {
            let allows = egress.get_or_insert_with(Vec::new);
            for rule in spec.egress.iter().flatten() {
                allows.push(Allow {
                    peers: rule
                        .to
                        .as_ref()
                        .filter(|t| !t.is_empty())
                        .map(|to| to.iter().flat_map(|p| cluster.peer(p, ns)).collect()),
                    ports: rule
                        .ports
                        .as_ref()
                        .filter(|p| !p.is_empty())
                        .map(|p| ports(p, None)),
                });
            }
        }
    }
    if ingress.is_none() && egress.is_none() {
        return None;
    }
    Some(PodPolicy {
        ip,
        ingress,
        egress,
    })
}

/// Enforces NetworkPolicy for this node's pods until the task is dropped.
pub(crate) async fn run(nodenet: std::sync::Arc<NodeNetwork>) {
    let net = nodenet.when_ready().await;
    let table = tug_network::policy::table_for(net.bridge());
    let mut firewall = match Firewall::new(&table) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot install the NetworkPolicy table; policies are not enforced");
            return;
        }
    };
    let client = nodenet.client.clone();
    let (policies, pw) = reflector::store::<NetworkPolicy>();
    let (pods, podw) = reflector::store::<Pod>();
    let (namespaces, nsw) = reflector::store::<Namespace>();
    let a = reflector::reflector(
        pw,
        watcher(Api::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .map(|_| ());
    let b = reflector::reflector(
        podw,
        watcher(Api::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .map(|_| ());
    let c = reflector::reflector(nsw, watcher(Api::all(client), watcher::Config::default()))
        .default_backoff()
        .map(|_| ());
    let mut events = futures::stream::select(futures::stream::select(a, b), c).boxed();
    loop {
        if events.next().await.is_none() {
            return;
        }
        while let Ok(Some(())) =
            tokio::time::timeout(Duration::from_millis(20), events.next()).await
        {}
        sync(&mut firewall, &policies, &pods, &namespaces, nodenet.name());
    }
}

fn sync(
    firewall: &mut Firewall,
    policies: &Store<NetworkPolicy>,
    pods: &Store<Pod>,
    namespaces: &Store<Namespace>,
    node: &str,
) {
    let all_pods = pods.state();
    let ns_labels: HashMap<String, BTreeMap<String, String>> = namespaces
        .state()
        .iter()
        .map(|n| {
            (
                n.metadata.name.clone().unwrap_or_default(),
                labels(&n.metadata),
            )
        })
        .collect();
    let cluster = Cluster {
        pods: &all_pods,
        namespaces: &ns_labels,
    };
    let policies = policies.state();
    let mut changes: Vec<(String, Option<PodPolicy>)> = Vec::new();
    let mut local = std::collections::HashSet::new();
    for pod in all_pods
        .iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
    {
        let key = format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or("default"),
            pod.metadata.name.as_deref().unwrap_or("")
        );
        local.insert(key.clone());
        changes.push((key, policy_for(pod, &policies, &cluster)));
    }
    // Pods that went away.
    let gone: Vec<String> = firewall
        .pods()
        .filter(|k| !local.contains(*k))
        .cloned()
        .collect();
    changes.extend(gone.into_iter().map(|k| (k, None)));
    if let Err(e) = firewall.apply(changes) {
        tracing::warn!(error = %format!("{e:#}"), "programming NetworkPolicy rules failed");
    }
}
