//! `sipnat loadtest`: a line-rate SIP generator over AF_XDP and a verifying receiver.
//!
//! - [`template`]: SIP messages (built-in, file, pcap) turned into frames with patch slots;
//! - [`gen`]: one TX thread per core/queue, batched, frames reused, checksums from a
//!   precomputed sum;
//! - [`rx`]: the receive side (XDP steering + AF_XDP sockets, possibly in another network
//!   namespace) and [`verify`], the per-packet checks;
//! - [`report`]: JSON and human output.
//!
//! Safety: it refuses to send on an interface of the root network namespace unless the
//! operator says `--i-own-this-link` (a production link is one typo away).

pub mod gen;
pub mod report;
pub mod rx;
pub mod template;
pub mod verify;

use std::{
    net::IpAddr,
    os::unix::fs::MetadataExt,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

use self::{
    gen::{TxCounters, TxPlan},
    report::{IncorrectPacket, Interval, Latency, Report},
    rx::{RxCounters, RxPlan},
    template::{Builtin, Endpoints, Template},
    verify::{Expect, Reason},
};
use crate::{datapath::umem::FRAME_SIZE, nat::Net};

/// Where the messages come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateSource {
    Builtin(Builtin),
    /// One SIP message in a file.
    File(PathBuf),
    /// The SIP payloads of the UDP packets of a capture.
    Pcap(PathBuf),
}

/// The receive side.
#[derive(Clone, Debug)]
pub struct RxOptions {
    pub interface: String,
    pub netns: Option<String>,
    pub queues: Vec<u32>,
    pub cpu: Option<usize>,
}

/// Everything a run needs (the CLI fills it).
#[derive(Clone, Debug)]
pub struct Options {
    pub interface: String,
    /// One TX thread per queue.
    pub queues: Vec<u32>,
    /// CPU per TX thread (same order as `queues`; empty: no pinning).
    pub cpus: Vec<usize>,
    pub source: TemplateSource,
    pub flows: u32,
    /// Packets per second over all threads; `None`: maximum.
    pub rate: Option<f64>,
    pub duration: Option<Duration>,
    pub count: Option<u64>,
    /// Both IPv4 or both IPv6.
    pub src_ip: IpAddr,
    pub dst_ip: IpAddr,
    pub src_mac: Option<[u8; 6]>,
    pub dst_mac: Option<[u8; 6]>,
    pub src_port: u16,
    pub dst_port: u16,
    pub rx: Option<RxOptions>,
    pub expect_external: Option<IpAddr>,
    pub expect_src: Option<IpAddr>,
    /// Media NAT on at the device under test: SDP media ports of the external address
    /// must be an allocated even/odd pair of this range.
    pub expect_media_range: Option<crate::nat::napt::PortRange>,
    /// Networks no address may be left in (default: the RFC 1918 nets, 100.64/10 and fc00::/7).
    pub private: Vec<Net>,
    pub i_own_this_link: bool,
    pub batch: u32,
    pub ring: u32,
    pub frames: u32,
    pub samples: usize,
    /// After sending: wait until nothing arrived for this long (bounded by 5 s).
    pub drain: Duration,
}

/// Why a run did not happen.
#[derive(Debug, thiserror::Error)]
pub enum LoadtestError {
    #[error(
        "refusing to send on `{0}`: it is in the root network namespace (a real link?); \
         run the generator inside a network namespace you created, or add --i-own-this-link \
         if this link is yours to flood"
    )]
    RootNetns(String),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Setup(String),
}

impl LoadtestError {
    /// Exit code: 2 for usage and safety refusals, 1 for setup failures.
    pub fn exit_code(&self) -> u8 {
        match self {
            LoadtestError::RootNetns(_) | LoadtestError::Usage(_) => 2,
            LoadtestError::Setup(_) => 1,
        }
    }
}

/// The default private networks.
pub fn default_private() -> Vec<Net> {
    [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "fc00::/7",
    ]
    .iter()
    .filter_map(|n| Net::parse(n))
    .collect()
}

