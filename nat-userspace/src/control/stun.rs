//! A minimal RFC 8489 STUN client: one Binding transaction over UDP, to learn the
//! address a NAT (or the STUN server) sees us as. The message codec is
//! [`crate::wire::stun`]; here [`query`] / [`discover`] run the transaction on a tokio
//! `UdpSocket` with the retransmission schedule of RFC 8489 §6.2.1 (RTO doubling from
//! 500 ms, a bounded number of requests and an overall deadline, see [`Retransmit`]).
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

pub use crate::wire::stun::DecodeError;
use crate::wire::stun::{binding_request, parse_binding_response, TransactionId};

/// Why a STUN transaction failed.
#[derive(Debug, thiserror::Error)]
pub enum StunError {
    /// The answer could not be used (malformed, an error response, ...).
    #[error(transparent)]
    Decode(#[from] DecodeError),
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
                Err(e @ (DecodeError::ErrorResponse { .. } | DecodeError::UnknownRequired(_))) => {
                    return Err(e.into())
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
    use crate::wire::stun::{append_fingerprint, attr, encode, BINDING_SUCCESS, MAGIC_COOKIE};

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
                let mut m = encode(BINDING_SUCCESS, &tid, &[(attr::XOR_MAPPED_ADDRESS, &xor)]);
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

    #[test]
    fn transaction_ids_differ() {
        // 96 random bits.
        assert_ne!(new_transaction_id(), new_transaction_id());
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
