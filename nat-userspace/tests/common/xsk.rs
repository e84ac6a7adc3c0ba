//! A minimal AF_XDP receive socket for tests: one UMEM, one socket bound (copy mode) to
//! queue 0 of an interface in the calling thread's network namespace, fill ring stocked.

use std::{ffi::CString, num::NonZeroU32, ptr::NonNull};

use xdpilone::{DeviceQueue, IfInfo, RingRx, Socket, SocketConfig, Umem, UmemConfig, User};

const FRAMES: u32 = 64;
const FRAME_SIZE: u32 = 4096;

// Fields drop in order: rings and sockets first, the mapping last.
pub struct RxSocket {
    rx: RingRx,
    fq: DeviceQueue,
    user: User,
    _umem: Umem,
    area: Area,
}

struct Area(NonNull<u8>, usize);

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: our own mapping, no longer referenced by the kernel (sockets closed).
        unsafe { libc::munmap(self.0.as_ptr().cast(), self.1) };
    }
}

impl RxSocket {
    pub fn bind(ifname: &str) -> RxSocket {
        let len = (FRAMES * FRAME_SIZE) as usize;
        // SAFETY: anonymous private mapping, checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap UMEM");
        let area = NonNull::new(p.cast::<u8>()).expect("mmap returned null");
        let slice = NonNull::slice_from_raw_parts(area, len);
        let cfg = UmemConfig {
            fill_size: FRAMES,
            complete_size: FRAMES,
            frame_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: the area is page aligned and outlives the Umem (dropped before munmap).
        let umem = unsafe { Umem::new(cfg, slice) }.expect("umem");
        let mut info = IfInfo::invalid();
        info.from_name(&CString::new(ifname).unwrap())
            .expect("ifinfo");
        info.set_queue(0);
        let sock = Socket::with_shared(&info, &umem).expect("socket");
        let mut fq = umem.fq_cq(&sock).expect("fq_cq");
        let user = umem
            .rx_tx(
                &sock,
                &SocketConfig {
                    rx_size: NonZeroU32::new(FRAMES),
                    tx_size: None,
                    bind_flags: 0,
                },
            )
            .expect("rx_tx");
        let rx = user.map_rx().expect("map rx");
        umem.bind(&user).expect("bind");
        {
            let mut w = fq.fill(FRAMES);
            w.insert((0..FRAMES).map(|i| u64::from(i * FRAME_SIZE)));
            w.commit();
        }
        RxSocket {
            rx,
            fq,
            user,
            _umem: umem,
            area: Area(area, len),
        }
    }

    pub fn fd(&self) -> i32 {
        self.user.as_raw_fd()
    }

    /// Frames received so far (consumed from the RX ring; their buffers refilled).
    pub fn drain(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut addrs = Vec::new();
        {
            let mut r = self.rx.receive(FRAMES);
            while let Some(desc) = r.read() {
                // SAFETY: the kernel wrote `len` bytes at `addr` inside our UMEM area.
                let bytes = unsafe {
                    std::slice::from_raw_parts(
                        self.area.0.as_ptr().add(desc.addr as usize),
                        desc.len as usize,
                    )
                };
                out.push(bytes.to_vec());
                addrs.push(desc.addr & !u64::from(FRAME_SIZE - 1));
            }
            r.release();
        }
        let mut w = self.fq.fill(addrs.len() as u32);
        w.insert(addrs.into_iter());
        w.commit();
        out
    }
}
