//! `cargo xtask bench`: `--micro` runs the criterion benches (`cargo bench -p benches`);
//! `--instructions` counts the instructions per message of every bench input under
//! callgrind (`benches/examples/rewrite_loop.rs`), fast path and reference side by side,
//! and per packet through a worker's pipeline with media NAT off and on
//! (`benches/examples/pipeline_loop.rs`);
//! `--e2e` runs the end-to-end matrix of `bench/` (three network namespaces, napi
//! steering) for sipnat next to the kernel anchors (forwarding, NAT, nf_nat_sip) and
//! Kamailio, in one run, and prints the comparison table. `--e2e --rtp` runs the RTP
//! comparison instead (`bench/run-rtp.sh`): sipnat's media NAT in XDP (4096 static
//! bindings) vs the kernel's NAT (nftables masquerade), interleaved rounds, medians, each
//! with two generators: `xdpgen` (`bench/gen-xdpgen.sh`: XDP frames at the gateway, as
//! from a NIC driver, at a rate that saturates the gateway core) and kagen (AF_PACKET:
//! skbs at the gateway's veth, which copies each into a page before XDP). `--e2e --napt`
//! runs the SIP call-setup rate with NAPT on vs off (`bench/run-napt.sh`): every INVITE a
//! new call of a new inside endpoint, NAPT off (ports kept) vs on (ports kept, or every
//! call allocating a port), interleaved rounds, medians.
//!
//! Everything the harness writes goes under `target/bench/` (`build/`: its C helpers,
//! `run/`: pid files, pcaps, sipnat's config and log, `results/<timestamp>/`: runs.jsonl,
//! verify-*.txt, summary.md, e2e.md, e2e.json). The topology is torn down at the end,
//! also after a failure or Ctrl-C.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{bail, Context as _};

use crate::{setup, shell};

/// The systems under test, in table order.
pub const SUTS: &str = "sipnat kernel-fwd kernel-nat kernel-alg kamailio";

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// End-to-end matrix: sipnat vs kernel forwarding / NAT / nf_nat_sip and Kamailio.
    #[arg(long)]
    pub e2e: bool,
    /// Criterion micro-benchmarks of the rewriter (`cargo bench -p benches`).
    #[arg(long)]
    pub micro: bool,
    /// Instructions per message of every bench input under callgrind, fast path and
    /// reference side by side (deterministic, whatever the machine's load).
    #[arg(long)]
    pub instructions: bool,
    /// With --e2e: the RTP media NAT comparison (sipnat's XDP media NAT vs nftables
    /// masquerade, 214-byte IP packets, 4096 flows) instead of the SIP matrix.
    #[arg(long)]
    pub rtp: bool,
    /// With --e2e: the SIP call-setup rate with NAPT on vs off (every INVITE a new
    /// binding; 10,000 and 20,000 INVITEs/s) instead of the SIP matrix.
    #[arg(long)]
    pub napt: bool,
    /// Short version: 1 run of 2 s per row, rates max and 30 kpps (a few minutes); with
    /// --rtp / --napt: 3 rounds of 2 s.
    #[arg(long)]
    pub quick: bool,
    /// Seconds per timed run (default 5; 2 with --quick).
    #[arg(long)]
    pub seconds: Option<u32>,
    /// Runs per row (default 3; 1 with --quick). The SIP matrix makes them in rounds,
    /// every SUT once per round in turn, so host noise hits all SUTs alike.
    #[arg(long)]
    pub runs: Option<u32>,
    /// Systems under test (hooks bench/sut-NAME.sh), space separated.
    #[arg(long, default_value = SUTS)]
    pub suts: String,
    /// Flow counts, space separated.
    #[arg(long, default_value = "1 4096")]
    pub flows: String,
    /// Load generator: kagen (AF_PACKET), or NAME for a hook bench/gen-NAME.sh.
    #[arg(long, default_value = "kagen")]
    pub gen: String,
    /// Overload row: sipnat at this many times its measured capacity (0: no row).
    #[arg(long, default_value_t = 2.0)]
    pub overload: f64,
    /// Results directory (default target/bench/results/<UTC timestamp>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Extra arguments for every load.sh run (after `--`), e.g. `-- --max-wait 30`.
    #[arg(last = true)]
    pub load_args: Vec<String>,
}

