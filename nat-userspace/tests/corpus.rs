//! The rewriter against third-party SIP: every RFC 4475 / RFC 5118 torture message, the
//! sample messages of other SIP stacks, and every SIP/UDP packet of the real captures in
//! `../shared/corpus` (read-only; never edited).
//!
//! Invariants, checked with logic independent of the rewriter's own scanner:
//! - never panics; the buffer is untouched unless the outcome is `Rewritten`;
//! - a message the rewriter parsed is still parsed after rewriting (well-formed stays so),
//!   and rewriting it again changes nothing (idempotence);
//! - Content-Length moves exactly with the body (a correct one stays correct);
//! - no configured private address remains in a rewritable field;
//! - nothing outside the rewritable fields changes: lines differ only where an IP token of
//!   a rule became the external address (or Content-Length changed);
//! - whole packets: a valid UDP checksum stays valid (checked with etherparse), IP
//!   lengths are consistent.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use pcap_file::{
    pcap::PcapReader,
    pcapng::{Block, PcapNgReader},
    DataLink,
};
use sipnat::{
    nat::{decide, ExternalAddrs, Net, PortMap, RewriteConfig, Rule},
    rewrite::{packet::rewrite_packet, rewrite_message, Context, Direction, Outcome},
    wire::{self, Link},
};

const EXT4: &str = "203.0.113.10";
const EXT6: &str = "2001:db8::10";

fn corpus_dir() -> Option<PathBuf> {
    let p = std::env::var("SIPNAT_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"));
    if p.is_dir() {
        return Some(p);
    }
    let msg = format!(
        "SKIP corpus tests: {} not found (set SIPNAT_CORPUS)",
        p.display()
    );
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "{msg}; CI=true forbids skipping"
    );
    eprintln!("{msg}");
    None
}

/// Rules for every private range, so every private address in the corpus is rewritable.
fn config() -> RewriteConfig {
    let nets = [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "fc00::/7",
        "fe80::/10",
    ];
    RewriteConfig {
        rules: nets
            .iter()
            .map(|n| Rule {
                internal: Net::parse(n).unwrap(),
                external: None,
                ports: PortMap::default(),
            })
            .collect(),
        ..RewriteConfig::default()
    }
}

fn ext() -> ExternalAddrs {
    ExternalAddrs {
        v4: Some(EXT4.parse().unwrap()),
        v6: Some(EXT6.parse().unwrap()),
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------
// Independent reference logic (deliberately simple, not the rewriter's scanner).

fn lines(b: &[u8]) -> Vec<&[u8]> {
    // Lines split at LF, CR LF, CR (terminators excluded).
    let mut out = Vec::new();
    let mut s = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\n' || b[i] == b'\r' {
            out.push(&b[s..i]);
            if b[i] == b'\r' && b.get(i + 1) == Some(&b'\n') {
                i += 1;
            }
            s = i + 1;
        }
        i += 1;
    }
    out.push(&b[s..]);
    out
}

/// Splits a line into tokens: delimiters are single-byte tokens; bracketed IPv6 stays whole.
fn tokens(l: &[u8]) -> Vec<&[u8]> {
    let delim = |c: u8| b" \t;,<>@\"=:/".contains(&c);
    let mut out = Vec::new();
    let mut i = 0;
    while i < l.len() {
        if l[i] == b'[' {
            let e = l[i..]
                .iter()
                .position(|&c| c == b']')
                .map_or(l.len(), |p| i + p + 1);
            out.push(&l[i..e]);
            i = e;
        } else if delim(l[i]) {
            out.push(&l[i..i + 1]);
            i += 1;
        } else {
            let s = i;
            while i < l.len() && !delim(l[i]) && l[i] != b'[' {
                i += 1;
            }
            out.push(&l[s..i]);
        }
    }
    out
}

/// SDP lines are split at spaces and '/' only (IPv6 there is unbracketed).
fn sdp_tokens(l: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut s = 0;
    for (i, &c) in l.iter().enumerate() {
        if c == b' '
            || c == b'/'
            || (i == 1 && c == b'=')
            || (c == b':' && l.starts_with(b"a=rtcp:") && i == 6)
        {
            out.push(&l[s..i]);
            out.push(&l[i..i + 1]);
            s = i + 1;
        }
    }
    out.push(&l[s..]);
    out
}

