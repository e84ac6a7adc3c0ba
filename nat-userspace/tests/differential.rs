//! The fast path (`rewrite::rewrite_message`, `rewrite::packet::rewrite_packet*`) against
//! the reference rewriter (`rewrite::reference`): the same output bytes (tailroom
//! included) and the same result for
//! - every message of the corpus (RFC 4475, RFC 5118, other stacks) and the bench inputs;
//! - every packet of the captures (as a whole packet and its payload as a message);
//! - every entry of the fuzz corpus (`fuzz/corpus/{message,packet,differential}`);
//! - generated messages (proptest) whose addresses sit at the edges of the rule sets;
//! - random mutations of all of those (1,000,000 in a release build, as `cargo xtask
//!   test` runs the tests; 50,000 in a debug build; `SIPNAT_DIFF_MUTATIONS` overrides);
//!
//! under rule sets that exercise the fast path's gating (`common::differential`): one
//! /24, several /8s, IPv4 + IPv6 rules, a /4, port maps, 1:1 rules with their own
//! external addresses, an IPv6 external address for an IPv4 rule, no rules; outbound and
//! inbound (with and without a known internal host); with tailroom and without (`TooBig`).
//! The fuzz target `differential` does the same with libFuzzer's inputs.

mod common;

use std::path::PathBuf;

use common::{
    differential::{contexts, rule_sets, Checker, RuleSet},
    testdata::{bench_inputs_dir, corpus_dir, entries, read, read_capture, workspace_root},
};
use proptest::prelude::*;
use sipnat::wire::Link;

/// Every corpus message and bench input: (name, bytes).
fn corpus_messages() -> Vec<(String, Vec<u8>)> {
    let root = corpus_dir();
    let mut dirs = vec![root.join("rfc4475"), root.join("rfc5118")];
    dirs.extend(entries(&root.join("messages")));
    let mut out = Vec::new();
    for d in dirs {
        for f in entries(&d) {
            out.push((f.display().to_string(), read(&f)));
        }
    }
    for f in entries(&bench_inputs_dir()) {
        if f.extension().is_some_and(|e| e == "sip") {
            out.push((f.display().to_string(), read(&f)));
        }
    }
    out
}

/// Every frame of every capture: (name, link, frame).
fn capture_frames() -> Vec<(String, Link, Vec<u8>)> {
    let mut out = Vec::new();
    for f in entries(&corpus_dir().join("pcap")) {
        for (i, (link, data)) in read_capture(&f).into_iter().enumerate() {
            out.push((format!("{} frame {}", f.display(), i + 1), link, data));
        }
    }
    out
}

fn fuzz_corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir: PathBuf = workspace_root().join("fuzz/corpus").join(target);
    entries(&dir)
        .into_iter()
        .map(|f| (f.display().to_string(), read(&f)))
        .collect()
}

/// The UDP payload of a frame, when it is a whole UDP datagram.
fn payload(frame: &[u8], link: Link) -> Option<&[u8]> {
    let layout = sipnat::wire::parse(frame, link).ok()?;
    let (_, _, p, n) = layout.udp(frame)?;
    frame.get(p..p + n)
}

#[test]
fn corpus_messages_fast_equals_reference() {
    let sets = rule_sets();
    let mut c = Checker::default();
    let msgs = corpus_messages();
    for (name, m) in &msgs {
        c.message_everywhere(name, m, &sets);
    }
    common::report(&format!(
        "differential: {} corpus messages, {} checks ({} rewritten), fast == reference",
        msgs.len(),
        c.messages,
        c.rewritten
    ));
    assert!(
        msgs.len() >= 79 + 6,
        "the whole corpus and the bench inputs"
    );
    assert!(
        c.rewritten > 250,
        "the rule sets rewrite much of the corpus"
    );
}

