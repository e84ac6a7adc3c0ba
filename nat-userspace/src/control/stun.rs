//! A minimal RFC 8489 STUN client: one Binding transaction over UDP, to learn the
//! address a NAT (or the STUN server) sees us as.
//!
//! - [`binding_request`] builds the request (magic cookie, random 96-bit transaction id,
//!   optional FINGERPRINT);
//! - [`parse_binding_response`] is the pure, panic-free parser of the answer:
//!   XOR-MAPPED-ADDRESS (IPv4/IPv6), MAPPED-ADDRESS as the fallback for RFC 3489 servers,
//!   transaction id and class checks, error responses with their code, FINGERPRINT
//!   verification when present, comprehension-optional attributes ignored, unknown
//!   comprehension-required ones rejected (RFC 8489 §7.3.3/§7.3.4);
//! - [`query`] / [`discover`] run the transaction on a tokio `UdpSocket` with the
//!   retransmission schedule of RFC 8489 §6.2.1 (RTO doubling from 500 ms, a bounded
//!   number of requests and an overall deadline, see [`Retransmit`]).
//!
//! Datagrams that are not a valid answer to our transaction (malformed, another
//! transaction id, not STUN) are discarded as RFC 8489 §6.3 says; the transaction then
//! times out, and the error names the last thing discarded.

use std::{
    fmt, io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use tokio::{net::UdpSocket, time::Instant};

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

/// Why a STUN transaction or a response failed.
#[derive(Debug, thiserror::Error)]
pub enum StunError {
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
    /// The host name did not resolve (or not to an address of the wanted family).
    #[error("resolving STUN server {host}: {reason}")]
    Resolve { host: String, reason: String },
    /// No valid answer before the retransmission budget ran out.
    #[error("no valid answer from STUN server {server} after {requests} request(s){}", last_note(.last))]
    NoResponse {
        server: SocketAddr,
        requests: u32,
        elapsed: Duration,
        /// The last discarded answer or transient socket error (e.g. ICMP port
        /// unreachable).
        last: Option<String>,
    },
    /// The mapped address is not of the family asked for.
    #[error("STUN server {server} mapped us to {mapped}, not an {family} address")]
    WrongFamily {
        server: SocketAddr,
        mapped: SocketAddr,
        family: Family,
    },
    /// Socket setup or I/O failed.
    #[error("STUN socket: {0}")]
    Io(#[from] io::Error),
}

fn last_note(last: &Option<String>) -> String {
    last.as_ref()
        .map(|l| format!(" (last problem: {l})"))
        .unwrap_or_default()
}

/// An address family, to pick the STUN server's address (and check the mapped one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(a: IpAddr) -> Family {
        match a {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    fn unspecified(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// The retransmission schedule of one transaction (RFC 8489 §6.2.1, with a smaller
/// budget than the RFC's 39.5 s). Requests go out at 0, RTO, 3·RTO, 7·RTO, ... (the RTO
/// doubles) until `max_requests` were sent; the transaction fails at `deadline`.
/// Defaults: RTO 500 ms, 5 requests (0, 0.5, 1.5, 3.5, 7.5 s), deadline 8 s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retransmit {
    pub initial_rto: Duration,
    pub max_requests: u32,
    pub deadline: Duration,
}

impl Default for Retransmit {
    fn default() -> Retransmit {
        Retransmit {
            initial_rto: Duration::from_millis(500),
            max_requests: 5,
            deadline: Duration::from_secs(8),
        }
    }
}

/// How the client socket is set up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StunOptions {
    /// Local address to bind (the source address of the requests); `None`: the
    /// unspecified address of the server's family, the kernel picks the source.
    pub bind_addr: Option<IpAddr>,
    /// Interface to bind to with SO_BINDTODEVICE, so the requests leave through the
    /// outside interface whatever the routing table prefers; `None`: the kernel routes.
    pub bind_device: Option<String>,
    /// Append the FINGERPRINT attribute to requests.
    pub fingerprint: bool,
    pub retransmit: Retransmit,
}

/// The outcome of a successful Binding transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    /// Our address as the server saw it.
    pub mapped: SocketAddr,
    /// The server address that answered.
    pub server: SocketAddr,
    /// The local address of the socket used.
    pub local: SocketAddr,
    /// From the first request to the answer.
    pub elapsed: Duration,
}

/// A fresh random transaction id (getrandom(2); falls back to the process's random
/// hasher keys if the syscall is unavailable).
pub fn new_transaction_id() -> TransactionId {
    let mut id = [0u8; 12];
    let mut filled = 0usize;
    while filled < id.len() {
        // SAFETY: writes at most `id.len() - filled` bytes into `id[filled..]`.
        let rc = unsafe { libc::getrandom(id[filled..].as_mut_ptr().cast(), id.len() - filled, 0) };
        if rc > 0 {
            filled += rc as usize;
            continue;
        }
        if rc < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        break;
    }
    if filled < id.len() {
        use std::hash::{BuildHasher, Hasher};
        let s = std::collections::hash_map::RandomState::new();
        let mut h = s.build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        let a = h.finish();
        h.write_u64(a);
        let b = h.finish();
        id[..8].copy_from_slice(&a.to_be_bytes());
        id[8..].copy_from_slice(&b.to_be_bytes()[..4]);
    }
    id
}

/// A Binding request with transaction id `tid` (no attributes, or FINGERPRINT only).
pub fn binding_request(tid: &TransactionId, fingerprint: bool) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEADER_LEN + 8);
    m.extend_from_slice(&BINDING_REQUEST.to_be_bytes());
    m.extend_from_slice(&0u16.to_be_bytes());
    m.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    m.extend_from_slice(tid);
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
fn decode_address(v: &[u8], xor: bool, tid: &TransactionId) -> Result<SocketAddr, StunError> {
    let name = if xor {
        "XOR-MAPPED-ADDRESS"
    } else {
        "MAPPED-ADDRESS"
    };
    if v.len() < 4 {
        return Err(StunError::Malformed(format!("{name} shorter than 4 bytes")));
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
            return Err(StunError::Malformed(format!(
                "{name} of family {family} has length {n}"
            )))
        }
        (f, _) => {
            return Err(StunError::Malformed(format!(
                "{name} with unknown address family {f}"
            )))
        }
    };
    Ok(SocketAddr::new(ip, port))
}

