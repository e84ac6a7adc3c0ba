//! Locating `host[:port]` inside header values: SIP URIs (`sip:`/`sips:`, user part, IPv6
//! in brackets, port, params), name-addr vs addr-spec, comma-separated value lists, Via
//! sent-by and Via params (`received` may be an unbracketed IPv6 address, RFC 5118).
//!
//! Only hosts that are IP literals are returned: names are never rewritten. A host is
//! always a whole token: `192.168.1.10` never matches inside `192.168.1.100`.

use core::{net::IpAddr, ops::Range};

use super::addr::{parse_ipv4, parse_ipv4_prefix, parse_ipv6};
use super::scan::{find_unquoted, is_host_char, is_lws, port_at, skip_lws, trim_end};

/// An IP host (and port) found in the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// The host text, brackets included when present.
    pub host: Range<usize>,
    pub addr: IpAddr,
    pub bracketed: bool,
    /// Explicit port and its digits.
    pub port: Option<(u16, Range<usize>)>,
}

impl HostPort {
    /// End of the host[:port] text.
    pub fn end(&self) -> usize {
        self.port.as_ref().map_or(self.host.end, |(_, r)| r.end)
    }
}

/// Parses an IP host at `pos` (bracketed IPv6, IPv4, or — when `bare_v6` — an unbracketed
/// IPv6 token as in `received=`), followed by an optional `:port`.
pub fn host_port_at(buf: &[u8], pos: usize, end: usize, bare_v6: bool) -> Option<HostPort> {
    if pos >= end {
        return None;
    }
    let (host, addr, bracketed) = if buf[pos] == b'[' {
        let close = pos + memchr::memchr(b']', &buf[pos..end])?;
        let a = parse_ipv6(&buf[pos + 1..close])?;
        (pos..close + 1, IpAddr::V6(a), true)
    } else if let Some((a, n)) = parse_ipv4_prefix(&buf[pos..end])
        .filter(|&(_, n)| !bare_v6 && (pos + n == end || !is_host_char(buf[pos + n])))
    {
        // The common case, parsed in one pass: an IPv4 literal that is a whole token.
        (pos..pos + n, IpAddr::V4(a), false)
    } else {
        let mut e = pos;
        while e < end && is_host_char(buf[e]) {
            e += 1;
        }
        if bare_v6 && e < end && buf[e] == b':' {
            let mut e6 = pos;
            while e6 < end && (buf[e6].is_ascii_hexdigit() || buf[e6] == b':' || buf[e6] == b'.') {
                e6 += 1;
            }
            let a = parse_ipv6(&buf[pos..e6])?;
            return Some(HostPort {
                host: pos..e6,
                addr: IpAddr::V6(a),
                bracketed: false,
                port: None,
            });
        }
        let a = parse_ipv4(&buf[pos..e])?;
        (pos..e, IpAddr::V4(a), false)
    };
    let mut port = None;
    let mut p = host.end;
    // `host : port` — whitespace around the colon is tolerated in Via sent-by.
    let q = skip_lws(buf, p, end);
    if q < end && buf[q] == b':' {
        p = skip_lws(buf, q + 1, end);
        if let Some((v, pe)) = port_at(buf, p, end) {
            port = Some((v, p..pe));
        }
    }
    Some(HostPort {
        host,
        addr,
        bracketed,
        port,
    })
}

/// A SIP or SIPS URI's parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipUri {
    /// The host when it is an IP literal (host names are never rewritten).
    pub host: Option<HostPort>,
    /// `sips:` (default port 5061 instead of 5060).
    pub secure: bool,
    /// The `;param` region after host[:port], up to the `?headers` or the end. In an
    /// addr-spec header value (no angle brackets) it runs on into the header params.
    pub params: Range<usize>,
}

