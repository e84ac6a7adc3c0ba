//! The fuzz targets' bodies: a few fixed rewrite configs, and the invariants checked on
//! every input (a violated invariant panics, which libFuzzer reports as a crash).
//!
//! `packet`: first input byte = selector (bit 0: inbound, bits 1-2: config, bit 3: inbound
//! with a flow-table answer), the rest = an Ethernet frame. The frame gets 2048 bytes of
//! tailroom, is parsed, and a whole UDP datagram goes through `decide` + `rewrite_packet`
//! as the worker does it. Checked:
//! - no panic; `Err` leaves the buffer untouched; the returned length fits the buffer;
//! - `TooBig`: the buffer is untouched;
//! - no payload rewrite and no IP address change: the UDP payload is untouched, and a
//!   consistent input (UDP length = IP payload length, IPv4 header checksum valid) comes
//!   out byte for byte (length fields and header checksum are rewritten regardless);
//! - the output parses again as a whole UDP datagram of the returned length;
//! - UDP checksum valid before and a rewrite happened → valid after; whatever it was, the
//!   checksum is exactly as wrong after as before (RFC 1624, no "repair"); an IPv4 UDP
//!   checksum of 0 (none) stays 0;
//! - IPv4 header checksum valid before → valid after;
//! - outbound: a second rewrite of the output gives `Unchanged` and no IP change, or
//!   exactly the same bytes (an output that no longer parses is a failure too).
//!
//! `message`: the whole input is one SIP message; every config, both directions (inbound
//! with and without a known internal host), 2048 bytes of tailroom, plus outbound with no
//! tailroom (to reach `TooBig`). Checked: no panic; length within the buffer; every outcome
//! but `Rewritten` leaves the buffer untouched (tailroom included); a rewrite keeps the
//! difference between Content-Length and the real body length (when the message has one
//! plain Content-Length header and CRLF line ends); outbound, a second pass over the output
//! gives `Unchanged` or exactly the same bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use sipnat::nat::decide::{self, Decision};
use sipnat::nat::{ExternalAddrs, L3Mode, Net, PortMap, RewriteConfig, Rule};
use sipnat::rewrite::packet::{rewrite_packet, udp_checksum_ok, L3Action, PacketRewrite};
use sipnat::rewrite::{rewrite_message, Context, Direction, Outcome};
use sipnat::wire::{checksum, ipv4, parse, Layout, Link};

/// Bytes of room after the packet (the worker's frames have at least this much).
pub const TAILROOM: usize = 2048;

/// One fixed configuration: rules, external addresses, and the internal hosts used as the
/// flow table's answer for inbound packets of each family.
pub struct Variant {
    pub name: &'static str,
    pub config: RewriteConfig,
    pub external: ExternalAddrs,
    pub flow_v4: Ipv4Addr,
    pub flow_v6: Ipv6Addr,
}

fn net(s: &str) -> Net {
    Net::parse(s).expect("valid net")
}

const EXT_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const EXT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);

/// The four configs the selector picks from.
pub fn variants() -> &'static [Variant; 4] {
    static V: OnceLock<[Variant; 4]> = OnceLock::new();
    V.get_or_init(|| {
        let ports = PortMap::new(&[(5060, 15060), (20000, 30000)]).expect("two entries");
        [
            Variant {
                name: "10/8 v4-only",
                config: RewriteConfig::single(net("10.0.0.0/8")),
                external: ExternalAddrs::v4(EXT_V4),
                flow_v4: Ipv4Addr::new(10, 0, 0, 7),
                flow_v6: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 7),
            },
            Variant {
                name: "192.168/16 + fd00::/8, v4+v6, record_route+from_to",
                config: RewriteConfig {
                    rules: vec![
                        Rule {
                            internal: net("192.168.0.0/16"),
                            external: None,
                            ports: PortMap::default(),
                        },
                        Rule {
                            internal: net("fd00::/8"),
                            external: None,
                            ports: PortMap::default(),
                        },
                    ],
                    record_route: true,
                    from_to: true,
                    ..RewriteConfig::default()
                },
                external: ExternalAddrs {
                    v4: Some(EXT_V4),
                    v6: Some(EXT_V6),
                },
                flow_v4: Ipv4Addr::new(192, 168, 1, 7),
                flow_v6: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 7),
            },
            Variant {
                name: "10/8 -> 198.51.100.20, ports 5060->15060 20000->30000",
                config: RewriteConfig {
                    rules: vec![Rule {
                        internal: net("10.0.0.0/8"),
                        external: Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 20))),
                        ports,
                    }],
                    ..RewriteConfig::default()
                },
                external: ExternalAddrs::v4(EXT_V4),
                flow_v4: Ipv4Addr::new(10, 0, 0, 7),
                flow_v6: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 7),
            },
            Variant {
                name: "10.1.2.3/32 1:1 with ports, L3 keep",
                config: RewriteConfig {
                    rules: vec![Rule {
                        internal: net("10.1.2.3/32"),
                        external: None,
                        ports,
                    }],
                    l3: L3Mode::Keep,
                    record_route: true,
                    ..RewriteConfig::default()
                },
                external: ExternalAddrs::v4(EXT_V4),
                flow_v4: Ipv4Addr::new(10, 1, 2, 3),
                flow_v6: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 7),
            },
        ]
    })
}

