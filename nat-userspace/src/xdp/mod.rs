//! The XDP steering program from userspace: load it (the kernel verifier runs here), fill
//! its config and SIP-port maps, attach it to an interface, read its verdict counters, and
//! detach it (on drop, and by the kernel when the process dies: attachments are BPF links
//! owned by this process's file descriptors).
//!
//! For hitless restarts the daemon pins the link and the maps in bpffs ([`SteeringProgram::pin`]):
//! the program then stays attached after the process ends (its XSKMAP slots empty out, so
//! the failure mode applies), and the next daemon [`adopts`](SteeringProgram::adopt) it —
//! same maps, counters continuing — instead of detaching and re-attaching.
//!
//! One [`SteeringProgram`] per interface: its maps (XSKMAP, counters, media bindings) are
//! that interface's. The media NAT's bindings of both interfaces are reached through
//! [`media::MediaMaps`].

pub mod media;

use std::{
    io,
    path::{Path, PathBuf},
};

use aya::{
    maps::{Array, DevMapHash, Map, MapData, PerCpuArray, XskMap},
    programs::{
        links::{FdLink, PinnedLink},
        ProgramError, Xdp, XdpMode,
    },
    Ebpf, EbpfError,
};
use nat_common::{
    flags, maps, sip_port_bit, stat, SipPortSet, XdpConfig, MAX_SIP_PORTS, SIP_PORT_WORDS,
};

use crate::sys;

/// The XDP object built by `build.rs` (aya-build), embedded in the binary.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sipnat-xdp"));

/// How to attach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// Native (driver) mode; fall back to generic (skb) mode with a warning.
    #[default]
    Auto,
    /// Native mode or fail.
    Native,
    /// Generic (skb) mode only (slow; for drivers without XDP support).
    Generic,
}

/// The mode an attachment ended up in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachedMode {
    Native,
    Generic,
}

impl std::fmt::Display for AttachedMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttachedMode::Native => "native",
            AttachedMode::Generic => "generic",
        })
    }
}

/// XDP verdict when the queue has no AF_XDP socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// The kernel forwards the packet unrewritten (fail open).
    #[default]
    Pass,
    /// The packet is dropped (fail closed).
    Drop,
}

/// What the XDP program is told to do; written to its config map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SteeringConfig {
    pub enabled: bool,
    pub on_failure: FailureMode,
    pub steer_fragments: bool,
}

impl Default for SteeringConfig {
    fn default() -> Self {
        SteeringConfig {
            enabled: true,
            on_failure: FailureMode::Pass,
            steer_fragments: true,
        }
    }
}

impl SteeringConfig {
    fn to_map_value(self) -> XdpConfig {
        let mut f = 0;
        if self.enabled {
            f |= flags::ENABLED;
        }
        if self.on_failure == FailureMode::Drop {
            f |= flags::FAIL_DROP;
        }
        if self.steer_fragments {
            f |= flags::STEER_FRAGMENTS;
        }
        XdpConfig {
            flags: f,
            _reserved: 0,
        }
    }
}

/// Errors an operator can act on; each message names the cause and the fix.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error(
        "loading the XDP program needs root or the capabilities CAP_BPF, CAP_NET_ADMIN and \
         CAP_PERFMON (missing: {missing}); run sipnat as root or through packaging/sipnat.service"
    )]
    NotPermitted { missing: String },
    #[error("the kernel refused to load the XDP program: {0}")]
    Load(String),
    #[error(
        "interface `{0}` does not exist in this network namespace; check the name with `ip link`"
    )]
    UnknownInterface(String),
    #[error(
        "another XDP program is already attached to `{iface}` (see `ip link show dev {iface}`); \
         stop its owner or detach it with `ip link set dev {iface} xdp off`, then retry"
    )]
    AlreadyAttached { iface: String },
    #[error(
        "the driver of `{iface}` refused native XDP: {reason}{hint}; set the attach mode to \
         `auto` to fall back to generic XDP"
    )]
    NativeRefused {
        iface: String,
        reason: io::Error,
        hint: &'static str,
    },
    #[error("attaching XDP to `{iface}` failed: {reason}")]
    AttachRefused { iface: String, reason: String },
    #[error("SIP port set has {0} ports; at most {MAX_SIP_PORTS} are supported")]
    TooManyPorts(usize),
    #[error("SIP port set is empty: nothing would be steered")]
    NoPorts,
    #[error("XDP map access failed: {0}")]
    Map(String),
    #[error("XDP pinning (hitless restart) failed: {0}")]
    Pin(String),
}

