//! The generator: one AF_XDP TX socket per thread (per core / queue), its UMEM frames
//! written from the templates once, then per packet only the changing bytes patched (flow
//! fields, sequence, timestamp) and the UDP checksum set from the template's precomputed
//! sum. Descriptors go to the TX ring in batches; the kernel is kicked once per batch when
//! it asks (`needs_wakeup`, always in copy mode); completed frames are reused.
//!
//! Rate control: a token bucket refilled from CLOCK_MONOTONIC read once per batch (vDSO,
//! no syscall). The timestamp stamped into a batch's packets is that reading.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use arrayvec::ArrayVec;
use xdpilone::xdp::XdpDesc;

use super::template::Template;
use crate::datapath::{
    port::{RingSizes, SinglePort},
    umem::{Area, FRAME_SIZE},
};

/// Most descriptors per batch.
pub const MAX_BATCH: usize = 256;

/// `SOL_XDP` / `XDP_MAX_TX_SKB_BUDGET` (Linux 6.17+): descriptors the kernel sends per
/// `sendto` in copy mode (default 32).
const SOL_XDP: libc::c_int = 283;
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;

/// CLOCK_MONOTONIC in ns (the verifier reads the same clock).
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer; CLOCK_MONOTONIC always exists (vDSO, no syscall).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// One TX thread's job.
#[derive(Clone, Debug)]
pub struct TxPlan {
    pub ifname: String,
    pub queue: u32,
    pub cpu: Option<usize>,
    /// UMEM frames (≥ 2 × ring).
    pub frames: u32,
    /// TX ring entries (power of two).
    pub ring: u32,
    pub batch: u32,
    /// This thread's share of the rate; `None`: as fast as possible.
    pub rate_pps: Option<f64>,
    /// This thread's share of `--count`.
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    pub flows: u32,
    /// Sequence numbers: `seq_start`, `seq_start + seq_step`, ... (unique over threads).
    pub seq_start: u64,
    pub seq_step: u64,
    pub salt: u32,
}

/// Live counters of one TX thread.
#[derive(Debug, Default)]
pub struct TxCounters {
    pub sent: AtomicU64,
    pub kicks: AtomicU64,
    /// Batches that found no free frame (completions lagging: the link is the limit).
    pub starved: AtomicU64,
    /// Kicks the kernel refused with a busy error (EBUSY/ENOBUFS: device queue full).
    pub busy: AtomicU64,
    /// TX start and end, CLOCK_MONOTONIC ns (0 while not started / not ended).
    pub start_ns: AtomicU64,
    pub end_ns: AtomicU64,
    pub done: AtomicBool,
}

