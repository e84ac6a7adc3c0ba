//! Verdict tests of the XDP steering program through `BPF_PROG_TEST_RUN` on crafted frames.
//!
//! Each case loads a fresh program instance (its own maps), configures it, runs one frame,
//! and asserts both the XDP action and that exactly one verdict counter moved — the
//! expected one. The AF_XDP socket that makes a redirect succeed is bound to `lo` of a
//! network namespace the test creates (and removes).

mod common;

use aya::programs::{TestRun, TestRunOptions};
use common::{frames, netns::Netns, privileged, xsk::RxSocket};
use nat_common::stat;
use sipnat::xdp::{FailureMode, SteeringConfig, SteeringProgram};

const PASS: u32 = 2;
const DROP: u32 = 1;
const REDIRECT: u32 = 4;

/// Returns from the test `$name` unless it may run (see [`privileged`]).
macro_rules! require_privileges {
    ($name:expr) => {
        if !privileged($name) {
            return;
        }
    };
}

#[derive(Clone)]
struct Setup {
    socket: bool,
    config: SteeringConfig,
    ports: Vec<u16>,
}

fn std_setup() -> Setup {
    Setup {
        socket: true,
        config: SteeringConfig::default(),
        ports: vec![5060],
    }
}

/// Runs `frame` through a fresh program; returns (action, index of the counter that moved).
fn run_frames(frames: Vec<Vec<u8>>, setup: Setup) -> Vec<(u32, usize)> {
    let ns = Netns::new("verdict");
    ns.run(move || {
        let mut prog = SteeringProgram::load().expect("load XDP program");
        prog.set_config(setup.config).unwrap();
        prog.set_ports(&setup.ports).unwrap();
        let _xsk = setup.socket.then(|| {
            let xsk = RxSocket::bind("lo");
            prog.xsk_map()
                .unwrap()
                .set(0, xsk.fd(), 0)
                .expect("XSKMAP set");
            xsk
        });
        frames
            .iter()
            .map(|frame| {
                let before = prog.counters().unwrap();
                let res = prog
                    .program()
                    .test_run(TestRunOptions {
                        data_in: Some(frame),
                        ..Default::default()
                    })
                    .expect("BPF_PROG_TEST_RUN");
                let after = prog.counters().unwrap();
                let moved: Vec<usize> = (0..after.len())
                    .filter(|&i| after[i] != before[i])
                    .collect();
                assert_eq!(
                    moved.len(),
                    1,
                    "exactly one counter must move, moved: {moved:?}"
                );
                assert_eq!(after[moved[0]] - before[moved[0]], 1);
                (res.return_value, moved[0])
            })
            .collect()
    })
}

fn check(name: &str, frame: Vec<u8>, setup: Setup, action: u32, counter: u32) {
    require_privileges!(name);
    let (got_action, moved) = run_frames(vec![frame], setup)[0];
    assert_eq!(
        (got_action, stat::NAMES[moved]),
        (action, stat::NAMES[counter as usize]),
        "{name}: (action, counter)"
    );
}

macro_rules! verdict {
    ($($name:ident: $frame:expr, $setup:expr => $action:expr, $counter:expr;)+) => {$(
        #[test]
        fn $name() {
            check(stringify!($name), $frame, $setup, $action, $counter);
        }
    )+};
}

fn no_socket(on_failure: FailureMode) -> Setup {
    Setup {
        socket: false,
        config: SteeringConfig {
            on_failure,
            ..SteeringConfig::default()
        },
        ..std_setup()
    }
}

fn fragments_off() -> Setup {
    Setup {
        config: SteeringConfig {
            steer_fragments: false,
            ..SteeringConfig::default()
        },
        ..std_setup()
    }
}

