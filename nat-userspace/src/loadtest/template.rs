//! Load-test templates: a SIP message turned into a complete Ethernet/IPv4/UDP frame once,
//! with the byte ranges ("slots") that change per flow or per packet recorded, so the
//! generator only writes those bytes into a UMEM frame and fixes the UDP checksum from a
//! precomputed sum (RFC 1071/1624 arithmetic: the constant part is summed once).
//!
//! [`prepare`] normalizes any SIP message (built-in, `--template FILE`, a pcap payload):
//! - `Call-ID`: `<8 hex>-` is put in front of the value (distinct per flow);
//! - top `Via` branch: `z9hG4bK<8 hex>-...` (added when missing);
//! - `From` tag: `<8 hex>-...` (added when missing);
//! - SDP `m=` ports become 5-digit per-flow media ports, `a=rtcp:` ports media + 1;
//! - a fixed-width header `X-Sipnat-Ts: <16 hex ns> <16 hex seq> <4 hex template>` carries
//!   the send time (CLOCK_MONOTONIC) and the sequence number for the verifier;
//! - `Content-Length` is recomputed (absent stays absent).
//!
//! Every slot has a fixed width, so patching never changes a length.

use core::net::{IpAddr, SocketAddr};

use crate::wire::{checksum, emit::UdpFrame};

/// The header the generator stamps into every packet.
pub const TS_HEADER: &str = "X-Sipnat-Ts";
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Built-in messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builtin {
    /// INVITE with an SDP offer (audio, RTCP attribute).
    Invite,
    Register,
    Options,
    /// 200 OK to an INVITE, with an SDP answer.
    Ok200,
}

impl Builtin {
    /// Every built-in message.
    pub const ALL: [Builtin; 4] = [
        Builtin::Invite,
        Builtin::Register,
        Builtin::Options,
        Builtin::Ok200,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Builtin::Invite => "invite",
            Builtin::Register => "register",
            Builtin::Options => "options",
            Builtin::Ok200 => "200ok",
        }
    }

    /// The message text, from `src` (the private side) to `dst`.
    /// IPv6 addresses are written `[...]` in SIP URIs and Via, `IN IP6 ...` in SDP.
    pub fn message(self, src_ip: IpAddr, dst_ip: IpAddr) -> Vec<u8> {
        let sdp_addr = src_ip;
        let ipv = if src_ip.is_ipv6() { "IP6" } else { "IP4" };
        let host = |a: IpAddr| match a {
            IpAddr::V4(v) => v.to_string(),
            IpAddr::V6(v) => format!("[{v}]"),
        };
        let (src, dst) = (host(src_ip), host(dst_ip));
        let sdp = || {
            format!(
                "v=0\r\no=alice 2890844526 2890844526 IN {ipv} {sdp_addr}\r\ns=-\r\nc=IN {ipv} {sdp_addr}\r\nt=0 0\r\n\
                 m=audio 20000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
                 a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=rtcp:20001 IN {ipv} {sdp_addr}\r\n\
                 a=ptime:20\r\na=sendrecv\r\n"
            )
        };
        let text = match self {
            Builtin::Invite => {
                let body = sdp();
                format!(
                    "INVITE sip:+15551234567@{dst}:5060 SIP/2.0\r\n\
                     Via: SIP/2.0/UDP {src}:5060;branch=z9hG4bK776asdhds;rport\r\n\
                     Max-Forwards: 70\r\n\
                     From: \"Alice\" <sip:alice@{src}>;tag=1928301774\r\n\
                     To: <sip:+15551234567@{dst}>\r\n\
                     Call-ID: a84b4c76e66710@{src}\r\n\
                     CSeq: 314159 INVITE\r\n\
                     Contact: <sip:alice@{src}:5060;transport=udp>\r\n\
                     Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE\r\n\
                     User-Agent: sipnat-loadtest\r\n\
                     Content-Type: application/sdp\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            }
            Builtin::Register => format!(
                "REGISTER sip:{dst} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {src}:5060;branch=z9hG4bKnashds7;rport\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:alice@{dst}>;tag=a73kszlfl\r\n\
                 To: <sip:alice@{dst}>\r\n\
                 Call-ID: 1j9FpLxk3uxtm8tn@{src}\r\n\
                 CSeq: 1 REGISTER\r\n\
                 Contact: <sip:alice@{src}:5060>;expires=3600\r\n\
                 User-Agent: sipnat-loadtest\r\n\
                 Content-Length: 0\r\n\r\n"
            ),
            Builtin::Options => format!(
                "OPTIONS sip:{dst} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {src}:5060;branch=z9hG4bKhjhs8ass877;rport\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:alice@{src}>;tag=1928301774\r\n\
                 To: <sip:{dst}>\r\n\
                 Call-ID: a84b4c76e66710@{src}\r\n\
                 CSeq: 63104 OPTIONS\r\n\
                 Contact: <sip:alice@{src}:5060>\r\n\
                 Accept: application/sdp\r\n\
                 User-Agent: sipnat-loadtest\r\n\
                 Content-Length: 0\r\n\r\n"
            ),
            Builtin::Ok200 => {
                let body = sdp();
                format!(
                    "SIP/2.0 200 OK\r\n\
                     Via: SIP/2.0/UDP {dst}:5060;branch=z9hG4bKnashds8;received={dst}\r\n\
                     From: <sip:carrier@{dst}>;tag=93810874\r\n\
                     To: <sip:alice@{src}>;tag=a6c85cf\r\n\
                     Call-ID: a84b4c76e66710@{dst}\r\n\
                     CSeq: 314159 INVITE\r\n\
                     Contact: <sip:alice@{src}:5060>\r\n\
                     User-Agent: sipnat-loadtest\r\n\
                     Content-Type: application/sdp\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            }
        };
        text.into_bytes()
    }
}

/// What a slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotKind {
    /// 8 hex digits naming the flow (Call-ID prefix, branch, tag).
    FlowHex,
    /// 5 decimal digits: the flow's media port plus `extra` (m= index × 2, +1 for RTCP).
    MediaPort { extra: u16 },
    /// The UDP source port (2 bytes, big endian).
    SrcPort,
    /// 16 hex digits: send time in ns (CLOCK_MONOTONIC).
    Timestamp,
    /// 16 hex digits: sequence number.
    Sequence,
}

impl SlotKind {
    pub fn width(self) -> usize {
        match self {
            SlotKind::FlowHex => 8,
            SlotKind::MediaPort { .. } => 5,
            SlotKind::SrcPort => 2,
            SlotKind::Timestamp | SlotKind::Sequence => 16,
        }
    }
}

/// A byte range patched per packet (offset in the payload or the frame).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub off: usize,
    pub kind: SlotKind,
}

/// Address-bearing fields the verifier checks (bits of [`FieldSet`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CheckedField {
    Via,
    Contact,
    SdpO,
    SdpC,
    Rtcp,
}

