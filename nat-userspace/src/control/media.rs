//! Media NAT in the daemon: the XDP media maps as the sink of the bindings the workers
//! learn from SDP, and the reaper that removes idle bindings (the control plane, never
//! the workers: it reads the last-seen stamps XDP writes into the maps).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use crate::{
    config::Config,
    datapath::{DatapathState, SharedMedia},
    nat::media::{MediaBindings, MediaRegistry},
    xdp::media::MediaMaps,
};

impl MediaBindings for MediaMaps {
    fn install(&self, internal: SocketAddr, external: SocketAddr) -> bool {
        match MediaMaps::install(self, internal, external) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("media binding {internal} ↔ {external} not installed: {e}");
                false
            }
        }
    }

    fn remove(&self, internal: SocketAddr, external: SocketAddr) {
        if let Err(e) = MediaMaps::remove(self, internal, external) {
            tracing::warn!("media binding {internal} ↔ {external} not removed: {e}");
        }
    }

    fn last_seen_ns(&self, internal: SocketAddr, external: SocketAddr) -> Option<u64> {
        self.seen(internal, external).map(|s| s.last_seen_ns)
    }
}

/// The workers' media state from `[media]` (`None`: media NAT off).
pub fn shared_media(cfg: &Config, maps: &MediaMaps) -> Option<SharedMedia> {
    let range = cfg.media.range().filter(|_| cfg.media.enabled)?;
    Some(SharedMedia {
        registry: MediaRegistry::new(range),
        sink: Arc::new(maps.clone()),
        idle_timeout_s: cfg.media.idle_timeout,
    })
}

/// `CLOCK_MONOTONIC` now, nanoseconds (the clock XDP stamps with, as of its last tick:
/// `bpf_ktime_get_coarse_ns`).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// Once a second until the daemon stops: removes the bindings of dialogs that ended
/// `LINGER_S` ago, and idle bindings.
pub fn spawn_reaper(shared: Arc<DatapathState>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("sipnat-reaper".into())
        .spawn(move || {
            let tick = Duration::from_millis(100);
            let mut waited = Duration::ZERO;
            // Ended dialogs whose bindings linger (`LINGER_S`), oldest first.
            let mut ending = std::collections::VecDeque::new();
            while !shared.stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(tick);
                waited += tick;
                if waited < Duration::from_secs(1) {
                    continue;
                }
                waited = Duration::ZERO;
                if let Some(m) = &shared.media {
                    let now_s = shared.clock.now_s();
                    m.registry.end_lingering(&mut ending, now_s, &*m.sink);
                    let n = m
                        .registry
                        .reap(&*m.sink, monotonic_ns(), now_s, m.idle_timeout_s);
                    if n > 0 {
                        tracing::debug!("{n} idle media binding(s) reaped");
                    }
                }
            }
        })
}
