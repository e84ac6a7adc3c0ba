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
//! # Concurrency: no lock
//! The registry is shared by every worker (and the reaper), `&self` everywhere, no mutex:
//! it is touched only for SDP-bearing or dialog-ending SIP messages with media NAT on
//! (never per RTP packet: RTP never reaches the workers), and everything is allocated once,
//! in [`MediaRegistry::new`].
//!
//! - One `Slot` per port pair of the range (slot `i` is the pair `first + 2i`): claiming a
//!   pair *is* claiming its slot, one CAS of its `state` from free, so two workers never
//!   hand out one pair. Allocation probes from a shared cursor (sequential ports).
//! - `state` = `seq << 3 | writing << 2 | kind` (`FREE`, `CLAIMING`: a new binding being
//!   decided and installed, `LIVE`, `BUSY`: a live binding being changed or removed;
//!   `writing`: a claim is writing the fields, before any index shows the slot); every
//!   transition bumps `seq`. Only the thread that moved a slot to `CLAIMING` or `BUSY` writes it; a
//!   reader takes `state`, the fields, `state` again, and retries if it moved (a seqlock).
//!   The internal address is fixed from the claim until the slot is free again.
//! - Two indexes of slot numbers, open addressing with a fixed window of [`WINDOW`]
//!   entries from the key's home (no tombstones: a removed entry is zeroed and lookups scan
//!   the whole window, 128 contiguous bytes): by internal address (unique) and by dialog
//!   (several bindings per dialog). Each has four entries per pair, so a full window is
//!   practically impossible; if it happens the new binding is refused (`install_failed`).
//! - Two workers binding the same internal address at once both claim a slot and index it;
//!   after a `SeqCst` fence each re-scans the window: another entry of the address that is
//!   live (or busy), or claiming at a lower window position, makes it give its slot back
//!   and use the other one; a claiming entry at a higher position is waited for (bounded
//!   spin). Exactly one binding per internal address survives.
//! - The sink's install (one or more `bpf(2)` calls in the daemon) happens before the
//!   binding is published (`LIVE`) and before `bind` returns its port, i.e. before the SDP
//!   that names it leaves: the binding is in XDP before the peer's RTP can arrive. That is
//!   syscalls per *new binding* (per call), never per packet; a retransmitted SDP finds its
//!   binding and makes none.
//! - Every wait is a bounded spin; a thread that gives up (another one preempted in the
//!   middle of a change of the same binding) counts `install_failed` and keeps the SDP's
//!   port, or, removing, leaves the binding to the reaper.

use core::net::{IpAddr, SocketAddr};
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::{collections::HashMap, sync::Mutex};

use super::flow::{addr_words, words_addr as ip_of};
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
    /// Dialogs whose bindings ended at once instead of [`LINGER_S`] later: more than
    /// `ENDING_QUEUE` dialogs were already ending.
    pub linger_overflow: AtomicU64,
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

/// Index entries scanned from a key's home: 32 × 4 bytes, two cache lines.
pub const WINDOW: usize = 32;

const FREE: u64 = 0;
const CLAIMING: u64 = 1;
const LIVE: u64 = 2;
const BUSY: u64 = 3;
const KIND: u64 = 3;
/// A claim is writing the slot's fields (no index shows it yet; a reader that reached it
/// through a stale index entry skips it).
const WRITING: u64 = 4;

/// Spins before a waiter gives up on a binding another thread is changing.
const SPINS: u32 = 1 << 20;

fn kind(state: u64) -> u64 {
    state & KIND
}

/// `state` moved on to `kind` (the sequence bumped).
fn next(state: u64, kind: u64) -> u64 {
    ((state >> 3).wrapping_add(1) << 3) | kind
}

/// One port pair's binding. See the module documentation.
#[derive(Default)]
#[repr(align(64))]
struct Slot {
    state: AtomicU64,
    /// The internal address as a u128 (IPv4 in the low 32 bits): low, high word.
    internal: [AtomicU64; 2],
    /// Internal port | internal is v6 << 16 | external is v6 << 17.
    meta: AtomicU64,
    external: [AtomicU64; 2],
    call: AtomicU64,
    /// Generation << 32 | created_s.
    gen_created: AtomicU64,
}

/// A consistent reading of a slot.
#[derive(Clone, Copy, Debug)]
struct View {
    state: u64,
    internal: SocketAddr,
    external: IpAddr,
    call: u64,
    generation: u32,
    created_s: u32,
}

