//! `cargo xtask setup`: idempotent; installs only what is missing and says what it does.
//!
//! - the nightly toolchain's `rust-src` (the eBPF crate is built with `-Z build-std=core`);
//! - `bpf-linker`, built against the nightly's LLVM 22 (its default feature wants LLVM 23):
//!   a prefix directory whose `lib/libLLVM.so` links to the nightly's `libLLVM.so.22.1-*`,
//!   then `LLVM_PREFIX=<prefix> cargo install bpf-linker --no-default-features --features
//!   llvm-22`;
//! - `cargo-fuzz` (`cargo install cargo-fuzz --locked --version ...`), for the fuzz targets
//!   in `fuzz/`;
//! - `cargo-deb` (`cargo install cargo-deb --locked --version ...`), for `cargo xtask deb`;
//! - when root on Debian: the packages listed in `xtask/debian-packages.txt`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};

use crate::shell::{self, output, step, succeeds};

const BPF_LINKER_VERSION: &str = "0.13.0";
const CARGO_FUZZ_VERSION: &str = "0.13.2";
const CARGO_DEB_VERSION: &str = "3.8.0";

pub fn run(packages: bool) -> anyhow::Result<()> {
    step("setup: toolchain for the eBPF build");
    nightly()?;
    rust_src()?;
    bpf_linker()?;
    cargo_fuzz()?;
    cargo_deb()?;
    if packages {
        step("setup: Debian packages for tests, demo and benchmarks");
        debian_packages()?;
    }
    Ok(())
}

fn nightly() -> anyhow::Result<()> {
    let out = output(Command::new("rustup").args(["run", "nightly", "rustc", "--version"]))?;
    if !out.status.success() {
        bail!(
            "the nightly toolchain is missing; the eBPF program needs it (rustup toolchain \
             install nightly), and this machine cannot download one"
        );
    }
    println!(
        "    nightly: {}",
        String::from_utf8_lossy(&out.stdout).trim()
    );
    Ok(())
}

fn rust_src() -> anyhow::Result<()> {
    let out = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    let has = String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with("rust-src"));
    if installed("rust-src (nightly)", has, "installing") {
        return Ok(());
    }
    shell::run(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))
}

fn bpf_linker() -> anyhow::Result<()> {
    // bpf-linker has no rpath to libLLVM: run it under the nightly toolchain's environment.
    if installed(
        "bpf-linker",
        succeeds(Command::new("rustup").args(["run", "nightly", "bpf-linker", "--version"])),
        "building it against the nightly's LLVM 22 (about a minute)",
    ) {
        return Ok(());
    }
    let sysroot =
        output(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]))?;
    let lib = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim()).join("lib");
    let llvm = find_file(&lib, |n| n.starts_with("libLLVM.so.22"))?.with_context(|| {
        format!(
            "no libLLVM.so.22* in {}: is the nightly's LLVM 22?",
            lib.display()
        )
    })?;
    let prefix = shell::workspace_root().join("target/xtask/llvm-22");
    fs::create_dir_all(prefix.join("lib"))?;
    let link = prefix.join("lib/libLLVM.so");
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(&llvm, &link)
        .with_context(|| format!("symlink {} -> {}", link.display(), llvm.display()))?;
    println!(
        "    LLVM_PREFIX={} ({} -> {})",
        prefix.display(),
        link.display(),
        llvm.display()
    );
    shell::run(
        Command::new("cargo")
            .env("LLVM_PREFIX", &prefix)
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args(["--no-default-features", "--features", "llvm-22"]),
    )?;
    if !succeeds(Command::new("rustup").args(["run", "nightly", "bpf-linker", "--version"])) {
        bail!("bpf-linker was installed but does not run under `rustup run nightly`");
    }
    Ok(())
}

/// cargo-fuzz (`cargo fuzz`, found on PATH as `cargo-fuzz`); it runs under the nightly.
pub fn cargo_fuzz() -> anyhow::Result<()> {
    cargo_tool("cargo-fuzz", CARGO_FUZZ_VERSION, &["fuzz", "--version"])
}

/// cargo-deb (`cargo deb`, found on PATH as `cargo-deb`), for `cargo xtask deb`.
pub fn cargo_deb() -> anyhow::Result<()> {
    cargo_tool("cargo-deb", CARGO_DEB_VERSION, &["--version"])
}

/// A cargo subcommand `name` at `version` (`cargo install --locked`), unless `name
/// check_args` already runs.
fn cargo_tool(name: &str, version: &str, check_args: &[&str]) -> anyhow::Result<()> {
    let runs = || succeeds(Command::new(name).args(check_args));
    if installed(name, runs(), "installing (about two minutes)") {
        return Ok(());
    }
    shell::run(Command::new("cargo").args(["install", name, "--locked", "--version", version]))?;
    if !runs() {
        bail!(
            "{name} was installed but `{name} {}` fails (is ~/.cargo/bin on PATH?)",
            check_args.join(" ")
        );
    }
    Ok(())
}

/// The package list shared with `.ci/run`.
pub fn package_list() -> anyhow::Result<Vec<String>> {
    let path = shell::workspace_root().join("xtask/debian-packages.txt");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect())
}

fn debian_packages() -> anyhow::Result<()> {
    if !std::path::Path::new("/etc/debian_version").exists() {
        println!("    not Debian: install the equivalents of xtask/debian-packages.txt yourself");
        return Ok(());
    }
    let missing: Vec<String> = package_list()?
        .into_iter()
        .filter(|p| {
            !output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        println!("    Debian packages: all installed");
        return Ok(());
    }
    if !shell::is_root() {
        println!(
            "    missing Debian packages: {} (not root: run `sudo apt-get install {}`; tests \
             that need them will say so)",
            missing.join(" "),
            missing.join(" ")
        );
        return Ok(());
    }
    println!(
        "    installing missing Debian packages: {}",
        missing.join(" ")
    );
    shell::run(
        Command::new("apt-get")
            .args(["update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    shell::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// Says whether `what` is installed; when it is not, also what happens now (`then`).
fn installed(what: &str, present: bool, then: &str) -> bool {
    if present {
        println!("    {what}: installed");
    } else {
        println!("    {what}: missing, {then}");
    }
    present
}

/// The first entry of `dir` whose file name satisfies `name`.
pub fn find_file(dir: &Path, name: impl Fn(&str) -> bool) -> anyhow::Result<Option<PathBuf>> {
    Ok(fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(&name)))
}
