//! Next-hop resolution: the Ethernet addresses a worker writes into a frame it transmits
//! itself, taken from the kernel's routing and neighbour tables (never configured).
//!
//! Workers look destinations up in an immutable [`NextHops`] snapshot (one atomic load per
//! packet through [`Local`](crate::snapshot::Local)). On a miss the worker sends the packet
//! through the kernel slow path and calls [`ResolverHandle::request`]; the resolver thread
//! then asks the kernel (`ip route get DST`, the neighbour entry of the next hop, the
//! output interface's MAC and MTU), and publishes a new snapshot when the set of hops
//! changed. It keeps every requested destination (bounded, oldest dropped) and resolves
//! them again on any link/neighbour/route notification and every second, so a neighbour
//! that fails or a route that moves is reflected within about a second.
//!
//! Only hops whose output interface is one of the allowed interfaces are published: a
//! destination routed elsewhere stays on the slow path.

use std::{
    collections::VecDeque,
    io,
    net::IpAddr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crossbeam_queue::ArrayQueue;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::{
    snapshot::Published,
    sys::netlink::{groups, Event, EventSocket, Route, RtnlSocket},
};

/// Most destinations the resolver keeps resolving; the oldest request is dropped first.
pub const MAX_DESTINATIONS: usize = 65536;
/// Capacity of the worker → resolver request queue.
pub const QUEUE_CAPACITY: usize = 4096;
/// Every destination is resolved again at least this often.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// Longest the resolver blocks before looking at the stop flag.
const POLL_TIMEOUT: Duration = Duration::from_millis(200);
/// Notifications arriving closer together than this are handled in one pass.
const EVENT_COALESCE: Duration = Duration::from_millis(20);
/// Slots of the "already requested" filter that makes repeated requests cheap (2^16,
/// 512 KiB, as many as destinations kept, so that colliding unresolved destinations
/// rarely keep re-queueing each other).
const RECENT_BITS: u32 = 16;
const RECENT_SLOTS: usize = 1 << RECENT_BITS;

/// How to reach one destination from a worker: the interface to transmit on and the
/// Ethernet header to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Hop {
    pub ifindex: u32,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub mtu: u32,
}

/// Immutable destination → [`Hop`] map, built by the resolver and published to workers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NextHops {
    map: FxHashMap<IpAddr, Hop>,
}

impl NextHops {
    #[inline]
    pub fn get(&self, dst: IpAddr) -> Option<&Hop> {
        self.map.get(&dst)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, &Hop)> + '_ {
        self.map.iter().map(|(ip, hop)| (*ip, hop))
    }
}

impl FromIterator<(IpAddr, Hop)> for NextHops {
    fn from_iter<I: IntoIterator<Item = (IpAddr, Hop)>>(it: I) -> NextHops {
        NextHops {
            map: it.into_iter().collect(),
        }
    }
}

/// State shared by the resolver and the handles.
struct ResolverShared {
    queue: ArrayQueue<IpAddr>,
    /// Destinations already handed to the resolver, by hash slot (0 = empty). A hit means
    /// the resolver has (or will have) the destination in its list: nothing to do.
    recent: Box<[AtomicU64]>,
    waker: Waker,
}

/// Slot and tag of `dst` in [`ResolverShared::recent`]. IPv4 tags are exact (bit 32 set, address
/// below); IPv6 tags are a 64-bit hash with bit 33 set, so the two never collide.
fn recent_key(dst: IpAddr) -> (usize, u64) {
    let (tag, h) = match dst {
        IpAddr::V4(a) => {
            let v = u32::from(a) as u64;
            ((1 << 32) | v, v.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        }
        IpAddr::V6(a) => {
            let v = u128::from(a);
            let h = ((v as u64) ^ ((v >> 64) as u64).rotate_left(29))
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
            (h | (1 << 33), h)
        }
    };
    ((h >> (64 - RECENT_BITS)) as usize, tag)
}

/// The workers' side of the resolver. Cheap to clone; `request` never blocks.
#[derive(Clone)]
pub struct ResolverHandle {
    shared: Arc<ResolverShared>,
}

impl ResolverHandle {
    /// Asks the resolver to resolve `dst` (and keep it resolved). Returns false only when
    /// the request queue is full (try again on a later packet). A destination already
    /// requested costs one relaxed atomic load.
    pub fn request(&self, dst: IpAddr) -> bool {
        let (slot, tag) = recent_key(dst);
        let s = &self.shared.recent[slot];
        if s.load(Ordering::Relaxed) == tag {
            return true;
        }
        if self.shared.queue.push(dst).is_err() {
            return false;
        }
        s.store(tag, Ordering::Relaxed);
        self.shared.waker.wake();
        true
    }
}

impl std::fmt::Debug for ResolverHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolverHandle")
            .field("queued", &self.shared.queue.len())
            .finish()
    }
}

