//! The NAT rules as an immutable snapshot the rewriter reads: internal networks with their
//! external address and port maps, the local networks, and the rewrite options. Built once
//! from the config (no string parsing per packet); lookups are linear scans over a handful
//! of (address, mask) integer pairs.

use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{
    addr::{canonical, never_rewritten, never_rewritten_v4},
    ExternalAddrs,
};

/// An IPv4 or IPv6 network as integers, for branch-light `contains`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Net {
    V4 { addr: u32, mask: u32, prefix: u8 },
    V6 { addr: u128, mask: u128, prefix: u8 },
}

impl Net {
    pub fn v4(a: Ipv4Addr, prefix: u8) -> Net {
        let prefix = prefix.min(32);
        // A shift by the full width (prefix 0) is no mask at all.
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        let addr = u32::from(a) & mask;
        Net::V4 { addr, mask, prefix }
    }

    pub fn v6(a: Ipv6Addr, prefix: u8) -> Net {
        let prefix = prefix.min(128);
        // A shift by the full width (prefix 0) is no mask at all.
        let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
        let addr = u128::from(a) & mask;
        Net::V6 { addr, mask, prefix }
    }

    /// Parses `a.b.c.d/n` or `x::/n` (also a bare address as /32 or /128).
    pub fn parse(s: &str) -> Option<Net> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
            None => (s, None),
        };
        match a.parse::<IpAddr>().ok()? {
            IpAddr::V4(v4) => {
                let p = p.unwrap_or(32);
                (p <= 32).then(|| Net::v4(v4, p))
            }
            IpAddr::V6(v6) => {
                let p = p.unwrap_or(128);
                (p <= 128).then(|| Net::v6(v6, p))
            }
        }
    }

    #[inline]
    pub fn contains(&self, a: IpAddr) -> bool {
        match (self, a) {
            (Net::V4 { addr, mask, .. }, IpAddr::V4(v4)) => u32::from(v4) & mask == *addr,
            (Net::V6 { addr, mask, .. }, IpAddr::V6(v6)) => u128::from(v6) & mask == *addr,
            _ => false,
        }
    }

    /// The single address of a /32 or /128 network.
    pub fn single_host(&self) -> Option<IpAddr> {
        match *self {
            Net::V4 {
                addr, prefix: 32, ..
            } => Some(IpAddr::V4(Ipv4Addr::from(addr))),
            Net::V6 {
                addr, prefix: 128, ..
            } => Some(IpAddr::V6(Ipv6Addr::from(addr))),
            _ => None,
        }
    }

    /// True when every address of `self` is inside `other`.
    pub fn within(&self, other: &Net) -> bool {
        match (self, other) {
            (Net::V4 { addr, prefix, .. }, Net::V4 { prefix: op, .. }) => {
                prefix >= op && other.contains(IpAddr::V4(Ipv4Addr::from(*addr)))
            }
            (Net::V6 { addr, prefix, .. }, Net::V6 { prefix: op, .. }) => {
                prefix >= op && other.contains(IpAddr::V6(Ipv6Addr::from(*addr)))
            }
            _ => false,
        }
    }

    /// True when the two networks share at least one address.
    pub fn overlaps(&self, other: &Net) -> bool {
        self.within(other) || other.within(self)
    }
}

impl core::fmt::Display for Net {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Net::V4 { addr, prefix, .. } => write!(f, "{}/{prefix}", Ipv4Addr::from(addr)),
            Net::V6 { addr, prefix, .. } => write!(f, "{}/{prefix}", Ipv6Addr::from(addr)),
        }
    }
}

/// The default `local_nets` (documented in docs/config.md): RFC 1918, shared address space
/// (RFC 6598), link-local, unique-local (RFC 4193) and IPv6 link-local.
pub const DEFAULT_LOCAL_NETS: [&str; 7] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "fc00::/7",
    "fe80::/10",
];

pub fn default_local_nets() -> Vec<Net> {
    DEFAULT_LOCAL_NETS
        .iter()
        .map(|s| Net::parse(s).expect("valid default"))
        .collect()
}

/// The IPv4 networks of a config's `local_nets` as (network, mask) words, built once per
/// published snapshot (as the rewriter's gates are): "is this IPv4 address local" is then
/// a few word compares instead of [`RewriteConfig::is_local`]'s walk over `Net` values and
/// address families. A config with more IPv4 local networks than fit asks `is_local`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalV4 {
    /// Each network's address and mask (slot `i` of both), apart: one vector compare
    /// of the masked address with the networks.
    nets: [u32; LocalV4::MAX],
    masks: [u32; LocalV4::MAX],
    /// How many of `nets` are used; `u8::MAX`: more than fit.
    n: u8,
}

