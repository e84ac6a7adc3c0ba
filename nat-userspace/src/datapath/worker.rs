//! One worker per queue: receives on both AF_XDP sockets, decides (outbound / inbound /
//! internal), rewrites, and transmits on the other side, in batches. Pinned to a core.
//! Per packet: no allocation, no lock, no syscall (ring operations are batched; the
//! kernel is kicked once per batch).
//!
//! Every received frame ends in exactly one place, each counted: transmitted (possibly as
//! fragments), handed to the kernel slow path (by reason), consumed into the reassembly
//! buffer (a fragment), or dropped (by reason).

use std::sync::{atomic::Ordering, Arc};

use arrayvec::ArrayVec;
use xdpilone::xdp::XdpDesc;

pub use super::pipeline::Side;
use super::{
    nexthop::{NextHops, ResolverHandle},
    pipeline::{self, Action, At, Egress, Env, Pipeline, Route},
    port::{Port, Ports, RingSizes},
    stats::{Batch, Counter, WorkerStats},
    umem::{frame_base, Area, FreeFrames, FRAME_SIZE},
    DatapathState, DataplaneSnapshot,
};
use crate::ip::reasm::ReasmLimits;
use crate::{
    snapshot::Local,
    wire::{self, Link},
};

/// Most descriptors handled per ring per batch.
pub const MAX_BATCH: usize = 256;

/// Frames ahead of the one being handled whose memory is prefetched.
const PREFETCH_AHEAD: usize = 2;

/// Most `sendto` kicks per side per batch (copy mode sends up to 32 frames per kick).
const MAX_TX_KICKS: u64 = 64;