/// Which side of the gateway a program is on: decides what a media binding translates
/// (inside: the source of packets from the internal host; outside: the destination of
/// packets to the external address).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Side {
    #[default]
    Inside,
    Outside,
}

/// The steering program, loaded (verified) and optionally attached to one interface.
pub struct SteeringProgram {
    /// The loaded object (`None` when adopted from pins: the program lives on in the kernel).
    ebpf: Option<Ebpf>,
    /// The maps, owned here (taken from the object or opened from their pins).
    maps: Vec<(&'static str, Map)>,
    /// The media NAT flags (`MEDIA_NAT`, `MEDIA_OUTSIDE`) kept across `set_config`.
    media_flags: u32,
    attached: Option<(String, AttachedMode)>,
    link: Option<aya::programs::xdp::XdpLinkId>,
    pinned: Option<(PathBuf, PinnedLink)>,
}

const MAP_NAMES: [&str; 6] = [
    maps::CONFIG,
    maps::SIP_PORTS,
    maps::XSKS,
    maps::STATS,
    maps::MEDIA,
    maps::EGRESS,
];

/// The pinned link's file name records what it is attached to (bpffs holds only BPF
/// objects and directories, no plain files): `link-<ifindex>-<native|generic>`.
const LINK_PREFIX: &str = "link-";

/// The pinned link in `dir`: (path, ifindex, mode).
fn find_link(dir: &Path) -> Option<(PathBuf, u32, AttachedMode)> {
    std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        let name = e.file_name().into_string().ok()?;
        let rest = name.strip_prefix(LINK_PREFIX)?;
        let (idx, mode) = rest.split_once('-')?;
        let mode = if mode == "generic" {
            AttachedMode::Generic
        } else {
            AttachedMode::Native
        };
        Some((e.path(), idx.parse().ok()?, mode))
    })
}

impl SteeringProgram {
    /// Loads the program into the kernel (runs the verifier). Needs privileges.
    pub fn load() -> Result<Self, XdpError> {
        let missing = sys::caps::missing(sys::caps::XDP);
        if !missing.is_empty() {
            return Err(XdpError::NotPermitted {
                missing: missing.join(", "),
            });
        }
        sys::raise_memlock_limit();
        let mut ebpf = Ebpf::load(OBJECT).map_err(|e| match e {
            EbpfError::MapError(m) if is_eperm(&m.to_string()) => XdpError::NotPermitted {
                missing: "(EPERM from the kernel)".into(),
            },
            other => XdpError::Load(other.to_string()),
        })?;
        let prog: &mut Xdp = ebpf
            .program_mut(nat_common::PROGRAM_NAME)
            .ok_or_else(|| XdpError::Load("program missing from the object".into()))?
            .try_into()
            .map_err(|e: ProgramError| XdpError::Load(e.to_string()))?;
        prog.load().map_err(|e| XdpError::Load(e.to_string()))?;
        let mut taken = Vec::new();
        for name in MAP_NAMES {
            let m = ebpf
                .take_map(name)
                .ok_or_else(|| XdpError::Load(format!("map {name} missing from the object")))?;
            taken.push((name, m));
        }
        let mut this = SteeringProgram {
            ebpf: Some(ebpf),
            maps: taken,
            media_flags: 0,
            attached: None,
            link: None,
            pinned: None,
        };
        this.set_config(SteeringConfig::default())?;
        Ok(this)
    }

    /// The loaded program (for `BPF_PROG_TEST_RUN` and program info). Panics for a
    /// program adopted from pins (only the daemon adopts, and it never asks).
    pub fn program(&self) -> &Xdp {
        self.ebpf
            .as_ref()
            .expect("a freshly loaded program")
            .program(nat_common::PROGRAM_NAME)
            .and_then(|p| <&Xdp>::try_from(p).ok())
            .expect("loaded in load()")
    }

