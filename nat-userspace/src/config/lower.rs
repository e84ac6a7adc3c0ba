//! From the config to the domain types the daemon runs on: the rewrite snapshot
//! ([`RewriteConfig`]), the external-address sources, the reassembler's limits.

use std::net::IpAddr;

use super::schema::{Config, Datapath, ExternalSource, Nat};
use crate::nat::{external::AddrClass, Net, PortMap, RewriteConfig, Rule};

impl Config {
    /// The static external addresses (`nat.external_ip`, `nat.external_ip6`, the rules'
    /// `external`) that are private or shared, as (key, address, why): usable only with
    /// `nat.allow_private_external`, and worth a warning then.
    pub fn private_externals(&self) -> Vec<(&'static str, IpAddr, &'static str)> {
        let (v4, v6) = self.external_sources();
        let statics = [("nat.external_ip", v4), ("nat.external_ip6", v6)]
            .into_iter()
            .filter_map(|(k, s)| match s {
                ExternalSource::Static(a) => Some((k, a)),
                _ => None,
            });
        let rules = self.nat.rule.iter().filter_map(|r| {
            let a = r.external.as_ref()?.get_ref().parse().ok()?;
            Some(("nat.rule.external", a))
        });
        statics
            .chain(rules)
            .filter_map(|(k, a)| match crate::nat::external::classify(a) {
                AddrClass::Private(why) => Some((k, a, why)),
                _ => None,
            })
            .collect()
    }

    pub fn external_sources(&self) -> (ExternalSource, ExternalSource) {
        (
            ExternalSource::parse(self.nat.external_ip.get_ref()).unwrap_or(ExternalSource::None),
            ExternalSource::parse(self.nat.external_ip6.get_ref()).unwrap_or(ExternalSource::None),
        )
    }

    /// The immutable snapshot the rewriter reads. Call after `validate` passed (invalid
    /// entries are skipped here).
    pub fn rewrite_config(&self) -> RewriteConfig {
        let rules = self
            .nat
            .rule
            .iter()
            .filter_map(|r| {
                let internal = Net::parse(r.internal.get_ref())?;
                let external = r.external.as_ref().and_then(|e| e.get_ref().parse().ok());
                let pairs: Vec<(u16, u16)> = r
                    .ports
                    .get_ref()
                    .iter()
                    .filter_map(|(k, v)| Some((k.parse().ok()?, *v)))
                    .collect();
                Some(Rule {
                    internal,
                    external,
                    ports: PortMap::new(&pairs).unwrap_or_default(),
                })
            })
            .collect();
        RewriteConfig {
            rules,
            local_nets: self
                .nat
                .local_nets
                .iter()
                .filter_map(|s| Net::parse(s.get_ref()))
                .collect(),
            l3: self.nat.l3,
            record_route: self.rewrite.record_route,
            from_to: self.rewrite.from_to,
            malformed: self.rewrite.malformed,
            leak: self.rewrite.leak,
            enabled: self.rewrite.enabled,
        }
    }
}

impl Nat {
    /// The NAPT port range (`None`: off, or invalid — `validate` reports that).
    pub fn napt_range(&self) -> Option<crate::nat::napt::PortRange> {
        crate::nat::napt::PortRange::parse(self.port_range.get_ref())
    }
}

impl super::schema::Media {
    /// The media port range (`None`: invalid — `validate` reports that).
    pub fn range(&self) -> Option<crate::nat::napt::PortRange> {
        crate::nat::napt::PortRange::parse(self.port_range.get_ref())
    }
}

impl Datapath {
    /// The reassembler's limits from this section.
    pub fn reasm_limits(&self) -> crate::ip::reasm::ReasmLimits {
        crate::ip::reasm::ReasmLimits {
            memory: self.reassembly_memory as usize,
            timeout_ms: self.reassembly_timeout_ms,
            max_fragments: self.max_fragments,
            max_datagram: self.max_datagram as usize,
        }
    }

    /// The frames a copy-mode fill ring is kept at: `copy_fill`, or 4 × `batch` for 0.
    pub fn copy_fill_frames(&self) -> u32 {
        match self.copy_fill {
            0 => 4 * self.batch,
            n => n,
        }
    }
}
