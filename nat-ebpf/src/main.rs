//! sipnat's XDP steering program.
//!
//! Decides, per received frame, whether it goes to the queue's AF_XDP socket (SIP over UDP
//! and UDP fragments), is translated here and forwarded (RTP/RTCP matching a media binding,
//! `media.rs`), or stays on the kernel's path (everything else). It parses headers
//! only as far as needed for that decision and never looks at the SIP payload: all SIP work
//! happens in userspace. Every verdict increments exactly one per-CPU counter
//! (`nat_common::stat`).
//!
//! Safety rules (Katran-style): every header access is bounds-checked against `data_end`
//! first; anything truncated or unexpected is `XDP_PASS` — the kernel then does what it
//! would have done without sipnat.
#![no_std]
#![no_main]

mod media;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, PerCpuArray, XskMap},
    programs::XdpContext,
};
use nat_common::{
    flags, sip_port_bit, stat, SipPortSet, XdpConfig, MAX_IPV6_EXT_HEADERS, MAX_QUEUES,
};

/// The steering flags, read once per packet. (Who writes and reads each map:
/// ARCHITECTURE.md, "BPF maps: who writes and reads each".)
#[map(name = "SIPNAT_CONFIG")]
static CONFIG: Array<XdpConfig> = Array::with_max_entries(1, 0);

/// The SIP port set, one bit per UDP port (host order), read for UDP packets: an array
/// map, whose lookup the verifier inlines (a hash map was two helper calls per packet).
#[map(name = "SIPNAT_PORTS")]
static SIP_PORTS: Array<SipPortSet> = Array::with_max_entries(1, 0);

/// The AF_XDP socket serving each RX queue, for the redirect.
#[map(name = "SIPNAT_XSKS")]
static XSKS: XskMap = XskMap::with_max_entries(MAX_QUEUES, 0);

/// One counter per verdict/reason, incremented here.
#[map(name = "SIPNAT_STATS")]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

pub(crate) const ETH_HDR_LEN: usize = 14;
const VLAN_HDR_LEN: usize = 4;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
pub(crate) const IPV4_MIN_HDR_LEN: usize = 20;
pub(crate) const IPV6_HDR_LEN: usize = 40;
pub(crate) const UDP_HDR_LEN: usize = 8;
pub(crate) const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;
const ICMP_HDR_LEN: usize = 8;
const IPV6_HOPOPTS: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_AH: u8 = 51;
const IPV6_DSTOPTS: u8 = 60;
/// No header offset we compute can legitimately exceed this; bounding offsets with it also
/// gives the verifier a known range for variable packet offsets.
const MAX_L4_OFFSET: usize = 512;

/// Why a frame was not steered. Each maps to one counter.
#[derive(Clone, Copy)]
enum Pass {
    NotIp,
    NotUdp,
    NotSipPort,
    Fragment,
    Malformed,
    Unparsed,
}

impl Pass {
    #[inline(always)]
    fn counter(self) -> u32 {
        match self {
            Pass::NotIp => stat::PASS_NOT_IP,
            Pass::NotUdp => stat::PASS_NOT_UDP,
            Pass::NotSipPort => stat::PASS_NOT_SIP_PORT,
            Pass::Fragment => stat::PASS_FRAGMENT,
            Pass::Malformed => stat::PASS_MALFORMED,
            Pass::Unparsed => stat::PASS_UNPARSED,
        }
    }
}

/// What the classifier wants to steer.
#[derive(Clone, Copy)]
enum Steer {
    Sip,
    Fragment,
    IcmpError,
    /// Not steered, but a candidate for the media NAT: UDP, not a SIP port, with the IP
    /// header at `l3` and the UDP header at `l4` (IPv6: right after the fixed header).
    Media {
        l3: usize,
        l4: usize,
        v6: bool,
    },
}

/// Where the L3 parsers leave off.
#[derive(Clone, Copy)]
enum L4 {
    /// A whole (unfragmented) UDP datagram whose header starts at this offset.
    Udp(usize),
    /// A UDP fragment (first or later).
    UdpFragment,
    /// An ICMP error quoting a UDP datagram to or from a SIP port.
    IcmpError,
}

