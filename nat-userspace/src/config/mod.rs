//! The config file (TOML, serde): every field defaulted and documented, unknown keys
//! rejected, errors reported as `FILE:LINE:COLUMN: message`. [`Config::validate`] adds the
//! semantic checks (overlapping rules, a rule outside the local networks, empty port set,
//! a private external address, ...) and [`Config::check_system`] those that need the host
//! that will run it (unknown interfaces, unknown control group).
//!
//! Every message is one sentence naming the key (`section.key`), the cause and the fix;
//! the position is the offending value (or key, or the section header when a required key
//! is missing). serde's and toml's own messages are rewritten into that form
//! ([`explain`]); positions for fields that are not `Spanned` come from a second,
//! best-effort parse of the text into a tree of spans ([`SpanTree`]). The golden tests in
//! `tests/config_golden.rs` pin every message; docs/config.md documents every key.
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

use crate::nat::{
    addr::canonical,
    external::{check_external, AddrClass},
    L3Mode, LeakPolicy, MalformedPolicy, Net, PortMap, RewriteConfig, Rule,
};

/// Default path of the config file.
pub const DEFAULT_PATH: &str = "/etc/sipnat/sipnat.toml";
/// Default control socket.
pub const DEFAULT_SOCKET: &str = "/run/sipnat/sipnat.sock";
/// Default pin directory (bpffs) for hitless restarts.
pub const DEFAULT_BPFFS: &str = "/sys/fs/bpf/sipnat";

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
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Queues;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"all\" or a list of queue numbers")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Queues, E> {
                if s == "all" {
                    Ok(Queues::All)
                } else {
                    Err(E::custom(format!(
                        "interfaces.queues cannot be \"{s}\": use \"all\" or a list of queue numbers, e.g. [0, 1]"
                    )))
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Queues, A::Error> {
                let mut l = Vec::new();
                while let Some(q) = a.next_element::<u32>()? {
                    l.push(q);
                }
                if l.is_empty() {
                    return Err(serde::de::Error::custom(
                        "interfaces.queues is empty: use \"all\" or list at least one queue number",
                    ));
                }
                Ok(Queues::List(l))
            }
        }
        d.deserialize_any(V)
    }
}

/// A problem with `interfaces.queues` on this host; `index`: the list entry at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueProblem {
    pub index: Option<usize>,
    pub message: String,
}

impl Queues {
    /// The RX queues to serve (one worker each), given the interfaces' names and RX queue
    /// counts as (inside, outside). A worker serves the same queue number on both sides,
    /// so a queue that only one interface has would get no worker: SIP the NIC hashes to
    /// it takes the kernel path unrewritten. `"all"` therefore needs equal counts, and a
    /// listed queue must exist on both interfaces.
    pub fn resolve(
        &self,
        inside: (&str, u32),
        outside: (&str, u32),
    ) -> Result<Vec<u32>, Vec<QueueProblem>> {
        match self {
            Queues::All if inside.1 == outside.1 => Ok((0..inside.1).collect()),
            Queues::All => {
                let (small, big) = if inside.1 < outside.1 {
                    (inside, outside)
                } else {
                    (outside, inside)
                };
                Err(vec![QueueProblem {
                    index: None,
                    message: format!(
                        "interfaces.queues is \"all\" but {} has {} RX queue(s) and {} has {}: SIP arriving on the queues only {} has would get no worker and leave unrewritten; give both the same number of queues (e.g. ethtool -L {} combined {}), or list the queues to serve, e.g. queues = [0], and steer SIP to them",
                        inside.0, inside.1, outside.0, outside.1, big.0, big.0, small.1
                    ),
                }])
            }
            Queues::List(l) => {
                let problems: Vec<QueueProblem> = l
                    .iter()
                    .enumerate()
                    .filter_map(|(k, &q)| {
                        let (name, n) = [inside, outside].into_iter().find(|(_, n)| q >= *n)?;
                        Some(QueueProblem {
                            index: Some(k),
                            message: format!(
                                "interfaces.queues contains queue {q}, but {name} has only {n} RX queue(s) (0 to {}): list queues that both interfaces have (see `ethtool -l {name}`), or add queues (ethtool -L {name} combined {})",
                                n.saturating_sub(1),
                                q + 1
                            ),
                        })
                    })
                    .collect();
                if problems.is_empty() {
                    Ok(l.clone())
                } else {
                    Err(problems)
                }
            }
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
    /// Accept a private (RFC 1918, fc00::/7) or shared (100.64.0.0/10) external address,
    /// from any source, with a warning; refused otherwise.
    pub allow_private_external: bool,
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
            allow_private_external: false,
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
    #[serde(default = "empty_port_map", deserialize_with = "port_map")]
    pub ports: Spanned<BTreeMap<String, u16>>,
}

fn empty_port_map() -> Spanned<BTreeMap<String, u16>> {
    Spanned::new(0..0, BTreeMap::new())
}

/// `Spanned<BTreeMap>` that also accepts a table toml gives no span for (written with
/// dotted keys, `ports.5060 = 15060`): plain `Spanned` fails on those with a baffling
/// "expected a borrowed string". Such a map gets the empty span (no position).
fn port_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Spanned<BTreeMap<String, u16>>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Spanned<BTreeMap<String, u16>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a table of port numbers")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut a: A,
        ) -> Result<Self::Value, A::Error> {
            let mut map = BTreeMap::new();
            let Some(first) = a.next_key::<String>()? else {
                return Ok(Spanned::new(0..0, map));
            };
            if first == spans::START {
                let start: usize = a.next_value()?;
                let _ = a.next_key::<String>()?;
                let end: usize = a.next_value()?;
                let _ = a.next_key::<String>()?;
                let map: BTreeMap<String, u16> = a.next_value()?;
                return Ok(Spanned::new(start..end, map));
            }
            map.insert(first, a.next_value()?);
            while let Some(k) = a.next_key::<String>()? {
                let v = a.next_value()?;
                map.insert(k, v);
            }
            Ok(Spanned::new(0..0, map))
        }
    }
    d.deserialize_struct(spans::NAME, &[spans::START, spans::END, spans::VALUE], V)
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
    /// An outbound message still holding an internal address: `drop` or `forward`.
    pub leak: LeakCfg,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LeakCfg {
    #[default]
    Drop,
    Forward,
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
    /// Where the XDP program and its maps are pinned (a directory on a bpffs) so that a
    /// restarted daemon adopts them without detaching: hitless restart.
    pub bpffs: PathBuf,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            socket: PathBuf::from(DEFAULT_SOCKET),
            metrics: Spanned::new(0..0, "127.0.0.1:9560".to_string()),
            group: None,
            bpffs: PathBuf::from(DEFAULT_BPFFS),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Datapath {
    /// UMEM frames per worker (4 KiB each).
    pub frames: u32,
    /// RX and TX ring size per socket (power of two).
    pub ring_size: u32,
    /// Packets per batch.
    pub batch: u32,
    /// Busy-poll the queues (NAPI busy polling) instead of sleeping in poll() when idle.
    pub busy_poll: bool,
    /// With busy_poll: sleep in poll() after this many microseconds without a packet
    /// (0: never sleep).
    pub busy_poll_idle_us: u32,
    /// Nice value of the worker threads (-20 to 19).
    pub nice: i32,
    /// SCHED_FIFO priority of the worker threads (1-99); 0: normal scheduling. Ignored
    /// with busy_poll.
    pub rt_priority: u32,
    /// Reassembly memory per worker, bytes.
    pub reassembly_memory: u32,
    /// Reassembly timeout, milliseconds.
    pub reassembly_timeout_ms: u32,
    /// Most fragments per datagram.
    pub max_fragments: u32,
    /// Largest IP datagram reassembled (bytes of its fragmentable part).
    pub max_datagram: u32,
}

impl Default for Datapath {
    fn default() -> Self {
        Datapath {
            frames: 8192,
            ring_size: 1024,
            batch: 64,
            busy_poll: false,
            busy_poll_idle_us: 1000,
            nice: 0,
            rt_priority: 10,
            reassembly_memory: 16 << 20,
            reassembly_timeout_ms: 2000,
            max_fragments: 64,
            max_datagram: 65535,
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
    /// Discovered at run time (STUN, an interface's address) rather than configured.
    pub fn is_dynamic(&self) -> bool {
        matches!(
            self,
            ExternalSource::Stun { .. } | ExternalSource::Interface(_)
        )
    }

    /// Parses `""` (none), an address, `stun:HOST:PORT` (an IPv6 host in brackets) or
    /// `interface:NAME`. The error starts with the offending text in backticks and names
    /// the fix, so that callers can prefix the key: "nat.external_ip `stun:x` has no port: ...".
    pub fn parse(s: &str) -> Result<ExternalSource, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(ExternalSource::None);
        }
        if let Some(rest) = s.strip_prefix("stun:") {
            let Some((host, port)) = rest.rsplit_once(':').filter(|(h, _)| {
                // `stun:2001:db8::1` is a bracket-less IPv6 host, not HOST:PORT.
                !h.contains(':') || (h.starts_with('[') && h.ends_with(']'))
            }) else {
                return Err(if rest.contains(':') && !rest.starts_with('[') {
                    format!("`{s}` has an IPv6 host without brackets: write stun:[ADDRESS]:PORT, e.g. stun:[2001:db8::1]:3478")
                } else {
                    format!(
                        "`{s}` has no port: write stun:HOST:PORT, e.g. stun:stun.example.net:3478"
                    )
                });
            };
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            if host.is_empty() {
                return Err(format!(
                    "`{s}` has no host: write stun:HOST:PORT, e.g. stun:stun.example.net:3478"
                ));
            }
            let port = match port.parse::<u16>() {
                Ok(p) if p != 0 => p,
                _ => {
                    return Err(format!(
                        "`{s}` has an invalid port `{port}`: use a port number from 1 to 65535, e.g. 3478"
                    ))
                }
            };
            return Ok(ExternalSource::Stun {
                host: host.to_string(),
                port,
            });
        }
        if let Some(name) = s.strip_prefix("interface:") {
            if name.trim().is_empty() {
                return Err(format!(
                    "`{s}` has no interface name: write interface:NAME, e.g. interface:eth0"
                ));
            }
            return Ok(ExternalSource::Interface(name.trim().to_string()));
        }
        s.parse::<IpAddr>().map(ExternalSource::Static).map_err(|_| {
            format!("`{s}` is not an IP address, stun:HOST:PORT or interface:NAME: write e.g. \"203.0.113.10\"")
        })
    }
}

impl fmt::Display for ExternalSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExternalSource::None => f.write_str("none"),
            ExternalSource::Static(a) => write!(f, "static {a}"),
            ExternalSource::Stun { host, port } if host.contains(':') => {
                write!(f, "stun:[{host}]:{port}")
            }
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
            let message = shorten_message(&p.message);
            if p.line == 0 {
                write!(f, "{}: {message}", self.file)?;
            } else {
                write!(f, "{}:{}:{}: {message}", self.file, p.line, p.column)?;
            }
        }
        Ok(())
    }
}

