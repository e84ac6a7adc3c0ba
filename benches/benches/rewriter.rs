//! Micro benchmarks of the rewriter core on `testdata/bench-inputs/` (the origin's inputs as
//! whole SIP messages, plus a carrier INVITE with SDP as a message and as a whole frame).
//!
//! Benchmark names follow the origin's Go benchmarks (`HeaderRewriting`, `SDPRewriting`,
//! `Concurrent`, `FastPath`, `PrivateIPDetection`, `MemoryEfficiency`); `CarrierInviteSdp`
//! and `CarrierInviteSdpPacket` are ours. Every input is rewritten once before it is
//! measured and the result checked against the README's table, so a bench can never
//! silently measure a no-op.
//!
//! Method: the rewrite works in place, so each call needs the pristine input back. The
//! benches that change the buffer run over a ring of [`RING`] work buffers: restore all of
//! them (untimed), then time the calls on them back to back, repeat. That keeps the copy out
//! of the timing (as `iter_batched_ref` would) while the buffers stay cache-warm and memory
//! stays bounded (`iter_batched_ref(SmallInput)` holds a tenth of a sample's iterations,
//! gigabytes for the nanosecond benches). The two clock reads per ring are the only harness
//! cost, measured by `Harness/ring_empty_op`. `Harness/*` also runs `HeaderRewriting` with
//! `iter_batched_ref(SmallInput)` and with the copy inside the timed loop (and the copy
//! alone), to compare the methods.
//!
//! Clock: wall time by default; `SIPNAT_BENCH_CLOCK=cpu` measures the thread's CPU time
//! instead, for a machine busy with other work (preemption is then not counted; the ring's
//! clock reads become syscalls, see `Harness/ring_empty_op`).
//!
//! Inputs are read from `$SIPNAT_BENCH_INPUTS`, default `testdata/bench-inputs` in the
//! repository.

use std::{
    hint::black_box,
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    sync::{Arc, Barrier},
    time::Duration,
};

#[path = "../../nat-userspace/tests/common/private_ips.rs"]
mod private_ips;

use arc_swap::ArcSwap;
use criterion::{
    measurement::{Measurement, ValueFormatter, WallTime},
    BatchSize, Criterion,
};
use etherparse::{NetHeaders, PacketBuilder, PacketHeaders, PayloadSlice, TransportHeader};
use sipnat::{
    nat::{rules::LocalV4, Direction, ExternalAddrs, L3Action, Net, RewriteConfig},
    rewrite::{
        edits::Edits,
        packet::{rewrite_packet, rewrite_packet_gated, udp_checksum_ok, PacketRewrite},
        reference, rewrite_message, rewrite_message_in, Changes, Context, Gate, Outcome, Rewrite,
    },
    wire::{self, Link},
};

/// Room after the message for it to grow into.
const TAILROOM: usize = 1024;
/// Work buffers restored per timed run.
const RING: usize = 256;

const EXT_ORIGIN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const EXT_CARRIER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const CARRIER_SRC: [u8; 4] = [10, 88, 0, 2];
const CARRIER_DST: [u8; 4] = [198, 51, 100, 2];

fn inputs_dir() -> PathBuf {
    match std::env::var_os("SIPNAT_BENCH_INPUTS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/bench-inputs"
        )),
    }
}

fn load(name: &str) -> Vec<u8> {
    let p = inputs_dir().join(name);
    std::fs::read(&p).unwrap_or_else(|e| {
        panic!(
            "reading {} (set SIPNAT_BENCH_INPUTS to the bench-inputs folder): {e}",
            p.display()
        )
    })
}

fn rule(net: &str) -> RewriteConfig {
    RewriteConfig::single(Net::parse(net).expect("valid net"))
}

/// HeaderRewriting / Concurrent: 192.168.1.100 → 203.0.113.10, Record-Route on.
fn header_config() -> RewriteConfig {
    RewriteConfig {
        record_route: true,
        ..rule("192.168.1.100/32")
    }
}

fn outbound(config: &RewriteConfig, ext: Ipv4Addr) -> Context<'_> {
    Context {
        config,
        external: ExternalAddrs::v4(ext),
        direction: Direction::Outbound,
        internal: None,
        local_port: None,
        napt: None,
        media: None,
    }
}

