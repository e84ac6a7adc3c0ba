//! The control plane against a running daemon (topology of `tests/common/topo.rs`):
//! peer-credential checks, hostile requests, 1000 concurrent `stats` under traffic,
//! hitless external-address changes under traffic, Prometheus metrics.

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::{fs::PermissionsExt, net::UnixStream},
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use common::{
    sipcheck::rewritable_addresses,
    topo::{
        await_condition, link_stat, sipnat_bin, snmp, stun_server, Sipnat, Topo, CAR_IP, EXT_IP,
        UA_IP,
    },
    traffic::{blast_template, force_rcvbuf, paced},
};

/// Sends raw bytes on the control socket (optionally half-closing) and returns the reply.
fn raw_request(socket: &std::path::Path, bytes: &[u8], half_close: bool) -> String {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The daemon may answer (and close) before an oversized request is fully written.
    let _ = s.write_all(bytes);
    if half_close {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    line
}

/// The control socket refuses other users (mode, then peer credentials) and answers
/// malformed, oversized and unknown requests with errors, never a crash.
#[test]
fn peers_are_checked_and_hostile_requests_get_errors() {
    let (_s, _t, sipnat) = crate::gateway_or_skip!("ctl", "", "");
    let sock = sipnat.socket.clone();
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "control socket mode");
    // A non-root user: the socket's mode keeps it out...
    let as_nobody = |args: &[&str]| as_nobody(&sock, args);
    let out = as_nobody(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ...and when the mode lets it in, the peer-credential check refuses it.
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody(&["disable"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("permission denied") && err.contains("root"),
        "{err}"
    );
    assert!(
        sipnat
            .ctl(&["status"])
            .unwrap()
            .contains("steering:  enabled"),
        "nobody could not disable it"
    );
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Hostile requests: each answered with an error, none disturbs the daemon.
    for (what, bytes, half) in [
        ("garbage", b"garbage\n".to_vec(), false),
        (
            "unknown command",
            br#"{"v":1,"cmd":"rm-rf"}"#.iter().chain(b"\n").copied().collect(),
            false,
        ),
        (
            "wrong version",
            b"{\"v\":9,\"cmd\":\"stats\"}\n".to_vec(),
            false,
        ),
        ("not UTF-8", vec![0xff, 0xfe, b'\n'], false),
        ("oversized", vec![b'a'; 100_000], false),
        ("half-closed", br#"{"v":1,"cmd":"stats""#.to_vec(), true),
        (
            "bad address",
            b"{\"v\":1,\"cmd\":\"set-external-ip\",\"addr\":\"not-an-ip\"}\n".to_vec(),
            false,
        ),
    ] {
        let reply = raw_request(&sock, &bytes, half);
        let v: serde_json::Value =
            serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{what}: {e}: {reply:?}"));
        assert_eq!(v["ok"], false, "{what}: {reply}");
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: {reply}"
        );
    }
    // A client that connects and says nothing is timed out, not served forever.
    let mut idle = UnixStream::connect(&sock).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut buf = String::new();
    let _ = idle.read_to_string(&mut buf);
    assert!(buf.contains("timed out"), "{buf}");
    assert!(sipnat.ctl(&["status"]).is_ok(), "the daemon still answers");
    // A missing daemon: one clear line.
    let out = Command::new(sipnat_bin())
        .args(["--socket", "/nonexistent/sipnat.sock", "stats"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no sipnat daemon is running"), "{err}");
    assert_eq!(sipnat.stop(), Some(0));
}

/// Runs a paced flow of SIP INVITEs from the UA to a carrier receiver that checks every
/// datagram with `check`; returns (sent, received, bad).
fn with_traffic<T: Send + 'static>(
    t: &Topo,
    rate: u64,
    dur: Duration,
    check: fn(&str, &[u8]) -> bool,
    during: impl FnOnce() -> T,
) -> (u64, u64, u64, T) {
    let car = t.car.name.clone();
    let overflows_before = snmp(&t.car, "Udp", "RcvbufErrors");
    let stop = Arc::new(AtomicBool::new(false));
    let st = Arc::clone(&stop);
    let s = common::topo::udp_socket_in(&car, (CAR_IP, 5060));
    let rx = std::thread::spawn(move || {
        {
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            // This thread competes for the CPU with the load the test creates (1000
            // client threads, a real-time worker): a deep socket buffer keeps a late read
            // from being counted as a data-path loss. Socket overflows are reported.
            force_rcvbuf(&s, 16 << 20);
            let (mut got, mut bad, mut idle) = (0u64, 0u64, 0);
            let mut b = [0u8; 4096];
            loop {
                match s.recv_from(&mut b) {
                    Ok((n, from)) => {
                        idle = 0;
                        got += 1;
                        if !check(&from.ip().to_string(), &b[..n]) {
                            bad += 1;
                        }
                    }
                    Err(_) => {
                        idle += 1;
                        if st.load(Ordering::Relaxed) && idle > 3 {
                            return (got, bad);
                        }
                    }
                }
            }
        }
    });
    let template = blast_template();
    let ua = t.ua.name.clone();
    let tx = std::thread::spawn(move || {
        common::netns::Netns::attach_existing(&ua).run(move || paced(&template, rate, dur))
    });
    let r = during();
    let sent = tx.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let (got, bad) = rx.join().unwrap();
    let overflows = snmp(&t.car, "Udp", "RcvbufErrors") - overflows_before;
    if overflows > 0 {
        eprintln!(
            "receiver: {overflows} datagram(s) dropped by its own socket buffer (UDP RcvbufErrors)"
        );
    }
    (sent, got, bad, r)
}

/// Every rewritable field carries the packet's own IP source (one address, never a mix).
fn consistent(src: &str, payload: &[u8]) -> bool {
    (src == EXT_IP || src == "198.51.100.77")
        && rewritable_addresses(payload)
            .iter()
            .filter(|(f, _)| f != "request-uri")
            .all(|(_, a)| a.to_string() == src)
}

/// A thousand concurrent `stats` requests while SIP flows through: every answer is
/// consistent and the traffic is not disturbed.
#[test]
fn thousand_concurrent_stats_under_traffic_do_not_disturb_it() {
    let (_s, t, sipnat) = crate::gateway_or_skip!("ctl1000", "", "");
    let sock = sipnat.socket.clone();
    let (sent, got, bad, ok) =
        with_traffic(&t, 2000, Duration::from_secs(4), consistent, move || {
            std::thread::sleep(Duration::from_millis(500));
            let handles: Vec<_> = (0..1000)
                .map(|_| {
                    let sock = sock.clone();
                    std::thread::spawn(move || {
                        let reply = raw_request(&sock, b"{\"v\":1,\"cmd\":\"stats\"}\n", false);
                        serde_json::from_str::<serde_json::Value>(&reply)
                            .is_ok_and(|v| v["ok"] == true)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(false))
                .filter(|ok| *ok)
                .count()
        });
    eprintln!(
        "1000 concurrent stats: {ok} answered; traffic sent {sent}, received {got}, bad {bad}"
    );
    assert_eq!(ok, 1000, "every stats request answered");
    assert_eq!(bad, 0);
    // The 1000 client threads of this test share the two CPUs with the kernel's receive
    // processing of the veth pairs; the devices' own drop counters tell such losses
    // (outside sipnat) apart from the data path's.
    let veth_drops = link_stat(&t.ua, "ua0", "tx", "dropped")
        + link_stat(&t.gw, "gwin", "rx", "dropped")
        + link_stat(&t.gw, "gwout", "tx", "dropped")
        + link_stat(&t.car, "car0", "rx", "dropped");
    let stats = sipnat.stats();
    let drops_in = |v: &serde_json::Value| -> u64 {
        v.as_object()
            .expect("a counter object")
            .iter()
            .filter(|(k, _)| {
                k.starts_with("drop_") || k.ends_with("_ring_full") || *k == "rx_dropped"
            })
            .filter_map(|(_, v)| v.as_u64())
            .sum()
    };
    let mut sipnat_drops = drops_in(&stats["total"])
        + drops_in(&stats["xdp"]["inside"])
        + drops_in(&stats["xdp"]["outside"]);
    for w in stats["workers"].as_array().expect("workers") {
        sipnat_drops += drops_in(&w["xsk"]["inside"]) + drops_in(&w["xsk"]["outside"]);
    }
    assert_eq!(
        sipnat_drops, 0,
        "the data path dropped nothing while the control plane was busy: {stats}"
    );
    assert_eq!(
        got + veth_drops,
        sent,
        "every packet arrived or is in a device drop counter (veth drops {veth_drops}); sipnat stats: {stats}"
    );
    if veth_drops > 0 {
        eprintln!("{veth_drops} packet(s) dropped by the veth devices (kernel receive starved by the test's own threads), not by sipnat");
    }
    assert_eq!(sipnat.stop(), Some(0));
}

/// The external address changes under traffic: no packet is lost to the change and no
/// packet carries a mix of the old and the new address.
#[test]
fn external_address_changes_are_hitless_and_never_mixed() {
    let (_s, t, sipnat) = crate::gateway_or_skip!("extchg", "", "");
    // Warm the next hop so every packet takes the fast path.
    let tpl = blast_template();
    t.ua.run(move || paced(&tpl, 100, Duration::from_millis(300)));
    await_condition("next hop", Duration::from_secs(5), || {
        sipnat.stats()["nexthops"].as_u64() >= Some(1)
    });
    let sock = sipnat.socket.clone();
    let gw = t.gw.name.clone();
    let (sent, got, bad, changes) =
        with_traffic(&t, 2000, Duration::from_secs(5), consistent, move || {
            let mut n = 0;
            for i in 0..100 {
                let addr = if i % 2 == 0 { "198.51.100.77" } else { EXT_IP };
                let st = Command::new("ip")
                    .args(["netns", "exec", &gw, sipnat_bin(), "--socket"])
                    .arg(&sock)
                    .args(["set", "external-ip", addr])
                    .output()
                    .unwrap();
                if st.status.success() {
                    n += 1;
                }
                std::thread::sleep(Duration::from_millis(30));
            }
            n
        });
    eprintln!("100 external-address changes under traffic: {changes} applied; sent {sent}, received {got}, mixed/incorrect {bad}");
    assert_eq!(changes, 100);
    assert_eq!(bad, 0, "a packet mixed addresses");
    assert_eq!(got, sent, "a packet was lost across an address change");
    assert_eq!(sipnat.stop(), Some(0));
}

#[test]
fn metrics_are_scraped_and_move() {
    let (_s, t) = crate::topo_or_skip!("metrics");
    let cfg = t.config_full("gw", "", "metrics = \"127.0.0.1:9560\"", "");
    let sipnat = t.start_sipnat(&cfg);
    let scrape = || -> String {
        let out = t.gw.exec(&["curl", "-sf", "http://127.0.0.1:9560/metrics"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let value = |text: &str, series: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let before = scrape();
    assert!(
        before.contains("# TYPE sipnat_worker_sip_rewritten counter"),
        "{before}"
    );
    assert!(
        before.contains(&format!(
            "sipnat_external_address_info{{family=\"ipv4\",address=\"{EXT_IP}\""
        )),
        "{before}"
    );
    let tpl = blast_template();
    t.ua.run(move || paced(&tpl, 500, Duration::from_millis(600)));
    await_condition("metrics move", Duration::from_secs(5), || {
        let after = scrape();
        value(&after, "sipnat_worker_sip_rewritten_total{queue=\"0\"}") >= 250
            && value(&after, "sipnat_xdp_verdicts_total{interface=\"inside\",device=\"gwin\",verdict=\"redirect_sip\"}") >= 250
    });
    let out = t.gw.exec_any(&[
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "http://127.0.0.1:9560/other",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");
    assert_eq!(sipnat.stop(), Some(0));
}

/// `status`, `disable`, `enable` and `reload` from the command line, each with its effect.
#[test]
fn status_enable_disable_reload_from_the_cli() {
    let (_s, t, sipnat) = crate::gateway_or_skip!("cli", "", "");
    let cfg = t.dir.path("gw.toml");
    let status = sipnat.ctl(&["status"]).unwrap();
    for want in [
        "steering:  enabled",
        "gwin (XDP native)",
        "gwout (XDP native)",
        "workers:   1 (q0",
        &format!("external:  {EXT_IP} (source static {EXT_IP}"),
    ] {
        assert!(status.contains(want), "missing `{want}` in\n{status}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&sipnat.ctl(&["status", "--json"]).unwrap()).unwrap();
    assert_eq!(json["external"]["addresses"]["v4"], EXT_IP);
    // Disabled: SIP takes the kernel path (XDP pass_disabled), unrewritten.
    assert!(sipnat.ctl(&["disable"]).unwrap().contains("disabled"));
    let tpl = blast_template();
    t.ua.run(move || paced(&tpl, 200, Duration::from_millis(300)));
    await_condition("pass_disabled counted", Duration::from_secs(5), || {
        sipnat.stats()["xdp"]["inside"]["pass_disabled"].as_u64() >= Some(50)
    });
    assert_eq!(sipnat.counter("sip_rewritten"), 0);
    assert!(sipnat.ctl(&["enable"]).unwrap().contains("enabled"));
    // Reload: a new rule set is published without restarting the workers.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("sip_ports = [5060]", "sip_ports = [5060, 5080]");
    std::fs::write(&cfg, text).unwrap();
    assert!(
        sipnat.ctl(&["reload"]).unwrap().contains("reloaded"),
        "reload"
    );
    // A new static external address is applied and shown; keys that need a restart are
    // named in the reply instead of being ignored silently.
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        &format!("external_ip = \"{EXT_IP}\""),
        "external_ip = \"198.51.100.9\"",
    ) + "\n[datapath]\nbatch = 32\n";
    std::fs::write(&cfg, text).unwrap();
    let reply = sipnat.ctl(&["reload"]).unwrap();
    assert!(
        reply.contains("reloaded")
            && reply.contains("changed [datapath]")
            && reply.contains("next start"),
        "{reply}"
    );
    let status = sipnat.ctl(&["status"]).unwrap();
    assert!(
        status.contains("external:  198.51.100.9 (source static 198.51.100.9"),
        "{status}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&sipnat.ctl(&["status", "--json"]).unwrap()).unwrap();
    assert_eq!(json["external"]["addresses"]["v4"], "198.51.100.9");
    let bad = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("inside = \"gwin\"", "inside = \"gwx\"");
    std::fs::write(&cfg, bad).unwrap();
    let err = sipnat.ctl(&["reload"]).unwrap_err();
    assert!(err.contains("gwx"), "{err}");
    assert!(
        sipnat.ctl(&["status"]).is_ok(),
        "a failed reload leaves the daemon running"
    );
    let _ = UA_IP;
    assert_eq!(sipnat.stop(), Some(0));
}

#[test]
fn stun_source_discovers_the_external_address_and_enables_steering() {
    let (_s, mut t) = crate::topo_or_skip!("stun");
    let pidfile = t.dir.path("turn.pid");
    stun_server(&mut t.car, &[CAR_IP], pidfile.to_str().unwrap());
    // The config names no address: the gateway asks the carrier-side STUN server.
    let cfg = t.config("gw", "", "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        &format!("external_ip = \"{EXT_IP}\""),
        &format!("external_ip = \"stun:{CAR_IP}:3478\""),
    );
    std::fs::write(&cfg, text).unwrap();
    let sipnat = t.start_sipnat(&cfg);
    await_condition("STUN discovery", Duration::from_secs(15), || {
        let s = sipnat.ctl(&["status"]).unwrap_or_default();
        s.contains(&format!("external:  {EXT_IP} (source stun:{CAR_IP}:3478"))
            && s.contains("steering:  enabled")
    });
    // And it rewrites with it.
    let (sent, got, bad, _) = with_traffic(&t, 500, Duration::from_secs(1), consistent, || ());
    assert_eq!((got, bad), (sent, 0));
    assert!(sipnat.counter("sip_rewritten") >= sent);
    assert_eq!(sipnat.stop(), Some(0));
}

/// SIGHUP reloads the config file like `sipnat reload` (it used to terminate the daemon:
/// the default action of a signal with no handler). A file that cannot be applied is
/// logged and the daemon keeps running with the previous one.
#[test]
fn sighup_reloads_the_config_and_keeps_running() {
    let (_s, t, sipnat) = crate::gateway_or_skip!("hup", "", "");
    let cfg = t.dir.path("gw.toml");
    let pid = sipnat.pid();
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        &format!("external_ip = \"{EXT_IP}\""),
        "external_ip = \"198.51.100.9\"",
    );
    std::fs::write(&cfg, &text).unwrap();
    // SAFETY: a signal to the daemon this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGHUP) }, 0);
    await_condition("the reload on SIGHUP", Duration::from_secs(10), || {
        sipnat
            .ctl(&["status"])
            .is_ok_and(|s| s.contains("external:  198.51.100.9 (source static 198.51.100.9"))
    });
    // The same process answers: it was not restarted.
    let json: serde_json::Value =
        serde_json::from_str(&sipnat.ctl(&["status", "--json"]).unwrap()).unwrap();
    assert_eq!(json["pid"], pid, "{json}");
    // A file that cannot be applied: refused and logged, the daemon keeps running.
    std::fs::write(&cfg, text.replace("inside = \"gwin\"", "inside = \"gwx\"")).unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGHUP) }, 0);
    await_condition("the failed reload logged", Duration::from_secs(10), || {
        sipnat
            .log_text()
            .contains("SIGHUP: reload failed, still running with the previous config")
    });
    let status = sipnat.ctl(&["status"]).expect("still running");
    assert!(status.contains("external:  198.51.100.9"), "{status}");
    assert!(sipnat.log_text().contains("gwx"), "{}", sipnat.log_text());
    assert_eq!(sipnat.stop(), Some(0));
}

/// `set external-ip` refuses what cannot be an external address (exit 1, one clear line,
/// counted in `external.rejected`); a private or shared address only with
/// `nat.allow_private_external = true`, and then with a warning in the log.
#[test]
fn set_external_ip_refuses_unusable_and_private_addresses() {
    let (_s, t, sipnat) = crate::gateway_or_skip!("setext", "", "");
    let cfg = t.dir.path("gw.toml");
    let refused = [
        ("10.9.9.9", "a private address (RFC 1918)", true),
        ("100.64.0.1", "a shared address", true),
        ("fd00::1", "a unique local address", true),
        ("127.0.0.1", "a loopback address", false),
        ("0.0.0.0", "the unspecified address", false),
        ("224.0.0.1", "a multicast address", false),
        ("fe80::1", "a link-local address", false),
        ("::1", "the loopback address", false),
    ];
    for (addr, why, private) in refused {
        let err = sipnat
            .ctl(&["set", "external-ip", addr])
            .expect_err(&format!("{addr} was accepted"));
        assert!(
            err.starts_with(&format!("sipnat: refused: {addr} is {why}")),
            "{addr}: {err}"
        );
        assert_eq!(
            err.contains("nat.allow_private_external = true"),
            private,
            "{err}"
        );
    }
    let status = sipnat.ctl(&["status"]).unwrap();
    common::assert_contains(&status, &format!("external:  {EXT_IP} ("));
    assert_eq!(
        sipnat.stats()["external"]["rejected"].as_u64(),
        Some(refused.len() as u64)
    );
    let table = sipnat.ctl(&["stats"]).unwrap();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("external") && l.contains("rejected") && l.contains('8')),
        "{table}"
    );
    // Documentation (public) addresses are fine.
    sipnat.ctl(&["set", "external-ip", "203.0.113.7"]).unwrap();
    // Allowed: a private address is used, with a warning; loopback still never.
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        &format!("external_ip = \"{EXT_IP}\""),
        &format!("external_ip = \"{EXT_IP}\"\nallow_private_external = true"),
    );
    std::fs::write(&cfg, text).unwrap();
    assert!(sipnat.ctl(&["reload"]).unwrap().contains("reloaded"));
    let out = sipnat.ctl(&["set", "external-ip", "10.9.9.9"]).unwrap();
    assert!(out.contains("external address now 10.9.9.9"), "{out}");
    assert!(
        sipnat
            .log_text()
            .contains("10.9.9.9 is a private address (RFC 1918); used because nat.allow_private_external = true"),
        "{}",
        sipnat.log_text()
    );
    assert!(sipnat.ctl(&["set", "external-ip", "127.0.0.1"]).is_err());
    assert!(sipnat
        .ctl(&["status"])
        .unwrap()
        .contains("external:  10.9.9.9 ("));
    assert_eq!(
        sipnat.stats()["external"]["rejected"].as_u64(),
        Some(refused.len() as u64 + 1)
    );
    assert_eq!(sipnat.stop(), Some(0));
}

/// `queues = "all"` with RX queue counts that differ between the interfaces (a worker
/// serves one queue number on both sides: SIP hashed to a queue only one side has would
/// pass unrewritten), or a listed queue one interface lacks: `sipnat run` and
/// `sipnat check-config` refuse, saying why and what to do.
#[test]
fn queue_count_mismatch_refuses_to_start() {
    crate::privileged_or_skip!();
    let ns = common::netns::Netns::new("qmis");
    // inside: 2 RX queues; outside: 1.
    ns.exec(&[
        "ip",
        "link",
        "add",
        "qmin0",
        "numrxqueues",
        "2",
        "numtxqueues",
        "2",
        "type",
        "veth",
        "peer",
        "name",
        "qmin1",
        "numrxqueues",
        "2",
        "numtxqueues",
        "2",
    ]);
    ns.exec(&[
        "ip", "link", "add", "qmout0", "type", "veth", "peer", "name", "qmout1",
    ]);
    for i in ["qmin0", "qmin1", "qmout0", "qmout1"] {
        ns.exec(&["ip", "link", "set", i, "up"]);
    }
    let bpffs = common::topo::BpfFs::new("qmis");
    let dir = common::topo::TempDir::new("qmis");
    let write = |queues: &str| {
        let p = dir.path("q.toml");
        std::fs::write(
            &p,
            format!(
                "[interfaces]\ninside = \"qmin0\"\noutside = \"qmout0\"\n{queues}\n\n\
                 [nat]\nexternal_ip = \"{EXT_IP}\"\n\n[[nat.rule]]\ninternal = \"10.0.0.0/24\"\n\n\
                 [control]\nsocket = \"{}\"\nmetrics = \"\"\nbpffs = \"{}/sipnat\"\n",
                dir.path("q.sock").display(),
                bpffs.0.display()
            ),
        )
        .unwrap();
        p
    };
    let run = |args: &[&str], cfg: &std::path::Path| {
        let out = Command::new("timeout")
            .args(["20", "ip", "netns", "exec", &ns.name, sipnat_bin()])
            .args(args)
            .arg(cfg)
            .env("SIPNAT_LOG", "info")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for (queues, want) in [
        (
            "",
            "interfaces.queues is \"all\" but qmin0 has 2 RX queue(s) and qmout0 has 1: SIP arriving on the queues only qmin0 has would get no worker and leave unrewritten; give both the same number of queues (e.g. ethtool -L qmin0 combined 1), or list the queues to serve",
        ),
        (
            "queues = [0, 1]",
            "interfaces.queues contains queue 1, but qmout0 has only 1 RX queue(s) (0 to 0): list queues that both interfaces have",
        ),
    ] {
        let cfg = write(queues);
        let (code, err) = run(&["run", "-c"], &cfg);
        assert_eq!(code, Some(1), "sipnat run with `{queues}`: {err}");
        assert!(err.contains(want), "sipnat run with `{queues}`: {err}");
        assert!(!err.contains("ready"), "{err}");
        let (code, err) = run(&["check-config"], &cfg);
        assert_eq!(code, Some(1), "check-config with `{queues}`: {err}");
        assert!(err.contains(want), "check-config with `{queues}`: {err}");
    }
    assert!(bpffs.pinned().is_empty(), "{:?}", bpffs.pinned());
    // Queue 0 exists on both: fine (check-config only; nothing is attached).
    let (code, err) = run(&["check-config"], &write("queues = [0]"));
    assert_eq!(code, Some(0), "{err}");
}

/// Runs `sipnat status` (as root, in the gateway namespace) and returns its outcome and
/// how long it took.
/// `sipnat --socket SOCK ARGS` as user and group nobody (65534), no supplementary groups.
fn as_nobody(sock: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args([sipnat_bin(), "--socket"])
        .arg(sock)
        .args(args)
        .output()
        .unwrap()
}

fn timed_status(sipnat: &Sipnat) -> (Result<String, String>, Duration) {
    let t0 = std::time::Instant::now();
    let r = sipnat.ctl(&["status"]);
    (r, t0.elapsed())
}

/// CPU time (user + system, in clock ticks) a process has used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces, so split after its ')').
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after ')'.
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// Stops the daemon with SIGTERM; returns its exit code and how long that took.
fn timed_stop(sipnat: Sipnat) -> (Option<i32>, Duration) {
    let t0 = std::time::Instant::now();
    let code = sipnat.stop();
    (code, t0.elapsed())
}

/// Raises this process's soft open-file limit to at least `n` (within the hard limit).
fn raise_nofile(n: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < n {
            lim.rlim_cur = n.min(lim.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
    }
    assert!(lim.rlim_cur >= n, "RLIMIT_NOFILE hard limit below {n}");
}

/// 1,100 idle TCP connections to the metrics port (an unprivileged local user can open
/// them) used to exhaust a daemon with the common 1,024-file limit: its accept loop then
/// spun at 100 % of a core and `sipnat status` failed. The endpoint now serves at most 64
/// connections (more are closed at once), times idle ones out, and backs off on EMFILE:
/// root's `status` answers within 1 s, the daemon does not spin, SIGTERM stops it
/// promptly, and scrapes work again once the flood is gone.
#[test]
fn metrics_connection_flood_leaves_status_and_stop_working() {
    crate::privileged_or_skip!();
    let _s = common::serial();
    raise_nofile(4096);
    let t = Topo::new("mflood");
    let cfg = t.config_full("gw", "", "metrics = \"127.0.0.1:9561\"", "");
    let sipnat = Sipnat::start_with_nofile(
        &t.gw,
        &cfg,
        t.dir.path("gw.sock"),
        t.dir.path("gw.log"),
        Some(1024),
    );
    let conns = t.gw.run(|| {
        let addr: std::net::SocketAddr = "127.0.0.1:9561".parse().unwrap();
        (0..1100)
            .filter_map(|_| {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok()
            })
            .collect::<Vec<_>>()
    });
    eprintln!("{} idle metrics connections open", conns.len());
    std::thread::sleep(Duration::from_secs(1));
    let (st, took) = timed_status(&sipnat);
    assert!(
        st.is_ok() && took < Duration::from_secs(1),
        "status during the flood: {st:?} after {took:?}\n{}",
        sipnat.log_text()
    );
    let before = cpu_ticks(sipnat.pid());
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(sipnat.pid()) - before;
    assert!(
        used < 30,
        "the daemon used {used} ticks of CPU in 1 s while idle connections were held"
    );
    assert!(
        sipnat.log_text().contains("metrics: 64 connections open"),
        "the refusals are logged:\n{}",
        sipnat.log_text()
    );
    drop(conns);
    await_condition("a scrape after the flood", Duration::from_secs(5), || {
        let out =
            t.gw.exec_any(&["curl", "-sf", "-m", "2", "http://127.0.0.1:9561/metrics"]);
        String::from_utf8_lossy(&out.stdout).contains("sipnat_worker_sip_rewritten")
    });
    let (code, took) = timed_stop(sipnat);
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(3), "SIGTERM took {took:?}");
}

/// 300 control connections from a member of `[control] group` that send requests and
/// never read the replies used to take every connection slot (the daemon blocked writing
/// to them, forever): root's `status` failed with "Resource temporarily unavailable (os
/// error 11)" and SIGTERM waited for a free slot. Now writes time out, connections have a
/// lifetime, slots are kept for root, and a client beyond the limit gets a clear "busy".
#[test]
fn control_connections_that_never_read_do_not_lock_root_out() {
    let (_s, t) = crate::topo_or_skip!("ctlhog");
    let cfg = t.config_full("gw", "", "metrics = \"\"\ngroup = \"nogroup\"", "");
    let sipnat = t.start_sipnat(&cfg);
    let hog = common::hog::Hog::start(&sipnat.socket, 300, 400, 65534, 65534);
    eprintln!("{} hogging control connections open", hog.connected);
    assert!(hog.connected >= 64, "{}", hog.connected);
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..3 {
        let (st, took) = timed_status(&sipnat);
        assert!(
            st.as_ref().is_ok_and(|s| s.contains("steering:  enabled"))
                && took < Duration::from_secs(1),
            "root's status while the group's clients hog the socket: {st:?} after {took:?}"
        );
    }
    // A group member beyond the limit: one clear line, after waiting for a slot.
    let t0 = std::time::Instant::now();
    let out = as_nobody(&sipnat.socket, &["status"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("busy") && err.contains("connections") && err.lines().count() == 1,
        "{err}"
    );
    assert!(
        t0.elapsed() < sipnat::control::server::SLOT_WAIT + Duration::from_secs(1),
        "{:?}",
        t0.elapsed()
    );
    let (code, took) = timed_stop(sipnat);
    assert_eq!(code, Some(0));
    assert!(
        took < Duration::from_secs(3),
        "SIGTERM with hogged connections took {took:?}"
    );
    drop(hog);
}

/// A daemon that accepts the connection but never answers: the CLI says so in one line
/// instead of "Resource temporarily unavailable (os error 11)".
#[test]
fn control_client_reports_a_daemon_that_does_not_answer() {
    let dir = common::topo::TempDir::new("mute");
    let path = dir.path("mute.sock");
    let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let held = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        std::thread::sleep(Duration::from_secs(12));
        drop(s);
    });
    let out = Command::new(sipnat_bin())
        .arg("--socket")
        .arg(&path)
        .arg("status")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("did not answer within 10 s") && !err.contains("os error"),
        "{err}"
    );
    held.join().unwrap();
}

/// Started with no `[control] bpffs` under `ip netns exec` (which gives each command a
/// private mount namespace), the daemon mounts its own bpffs there: it and the pins end
/// with the process, so a crash detaches XDP and `on_failure` is not applied. The daemon
/// warns at start and `status` says so; with the test's bpffs (mounted in the host's
/// mount namespace) it reports that the failure mode survives a crash.
#[test]
fn pins_that_cannot_outlive_the_daemon_are_reported() {
    let (_s, t) = crate::topo_or_skip!("pinns");
    // The test's own bpffs, in the host's mount namespace: the pins outlive the daemon.
    let cfg = t.config("host", "", "");
    let sipnat = Sipnat::start(&t.gw, &cfg, t.dir.path("host.sock"), t.dir.path("host.log"));
    let json: serde_json::Value =
        serde_json::from_str(&sipnat.ctl(&["status", "--json"]).unwrap()).unwrap();
    assert_eq!(json["failure_mode_survives_crash"], true, "{json}");
    assert!(
        sipnat
            .ctl(&["status"])
            .unwrap()
            .contains("survives a crash"),
        "{}",
        sipnat.ctl(&["status"]).unwrap()
    );
    assert!(!sipnat.log_text().contains("cannot outlive"));
    assert_eq!(sipnat.stop(), Some(0));
    // No bpffs key: /sys/fs/bpf, mounted by sipnat in its private mount namespace.
    let cfg = t.config("private", "", "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(&format!("bpffs = \"{}/sipnat\"\n", t.bpffs.0.display()), "");
    assert!(!text.contains("bpffs"), "{text}");
    std::fs::write(&cfg, text).unwrap();
    let sipnat = Sipnat::start(
        &t.gw,
        &cfg,
        t.dir.path("private.sock"),
        t.dir.path("private.log"),
    );
    let log = sipnat.log_text();
    assert!(
        log.contains("WARN")
            && log.contains("/sys/fs/bpf/sipnat cannot outlive this process")
            && log.contains("on_failure = \"pass\" does not apply"),
        "{log}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&sipnat.ctl(&["status", "--json"]).unwrap()).unwrap();
    assert_eq!(json["failure_mode_survives_crash"], false, "{json}");
    assert!(
        json["failure_mode_note"]
            .as_str()
            .is_some_and(|n| n.contains("mount namespace")),
        "{json}"
    );
    let text = sipnat.ctl(&["status"]).unwrap();
    assert!(
        text.contains("WARNING") && text.contains("on_failure does not survive a crash"),
        "{text}"
    );
    assert_eq!(sipnat.stop(), Some(0));
}

/// `reload` used to read the config file on the control runtime: with a FIFO as the
/// config path (nothing writing to it) `status` and the metrics stalled until a writer
/// came. It reads off the runtime now, for at most 5 s: `status` answers meanwhile, a
/// writer within the time completes the reload, none fails it with a clear message, and
/// the daemon still stops promptly.
#[test]
fn reload_from_a_fifo_does_not_block_status() {
    let (_s, t, sipnat) = crate::gateway_or_skip!("fifo", "", "");
    let cfg = t.dir.path("gw.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        &format!("external_ip = \"{EXT_IP}\""),
        "external_ip = \"198.51.100.9\"",
    );
    std::fs::remove_file(&cfg).unwrap();
    let c = std::ffi::CString::new(cfg.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // A reload that waits on the FIFO; `status` answers within a second meanwhile.
    let pending_reload = |sipnat: &Sipnat| {
        let pending = Command::new("ip")
            .args(["netns", "exec", &t.gw.name, sipnat_bin(), "--socket"])
            .arg(&sipnat.socket)
            .arg("reload")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let (st, took) = timed_status(sipnat);
        assert!(
            st.is_ok() && took < Duration::from_secs(1),
            "status while reload waits on a FIFO: {st:?} after {took:?}"
        );
        pending
    };
    // 1. A writer comes while the reload waits: status answers meanwhile, then the
    //    reload completes with what was written.
    let pending = pending_reload(&sipnat);
    std::fs::write(&cfg, &text).unwrap();
    let out = pending.wait_with_output().unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("reloaded"),
        "{out:?}"
    );
    assert!(sipnat
        .ctl(&["status"])
        .unwrap()
        .contains("external:  198.51.100.9"));
    // 2. No writer: the reload gives up after 5 s, and a second one meanwhile is told
    //    the first is still reading.
    let pending = pending_reload(&sipnat);
    let err = sipnat.ctl(&["reload"]).unwrap_err();
    assert!(err.contains("still reading"), "{err}");
    let out = pending.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not read within 5 s") && err.lines().count() == 1,
        "{err}"
    );
    assert!(sipnat.ctl(&["status"]).is_ok());
    // The abandoned read is still waiting on the FIFO: SIGTERM does not wait for it.
    let (code, took) = timed_stop(sipnat);
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(3), "SIGTERM took {took:?}");
}
