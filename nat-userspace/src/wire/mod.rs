//! Packet views (smoltcp style: a checked constructor, then accessors that cannot go out
//! of bounds) shared by the worker, the offline pcap tool and the load-test verifier.

pub mod checksum;
pub mod emit;
pub mod ethernet;
pub mod ipv4;
pub mod ipv6;
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
