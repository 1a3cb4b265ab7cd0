//! Masquerade for pod traffic leaving the cluster's ranges, programmed into nf_tables over
//! netlink (no `nft` binary, no C library): a table `ip <name>` with a postrouting NAT chain
//! holding one rule, `ip saddr POD_RANGE ip daddr != POD_RANGE masquerade`. The table is
//! replaced atomically in one netlink batch.
//!
//! The cluster's ranges are routed locally (blackhole routes, less specific than the node
//! bridges' own routes) before the rule exists, so that an address with no pod behind it
//! never follows the default route off the machine.

use std::net::Ipv4Addr;

use anyhow::{Context, bail};
use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

use crate::ipam::Cidr;

// netlink and nfnetlink.
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLMSG_ERROR: u16 = 0x2;
const NLA_F_NESTED: u16 = 0x8000;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFPROTO_IPV4: u8 = 2;
// nf_tables messages and attributes.
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NF_INET_POST_ROUTING: u32 = 4;
/// Source NAT's priority (`srcnat`).
const NF_IP_PRI_NAT_SRC: u32 = 100;
const NF_ACCEPT: u32 = 1;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFT_REG_1: u32 = 1;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
/// Offsets of the source and destination addresses in the IPv4 header.
const IPV4_SADDR: u32 = 12;
const IPV4_DADDR: u32 = 16;

/// Netlink attributes being written into a message.
#[derive(Default)]
struct Attrs(Vec<u8>);

impl Attrs {
    fn put(&mut self, kind: u16, payload: &[u8]) -> &mut Self {
        let len = 4 + payload.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(payload);
        self.0.resize(self.0.len().next_multiple_of(4), 0);
        self
    }

    fn str(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut bytes = s.as_bytes().to_vec();
        bytes.push(0);
        self.put(kind, &bytes)
    }

    /// nf_tables integers are big-endian.
    fn be32(&mut self, kind: u16, v: u32) -> &mut Self {
        self.put(kind, &v.to_be_bytes())
    }

    fn nested(&mut self, kind: u16, inner: &Attrs) -> &mut Self {
        self.put(kind | NLA_F_NESTED, &inner.0)
    }
}

/// One expression of a rule: its name and attributes.
fn expr(name: &str, data: Option<Attrs>) -> Attrs {
    let mut e = Attrs::default();
    e.str(NFTA_EXPR_NAME, name);
    if let Some(d) = data {
        e.nested(NFTA_EXPR_DATA, &d);
    }
    e
}

fn value(bytes: &[u8]) -> Attrs {
    let mut v = Attrs::default();
    v.put(NFTA_DATA_VALUE, bytes);
    v
}

/// Loads the 4-byte address at `offset` of the IPv4 header, masks it to `cidr`'s prefix and
/// compares it with `cidr`'s network (`op`).
fn match_address(offset: u32, cidr: Cidr, op: u32) -> [Attrs; 3] {
    let mut load = Attrs::default();
    load.be32(NFTA_PAYLOAD_DREG, NFT_REG_1)
        .be32(NFTA_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER)
        .be32(NFTA_PAYLOAD_OFFSET, offset)
        .be32(NFTA_PAYLOAD_LEN, 4);
    let mask = mask_of(cidr.prefix);
    let mut bitwise = Attrs::default();
    bitwise
        .be32(NFTA_BITWISE_SREG, NFT_REG_1)
        .be32(NFTA_BITWISE_DREG, NFT_REG_1)
        .be32(NFTA_BITWISE_LEN, 4)
        .nested(NFTA_BITWISE_MASK, &value(&mask.to_be_bytes()))
        .nested(NFTA_BITWISE_XOR, &value(&[0; 4]));
    let network = u32::from(cidr.base) & mask;
    let mut cmp = Attrs::default();
    cmp.be32(NFTA_CMP_SREG, NFT_REG_1)
        .be32(NFTA_CMP_OP, op)
        .nested(NFTA_CMP_DATA, &value(&network.to_be_bytes()));
    [
        expr("payload", Some(load)),
        expr("bitwise", Some(bitwise)),
        expr("cmp", Some(cmp)),
    ]
}

fn mask_of(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    }
}

/// A batch of nf_tables requests.
struct Batch {
    buf: Vec<u8>,
    seq: u32,
    /// Sequence numbers of the requests that are acknowledged.
    acked: Vec<u32>,
}