// ---------------------------------------------------------------------------------------
// Setup checks: one rewrite of each input, compared with the README's expected result.

fn rewrite_copy(input: &[u8], ctx: &Context<'_>) -> (Rewrite, Vec<u8>) {
    let mut buf = vec![0u8; input.len() + TAILROOM];
    buf[..input.len()].copy_from_slice(input);
    let r = rewrite_message(&mut buf, input.len(), ctx);
    buf.truncate(r.len);
    // Retransmissions get byte-identical output.
    let mut again = vec![0u8; input.len() + TAILROOM];
    again[..input.len()].copy_from_slice(input);
    let r2 = rewrite_message(&mut again, input.len(), ctx);
    assert_eq!(r, r2, "rewrite is not deterministic");
    assert_eq!(&again[..r2.len], &buf[..], "rewrite is not deterministic");
    (r, buf)
}

fn expect_rewritten(name: &str, r: &Rewrite, want: Changes) {
    assert_eq!(
        r.outcome,
        Outcome::Rewritten(want),
        "{name}: unexpected outcome"
    );
    assert_eq!(r.family_mismatch, 0, "{name}: family mismatch");
}

/// The (first) line starting with `prefix`, without its line end.
fn line<'a>(msg: &'a str, prefix: &str) -> &'a str {
    msg.split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in\n{msg}"))
}

fn lines<'a>(msg: &'a str, prefix: &'a str) -> Vec<&'a str> {
    msg.split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| l.starts_with(prefix))
        .collect()
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).expect("SIP text is UTF-8")
}

fn check_header(input: &[u8], ctx: &Context<'_>) {
    let out = rewritten("header-rewriting", input, ctx);
    let m = text(&out);
    assert!(line(m, "Via:").contains("203.0.113.10:5060;"), "{m}");
    assert!(line(m, "Contact:").contains("@203.0.113.10:5060>"), "{m}");
    assert!(
        line(m, "Record-Route:").contains("@203.0.113.10:5060;lr>"),
        "{m}"
    );
    assert_eq!(line(m, "Call-ID:"), "Call-ID: test-call-id");
    assert!(!m.contains("192.168.1.100"), "{m}");
}

fn check_sdp(input: &[u8], ctx: &Context<'_>) {
    let out = rewritten("sdp-rewriting", input, ctx);
    let m = text(&out);
    assert_eq!(line(m, "Content-Length:"), "Content-Length: 225");
    assert_eq!(line(m, "o="), "o=user 123456 654321 IN IP4 203.0.113.10");
    assert_eq!(lines(m, "c="), ["c=IN IP4 203.0.113.10"; 2]);
    let body = &m[m.find("\r\n\r\n").expect("header end") + 4..];
    assert_eq!(body.len(), 225, "Content-Length matches the body");
    assert!(!body.contains('\r'), "LF line endings kept: {body:?}");
    assert!(!m.contains("192.168.1.100"), "{m}");
}

fn check_concurrent(input: &[u8], ctx: &Context<'_>) {
    let out = rewritten("concurrent", input, ctx);
    let m = text(&out);
    assert!(line(m, "Via:").contains("203.0.113.10:5060;"), "{m}");
    assert!(line(m, "Contact:").contains("@203.0.113.10:5060>"), "{m}");
}

fn check_memory(input: &[u8], ctx: &Context<'_>) {
    let out = rewritten("memory-efficiency", input, ctx);
    let m = text(&out);
    let vias = lines(m, "Via:");
    assert!(
        vias[0].contains("203.0.113.10:5060;branch=z9hG4bK123"),
        "{m}"
    );
    assert!(
        vias[1].contains("192.168.1.101:5060;branch=z9hG4bK124"),
        "{m}"
    );
    for c in lines(m, "Contact:") {
        assert!(c.contains("@203.0.113.10:5060>"), "{m}");
    }
    assert_eq!(line(m, "o="), "o=user 123456 654321 IN IP4 203.0.113.10");
    assert_eq!(lines(m, "c="), ["c=IN IP4 203.0.113.10"; 3]);
    let body = &m[m.find("\r\n\r\n").expect("header end") + 4..];
    assert_eq!(
        line(m, "Content-Length:"),
        format!("Content-Length: {}", body.len())
    );
}