impl CheckedField {
    pub const ALL: [CheckedField; 5] = [
        CheckedField::Via,
        CheckedField::Contact,
        CheckedField::SdpO,
        CheckedField::SdpC,
        CheckedField::Rtcp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CheckedField::Via => "via",
            CheckedField::Contact => "contact",
            CheckedField::SdpO => "sdp_o",
            CheckedField::SdpC => "sdp_c",
            CheckedField::Rtcp => "sdp_rtcp",
        }
    }
}

/// A set of [`CheckedField`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FieldSet(u8);

impl FieldSet {
    pub fn insert(&mut self, f: CheckedField) {
        self.0 |= 1 << f as u8;
    }

    pub fn contains(self, f: CheckedField) -> bool {
        self.0 & (1 << f as u8) != 0
    }

    pub fn iter(self) -> impl Iterator<Item = CheckedField> {
        CheckedField::ALL
            .into_iter()
            .filter(move |f| self.contains(*f))
    }
}

/// A normalized SIP payload with its slots (payload offsets).
#[derive(Clone, Debug)]
pub struct Prepared {
    pub payload: Vec<u8>,
    pub slots: Vec<Slot>,
}

/// Why a message cannot be a template.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("the message has no header/body separator (blank line)")]
    NoHeaderEnd,
    #[error("the message does not start with a SIP request or status line")]
    NotSip,
    #[error("the prepared message has no timestamp/sequence slots")]
    NoTimestamp,
    #[error("the frame would be {0} bytes; at most {1} fit a UMEM frame")]
    TooBig(usize, usize),
    #[error("the source and destination addresses are of different families (IPv4 and IPv6)")]
    MixedFamilies,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

fn find_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

/// True when `msg` starts like a SIP request or response.
pub fn looks_like_sip(msg: &[u8]) -> bool {
    let line_end = memchr::memchr(b'\n', msg).unwrap_or(msg.len());
    let line = &msg[..line_end];
    line.starts_with(b"SIP/2.0 ") || find(line, b" SIP/2.0").is_some()
}

struct Out {
    buf: Vec<u8>,
    slots: Vec<Slot>,
}

