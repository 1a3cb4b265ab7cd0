//! Nodes on one machine (`tug up`): each node gets a network namespace of its own, joined to
//! the host by a veth pair whose host end sits on one bridge, so that traffic between nodes
//! really crosses a link. The namespaces are named (`/run/netns/NAME`, as `ip netns` makes
//! them) so that they outlive the process that made them.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkInfo};
use rtnetlink::{LinkBridge, LinkUnspec, LinkVeth};

use crate::ipam::Cidr;
use crate::{check_name, handle_in_ns, link_index, netlink};

/// Where named network namespaces live.
pub const NETNS_DIR: &str = "/run/netns";

/// The path of the named network namespace `name`.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Creates the named network namespace `name`, with its loopback up.
pub async fn create_netns(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.contains('/') {
        anyhow::bail!("{name:?} is not a namespace name");
    }
    std::fs::create_dir_all(NETNS_DIR).with_context(|| format!("creating {NETNS_DIR}"))?;
    let path = netns_path(name);
    std::fs::File::create_new(&path)
        .with_context(|| format!("creating {} (is the namespace in use?)", path.display()))?;
    let target = path.clone();
    // A thread of its own enters a new namespace and pins it with a bind mount.
    let made = std::thread::spawn(move || -> anyhow::Result<()> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .context("creating a network namespace")?;
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .context("pinning the network namespace")?;
        Ok(())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the namespace thread panicked"))?;
    if let Err(e) = made {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    let handle = handle_in_ns(&path).await?;
    let lo = link_index(&handle, "lo").await?.context("no loopback")?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(lo).up().build())
        .execute()
        .await
        .context("bringing up the namespace's loopback")?;
    Ok(())
}

/// Pins the calling thread's network namespace at `path` (a new file), so that processes in
/// other namespaces can reach back into it (`tug up` pins the host's for loopback registries).
pub fn pin_current_netns(path: &Path) -> anyhow::Result<()> {
    std::fs::File::create_new(path).with_context(|| format!("creating {}", path.display()))?;
    nix::mount::mount(
        Some("/proc/thread-self/ns/net"),
        path,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .with_context(|| format!("pinning the network namespace at {}", path.display()))
}

/// Removes the named network namespace `name` (it goes once no process is left in it).
pub fn delete_netns(name: &str) -> anyhow::Result<()> {
    let path = netns_path(name);
    if !path.exists() {
        return Ok(());
    }
    let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))
}

/// Creates bridge `name` on the host holding `addr/prefix`, up.
pub async fn create_bridge(name: &str, addr: Ipv4Addr, prefix: u8) -> anyhow::Result<()> {
    check_name(name)?;
    let handle = netlink::connect()?;
    if link_index(&handle, name).await?.is_none() {
        handle
            .link()
            .add(LinkBridge::new(name).up().build())
            .execute()
            .await
            .with_context(|| format!("creating bridge {name}"))?;
    }
    let index = link_index(&handle, name)
        .await?
        .context("the bridge vanished")?;
    handle
        .address()
        .add(index, addr.into(), prefix)
        .execute()
        .await
        .or_else(exists_ok)
        .with_context(|| format!("adding {addr}/{prefix} to {name}"))?;
    crate::bridge_up(&handle, index).await
}

/// Joins namespace `netns` to `bridge`: a veth pair, `host_end` on the bridge and `eth0`
/// inside holding `addr/prefix`, both up.
pub async fn connect(
    bridge: &str,
    host_end: &str,
    netns: &str,
    addr: Ipv4Addr,
    prefix: u8,
) -> anyhow::Result<()> {
    check_name(host_end)?;
    let handle = netlink::connect()?;
    let bridge_index = link_index(&handle, bridge)
        .await?
        .with_context(|| format!("no bridge {bridge}"))?;
    let ns = std::fs::File::open(netns_path(netns))
        .with_context(|| format!("opening namespace {netns}"))?;
    let mut pair = LinkVeth::new(host_end, "eth0")
        .controller(bridge_index)
        .up()
        .build();
    for attr in pair.attributes.iter_mut() {
        if let LinkAttribute::LinkInfo(infos) = attr {
            for info in infos.iter_mut() {
                if let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))) = info {
                    peer.attributes
                        .push(LinkAttribute::NetNsFd(std::os::fd::AsRawFd::as_raw_fd(&ns)));
                }
            }
        }
    }
    handle
        .link()
        .add(pair)
        .execute()
        .await
        .with_context(|| format!("creating veth {host_end}"))?;
    let inner = handle_in_ns(&netns_path(netns)).await?;
    let eth0 = link_index(&inner, "eth0")
        .await?
        .context("the veth did not arrive in the namespace")?;
    inner
        .address()
        .add(eth0, addr.into(), prefix)
        .execute()
        .await
        .context("adding the node's address")?;
    inner
        .link()
        .set(LinkUnspec::new_with_index(eth0).up().build())
        .execute()
        .await?;
    Ok(())
}

