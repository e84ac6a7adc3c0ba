//! The STUN wire format (RFC 8489) for one Binding transaction: the message header,
//! attribute types, [`encode`] and [`binding_request`], FINGERPRINT ([`append_fingerprint`],
//! [`crc32`]) and [`parse_binding_response`], the pure, panic-free parser of the answer:
//! XOR-MAPPED-ADDRESS (IPv4/IPv6), MAPPED-ADDRESS as the fallback for RFC 3489 servers,
//! transaction id and class checks, error responses with their code, FINGERPRINT
//! verification when present, comprehension-optional attributes ignored, unknown
//! comprehension-required ones rejected (RFC 8489 §7.3.3/§7.3.4). The client that runs
//! the transaction over UDP is `control::stun`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The fixed magic cookie of RFC 5389/8489 messages.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Binding request (method 0x001, class request).
pub const BINDING_REQUEST: u16 = 0x0001;
/// Binding success response.
pub const BINDING_SUCCESS: u16 = 0x0101;
/// Binding error response.
pub const BINDING_ERROR: u16 = 0x0111;
/// Size of the STUN message header.
pub const HEADER_LEN: usize = 20;

/// Attribute types used here (RFC 8489 §18.3).
pub mod attr {
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    pub const USERNAME: u16 = 0x0006;
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    pub const ERROR_CODE: u16 = 0x0009;
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    pub const REALM: u16 = 0x0014;
    pub const NONCE: u16 = 0x0015;
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    pub const PASSWORD_ALGORITHM: u16 = 0x001D;
    pub const USERHASH: u16 = 0x001E;
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    pub const SOFTWARE: u16 = 0x8022;
    pub const ALTERNATE_SERVER: u16 = 0x8023;
    pub const FINGERPRINT: u16 = 0x8028;
}

/// Comprehension-required attribute types (0x0000-0x7FFF) this parser understands or
/// knowingly ignores: RFC 8489 itself, the RFC 3489 legacy ones an old server may still
/// send, RFC 5780 (NAT behaviour discovery) and TURN (RFC 8656). Any other
/// comprehension-required attribute fails the transaction (RFC 8489 §7.3.3).
const KNOWN_REQUIRED: &[u16] = &[
    attr::MAPPED_ADDRESS,
    0x0002, // RESPONSE-ADDRESS (RFC 3489)
    0x0003, // CHANGE-REQUEST (RFC 3489 / 5780)
    0x0004, // SOURCE-ADDRESS (RFC 3489)
    0x0005, // CHANGED-ADDRESS (RFC 3489)
    attr::USERNAME,
    0x0007, // PASSWORD (RFC 3489)
    attr::MESSAGE_INTEGRITY,
    attr::ERROR_CODE,
    attr::UNKNOWN_ATTRIBUTES,
    0x000B, // REFLECTED-FROM (RFC 3489)
    0x000C, // CHANNEL-NUMBER (TURN)
    0x000D, // LIFETIME (TURN)
    0x0012, // XOR-PEER-ADDRESS (TURN)
    0x0013, // DATA (TURN)
    attr::REALM,
    attr::NONCE,
    0x0016, // XOR-RELAYED-ADDRESS (TURN)
    0x0017, // REQUESTED-ADDRESS-FAMILY (TURN)
    0x0018, // EVEN-PORT (TURN)
    0x0019, // REQUESTED-TRANSPORT (TURN)
    0x001A, // DONT-FRAGMENT (TURN)
    attr::MESSAGE_INTEGRITY_SHA256,
    attr::PASSWORD_ALGORITHM,
    attr::USERHASH,
    attr::XOR_MAPPED_ADDRESS,
    0x0022, // RESERVATION-TOKEN (TURN)
    0x0026, // PADDING (RFC 5780)
    0x0027, // RESPONSE-PORT (RFC 5780)
];

/// XOR constant of the FINGERPRINT attribute ("STUN").
const FINGERPRINT_XOR: u32 = 0x5354_554E;

/// A 96-bit transaction id.
pub type TransactionId = [u8; 12];