#[test]
fn capture_packets_fast_equals_reference() {
    let sets = rule_sets();
    let mut c = Checker::default();
    let frames = capture_frames();
    let mut udp = 0;
    for (name, link, f) in &frames {
        for s in &sets {
            for ctx in contexts(s) {
                if c.packet(name, f, *link, &ctx) {
                    udp += 1;
                }
            }
        }
        if let Some(p) = payload(f, *link) {
            c.message_everywhere(name, p, &sets);
        }
    }
    common::report(&format!(
        "differential: {} capture frames, {udp} UDP datagram checks ({} packet rewrites), {} payload checks ({} rewritten), fast == reference",
        frames.len(),
        c.packets,
        c.messages,
        c.rewritten
    ));
    assert!(frames.len() >= 2321);
    assert!(c.rewritten > 500);
}

#[test]
fn fuzz_corpus_fast_equals_reference() {
    let sets = rule_sets();
    let mut c = Checker::default();
    let messages = fuzz_corpus("message");
    for (name, m) in &messages {
        c.message_everywhere(name, m, &sets);
    }
    let packets = fuzz_corpus("packet");
    for (name, p) in &packets {
        // The packet target's first byte selects its variant; the rest is the frame.
        let frame = p.get(1..).unwrap_or_default();
        for s in &sets {
            for ctx in contexts(s) {
                c.packet(name, frame, Link::Ethernet, &ctx);
            }
        }
        if let Some(pl) = payload(frame, Link::Ethernet) {
            c.message_everywhere(name, pl, &sets);
        }
    }
    let diff = fuzz_corpus("differential");
    for (name, d) in &diff {
        // Selector byte (bit 5: a frame), then the message or the frame.
        let Some((&sel, rest)) = d.split_first() else {
            continue;
        };
        if sel & 0x20 == 0 {
            c.message_everywhere(name, rest, &sets);
        } else {
            for s in &sets {
                for ctx in contexts(s) {
                    c.packet(name, rest, Link::Ethernet, &ctx);
                }
            }
        }
    }
    common::report(&format!(
        "differential: {} + {} + {} fuzz corpus entries, {} message and {} packet checks, fast == reference",
        messages.len(),
        packets.len(),
        diff.len(),
        c.messages,
        c.packets
    ));
    assert!(messages.len() + packets.len() + diff.len() >= 200);
}

/// A small deterministic generator (splitmix64): the mutations are the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Text that moves a message across the fast path's decisions: first octets of the rule
/// sets and near misses, IPv6 and mapped forms, line ends, framing headers, SDP lines.
const SNIPPETS: &[&[u8]] = &[
    b"10.",
    b"10.88.0.2",
    b"010.0.0.1",
    b"110.0.0.1",
    b"192.168.1.100",
    b"172.16.0.9",
    b"100.64.0.1",
    b"11.",
    b"8.8.8.8",
    b"203.0.113.10",
    b"198.51.100.7",
    b"198.51.100.20",
    b"[",
    b"]",
    b"[fd00::1]",
    b"fd00::2",
    b"::ffff:10.0.0.1",
    b"::FFFF:a00:1",
    b"[::ffff:c0a8:164]",
    b"ffff",
    b"IP6",
    b"ip6",
    b"IN IP4 ",
    b"IN IP6 ",
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\n ",
    b"\r\n\r\n",
    b":",
    b";",
    b",",
    b"<",
    b">",
    b"\"",
    b"@",
    b"sip:",
    b"sips:",
    b";maddr=10.0.0.1",
    b";received=192.168.1.100",
    b";maddr=fd00::9",
    b"Content-Length: 0\r\n",
    b"l: 12\r\n",
    b"Content-Type: application/sdp\r\n",
    b"Content-Encoding: gzip\r\n",
    b"c: multipart/mixed;boundary=xx\r\n",
    b"CSeq: 1 REGISTER\r\n",
    b"Via: SIP/2.0/UDP 10.0.0.1:5060\r\n",
    b"Via: SIP/2.0/UDP 203.0.113.10:20001;rport=20001;received=203.0.113.10\r\n",
    b";rport=20001",
    b"Contact: <sip:a@203.0.113.10:20001>;expires=60\r\n",
    b"v: SIP/2.0/TLS [fd00::3]\r\n",
    b"Contact: <sip:a@10.0.0.5:5060>\r\n",
    b"m: sip:b@192.168.1.10\r\n",
    b"Record-Route: <sip:10.0.0.2;lr>\r\n",
    b"To: <sip:x@172.16.0.1>\r\n",
    b"c=IN IP4 10.0.0.2\r\n",
    b"c=IN IP6 fd00::5\r\n",
    b"m=audio 0 RTP/AVP 0\r\n",
    b"m=audio 20000 RTP/AVP 0\r\n",
    b"a=rtcp:20001\r\n",
    b"a=rtcp:20001 IN IP4 10.0.0.2\r\n",
    b"o=- 1 1 IN IP4 192.168.1.100\r\n",
    b"SIP/2.0 200 OK\r\n",
    b"--xx\r\n",
    b"5060",
    b"0",
    // The fast path's plain forms and what breaks them.
    b"\"Al\\\"ice\" <sip:a@10.0.0.7>",
    b"\"B\" <sips:10.0.0.8:5061;maddr=10.0.0.9?x=1>",
    b", <sip:c@10.0.0.10>",
    b"<sip:d@",
    b"?",
    b"\\",
    b"SIP/2.0/UDP ",
    b"SIP/2.0/TLS 10.0.0.11;maddr=10.0.0.12",
    b"c=IN IP4  10.0.0.13\r\n",
    b"c=IN IP4 10.0.0.14/127\r\n",
    b"o=x 1 1  IN IP4 10.0.0.15\r\n",
    b" IN IP4 10.0.0.16 ",
    b"/",
    b"m=",
];

