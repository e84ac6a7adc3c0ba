//! Synchronous rtnetlink plumbing for the control plane, the one netlink client of the
//! daemon: one request socket for queries (`ip route get`, neighbour and address dumps,
//! link lookups) and one event socket subscribed to
//! multicast groups. The message format is `netlink-packet-route`'s; this module only
//! frames requests, matches replies by sequence number and maps kernel errors.
//!
//! Nothing here panics on what the kernel sends: undecodable messages are skipped (or
//! reported as an error for single-reply requests), and a socket that failed mid-dump is
//! reopened before the next request (an abandoned dump would otherwise make the kernel
//! answer EBUSY to the next one).

use std::{
    io,
    net::IpAddr,
    os::fd::{AsRawFd, RawFd},
    time::Duration,
};

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_DUMP_INTR,
    NLM_F_REQUEST,
};
use netlink_packet_route::{
    address::AddressMessage,
    link::{LinkAttribute, LinkFlags, LinkMessage},
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage},
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteMetric, RouteType, RouteVia},
    AddressFamily, RouteNetlinkMessage,
};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// Multicast groups (`RTNLGRP_*`, linux/rtnetlink.h) for [`EventSocket::open`].
pub mod groups {
    pub const LINK: u32 = libc::RTNLGRP_LINK;
    pub const IPV4_IFADDR: u32 = libc::RTNLGRP_IPV4_IFADDR;
    pub const IPV6_IFADDR: u32 = libc::RTNLGRP_IPV6_IFADDR;
    pub const NEIGH: u32 = libc::RTNLGRP_NEIGH;
    pub const IPV4_ROUTE: u32 = libc::RTNLGRP_IPV4_ROUTE;
    pub const IPV6_ROUTE: u32 = libc::RTNLGRP_IPV6_ROUTE;
}

/// Neighbour states (`NUD_*`, linux/neighbour.h) whose link-layer address may be used.
pub const NUD_USABLE: u16 =
    NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT | NUD_NOARP;
pub const NUD_INCOMPLETE: u16 = 0x01;
pub const NUD_REACHABLE: u16 = 0x02;
pub const NUD_STALE: u16 = 0x04;
pub const NUD_DELAY: u16 = 0x08;
pub const NUD_PROBE: u16 = 0x10;
pub const NUD_FAILED: u16 = 0x20;
pub const NUD_NOARP: u16 = 0x40;
pub const NUD_PERMANENT: u16 = 0x80;

/// How long a query waits for the kernel's answer before giving up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);
/// Receive buffer; grown when the kernel sends a larger datagram (the request then fails
/// once and succeeds on retry).
const INITIAL_BUF: usize = 64 * 1024;
/// Requested kernel receive buffer of the event socket (capped by net.core.rmem_max).
const EVENT_RCVBUF: libc::c_int = 4 * 1024 * 1024;

/// The answer of `ip route get DST` when the kernel routes DST as unicast.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Output interface (RTA_OIF).
    pub oif: u32,
    /// Gateway (RTA_GATEWAY, or RTA_VIA for a gateway of the other family); `None` when
    /// the destination is on-link.
    pub gateway: Option<IpAddr>,
    /// The route's (or cached path) MTU metric (RTAX_MTU), when the kernel reports one.
    pub mtu: Option<u32>,
}

/// One neighbour-table entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub ifindex: u32,
    pub ip: IpAddr,
    /// NDA_LLADDR (absent for INCOMPLETE/FAILED entries).
    pub lladdr: Option<Vec<u8>>,
    /// `NUD_*` bits.
    pub state: u16,
}

impl Neighbour {
    /// The entry's Ethernet address when its state allows using it.
    pub fn usable_mac(&self) -> Option<[u8; 6]> {
        if self.state & NUD_USABLE == 0 {
            return None;
        }
        let mac: [u8; 6] = self.lladdr.as_deref()?.try_into().ok()?;
        (mac != [0; 6]).then_some(mac)
    }
}

