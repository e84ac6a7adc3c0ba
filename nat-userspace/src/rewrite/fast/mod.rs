//! The fast path in front of the exact rewriter ([`super::reference`]): the same parsers,
//! run only where an address of ours can be.
//!
//! An address can only be rewritten when the rules (outbound) or the external addresses
//! (inbound) claim it, and every IPv4 address they can claim is written with one of a
//! few first octets. Its text then holds that octet's decimal digits followed by `.`
//! (leading zeros keep it: `010.` still ends in `10.`). A [`Gate`], computed once per
//! published snapshot, is the set of those first octets. One SIMD sweep over the message
//! ([`index`]: AVX2, or SSE2 without it) finds every `.` whose 1-3 preceding digits are an
//! octet of the set, and every `:` right after an `f` or `F` (an IPv4-mapped IPv6
//! address, `::ffff:a00:1`, `0:0:0:0:0:FFFF:10.0.0.1`, `0:0:0:0:0:ffff::1`, always has
//! its `ffff` group followed by a `:`); these *candidates* are the only places inside
//! an address of ours. A header
//! value, the request URI, an SDP body or an SDP line without a candidate cannot produce
//! an edit, a family mismatch or a port change, so its exact parse is skipped; one with a
//! candidate is read in its plain form where that is certain ([`fields`]), by the
//! reference's parsers otherwise. The framing (start line, every header line,
//! Content-Length, Content-Type/Encoding, CSeq, the first Via, the end of the message)
//! always runs, so `NotSip` / `Malformed` and the discarded trailing bytes are those of
//! the reference.
//!
//! What a candidate cannot rule out goes through the full parse: IPv6 rules (outbound)
//! and IPv6 external addresses (inbound) make every region a candidate, a message
//! longer than [`MAX_INDEXED`] (2 KiB) too; SDP with port maps is parsed whole when it has
//! a candidate (a port follows the address of its section); multipart bodies are parsed
//! whole. A rule shorter than /8 adds all its first octets. The `differential` test and
//! fuzz target compare this path with the reference byte for byte.
//!
//! Why a hand-written sweep and not `memchr::memmem` / `aho-corasick` over the needles
//! `10.`, `192.`, ...: the needle set is small and fixed per gate. Up to four first
//! octets (one or a few rules: the usual case) are matched in the same vector pass that
//! finds the line ends, each by one compare per digit of its text against the bytes
//! before every `.`; a gate with more (a rule shorter than /8, many rules) checks each
//! `.` against its 256-bit set instead (a SIP message has a few dozen). The gate needs
//! no allocation to build — it can be built per call when the caller has none — and one
//! pass finds both kinds of candidates.

