//! Checks against this host: interfaces, their queues, the control group.

use super::super::{
    diagnostics::{Problem, Problems},
    schema::Config,
};

impl Config {
    /// Checks against this host: the interfaces exist (in this network namespace), they
    /// have the queues `interfaces.queues` needs ([`Queues::resolve`]), and the control
    /// group exists.
    pub fn check_system(&self, text: &str) -> Vec<Problem> {
        let mut p = Problems::new(text);
        let mut present = 0;
        for (key, i) in [
            ("inside", &self.interfaces.inside),
            ("outside", &self.interfaces.outside),
        ] {
            if !i.get_ref().is_empty() && crate::sys::if_index(i.get_ref()).is_some() {
                present += 1;
            }
            if !i.get_ref().is_empty() && crate::sys::if_index(i.get_ref()).is_none() {
                let s = p.at_or(&i.span(), &["interfaces", key]);
                p.add(
                    &s,
                    format!(
                        "interfaces.{key} `{}` is not an interface on this host: check the name with `ip link`",
                        i.get_ref()
                    ),
                );
            }
        }
        if present == 2 {
            if let Err(problems) = self.queues_on_this_host() {
                for q in problems {
                    let s = match q.index {
                        Some(k) => p.at(&["interfaces", "queues", &k.to_string()]),
                        None => p.at(&["interfaces", "queues"]),
                    };
                    p.add(&s, q.message);
                }
            }
        }
        if let Some(g) = self
            .control
            .group
            .as_deref()
            .filter(|g| !g.trim().is_empty())
        {
            if !group_exists(g) {
                p.add_at(
                    &["control", "group"],
                    format!("control.group `{g}` does not exist on this host: create it (groupadd {g}) or remove the key"),
                );
            }
        }
        p.list
    }
}

/// Does the group exist (getgrnam_r)?
fn group_exists(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    loop {
        // SAFETY: plain C struct, filled in by getgrnam_r.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::group = std::ptr::null_mut();
        // SAFETY: valid C string, buffer and out-pointers that live across the call.
        let r = unsafe {
            libc::getgrnam_r(c.as_ptr(), &mut grp, buf.as_mut_ptr(), buf.len(), &mut out)
        };
        if r == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        return r == 0 && !out.is_null();
    }
}
