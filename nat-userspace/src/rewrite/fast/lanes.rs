//! The byte-wise vector operations of the index pass ([`super::index`]): one body
//! for AVX2 and SSE2.

/// The byte-wise vector operations of the index pass, one body for AVX2 (32 lanes) and
/// SSE2 (16 lanes; a plain byte array off x86-64). Each is one instruction.
pub(super) trait Lanes {
    type V: Copy;
    /// Lanes per vector.
    const N: usize;
    /// The first `N` bytes of `b` (which has at least `N`: checked).
    ///
    /// # Safety
    /// The CPU must have these lanes' instructions (as for every operation here).
    unsafe fn load(b: &[u8]) -> Self::V;
    /// # Safety
    /// As [`Self::load`].
    unsafe fn splat(c: u8) -> Self::V;
    /// Per lane: all ones when equal, else zero.
    ///
    /// # Safety
    /// As [`Self::load`].
    unsafe fn eq(a: Self::V, b: Self::V) -> Self::V;
    /// # Safety
    /// As [`Self::load`].
    unsafe fn and(a: Self::V, b: Self::V) -> Self::V;
    /// # Safety
    /// As [`Self::load`].
    unsafe fn or(a: Self::V, b: Self::V) -> Self::V;
    /// The top bit of each lane, lane `i` in bit `i`.
    ///
    /// # Safety
    /// As [`Self::load`].
    unsafe fn mask(v: Self::V) -> u32;
}

/// 32 lanes (only inside the index pass's AVX2 build).
#[cfg(target_arch = "x86_64")]
pub(super) struct Avx2;

#[cfg(target_arch = "x86_64")]
impl Lanes for Avx2 {
    type V = core::arch::x86_64::__m256i;
    const N: usize = 32;
    #[inline(always)]
    unsafe fn load(b: &[u8]) -> Self::V {
        let b = &b[..32];
        // SAFETY: `b` has 32 bytes (sliced above); `loadu` has no alignment
        // requirement; AVX2 is the caller's promise.
        unsafe { core::arch::x86_64::_mm256_loadu_si256(b.as_ptr().cast()) }
    }
    #[inline(always)]
    unsafe fn splat(c: u8) -> Self::V {
        // SAFETY: AVX2 is the caller's promise.
        unsafe { core::arch::x86_64::_mm256_set1_epi8(c as i8) }
    }
    #[inline(always)]
    unsafe fn eq(a: Self::V, b: Self::V) -> Self::V {
        // SAFETY: AVX2 is the caller's promise.
        unsafe { core::arch::x86_64::_mm256_cmpeq_epi8(a, b) }
    }
    #[inline(always)]
    unsafe fn and(a: Self::V, b: Self::V) -> Self::V {
        // SAFETY: AVX2 is the caller's promise.
        unsafe { core::arch::x86_64::_mm256_and_si256(a, b) }
    }
    #[inline(always)]
    unsafe fn or(a: Self::V, b: Self::V) -> Self::V {
        // SAFETY: AVX2 is the caller's promise.
        unsafe { core::arch::x86_64::_mm256_or_si256(a, b) }
    }
    #[inline(always)]
    unsafe fn mask(v: Self::V) -> u32 {
        // SAFETY: AVX2 is the caller's promise.
        unsafe { core::arch::x86_64::_mm256_movemask_epi8(v) as u32 }
    }
}

/// 16 lanes: SSE2 (x86-64 baseline), or a byte array elsewhere.
pub(super) struct Sse2;

#[cfg(target_arch = "x86_64")]
impl Lanes for Sse2 {
    type V = core::arch::x86_64::__m128i;
    const N: usize = 16;
    #[inline(always)]
    unsafe fn load(b: &[u8]) -> Self::V {
        let b = &b[..16];
        // SAFETY: `b` has 16 bytes (sliced above); `loadu` has no alignment
        // requirement; SSE2 is part of the x86-64 baseline.
        unsafe { core::arch::x86_64::_mm_loadu_si128(b.as_ptr().cast()) }
    }
    #[inline(always)]
    unsafe fn splat(c: u8) -> Self::V {
        // SAFETY: SSE2 is part of the x86-64 baseline.
        unsafe { core::arch::x86_64::_mm_set1_epi8(c as i8) }
    }
    #[inline(always)]
    unsafe fn eq(a: Self::V, b: Self::V) -> Self::V {
        // SAFETY: SSE2 is part of the x86-64 baseline.
        unsafe { core::arch::x86_64::_mm_cmpeq_epi8(a, b) }
    }
    #[inline(always)]
    unsafe fn and(a: Self::V, b: Self::V) -> Self::V {
        // SAFETY: SSE2 is part of the x86-64 baseline.
        unsafe { core::arch::x86_64::_mm_and_si128(a, b) }
    }
    #[inline(always)]
    unsafe fn or(a: Self::V, b: Self::V) -> Self::V {
        // SAFETY: SSE2 is part of the x86-64 baseline.
        unsafe { core::arch::x86_64::_mm_or_si128(a, b) }
    }
    #[inline(always)]
    unsafe fn mask(v: Self::V) -> u32 {
        // SAFETY: SSE2 is part of the x86-64 baseline.
        unsafe { core::arch::x86_64::_mm_movemask_epi8(v) as u32 }
    }
}

#[cfg(not(target_arch = "x86_64"))]
impl Lanes for Sse2 {
    type V = [u8; 16];
    const N: usize = 16;
    #[inline(always)]
    unsafe fn load(b: &[u8]) -> Self::V {
        let mut v = [0; 16];
        v.copy_from_slice(&b[..16]);
        v
    }
    #[inline(always)]
    unsafe fn splat(c: u8) -> Self::V {
        [c; 16]
    }
    #[inline(always)]
    unsafe fn eq(a: Self::V, b: Self::V) -> Self::V {
        core::array::from_fn(|i| if a[i] == b[i] { 0xff } else { 0 })
    }
    #[inline(always)]
    unsafe fn and(a: Self::V, b: Self::V) -> Self::V {
        core::array::from_fn(|i| a[i] & b[i])
    }
    #[inline(always)]
    unsafe fn or(a: Self::V, b: Self::V) -> Self::V {
        core::array::from_fn(|i| a[i] | b[i])
    }
    #[inline(always)]
    unsafe fn mask(v: Self::V) -> u32 {
        v.iter()
            .enumerate()
            .fold(0, |m, (i, &b)| m | u32::from(b >> 7) << i)
    }
}
