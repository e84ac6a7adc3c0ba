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

/// Sends `cmd` to the daemon at `socket` and returns the response data.
pub fn call(socket: &Path, cmd: Command) -> anyhow::Result<Value> {
    let mut s = UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => anyhow!(
            "no sipnat daemon is running (nothing answers on {}); start it with `sipnat run -c FILE` or give --socket",
            socket.display()
        ),
        std::io::ErrorKind::PermissionDenied => anyhow!(
            "permission denied on {}: the control socket is for root (or the configured group)",
            socket.display()
        ),
        _ => anyhow!("cannot reach the daemon on {}: {e}", socket.display()),
    })?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut line = serde_json::to_string(&Request {
        v: VERSION,
        command: cmd,
    })?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut resp = String::new();
    BufReader::new(&s).read_line(&mut resp)?;
    if resp.is_empty() {
        bail!("the daemon closed the connection without answering");
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
