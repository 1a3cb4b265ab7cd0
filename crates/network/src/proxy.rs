//! Service virtual IPs in the kernel: the node's share of kube-proxy, as nf_tables NAT rules.
//!
//! One table per node holds:
//! - `prerouting` and `output` (NAT, dstnat priority) jumping to `services`;
//! - `services`: `ip daddr vmap @cluster-ips`, and for the node's own address
//!   `jump nodeports` (`th dport vmap @nodeports-tcp` / `-udp`);
//! - per Service `K` (`namespace/name`): `vip/K` picks the port's chain `svc/K/PROTO/PORT`,
//!   which picks one endpoint at random (rule `i` of `n` matches with probability
//!   `1/(n-i)`, so each is chosen with probability `1/n`) and goes to its `ep/...` chain,
//!   which marks hairpin traffic for masquerade and DNATs; `np/K/PROTO/PORT` does the same
//!   for the NodePort, marking for masquerade unless `externalTrafficPolicy: Local`;
//! - `postrouting` (NAT, srcnat): masquerades marked packets.
//!
//! A change to one Service rewrites that Service's chains and map elements only, in one
//! atomic batch; the maps keep dispatch constant-time however many Services there are.

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::ipam::Cidr;
use crate::nft::{BaseChain, Batch, Hook, Rule, TYPE_INET_SERVICE, TYPE_IPV4_ADDR, Verdict};
use crate::ruleset::{Keyed, Layout};

/// The packet mark asking for masquerade (kube-proxy's bit).
pub const MASQUERADE_MARK: u32 = 0x4000;
const CLUSTER_IPS: &str = "cluster-ips";
const DSTNAT: i32 = -100;
const SRCNAT: i32 = 100;

/// A transport protocol with ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// Kubernetes' name (`TCP`, `UDP`, `SCTP`); anything else is not one.
    pub fn parse(name: &str) -> Option<Protocol> {
        match name {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    fn nodeport_map(self) -> String {
        format!("nodeports-{}", self.name())
    }
}

/// One port of a Service, as this node serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRules {
    pub protocol: Protocol,
    pub port: u16,
    pub node_port: Option<u16>,
    /// Where traffic to the ClusterIP goes.
    pub endpoints: Vec<SocketAddrV4>,
    /// Where traffic to the NodePort goes.
    pub external_endpoints: Vec<SocketAddrV4>,
    /// `externalTrafficPolicy: Local`: NodePort traffic keeps its client's address.
    pub external_local: bool,
    /// `sessionAffinity: ClientIP`: a client keeps its endpoint for this many seconds.
    pub affinity_seconds: Option<u32>,
}

/// What the node programs for one Service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceRules {
    pub cluster_ip: Option<Ipv4Addr>,
    pub ports: Vec<PortRules>,
}

/// The Service rules of one node.
pub struct Proxy {
    services: Keyed<ServiceRules>,
}

/// The chains and map elements of one Service.
fn layout(key: &str, svc: &ServiceRules) -> Layout {
    let mut l = Layout::default();
    let vip = format!("vip/{key}");
    let mut vip_rules = Vec::new();
    for p in &svc.ports {
        let id = format!("{key}/{}/{}", p.protocol.name(), p.port);
        let endpoint_chains = |l: &mut Layout, eps: &[SocketAddrV4]| -> Vec<String> {
            eps.iter()
                .map(|ep| {
                    let name = format!("ep/{id}/{ep}");
                    let mut rules = vec![
                        // A pod reaching itself through its Service (hairpin).
                        Rule::new()
                            .saddr(Cidr::host(*ep.ip()), false)
                            .set_mark(MASQUERADE_MARK),
                    ];
                    if let Some(seconds) = p.affinity_seconds {
                        let set = format!("aff/{id}/{ep}");
                        rules.push(Rule::new().remember_saddr(&set, seconds));
                        l.sets.insert(set, seconds);
                    }
                    rules.push(
                        Rule::new()
                            .l4proto(p.protocol.number())
                            .dnat(*ep.ip(), ep.port()),
                    );
                    l.chains.entry(name.clone()).or_insert(rules);
                    name
                })
                .collect()
        };
        if svc.cluster_ip.is_some() && !p.endpoints.is_empty() {
            let targets = endpoint_chains(&mut l, &p.endpoints);
            let chain = format!("svc/{id}");
            l.chains.insert(
                chain.clone(),
                spread(&targets, None, p.affinity_seconds.is_some()),
            );
            vip_rules.push(
                Rule::new()
                    .l4proto(p.protocol.number())
                    .dport(p.port)
                    .verdict(&Verdict::Goto(chain)),
            );
        }
        if let Some(np) = p.node_port
            && !p.external_endpoints.is_empty()
        {
            let targets = endpoint_chains(&mut l, &p.external_endpoints);
            let chain = format!("np/{id}");
            let mark = (!p.external_local).then_some(MASQUERADE_MARK);
            l.chains.insert(
                chain.clone(),
                spread(&targets, mark, p.affinity_seconds.is_some()),
            );
            l.elements.insert(
                (p.protocol.nodeport_map(), np.to_be_bytes().to_vec()),
                Verdict::Goto(chain),
            );
        }
    }
    if let Some(ip) = svc.cluster_ip {
        l.chains.insert(vip.clone(), vip_rules);
        l.elements.insert(
            (CLUSTER_IPS.to_string(), ip.octets().to_vec()),
            Verdict::Goto(vip),
        );
    }
    l
}

