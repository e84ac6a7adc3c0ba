//! The Debian package that `cargo xtask deb` builds (`cargo xtask test` builds it before
//! the tests): installed with `dpkg -i`, it runs, its man pages are found by `man`, its
//! completions load, its unit passes `systemd-analyze verify`, it enables and starts
//! nothing; removed, only the conffile stays; purged, nothing of it is left.
//!
//! Root only (dpkg). It refuses to run where a `sipnat` package is already installed
//! (it would purge it).

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

const REPO_UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/sipnat.service");
const REPO_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/sipnat.toml");
const REPO_DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../packaging/grafana/sipnat.json"
);
const REPO_COPYRIGHT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/debian/copyright");
const UNIT: &str = "/usr/lib/systemd/system/sipnat.service";
const CONFIG: &str = "/etc/sipnat/sipnat.toml";

/// `<target>/debian/sipnat_*.deb` (the test binary runs from `<target>/release/deps`).
fn deb() -> PathBuf {
    let release = Path::new(env!("CARGO_BIN_EXE_sipnat")).parent().unwrap();
    let dir = release.parent().unwrap().join("debian");
    std::fs::read_dir(&dir)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("sipnat_") && n.ends_with(".deb"))
        })
        .unwrap_or_else(|| {
            panic!(
                "no sipnat_*.deb in {}: build it with `cargo xtask deb` (`cargo xtask test` \
                 does it before the tests)",
                dir.display()
            )
        })
}

fn run(argv: &[&str]) -> Output {
    Command::new(argv[0])
        .args(&argv[1..])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"))
}

fn ok(argv: &[&str]) -> String {
    let out = run(argv);
    assert!(
        out.status.success(),
        "{argv:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn status() -> String {
    let out = run(&["dpkg-query", "-W", "-f=${Status}", "sipnat"]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Purges the package if the test ends early.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = run(&["dpkg", "--purge", "sipnat"]);
    }
}

#[test]
fn deb_installs_runs_and_purges_cleanly() {
    crate::privileged_or_skip!();
    let deb = deb();
    let deb_s = deb.to_str().unwrap();
    let before = status();
    assert!(
        before.is_empty() || before.contains("not-installed"),
        "a sipnat package is installed here ({before}); this test installs and purges its \
         own: remove it first (dpkg --purge sipnat)"
    );
    assert!(!Path::new("/usr/sbin/sipnat").exists());
    assert!(
        !Path::new("/etc/sipnat").exists(),
        "/etc/sipnat exists already"
    );

    // Maintainer scripts: postinst and postrm only, and all they run is daemon-reload.
    let control = ok(&["dpkg-deb", "--info", deb_s]);
    assert!(
        !control.contains(" preinst") && !control.contains(" prerm"),
        "{control}"
    );
    for script in ["postinst", "postrm"] {
        let text = ok(&["dpkg-deb", "--info", deb_s, script]);
        let commands: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| l.contains("systemctl") && !l.starts_with('#'))
            .collect();
        assert_eq!(
            commands,
            ["systemctl daemon-reload || true"],
            "{script} must only reload systemd:\n{text}"
        );
        assert!(
            text.contains("[ -d /run/systemd/system ]"),
            "{script}: not guarded"
        );
    }

    let _purge = Purge;
    ok(&["dpkg", "-i", deb_s]);
    assert_eq!(status(), "install ok installed");
    let files: Vec<String> = ok(&["dpkg-query", "-L", "sipnat"])
        .lines()
        .map(str::to_string)
        .collect();

    // The program.
    let version = ok(&["/usr/sbin/sipnat", "--version"]);
    assert_eq!(
        version.trim(),
        format!("sipnat {}", env!("CARGO_PKG_VERSION"))
    );

    // Man pages: sipnat(8) and one per subcommand, found by man.
    let page = ok(&["man", "-w", "sipnat"]);
    assert_eq!(page.trim(), "/usr/share/man/man8/sipnat.8.gz");
    for sub in [
        "run",
        "status",
        "stats",
        "set",
        "set-external-ip",
        "enable",
        "disable",
        "reload",
        "check-config",
        "rewrite",
        "loadtest",
        "xdp",
        "xdp-info",
    ] {
        let p = ok(&["man", "-w", &format!("sipnat-{sub}")]);
        assert_eq!(p.trim(), format!("/usr/share/man/man8/sipnat-{sub}.8.gz"));
    }
    let text = ok(&["sh", "-c", "zcat /usr/share/man/man8/sipnat-loadtest.8.gz"]);
    assert!(
        text.contains(".TH sipnat-loadtest 8"),
        "{}",
        &text[..200.min(text.len())]
    );
    assert!(
        text.contains("rx\\-interface"),
        "loadtest options in its page"
    );

    // Completions for bash, zsh and fish, naming the subcommands.
    let bash = "/usr/share/bash-completion/completions/sipnat";
    let zsh = "/usr/share/zsh/vendor-completions/_sipnat";
    let fish = "/usr/share/fish/vendor_completions.d/sipnat.fish";
    for f in [bash, zsh, fish] {
        let t = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        for sub in ["loadtest", "check-config", "external-ip"] {
            assert!(t.contains(sub), "{f} lacks {sub}");
        }
    }
    let complete = ok(&["bash", "-c", &format!(". {bash} && complete -p sipnat")]);
    assert!(complete.contains("sipnat"), "{complete}");
    assert!(std::fs::read_to_string(zsh)
        .unwrap()
        .starts_with("#compdef sipnat"));
    assert!(std::fs::read_to_string(fish)
        .unwrap()
        .contains("complete -c sipnat"));

    // The unit: the repository's, with the package's binary; systemd accepts it.
    let unit = std::fs::read_to_string(UNIT).unwrap();
    assert_eq!(
        unit,
        std::fs::read_to_string(REPO_UNIT)
            .unwrap()
            .replace("/usr/local/bin/sipnat", "/usr/sbin/sipnat")
    );
    assert!(unit.contains("\nExecStart=/usr/sbin/sipnat run -c /etc/sipnat/sipnat.toml\n"));
    common::assert_systemd_verifies(std::path::Path::new(UNIT));
    // Installed, not enabled, not started.
    for wants in [
        "/etc/systemd/system/multi-user.target.wants/sipnat.service",
        "/usr/lib/systemd/system/multi-user.target.wants/sipnat.service",
    ] {
        assert!(!Path::new(wants).exists(), "{wants}: enabled on install");
    }
    assert!(!Path::new("/run/sipnat").exists(), "started on install");

    // The conffile, the dashboard, the copyright.
    assert_eq!(
        std::fs::read_to_string(CONFIG).unwrap(),
        std::fs::read_to_string(REPO_CONFIG).unwrap()
    );
    let mode = std::fs::metadata(CONFIG).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let conffiles = ok(&["dpkg-query", "-W", "-f=${Conffiles}", "sipnat"]);
    assert_eq!(
        conffiles
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect::<Vec<_>>(),
        [CONFIG]
    );
    assert_eq!(
        std::fs::read_to_string("/usr/share/sipnat/grafana/sipnat.json").unwrap(),
        std::fs::read_to_string(REPO_DASHBOARD).unwrap()
    );
    let copyright = std::fs::read_to_string("/usr/share/doc/sipnat/copyright").unwrap();
    assert!(copyright
        .starts_with("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"));
    assert_eq!(
        copyright,
        std::fs::read_to_string(REPO_COPYRIGHT).unwrap(),
        "the package's copyright is packaging/debian/copyright"
    );

    // Remove: everything but the conffile goes.
    ok(&["dpkg", "--remove", "sipnat"]);
    assert_eq!(status(), "deinstall ok config-files");
    let left: Vec<&String> = files
        .iter()
        .filter(|f| Path::new(f).is_file() || Path::new(f).is_symlink())
        .collect();
    assert_eq!(left, [CONFIG], "after dpkg --remove");

    // Purge: nothing left.
    ok(&["dpkg", "--purge", "sipnat"]);
    let st = status();
    assert!(st.is_empty() || st.contains("not-installed"), "{st}");
    let left: Vec<&String> = files
        .iter()
        .filter(|f| Path::new(f).exists() && !shared_dir(f))
        .collect();
    assert!(left.is_empty(), "left after dpkg --purge: {left:?}");
    for d in ["/etc/sipnat", "/usr/share/sipnat", "/usr/share/doc/sipnat"] {
        assert!(!Path::new(d).exists(), "{d} left after purge");
    }
}

