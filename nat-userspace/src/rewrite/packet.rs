//! Whole-packet rewriting over a buffer with tailroom: the SIP payload (via
//! [`super::rewrite_message`]), then the IP addresses (SNAT / restore), IP total or payload
//! length, IPv4 header checksum, UDP length and checksum.
//!
//! The UDP checksum is updated with RFC 1624's incremental formula over the sums of the
//! covered bytes before and after, so a correct input checksum gives a correct output and
//! a corrupt one stays exactly as corrupt (it is not "repaired"). An IPv4 UDP checksum of 0
//! (none) stays 0; IPv6 always has one.

use core::net::IpAddr;

use super::{
    edits::Edits,
    fast::{self, Gate, Sums},
    message::{self, unchanged},
    Context, Outcome, Rewrite,
};
use crate::{
    nat::L3Action,
    wire::{checksum, ipv4, ipv6, udp, Layout},
};

/// Result of a whole-packet rewrite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketRewrite {
    /// What happened to the SIP payload.
    pub sip: Outcome,
    /// The packet's new length (link header included, link padding dropped).
    pub len: usize,
    /// The IP addresses were changed.
    pub l3_changed: bool,
    /// Addresses left alone for lack of an external address of their family.
    pub family_mismatch: u16,
    /// Content-Length promised more than the datagram held (see `Rewrite`).
    pub content_length_short: bool,
    /// Bytes after the declared body, discarded (see `Rewrite`).
    pub trailing_discarded: usize,
    /// Outbound: an internal address is still in the message (see `Rewrite`).
    pub would_leak: bool,
    /// The registration's lifetime in a REGISTER 2xx (see `Rewrite`).
    pub registered_s: Option<u32>,
}

/// Why a packet was not handled at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketError {
    /// Not a whole UDP datagram (a fragment, or another protocol).
    NotUdp,
    /// The L3 action's family differs from the packet's.
    FamilyMismatch,
}

/// Rewrites the UDP datagram described by `layout` in `buf` (packet bytes in
/// `buf[..layout.ip_end]`, the rest is tailroom). On `TooBig` (or a payload outcome other
/// than `Rewritten`) the payload is untouched; the L3 action is applied unless the SIP
/// outcome is `TooBig` (the caller then takes the slow path with a bigger buffer).
///
/// The fast path ([`super::fast`]) with a gate computed for the call and this thread's
/// edit list, as [`super::rewrite_message`] does; [`rewrite_packet_gated`] takes the
/// caller's gate and edit list.
pub fn rewrite_packet(
    buf: &mut [u8],
    layout: &Layout,
    ctx: &Context<'_>,
    l3: L3Action,
) -> Result<PacketRewrite, PacketError> {
    let gate = Gate::of(ctx);
    message::EDITS.with(|e| match e.try_borrow_mut() {
        Ok(mut e) => rewrite_packet_gated(buf, layout, ctx, l3, &gate, &mut e),
        Err(_) => rewrite_packet_gated(buf, layout, ctx, l3, &gate, &mut Edits::new()),
    })
}