fn expected_carrier() -> Changes {
    expected("carrier-invite-sdp")
}

/// The changes the rewrite of each bench input makes (the README's expected results).
fn expected(input: &str) -> Changes {
    let mut c = Changes::default();
    match input {
        "header-rewriting" => (c.via, c.contact, c.record_route) = (1, 1, 1),
        "sdp-rewriting" => (c.sdp_origin, c.sdp_connection, c.content_length) = (1, 2, 1),
        "concurrent" => (c.via, c.contact) = (1, 1),
        "memory-efficiency" => {
            (c.via, c.contact, c.sdp_origin) = (1, 2, 1);
            (c.sdp_connection, c.content_length) = (3, 1);
        }
        "carrier-invite-sdp" => {
            (c.via, c.from_to, c.contact, c.sdp_origin) = (1, 1, 1, 1);
            (c.sdp_connection, c.sdp_rtcp, c.content_length) = (2, 1, 1);
        }
        other => panic!("no expected changes for {other}"),
    }
    c
}

/// One checked rewrite of bench input `name`: the expected changes, deterministic; the
/// rewritten message.
fn rewritten(name: &str, input: &[u8], ctx: &Context<'_>) -> Vec<u8> {
    let (r, out) = rewrite_copy(input, ctx);
    expect_rewritten(name, &r, expected(name));
    out
}

fn check_carrier(input: &[u8], ctx: &Context<'_>) -> Vec<u8> {
    let out = rewritten("carrier-invite-sdp", input, ctx);
    let m = text(&out);
    assert_eq!(
        line(m, "INVITE "),
        "INVITE sip:bob@198.51.100.2:5060 SIP/2.0"
    );
    assert!(line(m, "Via:").contains(" 198.51.100.1:5060;"), "{m}");
    assert!(line(m, "From:").contains("<sip:alice@198.51.100.1>"), "{m}");
    assert_eq!(line(m, "To:"), "To: \"Bob\" <sip:bob@198.51.100.2>");
    assert_eq!(
        line(m, "Call-ID:"),
        "Call-ID: a84b4c76e66710-000000@10.88.0.2"
    );
    assert!(line(m, "Contact:").contains("@198.51.100.1:5060;"), "{m}");
    assert!(line(m, "o=").ends_with(" IN IP4 198.51.100.1"), "{m}");
    assert_eq!(lines(m, "c="), ["c=IN IP4 198.51.100.1"; 2]);
    assert_eq!(line(m, "a=rtcp:"), "a=rtcp:20001 IN IP4 198.51.100.1");
    assert_eq!(line(m, "Content-Length:"), "Content-Length: 398");
    assert_eq!(
        m.matches("10.88.0.2").count(),
        1,
        "only the Call-ID keeps it"
    );
    out
}

fn carrier_frame(payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(CARRIER_SRC, CARRIER_DST, 64)
        .udp(5060, 5060);
    let mut v = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut v, payload).expect("build frame");
    v
}

fn packet_op(buf: &mut [u8], ctx: &Context<'_>, l3: L3Action) -> PacketRewrite {
    let Ok(layout) = wire::parse(buf, Link::Ethernet) else {
        panic!("frame does not parse")
    };
    match rewrite_packet(buf, &layout, ctx, l3) {
        Ok(r) => r,
        Err(e) => panic!("{e:?}"),
    }
}

fn packet_op_fast(
    buf: &mut [u8],
    ctx: &Context<'_>,
    gate: &Gate,
    edits: &mut Edits,
    l3: L3Action,
) -> usize {
    let Ok(layout) = wire::parse(buf, Link::Ethernet) else {
        panic!("frame does not parse")
    };
    match rewrite_packet_gated(buf, &layout, ctx, l3, gate, edits) {
        Ok(r) => r.len,
        Err(e) => panic!("{e:?}"),
    }
}

