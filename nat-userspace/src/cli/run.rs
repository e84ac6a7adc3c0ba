//! `sipnat run -c FILE`: the daemon. SIGHUP reloads the config file (like `sipnat
//! reload`; a file that cannot be applied is logged and the daemon keeps running with
//! the old one). Runs until
//! - SIGINT/SIGTERM: clean stop, XDP detached, pins removed (exit 0);
//! - SIGUSR2: handover for a hitless restart: XDP stays attached and pinned, the failure
//!   mode covers the gap until the next `sipnat run` adopts it (exit 0);
//! - a worker dies (exit 1; pins kept, so the failure mode applies until systemd restarts
//!   the daemon, which then adopts the program).

use std::{path::Path, process::ExitCode, sync::Arc, time::Duration};

use super::fail;
use crate::{
    config,
    control::{daemon::Daemon, server},
};

pub fn run(config_path: &Path) -> ExitCode {
    // SIGHUP means reload, never "terminate" (its default action): ignored until the
    // control loop below handles it.
    // SAFETY: setting a signal disposition to SIG_IGN; no handler code runs.
    unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
    // Log level from the config (SIPNAT_LOG overrides it).
    let level = config::Config::load(config_path)
        .map(|(c, _)| c.log.level)
        .unwrap_or_else(|_| "info".into());
    super::init_logging(&level);
    let missing = crate::sys::caps::missing(crate::sys::caps::DAEMON);
    if !missing.is_empty() {
        return fail(&anyhow::anyhow!(
            "the daemon needs root or the capabilities {} (missing: {}); run it as root or \
             through packaging/sipnat.service",
            crate::sys::caps::list(crate::sys::caps::DAEMON),
            missing.join(", ")
        ));
    }
    let daemon = match Daemon::start(config_path) {
        Ok(d) => d,
        Err(e) => return fail(&e),
    };
    let cfg = daemon.config.lock().expect("config lock").clone();
    let socket = server::socket_path(&cfg);
    let group = match cfg.control.group.as_deref().map(group_id) {
        Some(Ok(g)) => Some(g),
        Some(Err(e)) => {
            daemon.shutdown();
            return fail(&e);
        }
        None => None,
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            daemon.shutdown();
            return fail(&anyhow::anyhow!("cannot start the control runtime: {e}"));
        }
    };
    let outcome = rt.block_on(async {
        let listener = server::bind(&socket, group)?;
        let metrics_addr = cfg.control.metrics.get_ref().trim().to_string();
        if !metrics_addr.is_empty() {
            let addr: std::net::SocketAddr = metrics_addr.parse().map_err(|_| anyhow::anyhow!("metrics address `{metrics_addr}` is not ADDR:PORT"))?;
            let l = crate::control::metrics::bind(addr).await?;
            tokio::spawn(crate::control::metrics::serve(l, Arc::clone(&daemon)));
            tracing::info!("metrics on http://{addr}/metrics");
        }
        let external = daemon.start_external_sources();
        // Handlers in place before the daemon says it is ready.
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut usr2 = signal(SignalKind::user_defined2())?;
        let mut hup = signal(SignalKind::hangup())?;
        tracing::info!("ready: control socket {}", socket.display());
        let (tx, mut rx) = tokio::sync::watch::channel(0u8);
        let d = Arc::clone(&daemon);
        let watcher = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            let code = loop {
                tokio::select! {
                    _ = term.recv() => { d.unpin(); break 0u8 }
                    _ = int.recv() => { d.unpin(); break 0u8 }
                    _ = usr2.recv() => {
                        tracing::info!("handover: leaving XDP attached and pinned for the next daemon");
                        break 0u8
                    }
                    _ = hup.recv() => {
                        // Its own task: reading the file may take a while (see
                        // `Daemon::reload_async`); signals keep being handled meanwhile.
                        let d = Arc::clone(&d);
                        tokio::spawn(async move {
                            match d.reload_async().await {
                                Ok(msg) => tracing::info!("SIGHUP: {msg}"),
                                Err(e) => tracing::error!("SIGHUP: reload failed, still running with the previous config: {e:#}"),
                            }
                        });
                    }
                    _ = tick.tick() => {
                        if let Some(q) = d.dead_worker() {
                            tracing::error!("worker for queue {q} died; exiting so the service restarts (XDP failure mode applies meanwhile)");
                            break 1u8;
                        }
                    }
                }
            };
            let _ = tx.send(code + 1);
            Ok::<u8, std::io::Error>(code)
        });
        server::serve(listener, Arc::clone(&daemon), group, async move {
            let _ = rx.changed().await;
        })
        .await;
        let code = watcher.await.map_err(|e| anyhow::anyhow!("{e}"))??;
        if let Some(h) = external {
            h.join().await;
        }
        Ok::<u8, anyhow::Error>(code)
    });
    daemon.shutdown();
    let _ = std::fs::remove_file(&socket);
    drop(daemon);
    match outcome {
        Ok(0) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Ok(c) => ExitCode::from(c),
        Err(e) => fail(&e),
    }
}

fn group_id(name: &str) -> anyhow::Result<u32> {
    let c = std::ffi::CString::new(name)?;
    // SAFETY: getgrnam with a valid C string; the result is read immediately.
    let g = unsafe { libc::getgrnam(c.as_ptr()) };
    if g.is_null() {
        anyhow::bail!("control.group `{name}` does not exist on this host");
    }
    // SAFETY: non-null group entry.
    Ok(unsafe { (*g).gr_gid })
}

/// `sipnat run --cleanup`: removes the pins a previous daemon left for the configured
/// interfaces (which detaches its programs).
pub fn cleanup(config_path: &Path) -> ExitCode {
    super::init_logging("info");
    let cfg = match config::Config::load(config_path) {
        Ok((c, _)) => c,
        Err(e) => return fail(&anyhow::anyhow!("{e}")),
    };
    let root = cfg.control.bpffs.clone();
    if let Err(e) = crate::xdp::ensure_bpffs(&root) {
        return fail(&e.into());
    }
    for ifname in [
        cfg.interfaces.inside.get_ref(),
        cfg.interfaces.outside.get_ref(),
    ] {
        let dir = root.join(ifname);
        if !dir.exists() {
            println!("{ifname}: nothing pinned");
            continue;
        }
        match crate::xdp::remove_pins(&dir) {
            Ok(()) => println!(
                "{ifname}: pins removed from {} (XDP detached)",
                dir.display()
            ),
            Err(e) => return fail(&e.into()),
        }
    }
    let _ = std::fs::remove_dir(&root);
    ExitCode::SUCCESS
}
