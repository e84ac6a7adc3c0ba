//! Candidate-driven parsing of the fields that hold addresses: each field's plainest form
//! (`<sip:user@host:port;params>` values, a `SIP/2.0/UDP host:port` top Via, `c=IN IP4
//! addr` / `o=... IN IP4 addr` SDP lines) is read with a few byte compares, and only the
//! parts of it that hold a candidate are parsed; whenever the plain form is not certain,
//! the field goes through the reference's exact parser instead ([`Rewriter::uri_list`],
//! [`Rewriter::top_via`], [`Rewriter::uri`], [`sdp::line_item`]). Each shortcut below says
//! why it finds what the reference finds.

use core::{
    cell::Cell,
    net::{IpAddr, Ipv4Addr},
    ops::Range,
};

use super::{
    index::Cands,
    search::{find, hits},
};
use crate::{
    nat::Direction,
    rewrite::{
        decide::{text_of, Map},
        edits::RewrittenField,
        message::Rewriter,
    },
    sip::{
        scan::{is_host_char, port_at, skip_lws, skip_ws},
        sdp,
        uri::{host_port_at, HostPort},
    },
};

/// The name-addr values of a Contact / From / To / Route / Record-Route header `v` (all of
/// them, or only the first): [`Rewriter::uri_list`], read from the candidates. A header
/// whose values are not all in the plain form goes to `uri_list` whole (what the plain
/// reading pushed is taken back first).
pub(super) fn name_addrs(
    r: &mut Rewriter<'_, '_, '_>,
    msg: &[u8],
    v: Range<usize>,
    field: RewrittenField,
    all: bool,
    cands: &Cands,
) {
    let saved = (r.edits.len(), r.family_mismatch, r.full);
    if plain_values(r, msg, v.clone(), (field, all), cands).is_none() {
        r.edits.truncate(saved.0);
        (r.family_mismatch, r.full) = (saved.1, saved.2);
        r.uri_list(msg, v, field, all);
    }
}

/// The values of `v` when each is `<uri>` or `"quoted name" <uri>` (no `\` in the name, no
/// `"` in the URI), separated by commas; `None` (not certain) otherwise. Why this is
/// `uri_list`'s reading: its value splitter (`next_value`) stops, outside quotes and
/// brackets, only at `"`, `<` and `,`, and inside `<...>` only at `>` and `"`; its URI
/// locator (`value_uri`) takes the first unquoted `<` up to the next `>`. With no `\` in
/// the quoted name and no `"` in the brackets both see the same `<` and `>` as the bytes
/// checked here, and the value ends at the first `,` after the `>` when no `"` or `<`
/// comes before it.
fn plain_values(
    r: &mut Rewriter<'_, '_, '_>,
    msg: &[u8],
    v: Range<usize>,
    (field, all): (RewrittenField, bool),
    cands: &Cands,
) -> Option<()> {
    let first_of = |from: usize, a: u8, b: u8| find(msg, from, v.end, [a, b]);
    let mut pos = v.start;
    while pos < v.end {
        let lt = match msg[pos] {
            b'<' => pos,
            b'"' => {
                let q = first_of(pos + 1, b'"', b'\\')?;
                let p = skip_ws(msg, q + 1, v.end);
                (msg[q] == b'"' && p < v.end && msg[p] == b'<').then_some(p)?
            }
            _ => return None,
        };
        let gt = first_of(lt + 1, b'>', b'"')?;
        if msg[gt] != b'>' {
            return None;
        }
        if cands.any(lt + 1, gt) {
            angle_uri(r, msg, lt + 1, gt, field, cands);
        }
        if !all {
            break;
        }
        match find(msg, gt + 1, v.end, [b',', b'"', b'<']) {
            None => break,
            Some(i) if msg[i] == b',' => pos = skip_lws(msg, i + 1, v.end),
            Some(_) => return None,
        }
    }
    Some(())
}

