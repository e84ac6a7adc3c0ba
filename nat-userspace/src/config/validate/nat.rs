//! `[nat]`: local networks, the external addresses, every `[[nat.rule]]` (its network,
//! external address and port map) and the flow table.

use std::net::IpAddr;

use super::{
    super::{
        diagnostics::{position, Problems, Span},
        schema::{ExternalSource, Nat, RuleCfg},
    },
    not_external,
};
use crate::nat::{napt::PortRange, L3Mode, Net};

pub(super) fn check(p: &mut Problems, n: &Nat) {
    let local = local_nets(p, n);
    externals(p, n, &local);
    let mut nets: Vec<(Net, Span)> = Vec::new();
    for (k, r) in n.rule.iter().enumerate() {
        rule(p, n, &local, &k.to_string(), r, &mut nets);
    }
    if n.flow_table_size == 0 || n.flow_table_size > 1 << 24 {
        p.add_at(
            &["nat", "flow_table_size"],
            format!(
                "nat.flow_table_size {} is out of range: use 1 to 16777216 (flows)",
                n.flow_table_size
            ),
        );
    }
    let range = n.port_range.get_ref();
    if !range.trim().is_empty() && PortRange::parse(range).is_none() {
        let s = p.at_or(&n.port_range.span(), &["nat", "port_range"]);
        p.add(
            &s,
            format!(
                "nat.port_range `{range}` is not a port range: write FIRST-LAST with 1 <= FIRST <= LAST <= 65535, e.g. \"20000-29999\", or \"\" for no port translation"
            ),
        );
    }
    if n.flow_idle_timeout == 0 {
        p.add_at(
            &["nat", "flow_idle_timeout"],
            "nat.flow_idle_timeout is 0: use at least 1 (seconds), e.g. 300".into(),
        );
    }
}

/// `nat.local_nets`, the networks that parse.
fn local_nets(p: &mut Problems, n: &Nat) -> Vec<Net> {
    let mut local = Vec::new();
    for ln in &n.local_nets {
        match Net::parse(ln.get_ref()) {
            Some(n) => local.push(n),
            None => p.add(
                &ln.span(),
                format!(
                    "nat.local_nets entry `{}` is not a network: write ADDRESS/PREFIX, e.g. \"10.0.0.0/8\"",
                    ln.get_ref()
                ),
            ),
        }
    }
    local
}

/// `nat.external_ip`, `nat.external_ip6`, and that some external address and some rule exist.
fn externals(p: &mut Problems, n: &Nat, local: &[Net]) {
    for (key, e, want_v6) in [
        ("external_ip", &n.external_ip, false),
        ("external_ip6", &n.external_ip6, true),
    ] {
        let s = p.at_or(&e.span(), &["nat", key]);
        match ExternalSource::parse(e.get_ref()) {
            Err(m) => p.add(&s, format!("nat.{key} {m}")),
            Ok(ExternalSource::Static(a)) if a.is_ipv6() != want_v6 => p.add(
                &s,
                if want_v6 {
                    format!("nat.external_ip6 must be an IPv6 address, not {a}: put IPv4 addresses in nat.external_ip")
                } else {
                    format!("nat.external_ip must be an IPv4 address, not {a}: put IPv6 addresses in nat.external_ip6")
                },
            ),
            Ok(ExternalSource::Static(a)) => {
                let allow = n.allow_private_external;
                let fix = "give the public address that peers see";
                if let Some(m) = not_external(a, allow, local, fix) {
                    p.add(&s, format!("nat.{key} {m}"));
                }
            }
            Ok(_) => {}
        }
    }
    let no_v4 = n.external_ip.get_ref().trim().is_empty();
    let no_v6 = n.external_ip6.get_ref().trim().is_empty();
    let any_rule_external = n.rule.iter().any(|r| r.external.is_some());
    if no_v4 && no_v6 && !any_rule_external {
        p.add_at(
            &["nat"],
            "nat.external_ip is not set: give the public address (e.g. external_ip = \"203.0.113.10\"), stun:HOST:PORT or interface:NAME".into(),
        );
    }
    if n.rule.is_empty() {
        p.add_at(
            &["nat"],
            "there is no [[nat.rule]], so nothing would be rewritten: add one, e.g. [[nat.rule]] with internal = \"10.0.0.0/24\"".into(),
        );
    }
}