verdict! {
    ipv4_udp_to_5060: frames::udp4(40000, 5060), std_setup() => REDIRECT, stat::REDIRECT_SIP;
    ipv4_udp_from_5060: frames::udp4(5060, 40000), std_setup() => REDIRECT, stat::REDIRECT_SIP;
    ipv6_udp_to_5060: frames::udp6(40000, 5060), std_setup() => REDIRECT, stat::REDIRECT_SIP;
    ipv6_udp_from_5060: frames::udp6(5060, 40000), std_setup() => REDIRECT, stat::REDIRECT_SIP;
    ipv4_udp_other_port: frames::udp4(40000, 5061), std_setup() => PASS, stat::PASS_NOT_SIP_PORT;
    ipv6_udp_other_port: frames::udp6(53, 40000), std_setup() => PASS, stat::PASS_NOT_SIP_PORT;
    ipv4_tcp_5060_passes: frames::tcp4(40000, 5060), std_setup() => PASS, stat::PASS_NOT_UDP;
    icmp4_error_about_sip_steered: frames::icmp4_port_unreachable(5060, 5060), std_setup() => REDIRECT, stat::REDIRECT_ICMP_ERROR;
    icmp4_error_about_other_port_passes: frames::icmp4_port_unreachable(40000, 53), std_setup() => PASS, stat::PASS_NOT_UDP;
    icmp4_echo_passes: frames::icmp4_echo(), std_setup() => PASS, stat::PASS_NOT_UDP;
    icmp6_error_about_sip_steered: frames::icmp6_port_unreachable(40000, 5060), std_setup() => REDIRECT, stat::REDIRECT_ICMP_ERROR;
    icmp6_error_about_other_port_passes: frames::icmp6_port_unreachable(40000, 53), std_setup() => PASS, stat::PASS_NOT_UDP;
    arp_passes: frames::arp(), std_setup() => PASS, stat::PASS_NOT_IP;
    ipv4_options_sip: frames::udp4_with_options(40000, 5060), std_setup() => REDIRECT, stat::REDIRECT_SIP;
    vlan_ipv4_sip: frames::vlan_udp4(100, 40000, 5060), std_setup() => REDIRECT, stat::REDIRECT_SIP;
    qinq_ipv6_sip: frames::qinq_udp6(200, 100, 40000, 5060), std_setup() => REDIRECT, stat::REDIRECT_SIP;
    three_vlan_tags_unparsed: frames::triple_vlan_udp4(40000, 5060), std_setup() => PASS, stat::PASS_UNPARSED;
    ipv6_two_ext_headers_sip: frames::udp6_with_two_ext(40000, 5060), std_setup() => REDIRECT, stat::REDIRECT_SIP;
    ipv6_three_ext_headers_sip: frames::udp6_with_three_ext(5060, 5060), std_setup() => REDIRECT, stat::REDIRECT_SIP;
    ipv6_two_ext_headers_other_port: frames::udp6_with_two_ext(40000, 40001), std_setup() => PASS, stat::PASS_NOT_SIP_PORT;
    ipv6_ext_chain_too_long: frames::udp6_with_long_chain(40000, 5060), std_setup() => PASS, stat::PASS_UNPARSED;
    ipv4_first_fragment: frames::udp4_fragments(40000, 5060)[0].clone(), std_setup() => REDIRECT, stat::REDIRECT_FRAGMENT;
    ipv4_middle_fragment: frames::udp4_fragments(40000, 5060)[1].clone(), std_setup() => REDIRECT, stat::REDIRECT_FRAGMENT;
    ipv4_last_fragment: frames::udp4_fragments(40000, 5060)[2].clone(), std_setup() => REDIRECT, stat::REDIRECT_FRAGMENT;
    ipv4_first_fragment_of_non_sip_port_still_steered: frames::udp4_fragments(40000, 53)[0].clone(), std_setup() => REDIRECT, stat::REDIRECT_FRAGMENT;
    ipv6_first_fragment: frames::udp6_fragments(40000, 5060)[0].clone(), std_setup() => REDIRECT, stat::REDIRECT_FRAGMENT;
    ipv6_last_fragment: frames::udp6_fragments(40000, 5060)[1].clone(), std_setup() => REDIRECT, stat::REDIRECT_FRAGMENT;
    ipv6_atomic_fragment_is_whole_datagram: frames::udp6_atomic_fragment(40000, 5060), std_setup() => REDIRECT, stat::REDIRECT_SIP;
    ipv4_fragment_with_steering_off: frames::udp4_fragments(40000, 5060)[1].clone(), fragments_off() => PASS, stat::PASS_FRAGMENT;
    ipv6_fragment_with_steering_off: frames::udp6_fragments(40000, 5060)[0].clone(), fragments_off() => PASS, stat::PASS_FRAGMENT;
    disabled_passes_before_parsing: frames::udp4(40000, 5060), Setup { config: SteeringConfig { enabled: false, ..SteeringConfig::default() }, ..std_setup() } => PASS, stat::PASS_DISABLED;
    empty_xskmap_slot_fail_open: frames::udp4(40000, 5060), no_socket(FailureMode::Pass) => PASS, stat::PASS_NO_SOCKET;
    empty_xskmap_slot_fail_closed: frames::udp4(40000, 5060), no_socket(FailureMode::Drop) => DROP, stat::DROP_NO_SOCKET;
    empty_xskmap_slot_non_sip_still_passes: frames::udp4(40000, 5061), no_socket(FailureMode::Drop) => PASS, stat::PASS_NOT_SIP_PORT;
    ipv4_bad_version: { let mut f = frames::udp4(40000, 5060); f[14] = 0x55; f }, std_setup() => PASS, stat::PASS_MALFORMED;
    ipv4_ihl_below_minimum: { let mut f = frames::udp4(40000, 5060); f[14] = 0x44; f }, std_setup() => PASS, stat::PASS_MALFORMED;
}

