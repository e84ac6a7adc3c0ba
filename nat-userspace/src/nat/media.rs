//! Media bindings learned from SDP: an internal RTP transport address (and its RTCP, the
//! next port) gets an external port pair of the `[media] port_range` (RTP even, RTCP odd),
//! which the rewrite writes into the SDP (`m=`, `a=rtcp`) and a [`MediaBindings`] sink
//! installs where the media is translated (the daemon: the XDP programs' maps).
//!
//! Bindings belong to a dialog (its Call-ID, as a hash): they end with the dialog (BYE,
//! CANCEL, an error final response to the INVITE), when an SDP of the same dialog no
//! longer names them (a re-INVITE that moved the media), or when the control plane's
//! reaper finds them idle (the sink's last-seen stamp, [`MediaRegistry::reap`]).
//!
//! The registry is shared by every worker. Its lock is taken only for SDP-bearing or
//! dialog-ending SIP messages with media NAT on (never per RTP packet: RTP never reaches
//! the workers) and the maps are allocated once, at their full capacity (the number of
//! port pairs of the range), so nothing allocates after [`MediaRegistry::new`].

use core::net::{IpAddr, SocketAddr};
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
};

use super::napt::PortRange;

/// Where bindings are installed: the XDP maps in the daemon, memory offline and in tests.
pub trait MediaBindings: Send + Sync {
    /// Installs (internal ↔ external); `false` when it could not be installed.
    fn install(&self, internal: SocketAddr, external: SocketAddr) -> bool;
    /// Removes it (a binding that is not there is no error).
    fn remove(&self, internal: SocketAddr, external: SocketAddr);
    /// Nanoseconds (`CLOCK_MONOTONIC`) of the last packet translated by the binding; 0:
    /// none yet; `None`: not installed.
    fn last_seen_ns(&self, internal: SocketAddr, external: SocketAddr) -> Option<u64>;
}

/// Bindings in memory (offline tool, tests): a map, and the stamps the tests set.
#[derive(Default)]
pub struct InMemoryBindings {
    map: Mutex<HashMap<SocketAddr, (SocketAddr, u64)>>,
}

impl InMemoryBindings {
    /// The installed bindings, sorted (internal, external).
    pub fn list(&self) -> Vec<(SocketAddr, SocketAddr)> {
        let mut v: Vec<_> = lock(&self.map).iter().map(|(i, (e, _))| (*i, *e)).collect();
        v.sort();
        v
    }

    /// Sets the last-seen stamp of `internal`'s binding (as XDP would).
    pub fn touch(&self, internal: SocketAddr, ns: u64) {
        if let Some(v) = lock(&self.map).get_mut(&internal) {
            v.1 = ns;
        }
    }
}

impl MediaBindings for InMemoryBindings {
    fn install(&self, internal: SocketAddr, external: SocketAddr) -> bool {
        lock(&self.map).insert(internal, (external, 0));
        true
    }

    fn remove(&self, internal: SocketAddr, external: SocketAddr) {
        let mut m = lock(&self.map);
        if m.get(&internal).is_some_and(|(e, _)| *e == external) {
            m.remove(&internal);
        }
    }

    fn last_seen_ns(&self, internal: SocketAddr, external: SocketAddr) -> Option<u64> {
        lock(&self.map)
            .get(&internal)
            .filter(|(e, _)| *e == external)
            .map(|(_, ns)| *ns)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The registry's counters (monotonic), read by the report.
#[derive(Debug, Default)]
pub struct MediaCounters {
    pub installed: AtomicU64,
    pub removed: AtomicU64,
    pub reaped: AtomicU64,
    pub exhausted: AtomicU64,
    pub install_failed: AtomicU64,
}

/// One RTP/RTCP binding pair, as listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MediaEntry {
    /// The internal RTP address (RTCP: the next port).
    pub internal: SocketAddr,
    /// The external RTP address (RTCP: the next port).
    pub external: SocketAddr,
    /// The dialog's Call-ID hash.
    pub call: u64,
    /// Seconds (on the caller's clock) it was made.
    pub created_s: u32,
}

#[derive(Clone, Copy)]
struct Entry {
    external: SocketAddr,
    call: u64,
    created_s: u32,
    /// The SDP generation of its dialog that last named it.
    generation: u32,
}

struct Inner {
    by_internal: HashMap<SocketAddr, Entry>,
    /// Pairs in use, by index in the range (`port = first_even + 2 × index`).
    used: Vec<bool>,
    cursor: usize,
    /// Per dialog: the generation of its latest SDP.
    generation: HashMap<u64, u32>,
}

/// The media binding registry. `Sync`: shared with every worker.
pub struct MediaRegistry {
    first: u16,
    pairs: usize,
    inner: Mutex<Inner>,
    pub counters: MediaCounters,
}

impl core::fmt::Debug for MediaRegistry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MediaRegistry")
            .field("first", &self.first)
            .field("pairs", &self.pairs)
            .finish_non_exhaustive()
    }
}