/// The URI between `<` and `>` (`[s, e)`, no `"` in it): [`Rewriter::uri`] for the plain
/// `sip:` / `sips:` form with an IP host, the reference for anything else. The host
/// starts after the first `@` (the reference's URI region ends at the first `"` or `>`,
/// which is `e` here); `maddr` is looked for only when a candidate lies after the host.
fn angle_uri(
    r: &mut Rewriter<'_, '_, '_>,
    msg: &[u8],
    s: usize,
    e: usize,
    field: RewrittenField,
    cands: &Cands,
) {
    let b = &msg[s..e];
    let (secure, after) = if b.len() >= 4 && b[..4].eq_ignore_ascii_case(b"sip:") {
        (false, s + 4)
    } else if b.len() >= 5 && b[..5].eq_ignore_ascii_case(b"sips:") {
        (true, s + 5)
    } else {
        return r.uri(msg, s, e, field);
    };
    let host_start = find(msg, after, e, [b'@']).map_or(after, |i| i + 1);
    let Some(hp) = host_port(msg, skip_lws(msg, host_start, e), e, cands.ports, &cands.v4) else {
        // A host name (a numeric maddr may follow it) or something odd.
        return r.uri(msg, s, e, field);
    };
    uri_host(r, &hp, secure, field, cands);
    if cands.any(hp.end(), e) {
        // (The parameters start after the port: read it when it was not.)
        let host_end = match cands.ports {
            true => hp.end(),
            false => {
                host_port(msg, hp.host.start, e, true, &cands.v4).map_or(hp.host.end, |h| h.end())
            }
        };
        let params_end = msg[host_end..e]
            .iter()
            .position(|&c| c == b'?')
            .map_or(e, |i| host_end + i);
        r.maddr(msg, host_end..params_end, field);
    }
}

/// The usual transports followed by a space, lowercase (see [`top_via`]).
const UDP: u32 = u32::from_le_bytes(*b"udp ");
const TCP: u32 = u32::from_le_bytes(*b"tcp ");
const TLS: u32 = u32::from_le_bytes(*b"tls ");

/// The top Via `v` (it has a candidate): outbound, a value starting `SIP/2.0/` exactly
/// with an IP sent-by and no candidate after it is only its sent-by; everything else goes
/// to [`Rewriter::top_via`]. Why this is `top_via`'s reading: its `via` finds the two `/`
/// of `SIP/2.0/`, skips LWS, the transport's letters and digits and LWS, then reads
/// host[:port]; none of those bytes can be the `,` `"` or `<` that end the first value
/// early, so bounding the read by the header's end instead of the first value's end
/// reads the same sent-by. Outbound only `maddr` follows it, which needs a candidate.
/// (Inbound, `received` and the ports that go with it are the reference's.)
pub(super) fn top_via(r: &mut Rewriter<'_, '_, '_>, msg: &[u8], v: Range<usize>, cands: &Cands) {
    let plain = r.ctx.direction == Direction::Outbound
        && v.start + 8 <= v.end
        && msg.get(v.start..v.start + 8) == Some(&b"SIP/2.0/"[..]);
    if !plain {
        return r.top_via(msg, v);
    }
    let mut p = skip_lws(msg, v.start + 8, v.end);
    let t = p;
    // The usual transport, three letters then a space, told by one 4-byte compare (OR-ing
    // 0x20 into a byte gives a lowercase letter only for that letter in either case; the
    // space is compared as is); anything else by the loop.
    let word = msg
        .get(p..p + 4)
        .and_then(|b| b.first_chunk::<4>())
        .map(|b| u32::from_le_bytes(*b) | 0x0020_2020);
    let tls = match word {
        Some(w) if p + 4 <= v.end && (w == UDP || w == TCP || w == TLS) => {
            p += 3;
            w == TLS
        }
        _ => {
            while p < v.end && msg[p].is_ascii_alphanumeric() {
                p += 1;
            }
            msg[t..p].eq_ignore_ascii_case(b"TLS")
        }
    };
    let hp = host_port(msg, skip_lws(msg, p, v.end), v.end, cands.ports, &cands.v4);
    match hp {
        Some(hp) if !cands.any(hp.end(), v.end) => {
            uri_host(r, &hp, tls, RewrittenField::Via, cands);
        }
        _ => r.top_via(msg, v),
    }
}