/// The input with `tailroom` zero bytes after it.
fn with_tailroom(data: &[u8], tailroom: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(data.len() + tailroom);
    b.extend_from_slice(data);
    b.resize(data.len() + tailroom, 0);
    b
}

fn ipv4_header_ok(buf: &[u8], layout: &Layout) -> bool {
    ipv4::Packet::new_unchecked(&buf[layout.l3..]).verify_checksum()
}

/// Folded sum over everything the UDP checksum covers, checksum field included: 0xffff
/// (or 0, the other one's-complement zero) when the checksum is right; otherwise how far
/// off it is. A rewrite must keep this value.
fn udp_residual(buf: &[u8], layout: &Layout) -> u16 {
    let (_, _, _, payload_len) = layout.udp(buf).expect("whole UDP datagram");
    let udp_len = 8 + payload_len;
    let ip = &buf[layout.l3..];
    let pseudo = if layout.ipv6 {
        checksum::pseudo_v6(&ip[8..24], &ip[24..40], 17, udp_len as u32)
    } else {
        checksum::pseudo_v4(&ip[12..16], &ip[16..20], 17, udp_len as u32)
    };
    match checksum::fold(pseudo + checksum::sum(&buf[layout.l4..layout.l4 + udp_len])) {
        0 => 0xffff,
        v => v,
    }
}

fn udp_check_field(buf: &[u8], layout: &Layout) -> u16 {
    u16::from_be_bytes([buf[layout.l4 + 6], buf[layout.l4 + 7]])
}

