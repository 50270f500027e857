//! The ranges the server hands values out of: an IPv4 CIDR (Service ClusterIPs, the cluster's pod
//! CIDR and its per-node subnets) and a port range (NodePorts), with Kubernetes' split into a
//! low band kept for explicit picks and an upper band for dynamic allocation.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network, `10.96.0.0/12`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    base: u32,
    bits: u8,
}

/// A range or CIDR that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RangeError(String);

impl RangeError {
    pub(crate) fn new(message: String) -> Self {
        RangeError(message)
    }
}

impl Ipv4Cidr {
    /// The network of `addr/bits` (host bits cleared).
    pub fn new(addr: Ipv4Addr, bits: u8) -> Result<Self, RangeError> {
        if bits > 32 {
            return Err(RangeError(format!("invalid prefix length {bits}")));
        }
        Ok(Ipv4Cidr {
            base: u32::from(addr) & mask(bits),
            bits,
        })
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base)
    }

    pub fn prefix_len(&self) -> u8 {
        self.bits
    }

    /// How many addresses the network spans (network and broadcast included).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.bits))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.bits) == self.base
    }

    /// Whether `other` lies wholly inside this network.
    pub fn covers(&self, other: &Ipv4Cidr) -> bool {
        other.bits >= self.bits && self.contains(other.network())
    }

    /// The `offset`-th address of the network.
    pub fn nth(&self, offset: u64) -> Option<Ipv4Addr> {
        (offset < self.size()).then(|| Ipv4Addr::from(self.base.wrapping_add(offset as u32)))
    }

    /// The offset of `ip` inside the network.
    pub fn offset_of(&self, ip: Ipv4Addr) -> Option<u64> {
        self.contains(ip)
            .then(|| u64::from(u32::from(ip).wrapping_sub(self.base)))
    }

    /// The `index`-th subnet of prefix length `bits`.
    pub fn subnet(&self, bits: u8, index: u64) -> Option<Ipv4Cidr> {
        if bits < self.bits || bits > 32 {
            return None;
        }
        let count = 1u64 << (bits - self.bits);
        (index < count).then(|| Ipv4Cidr {
            base: self
                .base
                .wrapping_add((index << (32 - u32::from(bits))) as u32),
            bits,
        })
    }

    /// How many subnets of prefix length `bits` the network holds.
    pub fn subnet_count(&self, bits: u8) -> u64 {
        if bits < self.bits || bits > 32 {
            0
        } else {
            1u64 << (bits - self.bits)
        }
    }
}

fn mask(bits: u8) -> u32 {
    if bits == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(bits))
    }
}

impl FromStr for Ipv4Cidr {
    type Err = RangeError;

    fn from_str(s: &str) -> Result<Self, RangeError> {
        let bad = || RangeError(format!("invalid CIDR address: {s}"));
        let (ip, bits) = s.split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let bits: u8 = bits.parse().map_err(|_| bad())?;
        if bits > 32 {
            return Err(bad());
        }
        Ipv4Cidr::new(ip, bits)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.bits)
    }
}

/// An inclusive port range, `30000-32767`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn contains(&self, port: i64) -> bool {
        (i64::from(self.first)..=i64::from(self.last)).contains(&port)
    }

    pub fn size(&self) -> u64 {
        u64::from(self.last - self.first) + 1
    }
}

impl FromStr for PortRange {
    type Err = RangeError;

