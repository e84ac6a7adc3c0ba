//! Types shared by sipnat's XDP program (`nat-ebpf`) and userspace (`nat-userspace`).
//!
//! Everything here is `#[repr(C)]` plain data or a constant: the layout of each BPF map's
//! key and value, the config flags and the index of every verdict counter. Both sides
//! compile this one file, so they cannot disagree about a map layout.
//!
//! One program instance is loaded per attached interface (inside, outside), so every map
//! below exists once per interface; the counters are therefore per interface for free.
#![cfg_attr(not(test), no_std)]

/// Map names, as the loader looks them up in the object file. Who writes and who reads
/// each map is in one place: ARCHITECTURE.md, "BPF maps: who writes and reads each".
pub mod maps {
    /// `Array<XdpConfig>`, 1 entry: the steering flags.
    pub const CONFIG: &str = "SIPNAT_CONFIG";
    /// `Array<`[`super::SipPortSet`]`>`, 1 entry: the SIP port set, one bit per UDP port
    /// (see [`super::sip_port_bit`]). An array, not a hash map: the verifier turns its
    /// lookup into a direct load (no helper call, no hashing per packet).
    pub const SIP_PORTS: &str = "SIPNAT_PORTS";
    /// `XskMap` indexed by the RX queue index: the AF_XDP socket that serves the queue.
    pub const XSKS: &str = "SIPNAT_XSKS";
    /// `PerCpuArray<u64>` with [`super::stat::COUNT`] entries: one counter per verdict and
    /// reason.
    pub const STATS: &str = "SIPNAT_STATS";
    /// `HashMap<MediaKey, MediaNat>` with at most [`super::MAX_MEDIA_BINDINGS`] entries: the
    /// RTP/RTCP bindings this interface translates in XDP (media NAT).
    ///
    /// - On the **inside** interface the key is the internal (address, port) a packet comes
    ///   *from*; the value is the external (address, port) it must leave *from* (source
    ///   translation).
    /// - On the **outside** interface the key is the external (address, port) a packet is
    ///   sent *to*; the value is the internal (address, port) it is delivered *to*
    ///   (destination translation).
    ///
    /// Userspace inserts and removes entries (one binding = one entry in each of the two
    /// interfaces' maps); XDP only reads them and stamps [`super::MediaNat::last_seen_ns`]
    /// and [`super::MediaNat::packets`].
    pub const MEDIA: &str = "SIPNAT_MEDIA";
    /// `DevMapHash` keyed by ifindex: the interfaces translated media may be redirected to
    /// (the other sipnat interface). A next hop on any other interface gets `XDP_PASS`
    /// after the translation, so the kernel routes the already translated packet.
    pub const EGRESS: &str = "SIPNAT_EGRESS";
}

/// Size of each interface's media binding map ([`maps::MEDIA`]).
pub const MAX_MEDIA_BINDINGS: u32 = 65536;

/// Address family tags in [`MediaKey::family`] and [`MediaNat::family`].
pub mod family {
    /// IPv4: the address is in the first 4 bytes of `addr`, the other 12 are zero.
    pub const V4: u8 = 4;
    /// IPv6: all 16 bytes of `addr`.
    pub const V6: u8 = 6;
}

/// Key of the media binding map: one transport address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MediaKey {
    /// The address in network byte order (IPv4: first 4 bytes, rest zero).
    pub addr: [u8; 16],
    /// The UDP port in network byte order (as it is in the packet).
    pub port: u16,
    /// [`family::V4`] or [`family::V6`].
    pub family: u8,
    /// Must be zero (hash keys compare every byte).
    pub _pad: u8,
}

/// Value of the media binding map: the transport address to translate to, and what XDP
/// saw of the binding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MediaNat {
    /// The translated address in network byte order (IPv4: first 4 bytes, rest zero).
    pub addr: [u8; 16],
    /// The translated UDP port, network byte order.
    pub port: u16,
    /// [`family::V4`] or [`family::V6`]; always the key's family (no NAT46).
    pub family: u8,
    /// Reserved, zero.
    pub flags: u8,
    /// Reserved, zero.
    pub _pad: u32,
    /// `bpf_ktime_get_coarse_ns()` of the last packet XDP translated with this entry:
    /// CLOCK_MONOTONIC as of the last timer tick (at most one jiffy, 1-10 ms, behind; the
    /// reaper's idle times are seconds); 0 = none yet. Written by XDP, read by the reaper.
    pub last_seen_ns: u64,
    /// Packets XDP translated with this entry (best effort: not atomic across CPUs).
    pub packets: u64,
}

