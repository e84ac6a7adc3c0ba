//! NAPT bindings: which external port an internal SIP endpoint (address, port) uses, so
//! that many hosts behind one external address can all use port 5060.
//!
//! A binding is endpoint-independent (RFC 4787 section 4.1): one external port per
//! (internal address, internal port), whatever the remote. It keeps the internal port
//! when that port is free on the external address (port preservation), else takes one
//! from the configured range. It lives while outbound traffic refreshes it (the idle
//! timeout) or until the registration it carries expires ([`NaptTable::extend`]), whichever
//! is later.
//!
//! Two [`FlowTable`]s hold it, both shared by every worker with lock-free reads:
//! - by internal endpoint: key (external address, internal port, internal address, 0) →
//!   (external address, external port): the outbound lookup;
//! - by external endpoint: key (external address, external port, unspecified, 0) →
//!   (internal address, internal port): the inbound lookup, and the port's owner. Claiming
//!   a port *is* inserting its entry: a live entry of another endpoint is a `Collision`, so
//!   two workers can never hand out one port twice.
//!
//! Neither table evicts a live entry (an evicted binding would free a port still in use):
//! when full, new bindings are refused and counted like an exhausted range. The
//! allocation path (a new endpoint) probes ports from a shared cursor; a range found
//! exhausted is not scanned again in the same second. Per packet of a known endpoint:
//! one lookup and two refreshes (writes at most once per second), no lock, no allocation.

use core::net::{IpAddr, Ipv4Addr};
use core::sync::atomic::{AtomicU32, Ordering};

use super::flow::{FlowKey, FlowTable, InsertResult};

/// An inclusive range of external ports for new bindings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    /// `"20000-29999"` (first ≤ last, first ≥ 1).
    pub fn parse(s: &str) -> Option<PortRange> {
        let (a, b) = s.trim().split_once('-')?;
        let first: u16 = a.trim().parse().ok()?;
        let last: u16 = b.trim().parse().ok()?;
        (first >= 1 && first <= last).then_some(PortRange { first, last })
    }

    /// Number of ports.
    pub fn len(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn contains(&self, p: u16) -> bool {
        (self.first..=self.last).contains(&p)
    }
}

impl core::fmt::Display for PortRange {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// The outcome of [`NaptTable::outbound`]; the caller counts these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// The endpoint's live binding (refreshed).
    Existing(u16),
    /// A new binding keeping the internal port.
    Preserved(u16),
    /// A new binding with a port from the range.
    Allocated(u16),
    /// No free port in the range (or no room in the tables): the packet must not leave.
    Exhausted,
}

impl Bound {
    /// The external port, unless exhausted.
    pub fn port(self) -> Option<u16> {
        match self {
            Bound::Existing(p) | Bound::Preserved(p) | Bound::Allocated(p) => Some(p),
            Bound::Exhausted => None,
        }
    }
}

/// One live binding, for listings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindingInfo {
    pub external: IpAddr,
    pub external_port: u16,
    pub internal: IpAddr,
    pub internal_port: u16,
    /// Seconds (on the table's clock) until it expires without traffic.
    pub expires_in_s: u32,
}

/// The binding table. `Sync`: shared by reference with every worker.
pub struct NaptTable {
    by_internal: FlowTable,
    by_external: FlowTable,
    /// Where the next allocation starts probing (shared; touched only when allocating).
    cursor: AtomicU32,
    /// `now_s + 1` of the last allocation that found the range exhausted (0: never).
    exhausted_at: AtomicU32,
    /// [`NaptTable::live`]'s last scan: (`now_s + 1`, count), so that many readers in one
    /// second (a `stats` flood) scan the table once.
    live_cache: (AtomicU32, core::sync::atomic::AtomicU64),
}

impl core::fmt::Debug for NaptTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NaptTable")
            .field("slots", &self.by_external.slots())
            .finish_non_exhaustive()
    }
}

const UNSPECIFIED: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

fn internal_key(external: IpAddr, internal: IpAddr, port: u16) -> FlowKey {
    FlowKey::new(external, port, internal, 0)
}

fn external_key(external: IpAddr, port: u16) -> FlowKey {
    FlowKey::new(external, port, UNSPECIFIED, 0)
}