/// A SIP port added at runtime is steered from the next packet on; a removed one is not.
#[test]
fn sip_port_added_and_removed_at_runtime() {
    require_privileges!("sip_port_added_and_removed_at_runtime");
    let ns = Netns::new("ports");
    ns.run(|| {
        let mut prog = SteeringProgram::load().unwrap();
        prog.set_ports(&[5060]).unwrap();
        let xsk = RxSocket::bind("lo");
        prog.xsk_map().unwrap().set(0, xsk.fd(), 0).unwrap();
        let run = |prog: &SteeringProgram, f: &[u8]| {
            prog.program()
                .test_run(TestRunOptions {
                    data_in: Some(f),
                    ..Default::default()
                })
                .unwrap()
                .return_value
        };
        let to_5080 = frames::udp4(40000, 5080);
        let to_5060 = frames::udp4(40000, 5060);
        assert_eq!(run(&prog, &to_5080), PASS);
        prog.set_ports(&[5060, 5080]).unwrap();
        assert_eq!(prog.ports().unwrap(), vec![5060, 5080]);
        assert_eq!(run(&prog, &to_5080), REDIRECT);
        prog.set_ports(&[5080]).unwrap();
        assert_eq!(run(&prog, &to_5060), PASS);
        assert_eq!(run(&prog, &to_5080), REDIRECT);
        let c = prog.counters().unwrap();
        assert_eq!(c[stat::REDIRECT_SIP as usize], 2);
        assert_eq!(c[stat::PASS_NOT_SIP_PORT as usize], 2);
        drop(xsk);
    });
}

/// The port set is bounded: 64 ports fit, 65 are refused with a clear error.
#[test]
fn port_set_limit() {
    require_privileges!("port_set_limit");
    let mut prog = SteeringProgram::load().unwrap();
    let ports: Vec<u16> = (5000..5064).collect();
    prog.set_ports(&ports).unwrap();
    let err = prog
        .set_ports(&(5000..5065).collect::<Vec<u16>>())
        .unwrap_err();
    assert!(err.to_string().contains("at most 64"), "{err}");
    assert!(prog.set_ports(&[]).is_err());
}

fn truncations(name: &str, frame: Vec<u8>) {
    require_privileges!(name);
    let bounds = frames::boundaries(&frame);
    let end = *bounds.last().expect("boundaries");
    // Each header boundary, one byte short of it and one byte past it: a header absent,
    // a header one byte short, a header one byte long. All must be pass_malformed.
    let mut cuts: Vec<usize> = bounds
        .iter()
        .flat_map(|&b| [b - 1, b, b + 1])
        .filter(|&len| (14..end).contains(&len))
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    assert!(cuts.len() >= 4, "{name}: too few cut points {cuts:?}");
    let results = run_frames(
        cuts.iter().map(|&l| frame[..l].to_vec()).collect(),
        std_setup(),
    );
    for (len, (action, moved)) in cuts.iter().zip(results) {
        assert_eq!(
            (action, stat::NAMES[moved]),
            (PASS, "pass_malformed"),
            "{name}: truncated to {len} of {} bytes",
            frame.len()
        );
    }
    eprintln!(
        "{name}: {} truncation points {cuts:?} → pass_malformed",
        cuts.len()
    );
}

#[test]
fn truncated_ipv4_udp_at_every_boundary() {
    truncations(
        "truncated_ipv4_udp_at_every_boundary",
        frames::udp4(40000, 5060),
    );
}

#[test]
fn truncated_vlan_ipv4_options_at_every_boundary() {
    let mut f = frames::udp4_with_options(40000, 5060);
    // Put it behind a VLAN tag too.
    let tag = [0x81, 0x00, 0x00, 0x64];
    f.splice(12..12, tag);
    truncations("truncated_vlan_ipv4_options_at_every_boundary", f);
}

#[test]
fn truncated_qinq_ipv6_at_every_boundary() {
    truncations(
        "truncated_qinq_ipv6_at_every_boundary",
        frames::qinq_udp6(200, 100, 40000, 5060),
    );
}

#[test]
fn truncated_ipv6_ext_headers_at_every_boundary() {
    truncations(
        "truncated_ipv6_ext_headers_at_every_boundary",
        frames::udp6_with_three_ext(40000, 5060),
    );
}

// ---------------------------------------------------------------------------------------
// Media NAT (RTP/RTCP translated in XDP).
//
// One binding, internal 10.0.0.2:4000 ↔ external 203.0.113.1:30000. The test's namespace
// gives the kernel's FIB two interfaces: `mout` (198.51.100.0/24, the "outside",
// neighbour 198.51.100.2 permanent) and `min` (10.0.0.0/24, the "inside", neighbour
// 10.0.0.2 permanent), and forwarding on. BPF_PROG_TEST_RUN runs the program as if the
// frame arrived on `lo`, so `bpf_fib_lookup` really runs; the redirect itself is not
// carried out by a (non-live) test run: what is observable is the verdict, the counter
// and the frame as the program left it (translation, TTL, MACs). The delivery is tested
// on veths in tests/xdp_netns.rs.