/// One interface, as RTM_GETLINK reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub ifindex: u32,
    /// IFLA_ADDRESS (empty when the link has none).
    pub address: Vec<u8>,
    /// IFLA_MTU (0 when absent).
    pub mtu: u32,
    /// IFF_UP.
    pub up: bool,
}

/// A change notification from [`EventSocket::drain`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// RTM_NEWLINK / RTM_DELLINK.
    Link { ifindex: Option<u32> },
    /// RTM_NEWNEIGH / RTM_DELNEIGH (`ifindex` is `None` when the message did not decode).
    Neighbour { ifindex: Option<u32> },
    /// RTM_NEWROUTE / RTM_DELROUTE (either family).
    Route,
    /// RTM_NEWADDR / RTM_DELADDR (either family).
    Address,
    /// The kernel dropped notifications (ENOBUFS): resynchronise everything.
    Lost,
}

/// Why a request failed: the kernel said no (a NACK, the socket is fine), or the
/// exchange itself failed (the socket is reopened before the next request).
enum Failure {
    Nack(io::Error),
    Io(io::Error),
}

impl From<Failure> for io::Error {
    fn from(f: Failure) -> io::Error {
        match f {
            Failure::Nack(e) | Failure::Io(e) => e,
        }
    }
}

fn open_socket() -> io::Result<Socket> {
    let mut sock = Socket::new(NETLINK_ROUTE)?;
    sock.bind_auto()?;
    sock.connect(&SocketAddr::new(0, 0))?;
    Ok(sock)
}

fn set_recv_timeout(fd: RawFd, t: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: t.as_secs() as libc::time_t,
        tv_usec: t.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: valid fd, pointer to a local of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one datagram into `buf` (looping over EINTR). A datagram larger than `buf`
/// grows `buf` and fails (its content was cut).
fn recv_datagram(sock: &Socket, buf: &mut Vec<u8>, flags: libc::c_int) -> io::Result<usize> {
    loop {
        match sock.recv(&mut &mut buf[..], flags | libc::MSG_TRUNC) {
            Ok(n) if n > buf.len() => {
                buf.resize(n.next_power_of_two(), 0);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("netlink datagram of {n} bytes truncated (buffer enlarged)"),
                ));
            }
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Splits a datagram into netlink messages: `(message_type, flags, seq, bytes)`.
fn messages(datagram: &[u8]) -> impl Iterator<Item = io::Result<(u16, u16, u32, &[u8])>> {
    let mut off = 0usize;
    std::iter::from_fn(move || {
        if off >= datagram.len() {
            return None;
        }
        let rest = &datagram[off..];
        let nb = match NetlinkBuffer::new_checked(rest) {
            Ok(nb) => nb,
            Err(e) => {
                off = datagram.len();
                return Some(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("malformed netlink message: {e}"),
                )));
            }
        };
        let len = nb.length() as usize; // new_checked: header size <= len <= rest.len()
        let item = (
            nb.message_type(),
            nb.flags(),
            nb.sequence_number(),
            &rest[..len],
        );
        off += (len + 3) & !3;
        Some(Ok(item))
    })
}

/// The request socket (`NETLINK_ROUTE`, unicast only).
pub struct RtnlSocket {
    sock: Option<Socket>,
    seq: u32,
    buf: Vec<u8>,
}

impl RtnlSocket {
    pub fn open() -> io::Result<RtnlSocket> {
        let mut s = RtnlSocket {
            sock: None,
            seq: 0,
            buf: vec![0; INITIAL_BUF],
        };
        s.socket()?;
        Ok(s)
    }

    fn socket(&mut self) -> io::Result<&Socket> {
        if self.sock.is_none() {
            let sock = open_socket()?;
            set_recv_timeout(sock.as_raw_fd(), REPLY_TIMEOUT)?;
            self.sock = Some(sock);
        }
        self.sock
            .as_ref()
            .ok_or_else(|| io::Error::other("netlink socket missing"))
    }