/// Why a datagram is not a usable Binding response.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not a STUN message at all (leading bits, magic cookie).
    #[error("not a STUN message: {0}")]
    NotStun(&'static str),
    /// A STUN message that breaks the framing rules.
    #[error("malformed STUN message: {0}")]
    Malformed(String),
    /// An answer to another transaction (discarded by the client).
    #[error("STUN response for another transaction")]
    TransactionMismatch,
    /// A message that is not a Binding success or error response.
    #[error("unexpected STUN message type {0:#06x} (wanted a Binding response)")]
    UnexpectedType(u16),
    /// The FINGERPRINT attribute does not match the message.
    #[error("STUN FINGERPRINT mismatch")]
    BadFingerprint,
    /// Comprehension-required attributes we do not understand (RFC 8489 §7.3.3).
    #[error("STUN response with unknown comprehension-required attributes {0:04x?}")]
    UnknownRequired(Vec<u16>),
    /// A success response without (XOR-)MAPPED-ADDRESS.
    #[error("STUN success response without XOR-MAPPED-ADDRESS or MAPPED-ADDRESS")]
    NoMappedAddress,
    /// The server answered with a Binding error response.
    #[error("STUN server answered error {code} {reason:?}")]
    ErrorResponse { code: u16, reason: String },
}

/// A message of type `mtype` with transaction id `tid` and the attributes `attrs` (each
/// padded to 4 bytes), its length field set; no FINGERPRINT (see [`append_fingerprint`]).
pub fn encode(mtype: u16, tid: &TransactionId, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEADER_LEN + 8);
    m.extend_from_slice(&mtype.to_be_bytes());
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    m.extend_from_slice(tid);
    for (t, v) in attrs {
        m.extend_from_slice(&t.to_be_bytes());
        m.extend_from_slice(&(v.len() as u16).to_be_bytes());
        m.extend_from_slice(v);
        while m.len() % 4 != 0 {
            m.push(0);
        }
    }
    let len = (m.len() - HEADER_LEN) as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
    m
}

/// A Binding request with transaction id `tid` (no attributes, or FINGERPRINT only).
pub fn binding_request(tid: &TransactionId, fingerprint: bool) -> Vec<u8> {
    let mut m = encode(BINDING_REQUEST, tid, &[]);
    if fingerprint {
        append_fingerprint(&mut m);
    }
    m
}

/// Appends FINGERPRINT to a complete message (its length field is updated first, as
/// the CRC covers a header that already counts the attribute).
pub fn append_fingerprint(m: &mut Vec<u8>) {
    let new_len = (m.len() - HEADER_LEN + 8) as u16;
    m[2..4].copy_from_slice(&new_len.to_be_bytes());
    let crc = crc32(m) ^ FINGERPRINT_XOR;
    m.extend_from_slice(&attr::FINGERPRINT.to_be_bytes());
    m.extend_from_slice(&4u16.to_be_bytes());
    m.extend_from_slice(&crc.to_be_bytes());
}

/// CRC-32 (ISO-HDLC, the one of zlib/Ethernet), bitwise: messages are tiny.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Decodes a (XOR-)MAPPED-ADDRESS value.
fn decode_address(v: &[u8], xor: bool, tid: &TransactionId) -> Result<SocketAddr, DecodeError> {
    let name = if xor {
        "XOR-MAPPED-ADDRESS"
    } else {
        "MAPPED-ADDRESS"
    };
    if v.len() < 4 {
        return Err(DecodeError::Malformed(format!(
            "{name} shorter than 4 bytes"
        )));
    }
    let family = v[1];
    let mut port = be16(v, 2);
    if xor {
        port ^= (MAGIC_COOKIE >> 16) as u16;
    }
    let ip = match (family, v.len()) {
        (0x01, 8) => {
            let mut a = be32(v, 4);
            if xor {
                a ^= MAGIC_COOKIE;
            }
            IpAddr::V4(Ipv4Addr::from(a))
        }
        (0x02, 20) => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&v[4..20]);
            if xor {
                let mut key = [0u8; 16];
                key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                key[4..].copy_from_slice(tid);
                for (x, k) in a.iter_mut().zip(key) {
                    *x ^= k;
                }
            }
            IpAddr::V6(Ipv6Addr::from(a))
        }
        (0x01 | 0x02, n) => {
            return Err(DecodeError::Malformed(format!(
                "{name} of family {family} has length {n}"
            )))
        }
        (f, _) => {
            return Err(DecodeError::Malformed(format!(
                "{name} with unknown address family {f}"
            )))
        }
    };
    Ok(SocketAddr::new(ip, port))
}

