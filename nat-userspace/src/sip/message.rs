//! SIP message framing: what is not SIP at all, the start line, header lines (names
//! case-insensitive with compact forms, LWS before the colon, folded continuation lines),
//! and where the body is (Content-Length / `l:`; bytes past the declared length are not
//! body).

use core::ops::Range;

use super::scan::{is_ws, line_end, skip_ws, trim_end};

/// Why a datagram on a SIP port is not a SIP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotSip {
    /// Empty datagram.
    Empty,
    /// CRLF / whitespace / zero-byte keep-alive ("ping").
    KeepAlive,
    /// STUN message (RFC 8489 magic cookie), e.g. an ICE or NAT keep-alive binding.
    Stun,
    /// Anything else that does not start like SIP.
    Other,
}

/// Why a SIP message cannot be rewritten safely (it is forwarded unchanged or dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// The start line is neither `METHOD URI SIP/2.0` nor `SIP/2.0 CODE REASON`.
    BadStartLine,
    /// A SIP version other than 2.0.
    BadVersion,
    /// A header line without a colon, or a continuation line where no header precedes it.
    BadHeaderLine,
    /// Content-Length is not a number.
    BadContentLength,
    /// Two Content-Length headers.
    DuplicateContentLength,
    /// More rewritable addresses than the rewriter keeps edits for.
    TooManyAddresses,
}

impl Malformed {
    pub const ALL: [Malformed; 6] = [
        Malformed::BadStartLine,
        Malformed::BadVersion,
        Malformed::BadHeaderLine,
        Malformed::BadContentLength,
        Malformed::DuplicateContentLength,
        Malformed::TooManyAddresses,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Malformed::BadStartLine => "bad_start_line",
            Malformed::BadVersion => "bad_version",
            Malformed::BadHeaderLine => "bad_header_line",
            Malformed::BadContentLength => "bad_content_length",
            Malformed::DuplicateContentLength => "duplicate_content_length",
            Malformed::TooManyAddresses => "too_many_addresses",
        }
    }
}

impl NotSip {
    pub const ALL: [NotSip; 4] = [
        NotSip::Empty,
        NotSip::KeepAlive,
        NotSip::Stun,
        NotSip::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            NotSip::Empty => "empty",
            NotSip::KeepAlive => "keepalive",
            NotSip::Stun => "stun",
            NotSip::Other => "other",
        }
    }
}

/// The first line of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartLine {
    Request {
        method: Range<usize>,
        uri: Range<usize>,
    },
    Response {
        code: u16,
    },
}

/// Headers the rewriter cares about; everything else is `Other` and never touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Via,
    Contact,
    From,
    To,
    Route,
    RecordRoute,
    ContentLength,
    ContentType,
    ContentEncoding,
    CSeq,
    Other,
}

impl Kind {
    /// Header name → kind; case-insensitive, compact forms included (RFC 3261 §7.3.3).
    #[inline]
    pub fn of(name: &[u8]) -> Kind {
        Kind::classify(name, |name, lower| name.eq_ignore_ascii_case(lower))
    }

    /// [`Kind::of`] of a name made of token characters only (as [`header`] reads them),
    /// with word-wide compares: for token characters, setting bit 5 lowercases a letter
    /// and leaves `-`, digits and every other one off the lowercase letters, so OR-ing
    /// 0x20 and comparing with the lowercase name is the case-insensitive compare.
    #[inline]
    pub fn of_token(name: &[u8]) -> Kind {
        Kind::classify(name, |name, lower| {
            let n = name.len();
            let word = |b: &[u8], at: usize| {
                u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
                    | 0x2020_2020_2020_2020
            };
            if n >= 8 {
                // Two (overlapping) words cover 8 to 16 bytes.
                word(name, 0) == word(lower, 0) && word(name, n - 8) == word(lower, n - 8)
            } else {
                name.iter().zip(lower).all(|(&a, &b)| a | 0x20 == b)
            }
        })
    }

