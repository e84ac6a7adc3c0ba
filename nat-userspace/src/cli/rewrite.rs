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
    datapath::{
        pipeline::{self, Action, At, Egress, Env, MediaEnv, Pipeline, Route, Side},
        stats::{Batch, Counter},
        DataplaneSnapshot,
    },
    ip::{frag, reasm::ReasmLimits},
    loadtest::link_of,
    nat::{
        flow::{FlowKey, FlowTable},
        media::{InMemoryBindings, MediaRegistry},
        napt::NaptTable,
        ExternalAddrs, L3Mode, Net, RewriteConfig,
    },
    rewrite::Changes,
    wire::{self, emit::UdpFrame, Link},
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
    /// Message mode: the datagram's source address. Outbound: an internal host (default:
    /// the first host of the first rule). Inbound: the far end (default 192.0.2.1).
    #[arg(long, value_name = "IP")]
    pub src: Option<IpAddr>,
    /// Message mode: the datagram's destination. Outbound: the far end (default
    /// 192.0.2.1; inside local_nets it is internal traffic, not rewritten). Inbound: the
    /// internal host it is for (a flow from it to --src is assumed).
    #[arg(long, value_name = "IP")]
    pub dst: Option<IpAddr>,
    /// Quick run without a config: a UDP port that carries SIP (repeatable; default 5060).
    #[arg(long = "sip-port", value_name = "PORT")]
    pub sip_ports: Vec<u16>,
    /// The egress MTU the offline run assumes (larger packets are fragmented or refused
    /// as the daemon would).
    #[arg(long, value_name = "BYTES", default_value_t = 1500)]
    pub mtu: usize,
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
        let mut off = Offline::new(&a).map_err(Failure::Usage)?;
        match (&a.message, &a.pcap) {
            (Some(m), _) => message(&a, m, &mut off).map_err(Failure::Input),
            (None, Some(p)) => pcap(p, a.out.as_deref().expect("clap requires --out"), &mut off)
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

/// The daemon's per-packet state, offline: the published data plane, a flow table, a
/// pipeline (reassembler, scratch), and the counters.
struct Offline {
    dataplane: DataplaneSnapshot,
    flows: FlowTable,
    napt: NaptTable,
    /// Media bindings (`[media]` of `-c`), installed in memory.
    media: Option<(MediaRegistry, InMemoryBindings)>,
    pipe: Pipeline,
    batch: Batch,
    side: Side,
    mtu: usize,
    steer_fragments: bool,
}

/// Offline egress: every destination is reachable directly, the link header stays as it
/// is, the MTU is `--mtu`.
struct OfflineEgress(usize);

impl Egress for OfflineEgress {
    fn route(&self, _: Side, _: IpAddr) -> Route {
        Route::Direct {
            macs: None,
            mtu: self.0,
        }
    }
}

impl Offline {
    /// From `-c` or `--internal/--external`.
    fn new(a: &RewriteArgs) -> Result<Offline, String> {
        let mut ext = ExternalAddrs::default();
        let mut sip_ports = vec![5060];
        let mut flows = (65536, 300);
        let mut napt = None;
        let mut media = None;
        let mut reasm = ReasmLimits::default();
        let mut steer_fragments = true;
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
                sip_ports.clone_from(c.interfaces.sip_ports.get_ref());
                steer_fragments = c.interfaces.steer_fragments;
                flows = (c.nat.flow_table_size, c.nat.flow_idle_timeout);
                napt = c.nat.napt_range();
                media = c
                    .media
                    .range()
                    .filter(|_| c.media.enabled)
                    .map(|r| (MediaRegistry::new(r), InMemoryBindings::default()));
                reasm = c.datapath.reasm_limits();
                c.rewrite_config()
            }
            None => {
                if a.internal.is_empty() || a.external.is_empty() {
                    return Err("give -c CONFIG, or --internal CIDR and --external IP".into());
                }
                let mut c = RewriteConfig::default();
                for s in &a.internal {
                    let net = Net::parse(s).ok_or_else(|| {
                        format!("--internal `{s}` is not a CIDR network or address")
                    })?;
                    c.rules.push(crate::nat::Rule {
                        internal: net,
                        external: None,
                        ports: Default::default(),
                    });
                }
                if !a.sip_ports.is_empty() {
                    sip_ports.clone_from(&a.sip_ports);
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
        if a.mtu < 68 {
            return Err(format!("--mtu {} is below the IPv4 minimum of 68", a.mtu));
        }
        Ok(Offline {
            dataplane: DataplaneSnapshot::new(cfg, ext, &sip_ports).with_napt(napt),
            flows: FlowTable::new(flows.0, flows.1),
            napt: NaptTable::new(flows.0, flows.1),
            media,
            pipe: Pipeline::new(reasm, 0),
            batch: Batch::default(),
            side: match a.direction {
                DirectionArg::Out => Side::Inside,
                DirectionArg::In => Side::Outside,
            },
            mtu: a.mtu,
            steer_fragments,
        })
    }

    /// One frame through the pipeline, as the worker would handle it; `out` gets every
    /// frame that leaves (transmitted or handed to the kernel), first to last.
    fn process(
        &mut self,
        frame: &mut [u8],
        len: usize,
        link: Link,
        now_ms: u64,
        out: &mut impl FnMut(&[u8]),
    ) -> Action {
        let egress = OfflineEgress(self.mtu);
        let env = Env {
            dataplane: &self.dataplane,
            flows: &self.flows,
            napt: &self.napt,
            media: self.media.as_ref().map(|(r, s)| MediaEnv {
                registry: r,
                sink: s,
            }),
            egress: &egress,
            link,
            now_ms,
        };
        let action = self
            .pipe
            .process(&env, self.side, frame, len, &mut self.batch);
        let bytes = |at: At| match at {
            At::Frame => &frame[..],
            At::Scratch => self.pipe.scratch(),
        };
        match &action {
            Action::Tx { at, len, .. } => out(&bytes(*at)[..*len]),
            Action::Fragment {
                at,
                l3,
                len,
                mtu,
                ident,
                ..
            } => {
                let res = frag::fragment(&bytes(*at)[..*len], *l3, *mtu, *ident, &mut |p| {
                    out(p);
                    true
                });
                match res {
                    Ok(n) => {
                        self.batch.inc(Counter::Refragmented);
                        self.batch.add(Counter::FragTx, n as u64);
                    }
                    Err(_) => self.batch.inc(Counter::DropRefragment),
                }
            }
            Action::Kernel {
                at, l3, len, split, ..
            } => {
                // What the kernel is given, link header kept (the offline output is a
                // capture, not a raw socket).
                let pkt = &bytes(*at)[..*len];
                let link_hdr = &pkt[..*l3];
                let res = pipeline::kernel_pieces(pkt, *l3, *split, &mut |ip: &[u8]| {
                    let mut v = Vec::with_capacity(link_hdr.len() + ip.len());
                    v.extend_from_slice(link_hdr);
                    v.extend_from_slice(ip);
                    out(&v);
                });
                if res.is_err() {
                    self.batch.inc(Counter::DropRefragment);
                }
            }
            Action::PassFragments { held, len, .. } => {
                let (held, len) = (*held, *len);
                for k in 0..held {
                    if let Some(f) = self.pipe.held_fragment(k) {
                        out(f);
                    }
                }
                out(&frame[..len]);
            }
            Action::Consumed | Action::IcmpTooBig { .. } | Action::Drop(_) => {}
        }
        action
    }

    /// The XDP program's steering, offline: would this frame reach a worker at all?
    fn steered(&self, data: &[u8], layout: &wire::Layout) -> bool {
        if layout.fragment.is_some() {
            return self.steer_fragments;
        }
        layout.udp(data).is_some_and(|(s, d, _, _)| {
            self.dataplane.sip_ports.contains(s) || self.dataplane.sip_ports.contains(d)
        })
    }

    /// Is this packet of the direction being rewritten (outbound: from an internal host;
    /// inbound: to an external address, or anything under `l3 = "keep"`)?
    fn our_direction(&self, layout: &wire::Layout) -> bool {
        let cfg = &self.dataplane.config;
        match self.side {
            Side::Inside => cfg.rule_for(layout.src).is_some(),
            Side::Outside => {
                cfg.l3 == L3Mode::Keep || cfg.is_external(layout.dst, &self.dataplane.external)
            }
        }
    }
}

/// A host of `net`: its only one, or the first after the network address.
fn first_host(net: &Net) -> IpAddr {
    match *net {
        Net::V4 { addr, prefix, .. } => {
            IpAddr::V4(std::net::Ipv4Addr::from(addr + u32::from(prefix < 31)))
        }
        Net::V6 { addr, prefix, .. } => {
            IpAddr::V6(std::net::Ipv6Addr::from(addr + u128::from(prefix < 127)))
        }
    }
}

fn set_ext(ext: &mut ExternalAddrs, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => ext.v4 = Some(v4),
        IpAddr::V6(v6) => ext.v6 = Some(v6),
    }
}

/// Tailroom for a message to grow into.
const TAILROOM: usize = 4096;

/// A far end for message mode when none is given (TEST-NET-1 / the IPv6 documentation
/// prefix).
fn default_remote(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))
    } else {
        IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1))
    }
}