#[xdp]
pub fn sipnat_steer(ctx: XdpContext) -> u32 {
    let (action, counter) = decide(&ctx);
    count(counter);
    action
}

#[inline(always)]
fn decide(ctx: &XdpContext) -> (u32, u32) {
    let Some(cfg) = CONFIG.get(0) else {
        return (xdp_action::XDP_PASS, stat::PASS_NO_CONFIG);
    };
    let cfg_flags = cfg.flags;
    if cfg_flags & flags::ENABLED == 0 {
        return (xdp_action::XDP_PASS, stat::PASS_DISABLED);
    }
    let steer = match classify(ctx, cfg_flags) {
        Ok(Steer::Media { l3, l4, v6 }) => {
            let hit = if v6 {
                media::nat6(ctx, cfg_flags, l3, l4)
            } else {
                media::nat4(ctx, cfg_flags, l3, l4)
            };
            return hit.unwrap_or((xdp_action::XDP_PASS, stat::PASS_NOT_SIP_PORT));
        }
        Ok(s) => s,
        Err(p) => return (xdp_action::XDP_PASS, p.counter()),
    };
    let fallback = if cfg_flags & flags::FAIL_DROP != 0 {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    };
    match XSKS.redirect(ctx.rx_queue_index(), u64::from(fallback)) {
        Ok(action) if action == xdp_action::XDP_REDIRECT => match steer {
            Steer::Sip => (action, stat::REDIRECT_SIP),
            Steer::Fragment => (action, stat::REDIRECT_FRAGMENT),
            Steer::IcmpError => (action, stat::REDIRECT_ICMP_ERROR),
            Steer::Media { .. } => (xdp_action::XDP_PASS, stat::PASS_NOT_SIP_PORT),
        },
        // No socket on this queue: the helper returned the fallback.
        _ if fallback == xdp_action::XDP_DROP => (xdp_action::XDP_DROP, stat::DROP_NO_SOCKET),
        _ => (xdp_action::XDP_PASS, stat::PASS_NO_SOCKET),
    }
}

#[inline(always)]
fn count(counter: u32) {
    if let Some(c) = STATS.get_ptr_mut(counter) {
        // SAFETY: per-CPU slot, only this CPU's program writes it (no preemption in XDP).
        unsafe { *c += 1 };
    }
}

/// Bounds-checked read of the first `N` bytes of a `need`-byte header at `off`; `None`
/// when the frame is shorter than `off + need` (or `N > need`).
#[inline(always)]
fn header<const N: usize>(ctx: &XdpContext, off: usize, need: usize) -> Option<[u8; N]> {
    let start = ctx.data();
    let end = ctx.data_end();
    if N > need || off > MAX_L4_OFFSET + ETH_HDR_LEN + 2 * VLAN_HDR_LEN {
        return None;
    }
    let p = start + off;
    if p + need > end {
        return None;
    }
    // SAFETY: [p, p+N) ⊆ [p, p+need) ⊆ [data, data_end), checked above.
    Some(unsafe { core::ptr::read_unaligned(p as *const [u8; N]) })
}

/// Bounds-checked write of `N` bytes at `off`; `None` (nothing written) when the frame is
/// shorter than `off + N`.
#[inline(always)]
pub(crate) fn store<const N: usize>(ctx: &XdpContext, off: usize, v: [u8; N]) -> Option<()> {
    let start = ctx.data();
    let end = ctx.data_end();
    if off > MAX_L4_OFFSET + ETH_HDR_LEN + 2 * VLAN_HDR_LEN {
        return None;
    }
    let p = start + off;
    if p + N > end {
        return None;
    }
    // SAFETY: [p, p+N) ⊆ [data, data_end), checked above.
    unsafe { core::ptr::write_unaligned(p as *mut [u8; N], v) };
    Some(())
}

/// Bounds-checked read of `N` bytes at `off`.
#[inline(always)]
pub(crate) fn bytes<const N: usize>(ctx: &XdpContext, off: usize) -> Option<[u8; N]> {
    header::<N>(ctx, off, N)
}

#[inline(always)]
pub(crate) fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

