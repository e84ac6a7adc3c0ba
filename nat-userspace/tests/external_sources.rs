//! External-address sources against real servers and a real kernel.
//!
//! - In-process STUN responders on loopback (127.0.0.1 / [::1], unprivileged): IPv6
//!   XOR-MAPPED-ADDRESS, error responses, garbage answers, the STUN source's
//!   refresh / change / stale / recovery cycle, and its refusal of mapped addresses that
//!   cannot be external addresses.
//! - coturn (`turnserver --stun-only`) in a "server" namespace and the sources in a
//!   "client" namespace, joined by a veth pair (privileged):
//!
//!   ```text
//!   srv: stS0 198.51.100.2/24 2001:db8:100::2/64 ── stC0 198.51.100.10/24 2001:db8:100::10/64 :cli
//!   ```
//!
//! - `interface:NAME` on a veth of a test namespace (privileged).
//!
//! All traffic stays on loopback or between the namespaces the tests create.

mod common;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use common::{
    netns::{veth_pair, Netns},
    privileged,
};
use sipnat::{
    config::ExternalSource,
    control::{
        external::{self, Publisher, SourceOptions},
        stun::{self, DecodeError, Family, Retransmit, StunError, StunOptions},
    },
    nat::external::ExternalAddrs,
};
use tokio::net::UdpSocket;

// ---------------------------------------------------------------------------------------
// Publication recorder

/// What a source hands to the daemon.
use sipnat::control::writer::ExternalUpdate as Publication;

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Publication>>>);

impl Recorder {
    fn publisher(&self) -> Publisher {
        let log = Arc::clone(&self.0);
        Arc::new(move |u| log.lock().unwrap().push(u))
    }

    fn all(&self) -> Vec<Publication> {
        self.0.lock().unwrap().clone()
    }

    fn last(&self) -> Option<Publication> {
        self.0.lock().unwrap().last().cloned()
    }

    /// Polls until the latest publication is `addrs` with `stale`; panics with the whole
    /// history after `timeout`.
    /// [`Recorder::wait_for`] both families' addresses `(v4, v6)`, `secs` seconds at most.
    fn wait_for_both(&self, (v4, v6): (&str, &str), stale: bool, secs: u64) -> Publication {
        self.wait_for(addrs(Some(v4), Some(v6)), stale, Duration::from_secs(secs))
    }

