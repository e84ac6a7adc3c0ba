//! Addresses as they appear in SIP text: fast parsing from bytes and formatting into a
//! fixed buffer. (Which addresses may be rewritten is the NAT rules' business: `nat::addr`.)
//!
//! Hand-written for the hot path: std's parsers take `&str` (UTF-8 validation first) and
//! its formatters go through `core::fmt`; an IPv4 parse here is a dozen instructions.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Parses a whole token as a dotted-quad IPv4 address (no leading `+`, no empty octets,
/// each octet ≤ 255, at most 3 digits). The token must be exactly the address.
#[inline]
pub fn parse_ipv4(tok: &[u8]) -> Option<Ipv4Addr> {
    if tok.len() < 7 || tok.len() > 15 {
        return None;
    }
    match parse_ipv4_prefix(tok) {
        Some((a, n)) if n == tok.len() => Some(a),
        _ => None,
    }
}

/// Parses a dotted-quad IPv4 address at the start of `b`: the address and the bytes it
/// took. What follows is not looked at (callers decide whether it may follow).
#[inline]
pub fn parse_ipv4_prefix(b: &[u8]) -> Option<(Ipv4Addr, usize)> {
    let mut octets = [0u8; 4];
    let mut i = 0usize;
    for (n, slot) in octets.iter_mut().enumerate() {
        if n > 0 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let d = *b.get(i)?;
        if !d.is_ascii_digit() {
            return None;
        }
        let mut v = u32::from(d - b'0');
        i += 1;
        for _ in 0..2 {
            match b.get(i) {
                Some(&d) if d.is_ascii_digit() => {
                    v = v * 10 + u32::from(d - b'0');
                    i += 1;
                }
                _ => break,
            }
        }
        if v > 255 {
            return None;
        }
        *slot = v as u8;
    }
    Some((Ipv4Addr::from(octets), i))
}

/// [`parse_ipv4`] from a zero-padded copy of the token (7-15 bytes, put together from
/// two overlapping 8- or 4-byte loads: no `memcpy` call) read whole with one vector
/// shuffle (`sip::ipv4_simd`, SSSE3) or by [`parse_ipv4_window_scalar`]: no loop over
/// bytes. Same answer as [`parse_ipv4`] for every input (a test checks both on every
/// shape of octet, every byte value in every position and a million random tokens).
#[inline]
pub fn parse_ipv4_word(tok: &[u8]) -> Option<Ipv4Addr> {
    with_ipv4_word(tok, |a| a)
}

/// `then(parse_ipv4_word(tok))`, the reading and `then` compiled as one function on
/// x86-64 with SSSE3 (the vector reading is a function of its own, with the feature
/// enabled: called from code without it, it cannot be inlined; here `then` is inlined
/// into it instead, one call in all). (`PrivateIPDetection`: the word's loads, the
/// vector reading and the classification in one function, no call between them.)
#[inline]
pub fn with_ipv4_word<R>(tok: &[u8], then: impl FnOnce(Option<Ipv4Addr>) -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if super::ipv4_simd::available() {
        /// # Safety
        /// The CPU must have SSSE3.
        #[target_feature(enable = "ssse3")]
        unsafe fn vector<R>(tok: &[u8], then: impl FnOnce(Option<Ipv4Addr>) -> R) -> R {
            // (`then` in each arm: the answer is branched on once, not packed into an
            // option and unpacked.)
            match ipv4_halves(tok).and_then(|(lo, hi, n)| super::ipv4_simd::parse(lo, hi, n)) {
                Some(a) => then(Some(a)),
                None => then(None),
            }
        }
        // SAFETY: the CPU has SSSE3 (checked at run time, once).
        return unsafe { vector(tok, then) };
    }
    then(parse_ipv4_word_scalar(tok))
}

