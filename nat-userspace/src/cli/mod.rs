//! The `sipnat` command line (clap derive). One module per subcommand; this file only
//! defines the grammar and dispatches. Exit codes: 0 success, 1 runtime failure (bad input
//! file, daemon error), 2 bad usage or not available.

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, CommandFactory, Parser, Subcommand};

mod check_config;
mod control;
mod loadtest;
mod rewrite;
mod run;
mod xdp;

/// Exit code for a runtime failure.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for bad usage (and for subcommands not built yet).
pub const EXIT_USAGE: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "sipnat",
    version,
    about = "Kernel-bypass SIP NAT rewriter: XDP steering + AF_XDP workers rewriting SIP/SDP",
    propagate_version = true
)]
pub struct Cli {
    /// Control socket of the daemon (default /run/sipnat/sipnat.sock).
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Load and attach the XDP program, start the workers and the control plane.
    Run(RunArgs),
    /// Attached interfaces, mode, workers, external address and its source/age, uptime.
    Status(StatusArgs),
    /// Per-interface and per-worker counters, rewrites by kind, drops by reason, pps.
    Stats(StatsArgs),
    /// NAPT bindings of SIP endpoints and media bindings learned from SDP.
    Flows(FlowsArgs),
    /// Change a setting of the running daemon.
    #[command(subcommand)]
    Set(SetCommand),
    /// Re-enable steering (SIP goes through sipnat again).
    Enable(ControlArgs),
    /// Disable steering: every packet takes the kernel's path, unrewritten.
    Disable(ControlArgs),
    /// Re-read the config file and publish it to the workers without restarting them.
    Reload(ControlArgs),
    /// Validate a config file (syntax, with line and column, and semantics).
    CheckConfig(CheckConfigArgs),
    /// Offline dry run: rewrite one SIP message or a whole pcap.
    Rewrite(rewrite::RewriteArgs),
    /// Line-rate SIP load generator and verifier over AF_XDP.
    Loadtest(Box<loadtest::LoadtestArgs>),
    /// Diagnostics for the XDP program (verifier check, live verdict counters) and its
    /// static media NAT bindings.
    #[command(subcommand)]
    Xdp(xdp::XdpCommand),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Config file.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: PathBuf,
    /// Do not run: remove what a previous daemon left pinned (and so attached) on the
    /// configured interfaces, then exit.
    #[arg(long)]
    pub cleanup: bool,
}

#[derive(Args, Debug)]
pub struct ControlArgs {
    /// Find the daemon's socket in this config file.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub control: ControlArgs,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    #[command(flatten)]
    pub control: ControlArgs,
    /// Refresh in place every second.
    #[arg(long)]
    pub watch: bool,
    /// Machine-readable output (stable field names).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct FlowsArgs {
    #[command(flatten)]
    pub control: ControlArgs,
    /// Only the bindings with this internal or external address.
    #[arg(long, value_name = "IP")]
    pub addr: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum SetCommand {
    /// Publish a new external address to the workers (hitless).
    ExternalIp {
        /// IPv4 or IPv6 address.
        addr: String,
        #[command(flatten)]
        control: ControlArgs,
    },
}

#[derive(Args, Debug)]
pub struct CheckConfigArgs {
    /// Config file to check.
    pub file: PathBuf,
}

/// The whole grammar as a [`clap::Command`]: what `sipnat --help` prints, and what the
/// man pages and shell completions of the package are generated from
/// (`examples/gen-assets.rs`, run by `cargo xtask deb`).
pub fn command() -> clap::Command {
    Cli::command()
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run(_)) {
        init_logging("info");
    }
    let g = cli.socket.as_deref();
    match cli.command {
        Command::Run(a) if a.cleanup => run::cleanup(&a.config),
        Command::Run(a) => run::run(&a.config),
        Command::Status(a) => control::status(control::socket(g, &a.control), a.json),
        Command::Stats(a) => control::stats(control::socket(g, &a.control), a.watch, a.json),
        Command::Flows(a) => control::flows(control::socket(g, &a.control), a.addr, a.json),
        Command::Set(SetCommand::ExternalIp { addr, control: c }) => control::simple(
            control::socket(g, &c),
            crate::control::protocol::Command::SetExternalIp { addr },
        ),
        Command::Enable(c) => control::simple(
            control::socket(g, &c),
            crate::control::protocol::Command::Enable,
        ),
        Command::Disable(c) => control::simple(
            control::socket(g, &c),
            crate::control::protocol::Command::Disable,
        ),
        Command::Reload(c) => control::simple(
            control::socket(g, &c),
            crate::control::protocol::Command::Reload,
        ),
        Command::Xdp(cmd) => xdp::run(cmd),
        Command::Rewrite(a) => rewrite::run(a),
        Command::CheckConfig(a) => check_config::run(&a.file),
        Command::Loadtest(a) => loadtest::run(*a),
    }
}

/// tracing to stderr. Level: `SIPNAT_LOG` (e.g. `debug`, or a filter like
/// `sipnat::control=debug`), else `RUST_LOG`, else `default` (for `sipnat run`, the
/// config's `[log] level`).
///
/// On a terminal: colours and timestamps. Otherwise (a file, a pipe, journald): plain text
/// without timestamps, which the collector adds itself. Under systemd (`JOURNAL_STREAM`
/// set) each line also starts with its syslog priority (`<3>` error, `<4>` warn, `<6>`
/// info, `<7>` debug/trace), which journald turns into the entry's priority, so
/// `journalctl -u sipnat -p warning` shows warnings and errors only.
pub(crate) fn init_logging(default: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::{fmt::format, EnvFilter};
    let filter = ["SIPNAT_LOG", "RUST_LOG"]
        .iter()
        .find_map(|var| EnvFilter::try_from_env(var).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if journal {
        builder
            .with_ansi(false)
            .event_format(SyslogPriority(format().without_time().with_ansi(false)))
            .try_init()
    } else if !std::io::stderr().is_terminal() {
        builder.with_ansi(false).without_time().try_init()
    } else {
        builder.try_init()
    };
}

/// Prefixes each log line with its syslog priority (`<N>`, sd-daemon(3) style).
struct SyslogPriority<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for SyslogPriority<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            _ => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}

/// Prints `sipnat: <error>` (with its causes on one line) and returns exit code 1.
pub fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!("sipnat: {err:#}");
    ExitCode::from(EXIT_FAILURE)
}