    fn from_str(s: &str) -> Result<Self, RangeError> {
        let bad = || {
            RangeError(format!(
                "invalid port range {s:?}: want FIRST-LAST, e.g. 30000-32767"
            ))
        };
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let first: u16 = a.trim().parse().map_err(|_| bad())?;
        let last: u16 = b.trim().parse().map_err(|_| bad())?;
        if first == 0 || last < first {
            return Err(bad());
        }
        Ok(PortRange { first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// How many of the lowest values of a range of `size` Kubernetes keeps for explicit picks:
/// `min(max(min, size/step), max)`, none for ranges of `min` or fewer (its
/// `calculateRangeOffset`, with 16/16/256 for Service IPs and 16/32/128 for NodePorts).
pub(crate) fn static_band(size: u64, min: u64, step: u64, max: u64) -> u64 {
    if size <= min {
        return 0;
    }
    (size / step).clamp(min, max)
}

/// The Service IP range as Kubernetes' allocator sees it: every address but the network and
/// broadcast address, indexed from the first usable one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ServiceIps {
    pub(crate) cidr: Ipv4Cidr,
}

impl ServiceIps {
    /// Usable addresses.
    pub(crate) fn len(&self) -> u64 {
        match self.cidr.prefix_len() {
            32 => 1,
            31 => 2,
            _ => self.cidr.size() - 2,
        }
    }

    fn first_offset(&self) -> u64 {
        if self.cidr.prefix_len() >= 31 { 0 } else { 1 }
    }

    pub(crate) fn ip(&self, index: u64) -> Option<Ipv4Addr> {
        (index < self.len())
            .then(|| self.cidr.nth(index + self.first_offset()))
            .flatten()
    }

    pub(crate) fn index(&self, ip: Ipv4Addr) -> Option<u64> {
        let off = self.cidr.offset_of(ip)?;
        let index = off.checked_sub(self.first_offset())?;
        (index < self.len()).then_some(index)
    }

    /// Addresses kept for explicit `clusterIP`s.
    pub(crate) fn static_band(&self) -> u64 {
        static_band(self.cidr.size(), 16, 16, 256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_split() {
        let c: Ipv4Cidr = "10.96.0.0/12".parse().unwrap();
        assert_eq!(c.size(), 1 << 20);
        assert!(c.contains("10.111.255.255".parse().unwrap()));
        assert!(!c.contains("10.112.0.0".parse().unwrap()));
        assert_eq!(
            "10.244.3.7/16".parse::<Ipv4Cidr>().unwrap().to_string(),
            "10.244.0.0/16"
        );
        let cluster: Ipv4Cidr = "10.244.0.0/16".parse().unwrap();
        assert_eq!(cluster.subnet_count(24), 256);
        assert_eq!(cluster.subnet(24, 3).unwrap().to_string(), "10.244.3.0/24");
        assert!(cluster.subnet(24, 256).is_none());
        assert!(cluster.covers(&"10.244.9.0/24".parse().unwrap()));
        assert!(!cluster.covers(&"10.88.0.0/24".parse().unwrap()));
        assert!(!cluster.covers(&"10.0.0.0/8".parse().unwrap()));
        for bad in ["10.0.0.0", "10.0.0.0/33", "x/8", "fd00::/64"] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn port_ranges_parse() {
        let r: PortRange = "30000-32767".parse().unwrap();
        assert_eq!((r.first, r.last, r.size()), (30000, 32767, 2768));
        assert!(r.contains(30000) && r.contains(32767) && !r.contains(32768));
        for bad in ["30000", "2-1", "0-5", "a-b"] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_static_band_is_kubernetes_range_offset() {
        let ips = |c: &str| ServiceIps {
            cidr: c.parse().unwrap(),
        };
        // min(max(16, size/16), 256), none for a /28 or smaller.
        assert_eq!(ips("10.96.0.0/12").static_band(), 256);
        assert_eq!(ips("10.96.0.0/24").static_band(), 16);
        assert_eq!(ips("10.96.0.0/20").static_band(), 256);
        assert_eq!(ips("10.96.0.0/22").static_band(), 64);
        assert_eq!(ips("10.96.0.0/28").static_band(), 0);
        // NodePorts: min(max(16, size/32), 128).
        assert_eq!(static_band(2768, 16, 32, 128), 86);
        let s = ips("10.96.0.0/12");
        assert_eq!(s.ip(0).unwrap().to_string(), "10.96.0.1");
        assert_eq!(s.index("10.96.0.1".parse().unwrap()), Some(0));
        assert_eq!(s.index("10.96.0.0".parse().unwrap()), None);
        assert_eq!(s.index("10.111.255.255".parse().unwrap()), None);
    }
}
