//! The rewriter against third-party SIP: every RFC 4475 / RFC 5118 torture message, the
//! sample messages of other SIP stacks, and every SIP/UDP packet of the real captures in
//! `testdata/corpus` (read-only; never edited; `$SIPNAT_CORPUS` overrides the folder). A
//! missing corpus fails the tests; each prints how many messages and packets it checked.
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

use sipnat::{
    nat::{decide, rules::LocalV4, Net, RewriteConfig},
    rewrite::{packet::rewrite_packet, rewrite_message, Context, Outcome},
    wire,
};

mod common;

use common::{
    rewrite::outbound,
    sipcheck::{cl_and_rest, ext, in_rules, only_rewritable_tokens_changed, rewritable_addresses},
    testdata::{corpus_dir, entries as files, read, read_capture},
};

/// Rules for every private range, so every private address in the corpus is rewritable.
fn config() -> RewriteConfig {
    let nets = sipnat::nat::rules::DEFAULT_LOCAL_NETS;
    RewriteConfig::networks(nets.iter().map(|n| Net::parse(n).unwrap()))
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
    let ctx = outbound(&cfg);
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
    // Content-Length moves with the body; bytes past the declared body (RFC 4475
    // dblreq.dat: a second request in the datagram) are discarded.
    if let (Some((cl0, rest0)), Some((cl1, rest1))) = (cl_and_rest(input), cl_and_rest(&out)) {
        let excess = rest0 as isize - cl0 as isize;
        assert_eq!(
            r.trailing_discarded,
            excess.max(0) as usize,
            "{name}: bytes past the body"
        );
        assert_eq!(
            excess.min(0),
            rest1 as isize - cl1 as isize,
            "{name}: Content-Length no longer matches the body"
        );
    }
    let input = &input[..input.len() - r.trailing_discarded];
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
    let root = corpus_dir();
    let mut t = Tally::default();
    let mut dirs = vec![root.join("rfc4475"), root.join("rfc5118")];
    dirs.extend(files(&root.join("messages")));
    let mut present = 0;
    for d in &dirs {
        for f in files(d) {
            present += 1;
            check_message(&f.display().to_string(), &read(&f), &mut t);
        }
    }
    common::report(&format!(
        "corpus {}: checked {} messages from {present} files in {} folders ({} rewritten, {} unchanged, {} not SIP, {} malformed)",
        root.display(),
        t.messages,
        dirs.len(),
        t.rewritten,
        t.unchanged,
        t.not_sip,
        t.malformed
    ));
    assert_eq!(t.messages, present, "one message per file");
    // 49 (RFC 4475) + 12 (RFC 5118) + 18 (other stacks), as listed in the corpus README.
    assert!(
        t.messages >= 79,
        "expected the whole corpus (79 messages), got {}",
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
    let root = corpus_dir();
    let cfg = config();
    let mut t = Tally::default();
    let (mut packets, mut fragments, mut checked_csum) = (0, 0, 0);
    let captures = files(&root.join("pcap"));
    for f in &captures {
        let frames = read_capture(f);
        assert!(!frames.is_empty(), "{}: no packets", f.display());
        for (link, data) in frames {
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
            } = decide::outbound(&cfg, &LocalV4::of(&cfg), &ext(), layout.src, layout.dst)
            else {
                continue;
            };
            let valid_before = etherparse_udp_ok(&data[..layout.ip_end], layout.l3);
            let mut buf = data[..layout.ip_end].to_vec();
            buf.resize(layout.ip_end + 4096, 0);
            let ctx = Context {
                direction,
                internal,
                ..outbound(&cfg)
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
    common::report(&format!(
        "corpus {}: checked {packets} packets from {} captures, {fragments} fragments skipped, {} UDP payloads checked as messages ({} rewritten, {} unchanged, {} not SIP, {} malformed), {checked_csum} checksums verified",
        root.display(),
        captures.len(),
        t.messages,
        t.rewritten,
        t.unchanged,
        t.not_sip,
        t.malformed
    ));
    // 7 captures, 2 321 frames, as listed in the corpus README; 224 whole SIP messages over
    // UDP (the README's tshark counts, less the IPv6 fragments, which are not parsed here).
    assert!(
        captures.len() >= 7,
        "expected 7 captures, got {}",
        captures.len()
    );
    assert!(
        packets >= 2321,
        "expected every frame of the captures, got {packets}"
    );
    let sip = t.rewritten + t.unchanged + t.malformed;
    assert!(
        sip >= 224,
        "expected 224 SIP messages in the captures, got {sip}"
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
