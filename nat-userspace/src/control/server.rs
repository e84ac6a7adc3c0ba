//! The control socket server (tokio, off the packet path): Unix socket, mode 0600 (0660
//! with a configured group), peer credentials checked (SO_PEERCRED), bounded requests,
//! timeouts; a malformed or hostile request gets an error reply and never disturbs the
//! daemon. At most [`MAX_CONNECTIONS`] connections, [`ROOT_SLOTS`] of them for root only;
//! each has read and write timeouts and a lifetime, so clients that never read or never
//! leave cannot lock root out or delay a stop.

use std::sync::atomic::Ordering;
use std::{
    net::IpAddr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::Semaphore,
};

use super::{
    daemon::Daemon,
    limits::{accept_error, Throttled},
    protocol::{parse_request, Command, Response, MAX_REQUEST},
};
use crate::{nat::ExternalAddrs, xdp::PinLifetime};

/// How long a client may take to send a request line (the first, or the next one on the
/// same connection); then it gets an error reply and the connection is closed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a reply may take to be written (a client that never reads its replies fills
/// the socket buffer); then the connection is closed.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a connection lives, whatever it does.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// Most connections served at once. Beyond it a new connection waits for a slot (at most
/// [`SLOT_WAIT`], at most [`MAX_WAITING`] of them; the accept loop itself never waits),
/// then gets one "busy" error line and is closed.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a connection beyond [`MAX_CONNECTIONS`] waits for a slot: a burst of quick
/// requests (a thousand `stats` at once) is served even on a host busy with other work
/// (with 1 s, a loaded 2-core host answered 640 of 1,000 and told the rest "busy"); it
/// stays below the CLI's 10 s, so a client that waited in vain still gets the "busy" line.
pub const SLOT_WAIT: Duration = Duration::from_secs(5);
/// Most connections waiting for a slot; beyond it "busy" at once.
pub const MAX_WAITING: usize = 1024;
/// Of [`MAX_CONNECTIONS`], the slots only root (uid 0) may use: members of
/// `[control] group` cannot take them, so they can never lock root out.
pub const ROOT_SLOTS: usize = 8;

/// Binds the control socket; refuses when another daemon answers on it.
pub fn bind(path: &Path, group: Option<u32>) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "another sipnat daemon is running (it answers on {}); stop it first",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    // Create the socket with no permissions for others from the start (no window).
    // SAFETY: umask is process-wide but set and restored around this single bind.
    let old = unsafe { libc::umask(0o177) };
    let l = UnixListener::bind(path);
    unsafe { libc::umask(old) };
    let l = l.with_context(|| format!("binding the control socket {}", path.display()))?;
    if let Some(gid) = group {
        let c =
            std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).context("socket path")?;
        // SAFETY: valid path; uid -1 keeps the owner.
        if unsafe { libc::chown(c.as_ptr(), u32::MAX, gid) } != 0 {
            let e = std::io::Error::last_os_error();
            let hint = if e.raw_os_error() == Some(libc::EPERM) {
                " (the daemon must be a member of [control] group: SupplementaryGroups= in the \
                 systemd unit; or have CAP_CHOWN)"
            } else {
                ""
            };
            bail!("chown of {} to group {gid}: {e}{hint}", path.display());
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    }
    Ok(l)
}

/// Serves until `shutdown` resolves. The accept loop never blocks on a client: a slot is
/// taken, or the connection waits for one in its own task (bounded in time and number)
/// or is told the socket is busy, so shutdown is never held up by connections.
pub async fn serve(
    listener: UnixListener,
    daemon: Arc<Daemon>,
    group: Option<u32>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let shared = Arc::new(Semaphore::new(MAX_CONNECTIONS - ROOT_SLOTS));
    let waiting = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let root_only = Arc::new(Semaphore::new(ROOT_SLOTS));
    let mut refused = Throttled::default();
    let mut errors = Throttled::default();
    tokio::pin!(shutdown);
    loop {
        let acc = tokio::select! {
            _ = &mut shutdown => break,
            acc = listener.accept() => acc,
        };
        let stream = match acc {
            Ok((stream, _)) => stream,
            Err(e) => {
                accept_error("control socket", &e, &mut errors).await;
                continue;
            }
        };
        let root = stream.peer_cred().is_ok_and(|c| c.uid() == 0);
        let permit = Arc::clone(&shared).try_acquire_owned().or_else(|e| {
            if root {
                Arc::clone(&root_only).try_acquire_owned()
            } else {
                Err(e)
            }
        });
        let d = Arc::clone(&daemon);
        match permit {
            Ok(permit) => {
                tokio::spawn(serve_connection(stream, d, group, permit));
            }
            Err(_) if waiting.load(Ordering::Relaxed) < MAX_WAITING => {
                // Wait for a slot in a task of its own; the accept loop goes on.
                waiting.fetch_add(1, Ordering::Relaxed);
                let (shared, root_only, waiting) = (
                    Arc::clone(&shared),
                    Arc::clone(&root_only),
                    Arc::clone(&waiting),
                );
                tokio::spawn(async move {
                    let slot = async {
                        if root {
                            tokio::select! {
                                p = shared.acquire_owned() => p,
                                p = root_only.acquire_owned() => p,
                            }
                        } else {
                            shared.acquire_owned().await
                        }
                    };
                    let got = tokio::time::timeout(SLOT_WAIT, slot).await;
                    waiting.fetch_sub(1, Ordering::Relaxed);
                    match got {
                        Ok(Ok(permit)) => serve_connection(stream, d, group, permit).await,
                        _ => busy(&stream, root),
                    }
                });
            }
            Err(_) => {
                busy(&stream, root);
                if let Some(n) = refused.hit() {
                    tracing::warn!(
                        "control socket: all {} connection slots{} in use and {MAX_WAITING} \
                         connections waiting; refused {n} connection(s) since the last message",
                        if root {
                            MAX_CONNECTIONS
                        } else {
                            MAX_CONNECTIONS - ROOT_SLOTS
                        },
                        if root { "" } else { " for non-root clients" },
                    );
                }
            }
        }
    }
}

