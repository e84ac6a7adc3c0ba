//! `[datapath]` (rings, frames, batch, datagram and reassembly limits, scheduling) and
//! `[log]`.

use super::super::{
    diagnostics::Problems,
    schema::{Datapath, Log},
};

pub(super) fn check(p: &mut Problems, d: &Datapath, log: &Log) {
    let ring_ok = d.ring_size.is_power_of_two() && (64..=16384).contains(&d.ring_size);
    if !ring_ok {
        p.add_at(
            &["datapath", "ring_size"],
            format!(
                "datapath.ring_size {} is not a power of two from 64 to 16384: use e.g. 1024",
                d.ring_size
            ),
        );
    }
    let need = 6 * u64::from(d.ring_size);
    if ring_ok && u64::from(d.frames) < need {
        let s = if p.tree.get(&["datapath", "frames"]).is_some() {
            p.at(&["datapath", "frames"])
        } else {
            p.at(&["datapath", "ring_size"])
        };
        p.add(
            &s,
            format!(
                "datapath.frames {} is too few for ring_size {}: use at least {need} (6 × ring_size: both fill rings full, plus frames in flight)",
                d.frames, d.ring_size
            ),
        );
    }
    let datagram = (d.max_datagram as usize).clamp(1280, 65535);
    let max_frags = datagram / 8;
    // (key, out of range, message), in file order of the checks.
    let limits = [
        (
            "batch",
            ring_ok && (d.batch == 0 || d.batch > d.ring_size),
            format!(
                "datapath.batch {} is out of range: use 1 to ring_size ({})",
                d.batch, d.ring_size
            ),
        ),
        (
            "copy_fill",
            ring_ok
                && d.copy_fill != 0
                && (d.copy_fill < d.batch || d.copy_fill > 2 * d.ring_size),
            format!(
                "datapath.copy_fill {} is out of range: use 0 (4 × batch) or batch ({}) to the fill ring's size (2 × ring_size: {})",
                d.copy_fill,
                d.batch,
                2 * d.ring_size
            ),
        ),
        (
            "max_datagram",
            !(1280..=65535).contains(&d.max_datagram),
            format!(
                "datapath.max_datagram {} is out of range: use 1280 to 65535 (bytes; 65535 takes any UDP datagram)",
                d.max_datagram
            ),
        ),
        (
            "reassembly_memory",
            (d.reassembly_memory as usize) < datagram,
            format!(
                "datapath.reassembly_memory {} is less than one datagram, so no fragmented message could be reassembled: use at least {datagram} (bytes)",
                d.reassembly_memory
            ),
        ),
        (
            "reassembly_timeout_ms",
            d.reassembly_timeout_ms == 0,
            "datapath.reassembly_timeout_ms is 0, so every fragmented message would be dropped: use e.g. 2000 (milliseconds)".into(),
        ),
        (
            "max_fragments",
            d.max_fragments < 2 || d.max_fragments as usize > max_frags,
            format!(
                "datapath.max_fragments {} is out of range: use 2 to {max_frags} (a {datagram}-byte datagram has at most {max_frags} fragments)",
                d.max_fragments
            ),
        ),
        (
            "busy_poll_idle_us",
            d.busy_poll_idle_us > 1_000_000,
            format!(
                "datapath.busy_poll_idle_us {} is more than a second: use 0 (never sleep) to 1000000 (microseconds), e.g. 1000",
                d.busy_poll_idle_us
            ),
        ),
        (
            "nice",
            !(-20..=19).contains(&d.nice),
            format!(
                "datapath.nice {} is out of range: use -20 (highest priority) to 19",
                d.nice
            ),
        ),
        (
            "rt_priority",
            d.rt_priority > 99,
            format!(
                "datapath.rt_priority {} is out of range: use 1 to 99 (SCHED_FIFO priority), or 0 for normal scheduling",
                d.rt_priority
            ),
        ),
    ];
    for (key, bad, message) in limits {
        if bad {
            p.add_at(&["datapath", key], message);
        }
    }
    if !["error", "warn", "info", "debug", "trace"].contains(&log.level.as_str()) {
        p.add_at(
            &["log", "level"],
            format!(
                "log.level `{}` is not a level: use error, warn, info, debug or trace",
                log.level
            ),
        );
    }
}
