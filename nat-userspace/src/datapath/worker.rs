//! One worker per queue: receives on both AF_XDP sockets, decides (outbound / inbound /
//! internal), rewrites, and transmits on the other side, in batches. Pinned to a core.
//! Per packet: no allocation, no lock, no syscall (ring operations are batched; the
//! kernel is kicked once per batch).
//!
//! Every received frame ends in exactly one place, each counted: transmitted (possibly as
//! fragments), handed to the kernel slow path (by reason), consumed into the reassembly
//! buffer (a fragment), or dropped (by reason).

use std::{
    net::IpAddr,
    sync::{atomic::Ordering, Arc},
};

use arrayvec::ArrayVec;
use xdpilone::xdp::XdpDesc;

use super::{
    flow::{FlowKey, InsertResult},
    frag,
    nexthop::NextHops,
    port::{Port, Ports, RingSizes},
    reasm::{ReasmLimits, Reassembler},
    stats::{Batch, WorkerStats, C},
    umem::{frame_base, Area, FreeFrames, FRAME_SIZE},
    Dataplane, Shared,
};
use crate::{
    nat::{decide, decide::Decision},
    rewrite::{
        packet::{rewrite_packet, PacketError},
        Changes, Context, Direction, Outcome,
    },
    sip::message::{Malformed, NotSip},
    snapshot::Local,
    wire::{self, checksum, ipv4, ipv6, Layout, Link},
};

/// Most descriptors handled per ring per batch.
pub const MAX_BATCH: usize = 256;

/// Frames ahead of the one being handled whose memory is prefetched.
const PREFETCH_AHEAD: usize = 2;

/// Most `sendto` kicks per side per batch (copy mode sends up to 32 frames per kick).
const MAX_TX_KICKS: u64 = 64;

/// Scratch buffer for packets that do not fit a frame (reassembled or grown too much).
const SCRATCH: usize = 65536 + 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Inside,
    Outside,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::Inside => Side::Outside,
            Side::Outside => Side::Inside,
        }
    }
}

/// Static parameters of a worker.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub queue: u32,
    pub inside: String,
    pub outside: String,
    pub frames: u32,
    pub sizes: RingSizes,
    pub batch: u32,
    pub busy_poll: bool,
    /// With `busy_poll`: sleep in poll() after this long without a packet (zero: spin
    /// forever).
    pub busy_poll_idle: std::time::Duration,
    pub reasm: ReasmLimits,
    pub cpu: Option<usize>,
    /// Nice value of the worker thread.
    pub nice: i32,
    /// SCHED_FIFO priority (0: normal scheduling).
    pub rt_priority: u32,
}

/// What the worker reports once its sockets are up.
#[derive(Clone, Copy, Debug)]
pub struct Ready {
    pub queue: u32,
    pub inside_fd: i32,
    pub outside_fd: i32,
    pub zero_copy: bool,
}