fn packet_op_reference(buf: &mut [u8], ctx: &Context<'_>, l3: L3Action) -> usize {
    let Ok(layout) = wire::parse(buf, Link::Ethernet) else {
        panic!("frame does not parse")
    };
    match reference::rewrite_packet(buf, &layout, ctx, l3) {
        Ok(r) => r.len,
        Err(e) => panic!("{e:?}"),
    }
}

fn check_packet(frame: &[u8], ctx: &Context<'_>, l3: L3Action, want_payload: &[u8]) {
    let mut buf = vec![0u8; frame.len() + TAILROOM];
    buf[..frame.len()].copy_from_slice(frame);
    let r = packet_op(&mut buf, ctx, l3);
    assert_eq!(r.sip, Outcome::Rewritten(expected_carrier()), "{r:?}");
    assert!(r.l3_changed && r.family_mismatch == 0, "{r:?}");
    assert_eq!(r.len, frame.len() + want_payload.len() - 951);
    let out = &buf[..r.len];
    let layout = wire::parse(out, Link::Ethernet).expect("output parses");
    assert!(udp_checksum_ok(out, &layout), "sipnat: bad UDP checksum");
    // Independent check with etherparse.
    let h = PacketHeaders::from_ethernet_slice(out).expect("etherparse parses output");
    let Some(NetHeaders::Ipv4(ip, _)) = &h.net else {
        panic!("not IPv4")
    };
    let Some(TransportHeader::Udp(udp)) = &h.transport else {
        panic!("not UDP")
    };
    let PayloadSlice::Udp(payload) = h.payload else {
        panic!("no UDP payload")
    };
    assert_eq!(ip.source, EXT_CARRIER.octets());
    assert_eq!(ip.destination, CARRIER_DST);
    assert_eq!(
        ip.header_checksum,
        ip.calc_header_checksum(),
        "IPv4 checksum"
    );
    assert_eq!(usize::from(ip.total_len), r.len - 14);
    assert_eq!(usize::from(udp.length), 8 + want_payload.len());
    assert_eq!(
        udp.checksum,
        udp.calc_checksum_ipv4(ip, payload).unwrap(),
        "UDP checksum"
    );
    assert_eq!(
        payload, want_payload,
        "payload as the message-level rewrite"
    );
}

// ---------------------------------------------------------------------------------------
// Clocks and timing helpers.

/// A criterion measurement that the `iter_custom` loops below also read directly.
trait Clock: Measurement<Value = Duration> + 'static {
    fn make() -> Self;
}

impl Clock for WallTime {
    fn make() -> Self {
        WallTime
    }
}

/// CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`): time the thread spends
/// descheduled because of other load on the machine is not counted. Selected with
/// `SIPNAT_BENCH_CLOCK=cpu`, for a shared or busy machine; the default is wall time.
struct ThreadCpu {
    fmt: WallTime,
}

fn thread_cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(r, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl Measurement for ThreadCpu {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_now()
    }

    fn end(&self, start: Duration) -> Duration {
        thread_cpu_now().saturating_sub(start)
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        self.fmt.formatter()
    }
}

impl Clock for ThreadCpu {
    fn make() -> Self {
        ThreadCpu { fmt: WallTime }
    }
}

/// Restores `input` into each of `bufs` (untimed), then times `op` on them; repeats until
/// `iters` calls were timed. Returns the timed total.
fn timed_ring<C: Clock, R>(
    clock: &C,
    iters: u64,
    input: &[u8],
    bufs: &mut [Vec<u8>],
    op: &mut impl FnMut(&mut [u8]) -> R,
) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0u64;
    while done < iters {
        let n = (iters - done).min(bufs.len() as u64) as usize;
        for b in &mut bufs[..n] {
            b[..input.len()].copy_from_slice(input);
        }
        let start = clock.start();
        for b in &mut bufs[..n] {
            black_box(op(black_box(&mut b[..])));
        }
        total += clock.end(start);
        done += n as u64;
    }
    total
}

fn ring(input_len: usize) -> Vec<Vec<u8>> {
    (0..RING).map(|_| vec![0u8; input_len + TAILROOM]).collect()
}

fn bench_ring<C: Clock, R>(
    c: &mut Criterion<C>,
    name: &str,
    input: &[u8],
    mut op: impl FnMut(&mut [u8]) -> R,
) {
    let mut bufs = ring(input.len());
    let clock = C::make();
    c.bench_function(name, |b| {
        b.iter_custom(|iters| timed_ring(&clock, iters, input, &mut bufs, &mut op))
    });
}

