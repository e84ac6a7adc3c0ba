//! IP fragment reassembly (RFC 791 / RFC 8200), one [`Reassembler`] per worker thread.
//!
//! Pure and allocation-free after [`Reassembler::new`]: every slot (datagram buffer and
//! fragment-range table) is allocated there, up front. `add` is a linear scan over the
//! slots (a few hundred at most), a copy of the fragment data, a sorted insert into a
//! fixed table of at most `max_fragments` ranges.
//!
//! Policy:
//! - Key: (src, dst, ident, protocol) for IPv4, (src, dst, ident) for IPv6.
//! - Any overlapping or duplicate fragment drops the whole datagram (RFC 5722 for IPv6,
//!   the same policy for IPv4). So do the other per-datagram errors (too many fragments,
//!   too big, inconsistent lengths). The dropped datagram's key stays *poisoned* in its
//!   slot for `timeout_ms`: its later fragments are dropped and counted, not reassembled.
//! - An incomplete datagram is dropped `timeout_ms` after its first fragment arrived
//!   (lazily in `add`, or by [`Reassembler::expire`]).
//! - No free slot: a poisoned (or abandoned) slot is reused first; otherwise the OLDEST
//!   in-progress datagram is evicted (counted).
//! - Classification ([`Reassembler::add_classified`]): when the first fragment (offset 0,
//!   which holds the upper-layer header) arrives, the caller says whether the datagram is
//!   its business. If not, it is *passed*: the fragments held so far are given back as
//!   they arrived ([`Reassembler::held_original`]: each fragment's own headers are kept
//!   next to its data), the first fragment too, and every later fragment of that key until
//!   the timeout ([`Added::PassThis`]): a datagram that is not ours reaches the kernel
//!   exactly as it came, whatever its size.
//!
//! Buffer layout of a slot: the fragment data (the datagram's fragmentable part) lives
//! at `HEADROOM..HEADROOM + total`; the link header and the unfragmentable IP header of
//! the first fragment (offset 0) are copied so that they end exactly at `HEADROOM`. The
//! whole reassembled packet is therefore contiguous: `HEADROOM - hdr_len .. HEADROOM +
//! total`. IPv6: the fragment header is left out and the next-header field that pointed
//! to it is patched to the fragment header's next header.

use core::net::IpAddr;

use crate::wire::{
    ipv4,
    ipv6::{self, NH_AH, NH_DSTOPTS, NH_FRAGMENT, NH_HOPOPTS, NH_ROUTING},
    FragmentInfo, Layout,
};

/// Room before the data for the link header + IP header (+ IPv6 extension headers that
/// precede the fragment header) of the first fragment.
pub const HEADROOM: usize = 256;

/// Bounds of a [`Reassembler`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReasmLimits {
    /// Reassembly memory, bytes: `memory / max_datagram` slots (fragment data held never
    /// exceeds it; each slot also has [`HEADROOM`] bytes for headers).
    pub memory: usize,
    /// An incomplete datagram is dropped this long after its first fragment.
    pub timeout_ms: u32,
    /// Most fragments per datagram.
    pub max_fragments: u32,
    /// Largest datagram reassembled: bytes of the fragmentable part (IPv4: the payload
    /// after the IP header; IPv6: what follows the fragment header).
    pub max_datagram: usize,
}

/// The largest fragmentable part an IP datagram can have: no UDP datagram is too big.
pub const MAX_DATAGRAM: usize = 65535;

impl Default for ReasmLimits {
    fn default() -> Self {
        ReasmLimits {
            memory: 16 << 20,
            timeout_ms: 2000,
            max_fragments: 64,
            max_datagram: MAX_DATAGRAM,
        }
    }
}

/// What [`Reassembler::add_classified`] did with a fragment.
#[derive(Debug)]
pub enum Added<'a> {
    /// Kept; the datagram is not complete yet.
    Held,
    /// This fragment completed the datagram.
    Complete(Reassembled<'a>),
    /// The datagram is not the caller's: pass this fragment on as it is (and, before it,
    /// the `held` fragments [`Reassembler::held_original`] gives back from `slot`).
    Pass { slot: usize, held: usize },
    /// A later fragment of a datagram already passed: pass it on as it is.
    PassThis,
}

/// Event counters (monotonic).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReasmStats {
    /// Fragments handed to `add` (well-formed enough to be looked at).
    pub fragments: u64,
    /// Datagrams reassembled.
    pub completed: u64,
    /// Datagrams dropped for an overlapping or duplicate fragment.
    pub overlaps: u64,
    /// Fragments given back unchanged: their datagram is not the caller's.
    pub passed: u64,
    /// Datagrams dropped for more than `max_fragments` fragments.
    pub too_many_fragments: u64,
    /// Datagrams dropped for exceeding `max_datagram` (or 65535-byte IP length, or
    /// headers longer than [`HEADROOM`]).
    pub too_big: u64,
    /// Datagrams dropped incomplete after `timeout_ms`.
    pub timeouts: u64,
    /// In-progress datagrams evicted (oldest first) to make room for a new one.
    pub evictions: u64,
    /// Datagrams dropped for inconsistent fragments: beyond a known total length, a
    /// non-final fragment whose length is not a multiple of 8, a second last fragment
    /// with a different end, an empty fragment.
    pub inconsistent: u64,
    /// Fragments dropped because their datagram had been dropped (poisoned key).
    pub poisoned: u64,
    /// Inputs rejected without touching any datagram: not a fragment, layout not
    /// matching the frame.
    pub malformed: u64,
    /// Fragments dropped because the reassembler has no slot at all (`memory <
    /// max_datagram`).
    pub no_slot: u64,
}

/// Why `add` did not take a fragment (each also counted in [`ReasmStats`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReasmError {
    #[error("not an IP fragment")]
    NotFragment,
    #[error("fragment layout does not match the frame")]
    Malformed,
    #[error("overlapping or duplicate fragment: datagram dropped")]
    Overlap,
    #[error("too many fragments: datagram dropped")]
    TooManyFragments,
    #[error("datagram too big: dropped")]
    TooBig,
    #[error("inconsistent fragment: datagram dropped")]
    Inconsistent,
    #[error("fragment of a dropped datagram")]
    Poisoned,
    #[error("no reassembly slot (memory limit below one datagram)")]
    NoSlot,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    ident: u32,
    /// IPv4 protocol; 0 for IPv6 (not part of the key).
    protocol: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Free,
    /// Collecting fragments.
    InProgress,
    /// Dropped: later fragments of `key` are refused until `deadline`.
    Poisoned,
    /// Handed out as [`Reassembled`]; freed when it is dropped. Found in this state by
    /// `add`/`expire` only if the `Reassembled` was leaked: then it is as good as free.
    Complete,
    /// Not the caller's datagram: later fragments of `key` are passed on until `deadline`.
    Passing,
}

/// A fragment range `[start, end)` of the fragmentable part, and where the fragment's own
/// headers (link, IP, IPv6 extension and fragment headers) are kept.
#[derive(Clone, Copy, Debug, Default)]
struct Range {
    start: u32,
    end: u32,
    /// Index of its headers in the slot's `orig` table, and their length.
    hdr: u16,
    hdr_len: u16,
}

struct Slot {
    state: State,
    key: Key,
    ipv6: bool,
    /// When the first fragment arrived (eviction order).
    created_ms: u64,
    /// InProgress: timeout; Poisoned: end of the poisoning.
    deadline_ms: u64,
    /// Link + IP header length of the first fragment as stored (0: first not seen).
    hdr_len: usize,
    /// Offset of the IP header in the stored packet (the first fragment's `l3`).
    l3: usize,
    /// Total length of the fragmentable part, known once the last fragment arrived.
    total: Option<usize>,
    /// Fragment data bytes held.
    held: usize,
    /// IP packet length of the largest fragment.
    max_fragment_len: usize,
    /// Sorted, non-overlapping; `nranges` used.
    ranges: Box<[Range]>,
    nranges: usize,
    buf: Box<[u8]>,
    /// Each held fragment's headers as they arrived: `max_fragments` × [`HEADROOM`].
    orig: Box<[u8]>,
}