/// One connection, holding its slot, for at most [`CONNECTION_LIFETIME`].
async fn serve_connection(
    stream: UnixStream,
    d: Arc<Daemon>,
    group: Option<u32>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let _permit = permit;
    match tokio::time::timeout(CONNECTION_LIFETIME, connection(stream, d, group)).await {
        Ok(Err(e)) => tracing::debug!("control connection: {e}"),
        Err(_) => tracing::debug!("control connection: closed at the end of its lifetime"),
        Ok(Ok(())) => {}
    }
}

/// Tells a client there is no slot for it, without waiting: one error line into the
/// empty send buffer of a new connection, then it is closed.
fn busy(stream: &UnixStream, root: bool) {
    let slots = if root {
        format!("all {MAX_CONNECTIONS} control connections are in use")
    } else {
        format!(
            "all {} control connections open to non-root clients are in use ({ROOT_SLOTS} more \
             are kept for root)",
            MAX_CONNECTIONS - ROOT_SLOTS
        )
    };
    let msg = format!("the daemon is busy: {slots}; try again in a few seconds");
    let _ = stream.try_write(Response::err(msg).line().as_bytes());
}

/// Root, the daemon's own user, or a member of the configured group.
fn allowed(stream: &UnixStream, group: Option<u32>) -> bool {
    let Ok(cred) = stream.peer_cred() else {
        return false;
    };
    // SAFETY: trivial getters.
    let me = unsafe { libc::geteuid() };
    if cred.uid() == 0 || cred.uid() == me {
        return true;
    }
    let Some(gid) = group else { return false };
    if cred.gid() == gid {
        return true;
    }
    // Supplementary groups of the peer process.
    cred.pid()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Groups:"))
                .map(|l| l.to_string())
        })
        .is_some_and(|l| l.split_whitespace().skip(1).any(|g| g.parse() == Ok(gid)))
}

async fn connection(
    stream: UnixStream,
    daemon: Arc<Daemon>,
    group: Option<u32>,
) -> std::io::Result<()> {
    let permitted = allowed(&stream, group);
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    loop {
        let mut line = Vec::with_capacity(256);
        let read = tokio::time::timeout(
            REQUEST_TIMEOUT,
            (&mut r)
                .take(MAX_REQUEST as u64 + 1)
                .read_until(b'\n', &mut line),
        )
        .await;
        let resp = match read {
            Err(_) => Response::err("timed out waiting for a request line"),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(n)) if n > MAX_REQUEST => {
                Response::err(format!("request larger than {MAX_REQUEST} bytes"))
            }
            Ok(Ok(_)) if !line.ends_with(b"\n") => {
                Response::err("request not terminated by a newline")
            }
            Ok(Ok(_)) if !permitted => Response::err(
                "permission denied: the control socket accepts root (or the configured group) only",
            ),
            Ok(Ok(_)) => match parse_request(&line) {
                // Reading the config file may block (a FIFO, a hung file system): off the
                // runtime, with a time limit.
                Ok(Command::Reload) => match daemon.reload_async().await {
                    Ok(msg) => Response::ok(json!({ "message": msg })),
                    Err(e) => Response::err(format!("{e:#}")),
                },
                Ok(cmd) => handle(&daemon, cmd),
                Err(e) => Response::err(e),
            },
        };
        let fatal = !resp.ok
            && (resp.error.as_deref().is_some_and(|e| {
                e.starts_with("timed out")
                    || e.starts_with("request larger")
                    || e.starts_with("permission")
                    || e.contains("not terminated")
            }));
        match tokio::time::timeout(WRITE_TIMEOUT, w.write_all(resp.line().as_bytes())).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client did not read its reply in time",
                ))
            }
        }
        if fatal {
            let _ = w.shutdown().await;
            return Ok(());
        }
    }
}

