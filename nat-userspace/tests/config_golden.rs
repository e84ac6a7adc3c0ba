//! Golden tests for every problem `sipnat check-config` reports, plus the shipped example
//! config (`packaging/sipnat.toml`) and the key reference (`docs/config.md`).
//!
//! Each `tests/config/NAME.toml` is a tiny config with one mistake (its first line says
//! which); `NAME.expected` next to it is exactly what `sipnat check-config NAME.toml`
//! prints on stderr. The real binary runs with `tests/config` as its working directory and
//! the bare file name as its argument (so the goldens read like what a user sees; any
//! absolute path to that directory is also stripped); it must exit 1 and print nothing on
//! stdout.
//!
//! Cases that get past parsing name `inside = "lo"` (present on every Linux host) and
//! `outside = "nosuch0"` (present on none): check-config reports every problem at once,
//! host checks included, so those goldens also hold the line about `nosuch0`.
//!
//! Adding a case: write `tests/config/NAME.toml`, add NAME to [`CASES`], then regenerate
//! the goldens from the current output and read the new one:
//!
//! ```text
//! SIPNAT_BLESS=1 cargo test --release -p nat-userspace --test config_golden
//! git diff nat-userspace/tests/config   # review every changed message
//! ```
//!
//! A message is one sentence: the key (`section.key`), the cause and the fix, positioned
//! at the offending value (or key; or the section header when a required key is missing).

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use sipnat::config::{self, Config};

/// Every case in `tests/config` (the directory must hold exactly these, each with its
/// `.expected`).
const CASES: &[&str] = &[
    // TOML syntax.
    "syntax_unquoted_string",
    "syntax_unclosed_string",
    "syntax_bad_escape",
    "syntax_unclosed_header",
    "syntax_duplicate_key",
    "syntax_duplicate_section",
    // Types and ranges (serde).
    "type_string_expected",
    "type_bool_expected",
    "type_array_expected",
    "type_rule_single_brackets",
    "type_section_double_brackets",
    "type_port_out_of_range",
    "type_negative_number",
    "type_port_map_value",
    // Unknown sections and keys, in every section.
    "unknown_section_typo",
    "unknown_section",
    "key_outside_section",
    "unknown_key_interfaces",
    "unknown_key_nat",
    "unknown_key_rule",
    "unknown_key_rewrite",
    "unknown_key_control",
    "unknown_key_datapath",
    "unknown_key_log",
    "misplaced_key",
    "unknown_key_dotted",
    // Enumerations.
    "bad_on_failure",
    "long_bad_value",
    "bad_attach_mode",
    "bad_l3",
    "bad_malformed",
    "bad_leak",
    "bad_queues_string",
    "bad_queues_number",
    "bad_queues_empty",
    "bad_queues_negative",
    "rule_without_internal",
    // [interfaces] semantics.
    "missing_inside",
    "missing_outside",
    "missing_interfaces_section",
    "same_interface",
    "empty_sip_ports",
    "too_many_sip_ports",
    "sip_port_zero",
    "queue_too_big",
    "queue_twice",
    // [nat] semantics.
    "bad_local_nets",
    "external_ip_not_an_address",
    "external_ip_stun_no_port",
    "external_ip_stun_bad_port",
    "external_ip_stun_no_host",
    "external_ip6_stun_unbracketed",
    "external_ip_interface_no_name",
    "external_ip_is_ipv6",
    "external_ip6_is_ipv4",
    "external_ip_private",
    "external_ip_unspecified",
    "external_ip_loopback",
    "external_ip_shared",
    "external_ip6_link_local",
    "no_external_ip",
    "rule_family_without_external",
    "no_rules",
    "rule_bad_cidr",
    "overlapping_rules",
    "rule_outside_local_nets",
    "rule_external_not_an_address",
    "rule_external_private",
    "rule_external_wrong_family",
    "port_map_too_big",
    "port_map_bad_key",
    "port_map_zero",
    "port_map_same_external",
    "port_map_with_snat",
    "flow_table_size_zero",
    "flow_table_size_too_big",
    "flow_idle_timeout_zero",
    "port_range_bad",
    "media_port_range_overlaps",
    // [control].
    "bad_metrics",
    "socket_empty",
    "socket_relative",
    "socket_too_long",
    "group_empty",
    // [datapath] and [log].
    "ring_size_not_power_of_two",
    "ring_size_too_small",
    "frames_too_few",
    "frames_too_few_default",
    "batch_zero",
    "busy_poll_idle_too_long",
    "nice_out_of_range",
    "rt_priority_out_of_range",
    "batch_too_big",
    "copy_fill_out_of_range",
    "reassembly_memory_too_small",
    "max_datagram_out_of_range",
    "reassembly_timeout_zero",
    "max_fragments_out_of_range",
    "bad_log_level",
    // This host (Config::check_system).
    "unknown_interfaces",
    "unknown_group",
    // Several problems at once: all of them, in file order.
    "many_problems",
    // Not a text file (no position).
    "not_utf8",
];

