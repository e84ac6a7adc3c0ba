//! The candidate index of one message: one SIMD pass that marks line ends and the
//! places an address of ours can be (see the module above), and the header framing read
//! from it.

use super::Gate;
use crate::sip::message::{self, Kind, Malformed};

/// Longest message that gets a candidate index (64 bitmap words); a longer one (a
/// reassembled datagram: rare) is parsed whole.
pub const MAX_INDEXED: usize = 2048;
const WORDS: usize = MAX_INDEXED / 64;

/// The index of one message: its candidate positions and its line ends (CR or LF);
/// bit `i` of word `w` is byte `64 * w + i`.
pub(super) struct Cands {
    bits: [u64; WORDS],
    eol: [u64; WORDS],
    /// `eol` covers the message (it is at most [`MAX_INDEXED`] bytes long).
    indexed: bool,
    all: bool,
}

impl Cands {
    /// Whether a candidate lies in `[start, end)`.
    #[inline]
    pub(super) fn any(&self, start: usize, end: usize) -> bool {
        if self.all {
            return true;
        }
        if start >= end {
            return false;
        }
        let (ws, we) = (start / 64, (end - 1) / 64);
        let Some(words) = self.bits.get(ws..=we) else {
            return false;
        };
        let lo = u64::MAX << (start % 64);
        let hi = u64::MAX >> (63 - (end - 1) % 64);
        match words {
            [one] => one & lo & hi != 0,
            [first, mid @ .., last] => {
                first & lo != 0 || mid.iter().any(|&w| w != 0) || last & hi != 0
            }
            [] => false,
        }
    }

    /// Indexes `msg` under `gate`: one pass, 64 bytes at a time. (Built in the caller's
    /// frame and filled in place: returned from an out-of-line call, the 0.5 KiB index
    /// was copied once more.)
    #[inline(always)]
    pub(super) fn find(msg: &[u8], gate: &Gate) -> Cands {
        let indexed = msg.len() <= MAX_INDEXED;
        let mut c = Cands {
            bits: [0; WORDS],
            eol: [0; WORDS],
            indexed,
            all: gate.all || !indexed,
        };
        if indexed {
            c.fill_in(msg, gate);
        }
        c
    }

    #[inline(never)]
    fn fill_in(&mut self, msg: &[u8], gate: &Gate) {
        let cands = !gate.all && !gate.is_empty();
        if avx2() {
            // SAFETY: the CPU has AVX2 (checked at run time, once).
            unsafe { fill_avx2(self, msg, gate, cands) }
        } else if cands {
            fill::<true, false>(self, msg, gate);
        } else {
            fill::<false, false>(self, msg, gate);
        }
    }

    /// The first CR or LF in `msg[pos..end]` (`end` ≤ the message's length), from the
    /// index ([`crate::sip::scan::find_eol`] for a message too long for it).
    #[inline(always)]
    pub(super) fn find_eol(&self, msg: &[u8], pos: usize, end: usize) -> Option<usize> {
        if !self.indexed {
            return crate::sip::scan::find_eol(msg, pos, end);
        }
        if pos >= end {
            return None;
        }
        let mut w = pos / 64;
        let mut bits = *self.eol.get(w)? & (u64::MAX << (pos % 64));
        loop {
            if bits != 0 {
                let at = w * 64 + bits.trailing_zeros() as usize;
                return (at < end).then_some(at);
            }
            w += 1;
            if w * 64 >= end {
                return None;
            }
            bits = *self.eol.get(w)?;
        }
    }