#[inline(always)]
fn classify(ctx: &XdpContext, cfg_flags: u32) -> Result<Steer, Pass> {
    // Ethernet, then up to two VLAN tags (802.1ad outer, 802.1Q inner).
    let mut ethertype = be16(bytes::<2>(ctx, 12).ok_or(Pass::Malformed)?);
    let mut l3 = ETH_HDR_LEN;
    for _ in 0..nat_common::MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        ethertype = be16(bytes::<2>(ctx, l3 + 2).ok_or(Pass::Malformed)?);
        l3 += VLAN_HDR_LEN;
    }
    let l4 = match ethertype {
        ETH_P_IPV4 => ipv4(ctx, l3)?,
        ETH_P_IPV6 => ipv6(ctx, l3)?,
        ETH_P_8021Q | ETH_P_8021AD => return Err(Pass::Unparsed),
        _ => return Err(Pass::NotIp),
    };
    match l4 {
        L4::Udp(off) => match udp(ctx, off) {
            Err(Pass::NotSipPort)
                if cfg_flags & flags::MEDIA_NAT != 0
                    && (ethertype == ETH_P_IPV4
                        || (ethertype == ETH_P_IPV6 && off == l3 + IPV6_HDR_LEN)) =>
            {
                Ok(Steer::Media {
                    l3,
                    l4: off,
                    v6: ethertype == ETH_P_IPV6,
                })
            }
            r => r,
        },
        L4::IcmpError => Ok(Steer::IcmpError),
        L4::UdpFragment if cfg_flags & flags::STEER_FRAGMENTS != 0 => Ok(Steer::Fragment),
        L4::UdpFragment => Err(Pass::Fragment),
    }
}

#[inline(always)]
fn ipv4(ctx: &XdpContext, l3: usize) -> Result<L4, Pass> {
    let h = bytes::<IPV4_MIN_HDR_LEN>(ctx, l3).ok_or(Pass::Malformed)?;
    let ihl = usize::from(h[0] & 0x0f) * 4;
    if h[0] >> 4 != 4 || ihl < IPV4_MIN_HDR_LEN {
        return Err(Pass::Malformed);
    }
    let frag = be16([h[6], h[7]]);
    if h[9] == IPPROTO_ICMP && frag & 0x3fff == 0 {
        return icmp4(ctx, l3 + ihl);
    }
    if h[9] != IPPROTO_UDP {
        return Err(Pass::NotUdp);
    }
    let more_fragments = frag & 0x2000 != 0;
    let offset = frag & 0x1fff;
    if more_fragments || offset != 0 {
        // First and later fragments alike: the decision uses L3 only, so every fragment of
        // a datagram takes the same path (the NIC's RSS hashes fragments on addresses).
        return Ok(L4::UdpFragment);
    }
    Ok(L4::Udp(l3 + ihl))
}

#[inline(always)]
fn ipv6(ctx: &XdpContext, l3: usize) -> Result<L4, Pass> {
    let h = bytes::<IPV6_HDR_LEN>(ctx, l3).ok_or(Pass::Malformed)?;
    if h[0] >> 4 != 6 {
        return Err(Pass::Malformed);
    }
    let mut next = h[6];
    let mut off = l3 + IPV6_HDR_LEN;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        if next == IPPROTO_UDP {
            return Ok(L4::Udp(off));
        }
        if next == IPPROTO_ICMPV6 {
            return icmp6(ctx, off);
        }
        if !matches!(
            next,
            IPV6_HOPOPTS | IPV6_ROUTING | IPV6_DSTOPTS | IPV6_AH | IPV6_FRAGMENT
        ) {
            return Err(Pass::NotUdp);
        }
        // Every extension header starts with (next header, length); the fragment header
        // carries offset and M flag in bytes 2..4. One 4-byte read serves all of them.
        let e = bytes::<4>(ctx, off).ok_or(Pass::Malformed)?;
        let len = match next {
            IPV6_FRAGMENT => {
                // Offset 0 with M clear is an atomic fragment (RFC 6946): a whole datagram.
                if be16([e[2], e[3]]) & 0xfff9 != 0 {
                    // The fragment header's next header names the fragmentable part's
                    // first header, in the first and the later fragments alike.
                    return if e[0] == IPPROTO_UDP {
                        Ok(L4::UdpFragment)
                    } else {
                        Err(Pass::NotUdp)
                    };
                }
                8
            }
            IPV6_AH => (usize::from(e[1]) + 2) * 4,
            _ => (usize::from(e[1]) + 1) * 8,
        };
        next = e[0];
        off += len;
        if off > MAX_L4_OFFSET {
            return Err(Pass::Unparsed);
        }
    }
    if next == IPPROTO_UDP {
        return Ok(L4::Udp(off));
    }
    Err(Pass::Unparsed)
}