/// [`rewrite_packet`] with the caller's gate (built once per snapshot from `ctx`'s config,
/// see [`Gate::new`]; whether rewriting is enabled is read from it) and edit list. The UDP checksum is updated from the sums of the bytes
/// that changed (RFC 1624): from the first edit to the end of the payload, before and
/// after; a packet whose payload did not change is not summed at all.
pub fn rewrite_packet_gated(
    buf: &mut [u8],
    layout: &Layout,
    ctx: &Context<'_>,
    l3: L3Action,
    gate: &Gate,
    edits: &mut Edits,
) -> Result<PacketRewrite, PacketError> {
    let UdpView {
        l4,
        payload,
        payload_len,
        old_check,
        has_check,
    } = UdpView::of(buf, layout, l3)?;
    let mut sums = Sums::default();
    debug_assert_eq!(
        gate.enabled(),
        ctx.config.enabled,
        "a gate of another config"
    );
    let r = if gate.enabled() {
        fast::rewrite(
            &mut buf[payload..],
            payload_len,
            ctx,
            gate,
            edits,
            has_check.then_some(&mut sums),
        )
    } else {
        unchanged(payload_len)
    };
    let payload_changed = matches!(r.outcome, Outcome::Rewritten(_));
    let Some((new_udp_len, new_ip_len)) = lengths(layout, &r) else {
        return Ok(not_rewritten(layout, &r, Outcome::TooBig));
    };
    let port = napt_port(buf, layout, ctx);
    let l3_changed = l3_changes(layout, l3) || port.is_some();
    if !payload_changed && !l3_changed {
        return Ok(not_rewritten(layout, &r, r.outcome));
    }
    // The covered words that change besides the payload: the pseudo header, the UDP
    // length and a translated port (in the header), before and after.
    let old_udp_len = udp::HEADER_LEN + payload_len;
    let (old_fixed, new_fixed);
    if has_check {
        old_fixed = pseudo(buf, layout, old_udp_len)
            + u64::from(old_udp_len as u16)
            + port.map_or(0, |(at, _)| port_word(buf, layout, at));
    } else {
        old_fixed = 0;
    }
    set_l3(buf, layout, l3, new_ip_len, new_udp_len);
    set_port(buf, layout, port);
    if has_check {
        new_fixed = pseudo(buf, layout, new_udp_len)
            + u64::from(new_udp_len as u16)
            + port.map_or(0, |(at, _)| port_word(buf, layout, at));
        let c = checksum::update(old_check, old_fixed + sums.old, new_fixed + sums.new);
        put_udp_checksum(buf, l4, c);
    }
    Ok(rewritten(layout, &r, l3_changed, new_ip_len))
}

/// The UDP port NAPT changes in this packet: (offset in the UDP header: 0 source, 2
/// destination; the new port). Outbound the internal host's source port becomes its
/// external port, inbound the external destination port its internal port.
#[inline]
fn napt_port(buf: &[u8], layout: &Layout, ctx: &Context<'_>) -> Option<(usize, u16)> {
    let n = ctx.napt?;
    let (sport, dport, _, _) = layout.udp(buf)?;
    let (at, old, from, to) = match ctx.direction {
        crate::nat::Direction::Outbound => (0, sport, n.internal_port, n.external_port),
        crate::nat::Direction::Inbound => (2, dport, n.external_port, n.internal_port),
    };
    (old == from && from != to).then_some((at, to))
}

/// The UDP header word at `at` (0: source port, 2: destination port), as a checksum sum.
#[inline]
fn port_word(buf: &[u8], layout: &Layout, at: usize) -> u64 {
    checksum::sum(&buf[layout.l4 + at..layout.l4 + at + 2])
}

#[inline]
fn set_port(buf: &mut [u8], layout: &Layout, port: Option<(usize, u16)>) {
    if let Some((at, p)) = port {
        buf[layout.l4 + at..layout.l4 + at + 2].copy_from_slice(&p.to_be_bytes());
    }
}

/// The new UDP and IP lengths after the message became `r.len` long (`None`: they would
/// not fit the length fields), or `None` when the message did not fit the buffer.
#[inline]
fn lengths(layout: &Layout, r: &Rewrite) -> Option<(usize, usize)> {
    if r.outcome == Outcome::TooBig {
        return None;
    }
    let new_udp_len = udp::HEADER_LEN + r.len;
    let new_ip_len = if layout.ipv6 {
        new_udp_len + (layout.l4 - layout.l3 - ipv6::HEADER_LEN)
    } else {
        (layout.l4 - layout.l3) + new_udp_len
    };
    // A 64 KiB message cannot occur in a 4 KiB frame; treated as too big.
    (new_udp_len <= usize::from(u16::MAX) && new_ip_len <= usize::from(u16::MAX))
        .then_some((new_udp_len, new_ip_len))
}

/// Whether the L3 action changes an address.
#[inline]
fn l3_changes(layout: &Layout, l3: L3Action) -> bool {
    l3.src.is_some_and(|a| a != layout.src) || l3.dst.is_some_and(|a| a != layout.dst)
}

/// The result when the packet is left exactly as it came.
#[inline]
fn not_rewritten(layout: &Layout, r: &Rewrite, sip: Outcome) -> PacketRewrite {
    PacketRewrite {
        sip,
        len: layout.ip_end,
        l3_changed: false,
        family_mismatch: r.family_mismatch,
        content_length_short: r.content_length_short,
        trailing_discarded: 0,
        would_leak: r.would_leak,
        registered_s: r.registered_s,
    }
}

