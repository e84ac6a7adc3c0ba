//! Frame builders: an Ethernet + IPv4/IPv6 + UDP frame around a payload, with correct
//! lengths and checksums (the offline tool's message mode, the load-test templates, the
//! pipeline's tests), and the ICMP errors a router sends (the kernel slow path). Not used
//! per packet by the worker.

use core::net::{IpAddr, SocketAddr};

use super::{checksum, ethernet, ipv4, ipv6, udp};

/// The addresses of a UDP frame to build.
#[derive(Clone, Copy, Debug)]
pub struct UdpFrame {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub ttl: u8,
    /// IPv4 identification (IPv4 only).
    pub ident: u16,
    /// IPv4 DF flag (IPv4 only).
    pub dont_fragment: bool,
}

/// Why a frame could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    #[error("source and destination are of different address families")]
    FamilyMismatch,
    #[error("the buffer is too small for the frame")]
    BufferTooSmall,
    #[error("the payload is too long for one UDP datagram")]
    PayloadTooLong,
}

impl UdpFrame {
    /// Writes the frame (Ethernet II, IPv4 without options or IPv6 without extension
    /// headers, UDP with its checksum) into `buf`; returns its length.
    pub fn write(&self, payload: &[u8], buf: &mut [u8]) -> Result<usize, EmitError> {
        let v6 = match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(_), IpAddr::V4(_)) => false,
            (IpAddr::V6(_), IpAddr::V6(_)) => true,
            _ => return Err(EmitError::FamilyMismatch),
        };
        let ip_hdr = if v6 {
            ipv6::HEADER_LEN
        } else {
            ipv4::MIN_HEADER_LEN
        };
        let udp_len = udp::HEADER_LEN + payload.len();
        if udp_len > usize::from(u16::MAX) || ip_hdr + udp_len > usize::from(u16::MAX) + 40 {
            return Err(EmitError::PayloadTooLong);
        }
        let l3 = ethernet::HEADER_LEN;
        let l4 = l3 + ip_hdr;
        let total = l4 + udp_len;
        let buf = buf.get_mut(..total).ok_or(EmitError::BufferTooSmall)?;
        buf[0..6].copy_from_slice(&self.dst_mac);
        buf[6..12].copy_from_slice(&self.src_mac);
        let et = if v6 {
            ethernet::ETHERTYPE_IPV6
        } else {
            ethernet::ETHERTYPE_IPV4
        };
        buf[12..14].copy_from_slice(&et.to_be_bytes());
        let pseudo = match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let h = &mut buf[l3..l4];
                h.fill(0);
                h[0] = 0x45;
                h[2..4].copy_from_slice(&((ip_hdr + udp_len) as u16).to_be_bytes());
                h[4..6].copy_from_slice(&self.ident.to_be_bytes());
                if self.dont_fragment {
                    h[6] = 0x40;
                }
                h[8] = self.ttl;
                h[9] = udp::PROTOCOL;
                h[12..16].copy_from_slice(&s.octets());
                h[16..20].copy_from_slice(&d.octets());
                let c = checksum::finish(checksum::sum(h));
                h[10..12].copy_from_slice(&c.to_be_bytes());
                checksum::pseudo_v4(&s.octets(), &d.octets(), udp::PROTOCOL, udp_len as u32)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let h = &mut buf[l3..l4];
                h.fill(0);
                h[0] = 0x60;
                h[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
                h[6] = udp::PROTOCOL;
                h[7] = self.ttl;
                h[8..24].copy_from_slice(&s.octets());
                h[24..40].copy_from_slice(&d.octets());
                checksum::pseudo_v6(&s.octets(), &d.octets(), udp::PROTOCOL, udp_len as u32)
            }
            _ => return Err(EmitError::FamilyMismatch),
        };
        let u = &mut buf[l4..];
        u[0..2].copy_from_slice(&self.src.port().to_be_bytes());
        u[2..4].copy_from_slice(&self.dst.port().to_be_bytes());
        u[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        u[6..8].copy_from_slice(&[0, 0]);
        u[8..].copy_from_slice(payload);
        let mut c = checksum::finish(pseudo + checksum::sum(u));
        if c == 0 {
            c = 0xffff;
        }
        u[6..8].copy_from_slice(&c.to_be_bytes());
        Ok(total)
    }

    /// [`Self::write`] into a new vector (tests, tools).
    pub fn to_vec(&self, payload: &[u8]) -> Result<Vec<u8>, EmitError> {
        let mut v =
            vec![0u8; ethernet::HEADER_LEN + ipv6::HEADER_LEN + udp::HEADER_LEN + payload.len()];
        let n = self.write(payload, &mut v)?;
        v.truncate(n);
        Ok(v)
    }
}

/// Longest IPv4 quote in an ICMP error: a header with the longest options, 8 bytes more.
pub const ICMP4_QUOTE: usize = 60 + 8;
/// Longest IPv6 quote: what fits the minimum MTU (RFC 4443 §2.4).
pub const ICMP6_QUOTE: usize = 1280 - 40 - 8;

/// ICMP "fragmentation needed" (type 3 code 4, RFC 1191) with the next-hop `mtu`, quoting
/// the start of the offending packet (cut to [`ICMP4_QUOTE`]); the ICMP message only (the
/// kernel adds the IP header). Returns its length.
pub fn icmp4_frag_needed(quote: &[u8], mtu: u16, out: &mut [u8; 8 + ICMP4_QUOTE]) -> usize {
    let quote = &quote[..quote.len().min(ICMP4_QUOTE)];
    out.fill(0);
    out[0] = 3;
    out[1] = 4;
    out[6..8].copy_from_slice(&mtu.to_be_bytes());
    out[8..8 + quote.len()].copy_from_slice(quote);
    let len = 8 + quote.len();
    let c = checksum::finish(checksum::sum(&out[..len]));
    out[2..4].copy_from_slice(&c.to_be_bytes());
    len
}

