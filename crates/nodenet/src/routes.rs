//! host-gw routing: every other node's podCIDR is routed through that node's address, so pods
//! reach pods on other nodes by IP with no encapsulation. Nodes must share a link (their
//! addresses directly reachable); the routes follow nodes as they come, change and go.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tug_network::Cidr;

use crate::NodeNetwork;

/// A node's overlay device MAC address, from its annotation.
fn overlay_mac(node: &Node) -> Option<Vec<u8>> {
    tug_network::vxlan::parse_mac(
        node.metadata
            .annotations
            .as_ref()?
            .get(tug_network::vxlan::MAC_ANNOTATION)?,
    )
}

/// Where a node's pods are: its podCIDR and its InternalIP.
fn pod_route(node: &Node) -> Option<(Cidr, Ipv4Addr)> {
    let cidr = node.spec.as_ref()?.pod_cidr.as_deref()?.parse().ok()?;
    let ip = node
        .status
        .as_ref()?
        .addresses
        .iter()
        .flatten()
        .find(|a| a.type_ == "InternalIP")?
        .address
        .parse()
        .ok()?;
    Some((cidr, ip))
}

/// Keeps the routes to other nodes' pods until the task is dropped.
pub(crate) async fn run(nodenet: std::sync::Arc<NodeNetwork>) {
    let net = nodenet.when_ready().await;
    let own_ip: Option<Ipv4Addr> = nodenet.ip().parse().ok();
    let mut routed: HashMap<String, (Cidr, Ipv4Addr)> = HashMap::new();
    let mut macs: HashMap<String, Vec<u8>> = HashMap::new();
    let mut events = watcher(
        Api::<Node>::all(nodenet.client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .boxed();
    while let Some(ev) = events.next().await {
        let (applied, deleted) = match ev {
            Ok(watcher::Event::InitApply(n) | watcher::Event::Apply(n)) => (Some(n), None),
            Ok(watcher::Event::Delete(n)) => (None, n.metadata.name),
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "watching nodes failed; retrying");
                continue;
            }
        };
        if let Some(node) = applied {
            let name = node.metadata.name.clone().unwrap_or_default();
            if name == nodenet.name() {
                continue;
            }
            let want = pod_route(&node).filter(|(_, ip)| Some(*ip) != own_ip && !ip.is_loopback());
            let mac = overlay_mac(&node);
            if want == routed.get(&name).copied()
                && (!nodenet.config.overlay || macs.get(&name) == mac.as_ref())
            {
                continue;
            }
            if let Some((cidr, ip)) = routed.remove(&name) {
                let _ = net.unroute(cidr, ip).await;
            }
            if let Some((cidr, ip)) = want {
                let done = if nodenet.config.overlay {
                    let Some(mac) = mac else {
                        // Its overlay device is not published yet.
                        continue;
                    };
                    macs.insert(name.clone(), mac.clone());
                    net.route_via_overlay(cidr, ip, &mac).await
                } else {
                    net.route_via(cidr, ip).await
                };
                match done {
                    Ok(()) => {
                        tracing::info!(node = %name, pods = %format!("{}/{}", cidr.base, cidr.prefix), via = %ip, "routing a node's pods");
                        routed.insert(name, (cidr, ip));
                    }
                    Err(e) => {
                        tracing::warn!(node = %name, error = %format!("{e:#}"), "cannot route the node's pods (is its address on a link this node shares?)")
                    }
                }
            }
        }
        if let Some(name) = deleted
            && let Some((cidr, ip)) = routed.remove(&name)
        {
            let _ = net.unroute(cidr, ip).await;
        }
    }
}
