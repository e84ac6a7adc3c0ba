//! IP refragmentation: split a whole IPv4/IPv6 packet into fragments no longer than an
//! MTU. Pure and allocation-free: each fragment is assembled in a stack buffer and
//! handed to the caller's `out` callback, which copies it (into a UMEM frame).
//!
//! IPv4 (RFC 791): the first fragment keeps the whole header with all its options; later
//! fragments keep only the options whose copy flag is set (padded with EOL to a multiple
//! of 4). Identification, TTL, TOS, protocol, addresses are kept; MF, the offset, the
//! total length and the header checksum are set per fragment. A packet with DF set is
//! refused ([`FragError::DontFragment`]: the caller sends ICMP "fragmentation needed").
//! A packet that already is a fragment (MF or offset) is split further: offsets are
//! relative to its own, the last piece keeps its MF.
//!
//! IPv6 (RFC 8200 §4.5): the unfragmentable part is the IPv6 header plus the extension
//! headers up to and including the last Routing header, or the Hop-by-Hop header if there
//! is no Routing header (Destination Options *before* a Routing header are thus
//! unfragmentable too; those after it, AH and everything else are fragmentable). The
//! fragment header goes right after the unfragmentable part (right after the IPv6 header
//! when there is none of those) with the caller's identification; the next-header field
//! that pointed past the unfragmentable part is patched to 44. A packet that already has
//! a fragment header is split further with that header's identification and offsets.
//!
//! Data pieces are multiples of 8 bytes except the last; every fragment is at most
//! `min(mtu, MAX_FRAGMENT)` bytes of IP packet (link header excluded).

use crate::wire::{
    ipv4,
    ipv6::{self, NH_DSTOPTS, NH_FRAGMENT, NH_HOPOPTS, NH_ROUTING},
};

/// Longest link header (bytes before the IP header) `fragment` accepts.
pub const MAX_LINK: usize = 64;
/// Longest fragment built (IP packet length): a larger `mtu` is lowered to this.
pub const MAX_FRAGMENT: usize = 9216;

/// Why a packet could not be fragmented.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FragError {
    #[error("IPv4 packet larger than the MTU has DF set")]
    DontFragment,
    #[error("not a well-formed IPv4/IPv6 packet (or link header longer than {MAX_LINK})")]
    Malformed,
    #[error("MTU too small for the headers and 8 bytes of data")]
    MtuTooSmall,
    #[error("the output took no more fragments")]
    OutputFull,
}

/// Is DF set in the IPv4 header at `l3`? (false for IPv6 and anything unparsable).
pub fn ipv4_df(packet: &[u8], l3: usize) -> bool {
    packet
        .get(l3..)
        .and_then(ipv4::Packet::new_checked)
        .is_some_and(|p| p.dont_fragment())
}

/// Splits the packet (link header `packet[..l3]`, then an IPv4 or IPv6 packet; trailing
/// link padding ignored) into fragments of at most `mtu` bytes of IP packet, calling
/// `out` with each complete fragment (link header included), first to last. `ident` is
/// the IPv6 fragment identification (IPv4 keeps the packet's own). A packet that already
/// fits is passed to `out` unchanged, as one fragment. Returns the number of fragments.
///
/// `out` returning false stops with [`FragError::OutputFull`] (the fragments already
/// given stay given).
pub fn fragment(
    packet: &[u8],
    l3: usize,
    mtu: usize,
    ident: u32,
    out: &mut impl FnMut(&[u8]) -> bool,
) -> Result<usize, FragError> {
    let ip = packet.get(l3..).ok_or(FragError::Malformed)?;
    let total_len = match ip.first().map(|b| b >> 4) {
        Some(4) => ipv4::Packet::new_checked(ip).map(|p| p.total_len()),
        Some(6) => ipv6::Packet::new_checked(ip).map(|p| p.total_len()),
        _ => None,
    };
    let tl = total_len.ok_or(FragError::Malformed)?;
    if tl <= mtu {
        emit(out, &packet[..l3 + tl])?;
        return Ok(1);
    }
    if ip[0] >> 4 == 4 {
        fragment_v4(packet, l3, mtu, out)
    } else {
        fragment_v6(packet, l3, tl, mtu, ident, out)
    }
}

