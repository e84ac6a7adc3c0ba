//! NAT of ICMP errors about sipnat's flows (RFC 5508 §4, RFC 5382 for the same job in
//! TCP): an error quotes the datagram it is about, so both the outer header and the quoted
//! one carry the addresses sipnat translated, and both must be translated back the way the
//! flow is, or the error either leaks the internal address (outbound) or never reaches the
//! host that sent the datagram (inbound).
//!
//! - Inbound (outside → external address): the quote is one of our outbound datagrams
//!   (source = external address). Its flow (or 1:1 rule) names the internal host: the
//!   outer destination and the quoted source become that host.
//! - Outbound (internal host → outside): the quote is an inbound datagram we restored
//!   (destination = the internal host). The outer source and the quoted destination become
//!   the host's external address, and the quote is cut to its IP and UDP headers: the
//!   restored SIP text holds internal addresses.
//!
//! Lengths and every checksum involved (outer IPv4 header, ICMP or ICMPv6 with its pseudo
//! header, quoted IPv4 header, quoted UDP checksum, incrementally) are fixed. Pure: the
//! pipeline calls it; no allocation.

use core::net::IpAddr;

use crate::nat::flow::{FlowKey, FlowTable};
use crate::{
    nat::{ExternalAddrs, L3Mode, RewriteConfig},
    wire::{checksum, ipv4, ipv6, udp, Layout},
};

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_ICMPV6: u8 = 58;

/// What to do with an ICMP error that is not translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Untranslated {
    /// Not an error about a UDP datagram, or not about sipnat's traffic: the kernel
    /// handles it as it would without sipnat.
    Kernel,
    /// About sipnat's traffic but it cannot be translated (no external address for the
    /// host, no flow): forwarding it as is would leak or misdirect it: drop.
    Drop,
}

/// The quoted datagram's addresses and ports.
struct Quote {
    /// Start of the quoted IP header in the buffer.
    at: usize,
    /// Quoted IP header length.
    hl: usize,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
}

/// Is this an ICMP (IPv4) or ICMPv6 error message type?
fn is_error(ipv6: bool, t: u8) -> bool {
    if ipv6 {
        (1..=4).contains(&t)
    } else {
        matches!(t, 3 | 11 | 12)
    }
}

fn quote(buf: &[u8], layout: &Layout) -> Option<Quote> {
    let ip_end = layout.ip_end;
    let icmp = buf.get(layout.l4..ip_end)?;
    if icmp.len() < 8 || !is_error(layout.ipv6, icmp[0]) {
        return None;
    }
    let at = layout.l4 + 8;
    let q = buf.get(at..ip_end)?;
    let (hl, src, dst, proto) = if layout.ipv6 {
        if q.len() < ipv6::HEADER_LEN || q[0] >> 4 != 6 {
            return None;
        }
        let p = ipv6::Packet::new_unchecked(q);
        (
            ipv6::HEADER_LEN,
            IpAddr::V6(p.src()),
            IpAddr::V6(p.dst()),
            q[6],
        )
    } else {
        if q.len() < ipv4::MIN_HEADER_LEN || q[0] >> 4 != 4 {
            return None;
        }
        let hl = usize::from(q[0] & 0x0f) * 4;
        let p = ipv4::Packet::new_unchecked(q);
        (hl, IpAddr::V4(p.src()), IpAddr::V4(p.dst()), q[9])
    };
    let u = q.get(hl..hl + 8)?;
    if proto != udp::PROTOCOL || hl < 20 {
        return None;
    }
    Some(Quote {
        at,
        hl,
        src,
        dst,
        sport: u16::from_be_bytes([u[0], u[1]]),
        dport: u16::from_be_bytes([u[2], u[3]]),
    })
}

/// Translates the ICMP error in `buf` (the IP packet at `layout.l3..layout.ip_end`)
/// arriving on the outside (`inbound`) or the inside. Returns the new packet end.
#[allow(clippy::too_many_arguments)]
pub fn translate(
    buf: &mut [u8],
    layout: &Layout,
    inbound: bool,
    cfg: &RewriteConfig,
    ext: &ExternalAddrs,
    flows: &FlowTable,
    napt: Option<&crate::nat::napt::NaptTable>,
    now_s: u32,
) -> Result<usize, Untranslated> {
    let q = quote(buf, layout).ok_or(Untranslated::Kernel)?;
    if cfg.l3 == L3Mode::Keep {
        // Addresses are not translated in the IP headers: nothing to undo.
        return Err(Untranslated::Kernel);
    }
    if inbound {
        // About one of our outbound datagrams: quoted source = an external address.
        if !cfg.is_external(layout.dst, ext) || !cfg.is_external(q.src, ext) {
            return Err(Untranslated::Kernel);
        }
        let key = FlowKey::new(q.src, q.sport, q.dst, q.dport);
        let (internal, port) = flows
            .lookup_port(&key, now_s)
            .or_else(|| {
                cfg.inbound_static_target(q.src, ext)
                    .map(|(_, t)| (t, q.sport))
            })
            .filter(|(t, _)| t.is_ipv6() == layout.ipv6)
            .ok_or(Untranslated::Drop)?;
        set_addr(buf, layout.l3, layout.ipv6, false, internal);
        set_quoted(buf, &q, layout.ipv6, true, internal);
        // NAPT: the quoted source port back to the host's own.
        set_quoted_port(buf, &q, layout.ipv6, true, port);
        Ok(finish(buf, layout, layout.ip_end))
    } else {
        // About an inbound datagram we restored: quoted destination = the internal host.
        let host = layout.src;
        if cfg.is_local(layout.dst) || q.dst != host {
            return Err(Untranslated::Kernel);
        }
        let Some(rule) = cfg.rule_for(host) else {
            return Err(Untranslated::Kernel);
        };
        let external = cfg
            .external_of(rule, host, ext)
            .filter(|e| e.is_ipv6() == layout.ipv6)
            .ok_or(Untranslated::Drop)?;
        set_addr(buf, layout.l3, layout.ipv6, true, external);
        set_quoted(buf, &q, layout.ipv6, false, external);
        // NAPT: the quoted destination port to the host's external one.
        if let Some(p) = napt.and_then(|n| n.external_port(external, host, q.dport, now_s)) {
            set_quoted_port(buf, &q, layout.ipv6, false, p);
        }
        // Cut the quote after the UDP header: the restored SIP text names the host.
        let end = q.at + q.hl + 8;
        Ok(finish(buf, layout, end))
    }
}

