//! The Linux capabilities sipnat needs, in one place: `sipnat run` checks [`DAEMON`] before
//! it touches anything, the XDP diagnostics (`sipnat xdp ...`) check [`XDP`], and
//! `packaging/sipnat.service` grants exactly [`DAEMON`] (`tests/packaging.rs` keeps the unit
//! and this list equal).
//!
//! Each entry was verified against kernel 6.18 by running the daemon with exactly the set
//! minus that one capability (`setpriv --bounding-set`) in a namespace topology:
//! - without CAP_BPF the kernel refuses to create the maps (`SIPNAT_STATS`: EPERM);
//! - without CAP_NET_ADMIN it refuses the XSKMAP (`SIPNAT_XSKS`) and the XDP attach;
//! - without CAP_PERFMON the verifier rejects the program ("pointer arithmetic with it
//!   prohibited for !root" on the packet-pointer arithmetic of the header walk);
//! - without CAP_NET_RAW neither the slow path's raw IP/ICMP sockets nor the AF_XDP
//!   sockets open.
//!
//! Not needed (and not granted by the unit):
//! - CAP_IPC_LOCK: the UMEM (32 MiB per worker by default) is charged to RLIMIT_MEMLOCK
//!   unless the process has CAP_IPC_LOCK; the unit sets `LimitMEMLOCK=infinity` instead
//!   (without either, the socket setup fails with ENOBUFS).
//! - CAP_SYS_ADMIN: only to mount a bpffs when none is mounted at /sys/fs/bpf (systemd
//!   mounts one at boot).
//! - CAP_CHOWN: only to hand the control socket to `[control] group` when the daemon is
//!   not a member of it; the unit's `SupplementaryGroups=` avoids it.
//! - CAP_SYS_NICE: pinning its own threads to CPUs needs no privilege; the workers'
//!   SCHED_FIFO priority and negative nice value come from RLIMIT_RTPRIO / RLIMIT_NICE
//!   (the unit's `LimitRTPRIO=` and `LimitNICE=`).
//! - CAP_NET_BIND_SERVICE: only for a metrics port below 1024 (default 9560).

/// One capability: its bit (linux/capability.h), name and why sipnat needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    pub bit: u32,
    pub name: &'static str,
    pub why: &'static str,
    /// CAP_SYS_ADMIN also grants what sipnat uses this one for (the kernel's BPF checks
    /// accept it instead; kernels before 5.8 have no CAP_BPF and CAP_PERFMON at all).
    sys_admin_implies: bool,
}

impl Capability {
    const fn new(bit: u32, name: &'static str, why: &'static str, sys_admin_implies: bool) -> Self {
        Capability {
            bit,
            name,
            why,
            sys_admin_implies,
        }
    }
}

pub const CAP_NET_ADMIN: Capability = Capability::new(
    12,
    "CAP_NET_ADMIN",
    "attach XDP to the interfaces, create the XSKMAP",
    true,
);
pub const CAP_NET_RAW: Capability = Capability::new(
    13,
    "CAP_NET_RAW",
    "open the AF_XDP sockets and the slow path's raw IP/ICMP sockets",
    false,
);
pub const CAP_PERFMON: Capability = Capability::new(
    38,
    "CAP_PERFMON",
    "the verifier accepts the XDP program's packet-pointer arithmetic only with it",
    true,
);
pub const CAP_BPF: Capability = Capability::new(
    39,
    "CAP_BPF",
    "load the XDP program, create and update its maps",
    true,
);
const CAP_SYS_ADMIN: u32 = 21;

/// What loading and attaching the XDP program needs (`sipnat xdp info|watch`).
pub const XDP: &[Capability] = &[CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON];

/// What `sipnat run` needs; exactly what `packaging/sipnat.service` grants.
pub const DAEMON: &[Capability] = &[CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW, CAP_PERFMON];

/// The names of `caps`, as "A, B, C and D".
pub fn list(caps: &[Capability]) -> String {
    let names: Vec<&str> = caps.iter().map(|c| c.name).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

/// The capabilities of `needed` this process lacks in its effective set (empty when it
/// has them all, or when it cannot tell: the kernel decides then).
pub fn missing(needed: &[Capability]) -> Vec<&'static str> {
    match effective() {
        Some(eff) => missing_from(eff, needed),
        None => Vec::new(),
    }
}

fn missing_from(eff: u64, needed: &[Capability]) -> Vec<&'static str> {
    let has = |bit: u32| eff & (1u64 << bit) != 0;
    let granted = |c: &Capability| has(c.bit) || (c.sys_admin_implies && has(CAP_SYS_ADMIN));
    needed
        .iter()
        .filter(|c| !granted(c))
        .map(|c| c.name)
        .collect()
}

/// The effective capability set (`CapEff` of /proc/self/status).
fn effective() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line["CapEff:".len()..].trim(), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(caps: &[Capability]) -> u64 {
        caps.iter().fold(0, |m, c| m | (1 << c.bit))
    }

    #[test]
    fn missing_names_what_is_absent() {
        assert!(missing_from(mask(DAEMON), DAEMON).is_empty());
        assert_eq!(
            missing_from(mask(&[CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON]), DAEMON),
            ["CAP_NET_RAW"]
        );
        assert_eq!(
            missing_from(0, XDP),
            ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"]
        );
        // CAP_SYS_ADMIN stands in for the BPF ones, not for CAP_NET_RAW.
        assert!(missing_from(1 << CAP_SYS_ADMIN, XDP).is_empty());
        assert_eq!(missing_from(1 << CAP_SYS_ADMIN, DAEMON), ["CAP_NET_RAW"]);
    }

    #[test]
    fn lists_read_as_a_sentence() {
        assert_eq!(
            list(DAEMON),
            "CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW and CAP_PERFMON"
        );
        assert_eq!(list(&[CAP_BPF]), "CAP_BPF");
    }
}
