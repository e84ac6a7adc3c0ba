//! The receive-side verifier: checks one received frame against what the rewriter must
//! have produced. Written independently of the rewriter's scanner (plain line and token
//! logic), so a scanner bug cannot hide itself. No allocation per packet.
//!
//! A frame is *verified* when it is an unfragmented IPv4 or IPv6 UDP datagram to the SIP
//! port carrying the generator's `X-Sipnat-Ts` header; anything else on the socket is *foreign* (not ours).
//! A verified frame is *correct* when all of these hold, else *incorrect* (each failing
//! check counted under its reason):
//! - the IPv4 header checksum is valid (IPv6 has none);
//! - the UDP checksum is present and valid;
//! - the IP source is the expected one (`--expect-src`, default the external address);
//! - `Content-Length` (when present) equals the body length;
//! - no address field (top Via, Contact, SDP `o=`, `c=`, `a=rtcp`) holds a private
//!   address (`--private` networks or the template's source address);
//! - every field that held a private address in the template now holds the external
//!   address (`--expect-external`);
//! - with media NAT on (`--expect-media-range`), every SDP media section whose connection
//!   address is the external one announces an allocated pair of that range: an even
//!   `m=` port whose odd successor is in the range too, and an `a=rtcp` port (if any)
//!   equal to it + 1. The pair itself is the gateway's choice, so it is checked for
//!   these properties, not compared with the port sent.

use core::net::IpAddr;

use super::template::{CheckedField, FieldSet, TS_HEADER};
use crate::{
    nat::{napt::PortRange, Net},
    wire::{self, checksum, ipv4, ipv6, Link},
};

/// Why a verified packet is incorrect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    IpChecksum,
    UdpChecksum,
    WrongSource,
    ContentLength,
    PrivateLeft,
    ExternalMissing,
    /// Lengths inconsistent, SIP headers unparseable.
    Malformed,
    /// With media NAT on: an SDP `m=` / `a=rtcp` port that is not an allocated even/odd
    /// pair of the media range.
    MediaPort,
}

impl Reason {
    pub const COUNT: usize = 8;
    pub const ALL: [Reason; Reason::COUNT] = [
        Reason::IpChecksum,
        Reason::UdpChecksum,
        Reason::WrongSource,
        Reason::ContentLength,
        Reason::PrivateLeft,
        Reason::ExternalMissing,
        Reason::Malformed,
        Reason::MediaPort,
    ];

    /// Stable name (JSON key).
    pub fn name(self) -> &'static str {
        match self {
            Reason::IpChecksum => "ip_checksum",
            Reason::UdpChecksum => "udp_checksum",
            Reason::WrongSource => "wrong_source",
            Reason::ContentLength => "content_length",
            Reason::PrivateLeft => "private_address_left",
            Reason::ExternalMissing => "external_address_missing",
            Reason::Malformed => "malformed",
            Reason::MediaPort => "media_port",
        }
    }
}

/// A set of [`Reason`]s (bits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reasons(u16);

impl Reasons {
    pub fn insert(&mut self, r: Reason) {
        self.0 |= 1 << r as u16;
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Reason> {
        Reason::ALL
            .into_iter()
            .filter(move |r| self.0 & (1 << *r as u16) != 0)
    }
}

/// What the verifier expects.
#[derive(Clone, Debug, Default)]
pub struct Expect {
    /// The address the rewriter writes (`--expect-external`); `None`: not checked.
    pub external: Option<IpAddr>,
    /// The IP source of received packets; `None`: not checked.
    pub src: Option<IpAddr>,
    /// Networks no address field may hold after the rewrite.
    pub private: Vec<Net>,
    /// Addresses no field may hold (the templates' source address).
    pub private_hosts: Vec<IpAddr>,
    /// Per template index: the fields that must hold the external address.
    pub fields: Vec<FieldSet>,
    /// The SIP port the generator sends to.
    pub dst_port: u16,
    /// Media NAT on (`--expect-media-range`): the range the SDP media ports of the
    /// external address must be allocated from; `None`: ports not checked.
    pub media: Option<PortRange>,
}

impl Expect {
    pub fn is_private(&self, a: IpAddr) -> bool {
        self.private_hosts.contains(&a) || self.private.iter().any(|n| n.contains(a))
    }
}

/// The outcome for one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not a load-test packet.
    Foreign,
    /// Verified: `reasons` empty means correct.
    Checked {
        ts_ns: u64,
        seq: u64,
        reasons: Reasons,
        /// The first field at fault for the address reasons (for the report).
        field: Option<CheckedField>,
    },
}

