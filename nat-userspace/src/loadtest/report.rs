//! The load-test report: JSON with stable field names (documented in README "Load
//! testing") and a human summary.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::{rx::Sample, verify::Reason};

/// Latency percentiles, nanoseconds (0 when nothing was received).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub min: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Latency {
    pub fn from_histogram(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            min: h.min(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// One incorrect packet kept for the report.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct IncorrectPacket {
    pub seq: u64,
    pub reasons: Vec<String>,
    /// The first address field at fault (`via`, `contact`, `sdp_o`, `sdp_c`, `sdp_rtcp`).
    pub field: Option<String>,
    pub ip_src: String,
    /// The SIP message (lossy UTF-8, at most 2000 bytes).
    pub message: String,
}

impl IncorrectPacket {
    pub fn from_sample(s: &Sample) -> IncorrectPacket {
        let (ip_src, message) = match crate::wire::parse(&s.frame, crate::wire::Link::Ethernet) {
            Ok(l) => {
                let msg = l
                    .udp(&s.frame)
                    .and_then(|(_, _, start, len)| s.frame.get(start..start + len))
                    .unwrap_or(&[]);
                let cut = &msg[..msg.len().min(2000)];
                (l.src.to_string(), String::from_utf8_lossy(cut).into_owned())
            }
            Err(_) => (String::new(), String::new()),
        };
        IncorrectPacket {
            seq: s.seq,
            reasons: s.reasons.iter().map(|r| r.name().to_string()).collect(),
            field: s.field.map(|f| f.name().to_string()),
            ip_src,
            message,
        }
    }
}

/// The whole result. Field names are stable (scripts and tests read them).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub tool: String,
    pub version: String,
    /// Template names (built-in name, file name, `pcap:<file>#<n>`), comma-separated.
    pub template: String,
    pub templates: usize,
    /// Ethernet frame size of the first template, bytes.
    pub frame_bytes: usize,
    pub flows: u32,
    pub cores: usize,
    /// The requested rate (`null` with `--max`).
    pub target_pps: Option<f64>,
    /// Time the generator sent for, seconds (the denominator of every rate).
    pub duration_s: f64,
    /// Packets put on the link.
    pub sent: u64,
    pub offered_pps: f64,
    pub tx_zero_copy: bool,
    pub tx_kicks: u64,
    /// Batches that found every UMEM frame in flight.
    pub tx_starved: u64,
    /// Kicks refused by a busy device.
    pub tx_busy: u64,
    /// Whether a receive side ran (`--rx-interface`).
    pub receive: bool,
    /// Frames the receive sockets got (ours and foreign).
    pub received: u64,
    /// Frames that carried the generator's header and were checked.
    pub verified: u64,
    pub correct: u64,
    pub incorrect: u64,
    /// Frames on the receive sockets that were not the generator's.
    pub foreign: u64,
    /// Verified frames per second of `duration_s`.
    pub delivered_pps: f64,
    /// `sent - verified` (0 when nothing was received: see `receive`).
    pub loss: u64,
    pub loss_pct: f64,
    /// Frames the kernel dropped at the receive sockets (ring full, no buffer).
    pub rx_kernel_dropped: u64,
    pub rx_xdp_mode: String,
    pub rx_zero_copy: bool,
    /// One-way latency (send timestamp in the payload to receive), ns.
    pub latency_ns: Latency,
    /// Every reason, with 0 for the ones that never happened; a packet failing several
    /// checks counts under each.
    pub incorrect_by_reason: BTreeMap<String, u64>,
    pub first_incorrect: Vec<IncorrectPacket>,
}

impl Report {
    /// An empty reason map with every reason at 0.
    pub fn reason_map(counts: &[u64; Reason::COUNT]) -> BTreeMap<String, u64> {
        Reason::ALL
            .iter()
            .map(|r| (r.name().to_string(), counts[*r as usize]))
            .collect()
    }

    /// The human summary.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let rate = match self.target_pps {
            Some(r) => format!("target {} pps", r.round()),
            None => "max rate".to_string(),
        };
        s += &format!(
            "sipnat loadtest: {} ({} template{}, {}-byte frames), {} flow{}, {} core{}, {rate}, {:.2} s\n",
            self.template,
            self.templates,
            plural(self.templates as u64),
            self.frame_bytes,
            self.flows,
            plural(u64::from(self.flows)),
            self.cores,
            plural(self.cores as u64),
            self.duration_s
        );
        s += &format!(
            "  offered    {:>10} packets  {:>12} pps  (TX {} mode, {} kicks)\n",
            self.sent,
            fmt_rate(self.offered_pps),
            if self.tx_zero_copy {
                "zero-copy"
            } else {
                "copy"
            },
            self.tx_kicks
        );
        if !self.receive {
            s += "  (no receive side: give --rx-interface to verify and measure latency)\n";
            return s;
        }
        s += &format!(
            "  delivered  {:>10} packets  {:>12} pps  loss {} ({:.3} %)\n",
            self.verified,
            fmt_rate(self.delivered_pps),
            self.loss,
            self.loss_pct
        );
        s += &format!(
            "  verified   {} of {} received: {} correct, {} incorrect{}\n",
            self.verified,
            self.received,
            self.correct,
            self.incorrect,
            if self.foreign > 0 {
                format!(", {} foreign (not the generator's)", self.foreign)
            } else {
                String::new()
            }
        );
        let l = &self.latency_ns;
        if l.count > 0 {
            s += &format!(
                "  latency    p50 {}  p99 {}  p99.9 {}  max {}  ({} samples)\n",
                fmt_ns(l.p50),
                fmt_ns(l.p99),
                fmt_ns(l.p999),
                fmt_ns(l.max),
                l.count
            );
        }
        if self.incorrect == 0 {
            s += "  incorrect  none\n";
        } else {
            s += "  incorrect by reason:\n";
            for (r, n) in self.incorrect_by_reason.iter().filter(|(_, n)| **n > 0) {
                s += &format!("    {r:<26} {n}\n");
            }
            for p in &self.first_incorrect {
                let first = p.message.lines().next().unwrap_or("");
                s += &format!(
                    "    seq {}: {}{} (IP source {}): {first}\n",
                    p.seq,
                    p.reasons.join(", "),
                    p.field
                        .as_deref()
                        .map(|f| format!(" in {f}"))
                        .unwrap_or_default(),
                    p.ip_src
                );
            }
        }
        if self.rx_kernel_dropped > 0 {
            s += &format!(
                "  note: the receive sockets dropped {} frames (ring full): the receiver, not the path, lost them\n",
                self.rx_kernel_dropped
            );
        }
        s
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

pub fn fmt_rate(pps: f64) -> String {
    if pps >= 1e6 {
        format!("{:.3} M", pps / 1e6)
    } else if pps >= 1e3 {
        format!("{:.1} k", pps / 1e3)
    } else {
        format!("{pps:.0}")
    }
}

pub fn fmt_ns(ns: u64) -> String {
    if ns >= 1_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else if ns >= 1_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else {
        format!("{ns} ns")
    }
}
