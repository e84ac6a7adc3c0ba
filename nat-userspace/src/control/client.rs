//! The CLI side of the control socket: one request, one response, clear errors.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use anyhow::{anyhow, bail};
use serde_json::Value;

use super::protocol::{Command, Request, Response, VERSION};

/// How long the CLI waits for the daemon to accept, read and answer.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Connects with [`TIMEOUT`] as the limit (a daemon whose accept queue is full would
/// otherwise make `connect` wait forever).
fn connect(socket: &Path) -> std::io::Result<UnixStream> {
    let bytes = socket.as_os_str().as_encoded_bytes();
    // SAFETY: zeroed sockaddr_un is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "socket path too long (at most 107 bytes)",
        ));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: socket(2); the fd is owned by the UnixStream below (closed on every path).
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    let s = unsafe { <UnixStream as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // The send timeout also bounds connect(2) on a Unix socket.
    s.set_write_timeout(Some(TIMEOUT))?;
    // SAFETY: valid fd and sockaddr_un of the given length.
    let r = unsafe {
        libc::connect(
            fd,
            (&addr as *const libc::sockaddr_un).cast(),
            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(s)
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Sends `cmd` to the daemon at `socket` and returns the response data.
pub fn call(socket: &Path, cmd: Command) -> anyhow::Result<Value> {
    let secs = TIMEOUT.as_secs();
    let s = connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => anyhow!(
            "no sipnat daemon is running (nothing answers on {}); start it with `sipnat run -c FILE` or give --socket",
            socket.display()
        ),
        std::io::ErrorKind::PermissionDenied => anyhow!(
            "permission denied on {}: the control socket is for root (or the configured group)",
            socket.display()
        ),
        _ if timed_out(&e) => anyhow!(
            "the daemon did not accept the connection within {secs} s on {} (it is hung, or \
             flooded with connections); try again, and check its log",
            socket.display()
        ),
        _ => anyhow!("cannot reach the daemon on {}: {e}", socket.display()),
    })?;
    s.set_read_timeout(Some(TIMEOUT))?;
    let mut line = serde_json::to_string(&Request {
        v: VERSION,
        command: cmd,
    })?;
    line.push('\n');
    // A daemon that refuses the connection (busy, permission) may answer and close before
    // reading the request: its answer is still read below.
    let written = (&s).write_all(line.as_bytes());
    let mut resp = String::new();
    let read = BufReader::new(&s).read_line(&mut resp);
    match (read, written) {
        (Err(e), _) if timed_out(&e) => bail!(
            "the daemon did not answer within {secs} s on {} (busy with other control \
             clients, or hung); try again, and check its log",
            socket.display()
        ),
        (Err(e), _) => bail!(
            "lost the connection to the daemon on {}: {e}",
            socket.display()
        ),
        (Ok(0), Err(e)) if timed_out(&e) => bail!(
            "the daemon did not take the request within {secs} s on {} (busy with other \
             control clients, or hung); try again, and check its log",
            socket.display()
        ),
        (Ok(0), _) => bail!("the daemon closed the connection without answering"),
        (Ok(_), _) => {}
    }
    let r: Response = serde_json::from_str(&resp)
        .map_err(|e| anyhow!("unreadable answer from the daemon: {e}"))?;
    if !r.ok {
        bail!(
            "{}",
            r.error
                .unwrap_or_else(|| "the daemon reported an error".into())
        );
    }
    Ok(r.data.unwrap_or(Value::Null))
}
