//! `[interfaces]`: both interfaces named and different, SIP ports, queue numbers.

use super::super::{
    diagnostics::Problems,
    schema::{Interfaces, Queues},
};

pub(super) fn check(p: &mut Problems, i: &Interfaces) {
    for (key, v, what) in [
        (
            "inside",
            &i.inside,
            "the interface facing the private network, e.g. inside = \"eth1\"",
        ),
        (
            "outside",
            &i.outside,
            "the interface facing the carrier or the internet, e.g. outside = \"eth0\"",
        ),
    ] {
        if v.get_ref().trim().is_empty() {
            let s = p.at_or(&v.span(), &["interfaces", key]);
            p.add(&s, format!("interfaces.{key} is not set: name {what}"));
        }
    }
    if !i.inside.get_ref().trim().is_empty() && i.inside.get_ref() == i.outside.get_ref() {
        p.add(
            &i.outside.span(),
            format!(
                "interfaces.inside and interfaces.outside are both `{}`: name two different interfaces, one on each side of the NAT",
                i.outside.get_ref()
            ),
        );
    }
    let ports = i.sip_ports.get_ref();
    let ports_span = p.at_or(&i.sip_ports.span(), &["interfaces", "sip_ports"]);
    if ports.is_empty() {
        p.add(
            &ports_span,
            "interfaces.sip_ports is empty: list the UDP ports that carry SIP, e.g. sip_ports = [5060]".into(),
        );
    } else if ports.len() > nat_common::MAX_SIP_PORTS as usize {
        p.add(
            &ports_span,
            format!(
                "interfaces.sip_ports lists {} ports but at most {} are supported: remove {}",
                ports.len(),
                nat_common::MAX_SIP_PORTS,
                ports.len() - nat_common::MAX_SIP_PORTS as usize
            ),
        );
    }
    for (k, _) in ports.iter().enumerate().filter(|(_, &port)| port == 0) {
        p.add_at(
            &["interfaces", "sip_ports", &k.to_string()],
            "interfaces.sip_ports contains 0, which is not a port: use port numbers from 1 to 65535".into(),
        );
    }
    if let Queues::List(l) = &i.queues {
        for (k, &q) in l.iter().enumerate() {
            let s = p.at(&["interfaces", "queues", &k.to_string()]);
            if q >= nat_common::MAX_QUEUES {
                p.add(
                    &s,
                    format!(
                        "interfaces.queues contains queue {q}, but queue numbers must be below {}: list the NIC's RX queues (see `ethtool -l`)",
                        nat_common::MAX_QUEUES
                    ),
                );
            } else if l[..k].contains(&q) {
                p.add(
                    &s,
                    format!("interfaces.queues lists queue {q} twice: list each queue once"),
                );
            }
        }
    }
}
