//! IPv6 header view and the walk over extension headers to the upper layer.

use core::net::Ipv6Addr;

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
    /// at most 8) to the upper layer.
    pub fn upper(&self) -> Option<Upper> {
        let b = &self.b()[..self.total_len()];
        let mut nh = self.next_header();
        let mut off = HEADER_LEN;
        let mut fragment = None;
        for _ in 0..8 {
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
}
