//! Helpers shared by the integration tests: test data paths, skip policy, network namespaces
//! created and removed by the test, and a minimal AF_XDP receive socket.
#![allow(dead_code)]

pub mod differential;
pub mod frames;
pub mod netns;
pub mod sipcheck;
pub mod testdata;
pub mod topo;
pub mod traffic;
pub mod xsk;

/// True when the test may run; prints why it is skipped otherwise. Under `CI=true` a
/// privileged test must not be skipped: it fails instead.
pub fn privileged(test: &str) -> bool {
    // SAFETY: trivial libc call.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        return true;
    }
    let msg = format!("SKIP {test}: needs root (BPF, XDP, network namespaces)");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}; CI=true forbids skipping");
    }
    eprintln!("{msg}");
    // `cargo xtask test` collects skips here and lists them in its summary.
    if let Ok(path) = std::env::var("SIPNAT_SKIP_LOG") {
        use std::io::Write as _;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{msg}");
        }
    }
    false
}

/// Prints a line about what a test checked, and appends it to `$SIPNAT_REPORT_LOG` when
/// set: `cargo xtask test` lists those lines in its summary (a passing test's own output
/// is captured by the test harness).
pub fn report(line: &str) {
    eprintln!("{line}");
    if let Ok(path) = std::env::var("SIPNAT_REPORT_LOG") {
        use std::io::Write as _;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}