impl Out {
    fn put(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    fn slot(&mut self, kind: SlotKind) {
        self.slots.push(Slot {
            off: self.buf.len(),
            kind,
        });
        self.buf.resize(self.buf.len() + kind.width(), b'0');
    }
}

/// Normalizes `msg` (see the module docs).
pub fn prepare(msg: &[u8], template_index: u16) -> Result<Prepared, TemplateError> {
    if !looks_like_sip(msg) {
        return Err(TemplateError::NotSip);
    }
    let crlf = find(msg, b"\r\n").is_some();
    let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
    let sep: &[u8] = if crlf { b"\r\n\r\n" } else { b"\n\n" };
    let (head, body) = match find(msg, sep) {
        Some(p) => (&msg[..p + eol.len()], &msg[p + sep.len()..]),
        None if msg.ends_with(eol) => (msg, &msg[msg.len()..]),
        None => return Err(TemplateError::NoHeaderEnd),
    };

    // Body first: its length goes into Content-Length.
    let b = body_out(body);
    let h = head_out(head, eol, b.buf.len(), template_index);
    let body_off = h.buf.len();
    let mut slots = h.slots;
    slots.extend(b.slots.iter().map(|s| Slot {
        off: s.off + body_off,
        kind: s.kind,
    }));
    let mut payload = h.buf;
    payload.extend_from_slice(&b.buf);
    Ok(Prepared { payload, slots })
}

/// The body with slots: each SDP `m=` port (and its `a=rtcp:` port) becomes a media port.
fn body_out(body: &[u8]) -> Out {
    let mut b = Out {
        buf: Vec::with_capacity(body.len() + 64),
        slots: Vec::new(),
    };
    let is_sdp = find(body, b"m=").is_some() && body.starts_with(b"v=");
    let mut media_index: u16 = 0;
    for line in body.split_inclusive(|&c| c == b'\n') {
        if !is_sdp {
            b.put(line);
            continue;
        }
        let content_end = line
            .iter()
            .rposition(|&c| c != b'\n' && c != b'\r')
            .map_or(0, |p| p + 1);
        let (content, ending) = line.split_at(content_end);
        if content.starts_with(b"m=") {
            // m=<media> <port>[/<count>] ...
            let sp = content.iter().position(|&c| c == b' ');
            let port_end = sp.and_then(|s| {
                content[s + 1..]
                    .iter()
                    .position(|&c| !c.is_ascii_digit())
                    .map(|e| s + 1 + e)
            });
            match (sp, port_end) {
                (Some(s), Some(e)) if e > s + 1 && &content[s + 1..e] != b"0" => {
                    b.put(&content[..s + 1]);
                    b.slot(SlotKind::MediaPort {
                        extra: 2 * media_index,
                    });
                    b.put(&content[e..]);
                    media_index += 1;
                }
                _ => b.put(content),
            }
            b.put(ending);
        } else if content.starts_with(b"a=rtcp:") && media_index > 0 {
            let digits = content[7..]
                .iter()
                .position(|&c| !c.is_ascii_digit())
                .map_or(content.len(), |e| 7 + e);
            if digits > 7 {
                b.put(b"a=rtcp:");
                b.slot(SlotKind::MediaPort {
                    extra: 2 * (media_index - 1) + 1,
                });
                b.put(&content[digits..]);
            } else {
                b.put(content);
            }
            b.put(ending);
        } else {
            b.put(line);
        }
    }
    b
}

/// The header with slots: flow ids in Call-ID, the first Via's branch and the From tag,
/// Content-Length set to `body_len`, and our timestamp header last.
fn head_out(head: &[u8], eol: &[u8], body_len: usize, template_index: u16) -> Out {
    let mut h = Out {
        buf: Vec::with_capacity(head.len() + 128),
        slots: Vec::new(),
    };
    let mut seen_via = false;
    for (i, line) in head.split_inclusive(|&c| c == b'\n').enumerate() {
        if i == 0 || line == eol {
            h.put(line);
            continue;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            h.put(line);
            continue;
        };
        let name = line[..colon].trim_ascii();
        let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        let value_start = colon
            + 1
            + line[colon + 1..]
                .iter()
                .take_while(|c| **c == b' ' || **c == b'\t')
                .count();
        let content_end = line
            .iter()
            .rposition(|&c| c != b'\n' && c != b'\r')
            .map_or(0, |p| p + 1)
            .max(value_start);
        if is(b"call-id") || is(b"i") {
            h.put(&line[..value_start]);
            h.slot(SlotKind::FlowHex);
            h.put(b"-");
            h.put(&line[value_start..]);
        } else if (is(b"via") || is(b"v")) && !seen_via {
            seen_via = true;
            let value = &line[..content_end];
            match find_ci(value, b";branch=") {
                Some(p) => {
                    let mut at = p + 8;
                    if value[at..].starts_with(b"z9hG4bK") {
                        at += 7;
                    }
                    h.put(&line[..at]);
                    if at == p + 8 {
                        h.put(b"z9hG4bK");
                    }
                    h.slot(SlotKind::FlowHex);
                    h.put(b"-");
                    h.put(&line[at..]);
                }
                None => {
                    // Only the first value of a comma-separated Via gets the branch.
                    let end = memchr::memchr(b',', value).unwrap_or(content_end);
                    h.put(&line[..end]);
                    h.put(b";branch=z9hG4bK");
                    h.slot(SlotKind::FlowHex);
                    h.put(&line[end..]);
                }
            }
        } else if is(b"from") || is(b"f") {
            let value = &line[..content_end];
            match find_ci(value, b";tag=") {
                Some(p) => {
                    h.put(&line[..p + 5]);
                    h.slot(SlotKind::FlowHex);
                    h.put(b"-");
                    h.put(&line[p + 5..]);
                }
                None => {
                    h.put(value);
                    h.put(b";tag=");
                    h.slot(SlotKind::FlowHex);
                    h.put(&line[content_end..]);
                }
            }
        } else if is(b"content-length") || is(b"l") {
            h.put(&line[..value_start]);
            h.put(body_len.to_string().as_bytes());
            h.put(&line[content_end..]);
        } else if is(TS_HEADER.as_bytes()) {
            // Replaced by ours below.
        } else {
            h.put(line);
        }
    }
    // Our header goes last, then the blank line.
    h.put(TS_HEADER.as_bytes());
    h.put(b": ");
    h.slot(SlotKind::Timestamp);
    h.put(b" ");
    h.slot(SlotKind::Sequence);
    h.put(b" ");
    h.put(&hex4(template_index));
    h.put(eol);
    h.put(eol);
    h
}

fn hex4(v: u16) -> [u8; 4] {
    let mut o = [0u8; 4];
    for (i, c) in o.iter_mut().enumerate() {
        *c = HEX[usize::from((v >> (12 - 4 * i)) & 0xf)];
    }
    o
}

/// Link and network addresses of the generated frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// Both of one family (IPv4 or IPv6).
    pub src_ip: IpAddr,
    pub dst_ip: IpAddr,
    /// Source port of flow 0; flow `f` uses `src_port + f` (wrapping above 65535 back to
    /// `src_port`).
    pub src_port: u16,
    pub dst_port: u16,
}

