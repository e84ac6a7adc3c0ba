//! The AF_XDP data path: UMEM and rings, workers, the per-packet pipeline, next-hop
//! resolution, ICMP errors, the kernel slow path. The pure algorithms it runs are
//! elsewhere: reassembly and refragmentation in [`crate::ip`], the flow table in
//! [`crate::nat::flow`]. Knows nothing of config files: it receives snapshots.

mod bindings;
pub mod icmp;
pub mod nexthop;
pub mod pipeline;
pub mod port;
pub mod slowpath;
pub mod stats;
pub mod umem;
pub mod worker;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Instant,
};

use crate::{
    nat::{ExternalAddrs, RewriteConfig},
    snapshot::Published,
};

/// What the workers rewrite with; published as a whole (config reload, external address
/// change) and read once per packet. Written only through
/// [`DataplaneWriter`](crate::control::writer::DataplaneWriter) in the daemon.
#[derive(Clone, Debug)]
pub struct DataplaneSnapshot {
    pub config: RewriteConfig,
    pub external: ExternalAddrs,
    /// Some rule's internal side is a network (outbound packets fill the flow table).
    pub network_rules: bool,
    /// The UDP ports that carry SIP (the XDP program steers a datagram to or from one).
    pub sip_ports: SipPorts,
    /// The rewriter's fast-path gates (outbound, inbound), built from `config`, `external`
    /// and `media` by [`DataplaneSnapshot::new`] / [`DataplaneSnapshot::with_external`] /
    /// [`DataplaneSnapshot::with_media`]: a changed rule set or external address is a new
    /// `DataplaneSnapshot` made by one of them, never a field write.
    pub gates: [crate::rewrite::Gate; 2],
    /// `config`'s IPv4 local networks as words (built with the gates, from `config`).
    pub local_v4: crate::nat::rules::LocalV4,
    /// Port translation of network rules (`l3 = "snat"`): new bindings keep the internal
    /// port when free, else take one of this range. `None`: ports are kept (a second host
    /// on the same port and remote is a flow collision).
    pub napt: Option<crate::nat::napt::PortRange>,
    /// The workers bind media (`[media]` on): SDP bodies are read whole, and the gates
    /// are made for it ([`crate::rewrite::Gate::for_media_nat`]).
    pub media: bool,
}

impl DataplaneSnapshot {
    pub fn new(
        config: RewriteConfig,
        external: ExternalAddrs,
        sip_ports: &[u16],
    ) -> DataplaneSnapshot {
        let network_rules = config
            .rules
            .iter()
            .any(|r| r.internal.single_host().is_none());
        let gates = DataplaneSnapshot::gates(&config, &external, false);
        let local_v4 = crate::nat::rules::LocalV4::of(&config);
        DataplaneSnapshot {
            config,
            external,
            network_rules,
            sip_ports: SipPorts::new(sip_ports),
            gates,
            local_v4,
            napt: None,
            media: false,
        }
    }

    /// The same, with port translation from `range` (`None`: off).
    pub fn with_napt(self, range: Option<crate::nat::napt::PortRange>) -> DataplaneSnapshot {
        DataplaneSnapshot {
            napt: range,
            ..self
        }
    }

    /// The same, for workers that bind media or not (`[media]`; the gates follow it).
    pub fn with_media(self, media: bool) -> DataplaneSnapshot {
        DataplaneSnapshot {
            gates: DataplaneSnapshot::gates(&self.config, &self.external, media),
            media,
            ..self
        }
    }

    fn gates(
        config: &RewriteConfig,
        external: &ExternalAddrs,
        media: bool,
    ) -> [crate::rewrite::Gate; 2] {
        use crate::{nat::Direction, rewrite::Gate};
        [Direction::Outbound, Direction::Inbound].map(|d| {
            let g = Gate::new(config, external, d);
            if media {
                g.for_media_nat()
            } else {
                g
            }
        })
    }

    /// The fast-path gate of `direction`.
    #[inline]
    pub fn gate(&self, direction: crate::nat::Direction) -> &crate::rewrite::Gate {
        match direction {
            crate::nat::Direction::Outbound => &self.gates[0],
            crate::nat::Direction::Inbound => &self.gates[1],
        }
    }

