//! Network namespaces owned by a test: created with a unique name, removed on drop (also
//! when the test panics), processes started in them ended by PID.

use std::{
    fs::File,
    os::fd::AsRawFd,
    process::{Child, Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct Netns {
    pub name: String,
    children: Vec<Child>,
}

impl Netns {
    /// Creates `snt<pid>-<n>-<tag>` (short: interface-name limits do not apply, but
    /// keep `ip netns list` readable).
    pub fn new(tag: &str) -> Netns {
        let name = format!(
            "snt{}-{}-{tag}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns {
            name,
            children: Vec::new(),
        };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        ns
    }

    /// Runs a command inside the namespace; panics with its stderr when it fails.
    pub fn exec(&self, argv: &[&str]) -> Output {
        run_ok(
            Command::new("ip")
                .args(["netns", "exec", &self.name])
                .args(argv),
        )
    }

    /// Runs a command inside the namespace and returns its output whatever the status.
    pub fn exec_any(&self, argv: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(argv)
            .output()
            .expect("spawn ip netns exec")
    }

    /// Starts a background process inside the namespace; it is killed (by PID) on drop.
    pub fn spawn(&mut self, argv: &[&str]) -> u32 {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(argv)
            .spawn()
            .expect("spawn in netns");
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Starts a background process inside the namespace with its output discarded and its
    /// working directory in the temp dir (sipp writes files there); killed on drop.
    pub fn spawn_quiet(&mut self, argv: &[&str]) -> u32 {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(argv)
            .current_dir(std::env::temp_dir())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn in netns");
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Runs `f` on a thread that has entered this namespace (sockets and netlink calls
    /// made there belong to it) and returns its result.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = File::open(&path).expect("open netns");
            // SAFETY: valid fd of a netns file; affects only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("netns thread panicked")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.name.is_empty() {
            return; // a NetnsRef: not ours to delete
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Deleting the namespace destroys the veths inside it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A veth pair with one end in each namespace, both up, addressed.
pub fn veth_pair(a: &Netns, a_if: &str, a_ip: &str, b: &Netns, b_if: &str, b_ip: &str) {
    a.exec(&[
        "ip", "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name,
    ]);
    a.exec(&["ip", "addr", "add", a_ip, "dev", a_if]);
    b.exec(&["ip", "addr", "add", b_ip, "dev", b_if]);
    a.exec(&["ip", "link", "set", a_if, "up"]);
    b.exec(&["ip", "link", "set", b_if, "up"]);
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Netns {
    /// A handle on a namespace another `Netns` owns (not removed on drop).
    pub fn attach_existing(name: &str) -> NetnsRef {
        NetnsRef(Netns {
            name: name.to_string(),
            children: Vec::new(),
        })
    }
}

/// Borrowed namespace: `run` works, drop does not delete.
pub struct NetnsRef(Netns);

impl NetnsRef {
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.0.run(f)
    }
}

impl Drop for NetnsRef {
    fn drop(&mut self) {
        self.0.name.clear();
    }
}