/// Decodes an ERROR-CODE value into (code, reason).
fn decode_error_code(v: &[u8]) -> Result<(u16, String), DecodeError> {
    if v.len() < 4 {
        return Err(DecodeError::Malformed(
            "ERROR-CODE shorter than 4 bytes".into(),
        ));
    }
    let class = u16::from(v[2] & 0x07);
    let number = u16::from(v[3]);
    if !(3..=6).contains(&class) || number > 99 {
        return Err(DecodeError::Malformed(format!(
            "ERROR-CODE class {class} number {number} out of range"
        )));
    }
    let reason = String::from_utf8_lossy(&v[4..]).trim_end().to_string();
    Ok((class * 100 + number, reason))
}

/// Parses the answer to the Binding request `tid`: the mapped address of a success
/// response, or the error. Never panics, whatever `msg` holds.
///
/// Rules: the datagram is exactly one message (header length field = datagram length −
/// 20, a multiple of 4); magic cookie and transaction id must match; the type must be a
/// Binding success (0x0101) or error (0x0111) response; every attribute must fit in the
/// message; a FINGERPRINT, when present, must be last and match; attributes after
/// MESSAGE-INTEGRITY(-SHA256) other than those two are ignored (RFC 8489 §14.5);
/// comprehension-optional attributes (0x8000-0xFFFF) are ignored; unknown
/// comprehension-required ones fail. XOR-MAPPED-ADDRESS wins over MAPPED-ADDRESS; the
/// first occurrence of each counts.
pub fn parse_binding_response(msg: &[u8], tid: &TransactionId) -> Result<SocketAddr, DecodeError> {
    if msg.len() < HEADER_LEN {
        return Err(DecodeError::Malformed(format!(
            "{} bytes, shorter than the 20-byte header",
            msg.len()
        )));
    }
    let mtype = be16(msg, 0);
    if mtype & 0xC000 != 0 {
        return Err(DecodeError::NotStun("the two leading bits are not zero"));
    }
    if be32(msg, 4) != MAGIC_COOKIE {
        return Err(DecodeError::NotStun("no magic cookie"));
    }
    let len = usize::from(be16(msg, 2));
    if len % 4 != 0 {
        return Err(DecodeError::Malformed(format!(
            "message length {len} is not a multiple of 4"
        )));
    }
    if HEADER_LEN + len != msg.len() {
        return Err(DecodeError::Malformed(format!(
            "message length {len} does not match the {}-byte datagram",
            msg.len()
        )));
    }
    if msg[8..20] != tid[..] {
        return Err(DecodeError::TransactionMismatch);
    }
    if mtype != BINDING_SUCCESS && mtype != BINDING_ERROR {
        return Err(DecodeError::UnexpectedType(mtype));
    }

    let mut xor_mapped = None;
    let mut mapped = None;
    let mut error = None;
    let mut unknown = Vec::new();
    let mut after_integrity = false;
    let mut off = HEADER_LEN;
    while off < msg.len() {
        if msg.len() - off < 4 {
            return Err(DecodeError::Malformed("truncated attribute header".into()));
        }
        let atype = be16(msg, off);
        let alen = usize::from(be16(msg, off + 2));
        let start = off + 4;
        let padded = (alen + 3) & !3;
        if msg.len() - start < padded {
            return Err(DecodeError::Malformed(format!(
                "attribute {atype:#06x} of length {alen} overruns the message"
            )));
        }
        let v = &msg[start..start + alen];
        let next = start + padded;
        match atype {
            attr::FINGERPRINT => {
                if alen != 4 {
                    return Err(DecodeError::Malformed(format!(
                        "FINGERPRINT of length {alen}"
                    )));
                }
                if next != msg.len() {
                    return Err(DecodeError::Malformed(
                        "FINGERPRINT is not the last attribute".into(),
                    ));
                }
                if crc32(&msg[..off]) ^ FINGERPRINT_XOR != be32(v, 0) {
                    return Err(DecodeError::BadFingerprint);
                }
            }
            attr::MESSAGE_INTEGRITY if alen != 20 => {
                return Err(DecodeError::Malformed(format!(
                    "MESSAGE-INTEGRITY of length {alen}"
                )))
            }
            attr::MESSAGE_INTEGRITY_SHA256 if !(16..=32).contains(&alen) || alen % 4 != 0 => {
                return Err(DecodeError::Malformed(format!(
                    "MESSAGE-INTEGRITY-SHA256 of length {alen}"
                )))
            }
            attr::MESSAGE_INTEGRITY | attr::MESSAGE_INTEGRITY_SHA256 => {
                // Not verified: a Binding without credentials has no key. Later
                // attributes (but FINGERPRINT) must be ignored.
                after_integrity = true;
            }
            _ if after_integrity => {}
            attr::XOR_MAPPED_ADDRESS => {
                let a = decode_address(v, true, tid)?;
                xor_mapped.get_or_insert(a);
            }
            attr::MAPPED_ADDRESS => {
                let a = decode_address(v, false, tid)?;
                mapped.get_or_insert(a);
            }
            attr::ERROR_CODE => {
                let e = decode_error_code(v)?;
                error.get_or_insert(e);
            }
            t if t < 0x8000 && !KNOWN_REQUIRED.contains(&t) => unknown.push(t),
            _ => {} // understood and not needed, or comprehension-optional
        }
        off = next;
    }

    if mtype == BINDING_ERROR {
        // An error response fails the transaction whatever else it holds.
        return match error {
            Some((code, reason)) => Err(DecodeError::ErrorResponse { code, reason }),
            None => Err(DecodeError::Malformed(
                "error response without ERROR-CODE".into(),
            )),
        };
    }
    if !unknown.is_empty() {
        return Err(DecodeError::UnknownRequired(unknown));
    }
    xor_mapped.or(mapped).ok_or(DecodeError::NoMappedAddress)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 5769 §2.1-2.3 transaction id.
    const TID: TransactionId = [
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ];

    /// The bytes of a hex string whose parts are separated by spaces (at compile time).
    const fn hex<const N: usize>(text: &str) -> [u8; N] {
        const fn nibble(c: u8) -> u8 {
            match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                _ => panic!("not a lower-case hex digit"),
            }
        }
        let s = text.as_bytes();
        let mut out = [0u8; N];
        let (mut n, mut i) = (0, 0);
        while i < s.len() {
            if s[i] == b' ' {
                i += 1;
                continue;
            }
            out[n] = nibble(s[i]) << 4 | nibble(s[i + 1]);
            n += 1;
            i += 2;
        }
        assert!(n == N, "wrong length");
        out
    }

    // The RFC 5769 vectors in parts separated by spaces: the header (with the magic
    // cookie and transaction id), then each attribute.

    /// RFC 5769 §2.2 "Sample IPv4 Response" (mapped 192.0.2.1:32853): SOFTWARE,
    /// XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT.
    const IPV4_RESPONSE: [u8; 80] = hex("0101003c2112a442b7e7a701bc34d686fa87dfae 8022000b7465737420766563746f7220 002000080001a147e112a643 000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7 80280004c07d4c96");

    /// RFC 5769 §2.3 "Sample IPv6 Response" (mapped
    /// [2001:db8:1234:5678:11:2233:4455:6677]:32853): SOFTWARE, XOR-MAPPED-ADDRESS,
    /// MESSAGE-INTEGRITY, FINGERPRINT.
    const IPV6_RESPONSE: [u8; 92] = hex("010100482112a442b7e7a701bc34d686fa87dfae 8022000b7465737420766563746f7220 002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d9 00080014a382954e4be67bf11784c97c8292c275bfe3ed41 80280004c8fb0b4c");

    /// RFC 5769 §2.1 "Sample Request" (its FINGERPRINT checks our CRC): SOFTWARE,
    /// PRIORITY, ICE-CONTROLLED, USERNAME, MESSAGE-INTEGRITY, FINGERPRINT.
    const REQUEST: [u8; 108] = hex("000100582112a442b7e7a701bc34d686fa87dfae 802200105354554e207465737420636c69656e74 002400046e0001ff 80290008932ff9b151263b36 000600096576746a3a68367659202020 000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2 80280004e57a3bcf");

    fn v4_mapped() -> SocketAddr {
        "192.0.2.1:32853".parse().unwrap()
    }

    fn v6_mapped() -> SocketAddr {
        "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
            .parse()
            .unwrap()
    }

    #[test]
    fn crc32_reference() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn rfc5769_fingerprints_check_out() {
        // The vectors' FINGERPRINTs validate both our CRC and the transcription.
        for v in [&REQUEST[..], &IPV4_RESPONSE[..], &IPV6_RESPONSE[..]] {
            let n = v.len();
            assert_eq!(crc32(&v[..n - 8]) ^ FINGERPRINT_XOR, be32(v, n - 4));
        }
    }

    #[test]
    fn rfc5769_ipv4_response() {
        assert_eq!(
            parse_binding_response(&IPV4_RESPONSE, &TID).unwrap(),
            v4_mapped()
        );
    }

    #[test]
    fn rfc5769_ipv6_response() {
        assert_eq!(
            parse_binding_response(&IPV6_RESPONSE, &TID).unwrap(),
            v6_mapped()
        );
    }

    #[test]
    fn rfc5769_request_is_not_a_response() {
        assert!(matches!(
            parse_binding_response(&REQUEST, &TID),
            Err(DecodeError::UnexpectedType(BINDING_REQUEST))
        ));
    }

    #[test]
    fn other_transaction_is_rejected() {
        let mut other = TID;
        other[11] ^= 1;
        assert!(matches!(
            parse_binding_response(&IPV4_RESPONSE, &other),
            Err(DecodeError::TransactionMismatch)
        ));
    }

    #[test]
    fn corrupted_fingerprint_is_rejected() {
        let mut m = IPV4_RESPONSE;
        m[30] ^= 0x01; // inside SOFTWARE
        assert!(matches!(
            parse_binding_response(&m, &TID),
            Err(DecodeError::BadFingerprint)
        ));
    }

    #[test]
    fn request_layout_and_fingerprint() {
        let tid = TID;
        let r = binding_request(&tid, false);
        assert_eq!(r.len(), 20);
        assert_eq!(&r[..8], &[0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42]);
        assert_eq!(&r[8..], &tid);
        let r = binding_request(&tid, true);
        assert_eq!(r.len(), 28);
        assert_eq!(be16(&r, 2), 8);
        assert_eq!(be16(&r, 20), attr::FINGERPRINT);
        assert_eq!(crc32(&r[..20]) ^ FINGERPRINT_XOR, be32(&r, 24));
    }

    #[test]
    fn mapped_address_fallback_and_xor_precedence() {
        let plain_v4 = [0, 1, 0x13, 0xc4, 198, 51, 100, 7]; // 198.51.100.7:5060
        let m = encode(BINDING_SUCCESS, &TID, &[(attr::MAPPED_ADDRESS, &plain_v4)]);
        assert_eq!(
            parse_binding_response(&m, &TID).unwrap(),
            "198.51.100.7:5060".parse().unwrap()
        );
        let mut plain_v6 = vec![0, 2, 0x0d, 0x96];
        plain_v6.extend_from_slice(&"2001:db8::9".parse::<Ipv6Addr>().unwrap().octets());
        let m = encode(BINDING_SUCCESS, &TID, &[(attr::MAPPED_ADDRESS, &plain_v6)]);
        assert_eq!(
            parse_binding_response(&m, &TID).unwrap(),
            "[2001:db8::9]:3478".parse().unwrap()
        );
        // Both present: XOR-MAPPED-ADDRESS wins, whatever the order.
        let xor = &IPV4_RESPONSE[40..48];
        let m = encode(
            BINDING_SUCCESS,
            &TID,
            &[
                (attr::MAPPED_ADDRESS, &plain_v4),
                (attr::XOR_MAPPED_ADDRESS, xor),
            ],
        );
        assert_eq!(parse_binding_response(&m, &TID).unwrap(), v4_mapped());
    }

    #[test]
    fn error_response_reports_code_and_reason() {
        let mut v = vec![0, 0, 4, 20];
        v.extend_from_slice(b"Unknown Attribute");
        let m = encode(BINDING_ERROR, &TID, &[(attr::ERROR_CODE, &v)]);
        match parse_binding_response(&m, &TID) {
            Err(DecodeError::ErrorResponse { code, reason }) => {
                assert_eq!(code, 420);
                assert_eq!(reason, "Unknown Attribute");
            }
            other => panic!("{other:?}"),
        }
        let m = encode(BINDING_ERROR, &TID, &[]);
        assert!(matches!(
            parse_binding_response(&m, &TID),
            Err(DecodeError::Malformed(_))
        ));
        let m = encode(BINDING_ERROR, &TID, &[(attr::ERROR_CODE, &[0, 0, 7, 0])]);
        assert!(matches!(
            parse_binding_response(&m, &TID),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn unknown_attributes() {
        let xor = &IPV4_RESPONSE[40..48];
        // Comprehension-optional: ignored.
        let m = encode(
            BINDING_SUCCESS,
            &TID,
            &[
                (0xC001, b"whatever"),
                (attr::XOR_MAPPED_ADDRESS, xor),
                (0xFFFF, b""),
            ],
        );
        assert_eq!(parse_binding_response(&m, &TID).unwrap(), v4_mapped());
        // Comprehension-required and unknown: the transaction fails.
        let m = encode(
            BINDING_SUCCESS,
            &TID,
            &[(0x7F00, b"x"), (attr::XOR_MAPPED_ADDRESS, xor)],
        );
        assert!(matches!(
            parse_binding_response(&m, &TID),
            Err(DecodeError::UnknownRequired(v)) if v == [0x7F00]
        ));
        // Anything after MESSAGE-INTEGRITY (but FINGERPRINT) is ignored, even unknown.
        let m = encode(
            BINDING_SUCCESS,
            &TID,
            &[
                (attr::XOR_MAPPED_ADDRESS, xor),
                (attr::MESSAGE_INTEGRITY, &[0; 20]),
                (0x7F00, b"x"),
                (attr::MAPPED_ADDRESS, &[9, 9, 9]),
            ],
        );
        assert_eq!(parse_binding_response(&m, &TID).unwrap(), v4_mapped());
    }

    #[test]
    fn malformed_messages_are_errors() {
        let xor = &IPV4_RESPONSE[40..48];
        let good = encode(BINDING_SUCCESS, &TID, &[(attr::XOR_MAPPED_ADDRESS, xor)]);
        assert_eq!(parse_binding_response(&good, &TID).unwrap(), v4_mapped());
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            good[..19].to_vec(),
            good[..good.len() - 4].to_vec(), // length field says more
            {
                let mut m = good.clone();
                m.extend_from_slice(&[0; 4]); // datagram longer than the message
                m
            },
            {
                let mut m = good.clone();
                m[3] = 13; // length not a multiple of 4
                m
            },
            {
                let mut m = good.clone();
                m[22..24].copy_from_slice(&200u16.to_be_bytes()); // attribute overruns
                m
            },
            encode(
                BINDING_SUCCESS,
                &TID,
                &[(attr::XOR_MAPPED_ADDRESS, &xor[..7])],
            ),
            encode(
                BINDING_SUCCESS,
                &TID,
                &[(attr::XOR_MAPPED_ADDRESS, &[0, 3, 0, 0, 1, 2, 3, 4])],
            ),
            encode(
                BINDING_SUCCESS,
                &TID,
                &[(attr::XOR_MAPPED_ADDRESS, &[0, 2, 0, 0, 1, 2, 3, 4])],
            ),
            encode(BINDING_SUCCESS, &TID, &[(attr::MAPPED_ADDRESS, &[0, 1])]),
            encode(
                BINDING_SUCCESS,
                &TID,
                &[
                    (attr::FINGERPRINT, &[0; 4]),
                    (attr::XOR_MAPPED_ADDRESS, xor),
                ],
            ),
            encode(BINDING_SUCCESS, &TID, &[(attr::FINGERPRINT, &[0; 3])]),
        ];
        for (i, m) in cases.iter().enumerate() {
            let r = parse_binding_response(m, &TID);
            assert!(
                matches!(
                    r,
                    Err(DecodeError::Malformed(_) | DecodeError::BadFingerprint)
                ),
                "case {i}: {r:?}"
            );
        }
        let mut m = good.clone();
        m[0] |= 0x80;
        assert!(matches!(
            parse_binding_response(&m, &TID),
            Err(DecodeError::NotStun(_))
        ));
        let mut m = good.clone();
        m[4] = 0;
        assert!(matches!(
            parse_binding_response(&m, &TID),
            Err(DecodeError::NotStun(_))
        ));
        let m = encode(BINDING_SUCCESS, &TID, &[(attr::SOFTWARE, b"no address")]);
        assert!(matches!(
            parse_binding_response(&m, &TID),
            Err(DecodeError::NoMappedAddress)
        ));
        // A Binding indication / another method: not our answer.
        let m = encode(0x0011, &TID, &[(attr::XOR_MAPPED_ADDRESS, xor)]);
        assert!(matches!(
            parse_binding_response(&m, &TID),
            Err(DecodeError::UnexpectedType(0x0011))
        ));
    }

    /// Every single-byte change of the RFC vectors (all positions, all XOR values):
    /// never a panic, and a parse that still succeeds (e.g. FINGERPRINT's type turned
    /// into an unknown comprehension-optional attribute) yields the original address.
    #[test]
    fn every_single_byte_change() {
        for (v, want) in [
            (&IPV4_RESPONSE[..], v4_mapped()),
            (&IPV6_RESPONSE[..], v6_mapped()),
        ] {
            let mut m = v.to_vec();
            for at in 0..m.len() {
                for x in 1..=255u8 {
                    m[at] ^= x;
                    if let Ok(a) = parse_binding_response(&m, &TID) {
                        assert_eq!(a, want, "byte {at} ^ {x:#04x}");
                    }
                    m[at] ^= x;
                }
            }
        }
        // MESSAGE-INTEGRITY stretched over the FINGERPRINT: rejected by its length.
        let mut m = IPV4_RESPONSE;
        m[51] = 0x19;
        assert!(matches!(
            parse_binding_response(&m, &TID),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn truncations_of_the_vectors_never_succeed() {
        for v in [&IPV4_RESPONSE[..], &IPV6_RESPONSE[..]] {
            for n in 0..v.len() {
                assert!(parse_binding_response(&v[..n], &TID).is_err(), "prefix {n}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_binding_response(&bytes, &TID);
        }

        /// A random body behind a valid header (so the attribute walk is exercised).
        #[test]
        fn random_attributes_never_panic(
            success in any::<bool>(),
            body in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut body = body;
            body.truncate(body.len() / 4 * 4);
            let t = if success { BINDING_SUCCESS } else { BINDING_ERROR };
            let mut m = encode(t, &TID, &[]);
            m.extend_from_slice(&body);
            let len = body.len() as u16;
            m[2..4].copy_from_slice(&len.to_be_bytes());
            let _ = parse_binding_response(&m, &TID);
        }

        /// Mutated RFC vectors never panic. One changed byte either fails the parse or
        /// leaves the mapped address intact (e.g. when it turns FINGERPRINT into an
        /// unknown comprehension-optional attribute): the FINGERPRINT covers the rest.
        #[test]
        fn mutated_vectors(
            v6 in any::<bool>(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..), 1..4),
        ) {
            let orig = if v6 { &IPV6_RESPONSE[..] } else { &IPV4_RESPONSE[..] };
            let mut m = orig.to_vec();
            for (i, x) in &flips {
                let at = i.index(m.len());
                m[at] ^= *x;
            }
            let r = parse_binding_response(&m, &TID);
            if flips.len() == 1 {
                if let Ok(a) = r {
                    prop_assert_eq!(a, if v6 { v6_mapped() } else { v4_mapped() });
                }
            }
        }
    }
}
