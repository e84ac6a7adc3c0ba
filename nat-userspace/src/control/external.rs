//! External-address sources (`nat.external_ip` / `nat.external_ip6`): tokio tasks that
//! keep the external IPv4 and IPv6 addresses current and hand every change to a publish
//! callback (the daemon's hitless `Daemon::set_external`).
//!
//! Every candidate (a STUN mapped address, an interface address) goes through
//! [`check_external`]: an unusable one (loopback, unspecified, link-local, multicast, ...)
//! and, without `allow_private_external`, a private or shared one is ignored, logged and
//! counted ([`SourceOptions::rejected`]); a private one that is allowed is used, with a
//! warning.
//!
//! - `Static`: published once, at [`spawn`].
//! - `stun:HOST:PORT`: an RFC 8489 Binding ([`super::stun`]) at start, retried with
//!   backoff (1 s, 2 s, 4 s, ... capped at 60 s) until the first success, then refreshed
//!   every `stun_refresh` (30 s). A changed mapped address is published (and logged);
//!   when a transaction fails (no valid answer within the retransmission budget, an
//!   error response) the last good address stays, published once flagged stale, and the
//!   query is retried every `stun_refresh`; the next good answer clears the flag.
//! - `interface:NAME`: the first usable global-scope address of the family on the
//!   interface (addresses [`check_external`] refuses are skipped) (IPv4 for `external_ip`, IPv6 for `external_ip6`), followed through
//!   rtnetlink address notifications (RTNLGRP_IPV4_IFADDR / RTNLGRP_IPV6_IFADDR) plus a
//!   periodic re-check (5 s). When the address goes away the last one stays, flagged
//!   stale.
//!
//! The IPv4 and IPv6 sources run independently; each publication carries both families'
//! current values. Once a family has an address it never goes back to "none".
//!
//! The tasks must be spawned inside a tokio runtime (current-thread is fine; they need
//! the `net` and `time` drivers). Sockets are opened from the runtime's thread, so in
//! the network namespace of that thread. [`ExternalHandle::stop`] (or dropping the
//! handle) ends them.