/// Static parameters of a worker.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub queue: u32,
    pub inside: String,
    pub outside: String,
    pub frames: u32,
    pub sizes: RingSizes,
    pub batch: u32,
    /// Frames each fill ring is kept at in copy mode (`[datapath] copy_fill`, 0 resolved
    /// to 4 × batch); zero-copy sockets keep `sizes.fill`.
    pub copy_fill: u32,
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
    shared: Arc<DatapathState>,
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
    // Distinct per worker so two workers never reuse an IPv6 fragment identification.
    let ident_seed = (cfg.queue << 24) ^ 0x0051_9700;
    let mut w = Worker {
        free: FreeFrames::new(cfg.frames),
        pipe: Pipeline::new(cfg.reasm, ident_seed),
        dataplane: Local::new(&shared.dataplane),
        nexthops: Local::new(&shared.nexthops),
        batch: Batch::default(),
        pending: [ArrayVec::new(), ArrayVec::new()],
        cfg,
        shared,
        stats,
        ports,
        last_expire_ms: 0,
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
    shared: Arc<DatapathState>,
    stats: Arc<WorkerStats>,
    ports: Ports,
    free: FreeFrames,
    /// The per-packet decision, reassembly and scratch buffer.
    pipe: Pipeline,
    dataplane: Local<DataplaneSnapshot>,
    nexthops: Local<NextHops>,
    batch: Batch,
    /// TX descriptors waiting for the end of the batch, per side.
    pending: [ArrayVec<XdpDesc, { 2 * MAX_BATCH }>; 2],
    last_expire_ms: u64,
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
                self.batch.inc(Counter::Batches);
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
                    Counter::RxInside
                } else {
                    Counter::RxOutside
                },
                descs.len() as u64,
            );
            for (i, d) in descs.iter().enumerate() {
                // The kernel copied the next frames in a while ago; start loading the
                // one after next while this one is handled.
                if let Some(n) = descs.get(i + PREFETCH_AHEAD) {
                    area.prefetch(n.addr, n.len);
                }
                // The next frame's headers arrived with the prefetch above one round ago:
                // start loading its binding-table slots too.
                if let Some(n) = descs.get(i + 1) {
                    let off = (n.addr - frame_base(n.addr)) as usize;
                    if let Some(frame) = area.frame(n.addr).and_then(|f| f.get(off..)) {
                        super::bindings::prefetch(
                            self.dataplane.cached(),
                            &self.shared.flows,
                            &self.shared.napt,
                            side,
                            frame,
                        );
                    }
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
            self.pipe.expire(now_ms, &mut self.batch);
            self.publish_gauges();
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
                self.batch.inc(Counter::DropTxRingFull);
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
        self.batch.inc(Counter::Wakeups);
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

    /// Tops the fill ring up from the free list: to the whole ring in zero-copy mode, to
    /// `copy_fill` frames in copy mode.
    fn refill(&mut self, side: Side) {
        let want = {
            // In copy mode the kernel copies each packet into the frame at the fill
            // ring's head: a shallow ring gives it a frame freed a moment ago (the free
            // list is a stack), whose lines are still in this core's cache.
            let cap = if self.ports.zero_copy {
                self.cfg.sizes.fill
            } else {
                self.cfg.copy_fill.min(self.cfg.sizes.fill)
            };
            let p = self.port(side);
            cap.saturating_sub(p.fill.pending())
        };
        if want == 0 {
            return;
        }
        let n = (want as usize).min(self.free.len());
        if n < want as usize {
            self.batch.inc(Counter::FillStarved);
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
                    Counter::TxInside
                } else {
                    Counter::TxOutside
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
            self.batch.add(Counter::TxKicks, kicks);
        }
    }

    /// Publishes the gauges (reassembly memory, frames).
    fn publish_gauges(&mut self) {
        let r = self.pipe.reassembler();
        let st = &self.stats;
        st.reasm_memory
            .store(r.memory_in_use() as u64, Ordering::Relaxed);
        st.reasm_memory_limit
            .store(r.limits().memory as u64, Ordering::Relaxed);
        st.reasm_in_progress
            .store(r.in_progress() as u64, Ordering::Relaxed);
        st.free_frames
            .store(self.free.len() as u64, Ordering::Relaxed);
    }

    fn handle_frame(&mut self, area: &mut Area, side: Side, d: XdpDesc, now_ms: u64) {
        let off = (d.addr - frame_base(d.addr)) as usize;
        let Some(frame) = area.frame_mut(d.addr) else {
            // Not an address of our area: nothing to recycle.
            self.batch.inc(Counter::DropBadFrame);
            return;
        };
        let len = (d.len as usize).min(FRAME_SIZE as usize - off);
        let buf = &mut frame[off..];
        // Reborrow the frame apart from `area`: the actions take other frames from it.
        let (ptr, cap) = (buf.as_mut_ptr(), buf.len());
        // SAFETY: `buf` is this frame's memory, exclusively ours until we hand the
        // descriptor back; `carry_out` only touches `area` through other frames (taken
        // from the free list, which does not hold this one).
        let buf = unsafe { std::slice::from_raw_parts_mut(ptr, cap) };
        let hops = self.nexthops.current(&self.shared.nexthops);
        let egress = WorkerEgress {
            hops,
            resolver: &self.shared.resolver,
            inside: (self.ports.inside.ifindex, self.ports.inside.mtu),
            outside: (self.ports.outside.ifindex, self.ports.outside.mtu),
        };
        let env = Env {
            dataplane: self.dataplane.current(&self.shared.dataplane),
            flows: &self.shared.flows,
            napt: &self.shared.napt,
            media: self.shared.media.as_ref().map(|m| m.env()),
            egress: &egress,
            link: Link::Ethernet,
            now_ms,
        };
        let action = self.pipe.process(&env, side, buf, len, &mut self.batch);
        self.carry_out(area, action, d.addr, buf);
    }

    /// Does what the pipeline decided for the frame at `addr` (its bytes: `frame`), and
    /// recycles that frame unless it is transmitted as it is.
    fn carry_out(&mut self, area: &mut Area, action: Action, addr: u64, frame: &[u8]) {
        let pipe = &self.pipe;
        let bytes = |at: At, len: usize| match at {
            At::Frame => &frame[..len],
            At::Scratch => &pipe.scratch()[..len],
        };
        match action {
            Action::Tx {
                at: At::Frame,
                side,
                len,
            } => {
                self.queue_tx(side, addr, len);
                return;
            }
            Action::Tx {
                at: At::Scratch,
                side,
                len,
            } => {
                let pkt = &self.pipe.scratch()[..len];
                if let Some(a) = copy_into_frame(area, &mut self.free, pkt, &mut self.batch) {
                    self.queue_tx(side, a, len);
                }
            }
            Action::Fragment {
                at,
                side,
                l3,
                len,
                mtu,
                ident,
                via_kernel,
            } => {
                let frames = fragment(
                    area,
                    &mut self.free,
                    &mut self.batch,
                    &self.shared.slow,
                    bytes(at, len),
                    l3,
                    (mtu, ident),
                    via_kernel,
                );
                for (a, l) in frames {
                    self.queue_tx(side, a, l);
                }
            }
            Action::Kernel {
                at,
                l3,
                len,
                split,
                reason: _,
            } => {
                let pkt = bytes(at, len);
                let slow = &self.shared.slow;
                let mut errors = 0u64;
                let res = pipeline::kernel_pieces(pkt, l3, split, &mut |ip: &[u8]| {
                    if let Err(e) = slow.send_ip(ip) {
                        tracing::debug!("slow path send: {e}");
                        errors += 1;
                    }
                });
                self.batch.add(Counter::SlowSendError, errors);
                if res.is_err() {
                    self.batch.inc(Counter::DropRefragment);
                }
            }
            Action::IcmpTooBig { to, mtu } => {
                let quote = self.pipe.quote();
                let res = match to {
                    std::net::IpAddr::V6(to) => {
                        self.shared.slow.icmp6_packet_too_big(to, quote, mtu)
                    }
                    std::net::IpAddr::V4(to) => self.shared.slow.icmp_frag_needed(
                        to,
                        quote,
                        mtu.min(u32::from(u16::MAX)) as u16,
                    ),
                };
                if res.is_err() {
                    self.batch.inc(Counter::SlowSendError);
                }
            }
            Action::PassFragments { held, l3, len } => {
                let mut errors = 0u64;
                for k in 0..held {
                    let Some(f) = self.pipe.held_fragment(k) else {
                        break;
                    };
                    let sent = wire::parse(f, Link::Ethernet)
                        .ok()
                        .and_then(|l| f.get(l.l3..l.ip_end))
                        .map(|ip| self.shared.slow.send_ip(ip));
                    if !matches!(sent, Some(Ok(()))) {
                        errors += 1;
                    }
                }
                if frame
                    .get(l3..len)
                    .map(|ip| self.shared.slow.send_ip(ip))
                    .is_none_or(|r| r.is_err())
                {
                    errors += 1;
                }
                self.batch.add(Counter::SlowSendError, errors);
            }
            Action::Consumed | Action::Drop(_) => {}
        }
        self.free.push(addr);
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
                self.batch.inc(Counter::DropTxRingFull);
                self.free.push(addr);
            }
        }
    }
}

