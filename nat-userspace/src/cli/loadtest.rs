//! `sipnat loadtest`: argument grammar, the live progress line, and the report output.
//! The engine is [`crate::loadtest`].
//!
//! Exit codes: 0 run completed and no incorrect packet, 3 incorrect packets were received,
//! 2 bad usage or the root-namespace refusal, 1 setup failure.

use std::{
    io::IsTerminal,
    net::IpAddr,
    path::PathBuf,
    process::ExitCode,
    sync::{atomic::AtomicBool, Arc},
    time::Duration,
};

use clap::{ArgGroup, Args};

use crate::{
    loadtest::{self, report::fmt_rate, template::Builtin, Options, RxOptions, TemplateSource},
    nat::Net,
};

/// Exit code when the verifier found incorrect packets.
pub const EXIT_INCORRECT: u8 = 3;

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("pace").required(true).args(["rate", "max"])))]
#[command(group(ArgGroup::new("source").args(["template", "pcap"])))]
#[command(group(ArgGroup::new("length").args(["duration", "count"])))]
pub struct LoadtestArgs {
    /// Interface to send on (must be in a network namespace, see --i-own-this-link).
    #[arg(short = 'i', long, visible_alias = "tx", value_name = "IF")]
    pub interface: String,
    /// Built-in message (invite, register, options, 200ok; default invite) or a file with
    /// one SIP message.
    #[arg(short = 't', long, value_name = "NAME|FILE")]
    pub template: Option<String>,
    /// Send the SIP-over-UDP payloads of this capture (pcap or pcapng) round-robin.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Distinct flows: Call-ID, branch, tag, source port, media port.
    #[arg(short = 'k', long, default_value_t = 1)]
    pub flows: u32,
    /// Packets per second (all cores together; token bucket).
    #[arg(short = 'r', long, value_name = "PPS")]
    pub rate: Option<f64>,
    /// Send as fast as possible.
    #[arg(long)]
    pub max: bool,
    /// Seconds to send (default 5 unless --count).
    #[arg(short = 'd', long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Packets to send.
    #[arg(short = 'n', long, value_name = "N")]
    pub count: Option<u64>,
    /// TX threads (one AF_XDP socket each on queues 0..N, pinned to the allowed CPUs in order).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub cores: usize,
    /// TX queues to use instead of 0..cores (comma-separated; one thread per queue).
    #[arg(long, value_delimiter = ',', value_name = "Q,...")]
    pub queues: Vec<u32>,
    /// CPUs to pin the TX threads to (comma-separated, in queue order).
    #[arg(long, value_delimiter = ',', value_name = "CPU,...")]
    pub cpus: Vec<usize>,
    /// Source address of the generated packets (the private side), IPv4 or IPv6.
    #[arg(long, value_name = "ADDR")]
    pub src_ip: IpAddr,
    /// Destination address (the same family as --src-ip).
    #[arg(long, value_name = "ADDR")]
    pub dst_ip: IpAddr,
    /// Source MAC (default: the interface's).
    #[arg(long, value_name = "MAC", value_parser = parse_mac)]
    pub src_mac: Option<[u8; 6]>,
    /// Destination MAC (default: the next hop's, from the neighbour table or ARP).
    #[arg(long, value_name = "MAC", value_parser = parse_mac)]
    pub dst_mac: Option<[u8; 6]>,
    /// UDP source port of flow 0 (flow f uses port + f).
    #[arg(long, default_value_t = 5060)]
    pub src_port: u16,
    /// UDP destination port (the SIP port).
    #[arg(long, default_value_t = 5060)]
    pub dst_port: u16,
    /// Receive and verify on this interface (the far side of the device under test).
    #[arg(long, value_name = "IF")]
    pub rx_interface: Option<String>,
    /// Network namespace of --rx-interface (a name from `ip netns list`, or a path); only
    /// the receive thread enters it.
    #[arg(long, value_name = "NAME", requires = "rx_interface")]
    pub rx_netns: Option<String>,
    /// Receive queues (one AF_XDP socket each; default 0).
    #[arg(long, value_delimiter = ',', default_value = "0", value_name = "Q,...")]
    pub rx_queues: Vec<u32>,
    /// CPU to pin the receive thread to.
    #[arg(long, value_name = "CPU")]
    pub rx_cpu: Option<usize>,
    /// The external address the device under test must have written.
    #[arg(long, value_name = "ADDR")]
    pub expect_external: Option<IpAddr>,
    /// IP source of received packets (default: --expect-external).
    #[arg(long, value_name = "ADDR")]
    pub expect_src: Option<IpAddr>,
    /// Media NAT is on at the device under test (sipnat's `[media] port_range`, e.g.
    /// 30000-39999): the SDP `m=` / `a=rtcp` ports of the external address must be an
    /// allocated even/odd pair of this range.
    #[arg(long, value_name = "FIRST-LAST", value_parser = parse_range)]
    pub expect_media_range: Option<crate::nat::napt::PortRange>,
    /// Private network that must not be left in any address field (repeatable; default
    /// 10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7). The source address always counts.
    #[arg(long, value_name = "NET", value_parser = parse_net)]
    pub private: Vec<Net>,
    /// Allow sending on an interface of the root network namespace.
    #[arg(long)]
    pub i_own_this_link: bool,
    /// Descriptors per TX batch.
    #[arg(long, default_value_t = 64)]
    pub batch: u32,
    /// TX ring entries (power of two). Small by default: fewer frames in use keep the
    /// frames the kernel copies from warm in the cache.
    #[arg(long, default_value_t = 128)]
    pub ring: u32,
    /// UMEM frames per TX socket (rounded up so every template/flow pair gets the same
    /// number of frames when that fits in 16384 frames).
    #[arg(long, default_value_t = 512)]
    pub frames: u32,
    /// Incorrect packets kept for the report.
    #[arg(long, default_value_t = 5)]
    pub samples: usize,
    /// After sending, wait until nothing arrived for this many milliseconds.
    #[arg(long, default_value_t = 300)]
    pub drain_ms: u64,
    /// Print the JSON report on stdout (instead of the human summary).
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE")]
    pub json_out: Option<PathBuf>,
    /// Write report.json (the report plus per-second samples) and report.svg (rate and
    /// latency over time) into this directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// No live progress line (it shows only when stdout and stderr are terminals anyway).
    #[arg(long)]
    pub no_progress: bool,
}

