//! nf_tables over netlink, without the `nft` binary or a C library: a [`Batch`] of table,
//! chain, rule, map and map-element requests that the kernel applies atomically, and a
//! [`Rule`] builder holding the few expressions tugboat's rules are made of (address, port and
//! protocol matches, marks, random numbers, verdict maps, DNAT and masquerade).
//!
//! Everything is IPv4 (`ip` family tables).

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
// nf_tables messages.
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_DELSET: u16 = 11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
// Attributes.
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NF_ACCEPT: u32 = 1;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_DATA_TYPE: u16 = 6;
const NFTA_SET_DATA_LEN: u16 = 7;
const NFTA_SET_ID: u16 = 10;
const NFTA_SET_TIMEOUT: u16 = 11;
const NFT_SET_TIMEOUT: u32 = 0x10;
const NFT_SET_EVAL: u32 = 0x20;
const NFTA_DYNSET_SET_NAME: u16 = 1;
const NFTA_DYNSET_OP: u16 = 3;
const NFTA_DYNSET_SREG_KEY: u16 = 4;
const NFTA_DYNSET_TIMEOUT: u16 = 6;
const NFT_DYNSET_OP_UPDATE: u32 = 1;
const NFT_SET_MAP: u32 = 0x8;
const NFT_DATA_VERDICT: u32 = 0xffff_ff00;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
// Registers.
const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_REG_2: u32 = 2;
// Expressions' attributes.
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
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
const NFT_CMP_LTE: u32 = 3;
const NFT_CMP_GTE: u32 = 5;
const NFTA_CT_DREG: u16 = 1;
const NFTA_CT_KEY: u16 = 2;
const NFT_CT_STATE: u32 = 0;
const CT_STATE_ESTABLISHED: u32 = 1 << 1;
const CT_STATE_RELATED: u32 = 1 << 2;
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFTA_META_SREG: u16 = 3;
const NFT_META_MARK: u32 = 3;
const NFT_META_L4PROTO: u32 = 16;
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_NG_DREG: u16 = 1;
const NFTA_NG_MODULUS: u16 = 2;
const NFTA_NG_TYPE: u16 = 3;
const NFT_NG_RANDOM: u32 = 1;
const NFTA_LOOKUP_SET: u16 = 1;
const NFTA_LOOKUP_SREG: u16 = 2;
const NFTA_LOOKUP_DREG: u16 = 3;
const NFTA_NAT_TYPE: u16 = 1;
const NFTA_NAT_FAMILY: u16 = 2;
const NFTA_NAT_REG_ADDR_MIN: u16 = 3;
const NFTA_NAT_REG_PROTO_MIN: u16 = 5;
const NFT_NAT_DNAT: u32 = 1;
/// Offsets in the IPv4 header, and of the destination port in TCP's and UDP's.
const IPV4_SADDR: u32 = 12;
const IPV4_DADDR: u32 = 16;
const TRANSPORT_DPORT: u32 = 2;
/// nftables' data type numbers (for `nft list` to print keys): IPv4 address, port.
pub const TYPE_IPV4_ADDR: u32 = 7;
pub const TYPE_INET_SERVICE: u32 = 13;

/// Netfilter hooks.
#[derive(Clone, Copy, Debug)]
pub enum Hook {
    Prerouting = 0,
    Forward = 2,
    Output = 3,
    Postrouting = 4,
}

/// Where a chain is attached: a base chain's hook, priority and type (`nat`, `filter`).
#[derive(Clone, Copy, Debug)]
pub struct BaseChain {
    pub hook: Hook,
    pub priority: i32,
    pub kind: &'static str,
}

/// A verdict: a final one, or one that continues in another chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    /// Back to the chain that jumped here.
    Return,
    Jump(String),
    Goto(String),
}

