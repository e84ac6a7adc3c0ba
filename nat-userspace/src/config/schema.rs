//! The config file's shape: the serde structs of every section, their defaults and the
//! `external_ip` forms ([`ExternalSource`]). Enums that the rest of the daemon uses (the
//! L3 mode, the malformed and leak policies, the XDP attach and failure modes) are the
//! domain enums themselves, deserialised directly.

use std::{collections::BTreeMap, fmt, net::IpAddr, path::PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{diagnostics::spans, DEFAULT_BPFFS, DEFAULT_SOCKET};
use crate::{
    nat::{L3Mode, LeakPolicy, MalformedPolicy},
    xdp::{AttachMode, FailureMode},
};

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub interfaces: Interfaces,
    pub nat: Nat,
    pub rewrite: RewriteOptions,
    pub media: Media,
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
    pub on_failure: FailureMode,
    /// XDP attach mode: `auto` (native, else generic with a warning), `native`, `generic`.
    pub attach_mode: AttachMode,
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
            on_failure: FailureMode::Pass,
            attach_mode: AttachMode::Auto,
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
    pub l3: L3Mode,
    /// Networks whose traffic is internal (never rewritten between them).
    pub local_nets: Vec<Spanned<String>>,
    /// NAT rules, in order; the first rule containing an address applies.
    pub rule: Vec<RuleCfg>,
    /// Inbound flow table (rules whose internal side is a network): entries.
    pub flow_table_size: u32,
    /// Idle timeout of a flow-table entry, seconds.
    pub flow_idle_timeout: u32,
    /// Port translation (NAPT) of network rules: `"FIRST-LAST"`, the external ports for
    /// internal endpoints whose own port is taken; `""`: off (ports kept).
    pub port_range: Spanned<String>,
}

impl Default for Nat {
    fn default() -> Self {
        Nat {
            external_ip: Spanned::new(0..0, String::new()),
            external_ip6: Spanned::new(0..0, String::new()),
            allow_private_external: false,
            l3: L3Mode::Snat,
            local_nets: crate::nat::rules::DEFAULT_LOCAL_NETS
                .iter()
                .map(|s| Spanned::new(0..0, s.to_string()))
                .collect(),
            rule: Vec::new(),
            flow_table_size: 65536,
            flow_idle_timeout: 300,
            port_range: Spanned::new(0..0, "20000-29999".into()),
        }
    }
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewriteOptions {
    /// Rewrite SIP and SDP at all; `false` leaves every payload as it arrived (the IP
    /// header and NAPT still apply; no SDP is read, so no media binding is learned).
    pub enabled: bool,
    /// Rewrite Record-Route and Route values too.
    pub record_route: bool,
    /// Rewrite From and To too.
    pub from_to: bool,
    /// Malformed SIP: `forward` unchanged or `drop`.
    pub malformed: MalformedPolicy,
    /// An outbound message still holding an internal address: `drop` or `forward`.
    pub leak: LeakPolicy,
}

impl Default for RewriteOptions {
    fn default() -> Self {
        RewriteOptions {
            enabled: true,
            record_route: false,
            from_to: false,
            malformed: MalformedPolicy::default(),
            leak: LeakPolicy::default(),
        }
    }
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
    /// In copy mode, how many free frames each fill ring is kept at: the kernel copies
    /// every packet into the frame at the fill ring's head, so a shallow fill ring hands
    /// it frames used a moment ago, still in the core's cache; a full one (2 × ring_size)
    /// hands it frames last touched thousands of packets ago. 0: 4 × batch. Zero-copy
    /// sockets keep the whole fill ring (the NIC's burst buffer).
    pub copy_fill: u32,
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
            copy_fill: 0,
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
pub struct Media {
    /// Media NAT: bindings learned from SDP, RTP/RTCP translated by the XDP program.
    pub enabled: bool,
    /// External media ports, `"FIRST-LAST"`: RTP on the even ones, RTCP the odd one after.
    pub port_range: Spanned<String>,
    /// Seconds without a packet after which a binding is removed.
    pub idle_timeout: u32,
}

impl Default for Media {
    fn default() -> Self {
        Media {
            enabled: true,
            port_range: Spanned::new(0..0, "30000-39999".into()),
            idle_timeout: 60,
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