/// Opens the socket and prepares the frames (reporting `Ok(zero_copy)` or the error on
/// `ready`), waits for `go`, then sends until the plan is done or `stop` is set.
pub fn run(
    plan: TxPlan,
    templates: Arc<Vec<Template>>,
    counters: Arc<TxCounters>,
    stop: Arc<AtomicBool>,
    go: Arc<AtomicBool>,
    ready: std::sync::mpsc::Sender<Result<bool, String>>,
) {
    if let Some(cpu) = plan.cpu {
        crate::sys::pin_to_cpu(cpu);
    }
    let fail = |what: String| {
        counters.done.store(true, Ordering::Release);
        let _ = ready.send(Err(what));
    };
    let nt = templates.len().max(1) as u64;
    let layout = FrameLayout::new(plan.frames, nt, u64::from(plan.flows.max(1)));
    let mut area = match Area::new(layout.frames) {
        Ok(a) => a,
        Err(e) => return fail(format!("cannot map {} UMEM frames: {e}", layout.frames)),
    };
    let sp = match SinglePort::open(&area, &plan.ifname, plan.queue, RingSizes::new(plan.ring)) {
        Ok(p) => p,
        Err(e) => {
            return fail(format!(
                "cannot open an AF_XDP socket on {} queue {}: {e}",
                plan.ifname, plan.queue
            ))
        }
    };
    set_tx_budget(sp.port.fd(), plan.batch);
    // Frames written once: frame i holds template i % T and, when every (template, flow)
    // pair has its own frames, flow (i / T) % K with its fields already patched.
    let mut flow_sums = Vec::with_capacity(layout.frames as usize);
    for i in 0..layout.frames {
        let addr = u64::from(i) * u64::from(FRAME_SIZE);
        let Some(t) = templates.get((u64::from(i) % nt) as usize) else {
            return fail("no template".into());
        };
        let Some(f) = area.frame_mut(addr) else {
            return fail("UMEM frame out of range".into());
        };
        f[..t.frame.len()].copy_from_slice(&t.frame);
        if layout.static_flows {
            let flow = ((u64::from(i) / nt) % u64::from(plan.flows.max(1))) as u32;
            match t.patch_flow(f, flow, plan.salt) {
                Some(sum) => flow_sums.push(sum),
                None => return fail("template larger than a UMEM frame".into()),
            }
        }
    }
    let _ = ready.send(Ok(sp.zero_copy));
    while !go.load(Ordering::Acquire) {
        if stop.load(Ordering::Relaxed) {
            counters.done.store(true, Ordering::Release);
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let mut g = Gen {
        free: FreeFrames::new(
            layout.frames,
            if layout.static_flows {
                (nt * u64::from(plan.flows.max(1))) as usize
            } else {
                1
            },
        ),
        plan,
        templates,
        counters,
        port: sp,
        flow_sums,
    };
    g.send(&mut area, &stop);
    drop(g);
    drop(area);
}

/// Raises the per-`sendto` descriptor budget of copy mode to the batch (best effort: older
/// kernels keep 32).
fn set_tx_budget(fd: i32, batch: u32) {
    let v: u32 = batch.max(32);
    // SAFETY: setsockopt with a pointer to a local u32.
    let r = unsafe {
        libc::setsockopt(
            fd,
            SOL_XDP,
            XDP_MAX_TX_SKB_BUDGET,
            (&v as *const u32).cast(),
            std::mem::size_of::<u32>() as u32,
        )
    };
    if r != 0 {
        tracing::debug!(
            "XDP_MAX_TX_SKB_BUDGET not set ({}): the kernel sends 32 frames per kick",
            std::io::Error::last_os_error()
        );
    }
}

/// How many UMEM frames, and whether each frame keeps one flow for the whole run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLayout {
    pub frames: u32,
    /// Every (template, flow) pair has the same number of frames of its own: flow fields
    /// are written once, per packet only the sequence, the timestamp and the checksum.
    pub static_flows: bool,
}

/// Most frames a generator maps to give every (template, flow) pair its own frames
/// (64 MiB of 4 KiB frames).
pub const MAX_STATIC_FRAMES: u64 = 16384;

impl FrameLayout {
    pub fn new(wanted: u32, templates: u64, flows: u64) -> FrameLayout {
        let combos = templates * flows;
        let wanted = u64::from(wanted.max(64));
        if combos > MAX_STATIC_FRAMES {
            return FrameLayout {
                frames: wanted as u32,
                static_flows: false,
            };
        }
        // A multiple of the pairs, at least `wanted` when that fits.
        let mut n = wanted.max(combos).div_ceil(combos) * combos;
        if n > MAX_STATIC_FRAMES {
            n = MAX_STATIC_FRAMES / combos * combos;
        }
        FrameLayout {
            frames: n as u32,
            static_flows: true,
        }
    }
}

/// Free frames: a LIFO stack per (template, flow) pair, taken round-robin over the pairs.
/// Every flow takes its turn, and within a pair the frame completed last is reused first,
/// so the frames in use (the ones the kernel copies from) stay few and warm in the cache.
/// Without static flows there is one pair (a plain stack). Never allocates after `new`.
struct FreeFrames {
    stacks: Vec<Vec<u64>>,
    next: usize,
    len: usize,
}

impl FreeFrames {
    fn new(frames: u32, pairs: usize) -> FreeFrames {
        let pairs = pairs.max(1);
        let per = (frames as usize).div_ceil(pairs);
        let mut stacks: Vec<Vec<u64>> = (0..pairs).map(|_| Vec::with_capacity(per)).collect();
        for i in (0..u64::from(frames)).rev() {
            if let Some(st) = stacks.get_mut(i as usize % pairs) {
                st.push(i * u64::from(FRAME_SIZE));
            }
        }
        FreeFrames {
            stacks,
            next: 0,
            len: frames as usize,
        }
    }

    #[inline]
    fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn pop(&mut self) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        let pairs = self.stacks.len();
        for _ in 0..pairs {
            let p = self.next;
            self.next = if p + 1 == pairs { 0 } else { p + 1 };
            if let Some(a) = self.stacks.get_mut(p).and_then(Vec::pop) {
                self.len -= 1;
                return Some(a);
            }
        }
        None
    }

    #[inline]
    fn push(&mut self, addr: u64) {
        let pairs = self.stacks.len();
        let index = (addr / u64::from(FRAME_SIZE)) as usize;
        if let Some(st) = self.stacks.get_mut(index % pairs) {
            if st.len() < st.capacity() {
                st.push(addr & !u64::from(FRAME_SIZE - 1));
                self.len += 1;
            }
        }
    }
}