/// Parses the generator's header: `(timestamp ns, sequence, template index)`.
pub fn parse_ts(payload: &[u8]) -> Option<(u64, u64, u16)> {
    let head_end = memchr::memmem::find(payload, b"\n\r\n")
        .or_else(|| memchr::memmem::find(payload, b"\n\n"))
        .unwrap_or(payload.len());
    let at = memchr::memmem::find(&payload[..head_end], TS_HEADER.as_bytes())?;
    let v = payload.get(at + TS_HEADER.len() + 2..at + TS_HEADER.len() + 2 + 38)?;
    let hex = |b: &[u8]| -> Option<u64> {
        let s = std::str::from_utf8(b).ok()?;
        u64::from_str_radix(s, 16).ok()
    };
    if v[16] != b' ' || v[33] != b' ' {
        return None;
    }
    Some((hex(&v[..16])?, hex(&v[17..33])?, hex(&v[34..38])? as u16))
}

fn ip_of(tok: &[u8]) -> Option<IpAddr> {
    let t = tok.strip_prefix(b"[").unwrap_or(tok);
    let t = t.strip_suffix(b"]").unwrap_or(t);
    std::str::from_utf8(t).ok()?.parse().ok()
}

/// The host of a `host[:port]` / `[v6]:port` token start.
fn host_of(s: &[u8]) -> &[u8] {
    if s.first() == Some(&b'[') {
        let e = memchr::memchr(b']', s).map_or(s.len(), |p| p + 1);
        return &s[..e];
    }
    let e = s
        .iter()
        .position(|c| b":;,>? \t\r\n".contains(c))
        .unwrap_or(s.len());
    &s[..e]
}

fn for_each_contact_host(value: &[u8], f: &mut dyn FnMut(&[u8])) {
    let mut rest = value;
    loop {
        let lower_sip = rest
            .windows(4)
            .position(|w| w.eq_ignore_ascii_case(b"sip:"))
            .map(|p| (p, 4));
        let lower_sips = rest
            .windows(5)
            .position(|w| w.eq_ignore_ascii_case(b"sips:"))
            .map(|p| (p, 5));
        let Some((p, n)) = (match (lower_sip, lower_sips) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        }) else {
            return;
        };
        let uri = &rest[p + n..];
        let end = uri
            .iter()
            .position(|c| b"> \t,\r\n".contains(c))
            .unwrap_or(uri.len());
        let uri_part = &uri[..end];
        // userinfo ends at the last '@' before any header part
        let host_start = uri_part
            .iter()
            .take_while(|&&c| c != b'?')
            .enumerate()
            .filter(|(_, &c)| c == b'@')
            .map(|(i, _)| i + 1)
            .last()
            .unwrap_or(0);
        f(host_of(&uri_part[host_start..]));
        rest = &uri[end..];
    }
}

/// Calls `f` for every address-bearing field of a SIP message: top Via sent-by, every
/// Contact URI host, SDP `o=`, `c=`, `a=rtcp` addresses. Hosts that are not IP literals are
/// skipped.
pub fn for_each_address(payload: &[u8], f: &mut dyn FnMut(CheckedField, IpAddr)) {
    let mut in_body = false;
    let mut seen_via = false;
    for (i, raw) in payload.split(|&c| c == b'\n').enumerate() {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if i == 0 {
            continue;
        }
        if !in_body {
            if line.is_empty() {
                in_body = true;
                continue;
            }
            let Some(colon) = memchr::memchr(b':', line) else {
                continue;
            };
            let name = line[..colon].trim_ascii();
            let value = line[colon + 1..].trim_ascii_start();
            if (name.eq_ignore_ascii_case(b"via") || name.eq_ignore_ascii_case(b"v")) && !seen_via {
                seen_via = true;
                // SIP/2.0/UDP host[:port];...
                if let Some(sp) = value.iter().position(|c| *c == b' ' || *c == b'\t') {
                    let h = host_of(value[sp..].trim_ascii_start());
                    if let Some(a) = ip_of(h) {
                        f(CheckedField::Via, a);
                    }
                }
            } else if name.eq_ignore_ascii_case(b"contact") || name.eq_ignore_ascii_case(b"m") {
                for_each_contact_host(value, &mut |h| {
                    if let Some(a) = ip_of(h) {
                        f(CheckedField::Contact, a);
                    }
                });
            }
        } else {
            let field = if line.starts_with(b"o=") {
                CheckedField::SdpO
            } else if line.starts_with(b"c=") {
                CheckedField::SdpC
            } else if line.starts_with(b"a=rtcp:") {
                CheckedField::Rtcp
            } else {
                continue;
            };
            let Some(last) = line.rsplit(|c| *c == b' ').next() else {
                continue;
            };
            let addr = last.split(|c| *c == b'/').next().unwrap_or(last);
            if let Some(a) = ip_of(addr) {
                f(field, a);
            }
        }
    }
}

