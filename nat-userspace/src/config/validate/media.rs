//! `[media]`: the media port range (RTP/RTCP pairs, apart from the NAPT range) and the
//! idle timeout.

use super::super::{
    diagnostics::Problems,
    schema::{Media, Nat},
};
use crate::nat::napt::PortRange;

pub(super) fn check(p: &mut Problems, m: &Media, n: &Nat) {
    let s = p.at_or(&m.port_range.span(), &["media", "port_range"]);
    match PortRange::parse(m.port_range.get_ref()) {
        None => p.add(
            &s,
            format!(
                "media.port_range `{}` is not a port range: write FIRST-LAST with 1 <= FIRST < LAST <= 65535 (RTP/RTCP pairs), e.g. \"30000-39999\"",
                m.port_range.get_ref()
            ),
        ),
        Some(r) if r.len() < 2 => p.add(
            &s,
            format!(
                "media.port_range `{r}` holds no RTP/RTCP pair: give at least an even and the next odd port, e.g. \"30000-39999\""
            ),
        ),
        Some(r) => {
            if let Some(nr) = n.napt_range() {
                if r.first <= nr.last && nr.first <= r.last {
                    p.add(
                        &s,
                        format!(
                            "media.port_range `{r}` overlaps nat.port_range `{nr}`: SIP and media bindings need ports of their own; move one of them"
                        ),
                    );
                }
            }
        }
    }
    if m.idle_timeout == 0 {
        p.add_at(
            &["media", "idle_timeout"],
            "media.idle_timeout is 0: use at least 1 (seconds), e.g. 60".into(),
        );
    }
}
