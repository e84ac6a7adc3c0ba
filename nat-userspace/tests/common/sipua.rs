//! Real SIP software in the test namespaces: Kamailio as a registrar and proxy, baresip as
//! a user agent driven over its `ctrl_tcp` control connection (JSON in netstrings:
//! commands with a token answered by a response, and events such as `REGISTER_OK` or
//! `CALL_ESTABLISHED`). Both run in the foreground as children of the test, ended by PID.

use std::{
    io::{Read as _, Write as _},
    net::{TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{find_binary, netns::Netns, topo::await_condition};

/// Sends `sig` to `child` and waits up to `timeout` for it to exit; SIGKILL after that.
fn end_child(child: &mut Child, sig: i32, timeout: Duration) {
    // SAFETY: a signal to our own child (its PID, not a name).
    unsafe { libc::kill(child.id() as i32, sig) };
    let end = Instant::now() + timeout;
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn_in(ns: &Netns, argv: &[&str], cwd: &Path, log: &Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    // `ip netns exec` execs the program: the child's PID is the program's own.
    Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .args(argv)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {argv:?}: {e}"))
}

/// Kamailio in the foreground (`-DD -E`: no daemon, log on stderr to `log`).
pub struct Kamailio {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Kamailio {
    /// Writes `cfg` to `dir/kamailio.cfg`, starts Kamailio in `ns` and waits until it
    /// answers an OPTIONS on `ip:5060` (`cfg` must answer one without a user part).
    pub fn start(ns: &Netns, dir: &Path, ip: &str, cfg: &str) -> Kamailio {
        let path = dir.join("kamailio.cfg");
        std::fs::write(&path, cfg).unwrap();
        let log = dir.join("kamailio.log");
        let bin = find_binary("kamailio").expect("kamailio installed");
        let bin = bin.to_str().unwrap();
        let child = spawn_in(
            ns,
            &[bin, "-DD", "-E", "-f", path.to_str().unwrap()],
            dir,
            &log,
        );
        let mut k = Kamailio {
            child: Some(child),
            log,
        };
        let target = format!("{ip}:5060");
        let local = ip.to_string();
        let mut n = 0;
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            n += 1;
            let (t, l) = (target.clone(), local.clone());
            let answered = ns.run(move || {
                let s = UdpSocket::bind((l.as_str(), 0)).unwrap();
                s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
                let port = s.local_addr().unwrap().port();
                let req = format!(
                    "OPTIONS sip:{t} SIP/2.0\r\nVia: SIP/2.0/UDP {l}:{port};branch=z9hG4bK-probe{n}\r\n\
                     Max-Forwards: 70\r\nFrom: <sip:probe@{l}>;tag=p{n}\r\nTo: <sip:{t}>\r\n\
                     Call-ID: probe-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                );
                let _ = s.send_to(req.as_bytes(), t.as_str());
                let mut buf = [0u8; 2048];
                matches!(s.recv_from(&mut buf), Ok((len, _)) if buf[..len].starts_with(b"SIP/2.0 200"))
            });
            if answered {
                return k;
            }
            super::still_starting("kamailio (OPTIONS)", k.child.as_mut().unwrap(), &k.log, end);
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM to the main process (it ends its children) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            end_child(&mut c, libc::SIGTERM, Duration::from_secs(10));
        }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What baresip sent on its control connection: responses and events, in order.
type Messages = Arc<Mutex<Vec<Value>>>;

/// baresip 1.x in the foreground with its own config directory, no sound device (a sine
/// wave as the source, no player), driven over `ctrl_tcp`.
pub struct Baresip {
    child: Option<Child>,
    pub name: String,
    pub log: PathBuf,
    ctl: TcpStream,
    messages: Messages,
    token: u32,
}

impl Baresip {
    /// Starts baresip in `ns` listening for SIP on `sip_listen` (`ip:port`, UDP) and for
    /// control on `ctrl_ip:4444`, with no account (add one with [`Baresip::command`]
    /// `uanew`, so that its events come after the control connection is up). Its config
    /// and log are in `dir/name`.
    pub fn start(ns: &Netns, dir: &Path, name: &str, sip_listen: &str, ctrl_ip: &str) -> Baresip {
        let home = dir.join(name);
        std::fs::create_dir_all(&home).unwrap();
        let ctrl = format!("{ctrl_ip}:4444");
        // G.711 only; the sine source produces 48 kHz stereo only, so baresip resamples.
        // No player: received audio is decoded and dropped.
        let modules = baresip_modules();
        let config = format!(
            "poll_method\tepoll\nsip_listen\t{sip_listen}\ncall_local_timeout\t120\n\
             call_max_calls\t4\naudio_player\t\naudio_source\tausine,440\naudio_alert\t\n\
             ausrc_srate\t48000\nauplay_srate\t48000\nausrc_channels\t2\nauplay_channels\t2\n\
             rtp_ports\t10000-10099\nrtp_stats\tno\nmodule_path\t{modules}\n\
             module\tg711.so\nmodule\tausine.so\nmodule\tctrl_tcp.so\nmodule_app\tmenu.so\n\
             ctrl_tcp_listen\t{ctrl}\n",
            modules = modules.display()
        );
        std::fs::write(home.join("config"), config).unwrap();
        std::fs::write(home.join("accounts"), "").unwrap();
        std::fs::write(home.join("contacts"), "").unwrap();
        let log = home.join("baresip.log");
        let bin = find_binary("baresip").expect("baresip installed");
        let mut child = spawn_in(
            ns,
            &[bin.to_str().unwrap(), "-f", home.to_str().unwrap()],
            &home,
            &log,
        );
        let end = Instant::now() + Duration::from_secs(20);
        let ctl = loop {
            let c = ctrl.clone();
            // A socket made inside the namespace stays in it: usable from any thread.
            if let Ok(s) = ns.run(move || TcpStream::connect(c.as_str())) {
                break s;
            }
            if let Some(st) = child.try_wait().unwrap() {
                panic!(
                    "baresip {name} exited ({st}) during start:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < end,
                "baresip {name}: no control connection within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let messages: Messages = Arc::default();
        let (mut reader, sink) = (ctl.try_clone().unwrap(), messages.clone());
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 16384];
            while let Ok(n) = reader.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                // Netstrings: `<len>:<json>,`.
                while let Some(colon) = buf.iter().position(|&b| b == b':') {
                    let Some(len) = std::str::from_utf8(&buf[..colon])
                        .ok()
                        .and_then(|s| s.parse::<usize>().ok())
                    else {
                        return;
                    };
                    if buf.len() < colon + 1 + len + 1 {
                        break;
                    }
                    if let Ok(v) = serde_json::from_slice(&buf[colon + 1..colon + 1 + len]) {
                        sink.lock().unwrap().push(v);
                    }
                    buf.drain(..colon + 1 + len + 1);
                }
            }
        });
        Baresip {
            child: Some(child),
            name: name.to_string(),
            log,
            ctl,
            messages,
            token: 0,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs a command (as typed in baresip's menu, without the `/`) and returns the
    /// response's data; panics when baresip refuses it or does not answer within 10 s.
    pub fn command(&mut self, command: &str, params: &str) -> String {
        self.token += 1;
        let token = format!("{}-{}", self.name, self.token);
        let msg =
            serde_json::json!({"command": command, "params": params, "token": token}).to_string();
        self.ctl
            .write_all(format!("{}:{msg},", msg.len()).as_bytes())
            .unwrap();
        let mut response = Value::Null;
        await_condition(
            &format!("baresip {} to answer `{command} {params}`", self.name),
            Duration::from_secs(10),
            || {
                let m = self.messages.lock().unwrap();
                match m.iter().find(|v| v["token"] == token.as_str()) {
                    Some(v) => {
                        response = v.clone();
                        true
                    }
                    None => false,
                }
            },
        );
        assert!(
            response["ok"] == true,
            "baresip {}: `{command} {params}` failed: {response}\n{}",
            self.name,
            self.log_text()
        );
        response["data"].as_str().unwrap_or("").to_string()
    }

    /// The events of type `ty` so far.
    pub fn events(&self, ty: &str) -> Vec<Value> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["event"] == true && v["type"] == ty)
            .cloned()
            .collect()
    }

    /// Waits until there are `n` events of type `ty` and returns the `n`-th.
    pub fn await_event(&self, ty: &str, n: usize, timeout: Duration) -> Value {
        let end = Instant::now() + timeout;
        loop {
            let ev = self.events(ty);
            if ev.len() >= n {
                return ev[n - 1].clone();
            }
            if Instant::now() >= end {
                // Described first: no lock held while panicking.
                let seen: Vec<String> = self
                    .messages
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|v| v["event"] == true)
                    .map(|v| format!("{} {}", v["type"], v["param"]))
                    .collect();
                panic!(
                    "baresip {}: event {ty} #{n} not seen within {timeout:?}; events: {seen:?}\nlog:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills baresip with SIGKILL (no unregistration, no BYE) and waits for it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            end_child(&mut c, libc::SIGKILL, Duration::from_secs(10));
        }
    }
}

/// The directory of baresip's modules (baresip's default is its working directory).
fn baresip_modules() -> PathBuf {
    ["/usr/lib/baresip/modules", "/usr/local/lib/baresip/modules"]
        .iter()
        .map(PathBuf::from)
        .chain(
            std::fs::read_dir("/usr/lib")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path().join("baresip/modules")),
        )
        .find(|d| d.join("ctrl_tcp.so").is_file())
        .expect("baresip's modules (ctrl_tcp.so) not found")
}

impl Drop for Baresip {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            end_child(&mut c, libc::SIGTERM, Duration::from_secs(5));
        }
    }
}
