//! The end-to-end topology, sipnat as a process inside it, packet captures and sipp:
//!
//! ```text
//!  ua                         gw (sipnat)                               carrier
//!  ua0 10.0.0.2/24 ==veth== gwin 10.0.0.1/24 | gwout 198.51.100.1/24 ==veth== car0 198.51.100.2/24
//! ```
//! Everything is created in namespaces the test owns and removed on drop, also on failure.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::netns::Netns;

pub const UA_IP: &str = "10.0.0.2";
pub const GW_IN_IP: &str = "10.0.0.1";
pub const EXT_IP: &str = "198.51.100.1";
pub const CAR_IP: &str = "198.51.100.2";
pub const UA_IP6: &str = "fd00:88::2";
pub const GW_IN_IP6: &str = "fd00:88::1";
pub const EXT_IP6: &str = "2001:db8:100::1";
pub const CAR_IP6: &str = "2001:db8:100::2";

pub fn sipnat_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sipnat")
}

pub fn scenario(name: &str) -> String {
    format!("{}/tests/scenarios/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A new directory `sipnat-TAG-PID-N` in the temp directory, unique in this process.
fn unique_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("sipnat-{tag}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        TempDir(unique_dir(tag))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("SIPNAT_KEEP_TEST_FILES").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub struct Topo {
    pub ua: Netns,
    pub gw: Netns,
    pub car: Netns,
    /// A bpffs of the test's own (in the root mount namespace, so every `ip netns exec`
    /// session sees the same pins): sipnat's pins survive its restarts like on a host.
    pub bpffs: BpfFs,
    pub dir: TempDir,
}

/// A bpffs mounted on a temp directory, unmounted (dropping its pins) on drop.
pub struct BpfFs(pub PathBuf);

impl BpfFs {
    pub fn new(tag: &str) -> BpfFs {
        let p = unique_dir(&format!("bpffs-{tag}"));
        let st = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&p)
            .status()
            .unwrap();
        assert!(st.success(), "mount bpffs on {}", p.display());
        BpfFs(p)
    }

    /// Files pinned under it (recursively; the kernel's own `*.debug` iterators at the
    /// root excluded), for "nothing left pinned" checks.
    pub fn pinned(&self) -> Vec<PathBuf> {
        fn walk(d: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push(p);
                }
            }
        }
        let mut v = Vec::new();
        walk(&self.0, &mut v);
        v.retain(|p| {
            !(p.parent() == Some(self.0.as_path()) && p.extension().is_some_and(|e| e == "debug"))
        });
        v
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

impl Topo {
    /// Runs `sipnat loadtest` in the UA namespace from `ua` to `car`, receiving on car0 in
    /// the carrier namespace and expecting the external address `ext`; `args` are the
    /// further options, separated by spaces.
    pub fn loadtest(&self, [ua, car, ext]: [&str; 3], args: &str) -> std::process::Output {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ua.name, sipnat_bin(), "loadtest"])
            .args(["--interface", "ua0", "--src-ip", ua, "--dst-ip", car])
            .args(["--rx-interface", "car0", "--rx-netns", &self.car.name])
            .args(["--expect-external", ext, "--json", "--no-progress"])
            // The fixture's daemons run media NAT on (the default range).
            .args(["--expect-media-range", "30000-39999"])
            .args(args.split_whitespace());
        c.output().expect("run sipnat loadtest")
    }

    pub fn new(tag: &str) -> Topo {
        Topo::with_queues(tag, 1)
    }

    /// The same topology with `queues` RX and TX queues on every veth (both ends). A veth
    /// delivers a frame sent on its TX queue `q` to its peer's RX queue `q`, so a sender
    /// picks the queue the gateway receives on (AF_XDP: the socket's queue; a UDP socket:
    /// the kernel's hash of its flow).
    pub fn with_queues(tag: &str, queues: u32) -> Topo {
        let ua = Netns::new(&format!("{tag}-ua"));
        let gw = Netns::new(&format!("{tag}-gw"));
        let car = Netns::new(&format!("{tag}-car"));
        let q = queues.to_string();
        // One queue: the kernel's default veth (one real RX and TX queue).
        let qargs: &[&str] = if queues > 1 {
            &["numrxqueues", q.as_str(), "numtxqueues", q.as_str()]
        } else {
            &[]
        };
        for (ns, a, b) in [(&ua, "ua0", "gwin"), (&car, "car0", "gwout")] {
            let mut argv = vec!["ip", "link", "add", a];
            argv.extend(qargs);
            argv.extend(["type", "veth", "peer", "name", b]);
            argv.extend(qargs);
            argv.extend(["netns", gw.name.as_str()]);
            ns.exec(&argv);
        }
        for (ns, ifname, addr) in [
            (&ua, "ua0", "10.0.0.2/24"),
            (&gw, "gwin", "10.0.0.1/24"),
            (&gw, "gwout", "198.51.100.1/24"),
            (&car, "car0", "198.51.100.2/24"),
        ] {
            ns.exec(&["ip", "addr", "add", addr, "dev", ifname]);
            ns.exec(&["ip", "link", "set", ifname, "up"]);
            // Real checksums on the wire: veth would otherwise leave them partial.
            ns.exec(&["ethtool", "-K", ifname, "tx", "off"]);
        }
        ua.exec(&["ip", "route", "add", "default", "via", GW_IN_IP]);
        // The carrier can reach the private side only through the gateway (used when
        // sipnat is down and the kernel forwards unrewritten traffic).
        car.exec(&["ip", "route", "add", "10.0.0.0/24", "via", EXT_IP]);
        gw.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        Topo {
            ua,
            gw,
            car,
            bpffs: BpfFs::new(tag),
            dir: TempDir::new(tag),
        }
    }

    /// Adds the IPv6 side of the topology: `fd00:88::/64` inside (UA `::2`, gateway `::1`),
    /// `2001:db8:100::/64` outside (gateway `::1`, carrier `::2`), routes both ways,
    /// forwarding on in the gateway; addresses usable at once (no DAD).
    pub fn add_ipv6(&self) {
        for (ns, ifname, addr) in [
            (&self.ua, "ua0", "fd00:88::2/64"),
            (&self.gw, "gwin", "fd00:88::1/64"),
            (&self.gw, "gwout", "2001:db8:100::1/64"),
            (&self.car, "car0", "2001:db8:100::2/64"),
        ] {
            // The namespace may inherit "IPv6 disabled" from the host's defaults.
            ns.exec(&[
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=0",
                &format!("net.ipv6.conf.{ifname}.disable_ipv6=0"),
            ]);
            ns.exec(&["ip", "-6", "addr", "add", addr, "dev", ifname, "nodad"]);
        }
        self.ua
            .exec(&["ip", "-6", "route", "add", "default", "via", GW_IN_IP6]);
        self.car
            .exec(&["ip", "-6", "route", "add", "fd00:88::/64", "via", EXT_IP6]);
        self.gw
            .exec(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    }

    /// Captures `filter` on the outside (car0) and the inside (ua0) links.
    pub fn capture_both(&self, filter: &str) -> (Capture, Capture) {
        (
            Capture::start(&self.car, "car0", self.dir.path("outside.pcap"), filter),
            Capture::start(&self.ua, "ua0", self.dir.path("inside.pcap"), filter),
        )
    }

    /// `sipnat run -c config` on the gateway, its socket and log in the scratch folder.
    pub fn start_sipnat(&self, config: &Path) -> Sipnat {
        Sipnat::start(
            &self.gw,
            config,
            self.dir.path("gw.sock"),
            self.dir.path("gw.log"),
        )
    }

    /// [`Topo::add_ipv6`], then a config that also rewrites `fd00:88::/64` to `EXT_IP6`.
    pub fn dual_stack_config(&self) -> PathBuf {
        self.add_ipv6();
        self.config(
            "gw",
            &format!("external_ip6 = \"{EXT_IP6}\""),
            "[[nat.rule]]\ninternal = \"fd00:88::/64\"\n",
        )
    }

    /// Writes a sipnat config (rule 10.0.0.0/24, external 198.51.100.1) with `extra` TOML
    /// appended to the [nat] table, and returns its path.
    pub fn config(&self, name: &str, nat_extra: &str, rest: &str) -> PathBuf {
        self.config_full(name, nat_extra, "metrics = \"\"", rest)
    }

    /// Like [`Topo::config`], with `control_extra` lines in [control] (e.g. metrics).
    pub fn config_full(
        &self,
        name: &str,
        nat_extra: &str,
        control_extra: &str,
        rest: &str,
    ) -> PathBuf {
        let socket = self.dir.path(&format!("{name}.sock"));
        // Media NAT is on, as by default (a test that needs it off says so in `rest`).
        let text = format!(
            "[interfaces]\ninside = \"gwin\"\noutside = \"gwout\"\nsip_ports = [5060]\non_failure = \"pass\"\n\n\
             [nat]\nexternal_ip = \"{EXT_IP}\"\n{nat_extra}\n\n[[nat.rule]]\ninternal = \"10.0.0.0/24\"\n\n\
             [control]\nsocket = \"{}\"\n{control_extra}\nbpffs = \"{}/sipnat\"\n\n{rest}\n",
            socket.display(),
            self.bpffs.0.display()
        );
        let p = self.dir.path(&format!("{name}.toml"));
        std::fs::write(&p, text).unwrap();
        p
    }
}

