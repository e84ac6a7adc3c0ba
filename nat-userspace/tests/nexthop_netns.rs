//! The next-hop resolver against a real kernel: three namespaces this test creates,
//!
//! ```text
//!   A (nhA0 10.90.0.1) ── (nhG0 10.90.0.2) GW (nhG1 10.91.0.2) ── (nhC0 10.91.0.1) C
//!                                          GW (nhG2 10.92.0.2) ── (nhC2 10.92.0.1) C
//! ```
//!
//! GW's default route is via 10.91.0.1 on nhG1. The resolver runs inside GW with nhG0 and
//! nhG1 allowed. Packets are only ever sent between these namespaces (to 10.90.0.1 and
//! 10.91.0.1, to make the kernel resolve their MACs); 8.8.8.8 is only looked up, never
//! sent to.

mod common;

use std::{
    net::{IpAddr, UdpSocket},
    sync::{atomic::AtomicBool, atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use common::netns::{veth_pair, Netns};
use sipnat::{
    datapath::nexthop::{self, Hop, NextHops},
    snapshot::Published,
    sys::if_index,
};

const DEADLINE: Duration = Duration::from_secs(3);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn parse_mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap_or_else(|e| panic!("MAC {s}: {e}")))
        .collect();
    v.try_into()
        .unwrap_or_else(|_| panic!("MAC {s}: not 6 bytes"))
}

/// The MAC of `ifname` inside `ns`, from `ip -j link show`.
fn mac_of(ns: &str, ifname: &str) -> [u8; 6] {
    let out = common::netns::run_ok(std::process::Command::new("ip").args([
        "netns", "exec", ns, "ip", "-j", "link", "show", "dev", ifname,
    ]));
    let json = String::from_utf8_lossy(&out.stdout);
    let key = "\"address\":\"";
    let start = json
        .find(key)
        .unwrap_or_else(|| panic!("no address in {json}"))
        + key.len();
    let end = start
        + json[start..]
            .find('"')
            .unwrap_or_else(|| panic!("bad JSON {json}"));
    parse_mac(&json[start..end])
}

/// `ip route replace default via VIA dev DEV` in the namespace `ns`.
fn default_route(ns: &str, via: &str, dev: &str) {
    ip_in(
        ns,
        &["ip", "route", "replace", "default", "via", via, "dev", dev],
    );
}

fn ip_in(ns: &str, argv: &[&str]) {
    common::netns::run_ok(
        std::process::Command::new("ip")
            .args(["netns", "exec", ns])
            .args(argv),
    );
}

fn show(h: &NextHops) -> String {
    let mut v: Vec<String> = h.iter().map(|(d, hop)| format!("{d} -> {hop:?}")).collect();
    v.sort();
    format!("[{}]", v.join(", "))
}

