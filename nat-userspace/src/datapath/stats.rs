//! Worker counters: one named counter for every outcome of every frame, so that nothing
//! is lost silently. A worker accumulates a batch in plain integers ([`Batch`]) and adds it
//! to its shared [`WorkerStats`] (single writer: relaxed load + store, no locked
//! instruction) once per batch; the control plane reads them at any time.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident = $text:literal,)+) => {
        /// Every worker counter.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(usize)]
        #[allow(non_camel_case_types)]
        pub enum C { $($name,)+ }

        impl C {
            pub const ALL: &'static [C] = &[$(C::$name,)+];
            pub const COUNT: usize = Self::ALL.len();
            pub const fn name(self) -> &'static str {
                match self { $(C::$name => $text,)+ }
            }
        }
    };
}

counters! {
    RxInside = "rx_inside",
    RxOutside = "rx_outside",
    TxInside = "tx_inside",
    TxOutside = "tx_outside",
    Outbound = "outbound",
    Inbound = "inbound",
    // SIP outcomes
    SipRewritten = "sip_rewritten",
    SipUnchanged = "sip_unchanged",
    NotSipEmpty = "not_sip_empty",
    NotSipKeepalive = "not_sip_keepalive",
    NotSipStun = "not_sip_stun",
    NotSipOther = "not_sip_other",
    MalformedBadStartLine = "malformed_bad_start_line",
    MalformedBadVersion = "malformed_bad_version",
    MalformedBadHeaderLine = "malformed_bad_header_line",
    MalformedBadContentLength = "malformed_bad_content_length",
    MalformedDuplicateContentLength = "malformed_duplicate_content_length",
    MalformedTooManyAddresses = "malformed_too_many_addresses",
    SipTooBig = "sip_too_big",
    ContentLengthShort = "content_length_short",
    FamilyMismatch = "family_mismatch",
    // rewrites by kind
    RwRequestUri = "rewrite_request_uri",
    RwVia = "rewrite_via",
    RwContact = "rewrite_contact",
    RwRoute = "rewrite_route",
    RwRecordRoute = "rewrite_record_route",
    RwFromTo = "rewrite_from_to",
    RwSdpConnection = "rewrite_sdp_connection",
    RwSdpOrigin = "rewrite_sdp_origin",
    RwSdpRtcp = "rewrite_sdp_rtcp",
    RwSdpMediaPort = "rewrite_sdp_media_port",
    RwContentLength = "rewrite_content_length",
    // kernel slow path, by reason
    SlowInternal = "slow_internal",
    SlowNoMapping = "slow_inbound_no_mapping",
    SlowNeighbor = "slow_neighbor_unknown",
    SlowOtherInterface = "slow_route_other_interface",
    SlowCollision = "slow_flow_collision",
    SlowNotUdp = "slow_not_udp",
    SlowSendError = "slow_send_error",
    // flow table
    FlowInserted = "flow_inserted",
    FlowRefreshed = "flow_refreshed",
    FlowCollision = "flow_collision",
    FlowFull = "flow_full",
    FlowHit = "flow_hit",
    FlowMiss = "flow_miss",
    // fragments
    FragRx = "frag_rx",
    ReasmComplete = "reasm_complete",
    ReasmNonSip = "reasm_non_sip",
    ReasmOverlap = "reasm_overlap",
    ReasmTimeout = "reasm_timeout",
    ReasmEvicted = "reasm_evicted",
    ReasmTooBig = "reasm_too_big",
    ReasmTooManyFragments = "reasm_too_many_fragments",
    ReasmInconsistent = "reasm_inconsistent",
    ReasmPoisoned = "reasm_poisoned",
    ReasmNoSlot = "reasm_no_slot",
    ReasmMalformed = "reasm_malformed",
    FragTx = "frag_tx",
    Refragmented = "refragmented",
    // MTU
    IcmpFragNeeded = "icmp_frag_needed_sent",
    IcmpPacketTooBig = "icmp6_packet_too_big_sent",
    // drops, by reason
    DropTtl = "drop_ttl_exceeded",
    DropTxRingFull = "drop_tx_ring_full",
    DropNoFrame = "drop_no_free_frame",
    DropBadFrame = "drop_unparsable_frame",
    DropMalformedPolicy = "drop_malformed_policy",
    DropTooBigDf = "drop_too_big_df",
    DropRefragment = "drop_refragment_failed",
    // rings
    FillStarved = "fill_ring_starved",
    TxKicks = "tx_kicks",
    Wakeups = "poll_wakeups",
    Batches = "batches",
}

/// Counters of one worker, readable by the control plane.
pub struct WorkerStats {
    values: [AtomicU64; C::COUNT],
    /// Gauges (current values, not counts).
    pub reasm_memory: AtomicU64,
    pub reasm_memory_limit: AtomicU64,
    pub reasm_in_progress: AtomicU64,
    pub free_frames: AtomicU64,
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            values: std::array::from_fn(|_| AtomicU64::new(0)),
            reasm_memory: AtomicU64::new(0),
            reasm_memory_limit: AtomicU64::new(0),
            reasm_in_progress: AtomicU64::new(0),
            free_frames: AtomicU64::new(0),
        }
    }
}

impl WorkerStats {
    /// Adds a batch (single writer per WorkerStats: no read-modify-write race).
    pub fn add(&self, b: &Batch) {
        for (i, v) in b.0.iter().enumerate() {
            if *v != 0 {
                let a = &self.values[i];
                a.store(a.load(Ordering::Relaxed) + v, Ordering::Relaxed);
            }
        }
    }

    pub fn get(&self, c: C) -> u64 {
        self.values[c as usize].load(Ordering::Relaxed)
    }

    /// (name, value) of every counter.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        C::ALL.iter().map(|&c| (c.name(), self.get(c))).collect()
    }
}

/// A batch's counts, in plain integers.
pub struct Batch(pub [u64; C::COUNT]);

impl Default for Batch {
    fn default() -> Self {
        Batch([0; C::COUNT])
    }
}

impl Batch {
    #[inline]
    pub fn inc(&mut self, c: C) {
        self.0[c as usize] += 1;
    }

    #[inline]
    pub fn add(&mut self, c: C, n: u64) {
        self.0[c as usize] += n;
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&v| v == 0)
    }

    pub fn clear(&mut self) {
        self.0 = [0; C::COUNT];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_unique_and_batches_add() {
        let mut names: Vec<&str> = C::ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), C::COUNT);
        let s = WorkerStats::default();
        let mut b = Batch::default();
        b.inc(C::RxInside);
        b.add(C::TxOutside, 3);
        s.add(&b);
        s.add(&b);
        assert_eq!(s.get(C::RxInside), 2);
        assert_eq!(s.get(C::TxOutside), 6);
    }
}
