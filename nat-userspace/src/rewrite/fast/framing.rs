//! Header lines in their usual form (`Name: value`, a name of letters, digits and `-`
//! ending right at the colon within the line's first 16 bytes) framed from one 16-byte
//! load instead of the byte loops of [`message::header_with`]; any other line goes to
//! `header_with` itself.
//!
//! Why this is `header_with`'s reading: it takes the name as the run of token characters
//! from the line's start, skips whitespace, and wants a `:` there, before the line's end.
//! Letters, digits and `-` are token characters and `:` is not, nor whitespace, so when
//! every byte before the first `:` of the line is one of them (and there is at least
//! one), the token run ends at that `:`, no whitespace follows it, and the name, the
//! colon and everything after them (folding, the value's trims, the kind) are those of
//! `header_with`, which this code then does the same way.

use core::ops::Range;

use super::{index::Cands, search::hits};
use crate::sip::{
    message::{self, Kind, Malformed, NotSip, StartLine},
    scan::{is_lws, is_ws, skip_ws, trim_end},
};

/// One header line as the header loop reads it: its kind, and its value still with the
/// whitespace around it, trimmed only by [`Line::value`] (the loop trims the values of
/// the kinds it reads; the others cost no trims).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Line {
    pub(super) kind: Kind,
    /// The end of the name (it starts at the line's start).
    pub(super) name_end: usize,
    /// The value with the whitespace around it: after the colon to the end of the last
    /// continuation line's content. (No candidate lies in that whitespace: candidates are
    /// `.` and `:` bytes, so [`Cands::any`] over this range is `any` over the value.)
    pub(super) raw: Range<usize>,
}

impl Line {
    /// `message::header`'s value: `raw` without the whitespace at its start (SP, HT) and
    /// at its end (LWS). Usually one space, then the value, which ends right at the
    /// line's end: told by two byte checks each (the loops' answers then), else the
    /// loops. (On a value already trimmed both checks fall to loops that stop at once.)
    #[inline(always)]
    pub(super) fn value(&self, msg: &[u8]) -> Range<usize> {
        let (from, to) = (self.raw.start, self.raw.end);
        let v_start = match msg.get(from..from + 2) {
            Some(&[b' ', c]) if from + 1 < to && !is_ws(c) => from + 1,
            _ => skip_ws(msg, from, to),
        };
        let v_end = match msg.get(to.wrapping_sub(1)) {
            Some(&c) if to > v_start && !is_lws(c) => to,
            _ => trim_end(msg, v_start, to).max(v_start),
        };
        v_start..v_end
    }
}

/// [`message::header`] at `pos` with the line ends from the index, popped in order by
/// `walk` (which must be at `pos`: [`Walk::at`], or the `next` of the line before), the
/// usual lines framed from one load ([`name_colon`]); the value is left untrimmed
/// ([`Line`]).
#[allow(clippy::type_complexity)]
#[inline(always)]
pub(super) fn header(
    cands: &Cands,
    msg: &[u8],
    pos: usize,
    walk: &mut Walk,
) -> Result<(Line, usize), Result<usize, Malformed>> {
    let end = msg.len();
    if !cands.indexed() {
        return exact(cands, msg, pos, walk);
    }
    let (ce, next) = walk.line_end(cands, msg, end);
    if ce == pos {
        // Empty line: end of headers; `next` is where the body starts. (At the end of
        // the message too: the bitmap has no bit there, so the line ends at `end`.)
        return Err(Ok(next));
    }
    let Some((colon, kind)) = name_colon(msg, pos, ce) else {
        if let Some((line, next, w)) = long_line(cands, msg, pos, (ce, next), *walk) {
            *walk = w;
            return Ok((line, next));
        }
        return exact(cands, msg, pos, walk);
    };
    Ok(line_of(cands, msg, (colon, kind), (ce, next), walk))
}