impl MediaRegistry {
    /// Port pairs of `range` (RTP on the even ports, RTCP the odd one after).
    pub fn new(range: PortRange) -> MediaRegistry {
        let first = range.first.saturating_add(range.first & 1);
        let pairs = if range.last > first {
            usize::from(range.last - first).div_ceil(2)
        } else {
            0
        };
        MediaRegistry {
            first,
            pairs,
            inner: Mutex::new(Inner {
                by_internal: HashMap::with_capacity(pairs),
                used: vec![false; pairs],
                cursor: 0,
                generation: HashMap::with_capacity(pairs),
            }),
            counters: MediaCounters::default(),
        }
    }

    /// Port pairs the range holds.
    pub fn capacity(&self) -> usize {
        self.pairs
    }

    /// Live bindings (pairs).
    pub fn live(&self) -> usize {
        lock(&self.inner).by_internal.len()
    }

    /// Starts an SDP of dialog `call`: bindings it names from now on are kept, those of
    /// the dialog it does not name go at [`Self::end_sdp`]. Returns the generation.
    pub fn begin_sdp(&self, call: u64) -> u32 {
        let mut g = lock(&self.inner);
        if g.generation.len() >= self.pairs.max(1) && !g.generation.contains_key(&call) {
            // (Every dialog with a generation has a binding, or had one: forget the
            // dialogs without bindings left.)
            let Inner {
                generation,
                by_internal,
                ..
            } = &mut *g;
            generation.retain(|c, _| by_internal.values().any(|e| e.call == *c));
        }
        let e = g.generation.entry(call).or_insert(0);
        *e = e.wrapping_add(1);
        *e
    }

