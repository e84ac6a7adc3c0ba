//! The config file (TOML, serde): every field defaulted and documented, unknown keys
//! rejected, errors reported as `FILE:LINE:COLUMN: message`. `check` adds the semantic
//! checks (overlapping rules, a rule outside the local networks, empty port set, a private
//! external address, and — on the host that will run it — unknown interfaces).
//!
//! The data path never sees this module: `Config::rewrite_config()` turns it into the
//! immutable [`RewriteConfig`] snapshot the workers read.

use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use serde::Deserialize;
use toml::Spanned;

use crate::nat::{L3Mode, MalformedPolicy, Net, PortMap, RewriteConfig, Rule};

/// Default path of the config file.
pub const DEFAULT_PATH: &str = "/etc/sipnat/sipnat.toml";
/// Default control socket.
pub const DEFAULT_SOCKET: &str = "/run/sipnat/sipnat.sock";

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub interfaces: Interfaces,
    pub nat: Nat,
    pub rewrite: RewriteOptions,
    pub control: Control,
    pub datapath: Datapath,
    pub log: Log,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Interfaces {
    /// Interface facing the private network.
    pub inside: Spanned<String>,
    /// Interface facing the carrier / internet.
    pub outside: Spanned<String>,
    /// `"all"` or a list of queue ids; one worker per queue.
    pub queues: Queues,
    /// UDP ports that carry SIP (at most 64).
    pub sip_ports: Spanned<Vec<u16>>,
    /// XDP verdict for SIP packets while no worker is attached: `pass` or `drop`.
    pub on_failure: OnFailure,
    /// XDP attach mode: `auto` (native, else generic with a warning), `native`, `generic`.
    pub attach_mode: AttachModeCfg,
    /// Steer UDP fragments to the workers for reassembly.
    pub steer_fragments: bool,
}