/// One SDP line with a candidate or an `m=` (no port maps): the address of a `c=`, `o=`
/// or `a=rtcp` line is rewritten, in sections that are not rejected (an `o=` always);
/// an `m=` line decides whether its section is rejected. (Out of line: the walk's
/// closure stays small and inline, and the usual `m=` line, told there by
/// [`media_kept`], pays no call.)
#[inline(never)]
pub(super) fn sdp_line(
    r: &mut Rewriter<'_, '_, '_>,
    msg: &[u8],
    line: Range<usize>,
    rejected: &mut bool,
    memo: &Memo,
) {
    let (field, host, addr) = match plain_sdp(msg, line.clone(), rejected, memo) {
        Some(Some(x)) => x,
        Some(None) => return,
        None => {
            let Some(item) = sdp::line_item(msg, line, rejected) else {
                return;
            };
            if item.rejected || item.field == sdp::SdpLine::Media {
                return;
            }
            let field = match item.field {
                sdp::SdpLine::Connection => RewrittenField::SdpConnection,
                sdp::SdpLine::Origin => RewrittenField::SdpOrigin,
                _ => RewrittenField::SdpRtcp,
            };
            match item.addr {
                Some(a) => (field, a.range, a.addr),
                None => return,
            }
        }
    };
    // (`Rewriter::host` without a default port, brackets or a written port.)
    plain_host(r, host, addr, field);
}

/// [`Rewriter::host`] of a URI or Via host (port 5061 for `sips:` / TLS, else 5060);
/// [`plain_host`] for an IPv4 host when no port can change.
#[inline(always)]
fn uri_host(
    r: &mut Rewriter<'_, '_, '_>,
    hp: &HostPort,
    secure: bool,
    field: RewrittenField,
    cands: &Cands,
) {
    if !cands.ports && hp.addr.is_ipv4() {
        plain_host(r, hp.host.clone(), hp.addr, field);
    } else {
        r.host(hp, Some(if secure { 5061 } else { 5060 }), true, field);
    }
}

/// [`Rewriter::host`] where its edit can only be the host's text replaced by the new
/// address's: a host-only field (no default port, written as the original: SDP), or
/// an IPv4 host when no port can change (no NAPT, no port maps). Why that is `host`'s
/// edit: without a default port it maps no port; with one, only NAPT or a rule's port
/// map can change it. And it brackets only an IPv6 new address, which an IPv4 address
/// never becomes (the families must match, else it is a family mismatch).
#[inline(always)]
fn plain_host(
    r: &mut Rewriter<'_, '_, '_>,
    host: Range<usize>,
    addr: IpAddr,
    field: RewrittenField,
) {
    match r.map(addr) {
        Map::Keep => {}
        Map::FamilyMismatch => r.family_mismatch += 1,
        Map::To { text, .. } => {
            let text = text_of(&r.one_v4, &r.texts, text);
            if r.edits.push_ref(host.start, host.end, text, field).is_err() {
                r.full = true;
            }
        }
    }
}

/// Whether `p` is a port as [`port_at`] reads one over all of `p`: 1-5 digits, at most
/// 65535 (five digits compared as text: same length, so the same order as their values).
/// Inline, over the few bytes (`port_at`'s call was ~70 instructions for an `a=rtcp`
/// port).
#[inline(always)]
fn whole_port(p: &[u8]) -> bool {
    matches!(p.len(), 1..=5)
        && p.iter().all(u8::is_ascii_digit)
        && (p.len() < 5 || p <= &b"65535"[..])
}