/// An eventfd the handles write to so the resolver wakes up for a new destination.
struct Waker(OwnedFd);

impl Waker {
    fn new() -> io::Result<Waker> {
        // SAFETY: plain syscall.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd that nothing else owns.
        Ok(Waker(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: valid fd, 8-byte buffer. Failure (counter saturated) means a wake-up is
        // pending anyway.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    fn reset(&self) {
        let mut v: u64 = 0;
        // SAFETY: valid fd, 8-byte buffer; non-blocking.
        let _ = unsafe { libc::read(self.0.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }
}

/// Waits until one of `fds` is readable or `timeout` passes; returns which are readable.
fn poll_readable<const N: usize>(fds: [RawFd; N], timeout: Duration) -> io::Result<[bool; N]> {
    let mut p = fds.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: valid array of N pollfds.
    let rc = unsafe { libc::poll(p.as_mut_ptr(), N as libc::nfds_t, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok([false; N]);
        }
        return Err(e);
    }
    Ok(p.map(|p| p.revents != 0))
}

/// The interface facts a hop needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LinkFacts {
    mac: [u8; 6],
    mtu: u32,
}

/// The resolver: owns the netlink sockets and the list of destinations; run it on its own
/// thread ([`spawn`] does).
pub struct Resolver {
    allowed: Vec<u32>,
    published: Arc<Published<NextHops>>,
    stop: Arc<AtomicBool>,
    shared: Arc<ResolverShared>,
    rtnl: RtnlSocket,
    events: EventSocket,
    /// Requested destinations, oldest first, and the same as a set.
    order: VecDeque<IpAddr>,
    known: FxHashSet<IpAddr>,
    max_destinations: usize,
    /// Last `ip route get` answer per destination (`None`: no unicast route).
    routes: FxHashMap<IpAddr, Option<Route>>,
    /// Usable neighbours on the allowed interfaces: (ifindex, ip) → MAC.
    neighbours: FxHashMap<(u32, IpAddr), [u8; 6]>,
    /// Allowed interfaces that are up with an Ethernet address.
    links: FxHashMap<u32, LinkFacts>,
    routes_dirty: bool,
    neighbours_dirty: bool,
    links_dirty: bool,
    last_refresh: Instant,
    next_full: Instant,
}

impl Resolver {
    /// Opens the netlink sockets (in the calling thread's network namespace) and the
    /// request queue.
    pub fn new(
        allowed_ifindexes: Vec<u32>,
        published: Arc<Published<NextHops>>,
        stop: Arc<AtomicBool>,
    ) -> io::Result<(Resolver, ResolverHandle)> {
        // Subscribe first: a change between the first dump and the subscription would
        // otherwise go unnoticed until the periodic refresh.
        let events = EventSocket::open(&[
            groups::NEIGH,
            groups::IPV4_ROUTE,
            groups::IPV6_ROUTE,
            groups::LINK,
        ])?;
        let rtnl = RtnlSocket::open()?;
        let shared = Arc::new(ResolverShared {
            queue: ArrayQueue::new(QUEUE_CAPACITY),
            recent: (0..RECENT_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            waker: Waker::new()?,
        });
        let now = Instant::now();
        let mut allowed = allowed_ifindexes;
        allowed.sort_unstable();
        allowed.dedup();
        let r = Resolver {
            allowed,
            published,
            stop,
            shared: Arc::clone(&shared),
            rtnl,
            events,
            order: VecDeque::new(),
            known: FxHashSet::default(),
            max_destinations: MAX_DESTINATIONS,
            routes: FxHashMap::default(),
            neighbours: FxHashMap::default(),
            links: FxHashMap::default(),
            routes_dirty: true,
            neighbours_dirty: true,
            links_dirty: true,
            last_refresh: now,
            next_full: now,
        };
        Ok((r, ResolverHandle { shared }))
    }

    fn is_allowed(&self, ifindex: u32) -> bool {
        self.allowed.binary_search(&ifindex).is_ok()
    }

    /// Runs until the stop flag is set (checked at least every 200 ms).
    pub fn run(mut self) {
        tracing::debug!(allowed = ?self.allowed, "next-hop resolver started");
        while !self.stop.load(Ordering::Acquire) {
            let now = Instant::now();
            let dirty = self.routes_dirty || self.neighbours_dirty || self.links_dirty;
            let mut timeout = POLL_TIMEOUT.min(self.next_full.saturating_duration_since(now));
            if dirty {
                timeout = timeout
                    .min((self.last_refresh + EVENT_COALESCE).saturating_duration_since(now));
            }
            let fds = [self.events.as_raw_fd(), self.shared.waker.0.as_raw_fd()];
            let ready = match poll_readable(fds, timeout) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("next-hop resolver: poll: {e}");
                    std::thread::sleep(POLL_TIMEOUT);
                    [true, true]
                }
            };
            if ready[1] {
                self.shared.waker.reset();
            }
            if ready[0] {
                self.drain_events();
            }
            let new = self.take_requests();

            let now = Instant::now();
            if now >= self.next_full {
                self.routes_dirty = true;
                self.neighbours_dirty = true;
                self.links_dirty = true;
                self.next_full = now + REFRESH_INTERVAL;
            }
            let dirty = self.routes_dirty || self.neighbours_dirty || self.links_dirty;
            let due = dirty && now >= self.last_refresh + EVENT_COALESCE;
            if due || !new.is_empty() {
                self.last_refresh = now;
                if let Err(e) = self.refresh(&new) {
                    // Retried by the next periodic refresh.
                    tracing::warn!("next-hop resolution failed: {e}");
                    self.routes_dirty = false;
                    self.neighbours_dirty = false;
                    self.links_dirty = false;
                }
                self.publish_if_changed();
            }
        }
        tracing::debug!("next-hop resolver stopped");
    }

    fn drain_events(&mut self) {
        let allowed = std::mem::take(&mut self.allowed);
        let mut flags = (false, false, false); // routes, neighbours, links
        let r = self.events.drain(&mut |ev| match ev {
            Event::Route => flags.0 = true,
            Event::Neighbour { ifindex } => {
                if ifindex.is_none_or(|i| allowed.binary_search(&i).is_ok()) {
                    flags.1 = true;
                }
            }
            Event::Link { .. } => {
                // Link changes move routes (carrier, addresses) and MACs/MTUs.
                flags = (true, true, true);
            }
            Event::Lost => flags = (true, true, true),
            Event::Address => {}
        });
        self.allowed = allowed;
        if let Err(e) = r {
            tracing::warn!("netlink notifications: {e}");
            flags = (true, true, true);
        }
        self.routes_dirty |= flags.0;
        self.neighbours_dirty |= flags.1;
        self.links_dirty |= flags.2;
    }

    /// Moves queued requests into the destination list; returns the new ones.
    fn take_requests(&mut self) -> Vec<IpAddr> {
        let was_empty = self.order.is_empty();
        let mut new = Vec::new();
        while let Some(dst) = self.shared.queue.pop() {
            if self.known.insert(dst) {
                self.order.push_back(dst);
                new.push(dst);
            }
        }
        while self.order.len() > self.max_destinations {
            if let Some(old) = self.order.pop_front() {
                self.forget(old);
            }
        }
        new.retain(|d| self.known.contains(d));
        if was_empty && !new.is_empty() {
            // The caches were not kept up to date while there was nothing to resolve.
            self.routes_dirty = true;
            self.neighbours_dirty = true;
            self.links_dirty = true;
        }
        new
    }

    fn forget(&mut self, dst: IpAddr) {
        self.known.remove(&dst);
        self.routes.remove(&dst);
        let (slot, tag) = recent_key(dst);
        // Let the next request for it through again.
        let _ =
            self.shared.recent[slot].compare_exchange(tag, 0, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Brings the caches up to date (what is dirty, plus routes of `new` destinations).
    fn refresh(&mut self, new: &[IpAddr]) -> io::Result<()> {
        if self.order.is_empty() {
            // Nothing to resolve: no kernel queries (the first request marks all dirty).
            self.routes_dirty = false;
            self.neighbours_dirty = false;
            self.links_dirty = false;
            return Ok(());
        }
        if self.links_dirty {
            let mut links = FxHashMap::default();
            for &i in &self.allowed {
                match self.rtnl.link(i)? {
                    Some(l) if l.up => match <[u8; 6]>::try_from(l.address.as_slice()) {
                        Ok(mac) if l.mtu > 0 => {
                            links.insert(i, LinkFacts { mac, mtu: l.mtu });
                        }
                        _ => tracing::debug!(ifindex = i, "interface has no Ethernet address"),
                    },
                    _ => {}
                }
            }
            self.links = links;
            self.links_dirty = false;
        }
        if self.neighbours_dirty {
            let mut neighbours = FxHashMap::default();
            for &i in &self.allowed {
                for n in self.rtnl.neighbours(i)? {
                    if let Some(mac) = n.usable_mac() {
                        neighbours.insert((n.ifindex, n.ip), mac);
                    }
                }
            }
            self.neighbours = neighbours;
            self.neighbours_dirty = false;
        }
        if self.routes_dirty {
            let mut routes = FxHashMap::default();
            for (k, &dst) in self.order.iter().enumerate() {
                if k % 1024 == 1023 && self.stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                routes.insert(dst, self.rtnl.route_get(dst)?);
            }
            self.routes = routes;
            self.routes_dirty = false;
        } else {
            for &dst in new {
                let r = self.rtnl.route_get(dst)?;
                self.routes.insert(dst, r);
            }
        }
        Ok(())
    }

    fn publish_if_changed(&mut self) {
        let hops = build(
            self.order.iter().copied(),
            &self.routes,
            &self.neighbours,
            &self.links,
            |i| self.is_allowed(i),
        );
        if *self.published.load() != hops {
            tracing::debug!(
                hops = hops.len(),
                destinations = self.order.len(),
                "publishing next hops"
            );
            self.published.publish(hops);
        }
    }
}

/// Combines the caches into the snapshot (pure; no kernel access).
fn build(
    dsts: impl Iterator<Item = IpAddr>,
    routes: &FxHashMap<IpAddr, Option<Route>>,
    neighbours: &FxHashMap<(u32, IpAddr), [u8; 6]>,
    links: &FxHashMap<u32, LinkFacts>,
    allowed: impl Fn(u32) -> bool,
) -> NextHops {
    dsts.filter_map(|dst| {
        let r = routes.get(&dst).copied().flatten()?;
        if !allowed(r.oif) {
            return None;
        }
        let link = links.get(&r.oif)?;
        let via = r.gateway.unwrap_or(dst);
        let dst_mac = *neighbours.get(&(r.oif, via))?;
        let mtu = r.mtu.map_or(link.mtu, |m| m.min(link.mtu));
        Some((
            dst,
            Hop {
                ifindex: r.oif,
                src_mac: link.mac,
                dst_mac,
                mtu,
            },
        ))
    })
    .collect()
}

/// Starts the resolver on its own thread ("sipnat-nexthop"). Its netlink sockets belong
/// to the caller's network namespace. The thread ends within ~200 ms of `stop` being set.
pub fn spawn(
    allowed_ifindexes: Vec<u32>,
    published: Arc<Published<NextHops>>,
    stop: Arc<AtomicBool>,
) -> io::Result<(ResolverHandle, JoinHandle<()>)> {
    let (resolver, handle) = Resolver::new(allowed_ifindexes, published, stop)?;
    let join = std::thread::Builder::new()
        .name("sipnat-nexthop".into())
        .spawn(move || resolver.run())?;
    Ok((handle, join))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Local;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn hop(ifindex: u32, last: u8) -> Hop {
        Hop {
            ifindex,
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, last],
            mtu: 1500,
        }
    }

    #[test]
    fn empty_snapshot() {
        let h = NextHops::default();
        assert!(h.is_empty());
        assert_eq!(h.len(), 0);
        assert_eq!(h.get(ip("10.0.0.1")), None);
        assert_eq!(h.iter().count(), 0);
    }

    #[test]
    fn lookup_both_families() {
        let h: NextHops = [(ip("10.0.0.1"), hop(2, 9)), (ip("2001:db8::1"), hop(3, 7))]
            .into_iter()
            .collect();
        assert_eq!(h.len(), 2);
        assert_eq!(h.get(ip("10.0.0.1")), Some(&hop(2, 9)));
        assert_eq!(h.get(ip("2001:db8::1")), Some(&hop(3, 7)));
        assert_eq!(h.get(ip("10.0.0.2")), None);
        // An IPv4-mapped IPv6 address is a different key.
        assert_eq!(
            h.get(IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped())),
            None
        );
        let mut all: Vec<_> = h.iter().map(|(d, h)| (d, h.dst_mac[5])).collect();
        all.sort();
        assert_eq!(all, vec![(ip("10.0.0.1"), 9), (ip("2001:db8::1"), 7)]);
    }

    #[test]
    fn published_to_workers() {
        let p = Arc::new(Published::new(NextHops::default()));
        let mut l = Local::new(&p);
        assert!(l.current(&p).get(ip("10.0.0.1")).is_none());
        p.publish([(ip("10.0.0.1"), hop(2, 9))].into_iter().collect());
        assert_eq!(
            l.current(&p).get(ip("10.0.0.1")).map(|h| h.ifindex),
            Some(2)
        );
        p.publish(NextHops::default());
        assert!(l.current(&p).is_empty());
    }

    #[test]
    fn snapshots_compare_by_content() {
        let a: NextHops = [(ip("10.0.0.1"), hop(2, 9))].into_iter().collect();
        let b: NextHops = [(ip("10.0.0.1"), hop(2, 9))].into_iter().collect();
        let c: NextHops = [(ip("10.0.0.1"), hop(2, 8))].into_iter().collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn build_direct_gateway_and_filters() {
        let mut routes = FxHashMap::default();
        let mut neigh = FxHashMap::default();
        let mut links = FxHashMap::default();
        let route = |oif, gateway, mtu| Some(Route { oif, gateway, mtu });
        let link = |mac, mtu| LinkFacts { mac, mtu };
        links.insert(2, link([2, 0, 0, 0, 0, 0x22], 1500));
        links.insert(3, link([2, 0, 0, 0, 0, 0x33], 9000));
        // Direct: next hop is the destination.
        routes.insert(ip("10.0.0.1"), route(2, None, None));
        neigh.insert((2, ip("10.0.0.1")), [2, 0, 0, 0, 0, 0xa1]);
        // Via a gateway on ifindex 3, route MTU lower than the link's.
        routes.insert(ip("8.8.8.8"), route(3, Some(ip("10.1.0.1")), Some(1400)));
        neigh.insert((3, ip("10.1.0.1")), [2, 0, 0, 0, 0, 0xb1]);
        // Gateway neighbour known on another interface only: not usable.
        routes.insert(ip("9.9.9.9"), route(2, Some(ip("10.1.0.1")), None));
        // Not allowed interface.
        routes.insert(ip("10.2.0.1"), route(4, None, None));
        neigh.insert((4, ip("10.2.0.1")), [2, 0, 0, 0, 0, 0xc1]);
        links.insert(4, link([2, 0, 0, 0, 0, 0x44], 1500));
        // No route.
        routes.insert(ip("192.0.2.1"), None);
        // IPv6 via link-local gateway.
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 5));
        routes.insert(v6, route(2, Some(ip("fe80::1")), None));
        neigh.insert((2, ip("fe80::1")), [2, 0, 0, 0, 0, 0xd1]);

        let dsts = [
            ip("10.0.0.1"),
            ip("8.8.8.8"),
            ip("9.9.9.9"),
            ip("10.2.0.1"),
            ip("192.0.2.1"),
            v6,
            ip("203.0.113.9"), // requested, not resolved yet
        ];
        let h = build(dsts.into_iter(), &routes, &neigh, &links, |i| {
            i == 2 || i == 3
        });
        assert_eq!(h.len(), 3);
        // (destination, ifindex, last byte of source and destination MAC, MTU)
        for (dst, ifindex, src, dst_mac, mtu) in [
            ("10.0.0.1", 2, 0x22, 0xa1, 1500),
            ("8.8.8.8", 3, 0x33, 0xb1, 1400),
        ] {
            let hop = Hop {
                ifindex,
                src_mac: [2, 0, 0, 0, 0, src],
                dst_mac: [2, 0, 0, 0, 0, dst_mac],
                mtu,
            };
            assert_eq!(h.get(ip(dst)), Some(&hop), "{dst}");
        }
        assert_eq!(h.get(v6).map(|h| h.dst_mac[5]), Some(0xd1));
        assert!(h.get(ip("9.9.9.9")).is_none());
        assert!(h.get(ip("10.2.0.1")).is_none());
        // A link that is down (absent from `links`) drops its hops.
        links.remove(&3);
        let h = build(dsts.into_iter(), &routes, &neigh, &links, |i| {
            i == 2 || i == 3
        });
        assert!(h.get(ip("8.8.8.8")).is_none());
    }

    #[test]
    fn recent_keys_never_mix_families() {
        let (_, t4) = recent_key(ip("0.0.0.0"));
        assert_ne!(t4, 0);
        for s in ["::", "::1", "2001:db8::1", "fe80::1", "::ffff:10.0.0.1"] {
            let (slot, t6) = recent_key(ip(s));
            assert!(slot < RECENT_SLOTS);
            assert_ne!(t6 & (1 << 33), 0);
            assert_ne!(t6, 0);
        }
        for s in ["10.0.0.1", "255.255.255.255", "0.0.0.0"] {
            let (slot, t) = recent_key(ip(s));
            assert!(slot < RECENT_SLOTS);
            assert_eq!(t >> 32, 1);
        }
    }

    fn shared() -> Arc<ResolverShared> {
        Arc::new(ResolverShared {
            queue: ArrayQueue::new(2),
            recent: (0..RECENT_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            waker: Waker::new().unwrap(),
        })
    }

    #[test]
    fn repeated_requests_are_filtered_and_full_queue_refuses() {
        let shared = shared();
        let h = ResolverHandle {
            shared: Arc::clone(&shared),
        };
        assert!(h.request(ip("10.0.0.1")));
        for _ in 0..100 {
            assert!(h.request(ip("10.0.0.1"))); // filtered: no queue slot used
        }
        assert_eq!(shared.queue.len(), 1);
        assert!(h.request(ip("10.0.0.2")));
        assert!(!h.request(ip("10.0.0.3")), "queue of 2 is full");
        // Refused requests are not remembered: accepted once there is room.
        shared.queue.pop();
        assert!(h.request(ip("10.0.0.3")));
        assert_eq!(shared.queue.len(), 2);
    }

    #[test]
    fn destination_list_is_bounded_and_evicted_ones_can_be_requested_again() {
        // Netlink sockets need no privilege; nothing is resolved here.
        let published = Arc::new(Published::new(NextHops::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (mut r, h) = Resolver::new(vec![7, 3, 7], published, stop).unwrap();
        assert_eq!(r.allowed, vec![3, 7]);
        r.max_destinations = 2;
        assert!(h.request(ip("10.0.0.1")));
        assert!(h.request(ip("10.0.0.1")));
        assert!(h.request(ip("10.0.0.2")));
        assert_eq!(r.take_requests(), vec![ip("10.0.0.1"), ip("10.0.0.2")]);
        assert!(r.routes_dirty && r.neighbours_dirty && r.links_dirty);
        assert!(h.request(ip("10.0.0.3")));
        assert_eq!(r.take_requests(), vec![ip("10.0.0.3")]);
        assert_eq!(r.order, [ip("10.0.0.2"), ip("10.0.0.3")]);
        assert!(!r.known.contains(&ip("10.0.0.1")));
        // The evicted destination passes the handle's filter again; the others do not.
        assert!(h.request(ip("10.0.0.1")));
        assert!(h.request(ip("10.0.0.3")));
        assert_eq!(r.shared.queue.len(), 1);
        assert_eq!(r.take_requests(), vec![ip("10.0.0.1")]);
        assert_eq!(r.order, [ip("10.0.0.3"), ip("10.0.0.1")]);
    }
}