struct Gen {
    plan: TxPlan,
    templates: Arc<Vec<Template>>,
    counters: Arc<TxCounters>,
    free: FreeFrames,
    port: SinglePort,
    /// Per frame (static flows): the checksum sum of the frame without its per-packet
    /// slots. Empty when flows are patched per packet.
    flow_sums: Vec<u64>,
}

impl Gen {
    fn send(&mut self, area: &mut Area, stop: &AtomicBool) {
        let batch = (self.plan.batch as usize).clamp(1, MAX_BATCH);
        let nt = self.templates.len().max(1) as u64;
        let flows = u64::from(self.plan.flows.max(1));
        let start = now_ns();
        self.counters.start_ns.store(start, Ordering::Relaxed);
        let end = self
            .plan
            .duration
            .map(|d| start + d.as_nanos() as u64)
            .unwrap_or(u64::MAX);
        let limit = self.plan.count.unwrap_or(u64::MAX);
        // Token bucket: at most two batches of burst.
        let rate = self.plan.rate_pps.unwrap_or(0.0);
        let burst = (2 * batch) as f64;
        let mut tokens = 0.0;
        let mut last = start;
        let mut sent: u64 = 0;
        let mut seq = self.plan.seq_start;
        let step = self.plan.seq_step.max(1);
        let mut descs: ArrayVec<XdpDesc, MAX_BATCH> = ArrayVec::new();
        loop {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            self.reap();
            let now = now_ns();
            if now >= end || sent >= limit {
                break;
            }
            let mut n = batch as u64;
            if rate > 0.0 {
                tokens = (tokens + (now - last) as f64 * rate * 1e-9).min(burst);
                last = now;
                // Send in chunks of ~50 µs worth (at least 1, at most a batch): fewer
                // kicks than one packet per loop, no bursts that would skew latency.
                let chunk = (rate * 50e-6).clamp(1.0, batch as f64);
                if tokens < chunk {
                    let wait_ns = ((chunk - tokens) / rate * 1e9) as u64;
                    if self.port.port.tx.pending() > 0 {
                        self.kick();
                    }
                    if wait_ns > 20_000 {
                        std::thread::sleep(Duration::from_nanos(wait_ns.min(1_000_000)));
                    } else {
                        std::hint::spin_loop();
                    }
                    continue;
                }
                n = n.min(tokens as u64);
            }
            n = n.min(limit - sent).min(self.free.len() as u64);
            if n == 0 {
                // Every frame in flight: the link is the limit.
                self.counters.starved.fetch_add(1, Ordering::Relaxed);
                self.kick();
                std::hint::spin_loop();
                continue;
            }
            descs.clear();
            {
                let mut w = self.port.port.tx.transmit(n as u32);
                let room = w.capacity() as u64;
                for _ in 0..n.min(room) {
                    let Some(addr) = self.free.pop() else { break };
                    let index = addr / u64::from(FRAME_SIZE);
                    let (Some(t), Some(frame)) = (
                        self.templates.get((index % nt) as usize),
                        area.frame_mut(addr),
                    ) else {
                        continue;
                    };
                    let ok = match self.flow_sums.get(index as usize) {
                        Some(&sum) => t.patch_packet(frame, sum, seq, now),
                        None => t.patch(frame, (seq % flows) as u32, self.plan.salt, seq, now),
                    };
                    if !ok {
                        self.free.push(addr);
                        continue;
                    }
                    descs.push(XdpDesc {
                        addr,
                        len: t.frame.len() as u32,
                        options: 0,
                    });
                    seq += step;
                }
                w.insert(descs.iter().copied());
                w.commit();
            }
            let k = descs.len() as u64;
            sent += k;
            tokens -= k as f64;
            if self.port.port.tx.needs_wakeup() || !self.port.zero_copy {
                self.kick();
            }
            self.counters.sent.store(sent, Ordering::Relaxed);
        }
        self.counters.sent.store(sent, Ordering::Relaxed);
        self.counters.end_ns.store(now_ns(), Ordering::Relaxed);
        self.flush();
        self.counters.done.store(true, Ordering::Release);
    }