/// Is the calling thread in the host's (initial) network namespace? The reference is PID
/// 1's namespace, or — where PID 1 is not inspectable (some sandboxes) — that of `kthreadd`
/// (PID 2), a kernel thread, always in the initial namespace. Undecidable counts as yes
/// (refuse rather than guess).
pub fn in_root_netns() -> bool {
    let id = |p: &str| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let Some(me) = id("/proc/thread-self/ns/net") else {
        return true;
    };
    let kthreadd = || {
        std::fs::read_to_string("/proc/2/comm")
            .ok()
            .filter(|c| c.trim() == "kthreadd")
            .and_then(|_| id("/proc/2/ns/net"))
    };
    match id("/proc/1/ns/net").or_else(kthreadd) {
        Some(init) => me == init,
        None => true,
    }
}

/// A snapshot for the live progress line.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    pub elapsed: Duration,
    pub sent: u64,
    pub verified: u64,
    pub incorrect: u64,
    /// Rates over the last interval.
    pub offered_pps: f64,
    pub delivered_pps: f64,
}

fn mac_of(ifindex: u32) -> Option<[u8; 6]> {
    let mut s = crate::sys::netlink::RtnlSocket::open().ok()?;
    let l = s.link(ifindex).ok()??;
    l.address.as_slice().try_into().ok()
}

/// The next hop's MAC for `dst` out of `ifindex`: the neighbour table, else one UDP datagram
/// to the discard port of the next hop (bound to the interface) makes the kernel resolve it.
fn resolve_dst_mac(ifname: &str, ifindex: u32, dst: IpAddr) -> Result<[u8; 6], String> {
    let mut s = crate::sys::netlink::RtnlSocket::open().map_err(|e| format!("netlink: {e}"))?;
    let hop = match s.route_get(dst) {
        Ok(Some(r)) if r.oif == ifindex => r.gateway.unwrap_or(dst),
        _ => dst,
    };
    let lookup = |s: &mut crate::sys::netlink::RtnlSocket| -> Option<[u8; 6]> {
        s.neighbours(ifindex)
            .ok()?
            .iter()
            .find(|n| n.ip == hop)
            .and_then(|n| n.usable_mac())
    };
    if let Some(m) = lookup(&mut s) {
        return Ok(m);
    }
    let any = if hop.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
    if let Ok(sock) = std::net::UdpSocket::bind(any) {
        use std::os::fd::AsRawFd;
        let name = ifname.as_bytes();
        // SAFETY: setsockopt with the interface name bytes.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_BINDTODEVICE,
                name.as_ptr().cast(),
                name.len() as u32,
            )
        };
        let _ = sock.send_to(&[], (hop, 9));
    }
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
        if let Some(m) = lookup(&mut s) {
            return Ok(m);
        }
    }
    Err(format!(
        "cannot resolve the MAC address of next hop {hop} on {ifname} (no neighbour entry, \
         no ARP answer); give --dst-mac"
    ))
}

/// The link type of a pcap data link (`None`: not one sipnat reads).
pub fn link_of(dl: pcap_file::DataLink) -> Option<crate::wire::Link> {
    use crate::wire::Link;
    use pcap_file::DataLink;
    match dl {
        DataLink::ETHERNET => Some(Link::Ethernet),
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Some(Link::RawIp),
        DataLink::LINUX_SLL => Some(Link::LinuxSll),
        DataLink::LINUX_SLL2 => Some(Link::LinuxSll2),
        _ => None,
    }
}

/// Receive ring entries per socket (deep: arrivals are bursty).
pub const RX_RING: u32 = 2048;

/// Most templates taken from a pcap.
pub const MAX_PCAP_TEMPLATES: usize = 1024;

