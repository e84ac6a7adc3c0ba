//! The external addresses a packet is rewritten to: an immutable value that the control
//! plane publishes and each worker reads once per packet (so one packet never mixes two
//! addresses). IPv4 and IPv6 may both be set; a packet uses the one of its family.
//!
//! [`check_external`] decides whether an address may be an external address at all; every
//! source goes through it (the config's static addresses, `sipnat set external-ip`, STUN
//! answers, interface addresses).

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

/// What kind of address a candidate external address is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrClass {
    /// A public unicast address (the documentation ranges included).
    Public,
    /// Private (RFC 1918, fc00::/7) or shared (100.64.0.0/10): an external address only
    /// with `nat.allow_private_external = true`. The text says which range.
    Private(&'static str),
    /// Never an external address: unspecified, loopback, link-local, multicast, broadcast
    /// or reserved. The text says which.
    Unusable(&'static str),
}

/// The class of `a` (an IPv4-mapped IPv6 address is classed as its IPv4 address).
pub fn classify(a: IpAddr) -> AddrClass {
    use AddrClass::{Private, Public, Unusable};
    match canonical(a) {
        IpAddr::V4(v) => {
            let o = v.octets();
            match o {
                [0, 0, 0, 0] => Unusable("the unspecified address"),
                [0, ..] => Unusable("in 0.0.0.0/8 (\"this network\", not a host address)"),
                [127, ..] => Unusable("a loopback address"),
                [169, 254, ..] => Unusable("a link-local address"),
                [255, 255, 255, 255] => Unusable("the broadcast address"),
                [224..=239, ..] => Unusable("a multicast address"),
                [240..=255, ..] => Unusable("a reserved address (240.0.0.0/4)"),
                [10, ..] => Private("a private address (RFC 1918)"),
                [172, b, ..] if (16..32).contains(&b) => Private("a private address (RFC 1918)"),
                [192, 168, ..] => Private("a private address (RFC 1918)"),
                [100, b, ..] if (64..128).contains(&b) => {
                    Private("a shared address (100.64.0.0/10, carrier-grade NAT)")
                }
                _ => Public,
            }
        }
        IpAddr::V6(v) => {
            let first = v.segments()[0];
            if v.is_unspecified() {
                Unusable("the unspecified address")
            } else if v.is_loopback() {
                Unusable("the loopback address")
            } else if v.is_multicast() {
                Unusable("a multicast address")
            } else if first & 0xffc0 == 0xfe80 {
                Unusable("a link-local address")
            } else if first & 0xfe00 == 0xfc00 {
                Private("a unique local address (fc00::/7)")
            } else {
                Public
            }
        }
    }
}

/// Why a candidate external address was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    pub addr: IpAddr,
    pub why: &'static str,
    /// Private or shared: `nat.allow_private_external = true` would accept it.
    pub private: bool,
}

/// How to accept a refused private or shared address anyway (after the fix proper).
pub const ALLOW_PRIVATE_HINT: &str =
    "or set nat.allow_private_external = true if peers really reach this host at a private address";

impl Refused {
    /// `10.9.9.9 is a private address (RFC 1918): {fix}`, plus [`ALLOW_PRIVATE_HINT`] for
    /// a private or shared address.
    pub fn explain(&self, fix: &str) -> String {
        if self.private {
            format!("{} is {}: {fix}, {ALLOW_PRIVATE_HINT}", self.addr, self.why)
        } else {
            format!("{} is {}: {fix}", self.addr, self.why)
        }
    }
}

impl core::fmt::Display for Refused {
    /// [`Refused::explain`] with the fix "give the public address that peers see".
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.explain("give the public address that peers see"))
    }
}