pub fn run(a: &BenchArgs) -> anyhow::Result<()> {
    if !a.e2e && !a.micro && !a.instructions {
        bail!(
            "say what to run: --e2e (end-to-end matrix), --micro (criterion) and/or \
             --instructions (callgrind)"
        );
    }
    if a.micro {
        micro(a.quick)?;
    }
    if a.instructions {
        instructions()?;
    }
    if a.rtp && a.napt {
        bail!("--rtp and --napt are two benches: run one at a time");
    }
    if a.e2e && a.rtp {
        e2e_rtp(a)?;
    } else if a.e2e && a.napt {
        e2e_napt(a)?;
    } else if a.e2e {
        e2e(a)?;
    } else if a.rtp || a.napt {
        bail!("--rtp and --napt go with --e2e");
    }
    Ok(())
}

/// The directory cargo builds into (`CARGO_TARGET_DIR`, else `target/`).
fn cargo_target(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// What both end-to-end benches (`--e2e`, `--e2e --rtp`) stand on: root, the Ctrl-C flag,
/// the tools, a release sipnat and the harness's C helpers, built once before the run.
struct Harness {
    root: PathBuf,
    bench: PathBuf,
    /// `target/bench` (under `CARGO_TARGET_DIR` when set).
    target: PathBuf,
    stop: Arc<AtomicBool>,
    envs: [(&'static str, PathBuf); 3],
    /// UTC start time, the default name of the results folder.
    stamp: String,
}

impl Harness {
    fn prepare() -> anyhow::Result<Harness> {
        if !shell::is_root() {
            bail!(
                "the end-to-end bench creates network namespaces and attaches XDP: run it as root"
            );
        }
        let root = shell::workspace_root();
        let bench = root.join("bench");
        let cargo = cargo_target(&root);
        let target = cargo.join("bench");
        let stop = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, Arc::clone(&stop))?;
        }
        setup::run(true)?;
        shell::build_sipnat_release("build sipnat (release)")?;
        let envs = [
            ("KA_BUILD_DIR", target.join("build")),
            ("KA_RUN_DIR", target.join("run")),
            ("SIPNAT", cargo.join("release/sipnat")),
        ];
        shell::step("build the harness's C helpers (bench/build.sh)");
        shell::run(Command::new(bench.join("build.sh")).envs(envs.iter().cloned()))?;
        let stamp = utc_stamp()?;
        Ok(Harness {
            root,
            bench,
            target,
            stop,
            envs,
            stamp,
        })
    }

    /// `--out`, or `target/bench/results/NAME`; created.
    fn out_dir(&self, a: &BenchArgs, name: &str) -> anyhow::Result<PathBuf> {
        let out = a
            .out
            .clone()
            .unwrap_or_else(|| self.target.join("results").join(name));
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        Ok(out)
    }

    /// Runs the bench script `m` (Ctrl-C forwarded to it), then, whatever happened, takes
    /// down the bench scripts `downs` and the topology: nothing of the bench stays up.
    fn run(&self, m: &mut Command, downs: &[&str], out: &Path) -> anyhow::Result<()> {
        let res = run_interruptible(m, &self.stop);
        let scripts: Vec<&str> = downs.iter().copied().chain(["topo.sh"]).collect();
        shell::step(&format!("teardown ({} down)", scripts.join(" down, ")));
        // Under the shared measurement lock (bench/lib.sh's LOCK_FILE): a bench of
        // another checkout that holds it is using the same namespaces right now.
        let lock = std::env::var_os("KA_LOCK_FILE").unwrap_or_else(|| "/tmp/measure.lock".into());
        for script in scripts {
            let _ = Command::new("flock")
                .arg(&lock)
                .arg(self.bench.join(script))
                .arg("down")
                .envs(self.envs.iter().cloned())
                .status();
        }
        if self.stop.load(Ordering::Relaxed) {
            bail!(
                "interrupted (topology removed; partial results in {})",
                out.display()
            );
        }
        res
    }
}

/// `--e2e --rtp`: bench/run-rtp.sh (sipnat-media vs kernel-masq, interleaved rounds).
fn e2e_rtp(a: &BenchArgs) -> anyhow::Result<()> {
    // xdpgen: XDP frames (ndo_xdp_xmit), as from a NIC, faster than the gateway can take
    // them; kagen: skbs at the gateway's veth
    let extra = ["--flows", "4096", "--gens", "xdpgen kagen"];
    let what = "RTP comparison, sipnat-media vs kernel-masq";
    rounds_bench(a, ("run-rtp.sh", "rtp"), &extra, what, &[])
}

/// `--e2e --napt`: bench/run-napt.sh (NAPT off, on keeping ports, on allocating;
/// interleaved rounds).
fn e2e_napt(a: &BenchArgs) -> anyhow::Result<()> {
    let what = "SIP call setup, NAPT off vs on";
    rounds_bench(a, ("run-napt.sh", "napt"), &[], what, &["sut-sipnat.sh"])
}

/// A comparison in interleaved rounds: `bench/SCRIPT --out DIR --rounds N --seconds S
/// EXTRA -- LOAD_ARGS`, results in a folder named after `tag`; the bench scripts `downs`
/// are taken down afterwards, with the topology.
fn rounds_bench(
    a: &BenchArgs,
    (script, tag): (&str, &str),
    extra: &[&str],
    what: &str,
    downs: &[&str],
) -> anyhow::Result<()> {
    let h = Harness::prepare()?;
    let out = h.out_dir(a, &format!("{tag}-{}", h.stamp))?;
    let seconds = a.seconds.unwrap_or(if a.quick { 2 } else { 5 });
    let rounds = a.runs.unwrap_or(3).max(1);
    let mut m = Command::new(h.bench.join(script));
    m.envs(h.envs.iter().cloned())
        .arg("--out")
        .arg(&out)
        .args(["--rounds", &rounds.to_string()])
        .args(["--seconds", &seconds.to_string()])
        .args(extra)
        .arg("--");
    if a.quick {
        m.args(["--max-wait", "20", "--retry-noisy", "0"]);
    } else {
        m.args(["--retry-noisy", "1"]);
    }
    m.args(&a.load_args);
    let shown = out.display();
    shell::step(&format!(
        "{what} ({rounds} round(s) x {seconds} s; results in {shown})"
    ));
    h.run(&mut m, downs, &out)?;
    println!("results: {shown}");
    Ok(())
}

fn micro(quick: bool) -> anyhow::Result<()> {
    shell::step("micro-benchmarks (cargo bench -p benches)");
    let mut c = shell::cargo();
    c.args(["bench", "-p", "benches"]);
    if quick {
        c.args(["--", "--quick"]);
    }
    shell::run(&mut c)
}

/// The inputs of `rewrite_loop` (bench row, example argument, target instructions per
/// message for the fast path, when the issue set one).
const INPUTS: [(&str, &str, Option<u64>); 8] = [
    ("CarrierInviteSdp", "carrier", Some(4_500)),
    ("CarrierInviteSdpPacket", "packet", None),
    ("HeaderRewriting", "header", Some(1_100)),
    ("SDPRewriting", "sdp", Some(1_300)),
    ("Concurrent (one thread)", "concurrent", None),
    ("MemoryEfficiency", "memory", None),
    ("FastPath (disabled)", "fastpath", None),
    ("PrivateIPDetection (6 addresses)", "private", None),
];

/// Iterations of the two runs whose difference is measured (startup cancels out).
const SHORT: u64 = 100;
const LONG: u64 = 1_100;

/// `--instructions`: each input under `valgrind --tool=callgrind`, `SHORT` and `LONG`
/// iterations; instructions per message = the difference / (LONG - SHORT), less the same
/// for the `copy` mode (the restore of the input each iteration does).
fn instructions() -> anyhow::Result<()> {
    if !shell::succeeds(Command::new("valgrind").arg("--version")) {
        bail!(
            "valgrind is not installed (it is in xtask/debian-packages.txt: `cargo xtask \
             setup` as root installs it, or `apt-get install valgrind`)"
        );
    }
    shell::step("instructions per message (callgrind, benches/examples/rewrite_loop.rs)");
    shell::run(shell::cargo().args([
        "build",
        "--release",
        "-p",
        "benches",
        "--example",
        "rewrite_loop",
        "--example",
        "pipeline_loop",
    ]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| shell::workspace_root().join("target"));
    let examples = target.join("release/examples");
    let count = |input: &str, n: u64, mode: &str| -> anyhow::Result<u64> {
        // (`pipeline_loop` has one input, the carrier frame: its arguments are `N MODE`.)
        let (exe, arg) = match input {
            "pipeline" => (examples.join("pipeline_loop"), None),
            _ => (examples.join("rewrite_loop"), Some(input)),
        };
        let o = shell::output(
            Command::new("valgrind")
                .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
                .arg(&exe)
                .args(arg)
                .args([&n.to_string(), mode])
                .env(
                    "SIPNAT_BENCH_INPUTS",
                    shell::workspace_root().join("testdata/bench-inputs"),
                ),
        )?;
        let err = String::from_utf8_lossy(&o.stderr);
        if !o.status.success() {
            bail!("callgrind {input} {mode} failed ({}):\n{err}", o.status);
        }
        err.lines()
            .find_map(|l| l.split("Collected : ").nth(1))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("no instruction count from callgrind:\n{err}"))
    };
    let per = |input: &str, mode: &str| -> anyhow::Result<u64> {
        let (a, b) = (count(input, SHORT, mode)?, count(input, LONG, mode)?);
        Ok(b.saturating_sub(a) / (LONG - SHORT))
    };
    println!(
        "\n    {:<34} {:>9} {:>11} {:>7} {:>8}",
        "input", "fast", "reference", "ratio", "target"
    );
    for (row, input, goal) in INPUTS {
        let copy = per(input, "copy")?;
        let fast = per(input, "fast")?.saturating_sub(copy);
        let reference = per(input, "reference")?.saturating_sub(copy);
        let ratio = reference as f64 / fast.max(1) as f64;
        let goal = goal.map_or(String::new(), |g| {
            format!("≤ {g}{}", if fast <= g { "" } else { " (missed)" })
        });
        println!("    {row:<34} {fast:>9} {reference:>11} {ratio:>6.2}x {goal}");
    }
    println!(
        "\n    instructions per message (callgrind Ir), the restore of the input (copy mode) \
         subtracted; {SHORT} and {LONG} iterations, their difference"
    );
    // The whole per-packet path of a worker (benches/examples/pipeline_loop.rs), the
    // carrier frame: what the rewrite's share of a packet is, and what media NAT adds.
    let copy = per("pipeline", "copy")?;
    println!(
        "\n    {:<34} {:>9}",
        "pipeline (carrier frame)", "per packet"
    );
    for (row, mode) in [
        ("[media] off (the SIP bench)", "plain"),
        ("[media] on (the default)", "media"),
    ] {
        println!(
            "    {row:<34} {:>9}",
            per("pipeline", mode)?.saturating_sub(copy)
        );
    }
    Ok(())
}

/// Rates per SUT: (default rates, per-SUT overrides).
fn rates(quick: bool) -> (&'static str, Vec<(&'static str, &'static str)>) {
    if quick {
        ("max,30000", vec![])
    } else {
        (
            "max,15000,30000,100000,300000",
            vec![
                ("kernel-alg", "max,15000,30000"),
                ("kamailio", "max,15000,30000"),
            ],
        )
    }
}

fn e2e(a: &BenchArgs) -> anyhow::Result<()> {
    let h = Harness::prepare()?;
    let out = h.out_dir(a, &h.stamp)?;
    let seconds = a.seconds.unwrap_or(if a.quick { 2 } else { 5 });
    let runs = a.runs.unwrap_or(if a.quick { 1 } else { 3 });
    let (rates, rates_for) = rates(a.quick);

    let mut m = Command::new(h.bench.join("run-matrix.sh"));
    m.envs(h.envs.iter().cloned())
        .arg("--out")
        .arg(&out)
        .args(["--suts", &a.suts, "--flows", &a.flows, "--steer", "napi"])
        // The runs of a row in rounds, each round over every SUT in turn (one run per
        // row): a host that slows down for a minute hits every SUT alike instead of one.
        .args([
            "--rounds",
            &runs.to_string(),
            "--runs",
            "1",
            "--seconds",
            &seconds.to_string(),
        ])
        .args(["--rates", rates, "--gen", &a.gen]);
    for (s, r) in rates_for {
        m.args(["--rates-for", &format!("{s}={r}")]);
    }
    if a.overload > 0.0 && a.suts.split_whitespace().any(|s| s == "sipnat") {
        m.args(["--overload", &format!("sipnat={}", a.overload)]);
    }
    m.arg("--");
    if a.quick {
        // A few minutes in all: short waits for a quiet host, no reruns of noisy runs
        // (they are marked and counted in the table).
        m.args(["--max-wait", "20", "--retry-noisy", "0"]);
    } else {
        m.args(["--retry-noisy", "1"]);
    }
    m.args(&a.load_args);

    shell::step(&format!(
        "end-to-end matrix ({}; {runs} run(s) x {seconds} s per row; results in {})",
        a.suts,
        out.display()
    ));
    h.run(&mut m, &["sut-sipnat.sh"], &out)?;

    shell::step("comparison");
    let runs_file = out.join("runs.jsonl");
    if !runs_file.exists() {
        bail!("no runs recorded in {}", runs_file.display());
    }
    let mut rep = Command::new("python3");
    rep.arg(h.bench.join("tools/e2e_report.py"))
        .arg(&runs_file)
        .arg("--md")
        .arg(out.join("e2e.md"))
        .arg("--json")
        .arg(out.join("e2e.json"));
    for (k, v) in meta(&h.root, &h.stamp, a, runs, seconds) {
        rep.args(["--meta", &format!("{k}={v}")]);
    }
    shell::run(&mut rep)?;
    println!("results: {}", out.display());
    Ok(())
}

/// Runs `c` in a process group of its own and forwards SIGINT/SIGTERM (seen through
/// `stop`) to that group (run-matrix.sh, load.sh, the generator, ...).
fn run_interruptible(c: &mut Command, stop: &AtomicBool) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt as _;
    let script = c.get_program().to_string_lossy().into_owned();
    let mut child = c
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {script}"))?;
    let mut signalled = false;
    loop {
        if let Some(st) = child.try_wait()? {
            if !st.success() {
                bail!("{script} failed ({st})");
            }
            return Ok(());
        }
        if stop.load(Ordering::Relaxed) && !signalled {
            signalled = true;
            // SAFETY: kill(2) on the process group we created (its id is our child's PID).
            unsafe { libc::kill(-(child.id() as i32), libc::SIGTERM) };
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn utc_stamp() -> anyhow::Result<String> {
    let o = shell::output(Command::new("date").args(["-u", "+%Y%m%d-%H%M%S"]))?;
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// Header lines of the report: when, where, what.
fn meta(
    root: &Path,
    stamp: &str,
    a: &BenchArgs,
    runs: u32,
    seconds: u32,
) -> Vec<(&'static str, String)> {
    let git = |args: &[&str]| {
        shell::output(Command::new("git").current_dir(root).args(args))
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let dirty = !git(&["status", "--porcelain", "--untracked-files=no"]).is_empty();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let ncpu = std::thread::available_parallelism().map_or(0, |n| n.get());
    vec![
        ("date (UTC)", stamp.to_string()),
        (
            "commit",
            format!(
                "{}{}",
                git(&["rev-parse", "--short", "HEAD"]),
                if dirty { " (modified)" } else { "" }
            ),
        ),
        ("machine", format!("{ncpu} CPU(s), {cpu}")),
        (
            "command",
            format!(
                "cargo xtask bench --e2e{} (runs {runs} x {seconds} s, flows {}, gen {})",
                if a.quick { " --quick" } else { "" },
                a.flows,
                a.gen
            ),
        ),
    ]
}