// ---------------------------------------------------------------------------------------
// The benchmarks.

/// `NAME/fast` (the fast path with its gate built once, as a worker's snapshot does, and
/// its own edit list, as the pipeline's) and `NAME/reference` (the reference rewriter)
/// on the same input, one after the other in the same run.
fn both<C: Clock>(c: &mut Criterion<C>, name: &str, input: &[u8], ctx: &Context<'_>) {
    let len = input.len();
    let gate = Gate::of(ctx);
    let mut edits = Edits::new();
    bench_ring(c, &format!("{name}/fast"), input, |b| {
        rewrite_message_in(b, len, black_box(ctx), &gate, &mut edits)
    });
    bench_ring(c, &format!("{name}/reference"), input, |b| {
        reference::rewrite_message(b, len, black_box(ctx))
    });
}

fn header_rewriting<C: Clock>(c: &mut Criterion<C>) {
    checked_row(
        c,
        ("HeaderRewriting", "header-rewriting.sip"),
        header_config(),
        check_header,
    );
}

fn sdp_rewriting<C: Clock>(c: &mut Criterion<C>) {
    checked_row(
        c,
        ("SDPRewriting", "sdp-rewriting.sip"),
        rule("192.168.1.100/32"),
        check_sdp,
    );
}

/// Two threads share one config and one external-address handle (read once per message,
/// as a worker does). Reported time is wall time per message: the busier thread's timed
/// total over all messages of both threads (the restores are excluded, as elsewhere).
fn concurrent<C: Clock>(c: &mut Criterion<C>) {
    let input = load("concurrent.sip");
    let config = header_config();
    let handle = ArcSwap::from_pointee(ExternalAddrs::v4(EXT_ORIGIN));
    check_concurrent(&input, &outbound(&config, EXT_ORIGIN));
    let len = input.len();
    let gate = Gate::of(&outbound(&config, EXT_ORIGIN));
    // The context of one message: the external address read once from the handle.
    let ctx_now = || Context {
        external: **handle.load(),
        ..outbound(&config, EXT_ORIGIN)
    };
    let fast = |b: &mut [u8]| {
        // The thread's edit list, as the reference's: no per-thread setup in the bench.
        rewrite_message_fast_tls(b, len, &ctx_now(), &gate)
    };
    let reference = |b: &mut [u8]| reference::rewrite_message(b, len, &ctx_now());
    concurrent_row(c, "Concurrent/fast", &input, fast);
    concurrent_row(c, "Concurrent/reference", &input, reference);
}

std::thread_local! {
    static FAST_EDITS: std::cell::RefCell<Edits> = std::cell::RefCell::new(Edits::new());
}

/// The fast path with a prebuilt gate and this thread's edit list.
fn rewrite_message_fast_tls(b: &mut [u8], len: usize, ctx: &Context<'_>, gate: &Gate) -> Rewrite {
    FAST_EDITS.with(|e| rewrite_message_in(b, len, ctx, gate, &mut e.borrow_mut()))
}

fn concurrent_row<C: Clock>(
    c: &mut Criterion<C>,
    name: &str,
    input: &[u8],
    op: impl Fn(&mut [u8]) -> Rewrite + Copy + Send,
) {
    const THREADS: u64 = 2;
    let len = input.len();
    let mut rings: Vec<Vec<Vec<u8>>> = (0..THREADS).map(|_| ring(len)).collect();
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let barrier = Arc::new(Barrier::new(THREADS as usize));
            std::thread::scope(|s| {
                let workers: Vec<_> = rings
                    .iter_mut()
                    .enumerate()
                    .map(|(i, bufs)| {
                        let n = iters / THREADS + u64::from((i as u64) < iters % THREADS);
                        let (barrier, mut op) = (barrier.clone(), op);
                        s.spawn(move || {
                            let clock = C::make();
                            barrier.wait();
                            timed_ring(&clock, n, input, bufs, &mut op)
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .map(|w| w.join().expect("worker"))
                    .max()
                    .unwrap_or_default()
            })
        })
    });
}

