//! `cargo xtask test`: setup, then format check, clippy, and every test. Privileged tests
//! (BPF, XDP, network namespaces) run when root; when they skip, they say why, and under
//! `CI=true` they fail instead of skipping. Ends with a summary per test suite.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
};

use anyhow::{bail, Context as _};

use crate::{setup, shell};

pub fn run(filter: Option<&str>) -> anyhow::Result<()> {
    setup::run(true)?;
    let root = shell::workspace_root();

    shell::step("format check (cargo fmt --check)");
    shell::run(shell::cargo().args(["fmt", "--all", "--check"]))
        .context("code is not formatted: run `cargo fmt --all`")?;

    shell::step("lint (cargo clippy --all-targets -- -D warnings, userspace crates)");
    shell::run(shell::cargo().args([
        "clippy",
        "--release",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;

    // tests/deb.rs installs and purges this package (root only).
    crate::deb::build().context("building the Debian package for tests/deb.rs")?;

    if !shell::is_root() {
        println!(
            "\nnote: not root: privileged tests (XDP verdicts, namespaces, end to end) will \
             be skipped and listed below"
        );
    }
    let skip_log = root.join("target/test-skips.log");
    let _ = std::fs::remove_file(&skip_log);
    let report_log = root.join("target/test-reports.log");
    let _ = std::fs::remove_file(&report_log);

    shell::step("tests (cargo test --release)");
    let mut cmd = shell::cargo();
    cmd.args([
        "test",
        "--release",
        "--workspace",
        "--exclude",
        "nat-ebpf",
        "--no-fail-fast",
    ]);
    if let Some(f) = filter {
        cmd.args(["--", f]);
    }
    cmd.env("SIPNAT_SKIP_LOG", &skip_log);
    cmd.env("SIPNAT_REPORT_LOG", &report_log);
    let summary = run_and_collect(cmd)?;

    shell::step("summary");
    let mut failed = 0;
    for (suite, tests) in &summary.suites {
        let ok = tests.iter().filter(|(_, r)| r == "ok").count();
        let bad: Vec<&str> = tests
            .iter()
            .filter(|(_, r)| r == "FAILED")
            .map(|(n, _)| n.as_str())
            .collect();
        failed += bad.len();
        println!(
            "  {suite:<40} {ok:>4} passed{}",
            if bad.is_empty() {
                String::new()
            } else {
                format!(", FAILED: {}", bad.join(", "))
            }
        );
    }
    if let Some(v) = summary.suites.get("tests/xdp_verdicts.rs") {
        println!(
            "\n  XDP verdict tests run through BPF_PROG_TEST_RUN ({}):",
            v.len()
        );
        for (name, res) in v {
            println!("    {res:<6} {name}");
        }
    }
    let reports = std::fs::read_to_string(&report_log).unwrap_or_default();
    if !reports.is_empty() {
        println!("\n  what the data-driven tests checked:");
        for l in reports.lines() {
            println!("    {l}");
        }
    }
    let skips = std::fs::read_to_string(&skip_log).unwrap_or_default();
    if !skips.is_empty() {
        println!("\n  skipped:");
        for l in skips.lines() {
            println!("    {l}");
        }
    }
    if !summary.status_ok || failed > 0 {
        bail!("tests failed ({failed} failing tests)");
    }
    crate::fuzz::bounded()?;
    println!("\nall tests passed");
    Ok(())
}

struct Summary {
    suites: BTreeMap<String, Vec<(String, String)>>,
    status_ok: bool,
}

/// Runs cargo test, echoing its output (stdout and stderr merged, in order), and collects
/// each test's result per suite (cargo's "Running <suite>" lines name them).
fn run_and_collect(mut cmd: std::process::Command) -> anyhow::Result<Summary> {
    let (reader, writer) = std::io::pipe().context("pipe")?;
    cmd.stdout(writer.try_clone()?).stderr(writer);
    let mut child = cmd.spawn().context("starting cargo test")?;
    drop(cmd); // close our copies of the write end so EOF arrives when cargo exits
    let mut suites: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut current = String::from("?");
    for line in BufReader::new(reader).lines() {
        let line = line?;
        println!("{line}");
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("Running ") {
            current = rest.split(" (").next().unwrap_or(rest).to_string();
        } else if let Some(rest) = trimmed.strip_prefix("Doc-tests ") {
            current = format!("doc-tests {rest}");
        } else if let Some(rest) = line.strip_prefix("test ") {
            if let Some((name, res)) = rest.rsplit_once(" ... ") {
                suites
                    .entry(current.clone())
                    .or_default()
                    .push((name.to_string(), res.to_string()));
            }
        }
    }
    let status = child.wait()?;
    Ok(Summary {
        suites,
        status_ok: status.success(),
    })
}