/// The [`Line`] of a header whose name ends at `colon` and whose first line's content
/// ends at `ce`, the next line starting at `next` (`walk` there), and where the line
/// after the header starts: its continuation lines (folding) belong to it.
#[inline(always)]
fn line_of(
    cands: &Cands,
    msg: &[u8],
    (colon, kind): (usize, Kind),
    (mut ce, mut next): (usize, usize),
    walk: &mut Walk,
) -> (Line, usize) {
    let end = msg.len();
    while next < end && is_ws(msg[next]) {
        (ce, next) = walk.line_end(cands, msg, end);
    }
    let line = Line {
        kind,
        name_end: colon,
        raw: colon + 1..ce,
    };
    (line, next)
}

/// [`header`] of a line whose name is 16 to 31 bytes long in the usual form
/// ([`long_name`]), its content ending at `ce` and the next line at `next`, `walk` past
/// it; `None` for anything else. (Out of line and cold, as [`exact_line`]: a call here
/// that LLVM took for a hot one cost the usual lines ~20-40 instructions a message;
/// `header_with`'s byte loops were ~380 instructions such a line.)
#[cold]
#[inline(never)]
fn long_line(
    cands: &Cands,
    msg: &[u8],
    pos: usize,
    (ce, next): (usize, usize),
    mut walk: Walk,
) -> Option<(Line, usize, Walk)> {
    let named = long_name(msg, pos, ce)?;
    let (line, next) = line_of(cands, msg, named, (ce, next), &mut walk);
    Some((line, next, walk))
}

/// The line ends of the index from a position on, popped in order: the CR/LF bits of
/// one bitmap word at a time, those before the position cleared. (The header loop's
/// lines follow each other, so each line end costs a `trailing_zeros` and a clear, not a
/// search from the line's start.)
#[derive(Clone, Copy)]
pub(super) struct Walk {
    w: usize,
    bits: u64,
}

impl Walk {
    /// The walk at `pos`.
    #[inline(always)]
    pub(super) fn at(cands: &Cands, pos: usize) -> Walk {
        Walk {
            w: pos / 64,
            bits: cands.eol_word(pos / 64) & (u64::MAX << (pos % 64)),
        }
    }

    /// [`crate::sip::scan::line_end`] from the walk's position to `end` (the message's
    /// length; the bitmap has no bits past it); the walk moves to the next line's start.
    #[inline(always)]
    pub(super) fn line_end(&mut self, cands: &Cands, msg: &[u8], end: usize) -> (usize, usize) {
        while self.bits == 0 {
            self.w += 1;
            if self.w * 64 >= end {
                return (end, end);
            }
            self.bits = cands.eol_word(self.w);
        }
        let at = self.w * 64 + self.bits.trailing_zeros() as usize;
        // The usual CRLF, both bits in this word: the two lowest bits cleared.
        if at % 64 < 63 && msg.get(at..at + 2) == Some(b"\r\n") {
            self.bits &= self.bits - 1;
            self.bits &= self.bits.wrapping_sub(1);
            return (at, at + 2);
        }
        let (ce, next) = crate::sip::scan::terminator(msg, at, end);
        // The terminator's bytes are CR or LF: the bits after `at`, maybe in the next
        // word.
        let w = next / 64;
        if w != self.w {
            self.w = w;
            self.bits = cands.eol_word(w);
        }
        self.bits &= u64::MAX << (next % 64);
        (ce, next)
    }
}

/// [`message::start_line`], the usual request line (`METHOD SP URI SP SIP/2.0`, a method
/// of 1 to 15 letters, digits or `-` followed by one space) read with one 16-byte load
/// and one 8-byte compare; anything else (responses included) by `start_line` itself.
///
/// Why this is `start_line`'s reading: its line is the first line's content (the same
/// line end, here from the index); a line ending ` SIP/2.0` (any case) has no trailing
/// whitespace, so its `end` is the line's end and its version starts 7 bytes before (the
/// same compare); its method is the run of token characters from the start, which ends
/// at the first space when every byte before it is a letter, digit or `-`; the URI is
/// then found with the same `skip_ws` / `trim_end`, and every check it makes holds.
#[allow(clippy::type_complexity)]
#[inline(always)]
pub(super) fn start_line(
    cands: &Cands,
    msg: &[u8],
) -> Result<(StartLine, usize), Result<NotSip, Malformed>> {
    let (ce, next) = cands.line_end(msg, 0, msg.len());
    match request_line(msg, ce) {
        Some((method, uri)) => Ok((StartLine::Request { method, uri }, next)),
        None => message::start_line(msg),
    }
}