/// May `a` be published as an external address? `Ok(None)`: a public address.
/// `Ok(Some(why))`: a private or shared one, accepted because `allow_private` (the caller
/// logs a warning with `why`). `Err`: refused (unusable always; private unless allowed).
pub fn check_external(a: IpAddr, allow_private: bool) -> Result<Option<&'static str>, Refused> {
    match classify(a) {
        AddrClass::Public => Ok(None),
        AddrClass::Private(why) if allow_private => Ok(Some(why)),
        AddrClass::Private(why) => Err(Refused {
            addr: a,
            why,
            private: true,
        }),
        AddrClass::Unusable(why) => Err(Refused {
            addr: a,
            why,
            private: false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (address, class), around every range boundary.
    #[test]
    fn external_address_classes() {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        enum K {
            Pub,
            Priv,
            Never,
        }
        use K::*;
        let table: &[(&str, K)] = &[
            // Public, including the documentation ranges the tests and the demo use.
            ("203.0.113.10", Pub),
            ("198.51.100.1", Pub),
            ("192.0.2.77", Pub),
            ("8.8.8.8", Pub),
            ("1.0.0.1", Pub),
            ("9.255.255.255", Pub),
            ("11.0.0.0", Pub),
            ("172.15.255.255", Pub),
            ("172.32.0.0", Pub),
            ("192.167.255.255", Pub),
            ("192.169.0.0", Pub),
            ("100.63.255.255", Pub),
            ("100.128.0.0", Pub),
            ("169.253.255.255", Pub),
            ("223.255.255.255", Pub),
            ("2001:db8::1", Pub),
            ("2a00:1450::1", Pub),
            ("fbff:ffff::1", Pub),
            ("fe00::1", Pub),
            ("::ffff:203.0.113.10", Pub),
            // Private (RFC 1918, unique local) and shared (RFC 6598).
            ("10.0.0.0", Priv),
            ("10.9.9.9", Priv),
            ("10.255.255.255", Priv),
            ("172.16.0.1", Priv),
            ("172.31.255.254", Priv),
            ("192.168.1.1", Priv),
            ("100.64.0.1", Priv),
            ("100.127.255.254", Priv),
            ("fc00::1", Priv),
            ("fd12:3456::1", Priv),
            ("::ffff:10.1.2.3", Priv),
            // Never.
            ("0.0.0.0", Never),
            ("0.1.2.3", Never),
            ("127.0.0.1", Never),
            ("127.255.255.254", Never),
            ("169.254.1.1", Never),
            ("224.0.0.1", Never),
            ("239.255.255.250", Never),
            ("240.0.0.1", Never),
            ("255.255.255.255", Never),
            ("::", Never),
            ("::1", Never),
            ("fe80::1", Never),
            ("febf::1", Never),
            ("ff02::1", Never),
            ("::ffff:127.0.0.1", Never),
        ];
        for &(s, want) in table {
            let a: IpAddr = s.parse().unwrap();
            let got = match classify(a) {
                AddrClass::Public => Pub,
                AddrClass::Private(_) => Priv,
                AddrClass::Unusable(_) => Never,
            };
            assert_eq!(got, want, "{s}");
            // The policy: public always, private only when allowed, never the rest.
            match want {
                Pub => {
                    assert_eq!(check_external(a, false), Ok(None), "{s}");
                    assert_eq!(check_external(a, true), Ok(None), "{s}");
                }
                Priv => {
                    let e = check_external(a, false).unwrap_err();
                    assert!(e.private, "{s}");
                    assert!(
                        e.to_string().contains("nat.allow_private_external = true"),
                        "{e}"
                    );
                    assert!(matches!(check_external(a, true), Ok(Some(_))), "{s}");
                }
                Never => {
                    for allow in [false, true] {
                        let e = check_external(a, allow).unwrap_err();
                        assert!(!e.private, "{s}");
                        assert!(!e.to_string().contains("allow_private_external"), "{e}");
                    }
                }
            }
        }
        assert_eq!(
            check_external("0.0.0.0".parse().unwrap(), true)
                .unwrap_err()
                .to_string(),
            "0.0.0.0 is the unspecified address: give the public address that peers see"
        );
        assert_eq!(
            check_external("10.9.9.9".parse().unwrap(), false).unwrap_err().to_string(),
            "10.9.9.9 is a private address (RFC 1918): give the public address that peers see, or set nat.allow_private_external = true if peers really reach this host at a private address"
        );
    }
}