/// The SIP payloads of a pcap or pcapng capture (UDP, whole datagrams), with the IP
/// source they were sent from.
pub fn pcap_messages(path: &std::path::Path) -> Result<Vec<(IpAddr, Vec<u8>)>, String> {
    use pcap_file::{pcap::PcapReader, pcapng::Block, pcapng::PcapNgReader};
    let data = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut out = Vec::new();
    let mut take = |bytes: &[u8], link: Option<crate::wire::Link>| {
        let Some(link) = link else { return };
        let Ok(l) = crate::wire::parse(bytes, link) else {
            return;
        };
        if let Some((_, _, start, len)) = l.udp(bytes) {
            if let Some(p) = bytes.get(start..start + len) {
                if template::looks_like_sip(p) && out.len() < MAX_PCAP_TEMPLATES {
                    out.push((l.src, p.to_vec()));
                }
            }
        }
    };
    if data.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        let mut r = PcapNgReader::new(&data[..])
            .map_err(|e| format!("{}: not a pcapng file: {e}", path.display()))?;
        let mut links = Vec::new();
        while let Some(b) = r.next_block() {
            match b.map_err(|e| format!("{}: {e}", path.display()))? {
                Block::InterfaceDescription(i) => links.push(link_of(i.linktype)),
                Block::EnhancedPacket(p) => take(
                    &p.data,
                    links.get(p.interface_id as usize).copied().flatten(),
                ),
                _ => {}
            }
        }
    } else {
        let mut r = PcapReader::new(&data[..])
            .map_err(|e| format!("{}: not a pcap or pcapng file: {e}", path.display()))?;
        let link = link_of(r.header().datalink);
        while let Some(p) = r.next_packet() {
            let p = p.map_err(|e| format!("{}: {e}", path.display()))?;
            take(&p.data, link);
        }
    }
    if out.is_empty() {
        return Err(format!(
            "{}: no SIP-over-UDP message in the capture",
            path.display()
        ));
    }
    Ok(out)
}

/// The templates of a run. The source addresses of pcap messages join
/// `expect.private_hosts` (they must not survive the rewrite either).
pub fn build_templates(
    o: &Options,
    ep: Endpoints,
    expect: &mut Expect,
) -> Result<Vec<Template>, LoadtestError> {
    let msgs: Vec<(String, Vec<u8>)> = match &o.source {
        TemplateSource::Builtin(b) => vec![(b.name().to_string(), b.message(o.src_ip, o.dst_ip))],
        TemplateSource::File(p) => {
            let m = std::fs::read(p).map_err(|e| {
                LoadtestError::Usage(format!("cannot read template {}: {e}", p.display()))
            })?;
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            vec![(name, m)]
        }
        TemplateSource::Pcap(p) => {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let msgs = pcap_messages(p).map_err(LoadtestError::Usage)?;
            for (src, _) in &msgs {
                if !expect.private_hosts.contains(src) {
                    expect.private_hosts.push(*src);
                }
            }
            msgs.into_iter()
                .enumerate()
                .map(|(i, (_, m))| (format!("pcap:{name}#{i}"), m))
                .collect()
        }
    };
    let private = |a: IpAddr| expect.is_private(a);
    msgs.iter()
        .enumerate()
        .map(|(i, (name, m))| {
            let p = template::prepare(m, i as u16)
                .map_err(|e| LoadtestError::Usage(format!("template {name}: {e}")))?;
            Template::build(name, &p, ep, &private, FRAME_SIZE as usize)
                .map_err(|e| LoadtestError::Usage(format!("template {name}: {e}")))
        })
        .collect()
}

