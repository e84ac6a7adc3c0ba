//! The candidate index of one message: one SIMD pass that marks line ends and the
//! places an address of ours can be (see the module above), and the header framing read
//! from it.

#[cfg(target_arch = "x86_64")]
use super::lanes::Avx2;
use super::lanes::Lanes;
use super::lanes::Sse2;
use super::Gate;
use crate::sip::message;

/// Longest message that gets a candidate index (64 bitmap words); a longer one (a
/// reassembled datagram: rare) is parsed whole.
pub const MAX_INDEXED: usize = 2048;
const WORDS: usize = MAX_INDEXED / 64;

/// The index of one message: its candidate positions and its line ends (CR or LF);
/// bit `i` of word `w` is byte `64 * w + i`.
pub(super) struct Cands {
    bits: [u64; WORDS],
    eol: [u64; WORDS],
    /// The `m` bytes (filled only with candidates: SDP `m=` lines are visited; an `m=`
    /// line starts with a lowercase `m`, as `sdp::line_item` reads it).
    m: [u64; WORDS],
    /// `m` was filled ([`Self::marked_lines`] walks every line when it was not: a gate
    /// for media NAT leaves it out, [`Gate::for_media_nat`]).
    marks: bool,
    /// `eol` covers the message (it is at most [`MAX_INDEXED`] bytes long).
    indexed: bool,
    all: bool,
    /// A port written after an address can change (NAPT, or a rule with a port map):
    /// the fast fields read URI ports only then.
    pub(super) ports: bool,
    /// The last IPv4 address the fast fields read.
    pub(super) v4: super::fields::Memo,
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
        if ws == we {
            // (The usual span: within one word: its bits from `start`, the `end - start`
            // (1 to 64) lowest of them.)
            return self.bits.get(ws).is_some_and(|&b| {
                (b >> (start % 64)) & (u64::MAX >> ((64 - (end - start)) & 63)) != 0
            });
        }
        let lo = u64::MAX << (start % 64);
        let hi = u64::MAX >> (63 - (end - 1) % 64);
        let Some(words) = self.bits.get(ws..=we) else {
            return false;
        };
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
    #[cfg(test)]
    pub(super) fn find(msg: &[u8], gate: &Gate) -> Cands {
        let mut c = Cands::empty();
        c.index(msg, gate);
        c
    }

    /// An index of nothing, to be filled by [`Self::index`].
    #[inline(always)]
    pub(super) fn empty() -> Cands {
        Cands {
            bits: [0; WORDS],
            eol: [0; WORDS],
            m: [0; WORDS],
            marks: false,
            indexed: false,
            all: true,
            ports: true,
            v4: super::fields::Memo::default(),
        }
    }

    /// Indexes `msg` under `gate` in place (what [`Self::find`] returns: the scan fills
    /// an index in its own frame, which a returned one was copied into).
    #[inline(always)]
    pub(super) fn index(&mut self, msg: &[u8], gate: &Gate) {
        let indexed = msg.len() <= MAX_INDEXED;
        self.indexed = indexed;
        self.all = gate.all || !indexed;
        if indexed {
            self.fill_in(msg, gate);
        }
    }

