//! The attack run, replayed against one live daemon in one topology: torture and corpus
//! messages both ways, random datagrams, absurd Content-Lengths, thousands of headers and
//! addresses, 19–65 KB fragmented SIP, bad fragment trains, a 400,000-first-fragment flood, a
//! flow-table flood, non-SIP fragments both ways, ICMP errors, metrics and control-socket
//! floods, broken reloads, reload signals and external-address flips under load.
//!
//! Each case counts what it sent, what arrived (datagrams at a receiving socket: the
//! kernel behind it reassembles and checks the UDP checksum), the daemon's counted drops
//! (its counters, deltas over the case) and leaks (a datagram on the outside from an
//! internal source, or naming an internal address in a rewritable field). A table with
//! one row per case is printed. It asserts, per case, sent = delivered + counted drops
//! (nothing lost silently), and over the run: not one leak, not one packet from an
//! internal address on the outside capture, no panic, the daemon's RSS bounded, and a
//! clean stop.
//!
//! The gateway masquerades non-SIP traffic from the inside with nftables, as the Deploy
//! docs do, so an internal address on the outside can only be sipnat's.

mod common;

use std::{
    collections::BTreeMap,
    net::{SocketAddr, UdpSocket},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use serde_json::Value;

use common::{
    report,
    sipcheck::{names_address_exactly, rewritable_addresses},
    testdata,
    topo::{link_stat, send_raw_ipv4_paced, tshark, Capture, Sipnat, Topo, CAR_IP, EXT_IP, UA_IP},
    traffic::force_rcvbuf,
};

/// Carrier addresses beyond CAR_IP (the flow flood's remotes; the receiver listens on all).
const MORE_CAR_IPS: [&str; 3] = ["198.51.100.3", "198.51.100.4", "198.51.100.5"];

/// A SIP port the carrier does not listen on: its kernel answers ICMP port unreachable.
const DEAD_PORT: u16 = 5062;

/// Counters whose deltas are datagrams dropped by the daemon (or by the kernel at its
/// AF_XDP rings) and counted: every `drop_*` counter plus these.
const DATAGRAM_DROPS: &[&str] = &[
    "reasm_overlap",
    "reasm_timeout",
    "reasm_evicted",
    "reasm_too_big",
    "reasm_too_many_fragments",
    "reasm_inconsistent",
    // Fragment-level, but a flood of single first fragments has one fragment per datagram.
    "reasm_no_slot",
    "reasm_malformed",
    "slow_send_error",
];

/// Every counted drop in a stats snapshot (see [`DATAGRAM_DROPS`]), including the kernel's
/// drops at the AF_XDP receive rings of every worker.
fn counted_drops(st: &Value) -> u64 {
    let total = st["total"].as_object().expect("stats total");
    let own: u64 = total
        .iter()
        .filter(|(k, _)| k.starts_with("drop_") || DATAGRAM_DROPS.contains(&k.as_str()))
        .map(|(_, v)| v.as_u64().unwrap_or(0))
        .sum();
    let xsk: u64 = st["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|w| ["inside", "outside"].map(|side| &w["xsk"][side]))
        .map(|x| x["rx_dropped"].as_u64().unwrap_or(0) + x["rx_ring_full"].as_u64().unwrap_or(0))
        .sum();
    own + xsk
}

fn total(st: &Value, k: &str) -> u64 {
    st["total"][k]
        .as_u64()
        .unwrap_or_else(|| panic!("counter {k} missing"))
}

fn in_reassembly(st: &Value) -> u64 {
    st["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| w["reassembly"]["in_progress"].as_u64().unwrap_or(0))
        .sum()
}

/// A UDP socket in a namespace that counts what it receives (and, on the outside, what
/// leaks); its clone sends.
struct Endpoint {
    sock: UdpSocket,
    got: Arc<AtomicU64>,
    leaks: Arc<AtomicU64>,
    first_leak: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
}

impl Endpoint {
    /// Binds `addr` in `ns`. `outside`: every datagram must come from the external
    /// address and name no internal address.
    fn bind(ns: &common::netns::Netns, addr: (&'static str, u16), outside: bool) -> Endpoint {
        let sock = ns.run(move || UdpSocket::bind(addr).expect("bind"));
        force_rcvbuf(&sock, 64 << 20);
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let e = Endpoint {
            sock: sock.try_clone().unwrap(),
            got: Arc::default(),
            leaks: Arc::default(),
            first_leak: Arc::default(),
            stop: Arc::default(),
        };
        let (got, leaks, first, stop) = (
            e.got.clone(),
            e.leaks.clone(),
            e.first_leak.clone(),
            e.stop.clone(),
        );
        std::thread::spawn(move || {
            let mut b = vec![0u8; 70_000];
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut b) else {
                    continue;
                };
                got.fetch_add(1, Ordering::Relaxed);
                let p = &b[..n];
                if outside && leaks_or_mixes(&from.ip().to_string(), p) {
                    leaks.fetch_add(1, Ordering::Relaxed);
                    first.lock().unwrap().get_or_insert_with(|| {
                        format!("from {from}:\n{}", String::from_utf8_lossy(p))
                    });
                }
            }
        });
        e
    }

    fn got(&self) -> u64 {
        self.got.load(Ordering::Relaxed)
    }

    fn leaks(&self) -> u64 {
        self.leaks.load(Ordering::Relaxed)
    }

    /// Sends every message to `to`, about `rate` per second (bursts of 32, then a pause:
    /// pacing, not synchronisation).
    fn send_all(&self, msgs: &[Vec<u8>], to: (&str, u16), rate: u64) -> u64 {
        let to: SocketAddr = format!("{}:{}", to.0, to.1).parse().unwrap();
        let t0 = Instant::now();
        let mut sent = 0u64;
        for (i, m) in msgs.iter().enumerate() {
            if self.sock.send_to(m, to).is_ok() {
                sent += 1;
            }
            if i % 32 == 31 {
                let due = t0 + Duration::from_secs_f64((i + 1) as f64 / rate as f64);
                if let Some(d) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
            }
        }
        sent
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The other external address the flips switch to.
const FLIP_IP: &str = "198.51.100.77";

/// A datagram on the outside leaks when it comes from an internal address or names one
/// in a field the rewriter owns (R-URI, top Via, Contact, SDP `c=`/`o=`/`a=rtcp`; From,
/// To, Call-ID and branches are left by design); it mixes when it names the external
/// address it was not sent from.
fn leaks_or_mixes(src: &str, payload: &[u8]) -> bool {
    let other = match src {
        EXT_IP => FLIP_IP,
        FLIP_IP => EXT_IP,
        _ => return true,
    };
    rewritable_addresses(payload)
        .iter()
        .any(|(_, a)| a.to_string().starts_with("10.0.0."))
        || names_address_exactly(payload, other)
}

/// One row of the table.
struct Row {
    case: String,
    sent: u64,
    delivered: u64,
    drops: u64,
    leaks: u64,
    /// sent = delivered + drops (or the case's own accounting) held.
    accounted: bool,
    note: String,
}

struct Run {
    t: Topo,
    sipnat: Sipnat,
    car: Endpoint,
    ua: Endpoint,
    rows: Vec<Row>,
    max_rss_kb: u64,
}

impl Run {
    fn rss_kb(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.sipnat.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    fn sample_rss(&mut self) {
        self.max_rss_kb = self.max_rss_kb.max(self.rss_kb());
    }

    /// Runs a case whose datagrams go one way, to `sink` (`outbound`: to the carrier,
    /// checked for leaks). `send` returns how many datagrams it sent. Waits until every
    /// one is delivered or counted as dropped, and nothing is left in reassembly.
    fn case(&mut self, name: &str, outbound: bool, send: impl FnOnce(&Run) -> u64) {
        let before = self.sipnat.stats();
        let before_all = self.all_counters();
        let veth0 = self.veth_drops();
        let (got0, leaks0) = self.counts(outbound);
        let sent = send(self);
        let mut last = (0, 0, 0);
        let accounted = settle(Duration::from_secs(20), || {
            self.sample_rss();
            let st = self.sipnat.stats();
            let delivered = self.counts(outbound).0 - got0;
            let veth = self.veth_drops() - veth0;
            let drops = counted_drops(&st) - counted_drops(&before) + veth;
            last = (delivered, drops, veth);
            delivered + drops == sent && in_reassembly(&st) == 0
        });
        let (delivered, drops, veth) = last;
        if !accounted {
            // Where the difference went: every counter of sipnat and of the gateway's
            // links that moved during the case (the next failure names the missing drop).
            eprintln!(
                "{name}: sent {sent}, delivered {delivered}, counted drops {drops}; counters that moved:\n{}",
                moved(&before_all, &self.all_counters())
            );
        }
        self.rows.push(Row {
            case: name.to_string(),
            sent,
            delivered,
            drops,
            leaks: self.counts(outbound).1 - leaks0,
            accounted,
            note: if veth > 0 {
                format!("{veth} of the drops by the veth links, before sipnat saw them")
            } else {
                String::new()
            },
        });
    }

    /// Frames the veth links dropped on the way into the gateway, counted by the kernel as
    /// the senders' TX drops (`ip -s link`): on a loaded host the gateway side's queue
    /// overflows before its XDP program runs. (The gateway side's RX drops are not added:
    /// they include XDP redirects that failed at a full AF_XDP ring, which the socket's
    /// own statistics already count.)
    fn veth_drops(&self) -> u64 {
        let t = &self.t;
        link_stat(&t.ua, "ua0", "tx", "dropped") + link_stat(&t.car, "car0", "tx", "dropped")
    }

    /// Every number in sipnat's statistics and the gateway's links' statistics, by path.
    fn all_counters(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        numbers(&self.sipnat.stats(), "sipnat", &mut out);
        for link in ["gwin", "gwout"] {
            let o = self
                .t
                .gw
                .exec(&["ip", "-s", "-j", "link", "show", "dev", link]);
            let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
            numbers(&v[0]["stats64"], link, &mut out);
        }
        out
    }

    fn counts(&self, outbound: bool) -> (u64, u64) {
        let e = if outbound { &self.car } else { &self.ua };
        (e.got(), e.leaks())
    }

    fn print(&self) {
        let mut out = format!(
            "\n{:<56} {:>8} {:>10} {:>8} {:>6}  {}\n",
            "case", "sent", "delivered", "drops", "leaks", "accounted / note"
        );
        for r in &self.rows {
            out += &format!(
                "{:<56} {:>8} {:>10} {:>8} {:>6}  {}{}\n",
                r.case,
                r.sent,
                r.delivered,
                r.drops,
                r.leaks,
                if r.accounted { "yes" } else { "NO" },
                if r.note.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", r.note)
                }
            );
        }
        out += &format!("daemon RSS: at most {} MiB\n", self.max_rss_kb / 1024);
        report(&out);
    }
}

/// Polls `cond` until it holds (true) or `timeout` passes (false).
/// The numbers in `v`, by their path from `at`.
fn numbers(v: &Value, at: &str, out: &mut BTreeMap<String, u64>) {
    match v {
        Value::Number(n) => {
            if let Some(n) = n.as_u64() {
                out.insert(at.to_string(), n);
            }
        }
        Value::Object(m) => m
            .iter()
            .for_each(|(k, v)| numbers(v, &format!("{at}.{k}"), out)),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, v)| numbers(v, &format!("{at}[{i}]"), out)),
        _ => {}
    }
}

/// The counters that changed from `a` to `b`, one per line.
fn moved(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> String {
    b.iter()
        .filter_map(|(k, v)| {
            let was = a.get(k).copied().unwrap_or(0);
            (*v != was).then(|| format!("  {k}: {was} -> {v}\n"))
        })
        .collect()
}

fn settle(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every corpus message (RFC 4475, RFC 5118, other stacks' messages).
fn corpus_messages() -> Vec<Vec<u8>> {
    fn walk(dir: &std::path::Path, out: &mut Vec<Vec<u8>>) {
        for p in testdata::entries(dir) {
            if p.is_dir() {
                walk(&p, out);
            } else if !matches!(
                p.file_name().and_then(|n| n.to_str()),
                Some("README.md" | "SHA256SUMS")
            ) {
                out.push(testdata::read(&p));
            }
        }
    }
    let mut out = Vec::new();
    for sub in ["rfc4475", "rfc5118", "messages"] {
        walk(&testdata::corpus_dir().join(sub), &mut out);
    }
    assert!(out.len() >= 70, "corpus has {} messages", out.len());
    out
}

/// An INVITE from the UA with `extra` header lines and an SDP offer, Content-Length set.
fn invite(extra: &str, body_pad: usize) -> Vec<u8> {
    let body = format!(
        "v=0\r\no=- 1 1 IN IP4 {UA_IP}\r\ns=-\r\nc=IN IP4 {UA_IP}\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n\
         a=rtcp:40001 IN IP4 {UA_IP}\r\na=x-pad:{}\r\n",
        "p".repeat(body_pad)
    );
    format!(
        "INVITE sip:bob@{CAR_IP} SIP/2.0\r\nVia: SIP/2.0/UDP {UA_IP}:5060;branch=z9hG4bK-{}\r\n\
         From: <sip:alice@{UA_IP}>;tag=a\r\nTo: <sip:bob@{CAR_IP}>\r\nCall-ID: attack\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:alice@{UA_IP}:5060>\r\n{extra}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body_pad,
        body.len()
    )
    .into_bytes()
}

/// An IPv4 packet (no options) `src` → `dst`, protocol UDP, with the fragment fields
/// given; the kernel fills the checksum and total length on a raw socket.
fn raw4(src: [u8; 4], dst: [u8; 4], id: u16, offset: usize, more: bool, data: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0];
    h[2..4].copy_from_slice(&((20 + data.len()) as u16).to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    let ff = ((offset / 8) as u16) | if more { 0x2000 } else { 0 };
    h[6..8].copy_from_slice(&ff.to_be_bytes());
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(data);
    h
}

/// A UDP header (checksum 0: none, valid for IPv4) and payload.
fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut d = Vec::with_capacity(8 + payload.len());
    d.extend_from_slice(&sport.to_be_bytes());
    d.extend_from_slice(&dport.to_be_bytes());
    d.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(payload);
    d
}

const UA4: [u8; 4] = [10, 0, 0, 2];
const CAR4: [u8; 4] = [198, 51, 100, 2];

/// Deterministic pseudo-random bytes (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn the_attack_list_leaks_nothing_loses_nothing_silently_and_stays_bounded() {
    crate::privileged_or_skip!();
    let t = Topo::new("attack");
    for a in MORE_CAR_IPS {
        t.car
            .exec(&["ip", "addr", "add", &format!("{a}/24"), "dev", "car0"]);
    }
    // Non-SIP traffic from the inside is masqueraded by the kernel, as deployed.
    t.gw.exec(&[
        "nft",
        "add table ip attack_nat; \
         add chain ip attack_nat post { type nat hook postrouting priority 100; }; \
         add rule ip attack_nat post oifname \"gwout\" ip saddr 10.0.0.0/24 masquerade",
    ]);
    // The NAPT range apart from the ports the 200,000-flow case's UA preserves.
    let cfg = t.config_full(
        "gw",
        "port_range = \"60000-60999\"",
        "metrics = \"127.0.0.1:9562\"\ngroup = \"nogroup\"",
        "[datapath]\nreassembly_timeout_ms = 1000\n",
    );
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace(
            "sip_ports = [5060]",
            &format!("sip_ports = [5060, {DEAD_PORT}]"),
        ),
    )
    .unwrap();
    let sipnat = t.start_sipnat(&cfg);
    let capture = Capture::start(&t.car, "car0", t.dir.path("outside.pcap"), "ip");
    let car = Endpoint::bind(&t.car, ("0.0.0.0", 5060), true);
    let ua = Endpoint::bind(&t.ua, (UA_IP, 5060), false);
    let mut run = Run {
        t,
        sipnat,
        car,
        ua,
        rows: Vec::new(),
        max_rss_kb: 0,
    };
    run.sample_rss();
    let rss_start = run.max_rss_kb;
    let car_addr = (CAR_IP, 5060);
    let ext_addr = (EXT_IP, 5060);

    // 1. The corpus both ways (outbound first: it creates the UA's flow that inbound
    // messages to the external address then follow).
    let corpus = corpus_messages();
    run.case("corpus (RFC 4475/5118, stacks) outbound", true, |r| {
        r.ua.send_all(&corpus, car_addr, 2000)
    });
    run.case("corpus inbound", false, |r| {
        r.car.send_all(&corpus, ext_addr, 2000)
    });

    // 2. Random datagrams to the SIP port.
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let random: Vec<Vec<u8>> = (0..2000)
        .map(|_| {
            let n = 1 + (rng.next() % 1400) as usize;
            rng.bytes(n)
        })
        .collect();
    run.case("2,000 random datagrams outbound", true, |r| {
        r.ua.send_all(&random, car_addr, 5000)
    });
    run.case("2,000 random datagrams inbound", false, |r| {
        r.car.send_all(&random, ext_addr, 5000)
    });

    // 3. Absurd and conflicting Content-Lengths, bytes after the body.
    let absurd: Vec<Vec<u8>> = [
        "Content-Length: 4294967296\r\n",
        "Content-Length: -1\r\n",
        "Content-Length: 99999999999999999999999\r\n",
        "Content-Length: 1e9\r\n",
        "Content-Length: 5\r\nContent-Length: 7\r\n",
        "l: 100000\r\n",
        // No Content-Type: the SDP body is not parsed (and names the UA).
        "",
    ]
    .iter()
    .flat_map(|cl| {
        let m = String::from_utf8(invite("", 0)).unwrap();
        let cl_at = m.find("Content-Length").unwrap();
        let body = &m[m.find("\r\n\r\n").unwrap() + 4..];
        let msg = if cl.is_empty() {
            let ct = m.find("Content-Type").unwrap();
            format!("{}{}", &m[..ct], &m[cl_at..])
        } else {
            format!("{}{cl}\r\n{body}", &m[..cl_at])
        };
        std::iter::repeat_n(msg.into_bytes(), 10)
    })
    .collect();
    run.case(
        "absurd/conflicting Content-Length, no Content-Type ×70",
        true,
        |r| r.ua.send_all(&absurd, car_addr, 1000),
    );
    let trailing: Vec<Vec<u8>> = (0..20)
        .map(|_| [invite("", 0), invite("", 7)].concat())
        .collect();
    run.case("second request appended (trailing bytes) ×20", true, |r| {
        r.ua.send_all(&trailing, car_addr, 1000)
    });

    // 4. Thousands of headers; thousands of addresses.
    let headers: String = (0..3500).map(|i| format!("X-H{i}: v\r\n")).collect();
    let contacts: String = (0..1500)
        .map(|i| format!("Contact: <sip:u{i}@{UA_IP}:5060>\r\n"))
        .collect();
    let many = vec![invite(&headers, 0), invite(&contacts, 0)];
    run.case("3,500 headers; 1,500 internal Contacts", true, |r| {
        r.ua.send_all(&many, car_addr, 100)
    });

    // 5. Big SIP, fragmented by the UA's kernel: 19 to 65 KB.
    let big: Vec<Vec<u8>> = [19_000, 32_000, 50_000, 64_000]
        .iter()
        .map(|&n| invite("", n))
        .collect();
    run.case("SIP of 19, 32, 50, 64 KB (fragmented)", true, |r| {
        r.ua.send_all(&big, car_addr, 100)
    });

    // 6. Bad fragment trains (one datagram each): overlap, duplicate, conflicting last
    // fragments (two ends), and a SIP datagram in 8-byte fragments (within
    // max_fragments = 64). The bad ones are dropped whole; their stragglers are dropped
    // as poisoned (not counted again).
    let sip400 = udp(5060, 5060, &invite("", 0)[..]);
    let tiny: Vec<Vec<u8>> = sip400
        .chunks(8)
        .enumerate()
        .map(|(i, c)| raw4(UA4, CAR4, 900, i * 8, (i + 1) * 8 < sip400.len(), c))
        .collect();
    let head = udp(5060, 5060, &[b'x'; 120]);
    let mut trains = vec![
        raw4(UA4, CAR4, 901, 0, true, &head[..64]),
        raw4(UA4, CAR4, 901, 32, false, &head[32..]),
        raw4(UA4, CAR4, 902, 0, true, &head[..64]),
        raw4(UA4, CAR4, 902, 0, true, &head[..64]),
        raw4(UA4, CAR4, 902, 64, false, &head[64..]),
        raw4(UA4, CAR4, 903, 64, false, &head[64..]),
        raw4(UA4, CAR4, 903, 64, false, &head[64..96]),
        raw4(UA4, CAR4, 903, 0, true, &head[..64]),
    ];
    assert!(tiny.len() <= 64, "{} tiny fragments", tiny.len());
    trains.extend(tiny);
    run.case("fragment trains: overlap, dup, conflict, tiny", true, |r| {
        send_raw_ipv4_paced(&r.t.ua, trains, 5000);
        4
    });

    // 7. A flood of first fragments (never completed): reassembly memory stays bounded,
    // every one is evicted, timed out or counted at the ring.
    // Seven sources, so that no (source, ID) pair repeats. IDs from 1: a raw socket's
    // kernel fills in an ID of 0 with one of its own, which can repeat one of the flood's
    // (two first fragments of one datagram: one overlap drop for both).
    let flood: Vec<Vec<u8>> = (0..400_000u32)
        .map(|i| {
            let src = [10, 0, 0, 2 + (i / 60_000) as u8];
            raw4(
                src,
                CAR4,
                1 + (i % 60_000) as u16,
                0,
                true,
                &udp(5060, 5060, &[b'f'; 1000])[..200],
            )
        })
        .collect();
    run.case("400,000 first fragments (never completed)", true, |r| {
        send_raw_ipv4_paced(&r.t.ua, flood, 25_000)
    });

    // 8. 200,000 flows (50,000 ports of the UA × 4 carrier addresses) against a
    // 65,536-entry table: the oldest are evicted and counted; the newest (towards CAR_IP,
    // sent last) still map replies back.
    let flows: Vec<Vec<u8>> = (0..200_000u32)
        .map(|i| {
            let remote: [u8; 4] = [198, 51, 100, 5 - (i / 50_000) as u8];
            let port = 10_000 + (i % 50_000) as u16;
            let msg = format!(
                "OPTIONS sip:{CAR_IP} SIP/2.0\r\nVia: SIP/2.0/UDP {UA_IP}:{port};branch=z9hG4bK{i}\r\n\
                 Call-ID: f{i}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            );
            raw4(UA4, remote, i as u16, 0, false, &udp(port, 5060, msg.as_bytes()))
        })
        .collect();
    let evicted0 = total(&run.sipnat.stats(), "flow_evicted");
    run.case("200,000 flows (table of 65,536)", true, |r| {
        send_raw_ipv4_paced(&r.t.ua, flows, 50_000)
    });
    // (Flows whose datagram was dropped before the flow table, counted in the row, never
    // entered it.)
    let flows_in = run.rows.last().map_or(0, |r| r.delivered);
    let st = run.sipnat.stats();
    let evicted = total(&st, "flow_evicted") - evicted0;
    // Replies to the 1,000 newest flows (10.0.0.2, ports 59,000..59,999) come back.
    let hit0 = total(&st, "flow_hit");
    let tx_in0 = total(&st, "tx_inside");
    let replies: Vec<Vec<u8>> = (59_000..60_000u16)
        .map(|port| {
            let m = format!(
                "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {EXT_IP}:{port};branch=z9hG4bKr{port}\r\nCall-ID: r{port}\r\n\
                 CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            );
            m.into_bytes()
        })
        .collect();
    // From the carrier's port 5060 (the flows' remote port), the receiver's own socket.
    for (m, port) in replies.iter().zip(59_000u16..) {
        run.car.sock.send_to(m, (EXT_IP, port)).unwrap();
    }
    let mut restored = 0;
    let replies_ok = settle(Duration::from_secs(10), || {
        let st = run.sipnat.stats();
        restored = (total(&st, "flow_hit") - hit0).min(total(&st, "tx_inside") - tx_in0);
        restored >= 1000
    });
    run.rows.push(Row {
        case: "replies to the 1,000 newest flows".into(),
        sent: 1000,
        delivered: restored,
        drops: 0,
        leaks: 0,
        accounted: replies_ok,
        note: format!("{evicted} evictions counted (flow_evicted)"),
    });
    // The table has 2 × flow_table_size slots (load ≤ 0.5): at least the excess of the
    // flows that reached it is evicted.
    let min_evictions = flows_in.saturating_sub(2 * 65_536);
    let evictions_ok = flows_in > 2 * 65_536 && evicted >= min_evictions;

    // 8b. What was a flow collision: 50 hosts of the inside network send from one port
    // to one remote. With NAPT each leaves from a port of its own (the first keeps its
    // port, the others get one of nat.port_range), rewritten; none unrewritten (the car
    // endpoint counts a leak for any internal address), none lost.
    let st = run.sipnat.stats();
    let (pres0, alloc0) = (total(&st, "napt_preserved"), total(&st, "napt_allocated"));
    let hosts: Vec<Vec<u8>> = (0..50u8)
        .map(|h| {
            let src = [10, 0, 0, 100 + h];
            let msg = format!(
                "OPTIONS sip:{CAR_IP} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.{}:5070;rport;branch=z9hG4bKn{h}\r\n\
                 Contact: <sip:u@10.0.0.{}:5070>\r\nCall-ID: n{h}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
                100 + h,
                100 + h
            );
            raw4(src, CAR4, 7000 + u16::from(h), 0, false, &udp(5070, 5060, msg.as_bytes()))
        })
        .collect();
    run.case("50 hosts, one port, one remote (NAPT)", true, |r| {
        send_raw_ipv4_paced(&r.t.ua, hosts, 5_000)
    });
    let st = run.sipnat.stats();
    let napt_ok = (
        total(&st, "napt_preserved") - pres0,
        total(&st, "napt_allocated") - alloc0,
    ) == (1, 49);

    // 9. Non-SIP fragmented UDP, both ways: handed to the kernel exactly as it arrived.
    let non_sip_out = Endpoint::bind(&run.t.car, (CAR_IP, 9999), false);
    let non_sip_in = Endpoint::bind(&run.t.ua, (UA_IP, 9999), false);
    let passed0 = total(&run.sipnat.stats(), "frag_passed");
    let sent_out = run.t.ua.run(|| {
        let s = UdpSocket::bind((UA_IP, 0)).unwrap();
        (0..20)
            .filter(|_| s.send_to(&[b'n'; 30_000], (CAR_IP, 9999)).is_ok())
            .count() as u64
    });
    let sent_in = run.t.car.run(|| {
        let s = UdpSocket::bind((CAR_IP, 0)).unwrap();
        (0..20)
            .filter(|_| s.send_to(&[b'm'; 4_000], (UA_IP, 9999)).is_ok())
            .count() as u64
    });
    let both = settle(Duration::from_secs(10), || {
        non_sip_out.got() == sent_out && non_sip_in.got() == sent_in
    });
    let passed = total(&run.sipnat.stats(), "frag_passed") - passed0;
    run.rows.push(Row {
        case: "non-SIP fragmented UDP, 30 KB out, 4 KB in".into(),
        sent: sent_out + sent_in,
        delivered: non_sip_out.got() + non_sip_in.got(),
        drops: 0,
        leaks: 0,
        accounted: both && passed > 0,
        note: format!("{passed} fragments passed to the kernel as they arrived"),
    });

    // 10. ICMP errors: the UA's request to a dead port comes back as port unreachable,
    // translated to the UA (ECONNREFUSED), never forwarded as it was.
    let icmp0 = total(&run.sipnat.stats(), "icmp_error_translated");
    let refused = run.t.ua.run(|| {
        let s = UdpSocket::bind((UA_IP, 5070)).unwrap();
        s.connect((CAR_IP, DEAD_PORT)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let msg = invite("", 0);
        (0..5)
            .filter(|_| {
                s.send(&msg).unwrap();
                let mut b = [0u8; 64];
                matches!(s.recv(&mut b), Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
            })
            .count() as u64
    });
    let icmp = total(&run.sipnat.stats(), "icmp_error_translated") - icmp0;
    run.rows.push(Row {
        case: "INVITE to a dead port: ICMP back to the UA".into(),
        sent: 5,
        delivered: refused,
        drops: 0,
        leaks: 0,
        accounted: refused == 5 && icmp >= 5,
        note: format!("{icmp} ICMP errors translated"),
    });

    // 11. Metrics and control-socket floods: root's status still answers within 1 s.
    let conns = run.t.gw.run(|| {
        let addr: SocketAddr = "127.0.0.1:9562".parse().unwrap();
        (0..1100)
            .filter_map(|_| {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()
            })
            .collect::<Vec<_>>()
    });
    // From a member of `[control] group` (nobody, nogroup) that never reads its replies.
    let hog = common::hog::Hog::start(&run.sipnat.socket, 300, 400, 65534, 65534);
    let t0 = Instant::now();
    let status = run.sipnat.ctl(&["status"]);
    let took = t0.elapsed();
    run.rows.push(Row {
        case: "1,100 metrics + 300 control connections".into(),
        sent: conns.len() as u64 + u64::from(hog.connected),
        delivered: u64::from(status.is_ok()),
        drops: 0,
        leaks: 0,
        accounted: status.is_ok() && took < Duration::from_secs(1),
        note: format!("root's status answered in {} ms", took.as_millis()),
    });
    drop(conns);
    drop(hog);

    // 12. Thirteen broken reloads: each refused with a reason, the daemon unchanged.
    let broken = [
        "not toml at all [[[",
        "[interfaces]\ninside = 1\n",
        "[nat]\nexternal_ip = \"300.1.1.1\"\n",
        "[nat]\nexternal_ip = \"10.0.0.1\"\n",
        "[[nat.rule]]\ninternal = \"10.0.0.0/33\"\n",
        "[datapath]\nmax_datagram = 0\n",
        "[datapath]\nreassembly_memory = -1\n",
        "[interfaces]\nsip_ports = []\n",
        "[interfaces]\nsip_ports = [0]\n",
        "[nat]\nflow_table_size = 0\n",
        "[rewrite]\nleak = \"sometimes\"\n",
        "[unknown]\nkey = 1\n",
        &format!("[nat]\nexternal_ip = \"{}\"\n", "9".repeat(50_000)),
    ];
    let mut refused_reloads = 0;
    for (i, b) in broken.iter().enumerate() {
        let p = run.t.dir.path(&format!("broken{i}.toml"));
        std::fs::write(&p, b).unwrap();
        if run.sipnat.ctl(&["reload", p.to_str().unwrap()]).is_err() {
            refused_reloads += 1;
        }
    }
    let still = run
        .sipnat
        .ctl(&["status"])
        .is_ok_and(|s| s.contains("steering:  enabled"));
    run.rows.push(Row {
        case: "13 broken reloads".into(),
        sent: broken.len() as u64,
        delivered: refused_reloads,
        drops: 0,
        leaks: 0,
        accounted: refused_reloads == broken.len() as u64 && still,
        note: "each refused, still running".into(),
    });

    // 13. Reload signals and external-address flips under traffic: every packet arrives
    // or is counted, none mixes addresses (the sink flags any internal one).
    let load: Vec<Vec<u8>> = (0..40_000).map(|i| invite("", i % 8)).collect();
    let fast_load: Vec<Vec<u8>> = (0..100_000).map(|i| invite("", i % 8)).collect();
    let pid = run.sipnat.pid() as libc::pid_t;
    run.case("100,000 INVITEs at 50 kpps, 20 SIGHUPs", true, |r| {
        let h = std::thread::spawn(move || {
            for _ in 0..20 {
                std::thread::sleep(Duration::from_millis(90));
                // SAFETY: kill(2) on the daemon we started.
                unsafe { libc::kill(pid, libc::SIGHUP) };
            }
        });
        let n = r.ua.send_all(&fast_load, car_addr, 50_000);
        h.join().unwrap();
        n
    });
    let socket = run.sipnat.socket.clone();
    let flips = Arc::new(AtomicU64::new(0));
    let f2 = flips.clone();
    let gw = run.t.gw.name.clone();
    run.case(
        "40,000 INVITEs at 20 kpps, 1,000 address flips",
        true,
        |r| {
            let h = std::thread::spawn(move || {
                common::netns::Netns::attach_existing(&gw).run(move || {
                    for i in 0..1000 {
                        let addr = if i % 2 == 0 { FLIP_IP } else { EXT_IP };
                        let req = format!(
                            "{{\"v\":1,\"cmd\":\"set-external-ip\",\"addr\":\"{addr}\"}}\n"
                        );
                        if control_request(&socket, &req).contains("\"ok\":true") {
                            f2.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            });
            let n = r.ua.send_all(&load, car_addr, 20_000);
            h.join().unwrap();
            n
        },
    );
    let flipped = flips.load(Ordering::Relaxed);
    if let Some(r) = run.rows.last_mut() {
        r.note = format!("{flipped} flips applied");
        r.accounted &= flipped == 1000;
    }
    run.sample_rss();

    run.print();
    let outside = capture.finish(&run.t);
    let internal_on_outside = tshark(&outside, &["-Y", "ip.src == 10.0.0.0/8", "-c", "3"]);
    let log = run.sipnat.log_text();
    let rss_end = run.rss_kb();
    let max_rss = run.max_rss_kb;
    for r in &run.rows {
        assert!(
            r.accounted,
            "case `{}` not accounted for (see the table)",
            r.case
        );
        assert_eq!(
            r.leaks,
            0,
            "case `{}` leaked: {:?}",
            r.case,
            run.car.first_leak.lock().unwrap()
        );
    }
    assert!(
        napt_ok,
        "50 hosts on one port: expected 1 port preserved and 49 allocated (napt_preserved, napt_allocated)"
    );
    assert!(
        evictions_ok,
        "{evicted} flow evictions counted, expected ≥ {min_evictions} ({flows_in} flows \
         delivered, 131,072 slots)"
    );
    assert_eq!(
        internal_on_outside.trim(),
        "",
        "packets from an internal address on the outside"
    );
    assert!(!log.contains("panicked"), "the daemon panicked:\n{log}");
    // Frames, reassembly (16 MiB) and the flow table are preallocated or bounded: the
    // floods must not grow the daemon by more than the reassembly bound and some slack.
    assert!(
        max_rss <= rss_start + 48 * 1024,
        "RSS grew from {rss_start} kB to {max_rss} kB (now {rss_end} kB)"
    );
    assert_eq!(run.sipnat.stop(), Some(0));
}

/// One request line on the control socket; the reply line.
fn control_request(socket: &std::path::Path, req: &str) -> String {
    use std::io::{BufRead, Write};
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) else {
        return String::new();
    };
    let _ = s.write_all(req.as_bytes());
    let mut line = String::new();
    let _ = std::io::BufReader::new(s).read_line(&mut line);
    line
}