/// An SDP line in its plain form, read as `sdp::line_item` reads it: `Some(Some(..))` the
/// address to rewrite, `Some(None)` nothing to rewrite (an `m=` line sets `rejected`),
/// `None` not certain (the caller asks `line_item`). `line_item` splits a line at spaces
/// (runs of them count as one) and reads fixed fields; each form below starts every
/// field it reads with a non-space after exactly one space, so its fields are the
/// bytes between those spaces:
/// - `c=IN IP4 ADDR...`: the third field's address (a rejected section: nothing);
/// - `o=... IN IP4 ADDR`: the last field, after ` IN IP4 ` (any section);
/// - `a=rtcp:PORT[ IN IP4 ADDR...]`: the port field must be a port, then the address as
///   in `c=` (without one, only the port, which changes only under port maps);
/// - `m=MEDIA PORT[/n] ...`: the section is rejected when the port is 0.
fn plain_sdp(
    msg: &[u8],
    line: Range<usize>,
    rejected: &mut bool,
    memo: &Memo,
) -> Option<Option<(RewrittenField, Range<usize>, IpAddr)>> {
    let l = msg.get(line.clone())?;
    let at = line.start;
    if l.len() < 3 || l[1] != b'=' || l[2] == b' ' {
        return None;
    }
    match l[0] {
        b'c' => {
            let (host, addr) = plain_c(msg, line, memo)?;
            Some((!*rejected).then_some((RewrittenField::SdpConnection, host, addr)))
        }
        b'o' => {
            let (host, addr) = plain_o(msg, line, memo)?;
            Some(Some((RewrittenField::SdpOrigin, host, addr)))
        }
        b'a' => match plain_rtcp_fields(msg, line, memo)? {
            Some((_, Some((host, addr)))) => {
                Some((!*rejected).then_some((RewrittenField::SdpRtcp, host, addr)))
            }
            // No item, or only the port (which changes only under port maps).
            _ => Some(None),
        },
        b'm' => {
            let v = &l[2..];
            let s = find(msg, at + 2, line.end, [b' '])? - at - 2;
            let p = v
                .get(s + 1..)
                .filter(|p| p.first().is_some_and(|&c| c != b' '))?;
            let p_at = at + 2 + s + 1;
            let p_end = find(msg, p_at, line.end, [b' ']).map_or(p.len(), |i| i - p_at);
            // Rejected: the port is 0. Only a port starting with `0` can be (a run of
            // digits starting 1-9 is not 0, and anything else is no port): the others
            // are not parsed.
            *rejected = p[0] == b'0'
                && match port_at(p, 0, p_end) {
                    Some((port, pe)) if pe == p_end || p[pe] == b'/' => port == 0,
                    _ => false,
                };
            Some(None)
        }
        _ => None,
    }
}

/// The address of a `c=IN IP4 ADDR...` line (see [`plain_sdp`]; the line is at least 3
/// bytes, its second `=`, its third not a space).
#[inline(always)]
fn plain_c(msg: &[u8], line: Range<usize>, memo: &Memo) -> Option<(Range<usize>, IpAddr)> {
    msg.get(line.clone())?.strip_prefix(b"c=IN IP4 ")?;
    typed_v4(msg, line.start + 9, line.end, memo)
}

/// The address of an `o=... IN IP4 ADDR` line (see [`plain_sdp`]; the line is at least 3
/// bytes, its second `=`, its third not a space).
#[inline(always)]
fn plain_o(msg: &[u8], line: Range<usize>, memo: &Memo) -> Option<(Range<usize>, IpAddr)> {
    let l = msg.get(line.clone())?;
    if l.last() == Some(&b' ') {
        return None;
    }
    // The last field: at most 15 bytes for an IPv4 address (its space among the line's
    // last 17 bytes).
    let sp = last_space(l)?;
    // (`sp < 9` first: `sp - 7` does not wrap. A `..=` slice here was a call.)
    if sp < 9 || l.get(sp - 7..sp + 1) != Some(&b" IN IP4 "[..]) {
        return None;
    }
    // The text up to the first `/` after the space, when it is an address: the address
    // read up to the line's end, then the line's end or a `/` (no `/` within an
    // address's digits and dots: that `/` is the first).
    let h = line.start + sp + 1;
    match ipv4_at(msg, h, line.end, memo) {
        Some((a, n)) if h + n == line.end || msg.get(h + n) == Some(&b'/') => {
            Some((h..h + n, IpAddr::V4(a)))
        }
        _ => None,
    }
}

/// An address's text in the message and the address.
type HostAddr = (Range<usize>, IpAddr);

/// An `a=rtcp:PORT[ IN IP4 ADDR...]` line in the plain form of [`plain_sdp`]: the port
/// field's range (right after the colon, a whole port) and the address when one follows,
/// as `rtcp` reads them; `Some(None)` when `rtcp` reads no item (no port there, no space
/// first); `None` when not certain, or not `a=rtcp:`.
#[inline(always)]
fn plain_rtcp_fields(
    msg: &[u8],
    line: Range<usize>,
    memo: &Memo,
) -> Option<Option<(Range<usize>, Option<HostAddr>)>> {
    let rest = msg.get(line.clone())?.strip_prefix(b"a=rtcp:")?;
    let at = line.start + 7;
    let p_end = find(msg, at, line.end, [b' ']).map_or(rest.len(), |i| i - at);
    if !whole_port(rest.get(..p_end)?) {
        return (rest.first() != Some(&b' ')).then_some(None);
    }
    let port = at..at + p_end;
    if p_end == rest.len() {
        return Some(Some((port, None)));
    }
    rest[p_end..].strip_prefix(b" IN IP4 ")?;
    let addr = typed_v4(msg, at + p_end + 8, line.end, memo)?;
    Some(Some((port, Some(addr))))
}

