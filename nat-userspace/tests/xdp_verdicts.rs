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
    if !privileged(name) {
        return;
    }
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
    vlan_ipv4_sip: frames::vlan_udp4(100, 40000, 5060), std_setup() => REDIRECT, stat::REDIRECT_SIP;
    qinq_ipv6_sip: frames::qinq_udp6(200, 100, 40000, 5060), std_setup() => REDIRECT, stat::REDIRECT_SIP;
    three_vlan_tags_unparsed: frames::triple_vlan_udp4(40000, 5060), std_setup() => PASS, stat::PASS_UNPARSED;
    ipv4_options_sip: frames::udp4_with_options(40000, 5060), std_setup() => REDIRECT, stat::REDIRECT_SIP;
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
    if !privileged("sip_port_added_and_removed_at_runtime") {
        return;
    }
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
    if !privileged("port_set_limit") {
        return;
    }
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
    if !privileged(name) {
        return;
    }
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
