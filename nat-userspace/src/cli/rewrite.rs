//! `sipnat rewrite`: the offline dry run. One message (`--message`, a readable diff or the
//! exact bytes with `--out`) or a whole capture (`--pcap IN --out OUT`, pcap or pcapng;
//! Ethernet/VLAN, raw IP and Linux cooked link types).

use std::{
    fs::File,
    io::{BufReader, BufWriter, Read, Write},
    net::IpAddr,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{anyhow, bail, Context as _};
use clap::{ArgGroup, Args, ValueEnum};
use pcap_file::{
    pcap::{PcapPacket, PcapReader, PcapWriter},
    pcapng::{Block, PcapNgReader, PcapNgWriter},
    DataLink,
};

use super::{EXIT_FAILURE, EXIT_USAGE};
use crate::{
    config::{Config, ExternalSource},
    nat::{decide, ExternalAddrs, Net, RewriteConfig},
    rewrite::{packet::rewrite_packet, rewrite_message, Changes, Context, Direction, Outcome},
    wire::{self, Link},
};

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("input").required(true).args(["message", "pcap"])))]
pub struct RewriteArgs {
    /// Config file (its rules, local nets, rewrite options and static external address).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Quick run without a config: internal network rewritten (repeatable).
    #[arg(long, value_name = "CIDR")]
    pub internal: Vec<String>,
    /// Quick run without a config: external address (IPv4 and/or IPv6; repeatable).
    #[arg(long, value_name = "IP")]
    pub external: Vec<IpAddr>,
    /// Direction: out (inside → outside) or in (outside → inside).
    #[arg(long, value_enum, default_value_t = DirectionArg::Out)]
    pub direction: DirectionArg,
    /// Message mode: the packet's source address (optional).
    #[arg(long, value_name = "IP")]
    pub src: Option<IpAddr>,
    /// Message mode: the packet's destination. Outbound: a destination inside local_nets
    /// is internal traffic (not rewritten). Inbound: the internal host it is for.
    #[arg(long, value_name = "IP")]
    pub dst: Option<IpAddr>,
    /// Also rewrite Record-Route/Route.
    #[arg(long)]
    pub record_route: bool,
    /// Also rewrite From/To.
    #[arg(long)]
    pub from_to: bool,
    /// One SIP message to rewrite.
    #[arg(long, value_name = "FILE")]
    pub message: Option<PathBuf>,
    /// A pcap or pcapng capture to rewrite (needs --out).
    #[arg(long, value_name = "IN", requires = "out")]
    pub pcap: Option<PathBuf>,
    /// Where to write the result (message: exact bytes, no added newline).
    #[arg(long, value_name = "OUT")]
    pub out: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DirectionArg {
    Out,
    In,
}

/// Bad usage (exit 2) vs. bad input (exit 1).
enum Failure {
    Usage(String),
    Input(anyhow::Error),
}

pub fn run(a: RewriteArgs) -> ExitCode {
    let res = (|| -> Result<(), Failure> {
        let (cfg, ext) = snapshot(&a).map_err(Failure::Usage)?;
        let dir = match a.direction {
            DirectionArg::Out => Direction::Outbound,
            DirectionArg::In => Direction::Inbound,
        };
        match (&a.message, &a.pcap) {
            (Some(m), _) => message(&a, m, &cfg, ext, dir).map_err(Failure::Input),
            (None, Some(p)) => pcap(
                p,
                a.out.as_deref().expect("clap requires --out"),
                &cfg,
                ext,
                dir,
            )
            .map_err(Failure::Input),
            (None, None) => Err(Failure::Usage(
                "give --message FILE or --pcap IN --out OUT".into(),
            )),
        }
    })();
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("sipnat rewrite: {m}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Input(e)) => {
            eprintln!("sipnat rewrite: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// The rewrite config and external addresses from `-c` or `--internal/--external`.
fn snapshot(a: &RewriteArgs) -> Result<(RewriteConfig, ExternalAddrs), String> {
    let mut ext = ExternalAddrs::default();
    let mut cfg = match &a.config {
        Some(path) => {
            let (c, text) = Config::load(path).map_err(|e| e.to_string())?;
            let problems = c.validate(&text);
            if let Some(p) = problems.first() {
                return Err(format!(
                    "{}:{}:{}: {}",
                    path.display(),
                    p.line,
                    p.column,
                    p.message
                ));
            }
            let (v4, v6) = c.external_sources();
            for src in [v4, v6] {
                if let ExternalSource::Static(ip) = src {
                    set_ext(&mut ext, ip);
                }
            }
            c.rewrite_config()
        }
        None => {
            if a.internal.is_empty() || a.external.is_empty() {
                return Err("give -c CONFIG, or --internal CIDR and --external IP".into());
            }
            let mut c = RewriteConfig::default();
            for s in &a.internal {
                let net = Net::parse(s)
                    .ok_or_else(|| format!("--internal `{s}` is not a CIDR network or address"))?;
                c.rules.push(crate::nat::Rule {
                    internal: net,
                    external: None,
                    ports: Default::default(),
                });
            }
            c
        }
    };
    for ip in &a.external {
        set_ext(&mut ext, *ip);
    }
    if ext.is_empty() {
        return Err("no static external address: the config's source is dynamic (STUN/interface); give --external IP".into());
    }
    cfg.record_route |= a.record_route;
    cfg.from_to |= a.from_to;
    Ok((cfg, ext))
}

fn set_ext(ext: &mut ExternalAddrs, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => ext.v4 = Some(v4),
        IpAddr::V6(v6) => ext.v6 = Some(v6),
    }
}

/// Tailroom for a message to grow into.
const TAILROOM: usize = 4096;

fn message(
    a: &RewriteArgs,
    path: &Path,
    cfg: &RewriteConfig,
    ext: ExternalAddrs,
    dir: Direction,
) -> anyhow::Result<()> {
    let mut input = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut input))
        .with_context(|| format!("cannot read {}", path.display()))?;
    let len = input.len();
    let mut internal = None;
    if let (Direction::Outbound, Some(dst)) = (dir, a.dst) {
        if cfg.is_local(dst) {
            eprintln!("destination {dst} is inside local_nets: internal traffic is not rewritten");
            return write_or_diff(a, path, &input, &input, None);
        }
    }
    if dir == Direction::Inbound {
        internal = a.dst;
    }
    let mut buf = input.clone();
    buf.resize(len + TAILROOM, 0);
    let ctx = Context {
        config: cfg,
        external: ext,
        direction: dir,
        internal,
    };
    let r = rewrite_message(&mut buf, len, &ctx);
    buf.truncate(r.len);
    if r.family_mismatch > 0 {
        eprintln!(
            "note: {} address(es) left alone: no external address of their family",
            r.family_mismatch
        );
    }
    match r.outcome {
        Outcome::Rewritten(ch) => write_or_diff(a, path, &input, &buf, Some(ch)),
        Outcome::Unchanged => write_or_diff(a, path, &input, &buf, None),
        Outcome::NotSip(k) => bail!("{} is not a SIP message ({})", path.display(), k.name()),
        Outcome::Malformed(m) => bail!(
            "{} is malformed SIP ({}): sipnat forwards it unchanged",
            path.display(),
            m.name()
        ),
        Outcome::TooBig => bail!(
            "the rewritten message would exceed {} bytes",
            len + TAILROOM
        ),
    }
}

fn write_or_diff(
    a: &RewriteArgs,
    path: &Path,
    before: &[u8],
    after: &[u8],
    ch: Option<Changes>,
) -> anyhow::Result<()> {
    if let Some(out) = &a.out {
        std::fs::write(out, after).with_context(|| format!("cannot write {}", out.display()))?;
        return Ok(());
    }
    let mut o = std::io::stdout().lock();
    let Some(ch) = ch else {
        writeln!(o, "{}: nothing to rewrite", path.display())?;
        return Ok(());
    };
    writeln!(o, "--- {}", path.display())?;
    writeln!(o, "+++ rewritten")?;
    let (lb, la) = (lines(before), lines(after));
    for (i, (b, x)) in lb.iter().zip(la.iter()).enumerate() {
        if b != x {
            writeln!(o, "@@ line {} @@", i + 1)?;
            writeln!(o, "-{}", String::from_utf8_lossy(b))?;
            writeln!(o, "+{}", String::from_utf8_lossy(x))?;
        }
    }
    let kinds: Vec<String> = ch
        .fields()
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    writeln!(
        o,
        "rewritten: {} ({} → {} bytes)",
        kinds.join(", "),
        before.len(),
        after.len()
    )?;
    Ok(())
}

/// Lines without their terminators (CRLF, LF or CR).
fn lines(b: &[u8]) -> Vec<&[u8]> {
    let mut v = Vec::new();
    let mut p = 0;
    while p < b.len() {
        let (ce, next) = crate::sip::scan::line_end(b, p, b.len());
        v.push(&b[p..ce]);
        p = next;
    }
    v
}

/// Counts for the pcap summary.
#[derive(Default)]
struct Summary {
    packets: u64,
    rewritten: u64,
    unchanged: u64,
    not_sip: u64,
    malformed: u64,
    too_big: u64,
    fragments: u64,
    internal: u64,
    other_direction: u64,
    truncated: u64,
}

fn link_of(dl: DataLink) -> Option<Link> {
    match dl {
        DataLink::ETHERNET => Some(Link::Ethernet),
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Some(Link::RawIp),
        DataLink::LINUX_SLL => Some(Link::LinuxSll),
        DataLink::LINUX_SLL2 => Some(Link::LinuxSll2),
        _ => None,
    }
}

fn pcap(
    input: &Path,
    out: &Path,
    cfg: &RewriteConfig,
    ext: ExternalAddrs,
    dir: Direction,
) -> anyhow::Result<()> {
    let mut magic = [0u8; 4];
    File::open(input)
        .and_then(|mut f| f.read_exact(&mut magic))
        .with_context(|| format!("cannot read {}", input.display()))?;
    let file = BufReader::new(File::open(input)?);
    let sink = BufWriter::new(
        File::create(out).with_context(|| format!("cannot create {}", out.display()))?,
    );
    let mut s = Summary::default();
    if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        let mut r = PcapNgReader::new(file)
            .map_err(|e| anyhow!("{}: not a pcapng file: {e}", input.display()))?;
        let mut w = PcapNgWriter::with_section_header(sink, r.section().clone().into_owned())?;
        while let Some(block) = r.next_block() {
            let block = block.map_err(|e| anyhow!("{}: {e}", input.display()))?;
            match block {
                Block::EnhancedPacket(mut p) => {
                    let dl = w
                        .interfaces()
                        .get(p.interface_id as usize)
                        .map(|i| i.linktype)
                        .unwrap_or(DataLink::ETHERNET);
                    if let Some(data) = packet(
                        &p.data,
                        p.original_len as usize,
                        link_of(dl),
                        cfg,
                        ext,
                        dir,
                        &mut s,
                    ) {
                        p.original_len = data.len() as u32;
                        p.data = data.into();
                    }
                    w.write_block(&Block::EnhancedPacket(p))?;
                }
                Block::SectionHeader(_) => {}
                other => {
                    w.write_block(&other)?;
                }
            }
        }
        w.into_inner().flush()?;
    } else {
        let mut r = PcapReader::new(file)
            .map_err(|e| anyhow!("{}: not a pcap or pcapng file: {e}", input.display()))?;
        let header = r.header();
        let link = link_of(header.datalink);
        let mut w = PcapWriter::with_header(sink, header)?;
        while let Some(p) = r.next_packet() {
            let p = p.map_err(|e| anyhow!("{}: {e}", input.display()))?;
            match packet(&p.data, p.orig_len as usize, link, cfg, ext, dir, &mut s) {
                Some(data) => {
                    w.write_packet(&PcapPacket::new(p.timestamp, data.len() as u32, &data))?
                }
                None => w.write_packet(&p)?,
            };
        }
        w.into_writer().flush()?;
    }
    println!(
        "{}: {} packets: {} rewritten, {} unchanged, {} not SIP, {} malformed{}{}{}{}{}",
        input.display(),
        s.packets,
        s.rewritten,
        s.unchanged,
        s.not_sip,
        s.malformed,
        opt(", too big", s.too_big),
        opt(", fragments (not reassembled)", s.fragments),
        opt(", internal (both ends local)", s.internal),
        opt(", other direction", s.other_direction),
        opt(", truncated captures", s.truncated),
    );
    println!("wrote {}", out.display());
    Ok(())
}