/// Runs a load test. `stop` ends it early (Ctrl-C); `progress` is called about four times
/// a second while sending.
pub fn run(
    o: &Options,
    stop: Arc<AtomicBool>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Report, LoadtestError> {
    let (ep, mut expect) = endpoints(o)?;
    let templates = build_templates(o, ep, &mut expect)?;
    expect.fields = templates.iter().map(|t| t.private_fields).collect();
    let templates = Arc::new(templates);

    // Receive side first: nothing sent before it listens.
    let rx_counters = Arc::new(RxCounters::default());
    let rx_stop = Arc::new(AtomicBool::new(false));
    let origin_ns = Arc::new(AtomicU64::new(0));
    let rx_handle = start_rx(o, &expect, &rx_counters, &rx_stop, &origin_ns)?;
    let stop_rx = |h: Option<std::thread::JoinHandle<Option<rx::RxResult>>>| {
        rx_stop.store(true, Ordering::Relaxed);
        h.and_then(|h| h.join().ok().flatten())
    };

    // TX threads.
    let n = o.queues.len();
    let go = Arc::new(AtomicBool::new(false));
    let salt = gen::now_ns() as u32;
    let frames = o.frames.max(o.ring).max(64);
    let (tx, txr) = mpsc::channel();
    let mut handles = Vec::new();
    let mut counters = Vec::new();
    for (i, &q) in o.queues.iter().enumerate() {
        let plan = tx_plan(o, i, q, frames, salt);
        let c = Arc::new(TxCounters::default());
        counters.push(Arc::clone(&c));
        let (t, s, g, txc) = (
            Arc::clone(&templates),
            Arc::clone(&stop),
            Arc::clone(&go),
            tx.clone(),
        );
        match std::thread::Builder::new()
            .name(format!("loadtest-tx{i}"))
            .spawn(move || gen::run(plan, t, c, s, g, txc))
        {
            Ok(h) => handles.push(h),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                go.store(true, Ordering::Release);
                stop_rx(rx_handle);
                return Err(LoadtestError::Setup(format!("spawning a TX thread: {e}")));
            }
        }
    }
    drop(tx);
    let mut tx_zero_copy = true;
    let mut errors = Vec::new();
    for _ in 0..n {
        match txr.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(zc)) => tx_zero_copy &= zc,
            Ok(Err(e)) => errors.push(e),
            Err(_) => errors.push("a TX thread did not start within 30 s".into()),
        }
    }
    if !errors.is_empty() {
        stop.store(true, Ordering::Relaxed);
        go.store(true, Ordering::Release);
        for h in handles {
            let _ = h.join();
        }
        stop_rx(rx_handle);
        return Err(LoadtestError::Setup(errors.join("; ")));
    }
    origin_ns.store(gen::now_ns(), Ordering::Relaxed);
    go.store(true, Ordering::Release);

    // Progress while sending, every 250 ms; a mark at each whole second and at the end
    // (the per-second samples of the report).
    let started = Instant::now();
    let total_sent = || -> u64 {
        counters
            .iter()
            .map(|c| c.sent.load(Ordering::Relaxed))
            .sum()
    };
    let mut marks = Marks::new(started);
    progress_until_sent(started, &counters, &rx_counters, progress, &mut marks);
    for h in handles {
        let _ = h.join();
    }
    if rx_handle.is_some() {
        drain(o, &rx_counters, &mut marks, &total_sent);
    }
    marks.end(
        Instant::now(),
        total_sent(),
        rx_counters.verified.load(Ordering::Relaxed),
        rx_counters.incorrect.load(Ordering::Relaxed),
    );
    let rx_result = stop_rx(rx_handle);

    Ok(report(
        o,
        &templates,
        &counters,
        &rx_counters,
        rx_result,
        &marks,
        tx_zero_copy,
    ))
}

/// The plan of TX thread `i` (queue `q`): its share of the count and of the rate.
fn tx_plan(o: &Options, i: usize, q: u32, frames: u32, salt: u32) -> TxPlan {
    let n = o.queues.len();
    let count = o
        .count
        .map(|c| c / n as u64 + u64::from((i as u64) < c % n as u64));
    TxPlan {
        ifname: o.interface.clone(),
        queue: q,
        cpu: o.cpus.get(i).copied(),
        frames,
        ring: o.ring,
        batch: o.batch,
        rate_pps: o.rate.map(|r| r / n as f64),
        count,
        duration: o.duration,
        flows: o.flows.max(1),
        seq_start: i as u64,
        seq_step: n as u64,
        salt,
    }
}