    fn wait_for(&self, addrs: ExternalAddrs, stale: bool, timeout: Duration) -> Publication {
        let since = Instant::now();
        loop {
            if let Some(p) = self.latest_is(addrs, stale, since, timeout) {
                return p;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The latest publication if it is `addrs` with `stale`; panics with the whole history
    /// once `timeout` has passed since `since`.
    fn latest_is(
        &self,
        addrs: ExternalAddrs,
        stale: bool,
        since: Instant,
        timeout: Duration,
    ) -> Option<Publication> {
        let p = self.last().filter(|p| p.addrs == addrs && p.stale == stale);
        assert!(
            p.is_some() || since.elapsed() < timeout,
            "no publication of {addrs} stale={stale} within {timeout:?}; got {:#?}",
            self.all()
        );
        p
    }

    async fn wait_for_async(
        &self,
        addrs: ExternalAddrs,
        stale: bool,
        timeout: Duration,
    ) -> Publication {
        let since = Instant::now();
        loop {
            if let Some(p) = self.latest_is(addrs, stale, since, timeout) {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// [`Recorder::wait_for_async`] of the IPv4 address `a` alone, for 5 s.
    async fn wait_v4(&self, a: &str, stale: bool) -> Publication {
        self.wait_for_async(addrs(Some(a), None), stale, Duration::from_secs(5))
            .await
    }

    /// A family that once had an address never went back to none; no two consecutive
    /// publications are identical (only changes are published).
    fn assert_consistent(&self) {
        let all = self.all();
        let (mut had4, mut had6) = (false, false);
        for (i, p) in all.iter().enumerate() {
            assert!(
                !(had4 && p.addrs.v4.is_none()),
                "IPv4 lost at #{i}: {all:#?}"
            );
            assert!(
                !(had6 && p.addrs.v6.is_none()),
                "IPv6 lost at #{i}: {all:#?}"
            );
            had4 |= p.addrs.v4.is_some();
            had6 |= p.addrs.v6.is_some();
            if i > 0 {
                assert_ne!(all[i - 1], *p, "duplicate publication at #{i}");
            }
        }
    }
}

fn addrs(v4: Option<&str>, v6: Option<&str>) -> ExternalAddrs {
    ExternalAddrs {
        v4: v4.map(|a| a.parse::<Ipv4Addr>().unwrap()),
        v6: v6.map(|a| a.parse::<Ipv6Addr>().unwrap()),
    }
}

/// The sources running on their own current-thread runtime, on a thread in `ns` (or in
/// the test's namespace). Stopped and joined on drop.
struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(
        ns: Option<&Netns>,
        v4: ExternalSource,
        v6: ExternalSource,
        opts: SourceOptions,
        publish: Publisher,
    ) -> Running {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let body = move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let h = external::spawn(v4, v6, opts, publish);
                let _ = rx.await;
                h.join().await;
            });
        };
        // A thread started from a thread inside `ns` is inside `ns` too.
        let thread = match ns {
            Some(ns) => ns.run(move || std::thread::spawn(body)),
            None => std::thread::spawn(body),
        };
        Running {
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let r = t.join();
            if !std::thread::panicking() {
                r.expect("source thread panicked");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// An in-process STUN responder (its encoder is written independently of the client's
// parser, from RFC 8489 §14.2 / §14.8).

const COOKIE: u32 = 0x2112_A442;

fn encode(mtype: u16, tid: &[u8], attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (t, v) in attrs {
        body.extend_from_slice(&t.to_be_bytes());
        body.extend_from_slice(&(v.len() as u16).to_be_bytes());
        body.extend_from_slice(v);
        body.resize(body.len().next_multiple_of(4), 0);
    }
    let mut m = Vec::new();
    m.extend_from_slice(&mtype.to_be_bytes());
    m.extend_from_slice(&(body.len() as u16).to_be_bytes());
    m.extend_from_slice(&COOKIE.to_be_bytes());
    m.extend_from_slice(tid);
    m.extend_from_slice(&body);
    m
}

fn xor_mapped(a: SocketAddr, tid: &[u8]) -> (u16, Vec<u8>) {
    let mut v = vec![0u8];
    let port = a.port() ^ (COOKIE >> 16) as u16;
    match a.ip() {
        IpAddr::V4(ip) => {
            v.push(1);
            v.extend_from_slice(&port.to_be_bytes());
            v.extend_from_slice(&(u32::from(ip) ^ COOKIE).to_be_bytes());
        }
        IpAddr::V6(ip) => {
            v.push(2);
            v.extend_from_slice(&port.to_be_bytes());
            let mut key = COOKIE.to_be_bytes().to_vec();
            key.extend_from_slice(tid);
            v.extend(ip.octets().iter().zip(key).map(|(a, k)| a ^ k));
        }
    }
    (0x0020, v)
}

#[derive(Clone, Debug)]
enum Mode {
    /// Never answers.
    Silent,
    /// Success with this XOR-MAPPED-ADDRESS (plus SOFTWARE).
    Mapped(SocketAddr),
    /// Success naming the request's real source address.
    Echo,
    /// Error response with this code and reason.
    Error(u16, &'static str),
    /// Every answer is some kind of garbage.
    Garbage,
    /// First an answer for another transaction, then the right one.
    WrongTidThenMapped(SocketAddr),
}

/// Sets what the responder answers, then waits until the source published `v4` (with the
/// IPv6 address `2001:db8::1` kept) flagged `stale` or not.
async fn answer_then_expect(r: &Responder, rec: &Recorder, mode: Mode, v4: &str, stale: bool) {
    r.set(mode);
    rec.wait_for_async(
        addrs(Some(v4), Some("2001:db8::1")),
        stale,
        Duration::from_secs(5),
    )
    .await;
}

struct Responder {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Responder {
    async fn start(bind: &str, mode: Mode) -> Responder {
        let sock = UdpSocket::bind(bind).await.unwrap();
        let addr = sock.local_addr().unwrap();
        let mode = Arc::new(Mutex::new(mode));
        let requests = Arc::new(AtomicUsize::new(0));
        let (m2, r2) = (Arc::clone(&mode), Arc::clone(&requests));
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let mut garbage_round = 0usize;
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    continue;
                };
                if n < 20 || buf[0..2] != [0x00, 0x01] {
                    continue; // not a Binding request
                }
                r2.fetch_add(1, Ordering::SeqCst);
                let tid = buf[8..20].to_vec();
                let mode = m2.lock().unwrap().clone();
                let software = (0x8022u16, b"sipnat-test".to_vec());
                let answers: Vec<Vec<u8>> = match mode {
                    Mode::Silent => vec![],
                    Mode::Mapped(a) => vec![encode(0x0101, &tid, &[software, xor_mapped(a, &tid)])],
                    Mode::Echo => vec![encode(0x0101, &tid, &[xor_mapped(from, &tid)])],
                    Mode::Error(code, reason) => {
                        let mut v = vec![0, 0, (code / 100) as u8, (code % 100) as u8];
                        v.extend_from_slice(reason.as_bytes());
                        vec![encode(0x0111, &tid, &[(0x0009, v)])]
                    }
                    Mode::Garbage => {
                        garbage_round += 1;
                        let good = encode(0x0101, &tid, &[xor_mapped(from, &tid)]);
                        let mut cut = good.clone();
                        cut.truncate(good.len() - 3);
                        let mut bad_len = good.clone();
                        bad_len[3] = 0xf0;
                        let mut bad_family = good.clone();
                        bad_family[25] = 9;
                        let mut overrun = good.clone();
                        overrun[22..24].copy_from_slice(&0x0400u16.to_be_bytes());
                        let random: Vec<u8> = (0..200u32)
                            .map(|i| {
                                (i.wrapping_mul(2654435761)
                                    .wrapping_add(garbage_round as u32)
                                    >> 13) as u8
                            })
                            .collect();
                        vec![
                            b"HELLO, this is not STUN\r\n".to_vec(),
                            vec![],
                            vec![0x01],
                            cut,
                            bad_len,
                            bad_family,
                            overrun,
                            random,
                            // A well-formed success with an unknown comprehension-required
                            // attribute would fail the transaction: not garbage, omitted.
                        ]
                    }
                    Mode::WrongTidThenMapped(a) => {
                        let mut other = tid.clone();
                        other[0] ^= 0xff;
                        vec![
                            encode(
                                0x0101,
                                &other,
                                &[xor_mapped("192.0.2.99:1".parse().unwrap(), &other)],
                            ),
                            encode(0x0101, &tid, &[xor_mapped(a, &tid)]),
                        ]
                    }
                };
                for a in answers {
                    let _ = sock.send_to(&a, from).await;
                }
            }
        });
        Responder {
            addr,
            mode,
            requests,
            task,
        }
    }

    fn set(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn quick() -> StunOptions {
    stun_timing(20, 4, 400)
}

/// STUN options with the retransmission timing given: first timeout, requests at most,
/// overall deadline (milliseconds).
fn stun_timing(initial_rto_ms: u64, max_requests: u32, deadline_ms: u64) -> StunOptions {
    let retransmit = Retransmit {
        initial_rto: Duration::from_millis(initial_rto_ms),
        max_requests,
        deadline: Duration::from_millis(deadline_ms),
    };
    StunOptions {
        retransmit,
        ..StunOptions::default()
    }
}

/// Source options with the STUN source's timing: refresh, first retry and longest retry
/// (milliseconds), interface re-check every 5 s.
fn stun_source_timing(
    refresh_ms: u64,
    retry_ms: u64,
    retry_max_ms: u64,
    stun: StunOptions,
) -> SourceOptions {
    SourceOptions {
        stun_refresh: Duration::from_millis(refresh_ms),
        stun_retry_initial: Duration::from_millis(retry_ms),
        stun_retry_max: Duration::from_millis(retry_max_ms),
        interface_recheck: Duration::from_secs(5),
        stun,
        ..SourceOptions::default()
    }
}

/// A responder mode that answers with the mapped address `a`.
fn mapped(a: &str) -> Mode {
    Mode::Mapped(a.parse().unwrap())
}

// ---------------------------------------------------------------------------------------
// Unprivileged: loopback responders

#[tokio::test(flavor = "current_thread")]
async fn stun_xor_mapped_ipv6() {
    let mapped: SocketAddr = "[2001:db8:1234::77]:40000".parse().unwrap();
    let r = Responder::start("[::1]:0", Mode::Mapped(mapped)).await;
    let b = stun::query(r.addr, &quick()).await.unwrap();
    assert_eq!(b.mapped, mapped);
    assert_eq!(b.server, r.addr);
    let b = stun::discover("::1", r.addr.port(), Some(Family::V6), &quick())
        .await
        .unwrap();
    assert_eq!(b.mapped, mapped);
    // With FINGERPRINT on the request (the responder ignores it).
    let opts = StunOptions {
        fingerprint: true,
        ..quick()
    };
    assert_eq!(stun::query(r.addr, &opts).await.unwrap().mapped, mapped);
    // Echo: the real source address, IPv6.
    r.set(Mode::Echo);
    let b = stun::query(r.addr, &quick()).await.unwrap();
    assert_eq!(b.mapped, b.local);
    assert_eq!(b.mapped.ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
}

#[tokio::test(flavor = "current_thread")]
async fn stun_family_is_checked() {
    // An IPv4 server that reports an IPv6 mapped address to an IPv4 source.
    let r = Responder::start("127.0.0.1:0", mapped("[2001:db8::1]:1")).await;
    match stun::discover("127.0.0.1", r.addr.port(), Some(Family::V4), &quick()).await {
        Err(StunError::WrongFamily {
            family: Family::V4, ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // No IPv6 address for an IPv4 literal.
    assert!(matches!(
        stun::discover("127.0.0.1", r.addr.port(), Some(Family::V6), &quick()).await,
        Err(StunError::Resolve { .. })
    ));
}

#[tokio::test(flavor = "current_thread")]
async fn stun_error_response_is_reported_at_once() {
    let r = Responder::start("127.0.0.1:0", Mode::Error(500, "Server Error")).await;
    let opts = stun_timing(200, 5, 10_000);
    let t = Instant::now();
    match stun::query(r.addr, &opts).await {
        Err(StunError::Decode(DecodeError::ErrorResponse { code, reason })) => {
            assert_eq!(code, 500);
            assert_eq!(reason, "Server Error");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "no wait for retransmissions"
    );
    assert_eq!(r.requests(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn stun_garbage_answers_fail_cleanly() {
    let r = Responder::start("127.0.0.1:0", Mode::Garbage).await;
    let t = Instant::now();
    // Timing under load may cut the number of requests; every one sent got garbage.
    let sent = match stun::query(r.addr, &quick()).await {
        Err(e @ StunError::NoResponse { last: Some(_), .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("last problem"), "{msg}");
            let StunError::NoResponse { requests, .. } = e else {
                unreachable!()
            };
            requests
        }
        other => panic!("{other:?}"),
    };
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(sent >= 2, "retransmitted");
    assert_eq!(
        r.requests(),
        sent as usize,
        "every request was answered with garbage"
    );
    // Answers to another transaction are skipped, the right one is taken.
    let mapped: SocketAddr = "198.51.100.44:5060".parse().unwrap();
    r.set(Mode::WrongTidThenMapped(mapped));
    assert_eq!(stun::query(r.addr, &quick()).await.unwrap().mapped, mapped);
    // Nothing listening: ICMP port unreachable is survived until the deadline.
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    match stun::query(SocketAddr::from(([127, 0, 0, 1], port)), &quick()).await {
        Err(StunError::NoResponse { requests, .. }) => assert!(requests >= 2),
        other => panic!("{other:?}"),
    }
}

/// The STUN source: retries until the first answer, publishes the mapped address and its
/// changes, keeps the last one flagged stale when the server goes silent, and recovers;
/// the static IPv6 address stays in every publication.
#[tokio::test(flavor = "current_thread")]
async fn stun_source_publishes_changes_and_staleness() {
    let r = Responder::start("127.0.0.1:0", Mode::Silent).await;
    let rec = Recorder::default();
    let opts = stun_source_timing(100, 20, 80, quick());
    let h = external::spawn(
        ExternalSource::Stun {
            host: "127.0.0.1".into(),
            port: r.addr.port(),
        },
        ExternalSource::Static("2001:db8::1".parse().unwrap()),
        opts,
        rec.publisher(),
    );
    let src = format!("stun:127.0.0.1:{} / static 2001:db8::1", r.addr.port());
    // The static family is published at once.
    let p = rec
        .wait_for_async(
            addrs(None, Some("2001:db8::1")),
            false,
            Duration::from_secs(1),
        )
        .await;
    assert_eq!(p.source, src);
    // Silent server: two whole transactions fail, nothing else is published.
    let t = Instant::now();
    while r.requests() < 2 * 4 + 1 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "client stopped retrying"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(rec.all().len(), 1);

    let mapped = |a: &str| Mode::Mapped(format!("{a}:5000").parse().unwrap());
    for (mode, expect, stale) in [
        (mapped("198.51.100.20"), "198.51.100.20", false),
        (mapped("198.51.100.21"), "198.51.100.21", false),
        (Mode::Silent, "198.51.100.21", true),
    ] {
        answer_then_expect(&r, &rec, mode, expect, stale).await;
    }
    let snap = h.current();
    assert!(snap.stale_v4 && !snap.stale_v6);
    answer_then_expect(&r, &rec, mapped("198.51.100.21"), "198.51.100.21", false).await;
    // Garbage is a failure like silence: stale, the address kept.
    answer_then_expect(&r, &rec, Mode::Garbage, "198.51.100.21", true).await;
    h.join().await;
    let n = rec.all().len();
    r.set(Mode::Mapped("198.51.100.22:5000".parse().unwrap()));
    let before = r.requests();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(r.requests(), before, "stopped sources send nothing");
    assert_eq!(rec.all().len(), n, "stopped sources publish nothing");
    rec.assert_consistent();
    assert!(rec.all().iter().all(|p| p.source == src));
}

/// A mapped address `check_external` refuses (private without allow_private_external;
/// loopback, unspecified, multicast always) is never published: it is counted in
/// `SourceOptions::rejected`, and a known address stays, flagged stale. With
/// allow_private_external a private one is published.
#[tokio::test(flavor = "current_thread")]
async fn stun_source_refuses_unusable_and_private_mapped_addresses() {
    let r = Responder::start("127.0.0.1:0", mapped("10.9.9.9:5000")).await;
    let source = || ExternalSource::Stun {
        host: "127.0.0.1".into(),
        port: r.addr.port(),
    };
    let opts = stun_source_timing(50, 20, 40, quick());
    let rejected = Arc::clone(&opts.rejected);
    let rec = Recorder::default();
    let h = external::spawn(
        source(),
        ExternalSource::None,
        opts.clone(),
        rec.publisher(),
    );
    let wait_rejected = |n: u64| {
        let rejected = Arc::clone(&rejected);
        async move {
            let t = Instant::now();
            while rejected.load(Ordering::Relaxed) < n {
                assert!(
                    t.elapsed() < Duration::from_secs(5),
                    "fewer than {n} refusals"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    // Private: refused at every answer, nothing published.
    wait_rejected(3).await;
    assert_eq!(rec.all(), vec![], "a private address was published");
    // A public (documentation) address is used.
    r.set(Mode::Mapped("198.51.100.20:5000".parse().unwrap()));
    rec.wait_v4("198.51.100.20", false).await;
    // Loopback, unspecified, multicast: refused; the last good address stays, stale.
    for bad in ["127.0.0.1:5000", "0.0.0.0:5000", "224.0.0.1:5000"] {
        let before = rejected.load(Ordering::Relaxed);
        r.set(Mode::Mapped(bad.parse().unwrap()));
        wait_rejected(before + 2).await;
        rec.wait_v4("198.51.100.20", true).await;
        r.set(Mode::Mapped("198.51.100.20:5000".parse().unwrap()));
        rec.wait_v4("198.51.100.20", false).await;
    }
    h.join().await;
    rec.assert_consistent();
    let published: Vec<Option<Ipv4Addr>> = rec.all().iter().map(|p| p.addrs.v4).collect();
    assert!(
        published
            .iter()
            .all(|a| *a == Some(Ipv4Addr::new(198, 51, 100, 20))),
        "{published:?}"
    );

    // allow_private_external: the private address is published; loopback still is not.
    r.set(Mode::Mapped("100.64.0.9:5000".parse().unwrap()));
    let allowed = SourceOptions {
        allow_private_external: true,
        ..opts
    };
    let rec = Recorder::default();
    let h = external::spawn(source(), ExternalSource::None, allowed, rec.publisher());
    rec.wait_v4("100.64.0.9", false).await;
    let before = rejected.load(Ordering::Relaxed);
    r.set(Mode::Mapped("127.0.0.1:5000".parse().unwrap()));
    wait_rejected(before + 1).await;
    rec.wait_v4("100.64.0.9", true).await;
    h.join().await;
}

// ---------------------------------------------------------------------------------------
// Privileged: coturn in a namespace

fn enable_ipv6(ns: &Netns) {
    ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0"]);
    ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=0"]);
}

fn have_turnserver() -> bool {
    let ok = std::process::Command::new("turnserver")
        .arg("-h")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !ok {
        let msg = "turnserver (Debian package coturn) is not installed";
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "{msg}; CI=true forbids skipping"
        );
        eprintln!("SKIP stun_against_coturn: {msg}");
    }
    ok
}

#[test]
fn stun_against_coturn() {
    if !privileged("stun_against_coturn") || !have_turnserver() {
        return;
    }
    let mut srv = Netns::new("stsrv");
    let cli = Netns::new("stcli");
    enable_ipv6(&srv);
    enable_ipv6(&cli);
    veth_pair(
        &srv,
        "stS0",
        "198.51.100.2/24",
        &cli,
        "stC0",
        "198.51.100.10/24",
    );
    srv.exec(&[
        "ip",
        "addr",
        "add",
        "2001:db8:100::2/64",
        "dev",
        "stS0",
        "nodad",
    ]);
    cli.exec(&[
        "ip",
        "addr",
        "add",
        "2001:db8:100::10/64",
        "dev",
        "stC0",
        "nodad",
    ]);
    // Deleting the primary IPv4 address must keep the secondary one.
    cli.exec(&["sysctl", "-qw", "net.ipv4.conf.all.promote_secondaries=1"]);
    let pidfile = RemoveOnDrop(std::env::temp_dir().join(format!("sipnat-turn-{}.pid", srv.name)));
    let pidfile = pidfile.0.to_str().unwrap();
    let turn = common::topo::stun_server(&mut srv, &["198.51.100.2", "2001:db8:100::2"], pidfile);

    let rec = Recorder::default();
    let stun = StunOptions {
        // Exercise SO_BINDTODEVICE (the outside interface).
        bind_device: Some("stC0".into()),
        fingerprint: true,
        ..stun_timing(100, 3, 700)
    };
    let opts = stun_source_timing(200, 100, 500, stun);
    let src4 = ExternalSource::parse("stun:198.51.100.2:3478").unwrap();
    let src6 = ExternalSource::parse("stun:[2001:db8:100::2]:3478").unwrap();
    let src = format!("{src4} / {src6}");
    let running = Running::start(Some(&cli), src4, src6, opts, rec.publisher());
    // coturn starts in well under a second; allow for a slow machine.
    let p = rec.wait_for_both(("198.51.100.10", "2001:db8:100::10"), false, 20);
    assert_eq!(p.source, src);

    // The client's addresses change: the server now sees the new ones.
    swap_addrs(
        &cli,
        "stC0",
        ["198.51.100.11/24", "2001:db8:100::11/64"],
        &["198.51.100.10/24", "2001:db8:100::10/64"],
    );
    rec.wait_for_both(("198.51.100.11", "2001:db8:100::11"), false, 10);

    // The server dies: the last good addresses stay, flagged stale.
    // SAFETY: plain kill(2) of the process this test started.
    assert_eq!(unsafe { libc::kill(turn as libc::pid_t, libc::SIGKILL) }, 0);
    rec.wait_for_both(("198.51.100.11", "2001:db8:100::11"), true, 10);
    drop(running);
    rec.assert_consistent();
}

/// Adds `new` (an IPv4 and an IPv6 address, with their prefix lengths) to `dev` in `ns`,
/// then deletes `old`.
fn swap_addrs(ns: &Netns, dev: &str, new: [&str; 2], old: &[&str]) {
    ns.exec(&["ip", "addr", "add", new[0], "dev", dev]);
    ns.exec(&["ip", "addr", "add", new[1], "dev", dev, "nodad"]);
    for a in old {
        ns.exec(&["ip", "addr", "del", a, "dev", dev]);
    }
}

/// A file removed when the test ends (also on failure).
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// ---------------------------------------------------------------------------------------
// Privileged: interface:NAME

#[test]
fn interface_source_follows_addresses() {
    crate::privileged_or_skip!();
    let ns = Netns::new("ifsrc");
    enable_ipv6(&ns);
    let rec = Recorder::default();
    // A re-check period far beyond the waits below: changes must arrive through netlink
    // notifications.
    let opts = SourceOptions {
        interface_recheck: Duration::from_secs(120),
        ..SourceOptions::default()
    };
    // Started before the interface exists.
    let running = Running::start(
        Some(&ns),
        ExternalSource::Interface("xe0".into()),
        ExternalSource::Interface("xe0".into()),
        opts,
        rec.publisher(),
    );
    ns.exec(&[
        "ip", "link", "add", "xe0", "type", "veth", "peer", "name", "xe1",
    ]);
    ns.exec(&["ip", "link", "set", "xe1", "up"]);
    ns.exec(&["ip", "link", "set", "xe0", "up"]);
    // Not global: never picked (nor the fe80:: link-local address).
    ns.exec(&[
        "ip",
        "addr",
        "add",
        "10.9.9.9/24",
        "dev",
        "xe0",
        "scope",
        "link",
    ]);
    swap_addrs(&ns, "xe0", ["203.0.113.5/24", "2001:db8:5::5/64"], &[]);
    let p = rec.wait_for_both(("203.0.113.5", "2001:db8:5::5"), false, 5);
    assert_eq!(p.source, "interface:xe0 / interface:xe0");

    // A new address, then the old one removed: the new one is published.
    swap_addrs(
        &ns,
        "xe0",
        ["192.0.2.77/24", "2001:db8:6::6/64"],
        &["203.0.113.5/24", "2001:db8:5::5/64"],
    );
    rec.wait_for_both(("192.0.2.77", "2001:db8:6::6"), false, 5);

    // All global addresses gone: the last ones are kept, stale.
    ns.exec(&["ip", "addr", "del", "192.0.2.77/24", "dev", "xe0"]);
    ns.exec(&["ip", "addr", "del", "2001:db8:6::6/64", "dev", "xe0"]);
    rec.wait_for_both(("192.0.2.77", "2001:db8:6::6"), true, 5);

    // One family comes back: published, the other still stale.
    ns.exec(&["ip", "addr", "add", "203.0.113.9/24", "dev", "xe0"]);
    rec.wait_for_both(("203.0.113.9", "2001:db8:6::6"), true, 5);
    ns.exec(&[
        "ip",
        "addr",
        "add",
        "2001:db8:7::7/64",
        "dev",
        "xe0",
        "nodad",
    ]);
    rec.wait_for_both(("203.0.113.9", "2001:db8:7::7"), false, 5);

    // The interface disappears: kept, stale.
    ns.exec(&["ip", "link", "del", "xe0"]);
    rec.wait_for_both(("203.0.113.9", "2001:db8:7::7"), true, 5);
    drop(running);
    rec.assert_consistent();
}
