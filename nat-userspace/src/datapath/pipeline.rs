//! The per-packet pipeline: the one place that decides what happens to a received frame.
//!
//! Pure: no I/O, no clock read (time is an argument), no allocation, no lock. The worker
//! (AF_XDP rings), the offline tool (`sipnat rewrite --pcap`) and the fuzz targets all
//! call [`Pipeline::process`] with the same reassembler and flow table, so the offline
//! output is what the daemon would send. The caller only carries out the returned
//! [`Action`] (a ring, the kernel slow path, the fragmenter, an ICMP error).
//!
//! Steps, each counted in the caller's [`Batch`]:
//! 1. parse the link and IP layers (`drop_bad_frame`);
//! 2. a fragment goes into the reassembler ([`Action::Consumed`]); the fragment that
//!    completes a datagram continues with the whole datagram in the scratch buffer;
//! 3. not a whole UDP datagram, or on no SIP port (a reassembled datagram the XDP program
//!    steered only for being a fragment): the kernel gets it unchanged;
//! 4. the NAT decision ([`crate::nat::decide`]), with the flow table inbound (then the
//!    NAPT bindings); outbound through a network rule binds the source endpoint to an
//!    external port (NAPT, [`super::bindings`]; none free: dropped) and inserts the flow;
//!    media NAT: the message's dialog and an allocator for its SDP's media ports;
//! 5. the rewrite ([`rewrite_packet`]); a message that outgrows the frame is redone once
//!    in the scratch buffer (the decision is not taken twice);
//! 6. the malformed policy, the leak policy (an outbound message still holding an
//!    internal address is dropped by default), the TTL / hop limit (a router hop);
//! 7. the egress: the next hop's MACs and MTU ([`Egress`]); too big: refragment (a
//!    reassembled datagram, or IPv4 without DF) or an ICMP error to the source.

use core::net::IpAddr;

use arrayvec::ArrayVec;

pub use super::bindings::MediaEnv;
use super::{
    bindings, icmp,
    stats::{Batch, Counter},
    DataplaneSnapshot,
};
use crate::{
    ip::{
        frag,
        reasm::{Added, ReasmLimits, ReasmStats, Reassembler},
    },
    nat::{
        decide,
        decide::Decision,
        flow::{FlowKey, FlowTable, InsertResult},
        napt::NaptTable,
        Direction, L3Action, L3Mode, LeakPolicy, MalformedPolicy,
    },
    rewrite::{
        edits::Edits,
        packet::{rewrite_packet_gated, PacketError},
        Changes, Context, Gate, MediaPorts, Napt, Outcome,
    },
    sip::message::{Malformed, NotSip},
    wire::{self, checksum, ethernet, ipv4, ipv6, Layout, Link},
};

/// Scratch buffer for packets that do not fit a frame (reassembled or grown too much):
/// any IP datagram plus a link header and room to grow.
pub const SCRATCH: usize = 65536 + 4096;

/// The interface a packet arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Inside,
    Outside,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Inside => Side::Outside,
            Side::Outside => Side::Inside,
        }
    }
}

/// Where a packet goes next, as far as the pipeline needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Transmit on the egress interface. `macs` = (destination, source) to write into an
    /// Ethernet header; `None` leaves the link header as it is (offline tool).
    Direct {
        macs: Option<([u8; 6], [u8; 6])>,
        mtu: usize,
    },
    /// The neighbour is not resolved yet: the kernel sends it (and resolves ARP/ND).
    Unresolved { mtu: usize },
    /// The route leaves through another interface: the kernel sends it.
    OtherInterface,
}

/// The egress view the pipeline needs: the route to a destination out of a side.
pub trait Egress {
    fn route(&self, egress: Side, dst: IpAddr) -> Route;
}

/// What the pipeline reads per packet.
pub struct Env<'a, E: Egress> {
    pub dataplane: &'a DataplaneSnapshot,
    pub flows: &'a FlowTable,
    /// NAPT bindings (used when the snapshot has a port range).
    pub napt: &'a NaptTable,
    /// Media bindings learned from SDP (`[media] enabled`); `None`: SDP ports are kept.
    pub media: Option<MediaEnv<'a>>,
    pub egress: &'a E,
    /// Link type of the frames (the worker: Ethernet).
    pub link: Link,
    /// Milliseconds on the caller's clock (reassembly timeouts; flows use seconds).
    pub now_ms: u64,
}

/// Which buffer holds the packet an action refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    /// The frame the packet arrived in.
    Frame,
    /// The pipeline's scratch buffer ([`Pipeline::scratch`]).
    Scratch,
}

/// What the reassembler made of a fragment.
enum Frag {
    /// Complete: its length in the scratch buffer, the largest fragment's IP length.
    Complete(usize, usize),
    Held,
    /// Not ours: the slot holding earlier fragments (if any) and how many.
    Pass(Option<usize>, usize),
}

/// What the caller does with the frame. Every reason is already counted in the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A fragment, kept by the reassembler (or refused, counted there): the frame is free.
    Consumed,
    /// Transmit `[..len]` of `at` on `side` (link header written).
    Tx { at: At, side: Side, len: usize },
    /// Split `[..len]` of `at` into fragments of at most `mtu` bytes of IP packet
    /// ([`frag::fragment`] with `ident`) and transmit them on `side`; `via_kernel`: hand
    /// each fragment to the kernel instead (neighbour not resolved).
    Fragment {
        at: At,
        side: Side,
        l3: usize,
        len: usize,
        mtu: usize,
        ident: u32,
        via_kernel: bool,
    },
    /// Hand the IP packet `[l3..len]` of `at` to the kernel. `split`: a datagram that
    /// arrived fragmented goes back in fragments of at most `mtu` (the kernel refuses a
    /// raw packet larger than the link MTU), identification `ident`.
    Kernel {
        at: At,
        l3: usize,
        len: usize,
        split: Option<(usize, u32)>,
        reason: Counter,
    },
    /// Too big for the egress link and must not be fragmented: send the source an ICMP
    /// "fragmentation needed" / "packet too big" with `mtu`, quoting [`Pipeline::quote`];
    /// the packet is dropped.
    IcmpTooBig { to: IpAddr, mtu: u32 },
    /// Dropped for `reason`.
    Drop(Counter),
    /// A fragment of a datagram that is not ours (no SIP port): the kernel gets the
    /// `held` fragments kept so far ([`Pipeline::held_fragment`]), then this frame's IP
    /// packet `[l3..len]`, all exactly as they arrived.
    PassFragments { held: usize, l3: usize, len: usize },
}

/// One worker's per-packet state: the reassembler, the scratch buffer and the IPv6
/// fragment identification counter.
pub struct Pipeline {
    reasm: Reassembler,
    scratch: Box<[u8]>,
    next_ident: u32,
    reasm_reported: ReasmStats,
    /// The start of the packet an [`Action::IcmpTooBig`] is about, as it arrived.
    quote: ArrayVec<u8, 256>,
    /// The reassembly slot of the last [`Action::PassFragments`].
    passed_slot: usize,
    /// The rewriter's edit list, allocated once at its full capacity.
    edits: Edits,
}

impl Pipeline {
    /// `ident_seed`: distinct per worker so two workers never use an IPv6 fragment
    /// identification together.
    pub fn new(limits: ReasmLimits, ident_seed: u32) -> Pipeline {
        Pipeline {
            reasm: Reassembler::new(limits),
            scratch: vec![0u8; SCRATCH].into_boxed_slice(),
            next_ident: ident_seed,
            reasm_reported: ReasmStats::default(),
            quote: ArrayVec::new(),
            passed_slot: 0,
            edits: Edits::new(),
        }
    }

    pub fn reassembler(&self) -> &Reassembler {
        &self.reasm
    }

    /// What an [`Action::IcmpTooBig`] quotes: the start of the packet as it arrived.
    pub fn quote(&self) -> &[u8] {
        &self.quote
    }

    /// The `k`-th fragment of an [`Action::PassFragments`] as it arrived (link header
    /// included), in the scratch buffer.
    pub fn held_fragment(&mut self, k: usize) -> Option<&[u8]> {
        let n = self
            .reasm
            .held_original(self.passed_slot, k, &mut self.scratch)?;
        Some(&self.scratch[..n])
    }

    /// The scratch buffer (for [`At::Scratch`]).
    pub fn scratch(&self) -> &[u8] {
        &self.scratch
    }

    /// Drops timed-out reassemblies and counts what the reassembler did since last time.
    pub fn expire(&mut self, now_ms: u64, b: &mut Batch) {
        self.reasm.expire(now_ms);
        self.report(b);
    }

    /// Turns the reassembler's monotonic stats into counter increments.
    fn report(&mut self, b: &mut Batch) {
        let s = *self.reasm.stats();
        let p = core::mem::replace(&mut self.reasm_reported, s);
        b.add(Counter::ReasmOverlap, s.overlaps - p.overlaps);
        b.add(Counter::ReasmTimeout, s.timeouts - p.timeouts);
        b.add(Counter::ReasmEvicted, s.evictions - p.evictions);
        b.add(Counter::ReasmTooBig, s.too_big - p.too_big);
        b.add(
            Counter::ReasmTooManyFragments,
            s.too_many_fragments - p.too_many_fragments,
        );
        b.add(Counter::ReasmInconsistent, s.inconsistent - p.inconsistent);
        b.add(Counter::ReasmPoisoned, s.poisoned - p.poisoned);
        b.add(Counter::ReasmNoSlot, s.no_slot - p.no_slot);
        b.add(Counter::ReasmMalformed, s.malformed - p.malformed);
    }