use super::{
    edits::{Edits, RewrittenField},
    message::{
        rewrite_with, scan_start_with, unchanged, BodyHeaders, Context, Outcome, Rewrite, Rewriter,
    },
};
use crate::{
    nat::{rules::OneRuleV4, Direction, ExternalAddrs, Net, RewriteConfig},
    sip::{
        addr::Text,
        body::{self, BodyKind},
        message::{Kind, StartLine},
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
    /// The config's `enabled`, kept here so that the gated entry points
    /// ([`rewrite_message_in`], `rewrite_packet_gated`) answer a disabled rewrite with one
    /// load from the gate the caller already holds, not two through the context's config
    /// (FastPath: 0.67 → 0.35 ns a call in a batch loop).
    enabled: bool,
    /// The decimal text of each octet of the set (at most [`index::MAX_NEEDLES`] of
    /// them), matched before a `.` by vector compares in the index pass; unused when
    /// `n_needles` is [`index::TOO_MANY`] (each `.` is then checked against `octets`).
    needles: [index::Needle; index::MAX_NEEDLES],
    n_needles: u8,
    /// The index pass's mode for this gate (`index::mode`, computed once here).
    mode: u8,
    /// Outbound, the compiled decision of a single IPv4 rule and the text of its external
    /// address, rendered once (both handed to the rewriter).
    one_v4: Option<(OneRuleV4, Text)>,
}

impl Gate {
    /// A gate that lets everything through (the full parse everywhere).
    pub const ALL: Gate = Gate {
        octets: [u64::MAX; 4],
        last_digits: 0x3ff,
        all: true,
        enabled: true,
        needles: [index::Needle::NONE; index::MAX_NEEDLES],
        n_needles: index::TOO_MANY,
        mode: 0,
        one_v4: None,
    };

    /// The gate of one direction under `config` and `external`.
    pub fn new(config: &RewriteConfig, external: &ExternalAddrs, direction: Direction) -> Gate {
        let mut g = Gate {
            octets: [0; 4],
            last_digits: 0,
            all: false,
            enabled: config.enabled,
            needles: [index::Needle::NONE; index::MAX_NEEDLES],
            n_needles: 0,
            mode: 0,
            one_v4: None,
        };
        match direction {
            Direction::Outbound => {
                g.one_v4 = OneRuleV4::of(config, external).map(|one| {
                    let mut t = Text::default();
                    if let Some(e) = one.external() {
                        t.push_ipv4(e);
                    }
                    (one, t)
                });
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
            return Gate {
                enabled: config.enabled,
                ..Gate::ALL
            };
        }
        for o in 0..=255u8 {
            if !g.has(u32::from(o)) {
                continue;
            }
            match g.needles.get_mut(usize::from(g.n_needles)) {
                Some(n) => {
                    *n = index::Needle::of(o);
                    g.n_needles += 1;
                }
                None => {
                    g.n_needles = index::TOO_MANY;
                    break;
                }
            }
        }
        g.mode = index::mode(&g);
        g
    }

    /// This gate for a data path with media bindings (`Context::media`), whose SDP bodies
    /// are read whole (`media_body`, not from the index's marked lines): the index pass
    /// leaves out the `m` bytes it would mark for them (~9 instructions a 64-byte word).
    /// A gate made so still gives the exact result without media bindings: the marked
    /// lines are then every line of the body.
    pub fn for_media_nat(self) -> Gate {
        let mut g = self;
        if g.mode != index::NOTHING {
            g.mode |= index::NO_MARKS;
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

    /// Whether rewriting is on in the config this gate was built from.
    #[inline]
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether this gate lets everything through.
    pub fn is_all(&self) -> bool {
        self.all
    }
}

mod fields;
mod framing;
mod index;
mod lanes;
mod search;

use fields::name_addrs;

use index::Cands;
pub use index::MAX_INDEXED;

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

/// [`rewrite_message`] with the caller's edit list and gate (allocates nothing). The gate
/// is that of `ctx`'s config ([`Gate::of`], or the published snapshot's): whether
/// rewriting is enabled is read from it.
#[inline]
pub fn rewrite_message_in(
    buf: &mut [u8],
    len: usize,
    ctx: &Context<'_>,
    gate: &Gate,
    edits: &mut Edits,
) -> Rewrite {
    debug_assert_eq!(gate.enabled, ctx.config.enabled, "a gate of another config");
    if !gate.enabled {
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
    rewrite_with(
        buf,
        len,
        ctx,
        edits,
        |r, msg| scan(r, msg, gate),
        |edits, buf, msg_end, len| {
            // The first changed byte (the first edit, or the discarded tail) and the sum
            // from it before the edits: only when the sums are wanted.
            let before = sums.map(|s| {
                let from = edits
                    .iter()
                    .map(|e| e.start as usize)
                    .min()
                    .unwrap_or(msg_end)
                    .min(msg_end)
                    & !1;
                (s, from, crate::wire::checksum::sum(&buf[from..len]))
            });
            let new_len = edits.apply(buf, msg_end)?;
            if let Some((s, from, old)) = before {
                s.old = old;
                s.new = crate::wire::checksum::sum(&buf[from..new_len]);
            }
            Some(new_len)
        },
    )
}

/// The reference's `Rewriter::scan`, with each exact parse behind a candidate check.
/// (Inlined always: left to LLVM, it was at times compiled as a function of its own, ~50
/// instructions a message more; the same attribute on the closure that calls it cost
/// ~40 more again.)
#[inline(always)]
fn scan(r: &mut Rewriter<'_, '_, '_>, msg: &[u8], gate: &Gate) -> Result<(), Outcome> {
    let mut cands = Cands::empty();
    let (start, mut pos, bindings) = scan_start_with(msg, |msg| {
        cands.index(msg, gate);
        framing::start_line(&cands, msg)
    })?;
    let cfg = r.ctx.config;
    // (Only the compiled rule of this config and external address: a gate of another
    // snapshot would write its external address.)
    r.one_v4 = gate
        .one_v4
        .filter(|(one, _)| one.is_of(cfg, &r.ctx.external));
    cands.ports = r.ctx.napt.is_some() || port_maps(cfg);
    let cands = &cands;
    if let StartLine::Request { uri, .. } = &start {
        if cands.any(uri.start, uri.end) {
            r.uri(msg, uri.start, uri.end, RewrittenField::RequestUri);
        }
    }
    let mut seen_via = false;
    let mut framing = BodyHeaders::default();
    let mut walk = framing::Walk::at(cands, pos);
    let body_start = loop {
        let (h, next) = match framing::header(cands, msg, pos, &mut walk) {
            Ok(x) => x,
            Err(Ok(body)) => break body,
            Err(Err(m)) => return Err(Outcome::Malformed(m)),
        };
        pos = next;
        // (The value is trimmed only for the kinds read below; `h.raw` has the same
        // candidates.)
        let raw = h.raw.clone();
        match h.kind {
            Kind::Via if !seen_via => {
                seen_via = true;
                if cands.any(raw.start, raw.end) {
                    fields::top_via(r, msg, h.value(msg), cands);
                }
            }
            // A rewritable header without a candidate: nothing to parse.
            Kind::Contact | Kind::From | Kind::To | Kind::Route | Kind::RecordRoute
                if !cands.any(raw.start, raw.end) => {}
            Kind::Contact if !bindings => {
                name_addrs(r, msg, h.value(msg), RewrittenField::Contact, true, cands)
            }
            Kind::Contact => r.bindings(msg, h.value(msg)),
            Kind::From | Kind::To if cfg.from_to => {
                name_addrs(r, msg, h.value(msg), RewrittenField::FromTo, false, cands)
            }
            Kind::Route if cfg.record_route => {
                name_addrs(r, msg, h.value(msg), RewrittenField::Route, true, cands)
            }
            Kind::RecordRoute if cfg.record_route => name_addrs(
                r,
                msg,
                h.value(msg),
                RewrittenField::RecordRoute,
                true,
                cands,
            ),
            // (Only the kinds `note` reads: a call per other header was ~30
            // instructions for nothing.)
            // (`note`'s reading of a Content-Type, without the call.)
            Kind::ContentType => framing.content_type = Some(h.value(msg)),
            kind @ (Kind::ContentLength | Kind::ContentEncoding) => {
                framing.note(msg, kind, h.value(msg))?
            }
            _ => {}
        }
    };
    let body_end = r.body_end(msg.len(), body_start, &framing);
    // A body without a candidate holds no address of ours: nothing to parse or check,
    // and its length stays (no edit lies in it: no Content-Length to follow).
    if cands.any(body_start, body_end) {
        let cl_slot = r.reserve_content_length(&framing);
        match (framing.content_type.clone(), framing.encoded) {
            (Some(ct), false) => match body_kind(msg, ct) {
                BodyKind::Sdp if !port_maps(cfg) && r.ctx.media.is_none() => {
                    sdp(r, msg, body_start, body_end, cands)
                }
                kind if r.ctx.media.is_some() => {
                    media_body(r, msg, body_start..body_end, kind, cands)
                }
                kind => r.body(msg, body_start, body_end, kind),
            },
            (None, _) => r.untyped_body(msg, body_start, body_end),
            _ => {}
        }
        r.follow_content_length_in(&framing, body_start, body_end, cl_slot);
    }
    Ok(())
}

/// A body of kind `kind` with media bindings: the reference's reading
/// (`Rewriter::body_in`) in the message's [`dialog`]. (A function of its own: in the
/// rewrite, finding the dialog there moved every message's code by ~20 instructions.)
#[inline(never)]
fn media_body(
    r: &mut Rewriter<'_, '_, '_>,
    msg: &[u8],
    body: core::ops::Range<usize>,
    kind: BodyKind,
    cands: &Cands,
) {
    let call = dialog(msg, cands);
    match kind {
        // The reference's reading of the SDP, its items read from the index's lines and
        // its plain `c=` / `o=` lines as the fast path reads them (`fields::sdp_item`).
        BodyKind::Sdp => {
            let (mut pos, mut rejected) = (body.start, false);
            // The lines' ends popped from the index's bitmap in order (a line cut at the
            // body's end, as `line_end` up to it cuts it; what follows is not read).
            let mut walk = framing::Walk::at(cands, pos);
            let items = core::iter::from_fn(|| {
                while pos < body.end {
                    let (ce, next) = match cands.indexed() {
                        true => walk.line_end(cands, msg, msg.len()),
                        false => cands.line_end(msg, pos, body.end),
                    };
                    let line = pos..ce.min(body.end);
                    pos = next;
                    if let Some(item) = fields::sdp_item(msg, line, &mut rejected, &cands.v4) {
                        return Some(item);
                    }
                }
                None
            });
            r.sdp_items(items, call)
        }
        _ => r.body_in(msg, body.start, body.end, kind, 0, call),
    }
}

/// With media bindings, the dialog their ports are bound in (`message::dialog`: the hash
/// of the first Call-ID) for a body that may name media of ours: the header lines walked
/// again from the end of the start line. Not in the header loop itself: a check per
/// header there, or the position kept for this, cost every message 15-70 instructions.
///
/// Only a line whose name may be `Call-ID` or `i` (it starts with `ca` or `i`, either
/// case) is framed, as the header loop framed it (with its continuation lines); the
/// others are passed by their line ends. The header loop framed every line before this
/// runs, so a line that starts otherwise is a header of another name, or a continuation
/// line (it starts with SP or HT), or the empty line that ends the headers. (Framing
/// every line was ~650 instructions for the carrier INVITE's 13 headers.) Out of line:
/// inlined into `media_body`, it made the media pipeline ~45 instructions longer.
#[inline(never)]
fn dialog(msg: &[u8], cands: &Cands) -> Option<u64> {
    let (_, mut pos) = framing::start_line(cands, msg).ok()?;
    let mut walk = framing::Walk::at(cands, pos);
    loop {
        let may_be = match msg.get(pos..pos + 2) {
            Some(&[a, b]) => match a | 0x20 {
                b'c' => b | 0x20 == b'a',
                b'i' => true,
                _ => false,
            },
            _ => true,
        };
        if may_be || !cands.indexed() {
            let (h, next) = framing::header(cands, msg, pos, &mut walk).ok()?;
            if h.kind == Kind::Other {
                if let Some(call) =
                    super::message::dialog(&msg[pos..h.name_end], &msg[h.value(msg)])
                {
                    return Some(call);
                }
            }
            pos = next;
        } else {
            let (ce, next) = walk.line_end(cands, msg, msg.len());
            if ce == pos {
                return None;
            }
            pos = next;
        }
    }
}

/// [`body::kind`], the usual `application/sdp` (no parameters) told first.
#[inline]
fn body_kind(msg: &[u8], ct: core::ops::Range<usize>) -> BodyKind {
    if msg[ct.clone()].eq_ignore_ascii_case(b"application/sdp") {
        BodyKind::Sdp
    } else {
        body::kind(msg, ct)
    }
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
    let mut rejected = false;
    cands.marked_lines(msg, start, end, |line| {
        // (The usual `m=` line, whose section is kept, without the call.)
        if fields::media_kept(msg, &line) {
            rejected = false;
        } else {
            fields::sdp_line(r, msg, line, &mut rejected, &cands.v4)
        }
    });
}