/// One random mutation of `base` into `out`: 1 to 4 edits (replace, insert, delete,
/// duplicate a span, insert a snippet, truncate).
fn mutate(rng: &mut Rng, base: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(base);
    for _ in 0..1 + rng.below(4) {
        let len = out.len();
        let at = rng.below(len + 1);
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] = rng.next() as u8;
            }
            1 => {
                let b = rng.next() as u8;
                out.insert(at, b);
            }
            2 if len > 0 => {
                let s = at.min(len - 1);
                let n = 1 + rng.below(16);
                out.drain(s..(s + n).min(len));
            }
            3 if len > 0 => {
                let s = rng.below(len);
                let n = 1 + rng.below(40.min(len - s));
                let span: Vec<u8> = out[s..s + n].to_vec();
                out.splice(at..at, span);
            }
            4 if len > 0 => out.truncate(at),
            _ => {
                let sn = SNIPPETS[rng.below(SNIPPETS.len())];
                if rng.below(2) == 0 && at < len {
                    // Replace as many bytes as the snippet has.
                    let e = (at + sn.len()).min(len);
                    out.splice(at..e, sn.iter().copied());
                } else {
                    out.splice(at..at, sn.iter().copied());
                }
            }
        }
    }
}

fn mutation_count() -> usize {
    match std::env::var("SIPNAT_DIFF_MUTATIONS") {
        Ok(v) => v.trim().parse().expect("SIPNAT_DIFF_MUTATIONS is a number"),
        Err(_) if cfg!(debug_assertions) => 50_000,
        Err(_) => 1_000_000,
    }
}