impl Batch {
    fn new() -> Batch {
        let mut b = Batch {
            buf: Vec::new(),
            seq: 1,
            acked: Vec::new(),
        };
        b.message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0, &Attrs::default());
        b
    }

    /// Appends one message: the netlink header, the nfgenmsg header, the attributes.
    fn message(&mut self, kind: u16, flags: u16, family: u8, attrs: &Attrs) {
        let seq = self.seq;
        self.seq += 1;
        let len = 16 + 4 + attrs.0.len();
        self.buf.extend_from_slice(&(len as u32).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        // nfgenmsg: family, version 0, and the subsystem (in the batch markers) big-endian.
        self.buf.push(family);
        self.buf.push(0);
        let res_id = if family == 0 { NFNL_SUBSYS_NFTABLES } else { 0 };
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        self.buf.extend_from_slice(&attrs.0);
        if flags & NLM_F_ACK != 0 {
            self.acked.push(seq);
        }
    }

    fn nft(&mut self, msg: u16, flags: u16, attrs: &Attrs) {
        self.message(
            (NFNL_SUBSYS_NFTABLES << 8) | msg,
            NLM_F_REQUEST | NLM_F_ACK | flags,
            NFPROTO_IPV4,
            attrs,
        );
    }

    /// Sends the batch and waits for every acknowledgement; the first error fails it.
    fn commit(mut self) -> anyhow::Result<()> {
        self.message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, 0, &Attrs::default());
        let mut socket = Socket::new(NETLINK_NETFILTER).context("opening a netfilter socket")?;
        socket.bind_auto().context("binding the netfilter socket")?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .context("connecting the netfilter socket")?;
        socket.send(&self.buf, 0).context("sending to nf_tables")?;
        let mut pending = self.acked;
        let mut buf = vec![0u8; 64 * 1024];
        while !pending.is_empty() {
            let n = socket
                .recv(&mut &mut buf[..], 0)
                .context("reading nf_tables' answer")?;
            let mut at = 0;
            while at + 16 <= n {
                let field = |o: usize| {
                    [
                        buf[at + o],
                        buf[at + o + 1],
                        buf[at + o + 2],
                        buf[at + o + 3],
                    ]
                };
                let len = u32::from_ne_bytes(field(0)) as usize;
                let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
                let seq = u32::from_ne_bytes(field(8));
                if len < 16 || at + len > n {
                    break;
                }
                if kind == NLMSG_ERROR && len >= 20 {
                    let code = i32::from_ne_bytes(field(16));
                    if code != 0 {
                        bail!(
                            "nf_tables refused request {seq}: {}",
                            std::io::Error::from_raw_os_error(-code)
                        );
                    }
                    pending.retain(|s| *s != seq);
                }
                at += len.next_multiple_of(4);
            }
        }
        Ok(())
    }
}

/// Replaces table `ip <table>` with one that masquerades traffic from `pods` to anywhere
/// outside `pods`.
pub fn install_masquerade(table: &str, pods: Cidr) -> anyhow::Result<()> {
    let mut name = Attrs::default();
    name.str(NFTA_TABLE_NAME, table);
    let mut batch = Batch::new();
    // Create-then-delete makes the delete succeed whether or not the table existed.
    batch.nft(NFT_MSG_NEWTABLE, NLM_F_CREATE, &name);
    batch.nft(NFT_MSG_DELTABLE, 0, &name);
    batch.nft(NFT_MSG_NEWTABLE, NLM_F_CREATE, &name);
    let mut hook = Attrs::default();
    hook.be32(NFTA_HOOK_HOOKNUM, NF_INET_POST_ROUTING)
        .be32(NFTA_HOOK_PRIORITY, NF_IP_PRI_NAT_SRC);
    let mut chain = Attrs::default();
    chain
        .str(NFTA_CHAIN_TABLE, table)
        .str(NFTA_CHAIN_NAME, "postrouting")
        .nested(NFTA_CHAIN_HOOK, &hook)
        .be32(NFTA_CHAIN_POLICY, NF_ACCEPT)
        .str(NFTA_CHAIN_TYPE, "nat");
    batch.nft(NFT_MSG_NEWCHAIN, NLM_F_CREATE, &chain);
    let mut exprs = Attrs::default();
    for e in match_address(IPV4_SADDR, pods, NFT_CMP_EQ)
        .iter()
        .chain(match_address(IPV4_DADDR, pods, NFT_CMP_NEQ).iter())
    {
        exprs.nested(NFTA_LIST_ELEM, e);
    }
    exprs.nested(NFTA_LIST_ELEM, &expr("masq", None));
    let mut rule = Attrs::default();
    rule.str(NFTA_RULE_TABLE, table)
        .str(NFTA_RULE_CHAIN, "postrouting")
        .nested(NFTA_RULE_EXPRESSIONS, &exprs);
    batch.nft(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, &rule);
    batch.commit()
}

/// Removes table `ip <table>` if it exists.
pub fn remove_masquerade(table: &str) -> anyhow::Result<()> {
    let mut name = Attrs::default();
    name.str(NFTA_TABLE_NAME, table);
    let mut batch = Batch::new();
    batch.nft(NFT_MSG_NEWTABLE, NLM_F_CREATE, &name);
    batch.nft(NFT_MSG_DELTABLE, 0, &name);
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
    fn attributes_are_padded_and_nested() {
        let mut a = Attrs::default();
        a.str(1, "ab");
        assert_eq!(a.0, [7, 0, 1, 0, b'a', b'b', 0, 0]);
        let mut outer = Attrs::default();
        outer.nested(4, &a);
        assert_eq!(&outer.0[..4], &[12, 0, 4, 0x80]);
        let mut b = Attrs::default();
        b.be32(2, 100);
        assert_eq!(b.0, [8, 0, 2, 0, 0, 0, 0, 100]);
    }

    #[test]
    fn masks_and_ranges() {
        assert_eq!(mask_of(16), 0xffff_0000);
        assert_eq!(mask_of(0), 0);
        assert_eq!(mask_of(32), u32::MAX);
        let pods: Cidr = "10.244.0.0/16".parse().unwrap();
        assert!(contains(pods, "10.244.3.4".parse().unwrap()));
        assert!(!contains(pods, "10.245.0.1".parse().unwrap()));
    }
}