    /// The kind of `name`, `eq(name, lowercase name)` comparing names of equal length.
    #[inline(always)]
    fn classify(name: &[u8], eq: impl Fn(&[u8], &[u8]) -> bool) -> Kind {
        match name.len() {
            1 => match name[0].to_ascii_lowercase() {
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
}

/// One header (with its continuation lines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    /// The header name (without the colon and whitespace before it).
    pub name: Range<usize>,
    /// The value, from after the colon (and leading whitespace) to the end of the last
    /// continuation line (trailing whitespace trimmed). May contain folded line breaks.
    pub value: Range<usize>,
}

/// Datagrams that are certainly not SIP, recognised without parsing.
pub fn not_sip(msg: &[u8]) -> Option<NotSip> {
    if msg.is_empty() {
        return Some(NotSip::Empty);
    }
    if msg
        .iter()
        .all(|&b| matches!(b, b'\r' | b'\n' | b' ' | b'\t' | 0))
    {
        return Some(NotSip::KeepAlive);
    }
    // STUN: top two bits zero, length a multiple of 4, magic cookie 0x2112A442.
    if msg.len() >= 20 && msg[0] & 0xc0 == 0 && msg[4..8] == [0x21, 0x12, 0xa4, 0x42] {
        return Some(NotSip::Stun);
    }
    None
}

const VERSION: &[u8] = b"SIP/2.0";

/// Parses the start line. `Err(Ok(NotSip))` when the datagram does not look like SIP at
/// all, `Err(Err(Malformed))` when it looks like SIP but is broken.
#[allow(clippy::type_complexity)]
pub fn start_line(msg: &[u8]) -> Result<(StartLine, usize), Result<NotSip, Malformed>> {
    let (ce, next) = line_end(msg, 0, msg.len());
    let line = &msg[..ce];
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        // Status line: SIP-Version SP Status-Code SP Reason-Phrase
        if line.len() < 8 || !line[..7].eq_ignore_ascii_case(VERSION) || !is_ws(line[7]) {
            return Err(Err(Malformed::BadVersion));
        }
        let p = skip_ws(line, 7, line.len());
        let digits = &line[p..line.len().min(p + 3)];
        let more = line.get(p + 3).copied();
        if digits.len() != 3
            || !digits.iter().all(u8::is_ascii_digit)
            || more.is_some_and(|b| !is_ws(b))
        {
            return Err(Err(Malformed::BadStartLine));
        }
        let code = digits
            .iter()
            .fold(0u16, |a, d| a * 10 + u16::from(d - b'0'));
        if !(100..=699).contains(&code) {
            return Err(Err(Malformed::BadStartLine));
        }
        return Ok((StartLine::Response { code }, next));
    }
    // Request line: Method SP Request-URI SP SIP-Version (extra whitespace tolerated).
    let end = trim_end(line, 0, line.len());
    // The method: its token characters up to the first whitespace (a method is short:
    // one loop checks and ends it). Anything else before the first whitespace: not a
    // method, and where the whitespace is does not matter.
    let mut m_end = 0;
    while m_end < line.len() && is_token_char(line[m_end]) {
        m_end += 1;
    }
    let method_ok = m_end > 0 && m_end < line.len() && is_ws(line[m_end]);
    // The version's start: after the last whitespace before `end`. Usually the line
    // ends ` SIP/2.0` (no whitespace in its last 7 bytes): told with one compare, else
    // searched (memrchr: the request line is 40-100 bytes).
    let v_start = match line[..end].last_chunk::<8>() {
        Some(&[sp, v @ ..]) if is_ws(sp) && v.eq_ignore_ascii_case(VERSION) => end - 7,
        _ => memchr::memrchr2(b' ', b'\t', &line[..end]).map_or(0, |i| i + 1),
    };
    if !method_ok || m_end >= end || v_start <= m_end {
        return Err(if contains_ci(line, b"SIP/") {
            Err(Malformed::BadStartLine)
        } else {
            Ok(NotSip::Other)
        });
    }
    let version = &line[v_start..end];
    if !version.eq_ignore_ascii_case(VERSION) {
        return Err(
            if version.len() >= 4 && version[..4].eq_ignore_ascii_case(b"SIP/") {
                Err(Malformed::BadVersion)
            } else {
                Ok(NotSip::Other)
            },
        );
    }
    let u_start = skip_ws(line, m_end, end);
    let u_end = trim_end(line, u_start, v_start);
    if u_start >= u_end {
        return Err(Err(Malformed::BadStartLine));
    }
    Ok((
        StartLine::Request {
            method: 0..m_end,
            uri: u_start..u_end,
        },
        next,
    ))
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// RFC 3261 `token` characters: alphanumerics and `-.!%*_+`'~`.
static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        i += 1;
    }
    t
};

#[inline]
pub fn is_token_char(b: u8) -> bool {
    TOKEN[usize::from(b)]
}

/// Reads the header starting at `pos`. `Err(Ok(body_start))` at the empty line that ends
/// the headers — and at the end of the datagram when that line is missing (real UAs send
/// such messages; RFC 4475 baddn.dat): the body is then empty.
#[inline]
pub fn header(msg: &[u8], pos: usize) -> Result<Option<(Header, usize)>, Result<usize, Malformed>> {
    header_with(msg, pos, &Scanned(msg), Kind::of_token).map(Some)
}