/// `sdp::line_item` of an SDP line (without its terminator), its `c=` and `o=` lines in
/// the plain form read as [`plain_c`] / [`plain_o`] read them (`line_item`'s item: the
/// address, no port, `IP4`; a `c=` line's `rejected` the section's, an `o=` line's
/// `false`), `a=` lines by [`plain_rtcp`], every other line by `line_item` itself
/// (lines that are not `c=`, `o=`, `m=` or `a=rtcp:` have no item).
#[inline]
pub(super) fn sdp_item(
    msg: &[u8],
    line: Range<usize>,
    rejected: &mut bool,
    memo: &Memo,
) -> Option<sdp::Item> {
    let l = msg.get(line.clone())?;
    if l.len() < 2 || l[1] != b'=' {
        return None;
    }
    let item = |field, (range, addr): (Range<usize>, IpAddr), rejected| sdp::Item {
        field,
        addr: Some(sdp::SdpAddr {
            range,
            addr,
            ip6: false,
        }),
        port: None,
        other_addr: false,
        rejected,
    };
    let plain = l.len() >= 3 && l[2] != b' ';
    match l[0] {
        b'c' if plain => {
            if let Some(a) = plain_c(msg, line.clone(), memo) {
                return Some(item(sdp::SdpLine::Connection, a, *rejected));
            }
        }
        b'o' if plain => {
            if let Some(a) = plain_o(msg, line.clone(), memo) {
                return Some(item(sdp::SdpLine::Origin, a, false));
            }
        }
        // (`line_item` reads an `a=` line only when it is `a=rtcp:`.)
        b'a' if !l[2..].starts_with(b"rtcp:") => return None,
        b'a' => {
            if let Some(item) = plain_rtcp(msg, line.clone(), *rejected, memo) {
                return item;
            }
        }
        b'c' | b'o' | b'm' => {}
        _ => return None,
    }
    sdp::line_item(msg, line, rejected)
}

/// `sdp::line_item` of an `a=rtcp:` line: `rtcp`'s item for the plain form
/// ([`plain_rtcp_fields`]); `Some(None)` for no item; `None` when not certain (the caller
/// asks `line_item`). Out of line (one `a=rtcp:` line per section): inline, it moved the
/// rewrite's own inlining, +100 instructions on every message.
#[inline(never)]
fn plain_rtcp(
    msg: &[u8],
    line: Range<usize>,
    rejected: bool,
    memo: &Memo,
) -> Option<Option<sdp::Item>> {
    let Some((port, addr)) = plain_rtcp_fields(msg, line, memo)? else {
        return Some(None);
    };
    let value = msg[port.clone()]
        .iter()
        .fold(0u32, |v, &d| v * 10 + u32::from(d - b'0'));
    Some(Some(sdp::Item {
        field: sdp::SdpLine::Rtcp,
        addr: addr.map(|(range, addr)| sdp::SdpAddr {
            range,
            addr,
            ip6: false,
        }),
        port: Some((value as u16, port)),
        other_addr: false,
        rejected,
    }))
}

/// An `m=` line whose port cannot be 0 (its first byte is not `0`: see [`plain_sdp`]'s
/// `m=` form), told without the call to [`sdp_line`]: `true` when it is one (its
/// section is not rejected); `false` for every other line (then `sdp_line` reads it).
#[inline(always)]
pub(super) fn media_kept(msg: &[u8], line: &Range<usize>) -> bool {
    let Some(l) = msg.get(line.clone()) else {
        return false;
    };
    if l.len() < 3 || l[0] != b'm' || l[1] != b'=' || l[2] == b' ' {
        return false;
    }
    find(msg, line.start + 2, line.end, [b' ']).is_some_and(|s| {
        s + 1 < line.end && msg.get(s + 1).is_some_and(|&c| c != b' ' && c != b'0')
    })
}

