//! A dotted quad read with one vector shuffle (SSSE3), for
//! [`super::addr::parse_ipv4_word`] (a whole token) and
//! [`super::addr::parse_ipv4_window`] (the address at the start of a window of a
//! message): no loop, no branch on the octets' lengths.
//!
//! The shape of a dotted quad of `n` bytes is where its three dots are: with the end,
//! four bits of a 16-bit *key* (`dots | 1 << n`). The 81 valid shapes (four octets of
//! 1-3 digits) have 81 keys, which a multiply and a shift send to 81 distinct slots of a
//! 256-entry table ([`M`] was searched for that; the table is built at compile time and
//! the build fails if two shapes share a slot). A slot holds its shape's key, to confirm
//! the shape, and a shuffle that moves each octet's digits right-aligned into a 4-byte
//! lane (`[hundreds, tens, ones, 0]`, missing digits 0); two multiply-adds then give the
//! four octet values. What is checked, with no branch until the answer: the key is the
//! slot's (dots exactly where the shape has them, and the length), every other byte of
//! the token is a digit, and every octet is at most 255. The scalar reading
//! (`parse_ipv4_window_scalar`) stays for CPUs without SSSE3 and for the windows whose
//! run of digits and dots is not a whole address; tests compare both with the byte
//! parsers on every token shape and a million random tokens and windows.
//!
//! Why: the scalar reading decides each octet's length by branches, one octet after the
//! other; the six addresses of `PrivateIPDetection` have five different shapes.

/// The hash multiplier: `(key * M) >> 24` is distinct for the 81 valid keys.
const M: u32 = 0xe07b_db9f;

/// The slot of a key.
#[inline(always)]
const fn slot(key: u32) -> usize {
    (key.wrapping_mul(M) >> 24) as usize
}

/// A slot's key and shuffle: `key` is 0 in a slot no shape hashes to (every key has the
/// bit of its length set).
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Slot {
    shuffle: [u8; 16],
    key: u16,
}

/// The key of an empty slot.
const EMPTY: u16 = 0;

/// The 256 slots (8 KiB: 32 bytes each, so that no shuffle's load straddles two cache
/// lines; 81 are used), built at compile time.
static SLOTS: [Slot; 256] = slots();

const fn slots() -> [Slot; 256] {
    let mut t = [Slot {
        key: EMPTY,
        shuffle: [0x80; 16],
    }; 256];
    let mut shape = 0;
    while shape < 81 {
        // The lengths of the four octets (1-3 each) and where each starts.
        let lens = [
            shape / 27 % 3 + 1,
            shape / 9 % 3 + 1,
            shape / 3 % 3 + 1,
            shape % 3 + 1,
        ];
        let mut starts = [0; 4];
        let mut k = 1;
        while k < 4 {
            starts[k] = starts[k - 1] + lens[k - 1] + 1;
            k += 1;
        }
        let n = starts[3] + lens[3];
        let key =
            (1u32 << (starts[1] - 1)) | (1 << (starts[2] - 1)) | (1 << (starts[3] - 1)) | (1 << n);
        let s = slot(key);
        assert!(
            t[s].key == EMPTY,
            "two IPv4 shapes share a slot: choose another M"
        );
        let mut shuffle = [0x80u8; 16];
        let mut k = 0;
        while k < 4 {
            // Octet k's digits in bytes 4k..4k+3, right-aligned: its last digit at 4k+2.
            let mut j = 0;
            while j < lens[k] {
                shuffle[4 * k + 3 - lens[k] + j] = (starts[k] + j) as u8;
                j += 1;
            }
            k += 1;
        }
        t[s] = Slot {
            key: key as u16,
            shuffle,
        };
        shape += 1;
    }
    t
}

/// Whether this CPU has SSSE3: detected once (std caches the answer), then one load.
#[inline(always)]
pub(super) fn available() -> bool {
    std::is_x86_feature_detected!("ssse3")
}

/// The IPv4 address of the token whose `n` bytes (7-15) are the low bytes of `lo`, `hi`
/// (little-endian; the bytes past `n` zero), or `None` when it is not a dotted quad of
/// 1-3 digit octets, each at most 255: `parse_ipv4`'s answer.
#[target_feature(enable = "ssse3")]
#[inline]
pub(super) fn parse(lo: u64, hi: u64, n: usize) -> Option<core::net::Ipv4Addr> {
    let (d, dots, digits) = classes(lo, hi);
    quad(d, dots, digits, n)
}

/// [`parse`] and whether the address is in one of eight networks (`nets[i]` masked by
/// `masks[i]`, host order; a slot with mask 0 and a net other than 0 is in none): the
/// octets' four lanes turned into the address, in host order, in every lane by one
/// shuffle, and compared there, instead of the address moved to a general register,
/// byte-swapped and moved back. (The address read this way is [`parse`]'s: the octets
/// are checked to be at most 255 first, so their low bytes are the octets.)
#[target_feature(enable = "ssse3")]
#[inline]
pub(super) fn parse_in(
    lo: u64,
    hi: u64,
    n: usize,
    nets: &[u32; 8],
    masks: &[u32; 8],
) -> Option<(core::net::Ipv4Addr, bool)> {
    use core::arch::x86_64::*;
    let (d, dots, digits) = classes(lo, hi);
    let (octets, valid) = octets(d, dots, digits, n);
    if !valid {
        return None;
    }
    // Each lane: octet 0's low byte at the top, octet 3's at the bottom.
    let host = _mm_shuffle_epi8(
        octets,
        _mm_set_epi8(0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12),
    );
    // SAFETY: `loadu` reads 16 bytes of each 32-byte array (no alignment needed).
    let hit = unsafe {
        let v = |a: &[u32; 8], i: usize| _mm_loadu_si128(a.as_ptr().add(i).cast());
        let lo = _mm_cmpeq_epi32(_mm_and_si128(host, v(masks, 0)), v(nets, 0));
        let hi = _mm_cmpeq_epi32(_mm_and_si128(host, v(masks, 4)), v(nets, 4));
        _mm_movemask_epi8(_mm_or_si128(lo, hi)) != 0
    };
    let addr = _mm_cvtsi128_si32(host) as u32;
    Some((core::net::Ipv4Addr::from(addr), hit))
}

