//! `sipnat run`: brings everything up in order and down again.
//!
//! Up: config → XDP programs attached to both interfaces (empty XSKMAP: the failure mode
//! covers the gap) → next-hop resolver → one worker per queue (its sockets registered in
//! the XSKMAPs once bound) → clock ticker → control socket. Down (SIGINT/SIGTERM): stop
//! flag → workers joined (sockets closed) → programs detached → socket removed. A worker
//! that dies makes the daemon exit non-zero (systemd restarts it); the XDP failure mode
//! applies meanwhile.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{anyhow, bail, Context as _};

use crate::{
    config::{self, Config, ExternalSource},
    datapath::{
        nexthop::{self, NextHops},
        port::RingSizes,
        slowpath::SlowPath,
        stats::WorkerStats,
        worker::{self, Ready, WorkerConfig},
        Clock, DatapathState, DataplaneSnapshot,
    },
    nat::{external::check_external, flow::FlowTable, napt::NaptTable, ExternalAddrs},
    snapshot::Published,
    sys::NapiDefer,
    xdp::{media::MediaMaps, AttachedMode, PinLifetime, Side, SteeringConfig, SteeringProgram},
};

pub use super::writer::ExternalState;
use super::writer::{DataplaneWriter, ExternalUpdate};

/// NAPI deferral while the workers busy-poll: the kernel's own NAPI for the queue stays
/// off for two rounds of up to 1 ms after each poll; if the workers stop polling (stuck,
/// stopped), it takes over within that time.
pub const BUSY_POLL_NAPI_DEFER: NapiDefer = NapiDefer {
    hard_irqs: 2,
    gro_flush_timeout_ns: 1_000_000,
};

/// One worker as the control plane sees it.
pub struct WorkerInfo {
    pub queue: u32,
    pub cpu: Option<usize>,
    pub zero_copy: bool,
    pub inside_fd: i32,
    pub outside_fd: i32,
    pub stats: Arc<WorkerStats>,
    handle: Option<JoinHandle<()>>,
}

/// The two steering programs (control plane only; the data path never touches them).
pub struct Programs {
    pub inside: SteeringProgram,
    pub outside: SteeringProgram,
    pub inside_mode: AttachedMode,
    pub outside_mode: AttachedMode,
    /// Both programs' media binding maps (clone it for the workers).
    pub media: MediaMaps,
}

pub struct Daemon {
    pub config_path: PathBuf,
    pub config: Mutex<Config>,
    pub shared: Arc<DatapathState>,
    pub programs: Mutex<Programs>,
    pub workers: Mutex<Vec<WorkerInfo>>,
    pub started: Instant,
    /// The one writer of `shared.dataplane`, and the external address's provenance.
    pub dataplane: DataplaneWriter,
    /// Candidate external addresses refused by `check_external` (STUN answers, interface
    /// addresses, `set external-ip`).
    pub external_rejected: Arc<AtomicU64>,
    pub enabled: AtomicBool,
    /// Steering held off until a dynamic source delivers the first external address.
    awaiting_external: AtomicBool,
    /// Interfaces whose NAPI deferral we changed for busy polling, with the old values
    /// (restored on shutdown).
    napi_restore: Mutex<Vec<(String, NapiDefer)>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Where the programs are pinned, and whether the pins (and so the failure mode)
    /// outlive this process.
    pub pin_root: PathBuf,
    pub pins: PinLifetime,
    /// A reload is reading the config file (at most one at a time: a read that never ends,
    /// e.g. from a FIFO with no writer, holds one thread, not one per request).
    reload_reading: Arc<AtomicBool>,
}

/// How long `reload` waits for the config file to be read; then it gives up, and the
/// daemon keeps running with the config it has.
pub const RELOAD_READ_TIMEOUT: Duration = Duration::from_secs(5);

fn steering(cfg: &Config, enabled: bool) -> SteeringConfig {
    SteeringConfig {
        enabled,
        on_failure: cfg.interfaces.on_failure,
        steer_fragments: cfg.interfaces.steer_fragments,
    }
}

