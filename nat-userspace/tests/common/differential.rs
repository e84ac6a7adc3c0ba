//! The fast path against the reference rewriter: the same bytes (tailroom included) and
//! the same result, for one message or one packet, under rule sets that exercise the
//! fast path's gating (one /24, several /8s, an IPv6 rule, a /4, port maps, 1:1 rules
//! with their own external addresses, none) in both directions.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sipnat::{
    nat::{Direction, ExternalAddrs, L3Action, Net, PortMap, RewriteConfig, Rule},
    rewrite::{packet::rewrite_packet_gated, reference, rewrite_message_in, Context, Gate},
    wire::{self, Link},
};

/// One rule set with its external addresses.
pub struct RuleSet {
    pub name: &'static str,
    pub config: RewriteConfig,
    pub external: ExternalAddrs,
    /// An internal host of the rule set (the flow table's answer inbound).
    pub host: IpAddr,
}

/// The rule sets of the differential checks, one a line: name | rules, comma-separated,
/// each `net[>own external][ internal:external port ...]` | `rr` for Record-Route and
/// From/To rewriting, `-` without | the external addresses | an internal host.
const RULE_SETS: &[&str] = &[
    "one /24 | 10.88.0.0/24 | rr | 198.51.100.1 | 10.88.0.2",
    "several /8s (and /12, /16, /10) | 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, 11.0.0.0/8 | rr | 203.0.113.10 | 192.168.1.100",
    "IPv4 + IPv6 rules, both externals | 192.168.0.0/16, fd00::/8 | rr | 203.0.113.10 2001:db8::10 | 192.168.1.7",
    "a /4 and a /6 | 160.0.0.0/4, 8.0.0.0/6 | - | 203.0.113.10 | 172.16.0.9",
    "port maps, own external | 10.0.0.0/8>198.51.100.20 5060:15060 20000:30000, 192.168.1.10/32 | rr | 203.0.113.10 | 10.0.0.7",
    "1:1 hosts with own externals | 192.168.1.100/32>198.51.100.7, 10.0.0.5/32 5060:5070 | rr | 203.0.113.10 | 192.168.1.100",
    "IPv6 external for an IPv4 rule | 10.0.0.0/8>2001:db8::99 | - | 2001:db8::10 | 10.0.0.7",
    "no rules |  | rr | 203.0.113.10 | 10.0.0.7",
];

/// A rule of [`RULE_SETS`]: `net[>own external][ internal:external port ...]`.
fn rule(spec: &str) -> Rule {
    let mut words = spec.split_whitespace();
    let first = words.next().expect("a net");
    let (net, external) = match first.split_once('>') {
        Some((net, e)) => (net, Some(e.parse().expect("valid address"))),
        None => (first, None),
    };
    let ports: Vec<(u16, u16)> = words
        .map(|p| {
            let (i, e) = p.split_once(':').expect("internal:external port");
            (i.parse().expect("port"), e.parse().expect("port"))
        })
        .collect();
    Rule {
        internal: Net::parse(net).expect("valid net"),
        external,
        ports: PortMap::new(&ports).expect("port map"),
    }
}

/// A line of [`RULE_SETS`].
fn rule_set(line: &'static str) -> RuleSet {
    let f: Vec<&'static str> = line.split('|').map(str::trim).collect();
    let [name, rules, rr_ft, external, host] = f[..] else {
        panic!("five fields: {line}");
    };
    let mut ext = ExternalAddrs { v4: None, v6: None };
    for a in external.split_whitespace() {
        match a.parse().expect("valid address") {
            IpAddr::V4(v4) => ext.v4 = Some(v4),
            IpAddr::V6(v6) => ext.v6 = Some(v6),
        }
    }
    let rr_ft = rr_ft == "rr";
    RuleSet {
        name,
        config: RewriteConfig {
            rules: rules
                .split(',')
                .filter(|r| !r.trim().is_empty())
                .map(rule)
                .collect(),
            record_route: rr_ft,
            from_to: rr_ft,
            ..RewriteConfig::default()
        },
        external: ext,
        host: host.parse().expect("valid host"),
    }
}

const EXT4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const EXT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);

/// The rule sets of the differential checks.
pub fn rule_sets() -> Vec<RuleSet> {
    RULE_SETS.iter().map(|l| rule_set(l)).collect()
}

/// Every way a message is rewritten under `s`: outbound, inbound without and with a
/// known internal host, both ways under a NAPT binding of the host (internal port
/// 5060, external port 20001), and outbound with media bindings (`DialogPorts`: ports
/// that change with the dialog).
pub fn contexts(s: &RuleSet) -> [Context<'_>; 6] {
    let napt = Some(sipnat::rewrite::Napt {
        internal: s.host,
        internal_port: 5060,
        external_port: 20001,
    });
    let ctx = |direction, internal, local_port, napt| Context {
        config: &s.config,
        external: s.external,
        direction,
        internal,
        local_port: Some(local_port),
        napt,
        media: None,
    };
    [
        ctx(Direction::Outbound, None, 5060, None),
        ctx(Direction::Inbound, None, 5060, None),
        ctx(Direction::Inbound, Some(s.host), 15060, None),
        ctx(Direction::Outbound, None, 5060, napt),
        ctx(Direction::Inbound, Some(s.host), 20001, napt),
        Context {
            media: Some(&sipnat::rewrite::context::DialogPorts),
            ..ctx(Direction::Outbound, None, 5060, None)
        },
    ]
}

