//! The pod network on a node: a bridge with the gateway address of the node's podCIDR, and a
//! veth pair per pod whose inner end is the pod's `eth0`, with an address from the podCIDR and
//! a default route through the bridge. Pods on the node reach each other across the bridge and
//! the node reaches them through it. Links, addresses and routes go through netlink
//! (rtnetlink). Traffic leaving the cluster's pod range is masqueraded (`nat`), once the
//! cluster's ranges are routed locally.

pub mod cni;
pub mod conntrack;
pub mod dns;
pub mod ipam;
pub mod localnet;
pub mod nat;
mod netlink;
pub mod nft;
pub mod policy;
pub mod proxy;
pub mod ruleset;
pub mod vxlan;

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context, bail};
use futures::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkInfo};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

pub use ipam::{Allocator, Cidr};

/// The metric of the blackhole route kept behind the Service range's route.
pub const SERVICE_BACKSTOP_METRIC: u32 = 4095;

/// The node bridge's name by default.
pub const BRIDGE: &str = "tug0";

/// The node's pod network.
pub struct PodNetwork {
    handle: Handle,
    ipam: Allocator,
    bridge: String,
    /// The pods' MTU, when smaller than the default (an overlay's).
    mtu: std::sync::atomic::AtomicU32,
}

/// A netlink handle whose socket lives in the network namespace of process `pid`.
async fn handle_in(pid: i32) -> anyhow::Result<Handle> {
    handle_in_ns(Path::new(&format!("/proc/{pid}/ns/net"))).await
}

