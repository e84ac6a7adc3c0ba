//! Media NAT in XDP end to end on the veth topology (tests/common/topo.rs): a running
//! daemon, a static binding added with `sipnat xdp media add`, UDP from the inside host
//! leaves translated (captured on the carrier's link), the carrier's replies reach the
//! internal host, `redirect_media` counts every packet, and the kernel's forwarding did
//! not see them.

mod common;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use common::topo::{sipnat_bin, tshark_fields, udp_socket_in, Sipnat, Topo, CAR_IP, EXT_IP};

const N: usize = 50;

/// The gateway namespace's `Ip: ForwDatagrams` (packets the kernel forwarded).
fn forwarded(gw: &common::netns::Netns) -> u64 {
    let out = gw.exec(&["cat", "/proc/net/snmp"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines().filter(|l| l.starts_with("Ip:"));
    let (head, vals) = (lines.next().unwrap(), lines.next().unwrap());
    let i = head
        .split_whitespace()
        .position(|h| h == "ForwDatagrams")
        .unwrap();
    vals.split_whitespace().nth(i).unwrap().parse().unwrap()
}

/// What the redirect needs on the veth topology: the receiving ends in NAPI mode (GRO
/// on, see docs/deploy.md; the gateway's own ends run sipnat's program) and the gateway's
/// neighbours known, so that the FIB lookup in XDP succeeds from the first packet
/// (without, the first packets are translated and passed to the kernel to resolve).
fn redirect_ready(t: &Topo) {
    t.ua.exec(&["ethtool", "-K", "ua0", "gro", "on"]);
    t.car.exec(&["ethtool", "-K", "car0", "gro", "on"]);
    for (ns, ifname, ip, gw_if) in [
        (&t.car, "car0", CAR_IP, "gwout"),
        (&t.ua, "ua0", "10.0.0.2", "gwin"),
    ] {
        let mac = ns.exec(&["cat", &format!("/sys/class/net/{ifname}/address")]);
        let mac = String::from_utf8_lossy(&mac.stdout).trim().to_string();
        t.gw.exec(&[
            "ip",
            "neigh",
            "replace",
            ip,
            "lladdr",
            &mac,
            "dev",
            gw_if,
            "nud",
            "permanent",
        ]);
    }
}

/// The test topology's config turns the media NAT off unless a test configures [media].
const MEDIA_ON: &str = "[media]\nenabled = true\n";

/// sipnat on the gateway with `[media]` on, once XDP redirects reach the far side.
fn start_with_media(t: &Topo) -> (std::path::PathBuf, Sipnat) {
    let cfg = t.config("gw", "", MEDIA_ON);
    let sipnat = t.start_sipnat(&cfg);
    redirect_ready(t);
    (cfg, sipnat)
}

/// `sipnat xdp media ARGS -c CFG` in the gateway namespace.
fn media_cli(t: &Topo, cfg: &std::path::Path, args: &[&str]) -> std::process::Output {
    let cfg = cfg.to_str().unwrap();
    let mut argv = vec![sipnat_bin(), "xdp", "media", args[0], "-c", cfg];
    argv.extend_from_slice(&args[1..]);
    t.gw.exec(&argv)
}

#[test]
fn media_binding_translates_both_ways_in_xdp() {
    let (_turn, t) = crate::topo_or_skip!("mediax");
    let (cfg, sipnat) = start_with_media(&t);

    let internal: SocketAddr = "10.0.0.2:4000".parse().unwrap();
    let external: SocketAddr = format!("{EXT_IP}:30000").parse().unwrap();
    let add = media_cli(
        &t,
        &cfg,
        &["add", &internal.to_string(), &external.to_string()],
    );
    assert!(
        String::from_utf8_lossy(&add.stdout).contains("installed 1"),
        "{add:?}"
    );

    let (outside_cap, inside_cap) = t.capture_both("udp");
    let forwarded_before = forwarded(&t.gw);
    let ua = udp_socket_in(&t.ua.name, ("10.0.0.2", 4000));
    let car = udp_socket_in(&t.car.name, (CAR_IP, 40000));
    for s in [&ua, &car] {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    let mut buf = [0u8; 2048];
    for i in 0..N {
        let payload = format!("rtp-{i:04}-{}", "x".repeat(160));
        ua.send_to(payload.as_bytes(), (CAR_IP, 40000)).unwrap();
        let (n, from) = car.recv_from(&mut buf).expect("carrier receives");
        assert_eq!(&buf[..n], payload.as_bytes());
        assert_eq!(from, external, "the carrier sees the external address");
        car.send_to(&buf[..n], from).unwrap();
        let (n, from) = ua
            .recv_from(&mut buf)
            .expect("internal host receives the reply");
        assert_eq!(&buf[..n], payload.as_bytes());
        assert_eq!(
            from,
            format!("{CAR_IP}:40000").parse::<SocketAddr>().unwrap()
        );
    }
    // The counters are read after the last packet was received: all are counted.
    let st = sipnat.stats();
    assert_eq!(
        st["xdp"]["inside"]["redirect_media"].as_u64(),
        Some(N as u64),
        "{}",
        st["xdp"]
    );
    assert_eq!(
        st["xdp"]["outside"]["redirect_media"].as_u64(),
        Some(N as u64)
    );
    assert_eq!(
        forwarded(&t.gw) - forwarded_before,
        0,
        "the kernel forwarded none of them"
    );
    // The binding's stamps, through the CLI.
    let list = media_cli(&t, &cfg, &["list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v[0]["packets_out"].as_u64(), Some(N as u64));
    assert_eq!(v[0]["packets_in"].as_u64(), Some(N as u64));

    let outside = outside_cap.finish(&t);
    let inside = inside_cap.finish(&t);
    // On the carrier's link: only the external address, never the internal one.
    let out_rows = tshark_fields(
        &outside,
        "udp.port == 30000 || udp.port == 4000",
        &["ip.src", "udp.srcport", "ip.dst", "udp.dstport"],
    );
    let rows: Vec<&str> = out_rows.lines().collect();
    assert_eq!(rows.len(), 2 * N, "{out_rows}");
    for r in &rows {
        assert!(
            *r == format!("{EXT_IP}|30000|{CAR_IP}|40000")
                || *r == format!("{CAR_IP}|40000|{EXT_IP}|30000"),
            "{r}"
        );
    }
    assert!(!out_rows.contains("10.0.0.2"));
    let in_rows = tshark_fields(&inside, "udp.port == 4000", &["ip.src", "ip.dst"]);
    assert_eq!(in_rows.lines().count(), 2 * N, "{in_rows}");
    assert!(!in_rows.contains(EXT_IP), "{in_rows}");

    // Deleted: the next packet takes the kernel's path, untranslated.
    let del = media_cli(
        &t,
        &cfg,
        &["del", &internal.to_string(), &external.to_string()],
    );
    assert!(String::from_utf8_lossy(&del.stdout).contains("removed 1"));
    ua.send_to(b"after", (CAR_IP, 40000)).unwrap();
    let (n, from) = car.recv_from(&mut buf).expect("forwarded by the kernel");
    assert_eq!((&buf[..n], from), (&b"after"[..], internal));
    let end = Instant::now() + Duration::from_secs(5);
    while forwarded(&t.gw) == forwarded_before {
        assert!(Instant::now() < end, "the kernel never forwarded it");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(sipnat);
}

/// The bindings live in the pinned maps: across a hitless restart (SIGUSR2, a new daemon
/// adopting the pins) media keeps being translated — also in the gap, when no daemon runs
/// at all — and the counts continue.
#[test]
fn media_binding_survives_a_hitless_restart() {
    let (_turn, t) = crate::topo_or_skip!("mediar");
    let (cfg, a) = start_with_media(&t);
    let add = media_cli(
        &t,
        &cfg,
        &["add", "10.0.0.2:4000", &format!("{EXT_IP}:30000")],
    );
    assert!(add.status.success());
    let external: SocketAddr = format!("{EXT_IP}:30000").parse().unwrap();
    let ua = udp_socket_in(&t.ua.name, ("10.0.0.2", 4000));
    let car = udp_socket_in(&t.car.name, (CAR_IP, 40000));
    car.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let burst = |n: usize| {
        let mut buf = [0u8; 512];
        for i in 0..n {
            ua.send_to(format!("m{i}").as_bytes(), (CAR_IP, 40000))
                .unwrap();
            let (_, from) = car.recv_from(&mut buf).expect("carrier receives");
            assert_eq!(from, external);
        }
    };
    burst(5);
    assert_eq!(a.signal_and_wait(libc::SIGUSR2), Some(0), "handover exit");
    // No daemon: the pinned program still translates.
    burst(5);
    let b = Sipnat::start(&t.gw, &cfg, t.dir.path("gw.sock"), t.dir.path("b.log"));
    b.assert_adopted("gwin");
    burst(5);
    assert_eq!(
        b.stats()["xdp"]["inside"]["redirect_media"].as_u64(),
        Some(15)
    );
    let list = media_cli(&t, &cfg, &["list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v[0]["packets_out"].as_u64(), Some(15), "{v}");
    drop(b);
}