impl LocalV4 {
    const MAX: usize = 8;

    /// `cfg.local_nets`' IPv4 networks.
    pub fn of(cfg: &RewriteConfig) -> LocalV4 {
        // (An unused slot matches no address: no address masked by 0 is 1.)
        let mut l = LocalV4 {
            nets: [1; LocalV4::MAX],
            masks: [0; LocalV4::MAX],
            n: 0,
        };
        for net in &cfg.local_nets {
            if let Net::V4 { addr, mask, .. } = *net {
                let i = usize::from(l.n);
                match (l.nets.get_mut(i), l.masks.get_mut(i)) {
                    (Some(n), Some(m)) => {
                        (*n, *m) = (addr, mask);
                        l.n += 1;
                    }
                    _ => {
                        l.n = u8::MAX;
                        break;
                    }
                }
            }
        }
        l
    }

    /// The networks' addresses and masks (slot `i` of both; an unused slot has mask 0 and
    /// address 1: no address is in it), or `None` when there are more than fit.
    #[inline]
    pub fn words(&self) -> Option<(&[u32; LocalV4::MAX], &[u32; LocalV4::MAX])> {
        (self.n != u8::MAX).then_some((&self.nets, &self.masks))
    }

    /// [`RewriteConfig::is_local`] of `cfg`, the config this was built from.
    #[inline]
    pub fn is_local(&self, cfg: &RewriteConfig, a: IpAddr) -> bool {
        match a {
            // Every slot, used or not (an unused one matches nothing), without an early
            // exit: a fixed number of compares with no branch, which the compiler does in
            // vector lanes (the exit after a varying number of networks was a branch the
            // addresses of a message take differently).
            IpAddr::V4(v4) if self.n != u8::MAX => {
                let a = u32::from(v4);
                self.nets
                    .iter()
                    .zip(&self.masks)
                    .fold(false, |local, (&net, &mask)| local | (a & mask == net))
            }
            _ => cfg.is_local(a),
        }
    }
}

/// The outbound decision for IPv4 addresses of a config with one rule, whose internal
/// side is IPv4: [`RewriteConfig::rule_for`] and [`RewriteConfig::external_of`] compiled
/// once per published snapshot and external address (with the rewriter's gate) into two
/// word compares, instead of a walk over `Net` values and address families per message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OneRuleV4 {
    net: u32,
    mask: u32,
    /// The address the rule's IPv4 addresses become; `None`: no IPv4 external address
    /// (a family mismatch).
    external: Option<Ipv4Addr>,
}

impl OneRuleV4 {
    /// `cfg`'s compiled rule under `ext`, when it has exactly one rule and it is IPv4.
    pub fn of(cfg: &RewriteConfig, ext: &ExternalAddrs) -> Option<OneRuleV4> {
        let [rule] = cfg.rules.as_slice() else {
            return None;
        };
        let Net::V4 { addr, mask, .. } = rule.internal else {
            return None;
        };
        Some(OneRuleV4 {
            net: addr,
            mask,
            external: Self::external_of(rule, ext),
        })
    }

    /// The IPv4 address `rule`'s IPv4 addresses become under `ext`
    /// ([`RewriteConfig::external_of`] for an IPv4 address): its own when it has an IPv4
    /// one, else the global IPv4 external address.
    #[inline]
    fn external_of(rule: &Rule, ext: &ExternalAddrs) -> Option<Ipv4Addr> {
        match rule.external {
            Some(IpAddr::V4(e)) => Some(e),
            _ => ext.v4,
        }
    }

    /// Whether this is [`Self::of`]`(cfg, ext)`: a few compares, so that a rewriter handed
    /// a compiled rule of another config or external address (a stale snapshot's) decides
    /// from the config instead of writing that other address.
    #[inline]
    pub fn is_of(&self, cfg: &RewriteConfig, ext: &ExternalAddrs) -> bool {
        let [rule] = cfg.rules.as_slice() else {
            return false;
        };
        matches!(rule.internal, Net::V4 { addr, mask, .. } if addr == self.net && mask == self.mask)
            && Self::external_of(rule, ext) == self.external
    }

    /// The address the rule's IPv4 addresses become, when there is one.
    pub fn external(&self) -> Option<Ipv4Addr> {
        self.external
    }

