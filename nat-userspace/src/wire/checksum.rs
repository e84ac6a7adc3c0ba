//! Internet checksum (RFC 1071) helpers: a fast one's-complement sum, pseudo-header sums,
//! and the incremental update of RFC 1624 (`HC' = ~(~HC + ~m + m')`).

/// One's-complement sum of `data` as big-endian 16-bit words (odd byte padded with zero),
/// not folded: add results with `+`, finish with [`fold`]. The result is below 2^20,
/// so thousands of them can be added before folding.
#[inline]
pub fn sum(data: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if (128..MAX_AVX2).contains(&data.len()) && std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked at run time; std caches the answer).
        return unsafe { sum_avx2(data) };
    }
    sum_lanes(data)
}

/// The longest data [`sum_avx2`] takes: its 32-bit lanes hold the sums of 2^14 blocks
/// with room to spare (a datagram has at most 2^11).
#[cfg(target_arch = "x86_64")]
const MAX_AVX2: usize = 1 << 19;

/// [`sum`] with AVX2, for the long sums (a rewritten payload's): three instructions per
/// 32 bytes. Each 16-bit word `w` is offset to the signed `w - 0x8000` (an `xor` of its
/// top bit) so that `vpmaddwd` against ones adds its pairs exactly into 32-bit lanes;
/// each 32-byte block then added `8 * 0x10000` too little, given back at the end. (The
/// lanes cannot overflow: a lane moves by at most 2^16 a block, and [`sum`] gives this
/// at most [`MAX_AVX2`] bytes, 2^14 blocks.) The order of the bytes in a word does not
/// matter to the sum (RFC 1071 §2): native words, swapped into network order once. The
/// tail (< 32 bytes) is [`sum_lanes`]'s; a block is 32 bytes, so its words start at an
/// even offset.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sum_avx2(data: &[u8]) -> u64 {
    use core::arch::x86_64::{
        _mm256_add_epi32, _mm256_loadu_si256, _mm256_madd_epi16, _mm256_set1_epi16,
        _mm256_setzero_si256, _mm256_storeu_si256, _mm256_xor_si256,
    };
    let (blocks, rest) = data.as_chunks::<32>();
    let flip = _mm256_set1_epi16(i16::MIN);
    let ones = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_si256();
    for b in blocks {
        // SAFETY: `b` has 32 bytes; `loadu` has no alignment requirement.
        let v = unsafe { _mm256_loadu_si256(b.as_ptr().cast()) };
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_xor_si256(v, flip), ones));
    }
    let mut lanes = [0i32; 8];
    // SAFETY: `lanes` has 32 bytes; `storeu` has no alignment requirement.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), acc) };
    let offset = 8 * 0x1_0000 * blocks.len() as i64;
    let wide = lanes.iter().map(|&l| i64::from(l)).sum::<i64>() + offset;
    network_order(wide as u64) + sum_lanes(rest)
}