fn as_ip(tok: &[u8]) -> Option<IpAddr> {
    let t = std::str::from_utf8(tok).ok()?;
    t.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

fn in_rules(cfg: &RewriteConfig, a: IpAddr) -> bool {
    cfg.rule_for(a).is_some()
}

fn is_external(a: IpAddr) -> bool {
    let e = ext();
    e.contains(a)
}

/// Every changed token pair must be (private address of a rule → external address), or a
/// changed Content-Length value; every changed line must keep its token structure.
fn only_rewritable_tokens_changed(name: &str, cfg: &RewriteConfig, before: &[u8], after: &[u8]) {
    let (lb, la) = (lines(before), lines(after));
    assert_eq!(lb.len(), la.len(), "{name}: line count changed");
    for (b, a) in lb.iter().zip(&la) {
        if b == a {
            continue;
        }
        let is_cl = |l: &[u8]| {
            let s = String::from_utf8_lossy(l).to_ascii_lowercase();
            s.starts_with("content-length") || s.starts_with("l:") || s.starts_with("l :")
        };
        if is_cl(b) {
            assert!(
                is_cl(a),
                "{name}: Content-Length line changed into something else"
            );
            continue;
        }
        let sdp = b.len() > 1 && b[1] == b'=';
        let (tb, ta) = if sdp {
            (sdp_tokens(b), sdp_tokens(a))
        } else {
            (tokens(b), tokens(a))
        };
        assert_eq!(
            tb.len(),
            ta.len(),
            "{name}: token structure changed:\n-{}\n+{}",
            String::from_utf8_lossy(b),
            String::from_utf8_lossy(a)
        );
        for (x, y) in tb.iter().zip(&ta) {
            if x == y {
                continue;
            }
            let (Some(xa), Some(ya)) = (as_ip(x), as_ip(y)) else {
                panic!(
                    "{name}: non-address token changed: {:?} → {:?} in line\n-{}\n+{}",
                    String::from_utf8_lossy(x),
                    String::from_utf8_lossy(y),
                    String::from_utf8_lossy(b),
                    String::from_utf8_lossy(a)
                );
            };
            assert!(
                in_rules(cfg, xa),
                "{name}: rewrote {xa}, which no rule covers"
            );
            assert!(
                is_external(ya) || ya.to_string().contains(EXT4),
                "{name}: {xa} became {ya}, not the external address"
            );
        }
    }
}

/// Addresses in rewritable fields (independent extraction): R-URI, top Via sent-by,
/// Contact values, SDP c=/o=/a=rtcp. Returns (field, address).
fn rewritable_addresses(msg: &[u8]) -> Vec<(String, IpAddr)> {
    let text = String::from_utf8_lossy(msg);
    let mut out = Vec::new();
    // Unfold headers first (continuation lines start with SP/HT).
    let (head, body) = match text.find("\r\n\r\n").or_else(|| text.find("\n\n")) {
        Some(p) => (&text[..p], &text[p..]),
        None => (&text[..], ""),
    };
    let mut unfolded: Vec<String> = Vec::new();
    for l in head.split(['\n', '\r']).filter(|l| !l.is_empty()) {
        if (l.starts_with(' ') || l.starts_with('\t')) && !unfolded.is_empty() {
            let last = unfolded.last_mut().unwrap();
            last.push(' ');
            last.push_str(l.trim());
        } else {
            unfolded.push(l.to_string());
        }
    }
    let host_after = |s: &str| -> Option<IpAddr> {
        let s = s.trim_start();
        if let Some(r) = s.strip_prefix('[') {
            return r.split(']').next()?.parse().ok();
        }
        let h: String = s
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
            .collect();
        h.parse().ok()
    };
    let uri_host = |u: &str| -> Option<IpAddr> {
        let lower = u.to_ascii_lowercase();
        let start = lower
            .find("sips:")
            .map(|p| p + 5)
            .or_else(|| lower.find("sip:").map(|p| p + 4))?;
        let rest = &u[start..];
        let end = rest.find(['>', '"']).unwrap_or(rest.len());
        let rest = &rest[..end];
        let host = match rest.find('@') {
            Some(p) => &rest[p + 1..],
            None => rest,
        };
        host_after(host)
    };
    if let Some(first) = unfolded.first() {
        let mut parts = first.split_whitespace();
        if let (Some(m), Some(u)) = (parts.next(), parts.next()) {
            if !m.starts_with("SIP/") {
                if let Some(a) = uri_host(u) {
                    out.push(("request-uri".into(), a));
                }
            }
        }
    }
    let mut via_done = false;
    let mut register_2xx = false;
    if let Some(first) = unfolded.first() {
        let code_2xx_3xx = first.starts_with("SIP/2.0 2") || first.starts_with("SIP/2.0 3");
        let register = unfolded.iter().any(|l| {
            let ll = l.to_ascii_lowercase();
            ll.starts_with("cseq") && ll.trim_end().ends_with("register")
        });
        register_2xx = code_2xx_3xx && register;
    }
    for l in unfolded.iter().skip(1) {
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        if (name == "via" || name == "v") && !via_done {
            via_done = true;
            // after the transport token: "SIP/2.0/UDP host"
            let v = value.split(',').next().unwrap_or("");
            let after = v.splitn(3, '/').nth(2).unwrap_or("");
            let after = after.trim_start();
            let sent_by = after.split_once([' ', '\t']).map_or("", |x| x.1);
            if let Some(a) = host_after(sent_by) {
                out.push(("via".into(), a));
            }
        } else if (name == "contact" || name == "m") && !register_2xx {
            for part in value.split(',') {
                if let Some(a) = uri_host(part) {
                    out.push(("contact".into(), a));
                }
            }
        }
    }
    for l in body.split(['\n', '\r']) {
        let toks: Vec<&str> = l.split(' ').collect();
        let addr = if l.starts_with("c=") && toks.len() >= 3 {
            toks[2].split('/').next()
        } else if l.starts_with("o=") && toks.len() >= 3 {
            toks.last().copied()
        } else if l.starts_with("a=rtcp:") && toks.len() == 4 {
            Some(toks[3])
        } else {
            None
        };
        if let Some(a) = addr.and_then(|a| a.parse().ok()) {
            out.push((l.chars().take(2).collect(), a));
        }
    }
    out
}

/// Content-Length value and the number of bytes after the header section.
fn cl_and_rest(msg: &[u8]) -> Option<(usize, usize)> {
    let t = msg;
    let p = t
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .or_else(|| t.windows(2).position(|w| w == b"\n\n").map(|p| p + 2))?;
    let head = String::from_utf8_lossy(&t[..p]);
    let cl = head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        let n = n.trim().to_ascii_lowercase();
        (n == "content-length" || n == "l")
            .then(|| v.trim().parse::<usize>().ok())
            .flatten()
    })?;
    Some((cl, t.len() - p))
}

// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct Tally {
    messages: usize,
    rewritten: usize,
    unchanged: usize,
    not_sip: usize,
    malformed: usize,
}

fn check_message(name: &str, input: &[u8], tally: &mut Tally) {
    let cfg = config();
    let mut buf = input.to_vec();
    buf.resize(input.len() + 4096, 0x5a);
    let ctx = Context {
        config: &cfg,
        external: ext(),
        direction: Direction::Outbound,
        internal: None,
    };
    let r = rewrite_message(&mut buf, input.len(), &ctx);
    tally.messages += 1;
    let out = buf[..r.len].to_vec();
    match r.outcome {
        Outcome::Rewritten(_) => tally.rewritten += 1,
        Outcome::Unchanged => tally.unchanged += 1,
        Outcome::NotSip(_) => tally.not_sip += 1,
        Outcome::Malformed(_) => tally.malformed += 1,
        Outcome::TooBig => panic!("{name}: 4 KiB of tailroom was not enough"),
    }
    if !matches!(r.outcome, Outcome::Rewritten(_)) {
        assert_eq!(out, input, "{name}: {:?} but the bytes changed", r.outcome);
        return;
    }
    // Well-formed stays well-formed, and a second pass changes nothing.
    let mut again = out.clone();
    again.resize(out.len() + 4096, 0);
    let r2 = rewrite_message(&mut again, out.len(), &ctx);
    assert_eq!(r2.outcome, Outcome::Unchanged, "{name}: second pass");
    // Content-Length moves with the body.
    if let (Some((cl0, rest0)), Some((cl1, rest1))) = (cl_and_rest(input), cl_and_rest(&out)) {
        assert_eq!(
            rest0 as isize - cl0 as isize,
            rest1 as isize - cl1 as isize,
            "{name}: Content-Length no longer matches the body"
        );
    }
    // No private address of a rule remains in a rewritable field (unless it has no
    // external address of its family, which the rewriter reports).
    if r.family_mismatch == 0 {
        for (field, a) in rewritable_addresses(&out) {
            assert!(
                !in_rules(&cfg, a),
                "{name}: {field} still carries {a}:\n{}",
                String::from_utf8_lossy(&out)
            );
        }
    }
    only_rewritable_tokens_changed(name, &cfg, input, &out);
}

#[test]
fn rfc4475_rfc5118_and_stack_messages() {
    let Some(root) = corpus_dir() else { return };
    let mut t = Tally::default();
    let mut dirs = vec![root.join("rfc4475"), root.join("rfc5118")];
    dirs.extend(files(&root.join("messages")));
    for d in dirs {
        for f in files(&d) {
            let bytes = std::fs::read(&f).unwrap();
            check_message(&f.display().to_string(), &bytes, &mut t);
        }
    }
    eprintln!(
        "messages: {} ({} rewritten, {} unchanged, {} not SIP, {} malformed)",
        t.messages, t.rewritten, t.unchanged, t.not_sip, t.malformed
    );
    assert!(
        t.messages >= 79,
        "expected the whole corpus, got {}",
        t.messages
    );
    assert!(
        t.rewritten >= 10,
        "the corpus has private addresses in at least 10 messages"
    );
}

