//! Small wrappers over the OS: privileges, resource limits, interface lookup.

use std::ffi::CString;

pub mod caps;
pub mod netlink;

/// Lifts RLIMIT_MEMLOCK as far as allowed. BPF maps are charged to the memory cgroup since
/// 5.11, but an AF_XDP UMEM is still charged to RLIMIT_MEMLOCK unless the process has
/// CAP_IPC_LOCK; raising the hard limit needs CAP_SYS_RESOURCE, so under systemd the unit's
/// `LimitMEMLOCK=infinity` is what makes room for it.
pub fn raise_memlock_limit() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer to a local.
    let ret = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) };
    if ret != 0 {
        tracing::debug!(
            "setrlimit(RLIMIT_MEMLOCK) failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Asks the kernel to back the 2 MiB-aligned part of `range` (addresses of this process's
/// memory, such as a flow table's slots) with huge pages: `MADV_HUGEPAGE`, then
/// `MADV_COLLAPSE` (Linux 6.1+) to do it now rather than when `khugepaged` gets to it. A
/// table lookup lands anywhere in tables of many MiB, far beyond what the TLB maps with
/// 4 KiB pages, so each would otherwise cost a page walk. Best effort: the bytes now on
/// huge pages (0 when the kernel refused, e.g. transparent huge pages `never`).
pub fn prefer_huge_pages(range: core::ops::Range<usize>) -> usize {
    const HUGE: usize = 2 << 20;
    let (start, end) = (range.start.next_multiple_of(HUGE), range.end / HUGE * HUGE);
    if end <= start {
        return 0;
    }
    let addr = start as *mut libc::c_void;
    // SAFETY: both pieces of advice keep the contents of the pages (mapped memory of this
    // process, inside `range`); they only change how the kernel backs them.
    let collapsed = unsafe {
        libc::madvise(addr, end - start, libc::MADV_HUGEPAGE);
        libc::madvise(addr, end - start, libc::MADV_COLLAPSE)
    };
    if collapsed == 0 {
        end - start
    } else {
        tracing::debug!(
            "madvise(MADV_COLLAPSE) of {} MiB: {}",
            (end - start) >> 20,
            std::io::Error::last_os_error()
        );
        0
    }
}

/// The interface index of `name` in this network namespace.
/// Waits for an RCU grace period: every XDP program run (and the redirect flush at the
/// end of its NAPI poll) that started before the call has finished when it returns.
/// After an XSKMAP slot is cleared, this is the point from which no more packets can
/// arrive in that socket's RX ring. `membarrier(MEMBARRIER_CMD_GLOBAL)` is
/// `synchronize_rcu()` in the kernel; where it is refused (nohz_full), a 50 ms pause
/// (far longer than any NAPI poll) stands in.
pub fn synchronize_rcu() {
    const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;
    // SAFETY: membarrier takes two integer arguments and touches no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) };
    if r != 0 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

pub fn if_index(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

/// Pins the calling thread to one CPU (best effort: logs and carries on when refused).
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET indexes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            tracing::warn!(
                "cannot pin worker to CPU {cpu}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Sets the calling thread's nice value (best effort: logs and carries on when refused,
/// e.g. without CAP_SYS_NICE).
pub fn set_thread_nice(nice: i32) {
    // SAFETY: plain syscalls; gettid has no arguments, setpriority takes a thread id.
    let r = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice)
    };
    if r != 0 {
        tracing::warn!(
            "cannot set the worker's nice value to {nice}: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Moves the calling thread to SCHED_FIFO at `priority` (1-99).
pub fn set_thread_fifo(priority: u32) -> std::io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority.min(99) as libc::c_int,
    };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The CPUs this process may run on (its affinity mask, e.g. from `taskset`).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![0];
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Number of RX queues of an interface (from sysfs; 1 when unknown).
pub fn rx_queues(ifname: &str) -> u32 {
    queues(ifname, "rx-")
}

/// Number of TX queues of an interface (from sysfs; 1 when unknown).
pub fn tx_queues(ifname: &str) -> u32 {
    queues(ifname, "tx-")
}

fn queues(ifname: &str, prefix: &str) -> u32 {
    std::fs::read_dir(format!("/sys/class/net/{ifname}/queues"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .count() as u32
        })
        .unwrap_or(1)
        .max(1)
}

/// The MTU of an interface (sysfs).
pub fn if_mtu(ifname: &str) -> Option<usize> {
    std::fs::read_to_string(format!("/sys/class/net/{ifname}/mtu"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// An interface's NAPI interrupt-deferral settings (sysfs `napi_defer_hard_irqs`,
/// `gro_flush_timeout` in ns). With both non-zero, a busy-polling socket
/// (`SO_PREFER_BUSY_POLL`) keeps the queue to itself: the kernel re-arms a timer instead
/// of the interrupt / NAPI thread while the application polls, and falls back to them
/// when it stops polling for longer than the timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NapiDefer {
    pub hard_irqs: u32,
    pub gro_flush_timeout_ns: u64,
}

impl NapiDefer {
    fn path(ifname: &str, what: &str) -> String {
        format!("/sys/class/net/{ifname}/{what}")
    }

    /// The current settings of `ifname`.
    pub fn read(ifname: &str) -> std::io::Result<NapiDefer> {
        let get = |what: &str| -> std::io::Result<u64> {
            std::fs::read_to_string(Self::path(ifname, what))?
                .trim()
                .parse()
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        };
        Ok(NapiDefer {
            hard_irqs: get("napi_defer_hard_irqs")? as u32,
            gro_flush_timeout_ns: get("gro_flush_timeout")?,
        })
    }

    /// Applies these settings to `ifname`.
    pub fn write(&self, ifname: &str) -> std::io::Result<()> {
        std::fs::write(
            Self::path(ifname, "napi_defer_hard_irqs"),
            self.hard_irqs.to_string(),
        )?;
        std::fs::write(
            Self::path(ifname, "gro_flush_timeout"),
            self.gro_flush_timeout_ns.to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    /// The advice keeps the contents, and reports either nothing or exactly the aligned
    /// interior of the range (whether the kernel can collapse depends on the host).
    #[test]
    fn huge_page_advice_keeps_the_contents() {
        let v: Vec<u64> = (0..(6u64 << 20) / 8)
            .map(|i| i.wrapping_mul(0x9e37_79b9))
            .collect();
        let r = v.as_ptr_range();
        let (start, end) = (r.start as usize, r.end as usize);
        let aligned = end / (2 << 20) * (2 << 20) - start.next_multiple_of(2 << 20);
        let got = super::prefer_huge_pages(start..end);
        assert!(got == 0 || got == aligned, "{got} of {aligned}");
        assert!(v
            .iter()
            .enumerate()
            .all(|(i, &x)| x == (i as u64).wrapping_mul(0x9e37_79b9)));
        assert_eq!(super::prefer_huge_pages(start..start + 4096), 0);
    }
}