    fn program_mut(&mut self) -> &mut Xdp {
        self.ebpf
            .as_mut()
            .expect("a freshly loaded program")
            .program_mut(nat_common::PROGRAM_NAME)
            .and_then(|p| <&mut Xdp>::try_from(p).ok())
            .expect("loaded in load()")
    }

    /// Translated instruction count and the verifier's processed-instruction count.
    pub fn instruction_counts(&self) -> Result<(u32, Option<u32>), XdpError> {
        let Some(ebpf) = &self.ebpf else {
            return Err(XdpError::Load(
                "program adopted from pins: no object loaded".into(),
            ));
        };
        let prog: &Xdp = ebpf
            .program(nat_common::PROGRAM_NAME)
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| XdpError::Load("program missing".into()))?;
        let info = prog.info().map_err(|e| XdpError::Load(e.to_string()))?;
        let xlated = info.size_translated().unwrap_or(0) / 8;
        Ok((xlated, info.verified_instruction_count()))
    }

    /// Writes the config map (takes effect on the next packet). The media NAT flags set
    /// with [`Self::set_media_nat`] / [`Self::set_side`] are kept.
    pub fn set_config(&mut self, cfg: SteeringConfig) -> Result<(), XdpError> {
        let mut v = cfg.to_map_value();
        v.flags |= self.media_flags;
        let mut map: Array<&mut MapData, XdpConfig> = self.map_mut(maps::CONFIG)?;
        map.set(0, v, 0).map_err(map_err)
    }

    /// Rewrites only the media NAT bits of the config map.
    fn write_media_flags(&mut self) -> Result<(), XdpError> {
        let mut v = self.config()?;
        v.flags = (v.flags & !(flags::MEDIA_NAT | flags::MEDIA_OUTSIDE)) | self.media_flags;
        let mut map: Array<&mut MapData, XdpConfig> = self.map_mut(maps::CONFIG)?;
        map.set(0, v, 0).map_err(map_err)
    }

    /// Turns the media NAT on or off (takes effect on the next packet): on, UDP that is not
    /// steered is looked up in the media binding map and translated on a match.
    pub fn set_media_nat(&mut self, on: bool) -> Result<(), XdpError> {
        if on {
            self.media_flags |= flags::MEDIA_NAT;
        } else {
            self.media_flags &= !flags::MEDIA_NAT;
        }
        self.write_media_flags()
    }

    /// Tells the program which side it is on (what a media binding translates).
    pub fn set_side(&mut self, side: Side) -> Result<(), XdpError> {
        match side {
            Side::Inside => self.media_flags &= !flags::MEDIA_OUTSIDE,
            Side::Outside => self.media_flags |= flags::MEDIA_OUTSIDE,
        }
        self.write_media_flags()
    }

    /// This interface's media binding map (for [`media::MediaMaps::new`]).
    pub fn media_map(&self) -> Result<&MapData, XdpError> {
        match self.maps.iter().find(|(n, _)| *n == maps::MEDIA) {
            Some((_, Map::HashMap(d))) => Ok(d),
            _ => Err(XdpError::Map(format!("map {} missing", maps::MEDIA))),
        }
    }

    /// Replaces the set of interfaces translated media may be redirected to (by ifindex).
    pub fn set_egress(&mut self, ifindexes: &[u32]) -> Result<(), XdpError> {
        let mut map: DevMapHash<&mut MapData> = self.map_mut(maps::EGRESS)?;
        for &i in ifindexes {
            map.insert(i, i, None, 0)
                .map_err(|e| XdpError::Map(format!("{}: {e}", maps::EGRESS)))?;
        }
        let stale: Vec<u32> = map
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !ifindexes.contains(k))
            .collect();
        for k in stale {
            map.remove(k).map_err(map_err)?;
        }
        Ok(())
    }

    /// The interfaces in the egress devmap, sorted.
    pub fn egress(&self) -> Result<Vec<u32>, XdpError> {
        let map: DevMapHash<&MapData> = self.map(maps::EGRESS)?;
        let mut v: Vec<u32> = map.keys().filter_map(Result::ok).collect();
        v.sort_unstable();
        Ok(v)
    }

    /// Reads the config map back.
    pub fn config(&self) -> Result<XdpConfig, XdpError> {
        let map: Array<&MapData, XdpConfig> = self.map(maps::CONFIG)?;
        map.get(&0, 0).map_err(map_err)
    }

    /// Replaces the SIP port set.
    pub fn set_ports(&mut self, ports: &[u16]) -> Result<(), XdpError> {
        let mut wanted: Vec<u16> = ports.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.is_empty() {
            return Err(XdpError::NoPorts);
        }
        if wanted.len() > MAX_SIP_PORTS as usize {
            return Err(XdpError::TooManyPorts(wanted.len()));
        }
        let mut map: Array<&mut MapData, SipPortSet> = self.map_mut(maps::SIP_PORTS)?;
        let old = map.get(&0, 0).map_err(map_err)?;
        let mut new: SipPortSet = [0; SIP_PORT_WORDS];
        for &p in &wanted {
            let (word, bit) = sip_port_bit(p);
            new[word] |= bit;
        }
        // Add first, then remove the stale ones: no moment with the new ports missing.
        let mut both = old;
        for (b, n) in both.iter_mut().zip(new) {
            *b |= n;
        }
        if both != old {
            map.set(0, both, 0).map_err(map_err)?;
        }
        if new != both {
            map.set(0, new, 0).map_err(map_err)?;
        }
        Ok(())
    }

    /// The current SIP port set, sorted.
    pub fn ports(&self) -> Result<Vec<u16>, XdpError> {
        let map: Array<&MapData, SipPortSet> = self.map(maps::SIP_PORTS)?;
        let set = map.get(&0, 0).map_err(map_err)?;
        Ok((0..=u16::MAX)
            .filter(|&p| {
                let (word, bit) = sip_port_bit(p);
                set[word] & bit != 0
            })
            .collect())
    }

    /// The XSKMAP, to register the AF_XDP socket that serves each queue (the daemon for its
    /// workers, the load test for its receiver).
    pub fn xsk_map(&mut self) -> Result<XskMap<&mut MapData>, XdpError> {
        self.map_mut(maps::XSKS)
    }

    /// Verdict counters summed over CPUs, indexed by `nat_common::stat`.
    pub fn counters(&self) -> Result<[u64; stat::COUNT as usize], XdpError> {
        let map: PerCpuArray<&MapData, u64> = self.map(maps::STATS)?;
        let mut out = [0u64; stat::COUNT as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            let per_cpu = map.get(&(i as u32), 0).map_err(map_err)?;
            *slot = per_cpu.iter().sum();
        }
        Ok(out)
    }

    /// Attaches to `iface`. Native first; with [`AttachMode::Auto`] falls back to generic.
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<AttachedMode, XdpError> {
        if sys::if_index(iface).is_none() {
            return Err(XdpError::UnknownInterface(iface.to_string()));
        }
        let try_mode = |this: &mut Self, m: XdpMode| {
            let id = this.program_mut().attach(iface, m)?;
            this.link = Some(id);
            Ok::<_, ProgramError>(())
        };
        let attached = match mode {
            AttachMode::Generic => {
                try_mode(self, XdpMode::Skb).map_err(|e| attach_error(iface, e, false))?;
                AttachedMode::Generic
            }
            AttachMode::Native | AttachMode::Auto => match try_mode(self, XdpMode::Driver) {
                Ok(_) => AttachedMode::Native,
                Err(e) => {
                    let err = attach_error(iface, e, true);
                    match (&err, mode) {
                        (XdpError::NativeRefused { .. }, AttachMode::Auto) => {
                            tracing::warn!(
                                "{err}; falling back to generic XDP on `{iface}` (slower)"
                            );
                            try_mode(self, XdpMode::Skb)
                                .map_err(|e| attach_error(iface, e, false))?;
                            AttachedMode::Generic
                        }
                        _ => return Err(err),
                    }
                }
            },
        };
        self.attached = Some((iface.to_string(), attached));
        Ok(attached)
    }

    /// Interface and mode this program is attached to, if any.
    pub fn attached(&self) -> Option<(&str, AttachedMode)> {
        self.attached.as_ref().map(|(i, m)| (i.as_str(), *m))
    }

    fn map<'a, T>(&'a self, name: &str) -> Result<T, XdpError>
    where
        T: TryFrom<&'a aya::maps::Map, Error = aya::maps::MapError>,
    {
        T::try_from(&self.maps[self.map_index(name)?].1).map_err(map_err)
    }

    fn map_mut<'a, T>(&'a mut self, name: &str) -> Result<T, XdpError>
    where
        T: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
    {
        let i = self.map_index(name)?;
        T::try_from(&mut self.maps[i].1).map_err(map_err)
    }

    fn map_index(&self, name: &str) -> Result<usize, XdpError> {
        self.maps
            .iter()
            .position(|(n, _)| *n == name)
            .ok_or_else(|| XdpError::Map(format!("map {name} missing")))
    }

    /// Pins the attachment and the maps under `dir` (on a bpffs): from now on the program
    /// outlives this process. Needs a BPF-link attachment (kernels ≥ 5.9).
    pub fn pin(&mut self, dir: &Path) -> Result<(), XdpError> {
        let (iface, mode) = self
            .attached
            .clone()
            .ok_or_else(|| XdpError::Pin("not attached".into()))?;
        let ifindex =
            sys::if_index(&iface).ok_or_else(|| XdpError::UnknownInterface(iface.clone()))?;
        let id = self
            .link
            .take()
            .ok_or_else(|| XdpError::Pin("no link to pin".into()))?;
        std::fs::create_dir_all(dir)
            .map_err(|e| XdpError::Pin(format!("creating {}: {e}", dir.display())))?;
        for (name, m) in &self.maps {
            let data: &MapData = match m {
                Map::Array(d)
                | Map::HashMap(d)
                | Map::XskMap(d)
                | Map::PerCpuArray(d)
                | Map::DevMapHash(d) => d,
                _ => return Err(XdpError::Pin(format!("unexpected map type for {name}"))),
            };
            let p = dir.join(name);
            let _ = std::fs::remove_file(&p);
            data.pin(&p)
                .map_err(|e| XdpError::Pin(format!("pinning {}: {e}", p.display())))?;
        }
        let link = self
            .program_mut()
            .take_link(id)
            .map_err(|e| XdpError::Pin(e.to_string()))?;
        let fd: FdLink = FdLink::try_from(link).map_err(|_| {
            XdpError::Pin("the kernel attached XDP through netlink, not a BPF link: cannot pin (kernel too old?)".into())
        })?;
        if let Some((old, _, _)) = find_link(dir) {
            let _ = std::fs::remove_file(old);
        }
        let lp = dir.join(format!("{LINK_PREFIX}{ifindex}-{mode}"));
        let pinned = fd
            .pin(&lp)
            .map_err(|e| XdpError::Pin(format!("pinning {}: {e}", lp.display())))?;
        self.pinned = Some((dir.to_path_buf(), pinned));
        Ok(())
    }

    /// Re-opens a program a previous daemon pinned under `dir` for `iface`: `Ok(None)` when
    /// there is nothing (usable) pinned there — stale pins for an interface that was
    /// recreated are removed.
    pub fn adopt(dir: &Path, iface: &str) -> Result<Option<SteeringProgram>, XdpError> {
        let Some((lp, ifindex, mode)) = find_link(dir) else {
            // Maps pinned without a link are leftovers of an interrupted start.
            if dir.exists() {
                remove_pins(dir)?;
            }
            return Ok(None);
        };
        if Some(ifindex) != sys::if_index(iface) {
            tracing::warn!(
                "removing stale XDP pins in {} (interface {iface} changed)",
                dir.display()
            );
            remove_pins(dir)?;
            return Ok(None);
        }
        if let Some(missing) = MAP_NAMES.iter().find(|n| !dir.join(n).exists()) {
            // Pinned by a sipnat without that map (an upgrade): not adoptable; the old
            // program is detached and a fresh one attached (one non-hitless restart).
            tracing::warn!(
                "the XDP program pinned in {} has no map {missing} (an older sipnat): \
                 replacing it",
                dir.display()
            );
            remove_pins(dir)?;
            return Ok(None);
        }
        // Pinned by a sipnat whose SIP port set was a hash map (before the bitmap array):
        // not adoptable either, for the same reason.
        let ports = MapData::from_pin(dir.join(maps::SIP_PORTS))
            .ok()
            .and_then(|d| d.info().ok())
            .and_then(|i| i.map_type().ok());
        if ports != Some(aya::maps::MapType::Array) {
            tracing::warn!(
                "the XDP program pinned in {} keeps its SIP ports in a {ports:?} map (an older \
                 sipnat): replacing it",
                dir.display()
            );
            remove_pins(dir)?;
            return Ok(None);
        }
        let link = PinnedLink::from_pin(&lp)
            .map_err(|e| XdpError::Pin(format!("opening {}: {e}", lp.display())))?;
        let mut maps = Vec::new();
        for name in MAP_NAMES {
            let p = dir.join(name);
            let data = MapData::from_pin(&p)
                .map_err(|e| XdpError::Pin(format!("opening {}: {e}", p.display())))?;
            let m = match name {
                maps::CONFIG => Map::Array(data),
                maps::SIP_PORTS => Map::Array(data),
                maps::XSKS => Map::XskMap(data),
                maps::MEDIA => Map::HashMap(data),
                maps::EGRESS => Map::DevMapHash(data),
                _ => Map::PerCpuArray(data),
            };
            maps.push((name, m));
        }
        let mut this = SteeringProgram {
            ebpf: None,
            maps,
            media_flags: 0,
            attached: Some((iface.to_string(), mode)),
            link: None,
            pinned: Some((dir.to_path_buf(), link)),
        };
        // The media NAT keeps running as the previous daemon left it until told otherwise.
        this.media_flags = this.config()?.flags & (flags::MEDIA_NAT | flags::MEDIA_OUTSIDE);
        Ok(Some(this))
    }

    /// Is this program pinned (it will outlive the process)?
    pub fn is_pinned(&self) -> bool {
        self.pinned.is_some()
    }

    /// Removes the pins: the program detaches when this value is dropped (a clean stop).
    pub fn unpin(&mut self) -> Result<(), XdpError> {
        if let Some((dir, link)) = self.pinned.take() {
            // Unpinning the link leaves our fd as the last reference: dropping it detaches.
            let fd = link.unpin().map_err(|e| XdpError::Pin(e.to_string()))?;
            drop(fd);
            remove_pins(&dir)?;
        }
        Ok(())
    }
}