/// [`with_ipv4_word`] that also tells whether the address is in one of eight networks
/// (`nets[i]` masked by `masks[i]`, host order; a slot with mask 0 and a net other than 0
/// is in none): on x86-64 with SSSE3 compared in the vector register the reading leaves
/// the address in (`ipv4_simd::parse_in`), one function in all. (`PrivateIPDetection`'s
/// local networks.)
#[inline]
pub fn with_ipv4_word_in<R>(
    tok: &[u8],
    nets: &[u32; 8],
    masks: &[u32; 8],
    then: impl FnOnce(Option<(Ipv4Addr, bool)>) -> R,
) -> R {
    #[cfg(target_arch = "x86_64")]
    if super::ipv4_simd::available() {
        /// # Safety
        /// The CPU must have SSSE3.
        #[target_feature(enable = "ssse3")]
        unsafe fn vector<R>(
            tok: &[u8],
            nets: &[u32; 8],
            masks: &[u32; 8],
            then: impl FnOnce(Option<(Ipv4Addr, bool)>) -> R,
        ) -> R {
            match ipv4_halves(tok)
                .and_then(|(lo, hi, n)| super::ipv4_simd::parse_in(lo, hi, n, nets, masks))
            {
                Some(a) => then(Some(a)),
                None => then(None),
            }
        }
        // SAFETY: the CPU has SSSE3 (checked at run time, once).
        return unsafe { vector(tok, nets, masks, then) };
    }
    then(ipv4_word_in_scalar(tok, nets, masks))
}

/// [`with_ipv4_word_in`]'s answer without the vector reading (other CPUs; tested on its
/// own).
#[inline]
fn ipv4_word_in_scalar(tok: &[u8], nets: &[u32; 8], masks: &[u32; 8]) -> Option<(Ipv4Addr, bool)> {
    parse_ipv4_word_scalar(tok).map(|a| {
        let v = u32::from(a);
        (
            a,
            nets.iter().zip(masks).any(|(&net, &mask)| v & mask == net),
        )
    })
}

/// [`parse_ipv4_word`] without the vector reading (other CPUs; tested on its own).
#[inline]
fn parse_ipv4_word_scalar(tok: &[u8]) -> Option<Ipv4Addr> {
    let (lo, hi, n) = ipv4_halves(tok)?;
    let w = (u128::from(lo) | u128::from(hi) << 64).to_le_bytes();
    match parse_ipv4_window_scalar(&w) {
        Some((a, len)) if len == n => Some(a),
        _ => None,
    }
}

/// A token of 7 to 15 bytes as the low and high halves of a zero-padded 16-byte word,
/// and its length; `None` for any other length.
#[inline(always)]
fn ipv4_halves(tok: &[u8]) -> Option<(u64, u64, usize)> {
    let n = tok.len();
    match (tok.first_chunk::<8>(), tok.last_chunk::<8>(), n) {
        // Bytes `n - 8..n` above the first 8 (the overlap is the same bytes), shifted by
        // `s` < 64 bits as two `u64` halves (`b >> 1 >> (63 - s)`: no shift by 64 when
        // `s` is 0; a `u128` shift by a variable amount is more instructions).
        (Some(a), Some(b), 8..=15) => {
            let (a, b, s) = (u64::from_le_bytes(*a), u64::from_le_bytes(*b), 8 * (n - 8));
            Some((a | b << s, b >> 1 >> (63 - s), n))
        }
        (_, _, 7) => {
            let (a, b) = (tok.first_chunk::<4>()?, tok.last_chunk::<4>()?);
            let lo = u64::from(u32::from_le_bytes(*a)) | u64::from(u32::from_le_bytes(*b)) << 24;
            Some((lo, 0, 7))
        }
        _ => None,
    }
}

/// The IPv4 address at the start of a zero-padded 16-byte window, and its length: what
/// [`parse_ipv4_prefix`] reads (each octet 1-3 digits, at most 255), without a loop over
/// bytes. (The fast rewriter's read of an address inside a message.) On x86-64 with
/// SSSE3 the vector reading (`sip::ipv4_simd`), else [`parse_ipv4_window_scalar`].
#[inline]
pub fn parse_ipv4_window(w: &[u8; 16]) -> Option<(Ipv4Addr, usize)> {
    #[cfg(target_arch = "x86_64")]
    if super::ipv4_simd::available() {
        // SAFETY: the CPU has SSSE3 (checked at run time, once).
        return unsafe { super::ipv4_simd::parse_prefix(w) };
    }
    parse_ipv4_window_scalar(w)
}

