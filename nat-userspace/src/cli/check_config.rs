//! `sipnat check-config FILE`: syntax (with line and column), semantics, and this host's
//! interfaces. Prints every problem, one per line; exit 0 when the file is usable.

use std::{path::Path, process::ExitCode};

use super::EXIT_FAILURE;
use crate::config;

pub fn run(path: &Path) -> ExitCode {
    match config::load_checked(path, true) {
        Ok(cfg) => {
            let (v4, v6) = cfg.external_sources();
            println!(
                "{}: ok ({} → {}, {} rule(s), external {}{}, SIP ports {:?})",
                path.display(),
                cfg.interfaces.inside.get_ref(),
                cfg.interfaces.outside.get_ref(),
                cfg.nat.rule.len(),
                v4,
                if v6 == config::ExternalSource::None {
                    String::new()
                } else {
                    format!(" / {v6}")
                },
                cfg.interfaces.sip_ports.get_ref(),
            );
            for (key, a, why) in cfg.private_externals() {
                eprintln!(
                    "{}: warning: {key} {a} is {why}; accepted because nat.allow_private_external = true",
                    path.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