/// A SIP or SIPS URI in `[start, end)`. Other schemes (tel:, mailto:, ...) give `None`.
pub fn sip_uri(buf: &[u8], start: usize, end: usize) -> Option<SipUri> {
    let s = skip_lws(buf, start, end);
    let (secure, after) = if buf.len() >= s + 4 && buf[s..s + 4].eq_ignore_ascii_case(b"sip:") {
        (false, s + 4)
    } else if buf.len() >= s + 5 && buf[s..s + 5].eq_ignore_ascii_case(b"sips:") {
        (true, s + 5)
    } else {
        return None;
    };
    if after > end {
        return None;
    }
    // Quotes and '>' are never inside a URI: the '@' search stops there.
    let region_end = memchr::memchr2(b'"', b'>', &buf[after..end]).map_or(end, |i| after + i);
    let host_start = match memchr::memchr(b'@', &buf[after..region_end]) {
        Some(i) => after + i + 1,
        None => after,
    };
    let host_start = skip_lws(buf, host_start, region_end);
    let host = host_port_at(buf, host_start, region_end, false);
    let host_end = match &host {
        Some(h) => h.end(),
        None => {
            // A host name (or something unparsable): skip it and a port.
            let mut e = host_start;
            if e < region_end && buf[e] == b'[' {
                e = memchr::memchr(b']', &buf[e..region_end]).map_or(region_end, |i| e + i + 1);
            } else {
                while e < region_end && is_host_char(buf[e]) {
                    e += 1;
                }
            }
            if e < region_end && buf[e] == b':' {
                e = port_at(buf, e + 1, region_end).map_or(e, |(_, pe)| pe);
            }
            e
        }
    };
    let params_end =
        memchr::memchr(b'?', &buf[host_end..region_end]).map_or(region_end, |i| host_end + i);
    Some(SipUri {
        host,
        secure,
        params: host_end..params_end,
    })
}

/// A SIP or SIPS URI in `[start, end)`: its IP host, and whether it is `sips:`.
/// Other schemes (tel:, mailto:, ...) and host names give `None`.
pub fn sip_uri_host(buf: &[u8], start: usize, end: usize) -> Option<(HostPort, bool)> {
    let u = sip_uri(buf, start, end)?;
    u.host.map(|h| (h, u.secure))
}

/// The IP address that is the whole value of a host-only parameter (`maddr=`,
/// `received=`): IPv4, or IPv6 with or without brackets. Never a port.
pub fn param_host(buf: &[u8], value: Range<usize>) -> Option<HostPort> {
    let hp = host_port_at(buf, value.start, value.end, true)?;
    (hp.port.is_none() && hp.host.end == value.end).then_some(hp)
}

/// The next comma-separated value in `[pos, end)` (commas inside quotes or `<>` do not
/// split): `(value range trimmed, next position)`; `None` at the end.
pub fn next_value(buf: &[u8], pos: usize, end: usize) -> Option<(Range<usize>, usize)> {
    let start = skip_lws(buf, pos, end);
    if start >= end {
        return None;
    }
    // Jumps between the bytes that matter instead of walking every byte: outside quotes
    // and brackets only `"`, `<` and `,`; inside `<...>` only `>` and `"`; inside quotes
    // only `\` and `"`.
    let mut i = start;
    let mut in_quotes = false;
    let mut in_angle = false;
    while i < end {
        let hay = &buf[i..end];
        let found = if in_quotes {
            memchr::memchr2(b'\\', b'"', hay)
        } else if in_angle {
            memchr::memchr2(b'>', b'"', hay)
        } else {
            memchr::memchr3(b'"', b'<', b',', hay)
        };
        let Some(off) = found else {
            i = end;
            break;
        };
        i += off;
        let c = buf[i];
        if in_quotes {
            if c == b'\\' {
                i += 1;
            } else {
                in_quotes = false;
            }
        } else {
            match c {
                b'"' => in_quotes = true,
                b'<' => in_angle = true,
                b'>' => in_angle = false,
                _ => break, // ',' outside brackets
            }
        }
        i += 1;
    }
    let v_end = trim_end(buf, start, i.min(end));
    Some((start..v_end, (i + 1).min(end).max(i.min(end))))
}