/// The most characters of a value (or key) a message quotes; a longer one is cut and
/// ends in "…".
pub const MAX_QUOTED: usize = 80;
/// The most characters of one message, whatever it quotes.
pub const MAX_MESSAGE: usize = 1000;

/// Cuts what `s` quotes (between backticks or double quotes) to [`MAX_QUOTED`] characters
/// and the whole to [`MAX_MESSAGE`], each cut marked with "…": a 50 MB value must not be
/// echoed whole into a terminal, a reply or the log.
pub fn shorten_message(s: &str) -> std::borrow::Cow<'_, str> {
    fn cut(out: &mut String, s: &str, max: usize) {
        match s.char_indices().nth(max) {
            Some((i, _)) => {
                out.push_str(&s[..i]);
                out.push('…');
            }
            None => out.push_str(s),
        }
    }
    if s.chars().count() <= MAX_QUOTED {
        return s.into();
    }
    let mut out = String::with_capacity(s.len().min(MAX_MESSAGE + 8));
    let mut rest = s;
    while let Some(i) = rest.find(['`', '"']) {
        let (before, from) = rest.split_at(i);
        let q = &from[..1];
        out.push_str(before);
        out.push_str(q);
        let inner = &from[1..];
        match inner.find(q) {
            Some(j) => {
                cut(&mut out, &inner[..j], MAX_QUOTED);
                out.push_str(q);
                rest = &inner[j + 1..];
            }
            None => {
                cut(&mut out, inner, MAX_QUOTED);
                rest = "";
            }
        }
        if out.len() > 4 * MAX_MESSAGE {
            rest = "";
            break;
        }
    }
    out.push_str(rest);
    let mut short = String::with_capacity(MAX_MESSAGE + 4);
    cut(&mut short, &out, MAX_MESSAGE);
    short.into()
}

impl std::error::Error for ConfigError {}

type Span = std::ops::Range<usize>;