/// Rewriting disabled: the message comes back untouched, so no restore is needed.
fn fast_path<C: Clock>(c: &mut Criterion<C>) {
    let input = load("fast-path.sip");
    let mut config = header_config();
    config.enabled = false;
    let ctx = outbound(&config, EXT_ORIGIN);
    let mut buf = vec![0u8; input.len() + TAILROOM];
    buf[..input.len()].copy_from_slice(&input);
    let r = rewrite_message(&mut buf, input.len(), &ctx);
    assert_eq!(r.outcome, Outcome::Unchanged, "fast-path: {r:?}");
    assert_eq!(r.len, input.len());
    assert_eq!(&buf[..input.len()], &input[..]);
    let len = input.len();
    let gate = Gate::of(&ctx);
    let mut edits = Edits::new();
    // Only the returned length leaves through `black_box` (both rows): copying the whole
    // result out is a cost of the harness, not of the rewriter.
    c.bench_function("FastPath/fast", |b| {
        b.iter(|| {
            rewrite_message_in(
                black_box(&mut buf),
                black_box(len),
                black_box(&ctx),
                &gate,
                &mut edits,
            )
            .len
        })
    });
    c.bench_function("FastPath/reference", |b| {
        b.iter(|| {
            reference::rewrite_message(black_box(&mut buf), black_box(len), black_box(&ctx)).len
        })
    });
    // The method to the letter: only the returned length through `black_box`, the
    // inputs as they are. The compiler may then see that nothing in the loop changes the
    // config and test `enabled` once, as a worker does once per batch: this row is the
    // disabled path as a batch loop pays it, the `/fast` row above what one call costs.
    c.bench_function("FastPath/fast_length_only", |b| {
        b.iter(|| rewrite_message_in(&mut buf, len, &ctx, &gate, &mut edits).len)
    });
    c.bench_function("FastPath/empty_closure", |b| b.iter(|| {}));
    // The harness's own share of the two rows above: the same three inputs through
    // `black_box` and a length out, no rewriter call. `FastPath/fast` less this row is what
    // a call with rewriting off costs.
    c.bench_function("FastPath/inputs_only", |b| {
        b.iter(|| {
            let buf = black_box(&mut buf);
            let len = black_box(len);
            let _ = black_box(&ctx);
            len.min(buf.len())
        })
    });
    assert_eq!(
        &buf[..input.len()],
        &input[..],
        "fast path changed the buffer"
    );
}

/// One op = classify the six addresses of the file (parse the text, then the classes):
/// `/fast` with the config's IPv4 local networks compiled once (as the snapshot does),
/// `/reference` with the plain parse and `is_local`.
fn private_ip_detection<C: Clock>(c: &mut Criterion<C>) {
    let config = RewriteConfig::default();
    let local = LocalV4::of(&config);
    let addrs = private_ips::addresses(&load("private-ip-detection.txt"));
    let addrs: Vec<&[u8]> = addrs.iter().map(|(a, _)| a.as_slice()).collect();
    c.bench_function("PrivateIPDetection/fast", |b| {
        b.iter(|| {
            let cfg = black_box(&config);
            let mut acc = 0u32;
            for a in black_box(&addrs[..]) {
                acc = acc << 2 | private_ips::fast(cfg, &local, a) as u32;
            }
            acc
        })
    });
    c.bench_function("PrivateIPDetection/reference", |b| {
        b.iter(|| {
            let cfg = black_box(&config);
            let mut acc = 0u32;
            for a in black_box(&addrs[..]) {
                acc = acc << 2 | private_ips::classify(cfg, a) as u32;
            }
            acc
        })
    });
}

fn memory_efficiency<C: Clock>(c: &mut Criterion<C>) {
    checked_row(
        c,
        ("MemoryEfficiency", "memory-efficiency.sip"),
        rule("192.168.1.0/24"),
        check_memory,
    );
}

fn carrier_config() -> RewriteConfig {
    let mut c = rule("10.88.0.0/24");
    c.from_to = true;
    c
}

