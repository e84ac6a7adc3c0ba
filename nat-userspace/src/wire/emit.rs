//! Frame builders: an Ethernet + IPv4/IPv6 + UDP frame around a payload, with correct
//! lengths and checksums. For the offline tool's message mode, the pipeline's tests and
//! any code that needs a well-formed datagram; not used per packet by the worker.

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{parse, Link};

    fn frame(src: &str, dst: &str) -> UdpFrame {
        UdpFrame {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            ttl: 64,
            ident: 0x1234,
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
        assert!(crate::rewrite::packet::udp_checksum_ok(&f, &l));
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
        assert!(crate::rewrite::packet::udp_checksum_ok(&f, &l));
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