/// The method and URI of a request line `msg[..ce]` in the usual form (see
/// [`start_line`]).
#[inline(always)]
fn request_line(msg: &[u8], ce: usize) -> Option<(Range<usize>, Range<usize>)> {
    let line = msg.get(..ce)?;
    let w = msg.first_chunk::<16>()?;
    // ` SIP/2.0`, the letters in any case: OR-ing 0x20 into a byte gives `s` only for
    // `S` and `s` (and likewise `i`, `p`).
    const CASE: u64 = u64::from_le_bytes([0, 0x20, 0x20, 0x20, 0, 0, 0, 0]);
    let tail = u64::from_le_bytes(*line.last_chunk::<8>()?);
    if tail | CASE != u64::from_le_bytes(*b" sip/2.0") {
        return None;
    }
    let (spaces, name_chars) = classes(w, b' ');
    let m_end = spaces.trailing_zeros() as usize;
    let before = (1u32 << (m_end & 31)) - 1;
    // (`m_end < ce - 8`: the space is not the version's.)
    if m_end == 0 || m_end >= 16 || m_end + 8 >= ce || name_chars & before != before {
        return None;
    }
    let v_start = ce - 7;
    let u_start = skip_ws(line, m_end, ce);
    let u_end = trim_end(line, u_start, v_start);
    (u_start < u_end).then_some((0..m_end, u_start..u_end))
}

/// The reference's framing of the line at `pos` (line ends from the index), the walk
/// moved to the next line. (The walk is set here, inline, and not by the out-of-line
/// [`exact_line`]: its address then does not escape, and the header loop keeps it in
/// registers.)
#[allow(clippy::type_complexity)]
#[inline(always)]
fn exact(
    cands: &Cands,
    msg: &[u8],
    pos: usize,
    walk: &mut Walk,
) -> Result<(Line, usize), Result<usize, Malformed>> {
    let r = exact_line(cands, msg, pos);
    if let Ok((_, next)) = r {
        *walk = Walk::at(cands, next);
    }
    r
}

/// [`message::header_with`] at `pos` (line ends from the index), as a [`Line`].
#[allow(clippy::type_complexity)]
#[cold]
#[inline(never)]
fn exact_line(
    cands: &Cands,
    msg: &[u8],
    pos: usize,
) -> Result<(Line, usize), Result<usize, Malformed>> {
    let (h, next) = message::header_with(msg, pos, &cands.lines(msg), Kind::of_token)?;
    let line = Line {
        kind: h.kind,
        name_end: h.name.end,
        raw: h.value,
    };
    Ok((line, next))
}

/// Where the colon is that ends the name of the line at `pos` (content up to `ce`), and
/// the name's kind, when the name is in the usual form: 1 to 15 letters, digits or `-`,
/// then `:` before `ce`. `None` for anything else (and within 16 bytes of the message's
/// end). (A longer name: [`long_name`], from [`long_line`].)
///
/// A name that [`Kind::of_token`] finds to be one of the kinds is in that form without
/// a check of its bytes: its compares OR 0x20 into each byte and compare with a lowercase
/// letter or `-`, which only that letter in either case, or `-` and CR, give; and the
/// line has no CR before `ce`.
#[inline(always)]
fn name_colon(msg: &[u8], pos: usize, ce: usize) -> Option<(usize, Kind)> {
    let w = msg.get(pos..)?.first_chunk::<16>()?;
    let c = hits(w, [b':']).trailing_zeros() as usize;
    if c == 0 || c >= 16 || pos + c >= ce {
        return None;
    }
    if let Some(kind) = handled(w, c) {
        return Some((pos + c, kind));
    }
    let before = (1u32 << c) - 1;
    (classes(w, b':').1 & before == before).then_some((pos + c, Kind::Other))
}