#[test]
fn mutations_fast_equals_reference() {
    let sets = rule_sets();
    let mut bases: Vec<(String, Vec<u8>)> = corpus_messages();
    bases.extend(fuzz_corpus("message"));
    let frames: Vec<(String, Link, Vec<u8>)> = capture_frames()
        .into_iter()
        .filter(|(_, l, f)| payload(f, *l).is_some())
        .collect();
    for (name, l, f) in &frames {
        if let Some(p) = payload(f, *l) {
            bases.push((name.clone(), p.to_vec()));
        }
    }
    let ctxs: Vec<(&RuleSet, sipnat::rewrite::Context<'_>)> = sets
        .iter()
        .flat_map(|s| contexts(s).into_iter().map(move |c| (s, c)))
        .collect();
    let per_set = contexts(&sets[0]).len();
    let n = mutation_count();
    let mut rng = Rng(0x005e_ed0f_d1ff);
    let mut c = Checker::default();
    let mut m = Vec::new();
    let mut packets = 0usize;
    for i in 0..n {
        // Half of them outbound under the rule set that claims most of the corpus's
        // addresses (several /8s: the second set's first context), so that many
        // mutations are rewritten.
        let (s, ctx) = if rng.below(2) == 0 {
            &ctxs[per_set]
        } else {
            &ctxs[rng.below(ctxs.len())]
        };
        if i % 10 == 9 {
            // A packet: a capture frame with its UDP payload mutated (lengths follow).
            let (name, link, f) = &frames[rng.below(frames.len())];
            let layout = sipnat::wire::parse(f, *link).expect("filtered");
            let (_, _, p, plen) = layout.udp(f).expect("filtered");
            mutate(&mut rng, &f[p..p + plen], &mut m);
            let Some(frame) = reframe(f, &layout, &m) else {
                continue;
            };
            if c.packet(
                &format!("{name} mutation {i} [{}]", s.name),
                &frame,
                *link,
                ctx,
            ) {
                packets += 1;
            }
            continue;
        }
        let (name, base) = &bases[rng.below(bases.len())];
        mutate(&mut rng, base, &mut m);
        let tailroom = if rng.below(8) == 0 { 0 } else { 1024 };
        c.message(
            &format!("{name} mutation {i} [{}]", s.name),
            &m,
            ctx,
            tailroom,
        );
    }
    common::report(&format!(
        "differential: {n} random mutations ({} messages, {packets} packets; {} rewritten), fast == reference",
        c.messages, c.rewritten
    ));
    assert!(c.rewritten as usize > n / 50, "mutations still rewrite");
}

/// `frame` with its UDP payload replaced by `payload` (IP and UDP lengths set; checksums
/// left as they are: the rewrite keeps a wrong one as wrong, on both paths).
fn reframe(frame: &[u8], layout: &sipnat::wire::Layout, payload: &[u8]) -> Option<Vec<u8>> {
    let udp_len = 8 + payload.len();
    let mut out = frame[..layout.l4 + 8].to_vec();
    out.extend_from_slice(payload);
    let ip_len = if layout.ipv6 {
        udp_len + (layout.l4 - layout.l3 - 40)
    } else {
        udp_len + (layout.l4 - layout.l3)
    };
    if ip_len > usize::from(u16::MAX) {
        return None;
    }
    let ip = &mut out[layout.l3..];
    if layout.ipv6 {
        ip[4..6].copy_from_slice(&(ip_len as u16).to_be_bytes());
    } else {
        ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    }
    out[layout.l4 + 4..layout.l4 + 6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    Some(out)
}

/// An address at the edges of the rule sets' gates.
fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        octet("10.88.0.{x}"),
        octet("10.{x}.1.2"),
        octet("{x}.0.0.1"),
        octet("192.168.{x}.100"),
        (160u8..176).prop_map(|x| format!("{x}.16.0.1")),
        octet("0{x}.0.0.1"),
        Just("203.0.113.10".to_string()),
        Just("198.51.100.7".to_string()),
        Just("198.51.100.20".to_string()),
        (1u16..0xffff).prop_map(|x| format!("[fd00::{x:x}]")),
        octet("[::ffff:10.0.0.{x}]"),
        (0u16..0xffff).prop_map(|x| format!("[::FFFF:a00:{x:x}]")),
        Just("[2001:db8::10]".to_string()),
        Just("[::ffff:203.0.113.10]".to_string()),
        Just("127.0.0.1".to_string()),
        Just("host.example.com".to_string()),
    ]
}

/// Each octet `x` (0 to 254) written into `template` at `{x}`.
fn octet(template: &'static str) -> impl Strategy<Value = String> {
    (0u8..255).prop_map(move |x| template.replace("{x}", &x.to_string()))
}

fn port() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(":5060".to_string()),
        Just(":15060".to_string()),
        (1u16..65535).prop_map(|p| format!(":{p}")),
    ]
}