    /// For an IPv4 `a`: `None` when no rule governs it ([`RewriteConfig::rule_for`]);
    /// else the external address it becomes, `None` when there is none of its family.
    #[inline]
    pub fn decide(&self, a: Ipv4Addr) -> Option<Option<Ipv4Addr>> {
        if never_rewritten_v4(a) {
            return None;
        }
        (u32::from(a) & self.mask == self.net).then_some(self.external)
    }
}

/// Most port-map entries a rule may have.
pub const MAX_PORT_MAP: usize = 16;

/// Internal port → external port, for SIP and media ports (`ports = { 5060 = 15060 }`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortMap {
    pairs: [(u16, u16); MAX_PORT_MAP],
    n: u8,
}

impl PortMap {
    /// Builds a map; `None` when there are more than [`MAX_PORT_MAP`] entries.
    pub fn new(pairs: &[(u16, u16)]) -> Option<PortMap> {
        if pairs.len() > MAX_PORT_MAP {
            return None;
        }
        let mut m = PortMap::default();
        for (i, p) in pairs.iter().enumerate() {
            m.pairs[i] = *p;
        }
        m.n = pairs.len() as u8;
        Some(m)
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn entries(&self) -> &[(u16, u16)] {
        &self.pairs[..usize::from(self.n)]
    }

    #[inline]
    pub fn outbound(&self, internal: u16) -> Option<u16> {
        self.entries()
            .iter()
            .find(|(i, _)| *i == internal)
            .map(|(_, e)| *e)
    }

    #[inline]
    pub fn inbound(&self, external: u16) -> Option<u16> {
        self.entries()
            .iter()
            .find(|(_, e)| *e == external)
            .map(|(i, _)| *i)
    }
}

/// One NAT rule: addresses in `internal` become `external` (or the global external
/// address of their family) on the way out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub internal: Net,
    pub external: Option<IpAddr>,
    pub ports: PortMap,
}

impl Rule {
    /// A rule `internal` → the global external address of its family, without a port map.
    pub fn new(internal: Net) -> Rule {
        Rule {
            internal,
            external: None,
            ports: PortMap::default(),
        }
    }
}

/// What happens to IP headers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum L3Mode {
    /// Source NAT outbound, destination restored inbound.
    #[default]
    Snat,
    /// Payload only (host behind an upstream 1:1 NAT).
    Keep,
}

/// What to do with a malformed SIP message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MalformedPolicy {
    #[default]
    Forward,
    Drop,
}

/// What to do with an outbound message that still holds an address of a rule's internal
/// network after the rewrite (it could not be rewritten: unparsable, no external address
/// of its family, more addresses than the edit list holds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeakPolicy {
    /// Dropped (`drop_would_leak`).
    #[default]
    Drop,
    /// Forwarded as it is (the internal address goes out).
    Forward,
}

/// The immutable rewrite configuration. Published to workers as a whole (never mutated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RewriteConfig {
    pub rules: Vec<Rule>,
    pub local_nets: Vec<Net>,
    pub l3: L3Mode,
    /// Rewrite Record-Route/Route values.
    pub record_route: bool,
    /// Rewrite From/To.
    pub from_to: bool,
    pub malformed: MalformedPolicy,
    /// An outbound message that would leak an internal address.
    pub leak: LeakPolicy,
    /// Rewriting disabled: every message is left alone (the origin's "fast path").
    pub enabled: bool,
}

impl Default for RewriteConfig {
    fn default() -> Self {
        RewriteConfig {
            rules: Vec::new(),
            local_nets: default_local_nets(),
            l3: L3Mode::Snat,
            record_route: false,
            from_to: false,
            malformed: MalformedPolicy::Forward,
            leak: LeakPolicy::Drop,
            enabled: true,
        }
    }
}

impl RewriteConfig {
    /// A config with one rule `internal` → the global external address.
    pub fn single(internal: Net) -> RewriteConfig {
        RewriteConfig::networks([internal])
    }

    /// A config with one rule per network, in order, each → the global external address.
    pub fn networks(nets: impl IntoIterator<Item = Net>) -> RewriteConfig {
        RewriteConfig {
            rules: nets.into_iter().map(Rule::new).collect(),
            ..RewriteConfig::default()
        }
    }

    /// The rule whose internal network holds `a` (first match in config order), never for
    /// loopback/unspecified. IPv4-mapped IPv6 is matched by its IPv4 address.
    #[inline]
    pub fn rule_for(&self, a: IpAddr) -> Option<&Rule> {
        if never_rewritten(a) {
            return None;
        }
        let c = canonical(a);
        self.rules.iter().find(|r| r.internal.contains(c))
    }

