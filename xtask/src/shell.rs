//! Running commands: echo what runs, fail with the command line and its status.

use std::{
    path::PathBuf,
    process::{Command, Output, Stdio},
};

use anyhow::{bail, Context as _};

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask in workspace")
        .to_path_buf()
}

/// `cargo` (the one running us), in the workspace root.
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

/// `cargo build --release -p nat-userspace --bin sipnat`, announced as `what`.
pub fn build_sipnat_release(what: &str) -> anyhow::Result<()> {
    step(what);
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "nat-userspace",
        "--bin",
        "sipnat",
    ]))
}

pub fn is_root() -> bool {
    // SAFETY-free: read the effective uid from /proc.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

pub fn step(what: &str) {
    println!("\n==> {what}");
}

fn describe(c: &Command) -> String {
    let mut s = c.get_program().to_string_lossy().into_owned();
    for a in c.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs with inherited stdio; error when it fails.
pub fn run(c: &mut Command) -> anyhow::Result<()> {
    println!("    $ {}", describe(c));
    let st = c
        .status()
        .with_context(|| format!("cannot start `{}`", describe(c)))?;
    if !st.success() {
        bail!("`{}` failed ({st})", describe(c));
    }
    Ok(())
}

/// Runs quietly and returns its output (whatever the status).
pub fn output(c: &mut Command) -> anyhow::Result<Output> {
    c.stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{}`", describe(c)))
}

/// True when the command runs and exits 0 (output discarded).
pub fn succeeds(c: &mut Command) -> bool {
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
