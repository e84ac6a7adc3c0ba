//! The external addresses a packet is rewritten to: an immutable value that the control
//! plane publishes and each worker reads once per packet (so one packet never mixes two
//! addresses). IPv4 and IPv6 may both be set; a packet uses the one of its family.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::addr::canonical;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExternalAddrs {
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
}

impl ExternalAddrs {
    pub fn v4(a: Ipv4Addr) -> ExternalAddrs {
        ExternalAddrs {
            v4: Some(a),
            v6: None,
        }
    }

    pub fn from_ip(a: IpAddr) -> ExternalAddrs {
        match a {
            IpAddr::V4(v4) => ExternalAddrs {
                v4: Some(v4),
                v6: None,
            },
            IpAddr::V6(v6) => ExternalAddrs {
                v4: None,
                v6: Some(v6),
            },
        }
    }

    /// The external address of the same family as `like` (IPv4-mapped counts as IPv4).
    #[inline]
    pub fn for_family(&self, like: IpAddr) -> Option<IpAddr> {
        match canonical(like) {
            IpAddr::V4(_) => self.v4.map(IpAddr::V4),
            IpAddr::V6(_) => self.v6.map(IpAddr::V6),
        }
    }

    /// Is `a` (or the IPv4 inside a mapped `a`) one of these addresses?
    #[inline]
    pub fn contains(&self, a: IpAddr) -> bool {
        match canonical(a) {
            IpAddr::V4(v4) => self.v4 == Some(v4),
            IpAddr::V6(v6) => self.v6 == Some(v6),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_none() && self.v6.is_none()
    }
}

impl core::fmt::Display for ExternalAddrs {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match (self.v4, self.v6) {
            (Some(a), Some(b)) => write!(f, "{a}, {b}"),
            (Some(a), None) => write!(f, "{a}"),
            (None, Some(b)) => write!(f, "{b}"),
            (None, None) => f.write_str("(none)"),
        }
    }
}