/// Runs a worker until `shared.stop` is set. Reports readiness (or the setup error) on
/// `ready` first.
pub fn run(
    cfg: WorkerConfig,
    shared: Arc<Shared>,
    stats: Arc<WorkerStats>,
    ready: std::sync::mpsc::Sender<Result<Ready, String>>,
) {
    if let Some(cpu) = cfg.cpu {
        crate::sys::pin_to_cpu(cpu);
    }
    if cfg.nice != 0 {
        crate::sys::set_thread_nice(cfg.nice);
    }
    // Real-time scheduling keeps the kernel's receive (NAPI / softirq) on the worker's core
    // from starving the worker under overload: the worker runs whenever it has packets and
    // sleeps in poll() when its rings are empty, which is when the kernel receives more.
    // A spinning (busy_poll) worker must not be real-time: it would starve that receive.
    if cfg.rt_priority > 0 && !cfg.busy_poll {
        if let Err(e) = crate::sys::set_thread_fifo(cfg.rt_priority) {
            tracing::warn!(
                "queue {}: cannot run the worker at SCHED_FIFO priority {} ({e}; needs CAP_SYS_NICE or RLIMIT_RTPRIO, LimitRTPRIO= in the unit): it runs at normal priority, and under overload the kernel's receive on its core can starve it",
                cfg.queue,
                cfg.rt_priority
            );
        }
    }
    let mut area = match Area::new(cfg.frames) {
        Ok(a) => a,
        Err(e) => {
            let _ = ready.send(Err(format!(
                "queue {}: cannot map {} UMEM frames: {e}",
                cfg.queue, cfg.frames
            )));
            return;
        }
    };
    let ports = match Ports::open(&area, &cfg.inside, &cfg.outside, cfg.queue, cfg.sizes) {
        Ok(p) => p,
        Err(e) => {
            // The kernel charges the UMEM to RLIMIT_MEMLOCK (no CAP_IPC_LOCK): ENOBUFS.
            let hint = if e.raw_os_error() == Some(libc::ENOBUFS) {
                format!(
                    " (the UMEM of {} MiB exceeds the locked-memory limit: raise it, e.g. \
                     LimitMEMLOCK=infinity in the systemd unit or `ulimit -l unlimited`, or \
                     lower [datapath] frames)",
                    (u64::from(cfg.frames) * u64::from(FRAME_SIZE)) >> 20
                )
            } else {
                String::new()
            };
            let _ = ready.send(Err(format!(
                "queue {}: cannot open AF_XDP sockets on {}/{}: {e}{hint}",
                cfg.queue, cfg.inside, cfg.outside
            )));
            return;
        }
    };
    let next_ident = (cfg.queue << 24) ^ 0x0051_9700;
    let mut w = Worker {
        free: FreeFrames::new(cfg.frames),
        reasm: Reassembler::new(cfg.reasm),
        scratch: vec![0u8; SCRATCH],
        dataplane: Local::new(&shared.dataplane),
        nexthops: Local::new(&shared.nexthops),
        batch: Batch::default(),
        pending: [ArrayVec::new(), ArrayVec::new()],
        cfg,
        shared,
        stats,
        ports,
        last_expire_ms: 0,
        reasm_reported: Default::default(),
        // Distinct per worker so two workers never reuse an identification together.
        next_ident,
    };
    // Fill rings stocked before the daemon puts our sockets in the XSKMAPs: the first
    // packets steered to us find buffers.
    w.refill(Side::Inside);
    w.refill(Side::Outside);
    let _ = ready.send(Ok(Ready {
        queue: w.cfg.queue,
        inside_fd: w.ports.inside.fd(),
        outside_fd: w.ports.outside.fd(),
        zero_copy: w.ports.zero_copy,
    }));
    w.run(&mut area);
    // `w` (sockets, UMEM) drops before `area` (the memory they use).
    drop(w);
    drop(area);
}

struct Worker {
    cfg: WorkerConfig,
    shared: Arc<Shared>,
    stats: Arc<WorkerStats>,
    ports: Ports,
    free: FreeFrames,
    reasm: Reassembler,
    scratch: Vec<u8>,
    dataplane: Local<Dataplane>,
    nexthops: Local<NextHops>,
    batch: Batch,
    /// TX descriptors waiting for the end of the batch, per side.
    pending: [ArrayVec<XdpDesc, { 2 * MAX_BATCH }>; 2],
    last_expire_ms: u64,
    reasm_reported: super::reasm::ReasmStats,
    /// IPv6 fragment identification for refragmented datagrams.
    next_ident: u32,
}

/// Where the packet being handled lives.
#[derive(Clone, Copy)]
enum Loc {
    /// In a UMEM frame: descriptor address (packet start).
    Frame(u64),
    /// In the scratch buffer.
    Scratch,
}

impl Worker {
    fn port(&mut self, s: Side) -> &mut Port {
        match s {
            Side::Inside => &mut self.ports.inside,
            Side::Outside => &mut self.ports.outside,
        }
    }

    fn run(&mut self, area: &mut Area) {
        let mut descs: ArrayVec<XdpDesc, MAX_BATCH> = ArrayVec::new();
        // NAPI busy polling needs the socket bound to the queue's NAPI instance, which
        // the kernel does for zero-copy sockets only; in copy mode busy_poll spins on the
        // rings (no syscall while idle) and the kernel's NAPI keeps receiving.
        let napi_busy_poll = self.cfg.busy_poll && self.ports.zero_copy;
        if napi_busy_poll {
            for p in [&self.ports.inside, &self.ports.outside] {
                // One busy poll runs the NAPI poll twice (the poll, then one more to
                // re-arm): half a batch each fills the RX ring with one batch.
                if let Err(e) = p.set_busy_poll((self.cfg.batch / 2).max(1)) {
                    tracing::warn!("busy polling on {}: {e}; the kernel's NAPI thread/softirq receives instead", p.ifname);
                }
            }
        }
        let mut published_ms = 0;
        // With busy_poll: when the rings went empty (one clock read per empty round, none
        // per packet).
        let mut idle_since: Option<std::time::Instant> = None;
        while !self.shared.stop.load(Ordering::Relaxed) {
            if napi_busy_poll {
                // Run the queues' NAPI polls (driver receive + XDP) here, in our context:
                // reception is paced by us, not by a NAPI thread competing for the core.
                self.ports.inside.kick_rx();
                self.ports.outside.kick_rx();
            }
            let got = self.poll_once(area, &mut descs);
            if got == 0 {
                self.publish_stats();
                if !self.cfg.busy_poll {
                    self.sleep();
                } else if !self.cfg.busy_poll_idle.is_zero() {
                    let now = std::time::Instant::now();
                    let since = *idle_since.get_or_insert(now);
                    if now.duration_since(since) >= self.cfg.busy_poll_idle {
                        // Idle: sleep until a packet comes. The kernel's NAPI takes the
                        // queue back within the deferral timeout and wakes us.
                        self.sleep();
                        idle_since = None;
                    } else {
                        std::hint::spin_loop();
                    }
                } else {
                    std::hint::spin_loop();
                }
            } else {
                idle_since = None;
                self.batch.inc(C::Batches);
                // Counters are published a few times per clock tick, not per batch.
                let now = self.shared.clock.now_ms();
                if now != published_ms {
                    published_ms = now;
                    self.publish_stats();
                }
            }
        }
        self.drain(area, &mut descs);
    }