impl NaptTable {
    /// Room for `capacity` bindings, idle timeout `idle_timeout_s`; both tables are
    /// allocated here, once, with four slots per binding (twice a flow table's): they
    /// never evict, so a probe sequence must rarely be full even at capacity (load ≤ 1/4).
    pub fn new(capacity: u32, idle_timeout_s: u32) -> NaptTable {
        let slots = capacity.saturating_mul(2);
        NaptTable {
            by_internal: FlowTable::without_eviction(slots, idle_timeout_s),
            by_external: FlowTable::without_eviction(slots, idle_timeout_s),
            cursor: AtomicU32::new(0),
            exhausted_at: AtomicU32::new(0),
            live_cache: Default::default(),
        }
    }

    /// The address ranges of both tables' slots ([`FlowTable::memory`]).
    pub fn memory(&self) -> [core::ops::Range<usize>; 2] {
        [self.by_internal.memory(), self.by_external.memory()]
    }

    pub fn idle_timeout_s(&self) -> u32 {
        self.by_external.idle_timeout_s()
    }

    /// Bindings the table has room for (a quarter of its slots).
    pub fn capacity(&self) -> usize {
        self.by_external.slots() / 4
    }

    /// Starts loading the slots [`Self::outbound`] of (`internal`, `port`) on `external`
    /// will read first: the endpoint's binding, and the external port's, guessed to be
    /// the kept `port` (the usual binding). See [`FlowTable::prefetch`].
    #[inline]
    pub fn prefetch_outbound(&self, external: IpAddr, internal: IpAddr, port: u16) {
        self.by_internal
            .prefetch(&internal_key(external, internal, port));
        self.by_external.prefetch(&external_key(external, port));
    }

    /// The external port of (`internal`, `port`) on `external`: its live binding,
    /// refreshed, or a new one (the internal port when free, else one of `range`).
    pub fn outbound(
        &self,
        external: IpAddr,
        internal: IpAddr,
        port: u16,
        range: PortRange,
        now_s: u32,
    ) -> Bound {
        let ik = internal_key(external, internal, port);
        // Two rounds: a binding that lost its port (a race with expiry) is made again.
        for _ in 0..2 {
            if let Some((_, ext_port)) = self.by_internal.lookup_port(&ik, now_s) {
                let ek = external_key(external, ext_port);
                match self.by_external.insert_port(ek, internal, port, now_s) {
                    InsertResult::Refreshed | InsertResult::Inserted | InsertResult::Evicted => {
                        self.by_internal.insert_port(ik, external, ext_port, now_s);
                        return Bound::Existing(ext_port);
                    }
                    // The port went to another endpoint after this binding's external
                    // half expired: forget this half and bind again.
                    InsertResult::Collision { .. } => {
                        self.by_internal.remove(&ik, external, ext_port);
                    }
                    InsertResult::Full => return Bound::Exhausted,
                }
            }
            match self.allocate(external, (internal, port), range, now_s) {
                Some(bound) => {
                    let p = bound.port().unwrap_or(0);
                    match self.by_internal.insert_port(ik, external, p, now_s) {
                        InsertResult::Inserted | InsertResult::Evicted => return bound,
                        InsertResult::Refreshed => return Bound::Existing(p),
                        // Another worker bound this endpoint at the same moment: its
                        // port wins, ours goes back.
                        InsertResult::Collision { .. } => {
                            self.by_external
                                .remove(&external_key(external, p), internal, port);
                        }
                        InsertResult::Full => {
                            self.by_external
                                .remove(&external_key(external, p), internal, port);
                            return Bound::Exhausted;
                        }
                    }
                }
                None => return Bound::Exhausted,
            }
        }
        Bound::Exhausted
    }

    /// Claims an external port for the endpoint: the internal port itself when free,
    /// else the first free one of `range` from the shared cursor.
    fn allocate(
        &self,
        external: IpAddr,
        (internal, port): (IpAddr, u16),
        range: PortRange,
        now_s: u32,
    ) -> Option<Bound> {
        let claim = |p: u16| {
            matches!(
                self.by_external
                    .insert_port(external_key(external, p), internal, port, now_s),
                InsertResult::Inserted | InsertResult::Evicted | InsertResult::Refreshed
            )
        };
        if claim(port) {
            return Some(Bound::Preserved(port));
        }
        if self.exhausted_at.load(Ordering::Relaxed) == now_s.wrapping_add(1) {
            return None;
        }
        let n = range.len();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
        for k in 0..n {
            let p = (u32::from(range.first) + (start + k) % n) as u16;
            if p != port && claim(p) {
                self.cursor.store(start + k + 1, Ordering::Relaxed);
                return Some(Bound::Allocated(p));
            }
        }
        self.exhausted_at
            .store(now_s.wrapping_add(1), Ordering::Relaxed);
        None
    }