/// [`parse_ipv4_window`] by scalar reads: each octet's length told by whether its next
/// two bytes are digits.
#[inline]
pub fn parse_ipv4_window_scalar(w: &[u8; 16]) -> Option<(Ipv4Addr, usize)> {
    // (Indexes masked to the window: an octet starts at 12 at the latest, so its three
    // digits are within it.)
    let d = |i: usize| u32::from(w[i & 15].wrapping_sub(b'0'));
    let mut i = 0;
    let mut out = 0u32;
    for k in 0..4 {
        if k > 0 {
            if w[i & 15] != b'.' {
                return None;
            }
            i += 1;
        }
        let (d0, d1, d2) = (d(i), d(i + 1), d(i + 2));
        let (v, n) = if d0 > 9 {
            return None;
        } else if d1 > 9 {
            (d0, 1)
        } else if d2 > 9 {
            (d0 * 10 + d1, 2)
        } else {
            (d0 * 100 + d1 * 10 + d2, 3)
        };
        if v > 255 {
            return None;
        }
        out = out << 8 | v;
        i += n;
    }
    Some((Ipv4Addr::from(out), i))
}

/// Parses a whole token as an IPv6 address (no brackets), including the IPv4-embedded forms.
#[inline]
pub fn parse_ipv6(tok: &[u8]) -> Option<Ipv6Addr> {
    if tok.len() < 2 || tok.len() > 45 || !tok.contains(&b':') {
        return None;
    }
    let s = core::str::from_utf8(tok).ok()?;
    s.parse().ok()
}

/// IPv4 or IPv6 (bare, no brackets).
#[inline]
pub fn parse_ip(tok: &[u8]) -> Option<IpAddr> {
    parse_ipv4(tok)
        .map(IpAddr::V4)
        .or_else(|| parse_ipv6(tok).map(IpAddr::V6))
}

/// Longest text we ever write for one address (plus brackets and a port):
/// `[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535` is 54 bytes.
pub const TEXT_CAP: usize = 56;

/// Each octet's decimal text (no leading zeros) followed by a `.` (4 bytes: the unused
/// ones zero), and the number of digits.
static OCTET_TEXT: [([u8; 4], u8); 256] = {
    let mut t = [([0u8; 4], 0u8); 256];
    let mut o = 0;
    while o < 256 {
        let (d2, d1, d0) = ((o / 100) as u8, (o / 10 % 10) as u8, (o % 10) as u8);
        t[o] = match o {
            0..=9 => ([b'0' + d0, b'.', 0, 0], 1),
            10..=99 => ([b'0' + d1, b'0' + d0, b'.', 0], 2),
            _ => ([b'0' + d2, b'0' + d1, b'0' + d0, b'.'], 3),
        };
        o += 1;
    }
    t
};

/// The 8 decimal digits of `v` (below 10^8, leading zeros included) as ASCII, the most
/// significant first in memory (a little-endian word), computed in lanes of one word
/// (SWAR): the two 4-digit halves in 32-bit lanes, each split into two 2-digit numbers
/// in 16-bit lanes (`* 10486 >> 20` is `/ 100` below 43,699), each of those into two
/// digits in bytes (`* 103 >> 10` is `/ 10` below 179); no product crosses into the
/// lane above it.
#[inline(always)]
fn eight_digits(v: u32) -> u64 {
    let v = u64::from(v);
    let halves = (v / 10_000) | ((v % 10_000) << 32);
    let hundreds = ((halves * 10_486) >> 20) & 0x0000_007f_0000_007f;
    let pairs = ((halves - 100 * hundreds) << 16) | hundreds;
    let tens = ((pairs * 103) >> 10) & 0x000f_000f_000f_000f;
    let ones = pairs - 10 * tens;
    ((ones << 8) | tens) + 0x3030_3030_3030_3030
}

/// How many decimal digits `v` (below 10^8) has, 1 for 0: `t`, its bit length times
/// log10(2) (1233 / 4096, rounded down), plus one when `v` is at least 10^t.
#[inline(always)]
fn decimal_digits(v: u32) -> usize {
    const POW10: [u32; 9] = [
        1,
        10,
        100,
        1_000,
        10_000,
        100_000,
        1_000_000,
        10_000_000,
        100_000_000,
    ];
    let t = (((32 - (v | 1).leading_zeros()) * 1233) >> 12) as usize;
    let t = t.min(8);
    t + usize::from(v | 1 >= POW10[t])
}