    /// Completed frames back to the free list.
    #[inline]
    fn reap(&mut self) {
        let mut c = self.port.port.completion.complete(4 * MAX_BATCH as u32);
        while let Some(a) = c.read() {
            self.free.push(a);
        }
        c.release();
    }

    #[inline]
    fn kick(&mut self) {
        // Copy mode sends at most the budget per call and answers EAGAIN while more is
        // pending; a busy device (EBUSY/ENOBUFS) is left for the next batch.
        for _ in 0..4 {
            if self.port.port.tx.pending() == 0 {
                break;
            }
            self.counters.kicks.fetch_add(1, Ordering::Relaxed);
            // SAFETY: sendto with no buffer on our own socket fd, non-blocking.
            let r = unsafe {
                libc::sendto(
                    self.port.port.fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if r < 0 {
                match std::io::Error::last_os_error().raw_os_error() {
                    Some(libc::EAGAIN) => continue,
                    Some(libc::EBUSY) | Some(libc::ENOBUFS) => {
                        self.counters.busy.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    _ => break,
                }
            }
        }
    }

    /// At the end: let the TX ring empty so every counted packet left.
    fn flush(&mut self) {
        for _ in 0..2000 {
            if self.port.port.tx.pending() == 0 {
                break;
            }
            self.kick();
            self.reap();
            std::thread::sleep(Duration::from_micros(500));
        }
        self.reap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_layout_gives_every_pair_the_same_share() {
        let l = FrameLayout::new(1024, 1, 64);
        assert_eq!((l.frames, l.static_flows), (1024, true));
        let l = FrameLayout::new(1024, 3, 1000);
        assert!(l.static_flows && l.frames.is_multiple_of(3000) && l.frames >= 3000);
        let l = FrameLayout::new(1024, 1, 100_000);
        assert_eq!((l.frames, l.static_flows), (1024, false));
        let l = FrameLayout::new(16384, 1, 10_000);
        assert_eq!((l.frames, l.static_flows), (10_000, true));
    }

    #[test]
    fn free_frames_rotate_over_pairs_and_reuse_the_last_completed() {
        // 8 frames, 4 pairs: frame i belongs to pair i % 4.
        let mut f = FreeFrames::new(8, 4);
        let fs = u64::from(FRAME_SIZE);
        let first: Vec<u64> = (0..4).filter_map(|_| f.pop()).map(|a| a / fs).collect();
        assert_eq!(first, vec![0, 1, 2, 3], "one frame of each pair in turn");
        f.push(2 * fs + 100); // frame 2 completes: pair 2 reuses it before frame 6
        let next: Vec<u64> = (0..4).filter_map(|_| f.pop()).map(|a| a / fs).collect();
        assert_eq!(next, vec![4, 5, 2, 7]);
        assert_eq!(f.pop().map(|a| a / fs), Some(6));
        assert_eq!(f.len(), 0);
        assert_eq!(f.pop(), None);
        // One pair: a plain stack.
        let mut s = FreeFrames::new(3, 1);
        assert_eq!(s.pop(), Some(0));
        s.push(0);
        assert_eq!(s.pop(), Some(0));
    }
}