impl Verdict {
    fn attrs(&self) -> Attrs {
        // NF_DROP 0, NF_ACCEPT 1; NFT_RETURN, NFT_JUMP and NFT_GOTO are -5, -3 and -4.
        let (code, chain) = match self {
            Verdict::Accept => (1i32, None),
            Verdict::Drop => (0, None),
            Verdict::Return => (-5, None),
            Verdict::Jump(c) => (-3, Some(c)),
            Verdict::Goto(c) => (-4, Some(c)),
        };
        let mut v = Attrs::default();
        v.put(NFTA_VERDICT_CODE, &code.to_be_bytes());
        if let Some(chain) = chain {
            v.str(NFTA_VERDICT_CHAIN, chain);
        }
        let mut data = Attrs::default();
        data.nested(NFTA_DATA_VERDICT, &v);
        data
    }
}

/// Netlink attributes being written into a message.
#[derive(Default, Clone)]
pub(crate) struct Attrs(pub(crate) Vec<u8>);

impl Attrs {
    pub(crate) fn put(&mut self, kind: u16, payload: &[u8]) -> &mut Self {
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

fn value(bytes: &[u8]) -> Attrs {
    let mut v = Attrs::default();
    v.put(NFTA_DATA_VALUE, bytes);
    v
}

/// A rule: expressions evaluated in order.
#[derive(Default, Clone)]
pub struct Rule {
    exprs: Vec<Attrs>,
}

impl Rule {
    /// An empty rule (it matches everything).
    pub fn new() -> Rule {
        Rule::default()
    }

    fn expr(mut self, name: &str, data: Option<Attrs>) -> Rule {
        let mut e = Attrs::default();
        e.str(NFTA_EXPR_NAME, name);
        if let Some(d) = data {
            e.nested(NFTA_EXPR_DATA, &d);
        }
        self.exprs.push(e);
        self
    }

    fn load(self, base: u32, offset: u32, len: u32, reg: u32) -> Rule {
        let mut a = Attrs::default();
        a.be32(NFTA_PAYLOAD_DREG, reg)
            .be32(NFTA_PAYLOAD_BASE, base)
            .be32(NFTA_PAYLOAD_OFFSET, offset)
            .be32(NFTA_PAYLOAD_LEN, len);
        self.expr("payload", Some(a))
    }

    fn cmp(self, op: u32, data: &[u8]) -> Rule {
        let mut a = Attrs::default();
        a.be32(NFTA_CMP_SREG, NFT_REG_1)
            .be32(NFTA_CMP_OP, op)
            .nested(NFTA_CMP_DATA, &value(data));
        self.expr("cmp", Some(a))
    }

    fn and_mask(self, mask: &[u8]) -> Rule {
        let mut a = Attrs::default();
        a.be32(NFTA_BITWISE_SREG, NFT_REG_1)
            .be32(NFTA_BITWISE_DREG, NFT_REG_1)
            .be32(NFTA_BITWISE_LEN, mask.len() as u32)
            .nested(NFTA_BITWISE_MASK, &value(mask))
            .nested(NFTA_BITWISE_XOR, &value(&vec![0; mask.len()]));
        self.expr("bitwise", Some(a))
    }

    fn address(self, offset: u32, cidr: Cidr, op: u32) -> Rule {
        let mask = mask_of(cidr.prefix);
        let network = u32::from(cidr.base) & mask;
        let r = self.load(NFT_PAYLOAD_NETWORK_HEADER, offset, 4, NFT_REG_1);
        let r = if mask == u32::MAX {
            r
        } else {
            r.and_mask(&mask.to_be_bytes())
        };
        r.cmp(op, &network.to_be_bytes())
    }

    /// `ip saddr CIDR` (or `!=` with `negate`).
    pub fn saddr(self, cidr: Cidr, negate: bool) -> Rule {
        self.address(
            IPV4_SADDR,
            cidr,
            if negate { NFT_CMP_NEQ } else { NFT_CMP_EQ },
        )
    }

    /// `ip daddr CIDR` (or `!=` with `negate`).
    pub fn daddr(self, cidr: Cidr, negate: bool) -> Rule {
        self.address(
            IPV4_DADDR,
            cidr,
            if negate { NFT_CMP_NEQ } else { NFT_CMP_EQ },
        )
    }

    /// `meta l4proto PROTO` (6 TCP, 17 UDP, 132 SCTP).
    pub fn l4proto(self, proto: u8) -> Rule {
        let mut a = Attrs::default();
        a.be32(NFTA_META_DREG, NFT_REG_1)
            .be32(NFTA_META_KEY, NFT_META_L4PROTO);
        self.expr("meta", Some(a)).cmp(NFT_CMP_EQ, &[proto])
    }

    /// `th dport LO-HI` (after a protocol match that has ports).
    pub fn dport_range(self, lo: u16, hi: u16) -> Rule {
        if lo == hi {
            return self.dport(lo);
        }
        self.load(NFT_PAYLOAD_TRANSPORT_HEADER, TRANSPORT_DPORT, 2, NFT_REG_1)
            .cmp(NFT_CMP_GTE, &lo.to_be_bytes())
            .cmp(NFT_CMP_LTE, &hi.to_be_bytes())
    }

    /// `ct state established,related`.
    pub fn established(self) -> Rule {
        let mut a = Attrs::default();
        a.be32(NFTA_CT_DREG, NFT_REG_1)
            .be32(NFTA_CT_KEY, NFT_CT_STATE);
        let bits = CT_STATE_ESTABLISHED | CT_STATE_RELATED;
        self.expr("ct", Some(a))
            .and_mask(&bits.to_ne_bytes())
            .cmp(NFT_CMP_NEQ, &0u32.to_ne_bytes())
    }

    /// `ip saddr @SET`: the source address is in the set.
    pub fn saddr_in(self, set: &str) -> Rule {
        let mut a = Attrs::default();
        a.str(NFTA_LOOKUP_SET, set)
            .be32(NFTA_LOOKUP_SREG, NFT_REG_1);
        self.load(NFT_PAYLOAD_NETWORK_HEADER, IPV4_SADDR, 4, NFT_REG_1)
            .expr("lookup", Some(a))
    }

    /// `update @SET { ip saddr timeout SECONDS }`: remembers the source address for a while.
    pub fn remember_saddr(self, set: &str, seconds: u32) -> Rule {
        let mut a = Attrs::default();
        a.str(NFTA_DYNSET_SET_NAME, set)
            .be32(NFTA_DYNSET_OP, NFT_DYNSET_OP_UPDATE)
            .be32(NFTA_DYNSET_SREG_KEY, NFT_REG_1)
            .put(
                NFTA_DYNSET_TIMEOUT,
                &(u64::from(seconds) * 1000).to_be_bytes(),
            );
        self.load(NFT_PAYLOAD_NETWORK_HEADER, IPV4_SADDR, 4, NFT_REG_1)
            .expr("dynset", Some(a))
    }

    /// `ip saddr vmap @SET`.
    pub fn saddr_vmap(self, set: &str) -> Rule {
        self.load(NFT_PAYLOAD_NETWORK_HEADER, IPV4_SADDR, 4, NFT_REG_1)
            .verdict_map(set)
    }

    /// `th dport PORT` (after a protocol match that has ports).
    pub fn dport(self, port: u16) -> Rule {
        self.load(NFT_PAYLOAD_TRANSPORT_HEADER, TRANSPORT_DPORT, 2, NFT_REG_1)
            .cmp(NFT_CMP_EQ, &port.to_be_bytes())
    }

    fn meta_mark(self) -> Rule {
        let mut a = Attrs::default();
        a.be32(NFTA_META_DREG, NFT_REG_1)
            .be32(NFTA_META_KEY, NFT_META_MARK);
        self.expr("meta", Some(a))
    }

    /// `meta mark & BITS == BITS`.
    pub fn marked(self, bits: u32) -> Rule {
        self.meta_mark()
            .and_mask(&bits.to_ne_bytes())
            .cmp(NFT_CMP_EQ, &bits.to_ne_bytes())
    }

    /// `meta mark set mark | BITS`.
    pub fn set_mark(self, bits: u32) -> Rule {
        // mark = (mark & !bits) ^ bits
        let mut or = Attrs::default();
        or.be32(NFTA_BITWISE_SREG, NFT_REG_1)
            .be32(NFTA_BITWISE_DREG, NFT_REG_1)
            .be32(NFTA_BITWISE_LEN, 4)
            .nested(NFTA_BITWISE_MASK, &value(&(!bits).to_ne_bytes()))
            .nested(NFTA_BITWISE_XOR, &value(&bits.to_ne_bytes()));
        let mut set = Attrs::default();
        set.be32(NFTA_META_KEY, NFT_META_MARK)
            .be32(NFTA_META_SREG, NFT_REG_1);
        self.meta_mark()
            .expr("bitwise", Some(or))
            .expr("meta", Some(set))
    }

    /// `numgen random mod MODULUS == 0`: matches with probability 1/MODULUS.
    pub fn one_in(self, modulus: u32) -> Rule {
        let mut a = Attrs::default();
        a.be32(NFTA_NG_DREG, NFT_REG_1)
            .be32(NFTA_NG_MODULUS, modulus.max(1))
            .be32(NFTA_NG_TYPE, NFT_NG_RANDOM);
        self.expr("numgen", Some(a))
            .cmp(NFT_CMP_EQ, &0u32.to_ne_bytes())
    }

    fn verdict_map(self, set: &str) -> Rule {
        let mut a = Attrs::default();
        a.str(NFTA_LOOKUP_SET, set)
            .be32(NFTA_LOOKUP_SREG, NFT_REG_1)
            .be32(NFTA_LOOKUP_DREG, NFT_REG_VERDICT);
        self.expr("lookup", Some(a))
    }

    /// `ip daddr vmap @SET`.
    pub fn daddr_vmap(self, set: &str) -> Rule {
        self.load(NFT_PAYLOAD_NETWORK_HEADER, IPV4_DADDR, 4, NFT_REG_1)
            .verdict_map(set)
    }

    /// `th dport vmap @SET`.
    pub fn dport_vmap(self, set: &str) -> Rule {
        self.load(NFT_PAYLOAD_TRANSPORT_HEADER, TRANSPORT_DPORT, 2, NFT_REG_1)
            .verdict_map(set)
    }

    fn immediate(self, reg: u32, data: Attrs) -> Rule {
        let mut a = Attrs::default();
        a.be32(NFTA_IMMEDIATE_DREG, reg)
            .nested(NFTA_IMMEDIATE_DATA, &data);
        self.expr("immediate", Some(a))
    }

    /// `jump CHAIN` or `goto CHAIN`.
    pub fn verdict(self, v: &Verdict) -> Rule {
        self.immediate(NFT_REG_VERDICT, v.attrs())
    }

    /// `dnat to ADDR:PORT`.
    pub fn dnat(self, addr: Ipv4Addr, port: u16) -> Rule {
        let mut a = Attrs::default();
        a.be32(NFTA_NAT_TYPE, NFT_NAT_DNAT)
            .be32(NFTA_NAT_FAMILY, u32::from(NFPROTO_IPV4))
            .be32(NFTA_NAT_REG_ADDR_MIN, NFT_REG_1)
            .be32(NFTA_NAT_REG_PROTO_MIN, NFT_REG_2);
        self.immediate(NFT_REG_1, value(&addr.octets()))
            .immediate(NFT_REG_2, value(&port.to_be_bytes()))
            .expr("nat", Some(a))
    }

    /// `masquerade`.
    pub fn masquerade(self) -> Rule {
        self.expr("masq", None)
    }

    fn attrs(&self) -> Attrs {
        let mut list = Attrs::default();
        for e in &self.exprs {
            list.nested(NFTA_LIST_ELEM, e);
        }
        list
    }
}

pub use tug_api::cidr::mask_of;

/// A batch of nf_tables requests, applied all or nothing by [`Batch::commit`].
pub struct Batch {
    buf: Vec<u8>,
    seq: u32,
    /// Sequence numbers of the requests that are acknowledged.
    acked: Vec<u32>,
}

impl Default for Batch {
    fn default() -> Self {
        Batch::new()
    }
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        let mut b = Batch {
            buf: Vec::new(),
            seq: 1,
            acked: Vec::new(),
        };
        b.message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0, &Attrs::default());
        b
    }

