//! The pure SIP-message rewrite: one UDP payload in a buffer with tailroom, plus the config
//! snapshot, the external addresses and the direction, in; edits applied in place, a
//! result out. Retransmissions get byte-identical output: nothing here depends on time,
//! state or randomness.

use core::net::IpAddr;

pub use super::changes::Changes;
pub use super::context::{Context, MediaPorts, Napt};
use super::{
    decide::{text_of, Map, MAP_CACHE},
    edits::{Edits, RewrittenField},
};
use crate::{
    nat::{addr::canonical, Direction, Rule},
    sip::{
        addr::Text,
        body::{self, BodyKind},
        message::{self, Kind, Malformed, NotSip, StartLine},
        sdp,
        uri::{self, HostPort},
    },
};

/// The result of a rewrite. Every variant maps to a counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Rewritten(Changes),
    /// SIP, but nothing to rewrite (or rewriting disabled).
    Unchanged,
    NotSip(NotSip),
    Malformed(Malformed),
    /// The rewritten message would not fit the buffer; the buffer is untouched.
    TooBig,
}

/// Outcome, the message length after the call, addresses left alone because no external
/// address of their family is configured (an `IN IP6` line with only an IPv4 external
/// address, say), and whether Content-Length promised more bytes than the datagram has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rewrite {
    pub outcome: Outcome,
    pub len: usize,
    pub family_mismatch: u16,
    /// Content-Length exceeded the datagram. Real UAs send this (an off-by-a-few length,
    /// LF files sized for CRLF); refusing them would leak their private addresses, so the
    /// body is taken to run to the end of the datagram and Content-Length keeps its
    /// difference from the real length (it moves with the body). Counted by the caller.
    pub content_length_short: bool,
    /// Bytes after the body that Content-Length declares, discarded (RFC 3261 section
    /// 18.3: they are not part of the message; a second message appended in the datagram
    /// would otherwise go out unrewritten). The outcome is then `Rewritten`, `len` the
    /// shorter length. Counted by the caller.
    pub trailing_discarded: usize,
    /// Outbound: an address inside a rule's internal network is still in the message — in
    /// a field the rewriter rewrites but could not (no external address of its family, the
    /// edit list full), or anywhere in a message it could not parse (`Malformed`). The
    /// caller applies the leak policy (drop by default).
    pub would_leak: bool,
    /// Inbound REGISTER 2xx/3xx: the `expires` of the UA's own binding (the one restored),
    /// seconds; the caller keeps the UA's NAPT binding that long.
    pub registered_s: Option<u32>,
}

std::thread_local! {
    /// The edit list of [`rewrite_message`] (and of the fast path's) on this thread
    /// (allocated on first use).
    pub(super) static EDITS: core::cell::RefCell<Edits> = core::cell::RefCell::new(Edits::new());
}

/// Rewrites the SIP message in `buf[..len]` in place; it may grow into `buf[len..]`.
/// On every outcome but `Rewritten` the buffer is untouched and `len` is returned.
/// Uses this thread's edit list (allocated by the thread's first call); a caller that owns
/// one (a worker's pipeline) calls [`rewrite_message_in`].
#[inline]
pub fn rewrite_message(buf: &mut [u8], len: usize, ctx: &Context<'_>) -> Rewrite {
    if !ctx.config.enabled {
        return unchanged(len);
    }
    EDITS.with(|e| match e.try_borrow_mut() {
        Ok(mut e) => rewrite_enabled(buf, len, ctx, &mut e),
        // (Only a rewrite nested in a rewrite on one thread could get here: none is.)
        Err(_) => rewrite_enabled(buf, len, ctx, &mut Edits::new()),
    })
}

/// [`rewrite_message`] with the caller's edit list (cleared first; allocates nothing).
#[inline]
pub fn rewrite_message_in(
    buf: &mut [u8],
    len: usize,
    ctx: &Context<'_>,
    edits: &mut Edits,
) -> Rewrite {
    if !ctx.config.enabled {
        return unchanged(len);
    }
    rewrite_enabled(buf, len, ctx, edits)
}

pub(super) fn unchanged(len: usize) -> Rewrite {
    Rewrite {
        outcome: Outcome::Unchanged,
        len,
        family_mismatch: 0,
        content_length_short: false,
        trailing_discarded: 0,
        would_leak: false,
        registered_s: None,
    }
}