fn parse_range(s: &str) -> Result<crate::nat::napt::PortRange, String> {
    crate::nat::napt::PortRange::parse(s)
        .ok_or_else(|| format!("`{s}`: not a port range FIRST-LAST"))
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let bytes: Result<Vec<u8>, _> = parts.iter().map(|p| u8::from_str_radix(p, 16)).collect();
    match bytes {
        Ok(b) if b.len() == 6 => Ok([b[0], b[1], b[2], b[3], b[4], b[5]]),
        _ => Err(format!("`{s}` is not a MAC address (aa:bb:cc:dd:ee:ff)")),
    }
}

fn parse_net(s: &str) -> Result<Net, String> {
    Net::parse(s).ok_or_else(|| format!("`{s}` is not a network (ADDR/LEN)"))
}

fn builtin(name: &str) -> Option<Builtin> {
    match name.to_ascii_lowercase().as_str() {
        "invite" => Some(Builtin::Invite),
        "register" => Some(Builtin::Register),
        "options" => Some(Builtin::Options),
        "200ok" | "200" | "ok" => Some(Builtin::Ok200),
        _ => None,
    }
}

fn options(a: &LoadtestArgs) -> Result<Options, String> {
    let source = match (&a.pcap, a.template.as_deref()) {
        (Some(p), _) => TemplateSource::Pcap(p.clone()),
        (None, Some(t)) => match builtin(t) {
            Some(b) if !std::path::Path::new(t).exists() => TemplateSource::Builtin(b),
            _ => TemplateSource::File(PathBuf::from(t)),
        },
        (None, None) => TemplateSource::Builtin(Builtin::Invite),
    };
    if let Some(r) = a.rate {
        if !(r.is_finite() && r > 0.0) {
            return Err("--rate must be a positive number of packets per second".into());
        }
    }
    if a.cores == 0 {
        return Err("--cores must be at least 1".into());
    }
    if !a.ring.is_power_of_two() || a.ring < 64 {
        return Err("--ring must be a power of two ≥ 64".into());
    }
    if a.batch == 0 || a.batch as usize > loadtest::gen::MAX_BATCH {
        return Err(format!("--batch must be 1..={}", loadtest::gen::MAX_BATCH));
    }
    let duration = match (a.duration, a.count) {
        (Some(d), _) if !(d.is_finite() && d > 0.0) => {
            return Err("--duration must be a positive number of seconds".into())
        }
        (Some(d), _) => Some(Duration::from_secs_f64(d)),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(5)),
    };
    let queues = if a.queues.is_empty() {
        (0..a.cores as u32).collect()
    } else {
        a.queues.clone()
    };
    let cpus = if a.cpus.is_empty() {
        let allowed = crate::sys::allowed_cpus();
        (0..queues.len())
            .filter_map(|i| allowed.get(i % allowed.len().max(1)).copied())
            .collect()
    } else {
        a.cpus.clone()
    };
    Ok(Options {
        interface: a.interface.clone(),
        queues,
        cpus,
        source,
        flows: a.flows.max(1),
        rate: if a.max { None } else { a.rate },
        duration,
        count: a.count,
        src_ip: a.src_ip,
        dst_ip: a.dst_ip,
        src_mac: a.src_mac,
        dst_mac: a.dst_mac,
        src_port: a.src_port,
        dst_port: a.dst_port,
        rx: a.rx_interface.as_ref().map(|i| RxOptions {
            interface: i.clone(),
            netns: a.rx_netns.clone(),
            queues: a.rx_queues.clone(),
            cpu: a.rx_cpu,
        }),
        expect_external: a.expect_external,
        expect_src: a.expect_src,
        expect_media_range: a.expect_media_range,
        private: a.private.clone(),
        i_own_this_link: a.i_own_this_link,
        batch: a.batch,
        ring: a.ring,
        frames: a.frames,
        samples: a.samples,
        drain: Duration::from_millis(a.drain_ms),
    })
}