/// Reports progress every 250 ms and marks whole seconds until every TX thread is done.
fn progress_until_sent(
    started: Instant,
    counters: &[Arc<TxCounters>],
    rx_counters: &RxCounters,
    progress: &mut dyn FnMut(&Progress),
    marks: &mut Marks,
) {
    let (mut last_t, mut last_sent, mut last_rx) = (started, 0u64, 0u64);
    let mut tick = 0u32;
    loop {
        tick += 1;
        let due = started + Duration::from_millis(250) * tick;
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let sent = counters
            .iter()
            .map(|c| c.sent.load(Ordering::Relaxed))
            .sum::<u64>();
        let verified = rx_counters.verified.load(Ordering::Relaxed);
        let incorrect = rx_counters.incorrect.load(Ordering::Relaxed);
        let now = Instant::now();
        let dt = now.duration_since(last_t).as_secs_f64().max(1e-6);
        progress(&Progress {
            elapsed: started.elapsed(),
            sent,
            verified,
            incorrect,
            offered_pps: (sent - last_sent) as f64 / dt,
            delivered_pps: verified.saturating_sub(last_rx) as f64 / dt,
        });
        marks.whole_second(now, sent, verified, incorrect);
        (last_t, last_sent, last_rx) = (now, sent, verified);
        if counters.iter().all(|c| c.done.load(Ordering::Acquire)) {
            break;
        }
    }
}

/// Checks the options against this host and works out both ends (MACs, addresses,
/// ports) and what the receiver expects.
fn endpoints(o: &Options) -> Result<(Endpoints, Expect), LoadtestError> {
    if in_root_netns() && !o.i_own_this_link {
        return Err(LoadtestError::RootNetns(o.interface.clone()));
    }
    let ifindex = crate::sys::if_index(&o.interface).ok_or_else(|| {
        LoadtestError::Usage(format!(
            "interface `{}` does not exist in this network namespace; check the name with `ip link`",
            o.interface
        ))
    })?;
    if o.queues.is_empty() {
        return Err(LoadtestError::Usage("no TX queue".into()));
    }
    if o.src_ip.is_ipv6() != o.dst_ip.is_ipv6() {
        return Err(LoadtestError::Usage(format!(
            "--src-ip {} and --dst-ip {} are of different families; give two IPv4 or two IPv6 \
             addresses",
            o.src_ip, o.dst_ip
        )));
    }
    let tx_queues = crate::sys::tx_queues(&o.interface);
    if let Some(q) = o.queues.iter().find(|q| **q >= tx_queues) {
        return Err(LoadtestError::Usage(format!(
            "`{}` has {tx_queues} TX queue{}: queue {q} does not exist; use fewer --cores \
             or pick --queues below {tx_queues}",
            o.interface,
            if tx_queues == 1 { "" } else { "s" }
        )));
    }
    if o.duration.is_none() && o.count.is_none() {
        return Err(LoadtestError::Usage("give --duration or --count".into()));
    }
    let src_mac = match o.src_mac {
        Some(m) => m,
        None => mac_of(ifindex).ok_or_else(|| {
            LoadtestError::Setup(format!("cannot read the MAC address of {}", o.interface))
        })?,
    };
    let dst_mac = match o.dst_mac {
        Some(m) => m,
        None => resolve_dst_mac(&o.interface, ifindex, o.dst_ip).map_err(LoadtestError::Setup)?,
    };
    let ep = Endpoints {
        src_mac,
        dst_mac,
        src_ip: o.src_ip,
        dst_ip: o.dst_ip,
        src_port: o.src_port,
        dst_port: o.dst_port,
    };
    let expect = Expect {
        external: o.expect_external,
        src: o.expect_src.or(o.expect_external),
        private: if o.private.is_empty() {
            default_private()
        } else {
            o.private.clone()
        },
        private_hosts: vec![o.src_ip],
        fields: Vec::new(),
        dst_port: o.dst_port,
        media: o.expect_media_range,
    };
    Ok((ep, expect))
}