/// Decodes an ERROR-CODE value into (code, reason).
fn decode_error_code(v: &[u8]) -> Result<(u16, String), StunError> {
    if v.len() < 4 {
        return Err(StunError::Malformed(
            "ERROR-CODE shorter than 4 bytes".into(),
        ));
    }
    let class = u16::from(v[2] & 0x07);
    let number = u16::from(v[3]);
    if !(3..=6).contains(&class) || number > 99 {
        return Err(StunError::Malformed(format!(
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
pub fn parse_binding_response(msg: &[u8], tid: &TransactionId) -> Result<SocketAddr, StunError> {
    if msg.len() < HEADER_LEN {
        return Err(StunError::Malformed(format!(
            "{} bytes, shorter than the 20-byte header",
            msg.len()
        )));
    }
    let mtype = be16(msg, 0);
    if mtype & 0xC000 != 0 {
        return Err(StunError::NotStun("the two leading bits are not zero"));
    }
    if be32(msg, 4) != MAGIC_COOKIE {
        return Err(StunError::NotStun("no magic cookie"));
    }
    let len = usize::from(be16(msg, 2));
    if len % 4 != 0 {
        return Err(StunError::Malformed(format!(
            "message length {len} is not a multiple of 4"
        )));
    }
    if HEADER_LEN + len != msg.len() {
        return Err(StunError::Malformed(format!(
            "message length {len} does not match the {}-byte datagram",
            msg.len()
        )));
    }
    if msg[8..20] != tid[..] {
        return Err(StunError::TransactionMismatch);
    }
    if mtype != BINDING_SUCCESS && mtype != BINDING_ERROR {
        return Err(StunError::UnexpectedType(mtype));
    }

    let mut xor_mapped = None;
    let mut mapped = None;
    let mut error = None;
    let mut unknown = Vec::new();
    let mut after_integrity = false;
    let mut off = HEADER_LEN;
    while off < msg.len() {
        if msg.len() - off < 4 {
            return Err(StunError::Malformed("truncated attribute header".into()));
        }
        let atype = be16(msg, off);
        let alen = usize::from(be16(msg, off + 2));
        let start = off + 4;
        let padded = (alen + 3) & !3;
        if msg.len() - start < padded {
            return Err(StunError::Malformed(format!(
                "attribute {atype:#06x} of length {alen} overruns the message"
            )));
        }
        let v = &msg[start..start + alen];
        let next = start + padded;
        match atype {
            attr::FINGERPRINT => {
                if alen != 4 {
                    return Err(StunError::Malformed(format!(
                        "FINGERPRINT of length {alen}"
                    )));
                }
                if next != msg.len() {
                    return Err(StunError::Malformed(
                        "FINGERPRINT is not the last attribute".into(),
                    ));
                }
                if crc32(&msg[..off]) ^ FINGERPRINT_XOR != be32(v, 0) {
                    return Err(StunError::BadFingerprint);
                }
            }
            attr::MESSAGE_INTEGRITY if alen != 20 => {
                return Err(StunError::Malformed(format!(
                    "MESSAGE-INTEGRITY of length {alen}"
                )))
            }
            attr::MESSAGE_INTEGRITY_SHA256 if !(16..=32).contains(&alen) || alen % 4 != 0 => {
                return Err(StunError::Malformed(format!(
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
            Some((code, reason)) => Err(StunError::ErrorResponse { code, reason }),
            None => Err(StunError::Malformed(
                "error response without ERROR-CODE".into(),
            )),
        };
    }
    if !unknown.is_empty() {
        return Err(StunError::UnknownRequired(unknown));
    }
    xor_mapped.or(mapped).ok_or(StunError::NoMappedAddress)
}

/// Resolves `host` (a name or an address literal, brackets allowed) to the first address
/// of `family` (any family when `None`).
pub async fn resolve(
    host: &str,
    port: u16,
    family: Option<Family>,
) -> Result<SocketAddr, StunError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let err = |reason: String| StunError::Resolve {
        host: host.to_string(),
        reason,
    };
    let addrs = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| err(e.to_string()))?;
    let mut seen = false;
    for a in addrs {
        seen = true;
        if family.is_none_or(|f| Family::of(a.ip()) == f) {
            return Ok(a);
        }
    }
    Err(err(match (seen, family) {
        (true, Some(f)) => format!("no {f} address"),
        _ => "no address".to_string(),
    }))
}

/// Opens the client socket: bound to `bind_addr` (or the unspecified address of the
/// server's family), to `bind_device` when set, and connected to the server (so only
/// its datagrams are read and ICMP errors are reported).
async fn client_socket(server: SocketAddr, opts: &StunOptions) -> Result<UdpSocket, StunError> {
    let family = Family::of(server.ip());
    let local = match opts.bind_addr {
        Some(a) if Family::of(a) != family => {
            return Err(StunError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bind address {a} and STUN server {server} are of different families"),
            )))
        }
        Some(a) => a,
        None => family.unspecified(),
    };
    let sock = UdpSocket::bind(SocketAddr::new(local, 0)).await?;
    if let Some(dev) = opts.bind_device.as_deref() {
        sock.bind_device(Some(dev.as_bytes()))
            .map_err(|e| io::Error::new(e.kind(), format!("SO_BINDTODEVICE {dev}: {e}")))?;
    }
    sock.connect(server).await?;
    Ok(sock)
}

/// Socket errors that do not end the transaction: ICMP errors reported on a connected
/// socket (the server may come up; the retransmissions go on).
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::Interrupted
    ) || matches!(
        e.raw_os_error(),
        Some(libc::EHOSTUNREACH | libc::ENETUNREACH | libc::ECONNREFUSED)
    )
}

/// One Binding transaction with `server`: our mapped address, or why not.
pub async fn query(server: SocketAddr, opts: &StunOptions) -> Result<Binding, StunError> {
    let sock = client_socket(server, opts).await?;
    let local = sock.local_addr()?;
    let tid = new_transaction_id();
    let request = binding_request(&tid, opts.fingerprint);
    let rt = &opts.retransmit;
    let start = Instant::now();
    let deadline = start + rt.deadline;
    let mut rto = rt.initial_rto;
    let mut sent = 0u32;
    let mut next_send = start;
    let mut last: Option<String> = None;
    let mut buf = vec![0u8; 4096];
    loop {
        let now = Instant::now();
        if sent < rt.max_requests.max(1) && now >= next_send && now < deadline {
            match sock.send(&request).await {
                Ok(_) => {}
                Err(e) if transient(&e) => last = Some(e.to_string()),
                Err(e) => return Err(StunError::Io(e)),
            }
            sent += 1;
            next_send = now + rto;
            rto = rto.saturating_mul(2);
        }
        let wake = if sent < rt.max_requests.max(1) {
            next_send.min(deadline)
        } else {
            deadline
        };
        match tokio::time::timeout_at(wake, sock.recv(&mut buf)).await {
            Err(_) => {
                if Instant::now() >= deadline {
                    return Err(StunError::NoResponse {
                        server,
                        requests: sent,
                        elapsed: start.elapsed(),
                        last,
                    });
                }
            }
            Ok(Err(e)) if transient(&e) => last = Some(e.to_string()),
            Ok(Err(e)) => return Err(StunError::Io(e)),
            Ok(Ok(n)) => match parse_binding_response(&buf[..n], &tid) {
                Ok(mapped) => {
                    return Ok(Binding {
                        mapped,
                        server,
                        local,
                        elapsed: start.elapsed(),
                    })
                }
                Err(e @ (StunError::ErrorResponse { .. } | StunError::UnknownRequired(_))) => {
                    return Err(e)
                }
                Err(e) => {
                    tracing::debug!(%server, "discarding STUN answer: {e}");
                    last = Some(e.to_string());
                }
            },
        }
    }
}

/// Resolves `host:port` (to `family` when given) and runs one Binding transaction. With
/// a `family`, a mapped address of the other family is an error.
pub async fn discover(
    host: &str,
    port: u16,
    family: Option<Family>,
    opts: &StunOptions,
) -> Result<Binding, StunError> {
    let family = family.or(opts.bind_addr.map(Family::of));
    let server = resolve(host, port, family).await?;
    let b = query(server, opts).await?;
    if let Some(f) = family {
        if Family::of(b.mapped.ip()) != f {
            return Err(StunError::WrongFamily {
                server,
                mapped: b.mapped,
                family: f,
            });
        }
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 5769 §2.1-2.3 transaction id.
    const TID: TransactionId = [
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ];

    /// RFC 5769 §2.2 "Sample IPv4 Response" (mapped 192.0.2.1:32853).
    const IPV4_RESPONSE: [u8; 80] = [
        0x01, 0x01, 0x00, 0x3c, // Response type and message length
        0x21, 0x12, 0xa4, 0x42, // Magic cookie
        0xb7, 0xe7, 0xa7, 0x01, // }
        0xbc, 0x34, 0xd6, 0x86, // }  Transaction ID
        0xfa, 0x87, 0xdf, 0xae, // }
        0x80, 0x22, 0x00, 0x0b, // SOFTWARE attribute header
        0x74, 0x65, 0x73, 0x74, // }
        0x20, 0x76, 0x65, 0x63, // }  UTF-8 server name
        0x74, 0x6f, 0x72, 0x20, // }
        0x00, 0x20, 0x00, 0x08, // XOR-MAPPED-ADDRESS attribute header
        0x00, 0x01, 0xa1, 0x47, // Address family (IPv4) and xor'd mapped port number
        0xe1, 0x12, 0xa6, 0x43, // Xor'd mapped IPv4 address
        0x00, 0x08, 0x00, 0x14, // MESSAGE-INTEGRITY attribute header
        0x2b, 0x91, 0xf5, 0x99, // }
        0xfd, 0x9e, 0x90, 0xc3, // }
        0x8c, 0x74, 0x89, 0xf9, // }  HMAC-SHA1 fingerprint
        0x2a, 0xf9, 0xba, 0x53, // }
        0xf0, 0x6b, 0xe7, 0xd7, // }
        0x80, 0x28, 0x00, 0x04, // FINGERPRINT attribute header
        0xc0, 0x7d, 0x4c, 0x96, // CRC32 fingerprint
    ];

    /// RFC 5769 §2.3 "Sample IPv6 Response" (mapped
    /// [2001:db8:1234:5678:11:2233:4455:6677]:32853).
    const IPV6_RESPONSE: [u8; 92] = [
        0x01, 0x01, 0x00, 0x48, // Response type and message length
        0x21, 0x12, 0xa4, 0x42, // Magic cookie
        0xb7, 0xe7, 0xa7, 0x01, // }
        0xbc, 0x34, 0xd6, 0x86, // }  Transaction ID
        0xfa, 0x87, 0xdf, 0xae, // }
        0x80, 0x22, 0x00, 0x0b, // SOFTWARE attribute header
        0x74, 0x65, 0x73, 0x74, // }
        0x20, 0x76, 0x65, 0x63, // }  UTF-8 server name
        0x74, 0x6f, 0x72, 0x20, // }
        0x00, 0x20, 0x00, 0x14, // XOR-MAPPED-ADDRESS attribute header
        0x00, 0x02, 0xa1, 0x47, // Address family (IPv6) and xor'd mapped port number
        0x01, 0x13, 0xa9, 0xfa, // }
        0xa5, 0xd3, 0xf1, 0x79, // }  Xor'd mapped IPv6 address
        0xbc, 0x25, 0xf4, 0xb5, // }
        0xbe, 0xd2, 0xb9, 0xd9, // }
        0x00, 0x08, 0x00, 0x14, // MESSAGE-INTEGRITY attribute header
        0xa3, 0x82, 0x95, 0x4e, // }
        0x4b, 0xe6, 0x7b, 0xf1, // }
        0x17, 0x84, 0xc9, 0x7c, // }  HMAC-SHA1 fingerprint
        0x82, 0x92, 0xc2, 0x75, // }
        0xbf, 0xe3, 0xed, 0x41, // }
        0x80, 0x28, 0x00, 0x04, // FINGERPRINT attribute header
        0xc8, 0xfb, 0x0b, 0x4c, // CRC32 fingerprint
    ];

    /// RFC 5769 §2.1 "Sample Request" (its FINGERPRINT checks our CRC).
    const REQUEST: [u8; 108] = [
        0x00, 0x01, 0x00, 0x58, // Request type and message length
        0x21, 0x12, 0xa4, 0x42, // Magic cookie
        0xb7, 0xe7, 0xa7, 0x01, // }
        0xbc, 0x34, 0xd6, 0x86, // }  Transaction ID
        0xfa, 0x87, 0xdf, 0xae, // }
        0x80, 0x22, 0x00, 0x10, // SOFTWARE attribute header
        0x53, 0x54, 0x55, 0x4e, // }
        0x20, 0x74, 0x65, 0x73, // }  User-agent...
        0x74, 0x20, 0x63, 0x6c, // }  ...name
        0x69, 0x65, 0x6e, 0x74, // }
        0x00, 0x24, 0x00, 0x04, // PRIORITY attribute header
        0x6e, 0x00, 0x01, 0xff, // ICE priority value
        0x80, 0x29, 0x00, 0x08, // ICE-CONTROLLED attribute header
        0x93, 0x2f, 0xf9, 0xb1, // }  Pseudo-random tie breaker...
        0x51, 0x26, 0x3b, 0x36, // }   ...for ICE control
        0x00, 0x06, 0x00, 0x09, // USERNAME attribute header
        0x65, 0x76, 0x74, 0x6a, // }
        0x3a, 0x68, 0x36, 0x76, // }  Username (9 bytes) and padding (3 bytes)
        0x59, 0x20, 0x20, 0x20, // }
        0x00, 0x08, 0x00, 0x14, // MESSAGE-INTEGRITY attribute header
        0x9a, 0xea, 0xa7, 0x0c, // }
        0xbf, 0xd8, 0xcb, 0x56, // }
        0x78, 0x1e, 0xf2, 0xb5, // }  HMAC-SHA1 fingerprint
        0xb2, 0xd3, 0xf2, 0x49, // }
        0xc1, 0xb5, 0x71, 0xa2, // }
        0x80, 0x28, 0x00, 0x04, // FINGERPRINT attribute header
        0xe5, 0x7a, 0x3b, 0xcf, // CRC32 fingerprint
    ];

    fn v4_mapped() -> SocketAddr {
        "192.0.2.1:32853".parse().unwrap()
    }

    fn v6_mapped() -> SocketAddr {
        "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
            .parse()
            .unwrap()
    }

    /// A message with the given type and attributes (length field set, no FINGERPRINT).
    fn message(mtype: u16, tid: &TransactionId, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut m = Vec::new();
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
            Err(StunError::UnexpectedType(BINDING_REQUEST))
        ));
    }

    #[test]
    fn other_transaction_is_rejected() {
        let mut other = TID;
        other[11] ^= 1;
        assert!(matches!(
            parse_binding_response(&IPV4_RESPONSE, &other),
            Err(StunError::TransactionMismatch)
        ));
    }

    #[test]
    fn corrupted_fingerprint_is_rejected() {
        let mut m = IPV4_RESPONSE;
        m[30] ^= 0x01; // inside SOFTWARE
        assert!(matches!(
            parse_binding_response(&m, &TID),
            Err(StunError::BadFingerprint)
        ));
    }

    #[test]
    fn request_layout_and_fingerprint() {
        let tid = new_transaction_id();
        let r = binding_request(&tid, false);
        assert_eq!(r.len(), 20);
        assert_eq!(&r[..8], &[0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42]);
        assert_eq!(&r[8..], &tid);
        let r = binding_request(&tid, true);
        assert_eq!(r.len(), 28);
        assert_eq!(be16(&r, 2), 8);
        assert_eq!(be16(&r, 20), attr::FINGERPRINT);
        assert_eq!(crc32(&r[..20]) ^ FINGERPRINT_XOR, be32(&r, 24));
        // Two ids differ (96 random bits).
        assert_ne!(new_transaction_id(), new_transaction_id());
    }

    #[test]
    fn mapped_address_fallback_and_xor_precedence() {
        let plain_v4 = [0, 1, 0x13, 0xc4, 198, 51, 100, 7]; // 198.51.100.7:5060
        let m = message(BINDING_SUCCESS, &TID, &[(attr::MAPPED_ADDRESS, &plain_v4)]);
        assert_eq!(
            parse_binding_response(&m, &TID).unwrap(),
            "198.51.100.7:5060".parse().unwrap()
        );
        let mut plain_v6 = vec![0, 2, 0x0d, 0x96];
        plain_v6.extend_from_slice(&"2001:db8::9".parse::<Ipv6Addr>().unwrap().octets());
        let m = message(BINDING_SUCCESS, &TID, &[(attr::MAPPED_ADDRESS, &plain_v6)]);
        assert_eq!(
            parse_binding_response(&m, &TID).unwrap(),
            "[2001:db8::9]:3478".parse().unwrap()
        );
        // Both present: XOR-MAPPED-ADDRESS wins, whatever the order.
        let xor = &IPV4_RESPONSE[40..48];
        let m = message(
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
        let m = message(BINDING_ERROR, &TID, &[(attr::ERROR_CODE, &v)]);
        match parse_binding_response(&m, &TID) {
            Err(StunError::ErrorResponse { code, reason }) => {
                assert_eq!(code, 420);
                assert_eq!(reason, "Unknown Attribute");
            }
            other => panic!("{other:?}"),
        }
        let m = message(BINDING_ERROR, &TID, &[]);
        assert!(matches!(
            parse_binding_response(&m, &TID),
            Err(StunError::Malformed(_))
        ));
        let m = message(BINDING_ERROR, &TID, &[(attr::ERROR_CODE, &[0, 0, 7, 0])]);
        assert!(matches!(
            parse_binding_response(&m, &TID),
            Err(StunError::Malformed(_))
        ));
    }

    #[test]
    fn unknown_attributes() {
        let xor = &IPV4_RESPONSE[40..48];
        // Comprehension-optional: ignored.
        let m = message(
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
        let m = message(
            BINDING_SUCCESS,
            &TID,
            &[(0x7F00, b"x"), (attr::XOR_MAPPED_ADDRESS, xor)],
        );
        assert!(matches!(
            parse_binding_response(&m, &TID),
            Err(StunError::UnknownRequired(v)) if v == [0x7F00]
        ));
        // Anything after MESSAGE-INTEGRITY (but FINGERPRINT) is ignored, even unknown.
        let m = message(
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
        let good = message(BINDING_SUCCESS, &TID, &[(attr::XOR_MAPPED_ADDRESS, xor)]);
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
            message(
                BINDING_SUCCESS,
                &TID,
                &[(attr::XOR_MAPPED_ADDRESS, &xor[..7])],
            ),
            message(
                BINDING_SUCCESS,
                &TID,
                &[(attr::XOR_MAPPED_ADDRESS, &[0, 3, 0, 0, 1, 2, 3, 4])],
            ),
            message(
                BINDING_SUCCESS,
                &TID,
                &[(attr::XOR_MAPPED_ADDRESS, &[0, 2, 0, 0, 1, 2, 3, 4])],
            ),
            message(BINDING_SUCCESS, &TID, &[(attr::MAPPED_ADDRESS, &[0, 1])]),
            message(
                BINDING_SUCCESS,
                &TID,
                &[
                    (attr::FINGERPRINT, &[0; 4]),
                    (attr::XOR_MAPPED_ADDRESS, xor),
                ],
            ),
            message(BINDING_SUCCESS, &TID, &[(attr::FINGERPRINT, &[0; 3])]),
        ];
        for (i, m) in cases.iter().enumerate() {
            let r = parse_binding_response(m, &TID);
            assert!(
                matches!(r, Err(StunError::Malformed(_) | StunError::BadFingerprint)),
                "case {i}: {r:?}"
            );
        }
        let mut m = good.clone();
        m[0] |= 0x80;
        assert!(matches!(
            parse_binding_response(&m, &TID),
            Err(StunError::NotStun(_))
        ));
        let mut m = good.clone();
        m[4] = 0;
        assert!(matches!(
            parse_binding_response(&m, &TID),
            Err(StunError::NotStun(_))
        ));
        let m = message(BINDING_SUCCESS, &TID, &[(attr::SOFTWARE, b"no address")]);
        assert!(matches!(
            parse_binding_response(&m, &TID),
            Err(StunError::NoMappedAddress)
        ));
        // A Binding indication / another method: not our answer.
        let m = message(0x0011, &TID, &[(attr::XOR_MAPPED_ADDRESS, xor)]);
        assert!(matches!(
            parse_binding_response(&m, &TID),
            Err(StunError::UnexpectedType(0x0011))
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
            Err(StunError::Malformed(_))
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
            let mut m = message(t, &TID, &[]);
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

    /// The client against an in-process responder on loopback: retransmission is
    /// exercised by dropping the first requests.
    #[tokio::test(flavor = "current_thread")]
    async fn client_retransmits_until_answered() {
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let responder = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            let mut tids = Vec::new();
            loop {
                let (n, from) = server.recv_from(&mut buf).await.unwrap();
                assert!(n >= 20);
                let mut tid = [0u8; 12];
                tid.copy_from_slice(&buf[8..20]);
                tids.push(tid);
                if tids.len() < 3 {
                    continue; // "lost"
                }
                let mut xor = vec![0, 1];
                xor.extend_from_slice(&((from.port()) ^ 0x2112).to_be_bytes());
                let IpAddr::V4(ip) = from.ip() else {
                    unreachable!()
                };
                xor.extend_from_slice(&(u32::from(ip) ^ MAGIC_COOKIE).to_be_bytes());
                let mut m = message(BINDING_SUCCESS, &tid, &[(attr::XOR_MAPPED_ADDRESS, &xor)]);
                append_fingerprint(&mut m);
                server.send_to(&m, from).await.unwrap();
                return tids;
            }
        });
        let opts = StunOptions {
            fingerprint: true,
            retransmit: Retransmit {
                initial_rto: Duration::from_millis(20),
                max_requests: 5,
                deadline: Duration::from_secs(5),
            },
            ..StunOptions::default()
        };
        let b = query(addr, &opts).await.unwrap();
        assert_eq!(b.mapped, b.local);
        let tids = responder.await.unwrap();
        assert_eq!(tids.len(), 3);
        assert!(
            tids.iter().all(|t| *t == tids[0]),
            "retransmissions keep the transaction id"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn client_gives_up_within_the_budget() {
        // A bound socket that never answers.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let opts = StunOptions {
            retransmit: Retransmit {
                initial_rto: Duration::from_millis(10),
                max_requests: 3,
                deadline: Duration::from_millis(200),
            },
            ..StunOptions::default()
        };
        let t = std::time::Instant::now();
        let sent = match query(silent.local_addr().unwrap(), &opts).await {
            Err(StunError::NoResponse { requests, .. }) => requests,
            other => panic!("{other:?}"),
        };
        // 3 unless the runtime was starved past the deadline.
        assert!((1..=3).contains(&sent), "{sent}");
        assert!(t.elapsed() < Duration::from_secs(2));
        let mut buf = [0u8; 64];
        silent.set_nonblocking(true).unwrap();
        let mut got = 0;
        while silent.recv(&mut buf).is_ok() {
            got += 1;
        }
        assert_eq!(got, sent);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn resolve_literals_and_families() {
        assert_eq!(
            resolve("127.0.0.1", 3478, None).await.unwrap(),
            "127.0.0.1:3478".parse().unwrap()
        );
        assert_eq!(
            resolve("[::1]", 3478, Some(Family::V6)).await.unwrap(),
            "[::1]:3478".parse().unwrap()
        );
        assert!(matches!(
            resolve("127.0.0.1", 3478, Some(Family::V6)).await,
            Err(StunError::Resolve { .. })
        ));
    }
}