    /// Decides and rewrites one received frame: `frame[..len]` is the packet, the rest of
    /// `frame` is tailroom it may grow into. Returns what to do with it.
    pub fn process<E: Egress>(
        &mut self,
        env: &Env<'_, E>,
        side: Side,
        frame: &mut [u8],
        len: usize,
        b: &mut Batch,
    ) -> Action {
        // The scratch buffer is lent out for the call (an empty box is no allocation).
        let mut scratch = core::mem::take(&mut self.scratch);
        let action = self.frame(env, side, frame, len, &mut scratch, b);
        self.scratch = scratch;
        action
    }

    /// Rewrites the packet in `buf` with the pipeline's edit list.
    fn rewrite(
        &mut self,
        buf: &mut [u8],
        layout: &Layout,
        ctx: &Context<'_>,
        gate: &Gate,
        l3: L3Action,
    ) -> Result<crate::rewrite::packet::PacketRewrite, PacketError> {
        rewrite_packet_gated(buf, layout, ctx, l3, gate, &mut self.edits)
    }

    fn frame<E: Egress>(
        &mut self,
        env: &Env<'_, E>,
        side: Side,
        frame: &mut [u8],
        len: usize,
        scratch: &mut [u8],
        b: &mut Batch,
    ) -> Action {
        let len = len.min(frame.len());
        let Ok(layout) = wire::parse(&frame[..len], env.link) else {
            b.inc(Counter::DropBadFrame);
            return Action::Drop(Counter::DropBadFrame);
        };
        if layout.fragment.is_none() {
            return self.packet(env, side, Some(frame), scratch, layout, None, b);
        }
        b.inc(Counter::FragRx);
        // A datagram on no SIP port is not ours (the XDP program steers every UDP
        // fragment, not knowing its ports): it goes to the kernel as it came.
        let ports = &env.dataplane.sip_ports;
        let ours = |protocol: u8, upper: &[u8]| {
            protocol == crate::wire::udp::PROTOCOL
                && upper.len() >= 4
                && (ports.contains(u16::from_be_bytes([upper[0], upper[1]]))
                    || ports.contains(u16::from_be_bytes([upper[2], upper[3]])))
        };
        let step = match self
            .reasm
            .add_classified(&frame[..len], &layout, env.now_ms, ours)
        {
            Ok(Added::Complete(r)) => {
                // The scratch buffer holds 64 KiB + 4 KiB: any IP datagram fits.
                let bytes = r.bytes();
                let n = bytes.len().min(scratch.len());
                scratch[..n].copy_from_slice(&bytes[..n]);
                Frag::Complete(n, r.max_fragment_len())
            }
            Ok(Added::Pass { slot, held }) => Frag::Pass(Some(slot), held),
            Ok(Added::PassThis) => Frag::Pass(None, 0),
            Ok(Added::Held) | Err(_) => Frag::Held, // counted in the reassembler's stats
        };
        self.report(b);
        let done = match step {
            Frag::Complete(n, max_frag) => Some((n, max_frag)),
            Frag::Held => None,
            Frag::Pass(slot, held) => {
                if let Some(slot) = slot {
                    self.passed_slot = slot;
                }
                b.add(Counter::FragPassed, held as u64 + 1);
                return Action::PassFragments {
                    held,
                    l3: layout.l3,
                    len: layout.ip_end,
                };
            }
        };
        let Some((n, max_frag)) = done else {
            return Action::Consumed;
        };
        b.inc(Counter::ReasmComplete);
        match wire::parse(&scratch[..n], env.link) {
            Ok(layout) => self.packet(env, side, None, scratch, layout, Some(max_frag), b),
            Err(_) => {
                b.inc(Counter::DropBadFrame);
                Action::Drop(Counter::DropBadFrame)
            }
        }
    }

    /// One whole packet: in `frame` (`Some`) or in `scratch` (`None`). `reassembled`: it
    /// arrived fragmented (the largest fragment's IP length).
    #[allow(clippy::too_many_arguments)]
    fn packet<E: Egress>(
        &mut self,
        env: &Env<'_, E>,
        side: Side,
        mut frame: Option<&mut [u8]>,
        scratch: &mut [u8],
        layout: Layout,
        reassembled: Option<usize>,
        b: &mut Batch,
    ) -> Action {
        let mut at = if frame.is_some() {
            At::Frame
        } else {
            At::Scratch
        };
        macro_rules! buf {
            () => {
                match (at, frame.as_deref_mut()) {
                    (At::Frame, Some(f)) => &mut *f,
                    _ => &mut *scratch,
                }
            };
        }
        let ident = self.ident_for(buf!(), &layout);
        // The packet goes to the kernel as it came (a reassembled one in fragments again).
        let kernel = |at: At, reason: Counter, b: &mut Batch| {
            b.inc(reason);
            Action::Kernel {
                at,
                l3: layout.l3,
                len: layout.ip_end,
                split: reassembled.map(|m| (m, ident)),
                reason,
            }
        };
        if layout.fragment.is_none()
            && layout.protocol
                == if layout.ipv6 {
                    icmp::PROTO_ICMPV6
                } else {
                    icmp::PROTO_ICMP
                }
        {
            // An ICMP error about a SIP datagram (the XDP program steers only those).
            return match icmp_error(env, side, buf!(), at, &layout, ident, b) {
                Ok(action) => action,
                Err(reason) => kernel(at, reason, b),
            };
        }
        let Some((sport, dport, _, _)) = layout.udp(buf!()) else {
            return kernel(at, Counter::SlowNotUdp, b);
        };
        let dp = env.dataplane;
        if !dp.sip_ports.contains(sport) && !dp.sip_ports.contains(dport) {
            // Only a reassembled datagram gets here in the daemon (XDP steers whole
            // datagrams by port): it is not ours.
            return kernel(at, Counter::SlowNotSipPort, b);
        }
        let ports = (sport, dport);
        let (direction, l3, internal, napt) = match decide_and_map(env, side, &layout, ports, b) {
            Ok(d) => d,
            Err(Early::Kernel(reason)) => return kernel(at, reason, b),
            Err(Early::Drop(reason)) => return Action::Drop(reason),
        };
        let gate = dp.gate(direction);
        let (dialog, alloc) = bindings::media_alloc(env, direction, buf!(), &layout);
        let ctx = Context {
            config: &dp.config,
            external: dp.external,
            direction,
            internal,
            // Our side's port: outbound the UA's, inbound the external one.
            local_port: Some(if side == Side::Inside { sport } else { dport }),
            napt,
            media: alloc.as_ref().map(|a| a as &dyn MediaPorts),
        };
        let mut r = match self.rewrite(buf!(), &layout, &ctx, gate, l3) {
            Ok(r) => r,
            Err(_) if napt.is_some() => return counted_drop(Counter::DropWouldLeak, b), // no internal port out
            Err(_) => return kernel(at, Counter::SlowNotUdp, b),
        };
        if r.sip == Outcome::TooBig && at == At::Frame {
            // Does not fit the frame (nothing was changed): redo the rewrite, and only
            // the rewrite, in the scratch buffer.
            b.inc(Counter::SipTooBig);
            let n = layout.ip_end;
            if let Some(f) = frame.as_deref() {
                scratch[..n].copy_from_slice(&f[..n]);
            }
            at = At::Scratch;
            r = match self.rewrite(scratch, &layout, &ctx, gate, l3) {
                Ok(r) => r,
                Err(_) => return kernel(at, Counter::SlowNotUdp, b),
            };
        }
        if let Some(drop) = counted_outcome(&r, &dp.config, reassembled.is_some(), b) {
            return drop;
        }
        bindings::after_rewrite(env, &layout, dport, internal, napt, &r, dialog, &alloc, b);
        let buf = buf!();
        if !decrement_ttl(buf, &layout) {
            return counted_drop(Counter::DropTtl, b);
        }
        let action = egress(
            env,
            side.other(),
            buf,
            at,
            r.len,
            &layout,
            reassembled,
            ident,
            b,
        );
        if let Action::IcmpTooBig { .. } = action {
            self.quote = original_quote(buf, &layout);
        }
        action
    }

    /// The identification a refragmented copy of this packet uses: IPv4 keeps its own,
    /// IPv6 gets the next of this worker's.
    fn ident_for(&mut self, buf: &[u8], layout: &Layout) -> u32 {
        if layout.ipv6 {
            self.next_ident = self.next_ident.wrapping_add(1);
            self.next_ident
        } else {
            buf.get(layout.l3..)
                .and_then(ipv4::Packet::new_checked)
                .map_or(0, |p| u32::from(p.ident()))
        }
    }
}

