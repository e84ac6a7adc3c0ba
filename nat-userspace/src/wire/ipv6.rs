//! IPv6 header view and the walk over extension headers to the upper layer.

use core::net::Ipv6Addr;

pub use nat_common::MAX_IPV6_EXT_HEADERS as MAX_EXT_HEADERS;

pub const HEADER_LEN: usize = 40;
pub const NH_HOPOPTS: u8 = 0;
pub const NH_ROUTING: u8 = 43;
pub const NH_FRAGMENT: u8 = 44;
pub const NH_AH: u8 = 51;
pub const NH_DSTOPTS: u8 = 60;

mod field {
    use core::ops::Range;
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
}

/// A view over an IPv6 packet, checked: version 6, header + payload inside the buffer.
#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>>(T);

/// Fragment header fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// Offset of the fragment header itself (from the IPv6 header start).
    pub header_offset: usize,
    /// Offset of the fragment data in the original datagram, bytes.
    pub offset: usize,
    pub more: bool,
    pub ident: u32,
    /// Next header of the fragmentable part.
    pub next_header: u8,
}

/// Where the upper-layer header is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upper {
    pub protocol: u8,
    /// Offset from the IPv6 header start.
    pub offset: usize,
    /// Non-atomic fragment header, if any (then `protocol`/`offset` describe the
    /// fragment's data, and only the first fragment holds the upper header).
    pub fragment: Option<Fragment>,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer already validated (by [`crate::wire::parse`] or `new_checked`).
    pub fn new_unchecked(buf: T) -> Packet<T> {
        Packet(buf)
    }

    pub fn new_checked(buf: T) -> Option<Packet<T>> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN || b[0] >> 4 != 6 {
            return None;
        }
        let pl = usize::from(u16::from_be_bytes([b[4], b[5]]));
        (HEADER_LEN + pl <= b.len()).then_some(Packet(buf))
    }

    fn b(&self) -> &[u8] {
        self.0.as_ref()
    }

    pub fn payload_len(&self) -> usize {
        let b = self.b();
        usize::from(u16::from_be_bytes([
            b[field::PAYLOAD_LEN.start],
            b[field::PAYLOAD_LEN.start + 1],
        ]))
    }

    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.payload_len()
    }

    pub fn next_header(&self) -> u8 {
        self.b()[field::NEXT_HEADER]
    }

    pub fn hop_limit(&self) -> u8 {
        self.b()[field::HOP_LIMIT]
    }

    pub fn src(&self) -> Ipv6Addr {
        let s: [u8; 16] = self.b()[field::SRC].try_into().expect("checked");
        Ipv6Addr::from(s)
    }

    pub fn dst(&self) -> Ipv6Addr {
        let s: [u8; 16] = self.b()[field::DST].try_into().expect("checked");
        Ipv6Addr::from(s)
    }

    pub fn src_bytes(&self) -> &[u8] {
        &self.b()[field::SRC]
    }

    pub fn dst_bytes(&self) -> &[u8] {
        &self.b()[field::DST]
    }

    /// Walks extension headers (hop-by-hop, routing, destination options, AH, fragment;
    /// at most [`MAX_EXT_HEADERS`], the XDP program's limit) to the upper layer.
    pub fn upper(&self) -> Option<Upper> {
        let b = &self.b()[..self.total_len()];
        let mut nh = self.next_header();
        let mut off = HEADER_LEN;
        let mut fragment = None;
        for _ in 0..MAX_EXT_HEADERS {
            match nh {
                NH_HOPOPTS | NH_ROUTING | NH_DSTOPTS => {
                    let h = b.get(off..off + 2)?;
                    nh = h[0];
                    off += (usize::from(h[1]) + 1) * 8;
                }
                NH_AH => {
                    let h = b.get(off..off + 2)?;
                    nh = h[0];
                    off += (usize::from(h[1]) + 2) * 4;
                }
                NH_FRAGMENT => {
                    let h = b.get(off..off + 8)?;
                    let of = u16::from_be_bytes([h[2], h[3]]);
                    let f = Fragment {
                        header_offset: off,
                        offset: usize::from(of & 0xfff8),
                        more: of & 1 != 0,
                        ident: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                        next_header: h[0],
                    };
                    nh = h[0];
                    off += 8;
                    if f.offset != 0 || f.more {
                        fragment = Some(f);
                        break;
                    }
                }
                _ => break,
            }
        }
        (off <= b.len()).then_some(Upper {
            protocol: nh,
            offset: off,
            fragment,
        })
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_payload_len(&mut self, v: u16) {
        self.0.as_mut()[field::PAYLOAD_LEN].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_src(&mut self, a: Ipv6Addr) {
        self.0.as_mut()[field::SRC].copy_from_slice(&a.octets());
    }

    pub fn set_dst(&mut self, a: Ipv6Addr) {
        self.0.as_mut()[field::DST].copy_from_slice(&a.octets());
    }

    pub fn set_hop_limit(&mut self, v: u8) {
        self.0.as_mut()[field::HOP_LIMIT] = v;
    }

    /// One router hop: decrements the hop limit (IPv6 has no header checksum). False,
    /// and nothing changed, when it would reach zero.
    pub fn decrement_hop_limit(&mut self) -> bool {
        let hl = self.hop_limit();
        if hl <= 1 {
            return false;
        }
        self.set_hop_limit(hl - 1);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IPv6 header (payload 16, next header hop-by-hop, hop limit 64, fd00::2 ->
    /// 2001:db8::2), an 8-byte hop-by-hop header (next: UDP), an 8-byte UDP header.
    fn pkt() -> [u8; 56] {
        let mut b = [0u8; 56];
        b[0] = 0x60;
        b[4..6].copy_from_slice(&16u16.to_be_bytes());
        b[6] = NH_HOPOPTS;
        b[7] = 64;
        b[8] = 0xfd;
        b[23] = 2;
        b[24..26].copy_from_slice(&[0x20, 0x01]);
        b[26..28].copy_from_slice(&[0x0d, 0xb8]);
        b[39] = 2;
        b[40] = 17; // hop-by-hop: next header UDP, length 0 (8 bytes)
        b[48..50].copy_from_slice(&5060u16.to_be_bytes());
        b[52..54].copy_from_slice(&8u16.to_be_bytes());
        b
    }

    #[test]
    fn reads_fields_and_walks_to_udp() {
        let b = pkt();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload_len(), 16);
        assert_eq!(p.total_len(), 56);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src(), "fd00::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst(), "2001:db8::2".parse::<Ipv6Addr>().unwrap());
        let u = p.upper().unwrap();
        assert_eq!((u.protocol, u.offset, u.fragment), (17, 48, None));
        assert!(Packet::new_checked(&b[..55]).is_none());
    }

    #[test]
    fn fragment_header_is_read() {
        let mut b = pkt();
        b[40] = NH_FRAGMENT;
        // fragment header at 48: next UDP, offset 185*8 with M, ident 0x01020304
        let mut f = [0u8; 64];
        f[..56].copy_from_slice(&b);
        f[4..6].copy_from_slice(&24u16.to_be_bytes());
        f[48] = 17;
        f[50..52].copy_from_slice(&((185u16 << 3) | 1).to_be_bytes());
        f[52..56].copy_from_slice(&[1, 2, 3, 4]);
        let u = Packet::new_checked(&f[..]).unwrap().upper().unwrap();
        let fr = u.fragment.unwrap();
        assert_eq!(
            (fr.offset, fr.more, fr.ident, fr.header_offset),
            (1480, true, 0x0102_0304, 48)
        );
    }

    #[test]
    fn longer_extension_chain_than_the_xdp_program_walks_is_refused() {
        // MAX_EXT_HEADERS + 1 destination-options headers, then UDP.
        let n = MAX_EXT_HEADERS + 1;
        let mut b = vec![0u8; 40 + 8 * n + 8];
        b[0] = 0x60;
        b[4..6].copy_from_slice(&((8 * n + 8) as u16).to_be_bytes());
        b[6] = NH_DSTOPTS;
        for i in 0..n {
            b[40 + 8 * i] = if i + 1 == n { 17 } else { NH_DSTOPTS };
        }
        let u = Packet::new_checked(&b[..]).unwrap().upper().unwrap();
        assert_ne!(u.protocol, 17, "walked past the limit");
    }

    #[test]
    fn setters_write_literal_bytes() {
        let mut b = pkt();
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_src("2001:db8::10".parse().unwrap());
        p.set_payload_len(0x0203);
        assert!(p.decrement_hop_limit());
        assert_eq!(&b[8..12], &[0x20, 0x01, 0x0d, 0xb8]);
        assert_eq!(b[23], 0x10);
        assert_eq!(&b[4..6], &[0x02, 0x03]);
        assert_eq!(b[7], 63);
        let mut b = pkt();
        b[7] = 1;
        assert!(!Packet::new_checked(&mut b[..])
            .unwrap()
            .decrement_hop_limit());
        assert_eq!(b[7], 1);
    }
}
