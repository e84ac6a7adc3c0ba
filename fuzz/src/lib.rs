//! The fuzz targets' bodies: a few fixed rewrite configs, and the invariants checked on
//! every input (a violated invariant panics, which libFuzzer reports as a crash).
//!
//! `packet`: first input byte = selector (bit 0: inbound, bits 1-2: config, bit 3: inbound
//! with a flow-table answer), the rest = an Ethernet frame. The frame gets 2048 bytes of
//! tailroom and goes through the worker's own per-packet pipeline
//! (`sipnat::datapath::pipeline::Pipeline::process`: steering by SIP port, decision, flow
//! table, rewrite, TTL, egress). Checked:
//! - no panic; every length fits its buffer;
//! - the kernel gets a packet it did not ask to change byte for byte as it came, and a
//!   packet redone in the scratch buffer (it outgrew the frame) leaves the frame untouched;
//! - no payload rewrite and no IP address change: the UDP payload is untouched, and a
//!   consistent input (UDP length = IP payload length, IPv4 header checksum valid) comes
//!   out byte for byte but for the router hop (TTL / hop limit one less);
//! - the output parses again as a whole UDP datagram of the returned length;
//! - UDP checksum valid before and a rewrite happened → valid after; whatever it was, the
//!   checksum is exactly as wrong after as before (RFC 1624, no "repair"); an IPv4 UDP
//!   checksum of 0 (none) stays 0;
//! - IPv4 header checksum valid before → valid after;
//! - outbound: a second rewrite of the output gives `Unchanged` and no IP change, or
//!   exactly the same bytes (an output that no longer parses is a failure too);
//! - a message dropped for leaking an internal address (`drop_would_leak`) is outbound;
//!   one that was transmitted is transmitted again on the second pass (never dropped then).
//!
//! `differential`: the fast path against the reference rewriter
//! (`sipnat::rewrite::reference`). First input byte = selector (bits 0-2: rule set, bits
//! 3-4: outbound / inbound / inbound with a known internal host, bit 5: the rest is an
//! Ethernet frame (whole-packet rewrite, with an L3 action) rather than one SIP message,
//! bit 6: no tailroom). Checked: the same output bytes (tailroom included) and the same
//! result.
//!
//! `message`: the whole input is one SIP message; every config, both directions (inbound
//! with and without a known internal host), 2048 bytes of tailroom, plus outbound with no
//! tailroom (to reach `TooBig`). Checked: no panic; length within the buffer; every outcome
//! but `Rewritten` leaves the buffer untouched (tailroom included); a rewrite keeps the
//! difference between Content-Length and the real body length (when the message has one
//! plain Content-Length header and CRLF line ends), but for bytes past the declared body,
//! which are discarded (the body is then exactly Content-Length long); outbound, a second
//! pass over the output gives `Unchanged` or exactly the same bytes and discards nothing;
//! inbound never reports a leak.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use sipnat::datapath::pipeline::{Action, At, Egress, Env, Pipeline, Route, Side};
use sipnat::datapath::stats::{Batch, Counter};
use sipnat::datapath::DataplaneSnapshot;
use sipnat::ip::reasm::ReasmLimits;
use sipnat::nat::flow::{FlowKey, FlowTable};
use sipnat::nat::{Direction, ExternalAddrs, L3Action, L3Mode, Net, PortMap, RewriteConfig, Rule};
use sipnat::rewrite::context::DialogPorts;
use sipnat::rewrite::edits::Edits;
use sipnat::rewrite::packet::{rewrite_packet_gated, udp_checksum_ok};
use sipnat::rewrite::{reference, rewrite_message, rewrite_message_in, Context, Gate, Outcome};
use sipnat::wire::{checksum, ipv4, ipv6, parse, Layout, Link};

thread_local! {
    /// The `differential` target's edit list (one per thread, as a worker has one).
    static EDITS: core::cell::RefCell<Edits> = core::cell::RefCell::new(Edits::new());
}

/// The SIP ports of every variant (the seeds use these).
pub const SIP_PORTS: &[u16] = &[5060, 5061, 5080, 15060];

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
                    rules: vec![Rule::new(net("192.168.0.0/16")), Rule::new(net("fd00::/8"))],
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