    /// The lines of `[start, end)` (an SDP body starts at `start`) that hold a candidate
    /// or start with `m`, in order, each once: `f(line)`, without its terminator. Every
    /// line when the index cannot tell. A line starts at `start` or right after a CR or
    /// LF (a terminator's last byte: `m` is neither CR nor LF), and a candidate's line
    /// starts after the last CR or LF before it, so the lines are those of a walk from
    /// `start`.
    pub(super) fn marked_lines(
        &self,
        msg: &[u8],
        start: usize,
        end: usize,
        mut f: impl FnMut(core::ops::Range<usize>),
    ) {
        if self.all {
            let mut pos = start;
            while pos < end {
                let (ce, next) = self.line_end(msg, pos, end);
                f(pos..ce);
                pos = next;
            }
            return;
        }
        if start >= end {
            return;
        }
        let (ws, we) = (start / 64, (end - 1) / 64);
        let mut done = start;
        for w in ws..=we {
            let lo = if w == ws {
                u64::MAX << (start % 64)
            } else {
                u64::MAX
            };
            let hi = if w == we {
                u64::MAX >> (63 - (end - 1) % 64)
            } else {
                u64::MAX
            };
            let carry = if w > 0 { self.eol[w - 1] >> 63 } else { 0 };
            let mut starts =
                ((self.eol[w] << 1) | carry | if w == ws { lo & !(lo << 1) } else { 0 }) & lo & hi;
            let mut hits = self.bits[w] & lo & hi;
            while starts != 0 {
                let i = starts.trailing_zeros();
                starts &= starts - 1;
                if msg[w * 64 + i as usize] == b'm' {
                    hits |= 1 << i;
                }
            }
            while hits != 0 {
                let q = w * 64 + hits.trailing_zeros() as usize;
                hits &= hits - 1;
                if q < done {
                    continue;
                }
                let ce = self.find_eol(msg, q, end).unwrap_or(end);
                f(self.line_start(q, start)..ce);
                done = ce;
            }
        }
    }

    /// The start of the line holding `q` (not a CR or LF), at or after `start`.
    #[inline]
    fn line_start(&self, q: usize, start: usize) -> usize {
        let mut w = q / 64;
        let mut bits = self.eol[w] & ((1u64 << (q % 64)) - 1);
        loop {
            if bits != 0 {
                return (w * 64 + 64 - bits.leading_zeros() as usize).max(start);
            }
            if w == 0 || w * 64 <= start {
                return start;
            }
            w -= 1;
            bits = self.eol[w];
        }
    }

    /// [`crate::sip::scan::line_end`] from the index.
    #[inline(always)]
    pub(super) fn line_end(&self, buf: &[u8], pos: usize, end: usize) -> (usize, usize) {
        match self.find_eol(buf, pos, end) {
            Some(at) => crate::sip::scan::terminator(buf, at, end),
            None => (end, end),
        }
    }

    /// [`message::header`] with the line ends from the index.
    #[allow(clippy::type_complexity)]
    #[inline]
    pub(super) fn header(
        &self,
        msg: &[u8],
        pos: usize,
    ) -> Result<(message::Header, usize), Result<usize, Malformed>> {
        message::header_with(msg, pos, |p, e| self.line_end(msg, p, e), Kind::of_token)
    }
}