fn mum(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// An index of slot numbers: entry 0 = empty, else `tag << 16 | (slot + 1)`, the tag
/// never 0 (so an empty entry never matches one).
///
/// A key's window is the [`WINDOW`] entries from its home, without wrapping: the table
/// has `WINDOW - 1` entries past its last home, so that a window is one contiguous
/// slice, scanned without a mask or a bounds check per entry. (With the window wrapped
/// round the table, the full scans of the media path, `end_sdp` and the lookups of
/// `bind`, were ~7 instructions an entry.)
struct Index {
    entries: Box<[AtomicU32]>,
    mask: usize,
}

impl Index {
    fn new(pairs: usize) -> Index {
        let n = (pairs * 4).next_power_of_two().max(WINDOW);
        Index {
            entries: (0..n + WINDOW - 1).map(|_| AtomicU32::new(0)).collect(),
            mask: n - 1,
        }
    }

    fn tag(h: u64) -> u32 {
        ((h >> 48) as u32) | 1
    }

    fn entry(h: u64, slot: usize) -> u32 {
        (Self::tag(h) << 16) | (slot as u32 + 1)
    }

    /// The window of `h` (always [`WINDOW`] entries: see [`Index`]).
    #[inline]
    fn window(&self, h: u64) -> &[AtomicU32] {
        let home = h as usize & self.mask;
        self.entries.get(home..home + WINDOW).unwrap_or(&[])
    }

    /// The window of `h`: (offset, slot) of every entry whose tag matches, read one by
    /// one (a lookup stops at the first that is its key's, usually near the home).
    #[inline]
    fn candidates(&self, h: u64) -> impl Iterator<Item = (usize, usize)> + '_ {
        let tag = Self::tag(h);
        self.window(h)
            .iter()
            .enumerate()
            .filter_map(move |(k, at)| {
                let e = at.load(Ordering::Acquire);
                (e >> 16 == tag).then(|| (k, (e & 0xffff) as usize - 1))
            })
    }

    /// [`Self::candidates`] for a scan of the whole window (every binding of a dialog):
    /// the window read first into a mask of the offsets whose tag matches, without a
    /// branch per entry (one each was 8 instructions an entry, 256 a window); each of
    /// those is read again as it is reached, and passed over if it changed meanwhile (as
    /// if the scan had reached it then). (A lookup keeps the lazy scan: it stops early.)
    #[inline]
    fn all_candidates(&self, h: u64) -> impl Iterator<Item = (usize, usize)> + '_ {
        const _: () = assert!(WINDOW <= 32, "a window's mask is a u32");
        let tag = Self::tag(h);
        let window = self.window(h);
        let mut hits = window.iter().enumerate().fold(0u32, |m, (k, at)| {
            m | u32::from(at.load(Ordering::Acquire) >> 16 == tag) << k
        });
        core::iter::from_fn(move || loop {
            if hits == 0 {
                return None;
            }
            let k = hits.trailing_zeros() as usize;
            hits &= hits - 1;
            let e = window.get(k)?.load(Ordering::Acquire);
            if e >> 16 == tag {
                return Some((k, (e & 0xffff) as usize - 1));
            }
        })
    }

    /// Puts `slot` into the first empty entry of the window: its offset, or `None` (full).
    fn insert(&self, h: u64, slot: usize) -> Option<usize> {
        let e = Self::entry(h, slot);
        self.window(h).iter().position(|at| {
            at.compare_exchange(0, e, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
        })
    }

    /// Removes `slot`'s entry (there is at most one per slot).
    fn remove(&self, h: u64, slot: usize) {
        let e = Self::entry(h, slot);
        for at in self.window(h) {
            if at
                .compare_exchange(e, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }
}

/// The media binding registry. `Sync`: shared with every worker, no lock (see the module
/// documentation).
pub struct MediaRegistry {
    first: u16,
    pairs: usize,
    slots: Box<[Slot]>,
    by_internal: Index,
    by_call: Index,
    /// Where the next allocation starts probing.
    cursor: AtomicUsize,
    /// The last SDP generation handed out (one counter for every dialog).
    generation: AtomicU32,
    live: AtomicUsize,
    seed: u64,
    /// Dialogs ended (BYE, CANCEL, an error final response) whose bindings go
    /// [`LINGER_S`] later: (call, ended at on the seconds clock).
    ending: crossbeam_queue::ArrayQueue<(u64, u32)>,
    pub counters: MediaCounters,
}

/// Seconds a dialog's bindings outlive its end (BYE, CANCEL, an error final response):
/// RTP that trails the BYE is still translated by XDP, never handed to the kernel with
/// its internal address. The control plane's reaper ends them (within a second more).
pub const LINGER_S: u32 = 2;

/// Ended dialogs waiting for [`LINGER_S`]; when more end within that time, the extra
/// ones end at once (counted: `MediaCounters::linger_overflow`).
const ENDING_QUEUE: usize = 4096;

impl core::fmt::Debug for MediaRegistry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MediaRegistry")
            .field("first", &self.first)
            .field("pairs", &self.pairs)
            .finish_non_exhaustive()
    }
}