/// The data planes of the variants (rules, external addresses, SIP ports).
fn dataplanes() -> &'static [DataplaneSnapshot; 4] {
    static D: OnceLock<[DataplaneSnapshot; 4]> = OnceLock::new();
    D.get_or_init(|| {
        variants()
            .each_ref()
            .map(|v| DataplaneSnapshot::new(v.config.clone(), v.external, SIP_PORTS))
    })
}

/// Every destination is directly reachable, link header kept, MTU 9000.
struct Direct;

impl Egress for Direct {
    fn route(&self, _: Side, _: IpAddr) -> Route {
        Route::Direct {
            macs: None,
            mtu: 9000,
        }
    }
}

/// What the pipeline did with one frame.
pub struct Run {
    pub action: Action,
    /// The bytes the action refers to (the frame, or the scratch buffer), whole.
    pub bytes: Vec<u8>,
    pub batch: Batch,
}

/// Runs the worker's pipeline on a frame in `buf` (frame in `buf[..frame_len]`, the rest
/// tailroom). Inbound with `use_flow`: the flow table knows the packet's flow (to the
/// variant's internal host).
fn run_pipeline(buf: &mut [u8], frame_len: usize, i: usize, inbound: bool, use_flow: bool) -> Run {
    let v = &variants()[i];
    let flows = FlowTable::new(64, 300);
    let napt = sipnat::nat::napt::NaptTable::new(64, 300);
    if let (true, true, Ok(l)) = (inbound, use_flow, parse(&buf[..frame_len], Link::Ethernet)) {
        if let Some((sport, dport, _, _)) = l.udp(&buf[..frame_len]) {
            let internal = if l.ipv6 {
                IpAddr::V6(v.flow_v6)
            } else {
                IpAddr::V4(v.flow_v4)
            };
            flows.insert(FlowKey::new(l.dst, dport, l.src, sport), internal, 0);
        }
    }
    let env = Env {
        dataplane: &dataplanes()[i],
        flows: &flows,
        napt: &napt,
        media: None,
        egress: &Direct,
        link: Link::Ethernet,
        now_ms: 0,
    };
    // Two reassembly slots: a fuzz input is one frame (a fresh pipeline per input keeps
    // runs reproducible; the default 16 MiB would make each run slow).
    let mut pipe = Pipeline::new(
        ReasmLimits {
            memory: 2 * 65535,
            ..ReasmLimits::default()
        },
        1,
    );
    let mut batch = Batch::default();
    let side = if inbound { Side::Outside } else { Side::Inside };
    let action = pipe.process(&env, side, buf, frame_len, &mut batch);
    if trace() {
        eprintln!(
            "{} {}: {action:?}",
            v.name,
            if inbound { "in" } else { "out" }
        );
    }
    let at = match &action {
        Action::Tx { at, .. } | Action::Fragment { at, .. } | Action::Kernel { at, .. } => *at,
        _ => At::Frame,
    };
    let bytes = match at {
        At::Frame => buf.to_vec(),
        At::Scratch => pipe.scratch().to_vec(),
    };
    Run {
        action,
        bytes,
        batch,
    }
}

/// `frame` after one router hop (TTL / hop limit one less, IPv4 checksum updated).
fn hop(frame: &[u8], layout: &Layout) -> Vec<u8> {
    let mut f = frame.to_vec();
    if layout.ipv6 {
        if let Some(mut p) = ipv6::Packet::new_checked(&mut f[layout.l3..]) {
            p.decrement_hop_limit();
        }
    } else if let Some(mut p) = ipv4::Packet::new_checked(&mut f[layout.l3..]) {
        p.decrement_ttl();
    }
    f
}