fn carrier_invite_sdp<C: Clock>(c: &mut Criterion<C>) {
    assert_eq!(load("carrier-invite-sdp.sip").len(), 951);
    let check = |input: &[u8], ctx: &Context<'_>| drop(check_carrier(input, ctx));
    checked_row(
        c,
        ("CarrierInviteSdp", "carrier-invite-sdp.sip"),
        carrier_config(),
        check,
    );
}

/// Bench row `row` of input `file` (fast and reference) under `config`, outbound, after
/// `check` of one rewrite, to external address `ext`.
fn checked_row<C: Clock>(
    c: &mut Criterion<C>,
    (row, file): (&str, &str),
    config: RewriteConfig,
    check: impl Fn(&[u8], &Context<'_>),
) {
    let input = load(file);
    let ext = if file.starts_with("carrier") {
        EXT_CARRIER
    } else {
        EXT_ORIGIN
    };
    let ctx = outbound(&config, ext);
    check(&input, &ctx);
    both(c, row, &input, &ctx);
}

/// The carrier INVITE as an Ethernet/IPv4/UDP frame: parse the layers, rewrite the
/// payload, SNAT the source, fix lengths and checksums.
fn carrier_invite_sdp_packet<C: Clock>(c: &mut Criterion<C>) {
    let input = load("carrier-invite-sdp.sip");
    let config = carrier_config();
    let ctx = outbound(&config, EXT_CARRIER);
    let want_payload = check_carrier(&input, &ctx);
    let frame = carrier_frame(&input);
    let l3 = L3Action {
        src: Some(IpAddr::V4(EXT_CARRIER)),
        dst: None,
    };
    check_packet(&frame, &ctx, l3, &want_payload);
    let gate = Gate::of(&ctx);
    let mut edits = Edits::new();
    bench_ring(c, "CarrierInviteSdpPacket/fast", &frame, |b| {
        packet_op_fast(b, black_box(&ctx), &gate, &mut edits, l3)
    });
    bench_ring(c, "CarrierInviteSdpPacket/reference", &frame, |b| {
        packet_op_reference(b, black_box(&ctx), l3)
    });
}

/// The harness itself: the ring's per-call overhead, and `HeaderRewriting` measured the
/// other ways (iter_batched_ref; copy inside the timed loop, and that copy alone).
fn harness<C: Clock>(c: &mut Criterion<C>) {
    let input = load("header-rewriting.sip");
    let config = header_config();
    let ctx = outbound(&config, EXT_ORIGIN);
    let len = input.len();
    bench_ring(c, "Harness/ring_empty_op", &input, |b| b.len());
    let mut pristine = vec![0u8; len + TAILROOM];
    pristine[..len].copy_from_slice(&input);
    c.bench_function("Harness/HeaderRewriting_iter_batched_ref", |b| {
        b.iter_batched_ref(
            || pristine.clone(),
            |buf| rewrite_message(buf, len, black_box(&ctx)),
            BatchSize::SmallInput,
        )
    });
    let mut work = pristine.clone();
    c.bench_function("Harness/HeaderRewriting_copy_in_loop", |b| {
        b.iter(|| {
            work[..len].copy_from_slice(black_box(&input));
            rewrite_message(black_box(&mut work), len, black_box(&ctx))
        })
    });
    c.bench_function("Harness/copy_only_header", |b| {
        b.iter(|| {
            work[..len].copy_from_slice(black_box(&input));
            black_box(&mut work);
        })
    });
}

fn run<C: Clock>(c: Criterion<C>) {
    let mut c = c.configure_from_args();
    header_rewriting(&mut c);
    sdp_rewriting(&mut c);
    concurrent(&mut c);
    fast_path(&mut c);
    private_ip_detection(&mut c);
    memory_efficiency(&mut c);
    carrier_invite_sdp(&mut c);
    carrier_invite_sdp_packet(&mut c);
    harness(&mut c);
    c.final_summary();
}

fn main() {
    match std::env::var("SIPNAT_BENCH_CLOCK").as_deref() {
        Ok("cpu") => run(Criterion::default().with_measurement(ThreadCpu::make())),
        Ok("wall") | Err(_) => run(Criterion::default()),
        Ok(other) => panic!("SIPNAT_BENCH_CLOCK={other:?}: use `wall` (default) or `cpu`"),
    }
}