/// Rules choosing one of `targets` (`ep/ID/ENDPOINT` chains) uniformly at random, optionally
/// marking first; with `affinity`, a client seen recently goes back to its endpoint.
fn spread(targets: &[String], mark: Option<u32>, affinity: bool) -> Vec<Rule> {
    let mut rules = Vec::new();
    if let Some(m) = mark {
        rules.push(Rule::new().set_mark(m));
    }
    if affinity {
        for t in targets {
            let set = t.replacen("ep/", "aff/", 1);
            rules.push(
                Rule::new()
                    .saddr_in(&set)
                    .verdict(&Verdict::Goto(t.clone())),
            );
        }
    }
    let n = targets.len();
    for (i, t) in targets.iter().enumerate() {
        let goto = Verdict::Goto(t.clone());
        if i + 1 == n {
            rules.push(Rule::new().verdict(&goto));
        } else {
            rules.push(Rule::new().one_in((n - i) as u32).verdict(&goto));
        }
    }
    rules
}

impl Proxy {
    /// Replaces table `ip TABLE` with an empty proxy: dispatch to no Service yet, NodePorts
    /// answered on `node_ip`.
    ///
    /// The caller routes the Service range locally first (see the crate's safety rule).
    pub fn new(table: &str, node_ip: Ipv4Addr) -> anyhow::Result<Proxy> {
        let mut b = Batch::new();
        b.delete_table(table);
        b.add_table(table);
        b.add_verdict_map(table, CLUSTER_IPS, TYPE_IPV4_ADDR, 4);
        b.add_chain(table, "nodeports", None);
        for p in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
            b.add_verdict_map(table, &p.nodeport_map(), TYPE_INET_SERVICE, 2);
            b.add_rule(
                table,
                "nodeports",
                &Rule::new()
                    .l4proto(p.number())
                    .dport_vmap(&p.nodeport_map()),
            );
        }
        b.add_chain(table, "services", None);
        b.add_rule(table, "services", &Rule::new().daddr_vmap(CLUSTER_IPS));
        b.add_rule(
            table,
            "services",
            &Rule::new()
                .daddr(Cidr::host(node_ip), false)
                .verdict(&Verdict::Jump("nodeports".into())),
        );
        for (chain, hook, priority) in [
            ("prerouting", Hook::Prerouting, DSTNAT),
            ("output", Hook::Output, DSTNAT),
        ] {
            let base = BaseChain {
                hook,
                priority,
                kind: "nat",
            };
            b.add_chain(table, chain, Some(base));
            b.add_rule(
                table,
                chain,
                &Rule::new().verdict(&Verdict::Jump("services".into())),
            );
        }
        let base = BaseChain {
            hook: Hook::Postrouting,
            priority: SRCNAT,
            kind: "nat",
        };
        b.add_chain(table, "postrouting", Some(base));
        b.add_rule(
            table,
            "postrouting",
            &Rule::new().marked(MASQUERADE_MARK).masquerade(),
        );
        b.commit()?;
        Ok(Proxy {
            services: Keyed::new(table, layout),
        })
    }

    /// Brings the rules of the Services in `changes` (`namespace/name` -> rules, `None` for
    /// gone) to the kernel in one batch. Services whose rules did not change cost nothing.
    /// Returns how many Services changed.
    /// Unanswered connection attempts to endpoints that left are forgotten afterwards (see
    /// [`crate::conntrack`]).
    pub fn apply(
        &mut self,
        changes: impl IntoIterator<Item = (String, Option<ServiceRules>)>,
    ) -> anyhow::Result<usize> {
        let changes: Vec<(String, Option<ServiceRules>)> = changes.into_iter().collect();
        let mut gone = Vec::new();
        for (key, new) in &changes {
            for p in self
                .services
                .get(key)
                .map(|o| o.ports.as_slice())
                .unwrap_or_default()
            {
                let kept = new.as_ref().and_then(|n| {
                    n.ports
                        .iter()
                        .find(|q| q.protocol == p.protocol && q.port == p.port)
                });
                for ep in p.endpoints.iter().chain(&p.external_endpoints) {
                    if !kept.is_some_and(|q| {
                        q.endpoints.contains(ep) || q.external_endpoints.contains(ep)
                    }) {
                        gone.push((p.protocol.number(), *ep));
                    }
                }
            }
        }
        let changed = self.services.apply(changes)?;
        match crate::conntrack::forget_unanswered(&gone) {
            Ok(0) => {}
            Ok(n) => tracing::debug!(
                entries = n,
                "forgot unanswered connections to endpoints that left"
            ),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "forgetting connections to endpoints that left failed")
            }
        }
        Ok(changed)
    }

    /// The Services currently programmed.
    pub fn services(&self) -> impl Iterator<Item = &String> {
        self.services.keys()
    }
}