/// Scratch state reused across checks (no allocation per check but the first).
pub struct Checker {
    fast: Vec<u8>,
    reference: Vec<u8>,
    edits: sipnat::rewrite::edits::Edits,
    pub messages: u64,
    pub packets: u64,
    pub rewritten: u64,
    gates: u64,
}

impl Default for Checker {
    fn default() -> Self {
        Checker {
            fast: Vec::new(),
            reference: Vec::new(),
            edits: sipnat::rewrite::edits::Edits::new(),
            messages: 0,
            packets: 0,
            rewritten: 0,
            gates: 0,
        }
    }
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Checker {
    /// The gate of `ctx`: made for media NAT ([`Gate::for_media_nat`]) with media
    /// bindings, as the daemon's are, and on every other call without them too (a gate
    /// for media NAT must give the exact result whatever the context).
    fn gate(&mut self, ctx: &Context<'_>) -> Gate {
        self.gates += 1;
        if ctx.media.is_some() || self.gates.is_multiple_of(2) {
            Gate::of(ctx).for_media_nat()
        } else {
            Gate::of(ctx)
        }
    }

    /// Both buffers: `input`, then `tailroom` bytes of `fill`.
    fn load(&mut self, input: &[u8], tailroom: usize, fill: u8) {
        for b in [&mut self.fast, &mut self.reference] {
            b.clear();
            b.extend_from_slice(input);
            b.resize(input.len() + tailroom, fill);
        }
    }

    /// One message under `ctx`, with `tailroom` bytes after it: panics, naming `what`,
    /// when the fast path and the reference differ.
    pub fn message(&mut self, what: &str, input: &[u8], ctx: &Context<'_>, tailroom: usize) {
        self.messages += 1;
        let n = input.len();
        self.load(input, tailroom, 0xa5);
        let gate = self.gate(ctx);
        let f = rewrite_message_in(&mut self.fast, n, ctx, &gate, &mut self.edits);
        let r = reference::rewrite_message(&mut self.reference, n, ctx);
        if f != r || self.fast != self.reference {
            panic!(
                "{what}: fast path differs from the reference ({:?}, {} internal, tailroom {tailroom})\n\
                 fast:      {f:?}\nreference: {r:?}\ninput:\n{}\nfast output:\n{}\nreference output:\n{}",
                ctx.direction,
                ctx.internal.map_or("no".into(), |a| a.to_string()),
                show(input),
                show(&self.fast[..f.len.min(self.fast.len())]),
                show(&self.reference[..r.len.min(self.reference.len())]),
            );
        }
        if matches!(f.outcome, sipnat::rewrite::Outcome::Rewritten(_)) {
            self.rewritten += 1;
        }
    }

    /// One message under every context of every rule set, with room to grow and without.
    pub fn message_everywhere(&mut self, what: &str, input: &[u8], sets: &[RuleSet]) {
        for s in sets {
            for ctx in contexts(s) {
                for tailroom in [1024, 0] {
                    self.message(&format!("{what} [{}]", s.name), input, &ctx, tailroom);
                }
            }
        }
    }

    /// One frame (`link`) under `ctx`, with the L3 actions a NAT would take (none, the
    /// source or the destination changed): same bytes, same result. Frames that are not
    /// whole UDP datagrams are skipped (false).
    pub fn packet(&mut self, what: &str, frame: &[u8], link: Link, ctx: &Context<'_>) -> bool {
        let Ok(layout) = wire::parse(frame, link) else {
            return false;
        };
        if layout.udp(frame).is_none() || layout.ip_end > frame.len() {
            return false;
        }
        let v6 = layout.ipv6;
        let ext: IpAddr = if v6 {
            IpAddr::V6(EXT6)
        } else {
            IpAddr::V4(EXT4)
        };
        let host: IpAddr = match (v6, ctx.internal) {
            (false, Some(h @ IpAddr::V4(_))) | (true, Some(h @ IpAddr::V6(_))) => h,
            (false, _) => IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)),
            (true, _) => IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 7)),
        };
        let gate = self.gate(ctx);
        let l3 = |src, dst| L3Action { src, dst };
        for l3 in [
            L3Action::default(),
            l3(Some(ext), None),
            l3(None, Some(host)),
            l3(Some(layout.src), None),
        ] {
            for tailroom in [2048, 0] {
                self.packets += 1;
                self.load(&frame[..layout.ip_end], tailroom, 0x5a);
                let f =
                    rewrite_packet_gated(&mut self.fast, &layout, ctx, l3, &gate, &mut self.edits);
                let r = reference::rewrite_packet(&mut self.reference, &layout, ctx, l3);
                if f != r || self.fast != self.reference {
                    panic!(
                        "{what}: fast packet path differs from the reference ({:?}, {l3:?}, tailroom {tailroom})\n\
                         fast:      {f:?}\nreference: {r:?}\nframe: {frame:02x?}",
                        ctx.direction
                    );
                }
            }
        }
        true
    }
}