fn static_external(cfg: &Config) -> ExternalAddrs {
    let (a, b) = cfg.external_sources();
    let mut e = ExternalAddrs::default();
    for s in [a, b] {
        if let ExternalSource::Static(ip) = s {
            match ip {
                IpAddr::V4(v4) => e.v4 = Some(v4),
                IpAddr::V6(v6) => e.v6 = Some(v6),
            }
        }
    }
    e
}

/// Logs each private or shared static external address (accepted only because
/// `nat.allow_private_external = true`; validation refused them otherwise).
/// Warnings about a config that works but may not be what the operator meant: a private
/// external address, SIP rewriting turned off. At start and at each reload.
fn warn_config(cfg: &Config) {
    for (key, a, why) in cfg.private_externals() {
        tracing::warn!("{key} {a} is {why}; used because nat.allow_private_external = true");
    }
    if !cfg.rewrite.enabled {
        tracing::warn!(
            "rewrite.enabled = false: SIP and SDP leave as they arrived (internal addresses \
             included, no leak check, no media bindings); only IP headers are translated"
        );
    }
}

/// How `status` names the configured external-address source(s).
fn source_label(cfg: &Config) -> String {
    match cfg.external_sources() {
        (a, ExternalSource::None) => a.to_string(),
        (ExternalSource::None, b) => b.to_string(),
        (a, b) => format!("{a} / {b}"),
    }
}

/// The keys `reload` reads but cannot apply to running workers: they take effect at the
/// next start. Returns the ones that differ between `old` and `new`.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    // (`set external-ip` reads nat.allow_private_external at each request; the dynamic
    // sources were given it at start.)
    let (o4, o6) = old.external_sources();
    let (n4, n6) = new.external_sources();
    let checks = [
        (
            old.interfaces.attach_mode != new.interfaces.attach_mode,
            "interfaces.attach_mode",
        ),
        (
            old.nat.flow_table_size != new.nat.flow_table_size,
            "nat.flow_table_size",
        ),
        (
            old.nat.flow_idle_timeout != new.nat.flow_idle_timeout,
            "nat.flow_idle_timeout",
        ),
        (
            o4 != n4 && (o4.is_dynamic() || n4.is_dynamic()),
            "nat.external_ip (a stun: or interface: source)",
        ),
        (
            o6 != n6 && (o6.is_dynamic() || n6.is_dynamic()),
            "nat.external_ip6 (a stun: or interface: source)",
        ),
        (
            old.nat.allow_private_external != new.nat.allow_private_external
                && [&o4, &o6].iter().any(|s| s.is_dynamic()),
            "nat.allow_private_external (for the stun: or interface: source)",
        ),
        (
            old.control.metrics.get_ref() != new.control.metrics.get_ref(),
            "control.metrics",
        ),
        (old.control.group != new.control.group, "control.group"),
        (old.control.bpffs != new.control.bpffs, "control.bpffs"),
        (old.datapath != new.datapath, "[datapath]"),
        (
            old.media.enabled != new.media.enabled
                || old.media.port_range.get_ref() != new.media.port_range.get_ref()
                || old.media.idle_timeout != new.media.idle_timeout,
            "[media]",
        ),
        (old.log.level != new.log.level, "log.level"),
    ];
    checks
        .into_iter()
        .filter_map(|(changed, key)| changed.then_some(key))
        .collect()
}

