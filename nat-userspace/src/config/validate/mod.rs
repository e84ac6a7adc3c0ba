//! The semantic checks of a parsed config, one file per section ([`Config::validate`]),
//! and the checks against this host ([`Config::check_system`]). Every message names the
//! key, the cause and the fix; `tests/config_golden.rs` pins them all.

use std::net::IpAddr;

use super::{
    diagnostics::{sort_problems, Problem, Problems},
    schema::Config,
};
use crate::nat::{addr::canonical, external::check_external, Net};

mod control;
mod datapath;
mod interfaces;
mod media;
mod nat;
mod system;

impl Config {
    /// Semantic checks that need no system access. `text` is the file the config came
    /// from (for positions). The problems are in file order.
    pub fn validate(&self, text: &str) -> Vec<Problem> {
        let mut p = Problems::new(text);
        interfaces::check(&mut p, &self.interfaces);
        nat::check(&mut p, &self.nat);
        media::check(&mut p, &self.media, &self.nat);
        control::check(&mut p, &self.control);
        datapath::check(&mut p, &self.datapath, &self.log);
        sort_problems(&mut p.list);
        p.list
    }
}

/// Why static external address `a` cannot be used (`None`: it can): the one check every
/// external-address source goes through ([`check_external`]), then, for a public address,
/// the configured local networks (traffic to an address inside them counts as internal).
/// The text follows the key and names the fix.
fn not_external(a: IpAddr, allow_private: bool, local: &[Net], fix: &str) -> Option<String> {
    match check_external(a, allow_private) {
        Err(r) => Some(r.explain(fix)),
        Ok(None) if local.iter().any(|n| n.contains(canonical(a))) => Some(format!(
            "{a} is inside nat.local_nets, so traffic to it would count as internal: {fix}, or remove its network from nat.local_nets"
        )),
        Ok(_) => None,
    }
}