    /// Sends `msg` and feeds every reply message of this request to `on_msg`: all parts
    /// of a dump (until NLMSG_DONE), or the single answer of a plain request.
    fn transact(
        &mut self,
        msg: RouteNetlinkMessage,
        dump: bool,
        on_msg: &mut dyn FnMut(RouteNetlinkMessage),
    ) -> Result<(), Failure> {
        let r = self.transact_inner(msg, dump, on_msg);
        if let Err(Failure::Io(_)) = r {
            // Unread replies (or a dump still running) must not reach the next request.
            self.sock = None;
        }
        r
    }

    /// [`Self::transact`], keeping what `pick` makes of each answer (of a dump: of every
    /// entry).
    fn collect<T>(
        &mut self,
        msg: RouteNetlinkMessage,
        dump: bool,
        mut pick: impl FnMut(RouteNetlinkMessage) -> Option<T>,
    ) -> Result<Vec<T>, Failure> {
        let mut out = Vec::new();
        self.transact(msg, dump, &mut |m| out.extend(pick(m)))?;
        Ok(out)
    }

    fn transact_inner(
        &mut self,
        msg: RouteNetlinkMessage,
        dump: bool,
        on_msg: &mut dyn FnMut(RouteNetlinkMessage),
    ) -> Result<(), Failure> {
        self.seq = self.seq.wrapping_add(1).max(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { 0 };
        header.sequence_number = seq;
        let mut req = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        req.finalize();
        let mut out = vec![0u8; req.buffer_len()];
        req.serialize(&mut out);

        let mut buf = std::mem::take(&mut self.buf);
        let r = (|| {
            let sock = self.socket().map_err(Failure::Io)?;
            sock.send(&out, 0).map_err(Failure::Io)?;
            let mut interrupted = false;
            loop {
                let n = recv_datagram(sock, &mut buf, 0).map_err(Failure::Io)?;
                for m in messages(&buf[..n]) {
                    let (mtype, flags, mseq, bytes) = m.map_err(Failure::Io)?;
                    if mseq != seq {
                        continue; // a late answer to an earlier request
                    }
                    interrupted |= flags & NLM_F_DUMP_INTR != 0;
                    let parsed = match NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes) {
                        Ok(p) => p,
                        Err(e) if dump => {
                            tracing::debug!(
                                "skipping undecodable netlink message (type {mtype}): {e}"
                            );
                            continue;
                        }
                        Err(e) => {
                            return Err(Failure::Io(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("undecodable netlink reply (type {mtype}): {e}"),
                            )))
                        }
                    };
                    match parsed.payload {
                        NetlinkPayload::Done(d) => {
                            if d.code != 0 {
                                return Err(Failure::Nack(io::Error::from_raw_os_error(
                                    d.code.saturating_abs(),
                                )));
                            }
                            if interrupted {
                                return Err(Failure::Nack(io::Error::new(
                                    io::ErrorKind::Interrupted,
                                    "netlink dump interrupted by a concurrent change",
                                )));
                            }
                            return Ok(());
                        }
                        NetlinkPayload::Error(e) => {
                            if e.code.is_some() {
                                return Err(Failure::Nack(e.to_io()));
                            }
                            if !dump {
                                return Ok(()); // an ACK
                            }
                        }
                        NetlinkPayload::InnerMessage(inner) => {
                            on_msg(inner);
                            if !dump {
                                return Ok(());
                            }
                        }
                        NetlinkPayload::Overrun(_) => {
                            return Err(Failure::Io(io::Error::other("netlink overrun")))
                        }
                        _ => {}
                    }
                }
            }
        })();
        self.buf = buf;
        r
    }

    /// `ip route get DST`: the unicast route the kernel would use for `dst`, or `None`
    /// when it has none (unreachable, prohibited, blackhole, local, broadcast,
    /// multicast...).
    pub fn route_get(&mut self, dst: IpAddr) -> io::Result<Option<Route>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = match dst {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        msg.header.destination_prefix_length = if dst.is_ipv4() { 32 } else { 128 };
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(dst)));
        let reply = match self.collect(RouteNetlinkMessage::GetRoute(msg), false, |m| match m {
            RouteNetlinkMessage::NewRoute(r) => Some(r),
            _ => None,
        }) {
            Ok(mut v) => v.pop(),
            Err(Failure::Nack(e)) => {
                tracing::trace!(%dst, "no route: {e}");
                return Ok(None);
            }
            Err(f) => return Err(f.into()),
        };
        let Some(r) = reply else {
            return Err(io::Error::other(
                "RTM_GETROUTE: no RTM_NEWROUTE in the reply",
            ));
        };
        Ok(route_from_message(&r))
    }

    /// The neighbour entries (both families) of interface `ifindex`.
    pub fn neighbours(&mut self, ifindex: u32) -> io::Result<Vec<Neighbour>> {
        let mut msg = NeighbourMessage::default();
        // Kernel-side filter (non-strict dumps read NDA_IFINDEX); filtered here too.
        msg.attributes.push(NeighbourAttribute::IfIndex(ifindex));
        let mine = |n: &Neighbour| n.ifindex == ifindex;
        Ok(
            self.collect(RouteNetlinkMessage::GetNeighbour(msg), true, |m| match m {
                RouteNetlinkMessage::NewNeighbour(n) => neighbour_from_message(&n).filter(mine),
                _ => None,
            })?,
        )
    }

    /// Every address of `family` (`Inet` or `Inet6`), all interfaces (RTM_GETADDR
    /// dump). A dump the kernel flags as interrupted by a concurrent change fails with
    /// [`io::ErrorKind::Interrupted`]: ask again.
    pub fn addresses(&mut self, family: AddressFamily) -> io::Result<Vec<AddressMessage>> {
        let mut msg = AddressMessage::default();
        msg.header.family = family;
        Ok(
            self.collect(RouteNetlinkMessage::GetAddress(msg), true, |m| match m {
                RouteNetlinkMessage::NewAddress(a) => Some(a),
                _ => None,
            })?,
        )
    }

    /// Interface `ifindex`, or `None` when there is no such interface.
    pub fn link(&mut self, ifindex: u32) -> io::Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        let reply = match self.collect(RouteNetlinkMessage::GetLink(msg), false, |m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(l),
            _ => None,
        }) {
            Ok(mut v) => v.pop(),
            Err(Failure::Nack(e)) if e.raw_os_error() == Some(libc::ENODEV) => return Ok(None),
            Err(f) => return Err(f.into()),
        };
        let Some(l) = reply else {
            return Err(io::Error::other("RTM_GETLINK: no RTM_NEWLINK in the reply"));
        };
        Ok(Some(link_from_message(&l)))
    }
}

