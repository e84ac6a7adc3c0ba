//! Worker counters: one named counter for every outcome of every frame, so that nothing
//! is lost silently. A worker accumulates a batch in plain integers ([`Batch`]) and adds it
//! to its shared [`WorkerStats`] (single writer: relaxed load + store, no locked
//! instruction) once per batch; the control plane reads them at any time.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident = $text:literal : $help:literal,)+) => {
        /// Every worker counter.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(usize)]
        #[allow(non_camel_case_types)]
        pub enum Counter { $($name,)+ }

        impl Counter {
            pub const ALL: &'static [Counter] = &[$(Counter::$name,)+];
            pub const COUNT: usize = Self::ALL.len();
            pub const fn name(self) -> &'static str {
                match self { $(Counter::$name => $text,)+ }
            }
            pub const fn help(self) -> &'static str {
                match self { $(Counter::$name => $help,)+ }
            }
        }
    };
}

counters! {
    RxInside = "rx_inside" : "Frames received on the inside AF_XDP socket",
    RxOutside = "rx_outside" : "Frames received on the outside AF_XDP socket",
    TxInside = "tx_inside" : "Frames transmitted on the inside AF_XDP socket",
    TxOutside = "tx_outside" : "Frames transmitted on the outside AF_XDP socket",
    Outbound = "outbound" : "Packets handled in the outbound direction",
    Inbound = "inbound" : "Packets handled in the inbound direction",
    // SIP outcomes
    SipRewritten = "sip_rewritten" : "SIP messages rewritten",
    SipUnchanged = "sip_unchanged" : "SIP messages with nothing to rewrite",
    NotSipEmpty = "not_sip_empty" : "Empty datagrams on a SIP port",
    NotSipKeepalive = "not_sip_keepalive" : "CRLF/zero keep-alives on a SIP port",
    NotSipStun = "not_sip_stun" : "STUN messages on a SIP port",
    NotSipOther = "not_sip_other" : "Other non-SIP datagrams on a SIP port",
    MalformedBadStartLine = "malformed_bad_start_line" : "Malformed SIP: bad start line",
    MalformedBadVersion = "malformed_bad_version" : "Malformed SIP: version other than 2.0",
    MalformedBadHeaderLine = "malformed_bad_header_line" : "Malformed SIP: header line without colon",
    MalformedBadContentLength = "malformed_bad_content_length" : "Malformed SIP: Content-Length not a number",
    MalformedDuplicateContentLength = "malformed_duplicate_content_length" : "Malformed SIP: conflicting Content-Length headers",
    MalformedTooManyAddresses = "malformed_too_many_addresses" : "Malformed SIP: more addresses than the rewriter keeps edits for",
    SipTooBig = "sip_too_big" : "SIP messages that did not fit their frame after growth (redone in a larger buffer)",
    ContentLengthShort = "content_length_short" : "SIP messages whose Content-Length exceeded the datagram",
    FamilyMismatch = "family_mismatch" : "Addresses left alone for lack of an external address of their family",
    TrailingDiscarded = "trailing_bytes_discarded" : "SIP messages whose bytes after the body Content-Length declares were discarded (the datagram shortened)",
    // rewrites by kind
    RwRequestUri = "rewrite_request_uri" : "Rewritten Request-URIs",
    RwVia = "rewrite_via" : "Rewritten top-Via addresses",
    RwContact = "rewrite_contact" : "Rewritten Contact addresses",
    RwRoute = "rewrite_route" : "Rewritten Route addresses",
    RwRecordRoute = "rewrite_record_route" : "Rewritten Record-Route addresses",
    RwFromTo = "rewrite_from_to" : "Rewritten From/To addresses",
    RwSdpConnection = "rewrite_sdp_connection" : "Rewritten SDP c= addresses",
    RwSdpOrigin = "rewrite_sdp_origin" : "Rewritten SDP o= addresses",
    RwSdpRtcp = "rewrite_sdp_rtcp" : "Rewritten SDP a=rtcp addresses or ports",
    RwSdpMediaPort = "rewrite_sdp_media_port" : "Rewritten SDP m= ports",
    RwContentLength = "rewrite_content_length" : "Rewritten Content-Length values",
    // kernel slow path, by reason
    SlowInternal = "slow_internal" : "Kernel slow path: internal traffic (both ends local)",
    SlowNoMapping = "slow_inbound_no_mapping" : "Kernel slow path: inbound with no mapping (no 1:1 rule, no flow)",
    SlowNeighbor = "slow_neighbor_unknown" : "Kernel slow path: next hop not resolved yet",
    SlowOtherInterface = "slow_route_other_interface" : "Kernel slow path: route via another interface",
    SlowCollision = "slow_flow_collision" : "Kernel slow path: flow-table collision",
    SlowNotUdp = "slow_not_udp" : "Kernel slow path: not a whole UDP datagram",
    SlowIcmpNotOurs = "slow_icmp_not_ours" : "Kernel slow path: an ICMP error not about a sipnat flow",
    SlowNotSipPort = "slow_not_sip_port" : "Kernel slow path: a reassembled UDP datagram on no SIP port (handed back unchanged)",
    SlowSendError = "slow_send_error" : "Kernel slow path send errors",
    // flow table
    FlowInserted = "flow_inserted" : "Flow-table entries inserted",
    FlowRefreshed = "flow_refreshed" : "Flow-table entries refreshed",
    FlowCollision = "flow_collision" : "Flow-table collisions (same local port and remote, other host)",
    FlowEvicted = "flow_evicted" : "Flow-table entries evicted (least recently refreshed first) to make room for a new flow",
    FlowFull = "flow_full" : "Flow-table inserts refused (another worker stalled writing the slot)",
    FlowHit = "flow_hit" : "Inbound flow-table hits",
    FlowMiss = "flow_miss" : "Inbound flow-table misses",
    // NAPT (port translation)
    NaptPreserved = "napt_preserved" : "NAPT bindings made keeping the internal port (free on the external address)",
    NaptAllocated = "napt_allocated" : "NAPT bindings made with a port from nat.port_range",
    NaptTranslated = "napt_translated" : "Packets whose UDP port and SIP ports were translated by a NAPT binding",
    NaptHit = "napt_hit" : "Inbound packets mapped by a NAPT binding without a flow of their remote",
    // fragments
    FragRx = "frag_rx" : "IP fragments received",
    ReasmComplete = "reasm_complete" : "Datagrams reassembled",
    ReasmNonSip = "reasm_non_sip" : "Reassembled datagrams that were not SIP",
    ReasmOverlap = "reasm_overlap" : "Datagrams dropped: overlapping or duplicate fragment",
    ReasmTimeout = "reasm_timeout" : "Datagrams dropped: incomplete after the timeout",
    ReasmEvicted = "reasm_evicted" : "Datagrams evicted to respect the memory bound",
    ReasmTooBig = "reasm_too_big" : "Datagrams dropped: too big to reassemble",
    ReasmTooManyFragments = "reasm_too_many_fragments" : "Datagrams dropped: too many fragments",
    ReasmInconsistent = "reasm_inconsistent" : "Datagrams dropped: inconsistent fragments",
    ReasmPoisoned = "reasm_poisoned" : "Fragments dropped: their datagram was dropped",
    ReasmNoSlot = "reasm_no_slot" : "Fragments dropped: no reassembly slot",
    ReasmMalformed = "reasm_malformed" : "Fragments dropped: malformed",
    FragTx = "frag_tx" : "Fragments transmitted",
    FragPassed = "frag_passed" : "Fragments of datagrams on no SIP port, handed to the kernel as they arrived",
    Refragmented = "refragmented" : "Packets refragmented for the egress MTU",
    // MTU
    IcmpTranslated = "icmp_error_translated" : "ICMP errors about sipnat flows translated (outer and quoted headers) and forwarded",
    DropIcmpUntranslatable = "drop_icmp_untranslatable" : "Dropped: an ICMP error about sipnat traffic that cannot be translated (no flow, no external address)",
    IcmpFragNeeded = "icmp_frag_needed_sent" : "ICMP fragmentation-needed sent (packet grew past the MTU with DF)",
    IcmpPacketTooBig = "icmp6_packet_too_big_sent" : "ICMPv6 packet-too-big sent",
    // drops, by reason
    DropTtl = "drop_ttl_exceeded" : "Dropped: TTL/hop limit exhausted",
    DropTxRingFull = "drop_tx_ring_full" : "Dropped: TX ring full",
    DropNoFrame = "drop_no_free_frame" : "Dropped: no free UMEM frame",
    DropBadFrame = "drop_unparsable_frame" : "Dropped: unparsable frame",
    DropMalformedPolicy = "drop_malformed_policy" : "Dropped: malformed SIP with malformed = drop",
    DropWouldLeak = "drop_would_leak" : "Dropped: an outbound SIP message still holding an internal address (leak = drop)",
    DropNatPortsExhausted = "drop_nat_ports_exhausted" : "Dropped: outbound from a new internal endpoint, no free port in nat.port_range (never forwarded untranslated)",
    DropTooBigDf = "drop_too_big_df" : "Dropped: too big for the MTU with DF (ICMP sent)",
    DropRefragment = "drop_refragment_failed" : "Dropped: refragmentation failed",
    // rings
    FillStarved = "fill_ring_starved" : "Times the fill ring could not be topped up to its depth (the whole ring in zero-copy mode, `[datapath] copy_fill` in copy mode): the free-frame stack ran out",
    TxKicks = "tx_kicks" : "TX wakeups (sendto) issued",
    Wakeups = "poll_wakeups" : "Idle waits (poll)",
    Batches = "batches" : "Batches with traffic",
}