/// The last space among the last 17 bytes of `l` (all of them when it is shorter).
#[inline(always)]
fn last_space(l: &[u8]) -> Option<usize> {
    let n = l.len();
    match l.last_chunk::<16>() {
        Some(w) => match hits(w, [b' ']) {
            0 => (n >= 17 && l[n - 17] == b' ').then(|| n - 17),
            m => Some(n - 16 + 31 - m.leading_zeros() as usize),
        },
        None => l.iter().rposition(|&c| c == b' '),
    }
}

/// An SDP address field `msg[at..end]` that starts with an IPv4 address followed by its
/// end, a space or a `/`: the address text `typed_addr` reads from it. (Inline in its
/// two callers: the call's prologue and epilogue were ~20 instructions per line.)
#[inline(always)]
fn typed_v4(msg: &[u8], at: usize, end: usize, memo: &Memo) -> Option<(Range<usize>, IpAddr)> {
    let (addr, n) = ipv4_at(msg, at, end, memo)?;
    let after = (at + n < end).then(|| msg.get(at + n)).flatten();
    matches!(after, None | Some(b' ') | Some(b'/')).then_some((at..at + n, IpAddr::V4(addr)))
}

/// [`host_port_at`] without bare IPv6 (URI hosts, Via sent-by), its IPv4 case read from a
/// 16-byte window; a `[` goes to `host_port_at`. Like it, anything but an IPv4 address
/// that is a whole token is `None` (a host name), and a `:port` may follow after LWS,
/// read only when `ports` (see [`Cands::ports`]: otherwise no port can change, and
/// [`Rewriter::host`] does not read it). Without it, where the host ends stands for
/// where the port would: between them are only LWS, `:` and digits, none of them a
/// candidate.
#[inline(always)]
fn host_port(msg: &[u8], pos: usize, end: usize, ports: bool, memo: &Memo) -> Option<HostPort> {
    let end = end.min(msg.len());
    if pos < end && msg[pos] == b'[' {
        return host_port_at(msg, pos, end, false);
    }
    let (a, n) = ipv4_at(msg, pos, end, memo)?;
    let he = pos + n;
    if he < end && is_host_char(msg[he]) {
        return None;
    }
    if !ports {
        return Some(HostPort {
            host: pos..he,
            addr: IpAddr::V4(a),
            bracketed: false,
            port: None,
        });
    }
    let q = skip_lws(msg, he, end);
    let port = if q < end && msg[q] == b':' {
        let p = skip_lws(msg, q + 1, end);
        port_at(msg, p, end).map(|(v, pe)| (v, p..pe))
    } else {
        None
    };
    Some(HostPort {
        host: pos..he,
        addr: IpAddr::V4(a),
        bracketed: false,
        port,
    })
}

/// The first 16 bytes of `b` (shorter than that), zero-padded. (Out of line: inlined,
/// the copy of a whole window above becomes a call to `memcpy` too.)
#[cold]
#[inline(never)]
fn padded(b: &[u8]) -> u128 {
    let mut w = [0u8; 16];
    let n = b.len().min(16);
    w[..n].copy_from_slice(&b[..n]);
    u128::from_le_bytes(w)
}

/// The 16 bytes of `msg` from `pos` (at most its length), zero past the message's end
/// (byte `i` in bits `8i..8i+8`): one load from `pos`, or near the end one of the
/// message's last 16 bytes shifted down; copied ([`padded`]) only from a message of
/// fewer than 16 bytes.
#[inline(always)]
fn raw16(msg: &[u8], pos: usize) -> Option<u128> {
    if let Some(w) = msg.get(pos..).and_then(|b| b.first_chunk::<16>()) {
        return Some(u128::from_le_bytes(*w));
    }
    let past = (pos + 16).checked_sub(msg.len())?;
    match msg.last_chunk::<16>() {
        // `pos` < the length: `past` < 16.
        Some(w) if past < 16 => Some(u128::from_le_bytes(*w) >> (8 * past)),
        Some(_) => (past == 16).then_some(0),
        None => Some(padded(msg.get(pos..)?)),
    }
}

/// `LOW[n]`: ones over the first `n` bytes of a window (a table: a `u128` shift by a
/// variable amount is several instructions, a load one).
const LOW: [u128; 17] = {
    let mut t = [0u128; 17];
    let mut n = 1;
    while n < 17 {
        t[n] = t[n - 1] << 8 | 0xff;
        n += 1;
    }
    t
};

