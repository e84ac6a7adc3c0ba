//! `cargo xtask demo`: setup, build, a three-namespace topology, the sipnat daemon on the
//! gateway, a short sipp call flow from the UA to the carrier (captured on both sides, one
//! INVITE shown before/after as a diff), the `sipnat stats` table, then a short
//! `sipnat loadtest` through the gateway with its report (JSON and SVG kept in
//! `<target>/demo/loadtest-report/`). Everything else is removed at the end
//! — namespaces, processes (by PID), the demo's private bpffs with sipnat's pins — also
//! after Ctrl-C and on error.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use crate::{
    setup, shell,
    topo::{self, Topology},
};

/// The demo's scratch directory and private bpffs; removed (unmounted) on drop.
struct Scratch {
    dir: PathBuf,
    bpffs: PathBuf,
    mounted: bool,
}

impl Scratch {
    fn new() -> anyhow::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("sipnat-demo-{}", std::process::id()));
        let bpffs = dir.join("bpffs");
        std::fs::create_dir_all(&bpffs).with_context(|| format!("creating {}", dir.display()))?;
        let mut s = Scratch {
            dir,
            bpffs,
            mounted: false,
        };
        let ok = shell::succeeds(
            Command::new("mount")
                .args(["-t", "bpf", "bpf"])
                .arg(&s.bpffs),
        );
        anyhow::ensure!(ok, "cannot mount a bpffs on {}", s.bpffs.display());
        s.mounted = true;
        Ok(s)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Files left pinned in the demo's bpffs.
    fn pinned(&self) -> Vec<PathBuf> {
        fn walk(d: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if !(p.parent() == Some(d) && p.extension().is_some_and(|x| x == "debug")) {
                    out.push(p);
                }
            }
        }
        let mut v = Vec::new();
        walk(&self.bpffs, &mut v);
        v
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.mounted {
            let _ = shell::succeeds(Command::new("umount").arg(&self.bpffs));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn check_stop(stop: &AtomicBool) -> anyhow::Result<()> {
    if stop.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

pub fn run(seconds: u64) -> anyhow::Result<()> {
    if !shell::is_root() {
        bail!("the demo creates network namespaces and attaches XDP: run it as root");
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    setup::run(true)?;
    crate::build()?;
    let started = Instant::now();
    // CARGO_TARGET_DIR too (cargo builds there).
    let sipnat = crate::deb::target_dir().join("release/sipnat");
    let sipnat = sipnat.to_str().context("path")?.to_string();

    shell::step("topology: ua (10.0.0.2) -- [gwin | gw | gwout] -- carrier (198.51.100.2)");
    let scratch = Scratch::new()?;
    let mut t = Topology::up()?;
    let res = demo(&mut t, &scratch, &sipnat, seconds, &stop);

    shell::step("cleanup");
    // Everything we started ends by PID (sipnat with SIGTERM: it detaches and unpins).
    t.stop_all();
    let cfg = scratch.path("sipnat.toml");
    if cfg.exists() {
        let _ = shell::succeeds(&mut topo::in_ns(
            topo::GW,
            &[
                &sipnat,
                "run",
                "--cleanup",
                "-c",
                cfg.to_str().unwrap_or(""),
            ],
        ));
    }
    let attached = ["gwin", "gwout"].iter().any(|i| {
        shell::output(&mut topo::in_ns(topo::GW, &["ip", "-d", "link", "show", i]))
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("prog/xdp"))
    }) || shell::output(&mut topo::in_ns(
        topo::CARRIER,
        &["ip", "-d", "link", "show", "car0"],
    ))
    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("prog/xdp"));
    let pins = scratch.pinned();
    drop(t);
    drop(scratch);
    let ns = shell::output(Command::new("ip").args(["netns", "list"]))?;
    let ours = String::from_utf8_lossy(&ns.stdout)
        .lines()
        .filter(|l| l.starts_with("sndemo-"))
        .count();
    println!(
        "    XDP attached after stop: {}",
        if attached { "YES (bug)" } else { "no" }
    );
    println!("    pins left: {}", pins.len());
    println!("    demo namespaces left: {ours}");
    println!(
        "    demo wall time (after build): {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if attached || !pins.is_empty() || ours > 0 {
        bail!("the demo left state behind: {pins:?}");
    }
    res
}

fn demo(
    t: &mut Topology,
    scratch: &Scratch,
    sipnat: &str,
    seconds: u64,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let sock = scratch.path("sipnat.sock");
    let cfg = scratch.path("sipnat.toml");
    std::fs::write(
        &cfg,
        format!(
            "[interfaces]\ninside = \"gwin\"\noutside = \"gwout\"\nsip_ports = [5060]\n\n\
             [nat]\nexternal_ip = \"{ext}\"\n\n[[nat.rule]]\ninternal = \"10.0.0.0/24\"\n\n\
             [control]\nsocket = \"{sock}\"\nmetrics = \"\"\nbpffs = \"{pins}/sipnat\"\n",
            ext = topo::GW_OUT_IP,
            sock = sock.display(),
            pins = scratch.bpffs.display()
        ),
    )?;
    shell::step("sipnat run: XDP steering on gwin/gwout, AF_XDP workers");
    let log = scratch.path("sipnat.log");
    let daemon = t.spawn_logged(
        topo::GW,
        &[sipnat, "run", "-c", cfg.to_str().unwrap_or("")],
        &log,
    )?;
    let sock_s = sock.to_str().unwrap_or("").to_string();
    let ctl = |args: &[&str]| -> anyhow::Result<std::process::Output> {
        let mut argv = vec![sipnat, "--socket", &sock_s];
        argv.extend_from_slice(args);
        shell::output(&mut topo::in_ns(topo::GW, &argv))
    };
    wait_for(
        "sipnat to answer on its control socket",
        stop,
        Duration::from_secs(20),
        || ctl(&["status"]).is_ok_and(|o| o.status.success()),
    )
    .with_context(|| std::fs::read_to_string(&log).unwrap_or_default())?;
    let _ = daemon;
    shell::run(&mut topo::in_ns(
        topo::GW,
        &[sipnat, "--socket", &sock_s, "status"],
    ))?;
    shell::run(Command::new("bpftool").args(["prog", "show", "name", "sipnat_steer"]))?;
    check_stop(stop)?;

    shell::step(&format!(
        "SIP calls for ~{seconds} s: sipp ua -> carrier, captured on both sides"
    ));
    let (inside, outside) = sip_calls(t, scratch, seconds, stop)?;

    shell::step("one INVITE before (ua0) and after (car0) sipnat");
    match invite_diff(&inside, &outside) {
        Ok(d) => print!("{d}"),
        Err(e) => println!("    (no INVITE pair to show: {e:#})"),
    }

    shell::step("sipnat stats");
    shell::run(&mut topo::in_ns(
        topo::GW,
        &[sipnat, "--socket", &sock_s, "stats"],
    ))?;
    check_stop(stop)?;

    shell::step(
        "sipnat loadtest: 3 s at 50 kpps, 256 flows, ua0 -> sipnat -> car0, every packet verified",
    );
    loadtest(sipnat, stop)?;
    shell::run(&mut topo::in_ns(
        topo::GW,
        &[sipnat, "--socket", &sock_s, "stats"],
    ))?;
    Ok(())
}

/// Calls from the UA to the carrier through sipnat for about `seconds`, captured on both
/// sides: the two capture files.
fn sip_calls(
    t: &mut Topology,
    scratch: &Scratch,
    seconds: u64,
    stop: &AtomicBool,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let inside = scratch.path("inside.pcap");
    let outside = scratch.path("outside.pcap");
    let cap_in = t.capture(topo::UA, "ua0", &inside, "udp port 5060")?;
    let cap_out = t.capture(topo::CARRIER, "car0", &outside, "udp port 5060")?;
    let uas = t.spawn(
        topo::CARRIER,
        &[
            "sipp",
            "-sn",
            "uas",
            "-i",
            topo::CARRIER_IP,
            "-p",
            "5060",
            "-nostdin",
        ],
        true,
    )?;
    let rate = 10u64;
    let calls = (rate * seconds).max(1).to_string();
    let target = format!("{}:5060", topo::CARRIER_IP);
    let uac = t.spawn(
        topo::UA,
        &[
            "sipp",
            "-sn",
            "uac",
            &target,
            "-i",
            topo::UA_IP,
            "-p",
            "5060",
            "-m",
            &calls,
            "-r",
            &rate.to_string(),
            "-timeout",
            "30s",
            "-nostdin",
        ],
        true,
    )?;
    let start = Instant::now();
    let mut uac_status = None;
    while start.elapsed() < Duration::from_secs(seconds + 30) {
        check_stop(stop)?;
        if let Some(st) = t.try_wait(uac) {
            uac_status = Some(st);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    t.interrupt(cap_in);
    t.interrupt(cap_out);
    t.interrupt(uas);
    match uac_status {
        Some(st) if st.success() => {
            println!("    sipp: all {calls} calls completed through sipnat")
        }
        Some(st) => println!("    sipp: some calls failed ({st})"),
        None => println!("    sipp: did not finish in time"),
    }
    Ok((inside, outside))
}

/// `sipnat loadtest` through the gateway, every packet verified; the report is kept.
fn loadtest(sipnat: &str, stop: &AtomicBool) -> anyhow::Result<()> {
    // Kept after the demo (the scratch directory is removed): the JSON and the SVG plot.
    let report_dir = crate::deb::target_dir().join("demo/loadtest-report");
    let report_s = report_dir.to_string_lossy().into_owned();
    let st = topo::in_ns(
        topo::UA,
        &[
            sipnat,
            "loadtest",
            "--interface",
            "ua0",
            "--src-ip",
            topo::UA_IP,
            "--dst-ip",
            topo::CARRIER_IP,
            "--rate",
            "50000",
            "--duration",
            "3",
            "--flows",
            "256",
            "--rx-interface",
            "car0",
            "--rx-netns",
            topo::CARRIER,
            "--expect-external",
            topo::GW_OUT_IP,
            // media NAT is on (the default): SDP ports are an allocated pair of its range
            "--expect-media-range",
            "30000-39999",
            "--report",
            &report_s,
        ],
    )
    .stdin(Stdio::null())
    .status()
    .context("running sipnat loadtest")?;
    check_stop(stop)?;
    match st.code() {
        Some(0) => println!("    loadtest: every received packet verified correct"),
        Some(3) => bail!("loadtest: sipnat produced incorrect packets (see above)"),
        _ => bail!("loadtest failed ({st})"),
    }
    for f in ["report.json", "report.svg"] {
        let p = report_dir.join(f);
        anyhow::ensure!(
            p.is_file(),
            "sipnat loadtest --report wrote no {}",
            p.display()
        );
    }
    println!(
        "    load-test report (kept): {0}/report.json (numbers, per-second samples), \
         {0}/report.svg (rate and latency over time; open it in a browser)",
        report_dir.display()
    );
    Ok(())
}

/// Hex (`aa:bb` or `aabb`) to bytes.
fn unhex(s: &str) -> Vec<u8> {
    let h: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..h.len() / 2)
        .filter_map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// `(ip.src, Call-ID, payload)` of the INVITEs in a capture.
fn invites(pcap: &Path) -> anyhow::Result<Vec<(String, String, String)>> {
    let out = shell::output(Command::new("tshark").arg("-r").arg(pcap).args([
        "-o",
        "sip.tls.port:0",
        "-Y",
        "sip.Method == \"INVITE\"",
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-e",
        "ip.src",
        "-e",
        "sip.Call-ID",
        "-e",
        "udp.payload",
    ]))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split('|');
            let src = f.next()?.to_string();
            let cid = f.next()?.to_string();
            let payload = String::from_utf8_lossy(&unhex(f.next()?)).into_owned();
            Some((src, cid, payload))
        })
        .collect())
}