fn ip_of_route_address(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// The route of an RTM_NEWROUTE answer, when it is a usable unicast route.
pub fn route_from_message(r: &RouteMessage) -> Option<Route> {
    if r.header.kind != RouteType::Unicast {
        return None;
    }
    let mut oif = None;
    let mut gateway = None;
    let mut mtu = None;
    for a in &r.attributes {
        match a {
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Gateway(g) => gateway = ip_of_route_address(g).or(gateway),
            RouteAttribute::Via(RouteVia::Inet(v4)) => gateway = Some(IpAddr::V4(*v4)),
            RouteAttribute::Via(RouteVia::Inet6(v6)) => gateway = Some(IpAddr::V6(*v6)),
            RouteAttribute::Metrics(ms) => {
                for m in ms {
                    if let RouteMetric::Mtu(v) = m {
                        mtu = (*v != 0).then_some(*v);
                    }
                }
            }
            _ => {}
        }
    }
    Some(Route {
        oif: oif.filter(|&i| i != 0)?,
        gateway,
        mtu,
    })
}

/// The entry of an RTM_NEWNEIGH message (`None` without an IP destination).
pub fn neighbour_from_message(n: &NeighbourMessage) -> Option<Neighbour> {
    let mut ip = None;
    let mut lladdr = None;
    for a in &n.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                ip = Some(IpAddr::V4(*v4))
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                ip = Some(IpAddr::V6(*v6))
            }
            NeighbourAttribute::LinkLayerAddress(l) => lladdr = Some(l.clone()),
            _ => {}
        }
    }
    Some(Neighbour {
        ifindex: n.header.ifindex,
        ip: ip?,
        lladdr,
        state: u16::from(n.header.state),
    })
}

