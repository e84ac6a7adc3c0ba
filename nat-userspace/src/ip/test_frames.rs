//! UDP-over-Ethernet frames for the reassembly and fragmentation tests.

use etherparse::{IpHeaders, IpNumber, Ipv4Header, Ipv6Header, PacketBuilder};

/// `prefix`, then letters, cut to `n` bytes.
pub(crate) fn payload(prefix: &[u8], n: usize) -> Vec<u8> {
    let mut p = prefix.to_vec();
    let mut i = 0u32;
    while p.len() < n {
        p.push(b'a' + (i % 26) as u8);
        i += 1;
    }
    p.truncate(n);
    p
}

fn frame(ip: IpHeaders, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ip(ip)
        .udp(5060, 5060);
    let mut v = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut v, payload).unwrap();
    v
}

/// 192.0.2.1:5060 -> 198.51.100.2:5060 with IP identification `ident`.
pub(crate) fn udp_v4(payload: &[u8], ident: u16, df: bool) -> Vec<u8> {
    let mut h = Ipv4Header::new(0, 64, IpNumber::UDP, [192, 0, 2, 1], [198, 51, 100, 2]).unwrap();
    h.identification = ident;
    h.dont_fragment = df;
    frame(IpHeaders::Ipv4(h, Default::default()), payload)
}

/// [2001:db8::1]:5060 -> [2001:db8::`last`]:5060.
pub(crate) fn udp_v6(payload: &[u8], last: u8) -> Vec<u8> {
    let h = Ipv6Header {
        hop_limit: 64,
        source: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        destination: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last],
        ..Default::default()
    };
    frame(IpHeaders::Ipv6(h, Default::default()), payload)
}

/// A small deterministic random generator (xorshift64).
pub(crate) struct XorShift(pub(crate) u64);

impl XorShift {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Below `n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub(crate) fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}