    /// The external port bound to (`internal`, `port`) on `external`, if any. Read-only.
    pub fn external_port(
        &self,
        external: IpAddr,
        internal: IpAddr,
        port: u16,
        now_s: u32,
    ) -> Option<u16> {
        self.by_internal
            .lookup_port(&internal_key(external, internal, port), now_s)
            .map(|(_, p)| p)
    }

    /// The internal endpoint bound to `external`:`external_port`. Read-only.
    pub fn inbound(
        &self,
        external: IpAddr,
        external_port: u16,
        now_s: u32,
    ) -> Option<(IpAddr, u16)> {
        self.by_external
            .lookup_port(&external_key(external, external_port), now_s)
    }

    /// Keeps the binding of (`internal`, `port`) ↔ `external`:`external_port` alive until
    /// at least `until_s` (a registration's expiry). Nothing happens when the binding is
    /// not this one.
    pub fn extend(
        &self,
        external: IpAddr,
        external_port: u16,
        internal: IpAddr,
        port: u16,
        now_s: u32,
        until_s: u32,
    ) {
        let idle = self.idle_timeout_s();
        let ts = until_s.saturating_sub(idle).max(now_s);
        let ek = external_key(external, external_port);
        if self.by_external.lookup_port(&ek, now_s) != Some((internal, port)) {
            return;
        }
        self.by_external.insert_until(ek, internal, port, now_s, ts);
        self.by_internal.insert_until(
            internal_key(external, internal, port),
            external,
            external_port,
            now_s,
            ts,
        );
    }

    /// Forgets the binding of (`internal`, `port`) on `external`, if any (control plane).
    pub fn release(&self, external: IpAddr, internal: IpAddr, port: u16, now_s: u32) -> bool {
        let ik = internal_key(external, internal, port);
        let Some((_, p)) = self.by_internal.lookup_port(&ik, now_s) else {
            return false;
        };
        self.by_internal.remove(&ik, external, p);
        self.by_external
            .remove(&external_key(external, p), internal, port)
    }

    /// Live bindings (a scan, control plane; at most one per second, the count of the
    /// second's first call is returned to the others).
    pub fn live(&self, now_s: u32) -> usize {
        let key = now_s.wrapping_add(1);
        if self.live_cache.0.load(Ordering::Acquire) == key {
            return self.live_cache.1.load(Ordering::Relaxed) as usize;
        }
        let n = self.by_external.live(now_s);
        self.live_cache.1.store(n as u64, Ordering::Relaxed);
        self.live_cache.0.store(key, Ordering::Release);
        n
    }