/// The start of a privileged test on the topology: `None` when it must skip (see
/// [`crate::common::privileged`]); else the test's turn ([`crate::common::serial`]) and a
/// fresh topology tagged `tag`.
pub fn privileged_topo(tag: &str) -> Option<(std::sync::MutexGuard<'static, ()>, Topo)> {
    if !super::privileged(&super::test_name()) {
        return None;
    }
    let turn = super::serial();
    Some((turn, Topo::new(tag)))
}

/// `privileged_topo(tag)`, or `return` from the test when it cannot run here (it said
/// why, and fails instead under `CI=true`).
#[macro_export]
macro_rules! topo_or_skip {
    ($tag:expr) => {
        match $crate::common::topo::privileged_topo($tag) {
            Some(t) => t,
            None => return,
        }
    };
}

/// `privileged_gateway(..)`: the topology with sipnat started, or `return` from the test
/// when it cannot run here (as [`topo_or_skip!`]).
#[macro_export]
macro_rules! gateway_or_skip {
    ($($arg:expr),+ $(,)?) => {
        match $crate::common::topo::privileged_gateway($($arg),+) {
            Some(g) => g,
            None => return,
        }
    };
}

/// [`privileged_topo`], then sipnat on its gateway with [`Topo::config`]`(nat_extra, rest)`.
pub fn privileged_gateway(
    tag: &str,
    nat_extra: &str,
    rest: &str,
) -> Option<(std::sync::MutexGuard<'static, ()>, Topo, Sipnat)> {
    let (turn, t) = privileged_topo(tag)?;
    let sipnat = t.start_sipnat(&t.config("gw", nat_extra, rest));
    Some((turn, t, sipnat))
}