/// Whether this CPU has AVX2: detected once (std caches the answer), then one load.
#[inline]
fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// [`fill`] compiled for AVX2 (32 bytes per compare).
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fill_avx2(c: &mut Cands, msg: &[u8], gate: &Gate, cands: bool) {
    if cands {
        fill::<true, true>(c, msg, gate);
    } else {
        fill::<false, true>(c, msg, gate);
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn fill_avx2(c: &mut Cands, msg: &[u8], gate: &Gate, cands: bool) {
    if cands {
        fill::<true, false>(c, msg, gate);
    } else {
        fill::<false, false>(c, msg, gate);
    }
}

/// The index pass over `msg` (at most [`MAX_INDEXED`] bytes), 64 bytes at a time: line
/// ends always, candidates when `CANDS`; `AVX2` true only inside [`fill_avx2`] (x86-64).
#[inline(always)]
fn fill<const CANDS: bool, const AVX2: bool>(c: &mut Cands, msg: &[u8], gate: &Gate) {
    // The `f` bits of the 3 bytes before the chunk (a `ffff` across chunks).
    let mut carry: u64 = 0;
    for (w, (slot, eol)) in c.bits.iter_mut().zip(c.eol.iter_mut()).enumerate() {
        let at = w * 64;
        if at >= msg.len() {
            break;
        }
        let [dots, fs, ends] = match msg.get(at..at + 64) {
            Some(chunk) => masks64::<AVX2>(chunk),
            None => {
                let mut tail = [0u8; 64];
                tail[..msg.len() - at].copy_from_slice(&msg[at..]);
                masks64::<AVX2>(&tail)
            }
        };
        *eol = ends;
        if !CANDS {
            continue;
        }
        let mut hit: u64 = 0;
        if fs != 0 {
            // Bit j: bytes j-3..=j of the chunk (the first three reaching into the
            // chunk before) are `f`.
            let w3 = (fs << 3) | carry;
            let w2 = (fs << 2) | (carry >> 1);
            let w1 = (fs << 1) | (carry >> 2);
            hit |= fs & w1 & w2 & w3;
        }
        carry = fs >> 61;
        let mut d = dots;
        while d != 0 {
            let i = d.trailing_zeros() as usize;
            d &= d - 1;
            if dot_candidate(msg, at + i, gate) {
                hit |= 1 << i;
            }
        }
        *slot = hit;
    }
}

/// Whether the `.` at `p` follows the 1, 2 or 3 digits of a first octet of the gate.
#[inline]
fn dot_candidate(msg: &[u8], p: usize, gate: &Gate) -> bool {
    let digit = |k: usize| -> Option<u32> {
        let b = *msg.get(p.checked_sub(k)?)?;
        b.is_ascii_digit().then(|| u32::from(b - b'0'))
    };
    let Some(d1) = digit(1) else {
        return false;
    };
    // Most dots end no octet of the gate: its last digit rules them out.
    if gate.last_digits & (1 << d1) == 0 {
        return false;
    }
    if gate.has(d1) {
        return true;
    }
    let Some(d2) = digit(2) else {
        return false;
    };
    let v2 = d2 * 10 + d1;
    if gate.has(v2) {
        return true;
    }
    match digit(3) {
        Some(d3) => gate.has(d3 * 100 + v2),
        None => false,
    }
}

/// The `.`, `f`/`F` and CR-or-LF bits of 64 bytes: two AVX2 compares (only inlined into
/// [`fill_avx2`]) or four SSE2 ones.
#[inline(always)]
fn masks64<const AVX2: bool>(b: &[u8]) -> [u64; 3] {
    let b = &b[..64];
    #[cfg(target_arch = "x86_64")]
    if AVX2 {
        // SAFETY: `AVX2` is true only in `fill_avx2`, which runs on CPUs with AVX2.
        let ([d0, f0, e0], [d1, f1, e1]) = unsafe { (masks32(&b[..32]), masks32(&b[32..])) };
        let join = |a: u32, b: u32| u64::from(a) | u64::from(b) << 32;
        // (Through `black_box`: otherwise LLVM reads the masks as vectors of 64 flags
        // and takes the shifts below apart bit by bit.)
        return core::hint::black_box([join(d0, d1), join(f0, f1), join(e0, e1)]);
    }
    let [d0, f0, e0] = masks(&b[0..16]);
    let [d1, f1, e1] = masks(&b[16..32]);
    let [d2, f2, e2] = masks(&b[32..48]);
    let [d3, f3, e3] = masks(&b[48..64]);
    let join = |a: u32, b: u32, c: u32, d: u32| {
        u64::from(a) | u64::from(b) << 16 | u64::from(c) << 32 | u64::from(d) << 48
    };
    [
        join(d0, d1, d2, d3),
        join(f0, f1, f2, f3),
        join(e0, e1, e2, e3),
    ]
}

/// The `.`, `f`/`F` and CR-or-LF bits of 32 bytes.
///
/// # Safety
/// The CPU must have AVX2 (the caller is inlined into [`fill_avx2`]).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn masks32(b: &[u8]) -> [u32; 3] {
    use core::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_or_si256,
        _mm256_set1_epi8,
    };
    let b = &b[..32];
    // SAFETY: `b` has 32 bytes (sliced above); `loadu` has no alignment requirement;
    // AVX2 is the caller's promise.
    unsafe {
        let v = _mm256_loadu_si256(b.as_ptr().cast::<__m256i>());
        let dots = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'.' as i8));
        let fs = _mm256_cmpeq_epi8(
            _mm256_or_si256(v, _mm256_set1_epi8(0x20)),
            _mm256_set1_epi8(b'f' as i8),
        );
        let eol = _mm256_or_si256(
            _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'\r' as i8)),
            _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'\n' as i8)),
        );
        [
            _mm256_movemask_epi8(dots) as u32,
            _mm256_movemask_epi8(fs) as u32,
            _mm256_movemask_epi8(eol) as u32,
        ]
    }
}