fn sdp_line() -> impl Strategy<Value = String> {
    let a = host().prop_map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string());
    (
        0u8..8,
        a,
        prop_oneof![Just(0u16), Just(20000u16), Just(30000), 1u16..65535],
    )
        .prop_map(|(k, a, p)| {
            let t = if a.contains(':') { "IP6" } else { "IP4" };
            let p = p.to_string();
            fill(SDP_LINES[usize::from(k)], &[("t", t), ("a", &a), ("p", &p)])
        })
}

/// The lines [`sdp_line`] picks from: `{t}` the address type, `{a}` the address, `{p}` a
/// port.
const SDP_LINES: [&str; 8] = [
    "c=IN {t} {a}",
    "o=- 1 1 IN {t} {a}",
    "m=audio {p} RTP/AVP 0",
    "a=rtcp:{p} IN {t} {a}",
    "a=rtcp:{p}",
    "a=candidate:1 1 UDP 1 {a} {p} typ host",
    "a=rtpmap:0 PCMU/8000",
    "c=IN {t} {a}/127",
];

/// The headers [`message`] picks from: `{h}` a host, `{p}` a port or none, `{sp}` a space
/// or a fold.
const HEADERS: [&str; 14] = [
    "Via: SIP/2.0/UDP{sp}{h}{p};branch=z9hG4bK1;rport",
    "v: SIP/2.0/TCP {h}{p};received={h};maddr={h}",
    "Contact: <sip:u@{h}{p}>;expires=60, sip:v@{h}",
    "m: \"A, B\"{sp}<sips:u@{h}{p};maddr={h}>",
    "From: <sip:a@{h}>;tag=1",
    "t: sip:b@{h}{p}",
    "Record-Route: <sip:{h}{p};lr>, <sip:{h};lr>",
    "Route: <sip:{h};lr>",
    "Call-ID: 1@{h}",
    "X-Addr: {h}{p}",
    "CSeq: 1 REGISTER",
    "CSeq: 2 INVITE",
    "Content-Encoding: identity",
    "Max-Forwards: 70",
];

/// `template` with each `{name}` replaced by its value.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    values
        .iter()
        .fold(template.to_string(), |t, (name, value)| {
            t.replace(&format!("{{{name}}}"), value)
        })
}

/// A SIP message: a start line, headers of every kind the rewriter handles (and others),
/// folded or not, CRLF or LF, an SDP body or none.
fn message() -> impl Strategy<Value = String> {
    let header = (0u8..14, host(), port(), any::<bool>()).prop_map(|(k, h, p, fold)| {
        let sp = if fold { "\r\n " } else { " " };
        fill(HEADERS[usize::from(k)], &[("sp", sp), ("h", &h), ("p", &p)])
    });
    (
        prop_oneof![
            host().prop_map(|h| format!("INVITE sip:b@{h} SIP/2.0")),
            host().prop_map(|h| format!("REGISTER sip:{h} SIP/2.0")),
            Just("SIP/2.0 200 OK".to_string()),
            Just("SIP/2.0 302 Moved".to_string()),
        ],
        prop::collection::vec(header, 0..10),
        prop::option::of(prop::collection::vec(sdp_line(), 0..12)),
        any::<bool>(),
        prop_oneof![Just(0i32), Just(0), Just(-3), Just(5)],
    )
        .prop_map(|(start, headers, sdp, crlf, cl_off)| {
            let nl = if crlf { "\r\n" } else { "\n" };
            let mut m = start + nl;
            for h in headers {
                m.push_str(&h.replace("\r\n", nl));
                m.push_str(nl);
            }
            let body = sdp.map_or(String::new(), |lines| {
                m.push_str(&format!("Content-Type: application/sdp{nl}"));
                let mut b = format!("v=0{nl}");
                for l in lines {
                    b.push_str(&l);
                    b.push_str(nl);
                }
                b
            });
            let cl = (body.len() as i32 + cl_off).max(0);
            m.push_str(&format!("Content-Length: {cl}{nl}{nl}{body}"));
            m
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(debug_assertions) { 256 } else { 4096 }))]

    #[test]
    fn generated_messages_fast_equals_reference(m in message()) {
        let sets = rule_sets();
        let mut c = Checker::default();
        c.message_everywhere("generated", m.as_bytes(), &sets);
    }
}
