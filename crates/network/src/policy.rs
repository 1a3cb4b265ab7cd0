//! NetworkPolicy enforcement on a node, in nf_tables: a `forward` filter chain that lets
//! established traffic through, sends packets from pods under an egress policy to their
//! `out/POD` chain (allowed traffic returns, the rest is dropped) and packets to pods under an
//! ingress policy to their `in/POD` chain (allowed traffic is accepted, the rest dropped).
//! Pods no policy selects are in neither map, so they stay open. Bridged traffic between pods
//! of one node passes the same hook (br_netfilter), so one place covers every path.

use std::net::Ipv4Addr;

use crate::ipam::Cidr;
use crate::nft::{BaseChain, Batch, Hook, Rule, TYPE_IPV4_ADDR, Verdict};
use crate::proxy::Protocol;
use crate::ruleset::{Keyed, Layout};

const INGRESS: &str = "ingress-pods";
const EGRESS: &str = "egress-pods";

/// Ports a rule allows: `lo..=hi` of one protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub protocol: Protocol,
    pub lo: u16,
    pub hi: u16,
}

/// One allow rule: from (or to) `peers` (`None`: anywhere), on `ports` (`None`: any).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allow {
    pub peers: Option<Vec<Cidr>>,
    pub ports: Option<Vec<PortRange>>,
}

/// What the policies selecting one pod allow; `None` for a direction no policy restricts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodPolicy {
    pub ip: Ipv4Addr,
    pub ingress: Option<Vec<Allow>>,
    pub egress: Option<Vec<Allow>>,
}

/// The policy rules of one node.
pub struct Firewall {
    pods: Keyed<PodPolicy>,
}

/// Rules accepting (`verdict`) what `allows` allow, by source (`ingress`) or destination.
fn allow_rules(allows: &[Allow], ingress: bool, verdict: &Verdict) -> Vec<Rule> {
    let mut rules = Vec::new();
    for a in allows {
        let peers: Vec<Option<Cidr>> = match &a.peers {
            None => vec![None],
            Some(p) => p.iter().copied().map(Some).collect(),
        };
        let ports: Vec<Option<PortRange>> = match &a.ports {
            None => vec![None],
            Some(p) => p.iter().copied().map(Some).collect(),
        };
        for peer in &peers {
            for port in &ports {
                let mut r = Rule::new();
                if let Some(c) = peer {
                    r = if ingress {
                        r.saddr(*c, false)
                    } else {
                        r.daddr(*c, false)
                    };
                }
                if let Some(p) = port {
                    r = r.l4proto(p.protocol.number()).dport_range(p.lo, p.hi);
                }
                rules.push(r.verdict(verdict));
            }
        }
    }
    rules.push(Rule::new().verdict(&Verdict::Drop));
    rules
}

fn layout(key: &str, p: &PodPolicy) -> Layout {
    let mut l = Layout::default();
    if let Some(allows) = &p.ingress {
        let chain = format!("in/{key}");
        l.chains
            .insert(chain.clone(), allow_rules(allows, true, &Verdict::Accept));
        l.elements.insert(
            (INGRESS.to_string(), p.ip.octets().to_vec()),
            Verdict::Jump(chain),
        );
    }
    if let Some(allows) = &p.egress {
        let chain = format!("out/{key}");
        l.chains
            .insert(chain.clone(), allow_rules(allows, false, &Verdict::Return));
        l.elements.insert(
            (EGRESS.to_string(), p.ip.octets().to_vec()),
            Verdict::Jump(chain),
        );
    }
    l
}

impl Firewall {
    /// Replaces table `ip TABLE` with one where no pod is restricted yet.
    pub fn new(table: &str) -> anyhow::Result<Firewall> {
        let mut b = Batch::new();
        b.delete_table(table);
        b.add_table(table);
        b.add_verdict_map(table, INGRESS, TYPE_IPV4_ADDR, 4);
        b.add_verdict_map(table, EGRESS, TYPE_IPV4_ADDR, 4);
        let base = BaseChain {
            hook: Hook::Forward,
            priority: 0,
            kind: "filter",
        };
        b.add_chain(table, "forward", Some(base));
        b.add_rule(
            table,
            "forward",
            &Rule::new().established().verdict(&Verdict::Accept),
        );
        b.add_rule(table, "forward", &Rule::new().saddr_vmap(EGRESS));
        b.add_rule(table, "forward", &Rule::new().daddr_vmap(INGRESS));
        b.commit()?;
        Ok(Firewall {
            pods: Keyed::new(table, layout),
        })
    }

    /// Brings the policies of the pods in `changes` (`None`: unrestricted or gone) to the
    /// kernel in one batch; returns how many changed.
    pub fn apply(
        &mut self,
        changes: impl IntoIterator<Item = (String, Option<PodPolicy>)>,
    ) -> anyhow::Result<usize> {
        self.pods.apply(changes)
    }

    /// The pods currently restricted.
    pub fn pods(&self) -> impl Iterator<Item = &String> {
        self.pods.keys()
    }
}

/// The name of the policy table of the node whose pod bridge is `bridge`.
pub fn table_for(bridge: &str) -> String {
    format!("tugboat-pol-{bridge}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_subtract_their_exceptions() {
        let all = Cidr::parse_block("10.0.0.0/8").unwrap();
        let hole = Cidr::parse_block("10.1.0.0/16").unwrap();
        let rest = all.subtract(hole);
        assert_eq!(rest.len(), 8);
        assert!(rest.iter().all(|c| !c.covers(hole) && !hole.covers(*c)));
        let size: u64 = rest.iter().map(|c| 1u64 << (32 - c.prefix)).sum();
        assert_eq!(size, (1 << 24) - (1 << 16));
        assert_eq!(hole.subtract(all), Vec::<Cidr>::new());
        let other = Cidr::parse_block("192.168.0.0/16").unwrap();
        assert_eq!(all.subtract(other), vec![all]);
        assert_eq!(Cidr::parse_block("0.0.0.0/0").unwrap().prefix, 0);
        assert!(Cidr::parse_block("1.2.3.4/33").is_err());
    }

    #[test]
    fn each_peer_and_port_becomes_a_rule_and_the_rest_is_dropped() {
        let p = PodPolicy {
            ip: "10.1.0.5".parse().unwrap(),
            ingress: Some(vec![Allow {
                peers: Some(vec![
                    Cidr::host("10.1.0.6".parse().unwrap()),
                    Cidr::host("10.1.1.6".parse().unwrap()),
                ]),
                ports: Some(vec![PortRange {
                    protocol: Protocol::Tcp,
                    lo: 80,
                    hi: 80,
                }]),
            }]),
            egress: Some(Vec::new()),
        };
        let l = layout("default/db", &p);
        assert_eq!(l.chains["in/default/db"].len(), 3);
        // Egress with no rules: deny everything.
        assert_eq!(l.chains["out/default/db"].len(), 1);
        assert_eq!(l.elements.len(), 2);
    }
}