/// Sets a link up or down (cutting a node off, and back).
pub async fn set_link_up(name: &str, up: bool) -> anyhow::Result<()> {
    let handle = netlink::connect()?;
    let index = link_index(&handle, name)
        .await?
        .with_context(|| format!("no link {name}"))?;
    let msg = LinkUnspec::new_with_index(index);
    let msg = if up { msg.up() } else { msg.down() };
    handle.link().set(msg.build()).execute().await?;
    Ok(())
}

/// Deletes link `name` on the host if it exists.
pub async fn delete_link(name: &str) -> anyhow::Result<()> {
    let handle = netlink::connect()?;
    if let Some(index) = link_index(&handle, name).await? {
        handle.link().del(index).execute().await?;
    }
    Ok(())
}

/// Routes `range` to a blackhole on the host at `metric` (a cluster's own, so that two
/// clusters' routes of one range stay apart); `false` if that route was there already.
pub async fn add_blackhole(range: Cidr, metric: u32) -> anyhow::Result<bool> {
    netlink::add_blackhole(&netlink::connect()?, range, metric).await
}

/// Removes the host's blackhole route of `range` at `metric`, if there is one.
pub async fn remove_blackhole(range: Cidr, metric: u32) -> anyhow::Result<()> {
    netlink::delete_route(&netlink::connect()?, netlink::blackhole(range, metric)).await
}

/// The host's addresses inside `range`, with the names of the links holding them: a range
/// `tug up` is about to use must hold none.
pub async fn addresses_in(range: Cidr) -> anyhow::Result<Vec<(String, Ipv4Addr)>> {
    use futures::TryStreamExt;
    use rtnetlink::packet_route::address::AddressAttribute;
    let handle = netlink::connect()?;
    let mut found = Vec::new();
    let mut addrs = handle.address().get().execute();
    while let Some(a) = addrs.try_next().await? {
        for attr in &a.attributes {
            if let AddressAttribute::Address(std::net::IpAddr::V4(ip)) = attr
                && range.contains(*ip)
            {
                found.push((a.header.index, *ip));
            }
        }
    }
    let mut named = Vec::new();
    for (index, ip) in found {
        let mut links = handle.link().get().match_index(index).execute();
        let name = links
            .try_next()
            .await
            .ok()
            .flatten()
            .and_then(|l| {
                l.attributes.into_iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n),
                    _ => None,
                })
            })
            .unwrap_or_else(|| format!("link {index}"));
        named.push((name, ip));
    }
    Ok(named)
}

/// Opens (and closes) a TCP connection to `addr` from inside namespace `netns`: whether a
/// node can reach the API server, for `tug up`'s diagnosis when nodes do not become Ready.
pub fn probe_from(
    netns: &str,
    addr: std::net::SocketAddr,
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    let ns = std::fs::File::open(netns_path(netns))
        .with_context(|| format!("opening namespace {netns}"))?;
    // A thread of its own joins the namespace.
    std::thread::scope(|s| {
        s.spawn(|| -> anyhow::Result<()> {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .context("joining the namespace")?;
            std::net::TcpStream::connect_timeout(&addr, timeout)
                .with_context(|| format!("connecting to {addr}"))?;
            Ok(())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the probing thread panicked"))?
    })
}

fn exists_ok(e: rtnetlink::Error) -> Result<(), rtnetlink::Error> {
    if netlink::failed_with(&e, nix::errno::Errno::EEXIST) {
        Ok(())
    } else {
        Err(e)
    }
}