/// The 16 bytes of `msg` from `pos`, those at or after `end` zeroed ([`raw16`], masked).
/// `None` when `pos` is past `end` or the message.
#[inline]
fn window(msg: &[u8], pos: usize, end: usize) -> Option<[u8; 16]> {
    let end = end.min(msg.len());
    let n = end.checked_sub(pos)?;
    let w = raw16(msg, pos)?;
    Some((w & LOW[n.min(16)]).to_le_bytes())
}

/// The last IPv4 address [`ipv4_at`] read in a message: its text's bytes (zero past
/// it), its value and its length (0: none yet). A message names the same address many
/// times (Via, Contact, `o=`, `c=`, `a=rtcp`).
#[derive(Clone, Copy, Default)]
struct Last {
    text: u128,
    /// Ones over the text's bytes.
    keep: u128,
    addr: u32,
    len: u8,
}

/// [`Last`] of one message (in its index, shared by reference with every field).
#[derive(Default)]
pub(super) struct Memo(Cell<Last>);

/// [`crate::sip::addr::parse_ipv4_prefix`] of `msg[pos..end]`, read from its zero-padded
/// 16-byte [`window`] (an address is at most 15 bytes; a zero is neither a digit nor a
/// dot, so the padding ends the address as `end` does). The same text as the last
/// address read ([`Memo`]), within `end`, followed by `end` or a byte that is not a
/// digit is that address: the parse reads nothing else (the byte after the text only to
/// see that the last octet ended, when it has fewer than 3 digits). (The memo's check
/// inline, the parse out of line: a repeat then costs no call.)
#[inline(always)]
fn ipv4_at(msg: &[u8], pos: usize, end: usize, memo: &Memo) -> Option<(Ipv4Addr, usize)> {
    let last = memo.0.get();
    let end = end.min(msg.len());
    if let Some(raw) = raw16(msg, pos) {
        let n = usize::from(last.len);
        if (raw ^ last.text) & last.keep == 0
            && n != 0
            && pos + n <= end
            && (pos + n == end || !raw.to_le_bytes()[n & 15].is_ascii_digit())
        {
            return Some((Ipv4Addr::from(last.addr), n));
        }
    }
    ipv4_parse(msg, pos, end, memo)
}

/// [`ipv4_at`] past its memo: the parse, remembered.
#[inline(never)]
fn ipv4_parse(msg: &[u8], pos: usize, end: usize, memo: &Memo) -> Option<(Ipv4Addr, usize)> {
    let w = window(msg, pos, end)?;
    let (addr, n) = crate::sip::addr::parse_ipv4_window(&w)?;
    let keep = LOW[n & 15];
    memo.0.set(Last {
        text: u128::from_le_bytes(w) & keep,
        keep,
        addr: u32::from(addr),
        len: n as u8,
    });
    Some((addr, n))
}

#[cfg(test)]
mod tests {
    use super::{ipv4_at, last_space, plain_sdp, whole_port, Memo};
    use crate::sip::{addr::parse_ipv4_prefix, sdp::line_item};

    /// `whole_port` says what `port_at` over the whole text says: every number up to
    /// 6 digits (with leading zeros too), and texts with a non-digit among digits.
    #[test]
    fn whole_port_equals_port_at() {
        let port_at =
            |p: &[u8]| crate::sip::scan::port_at(p, 0, p.len()).is_some_and(|(_, e)| e == p.len());
        let mut texts: Vec<Vec<u8>> = vec![Vec::new()];
        for v in 0..1_000_000u32 {
            texts.push(v.to_string().into_bytes());
            if v < 1000 {
                texts.push(format!("{v:05}").into_bytes());
                texts.push(format!("{v:06}").into_bytes());
            }
        }
        for p in ["1a", "a1", "12 ", "6553a", "/", "655:5"] {
            texts.push(p.as_bytes().to_vec());
        }
        for p in &texts {
            assert_eq!(
                whole_port(p),
                port_at(p),
                "{:?}",
                String::from_utf8_lossy(p)
            );
        }
    }