use std::net::{IpAddr, SocketAddr};

use etherparse::{PacketBuilder, SlicedPacket};
use sipnat::xdp::{media::MediaMaps, Side};

const INTERNAL: &str = "10.0.0.2:4000";
const EXTERNAL: &str = "203.0.113.1:30000";
const REMOTE: &str = "198.51.100.2:40000";
const OUT_NEIGH_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 0x02];
const IN_NEIGH_MAC: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 0x02];

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// An RTP-sized UDP frame, IPv4 or IPv6 as the addresses are: a 172-byte payload (a
/// 214-byte IPv4 packet).
fn rtp(src: &str, dst: &str, ttl: u8) -> Vec<u8> {
    let (s, d) = (sa(src), sa(dst));
    let eth = PacketBuilder::ethernet2(frames::SRC_MAC, frames::DST_MAC);
    let (b, mul, add) = match (s.ip(), d.ip()) {
        (IpAddr::V4(s4), IpAddr::V4(d4)) => (eth.ipv4(s4.octets(), d4.octets(), ttl), 7, 3),
        (IpAddr::V6(s6), IpAddr::V6(d6)) => (eth.ipv6(s6.octets(), d6.octets(), ttl), 5, 1),
        _ => panic!("mixed families: {src} {dst}"),
    };
    let b = b.udp(s.port(), d.port());
    let payload: Vec<u8> = (0..172u32).map(|i| (i * mul + add) as u8).collect();
    let mut v = Vec::new();
    b.write(&mut v, &payload).unwrap();
    v
}

#[derive(Clone)]
struct MediaSetup {
    side: Side,
    media_nat: bool,
    /// Both interfaces in the egress devmap.
    egress: bool,
    /// Permanent neighbours for the next hops.
    neighbours: bool,
    steer_fragments: bool,
    bindings: Vec<(SocketAddr, SocketAddr)>,
}

fn media_setup(side: Side) -> MediaSetup {
    MediaSetup {
        side,
        media_nat: true,
        egress: true,
        neighbours: true,
        steer_fragments: true,
        bindings: vec![(sa(INTERNAL), sa(EXTERNAL))],
    }
}

struct MediaOut {
    action: u32,
    counter: &'static str,
    frame: Vec<u8>,
    /// MACs of `mout` and `min`, for the checks of the rewritten Ethernet header.
    macs: ([u8; 6], [u8; 6]),
}

