//! Helpers shared by the integration tests: test data paths, skip policy, network namespaces
//! created and removed by the test, and a minimal AF_XDP receive socket.
#![allow(dead_code)]

pub mod differential;
pub mod frames;
pub mod hog;
pub mod netns;
pub mod rewrite;
pub mod sipcheck;
pub mod sipua;
pub mod testdata;
pub mod topo;
pub mod traffic;
pub mod xsk;

/// Runs `systemd-analyze verify UNIT` and fails unless it succeeds with nothing to say.
pub fn assert_systemd_verifies(unit: &std::path::Path) {
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
        .expect("run systemd-analyze");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "systemd-analyze verify {}: {report}",
        unit.display()
    );
}

/// True when the test may run; prints why it is skipped otherwise. Under `CI=true` a
/// privileged test must not be skipped: it fails instead.
pub fn privileged(test: &str) -> bool {
    // SAFETY: trivial libc call.
    let root = unsafe { libc::geteuid() } == 0;
    root || skip(test, "needs root (BPF, XDP, network namespaces)")
}

/// True when every `(binary, Debian package)` is installed (on `PATH`, or in `/usr/sbin`
/// or `/sbin`); otherwise prints which one is missing and skips, or fails under `CI=true`
/// (`xtask/debian-packages.txt` lists them; `cargo xtask setup` installs them).
pub fn installed(test: &str, tools: &[(&str, &str)]) -> bool {
    for (bin, package) in tools {
        if find_binary(bin).is_none() {
            return skip(
                test,
                &format!("`{bin}` is not installed (Debian package {package})"),
            );
        }
    }
    true
}

/// The path of an executable named `bin` on `PATH`, or in `/usr/sbin` or `/sbin` (root's
/// tools, absent from some users' `PATH`).
pub fn find_binary(bin: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(bin))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Skips `test` for `reason` (printed, and logged for `cargo xtask test`'s summary) and
/// returns false; under `CI=true` a skip is a failure: panics instead.
fn skip(test: &str, reason: &str) -> bool {
    let msg = format!("SKIP {test}: {reason}");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}; CI=true forbids skipping");
    }
    // `cargo xtask test` collects skips here and lists them in its summary.
    print_and_log(&msg, "SIPNAT_SKIP_LOG");
    false
}

/// For a daemon started by a test and not ready yet: panics with its log when it has
/// exited, or when `end` has passed.
#[track_caller]
pub fn still_starting(
    what: &str,
    child: &mut std::process::Child,
    log: &std::path::Path,
    end: std::time::Instant,
) {
    let log_text = || std::fs::read_to_string(log).unwrap_or_default();
    if let Some(st) = child.try_wait().unwrap() {
        panic!("{what} exited ({st}) during start:\n{}", log_text());
    }
    let late = std::time::Instant::now() >= end;
    assert!(!late, "{what} not ready in time:\n{}", log_text());
}

/// Asserts that `text` contains `part`, showing the text when it does not.
#[track_caller]
pub fn assert_contains(text: &str, part: &str) {
    assert!(text.contains(part), "missing {part:?} in:\n{text}");
}

/// `privileged(test_name())`, or `return` from the test (the skip is printed and logged;
/// under `CI=true` it fails instead).
#[macro_export]
macro_rules! privileged_or_skip {
    () => {
        if !$crate::common::privileged(&$crate::common::test_name()) {
            return;
        }
    };
}

/// A command's stdout parsed as JSON; panics with its stdout and stderr when it does not
/// parse.
pub fn json_stdout(out: &std::process::Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "the output is no JSON ({e}):\nstdout:\n{text}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The count `v[k]`; panics naming the field when it is missing or not a count.
pub fn count(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("field `{k}` missing or not a count in {v:#}"))
}

/// The running test's name: libtest runs each test on a thread named after it.
pub fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("unnamed test")
        .to_string()
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Serialises the privileged tests of one test binary: each builds its own namespaces, but
/// they share two cores, and timing-sensitive checks must not compete with a neighbour.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Prints a line about what a test checked, and appends it to `$SIPNAT_REPORT_LOG` when
/// set: `cargo xtask test` lists those lines in its summary (a passing test's own output
/// is captured by the test harness).
pub fn report(line: &str) {
    print_and_log(line, "SIPNAT_REPORT_LOG");
}

/// Prints `line` to stderr and appends it to the file named by the environment variable
/// `log_var`, when set.
fn print_and_log(line: &str, log_var: &str) {
    eprintln!("{line}");
    if let Ok(path) = std::env::var(log_var) {
        use std::io::Write as _;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        if let Ok(mut f) = file {
            let _ = writeln!(f, "{line}");
        }
    }
}