/// A netlink handle whose socket lives in the network namespace at `path`.
pub(crate) async fn handle_in_ns(path: &Path) -> anyhow::Result<Handle> {
    let ns = std::fs::File::open(path)
        .with_context(|| format!("opening the network namespace {}", path.display()))?;
    // The socket belongs to the namespace of the thread that opens it; the thread registers
    // it with this runtime's reactor.
    let runtime = tokio::runtime::Handle::current();
    let (conn, handle) = std::thread::spawn(move || -> anyhow::Result<_> {
        let _entered = runtime.enter();
        nix::sched::setns(
            std::os::fd::AsFd::as_fd(&ns),
            nix::sched::CloneFlags::CLONE_NEWNET,
        )
        .context("joining the network namespace")?;
        let (conn, handle, _) = rtnetlink::new_connection().context("opening netlink")?;
        Ok((conn, handle))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the netlink thread panicked"))??;
    tokio::spawn(conn);
    Ok(handle)
}

pub(crate) async fn link_index(handle: &Handle, name: &str) -> anyhow::Result<Option<u32>> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(Some(l.header.index)),
        Ok(None) => Ok(None),
        // No such device.
        Err(e) if netlink::failed_with(&e, nix::errno::Errno::ENODEV) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Sets bridge `index` up with its hardware address pinned. A bridge whose address was never
/// set takes the lowest of its ports' addresses, so it changes as ports come and go, and
/// whoever still sends to the old one (a pod's ARP entry for its gateway) is cut off until
/// that entry expires. Setting the address, to what it is, keeps it.
pub(crate) async fn bridge_up(handle: &Handle, index: u32) -> anyhow::Result<()> {
    let mut links = handle.link().get().match_index(index).execute();
    let mac = links.try_next().await?.and_then(|link| {
        link.attributes.into_iter().find_map(|a| match a {
            rtnetlink::packet_route::link::LinkAttribute::Address(mac) => Some(mac),
            _ => None,
        })
    });
    let mut up = LinkUnspec::new_with_index(index).up();
    if let Some(mac) = mac {
        up = up.address(mac);
    }
    handle
        .link()
        .set(up.build())
        .execute()
        .await
        .context("setting the bridge up")
}

/// Host-side veth name of a pod: `vt` and 12 characters of its UID (interface names are at
/// most 15 bytes).
fn host_veth(uid: &str) -> String {
    let short: String = uid.chars().filter(|c| *c != '-').take(12).collect();
    format!("vt{short}")
}

impl PodNetwork {
    /// Sets up `bridge` with the gateway of `cidr`; allocations are kept in `state_dir`.
    pub async fn new(
        cidr: &str,
        bridge_name: &str,
        state_dir: &Path,
    ) -> anyhow::Result<PodNetwork> {
        check_name(bridge_name)?;
        let cidr: Cidr = cidr.parse()?;
        let handle = netlink::connect()?;
        let bridge = match link_index(&handle, bridge_name).await? {
            Some(i) => i,
            None => {
                handle
                    .link()
                    .add(LinkBridge::new(bridge_name).up().build())
                    .execute()
                    .await
                    .context("creating the bridge")?;
                link_index(&handle, bridge_name)
                    .await?
                    .context("the bridge vanished")?
            }
        };
        let gateway = cidr.gateway();
        let mut addrs = handle
            .address()
            .get()
            .set_link_index_filter(bridge)
            .execute();
        let mut has = false;
        while let Some(a) = addrs.try_next().await? {
            has |= a.attributes.iter().any(|attr| {
                matches!(attr, rtnetlink::packet_route::address::AddressAttribute::Address(ip) if *ip == std::net::IpAddr::V4(gateway))
            });
        }
        if !has {
            handle
                .address()
                .add(bridge, gateway.into(), cidr.prefix)
                .execute()
                .await
                .context("adding the gateway address to the bridge")?;
        }
        bridge_up(&handle, bridge).await?;
        Ok(PodNetwork {
            handle,
            ipam: Allocator::new(cidr, state_dir)?,
            bridge: bridge_name.to_string(),
            mtu: std::sync::atomic::AtomicU32::new(0),
        })
    }

    /// Connects the sandbox `pid` of pod `uid` to the bridge and returns its address. Calling it
    /// again for a connected pod returns the same address.
    pub async fn attach(&self, uid: &str, pid: i32) -> anyhow::Result<Ipv4Addr> {
        let ip = self.ipam.allocate(uid)?;
        let pod = handle_in(pid).await?;
        if link_index(&pod, "eth0").await?.is_some() {
            return Ok(ip);
        }
        let host = host_veth(uid);
        if let Some(stale) = link_index(&self.handle, &host).await? {
            self.handle.link().del(stale).execute().await?;
        }
        let bridge = link_index(&self.handle, &self.bridge)
            .await?
            .context("the bridge is gone")?;
        // One request makes the pair: the host end on the bridge and up, the other end created
        // straight inside the pod as `eth0` (moving a link between namespaces later costs a
        // network-wide synchronization in the kernel).
        let mut pair = LinkVeth::new(&host, "eth0").controller(bridge).up();
        let mtu = self.mtu.load(std::sync::atomic::Ordering::Relaxed);
        if mtu > 0 {
            pair = pair.mtu(mtu);
        }
        let mut pair = pair.build();
        for attr in pair.attributes.iter_mut() {
            if let LinkAttribute::LinkInfo(infos) = attr {
                for info in infos.iter_mut() {
                    if let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))) = info {
                        peer.attributes.push(LinkAttribute::NetNsPid(pid as u32));
                        if mtu > 0 {
                            peer.attributes.push(LinkAttribute::Mtu(mtu));
                        }
                    }
                }
            }
        }
        self.handle
            .link()
            .add(pair)
            .execute()
            .await
            .context("creating the pod's veth pair")?;
        let inner = link_index(&pod, "eth0")
            .await?
            .context("the veth did not arrive in the pod")?;
        pod.address()
            .add(inner, ip.into(), self.ipam.cidr().prefix)
            .execute()
            .await
            .context("adding the pod's address")?;
        pod.link()
            .set(LinkUnspec::new_with_index(inner).up().build())
            .execute()
            .await?;
        pod.route()
            .add(
                RouteMessageBuilder::<Ipv4Addr>::new()
                    .gateway(self.ipam.cidr().gateway())
                    .build(),
            )
            .execute()
            .await
            .context("adding the pod's default route")?;
        Ok(ip)
    }

    /// Routes `ranges` (the cluster's pod and Service ranges) locally, as blackholes behind
    /// the bridges' and other nodes' more specific routes, so that no address without a pod
    /// or rule behind it follows the default route.
    pub async fn route_locally(&self, ranges: &[Cidr]) -> anyhow::Result<()> {
        for range in ranges {
            netlink::add_blackhole(&self.handle, *range, 0).await?;
        }
        Ok(())
    }

    /// Routes the Service range onto the pod bridge, so that the node's own connections to a
    /// ClusterIP pass route lookup and reach the NAT rules, while an address without a rule
    /// goes nowhere (nobody on the bridge answers for it). A blackhole route of the range at a
    /// low priority stays behind it, should the bridge go. (A dummy device would do as well,
    /// but kernels without the dummy module have none.)
    pub async fn route_services(&self, range: Cidr) -> anyhow::Result<()> {
        netlink::add_blackhole(&self.handle, range, SERVICE_BACKSTOP_METRIC)
            .await
            .context("routing the Service range to a blackhole")?;
        let index = link_index(&self.handle, &self.bridge)
            .await?
            .context("the pod bridge is gone")?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(range.base, range.prefix)
            .output_interface(index)
            .build();
        self.handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .with_context(|| format!("routing {}/{} to {}", range.base, range.prefix, self.bridge))
    }

    /// Lets pods reach beyond the pod range: routes `local_ranges` locally first
    /// ([`PodNetwork::route_locally`]), then turns on IPv4 forwarding and masquerades what
    /// leaves `cluster` for elsewhere.
    pub async fn enable_egress(&self, cluster: Cidr, local_ranges: &[Cidr]) -> anyhow::Result<()> {
        self.route_locally(local_ranges).await?;
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
            .context("turning on IPv4 forwarding")?;
        nat::install_masquerade(&nat::table_for(&self.bridge), cluster)
    }

    /// Routes another node's podCIDR through that node's address (host-gw), replacing any
    /// route the block had.
    pub async fn route_via(&self, cidr: Cidr, node: Ipv4Addr) -> anyhow::Result<()> {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(cidr.base, cidr.prefix)
            .gateway(node)
            .build();
        self.handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .with_context(|| format!("routing {}/{} via {node}", cidr.base, cidr.prefix))
    }

    /// Removes the route of a podCIDR added by [`PodNetwork::route_via`].
    pub async fn unroute(&self, cidr: Cidr, node: Ipv4Addr) -> anyhow::Result<()> {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(cidr.base, cidr.prefix)
            .gateway(node)
            .build();
        netlink::delete_route(&self.handle, route).await
    }

    /// Sets up the VXLAN overlay on the link holding `node_ip`: pods started from now on get
    /// the overlay's MTU. Returns the overlay device's MAC address (for other nodes).
    pub async fn enable_overlay(&self, node_ip: Ipv4Addr) -> anyhow::Result<Vec<u8>> {
        let (mac, mtu) = vxlan::ensure_device(&self.handle, node_ip, self.ipam.cidr()).await?;
        self.mtu.store(mtu, std::sync::atomic::Ordering::Relaxed);
        Ok(mac)
    }

    /// Routes another node's podCIDR through the overlay.
    pub async fn route_via_overlay(
        &self,
        cidr: Cidr,
        node: Ipv4Addr,
        mac: &[u8],
    ) -> anyhow::Result<()> {
        vxlan::add_peer(&self.handle, cidr, node, mac).await
    }

    /// The pod bridge's name.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The address a pod holds, if any.
    pub fn address_of(&self, uid: &str) -> Option<Ipv4Addr> {
        self.ipam.lookup(uid)
    }

    /// Releases a pod's address and removes its veth (gone already if its namespace is).
    pub async fn detach(&self, uid: &str) {
        if let Ok(Some(i)) = link_index(&self.handle, &host_veth(uid)).await {
            let _ = self.handle.link().del(i).execute().await;
        }
        self.ipam.release(uid);
    }

    /// Releases the addresses of pods not in `live`.
    pub fn release_others(&self, live: &std::collections::HashSet<String>) {
        self.ipam.retain(live);
    }
}

/// Checks the interface name rules the kernel enforces.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.len() > 15 {
        bail!("interface name {name:?} must have 1 to 15 bytes");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_veth_names_fit_the_kernel_limit() {
        let n = host_veth("0f5e3c2a-1b2c-4d5e-8f90-123456789abc");
        assert!(check_name(&n).is_ok());
        assert!(check_name(&format!("{n}p")).is_ok());
        assert_eq!(n, "vt0f5e3c2a1b2c");
    }
}