fn mac_of(ns: &Netns, ifname: &str) -> [u8; 6] {
    let out = ns.exec(&["cat", &format!("/sys/class/net/{ifname}/address")]);
    let s = String::from_utf8(out.stdout).unwrap();
    let v: Vec<u8> = s
        .trim()
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

fn media_run(frames: Vec<Vec<u8>>, setup: MediaSetup) -> Vec<MediaOut> {
    let ns = Netns::new("media");
    let sh = |line: &str| ns.exec(&line.split_whitespace().collect::<Vec<_>>());
    // veth pairs with both ends here (this kernel may have no dummy driver). IPv6 too (the
    // namespace starts with it disabled); `lo` is where a test run's frame "arrives", so it
    // needs IPv6 and forwarding for the FIB lookup.
    for line in [
        "ip link add mout type veth peer name mout-p",
        "ip link add min type veth peer name min-p",
        "ip link set mout-p up",
        "ip link set min-p up",
        "ip addr add 198.51.100.1/24 dev mout",
        "ip addr add 10.0.0.1/24 dev min",
        "ip link set mout up",
        "ip link set min up",
        "sysctl -qw net.ipv4.ip_forward=1",
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.lo.disable_ipv6=0 \
         net.ipv6.conf.mout.disable_ipv6=0 net.ipv6.conf.min.disable_ipv6=0 \
         net.ipv6.conf.all.forwarding=1",
        "ip -6 addr add 2001:db8:100::1/64 dev mout nodad",
        "ip -6 addr add fd00::1/64 dev min nodad",
    ] {
        sh(line);
    }
    if setup.neighbours {
        for (ip, mac, dev) in [
            ("198.51.100.2", OUT_NEIGH_MAC, "mout"),
            ("10.0.0.2", IN_NEIGH_MAC, "min"),
            ("2001:db8:100::2", OUT_NEIGH_MAC, "mout"),
            ("fd00::2", IN_NEIGH_MAC, "min"),
        ] {
            let family = if ip.contains(':') { "-6" } else { "" };
            let mac: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
            let mac = mac.join(":");
            sh(&format!(
                "ip {family} neigh replace {ip} lladdr {mac} dev {dev} nud permanent"
            ));
        }
    }
    let macs = (mac_of(&ns, "mout"), mac_of(&ns, "min"));
    ns.run(move || {
        let mut prog = SteeringProgram::load().expect("load XDP program");
        // The other side's program: only its media map is used (a binding is two halves).
        let other = SteeringProgram::load().expect("load XDP program");
        prog.set_config(SteeringConfig {
            steer_fragments: setup.steer_fragments,
            ..SteeringConfig::default()
        })
        .unwrap();
        prog.set_ports(&[5060]).unwrap();
        prog.set_side(setup.side).unwrap();
        prog.set_media_nat(setup.media_nat).unwrap();
        if setup.egress {
            let ids: Vec<u32> = ["mout", "min"]
                .iter()
                .map(|n| sipnat::sys::if_index(n).unwrap())
                .collect();
            prog.set_egress(&ids).unwrap();
            assert_eq!(prog.egress().unwrap().len(), 2);
        }
        let media = match setup.side {
            Side::Inside => MediaMaps::new(prog.media_map().unwrap(), other.media_map().unwrap()),
            Side::Outside => MediaMaps::new(other.media_map().unwrap(), prog.media_map().unwrap()),
        }
        .unwrap();
        for (i, e) in &setup.bindings {
            media.install(*i, *e).unwrap();
        }
        let xsk = RxSocket::bind("lo");
        prog.xsk_map().unwrap().set(0, xsk.fd(), 0).unwrap();
        let out = frames
            .iter()
            .map(|frame| {
                let before = prog.counters().unwrap();
                let mut buf = vec![0u8; frame.len() + 256];
                let res = prog
                    .program()
                    .test_run(TestRunOptions {
                        data_in: Some(frame),
                        data_out: Some(&mut buf),
                        ..Default::default()
                    })
                    .expect("BPF_PROG_TEST_RUN");
                buf.truncate(res.data_size_out as usize);
                let after = prog.counters().unwrap();
                let moved: Vec<usize> = (0..after.len())
                    .filter(|&i| after[i] != before[i])
                    .collect();
                assert_eq!(moved.len(), 1, "exactly one counter must move: {moved:?}");
                MediaOut {
                    action: res.return_value,
                    counter: stat::NAMES[moved[0]],
                    frame: buf,
                    macs,
                }
            })
            .collect();
        drop(xsk);
        out
    })
}

/// Runs `frames` under `setup`: each must get `action`, counted as `counter`, unchanged.
#[track_caller]
fn assert_unchanged(frames: Vec<Vec<u8>>, setup: MediaSetup, action: u32, counter: &str) {
    let out = media_run(frames.clone(), setup);
    for (r, f) in out.iter().zip(&frames) {
        assert_eq!((r.action, r.counter, &r.frame), (action, counter, f));
    }
}

/// The verdict of a media hit forwarded by XDP.
const HIT: (u32, &str) = (REDIRECT, "redirect_media");
/// The verdict of a media hit translated and passed to the kernel.
const TRANSLATED: (u32, &str) = (PASS, "pass_media_translated");

/// Runs `frame` under `setup`: it must get the verdict `(action, counter)`.
#[track_caller]
fn run_one(frame: Vec<u8>, setup: MediaSetup, (action, counter): (u32, &str)) -> MediaOut {
    let r = media_run(vec![frame], setup).remove(0);
    assert_eq!((r.action, r.counter), (action, counter));
    r
}

/// The IPv4 and UDP checksums of `frame` recomputed from scratch equal the ones in it
/// (UDP checksum 0 = none is accepted as is); returns (src, dst, ttl, udp checksum).
fn parsed(frame: &[u8]) -> (SocketAddr, SocketAddr, u8, u16) {
    let p = SlicedPacket::from_ethernet(frame).expect("parse output frame");
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not IPv4")
    };
    let h = ip.header().to_header();
    assert_eq!(
        h.header_checksum,
        h.calc_header_checksum(),
        "IPv4 header checksum"
    );
    let Some(etherparse::TransportSlice::Udp(u)) = &p.transport else {
        panic!("not UDP")
    };
    let uh = u.to_header();
    if uh.checksum != 0 {
        let want = uh.calc_checksum_ipv4(&h, u.payload()).unwrap();
        assert_eq!(uh.checksum, want, "UDP checksum");
    }
    (
        SocketAddr::from((h.source, uh.source_port)),
        SocketAddr::from((h.destination, uh.destination_port)),
        h.time_to_live,
        uh.checksum,
    )
}

#[test]
fn media_inside_hit_source_translated_and_redirected() {
    require_privileges!("media_inside_hit_source_translated_and_redirected");
    let input = rtp(INTERNAL, REMOTE, 64);
    let r = run_one(input.clone(), media_setup(Side::Inside), HIT);
    let (src, dst, ttl, _) = parsed(&r.frame);
    assert_eq!((src, dst, ttl), (sa(EXTERNAL), sa(REMOTE), 63));
    // MACs from the FIB: the next hop's and the egress interface's.
    assert_eq!(&r.frame[0..6], &OUT_NEIGH_MAC);
    assert_eq!(&r.frame[6..12], &r.macs.0);
    // The payload is untouched.
    assert_eq!(&r.frame[42..], &input[42..]);
}