/// Adopts the XDP programs a previous daemon left pinned on both interfaces (hitless
/// restart), or loads, attaches and pins fresh ones; returns them with the pin directory
/// and whether the pins outlive this process (warned about when not).
fn attach_programs(cfg: &Config) -> anyhow::Result<(Programs, PathBuf, PinLifetime)> {
    let inside = cfg.interfaces.inside.get_ref();
    let outside = cfg.interfaces.outside.get_ref();
    let ports = cfg.interfaces.sip_ports.get_ref();
    let mode = cfg.interfaces.attach_mode;
    // A program a previous daemon left pinned is adopted (hitless restart): same maps,
    // counters continue, no detach; otherwise load, attach and pin a fresh one.
    let pin_root = cfg.control.bpffs.clone();
    crate::xdp::ensure_bpffs(&pin_root)?;
    let pin_failures = std::cell::RefCell::new(Vec::new());
    let attach = |ifname: &str, side: Side| -> anyhow::Result<(SteeringProgram, AttachedMode)> {
        let dir = pin_root.join(ifname);
        let mut p = match SteeringProgram::adopt(&dir, ifname)? {
            Some(p) => {
                tracing::info!("adopted the pinned XDP program on {ifname} (hitless restart)");
                p
            }
            None => {
                let mut p = SteeringProgram::load()?;
                p.set_config(steering(cfg, true))?;
                p.set_ports(ports)?;
                p.attach(ifname, mode)?;
                if let Err(e) = p.pin(&dir) {
                    tracing::warn!("{e}: restarts will detach and re-attach");
                    pin_failures.borrow_mut().push(format!("{ifname}: {e}"));
                }
                p
            }
        };
        p.set_config(steering(cfg, true))?;
        p.set_ports(ports)?;
        p.set_side(side)?;
        let m = p.attached().map(|(_, m)| m).unwrap_or(AttachedMode::Native);
        Ok((p, m))
    };
    let (mut inside_prog, inside_mode) = attach(inside, Side::Inside)?;
    let (mut outside_prog, outside_mode) = attach(outside, Side::Outside)?;
    // Media NAT: translated RTP/RTCP may be redirected between the two interfaces.
    let egress: Vec<u32> = [inside, outside]
        .iter()
        .filter_map(|n| crate::sys::if_index(n))
        .collect();
    for p in [&mut inside_prog, &mut outside_prog] {
        p.set_egress(&egress)?;
        set_media_nat(p, cfg)?;
    }
    let media = MediaMaps::new(inside_prog.media_map()?, outside_prog.media_map()?)?;
    tracing::info!(
        "XDP attached: {inside} ({inside_mode}), {outside} ({outside_mode}); SIP ports {ports:?}"
    );
    let failures = pin_failures.into_inner();
    let pins = if failures.is_empty() {
        crate::xdp::pin_lifetime(&pin_root)
    } else {
        PinLifetime::DiesWithProcess(format!("pinning failed ({})", failures.join("; ")))
    };
    let mode = format!("{:?}", cfg.interfaces.on_failure).to_lowercase();
    match &pins {
        PinLifetime::Survive => {}
        PinLifetime::DiesWithProcess(why) => tracing::warn!(
            "the pins in {} cannot outlive this process: {why}. If sipnat crashes or is \
             killed, its XDP programs are detached with them and on_failure = \"{mode}\" \
             does not apply: SIP takes the kernel path, unrewritten, until the next start. \
             Set [control] bpffs to a directory on a bpffs mounted in the host's mount \
             namespace (e.g. `mount -t bpf bpf /run/sipnat-bpf` outside the namespace)",
            pin_root.display()
        ),
        PinLifetime::Unknown(why) => tracing::warn!(
            "cannot tell whether the pins in {} outlive this process ({why}); if they do \
             not, on_failure = \"{mode}\" does not apply after a crash",
            pin_root.display()
        ),
    }
    let programs = Programs {
        inside: inside_prog,
        outside: outside_prog,
        inside_mode,
        outside_mode,
        media,
    };
    Ok((programs, pin_root, pins))
}

/// Whether XDP translates media matching a binding (RTP/RTCP NAT in XDP): `[media]
/// enabled`. With no binding installed it changes nothing (a miss keeps today's verdict).
fn set_media_nat(p: &mut SteeringProgram, cfg: &Config) -> anyhow::Result<()> {
    p.set_media_nat(cfg.media.enabled)?;
    Ok(())
}

