//! Crafted Ethernet frames for the XDP verdict tests, built with etherparse.

use etherparse::{
    EtherType, Ethernet2Header, IpFragOffset, IpHeaders, IpNumber, Ipv4Header, Ipv6Extensions,
    Ipv6FragmentHeader, Ipv6Header, Ipv6RawExtHeader, Ipv6RoutingExtensions, PacketBuilder,
    SingleVlanHeader, UdpHeader, VlanId,
};

pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const SRC4: [u8; 4] = [10, 0, 0, 2];
pub const DST4: [u8; 4] = [198, 51, 100, 2];
pub const SRC6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
pub const DST6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// A small but real SIP request as the UDP payload.
pub const SIP: &[u8] = b"OPTIONS sip:bob@198.51.100.2 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK-1\r\n\
From: <sip:alice@10.0.0.2>;tag=1\r\nTo: <sip:bob@198.51.100.2>\r\n\
Call-ID: 1@10.0.0.2\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";

/// The frame the packet builder `$b` (any last step: UDP, TCP, ICMP) makes of `$payload`.
macro_rules! frame {
    ($b:expr, $payload:expr $(,)?) => {{
        let b = $b;
        let payload: &[u8] = $payload;
        let mut v = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut v, payload).expect("build frame");
        v
    }};
}

/// The Ethernet header of every frame: [`SRC_MAC`] to [`DST_MAC`].
fn builder() -> etherparse::PacketBuilderStep<Ethernet2Header> {
    PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
}

pub fn udp4(sport: u16, dport: u16) -> Vec<u8> {
    frame!(builder().ipv4(SRC4, DST4, 64).udp(sport, dport), SIP)
}

pub fn udp6(sport: u16, dport: u16) -> Vec<u8> {
    frame!(builder().ipv6(SRC6, DST6, 64).udp(sport, dport), SIP)
}

pub fn tcp4(sport: u16, dport: u16) -> Vec<u8> {
    frame!(
        builder().ipv4(SRC4, DST4, 64).tcp(sport, dport, 1, 65535),
        SIP
    )
}

pub fn vlan_udp4(vid: u16, sport: u16, dport: u16) -> Vec<u8> {
    frame!(
        builder()
            .single_vlan(VlanId::try_new(vid).unwrap())
            .ipv4(SRC4, DST4, 64)
            .udp(sport, dport),
        SIP,
    )
}

pub fn qinq_udp6(outer: u16, inner: u16, sport: u16, dport: u16) -> Vec<u8> {
    frame!(
        builder()
            .double_vlan(
                VlanId::try_new(outer).unwrap(),
                VlanId::try_new(inner).unwrap(),
            )
            .ipv6(SRC6, DST6, 64)
            .udp(sport, dport),
        SIP,
    )
}

/// Three VLAN tags: deeper than the program walks.
pub fn triple_vlan_udp4(sport: u16, dport: u16) -> Vec<u8> {
    let inner = vlan_udp4(30, sport, dport); // eth(14) + tag(4) + ...
    let mut v = inner[..12].to_vec();
    for vid in [10u16, 20] {
        v.extend_from_slice(&0x8100u16.to_be_bytes());
        v.extend_from_slice(&vid.to_be_bytes());
    }
    v.extend_from_slice(&inner[12..]);
    v
}

pub fn udp4_with_options(sport: u16, dport: u16) -> Vec<u8> {
    let mut ip = Ipv4Header::new(0, 64, IpNumber::UDP, SRC4, DST4).unwrap();
    // Record Route option (type 7, len 11, pointer 4) padded with End-of-List to 12 bytes.
    ip.options = [7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0][..]
        .try_into()
        .unwrap();
    udp_over(IpHeaders::Ipv4(ip, Default::default()), sport, dport)
}

/// The SIP datagram over the IP headers `ip`.
fn udp_over(ip: IpHeaders, sport: u16, dport: u16) -> Vec<u8> {
    frame!(builder().ip(ip).udp(sport, dport), SIP)
}