/// The `.`, `f`/`F` and CR-or-LF bits of 16 bytes.
#[inline(always)]
fn masks(b: &[u8]) -> [u32; 3] {
    debug_assert!(b.len() >= 16);
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
            _mm_set1_epi8,
        };
        let b = &b[..16];
        // SAFETY: `b` has 16 bytes (sliced above); SSE2 is part of the x86-64 baseline;
        // `loadu` has no alignment requirement.
        unsafe {
            let v = _mm_loadu_si128(b.as_ptr().cast::<__m128i>());
            let dots = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'.' as i8));
            let fs = _mm_cmpeq_epi8(
                _mm_or_si128(v, _mm_set1_epi8(0x20)),
                _mm_set1_epi8(b'f' as i8),
            );
            let eol = _mm_or_si128(
                _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\r' as i8)),
                _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\n' as i8)),
            );
            [
                _mm_movemask_epi8(dots) as u32,
                _mm_movemask_epi8(fs) as u32,
                _mm_movemask_epi8(eol) as u32,
            ]
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut m = [0u32; 3];
        for (i, &c) in b[..16].iter().enumerate() {
            m[0] |= u32::from(c == b'.') << i;
            m[1] |= u32::from(c | 0x20 == b'f') << i;
            m[2] |= u32::from(c == b'\r' || c == b'\n') << i;
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::{Direction, ExternalAddrs, Net, RewriteConfig};

    fn gate(nets: &[&str]) -> Gate {
        let c = RewriteConfig {
            rules: nets
                .iter()
                .map(|n| crate::nat::Rule {
                    internal: Net::parse(n).unwrap(),
                    external: None,
                    ports: Default::default(),
                })
                .collect(),
            ..RewriteConfig::default()
        };
        Gate::new(&c, &ExternalAddrs::default(), Direction::Outbound)
    }

    fn cands(msg: &[u8], g: &Gate) -> Vec<usize> {
        let c = Cands::find(msg, g);
        (0..msg.len()).filter(|&i| c.any(i, i + 1)).collect()
    }

    #[test]
    fn candidates_mark_first_octets_and_mapped_addresses() {
        let g = gate(&["10.0.0.0/8"]);
        assert!(!g.is_all());
        let m = b"a 10.0.0.1 010.1.1.1 110.2.2.2 9.10.3.3 SIP/2.0 [::FfFf:a00:1]";
        // Every `10.`, leading zeros and longer octets included (110. ends in 10.), and
        // the last f of ffff.
        assert_eq!(cands(m, &g), vec![4, 14, 24, 35, 54]);
        assert!(
            Cands::find(m, &gate(&["fd00::/8"])).any(0, 1),
            "IPv6 rule: everything"
        );
        assert_eq!(
            cands(m, &gate(&[])),
            Vec::<usize>::new(),
            "no rules: nothing"
        );
        // A /4 marks each of its 16 first octets.
        let g4 = gate(&["160.0.0.0/4"]);
        assert_eq!(cands(b"159.1 160.1 175.1 176.1", &g4), vec![9, 15]);
        // `ffff` across a 64-byte chunk boundary.
        let mut long = vec![b'x'; 130];
        long[62..66].copy_from_slice(b"ffFF");
        assert_eq!(cands(&long, &g), vec![65]);
        // Longer than the index: everything.
        assert!(Cands::find(&vec![b'x'; MAX_INDEXED + 1], &g).any(0, 1));
    }

    #[test]
    fn line_ends_from_the_index_equal_the_scanners() {
        let m = b"a\r\nb\nc\rd\r\r\ne\r\n\r\n".repeat(9);
        let c = Cands::find(&m, &gate(&["10.0.0.0/8"]));
        for pos in 0..m.len() {
            for end in pos..=m.len() {
                assert_eq!(
                    c.line_end(&m, pos, end),
                    crate::sip::scan::line_end(&m, pos, end),
                    "[{pos},{end})"
                );
            }
        }
    }
}