/// sipnat running in the gateway namespace.
pub struct Sipnat {
    child: Option<Child>,
    pub socket: PathBuf,
    pub log: PathBuf,
    gw: String,
}

/// How [`Sipnat::launch`] starts the daemon.
#[derive(Default)]
pub struct Launch {
    /// The open-file limit (soft and hard); `None`: the test's.
    pub nofile: Option<u64>,
    /// A command the daemon runs under (e.g. `setpriv` limiting capabilities).
    pub wrapper: Vec<String>,
    /// The environment of the service: no log-level variables (the defaults apply).
    pub service_env: bool,
    /// Pretend stderr is the journal (`JOURNAL_STREAM`), as under systemd.
    pub journal: bool,
}

impl Sipnat {
    /// Starts `sipnat run -c config` in `gw` and waits until its control socket answers.
    pub fn start(gw: &Netns, config: &Path, socket: PathBuf, log: PathBuf) -> Sipnat {
        Sipnat::start_with_nofile(gw, config, socket, log, None)
    }

    /// Like [`Sipnat::start`], with the daemon's open-file limit (soft and hard) set to
    /// `nofile` (e.g. 1024, a common default) instead of inheriting the test's.
    pub fn start_with_nofile(
        gw: &Netns,
        config: &Path,
        socket: PathBuf,
        log: PathBuf,
        nofile: Option<u64>,
    ) -> Sipnat {
        let how = Launch {
            nofile,
            ..Launch::default()
        };
        Sipnat::launch(gw, config, socket, log, &how)
    }

