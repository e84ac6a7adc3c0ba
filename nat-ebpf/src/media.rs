//! RTP/RTCP NAT in XDP: a UDP packet that is not steered to a worker and matches a media
//! binding (`SIPNAT_MEDIA`, written by userspace from the SDP it rewrites) is translated
//! here — address and port, incremental checksums (RFC 1624), TTL — and redirected to the
//! egress interface the kernel's FIB names, with no userspace hop and no conntrack.
//!
//! The inside program translates the **source** (key = where the packet comes from), the
//! outside program the **destination** (key = where it goes); the loader says which side
//! with `flags::MEDIA_OUTSIDE`. IPv4, and IPv6 whose UDP header follows the fixed header
//! (with extension headers the packet is not looked up: `pass_not_sip_port`, as before).
//!
//! Order of the checks, so that a bound packet never leaves untranslated:
//! 1. no binding → the caller's old verdict (`pass_not_sip_port`);
//! 2. malformed (total / payload length; IPv6: UDP checksum 0) or a binding of another
//!    family → pass untranslated (the kernel drops a malformed packet);
//! 3. TTL / hop limit ≤ 1 → pass untranslated: the kernel answers Time Exceeded to the
//!    real sender;
//! 4. translate in place (addresses, port, IPv4 and UDP checksums), stamp the binding;
//! 5. FIB lookup; on success with the egress in `SIPNAT_EGRESS` and an untagged frame:
//!    arm the redirect, decrement the TTL, write the MACs, `XDP_REDIRECT`. Anything else:
//!    `XDP_PASS` of the translated packet (the kernel routes it and decrements the TTL
//!    itself).

use aya_ebpf::{
    bindings::{bpf_fib_lookup as FibParams, xdp_action, BPF_FIB_LKUP_RET_SUCCESS},
    helpers::{bpf_fib_lookup, bpf_ktime_get_coarse_ns},
    macros::map,
    maps::{DevMapHash, HashMap, PerCpuArray},
    programs::XdpContext,
    EbpfContext as _,
};
use nat_common::{family, flags, stat, MediaKey, MediaNat, MAX_MEDIA_BINDINGS, MAX_QUEUES};

use crate::{
    be16, bytes, store, ETH_HDR_LEN, IPPROTO_UDP, IPV4_MIN_HDR_LEN, IPV6_HDR_LEN, UDP_HDR_LEN,
};

/// The media bindings of this interface (userspace writes, XDP reads and stamps).
#[map(name = "SIPNAT_MEDIA")]
static MEDIA: HashMap<MediaKey, MediaNat> = HashMap::with_max_entries(MAX_MEDIA_BINDINGS, 0);

/// The interfaces translated media may be redirected to, keyed by ifindex.
#[map(name = "SIPNAT_EGRESS")]
static EGRESS: DevMapHash = DevMapHash::with_max_entries(MAX_QUEUES, 0);