/// A small fixed-capacity byte string for formatted addresses and numbers.
#[derive(Clone, Copy)]
pub struct Text {
    buf: [u8; TEXT_CAP],
    len: u8,
}

impl Default for Text {
    fn default() -> Self {
        Text::EMPTY
    }
}

impl core::fmt::Debug for Text {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{:?}",
            core::str::from_utf8(self.as_bytes()).unwrap_or("<bin>")
        )
    }
}

impl PartialEq for Text {
    fn eq(&self, o: &Self) -> bool {
        self.as_bytes() == o.as_bytes()
    }
}

impl Eq for Text {}

impl Text {
    /// The empty text (zeroed).
    pub const EMPTY: Text = Text {
        buf: [0; TEXT_CAP],
        len: 0,
    };

    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends; silently truncates at capacity (callers size inputs below it).
    #[inline]
    pub fn push(&mut self, b: &[u8]) {
        let l = usize::from(self.len);
        let n = b.len().min(TEXT_CAP - l);
        self.buf[l..l + n].copy_from_slice(&b[..n]);
        self.len = (l + n) as u8;
    }

    #[inline]
    pub fn push_byte(&mut self, b: u8) {
        self.push(&[b]);
    }

    /// Appends a decimal number. One below 10^8 with 8 bytes of room (ports, lengths:
    /// every number the rewriter writes) is one 8-byte store of [`eight_digits`] shifted
    /// so that its leading zeros fall off the front (the bytes past the text's end it
    /// writes are zeros); no loop, no table. (The digit loop it replaces, a division by
    /// 10 per digit, was 58 instructions for a 3-digit Content-Length and ~85 for a
    /// 5-digit port.)
    #[inline]
    pub fn push_u32(&mut self, v: u32) {
        let l = usize::from(self.len);
        match self.buf.get_mut(l..).and_then(|b| b.first_chunk_mut::<8>()) {
            Some(out) if v < 100_000_000 => {
                let n = decimal_digits(v);
                // (`n` is 1 to 8: a shift by 0 to 56.)
                *out = (eight_digits(v) >> (8 * (8 - n))).to_le_bytes();
                self.len = (l + n) as u8;
            }
            _ => self.push_u32_long(v),
        }
    }

    /// [`Self::push_u32`] of a number of 9 or 10 digits, or one without 8 bytes of room
    /// (the digits that fit).
    #[cold]
    #[inline(never)]
    fn push_u32_long(&mut self, mut v: u32) {
        let mut tmp = [0u8; 10];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&tmp[i..]);
    }

    /// Appends the dotted quad, written into a 16-byte window first (one copy, not one
    /// per octet and dot), each octet's digits and the dot after them one 4-byte store
    /// from a table ([`OCTET_TEXT`]).
    #[inline]
    pub fn push_ipv4(&mut self, a: Ipv4Addr) {
        let mut w = [0u8; 16];
        let mut n = 0;
        for o in a.octets() {
            let (text, len) = OCTET_TEXT[usize::from(o)];
            // (`n` ≤ 12 before each octet: at most three of 4 bytes each before it.)
            if let Some(d) = w.get_mut(n..).and_then(|d| d.first_chunk_mut::<4>()) {
                *d = text;
            }
            n += usize::from(len) + 1;
        }
        // No dot after the last octet.
        n -= 1;
        w[n & 15] = 0;
        if self.len == 0 {
            // (At most 15 bytes: the window fits the empty buffer whole.)
            self.buf[..16].copy_from_slice(&w);
            self.len = n as u8;
        } else {
            self.push(&w[..n]);
        }
    }

    /// RFC 5952 text of an IPv6 address (std's formatter, into this buffer).
    pub fn push_ipv6(&mut self, a: Ipv6Addr) {
        use core::fmt::Write as _;
        let _ = write!(self, "{a}");
    }

    /// Replaces the text with `a`'s (as [`Self::push_ip`] into an empty text), without
    /// zeroing the bytes past it first: only the dotted quad's 16-byte window is written.
    #[inline]
    pub fn set_ip(&mut self, a: IpAddr) {
        self.len = 0;
        self.push_ip(a);
    }

    pub fn push_ip(&mut self, a: IpAddr) {
        match a {
            IpAddr::V4(v4) => self.push_ipv4(v4),
            IpAddr::V6(v6) => self.push_ipv6(v6),
        }
    }

    pub fn from_ip(a: IpAddr) -> Text {
        let mut t = Text::default();
        t.push_ip(a);
        t
    }
}

