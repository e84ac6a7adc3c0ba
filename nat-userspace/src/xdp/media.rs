//! The media NAT bindings of both interfaces' XDP programs (`SIPNAT_MEDIA`), from
//! userspace: one binding (internal transport address ↔ external transport address) is an
//! entry in each of the two maps — inside: internal → external (source translation),
//! outside: external → internal (destination translation). XDP translates matching RTP/RTCP
//! and stamps `last_seen_ns` / `packets` in the entries; this side installs, removes, reads
//! the stamps (for reaping) and lists.
//!
//! [`MediaMaps`] is `Send + Sync` and cheap to clone (an `Arc` of the two map fds):
//! worker threads call [`MediaMaps::install`] / [`MediaMaps::remove`] concurrently, on a
//! binding change (a new call's SDP, its end), never per packet: an install is four
//! `bpf(2)` calls (a lookup in each map, for stale halves and kept stamps, then an update
//! of each; more only when it replaces a stale binding), a removal up to four. The maps are used
//! through their fds with `BPF_MAP_*_ELEM` directly: the kernel serialises per-element
//! updates, so no lock is needed here.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsFd, AsRawFd, OwnedFd},
    path::Path,
    sync::Arc,
};

use aya::maps::MapData;
use nat_common::{family, maps, MediaKey, MediaNat};

use super::XdpError;

/// What XDP saw of a binding: the later `last_seen_ns` and the larger `packets` of its two
/// entries (inside: outbound packets, outside: inbound packets).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MediaSeen {
    /// `CLOCK_MONOTONIC` nanoseconds of the last translated packet; 0 = none yet.
    pub last_seen_ns: u64,
    pub packets: u64,
}

/// One binding as listed: both directions' entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MediaBinding {
    /// The internal (private) transport address.
    pub internal: SocketAddr,
    /// The external transport address it is translated to.
    pub external: SocketAddr,
    /// Packets translated inside → outside (source translation), if that entry exists.
    pub packets_out: Option<u64>,
    /// Packets translated outside → inside (destination translation), if that entry exists.
    pub packets_in: Option<u64>,
    /// `CLOCK_MONOTONIC` ns of the last packet either way; 0 = none yet.
    pub last_seen_ns: u64,
}

struct Fds {
    inside: OwnedFd,
    outside: OwnedFd,
}

/// Handle on both interfaces' media binding maps. See the module documentation.
#[derive(Clone)]
pub struct MediaMaps {
    fds: Arc<Fds>,
}

impl std::fmt::Debug for MediaMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaMaps")
            .field("inside_fd", &self.fds.inside.as_raw_fd())
            .field("outside_fd", &self.fds.outside.as_raw_fd())
            .finish()
    }
}

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_ANY: u64 = 0;

/// The `bpf_attr` layout of the `BPF_MAP_*_ELEM` commands.
#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    /// `value`, or `next_key` for `BPF_MAP_GET_NEXT_KEY`.
    value: u64,
    flags: u64,
}