/// Scratch space for the FIB lookup's 64-byte parameter block: the BPF stack (512 bytes
/// for the whole call chain) is too small to hold it next to the parsers' state.
#[map(name = "SIPNAT_FIB")]
static FIB: PerCpuArray<FibParams> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's FIB parameter block, as the previous lookup left it: not zeroed (that was a
/// 64-byte `memset` subprogram call per packet). `nat4` and `nat6` write every field
/// `bpf_fib_lookup` reads with flags 0 — family, l4_protocol, sport, dport, tot_len,
/// ifindex, tos (IPv4: the low byte of the tos/flowinfo union is all it reads) or
/// flowinfo, and the addresses; the VLAN/tbid and mark/MAC unions are outputs, read only
/// with the TBID or MARK flags. A new flag must write its inputs too.
#[inline(always)]
fn fib_params() -> Option<&'static mut FibParams> {
    let p = FIB.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot of a per-CPU array, used by one program run at a time (XDP
    // is not preempted); any bit pattern is a valid bpf_fib_lookup (integers and unions).
    Some(unsafe { &mut *p })
}

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// Ones' complement sum folded to 16 bits.
#[inline(always)]
fn fold(mut s: u32) -> u16 {
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// RFC 1624 eqn. 3: the checksum `hc` after the 16-bit words `old` became `new`
/// (`HC' = ~(~HC + ~m + m')`). `N` ≤ 9 words: the sum cannot overflow 32 bits.
#[inline(always)]
fn csum_update<const N: usize>(hc: u16, old: [u16; N], new: [u16; N]) -> u16 {
    let mut s = u32::from(!hc);
    let mut i = 0;
    while i < N {
        s += u32::from(!old[i]) + u32::from(new[i]);
        i += 1;
    }
    !fold(s)
}

#[inline(always)]
fn words(a: [u8; 4], port: [u8; 2]) -> [u16; 3] {
    [be16([a[0], a[1]]), be16([a[2], a[3]]), be16(port)]
}

/// The end of the translation both families share: the UDP port at `l4 + p_off` and the
/// UDP checksum written, the binding `v` stamped (last seen, packets).
#[inline(always)]
fn finish_udp(
    ctx: &XdpContext,
    v: *mut MediaNat,
    l4: usize,
    p_off: usize,
    port: [u8; 2],
    udp_csum: u16,
) -> Option<()> {
    store(ctx, l4 + p_off, port)?;
    store(ctx, l4 + 6, udp_csum.to_be_bytes())?;
    // SAFETY: the map value the lookup returned; best-effort stamps (a racing CPU may lose
    // an increment). The coarse clock: CLOCK_MONOTONIC as of the last tick, read without
    // the TSC (the per-packet clock read was 4 % of the gateway's time in a profile).
    unsafe {
        (*v).last_seen_ns = bpf_ktime_get_coarse_ns();
        (*v).packets += 1;
    }
    Some(())
}

/// The FIB lookup of `p` (the caller wrote its inputs) and, when it succeeds towards an
/// interface of `SIPNAT_EGRESS`, the redirect there armed: true if the frame is to be
/// redirected (the caller then rewrites the TTL and MACs and returns `XDP_REDIRECT`).
/// One devmap lookup: `bpf_redirect_map` with `XDP_PASS` as the miss action checks the
/// egress and arms the redirect at once (it takes effect only if the program returns
/// `XDP_REDIRECT`, so nothing is rewritten before it is known to succeed).
#[inline(always)]
fn fib_redirect(ctx: &XdpContext, p: &mut FibParams) -> bool {
    // SAFETY: the helper reads and writes `p` (its size passed), reads the context.
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.as_ptr(),
            p as *mut FibParams,
            core::mem::size_of::<FibParams>() as i32,
            0,
        )
    };
    rc == i64::from(BPF_FIB_LKUP_RET_SUCCESS)
        && EGRESS
            .redirect(p.ifindex, u64::from(xdp_action::XDP_PASS))
            .is_ok()
}