type RxHandle = std::thread::JoinHandle<Option<rx::RxResult>>;

/// Starts the receive side (with `--rx-interface`) and waits until it listens.
fn start_rx(
    o: &Options,
    expect: &Expect,
    rx_counters: &Arc<RxCounters>,
    rx_stop: &Arc<AtomicBool>,
    origin_ns: &Arc<AtomicU64>,
) -> Result<Option<RxHandle>, LoadtestError> {
    let Some(r) = &o.rx else {
        return Ok(None);
    };
    {
        let plan = RxPlan {
            ifname: r.interface.clone(),
            netns: r.netns.clone(),
            queues: r.queues.clone(),
            frames_per_queue: 2 * RX_RING,
            ring: RX_RING,
            batch: o.batch.max(64),
            cpu: r.cpu,
            expect: expect.clone(),
            samples: o.samples,
            origin_ns: Arc::clone(origin_ns),
        };
        let (tx, rxc) = mpsc::channel();
        let (c, s) = (Arc::clone(rx_counters), Arc::clone(rx_stop));
        let h = std::thread::Builder::new()
            .name("loadtest-rx".into())
            .spawn(move || rx::run(plan, c, s, tx))
            .map_err(|e| LoadtestError::Setup(format!("spawning the receive thread: {e}")))?;
        match rxc.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => Ok(Some(h)),
            Ok(Err(e)) => {
                let _ = h.join();
                Err(LoadtestError::Setup(e))
            }
            Err(_) => {
                rx_stop.store(true, Ordering::Relaxed);
                Err(LoadtestError::Setup(
                    "the receive side did not start within 30 s".into(),
                ))
            }
        }
    }
}

/// Waits until nothing arrived for `o.drain` (at most 5 s), still marking seconds.
fn drain(o: &Options, rx_counters: &RxCounters, marks: &mut Marks, total_sent: &dyn Fn() -> u64) {
    let end = Instant::now() + Duration::from_secs(5);
    let mut last = rx_counters.received.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
        let now = rx_counters.received.load(Ordering::Relaxed);
        let at = Instant::now();
        marks.whole_second(
            at,
            total_sent(),
            rx_counters.verified.load(Ordering::Relaxed),
            rx_counters.incorrect.load(Ordering::Relaxed),
        );
        if now != last {
            last = now;
            last_change = at;
        } else if at.duration_since(last_change) >= o.drain {
            break;
        }
    }
}