impl Default for Interfaces {
    fn default() -> Self {
        Interfaces {
            inside: Spanned::new(0..0, String::new()),
            outside: Spanned::new(0..0, String::new()),
            queues: Queues::All,
            sip_ports: Spanned::new(0..0, vec![5060]),
            on_failure: OnFailure::Pass,
            attach_mode: AttachModeCfg::Auto,
            steer_fragments: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Queues {
    All,
    List(Vec<u32>),
}

impl<'de> Deserialize<'de> for Queues {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            L(Vec<u32>),
        }
        match Raw::deserialize(d)? {
            Raw::S(s) if s == "all" => Ok(Queues::All),
            Raw::S(s) => Err(serde::de::Error::custom(format!(
                "queues must be \"all\" or a list of queue numbers, not \"{s}\""
            ))),
            Raw::L(l) if l.is_empty() => Err(serde::de::Error::custom("queues list is empty")),
            Raw::L(l) => Ok(Queues::List(l)),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    #[default]
    Pass,
    Drop,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AttachModeCfg {
    #[default]
    Auto,
    Native,
    Generic,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Nat {
    /// `"203.0.113.10"`, `"stun:HOST:PORT"` or `"interface:NAME"`.
    pub external_ip: Spanned<String>,
    /// Optional IPv6 external address (same forms).
    pub external_ip6: Spanned<String>,
    /// `snat` (rewrite IP headers too) or `keep` (payload only, behind a 1:1 NAT).
    pub l3: L3Cfg,
    /// Networks whose traffic is internal (never rewritten between them).
    pub local_nets: Vec<Spanned<String>>,
    /// NAT rules, in order; the first rule containing an address applies.
    pub rule: Vec<RuleCfg>,
    /// Inbound flow table (rules whose internal side is a network): entries.
    pub flow_table_size: u32,
    /// Idle timeout of a flow-table entry, seconds.
    pub flow_idle_timeout: u32,
}

impl Default for Nat {
    fn default() -> Self {
        Nat {
            external_ip: Spanned::new(0..0, String::new()),
            external_ip6: Spanned::new(0..0, String::new()),
            l3: L3Cfg::Snat,
            local_nets: crate::nat::rules::DEFAULT_LOCAL_NETS
                .iter()
                .map(|s| Spanned::new(0..0, s.to_string()))
                .collect(),
            rule: Vec::new(),
            flow_table_size: 65536,
            flow_idle_timeout: 300,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum L3Cfg {
    #[default]
    Snat,
    Keep,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleCfg {
    /// Addresses rewritten to the external address (CIDR or single address).
    pub internal: Spanned<String>,
    /// Optional per-rule external address (else the global one of the family).
    #[serde(default)]
    pub external: Option<Spanned<String>>,
    /// Optional port map `{ "5060" = 15060 }` (SIP and media ports).
    #[serde(default = "empty_port_map")]
    pub ports: Spanned<BTreeMap<String, u16>>,
}

fn empty_port_map() -> Spanned<BTreeMap<String, u16>> {
    Spanned::new(0..0, BTreeMap::new())
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RewriteOptions {
    /// Rewrite Record-Route and Route values too.
    pub record_route: bool,
    /// Rewrite From and To too.
    pub from_to: bool,
    /// Malformed SIP: `forward` unchanged or `drop`.
    pub malformed: MalformedCfg,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum MalformedCfg {
    #[default]
    Forward,
    Drop,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Control {
    /// Unix socket of the control plane (mode 0600).
    pub socket: PathBuf,
    /// Prometheus endpoint `ADDR:PORT`; empty disables it.
    pub metrics: Spanned<String>,
    /// A group whose members may also use the control socket (besides root).
    pub group: Option<String>,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            socket: PathBuf::from(DEFAULT_SOCKET),
            metrics: Spanned::new(0..0, "127.0.0.1:9560".to_string()),
            group: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Datapath {
    /// UMEM frames per worker (4 KiB each).
    pub frames: u32,
    /// RX and TX ring size per socket (power of two).
    pub ring_size: u32,
    /// Packets per batch.
    pub batch: u32,
    /// Busy-poll instead of sleeping in poll() when idle.
    pub busy_poll: bool,
    /// Reassembly memory per worker, bytes.
    pub reassembly_memory: u32,
    /// Reassembly timeout, milliseconds.
    pub reassembly_timeout_ms: u32,
    /// Most fragments per datagram.
    pub max_fragments: u32,
}

impl Default for Datapath {
    fn default() -> Self {
        Datapath {
            frames: 8192,
            ring_size: 1024,
            batch: 64,
            busy_poll: false,
            reassembly_memory: 4 << 20,
            reassembly_timeout_ms: 2000,
            max_fragments: 64,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `error`, `warn`, `info`, `debug` or `trace` (overridden by SIPNAT_LOG).
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: "info".into(),
        }
    }
}

/// Where the external address comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExternalSource {
    None,
    Static(IpAddr),
    Stun { host: String, port: u16 },
    Interface(String),
}

impl ExternalSource {
    pub fn parse(s: &str) -> Result<ExternalSource, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(ExternalSource::None);
        }
        if let Some(rest) = s.strip_prefix("stun:") {
            let (host, port) = rest.rsplit_once(':').ok_or_else(|| {
                format!("STUN source `{s}` needs a port: stun:HOST:PORT (e.g. stun:stun.example.net:3478)")
            })?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port = port
                .parse()
                .map_err(|_| format!("STUN port in `{s}` is not a port number"))?;
            if host.is_empty() {
                return Err(format!("STUN source `{s}` has no host"));
            }
            return Ok(ExternalSource::Stun {
                host: host.to_string(),
                port,
            });
        }
        if let Some(name) = s.strip_prefix("interface:") {
            if name.is_empty() {
                return Err("interface source needs a name: interface:NAME".into());
            }
            return Ok(ExternalSource::Interface(name.to_string()));
        }
        s.parse::<IpAddr>()
            .map(ExternalSource::Static)
            .map_err(|_| format!("`{s}` is not an IP address, stun:HOST:PORT or interface:NAME"))
    }
}

impl fmt::Display for ExternalSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExternalSource::None => f.write_str("none"),
            ExternalSource::Static(a) => write!(f, "static {a}"),
            ExternalSource::Stun { host, port } => write!(f, "stun:{host}:{port}"),
            ExternalSource::Interface(n) => write!(f, "interface:{n}"),
        }
    }
}

/// One problem in a config file, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// A config file that cannot be used: every problem found, each with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if p.line == 0 {
                write!(f, "{}: {}", self.file, p.message)?;
            } else {
                write!(f, "{}:{}:{}: {}", self.file, p.line, p.column, p.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// 1-based line and column of byte offset `off` in `text` (0, 0 for "no position").
fn position(text: &str, span: &std::ops::Range<usize>) -> (usize, usize) {
    if span.start == 0 && span.end == 0 {
        return (0, 0);
    }
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Collects problems with positions.
struct Problems<'a> {
    text: &'a str,
    list: Vec<Problem>,
}

impl Problems<'_> {
    fn add(&mut self, span: &std::ops::Range<usize>, message: String) {
        let (line, column) = position(self.text, span);
        self.list.push(Problem {
            line,
            column,
            message,
        });
    }
}

impl Config {
    /// Reads and parses a config file (syntax and types; see [`Config::check`] for more).
    pub fn load(path: &Path) -> Result<(Config, String), ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            problems: vec![Problem {
                line: 0,
                column: 0,
                message: format!("cannot read the config file: {e}"),
            }],
        })?;
        let cfg = Config::parse(&text).map_err(|problems| ConfigError { file, problems })?;
        Ok((cfg, text))
    }

    /// Parses TOML text; errors carry line and column.
    pub fn parse(text: &str) -> Result<Config, Vec<Problem>> {
        toml::from_str::<Config>(text).map_err(|e| {
            let (line, column) = e.span().map_or((0, 0), |s| position(text, &s));
            vec![Problem {
                line,
                column,
                message: e.message().trim().to_string(),
            }]
        })
    }

    /// Semantic checks that need no system access. `text` is the file the config came
    /// from (for positions).
    pub fn validate(&self, text: &str) -> Vec<Problem> {
        let mut p = Problems {
            text,
            list: Vec::new(),
        };
        let i = &self.interfaces;
        if i.inside.get_ref().is_empty() {
            p.add(
                &(0..0),
                "[interfaces] inside is not set: name the interface facing the private network"
                    .into(),
            );
        }
        if i.outside.get_ref().is_empty() {
            p.add(
                &(0..0),
                "[interfaces] outside is not set: name the interface facing the carrier".into(),
            );
        }
        if !i.inside.get_ref().is_empty() && i.inside.get_ref() == i.outside.get_ref() {
            p.add(
                &i.outside.span(),
                "inside and outside are the same interface".into(),
            );
        }
        let ports = i.sip_ports.get_ref();
        if ports.is_empty() {
            p.add(
                &i.sip_ports.span(),
                "sip_ports is empty: no SIP traffic would be steered".into(),
            );
        } else if ports.len() > nat_common::MAX_SIP_PORTS as usize {
            p.add(
                &i.sip_ports.span(),
                format!(
                    "sip_ports has {} ports; at most {} are supported",
                    ports.len(),
                    nat_common::MAX_SIP_PORTS
                ),
            );
        }
        if ports.contains(&0) {
            p.add(
                &i.sip_ports.span(),
                "sip_ports contains 0, which is not a port".into(),
            );
        }
        let mut local = Vec::new();
        for ln in &self.nat.local_nets {
            match Net::parse(ln.get_ref()) {
                Some(n) => local.push(n),
                None => p.add(
                    &ln.span(),
                    format!(
                        "local_nets entry `{}` is not a network (CIDR)",
                        ln.get_ref()
                    ),
                ),
            }
        }
        let externals = [&self.nat.external_ip, &self.nat.external_ip6];
        let mut global_ext = Vec::new();
        for (e, want_v6) in externals.iter().zip([false, true]) {
            match ExternalSource::parse(e.get_ref()) {
                Err(m) => p.add(&e.span(), m),
                Ok(ExternalSource::Static(a)) => {
                    if a.is_ipv6() != want_v6 {
                        p.add(
                            &e.span(),
                            format!(
                                "{} must be an IPv{} address, not {a}",
                                if want_v6 {
                                    "external_ip6"
                                } else {
                                    "external_ip"
                                },
                                if want_v6 { 6 } else { 4 }
                            ),
                        );
                    }
                    if local.iter().any(|n| n.contains(a)) {
                        p.add(&e.span(), format!("external address {a} is inside local_nets (a private address): the rewrite would hide nothing"));
                    }
                    global_ext.push(a);
                }
                Ok(_) => {}
            }
        }
        if self.nat.external_ip.get_ref().trim().is_empty()
            && self.nat.external_ip6.get_ref().trim().is_empty()
        {
            p.add(
                &(0..0),
                "[nat] external_ip is not set: give an address, stun:HOST:PORT or interface:NAME"
                    .into(),
            );
        }
        if self.nat.rule.is_empty() {
            p.add(
                &(0..0),
                "no [[nat.rule]]: nothing would be rewritten".into(),
            );
        }
        let mut nets: Vec<(Net, std::ops::Range<usize>)> = Vec::new();
        for r in &self.nat.rule {
            let Some(net) = Net::parse(r.internal.get_ref()) else {
                p.add(
                    &r.internal.span(),
                    format!(
                        "rule internal `{}` is not a network (CIDR) or address",
                        r.internal.get_ref()
                    ),
                );
                continue;
            };
            if let Some((other, _)) = nets.iter().find(|(n, _)| n.overlaps(&net)) {
                p.add(
                    &r.internal.span(),
                    format!("rule {net} overlaps rule {other}: an address would match both"),
                );
            }
            if !local.iter().any(|l| net.within(l)) {
                p.add(
                    &r.internal.span(),
                    format!(
                        "rule {net} is not inside local_nets: public addresses would be rewritten"
                    ),
                );
            }
            if let Some(e) = &r.external {
                match e.get_ref().parse::<IpAddr>() {
                    Ok(a) if local.iter().any(|n| n.contains(a)) => p.add(
                        &e.span(),
                        format!(
                            "rule external address {a} is inside local_nets (a private address)"
                        ),
                    ),
                    Ok(_) => {}
                    Err(_) => p.add(
                        &e.span(),
                        format!("rule external `{}` is not an IP address", e.get_ref()),
                    ),
                }
            }
            let map = r.ports.get_ref();
            if map.len() > crate::nat::rules::MAX_PORT_MAP {
                p.add(
                    &r.ports.span(),
                    format!(
                        "port map has {} entries; at most {} are supported",
                        map.len(),
                        crate::nat::rules::MAX_PORT_MAP
                    ),
                );
            }
            for k in map.keys() {
                if k.parse::<u16>().map_or(true, |v| v == 0) {
                    p.add(
                        &r.ports.span(),
                        format!("port map key `{k}` is not a port number"),
                    );
                }
            }
            nets.push((net, r.internal.span()));
        }
        if let Queues::List(l) = &i.queues {
            if l.iter().any(|&q| q >= nat_common::MAX_QUEUES) {
                p.add(
                    &(0..0),
                    format!("queue numbers must be below {}", nat_common::MAX_QUEUES),
                );
            }
        }
        if self.nat.flow_table_size == 0 || self.nat.flow_table_size > 1 << 24 {
            p.add(&(0..0), format!("nat.flow_table_size {} must be between 1 and 16777216", self.nat.flow_table_size));
        }
        if self.nat.flow_idle_timeout == 0 {
            p.add(&(0..0), "nat.flow_idle_timeout must be at least 1 second".to_string());
        }
        let m = self.control.metrics.get_ref();
        if !m.is_empty() && m.parse::<SocketAddr>().is_err() {
            p.add(
                &self.control.metrics.span(),
                format!(
                    "metrics `{m}` is not ADDR:PORT (e.g. 127.0.0.1:9560); use \"\" to disable"
                ),
            );
        }
        let d = &self.datapath;
        if !d.ring_size.is_power_of_two() || d.ring_size < 64 || d.ring_size > 16384 {
            p.add(
                &(0..0),
                format!(
                    "datapath.ring_size {} must be a power of two between 64 and 16384",
                    d.ring_size
                ),
            );
        }
        if d.frames < 6 * d.ring_size {
            p.add(&(0..0), format!("datapath.frames {} must be at least 6 × ring_size ({}): both fill rings (2 × ring_size each) full plus frames in flight", d.frames, 6 * d.ring_size));
        }
        if d.batch == 0 || d.batch > d.ring_size {
            p.add(
                &(0..0),
                format!("datapath.batch {} must be between 1 and ring_size", d.batch),
            );
        }
        if !["error", "warn", "info", "debug", "trace"].contains(&self.log.level.as_str()) {
            p.add(
                &(0..0),
                format!(
                    "log.level `{}` must be error, warn, info, debug or trace",
                    self.log.level
                ),
            );
        }
        p.list
    }

    /// Checks against this host: the interfaces exist (in this network namespace).
    pub fn check_system(&self, text: &str) -> Vec<Problem> {
        let mut p = Problems {
            text,
            list: Vec::new(),
        };
        for (what, i) in [
            ("inside", &self.interfaces.inside),
            ("outside", &self.interfaces.outside),
        ] {
            if !i.get_ref().is_empty() && crate::sys::if_index(i.get_ref()).is_none() {
                p.add(
                    &i.span(),
                    format!(
                        "{what} interface `{}` does not exist on this host (check `ip link`)",
                        i.get_ref()
                    ),
                );
            }
        }
        p.list
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
            l3: match self.nat.l3 {
                L3Cfg::Snat => L3Mode::Snat,
                L3Cfg::Keep => L3Mode::Keep,
            },
            record_route: self.rewrite.record_route,
            from_to: self.rewrite.from_to,
            malformed: match self.rewrite.malformed {
                MalformedCfg::Forward => MalformedPolicy::Forward,
                MalformedCfg::Drop => MalformedPolicy::Drop,
            },
            enabled: true,
        }
    }
}

/// Loads and fully validates a config file (syntax, semantics; system checks when
/// `system` is true).
pub fn load_checked(path: &Path, system: bool) -> Result<Config, ConfigError> {
    let (cfg, text) = Config::load(path)?;
    let mut problems = cfg.validate(&text);
    if system {
        problems.extend(cfg.check_system(&text));
    }
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigError {
            file: path.display().to_string(),
            problems,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[interfaces]
inside = "eth1"
outside = "eth0"
sip_ports = [5060, 5080]

[nat]
external_ip = "203.0.113.10"

[[nat.rule]]
internal = "10.0.0.0/24"
ports = { 5060 = 15060 }
"#;

    #[test]
    fn good_config_and_snapshot() {
        let c = Config::parse(GOOD).unwrap();
        assert!(c.validate(GOOD).is_empty(), "{:?}", c.validate(GOOD));
        let rc = c.rewrite_config();
        assert_eq!(rc.rules.len(), 1);
        assert_eq!(rc.rules[0].ports.outbound(5060), Some(15060));
        assert_eq!(rc.local_nets.len(), 7);
        assert_eq!(
            c.external_sources().0,
            ExternalSource::Static("203.0.113.10".parse().unwrap())
        );
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let p = Config::parse("[interfaces]\ninside = eth1\n").unwrap_err();
        assert_eq!((p[0].line, p[0].column), (2, 10));
        let p = Config::parse("[interfaces]\ninsde = \"eth1\"\n").unwrap_err();
        assert_eq!(p[0].line, 2);
        assert!(
            p[0].message.contains("unknown field `insde`"),
            "{}",
            p[0].message
        );
    }

    #[test]
    fn external_sources() {
        assert_eq!(
            ExternalSource::parse("stun:stun.example.net:3478").unwrap(),
            ExternalSource::Stun {
                host: "stun.example.net".into(),
                port: 3478
            }
        );
        assert_eq!(
            ExternalSource::parse("interface:eth0").unwrap(),
            ExternalSource::Interface("eth0".into())
        );
        assert!(ExternalSource::parse("stun:host").is_err());
        assert!(ExternalSource::parse("eth0").is_err());
    }
}