use std::{
    io,
    net::IpAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use netlink_packet_route::{
    address::{AddressAttribute, AddressMessage},
    AddressFamily,
};
use tokio::{
    io::{unix::AsyncFd, Interest},
    sync::watch,
    task::JoinHandle,
};

use super::stun::{self, Family, StunOptions};
use crate::{
    config::ExternalSource,
    control::writer::ExternalUpdate,
    nat::external::{check_external, ExternalAddrs, Refused},
    sys::netlink::{groups, EventSocket, RtnlSocket},
};

/// Receives every change of the combined addresses (or of their staleness).
pub type Publisher = Arc<dyn Fn(ExternalUpdate) + Send + Sync>;

/// Timing, socket and address-policy options of the sources.
#[derive(Clone, Debug)]
pub struct SourceOptions {
    /// Period of STUN refreshes after a success (and of retries once an address is
    /// known). Default 30 s.
    pub stun_refresh: Duration,
    /// First retry delay before the first STUN success; doubles up to `stun_retry_max`.
    /// Default 1 s.
    pub stun_retry_initial: Duration,
    /// Default 60 s.
    pub stun_retry_max: Duration,
    /// Period of the interface re-check besides netlink notifications. Default 5 s.
    pub interface_recheck: Duration,
    /// STUN client socket (SO_BINDTODEVICE of the outside interface, bind address —
    /// used only by the source of its own family) and retransmission budget.
    pub stun: StunOptions,
    /// `nat.allow_private_external`: accept private and shared candidates (with a
    /// warning). Default false.
    pub allow_private_external: bool,
    /// Counts the candidates refused (each STUN answer; each interface address once per
    /// appearance). ExternalShared with whoever reports it (the daemon's `external_rejected`).
    pub rejected: Arc<AtomicU64>,
}

impl Default for SourceOptions {
    fn default() -> SourceOptions {
        SourceOptions {
            stun_refresh: Duration::from_secs(30),
            stun_retry_initial: Duration::from_secs(1),
            stun_retry_max: Duration::from_secs(60),
            interface_recheck: Duration::from_secs(5),
            stun: StunOptions::default(),
            allow_private_external: false,
            rejected: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// The sources' current view: the addresses and, per family, whether it is stale.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub addrs: ExternalAddrs,
    pub stale_v4: bool,
    pub stale_v6: bool,
}

impl Snapshot {
    /// Any family stale.
    pub fn stale(&self) -> bool {
        self.stale_v4 || self.stale_v6
    }

    fn get(&self, f: Family) -> (Option<IpAddr>, bool) {
        match f {
            Family::V4 => (self.addrs.v4.map(IpAddr::V4), self.stale_v4),
            Family::V6 => (self.addrs.v6.map(IpAddr::V6), self.stale_v6),
        }
    }

    /// Records a confirmed address; what changed.
    fn confirm(&mut self, a: IpAddr) -> Change {
        let f = Family::of(a);
        let (old, stale) = self.get(f);
        match a {
            IpAddr::V4(v4) => {
                self.addrs.v4 = Some(v4);
                self.stale_v4 = false;
            }
            IpAddr::V6(v6) => {
                self.addrs.v6 = Some(v6);
                self.stale_v6 = false;
            }
        }
        match old {
            Some(o) if o == a && !stale => Change::None,
            Some(o) if o == a => Change::Recovered,
            old => Change::New(old),
        }
    }

    /// Records that family `f`'s source lost its address (or stopped answering): the
    /// last address stays, flagged stale. Nothing changes when there was none.
    fn lose(&mut self, f: Family) -> Change {
        let (old, stale) = self.get(f);
        if old.is_none() || stale {
            return Change::None;
        }
        match f {
            Family::V4 => self.stale_v4 = true,
            Family::V6 => self.stale_v6 = true,
        }
        Change::Stale
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    None,
    /// A new address (the previous one, if any).
    New(Option<IpAddr>),
    /// The same address, no longer stale.
    Recovered,
    /// The address is kept but stale now.
    Stale,
}

/// State shared by the tasks: the snapshot and the publisher. Publications happen under
/// the lock, so the callback sees them in order (it must not call back into us).
struct ExternalShared {
    state: Mutex<State>,
    publish: Publisher,
    source_text: String,
}

#[derive(Default)]
struct State {
    snap: Snapshot,
    /// What the publisher was last given.
    published: Option<(ExternalAddrs, bool)>,
}

impl ExternalShared {
    fn snapshot(&self) -> Snapshot {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).snap
    }

    /// Applies a change and publishes the result when what the publisher sees (the
    /// addresses, any-family staleness) differs from the last publication.
    fn apply(&self, f: impl FnOnce(&mut Snapshot) -> Change) -> (Change, Snapshot) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let c = f(&mut st.snap);
        let now = (st.snap.addrs, st.snap.stale());
        if c != Change::None && st.published != Some(now) {
            st.published = Some(now);
            (self.publish)(ExternalUpdate {
                addrs: now.0,
                source: self.source_text.clone(),
                stale: now.1,
            });
        }
        (c, st.snap)
    }

    /// `what` confirmed address `a` (`detail`: e.g. the STUN server that answered).
    /// `private`: why `a` is only allowed by `allow_private_external` (warned about
    /// whenever it becomes the address).
    fn confirm(&self, what: &str, a: IpAddr, detail: &str, private: Option<&str>) {
        let (c, _) = self.apply(|s| s.confirm(a));
        if let (Change::New(_), Some(why)) = (c, private) {
            tracing::warn!("{what}: external address {a} is {why}; used because nat.allow_private_external = true");
        }
        let fam = Family::of(a);
        match c {
            Change::New(None) => tracing::info!("external {fam} address {a} (from {what}{detail})"),
            Change::New(Some(old)) => {
                tracing::info!("external {fam} address changed {old} -> {a} (from {what}{detail})")
            }
            Change::Recovered => {
                tracing::info!("external {fam} address {a} confirmed again by {what}{detail}")
            }
            Change::Stale | Change::None => {}
        }
    }

    /// `what` could not confirm family `f`'s address.
    fn lose(&self, what: &str, f: Family, why: &str) {
        let (c, s) = self.apply(|s| s.lose(f));
        if c == Change::Stale {
            let (a, _) = s.get(f);
            if let Some(a) = a {
                tracing::warn!("external {f} address {a} is stale ({what}: {why}); keeping it");
            }
        }
    }
}

/// The running sources. Dropping it stops them too.
pub struct ExternalHandle {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    shared: Arc<ExternalShared>,
}

impl ExternalHandle {
    /// Asks every source task to end (they end at their next await point).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// The current addresses and staleness.
    pub fn current(&self) -> Snapshot {
        self.shared.snapshot()
    }

    /// Stops the tasks and waits until they have ended.
    pub async fn join(mut self) {
        self.stop();
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

impl Drop for ExternalHandle {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// `a`, `b` or `a / b` (as the daemon shows the configured sources).
fn describe(v4: &ExternalSource, v6: &ExternalSource) -> String {
    match (v4, v6) {
        (a, ExternalSource::None) => a.to_string(),
        (ExternalSource::None, b) => b.to_string(),
        (a, b) => format!("{a} / {b}"),
    }
}

/// Starts the sources for `external_ip` (`v4`) and `external_ip6` (`v6`). Static
/// addresses are published before this returns (once, combined); the other sources
/// publish from their tasks. Must be called inside a tokio runtime.
///
/// A static address is stored under its own family whatever slot it was configured in.
pub fn spawn(
    v4: ExternalSource,
    v6: ExternalSource,
    opts: SourceOptions,
    publish: Publisher,
) -> ExternalHandle {
    let shared = Arc::new(ExternalShared {
        state: Mutex::new(State::default()),
        publish,
        source_text: describe(&v4, &v6),
    });
    let (stop, _) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut statics = Vec::new();
    for (src, family) in [(v4, Family::V4), (v6, Family::V6)] {
        match src {
            ExternalSource::None => {}
            ExternalSource::Static(a) => {
                if Family::of(a) != family {
                    tracing::warn!(
                        "static external address {a} configured for {family}; using it for {}",
                        Family::of(a)
                    );
                }
                statics.push(a);
            }
            ExternalSource::Stun { host, port } => {
                let (shared, opts, rx) = (Arc::clone(&shared), opts.clone(), stop.subscribe());
                tasks.push(tokio::spawn(run_stun(host, port, family, opts, shared, rx)));
            }
            ExternalSource::Interface(name) => {
                let (shared, opts, rx) = (Arc::clone(&shared), opts.clone(), stop.subscribe());
                tasks.push(tokio::spawn(run_interface(name, family, opts, shared, rx)));
            }
        }
    }
    if !statics.is_empty() {
        let (_, s) = shared.apply(|s| {
            let mut c = Change::None;
            for a in &statics {
                if s.confirm(*a) != Change::None {
                    c = Change::New(None);
                }
            }
            c
        });
        tracing::info!("external address {} (static)", s.addrs);
    }
    ExternalHandle {
        stop,
        tasks,
        shared,
    }
}

/// Resolves when a stop was asked (or the handle is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|&s| s).await;
}

/// Counts and reports a refused candidate.
fn refuse(opts: &SourceOptions, what: &str, r: &Refused) {
    opts.rejected.fetch_add(1, Ordering::Relaxed);
    tracing::warn!("{what}: ignoring candidate external address {r}");
}

async fn run_stun(
    host: String,
    port: u16,
    family: Family,
    opts: SourceOptions,
    shared: Arc<ExternalShared>,
    mut stop: watch::Receiver<bool>,
) {
    let what = ExternalSource::Stun {
        host: host.clone(),
        port,
    }
    .to_string();
    let mut opts = opts;
    // A bind address of the other family belongs to the other family's source.
    if opts.stun.bind_addr.is_some_and(|a| Family::of(a) != family) {
        opts.stun.bind_addr = None;
    }
    let mut backoff = opts.stun_retry_initial;
    let mut known = false;
    let mut last_err: Option<String> = None;
    loop {
        let r = tokio::select! {
            r = stun::discover(&host, port, Some(family), &opts.stun) => r,
            _ = stopped(&mut stop) => return,
        };
        // A refused mapped address counts as a failed query: the last good address (if
        // any) stays, flagged stale, and the query is repeated.
        let r = r.and_then(
            |b| match check_external(b.mapped.ip(), opts.allow_private_external) {
                Ok(private) => Ok((b, private)),
                Err(refused) => {
                    refuse(&opts, &what, &refused);
                    Err(
                        stun::DecodeError::Malformed(format!("mapped address refused: {refused}"))
                            .into(),
                    )
                }
            },
        );
        let wait = match r {
            Ok((b, private)) => {
                last_err = None;
                known = true;
                backoff = opts.stun_retry_initial;
                let via = format!(" via {}", b.server);
                shared.confirm(&what, b.mapped.ip(), &via, private);
                opts.stun_refresh
            }
            Err(e) => {
                let msg = e.to_string();
                if last_err.as_deref() != Some(msg.as_str()) {
                    tracing::warn!("{what} ({family}): {msg}");
                } else {
                    tracing::debug!("{what} ({family}): {msg}");
                }
                shared.lose(&what, family, &msg);
                last_err = Some(msg);
                if known {
                    opts.stun_refresh
                } else {
                    let w = backoff;
                    backoff = backoff.saturating_mul(2).min(opts.stun_retry_max);
                    w
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped(&mut stop) => return,
        }
    }
}

async fn run_interface(
    name: String,
    family: Family,
    opts: SourceOptions,
    shared: Arc<ExternalShared>,
    mut stop: watch::Receiver<bool>,
) {
    let what = format!("interface:{name}");
    let mut events = match AddrEvents::open(family) {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::warn!(
                "{what}: cannot subscribe to address notifications ({e}); re-checking every {:?}",
                opts.interface_recheck
            );
            None
        }
    };
    let mut last_problem: Option<String> = None;
    // The refused addresses present at the last look: each is counted and logged once
    // per appearance, not at every re-check.
    let mut refused_before: Vec<IpAddr> = Vec::new();
    loop {
        let found = interface_address(&name, family, opts.allow_private_external);
        if let Ok(p) = &found {
            for r in p
                .refused
                .iter()
                .filter(|r| !refused_before.contains(&r.addr))
            {
                refuse(&opts, &what, r);
            }
            refused_before = p.refused.iter().map(|r| r.addr).collect();
        }
        let problem = match found {
            Ok(Picked {
                addr: Some((a, private)),
                ..
            }) => {
                shared.confirm(&what, a, "", private);
                None
            }
            Ok(Picked {
                addr: None,
                refused,
            }) => {
                let why = if crate::sys::if_index(&name).is_none() {
                    "no such interface".to_string()
                } else if refused.is_empty() {
                    format!("no global {family} address")
                } else {
                    let list: Vec<String> = refused.iter().map(|r| r.addr.to_string()).collect();
                    format!(
                        "no usable global {family} address (refused: {})",
                        list.join(", ")
                    )
                };
                shared.lose(&what, family, &why);
                Some(why)
            }
            // Cannot tell: keep what we have.
            Err(e) => Some(format!("reading addresses: {e}")),
        };
        if problem != last_problem {
            if let Some(p) = &problem {
                tracing::warn!("{what}: {p}");
            }
            last_problem = problem;
        }
        tokio::select! {
            _ = stopped(&mut stop) => return,
            _ = tokio::time::sleep(opts.interface_recheck) => {}
            r = next_event(&mut events) => {
                if let Err(e) = r {
                    tracing::warn!("{what}: address notifications failed ({e}); re-checking every {:?}", opts.interface_recheck);
                    events = None;
                }
            }
        }
    }
}

/// Waits for the next batch of address notifications; never resolves without a socket.
async fn next_event(ev: &mut Option<AddrEvents>) -> io::Result<()> {
    match ev {
        Some(e) => e.wait().await,
        None => std::future::pending().await,
    }
}

/// An rtnetlink socket subscribed to the address group of one family. Notifications are
/// not decoded further: any of them triggers a re-read (cheap, and a lost notification
/// (ENOBUFS) is handled the same way).
struct AddrEvents {
    fd: AsyncFd<EventSocket>,
}

impl AddrEvents {
    fn open(family: Family) -> io::Result<AddrEvents> {
        let addrs = match family {
            Family::V4 => groups::IPV4_IFADDR,
            Family::V6 => groups::IPV6_IFADDR,
        };
        // Interface removal/rename: the address list is re-read too.
        let sock = EventSocket::open(&[addrs, groups::LINK])?;
        // SAFETY: the socket owns its fd for its whole life and always reports that one;
        // the AsyncFd owns the socket.
        let fd = unsafe { AsyncFd::register_with_interest(sock, Interest::READABLE) }?;
        Ok(AddrEvents { fd })
    }

    /// Waits until at least one notification arrived, then drains the socket.
    async fn wait(&mut self) -> io::Result<()> {
        loop {
            let mut guard = self.fd.readable_mut().await?;
            let mut got = false;
            guard.get_inner_mut().drain(&mut |_| got = true)?;
            // `drain` returns once the socket would block.
            guard.clear_ready();
            if got {
                return Ok(());
            }
        }
    }
}

/// One address of an RTM_NEWADDR message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfAddr {
    pub ifindex: u32,
    pub addr: IpAddr,
    /// `RT_SCOPE_*` (0 = global / universe).
    pub scope: u8,
    /// `IFA_F_*` (from IFA_FLAGS when present, else the header's 8 bits).
    pub flags: u32,
}

const IFA_F_SECONDARY: u32 = 0x01; // also IFA_F_TEMPORARY for IPv6
const IFA_F_DADFAILED: u32 = 0x08;
const IFA_F_DEPRECATED: u32 = 0x20;
const IFA_F_TENTATIVE: u32 = 0x40;

/// What [`pick_address`] found on an interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Picked {
    /// The external address, and why it is only allowed by `allow_private_external`
    /// when it is private or shared.
    pub addr: Option<(IpAddr, Option<&'static str>)>,
    /// The candidates [`check_external`] refused, in dump order.
    pub refused: Vec<Refused>,
}

/// The external address of family `f` on interface `ifindex` among `addrs` (in dump
/// order): global scope only, never tentative (DAD not done) or DAD-failed, and only an
/// address [`check_external`] accepts; the first one that is neither deprecated nor
/// secondary/temporary, else the first usable one.
pub fn pick_address(addrs: &[IfAddr], ifindex: u32, f: Family, allow_private: bool) -> Picked {
    let mut picked = Picked::default();
    let mut fallback = None;
    for a in addrs.iter().filter(|a| {
        a.ifindex == ifindex
            && Family::of(a.addr) == f
            && a.scope == 0
            && a.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED) == 0
    }) {
        match check_external(a.addr, allow_private) {
            Err(r) => picked.refused.push(r),
            Ok(private) => {
                let preferred = a.flags & (IFA_F_DEPRECATED | IFA_F_SECONDARY) == 0;
                if preferred && picked.addr.is_none() {
                    picked.addr = Some((a.addr, private));
                } else if fallback.is_none() {
                    fallback = Some((a.addr, private));
                }
            }
        }
    }
    picked.addr = picked.addr.or(fallback);
    picked
}

/// The address of an RTM_NEWADDR message (IFA_LOCAL, else IFA_ADDRESS).
pub fn if_addr_from_message(m: &AddressMessage) -> Option<IfAddr> {
    let mut local = None;
    let mut address = None;
    let mut flags = None;
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            AddressAttribute::Flags(f) => flags = Some(f.bits()),
            _ => {}
        }
    }
    Some(IfAddr {
        ifindex: m.header.index,
        addr: local.or(address)?,
        scope: u8::from(m.header.scope),
        flags: flags.unwrap_or_else(|| u32::from(m.header.flags.bits())),
    })
}

/// The external address of family `f` on interface `name` now (no address: no such
/// interface, or no usable address), with the candidates refused.
pub fn interface_address(name: &str, f: Family, allow_private: bool) -> io::Result<Picked> {
    let Some(ifindex) = crate::sys::if_index(name) else {
        return Ok(Picked::default());
    };
    let addrs = dump_addresses(f)?;
    Ok(pick_address(&addrs, ifindex, f, allow_private))
}

/// RTM_GETADDR dump of one family (all interfaces), retried when the kernel flags it as
/// interrupted by a concurrent change.
pub fn dump_addresses(f: Family) -> io::Result<Vec<IfAddr>> {
    let mut last = None;
    for _ in 0..4 {
        match dump_once(f) {
            Ok(v) => return Ok(v),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("address dump failed")))
}

fn dump_once(f: Family) -> io::Result<Vec<IfAddr>> {
    let family = match f {
        Family::V4 => AddressFamily::Inet,
        Family::V6 => AddressFamily::Inet6,
    };
    let msgs = RtnlSocket::open()?.addresses(family)?;
    Ok(msgs.iter().filter_map(if_addr_from_message).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::address::{AddressFlags, AddressScope};
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ia(ifindex: u32, a: &str, scope: u8, flags: u32) -> IfAddr {
        IfAddr {
            ifindex,
            addr: a.parse().unwrap(),
            scope,
            flags,
        }
    }

    /// The picked address (any class) without the refusals.
    fn pick(addrs: &[IfAddr], ifindex: u32, f: Family) -> Option<IpAddr> {
        pick_address(addrs, ifindex, f, false).addr.map(|(a, _)| a)
    }

    #[test]
    fn picks_the_first_global_usable_address() {
        let addrs = vec![
            ia(2, "203.0.113.9", 0, 0), // another interface
            ia(3, "10.9.9.9", 253, 0),  // scope link
            ia(3, "127.0.0.2", 254, 0), // scope host
            ia(3, "fe80::1", 253, 0),
            ia(3, "2001:db8::dead", 0, IFA_F_TENTATIVE),
            ia(3, "2001:db8::7e", 0, IFA_F_SECONDARY),
            ia(3, "2001:db8::1", 0, 0x80),
            ia(3, "203.0.113.5", 0, 0x80),
            ia(3, "203.0.113.6", 0, 0x80),
        ];
        assert_eq!(
            pick(&addrs, 3, Family::V4),
            Some("203.0.113.5".parse().unwrap())
        );
        assert_eq!(
            pick(&addrs, 3, Family::V6),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(pick(&addrs, 2, Family::V6), None);
        assert_eq!(pick(&addrs, 4, Family::V4), None);
        // Only deprecated/temporary ones left: still used.
        let only = vec![
            ia(3, "2001:db8::7e", 0, IFA_F_SECONDARY),
            ia(3, "2001:db8::01d", 0, IFA_F_DEPRECATED),
        ];
        assert_eq!(
            pick(&only, 3, Family::V6),
            Some("2001:db8::7e".parse().unwrap())
        );
        // DAD failed / tentative never.
        let bad = vec![
            ia(3, "2001:db8::1", 0, IFA_F_DADFAILED),
            ia(3, "2001:db8::2", 0, IFA_F_TENTATIVE),
        ];
        assert_eq!(pick(&bad, 3, Family::V6), None);
    }

    /// Addresses `check_external` refuses are skipped and reported (each once per look);
    /// private and shared ones are picked only when allowed, and then say why.
    #[test]
    fn interface_candidates_go_through_check_external() {
        let addrs = vec![
            ia(3, "127.0.0.2", 0, 0x80),
            ia(3, "10.9.9.9", 0, 0x80),
            ia(3, "100.64.0.7", 0, 0x80),
            ia(3, "203.0.113.5", 0, IFA_F_SECONDARY),
            ia(3, "fd00::5", 0, 0x80),
            ia(3, "::1", 0, 0x80),
        ];
        let p = pick_address(&addrs, 3, Family::V4, false);
        assert_eq!(p.addr, Some(("203.0.113.5".parse().unwrap(), None)));
        let refused: Vec<String> = p.refused.iter().map(|r| r.addr.to_string()).collect();
        assert_eq!(refused, ["127.0.0.2", "10.9.9.9", "100.64.0.7"]);
        assert!(p.refused[1].private && !p.refused[0].private);
        // Allowed: the first private one wins over a secondary public one; loopback never.
        let p = pick_address(&addrs, 3, Family::V4, true);
        assert_eq!(
            p.addr,
            Some((
                "10.9.9.9".parse().unwrap(),
                Some("a private address (RFC 1918)")
            ))
        );
        assert_eq!(p.refused.len(), 1);
        assert_eq!(p.refused[0].addr, "127.0.0.2".parse::<IpAddr>().unwrap());
        // IPv6: only a unique local address (refused) and loopback: nothing picked.
        let p = pick_address(&addrs, 3, Family::V6, false);
        assert_eq!(p.addr, None);
        assert_eq!(p.refused.len(), 2);
        let p = pick_address(&addrs, 3, Family::V6, true);
        assert_eq!(p.addr.map(|(a, _)| a), Some("fd00::5".parse().unwrap()));
    }

    #[test]
    fn address_message_prefers_ifa_local() {
        let mut m = AddressMessage::default();
        m.header.index = 7;
        m.header.family = AddressFamily::Inet;
        m.attributes = vec![
            AddressAttribute::Address("192.0.2.254".parse().unwrap()),
            AddressAttribute::Local("192.0.2.1".parse().unwrap()),
            AddressAttribute::Flags(AddressFlags::Permanent),
        ];
        let a = if_addr_from_message(&m).unwrap();
        assert_eq!(a, ia(7, "192.0.2.1", 0, 0x80));
        m.attributes.remove(1);
        assert_eq!(
            if_addr_from_message(&m).unwrap().addr,
            "192.0.2.254".parse::<IpAddr>().unwrap()
        );
        m.attributes.clear();
        assert_eq!(if_addr_from_message(&m), None);
        m.header.scope = AddressScope::Link;
        m.attributes = vec![AddressAttribute::Address("fe80::1".parse().unwrap())];
        assert_eq!(if_addr_from_message(&m).unwrap().scope, 253);
    }

    #[test]
    fn snapshot_transitions() {
        let mut s = Snapshot::default();
        let a: IpAddr = "203.0.113.5".parse().unwrap();
        let b: IpAddr = "203.0.113.6".parse().unwrap();
        let c: IpAddr = "2001:db8::1".parse().unwrap();
        // Losing nothing is no change (never "no address" published).
        assert_eq!(s.lose(Family::V4), Change::None);
        assert_eq!(s.confirm(a), Change::New(None));
        assert_eq!(s.confirm(a), Change::None);
        assert_eq!(s.confirm(c), Change::New(None));
        assert_eq!(
            s.addrs,
            ExternalAddrs {
                v4: Some(Ipv4Addr::new(203, 0, 113, 5)),
                v6: Some("2001:db8::1".parse::<Ipv6Addr>().unwrap())
            }
        );
        assert_eq!(s.lose(Family::V4), Change::Stale);
        assert!(s.stale() && s.stale_v4 && !s.stale_v6);
        assert_eq!(s.lose(Family::V4), Change::None, "stale once");
        assert_eq!(s.addrs.v4, Some(Ipv4Addr::new(203, 0, 113, 5)), "kept");
        assert_eq!(s.confirm(a), Change::Recovered);
        assert!(!s.stale());
        assert_eq!(s.confirm(b), Change::New(Some(a)));
        assert_eq!(s.lose(Family::V4), Change::Stale);
        assert_eq!(s.confirm(a), Change::New(Some(b)));
        assert!(!s.stale());
        assert_eq!(
            s.addrs.v6,
            Some("2001:db8::1".parse::<Ipv6Addr>().unwrap()),
            "the other family kept"
        );
    }

    /// Statics are published once, combined, before `spawn` returns; a stop ends
    /// nothing else.
    #[tokio::test(flavor = "current_thread")]
    async fn statics_publish_once() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = Arc::clone(&seen);
        let publish: Publisher = Arc::new(move |u: ExternalUpdate| {
            s2.lock().unwrap().push((u.addrs, u.source, u.stale))
        });
        let h = spawn(
            ExternalSource::Static("203.0.113.10".parse().unwrap()),
            ExternalSource::Static("2001:db8::10".parse().unwrap()),
            SourceOptions::default(),
            publish,
        );
        let got = seen.lock().unwrap().clone();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.v4, Some(Ipv4Addr::new(203, 0, 113, 10)));
        assert_eq!(got[0].0.v6, Some("2001:db8::10".parse().unwrap()));
        assert_eq!(got[0].1, "static 203.0.113.10 / static 2001:db8::10");
        assert!(!got[0].2);
        assert_eq!(h.current().addrs, got[0].0);
        h.join().await;
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    /// The lo interface has no global address: nothing is published, and stop works
    /// while the task waits for notifications.
    #[tokio::test(flavor = "current_thread")]
    async fn interface_without_global_address_publishes_nothing() {
        let seen = Arc::new(Mutex::new(0usize));
        let s2 = Arc::clone(&seen);
        let publish: Publisher = Arc::new(move |_| *s2.lock().unwrap() += 1);
        assert_eq!(
            interface_address("lo", Family::V4, false).unwrap(),
            Picked::default()
        );
        assert_eq!(
            interface_address("no-such-if0", Family::V4, false).unwrap(),
            Picked::default()
        );
        let h = spawn(
            ExternalSource::Interface("lo".into()),
            ExternalSource::Interface("no-such-if0".into()),
            SourceOptions {
                interface_recheck: Duration::from_millis(10),
                ..SourceOptions::default()
            },
            publish,
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        h.join().await;
        assert_eq!(*seen.lock().unwrap(), 0);
    }
}