/// ICMPv6 "packet too big" (type 2, RFC 4443) with `mtu` (at least 1280), quoting the
/// start of the offending packet (cut to [`ICMP6_QUOTE`]); the checksum is left 0 (the
/// kernel's ICMPv6 socket fills it). Returns its length.
pub fn icmp6_packet_too_big(quote: &[u8], mtu: u32, out: &mut [u8; 8 + ICMP6_QUOTE]) -> usize {
    let quote = &quote[..quote.len().min(ICMP6_QUOTE)];
    out[..8].fill(0);
    out[0] = 2;
    out[4..8].copy_from_slice(&mtu.max(1280).to_be_bytes());
    out[8..8 + quote.len()].copy_from_slice(quote);
    8 + quote.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{checksum, parse, udp, Layout, Link};

    /// The UDP checksum verifies: pseudo-header plus datagram fold to 0xffff.
    fn udp_checksum_verifies(f: &[u8], l: &Layout) -> bool {
        let (_, _, _, payload_len) = l.udp(f).unwrap();
        let len = udp::HEADER_LEN + payload_len;
        let ip = &f[l.l3..];
        let pseudo = if l.ipv6 {
            checksum::pseudo_v6(&ip[8..24], &ip[24..40], udp::PROTOCOL, len as u32)
        } else {
            checksum::pseudo_v4(&ip[12..16], &ip[16..20], udp::PROTOCOL, len as u32)
        };
        checksum::fold(pseudo + checksum::sum(&f[l.l4..l.l4 + len])) == 0xffff
    }

    fn frame(src: &str, dst: &str) -> UdpFrame {
        UdpFrame {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            ttl: 64,
            ident: 0x1234,
            dont_fragment: false,
        }
    }

    #[test]
    fn ipv4_literal_bytes() {
        let f = frame("10.0.0.2:5060", "198.51.100.2:5060")
            .to_vec(b"hi")
            .unwrap();
        #[rustfmt::skip]
        let want: [u8; 44] = [
            2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00,
            0x45, 0x00, 0x00, 0x1e, 0x12, 0x34, 0x00, 0x00, 0x40, 0x11, 0x00, 0x00,
            10, 0, 0, 2, 198, 51, 100, 2,
            0x13, 0xc4, 0x13, 0xc4, 0x00, 0x0a, 0x00, 0x00, b'h', b'i',
        ];
        // Everything but the two checksums, literally; the checksums verify.
        let mut masked = f.clone();
        masked[24..26].copy_from_slice(&[0, 0]);
        masked[40..42].copy_from_slice(&[0, 0]);
        assert_eq!(masked, want);
        let l = parse(&f, Link::Ethernet).unwrap();
        assert!(ipv4::Packet::new_checked(&f[l.l3..])
            .unwrap()
            .verify_checksum());
        assert!(udp_checksum_verifies(&f, &l));
    }

    #[test]
    fn ipv6_frame_parses_with_valid_checksum() {
        let f = frame("[fd00::2]:5060", "[2001:db8::2]:5080")
            .to_vec(b"OPTIONS")
            .unwrap();
        assert_eq!(f.len(), 14 + 40 + 8 + 7);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        assert_eq!(f[14 + 7], 64);
        let l = parse(&f, Link::Ethernet).unwrap();
        assert_eq!(l.udp(&f).map(|u| (u.0, u.1, u.3)), Some((5060, 5080, 7)));
        assert!(udp_checksum_verifies(&f, &l));
    }

    #[test]
    fn icmp_literal_bytes() {
        let mut m = [0u8; 8 + ICMP4_QUOTE];
        let n = icmp4_frag_needed(&[0x45, 0, 0, 28], 1400, &mut m);
        assert_eq!(n, 12);
        let mut want = [3, 4, 0, 0, 0, 0, 0x05, 0x78, 0x45, 0, 0, 28];
        let c = checksum::finish(checksum::sum(&want));
        want[2..4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(m[..n], want);
        assert_eq!(checksum::fold(checksum::sum(&m[..n])), 0xffff);
        let long = [7u8; 100];
        assert_eq!(icmp4_frag_needed(&long, 1400, &mut m), 8 + ICMP4_QUOTE);
        let mut m6 = [0u8; 8 + ICMP6_QUOTE];
        let n = icmp6_packet_too_big(&[0x60, 1, 2], 1000, &mut m6);
        assert_eq!(
            m6[..n],
            [2, 0, 0, 0, 0, 0, 0x05, 0x00, 0x60, 1, 2],
            "MTU raised to 1280"
        );
    }

    #[test]
    fn dont_fragment_flag() {
        let mut f = frame("10.0.0.2:5060", "198.51.100.2:5060");
        f.dont_fragment = true;
        let v = f.to_vec(b"x").unwrap();
        assert_eq!(v[14 + 6], 0x40);
        let l = parse(&v, Link::Ethernet).unwrap();
        assert!(ipv4::Packet::new_checked(&v[l.l3..])
            .unwrap()
            .verify_checksum());
    }

    #[test]
    fn errors() {
        let f = frame("10.0.0.2:5060", "[2001:db8::2]:5060");
        assert_eq!(f.to_vec(b""), Err(EmitError::FamilyMismatch));
        let f = frame("10.0.0.2:5060", "198.51.100.2:5060");
        assert_eq!(
            f.write(b"abc", &mut [0u8; 40]),
            Err(EmitError::BufferTooSmall)
        );
    }
}