/// [`for_each_address`] collected (setup time and tests).
pub fn address_fields(payload: &[u8]) -> Vec<(CheckedField, IpAddr)> {
    let mut v = Vec::new();
    for_each_address(payload, &mut |f, a| v.push((f, a)));
    v
}

/// `Content-Length` (or `l`) of a message, and the length of its body. `None` when the
/// header is absent (allowed over UDP) or there is no blank line.
fn content_length(payload: &[u8]) -> Option<Result<(usize, usize), ()>> {
    let (head_end, body_start) = match memchr::memmem::find(payload, b"\r\n\r\n") {
        Some(p) => (p + 2, p + 4),
        None => {
            let p = memchr::memmem::find(payload, b"\n\n")?;
            (p + 1, p + 2)
        }
    };
    for raw in payload[..head_end].split(|&c| c == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let v = line[colon + 1..].trim_ascii();
            let n = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok());
            return Some(match n {
                Some(n) => Ok((n, payload.len() - body_start)),
                None => Err(()),
            });
        }
    }
    None
}

fn sdp_port(tok: &[u8]) -> Option<u16> {
    let t = tok.split(|c| *c == b'/').next()?;
    std::str::from_utf8(t).ok()?.parse().ok()
}

/// With media NAT on: whether every SDP media section of `payload` whose connection
/// address (its own `c=`, else the session's) is `external` announces an even `m=` port
/// of `range` whose odd successor is in `range` too, with `a=rtcp` (if any) = that + 1.
/// Sections of other addresses (not ours) and disabled streams (port 0) are not checked.
pub fn media_ports_ok(payload: &[u8], range: PortRange, external: Option<IpAddr>) -> bool {
    let Some(body_at) = memchr::memmem::find(payload, b"\r\n\r\n")
        .map(|p| p + 4)
        .or_else(|| memchr::memmem::find(payload, b"\n\n").map(|p| p + 2))
    else {
        return true;
    };
    // (m= port, its a=rtcp port, its own c= address), of the section being read.
    type Section = (Option<u16>, Option<Option<u16>>, Option<Option<IpAddr>>);
    let mut session_c: Option<IpAddr> = None;
    let mut sec: Option<Section> = None;
    let ok = |(m, rtcp, c): Section, session_c: Option<IpAddr>| -> bool {
        let addr = c.unwrap_or(session_c);
        let Some(m) = m else { return false };
        if m == 0 || external.is_none() || addr != external {
            return true;
        }
        m % 2 == 0
            && range.contains(m)
            && range.contains(m.wrapping_add(1))
            && rtcp.is_none_or(|r| r == Some(m.wrapping_add(1)))
    };
    for raw in payload[body_at..].split(|&c| c == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if let Some(rest) = line.strip_prefix(b"m=") {
            if let Some(prev) = sec.take() {
                if !ok(prev, session_c) {
                    return false;
                }
            }
            let port = rest.split(|c| *c == b' ').nth(1).and_then(sdp_port);
            sec = Some((port, None, None));
        } else if let Some(rest) = line.strip_prefix(b"c=") {
            let last = rest.rsplit(|c| *c == b' ').next().unwrap_or(rest);
            let a = ip_of(last.split(|c| *c == b'/').next().unwrap_or(last));
            match &mut sec {
                Some(s) => s.2 = Some(a),
                None => session_c = a,
            }
        } else if let Some(rest) = line.strip_prefix(b"a=rtcp:") {
            if let Some(s) = &mut sec {
                s.1 = Some(rest.split(|c| *c == b' ').next().and_then(sdp_port));
            }
        }
    }
    sec.is_none_or(|s| ok(s, session_c))
}