/// Where a line ends: [`line_end`]'s answer for `(pos, end)`, read however the caller
/// can (the rewriter's fast path: from its index). A trait, not a closure, so that the
/// method can be forced inline into [`header_with`] (a closure called from two places
/// stayed an out-of-line call per header line).
pub trait LineEnds {
    fn line_end(&self, pos: usize, end: usize) -> (usize, usize);
}

/// [`LineEnds`] by scanning the message.
struct Scanned<'m>(&'m [u8]);

impl LineEnds for Scanned<'_> {
    #[inline(always)]
    fn line_end(&self, pos: usize, end: usize) -> (usize, usize) {
        line_end(self.0, pos, end)
    }
}

/// [`header`] with the caller's line ends (as [`line_end`] computes them) and name
/// classification (as [`Kind::of_token`]): the rewriter's fast path reads its line ends
/// from its index.
#[allow(clippy::type_complexity)]
#[inline(always)]
pub fn header_with(
    msg: &[u8],
    pos: usize,
    lines: &impl LineEnds,
    kind: impl Fn(&[u8]) -> Kind,
) -> Result<(Header, usize), Result<usize, Malformed>> {
    let end = msg.len();
    if pos >= end {
        return Err(Ok(end));
    }
    let (mut ce, mut next) = lines.line_end(pos, end);
    if ce == pos {
        // Empty line: end of headers; `next` is where the body starts.
        return Err(Ok(next));
    }
    // The name: token characters, then optional whitespace, then the colon. One pass, no
    // separate search for the colon (header names are short).
    let name_end = token_end(msg, pos, ce);
    let mut colon = name_end;
    while colon < ce && is_ws(msg[colon]) {
        colon += 1;
    }
    if name_end == pos || colon >= ce || msg[colon] != b':' {
        return Err(Err(Malformed::BadHeaderLine));
    }
    // Continuation lines (folding) belong to this header.
    while next < end && is_ws(msg[next]) {
        (ce, next) = lines.line_end(next, end);
    }
    let v_start = skip_ws(msg, colon + 1, ce);
    let v_end = trim_end(msg, v_start, ce).max(v_start);
    Ok((
        Header {
            kind: kind(&msg[pos..name_end]),
            name: pos..name_end,
            value: v_start..v_end,
        },
        next,
    ))
}

/// The end of the run of token characters at `i` (before `end`), four at a time.
#[inline(always)]
fn token_end(msg: &[u8], mut i: usize, end: usize) -> usize {
    while let Some(&[a, b, c, d]) = msg.get(i..end).and_then(|r| r.first_chunk::<4>()) {
        if !(is_token_char(a) & is_token_char(b) & is_token_char(c) & is_token_char(d)) {
            break;
        }
        i += 4;
    }
    while i < end && is_token_char(msg[i]) {
        i += 1;
    }
    i
}

/// Whether a header name is Call-ID (any case, or its compact form `i`).
#[inline]
pub fn is_call_id(name: &[u8]) -> bool {
    match name {
        [i] => *i | 0x20 == b'i',
        _ => name.eq_ignore_ascii_case(b"call-id"),
    }
}