    /// Whether the batch holds no request.
    pub fn is_empty(&self) -> bool {
        self.acked.is_empty()
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

    /// Creates table `ip TABLE` if it does not exist.
    pub fn add_table(&mut self, table: &str) {
        let mut name = Attrs::default();
        name.str(NFTA_TABLE_NAME, table);
        self.nft(NFT_MSG_NEWTABLE, NLM_F_CREATE, &name);
    }

    /// Deletes table `ip TABLE` and all it holds, whether or not it exists.
    pub fn delete_table(&mut self, table: &str) {
        let mut name = Attrs::default();
        name.str(NFTA_TABLE_NAME, table);
        // Create-then-delete makes the delete succeed whether or not the table existed.
        self.nft(NFT_MSG_NEWTABLE, NLM_F_CREATE, &name);
        self.nft(NFT_MSG_DELTABLE, 0, &name);
    }

    /// Creates a chain (a base chain when `base` is given) if it does not exist.
    pub fn add_chain(&mut self, table: &str, chain: &str, base: Option<BaseChain>) {
        let mut a = Attrs::default();
        a.str(NFTA_CHAIN_TABLE, table).str(NFTA_CHAIN_NAME, chain);
        if let Some(b) = base {
            let mut hook = Attrs::default();
            hook.be32(NFTA_HOOK_HOOKNUM, b.hook as u32)
                .put(NFTA_HOOK_PRIORITY, &b.priority.to_be_bytes());
            a.nested(NFTA_CHAIN_HOOK, &hook)
                .be32(NFTA_CHAIN_POLICY, NF_ACCEPT)
                .str(NFTA_CHAIN_TYPE, b.kind);
        }
        self.nft(NFT_MSG_NEWCHAIN, NLM_F_CREATE, &a);
    }

    /// Removes every rule of a chain.
    pub fn flush_chain(&mut self, table: &str, chain: &str) {
        let mut a = Attrs::default();
        a.str(NFTA_RULE_TABLE, table).str(NFTA_RULE_CHAIN, chain);
        self.nft(NFT_MSG_DELRULE, 0, &a);
    }

    /// Deletes an empty chain nothing refers to any more.
    pub fn delete_chain(&mut self, table: &str, chain: &str) {
        let mut a = Attrs::default();
        a.str(NFTA_CHAIN_TABLE, table).str(NFTA_CHAIN_NAME, chain);
        self.nft(NFT_MSG_DELCHAIN, 0, &a);
    }

    /// Appends a rule to a chain.
    pub fn add_rule(&mut self, table: &str, chain: &str, rule: &Rule) {
        let mut a = Attrs::default();
        a.str(NFTA_RULE_TABLE, table)
            .str(NFTA_RULE_CHAIN, chain)
            .nested(NFTA_RULE_EXPRESSIONS, &rule.attrs());
        self.nft(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, &a);
    }

    /// Creates a verdict map with keys of `key_len` bytes of nftables type `key_type`.
    pub fn add_verdict_map(&mut self, table: &str, name: &str, key_type: u32, key_len: u32) {
        let mut a = Attrs::default();
        a.str(NFTA_SET_TABLE, table)
            .str(NFTA_SET_NAME, name)
            .be32(NFTA_SET_FLAGS, NFT_SET_MAP)
            .be32(NFTA_SET_KEY_TYPE, key_type)
            .be32(NFTA_SET_KEY_LEN, key_len)
            .be32(NFTA_SET_DATA_TYPE, NFT_DATA_VERDICT)
            .be32(NFTA_SET_DATA_LEN, 16)
            // The kernel wants an ID for sets made in a batch (rules may refer to it).
            .be32(NFTA_SET_ID, self.seq);
        self.nft(NFT_MSG_NEWSET, NLM_F_CREATE, &a);
    }

    /// Creates a set of IPv4 addresses that rules add to (`update`) and whose elements expire
    /// after `seconds`.
    pub fn add_address_set(&mut self, table: &str, name: &str, seconds: u32) {
        let mut a = Attrs::default();
        a.str(NFTA_SET_TABLE, table)
            .str(NFTA_SET_NAME, name)
            .be32(NFTA_SET_FLAGS, NFT_SET_TIMEOUT | NFT_SET_EVAL)
            .be32(NFTA_SET_KEY_TYPE, TYPE_IPV4_ADDR)
            .be32(NFTA_SET_KEY_LEN, 4)
            .put(NFTA_SET_TIMEOUT, &(u64::from(seconds) * 1000).to_be_bytes())
            .be32(NFTA_SET_ID, self.seq);
        self.nft(NFT_MSG_NEWSET, NLM_F_CREATE, &a);
    }

    /// Deletes a set nothing refers to any more.
    pub fn delete_set(&mut self, table: &str, name: &str) {
        let mut a = Attrs::default();
        a.str(NFTA_SET_TABLE, table).str(NFTA_SET_NAME, name);
        self.nft(NFT_MSG_DELSET, 0, &a);
    }

    /// Adds `key : verdict` to a verdict map.
    pub fn add_map_element(&mut self, table: &str, map: &str, key: &[u8], verdict: &Verdict) {
        let mut elem = Attrs::default();
        elem.nested(NFTA_SET_ELEM_KEY, &value(key))
            .nested(NFTA_SET_ELEM_DATA, &verdict.attrs());
        self.elements(NFT_MSG_NEWSETELEM, NLM_F_CREATE, table, map, &elem);
    }

    /// Removes `key` from a map.
    pub fn delete_map_element(&mut self, table: &str, map: &str, key: &[u8]) {
        let mut elem = Attrs::default();
        elem.nested(NFTA_SET_ELEM_KEY, &value(key));
        self.elements(NFT_MSG_DELSETELEM, 0, table, map, &elem);
    }

    fn elements(&mut self, msg: u16, flags: u16, table: &str, set: &str, elem: &Attrs) {
        let mut list = Attrs::default();
        list.nested(NFTA_LIST_ELEM, elem);
        let mut a = Attrs::default();
        a.str(NFTA_SET_ELEM_LIST_TABLE, table)
            .str(NFTA_SET_ELEM_LIST_SET, set)
            .nested(NFTA_SET_ELEM_LIST_ELEMENTS, &list);
        self.nft(msg, flags, &a);
    }

    /// Sends the batch and waits for every acknowledgement; the first error fails it (and the
    /// kernel then applies none of it).
    pub fn commit(mut self) -> anyhow::Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        self.message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, 0, &Attrs::default());
        let mut socket = Socket::new(NETLINK_NETFILTER).context("opening a netfilter socket")?;
        socket.bind_auto().context("binding the netfilter socket")?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .context("connecting the netfilter socket")?;
        // Large batches need a receive buffer for all their acknowledgements.
        let _ = socket.set_rx_buf_sz(4 << 20);
        socket.send(&self.buf, 0).context("sending to nf_tables")?;
        let mut pending: std::collections::HashSet<u32> = self.acked.into_iter().collect();
        let mut buf = vec![0u8; 256 * 1024];
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
                    pending.remove(&seq);
                }
                at += len.next_multiple_of(4);
            }
        }
        Ok(())
    }
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
    fn masks() {
        assert_eq!(mask_of(16), 0xffff_0000);
        assert_eq!(mask_of(0), 0);
        assert_eq!(mask_of(32), u32::MAX);
    }

    #[test]
    fn an_empty_batch_commits_nothing() {
        assert!(Batch::new().is_empty());
        assert!(Batch::new().commit().is_ok());
    }
}