/// [`name_colon`] for a name of 16 to 31 bytes (`P-Asserted-Identity`,
/// `Content-Disposition`, `Content-Encoding`): 16 letters, digits or `-`, then up to 15
/// more and the colon in the next 16 bytes (before `ce`); the same reading as
/// `name_colon`'s. Of the handled names only `Content-Encoding` is this long
/// ([`Kind::of_token`]: every other name of 16 or more bytes is `Other`). `None` for
/// anything else (and within 32 bytes of the message's end).
#[inline(always)]
fn long_name(msg: &[u8], pos: usize, ce: usize) -> Option<(usize, Kind)> {
    let w = msg.get(pos..)?.first_chunk::<16>()?;
    let w2 = msg.get(pos + 16..)?.first_chunk::<16>()?;
    let c2 = hits(w2, [b':']).trailing_zeros() as usize;
    let c = 16 + c2;
    if c2 >= 16 || pos + c >= ce {
        return None;
    }
    let before = (1u32 << c2) - 1;
    if classes(w, b':').1 != 0xffff || classes(w2, b':').1 & before != before {
        return None;
    }
    let kind = match c == 16 && equal_lower(w, b"content-encoding") == 0xffff {
        true => Kind::ContentEncoding,
        false => Kind::Other,
    };
    Some((pos + c, kind))
}

/// The handled names of 1 to 15 bytes (compact forms included; `Content-Encoding` has
/// 16 and is told by [`long_name`]), lowercase, and their kinds: [`Kind::of_token`]'s.
const NAMES: [(&[u8], Kind); 16] = [
    (b"v", Kind::Via),
    (b"m", Kind::Contact),
    (b"f", Kind::From),
    (b"t", Kind::To),
    (b"l", Kind::ContentLength),
    (b"c", Kind::ContentType),
    (b"e", Kind::ContentEncoding),
    (b"to", Kind::To),
    (b"via", Kind::Via),
    (b"from", Kind::From),
    (b"cseq", Kind::CSeq),
    (b"route", Kind::Route),
    (b"contact", Kind::Contact),
    (b"content-type", Kind::ContentType),
    (b"record-route", Kind::RecordRoute),
    (b"content-length", Kind::ContentLength),
];

/// The slot of a name of `len` bytes starting with `first` (either case) in [`BY_HASH`]:
/// a perfect hash of the handled names (checked when the table is built).
#[inline(always)]
const fn slot(first: u8, len: usize) -> usize {
    (((first as usize | 0x20) * 3) ^ (len * 2)) & 31
}

/// A handled name, lowercase, zero past its end; its length and its kind.
#[derive(Clone, Copy)]
struct Slot {
    name: [u8; 16],
    len: usize,
    kind: Kind,
}

/// Each handled name at its [`slot`]; empty slots have length 0, which no name has.
static BY_HASH: [Slot; 32] = {
    let empty = Slot {
        name: [0; 16],
        len: 0,
        kind: Kind::Other,
    };
    let mut t = [empty; 32];
    let mut i = 0;
    while i < NAMES.len() {
        let (name, kind) = NAMES[i];
        let mut e = Slot {
            len: name.len(),
            kind,
            ..empty
        };
        let mut j = 0;
        while j < name.len() {
            e.name[j] = name[j];
            j += 1;
        }
        let s = slot(name[0], name.len());
        assert!(t[s].len == 0, "two names in one slot");
        t[s] = e;
        i += 1;
    }
    t
};

/// [`Kind::of_token`] of the name `w[..len]` (1 to 15 bytes): the slot of its first
/// byte and length, confirmed by its length and one vector compare of the name's bytes
/// with bit 5 set (as `of_token` compares them: only the letter in either case, or `-`
/// and CR, give a lowercase letter or `-`) against the slot's name, its first `len`
/// lanes.
#[cfg(test)]
fn kind_of(w: &[u8; 16], len: usize) -> Kind {
    handled(w, len).unwrap_or(Kind::Other)
}

/// [`kind_of`] of a handled name, `None` for the others (then `Kind::Other`). (An
/// option, not `Other`: a slot's kind is never `Other` — the empty slots have length 0,
/// which no name has — but the compiler checked it again for every name found.)
#[inline(always)]
fn handled(w: &[u8; 16], len: usize) -> Option<Kind> {
    let e = &BY_HASH[slot(w[0], len)];
    let want = (1u32 << (len & 15)) - 1;
    (e.len == len && equal_lower(w, &e.name) & want == want).then_some(e.kind)
}

