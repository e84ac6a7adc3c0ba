//! One consistent reading of every counter and gauge (XDP verdict maps, worker counters,
//! AF_XDP socket statistics, reassembly, flows, external address), rendered as the stable
//! JSON of `sipnat stats --json` and as Prometheus metrics. Both views come from here, so
//! they never disagree.

use std::{sync::atomic::Ordering, time::SystemTime};

use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
};
use serde_json::{json, Map, Value};

use super::daemon::{Daemon, ExternalState};
use crate::datapath::stats::Counter;

/// Kernel statistics of one AF_XDP socket (XDP_STATISTICS).
#[derive(Clone, Copy, Debug, Default)]
pub struct XskStats {
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}

impl XskStats {
    fn fields(&self) -> [(&'static str, u64); 6] {
        [
            ("rx_dropped", self.rx_dropped),
            ("rx_invalid_descs", self.rx_invalid_descs),
            ("tx_invalid_descs", self.tx_invalid_descs),
            ("rx_ring_full", self.rx_ring_full),
            ("rx_fill_ring_empty_descs", self.rx_fill_ring_empty_descs),
            ("tx_ring_empty_descs", self.tx_ring_empty_descs),
        ]
    }

    /// getsockopt(XDP_STATISTICS) on a socket fd.
    fn read(fd: i32) -> Option<XskStats> {
        if fd < 0 {
            return None;
        }
        let mut s = XskStats::default();
        let mut len = std::mem::size_of::<XskStats>() as libc::socklen_t;
        const SOL_XDP: i32 = 283;
        const XDP_STATISTICS: i32 = 7;
        // SAFETY: XskStats is repr(Rust) of six u64 in the kernel's struct order; getsockopt
        // writes at most `len` bytes into it.
        let r = unsafe {
            libc::getsockopt(
                fd,
                SOL_XDP,
                XDP_STATISTICS,
                (&mut s as *mut XskStats).cast(),
                &mut len,
            )
        };
        (r == 0).then_some(s)
    }
}

pub struct WorkerReport {
    pub queue: u32,
    pub counters: Vec<(&'static str, u64)>,
    pub xsk_inside: Option<XskStats>,
    pub xsk_outside: Option<XskStats>,
    pub reasm_memory: u64,
    pub reasm_limit: u64,
    pub reasm_in_progress: u64,
    pub free_frames: u64,
}

/// Named counter values, in definition order.
pub type Counters = Vec<(&'static str, u64)>;

/// A per-worker gauge for the Prometheus encoder: (metric name, help, accessor).
type Gauge = (&'static str, &'static str, fn(&WorkerReport) -> u64);

pub struct Report {
    pub uptime_s: f64,
    pub enabled: bool,
    /// (role, interface name, verdict counters) for inside and outside.
    pub xdp: Vec<(&'static str, String, Counters)>,
    pub workers: Vec<WorkerReport>,
    pub totals: Vec<(&'static str, u64)>,
    pub flows_live: usize,
    /// NAPT and media bindings.
    pub bindings: BindingReport,
    pub nexthops: usize,
    pub external: ExternalState,
    /// Candidate external addresses refused (STUN, interface, `set external-ip`).
    pub external_rejected: u64,
}

/// NAPT and media bindings: how many live, and the media registry's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindingReport {
    pub napt_live: u64,
    pub media_live: u64,
    pub media_installed: u64,
    pub media_removed: u64,
    pub media_reaped: u64,
    pub media_exhausted: u64,
    pub media_install_failed: u64,
    pub media_linger_overflow: u64,
}

impl BindingReport {
    fn read(shared: &crate::datapath::DatapathState) -> BindingReport {
        let now_s = shared.clock.now_s();
        let mut b = BindingReport {
            napt_live: shared.napt.live(now_s) as u64,
            ..BindingReport::default()
        };
        if let Some(m) = &shared.media {
            let c = &m.registry.counters;
            let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            b.media_live = m.registry.live() as u64;
            b.media_installed = g(&c.installed);
            b.media_removed = g(&c.removed);
            b.media_reaped = g(&c.reaped);
            b.media_exhausted = g(&c.exhausted);
            b.media_install_failed = g(&c.install_failed);
            b.media_linger_overflow = g(&c.linger_overflow);
        }
        b
    }

    /// (JSON name, Prometheus family, help, value, is a gauge).
    pub fn fields(&self) -> [(&'static str, &'static str, &'static str, u64, bool); 8] {
        [
            (
                "napt_live",
                "sipnat_napt_bindings_live",
                "Live NAPT bindings (internal SIP endpoint to external port)",
                self.napt_live,
                true,
            ),
            (
                "media_live",
                "sipnat_media_bindings_live",
                "Live media bindings (RTP/RTCP pairs learned from SDP)",
                self.media_live,
                true,
            ),
            (
                "media_installed",
                "sipnat_media_bindings_installed",
                "Media bindings installed",
                self.media_installed,
                false,
            ),
            (
                "media_removed",
                "sipnat_media_bindings_removed",
                "Media bindings removed (dialog ended, media moved, reaped)",
                self.media_removed,
                false,
            ),
            (
                "media_reaped",
                "sipnat_media_bindings_reaped",
                "Media bindings removed for being idle (media.idle_timeout)",
                self.media_reaped,
                false,
            ),
            (
                "media_exhausted",
                "sipnat_media_bindings_exhausted",
                "SDP media ports left as they were: no free pair in media.port_range",
                self.media_exhausted,
                false,
            ),
            (
                "media_install_failed",
                "sipnat_media_bindings_install_failed",
                "Media bindings the XDP maps refused (full, or an error)",
                self.media_install_failed,
                false,
            ),
            (
                "media_linger_overflow",
                "sipnat_media_dialogs_linger_overflow",
                "Ended dialogs whose media bindings went at once, not 2 s later: too many ending",
                self.media_linger_overflow,
                false,
            ),
        ]
    }
}

/// Reads everything once.
pub fn collect(d: &Daemon) -> Report {
    let names = {
        let cfg = d.config.lock().expect("config lock");
        (
            cfg.interfaces.inside.get_ref().clone(),
            cfg.interfaces.outside.get_ref().clone(),
        )
    };
    let xdp = {
        let p = d.programs.lock().expect("programs lock");
        let read = |prog: &crate::xdp::SteeringProgram| {
            prog.counters()
                .map(|c| nat_common::stat::NAMES.iter().copied().zip(c).collect())
                .unwrap_or_default()
        };
        vec![
            ("inside", names.0, read(&p.inside)),
            ("outside", names.1, read(&p.outside)),
        ]
    };
    let mut total = vec![0u64; Counter::COUNT];
    let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let workers = d
        .workers
        .lock()
        .expect("workers lock")
        .iter()
        .map(|w| {
            let counters = w.stats.snapshot();
            for (i, (_, v)) in counters.iter().enumerate() {
                total[i] += v;
            }
            WorkerReport {
                queue: w.queue,
                counters,
                xsk_inside: XskStats::read(w.inside_fd),
                xsk_outside: XskStats::read(w.outside_fd),
                reasm_memory: g(&w.stats.reasm_memory),
                reasm_limit: g(&w.stats.reasm_memory_limit),
                reasm_in_progress: g(&w.stats.reasm_in_progress),
                free_frames: g(&w.stats.free_frames),
            }
        })
        .collect();
    Report {
        uptime_s: d.started.elapsed().as_secs_f64(),
        enabled: d.enabled.load(Ordering::Relaxed),
        xdp,
        workers,
        totals: Counter::ALL.iter().map(|c| c.name()).zip(total).collect(),
        flows_live: d.shared.flows.live(d.shared.clock.now_s()),
        bindings: BindingReport::read(&d.shared),
        nexthops: d.shared.nexthops.load().len(),
        external: d.dataplane.external(),
        external_rejected: d.external_rejected.load(Ordering::Relaxed),
    }
}

fn object(pairs: &[(&'static str, u64)]) -> Value {
    let mut m = Map::new();
    for (k, v) in pairs {
        m.insert((*k).to_string(), json!(v));
    }
    Value::Object(m)
}

fn age_s(e: &ExternalState) -> Option<u64> {
    e.updated
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .map(|a| a.as_secs())
}

impl Report {
    /// The JSON of `sipnat stats --json` (field names are stable).
    pub fn to_json(&self) -> Value {
        let mut xdp = Map::new();
        for (role, _, c) in &self.xdp {
            xdp.insert((*role).to_string(), object(c));
        }
        let workers: Vec<Value> = self
            .workers
            .iter()
            .map(|w| {
                json!({
                    "queue": w.queue,
                    "counters": object(&w.counters),
                    "xsk": {
                        "inside": w.xsk_inside.map_or(Value::Null, |s| object(&s.fields())),
                        "outside": w.xsk_outside.map_or(Value::Null, |s| object(&s.fields())),
                    },
                    "reassembly": {
                        "memory_bytes": w.reasm_memory,
                        "memory_limit_bytes": w.reasm_limit,
                        "in_progress": w.reasm_in_progress,
                    },
                    "free_frames": w.free_frames,
                })
            })
            .collect();
        json!({
            "uptime_s": self.uptime_s,
            "enabled": self.enabled,
            "xdp": xdp,
            "total": object(&self.totals),
            "workers": workers,
            "flows": { "live": self.flows_live },
            "bindings": object(&self.bindings.fields().map(|(k, _, _, v, _)| (k, v))),
            "nexthops": self.nexthops,
            "external": {
                "v4": self.external.addrs.v4.map(|a| a.to_string()),
                "v6": self.external.addrs.v6.map(|a| a.to_string()),
                "source": self.external.source,
                "age_s": age_s(&self.external),
                "stale": self.external.stale,
                "rejected": self.external_rejected,
            },
        })
    }

    /// Prometheus families (text exposition through prometheus-client).
    pub fn encode(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.encode_counters(enc)?;
        self.encode_gauges(enc)
    }

    /// The counter families: XDP verdicts, worker counters, AF_XDP socket statistics.
    fn encode_counters(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // XDP verdicts, per interface.
        {
            let mut m = family(
                enc,
                "sipnat_xdp_verdicts",
                "Packets seen by the XDP steering program, by verdict and reason",
                MetricType::Counter,
            )?;
            for (role, name, counters) in &self.xdp {
                for (verdict, v) in counters {
                    let labels = [
                        ("interface", role.to_string()),
                        ("device", name.clone()),
                        ("verdict", verdict.to_string()),
                    ];
                    ConstCounter::new(*v).encode(m.encode_family(&labels)?)?;
                }
            }
        }
        // Worker counters: one family each, labelled by queue.
        for (i, c) in Counter::ALL.iter().enumerate() {
            let name = format!("sipnat_worker_{}", c.name());
            let mut m = family(enc, &name, c.help(), MetricType::Counter)?;
            for w in &self.workers {
                let labels = [("queue", w.queue.to_string())];
                ConstCounter::new(w.counters[i].1).encode(m.encode_family(&labels)?)?;
            }
        }
        // AF_XDP socket statistics from the kernel.
        for (j, field) in XskStats::default().fields().iter().enumerate() {
            let name = format!("sipnat_xsk_{}", field.0);
            let mut m = family(
                enc,
                &name,
                "AF_XDP socket statistics (kernel XDP_STATISTICS)",
                MetricType::Counter,
            )?;
            for w in &self.workers {
                for (side, s) in [("inside", w.xsk_inside), ("outside", w.xsk_outside)] {
                    if let Some(s) = s {
                        let labels = [
                            ("queue", w.queue.to_string()),
                            ("interface", side.to_string()),
                        ];
                        ConstCounter::new(s.fields()[j].1).encode(m.encode_family(&labels)?)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The gauges (and the external address's families).
    fn encode_gauges(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauges: [Gauge; 4] = [
            (
                "sipnat_reassembly_memory_bytes",
                "Bytes held by IP fragment reassembly",
                |w| w.reasm_memory,
            ),
            (
                "sipnat_reassembly_memory_limit_bytes",
                "Reassembly memory bound",
                |w| w.reasm_limit,
            ),
            (
                "sipnat_reassembly_in_progress",
                "Datagrams being reassembled",
                |w| w.reasm_in_progress,
            ),
            (
                "sipnat_free_frames",
                "UMEM frames free in the worker",
                |w| w.free_frames,
            ),
        ];
        for (name, help, f) in gauges {
            let mut m = family(enc, name, help, MetricType::Gauge)?;
            for w in &self.workers {
                let labels = [("queue", w.queue.to_string())];
                ConstGauge::new(f(w) as i64).encode(m.encode_family(&labels)?)?;
            }
        }
        let single: [(&str, &str, i64); 5] = [
            (
                "sipnat_flows_live",
                "Live entries of the inbound flow table",
                self.flows_live as i64,
            ),
            (
                "sipnat_nexthops",
                "Resolved next hops",
                self.nexthops as i64,
            ),
            (
                "sipnat_uptime_seconds",
                "Seconds since the daemon started",
                self.uptime_s as i64,
            ),
            (
                "sipnat_enabled",
                "1 when steering is enabled",
                i64::from(self.enabled),
            ),
            (
                "sipnat_external_address_stale",
                "1 when the external address source failed and the last good address is in use",
                i64::from(self.external.stale),
            ),
        ];
        for (name, help, v) in single {
            let m = family(enc, name, help, MetricType::Gauge)?;
            ConstGauge::new(v).encode(m)?;
        }
        for (_, name, help, v, is_gauge) in self.bindings.fields() {
            if is_gauge {
                let m = family(enc, name, help, MetricType::Gauge)?;
                ConstGauge::new(v as i64).encode(m)?;
            } else {
                let m = family(enc, name, help, MetricType::Counter)?;
                ConstCounter::new(v).encode(m)?;
            }
        }
        {
            let mut m = family(
                enc,
                "sipnat_external_address_info",
                "The external address in use (value 1)",
                MetricType::Gauge,
            )?;
            let e = &self.external;
            for (fam, a) in [
                ("ipv4", e.addrs.v4.map(|a| a.to_string())),
                ("ipv6", e.addrs.v6.map(|a| a.to_string())),
            ] {
                if let Some(a) = a {
                    let labels = [
                        ("family", fam.to_string()),
                        ("address", a),
                        ("source", e.source.clone()),
                    ];
                    ConstGauge::new(1i64).encode(m.encode_family(&labels)?)?;
                }
            }
        }
        {
            let m = family(enc, "sipnat_external_rejected", "Candidate external addresses refused (loopback, unspecified, link-local, multicast; private or shared without nat.allow_private_external) from STUN, an interface or set external-ip", MetricType::Counter)?;
            ConstCounter::new(self.external_rejected).encode(m)?;
        }
        let m = family(
            enc,
            "sipnat_external_address_age_seconds",
            "Seconds since the external address was last confirmed",
            MetricType::Gauge,
        )?;
        ConstGauge::new(age_s(&self.external).map_or(-1, |a| a as i64)).encode(m)?;
        Ok(())
    }
}

/// Starts the metric family `name` of type `kind` (its `# HELP` and `# TYPE` lines).
pub(crate) fn family<'a>(
    enc: &'a mut DescriptorEncoder,
    name: &'a str,
    help: &str,
    kind: MetricType,
) -> Result<MetricEncoder<'a>, std::fmt::Error> {
    enc.encode_descriptor(name, help, None, kind)
}