/// The worker's egress: the resolver's next hops (unknown ones are requested), the
/// ports' MTUs.
struct WorkerEgress<'a> {
    hops: &'a NextHops,
    resolver: &'a ResolverHandle,
    inside: (u32, usize),
    outside: (u32, usize),
}

impl Egress for WorkerEgress<'_> {
    fn route(&self, egress: Side, dst: std::net::IpAddr) -> Route {
        let (ifindex, mtu) = match egress {
            Side::Inside => self.inside,
            Side::Outside => self.outside,
        };
        match self.hops.get(dst) {
            Some(h) if h.ifindex == ifindex => Route::Direct {
                macs: Some((h.dst_mac, h.src_mac)),
                mtu: h.mtu as usize,
            },
            Some(_) => Route::OtherInterface,
            None => {
                self.resolver.request(dst);
                Route::Unresolved { mtu }
            }
        }
    }
}

/// Splits `pkt` into fragments of at most `mtu` in free frames (returned, to be queued),
/// or hands them to the kernel (neighbour unknown). Counted; on failure the frames taken
/// go back.
#[allow(clippy::too_many_arguments)]
fn fragment(
    area: &mut Area,
    free: &mut FreeFrames,
    batch: &mut Batch,
    slow: &super::slowpath::SlowPath,
    pkt: &[u8],
    l3: usize,
    (mtu, ident): (usize, u32),
    via_kernel: bool,
) -> ArrayVec<(u64, usize), 64> {
    let mut frames: ArrayVec<(u64, usize), 64> = ArrayVec::new();
    let mut slow_errors = 0u64;
    let res = crate::ip::frag::fragment(pkt, l3, mtu, ident, &mut |piece: &[u8]| {
        if via_kernel {
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
    batch.add(Counter::SlowSendError, slow_errors);
    match res {
        Ok(n) => {
            batch.inc(Counter::Refragmented);
            batch.add(Counter::FragTx, n as u64);
            frames
        }
        Err(_) => {
            batch.inc(Counter::DropRefragment);
            for (addr, _) in frames {
                free.push(addr);
            }
            ArrayVec::new()
        }
    }
}

/// Copies `pkt` into a free frame and returns its address; counted when none can be had
/// (`drop_no_free_frame`, or `drop_unparsable_frame` for an address outside the area,
/// which is not put back: it is not a frame).
fn copy_into_frame(
    area: &mut Area,
    free: &mut FreeFrames,
    pkt: &[u8],
    b: &mut Batch,
) -> Option<u64> {
    let Some(addr) = free.pop() else {
        b.inc(Counter::DropNoFrame);
        return None;
    };
    match area.frame_mut(addr) {
        Some(f) if pkt.len() <= f.len() => {
            f[..pkt.len()].copy_from_slice(pkt);
            Some(addr)
        }
        Some(_) => {
            free.push(addr);
            b.inc(Counter::DropRefragment);
            None
        }
        None => {
            b.inc(Counter::DropBadFrame);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regression_bug10_copy_into_frame_never_loses_a_packet_silently() {
        let mut area = Area::new(2).unwrap();
        let mut b = Batch::default();
        // Normal case: a frame is taken and holds the bytes.
        let mut free = FreeFrames::new(2);
        let a = copy_into_frame(&mut area, &mut free, b"abc", &mut b).unwrap();
        assert_eq!(&area.frame_mut(a).unwrap()[..3], b"abc");
        assert_eq!(free.len(), 1);
        // A free list that names an address outside the area (the path that used to
        // return without a count): counted, not put back.
        let mut free = FreeFrames::new(4);
        while free.pop().is_some() {}
        free.push(u64::from(FRAME_SIZE)); // frame 1: in the area
        free.push(3 * u64::from(FRAME_SIZE)); // frame 3: past its end
        let before = b.get(Counter::DropBadFrame);
        assert_eq!(copy_into_frame(&mut area, &mut free, b"abc", &mut b), None);
        assert_eq!(b.get(Counter::DropBadFrame), before + 1);
        assert_eq!(free.len(), 1);
        // No frame at all: counted.
        let mut free = FreeFrames::new(0);
        assert_eq!(copy_into_frame(&mut area, &mut free, b"abc", &mut b), None);
        assert_eq!(b.get(Counter::DropNoFrame), 1);
        // Too long for a frame: the frame goes back, the drop is counted.
        let mut free = FreeFrames::new(1);
        let big = vec![0u8; FRAME_SIZE as usize + 1];
        assert_eq!(copy_into_frame(&mut area, &mut free, &big, &mut b), None);
        assert_eq!(free.len(), 1);
    }
}