/// `parse_ipv4_prefix` of a zero-padded 16-byte window: the address at its start and
/// its length. The run of digits and dots at the start is read as a whole token; a run
/// that is not one (a last octet of 4 digits, a fifth octet, a run of 16 bytes: the
/// prefix parse may still find an address in it) goes to the scalar reading.
#[target_feature(enable = "ssse3")]
pub(super) fn parse_prefix(w: &[u8; 16]) -> Option<(core::net::Ipv4Addr, usize)> {
    let lo = u64::from_le_bytes(*w.first_chunk::<8>().unwrap_or(&[0; 8]));
    let hi = u64::from_le_bytes(*w.last_chunk::<8>().unwrap_or(&[0; 8]));
    let (d, dots, digits) = classes(lo, hi);
    let n = (!(dots | digits) | 1 << 16).trailing_zeros() as usize;
    if (7..16).contains(&n) {
        if let Some(a) = quad(d, dots & ((1 << n) - 1), digits, n) {
            return Some((a, n));
        }
    }
    super::addr::parse_ipv4_window_scalar(w)
}

/// The 16 bytes of `lo`, `hi` less `0` each, and the masks of their dots and digits.
#[target_feature(enable = "ssse3")]
#[inline]
fn classes(lo: u64, hi: u64) -> (core::arch::x86_64::__m128i, u32, u32) {
    use core::arch::x86_64::*;
    let v = _mm_set_epi64x(hi as i64, lo as i64);
    let dots = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'.' as i8))) as u32;
    let d = _mm_sub_epi8(v, _mm_set1_epi8(b'0' as i8));
    // (A digit is a byte whose value less `0` is at most 9, unsigned.)
    let digits = _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(9)), d)) as u32;
    (d, dots, digits)
}

/// The dotted quad of the first `n` (7-15) bytes, from [`classes`] of them (`dots` with
/// no bit at or past `n`).
#[target_feature(enable = "ssse3")]
#[inline]
fn quad(
    d: core::arch::x86_64::__m128i,
    dots: u32,
    digits: u32,
    n: usize,
) -> Option<core::net::Ipv4Addr> {
    use core::arch::x86_64::*;
    let (octets, valid) = octets(d, dots, digits, n);
    let bytes = _mm_packus_epi16(_mm_packs_epi32(octets, octets), octets);
    let addr = _mm_cvtsi128_si32(bytes) as u32;
    valid.then(|| core::net::Ipv4Addr::from(addr.to_le_bytes()))
}

/// The four octets of the dotted quad of the first `n` (7-15) bytes, one in each 32-bit
/// lane, from [`classes`] of them (`dots` with no bit at or past `n`), and whether they
/// are one: the shape is the slot's, every byte a digit or a dot, every octet at most
/// 255.
#[target_feature(enable = "ssse3")]
#[inline]
fn octets(
    d: core::arch::x86_64::__m128i,
    dots: u32,
    digits: u32,
    n: usize,
) -> (core::arch::x86_64::__m128i, bool) {
    use core::arch::x86_64::*;
    let n = n & 15;
    let key = dots | 1 << n;
    let s = &SLOTS[slot(key)];
    let all = (1u32 << n) - 1;
    // SAFETY: `loadu` reads the 16 bytes of the slot's shuffle (no alignment needed).
    let shuffle = unsafe { _mm_loadu_si128(s.shuffle.as_ptr().cast()) };
    let lanes = _mm_shuffle_epi8(d, shuffle);
    // Per octet: 100 * hundreds + 10 * tens, and ones; then their sum.
    let pairs = _mm_maddubs_epi16(lanes, _mm_set1_epi32(i32::from_le_bytes([100, 10, 1, 0])));
    let octets = _mm_madd_epi16(pairs, _mm_set1_epi16(1));
    let over = _mm_movemask_epi8(_mm_cmpgt_epi32(octets, _mm_set1_epi32(255)));
    let valid = u32::from(s.key) == key && (digits | dots) & all == all && over == 0;
    (octets, valid)
}

#[cfg(test)]
mod tests {
    /// Every slot a shape hashes to holds that shape (the table's build checks that no
    /// two share one); 81 are used.
    #[test]
    fn eighty_one_shapes_in_distinct_slots() {
        let used = super::SLOTS
            .iter()
            .filter(|s| s.key != super::EMPTY)
            .count();
        assert_eq!(used, 81);
        for (i, s) in super::SLOTS.iter().enumerate() {
            if s.key != super::EMPTY {
                assert_eq!(s.key.count_ones(), 4);
                assert_eq!(super::slot(u32::from(s.key)), i);
            }
        }
    }
}