const BLESS: &str = "SIPNAT_BLESS";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cases_dir() -> PathBuf {
    manifest_dir().join("tests/config")
}

fn example_path() -> PathBuf {
    manifest_dir().join("../packaging/sipnat.toml")
}

fn docs_path() -> PathBuf {
    manifest_dir().join("../docs/config.md")
}

fn blessing() -> bool {
    std::env::var_os(BLESS).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Runs `sipnat check-config ARG` in `dir`: (exit code, stdout, stderr).
fn check_config(dir: &Path, arg: &str) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sipnat"))
        .args(["check-config", arg])
        .current_dir(dir)
        .env_remove("SIPNAT_LOG")
        .output()
        .expect("run sipnat");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn golden_errors() {
    let dir = cases_dir();
    let mut tomls = BTreeSet::new();
    let mut goldens = BTreeSet::new();
    for e in std::fs::read_dir(&dir).expect("tests/config") {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".toml") {
            tomls.insert(stem.to_string());
        } else if let Some(stem) = name.strip_suffix(".expected") {
            goldens.insert(stem.to_string());
        }
    }
    let listed: BTreeSet<String> = CASES.iter().map(|s| s.to_string()).collect();
    assert_eq!(listed.len(), CASES.len(), "a case is listed twice in CASES");
    assert_eq!(tomls, listed, "tests/config/*.toml and CASES differ");

    let bless = blessing();
    let prefix = format!("{}/", dir.display());
    let mut failures = Vec::new();
    for case in CASES {
        let file = format!("{case}.toml");
        let (code, stdout, stderr) = check_config(&dir, &file);
        let stderr = stderr.replace(&prefix, "");
        if code != Some(1) || !stdout.is_empty() {
            failures.push(format!(
                "{file}: exit code {code:?} (want 1), stdout {stdout:?} (want empty), stderr:\n{stderr}"
            ));
            continue;
        }
        if !stderr.lines().all(|l| l.starts_with(&format!("{file}:"))) {
            failures.push(format!(
                "{file}: a line does not start with `{file}:`:\n{stderr}"
            ));
        }
        let golden = dir.join(format!("{case}.expected"));
        if bless {
            std::fs::write(&golden, &stderr).unwrap();
            continue;
        }
        match std::fs::read_to_string(&golden) {
            Ok(want) if want == stderr => {}
            Ok(want) => failures.push(format!("{file}:\n--- expected\n{want}--- got\n{stderr}")),
            Err(e) => failures.push(format!("{}: {e} (run with {BLESS}=1)", golden.display())),
        }
    }
    if !bless {
        let stale: Vec<_> = goldens.difference(&listed).collect();
        assert!(stale.is_empty(), "goldens without a case: {stale:?}");
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ (after reviewing, regenerate with {BLESS}=1):\n\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn missing_file() {
    let (code, stdout, stderr) = check_config(&cases_dir(), "no-such-file.toml");
    assert_eq!(code, Some(1));
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        format!(
            "no-such-file.toml: the config file does not exist: check the path (the default is {})\n",
            config::DEFAULT_PATH
        )
    );
    let (code, _, stderr) = check_config(&manifest_dir(), "tests");
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr,
        "tests: is a directory, not a config file: give the path of the .toml file\n"
    );
}

/// A minimal valid config (interfaces that need not exist: only parse + validate).
const MINIMAL: &str = r#"
[interfaces]
inside = "eth1"
outside = "eth0"