impl Slot {
    fn reset(&mut self) {
        self.state = State::Free;
        self.hdr_len = 0;
        self.l3 = 0;
        self.total = None;
        self.held = 0;
        self.max_fragment_len = 0;
        self.nranges = 0;
    }

    /// Can be taken without evicting anything.
    fn reusable(&self) -> bool {
        matches!(self.state, State::Free | State::Complete)
    }
}

/// Reassembles fragmented IPv4/IPv6 datagrams; owned by one worker.
pub struct Reassembler {
    limits: ReasmLimits,
    slots: Box<[Slot]>,
    stats: ReasmStats,
}

impl core::fmt::Debug for Reassembler {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Reassembler")
            .field("limits", &self.limits)
            .field("slots", &self.slots.len())
            .field("stats", &self.stats)
            .finish()
    }
}

/// Where a fragment's pieces are (checked against the frame).
struct Piece {
    key: Key,
    offset: usize,
    end: usize,
    more: bool,
    /// Data in the frame.
    data: usize,
    /// IP packet length of the fragment.
    ip_len: usize,
}

impl Reassembler {
    /// Allocates every slot (the only allocation).
    pub fn new(limits: ReasmLimits) -> Reassembler {
        let max_datagram = limits.max_datagram.max(8);
        let n = limits.memory / max_datagram;
        let nfrag = limits.max_fragments.max(1) as usize;
        let slots = (0..n)
            .map(|_| Slot {
                state: State::Free,
                key: Key {
                    src: IpAddr::V4([0; 4].into()),
                    dst: IpAddr::V4([0; 4].into()),
                    ident: 0,
                    protocol: 0,
                },
                ipv6: false,
                created_ms: 0,
                deadline_ms: 0,
                hdr_len: 0,
                l3: 0,
                total: None,
                held: 0,
                max_fragment_len: 0,
                ranges: vec![Range::default(); nfrag].into_boxed_slice(),
                nranges: 0,
                buf: vec![0u8; max_datagram + HEADROOM].into_boxed_slice(),
                orig: vec![0u8; nfrag * HEADROOM].into_boxed_slice(),
            })
            .collect();
        Reassembler {
            limits: ReasmLimits {
                max_datagram,
                max_fragments: nfrag as u32,
                ..limits
            },
            slots,
            stats: ReasmStats::default(),
        }
    }

    pub fn limits(&self) -> &ReasmLimits {
        &self.limits
    }

    pub fn stats(&self) -> &ReasmStats {
        &self.stats
    }