fn opt(label: &str, n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!("{label} {n}")
    }
}

/// Rewrites one captured packet; `None` keeps it as it was.
fn packet(
    data: &[u8],
    orig_len: usize,
    link: Option<Link>,
    cfg: &RewriteConfig,
    ext: ExternalAddrs,
    dir: Direction,
    s: &mut Summary,
) -> Option<Vec<u8>> {
    s.packets += 1;
    let Some(link) = link else {
        s.not_sip += 1;
        return None;
    };
    if data.len() < orig_len {
        s.truncated += 1;
        return None;
    }
    let Ok(layout) = wire::parse(data, link) else {
        s.not_sip += 1;
        return None;
    };
    if layout.fragment.is_some() {
        s.fragments += 1;
        return None;
    }
    if layout.udp(data).is_none() {
        s.not_sip += 1;
        return None;
    }
    let decision = match dir {
        Direction::Outbound => {
            if cfg.rule_for(layout.src).is_none() {
                s.other_direction += 1;
                return None;
            }
            decide::outbound(cfg, &ext, layout.src, layout.dst)
        }
        Direction::Inbound => {
            if !cfg.is_external(layout.dst, &ext) && cfg.l3 == crate::nat::L3Mode::Snat {
                s.other_direction += 1;
                return None;
            }
            decide::inbound(cfg, &ext, layout.dst, None)
        }
    };
    let (direction, l3, internal) = match decision {
        decide::Decision::Rewrite {
            direction,
            l3,
            internal,
        } => (direction, l3, internal),
        decide::Decision::Internal => {
            s.internal += 1;
            return None;
        }
        decide::Decision::NoMapping => {
            s.other_direction += 1;
            return None;
        }
    };
    let mut buf = data[..layout.ip_end].to_vec();
    buf.resize(layout.ip_end + TAILROOM, 0);
    let ctx = Context {
        config: cfg,
        external: ext,
        direction,
        internal,
    };
    let r = rewrite_packet(&mut buf, &layout, &ctx, l3).ok()?;
    match r.sip {
        Outcome::Rewritten(_) => s.rewritten += 1,
        Outcome::Unchanged => s.unchanged += 1,
        Outcome::NotSip(_) => s.not_sip += 1,
        Outcome::Malformed(_) => s.malformed += 1,
        Outcome::TooBig => {
            s.too_big += 1;
            return None;
        }
    }
    if !matches!(r.sip, Outcome::Rewritten(_)) && !r.l3_changed {
        return None;
    }
    buf.truncate(r.len);
    Some(buf)
}
