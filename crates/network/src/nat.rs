//! Masquerade for pod traffic leaving the cluster's ranges, programmed into nf_tables over
//! netlink (no `nft` binary, no C library): a table `ip <name>` with a postrouting NAT chain
//! holding one rule, `ip saddr POD_RANGE ip daddr != POD_RANGE masquerade`. The table is
//! replaced atomically in one netlink batch.
//!
//! The cluster's ranges are routed locally (blackhole routes, less specific than the node
//! bridges' own routes) before the rule exists, so that an address with no pod behind it
//! never follows the default route off the machine.

use std::net::Ipv4Addr;

use crate::ipam::Cidr;
use crate::nft::{BaseChain, Batch, Hook, Rule, mask_of};

/// Source NAT's priority (`srcnat`).
const SRCNAT: i32 = 100;

/// Replaces table `ip <table>` with one that masquerades traffic from `pods` to anywhere
/// outside `pods`.
pub fn install_masquerade(table: &str, pods: Cidr) -> anyhow::Result<()> {
    let mut batch = Batch::new();
    batch.delete_table(table);
    batch.add_table(table);
    let base = BaseChain {
        hook: Hook::Postrouting,
        priority: SRCNAT,
        kind: "nat",
    };
    batch.add_chain(table, "postrouting", Some(base));
    let rule = Rule::new()
        .saddr(pods, false)
        .daddr(pods, true)
        .masquerade();
    batch.add_rule(table, "postrouting", &rule);
    batch.commit()
}

/// Removes table `ip <table>` if it exists.
pub fn remove_masquerade(table: &str) -> anyhow::Result<()> {
    let mut batch = Batch::new();
    batch.delete_table(table);
    batch.commit()
}

/// The name of the NAT table of the pod network on `bridge`.
pub fn table_for(bridge: &str) -> String {
    format!("tugboat-{bridge}")
}

/// Whether `ip` is in `cidr`.
pub fn contains(cidr: Cidr, ip: Ipv4Addr) -> bool {
    let mask = mask_of(cidr.prefix);
    u32::from(ip) & mask == u32::from(cidr.base) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_and_ranges() {
        let pods: Cidr = "10.244.0.0/16".parse().unwrap();
        assert!(contains(pods, "10.244.3.4".parse().unwrap()));
        assert!(!contains(pods, "10.245.0.1".parse().unwrap()));
    }
}