/// Sends the rewritten packet (`buf[..len]`, found at `at`) out of `side`: the next hop's
/// MACs when it fits the link; too big: fragments (a datagram that arrived fragmented, or
/// IPv4 without DF; no larger than the sender's) or an ICMP error to the source.
#[allow(clippy::too_many_arguments)]
fn egress<E: Egress>(
    env: &Env<'_, E>,
    side: Side,
    buf: &mut [u8],
    at: At,
    len: usize,
    layout: &Layout,
    reassembled: Option<usize>,
    ident: u32,
    b: &mut Batch,
) -> Action {
    let dst = dst_of(buf, layout);
    let (macs, mtu, resolved) = match env.egress.route(side, dst) {
        Route::Direct { macs, mtu } => (macs, mtu, true),
        Route::Unresolved { mtu } => (None, mtu, false),
        Route::OtherInterface => {
            b.inc(Counter::SlowOtherInterface);
            return Action::Kernel {
                at,
                l3: layout.l3,
                len,
                split: reassembled.map(|m| (m, ident)),
                reason: Counter::SlowOtherInterface,
            };
        }
    };
    if let (Some((dst_mac, src_mac)), Link::Ethernet) = (macs, env.link) {
        if let Some(mut eth) = ethernet::Frame::new_checked(&mut *buf) {
            eth.set_dst(dst_mac);
            eth.set_src(src_mac);
        }
    }
    let ip_len = len - layout.l3;
    if ip_len <= mtu {
        if !resolved {
            b.inc(Counter::SlowNeighbor);
            return Action::Kernel {
                at,
                l3: layout.l3,
                len,
                split: None,
                reason: Counter::SlowNeighbor,
            };
        }
        return Action::Tx { at, side, len };
    }
    // Too big for the egress link. A packet that arrived whole and has DF (or is IPv6)
    // must not be fragmented by a router: tell the source, as the kernel would.
    if reassembled.is_none() && (layout.ipv6 || frag::ipv4_df(&buf[..len], layout.l3)) {
        let growth = ip_len.saturating_sub(layout.ip_end - layout.l3);
        let fit = mtu.saturating_sub(growth);
        b.inc(if layout.ipv6 {
            Counter::IcmpPacketTooBig
        } else {
            Counter::IcmpFragNeeded
        });
        b.inc(Counter::DropTooBigDf);
        let mtu = if layout.ipv6 {
            fit as u32
        } else {
            fit.min(usize::from(u16::MAX)) as u32
        };
        return Action::IcmpTooBig {
            to: layout.src,
            mtu,
        };
    }
    // Fragment like the sender did (never larger than the egress MTU).
    let mtu = reassembled.map_or(mtu, |m| m.clamp(1280.min(mtu), mtu));
    if !resolved {
        b.inc(Counter::SlowNeighbor);
    }
    Action::Fragment {
        at,
        side,
        l3: layout.l3,
        len,
        mtu,
        ident,
        via_kernel: !resolved,
    }
}

/// The destination address currently in the packet (after the rewrite).
fn dst_of(buf: &[u8], layout: &Layout) -> IpAddr {
    let ip = buf.get(layout.l3..).unwrap_or(&[]);
    if layout.ipv6 {
        ipv6::Packet::new_checked(ip).map_or(layout.dst, |p| IpAddr::V6(p.dst()))
    } else {
        ipv4::Packet::new_checked(ip).map_or(layout.dst, |p| IpAddr::V4(p.dst()))
    }
}

/// The start of the packet (IP header + 8 bytes, IPv4 at most 68 bytes; IPv6 header,
/// extension headers and 8 bytes) as it arrived: original addresses and lengths restored
/// after an in-place rewrite. For ICMP errors about it.
fn original_quote(buf: &[u8], layout: &Layout) -> ArrayVec<u8, 256> {
    let mut q = ArrayVec::new();
    let end = (layout.l4 + 8).min(buf.len());
    let take = end.saturating_sub(layout.l3).min(q.capacity());
    let _ = q.try_extend_from_slice(&buf[layout.l3..layout.l3 + take]);
    let orig_len = layout.ip_end - layout.l3;
    let udp_len = layout.ip_end - layout.l4;
    let ul = layout.l4 - layout.l3;
    match (layout.src, layout.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) if q.len() >= 20 => {
            q[2..4].copy_from_slice(&(orig_len as u16).to_be_bytes());
            q[8] = q[8].saturating_add(1); // the TTL before our hop
            q[12..16].copy_from_slice(&s.octets());
            q[16..20].copy_from_slice(&d.octets());
            if q.len() >= ul + 6 {
                q[ul + 4..ul + 6].copy_from_slice(&(udp_len as u16).to_be_bytes());
            }
            let hl = usize::from(q[0] & 0x0f) * 4;
            if q.len() >= hl {
                q[10..12].copy_from_slice(&[0, 0]);
                let c = checksum::finish(checksum::sum(&q[..hl]));
                q[10..12].copy_from_slice(&c.to_be_bytes());
            }
        }
        (IpAddr::V6(s), IpAddr::V6(d)) if q.len() >= 40 => {
            q[4..6].copy_from_slice(&((orig_len - 40) as u16).to_be_bytes());
            q[7] = q[7].saturating_add(1);
            q[8..24].copy_from_slice(&s.octets());
            q[24..40].copy_from_slice(&d.octets());
            if q.len() >= ul + 6 {
                q[ul + 4..ul + 6].copy_from_slice(&(udp_len as u16).to_be_bytes());
            }
        }
        _ => {}
    }
    q
}

/// Decrements the TTL / hop limit (a router hop); false when it would reach zero.
fn decrement_ttl(buf: &mut [u8], layout: &Layout) -> bool {
    let Some(ip) = buf.get_mut(layout.l3..) else {
        return false;
    };
    if layout.ipv6 {
        ipv6::Packet::new_checked(ip).is_some_and(|mut p| p.decrement_hop_limit())
    } else {
        ipv4::Packet::new_checked(ip).is_some_and(|mut p| p.decrement_ttl())
    }
}

/// Hands each piece of a datagram for the kernel to `send`: the IP packet `packet[l3..]`
/// whole, or split in fragments of at most `mtu` when it arrived fragmented (`split`). The
/// kernel refuses a raw packet larger than the link MTU. Returns the pieces given, or the
/// error.
pub fn kernel_pieces(
    packet: &[u8],
    l3: usize,
    split: Option<(usize, u32)>,
    send: &mut impl FnMut(&[u8]),
) -> Result<usize, frag::FragError> {
    match split {
        Some((mtu, ident)) if packet.len().saturating_sub(l3) > mtu => {
            frag::fragment(packet, l3, mtu, ident, &mut |piece: &[u8]| {
                send(&piece[l3.min(piece.len())..]);
                true
            })
        }
        _ => {
            send(packet.get(l3..).unwrap_or(&[]));
            Ok(1)
        }
    }
}

/// Why a packet leaves the rewrite path before its payload is rewritten.
pub(super) enum Early {
    /// To the kernel as it came, counted under this reason.
    Kernel(Counter),
    /// Dropped (already counted).
    Drop(Counter),
}

/// An ICMP error about a SIP datagram: translated and sent on, dropped, or (`Err`) to the
/// kernel for this reason.
fn icmp_error<E: Egress>(
    env: &Env<'_, E>,
    side: Side,
    buf: &mut [u8],
    at: At,
    layout: &Layout,
    ident: u32,
    b: &mut Batch,
) -> Result<Action, Counter> {
    let dp = env.dataplane;
    let now_s = (env.now_ms / 1000) as u32;
    let inbound = side == Side::Outside;
    match icmp::translate(
        buf,
        layout,
        inbound,
        &dp.config,
        &dp.external,
        env.flows,
        dp.napt.map(|_| env.napt),
        now_s,
    ) {
        Ok(end) => {
            b.inc(Counter::IcmpTranslated);
            if !decrement_ttl(buf, layout) {
                b.inc(Counter::DropTtl);
                return Ok(Action::Drop(Counter::DropTtl));
            }
            Ok(egress(
                env,
                side.other(),
                buf,
                at,
                end,
                layout,
                None,
                ident,
                b,
            ))
        }
        Err(icmp::Untranslated::Kernel) => Err(Counter::SlowIcmpNotOurs),
        Err(icmp::Untranslated::Drop) => {
            b.inc(Counter::DropIcmpUntranslatable);
            Ok(Action::Drop(Counter::DropIcmpUntranslatable))
        }
    }
}

