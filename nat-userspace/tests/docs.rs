//! README.md against the code: every command and flag is documented, every documented
//! `sipnat` command line parses, every counter and metric family is described. (The
//! config keys are checked by `tests/config_golden.rs`.)

mod common;

use std::{collections::BTreeSet, time::Duration};

use clap::{CommandFactory, Parser};
use common::{
    privileged,
    topo::{await_condition, Sipnat, Topo},
};
use sipnat::{cli::Cli, datapath::stats::C};

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md")
}

/// Lines inside ``` blocks, with the block's info string.
fn code_lines(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lang: Option<String> = None;
    for line in text.lines() {
        if let Some(info) = line.trim_start().strip_prefix("```") {
            lang = match lang {
                None => Some(info.trim().to_string()),
                Some(_) => None,
            };
        } else if let Some(l) = &lang {
            out.push((l.clone(), line.to_string()));
        }
    }
    out
}

/// Every `$ sipnat ...` line (captured output) and every `sipnat ...` line of a ```sh
/// block is a command line this build accepts.
#[test]
fn documented_command_lines_parse() {
    let text = readme();
    let mut checked = 0;
    for (lang, line) in code_lines(&text) {
        let cmd = match line.strip_prefix("$ ") {
            Some(c) => c,
            None if lang == "sh" => line.as_str(),
            None => continue,
        };
        let cmd = cmd.split('#').next().unwrap().trim();
        if !cmd.starts_with("sipnat ") {
            continue;
        }
        let cmd = cmd.split('|').next().unwrap();
        let args: Vec<&str> = cmd.split_whitespace().collect();
        if let Err(e) = Cli::try_parse_from(&args) {
            panic!("README: `{cmd}` does not parse:\n{e}");
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} command lines found");
}

/// Every subcommand (`sipnat set external-ip`, `sipnat xdp watch`, ...) and every long
/// option appears in the README.
#[test]
fn every_command_and_option_is_documented() {
    let text = readme();
    let mut missing = Vec::new();
    fn walk(cmd: &clap::Command, path: &str, text: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            if let Some(long) = arg.get_long() {
                if !["help", "version"].contains(&long) && !text.contains(&format!("--{long}")) {
                    missing.push(format!("{path} --{long}"));
                }
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            let p = format!("{path} {}", sub.get_name());
            if !text.contains(&p) {
                missing.push(p.clone());
            }
            walk(sub, &p, text, missing);
        }
    }
    walk(&Cli::command(), "sipnat", &text, &mut missing);
    assert!(missing.is_empty(), "README does not document {missing:?}");
}

/// Every worker counter and XDP verdict has a row (`| `name` | help |`); the worker
/// counters' help texts are the ones the code exports.
#[test]
fn every_counter_is_described() {
    let text = readme();
    let mut missing = Vec::new();
    for c in C::ALL {
        let row = format!("| `{}` | {} |", c.name(), c.help());
        if !text.contains(&row) {
            missing.push(row);
        }
    }
    for v in nat_common::stat::NAMES {
        if !text.contains(&format!("| `{v}` |")) {
            missing.push(v.to_string());
        }
    }
    assert!(missing.is_empty(), "README lacks {missing:#?}");
}

/// Every family a running daemon exports on /metrics is described.
#[test]
fn every_metric_family_is_described() {
    if !privileged("every_metric_family_is_described") {
        return;
    }
    let t = Topo::new("docs");
    let cfg = t.config_full("gw", "", "metrics = \"127.0.0.1:9560\"", "");
    let sipnat = Sipnat::start(&t.gw, &cfg, t.dir.path("gw.sock"), t.dir.path("gw.log"));
    let mut body = String::new();
    await_condition("metrics served", Duration::from_secs(10), || {
        let out =
            t.gw.exec_any(&["curl", "-sf", "http://127.0.0.1:9560/metrics"]);
        body = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.success()
    });
    let families: BTreeSet<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(families.len() > C::COUNT, "{body}");
    let text = readme();
    let undocumented: Vec<&str> = families
        .iter()
        .copied()
        .filter(|f| {
            if let Some(c) = f.strip_prefix("sipnat_worker_") {
                return !text.contains(&format!("| `{c}` |"));
            }
            if let Some(x) = f.strip_prefix("sipnat_xsk_") {
                return !text.contains(&format!("| `{x}` |"));
            }
            !text.contains(&format!("| `{f}` |"))
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "README lacks metric families {undocumented:?}"
    );
    assert_eq!(sipnat.stop(), Some(0));
}
