//! The rewriter core allocates nothing: every bench input (`testdata/bench-inputs/`, with
//! the config its benchmark uses), the whole-packet variant and an inbound run, 1000 calls
//! each under a counting global allocator — through the fast path as everything calls it
//! (`rewrite_message` / `rewrite_packet`: a gate per call, the thread's edit list), as the
//! pipeline calls it (a gate built once, the caller's edit list), and the reference.
//!
//! The counter and its "armed" flag are thread-local, so tests running in parallel threads
//! (and the harness itself) cannot add to another test's count. Buffers are prepared while
//! disarmed; armed, each call restores the input with `copy_from_slice` and rewrites it.
//!
//! Inputs are read from `$SIPNAT_BENCH_INPUTS`, default `testdata/bench-inputs` in the
//! repository; a missing input fails the test with its path.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    hint::black_box,
    net::{IpAddr, Ipv4Addr, SocketAddr},
};

use etherparse::PacketBuilder;
use sipnat::{
    nat::{
        media::{call_hash, MediaBindings, MediaRegistry},
        napt::{Bound, NaptTable, PortRange},
        Direction, ExternalAddrs, L3Action, Net, RewriteConfig,
    },
    rewrite::{
        edits::Edits,
        packet::{rewrite_packet, rewrite_packet_gated, udp_checksum_ok},
        reference, rewrite_message, rewrite_message_in, Changes, Context, Gate, Napt, Outcome,
    },
    wire::{self, Link},
};

// Only the test data paths of the shared helpers (the rest needs no allocator counting).
#[allow(dead_code)]
#[path = "common/testdata.rs"]
mod testdata;

// The PrivateIPDetection addresses and classes (shared with the benches).
#[path = "common/private_ips.rs"]
mod private_ips;

// ---------------------------------------------------------------------------------------
// The counting allocator.

struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    /// (allocations incl. reallocs, bytes requested) while armed, this thread.
    static COUNT: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

fn note(bytes: usize) {
    // `try_with`: the allocator may run while this thread's locals are being torn down.
    if ARMED.try_with(Cell::get).unwrap_or(false) {
        let _ = COUNT.try_with(|c| {
            let (n, b) = c.get();
            c.set((n + 1, b + bytes as u64));
        });
    }
}