/// Whether generation `a` was begun after `b` (wrapping: generations are a counter).
fn newer(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

fn rtcp(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip(), a.port().wrapping_add(1))
}

impl MediaRegistry {
    /// Port pairs of `range` (RTP on the even ports, RTCP the odd one after).
    pub fn new(range: PortRange) -> MediaRegistry {
        use core::hash::BuildHasher as _;
        let first = range.first.saturating_add(range.first & 1);
        let pairs = if range.last > first {
            usize::from(range.last - first).div_ceil(2)
        } else {
            0
        };
        MediaRegistry {
            first,
            pairs,
            slots: (0..pairs).map(|_| Slot::default()).collect(),
            by_internal: Index::new(pairs),
            by_call: Index::new(pairs),
            cursor: AtomicUsize::new(0),
            generation: AtomicU32::new(0),
            live: AtomicUsize::new(0),
            // Per-registry random seed: inside hosts choose their media addresses.
            seed: std::collections::hash_map::RandomState::new().hash_one(0x006d_6564_6961_u64),
            ending: crossbeam_queue::ArrayQueue::new(ENDING_QUEUE),
            counters: MediaCounters::default(),
        }
    }

    /// Port pairs the range holds.
    pub fn capacity(&self) -> usize {
        self.pairs
    }

