//! Control commands: `status`, `stats [--watch] [--json]`, `set external-ip`, `enable`,
//! `disable`, `reload`. They talk to the daemon's control socket; a missing daemon gives
//! one clear line.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{fail, ControlArgs};
use crate::{
    config,
    control::{client::call, protocol::Command},
};

/// The socket: `--socket`, else the config's `[control] socket`, else the default.
pub fn socket(global: Option<&Path>, c: &ControlArgs) -> anyhow::Result<PathBuf> {
    if let Some(s) = global {
        return Ok(s.to_path_buf());
    }
    if let Some(path) = &c.config {
        let (cfg, _) = config::Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
        return Ok(cfg.control.socket);
    }
    Ok(PathBuf::from(config::DEFAULT_SOCKET))
}

pub fn simple(sock: anyhow::Result<PathBuf>, cmd: Command) -> ExitCode {
    let res = sock.and_then(|s| call(&s, cmd.clone()));
    match res {
        Ok(v) => {
            match cmd {
                Command::Enable => println!("steering enabled: SIP goes through sipnat"),
                Command::Disable => {
                    println!("steering disabled: all traffic takes the kernel path, unrewritten")
                }
                Command::Reload => println!("{}", v["message"].as_str().unwrap_or("reloaded")),
                Command::SetExternalIp { .. } => println!(
                    "external address now {}",
                    [&v["external"]["v4"], &v["external"]["v6"]]
                        .iter()
                        .filter_map(|a| a.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                _ => println!("{v}"),
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// `sipnat flows`: the NAPT bindings and the media bindings, as tables or JSON.
pub fn flows(sock: anyhow::Result<PathBuf>, addr: Option<String>, json: bool) -> ExitCode {
    match sock.and_then(|s| call(&s, Command::Flows { addr })) {
        Ok(v) if json => {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(v) => {
            print!("{}", flows_table(&v));
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// The two tables of `sipnat flows`.
fn flows_table(v: &Value) -> String {
    let rows = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    let mut out = String::new();
    let (internal, external) = (
        ("internal", "internal", Col::Left(44)),
        ("external", "external", Col::Left(44)),
    );
    let sip = [
        internal,
        external,
        ("expires_s", "expires_in_s", Col::Right(10)),
    ];
    push_table(&mut out, "SIP (NAPT) bindings", &rows("sip"), &sip);
    let media = [
        internal,
        external,
        ("age_s", "age_s", Col::Right(7)),
        ("idle_s", "idle_s", Col::Right(7)),
        ("call", "call", Col::Last),
    ];
    push_table(
        &mut out,
        "media bindings (RTP; RTCP on the next port)",
        &rows("media"),
        &media,
    );
    out
}

/// How a column of a [`push_table`] is laid out.
#[derive(Clone, Copy)]
enum Col {
    Left(usize),
    Right(usize),
    /// The last column, unpadded, after one more space.
    Last,
}

/// Appends a table to `out`: `title: N`, a header line, a line per row; `cols` are
/// (header, key of the row's JSON object, layout).
fn push_table(out: &mut String, title: &str, rows: &[Value], cols: &[(&str, &str, Col)]) {
    let line = |cells: Vec<String>| {
        let cells: Vec<String> = cells
            .into_iter()
            .zip(cols)
            .map(|(c, (_, _, col))| match col {
                Col::Left(w) => format!("{c:<w$}", w = *w),
                Col::Right(w) => format!("{c:>w$}", w = *w),
                Col::Last => format!(" {c}"),
            })
            .collect();
        cells.join(" ") + "\n"
    };
    out.push_str(&format!("{title}: {}\n", rows.len()));
    out.push_str(&line(cols.iter().map(|(h, _, _)| h.to_string()).collect()));
    for r in rows {
        out.push_str(&line(cols.iter().map(|(_, k, _)| cell(&r[*k])).collect()));
    }
}

/// A JSON value as a table cell: strings unquoted, null as `-`.
fn cell(x: &Value) -> String {
    match x {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

pub fn status(sock: anyhow::Result<PathBuf>, json: bool) -> ExitCode {
    match sock.and_then(|s| call(&s, Command::Status)) {
        Ok(v) if json => {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(v) => {
            let ext = &v["external"];
            let addrs: Vec<&str> = [&ext["addresses"]["v4"], &ext["addresses"]["v6"]]
                .iter()
                .filter_map(|a| a.as_str())
                .collect();
            println!(
                "sipnat {} (pid {}), up {}",
                v["version"].as_str().unwrap_or("?"),
                v["pid"],
                human_secs(v["uptime_s"].as_u64().unwrap_or(0))
            );
            println!(
                "steering:  {}",
                if v["enabled"].as_bool() == Some(true) {
                    "enabled"
                } else {
                    "DISABLED (kernel path)"
                }
            );
            for side in ["inside", "outside"] {
                let i = &v["interfaces"][side];
                println!(
                    "{side:<9}  {} (XDP {})",
                    i["name"].as_str().unwrap_or("?"),
                    i["xdp_mode"].as_str().unwrap_or("?")
                );
            }
            let workers = v["workers"].as_array().cloned().unwrap_or_default();
            let w: Vec<String> = workers
                .iter()
                .map(|w| {
                    format!(
                        "q{} cpu {} {}",
                        w["queue"],
                        w["cpu"],
                        w["af_xdp_mode"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            println!("workers:   {} ({})", workers.len(), w.join(", "));
            println!(
                "external:  {} (source {}, age {}{})",
                if addrs.is_empty() {
                    "(none)".to_string()
                } else {
                    addrs.join(", ")
                },
                ext["source"].as_str().unwrap_or("?"),
                ext["age_s"].as_u64().map_or("-".to_string(), human_secs),
                if ext["stale"].as_bool() == Some(true) {
                    ", STALE"
                } else {
                    ""
                }
            );
            println!(
                "nat:       l3 {}, {} rule(s), SIP ports {}, on failure {}",
                v["l3"].as_str().unwrap_or("?"),
                v["rules"],
                v["sip_ports"],
                v["on_failure"].as_str().unwrap_or("?")
            );
            let pins = v["pins"].as_str().unwrap_or("?");
            let note = v["failure_mode_note"].as_str().unwrap_or("");
            match v["failure_mode_survives_crash"].as_bool() {
                Some(true) => println!("pins:      {pins} (on_failure survives a crash)"),
                Some(false) => println!(
                    "pins:      {pins}: WARNING: on_failure does not survive a crash ({note})"
                ),
                None => println!(
                    "pins:      {pins} (unknown whether on_failure survives a crash: {note})"
                ),
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn human_secs(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

pub fn stats(sock: anyhow::Result<PathBuf>, watch: bool, json: bool) -> ExitCode {
    let sock = match sock {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let mut prev: Option<(Instant, Value)> = None;
    loop {
        let v = match call(&sock, Command::Stats) {
            Ok(v) => v,
            Err(e) => return fail(&e),
        };
        let now = Instant::now();
        let mut out = std::io::stdout().lock();
        if json {
            let _ = writeln!(out, "{}", serde_json::to_string(&v).unwrap_or_default());
        } else {
            if watch {
                let _ = write!(out, "\x1b[2J\x1b[H");
            }
            let rates = prev
                .as_ref()
                .map(|(t, p)| (now.duration_since(*t).as_secs_f64(), p));
            let _ = write!(out, "{}", table(&v, rates));
        }
        let _ = out.flush();
        if !watch {
            return ExitCode::SUCCESS;
        }
        prev = Some((now, v));
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The non-zero counts of a JSON object, in its order.
fn nonzero(m: &Value) -> Vec<(String, u64)> {
    let counts = m.as_object().into_iter().flatten();
    counts
        .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
        .filter(|(_, n)| *n != 0)
        .collect()
}

/// The human table: non-zero counters, with per-second rates when watching.
fn table(v: &Value, prev: Option<(f64, &Value)>) -> String {
    let mut s = String::new();
    let rate = |path: &[&str], n: u64| -> String {
        let Some((dt, p)) = prev else {
            return String::new();
        };
        let mut q = p;
        for k in path {
            q = &q[*k];
        }
        let before = q.as_u64().unwrap_or(0);
        format!(
            "{:>12.0}/s",
            (n.saturating_sub(before)) as f64 / dt.max(1e-3)
        )
    };
    s.push_str(&format!(
        "{:<10} {:<36} {:>14} {}\n",
        "where",
        "counter",
        "value",
        if prev.is_some() { "        rate" } else { "" }
    ));
    // A row: where, counter, value, and the rate column when given.
    let row = |s: &mut String, at: &str, k: &str, n: u64, rate: Option<String>| {
        let rate = rate.map(|r| format!(" {r}")).unwrap_or_default();
        s.push_str(&format!("{at:<10} {k:<36} {n:>14}{rate}\n"));
    };
    for side in ["inside", "outside"] {
        for (k, n) in nonzero(&v["xdp"][side]) {
            let r = rate(&["xdp", side, &k], n);
            row(&mut s, &format!("xdp/{side}"), &k, n, Some(r));
        }
    }
    for (k, n) in nonzero(&v["total"]) {
        let r = rate(&["total", &k], n);
        row(&mut s, "workers", &k, n, Some(r));
    }
    for w in v["workers"].as_array().into_iter().flatten() {
        for side in ["inside", "outside"] {
            for (k, n) in nonzero(&w["xsk"][side]) {
                row(
                    &mut s,
                    &format!("q{}/{side}", w["queue"]),
                    &format!("xsk_{k}"),
                    n,
                    None,
                );
            }
        }
    }
    let rejected = v["external"]["rejected"].as_u64().unwrap_or(0);
    if rejected != 0 {
        let r = rate(&["external", "rejected"], rejected);
        row(&mut s, "external", "rejected", rejected, Some(r));
    }
    s.push_str(&format!(
        "flows live {}, NAPT bindings {}, media bindings {}, next hops {}, uptime {:.0}s\n",
        v["flows"]["live"],
        v["bindings"]["napt_live"],
        v["bindings"]["media_live"],
        v["nexthops"],
        v["uptime_s"].as_f64().unwrap_or(0.0)
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_table_lays_out_both_tables() {
        let v = serde_json::json!({
            "sip": [{ "internal": "10.0.0.2:5060", "external": "198.51.100.1:5060", "expires_in_s": 297 }],
            "media": [{ "internal": "10.0.0.3:6000", "external": "198.51.100.1:30000",
                        "age_s": 4, "idle_s": null, "call": "5c1f0e8b2a7d9c31" }],
        });
        let want = format!(
            "SIP (NAPT) bindings: 1\n{:<44} {:<44} {:>10}\n{:<44} {:<44} {:>10}\n\
             media bindings (RTP; RTCP on the next port): 1\n{:<44} {:<44} {:>7} {:>7}  call\n\
             {:<44} {:<44} {:>7} {:>7}  5c1f0e8b2a7d9c31\n",
            "internal",
            "external",
            "expires_s",
            "10.0.0.2:5060",
            "198.51.100.1:5060",
            297,
            "internal",
            "external",
            "age_s",
            "idle_s",
            "10.0.0.3:6000",
            "198.51.100.1:30000",
            4,
            "-",
        );
        assert_eq!(flows_table(&v), want);
    }
}