/// [`sum`] for any CPU.
#[inline(always)]
fn sum_lanes(data: &[u8]) -> u64 {
    // RFC 1071 §2: the one's-complement sum does not depend on byte order, so add native
    // 32-bit words into a 64-bit sum (no carry to handle below 2^32 words; LLVM turns the
    // reduction into vector adds of zero-extended words), fold to 16 bits and swap into
    // network order once at the end.
    let (words, rest) = data.as_chunks::<4>();
    let acc: u64 = words
        .iter()
        .map(|w| u64::from(u32::from_ne_bytes(*w)))
        .sum();
    let mut acc = network_order(acc);
    let mut pairs = rest.chunks_exact(2);
    for w in &mut pairs {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [b] = pairs.remainder() {
        acc += u64::from(*b) << 8;
    }
    acc
}

/// A sum of native-order words, folded and swapped into network order (RFC 1071 §2:
/// byte order only swaps the sum).
#[inline(always)]
fn network_order(native: u64) -> u64 {
    let folded = fold(native);
    u64::from(match cfg!(target_endian = "little") {
        true => folded.swap_bytes(),
        false => folded,
    })
}

/// Folds a wide sum into 16 bits (end-around carry).
#[inline]
pub fn fold(s: u64) -> u16 {
    // Four steps always suffice (below 2^33, 2^18, 0x10002, then 0x10000), without the
    // loop's compare per step.
    let s = (s & 0xffff_ffff) + (s >> 32);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// The checksum field value for data whose (unfolded) sum is `s`.
#[inline]
pub fn finish(s: u64) -> u16 {
    !fold(s)
}

/// Pseudo-header sum for UDP over IPv4 (addresses as 4 bytes each).
#[inline]
pub fn pseudo_v4(src: &[u8], dst: &[u8], proto: u8, len: u32) -> u64 {
    address_sum::<4>(src) + address_sum::<4>(dst) + u64::from(proto) + u64::from(len)
}

/// Pseudo-header sum for UDP over IPv6 (addresses as 16 bytes each).
#[inline]
pub fn pseudo_v6(src: &[u8], dst: &[u8], proto: u8, len: u32) -> u64 {
    address_sum::<16>(src) + address_sum::<16>(dst) + u64::from(proto) + u64::from(len)
}

/// [`sum`] of an address of `N` bytes (4 or 16: an even count): its big-endian words
/// added one by one (a few instructions; `sum`'s general path costs ~25 for 4 bytes).
/// Any other length goes to `sum`.
#[inline(always)]
fn address_sum<const N: usize>(a: &[u8]) -> u64 {
    match a.first_chunk::<N>() {
        Some(w) if a.len() == N => w
            .as_chunks::<2>()
            .0
            .iter()
            .map(|&p| u64::from(u16::from_be_bytes(p)))
            .sum(),
        _ => sum(a),
    }
}

/// RFC 1624 eqn. 3: the checksum after the covered data's sum went from `old` to `new`.
/// Keeps a wrong checksum exactly as wrong (like the kernel's NAT does).
#[inline]
pub fn update(check: u16, old: u64, new: u64) -> u16 {
    let s = u64::from(!check) + u64::from(!fold(old)) + u64::from(fold(new));
    !fold(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_sums_equal_the_general_sum() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b: Vec<u8> = (0..40).map(|i| (x >> (i % 57)) as u8 ^ i as u8).collect();
            let (v4, v6) = (&b[..4], &b[4..20]);
            assert_eq!(fold(address_sum::<4>(v4)), fold(sum(v4)));
            assert_eq!(fold(address_sum::<16>(v6)), fold(sum(v6)));
            assert_eq!(
                fold(pseudo_v4(v4, &b[20..24], 17, 999)),
                fold(sum(v4) + sum(&b[20..24]) + 17 + 999)
            );
            assert_eq!(
                fold(pseudo_v6(v6, &b[24..40], 17, 70_000)),
                fold(sum(v6) + sum(&b[24..40]) + 17 + 70_000)
            );
        }
        // Other lengths than the address's: the general sum.
        assert_eq!(address_sum::<4>(&[1, 2, 3]), sum(&[1, 2, 3]));
        assert_eq!(fold(address_sum::<4>(&[0xff; 4])), 0xffff);
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: 0001 f203 f4f5 f6f7 → sum ddf2 (folded)
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&d)), 0xddf2);
    }

    #[test]
    fn odd_length_and_splits_agree() {
        let d: Vec<u8> = (0..1001u32).map(|i| (i * 7 + 3) as u8).collect();
        let whole = fold(sum(&d));
        let split = fold(sum(&d[..600]) + sum(&d[600..]));
        assert_eq!(whole, split, "even split points keep word alignment");
        // byte-by-byte reference
        let mut r: u32 = 0;
        for (i, b) in d.iter().enumerate() {
            r += if i % 2 == 0 {
                u32::from(*b) << 8
            } else {
                u32::from(*b)
            };
        }
        assert_eq!(whole, fold(u64::from(r)));
    }

    #[test]
    fn wide_sum_matches_bytewise_reference() {
        // Every remainder, the AVX2 path's lengths too (up to its longest, and one past
        // it); bytes chosen to force carries (0xff runs).
        for len in (0..300usize).chain([1500, 4093, 65_535, (1 << 19) - 1, 1 << 19]) {
            let d: Vec<u8> = (0..len)
                .map(|i| if i % 5 < 3 { 0xff } else { (i * 31) as u8 })
                .collect();
            let mut r: u64 = 0;
            for (i, b) in d.iter().enumerate() {
                r += if i % 2 == 0 {
                    u64::from(*b) << 8
                } else {
                    u64::from(*b)
                };
            }
            assert_eq!(fold(sum(&d)), fold(r), "len {len}");
            assert_eq!(fold(sum_lanes(&d)), fold(r), "len {len}, without AVX2");
        }
    }

    #[test]
    fn incremental_matches_full() {
        let mut d: Vec<u8> = (0..64u8).collect();
        let c = finish(sum(&d));
        let old = sum(&d[10..14]);
        d[10..14].copy_from_slice(&[203, 0, 113, 10]);
        let new = sum(&d[10..14]);
        assert_eq!(update(c, old, new), finish(sum(&d)));
    }
}