#[test]
fn media_outside_hit_destination_translated_and_redirected() {
    require_privileges!("media_outside_hit_destination_translated_and_redirected");
    let r = run_one(rtp(REMOTE, EXTERNAL, 64), media_setup(Side::Outside), HIT);
    let (src, dst, ttl, _) = parsed(&r.frame);
    assert_eq!((src, dst, ttl), (sa(REMOTE), sa(INTERNAL), 63));
    assert_eq!(&r.frame[0..6], &IN_NEIGH_MAC);
    assert_eq!(&r.frame[6..12], &r.macs.1);
}

/// Checksums stay right for many address/port pairs (carries through the fold, both
/// directions), and packets/last_seen are stamped in the binding.
#[test]
fn media_checksums_over_many_bindings() {
    require_privileges!("media_checksums_over_many_bindings");
    let mut bindings = Vec::new();
    let mut inputs = Vec::new();
    let mut want = Vec::new();
    for i in 0..40u32 {
        let x = i.wrapping_mul(2_654_435_761);
        let internal: SocketAddr = format!("10.0.0.2:{}", 1024 + (x % 60000)).parse().unwrap();
        let external: SocketAddr = format!(
            "{}.{}.{}.{}:{}",
            1 + (x >> 24) % 223,
            (x >> 16) & 0xff,
            (x >> 8) & 0xff,
            x & 0xff,
            1024 + (x >> 7) % 64000
        )
        .parse()
        .unwrap();
        if internal.port() == 5060 || bindings.iter().any(|(a, _)| *a == internal) {
            continue;
        }
        bindings.push((internal, external));
        inputs.push(rtp(&internal.to_string(), REMOTE, 64));
        want.push(external);
    }
    let mut setup = media_setup(Side::Inside);
    setup.bindings = bindings;
    let out = media_run(inputs, setup);
    for (r, ext) in out.iter().zip(&want) {
        assert_eq!((r.action, r.counter), (REDIRECT, "redirect_media"));
        let (src, _, _, csum) = parsed(&r.frame);
        assert_eq!(src, *ext);
        assert_ne!(csum, 0, "a computed UDP checksum is never sent as 0");
    }
}

#[test]
fn media_miss_is_unchanged() {
    require_privileges!("media_miss_is_unchanged");
    // Another port of the bound host, and a bound port of another host.
    let frames = vec![
        rtp("10.0.0.2:4002", REMOTE, 64),
        rtp("10.0.0.3:4000", REMOTE, 64),
    ];
    assert_unchanged(frames, media_setup(Side::Inside), PASS, "pass_not_sip_port");
    // The outside program translates destinations only: a packet *from* the external
    // address arriving outside is not a hit.
    let f = rtp(EXTERNAL, REMOTE, 64);
    assert_unchanged(
        vec![f],
        media_setup(Side::Outside),
        PASS,
        "pass_not_sip_port",
    );
}

#[test]
fn media_nat_off_leaves_bound_flow_alone() {
    require_privileges!("media_nat_off_leaves_bound_flow_alone");
    let off = MediaSetup {
        media_nat: false,
        ..media_setup(Side::Inside)
    };
    let f = rtp(INTERNAL, REMOTE, 64);
    assert_unchanged(vec![f], off, PASS, "pass_not_sip_port");
}

#[test]
fn media_udp_checksum_zero_stays_zero() {
    require_privileges!("media_udp_checksum_zero_stays_zero");
    let mut f = rtp(INTERNAL, REMOTE, 64);
    f[40] = 0;
    f[41] = 0;
    let r = run_one(f, media_setup(Side::Inside), HIT);
    let (src, _, _, csum) = parsed(&r.frame);
    assert_eq!((src, csum), (sa(EXTERNAL), 0));
}

#[test]
fn media_ttl_1_passes_untranslated() {
    require_privileges!("media_ttl_1_passes_untranslated");
    let frames = vec![rtp(INTERNAL, REMOTE, 1), rtp(INTERNAL, REMOTE, 0)];
    assert_unchanged(frames, media_setup(Side::Inside), PASS, "pass_media_ttl");
    // TTL 2 is forwarded with TTL 1.
    let r = &media_run(vec![rtp(INTERNAL, REMOTE, 2)], media_setup(Side::Inside))[0];
    assert_eq!((r.action, parsed(&r.frame).2), (REDIRECT, 1));
}

/// Cut inside the UDP header (ports present, header incomplete): the old malformed verdict,
/// untranslated.
#[test]
fn media_truncated_udp_header_untranslated() {
    require_privileges!("media_truncated_udp_header_untranslated");
    let f = rtp(INTERNAL, REMOTE, 64);
    let cuts: Vec<Vec<u8>> = [34 + 4, 34 + 7].iter().map(|&l| f[..l].to_vec()).collect();
    assert_unchanged(cuts, media_setup(Side::Inside), PASS, "pass_malformed");
}

