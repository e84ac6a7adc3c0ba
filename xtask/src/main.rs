//! `cargo xtask ...`: the project's own commands (setup, build, test, demo, bench).
//!
//! Each step says what it does before doing it; failures name the step and the fix.

mod bench;
mod deb;
mod demo;
mod fuzz;
mod setup;
mod shell;
mod test;
mod topo;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "sipnat developer tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing: nightly rust-src, bpf-linker (LLVM 22), Debian packages.
    Setup {
        /// Skip the Debian packages (toolchain parts only).
        #[arg(long)]
        no_packages: bool,
    },
    /// Build everything (release) and print the XDP program's instruction count.
    Build,
    /// Setup, then fmt check, clippy, the Debian package (`deb`), every test (privileged ones
    /// too when root), and a bounded fuzz run (SIPNAT_FUZZ_SECONDS per target, default 30; 0 skips).
    Test {
        /// Only run tests whose name contains this filter (passed to cargo test).
        filter: Option<String>,
    },
    /// Fuzz the rewrite for a bounded time (cargo-fuzz, nightly; targets in fuzz/).
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = fuzz::TEST_SECONDS)]
        seconds: u64,
        /// Which target: packet, message, differential or all.
        #[arg(long, default_value = "all")]
        target: String,
    },
    /// Benchmarks: `--e2e` (sipnat vs the kernel and Kamailio on a namespace topology,
    /// bench/), `--micro` (criterion), `--instructions` (callgrind: instructions per
    /// message, fast path and reference; per packet through the pipeline, media NAT off
    /// and on). Not part of `test`.
    Bench(bench::BenchArgs),
    /// Build the Debian package (cargo-deb): binary, unit, config, man pages, completions,
    /// Grafana dashboard; the .deb lands in <target>/debian/.
    Deb,
    /// Build, create a namespace topology, run sipnat on it with traffic, show the result.
    Demo {
        /// Seconds of traffic.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Setup { no_packages } => setup::run(!no_packages),
        Cmd::Build => setup::run(false).and_then(|_| build()),
        Cmd::Test { filter } => test::run(filter.as_deref()),
        Cmd::Fuzz { seconds, target } => fuzz::run(seconds, &target),
        Cmd::Deb => deb::build().map(|_| ()),
        Cmd::Demo { seconds } => demo::run(seconds),
        Cmd::Bench(a) => bench::run(&a),
    };
    match res {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `cargo build --release` of the workspace, then the verifier check of the XDP program.
pub fn build() -> anyhow::Result<()> {
    shell::step("build (release)");
    shell::run(shell::cargo().args([
        "build",
        "--release",
        "--workspace",
        "--exclude",
        "nat-ebpf",
    ]))?;
    xdp_info()
}

/// Loads the XDP program (verifier) and prints its instruction count (needs root).
pub fn xdp_info() -> anyhow::Result<()> {
    let bin = deb::target_dir().join("release/sipnat");
    if !shell::is_root() {
        println!("note: loading the XDP program into the verifier needs root; skipped (not root)");
        return Ok(());
    }
    shell::run(std::process::Command::new(bin).args(["xdp", "info"]))
}