pub fn link_from_message(l: &LinkMessage) -> Link {
    let mut address = Vec::new();
    let mut mtu = 0;
    for a in &l.attributes {
        match a {
            LinkAttribute::Address(mac) => address.clone_from(mac),
            LinkAttribute::Mtu(m) => mtu = *m,
            _ => {}
        }
    }
    Link {
        ifindex: l.header.index,
        address,
        mtu,
        up: l.header.flags.contains(LinkFlags::Up),
    }
}

/// A socket subscribed to rtnetlink multicast groups; read without blocking.
pub struct EventSocket {
    sock: Socket,
    buf: Vec<u8>,
}

impl EventSocket {
    /// Subscribes to `groups` (see [`groups`]).
    pub fn open(groups: &[u32]) -> io::Result<EventSocket> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        if let Err(e) = sock.set_rx_buf_sz(EVENT_RCVBUF) {
            tracing::debug!("netlink event socket SO_RCVBUF: {e}");
        }
        for &g in groups {
            sock.add_membership(g)?;
        }
        Ok(EventSocket {
            sock,
            buf: vec![0; INITIAL_BUF],
        })
    }

    /// Reads every pending notification without blocking and reports each to `f`.
    pub fn drain(&mut self, f: &mut dyn FnMut(Event)) -> io::Result<()> {
        loop {
            let n = match recv_datagram(&self.sock, &mut self.buf, libc::MSG_DONTWAIT) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    f(Event::Lost);
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    f(Event::Lost); // a cut datagram: its events are unknown
                    continue;
                }
                Err(e) => return Err(e),
            };
            for m in messages(&self.buf[..n]) {
                let Ok((mtype, _, _, bytes)) = m else {
                    f(Event::Lost);
                    break;
                };
                if let Some(ev) = classify(mtype, bytes) {
                    f(ev);
                }
            }
        }
    }
}

impl AsRawFd for EventSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