/// Counters of one worker, readable by the control plane.
pub struct WorkerStats {
    values: [AtomicU64; Counter::COUNT],
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

    pub fn get(&self, c: Counter) -> u64 {
        self.values[c as usize].load(Ordering::Relaxed)
    }

    /// (name, value) of every counter.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        Counter::ALL
            .iter()
            .map(|&c| (c.name(), self.get(c)))
            .collect()
    }
}

/// A batch's counts, in plain integers.
pub struct Batch(pub [u64; Counter::COUNT]);

impl Default for Batch {
    fn default() -> Self {
        Batch([0; Counter::COUNT])
    }
}

impl Batch {
    #[inline]
    pub fn inc(&mut self, c: Counter) {
        self.0[c as usize] += 1;
    }

    #[inline]
    pub fn add(&mut self, c: Counter, n: u64) {
        self.0[c as usize] += n;
    }

    #[inline]
    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize]
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&v| v == 0)
    }

    pub fn clear(&mut self) {
        self.0 = [0; Counter::COUNT];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_unique_and_batches_add() {
        let mut names: Vec<&str> = Counter::ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Counter::COUNT);
        let s = WorkerStats::default();
        let mut b = Batch::default();
        b.inc(Counter::RxInside);
        b.add(Counter::TxOutside, 3);
        s.add(&b);
        s.add(&b);
        assert_eq!(s.get(Counter::RxInside), 2);
        assert_eq!(s.get(Counter::TxOutside), 6);
    }
}
