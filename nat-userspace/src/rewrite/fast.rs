//! The fast path in front of the exact rewriter ([`super::reference`]): the same parsers,
//! run only where an address of ours can be.
//!
//! An address can only be rewritten when the rules (outbound) or the external addresses
//! (inbound) claim it, and every IPv4 address they can claim is written with one of a
//! few first octets. Its text then holds that octet's decimal digits followed by `.`
//! (leading zeros keep it: `010.` still ends in `10.`). A [`Gate`], computed once per
//! published snapshot, is the set of those first octets. One SSE2 sweep over the message
//! finds every `.` whose 1-3 preceding digits are an octet of the set, and every `ffff`
//! (any case: an IPv4-mapped IPv6 address always has it); these *candidates* are the only
//! places an address of ours can start. A header value, the request URI, an SDP body or
//! an SDP line without a candidate cannot produce an edit, a family mismatch or a port
//! change, so its exact parse is skipped. The framing (start line, every header line,
//! Content-Length, Content-Type/Encoding, CSeq, the first Via, the end of the message)
//! always runs, so `NotSip` / `Malformed` and the discarded trailing bytes are those of
//! the reference.
//!
//! What a candidate cannot rule out goes through the full parse: IPv6 rules (outbound)
//! and IPv6 external addresses (inbound) make every region a candidate, a message with
//! a message longer than [`MAX_INDEXED`] (2 KiB) too; SDP with port maps is parsed whole when it has
//! a candidate (a port follows the address of its section); multipart bodies are parsed
//! whole. A rule shorter than /8 adds all its first octets. The `differential` test and
//! fuzz target compare this path with the reference byte for byte.
//!
//! Why a hand-written sweep and not `memchr::memmem` / `aho-corasick` over the needles
//! `10.`, `192.`, ...: the needle set is a set of byte values, tested with one table
//! lookup per `.` (a SIP message has a few dozen), so the gate is 32 bytes that need no
//! allocation to build — it can be built per call when the caller has none — and one
//! pass finds both kinds of candidates.

use super::{
    edits::{Edits, Field},
    message::{unchanged, BodyHeaders, Changes, Context, Outcome, Rewrite, Rewriter},
};
use crate::{
    nat::{Direction, ExternalAddrs, Net, RewriteConfig},
    sip::{
        body::{self, BodyKind},
        message::{self, Kind, Malformed, StartLine},
        scan::{is_ws, skip_ws, trim_end},
        sdp,
    },
};

/// The first octets of the IPv4 addresses that may be rewritten in one direction, or
/// "everything" when a needle cannot rule an address out (IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gate {
    octets: [u64; 4],
    /// Bit d: some octet of the set ends in the digit d.
    last_digits: u16,
    all: bool,
}

impl Gate {
    /// A gate that lets everything through (the full parse everywhere).
    pub const ALL: Gate = Gate {
        octets: [u64::MAX; 4],
        last_digits: 0x3ff,
        all: true,
    };

    /// The gate of one direction under `config` and `external`.
    pub fn new(config: &RewriteConfig, external: &ExternalAddrs, direction: Direction) -> Gate {
        let mut g = Gate {
            octets: [0; 4],
            last_digits: 0,
            all: false,
        };
        match direction {
            Direction::Outbound => {
                for r in &config.rules {
                    match r.internal {
                        Net::V4 { addr, mask, .. } => {
                            let (first, m) = ((addr >> 24) as u8, (mask >> 24) as u8);
                            for o in 0..=255u8 {
                                if o & m == first & m {
                                    g.add(o);
                                }
                            }
                        }
                        Net::V6 { .. } => g.all = true,
                    }
                }
            }
            Direction::Inbound => {
                if external.v6.is_some() {
                    g.all = true;
                }
                if let Some(v4) = external.v4 {
                    g.add(v4.octets()[0]);
                }
                for r in &config.rules {
                    match r.external {
                        Some(core::net::IpAddr::V4(v4)) => g.add(v4.octets()[0]),
                        Some(core::net::IpAddr::V6(_)) => g.all = true,
                        None => {}
                    }
                }
            }
        }
        if g.all {
            return Gate::ALL;
        }
        g
    }