/// Removes a table of ours (the proxy's, the policy one), if it exists.
pub fn remove(table: &str) -> anyhow::Result<()> {
    let mut b = Batch::new();
    b.delete_table(table);
    b.commit()
}

/// The name of the proxy table of the node whose pod bridge is `bridge`.
pub fn table_for(bridge: &str) -> String {
    format!("tugboat-svc-{bridge}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(eps: &[&str]) -> PortRules {
        let eps: Vec<SocketAddrV4> = eps.iter().map(|e| e.parse().unwrap()).collect();
        PortRules {
            protocol: Protocol::Tcp,
            port: 80,
            node_port: Some(30080),
            endpoints: eps.clone(),
            external_endpoints: eps,
            external_local: false,
            affinity_seconds: None,
        }
    }

    #[test]
    fn a_service_spreads_over_its_endpoints_and_its_nodeport() {
        let svc = ServiceRules {
            cluster_ip: Some("10.96.0.5".parse().unwrap()),
            ports: vec![port(&["10.1.0.2:8080", "10.1.1.2:8080", "10.1.2.2:8080"])],
        };
        let l = layout("default/web", &svc);
        assert_eq!(
            l.chains.keys().cloned().collect::<Vec<_>>(),
            [
                "ep/default/web/tcp/80/10.1.0.2:8080",
                "ep/default/web/tcp/80/10.1.1.2:8080",
                "ep/default/web/tcp/80/10.1.2.2:8080",
                "np/default/web/tcp/80",
                "svc/default/web/tcp/80",
                "vip/default/web",
            ]
        );
        // Three choices; the NodePort chain marks for masquerade first.
        assert_eq!(l.chains["svc/default/web/tcp/80"].len(), 3);
        assert_eq!(l.chains["np/default/web/tcp/80"].len(), 4);
        assert_eq!(l.elements.len(), 2);
        assert_eq!(
            l.elements[&("nodeports-tcp".to_string(), vec![0x75, 0x80])],
            Verdict::Goto("np/default/web/tcp/80".into())
        );
    }

    #[test]
    fn a_service_without_endpoints_dispatches_nowhere() {
        let svc = ServiceRules {
            cluster_ip: Some("10.96.0.5".parse().unwrap()),
            ports: vec![port(&[])],
        };
        let l = layout("default/web", &svc);
        assert_eq!(l.chains.len(), 1);
        assert!(l.chains["vip/default/web"].is_empty());
        assert_eq!(l.elements.len(), 1);
    }
}