/// `SIPNAT_FUZZ_TRACE=1`: print each packet's decision and result (to check seeds).
fn trace() -> bool {
    static T: OnceLock<bool> = OnceLock::new();
    *T.get_or_init(|| std::env::var_os("SIPNAT_FUZZ_TRACE").is_some_and(|v| v == "1"))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Runs the worker's decision and rewrite on a frame in `buf` (frame in `buf[..frame_len]`,
/// the rest tailroom). `None` when the frame is not a whole UDP datagram or the decision
/// is not to rewrite.
fn decide_and_rewrite(
    buf: &mut [u8],
    frame_len: usize,
    v: &'static Variant,
    inbound: bool,
    use_flow: bool,
) -> Option<(Layout, Context<'static>, L3Action, PacketRewrite)> {
    let layout = parse(&buf[..frame_len], Link::Ethernet).ok()?;
    layout.udp(&buf[..frame_len])?;
    let decision = if inbound {
        let flow = use_flow.then_some(if layout.ipv6 {
            IpAddr::V6(v.flow_v6)
        } else {
            IpAddr::V4(v.flow_v4)
        });
        decide::inbound(&v.config, &v.external, layout.dst, flow)
    } else {
        decide::outbound(&v.config, &v.external, layout.src, layout.dst)
    };
    if trace() {
        eprintln!(
            "{} {}: {decision:?}",
            v.name,
            if inbound { "in" } else { "out" }
        );
    }
    let Decision::Rewrite {
        direction,
        l3,
        internal,
    } = decision
    else {
        return None;
    };
    let ctx = Context {
        config: &v.config,
        external: v.external,
        direction,
        internal,
    };
    let before = buf.to_vec();
    match rewrite_packet(buf, &layout, &ctx, l3) {
        Ok(r) => {
            if trace() {
                eprintln!("  -> {r:?}");
            }
            Some((layout, ctx, l3, r))
        }
        Err(e) => {
            assert_eq!(
                buf,
                &before[..],
                "rewrite_packet returned {e:?} but changed the buffer"
            );
            None
        }
    }
}

/// The `packet` target.
pub fn packet(data: &[u8]) {
    let Some((&sel, frame)) = data.split_first() else {
        return;
    };
    let inbound = sel & 1 != 0;
    let v = &variants()[usize::from((sel >> 1) & 3)];
    let use_flow = sel & 8 != 0;

    let mut buf = with_tailroom(frame, TAILROOM);
    let Ok(layout) = parse(frame, Link::Ethernet) else {
        return;
    };
    let Some((_, _, payload, payload_len)) = layout.udp(frame) else {
        return;
    };
    let udp_ok_before = udp_checksum_ok(frame, &layout);
    let udp_residual_before = udp_residual(frame, &layout);
    let udp_check_before = udp_check_field(frame, &layout);
    let ip4_ok_before = !layout.ipv6 && ipv4_header_ok(frame, &layout);
    let consistent = layout.l4 + 8 + payload_len == layout.ip_end && (layout.ipv6 || ip4_ok_before);

    let Some((_, ctx, l3, r)) = decide_and_rewrite(&mut buf, frame.len(), v, inbound, use_flow)
    else {
        return;
    };
    let ctxmsg = || {
        format!(
            "config {:?}, {:?}, internal {:?}, l3 {l3:?}, result {r:?}\n in: {}\nout: {}",
            v.name,
            ctx.direction,
            ctx.internal,
            hex(&frame[..layout.ip_end]),
            hex(&buf[..r.len.min(buf.len())])
        )
    };
    assert!(r.len <= buf.len(), "length past the buffer: {}", ctxmsg());
    assert!(
        r.len >= layout.l4 + 8,
        "length cuts the UDP header: {}",
        ctxmsg()
    );

    if r.sip == Outcome::TooBig {
        assert!(!r.l3_changed, "TooBig with an IP change: {}", ctxmsg());
        assert_eq!(
            r.len,
            layout.ip_end,
            "TooBig changed the length: {}",
            ctxmsg()
        );
        assert!(
            buf[..frame.len()] == *frame,
            "TooBig changed the buffer: {}",
            ctxmsg()
        );
        return;
    }
    let rewritten = matches!(r.sip, Outcome::Rewritten(_));
    if !rewritten && !r.l3_changed {
        assert!(
            buf[payload..payload + payload_len] == frame[payload..payload + payload_len],
            "payload changed without a rewrite: {}",
            ctxmsg()
        );
        if consistent {
            assert_eq!(
                r.len,
                layout.ip_end,
                "length changed without a rewrite: {}",
                ctxmsg()
            );
            assert!(
                buf[..layout.ip_end] == frame[..layout.ip_end],
                "bytes changed without a rewrite: {}",
                ctxmsg()
            );
        }
    }

    let out = parse(&buf[..r.len], Link::Ethernet)
        .unwrap_or_else(|e| panic!("output does not parse ({e:?}): {}", ctxmsg()));
    assert_eq!(
        out.ip_end,
        r.len,
        "IP length disagrees with the returned length: {}",
        ctxmsg()
    );
    let Some((_, _, out_payload, out_payload_len)) = out.udp(&buf[..r.len]) else {
        panic!("output is not a whole UDP datagram: {}", ctxmsg());
    };
    assert_eq!(out_payload, payload, "payload moved: {}", ctxmsg());
    // An untouched packet is forwarded as it came, trailing bytes past the UDP
    // length included; anything the rewriter touched must come out consistent.
    if rewritten || r.l3_changed || consistent {
        assert_eq!(
            out.l4 + 8 + out_payload_len,
            r.len,
            "UDP length != IP payload: {}",
            ctxmsg()
        );
    }
    if !out.ipv6 {
        if ip4_ok_before {
            assert!(
                ipv4_header_ok(&buf, &out),
                "IPv4 header checksum broken: {}",
                ctxmsg()
            );
        }
        if udp_check_before == 0 {
            assert_eq!(
                udp_check_field(&buf, &out),
                0,
                "UDP checksum 0 became set: {}",
                ctxmsg()
            );
        }
    }
    if (rewritten || r.l3_changed) && udp_ok_before {
        assert!(
            udp_checksum_ok(&buf[..r.len], &out),
            "UDP checksum broken: {}",
            ctxmsg()
        );
    }
    if layout.ipv6 || udp_check_before != 0 {
        assert_eq!(
            udp_residual(&buf[..r.len], &out),
            udp_residual_before,
            "UDP checksum error changed: {}",
            ctxmsg()
        );
    }

    // Idempotence: the output, rewritten again the same way, stays as it is: a rewritten
    // payload now gives `Unchanged` (not `Malformed`: the output must still parse), any
    // other outcome repeats; the IP header does not change again.
    if !inbound {
        let first = buf[..r.len].to_vec();
        let mut again = with_tailroom(&first, TAILROOM);
        let second = decide_and_rewrite(&mut again, first.len(), v, false, false);
        let Some((_, _, _, r2)) = second else {
            panic!("the output is no longer rewritten at all: {}", ctxmsg());
        };
        let same = again[..r2.len] == first[..];
        let expected = if rewritten { Outcome::Unchanged } else { r.sip };
        assert!(
            same && (r2.sip == expected || matches!(r2.sip, Outcome::Rewritten(_))),
            "second outbound rewrite: {r2:?}, expected {expected:?} and the same bytes:\n{}\nagain: {}",
            ctxmsg(),
            hex(&again[..r2.len])
        );
    }
}

/// `(Content-Length, real body length)` of a plainly framed message: CRLF line ends up to
/// the first empty line, no whitespace-only or stray-CR/LF header lines, and exactly one
/// `Content-Length`/`l` header whose value is plain digits. `None` for anything else (the
/// check is skipped then, rather than guessing what the parser makes of it).
fn content_length(msg: &[u8]) -> Option<(i64, i64)> {
    if msg.first().is_none_or(|b| b" \t\r\n".contains(b)) {
        return None;
    }
    let head_end = msg.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = &msg[..head_end];
    let lines: Vec<&[u8]> = head.split(|&b| b == b'\n').collect();
    let mut found = None;
    for (i, l) in lines.iter().enumerate() {
        // Every line but the last ends with CR (head stops before the final CRLF).
        let l = if i + 1 < lines.len() {
            l.strip_suffix(b"\r")?
        } else {
            l
        };
        if l.contains(&b'\r') || l.iter().all(|b| *b == b' ' || *b == b'\t') {
            return None;
        }
        if i == 0 || l[0] == b' ' || l[0] == b'\t' {
            continue;
        }
        let Some(colon) = l.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = l[..colon].trim_ascii();
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let value = l[colon + 1..].trim_ascii();
        let folded = lines
            .get(i + 1)
            .is_some_and(|n| n.first().is_some_and(|b| *b == b' ' || *b == b'\t'));
        if found.is_some()
            || folded
            || value.is_empty()
            || value.len() > 9
            || !value.iter().all(u8::is_ascii_digit)
        {
            return None;
        }
        found = Some(std::str::from_utf8(value).ok()?.parse::<i64>().ok()?);
    }
    let body = (msg.len() - (head_end + 4)) as i64;
    found.map(|n| (n, body))
}

/// Rewrites `msg` with `tailroom`; checks the length and the untouched-unless-rewritten
/// rule; returns the output when it was rewritten.
fn message_once(msg: &[u8], tailroom: usize, ctx: &Context<'_>, what: &str) -> Option<Vec<u8>> {
    let mut buf = with_tailroom(msg, tailroom);
    let r = rewrite_message(&mut buf, msg.len(), ctx);
    if trace() {
        eprintln!(
            "{what} {:?} {:?} tailroom {tailroom}: {r:?}",
            ctx.direction, ctx.internal
        );
    }
    assert!(r.len <= buf.len(), "{what}: length past the buffer: {r:?}");
    if let Outcome::Rewritten(_) = r.outcome {
        let out = buf[..r.len].to_vec();
        if let Some((n, body)) = content_length(msg) {
            let after = content_length(&out);
            assert!(
                after.is_some_and(|(n2, body2)| n2 - body2 == n - body),
                "{what}: Content-Length {n} for a body of {body} became {after:?} \
                 (Content-Length, body):\n in: {}\nout: {}",
                hex(msg),
                hex(&out)
            );
        }
        Some(out)
    } else {
        assert_eq!(r.len, msg.len(), "{what}: {r:?} changed the length");
        assert!(
            buf[..msg.len()] == *msg,
            "{what}: {r:?} changed the message"
        );
        assert!(
            buf[msg.len()..].iter().all(|&b| b == 0),
            "{what}: {r:?} wrote to the tailroom"
        );
        None
    }
}

/// The `message` target.
pub fn message(msg: &[u8]) {
    for v in variants() {
        let out = Context {
            config: &v.config,
            external: v.external,
            direction: Direction::Outbound,
            internal: None,
        };
        if let Some(first) = message_once(msg, TAILROOM, &out, v.name) {
            // Idempotence: a second pass over the output changes nothing.
            let mut buf = with_tailroom(&first, TAILROOM);
            let r2 = rewrite_message(&mut buf, first.len(), &out);
            if trace() {
                eprintln!("{} second pass: {r2:?}", v.name);
            }
            assert!(r2.len <= buf.len());
            // Unchanged; or a rewrite to the very same bytes. Not Malformed: the output
            // of a rewrite must parse as well as its input did.
            let same = buf[..r2.len] == first[..];
            assert!(
                r2.outcome == Outcome::Unchanged
                    || (matches!(r2.outcome, Outcome::Rewritten(_)) && same),
                "{}: second outbound rewrite gave {r2:?}, expected Unchanged:\n in: {}\n 1st: {}\n 2nd: {}",
                v.name,
                hex(msg),
                hex(&first),
                hex(&buf[..r2.len])
            );
        }
        // No tailroom: a growing rewrite must give TooBig and leave the buffer alone.
        message_once(msg, 0, &out, v.name);
        for internal in [
            None,
            Some(IpAddr::V4(v.flow_v4)),
            Some(IpAddr::V6(v.flow_v6)),
        ] {
            let inb = Context {
                direction: Direction::Inbound,
                internal,
                ..out
            };
            message_once(msg, TAILROOM, &inb, v.name);
        }
    }
}