    /// Starts the daemon as `how` says and waits until its control socket answers.
    pub fn launch(
        gw: &Netns,
        config: &Path,
        socket: PathBuf,
        log: PathBuf,
        how: &Launch,
    ) -> Sipnat {
        use std::os::unix::process::CommandExt as _;
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &gw.name])
            .args(&how.wrapper)
            .args([sipnat_bin(), "run", "-c"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        if how.service_env {
            cmd.env_remove("SIPNAT_LOG")
                .env_remove("RUST_LOG")
                .env_remove("JOURNAL_STREAM");
        } else {
            cmd.env("SIPNAT_LOG", "info");
        }
        if how.journal {
            // What systemd sets when stderr goes to the journal (device:inode).
            cmd.env("JOURNAL_STREAM", "8:424242");
        }
        if let Some(n) = how.nofile {
            // SAFETY: setrlimit(2) only, between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().unwrap();
        let mut s = Sipnat {
            child: Some(child),
            socket,
            log,
            gw: gw.name.clone(),
        };
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if s.ctl(&["status"]).is_ok() {
                return s;
            }
            super::still_starting("sipnat", s.child.as_mut().unwrap(), &s.log, end);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Asserts that this daemon adopted the pinned XDP program on `ifname` (a hitless
    /// restart) instead of loading its own.
    #[track_caller]
    pub fn assert_adopted(&self, ifname: &str) {
        let log = self.log_text();
        let adopted = format!("adopted the pinned XDP program on {ifname}");
        assert!(log.contains(&adopted), "{log}");
    }

    /// Runs a control command (`sipnat --socket S ARGS`), in the gateway namespace.
    pub fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.gw, sipnat_bin(), "--socket"])
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    pub fn stats(&self) -> Value {
        let s = self
            .ctl(&["stats", "--json"])
            .unwrap_or_else(|e| panic!("stats: {e}"));
        serde_json::from_str(&s).unwrap()
    }

    /// A worker counter summed over workers.
    pub fn counter(&self, name: &str) -> u64 {
        self.stats()["total"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("no counter {name}"))
    }

    /// Stops with SIGTERM and returns the exit code.
    pub fn stop(mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        // SAFETY: signal to our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        wait_exit(&mut c, Duration::from_secs(10))
    }

    /// Sends `sig` and waits for the exit (no SIGTERM).
    pub fn signal_and_wait(mut self, sig: i32) -> Option<i32> {
        let mut c = self.child.take()?;
        // SAFETY: signal to our own child.
        unsafe { libc::kill(c.id() as i32, sig) };
        wait_exit(&mut c, Duration::from_secs(10))
    }

    /// Kills with SIGKILL (no cleanup by sipnat).
    pub fn kill9(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_exit(c: &mut Child, timeout: Duration) -> Option<i32> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(st) = c.try_wait().ok().flatten() {
            return st.code();
        }
        if Instant::now() > end {
            let _ = c.kill();
            return c.wait().ok().and_then(|s| s.code());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Sipnat {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signal to our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            wait_exit(&mut c, Duration::from_secs(10));
        }
    }
}

/// A tcpdump capture in a namespace, written to a pcap file; stopped (and flushed) on
/// `finish`.
pub struct Capture {
    child: Option<Child>,
    pub file: PathBuf,
}

impl Capture {
    pub fn start(ns: &Netns, ifname: &str, file: PathBuf, filter: &str) -> Capture {
        let err = file.with_extension("log");
        let child = Command::new("ip")
            .args([
                "netns", "exec", &ns.name, "tcpdump", "-i", ifname, "-U", "-n", "-s", "0", "-w",
            ])
            .arg(&file)
            .args(filter.split_whitespace())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        // Wait until tcpdump says it is listening.
        let end = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&err)
            .unwrap_or_default()
            .contains("listening on")
        {
            assert!(
                Instant::now() < end,
                "tcpdump did not start: {}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Capture {
            child: Some(child),
            file,
        }
    }

    /// Stops the capture once everything sent before now is in the file: a marker
    /// datagram is sent from the UA namespace to the carrier (a plain UDP port, kernel
    /// path, crossing both captured links) until it shows up in the file; then SIGINT.
    pub fn finish(mut self, topo: &Topo) -> PathBuf {
        static N: AtomicU32 = AtomicU32::new(0);
        let marker = format!(
            "SIPNAT-CAPTURE-MARK-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            let m = marker.clone();
            topo.ua.run(move || {
                let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
                let _ = s.send_to(m.as_bytes(), (CAR_IP, 9));
            });
            std::thread::sleep(Duration::from_millis(100));
            let data = std::fs::read(&self.file).unwrap_or_default();
            if data.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                break;
            }
            assert!(
                Instant::now() < end,
                "capture {} never saw the end marker",
                self.file.display()
            );
        }
        if let Some(mut c) = self.child.take() {
            // SAFETY: signal to our own child; tcpdump flushes on SIGINT.
            unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
            wait_exit(&mut c, Duration::from_secs(10));
        }
        self.file.clone()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Asserts that no packet of `capture` matches the display filter `filter` (`what`
/// names it in the failure).
#[track_caller]
pub fn assert_no_packet(capture: &Path, filter: &str, what: &str) {
    let found = tshark(capture, &["-Y", filter]);
    let shown = capture.display();
    assert!(found.trim().is_empty(), "{what} in {shown}:\n{found}");
}

/// The display filter of a packet with a bad IP or UDP checksum.
pub const BAD_CHECKSUM: &str = "ip.checksum.status == \"Bad\" || udp.checksum.status == \"Bad\"";

/// `tshark -r FILE` with checksum validation on, returning its stdout.
pub fn tshark(file: &Path, args: &[&str]) -> String {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args([
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
            "-o",
            "sip.tls.port:0",
        ])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .expect("run tshark");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `tshark -r file -Y filter -T fields -E separator=| -e f1 -e f2 ...`: one line per
/// packet, the fields separated by `|` (repeated fields, e.g. inner and outer IP headers,
/// by `,`).
pub fn tshark_fields(file: &Path, filter: &str, fields: &[&str]) -> String {
    let mut args = vec!["-Y", filter, "-T", "fields", "-E", "separator=|"];
    for f in fields {
        args.extend(["-e", f]);
    }
    tshark(file, &args)
}

/// Runs sipp to completion inside `ns`; returns (exit code, stdout+stderr).
pub fn sipp(ns: &Netns, args: &[&str], timeout: Duration) -> (i32, String) {
    let out = Command::new("timeout")
        .arg(format!("{}", timeout.as_secs()))
        .args(["ip", "netns", "exec", &ns.name, "sipp"])
        .args(args)
        .args(["-nostdin"])
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A UDP socket bound to `addr` in the namespace named `ns`: bound before the test sends
/// anything, so no datagram can arrive at a port nobody listens on yet.
pub fn udp_socket_in(ns: &str, addr: (&'static str, u16)) -> std::net::UdpSocket {
    super::netns::Netns::attach_existing(ns).run(move || {
        std::net::UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr:?}: {e}"))
    })
}

/// One sipp UAC run in `ns`: `scenario` (from tests/scenarios) to `target`, from `ip`
/// port 5060, `calls` calls at `rate` per second, media port 6000, sipp's own timeout
/// `timeout_s` (the run is killed 30 s after it), then `extra` arguments.
#[allow(clippy::too_many_arguments)]
pub fn sipp_uac(
    ns: &Netns,
    scenario_file: &str,
    target: &str,
    ip: &str,
    calls: u32,
    rate: u32,
    timeout_s: u64,
    extra: &[&str],
) -> (i32, String) {
    let (sf, calls, rate, timeout) = (
        scenario(scenario_file),
        calls.to_string(),
        rate.to_string(),
        format!("{timeout_s}s"),
    );
    let mut args = vec![
        "-sf", &sf, target, "-i", ip, "-p", "5060", "-m", &calls, "-r", &rate, "-timeout",
        &timeout, "-mp", "6000",
    ];
    args.extend_from_slice(extra);
    sipp(ns, &args, Duration::from_secs(timeout_s + 30))
}

/// A sipp UAC run from the UA namespace (`UA_IP` port 5060) to the carrier (`CAR_IP`
/// port 5060): `scenario`, `calls` calls at `rate` per second, sipp's own timeout
/// `timeout_s`, then `extra` arguments ([`sipp_uac`]).
pub fn call_carrier(
    t: &Topo,
    scenario: &str,
    (calls, rate, timeout_s): (u32, u32, u64),
    extra: &[&str],
) -> (i32, String) {
    let target = format!("{CAR_IP}:5060");
    sipp_uac(
        &t.ua, scenario, &target, UA_IP, calls, rate, timeout_s, extra,
    )
}

/// Starts coturn as a STUN-only server (port 3478) on `ips` in `ns`; ended by PID when
/// the namespace is dropped.
pub fn stun_server(ns: &mut Netns, ips: &[&str], pidfile: &str) -> u32 {
    let mut argv = vec!["turnserver", "-n"];
    for ip in ips {
        argv.extend(["--listening-ip", ip]);
    }
    argv.extend([
        "--listening-port",
        "3478",
        "--stun-only",
        "--no-cli",
        "--no-tls",
        "--no-dtls",
        "--log-file",
        "stdout",
        "--simple-log",
        "--pidfile",
        pidfile,
    ]);
    ns.spawn_quiet(&argv)
}

/// Starts a sipp UAS (background) in `ns`; ended by PID when the namespace is dropped.
pub fn sipp_uas(ns: &mut Netns, ip: &str, scenario_args: &[&str]) -> u32 {
    // Foreground (no -bg), so the PID we track and end is sipp's own.
    let mut argv = vec!["sipp", "-i", ip, "-p", "5060", "-nostdin"];
    argv.extend_from_slice(scenario_args);
    ns.spawn_quiet(&argv)
}

/// Waits until `cond` holds (polling), or panics after `timeout` with `what`.
pub fn await_condition(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Sends raw IPv4 packets (header included; the kernel fills the header checksum and
/// total length) from inside `ns`.
pub fn send_raw_ipv4(ns: &Netns, packets: Vec<Vec<u8>>) {
    let n = packets.len() as u64;
    assert_eq!(
        send_raw_ipv4_paced(ns, packets, u64::MAX),
        n,
        "raw sends failed"
    );
}

/// [`send_raw_ipv4`] at about `rate` packets per second (bursts of 64, then a pause:
/// pacing, not synchronisation); returns how many were sent.
pub fn send_raw_ipv4_paced(ns: &Netns, packets: Vec<Vec<u8>>, rate: u64) -> u64 {
    ns.run(move || {
        // SAFETY: plain socket(2); checked.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        let t0 = Instant::now();
        let mut sent = 0;
        for (i, p) in packets.iter().enumerate() {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes([p[16], p[17], p[18], p[19]]),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: valid fd, buffer and sockaddr.
            let r = unsafe {
                libc::sendto(
                    fd,
                    p.as_ptr().cast(),
                    p.len(),
                    0,
                    (&sin as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as u32,
                )
            };
            if r >= 0 {
                sent += 1;
            }
            if i % 64 == 63 && rate != u64::MAX {
                let due = t0 + Duration::from_secs_f64((i + 1) as f64 / rate as f64);
                if let Some(d) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
            }
        }
        // SAFETY: our fd.
        unsafe { libc::close(fd) };
        sent
    })
}

/// An IPv4 fragment 10.0.0.2 → 198.51.100.2, protocol UDP.
pub fn ipv4_fragment(id: u16, offset: usize, more: bool, data: &[u8]) -> Vec<u8> {
    let mut h = vec![
        0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 2, 198, 51, 100, 2,
    ];
    let total = (20 + data.len()) as u16;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    let ff = ((offset / 8) as u16) | if more { 0x2000 } else { 0 };
    h[6..8].copy_from_slice(&ff.to_be_bytes());
    h.extend_from_slice(data);
    h
}

/// Reads a file of kernel counters (`/proc/net/snmp` style) in `ns`: `Udp: RcvbufErrors`.
pub fn snmp(ns: &Netns, proto: &str, field: &str) -> u64 {
    let out = ns.exec(&["cat", "/proc/net/snmp"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().filter(|l| l.starts_with(&format!("{proto}:")));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    let i = names
        .split_whitespace()
        .position(|n| n == field)
        .unwrap_or(usize::MAX);
    values
        .split_whitespace()
        .nth(i)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// An interface counter (`ip -s -j link`): e.g. ("tx", "dropped").
pub fn link_stat(ns: &Netns, ifname: &str, dir: &str, field: &str) -> u64 {
    let out = ns.exec(&["ip", "-s", "-j", "link", "show", "dev", ifname]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v[0]["stats64"][dir][field].as_u64().unwrap_or(0)
}