    #[inline(never)]
    fn fill_in(&mut self, msg: &[u8], gate: &Gate) {
        let mode = gate.mode;
        self.marks = mode & NO_MARKS == 0;
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            // SAFETY: the CPU has AVX2 (checked at run time, once).
            return unsafe { fill_avx2(self, msg, gate, mode) };
        }
        fill_sse2(self, msg, gate, mode);
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
        if self.all || !self.marks {
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
        // A line starts after a line end (the bit after each `eol` bit: the last bit of
        // the word before carried in) and at `start`; the range's ends masked in the
        // first and last words only.
        let mut carry = ws
            .checked_sub(1)
            .and_then(|p| self.eol.get(p))
            .map_or(0, |e| e >> 63);
        for w in ws..=we {
            let (Some(&e), Some(&b), Some(&m)) = (self.eol.get(w), self.bits.get(w), self.m.get(w))
            else {
                return;
            };
            let mut hits = b | (((e << 1) | carry) & m);
            carry = e >> 63;
            if w == ws {
                hits = (hits | (m & (1 << (start % 64)))) & (u64::MAX << (start % 64));
            }
            if w == we {
                hits &= u64::MAX >> (63 - (end - 1) % 64);
            }
            while hits != 0 {
                let q = w * 64 + hits.trailing_zeros() as usize;
                hits &= hits - 1;
                if q < done {
                    continue;
                }
                // The line's ends from this word's line ends when it holds them (lines
                // are short), else from the words before or after.
                let i = q % 64;
                let after = e & (u64::MAX << i);
                let ce = if after != 0 {
                    (w * 64 + after.trailing_zeros() as usize).min(end)
                } else {
                    self.find_eol(msg, q, end).unwrap_or(end)
                };
                let before = e & ((1u64 << i) - 1);
                let ls = if before != 0 {
                    (w * 64 + 64 - before.leading_zeros() as usize).max(start)
                } else {
                    self.line_start(q, start)
                };
                f(ls..ce);
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

    /// Word `w` of the line-end bitmap (zero past it), for [`super::framing::Walk`].
    #[inline(always)]
    pub(super) fn eol_word(&self, w: usize) -> u64 {
        self.eol.get(w).copied().unwrap_or(0)
    }

    /// Whether the line-end bitmap covers the message.
    #[inline(always)]
    pub(super) fn indexed(&self) -> bool {
        self.indexed
    }

    /// [`crate::sip::scan::line_end`] from the index.
    #[inline(always)]
    pub(super) fn line_end(&self, buf: &[u8], pos: usize, end: usize) -> (usize, usize) {
        match self.find_eol(buf, pos, end) {
            Some(at) => crate::sip::scan::terminator(buf, at, end),
            None => (end, end),
        }
    }

    /// The line ends of `msg` from this index, for [`message::header_with`].
    #[inline(always)]
    pub(super) fn lines<'c, 'm>(&'c self, msg: &'m [u8]) -> Lines<'c, 'm> {
        Lines(self, msg)
    }
}

/// The line ends of a message from its index ([`message::header_with`]'s).
pub(super) struct Lines<'c, 'm>(&'c Cands, &'m [u8]);

impl message::LineEnds for Lines<'_, '_> {
    #[inline(always)]
    fn line_end(&self, pos: usize, end: usize) -> (usize, usize) {
        self.0.line_end(self.1, pos, end)
    }
}

/// Whether this CPU has AVX2: detected once (std caches the answer), then one load.
#[cfg(target_arch = "x86_64")]
#[inline]
fn avx2() -> bool {
    std::is_x86_feature_detected!("avx2")
}

/// Most first octets a gate matches with vector compares; a gate with more (a rule
/// shorter than /8, many rules) checks each `.` against its set instead.
pub(super) const MAX_NEEDLES: usize = 4;
/// `Gate::n_needles` of a gate with more than [`MAX_NEEDLES`] octets.
pub(super) const TOO_MANY: u8 = u8::MAX;

/// The decimal text of one first octet, without leading zeros, read backwards from the
/// `.` after it: `digits[0]` is the digit right before the `.`. A `.` is a candidate
/// of the octet set exactly when the text of one of its octets ends right before it:
/// [`dot_candidate`] asks whether the 1, 2 or 3 digits before the `.` are the value of
/// an octet of the set, and a run of digits with leading zeros has the value of its
/// shortest suffix without them (`010` is 10, `00` is 0), which is that octet's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Needle {
    digits: [u8; 3],
    len: u8,
}

impl Needle {
    pub(super) const NONE: Needle = Needle {
        digits: [0; 3],
        len: 0,
    };

    pub(super) fn of(o: u8) -> Needle {
        let digits = [b'0' + o % 10, b'0' + o / 10 % 10, b'0' + o / 100];
        let len = if o >= 100 {
            3
        } else if o >= 10 {
            2
        } else {
            1
        };
        Needle { digits, len }
    }
}

/// What the index pass marks besides line ends: nothing (no gate, or everything), the
/// needles' `.` by vector compares, or each `.` checked against the octet set.
pub(super) const NOTHING: u8 = 0;
const NEEDLES: u8 = 1;
const DOTS: u8 = 2;
/// `NEEDLES` with one needle (one rule's first octet: the usual gate), of 1, 2 or 3
/// digits (`ONE`, `ONE_2`, `ONE_3`): its compares without the loop over the needles
/// and its length checks.
const ONE: u8 = 3;
const ONE_2: u8 = ONE + 1;
const ONE_3: u8 = ONE + 2;

/// A flag of the mode: the `m` bytes are not compared (a gate for media NAT, whose SDP
/// bodies are read whole, [`Gate::for_media_nat`]; ~9 instructions a 64-byte word).
pub(super) const NO_MARKS: u8 = 8;

/// The index pass's mode for `gate` (kept in the gate: [`Gate::new`]).
pub(super) fn mode(gate: &Gate) -> u8 {
    if gate.all || gate.is_empty() {
        NOTHING
    } else if gate.n_needles == TOO_MANY {
        DOTS
    } else if gate.n_needles == 1 {
        ONE + gate.needles[0].len.clamp(1, 3) - 1
    } else {
        NEEDLES
    }
}

/// `fill::<$lanes, MODE, M>(c, msg, gate)` for a gate's `mode` (its marks: `M` unless
/// the mode has [`NO_MARKS`]), one monomorphised pass per mode. (A macro, not a generic
/// function: each expansion is compiled inside its caller, with the caller's target
/// features.)
macro_rules! fill_in_mode {
    ($lanes:ty, $c:expr, $msg:expr, $gate:expr, $mode:expr) => {
        match ($mode & !NO_MARKS, $mode & NO_MARKS == 0) {
            (NEEDLES, true) => fill::<$lanes, NEEDLES, true>($c, $msg, $gate),
            (NEEDLES, false) => fill::<$lanes, NEEDLES, false>($c, $msg, $gate),
            (ONE, true) => fill::<$lanes, ONE, true>($c, $msg, $gate),
            (ONE, false) => fill::<$lanes, ONE, false>($c, $msg, $gate),
            (ONE_2, true) => fill::<$lanes, ONE_2, true>($c, $msg, $gate),
            (ONE_2, false) => fill::<$lanes, ONE_2, false>($c, $msg, $gate),
            (ONE_3, true) => fill::<$lanes, ONE_3, true>($c, $msg, $gate),
            (ONE_3, false) => fill::<$lanes, ONE_3, false>($c, $msg, $gate),
            (DOTS, true) => fill::<$lanes, DOTS, true>($c, $msg, $gate),
            (DOTS, false) => fill::<$lanes, DOTS, false>($c, $msg, $gate),
            _ => fill::<$lanes, NOTHING, false>($c, $msg, $gate),
        }
    };
}

/// [`fill`] compiled for AVX2 (32 bytes per compare).
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fill_avx2(c: &mut Cands, msg: &[u8], gate: &Gate, mode: u8) {
    // SAFETY: AVX2 is this function's precondition.
    unsafe { fill_in_mode!(Avx2, c, msg, gate, mode) }
}

/// [`fill`] with 16-byte compares (SSE2 is part of the x86-64 baseline).
fn fill_sse2(c: &mut Cands, msg: &[u8], gate: &Gate, mode: u8) {
    // SAFETY: `Sse2`'s operations need SSE2 (x86-64 baseline) or nothing (elsewhere).
    unsafe { fill_in_mode!(Sse2, c, msg, gate, mode) }
}

/// Bytes of the window before each chunk: a needle's digits reach 3 bytes back.
const BACK: usize = 3;

/// The index pass over `msg` (at most [`MAX_INDEXED`] bytes), 64 bytes at a time: line
/// ends always, candidates as `MODE` says.
///
/// # Safety
/// The CPU must have `L`'s instructions.
#[inline(always)]
unsafe fn fill<L: Lanes, const MODE: u8, const M: bool>(c: &mut Cands, msg: &[u8], gate: &Gate) {
    let needles = match MODE {
        NOTHING | DOTS => &[],
        // (A slice of a constant length: `chunk` takes its needle without a check.)
        ONE | ONE_2 | ONE_3 => &gate.needles[..1],
        _ => &gate.needles[..usize::from(gate.n_needles).min(MAX_NEEDLES)],
    };
    let n = msg.len().div_ceil(64).min(WORDS);
    if n == 0 {
        return;
    }
    // `window[BACK + i]` is byte `64 * w + i`; bytes before the message or after its end
    // are zero (neither a digit, a `.`, an `f` nor a line end). The first chunk and the
    // last (when the message does not fill it) are copied into a zeroed window, the
    // others read in place. (No closures here: a closure does not get the caller's
    // target features, and the intrinsics would become calls.)
    // SAFETY (the `one` calls): the CPU has `L`'s instructions (the caller's promise).
    unsafe {
        // The first chunk of a message of 64 bytes or more: a copy of a constant size
        // (vector moves; `padded`'s, of a variable size, was a `memcpy` call).
        match msg.first_chunk::<64>() {
            Some(head) => {
                let mut window = [0u8; BACK + 64];
                window[BACK..].copy_from_slice(head);
                one::<L, MODE, M>(c, msg, gate, needles, 0, &window);
            }
            None => one::<L, MODE, M>(c, msg, gate, needles, 0, &padded(msg, 0)),
        }
        let full = (msg.len() / 64).min(n);
        // The full chunks after the first, read in place: `rest` starts `BACK` bytes
        // before chunk `w` (one length check per chunk; it always holds the window).
        let mut rest = msg.get(64 - BACK..).unwrap_or(&[]);
        for w in 1..full {
            let Some((window, _)) = rest.split_first_chunk::<{ BACK + 64 }>() else {
                break;
            };
            one::<L, MODE, M>(c, msg, gate, needles, w, window);
            rest = rest.get(64..).unwrap_or(&[]);
        }
        if full < n && n > 1 {
            let w = n - 1;
            // The last, partial chunk: the window of the message's last 64 bytes (no
            // copy), its masks shifted down to start at the chunk (what is shifted in
            // from the top is zero: past the message's end). Its needles' digits before
            // the chunk are the message's own bytes, as in a full chunk.
            let shift = (w + 1) * 64 - msg.len();
            match msg
                .len()
                .checked_sub(64 + BACK)
                .and_then(|s| msg.get(s..))
                .and_then(|b| b.first_chunk())
            {
                Some(window) => {
                    let masks = chunk::<L, MODE, M>(window, needles).map(|m| m >> shift);
                    finish::<MODE, M>(c, msg, gate, w, masks);
                }
                None => one::<L, MODE, M>(c, msg, gate, needles, w, &padded(msg, w)),
            }
        }
    }
}

/// The window of chunk `w` (see [`fill`]), copied into zeroes.
#[inline(always)]
fn padded(msg: &[u8], w: usize) -> [u8; BACK + 64] {
    let mut pad = [0u8; BACK + 64];
    let at = w * 64;
    let from = at.saturating_sub(BACK).min(msg.len());
    let to = msg.len().min(at + 64).max(from);
    if let Some(dst) = pad.get_mut(BACK + from - at..BACK + to - at) {
        dst.copy_from_slice(&msg[from..to]);
    }
    pad
}

/// Chunk `w` of [`fill`] from its window: its line ends, candidates and `m` bytes.
///
/// # Safety
/// The CPU must have `L`'s instructions.
#[inline(always)]
unsafe fn one<L: Lanes, const MODE: u8, const M: bool>(
    c: &mut Cands,
    msg: &[u8],
    gate: &Gate,
    needles: &[Needle],
    w: usize,
    window: &[u8; BACK + 64],
) {
    // SAFETY: the CPU has `L`'s instructions (the caller's promise).
    let masks = unsafe { chunk::<L, MODE, M>(window, needles) };
    finish::<MODE, M>(c, msg, gate, w, masks);
}

/// Chunk `w` of [`fill`] from its masks ([`chunk`]'s): line ends, candidates (the `:`
/// after an `f` or `F`, the needles' `.` or the checked `.`) and the `m` bytes stored.
#[inline(always)]
fn finish<const MODE: u8, const M: bool>(
    c: &mut Cands,
    msg: &[u8],
    gate: &Gate,
    w: usize,
    [ends, ms, dots, needle_hits]: [u64; 4],
) {
    let (Some(eol), Some(bits), Some(m)) = (c.eol.get_mut(w), c.bits.get_mut(w), c.m.get_mut(w))
    else {
        return;
    };
    *eol = ends;
    if MODE == NOTHING {
        return;
    }
    if M {
        *m = ms;
    }
    let mut hit = needle_hits;
    let mut d = dots;
    while d != 0 {
        let i = d.trailing_zeros() as usize;
        d &= d - 1;
        if dot_candidate(msg, w * 64 + i, gate) {
            hit |= 1 << i;
        }
    }
    *bits = hit;
}

/// One chunk's masks: line ends, `m` bytes, the `.` to check against the octet set
/// (`DOTS`) and the candidates found by compares: the needles' `.` and every `:` right
/// after an `f` or `F`.
///
/// # Safety
/// The CPU must have `L`'s instructions.
#[inline(always)]
unsafe fn chunk<L: Lanes, const MODE: u8, const M: bool>(
    window: &[u8; BACK + 64],
    needles: &[Needle],
) -> [u64; 4] {
    let (mut ends, mut ms, mut dots, mut hit) = (0u64, 0u64, 0u64, 0u64);
    // A mask's bits at `k`. (The masks of the later parts through [`opaque`]:
    // otherwise LLVM reads the joined masks as vectors of 64 flags and takes the shifts
    // and ORs apart lane by lane.)
    let bits = |k: usize, m: u32| {
        if k == 0 {
            u64::from(m)
        } else {
            u64::from(opaque(m))
        }
    };
    for k in (0..64).step_by(L::N) {
        // SAFETY: the CPU has `L`'s instructions (the caller's promise); every slice
        // has at least `L::N` bytes (`k + BACK + L::N` ≤ 67).
        unsafe {
            let v = L::load(&window[k + BACK..]);
            ends |= bits(k, L::mask(L::eol(v))) << k;
            if MODE == NOTHING {
                continue;
            }
            if M {
                ms |= bits(k, L::mask(L::eq(v, L::splat(b'm')))) << k;
            }
            // The byte before each lane (the window starts `BACK` bytes early).
            let before = L::load(&window[k + BACK - 1..]);
            let fc = L::f_colon(v, before);
            let d = L::eq(v, L::splat(b'.'));
            if MODE == DOTS {
                dots |= bits(k, L::mask(d)) << k;
                hit |= bits(k, L::mask(fc)) << k;
                continue;
            }
            if MODE >= ONE {
                // One needle of `MODE - ONE + 1` digits (`fill_in` chose the mode from
                // it): the same compares as the loop's below.
                let Some(n) = needles.first() else {
                    continue;
                };
                let mut x = L::and(d, L::eq(before, L::splat(n.digits[0])));
                if MODE > ONE {
                    x = L::and(x, L::eq(L::load(&window[k + 1..]), L::splat(n.digits[1])));
                }
                if MODE > ONE + 1 {
                    x = L::and(x, L::eq(L::load(&window[k..]), L::splat(n.digits[2])));
                }
                hit |= bits(k, L::mask(L::or(x, fc))) << k;
                continue;
            }
            let mut h = fc;
            for n in needles {
                let mut x = L::and(d, L::eq(before, L::splat(n.digits[0])));
                if n.len >= 2 {
                    x = L::and(x, L::eq(L::load(&window[k + 1..]), L::splat(n.digits[1])));
                }
                if n.len >= 3 {
                    x = L::and(x, L::eq(L::load(&window[k..]), L::splat(n.digits[2])));
                }
                h = L::or(h, x);
            }
            hit |= bits(k, L::mask(h)) << k;
        }
    }
    [ends, ms, dots, hit]
}

/// `m`, which the optimiser cannot see through: an empty `asm!` that takes and gives
/// back the register (no instruction; `black_box` stored the mask to the stack and
/// loaded it back, three instructions per mask).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn opaque(mut m: u32) -> u32 {
    // SAFETY: the template is empty: no instruction runs, no memory, stack or flag is
    // touched (the options say so); `m` stays in its register unchanged.
    unsafe {
        core::arch::asm!("/* {0:e} */", inout(reg) m, options(pure, nomem, nostack, preserves_flags));
    }
    m
}

/// `m`, which the optimiser cannot see through ([`core::hint::black_box`]).
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn opaque(m: u32) -> u32 {
    core::hint::black_box(m)
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
    fn any_is_whether_a_bit_of_the_range_is_set() {
        let mut c = Cands::empty();
        c.indexed = true;
        c.all = false;
        // Candidates at word edges and inside words of the first three words.
        for i in [0, 1, 62, 63, 64, 100, 127, 130, 191] {
            c.bits[i / 64] |= 1 << (i % 64);
        }
        let set = |i: usize| c.bits[i / 64] >> (i % 64) & 1 != 0;
        for start in 0..200 {
            for end in start..=200 {
                let want = (start..end).any(set);
                assert_eq!(c.any(start, end), want, "{start}..{end}");
            }
        }
    }

    #[test]
    fn candidates_mark_first_octets_and_mapped_addresses() {
        let g = gate(&["10.0.0.0/8"]);
        assert!(!g.is_all());
        let m = b"a 10.0.0.1 010.1.1.1 110.2.2.2 9.10.3.3 SIP/2.0 [::FfFf:a00:1]";
        // Every `10.`, leading zeros and longer octets included (110. ends in 10.), and
        // the `:` after ffff.
        assert_eq!(cands(m, &g), vec![4, 14, 24, 35, 55]);
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
        // `ffff:` across a 64-byte chunk boundary, and `F:` with the `:` at its first
        // byte.
        let mut long = vec![b'x'; 130];
        long[62..67].copy_from_slice(b"ffFF:");
        long[127..129].copy_from_slice(b"F:");
        assert_eq!(cands(&long, &g), vec![66, 128]);
        // Longer than the index: everything.
        assert!(Cands::find(&vec![b'x'; MAX_INDEXED + 1], &g).any(0, 1));
    }

    /// Every `:` right after an `f` or `F` is marked, wherever it lies: `f:` and `F:` at
    /// every position of a 200-byte message (across both chunk boundaries, at its start
    /// and end), and 20,000 random messages of `f`, `F`, `:`, `m` and others, on every
    /// gate mode, against the byte-wise definition; and the `m` bytes are those of the
    /// message.
    #[test]
    fn f_colons_marked_as_bytewise() {
        let gates = [
            gate(&["10.0.0.0/8"]),
            gate(&["192.168.0.0/16"]),
            gate(&["172.16.0.0/12"]),
            gate(&["10.0.0.0/8", "192.168.0.0/16"]),
        ];
        let want = |m: &[u8]| -> Vec<usize> {
            (1..m.len())
                .filter(|&j| m[j] == b':' && m[j - 1] | 0x20 == b'f')
                .collect()
        };
        let check = |m: &[u8]| {
            for g in &gates {
                assert_eq!(cands(m, g), want(m), "{:?}", String::from_utf8_lossy(m));
                let c = Cands::find(m, g);
                assert!(c.marks);
                for (i, &b) in m.iter().enumerate() {
                    assert_eq!(c.m[i / 64] >> (i % 64) & 1 == 1, b == b'm', "m at {i}");
                }
                // A gate for media NAT: the same candidates, no `m` bytes compared.
                let media = g.for_media_nat();
                assert_eq!(cands(m, &media), want(m));
                assert!(!Cands::find(m, &media).marks);
            }
        };
        for pair in [&b"f:"[..], b"F:", b"ff:", b"::", b"fm:"] {
            for at in 0..=200 - pair.len() {
                let mut m = vec![b'x'; 200];
                m[at..at + pair.len()].copy_from_slice(pair);
                check(&m);
            }
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (x % 200) as usize + 1;
            let m: Vec<u8> = (0..n)
                .map(|i| b"fF:mM:x"[((x >> (i % 60)) ^ (x >> 3 >> (i % 53))) as usize % 7])
                .collect();
            check(&m);
        }
    }

    /// The needles' vector compares mark what the check of each `.` against the octet
    /// set marks, on both lane widths: octets of 1, 2 and 3 digits, leading zeros,
    /// addresses at the message's start, across chunk boundaries and at its end.
    #[test]
    fn needles_mark_what_the_dot_check_marks() {
        let mut msgs: Vec<Vec<u8>> = vec![
            b"10.0.0.1".to_vec(),
            b"0.1".to_vec(),
            b".".to_vec(),
            b"7.".to_vec(),
            b"192.168.1.100 010.2.3.4 1100.5 255.255.255.0 8.8.8.8 00.1 99.9".to_vec(),
        ];
        // Every shift of an address across the 64-byte boundaries.
        for shift in 50..70 {
            let mut m = vec![b'x'; shift];
            m.extend_from_slice(b"192.10.0.7 ffff:1.2.3.4 100.64.0.1");
            m.resize(200 + shift, b'.');
            m.extend_from_slice(b"1.7.");
            m.extend_from_slice(&b"FfFf"[..shift % 5]);
            m.extend_from_slice(&b"mfMm"[..shift % 5]);
            msgs.push(m.clone());
            let mut digits = vec![b'1'; shift];
            digits.extend_from_slice(b"0.0.192.168.");
            msgs.push(digits);
        }
        let gates = [
            &["10.0.0.0/8"][..],
            &["7.0.0.0/8"],
            &["192.168.0.0/16"],
            &["192.168.0.0/16", "8.8.8.8/32"],
            &["0.0.0.0/8", "1.0.0.0/8", "100.64.0.0/10", "255.0.0.0/8"],
            &[
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "7.0.0.0/8",
                "9.0.0.0/8",
            ],
            &["160.0.0.0/4"],
        ];
        for nets in gates {
            let g = gate(nets);
            let mut dots = g;
            dots.n_needles = TOO_MANY;
            dots.mode = mode(&dots);
            for m in &msgs {
                // Byte by byte: a checked `.`, or a `:` after an `f` or `F`.
                let want: Vec<usize> = (0..m.len())
                    .filter(|&i| {
                        (m[i] == b'.' && dot_candidate(m, i, &g))
                            || (i >= 1 && m[i] == b':' && m[i - 1] | 0x20 == b'f')
                    })
                    .collect();
                assert_eq!(
                    cands(m, &dots),
                    want,
                    "{nets:?} {}",
                    String::from_utf8_lossy(m)
                );
                assert_eq!(
                    cands(m, &g),
                    want,
                    "{nets:?} {}",
                    String::from_utf8_lossy(m)
                );
                let mut c = Cands::find(m, &g);
                c.bits = [0; WORDS];
                fill_sse2(&mut c, m, &g, mode(&g));
                let sse2: Vec<usize> = (0..m.len()).filter(|&i| c.any(i, i + 1)).collect();
                assert_eq!(sse2, want, "SSE2 {nets:?} {}", String::from_utf8_lossy(m));
            }
        }
    }

    /// The lines `marked_lines` gives: those with a candidate or starting with `m` (an
    /// `m=` line) when the index marked the `m` bytes; every line when it did not (a gate
    /// for media NAT), the same ranges as a walk of the body gives.
    #[test]
    fn marked_lines_are_every_line_without_marks() {
        let body = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                     m=audio 0 RTP/AVP 0\r\nc=IN IP4 10.0.0.2\r\nm=video 5000 RTP/AVP 96\r\na=x";
        let lines = |g: &Gate| {
            let c = Cands::find(body, g);
            let mut v = Vec::new();
            c.marked_lines(body, 0, body.len(), |l| v.push(&body[l]));
            v
        };
        let g = gate(&["10.0.0.0/8"]);
        assert_eq!(
            lines(&g),
            [
                &b"o=- 1 1 IN IP4 10.0.0.1"[..],
                b"m=audio 0 RTP/AVP 0",
                b"c=IN IP4 10.0.0.2",
                b"m=video 5000 RTP/AVP 96",
            ]
        );
        let every: Vec<&[u8]> = body
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .collect();
        assert_eq!(lines(&g.for_media_nat()), every);
    }

    #[test]
    fn one_needle_gates_take_the_one_needle_modes() {
        assert_eq!(mode(&gate(&["7.0.0.0/8"])), ONE);
        assert_eq!(mode(&gate(&["10.0.0.0/8"])), ONE_2);
        assert_eq!(mode(&gate(&["192.168.0.0/16"])), ONE_3);
        assert_eq!(mode(&gate(&["192.168.0.0/16", "8.8.8.8/32"])), NEEDLES);
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