/// Sets the outer source (`src`) or destination address.
fn set_addr(buf: &mut [u8], l3: usize, v6: bool, src: bool, a: IpAddr) {
    match a {
        IpAddr::V6(a) if v6 => {
            let mut p = ipv6::Packet::new_unchecked(&mut buf[l3..]);
            if src {
                p.set_src(a)
            } else {
                p.set_dst(a)
            }
        }
        IpAddr::V4(a) if !v6 => {
            let mut p = ipv4::Packet::new_unchecked(&mut buf[l3..]);
            if src {
                p.set_src(a)
            } else {
                p.set_dst(a)
            }
        }
        _ => {}
    }
}

/// Sets the quoted source (`src`) or destination, and keeps the quoted IPv4 header
/// checksum and the quoted UDP checksum (incrementally) right.
fn set_quoted(buf: &mut [u8], q: &Quote, v6: bool, src: bool, a: IpAddr) {
    let (range, new): (core::ops::Range<usize>, [u8; 16]) = match a {
        IpAddr::V4(a) => {
            let off = if src { 12 } else { 16 };
            let mut n = [0u8; 16];
            n[..4].copy_from_slice(&a.octets());
            (q.at + off..q.at + off + 4, n)
        }
        IpAddr::V6(a) => {
            let off = if src { 8 } else { 24 };
            (q.at + off..q.at + off + 16, a.octets())
        }
    };
    let len = range.len();
    let old_sum = checksum::sum(&buf[range.clone()]);
    buf[range.clone()].copy_from_slice(&new[..len]);
    let new_sum = checksum::sum(&buf[range]);
    if !v6 {
        ipv4::Packet::new_unchecked(&mut buf[q.at..q.at + q.hl]).fill_checksum();
    }
    let uc = q.at + q.hl + 6;
    let c = u16::from_be_bytes([buf[uc], buf[uc + 1]]);
    if c != 0 || v6 {
        let mut c = checksum::update(c, old_sum, new_sum);
        if c == 0 {
            c = 0xffff;
        }
        buf[uc..uc + 2].copy_from_slice(&c.to_be_bytes());
    }
}

/// Sets the quoted source (`src`) or destination port, keeping the quoted UDP checksum
/// right (incrementally; none stays none in IPv4).
fn set_quoted_port(buf: &mut [u8], q: &Quote, v6: bool, src: bool, port: u16) {
    let at = q.at + q.hl + if src { 0 } else { 2 };
    let old = u16::from_be_bytes([buf[at], buf[at + 1]]);
    if old == port {
        return;
    }
    buf[at..at + 2].copy_from_slice(&port.to_be_bytes());
    let uc = q.at + q.hl + 6;
    let c = u16::from_be_bytes([buf[uc], buf[uc + 1]]);
    if c != 0 || v6 {
        let mut c = checksum::update(c, u64::from(old), u64::from(port));
        if c == 0 {
            c = 0xffff;
        }
        buf[uc..uc + 2].copy_from_slice(&c.to_be_bytes());
    }
}

/// Sets the outer lengths for a packet ending at `end`, recomputes the ICMP checksum and
/// the outer IPv4 header checksum. Returns `end`.
fn finish(buf: &mut [u8], layout: &Layout, end: usize) -> usize {
    let l3 = layout.l3;
    let l4 = layout.l4;
    buf[l4 + 2..l4 + 4].copy_from_slice(&[0, 0]);
    let body = checksum::sum(&buf[l4..end]);
    if layout.ipv6 {
        let pl = (end - l3 - ipv6::HEADER_LEN) as u16;
        let mut p = ipv6::Packet::new_unchecked(&mut buf[l3..]);
        p.set_payload_len(pl);
        let ip = &buf[l3..];
        let pseudo = checksum::pseudo_v6(&ip[8..24], &ip[24..40], PROTO_ICMPV6, (end - l4) as u32);
        let c = checksum::finish(pseudo + body);
        buf[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
    } else {
        let c = checksum::finish(body);
        buf[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
        let mut p = ipv4::Packet::new_unchecked(&mut buf[l3..]);
        p.set_total_len((end - l3) as u16);
        p.fill_checksum();
    }
    end
}
