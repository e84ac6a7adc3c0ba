//! The demo's network-namespace topology, removed on drop (also after Ctrl-C):
//!
//! ```text
//!  ua                          gw (sipnat)                              carrier
//!  ua0 10.0.0.2/24 ==veth== gwin 10.0.0.1/24 | gwout 198.51.100.1/24 ==veth== car0 198.51.100.2/24
//! ```
//! Traffic only flows between these namespaces. Processes started in them are tracked and
//! ended by PID.

use std::process::{Child, Command, Stdio};

use anyhow::Context as _;

use crate::shell::{self, output};

pub const UA: &str = "sndemo-ua";
pub const GW: &str = "sndemo-gw";
pub const CARRIER: &str = "sndemo-car";
pub const UA_IP: &str = "10.0.0.2";
pub const GW_IN_IP: &str = "10.0.0.1";
pub const GW_OUT_IP: &str = "198.51.100.1";
pub const CARRIER_IP: &str = "198.51.100.2";

pub struct Topology {
    children: Vec<(String, Child)>,
}

/// `ip netns exec NS argv...`
pub fn in_ns(ns: &str, argv: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(argv);
    c
}

fn must(ns: &str, argv: &[&str]) -> anyhow::Result<()> {
    let out = output(&mut in_ns(ns, argv))?;
    anyhow::ensure!(
        out.status.success(),
        "in {ns}: `{}` failed: {}",
        argv.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

impl Topology {
    pub fn up() -> anyhow::Result<Topology> {
        Topology::remove_leftovers();
        for ns in [UA, GW, CARRIER] {
            let out = output(Command::new("ip").args(["netns", "add", ns]))?;
            anyhow::ensure!(
                out.status.success(),
                "ip netns add {ns}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let topo = Topology {
            children: Vec::new(),
        };
        for ns in [UA, GW, CARRIER] {
            must(ns, &["ip", "link", "set", "lo", "up"])?;
            must(ns, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])?;
        }
        must(
            UA,
            &[
                "ip", "link", "add", "ua0", "type", "veth", "peer", "name", "gwin", "netns", GW,
            ],
        )?;
        must(
            CARRIER,
            &[
                "ip", "link", "add", "car0", "type", "veth", "peer", "name", "gwout", "netns", GW,
            ],
        )?;
        for (ns, ifname, addr) in [
            (UA, "ua0", "10.0.0.2/24"),
            (GW, "gwin", "10.0.0.1/24"),
            (GW, "gwout", "198.51.100.1/24"),
            (CARRIER, "car0", "198.51.100.2/24"),
        ] {
            must(ns, &["ip", "addr", "add", addr, "dev", ifname])?;
            must(ns, &["ip", "link", "set", ifname, "up"])?;
            // Real checksums on the wire (veth would otherwise leave them partial).
            must(ns, &["ethtool", "-K", ifname, "tx", "off"])?;
        }
        must(UA, &["ip", "route", "add", "default", "via", GW_IN_IP])?;
        must(
            CARRIER,
            &["ip", "route", "add", "10.0.0.0/24", "via", GW_OUT_IP],
        )?;
        must(GW, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        Ok(topo)
    }

    /// Starts `argv` inside `ns`; it is ended by PID on drop.
    pub fn spawn(&mut self, ns: &str, argv: &[&str], quiet: bool) -> anyhow::Result<u32> {
        let mut c = in_ns(ns, argv);
        c.stdin(Stdio::null());
        if quiet {
            c.stdout(Stdio::null()).stderr(Stdio::null());
        }
        self.start(ns, argv, &mut c)
    }

    fn start(&mut self, ns: &str, argv: &[&str], c: &mut Command) -> anyhow::Result<u32> {
        let child = c
            .spawn()
            .with_context(|| format!("starting {argv:?} in {ns}"))?;
        let pid = child.id();
        self.children.push((argv[0].to_string(), child));
        Ok(pid)
    }

    /// Starts `argv` inside `ns` with stdout and stderr appended to `log`; ended by PID.
    pub fn spawn_logged(
        &mut self,
        ns: &str,
        argv: &[&str],
        log: &std::path::Path,
    ) -> anyhow::Result<u32> {
        let f =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut c = in_ns(ns, argv);
        c.stdin(Stdio::null()).stdout(f.try_clone()?).stderr(f);
        self.start(ns, argv, &mut c)
    }

    /// Starts a tcpdump capture on `ifname` in `ns` writing `file`, and waits until it
    /// listens. Stop it with [`Topology::interrupt`] (SIGINT flushes the file).
    pub fn capture(
        &mut self,
        ns: &str,
        ifname: &str,
        file: &std::path::Path,
        filter: &str,
    ) -> anyhow::Result<u32> {
        let log = file.with_extension("log");
        let path = file.to_str().context("capture path")?;
        let mut argv = vec!["tcpdump", "-i", ifname, "-U", "-n", "-s", "0", "-w", path];
        argv.extend(filter.split_whitespace());
        let pid = self.spawn_logged(ns, &argv, &log)?;
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("listening on")
        {
            anyhow::ensure!(
                std::time::Instant::now() < end,
                "tcpdump on {ifname} did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(pid)
    }

    /// Ends every process we started: SIGTERM (sipnat detaches and unpins on it), then
    /// SIGKILL after 5 s.
    pub fn stop_all(&mut self) {
        for (_, c) in &self.children {
            // SAFETY: signal to our own child by PID.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
        for (_, c) in &mut self.children {
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                if std::time::Instant::now() > end {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        self.children.clear();
    }

    /// Sends SIGINT to a process we started and waits for it (up to 5 s, then SIGKILL).
    pub fn interrupt(&mut self, pid: u32) -> Option<std::process::ExitStatus> {
        let i = self.children.iter().position(|(_, c)| c.id() == pid)?;
        let (_, mut child) = self.children.remove(i);
        // SAFETY: signal to our own child by PID.
        unsafe { libc::kill(pid as i32, libc::SIGINT) };
        let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            if std::time::Instant::now() > end {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The exit status of a process we started, if it has exited.
    pub fn try_wait(&mut self, pid: u32) -> Option<std::process::ExitStatus> {
        let (_, c) = self.children.iter_mut().find(|(_, c)| c.id() == pid)?;
        c.try_wait().ok().flatten()
    }

    fn remove_leftovers() {
        if let Ok(out) = output(Command::new("ip").args(["netns", "list"])) {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let name = line.split_whitespace().next().unwrap_or("");
                if [UA, GW, CARRIER].contains(&name) {
                    println!("    removing leftover namespace {name}");
                    let _ = shell::succeeds(Command::new("ip").args(["netns", "del", name]));
                }
            }
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [UA, GW, CARRIER] {
            let _ = shell::succeeds(Command::new("ip").args(["netns", "del", ns]));
        }
    }
}