/// The first INVITE seen inside and the same INVITE (by Call-ID) outside, as a compact
/// diff of the lines that changed.
fn invite_diff(inside: &Path, outside: &Path) -> anyhow::Result<String> {
    let ins = invites(inside)?;
    let outs = invites(outside)?;
    let (src_in, cid, before) = ins.first().context("no INVITE captured on ua0")?;
    let (src_out, _, after) = outs
        .iter()
        .find(|(_, c, _)| c == cid)
        .context("that INVITE was not captured on car0")?;
    let mut s = format!("    Call-ID {cid}\n    IP source: {src_in} -> {src_out}\n");
    let (b, a): (Vec<&str>, Vec<&str>) = (
        before.split("\r\n").collect(),
        after.split("\r\n").collect(),
    );
    let mut changed = 0;
    for i in 0..b.len().max(a.len()) {
        let (x, y) = (
            b.get(i).copied().unwrap_or(""),
            a.get(i).copied().unwrap_or(""),
        );
        if x != y {
            changed += 1;
            s += &format!("    - {x}\n    + {y}\n");
        }
    }
    s += &format!(
        "    ({changed} of {} lines changed; {} -> {} bytes)\n",
        b.len(),
        before.len(),
        after.len()
    );
    Ok(s)
}

fn wait_for(
    what: &str,
    stop: &AtomicBool,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let end = Instant::now() + timeout;
    while !cond() {
        if stop.load(Ordering::Relaxed) {
            bail!("interrupted while waiting for {what}");
        }
        if Instant::now() > end {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