/// Message mode: the message goes through the same pipeline as a packet would, in a UDP
/// datagram between `--src` and `--dst` on the first SIP port.
fn message(a: &RewriteArgs, path: &Path, off: &mut Offline) -> anyhow::Result<()> {
    let mut input = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut input))
        .with_context(|| format!("cannot read {}", path.display()))?;
    let dp = &off.dataplane;
    let port = dp.sip_ports.iter().next().unwrap_or(5060);
    let v6 = a
        .src
        .or(a.dst)
        .map_or(dp.external.v4.is_none(), |ip| ip.is_ipv6());
    let ext = |v6: bool| -> anyhow::Result<IpAddr> {
        let e = if v6 {
            dp.external.v6.map(IpAddr::V6)
        } else {
            dp.external.v4.map(IpAddr::V4)
        };
        e.ok_or_else(|| anyhow!("no external address of that family: give --external"))
    };
    let (src, dst) = match off.side {
        Side::Inside => {
            let src = match a.src {
                Some(s) => s,
                None => dp
                    .config
                    .rules
                    .iter()
                    .map(|r| first_host(&r.internal))
                    .find(|h| h.is_ipv6() == v6)
                    .ok_or_else(|| anyhow!("no rule of that address family: give --src"))?,
            };
            (src, a.dst.unwrap_or_else(|| default_remote(src.is_ipv6())))
        }
        Side::Outside => {
            let remote = a.src.unwrap_or_else(|| default_remote(v6));
            let to = ext(remote.is_ipv6())?;
            if let Some(internal) = a.dst {
                // The daemon learns this from the outbound request; assume it.
                off.flows
                    .insert(FlowKey::new(to, port, remote, port), internal, 0);
            }
            (remote, to)
        }
    };
    if src.is_ipv6() != dst.is_ipv6() {
        bail!("--src {src} and --dst {dst} are of different address families");
    }
    let frame = UdpFrame {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [2, 0, 0, 0, 0, 2],
        src: std::net::SocketAddr::new(src, port),
        dst: std::net::SocketAddr::new(dst, port),
        ttl: 64,
        ident: 1,
        dont_fragment: false,
    };
    let mut buf = vec![0u8; input.len() + 62 + TAILROOM];
    let len = frame
        .write(&input, &mut buf)
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let mut sent: Vec<Vec<u8>> = Vec::new();
    let action = off.process(&mut buf, len, Link::Ethernet, 0, &mut |p| {
        sent.push(p.to_vec())
    });
    let b = &off.batch;
    if b.get(Counter::FamilyMismatch) > 0 {
        eprintln!(
            "note: {} address(es) left alone: no external address of their family",
            b.get(Counter::FamilyMismatch)
        );
    }
    match action {
        Action::Tx { .. } => {}
        Action::Kernel { reason, .. } => {
            eprintln!(
                "{src} -> {dst}: not rewritten, the kernel gets it ({})",
                reason.help()
            );
            return write_or_diff(a, path, &input, &input, None);
        }
        Action::Drop(reason) => bail!("{} is dropped: {}", path.display(), reason.help()),
        other => bail!("{}: {other:?}", path.display()),
    }
    let out = sent
        .first()
        .ok_or_else(|| anyhow!("{}: nothing was sent", path.display()))?;
    let layout = wire::parse(out, Link::Ethernet)
        .map_err(|e| anyhow!("the rewritten frame does not parse: {e:?}"))?;
    let (_, _, payload, plen) = layout
        .udp(out)
        .ok_or_else(|| anyhow!("the rewritten frame is not UDP"))?;
    let after = &out[payload..payload + plen];
    if b.get(Counter::SipRewritten) > 0 {
        write_or_diff(a, path, &input, after, Some(changes(b)))
    } else if b.get(Counter::SipUnchanged) > 0 {
        write_or_diff(a, path, &input, after, None)
    } else if let Some(m) = first_nonzero(b, MALFORMED) {
        bail!(
            "{} is malformed SIP ({}): sipnat forwards it unchanged",
            path.display(),
            m.name()
        )
    } else {
        bail!("{} is not a SIP message", path.display())
    }
}