/// 1-based line and column of the start of `span` in `text` (0, 0 for "no position").
fn position(text: &str, span: &Span) -> (usize, usize) {
    if span.start == 0 && span.end == 0 {
        return (0, 0);
    }
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Problems in file order; those without a position last.
fn sort_problems(list: &mut [Problem]) {
    list.sort_by_key(|p| (p.line == 0, p.line, p.column));
}

/// The keys of every table, as the structs above define them (a unit test checks them
/// against serde's own lists): for "did you mean `inside`?" and "it belongs in [nat]".
const SECTIONS: &[(&str, &[&str])] = &[
    (
        "",
        &["interfaces", "nat", "rewrite", "control", "datapath", "log"],
    ),
    (
        "interfaces",
        &[
            "inside",
            "outside",
            "queues",
            "sip_ports",
            "on_failure",
            "attach_mode",
            "steer_fragments",
        ],
    ),
    (
        "nat",
        &[
            "external_ip",
            "external_ip6",
            "allow_private_external",
            "l3",
            "local_nets",
            "rule",
            "flow_table_size",
            "flow_idle_timeout",
        ],
    ),
    ("nat.rule", &["internal", "external", "ports"]),
    ("rewrite", &["record_route", "from_to", "malformed", "leak"]),
    ("control", &["socket", "metrics", "group", "bpffs"]),
    (
        "datapath",
        &[
            "frames",
            "ring_size",
            "batch",
            "busy_poll",
            "busy_poll_idle_us",
            "nice",
            "rt_priority",
            "reassembly_memory",
            "reassembly_timeout_ms",
            "max_fragments",
            "max_datagram",
        ],
    ),
    ("log", &["level"]),
];

/// Where every key's value is in the text, for error positions: a second, best-effort
/// parse into a tree of spans (toml's `Spanned`, spoken to directly so that any value
/// can be wrapped; tables written with dotted keys have no span of their own).
mod spans {
    use std::{fmt, ops::Range};

    use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

    // serde_spanned's (and toml_datetime's) private protocol with toml's deserializer. If
    // a toml upgrade changes it, spans come out `None` (positions degrade to the section
    // header or none) and the unit test `span_tree_finds_values` fails.
    pub(super) const NAME: &str = "$__serde_spanned_private_Spanned";
    pub(super) const START: &str = "$__serde_spanned_private_start";
    pub(super) const END: &str = "$__serde_spanned_private_end";
    pub(super) const VALUE: &str = "$__serde_spanned_private_value";
    const DATETIME: &str = "$__toml_private_datetime";

    #[derive(Debug, Default)]
    pub(super) struct SpanTree {
        pub span: Option<Range<usize>>,
        pub kind: Kind,
    }

    #[derive(Debug, Default)]
    pub(super) enum Kind {
        #[default]
        Leaf,
        Table(Vec<(String, SpanTree)>),
        Array(Vec<SpanTree>),
    }

    impl SpanTree {
        /// The tree of `text`; empty when it is not valid TOML.
        pub fn parse(text: &str) -> SpanTree {
            toml::from_str(text).unwrap_or_default()
        }

        /// The node at `path` (keys; array elements by index).
        pub fn get(&self, path: &[&str]) -> Option<&SpanTree> {
            let Some((first, rest)) = path.split_first() else {
                return Some(self);
            };
            match &self.kind {
                Kind::Table(t) => t.iter().find(|(k, _)| k == first)?.1.get(rest),
                Kind::Array(a) => a.get(first.parse::<usize>().ok()?)?.get(rest),
                Kind::Leaf => None,
            }
        }

        /// The path of the smallest node whose span holds byte `off` (the root: empty).
        pub fn path_at(&self, off: usize) -> Vec<String> {
            let mut best = None;
            self.find(off, &mut Vec::new(), &mut best);
            best.map(|(_, p)| p).unwrap_or_default()
        }

        fn find(
            &self,
            off: usize,
            path: &mut Vec<String>,
            best: &mut Option<(usize, Vec<String>)>,
        ) {
            // (The root's span is empty; it is the default answer.)
            if let Some(s) = self.span.as_ref().filter(|s| !s.is_empty()) {
                let len = s.end - s.start;
                if s.contains(&off) && best.as_ref().is_none_or(|(l, _)| len <= *l) {
                    *best = Some((len, path.clone()));
                }
            }
            match &self.kind {
                Kind::Table(t) => {
                    for (k, n) in t {
                        path.push(k.clone());
                        n.find(off, path, best);
                        path.pop();
                    }
                }
                Kind::Array(a) => {
                    for (i, n) in a.iter().enumerate() {
                        path.push(i.to_string());
                        n.find(off, path, best);
                        path.pop();
                    }
                }
                Kind::Leaf => {}
            }
        }
    }

    struct NodeVisitor;

    impl<'de> Visitor<'de> for NodeVisitor {
        type Value = SpanTree;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any TOML value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<SpanTree, E> {
            Ok(SpanTree::default())
        }
        fn visit_i64<E>(self, _: i64) -> Result<SpanTree, E> {
            Ok(SpanTree::default())
        }
        fn visit_u64<E>(self, _: u64) -> Result<SpanTree, E> {
            Ok(SpanTree::default())
        }
        fn visit_f64<E>(self, _: f64) -> Result<SpanTree, E> {
            Ok(SpanTree::default())
        }
        fn visit_str<E>(self, _: &str) -> Result<SpanTree, E> {
            Ok(SpanTree::default())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<SpanTree, A::Error> {
            let mut v = Vec::new();
            while let Some(n) = a.next_element()? {
                v.push(n);
            }
            Ok(SpanTree {
                span: None,
                kind: Kind::Array(v),
            })
        }
        fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<SpanTree, A::Error> {
            let Some(first) = a.next_key::<String>()? else {
                return Ok(SpanTree {
                    span: None,
                    kind: Kind::Table(Vec::new()),
                });
            };
            if first == START {
                let start: usize = a.next_value()?;
                let _ = a.next_key::<String>()?;
                let end: usize = a.next_value()?;
                let _ = a.next_key::<String>()?;
                let Bare(mut n) = a.next_value()?;
                n.span = Some(start..end);
                return Ok(n);
            }
            if first == DATETIME {
                let _: IgnoredAny = a.next_value()?;
                return Ok(SpanTree::default());
            }
            let mut t = vec![(first, a.next_value()?)];
            while let Some(k) = a.next_key::<String>()? {
                let n = a.next_value()?;
                t.push((k, n));
            }
            Ok(SpanTree {
                span: None,
                kind: Kind::Table(t),
            })
        }
    }

    /// A node, asking toml for its span.
    impl<'de> Deserialize<'de> for SpanTree {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_struct(NAME, &[START, END, VALUE], NodeVisitor)
        }
    }

    /// The value inside a span (asking again would wrap it again, forever).
    struct Bare(SpanTree);

    impl<'de> Deserialize<'de> for Bare {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(NodeVisitor).map(Bare)
        }
    }
}

use spans::{Kind, SpanTree};

/// `nat.rule.ports` from `["nat", "rule", "0", "ports", "5060"]`: keys without array
/// indices (and without port-map keys, which are numbers too).
fn dotted(path: &[String]) -> String {
    path.iter()
        .filter(|s| s.parse::<usize>().is_err())
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(".")
}

/// How a table is written: `[interfaces]`, `a [[nat.rule]] section`, `the top level`.
fn table_name(dotted: &str) -> String {
    match dotted {
        "" => "the top level".into(),
        "nat.rule" => "[[nat.rule]]".into(),
        s => format!("[{s}]"),
    }
}