/// The method of a CSeq value: its last token (`1 REGISTER`).
pub fn cseq_method(v: &[u8]) -> &[u8] {
    v.rsplit(|&b| is_ws(b) || b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(v)
}

/// Whether the first CSeq among the headers starting at `pos` names REGISTER. For
/// responses, whose Contact list means something else for REGISTER (the registrar's
/// bindings) and may come before CSeq. Stops at that CSeq; false when there is none or
/// a header line is broken (the caller's own pass reports that).
pub fn cseq_is_register(msg: &[u8], mut pos: usize) -> bool {
    while let Ok(Some((h, next))) = header(msg, pos) {
        if h.kind == Kind::CSeq {
            return cseq_method(&msg[h.value]).eq_ignore_ascii_case(b"REGISTER");
        }
        pos = next;
    }
    false
}

/// Parses a Content-Length value (leading zeros allowed).
pub fn content_length(v: &[u8]) -> Option<usize> {
    // One pass: each byte checked and added in the same step.
    match v.len() {
        1..=9 => v.iter().try_fold(0usize, |a, &c| {
            c.is_ascii_digit().then(|| a * 10 + usize::from(c - b'0'))
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_status_lines() {
        let (sl, next) = start_line(b"INVITE sip:a@10.0.0.1 SIP/2.0\r\nX: y").unwrap();
        assert_eq!(
            sl,
            StartLine::Request {
                method: 0..6,
                uri: 7..21
            }
        );
        assert_eq!(next, 31);
        let (sl, _) = start_line(b"SIP/2.0 200 OK\r\n").unwrap();
        assert_eq!(sl, StartLine::Response { code: 200 });
        let (sl, _) = start_line(b"SIP/2.0 100 \r\n").unwrap();
        assert_eq!(sl, StartLine::Response { code: 100 });
        // Extra whitespace tolerated (lwsstart / trws in RFC 4475).
        assert!(start_line(b"INVITE   sip:a@b   SIP/2.0 \r\n").is_ok());
        assert_eq!(
            start_line(b"INVITE sip:a@b SIP/7.0\r\n"),
            Err(Err(Malformed::BadVersion))
        );
        assert_eq!(
            start_line(b"SIP/2.0 4294967301 X\r\n"),
            Err(Err(Malformed::BadStartLine))
        );
        assert_eq!(start_line(b"hello"), Err(Ok(NotSip::Other)));
        assert_eq!(start_line(b"GET / HTTP/1.1\r\n"), Err(Ok(NotSip::Other)));
    }

    #[test]
    fn not_sip_kinds() {
        assert_eq!(not_sip(b""), Some(NotSip::Empty));
        assert_eq!(not_sip(b"\r\n\r\n"), Some(NotSip::KeepAlive));
        assert_eq!(not_sip(&[0, 0, 0, 0]), Some(NotSip::KeepAlive));
        let mut stun = [0u8; 20];
        stun[1] = 1;
        stun[4..8].copy_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        assert_eq!(not_sip(&stun), Some(NotSip::Stun));
        assert_eq!(not_sip(b"INVITE sip:x SIP/2.0\r\n"), None);
    }

    #[test]
    fn header_names_compact_lws_and_folding() {
        let m = b"v : SIP/2.0/UDP 10.0.0.1\r\n ;branch=z9\r\nCONTENT-length:  12 \r\n\r\nbody";
        let (h, n) = header(m, 0).unwrap().unwrap();
        assert_eq!(h.kind, Kind::Via);
        assert_eq!(&m[h.value.clone()], b"SIP/2.0/UDP 10.0.0.1\r\n ;branch=z9");
        let (h, n) = header(m, n).unwrap().unwrap();
        assert_eq!(h.kind, Kind::ContentLength);
        assert_eq!(&m[h.value.clone()], b"12");
        assert_eq!(header(m, n), Err(Ok(m.len() - 4)));
        assert_eq!(
            header(b"NoColon\r\n", 0),
            Err(Err(Malformed::BadHeaderLine))
        );
    }

    #[test]
    fn cseq_register_found_anywhere_in_the_headers() {
        assert_eq!(cseq_method(b"1 REGISTER"), b"REGISTER");
        assert_eq!(cseq_method(b"1\t INVITE"), b"INVITE");
        let m = b"SIP/2.0 200 OK\r\nContact: <sip:a@h>\r\nCSeq: 7 register\r\n\r\n";
        assert!(cseq_is_register(m, 16));
        let m = b"SIP/2.0 200 OK\r\nCSeq: 7 INVITE\r\nCSeq: 7 REGISTER\r\n\r\n";
        assert!(!cseq_is_register(m, 16), "the first CSeq decides");
        assert!(!cseq_is_register(b"SIP/2.0 200 OK\r\nX: y\r\n\r\n", 16));
        assert!(!cseq_is_register(b"SIP/2.0 200 OK\r\nbroken\r\n", 16));
    }

    #[test]
    fn kind_of_token_equals_kind_of() {
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
            assert_eq!(
                Kind::of_token(n),
                Kind::of(n),
                "{}",
                String::from_utf8_lossy(n)
            );
        }
        // Every token character in every position of every name's length.
        let tokens: Vec<u8> = (0..=255u8).filter(|&b| is_token_char(b)).collect();
        for n in names {
            for i in 0..n.len() {
                for &t in &tokens {
                    let mut v = n.to_vec();
                    v[i] = t;
                    assert_eq!(
                        Kind::of_token(&v),
                        Kind::of(&v),
                        "{}",
                        String::from_utf8_lossy(&v)
                    );
                }
            }
        }
    }

    #[test]
    fn kinds() {
        for (n, k) in [
            (&b"m"[..], Kind::Contact),
            (b"CONTACT", Kind::Contact),
            (b"l", Kind::ContentLength),
            (b"Record-Route", Kind::RecordRoute),
            (b"f", Kind::From),
            (b"X-Via", Kind::Other),
        ] {
            assert_eq!(Kind::of(n), k);
        }
    }
}
