//! Generates the man pages and shell completions of the Debian package from the clap
//! definitions (`sipnat::cli::command()`), so they never drift from `sipnat --help`.
//!
//! `cargo run --release -p nat-userspace --example gen-assets -- OUT_DIR` writes
//! - `OUT_DIR/man/sipnat.8` and one page per subcommand (`sipnat-run.8`,
//!   `sipnat-set-external-ip.8`, ...), section 8 (system administration);
//! - `OUT_DIR/completions/sipnat.bash`, `_sipnat` (zsh), `sipnat.fish`.
//!
//! `cargo xtask deb` runs it before `cargo deb`.

use std::{fs, path::Path};

use clap_complete::Shell;

const SECTION: &str = "8";

fn main() -> std::io::Result<()> {
    let out = std::env::args_os().nth(1).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "usage: gen-assets OUT_DIR",
        )
    })?;
    let out = Path::new(&out);
    let man = out.join("man");
    let completions = out.join("completions");
    for d in [&man, &completions] {
        if d.exists() {
            fs::remove_dir_all(d)?;
        }
        fs::create_dir_all(d)?;
    }
    let mut cmd = sipnat::cli::command();
    cmd.build();
    let mut pages = 0;
    man_pages(&cmd, "", &man, &mut pages)?;
    for (shell, file) in [
        (Shell::Bash, "sipnat.bash"),
        (Shell::Zsh, "_sipnat"),
        (Shell::Fish, "sipnat.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut sipnat::cli::command(), "sipnat", &mut buf);
        fs::write(completions.join(file), buf)?;
    }
    println!(
        "{pages} man pages in {}, completions (bash, zsh, fish) in {}",
        man.display(),
        completions.display()
    );
    Ok(())
}

/// `sipnat.8` for the top level, then `sipnat-<sub>[-<subsub>].8` for every subcommand
/// (hidden ones and clap's own `help` left out).
fn man_pages(
    cmd: &clap::Command,
    prefix: &str,
    dir: &Path,
    pages: &mut usize,
) -> std::io::Result<()> {
    let name = if prefix.is_empty() {
        cmd.get_name().to_string()
    } else {
        format!("{prefix}-{}", cmd.get_name())
    };
    // The page's title is its file name; its NAME line reads `sipnat-set-external-ip`.
    // (clap takes `&'static str` names without its `string` feature: a short-lived
    // generator can leak them.)
    let title: &'static str = Box::leak(name.clone().into_boxed_str());
    let page = cmd.clone().name(title).display_name(title);
    let mut buf = Vec::new();
    clap_mangen::Man::new(page)
        .section(SECTION)
        .manual("System Administration")
        .source(format!("sipnat {}", env!("CARGO_PKG_VERSION")))
        .render(&mut buf)?;
    fs::write(dir.join(format!("{name}.{SECTION}")), buf)?;
    *pages += 1;
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        man_pages(sub, &name, dir, pages)?;
    }
    Ok(())
}
