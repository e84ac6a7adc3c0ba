//! `[control]`: the socket path, the metrics address, the group.

use std::net::SocketAddr;

use super::super::{diagnostics::Problems, schema::Control, DEFAULT_SOCKET};

pub(super) fn check(p: &mut Problems, c: &Control) {
    let s = p.at(&["control", "socket"]);
    if c.socket.as_os_str().is_empty() {
        p.add(
            &s,
            format!("control.socket is empty: give the path of the control socket, e.g. \"{DEFAULT_SOCKET}\""),
        );
    } else if !c.socket.is_absolute() {
        p.add(
            &s,
            format!(
                "control.socket `{}` is a relative path: give an absolute path, e.g. \"{DEFAULT_SOCKET}\"",
                c.socket.display()
            ),
        );
    } else if c.socket.as_os_str().len() > 107 {
        p.add(
            &s,
            format!(
                "control.socket is {} bytes long but a Unix socket path may have at most 107: use a shorter path",
                c.socket.as_os_str().len()
            ),
        );
    }
    let m = c.metrics.get_ref();
    if !m.is_empty() && m.parse::<SocketAddr>().is_err() {
        let s = p.at_or(&c.metrics.span(), &["control", "metrics"]);
        p.add(
            &s,
            format!("control.metrics `{m}` is not ADDRESS:PORT: write e.g. \"127.0.0.1:9560\", or \"\" to turn the endpoint off"),
        );
    }
    if c.group.as_deref().is_some_and(|g| g.trim().is_empty()) {
        p.add_at(
            &["control", "group"],
            "control.group is empty: name a group, or remove the key".into(),
        );
    }
}
