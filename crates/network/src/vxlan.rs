//! The VXLAN overlay, for nodes that do not share a link: each node has a VXLAN device
//! (`tugvx0`, VNI 1, UDP 4789) holding the first address of its podCIDR. Another node's pods
//! are routed through that node's device address, which is resolved by a permanent neighbour
//! entry (the peer device's MAC, published as a node annotation) and a forwarding entry that
//! sends the peer's MAC to its node address. Pods get an MTU 50 bytes smaller than the link's.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::Context;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::neighbour::NeighbourFlags;
use rtnetlink::{Handle, LinkUnspec, LinkVxlan, RouteMessageBuilder};

use crate::ipam::Cidr;
use crate::link_index;

/// The overlay device's name.
pub const DEVICE: &str = "tugvx0";
/// The bytes VXLAN adds to each packet (outer IPv4, UDP, VXLAN and Ethernet headers).
pub const OVERHEAD: u32 = 50;
/// The node annotation holding its VXLAN device's MAC address.
pub const MAC_ANNOTATION: &str = "tugboat.io/vtep-mac";

/// The first address of a podCIDR: the node's address on the overlay.
pub fn device_address(pod_cidr: Cidr) -> Ipv4Addr {
    pod_cidr.base
}

/// A MAC address as text (`aa:bb:...`).
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A MAC address from text.
pub fn parse_mac(s: &str) -> Option<Vec<u8>> {
    let bytes: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).ok())
        .collect::<Option<_>>()?;
    (bytes.len() == 6).then_some(bytes)
}

/// Creates (or finds) the overlay device on `node_ip`'s link with `pod_cidr`'s first address;
/// returns its MAC address and the MTU pods should use.
pub async fn ensure_device(
    handle: &Handle,
    node_ip: Ipv4Addr,
    pod_cidr: Cidr,
) -> anyhow::Result<(Vec<u8>, u32)> {
    // The link holding the node's address, and its MTU.
    let mut addrs = handle.address().get().execute();
    let mut uplink = None;
    use futures::TryStreamExt;
    while let Some(a) = addrs.try_next().await? {
        let mine = a.attributes.iter().any(|attr| {
            matches!(attr, rtnetlink::packet_route::address::AddressAttribute::Address(ip) if *ip == IpAddr::V4(node_ip))
        });
        if mine {
            uplink = Some(a.header.index);
        }
    }
    let uplink = uplink.with_context(|| format!("no link holds the node address {node_ip}"))?;
    let mut links = handle.link().get().match_index(uplink).execute();
    let link_mtu = match links.try_next().await? {
        Some(l) => l
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Mtu(m) => Some(*m),
                _ => None,
            })
            .unwrap_or(1500),
        None => 1500,
    };
    let mtu = link_mtu.saturating_sub(OVERHEAD).max(576);
    if link_index(handle, DEVICE).await?.is_none() {
        handle
            .link()
            .add(
                LinkVxlan::new(DEVICE, 1)
                    .dev(uplink)
                    .local(node_ip)
                    .port(4789)
                    .learning(false)
                    .mtu(mtu)
                    .up()
                    .build(),
            )
            .execute()
            .await
            .context("creating the VXLAN device")?;
    }
    let index = link_index(handle, DEVICE)
        .await?
        .context("the VXLAN device vanished")?;
    let _ = handle
        .address()
        .add(index, IpAddr::V4(device_address(pod_cidr)), 32)
        .execute()
        .await;
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await?;
    let mut links = handle.link().get().match_index(index).execute();
    let mac = links
        .try_next()
        .await?
        .and_then(|l| {
            l.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::Address(m) => Some(m),
                _ => None,
            })
        })
        .context("the VXLAN device has no MAC address")?;
    Ok((mac, mtu))
}

/// Sends another node's pods (`pod_cidr`, on the node at `node_ip` whose device has `mac`)
/// through the overlay.
pub async fn add_peer(
    handle: &Handle,
    pod_cidr: Cidr,
    node_ip: Ipv4Addr,
    mac: &[u8],
) -> anyhow::Result<()> {
    let index = link_index(handle, DEVICE)
        .await?
        .context("no VXLAN device")?;
    let peer = device_address(pod_cidr);
    handle
        .neighbours()
        .add(index, IpAddr::V4(peer))
        .link_layer_address(mac)
        .replace()
        .execute()
        .await
        .context("adding the peer's neighbour entry")?;
    handle
        .neighbours()
        .add_bridge(index, mac)
        .destination(IpAddr::V4(node_ip))
        .flags(NeighbourFlags::Own)
        .replace()
        .execute()
        .await
        .context("adding the peer's forwarding entry")?;
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(pod_cidr.base, pod_cidr.prefix)
        .gateway(peer)
        .output_interface(index)
        .onlink()
        .build();
    handle
        .route()
        .add(route)
        .replace()
        .execute()
        .await
        .context("routing the peer's pods through the overlay")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_round_trip() {
        let mac = [0x52, 0xef, 0x2c, 0x3d, 0x0e, 0x49];
        assert_eq!(format_mac(&mac), "52:ef:2c:3d:0e:49");
        assert_eq!(parse_mac("52:ef:2c:3d:0e:49").unwrap(), mac);
        assert!(parse_mac("52:ef").is_none());
        assert!(parse_mac("zz:ef:2c:3d:0e:49").is_none());
    }
}