const NOT_SIP: &[Counter] = &[
    Counter::NotSipEmpty,
    Counter::NotSipKeepalive,
    Counter::NotSipStun,
    Counter::NotSipOther,
];

const MALFORMED: &[Counter] = &[
    Counter::MalformedBadStartLine,
    Counter::MalformedBadVersion,
    Counter::MalformedBadHeaderLine,
    Counter::MalformedBadContentLength,
    Counter::MalformedDuplicateContentLength,
    Counter::MalformedTooManyAddresses,
];

fn first_nonzero(b: &Batch, cs: &[Counter]) -> Option<Counter> {
    cs.iter().copied().find(|&c| b.get(c) > 0)
}

fn sum(b: &Batch, cs: &[Counter]) -> u64 {
    cs.iter().map(|&c| b.get(c)).sum()
}

/// The rewrite counters as a `Changes` (for the diff's summary line).
fn changes(b: &Batch) -> Changes {
    let n = |c: Counter| b.get(c).min(u64::from(u16::MAX)) as u16;
    Changes {
        request_uri: n(Counter::RwRequestUri),
        via: n(Counter::RwVia),
        contact: n(Counter::RwContact),
        route: n(Counter::RwRoute),
        record_route: n(Counter::RwRecordRoute),
        from_to: n(Counter::RwFromTo),
        sdp_connection: n(Counter::RwSdpConnection),
        sdp_origin: n(Counter::RwSdpOrigin),
        sdp_rtcp: n(Counter::RwSdpRtcp),
        sdp_media_port: n(Counter::RwSdpMediaPort),
        content_length: n(Counter::RwContentLength),
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

/// What the offline tool saw before the pipeline (the pipeline counts the rest).
#[derive(Default)]
struct Summary {
    packets: u64,
    written: u64,
    not_steered: u64,
    other_direction: u64,
    truncated: u64,
    no_link: u64,
}

fn pcap(input: &Path, out: &Path, off: &mut Offline) -> anyhow::Result<()> {
    let mut magic = [0u8; 4];
    File::open(input)
        .and_then(|mut f| f.read_exact(&mut magic))
        .with_context(|| format!("cannot read {}", input.display()))?;
    let file = BufReader::new(File::open(input)?);
    let sink = BufWriter::new(
        File::create(out).with_context(|| format!("cannot create {}", out.display()))?,
    );
    let mut s = Summary::default();
    let mut first_ts = None;
    if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        let mut r = PcapNgReader::new(file)
            .map_err(|e| anyhow!("{}: not a pcapng file: {e}", input.display()))?;
        let mut w = PcapNgWriter::with_section_header(sink, r.section().clone().into_owned())?;
        while let Some(block) = r.next_block() {
            let block = block.map_err(|e| anyhow!("{}: {e}", input.display()))?;
            match block {
                Block::EnhancedPacket(p) => {
                    let dl = w
                        .interfaces()
                        .get(p.interface_id as usize)
                        .map(|i| i.linktype)
                        .unwrap_or(DataLink::ETHERNET);
                    let ts = p.timestamp;
                    let now_ms = elapsed_ms(&mut first_ts, ts);
                    let mut frames = Vec::new();
                    packet(
                        &p.data,
                        p.original_len as usize,
                        link_of(dl),
                        now_ms,
                        off,
                        &mut s,
                        &mut frames,
                    );
                    for f in frames {
                        let mut q = p.clone();
                        q.original_len = f.len() as u32;
                        q.data = f.into();
                        w.write_block(&Block::EnhancedPacket(q))?;
                    }
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
            let now_ms = elapsed_ms(&mut first_ts, p.timestamp);
            let mut frames = Vec::new();
            packet(
                &p.data,
                p.orig_len as usize,
                link,
                now_ms,
                off,
                &mut s,
                &mut frames,
            );
            for f in frames {
                w.write_packet(&PcapPacket::new(p.timestamp, f.len() as u32, &f))?;
            }
        }
        w.into_writer().flush()?;
    }
    let b = &off.batch;
    let kernel = b.get(Counter::SlowNotUdp)
        + b.get(Counter::SlowNotSipPort)
        + b.get(Counter::SlowNoMapping)
        + b.get(Counter::SlowCollision);
    let dropped: u64 = Counter::ALL
        .iter()
        .filter(|c| c.name().starts_with("drop_"))
        .map(|&c| b.get(c))
        .sum();
    println!(
        "{}: {} packets: {} rewritten, {} unchanged, {} not SIP, {} malformed{}{}{}{}{}{}{}{}{}",
        input.display(),
        s.packets,
        b.get(Counter::SipRewritten),
        b.get(Counter::SipUnchanged),
        sum(b, NOT_SIP),
        sum(b, MALFORMED),
        opt(", not steered (not UDP on a SIP port)", s.not_steered),
        opt(", fragments reassembled", b.get(Counter::ReasmComplete)),
        opt(", internal (both ends local)", b.get(Counter::SlowInternal)),
        opt(
            ", to the kernel (no mapping, collision, not UDP/SIP port)",
            kernel
        ),
        opt(", other direction", s.other_direction),
        opt(", dropped", dropped),
        opt(", truncated captures", s.truncated),
        opt(", unknown link type", s.no_link),
        opt(
            ", ICMP too big",
            b.get(Counter::IcmpFragNeeded) + b.get(Counter::IcmpPacketTooBig)
        ),
    );
    println!("wrote {} ({} packets)", out.display(), s.written);
    Ok(())
}

/// Milliseconds since the first packet's timestamp (the pipeline's clock).
fn elapsed_ms(first: &mut Option<std::time::Duration>, ts: std::time::Duration) -> u64 {
    let f = *first.get_or_insert(ts);
    ts.saturating_sub(f).as_millis() as u64
}

fn opt(label: &str, n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!("{label} {n}")
    }
}

/// One captured packet: what the daemon would send for it (nothing, while a fragment
/// waits for the rest of its datagram); a packet the daemon would not handle comes out as
/// it went in.
fn packet(
    data: &[u8],
    orig_len: usize,
    link: Option<Link>,
    now_ms: u64,
    off: &mut Offline,
    s: &mut Summary,
    frames: &mut Vec<Vec<u8>>,
) {
    s.packets += 1;
    let before = frames.len();
    let unchanged = |frames: &mut Vec<Vec<u8>>| frames.push(data.to_vec());
    let Some(link) = link else {
        s.no_link += 1;
        unchanged(frames);
        s.written += 1;
        return;
    };
    if data.len() < orig_len {
        s.truncated += 1;
        unchanged(frames);
        s.written += 1;
        return;
    }
    let layout = match wire::parse(data, link) {
        Ok(l) if off.steered(data, &l) => l,
        _ => {
            s.not_steered += 1;
            unchanged(frames);
            s.written += 1;
            return;
        }
    };
    if !off.our_direction(&layout) {
        s.other_direction += 1;
        unchanged(frames);
        s.written += 1;
        return;
    }
    let mut buf = data.to_vec();
    buf.resize(data.len() + TAILROOM, 0);
    off.process(&mut buf, data.len(), link, now_ms, &mut |f| {
        frames.push(f.to_vec())
    });
    s.written += (frames.len() - before) as u64;
}