/// Media NAT of the IPv4 UDP datagram whose IP header is at `l3` and UDP header at `l4`.
/// Returns `None` when no binding matches (the caller keeps its verdict), else the
/// action and its counter.
// Not inlined: a BPF subprogram with its own stack frame (see nat6).
#[inline(never)]
pub fn nat4(ctx: &XdpContext, cfg_flags: u32, l3: usize, l4: usize) -> Option<(u32, u32)> {
    let ip = bytes::<IPV4_MIN_HDR_LEN>(ctx, l3)?;
    let udp = bytes::<UDP_HDR_LEN>(ctx, l4)?;
    let outside = cfg_flags & flags::MEDIA_OUTSIDE != 0;
    // Inside: the source is translated; outside: the destination.
    let (a_off, p_off) = if outside { (16, 2) } else { (12, 0) };
    let old_addr = [ip[a_off], ip[a_off + 1], ip[a_off + 2], ip[a_off + 3]];
    let old_port = [udp[p_off], udp[p_off + 1]];
    let key = MediaKey {
        addr: [
            old_addr[0],
            old_addr[1],
            old_addr[2],
            old_addr[3],
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ],
        port: u16::from_ne_bytes(old_port),
        family: family::V4,
        _pad: 0,
    };
    let v = MEDIA.get_ptr_mut(&key)?;
    // SAFETY: a pointer into the map value the helper returned; read by value.
    let (new_addr, new_port, fam) = unsafe {
        let n = &*v;
        (
            [n.addr[0], n.addr[1], n.addr[2], n.addr[3]],
            n.port.to_ne_bytes(),
            n.family,
        )
    };
    let pass = xdp_action::XDP_PASS;
    let tot_len = usize::from(be16([ip[2], ip[3]]));
    let frame_len = ctx.data_end() - ctx.data();
    if fam != family::V4 || tot_len < (l4 - l3) + UDP_HDR_LEN || l3 + tot_len > frame_len {
        return Some((pass, stat::PASS_MEDIA_MALFORMED));
    }
    let ttl = ip[8];
    if ttl <= 1 {
        return Some((pass, stat::PASS_MEDIA_TTL));
    }

    // Translate: address and IPv4 header checksum, port and UDP checksum (0 = none: stays).
    let old_w = words(old_addr, old_port);
    let new_w = words(new_addr, new_port);
    let ip_csum = csum_update(
        be16([ip[10], ip[11]]),
        [old_w[0], old_w[1]],
        [new_w[0], new_w[1]],
    );
    let udp_csum = be16([udp[6], udp[7]]);
    let udp_csum = if udp_csum == 0 {
        0
    } else {
        match csum_update(udp_csum, old_w, new_w) {
            0 => 0xffff,
            c => c,
        }
    };
    store(ctx, l3 + a_off, new_addr)?;
    store(ctx, l3 + 10, ip_csum.to_be_bytes())?;
    finish_udp(ctx, v, l4, p_off, new_port, udp_csum)?;

    // Where to: the kernel's FIB (egress interface, MACs). A tagged frame is left to the
    // kernel (its VLAN device is the real ingress and the egress may need another tag).
    let translated = Some((pass, stat::PASS_MEDIA_TRANSLATED));
    if l3 != ETH_HDR_LEN {
        return translated;
    }
    let (src, dst) = if outside {
        ([ip[12], ip[13], ip[14], ip[15]], new_addr)
    } else {
        (new_addr, [ip[16], ip[17], ip[18], ip[19]])
    };
    let (sport, dport) = if outside {
        ([udp[0], udp[1]], new_port)
    } else {
        (new_port, [udp[2], udp[3]])
    };
    let Some(p) = fib_params() else {
        return translated;
    };
    p.family = AF_INET;
    p.l4_protocol = IPPROTO_UDP;
    p.sport = u16::from_ne_bytes(sport);
    p.dport = u16::from_ne_bytes(dport);
    p.__bindgen_anon_1.tot_len = tot_len as u16;
    p.ifindex = ctx.ingress_ifindex() as u32;
    p.__bindgen_anon_2.tos = ip[1];
    p.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(src);
    p.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(dst);
    if !fib_redirect(ctx, p) {
        return translated;
    }
    // Forwarding ourselves: TTL - 1 (RFC 1624 on the TTL/protocol word), MACs.
    let ip_csum = csum_update(
        ip_csum,
        [u16::from_be_bytes([ttl, ip[9]])],
        [u16::from_be_bytes([ttl - 1, ip[9]])],
    );
    store(ctx, l3 + 8, [ttl - 1])?;
    store(ctx, l3 + 10, ip_csum.to_be_bytes())?;
    store(ctx, 0, p.dmac)?;
    store(ctx, 6, p.smac)?;
    Some((xdp_action::XDP_REDIRECT, stat::REDIRECT_MEDIA))
}

/// Ones' complement sum of `!old` and `new`, both 16-byte IPv6 addresses, word by word
/// (the address part of an RFC 1624 update).
#[inline(always)]
fn sum6(old: &[u8; 16], new: &[u8; 16]) -> u32 {
    let mut s = 0u32;
    let mut i = 0;
    while i < 16 {
        s += u32::from(!be16([old[i], old[i + 1]])) + u32::from(be16([new[i], new[i + 1]]));
        i += 2;
    }
    s
}

#[inline(always)]
fn u32x4(a: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([a[0], a[1], a[2], a[3]]),
        u32::from_ne_bytes([a[4], a[5], a[6], a[7]]),
        u32::from_ne_bytes([a[8], a[9], a[10], a[11]]),
        u32::from_ne_bytes([a[12], a[13], a[14], a[15]]),
    ]
}