/// IPv4 total length beyond the frame (a lying header) or shorter than IP + UDP headers:
/// untranslated, counted.
#[test]
fn media_bad_total_length_untranslated() {
    require_privileges!("media_bad_total_length_untranslated");
    let mut long = rtp(INTERNAL, REMOTE, 64);
    long[16..18].copy_from_slice(&1000u16.to_be_bytes());
    let mut short = rtp(INTERNAL, REMOTE, 64);
    short[16..18].copy_from_slice(&27u16.to_be_bytes());
    let frames = vec![long, short];
    assert_unchanged(
        frames,
        media_setup(Side::Inside),
        PASS,
        "pass_media_malformed",
    );
}

/// Fragments of a bound flow are never translated in XDP (only the first carries the
/// ports): they are steered to the worker for reassembly (fragment steering on) or passed
/// to the kernel (off), untranslated.
#[test]
fn media_fragment_of_bound_flow_not_translated() {
    require_privileges!("media_fragment_of_bound_flow_not_translated");
    let frags = frames::udp4_fragments(4000, 40000);
    // frames::SRC4 is 10.0.0.2: the first fragment carries the bound source port.
    let on = media_setup(Side::Inside);
    assert_unchanged(frags.to_vec(), on, REDIRECT, "redirect_fragment");
    let mut s = media_setup(Side::Inside);
    s.steer_fragments = false;
    assert_unchanged(frags.to_vec(), s, PASS, "pass_fragment");
}

/// No neighbour entry for the next hop yet, or an egress outside the devmap: translated
/// and passed to the kernel (which resolves/routes it and decrements the TTL itself), MACs
/// and TTL untouched.
#[test]
fn media_no_neighbour_or_foreign_egress_passes_translated() {
    require_privileges!("media_no_neighbour_or_foreign_egress_passes_translated");
    let f = rtp(INTERNAL, REMOTE, 64);
    let mut no_neigh = media_setup(Side::Inside);
    no_neigh.neighbours = false;
    let mut no_egress = media_setup(Side::Inside);
    no_egress.egress = false;
    for s in [no_neigh, no_egress] {
        let r = run_one(f.clone(), s, TRANSLATED);
        let (src, dst, ttl, _) = parsed(&r.frame);
        assert_eq!((src, dst, ttl), (sa(EXTERNAL), sa(REMOTE), 64));
        assert_eq!(&r.frame[..12], &f[..12]);
    }
}

/// A VLAN-tagged hit is translated and left to the kernel (its VLAN device is the real
/// ingress; the egress may need another tag).
#[test]
fn media_vlan_hit_passes_translated() {
    require_privileges!("media_vlan_hit_passes_translated");
    let mut f = rtp(INTERNAL, REMOTE, 64);
    f.splice(12..12, [0x81, 0x00, 0x00, 0x64]);
    let r = run_one(f.clone(), media_setup(Side::Inside), TRANSLATED);
    // Parse past the tag.
    let (src, dst, ttl, _) = parsed(&r.frame);
    assert_eq!((src, dst, ttl), (sa(EXTERNAL), sa(REMOTE), 64));
    assert_eq!(&r.frame[..16], &f[..16]);
}

const INTERNAL6: &str = "[fd00::2]:4000";
const EXTERNAL6: &str = "[2001:db8:1::1]:30000";
const REMOTE6: &str = "[2001:db8:100::2]:40000";

/// As [`parsed`], for IPv6: (src, dst, hop limit), the UDP checksum recomputed.
fn parsed6(frame: &[u8]) -> (SocketAddr, SocketAddr, u8) {
    let p = SlicedPacket::from_ethernet(frame).expect("parse output frame");
    let Some(etherparse::NetSlice::Ipv6(ip)) = &p.net else {
        panic!("not IPv6")
    };
    let h = ip.header().to_header();
    let Some(etherparse::TransportSlice::Udp(u)) = &p.transport else {
        panic!("not UDP")
    };
    let uh = u.to_header();
    assert_eq!(
        uh.checksum,
        uh.calc_checksum_ipv6(&h, u.payload()).unwrap(),
        "UDP checksum"
    );
    (
        SocketAddr::from((h.source, uh.source_port)),
        SocketAddr::from((h.destination, uh.destination_port)),
        h.hop_limit,
    )
}

fn media_setup6(side: Side) -> MediaSetup {
    MediaSetup {
        bindings: vec![(sa(INTERNAL6), sa(EXTERNAL6))],
        ..media_setup(side)
    }
}