fn bpf_elem(cmd: libc::c_long, fd: &OwnedFd, key: u64, value: u64, flags: u64) -> io::Result<()> {
    let mut attr = ElemAttr {
        map_fd: fd.as_raw_fd() as u32,
        key,
        value,
        flags,
        ..ElemAttr::default()
    };
    // SAFETY: bpf(2) with a correctly sized attr whose pointers point at live buffers of
    // the map's key/value sizes (the callers pass MediaKey / MediaNat, the map's types).
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            &mut attr as *mut ElemAttr,
            std::mem::size_of::<ElemAttr>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn lookup(fd: &OwnedFd, key: &MediaKey) -> io::Result<Option<MediaNat>> {
    let mut v = MediaNat::default();
    match bpf_elem(
        BPF_MAP_LOOKUP_ELEM,
        fd,
        key as *const MediaKey as u64,
        &mut v as *mut MediaNat as u64,
        0,
    ) {
        Ok(()) => Ok(Some(v)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

fn update(fd: &OwnedFd, key: &MediaKey, v: &MediaNat) -> io::Result<()> {
    bpf_elem(
        BPF_MAP_UPDATE_ELEM,
        fd,
        key as *const MediaKey as u64,
        v as *const MediaNat as u64,
        BPF_ANY,
    )
}

/// Deletes `key`; `Ok(false)` when it was not there.
fn delete(fd: &OwnedFd, key: &MediaKey) -> io::Result<bool> {
    match bpf_elem(BPF_MAP_DELETE_ELEM, fd, key as *const MediaKey as u64, 0, 0) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Every entry of a map (a snapshot: entries changing meanwhile may be missed or seen twice,
/// as with any BPF hash map walk).
fn entries(fd: &OwnedFd) -> io::Result<Vec<(MediaKey, MediaNat)>> {
    let mut out = Vec::new();
    let mut cur: Option<MediaKey> = None;
    loop {
        let mut next = MediaKey::default();
        let key_ptr = cur.as_ref().map_or(0, |k| k as *const MediaKey as u64);
        match bpf_elem(
            BPF_MAP_GET_NEXT_KEY,
            fd,
            key_ptr,
            &mut next as *mut MediaKey as u64,
            0,
        ) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            Err(e) => return Err(e),
        }
        if let Some(v) = lookup(fd, &next)? {
            out.push((next, v));
        }
        cur = Some(next);
    }
}

/// The map key of a transport address.
pub fn key_of(a: SocketAddr) -> MediaKey {
    let (addr, fam) = addr_bytes(a.ip());
    MediaKey {
        addr,
        port: a.port().to_be(),
        family: fam,
        _pad: 0,
    }
}

/// A map value translating to `a`, with no stamps.
pub fn value_of(a: SocketAddr) -> MediaNat {
    let (addr, fam) = addr_bytes(a.ip());
    MediaNat {
        addr,
        port: a.port().to_be(),
        family: fam,
        ..MediaNat::default()
    }
}

fn addr_bytes(ip: IpAddr) -> ([u8; 16], u8) {
    let mut b = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => {
            b[..4].copy_from_slice(&v4.octets());
            (b, family::V4)
        }
        IpAddr::V6(v6) => (v6.octets(), family::V6),
    }
}

fn socket_addr(addr: [u8; 16], port_be: u16, fam: u8) -> SocketAddr {
    let ip = if fam == family::V6 {
        IpAddr::V6(Ipv6Addr::from(addr))
    } else {
        IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
    };
    SocketAddr::new(ip, u16::from_be(port_be))
}

/// The transport address a key names.
pub fn key_addr(k: &MediaKey) -> SocketAddr {
    socket_addr(k.addr, k.port, k.family)
}

/// The transport address a value translates to.
pub fn value_addr(v: &MediaNat) -> SocketAddr {
    socket_addr(v.addr, v.port, v.family)
}

fn io_err(what: &str, e: io::Error) -> XdpError {
    let hint = if e.raw_os_error() == Some(libc::E2BIG) {
        " (the map is full: at most nat_common::MAX_MEDIA_BINDINGS bindings)"
    } else {
        ""
    };
    XdpError::Map(format!("{what} ({}): {e}{hint}", maps::MEDIA))
}

impl MediaMaps {
    /// A handle on the two maps (duplicates their fds: valid as long as this handle lives,
    /// whatever happens to the maps' other owners).
    pub fn new(inside: &MapData, outside: &MapData) -> Result<Self, XdpError> {
        let dup = |m: &MapData| {
            m.fd()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| XdpError::Map(format!("duplicating a map fd: {e}")))
        };
        Ok(MediaMaps {
            fds: Arc::new(Fds {
                inside: dup(inside)?,
                outside: dup(outside)?,
            }),
        })
    }

    /// The maps a running daemon pinned in its per-interface directories (`sipnat xdp
    /// media`: `<bpffs>/<inside>` and `<bpffs>/<outside>`).
    pub fn from_pins(inside_dir: &Path, outside_dir: &Path) -> Result<Self, XdpError> {
        let open = |dir: &Path| {
            let p = dir.join(maps::MEDIA);
            MapData::from_pin(&p).map_err(|e| {
                XdpError::Pin(format!(
                    "opening {}: {e} (is the daemon running, with this config?)",
                    p.display()
                ))
            })
        };
        let (i, o) = (open(inside_dir)?, open(outside_dir)?);
        Self::new(&i, &o)
    }

    /// Installs the binding `internal` ↔ `external` in both maps: XDP translates the
    /// source of packets from `internal` arriving on the inside to `external`, and the
    /// destination of packets to `external` arriving on the outside to `internal`.
    ///
    /// Re-installing the same binding keeps its stamps. A binding that replaces another
    /// one for the same internal or external address removes the other's stale half, so
    /// the two maps stay mirror images. Both addresses must be of one family.
    pub fn install(&self, internal: SocketAddr, external: SocketAddr) -> Result<(), XdpError> {
        if internal.is_ipv4() != external.is_ipv4() {
            return Err(XdpError::Map(format!(
                "media binding {internal} ↔ {external}: the addresses are of different families"
            )));
        }
        let (ik, ek) = (key_of(internal), key_of(external));
        let f = &self.fds;
        // What each map holds for the two keys now: one lookup each, used both for the
        // stale halves and for the stamps kept on a re-install.
        let old_in = lookup(&f.inside, &ik).map_err(|e| io_err("lookup", e))?;
        let old_out = lookup(&f.outside, &ek).map_err(|e| io_err("lookup", e))?;
        // Stale halves of bindings this one replaces.
        if let Some(old) = old_in {
            let old_ext = key_of(value_addr(&old));
            if old_ext != ek {
                self.delete_if_points(&f.outside, &old_ext, internal)?;
            }
        }
        if let Some(old) = old_out {
            let old_int = key_of(value_addr(&old));
            if old_int != ik {
                self.delete_if_points(&f.inside, &old_int, external)?;
            }
        }
        let keep = |old: Option<MediaNat>, mut v: MediaNat| -> MediaNat {
            if let Some(old) = old {
                if old.addr == v.addr && old.port == v.port && old.family == v.family {
                    v.last_seen_ns = old.last_seen_ns;
                    v.packets = old.packets;
                }
            }
            v
        };
        let ev = keep(old_out, value_of(internal));
        let iv = keep(old_in, value_of(external));
        // Inbound half first: by the time the inside starts translating outbound, replies
        // to the external address are already translated back.
        update(&f.outside, &ek, &ev).map_err(|e| io_err("install (outside)", e))?;
        if let Err(e) = update(&f.inside, &ik, &iv) {
            let _ = delete(&f.outside, &ek);
            return Err(io_err("install (inside)", e));
        }
        Ok(())
    }

    /// Deletes `key` from `fd` if its value translates to `to`.
    fn delete_if_points(
        &self,
        fd: &OwnedFd,
        key: &MediaKey,
        to: SocketAddr,
    ) -> Result<(), XdpError> {
        if let Some(v) = lookup(fd, key).map_err(|e| io_err("lookup", e))? {
            if value_addr(&v) == to {
                delete(fd, key).map_err(|e| io_err("remove", e))?;
            }
        }
        Ok(())
    }

    /// Removes the binding `internal` ↔ `external` from both maps (each half only if it
    /// still belongs to this binding). `Ok(false)` when neither half was there.
    pub fn remove(&self, internal: SocketAddr, external: SocketAddr) -> Result<bool, XdpError> {
        let f = &self.fds;
        let (ik, ek) = (key_of(internal), key_of(external));
        let mut found = false;
        // Outbound half first: nothing leaves translated for a binding being removed.
        if let Some(v) = lookup(&f.inside, &ik).map_err(|e| io_err("lookup", e))? {
            if value_addr(&v) == external {
                found |= delete(&f.inside, &ik).map_err(|e| io_err("remove (inside)", e))?;
            }
        }
        if let Some(v) = lookup(&f.outside, &ek).map_err(|e| io_err("lookup", e))? {
            if value_addr(&v) == internal {
                found |= delete(&f.outside, &ek).map_err(|e| io_err("remove (outside)", e))?;
            }
        }
        Ok(found)
    }

    /// What XDP saw of the binding (`None`: neither half is installed).
    pub fn seen(&self, internal: SocketAddr, external: SocketAddr) -> Option<MediaSeen> {
        let f = &self.fds;
        let a = lookup(&f.inside, &key_of(internal)).ok().flatten();
        let b = lookup(&f.outside, &key_of(external)).ok().flatten();
        if a.is_none() && b.is_none() {
            return None;
        }
        let mut s = MediaSeen::default();
        for v in [a, b].into_iter().flatten() {
            s.last_seen_ns = s.last_seen_ns.max(v.last_seen_ns);
            s.packets = s.packets.max(v.packets);
        }
        Some(s)
    }

    /// Every binding, sorted by internal address (a half whose mirror is missing is
    /// listed with the other direction's count as `None`).
    pub fn list(&self) -> Result<Vec<MediaBinding>, XdpError> {
        let f = &self.fds;
        let inside = entries(&f.inside).map_err(|e| io_err("walk (inside)", e))?;
        let outside = entries(&f.outside).map_err(|e| io_err("walk (outside)", e))?;
        let mut by_external: std::collections::HashMap<SocketAddr, MediaNat> = outside
            .into_iter()
            .map(|(k, v)| (key_addr(&k), v))
            .collect();
        let mut out = Vec::with_capacity(inside.len());
        for (k, v) in inside {
            let (internal, external) = (key_addr(&k), value_addr(&v));
            let mirror = match by_external.get(&external) {
                Some(m) if value_addr(m) == internal => by_external.remove(&external),
                _ => None,
            };
            out.push(MediaBinding {
                internal,
                external,
                packets_out: Some(v.packets),
                packets_in: mirror.map(|m| m.packets),
                last_seen_ns: v.last_seen_ns.max(mirror.map_or(0, |m| m.last_seen_ns)),
            });
        }
        for (external, v) in by_external {
            out.push(MediaBinding {
                internal: value_addr(&v),
                external,
                packets_out: None,
                packets_in: Some(v.packets),
                last_seen_ns: v.last_seen_ns,
            });
        }
        out.sort_by_key(|b| (b.internal, b.external));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_are_in_network_order() {
        let a: SocketAddr = "10.1.2.3:4000".parse().unwrap();
        let k = key_of(a);
        assert_eq!(&k.addr[..4], &[10, 1, 2, 3]);
        assert!(k.addr[4..].iter().all(|b| *b == 0));
        assert_eq!(k.port.to_ne_bytes(), [0x0f, 0xa0]);
        assert_eq!(k.family, family::V4);
        assert_eq!(key_addr(&k), a);
        let v6: SocketAddr = "[2001:db8::1]:5004".parse().unwrap();
        assert_eq!(value_addr(&value_of(v6)), v6);
        assert_eq!(value_of(v6).family, family::V6);
    }

    #[test]
    fn handle_is_send_sync_clone() {
        fn check<T: Send + Sync + Clone>() {}
        check::<MediaMaps>();
    }
}