/// Media NAT of the IPv6 UDP datagram whose fixed header is at `l3` and UDP header right
/// after it at `l4`; as [`nat4`] (no IP header checksum; the hop limit instead of the TTL;
/// a UDP checksum of 0 is invalid in IPv6: passed untranslated).
// Not inlined: a BPF subprogram with its own stack frame (the IPv4 and IPv6 paths
// inlined together exceed the 512-byte stack).
#[inline(never)]
pub fn nat6(ctx: &XdpContext, cfg_flags: u32, l3: usize, l4: usize) -> Option<(u32, u32)> {
    // Version/class/flow (4), payload length (2), next header, hop limit.
    let h = bytes::<8>(ctx, l3)?;
    let udp = bytes::<UDP_HDR_LEN>(ctx, l4)?;
    let outside = cfg_flags & flags::MEDIA_OUTSIDE != 0;
    let (a_off, p_off) = if outside { (24, 2) } else { (8, 0) };
    let key = MediaKey {
        addr: bytes::<16>(ctx, l3 + a_off)?,
        port: u16::from_ne_bytes([udp[p_off], udp[p_off + 1]]),
        family: family::V6,
        _pad: 0,
    };
    let v = MEDIA.get_ptr_mut(&key)?;
    // SAFETY: a pointer into the map value the helper returned; read by value.
    let (new_addr, new_port, fam) = unsafe {
        let n = &*v;
        (n.addr, n.port.to_ne_bytes(), n.family)
    };
    let pass = xdp_action::XDP_PASS;
    let payload_len = usize::from(be16([h[4], h[5]]));
    let frame_len = ctx.data_end() - ctx.data();
    let udp_csum = be16([udp[6], udp[7]]);
    if fam != family::V6
        || payload_len < UDP_HDR_LEN
        || l4 + payload_len > frame_len
        || udp_csum == 0
    {
        return Some((pass, stat::PASS_MEDIA_MALFORMED));
    }
    let hops = h[7];
    if hops <= 1 {
        return Some((pass, stat::PASS_MEDIA_TTL));
    }
    let old_port = [udp[p_off], udp[p_off + 1]];
    let s = u32::from(!udp_csum)
        + sum6(&key.addr, &new_addr)
        + u32::from(!be16(old_port))
        + u32::from(be16(new_port));
    let udp_csum = match !fold(s) {
        0 => 0xffff,
        c => c,
    };
    store(ctx, l3 + a_off, new_addr)?;
    finish_udp(ctx, v, l4, p_off, new_port, udp_csum)?;

    let translated = Some((pass, stat::PASS_MEDIA_TRANSLATED));
    if l3 != ETH_HDR_LEN {
        return translated;
    }
    let Some(p) = fib_params() else {
        return translated;
    };
    p.family = AF_INET6;
    p.l4_protocol = IPPROTO_UDP;
    // The translated ports and addresses, as the packet now carries them.
    let ports = bytes::<4>(ctx, l4)?;
    p.sport = u16::from_ne_bytes([ports[0], ports[1]]);
    p.dport = u16::from_ne_bytes([ports[2], ports[3]]);
    p.__bindgen_anon_1.tot_len = (IPV6_HDR_LEN + payload_len) as u16;
    p.ifindex = ctx.ingress_ifindex() as u32;
    // Traffic class and flow label (the first word without the version).
    p.__bindgen_anon_2.flowinfo = u32::from_ne_bytes([h[0] & 0x0f, h[1], h[2], h[3]]);
    p.__bindgen_anon_3.ipv6_src = u32x4(&bytes::<16>(ctx, l3 + 8)?);
    p.__bindgen_anon_4.ipv6_dst = u32x4(&bytes::<16>(ctx, l3 + 24)?);
    if !fib_redirect(ctx, p) {
        return translated;
    }
    store(ctx, l3 + 7, [hops - 1])?;
    store(ctx, 0, p.dmac)?;
    store(ctx, 6, p.smac)?;
    Some((xdp_action::XDP_REDIRECT, stat::REDIRECT_MEDIA))
}