// SAFETY: forwards every call to `System` unchanged; only counts on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as `alloc`; `ptr` and `layout` come from this allocator (i.e. System).
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by System with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` with counting armed on this thread: `(allocations, bytes)` it made.
fn counted(f: impl FnOnce()) -> (u64, u64) {
    COUNT.with(|c| c.set((0, 0)));
    ARMED.with(|a| a.set(true));
    f();
    ARMED.with(|a| a.set(false));
    COUNT.with(Cell::get)
}

// ---------------------------------------------------------------------------------------
// Inputs and configs (as in benches/benches/rewriter.rs).

const CALLS: u64 = 1000;
const TAILROOM: usize = 1024;
const EXT_ORIGIN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const EXT_CARRIER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const CARRIER_HOST: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 2);
const CARRIER_PEER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

fn load(name: &str) -> Vec<u8> {
    testdata::read(&testdata::bench_inputs_dir().join(name))
}

fn rule(net: &str) -> RewriteConfig {
    RewriteConfig::single(Net::parse(net).expect("valid net"))
}

fn header_config() -> RewriteConfig {
    let mut c = rule("192.168.1.100/32");
    c.record_route = true;
    c
}

fn carrier_config() -> RewriteConfig {
    let mut c = rule("10.88.0.0/24");
    c.from_to = true;
    c
}

fn ctx(config: &RewriteConfig, ext: Ipv4Addr, direction: Direction) -> Context<'_> {
    Context {
        config,
        external: ExternalAddrs::v4(ext),
        direction,
        internal: None,
        local_port: None,
        napt: None,
        media: None,
    }
}

fn carrier_changes() -> Outcome {
    rewritten("via=1 from_to=1 contact=1 sdp_origin=1 sdp_connection=2 sdp_rtcp=1 content_length=1")
}

/// `Rewritten` with the counts of `spec` (`"via=1 contact=2"`), the others zero.
fn rewritten(spec: &str) -> Outcome {
    let mut c = Changes::default();
    for pair in spec.split_whitespace() {
        let (name, n) = pair.split_once('=').expect("name=count");
        let field = match name {
            "request_uri" => &mut c.request_uri,
            "via" => &mut c.via,
            "contact" => &mut c.contact,
            "record_route" => &mut c.record_route,
            "from_to" => &mut c.from_to,
            "sdp_origin" => &mut c.sdp_origin,
            "sdp_connection" => &mut c.sdp_connection,
            "sdp_rtcp" => &mut c.sdp_rtcp,
            "content_length" => &mut c.content_length,
            other => panic!("no field {other} here"),
        };
        *field = n.parse().expect("count");
    }
    Outcome::Rewritten(c)
}

fn frame(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src.octets(), dst.octets(), 64)
        .udp(5060, 5060);
    let mut v = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut v, payload).expect("build frame");
    v
}

/// The destination port and the payload of a UDP frame.
fn udp_of(frame: &[u8]) -> (u16, &[u8]) {
    let layout = wire::parse(frame, Link::Ethernet).expect("parses");
    let (_, dport, p, n) = layout.udp(frame).expect("udp");
    (dport, &frame[p..p + n])
}

/// A work buffer: `input` followed by tailroom.
fn work(input: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; input.len() + TAILROOM];
    b[..input.len()].copy_from_slice(input);
    b
}

fn report(name: &str, (allocs, bytes): (u64, u64)) {
    println!(
        "{name:<34} {CALLS} calls: {allocs} allocations, {bytes} B -> {} allocations/op",
        allocs as f64 / CALLS as f64
    );
}

/// Case `name`: the input `file` rewritten outbound under `config` to [`EXT_ORIGIN`],
/// checked against `want` and counted (see [`message_case`]).
fn origin_case(
    name: &'static str,
    file: &str,
    config: &RewriteConfig,
    want: Outcome,
) -> (&'static str, (u64, u64)) {
    let c = ctx(config, EXT_ORIGIN, Direction::Outbound);
    (name, message_case(name, &load(file), &c, want))
}

/// Checks one message-level case once (expected outcome), then counts `CALLS` rewrites.
fn message_case(name: &str, input: &[u8], ctx: &Context<'_>, want: Outcome) -> (u64, u64) {
    let (gate, mut edits) = (Gate::of(ctx), Edits::new());
    let mut buf = work(input);
    let len = input.len();
    let r = rewrite_message(&mut buf, len, ctx);
    assert_eq!(r.outcome, want, "{name}: unexpected outcome");
    let counts = counted(|| {
        for _ in 0..CALLS {
            buf[..len].copy_from_slice(input);
            let r = rewrite_message(black_box(&mut buf), len, black_box(ctx));
            assert_eq!(r.outcome, want);
            buf[..len].copy_from_slice(input);
            let r = rewrite_message_in(black_box(&mut buf), len, black_box(ctx), &gate, &mut edits);
            assert_eq!(r.outcome, want);
            buf[..len].copy_from_slice(input);
            let r = reference::rewrite_message(black_box(&mut buf), len, black_box(ctx));
            assert_eq!(r.outcome, want);
        }
    });
    report(name, counts);
    counts
}

#[test]
fn counter_counts() {
    let (n, bytes) = counted(|| {
        black_box(vec![0u8; 100]);
    });
    assert_eq!(
        (n, bytes),
        (1, 100),
        "the counting allocator must see a Vec"
    );
    let (n, _) = counted(|| {});
    assert_eq!(n, 0);
}

#[test]
fn rewriter_allocates_nothing() {
    let mut results: Vec<(&str, (u64, u64))> = Vec::new();

    let header = header_config();
    let o = ctx(&header, EXT_ORIGIN, Direction::Outbound);
    let want = rewritten("via=1 contact=1 record_route=1");
    results.push(origin_case(
        "HeaderRewriting",
        "header-rewriting.sip",
        &header,
        want,
    ));
    let want = rewritten("sdp_origin=1 sdp_connection=2 content_length=1");
    let sdp = rule("192.168.1.100/32");
    results.push(origin_case("SDPRewriting", "sdp-rewriting.sip", &sdp, want));

    // Concurrent: two threads, each counting its own calls.
    let input = load("concurrent.sip");
    let want = rewritten("via=1 contact=1");
    let per_thread: Vec<(u64, u64)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| s.spawn(|| message_case("Concurrent (1 of 2 threads)", &input, &o, want)))
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let sum = per_thread
        .iter()
        .fold((0, 0), |a, c| (a.0 + c.0, a.1 + c.1));
    results.push(("Concurrent", sum));

    let mut disabled = header_config();
    disabled.enabled = false;
    results.push(origin_case(
        "FastPath",
        "fast-path.sip",
        &disabled,
        Outcome::Unchanged,
    ));

    // PrivateIPDetection: one op = the six addresses of the file.
    let defaults = RewriteConfig::default();
    let addrs = private_ips::addresses(&load("private-ip-detection.txt"));
    let local = sipnat::nat::rules::LocalV4::of(&defaults);
    let counts = counted(|| {
        for _ in 0..CALLS {
            for (a, want) in &addrs {
                assert_eq!(
                    private_ips::classify(black_box(&defaults), black_box(a)),
                    *want
                );
                assert_eq!(
                    private_ips::fast(black_box(&defaults), &local, black_box(a)),
                    *want
                );
            }
        }
    });
    report("PrivateIPDetection (6 addresses)", counts);
    results.push(("PrivateIPDetection", counts));

    let want = rewritten("via=1 contact=2 sdp_origin=1 sdp_connection=3 content_length=1");
    let mem = rule("192.168.1.0/24");
    results.push(origin_case(
        "MemoryEfficiency",
        "memory-efficiency.sip",
        &mem,
        want,
    ));

    let carrier = carrier_config();
    let invite = load("carrier-invite-sdp.sip");
    let out = ctx(&carrier, EXT_CARRIER, Direction::Outbound);
    let want = carrier_changes();
    results.push((
        "CarrierInviteSdp",
        message_case("CarrierInviteSdp", &invite, &out, want),
    ));

    // Whole packet, outbound: SNAT the source.
    let f = frame(CARRIER_HOST, CARRIER_PEER, &invite);
    let snat = L3Action {
        src: Some(IpAddr::V4(EXT_CARRIER)),
        dst: None,
    };
    let (counts, rewritten) = packet_case("CarrierInviteSdpPacket", &f, &out, snat, want);
    results.push(("CarrierInviteSdpPacket", counts));

    // Inbound: the rewritten INVITE as if it came back to the external address; the
    // destination is restored to the internal host and so is every address in the payload.
    let back_payload = udp_of(&rewritten).1.to_vec();
    let back = frame(CARRIER_PEER, EXT_CARRIER, &back_payload);
    let inbound = Context {
        internal: Some(IpAddr::V4(CARRIER_HOST)),
        ..ctx(&carrier, EXT_CARRIER, Direction::Inbound)
    };
    let restore = L3Action {
        src: None,
        dst: Some(IpAddr::V4(CARRIER_HOST)),
    };
    let (counts, restored) = packet_case(
        "CarrierInviteSdpPacket inbound",
        &back,
        &inbound,
        restore,
        want,
    );
    assert_eq!(
        udp_of(&restored).1,
        &invite[..],
        "inbound restores the original INVITE"
    );
    results.push(("CarrierInviteSdpPacket inbound", counts));
    // The message-level inbound call too.
    results.push((
        "CarrierInviteSdp inbound",
        message_case("CarrierInviteSdp inbound", &back_payload, &inbound, want),
    ));

    // NAPT: the INVITE from a host whose port 5060 is bound to external port 20001 (UDP
    // source port and SIP ports translated), and back; and the binding table's calls of a
    // packet of a bound endpoint (lookup, refresh; inbound lookup).
    let napt = Some(Napt {
        internal: IpAddr::V4(CARRIER_HOST),
        internal_port: 5060,
        external_port: 20001,
    });
    let out_napt = Context { napt, ..out };
    let napt_want = {
        let mut buf = work(&f);
        let layout = wire::parse(&buf, Link::Ethernet).expect("parses");
        let r = rewrite_packet(&mut buf, &layout, &out_napt, snat).expect("UDP");
        let out = wire::parse(&buf[..r.len], Link::Ethernet).expect("parses");
        assert_eq!(out.udp(&buf[..r.len]).expect("udp").0, 20001, "source port");
        r.sip
    };
    assert!(matches!(napt_want, Outcome::Rewritten(_)));
    let (counts, translated) = packet_case(
        "CarrierInviteSdpPacket napt",
        &f,
        &out_napt,
        snat,
        napt_want,
    );
    results.push(("CarrierInviteSdpPacket napt", counts));
    let back = frame(CARRIER_PEER, EXT_CARRIER, udp_of(&translated).1);
    let mut back = back;
    // To the external port.
    let l = wire::parse(&back, Link::Ethernet).expect("parses");
    back[l.l4 + 2..l.l4 + 4].copy_from_slice(&20001u16.to_be_bytes());
    back[l.l4 + 6..l.l4 + 8].copy_from_slice(&[0, 0]);
    let in_napt = Context {
        napt,
        local_port: Some(20001),
        ..inbound
    };
    let (counts, restored) = packet_case(
        "CarrierInviteSdpPacket napt inbound",
        &back,
        &in_napt,
        restore,
        want,
    );
    let (dport, payload) = udp_of(&restored);
    assert_eq!(dport, 5060);
    // Restored, but for the port a URI left out (the default 5060, which NAPT
    // translated): it comes back written.
    let want_back =
        String::from_utf8_lossy(&invite).replace("alice@10.88.0.2>", "alice@10.88.0.2:5060>");
    assert_eq!(
        String::from_utf8_lossy(payload),
        want_back,
        "NAPT inbound restores it"
    );
    results.push(("CarrierInviteSdpPacket napt inbound", counts));
    let table = NaptTable::new(1024, 300);
    let range = PortRange {
        first: 20000,
        last: 29999,
    };
    let (e, h) = (IpAddr::V4(EXT_CARRIER), IpAddr::V4(CARRIER_HOST));
    table.outbound(e, IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9)), 5060, range, 1);
    assert_eq!(
        table.outbound(e, h, 5060, range, 1),
        Bound::Allocated(20000)
    );
    let counts = counted(|| {
        for i in 0..CALLS {
            let now = 1 + (i / 100) as u32;
            let b = table.outbound(black_box(e), black_box(h), 5060, range, now);
            assert_eq!(b, Bound::Existing(20000));
            assert_eq!(table.inbound(e, 20000, now), Some((h, 5060)));
        }
    });
    results.push(("NaptTable outbound + inbound", counts));
    // The media registry a worker calls per SDP: a new call's pair, its retransmission,
    // the dialog's end (a sink that allocates nothing itself: the daemon's does bpf(2)).
    struct NoSink;
    impl MediaBindings for NoSink {
        fn install(&self, _: SocketAddr, _: SocketAddr) -> bool {
            true
        }
        fn remove(&self, _: SocketAddr, _: SocketAddr) {}
        fn last_seen_ns(&self, _: SocketAddr, _: SocketAddr) -> Option<u64> {
            Some(0)
        }
    }
    let media = MediaRegistry::new(PortRange {
        first: 30000,
        last: 39999,
    });
    let counts = counted(|| {
        for i in 0..CALLS {
            let call = call_hash(&i.to_be_bytes());
            let rtp = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0002 + i as u32)), 6000);
            let g = media.begin_sdp();
            let p = media.bind(call, g, rtp, e, &NoSink, 1);
            assert!(p.is_some());
            assert_eq!(media.bind(call, g, rtp, e, &NoSink, 1), p);
            assert_eq!(media.end_sdp(call, g, &NoSink), 0);
            assert_eq!(media.end_call(call, &NoSink), 1);
        }
    });
    results.push(("MediaRegistry bind + end", counts));

    println!("\nallocations per op:");
    for (name, (n, _)) in &results {
        println!("  {name:<32} {}", *n as f64 / CALLS as f64);
    }
    let bad: Vec<_> = results.iter().filter(|(_, (n, _))| *n != 0).collect();
    assert!(bad.is_empty(), "the rewriter allocated: {bad:?}");
}

/// Checks one whole-packet case once (expected outcome, valid checksum), then counts
/// `CALLS` parse + rewrite calls. Returns the counts and the rewritten frame.
fn packet_case(
    name: &str,
    frame: &[u8],
    ctx: &Context<'_>,
    l3: L3Action,
    want: Outcome,
) -> ((u64, u64), Vec<u8>) {
    let mut buf = work(frame);
    let layout = wire::parse(&buf, Link::Ethernet).expect("frame parses");
    let r = rewrite_packet(&mut buf, &layout, ctx, l3).expect("UDP");
    assert_eq!(r.sip, want, "{name}");
    assert!(r.l3_changed, "{name}: {r:?}");
    let rewritten = buf[..r.len].to_vec();
    let out_layout = wire::parse(&rewritten, Link::Ethernet).expect("output parses");
    assert!(udp_checksum_ok(&rewritten, &out_layout), "{name}: checksum");
    let len = frame.len();
    let gate = Gate::of(ctx);
    let mut edits = Edits::new();
    let counts = counted(|| {
        for _ in 0..CALLS {
            buf[..len].copy_from_slice(frame);
            let layout = wire::parse(black_box(&buf), Link::Ethernet).expect("parses");
            let r = rewrite_packet(black_box(&mut buf), &layout, black_box(ctx), l3);
            assert_eq!(r.map(|r| r.sip), Ok(want));
            buf[..len].copy_from_slice(frame);
            let r = rewrite_packet_gated(&mut buf, &layout, black_box(ctx), l3, &gate, &mut edits);
            assert_eq!(r.map(|r| r.sip), Ok(want));
            buf[..len].copy_from_slice(frame);
            let r = reference::rewrite_packet(black_box(&mut buf), &layout, black_box(ctx), l3);
            assert_eq!(r.map(|r| r.sip), Ok(want));
        }
    });
    report(name, counts);
    (counts, rewritten)
}