/// An ICMP error (destination unreachable, time exceeded, parameter problem) whose quote
/// is an IPv4 UDP datagram to or from a SIP port; anything else ICMP is "not UDP".
#[inline(always)]
fn icmp4(ctx: &XdpContext, l4: usize) -> Result<L4, Pass> {
    if l4 > MAX_L4_OFFSET {
        return Err(Pass::Unparsed);
    }
    // The whole 8-byte ICMP header must be there; the type is read.
    let t = header::<4>(ctx, l4, ICMP_HDR_LEN).ok_or(Pass::Malformed)?;
    if !matches!(t[0], 3 | 11 | 12) {
        return Err(Pass::NotUdp);
    }
    let q = l4 + ICMP_HDR_LEN;
    let h = bytes::<IPV4_MIN_HDR_LEN>(ctx, q).ok_or(Pass::NotUdp)?;
    let ihl = usize::from(h[0] & 0x0f) * 4;
    if h[0] >> 4 != 4 || ihl < IPV4_MIN_HDR_LEN || h[9] != IPPROTO_UDP {
        return Err(Pass::NotUdp);
    }
    quoted_ports(ctx, q + ihl)
}

/// An ICMPv6 error (types 1-4) whose quote is an IPv6 UDP datagram (no extension
/// headers) to or from a SIP port.
#[inline(always)]
fn icmp6(ctx: &XdpContext, l4: usize) -> Result<L4, Pass> {
    if l4 > MAX_L4_OFFSET {
        return Err(Pass::Unparsed);
    }
    let t = header::<4>(ctx, l4, ICMP_HDR_LEN).ok_or(Pass::Malformed)?;
    if !matches!(t[0], 1..=4) {
        return Err(Pass::NotUdp);
    }
    let q = l4 + ICMP_HDR_LEN;
    let h = bytes::<8>(ctx, q).ok_or(Pass::NotUdp)?;
    if h[0] >> 4 != 6 || h[6] != IPPROTO_UDP {
        return Err(Pass::NotUdp);
    }
    quoted_ports(ctx, q + IPV6_HDR_LEN)
}

#[inline(always)]
fn quoted_ports(ctx: &XdpContext, off: usize) -> Result<L4, Pass> {
    if off > MAX_L4_OFFSET {
        return Err(Pass::Unparsed);
    }
    // The quote holds at least the UDP header's first 8 bytes (RFC 792); ports suffice.
    let u = bytes::<4>(ctx, off).ok_or(Pass::NotUdp)?;
    if sip_ports(be16([u[0], u[1]]), be16([u[2], u[3]])) {
        Ok(L4::IcmpError)
    } else {
        Err(Pass::NotUdp)
    }
}

#[inline(always)]
fn udp(ctx: &XdpContext, l4: usize) -> Result<Steer, Pass> {
    if l4 > MAX_L4_OFFSET {
        return Err(Pass::Unparsed);
    }
    // The whole 8-byte header must be there; only the ports are read.
    let u = header::<4>(ctx, l4, UDP_HDR_LEN).ok_or(Pass::Malformed)?;
    let src = be16([u[0], u[1]]);
    let dst = be16([u[2], u[3]]);
    if sip_ports(src, dst) {
        Ok(Steer::Sip)
    } else {
        Err(Pass::NotSipPort)
    }
}

/// Whether the source or the destination port is in the SIP port set: loads from the
/// bitmap (the verifier inlines the array lookup; no helper call, no hashing).
#[inline(always)]
fn sip_ports(src: u16, dst: u16) -> bool {
    let Some(set) = SIP_PORTS.get(0) else {
        return false;
    };
    in_set(set, dst) || in_set(set, src)
}

#[inline(always)]
fn in_set(set: &SipPortSet, port: u16) -> bool {
    let (word, bit) = sip_port_bit(port);
    set.get(word).is_some_and(|w| w & bit != 0)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
