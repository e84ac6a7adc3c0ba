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
    let mut out = String::new();
    let rows = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    let s = |x: &Value| match x {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let sip = rows("sip");
    out.push_str(&format!(
        "SIP (NAPT) bindings: {}\n{:<44} {:<44} {:>10}\n",
        sip.len(),
        "internal",
        "external",
        "expires_s"
    ));
    for b in &sip {
        out.push_str(&format!(
            "{:<44} {:<44} {:>10}\n",
            s(&b["internal"]),
            s(&b["external"]),
            s(&b["expires_in_s"])
        ));
    }
    let media = rows("media");
    out.push_str(&format!(
        "media bindings (RTP; RTCP on the next port): {}\n{:<44} {:<44} {:>7} {:>7}  call\n",
        media.len(),
        "internal",
        "external",
        "age_s",
        "idle_s"
    ));
    for m in &media {
        out.push_str(&format!(
            "{:<44} {:<44} {:>7} {:>7}  {}\n",
            s(&m["internal"]),
            s(&m["external"]),
            s(&m["age_s"]),
            s(&m["idle_s"]),
            s(&m["call"])
        ));
    }
    out
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
    for side in ["inside", "outside"] {
        if let Some(m) = v["xdp"][side].as_object() {
            for (k, n) in m {
                let n = n.as_u64().unwrap_or(0);
                if n != 0 {
                    s.push_str(&format!(
                        "{:<10} {:<36} {:>14} {}\n",
                        format!("xdp/{side}"),
                        k,
                        n,
                        rate(&["xdp", side, k], n)
                    ));
                }
            }
        }
    }
    if let Some(m) = v["total"].as_object() {
        for (k, n) in m {
            let n = n.as_u64().unwrap_or(0);
            if n != 0 {
                s.push_str(&format!(
                    "{:<10} {:<36} {:>14} {}\n",
                    "workers",
                    k,
                    n,
                    rate(&["total", k], n)
                ));
            }
        }
    }
    for w in v["workers"].as_array().into_iter().flatten() {
        for side in ["inside", "outside"] {
            if let Some(m) = w["xsk"][side].as_object() {
                for (k, n) in m {
                    let n = n.as_u64().unwrap_or(0);
                    if n != 0 {
                        s.push_str(&format!(
                            "{:<10} {:<36} {:>14}\n",
                            format!("q{}/{side}", w["queue"]),
                            format!("xsk_{k}"),
                            n
                        ));
                    }
                }
            }
        }
    }
    let rejected = v["external"]["rejected"].as_u64().unwrap_or(0);
    if rejected != 0 {
        s.push_str(&format!(
            "{:<10} {:<36} {:>14} {}\n",
            "external",
            "rejected",
            rejected,
            rate(&["external", "rejected"], rejected)
        ));
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