/// IPv6 with hop-by-hop options and destination options before UDP.
pub fn udp6_with_two_ext(sport: u16, dport: u16) -> Vec<u8> {
    let mut exts = hop_by_hop();
    exts.destination_options = Some(ext_hdr(&[1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    udp6_with(exts, sport, dport)
}

/// Extension headers: an 8-byte hop-by-hop options header.
fn hop_by_hop() -> Ipv6Extensions {
    Ipv6Extensions {
        hop_by_hop_options: Some(ext_hdr(&[1, 4, 0, 0, 0, 0])),
        ..Default::default()
    }
}

/// An IPv6 extension header's raw bytes (next header filled in by the builder).
fn ext_hdr(payload: &[u8]) -> Ipv6RawExtHeader {
    Ipv6RawExtHeader::new_raw(IpNumber(0), payload).unwrap()
}

/// IPv6 with the extension headers `exts` before UDP.
fn udp6_with(exts: Ipv6Extensions, sport: u16, dport: u16) -> Vec<u8> {
    udp_over(IpHeaders::Ipv6(ipv6_hdr(), exts), sport, dport)
}

/// IPv6 with hop-by-hop, routing and a final destination-options header before UDP.
pub fn udp6_with_three_ext(sport: u16, dport: u16) -> Vec<u8> {
    let mut exts = hop_by_hop();
    exts.routing = Some(Ipv6RoutingExtensions {
        // Type 4-like segment routing stub with segments left 0: 6 bytes payload.
        routing: ext_hdr(&[4, 0, 0, 0, 0, 0]),
        final_destination_options: Some(ext_hdr(&[1, 4, 0, 0, 0, 0])),
    });
    udp6_with(exts, sport, dport)
}

/// IPv6 with an extension chain longer than the program walks (7 destination options).
pub fn udp6_with_long_chain(sport: u16, dport: u16) -> Vec<u8> {
    let base = udp6(sport, dport);
    let (eth_ip, l4) = base.split_at(14 + 40);
    let mut v = eth_ip.to_vec();
    v[14 + 6] = 60; // first next header: destination options
    let n = 7;
    for i in 0..n {
        let next = if i == n - 1 { 17 } else { 60 };
        v.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
    }
    v.extend_from_slice(l4);
    let plen = (v.len() - 14 - 40) as u16;
    v[14 + 4..14 + 6].copy_from_slice(&plen.to_be_bytes());
    v
}

fn ipv6_hdr() -> Ipv6Header {
    Ipv6Header {
        traffic_class: 0,
        flow_label: Default::default(),
        payload_length: 0,
        next_header: IpNumber::UDP,
        hop_limit: 64,
        source: SRC6,
        destination: DST6,
    }
}

/// The UDP datagram (header + payload) of a SIP packet, as fragments carry it.
fn udp_datagram(sport: u16, dport: u16, extra: usize) -> Vec<u8> {
    let mut payload = SIP.to_vec();
    payload.resize(SIP.len() + extra, b'x');
    let udp = UdpHeader::with_ipv4_checksum(
        sport,
        dport,
        &Ipv4Header::new(0, 64, IpNumber::UDP, SRC4, DST4).unwrap(),
        &payload,
    )
    .unwrap();
    let mut v = udp.to_bytes().to_vec();
    v.extend_from_slice(&payload);
    v
}

fn eth(ethertype: EtherType) -> Vec<u8> {
    Ethernet2Header {
        source: SRC_MAC,
        destination: DST_MAC,
        ether_type: ethertype,
    }
    .to_bytes()
    .to_vec()
}

/// First, middle and last IPv4 fragment of one SIP datagram (ports only in the first).
pub fn udp4_fragments(sport: u16, dport: u16) -> [Vec<u8>; 3] {
    let dgram = udp_datagram(sport, dport, 64);
    let cut1 = 104; // multiples of 8
    let cut2 = 208;
    let parts = [&dgram[..cut1], &dgram[cut1..cut2], &dgram[cut2..]];
    let offsets = [0, cut1, cut2];
    std::array::from_fn(|i| {
        let mut ip = Ipv4Header::new(parts[i].len() as u16, 64, IpNumber::UDP, SRC4, DST4).unwrap();
        ip.identification = 0x1234;
        ip.more_fragments = i < 2;
        ip.fragment_offset = IpFragOffset::try_new((offsets[i] / 8) as u16).unwrap();
        ip.header_checksum = ip.calc_header_checksum();
        let mut v = eth(EtherType::IPV4);
        ip.write(&mut v).unwrap();
        v.extend_from_slice(parts[i]);
        v
    })
}

/// First and last IPv6 fragment of one SIP datagram.
pub fn udp6_fragments(sport: u16, dport: u16) -> [Vec<u8>; 2] {
    let dgram = udp_datagram(sport, dport, 64);
    let cut = 160;
    let parts = [&dgram[..cut], &dgram[cut..]];
    std::array::from_fn(|i| {
        let frag = Ipv6FragmentHeader::new(
            IpNumber::UDP,
            IpFragOffset::try_new(if i == 0 { 0 } else { (cut / 8) as u16 }).unwrap(),
            i == 0,
            0xabcd,
        );
        ipv6_fragment(frag, parts[i])
    })
}

/// An IPv6 atomic fragment (offset 0, M clear, RFC 6946): a whole datagram.
pub fn udp6_atomic_fragment(sport: u16, dport: u16) -> Vec<u8> {
    let dgram = udp_datagram(sport, dport, 0);
    let frag = Ipv6FragmentHeader::new(IpNumber::UDP, IpFragOffset::ZERO, false, 7);
    ipv6_fragment(frag, &dgram)
}

/// An IPv6 frame: the fragment header `frag`, then `data`.
fn ipv6_fragment(frag: Ipv6FragmentHeader, data: &[u8]) -> Vec<u8> {
    let mut ip = ipv6_hdr();
    ip.next_header = IpNumber::IPV6_FRAGMENTATION_HEADER;
    ip.payload_length = (8 + data.len()) as u16;
    let mut v = eth(EtherType::IPV6);
    ip.write(&mut v).unwrap();
    frag.write(&mut v).unwrap();
    v.extend_from_slice(data);
    v
}

pub fn arp() -> Vec<u8> {
    let mut v = eth(EtherType::ARP);
    v.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    v.extend_from_slice(&SRC_MAC);
    v.extend_from_slice(&SRC4);
    v.extend_from_slice(&[0; 6]);
    v.extend_from_slice(&DST4);
    v
}

/// Header boundaries of a frame: the offsets where each header starts, plus the end of
/// the UDP header. Truncating at (and just after) each must give `pass_malformed`.
pub fn boundaries(frame: &[u8]) -> Vec<usize> {
    use etherparse::{LinkExtHeader, NetHeaders, PacketHeaders};
    let h = PacketHeaders::from_ethernet_slice(frame).expect("parse own frame");
    let mut off = 14;
    let mut b = vec![off];
    for e in &h.link_exts {
        off += match e {
            LinkExtHeader::Vlan(_) => SingleVlanHeader::LEN,
            _ => unreachable!(),
        };
        b.push(off);
    }
    match &h.net {
        Some(NetHeaders::Ipv4(ip, _)) => off += ip.header_len(),
        Some(NetHeaders::Ipv6(_, ext)) => {
            off += 40;
            b.push(off);
            if ext.hop_by_hop_options.is_some()
                || ext.destination_options.is_some()
                || ext.routing.is_some()
            {
                for len in ext_lens(frame, off) {
                    off += len;
                    b.push(off);
                }
            }
        }
        _ => unreachable!(),
    }
    b.push(off);
    b.push(off + 8);
    b.sort_unstable();
    b.dedup();
    b
}

fn ext_lens(frame: &[u8], mut off: usize) -> Vec<usize> {
    let mut next = frame[14 + 6];
    let mut v = Vec::new();
    while next != 17 {
        let len = (usize::from(frame[off + 1]) + 1) * 8;
        next = frame[off];
        v.push(len);
        off += len;
    }
    v
}

/// ICMP "port unreachable" from the carrier quoting `udp4(sport, dport)`'s IP packet.
pub fn icmp4_port_unreachable(sport: u16, dport: u16) -> Vec<u8> {
    use etherparse::{icmpv4::DestUnreachableHeader, Icmpv4Type};
    let quoted = udp4(sport, dport)[14..].to_vec();
    let ty = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port);
    frame!(builder().ipv4(DST4, SRC4, 64).icmpv4(ty), &quoted)
}

/// ICMP echo request (not an error).
pub fn icmp4_echo() -> Vec<u8> {
    use etherparse::{IcmpEchoHeader, Icmpv4Type};
    let ty = Icmpv4Type::EchoRequest(IcmpEchoHeader { id: 1, seq: 1 });
    frame!(builder().ipv4(DST4, SRC4, 64).icmpv4(ty), b"ping")
}

/// ICMPv6 "port unreachable" quoting `udp6(sport, dport)`'s IP packet.
pub fn icmp6_port_unreachable(sport: u16, dport: u16) -> Vec<u8> {
    use etherparse::{icmpv6::DestUnreachableCode, Icmpv6Type};
    let quoted = udp6(sport, dport)[14..].to_vec();
    let ty = Icmpv6Type::DestinationUnreachable(DestUnreachableCode::Port);
    frame!(builder().ipv6(DST6, SRC6, 64).icmpv6(ty), &quoted)
}