impl core::fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_whole_token_only() {
        assert_eq!(
            parse_ipv4(b"192.168.1.10"),
            Some(Ipv4Addr::new(192, 168, 1, 10))
        );
        assert_eq!(parse_ipv4(b"0.0.0.0"), Some(Ipv4Addr::UNSPECIFIED));
        for bad in [
            &b"192.168.1.256"[..],
            b"192.168.1",
            b"192.168.1.10.",
            b"192.168..1",
            b"1923.1.1.1",
            b"a.b.c.d",
            b"192.168.1.10x",
            b" 192.168.1.1",
            b"",
        ] {
            assert_eq!(parse_ipv4(bad), None, "{:?}", core::str::from_utf8(bad));
        }
    }

    /// The word parse gives [`parse_ipv4`]'s answer: every octet text of 1-3 digits
    /// (leading zeros, values past 255), every byte value in every position of tokens of
    /// each length, dots missing, doubled, leading and trailing, every shape of 0-4 digit
    /// octets, and 1,000,000 random tokens. (On x86-64 with SSSE3 this is the vector
    /// reading, `sip::ipv4_simd`; the scalar one is `ipv4_window_equals_the_prefix_parse`'s.)
    #[test]
    fn ipv4_word_equals_the_byte_parse() {
        let octets = [
            "0", "7", "00", "09", "10", "99", "000", "010", "100", "199", "249", "255", "256",
            "299", "300", "999",
        ];
        let mut toks: Vec<Vec<u8>> = Vec::new();
        for a in octets {
            for b in ["0", "10", "255", "256", "001"] {
                toks.push(format!("{a}.{b}.{a}.{b}").into_bytes());
                toks.push(format!("{b}.{a}.{b}.{a}").into_bytes());
                toks.push(format!("{a}.{a}.{b}.{b}").into_bytes());
            }
        }
        for base in ["1.2.3.4", "10.20.30.40", "192.168.100.200", "1.22.33.4"] {
            let base = base.as_bytes();
            for i in 0..base.len() {
                for v in 0..=255u8 {
                    let mut t = base.to_vec();
                    t[i] = v;
                    toks.push(t.clone());
                    t.insert(i, v);
                    toks.push(t);
                }
                let mut t = base.to_vec();
                t.remove(i);
                toks.push(t);
            }
            toks.push([b".", base].concat());
            toks.push([base, b"."].concat());
            toks.push([base, b".5"].concat());
        }
        for n in 0..20 {
            toks.push(vec![b'1'; n]);
            toks.push(vec![b'.'; n]);
            toks.push(b"1.1.1.1".iter().copied().cycle().take(n).collect());
        }
        // Every shape of four octets of 0-4 digits with each octet's extreme values.
        let texts = ["", "0", "9", "00", "99", "000", "255", "256", "999", "0000"];
        for a in texts {
            for b in texts {
                for c in texts {
                    for d in texts {
                        toks.push(format!("{a}.{b}.{c}.{d}").into_bytes());
                    }
                }
            }
        }
        // Random tokens over digits, dots and a few other bytes (`/` and `:` are the
        // bytes next to the digits), 0-17 bytes long.
        let mut s = 0x2545_f491_4f6c_dd1du64;
        const ALPHABET: &[u8] = b"0123456789...../:x\0\xff";
        for _ in 0..1_000_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let len = (s % 18) as usize;
            let t: Vec<u8> = (0..len)
                .map(|i| ALPHABET[(s >> (5 + 3 * i)) as usize % ALPHABET.len()])
                .collect();
            toks.push(t);
        }
        // Networks for `with_ipv4_word_in`: the private ranges, loopback, two hosts (the
        // bases 1.2.3.4 and 10.20.30.40 above, as /32s) and two unused slots (mask 0,
        // address 1: no address is in them).
        let net = |a: [u8; 4], bits: u32| (u32::from_be_bytes(a), u32::MAX << (32 - bits));
        let slots = [
            net([10, 0, 0, 0], 8),
            net([172, 16, 0, 0], 12),
            net([192, 168, 0, 0], 16),
            net([127, 0, 0, 0], 8),
            net([1, 2, 3, 4], 32),
            (1, 0),
            net([10, 20, 30, 40], 32),
            (1, 0),
        ];
        let (nets, masks) = (slots.map(|s| s.0), slots.map(|s| s.1));
        let mut hits = 0;
        for t in &toks {
            let want = parse_ipv4(t);
            let what = || format!("{:?}", String::from_utf8_lossy(t));
            assert_eq!(parse_ipv4_word(t), want, "{}", what());
            assert_eq!(parse_ipv4_word_scalar(t), want, "scalar {}", what());
            let want_in = want.map(|a| {
                let v = u32::from(a);
                (a, slots.iter().any(|&(n, m)| v & m == n))
            });
            hits += usize::from(want_in.is_some_and(|(_, hit)| hit));
            assert_eq!(
                with_ipv4_word_in(t, &nets, &masks, |r| r),
                want_in,
                "in {}",
                what()
            );
            assert_eq!(
                ipv4_word_in_scalar(t, &nets, &masks),
                want_in,
                "in, scalar {}",
                what()
            );
        }
        assert!(hits > 100, "{hits} tokens in the networks");
    }

    /// The window parse gives [`parse_ipv4_prefix`]'s answer on the same bytes: every
    /// shape of octet (0-4 digits, leading zeros, values around 255), trailing digits,
    /// dots and letters after the 4th octet, every byte value in every position of a few
    /// bases (and inserted there: dots doubled), every byte removed (dots missing),
    /// leading and trailing dots, and 1,000,000 random windows over `0123456789.x` and
    /// zero.
    #[test]
    fn ipv4_window_equals_the_prefix_parse() {
        let check = |t: &[u8]| {
            let mut w = [0u8; 16];
            let n = t.len().min(16);
            w[..n].copy_from_slice(&t[..n]);
            let want = parse_ipv4_prefix(&w);
            let what = || format!("{:?}", String::from_utf8_lossy(&w));
            assert_eq!(parse_ipv4_window(&w), want, "{}", what());
            assert_eq!(parse_ipv4_window_scalar(&w), want, "scalar {}", what());
        };
        let octets = [
            "", "0", "7", "00", "09", "10", "99", "000", "010", "100", "199", "249", "250", "254",
            "255", "256", "259", "260", "299", "300", "999", "0000", "0255", "1234", "2555",
        ];
        for a in octets {
            for b in octets {
                for c in octets {
                    for d in octets {
                        let t = format!("{a}.{b}.{c}.{d}");
                        check(t.as_bytes());
                        for tail in ["5", "55", "x", ".", ".1"] {
                            check(format!("{t}{tail}").as_bytes());
                        }
                    }
                }
            }
        }
        let bases = [
            "1.2.3.4",
            "10.20.30.40",
            "192.168.100.200",
            "1.22.33.4",
            "255.255.255.255",
            "1.2.3.4567890123",
            "001.002.003.004",
        ];
        for base in bases {
            let base = base.as_bytes();
            check(base);
            check(&[b".", base].concat());
            check(&[base, b"."].concat());
            for i in 0..16 {
                for v in 0..=255u8 {
                    let mut t = base.to_vec();
                    t.resize(16, 0);
                    t[i] = v;
                    check(&t);
                    let mut t = base.to_vec();
                    t.insert(i.min(t.len()), v);
                    check(&t);
                }
                if i < base.len() {
                    let mut t = base.to_vec();
                    t.remove(i);
                    check(&t);
                }
            }
        }
        // Random windows: mostly digits and dots, some `x`, zeros, and a random length.
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        // (`\0`: a zero byte inside the length.)
        const ALPHABET: &[u8] = b"0123456789.x\0..0122555";
        for _ in 0..1_000_000 {
            let r = next();
            let len = (r % 17) as usize;
            let mut w = [0u8; 16];
            for (i, b) in w.iter_mut().enumerate().take(len) {
                let c = (next() >> (i % 8)) as usize % ALPHABET.len();
                *b = ALPHABET[c];
            }
            let want = parse_ipv4_prefix(&w);
            assert_eq!(parse_ipv4_window(&w), want, "{w:?}");
            assert_eq!(parse_ipv4_window_scalar(&w), want, "scalar {w:?}");
        }
    }

    #[test]
    fn ipv6() {
        assert_eq!(
            parse_ip(b"::ffff:10.0.0.5"),
            Some(IpAddr::V6(Ipv4Addr::new(10, 0, 0, 5).to_ipv6_mapped()))
        );
        assert!(parse_ip(b"2001:db8::1").is_some());
        assert!(parse_ip(b"2001:db8:::192.0.2.1").is_none());
        assert!(parse_ip(b"example.com").is_none());
    }

    #[test]
    fn ipv4_text_equals_std() {
        let edges = [0u8, 1, 9, 10, 11, 99, 100, 101, 199, 200, 249, 250, 255];
        for &a in &edges {
            for &b in &edges {
                let ip = Ipv4Addr::new(a, b, b, a);
                let want = ip.to_string();
                assert_eq!(Text::from_ip(IpAddr::V4(ip)).as_bytes(), want.as_bytes());
                let mut t = Text::default();
                t.push(b"[");
                t.push_ipv4(ip);
                assert_eq!(t.as_bytes(), format!("[{want}").as_bytes());
            }
        }
        // Every octet value in every position.
        for o in 0..=255u8 {
            for ip in [
                Ipv4Addr::new(o, 255 - o, o / 3, o % 7),
                Ipv4Addr::new(o % 11, o, 200 - o / 2, o),
            ] {
                let want = ip.to_string();
                assert_eq!(Text::from_ip(IpAddr::V4(ip)).as_bytes(), want.as_bytes());
            }
        }
    }

    #[test]
    fn eight_digits_and_their_count() {
        let check = |v: u32| {
            let want = format!("{v:08}");
            assert_eq!(&eight_digits(v).to_le_bytes(), want.as_bytes(), "{v}");
            assert_eq!(decimal_digits(v), v.to_string().len(), "{v}");
        };
        (0..1_000_000).for_each(check);
        (1_000_000..100_000_000).step_by(997).for_each(check);
        (0..8)
            .map(|k| 10u32.pow(k))
            .for_each(|p| [p - 1, p, p + 1, 10 * p - 1].into_iter().for_each(check));
        (0..27).for_each(|k| check((1 << k) - 1));
        check(99_999_999);
    }

    #[test]
    fn text_formatting() {
        let mut t = Text::default();
        t.push_ipv4(Ipv4Addr::new(203, 0, 113, 10));
        t.push_byte(b':');
        t.push_u32(5060);
        assert_eq!(t.as_bytes(), b"203.0.113.10:5060");
        let t = Text::from_ip("2001:db8::1".parse().unwrap());
        assert_eq!(t.as_bytes(), b"2001:db8::1");
        let mut t = Text::default();
        t.push_u32(0);
        assert_eq!(t.as_bytes(), b"0");
        let powers = (0..10).flat_map(|k| {
            let p = 10u32.pow(k);
            [p - 1, p, p + 1, 2 * p, p.saturating_mul(5) - 1]
        });
        let bits = (0..32).flat_map(|k| [(1u32 << k) - 1, 1 << k]);
        for v in [
            1, 9, 10, 99, 100, 386, 999, 1_000, 9_999, 10_000, 65_535, 99_999,
        ]
        .into_iter()
        .chain([100_000, 999_999_999, 1_000_000_000, u32::MAX])
        .chain(powers)
        .chain(bits)
        .chain((0..200_000).step_by(7))
        {
            let mut t = Text::default();
            t.push(b"x");
            t.push_u32(v);
            assert_eq!(t.as_bytes(), format!("x{v}").as_bytes());
            // Near the capacity: the digits that fit, as before.
            for room in 0..=10 {
                let mut t = Text::default();
                t.push(&[b'y'; TEXT_CAP][..TEXT_CAP - room]);
                t.push_u32(v);
                let want = format!("{v}");
                let fit = &want.as_bytes()[..want.len().min(room)];
                assert_eq!(&t.as_bytes()[TEXT_CAP - room..], fit, "{v} in {room}");
            }
        }
    }
}
