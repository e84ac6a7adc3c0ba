//! The systemd unit (`packaging/sipnat.service`): it parses (`systemd-analyze verify` when
//! installed, a key check always), it grants exactly the capabilities the daemon checks
//! (`sipnat::sys::caps::DAEMON`), the daemon runs and rewrites with exactly that set, each
//! missing capability is named, and the log is journald-friendly.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use common::topo::{call_carrier, sipnat_bin, sipp_uas, Launch, Sipnat, Topo, CAR_IP};
use sipnat::sys::caps;

fn unit_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../packaging/sipnat.service")
}

/// `key → values` per section (repeated keys accumulate; comments and blanks skipped).
type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn parse_unit(text: &str) -> Unit {
    let mut unit = Unit::new();
    let mut section = String::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
            unit.entry(section.clone()).or_default();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: not KEY=VALUE: {line}", n + 1));
        assert!(!section.is_empty(), "line {}: key outside a section", n + 1);
        unit.get_mut(&section)
            .unwrap()
            .entry(k.trim().to_string())
            .or_default()
            .push(v.trim().to_string());
    }
    unit
}

fn unit() -> Unit {
    parse_unit(&std::fs::read_to_string(unit_path()).expect("packaging/sipnat.service"))
}

fn service<'a>(u: &'a Unit, key: &str) -> &'a str {
    let v = u["Service"]
        .get(key)
        .unwrap_or_else(|| panic!("[Service] {key}= missing"));
    assert_eq!(v.len(), 1, "[Service] {key}= given {} times", v.len());
    &v[0]
}

fn words(s: &str) -> BTreeSet<String> {
    s.split_whitespace().map(str::to_string).collect()
}

#[test]
fn unit_has_the_keys_the_daemon_relies_on() {
    let u = unit();
    assert_eq!(
        u.keys().map(String::as_str).collect::<Vec<_>>(),
        ["Install", "Service", "Unit"]
    );
    let exec = service(&u, "ExecStart");
    assert_eq!(
        exec,
        format!(
            "/usr/local/bin/sipnat run -c {}",
            sipnat::config::DEFAULT_PATH
        )
    );
    assert_eq!(
        service(&u, "ExecReload"),
        format!(
            "/usr/local/bin/sipnat reload -c {}",
            sipnat::config::DEFAULT_PATH
        )
    );
    assert_eq!(service(&u, "KillSignal"), "SIGTERM");
    // A handover (SIGUSR2) exits 0 and relies on being started again.
    assert_eq!(service(&u, "Restart"), "always");
    assert_eq!(service(&u, "LimitMEMLOCK"), "infinity");
    // Well above the daemon's bounded use of descriptors (and the common default 1024).
    assert!(
        service(&u, "LimitNOFILE").parse::<u64>().unwrap() >= 4096,
        "LimitNOFILE"
    );
    // The default control socket lives in the runtime directory.
    let socket = Path::new(sipnat::config::DEFAULT_SOCKET);
    assert_eq!(
        Path::new("/run").join(service(&u, "RuntimeDirectory")),
        socket.parent().unwrap()
    );
    // The default pin directory is writable under ProtectSystem=strict.
    assert_eq!(service(&u, "ProtectSystem"), "strict");
    assert!(words(service(&u, "ReadWritePaths"))
        .iter()
        .any(|p| Path::new(sipnat::config::DEFAULT_BPFFS).starts_with(p)));
    assert_eq!(service(&u, "NoNewPrivileges"), "yes");
    // The socket families the daemon opens (control socket, netlink, raw IP/ICMP, metrics
    // and STUN, AF_XDP) — and no others.
    assert_eq!(
        words(service(&u, "RestrictAddressFamilies")),
        words("AF_UNIX AF_NETLINK AF_INET AF_INET6 AF_XDP")
    );
    // It works on the host's interfaces and reads its peers' /proc entries.
    for absent in ["PrivateNetwork", "ProtectProc", "User", "DynamicUser"] {
        assert!(
            !u["Service"].contains_key(absent),
            "{absent}= would break the daemon"
        );
    }
    assert_eq!(u["Install"]["WantedBy"], ["multi-user.target"]);
}

#[test]
fn unit_grants_exactly_the_capabilities_the_daemon_checks() {
    let u = unit();
    let wanted: BTreeSet<String> = caps::DAEMON.iter().map(|c| c.name.to_string()).collect();
    assert_eq!(words(service(&u, "CapabilityBoundingSet")), wanted);
    assert_eq!(words(service(&u, "AmbientCapabilities")), wanted);
}

/// `systemd-analyze verify` on the unit, with ExecStart/ExecReload pointing at the binary
/// under test (verify checks that they exist). It reports problems on stderr but exits 0
/// for most of them, so any output is a failure.
#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!(
            "note: systemd-analyze is not installed: the unit gets the key checks only \
             (unit_has_the_keys_the_daemon_relies_on)"
        );
        return;
    };
    assert!(out.status.success());
    let dir = common::topo::TempDir::new("unit");
    let text = std::fs::read_to_string(unit_path())
        .unwrap()
        .replace("/usr/local/bin/sipnat", sipnat_bin());
    let path = dir.path("sipnat.service");
    std::fs::write(&path, text).unwrap();
    common::assert_systemd_verifies(&path);
}

/// `setpriv` arguments that leave exactly `keep` (bounding set; as uid 0 the effective set
/// after exec is the bounding set).
fn only_caps(keep: &[caps::Capability]) -> Vec<String> {
    let mut bounding = String::from("-all");
    for c in keep {
        bounding.push_str(&format!(
            ",+{}",
            c.name.trim_start_matches("CAP_").to_lowercase()
        ));
    }
    vec![
        "setpriv".into(),
        format!("--bounding-set={bounding}"),
        "--inh-caps=-all".into(),
        "--".into(),
    ]
}

