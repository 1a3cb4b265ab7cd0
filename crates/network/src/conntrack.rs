//! Connection tracking entries left by Service endpoints that went away. A connection
//! attempt DNATed to an endpoint that never answered (a pod on a node that was cut off) keeps
//! its conntrack entry for two minutes; a client that reuses its source port within that
//! time is sent to the dead endpoint again, whatever the rules now say. When an endpoint
//! leaves a Service, the entries that were DNATed to it and never saw a reply are deleted
//! through ctnetlink (answered connections are left alone: a terminating pod keeps serving
//! its open connections, as with kube-proxy).

use std::net::{Ipv4Addr, SocketAddrV4};

use anyhow::{Context, bail};
use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 0x2;
const NLMSG_DONE: u16 = 0x3;
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const AF_INET: u8 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const IPS_SEEN_REPLY: u32 = 1 << 1;
const TYPE_MASK: u16 = 0x3fff;

/// One entry as far as this module reads it.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    /// The original-direction tuple attribute, whole, as the kernel wrote it (sent back to
    /// delete the entry).
    orig: Vec<u8>,
    /// Where replies come from: the endpoint, after DNAT.
    reply_source: Option<SocketAddrV4>,
    protocol: u8,
    answered: bool,
}

/// The attributes in `buf`: (type, payload, the whole attribute).
fn attributes(buf: &[u8]) -> Vec<(u16, &[u8], &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= buf.len() {
        let len = u16::from_ne_bytes([buf[at], buf[at + 1]]) as usize;
        let kind = u16::from_ne_bytes([buf[at + 2], buf[at + 3]]) & TYPE_MASK;
        if len < 4 || at + len > buf.len() {
            break;
        }
        out.push((kind, &buf[at + 4..at + len], &buf[at..at + len]));
        at += len.next_multiple_of(4);
    }
    out
}

fn find(buf: &[u8], kind: u16) -> Option<&[u8]> {
    attributes(buf)
        .into_iter()
        .find(|(k, _, _)| *k == kind)
        .map(|(_, p, _)| p)
}

/// Reads one conntrack message's attributes.
fn entry(attrs: &[u8]) -> Option<Entry> {
    let all = attributes(attrs);
    let orig = all
        .iter()
        .find(|(k, _, _)| *k == CTA_TUPLE_ORIG)?
        .2
        .to_vec();
    let reply = find(attrs, CTA_TUPLE_REPLY)?;
    let proto = find(reply, CTA_TUPLE_PROTO)?;
    let protocol = *find(proto, CTA_PROTO_NUM)?.first()?;
    let ip = find(find(reply, CTA_TUPLE_IP)?, CTA_IP_V4_SRC)?;
    let port = find(proto, CTA_PROTO_SRC_PORT);
    let reply_source = match (ip, port) {
        ([a, b, c, d], Some([p0, p1])) => Some(SocketAddrV4::new(
            Ipv4Addr::new(*a, *b, *c, *d),
            u16::from_be_bytes([*p0, *p1]),
        )),
        _ => None,
    };
    let status = find(attrs, CTA_STATUS)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_be_bytes)
        .unwrap_or(0);
    Some(Entry {
        orig,
        reply_source,
        protocol,
        answered: status & IPS_SEEN_REPLY != 0,
    })
}

fn socket() -> anyhow::Result<Socket> {
    let mut socket = Socket::new(NETLINK_NETFILTER).context("opening a netfilter socket")?;
    socket.bind_auto().context("binding the netfilter socket")?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .context("connecting the netfilter socket")?;
    Ok(socket)
}

fn message(kind: u16, flags: u16, seq: u32, attrs: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(20 + attrs.len());
    buf.extend_from_slice(&((20 + attrs.len()) as u32).to_ne_bytes());
    buf.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | kind).to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&[AF_INET, 0, 0, 0]);
    buf.extend_from_slice(attrs);
    buf
}