/// The names in backticks in `s` (serde's "expected one of `a`, `b`").
fn backticked(s: &str) -> Vec<&str> {
    s.split('`').skip(1).step_by(2).collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The valid name `key` is most likely a misspelling of.
fn closest<'a>(key: &str, valid: &[&'a str]) -> Option<&'a str> {
    let k = key.to_ascii_lowercase();
    valid
        .iter()
        .map(|v| (edit_distance(&k, v), *v))
        .filter(|(d, v)| {
            *d <= (k.len() / 3).max(1) || (k.len() >= 4 && (v.starts_with(&k) || k.starts_with(v)))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
}

/// serde's names for what it expected, as a user would write it.
fn wanted(e: &str) -> String {
    match e {
        "a string" => "a quoted string".into(),
        "path string" => "a quoted path".into(),
        "a boolean" => "true or false".into(),
        "u16" => "a port number from 1 to 65535".into(),
        "u32" => "a whole number from 0 to 4294967295".into(),
        "i32" => "a whole number".into(),
        "a sequence" => "an array ([...])".into(),
        "a map" | "a table of port numbers" => "an inline table, e.g. { 5060 = 15060 }".into(),
        s if s.starts_with("struct ") => "a [section] table".into(),
        s => s.into(),
    }
}

/// serde's names for what it found, as a user would read it.
fn found(u: &str) -> String {
    let quoted = |s: &str| s.split('`').nth(1).map(str::to_string);
    match u.split_once(' ').map_or(u, |(w, _)| w) {
        "integer" => quoted(u).map_or(u.into(), |v| format!("the number {v}")),
        "floating" => quoted(u).map_or(u.into(), |v| format!("the number {v}")),
        "boolean" => quoted(u).unwrap_or_else(|| u.into()),
        "string" => format!("the string {}", u.trim_start_matches("string ")),
        "map" => "a table".into(),
        "sequence" => "an array".into(),
        _ => u.into(),
    }
}

/// One sentence (cause and fix, naming the key) for a toml syntax or serde error.
fn explain(text: &str, e: &toml::de::Error) -> String {
    let raw = e.message().trim();
    if text.parse::<toml::Table>().is_err() {
        let joined = raw
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(", ");
        let hint = if raw.contains("duplicate key") {
            "; each key, and each [section], may appear only once"
        } else if raw.starts_with("invalid string") {
            "; put text in double quotes, e.g. inside = \"eth1\""
        } else if raw.starts_with("invalid basic string")
            || raw.starts_with("invalid literal string")
        {
            "; end the string with its quote on the same line"
        } else if raw.starts_with("invalid escape sequence") {
            "; write a backslash as \\\\, or use single quotes"
        } else {
            ""
        };
        return format!("TOML syntax error: {joined}{hint}");
    }
    let tree = SpanTree::parse(text);
    let mut path = e.span().map(|s| tree.path_at(s.start)).unwrap_or_default();
    // `[[interfaces]]`: serde reads a struct from an array too, so the error would be
    // about its first field.
    if let Some(section) = path.first().filter(|s| {
        SECTIONS[0].1.contains(&s.as_str())
            && matches!(
                tree.get(&[s.as_str()]).map(|n| &n.kind),
                Some(Kind::Array(_))
            )
    }) {
        return format!(
            "[{section}] must be a single table, not an array of tables: write [{section}] (single brackets), once"
        );
    }
    if let Some(rest) = raw.strip_prefix("unknown field `") {
        let (key, tail) = rest.split_once('`').unwrap_or((rest, ""));
        let valid = backticked(tail);
        // The table is the one with exactly these keys (its position may be unknown:
        // dotted keys); else where the error points.
        let here = match SECTIONS.iter().find(|(_, keys)| **keys == valid[..]) {
            Some((s, _)) => s.to_string(),
            None => {
                if path.last().map(String::as_str) == Some(key) {
                    path.pop();
                }
                dotted(&path)
            }
        };
        return unknown_key(&tree, &here, key, &valid);
    }
    let key = dotted(&path);
    if let Some(rest) = raw.strip_prefix("unknown variant `") {
        let (value, tail) = rest.split_once('`').unwrap_or((rest, ""));
        let expected = tail.split_once("expected ").map_or("", |(_, x)| x);
        return format!("{key} cannot be `{value}`: use {expected}");
    }
    if let Some(rest) = raw.strip_prefix("invalid type: ") {
        let (got, want) = rest.rsplit_once(", expected ").unwrap_or((rest, ""));
        if key == "nat.rule" {
            return format!(
                "nat.rule must be an array of tables, not {}: write each rule as a [[nat.rule]] section (double brackets)",
                found(got)
            );
        }
        return format!("{key} must be {}, not {}", wanted(want), found(got));
    }
    if let Some(rest) = raw.strip_prefix("invalid value: ") {
        let (got, want) = rest.rsplit_once(", expected ").unwrap_or((rest, ""));
        let value = got.split('`').nth(1).unwrap_or(got);
        let want = if key == "interfaces.queues" {
            format!("a queue number from 0 to {}", nat_common::MAX_QUEUES - 1)
        } else {
            wanted(want)
        };
        return format!("{key} value {value} is out of range: use {want}");
    }
    if let Some(rest) = raw.strip_prefix("missing field `") {
        let field = rest.trim_end_matches('`');
        if key == "nat.rule" && field == "internal" {
            return "this [[nat.rule]] has no `internal`: add the addresses it rewrites, e.g. internal = \"10.0.0.0/24\"".into();
        }
        return format!("{} has no `{field}`: add it", table_name(&key));
    }
    if key.is_empty() || raw.starts_with(&key) {
        raw.to_string()
    } else {
        format!("{key}: {raw}")
    }
}

/// An unknown key `key` in table `here` (dotted; "" for the top level), whose valid keys
/// serde listed as `valid`.
fn unknown_key(tree: &SpanTree, here: &str, key: &str, valid: &[&str]) -> String {
    let close = closest(key, valid);
    // The table where the same key is valid.
    let home = SECTIONS
        .iter()
        .find(|(s, keys)| *s != here && keys.contains(&key))
        .map(|(s, _)| *s);
    if here.is_empty() {
        let is_table = matches!(tree.get(&[key]).map(|n| &n.kind), Some(Kind::Table(_)));
        if !is_table {
            return match home {
                Some("nat.rule") => {
                    format!("`{key}` is outside any section: put it in a [[nat.rule]] section")
                }
                Some(s) => format!("`{key}` is outside any section: put it under [{s}]"),
                None => format!("unknown key `{key}` outside any section: remove it"),
            };
        }
        let sections = valid
            .iter()
            .map(|s| format!("[{s}]"))
            .collect::<Vec<_>>()
            .join(", ");
        return match close {
            Some(c) => format!("unknown section [{key}]: did you mean [{c}]?"),
            None => format!("unknown section [{key}]: remove it (the sections are {sections})"),
        };
    }
    let at = table_name(here);
    let belongs = home.map(|s| match s {
        "" => format!("[{key}] is a section of its own"),
        "nat" if key == "rule" => "rules are [[nat.rule]] sections".into(),
        "nat.rule" => "it belongs in a [[nat.rule]] section".into(),
        s => format!("it belongs in [{s}]"),
    });
    match (close, belongs) {
        (Some(c), Some(b)) => match b.strip_prefix("it ") {
            Some(rest) => {
                format!("unknown key `{key}` in {at}: did you mean `{c}`? (`{key}` {rest})")
            }
            None => format!("unknown key `{key}` in {at}: did you mean `{c}`? ({b})"),
        },
        (Some(c), None) => format!("unknown key `{key}` in {at}: did you mean `{c}`?"),
        (None, Some(b)) if b.starts_with("it ") => {
            format!("unknown key `{key}` in {at}: {b}, move it there")
        }
        (None, Some(b)) => format!("unknown key `{key}` in {at}: {b}"),
        (None, None) => {
            format!(
                "unknown key `{key}` in {at}: remove it (valid keys: {})",
                valid.join(", ")
            )
        }
    }
}

/// Why `a` cannot be an external address (`None`: it can).
/// Why static external address `a` cannot be used (`None`: it can): the one check every
/// external-address source goes through ([`check_external`]), then, for a public address,
/// the configured local networks (traffic to an address inside them counts as internal).
/// The text follows the key and names the fix.
fn not_external(a: IpAddr, allow_private: bool, local: &[Net], fix: &str) -> Option<String> {
    match check_external(a, allow_private) {
        Err(r) => Some(r.explain(fix)),
        Ok(None) if local.iter().any(|n| n.contains(canonical(a))) => Some(format!(
            "{a} is inside nat.local_nets, so traffic to it would count as internal: {fix}, or remove its network from nat.local_nets"
        )),
        Ok(_) => None,
    }
}

/// Does the group exist (getgrnam_r)?
fn group_exists(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    loop {
        // SAFETY: plain C struct, filled in by getgrnam_r.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::group = std::ptr::null_mut();
        // SAFETY: valid C string, buffer and out-pointers that live across the call.
        let r = unsafe {
            libc::getgrnam_r(c.as_ptr(), &mut grp, buf.as_mut_ptr(), buf.len(), &mut out)
        };
        if r == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        return r == 0 && !out.is_null();
    }
}

/// Collects problems with positions.
struct Problems<'a> {
    text: &'a str,
    tree: SpanTree,
    list: Vec<Problem>,
}

impl<'a> Problems<'a> {
    fn new(text: &'a str) -> Self {
        Problems {
            text,
            tree: SpanTree::parse(text),
            list: Vec::new(),
        }
    }

    fn add(&mut self, span: &Span, message: String) {
        let (line, column) = position(self.text, span);
        self.list.push(Problem {
            line,
            column,
            message,
        });
    }

    /// The value at `path`; if it is not in the file, the nearest enclosing table that is
    /// (its header); else no position.
    fn at(&self, path: &[&str]) -> Span {
        (1..=path.len())
            .rev()
            .find_map(|n| {
                self.tree
                    .get(&path[..n])?
                    .span
                    .clone()
                    .filter(|s| *s != (0..0))
            })
            .unwrap_or(0..0)
    }

    /// `span` (of a `Spanned` field) when it has one, else [`Problems::at`] `path`.
    fn at_or(&self, span: &Span, path: &[&str]) -> Span {
        if *span == (0..0) {
            self.at(path)
        } else {
            span.clone()
        }
    }

