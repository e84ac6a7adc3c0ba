//! One worker's packet memory: an anonymous mapping of fixed-size frames shared by the
//! worker's AF_XDP sockets on both interfaces (a frame received on one side is
//! transmitted on the other without a copy), and the stack of free frames.

use std::{io, ptr::NonNull};

/// Frame size: 4 KiB, room for a 1500-byte packet to grow a lot before it needs the slow
/// path (and for jumbo-ish MTUs).
pub const FRAME_SIZE: u32 = 4096;

/// The mapped area.
pub struct Area {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned by one worker thread; the kernel accesses it through the
// AF_XDP rings only for frames the worker handed over.
unsafe impl Send for Area {}

impl Area {
    /// Maps `frames` frames (huge pages when available, normal pages otherwise).
    pub fn new(frames: u32) -> io::Result<Area> {
        let len = frames as usize * FRAME_SIZE as usize;
        for extra in [libc::MAP_HUGETLB, 0] {
            // SAFETY: anonymous private mapping; the result is checked.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE | extra,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
                return Ok(Area { ptr, len });
            }
        }
        Err(io::Error::last_os_error())
    }

    pub fn as_nonnull_slice(&self) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(self.ptr, self.len)
    }

    pub fn frames(&self) -> u32 {
        (self.len / FRAME_SIZE as usize) as u32
    }

    /// [`Self::frame_mut`], to read.
    #[inline]
    pub fn frame(&self, addr: u64) -> Option<&[u8]> {
        let base = (addr & !u64::from(FRAME_SIZE - 1)) as usize;
        if base + FRAME_SIZE as usize > self.len {
            return None;
        }
        // SAFETY: in bounds (checked); as in `frame_mut`, the frame is the worker's while
        // it holds the address, and `&self` rules out a live `&mut` borrow of any frame.
        Some(unsafe {
            std::slice::from_raw_parts(self.ptr.as_ptr().add(base), FRAME_SIZE as usize)
        })
    }

    /// The whole frame containing UMEM address `addr` (its start is `addr` rounded down).
    /// `None` for an address outside the area.
    #[inline]
    pub fn frame_mut(&mut self, addr: u64) -> Option<&mut [u8]> {
        let base = (addr & !u64::from(FRAME_SIZE - 1)) as usize;
        if base + FRAME_SIZE as usize > self.len {
            return None;
        }
        // SAFETY: in bounds (checked); the worker owns this frame while it holds its
        // address (taken from RX/completion ring or the free list), so no aliasing with
        // the kernel; `&mut self` prevents two live frame borrows.
        Some(unsafe {
            std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(base), FRAME_SIZE as usize)
        })
    }
}

impl Area {
    /// Hints the CPU to load the packet at UMEM address `addr` (`len` bytes, at most the
    /// first 1 KiB) into the cache. No effect on other architectures or outside the area.
    #[inline]
    pub fn prefetch(&self, addr: u64, len: u32) {
        #[cfg(target_arch = "x86_64")]
        {
            let start = addr as usize;
            let end = start.saturating_add((len as usize).min(1024));
            if end > self.len {
                return;
            }
            let mut off = start & !63;
            while off < end {
                // SAFETY: in bounds of our mapping (checked); a prefetch has no other effect.
                unsafe {
                    core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                        self.ptr.as_ptr().add(off).cast(),
                    )
                };
                off += 64;
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (addr, len);
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: our mapping; sockets using it are closed before the Area is dropped
        // (field order in the owner).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Offset of a frame-relative address.
#[inline]
pub fn frame_base(addr: u64) -> u64 {
    addr & !u64::from(FRAME_SIZE - 1)
}

/// The free frames (base addresses). Allocated once; push/pop never allocate.
pub struct FreeFrames {
    stack: Vec<u64>,
}

impl FreeFrames {
    pub fn new(frames: u32) -> FreeFrames {
        let mut stack = Vec::with_capacity(frames as usize);
        // Pop from the end: hand out low addresses first.
        stack.extend(
            (0..frames)
                .rev()
                .map(|i| u64::from(i) * u64::from(FRAME_SIZE)),
        );
        FreeFrames { stack }
    }

    #[inline]
    pub fn pop(&mut self) -> Option<u64> {
        self.stack.pop()
    }

    /// Returns a frame. Capacity is the number of frames, so this never reallocates.
    #[inline]
    pub fn push(&mut self, addr: u64) {
        debug_assert!(self.stack.len() < self.stack.capacity());
        if self.stack.len() < self.stack.capacity() {
            self.stack.push(frame_base(addr));
        }
    }

    pub fn len(&self) -> usize {
        self.stack.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stack.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_and_free_list() {
        let mut a = Area::new(8).unwrap();
        assert_eq!(a.frames(), 8);
        let f = a.frame_mut(4096 + 300).unwrap();
        f[0] = 7;
        assert_eq!(a.frame_mut(4096).unwrap()[0], 7);
        assert!(a.frame_mut(8 * 4096).is_none());
        let mut fl = FreeFrames::new(8);
        assert_eq!(fl.pop(), Some(0));
        fl.push(300);
        assert_eq!(fl.pop(), Some(0));
        assert_eq!(fl.len(), 7);
    }
}
