//! Byte-level helpers for the SIP/SDP scanner: line ends (CRLF, LF, bare CR), linear
//! whitespace, tokens. Everything returns offsets into the message; nothing allocates.
//!
//! Hand-written (with memchr for the long searches) because this is the hot path: a general
//! parser would build header maps and strings per message; we only need to find a handful
//! of byte ranges and must never change a byte we do not rewrite.

/// The end of the line starting at `pos`: `(content_end, next_line_start)`. Accepts CRLF,
/// LF and bare CR as terminators (real traffic has all three), and `CR CR LF` as one
/// terminator (seen from real UAs; reading it as CR + empty line would end the headers
/// early). Without a terminator the line runs to `end` and `next == end`.
#[inline]
pub fn line_end(buf: &[u8], pos: usize, end: usize) -> (usize, usize) {
    match memchr::memchr2(b'\r', b'\n', &buf[pos..end]) {
        Some(i) => {
            let at = pos + i;
            if buf[at] == b'\n' {
                (at, at + 1)
            } else if at + 1 < end && buf[at + 1] == b'\n' {
                (at, at + 2)
            } else if at + 2 < end && buf[at + 1] == b'\r' && buf[at + 2] == b'\n' {
                (at, at + 3)
            } else {
                (at, at + 1)
            }
        }
        None => (end, end),
    }
}

#[inline]
pub fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Linear whitespace inside a header value: SP, HT, and the CR/LF of folded lines.
#[inline]
pub fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

#[inline]
pub fn skip_lws(buf: &[u8], mut pos: usize, end: usize) -> usize {
    while pos < end && is_lws(buf[pos]) {
        pos += 1;
    }
    pos
}

#[inline]
pub fn skip_ws(buf: &[u8], mut pos: usize, end: usize) -> usize {
    while pos < end && is_ws(buf[pos]) {
        pos += 1;
    }
    pos
}

/// Trims trailing LWS: the end of the meaningful text in `[start, end)`.
#[inline]
pub fn trim_end(buf: &[u8], start: usize, mut end: usize) -> usize {
    while end > start && is_lws(buf[end - 1]) {
        end -= 1;
    }
    end
}

/// Characters of a host name or IPv4 literal.
#[inline]
pub fn is_host_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'-'
}

/// Parses a run of 1-5 ASCII digits at `pos` as a port; `(port, end)`.
#[inline]
pub fn port_at(buf: &[u8], pos: usize, end: usize) -> Option<(u16, usize)> {
    let mut v: u32 = 0;
    let mut i = pos;
    while i < end && buf[i].is_ascii_digit() && i - pos < 5 {
        v = v * 10 + u32::from(buf[i] - b'0');
        i += 1;
    }
    if i == pos || v > 65535 || (i < end && buf[i].is_ascii_digit()) {
        return None;
    }
    Some((v as u16, i))
}

/// Finds `needle` (ASCII, compared case-insensitively) in `[pos, end)`.
pub fn find_ci(buf: &[u8], pos: usize, end: usize, needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || end < pos + needle.len() {
        return None;
    }
    (pos..=end - needle.len()).find(|&i| buf[i..i + needle.len()].eq_ignore_ascii_case(needle))
}

/// Finds byte `b` in `[pos, end)` outside double-quoted strings (with `\` escapes).
pub fn find_unquoted(buf: &[u8], mut pos: usize, end: usize, targets: &[u8]) -> Option<usize> {
    let mut in_quotes = false;
    while pos < end {
        let c = buf[pos];
        if in_quotes {
            if c == b'\\' {
                pos += 1;
            } else if c == b'"' {
                in_quotes = false;
            }
        } else if c == b'"' {
            in_quotes = true;
        } else if targets.contains(&c) {
            return Some(pos);
        }
        pos += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ends() {
        let b = b"a\r\nb\nc\rd\r\r\ne";
        assert_eq!(line_end(b, 0, b.len()), (1, 3));
        assert_eq!(line_end(b, 3, b.len()), (4, 5));
        assert_eq!(line_end(b, 5, b.len()), (6, 7));
        assert_eq!(line_end(b, 7, b.len()), (8, 11));
        assert_eq!(line_end(b, 11, b.len()), (12, 12));
    }

    #[test]
    fn ports() {
        assert_eq!(port_at(b"5060;", 0, 5), Some((5060, 4)));
        assert_eq!(port_at(b"50600", 0, 5), Some((50600, 5)));
        assert_eq!(port_at(b"65536", 0, 5), None);
        assert_eq!(port_at(b"123456", 0, 6), None);
        assert_eq!(port_at(b"x", 0, 1), None);
    }

    #[test]
    fn unquoted_search() {
        let b = br#""a,b" <sip:x>, <sip:y>"#;
        assert_eq!(find_unquoted(b, 0, b.len(), b","), Some(13));
    }
}
