//! Candidate-driven parsing of the fields that hold addresses: each field's plainest form
//! (`<sip:user@host:port;params>` values, a `SIP/2.0/UDP host:port` top Via, `c=IN IP4
//! addr` / `o=... IN IP4 addr` SDP lines) is read with a few byte compares, and only the
//! parts of it that hold a candidate are parsed; whenever the plain form is not certain,
//! the field goes through the reference's exact parser instead ([`Rewriter::uri_list`],
//! [`Rewriter::top_via`], [`Rewriter::uri`], [`sdp::line_item`]). Each shortcut below says
//! why it finds what the reference finds.

use core::{net::IpAddr, ops::Range};

use super::index::Cands;
use crate::{
    nat::Direction,
    rewrite::{edits::Field, message::Rewriter},
    sip::{
        addr::{parse_ipv4, parse_ipv4_prefix},
        scan::{skip_lws, skip_ws},
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
    field: Field,
    all: bool,
    cands: &Cands,
) {
    let saved = (r.edits.len(), r.family_mismatch, r.full);
    if plain_values(r, msg, v.clone(), field, all, cands).is_none() {
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
    field: Field,
    all: bool,
    cands: &Cands,
) -> Option<()> {
    let first_of = |from: usize, a: u8, b: u8| -> Option<usize> {
        let i = msg
            .get(from..v.end)?
            .iter()
            .position(|&c| c == a || c == b)?;
        Some(from + i)
    };
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
        let rest = msg[gt + 1..v.end]
            .iter()
            .position(|&c| matches!(c, b',' | b'"' | b'<'));
        match rest {
            None => break,
            Some(i) if msg[gt + 1 + i] == b',' => pos = skip_lws(msg, gt + 2 + i, v.end),
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
    field: Field,
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
    let host_start = msg[after..e]
        .iter()
        .position(|&c| c == b'@')
        .map_or(after, |i| after + i + 1);
    let Some(hp) = host_port_at(msg, skip_lws(msg, host_start, e), e, false) else {
        // A host name (a numeric maddr may follow it) or something odd.
        return r.uri(msg, s, e, field);
    };
    r.host(&hp, Some(if secure { 5061 } else { 5060 }), true, field);
    let host_end = hp.end();
    if cands.any(host_end, e) {
        let params_end = msg[host_end..e]
            .iter()
            .position(|&c| c == b'?')
            .map_or(e, |i| host_end + i);
        r.maddr(msg, host_end..params_end, field);
    }
}

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
    while p < v.end && msg[p].is_ascii_alphanumeric() {
        p += 1;
    }
    let tls = msg[t..p].eq_ignore_ascii_case(b"TLS");
    let hp = host_port_at(msg, skip_lws(msg, p, v.end), v.end, false);
    match hp {
        Some(hp) if !cands.any(hp.end(), v.end) => {
            r.host(&hp, Some(if tls { 5061 } else { 5060 }), true, Field::Via);
        }
        _ => r.top_via(msg, v),
    }
}

/// One SDP line with a candidate or an `m=` (no port maps): the address of a `c=`, `o=`
/// or `a=rtcp` line is rewritten, in sections that are not rejected (an `o=` always);
/// an `m=` line decides whether its section is rejected.
pub(super) fn sdp_line(
    r: &mut Rewriter<'_, '_, '_>,
    msg: &[u8],
    line: Range<usize>,
    rejected: &mut bool,
) {
    let (field, addr) = match plain_sdp_addr(msg, line.clone()) {
        Some((b'c', _)) if *rejected => return,
        Some((b'c', a)) => (Field::SdpConnection, a),
        Some((_, a)) => (Field::SdpOrigin, a),
        None => {
            let Some(item) = sdp::line_item(msg, line, rejected) else {
                return;
            };
            if item.rejected || item.field == sdp::Field::Media {
                return;
            }
            let field = match item.field {
                sdp::Field::Connection => Field::SdpConnection,
                sdp::Field::Origin => Field::SdpOrigin,
                _ => Field::SdpRtcp,
            };
            match item.addr {
                Some(a) => (field, (a.range, a.addr)),
                None => return,
            }
        }
    };
    let hp = HostPort {
        host: addr.0,
        addr: addr.1,
        bracketed: false,
        port: None,
    };
    r.host(&hp, None, false, field);
}

/// The IPv4 address of a `c=IN IP4 a.b.c.d[/ttl| ...]` or `o=... IN IP4 a.b.c.d` line,
/// with the line's letter; `None` when the line is not in that form (or not certainly).
/// Why this is `sdp::line_item`'s reading: it splits the line at spaces and reads the
/// address (up to a `/`) from the third field of `c=` and the last of `o=`, after the
/// fields `IN` and `IP4`. Here `c=IN IP4 ` with a non-space after it makes the third
/// field start right there, and an address followed by the line's end, a space or a `/`
/// is that field's address text. In `o=`, a last field preceded by exactly ` IN IP4 `
/// (and more before it) is the address field after `IN` and `IP4`.
fn plain_sdp_addr(msg: &[u8], line: Range<usize>) -> Option<(u8, (Range<usize>, IpAddr))> {
    let l = msg.get(line.clone())?;
    match l.first()? {
        b'c' => {
            let rest = l.strip_prefix(b"c=IN IP4 ")?;
            let (a, n) = parse_ipv4_prefix(rest)?;
            let at = line.start + 9;
            match rest.get(n) {
                None | Some(b' ') | Some(b'/') => Some((b'c', (at..at + n, IpAddr::V4(a)))),
                _ => None,
            }
        }
        b'o' if l.get(1) == Some(&b'=') && l.last() != Some(&b' ') => {
            // The last field: at most 15 bytes for an IPv4 address.
            let sp = l.len() - 1 - l.iter().rev().take(16).position(|&c| c == b' ')?;
            if sp < 9 || &l[sp - 7..=sp] != b" IN IP4 " {
                return None;
            }
            let field = &l[sp + 1..];
            let text = field.split(|&c| c == b'/').next()?;
            let a = parse_ipv4(text)?;
            let at = line.start + sp + 1;
            Some((b'o', (at..at + text.len(), IpAddr::V4(a))))
        }
        _ => None,
    }
}
