//! AF_XDP sockets of one worker: the inside and the outside socket for the worker's queue,
//! sharing one UMEM, each with its own fill/completion ring pair (xdpilone).
//!
//! Zero-copy is tried first (drivers that support it); when the bind refuses it (veth,
//! generic XDP), everything is rebuilt in copy mode. The mode is reported in `status`.

use std::{ffi::CString, io, num::NonZeroU32};

use xdpilone::{
    xdp::XdpStatisticsV2, CompletionQueue, FillQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig,
    Umem, UmemConfig, User,
};

use super::umem::{Area, FRAME_SIZE};

/// Sizes of the rings.
#[derive(Clone, Copy, Debug)]
pub struct RingSizes {
    /// RX and TX ring entries (power of two).
    pub ring: u32,
    /// Fill ring entries: twice the RX ring, so it can stay full while RX is full.
    pub fill: u32,
    /// Completion ring entries.
    pub completion: u32,
}

impl RingSizes {
    pub fn new(ring: u32) -> RingSizes {
        RingSizes {
            ring,
            fill: ring * 2,
            completion: ring * 2,
        }
    }
}

/// One AF_XDP socket bound to (interface, queue).
pub struct Port {
    pub ifname: String,
    pub ifindex: u32,
    pub queue: u32,
    /// The interface MTU (used for the slow path when no next hop is known yet).
    pub mtu: usize,
    pub fill: FillQueue,
    pub completion: CompletionQueue,
    pub rx: RingRx,
    pub tx: RingTx,
    user: User,
}

impl Port {
    pub fn fd(&self) -> i32 {
        self.user.as_raw_fd()
    }

    /// Kernel-side counters of this socket (drops in the RX ring, empty fill ring, ...).
    pub fn kernel_stats(&self) -> Option<XdpStatisticsV2> {
        self.user.statistics_v2().ok()
    }