    /// The external RTP port of `internal` (RTP; RTCP is the next port) for dialog `call`:
    /// its binding, or a new pair installed through `sink` (both ports). `None`: the range
    /// is exhausted (counted) or the sink refused it.
    pub fn bind(
        &self,
        call: u64,
        generation: u32,
        internal: SocketAddr,
        external: IpAddr,
        sink: &dyn MediaBindings,
        now_s: u32,
    ) -> Option<u16> {
        let mut g = lock(&self.inner);
        if let Some(e) = g.by_internal.get_mut(&internal) {
            if e.external.ip() == external {
                e.call = call;
                e.generation = generation;
                return Some(e.external.port());
            }
            // The external address changed: a new binding.
            let old = *e;
            g.by_internal.remove(&internal);
            self.release(&mut g, internal, old.external, sink);
        }
        if g.by_internal.len() >= self.pairs {
            self.counters.exhausted.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let n = self.pairs;
        let start = g.cursor;
        let idx = (0..n).map(|k| (start + k) % n).find(|&i| !g.used[i])?;
        let port = self.first + 2 * idx as u16;
        let ext = SocketAddr::new(external, port);
        let rtcp = |a: SocketAddr| SocketAddr::new(a.ip(), a.port().wrapping_add(1));
        if !sink.install(internal, ext) || !sink.install(rtcp(internal), rtcp(ext)) {
            sink.remove(internal, ext);
            self.counters.install_failed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        g.used[idx] = true;
        g.cursor = idx + 1;
        g.by_internal.insert(
            internal,
            Entry {
                external: ext,
                call,
                created_s: now_s,
                generation,
            },
        );
        self.counters.installed.fetch_add(1, Ordering::Relaxed);
        Some(port)
    }

    /// Ends an SDP of `call` begun with `generation`: the dialog's bindings it did not name
    /// are removed (a re-INVITE moved the media). Returns how many.
    pub fn end_sdp(&self, call: u64, generation: u32, sink: &dyn MediaBindings) -> usize {
        self.remove_where(sink, |_, e| e.call == call && e.generation != generation)
    }

    /// Removes every binding of dialog `call` (BYE, CANCEL, error final response).
    pub fn end_call(&self, call: u64, sink: &dyn MediaBindings) -> usize {
        let n = self.remove_where(sink, |_, e| e.call == call);
        lock(&self.inner).generation.remove(&call);
        n
    }

    /// Removes the bindings whose last packet (or, without one, whose creation) is more
    /// than `idle_s` old. `now_ns`: `CLOCK_MONOTONIC` now; `now_s`: the creation clock.
    pub fn reap(&self, sink: &dyn MediaBindings, now_ns: u64, now_s: u32, idle_s: u32) -> usize {
        let idle_ns = u64::from(idle_s) * 1_000_000_000;
        let n = self.remove_where(sink, |internal, e| {
            let created_idle = now_s.wrapping_sub(e.created_s) > idle_s;
            match sink.last_seen_ns(internal, e.external) {
                // Installed but never used: idle since it was made.
                Some(0) | None => created_idle,
                Some(ns) => {
                    let rtcp = SocketAddr::new(internal.ip(), internal.port().wrapping_add(1));
                    let rtcp_ext =
                        SocketAddr::new(e.external.ip(), e.external.port().wrapping_add(1));
                    let last = ns.max(sink.last_seen_ns(rtcp, rtcp_ext).unwrap_or(0));
                    now_ns.saturating_sub(last) > idle_ns && created_idle
                }
            }
        });
        self.counters.reaped.fetch_add(n as u64, Ordering::Relaxed);
        // (`remove_where` counted them as removed too: reaped is a subset.)
        n
    }

    /// Every live binding, sorted by internal address.
    pub fn list(&self) -> Vec<MediaEntry> {
        let g = lock(&self.inner);
        let mut v: Vec<MediaEntry> = g
            .by_internal
            .iter()
            .map(|(i, e)| MediaEntry {
                internal: *i,
                external: e.external,
                call: e.call,
                created_s: e.created_s,
            })
            .collect();
        v.sort_by_key(|e| e.internal);
        v
    }

    fn remove_where(
        &self,
        sink: &dyn MediaBindings,
        mut f: impl FnMut(SocketAddr, &Entry) -> bool,
    ) -> usize {
        let mut g = lock(&self.inner);
        let mut n = 0;
        // No allocation: one scan collects up to a batch of matches, which are removed;
        // another scan only when the batch was full.
        loop {
            let mut batch = arrayvec::ArrayVec::<(SocketAddr, Entry), 64>::new();
            for (i, e) in &g.by_internal {
                if f(*i, e) && batch.try_push((*i, *e)).is_err() {
                    break;
                }
            }
            let full = batch.is_full();
            for (internal, e) in batch {
                g.by_internal.remove(&internal);
                self.release(&mut g, internal, e.external, sink);
                n += 1;
            }
            if !full {
                return n;
            }
        }
    }

    fn release(
        &self,
        g: &mut Inner,
        internal: SocketAddr,
        external: SocketAddr,
        sink: &dyn MediaBindings,
    ) {
        let rtcp = |a: SocketAddr| SocketAddr::new(a.ip(), a.port().wrapping_add(1));
        sink.remove(internal, external);
        sink.remove(rtcp(internal), rtcp(external));
        if let Some(idx) = usize::from(external.port().wrapping_sub(self.first)).checked_div(2) {
            if let Some(u) = g.used.get_mut(idx) {
                *u = false;
            }
        }
        self.counters.removed.fetch_add(1, Ordering::Relaxed);
    }
}

/// The hash of a Call-ID that keys a dialog's bindings (FNV-1a: stable, no seed needed —
/// a collision only merges two dialogs' lifetimes).
pub fn call_hash(call_id: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in call_id {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ext() -> IpAddr {
        "203.0.113.10".parse().unwrap()
    }

    #[test]
    fn pairs_are_even_odd_installed_and_end_with_the_call() {
        let r = MediaRegistry::new(PortRange::parse("30001-30010").unwrap());
        // 30002, 30004, 30006, 30008, 30010 (30010's RTCP 30011 is outside; not used).
        assert_eq!(r.capacity(), 4);
        let sink = InMemoryBindings::default();
        let (a, b) = (call_hash(b"a@x"), call_hash(b"b@x"));
        let g = r.begin_sdp(a);
        assert_eq!(
            r.bind(a, g, sa("10.0.0.2:6000"), ext(), &sink, 1),
            Some(30002)
        );
        // A retransmission: the same port, nothing new installed.
        assert_eq!(
            r.bind(a, g, sa("10.0.0.2:6000"), ext(), &sink, 1),
            Some(30002)
        );
        let g = r.begin_sdp(b);
        assert_eq!(
            r.bind(b, g, sa("10.0.0.3:6000"), ext(), &sink, 1),
            Some(30004)
        );
        assert_eq!(
            sink.list(),
            [
                (sa("10.0.0.2:6000"), sa("203.0.113.10:30002")),
                (sa("10.0.0.2:6001"), sa("203.0.113.10:30003")),
                (sa("10.0.0.3:6000"), sa("203.0.113.10:30004")),
                (sa("10.0.0.3:6001"), sa("203.0.113.10:30005")),
            ]
        );
        assert_eq!(r.end_call(a, &sink), 1);
        assert_eq!(sink.list().len(), 2);
        assert_eq!(r.live(), 1);
        assert_eq!(r.counters.installed.load(Ordering::Relaxed), 2);
        assert_eq!(r.counters.removed.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn exhaustion_is_counted_and_a_freed_pair_is_reused() {
        let r = MediaRegistry::new(PortRange::parse("30000-30003").unwrap());
        let sink = InMemoryBindings::default();
        for (i, p) in [(2, Some(30000)), (3, Some(30002)), (4, None)] {
            let c = call_hash(&[i]);
            let g = r.begin_sdp(c);
            let a = sa(&format!("10.0.0.{i}:6000"));
            assert_eq!(r.bind(c, g, a, ext(), &sink, 1), p);
        }
        assert_eq!(r.counters.exhausted.load(Ordering::Relaxed), 1);
        r.end_call(call_hash(&[2]), &sink);
        let c = call_hash(&[4]);
        let g = r.begin_sdp(c);
        assert_eq!(
            r.bind(c, g, sa("10.0.0.4:6000"), ext(), &sink, 1),
            Some(30000)
        );
    }

    #[test]
    fn a_reinvite_that_moves_the_media_removes_the_old_binding() {
        let r = MediaRegistry::new(PortRange::parse("30000-30099").unwrap());
        let sink = InMemoryBindings::default();
        let c = call_hash(b"c@x");
        let g = r.begin_sdp(c);
        r.bind(c, g, sa("10.0.0.2:6000"), ext(), &sink, 1);
        assert_eq!(r.end_sdp(c, g, &sink), 0);
        let g = r.begin_sdp(c);
        r.bind(c, g, sa("10.0.0.2:7000"), ext(), &sink, 1);
        assert_eq!(r.end_sdp(c, g, &sink), 1);
        assert_eq!(
            sink.list(),
            [
                (sa("10.0.0.2:7000"), sa("203.0.113.10:30002")),
                (sa("10.0.0.2:7001"), sa("203.0.113.10:30003")),
            ]
        );
    }

    #[test]
    fn idle_bindings_are_reaped_used_ones_kept() {
        let r = MediaRegistry::new(PortRange::parse("30000-30099").unwrap());
        let sink = InMemoryBindings::default();
        for (i, c) in [(2u8, 1u64), (3, 2)] {
            let g = r.begin_sdp(c);
            r.bind(c, g, sa(&format!("10.0.0.{i}:6000")), ext(), &sink, 100);
        }
        // 10.0.0.3's media flows (XDP stamps it), 10.0.0.2's never did.
        let s = 1_000_000_000u64;
        sink.touch(sa("10.0.0.3:6000"), 155 * s);
        assert_eq!(r.reap(&sink, 160 * s, 160, 30), 1);
        assert_eq!(r.list()[0].internal, sa("10.0.0.3:6000"));
        assert_eq!(r.reap(&sink, 180 * s, 180, 30), 0);
        assert_eq!(r.reap(&sink, 186 * s, 186, 30), 1);
        assert_eq!(r.live(), 0);
        assert_eq!(r.counters.reaped.load(Ordering::Relaxed), 2);
        assert!(sink.list().is_empty());
    }
}