#[inline(never)]
fn rewrite_enabled(buf: &mut [u8], len: usize, ctx: &Context<'_>, edits: &mut Edits) -> Rewrite {
    rewrite_with(
        buf,
        len,
        ctx,
        edits,
        |r, msg| r.scan(msg),
        |e, buf, msg_end, _| e.apply(buf, msg_end),
    )
}

/// The rewrite around a `scan` of the message (the reference's, or the fast path's) that
/// collects the edits: the outcome, and the edits applied by `apply(edits, buf, msg_end,
/// len)` (which returns the new length, `None` when it does not fit).
#[inline(always)]
pub(super) fn rewrite_with<'a>(
    buf: &mut [u8],
    len: usize,
    ctx: &Context<'a>,
    edits: &mut Edits,
    scan: impl FnOnce(&mut Rewriter<'_, 'a, '_>, &[u8]) -> Result<(), Outcome>,
    apply: impl FnOnce(&mut Edits, &mut [u8], usize, usize) -> Option<usize>,
) -> Rewrite {
    edits.clear();
    let len = len.min(buf.len());
    let mut r = Rewriter {
        ctx,
        edits,
        cache: arrayvec::ArrayVec::new(),
        texts: arrayvec::ArrayVec::new(),
        evict: 0,
        one_v4: None,
        family_mismatch: 0,
        full: false,
        cl_short: false,
        untyped_body_leaks: false,
        msg_end: len,
        registered: None,
    };
    let outbound = ctx.direction == Direction::Outbound;
    let scanned = scan(&mut r, &buf[..len]);
    let family_mismatch = r.family_mismatch;
    let cl_short = r.cl_short;
    // An address of ours that a field the rewriter handles still names (outbound every
    // family mismatch is one); a full list leaves all of them.
    let mut would_leak = outbound && (family_mismatch > 0 || r.full || r.untyped_body_leaks);
    let outcome = match scanned {
        Ok(()) if r.full => Outcome::Malformed(Malformed::TooManyAddresses),
        Ok(()) if r.edits.is_empty() && r.msg_end == len => Outcome::Unchanged,
        Ok(()) => match apply(r.edits, buf, r.msg_end, len) {
            Some(new_len) => {
                let changes = Changes::of(r.edits.iter().map(|e| e.field));
                return Rewrite {
                    outcome: Outcome::Rewritten(changes),
                    len: new_len,
                    family_mismatch,
                    content_length_short: cl_short,
                    trailing_discarded: len - r.msg_end,
                    would_leak,
                    registered_s: r.registered,
                };
            }
            None => Outcome::TooBig,
        },
        Err(o) => {
            if outbound && matches!(o, Outcome::Malformed(_)) {
                // Not parsed: any address of ours anywhere in it.
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

/// The start of a scan: `NotSip`, the start line, where the headers start, and whether
/// the Contacts are a registrar's bindings. REGISTER 2xx/3xx responses list them (dozens
/// of Contacts): never rewritten, and so never taking an edit, but for the UA's own
/// binding inbound (see `Rewriter::bindings`). CSeq may follow the Contacts, so it is
/// looked up first.
pub(super) fn scan_start(msg: &[u8]) -> Result<(StartLine, usize, bool), Outcome> {
    scan_start_with(msg, message::start_line)
}

/// [`scan_start`] with the caller's reading of the start line (as
/// [`message::start_line`]'s), called once the datagram is known to be no `NotSip`
/// keep-alive, STUN or empty one.
#[allow(clippy::type_complexity)]
#[inline(always)]
pub(super) fn scan_start_with(
    msg: &[u8],
    start_line: impl FnOnce(&[u8]) -> Result<(StartLine, usize), Result<NotSip, Malformed>>,
) -> Result<(StartLine, usize, bool), Outcome> {
    if let Some(ns) = message::not_sip(msg) {
        return Err(Outcome::NotSip(ns));
    }
    let (start, pos) = start_line(msg).map_err(|e| match e {
        Ok(ns) => Outcome::NotSip(ns),
        Err(m) => Outcome::Malformed(m),
    })?;
    let bindings = match start {
        StartLine::Response { code } if (200..400).contains(&code) => {
            message::cseq_is_register(msg, pos)
        }
        _ => false,
    };
    Ok((start, pos, bindings))
}

/// The dialog of media bindings when a header named `name` with value `value` is a
/// Call-ID: the value's hash ([`crate::nat::media::call_hash`]). The one definition: the
/// rewrite names the dialog of an SDP's bindings with it, the pipeline that of a BYE
/// (`datapath::bindings::dialog_of`), and the two must agree.
#[inline]
pub fn dialog(name: &[u8], value: &[u8]) -> Option<u64> {
    message::is_call_id(name).then(|| crate::nat::media::call_hash(value))
}

/// The dialog of a message whose headers all parse: that of its first Call-ID
/// ([`dialog`]). A pass of its own, made only for a body with media bindings: in the
/// header loop, the check cost every message.
fn headers_dialog(msg: &[u8]) -> Option<u64> {
    let (_, mut pos) = message::start_line(msg).ok()?;
    while let Ok(Some((h, next))) = message::header(msg, pos) {
        if h.kind == Kind::Other {
            if let Some(call) = dialog(&msg[h.name], &msg[h.value]) {
                return Some(call);
            }
        }
        pos = next;
    }
    None
}

/// What the header section says about the body, noted header by header.
#[derive(Default)]
pub(super) struct BodyHeaders {
    /// The value, and every header that states it (equal duplicates are harmless, but each
    /// must follow the body, or the output would contradict itself).
    content_length: Option<usize>,
    cl_digits: arrayvec::ArrayVec<core::ops::Range<usize>, 4>,
    pub(super) content_type: Option<core::ops::Range<usize>>,
    pub(super) encoded: bool,
}

impl BodyHeaders {
    /// Notes a Content-Length, Content-Type or Content-Encoding header (value `v`); other
    /// kinds are not its concern. A bad or conflicting Content-Length: the message is
    /// malformed.
    pub(super) fn note(
        &mut self,
        msg: &[u8],
        kind: Kind,
        v: core::ops::Range<usize>,
    ) -> Result<(), Outcome> {
        match kind {
            Kind::ContentLength => {
                let n = message::content_length(&msg[v.clone()])
                    .ok_or(Outcome::Malformed(Malformed::BadContentLength))?;
                if self.content_length.is_some_and(|prev| prev != n)
                    || self.cl_digits.try_push(v).is_err()
                {
                    return Err(Outcome::Malformed(Malformed::DuplicateContentLength));
                }
                self.content_length = Some(n);
            }
            Kind::ContentType => self.content_type = Some(v),
            Kind::ContentEncoding => self.encoded = !msg[v].eq_ignore_ascii_case(b"identity"),
            _ => {}
        }
        Ok(())
    }
}

pub(super) struct Rewriter<'c, 'a, 'e> {
    pub(super) ctx: &'c Context<'a>,
    pub(super) edits: &'e mut Edits,
    pub(super) cache: arrayvec::ArrayVec<(IpAddr, Map<'a>), MAP_CACHE>,
    /// The rendered new address of each cache slot (`Map::To::text`; one per slot,
    /// pushed with it: nothing to zero per message).
    pub(super) texts: arrayvec::ArrayVec<Text, MAP_CACHE>,
    /// The slot a miss replaces once the cache is full (the oldest entry).
    pub(super) evict: u8,
    /// The compiled outbound decision of a single IPv4 rule and its external address's
    /// text, when the caller has them (the fast path's gate); `None`: every address is
    /// decided from the config and its new address rendered.
    pub(super) one_v4: Option<(crate::nat::rules::OneRuleV4, Text)>,
    pub(super) family_mismatch: u16,
    pub(super) full: bool,
    pub(super) cl_short: bool,
    /// Outbound: a body without Content-Type names an address of ours.
    pub(super) untyped_body_leaks: bool,
    /// Where the message ends: the end of the body Content-Length declares, else the end
    /// of the datagram. Bytes after it are discarded.
    pub(super) msg_end: usize,
    /// The `expires` of the UA's own binding in a REGISTER 2xx/3xx (inbound).
    pub(super) registered: Option<u32>,
}

impl<'c, 'a, 'e> Rewriter<'c, 'a, 'e> {
    pub(super) fn push(&mut self, start: usize, end: usize, text: Text, field: RewrittenField) {
        self.full |= self.edits.push(start, end, text, field).is_err();
    }

    /// Rewrites a host[:port] found in the message. `default_port`: the port a missing
    /// one stands for, so that a port map applies; `None` for a host-only field (`maddr`,
    /// `received`, SDP), which never gets a port. `brackets`: IPv6 is written in brackets
    /// (URIs, Via sent-by); otherwise as the original was written. Returns the rule when
    /// the address was rewritten under one (its port map then applies to the ports that
    /// go with the address).
    pub(super) fn host(
        &mut self,
        hp: &HostPort,
        default_port: Option<u16>,
        brackets: bool,
        field: RewrittenField,
    ) -> Option<&'a Rule> {
        match self.map(hp.addr) {
            Map::Keep => None,
            Map::FamilyMismatch => {
                self.family_mismatch += 1;
                None
            }
            Map::To { addr, text, rule } => {
                let port = default_port.and_then(|d| {
                    let written = hp.port.as_ref().map(|p| p.0);
                    match self.ctx.napt {
                        Some(n) => n
                            .map(self.ctx.direction, hp.addr, addr, written.unwrap_or(d))
                            .or_else(|| self.map_port(rule, written, d)),
                        None => self.map_port(rule, written, d),
                    }
                });
                let text = text_of(&self.one_v4, &self.texts, text);
                let bracket = addr.is_ipv6() && (brackets || hp.bracketed);
                if !bracket && port.is_none() {
                    // The usual case: the rendered address as it is, copied once.
                    if self
                        .edits
                        .push_ref(hp.host.start, hp.host.end, text, field)
                        .is_err()
                    {
                        self.full = true;
                    }
                    return rule;
                }
                let (t, end) = {
                    let mut t = Text::default();
                    if bracket {
                        t.push_byte(b'[');
                    }
                    t.push(text.as_bytes());
                    if bracket {
                        t.push_byte(b']');
                    }
                    match port {
                        Some(p) => {
                            t.push_byte(b':');
                            t.push_u32(u32::from(p));
                            (t, hp.end())
                        }
                        None => (t, hp.host.end),
                    }
                };
                self.push(hp.host.start, end, t, field);
                rule
            }
        }
    }

    /// A SIP URI inside `[start, end)`: its host (and port) and its `maddr` parameter
    /// (host only), each rewritten when it is one of ours (a host name may carry an IP
    /// `maddr`).
    pub(super) fn uri(&mut self, msg: &[u8], start: usize, end: usize, field: RewrittenField) {
        let Some(u) = uri::sip_uri(msg, start, end) else {
            return;
        };
        if let Some(hp) = &u.host {
            self.host(hp, Some(if u.secure { 5061 } else { 5060 }), true, field);
        }
        self.maddr(msg, u.params, field);
    }

    /// `maddr` (a host, never a port) in the `;params` region `p`.
    pub(super) fn maddr(&mut self, msg: &[u8], p: core::ops::Range<usize>, field: RewrittenField) {
        // Most params (`;lr`, `;transport=udp`, `;branch=...;rport`) have no `m` at all:
        // one search rules the parameter walk out.
        if memchr::memchr2(b'm', b'M', &msg[p.clone()]).is_none() {
            return;
        }
        for (name, value) in uri::params(msg, p.start, p.end) {
            if msg[name].eq_ignore_ascii_case(b"maddr") {
                if let Some(hp) = uri::param_host(msg, value) {
                    self.host(&hp, None, false, field);
                }
            }
        }
    }

    /// Every comma-separated name-addr / addr-spec value of a header.
    pub(super) fn uri_list(
        &mut self,
        msg: &[u8],
        v: core::ops::Range<usize>,
        field: RewrittenField,
        all: bool,
    ) {
        let mut pos = v.start;
        while let Some((val, next)) = uri::next_value(msg, pos, v.end) {
            let u = uri::value_uri(msg, val);
            self.uri(msg, u.start, u.end, field);
            if !all || next >= v.end {
                break;
            }
            pos = next;
        }
    }

    /// The Contacts of a REGISTER 2xx/3xx (the registrar's bindings of the address of
    /// record). Inbound, a binding naming the external address this packet was sent to
    /// and the UA's port (the packet's destination port, through the rule's port map) is
    /// the UA's own, as it registered it: restored, so that the UA finds its Contact in
    /// the answer (RFC 3261 section 10.2.4). Every other binding is left as it is (and
    /// takes no edit).
    pub(super) fn bindings(&mut self, msg: &[u8], v: core::ops::Range<usize>) {
        let Some(local_port) = self.ctx.local_port else {
            return;
        };
        if self.ctx.direction != Direction::Inbound {
            return;
        }
        let mut pos = v.start;
        while let Some((val, next)) = uri::next_value(msg, pos, v.end) {
            let u = uri::value_uri(msg, val.clone());
            if let Some((hp, secure)) = uri::sip_uri_host(msg, u.start, u.end) {
                if self.is_own_binding(&hp, secure, local_port) {
                    for (name, value) in uri::params(msg, u.end, val.end) {
                        if msg[name].eq_ignore_ascii_case(b"expires") {
                            self.registered = core::str::from_utf8(&msg[value])
                                .ok()
                                .and_then(|d| d.trim().parse().ok());
                        }
                    }
                    self.host(
                        &hp,
                        Some(if secure { 5061 } else { 5060 }),
                        true,
                        RewrittenField::Contact,
                    );
                }
            }
            if next >= v.end {
                break;
            }
            pos = next;
        }
    }

    /// Whether a binding's host and port are this flow's external address and port.
    fn is_own_binding(&mut self, hp: &HostPort, secure: bool, local_port: u16) -> bool {
        let Map::To {
            addr: internal,
            rule: Some(rule),
            ..
        } = self.map(hp.addr)
        else {
            return false;
        };
        let cfg = self.ctx.config;
        if cfg.external_of(rule, internal, &self.ctx.external) != Some(canonical(hp.addr)) {
            return false;
        }
        let port = hp
            .port
            .as_ref()
            .map_or(if secure { 5061 } else { 5060 }, |p| p.0);
        port == rule.ports.outbound(local_port).unwrap_or(local_port)
    }

    /// The top Via value: sent-by and `maddr`; inbound also `received`.
    pub(super) fn top_via(&mut self, msg: &[u8], v: core::ops::Range<usize>) {
        let Some((val, _)) = uri::next_value(msg, v.start, v.end) else {
            return;
        };
        let Some(via) = uri::via(msg, val) else {
            return;
        };
        let default_port = if via.tls { 5061 } else { 5060 };
        if let Some(sb) = &via.sent_by {
            self.host(sb, Some(default_port), true, RewrittenField::Via);
        }
        if self.ctx.direction == Direction::Outbound {
            // Outbound only `maddr` matters.
            self.maddr(msg, via.params, RewrittenField::Via);
            return;
        }
        let mut restored = via
            .sent_by
            .as_ref()
            .is_some_and(|sb| matches!(self.map(sb.addr), Map::To { .. }));
        let mut rport = None;
        for (name, value) in uri::params(msg, via.params.start, via.params.end) {
            let n = &msg[name];
            if n.eq_ignore_ascii_case(b"received") || n.eq_ignore_ascii_case(b"maddr") {
                // A host only (IPv6 with or without brackets), never a port.
                if let Some(hp) = uri::param_host(msg, value) {
                    self.host(&hp, None, false, RewrittenField::Via);
                    restored |= matches!(self.map(hp.addr), Map::To { .. });
                }
            } else if n.eq_ignore_ascii_case(b"rport") {
                rport = Some(value);
            }
        }
        // RFC 3581: `rport` is the source port the server saw, our external port. Where
        // the address next to it is restored, so is the port (the UA sees its own).
        if let (Some(n), Some(value), true) = (self.ctx.napt, rport, restored) {
            let digits = &msg[value.clone()];
            if !digits.is_empty()
                && digits.len() <= 5
                && digits.iter().all(u8::is_ascii_digit)
                && core::str::from_utf8(digits)
                    .ok()
                    .and_then(|d| d.parse::<u16>().ok())
                    == Some(n.external_port)
            {
                let mut t = Text::default();
                t.push_u32(u32::from(n.internal_port));
                self.push(value.start, value.end, t, RewrittenField::Via);
            }
        }
    }

    fn scan(&mut self, msg: &[u8]) -> Result<(), Outcome> {
        let (start, mut pos, bindings) = scan_start(msg)?;
        let cfg = self.ctx.config;
        if let StartLine::Request { uri, .. } = &start {
            self.uri(msg, uri.start, uri.end, RewrittenField::RequestUri);
        }
        let mut seen_via = false;
        let mut framing = BodyHeaders::default();
        let body_start = loop {
            let (h, next) = match message::header(msg, pos) {
                Ok(Some(x)) => x,
                Ok(None) => unreachable!("header() reports the end as Err(Ok)"),
                Err(Ok(body)) => break body,
                Err(Err(m)) => return Err(Outcome::Malformed(m)),
            };
            pos = next;
            let v = h.value;
            match h.kind {
                Kind::Via if !seen_via => {
                    seen_via = true;
                    self.top_via(msg, v);
                }
                Kind::Contact if !bindings => self.uri_list(msg, v, RewrittenField::Contact, true),
                Kind::Contact => self.bindings(msg, v),
                Kind::From | Kind::To if cfg.from_to => {
                    self.uri_list(msg, v, RewrittenField::FromTo, false)
                }
                Kind::Route if cfg.record_route => {
                    self.uri_list(msg, v, RewrittenField::Route, true)
                }
                Kind::RecordRoute if cfg.record_route => {
                    self.uri_list(msg, v, RewrittenField::RecordRoute, true)
                }
                kind => framing.note(msg, kind, v)?,
            }
        };
        let body_end = self.body_end(msg.len(), body_start, &framing);
        match (framing.content_type.clone(), framing.encoded) {
            (Some(ct), false) => {
                let kind = body::kind(msg, ct);
                // With media bindings, the dialog their ports are bound in.
                let call = self.ctx.media.and_then(|_| headers_dialog(msg));
                self.body_in(msg, body_start, body_end, kind, 0, call);
            }
            (None, _) => self.untyped_body(msg, body_start, body_end),
            _ => {}
        }
        self.follow_content_length(&framing, body_start, body_end);
        Ok(())
    }

    /// Where the body ends: where Content-Length says, and then the message ends there too
    /// (what follows is discarded); without Content-Length, or when it claims more than
    /// the datagram holds (`cl_short`), the end of the datagram.
    pub(super) fn body_end(&mut self, msg_len: usize, body_start: usize, f: &BodyHeaders) -> usize {
        match f.content_length {
            Some(n) => {
                let e = body_start.saturating_add(n);
                if e > msg_len {
                    self.cl_short = true;
                    msg_len
                } else {
                    self.msg_end = e;
                    e
                }
            }
            None => msg_len,
        }
    }

    /// A body without Content-Type (RFC 3261 §20.15 requires one) is not parsed: outbound,
    /// an address of ours anywhere in it would leave as it is (`untyped_body_leaks`).
    pub(super) fn untyped_body(&mut self, msg: &[u8], start: usize, end: usize) {
        if self.ctx.direction == Direction::Outbound && end > start {
            let cfg = self.ctx.config;
            self.untyped_body_leaks =
                crate::sip::scan::any_address(msg, start, end, |a| cfg.rule_for(a).is_some());
        }
    }

    /// Content-Length follows the body when the body changed size, in every header that
    /// states it; absent stays absent.
    pub(super) fn follow_content_length(&mut self, f: &BodyHeaders, start: usize, end: usize) {
        let Some(n) = f.content_length else {
            return;
        };
        let delta = self.edits.delta_within(start, end);
        // (A delta that would take a too-large Content-Length below zero cannot occur: it
        // is at least the real body length.)
        if delta != 0 {
            let mut t = Text::default();
            t.push_u32(n.wrapping_add_signed(delta) as u32);
            for digits in &f.cl_digits {
                let (s, e) = (digits.start, digits.end);
                if self
                    .edits
                    .push_in_order((s, e), t, RewrittenField::ContentLength)
                    .is_err()
                {
                    self.full = true;
                }
            }
        }
    }

    /// A slot for the Content-Length edit that [`Self::follow_content_length_in`] settles,
    /// reserved before the body's edits are pushed (see [`Edits::reserve`]): for the one
    /// Content-Length header of a message (with several, `None`: the follow-up inserts).
    /// (The slot never fills the list where the follow-up would not: no message has
    /// [`super::edits::MAX_EDITS`] - 1 edits.)
    #[inline]
    pub(super) fn reserve_content_length(&mut self, f: &BodyHeaders) -> Option<usize> {
        match (f.content_length, f.cl_digits.as_slice()) {
            (Some(_), [d]) => self
                .edits
                .reserve((d.start, d.end), RewrittenField::ContentLength),
            _ => None,
        }
    }

    /// [`Self::follow_content_length`] into the slot `slot` reserved by
    /// [`Self::reserve_content_length`] (taken out when the length stays), or by an
    /// insertion without one.
    #[inline]
    pub(super) fn follow_content_length_in(
        &mut self,
        f: &BodyHeaders,
        start: usize,
        end: usize,
        slot: Option<usize>,
    ) {
        let (Some(i), Some(n)) = (slot, f.content_length) else {
            return self.follow_content_length(f, start, end);
        };
        let delta = self.edits.delta_within(start, end);
        if delta != 0 {
            // (The digits written straight into the reserved edit's empty text.)
            if let Some(t) = self.edits.text_mut(i) {
                t.push_u32(n.wrapping_add_signed(delta) as u32);
            }
        } else {
            self.edits.remove(i);
        }
    }

    /// SDP, or each part of a multipart body (nested up to 4 levels), without media
    /// bindings: [`Rewriter::body_in`] without a dialog.
    #[inline]
    pub(super) fn body(&mut self, msg: &[u8], start: usize, end: usize, kind: BodyKind) {
        self.body_in(msg, start, end, kind, 0, None)
    }

    /// [`Rewriter::body`] at nesting `depth`; `call`: the message's dialog (see
    /// [`dialog`]), wanted with media bindings.
    pub(super) fn body_in(
        &mut self,
        msg: &[u8],
        start: usize,
        end: usize,
        kind: BodyKind,
        depth: u8,
        call: Option<u64>,
    ) {
        match kind {
            BodyKind::Sdp => self.sdp(msg, start, end, call),
            BodyKind::Multipart { boundary } if depth < 4 => {
                for part in body::parts(msg, start, end, boundary) {
                    self.body_in(
                        msg,
                        part.content.start,
                        part.content.end,
                        part.kind,
                        depth + 1,
                        call,
                    );
                }
            }
            _ => {}
        }
    }

    pub(super) fn sdp(&mut self, msg: &[u8], start: usize, end: usize, call: Option<u64>) {
        self.sdp_items(sdp::items(msg, start, end), call)
    }

    /// [`Rewriter::sdp`] of the body whose items (`sdp::items`: every line's
    /// `sdp::line_item`, in order) are `items`.
    pub(super) fn sdp_items(&mut self, items: impl Iterator<Item = sdp::Item>, call: Option<u64>) {
        // Port maps in SDP follow the address each port goes with: an m= port the
        // connection address of its media section (the media-level c=, else the
        // session-level one), an a=rtcp port its own address, else that same connection
        // address. Only a rewritten address brings its rule's port map; another party's
        // stream (a public c=, a host name) keeps its ports. The m= line comes before its
        // section's c=, so a section's ports are settled at its end.
        let mut session = Conn::default();
        // The session part first, then each media section.
        let mut sec = Section::default();
        let mut in_media = false;
        for item in items {
            if item.field == sdp::SdpLine::Media {
                let eff = self.end_section(&sec, session, call);
                if !in_media {
                    session = eff;
                    in_media = true;
                }
                sec = Section {
                    media_port: item.port.filter(|_| !item.rejected),
                    ..Section::default()
                };
                continue;
            }
            if item.rejected {
                continue;
            }
            let field = match item.field {
                sdp::SdpLine::Connection => RewrittenField::SdpConnection,
                sdp::SdpLine::Origin => RewrittenField::SdpOrigin,
                _ => RewrittenField::SdpRtcp,
            };
            // An `IN IP6` line needs IPv6 text and an `IN IP4` line IPv4 text:
            // express_like keeps the family of what was there.
            let rule = match &item.addr {
                Some(a) => {
                    let hp = HostPort {
                        host: a.range.clone(),
                        addr: a.addr,
                        bracketed: false,
                        port: None,
                    };
                    let rule = self.host(&hp, None, false, field);
                    Conn {
                        rule,
                        from: rule
                            .filter(|_| self.ctx.direction == Direction::Outbound)
                            .map(|_| a.addr),
                    }
                }
                None => Conn::default(),
            };
            match item.field {
                sdp::SdpLine::Connection => {
                    // The first c= of a level is its connection address.
                    sec.conn.get_or_insert(rule);
                }
                sdp::SdpLine::Rtcp => {
                    let Some((port, range)) = item.port else {
                        continue;
                    };
                    if item.addr.is_some() || item.other_addr {
                        self.sdp_port(rule, port, range, RewrittenField::SdpRtcp, call);
                    } else if let Some(conn) = sec.conn {
                        self.sdp_port(conn, port, range, RewrittenField::SdpRtcp, call);
                    } else if let Err(e) = sec.rtcp.try_push((port, range)) {
                        // (More a=rtcp lines before the section's c= than any real SDP
                        // has: the session's address decides.)
                        let (port, range) = e.element();
                        self.sdp_port(session, port, range, RewrittenField::SdpRtcp, call);
                    }
                }
                sdp::SdpLine::Origin | sdp::SdpLine::Media => {}
            }
        }
        self.end_section(&sec, session, call);
    }

    /// Settles the ports of a finished SDP section with its connection address (its own
    /// c=, else the session's `session`); returns that address's rule.
    pub(super) fn end_section(
        &mut self,
        sec: &Section<'a>,
        session: Conn<'a>,
        call: Option<u64>,
    ) -> Conn<'a> {
        let rule = sec.conn.unwrap_or(session);
        if let Some((port, range)) = &sec.media_port {
            self.sdp_port(
                rule,
                *port,
                range.clone(),
                RewrittenField::SdpMediaPort,
                call,
            );
        }
        for (port, range) in &sec.rtcp {
            self.sdp_port(rule, *port, range.clone(), RewrittenField::SdpRtcp, call);
        }
        rule
    }

    /// An SDP port (m= or a=rtcp), mapped when its address was rewritten under a rule:
    /// outbound with media bindings (`Context::media`, told the new address: [`Self::map`]
    /// again) to the external port of the address's RTP/RTCP pair in dialog `call`, else
    /// (also without a dialog) by the rule's port map.
    pub(super) fn sdp_port(
        &mut self,
        conn: Conn<'_>,
        port: u16,
        range: core::ops::Range<usize>,
        field: RewrittenField,
        call: Option<u64>,
    ) {
        let np = match (self.ctx.media, call, conn.from) {
            (Some(media), Some(call), Some(addr)) if port != 0 => {
                let rtcp = matches!(field, RewrittenField::SdpRtcp);
                let rtp = if rtcp { port.wrapping_sub(1) } else { port };
                match self.map(addr) {
                    Map::To { addr: to, .. } => media
                        .media_port(call, core::net::SocketAddr::new(addr, rtp), canonical(to))
                        .map(|e| if rtcp { e.wrapping_add(1) } else { e })
                        .filter(|&e| e != port),
                    _ => None,
                }
            }
            _ => self.map_port(conn.rule, Some(port), 0),
        };
        if let Some(np) = np {
            let mut t = Text::default();
            t.push_u32(u32::from(np));
            // (In order: an m= port, settled after its section's edits, made `apply` sort.)
            let at = (range.start, range.end);
            self.full |= self.edits.push_in_order(at, t, field).is_err();
        }
    }
}

/// A connection address of an SDP part as the port rewrite needs it.
#[derive(Clone, Copy, Default)]
pub(super) struct Conn<'a> {
    /// The rule it was rewritten under.
    rule: Option<&'a Rule>,
    /// Outbound: the internal address it was rewritten from (its media ports are ours).
    from: Option<IpAddr>,
}

/// One part of an SDP body (the session part, or a media section) while it is scanned.
#[derive(Default)]
pub(super) struct Section<'a> {
    /// The first c= of the part: `Some(conn)`, its rule being `Some` when its address was
    /// rewritten under one; `None` while the part has no c=.
    conn: Option<Conn<'a>>,
    /// The m= port (media sections that are not rejected).
    media_port: Option<(u16, core::ops::Range<usize>)>,
    /// a=rtcp ports without an address of their own, seen before the part's c=.
    rtcp: arrayvec::ArrayVec<(u16, core::ops::Range<usize>), 2>,
}