/// The URI inside a name-addr (`"Name" <uri>;params`) or addr-spec (`uri;params`) value.
pub fn value_uri(buf: &[u8], v: Range<usize>) -> Range<usize> {
    match find_unquoted(buf, v.start, v.end, b"<") {
        Some(lt) => {
            let gt = memchr::memchr(b'>', &buf[lt..v.end]).map_or(v.end, |i| lt + i);
            lt + 1..gt
        }
        None => v,
    }
}

/// The top Via value's parts: sent-by and the params region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via {
    pub sent_by: Option<HostPort>,
    /// Whether the transport is TLS (default port 5061 instead of 5060).
    pub tls: bool,
    /// `;param=value` region after sent-by, up to the end of this Via value.
    pub params: Range<usize>,
}

/// Parses one Via value (`SIP / 2.0 / UDP host:port;params`) in `v`.
pub fn via(buf: &[u8], v: Range<usize>) -> Option<Via> {
    // sent-protocol: name SLASH version SLASH transport (LWS allowed around slashes).
    let mut p = v.start;
    for _ in 0..2 {
        p += memchr::memchr(b'/', &buf[p..v.end])? + 1;
    }
    p = skip_lws(buf, p, v.end);
    let t_start = p;
    while p < v.end && buf[p].is_ascii_alphanumeric() {
        p += 1;
    }
    let tls = buf[t_start..p].eq_ignore_ascii_case(b"TLS");
    p = skip_lws(buf, p, v.end);
    let sent_by = host_port_at(buf, p, v.end, false);
    let after = match &sent_by {
        Some(h) => h.end(),
        None => p,
    };
    let params_start = memchr::memchr(b';', &buf[after..v.end]).map_or(v.end, |i| after + i);
    Some(Via {
        sent_by,
        tls,
        params: params_start..v.end,
    })
}

/// Iterates `;name=value` params in `[start, end)`: `(name, value)` ranges, value empty
/// for flags (`;rport`).
pub fn params(
    buf: &[u8],
    start: usize,
    end: usize,
) -> impl Iterator<Item = (Range<usize>, Range<usize>)> + '_ {
    let mut pos = start;
    core::iter::from_fn(move || {
        while pos < end {
            let semi = pos + memchr::memchr(b';', &buf[pos..end])?;
            let n_start = skip_lws(buf, semi + 1, end);
            let next = find_unquoted(buf, n_start, end, b";").unwrap_or(end);
            pos = next;
            let eq = memchr::memchr(b'=', &buf[n_start..next]).map(|i| n_start + i);
            let n_end = trim_end(buf, n_start, eq.unwrap_or(next));
            let value = match eq {
                Some(e) => {
                    let vs = skip_lws(buf, e + 1, next);
                    vs..trim_end(buf, vs, next)
                }
                None => next..next,
            };
            if n_end > n_start {
                return Some((n_start..n_end, value));
            }
        }
        None
    })
}