    /// Live bindings (pairs).
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Starts an SDP: bindings it names from now on are kept, those of its dialog it does
    /// not name go at [`Self::end_sdp`]. Returns the generation (one counter for every
    /// dialog: a generation names one SDP, later SDPs get later ones).
    pub fn begin_sdp(&self) -> u32 {
        self.generation
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1)
    }

    fn hash_internal(&self, a: SocketAddr) -> u64 {
        let (w, v6) = addr_words(a.ip());
        let meta = u64::from(a.port()) | (u64::from(v6) << 16);
        mum(
            mum(
                w[0] ^ self.seed ^ 0xa076_1d64_78bd_642f,
                w[1] ^ 0xe703_7ed1_a0b4_28db,
            ),
            meta ^ self.seed.rotate_left(29) ^ 0x8ebc_6af0_9c88_c6e3,
        )
    }

    fn hash_call(&self, call: u64) -> u64 {
        mum(
            call ^ self.seed ^ 0x5899_65cc_7537_4cc3,
            0x1d8e_4e27_c47d_124f,
        )
    }

    fn port_of(&self, slot: usize) -> u16 {
        self.first + 2 * slot as u16
    }

    /// A consistent reading of slot `i` (`None`: free, or changing all the time).
    fn view(&self, i: usize) -> Option<View> {
        let s = &self.slots[i];
        for _ in 0..64 {
            let state = s.state.load(Ordering::Acquire);
            if kind(state) == FREE {
                return None;
            }
            if state & WRITING != 0 {
                core::hint::spin_loop();
                continue;
            }
            let internal = [
                s.internal[0].load(Ordering::Acquire),
                s.internal[1].load(Ordering::Acquire),
            ];
            let meta = s.meta.load(Ordering::Acquire);
            let external = [
                s.external[0].load(Ordering::Acquire),
                s.external[1].load(Ordering::Acquire),
            ];
            let call = s.call.load(Ordering::Acquire);
            let gc = s.gen_created.load(Ordering::Acquire);
            if s.state.load(Ordering::Acquire) == state {
                return Some(View {
                    state,
                    internal: SocketAddr::new(ip_of(internal, meta & (1 << 16) != 0), meta as u16),
                    external: ip_of(external, meta & (1 << 17) != 0),
                    call,
                    generation: (gc >> 32) as u32,
                    created_s: gc as u32,
                });
            }
            core::hint::spin_loop();
        }
        None
    }

    /// The slot bound to `internal` and its view (any kind but free).
    fn find(&self, internal: SocketAddr) -> Option<(usize, View)> {
        let h = self.hash_internal(internal);
        self.by_internal.candidates(h).find_map(|(_, i)| {
            self.view(i)
                .filter(|v| v.internal == internal)
                .map(|v| (i, v))
        })
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
        let mut spins = 0u32;
        loop {
            let Some((i, v)) = self.find(internal) else {
                return self.allocate((call, generation), (internal, external), sink, now_s);
            };
            if kind(v.state) == LIVE
                && v.call == call
                && v.external == external
                && !newer(generation, v.generation)
            {
                // Named already by this SDP (its RTCP after its RTP) or a newer one of
                // the dialog: nothing to change, so no compare-and-swap to own it.
                return Some(self.port_of(i));
            }
            if kind(v.state) == LIVE && self.own(i, v.state) {
                if v.external == external {
                    // Ours now: the dialog and the SDP that named it last.
                    self.set_call(i, v.call, call, generation);
                    return Some(self.port_of(i));
                }
                // The external address changed: a new binding.
                self.release(i, &v, sink);
                continue;
            }
            // Another thread is making or changing it: wait (bounded).
            spins += 1;
            if spins > SPINS {
                self.counters.install_failed.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            core::hint::spin_loop();
        }
    }

    /// Moves a live slot seen as `state` to busy: this thread now owns it.
    fn own(&self, i: usize, state: u64) -> bool {
        self.slots[i]
            .state
            .compare_exchange(
                state,
                next(state, BUSY),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// Sets an owned slot's dialog and generation, and publishes it live again. Within a
    /// dialog the generation only moves forward: an older SDP of the dialog processed
    /// late (by another worker) does not make the binding look unnamed by a newer one.
    fn set_call(&self, i: usize, old_call: u64, call: u64, generation: u32) {
        let s = &self.slots[i];
        let gc = s.gen_created.load(Ordering::Relaxed);
        let mut generation = generation;
        if old_call != call {
            self.by_call.remove(self.hash_call(old_call), i);
            // A full window leaves it to the reaper (it is not found by its dialog).
            let _ = self.by_call.insert(self.hash_call(call), i);
            s.call.store(call, Ordering::Release);
        } else if newer((gc >> 32) as u32, generation) {
            generation = (gc >> 32) as u32;
        }
        s.gen_created.store(
            (u64::from(generation) << 32) | (gc & 0xffff_ffff),
            Ordering::Release,
        );
        let st = s.state.load(Ordering::Relaxed);
        s.state.store(next(st, LIVE), Ordering::Release);
    }

    /// Takes a free pair for `internal`: claims its slot, indexes it, settles a race with
    /// another thread binding the same address, installs it and publishes it.
    fn allocate(
        &self,
        (call, generation): (u64, u32),
        (internal, external): (SocketAddr, IpAddr),
        sink: &dyn MediaBindings,
        now_s: u32,
    ) -> Option<u16> {
        if self.live.load(Ordering::Relaxed) >= self.pairs {
            self.counters.exhausted.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let n = self.pairs;
        let start = self.cursor.load(Ordering::Relaxed);
        let claimed = (0..n).map(|k| (start + k) % n).find(|&i| {
            let st = self.slots[i].state.load(Ordering::Relaxed);
            kind(st) == FREE
                && self.slots[i]
                    .state
                    .compare_exchange(
                        st,
                        next(st, CLAIMING) | WRITING,
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    )
                    .is_ok()
        });
        let Some(i) = claimed else {
            self.counters.exhausted.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        self.cursor.store(i + 1, Ordering::Relaxed);
        let s = &self.slots[i];
        let (iw, iv6) = addr_words(internal.ip());
        let (ew, ev6) = addr_words(external);
        s.internal[0].store(iw[0], Ordering::Relaxed);
        s.internal[1].store(iw[1], Ordering::Relaxed);
        s.meta.store(
            u64::from(internal.port()) | (u64::from(iv6) << 16) | (u64::from(ev6) << 17),
            Ordering::Relaxed,
        );
        s.external[0].store(ew[0], Ordering::Relaxed);
        s.external[1].store(ew[1], Ordering::Relaxed);
        s.call.store(call, Ordering::Relaxed);
        s.gen_created.store(
            (u64::from(generation) << 32) | u64::from(now_s),
            Ordering::Relaxed,
        );
        let st = s.state.load(Ordering::Relaxed);
        s.state.store(next(st, CLAIMING), Ordering::Release);
        // Fields first, then (a SeqCst CAS in `insert`) the index entry that shows them.
        let hi = self.hash_internal(internal);
        let Some(at) = self.by_internal.insert(hi, i) else {
            self.free(i);
            self.counters.install_failed.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        core::sync::atomic::fence(Ordering::SeqCst);
        if !self.settle(i, at, hi, internal) {
            // Another thread's binding of the address wins: use it.
            self.by_internal.remove(hi, i);
            self.free(i);
            return self.bind(call, generation, internal, external, sink, now_s);
        }
        let hc = self.hash_call(call);
        let ext = SocketAddr::new(external, self.port_of(i));
        if self.by_call.insert(hc, i).is_none()
            || !sink.install(internal, ext)
            || !sink.install(rtcp(internal), rtcp(ext))
        {
            sink.remove(internal, ext);
            self.by_call.remove(hc, i);
            self.by_internal.remove(hi, i);
            self.free(i);
            self.counters.install_failed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.live.fetch_add(1, Ordering::Relaxed);
        let st = s.state.load(Ordering::Relaxed);
        s.state.store(next(st, LIVE), Ordering::Release);
        self.counters.installed.fetch_add(1, Ordering::Relaxed);
        Some(self.port_of(i))
    }

    /// After indexing slot `mine` at window offset `at`: `true` when it is the one binding
    /// of `internal` (see the module documentation), `false` when it must give way.
    fn settle(&self, mine: usize, at: usize, h: u64, internal: SocketAddr) -> bool {
        let mut spins = 0u32;
        'rescan: loop {
            for (k, i) in self.by_internal.candidates(h) {
                if i == mine {
                    continue;
                }
                let Some(v) = self.view(i).filter(|v| v.internal == internal) else {
                    continue;
                };
                if kind(v.state) != CLAIMING || k < at {
                    return false;
                }
                // Claiming later in the window: it gives way to us, or wins if it did
                // not see us; wait until it has decided.
                spins += 1;
                if spins > SPINS {
                    return false;
                }
                core::hint::spin_loop();
                continue 'rescan;
            }
            return true;
        }
    }

    /// A slot back to free (its owner, after removing its index entries).
    fn free(&self, i: usize) {
        let s = &self.slots[i];
        let st = s.state.load(Ordering::Relaxed);
        s.state.store(next(st, FREE), Ordering::Release);
    }

    /// Removes an owned (busy) binding: indexes, sink, slot.
    fn release(&self, i: usize, v: &View, sink: &dyn MediaBindings) {
        self.by_internal.remove(self.hash_internal(v.internal), i);
        self.by_call.remove(self.hash_call(v.call), i);
        let ext = SocketAddr::new(v.external, self.port_of(i));
        sink.remove(v.internal, ext);
        sink.remove(rtcp(v.internal), rtcp(ext));
        self.live.fetch_sub(1, Ordering::Relaxed);
        self.free(i);
        self.counters.removed.fetch_add(1, Ordering::Relaxed);
    }

    /// Removes the live bindings of `call` for which `f` holds; how many.
    fn remove_of_call(
        &self,
        call: u64,
        sink: &dyn MediaBindings,
        f: impl Fn(&View) -> bool,
    ) -> usize {
        let mut n = 0;
        for (_, i) in self.by_call.all_candidates(self.hash_call(call)) {
            if let Some(v) = self.view(i) {
                if kind(v.state) == LIVE && v.call == call && f(&v) && self.own(i, v.state) {
                    self.release(i, &v, sink);
                    n += 1;
                }
            }
        }
        n
    }

    /// Ends an SDP of `call` begun with `generation`: the dialog's bindings it did not name
    /// are removed (a re-INVITE moved the media). Returns how many. Only bindings last
    /// named by an *older* SDP go: one named by a newer SDP of the dialog (another worker
    /// processing a later message at the same time) stays.
    pub fn end_sdp(&self, call: u64, generation: u32, sink: &dyn MediaBindings) -> usize {
        self.remove_of_call(call, sink, |v| newer(generation, v.generation))
    }

    /// Removes every binding of dialog `call` (BYE, CANCEL, error final response).
    pub fn end_call(&self, call: u64, sink: &dyn MediaBindings) -> usize {
        self.remove_of_call(call, sink, |_| true)
    }

    /// Ends dialog `call` (BYE, CANCEL, error final response) [`LINGER_S`] seconds after
    /// `now_s`: its bindings stay for the media that trails the end ([`Self::end_lingering`]
    /// removes them). At once when too many dialogs are ending already. No lock, no
    /// allocation (the worker's path).
    pub fn end_call_later(&self, call: u64, now_s: u32, sink: &dyn MediaBindings) {
        if self.ending.push((call, now_s)).is_err() {
            self.counters
                .linger_overflow
                .fetch_add(1, Ordering::Relaxed);
            self.end_call(call, sink);
        }
    }

    /// Removes the bindings of the dialogs that ended at least [`LINGER_S`] before `now_s`;
    /// `pending` holds the ended dialogs not due yet, from one call to the next (the
    /// reaper's). Returns the bindings removed.
    pub fn end_lingering(
        &self,
        pending: &mut std::collections::VecDeque<(u64, u32)>,
        now_s: u32,
        sink: &dyn MediaBindings,
    ) -> usize {
        while let Some(e) = self.ending.pop() {
            pending.push_back(e);
        }
        let mut n = 0;
        while let Some(&(call, at)) = pending.front() {
            if now_s.wrapping_sub(at) < LINGER_S {
                break;
            }
            pending.pop_front();
            n += self.end_call(call, sink);
        }
        n
    }

    /// Removes the bindings whose last packet (or, without one, whose creation) is more
    /// than `idle_s` old. `now_ns`: `CLOCK_MONOTONIC` now; `now_s`: the creation clock.
    /// (The control plane: a scan of every pair.)
    pub fn reap(&self, sink: &dyn MediaBindings, now_ns: u64, now_s: u32, idle_s: u32) -> usize {
        let idle_ns = u64::from(idle_s) * 1_000_000_000;
        let mut n = 0;
        for i in 0..self.pairs {
            let Some(v) = self.view(i).filter(|v| kind(v.state) == LIVE) else {
                continue;
            };
            let ext = SocketAddr::new(v.external, self.port_of(i));
            let created_idle = now_s.wrapping_sub(v.created_s) > idle_s;
            let idle = match sink.last_seen_ns(v.internal, ext) {
                // Installed but never used: idle since it was made.
                Some(0) | None => created_idle,
                Some(ns) => {
                    let last = ns.max(sink.last_seen_ns(rtcp(v.internal), rtcp(ext)).unwrap_or(0));
                    now_ns.saturating_sub(last) > idle_ns && created_idle
                }
            };
            if idle && self.own(i, v.state) {
                self.release(i, &v, sink);
                n += 1;
            }
        }
        // (`release` counted them as removed too: reaped is a subset.)
        self.counters.reaped.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// Every live binding, sorted by internal address.
    pub fn list(&self) -> Vec<MediaEntry> {
        let mut v: Vec<MediaEntry> = (0..self.pairs)
            .filter_map(|i| {
                let v = self.view(i).filter(|v| kind(v.state) == LIVE)?;
                Some(MediaEntry {
                    internal: v.internal,
                    external: SocketAddr::new(v.external, self.port_of(i)),
                    call: v.call,
                    created_s: v.created_s,
                })
            })
            .collect();
        v.sort_by_key(|e| e.internal);
        v
    }
}

/// The hash of a Call-ID that keys a dialog's bindings: `rustc-hash`'s hash of a byte
/// string (16 bytes a step, two multiplies each, and the length). Unseeded, so the rewrite
/// and the pipeline agree without sharing state; the registry mixes its own seed in
/// before indexing (`MediaRegistry::hash_call`). A collision only merges two dialogs'
/// lifetimes. (FNV-1a, one multiply per byte in a chain of 31 for the carrier INVITE's
/// Call-ID, was 65 instructions more for each SDP with media NAT on.)
pub fn call_hash(call_id: &[u8]) -> u64 {
    use core::hash::Hasher as _;
    let mut h = rustc_hash::FxHasher::default();
    h.write(call_id);
    h.finish()
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
        let g = r.begin_sdp();
        assert_eq!(
            r.bind(a, g, sa("10.0.0.2:6000"), ext(), &sink, 1),
            Some(30002)
        );
        // A retransmission: the same port, nothing new installed.
        assert_eq!(
            r.bind(a, g, sa("10.0.0.2:6000"), ext(), &sink, 1),
            Some(30002)
        );
        let g = r.begin_sdp();
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
            let g = r.begin_sdp();
            let a = sa(&format!("10.0.0.{i}:6000"));
            assert_eq!(r.bind(c, g, a, ext(), &sink, 1), p);
        }
        assert_eq!(r.counters.exhausted.load(Ordering::Relaxed), 1);
        r.end_call(call_hash(&[2]), &sink);
        let c = call_hash(&[4]);
        let g = r.begin_sdp();
        assert_eq!(
            r.bind(c, g, sa("10.0.0.4:6000"), ext(), &sink, 1),
            Some(30000)
        );
    }

    #[test]
    fn dialogs_beyond_the_linger_queue_end_at_once_and_are_counted() {
        let r = MediaRegistry::new(PortRange::parse("30000-30099").unwrap());
        let sink = InMemoryBindings::default();
        let (a, b) = (call_hash(b"a@x"), call_hash(b"b@x"));
        for (c, host) in [(a, "10.0.0.2:6000"), (b, "10.0.0.3:6000")] {
            let g = r.begin_sdp();
            assert!(r.bind(c, g, sa(host), ext(), &sink, 1).is_some());
        }
        // The queue full of other ended dialogs: `a` lingers only while there is room.
        for i in 0..ENDING_QUEUE as u64 - 1 {
            r.end_call_later(1 << 40 | i, 1, &sink);
        }
        r.end_call_later(a, 1, &sink);
        assert_eq!(r.live(), 2, "a lingers");
        assert_eq!(r.counters.linger_overflow.load(Ordering::Relaxed), 0);
        r.end_call_later(b, 1, &sink);
        assert_eq!(r.live(), 1, "b ended at once");
        assert_eq!(r.counters.linger_overflow.load(Ordering::Relaxed), 1);
        let mut pending = std::collections::VecDeque::new();
        assert_eq!(r.end_lingering(&mut pending, 1 + LINGER_S, &sink), 1);
        assert_eq!(r.live(), 0);
    }

    #[test]
    fn a_reinvite_that_moves_the_media_removes_the_old_binding() {
        let r = MediaRegistry::new(PortRange::parse("30000-30099").unwrap());
        let sink = InMemoryBindings::default();
        let c = call_hash(b"c@x");
        let g = r.begin_sdp();
        r.bind(c, g, sa("10.0.0.2:6000"), ext(), &sink, 1);
        assert_eq!(r.end_sdp(c, g, &sink), 0);
        let g = r.begin_sdp();
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

    /// A dialog with many bindings (audio and video of several streams): a later SDP
    /// that names some of them removes every other one, and its end removes all (every
    /// binding of the dialog in its window is found, not only the first).
    #[test]
    fn every_binding_of_a_dialog_ends_with_it() {
        let r = MediaRegistry::new(PortRange::parse("30000-30999").unwrap());
        let sink = InMemoryBindings::default();
        let (c, other) = (call_hash(b"many@x"), call_hash(b"other@x"));
        let g = r.begin_sdp();
        for port in (6000..6020).step_by(2) {
            let host = sa(&format!("10.0.0.2:{port}"));
            assert!(r.bind(c, g, host, ext(), &sink, 1).is_some());
        }
        let g = r.begin_sdp();
        assert!(r
            .bind(other, g, sa("10.0.0.3:6000"), ext(), &sink, 1)
            .is_some());
        assert_eq!(r.live(), 11);
        let g = r.begin_sdp();
        for port in [6004, 6010, 6016] {
            let host = sa(&format!("10.0.0.2:{port}"));
            assert!(r.bind(c, g, host, ext(), &sink, 1).is_some());
        }
        assert_eq!(r.end_sdp(c, g, &sink), 7);
        assert_eq!(r.live(), 4);
        assert_eq!(r.end_call(c, &sink), 3);
        assert_eq!(r.live(), 1, "the other dialog's binding stays");
        assert_eq!(sink.list().len(), 2);
    }

    /// Two SDPs of one dialog on two workers at once, the older one finishing last: its
    /// end removes nothing the newer one named, and both name the same pair (the m= and
    /// a=rtcp lookups of each message agree).
    #[test]
    fn an_older_sdp_of_the_dialog_finishing_late_removes_nothing_newer() {
        let r = MediaRegistry::new(PortRange::parse("30000-30099").unwrap());
        let sink = InMemoryBindings::default();
        let (c, x) = (call_hash(b"c@x"), sa("10.0.0.2:6000"));
        let (a, b) = (r.begin_sdp(), r.begin_sdp());
        assert_eq!(r.bind(c, b, x, ext(), &sink, 1), Some(30000));
        assert_eq!(r.bind(c, a, x, ext(), &sink, 1), Some(30000));
        assert_eq!(r.end_sdp(c, b, &sink), 0);
        assert_eq!(r.bind(c, a, x, ext(), &sink, 1), Some(30000));
        assert_eq!(r.end_sdp(c, a, &sink), 0);
        assert_eq!(r.live(), 1);
        // A later SDP without it still removes it.
        let later = r.begin_sdp();
        assert_eq!(r.end_sdp(c, later, &sink), 1);
        assert!(newer(1, u32::MAX) && !newer(u32::MAX, 1));
    }

    #[test]
    fn idle_bindings_are_reaped_used_ones_kept() {
        let r = MediaRegistry::new(PortRange::parse("30000-30099").unwrap());
        let sink = InMemoryBindings::default();
        for (i, c) in [(2u8, 1u64), (3, 2)] {
            let g = r.begin_sdp();
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

    /// A sink that fails the test when an external port is installed for a second
    /// internal address while the first still holds it (a pair handed out twice).
    #[derive(Default)]
    struct Checking {
        by_external: Mutex<HashMap<SocketAddr, SocketAddr>>,
        doubled: AtomicU64,
    }

    impl MediaBindings for Checking {
        fn install(&self, internal: SocketAddr, external: SocketAddr) -> bool {
            let mut m = lock(&self.by_external);
            if m.get(&external).is_some_and(|i| *i != internal) {
                self.doubled.fetch_add(1, Ordering::Relaxed);
            }
            m.insert(external, internal);
            true
        }

        fn remove(&self, internal: SocketAddr, external: SocketAddr) {
            let mut m = lock(&self.by_external);
            if m.get(&external) == Some(&internal) {
                m.remove(&external);
            }
        }

        fn last_seen_ns(&self, internal: SocketAddr, external: SocketAddr) -> Option<u64> {
            (lock(&self.by_external).get(&external) == Some(&internal)).then_some(0)
        }
    }

    /// Four workers bind the same 300 media addresses at once, each in another order:
    /// every address gets one pair, the same in every worker, no pair twice; then they
    /// end the calls (each a quarter, while the others still bind and end their own
    /// short calls in a range kept nearly full): nothing is left, nothing leaked.
    #[test]
    fn concurrent_workers_bind_an_address_once_and_never_share_a_pair() {
        const WORKERS: usize = 4;
        const ADDRS: usize = 300;
        let r = MediaRegistry::new(PortRange::parse("30000-30699").unwrap());
        assert_eq!(r.capacity(), 350);
        let sink = Checking::default();
        let addr = |k: usize| sa(&format!("10.0.{}.{}:6000", k / 200, 1 + k % 200));
        let ports: Vec<Vec<u16>> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..WORKERS)
                .map(|w| {
                    let (r, sink) = (&r, &sink);
                    sc.spawn(move || {
                        let mut got = vec![0u16; ADDRS];
                        for n in 0..ADDRS {
                            let k = (n * 7 + w * 101) % ADDRS;
                            let c = call_hash(&k.to_be_bytes());
                            let g = r.begin_sdp();
                            got[k] = r.bind(c, g, addr(k), ext(), sink, 1).unwrap();
                        }
                        got
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for w in 1..WORKERS {
            assert_eq!(ports[w], ports[0], "worker {w} got other ports");
        }
        let mut distinct = ports[0].clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), ADDRS);
        assert!(distinct
            .iter()
            .all(|p| p % 2 == 0 && (30000..30700).contains(p)));
        assert_eq!(r.live(), ADDRS);
        assert_eq!(r.counters.installed.load(Ordering::Relaxed), ADDRS as u64);
        assert_eq!(sink.doubled.load(Ordering::Relaxed), 0);
        assert_eq!(lock(&sink.by_external).len(), 2 * ADDRS);

        // Ending them, with churn: 50 pairs left, each worker makes and ends 2,000 calls
        // of its own (some find the range full: counted, no port).
        std::thread::scope(|sc| {
            for w in 0..WORKERS {
                let (r, sink) = (&r, &sink);
                sc.spawn(move || {
                    for n in 0..2_000usize {
                        let k = 10_000 + w * 10_000 + n;
                        let c = call_hash(&k.to_be_bytes());
                        let g = r.begin_sdp();
                        if let Some(p) = r.bind(c, g, addr(k), ext(), sink, 1) {
                            assert!(p % 2 == 0 && (30000..30700).contains(&p));
                            assert_eq!(r.end_call(c, sink), 1);
                        }
                        if n % 8 == 0 {
                            let k = w * (ADDRS / WORKERS) + n / 8;
                            if k < (w + 1) * (ADDRS / WORKERS) {
                                let c = call_hash(&k.to_be_bytes());
                                assert_eq!(r.end_call(c, sink), 1);
                            }
                        }
                    }
                });
            }
        });
        assert_eq!(r.live(), 0);
        assert!(r.list().is_empty());
        assert!(lock(&sink.by_external).is_empty());
        assert_eq!(sink.doubled.load(Ordering::Relaxed), 0);
        let c = &r.counters;
        assert_eq!(
            c.installed.load(Ordering::Relaxed),
            c.removed.load(Ordering::Relaxed)
        );
        assert_eq!(c.install_failed.load(Ordering::Relaxed), 0);
    }
}
