//! The config file (TOML, serde): every field defaulted and documented, unknown keys
//! rejected, errors reported as `FILE:LINE:COLUMN: message`. [`Config::validate`] adds the
//! semantic checks (overlapping rules, a rule outside the local networks, empty port set,
//! a private external address, ...) and [`Config::check_system`] those that need the host
//! that will run it (unknown interfaces, unknown control group).
//!
//! Every message is one sentence naming the key (`section.key`), the cause and the fix;
//! the position is the offending value (or key, or the section header when a required key
//! is missing). serde's and toml's own messages are rewritten into that form
//! ([`explain`](diagnostics::explain)); positions for fields that are not `Spanned` come from a second,
//! best-effort parse of the text into a tree of spans ([`SpanTree`](diagnostics::spans::SpanTree)). The golden tests in
//! `tests/config_golden.rs` pin every message; docs/config.md documents every key.
//!
//! The data path never sees this module: `Config::rewrite_config()` turns it into the
//! immutable [`RewriteConfig`](crate::nat::RewriteConfig) snapshot the workers read.
//!
//! - [`schema`]: the serde structs of every section and their defaults.
//! - [`diagnostics`]: problems with positions, serde's messages explained, the span tree.
//! - `validate/`: the semantic checks, one file per section, and the host checks.
//! - [`lower`]: config → domain types (rewrite snapshot, external sources, limits).

use std::path::Path;

pub mod diagnostics;
mod lower;
pub mod schema;
mod validate;

use diagnostics::{explain, position, sort_problems};
pub use diagnostics::{shorten_message, ConfigError, Problem, MAX_MESSAGE, MAX_QUOTED};
pub use schema::*;

/// Default path of the config file.
pub const DEFAULT_PATH: &str = "/etc/sipnat/sipnat.toml";
/// Default control socket.
pub const DEFAULT_SOCKET: &str = "/run/sipnat/sipnat.sock";
/// Default pin directory (bpffs) for hitless restarts.
pub const DEFAULT_BPFFS: &str = "/sys/fs/bpf/sipnat";

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

#[cfg(test)]
mod tests {
    use super::diagnostics::{backticked, spans::SpanTree, SECTIONS};
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
        assert!(
            rc.enabled,
            "rewriting is on unless [rewrite] enabled = false"
        );
        assert_eq!(
            c.external_sources().0,
            ExternalSource::Static("203.0.113.10".parse().unwrap())
        );
    }

    /// `[rewrite] enabled = false` reaches the snapshot (the payload is left alone; the
    /// IP header is still translated: `rewrite::packet`'s test of it).
    #[test]
    fn rewriting_can_be_turned_off() {
        let text = format!("{GOOD}\n[rewrite]\nenabled = false\n");
        let c = Config::parse(&text).unwrap();
        assert!(c.validate(&text).is_empty(), "{:?}", c.validate(&text));
        assert!(!c.rewrite_config().enabled);
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