fn classify(mtype: u16, bytes: &[u8]) -> Option<Event> {
    let parsed = || NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes).ok();
    match mtype {
        libc::RTM_NEWNEIGH | libc::RTM_DELNEIGH => {
            let ifindex = parsed().and_then(|m| match m.payload {
                NetlinkPayload::InnerMessage(
                    RouteNetlinkMessage::NewNeighbour(n) | RouteNetlinkMessage::DelNeighbour(n),
                ) => Some(n.header.ifindex),
                _ => None,
            });
            Some(Event::Neighbour { ifindex })
        }
        libc::RTM_NEWLINK | libc::RTM_DELLINK => {
            let ifindex = parsed().and_then(|m| match m.payload {
                NetlinkPayload::InnerMessage(
                    RouteNetlinkMessage::NewLink(l) | RouteNetlinkMessage::DelLink(l),
                ) => Some(l.header.index),
                _ => None,
            });
            Some(Event::Link { ifindex })
        }
        libc::RTM_NEWROUTE | libc::RTM_DELROUTE => Some(Event::Route),
        libc::RTM_NEWADDR | libc::RTM_DELADDR => Some(Event::Address),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn usable_states() {
        let mut n = Neighbour {
            ifindex: 1,
            ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            lladdr: Some(vec![2, 0, 0, 0, 0, 1]),
            state: NUD_REACHABLE,
        };
        for s in [
            NUD_REACHABLE,
            NUD_STALE,
            NUD_DELAY,
            NUD_PROBE,
            NUD_PERMANENT,
            NUD_NOARP,
        ] {
            n.state = s;
            assert_eq!(n.usable_mac(), Some([2, 0, 0, 0, 0, 1]), "state {s:#x}");
        }
        for s in [NUD_INCOMPLETE, NUD_FAILED, 0] {
            n.state = s;
            assert_eq!(n.usable_mac(), None, "state {s:#x}");
        }
        n.state = NUD_REACHABLE;
        n.lladdr = Some(vec![1, 2, 3]);
        assert_eq!(n.usable_mac(), None);
        n.lladdr = None;
        assert_eq!(n.usable_mac(), None);
    }

    #[test]
    fn route_answer_with_gateway_and_mtu() {
        let mut r = RouteMessage::default();
        r.header.kind = RouteType::Unicast;
        r.attributes = vec![
            RouteAttribute::Oif(3),
            RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(10, 0, 0, 254))),
            RouteAttribute::Metrics(vec![RouteMetric::Mtu(1400)]),
        ];
        assert_eq!(
            route_from_message(&r),
            Some(Route {
                oif: 3,
                gateway: Some("10.0.0.254".parse().unwrap()),
                mtu: Some(1400)
            })
        );
        r.header.kind = RouteType::Local;
        assert_eq!(route_from_message(&r), None);
    }

    #[test]
    fn splits_datagrams_and_classifies_events() {
        let mut datagram = Vec::new();
        let mut n = NeighbourMessage::default();
        n.header.ifindex = 5;
        n.header.family = AddressFamily::Inet;
        n.header.state = NUD_REACHABLE.into();
        n.attributes = vec![
            NeighbourAttribute::Destination(NeighbourAddress::Inet(Ipv4Addr::new(10, 0, 0, 9))),
            NeighbourAttribute::LinkLayerAddress(vec![2, 0, 0, 0, 0, 9]),
        ];
        for (seq, inner) in [
            (7, RouteNetlinkMessage::NewNeighbour(n.clone())),
            (8, RouteNetlinkMessage::DelRoute(RouteMessage::default())),
        ] {
            let mut h = NetlinkHeader::default();
            h.sequence_number = seq;
            let mut m = NetlinkMessage::new(h, NetlinkPayload::from(inner));
            m.finalize();
            let start = datagram.len();
            datagram.resize(start + m.buffer_len(), 0);
            m.serialize(&mut datagram[start..]);
            datagram.resize(datagram.len().next_multiple_of(4), 0);
        }
        let parts: Vec<_> = messages(&datagram).map(|m| m.unwrap()).collect();
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].0, parts[0].2), (libc::RTM_NEWNEIGH, 7));
        assert_eq!((parts[1].0, parts[1].2), (libc::RTM_DELROUTE, 8));
        assert_eq!(
            classify(parts[0].0, parts[0].3),
            Some(Event::Neighbour { ifindex: Some(5) })
        );
        assert_eq!(classify(parts[1].0, parts[1].3), Some(Event::Route));
        let entry = neighbour_from_message(&n).unwrap();
        assert_eq!(entry.usable_mac(), Some([2, 0, 0, 0, 0, 9]));
        assert_eq!(entry.ip, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)));
        // A cut message is reported, not a panic; the iteration ends.
        let cut: Vec<_> = messages(&datagram[..20]).collect();
        assert_eq!(cut.len(), 1);
        assert!(cut[0].is_err());
        // An undecodable neighbour notification still counts as one.
        assert_eq!(
            classify(libc::RTM_NEWNEIGH, &datagram[..16]),
            Some(Event::Neighbour { ifindex: None })
        );
    }

    /// Queries in the test's own namespace (no privilege needed, nothing is sent).
    #[test]
    fn kernel_queries_in_this_namespace() {
        let mut s = RtnlSocket::open().unwrap();
        let lo = s.link(1).unwrap().expect("ifindex 1 is lo");
        assert_eq!(lo.ifindex, 1);
        assert!(lo.mtu > 0);
        assert_eq!(s.link(0x7fff_fff0).unwrap(), None);
        // 127.0.0.1 is local: not a unicast route to an Ethernet next hop.
        assert_eq!(s.route_get(IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap(), None);
        assert!(s.neighbours(1).unwrap().iter().all(|n| n.ifindex == 1));
        // The socket stays usable across many requests.
        for _ in 0..100 {
            assert!(s.link(1).unwrap().is_some());
        }
    }
}