    /// Is `a` inside the local networks (then traffic to it is internal)?
    #[inline]
    pub fn is_local(&self, a: IpAddr) -> bool {
        let c = canonical(a);
        self.local_nets.iter().any(|n| n.contains(c))
    }

    /// The rule whose external address is `a` (per-rule externals only).
    pub fn rule_by_external(&self, a: IpAddr) -> Option<&Rule> {
        let c = canonical(a);
        self.rules.iter().find(|r| r.external == Some(c))
    }

    /// The external address a rule translates to (its own, or the global one of the
    /// family of `like`).
    #[inline]
    pub fn external_of(&self, rule: &Rule, like: IpAddr, ext: &ExternalAddrs) -> Option<IpAddr> {
        let fam = canonical(like);
        match rule.external {
            Some(e) if e.is_ipv4() == fam.is_ipv4() => Some(e),
            _ => ext.for_family(fam),
        }
    }

    /// Is `a` an address this NAT translates to (global external or a rule's own)?
    #[inline]
    pub fn is_external(&self, a: IpAddr, ext: &ExternalAddrs) -> bool {
        ext.contains(a) || self.rule_by_external(a).is_some()
    }

    /// Inbound without a flow: the one internal host that `a` (an external address) maps
    /// back to, when exactly one rule translates to `a` and its internal side is a single
    /// address (1:1 NAT, the SBC case).
    pub fn inbound_static_target(&self, a: IpAddr, ext: &ExternalAddrs) -> Option<(&Rule, IpAddr)> {
        let c = canonical(a);
        let mut found = None;
        for r in &self.rules {
            let translates = match r.external {
                Some(e) => e == c,
                None => ext.for_family(c) == Some(c),
            };
            if translates {
                if found.is_some() {
                    return None;
                }
                found = Some(r);
            }
        }
        let r = found?;
        r.internal.single_host().map(|h| (r, h))
    }