/// The live line is for a person watching: only when both stdout (where the report goes)
/// and stderr (where the line goes) are terminals, and not with --no-progress.
fn show_progress(disabled: bool, stdout_tty: bool, stderr_tty: bool) -> bool {
    !disabled && stdout_tty && stderr_tty
}

pub fn run(a: LoadtestArgs) -> ExitCode {
    let o = match options(&a) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("sipnat loadtest: {e}");
            return ExitCode::from(super::EXIT_USAGE);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, Arc::clone(&stop));
    }
    let bar = show_progress(
        a.no_progress,
        std::io::stdout().is_terminal(),
        std::io::stderr().is_terminal(),
    )
    .then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        b
    });
    let mut on_progress = |p: &loadtest::Progress| {
        if let Some(b) = &bar {
            let loss = if o.rx.is_some() && p.sent > 0 {
                format!(
                    "  loss {:.2} %",
                    100.0 * p.sent.saturating_sub(p.verified) as f64 / p.sent as f64
                )
            } else {
                String::new()
            };
            b.set_message(format!(
                "offered {:>9} pps  delivered {:>9} pps  sent {}  verified {}{loss}  incorrect {}",
                fmt_rate(p.offered_pps),
                fmt_rate(p.delivered_pps),
                p.sent,
                p.verified,
                p.incorrect
            ));
            b.tick();
        }
    };
    let res = loadtest::run(&o, stop, &mut on_progress);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let report = match res {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sipnat loadtest: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let json = serde_json::to_string_pretty(&report).unwrap_or_default();
    if let Some(p) = &a.json_out {
        if let Err(e) = std::fs::write(p, format!("{json}\n")) {
            eprintln!("sipnat loadtest: cannot write {}: {e}", p.display());
            return ExitCode::from(super::EXIT_FAILURE);
        }
    }
    let files = match &a.report {
        Some(dir) => match loadtest::report::write_dir(&report, dir) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!(
                    "sipnat loadtest: cannot write the report into {}: {e}",
                    dir.display()
                );
                return ExitCode::from(super::EXIT_FAILURE);
            }
        },
        None => None,
    };
    if a.json {
        println!("{json}");
    } else {
        print!("{}", report.human());
        if let Some((j, s)) = files {
            println!("  report     {}, {}", j.display(), s.display());
        }
    }
    if report.incorrect > 0 {
        ExitCode::from(EXIT_INCORRECT)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_and_builtins_parse() {
        assert_eq!(
            parse_mac("02:6b:61:00:00:0a"),
            Ok([2, 0x6b, 0x61, 0, 0, 10])
        );
        assert!(parse_mac("02:6b:61:00:00").is_err());
        assert_eq!(builtin("200ok"), Some(Builtin::Ok200));
        assert_eq!(builtin("INVITE"), Some(Builtin::Invite));
        assert_eq!(builtin("nope.sip"), None);
    }

    #[test]
    fn progress_line_only_on_a_terminal() {
        assert!(show_progress(false, true, true));
        // Output piped or redirected (a script, `| tee`, the demo): no live line.
        assert!(!show_progress(false, false, true));
        assert!(!show_progress(false, true, false));
        assert!(!show_progress(true, true, true));
    }
}