/// The lanes where `w` with bit 5 set in each byte equals `name` (bit `i`: byte `i`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn equal_lower(w: &[u8; 16], name: &[u8; 16]) -> u32 {
    use core::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of the x86-64 baseline; both arrays have 16 bytes and `loadu`
    // has no alignment requirement.
    unsafe {
        let v = _mm_or_si128(_mm_loadu_si128(w.as_ptr().cast()), _mm_set1_epi8(0x20));
        let n = _mm_loadu_si128(name.as_ptr().cast());
        _mm_movemask_epi8(_mm_cmpeq_epi8(v, n)) as u32
    }
}

/// The lanes where `w` with bit 5 set in each byte equals `name` (bit `i`: byte `i`).
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn equal_lower(w: &[u8; 16], name: &[u8; 16]) -> u32 {
    (0..16).fold(0, |m, i| m | u32::from(w[i] | 0x20 == name[i]) << i)
}

/// The `sep` bytes of `w` and its letters, digits and `-` (bit `i`: byte `i`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn classes(w: &[u8; 16], sep: u8) -> (u32, u32) {
    use core::arch::x86_64::{
        _mm_and_si128, _mm_cmpeq_epi8, _mm_cmpgt_epi8, _mm_cmplt_epi8, _mm_loadu_si128,
        _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of the x86-64 baseline; `w` has 16 bytes and `loadu` has no
    // alignment requirement. (Signed compares: a byte of 0x80 or more is negative, below
    // every lower bound here.)
    unsafe {
        let v = _mm_loadu_si128(w.as_ptr().cast());
        let splat = |c: u8| _mm_set1_epi8(c as i8);
        let seps = _mm_movemask_epi8(_mm_cmpeq_epi8(v, splat(sep))) as u32;
        let lower = _mm_or_si128(v, splat(0x20));
        let letter = _mm_and_si128(
            _mm_cmpgt_epi8(lower, splat(b'a' - 1)),
            _mm_cmplt_epi8(lower, splat(b'z' + 1)),
        );
        let digit = _mm_and_si128(
            _mm_cmpgt_epi8(v, splat(b'0' - 1)),
            _mm_cmplt_epi8(v, splat(b'9' + 1)),
        );
        let dash = _mm_cmpeq_epi8(v, splat(b'-'));
        let name = _mm_or_si128(_mm_or_si128(letter, digit), dash);
        (seps, _mm_movemask_epi8(name) as u32)
    }
}

