//! The kernel slow path: packets the fast path cannot finish (unknown neighbour, internal
//! or unmapped traffic, flow collisions) are handed to the kernel through raw sockets
//! (`IP_HDRINCL` / `IPV6_HDRINCL`) in the daemon's network namespace; the kernel routes
//! them, resolves ARP/ND, and applies its own policy. Also sends the ICMP errors a router
//! sends when a packet that grew does not fit the egress MTU.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use crate::wire::{emit, ipv4, ipv6};

/// Raw sockets shared by all workers (the kernel serialises sends; no lock here).
pub struct SlowPath {
    v4: Option<OwnedFd>,
    v6: Option<OwnedFd>,
    icmp4: Option<OwnedFd>,
    icmp6: Option<OwnedFd>,
}

fn raw_socket(domain: i32, proto: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); result checked.
    let fd = unsafe { libc::socket(domain, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, owned descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt_int(fd: &OwnedFd, level: i32, name: i32, v: i32) -> io::Result<()> {
    // SAFETY: valid fd and pointer to a local int.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as u32,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

const IPV6_HDRINCL: i32 = 36;

impl SlowPath {
    /// Opens the raw sockets (needs CAP_NET_RAW). IPv6 failures are tolerated (IPv6
    /// disabled); IPv4 must work.
    pub fn new() -> io::Result<SlowPath> {
        let v4 = raw_socket(libc::AF_INET, libc::IPPROTO_RAW)?;
        let v6 = raw_socket(libc::AF_INET6, libc::IPPROTO_RAW)
            .and_then(|s| setsockopt_int(&s, libc::IPPROTO_IPV6, IPV6_HDRINCL, 1).map(|_| s))
            .ok();
        let icmp4 = raw_socket(libc::AF_INET, libc::IPPROTO_ICMP).ok();
        let icmp6 = raw_socket(libc::AF_INET6, libc::IPPROTO_ICMPV6).ok();
        Ok(SlowPath {
            v4: Some(v4),
            v6,
            icmp4,
            icmp6,
        })
    }

    /// Sends a whole IP packet (header included) through the kernel.
    pub fn send_ip(&self, packet: &[u8]) -> io::Result<()> {
        let (fd, dst) = match packet.first().map(|b| b >> 4) {
            Some(4) => {
                let p = ipv4::Packet::new_checked(packet)
                    .ok_or_else(|| io::Error::other("bad IPv4 packet"))?;
                (self.v4.as_ref(), SocketAddr::new(IpAddr::V4(p.dst()), 0))
            }
            Some(6) => {
                let p = ipv6::Packet::new_checked(packet)
                    .ok_or_else(|| io::Error::other("bad IPv6 packet"))?;
                (self.v6.as_ref(), SocketAddr::new(IpAddr::V6(p.dst()), 0))
            }
            _ => return Err(io::Error::other("not an IP packet")),
        };
        let fd = fd.ok_or_else(|| io::Error::other("no raw socket for this family"))?;
        send_to(fd, packet, dst)
    }

    /// ICMP "fragmentation needed" (type 3 code 4) to `to`, quoting `quote` (the start of
    /// the offending packet as its source sent it), with the next-hop MTU it must fit.
    pub fn icmp_frag_needed(&self, to: Ipv4Addr, quote: &[u8], mtu: u16) -> io::Result<()> {
        let mut msg = [0u8; 8 + emit::ICMP4_QUOTE];
        let len = emit::icmp4_frag_needed(quote, mtu, &mut msg);
        send_icmp(&self.icmp4, &msg[..len], IpAddr::V4(to))
    }

    /// ICMPv6 "packet too big" to `to` quoting `quote` (the kernel fills the checksum).
    pub fn icmp6_packet_too_big(&self, to: Ipv6Addr, quote: &[u8], mtu: u32) -> io::Result<()> {
        let mut msg = [0u8; 8 + emit::ICMP6_QUOTE];
        let len = emit::icmp6_packet_too_big(quote, mtu, &mut msg);
        send_icmp(&self.icmp6, &msg[..len], IpAddr::V6(to))
    }
}

fn send_icmp(fd: &Option<OwnedFd>, msg: &[u8], to: IpAddr) -> io::Result<()> {
    let fd = fd
        .as_ref()
        .ok_or_else(|| io::Error::other("no ICMP socket of this family"))?;
    send_to(fd, msg, SocketAddr::new(to, 0))
}

fn send_to(fd: &OwnedFd, buf: &[u8], dst: SocketAddr) -> io::Result<()> {
    let (sa, len) = sockaddr(dst);
    // SAFETY: valid fd, buffer and sockaddr of the given length.
    let r = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
            (&sa as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match a {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            (ss, std::mem::size_of::<libc::sockaddr_in>() as u32)
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as u16,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            (ss, std::mem::size_of::<libc::sockaddr_in6>() as u32)
        }
    }
}