#[test]
fn each_missing_capability_is_named() {
    crate::privileged_or_skip!();
    for without in caps::DAEMON {
        let keep: Vec<_> = caps::DAEMON
            .iter()
            .copied()
            .filter(|c| c != without)
            .collect();
        let argv = only_caps(&keep);
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .args([sipnat_bin(), "run", "-c", "/nonexistent/sipnat.toml"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "without {}: {err}",
            without.name
        );
        assert!(
            err.contains(&format!("(missing: {})", without.name))
                && err.contains(&caps::list(caps::DAEMON)),
            "without {}: {err}",
            without.name
        );
    }
    // The XDP diagnostics need the XDP subset only: the kernel loads the program with it.
    let argv = only_caps(caps::XDP);
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .args([sipnat_bin(), "xdp", "info"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sipnat xdp info with {}: {}",
        caps::list(caps::XDP),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The daemon as the unit runs it: exactly the unit's capabilities, the service's
/// environment, stderr to `log` (as the journal when `journal`).
fn daemon(t: &Topo, config: &Path, log: &Path, journal: bool) -> Sipnat {
    let how = Launch {
        wrapper: only_caps(caps::DAEMON),
        service_env: true,
        journal,
        ..Launch::default()
    };
    Sipnat::launch(
        &t.gw,
        config,
        t.dir.path("gw.sock"),
        log.to_path_buf(),
        &how,
    )
}

fn effective_caps(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("CapEff:")).unwrap();
    u64::from_str_radix(line["CapEff:".len()..].trim(), 16).unwrap()
}

/// The unit's `LimitMEMLOCK=infinity` for this process (and so the daemon it starts);
/// false when the hard limit cannot be raised (no CAP_SYS_RESOURCE, e.g. in a container).
fn unlimited_memlock() -> bool {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a pointer to a local.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) == 0 }
}

#[test]
fn daemon_rewrites_calls_with_exactly_the_units_capabilities() {
    crate::privileged_or_skip!();
    let mut t = Topo::new("caps");
    // The UMEM is charged to RLIMIT_MEMLOCK (no CAP_IPC_LOCK): the unit lifts the limit.
    // Where this test cannot, a 2 MiB UMEM fits the usual 8 MiB default instead.
    let datapath = if unlimited_memlock() {
        String::new()
    } else {
        eprintln!(
            "note: cannot lift RLIMIT_MEMLOCK here (no CAP_SYS_RESOURCE): the daemon runs \
             with a 2 MiB UMEM under the current limit instead of LimitMEMLOCK=infinity"
        );
        "[datapath]\nframes = 512\nring_size = 64\n".to_string()
    };
    let cfg = t.config("gw", "", &datapath);
    let log = t.dir.path("journal.log");
    let d = daemon(&t, &cfg, &log, true);
    let want = caps::DAEMON.iter().fold(0u64, |m, c| m | (1 << c.bit));
    assert_eq!(
        effective_caps(d.pid()),
        want,
        "the daemon runs with exactly {}",
        caps::list(caps::DAEMON)
    );
    sipp_uas(&mut t.car, CAR_IP, &["-sn", "uas"]);
    let (code, out) = call_carrier(&t, "uac_rtcp.xml", (5, 5, 30), &["-recv_timeout", "5000"]);
    assert_eq!(code, 0, "sipp calls through sipnat: {out}");
    // INVITE, ACK, BYE out and 100/180/200/200 back, per call; the first packets to an
    // unresolved neighbour went through the raw sockets of the slow path.
    assert!(d.counter("sip_rewritten") >= 5 * 3, "rewritten");
    assert!(d.counter("slow_neighbor_unknown") >= 1, "slow path used");
    assert_eq!(d.counter("slow_send_error"), 0, "raw sockets work");
    assert_eq!(d.stop(), Some(0), "clean stop");
    let attached = String::from_utf8_lossy(&t.gw.exec(&["ip", "-d", "link", "show"]).stdout)
        .contains("prog/xdp");
    assert!(!attached, "XDP left attached after SIGTERM");
    assert!(t.bpffs.pinned().is_empty(), "{:?}", t.bpffs.pinned());

    // Under systemd: a syslog priority on every line, no colours, no timestamps.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("<6> INFO"), "{text}");
    for line in text.lines().filter(|l| !l.is_empty()) {
        assert!(
            line.len() > 3 && line.starts_with('<') && line.as_bytes()[2] == b'>',
            "no priority: {line:?}"
        );
        assert_no_colour_or_time(line);
    }

    // Not a terminal and not journald (a file): plain lines, no colours, no timestamps.
    let log = t.dir.path("plain.log");
    let d = daemon(&t, &cfg, &log, false);
    assert_eq!(d.stop(), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.lines().any(|l| l.starts_with(" INFO ")), "{text}");
    for line in text.lines() {
        assert!(
            !line.starts_with('<'),
            "priority without journald: {line:?}"
        );
        assert_no_colour_or_time(line);
    }
}

fn assert_no_colour_or_time(line: &str) {
    assert!(!line.contains('\x1b'), "ANSI escape: {line:?}");
    let b = line.as_bytes();
    let stamped = b.windows(11).any(|w| {
        w[..4].iter().all(u8::is_ascii_digit) && w[4] == b'-' && w[7] == b'-' && w[10] == b'T'
    });
    assert!(!stamped, "timestamp: {line:?}");
}