    /// The gate for `ctx` (computed from its config: O(rules)).
    pub fn of(ctx: &Context<'_>) -> Gate {
        Gate::new(ctx.config, &ctx.external, ctx.direction)
    }

    #[inline]
    fn add(&mut self, o: u8) {
        self.octets[usize::from(o >> 6)] |= 1 << (o & 63);
        self.last_digits |= 1 << (o % 10);
    }

    #[inline]
    fn has(&self, v: u32) -> bool {
        v < 256 && self.octets[(v >> 6) as usize] & (1 << (v & 63)) != 0
    }

    /// No IPv4 address can be ours, nor any other.
    #[inline]
    fn is_empty(&self) -> bool {
        !self.all && self.octets == [0; 4]
    }

    /// Whether this gate lets everything through.
    pub fn is_all(&self) -> bool {
        self.all
    }
}

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

    /// Indexes `msg` under `gate`: one pass, 64 bytes at a time.
    #[inline(never)]
    pub(super) fn find(msg: &[u8], gate: &Gate) -> Cands {
        let indexed = msg.len() <= MAX_INDEXED;
        let mut c = Cands {
            bits: [0; WORDS],
            eol: [0; WORDS],
            indexed,
            all: gate.all || !indexed,
        };
        if !indexed {
            return c;
        }
        let want = !c.all && !gate.is_empty();
        // The `f` bits of the 3 bytes before the chunk (a `ffff` across chunks).
        let mut carry: u64 = 0;
        for (w, (slot, eol)) in c.bits.iter_mut().zip(c.eol.iter_mut()).enumerate() {
            let at = w * 64;
            if at >= msg.len() {
                break;
            }
            let [dots, fs, ends] = match msg.get(at..at + 64) {
                Some(chunk) => masks64(chunk),
                None => {
                    let mut tail = [0u8; 64];
                    tail[..msg.len() - at].copy_from_slice(&msg[at..]);
                    masks64(&tail)
                }
            };
            *eol = ends;
            if !want {
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
        c
    }

    /// The first CR or LF in `msg[pos..end]` (`end` ≤ the message's length), from the
    /// index ([`crate::sip::scan::find_eol`] for a message too long for it).
    #[inline(always)]
    fn find_eol(&self, msg: &[u8], pos: usize, end: usize) -> Option<usize> {
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
    fn header(
        &self,
        msg: &[u8],
        pos: usize,
    ) -> Result<(message::Header, usize), Result<usize, Malformed>> {
        let end = msg.len();
        if pos >= end {
            return Err(Ok(end));
        }
        let (mut ce, mut next) = self.line_end(msg, pos, end);
        if ce == pos {
            return Err(Ok(next));
        }
        let name_end = msg[pos..ce]
            .iter()
            .position(|&b| !message::is_token_char(b))
            .map_or(ce, |i| pos + i);
        let mut colon = name_end;
        while colon < ce && is_ws(msg[colon]) {
            colon += 1;
        }
        if name_end == pos || colon >= ce || msg[colon] != b':' {
            return Err(Err(Malformed::BadHeaderLine));
        }
        while next < end && is_ws(msg[next]) {
            let (c2, n2) = self.line_end(msg, next, end);
            ce = c2;
            next = n2;
        }
        let v_start = skip_ws(msg, colon + 1, ce);
        let v_end = trim_end(msg, v_start, ce).max(v_start);
        Ok((
            message::Header {
                kind: kind_of(&msg[pos..name_end]),
                name: pos..name_end,
                value: v_start..v_end,
            },
            next,
        ))
    }
}

/// [`Kind::of`] with word-wide compares. `name` holds token characters only, for which
/// setting bit 5 lowercases a letter and leaves `-`, digits and every other token
/// character off the lowercase letters: OR-ing 0x20 and comparing with the lowercase name
/// is the case-insensitive compare.
#[inline]
fn kind_of(name: &[u8]) -> Kind {
    #[inline(always)]
    fn eq(name: &[u8], lower: &[u8]) -> bool {
        debug_assert_eq!(name.len(), lower.len());
        let n = name.len();
        let word = |b: &[u8], at: usize| {
            u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes")) | 0x2020_2020_2020_2020
        };
        if n >= 8 {
            // Two (overlapping) words cover 8 to 16 bytes.
            word(name, 0) == word(lower, 0) && word(name, n - 8) == word(lower, n - 8)
        } else {
            name.iter().zip(lower).all(|(&a, &b)| a | 0x20 == b)
        }
    }
    match name.len() {
        1 => match name[0] | 0x20 {
            b'v' => Kind::Via,
            b'm' => Kind::Contact,
            b'f' => Kind::From,
            b't' => Kind::To,
            b'l' => Kind::ContentLength,
            b'c' => Kind::ContentType,
            b'e' => Kind::ContentEncoding,
            _ => Kind::Other,
        },
        2 if eq(name, b"to") => Kind::To,
        3 if eq(name, b"via") => Kind::Via,
        4 if eq(name, b"from") => Kind::From,
        4 if eq(name, b"cseq") => Kind::CSeq,
        5 if eq(name, b"route") => Kind::Route,
        7 if eq(name, b"contact") => Kind::Contact,
        12 if eq(name, b"content-type") => Kind::ContentType,
        12 if eq(name, b"record-route") => Kind::RecordRoute,
        14 if eq(name, b"content-length") => Kind::ContentLength,
        16 if eq(name, b"content-encoding") => Kind::ContentEncoding,
        _ => Kind::Other,
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

/// The `.`, `f`/`F` and CR-or-LF bits of 64 bytes.
#[inline(always)]
fn masks64(b: &[u8]) -> [u64; 3] {
    let b = &b[..64];
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

/// [`super::rewrite_message`] on the fast path, with the thread's edit list and a gate
/// computed for the call.
#[inline]
pub fn rewrite_message(buf: &mut [u8], len: usize, ctx: &Context<'_>) -> Rewrite {
    if !ctx.config.enabled {
        return unchanged(len);
    }
    let gate = Gate::of(ctx);
    super::message::EDITS.with(|e| match e.try_borrow_mut() {
        Ok(mut e) => rewrite(buf, len, ctx, &gate, &mut e, None),
        Err(_) => rewrite(buf, len, ctx, &gate, &mut Edits::new(), None),
    })
}

/// [`rewrite_message`] with the caller's edit list and gate (allocates nothing).
#[inline]
pub fn rewrite_message_in(
    buf: &mut [u8],
    len: usize,
    ctx: &Context<'_>,
    gate: &Gate,
    edits: &mut Edits,
) -> Rewrite {
    if !ctx.config.enabled {
        return unchanged(len);
    }
    rewrite(buf, len, ctx, gate, edits, None)
}

/// Sums of the payload bytes that changed, for the UDP checksum: `from` (even) is where
/// the first change is; `old` is the one's-complement sum of `payload[from..old_len]`
/// before the edits, `new` of `payload[from..new_len]` after.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Sums {
    pub old: u64,
    pub new: u64,
}

/// The rewrite; `sums`, when given, receives the sums of the changed bytes when the
/// outcome is `Rewritten`.
#[inline(never)]
pub(super) fn rewrite(
    buf: &mut [u8],
    len: usize,
    ctx: &Context<'_>,
    gate: &Gate,
    edits: &mut Edits,
    sums: Option<&mut Sums>,
) -> Rewrite {
    edits.clear();
    let len = len.min(buf.len());
    let mut r = Rewriter {
        ctx,
        edits,
        cache: arrayvec::ArrayVec::new(),
        family_mismatch: 0,
        full: false,
        cl_short: false,
        untyped_body_leaks: false,
        msg_end: len,
        registered: None,
    };
    let outbound = ctx.direction == Direction::Outbound;
    let scanned = scan(&mut r, &buf[..len], gate);
    let family_mismatch = r.family_mismatch;
    let cl_short = r.cl_short;
    let mut would_leak = outbound && (family_mismatch > 0 || r.full || r.untyped_body_leaks);
    let outcome = match scanned {
        Ok(()) if r.full => Outcome::Malformed(Malformed::TooManyAddresses),
        Ok(()) if r.edits.is_empty() && r.msg_end == len => Outcome::Unchanged,
        Ok(()) => {
            let msg_end = r.msg_end;
            // The first changed byte: the first edit, or the discarded tail.
            let from = r
                .edits
                .iter()
                .map(|e| e.start as usize)
                .min()
                .unwrap_or(msg_end)
                .min(msg_end)
                & !1;
            let old = match sums {
                Some(_) => crate::wire::checksum::sum(&buf[from..len]),
                None => 0,
            };
            match r.edits.apply(buf, msg_end) {
                Some(new_len) => {
                    if let Some(s) = sums {
                        s.old = old;
                        s.new = crate::wire::checksum::sum(&buf[from..new_len]);
                    }
                    let mut changes = Changes::default();
                    for e in r.edits.iter() {
                        changes.count(e.field);
                    }
                    return Rewrite {
                        outcome: Outcome::Rewritten(changes),
                        len: new_len,
                        family_mismatch,
                        content_length_short: cl_short,
                        trailing_discarded: len - msg_end,
                        would_leak,
                        registered_s: r.registered,
                    };
                }
                None => Outcome::TooBig,
            }
        }
        Err(o) => {
            if outbound && matches!(o, Outcome::Malformed(_)) {
                let cfg = ctx.config;
                would_leak =
                    crate::sip::scan::any_address(buf, 0, len, |a| cfg.rule_for(a).is_some());
            }
            o
        }
    };
    Rewrite {
        outcome,
        len,
        family_mismatch,
        content_length_short: cl_short,
        trailing_discarded: 0,
        would_leak,
        registered_s: r.registered,
    }
}

/// The reference's `Rewriter::scan`, with each exact parse behind a candidate check.
fn scan(r: &mut Rewriter<'_, '_, '_>, msg: &[u8], gate: &Gate) -> Result<(), Outcome> {
    if let Some(ns) = message::not_sip(msg) {
        return Err(Outcome::NotSip(ns));
    }
    let (start, mut pos) = message::start_line(msg).map_err(|e| match e {
        Ok(ns) => Outcome::NotSip(ns),
        Err(m) => Outcome::Malformed(m),
    })?;
    let cands = Cands::find(msg, gate);
    let cfg = r.ctx.config;
    if let StartLine::Request { uri, .. } = &start {
        if cands.any(uri.start, uri.end) {
            r.uri(msg, uri.start, uri.end, Field::RequestUri);
        }
    }
    let bindings = match start {
        StartLine::Response { code } if (200..400).contains(&code) => {
            message::cseq_is_register(msg, pos)
        }
        _ => false,
    };
    let mut seen_via = false;
    let mut framing = BodyHeaders::default();
    let body_start = loop {
        let (h, next) = match cands.header(msg, pos) {
            Ok(x) => x,
            Err(Ok(body)) => break body,
            Err(Err(m)) => return Err(Outcome::Malformed(m)),
        };
        pos = next;
        let v = h.value;
        // A rewritable header without a candidate: nothing to parse.
        let skip = matches!(
            h.kind,
            Kind::Contact | Kind::From | Kind::To | Kind::Route | Kind::RecordRoute
        ) && !cands.any(v.start, v.end);
        match h.kind {
            Kind::Via if !seen_via => {
                seen_via = true;
                if cands.any(v.start, v.end) {
                    r.top_via(msg, v);
                }
            }
            _ if skip => {}
            Kind::Contact if !bindings => r.uri_list(msg, v, Field::Contact, true),
            Kind::Contact => r.bindings(msg, v),
            Kind::From | Kind::To if cfg.from_to => r.uri_list(msg, v, Field::FromTo, false),
            Kind::Route if cfg.record_route => r.uri_list(msg, v, Field::Route, true),
            Kind::RecordRoute if cfg.record_route => r.uri_list(msg, v, Field::RecordRoute, true),
            kind => framing.note(msg, kind, v)?,
        }
    };
    let body_end = r.body_end(msg.len(), body_start, &framing);
    // A body without a candidate holds no address of ours: nothing to parse or check.
    if cands.any(body_start, body_end) {
        match (framing.content_type.clone(), framing.encoded) {
            (Some(ct), false) => match body::kind(msg, ct) {
                BodyKind::Sdp if !port_maps(cfg) && r.ctx.media.is_none() => {
                    sdp(r, msg, body_start, body_end, &cands)
                }
                kind => r.body(msg, body_start, body_end, kind, 0),
            },
            (None, _) => r.untyped_body(msg, body_start, body_end),
            _ => {}
        }
    }
    r.follow_content_length(framing, body_start, body_end);
    Ok(())
}

/// Whether any rule maps ports (then SDP ports follow their section's address, and the
/// SDP is parsed whole).
#[inline]
fn port_maps(cfg: &RewriteConfig) -> bool {
    cfg.rules.iter().any(|r| !r.ports.is_empty())
}

/// SDP without port maps: only the addresses of `c=`, `o=` and `a=rtcp` lines change, in
/// sections that are not rejected; only lines with a candidate are parsed (and every `m=`
/// line, which decides whether its section is rejected).
fn sdp(r: &mut Rewriter<'_, '_, '_>, msg: &[u8], start: usize, end: usize, cands: &Cands) {
    let mut pos = start;
    let mut rejected = false;
    while pos < end {
        let (ce, next) = cands.line_end(msg, pos, end);
        let line = pos..ce;
        pos = next;
        let is_m = msg.get(line.start) == Some(&b'm');
        if !is_m && !cands.any(line.start, line.end) {
            continue;
        }
        let Some(item) = sdp::line_item(msg, line, &mut rejected) else {
            continue;
        };
        if item.rejected || item.field == sdp::Field::Media {
            continue;
        }
        let field = match item.field {
            sdp::Field::Connection => Field::SdpConnection,
            sdp::Field::Origin => Field::SdpOrigin,
            _ => Field::SdpRtcp,
        };
        if let Some(a) = &item.addr {
            let hp = crate::sip::uri::HostPort {
                host: a.range.clone(),
                addr: a.addr,
                bracketed: false,
                port: None,
            };
            r.host(&hp, None, false, field);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::{Net, RewriteConfig};

    #[test]
    fn kind_of_equals_the_scanners() {
        let names: &[&[u8]] = &[
            b"v",
            b"V",
            b"m",
            b"f",
            b"t",
            b"l",
            b"c",
            b"e",
            b"i",
            b"x",
            b"to",
            b"TO",
            b"tO",
            b"via",
            b"VIA",
            b"Via",
            b"vIa",
            b"from",
            b"cseq",
            b"CSeq",
            b"route",
            b"contact",
            b"Contact",
            b"content-type",
            b"Content-Type",
            b"record-route",
            b"Record-Route",
            b"content-length",
            b"CONTENT-LENGTH",
            b"content-encoding",
            b"Content-Encoding",
            b"X-Via",
            b"vi`",
            b"contacT",
            b"content_type",
            b"content-typ3",
            b"recorD-route",
            b"content-lengtH",
            b"Content-Encodin9",
            b"fr0m",
            b"cse~",
            b"rout!",
            b"To!",
        ];
        for n in names {
            assert_eq!(kind_of(n), Kind::of(n), "{}", String::from_utf8_lossy(n));
        }
        // Every token character in every position of every name's length.
        let tokens: Vec<u8> = (0..=255u8).filter(|&b| message::is_token_char(b)).collect();
        for n in names {
            for i in 0..n.len() {
                for &t in &tokens {
                    let mut v = n.to_vec();
                    v[i] = t;
                    assert_eq!(kind_of(&v), Kind::of(&v), "{}", String::from_utf8_lossy(&v));
                }
            }
        }
    }

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
