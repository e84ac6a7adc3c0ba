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
    umem::{Area, FreeFrames, FRAME_SIZE},
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
    let mut area = match Area::new(plan.frames) {
        Ok(a) => a,
        Err(e) => return fail(format!("cannot map {} UMEM frames: {e}", plan.frames)),
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
    // Frames written once: frame i holds template i % T.
    let nt = templates.len().max(1) as u64;
    for i in 0..plan.frames {
        let addr = u64::from(i) * u64::from(FRAME_SIZE);
        let t = &templates[(u64::from(i) % nt) as usize];
        if let Some(f) = area.frame_mut(addr) {
            f[..t.frame.len()].copy_from_slice(&t.frame);
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
        plan,
        templates,
        counters,
        free: FreeFrames::new(0),
        port: sp,
    };
    g.free = FreeFrames::new(g.plan.frames);
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

struct Gen {
    plan: TxPlan,
    templates: Arc<Vec<Template>>,
    counters: Arc<TxCounters>,
    free: FreeFrames,
    port: SinglePort,
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
        let mut tokens = if rate > 0.0 { batch as f64 } else { 0.0 };
        let mut last = start;
        let mut sent: u64 = 0;
        let mut seq = self.plan.seq_start;
        let step = self.plan.seq_step.max(1);
        let mut descs: ArrayVec<XdpDesc, MAX_BATCH> = ArrayVec::new();
        let mut since_publish = 0u32;
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
                    let t = &self.templates[((addr / u64::from(FRAME_SIZE)) % nt) as usize];
                    let Some(frame) = area.frame_mut(addr) else {
                        continue;
                    };
                    let flow = (seq % flows) as u32;
                    if !t.patch(frame, flow, self.plan.salt, seq, now) {
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
            since_publish += 1;
            if since_publish >= 16 {
                since_publish = 0;
                self.counters.sent.store(sent, Ordering::Relaxed);
            }
        }
        self.counters.sent.store(sent, Ordering::Relaxed);
        self.counters.end_ns.store(now_ns(), Ordering::Relaxed);
        self.flush();
        self.counters.done.store(true, Ordering::Release);
    }

    /// Completed frames back to the free list.
    #[inline]
    fn reap(&mut self) {
        let mut c = self
            .port
            .port
            .completion
            .complete(self.plan.frames.min(4 * MAX_BATCH as u32));
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
