//! The receive side: the steering XDP program on the receive interface (SIP port set =
//! the generator's destination port, failure mode pass) redirecting into AF_XDP sockets,
//! one per receive queue, and a thread verifying every frame (see [`super::verify`]) and
//! recording one-way latency into a histogram (the whole run's, and one per second of the
//! run for the report's per-second samples).
//!
//! The receive interface may live in another network namespace (`--rx-netns`): the thread
//! enters it with `setns(2)` before it looks the interface up, attaches XDP and binds its
//! sockets (all of which act on the calling thread's namespace). Nothing else in the
//! process changes namespace.

use std::{
    fs::File,
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
};

use hdrhistogram::Histogram;

use super::{
    gen::now_ns,
    template::CheckedField,
    verify::{verify, Expect, Reason, Verdict},
};
use crate::{
    datapath::{
        port::{RingSizes, SinglePort},
        umem::{Area, FRAME_SIZE},
    },
    xdp::{AttachMode, FailureMode, SteeringConfig, SteeringProgram},
};

/// What the receive thread does.
#[derive(Clone, Debug)]
pub struct RxPlan {
    pub ifname: String,
    /// A name under /run/netns, or a path to a netns file.
    pub netns: Option<String>,
    pub queues: Vec<u32>,
    pub frames_per_queue: u32,
    pub ring: u32,
    pub batch: u32,
    pub cpu: Option<usize>,
    pub expect: Expect,
    /// Incorrect packets kept for the report.
    pub samples: usize,
    /// CLOCK_MONOTONIC ns when sending started (0 before): second `k` of the per-second
    /// latency windows starts `k` s after it.
    pub origin_ns: Arc<AtomicU64>,
}

/// Most per-second latency windows kept (an hour).
pub const MAX_WINDOWS: usize = 3600;

/// Live counters.
#[derive(Debug, Default)]
pub struct RxCounters {
    pub received: AtomicU64,
    pub verified: AtomicU64,
    pub correct: AtomicU64,
    pub incorrect: AtomicU64,
    pub foreign: AtomicU64,
    pub by_reason: [AtomicU64; Reason::COUNT],
    /// Frames dropped by the kernel before we saw them (RX ring full, no fill buffer).
    pub kernel_dropped: AtomicU64,
}

/// One kept incorrect packet.
#[derive(Clone, Debug)]
pub struct Sample {
    pub seq: u64,
    pub reasons: Vec<Reason>,
    pub field: Option<CheckedField>,
    pub frame: Vec<u8>,
}

/// What the receive thread hands back.
pub struct RxResult {
    pub latency: Histogram<u64>,
    pub samples: Vec<Sample>,
    /// Latency per second of the run: (second since sending started, percentiles).
    pub windows: Vec<(u64, super::report::WindowLatency)>,
    /// The XDP attach mode and whether the sockets are zero-copy.
    pub xdp_mode: String,
    pub zero_copy: bool,
}

struct Queue {
    sp: SinglePort,
    area: Area,
}

fn enter_netns(ns: &str) -> std::io::Result<()> {
    let path = if ns.contains('/') {
        ns.to_string()
    } else {
        format!("/run/netns/{ns}")
    };
    let f = File::open(&path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("network namespace {path}: {e}")))?;
    // SAFETY: a valid netns fd; affects only the calling thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Sets up the receive side (reporting `Ok(())` or the error on `ready`), then receives