#[cfg(feature = "user")]
// SAFETY: `repr(C)` plain data: 16 + 2 + 1 + 1 = 20 bytes, no padding, valid for any bits.
unsafe impl aya::Pod for MediaKey {}
#[cfg(feature = "user")]
// SAFETY: `repr(C)` plain data: 16 + 2 + 1 + 1 + 4 + 8 + 8 = 40 bytes, no padding.
unsafe impl aya::Pod for MediaNat {}

/// The XDP program's section/function name.
pub const PROGRAM_NAME: &str = "sipnat_steer";

/// Upper bound of the SIP port set (`[interfaces] sip_ports`: 1 to 64 ports).
pub const MAX_SIP_PORTS: u32 = 64;

/// Words of the SIP port bitmap: 65536 ports, 64 per word.
pub const SIP_PORT_WORDS: usize = 1024;

/// The SIP port bitmap (`maps::SIP_PORTS`' one value, 8 KiB).
pub type SipPortSet = [u64; SIP_PORT_WORDS];

/// Where UDP port `port` (host order) is in a [`SipPortSet`]: (word, bit mask).
#[inline(always)]
pub const fn sip_port_bit(port: u16) -> (usize, u64) {
    ((port >> 6) as usize, 1 << (port & 63))
}

/// Size of the XSKMAP: the highest RX queue index sipnat can serve, plus one.
pub const MAX_QUEUES: u32 = 256;

/// Deepest VLAN stack the program walks (802.1ad outer + 802.1Q inner = QinQ).
pub const MAX_VLAN_TAGS: usize = 2;

/// Longest IPv6 extension-header chain the program walks before giving up (→ pass).
pub const MAX_IPV6_EXT_HEADERS: usize = 6;

/// Flags in [`XdpConfig::flags`].
pub mod flags {
    /// sipnat is enabled; when clear every packet gets `XDP_PASS` without being parsed.
    pub const ENABLED: u32 = 1 << 0;
    /// Failure mode when the XSKMAP slot for the queue is empty: set = `XDP_DROP`,
    /// clear = `XDP_PASS` (fail open, the default).
    pub const FAIL_DROP: u32 = 1 << 1;
    /// Steer every UDP fragment (first and later fragments alike, keyed on L3 only) to
    /// the queue's worker for reassembly. When clear, fragments go to the kernel.
    pub const STEER_FRAGMENTS: u32 = 1 << 2;
    /// Look UDP packets that are not steered up in the media binding map and translate
    /// the ones that match (RTP/RTCP NAT in XDP).
    pub const MEDIA_NAT: u32 = 1 << 3;
    /// Which side of the gateway this program instance is on, for the media NAT: set =
    /// the **outside** interface (a binding translates the *destination*), clear = the
    /// **inside** interface (a binding translates the *source*). Set by the loader.
    pub const MEDIA_OUTSIDE: u32 = 1 << 4;
}

/// Value of the single entry of the config map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpConfig {
    /// A combination of [`flags`].
    pub flags: u32,
    /// Reserved, must be zero.
    pub _reserved: u32,
}

#[cfg(feature = "user")]
// SAFETY: plain `repr(C)` data of two u32s, no padding, valid for any bit pattern.
unsafe impl aya::Pod for XdpConfig {}

