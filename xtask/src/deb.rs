//! `cargo xtask deb`: the Debian package (cargo-deb).
//!
//! 1. `cargo build --release -p nat-userspace --bin sipnat`;
//! 2. the man pages (`sipnat.8` and one per subcommand) and the bash/zsh/fish completions,
//!    generated from the clap definitions (`nat-userspace/examples/gen-assets.rs`; the
//!    pages gzipped as Debian policy wants), and the
//!    packaged unit (`packaging/sipnat.service` with the binary at `/usr/sbin/sipnat`), all
//!    into `<target>/release/deb-assets/`;
//! 3. `cargo deb -p nat-userspace --no-build` with `[package.metadata.deb]` of
//!    nat-userspace's Cargo.toml; the .deb lands in `<target>/debian/`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::shell;

/// Where the hand-installed unit runs the binary, and where the package puts it.
const HAND_BIN: &str = "/usr/local/bin/sipnat";
const PACKAGE_BIN: &str = "/usr/sbin/sipnat";

/// The cargo target directory (`CARGO_TARGET_DIR` or `<workspace>/target`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                shell::workspace_root().join(d)
            }
        }
        None => shell::workspace_root().join("target"),
    }
}

/// The packaged unit: the repository's unit with the package's binary path.
pub fn packaged_unit(text: &str) -> String {
    text.replace(HAND_BIN, PACKAGE_BIN)
}

/// Builds the package; returns the path of the .deb.
pub fn build() -> anyhow::Result<PathBuf> {
    crate::setup::cargo_deb()?;
    shell::build_sipnat_release("deb: build sipnat (release)")?;

    let assets = target_dir().join("release/deb-assets");
    shell::step("deb: man pages and completions from the clap definitions");
    shell::run(
        shell::cargo()
            .args([
                "run",
                "--release",
                "-q",
                "-p",
                "nat-userspace",
                "--example",
                "gen-assets",
                "--",
            ])
            .arg(&assets),
    )?;
    // Debian policy: compressed man pages (cargo-deb leaves files from target/ alone).
    for e in std::fs::read_dir(assets.join("man"))?.filter_map(Result::ok) {
        if e.path().extension().is_some_and(|x| x == "8") {
            shell::run(
                std::process::Command::new("gzip")
                    .args(["-9nf"])
                    .arg(e.path()),
            )?;
        }
    }
    let unit = shell::workspace_root().join("packaging/sipnat.service");
    let text =
        std::fs::read_to_string(&unit).with_context(|| format!("reading {}", unit.display()))?;
    if !text.contains(HAND_BIN) {
        bail!(
            "{} no longer runs {HAND_BIN}: update xtask/src/deb.rs",
            unit.display()
        );
    }
    std::fs::write(assets.join("sipnat.service"), packaged_unit(&text))?;

    shell::step("deb: cargo deb");
    let out_dir = target_dir().join("debian");
    let _ = std::fs::remove_dir_all(&out_dir);
    shell::run(shell::cargo().args(["deb", "-p", "nat-userspace", "--no-build", "--strip"]))?;
    let deb = find_deb(&out_dir)?;
    println!("\n    package: {}", deb.display());
    println!("    install: dpkg -i {}", deb.display());
    Ok(deb)
}

fn find_deb(dir: &Path) -> anyhow::Result<PathBuf> {
    crate::setup::find_file(dir, |n| n.starts_with("sipnat_") && n.ends_with(".deb"))?
        .with_context(|| format!("cargo deb made no sipnat_*.deb in {}", dir.display()))
}
