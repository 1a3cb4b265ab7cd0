//! IPv4 blocks (CIDRs): the cluster's pod and Service ranges, nodes' podCIDRs, NetworkPolicy
//! ipBlocks. The one parser and type every component uses.

use std::net::Ipv4Addr;
use std::str::FromStr;

/// Why a string is not a usable CIDR.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CidrError(String);

/// An IPv4 block: its first address (host bits cleared) and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

/// The netmask of a prefix length (prefixes past 32 count as 32).
pub fn mask_of(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    }
}

/// A range for pods or Services (`10.244.0.0/16`): a block from /8 to /30, room for
/// addresses besides the network, gateway and broadcast ones.
impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let cidr = Cidr::parse_block(s)?;
        if !(8..=30).contains(&cidr.prefix) {
            return Err(CidrError(format!(
                "{s:?}: the prefix must be between 8 and 30"
            )));
        }
        Ok(cidr)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl Cidr {
    /// Any IPv4 block, `/0` to `/32` (a NetworkPolicy's ipBlock); host bits are cleared.
    pub fn parse_block(s: &str) -> Result<Cidr, CidrError> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| CidrError(format!("{s:?} is not a CIDR (like 10.244.0.0/16)")))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| CidrError(format!("{s:?}: {ip:?} is not an IPv4 address")))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| CidrError(format!("{s:?}: {prefix:?} is not a prefix length")))?;
        Ok(Cidr {
            base: Ipv4Addr::from(u32::from(ip) & mask_of(prefix)),
            prefix,
        })
    }

    /// The block of the one address `ip` (a /32).
    pub fn host(ip: Ipv4Addr) -> Cidr {
        Cidr {
            base: ip,
            prefix: 32,
        }
    }

    /// Whether `ip` lies in this block.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = mask_of(self.prefix);
        u32::from(ip) & mask == u32::from(self.base) & mask
    }

    /// Whether `other` lies wholly inside this block.
    pub fn covers(&self, other: Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.base)
    }

    /// How many addresses the block holds.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix.min(32)))
    }

    /// The `n`th address of the block, counting from its first (network) address; `None`
    /// past its end.
    pub fn nth(&self, n: u64) -> Option<Ipv4Addr> {
        (n < self.size()).then(|| Ipv4Addr::from(u32::from(self.base) + n as u32))
    }

    /// The first address after the network one: a pod block's gateway (its bridge's).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + 1)
    }

    /// The addresses pods may get: all but the network, gateway and broadcast addresses.
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> + use<> {
        let base = u32::from(self.base);
        let size = self.size() as u32;
        (2..size.saturating_sub(1)).map(move |i| Ipv4Addr::from(base + i))
    }

    /// This block without `hole`: the fewest blocks covering the rest.
    pub fn subtract(self, hole: Cidr) -> Vec<Cidr> {
        if hole.covers(self) {
            return Vec::new();
        }
        if !self.covers(hole) {
            return vec![self];
        }
        // Split in halves; the half holding the hole is split further.
        let prefix = self.prefix + 1;
        let low = Cidr {
            base: self.base,
            prefix,
        };
        let high = Cidr {
            base: Ipv4Addr::from(u32::from(self.base) | (1u32 << (32 - u32::from(prefix)))),
            prefix,
        };
        let mut out = low.subtract(hole);
        out.extend(high.subtract(hole));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_parse_mask_and_nest() {
        let c = Cidr::parse_block("10.244.1.7/16").expect("block");
        assert_eq!(c.to_string(), "10.244.0.0/16");
        assert!(c.contains("10.244.255.1".parse().expect("ip")));
        assert!(!c.contains("10.245.0.1".parse().expect("ip")));
        assert!(c.covers("10.244.3.0/24".parse().expect("cidr")));
        assert_eq!(Cidr::parse_block("0.0.0.0/0").expect("any").size(), 1 << 32);
        assert_eq!(c.nth(2), Some(Ipv4Addr::new(10, 244, 0, 2)));
        assert_eq!(c.nth(1 << 16), None);
        for bad in ["10.0.0.0", "10.0.0/8", "10.0.0.0/33", "x/8"] {
            assert!(Cidr::parse_block(bad).is_err(), "{bad}");
        }
        assert!("10.0.0.0/31".parse::<Cidr>().is_err());
        assert!("10.0.0.0/7".parse::<Cidr>().is_err());
        let rest = Cidr::parse_block("10.0.0.0/8")
            .expect("block")
            .subtract(Cidr::parse_block("10.0.0.0/9").expect("hole"));
        assert_eq!(rest, vec![Cidr::parse_block("10.128.0.0/9").expect("half")]);
    }

    #[test]
    fn the_cluster_ranges_parse() {
        for range in [crate::cluster::POD_CIDR, crate::cluster::SERVICE_CIDR] {
            assert!(range.parse::<Cidr>().is_ok(), "{range}");
        }
    }
}