/// The `packet` target.
pub fn packet(data: &[u8]) {
    let Some((&sel, frame)) = data.split_first() else {
        return;
    };
    let inbound = sel & 1 != 0;
    let vi = usize::from((sel >> 1) & 3);
    let v = &variants()[vi];
    let use_flow = sel & 8 != 0;

    let mut buf = with_tailroom(frame, TAILROOM);
    let run = run_pipeline(&mut buf, frame.len(), vi, inbound, use_flow);
    let Ok(layout) = parse(frame, Link::Ethernet) else {
        assert!(
            matches!(run.action, Action::Drop(Counter::DropBadFrame)),
            "an unparsable frame was not dropped: {:?}",
            run.action
        );
        return;
    };
    let ctxmsg = |out: &[u8]| {
        format!(
            "config {:?}, inbound {inbound}, flow {use_flow}, action {:?}\n in: {}\nout: {}",
            v.name,
            run.action,
            hex(&frame[..layout.ip_end]),
            hex(out)
        )
    };
    let len = match run.action {
        Action::Tx { at, len, .. } => {
            if at == At::Scratch {
                assert!(
                    buf[..frame.len()] == *frame,
                    "redone in the scratch buffer but the frame changed: {}",
                    ctxmsg(&run.bytes[..len.min(run.bytes.len())])
                );
            }
            len
        }
        Action::Kernel { reason, len, .. } => {
            if !matches!(reason, Counter::SlowNeighbor | Counter::SlowOtherInterface) {
                assert_eq!(len, layout.ip_end);
                assert!(
                    run.bytes[..len] == frame[..len],
                    "the kernel's copy changed: {}",
                    ctxmsg(&run.bytes[..len])
                );
            }
            return;
        }
        Action::Drop(Counter::DropWouldLeak) => {
            assert!(
                !inbound,
                "an inbound message dropped as a leak: {}",
                ctxmsg(&[])
            );
            return;
        }
        _ => return,
    };
    assert!(
        len <= run.bytes.len(),
        "length past the buffer: {}",
        ctxmsg(&[])
    );
    let out_bytes = &run.bytes[..len];
    let Some((_, _, payload, payload_len)) = layout.udp(frame) else {
        panic!("a non-UDP frame was transmitted: {}", ctxmsg(out_bytes));
    };
    assert!(
        len >= layout.l4 + 8,
        "length cuts the UDP header: {}",
        ctxmsg(out_bytes)
    );
    let udp_ok_before = udp_checksum_ok(frame, &layout);
    let udp_residual_before = udp_residual(frame, &layout);
    let udp_check_before = udp_check_field(frame, &layout);
    let ip4_ok_before = !layout.ipv6 && ipv4_header_ok(frame, &layout);
    let consistent = layout.l4 + 8 + payload_len == layout.ip_end && (layout.ipv6 || ip4_ok_before);
    let rewritten = run.batch.get(Counter::SipRewritten) > 0;
    let out = parse(out_bytes, Link::Ethernet)
        .unwrap_or_else(|e| panic!("output does not parse ({e:?}): {}", ctxmsg(out_bytes)));
    let ip_changed = out.src != layout.src || out.dst != layout.dst;
    if !rewritten && !ip_changed {
        assert!(
            out_bytes[payload..payload + payload_len] == frame[payload..payload + payload_len],
            "payload changed without a rewrite: {}",
            ctxmsg(out_bytes)
        );
        if consistent {
            assert_eq!(
                len,
                layout.ip_end,
                "length changed without a rewrite: {}",
                ctxmsg(out_bytes)
            );
            assert!(
                *out_bytes == hop(frame, &layout)[..layout.ip_end],
                "bytes changed without a rewrite (but for the hop): {}",
                ctxmsg(out_bytes)
            );
        }
    }
    assert_eq!(
        out.ip_end,
        len,
        "IP length disagrees with the returned length: {}",
        ctxmsg(out_bytes)
    );
    let Some((_, _, out_payload, out_payload_len)) = out.udp(out_bytes) else {
        panic!("output is not a whole UDP datagram: {}", ctxmsg(out_bytes));
    };
    assert_eq!(out_payload, payload, "payload moved: {}", ctxmsg(out_bytes));
    // An untouched packet is forwarded as it came, trailing bytes past the UDP
    // length included; anything the rewriter touched must come out consistent.
    if rewritten || ip_changed || consistent {
        assert_eq!(
            out.l4 + 8 + out_payload_len,
            len,
            "UDP length != IP payload: {}",
            ctxmsg(out_bytes)
        );
    }
    if !out.ipv6 {
        if ip4_ok_before {
            assert!(
                ipv4_header_ok(out_bytes, &out),
                "IPv4 header checksum broken: {}",
                ctxmsg(out_bytes)
            );
        }
        if udp_check_before == 0 {
            assert_eq!(
                udp_check_field(out_bytes, &out),
                0,
                "UDP checksum 0 became set: {}",
                ctxmsg(out_bytes)
            );
        }
    }
    if (rewritten || ip_changed) && udp_ok_before {
        assert!(
            udp_checksum_ok(out_bytes, &out),
            "UDP checksum broken: {}",
            ctxmsg(out_bytes)
        );
    }
    if layout.ipv6 || udp_check_before != 0 {
        assert_eq!(
            udp_residual(out_bytes, &out),
            udp_residual_before,
            "UDP checksum error changed: {}",
            ctxmsg(out_bytes)
        );
    }

    // Idempotence: the output, sent through again the same way, stays as it is but for
    // one more hop: a rewritten payload now gives `Unchanged` (not `Malformed`: the output
    // must still parse), any other outcome repeats; the IP header does not change again.
    if !inbound {
        let first = out_bytes.to_vec();
        let mut again = with_tailroom(&first, TAILROOM);
        let second = run_pipeline(&mut again, first.len(), vi, false, false);
        let Action::Tx { len: len2, .. } = second.action else {
            // The TTL ran out on the second hop: nothing to compare.
            if second.action == Action::Drop(Counter::DropTtl) {
                return;
            }
            panic!(
                "the output is no longer transmitted: {:?}: {}",
                second.action,
                ctxmsg(&first)
            );
        };
        let again_out = &second.bytes[..len2];
        let same = *again_out == hop(&first, &out)[..];
        let rewritten2 = second.batch.get(Counter::SipRewritten) > 0;
        let unchanged2 = second.batch.get(Counter::SipUnchanged) > 0;
        let repeated = Counter::ALL
            .iter()
            .filter(|c| c.name().starts_with("not_sip_") || c.name().starts_with("malformed_"))
            .all(|&c| (run.batch.get(c) > 0) == (second.batch.get(c) > 0));
        let outcome_ok = if rewritten {
            unchanged2 || rewritten2
        } else {
            repeated || rewritten2
        };
        assert!(
            same && outcome_ok,
            "second outbound pass changed the packet or its outcome: {:?}\n{}\nagain: {}",
            second.action,
            ctxmsg(&first),
            hex(again_out)
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
    if ctx.direction == Direction::Inbound {
        assert!(!r.would_leak, "{what}: inbound reported a leak: {r:?}");
    }
    if let Outcome::Rewritten(_) = r.outcome {
        let out = buf[..r.len].to_vec();
        if let Some((n, body)) = content_length(msg) {
            let after = content_length(&out);
            // Bytes past the declared body are discarded: the body is then exactly as long
            // as its Content-Length says.
            let excess = (n - body).max(0);
            assert!(
                after.is_some_and(|(n2, body2)| n2 - body2 == excess),
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
            local_port: None,
            napt: None,
            media: None,
        };
        if let Some(first) = message_once(msg, TAILROOM, &out, v.name) {
            // Idempotence: a second pass over the output changes nothing.
            let mut buf = with_tailroom(&first, TAILROOM);
            let r2 = rewrite_message(&mut buf, first.len(), &out);
            if trace() {
                eprintln!("{} second pass: {r2:?}", v.name);
            }
            assert!(r2.len <= buf.len());
            assert_eq!(
                r2.trailing_discarded, 0,
                "{}: the output still had bytes past its body",
                v.name
            );
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
                // A REGISTER 2xx naming this port gets the UA's own binding restored.
                local_port: Some(5060),
                napt: None,
                ..out
            };
            message_once(msg, TAILROOM, &inb, v.name);
        }
    }
}

/// The rule sets of the `differential` target: the four variants, several /8s, and a /4
/// with a /6 (first octets the fast path's gate must enumerate).
fn differential_sets() -> &'static [(RewriteConfig, ExternalAddrs, IpAddr); 6] {
    static S: OnceLock<[(RewriteConfig, ExternalAddrs, IpAddr); 6]> = OnceLock::new();
    S.get_or_init(|| {
        let v = variants();
        let rules = |nets: &[&str]| RewriteConfig {
            rules: nets.iter().map(|n| Rule::new(net(n))).collect(),
            record_route: true,
            from_to: true,
            ..RewriteConfig::default()
        };
        [
            (v[0].config.clone(), v[0].external, IpAddr::V4(v[0].flow_v4)),
            (v[1].config.clone(), v[1].external, IpAddr::V4(v[1].flow_v4)),
            (v[2].config.clone(), v[2].external, IpAddr::V4(v[2].flow_v4)),
            (v[3].config.clone(), v[3].external, IpAddr::V4(v[3].flow_v4)),
            (
                rules(&[
                    "10.0.0.0/8",
                    "172.16.0.0/12",
                    "192.168.0.0/16",
                    "11.0.0.0/8",
                ]),
                ExternalAddrs::v4(EXT_V4),
                IpAddr::V4(Ipv4Addr::new(192, 168, 1, 100)),
            ),
            (
                rules(&["160.0.0.0/4", "8.0.0.0/6"]),
                ExternalAddrs::v4(EXT_V4),
                IpAddr::V4(Ipv4Addr::new(172, 16, 0, 9)),
            ),
        ]
    })
}

/// The `differential` target: the fast path and the reference give the same bytes and
/// the same result.
pub fn differential(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let sets = differential_sets();
    let (config, external, host) = &sets[usize::from(sel & 7) % sets.len()];
    let (direction, internal) = match (sel >> 3) & 3 {
        0 | 3 => (Direction::Outbound, None),
        1 => (Direction::Inbound, None),
        _ => (Direction::Inbound, Some(*host)),
    };
    let ctx = Context {
        config,
        external: *external,
        direction,
        internal,
        local_port: Some(5060),
        napt: None,
        // (3: outbound with media bindings, whose dialog both paths read.)
        media: ((sel >> 3) & 3 == 3).then_some(&DialogPorts as &dyn sipnat::rewrite::MediaPorts),
    };
    // (0x80: the gate the daemon makes with media NAT on, whatever the context.)
    let gate = match sel & 0x80 != 0 {
        true => Gate::of(&ctx).for_media_nat(),
        false => Gate::of(&ctx),
    };
    let tailroom = if sel & 0x40 != 0 { 0 } else { TAILROOM };
    let mut fast = with_tailroom(rest, tailroom);
    let mut refr = fast.clone();
    if sel & 0x20 == 0 {
        let f =
            EDITS.with_borrow_mut(|e| rewrite_message_in(&mut fast, rest.len(), &ctx, &gate, e));
        let r = reference::rewrite_message(&mut refr, rest.len(), &ctx);
        assert_eq!(f, r, "message: fast path result differs from the reference");
        assert!(
            fast == refr,
            "message: fast path bytes differ from the reference\n{}",
            hex(rest)
        );
        return;
    }
    let Ok(layout) = parse(rest, Link::Ethernet) else {
        return;
    };
    if layout.udp(rest).is_none() {
        return;
    }
    let other = |a: IpAddr| match a {
        IpAddr::V4(_) => IpAddr::V4(EXT_V4),
        IpAddr::V6(_) => IpAddr::V6(EXT_V6),
    };
    for l3 in [
        L3Action::default(),
        L3Action {
            src: Some(other(layout.src)),
            dst: None,
        },
        L3Action {
            src: None,
            dst: Some(other(layout.dst)),
        },
    ] {
        let mut f_buf = fast.clone();
        let mut r_buf = refr.clone();
        let f = EDITS
            .with_borrow_mut(|e| rewrite_packet_gated(&mut f_buf, &layout, &ctx, l3, &gate, e));
        let r = reference::rewrite_packet(&mut r_buf, &layout, &ctx, l3);
        assert_eq!(
            f, r,
            "packet: fast path result differs from the reference ({l3:?})"
        );
        assert!(
            f_buf == r_buf,
            "packet: fast path bytes differ from the reference ({l3:?})\n{}",
            hex(rest)
        );
    }
}