    /// Number of slots (datagrams reassembled concurrently, poisoned keys included).
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Fragment data bytes currently held by in-progress datagrams (≤ `limits.memory`).
    pub fn memory_in_use(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.state == State::InProgress)
            .map(|s| s.held)
            .sum()
    }

    /// Datagrams being reassembled.
    pub fn in_progress(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.state == State::InProgress)
            .count()
    }

    /// Drops datagrams incomplete for `timeout_ms` (counted) and ends poisonings.
    pub fn expire(&mut self, now_ms: u64) {
        for s in self.slots.iter_mut() {
            match s.state {
                State::InProgress if now_ms >= s.deadline_ms => {
                    self.stats.timeouts += 1;
                    s.reset();
                }
                State::Poisoned | State::Passing if now_ms >= s.deadline_ms => s.reset(),
                State::Complete => s.reset(),
                _ => {}
            }
        }
    }

    /// Takes one fragment. `frame` holds it (link header included), `layout` is
    /// [`crate::wire::parse`]'s view of it. Returns the whole datagram when this fragment
    /// completes it; the slot stays taken until the [`Reassembled`] is dropped.
    pub fn add(
        &mut self,
        frame: &[u8],
        layout: &Layout,
        now_ms: u64,
    ) -> Result<Option<Reassembled<'_>>, ReasmError> {
        match self.add_classified(frame, layout, now_ms, |_, _| true)? {
            Added::Complete(r) => Ok(Some(r)),
            _ => Ok(None),
        }
    }

    /// Like [`Self::add`], with the datagram classified when its first fragment arrives:
    /// `ours(protocol, upper)` gets the upper-layer protocol and the first fragment's data
    /// (the upper-layer header first); false passes the datagram on (see [`Added`]).
    pub fn add_classified(
        &mut self,
        frame: &[u8],
        layout: &Layout,
        now_ms: u64,
        ours: impl FnOnce(u8, &[u8]) -> bool,
    ) -> Result<Added<'_>, ReasmError> {
        self.expire(now_ms);
        let p = match check(frame, layout) {
            Some(p) => p,
            None => {
                self.stats.malformed += 1;
                return Err(if layout.fragment.is_none() {
                    ReasmError::NotFragment
                } else {
                    ReasmError::Malformed
                });
            }
        };
        self.stats.fragments += 1;

        let found = self.slots.iter().position(|s| {
            matches!(
                s.state,
                State::InProgress | State::Poisoned | State::Passing
            ) && s.key == p.key
        });
        if let Some(i) = found {
            match self.slots[i].state {
                State::Poisoned => {
                    self.stats.poisoned += 1;
                    return Err(ReasmError::Poisoned);
                }
                State::Passing => {
                    self.stats.passed += 1;
                    return Ok(Added::PassThis);
                }
                _ => {}
            }
        }
        // The first fragment says whose datagram it is.
        let protocol = layout.fragment.map_or(0, |f| f.protocol);
        if p.offset == 0 && !ours(protocol, &frame[p.data..layout.ip_end]) {
            return Ok(self.start_passing(found, p.key, now_ms));
        }

        // Checks on the fragment alone.
        let alone = if p.end == p.offset || (p.more && !(p.end - p.offset).is_multiple_of(8)) {
            Err(ReasmError::Inconsistent)
        } else if p.end > self.limits.max_datagram {
            Err(ReasmError::TooBig)
        } else {
            Ok(())
        };
        if let Err(e) = alone {
            self.count(e);
            self.poison_key(found, p.key, now_ms);
            return Err(e);
        }

        let i = match found {
            Some(i) => i,
            None => {
                let Some(i) = self.take_slot() else {
                    self.stats.no_slot += 1;
                    return Err(ReasmError::NoSlot);
                };
                let s = &mut self.slots[i];
                s.reset();
                s.state = State::InProgress;
                s.key = p.key;
                s.ipv6 = layout.ipv6;
                s.created_ms = now_ms;
                s.deadline_ms = now_ms.saturating_add(u64::from(self.limits.timeout_ms));
                i
            }
        };

        match self.insert(i, frame, layout, &p) {
            Ok(true) => match self.finish(i) {
                Ok((start, end)) => {
                    self.stats.completed += 1;
                    self.slots[i].state = State::Complete;
                    Ok(Added::Complete(Reassembled {
                        r: self,
                        idx: i,
                        start,
                        end,
                    }))
                }
                Err(e) => {
                    self.count(e);
                    self.poison(i, now_ms);
                    Err(e)
                }
            },
            Ok(false) => Ok(Added::Held),
            Err(e) => {
                self.count(e);
                self.poison(i, now_ms);
                Err(e)
            }
        }
    }

    /// The first fragment of a datagram that is not ours (`add_classified`'s `ours`): its
    /// key is remembered as passing (slot `found` if it had one), so the fragments held so
    /// far and those still to come go on as they are.
    fn start_passing(&mut self, found: Option<usize>, key: Key, now_ms: u64) -> Added<'_> {
        let i = match found {
            Some(i) => i,
            None => {
                let Some(i) = self.take_slot() else {
                    // Nowhere to remember it: this fragment still goes on as it is.
                    self.stats.passed += 1;
                    return Added::PassThis;
                };
                self.slots[i].reset();
                i
            }
        };
        let s = &mut self.slots[i];
        let held = if s.state == State::InProgress {
            s.nranges
        } else {
            0
        };
        s.state = State::Passing;
        s.key = key;
        s.created_ms = now_ms;
        s.deadline_ms = now_ms.saturating_add(u64::from(self.limits.timeout_ms));
        self.stats.passed += 1 + held as u64;
        Added::Pass { slot: i, held }
    }

    /// Poisons `key` after a bad fragment: its slot `found`, else a slot that is to be had
    /// without evicting anything (or none).
    fn poison_key(&mut self, found: Option<usize>, key: Key, now_ms: u64) {
        match found {
            Some(i) => self.poison(i, now_ms),
            None => {
                if let Some(i) = self
                    .slots
                    .iter()
                    .position(Slot::reusable)
                    .or_else(|| self.oldest(State::Poisoned))
                {
                    self.slots[i].reset();
                    self.slots[i].key = key;
                    self.poison(i, now_ms);
                }
            }
        }
    }

    /// The `k`-th fragment (by offset) that slot `slot` held when its datagram was passed
    /// ([`Added::Pass`]), exactly as it arrived (link header included), written to `out`;
    /// its length. Valid until the next call of `add`/`add_classified`.
    pub fn held_original(&self, slot: usize, k: usize, out: &mut [u8]) -> Option<usize> {
        let s = self.slots.get(slot)?;
        if s.state != State::Passing || k >= s.nranges {
            return None;
        }
        let r = s.ranges[k];
        let h = usize::from(r.hdr) * HEADROOM;
        let hl = usize::from(r.hdr_len);
        let (start, end) = (r.start as usize, r.end as usize);
        let n = hl + (end - start);
        let out = out.get_mut(..n)?;
        out[..hl].copy_from_slice(&s.orig[h..h + hl]);
        out[hl..].copy_from_slice(&s.buf[HEADROOM + start..HEADROOM + end]);
        Some(n)
    }

    fn count(&mut self, e: ReasmError) {
        let c = match e {
            ReasmError::Overlap => &mut self.stats.overlaps,
            ReasmError::TooManyFragments => &mut self.stats.too_many_fragments,
            ReasmError::TooBig => &mut self.stats.too_big,
            ReasmError::Inconsistent => &mut self.stats.inconsistent,
            ReasmError::Poisoned => &mut self.stats.poisoned,
            ReasmError::NoSlot => &mut self.stats.no_slot,
            ReasmError::NotFragment | ReasmError::Malformed => &mut self.stats.malformed,
        };
        *c += 1;
    }

    /// Drops slot `i`'s datagram and poisons its key until `now + timeout`.
    fn poison(&mut self, i: usize, now_ms: u64) {
        let s = &mut self.slots[i];
        let key = s.key;
        s.reset();
        s.key = key;
        s.state = State::Poisoned;
        s.created_ms = now_ms;
        s.deadline_ms = now_ms.saturating_add(u64::from(self.limits.timeout_ms));
    }

    /// The oldest slot in `state`.
    fn oldest(&self, state: State) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state == state)
            .min_by_key(|(_, s)| s.created_ms)
            .map(|(i, _)| i)
    }

    /// A slot for a new datagram: free, else the oldest poisoned, else the oldest
    /// in-progress one (evicted, counted).
    fn take_slot(&mut self) -> Option<usize> {
        if let Some(i) = self.slots.iter().position(Slot::reusable) {
            return Some(i);
        }
        if let Some(i) = self
            .oldest(State::Poisoned)
            .or_else(|| self.oldest(State::Passing))
        {
            return Some(i);
        }
        let i = self.oldest(State::InProgress)?;
        self.stats.evictions += 1;
        Some(i)
    }

    /// Records fragment `p` in slot `i`; `Ok(true)` when the datagram is complete.
    fn insert(
        &mut self,
        i: usize,
        frame: &[u8],
        layout: &Layout,
        p: &Piece,
    ) -> Result<bool, ReasmError> {
        let max_fragments = self.limits.max_fragments as usize;
        let s = &mut self.slots[i];
        // Lengths: a fragment beyond the known end; a second last fragment with another end.
        if let Some(total) = s.total {
            if p.end > total || (!p.more && p.end != total) {
                return Err(ReasmError::Inconsistent);
            }
        } else if !p.more && s.nranges > 0 && s.ranges[s.nranges - 1].end as usize > p.end {
            return Err(ReasmError::Inconsistent);
        }
        // Overlaps (duplicates included), against the sorted ranges.
        let at = s.ranges[..s.nranges].partition_point(|r| (r.start as usize) < p.offset);
        if at > 0 && s.ranges[at - 1].end as usize > p.offset {
            return Err(ReasmError::Overlap);
        }
        if at < s.nranges && (s.ranges[at].start as usize) < p.end {
            return Err(ReasmError::Overlap);
        }
        if s.nranges >= max_fragments {
            return Err(ReasmError::TooManyFragments);
        }
        // The first fragment's headers, ending at HEADROOM.
        if p.offset == 0 {
            let hdr_len = store_headers(&mut s.buf[..HEADROOM], frame, layout, p)?;
            s.hdr_len = hdr_len;
            s.l3 = layout.l3;
        }
        // This fragment's own headers, to give it back as it came if the datagram turns
        // out not to be ours (the n-th fragment held uses the n-th header slot).
        if p.data > HEADROOM {
            return Err(ReasmError::TooBig);
        }
        let hdr = s.nranges;
        s.orig[hdr * HEADROOM..hdr * HEADROOM + p.data].copy_from_slice(&frame[..p.data]);
        s.buf[HEADROOM + p.offset..HEADROOM + p.end]
            .copy_from_slice(&frame[p.data..p.data + (p.end - p.offset)]);
        s.ranges.copy_within(at..s.nranges, at + 1);
        s.ranges[at] = Range {
            start: p.offset as u32,
            end: p.end as u32,
            hdr: hdr as u16,
            hdr_len: p.data as u16,
        };
        s.nranges += 1;
        s.held += p.end - p.offset;
        s.max_fragment_len = s.max_fragment_len.max(p.ip_len);
        if !p.more {
            s.total = Some(p.end);
        }
        Ok(matches!(s.total, Some(t) if s.hdr_len != 0 && s.held == t))
    }

    /// Rewrites the stored header of complete slot `i` as unfragmented; the packet's
    /// range in the slot buffer.
    fn finish(&mut self, i: usize) -> Result<(usize, usize), ReasmError> {
        let s = &mut self.slots[i];
        let total = s.total.unwrap_or(0);
        let start = HEADROOM - s.hdr_len;
        let end = HEADROOM + total;
        let ip = &mut s.buf[start + s.l3..end];
        if s.ipv6 {
            let pl = ip.len() - ipv6::HEADER_LEN;
            let pl = u16::try_from(pl).map_err(|_| ReasmError::TooBig)?;
            ipv6::Packet::new_unchecked(ip).set_payload_len(pl);
        } else {
            let len = u16::try_from(ip.len()).map_err(|_| ReasmError::TooBig)?;
            let mut h = ipv4::Packet::new_unchecked(ip);
            let df = h.dont_fragment();
            h.set_total_len(len);
            h.set_fragment(false, 0, df);
            h.fill_checksum();
        }
        Ok((start, end))
    }
}

/// Validates `layout` against `frame`; the fragment's key and ranges.
fn check(frame: &[u8], layout: &Layout) -> Option<Piece> {
    let f: FragmentInfo = layout.fragment?;
    let min_hdr = if layout.ipv6 {
        ipv6::HEADER_LEN + 8
    } else {
        ipv4::MIN_HEADER_LEN
    };
    if layout.ip_end > frame.len()
        || f.data > layout.ip_end
        || layout.l3.checked_add(min_hdr)? > f.data
        || (f.offset == 0 && !f.more)
        || !f.offset.is_multiple_of(8)
        || layout.ipv6 != matches!(layout.src, IpAddr::V6(_))
        || layout.ipv6 != matches!(layout.dst, IpAddr::V6(_))
    {
        return None;
    }
    // The IP header must be what the layout says (IPv4: IHL up to the data).
    let vihl = frame[layout.l3];
    let consistent = if layout.ipv6 {
        vihl >> 4 == 6
    } else {
        vihl >> 4 == 4 && usize::from(vihl & 0x0f) * 4 == f.data - layout.l3
    };
    if !consistent {
        return None;
    }
    Some(Piece {
        key: Key {
            src: layout.src,
            dst: layout.dst,
            ident: f.ident,
            protocol: if layout.ipv6 { 0 } else { f.protocol },
        },
        offset: f.offset,
        end: f.offset.checked_add(layout.ip_end - f.data)?,
        more: f.more,
        data: f.data,
        ip_len: layout.ip_end - layout.l3,
    })
}

