//! Small netlink helpers the crate's modules share: a handle, errno checks, blackhole routes.

use std::net::Ipv4Addr;

use anyhow::Context;
use nix::errno::Errno;
use rtnetlink::packet_route::route::{RouteMessage, RouteType};
use rtnetlink::{Handle, RouteMessageBuilder};

use crate::ipam::Cidr;

/// A netlink handle in the calling thread's namespace, its connection driven by tokio.
pub(crate) fn connect() -> anyhow::Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection().context("opening netlink")?;
    tokio::spawn(conn);
    Ok(handle)
}

/// Whether a netlink request failed with `errno`.
pub(crate) fn failed_with(e: &rtnetlink::Error, errno: Errno) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(n) if n.raw_code() == -(errno as i32))
}

/// A blackhole route of `range`, at `metric` unless it is 0.
pub(crate) fn blackhole(range: Cidr, metric: u32) -> RouteMessage {
    let b = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(range.base, range.prefix)
        .kind(RouteType::BlackHole);
    if metric == 0 {
        b.build()
    } else {
        b.priority(metric).build()
    }
}

/// Routes `range` to a blackhole at `metric`; `false` if that route was there already.
pub(crate) async fn add_blackhole(
    handle: &Handle,
    range: Cidr,
    metric: u32,
) -> anyhow::Result<bool> {
    match handle.route().add(blackhole(range, metric)).execute().await {
        Ok(()) => Ok(true),
        Err(e) if failed_with(&e, Errno::EEXIST) => Ok(false),
        Err(e) => {
            Err(e).with_context(|| format!("routing {}/{} locally", range.base, range.prefix))
        }
    }
}

/// Deletes a route; one that is gone already is fine.
pub(crate) async fn delete_route(handle: &Handle, route: RouteMessage) -> anyhow::Result<()> {
    match handle.route().del(route).execute().await {
        Ok(()) => Ok(()),
        Err(e) if failed_with(&e, Errno::ESRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
