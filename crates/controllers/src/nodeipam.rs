//! Node IPAM: every node without a podCIDR gets the lowest free block of the cluster CIDR
//! (10.244.0.0/16 in /24 blocks by default), as kube-controller-manager's range allocator
//! does. Blocks in use are read from the nodes each pass, so a deleted node frees its block.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch};
use serde_json::json;

use crate::common::{Shared, patch_params};

/// The cluster CIDR and the size of each node's block.
#[derive(Clone, Copy, Debug)]
pub struct PodNetwork {
    pub cluster: Ipv4Addr,
    pub prefix: u8,
    pub node_prefix: u8,
}

impl Default for PodNetwork {
    fn default() -> Self {
        Self {
            cluster: Ipv4Addr::new(10, 244, 0, 0),
            prefix: 16,
            node_prefix: 24,
        }
    }
}

impl PodNetwork {
    /// Parses `10.244.0.0/16`.
    pub fn parse(cidr: &str, node_prefix: u8) -> Result<Self, String> {
        let block = tug_api::cidr::Cidr::parse_block(cidr).map_err(|e| e.to_string())?;
        let prefix = block.prefix;
        if prefix > 30 {
            return Err(format!(
                "{cidr:?}: /{prefix} is not a prefix length up to 30"
            ));
        }
        if node_prefix < prefix || node_prefix > 30 {
            return Err(format!(
                "the node block /{node_prefix} must lie within the cluster CIDR /{prefix} and be at most /30"
            ));
        }
        Ok(Self {
            cluster: block.base,
            prefix,
            node_prefix,
        })
    }

    fn blocks(&self) -> u32 {
        1 << (self.node_prefix - self.prefix)
    }

    fn block(&self, i: u32) -> String {
        let base = u32::from(self.cluster) & (u32::MAX << (32 - self.prefix));
        let ip = Ipv4Addr::from(base + (i << (32 - self.node_prefix)));
        format!("{ip}/{}", self.node_prefix)
    }
}

/// Runs the allocator until the task is dropped.
pub async fn run(client: kube::Client, shared: Shared, net: PodNetwork) {
    let api: Api<Node> = Api::all(client);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut warned = false;
    loop {
        tick.tick().await;
        let nodes = shared.nodes.state();
        let used: HashSet<String> = nodes
            .iter()
            .filter_map(|n| n.spec.as_ref()?.pod_cidr.clone())
            .collect();
        let mut free = (0..net.blocks())
            .map(|i| net.block(i))
            .filter(|b| !used.contains(b));
        for n in nodes.iter().filter(|n| {
            n.spec
                .as_ref()
                .and_then(|s| s.pod_cidr.as_deref())
                .is_none_or(str::is_empty)
        }) {
            let name = n.metadata.name.clone().unwrap_or_default();
            let Some(block) = free.next() else {
                if !warned {
                    tracing::warn!(node = %name, "the cluster CIDR has no free block for this node; widen --cluster-cidr");
                    warned = true;
                }
                break;
            };
            let patch = json!({"spec": {"podCIDR": block, "podCIDRs": [block]}});
            match api
                .patch(&name, &patch_params(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => tracing::info!(node = %name, cidr = %block, "assigned a pod CIDR"),
                Err(e) => tracing::debug!(node = %name, error = %e, "assigning a pod CIDR failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_of_the_cluster_cidr() {
        let net = PodNetwork::default();
        assert_eq!(net.blocks(), 256);
        assert_eq!(net.block(0), "10.244.0.0/24");
        assert_eq!(net.block(255), "10.244.255.0/24");
        let wide = PodNetwork::parse("10.128.0.0/9", 24).expect("cidr");
        assert_eq!(wide.blocks(), 32768);
        assert_eq!(wide.block(300), "10.129.44.0/24");
        assert!(PodNetwork::parse("10.0.0.0/24", 16).is_err());
        assert!(PodNetwork::parse("nonsense", 24).is_err());
    }
}