/// Copies the link + IP header of a first fragment to the end of `head` (IPv6: without
/// the fragment header, the next-header field pointing to it patched). Its length.
fn store_headers(
    head: &mut [u8],
    frame: &[u8],
    layout: &Layout,
    p: &Piece,
) -> Result<usize, ReasmError> {
    let l3 = layout.l3;
    if !layout.ipv6 {
        // IPv4: `data` is right after the header (parse: l3 + IHL*4).
        let hl = p.data;
        if hl > head.len() {
            return Err(ReasmError::TooBig);
        }
        let at = head.len() - hl;
        head[at..].copy_from_slice(&frame[..hl]);
        return Ok(hl);
    }
    // IPv6: the fragment header is the 8 bytes before the data; find the next-header
    // field pointing to it by walking the chain from the fixed header.
    let ip = &frame[l3..layout.ip_end];
    let fh = p.data - 8 - l3;
    let mut nh_pos = 6;
    let mut nh = ip[6];
    let mut off = ipv6::HEADER_LEN;
    let mut found = false;
    for _ in 0..16 {
        if off == fh {
            found = nh == NH_FRAGMENT;
            break;
        }
        if off > fh {
            break;
        }
        let Some(h) = ip.get(off..off + 2) else { break };
        let len = match nh {
            NH_HOPOPTS | NH_ROUTING | NH_DSTOPTS => (usize::from(h[1]) + 1) * 8,
            NH_AH => (usize::from(h[1]) + 2) * 4,
            NH_FRAGMENT => 8,
            _ => break,
        };
        nh_pos = off;
        nh = h[0];
        off += len;
    }
    if !found {
        return Err(ReasmError::Inconsistent);
    }
    let hl = l3 + fh;
    if hl > head.len() {
        return Err(ReasmError::TooBig);
    }
    let at = head.len() - hl;
    head[at..].copy_from_slice(&frame[..hl]);
    // The fragment header's next header (only the first fragment's counts, RFC 8200).
    head[at + l3 + nh_pos] = ip[fh];
    Ok(hl)
}

/// A reassembled datagram, in its slot's buffer; the slot is freed when this is dropped.
pub struct Reassembled<'a> {
    r: &'a mut Reassembler,
    idx: usize,
    start: usize,
    end: usize,
}

impl core::fmt::Debug for Reassembled<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Reassembled")
            .field("len", &self.bytes().len())
            .field("l3", &self.l3())
            .field("fragments", &self.fragments())
            .field("max_fragment_len", &self.max_fragment_len())
            .finish()
    }
}

impl Reassembled<'_> {
    /// The whole packet: the first fragment's link header (`0..l3`), the unfragmented IP
    /// header, the payload.
    pub fn bytes(&self) -> &[u8] {
        &self.r.slots[self.idx].buf[self.start..self.end]
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.r.slots[self.idx].buf[self.start..self.end]
    }

    /// Offset of the IP header in [`Self::bytes`].
    pub fn l3(&self) -> usize {
        self.r.slots[self.idx].l3
    }

    pub fn ipv6(&self) -> bool {
        self.r.slots[self.idx].ipv6
    }

    /// IP packet length of the largest fragment received (link header excluded): the
    /// MTU the sender fragmented for.
    pub fn max_fragment_len(&self) -> usize {
        self.r.slots[self.idx].max_fragment_len
    }

    /// Number of fragments the datagram came in.
    pub fn fragments(&self) -> usize {
        self.r.slots[self.idx].nranges
    }

    /// Frees the slot (same as dropping).
    pub fn release(self) {}
}

