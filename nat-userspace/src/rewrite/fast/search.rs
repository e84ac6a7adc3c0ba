//! Searches for one of a few bytes in the short spans of a header value (`>` after a
//! `<`, `@` in a URI, `,` after a value): 16 bytes at a time with SSE2, inline. (The
//! spans are 10-60 bytes, where `memchr`'s call and its choice of strategy cost more
//! than the search.)

/// The first byte of `msg[from..end]` (`end` at most the message's length) that is one
/// of `set`, as an index into `msg`.
#[inline(always)]
pub(super) fn find<const N: usize>(
    msg: &[u8],
    from: usize,
    end: usize,
    set: [u8; N],
) -> Option<usize> {
    let end = end.min(msg.len());
    let mut i = from;
    while i < end {
        let Some(w) = msg.get(i..).and_then(|b| b.first_chunk::<16>()) else {
            // Within 16 bytes of the message's end: byte by byte.
            return msg[i..end]
                .iter()
                .position(|b| set.contains(b))
                .map(|o| i + o);
        };
        // The first of these 16 bytes in the set, 16 when none is (a bit above them).
        // Its position at or past `end` means none before `end` (bytes past `end` are
        // loaded, never answered), else it is the answer, or the search goes on.
        let k = (hits(w, set) | 1 << 16).trailing_zeros() as usize;
        let at = i + k;
        if at >= end {
            return None;
        }
        if k < 16 {
            return Some(at);
        }
        i += 16;
    }
    None
}

/// Bit `k`: byte `k` of `w` is one of `set`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) fn hits<const N: usize>(w: &[u8; 16], set: [u8; N]) -> u32 {
    use core::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        _mm_setzero_si128,
    };
    // SAFETY: SSE2 is part of the x86-64 baseline; `w` has 16 bytes and `loadu` has no
    // alignment requirement.
    unsafe {
        let v = _mm_loadu_si128(w.as_ptr().cast());
        let mut any = _mm_setzero_si128();
        for c in set {
            any = _mm_or_si128(any, _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8)));
        }
        _mm_movemask_epi8(any) as u32
    }
}

/// Bit `k`: byte `k` of `w` is one of `set`.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub(super) fn hits<const N: usize>(w: &[u8; 16], set: [u8; N]) -> u32 {
    w.iter()
        .enumerate()
        .fold(0, |m, (k, b)| m | u32::from(set.contains(b)) << k)
}

#[cfg(test)]
mod tests {
    use super::find;

    /// `find` equals a byte-by-byte search for every span of messages of many lengths
    /// (spans ending near and at the message's end, longer than 16 bytes, empty).
    #[test]
    fn find_equals_the_bytewise_search() {
        for len in [0, 1, 5, 15, 16, 17, 31, 32, 33, 40, 70] {
            let msg: Vec<u8> = (0..len).map(|i| b"ab<c>d,e@f\"g"[(i * 7) % 12]).collect();
            for from in 0..=len {
                for end in from..=len + 2 {
                    for set in [[b'>', b'"'], [b'@', b'@'], [b'z', b','], [b'a', b'<']] {
                        let want = msg[from..end.min(len)]
                            .iter()
                            .position(|b| set.contains(b))
                            .map(|o| from + o);
                        assert_eq!(find(&msg, from, end, set), want, "{len} {from} {end}");
                    }
                }
            }
        }
    }
}
