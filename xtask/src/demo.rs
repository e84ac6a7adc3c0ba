//! `cargo xtask demo`: setup, build, a three-namespace topology, sipnat's XDP steering on
//! the gateway's two interfaces, real SIP calls (sipp) from the UA to the carrier, and the
//! live verdict counters. Everything is removed at the end, also after Ctrl-C.

use std::{
    process::Command,
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
    let sipnat = shell::workspace_root().join("target/release/sipnat");
    let sipnat = sipnat.to_str().context("path")?;

    shell::step("topology: ua (10.0.0.2) -- [gwin | gw | gwout] -- carrier (198.51.100.2)");
    let mut t = Topology::up()?;

    shell::step("sipnat: XDP steering attached to gwin and gwout (no workers yet: fail-open)");
    let watch = t.spawn(
        topo::GW,
        &[
            sipnat,
            "xdp",
            "watch",
            "-i",
            "gwin",
            "-i",
            "gwout",
            "--port",
            "5060",
            "--interval",
            "2",
        ],
        false,
    )?;
    wait_for(
        "the XDP program to be attached",
        &stop,
        Duration::from_secs(10),
        || {
            let out = shell::output(&mut topo::in_ns(
                topo::GW,
                &["ip", "-d", "link", "show", "gwout"],
            ));
            out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("prog/xdp"))
        },
    )?;
    shell::run(Command::new("bpftool").args(["prog", "show", "name", "sipnat_steer"]))?;

    shell::step(&format!(
        "traffic for {seconds} s: sipp calls ua -> carrier, plus non-SIP UDP"
    ));
    t.spawn(
        topo::CARRIER,
        &[
            "sipp",
            "-sn",
            "uas",
            "-i",
            topo::CARRIER_IP,
            "-p",
            "5060",
            "-bg",
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
            "-trace_err",
        ],
        true,
    )?;
    // Non-SIP UDP next to the calls: a port the steering passes to the kernel.
    for _ in 0..20 {
        let _ = shell::succeeds(&mut topo::in_ns(
            topo::UA,
            &[
                "bash",
                "-c",
                &format!("echo ping > /dev/udp/{}/9", topo::CARRIER_IP),
            ],
        ));
    }
    let start = Instant::now();
    let mut uac_status = None;
    while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(seconds + 30) {
        if let Some(st) = t.try_wait(uac) {
            uac_status = Some(st);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(2100)); // one more counter refresh on screen

    shell::step("stopping sipnat (SIGINT): it detaches the program");
    t.interrupt(watch);
    let attached = shell::output(&mut topo::in_ns(topo::GW, &["ip", "-d", "link", "show"]))?;
    let left = String::from_utf8_lossy(&attached.stdout).contains("prog/xdp");
    drop(t);
    shell::step("result");
    match uac_status {
        Some(st) if st.success() => {
            println!("    sipp: all {calls} calls completed through the gateway")
        }
        Some(st) => println!("    sipp: calls failed ({st}); see the counters above"),
        None => println!("    sipp: interrupted"),
    }
    println!(
        "    XDP attached after stop: {}",
        if left { "YES (bug)" } else { "no" }
    );
    let ns = shell::output(Command::new("ip").args(["netns", "list"]))?;
    let ours = String::from_utf8_lossy(&ns.stdout)
        .lines()
        .filter(|l| l.starts_with("sndemo-"))
        .count();
    println!("    demo namespaces left: {ours}");
    if left || ours > 0 {
        bail!("the demo left state behind");
    }
    if stop.load(Ordering::Relaxed) {
        println!("    interrupted: cleaned up");
    }
    Ok(())
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
