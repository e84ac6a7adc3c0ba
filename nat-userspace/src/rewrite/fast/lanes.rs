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
    /// Per lane: all ones where the byte is CR or LF.
    ///
    /// # Safety
    /// As [`Self::load`].
    #[inline(always)]
    unsafe fn eol(v: Self::V) -> Self::V {
        // SAFETY: as this function's.
        unsafe {
            Self::or(
                Self::eq(v, Self::splat(b'\r')),
                Self::eq(v, Self::splat(b'\n')),
            )
        }
    }
    /// Per lane: all ones where the byte is `:` and the byte before it (the same lane of
    /// `before`) is `f` or `F` (OR-ing 0x20 into a byte gives `f` only for those two).
    ///
    /// # Safety
    /// As [`Self::load`].
    #[inline(always)]
    unsafe fn f_colon(v: Self::V, before: Self::V) -> Self::V {
        // SAFETY: as this function's.
        unsafe {
            Self::and(
                Self::eq(v, Self::splat(b':')),
                Self::eq(Self::or(before, Self::splat(0x20)), Self::splat(b'f')),
            )
        }
    }
}

/// A byte class by one table lookup (`pshufb`): lane `i` is all ones when `v`'s byte
/// equals `table[v & 15]`. A byte with its top bit set looks up 0 (`pshufb`'s rule) and
/// is not 0, so it is never in the class; a class byte `c` is in it exactly when
/// `table[c & 15] == c`, and an unused entry holds a value no byte with its low nibble
/// has (checked by a test over all 256 bytes).
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn lookup(v: core::arch::x86_64::__m256i, table: [u8; 16]) -> core::arch::x86_64::__m256i {
    use core::arch::x86_64::{_mm256_broadcastsi128_si256, _mm256_cmpeq_epi8, _mm256_shuffle_epi8};
    // SAFETY: AVX2 is the caller's promise; `loadu` reads the 16 bytes of `table`.
    unsafe {
        let t = core::arch::x86_64::_mm_loadu_si128(table.as_ptr().cast());
        _mm256_cmpeq_epi8(_mm256_shuffle_epi8(_mm256_broadcastsi128_si256(t), v), v)
    }
}

/// [`lookup`]'s table of CR and LF (unused entries 0xff: no byte below 0x80 is).
const EOL: [u8; 16] = {
    let mut t = [0xff; 16];
    t[0x0a] = b'\n';
    t[0x0d] = b'\r';
    t
};

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
    #[inline(always)]
    unsafe fn eol(v: Self::V) -> Self::V {
        // SAFETY: AVX2 is the caller's promise.
        unsafe { lookup(v, EOL) }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Each lane width's classes, byte by byte, for every byte value in every lane.
    fn classes_of<L: Lanes>() {
        for b in 0..=255u8 {
            let bytes = [b; 32];
            // SAFETY: `Sse2` needs SSE2 (x86-64 baseline) or nothing; `Avx2` is only
            // run after the CPU is checked for it.
            let (eol, fc, cf) = unsafe {
                let (v, colons) = (L::load(&bytes), L::splat(b':'));
                (
                    L::mask(L::eol(v)),
                    L::mask(L::f_colon(colons, v)),
                    L::mask(L::f_colon(v, colons)),
                )
            };
            let all = u32::MAX >> (32 - L::N);
            let want = |yes: bool| if yes { all } else { 0 };
            assert_eq!(eol, want(b == b'\r' || b == b'\n'), "eol {b:#x}");
            assert_eq!(fc, want(matches!(b, b'f' | b'F')), "f_colon after {b:#x}");
            assert_eq!(cf, 0, "f_colon of {b:#x} after `:`");
        }
    }

    #[test]
    fn classes_are_the_bytes_they_name() {
        classes_of::<Sse2>();
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            classes_of::<Avx2>();
        }
    }
}