    /// The rule holding internal address `a` (for inbound port maps).
    pub fn rule_of_internal(&self, a: IpAddr) -> Option<&Rule> {
        let c = canonical(a);
        self.rules.iter().find(|r| r.internal.contains(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_contains_and_prefix_collisions() {
        let n = Net::parse("192.168.1.10/32").unwrap();
        assert!(n.contains("192.168.1.10".parse().unwrap()));
        assert!(!n.contains("192.168.1.100".parse().unwrap()));
        let n = Net::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.255.0.1".parse().unwrap()));
        assert!(!n.contains("110.0.0.12".parse().unwrap()));
        assert!(
            !n.contains("::ffff:10.0.0.1".parse().unwrap()),
            "raw v6 is not v4"
        );
        assert!(Net::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Net::parse("10.0.0.0/33").is_none());
    }

    #[test]
    fn rule_lookup_classes() {
        let c = RewriteConfig::single(Net::parse("10.0.0.0/8").unwrap());
        assert!(c.rule_for("10.1.2.3".parse().unwrap()).is_some());
        assert!(
            c.rule_for("::ffff:10.1.2.3".parse().unwrap()).is_some(),
            "mapped v4"
        );
        assert!(c.rule_for("11.1.2.3".parse().unwrap()).is_none());
        let any = RewriteConfig::single(Net::parse("0.0.0.0/0").unwrap());
        assert!(
            any.rule_for("127.0.0.1".parse().unwrap()).is_none(),
            "loopback never"
        );
        assert!(
            any.rule_for("0.0.0.0".parse().unwrap()).is_none(),
            "unspecified never"
        );
    }

    #[test]
    fn default_local_nets_include_cgnat_and_v6() {
        let c = RewriteConfig::default();
        for a in [
            "100.64.1.1",
            "169.254.1.1",
            "fd00::1",
            "fe80::1",
            "172.31.255.255",
        ] {
            assert!(c.is_local(a.parse().unwrap()), "{a}");
        }
        for a in ["8.8.8.8", "172.32.0.1", "2001:db8::1", "127.0.0.1"] {
            assert!(!c.is_local(a.parse().unwrap()), "{a}");
        }
    }

    /// The compiled IPv4 local networks answer as `is_local`: the defaults, none (no
    /// unused slot matches, `0.0.0.0` included), a /0, as many networks as fit, and more
    /// than fit (then `is_local` itself answers).
    #[test]
    fn local_v4_is_is_local() {
        let with = |local_nets: Vec<Net>| RewriteConfig {
            local_nets,
            ..RewriteConfig::default()
        };
        let many = with(
            (0..20)
                .map(|i| Net::parse(&format!("10.{i}.0.0/16")).unwrap())
                .collect(),
        );
        let eight = with(
            (0..8)
                .map(|i| Net::parse(&format!("10.{i}.0.0/16")).unwrap())
                .collect(),
        );
        let none = with(Vec::new());
        let all = with(vec![Net::parse("0.0.0.0/0").unwrap()]);
        let addrs = [
            "10.0.0.1",
            "10.19.3.3",
            "10.7.1.1",
            "10.8.1.1",
            "10.20.0.1",
            "172.16.0.1",
            "172.32.0.1",
            "192.168.9.9",
            "100.64.0.1",
            "100.128.0.1",
            "169.254.1.1",
            "8.8.8.8",
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "fd00::1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
        ];
        for cfg in [RewriteConfig::default(), many, eight, none, all] {
            let l = LocalV4::of(&cfg);
            for a in addrs {
                let a: IpAddr = a.parse().unwrap();
                assert_eq!(
                    l.is_local(&cfg, a),
                    cfg.is_local(a),
                    "{a} {:?}",
                    cfg.local_nets
                );
            }
        }
    }

    #[test]
    fn one_rule_v4_decides_as_the_config() {
        let ext4 = ExternalAddrs {
            v4: Some(Ipv4Addr::new(203, 0, 113, 1)),
            v6: None,
        };
        let ext6 = ExternalAddrs {
            v4: None,
            v6: Some("2001:db8::9".parse().unwrap()),
        };
        let own = |e: &str| {
            let mut c = RewriteConfig::single(Net::parse("10.0.0.0/8").unwrap());
            c.rules[0].external = Some(e.parse().unwrap());
            c
        };
        let cfgs = [
            RewriteConfig::single(Net::parse("10.0.0.0/8").unwrap()),
            RewriteConfig::single(Net::parse("0.0.0.0/0").unwrap()),
            RewriteConfig::single(Net::parse("192.168.1.7/32").unwrap()),
            own("198.51.100.2"),
            own("2001:db8::2"),
        ];
        let addrs = [
            "10.1.2.3",
            "10.255.255.255",
            "11.0.0.1",
            "192.168.1.7",
            "192.168.1.8",
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
        ];
        let exts = [&ext4, &ext6, &ExternalAddrs::default()];
        for cfg in &cfgs {
            for ext in exts {
                let one = OneRuleV4::of(cfg, ext).unwrap();
                // `is_of` holds for the config and external addresses it was built from
                // only (or for others that compile to the same rule).
                for (c2, e2) in cfgs.iter().flat_map(|c| exts.map(|e| (c, e))) {
                    let same = OneRuleV4::of(c2, e2) == Some(one);
                    assert_eq!(
                        one.is_of(c2, e2),
                        same,
                        "{:?} {ext:?} / {:?} {e2:?}",
                        cfg.rules,
                        c2.rules
                    );
                }
                for a in addrs {
                    let a: Ipv4Addr = a.parse().unwrap();
                    let want = cfg.rule_for(IpAddr::V4(a)).map(|r| {
                        match cfg.external_of(r, IpAddr::V4(a), ext) {
                            Some(IpAddr::V4(e)) => Some(e),
                            _ => None,
                        }
                    });
                    assert_eq!(one.decide(a), want, "{a} {:?} {ext:?}", cfg.rules);
                }
            }
        }
        let two = RewriteConfig::networks([
            Net::parse("10.0.0.0/8").unwrap(),
            Net::parse("172.16.0.0/12").unwrap(),
        ]);
        assert_eq!(OneRuleV4::of(&two, &ext4), None);
        let v6 = RewriteConfig::single(Net::parse("fd00::/8").unwrap());
        assert_eq!(OneRuleV4::of(&v6, &ext4), None);
    }

    #[test]
    fn overlap_and_within() {
        let a = Net::parse("10.0.0.0/24").unwrap();
        let b = Net::parse("10.0.0.128/25").unwrap();
        assert!(b.within(&a) && a.overlaps(&b) && !a.within(&b));
        assert!(!a.overlaps(&Net::parse("10.0.1.0/24").unwrap()));
    }

    #[test]
    fn port_map_both_ways() {
        let m = PortMap::new(&[(5060, 15060), (20000, 30000)]).unwrap();
        assert_eq!(m.outbound(5060), Some(15060));
        assert_eq!(m.inbound(30000), Some(20000));
        assert_eq!(m.outbound(5061), None);
    }
}