[nat]
external_ip = "203.0.113.10"

[[nat.rule]]
internal = "10.0.0.0/24"
"#;

#[test]
fn minimal_config_is_valid() {
    let cfg = Config::parse(MINIMAL).expect("parses");
    assert_eq!(cfg.validate(MINIMAL), vec![]);
    // The host checks pass for interfaces that exist everywhere (inside == outside is
    // only a `validate` problem).
    let lo = MINIMAL
        .replace("\"eth1\"", "\"lo\"")
        .replace("\"eth0\"", "\"lo\"");
    let cfg = Config::parse(&lo).expect("parses");
    assert_eq!(cfg.check_system(&lo), vec![]);
    // And through the file-level entry point.
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("config_golden_minimal.toml");
    std::fs::write(&path, MINIMAL).unwrap();
    let cfg = config::load_checked(&path, false).expect("valid");
    assert_eq!(cfg.nat.rule.len(), 1);
}

/// check-config exits 0, quietly on stderr, when the file is usable on this host. Needs a
/// second interface besides `lo` (skipped on hosts with none).
#[test]
fn check_config_exits_0_on_a_usable_config() {
    let other = std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != "lo")
        .min();
    let Some(other) = other else {
        eprintln!("skipped: no interface besides lo on this host");
        return;
    };
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    // Queue 0 exists everywhere; "all" would need `other` to have lo's single RX queue.
    let text = MINIMAL.replace("\"eth1\"", "\"lo\"").replace(
        "outside = \"eth0\"",
        &format!("outside = \"{other}\"\nqueues = [0]"),
    );
    std::fs::write(dir.join("config_golden_ok.toml"), text).unwrap();
    let (code, stdout, stderr) = check_config(&dir, "config_golden_ok.toml");
    assert_eq!((code, stderr.as_str()), (Some(0), ""), "stdout: {stdout}");
    assert!(
        stdout.starts_with(&format!(
            "config_golden_ok.toml: ok (lo → {other}, 1 rule(s)"
        )),
        "{stdout}"
    );
}

#[test]
fn example_config_is_valid() {
    let text = std::fs::read_to_string(example_path()).expect("packaging/sipnat.toml");
    let cfg = match Config::parse(&text) {
        Ok(c) => c,
        Err(p) => panic!("packaging/sipnat.toml does not parse: {p:?}"),
    };
    assert_eq!(cfg.validate(&text), vec![], "packaging/sipnat.toml");
    assert_eq!(cfg.interfaces.inside.get_ref(), "eth1");
    assert_eq!(cfg.interfaces.outside.get_ref(), "eth0");
    assert_eq!(cfg.nat.external_ip.get_ref(), "203.0.113.10");
    assert_eq!(cfg.nat.rule.len(), 1);
    assert_eq!(cfg.nat.rule[0].internal.get_ref(), "10.0.0.0/24");
}

/// Every key of every section, as the parser knows them (from its own "valid keys"
/// message, so that a new field shows up here without editing this test).
fn known_keys() -> Vec<(String, Vec<String>)> {
    let list = |text: &str, marker: &str| -> Vec<String> {
        let msg = match Config::parse(text) {
            Err(p) => p[0].message.clone(),
            Ok(_) => panic!("{text:?} parsed"),
        };
        let from = msg
            .find(marker)
            .unwrap_or_else(|| panic!("no {marker:?} in {msg:?}"))
            + marker.len();
        let to = msg[from..].find(')').map_or(msg.len(), |i| from + i);
        msg[from..to]
            .split(", ")
            .map(|s| s.trim_matches(|c| c == '[' || c == ']').to_string())
            .collect()
    };
    let sections = list("[zzzz_no_such_section]\n", "the sections are ");
    let mut out = Vec::new();
    for s in &sections {
        out.push((
            s.clone(),
            list(&format!("[{s}]\nzzzz_no_such_key = 1\n"), "valid keys: "),
        ));
    }
    out.push((
        "nat.rule".into(),
        list(
            "[[nat.rule]]\ninternal = \"10.0.0.0/24\"\nzzzz_no_such_key = 1\n",
            "valid keys: ",
        ),
    ));
    out
}

