//! Byte-level helpers for the SIP/SDP scanner: line ends (CRLF, LF, bare CR), linear
//! whitespace, tokens. Everything returns offsets into the message; nothing allocates.
//!
//! Hand-written (with memchr for the long searches) because this is the hot path: a general
//! parser would build header maps and strings per message; we only need to find a handful
//! of byte ranges and must never change a byte we do not rewrite.

use core::net::IpAddr;

use super::addr::{parse_ipv4, parse_ipv6};

/// The end of the line starting at `pos`: `(content_end, next_line_start)`. Accepts CRLF,
/// LF and bare CR as terminators (real traffic has all three), and `CR CR LF` as one
/// terminator (seen from real UAs; reading it as CR + empty line would end the headers
/// early). Without a terminator the line runs to `end` and `next == end`.
#[inline]
pub fn line_end(buf: &[u8], pos: usize, end: usize) -> (usize, usize) {
    match find_eol(buf, pos, end) {
        Some(at) => terminator(buf, at, end),
        None => (end, end),
    }
}

/// `(at, next_line_start)` for the line terminator whose first byte (CR or LF) is at `at`:
/// LF, CRLF, `CR CR LF` or a bare CR.
#[inline(always)]
pub fn terminator(buf: &[u8], at: usize, end: usize) -> (usize, usize) {
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

/// The first CR or LF in `buf[pos..end]`.
///
/// SIP lines are short (10-80 bytes), where a general-purpose search spends most of its
/// time choosing a strategy; this one compares 16 bytes at a time with SSE2 (part of the
/// x86-64 baseline, so no runtime detection), including the last partial block.
#[inline]
pub fn find_eol(buf: &[u8], pos: usize, end: usize) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
            _mm_set1_epi8,
        };
        let end = end.min(buf.len());
        let mut i = pos;
        // Bit k set when byte k of the 16 at `at` is CR or LF.
        let mask = |at: usize| -> u32 {
            debug_assert!(at + 16 <= buf.len());
            // SAFETY: every caller checks `at + 16 <= buf.len()`; SSE2 is always present
            // on x86-64; `loadu` has no alignment requirement.
            unsafe {
                let v = _mm_loadu_si128(buf.as_ptr().add(at).cast::<__m128i>());
                let cr = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\r' as i8));
                let lf = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\n' as i8));
                _mm_movemask_epi8(_mm_or_si128(cr, lf)) as u32
            }
        };
        while i + 16 <= end {
            let m = mask(i);
            if m != 0 {
                return Some(i + m.trailing_zeros() as usize);
            }
            i += 16;
        }
        let left = end.saturating_sub(i);
        if left == 0 {
            return None;
        }
        if i + 16 <= buf.len() {
            // Bytes past `end` are in the buffer: load them, ignore their bits.
            let m = mask(i) & ((1u32 << left) - 1);
            return (m != 0).then(|| i + m.trailing_zeros() as usize);
        }
        if end >= 16 && end - 16 >= pos {
            // The last 16 bytes of the range, overlapping what was already searched.
            let m = mask(end - 16) >> (16 - left);
            return (m != 0).then(|| i + m.trailing_zeros() as usize);
        }
        buf[i..end]
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .map(|o| i + o)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        memchr::memchr2(b'\r', b'\n', &buf[pos..end]).map(|o| pos + o)
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

/// Characters of a host name or IPv4 literal: ASCII letters and digits, `.` and `-`.
/// (One table load: the chain of range compares was ~10 instructions a byte.)
#[inline]
pub fn is_host_char(b: u8) -> bool {
    HOST_CHARS[usize::from(b)]
}

/// [`is_host_char`] of every byte.
static HOST_CHARS: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'.' || c == b'-';
        b += 1;
    }
    t
};

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

/// Finds the first of `targets` in `[pos, end)` outside double-quoted strings (with `\\`
/// escapes). A byte loop: the spans searched (parameters, the start of a value) are short
/// and the target is usually near.
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