/// Removes everything pinned in `dir` (a pinned link's removal detaches its program when
/// no process holds it) and the directory.
pub fn remove_pins(dir: &Path) -> Result<(), XdpError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        std::fs::remove_file(e.path())
            .map_err(|err| XdpError::Pin(format!("removing {}: {err}", e.path().display())))?;
    }
    std::fs::remove_dir(dir)
        .map_err(|err| XdpError::Pin(format!("removing {}: {err}", dir.display())))
}

/// Makes sure `dir` is on a bpffs: mounts one at /sys/fs/bpf when that is where `dir` lives
/// and nothing is mounted there yet.
pub fn ensure_bpffs(dir: &Path) -> Result<(), XdpError> {
    const BPF_FS_MAGIC: i64 = 0xcafe4a11;
    let on_bpffs = |p: &Path| -> bool {
        let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
            return false;
        };
        // SAFETY: statfs into a zeroed struct with a valid path.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC }
    };
    // The closest existing ancestor decides.
    let mut probe = dir.to_path_buf();
    while !probe.exists() {
        if !probe.pop() {
            break;
        }
    }
    if on_bpffs(&probe) {
        return Ok(());
    }
    let sys_bpf = Path::new("/sys/fs/bpf");
    if dir.starts_with(sys_bpf) && !on_bpffs(sys_bpf) {
        std::fs::create_dir_all(sys_bpf).ok();
        let (src, fs, target) = (c"bpf", c"bpf", c"/sys/fs/bpf");
        // SAFETY: mount(2) with valid C strings.
        if unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                fs.as_ptr(),
                0,
                std::ptr::null(),
            )
        } == 0
        {
            return Ok(());
        }
        return Err(XdpError::Pin(format!(
            "mounting a bpffs on /sys/fs/bpf: {}",
            io::Error::last_os_error()
        )));
    }
    Err(XdpError::Pin(format!(
        "{} is not on a BPF filesystem: mount one (`mount -t bpf bpf DIR`) or set [control] bpffs",
        dir.display()
    )))
}

