//! The cluster's fixed addresses and defaults, in one place: every component that needs the
//! Service range, the `kubernetes` or DNS Service address, the pod range or the cluster domain
//! takes it from here.

use std::net::Ipv4Addr;

use crate::cidr::Cidr;

/// The Service range ClusterIPs are allocated from.
pub const SERVICE_CIDR: &str = "10.96.0.0/12";
/// [`SERVICE_CIDR`] as a block, for the allocator.
pub const SERVICE_NET: Cidr = Cidr {
    base: Ipv4Addr::new(10, 96, 0, 0),
    prefix: 12,
};
/// The `default/kubernetes` Service's ClusterIP (the API server, for pods).
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";
/// The `kube-system/kube-dns` Service's ClusterIP (the kubelet's default `clusterDNS`).
pub const DNS_SERVICE_IP: &str = "10.96.0.10";
/// The default pod range (`--cluster-cidr`); each node gets a block of it.
pub const POD_CIDR: &str = "10.244.0.0/16";
/// The default cluster DNS domain (`--cluster-domain`).
pub const CLUSTER_DOMAIN: &str = "cluster.local";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_range_is_one_fact() {
        assert_eq!(SERVICE_CIDR.parse::<Cidr>(), Ok(SERVICE_NET));
        assert!(SERVICE_NET.contains(Ipv4Addr::new(10, 111, 255, 254)));
        assert!(!SERVICE_NET.contains(Ipv4Addr::new(10, 112, 0, 1)));
        for ip in [KUBERNETES_SERVICE_IP, DNS_SERVICE_IP] {
            let ip: Ipv4Addr = ip.parse().expect("an address");
            assert!(SERVICE_NET.contains(ip), "{ip}");
        }
    }
}