/// Polls the snapshot until `cond` holds, or panics after [`DEADLINE`].
fn await_hops(p: &Published<NextHops>, what: &str, cond: impl Fn(&NextHops) -> bool) {
    let end = Instant::now() + DEADLINE;
    loop {
        let h = p.load();
        if cond(&h) {
            return;
        }
        assert!(
            Instant::now() < end,
            "timed out waiting for {what}; next hops: {}",
            show(&h)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Stops the resolver also when an assertion fails.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The next-hop resolver follows route and neighbour changes, and keeps out next hops on
/// interfaces it is not allowed to use.
#[test]
fn resolver_follows_routes_and_neighbours() {
    crate::privileged_or_skip!();
    let a = Netns::new("nhA");
    let gw = Netns::new("nhGW");
    let c = Netns::new("nhC");
    veth_pair(&a, "nhA0", "10.90.0.1/24", &gw, "nhG0", "10.90.0.2/24");
    veth_pair(&gw, "nhG1", "10.91.0.2/24", &c, "nhC0", "10.91.0.1/24");
    // Not allowed: 10.92.0.0/24 is routed via nhG2.
    veth_pair(&gw, "nhG2", "10.92.0.2/24", &c, "nhC2", "10.92.0.1/24");
    gw.exec(&[
        "ip",
        "route",
        "add",
        "default",
        "via",
        "10.91.0.1",
        "dev",
        "nhG1",
    ]);
    // A resolvable neighbour on the forbidden interface: only `allowed` keeps it out.
    gw.exec(&[
        "ip",
        "neigh",
        "replace",
        "10.92.0.1",
        "dev",
        "nhG2",
        "lladdr",
        "02:00:00:00:00:92",
        "nud",
        "permanent",
    ]);
    // IPv6 on nhG0 (the helpers disable it), with a permanent neighbour.
    gw.exec(&["sysctl", "-qw", "net.ipv6.conf.nhG0.disable_ipv6=0"]);
    gw.exec(&[
        "ip",
        "-6",
        "addr",
        "add",
        "fd00:90::2/64",
        "dev",
        "nhG0",
        "nodad",
    ]);
    gw.exec(&[
        "ip",
        "-6",
        "neigh",
        "replace",
        "fd00:90::1",
        "dev",
        "nhG0",
        "lladdr",
        "02:00:00:00:00:66",
        "nud",
        "permanent",
    ]);

    let a_mac = mac_of(&a.name, "nhA0");
    let c_mac = mac_of(&c.name, "nhC0");
    let g0_mac = mac_of(&gw.name, "nhG0");
    let g1_mac = mac_of(&gw.name, "nhG1");
    let g2_mac = mac_of(&gw.name, "nhG2");
    let gw_name = gw.name.clone();

    gw.run(move || {
        let g0 = if_index("nhG0").expect("nhG0");
        let g1 = if_index("nhG1").expect("nhG1");
        let g2 = if_index("nhG2").expect("nhG2");
        let published = Arc::new(Published::new(NextHops::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let _guard = StopOnDrop(Arc::clone(&stop));
        let (handle, thread) =
            nexthop::spawn(vec![g0, g1], Arc::clone(&published), Arc::clone(&stop)).expect("spawn");

        // Make the kernel resolve the two neighbours (ARP), as the slow path would.
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.send_to(b"x", "10.90.0.1:9").unwrap();
        s.send_to(b"x", "10.91.0.1:9").unwrap();

        let direct = ip("10.90.0.1");
        let remote = ip("8.8.8.8");
        let forbidden = ip("10.92.0.1");
        let v6 = ip("fd00:90::1");
        for d in [direct, remote, forbidden, v6] {
            assert!(handle.request(d));
            assert!(
                handle.request(d),
                "a repeated request is accepted (filtered)"
            );
        }

        let hop_direct = Hop {
            ifindex: g0,
            src_mac: g0_mac,
            dst_mac: a_mac,
            mtu: 1500,
        };
        let hop_remote = Hop {
            ifindex: g1,
            src_mac: g1_mac,
            dst_mac: c_mac,
            mtu: 1500,
        };
        await_hops(&published, "direct, via-gateway and IPv6 hops", |h| {
            h.get(direct) == Some(&hop_direct)
                && h.get(remote) == Some(&hop_remote)
                && h.get(v6).map(|h| (h.ifindex, h.dst_mac))
                    == Some((g0, parse_mac("02:00:00:00:00:66")))
        });
        let h = published.load();
        assert!(
            h.get(forbidden).is_none(),
            "hop via nhG2 (ifindex {g2}) published: {}",
            show(&h)
        );
        assert_eq!(h.len(), 3, "{}", show(&h));

        // A route change moves 8.8.8.8 to the direct neighbour on nhG0, then back.
        default_route(&gw_name, "10.90.0.1", "nhG0");
        await_hops(&published, "8.8.8.8 via 10.90.0.1 on nhG0", |h| {
            h.get(remote)
                == Some(&Hop {
                    ifindex: g0,
                    src_mac: g0_mac,
                    dst_mac: a_mac,
                    mtu: 1500,
                })
        });
        default_route(&gw_name, "10.91.0.1", "nhG1");
        await_hops(&published, "8.8.8.8 back via 10.91.0.1", |h| {
            h.get(remote) == Some(&hop_remote)
        });

        // The neighbour changes its MAC.
        ip_in(
            &gw_name,
            &[
                "ip",
                "neigh",
                "replace",
                "10.90.0.1",
                "dev",
                "nhG0",
                "lladdr",
                "02:00:00:00:00:99",
                "nud",
                "permanent",
            ],
        );
        let new_mac = parse_mac("02:00:00:00:00:99");
        await_hops(&published, "the replaced neighbour MAC", |h| {
            h.get(direct)
                == Some(&Hop {
                    dst_mac: new_mac,
                    ..hop_direct
                })
        });

        // The neighbour disappears: so does the hop (the others stay).
        ip_in(
            &gw_name,
            &["ip", "neigh", "del", "10.90.0.1", "dev", "nhG0"],
        );
        await_hops(&published, "the hop of the deleted neighbour to go", |h| {
            h.get(direct).is_none() && h.get(remote) == Some(&hop_remote)
        });

        // The forbidden destination was never published (checked once more after all the
        // refreshes above), and the thread stops promptly.
        assert!(published.load().get(forbidden).is_none());
        let t = Instant::now();
        stop.store(true, Ordering::Release);
        thread.join().expect("resolver thread panicked");
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "stop took {:?}",
            t.elapsed()
        );

        // Control: with nhG2 allowed, the same destination does resolve (so the absence
        // above is the allow-list's doing).
        let published = Arc::new(Published::new(NextHops::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let _guard = StopOnDrop(Arc::clone(&stop));
        let (handle, thread) =
            nexthop::spawn(vec![g0, g1, g2], Arc::clone(&published), Arc::clone(&stop))
                .expect("spawn");
        assert!(handle.request(forbidden));
        await_hops(&published, "10.92.0.1 with nhG2 allowed", |h| {
            h.get(forbidden)
                == Some(&Hop {
                    ifindex: g2,
                    src_mac: g2_mac,
                    dst_mac: parse_mac("02:00:00:00:00:92"),
                    mtu: 1500,
                })
        });
        stop.store(true, Ordering::Release);
        thread.join().expect("resolver thread panicked");
    });
    drop((a, gw, c));
}