/// Whether the pins under a directory outlive the daemon's process (so that after a
/// crash the XDP program stays attached and the failure mode applies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinLifetime {
    /// The bpffs is mounted in the host's mount namespace (pid 1's): pins stay.
    Survive,
    /// The bpffs exists only in a mount namespace pid 1 does not share (e.g. the private
    /// one `ip netns exec` gives each command): it ends with the process, and the pins and
    /// the attachment with it. The reason, for the log and `status`.
    DiesWithProcess(String),
    /// Could not be determined (the reason).
    Unknown(String),
}

/// Decides [`PinLifetime`] for `dir` (on a bpffs, see [`ensure_bpffs`]): its bpffs
/// instance (device number) must also be mounted in pid 1's mount namespace.
pub fn pin_lifetime(dir: &Path) -> PinLifetime {
    use std::os::unix::fs::MetadataExt as _;
    let mut probe = dir.to_path_buf();
    while !probe.exists() {
        if !probe.pop() {
            break;
        }
    }
    let dev = match std::fs::metadata(&probe) {
        Ok(m) => m.dev(),
        Err(e) => return PinLifetime::Unknown(format!("stat {}: {e}", probe.display())),
    };
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    let id = format!("{major}:{minor}");
    // mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE ...
    let mounts_of = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.split_whitespace().nth(2) == Some(id.as_str()))
            .filter(|l| {
                l.split_once(" - ")
                    .is_some_and(|(_, t)| t.split_whitespace().next() == Some("bpf"))
            })
            .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
            .collect()
    };
    let host = match std::fs::read_to_string("/proc/1/mountinfo") {
        Ok(t) => t,
        Err(e) => {
            return PinLifetime::Unknown(format!(
                "cannot read the host's mounts (/proc/1/mountinfo: {e})"
            ))
        }
    };
    if !mounts_of(&host).is_empty() {
        return PinLifetime::Survive;
    }
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    let private = ns("self").is_some() && ns("self") != ns("1");
    let here = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| mounts_of(&t))
        .unwrap_or_default();
    let at = here
        .first()
        .map_or_else(|| probe.display().to_string(), |m| m.clone());
    PinLifetime::DiesWithProcess(if private {
        format!(
            "the bpffs at {at} is mounted only in this process's own mount namespace, not in \
             the host's (as under `ip netns exec`, which gives each command a private mount \
             namespace and a fresh /sys); it ends when the daemon exits"
        )
    } else {
        format!("the bpffs at {at} is not mounted in the host's mount namespace")
    })
}