/// The NAT decision for a SIP datagram, with the flow table: looked up inbound, and an
/// outbound flow through a network rule remembered for its replies.
fn decide_and_map<E: Egress>(
    env: &Env<'_, E>,
    side: Side,
    layout: &Layout,
    (sport, dport): (u16, u16),
    b: &mut Batch,
) -> Result<(Direction, L3Action, Option<IpAddr>, Option<Napt>), Early> {
    let dp = env.dataplane;
    let cfg = &dp.config;
    let ext = dp.external;
    let now_s = (env.now_ms / 1000) as u32;
    let mut napt = None;
    let decision = match side {
        Side::Inside => {
            b.inc(Counter::Outbound);
            decide::outbound(cfg, &dp.local_v4, &ext, layout.src, layout.dst)
        }
        Side::Outside => {
            b.inc(Counter::Inbound);
            let flow = if cfg.l3 == L3Mode::Snat
                && dp.network_rules
                && cfg.is_external(layout.dst, &ext)
            {
                let key = FlowKey::new(layout.dst, dport, layout.src, sport);
                let mut hit = env.flows.lookup_port(&key, now_s);
                b.inc(if hit.is_some() {
                    Counter::FlowHit
                } else {
                    Counter::FlowMiss
                });
                if hit.is_none() && dp.napt.is_some() {
                    // Endpoint-independent: a binding takes packets from any remote (a
                    // call from another proxy to a registered phone).
                    hit = env.napt.inbound(layout.dst, dport, now_s);
                    if hit.is_some() {
                        b.inc(Counter::NaptHit);
                    }
                }
                if let Some((internal, port)) = hit.filter(|&(_, p)| p != dport) {
                    napt = Some(Napt {
                        internal,
                        internal_port: port,
                        external_port: dport,
                    });
                }
                hit.map(|(a, _)| a)
            } else {
                None
            };
            decide::inbound(cfg, &ext, layout.dst, flow)
        }
    };
    let (direction, l3, internal) = match decision {
        Decision::Rewrite {
            direction,
            l3,
            internal,
        } => (direction, l3, internal),
        Decision::Internal => return Err(Early::Kernel(Counter::SlowInternal)),
        Decision::NoMapping => return Err(Early::Kernel(Counter::SlowNoMapping)),
    };
    // Outbound through a network rule: remember the mapping for the replies.
    if let (Direction::Outbound, Some(new_src), true) = (direction, l3.src, dp.network_rules) {
        if cfg
            .rule_for(layout.src)
            .is_some_and(|r| r.internal.single_host().is_none())
        {
            let (ext_port, bound) = bindings::napt_bind(env, new_src, layout.src, sport, now_s, b)?;
            napt = bound;
            let key = FlowKey::new(new_src, ext_port, layout.dst, dport);
            match env.flows.insert_port(key, layout.src, sport, now_s) {
                InsertResult::Inserted => b.inc(Counter::FlowInserted),
                InsertResult::Refreshed => b.inc(Counter::FlowRefreshed),
                InsertResult::Collision { .. } => {
                    b.inc(Counter::FlowCollision);
                    if napt.is_some() {
                        // (A stale flow of the port's previous owner.) Never to the
                        // kernel untranslated.
                        b.inc(Counter::DropWouldLeak);
                        return Err(Early::Drop(Counter::DropWouldLeak));
                    }
                    // Another host holds this port towards this remote: without port
                    // translation the datagram could only leave with its internal
                    // source and addresses (the kernel path), so it does not leave.
                    if cfg.leak == LeakPolicy::Drop {
                        b.inc(Counter::DropWouldLeak);
                        return Err(Early::Drop(Counter::DropWouldLeak));
                    }
                    return Err(Early::Kernel(Counter::SlowCollision));
                }
                InsertResult::Evicted => b.inc(Counter::FlowEvicted),
                InsertResult::Full => b.inc(Counter::FlowFull),
            }
        }
    }
    Ok((direction, l3, internal, napt))
}

/// Counts `reason` and drops.
fn counted_drop(reason: Counter, b: &mut Batch) -> Action {
    b.inc(reason);
    Action::Drop(reason)
}

/// Counts what the rewrite found; the drop its outcome calls for under the policies, if
/// any (counted).
fn counted_outcome(
    r: &crate::rewrite::packet::PacketRewrite,
    cfg: &crate::nat::RewriteConfig,
    reassembled: bool,
    b: &mut Batch,
) -> Option<Action> {
    count_sip(b, r.sip, r.family_mismatch, r.content_length_short);
    if r.trailing_discarded > 0 {
        b.inc(Counter::TrailingDiscarded);
    }
    if reassembled && !matches!(r.sip, Outcome::Rewritten(_) | Outcome::Unchanged) {
        b.inc(Counter::ReasmNonSip);
    }
    let drop = if r.sip == Outcome::TooBig {
        // Not even the scratch buffer holds it.
        Counter::DropRefragment
    } else if matches!(r.sip, Outcome::Malformed(_)) && cfg.malformed == MalformedPolicy::Drop {
        Counter::DropMalformedPolicy
    } else if r.would_leak && cfg.leak == LeakPolicy::Drop {
        // An internal address would go out: never forwarded unless chosen.
        Counter::DropWouldLeak
    } else {
        return None;
    };
    b.inc(drop);
    Some(Action::Drop(drop))
}

fn count_sip(b: &mut Batch, o: Outcome, family_mismatch: u16, cl_short: bool) {
    match o {
        Outcome::Rewritten(ch) => {
            b.inc(Counter::SipRewritten);
            count_changes(b, &ch);
        }
        Outcome::Unchanged => b.inc(Counter::SipUnchanged),
        Outcome::NotSip(k) => b.inc(match k {
            NotSip::Empty => Counter::NotSipEmpty,
            NotSip::KeepAlive => Counter::NotSipKeepalive,
            NotSip::Stun => Counter::NotSipStun,
            NotSip::Other => Counter::NotSipOther,
        }),
        Outcome::Malformed(m) => b.inc(match m {
            Malformed::BadStartLine => Counter::MalformedBadStartLine,
            Malformed::BadVersion => Counter::MalformedBadVersion,
            Malformed::BadHeaderLine => Counter::MalformedBadHeaderLine,
            Malformed::BadContentLength => Counter::MalformedBadContentLength,
            Malformed::DuplicateContentLength => Counter::MalformedDuplicateContentLength,
            Malformed::TooManyAddresses => Counter::MalformedTooManyAddresses,
        }),
        Outcome::TooBig => b.inc(Counter::SipTooBig),
    }
    b.add(Counter::FamilyMismatch, u64::from(family_mismatch));
    if cl_short {
        b.inc(Counter::ContentLengthShort);
    }
}

fn count_changes(b: &mut Batch, ch: &Changes) {
    b.add(Counter::RwRequestUri, u64::from(ch.request_uri));
    b.add(Counter::RwVia, u64::from(ch.via));
    b.add(Counter::RwContact, u64::from(ch.contact));
    b.add(Counter::RwRoute, u64::from(ch.route));
    b.add(Counter::RwRecordRoute, u64::from(ch.record_route));
    b.add(Counter::RwFromTo, u64::from(ch.from_to));
    b.add(Counter::RwSdpConnection, u64::from(ch.sdp_connection));
    b.add(Counter::RwSdpOrigin, u64::from(ch.sdp_origin));
    b.add(Counter::RwSdpRtcp, u64::from(ch.sdp_rtcp));
    b.add(Counter::RwSdpMediaPort, u64::from(ch.sdp_media_port));
    b.add(Counter::RwContentLength, u64::from(ch.content_length));
}

#[cfg(test)]
mod tests {
    //! Katran-style: a golden input frame, the expected action and output bytes; no NIC.
    use core::net::SocketAddr;

    use super::*;
    use crate::{
        nat::{media::MediaRegistry, ExternalAddrs, Net, RewriteConfig},
        wire::emit::UdpFrame,
    };

