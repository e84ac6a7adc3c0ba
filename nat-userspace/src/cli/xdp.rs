//! `sipnat xdp ...`: diagnostics for the steering program on its own (no workers).
//!
//! - `info`: load the program (the kernel verifier runs) and print its size.
//! - `watch`: attach it to interfaces and print live verdict counters until Ctrl-C. With no
//!   worker attached, steered packets meet the failure mode (`pass` by default).

use std::{
    process::ExitCode,
    sync::{atomic::AtomicBool, Arc},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};
use nat_common::stat;

use super::fail;
use crate::xdp::{AttachMode, FailureMode, SteeringConfig, SteeringProgram};

#[derive(Subcommand, Debug)]
pub enum XdpCommand {
    /// Load the XDP program into the kernel (verifier check) and print its instruction count.
    Info,
    /// Attach the steering program to interfaces and print its verdict counters live.
    Watch {
        /// Interface to attach to (repeat for several).
        #[arg(short = 'i', long = "iface", required = true)]
        ifaces: Vec<String>,
        /// SIP port (repeat for several).
        #[arg(short = 'p', long = "port", default_values_t = [5060u16])]
        ports: Vec<u16>,
        /// Attach mode.
        #[arg(long, value_enum, default_value_t = ModeArg::Auto)]
        mode: ModeArg,
        /// Verdict for steered packets while no worker socket is attached.
        #[arg(long, value_enum, default_value_t = FailureArg::Pass)]
        on_failure: FailureArg,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Stop after this many refreshes (default: until Ctrl-C / SIGTERM).
        #[arg(long)]
        count: Option<u64>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModeArg {
    Auto,
    Native,
    Generic,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FailureArg {
    Pass,
    Drop,
}

pub fn run(cmd: XdpCommand) -> ExitCode {
    let res = match cmd {
        XdpCommand::Info => info(),
        XdpCommand::Watch {
            ifaces,
            ports,
            mode,
            on_failure,
            interval,
            count,
        } => watch(&ifaces, &ports, mode, on_failure, interval, count),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn info() -> anyhow::Result<()> {
    let prog = SteeringProgram::load()?;
    let (xlated, verified) = prog.instruction_counts()?;
    println!(
        "XDP program `{}` passed the verifier: {} instructions, verifier processed {}",
        nat_common::PROGRAM_NAME,
        xlated,
        verified.map_or_else(|| "n/a".to_string(), |v| v.to_string())
    );
    Ok(())
}

fn watch(
    ifaces: &[String],
    ports: &[u16],
    mode: ModeArg,
    on_failure: FailureArg,
    interval: f64,
    count: Option<u64>,
) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("installing signal handler")?;
    }
    let mode = match mode {
        ModeArg::Auto => AttachMode::Auto,
        ModeArg::Native => AttachMode::Native,
        ModeArg::Generic => AttachMode::Generic,
    };
    let cfg = SteeringConfig {
        on_failure: match on_failure {
            FailureArg::Pass => FailureMode::Pass,
            FailureArg::Drop => FailureMode::Drop,
        },
        ..SteeringConfig::default()
    };
    let mut progs = Vec::new();
    for iface in ifaces {
        let mut p = SteeringProgram::load()?;
        p.set_config(cfg)?;
        p.set_ports(ports)?;
        let m = p.attach(iface, mode)?;
        let (insns, _) = p.instruction_counts()?;
        println!("attached to {iface} ({m} mode, {insns} instructions), SIP ports {ports:?}");
        progs.push((iface.clone(), p));
    }
    let interval = Duration::from_secs_f64(interval.max(0.05));
    let mut last: Vec<[u64; stat::COUNT as usize]> = progs
        .iter()
        .map(|(_, p)| p.counters())
        .collect::<Result<_, _>>()?;
    let mut last_t = Instant::now();
    let mut rounds = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) && count.is_none_or(|c| rounds < c) {
        sleep_unless(&stop, interval);
        let dt = last_t.elapsed().as_secs_f64();
        last_t = Instant::now();
        rounds += 1;
        println!(
            "{:<12} {:<20} {:>14} {:>12}",
            "interface", "verdict", "packets", "per second"
        );
        for ((iface, p), prev) in progs.iter().zip(last.iter_mut()) {
            let now = p.counters()?;
            for (i, name) in stat::NAMES.iter().enumerate() {
                if now[i] != 0 {
                    let rate = (now[i] - prev[i]) as f64 / dt;
                    println!("{iface:<12} {name:<20} {:>14} {rate:>12.0}", now[i]);
                }
            }
            *prev = now;
        }
        println!();
    }
    // Dropping the programs detaches them.
    drop(progs);
    println!("detached");
    Ok(())
}

/// Sleeps `d`, waking early when `stop` is set (checks every 50 ms).
fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let end = Instant::now() + d;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}