/// Verdict counters: indices into the stats map, and their stable names.
///
/// Each packet the program sees increments exactly one of these, so their sum is the
/// number of packets the program ran on.
pub mod stat {
    /// Steered: UDP to or from a SIP port, redirected to the queue's AF_XDP socket.
    pub const REDIRECT_SIP: u32 = 0;
    /// Steered: a UDP fragment (IPv4 or IPv6), redirected for reassembly.
    pub const REDIRECT_FRAGMENT: u32 = 1;
    /// Passed: sipnat is disabled (config flag clear).
    pub const PASS_DISABLED: u32 = 2;
    /// Passed: not IPv4/IPv6 (ARP, LLDP, ...).
    pub const PASS_NOT_IP: u32 = 3;
    /// Passed: IP but not UDP (TCP, ICMP, ...), including TCP on SIP ports.
    pub const PASS_NOT_UDP: u32 = 4;
    /// Passed: UDP with neither port in the SIP port set.
    pub const PASS_NOT_SIP_PORT: u32 = 5;
    /// Passed: a UDP fragment while fragment steering is off.
    pub const PASS_FRAGMENT: u32 = 6;
    /// Passed: truncated or malformed header (never read past the end of the frame).
    pub const PASS_MALFORMED: u32 = 7;
    /// Passed: deeper VLAN stack or longer IPv6 extension chain than the program walks.
    pub const PASS_UNPARSED: u32 = 8;
    /// Passed: SIP packet but no AF_XDP socket on this queue, failure mode `pass`.
    pub const PASS_NO_SOCKET: u32 = 9;
    /// Dropped: SIP packet but no AF_XDP socket on this queue, failure mode `drop`.
    pub const DROP_NO_SOCKET: u32 = 10;
    /// Passed: the config map could not be read (cannot happen once loaded).
    pub const PASS_NO_CONFIG: u32 = 11;
    /// Steered: an ICMP/ICMPv6 error (destination unreachable, time exceeded, parameter
    /// problem, packet too big) quoting a UDP datagram to or from a SIP port, redirected
    /// so that it is translated like the flow it is about.
    pub const REDIRECT_ICMP_ERROR: u32 = 12;
    /// Media NAT: UDP matching a media binding, translated (address, port, checksums, TTL)
    /// and redirected to the egress interface the kernel's FIB names (in `SIPNAT_EGRESS`).
    pub const REDIRECT_MEDIA: u32 = 13;
    /// Media NAT: translated, then passed to the kernel, which routes it: the FIB had no
    /// neighbour entry yet, or named an interface not in `SIPNAT_EGRESS`, or the frame was
    /// VLAN-tagged, or the FIB lookup failed otherwise.
    pub const PASS_MEDIA_TRANSLATED: u32 = 14;
    /// Media NAT: a binding matched but the TTL / hop limit is 1 or 0: passed
    /// untranslated, so that the kernel answers with ICMP Time Exceeded.
    pub const PASS_MEDIA_TTL: u32 = 15;
    /// Media NAT: a binding matched but the packet is malformed (IPv4 total length / IPv6
    /// payload length shorter than its headers or longer than the frame; an IPv6 UDP
    /// checksum of 0) or the binding's family is not the packet's: passed untranslated
    /// (the kernel drops a malformed packet).
    pub const PASS_MEDIA_MALFORMED: u32 = 16;
    /// Media NAT: no longer produced (always 0). It counted frames already addressed to
    /// the next hop whose egress left `SIPNAT_EGRESS` before the redirect; the program
    /// now arms the redirect (one devmap lookup) before it rewrites the frame, and a
    /// missing egress leaves it to the kernel (`PASS_MEDIA_TRANSLATED`). Kept: the
    /// counter indices are shared with userspace.
    pub const DROP_MEDIA_NO_EGRESS: u32 = 17;

    /// Number of counters (size of the stats map).
    pub const COUNT: u32 = 18;

    /// Stable names (used in `sipnat stats`, JSON and Prometheus), indexed by counter.
    pub const NAMES: [&str; COUNT as usize] = [
        "redirect_sip",
        "redirect_fragment",
        "pass_disabled",
        "pass_not_ip",
        "pass_not_udp",
        "pass_not_sip_port",
        "pass_fragment",
        "pass_malformed",
        "pass_unparsed",
        "pass_no_socket",
        "drop_no_socket",
        "pass_no_config",
        "redirect_icmp_error",
        "redirect_media",
        "pass_media_translated",
        "pass_media_ttl",
        "pass_media_malformed",
        "drop_media_no_egress",
    ];
}

#[cfg(test)]
mod tests {
    #[test]
    fn counter_names_are_unique_and_complete() {
        let names = super::stat::NAMES;
        for (i, a) in names.iter().enumerate() {
            assert!(!a.is_empty());
            for b in &names[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn media_map_layouts_have_no_padding() {
        assert_eq!(core::mem::size_of::<super::MediaKey>(), 20);
        assert_eq!(core::mem::size_of::<super::MediaNat>(), 40);
    }
}