/// The `sep` bytes of `w` and its letters, digits and `-` (bit `i`: byte `i`).
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn classes(w: &[u8; 16], sep: u8) -> (u32, u32) {
    w.iter().enumerate().fold((0, 0), |(c, n), (i, &b)| {
        (
            c | u32::from(b == sep) << i,
            n | u32::from(b.is_ascii_alphanumeric() || b == b'-') << i,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::{classes, header, kind_of, Walk};
    use crate::{
        rewrite::fast::{index::Cands, Gate},
        sip::message::{self, Kind},
    };

    /// The framing from one load gives `message::header`'s answer for header lines whose
    /// name is each handled name (and others) with each byte, in turn, replaced by every
    /// byte value, followed by values with and without whitespace around them.
    #[test]
    fn header_lines_framed_as_the_reference_frames_them() {
        let names: [&[u8]; 12] = [
            b"Via",
            b"v",
            b"To",
            b"Content-Length",
            b"Record-Route",
            b"CSeq",
            b"X-Long-Name-1",
            b"Content-Encoding",
            b"P-Asserted-Identity",
            b"X-Abcdefghijklmnopqrstuvwxyz-12",
            b"X-Abcdefghijklmnopqrstuvwxyz-123",
            b"Session-Expires",
        ];
        let tails: [&[u8]; 5] = [
            b": x\r\n",
            b":  x \r\n",
            b":\r\n",
            b" : x\r\n y\r\n",
            b": x\r\n y\r\n\tz\r\n",
        ];
        for name in names {
            for i in 0..name.len() {
                for b in 0..=255u8 {
                    for tail in tails {
                        let mut m = name.to_vec();
                        m[i] = b;
                        m.extend_from_slice(tail);
                        m.extend_from_slice(b"Max-Forwards: 70\r\n\r\n");
                        walk_equals_header(&m);
                    }
                }
            }
        }
    }

    /// Every header line of `m`, framed by the walk over its line ends, is what
    /// `message::header` reads, up to the same end of the headers or the same error.
    #[track_caller]
    fn walk_equals_header(m: &[u8]) {
        let c = Cands::find(m, &Gate::ALL);
        let (mut pos, mut walk) = (0, Walk::at(&c, 0));
        loop {
            let want = message::header(m, pos).map(|h| h.expect("a header"));
            let got = header(&c, m, pos, &mut walk).map(|(l, next)| {
                let h = message::Header {
                    kind: l.kind,
                    name: pos..l.name_end,
                    value: l.value(m),
                };
                (h, next)
            });
            assert_eq!(got, want, "{:?} at {pos}", String::from_utf8_lossy(m));
            match got {
                Ok((_, next)) => pos = next,
                Err(_) => break,
            }
        }
    }

    /// The walk over the line ends gives `message::header`'s answers when the
    /// terminators (CRLF, LF, CR CR LF, a bare CR) and folded lines fall on every
    /// position around the bitmap's word boundaries.
    #[test]
    fn header_walk_across_word_boundaries() {
        let ends: [&[u8]; 4] = [b"\r\n", b"\n", b"\r\r\n", b"\r"];
        for pad in 0..80 {
            for e1 in ends {
                for e2 in ends {
                    let mut m = b"Via: ".to_vec();
                    m.extend(core::iter::repeat_n(b'a', pad));
                    m.extend_from_slice(e1);
                    m.extend_from_slice(b" folded");
                    m.extend_from_slice(e2);
                    m.extend_from_slice(b"To: <sip:x@10.0.0.1>");
                    m.extend_from_slice(e1);
                    m.extend(core::iter::repeat_n(b'b', pad / 3));
                    m.extend_from_slice(b"X: y");
                    m.extend_from_slice(e2);
                    // (Also without the empty line: the headers run to the end.)
                    let unended = m.clone();
                    m.extend_from_slice(e1);
                    m.extend_from_slice(b"body");
                    walk_equals_header(&m);
                    walk_equals_header(&unended);
                }
            }
        }
    }

    /// The hashed kinds are `Kind::of_token`'s for every handled name (and others) of 1
    /// to 15 bytes with each byte, in turn, replaced by every byte value, and for every
    /// length of each.
    #[test]
    fn hashed_kinds_are_of_tokens() {
        let mut names: Vec<&[u8]> = super::NAMES.iter().map(|&(n, _)| n).collect();
        names.extend([
            &b"Max-Forwards"[..],
            b"X",
            b"CSEQ",
            b"Call-ID",
            b"content-lengtX",
        ]);
        for name in names {
            for len in 1..=15 {
                for i in 0..len {
                    for b in 0..=255u8 {
                        let mut w = [b'x'; 16];
                        let n = name.len().min(len);
                        w[..n].copy_from_slice(&name[..n]);
                        w[i] = b;
                        assert_eq!(
                            kind_of(&w, len),
                            Kind::of_token(&w[..len]),
                            "{:?}",
                            String::from_utf8_lossy(&w[..len])
                        );
                    }
                }
            }
        }
    }

    /// The vector classes equal the byte-wise ones for every byte value in every lane.
    #[test]
    fn classes_equal_the_bytewise_ones() {
        for b in 0..=255u8 {
            for i in 0..16 {
                let mut w = [b'x'; 16];
                w[i] = b;
                let (c, n) = classes(&w, b':');
                assert_eq!(c >> i & 1 == 1, b == b':', "{b:#x} at {i}");
                assert_eq!(
                    classes(&w, b' ').0 >> i & 1 == 1,
                    b == b' ',
                    "{b:#x} at {i}"
                );
                assert_eq!(
                    n >> i & 1 == 1,
                    b.is_ascii_alphanumeric() || b == b'-',
                    "{b:#x} at {i}"
                );
            }
        }
    }
}