impl Drop for Reassembled<'_> {
    fn drop(&mut self) {
        self.r.slots[self.idx].reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip::{
        frag::fragment,
        test_frames::{self as frames, XorShift},
    };
    use crate::wire::{self, checksum, Link};
    use etherparse::{
        IpHeaders, IpNumber, Ipv4Header, NetHeaders, NetSlice, PacketBuilder, PacketHeaders,
        SlicedPacket, TransportHeader, TransportSlice,
    };

    const ETH: usize = 14;

    fn sip_payload(n: usize) -> Vec<u8> {
        frames::payload(
            b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060\r\n",
            n,
        )
    }

    fn udp_v4(n: usize, ident: u16) -> Vec<u8> {
        frames::udp_v4(&sip_payload(n), ident, false)
    }

    fn udp_v6(n: usize, last: u8) -> Vec<u8> {
        frames::udp_v6(&sip_payload(n), last)
    }

    fn frags(packet: &[u8], mtu: usize, ident: u32) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        fragment(packet, ETH, mtu, ident, &mut |f: &[u8]| {
            v.push(f.to_vec());
            true
        })
        .unwrap();
        v
    }

    /// The reassembled packet (and the fragment count and largest fragment) if the last
    /// fragment completed it; asserts only the last one does.
    fn feed(r: &mut Reassembler, frags: &[Vec<u8>], now: u64) -> Option<(Vec<u8>, usize, usize)> {
        let mut done = None;
        for (i, f) in frags.iter().enumerate() {
            let l = wire::parse(f, Link::Ethernet).unwrap();
            match r.add(f, &l, now).unwrap() {
                Some(d) => {
                    assert_eq!(i + 1, frags.len(), "completed early");
                    assert_eq!(d.l3(), l.l3);
                    done = Some((d.bytes().to_vec(), d.fragments(), d.max_fragment_len()));
                }
                None => assert!(i + 1 < frags.len() || done.is_some()),
            }
            assert!(r.memory_in_use() <= r.limits().memory);
        }
        done
    }

    /// Valid UDP checksum, via etherparse.
    fn udp_ok_eth(frame: &[u8]) -> bool {
        let h = PacketHeaders::from_ethernet_slice(frame).expect("parses");
        let Some(TransportHeader::Udp(u)) = h.transport else {
            return false;
        };
        let data = h.payload.slice();
        let c = match h.net {
            Some(NetHeaders::Ipv4(ip, _)) => u.calc_checksum_ipv4(&ip, data).unwrap(),
            Some(NetHeaders::Ipv6(ip, _)) => u.calc_checksum_ipv6(&ip, data).unwrap(),
            _ => return false,
        };
        c == u.checksum
    }

    fn udp_ok_ip6(ip: &[u8]) -> bool {
        let s = SlicedPacket::from_ip(ip).expect("parses");
        let (Some(NetSlice::Ipv6(n)), Some(TransportSlice::Udp(u))) = (s.net, s.transport) else {
            return false;
        };
        let h = u.to_header();
        h.calc_checksum_ipv6(&n.header().to_header(), u.payload())
            .unwrap()
            == h.checksum
    }

    #[test]
    fn round_trips_in_order_reversed_shuffled() {
        let mut rng = XorShift(0x1234_5678_9abc_def1);
        let mut r = Reassembler::new(ReasmLimits::default());
        let mut expected_completed = 0;
        for v6 in [false, true] {
            let orig = if v6 {
                udp_v6(3000, 2)
            } else {
                udp_v4(3000, 0xbeef)
            };
            assert!(udp_ok_eth(&orig));
            for mtu in [1500, 576] {
                let fr = frags(&orig, mtu, 0x0102_0304);
                for order in 0..5 {
                    let mut fr = fr.clone();
                    match order {
                        0 => {}
                        1 => fr.reverse(),
                        _ => rng.shuffle(&mut fr),
                    }
                    let (got, n, max) = feed(&mut r, &fr, 1000).expect("complete");
                    expected_completed += 1;
                    assert_eq!(got, orig, "v6 {v6} mtu {mtu} order {order}");
                    assert_eq!(n, fr.len());
                    assert!(max <= mtu && max > mtu - 8 - 60, "max fragment {max}");
                    assert!(udp_ok_eth(&got));
                    if !v6 {
                        let p = wire::ipv4::Packet::new_checked(&got[ETH..]).unwrap();
                        assert!(p.verify_checksum());
                        assert_eq!(p.ident(), 0xbeef);
                    }
                    assert_eq!(r.memory_in_use(), 0);
                    assert_eq!(r.in_progress(), 0);
                }
            }
        }
        let s = r.stats();
        assert_eq!(s.completed, expected_completed);
        assert_eq!(
            s.overlaps + s.inconsistent + s.too_big + s.timeouts + s.evictions,
            0
        );
    }

    #[test]
    fn ipv6_extension_headers_round_trip() {
        // IPv6 / Hop-by-Hop (8) / Destination options (16) / UDP: Hop-by-Hop stays before
        // the fragment header, Destination options go in the fragmentable part.
        let base = udp_v6(3000, 3);
        let mut orig = base[..ETH + 40].to_vec();
        orig[ETH + 6] = 0; // hop-by-hop
        orig.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        orig.extend_from_slice(&[17, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        orig.extend_from_slice(&base[ETH + 40..]);
        let pl = (orig.len() - ETH - 40) as u16;
        orig[ETH + 4..ETH + 6].copy_from_slice(&pl.to_be_bytes());
        let mut r = Reassembler::new(ReasmLimits::default());
        for mtu in [1280, 576] {
            let mut fr = frags(&orig, mtu, 9);
            assert_eq!(
                fr[0][ETH + 40],
                NH_FRAGMENT,
                "HBH points to the fragment header"
            );
            fr.reverse();
            let (got, _, _) = feed(&mut r, &fr, 0).expect("complete");
            assert_eq!(got, orig);
            assert!(udp_ok_eth(&got));
        }
    }

    #[test]
    fn random_mtus_and_orders_round_trip() {
        let mut rng = XorShift(77);
        let mut r = Reassembler::new(ReasmLimits::default());
        for i in 0..2000u32 {
            let n = 1 + rng.below(6000);
            let orig = if i % 2 == 0 {
                udp_v4(n, i as u16)
            } else {
                udp_v6(n, 7)
            };
            let mtu = if i % 2 == 0 {
                68 + rng.below(1500)
            } else {
                64 + rng.below(1500)
            };
            let mut fr = frags(&orig, mtu, i);
            if fr.len() == 1 || fr.len() > 64 {
                continue;
            }
            rng.shuffle(&mut fr);
            let (got, k, _) = feed(&mut r, &fr, u64::from(i)).expect("complete");
            assert_eq!(got, orig);
            assert_eq!(k, fr.len());
        }
        assert_eq!(r.memory_in_use(), 0);
    }

    fn set_v4_offset(f: &mut [u8], offset: usize, more: bool) {
        let mut p = wire::ipv4::Packet::new_unchecked(&mut f[ETH..]);
        p.set_fragment(more, offset, false);
        p.fill_checksum();
    }

    fn set_v4_len(f: &mut Vec<u8>, ip_len: usize) {
        f.truncate(ETH + ip_len);
        let mut p = wire::ipv4::Packet::new_unchecked(&mut f[ETH..]);
        p.set_total_len(ip_len as u16);
        p.fill_checksum();
    }

    fn add(r: &mut Reassembler, f: &[u8], now: u64) -> Result<bool, ReasmError> {
        let l = wire::parse(f, Link::Ethernet).unwrap();
        r.add(f, &l, now).map(|d| d.is_some())
    }

    /// A reassembler with the default limits but for what `set` changes.
    fn reasm_with(set: impl FnOnce(&mut ReasmLimits)) -> Reassembler {
        let mut limits = ReasmLimits::default();
        set(&mut limits);
        Reassembler::new(limits)
    }

    /// The fragment offset of an IPv4 fragment frame.
    fn v4_offset(f: &[u8]) -> usize {
        wire::parse(f, Link::Ethernet)
            .unwrap()
            .fragment
            .unwrap()
            .offset
    }

    /// Parses a reassembled frame and checks it is whole: no fragment left, the IP packet
    /// ends with the frame, an IPv4 header checksum that verifies.
    #[track_caller]
    fn check_whole(b: &[u8]) -> wire::Layout {
        let w = wire::parse(b, Link::Ethernet).expect("reassembled parses");
        assert!(w.fragment.is_none());
        assert_eq!(w.ip_end, b.len());
        if !w.ipv6 {
            assert!(wire::ipv4::Packet::new_checked(&b[ETH..])
                .unwrap()
                .verify_checksum());
        }
        w
    }

    #[test]
    fn duplicate_drops_and_poisons() {
        for v6 in [false, true] {
            let orig = if v6 {
                udp_v6(3000, 4)
            } else {
                udp_v4(3000, 11)
            };
            let fr = frags(&orig, 1500, 5);
            assert_eq!(fr.len(), 3);
            let mut r = Reassembler::new(ReasmLimits::default());
            assert_eq!(add(&mut r, &fr[0], 0), Ok(false));
            assert!(r.memory_in_use() > 0);
            assert_eq!(add(&mut r, &fr[0], 1), Err(ReasmError::Overlap));
            assert_eq!(r.stats().overlaps, 1);
            assert_eq!(r.memory_in_use(), 0);
            // Later fragments of the dropped datagram: dropped, counted, not reassembled.
            assert_eq!(add(&mut r, &fr[1], 2), Err(ReasmError::Poisoned));
            assert_eq!(add(&mut r, &fr[2], 3), Err(ReasmError::Poisoned));
            assert_eq!(add(&mut r, &fr[0], 4), Err(ReasmError::Poisoned));
            assert_eq!(r.stats().poisoned, 3);
            assert_eq!(r.stats().completed, 0);
            assert_eq!(r.memory_in_use(), 0);
            // Another datagram is unaffected.
            let other = if v6 {
                udp_v6(3000, 5)
            } else {
                udp_v4(3000, 12)
            };
            assert!(feed(&mut r, &frags(&other, 1500, 6), 5).is_some());
            // After the timeout the key is usable again.
            r.expire(1 + 2000);
            assert_eq!(feed(&mut r, &fr, 2001).unwrap().0, orig);
        }
    }

    #[test]
    fn overlapping_fragment_drops() {
        // IPv4: the second fragment moved 8 bytes back overlaps the first.
        let orig = udp_v4(3000, 21);
        let fr = frags(&orig, 1500, 0);
        let mut r = Reassembler::new(ReasmLimits::default());
        let mut bad = fr[1].clone();
        set_v4_offset(&mut bad, v4_offset(&fr[1]) - 8, true);
        assert_eq!(add(&mut r, &fr[0], 0), Ok(false));
        assert_eq!(add(&mut r, &bad, 0), Err(ReasmError::Overlap));
        assert_eq!(add(&mut r, &fr[1], 0), Err(ReasmError::Poisoned));
        assert_eq!(add(&mut r, &fr[2], 0), Err(ReasmError::Poisoned));
        // Overlap with the following fragment (received first).
        let orig = udp_v4(3000, 22);
        let fr = frags(&orig, 1500, 0);
        let mut bad = fr[0].clone();
        let l = bad.len();
        set_v4_len(&mut bad, l - ETH - 8); // shorter: no overlap
        assert_eq!(add(&mut r, &fr[1], 0), Ok(false));
        assert_eq!(add(&mut r, &bad, 0), Ok(false));
        let mut bad2 = fr[0].clone();
        set_v4_offset(&mut bad2, 8, true); // [8, 8 + 1480) overlaps [1480, ..)
        assert_eq!(add(&mut r, &bad2, 0), Err(ReasmError::Overlap));
        assert_eq!(r.stats().overlaps, 2);
        // IPv6: fragment header offset field moved back.
        let orig = udp_v6(3000, 9);
        let fr = frags(&orig, 1500, 3);
        let mut bad = fr[2].clone();
        let of = u16::from_be_bytes([bad[ETH + 42], bad[ETH + 43]]) - 16;
        bad[ETH + 42..ETH + 44].copy_from_slice(&of.to_be_bytes());
        assert_eq!(add(&mut r, &fr[1], 0), Ok(false));
        assert_eq!(add(&mut r, &bad, 0), Err(ReasmError::Overlap));
        assert_eq!(add(&mut r, &fr[0], 0), Err(ReasmError::Poisoned));
        assert_eq!(r.stats().overlaps, 3);
        assert_eq!(r.stats().poisoned, 3);
        assert_eq!(r.memory_in_use(), 0);
    }

    #[test]
    fn incomplete_train_times_out() {
        let mut r = Reassembler::new(ReasmLimits::default());
        let fr = frags(&udp_v4(3000, 31), 576, 0);
        for f in &fr[..fr.len() - 1] {
            assert_eq!(add(&mut r, f, 100), Ok(false));
        }
        assert!(r.memory_in_use() > 0);
        r.expire(100 + 1999);
        assert_eq!(r.stats().timeouts, 0);
        assert!(r.memory_in_use() > 0);
        r.expire(100 + 2000);
        assert_eq!(r.stats().timeouts, 1);
        assert_eq!(r.memory_in_use(), 0);
        assert_eq!(r.in_progress(), 0);
        // Lazily, in `add`: the last fragment alone starts a new datagram (not complete).
        let fr6 = frags(&udp_v6(3000, 8), 576, 1);
        assert_eq!(add(&mut r, &fr6[0], 5000), Ok(false));
        assert_eq!(add(&mut r, fr.last().unwrap(), 7000), Ok(false));
        assert_eq!(r.stats().timeouts, 2, "the IPv6 one expired in add");
        assert_eq!(r.in_progress(), 1);
        r.expire(u64::MAX);
        assert_eq!(r.stats().timeouts, 3);
        assert_eq!(r.memory_in_use(), 0);
    }

    #[test]
    fn memory_bound_evicts_oldest() {
        let limits = ReasmLimits {
            memory: 4 * 16384,
            max_datagram: 16384,
            ..ReasmLimits::default()
        };
        let mut r = Reassembler::new(limits);
        assert_eq!(r.slots(), 4);
        let trains: Vec<Vec<Vec<u8>>> = (0..6u16)
            .map(|i| frags(&udp_v4(12000, 100 + i), 1500, 0))
            .collect();
        // All but the last fragment of each, datagram by datagram, time increasing.
        for (i, t) in trains.iter().enumerate() {
            for f in &t[..t.len() - 1] {
                assert_eq!(add(&mut r, f, i as u64), Ok(false));
                assert!(r.memory_in_use() <= limits.memory);
            }
        }
        assert_eq!(r.stats().evictions, 2);
        assert_eq!(r.in_progress(), 4);
        // The oldest two are gone: their last fragment starts a new (evicting) datagram.
        assert_eq!(add(&mut r, trains[0].last().unwrap(), 10), Ok(false));
        assert_eq!(r.stats().evictions, 3, "evicted datagram 2");
        // The newest ones complete.
        for t in &trains[3..] {
            assert_eq!(add(&mut r, t.last().unwrap(), 11), Ok(true));
        }
        assert_eq!(r.stats().completed, 3);
        assert!(r.memory_in_use() <= limits.memory);
    }

    #[test]
    fn too_many_fragments() {
        let mut r = reasm_with(|l| l.max_fragments = 4);
        let fr = frags(&udp_v4(3000, 41), 576, 0);
        assert_eq!(fr.len(), 6);
        for f in &fr[..4] {
            assert_eq!(add(&mut r, f, 0), Ok(false));
        }
        assert_eq!(add(&mut r, &fr[4], 0), Err(ReasmError::TooManyFragments));
        assert_eq!(add(&mut r, &fr[5], 0), Err(ReasmError::Poisoned));
        assert_eq!(r.stats().too_many_fragments, 1);
        assert_eq!(r.memory_in_use(), 0);
        // Exactly max_fragments is fine.
        let fr = frags(&udp_v6(2000, 1), 576, 0);
        assert_eq!(fr.len(), 4);
        assert!(feed(&mut r, &fr, 0).is_some());
    }

    #[test]
    fn too_big() {
        let mut r = reasm_with(|l| l.max_datagram = 2048);
        let fr = frags(&udp_v4(3000, 51), 1500, 0);
        assert_eq!(add(&mut r, &fr[0], 0), Ok(false));
        assert_eq!(add(&mut r, &fr[2], 0), Err(ReasmError::TooBig));
        assert_eq!(add(&mut r, &fr[1], 0), Err(ReasmError::Poisoned));
        assert_eq!(r.stats().too_big, 1);
        assert_eq!(r.memory_in_use(), 0);
        // First seen fragment too big: the key is poisoned all the same.
        let fr = frags(&udp_v6(3000, 1), 1500, 0);
        assert_eq!(add(&mut r, &fr[2], 0), Err(ReasmError::TooBig));
        assert_eq!(add(&mut r, &fr[0], 0), Err(ReasmError::Poisoned));
        assert_eq!(r.stats().too_big, 2);
        // Just fits.
        let fr = frags(&udp_v4(2048 - 8, 52), 1500, 0);
        assert!(feed(&mut r, &fr, 0).is_some());
    }

    #[test]
    fn inconsistent_fragments() {
        let mut r = Reassembler::new(ReasmLimits::default());
        // A middle fragment whose length is not a multiple of 8.
        let fr = frags(&udp_v4(3000, 61), 1500, 0);
        let mut bad = fr[1].clone();
        let l = bad.len() - ETH;
        set_v4_len(&mut bad, l - 3);
        assert_eq!(add(&mut r, &fr[0], 0), Ok(false));
        assert_eq!(add(&mut r, &bad, 0), Err(ReasmError::Inconsistent));
        assert_eq!(add(&mut r, &fr[2], 0), Err(ReasmError::Poisoned));
        assert_eq!(r.stats().inconsistent, 1);
        // Zero-length fragment.
        let fr = frags(&udp_v4(3000, 62), 1500, 0);
        let mut empty = fr[1].clone();
        set_v4_len(&mut empty, 20);
        assert_eq!(add(&mut r, &empty, 0), Err(ReasmError::Inconsistent));
        assert_eq!(r.stats().inconsistent, 2);
        // A second last fragment with another end.
        let fr = frags(&udp_v4(3000, 63), 1500, 0);
        let mut last2 = fr[2].clone();
        let l = last2.len() - ETH;
        set_v4_len(&mut last2, l - 8);
        let mut after = fr[2].clone();
        set_v4_offset(&mut after, v4_offset(&fr[2]) + 64, false);
        assert_eq!(add(&mut r, &fr[2], 0), Ok(false));
        assert_eq!(add(&mut r, &after, 0), Err(ReasmError::Inconsistent));
        assert_eq!(r.stats().inconsistent, 3);
        // A fragment beyond the known end.
        let fr = frags(&udp_v4(3000, 64), 1500, 0);
        let mut beyond = fr[1].clone();
        set_v4_offset(&mut beyond, 3000, true);
        assert_eq!(add(&mut r, &fr[2], 0), Ok(false));
        assert_eq!(add(&mut r, &beyond, 0), Err(ReasmError::Inconsistent));
        // A last fragment ending before data already received.
        let fr = frags(&udp_v4(3000, 65), 1500, 0);
        assert_eq!(add(&mut r, &fr[1], 0), Ok(false));
        let mut early = fr[0].clone();
        set_v4_offset(&mut early, 0, false);
        set_v4_offset(&mut early, 8, false);
        assert_eq!(add(&mut r, &early, 0), Err(ReasmError::Inconsistent));
        assert_eq!(r.stats().inconsistent, 5);
        assert_eq!(r.memory_in_use(), 0);
        // Not a fragment.
        let whole = udp_v4(100, 1);
        assert_eq!(add(&mut r, &whole, 0), Err(ReasmError::NotFragment));
        assert_eq!(r.stats().malformed, 1);
    }

    #[test]
    fn layout_not_matching_frame_is_rejected() {
        let mut r = Reassembler::new(ReasmLimits::default());
        let fr = frags(&udp_v4(3000, 71), 1500, 0);
        let l = wire::parse(&fr[0], Link::Ethernet).unwrap();
        // Frame shorter than the layout says.
        assert_eq!(
            r.add(&fr[0][..100], &l, 0).err(),
            Some(ReasmError::Malformed)
        );
        let mut l2 = l;
        l2.fragment.as_mut().unwrap().data = ETH + 24;
        assert_eq!(r.add(&fr[0], &l2, 0).err(), Some(ReasmError::Malformed));
        let mut l3 = l;
        l3.ipv6 = true;
        assert_eq!(r.add(&fr[0], &l3, 0).err(), Some(ReasmError::Malformed));
        assert_eq!(r.stats().malformed, 3);
        assert_eq!(r.stats().fragments, 0);
    }

    #[test]
    fn no_slot_when_memory_below_one_datagram() {
        let mut r = reasm_with(|l| l.memory = 1000);
        assert_eq!(r.slots(), 0);
        let fr = frags(&udp_v4(3000, 81), 1500, 0);
        assert_eq!(add(&mut r, &fr[0], 0), Err(ReasmError::NoSlot));
        assert_eq!(r.stats().no_slot, 1);
    }

    #[test]
    fn reassembled_can_be_edited_and_released() {
        let mut r = Reassembler::new(ReasmLimits {
            memory: 16384,
            max_datagram: 16384,
            ..ReasmLimits::default()
        });
        let orig = udp_v4(3000, 91);
        let fr = frags(&orig, 1500, 0);
        for f in &fr[..2] {
            add(&mut r, f, 0).unwrap();
        }
        let l = wire::parse(&fr[2], Link::Ethernet).unwrap();
        let mut d = r.add(&fr[2], &l, 0).unwrap().unwrap();
        d.bytes_mut()[0] = 0xff;
        assert_eq!(d.bytes()[0], 0xff);
        assert!(!d.ipv6());
        d.release();
        assert_eq!(r.in_progress(), 0);
        // The single slot is free again.
        assert_eq!(feed(&mut r, &fr, 1).unwrap().0, orig);
        // A leaked Reassembled does not leak the slot.
        for f in &fr[..2] {
            add(&mut r, f, 2).unwrap();
        }
        core::mem::forget(r.add(&fr[2], &l, 2).unwrap().unwrap());
        assert_eq!(feed(&mut r, &fr, 3).unwrap().0, orig);
    }

    /// Limits for datagrams of up to 4096 bytes: `slots` of them, `timeout_ms`,
    /// `max_fragments`.
    fn limits_4k(slots: usize, timeout_ms: u32, max_fragments: u32) -> ReasmLimits {
        ReasmLimits {
            memory: slots * 4096,
            timeout_ms,
            max_fragments,
            max_datagram: 4096,
        }
    }

    #[test]
    fn random_fragment_trains_never_panic() {
        let mut rng = XorShift(0xdead_beef_cafe_f00d);
        let limits = limits_4k(8, 50, 8);
        let mut r = Reassembler::new(limits);
        let templates = [udp_v4(4000, 1), udp_v6(4000, 1)];
        let mut now = 0u64;
        let mut completed = 0;
        for _ in 0..200_000 {
            now += rng.below(3) as u64;
            let v6 = rng.below(2) == 1;
            let t = &templates[usize::from(v6)];
            let hdr = if v6 { ETH + 48 } else { ETH + 20 };
            // A fragment: small key space so trains collide; random offsets and lengths,
            // mostly multiples of 8 and inside 0..2048.
            let ident = rng.below(4) as u32;
            let offset = if rng.below(4) == 0 {
                rng.below(8192) * 8
            } else {
                rng.below(256) * 8
            };
            let mut len = if rng.below(3) == 0 {
                rng.below(1500)
            } else {
                (1 + rng.below(64)) * 8
            };
            len = len.min(t.len() - hdr);
            let more = rng.below(3) != 0;
            let ip = if v6 { ETH + 40 } else { ETH + 20 };
            let data = &t[ip..ip + len];
            // IPv4: the header checksum is left stale.
            let mut f = fragment_of(t, v6, ident, offset, more, data, false);
            // Random corruption / truncation.
            if rng.below(20) == 0 {
                let i = rng.below(f.len());
                f[i] = rng.next() as u8;
            }
            if rng.below(20) == 0 {
                f.truncate(rng.below(f.len() + 1));
            }
            let Ok(mut l) = wire::parse(&f, Link::Ethernet) else {
                continue;
            };
            if rng.below(50) == 0 {
                // A lying layout must not make `add` read outside the frame.
                l.ip_end = rng.below(f.len() + 64);
                if let Some(fi) = l.fragment.as_mut() {
                    fi.data = rng.below(f.len() + 64);
                }
            }
            if let Ok(Some(d)) = r.add(&f, &l, now) {
                completed += 1;
                let b = d.bytes();
                let w = check_whole(b);
                assert!(b.len() - w.l4 <= limits.max_datagram);
                assert!(d.fragments() >= 2 && d.fragments() <= 8);
            }
            assert!(r.memory_in_use() <= limits.memory);
            assert!(r.in_progress() <= r.slots());
            if rng.below(1000) == 0 {
                r.expire(now);
            }
        }
        let s = *r.stats();
        assert_eq!(s.completed, completed);
        r.expire(u64::MAX);
        assert_eq!(r.memory_in_use(), 0);
        assert!(s.fragments > 0 && s.overlaps > 0 && s.inconsistent > 0 && s.timeouts > 0);
        println!("{s:?}");
    }

    /// A fragment carrying `pat[offset..offset + len]` (so any reassembly of any mix of
    /// such fragments must give `pat[..total]`).
    fn synth(v6: bool, ident: u32, offset: usize, len: usize, more: bool, pat: &[u8]) -> Vec<u8> {
        let t = if v6 { udp_v6(8, 1) } else { udp_v4(8, 1) };
        let data = &pat[offset.min(pat.len())..(offset + len).min(pat.len())];
        fragment_of(&t, v6, ident, offset, more, data, true)
    }

    /// A fragment frame with the Ethernet and IP header of the unfragmented frame `t`
    /// carrying `data` at `offset`; an IPv6 one gets a fragment header, an IPv4 one its
    /// fragment fields (and a fresh header checksum when `fill_checksum`).
    fn fragment_of(
        t: &[u8],
        v6: bool,
        ident: u32,
        offset: usize,
        more: bool,
        data: &[u8],
        fill_checksum: bool,
    ) -> Vec<u8> {
        let mut f = t[..ETH].to_vec();
        if v6 {
            f.extend_from_slice(&t[ETH..ETH + 40]);
            f[ETH + 6] = NH_FRAGMENT;
            let of = ((offset & 0xfff8) as u16) | u16::from(more);
            f.extend_from_slice(&[17, 0]);
            f.extend_from_slice(&of.to_be_bytes());
            f.extend_from_slice(&ident.to_be_bytes());
            f.extend_from_slice(data);
            let pl = (8 + data.len()) as u16;
            f[ETH + 4..ETH + 6].copy_from_slice(&pl.to_be_bytes());
        } else {
            f.extend_from_slice(&t[ETH..ETH + 20]);
            f.extend_from_slice(data);
            f[ETH + 4..ETH + 6].copy_from_slice(&(ident as u16).to_be_bytes());
            let mut p = wire::ipv4::Packet::new_unchecked(&mut f[ETH..]);
            p.set_total_len((20 + data.len()) as u16);
            p.set_fragment(more, offset.min(0xfff8), false);
            if fill_checksum {
                p.fill_checksum();
            }
        }
        f
    }

    #[test]
    fn random_mutated_trains_reassemble_consistently() {
        let mut rng = XorShift(0x0bad_5eed_1234_4321);
        let limits = limits_4k(6, 40, 16);
        let mut r = Reassembler::new(limits);
        let pat: Vec<u8> = (0..8192u32).map(|i| (i * 7 + (i >> 8)) as u8).collect();
        let mut now = 0u64;
        let (mut clean_trains, mut clean_done, mut completed) = (0, 0, 0u64);
        for _ in 0..30_000 {
            let v6 = rng.below(2) == 1;
            let ident = rng.below(8) as u32;
            let total = 1 + rng.below(4500);
            let mut pieces = Vec::new();
            let mut off = 0;
            while off < total {
                let len = ((1 + rng.below(150)) * 8).min(total - off);
                pieces.push((off, len, off + len < total));
                off += len;
            }
            let mut clean = true;
            for _ in 0..rng.below(3) {
                if rng.below(4) != 0 {
                    continue;
                }
                clean = false;
                let i = rng.below(pieces.len());
                match rng.below(6) {
                    0 => pieces[i].0 = (pieces[i].0 + rng.below(64) * 8).saturating_sub(256),
                    1 => pieces[i].1 = rng.below(pieces[i].1 + 16),
                    2 => pieces[i].2 = !pieces[i].2,
                    3 => drop(pieces.remove(i)),
                    4 => pieces.push(pieces[i]),
                    _ => pieces[i].0 = rng.below(0x2000) * 8,
                }
                if pieces.is_empty() {
                    break;
                }
            }
            if rng.below(2) == 0 {
                rng.shuffle(&mut pieces);
            }
            clean &= total <= limits.max_datagram && pieces.len() >= 2;
            clean_trains += usize::from(clean);
            for (k, &(o, l, m)) in pieces.iter().enumerate() {
                now += rng.below(2) as u64;
                let f = synth(v6, ident, o, l, m, &pat);
                let Ok(lay) = wire::parse(&f, Link::Ethernet) else {
                    continue;
                };
                if let Ok(Some(d)) = r.add(&f, &lay, now) {
                    completed += 1;
                    let b = d.bytes();
                    let w = check_whole(b);
                    let hl = if v6 { 40 } else { 20 };
                    assert_eq!(w.l4, ETH + hl);
                    let data = &b[ETH + hl..];
                    assert!(data.len() <= limits.max_datagram);
                    assert_eq!(data, &pat[..data.len()], "content from the right offsets");
                    if clean && k + 1 == pieces.len() && data.len() == total {
                        clean_done += 1;
                    }
                }
                assert!(r.memory_in_use() <= limits.memory);
            }
            now += rng.below(30) as u64;
        }
        let s = *r.stats();
        println!("{s:?} clean trains {clean_trains}, completed as themselves {clean_done}");
        assert_eq!(s.completed, completed);
        // Most clean trains complete (some meet a poisoned or half-filled key, or time out).
        assert!(
            clean_done * 2 > clean_trains,
            "{clean_done} of {clean_trains}"
        );
        r.expire(u64::MAX);
        assert_eq!(r.memory_in_use(), 0);
    }

    #[test]
    fn corpus_ipv6_fragments() {
        // The capture is in the repository (testdata/corpus); missing is a failure.
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/corpus/pcap/ipv6frag.pcap"
        );
        let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut rd = pcap_file::pcap::PcapReader::new(file).expect("a pcap file");
        let mut r = Reassembler::new(ReasmLimits::default());
        let (mut firsts, mut done) = (0, 0);
        let mut first_link = Vec::new();
        let mut now = 0;
        while let Some(p) = rd.next_packet() {
            let p = p.expect("a packet");
            now += 1;
            let Ok(l) = wire::parse(&p.data, Link::LinuxSll) else {
                continue;
            };
            let Some(fi) = l.fragment else { continue };
            assert!(l.ipv6);
            if fi.offset == 0 {
                firsts += 1;
                first_link = p.data[..16].to_vec();
            }
            if let Some(d) = r.add(&p.data, &l, now).expect("fragment accepted") {
                done += 1;
                let b = d.bytes();
                assert_eq!(d.l3(), 16);
                assert_eq!(d.fragments(), 2);
                assert_eq!(
                    &b[..16],
                    &first_link[..],
                    "the first fragment's link header"
                );
                let w = wire::parse(b, Link::LinuxSll).unwrap();
                assert!(w.fragment.is_none());
                let (_, _, at, n) = w.udp(b).expect("a whole UDP datagram");
                let sip = &b[at..at + n];
                let line = &sip[..sip.iter().position(|&c| c == b'\r').unwrap()];
                assert!(
                    line.ends_with(b" SIP/2.0") || line.starts_with(b"SIP/2.0 "),
                    "{}",
                    String::from_utf8_lossy(line)
                );
                assert!(udp_ok_ip6(&b[16..]), "UDP checksum");
                // Our own sum agrees.
                let ip = wire::ipv6::Packet::new_checked(&b[16..]).unwrap();
                let s = checksum::pseudo_v6(ip.src_bytes(), ip.dst_bytes(), 17, n as u32 + 8)
                    + checksum::sum(&b[at - 8..at + n]);
                assert_eq!(checksum::fold(s), 0xffff);
            }
        }
        assert!(firsts > 0, "the capture has fragmented datagrams");
        assert_eq!(done, firsts);
        assert_eq!(r.memory_in_use(), 0);
        println!("reassembled {done} datagrams from {path}");
    }

    fn udp_v4_port(n: usize, ident: u16, dport: u16) -> Vec<u8> {
        let mut h =
            Ipv4Header::new(0, 64, IpNumber::UDP, [192, 0, 2, 1], [198, 51, 100, 2]).unwrap();
        h.identification = ident;
        h.dont_fragment = false;
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ip(IpHeaders::Ipv4(h, Default::default()))
            .udp(40000, dport);
        let p = vec![0x5a; n];
        let mut v = Vec::with_capacity(b.size(p.len()));
        b.write(&mut v, &p).unwrap();
        v
    }

    fn classify(r: &mut Reassembler, f: &[u8], now: u64) -> String {
        let l = wire::parse(f, Link::Ethernet).unwrap();
        let ours = |proto: u8, upper: &[u8]| {
            proto == 17 && upper.len() >= 4 && u16::from_be_bytes([upper[2], upper[3]]) == 5060
        };
        match r.add_classified(f, &l, now, ours) {
            Ok(Added::Held) => "held".into(),
            Ok(Added::Complete(_)) => "complete".into(),
            Ok(Added::Pass { slot, held }) => format!("pass {slot} {held}"),
            Ok(Added::PassThis) => "pass-this".into(),
            Err(e) => format!("{e:?}"),
        }
    }

    #[test]
    fn a_datagram_that_is_not_ours_is_given_back_as_it_came() {
        let mut r = Reassembler::new(ReasmLimits::default());
        // 30,000 bytes to port 9999: 21 fragments. Two middle ones arrive before the first.
        let fr = frags(&udp_v4_port(30000, 7, 9999), 1500, 0);
        assert_eq!(fr.len(), 21);
        assert_eq!(classify(&mut r, &fr[5], 0), "held");
        assert_eq!(classify(&mut r, &fr[3], 0), "held");
        let got = classify(&mut r, &fr[0], 0);
        let slot: usize = got.split(' ').nth(1).unwrap().parse().unwrap();
        assert_eq!(got, format!("pass {slot} 2"));
        let mut out = vec![0u8; 2000];
        let n = r.held_original(slot, 0, &mut out).unwrap();
        assert_eq!(
            out[..n],
            fr[3][..],
            "held fragments come back byte for byte, by offset"
        );
        let n = r.held_original(slot, 1, &mut out).unwrap();
        assert_eq!(out[..n], fr[5][..]);
        assert!(r.held_original(slot, 2, &mut out).is_none());
        for f in fr[1..].iter().filter(|f| **f != fr[3] && **f != fr[5]) {
            assert_eq!(classify(&mut r, f, 10), "pass-this");
        }
        assert_eq!(r.stats().passed, 21);
        assert_eq!(r.stats().completed, 0);
        assert_eq!(r.memory_in_use(), 0);
        // A SIP datagram of the same size is reassembled (no 16 KiB limit).
        let sip = frags(&udp_v4_port(30000, 8, 5060), 1500, 0);
        let last = sip.len() - 1;
        for f in &sip[..last] {
            assert_eq!(classify(&mut r, f, 20), "held");
        }
        assert_eq!(classify(&mut r, &sip[last], 20), "complete");
        // After the timeout the passed key is forgotten.
        r.expire(10_000);
        assert_eq!(classify(&mut r, &fr[2], 10_000), "held");
    }

    #[test]
    fn largest_udp_datagram_is_reassembled() {
        let mut r = Reassembler::new(ReasmLimits::default());
        // 65,507 bytes of UDP payload: the IPv4 maximum.
        let fr = frags(&udp_v4_port(65507, 9, 5060), 1500, 0);
        let mut done = None;
        for f in &fr {
            let l = wire::parse(f, Link::Ethernet).unwrap();
            if let Ok(Some(d)) = r.add(f, &l, 0) {
                done = Some(d.bytes().len());
            }
        }
        assert_eq!(done, Some(14 + 20 + 8 + 65507));
    }
}
