//! IPv4 header view (options honoured through IHL).

use core::net::Ipv4Addr;

use super::checksum;

pub const MIN_HEADER_LEN: usize = 20;

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const TOTAL_LEN: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLAGS_FRAG: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

/// A view over an IPv4 packet, checked: version 4, IHL ≥ 5, header and total length
/// inside the buffer.
#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>>(T);

fn be16(b: &[u8], r: core::ops::Range<usize>) -> u16 {
    u16::from_be_bytes([b[r.start], b[r.start + 1]])
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer already validated (by [`crate::wire::parse`] or `new_checked`).
    pub fn new_unchecked(buf: T) -> Packet<T> {
        Packet(buf)
    }

    pub fn new_checked(buf: T) -> Option<Packet<T>> {
        let b = buf.as_ref();
        if b.len() < MIN_HEADER_LEN || b[field::VER_IHL] >> 4 != 4 {
            return None;
        }
        let hl = usize::from(b[field::VER_IHL] & 0x0f) * 4;
        let tl = usize::from(be16(b, field::TOTAL_LEN));
        (hl >= MIN_HEADER_LEN && hl <= tl && tl <= b.len()).then_some(Packet(buf))
    }

    fn b(&self) -> &[u8] {
        self.0.as_ref()
    }

    pub fn header_len(&self) -> usize {
        usize::from(self.b()[field::VER_IHL] & 0x0f) * 4
    }

    pub fn total_len(&self) -> usize {
        usize::from(be16(self.b(), field::TOTAL_LEN))
    }

    pub fn ident(&self) -> u16 {
        be16(self.b(), field::IDENT)
    }

    pub fn dont_fragment(&self) -> bool {
        be16(self.b(), field::FLAGS_FRAG) & 0x4000 != 0
    }

    pub fn more_fragments(&self) -> bool {
        be16(self.b(), field::FLAGS_FRAG) & 0x2000 != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> usize {
        usize::from(be16(self.b(), field::FLAGS_FRAG) & 0x1fff) * 8
    }

    pub fn is_fragment(&self) -> bool {
        self.more_fragments() || self.frag_offset() != 0
    }

    pub fn ttl(&self) -> u8 {
        self.b()[field::TTL]
    }

    pub fn protocol(&self) -> u8 {
        self.b()[field::PROTOCOL]
    }

    pub fn checksum(&self) -> u16 {
        be16(self.b(), field::CHECKSUM)
    }

    pub fn src(&self) -> Ipv4Addr {
        let s = &self.b()[field::SRC];
        Ipv4Addr::new(s[0], s[1], s[2], s[3])
    }

    pub fn dst(&self) -> Ipv4Addr {
        let s = &self.b()[field::DST];
        Ipv4Addr::new(s[0], s[1], s[2], s[3])
    }

    pub fn src_bytes(&self) -> &[u8] {
        &self.b()[field::SRC]
    }

    pub fn dst_bytes(&self) -> &[u8] {
        &self.b()[field::DST]
    }

    /// Is the header checksum valid?
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(&self.b()[..self.header_len()])) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn bm(&mut self) -> &mut [u8] {
        self.0.as_mut()
    }

    pub fn set_total_len(&mut self, v: u16) {
        self.bm()[field::TOTAL_LEN].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_src(&mut self, a: Ipv4Addr) {
        self.bm()[field::SRC].copy_from_slice(&a.octets());
    }

    pub fn set_dst(&mut self, a: Ipv4Addr) {
        self.bm()[field::DST].copy_from_slice(&a.octets());
    }

    pub fn set_ttl(&mut self, v: u8) {
        self.bm()[field::TTL] = v;
    }

    /// Sets flags (MF) and the fragment offset in bytes (a multiple of 8).
    pub fn set_fragment(&mut self, more: bool, offset: usize, dont_fragment: bool) {
        let v = ((offset / 8) as u16 & 0x1fff)
            | if more { 0x2000 } else { 0 }
            | if dont_fragment { 0x4000 } else { 0 };
        self.bm()[field::FLAGS_FRAG].copy_from_slice(&v.to_be_bytes());
    }

    /// Recomputes the header checksum (header only, ≤ 60 bytes).
    pub fn fill_checksum(&mut self) {
        let hl = self.header_len();
        self.bm()[field::CHECKSUM].copy_from_slice(&[0, 0]);
        let c = checksum::finish(checksum::sum(&self.b()[..hl]));
        self.bm()[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }
}