#[test]
fn media_ipv6_inside_and_outside_hits() {
    require_privileges!("media_ipv6_inside_and_outside_hits");
    let r = run_one(rtp(INTERNAL6, REMOTE6, 64), media_setup6(Side::Inside), HIT);
    assert_eq!(parsed6(&r.frame), (sa(EXTERNAL6), sa(REMOTE6), 63));
    assert_eq!(&r.frame[0..6], &OUT_NEIGH_MAC);
    assert_eq!(&r.frame[6..12], &r.macs.0);
    let r = run_one(
        rtp(REMOTE6, EXTERNAL6, 64),
        media_setup6(Side::Outside),
        HIT,
    );
    assert_eq!(parsed6(&r.frame), (sa(REMOTE6), sa(INTERNAL6), 63));
    assert_eq!(&r.frame[0..6], &IN_NEIGH_MAC);
    // No neighbour: translated, passed, hop limit left to the kernel.
    let mut s = media_setup6(Side::Inside);
    s.neighbours = false;
    let r = run_one(rtp(INTERNAL6, REMOTE6, 64), s, TRANSLATED);
    assert_eq!(parsed6(&r.frame), (sa(EXTERNAL6), sa(REMOTE6), 64));
}

/// Hop limit 1, a UDP checksum of 0 (invalid in IPv6), a payload length beyond the frame:
/// untranslated, counted. An extension header before UDP: not looked up (old verdict).
#[test]
fn media_ipv6_untranslated_cases() {
    require_privileges!("media_ipv6_untranslated_cases");
    let hop1 = rtp(INTERNAL6, REMOTE6, 1);
    let mut csum0 = rtp(INTERNAL6, REMOTE6, 64);
    csum0[14 + 40 + 6] = 0;
    csum0[14 + 40 + 7] = 0;
    let mut long = rtp(INTERNAL6, REMOTE6, 64);
    long[18..20].copy_from_slice(&1000u16.to_be_bytes());
    let frames = vec![hop1, csum0, long];
    let want = [
        "pass_media_ttl",
        "pass_media_malformed",
        "pass_media_malformed",
    ];
    let out = media_run(frames.clone(), media_setup6(Side::Inside));
    for ((r, f), w) in out.iter().zip(&frames).zip(want) {
        assert_eq!((r.action, r.counter, &r.frame), (PASS, w, f));
    }
    // frames::udp6_with_two_ext is from [fd00::2]:4000 too, behind extension headers.
    let ext = frames::udp6_with_two_ext(4000, 40000);
    assert_unchanged(
        vec![ext],
        media_setup6(Side::Inside),
        PASS,
        "pass_not_sip_port",
    );
}

/// The userspace API: install writes both halves, seen() reads XDP's stamps, a binding
/// replacing another removes the stale half, remove() deletes both, list() shows them.
#[test]
fn media_maps_install_seen_replace_remove() {
    require_privileges!("media_maps_install_seen_replace_remove");
    Netns::new("mmaps").run(|| {
        let mut inside = SteeringProgram::load().unwrap();
        let outside = SteeringProgram::load().unwrap();
        inside.set_ports(&[5060]).unwrap();
        inside.set_side(Side::Inside).unwrap();
        inside.set_media_nat(true).unwrap();
        let m = MediaMaps::new(inside.media_map().unwrap(), outside.media_map().unwrap()).unwrap();
        let (i, e) = (sa(INTERNAL), sa(EXTERNAL));
        assert_eq!(m.seen(i, e), None);
        m.install(i, e).unwrap();
        assert_eq!(m.seen(i, e), Some(sipnat::xdp::media::MediaSeen::default()));
        // Two packets through the inside program stamp the inside half.
        for _ in 0..2 {
            inside
                .program()
                .test_run(TestRunOptions {
                    data_in: Some(&rtp(INTERNAL, REMOTE, 64)),
                    ..Default::default()
                })
                .unwrap();
        }
        let seen = m.seen(i, e).unwrap();
        assert_eq!(seen.packets, 2);
        assert!(seen.last_seen_ns > 0);
        // Re-installing keeps the stamps.
        m.install(i, e).unwrap();
        assert_eq!(m.seen(i, e).unwrap().packets, 2);
        let l = m.list().unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!((l[0].internal, l[0].external), (i, e));
        assert_eq!((l[0].packets_out, l[0].packets_in), (Some(2), Some(0)));
        // Same internal address, new external: the old external half is gone.
        let e2 = sa("203.0.113.1:30002");
        m.install(i, e2).unwrap();
        let l = m.list().unwrap();
        assert_eq!(l.len(), 1, "{l:?}");
        assert_eq!(l[0].external, e2);
        assert_eq!(
            m.seen(i, e).map(|s| s.packets),
            Some(0),
            "only the new halves"
        );
        // Mixed families are refused.
        assert!(m.install(i, sa("[2001:db8::1]:1")).is_err());
        assert!(!m.remove(i, e).unwrap(), "not this binding's halves");
        assert!(m.remove(i, e2).unwrap());
        assert!(m.list().unwrap().is_empty());
        assert_eq!(m.seen(i, e2), None);
    });
}
