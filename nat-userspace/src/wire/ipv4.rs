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

    /// One router hop: decrements the TTL and updates the header checksum incrementally
    /// (RFC 1624: a wrong checksum stays exactly as wrong). False, and nothing changed,
    /// when the TTL would reach zero.
    pub fn decrement_ttl(&mut self) -> bool {
        let ttl = self.ttl();
        if ttl <= 1 {
            return false;
        }
        let proto = self.protocol();
        let old = u64::from(u16::from_be_bytes([ttl, proto]));
        let new = u64::from(u16::from_be_bytes([ttl - 1, proto]));
        let c = checksum::update(self.checksum(), old, new);
        self.bm()[field::TTL] = ttl - 1;
        self.bm()[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
        true
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

#[cfg(test)]
mod tests {
    use super::*;

    /// 20-byte header: total length 28, ident 0x1c46, DF, TTL 64, UDP,
    /// 10.0.0.2 -> 198.51.100.2, valid checksum; then 8 bytes of UDP header.
    const PKT: [u8; 28] = [
        0x45, 0x00, 0x00, 0x1c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 10, 0, 0, 2, 198,
        51, 100, 2, 0x13, 0xc4, 0x13, 0xc4, 0x00, 0x08, 0x00, 0x00,
    ];

    fn valid() -> [u8; 28] {
        let mut b = PKT;
        Packet::new_checked(&mut b[..]).unwrap().fill_checksum();
        b
    }

    #[test]
    fn reads_fields() {
        let b = valid();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            (
                p.header_len(),
                p.total_len(),
                p.ident(),
                p.ttl(),
                p.protocol()
            ),
            (20, 28, 0x1c46, 64, 17)
        );
        assert!(p.dont_fragment());
        assert!(!p.is_fragment());
        assert_eq!(
            (p.src(), p.dst()),
            (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(198, 51, 100, 2))
        );
        assert!(p.verify_checksum());
    }

    #[test]
    fn checked_refuses_short_or_inconsistent() {
        assert!(Packet::new_checked(&PKT[..19]).is_none());
        let mut b = PKT;
        b[0] = 0x65; // version 6
        assert!(Packet::new_checked(&b[..]).is_none());
        let mut b = PKT;
        b[3] = 29; // total length past the buffer
        assert!(Packet::new_checked(&b[..]).is_none());
        let mut b = PKT;
        b[0] = 0x44; // IHL 4
        assert!(Packet::new_checked(&b[..]).is_none());
    }

    #[test]
    fn decrement_ttl_keeps_checksum_valid() {
        let mut b = valid();
        assert!(Packet::new_checked(&mut b[..]).unwrap().decrement_ttl());
        assert_eq!(b[8], 63);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum());
        // Same bytes as a full recomputation.
        let mut full = b;
        Packet::new_checked(&mut full[..]).unwrap().fill_checksum();
        assert_eq!(b, full);
    }

    #[test]
    fn decrement_ttl_stops_at_one_and_keeps_a_wrong_checksum_wrong() {
        let mut b = valid();
        b[8] = 1;
        let before = b;
        assert!(!Packet::new_checked(&mut b[..]).unwrap().decrement_ttl());
        assert_eq!(b, before);
        let mut b = valid();
        b[10] ^= 0x55; // corrupt
        let wrong = u16::from_be_bytes([b[10], b[11]]);
        Packet::new_checked(&mut b[..]).unwrap().decrement_ttl();
        let mut good = valid();
        Packet::new_checked(&mut good[..]).unwrap().decrement_ttl();
        let good_c = u16::from_be_bytes([good[10], good[11]]);
        let c = u16::from_be_bytes([b[10], b[11]]);
        let orig_good = u16::from_be_bytes([valid()[10], valid()[11]]);
        // The error (difference to the right checksum) is carried over unchanged.
        assert_eq!(c.wrapping_sub(good_c), wrong.wrapping_sub(orig_good));
    }

    #[test]
    fn setters_write_literal_bytes() {
        let mut b = valid();
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_src(Ipv4Addr::new(203, 0, 113, 10));
        p.set_dst(Ipv4Addr::new(10, 0, 0, 9));
        p.set_total_len(0x0102);
        p.set_fragment(true, 1480, false);
        assert_eq!(&b[12..20], &[203, 0, 113, 10, 10, 0, 0, 9]);
        assert_eq!(&b[2..4], &[0x01, 0x02]);
        assert_eq!(&b[6..8], &[0x20, 0xb9]); // MF, offset 185 * 8
    }
}