/// One `[[nat.rule]]` (index `k`); its network joins `nets` (for the overlap check).
fn rule(
    p: &mut Problems,
    n: &Nat,
    local: &[Net],
    k: &str,
    r: &RuleCfg,
    nets: &mut Vec<(Net, Span)>,
) {
    let internal_span = p.at_or(&r.internal.span(), &["nat", "rule", k, "internal"]);
    let Some(net) = Net::parse(r.internal.get_ref()) else {
        p.add(
            &internal_span,
            format!(
                "nat.rule.internal `{}` is not a network or an address: write e.g. \"10.0.0.0/24\" or \"10.0.0.5\"",
                r.internal.get_ref()
            ),
        );
        return;
    };
    if let Some((other, at)) = nets.iter().find(|(n, _)| n.overlaps(&net)) {
        p.add(
            &internal_span,
            format!(
                "nat.rule.internal {net} overlaps the rule for {other} on line {}: an address would match both; make the rules disjoint",
                position(p.text, at).0
            ),
        );
    }
    if !local.iter().any(|l| net.within(l)) {
        p.add(
            &internal_span,
            format!(
                "nat.rule.internal {net} is not inside nat.local_nets, so public addresses would be rewritten: use a private network, or add it to nat.local_nets"
            ),
        );
    }
    rule_external(p, n, local, k, r, net, &internal_span);
    rule_ports(p, n, k, r);
    nets.push((net, internal_span));
}

/// A rule's `external` address (or the global one it falls back to).
fn rule_external(
    p: &mut Problems,
    n: &Nat,
    local: &[Net],
    k: &str,
    r: &RuleCfg,
    net: Net,
    internal_span: &Span,
) {
    let no_v4 = n.external_ip.get_ref().trim().is_empty();
    let no_v6 = n.external_ip6.get_ref().trim().is_empty();
    let any_rule_external = n.rule.iter().any(|r| r.external.is_some());
    let v4 = matches!(net, Net::V4 { .. });
    match &r.external {
        Some(e) => {
            let s = p.at_or(&e.span(), &["nat", "rule", k, "external"]);
            match e.get_ref().parse::<IpAddr>() {
                Err(_) => p.add(
                    &s,
                    format!(
                        "nat.rule.external `{}` is not an IP address: a rule's external address must be written out, e.g. \"203.0.113.11\"",
                        e.get_ref()
                    ),
                ),
                Ok(a) if a.is_ipv4() != v4 => p.add(
                    &s,
                    format!(
                        "nat.rule.external {a} is {} but the rule's internal {net} is {}: use an external address of the same family",
                        if v4 { "IPv6" } else { "IPv4" },
                        if v4 { "IPv4" } else { "IPv6" },
                    ),
                ),
                Ok(a) => {
                    let allow = n.allow_private_external;
                    let fix = "give the public address these hosts appear as";
                    if let Some(m) = not_external(a, allow, local, fix) {
                        p.add(&s, format!("nat.rule.external {m}"));
                    }
                }
            }
        }
        None if (v4 && no_v4 || !v4 && no_v6) && !(no_v4 && no_v6 && !any_rule_external) => {
            let key = if v4 { "external_ip" } else { "external_ip6" };
            p.add(
                internal_span,
                format!("nat.rule.internal {net} has no external address: set nat.{key}, or `external` in this rule"),
            );
        }
        None => {}
    }
}

/// A rule's port map: size, keys, values, no two onto one port, none under snat.
fn rule_ports(p: &mut Problems, n: &Nat, k: &str, r: &RuleCfg) {
    let map = r.ports.get_ref();
    let ports_path = ["nat", "rule", k, "ports"];
    if map.len() > crate::nat::rules::MAX_PORT_MAP {
        let s = p.at_or(&r.ports.span(), &ports_path);
        p.add(
            &s,
            format!(
                "nat.rule.ports has {} entries but at most {} are supported: remove {}",
                map.len(),
                crate::nat::rules::MAX_PORT_MAP,
                map.len() - crate::nat::rules::MAX_PORT_MAP
            ),
        );
    }
    let mut seen: Vec<(u16, &str)> = Vec::new();
    for (key, &ext) in map {
        let entry = ["nat", "rule", k, "ports", key.as_str()];
        if key.parse::<u16>().map_or(true, |v| v == 0) {
            let s = p.key_at(&entry, key);
            p.add(
                &s,
                format!(
                    "nat.rule.ports key `{key}` is not a port number: map internal to external ports, e.g. ports = {{ 5060 = 15060 }}"
                ),
            );
        }
        if ext == 0 {
            let s = p.at(&entry);
            p.add(&s, format!("nat.rule.ports maps {key} to 0, which is not a port: use a port number from 1 to 65535"));
        } else if let Some((_, other)) = seen.iter().find(|(e, _)| *e == ext) {
            let s = p.at(&entry);
            p.add(
                &s,
                format!(
                    "nat.rule.ports maps both {other} and {key} to {ext}, so replies to {ext} could not be mapped back: give each its own external port"
                ),
            );
        }
        seen.push((ext, key));
    }
    // The data path translates addresses only: under snat the UDP ports stay,
    // so the SIP text would announce ports the packets do not come from.
    if let (L3Mode::Snat, Some((int, ext))) = (n.l3, map.iter().next()) {
        let s = p.at_or(&r.ports.span(), &ports_path);
        p.add(
            &s,
            format!(
                "nat.rule.ports maps ports, but with nat.l3 = \"snat\" sipnat translates addresses only, never UDP ports: packets would leave from port {int} while the SIP and SDP announce {ext}; use l3 = \"keep\" behind an upstream NAT that forwards the external ports to the internal ones, or remove the port map"
            ),
        );
    }
}