impl Endpoints {
    pub fn src_port_of(&self, flow: u32) -> u16 {
        let span = 65536 - u32::from(self.src_port);
        (u32::from(self.src_port) + flow % span) as u16
    }
}

/// The media port of a flow (5 digits: 10000..59998, even), before the slot's `extra`.
#[inline]
pub fn media_port(flow: u32) -> u32 {
    10000 + (2 * flow) % 50000
}

const ETH_LEN: usize = 14;
const UDP_LEN: usize = 8;

/// Frame offset of the UDP header (no IPv4 options, no IPv6 extension headers).
fn l4_offset(ip: IpAddr) -> usize {
    ETH_LEN + if ip.is_ipv6() { 40 } else { 20 }
}

/// A ready frame and how to patch it.
#[derive(Clone, Debug)]
pub struct Template {
    pub name: String,
    /// The whole Ethernet frame (slots hold zero digits).
    pub frame: Vec<u8>,
    /// Slots with frame offsets, including the UDP source port.
    pub slots: Vec<Slot>,
    /// Unfolded sum of the UDP pseudo-header, header and payload with every slot byte and
    /// the checksum field counted as zero.
    base_sum: u64,
    /// Frame offsets of the timestamp and sequence slots.
    ts_off: usize,
    seq_off: usize,
    /// Fields that hold a private address in the message (the verifier expects the
    /// external address there after the rewrite).
    pub private_fields: FieldSet,
    pub endpoints: Endpoints,
    /// Frame offset of the UDP header.
    l4: usize,
}

/// One's-complement sum of `b` placed at an even (`odd == false`) or odd offset of the
/// checksummed data: a byte-swapped sum for odd offsets (RFC 1071 §2(B)).
#[inline]
fn sum_at(b: &[u8], odd: bool) -> u64 {
    let s = checksum::fold(checksum::sum(b));
    u64::from(if odd { s.swap_bytes() } else { s })
}