fn emit(out: &mut impl FnMut(&[u8]) -> bool, bytes: &[u8]) -> Result<(), FragError> {
    if out(bytes) {
        Ok(())
    } else {
        Err(FragError::OutputFull)
    }
}

/// The IPv4 header of non-first fragments: the fixed header plus the options with the
/// copy flag, EOL-padded. Stops at EOL or at a malformed option (the rest is dropped).
fn later_header_v4(hdr: &[u8], into: &mut [u8; 60]) -> usize {
    into[..ipv4::MIN_HEADER_LEN].copy_from_slice(&hdr[..ipv4::MIN_HEADER_LEN]);
    let mut n = ipv4::MIN_HEADER_LEN;
    let mut i = ipv4::MIN_HEADER_LEN;
    while i < hdr.len() {
        match hdr[i] {
            0 => break,
            1 => i += 1, // NOP: copy flag clear
            t => {
                let Some(&len) = hdr.get(i + 1) else { break };
                let len = usize::from(len);
                if len < 2 || i + len > hdr.len() {
                    break;
                }
                if t & 0x80 != 0 {
                    into[n..n + len].copy_from_slice(&hdr[i..i + len]);
                    n += len;
                }
                i += len;
            }
        }
    }
    let padded = n.next_multiple_of(4);
    into[n..padded].fill(0);
    into[0] = 0x40 | (padded / 4) as u8;
    padded
}

fn fragment_v4(
    packet: &[u8],
    l3: usize,
    mtu: usize,
    out: &mut impl FnMut(&[u8]) -> bool,
) -> Result<usize, FragError> {
    // Checked by `fragment`, which sent it whole if it fit.
    let p = ipv4::Packet::new_checked(&packet[l3..]).ok_or(FragError::Malformed)?;
    let tl = p.total_len();
    if p.dont_fragment() {
        return Err(FragError::DontFragment);
    }
    if l3 > MAX_LINK {
        return Err(FragError::Malformed);
    }
    let mtu = mtu.min(MAX_FRAGMENT);
    let hl = p.header_len();
    let base = p.frag_offset();
    let more = p.more_fragments();
    let ip = &packet[l3..l3 + tl];
    let data = &ip[hl..];
    if base + data.len() > 0xffff {
        return Err(FragError::Malformed);
    }
    let mut later = [0u8; 60];
    let later_len = later_header_v4(&ip[..hl], &mut later);
    let first_max = mtu.saturating_sub(hl) & !7;
    let later_max = mtu.saturating_sub(later_len) & !7;
    if first_max == 0 || later_max == 0 {
        return Err(FragError::MtuTooSmall);
    }

    let mut buf = [0u8; MAX_LINK + MAX_FRAGMENT];
    buf[..l3].copy_from_slice(&packet[..l3]);
    let mut off = 0;
    let mut count = 0;
    while off < data.len() {
        let (hdr, max) = if off == 0 {
            (&ip[..hl], first_max)
        } else {
            (&later[..later_len], later_max)
        };
        let len = max.min(data.len() - off);
        let last = off + len == data.len();
        let h = hdr.len();
        buf[l3..l3 + h].copy_from_slice(hdr);
        buf[l3 + h..l3 + h + len].copy_from_slice(&data[off..off + len]);
        let mut q = ipv4::Packet::new_unchecked(&mut buf[l3..l3 + h + len]);
        q.set_total_len((h + len) as u16);
        q.set_fragment(more || !last, base + off, false);
        q.fill_checksum();
        emit(out, &buf[..l3 + h + len])?;
        count += 1;
        off += len;
    }
    Ok(count)
}

