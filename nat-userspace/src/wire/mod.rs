//! Packet views (smoltcp style: a checked constructor, then accessors that cannot go out
//! of bounds) shared by the worker, the offline pcap tool and the load-test verifier.

pub mod checksum;
pub mod emit;
pub mod ethernet;
pub mod ipv4;
pub mod ipv6;
pub mod stun;
pub mod udp;

use core::net::IpAddr;

/// What precedes the IP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Ethernet II, up to two VLAN tags.
    Ethernet,
    /// The buffer starts with the IP header.
    RawIp,
    /// Linux cooked capture v1 (16-byte header, protocol at 14..16).
    LinuxSll,
    /// Linux cooked capture v2 (20-byte header, protocol at 0..2).
    LinuxSll2,
}

/// A fragment of an IP datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragmentInfo {
    pub ident: u32,
    /// Offset of this fragment's data in the datagram, bytes.
    pub offset: usize,
    pub more: bool,
    /// Where this fragment's data starts in the buffer.
    pub data: usize,
    /// Protocol of the fragmented datagram.
    pub protocol: u8,
}

/// Offsets of the layers of one packet in a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// IP header start.
    pub l3: usize,
    pub ipv6: bool,
    /// End of the IP packet (link padding excluded).
    pub ip_end: usize,
    /// Upper-layer protocol (for fragments: of the fragmented datagram).
    pub protocol: u8,
    /// Upper-layer header start (whole datagrams).
    pub l4: usize,
    pub fragment: Option<FragmentInfo>,
    pub src: IpAddr,
    pub dst: IpAddr,
}

/// Why a buffer has no usable IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not IPv4/IPv6 (ARP, ...).
    NotIp,
    /// Truncated or inconsistent headers.
    Malformed,
}

/// Parses link and IP layers of `buf`.
pub fn parse(buf: &[u8], link: Link) -> Result<Layout, ParseError> {
    let (l3, ethertype) = match link {
        Link::Ethernet => ethernet::Frame::new_checked(buf)
            .ok_or(ParseError::Malformed)?
            .payload()
            .ok_or(ParseError::Malformed)?,
        Link::RawIp => (
            0,
            match buf.first().map(|b| b >> 4) {
                Some(4) => ethernet::ETHERTYPE_IPV4,
                Some(6) => ethernet::ETHERTYPE_IPV6,
                _ => return Err(ParseError::NotIp),
            },
        ),
        Link::LinuxSll => {
            let p = buf.get(14..16).ok_or(ParseError::Malformed)?;
            (16, u16::from_be_bytes([p[0], p[1]]))
        }
        Link::LinuxSll2 => {
            let p = buf.get(0..2).ok_or(ParseError::Malformed)?;
            (20, u16::from_be_bytes([p[0], p[1]]))
        }
    };
    let ip = buf.get(l3..).ok_or(ParseError::Malformed)?;
    match ethertype {
        ethernet::ETHERTYPE_IPV4 => {
            let p = ipv4::Packet::new_checked(ip).ok_or(ParseError::Malformed)?;
            let hl = p.header_len();
            let fragment = p.is_fragment().then(|| FragmentInfo {
                ident: u32::from(p.ident()),
                offset: p.frag_offset(),
                more: p.more_fragments(),
                data: l3 + hl,
                protocol: p.protocol(),
            });
            Ok(Layout {
                l3,
                ipv6: false,
                ip_end: l3 + p.total_len(),
                protocol: p.protocol(),
                l4: l3 + hl,
                fragment,
                src: IpAddr::V4(p.src()),
                dst: IpAddr::V4(p.dst()),
            })
        }
        ethernet::ETHERTYPE_IPV6 => {
            let p = ipv6::Packet::new_checked(ip).ok_or(ParseError::Malformed)?;
            let up = p.upper().ok_or(ParseError::Malformed)?;
            let fragment = up.fragment.map(|f| FragmentInfo {
                ident: f.ident,
                offset: f.offset,
                more: f.more,
                data: l3 + up.offset,
                protocol: f.next_header,
            });
            Ok(Layout {
                l3,
                ipv6: true,
                ip_end: l3 + p.total_len(),
                protocol: up.protocol,
                l4: l3 + up.offset,
                fragment,
                src: IpAddr::V6(p.src()),
                dst: IpAddr::V6(p.dst()),
            })
        }
        _ => Err(ParseError::NotIp),
    }
}

impl Layout {
    /// A whole (unfragmented) UDP datagram: `(src port, dst port, payload start, payload
    /// length)`.
    pub fn udp(&self, buf: &[u8]) -> Option<(u16, u16, usize, usize)> {
        if self.protocol != udp::PROTOCOL || self.fragment.is_some() {
            return None;
        }
        let d = udp::Datagram::new_checked(buf.get(self.l4..self.ip_end)?)?;
        Some((
            d.src_port(),
            d.dst_port(),
            self.l4 + udp::HEADER_LEN,
            d.len() - udp::HEADER_LEN,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet + IPv4 (ident 0x0102, MF, offset 0) + the first 8 bytes of UDP.
    #[rustfmt::skip]
    const FIRST_FRAGMENT: [u8; 42] = [
        2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00,
        0x45, 0, 0, 28, 0x01, 0x02, 0x20, 0x00, 64, 17, 0, 0, 10, 0, 0, 2, 198, 51, 100, 2,
        0x13, 0xc4, 0x13, 0xc4, 0, 16, 0, 0,
    ];

    #[test]
    fn parses_literal_ipv4_fragment() {
        let l = parse(&FIRST_FRAGMENT, Link::Ethernet).unwrap();
        assert_eq!(
            (l.l3, l.l4, l.ip_end, l.protocol, l.ipv6),
            (14, 34, 42, 17, false)
        );
        assert_eq!(l.src, "10.0.0.2".parse::<IpAddr>().unwrap());
        let f = l.fragment.unwrap();
        assert_eq!(
            (f.ident, f.offset, f.more, f.data, f.protocol),
            (0x0102, 0, true, 34, 17)
        );
        // A fragment is not a whole datagram.
        assert_eq!(l.udp(&FIRST_FRAGMENT), None);
    }

    #[test]
    fn parses_literal_whole_datagram_and_other_links() {
        let mut f = FIRST_FRAGMENT;
        f[20] = 0; // no MF
        f[38..40].copy_from_slice(&[0, 8]); // UDP length: header only
        let l = parse(&f, Link::Ethernet).unwrap();
        assert_eq!(l.udp(&f), Some((5060, 5060, 42, 0)));
        // Raw IP: the same packet without the Ethernet header.
        let raw = parse(&f[14..], Link::RawIp).unwrap();
        assert_eq!((raw.l3, raw.l4, raw.ip_end), (0, 20, 28));
        // Linux cooked v1: 16 bytes, protocol at 14..16.
        let mut sll = vec![0u8; 16];
        sll[14..16].copy_from_slice(&[0x08, 0x00]);
        sll.extend_from_slice(&f[14..]);
        assert_eq!(parse(&sll, Link::LinuxSll).unwrap().l3, 16);
        // ARP is not IP; a truncated header is malformed.
        let mut arp = f;
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(parse(&arp, Link::Ethernet), Err(ParseError::NotIp));
        assert_eq!(parse(&f[..30], Link::Ethernet), Err(ParseError::Malformed));
    }
}