#[inline]
fn put_hex(dst: &mut [u8], mut v: u64) {
    for c in dst.iter_mut().rev() {
        *c = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
}

/// The 16 lowercase hex digits of `v` as a big-endian u128 (SWAR: each nibble spread
/// into its own byte, then turned into ASCII without branches).
#[inline]
pub fn hex16(v: u64) -> u128 {
    const LO: u128 = 0x0f0f_0f0f_0f0f_0f0f_0f0f_0f0f_0f0f_0f0f;
    const ONES: u128 = 0x0101_0101_0101_0101_0101_0101_0101_0101;
    let mut x = u128::from(v);
    x = (x | (x << 32)) & 0x0000_0000_ffff_ffff_0000_0000_ffff_ffff;
    x = (x | (x << 16)) & 0x0000_ffff_0000_ffff_0000_ffff_0000_ffff;
    x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff_00ff_00ff_00ff_00ff;
    x = (x | (x << 4)) & LO;
    // bit 4 of (nibble + 6) is set exactly for a..f
    let letters = ((x + 6 * ONES) >> 4) & ONES;
    x + 0x30 * ONES + 0x27 * letters
}

#[inline]
fn put_dec(dst: &mut [u8], mut v: u32) {
    for c in dst.iter_mut().rev() {
        *c = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

impl Template {
    /// Builds the frame for a prepared payload. `private` decides which address fields
    /// count as private (for [`Template::private_fields`]).
    pub fn build(
        name: &str,
        prepared: &Prepared,
        ep: Endpoints,
        private: &dyn Fn(IpAddr) -> bool,
        max_frame: usize,
    ) -> Result<Template, TemplateError> {
        if ep.src_ip.is_ipv6() != ep.dst_ip.is_ipv6() {
            return Err(TemplateError::MixedFamilies);
        }
        let l4 = l4_offset(ep.src_ip);
        let payload_off = l4 + UDP_LEN;
        let len = payload_off + prepared.payload.len();
        if len > max_frame || len - ETH_LEN > usize::from(u16::MAX) {
            return Err(TemplateError::TooBig(len, max_frame));
        }
        let mut f = vec![0u8; len];
        UdpFrame {
            src_mac: ep.src_mac,
            dst_mac: ep.dst_mac,
            // The source port is a slot, written per flow.
            src: SocketAddr::new(ep.src_ip, 0),
            dst: SocketAddr::new(ep.dst_ip, ep.dst_port),
            ttl: 64,
            ident: 0,
            dont_fragment: true,
        }
        .write(&prepared.payload, &mut f)
        .map_err(|_| TemplateError::TooBig(len, max_frame))?;
        // The UDP checksum is set per packet (`patch`), from a base sum without it.
        f[l4 + 6..l4 + 8].fill(0);

        let mut slots = vec![Slot {
            off: l4,
            kind: SlotKind::SrcPort,
        }];
        slots.extend(prepared.slots.iter().map(|s| Slot {
            off: s.off + payload_off,
            kind: s.kind,
        }));
        // Base sum: slot bytes count as zero.
        let mut zeroed = f[l4..].to_vec();
        for s in &slots {
            zeroed[s.off - l4..s.off - l4 + s.kind.width()].fill(0);
        }
        let udp_len = (UDP_LEN + prepared.payload.len()) as u32;
        let pseudo = match (ep.src_ip, ep.dst_ip) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                checksum::pseudo_v4(&s.octets(), &d.octets(), 17, udp_len)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                checksum::pseudo_v6(&s.octets(), &d.octets(), 17, udp_len)
            }
            _ => return Err(TemplateError::MixedFamilies),
        };
        let base_sum = pseudo + checksum::sum(&zeroed);
        let private_fields = super::verify::address_fields(&prepared.payload)
            .into_iter()
            .filter(|(_, a)| private(*a))
            .fold(FieldSet::default(), |mut s, (fl, _)| {
                s.insert(fl);
                s
            });
        let find = |k: SlotKind| slots.iter().find(|s| s.kind == k).map(|s| s.off);
        let (Some(ts_off), Some(seq_off)) = (find(SlotKind::Timestamp), find(SlotKind::Sequence))
        else {
            return Err(TemplateError::NoTimestamp);
        };
        Ok(Template {
            name: name.to_string(),
            frame: f,
            ts_off,
            seq_off,
            slots,
            base_sum,
            private_fields,
            endpoints: ep,
            l4,
        })
    }

    pub fn len(&self) -> usize {
        self.frame.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frame.is_empty()
    }

    /// Writes flow `flow`'s fields, the sequence number and the timestamp into `frame` (a
    /// copy of [`Template::frame`]) and sets the UDP checksum. `salt` makes the flow
    /// names of one run differ from another's (XOR: still distinct per flow). No
    /// allocation; `false` (nothing valid written) when `frame` is too short.
    #[inline]
    pub fn patch(&self, frame: &mut [u8], flow: u32, salt: u32, seq: u64, ts_ns: u64) -> bool {
        match self.patch_flow(frame, flow, salt) {
            Some(sum) => self.patch_packet(frame, sum, seq, ts_ns),
            None => false,
        }
    }

    /// Writes flow `flow`'s fields only; returns the checksum sum of the frame without the
    /// per-packet slots (to pass to [`Template::patch_packet`]). The generator calls it once
    /// per frame when a frame always carries the same flow.
    #[inline]
    pub fn patch_flow(&self, frame: &mut [u8], flow: u32, salt: u32) -> Option<u64> {
        if frame.len() < self.frame.len() {
            return None;
        }
        let mut s = self.base_sum;
        for slot in &self.slots {
            let dst = frame.get_mut(slot.off..slot.off + slot.kind.width())?;
            match slot.kind {
                SlotKind::FlowHex => put_hex(dst, u64::from(flow ^ salt)),
                SlotKind::MediaPort { extra } => put_dec(dst, media_port(flow) + u32::from(extra)),
                SlotKind::SrcPort => {
                    dst.copy_from_slice(&self.endpoints.src_port_of(flow).to_be_bytes())
                }
                SlotKind::Timestamp | SlotKind::Sequence => continue,
            }
            s += sum_at(dst, (slot.off - self.l4) % 2 == 1);
        }
        Some(s)
    }

    /// Writes the sequence number and the timestamp and sets the UDP checksum from
    /// `flow_sum` (what [`Template::patch_flow`] returned for the flow in this frame).
    #[inline]
    pub fn patch_packet(&self, frame: &mut [u8], flow_sum: u64, seq: u64, ts_ns: u64) -> bool {
        let mut s = flow_sum;
        for (off, v) in [(self.ts_off, ts_ns), (self.seq_off, seq)] {
            let Some(dst) = frame.get_mut(off..off + 16) else {
                return false;
            };
            // Digits and their sum computed in registers, one 16-byte store: no byte
            // stores read back (a store-forwarding stall per slot).
            let digits = hex16(v);
            dst.copy_from_slice(&digits.to_be_bytes());
            let (hi, lo) = ((digits >> 64) as u64, digits as u64);
            let sum =
                checksum::fold((hi >> 32) + (hi & 0xffff_ffff) + (lo >> 32) + (lo & 0xffff_ffff));
            s += u64::from(if (off - self.l4) % 2 == 1 {
                sum.swap_bytes()
            } else {
                sum
            });
        }
        let mut c = checksum::finish(s);
        if c == 0 {
            c = 0xffff; // a computed zero is sent as all ones (RFC 768)
        }
        match frame.get_mut(self.l4 + 6..self.l4 + 8) {
            Some(dst) => {
                dst.copy_from_slice(&c.to_be_bytes());
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    const L4: usize = ETH_LEN + 20;
    const PAYLOAD: usize = L4 + UDP_LEN;

    fn ep() -> Endpoints {
        Endpoints {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            dst_ip: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)),
            src_port: 5060,
            dst_port: 5060,
        }
    }

    fn private(a: IpAddr) -> bool {
        matches!(a, IpAddr::V4(v) if v.is_private())
    }

    fn build(b: Builtin) -> Template {
        let e = ep();
        let msg = b.message(e.src_ip, e.dst_ip);
        let p = prepare(&msg, 0).unwrap();
        Template::build(b.name(), &p, e, &private, 4096).unwrap()
    }

    /// Full checksum check with etherparse (an independent implementation).
    fn checksums_valid(frame: &[u8]) -> bool {
        let s = etherparse::SlicedPacket::from_ethernet(frame).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &s.net else {
            return false;
        };
        let h = ip.header().to_header();
        if h.calc_header_checksum() != h.header_checksum {
            return false;
        }
        let Some(etherparse::TransportSlice::Udp(u)) = &s.transport else {
            return false;
        };
        let uh = u.to_header();
        uh.calc_checksum_ipv4(&h, u.payload()).unwrap() == uh.checksum
    }

    fn payload_str(frame: &[u8]) -> String {
        String::from_utf8_lossy(&frame[PAYLOAD..]).into_owned()
    }

    fn header_value(text: &str, name: &str) -> String {
        text.lines()
            .find(|l| {
                l.split(':')
                    .next()
                    .is_some_and(|n| n.trim().eq_ignore_ascii_case(name))
            })
            .map(|l| l.split_once(':').unwrap().1.trim().to_string())
            .unwrap_or_default()
    }

    #[test]
    fn checksums_valid_after_patching_every_builtin() {
        for b in Builtin::ALL {
            let t = build(b);
            let mut frame = t.frame.clone();
            // Reuse one buffer like the generator does: stale bytes from an earlier packet.
            for (flow, seq) in [(0u32, 0u64), (1, 1), (4095, 77), (70000, u64::MAX), (3, 5)] {
                assert!(t.patch(&mut frame, flow, 0xdead_beef, seq, 0x1234_5678_9abc_def0));
                assert!(checksums_valid(&frame), "{b:?} flow {flow} seq {seq}");
            }
        }
    }

    /// IPv6 endpoints: a 40-byte IP header, the IPv6 pseudo-header in the UDP checksum,
    /// bracketed hosts in the SIP text and `IN IP6` in the SDP; every private field found.
    #[test]
    fn ipv6_templates_have_valid_checksums_and_v6_text() {
        use core::net::Ipv6Addr;
        let ua: Ipv6Addr = "fd00:88::2".parse().unwrap();
        let car: Ipv6Addr = "2001:db8:100::2".parse().unwrap();
        let e = Endpoints {
            src_ip: IpAddr::V6(ua),
            dst_ip: IpAddr::V6(car),
            ..ep()
        };
        let private = |a: IpAddr| a == IpAddr::V6(ua);
        for b in Builtin::ALL {
            let msg = b.message(e.src_ip, e.dst_ip);
            let p = prepare(&msg, 0).unwrap();
            let t = Template::build(b.name(), &p, e, &private, 4096).unwrap();
            let mut f = t.frame.clone();
            for (flow, seq) in [(0u32, 0u64), (1, 1), (70000, u64::MAX)] {
                assert!(t.patch(&mut f, flow, 7, seq, 0x1234_5678));
                let s = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
                let Some(etherparse::NetSlice::Ipv6(ip)) = &s.net else {
                    panic!("{}: not IPv6", b.name());
                };
                let Some(etherparse::TransportSlice::Udp(u)) = &s.transport else {
                    panic!("{}: not UDP", b.name());
                };
                let uh = u.to_header();
                let want = uh
                    .calc_checksum_ipv6(&ip.header().to_header(), u.payload())
                    .unwrap();
                assert_eq!(uh.checksum, want, "{} flow {flow}", b.name());
            }
            let text = String::from_utf8_lossy(&f[ETH_LEN + 40 + UDP_LEN..]).into_owned();
            assert!(text.contains("[fd00:88::2]"), "{text}");
            if text.contains("v=0") {
                assert!(text.contains("c=IN IP6 fd00:88::2"), "{text}");
            }
            assert!(t.private_fields.iter().next().is_some(), "{}", b.name());
        }
        let mixed = Endpoints {
            dst_ip: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)),
            ..e
        };
        let p = prepare(&Builtin::Options.message(e.src_ip, e.src_ip), 0).unwrap();
        assert!(matches!(
            Template::build("x", &p, mixed, &private, 4096),
            Err(TemplateError::MixedFamilies)
        ));
    }

    #[test]
    fn checksums_valid_for_odd_slot_offsets() {
        // A user template whose slots land on odd and even offsets.
        let mut offs = std::collections::HashSet::new();
        for pad in 0..4 {
            let m = format!(
                "OPTIONS sip:x@198.51.100.2 SIP/2.0\r\nX-Pad: {}\r\nVia: SIP/2.0/UDP 10.0.0.2;rport\r\nFrom: <sip:a@10.0.0.2>\r\nCall-ID: q\r\nX-Sipnat-Ts: old\r\n\r\n",
                "A".repeat(pad)
            )
            .into_bytes();
            let p = prepare(&m, 1).unwrap();
            let t = Template::build("file", &p, ep(), &private, 4096).unwrap();
            offs.extend(t.slots.iter().map(|s| s.off % 2));
            let mut f = t.frame.clone();
            for flow in 0..50 {
                assert!(t.patch(&mut f, flow, 7, u64::from(flow) * 3, 99));
                assert!(checksums_valid(&f));
            }
            let text = payload_str(&f);
            assert_eq!(text.matches("X-Sipnat-Ts").count(), 1, "{text}");
            assert!(text.contains(";branch=z9hG4bK"), "{text}");
            assert!(text.contains(";tag="), "{text}");
        }
        assert_eq!(offs.len(), 2, "both parities exercised");
    }

    #[test]
    fn per_flow_fields_are_distinct_and_lengths_constant() {
        let t = build(Builtin::Invite);
        let mut seen: [std::collections::HashSet<String>; 5] = Default::default();
        let mut f = t.frame.clone();
        let flows = 2000u32;
        for flow in 0..flows {
            t.patch(&mut f, flow, 0x5a5a_0000, u64::from(flow), 1);
            assert_eq!(f.len(), t.frame.len());
            let text = payload_str(&f);
            let via = header_value(&text, "Via");
            let branch = via.split("branch=").nth(1).unwrap().split(';').next();
            let from = header_value(&text, "From");
            let tag = from.split("tag=").nth(1).unwrap();
            let m = text.lines().find(|l| l.starts_with("m=audio")).unwrap();
            let sport = u16::from_be_bytes([f[L4], f[L4 + 1]]);
            for (i, v) in [
                header_value(&text, "Call-ID"),
                branch.unwrap().to_string(),
                tag.to_string(),
                m.to_string(),
                sport.to_string(),
            ]
            .into_iter()
            .enumerate()
            {
                seen[i].insert(v);
            }
            // Content-Length still matches the body.
            let cl: usize = header_value(&text, "Content-Length").parse().unwrap();
            let body = text.split("\r\n\r\n").nth(1).unwrap();
            assert_eq!(cl, body.len());
            let rtcp = text.lines().find(|l| l.starts_with("a=rtcp:")).unwrap();
            let mport: u32 = m.split(' ').nth(1).unwrap().parse().unwrap();
            assert_eq!(rtcp, format!("a=rtcp:{} IN IP4 10.0.0.2", mport + 1));
        }
        for (i, s) in seen.iter().enumerate() {
            assert_eq!(s.len(), flows as usize, "field {i} not distinct per flow");
        }
    }

    #[test]
    fn timestamp_and_sequence_are_carried() {
        let t = build(Builtin::Register);
        let mut f = t.frame.clone();
        t.patch(&mut f, 3, 0, 0xabc, 0x1122_3344_5566_7788);
        let text = payload_str(&f);
        assert_eq!(
            header_value(&text, TS_HEADER),
            "1122334455667788 0000000000000abc 0000"
        );
        let (ts, seq, tmpl) = super::super::verify::parse_ts(&f[PAYLOAD..]).unwrap();
        assert_eq!((ts, seq, tmpl), (0x1122_3344_5566_7788, 0xabc, 0));
    }

    #[test]
    fn private_fields_follow_the_template() {
        assert_eq!(
            build(Builtin::Invite)
                .private_fields
                .iter()
                .collect::<Vec<_>>(),
            CheckedField::ALL.to_vec()
        );
        // A 200 OK's top Via is the far end's: not expected to change.
        let ok = build(Builtin::Ok200).private_fields;
        assert!(
            !ok.contains(CheckedField::Via)
                && ok.contains(CheckedField::Contact)
                && ok.contains(CheckedField::SdpC)
        );
        let reg = build(Builtin::Register).private_fields;
        assert!(reg.contains(CheckedField::Via) && !reg.contains(CheckedField::SdpC));
    }

    #[test]
    fn rejects_non_sip_and_too_big() {
        assert_eq!(
            prepare(b"hello\r\n\r\n", 0).unwrap_err(),
            TemplateError::NotSip
        );
        let p = prepare(&Builtin::Invite.message(ep().src_ip, ep().dst_ip), 0).unwrap();
        assert!(matches!(
            Template::build("x", &p, ep(), &private, 200),
            Err(TemplateError::TooBig(..))
        ));
    }

    #[test]
    fn hex16_matches_format() {
        for v in [
            0u64,
            1,
            0xabc,
            0x1122_3344_5566_7788,
            u64::MAX,
            0x0f1e_2d3c_4b5a_6978,
        ] {
            let got = hex16(v).to_be_bytes();
            assert_eq!(std::str::from_utf8(&got).unwrap(), format!("{v:016x}"));
        }
    }

    #[test]
    fn lf_only_messages_keep_their_line_endings() {
        let m = b"OPTIONS sip:x@198.51.100.2 SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKa\nCall-ID: c\nContent-Length: 0\n\n";
        let p = prepare(m, 0).unwrap();
        assert!(!p.payload.contains(&b'\r'));
        assert!(p.payload.ends_with(b"\n\n"));
    }
}