/// Whether `pred` holds for an IP address written as a whole token in `buf[start..end]`,
/// wherever it is: dotted-quad IPv4 not touching another letter or digit (`10.0.0.2` in
/// `sip:a@10.0.0.2:5060` or `[10.0.0.2]`, not in `110.0.0.2`, `10.0.0.23` or `x10.0.0.2`),
/// and IPv6 (a run of hex digits, colons and dots that parses as one, bracketed or not,
/// IPv4-mapped included). For text the parser could not read: no allocation, no state.
pub fn any_address(
    buf: &[u8],
    start: usize,
    end: usize,
    mut pred: impl FnMut(IpAddr) -> bool,
) -> bool {
    let end = end.min(buf.len());
    let in_run = |b: u8| b.is_ascii_hexdigit() || b == b':' || b == b'.';
    let word = |b: u8| b.is_ascii_alphanumeric();
    let mut i = start;
    while i < end {
        if !in_run(buf[i]) {
            i += 1;
            continue;
        }
        let rs = i;
        let mut re = i;
        while re < end && in_run(buf[re]) {
            re += 1;
        }
        i = re;
        // IPv6: the whole run, but for the colon of a scheme before it (`sip:fd00::1`)
        // and dots after it (the end of a sentence).
        let mut a = rs;
        if buf[a] == b':' && buf.get(a + 1) != Some(&b':') {
            a += 1;
        }
        let mut b = re;
        while b > a && buf[b - 1] == b'.' {
            b -= 1;
        }
        let before_ok = a > rs || rs == start || !word(buf[rs - 1]);
        let after_ok = re == end || !word(buf[re]);
        if before_ok && after_ok {
            if let Some(v6) = parse_ipv6(&buf[a..b]) {
                if pred(IpAddr::V6(v6)) {
                    return true;
                }
                continue;
            }
        }
        // IPv4: each run of digits and dots in it that touches no letter or digit.
        let mut j = rs;
        while j < re {
            if !buf[j].is_ascii_digit() {
                j += 1;
                continue;
            }
            let ss = j;
            while j < re && (buf[j].is_ascii_digit() || buf[j] == b'.') {
                j += 1;
            }
            let mut se = j;
            let post_ok = se == end || !word(buf[se]);
            while se > ss && buf[se - 1] == b'.' {
                se -= 1;
            }
            let pre_ok = ss == start || !word(buf[ss - 1]);
            if pre_ok && post_ok {
                if let Some(v4) = parse_ipv4(&buf[ss..se]) {
                    if pred(IpAddr::V4(v4)) {
                        return true;
                    }
                }
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Vec<String> {
        let mut v = Vec::new();
        let b = text.as_bytes();
        any_address(b, 0, b.len(), |a| {
            v.push(a.to_string());
            false
        });
        v
    }

    #[test]
    fn addresses_as_whole_tokens_anywhere() {
        assert_eq!(
            all("Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9\r\nContact: <sip:a@10.0.0.3>"),
            ["10.0.0.2", "10.0.0.3"]
        );
        assert_eq!(all("c=IN IP4 192.168.1.10\r\n"), ["192.168.1.10"]);
        assert_eq!(
            all("<sip:[fd00::2]:5060>, sip:fd00::3, ::ffff:10.0.0.9."),
            ["fd00::2", "fd00::3", "::ffff:10.0.0.9"]
        );
        // Parts of other tokens are not addresses.
        assert!(all("110.0.0.2x 10.0.0.2.5 a10.0.0.2 SIP/2.0 1.2.3 deadbeef").is_empty());
        assert_eq!(all("10.0.0.2"), ["10.0.0.2"]);
        let b = b"x 10.0.0.2 10.0.0.3";
        let mut seen = 0;
        assert!(any_address(b, 0, b.len(), |a| {
            seen += 1;
            a == IpAddr::from([10, 0, 0, 2])
        }));
        assert_eq!(seen, 1, "stops at the first match");
        assert!(!any_address(b, 0, 6, |_| true), "within the range only");
    }

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
    fn eol_matches_reference_everywhere() {
        // Every (start, end) in buffers of several lengths, line ends at every position,
        // against the obvious byte loop: covers whole blocks, partial tails read in place,
        // tails read from the end, and the scalar fallback.
        for len in [0usize, 1, 5, 15, 16, 17, 31, 32, 33, 47, 70] {
            for eol_at in 0..=len {
                let mut b = vec![b'x'; len];
                if eol_at < len {
                    b[eol_at] = if eol_at % 2 == 0 { b'\r' } else { b'\n' };
                }
                for s in 0..=len {
                    for e in s..=len {
                        let want = b[s..e]
                            .iter()
                            .position(|&c| c == b'\r' || c == b'\n')
                            .map(|o| s + o);
                        assert_eq!(find_eol(&b, s, e), want, "len {len} eol {eol_at} [{s},{e})");
                    }
                }
            }
        }
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
        let b = br#""a\",b;" x;y"#;
        assert_eq!(find_unquoted(b, 0, b.len(), b";"), Some(10));
        assert_eq!(find_unquoted(b, 0, b.len(), b",;"), Some(10));
        assert_eq!(find_unquoted(br#""unterminated;"#, 0, 14, b";"), None);
        assert_eq!(find_unquoted(b"\"a\\", 0, 3, b";"), None);
    }

    #[test]
    fn host_chars_are_letters_digits_dot_and_dash() {
        let want: Vec<u8> = (b'0'..=b'9')
            .chain(b'A'..=b'Z')
            .chain(b'a'..=b'z')
            .chain([b'.', b'-'])
            .collect();
        let got: Vec<u8> = (0..=255u8).filter(|&b| is_host_char(b)).collect();
        let mut want = want;
        want.sort_unstable();
        assert_eq!(got, want);
    }
}