/// Calls `each` with every message of the answers to what was sent on `socket`, until
/// the kernel says done (a dump) or acknowledges (a request).
fn answers(
    socket: &mut Socket,
    mut each: impl FnMut(u16, &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = socket
            .recv(&mut &mut buf[..], 0)
            .context("reading ctnetlink's answer")?;
        let mut at = 0;
        while at + 16 <= n {
            let len = u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
            let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
            if len < 16 || at + len > n {
                bail!("ctnetlink sent a truncated message");
            }
            match kind {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let code = if len >= 20 {
                        i32::from_ne_bytes([buf[at + 16], buf[at + 17], buf[at + 18], buf[at + 19]])
                    } else {
                        0
                    };
                    // ENOENT: the entry expired meanwhile.
                    if code != 0 && code != -2 {
                        bail!(
                            "ctnetlink refused: {}",
                            std::io::Error::from_raw_os_error(-code)
                        );
                    }
                    return Ok(());
                }
                _ if len >= 20 => each(kind, &buf[at + 20..at + len])?,
                _ => {}
            }
            at += len.next_multiple_of(4);
        }
    }
}

fn dump() -> anyhow::Result<Vec<Entry>> {
    let mut socket = socket()?;
    socket
        .send(
            &message(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, 1, &[]),
            0,
        )
        .context("asking ctnetlink for its entries")?;
    let mut out = Vec::new();
    answers(&mut socket, |_, attrs| {
        out.extend(entry(attrs));
        Ok(())
    })?;
    Ok(out)
}

fn unanswered(gone: &[(u8, SocketAddrV4)]) -> anyhow::Result<Vec<Entry>> {
    Ok(dump()?
        .into_iter()
        .filter(|e| {
            !e.answered
                && e.reply_source
                    .is_some_and(|s| gone.contains(&(e.protocol, s)))
        })
        .collect())
}

/// How many unanswered entries were DNATed to `endpoints` (protocol number, endpoint), in
/// the current network namespace.
pub fn unanswered_count(endpoints: &[(u8, SocketAddrV4)]) -> anyhow::Result<usize> {
    Ok(unanswered(endpoints)?.len())
}

/// Deletes the unanswered entries DNATed to `gone` (protocol number, endpoint), in the
/// current network namespace; returns how many.
pub fn forget_unanswered(gone: &[(u8, SocketAddrV4)]) -> anyhow::Result<usize> {
    if gone.is_empty() {
        return Ok(0);
    }
    let stale = unanswered(gone)?;
    for (i, e) in stale.iter().enumerate() {
        let mut socket = socket()?;
        socket
            .send(
                &message(
                    IPCTNL_MSG_CT_DELETE,
                    NLM_F_REQUEST | NLM_F_ACK,
                    i as u32 + 2,
                    &e.orig,
                ),
                0,
            )
            .context("deleting a conntrack entry")?;
        answers(&mut socket, |_, _| Ok(()))?;
    }
    Ok(stale.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(payload);
        a.resize(a.len().next_multiple_of(4), 0);
        a
    }

    fn tuple(ip: [u8; 4], port: u16) -> Vec<u8> {
        let ip = attr(CTA_TUPLE_IP | 0x8000, &attr(CTA_IP_V4_SRC, &ip));
        let mut proto = attr(CTA_PROTO_NUM, &[6]);
        proto.extend(attr(CTA_PROTO_SRC_PORT, &port.to_be_bytes()));
        let mut t = ip;
        t.extend(attr(CTA_TUPLE_PROTO | 0x8000, &proto));
        t
    }

    #[test]
    fn entries_read_their_reply_source_and_whether_answered() {
        let orig = attr(CTA_TUPLE_ORIG | 0x8000, &tuple([10, 0, 0, 9], 40000));
        let mut msg = orig.clone();
        msg.extend(attr(CTA_TUPLE_REPLY | 0x8000, &tuple([10, 1, 0, 2], 8080)));
        msg.extend(attr(CTA_STATUS, &0x8u32.to_be_bytes()));
        let e = entry(&msg).expect("entry");
        assert_eq!(
            e,
            Entry {
                orig,
                reply_source: Some("10.1.0.2:8080".parse().expect("addr")),
                protocol: 6,
                answered: false,
            }
        );
        let mut answered = msg.clone();
        answered.extend(attr(CTA_STATUS, &0xau32.to_be_bytes()));
        // The first status attribute counts.
        assert!(!entry(&answered).expect("entry").answered);
        assert!(entry(&[1, 2, 3]).is_none());
    }
}