    /// Every live binding (a scan, control plane).
    pub fn bindings(&self, now_s: u32) -> Vec<BindingInfo> {
        let idle = self.idle_timeout_s();
        let mut v = Vec::new();
        self.by_external
            .entries(now_s, |k, internal, internal_port, ts| {
                v.push(BindingInfo {
                    external: k.external,
                    external_port: k.local_port,
                    internal,
                    internal_port,
                    expires_in_s: ts.wrapping_add(idle).wrapping_sub(now_s),
                })
            });
        v.sort_by_key(|b| (b.external, b.external_port));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The binding of `host`:5060 on external address `e` (the range `RANGE`) at `now`.
    fn from_5060(t: &NaptTable, e: IpAddr, host: &str, now: u32) -> Bound {
        t.outbound(e, ip(host), 5060, RANGE, now)
    }

    const RANGE: PortRange = PortRange {
        first: 20000,
        last: 20003,
    };

    #[test]
    fn range_parses() {
        assert_eq!(
            PortRange::parse("20000-29999"),
            Some(PortRange {
                first: 20000,
                last: 29999
            })
        );
        assert_eq!(PortRange::parse(" 5 - 5 ").map(|r| r.len()), Some(1));
        for bad in ["", "1", "0-10", "10-9", "1-65536", "a-b", "1-2-3"] {
            assert_eq!(PortRange::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn first_keeps_its_port_others_get_the_range() {
        let t = NaptTable::new(64, 300);
        let e = ip("203.0.113.10");
        assert_eq!(from_5060(&t, e, "10.0.0.1", 1), Bound::Preserved(5060));
        let b = from_5060(&t, e, "10.0.0.2", 1);
        let Bound::Allocated(p2) = b else {
            panic!("{b:?}")
        };
        assert!(RANGE.contains(p2));
        // Stable while refreshed, whoever the remote (endpoint-independent).
        assert_eq!(from_5060(&t, e, "10.0.0.2", 2), Bound::Existing(p2));
        assert_eq!(t.inbound(e, p2, 2), Some((ip("10.0.0.2"), 5060)));
        assert_eq!(t.inbound(e, 5060, 2), Some((ip("10.0.0.1"), 5060)));
        assert_eq!(t.inbound(e, 5061, 2), None);
        // Another external address is another port space.
        assert_eq!(
            from_5060(&t, ip("203.0.113.11"), "10.0.0.2", 2),
            Bound::Preserved(5060)
        );
        assert_eq!(t.live(2), 3);
    }

    #[test]
    fn exhaustion_then_expiry_frees_ports() {
        let t = NaptTable::new(64, 10);
        let e = ip("203.0.113.10");
        // 5060 preserved + the 4 ports of the range.
        let mut ports = Vec::new();
        for h in 1..=5 {
            let b = from_5060(&t, e, &format!("10.0.0.{h}"), 100);
            ports.push(b.port().expect("bound"));
        }
        ports.sort();
        assert_eq!(ports, [5060, 20000, 20001, 20002, 20003]);
        assert_eq!(from_5060(&t, e, "10.0.0.6", 100), Bound::Exhausted);
        // Known endpoints still work when the range is exhausted.
        assert!(matches!(
            from_5060(&t, e, "10.0.0.3", 100),
            Bound::Existing(_)
        ));
        // After the idle timeout everything is free again.
        assert_eq!(from_5060(&t, e, "10.0.0.6", 111), Bound::Preserved(5060));
        assert_eq!(t.live(111), 1);
    }

    #[test]
    fn registration_extends_and_release_frees() {
        let t = NaptTable::new(64, 10);
        let e = ip("203.0.113.10");
        assert_eq!(from_5060(&t, e, "10.0.0.1", 100), Bound::Preserved(5060));
        t.extend(e, 5060, ip("10.0.0.1"), 5060, 100, 3700);
        assert_eq!(t.inbound(e, 5060, 3000), Some((ip("10.0.0.1"), 5060)));
        assert_eq!(t.bindings(3000)[0].expires_in_s, 700);
        assert_eq!(t.inbound(e, 5060, 3711), None);
        // A wrong endpoint does not extend it.
        t.extend(e, 5060, ip("10.0.0.9"), 5060, 3000, 9000);
        assert_eq!(t.inbound(e, 5060, 3711), None);
        assert!(t.release(e, ip("10.0.0.1"), 5060, 3000));
        assert_eq!(t.inbound(e, 5060, 3000), None);
        assert_eq!(from_5060(&t, e, "10.0.0.2", 3000), Bound::Preserved(5060));
    }

    /// Many threads bind many endpoints at once: every endpoint gets one port, no port
    /// goes to two endpoints.
    #[test]
    fn concurrent_bindings_are_unique() {
        let t = NaptTable::new(4096, 300);
        let e = ip("203.0.113.10");
        let range = PortRange {
            first: 20000,
            last: 21999,
        };
        let results: Vec<Vec<(u32, u16)>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4u32)
                .map(|id| {
                    let t = &t;
                    s.spawn(move || {
                        let mut out = Vec::new();
                        for round in 0..3 {
                            for h in 0..1000u32 {
                                // Every thread binds the same endpoints, in another order.
                                let h = (h * 7 + id * 131 + round) % 1000;
                                let a = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + h));
                                let p = t.outbound(e, a, 5060, range, 1).port().unwrap();
                                out.push((h, p));
                            }
                        }
                        out
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut port_of = std::collections::HashMap::new();
        for (h, p) in results.into_iter().flatten() {
            assert_eq!(*port_of.entry(h).or_insert(p), p, "host {h}");
        }
        let mut ports: Vec<u16> = port_of.values().copied().collect();
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), 1000);
        assert_eq!(t.live(1), 1000);
    }
}