/// Verifies one received Ethernet frame.
pub fn verify(frame: &[u8], e: &Expect) -> Verdict {
    let Ok(layout) = wire::parse(frame, Link::Ethernet) else {
        return Verdict::Foreign;
    };
    if layout.fragment.is_some() {
        return Verdict::Foreign;
    }
    let Some((_, dport, start, len)) = layout.udp(frame) else {
        return Verdict::Foreign;
    };
    let Some(payload) = frame.get(start..start + len) else {
        return Verdict::Foreign;
    };
    if dport != e.dst_port {
        return Verdict::Foreign;
    }
    let Some((ts_ns, seq, tmpl)) = parse_ts(payload) else {
        return Verdict::Foreign;
    };
    let mut reasons = Reasons::default();
    let mut field = None;
    let udp = &frame[layout.l4..layout.ip_end];
    let pseudo = if layout.ipv6 {
        let ip = ipv6::Packet::new_unchecked(&frame[layout.l3..layout.ip_end]);
        checksum::pseudo_v6(ip.src_bytes(), ip.dst_bytes(), 17, udp.len() as u32)
    } else {
        let ip = ipv4::Packet::new_unchecked(&frame[layout.l3..layout.ip_end]);
        if !ip.verify_checksum() {
            reasons.insert(Reason::IpChecksum);
        }
        checksum::pseudo_v4(ip.src_bytes(), ip.dst_bytes(), 17, udp.len() as u32)
    };
    // A zero UDP checksum (none) is allowed for IPv4 only, and the generator always sets one.
    let udp_ok = udp.get(6..8).is_some_and(|c| c != [0, 0])
        && checksum::fold(pseudo + checksum::sum(udp)) == 0xffff;
    if !udp_ok {
        reasons.insert(Reason::UdpChecksum);
    }
    if e.src.is_some_and(|s| s != layout.src) {
        reasons.insert(Reason::WrongSource);
    }
    match content_length(payload) {
        Some(Ok((declared, body))) if declared != body => reasons.insert(Reason::ContentLength),
        Some(Err(())) => reasons.insert(Reason::Malformed),
        _ => {}
    }
    let mut external_seen = FieldSet::default();
    for_each_address(payload, &mut |f, a| {
        if e.is_private(a) {
            reasons.insert(Reason::PrivateLeft);
            field.get_or_insert(f);
        }
        if Some(a) == e.external {
            external_seen.insert(f);
        }
    });
    if let Some(range) = e.media {
        if !media_ports_ok(payload, range, e.external) {
            reasons.insert(Reason::MediaPort);
        }
    }
    if e.external.is_some() {
        let want = e.fields.get(usize::from(tmpl)).copied().unwrap_or_default();
        if let Some(missing) = want.iter().find(|f| !external_seen.contains(*f)) {
            reasons.insert(Reason::ExternalMissing);
            field.get_or_insert(missing);
        }
    }
    Verdict::Checked {
        ts_ns,
        seq,
        reasons,
        field,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadtest::template::{prepare, Builtin, Endpoints, Template};
    use core::net::Ipv4Addr;

    const UA: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const CAR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
    const EXT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

    fn template(b: Builtin) -> Template {
        let ep = Endpoints {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: IpAddr::V4(UA),
            dst_ip: IpAddr::V4(CAR),
            src_port: 5060,
            dst_port: 5060,
        };
        let p = prepare(&b.message(UA.into(), CAR.into()), 0).unwrap();
        let private = |a: IpAddr| a == IpAddr::V4(UA);
        Template::build(b.name(), &p, ep, &private, 4096).unwrap()
    }

    /// A copy of `t`'s frame, patched (see [`Template::patch`]).
    fn patched(t: &Template, flow: u32, salt: u32, seq: u64, ts_ns: u64) -> Vec<u8> {
        let mut f = t.frame.clone();
        t.patch(&mut f, flow, salt, seq, ts_ns);
        f
    }

    fn expect(t: &Template) -> Expect {
        Expect {
            external: Some(EXT.into()),
            src: Some(EXT.into()),
            private: vec![Net::parse("10.0.0.0/8").unwrap()],
            private_hosts: vec![UA.into()],
            fields: vec![t.private_fields],
            dst_port: 5060,
            media: None,
        }
    }

    /// Content-Length recomputed from the body.
    fn fix_cl(text: &str) -> String {
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let head: Vec<String> = head
            .split("\r\n")
            .map(|l| {
                if l.starts_with("Content-Length:") {
                    format!("Content-Length: {}", body.len())
                } else {
                    l.to_string()
                }
            })
            .collect();
        format!("{}\r\n\r\n{body}", head.join("\r\n"))
    }

    /// A frame with the link header of `frame`, payload `text`, IP source `src`, lengths
    /// and checksums correct.
    fn frame_with(frame: &[u8], text: &str, src: Ipv4Addr) -> Vec<u8> {
        let mut f = frame[..42].to_vec();
        f.extend_from_slice(text.as_bytes());
        let total = (f.len() - 14) as u16;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f[26..30].copy_from_slice(&src.octets());
        f[24..26].fill(0);
        let c = checksum::finish(checksum::sum(&f[14..34]));
        f[24..26].copy_from_slice(&c.to_be_bytes());
        let ulen = (f.len() - 34) as u16;
        f[38..40].copy_from_slice(&ulen.to_be_bytes());
        f[40..42].fill(0);
        let s = checksum::pseudo_v4(&f[26..30], &f[30..34], 17, u32::from(ulen))
            + checksum::sum(&f[34..]);
        f[40..42].copy_from_slice(&checksum::finish(s).to_be_bytes());
        f
    }

    fn text_of(frame: &[u8]) -> String {
        String::from_utf8_lossy(&frame[42..]).into_owned()
    }

    /// What sipnat does to the frame, done by hand: every UA address → EXT, lengths,
    /// checksums.
    fn rewrite_by_hand(frame: &[u8]) -> Vec<u8> {
        let text = fix_cl(&text_of(frame).replace("10.0.0.2", "198.51.100.1"));
        frame_with(frame, &text, EXT)
    }

    fn checked(v: Verdict) -> (Reasons, Option<CheckedField>, u64) {
        match v {
            Verdict::Checked {
                reasons,
                field,
                seq,
                ..
            } => (reasons, field, seq),
            Verdict::Foreign => panic!("foreign"),
        }
    }

    #[test]
    fn a_correct_rewrite_passes_and_an_unrewritten_packet_fails() {
        for b in Builtin::ALL {
            let t = template(b);
            let f = patched(&t, 9, 1, 42, 1000);
            let e = expect(&t);
            let good = rewrite_by_hand(&f);
            let (r, _, seq) = checked(verify(&good, &e));
            assert!(r.is_empty(), "{b:?}: {:?}", r.iter().collect::<Vec<_>>());
            assert_eq!(seq, 42);
            // The original (not rewritten) is wrong: source and private fields.
            let (r, field, _) = checked(verify(&f, &e));
            let r: Vec<Reason> = r.iter().collect();
            assert!(r.contains(&Reason::WrongSource), "{b:?} {r:?}");
            assert!(r.contains(&Reason::PrivateLeft), "{b:?} {r:?}");
            assert!(r.contains(&Reason::ExternalMissing), "{b:?} {r:?}");
            assert!(field.is_some());
        }
    }

    #[test]
    fn each_defect_is_named() {
        let t = template(Builtin::Invite);
        let f = patched(&t, 0, 0, 1, 1);
        let e = expect(&t);
        let good = rewrite_by_hand(&f);
        let reasons = |f: &[u8]| checked(verify(f, &e)).0.iter().collect::<Vec<_>>();

        let mut bad_ip = good.clone();
        bad_ip[22] ^= 1; // TTL: IP checksum now wrong (UDP unaffected)
        assert_eq!(reasons(&bad_ip), vec![Reason::IpChecksum]);

        let mut bad_udp = good.clone();
        let last = bad_udp.len() - 3;
        bad_udp[last] ^= 0x20; // a body byte
        assert_eq!(reasons(&bad_udp), vec![Reason::UdpChecksum]);

        let mut zero = good.clone();
        zero[40..42].fill(0);
        assert_eq!(reasons(&zero), vec![Reason::UdpChecksum]);

        // Content-Length off by one (lengths and checksums otherwise right).
        let text = text_of(&good);
        let body_len = text.split_once("\r\n\r\n").unwrap().1.len();
        let wrong = text.replace(
            &format!("Content-Length: {body_len}"),
            &format!("Content-Length: {}", body_len + 1),
        );
        assert_eq!(
            reasons(&frame_with(&good, &wrong, EXT)),
            vec![Reason::ContentLength]
        );

        // One field left private: only a=rtcp.
        let partial = fix_cl(&text.replace(
            "a=rtcp:10001 IN IP4 198.51.100.1",
            "a=rtcp:10001 IN IP4 10.0.0.2",
        ));
        assert_ne!(partial, text);
        let partial = frame_with(&good, &partial, EXT);
        let (r, field, _) = checked(verify(&partial, &e));
        assert_eq!(
            r.iter().collect::<Vec<_>>(),
            vec![Reason::PrivateLeft, Reason::ExternalMissing]
        );
        assert_eq!(field, Some(CheckedField::Rtcp));
    }

    #[test]
    fn foreign_frames_are_not_verified() {
        let t = template(Builtin::Options);
        let e = expect(&t);
        assert_eq!(verify(&[0u8; 10], &e), Verdict::Foreign);
        // A SIP packet without the generator's header.
        let text = String::from_utf8_lossy(&t.frame[42..]);
        let cut = text.find("X-Sipnat-Ts").unwrap();
        let mut f = t.frame[..42 + cut].to_vec();
        f.extend_from_slice(b"\r\n");
        assert_eq!(verify(&f, &e), Verdict::Foreign);
    }

    #[test]
    fn address_fields_are_found() {
        let m = b"INVITE sip:b@1.2.3.4 SIP/2.0\r\nv: SIP/2.0/UDP [2001:db8::1]:5060;branch=x\r\nVia: SIP/2.0/UDP 10.9.9.9\r\nm: <sip:a@10.0.0.5:5070>, \"B\" <sips:[2001:db8::2]>;q=1\r\n\r\nv=0\r\no=- 1 1 IN IP4 10.0.0.6\r\nc=IN IP4 224.2.1.1/127\r\na=rtcp:9 IN IP4 10.0.0.7\r\n";
        let v: Vec<(CheckedField, String)> = address_fields(m)
            .into_iter()
            .map(|(f, a)| (f, a.to_string()))
            .collect();
        assert_eq!(
            v,
            vec![
                (CheckedField::Via, "2001:db8::1".into()),
                (CheckedField::Contact, "10.0.0.5".into()),
                (CheckedField::Contact, "2001:db8::2".into()),
                (CheckedField::SdpO, "10.0.0.6".into()),
                (CheckedField::SdpC, "224.2.1.1".into()),
                (CheckedField::Rtcp, "10.0.0.7".into()),
            ]
        );
    }

    /// With media NAT on, the SDP ports must be an allocated pair of the range: the
    /// template's own ports fail, an even/odd pair of the range passes, an odd, an
    /// out-of-range or a split pair fails; a section of another address is not checked.
    #[test]
    fn media_ports_are_checked_against_the_media_range() {
        let t = template(Builtin::Invite);
        let mut f = t.frame.clone();
        t.patch(&mut f, 3, 0, 7, 1);
        let e = Expect {
            media: Some(PortRange::parse("30000-39999").unwrap()),
            ..expect(&t)
        };
        let good = rewrite_by_hand(&f);
        let text = text_of(&good);
        let m = text.lines().find(|l| l.starts_with("m=audio")).unwrap();
        let port: u16 = m.split(' ').nth(1).unwrap().parse().unwrap();
        let reasons_with = |t: &str, e: &Expect| {
            checked(verify(&frame_with(&good, &fix_cl(t), EXT), e))
                .0
                .iter()
                .collect::<Vec<_>>()
        };
        let reasons = |t: &str| reasons_with(t, &e);
        // The template's ports, kept: not an allocated pair.
        assert!(!(30000..40000).contains(&port), "template port {port}");
        assert_eq!(reasons(&text), vec![Reason::MediaPort]);
        let with = |m: u16, rtcp: u16| {
            text.replace(&format!("m=audio {port} "), &format!("m=audio {m} "))
                .replace(&format!("a=rtcp:{} ", port + 1), &format!("a=rtcp:{rtcp} "))
        };
        assert_eq!(reasons(&with(30002, 30003)), vec![]);
        assert_eq!(reasons(&with(39998, 39999)), vec![]);
        assert_eq!(reasons(&with(30003, 30004)), vec![Reason::MediaPort]);
        assert_eq!(reasons(&with(40000, 40001)), vec![Reason::MediaPort]);
        assert_eq!(reasons(&with(30002, 30005)), vec![Reason::MediaPort]);
        // Media of another (public) address keeps its ports: not checked.
        let other = |s: &str| s.replace("IN IP4 198.51.100.1\r\nt=", "IN IP4 203.0.113.9\r\nt=");
        let public = other(&text);
        assert_ne!(public, text);
        assert!(media_ports_ok(
            public.as_bytes(),
            e.media.unwrap(),
            e.external
        ));
        // Media off (no range): ports are not checked.
        let off = Expect {
            media: None,
            ..e.clone()
        };
        assert_eq!(reasons_with(&text, &off), vec![]);
    }
}