/// IPv6 packet of total length `tl` (checked by `fragment`) that does not fit `mtu`.
fn fragment_v6(
    packet: &[u8],
    l3: usize,
    tl: usize,
    mtu: usize,
    ident: u32,
    out: &mut impl FnMut(&[u8]) -> bool,
) -> Result<usize, FragError> {
    if l3 > MAX_LINK {
        return Err(FragError::Malformed);
    }
    let mtu = mtu.min(MAX_FRAGMENT);
    let ip = &packet[l3..l3 + tl];

    // Walk the extension headers: the unfragmentable part ends after the last Routing
    // header, else after Hop-by-Hop; `unfrag_nh` is the next-header field pointing past it.
    let mut nh = ip[6];
    let mut nh_pos = 6;
    let mut off = ipv6::HEADER_LEN;
    let mut unfrag = ipv6::HEADER_LEN;
    let mut unfrag_nh = 6;
    let mut existing = None;
    for _ in 0..8 {
        match nh {
            NH_HOPOPTS | NH_ROUTING | NH_DSTOPTS => {
                let h = ip.get(off..off + 2).ok_or(FragError::Malformed)?;
                let len = (usize::from(h[1]) + 1) * 8;
                if off + len > tl {
                    return Err(FragError::Malformed);
                }
                if nh != NH_DSTOPTS {
                    unfrag = off + len;
                    unfrag_nh = off;
                }
                nh_pos = off;
                nh = h[0];
                off += len;
            }
            NH_FRAGMENT => {
                if off + 8 > tl {
                    return Err(FragError::Malformed);
                }
                existing = Some(off);
                break;
            }
            _ => break,
        }
    }
    // (upper next header, data start, base offset, more, ident)
    let (upper, data_at, base, more, ident) = match existing {
        Some(fh) => {
            unfrag = fh;
            unfrag_nh = nh_pos;
            let of = u16::from_be_bytes([ip[fh + 2], ip[fh + 3]]);
            let id = u32::from_be_bytes([ip[fh + 4], ip[fh + 5], ip[fh + 6], ip[fh + 7]]);
            (ip[fh], fh + 8, usize::from(of & 0xfff8), of & 1 != 0, id)
        }
        None => (ip[unfrag_nh], unfrag, 0, false, ident),
    };
    let data = &ip[data_at..];
    if base + data.len() > 0xffff {
        return Err(FragError::Malformed);
    }
    let max = mtu.saturating_sub(unfrag + 8) & !7;
    if max == 0 {
        return Err(FragError::MtuTooSmall);
    }

    let mut buf = [0u8; MAX_LINK + MAX_FRAGMENT];
    buf[..l3].copy_from_slice(&packet[..l3]);
    buf[l3..l3 + unfrag].copy_from_slice(&ip[..unfrag]);
    buf[l3 + unfrag_nh] = NH_FRAGMENT;
    let fh = l3 + unfrag;
    buf[fh] = upper;
    buf[fh + 1] = 0;
    buf[fh + 4..fh + 8].copy_from_slice(&ident.to_be_bytes());
    let d = fh + 8;
    let mut off = 0;
    let mut count = 0;
    while off < data.len() {
        let len = max.min(data.len() - off);
        let last = off + len == data.len();
        let of = (base + off) as u16 | u16::from(more || !last);
        buf[fh + 2..fh + 4].copy_from_slice(&of.to_be_bytes());
        buf[d..d + len].copy_from_slice(&data[off..off + len]);
        let pl = unfrag - ipv6::HEADER_LEN + 8 + len;
        ipv6::Packet::new_unchecked(&mut buf[l3..d + len]).set_payload_len(pl as u16);
        emit(out, &buf[..d + len])?;
        count += 1;
        off += len;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip::test_frames::{self as frames, XorShift};
    use crate::wire::{self, Link};

    const ETH: usize = 14;

    fn payload(n: usize) -> Vec<u8> {
        frames::payload(b"INVITE sip:bob@example.com SIP/2.0\r\n", n)
    }

    fn udp_v4(n: usize, ident: u16, df: bool) -> Vec<u8> {
        frames::udp_v4(&payload(n), ident, df)
    }

    fn udp_v6(n: usize) -> Vec<u8> {
        frames::udp_v6(&payload(n), 2)
    }

    /// Inserts extension headers (type, total length) right after the IPv6 header.
    fn with_exts(frame: &[u8], exts: &[(u8, usize)]) -> Vec<u8> {
        let ip0 = ETH;
        let mut v = frame[..ip0 + 40].to_vec();
        let mut upper = frame[ip0 + 6];
        let mut nh_pos = ip0 + 6;
        let mut added = 0;
        for &(t, len) in exts {
            v[nh_pos] = t;
            nh_pos = v.len();
            let mut h = vec![0u8; len];
            h[1] = (len / 8 - 1) as u8;
            if len > 2 {
                h[2] = 1; // PadN
                h[3] = (len - 4) as u8;
            }
            v.extend_from_slice(&h);
            added += len;
        }
        v[nh_pos] = core::mem::replace(&mut upper, 0);
        v.extend_from_slice(&frame[ip0 + 40..]);
        let pl = u16::from_be_bytes([v[ip0 + 4], v[ip0 + 5]]) as usize + added;
        v[ip0 + 4..ip0 + 6].copy_from_slice(&(pl as u16).to_be_bytes());
        v
    }

    fn collect(
        packet: &[u8],
        l3: usize,
        mtu: usize,
        ident: u32,
    ) -> Result<Vec<Vec<u8>>, FragError> {
        let mut v = Vec::new();
        let n = fragment(packet, l3, mtu, ident, &mut |f: &[u8]| {
            v.push(f.to_vec());
            true
        })?;
        assert_eq!(n, v.len());
        Ok(v)
    }

    /// Checks the fragments of a whole packet and rebuilds its data (from `data_from`, the
    /// fragmentable part's start in the original).
    fn check_fragments(orig: &[u8], frags: &[Vec<u8>], mtu: usize, data_from: usize) {
        let mut data = Vec::new();
        for (i, f) in frags.iter().enumerate() {
            let l = wire::parse(f, Link::Ethernet).unwrap();
            assert_eq!(&f[..ETH], &orig[..ETH], "link header copied");
            assert_eq!(l.ip_end, f.len());
            assert!(
                f.len() - ETH <= mtu,
                "fragment {} bytes > mtu {mtu}",
                f.len() - ETH
            );
            let fi = l.fragment.expect("a fragment");
            assert_eq!(fi.offset, data.len(), "contiguous");
            assert_eq!(fi.more, i + 1 < frags.len());
            if fi.more {
                assert_eq!((l.ip_end - fi.data) % 8, 0);
            }
            if !l.ipv6 {
                let p = ipv4::Packet::new_checked(&f[ETH..]).unwrap();
                assert!(p.verify_checksum());
                assert!(!p.dont_fragment());
                let o = ipv4::Packet::new_checked(&orig[ETH..]).unwrap();
                assert_eq!(p.ident(), o.ident());
                assert_eq!(p.ttl(), o.ttl());
                assert_eq!(&f[ETH + 12..ETH + 20], &orig[ETH + 12..ETH + 20]);
            }
            data.extend_from_slice(&f[fi.data..]);
        }
        assert_eq!(&data[..], &orig[data_from..]);
    }

    #[test]
    fn ipv4_fragments_at_1500_and_576() {
        let orig = udp_v4(3000, 0x1234, false);
        for mtu in [1500, 576, 68, 1000] {
            let frags = collect(&orig, ETH, mtu, 0).unwrap();
            assert_eq!(
                frags.len(),
                (3008usize).div_ceil((mtu - 20) & !7),
                "mtu {mtu}"
            );
            check_fragments(&orig, &frags, mtu, ETH + 20);
        }
    }

    #[test]
    fn ipv4_options_copy_flag() {
        // IPv4 + options: LSRR (copied, 7), RR (not copied, 7), NOP, EOL → 16 bytes.
        let base = udp_v4(2000, 7, false);
        let opts = [
            0x83, 7, 4, 10, 0, 0, 1, // LSRR
            0x07, 7, 4, 0, 0, 0, 0, // RR
            0x01, 0x00,
        ];
        let mut f = base[..ETH + 20].to_vec();
        f.extend_from_slice(&opts);
        f.extend_from_slice(&base[ETH + 20..]);
        f[ETH] = 0x40 | 9;
        let tl = (f.len() - ETH) as u16;
        {
            let mut p = ipv4::Packet::new_unchecked(&mut f[ETH..]);
            p.set_total_len(tl);
            p.fill_checksum();
        }
        let frags = collect(&f, ETH, 576, 0).unwrap();
        check_fragments(&f, &frags, 576, ETH + 36);
        assert_eq!(
            &frags[0][ETH..ETH + 36],
            &{
                let mut h = f[ETH..ETH + 36].to_vec();
                h[2..4].copy_from_slice(&frags[0][ETH + 2..ETH + 4]);
                h[6..8].copy_from_slice(&frags[0][ETH + 6..ETH + 8]);
                h[10..12].copy_from_slice(&frags[0][ETH + 10..ETH + 12]);
                h
            }[..]
        );
        for g in &frags[1..] {
            assert_eq!(g[ETH], 0x47, "20 + LSRR 7 + 1 pad = 28");
            assert_eq!(&g[ETH + 20..ETH + 27], &opts[..7]);
            assert_eq!(g[ETH + 27], 0);
        }
    }

    #[test]
    fn ipv4_df_refused() {
        let orig = udp_v4(3000, 1, true);
        assert!(ipv4_df(&orig, ETH));
        assert!(!ipv4_df(&udp_v4(3000, 1, false), ETH));
        assert!(!ipv4_df(&udp_v6(100), ETH));
        assert!(!ipv4_df(&orig, 5000));
        let mut calls = 0;
        let r = fragment(&orig, ETH, 1500, 0, &mut |_: &[u8]| {
            calls += 1;
            true
        });
        assert_eq!(r, Err(FragError::DontFragment));
        assert_eq!(calls, 0);
        // DF but small enough: passed through.
        let small = udp_v4(100, 1, true);
        assert_eq!(collect(&small, ETH, 1500, 0).unwrap(), vec![small.clone()]);
    }

    #[test]
    fn fitting_packet_passes_through_without_padding() {
        for orig in [udp_v4(1000, 3, false), udp_v6(1000)] {
            let mut padded = orig.clone();
            padded.extend_from_slice(&[0xee; 6]);
            let l = orig.len() - ETH;
            assert_eq!(collect(&padded, ETH, l, 9).unwrap(), vec![orig.clone()]);
            assert_eq!(collect(&padded, ETH, l - 1, 9).unwrap().len(), 2);
        }
    }

    #[test]
    fn ipv4_fragment_of_a_fragment() {
        let mut f = udp_v4(2000, 5, false);
        {
            let mut p = ipv4::Packet::new_unchecked(&mut f[ETH..]);
            p.set_fragment(true, 800, false);
            p.fill_checksum();
        }
        let frags = collect(&f, ETH, 576, 0).unwrap();
        let mut expect = 800;
        for g in &frags {
            let fi = wire::parse(g, Link::Ethernet).unwrap().fragment.unwrap();
            assert_eq!(fi.offset, expect);
            assert!(fi.more, "the original had MF");
            expect += g.len() - fi.data;
        }
        assert_eq!(expect, 800 + 2008);
    }

    #[test]
    fn ipv6_fragment_header_placement() {
        let base = udp_v6(3000);
        // (extension headers, how many of them are unfragmentable)
        let cases: &[(&[(u8, usize)], usize)] = &[
            (&[], 0),
            (&[(NH_HOPOPTS, 8)], 1),
            (&[(NH_HOPOPTS, 8), (NH_DSTOPTS, 16)], 1),
            (&[(NH_DSTOPTS, 8), (NH_ROUTING, 24)], 2),
            (&[(NH_DSTOPTS, 8)], 0),
        ];
        for &(exts, n_unfrag) in cases {
            let orig = with_exts(&base, exts);
            let unfrag: usize = 40 + exts[..n_unfrag].iter().map(|e| e.1).sum::<usize>();
            let upper = if n_unfrag < exts.len() {
                exts[n_unfrag].0
            } else {
                17
            };
            for mtu in [1280, 1500, 576] {
                let frags = collect(&orig, ETH, mtu, 0xdead_beef).unwrap();
                assert!(frags.len() >= 2);
                for g in &frags {
                    let ip = &g[ETH..];
                    // Unfragmentable part copied, the last next-header patched to 44.
                    let nh_at = if n_unfrag == 0 {
                        6
                    } else {
                        40 + exts[..n_unfrag - 1].iter().map(|e| e.1).sum::<usize>()
                    };
                    let mut expect = orig[ETH..ETH + unfrag].to_vec();
                    expect[nh_at] = NH_FRAGMENT;
                    expect[4..6].copy_from_slice(&ip[4..6]);
                    assert_eq!(&ip[..unfrag], &expect[..]);
                    assert_eq!(ip[unfrag], upper, "fragment header's next header");
                    assert_eq!(&ip[unfrag + 4..unfrag + 8], &0xdead_beefu32.to_be_bytes());
                    let pl = u16::from_be_bytes([ip[4], ip[5]]) as usize;
                    assert_eq!(pl + 40, ip.len());
                    let up = ipv6::Packet::new_checked(ip).unwrap().upper().unwrap();
                    assert_eq!(up.fragment.unwrap().header_offset, unfrag);
                }
                check_fragments(&orig, &frags, mtu, ETH + unfrag);
            }
        }
    }

    #[test]
    fn ipv6_fragment_of_a_fragment_keeps_ident_and_offsets() {
        let orig = udp_v6(3000);
        let frags = collect(&orig, ETH, 1500, 77).unwrap();
        let again = collect(&frags[0], ETH, 576, 99).unwrap();
        let mut expect = 0;
        for g in &again {
            let fi = wire::parse(g, Link::Ethernet).unwrap().fragment.unwrap();
            assert_eq!(fi.ident, 77);
            assert_eq!(fi.offset, expect);
            assert!(fi.more);
            assert!(g.len() - ETH <= 576);
            expect += g.len() - fi.data;
        }
        let first = wire::parse(&frags[0], Link::Ethernet).unwrap();
        assert_eq!(expect, first.ip_end - first.fragment.unwrap().data);
    }

    #[test]
    fn output_full_stops() {
        let orig = udp_v4(3000, 1, false);
        let mut calls = 0;
        let r = fragment(&orig, ETH, 576, 0, &mut |_: &[u8]| {
            calls += 1;
            calls < 2
        });
        assert_eq!(r, Err(FragError::OutputFull));
        assert_eq!(calls, 2);
    }

    #[test]
    fn mtu_too_small_and_malformed() {
        assert_eq!(
            collect(&udp_v4(3000, 1, false), ETH, 27, 0),
            Err(FragError::MtuTooSmall)
        );
        assert_eq!(
            collect(&udp_v6(3000), ETH, 55, 0),
            Err(FragError::MtuTooSmall)
        );
        assert_eq!(collect(&udp_v6(3000), ETH, 56, 0).unwrap().len(), 376);
        assert_eq!(collect(&[0u8; 40], ETH, 1500, 0), Err(FragError::Malformed));
        assert_eq!(collect(&[0u8; 4], ETH, 1500, 0), Err(FragError::Malformed));
        let mut short = udp_v4(3000, 1, false);
        short.truncate(1000);
        assert_eq!(collect(&short, ETH, 576, 0), Err(FragError::Malformed));
        let mut big_link = vec![0u8; 100];
        big_link.extend_from_slice(&udp_v4(3000, 1, false)[ETH..]);
        assert_eq!(collect(&big_link, 100, 576, 0), Err(FragError::Malformed));
    }

    #[test]
    fn mtu_above_max_fragment_is_capped() {
        let orig = udp_v4(20000, 1, false);
        let frags = collect(&orig, ETH, 16000, 0).unwrap();
        assert_eq!(frags.len(), 3);
        check_fragments(&orig, &frags, MAX_FRAGMENT, ETH + 20);
        let orig = udp_v6(20000);
        let frags = collect(&orig, ETH, 16000, 1).unwrap();
        check_fragments(&orig, &frags, MAX_FRAGMENT, ETH + 40);
    }

    #[test]
    fn random_inputs_never_panic() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let seeds = [
            udp_v4(3000, 1, false),
            udp_v6(3000),
            with_exts(&udp_v6(2000), &[(0, 16), (60, 8), (43, 24)]),
        ];
        for _ in 0..20_000 {
            let mut p = seeds[rng.below(seeds.len())].clone();
            // Mutate a few header bytes, truncate sometimes.
            for _ in 0..rng.below(6) {
                let i = ETH + rng.below(120.min(p.len() - ETH));
                p[i] = rng.next() as u8;
            }
            if rng.below(4) == 0 {
                p.truncate(rng.below(p.len() + 1));
            }
            let mtu = rng.below(3100);
            let l3 = if rng.below(16) == 0 {
                rng.below(80)
            } else {
                ETH
            };
            let mut n = 0;
            let r = fragment(&p, l3, mtu, 5, &mut |f: &[u8]| {
                assert!(f.len() >= l3);
                assert!(f.len() - l3 <= mtu.max(p.len()));
                n += 1;
                true
            });
            if let Ok(k) = r {
                assert_eq!(k, n);
            }
        }
    }
}