/// The report from the TX and RX counters and the receive side's result.
fn report(
    o: &Options,
    templates: &[Template],
    counters: &[Arc<TxCounters>],
    rx_counters: &RxCounters,
    rx_result: Option<rx::RxResult>,
    marks: &Marks,
    tx_zero_copy: bool,
) -> Report {
    let n = o.queues.len();
    let sum = |f: fn(&TxCounters) -> u64| counters.iter().map(|c| f(c)).sum::<u64>();
    let sent = sum(|c| c.sent.load(Ordering::Relaxed));
    let start = counters
        .iter()
        .map(|c| c.start_ns.load(Ordering::Relaxed))
        .filter(|v| *v > 0)
        .min()
        .unwrap_or(0);
    let end = counters
        .iter()
        .map(|c| c.end_ns.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let duration_s = (end.saturating_sub(start) as f64 / 1e9).max(1e-9);
    let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let verified = ld(&rx_counters.verified);
    let mut by_reason = [0u64; Reason::COUNT];
    for (d, a) in by_reason.iter_mut().zip(&rx_counters.by_reason) {
        *d = ld(a);
    }
    let receive = o.rx.is_some();
    let loss = if receive {
        sent.saturating_sub(verified)
    } else {
        0
    };
    Report {
        tool: "sipnat-loadtest".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        template: templates
            .iter()
            .map(|t| t.name.as_str())
            .take(8)
            .collect::<Vec<_>>()
            .join(",")
            + if templates.len() > 8 { ",..." } else { "" },
        templates: templates.len(),
        frame_bytes: templates.first().map_or(0, |t| t.len()),
        flows: o.flows.max(1),
        cores: n,
        target_pps: o.rate,
        duration_s,
        sent,
        offered_pps: sent as f64 / duration_s,
        tx_zero_copy,
        tx_kicks: sum(|c| c.kicks.load(Ordering::Relaxed)),
        tx_starved: sum(|c| c.starved.load(Ordering::Relaxed)),
        tx_busy: sum(|c| c.busy.load(Ordering::Relaxed)),
        receive,
        received: ld(&rx_counters.received),
        verified,
        correct: ld(&rx_counters.correct),
        incorrect: ld(&rx_counters.incorrect),
        foreign: ld(&rx_counters.foreign),
        delivered_pps: verified as f64 / duration_s,
        loss,
        loss_pct: if receive && sent > 0 {
            100.0 * loss as f64 / sent as f64
        } else {
            0.0
        },
        rx_kernel_dropped: ld(&rx_counters.kernel_dropped),
        rx_xdp_mode: rx_result
            .as_ref()
            .map(|r| r.xdp_mode.clone())
            .unwrap_or_default(),
        rx_zero_copy: rx_result.as_ref().is_some_and(|r| r.zero_copy),
        latency_ns: rx_result
            .as_ref()
            .map(|r| Latency::from_histogram(&r.latency))
            .unwrap_or_default(),
        incorrect_by_reason: Report::reason_map(&by_reason),
        first_incorrect: rx_result
            .as_ref()
            .map(|r| r.samples.iter().map(IncorrectPacket::from_sample).collect())
            .unwrap_or_default(),
        per_second: marks.intervals(rx_result.as_ref().map_or(&[][..], |r| &r.windows)),
    }
}

/// Cumulative counts at whole seconds since sending started, and at the end.
struct Marks {
    started: Instant,
    /// (seconds since start, sent, verified, incorrect); starts with the origin.
    at: Vec<(f64, u64, u64, u64)>,
    next_second: u64,
}

impl Marks {
    fn new(started: Instant) -> Marks {
        Marks {
            started,
            at: vec![(0.0, 0, 0, 0)],
            next_second: 1,
        }
    }

    /// Records a mark if `now` is past the next whole second.
    fn whole_second(&mut self, now: Instant, sent: u64, verified: u64, incorrect: u64) {
        let t = now.duration_since(self.started).as_secs_f64();
        if t >= self.next_second as f64 {
            self.at.push((t, sent, verified, incorrect));
            self.next_second = t.floor() as u64 + 1;
        }
    }

    /// The final mark (unless the last one was just taken).
    fn end(&mut self, now: Instant, sent: u64, verified: u64, incorrect: u64) {
        let t = now.duration_since(self.started).as_secs_f64();
        if self.at.last().is_some_and(|l| t - l.0 > 0.01) {
            self.at.push((t, sent, verified, incorrect));
        }
    }

    /// The intervals between marks, each with the latency window of the second it starts
    /// in (`windows`: second index → percentiles, from the receive thread).
    fn intervals(&self, windows: &[(u64, report::WindowLatency)]) -> Vec<Interval> {
        self.at
            .windows(2)
            .map(|w| {
                let (a, b) = (w[0], w[1]);
                let dt = (b.0 - a.0).max(1e-6);
                let second = a.0.floor() as u64;
                Interval {
                    t_s: b.0,
                    sent: b.1,
                    verified: b.2,
                    incorrect: b.3,
                    offered_pps: b.1.saturating_sub(a.1) as f64 / dt,
                    delivered_pps: b.2.saturating_sub(a.2) as f64 / dt,
                    latency_ns: windows
                        .iter()
                        .find(|(s, _)| *s == second)
                        .map(|(_, l)| l.clone()),
                }
            })
            .collect()
    }
}