    const EXT: &str = "203.0.113.10";
    const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xaa];
    const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xbb];

    struct Fixed(Route);

    impl Egress for Fixed {
        fn route(&self, _: Side, _: IpAddr) -> Route {
            self.0
        }
    }

    fn direct(mtu: usize) -> Fixed {
        Fixed(Route::Direct {
            macs: Some((PEER_MAC, GW_MAC)),
            mtu,
        })
    }

    fn dataplane() -> DataplaneSnapshot {
        DataplaneSnapshot::new(
            RewriteConfig::single(Net::parse("10.0.0.0/24").unwrap()),
            ExternalAddrs::from_ip(EXT.parse().unwrap()),
            &[5060],
        )
    }

    fn udp(src: &str, dst: &str, ttl: u8, payload: &[u8]) -> Vec<u8> {
        UdpFrame {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: src.parse::<SocketAddr>().unwrap(),
            dst: dst.parse::<SocketAddr>().unwrap(),
            ttl,
            ident: 0x4242,
            dont_fragment: false,
        }
        .to_vec(payload)
        .unwrap()
    }

    /// From `src` (inside) to the carrier 198.51.100.2:5060, TTL 64.
    fn to_carrier(src: &str, payload: &[u8]) -> Vec<u8> {
        udp(src, "198.51.100.2:5060", 64, payload)
    }

    /// From `src` (outside) to the external address's `port`, TTL 64.
    fn from_carrier(src: &str, port: u16, payload: &[u8]) -> Vec<u8> {
        udp(src, &format!("{EXT}:{port}"), 64, payload)
    }

    /// What leaves towards the carrier 198.51.100.2:5060 from the external address's
    /// `port`: gateway to peer MAC, TTL 63.
    fn sent_to_carrier(port: u16, payload: &[u8]) -> Vec<u8> {
        via_gateway(udp(
            &format!("{EXT}:{port}"),
            "198.51.100.2:5060",
            63,
            payload,
        ))
    }

    /// `frame` with the MACs of a hop through the gateway: to the peer, from the gateway.
    fn via_gateway(mut frame: Vec<u8>) -> Vec<u8> {
        frame[0..6].copy_from_slice(&PEER_MAC);
        frame[6..12].copy_from_slice(&GW_MAC);
        frame
    }

    /// The length of `a`, a transmit on `side`.
    #[track_caller]
    fn tx_len(a: &Action, side: Side) -> usize {
        match a {
            Action::Tx { side: s, len, .. } if *s == side => *len,
            other => panic!("{other:?}"),
        }
    }

    /// A transmit of `len` bytes in place, to the outside.
    fn tx_outside(len: usize) -> Action {
        Action::Tx {
            at: At::Frame,
            side: Side::Outside,
            len,
        }
    }

    /// The UA's REGISTER from 10.0.0.2:5060.
    const REGISTER: &str =
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK7\r\n\
            From: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\nCall-ID: r@x\r\n\
            CSeq: 2 REGISTER\r\nContact: <sip:alice@10.0.0.2:5060>\r\nContent-Length: 0\r\n\r\n";

    /// `pkt` (Ethernet) in IPv4/IPv6 fragments of at most 1500 bytes.
    fn fragments(pkt: &[u8]) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        frag::fragment(pkt, 14, 1500, 0, &mut |p: &[u8]| {
            v.push(p.to_vec());
            true
        })
        .unwrap();
        v
    }

    const INVITE: &str = "OPTIONS sip:carrier@198.51.100.2 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK1\r\n\
        From: <sip:alice@example.com>;tag=1\r\n\
        To: <sip:carrier@198.51.100.2>\r\n\
        Call-ID: 1@x\r\n\
        CSeq: 1 OPTIONS\r\n\
        Contact: <sip:alice@10.0.0.2:5060>\r\n\
        Content-Length: 0\r\n\r\n";

    struct Harness {
        pipe: Pipeline,
        dp: DataplaneSnapshot,
        flows: FlowTable,
        napt: NaptTable,
        media: Option<(MediaRegistry, crate::nat::media::InMemoryBindings)>,
        b: Batch,
    }

    impl Harness {
        fn new() -> Harness {
            Harness {
                pipe: Pipeline::new(ReasmLimits::default(), 7),
                dp: dataplane(),
                flows: FlowTable::new(64, 300),
                napt: NaptTable::new(64, 300),
                media: None,
                b: Batch::default(),
            }
        }

        /// With NAPT over the external ports `first..=last`.
        fn with_napt(first: u16, last: u16) -> Harness {
            let mut h = Harness::new();
            let range = crate::nat::napt::PortRange { first, last };
            h.dp = dataplane().with_napt(Some(range));
            h
        }

        /// Sends `frame` from the inside: it must leave, transmitted; returns what leaves.
        #[track_caller]
        fn send_out(&mut self, frame: &[u8]) -> Vec<u8> {
            let (a, out) = self.send(Side::Inside, frame);
            assert!(matches!(a, Action::Tx { .. }), "{a:?}");
            out
        }

        /// [`Harness::run`] on a direct route of MTU 1500, with 2048 bytes of tailroom.
        fn send(&mut self, side: Side, frame: &[u8]) -> (Action, Vec<u8>) {
            self.run(&direct(1500), side, frame, 2048)
        }

        /// Runs one frame (with `tailroom`), returns the action and the bytes it names.
        fn run(
            &mut self,
            egress: &impl Egress,
            side: Side,
            frame: &[u8],
            tailroom: usize,
        ) -> (Action, Vec<u8>) {
            let mut buf = frame.to_vec();
            buf.resize(frame.len() + tailroom, 0);
            let media = self
                .media
                .as_ref()
                .map(|(registry, sink)| MediaEnv { registry, sink });
            let env = Env {
                dataplane: &self.dp,
                flows: &self.flows,
                napt: &self.napt,
                media,
                egress,
                link: Link::Ethernet,
                now_ms: 1000,
            };
            let a = self
                .pipe
                .process(&env, side, &mut buf, frame.len(), &mut self.b);
            let bytes = match &a {
                Action::Tx { at, len, .. }
                | Action::Kernel { at, len, .. }
                | Action::Fragment { at, len, .. } => match at {
                    At::Frame => buf[..*len].to_vec(),
                    At::Scratch => self.pipe.scratch()[..*len].to_vec(),
                },
                _ => Vec::new(),
            };
            (a, bytes)
        }
    }

    #[test]
    fn outbound_sip_is_rewritten_hopped_and_addressed() {
        let mut h = Harness::new();
        let input = to_carrier("10.0.0.2:5060", INVITE.as_bytes());
        let (a, out) = h.send(Side::Inside, &input);
        let mut want = sent_to_carrier(5060, INVITE.replace("10.0.0.2", EXT).as_bytes());
        assert_eq!(a, tx_outside(want.len()));
        assert_eq!(out, want, "golden output frame");
        assert_eq!(h.b.get(Counter::SipRewritten), 1);
        assert_eq!(h.b.get(Counter::RwVia), 1);
        assert_eq!(h.b.get(Counter::RwContact), 1);
        assert_eq!(h.b.get(Counter::FlowInserted), 1);
        // The reply finds the flow and goes back to the phone.
        let ok = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        let reply = from_carrier("198.51.100.2:5060", 5060, ok);
        let (a, out) = h.send(Side::Outside, &reply);
        assert!(tx_to(&a, Side::Inside), "{a:?}");
        want = via_gateway(udp("198.51.100.2:5060", "10.0.0.2:5060", 63, ok));
        assert_eq!(out, want);
        assert_eq!(h.b.get(Counter::FlowHit), 1);
    }

    /// `[rewrite] enabled = false`: the IP header is still translated (and the flow
    /// learned), the SIP payload leaves as it arrived, counted unchanged.
    #[test]
    fn rewriting_off_translates_only_the_ip_header() {
        let mut h = Harness::new();
        let mut cfg = RewriteConfig::single(Net::parse("10.0.0.0/24").unwrap());
        cfg.enabled = false;
        h.dp = DataplaneSnapshot::new(cfg, ExternalAddrs::from_ip(EXT.parse().unwrap()), &[5060]);
        let input = to_carrier("10.0.0.2:5060", INVITE.as_bytes());
        let out = h.send_out(&input);
        assert_eq!(
            out,
            sent_to_carrier(5060, INVITE.as_bytes()),
            "golden output frame"
        );
        assert_eq!(h.b.get(Counter::SipRewritten), 0);
        assert_eq!(h.b.get(Counter::SipUnchanged), 1);
        assert_eq!(h.b.get(Counter::FlowInserted), 1);
    }

    #[test]
    fn not_on_a_sip_port_goes_to_the_kernel_unchanged() {
        let mut h = Harness::new();
        let rtp = udp(
            "10.0.0.2:30000",
            "198.51.100.2:40000",
            64,
            b"\x80\x00rtp 10.0.0.2",
        );
        let (a, out) = h.send(Side::Inside, &rtp);
        assert!(
            matches!(
                a,
                Action::Kernel {
                    reason: Counter::SlowNotSipPort,
                    split: None,
                    ..
                }
            ),
            "{a:?}"
        );
        assert_eq!(out, rtp);
        assert_eq!(h.b.get(Counter::Outbound), 0, "no decision was taken");
    }

    #[test]
    fn internal_unmapped_and_ttl() {
        let mut h = Harness::new();
        let internal = udp("10.0.0.2:5060", "10.0.0.9:5060", 64, INVITE.as_bytes());
        let (a, out) = h.send(Side::Inside, &internal);
        assert!(to_kernel(&a, Counter::SlowInternal), "{a:?}");
        assert_eq!(out, internal);
        let unmapped = from_carrier("198.51.100.2:5060", 5060, INVITE.as_bytes());
        let (a, _) = h.send(Side::Outside, &unmapped);
        assert!(to_kernel(&a, Counter::SlowNoMapping), "{a:?}");
        let dying = udp("10.0.0.2:5060", "198.51.100.2:5060", 1, INVITE.as_bytes());
        let (a, _) = h.send(Side::Inside, &dying);
        assert_eq!(a, Action::Drop(Counter::DropTtl));
        let (a, _) = h.run(&direct(1500), Side::Inside, &[0u8; 10], 0);
        assert_eq!(a, Action::Drop(Counter::DropBadFrame));
    }

    #[test]
    fn regression_too_big_is_redone_in_scratch_and_decided_once() {
        let mut h = Harness::new();
        let input = to_carrier("10.0.0.2:5060", INVITE.as_bytes());
        // No tailroom: the grown message does not fit the frame.
        let (a, out) = h.run(&direct(1500), Side::Inside, &input, 0);
        let Action::Tx {
            at: At::Scratch,
            side: Side::Outside,
            len,
        } = a
        else {
            panic!("{a:?}");
        };
        assert_eq!(len, input.len() + 8);
        assert!(String::from_utf8_lossy(&out).contains("Via: SIP/2.0/UDP 203.0.113.10:5060"));
        assert_eq!(h.b.get(Counter::SipTooBig), 1);
        assert_eq!(h.b.get(Counter::Outbound), 1, "the decision ran once");
        assert_eq!(
            h.b.get(Counter::FlowInserted),
            1,
            "the flow was inserted once"
        );
        assert_eq!(h.b.get(Counter::FlowRefreshed), 0);
        assert_eq!(h.b.get(Counter::SipRewritten), 1);
    }

    #[test]
    fn unresolved_neighbour_and_other_interface_go_to_the_kernel_rewritten() {
        let mut h = Harness::new();
        let input = to_carrier("10.0.0.2:5060", INVITE.as_bytes());
        let (a, out) = h.run(
            &Fixed(Route::Unresolved { mtu: 1500 }),
            Side::Inside,
            &input,
            2048,
        );
        assert!(to_kernel(&a, Counter::SlowNeighbor), "{a:?}");
        assert!(String::from_utf8_lossy(&out).contains("Contact: <sip:alice@203.0.113.10:5060>"));
        let (a, _) = h.run(&Fixed(Route::OtherInterface), Side::Inside, &input, 2048);
        assert!(to_kernel(&a, Counter::SlowOtherInterface), "{a:?}");
    }

    #[test]
    fn too_big_with_df_gets_icmp_without_df_fragments() {
        let mut h = Harness::new();
        let mut input = to_carrier("10.0.0.2:5060", INVITE.as_bytes());
        let ip_len = input.len() - 14;
        // DF set (header checksum refreshed).
        input[20] |= 0x40;
        ipv4::Packet::new_checked(&mut input[14..])
            .unwrap()
            .fill_checksum();
        let (a, _) = h.run(&direct(ip_len), Side::Inside, &input, 2048);
        let Action::IcmpTooBig { to, mtu } = a else {
            panic!("{a:?}");
        };
        let quote = h.pipe.quote();
        assert_eq!(to, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(
            mtu as usize,
            ip_len - 8,
            "room for the 8 bytes it grew (Via, Contact)"
        );
        assert_eq!(&quote[12..16], &[10, 0, 0, 2], "quoted as sent");
        let input = to_carrier("10.0.0.2:5060", INVITE.as_bytes());
        let (a, _) = h.run(&direct(ip_len), Side::Inside, &input, 2048);
        assert!(
            matches!(a, Action::Fragment { mtu, via_kernel: false, .. } if mtu == ip_len),
            "{a:?}"
        );
    }

    /// Bug 7: a reassembled datagram that goes back to the kernel (here: internal
    /// destination) was handed over whole, larger than the link MTU, and the kernel
    /// refused it (EMSGSIZE). It goes back in fragments no larger than the sender's.
    #[test]
    fn regression_bug7_reassembled_datagram_for_the_kernel_is_refragmented() {
        let mut h = Harness::new();
        let body = vec![b'x'; 3000];
        let big = udp("10.0.0.2:5060", "10.0.0.9:5060", 64, &body);
        let frags = fragments(&big);
        assert_eq!(frags.len(), 3);
        let mut last = None;
        for f in &frags {
            last = Some(h.run(&direct(1500), Side::Inside, f, 0));
        }
        assert_eq!(h.b.get(Counter::ReasmComplete), 1);
        let (a, bytes) = last.unwrap();
        let Action::Kernel {
            l3,
            split,
            reason: Counter::SlowInternal,
            ..
        } = a
        else {
            panic!("{a:?}");
        };
        assert_eq!(split, Some((1500, 0x4242)));
        let mut pieces = Vec::new();
        let n =
            kernel_pieces(&bytes, l3, split, &mut |ip: &[u8]| pieces.push(ip.to_vec())).unwrap();
        assert_eq!(n, 3);
        assert!(
            pieces.iter().all(|p| p.len() <= 1500),
            "{:?}",
            pieces.iter().map(Vec::len).collect::<Vec<_>>()
        );
        // The pieces are the fragments as they came (IP layer).
        for (p, f) in pieces.iter().zip(&frags) {
            assert_eq!(p[..], f[14..]);
        }
    }

    /// Hardening 1: a fragmented datagram on no SIP port (the XDP program steers every
    /// UDP fragment) was reassembled and NATed by the worker, or lost above 16 KiB. Every
    /// fragment now reaches the kernel exactly as it arrived, whatever the order.
    #[test]
    fn regression_non_sip_fragments_reach_the_kernel_as_they_arrived() {
        let mut h = Harness::new();
        let payload = vec![0x5a; 30_000];
        let big = udp("10.0.0.2:40000", "198.51.100.2:9999", 64, &payload);
        let mut frags = fragments(&big);
        // The last fragment first, then the rest.
        frags.rotate_right(1);
        let mut to_kernel: Vec<Vec<u8>> = Vec::new();
        for f in &frags {
            let (a, _) = h.run(&direct(1500), Side::Inside, f, 0);
            match a {
                Action::Consumed => {}
                Action::PassFragments { held, l3, len } => {
                    for k in 0..held {
                        to_kernel.push(h.pipe.held_fragment(k).unwrap().to_vec());
                    }
                    assert_eq!((l3, len), (14, f.len()));
                    to_kernel.push(f.clone());
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(to_kernel.len(), frags.len());
        let mut a = to_kernel.clone();
        let mut b = frags.clone();
        a.sort();
        b.sort();
        assert_eq!(a, b, "every fragment, byte for byte");
        assert_eq!(h.b.get(Counter::FragPassed), frags.len() as u64);
        assert_eq!(h.b.get(Counter::Outbound), 0, "never NATed");
        assert_eq!(h.b.get(Counter::ReasmComplete), 0);
    }

    /// Hardening 2: SIP above 16 KiB was always dropped; up to 65,507 bytes of UDP
    /// payload are reassembled, rewritten and refragmented.
    #[test]
    fn regression_sip_above_16_kib_is_rewritten() {
        let mut h = Harness::new();
        let mut msg = INVITE.replace("Content-Length: 0\r\n\r\n", "");
        msg.push_str("X-Pad: ");
        msg.push_str(&"p".repeat(40_000));
        msg.push_str("\r\nContent-Length: 0\r\n\r\n");
        let big = to_carrier("10.0.0.2:5060", msg.as_bytes());
        let frags = fragments(&big);
        let mut last = None;
        for f in &frags {
            last = Some(h.run(&direct(1500), Side::Inside, f, 0));
        }
        let (a, bytes) = last.unwrap();
        let Action::Fragment {
            at: At::Scratch,
            mtu: 1500,
            l3,
            len,
            ..
        } = a
        else {
            panic!("{a:?}");
        };
        assert_eq!(len, big.len() + 8);
        let text = String::from_utf8_lossy(&bytes[l3 + 28..]);
        assert!(text.contains("Via: SIP/2.0/UDP 203.0.113.10:5060"));
        assert_eq!(h.b.get(Counter::SipRewritten), 1);
    }

    /// An Ethernet + IPv4 ICMP error (`type`, `code`) from `src` to `dst` quoting `quoted`
    /// (an IP packet), checksums right.
    fn icmp4_error(src: [u8; 4], dst: [u8; 4], ty: u8, quoted: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        let total = 20 + 8 + quoted.len();
        let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, 1, 0, 0];
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        f.extend_from_slice(&ip);
        let mut icmp = vec![ty, 3, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(quoted);
        let c = checksum::finish(checksum::sum(&icmp));
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&icmp);
        ipv4::Packet::new_checked(&mut f[14..])
            .unwrap()
            .fill_checksum();
        f
    }

    fn icmp_ok(f: &[u8]) {
        let l = wire::parse(f, Link::Ethernet).unwrap();
        assert!(ipv4::Packet::new_checked(&f[14..])
            .unwrap()
            .verify_checksum());
        assert_eq!(
            checksum::fold(checksum::sum(&f[l.l4..l.ip_end])),
            0xffff,
            "ICMP checksum"
        );
        let q = &f[l.l4 + 8..];
        assert!(ipv4::Packet::new_checked(&q[..20]).is_some() || q.len() >= 20);
        let mut qh = [0u8; 20];
        qh.copy_from_slice(&q[..20]);
        assert_eq!(
            checksum::fold(checksum::sum(&qh)),
            0xffff,
            "quoted header checksum"
        );
    }

    /// Hardening 10: an ICMP error about a sipnat flow leaked the internal address
    /// (outbound) or stopped at the gateway (inbound). Both ways are translated now.
    #[test]
    fn regression_icmp_errors_of_sipnat_flows_are_translated() {
        let mut h = Harness::new();
        // The phone's request creates the flow.
        let req = to_carrier("10.0.0.2:5060", INVITE.as_bytes());
        let (a, sent) = h.send(Side::Inside, &req);
        assert!(matches!(a, Action::Tx { .. }));
        // The carrier's port is closed: its error quotes what it got from us.
        let err = icmp4_error([198, 51, 100, 2], [203, 0, 113, 10], 3, &sent[14..]);
        let (a, out) = h.run(&direct(1500), Side::Outside, &err, 0);
        let len = tx_len(&a, Side::Inside);
        assert_eq!(len, err.len());
        assert_eq!(&out[30..34], &[10, 0, 0, 2], "outer destination: the phone");
        assert_eq!(
            &out[42 + 12..42 + 16],
            &[10, 0, 0, 2],
            "quoted source: the phone"
        );
        icmp_ok(&out);
        assert_eq!(h.b.get(Counter::IcmpTranslated), 1);

        // The other way: the carrier's request restored to the phone, whose port is closed.
        let inbound = udp("198.51.100.2:5060", "10.0.0.2:5060", 63, INVITE.as_bytes());
        let err = icmp4_error([10, 0, 0, 2], [198, 51, 100, 2], 3, &inbound[14..]);
        let (a, out) = h.run(&direct(1500), Side::Inside, &err, 0);
        let len = tx_len(&a, Side::Outside);
        assert_eq!(
            len,
            14 + 20 + 8 + 28,
            "the quote is cut after the UDP header"
        );
        assert_eq!(
            &out[26..30],
            &[203, 0, 113, 10],
            "outer source: the external address"
        );
        assert_eq!(
            &out[42 + 16..42 + 20],
            &[203, 0, 113, 10],
            "quoted destination"
        );
        assert!(
            !out[..len].windows(4).any(|w| w == [10, 0, 0, 2]),
            "no internal address left"
        );
        icmp_ok(&out[..len]);

        // About a flow nobody has: dropped, never forwarded as is.
        let stray = udp("203.0.113.10:5060", "198.51.100.9:5060", 64, b"x");
        let err = icmp4_error([198, 51, 100, 9], [203, 0, 113, 10], 3, &stray[14..]);
        let (a, _) = h.run(&direct(1500), Side::Outside, &err, 0);
        assert_eq!(a, Action::Drop(Counter::DropIcmpUntranslatable));
        // An echo request is not an error: the kernel's.
        let mut echo = icmp4_error([198, 51, 100, 2], [203, 0, 113, 10], 8, b"ping");
        echo[34] = 8;
        let (a, _) = h.run(&direct(1500), Side::Outside, &echo, 0);
        assert!(to_kernel(&a, Counter::SlowIcmpNotOurs), "{a:?}");
    }

    /// Is `a` a transmit on `side`?
    fn tx_to(a: &Action, side: Side) -> bool {
        matches!(a, Action::Tx { side: s, .. } if *s == side)
    }

    /// Is `a` a hand-over to the kernel for `reason`?
    fn to_kernel(a: &Action, reason: Counter) -> bool {
        matches!(a, Action::Kernel { reason: r, .. } if *r == reason)
    }

    fn payload_of(frame: &[u8]) -> String {
        let l = wire::parse(frame, Link::Ethernet).unwrap();
        let (_, _, p, n) = l.udp(frame).unwrap();
        String::from_utf8_lossy(&frame[p..p + n]).into_owned()
    }

    /// Hardening 4: a malformed outbound message (conflicting Content-Lengths) went out
    /// with its private Via and Contact under the default policies. Dropped and counted
    /// now (`leak = "drop"`, the default); `leak = "forward"` sends it as before.
    #[test]
    fn regression_malformed_outbound_with_internal_addresses_is_dropped() {
        let msg = INVITE.replace(
            "Content-Length: 0\r\n",
            "Content-Length: 0\r\nContent-Length: 12\r\n",
        );
        let input = to_carrier("10.0.0.2:5060", msg.as_bytes());
        let mut h = Harness::new();
        let (a, _) = h.send(Side::Inside, &input);
        assert_eq!(a, Action::Drop(Counter::DropWouldLeak));
        assert_eq!(h.b.get(Counter::DropWouldLeak), 1);
        assert_eq!(h.b.get(Counter::MalformedDuplicateContentLength), 1);
        // Only public addresses in it: forwarded (malformed = "forward").
        let public = msg
            .replace("10.0.0.2:5060;", "198.51.100.9:5060;")
            .replace("alice@10.0.0.2", "alice@198.51.100.9");
        let input2 = to_carrier("10.0.0.2:5060", public.as_bytes());
        h.send_out(&input2);
        // The old behaviour, chosen.
        h.dp.config.leak = LeakPolicy::Forward;
        let out = h.send_out(&input);
        assert!(payload_of(&out).contains("Via: SIP/2.0/UDP 10.0.0.2:5060"));
        assert_eq!(h.b.get(Counter::DropWouldLeak), 1);
    }

    /// The worker's binding prefetch reads only what a frame has (every truncation, both
    /// sides, with and without NAPT, no panic) and changes nothing: the frame is handled
    /// as without it.
    #[test]
    fn binding_prefetch_reads_in_bounds_and_changes_nothing() {
        let input = to_carrier("10.0.0.2:5060", INVITE.as_bytes());
        for mut h in [Harness::new(), Harness::with_napt(20000, 20009)] {
            for side in [Side::Inside, Side::Outside] {
                for n in 0..=input.len() {
                    super::super::bindings::prefetch(&h.dp, &h.flows, &h.napt, side, &input[..n]);
                }
            }
            assert_eq!(h.flows.live(1), 0);
            let out = h.send_out(&input);
            assert!(!payload_of(&out).contains("10.0.0.2"));
        }
    }

    /// Two hosts behind the gateway, one port, one remote: the second host's SIP went to
    /// the kernel unrewritten (`slow_flow_collision`) and left with its private addresses.
    /// Under `leak = "drop"` it is dropped and counted; `"forward"` keeps the old path.
    #[test]
    fn regression_flow_collision_is_dropped_not_leaked() {
        let mut h = Harness::new();
        let first = to_carrier("10.0.0.2:5060", INVITE.as_bytes());
        h.send_out(&first);
        let other = INVITE.replace("10.0.0.2", "10.0.0.3");
        let second = to_carrier("10.0.0.3:5060", other.as_bytes());
        let (a, _) = h.send(Side::Inside, &second);
        assert_eq!(a, Action::Drop(Counter::DropWouldLeak));
        assert_eq!(h.b.get(Counter::FlowCollision), 1);
        assert_eq!(h.b.get(Counter::SlowCollision), 0);
        h.dp.config.leak = LeakPolicy::Forward;
        let (a, _) = h.send(Side::Inside, &second);
        assert!(to_kernel(&a, Counter::SlowCollision), "{a:?}");
    }

    /// Hardening 4: a second request appended after the body Content-Length declares went
    /// out unchanged, private addresses and all. It is discarded: the datagram shortened,
    /// lengths and checksum right.
    #[test]
    fn regression_bytes_after_content_length_are_discarded() {
        let second = "INVITE sip:bob@198.51.100.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060\r\nContact: <sip:alice@10.0.0.2>\r\nContent-Length: 0\r\n\r\n";
        let msg = format!("{INVITE}{second}");
        let input = to_carrier("10.0.0.2:5060", msg.as_bytes());
        let mut h = Harness::new();
        let (a, out) = h.send(Side::Inside, &input);
        let want = sent_to_carrier(5060, INVITE.replace("10.0.0.2", EXT).as_bytes());
        assert_eq!(a, tx_outside(want.len()));
        assert_eq!(out[12..], want[12..], "golden output (but for the MACs)");
        assert_eq!(h.b.get(Counter::TrailingDiscarded), 1);
        let l = wire::parse(&out, Link::Ethernet).unwrap();
        assert!(crate::rewrite::packet::udp_checksum_ok(&out, &l));
    }

    /// Hardening 11: the registrar's 200 OK to the UA's REGISTER lists its binding at the
    /// external address and port; the UA never found it. Restored inbound, only that one.
    #[test]
    fn regression_register_200_restores_the_uas_own_binding() {
        let mut h = Harness::new();
        let input = to_carrier("10.0.0.2:5060", REGISTER.as_bytes());
        let out = h.send_out(&input);
        assert!(payload_of(&out).contains("Contact: <sip:alice@203.0.113.10:5060>"));
        let ok = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {EXT}:5060;branch=z9hG4bK7;received={EXT}\r\n\
             From: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>;tag=9\r\nCall-ID: r@x\r\n\
             CSeq: 2 REGISTER\r\nContact: <sip:alice@{EXT}:5060>;expires=3600\r\n\
             Contact: <sip:alice@{EXT}:5070>;expires=60\r\nContent-Length: 0\r\n\r\n"
        );
        let reply = from_carrier("198.51.100.2:5060", 5060, ok.as_bytes());
        let (a, out) = h.send(Side::Outside, &reply);
        assert!(tx_to(&a, Side::Inside), "{a:?}");
        let text = payload_of(&out);
        assert!(
            text.contains("Contact: <sip:alice@10.0.0.2:5060>;expires=3600\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Contact: <sip:alice@203.0.113.10:5070>;expires=60\r\n"),
            "another binding stays: {text}"
        );
        assert_eq!(h.b.get(Counter::RwContact), 2, "one each way");
    }

    /// NAPT: two hosts on port 5060 towards one remote. The first keeps 5060, the second
    /// gets a port of the range, in its UDP source port and in its Via and Contact; the
    /// reply to that port is restored (port and text, `rport` included) to the second
    /// host. With the range exhausted a third host is dropped and counted, never sent.
    #[test]
    fn napt_second_host_gets_a_port_of_the_range_and_its_replies_back() {
        let mut h = Harness::with_napt(20000, 20000);
        let first = to_carrier("10.0.0.2:5060", INVITE.as_bytes());
        let out = h.send_out(&first);
        assert_eq!(
            wire::parse(&out, Link::Ethernet)
                .unwrap()
                .udp(&out)
                .unwrap()
                .0,
            5060
        );
        let other = INVITE
            .replace("10.0.0.2", "10.0.0.3")
            .replace("branch=z9hG4bK1", "rport;branch=z9hG4bK1");
        let second = to_carrier("10.0.0.3:5060", other.as_bytes());
        let (a, out) = h.send(Side::Inside, &second);
        let text = other.replace("10.0.0.3:5060", &format!("{EXT}:20000"));
        let want = sent_to_carrier(20000, text.as_bytes());
        assert_eq!(a, tx_outside(want.len()));
        assert_eq!(payload_of(&out), payload_of(&want));
        assert_eq!(out, want, "golden output");
        assert_eq!(
            (
                h.b.get(Counter::NaptPreserved),
                h.b.get(Counter::NaptAllocated)
            ),
            (1, 1)
        );
        // The reply, as a carrier following RFC 3581 sends it.
        let ok = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {EXT}:20000;rport=20000;received={EXT};branch=z9hG4bK1\r\n\
             From: <sip:alice@example.com>;tag=1\r\nTo: <sip:carrier@198.51.100.2>;tag=2\r\n\
             Call-ID: 1@x\r\nCSeq: 1 OPTIONS\r\nContact: <sip:carrier@198.51.100.2>\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let reply = from_carrier("198.51.100.2:5060", 20000, ok.as_bytes());
        let (a, out) = h.send(Side::Outside, &reply);
        assert!(tx_to(&a, Side::Inside), "{a:?}");
        let l = wire::parse(&out, Link::Ethernet).unwrap();
        assert_eq!((l.dst, l.udp(&out).unwrap().1), (ip4("10.0.0.3"), 5060));
        assert!(crate::rewrite::packet::udp_checksum_ok(&out, &l));
        assert!(
            payload_of(&out).contains(
                "Via: SIP/2.0/UDP 10.0.0.3:5060;rport=5060;received=10.0.0.3;branch=z9hG4bK1\r\n"
            ),
            "{}",
            payload_of(&out)
        );
        // From another remote (endpoint-independent): still the second host.
        let from_other = from_carrier("198.51.100.7:5060", 20000, ok.as_bytes());
        let (a, out) = h.send(Side::Outside, &from_other);
        assert!(tx_to(&a, Side::Inside), "{a:?}");
        assert_eq!(
            wire::parse(&out, Link::Ethernet).unwrap().dst,
            ip4("10.0.0.3")
        );
        assert_eq!(h.b.get(Counter::NaptHit), 1);
        // Range exhausted: a third host does not leave.
        let third = to_carrier(
            "10.0.0.4:5060",
            INVITE.replace("10.0.0.2", "10.0.0.4").as_bytes(),
        );
        let (a, _) = h.send(Side::Inside, &third);
        assert_eq!(a, Action::Drop(Counter::DropNatPortsExhausted));
        assert_eq!(h.b.get(Counter::DropNatPortsExhausted), 1);
    }

    /// NAPT and registration: the REGISTER's 200 lists the UA's binding with
    /// `expires=3600`; its NAPT binding then outlives the idle timeout (300 s) until the
    /// registration ends.
    #[test]
    fn napt_binding_lives_as_long_as_the_registration() {
        let mut h = Harness::with_napt(20000, 20009);
        // Port 5060 taken by another host first: this UA gets 20000.
        let other = to_carrier(
            "10.0.0.9:5060",
            INVITE.replace("10.0.0.2", "10.0.0.9").as_bytes(),
        );
        h.send(Side::Inside, &other);
        let input = to_carrier("10.0.0.2:5060", REGISTER.as_bytes());
        let (_, out) = h.send(Side::Inside, &input);
        assert!(payload_of(&out).contains(&format!("Contact: <sip:alice@{EXT}:20000>")));
        let ok = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {EXT}:20000;branch=z9hG4bK7;received={EXT}\r\n\
             From: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>;tag=9\r\nCall-ID: r@x\r\n\
             CSeq: 2 REGISTER\r\nContact: <sip:alice@{EXT}:20000>;expires=3600\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let reply = from_carrier("198.51.100.2:5060", 20000, ok.as_bytes());
        let (a, out) = h.send(Side::Outside, &reply);
        assert!(tx_to(&a, Side::Inside), "{a:?}");
        assert!(
            payload_of(&out).contains("Contact: <sip:alice@10.0.0.2:5060>;expires=3600\r\n"),
            "{}",
            payload_of(&out)
        );
        let ext: IpAddr = EXT.parse().unwrap();
        let at = |s: u32| h.napt.inbound(ext, 20000, s);
        // now = 1 s in the harness: idle timeout 300 s, registration until 3601 s.
        assert_eq!(at(1000), Some((ip4("10.0.0.2"), 5060)));
        assert_eq!(at(3601), Some((ip4("10.0.0.2"), 5060)));
        assert_eq!(at(3602), None);
        // The other host's binding (no registration) is gone after the idle timeout.
        assert_eq!(h.napt.inbound(ext, 5060, 302), None);
    }

    /// Media bindings: an outbound INVITE's SDP gets an external port pair of the media
    /// range in `m=` and `a=rtcp` (and the binding installed, RTP and RTCP); its
    /// retransmission the same pair; a re-INVITE moving the media a new one (the old goes);
    /// the BYE removes the dialog's bindings, `LINGER_S` later.
    #[test]
    fn media_ports_from_sdp_are_bound_and_end_with_the_dialog() {
        use crate::nat::media::InMemoryBindings;
        let mut h = Harness::new();
        h.media = Some((
            MediaRegistry::new(crate::nat::napt::PortRange {
                first: 30000,
                last: 30099,
            }),
            InMemoryBindings::default(),
        ));
        let sdp = |port: u16| {
            format!(
                "v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n\
                 m=audio {port} RTP/AVP 0\r\na=rtcp:{} IN IP4 10.0.0.2\r\n",
                port + 1
            )
        };
        let invite = |port: u16, cseq: u32| {
            let body = sdp(port);
            format!(
                "INVITE sip:bob@198.51.100.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK{cseq}\r\n\
                 From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@198.51.100.2>\r\nCall-ID: m1@x\r\n\
                 CSeq: {cseq} INVITE\r\nContact: <sip:alice@10.0.0.2:5060>\r\n\
                 Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let send = |h: &mut Harness, msg: &str| {
            let f = to_carrier("10.0.0.2:5060", msg.as_bytes());
            let out = h.send_out(&f);
            payload_of(&out)
        };
        let bound = |h: &Harness| h.media.as_ref().unwrap().1.list();
        let sa = |s: &str| s.parse::<core::net::SocketAddr>().unwrap();
        let out = send(&mut h, &invite(6000, 1));
        assert!(
            out.contains("m=audio 30000 RTP/AVP 0\r\na=rtcp:30001 IN IP4 203.0.113.10\r\n")
                && out.contains("c=IN IP4 203.0.113.10"),
            "{out}"
        );
        // The body grew by the addresses (ports keep their length): Content-Length follows.
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        let cl = format!("Content-Length: {}", body.len());
        assert!(head.ends_with(&cl) && body.len() > sdp(6000).len(), "{out}");
        let want = [
            (sa("10.0.0.2:6000"), sa("203.0.113.10:30000")),
            (sa("10.0.0.2:6001"), sa("203.0.113.10:30001")),
        ];
        assert_eq!(bound(&h), want);
        assert_eq!(send(&mut h, &invite(6000, 1)), out, "a retransmission");
        assert_eq!(bound(&h), want);
        // A re-INVITE moving the media: a new pair, the old one removed.
        let out = send(&mut h, &invite(7000, 2));
        assert!(out.contains("m=audio 30002 RTP/AVP 0"), "{out}");
        assert_eq!(
            bound(&h),
            [
                (sa("10.0.0.2:7000"), sa("203.0.113.10:30002")),
                (sa("10.0.0.2:7001"), sa("203.0.113.10:30003")),
            ]
        );
        // An inbound answer (public media) changes nothing.
        let ok = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {EXT}:5060;branch=z9hG4bK2\r\nCall-ID: m1@x\r\n\
             CSeq: 2 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: 44\r\n\r\n\
             c=IN IP4 198.51.100.2\r\nm=audio 8000 RTP/AVP 0\r\n"
        );
        let f = from_carrier("198.51.100.2:5060", 5060, ok.as_bytes());
        h.send(Side::Outside, &f);
        assert_eq!(bound(&h).len(), 2);
        let bye = "BYE sip:bob@198.51.100.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK3\r\n\
            From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@198.51.100.2>;tag=2\r\ni: m1@x\r\n\
            CSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n";
        send(&mut h, bye);
        // Kept for the media that trails the BYE; removed once LINGER_S has passed.
        assert_eq!(bound(&h).len(), 2);
        let (reg, sink) = h.media.as_ref().unwrap();
        let mut ending = std::collections::VecDeque::new();
        // The harness's clock: 1 s.
        assert_eq!(reg.end_lingering(&mut ending, 1, sink), 0);
        assert_eq!((ending.len(), bound(&h).len()), (1, 2), "not yet due");
        let later = 1 + crate::nat::media::LINGER_S;
        assert_eq!(reg.end_lingering(&mut ending, later, sink), 1);
        assert!(bound(&h).is_empty() && ending.is_empty());
        let reg = &h.media.as_ref().unwrap().0;
        assert_eq!(reg.live(), 0);
        assert_eq!(
            (
                reg.counters
                    .installed
                    .load(core::sync::atomic::Ordering::Relaxed),
                reg.counters
                    .removed
                    .load(core::sync::atomic::Ordering::Relaxed)
            ),
            (2, 2)
        );
    }

    fn ip4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
}
