//! Address classes that hold whatever the rules say: an address that is never rewritten,
//! and IPv4-mapped IPv6 classified by its IPv4 address. (Parsing and formatting addresses
//! as SIP text: `sip::addr`.)

use core::net::{IpAddr, Ipv4Addr};

/// Addresses that are never rewritten whatever the rules say: loopback, unspecified (SDP
/// hold), and (for IPv4-mapped IPv6) the same classes of the embedded IPv4 address.
#[inline]
pub fn never_rewritten(a: IpAddr) -> bool {
    match canonical(a) {
        IpAddr::V4(v4) => never_rewritten_v4(v4),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified(),
    }
}

/// [`never_rewritten`] of an IPv4 address: loopback, unspecified, broadcast.
#[inline]
pub fn never_rewritten_v4(a: Ipv4Addr) -> bool {
    a.is_loopback() || a.is_unspecified() || a.is_broadcast()
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is classified by its IPv4 address.
#[inline]
pub fn canonical(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => a,
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use core::net::Ipv4Addr;

    use super::*;

    #[test]
    fn mapped_is_classified_by_its_ipv4_address() {
        let a = "::ffff:10.0.0.5".parse().unwrap();
        assert_eq!(canonical(a), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)));
        assert_eq!(
            canonical("2001:db8::1".parse().unwrap()),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn never_rewritten_classes() {
        for a in [
            "127.0.0.1",
            "127.8.9.1",
            "0.0.0.0",
            "::1",
            "::",
            "::ffff:127.0.0.1",
        ] {
            assert!(never_rewritten(a.parse().unwrap()), "{a}");
        }
        assert!(!never_rewritten("10.0.0.1".parse().unwrap()));
    }
}
