//! `cargo xtask fuzz`: bounded libFuzzer runs of the targets in `fuzz/` (cargo-fuzz on the
//! nightly toolchain, built into `fuzz/target`, its own workspace).
//!
//! - `packet`: whole-frame rewrite (`decide` + `rewrite_packet`), checksums, idempotence;
//! - `message`: one SIP message (`rewrite_message`) with every config, both directions;
//! - `differential`: the fast path against the reference rewriter (same bytes, same
//!   result), messages and whole frames.
//!
//! Seeds are read from `fuzz/corpus/<target>` (committed, never written); what a run finds
//! goes to `fuzz/target/corpus/<target>`, crashes to `fuzz/artifacts/<target>/`. Built
//! without a sanitizer (the code under test has no `unsafe`) and with debug assertions
//! and overflow checks.
//!
//! `cargo xtask test` runs each target for [`TEST_SECONDS`] (environment
//! `SIPNAT_FUZZ_SECONDS` overrides; 0 skips).

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context as _};

use crate::{setup, shell};

/// The fuzz targets (`fuzz/fuzz_targets/<name>.rs`).
pub const TARGETS: [&str; 3] = ["packet", "message", "differential"];

/// Seconds per target in `cargo xtask test`.
pub const TEST_SECONDS: u64 = 30;

/// Flags shared by build and run (a mismatch would rebuild).
const BUILD_FLAGS: [&str; 3] = ["--sanitizer=none", "--debug-assertions", "--release"];

/// `cargo xtask fuzz`: setup, then each selected target for `seconds`.
pub fn run(seconds: u64, target: &str) -> anyhow::Result<()> {
    let targets: Vec<&str> = match target {
        "all" => TARGETS.to_vec(),
        t if TARGETS.contains(&t) => vec![t],
        t => bail!(
            "unknown fuzz target {t:?}: one of {}, or all",
            TARGETS.join(", ")
        ),
    };
    setup::run(false)?; // nightly, bpf-linker (nat-userspace builds its eBPF object), cargo-fuzz
    fuzz(&targets, seconds)
}

/// The bounded step of `cargo xtask test` (setup has already run).
pub fn bounded() -> anyhow::Result<()> {
    let seconds = match std::env::var("SIPNAT_FUZZ_SECONDS") {
        Ok(s) => s
            .trim()
            .parse()
            .with_context(|| format!("SIPNAT_FUZZ_SECONDS={s:?} is not a number of seconds"))?,
        Err(_) => TEST_SECONDS,
    };
    if seconds == 0 {
        shell::step("fuzz (bounded): skipped (SIPNAT_FUZZ_SECONDS=0)");
        return Ok(());
    }
    fuzz(&TARGETS, seconds).context("fuzz (bounded) failed")
}

fn fuzz_dir() -> PathBuf {
    shell::workspace_root().join("fuzz")
}

/// `cargo fuzz ...` on the nightly toolchain, in `fuzz/`, with the environment of the
/// outer cargo (it runs us) removed so the nightly's cargo and rustc are the ones used.
fn cargo_fuzz(sub: &str) -> Command {
    let dir = fuzz_dir();
    let mut c = Command::new("rustup");
    c.args(["run", "nightly", "cargo", "fuzz", sub])
        .current_dir(&dir)
        .args(BUILD_FLAGS)
        .arg("--target-dir")
        .arg(dir.join("target"));
    for v in [
        "CARGO",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTUP_TOOLCHAIN",
    ] {
        c.env_remove(v);
    }
    c
}

fn fuzz(targets: &[&str], seconds: u64) -> anyhow::Result<()> {
    shell::step(&format!(
        "fuzz (bounded): {} for {seconds} s each",
        targets.join(", ")
    ));
    let t = Instant::now();
    println!("    building the fuzz targets (first build: a few minutes, eBPF object included)");
    let mut build = cargo_fuzz("build");
    if let [one] = targets {
        build.arg(one); // otherwise all of them
    }
    shell::run(&mut build).context("building the fuzz targets")?;
    println!("    built in {:.0} s", t.elapsed().as_secs_f64());

    let dir = fuzz_dir();
    let mut failed = Vec::new();
    for target in targets {
        match run_target(&dir, target, seconds) {
            Ok(stats) => println!("    {target}: ok ({stats})"),
            Err(e) => {
                println!("    {target}: FAILED: {e:#}");
                failed.push(format!("{target}: {e:#}"));
            }
        }
    }
    if !failed.is_empty() {
        bail!("fuzz targets failed:\n  {}", failed.join("\n  "));
    }
    Ok(())
}

/// One target for `seconds`; `Ok` with libFuzzer's closing stats, or the failure with the
/// artifact's path.
fn run_target(dir: &Path, target: &str, seconds: u64) -> anyhow::Result<String> {
    let seeds = dir.join("corpus").join(target);
    let work = dir.join("target/corpus").join(target);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let mut cmd = cargo_fuzz("run");
    cmd.arg(target)
        .arg(&work)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-dict={}", dir.join("sip.dict").display()))
        .args(["-rss_limit_mb=2048", "-timeout=10", "-print_final_stats=1"]);
    println!("\n    [{target}] {seconds} s, seeds {}", seeds.display());
    let (reader, writer) = std::io::pipe().context("pipe")?;
    cmd.stdin(std::process::Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting cargo fuzz run {target}"))?;
    drop(cmd); // close our copies of the write end so EOF arrives when it exits
    let mut artifact = None;
    let mut stats = String::new();
    let mut done = String::new();
    for line in BufReader::new(reader).lines() {
        let line = line?;
        // libFuzzer prints a line per new corpus entry and a recommended dictionary: keep
        // the log readable (the eBPF build's relayed output too).
        let event = line.split_whitespace().nth(1).unwrap_or("");
        let noisy = (line.starts_with('#') && ["NEW", "REDUCE", "pulse"].contains(&event))
            || line.trim_start().starts_with("NEW_FUNC")
            || (line.starts_with('"') && line.contains("# Uses:"))
            || line.starts_with("warning: nat-userspace@");
        if !noisy {
            println!("    | {line}");
        }
        if let Some(p) = line.split("Test unit written to ").nth(1) {
            artifact = Some(dir.join(p.trim()));
        }
        if line.starts_with('#') && event == "DONE" {
            done = line.trim().to_string();
        }
        if let Some(s) = line.strip_prefix("stat::average_exec_per_sec:") {
            stats = format!("{} exec/s", s.trim());
        }
    }
    let status = child.wait()?;
    if status.success() {
        let cov = done
            .split_whitespace()
            .skip_while(|w| *w != "cov:")
            .take(6)
            .collect::<Vec<_>>()
            .join(" ");
        return Ok(format!("{stats}, {cov}"));
    }
    match artifact {
        Some(a) => {
            let hex = std::fs::read(&a)
                .map(|b| b.iter().map(|x| format!("{x:02x}")).collect::<String>())
                .unwrap_or_default();
            println!("    [{target}] failing input: {}", a.display());
            println!("    [{target}] hex: {hex}");
            println!(
                "    [{target}] reproduce: cd fuzz && cargo +nightly fuzz run {} {target} {}",
                BUILD_FLAGS.join(" "),
                a.display()
            );
            bail!("crash, failing input in {}", a.display())
        }
        None => bail!("cargo fuzz run {target} failed ({status}) without writing an input"),
    }
}