/// Every SIP/UDP packet of every capture, as whole packets (SNAT + payload + checksums).
#[test]
fn every_sip_packet_of_the_captures() {
    let Some(root) = corpus_dir() else { return };
    let cfg = config();
    let mut t = Tally::default();
    let (mut packets, mut fragments, mut checked_csum) = (0, 0, 0);
    for f in files(&root.join("pcap")) {
        for (link, data) in read_capture(&f) {
            packets += 1;
            let Ok(layout) = wire::parse(&data, link) else {
                continue;
            };
            if layout.fragment.is_some() {
                fragments += 1;
                continue;
            }
            let Some((_, _, payload, plen)) = layout.udp(&data) else {
                continue;
            };
            let name = format!("{} packet {packets}", f.display());
            // The SIP payload itself, as a message.
            check_message(&name, &data[payload..payload + plen], &mut t);
            // The whole packet, outbound when it comes from a rule's network.
            if cfg.rule_for(layout.src).is_none() {
                continue;
            }
            let decide::Decision::Rewrite {
                direction,
                l3,
                internal,
            } = decide::outbound(&cfg, &ext(), layout.src, layout.dst)
            else {
                continue;
            };
            let valid_before = etherparse_udp_ok(&data[..layout.ip_end], layout.l3);
            let mut buf = data[..layout.ip_end].to_vec();
            buf.resize(layout.ip_end + 4096, 0);
            let ctx = Context {
                config: &cfg,
                external: ext(),
                direction,
                internal,
            };
            let r = rewrite_packet(&mut buf, &layout, &ctx, l3).expect("whole UDP datagram");
            buf.truncate(r.len);
            let after = wire::parse(&buf, link).expect("output parses");
            assert!(after.udp(&buf).is_some(), "{name}: output UDP consistent");
            if valid_before {
                checked_csum += 1;
                assert!(
                    etherparse_udp_ok(&buf, after.l3),
                    "{name}: UDP checksum broken by the rewrite"
                );
            }
        }
    }
    eprintln!(
        "captures: {packets} packets, {fragments} fragments skipped, {} SIP/UDP payloads ({} rewritten, {} unchanged, {} not SIP, {} malformed), {checked_csum} checksums verified",
        t.messages, t.rewritten, t.unchanged, t.not_sip, t.malformed
    );
    assert!(t.rewritten >= 50);
    assert!(checked_csum >= 50);
}

/// UDP checksum check with etherparse (independent of sipnat's checksum code).
fn etherparse_udp_ok(ip_and_link: &[u8], l3: usize) -> bool {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let Ok(p) = SlicedPacket::from_ip(&ip_and_link[l3..]) else {
        return false;
    };
    let Some(TransportSlice::Udp(u)) = p.transport else {
        return false;
    };
    let hdr = u.to_header();
    if hdr.checksum == 0 {
        return false;
    }
    let calc = match p.net {
        Some(NetSlice::Ipv4(ip)) => hdr.calc_checksum_ipv4(&ip.header().to_header(), u.payload()),
        Some(NetSlice::Ipv6(ip)) => hdr.calc_checksum_ipv6(&ip.header().to_header(), u.payload()),
        _ => return false,
    };
    calc.is_ok_and(|c| c == hdr.checksum)
}

fn read_capture(path: &Path) -> Vec<(Link, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let link_of = |dl: DataLink| match dl {
        DataLink::ETHERNET => Link::Ethernet,
        DataLink::LINUX_SLL => Link::LinuxSll,
        DataLink::LINUX_SLL2 => Link::LinuxSll2,
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Link::RawIp,
        other => panic!("{}: link type {other:?}", path.display()),
    };
    let mut out = Vec::new();
    if bytes.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        let mut r = PcapNgReader::new(&bytes[..]).unwrap();
        let mut links = Vec::new();
        while let Some(b) = r.next_block() {
            match b.unwrap() {
                Block::InterfaceDescription(i) => links.push(link_of(i.linktype)),
                Block::EnhancedPacket(p) => {
                    out.push((links[p.interface_id as usize], p.data.to_vec()))
                }
                _ => {}
            }
        }
    } else {
        let mut r = PcapReader::new(&bytes[..]).unwrap();
        let link = link_of(r.header().datalink);
        while let Some(p) = r.next_packet() {
            out.push((link, p.unwrap().data.to_vec()));
        }
    }
    out
}