    /// The position of a port-map key: in the text before its value.
    fn key_at(&self, path: &[&str], key: &str) -> Span {
        let v = self.at(path);
        match self.text[..v.start.min(self.text.len())].rfind(key) {
            Some(k) if v != (0..0) => k..k + key.len(),
            _ => v,
        }
    }
}

impl Config {
    /// Reads and parses a config file (syntax and types; see [`Config::validate`] for more).
    pub fn load(path: &Path) -> Result<(Config, String), ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            use std::io::ErrorKind as K;
            let message = match e.kind() {
                K::NotFound => format!(
                    "the config file does not exist: check the path (the default is {DEFAULT_PATH})"
                ),
                K::PermissionDenied => {
                    "cannot read the config file: permission denied; run as root or make it readable".into()
                }
                K::IsADirectory => "is a directory, not a config file: give the path of the .toml file".into(),
                K::InvalidData => "the config file is not UTF-8 text: save it as UTF-8".into(),
                _ => format!("cannot read the config file: {e}"),
            };
            ConfigError {
                file: file.clone(),
                problems: vec![Problem {
                    line: 0,
                    column: 0,
                    message,
                }],
            }
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
                message: explain(text, &e),
            }]
        })
    }

    /// Semantic checks that need no system access. `text` is the file the config came
    /// from (for positions). The problems are in file order.
    pub fn validate(&self, text: &str) -> Vec<Problem> {
        let mut p = Problems::new(text);
        let i = &self.interfaces;
        for (key, v, what) in [
            (
                "inside",
                &i.inside,
                "the interface facing the private network, e.g. inside = \"eth1\"",
            ),
            (
                "outside",
                &i.outside,
                "the interface facing the carrier or the internet, e.g. outside = \"eth0\"",
            ),
        ] {
            if v.get_ref().trim().is_empty() {
                let s = p.at_or(&v.span(), &["interfaces", key]);
                p.add(&s, format!("interfaces.{key} is not set: name {what}"));
            }
        }
        if !i.inside.get_ref().trim().is_empty() && i.inside.get_ref() == i.outside.get_ref() {
            p.add(
                &i.outside.span(),
                format!(
                    "interfaces.inside and interfaces.outside are both `{}`: name two different interfaces, one on each side of the NAT",
                    i.outside.get_ref()
                ),
            );
        }
        let ports = i.sip_ports.get_ref();
        let ports_span = p.at_or(&i.sip_ports.span(), &["interfaces", "sip_ports"]);
        if ports.is_empty() {
            p.add(
                &ports_span,
                "interfaces.sip_ports is empty: list the UDP ports that carry SIP, e.g. sip_ports = [5060]".into(),
            );
        } else if ports.len() > nat_common::MAX_SIP_PORTS as usize {
            p.add(
                &ports_span,
                format!(
                    "interfaces.sip_ports lists {} ports but at most {} are supported: remove {}",
                    ports.len(),
                    nat_common::MAX_SIP_PORTS,
                    ports.len() - nat_common::MAX_SIP_PORTS as usize
                ),
            );
        }
        for (k, _) in ports.iter().enumerate().filter(|(_, &port)| port == 0) {
            let s = p.at(&["interfaces", "sip_ports", &k.to_string()]);
            p.add(
                &s,
                "interfaces.sip_ports contains 0, which is not a port: use port numbers from 1 to 65535".into(),
            );
        }
        if let Queues::List(l) = &i.queues {
            for (k, &q) in l.iter().enumerate() {
                let s = p.at(&["interfaces", "queues", &k.to_string()]);
                if q >= nat_common::MAX_QUEUES {
                    p.add(
                        &s,
                        format!(
                            "interfaces.queues contains queue {q}, but queue numbers must be below {}: list the NIC's RX queues (see `ethtool -l`)",
                            nat_common::MAX_QUEUES
                        ),
                    );
                } else if l[..k].contains(&q) {
                    p.add(
                        &s,
                        format!("interfaces.queues lists queue {q} twice: list each queue once"),
                    );
                }
            }
        }

        let mut local = Vec::new();
        for ln in &self.nat.local_nets {
            match Net::parse(ln.get_ref()) {
                Some(n) => local.push(n),
                None => p.add(
                    &ln.span(),
                    format!(
                        "nat.local_nets entry `{}` is not a network: write ADDRESS/PREFIX, e.g. \"10.0.0.0/8\"",
                        ln.get_ref()
                    ),
                ),
            }
        }
        for (key, e, want_v6) in [
            ("external_ip", &self.nat.external_ip, false),
            ("external_ip6", &self.nat.external_ip6, true),
        ] {
            let s = p.at_or(&e.span(), &["nat", key]);
            match ExternalSource::parse(e.get_ref()) {
                Err(m) => p.add(&s, format!("nat.{key} {m}")),
                Ok(ExternalSource::Static(a)) if a.is_ipv6() != want_v6 => p.add(
                    &s,
                    if want_v6 {
                        format!("nat.external_ip6 must be an IPv6 address, not {a}: put IPv4 addresses in nat.external_ip")
                    } else {
                        format!("nat.external_ip must be an IPv4 address, not {a}: put IPv6 addresses in nat.external_ip6")
                    },
                ),
                Ok(ExternalSource::Static(a)) => {
                    let allow = self.nat.allow_private_external;
                    let fix = "give the public address that peers see";
                    if let Some(m) = not_external(a, allow, &local, fix) {
                        p.add(&s, format!("nat.{key} {m}"));
                    }
                }
                Ok(_) => {}
            }
        }
        let no_v4 = self.nat.external_ip.get_ref().trim().is_empty();
        let no_v6 = self.nat.external_ip6.get_ref().trim().is_empty();
        let any_rule_external = self.nat.rule.iter().any(|r| r.external.is_some());
        if no_v4 && no_v6 && !any_rule_external {
            let s = p.at(&["nat"]);
            p.add(
                &s,
                "nat.external_ip is not set: give the public address (e.g. external_ip = \"203.0.113.10\"), stun:HOST:PORT or interface:NAME".into(),
            );
        }
        if self.nat.rule.is_empty() {
            let s = p.at(&["nat"]);
            p.add(
                &s,
                "there is no [[nat.rule]], so nothing would be rewritten: add one, e.g. [[nat.rule]] with internal = \"10.0.0.0/24\"".into(),
            );
        }
        let mut nets: Vec<(Net, Span)> = Vec::new();
        for (k, r) in self.nat.rule.iter().enumerate() {
            let k = k.to_string();
            let internal_span = p.at_or(&r.internal.span(), &["nat", "rule", &k, "internal"]);
            let Some(net) = Net::parse(r.internal.get_ref()) else {
                p.add(
                    &internal_span,
                    format!(
                        "nat.rule.internal `{}` is not a network or an address: write e.g. \"10.0.0.0/24\" or \"10.0.0.5\"",
                        r.internal.get_ref()
                    ),
                );
                continue;
            };
            if let Some((other, at)) = nets.iter().find(|(n, _)| n.overlaps(&net)) {
                p.add(
                    &internal_span,
                    format!(
                        "nat.rule.internal {net} overlaps the rule for {other} on line {}: an address would match both; make the rules disjoint",
                        position(text, at).0
                    ),
                );
            }
            if !local.iter().any(|l| net.within(l)) {
                p.add(
                    &internal_span,
                    format!(
                        "nat.rule.internal {net} is not inside nat.local_nets, so public addresses would be rewritten: use a private network, or add it to nat.local_nets"
                    ),
                );
            }
            let v4 = matches!(net, Net::V4 { .. });
            match &r.external {
                Some(e) => {
                    let s = p.at_or(&e.span(), &["nat", "rule", &k, "external"]);
                    match e.get_ref().parse::<IpAddr>() {
                        Err(_) => p.add(
                            &s,
                            format!(
                                "nat.rule.external `{}` is not an IP address: a rule's external address must be written out, e.g. \"203.0.113.11\"",
                                e.get_ref()
                            ),
                        ),
                        Ok(a) if a.is_ipv4() != v4 => p.add(
                            &s,
                            format!(
                                "nat.rule.external {a} is {} but the rule's internal {net} is {}: use an external address of the same family",
                                if v4 { "IPv6" } else { "IPv4" },
                                if v4 { "IPv4" } else { "IPv6" },
                            ),
                        ),
                        Ok(a) => {
                            let allow = self.nat.allow_private_external;
                            let fix = "give the public address these hosts appear as";
                            if let Some(m) = not_external(a, allow, &local, fix) {
                                p.add(&s, format!("nat.rule.external {m}"));
                            }
                        }
                    }
                }
                None if (v4 && no_v4 || !v4 && no_v6)
                    && !(no_v4 && no_v6 && !any_rule_external) =>
                {
                    let key = if v4 { "external_ip" } else { "external_ip6" };
                    p.add(
                        &internal_span,
                        format!("nat.rule.internal {net} has no external address: set nat.{key}, or `external` in this rule"),
                    );
                }
                None => {}
            }
            let map = r.ports.get_ref();
            let ports_path = ["nat", "rule", &k, "ports"];
            if map.len() > crate::nat::rules::MAX_PORT_MAP {
                let s = p.at_or(&r.ports.span(), &ports_path);
                p.add(
                    &s,
                    format!(
                        "nat.rule.ports has {} entries but at most {} are supported: remove {}",
                        map.len(),
                        crate::nat::rules::MAX_PORT_MAP,
                        map.len() - crate::nat::rules::MAX_PORT_MAP
                    ),
                );
            }
            let mut seen: Vec<(u16, &str)> = Vec::new();
            for (key, &ext) in map {
                let entry = ["nat", "rule", &k, "ports", key.as_str()];
                if key.parse::<u16>().map_or(true, |v| v == 0) {
                    let s = p.key_at(&entry, key);
                    p.add(
                        &s,
                        format!(
                            "nat.rule.ports key `{key}` is not a port number: map internal to external ports, e.g. ports = {{ 5060 = 15060 }}"
                        ),
                    );
                }
                if ext == 0 {
                    let s = p.at(&entry);
                    p.add(&s, format!("nat.rule.ports maps {key} to 0, which is not a port: use a port number from 1 to 65535"));
                } else if let Some((_, other)) = seen.iter().find(|(e, _)| *e == ext) {
                    let s = p.at(&entry);
                    p.add(
                        &s,
                        format!(
                            "nat.rule.ports maps both {other} and {key} to {ext}, so replies to {ext} could not be mapped back: give each its own external port"
                        ),
                    );
                }
                seen.push((ext, key));
            }
            // The data path translates addresses only: under snat the UDP ports stay,
            // so the SIP text would announce ports the packets do not come from.
            if let (L3Cfg::Snat, Some((int, ext))) = (self.nat.l3, map.iter().next()) {
                let s = p.at_or(&r.ports.span(), &ports_path);
                p.add(
                    &s,
                    format!(
                        "nat.rule.ports maps ports, but with nat.l3 = \"snat\" sipnat translates addresses only, never UDP ports: packets would leave from port {int} while the SIP and SDP announce {ext}; use l3 = \"keep\" behind an upstream NAT that forwards the external ports to the internal ones, or remove the port map"
                    ),
                );
            }
            nets.push((net, internal_span));
        }
        let n = &self.nat;
        if n.flow_table_size == 0 || n.flow_table_size > 1 << 24 {
            let s = p.at(&["nat", "flow_table_size"]);
            p.add(
                &s,
                format!(
                    "nat.flow_table_size {} is out of range: use 1 to 16777216 (flows)",
                    n.flow_table_size
                ),
            );
        }
        if n.flow_idle_timeout == 0 {
            let s = p.at(&["nat", "flow_idle_timeout"]);
            p.add(
                &s,
                "nat.flow_idle_timeout is 0: use at least 1 (seconds), e.g. 300".into(),
            );
        }

        let c = &self.control;
        let s = p.at(&["control", "socket"]);
        if c.socket.as_os_str().is_empty() {
            p.add(
                &s,
                format!("control.socket is empty: give the path of the control socket, e.g. \"{DEFAULT_SOCKET}\""),
            );
        } else if !c.socket.is_absolute() {
            p.add(
                &s,
                format!(
                    "control.socket `{}` is a relative path: give an absolute path, e.g. \"{DEFAULT_SOCKET}\"",
                    c.socket.display()
                ),
            );
        } else if c.socket.as_os_str().len() > 107 {
            p.add(
                &s,
                format!(
                    "control.socket is {} bytes long but a Unix socket path may have at most 107: use a shorter path",
                    c.socket.as_os_str().len()
                ),
            );
        }
        let m = c.metrics.get_ref();
        if !m.is_empty() && m.parse::<SocketAddr>().is_err() {
            let s = p.at_or(&c.metrics.span(), &["control", "metrics"]);
            p.add(
                &s,
                format!("control.metrics `{m}` is not ADDRESS:PORT: write e.g. \"127.0.0.1:9560\", or \"\" to turn the endpoint off"),
            );
        }
        if c.group.as_deref().is_some_and(|g| g.trim().is_empty()) {
            let s = p.at(&["control", "group"]);
            p.add(
                &s,
                "control.group is empty: name a group, or remove the key".into(),
            );
        }

        let d = &self.datapath;
        let ring_ok = d.ring_size.is_power_of_two() && (64..=16384).contains(&d.ring_size);
        if !ring_ok {
            let s = p.at(&["datapath", "ring_size"]);
            p.add(
                &s,
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
        if ring_ok && (d.batch == 0 || d.batch > d.ring_size) {
            let s = p.at(&["datapath", "batch"]);
            p.add(
                &s,
                format!(
                    "datapath.batch {} is out of range: use 1 to ring_size ({})",
                    d.batch, d.ring_size
                ),
            );
        }
        if !(1280..=65535).contains(&d.max_datagram) {
            let s = p.at(&["datapath", "max_datagram"]);
            p.add(
                &s,
                format!(
                    "datapath.max_datagram {} is out of range: use 1280 to 65535 (bytes; 65535 takes any UDP datagram)",
                    d.max_datagram
                ),
            );
        }
        let datagram = (d.max_datagram as usize).clamp(1280, 65535);
        if (d.reassembly_memory as usize) < datagram {
            let s = p.at(&["datapath", "reassembly_memory"]);
            p.add(
                &s,
                format!(
                    "datapath.reassembly_memory {} is less than one datagram, so no fragmented message could be reassembled: use at least {datagram} (bytes)",
                    d.reassembly_memory
                ),
            );
        }
        if d.reassembly_timeout_ms == 0 {
            let s = p.at(&["datapath", "reassembly_timeout_ms"]);
            p.add(
                &s,
                "datapath.reassembly_timeout_ms is 0, so every fragmented message would be dropped: use e.g. 2000 (milliseconds)".into(),
            );
        }
        let max_frags = datagram / 8;
        if d.max_fragments < 2 || d.max_fragments as usize > max_frags {
            let s = p.at(&["datapath", "max_fragments"]);
            p.add(
                &s,
                format!(
                    "datapath.max_fragments {} is out of range: use 2 to {max_frags} (a {datagram}-byte datagram has at most {max_frags} fragments)",
                    d.max_fragments
                ),
            );
        }
        if d.busy_poll_idle_us > 1_000_000 {
            let s = p.at(&["datapath", "busy_poll_idle_us"]);
            p.add(
                &s,
                format!(
                    "datapath.busy_poll_idle_us {} is more than a second: use 0 (never sleep) to 1000000 (microseconds), e.g. 1000",
                    d.busy_poll_idle_us
                ),
            );
        }
        if !(-20..=19).contains(&d.nice) {
            let s = p.at(&["datapath", "nice"]);
            p.add(
                &s,
                format!(
                    "datapath.nice {} is out of range: use -20 (highest priority) to 19",
                    d.nice
                ),
            );
        }
        if d.rt_priority > 99 {
            let s = p.at(&["datapath", "rt_priority"]);
            p.add(
                &s,
                format!(
                    "datapath.rt_priority {} is out of range: use 1 to 99 (SCHED_FIFO priority), or 0 for normal scheduling",
                    d.rt_priority
                ),
            );
        }
        if !["error", "warn", "info", "debug", "trace"].contains(&self.log.level.as_str()) {
            let s = p.at(&["log", "level"]);
            p.add(
                &s,
                format!(
                    "log.level `{}` is not a level: use error, warn, info, debug or trace",
                    self.log.level
                ),
            );
        }
        sort_problems(&mut p.list);
        p.list
    }

    /// Checks against this host: the interfaces exist (in this network namespace), they
    /// have the queues `interfaces.queues` needs ([`Queues::resolve`]), and the control
    /// group exists.
    pub fn check_system(&self, text: &str) -> Vec<Problem> {
        let mut p = Problems::new(text);
        let mut present = 0;
        for (key, i) in [
            ("inside", &self.interfaces.inside),
            ("outside", &self.interfaces.outside),
        ] {
            if !i.get_ref().is_empty() && crate::sys::if_index(i.get_ref()).is_some() {
                present += 1;
            }
            if !i.get_ref().is_empty() && crate::sys::if_index(i.get_ref()).is_none() {
                let s = p.at_or(&i.span(), &["interfaces", key]);
                p.add(
                    &s,
                    format!(
                        "interfaces.{key} `{}` is not an interface on this host: check the name with `ip link`",
                        i.get_ref()
                    ),
                );
            }
        }
        if present == 2 {
            if let Err(problems) = self.queues_on_this_host() {
                for q in problems {
                    let s = match q.index {
                        Some(k) => p.at(&["interfaces", "queues", &k.to_string()]),
                        None => p.at(&["interfaces", "queues"]),
                    };
                    p.add(&s, q.message);
                }
            }
        }
        if let Some(g) = self
            .control
            .group
            .as_deref()
            .filter(|g| !g.trim().is_empty())
        {
            if !group_exists(g) {
                let s = p.at(&["control", "group"]);
                p.add(
                    &s,
                    format!("control.group `{g}` does not exist on this host: create it (groupadd {g}) or remove the key"),
                );
            }
        }
        p.list
    }

    /// The RX queues to serve on this host: [`Queues::resolve`] with the interfaces' RX
    /// queue counts (sysfs).
    pub fn queues_on_this_host(&self) -> Result<Vec<u32>, Vec<QueueProblem>> {
        let inside = self.interfaces.inside.get_ref();
        let outside = self.interfaces.outside.get_ref();
        self.interfaces.queues.resolve(
            (inside, crate::sys::rx_queues(inside)),
            (outside, crate::sys::rx_queues(outside)),
        )
    }

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
            leak: match self.rewrite.leak {
                LeakCfg::Drop => LeakPolicy::Drop,
                LeakCfg::Forward => LeakPolicy::Forward,
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
        sort_problems(&mut problems);
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

impl Datapath {
    /// The reassembler's limits from this section.
    pub fn reasm_limits(&self) -> crate::datapath::reasm::ReasmLimits {
        crate::datapath::reasm::ReasmLimits {
            memory: self.reassembly_memory as usize,
            timeout_ms: self.reassembly_timeout_ms,
            max_fragments: self.max_fragments,
            max_datagram: self.max_datagram as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bad value of megabytes (the attack used 50 MB) used to be echoed whole in the
    /// error, to the terminal, the reload reply and the log.
    #[test]
    fn a_huge_bad_value_is_cut_in_the_message() {
        let big = "x".repeat(5 << 20);
        let text =
            format!("[interfaces]\ninside = \"a\"\noutside = \"b\"\non_failure = \"{big}\"\n");
        let problems = Config::parse(&text).unwrap_err();
        let shown = ConfigError {
            file: "big.toml".into(),
            problems,
        }
        .to_string();
        assert_eq!(
            shown,
            format!(
                "big.toml:4:14: interfaces.on_failure cannot be `{}…`: use `pass` or `drop`",
                "x".repeat(MAX_QUOTED)
            )
        );
        // Unquoted, or an unterminated quote: the message as a whole is bounded.
        for long in ["y ".repeat(5000), format!("value `{}", "z".repeat(5000))] {
            let m = shorten_message(&long);
            assert!(
                m.chars().count() <= MAX_MESSAGE + 1 && m.ends_with('…'),
                "{m}"
            );
        }
        assert_eq!(shorten_message("short `value`"), "short `value`");
    }

    const GOOD: &str = r#"
[interfaces]
inside = "eth1"
outside = "eth0"
sip_ports = [5060, 5080]

[nat]
external_ip = "203.0.113.10"
l3 = "keep"

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

    /// A port map under `l3 = "snat"` is refused: the UDP ports are never translated, so
    /// the SIP text would name a port the packets do not come from.
    #[test]
    fn port_map_with_snat_is_refused() {
        let text = GOOD.replace("l3 = \"keep\"\n", "");
        let c = Config::parse(&text).unwrap();
        let p = c.validate(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].message
                .starts_with("nat.rule.ports maps ports, but with nat.l3 = \"snat\"")
                && p[0]
                    .message
                    .contains("port 5060 while the SIP and SDP announce 15060")
                && p[0].message.contains("l3 = \"keep\"")
                && p[0].message.contains("remove the port map"),
            "{p:?}"
        );
        let line = text.lines().position(|l| l.starts_with("ports")).unwrap() + 1;
        assert_eq!(p[0].line, line);
        // Explicit snat: the same; keep: fine (GOOD itself).
        let explicit = GOOD.replace("l3 = \"keep\"", "l3 = \"snat\"");
        let c = Config::parse(&explicit).unwrap();
        assert_eq!(c.validate(&explicit).len(), 1);
        // No port map: snat is fine.
        let plain = text.replace("ports = { 5060 = 15060 }\n", "");
        let c = Config::parse(&plain).unwrap();
        assert_eq!(c.validate(&plain), vec![]);
    }

    /// Static external addresses go through `check_external`: loopback, unspecified,
    /// multicast, link-local never; private and shared only with allow_private_external.
    #[test]
    fn static_external_addresses_are_checked() {
        let with = |ext: &str, allow: bool| {
            let text = GOOD.replace("203.0.113.10", ext).replace(
                "l3 = \"keep\"",
                &format!("l3 = \"keep\"\nallow_private_external = {allow}"),
            );
            let c = Config::parse(&text).unwrap();
            c.validate(&text)
                .into_iter()
                .map(|p| p.message)
                .collect::<Vec<_>>()
        };
        for never in ["127.0.0.1", "0.0.0.0", "224.0.0.1", "169.254.0.1"] {
            for allow in [false, true] {
                let p = with(never, allow);
                assert_eq!(p.len(), 1, "{never}: {p:?}");
                assert!(
                    p[0].starts_with(&format!("nat.external_ip {never} is ")),
                    "{p:?}"
                );
                assert!(!p[0].contains("allow_private_external"), "{p:?}");
            }
        }
        for private in ["10.9.9.9", "172.16.0.1", "192.168.1.1", "100.64.0.1"] {
            let p = with(private, false);
            assert_eq!(p.len(), 1, "{private}: {p:?}");
            assert!(
                p[0].contains("nat.allow_private_external = true"),
                "{private}: {p:?}"
            );
            assert_eq!(with(private, true), Vec::<String>::new(), "{private}");
        }
        assert_eq!(with("198.51.100.1", false), Vec::<String>::new());
        // The rule's own external address and IPv6 likewise.
        let text = GOOD.replace(
            "internal = \"10.0.0.0/24\"",
            "internal = \"10.0.0.0/24\"\nexternal = \"10.9.9.9\"",
        ) + "\n[[nat.rule]]\ninternal = \"fd00::/64\"\nexternal = \"fe80::1\"\n";
        let c = Config::parse(&text).unwrap();
        let p: Vec<String> = c.validate(&text).into_iter().map(|p| p.message).collect();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("nat.rule.external 10.9.9.9 is a private address"));
        assert!(p[1].starts_with("nat.rule.external fe80::1 is a link-local address"));
        // A public address inside a configured local network is still refused.
        let text = GOOD.replace(
            "l3 = \"keep\"",
            "l3 = \"keep\"\nlocal_nets = [\"10.0.0.0/8\", \"203.0.113.0/24\"]",
        );
        let c = Config::parse(&text).unwrap();
        let p = c.validate(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].message.contains("inside nat.local_nets"), "{p:?}");
        // The daemon warns about the private ones it accepted.
        let text = GOOD.replace("203.0.113.10", "100.64.0.1");
        let c = Config::parse(&text).unwrap();
        assert_eq!(
            c.private_externals(),
            vec![(
                "nat.external_ip",
                "100.64.0.1".parse().unwrap(),
                "a shared address (100.64.0.0/10, carrier-grade NAT)"
            )]
        );
    }

    /// `"all"` needs the same RX queue count on both interfaces; a listed queue must
    /// exist on both (a worker serves one queue number on both sides).
    #[test]
    fn queues_resolve_against_the_interfaces() {
        assert_eq!(
            Queues::All.resolve(("in0", 4), ("out0", 4)),
            Ok(vec![0, 1, 2, 3])
        );
        assert_eq!(Queues::All.resolve(("in0", 1), ("out0", 1)), Ok(vec![0]));
        for (a, b) in [(2, 4), (4, 2)] {
            let e = Queues::All.resolve(("in0", a), ("out0", b)).unwrap_err();
            assert_eq!(e.len(), 1);
            assert_eq!(e[0].index, None);
            let m = &e[0].message;
            assert!(
                m.starts_with(&format!(
                    "interfaces.queues is \"all\" but in0 has {a} RX queue(s) and out0 has {b}: "
                )),
                "{m}"
            );
            let big = if a > b { "in0" } else { "out0" };
            assert!(m.contains(&format!("ethtool -L {big} combined 2")), "{m}");
            assert!(m.contains("list the queues to serve"), "{m}");
        }
        let l = Queues::List(vec![1, 0]);
        assert_eq!(l.resolve(("in0", 2), ("out0", 4)), Ok(vec![1, 0]));
        let e = Queues::List(vec![0, 3, 1, 2])
            .resolve(("in0", 4), ("out0", 2))
            .unwrap_err();
        assert_eq!(
            e.iter().map(|p| p.index).collect::<Vec<_>>(),
            [Some(1), Some(3)]
        );
        assert_eq!(
            e[0].message,
            "interfaces.queues contains queue 3, but out0 has only 2 RX queue(s) (0 to 1): list queues that both interfaces have (see `ethtool -l out0`), or add queues (ethtool -L out0 combined 4)"
        );
        let e = Queues::List(vec![1])
            .resolve(("in0", 1), ("out0", 8))
            .unwrap_err();
        assert!(
            e[0].message
                .contains("but in0 has only 1 RX queue(s) (0 to 0)"),
            "{e:?}"
        );
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let p = Config::parse("[interfaces]\ninside = eth1\n").unwrap_err();
        assert_eq!((p[0].line, p[0].column), (2, 10));
        let p = Config::parse("[interfaces]\ninsde = \"eth1\"\n").unwrap_err();
        assert_eq!(p[0].line, 2);
        assert_eq!(
            p[0].message,
            "unknown key `insde` in [interfaces]: did you mean `inside`?"
        );
    }

    /// SECTIONS lists exactly the keys serde accepts, section by section.
    #[test]
    fn sections_match_the_structs() {
        for (section, keys) in SECTIONS {
            let text = match *section {
                "" => "zzzz = 1\n".to_string(),
                "nat.rule" => "[[nat.rule]]\ninternal = \"10.0.0.0/24\"\nzzzz = 1\n".into(),
                s => format!("[{s}]\nzzzz = 1\n"),
            };
            let e = toml::from_str::<Config>(&text).unwrap_err();
            assert_eq!(backticked(e.message())[1..], **keys, "[{section}]");
        }
    }

    /// The span tree finds values, array elements, array-of-tables elements and
    /// dotted keys (toml's private `Spanned` protocol still works).
    #[test]
    fn span_tree_finds_values() {
        let text = "[interfaces]\nqueues = [0, 7]\n[[nat.rule]]\ninternal = \"10.0.0.0/24\"\nports.5060 = 15060\n[datapath]\nring_size = 100\n";
        let t = SpanTree::parse(text);
        let at = |p: &[&str]| t.get(p).and_then(|n| n.span.clone()).map(|s| &text[s]);
        assert_eq!(at(&["interfaces", "queues", "1"]), Some("7"));
        assert_eq!(
            at(&["nat", "rule", "0", "internal"]),
            Some("\"10.0.0.0/24\"")
        );
        assert_eq!(at(&["nat", "rule", "0", "ports", "5060"]), Some("15060"));
        assert_eq!(at(&["datapath", "ring_size"]), Some("100"));
        let off = text.find("100").unwrap();
        assert_eq!(t.path_at(off), ["datapath", "ring_size"]);
        let off = text.find("internal").unwrap();
        assert_eq!(t.path_at(off), ["nat", "rule", "0"]);
    }

    /// A port map written with dotted keys (no span from toml) parses and validates.
    #[test]
    fn dotted_port_map() {
        let text = GOOD.replace(
            "ports = { 5060 = 15060 }",
            "ports.5060 = 15060\nports.5080 = 15080",
        );
        let c = Config::parse(&text).unwrap();
        assert!(c.validate(&text).is_empty(), "{:?}", c.validate(&text));
        assert_eq!(
            c.rewrite_config().rules[0].ports.outbound(5080),
            Some(15080)
        );
    }

    /// Huge values are reported, never overflow (this runs in debug builds too).
    #[test]
    fn huge_values_do_not_overflow() {
        let text = format!(
            "{GOOD}\n[datapath]\nring_size = 4294967295\nframes = 4294967295\nbatch = 4294967295\n"
        );
        let c = Config::parse(&text).unwrap();
        let p = c.validate(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].message.starts_with("datapath.ring_size 4294967295"),
            "{p:?}"
        );
    }

    /// Problems come in file order, with the line of the offending value.
    #[test]
    fn problems_in_file_order() {
        let text = "[log]\nlevel = \"loud\"\n\n[interfaces]\ninside = \"a\"\noutside = \"a\"\n";
        let c = Config::parse(text).unwrap();
        let lines: Vec<usize> = c.validate(text).iter().map(|p| p.line).collect();
        // level (2), same interface (6), then the [nat] problems, which have no position.
        assert_eq!(lines, [2, 6, 0, 0]);
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
        assert!(ExternalSource::parse("stun:host:0").is_err());
        assert!(ExternalSource::parse("stun:2001:db8::1").is_err());
        let v6 = ExternalSource::parse("stun:[2001:db8::1]:3478").unwrap();
        assert_eq!(
            v6,
            ExternalSource::Stun {
                host: "2001:db8::1".into(),
                port: 3478
            }
        );
        assert_eq!(v6.to_string(), "stun:[2001:db8::1]:3478");
    }
}