impl Daemon {
    /// Starts everything; returns when the daemon is serving.
    pub fn start(config_path: &Path) -> anyhow::Result<Arc<Daemon>> {
        let cfg = config::load_checked(config_path, true).map_err(|e| anyhow!("{e}"))?;
        let inside = cfg.interfaces.inside.get_ref().clone();
        let outside = cfg.interfaces.outside.get_ref().clone();
        let external = static_external(&cfg);
        let source = source_label(&cfg);
        warn_config(&cfg);
        // Refuse before touching the interfaces (check_system checked it too; the queue
        // counts are read again here, where they are used).
        let queues = cfg.queues_on_this_host().map_err(|p| {
            anyhow!(
                "{}",
                p.into_iter()
                    .map(|q| q.message)
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })?;

        // XDP first: until workers register, the failure mode applies.
        let (programs, pin_root, pins) = attach_programs(&cfg)?;

        let stop = Arc::new(AtomicBool::new(false));
        let nexthops = Arc::new(Published::new(NextHops::default()));
        let allowed = [&inside, &outside]
            .iter()
            .filter_map(|n| crate::sys::if_index(n))
            .collect();
        let (resolver, resolver_thread) =
            nexthop::spawn(allowed, Arc::clone(&nexthops), Arc::clone(&stop))
                .context("starting the next-hop resolver")?;
        let slow = SlowPath::new()
            .context("opening raw sockets for the kernel slow path (needs CAP_NET_RAW)")?;
        let media = crate::control::media::shared_media(&cfg, &programs.media);
        let shared = Arc::new(DatapathState {
            dataplane: Published::new(
                DataplaneSnapshot::new(
                    cfg.rewrite_config(),
                    external,
                    cfg.interfaces.sip_ports.get_ref(),
                )
                .with_napt(cfg.nat.napt_range())
                .with_media(media.is_some()),
            ),
            nexthops,
            flows: FlowTable::new(cfg.nat.flow_table_size, cfg.nat.flow_idle_timeout),
            napt: NaptTable::new(cfg.nat.flow_table_size, cfg.nat.flow_idle_timeout),
            media,
            clock: Clock::default(),
            stop,
            slow,
            resolver,
        });
        shared.clock.tick();
        huge_tables(&shared);

        let daemon = Arc::new(Daemon {
            config_path: config_path.to_path_buf(),
            shared: Arc::clone(&shared),
            programs: Mutex::new(programs),
            workers: Mutex::new(Vec::new()),
            started: Instant::now(),
            dataplane: DataplaneWriter::new(Arc::clone(&shared), source),
            enabled: AtomicBool::new(true),
            external_rejected: Arc::new(AtomicU64::new(0)),
            awaiting_external: AtomicBool::new(external.is_empty()),
            napi_restore: Mutex::new(Vec::new()),
            threads: Mutex::new(vec![resolver_thread]),
            config: Mutex::new(cfg.clone()),
            pin_root,
            pins,
            reload_reading: Arc::new(AtomicBool::new(false)),
        });
        if external.is_empty() {
            // Until a source (STUN, interface) delivers an address, SIP takes the kernel
            // path: there is nothing to rewrite it to.
            let src = daemon.dataplane.external().source;
            tracing::info!("waiting for the external address from {src}: steering off until then");
            daemon.set_enabled(false)?;
        }
        daemon.spawn_ticker();
        let reaper = crate::control::media::spawn_reaper(Arc::clone(&daemon.shared))
            .context("spawning the media reaper")?;
        daemon.threads.lock().expect("threads lock").push(reaper);
        if let Err(e) = daemon.spawn_workers(&cfg, &queues) {
            daemon.shutdown();
            return Err(e);
        }
        let zero_copy = daemon
            .workers
            .lock()
            .expect("workers lock")
            .iter()
            .any(|w| w.zero_copy);
        if cfg.datapath.busy_poll && zero_copy {
            daemon.defer_napi(&[&inside, &outside]);
        }
        Ok(daemon)
    }

    /// Busy polling (zero-copy): the workers run the queues' NAPI polls themselves; defer the
    /// interface's own NAPI (interrupt / NAPI thread) while they do, so the two do not
    /// compete for the core ([`BUSY_POLL_NAPI_DEFER`]). Best effort: without it busy
    /// polling still works, the kernel's NAPI just keeps running too.
    fn defer_napi(&self, ifnames: &[&str]) {
        let mut restore = self.napi_restore.lock().expect("napi lock");
        for &ifname in ifnames {
            let res = NapiDefer::read(ifname).and_then(|old| {
                if old != BUSY_POLL_NAPI_DEFER {
                    BUSY_POLL_NAPI_DEFER.write(ifname)?;
                    restore.push((ifname.to_string(), old));
                }
                Ok(())
            });
            match res {
                Ok(()) => tracing::info!(
                    "{ifname}: napi_defer_hard_irqs {}, gro_flush_timeout {} ns (busy polling)",
                    BUSY_POLL_NAPI_DEFER.hard_irqs,
                    BUSY_POLL_NAPI_DEFER.gro_flush_timeout_ns
                ),
                Err(e) => tracing::warn!(
                    "{ifname}: cannot set NAPI deferral for busy polling ({e}); the kernel's NAPI competes with the workers"
                ),
            }
        }
    }

    fn spawn_ticker(&self) {
        let shared = Arc::clone(&self.shared);
        let h = std::thread::Builder::new()
            .name("sipnat-clock".into())
            .spawn(move || {
                while !shared.stop.load(Ordering::Relaxed) {
                    shared.clock.tick();
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
            .expect("spawn clock thread");
        self.threads.lock().expect("threads lock").push(h);
    }

    /// One worker per queue of `queues` (from [`Config::queues_on_this_host`]).
    fn spawn_workers(&self, cfg: &Config, queues: &[u32]) -> anyhow::Result<()> {
        let inside = cfg.interfaces.inside.get_ref().clone();
        let outside = cfg.interfaces.outside.get_ref().clone();
        let cpus = crate::sys::allowed_cpus();
        let d = &cfg.datapath;
        let (tx, rx) = mpsc::channel();
        let mut infos = Vec::new();
        for (i, &q) in queues.iter().enumerate() {
            let cpu = cpus.get(i % cpus.len().max(1)).copied();
            let wc = WorkerConfig {
                queue: q,
                inside: inside.clone(),
                outside: outside.clone(),
                frames: d.frames,
                sizes: RingSizes::new(d.ring_size),
                batch: d.batch,
                copy_fill: d.copy_fill_frames(),
                busy_poll: d.busy_poll,
                busy_poll_idle: Duration::from_micros(u64::from(d.busy_poll_idle_us)),
                reasm: d.reasm_limits(),
                cpu,
                nice: d.nice,
                rt_priority: d.rt_priority,
            };
            let stats = Arc::new(WorkerStats::default());
            let (shared, st, txc) = (Arc::clone(&self.shared), Arc::clone(&stats), tx.clone());
            let handle = std::thread::Builder::new()
                .name(format!("sipnat-q{q}"))
                .spawn(move || worker::run(wc, shared, st, txc))
                .context("spawning a worker thread")?;
            infos.push(WorkerInfo {
                queue: q,
                cpu,
                zero_copy: false,
                inside_fd: -1,
                outside_fd: -1,
                stats,
                handle: Some(handle),
            });
        }
        drop(tx);
        let mut errors = Vec::new();
        for _ in 0..infos.len() {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(Ok(ready)) => self.register(&mut infos, ready)?,
                Ok(Err(e)) => errors.push(e),
                Err(_) => errors.push("a worker did not start within 30 s".to_string()),
            }
        }
        *self.workers.lock().expect("workers lock") = infos;
        if !errors.is_empty() {
            bail!("{}", errors.join("; "));
        }
        Ok(())
    }

    fn register(&self, infos: &mut [WorkerInfo], r: Ready) -> anyhow::Result<()> {
        let mut p = self.programs.lock().expect("programs lock");
        p.inside
            .xsk_map()?
            .set(r.queue, r.inside_fd, 0)
            .context("registering the inside AF_XDP socket")?;
        p.outside
            .xsk_map()?
            .set(r.queue, r.outside_fd, 0)
            .context("registering the outside AF_XDP socket")?;
        if let Some(w) = infos.iter_mut().find(|w| w.queue == r.queue) {
            w.zero_copy = r.zero_copy;
            w.inside_fd = r.inside_fd;
            w.outside_fd = r.outside_fd;
        }
        tracing::info!(
            "queue {}: AF_XDP sockets up ({} mode)",
            r.queue,
            if r.zero_copy { "zero-copy" } else { "copy" }
        );
        Ok(())
    }

    /// A worker thread that ended while we were not stopping.
    pub fn dead_worker(&self) -> Option<u32> {
        if self.shared.stop.load(Ordering::Relaxed) {
            return None;
        }
        self.workers
            .lock()
            .expect("workers lock")
            .iter()
            .find(|w| w.handle.as_ref().is_some_and(|h| h.is_finished()))
            .map(|w| w.queue)
    }

    /// Publishes a new external address (hitless: the next packet uses it). `stale`: the
    /// source failed and this is its last good value. The first address known turns
    /// steering on when it was held off waiting for one.
    pub fn set_external(&self, u: ExternalUpdate) {
        let addrs = u.addrs;
        self.dataplane.update(|dp, e| record_external(dp, e, u));
        self.external_known(addrs);
    }

    /// Turns steering on at the first external address when it was held off for one.
    fn external_known(&self, addrs: ExternalAddrs) {
        if !addrs.is_empty() && self.awaiting_external.swap(false, Ordering::Relaxed) {
            if let Err(e) = self.set_enabled(true) {
                tracing::error!("enabling steering: {e}");
            }
        }
    }

    /// Starts the configured dynamic external-address sources (STUN, interface). Must run
    /// inside the control runtime.
    pub fn start_external_sources(
        self: &Arc<Daemon>,
    ) -> Option<crate::control::external::ExternalHandle> {
        let cfg = self.config.lock().expect("config lock").clone();
        let (v4, v6) = cfg.external_sources();
        if !v4.is_dynamic() && !v6.is_dynamic() {
            return None;
        }
        let mut opts = crate::control::external::SourceOptions::default();
        opts.stun.bind_device = Some(cfg.interfaces.outside.get_ref().clone());
        opts.allow_private_external = cfg.nat.allow_private_external;
        opts.rejected = Arc::clone(&self.external_rejected);
        let d = Arc::clone(self);
        let publish: crate::control::external::Publisher =
            Arc::new(move |u: ExternalUpdate| d.set_external(u));
        Some(crate::control::external::spawn(v4, v6, opts, publish))
    }

    /// `sipnat set external-ip`: publishes `ip` as the external address of its family
    /// when [`check_external`] accepts it (a private one only with
    /// `nat.allow_private_external`, then with a warning); a refusal is counted and its
    /// message returned.
    pub fn set_external_ip(&self, ip: IpAddr) -> Result<ExternalAddrs, String> {
        let allow = self
            .config
            .lock()
            .expect("config lock")
            .nat
            .allow_private_external;
        match check_external(ip, allow) {
            Err(r) => {
                self.external_rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("set external-ip: refused {r}");
                Err(format!("refused: {r}"))
            }
            Ok(private) => {
                if let Some(why) = private {
                    tracing::warn!("set external-ip: {ip} is {why}; used because nat.allow_private_external = true");
                }
                // One update: a source publishing at the same time cannot undo the other
                // family's address.
                let e = self.dataplane.update(|dp, state| {
                    let mut addrs = dp.external;
                    match ip {
                        IpAddr::V4(v4) => addrs.v4 = Some(v4),
                        IpAddr::V6(v6) => addrs.v6 = Some(v6),
                    }
                    let u = ExternalUpdate {
                        addrs,
                        source: "cli".to_string(),
                        stale: false,
                    };
                    record_external(dp, state, u);
                    addrs
                });
                self.external_known(e);
                Ok(e)
            }
        }
    }

    /// Turns steering on or off (off: every packet takes the kernel path).
    pub fn set_enabled(&self, on: bool) -> anyhow::Result<()> {
        let cfg = self.config.lock().expect("config lock").clone();
        let mut p = self.programs.lock().expect("programs lock");
        p.inside.set_config(steering(&cfg, on))?;
        p.outside.set_config(steering(&cfg, on))?;
        self.enabled.store(on, Ordering::Relaxed);
        tracing::info!("steering {}", if on { "enabled" } else { "disabled" });
        Ok(())
    }

    /// Re-reads the config file and publishes it without restarting the workers. The file
    /// is read on a thread of its own, for at most [`RELOAD_READ_TIMEOUT`], so that a file
    /// that blocks (a FIFO with no writer, a hung network file system) never stalls the
    /// control runtime (status, metrics, signals). One read at a time.
    pub async fn reload_async(self: &Arc<Self>) -> anyhow::Result<String> {
        let path = self.config_path.clone();
        let secs = RELOAD_READ_TIMEOUT.as_secs();
        if self.reload_reading.swap(true, Ordering::AcqRel) {
            bail!(
                "a reload is still reading {} (not read within {secs} s: a FIFO with no writer, \
                 or a hung file system?); try again once it can be read",
                path.display()
            );
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (flag, p) = (Arc::clone(&self.reload_reading), path.clone());
        let spawned = std::thread::Builder::new()
            .name("sipnat-reload".into())
            .spawn(move || {
                let r = config::load_checked(&p, true);
                flag.store(false, Ordering::Release);
                let _ = tx.send(r);
            });
        if let Err(e) = spawned {
            self.reload_reading.store(false, Ordering::Release);
            bail!("cannot start reading {}: {e}", path.display());
        }
        let new = match tokio::time::timeout(RELOAD_READ_TIMEOUT, rx).await {
            Err(_) => bail!(
                "{} was not read within {secs} s (a FIFO with no writer, or a hung file \
                 system?): nothing reloaded, still running with the previous config",
                path.display()
            ),
            Ok(Err(_)) => bail!("reading {} failed", path.display()),
            Ok(Ok(r)) => r.map_err(|e| anyhow!("{e}"))?,
        };
        self.apply(new)
    }

    /// Re-reads the config file (on this thread) and publishes it without restarting the
    /// workers.
    pub fn reload(&self) -> anyhow::Result<String> {
        let new = config::load_checked(&self.config_path, true).map_err(|e| anyhow!("{e}"))?;
        self.apply(new)
    }

    /// Publishes a loaded and validated config without restarting the workers.
    fn apply(&self, new: Config) -> anyhow::Result<String> {
        warn_config(&new);
        let old = self.config.lock().expect("config lock").clone();
        let same = |a: &Config, b: &Config| {
            a.interfaces.inside.get_ref() == b.interfaces.inside.get_ref()
                && a.interfaces.outside.get_ref() == b.interfaces.outside.get_ref()
                && a.interfaces.queues == b.interfaces.queues
                && a.control.socket == b.control.socket
        };
        if !same(&old, &new) {
            bail!("interfaces, queues or the control socket changed: these need a restart (systemctl restart sipnat)");
        }
        {
            let mut guard = self.programs.lock().expect("programs lock");
            let p = &mut *guard;
            let on = self.enabled.load(Ordering::Relaxed);
            for prog in [&mut p.inside, &mut p.outside] {
                prog.set_ports(new.interfaces.sip_ports.get_ref())?;
                prog.set_config(steering(&new, on))?;
            }
        }
        let pending = restart_only_changes(&old, &new);
        // A static external address is applied now; a dynamic source keeps publishing
        // what it discovers (a changed dynamic source is in `pending`).
        let (n4, n6) = new.external_sources();
        let (o4, o6) = old.external_sources();
        let rules = new.nat.rule.len();
        self.dataplane.update(|dp, e| {
            let mut external = dp.external;
            match &n4 {
                ExternalSource::Static(IpAddr::V4(a)) => external.v4 = Some(*a),
                ExternalSource::None if !o4.is_dynamic() => external.v4 = None,
                _ => {}
            }
            match &n6 {
                ExternalSource::Static(IpAddr::V6(a)) => external.v6 = Some(*a),
                ExternalSource::None if !o6.is_dynamic() => external.v6 = None,
                _ => {}
            }
            // (`[media]` changes need a restart: the workers bind media as before.)
            let media = dp.media;
            *dp = DataplaneSnapshot::new(
                new.rewrite_config(),
                external,
                new.interfaces.sip_ports.get_ref(),
            )
            .with_napt(new.nat.napt_range())
            .with_media(media);
            if e.addrs != external {
                tracing::info!("external address {external} (from the reloaded config)");
                e.updated = Some(SystemTime::now());
                e.stale = false;
            }
            if ![&o4, &o6, &n4, &n6].iter().any(|s| s.is_dynamic()) {
                e.source = source_label(&new);
            }
        });
        *self.config.lock().expect("config lock") = new;
        tracing::info!("config reloaded from {}", self.config_path.display());
        let mut reply = format!("reloaded {} ({rules} rule(s))", self.config_path.display());
        if !pending.is_empty() {
            let keys = pending.join(", ");
            tracing::warn!("reload: changed {keys}: these take effect at the next start");
            reply.push_str(&format!(
                "; changed {keys}: these take effect at the next start (systemctl restart sipnat)"
            ));
        }
        Ok(reply)
    }

    /// Removes the pins so the programs detach when the daemon ends (a clean stop leaves
    /// the interfaces as they were). Not called for a handover (SIGUSR2), which leaves the
    /// programs attached for the next daemon to adopt.
    pub fn unpin(&self) {
        let mut guard = self.programs.lock().expect("programs lock");
        let p = &mut *guard;
        for prog in [&mut p.inside, &mut p.outside] {
            if let Err(e) = prog.unpin() {
                tracing::warn!("{e}");
            }
        }
    }

    /// Stops workers and threads. Idempotent. The XSKMAP slots are emptied first, so new
    /// packets take the kernel path (the failure mode) while the workers drain what they
    /// already have: nothing in flight is lost.
    pub fn shutdown(&self) {
        {
            let mut p = self.programs.lock().expect("programs lock");
            for w in self.workers.lock().expect("workers lock").iter() {
                if let Ok(mut m) = p.inside.xsk_map() {
                    let _ = m.unset(w.queue);
                }
                if let Ok(mut m) = p.outside.xsk_map() {
                    let _ = m.unset(w.queue);
                }
            }
        }
        // Packets the XDP program redirected before the slots were cleared may still be
        // on their way into the RX rings; once a grace period has passed they are all
        // there, and the workers' drain (until the rings are empty) takes them.
        crate::sys::synchronize_rcu();
        self.shared.stop.store(true, Ordering::Relaxed);
        for w in self.workers.lock().expect("workers lock").iter_mut() {
            if let Some(h) = w.handle.take() {
                let _ = h.join();
            }
        }
        for h in self.threads.lock().expect("threads lock").drain(..) {
            let _ = h.join();
        }
        for (ifname, old) in self.napi_restore.lock().expect("napi lock").drain(..) {
            if let Err(e) = old.write(&ifname) {
                tracing::warn!("{ifname}: cannot restore the NAPI deferral settings: {e}");
            }
        }
        tracing::info!("workers stopped");
    }
}

/// Puts a new external address into the snapshot and its provenance (logged when it
/// changes or goes stale).
fn record_external(dp: &mut DataplaneSnapshot, e: &mut ExternalState, u: ExternalUpdate) {
    let ExternalUpdate {
        addrs,
        source,
        stale,
    } = u;
    if e.addrs != addrs {
        tracing::info!("external address {addrs} (from {source})");
    }
    if stale && !e.stale {
        tracing::warn!("external address source {source} failed; keeping {addrs} (stale)");
    }
    *dp = dp.with_external(addrs);
    e.source = source;
    if !stale {
        e.updated = Some(SystemTime::now());
    }
    e.stale = stale;
}

/// The flow and NAPT tables on huge pages where the kernel allows it (see
/// [`crate::sys::prefer_huge_pages`]), logged once.
fn huge_tables(shared: &DatapathState) {
    let (mut total, mut huge) = (0, 0);
    for r in [shared.flows.memory()]
        .into_iter()
        .chain(shared.napt.memory())
    {
        total += r.len();
        huge += crate::sys::prefer_huge_pages(r);
    }
    tracing::info!(
        "flow and NAPT tables: {} of {} MiB on huge pages",
        huge >> 20,
        total >> 20
    );
}