    /// One pass: receive a batch on both sides, handle it, transmit, reap completions,
    /// refill. Returns the number of frames received.
    fn poll_once(&mut self, area: &mut Area, descs: &mut ArrayVec<XdpDesc, MAX_BATCH>) -> usize {
        let batch = (self.cfg.batch as usize).clamp(1, MAX_BATCH);
        let now_ms = self.shared.clock.now_ms();
        let mut got = 0;
        for side in [Side::Inside, Side::Outside] {
            descs.clear();
            {
                let mut r = self.port(side).rx.receive(batch as u32);
                while let Some(d) = r.read() {
                    descs.push(d);
                }
                r.release();
            }
            got += descs.len();
            self.batch.add(
                if side == Side::Inside {
                    C::RxInside
                } else {
                    C::RxOutside
                },
                descs.len() as u64,
            );
            for (i, d) in descs.iter().enumerate() {
                // The kernel copied the next frames in a while ago; start loading the
                // one after next while this one is handled.
                if let Some(n) = descs.get(i + PREFETCH_AHEAD) {
                    area.prefetch(n.addr, n.len);
                }
                self.handle_frame(area, side, *d, now_ms);
            }
        }
        self.flush_tx();
        self.reap(Side::Inside);
        self.reap(Side::Outside);
        self.refill(Side::Inside);
        self.refill(Side::Outside);
        if now_ms >= self.last_expire_ms + 100 {
            self.last_expire_ms = now_ms;
            self.reasm.expire(now_ms);
            self.report_reasm();
        }
        got
    }

    fn publish_stats(&mut self) {
        if !self.batch.is_empty() {
            self.stats.add(&self.batch);
            self.batch.clear();
        }
    }

