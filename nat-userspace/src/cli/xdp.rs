//! `sipnat xdp ...`: diagnostics for the steering program on its own (no workers).
//!
//! - `info`: load the program (the kernel verifier runs) and print its size.
//! - `watch`: attach it to interfaces and print live verdict counters until Ctrl-C. With no
//!   worker attached, steered packets meet the failure mode (`pass` by default).
//! - `media add|del|list`: static media NAT bindings in a running daemon's pinned maps.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{atomic::AtomicBool, Arc},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};
use nat_common::stat;

use super::fail;
use crate::xdp::{media::MediaMaps, AttachMode, FailureMode, SteeringConfig, SteeringProgram};

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
    /// Static media NAT bindings (RTP/RTCP translated in XDP) of a running daemon.
    #[command(subcommand)]
    Media(MediaCommand),
}

#[derive(Subcommand, Debug)]
pub enum MediaCommand {
    /// Install bindings: INTERNAL leaves as EXTERNAL, packets to EXTERNAL reach INTERNAL.
    Add {
        /// The running daemon's config file (its interfaces and [control] bpffs).
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: PathBuf,
        /// Internal transport address, e.g. 10.0.0.2:4000.
        #[arg(required_unless_present = "file")]
        internal: Option<SocketAddr>,
        /// External transport address, e.g. 203.0.113.1:30000.
        #[arg(required_unless_present = "file")]
        external: Option<SocketAddr>,
        /// Batch: one `INTERNAL EXTERNAL` pair per line (`-` = stdin; `#` comments).
        #[arg(long, value_name = "FILE", conflicts_with_all = ["internal", "external"])]
        file: Option<PathBuf>,
    },
    /// Remove bindings (each only if it is still installed as given).
    Del {
        /// The running daemon's config file.
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: PathBuf,
        #[arg(required_unless_present = "file")]
        internal: Option<SocketAddr>,
        #[arg(required_unless_present = "file")]
        external: Option<SocketAddr>,
        /// Batch: one `INTERNAL EXTERNAL` pair per line (`-` = stdin).
        #[arg(long, value_name = "FILE", conflicts_with_all = ["internal", "external"])]
        file: Option<PathBuf>,
    },
    /// List the installed bindings with XDP's packet counts.
    List {
        /// The running daemon's config file.
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: PathBuf,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
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
        XdpCommand::Media(m) => media(m),
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

/// The daemon's pinned media maps, found through its config file.
fn media_maps(config: &Path) -> anyhow::Result<MediaMaps> {
    let (cfg, _) = crate::config::Config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let root = cfg.control.bpffs.clone();
    Ok(MediaMaps::from_pins(
        &root.join(cfg.interfaces.inside.get_ref()),
        &root.join(cfg.interfaces.outside.get_ref()),
    )?)
}

/// `INTERNAL EXTERNAL` pairs, one per line (`#` starts a comment).
fn read_pairs(file: &Path) -> anyhow::Result<Vec<(SocketAddr, SocketAddr)>> {
    let text = if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut it = line.split_whitespace();
        let (Some(a), Some(b), None) = (it.next(), it.next(), it.next()) else {
            anyhow::bail!("{}:{}: expected `INTERNAL EXTERNAL`", file.display(), n + 1);
        };
        let parse = |s: &str| {
            s.parse::<SocketAddr>()
                .with_context(|| format!("{}:{}: `{s}` is not ADDR:PORT", file.display(), n + 1))
        };
        out.push((parse(a)?, parse(b)?));
    }
    Ok(out)
}

fn pairs(
    internal: Option<SocketAddr>,
    external: Option<SocketAddr>,
    file: Option<PathBuf>,
) -> anyhow::Result<Vec<(SocketAddr, SocketAddr)>> {
    match (internal, external, file) {
        (_, _, Some(f)) => read_pairs(&f),
        (Some(i), Some(e), None) => Ok(vec![(i, e)]),
        _ => anyhow::bail!("give INTERNAL and EXTERNAL, or --file"),
    }
}

fn media(cmd: MediaCommand) -> anyhow::Result<()> {
    match cmd {
        MediaCommand::Add {
            config,
            internal,
            external,
            file,
        } => {
            let todo = pairs(internal, external, file)?;
            let m = media_maps(&config)?;
            for (i, e) in &todo {
                m.install(*i, *e)?;
            }
            println!("installed {} media binding(s)", todo.len());
        }
        MediaCommand::Del {
            config,
            internal,
            external,
            file,
        } => {
            let todo = pairs(internal, external, file)?;
            let m = media_maps(&config)?;
            let mut removed = 0;
            for (i, e) in &todo {
                if m.remove(*i, *e)? {
                    removed += 1;
                } else {
                    eprintln!("no binding {i} ↔ {e}");
                }
            }
            println!("removed {removed} media binding(s)");
            if removed < todo.len() {
                anyhow::bail!("{} binding(s) were not installed", todo.len() - removed);
            }
        }
        MediaCommand::List { config, json } => {
            let list = media_maps(&config)?.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            // Monotonic clock, as bpf_ktime_get_ns: the age of the last packet.
            let now = {
                let mut ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: clock_gettime into a valid timespec.
                unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
                ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
            };
            println!(
                "{:<46} {:<46} {:>12} {:>12} {:>10}",
                "internal", "external", "packets out", "packets in", "idle (s)"
            );
            let opt = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
            for b in &list {
                let idle = if b.last_seen_ns == 0 {
                    "never".to_string()
                } else {
                    format!("{:.1}", now.saturating_sub(b.last_seen_ns) as f64 / 1e9)
                };
                println!(
                    "{:<46} {:<46} {:>12} {:>12} {:>10}",
                    b.internal.to_string(),
                    b.external.to_string(),
                    opt(b.packets_out),
                    opt(b.packets_in),
                    idle
                );
            }
            println!("{} binding(s)", list.len());
        }
    }
    Ok(())
}
