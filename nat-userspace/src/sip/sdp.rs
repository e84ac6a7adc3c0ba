//! SDP (RFC 8866) lines that carry addresses or ports: `c=` (session and media level,
//! also when its address is a name: it still says whose the stream is), `o=`,
//! `a=rtcp:PORT [IN IP4 ADDR]` and `m=` ports. Everything else — `a=candidate`
//! included — is never reported, so never touched. Line endings are whatever the body
//! has (CRLF or LF); nothing here changes them.

use core::{net::IpAddr, ops::Range};

use super::addr::{parse_ipv4, parse_ipv6};
use super::scan::{line_end, port_at};

/// Which SDP field an item comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SdpLine {
    Connection,
    Origin,
    Rtcp,
    Media,
}

/// An address in an SDP line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdpAddr {
    pub range: Range<usize>,
    pub addr: IpAddr,
    /// The line's addrtype is `IP6` (the written address must be IPv6 text).
    pub ip6: bool,
}

/// One address- or port-bearing item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub field: SdpLine,
    pub addr: Option<SdpAddr>,
    pub port: Option<(u16, Range<usize>)>,
    /// The line names an address that is not an IP literal (a host name, another address
    /// type, junk): `addr` is `None`, yet the line has an address, and it is not ours.
    pub other_addr: bool,
    /// Inside a media section whose `m=` port is 0 (a rejected stream): leave it alone.
    pub rejected: bool,
}

/// Iterates the items of the SDP body in `[start, end)`.
pub fn items(buf: &[u8], start: usize, end: usize) -> impl Iterator<Item = Item> + '_ {
    let mut pos = start;
    let mut rejected = false;
    core::iter::from_fn(move || {
        while pos < end {
            let (ce, next) = line_end(buf, pos, end);
            let line = pos..ce;
            pos = next;
            let item = line_item(buf, line, &mut rejected);
            if item.is_some() {
                return item;
            }
        }
        None
    })
}

/// The item of one SDP line (without its line break), if it has one. `rejected`: whether
/// the current media section is rejected; an `m=` line sets it for the lines after it.
#[inline]
pub fn line_item(buf: &[u8], line: Range<usize>, rejected: &mut bool) -> Option<Item> {
    if line.len() < 2 || buf[line.start + 1] != b'=' {
        return None;
    }
    let v = line.start + 2..line.end;
    match buf[line.start] {
        b'c' => {
            let addr = conn(buf, v);
            Some(Item {
                field: SdpLine::Connection,
                other_addr: addr.is_none(),
                addr,
                port: None,
                rejected: *rejected,
            })
        }
        b'o' => origin(buf, v).map(|addr| Item {
            field: SdpLine::Origin,
            addr: Some(addr),
            port: None,
            other_addr: false,
            rejected: false,
        }),
        b'm' => {
            let port = media_port(buf, v);
            *rejected = port.as_ref().is_some_and(|(p, _)| *p == 0);
            port.map(|p| Item {
                field: SdpLine::Media,
                addr: None,
                port: Some(p),
                other_addr: false,
                rejected: *rejected,
            })
        }
        b'a' if buf[v.clone()].starts_with(b"rtcp:") => rtcp(buf, v.start + 5..v.end, *rejected),
        _ => None,
    }
}

/// Splits `[start, end)` at single spaces (SDP uses exactly one SP between fields).
fn fields(buf: &[u8], r: Range<usize>) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut p = r.start;
    core::iter::from_fn(move || {
        while p < r.end && buf[p] == b' ' {
            p += 1;
        }
        if p >= r.end {
            return None;
        }
        let s = p;
        while p < r.end && buf[p] != b' ' {
            p += 1;
        }
        Some(s..p)
    })
}

/// `nettype addrtype address` at the start of `tokens`: the address (IP literals only).
fn typed_addr(
    buf: &[u8],
    nettype: Range<usize>,
    addrtype: Range<usize>,
    addr: Range<usize>,
) -> Option<SdpAddr> {
    if !buf[nettype].eq_ignore_ascii_case(b"IN") {
        return None;
    }
    let t = &buf[addrtype];
    // c= may carry /ttl[/count] after a multicast address: the address ends at '/'.
    let a_end = buf[addr.clone()]
        .iter()
        .position(|&b| b == b'/')
        .map_or(addr.end, |i| addr.start + i);
    let text = &buf[addr.start..a_end];
    if t.eq_ignore_ascii_case(b"IP4") {
        parse_ipv4(text).map(|a| SdpAddr {
            range: addr.start..a_end,
            addr: IpAddr::V4(a),
            ip6: false,
        })
    } else if t.eq_ignore_ascii_case(b"IP6") {
        parse_ipv6(text).map(|a| SdpAddr {
            range: addr.start..a_end,
            addr: IpAddr::V6(a),
            ip6: true,
        })
    } else {
        None
    }
}

/// `c=IN IP4 addr[/ttl]` (junk after the address is tolerated and kept).
fn conn(buf: &[u8], v: Range<usize>) -> Option<SdpAddr> {
    let mut f = fields(buf, v);
    let (n, t, a) = (f.next()?, f.next()?, f.next()?);
    typed_addr(buf, n, t, a)
}