/// Directories other packages use too (dpkg keeps them while not empty).
fn shared_dir(path: &str) -> bool {
    let p = Path::new(path);
    p.is_dir()
        && !["/etc/sipnat", "/usr/share/sipnat", "/usr/share/doc/sipnat"]
            .iter()
            .any(|own| p.starts_with(own))
}

/// The licence a testdata/README.md table cell names, as the copyright file spells it.
fn licence_key(cell: &str) -> String {
    let cell = cell.trim();
    if cell.starts_with('©') {
        return "IETF-RFC".into();
    }
    if cell.starts_with("the reSIProcate") {
        return "reSIProcate".into();
    }
    if cell.starts_with("BSD 3-Clause") {
        return "BSD-3-Clause".into();
    }
    cell.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Every source in the licence table of testdata/README.md has its files in a stanza of
/// packaging/debian/copyright whose licence is the one the table names.
#[test]
fn copyright_names_the_licences_of_the_test_data() {
    let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/README.md");
    let text = std::fs::read_to_string(readme).unwrap_or_else(|e| panic!("{readme}: {e}"));
    let copyright = std::fs::read_to_string(REPO_COPYRIGHT).unwrap();
    let stanzas: Vec<&str> = copyright.split("\n\n").collect();
    let table = text
        .split("### Licences")
        .nth(1)
        .expect("testdata/README.md has a Licences section");
    let mut rows = 0;
    for line in table
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains('`'))
    {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (source, files, licence) = (cells[1], cells[2], cells[3]);
        let key = licence_key(licence);
        // The files the row is about (cross-checks against other copies do not count).
        let own = files.split("cross").next().unwrap_or(files);
        for path in own.split('`').skip(1).step_by(2) {
            let full = format!("testdata/corpus/{path}");
            let stanza = stanzas
                .iter()
                .find(|s| s.starts_with("Files:") && s.contains(&full))
                .unwrap_or_else(|| panic!("{source}: no Files stanza for {full}"));
            let lic = stanza
                .lines()
                .find(|l| l.starts_with("License:"))
                .unwrap_or_else(|| panic!("{source}: stanza for {full} without License"));
            assert!(
                lic.contains(&key),
                "{source}: {full} is {key}, copyright says {lic}"
            );
            // Each licence named is defined in a stand-alone License paragraph.
            for k in lic["License:".len()..]
                .split([' ', ','])
                .filter(|k| !k.is_empty() && *k != "and" && *k != "or")
            {
                assert!(
                    copyright.contains(&format!("\nLicense: {k}\n")),
                    "no License: {k} paragraph"
                );
            }
        }
        rows += 1;
    }
    assert!(rows >= 10, "{rows} licence rows read from {readme}");
    assert!(copyright.contains("Files: testdata/bench-inputs/*"));
}