fn handle(d: &Daemon, cmd: Command) -> Response {
    match cmd {
        Command::Status => Response::ok(status(d)),
        Command::Stats => Response::ok(stats(d)),
        Command::Enable | Command::Disable => {
            let on = cmd == Command::Enable;
            match d.set_enabled(on) {
                Ok(()) => Response::ok(json!({ "enabled": on })),
                Err(e) => Response::err(format!("{e:#}")),
            }
        }
        Command::Reload => Response::err("internal: reload is handled asynchronously"),
        Command::SetExternalIp { addr } => match addr.parse::<IpAddr>() {
            Ok(ip) => match d.set_external_ip(ip) {
                Ok(e) => Response::ok(json!({ "external": addrs_json(&e) })),
                Err(msg) => Response::err(msg),
            },
            Err(_) => Response::err(format!("`{addr}` is not an IPv4 or IPv6 address")),
        },
        Command::Flows { addr } => match addr.as_deref().map(str::parse::<IpAddr>) {
            Some(Err(_)) => Response::err(format!(
                "`{}` is not an IPv4 or IPv6 address",
                addr.unwrap_or_default()
            )),
            Some(Ok(a)) => Response::ok(flows(d, Some(a))),
            None => Response::ok(flows(d, None)),
        },
    }
}

/// The NAPT bindings and the media bindings (`filter`: those naming this address), for
/// `sipnat flows`.
fn flows(d: &Daemon, filter: Option<IpAddr>) -> Value {
    let now_s = d.shared.clock.now_s();
    let keep = |a: IpAddr, b: IpAddr| filter.is_none_or(|f| f == a || f == b);
    let sip: Vec<Value> = d
        .shared
        .napt
        .bindings(now_s)
        .into_iter()
        .filter(|b| keep(b.internal, b.external))
        .map(|b| {
            json!({
                "internal": std::net::SocketAddr::new(b.internal, b.internal_port).to_string(),
                "external": std::net::SocketAddr::new(b.external, b.external_port).to_string(),
                "expires_in_s": b.expires_in_s,
            })
        })
        .collect();
    let media: Vec<Value> = d
        .shared
        .media
        .as_ref()
        .map(|m| {
            m.registry
                .list()
                .into_iter()
                .filter(|e| keep(e.internal.ip(), e.external.ip()))
                .map(|e| {
                    let seen = m.sink.last_seen_ns(e.internal, e.external);
                    let idle = seen.filter(|&ns| ns > 0).map(|ns| {
                        crate::control::media::monotonic_ns().saturating_sub(ns) / 1_000_000_000
                    });
                    json!({
                        "internal": e.internal.to_string(),
                        "external": e.external.to_string(),
                        "call": format!("{:016x}", e.call),
                        "age_s": now_s.wrapping_sub(e.created_s),
                        "idle_s": idle,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    json!({ "sip": sip, "media": media })
}

fn addrs_json(e: &ExternalAddrs) -> Value {
    json!({ "v4": e.v4.map(|a| a.to_string()), "v6": e.v6.map(|a| a.to_string()) })
}

fn status(d: &Daemon) -> Value {
    let cfg = d.config.lock().expect("config lock").clone();
    let p = d.programs.lock().expect("programs lock");
    let ext = d.dataplane.external();
    let workers: Vec<Value> = d
        .workers
        .lock()
        .expect("workers lock")
        .iter()
        .map(|w| json!({ "queue": w.queue, "cpu": w.cpu, "af_xdp_mode": if w.zero_copy { "zero-copy" } else { "copy" } }))
        .collect();
    let age = ext
        .updated
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .map(|a| a.as_secs());
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "uptime_s": d.started.elapsed().as_secs(),
        "enabled": d.enabled.load(std::sync::atomic::Ordering::Relaxed),
        "config": d.config_path.display().to_string(),
        "interfaces": {
            "inside": { "name": cfg.interfaces.inside.get_ref(), "xdp_mode": p.inside_mode.to_string() },
            "outside": { "name": cfg.interfaces.outside.get_ref(), "xdp_mode": p.outside_mode.to_string() },
        },
        "sip_ports": cfg.interfaces.sip_ports.get_ref(),
        "on_failure": format!("{:?}", cfg.interfaces.on_failure).to_lowercase(),
        "pins": d.pin_root.display().to_string(),
        "failure_mode_survives_crash": match &d.pins {
            PinLifetime::Survive => Some(true),
            PinLifetime::DiesWithProcess(_) => Some(false),
            PinLifetime::Unknown(_) => None,
        },
        "failure_mode_note": match &d.pins {
            PinLifetime::Survive => None,
            PinLifetime::DiesWithProcess(n) | PinLifetime::Unknown(n) => Some(n.clone()),
        },
        "l3": format!("{:?}", cfg.nat.l3).to_lowercase(),
        "rules": cfg.nat.rule.len(),
        "workers": workers,
        "external": {
            "addresses": addrs_json(&ext.addrs),
            "source": ext.source,
            "age_s": age,
            "stale": ext.stale,
        },
    })
}

fn stats(d: &Daemon) -> Value {
    super::report::collect(d).to_json()
}

/// The socket path of a config (or the default).
pub fn socket_path(cfg: &crate::config::Config) -> PathBuf {
    cfg.control.socket.clone()
}