    /// Stopping: the daemon has already emptied our XSKMAP slots (new packets take the
    /// kernel path), so finish what is in the RX rings and let the TX rings empty before
    /// the sockets close — nothing in flight is lost.
    fn drain(&mut self, area: &mut Area, descs: &mut ArrayVec<XdpDesc, MAX_BATCH>) {
        let mut empty_rounds = 0;
        for _ in 0..1000 {
            if self.poll_once(area, descs) == 0 {
                empty_rounds += 1;
                if empty_rounds >= 3 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            } else {
                empty_rounds = 0;
            }
        }
        for _ in 0..200 {
            self.flush_tx();
            if self.pending.iter().all(|q| q.is_empty())
                && self.ports.inside.tx.pending() == 0
                && self.ports.outside.tx.pending() == 0
            {
                break;
            }
            let _ = self.ports.inside.kick_tx();
            let _ = self.ports.outside.kick_tx();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // Still queued after 200 ms of a stalled kernel: dropped, counted.
        for i in 0..2 {
            for d in std::mem::take(&mut self.pending[i]) {
                self.batch.inc(C::DropTxRingFull);
                self.free.push(d.addr);
            }
        }
        self.reap(Side::Inside);
        self.reap(Side::Outside);
        self.publish_stats();
    }

    /// Nothing to do: wait in poll() until a socket has packets (at most 100 ms, to see
    /// the stop flag). With transmissions still queued (the TX ring was full), also wait
    /// for room in that ring (POLLOUT, which in copy mode also makes the kernel transmit)
    /// and retry within a millisecond.
    fn sleep(&mut self) {
        let waiting_tx = |q: &ArrayVec<XdpDesc, { 2 * MAX_BATCH }>| {
            if q.is_empty() {
                0
            } else {
                libc::POLLOUT
            }
        };
        let mut fds = [
            libc::pollfd {
                fd: self.ports.inside.fd(),
                events: libc::POLLIN | waiting_tx(&self.pending[0]),
                revents: 0,
            },
            libc::pollfd {
                fd: self.ports.outside.fd(),
                events: libc::POLLIN | waiting_tx(&self.pending[1]),
                revents: 0,
            },
        ];
        let timeout = if self.pending.iter().all(|q| q.is_empty()) {
            100
        } else {
            1
        };
        // SAFETY: valid array of pollfd.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
        self.batch.inc(C::Wakeups);
    }

    /// Returns completed TX frames to the free list.
    fn reap(&mut self, side: Side) {
        let mut freed: ArrayVec<u64, { 4 * MAX_BATCH }> = ArrayVec::new();
        {
            let p = self.port(side);
            let mut c = p.completion.complete(4 * MAX_BATCH as u32);
            while let Some(a) = c.read() {
                freed.push(a);
            }
            c.release();
        }
        for a in freed {
            self.free.push(a);
        }
    }

    /// Keeps the fill ring full from the free list.
    fn refill(&mut self, side: Side) {
        let want = {
            let cap = self.cfg.sizes.fill;
            let p = self.port(side);
            cap.saturating_sub(p.fill.pending())
        };
        if want == 0 {
            return;
        }
        let n = (want as usize).min(self.free.len());
        if n < want as usize {
            self.batch.inc(C::FillStarved);
        }
        if n == 0 {
            return;
        }
        let mut addrs: ArrayVec<u64, { 4 * MAX_BATCH }> = ArrayVec::new();
        for _ in 0..n.min(addrs.capacity()) {
            match self.free.pop() {
                Some(a) => addrs.push(a),
                None => break,
            }
        }
        let p = match side {
            Side::Inside => &mut self.ports.inside,
            Side::Outside => &mut self.ports.outside,
        };
        let done = {
            let mut w = p.fill.fill(addrs.len() as u32);
            let n = w.insert(addrs.iter().copied());
            w.commit();
            n
        };
        // Zero-copy drivers that ran out of buffers wait for a wakeup (copy mode never asks).
        if done > 0 && !self.cfg.busy_poll && p.fill.needs_wakeup() {
            p.kick_rx();
        }
        for a in &addrs[done as usize..] {
            self.free.push(*a);
        }
    }

    /// Puts the batch's TX descriptors into the rings and kicks the kernel.
    fn flush_tx(&mut self) {
        for (i, side) in [Side::Inside, Side::Outside].into_iter().enumerate() {
            if self.pending[i].is_empty() {
                continue;
            }
            let (p, pending) = match side {
                Side::Inside => (&mut self.ports.inside, &mut self.pending[0]),
                Side::Outside => (&mut self.ports.outside, &mut self.pending[1]),
            };
            let sent = {
                let mut w = p.tx.transmit(pending.len() as u32);
                let n = w.insert(pending.iter().copied());
                w.commit();
                n as usize
            };
            // What the ring could not take stays queued (the kernel is behind: a full
            // socket send buffer or a slow device); it goes first next time. Only a
            // packet that finds this queue full too is dropped (`queue_tx`).
            pending.drain(..sent);
            self.batch.add(
                if side == Side::Inside {
                    C::TxInside
                } else {
                    C::TxOutside
                },
                sent as u64,
            );
            // Copy mode needs a kick to transmit, and one kick sends at most a few dozen
            // frames: kick while the kernel makes progress (a kick that moves nothing —
            // socket send buffer full, device busy — ends it; the next batch retries).
            let mut left = p.tx.pending();
            let mut kicks = 0;
            while left > 0 && p.tx.needs_wakeup() && kicks < MAX_TX_KICKS {
                if let Err(e) = p.kick_tx() {
                    tracing::debug!("TX kick on {}: {e}", p.ifname);
                    break;
                }
                kicks += 1;
                let now = p.tx.pending();
                if now >= left {
                    break;
                }
                left = now;
            }
            self.batch.add(C::TxKicks, kicks);
        }
    }

    /// Turns the reassembler's monotonic stats into counter increments, and publishes the
    /// gauges (reassembly memory, frames).
    fn report_reasm(&mut self) {
        let s = *self.reasm.stats();
        let p = std::mem::replace(&mut self.reasm_reported, s);
        let b = &mut self.batch;
        b.add(C::ReasmOverlap, s.overlaps - p.overlaps);
        b.add(C::ReasmTimeout, s.timeouts - p.timeouts);
        b.add(C::ReasmEvicted, s.evictions - p.evictions);
        b.add(C::ReasmTooBig, s.too_big - p.too_big);
        b.add(
            C::ReasmTooManyFragments,
            s.too_many_fragments - p.too_many_fragments,
        );
        b.add(C::ReasmInconsistent, s.inconsistent - p.inconsistent);
        b.add(C::ReasmPoisoned, s.poisoned - p.poisoned);
        b.add(C::ReasmNoSlot, s.no_slot - p.no_slot);
        b.add(C::ReasmMalformed, s.malformed - p.malformed);
        let st = &self.stats;
        st.reasm_memory
            .store(self.reasm.memory_in_use() as u64, Ordering::Relaxed);
        st.reasm_memory_limit
            .store(self.reasm.limits().memory as u64, Ordering::Relaxed);
        st.reasm_in_progress
            .store(self.reasm.in_progress() as u64, Ordering::Relaxed);
        st.free_frames
            .store(self.free.len() as u64, Ordering::Relaxed);
    }

    fn handle_frame(&mut self, area: &mut Area, side: Side, d: XdpDesc, now_ms: u64) {
        let base = frame_base(d.addr);
        let off = (d.addr - base) as usize;
        let Some(frame) = area.frame_mut(d.addr) else {
            self.batch.inc(C::DropBadFrame);
            return;
        };
        let len = (d.len as usize).min(FRAME_SIZE as usize - off);
        let buf = &mut frame[off..];
        let layout = match wire::parse(&buf[..len], Link::Ethernet) {
            Ok(l) => l,
            Err(_) => {
                self.batch.inc(C::DropBadFrame);
                self.free.push(d.addr);
                return;
            }
        };
        if layout.fragment.is_some() {
            self.batch.inc(C::FragRx);
            let done = match self.reasm.add(&buf[..len], &layout, now_ms) {
                Ok(Some(r)) => {
                    // Scratch holds 64 KiB + 4 KiB: any IP datagram fits.
                    let bytes = r.bytes();
                    let n = bytes.len();
                    self.scratch[..n].copy_from_slice(bytes);
                    Some((n, r.max_fragment_len()))
                }
                Ok(None) => None,
                Err(_) => None, // counted in the reassembler's stats
            };
            self.report_reasm();
            // The fragment's bytes are copied into the reassembly buffer: frame is free.
            self.free.push(d.addr);
            if let Some((n, max_frag)) = done {
                self.batch.inc(C::ReasmComplete);
                let mut scratch = std::mem::take(&mut self.scratch);
                if let Ok(layout) = wire::parse(&scratch[..n], Link::Ethernet) {
                    self.handle_packet(
                        area,
                        side,
                        &mut scratch,
                        layout,
                        Loc::Scratch,
                        Some(max_frag),
                    );
                } else {
                    self.batch.inc(C::DropBadFrame);
                }
                self.scratch = scratch;
            }
            return;
        }
        // Reborrow the frame as an owned-for-now buffer: split the borrow of `area`.
        let ptr = buf.as_mut_ptr();
        let cap = buf.len();
        // SAFETY: `buf` is this frame's memory, exclusively ours until we hand the
        // descriptor back; `handle_packet` only touches `area` through other frames.
        let buf = unsafe { std::slice::from_raw_parts_mut(ptr, cap) };
        self.handle_packet(area, side, buf, layout, Loc::Frame(d.addr), None);
    }

    /// Decides, rewrites and emits one whole packet in `buf` (packet + tailroom).
    fn handle_packet(
        &mut self,
        area: &mut Area,
        side: Side,
        buf: &mut [u8],
        layout: Layout,
        loc: Loc,
        reassembled: Option<usize>,
    ) {
        let Some((sport, dport, _, _)) = layout.udp(buf) else {
            self.slow(buf, &layout, loc, C::SlowNotUdp);
            return;
        };
        let dp = self.dataplane.current(&self.shared.dataplane);
        let cfg = &dp.config;
        let ext = dp.external;
        let snat = cfg.l3 == crate::nat::L3Mode::Snat;
        let decision = match side {
            Side::Inside => {
                self.batch.inc(C::Outbound);
                decide::outbound(cfg, &ext, layout.src, layout.dst)
            }
            Side::Outside => {
                self.batch.inc(C::Inbound);
                let flow = if snat && dp.network_rules && cfg.is_external(layout.dst, &ext) {
                    let key = FlowKey {
                        external: layout.dst,
                        local_port: dport,
                        remote: layout.src,
                        remote_port: sport,
                    };
                    let hit = self.shared.flows.lookup(&key, self.shared.clock.now_s());
                    self.batch.inc(if hit.is_some() {
                        C::FlowHit
                    } else {
                        C::FlowMiss
                    });
                    hit
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
            Decision::Internal => return self.slow(buf, &layout, loc, C::SlowInternal),
            Decision::NoMapping => return self.slow(buf, &layout, loc, C::SlowNoMapping),
        };
        // Outbound through a network rule: remember the mapping for the replies.
        if let (Direction::Outbound, Some(new_src), true) = (direction, l3.src, dp.network_rules) {
            if cfg
                .rule_for(layout.src)
                .is_some_and(|r| r.internal.single_host().is_none())
            {
                let key = FlowKey {
                    external: new_src,
                    local_port: sport,
                    remote: layout.dst,
                    remote_port: dport,
                };
                match self
                    .shared
                    .flows
                    .insert(key, layout.src, self.shared.clock.now_s())
                {
                    InsertResult::Inserted => self.batch.inc(C::FlowInserted),
                    InsertResult::Refreshed => self.batch.inc(C::FlowRefreshed),
                    InsertResult::Collision { .. } => {
                        self.batch.inc(C::FlowCollision);
                        return self.slow(buf, &layout, loc, C::SlowCollision);
                    }
                    InsertResult::Full => self.batch.inc(C::FlowFull),
                }
            }
        }
        let ctx = Context {
            config: cfg,
            external: ext,
            direction,
            internal,
        };
        let malformed_drop = cfg.malformed == crate::nat::MalformedPolicy::Drop;
        let r = match rewrite_packet(buf, &layout, &ctx, l3) {
            Ok(r) => r,
            Err(PacketError::NotUdp) | Err(PacketError::FamilyMismatch) => {
                return self.slow(buf, &layout, loc, C::SlowNotUdp);
            }
        };
        self.count_sip(r.sip, r.family_mismatch, r.content_length_short);
        if reassembled.is_some() && !matches!(r.sip, Outcome::Rewritten(_) | Outcome::Unchanged) {
            self.batch.inc(C::ReasmNonSip);
        }
        if matches!(r.sip, Outcome::Malformed(_)) && malformed_drop {
            self.batch.inc(C::DropMalformedPolicy);
            self.release(loc);
            return;
        }
        if r.sip == Outcome::TooBig {
            // Does not fit the frame: redo it in the scratch buffer, then fragment.
            if let Loc::Frame(_) = loc {
                let n = layout.ip_end;
                let mut scratch = std::mem::take(&mut self.scratch);
                scratch[..n].copy_from_slice(&buf[..n]);
                self.release(loc);
                self.handle_packet(area, side, &mut scratch, layout, Loc::Scratch, reassembled);
                self.scratch = scratch;
            } else {
                self.batch.inc(C::DropRefragment);
            }
            return;
        }
        let len = r.len;
        if !decrement_ttl(buf, &layout) {
            self.batch.inc(C::DropTtl);
            self.release(loc);
            return;
        }
        self.emit(area, side.other(), buf, len, &layout, loc, reassembled);
    }

    fn count_sip(&mut self, o: Outcome, family_mismatch: u16, cl_short: bool) {
        let b = &mut self.batch;
        match o {
            Outcome::Rewritten(ch) => {
                b.inc(C::SipRewritten);
                count_changes(b, &ch);
            }
            Outcome::Unchanged => b.inc(C::SipUnchanged),
            Outcome::NotSip(k) => b.inc(match k {
                NotSip::Empty => C::NotSipEmpty,
                NotSip::KeepAlive => C::NotSipKeepalive,
                NotSip::Stun => C::NotSipStun,
                NotSip::Other => C::NotSipOther,
            }),
            Outcome::Malformed(m) => b.inc(match m {
                Malformed::BadStartLine => C::MalformedBadStartLine,
                Malformed::BadVersion => C::MalformedBadVersion,
                Malformed::BadHeaderLine => C::MalformedBadHeaderLine,
                Malformed::BadContentLength => C::MalformedBadContentLength,
                Malformed::DuplicateContentLength => C::MalformedDuplicateContentLength,
                Malformed::TooManyAddresses => C::MalformedTooManyAddresses,
            }),
            Outcome::TooBig => b.inc(C::SipTooBig),
        }
        b.add(C::FamilyMismatch, u64::from(family_mismatch));
        if cl_short {
            b.inc(C::ContentLengthShort);
        }
    }

    /// Sends the packet out of `egress`: MACs from the next-hop table (the kernel slow path
    /// while the neighbour is unknown), fragments when it exceeds the MTU and may be
    /// fragmented, ICMP to the source otherwise.
    ///
    /// `reassembled`: the packet arrived fragmented (largest fragment the sender used); it
    /// is refragmented whatever its family or DF.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        area: &mut Area,
        egress: Side,
        buf: &mut [u8],
        len: usize,
        layout: &Layout,
        loc: Loc,
        reassembled: Option<usize>,
    ) {
        let dst = dst_of(buf, layout);
        let (egress_ifindex, port_mtu) = {
            let p = self.port(egress);
            (p.ifindex, p.mtu)
        };
        let hop = match self.nexthops.current(&self.shared.nexthops).get(dst) {
            Some(h) if h.ifindex == egress_ifindex => Some(*h),
            Some(_) => return self.slow_len(buf, layout, len, loc, C::SlowOtherInterface),
            None => {
                self.shared.resolver.request(dst);
                None
            }
        };
        let ip_len = len - layout.l3;
        let mtu = hop.map_or(port_mtu, |h| h.mtu as usize);
        if ip_len <= mtu {
            let Some(hop) = hop else {
                return self.slow_len(buf, layout, len, loc, C::SlowNeighbor);
            };
            buf[0..6].copy_from_slice(&hop.dst_mac);
            buf[6..12].copy_from_slice(&hop.src_mac);
            match loc {
                Loc::Frame(addr) => self.queue_tx(egress, addr, len),
                Loc::Scratch => {
                    let Some(addr) = self.free.pop() else {
                        self.batch.inc(C::DropNoFrame);
                        return;
                    };
                    let Some(frame) = area.frame_mut(addr) else {
                        return;
                    };
                    frame[..len].copy_from_slice(&buf[..len]);
                    self.queue_tx(egress, addr, len);
                }
            }
            return;
        }
        // Too big for the egress link. A packet that arrived whole and has DF (or is IPv6)
        // must not be fragmented by a router: tell the source, as the kernel would.
        if reassembled.is_none() && (layout.ipv6 || frag::ipv4_df(&buf[..len], layout.l3)) {
            let growth = ip_len.saturating_sub(layout.ip_end - layout.l3);
            let fit = mtu.saturating_sub(growth);
            // Quote the packet as the source sent it (its own addresses and lengths), so
            // its kernel matches the error to its socket and learns the path MTU.
            let quote = original_quote(buf, layout);
            let res = match layout.src {
                IpAddr::V6(to) => {
                    self.batch.inc(C::IcmpPacketTooBig);
                    self.shared
                        .slow
                        .icmp6_packet_too_big(to, &quote, fit as u32)
                }
                IpAddr::V4(to) => {
                    self.batch.inc(C::IcmpFragNeeded);
                    self.shared.slow.icmp_frag_needed(
                        to,
                        &quote,
                        fit.min(usize::from(u16::MAX)) as u16,
                    )
                }
            };
            if res.is_err() {
                self.batch.inc(C::SlowSendError);
            }
            self.batch.inc(C::DropTooBigDf);
            self.release(loc);
            return;
        }
        // Fragment like the sender did (never larger than the egress MTU).
        let mtu = reassembled.map_or(mtu, |m| m.clamp(1280.min(mtu), mtu));
        let ident = if layout.ipv6 {
            self.next_ident = self.next_ident.wrapping_add(1);
            self.next_ident
        } else {
            u32::from(ipv4::Packet::new_unchecked(&buf[layout.l3..len]).ident())
        };
        if let Some(h) = hop {
            buf[0..6].copy_from_slice(&h.dst_mac);
            buf[6..12].copy_from_slice(&h.src_mac);
        }
        let mut frames: ArrayVec<(u64, usize), 64> = ArrayVec::new();
        let mut slow_errors = 0u64;
        let free = &mut self.free;
        let slow = &self.shared.slow;
        let l3 = layout.l3;
        let res = frag::fragment(&buf[..len], layout.l3, mtu, ident, &mut |piece: &[u8]| {
            if hop.is_none() {
                // No neighbour yet: the kernel sends the fragments (and resolves ARP/ND).
                if slow.send_ip(&piece[l3..]).is_err() {
                    slow_errors += 1;
                }
                return true;
            }
            if frames.is_full() {
                return false;
            }
            let Some(addr) = free.pop() else { return false };
            match area.frame_mut(addr) {
                Some(f) if piece.len() <= f.len() => {
                    f[..piece.len()].copy_from_slice(piece);
                    frames.push((addr, piece.len()));
                    true
                }
                _ => {
                    free.push(addr);
                    false
                }
            }
        });
        self.batch.add(C::SlowSendError, slow_errors);
        match res {
            Ok(n) => {
                self.batch.inc(C::Refragmented);
                self.batch.add(C::FragTx, n as u64);
                if hop.is_none() {
                    self.batch.inc(C::SlowNeighbor);
                }
                for (addr, l) in frames {
                    self.queue_tx(egress, addr, l);
                }
            }
            Err(_) => {
                self.batch.inc(C::DropRefragment);
                for (addr, _) in frames {
                    self.free.push(addr);
                }
            }
        }
        self.release(loc);
    }

    fn queue_tx(&mut self, side: Side, addr: u64, len: usize) {
        let i = if side == Side::Inside { 0 } else { 1 };
        let desc = XdpDesc {
            addr,
            len: len as u32,
            options: 0,
        };
        if self.pending[i].try_push(desc).is_err() {
            // More than two batches' worth queued at once: flush now.
            self.flush_tx();
            if self.pending[i].try_push(desc).is_err() {
                self.batch.inc(C::DropTxRingFull);
                self.free.push(addr);
            }
        }
    }

    /// Hands the packet (`buf[..len]`, IP header at `layout.l3`) to the kernel through the
    /// raw socket and frees its frame.
    fn slow_len(&mut self, buf: &[u8], layout: &Layout, len: usize, loc: Loc, why: C) {
        self.batch.inc(why);
        if let Err(e) = self.shared.slow.send_ip(&buf[layout.l3..len]) {
            tracing::debug!("slow path send: {e}");
            self.batch.inc(C::SlowSendError);
        }
        self.release(loc);
    }

    /// The slow path for a packet not modified yet.
    fn slow(&mut self, buf: &[u8], layout: &Layout, loc: Loc, why: C) {
        self.slow_len(buf, layout, layout.ip_end, loc, why);
    }

    fn release(&mut self, loc: Loc) {
        if let Loc::Frame(addr) = loc {
            self.free.push(addr);
        }
    }
}

fn count_changes(b: &mut Batch, ch: &Changes) {
    b.add(C::RwRequestUri, u64::from(ch.request_uri));
    b.add(C::RwVia, u64::from(ch.via));
    b.add(C::RwContact, u64::from(ch.contact));
    b.add(C::RwRoute, u64::from(ch.route));
    b.add(C::RwRecordRoute, u64::from(ch.record_route));
    b.add(C::RwFromTo, u64::from(ch.from_to));
    b.add(C::RwSdpConnection, u64::from(ch.sdp_connection));
    b.add(C::RwSdpOrigin, u64::from(ch.sdp_origin));
    b.add(C::RwSdpRtcp, u64::from(ch.sdp_rtcp));
    b.add(C::RwSdpMediaPort, u64::from(ch.sdp_media_port));
    b.add(C::RwContentLength, u64::from(ch.content_length));
}

/// The destination address currently in the packet (after the rewrite).
fn dst_of(buf: &[u8], layout: &Layout) -> IpAddr {
    let ip = &buf[layout.l3..];
    if layout.ipv6 {
        IpAddr::V6(ipv6::Packet::new_unchecked(ip).dst())
    } else {
        IpAddr::V4(ipv4::Packet::new_unchecked(ip).dst())
    }
}

/// The start of the packet (IP header + 8 bytes, IPv4 at most 68 bytes; IPv6 header,
/// extension headers and 8 bytes) as it arrived: original addresses and lengths restored
/// after an in-place rewrite. For ICMP errors about it.
fn original_quote(buf: &[u8], layout: &Layout) -> ArrayVec<u8, 256> {
    let mut q = ArrayVec::new();
    let end = (layout.l4 + 8).min(buf.len());
    let take = (end - layout.l3).min(q.capacity());
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
    let l3 = layout.l3;
    if layout.ipv6 {
        let hl = buf[l3 + 7];
        if hl <= 1 {
            return false;
        }
        buf[l3 + 7] = hl - 1;
    } else {
        let ttl = buf[l3 + 8];
        if ttl <= 1 {
            return false;
        }
        let proto = buf[l3 + 9];
        let old = u64::from(u16::from_be_bytes([ttl, proto]));
        let new = u64::from(u16::from_be_bytes([ttl - 1, proto]));
        buf[l3 + 8] = ttl - 1;
        let c = u16::from_be_bytes([buf[l3 + 10], buf[l3 + 11]]);
        let c = checksum::update(c, old, new);
        buf[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    }
    true
}