/// and verifies until `stop` is set.
pub fn run(
    plan: RxPlan,
    counters: Arc<RxCounters>,
    stop: Arc<AtomicBool>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) -> Option<RxResult> {
    if let Some(cpu) = plan.cpu {
        crate::sys::pin_to_cpu(cpu);
    }
    let (prog, mut queues, xdp_mode, zero_copy) = match setup(&plan) {
        Ok(v) => v,
        Err(e) => {
            let _ = ready.send(Err(e));
            return None;
        }
    };
    let _ = ready.send(Ok(()));
    let mut latency =
        Histogram::<u64>::new_with_bounds(1, 120_000_000_000, 3).expect("static bounds");
    let mut second =
        Histogram::<u64>::new_with_bounds(1, 120_000_000_000, 3).expect("static bounds");
    let mut windows = Vec::with_capacity(MAX_WINDOWS);
    let mut window: Option<u64> = None;
    let mut samples = Vec::new();
    let batch = plan.batch.clamp(1, 1024);
    let mut local = Local::default();
    let mut fds: Vec<libc::pollfd> = queues
        .iter()
        .map(|q| libc::pollfd {
            fd: q.sp.port.fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // Closes the current second's window when the clock has moved past it.
    let mut roll = |second: &mut Histogram<u64>, window: &mut Option<u64>, force: bool| {
        let origin = plan.origin_ns.load(Ordering::Relaxed);
        if origin == 0 {
            return;
        }
        let now = (now_ns().saturating_sub(origin)) / 1_000_000_000;
        if *window != Some(now) || force {
            if let (Some(w), Some(l)) = (
                *window,
                super::report::WindowLatency::from_histogram(second),
            ) {
                if windows.len() < MAX_WINDOWS {
                    windows.push((w, l));
                }
            }
            second.reset();
            *window = Some(now);
        }
    };
    loop {
        let mut got = 0;
        for q in &mut queues {
            got += receive(
                q,
                batch,
                &plan,
                &mut local,
                &mut latency,
                &mut second,
                &mut samples,
            );
        }
        roll(&mut second, &mut window, false);
        if got > 0 {
            local.publish(&counters);
            continue;
        }
        local.publish(&counters);
        if stop.load(Ordering::Relaxed) {
            break;
        }
        for f in &mut fds {
            f.revents = 0;
        }
        // SAFETY: a valid pollfd array.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 20) };
    }
    roll(&mut second, &mut window, true);
    let dropped: u64 = queues
        .iter()
        .filter_map(|q| q.sp.port.kernel_stats())
        .map(|s| s.rx_dropped + s.rx_ring_full)
        .sum();
    counters.kernel_dropped.store(dropped, Ordering::Relaxed);
    // Unregister and detach before the sockets and UMEM go.
    drop(prog);
    for q in queues {
        let Queue { sp, area } = q;
        drop(sp);
        drop(area);
    }
    Some(RxResult {
        latency,
        windows,
        samples,
        xdp_mode,
        zero_copy,
    })
}

/// Enters the namespace, loads and attaches the XDP program on the receive interface and
/// opens one AF_XDP socket per queue (fill ring full): the program, the queues, the attach
/// mode, whether every socket is zero-copy.
fn setup(plan: &RxPlan) -> Result<(SteeringProgram, Vec<Queue>, String, bool), String> {
    if let Some(ns) = &plan.netns {
        enter_netns(ns).map_err(|e| format!("cannot enter {e}"))?;
    }
    if crate::sys::if_index(&plan.ifname).is_none() {
        return Err(format!(
            "receive interface `{}` does not exist{}",
            plan.ifname,
            plan.netns
                .as_deref()
                .map(|n| format!(" in network namespace {n}"))
                .unwrap_or_default()
        ));
    }
    let mut prog = SteeringProgram::load().map_err(|e| e.to_string())?;
    prog.set_config(SteeringConfig {
        enabled: true,
        on_failure: FailureMode::Pass,
        steer_fragments: false,
    })
    .map_err(|e| e.to_string())?;
    prog.set_ports(&[plan.expect.dst_port])
        .map_err(|e| e.to_string())?;
    let mode = prog
        .attach(&plan.ifname, AttachMode::Auto)
        .map_err(|e| e.to_string())?;
    let mut queues = Vec::new();
    let mut zero_copy = true;
    for &q in &plan.queues {
        let area = Area::new(plan.frames_per_queue)
            .map_err(|e| format!("cannot map receive UMEM: {e}"))?;
        let sizes = RingSizes::new(plan.ring);
        let mut sp = SinglePort::open(&area, &plan.ifname, q, sizes).map_err(|e| {
            format!(
                "cannot open an AF_XDP socket on {} queue {q}: {e}",
                plan.ifname
            )
        })?;
        zero_copy &= sp.zero_copy;
        let n = sizes.fill.min(plan.frames_per_queue);
        let mut w = sp.port.fill.fill(n);
        w.insert((0..n).map(|i| u64::from(i) * u64::from(FRAME_SIZE)));
        w.commit();
        drop(w);
        prog.xsk_map()
            .map_err(|e| e.to_string())?
            .set(q, sp.port.fd(), 0)
            .map_err(|e| format!("registering the receive socket: {e}"))?;
        queues.push(Queue { sp, area });
    }
    Ok((prog, queues, mode.to_string(), zero_copy))
}

/// Counters accumulated locally and published once per batch.
#[derive(Default)]
struct Local {
    received: u64,
    verified: u64,
    correct: u64,
    incorrect: u64,
    foreign: u64,
    by_reason: [u64; Reason::COUNT],
}

impl Local {
    fn publish(&self, c: &RxCounters) {
        c.received.store(self.received, Ordering::Relaxed);
        c.verified.store(self.verified, Ordering::Relaxed);
        c.correct.store(self.correct, Ordering::Relaxed);
        c.incorrect.store(self.incorrect, Ordering::Relaxed);
        c.foreign.store(self.foreign, Ordering::Relaxed);
        for (a, v) in c.by_reason.iter().zip(self.by_reason) {
            a.store(v, Ordering::Relaxed);
        }
    }
}

fn receive(
    q: &mut Queue,
    batch: u32,
    plan: &RxPlan,
    l: &mut Local,
    latency: &mut Histogram<u64>,
    second: &mut Histogram<u64>,
    samples: &mut Vec<Sample>,
) -> usize {
    let mut addrs = [0u64; 1024];
    let mut n = 0;
    {
        let mut r = q.sp.port.rx.receive(batch);
        let now = now_ns();
        while let Some(d) = r.read() {
            if n < addrs.len() {
                addrs[n] = d.addr & !u64::from(FRAME_SIZE - 1);
                n += 1;
            }
            l.received += 1;
            let off = (d.addr % u64::from(FRAME_SIZE)) as usize;
            let Some(frame) = q.area.frame_mut(d.addr) else {
                l.foreign += 1;
                continue;
            };
            let end = (off + d.len as usize).min(frame.len());
            let bytes = &frame[off..end];
            match verify(bytes, &plan.expect) {
                Verdict::Foreign => l.foreign += 1,
                Verdict::Checked {
                    ts_ns,
                    seq,
                    reasons,
                    field,
                } => {
                    l.verified += 1;
                    if now >= ts_ns {
                        let v = (now - ts_ns).max(1);
                        latency.saturating_record(v);
                        second.saturating_record(v);
                    }
                    if reasons.is_empty() {
                        l.correct += 1;
                    } else {
                        l.incorrect += 1;
                        for r in reasons.iter() {
                            l.by_reason[r as usize] += 1;
                        }
                        if samples.len() < plan.samples {
                            samples.push(Sample {
                                seq,
                                reasons: reasons.iter().collect(),
                                field,
                                frame: bytes.to_vec(),
                            });
                        }
                    }
                }
            }
        }
        r.release();
    }
    if n > 0 {
        let mut w = q.sp.port.fill.fill(n as u32);
        w.insert(addrs[..n].iter().copied());
        w.commit();
    }
    n
}