    /// The same rules and ports with other external addresses.
    pub fn with_external(&self, external: ExternalAddrs) -> DataplaneSnapshot {
        DataplaneSnapshot {
            external,
            gates: DataplaneSnapshot::gates(&self.config, &external, self.media),
            ..self.clone()
        }
    }

    /// Whether `self` and `other` rewrite alike (the gates follow from the rest).
    pub fn same_as(&self, other: &DataplaneSnapshot) -> bool {
        self.config == other.config
            && self.external == other.external
            && self.sip_ports == other.sip_ports
            && self.napt == other.napt
            && self.media == other.media
    }
}

/// A set of UDP ports: one bit per port (8 KiB), one load per lookup.
#[derive(Clone, PartialEq, Eq)]
pub struct SipPorts {
    bits: Box<[u64; 1024]>,
}

impl SipPorts {
    pub fn new(ports: &[u16]) -> SipPorts {
        let mut bits = Box::new([0u64; 1024]);
        for &p in ports {
            bits[usize::from(p >> 6)] |= 1 << (p & 63);
        }
        SipPorts { bits }
    }

    #[inline]
    pub fn contains(&self, port: u16) -> bool {
        self.bits[usize::from(port >> 6)] & (1 << (port & 63)) != 0
    }

    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..=u16::MAX).filter(|&p| self.contains(p))
    }
}

impl std::fmt::Debug for SipPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// A coarse clock the workers read per batch (updated by the daemon's ticker), so the
/// per-packet path never calls into the kernel for time.
pub struct Clock {
    start: Instant,
    ms: AtomicU64,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            start: Instant::now(),
            ms: AtomicU64::new(0),
        }
    }
}

impl Clock {
    /// Advances the clock to now (called by the ticker thread).
    pub fn tick(&self) {
        self.ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    #[inline]
    pub fn now_ms(&self) -> u64 {
        self.ms.load(Ordering::Relaxed)
    }

    #[inline]
    pub fn now_s(&self) -> u32 {
        (self.now_ms() / 1000) as u32
    }
}

/// The media binding registry and its sink, shared like the flow table.
pub struct SharedMedia {
    pub registry: crate::nat::media::MediaRegistry,
    pub sink: Arc<dyn crate::nat::media::MediaBindings>,
    /// `[media] idle_timeout`, seconds (the control plane's reaper).
    pub idle_timeout_s: u32,
}

impl SharedMedia {
    /// The pipeline's view.
    pub fn env(&self) -> pipeline::MediaEnv<'_> {
        pipeline::MediaEnv {
            registry: &self.registry,
            sink: &*self.sink,
        }
    }
}

/// State shared by the workers and the control plane.
pub struct DatapathState {
    pub dataplane: Published<DataplaneSnapshot>,
    pub nexthops: Arc<Published<nexthop::NextHops>>,
    pub flows: crate::nat::flow::FlowTable,
    /// NAPT bindings (internal endpoint ↔ external port), shared like `flows`.
    pub napt: crate::nat::napt::NaptTable,
    /// Media bindings learned from SDP (`[media] enabled`).
    pub media: Option<SharedMedia>,
    pub clock: Clock,
    pub stop: Arc<AtomicBool>,
    pub slow: slowpath::SlowPath,
    pub resolver: nexthop::ResolverHandle,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        nat::{Direction, Net},
        rewrite::Gate,
    };

    /// The gates follow `[media]`, through a new external address too.
    #[test]
    fn gates_are_made_for_media_nat_when_the_workers_bind_media() {
        let config = RewriteConfig::single(Net::parse("10.0.0.0/8").unwrap());
        let ext = |a: &str| ExternalAddrs::from_ip(a.parse().unwrap());
        let gates = |dp: &DataplaneSnapshot, media: bool| {
            for d in [Direction::Outbound, Direction::Inbound] {
                let g = Gate::new(&dp.config, &dp.external, d);
                let want = if media { g.for_media_nat() } else { g };
                assert_eq!(*dp.gate(d), want, "{d:?}, media {media}");
            }
        };
        let plain = DataplaneSnapshot::new(config, ext("198.51.100.1"), &[5060]);
        gates(&plain, false);
        let media = plain.clone().with_media(true);
        assert_ne!(media.gates, plain.gates);
        assert!(!media.same_as(&plain));
        gates(&media, true);
        gates(&media.with_external(ext("198.51.100.2")), true);
        gates(&plain.with_external(ext("198.51.100.2")), false);
    }
}