fn map_err(e: aya::maps::MapError) -> XdpError {
    XdpError::Map(e.to_string())
}

fn is_eperm(s: &str) -> bool {
    s.contains("Operation not permitted")
}

/// The errno behind an attach failure, through aya's error layers.
fn attach_errno(e: &ProgramError) -> Option<i32> {
    match e {
        ProgramError::SyscallError(s) => s.io_error.raw_os_error(),
        ProgramError::XdpError(aya::programs::xdp::XdpError::NetlinkError(n)) => n.raw_os_error(),
        _ => None,
    }
}

fn attach_error(iface: &str, e: ProgramError, native: bool) -> XdpError {
    if let ProgramError::UnknownInterface { name } = &e {
        return XdpError::UnknownInterface(name.clone());
    }
    match attach_errno(&e) {
        Some(libc::EBUSY) | Some(libc::EEXIST) => XdpError::AlreadyAttached {
            iface: iface.to_string(),
        },
        Some(errno @ (libc::EOPNOTSUPP | libc::EINVAL | libc::ERANGE | libc::ENOMEM)) if native => {
            let hint = if errno == libc::ERANGE {
                " (the MTU is too large for XDP; on a veth pair lower the peer's MTU)"
            } else {
                ""
            };
            XdpError::NativeRefused {
                iface: iface.to_string(),
                reason: io::Error::from_raw_os_error(errno),
                hint,
            }
        }
        Some(libc::EPERM) => XdpError::NotPermitted {
            missing: "(EPERM from the kernel)".into(),
        },
        _ => XdpError::AttachRefused {
            iface: iface.to_string(),
            reason: e.to_string(),
        },
    }
}