/// `o=user sess-id sess-version IN IP4 addr`: the last three fields (robust to a missing
/// or space-containing leading field).
fn origin(buf: &[u8], v: Range<usize>) -> Option<SdpAddr> {
    // Read backwards: the leading fields (user, ids) are long and of no interest.
    let mut f = fields_rev(buf, v);
    let (a, t, n) = (f.next()?, f.next()?, f.next()?);
    typed_addr(buf, n, t, a)
}

/// [`fields`] from the end.
fn fields_rev(buf: &[u8], r: Range<usize>) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut p = r.end;
    core::iter::from_fn(move || {
        while p > r.start && buf[p - 1] == b' ' {
            p -= 1;
        }
        if p <= r.start {
            return None;
        }
        let e = p;
        while p > r.start && buf[p - 1] != b' ' {
            p -= 1;
        }
        Some(p..e)
    })
}

/// `m=media port[/count] proto fmt...`: the port digits (not the `/count`).
fn media_port(buf: &[u8], v: Range<usize>) -> Option<(u16, Range<usize>)> {
    let mut f = fields(buf, v);
    let _media = f.next()?;
    let p = f.next()?;
    let (port, pe) = port_at(buf, p.start, p.end)?;
    (pe == p.end || buf[pe] == b'/').then_some((port, p.start..pe))
}

/// `a=rtcp:port [IN IP4 addr]` (RFC 3605).
fn rtcp(buf: &[u8], v: Range<usize>, rejected: bool) -> Option<Item> {
    let mut f = fields(buf, v);
    let p = f.next()?;
    let (port, pe) = port_at(buf, p.start, p.end)?;
    if pe != p.end {
        return None;
    }
    // Anything after the port is an address (`IN IP4 addr`), IP literal or not.
    let rest = (f.next(), f.next(), f.next());
    let named = rest.0.is_some();
    let addr = match rest {
        (Some(n), Some(t), Some(a)) => typed_addr(buf, n, t, a),
        _ => None,
    };
    Some(Item {
        field: SdpLine::Rtcp,
        other_addr: named && addr.is_none(),
        addr,
        port: Some((port, p.start..pe)),
        rejected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_addresses_and_ports() {
        let sdp = b"v=0\r\no=alice 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2/127\r\nt=0 0\r\n\
m=audio 20000/2 RTP/AVP 0\r\na=rtcp:20001 IN IP4 10.0.0.2\r\na=candidate:1 1 UDP 1 10.0.0.2 20000 typ host\r\n\
m=video 0 RTP/AVP 96\r\nc=IN IP4 10.0.0.2\r\nm=audio 30000 RTP/AVP 0\r\nc=IN IP6 ::ffff:10.0.0.2\r\n";
        let it: Vec<Item> = items(sdp, 0, sdp.len()).collect();
        let fields: Vec<(SdpLine, bool)> = it.iter().map(|i| (i.field, i.rejected)).collect();
        assert_eq!(
            fields,
            vec![
                (SdpLine::Origin, false),
                (SdpLine::Connection, false),
                (SdpLine::Media, false),
                (SdpLine::Rtcp, false),
                (SdpLine::Media, true),
                (SdpLine::Connection, true),
                (SdpLine::Media, false),
                (SdpLine::Connection, false),
            ]
        );
        assert_eq!(
            &sdp[it[1].addr.as_ref().unwrap().range.clone()],
            b"10.0.0.2"
        );
        assert_eq!(&sdp[it[2].port.as_ref().unwrap().1.clone()], b"20000");
        assert!(it[7].addr.as_ref().unwrap().ip6);
    }

    #[test]
    fn tolerates_odd_lines() {
        // Junk after the address (kamailio sg.sip), an o= with a missing field, FQDN, hold.
        let sdp = b"o=- 1 IN IP4 10.0.0.2\nc=IN IP4 10.0.0.9 UNHOLD UNHOLD\nc=IN IP4 host.example\nc=IN IP4 0.0.0.0\n";
        let it: Vec<Item> = items(sdp, 0, sdp.len()).collect();
        assert_eq!(it.len(), 4);
        assert_eq!(
            &sdp[it[1].addr.as_ref().unwrap().range.clone()],
            b"10.0.0.9"
        );
        // The c= with a name is reported (it says whose the stream is), without an address.
        assert_eq!(it[2].field, SdpLine::Connection);
        assert!(it[2].addr.is_none() && it[2].other_addr);
        assert!(!it[3].other_addr);
        // a=rtcp with and without an address of its own.
        let sdp = b"m=audio 1 RTP/AVP 0\na=rtcp:9 IN IP4 rtcp.example\na=rtcp:9\na=rtcp:9 IN IP4 10.0.0.2\n";
        let it: Vec<(bool, bool)> = items(sdp, 0, sdp.len())
            .skip(1)
            .map(|i| (i.addr.is_some(), i.other_addr))
            .collect();
        assert_eq!(it, vec![(false, true), (false, false), (true, false)]);
    }
}
