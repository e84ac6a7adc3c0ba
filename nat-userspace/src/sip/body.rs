//! Body types and `multipart/*` bodies (RFC 2046): parts are found by the real boundary
//! (never by splitting on `--`), each part's own headers name its type, and a part's
//! content ends before the line break that precedes the next delimiter.

use core::ops::Range;

use super::{
    message::{header, Kind},
    scan::{line_end, trim_end},
    uri::params,
};

/// What a body (or body part) is, for the rewriter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/sdp`.
    Sdp,
    /// `multipart/*` (not signed/encrypted) with its boundary.
    Multipart { boundary: Range<usize> },
    /// Signed or encrypted (`multipart/signed`, `multipart/encrypted`,
    /// `application/pkcs7-mime`): never touched — rewriting would break it.
    Protected,
    /// Anything else (ISUP, text, ...): never touched.
    Other,
}

/// Classifies a Content-Type value.
pub fn kind(buf: &[u8], v: Range<usize>) -> BodyKind {
    let semi = memchr::memchr(b';', &buf[v.clone()]).map_or(v.end, |i| v.start + i);
    let mt = &buf[v.start..trim_end(buf, v.start, semi)];
    let eq = |s: &[u8]| mt.eq_ignore_ascii_case(s);
    if eq(b"application/sdp") {
        return BodyKind::Sdp;
    }
    if eq(b"multipart/signed") || eq(b"multipart/encrypted") || eq(b"application/pkcs7-mime") {
        return BodyKind::Protected;
    }
    if mt.len() > 10 && mt[..10].eq_ignore_ascii_case(b"multipart/") {
        for (n, val) in params(buf, semi, v.end) {
            if buf[n].eq_ignore_ascii_case(b"boundary") {
                let mut b = val;
                if b.len() >= 2 && buf[b.start] == b'"' && buf[b.end - 1] == b'"' {
                    b = b.start + 1..b.end - 1;
                }
                if !b.is_empty() && b.len() <= 70 {
                    return BodyKind::Multipart { boundary: b };
                }
            }
        }
    }
    BodyKind::Other
}

/// One body part: its content range and kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub content: Range<usize>,
    pub kind: BodyKind,
}

/// Finds `--boundary` at a line start in `[from, end)`: `(delimiter start, line break
/// start before it)`.
fn delimiter(buf: &[u8], from: usize, end: usize, boundary: &[u8]) -> Option<(usize, usize)> {
    if boundary.is_empty() {
        return None;
    }
    let mut p = from;
    while p < end {
        let i = p + memchr::memmem::find(&buf[p..end], boundary)?;
        let a = i + boundary.len();
        // `--boundary` must be followed by `--`, whitespace or the line end: `--b1x` is not
        // the delimiter of boundary `b1`.
        let whole = a >= end || matches!(buf[a], b'-' | b' ' | b'\t' | b'\r' | b'\n');
        let Some(d) = i.checked_sub(2) else {
            p = i + 1;
            continue;
        };
        if whole && d >= from && buf[d] == b'-' && buf[d + 1] == b'-' {
            if d == from && (d == 0 || buf[d - 1] == b'\n' || buf[d - 1] == b'\r') {
                return Some((d, d));
            }
            if d > 0 && buf[d - 1] == b'\n' {
                let brk = if d >= 2 && buf[d - 2] == b'\r' {
                    d - 2
                } else {
                    d - 1
                };
                return Some((d, brk));
            }
        }
        p = i + 1;
    }
    None
}

/// Iterates the parts of a multipart body `[start, end)` with `boundary` (a range of
/// `buf`, copied locally so the iterator borrows nothing mutable).
pub fn parts(
    buf: &[u8],
    start: usize,
    end: usize,
    boundary: Range<usize>,
) -> impl Iterator<Item = Part> + '_ {
    let bnd = &buf[boundary];
    let mut pos = delimiter(buf, start, end, bnd).map(|(d, _)| d);
    core::iter::from_fn(move || {
        let d = pos?;
        // The delimiter line: `--boundary` then `--` (close) or transport padding.
        let after = d + 2 + bnd.len();
        if buf.get(after..after + 2) == Some(b"--") {
            pos = None;
            return None;
        }
        let (_, part_start) = line_end(buf, after, end);
        let (next_d, content_end) = match delimiter(buf, part_start, end, bnd) {
            Some((nd, brk)) => (Some(nd), brk),
            None => (None, end),
        };
        pos = next_d;
        // Part headers, then an empty line, then the content.
        let mut p = part_start;
        let mut kind = BodyKind::Other;
        let mut encoded = false;
        let content_start = loop {
            match header(&buf[..content_end], p) {
                Ok(Some((h, n))) => {
                    if h.kind == Kind::ContentType {
                        kind = self::kind(buf, h.value.clone());
                    } else if buf[h.name.clone()].eq_ignore_ascii_case(b"content-transfer-encoding")
                    {
                        let v = &buf[h.value.clone()];
                        encoded = !(v.eq_ignore_ascii_case(b"7bit")
                            || v.eq_ignore_ascii_case(b"8bit")
                            || v.eq_ignore_ascii_case(b"binary"));
                    }
                    p = n;
                }
                Err(Ok(body)) => break body,
                // No blank line: not a well-formed part; treat all of it as opaque content.
                _ => break part_start,
            }
        };
        if encoded {
            kind = BodyKind::Other;
        }
        Some(Part {
            content: content_start.min(content_end)..content_end,
            kind,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let ct = |s: &[u8]| kind(s, 0..s.len());
        assert_eq!(ct(b"application/SDP"), BodyKind::Sdp);
        assert_eq!(ct(b"application/sdp;charset=utf-8"), BodyKind::Sdp);
        assert_eq!(ct(b"multipart/signed;boundary=x"), BodyKind::Protected);
        assert_eq!(
            ct(b"multipart/mixed; boundary=\"unique-boundary-1\""),
            BodyKind::Multipart { boundary: 27..44 }
        );
        assert_eq!(ct(b"application/isup"), BodyKind::Other);
    }

    #[test]
    fn parts_by_real_boundary() {
        let body =
            b"--b1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\nc=IN IP4 10.0.0.1\r\n--b1x\r\n\
\r\n--b1\r\nContent-Type: application/isup\r\n\r\n\x00\x01--\r\n--b1--\r\n";
        let ps: Vec<Part> = parts(body, 0, body.len(), 0..0).collect();
        assert!(ps.is_empty(), "empty boundary never matches");
        let mut buf = body.to_vec();
        buf.extend_from_slice(b"b1");
        let bnd = body.len()..body.len() + 2;
        let ps: Vec<Part> = parts(&buf, 0, body.len(), bnd).collect();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].kind, BodyKind::Sdp);
        // `--b1x` is not our delimiter: it stays inside the first part's content.
        assert_eq!(
            &buf[ps[0].content.clone()],
            b"v=0\r\nc=IN IP4 10.0.0.1\r\n--b1x\r\n"
        );
        assert_eq!(ps[1].kind, BodyKind::Other);
        assert_eq!(&buf[ps[1].content.clone()], b"\x00\x01--");
    }
}
