//! Per-packet NAT decisions from the IP addresses: is this packet outbound, inbound or
//! internal, which IP header changes apply, and which internal host an inbound packet is
//! for. Called by the per-packet pipeline (`datapath/pipeline.rs`), which the workers,
//! `sipnat rewrite` and the fuzz target `packet` share.

use core::net::IpAddr;

use super::{rules::LocalV4, ExternalAddrs, L3Mode, RewriteConfig};

/// Which way the packet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Inside → outside: private addresses become the external address.
    Outbound,
    /// Outside → inside: the external address becomes the mapped private address.
    Inbound,
}

/// Address changes in the IP header, decided from the NAT rules and the flow table and
/// applied by the packet rewrite.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L3Action {
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
}

/// What to do with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Rewrite it in `direction` with these IP header changes; inbound, `internal` is the
    /// host the payload's external addresses are restored to.
    Rewrite {
        direction: Direction,
        l3: L3Action,
        internal: Option<IpAddr>,
    },
    /// Both ends are in the local networks: forward unchanged.
    Internal,
    /// Inbound to an external address that maps to no internal host (no 1:1 rule, no flow):
    /// hand to the kernel, count.
    NoMapping,
}

/// A packet that arrived on the inside interface; `local` is `cfg`'s IPv4 local networks
/// (built with the snapshot).
pub fn outbound(
    cfg: &RewriteConfig,
    local: &LocalV4,
    ext: &ExternalAddrs,
    src: IpAddr,
    dst: IpAddr,
) -> Decision {
    if local.is_local(cfg, dst) {
        return Decision::Internal;
    }
    let new_src = match cfg.l3 {
        L3Mode::Snat => cfg
            .rule_for(src)
            .and_then(|r| cfg.external_of(r, src, ext))
            .filter(|e| e.is_ipv4() == src.is_ipv4()),
        L3Mode::Keep => None,
    };
    Decision::Rewrite {
        direction: Direction::Outbound,
        l3: L3Action {
            src: new_src,
            dst: None,
        },
        internal: None,
    }
}

/// A packet that arrived on the outside interface. `flow` is the flow table's answer for
/// it, when the caller has one.
pub fn inbound(
    cfg: &RewriteConfig,
    ext: &ExternalAddrs,
    dst: IpAddr,
    flow: Option<IpAddr>,
) -> Decision {
    match cfg.l3 {
        // Behind an upstream 1:1 NAT the packet already carries our own (private) address:
        // the payload's external address goes back to it, the IP header stays.
        L3Mode::Keep => Decision::Rewrite {
            direction: Direction::Inbound,
            l3: L3Action::default(),
            internal: Some(dst),
        },
        L3Mode::Snat => {
            if !cfg.is_external(dst, ext) {
                return Decision::Internal;
            }
            let target = flow.or_else(|| cfg.inbound_static_target(dst, ext).map(|(_, t)| t));
            match target {
                Some(t) if t.is_ipv4() == dst.is_ipv4() => Decision::Rewrite {
                    direction: Direction::Inbound,
                    l3: L3Action {
                        src: None,
                        dst: Some(t),
                    },
                    internal: Some(t),
                },
                _ => Decision::NoMapping,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::Net;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn outbound_snat_and_internal() {
        let cfg = RewriteConfig::single(Net::parse("10.0.0.0/24").unwrap());
        let ext = ExternalAddrs::from_ip(ip("198.51.100.1"));
        let local = LocalV4::of(&cfg);
        match outbound(&cfg, &local, &ext, ip("10.0.0.2"), ip("198.51.100.2")) {
            Decision::Rewrite { l3, .. } => assert_eq!(l3.src, Some(ip("198.51.100.1"))),
            d => panic!("{d:?}"),
        }
        assert_eq!(
            outbound(&cfg, &local, &ext, ip("10.0.0.2"), ip("10.0.1.9")),
            Decision::Internal
        );
    }

    #[test]
    fn inbound_one_to_one_and_shared() {
        let one = RewriteConfig::single(Net::parse("10.0.0.2/32").unwrap());
        let ext = ExternalAddrs::from_ip(ip("198.51.100.1"));
        match inbound(&one, &ext, ip("198.51.100.1"), None) {
            Decision::Rewrite { l3, internal, .. } => {
                assert_eq!(l3.dst, Some(ip("10.0.0.2")));
                assert_eq!(internal, Some(ip("10.0.0.2")));
            }
            d => panic!("{d:?}"),
        }
        let shared = RewriteConfig::single(Net::parse("10.0.0.0/24").unwrap());
        assert_eq!(
            inbound(&shared, &ext, ip("198.51.100.1"), None),
            Decision::NoMapping
        );
        assert!(matches!(
            inbound(&shared, &ext, ip("198.51.100.1"), Some(ip("10.0.0.7"))),
            Decision::Rewrite { .. }
        ));
    }
}
