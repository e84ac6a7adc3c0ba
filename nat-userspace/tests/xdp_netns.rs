//! The steering program on a real interface: a veth pair between two namespaces this test
//! creates, the program attached natively on one end, UDP sent from the other end.

mod common;

use std::{
    net::UdpSocket,
    time::{Duration, Instant},
};

use common::{
    netns::{veth_pair, Netns},
    xsk::RxSocket,
};
use nat_common::stat;
use sipnat::xdp::{AttachMode, AttachedMode, SteeringProgram, XdpError};

const N: usize = 20;

fn link_has_xdp(ns: &Netns, ifname: &str) -> bool {
    let out = ns.exec(&["ip", "-d", "link", "show", "dev", ifname]);
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

/// Waits until `cond` holds (polling), or panics after `timeout` with `what`.
fn await_condition(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Two namespaces joined by a veth pair on `NET.0/24`: `p0` (NET.1) in `peer`, `g0`
/// (NET.2) in `gw`.
fn peer_and_gateway(peer: &str, gw: &str, net: &str) -> (Netns, Netns) {
    let (peer, gw) = (Netns::new(peer), Netns::new(gw));
    let (p, g) = (format!("{net}.1/24"), format!("{net}.2/24"));
    veth_pair(&peer, "p0", &p, &gw, "g0", &g);
    (peer, gw)
}

/// Native XDP on a veth steers UDP to and from the SIP ports to the AF_XDP socket and
/// passes everything else to the kernel, counted per verdict; detaching leaves no program.
#[test]
fn veth_native_steers_sip_and_passes_the_rest() {
    crate::privileged_or_skip!();
    let (peer, gw) = peer_and_gateway("peer", "gw", "10.77.0");
    // A netns-local UDP listener on 5061 would be the kernel path; none needed: the kernel
    // answers port-unreachable, which is fine for counting.
    let peer_name = peer.name.clone();
    let (counters, steered_ports) = gw.run(move || {
        let mut prog = SteeringProgram::load().expect("load");
        prog.set_ports(&[5060]).unwrap();
        let mode = prog
            .attach("g0", AttachMode::Native)
            .expect("native attach on veth");
        assert_eq!(mode, AttachedMode::Native);
        let mut xsk = RxSocket::bind("g0");
        prog.xsk_map().unwrap().set(0, xsk.fd(), 0).unwrap();

        // A second program on the same interface is refused with a clear error.
        let mut other = SteeringProgram::load().unwrap();
        let err = other.attach("g0", AttachMode::Native).unwrap_err();
        assert!(matches!(err, XdpError::AlreadyAttached { .. }), "{err}");
        assert!(
            err.to_string().contains("already attached to `g0`"),
            "{err}"
        );
        drop(other);

        // Traffic from the peer namespace: N datagrams to 5060, N to 5061.
        let peer_ns = Netns::attach_existing(&peer_name);
        peer_ns.run(|| {
            let s = UdpSocket::bind("10.77.0.1:40000").unwrap();
            for i in 0..N {
                s.send_to(format!("OPTIONS {i}").as_bytes(), "10.77.0.2:5060")
                    .unwrap();
                s.send_to(format!("OPTIONS {i}").as_bytes(), "10.77.0.2:5061")
                    .unwrap();
            }
        });
        let mut frames = Vec::new();
        await_condition(
            "steered and passed counters",
            Duration::from_secs(10),
            || {
                frames.extend(xsk.drain());
                let c = prog.counters().unwrap();
                c[stat::REDIRECT_SIP as usize] >= N as u64
                    && c[stat::PASS_NOT_SIP_PORT as usize] >= N as u64
                    && frames.len() >= N
            },
        );
        let ports: Vec<u16> = frames
            .iter()
            .map(|f| u16::from_be_bytes([f[14 + 20 + 2], f[14 + 20 + 3]]))
            .collect();
        let counters = prog.counters().unwrap();
        drop(xsk);
        drop(prog); // detaches
        (counters, ports)
    });
    eprintln!(
        "counters: {}",
        stat::NAMES
            .iter()
            .zip(counters)
            .filter(|(_, v)| *v != 0)
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert_eq!(counters[stat::REDIRECT_SIP as usize], N as u64, "steered");
    assert_eq!(
        counters[stat::PASS_NOT_SIP_PORT as usize],
        N as u64,
        "passed"
    );
    assert_eq!(counters[stat::PASS_NO_SOCKET as usize], 0);
    assert_eq!(
        steered_ports,
        vec![5060; N],
        "the AF_XDP socket got exactly the SIP datagrams"
    );
    assert!(!link_has_xdp(&gw, "g0"), "XDP still attached after detach");
}

/// Attach errors are named (unknown interface, an MTU too large for native XDP), and
/// `auto` falls back to generic XDP where native is not available (loopback).
#[test]
fn attach_errors_and_generic_fallback() {
    crate::privileged_or_skip!();
    let (peer, gw) = peer_and_gateway("jumbo", "attach", "10.78.0");
    // A peer MTU too large for single-buffer XDP on veth: native attach is refused (ERANGE).
    peer.exec(&["ip", "link", "set", "p0", "mtu", "9000"]);
    gw.run(|| {
        let mut prog = SteeringProgram::load().unwrap();
        let err = prog.attach("nosuch0", AttachMode::Auto).unwrap_err();
        assert!(matches!(err, XdpError::UnknownInterface(_)), "{err}");
        assert!(
            err.to_string().contains("`nosuch0` does not exist"),
            "{err}"
        );
        let err = prog.attach("g0", AttachMode::Native).unwrap_err();
        assert!(matches!(err, XdpError::NativeRefused { .. }), "{err}");
        assert!(err.to_string().contains("MTU is too large"), "{err}");
        // Loopback has no native XDP: required native fails, auto falls back to generic.
        let err = prog.attach("lo", AttachMode::Native).unwrap_err();
        assert!(matches!(err, XdpError::NativeRefused { .. }), "{err}");
        assert_eq!(
            prog.attach("lo", AttachMode::Auto).unwrap(),
            AttachedMode::Generic
        );
        assert_eq!(prog.attached(), Some(("lo", AttachedMode::Generic)));
    });
    assert!(
        !link_has_xdp(&gw, "lo"),
        "detached when the program was dropped"
    );
    assert!(!link_has_xdp(&gw, "g0"));
}

#[test]
fn namespaces_are_removed_when_a_test_fails() {
    crate::privileged_or_skip!();
    let mut name = String::new();
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let ns = Netns::new("fail");
        name = ns.name.clone();
        panic!("simulated test failure");
    }));
    assert!(res.is_err());
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains(&name),
        "{name} left behind"
    );
}