/// True when `[start, end)` has only LWS.
pub fn is_blank(buf: &[u8], start: usize, end: usize) -> bool {
    buf[start..end].iter().all(|&b| is_lws(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(buf: &[u8], h: &HostPort) -> Vec<u8> {
        buf[h.host.clone()].to_vec()
    }

    #[test]
    fn uri_hosts() {
        let b = b"sip:alice@10.0.0.5:5070;transport=udp";
        let (h, secure) = sip_uri_host(b, 0, b.len()).unwrap();
        assert!(!secure);
        assert_eq!(host(b, &h), b"10.0.0.5");
        assert_eq!(h.port.as_ref().unwrap().0, 5070);
        let b = b"SIPS:[2001:db8::10]:5061";
        let (h, secure) = sip_uri_host(b, 0, b.len()).unwrap();
        assert!(secure && h.bracketed);
        assert_eq!(host(b, &h), b"[2001:db8::10]");
        // user part with ';' and an escaped '@' (RFC 4475 semiuri)
        let b = b"sip:user;par=u%40example.net@192.0.2.1;maddr=x";
        assert_eq!(
            host(b, &sip_uri_host(b, 0, b.len()).unwrap().0),
            b"192.0.2.1"
        );
        // prefix collision and names
        let b = b"sip:a@192.168.1.100";
        assert_eq!(
            sip_uri_host(b, 0, b.len()).unwrap().0.addr,
            "192.168.1.100".parse::<IpAddr>().unwrap()
        );
        for none in [
            &b"sip:a@example.com"[..],
            b"tel:+1555",
            b"sip:a@10.0.0.1.example.com",
            b"sip:[2001:db8::10:5070",
        ] {
            assert!(
                sip_uri_host(none, 0, none.len()).is_none(),
                "{:?}",
                core::str::from_utf8(none)
            );
        }
        // RFC 5118 port-ambiguous: the "port" is inside the brackets
        let b = b"sip:[2001:db8::10:5070]";
        let (h, _) = sip_uri_host(b, 0, b.len()).unwrap();
        assert!(h.port.is_none());
    }

    #[test]
    fn ipv4_hosts_are_whole_tokens() {
        let host = |t: &[u8], bare_v6: bool| host_port_at(t, 0, t.len(), bare_v6).map(|h| h.addr);
        let v4 = |s: &str| Some(IpAddr::V4(s.parse().unwrap()));
        assert_eq!(host(b"10.0.0.1", false), v4("10.0.0.1"));
        assert_eq!(host(b"10.0.0.1>", false), v4("10.0.0.1"));
        assert_eq!(host(b"10.0.0.1;lr", false), v4("10.0.0.1"));
        // Names that start like an address are names.
        assert_eq!(host(b"10.0.0.1.example.com", false), None);
        assert_eq!(host(b"10.0.0.1abc", false), None);
        assert_eq!(host(b"10.0.0.1-x", false), None);
        assert_eq!(host(b"10.0.0.1000", false), None);
        assert_eq!(host(b"10.0.0.256", false), None);
        assert_eq!(host(b"10.0.0", false), None);
        // The host ends at `end`, whatever follows in the buffer.
        assert_eq!(
            host_port_at(b"10.0.0.19", 0, 8, false).map(|h| h.host),
            Some(0..8)
        );
        // `received=` (bare IPv6 allowed): an IPv4 followed by a colon is not an address.
        assert_eq!(host(b"10.0.0.1:5060", true), None);
        assert_eq!(host(b"10.0.0.1", true), v4("10.0.0.1"));
        assert_eq!(
            host_port_at(b"10.0.0.1 : 5062", 0, 15, false).and_then(|h| h.port.map(|p| p.0)),
            Some(5062)
        );
    }

    #[test]
    fn values_and_name_addr() {
        let b = br#""A, B" <sip:a@10.0.0.1>;q=0.5, sip:b@10.0.0.2;expires=60 , <sip:c@h>"#;
        let mut pos = 0;
        let mut vals = Vec::new();
        while let Some((r, n)) = next_value(b, pos, b.len()) {
            vals.push(b[value_uri(b, r)].to_vec());
            pos = n;
        }
        assert_eq!(
            vals,
            vec![
                b"sip:a@10.0.0.1".to_vec(),
                b"sip:b@10.0.0.2;expires=60".to_vec(),
                b"sip:c@h".to_vec()
            ]
        );
    }

    #[test]
    fn via_parts() {
        let b = b"SIP / 2.0 / UDP 10.0.0.2 : 5062 ;branch=z9hG4bK1;received=2001:db8::9;maddr=[2001:db8::1]";
        let v = via(b, 0..b.len()).unwrap();
        let sb = v.sent_by.unwrap();
        assert_eq!(host(b, &sb), b"10.0.0.2");
        assert_eq!(sb.port.unwrap().0, 5062);
        let ps: Vec<(Vec<u8>, Vec<u8>)> = params(b, v.params.start, v.params.end)
            .map(|(n, v)| (b[n].to_vec(), b[v].to_vec()))
            .collect();
        assert_eq!(ps[1], (b"received".to_vec(), b"2001:db8::9".to_vec()));
        let r = host_port_at(b, ps[1].1.len(), 0, true);
        assert!(r.is_none());
        let rb = b"2001:db8::9:255";
        assert!(host_port_at(rb, 0, rb.len(), true).unwrap().port.is_none());
    }
}