/// Writes the addresses and the IP and UDP lengths (IPv4 header checksum updated over the
/// words that change).
#[inline]
fn set_l3(buf: &mut [u8], layout: &Layout, l3: L3Action, new_ip_len: usize, new_udp_len: usize) {
    let ip = &mut buf[layout.l3..];
    if layout.ipv6 {
        let mut p = ipv6::Packet::new_unchecked(ip);
        if let Some(IpAddr::V6(a)) = l3.src {
            p.set_src(a);
        }
        if let Some(IpAddr::V6(a)) = l3.dst {
            p.set_dst(a);
        }
        p.set_payload_len(new_ip_len as u16);
    } else {
        let words = |h: &[u8]| checksum::sum(&h[2..4]) + checksum::sum(&h[12..20]);
        let old = words(ip);
        let old_check = u16::from_be_bytes([ip[10], ip[11]]);
        let mut p = ipv4::Packet::new_unchecked(&mut *ip);
        if let Some(IpAddr::V4(a)) = l3.src {
            p.set_src(a);
        }
        if let Some(IpAddr::V4(a)) = l3.dst {
            p.set_dst(a);
        }
        p.set_total_len(new_ip_len as u16);
        let c = checksum::update(old_check, old, words(ip));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let mut d = udp::Datagram::new_unchecked(&mut buf[layout.l4..]);
    d.set_len(new_udp_len as u16);
}

/// The result for a packet whose message was rewritten (or whose IP header was), now
/// `new_ip_len` long at the IP layer.
#[inline]
fn rewritten(layout: &Layout, r: &Rewrite, l3_changed: bool, new_ip_len: usize) -> PacketRewrite {
    PacketRewrite {
        sip: r.outcome,
        len: packet_len(layout, new_ip_len),
        l3_changed,
        family_mismatch: r.family_mismatch,
        content_length_short: r.content_length_short,
        trailing_discarded: r.trailing_discarded,
        would_leak: r.would_leak,
        registered_s: r.registered_s,
    }
}

/// Stores a computed UDP checksum at the UDP header at `l4`; a computed zero is sent as
/// all ones (RFC 768: zero means "no checksum").
#[inline]
fn put_udp_checksum(buf: &mut [u8], l4: usize, c: u16) {
    let c = if c == 0 { 0xffff } else { c };
    buf[l4 + 6..l4 + 8].copy_from_slice(&c.to_be_bytes());
}

/// The packet's length with an IP length of `ip_len`.
#[inline]
fn packet_len(layout: &Layout, ip_len: usize) -> usize {
    if layout.ipv6 {
        layout.l3 + ipv6::HEADER_LEN + ip_len
    } else {
        layout.l3 + ip_len
    }
}

/// The reference whole-packet rewrite ([`super::reference`]): the reference message
/// rewrite, the UDP checksum over the whole datagram before and after.
pub fn reference_rewrite_packet(
    buf: &mut [u8],
    layout: &Layout,
    ctx: &Context<'_>,
    l3: L3Action,
) -> Result<PacketRewrite, PacketError> {
    let port = napt_port(buf, layout, ctx);
    rewrite_packet_with(buf, layout, l3, port, |b, n| {
        message::rewrite_message(b, n, ctx)
    })
}

/// [`reference_rewrite_packet`] with the caller's edit list.
pub fn reference_rewrite_packet_in(
    buf: &mut [u8],
    layout: &Layout,
    ctx: &Context<'_>,
    l3: L3Action,
    edits: &mut Edits,
) -> Result<PacketRewrite, PacketError> {
    let port = napt_port(buf, layout, ctx);
    rewrite_packet_with(buf, layout, l3, port, |b, n| {
        message::rewrite_message_in(b, n, ctx, edits)
    })
}

/// The UDP datagram both packet paths start from, once the IP header changes are known
/// to be of its family.
struct UdpView {
    l4: usize,
    payload: usize,
    payload_len: usize,
    /// The UDP checksum as received.
    old_check: u16,
    /// IPv6, or IPv4 with a checksum (0 = none, kept none).
    has_check: bool,
}

impl UdpView {
    #[inline]
    fn of(buf: &[u8], layout: &Layout, l3: L3Action) -> Result<UdpView, PacketError> {
        let (_, _, payload, payload_len) = layout.udp(buf).ok_or(PacketError::NotUdp)?;
        for a in [l3.src, l3.dst].into_iter().flatten() {
            if a.is_ipv6() != layout.ipv6 {
                return Err(PacketError::FamilyMismatch);
            }
        }
        let l4 = layout.l4;
        let old_check = u16::from_be_bytes([buf[l4 + 6], buf[l4 + 7]]);
        Ok(UdpView {
            l4,
            payload,
            payload_len,
            old_check,
            has_check: layout.ipv6 || old_check != 0,
        })
    }
}

#[inline]
fn rewrite_packet_with(
    buf: &mut [u8],
    layout: &Layout,
    l3: L3Action,
    port: Option<(usize, u16)>,
    message: impl FnOnce(&mut [u8], usize) -> Rewrite,
) -> Result<PacketRewrite, PacketError> {
    let view = UdpView::of(buf, layout, l3)?;
    let (l4, payload, payload_len) = (view.l4, view.payload, view.payload_len);
    let (old_check, has_check) = (view.old_check, view.has_check);
    let old_udp_len = udp::HEADER_LEN + payload_len;
    // Sum of everything the UDP checksum covers, before (checksum field excluded).
    let (old_pseudo, old_body) = if has_check {
        (
            pseudo(buf, layout, old_udp_len),
            udp_sum(buf, l4, old_udp_len),
        )
    } else {
        (0, 0)
    };

    let r = message(&mut buf[payload..], payload_len);
    if r.outcome == Outcome::TooBig {
        return Ok(not_rewritten(layout, &r, r.outcome));
    }
    let payload_changed = matches!(r.outcome, Outcome::Rewritten(_));
    let Some((new_udp_len, new_ip_len)) = lengths(layout, &r) else {
        return Ok(not_rewritten(layout, &r, Outcome::TooBig));
    };
    let l3_changed = l3_changes(layout, l3) || port.is_some();
    if !payload_changed && !l3_changed {
        // Nothing to do: leave every byte as it came (a wrong checksum stays wrong).
        return Ok(not_rewritten(layout, &r, r.outcome));
    }
    set_l3(buf, layout, l3, new_ip_len, new_udp_len);
    set_port(buf, layout, port);
    if has_check && (payload_changed || l3_changed) {
        let new_pseudo = pseudo(buf, layout, new_udp_len);
        // Unchanged payload and ports: only the pseudo header moved; skip re-summing the
        // body.
        let new_body = if payload_changed || port.is_some() {
            udp_sum(buf, l4, new_udp_len)
        } else {
            old_body
        };
        let c = checksum::update(old_check, old_pseudo + old_body, new_pseudo + new_body);
        put_udp_checksum(buf, l4, c);
    }
    Ok(rewritten(layout, &r, l3_changed, new_ip_len))
}

/// Pseudo-header sum with the addresses currently in the buffer.
fn pseudo(buf: &[u8], layout: &Layout, udp_len: usize) -> u64 {
    let ip = &buf[layout.l3..];
    if layout.ipv6 {
        checksum::pseudo_v6(&ip[8..24], &ip[24..40], udp::PROTOCOL, udp_len as u32)
    } else {
        checksum::pseudo_v4(&ip[12..16], &ip[16..20], udp::PROTOCOL, udp_len as u32)
    }
}

/// Sum of the UDP header (checksum field excluded) and payload.
fn udp_sum(buf: &[u8], l4: usize, udp_len: usize) -> u64 {
    checksum::sum(&buf[l4..l4 + 6]) + checksum::sum(&buf[l4 + 8..l4 + udp_len])
}

/// Verifies the UDP checksum of a whole datagram (true when absent in IPv4).
pub fn udp_checksum_ok(buf: &[u8], layout: &Layout) -> bool {
    let Some((_, _, _, payload_len)) = layout.udp(buf) else {
        return false;
    };
    let udp_len = udp::HEADER_LEN + payload_len;
    let c = u16::from_be_bytes([buf[layout.l4 + 6], buf[layout.l4 + 7]]);
    if c == 0 {
        return !layout.ipv6;
    }
    let s = pseudo(buf, layout, udp_len) + checksum::sum(&buf[layout.l4..layout.l4 + udp_len]);
    checksum::fold(s) == 0xffff
}