    /// `last_space` finds the space the byte loop it replaced found: the last one among
    /// the line's last 17 bytes (the loop checked each byte before giving up).
    #[test]
    fn last_space_equals_the_byte_loop() {
        let byte_loop = |l: &[u8]| -> Option<usize> {
            let mut sp = l.len() - 1;
            while l[sp] != b' ' {
                if sp + 16 < l.len() || sp == 0 {
                    return None;
                }
                sp -= 1;
            }
            Some(sp)
        };
        for n in 1..40 {
            for a in 0..n {
                for b in a..n {
                    let mut l = vec![b'x'; n];
                    l[a] = b' ';
                    l[b] = b' ';
                    assert_eq!(last_space(&l), byte_loop(&l), "{n} {a} {b}");
                    l[a] = b'y';
                    l[b] = b'y';
                    assert_eq!(last_space(&l), byte_loop(&l), "{n} none");
                }
            }
        }
    }

    /// The window read (one load masked at the field's end, or the padded copy near the
    /// message's end) parses what `parse_ipv4_prefix` parses of `msg[pos..end]`, for
    /// every field inside messages that hold addresses at their start, middle and end;
    /// with a fresh memo and with one kept over all the reads (in two orders: the last
    /// address read is then every address of the messages, before every field).
    #[test]
    fn ipv4_from_the_window_equals_the_prefix_parse() {
        let msgs: [&[u8]; 7] = [
            b"c=IN IP4 10.0.0.1\r\nx 192.168.100.200:5060;y 1.2.3.4",
            b"255.255.255.255 256.1.1.1 01.002.3.4 9.9.9.99999",
            b"10.0.0.10",
            b"a 10.1.2.3",
            b"1.2.3.4.5 1234.1.1.1 1.2.3.1234 1..2.3 .1.2.3.4 1.2.3. 999.1.1.1 1.2.3.x",
            b"000.000.000.000 123.123.123.123 0.0.0.0:5060 1.1.1.255/24 01.1.1.256",
            b"10.0.0.1 10.0.0.10 10.0.0.1/ 10.0.0.100 10.0.0.1.5 110.0.0.1 10.0.0.1x 10.0.0.1",
        ];
        let kept = Memo::default();
        for msg in msgs {
            let n = msg.len();
            let fields = (0..=n).flat_map(|p| (p..=n).map(move |e| (p, e)));
            let by_end = (0..=n).flat_map(|e| (0..=e).map(move |p| (p, e)));
            for (pos, end) in fields.chain(by_end) {
                let want = parse_ipv4_prefix(&msg[pos..end]);
                let what = format!("{:?} [{pos},{end})", core::str::from_utf8(msg));
                assert_eq!(ipv4_at(msg, pos, end, &Memo::default()), want, "{what}");
                assert_eq!(ipv4_at(msg, pos, end, &kept), want, "kept: {what}");
            }
        }
        assert_eq!(ipv4_at(b"10.0.0.1", 9, 9, &kept), None);
    }

    /// An `o=` line's address as `plain_sdp` reads it (the address up to the line's end,
    /// then the end or a `/`) is `line_item`'s, whenever `plain_sdp` is certain: for
    /// address texts followed by nothing, `/`, digits, dots and other bytes.
    #[test]
    fn origin_address_equals_line_item() {
        let tails = "10.0.0.1 10.0.0.1/ 10.0.0.1/24 10.0.0.12 10.0.0.123 10.0.0.1234 \
                     10.0.0.1. 10.0.0.1.5 10.0.0.1x 10.0.0/1 10.0/0.1 10.0.0.256 1.2.3.4// \
                     255.255.255.255/ 010.0.0.1 10..0.1 x10.0.0.1";
        for t in tails.split_whitespace() {
            for kept in [false, true] {
                // (A kept memo first read the tail's address elsewhere.)
                let memo = Memo::default();
                if kept {
                    let _ = ipv4_at(t.as_bytes(), 0, t.len(), &memo);
                }
                let line = format!("o=- 1 2 IN IP4 {t}");
                let msg = line.as_bytes();
                let got = plain_sdp(msg, 0..msg.len(), &mut false, &memo);
                let want = line_item(msg, 0..msg.len(), &mut false)
                    .and_then(|i| i.addr)
                    .map(|a| (a.range, a.addr));
                match got {
                    Some(Some((_, host, addr))) => assert_eq!(Some((host, addr)), want, "{t}"),
                    Some(None) => assert_eq!(want, None, "{t}"),
                    None => {}
                }
            }
        }
    }
}