    /// Turns on NAPI busy polling for this socket (`SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL`,
    /// `SO_BUSY_POLL_BUDGET`): each [`Port::kick_rx`] / [`Port::kick_tx`] then runs the
    /// interface queue's NAPI poll (driver receive and the XDP program) in the worker's
    /// own context, up to `budget` packets, and the kernel prefers that to its own
    /// softirq / NAPI thread. Needs CAP_NET_ADMIN for a budget above the default.
    pub fn set_busy_poll(&self, budget: u32) -> io::Result<()> {
        let set = |opt: libc::c_int, v: libc::c_int| -> io::Result<()> {
            // SAFETY: setsockopt on our own socket fd with a c_int value.
            let r = unsafe {
                libc::setsockopt(
                    self.fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&v as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if r < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        set(libc::SO_PREFER_BUSY_POLL, 1)?;
        // Any non-zero value enables it; a non-blocking recvfrom/sendto polls once.
        set(libc::SO_BUSY_POLL, 20)?;
        set(
            libc::SO_BUSY_POLL_BUDGET,
            budget.clamp(1, 1024) as libc::c_int,
        )
    }

    /// Drives reception: a non-blocking `recvfrom` with no buffer. With busy polling on it
    /// runs the queue's NAPI poll here; in zero-copy mode it also wakes a driver that
    /// asked for fill-ring buffers (`needs_wakeup`).
    #[inline]
    pub fn kick_rx(&self) {
        // SAFETY: recvfrom with no buffer on our own socket fd, non-blocking; errors
        // (EAGAIN: nothing to do) are not interesting.
        unsafe {
            libc::recvfrom(
                self.fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    }

    /// Kicks the kernel to transmit what is in the TX ring (copy mode always needs it).
    #[inline]
    pub fn kick_tx(&self) -> io::Result<()> {
        // SAFETY: sendto with no buffer on our own socket fd, non-blocking.
        let r = unsafe {
            libc::sendto(
                self.fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            // EAGAIN/EBUSY/ENOBUFS: the device is busy; frames stay queued for the next kick.
            match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENOBUFS) => Ok(()),
                _ => Err(e),
            }
        } else {
            Ok(())
        }
    }
}

/// The two sockets of a worker plus the UMEM they share. Drop order: sockets, then UMEM.
pub struct Ports {
    pub inside: Port,
    pub outside: Port,
    pub zero_copy: bool,
    _umem: Umem,
}

fn errno(e: xdpilone::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.get_raw().abs())
}

fn ifinfo(name: &str, queue: u32) -> io::Result<IfInfo> {
    let mut info = IfInfo::invalid();
    let c = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name"))?;
    info.from_name(&c).map_err(errno)?;
    info.set_queue(queue);
    Ok(info)
}

fn open_port(
    umem: &Umem,
    sock: Socket,
    name: &str,
    queue: u32,
    sizes: RingSizes,
    flags: u16,
) -> io::Result<Port> {
    let dq = umem.fq_cq(&sock).map_err(errno)?;
    let cfg = SocketConfig {
        rx_size: NonZeroU32::new(sizes.ring),
        tx_size: NonZeroU32::new(sizes.ring),
        bind_flags: flags,
    };
    let user = umem.rx_tx(&sock, &cfg).map_err(errno)?;
    let rx = user.map_rx().map_err(errno)?;
    let tx = user.map_tx().map_err(errno)?;
    umem.bind(&user).map_err(errno)?;
    let (fill, completion) = dq.into_parts();
    Ok(Port {
        ifname: name.to_string(),
        ifindex: crate::sys::if_index(name).unwrap_or(0),
        queue,
        mtu: crate::sys::if_mtu(name).unwrap_or(1500),
        fill,
        completion,
        rx,
        tx,
        user,
    })
}

impl Ports {
    /// Opens both sockets on `queue`. `area` must outlive the returned value.
    pub fn open(
        area: &Area,
        inside: &str,
        outside: &str,
        queue: u32,
        sizes: RingSizes,
    ) -> io::Result<Ports> {
        let attempt = |zero_copy: bool| -> io::Result<Ports> {
            // The worker drops `Ports` before its `Area`.
            let umem = new_umem(area, sizes)?;
            let flags = bind_flags(zero_copy);
            let in_sock = Socket::with_shared(&ifinfo(inside, queue)?, &umem).map_err(errno)?;
            let inside_port = open_port(&umem, in_sock, inside, queue, sizes, flags)?;
            // The sharing socket binds with flags 0: it inherits the mode (kernel rule).
            let out_sock = Socket::new(&ifinfo(outside, queue)?).map_err(errno)?;
            let outside_port = open_port(&umem, out_sock, outside, queue, sizes, 0)?;
            Ok(Ports {
                inside: inside_port,
                outside: outside_port,
                zero_copy,
                _umem: umem,
            })
        };
        match attempt(true) {
            Ok(p) => Ok(p),
            Err(e) => {
                tracing::debug!("zero-copy AF_XDP bind on {inside}/{outside} queue {queue} refused ({e}); using copy mode");
                attempt(false)
            }
        }
    }
}

/// A UMEM of 4 KiB frames over `area` with the given fill and completion ring sizes.
/// `area` must outlive it.
fn new_umem(area: &Area, sizes: RingSizes) -> io::Result<Umem> {
    let cfg = UmemConfig {
        fill_size: sizes.fill,
        complete_size: sizes.completion,
        frame_size: FRAME_SIZE,
        headroom: 0,
        flags: 0,
    };
    // SAFETY: the area is page aligned, and every caller keeps it alive longer than the
    // UMEM (sockets and UMEM drop before the `Area`).
    unsafe { Umem::new(cfg, area.as_nonnull_slice()) }.map_err(errno)
}

/// Bind flags of the first socket on a UMEM: zero-copy or copy mode, with need_wakeup.
fn bind_flags(zero_copy: bool) -> u16 {
    let mode = if zero_copy {
        SocketConfig::XDP_BIND_ZEROCOPY
    } else {
        SocketConfig::XDP_BIND_COPY
    };
    mode | SocketConfig::XDP_BIND_NEED_WAKEUP
}

/// One AF_XDP socket alone on its own UMEM (the load generator's TX socket, its verifier's
/// RX socket). Zero-copy first, copy mode when the driver refuses it. Drop order: socket,
/// then UMEM.
pub struct SinglePort {
    pub port: Port,
    pub zero_copy: bool,
    _umem: Umem,
}

impl SinglePort {
    /// Opens a socket on (`ifname`, `queue`) in the calling thread's network namespace.
    /// `area` must outlive the returned value.
    pub fn open(area: &Area, ifname: &str, queue: u32, sizes: RingSizes) -> io::Result<SinglePort> {
        let attempt = |zero_copy: bool| -> io::Result<SinglePort> {
            // The caller drops the port before its `Area`.
            let umem = new_umem(area, sizes)?;
            let sock = Socket::with_shared(&ifinfo(ifname, queue)?, &umem).map_err(errno)?;
            let port = open_port(&umem, sock, ifname, queue, sizes, bind_flags(zero_copy))?;
            Ok(SinglePort {
                port,
                zero_copy,
                _umem: umem,
            })
        };
        attempt(true).or_else(|e| {
            tracing::debug!(
                "zero-copy AF_XDP bind on {ifname} queue {queue} refused ({e}); using copy mode"
            );
            attempt(false)
        })
    }
}