/// packaging/sipnat.toml names every config key, commented out or not.
#[test]
fn example_config_has_every_key() {
    let text = std::fs::read_to_string(example_path()).expect("packaging/sipnat.toml");
    // (section, key) of every `key = ...` line, commented out or not.
    let mut present = BTreeSet::new();
    let mut section = String::new();
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            section = l.trim_matches(|c| c == '[' || c == ']').to_string();
            continue;
        }
        let l = l.trim_start_matches('#').trim_start();
        if let Some((k, _)) = l.split_once('=') {
            let k = k.trim();
            if !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                present.insert((section.clone(), k.to_string()));
            }
        }
    }
    let mut missing = Vec::new();
    for (s, keys) in known_keys() {
        for k in keys {
            if s == "nat" && k == "rule" {
                continue; // the [[nat.rule]] sections
            }
            if !present.contains(&(s.clone(), k.clone())) {
                missing.push(format!("[{s}] {k}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "packaging/sipnat.toml lacks {missing:?}"
    );
}

/// Debug text with every `span: A..B` blanked (defaults have none; parsed values do).
fn without_spans(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("span: ") {
        out.push_str(&rest[..i + 6]);
        rest = rest[i + 6..].trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
        out.push('_');
    }
    out.push_str(rest);
    out
}

/// docs/config.md lists every key, and its default column (when it is a TOML value in
/// backticks) is the default in the code.
#[test]
fn docs_match_the_code() {
    let default_dbg = without_spans(&format!("{:?}", Config::default()));
    let text = std::fs::read_to_string(docs_path()).expect("docs/config.md");
    let mut documented = BTreeSet::new();
    let mut wrong = Vec::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `[section]` | `key` | type | default | description |
        if cells.len() < 6 || !cells[1].starts_with("`[") {
            continue;
        }
        let section = cells[1]
            .trim_matches(|c| c == '`' || c == '[' || c == ']')
            .to_string();
        let key = cells[2].trim_matches('`').to_string();
        let default = cells[4];
        documented.insert((section.clone(), key.clone()));
        if section == "nat.rule" {
            continue; // no rule in the default config
        }
        let Some(value) = default.strip_prefix('`').and_then(|d| d.strip_suffix('`')) else {
            continue; // "required" / "none"
        };
        let toml = format!("[{section}]\n{key} = {value}\n");
        match toml::from_str::<Config>(&toml) {
            Ok(c) if without_spans(&format!("{c:?}")) == default_dbg => {}
            Ok(_) => wrong.push(format!("[{section}] {key}: the default is not {value}")),
            Err(e) => wrong.push(format!("[{section}] {key}: `{value}` does not parse: {e}")),
        }
    }
    let mut expected = BTreeSet::new();
    for (s, keys) in known_keys() {
        for k in keys {
            if !(s == "nat" && k == "rule") {
                expected.insert((s.clone(), k)); // (rules: the [[nat.rule]] rows)
            }
        }
    }
    let undocumented: Vec<_> = expected.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&expected).collect();
    assert!(
        undocumented.is_empty(),
        "docs/config.md lacks {undocumented:?}"
    );
    assert!(
        unknown.is_empty(),
        "docs/config.md documents unknown keys {unknown:?}"
    );
    assert!(wrong.is_empty(), "docs/config.md: {wrong:#?}");
}

/// Every ```toml example in README.md and docs/*.md is a valid config.
#[test]
fn docs_examples_are_valid() {
    let mut text = std::fs::read_to_string(manifest_dir().join("../README.md")).expect("README.md");
    let dir = manifest_dir().join("../docs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("docs/")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    for f in files {
        text.push_str(
            &std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display())),
        );
    }
    let mut blocks = 0;
    let mut rest = text.as_str();
    while let Some(i) = rest.find("```toml\n") {
        let body = &rest[i + 8..];
        let end = body.find("```").expect("closed code block");
        let example = &body[..end];
        let cfg = Config::parse(example).unwrap_or_else(|p| panic!("{p:?} in\n{example}"));
        assert_eq!(cfg.validate(example), vec![], "in\n{example}");
        blocks += 1;
        rest = &body[end + 3..];
    }
    assert!(
        blocks >= 3,
        "the README's minimal config and the two deployment examples, found {blocks} blocks"
    );
}
