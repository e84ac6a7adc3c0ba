//! Control-socket hogs: many connections from an unprivileged user.

/// Control-socket connections opened by a non-root member of `[control] group`, in a
/// child process: each sends `requests` status requests and never reads a reply.
pub struct Hog {
    pid: libc::pid_t,
    pub connected: u32,
}

impl Hog {
    pub fn start(
        socket: &std::path::Path,
        conns: usize,
        requests: usize,
        uid: u32,
        gid: u32,
    ) -> Hog {
        // Everything the child needs is prepared here: after fork it makes raw system
        // calls only (the test process has other threads).
        // SAFETY: zeroed sockaddr_un is valid; the path fits (checked).
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let p = socket.as_os_str().as_encoded_bytes();
        assert!(p.len() < addr.sun_path.len());
        for (d, s) in addr.sun_path.iter_mut().zip(p) {
            *d = *s as libc::c_char;
        }
        let req = b"{\"v\":1,\"cmd\":\"status\"}\n".repeat(requests);
        let timeout = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        let mut fds = [0; 2];
        // SAFETY: pipe(2) into a 2-element array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: fork; the child only makes async-signal-safe system calls and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: raw system calls on values prepared before fork.
            unsafe {
                libc::close(fds[0]);
                if libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) != 0
                    || libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0
                    || libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0
                {
                    libc::_exit(2);
                }
                let mut ok: u32 = 0;
                for _ in 0..conns {
                    let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                    if fd < 0 {
                        break;
                    }
                    // A connect the daemon never accepts gives up after 2 s.
                    libc::setsockopt(
                        fd,
                        libc::SOL_SOCKET,
                        libc::SO_SNDTIMEO,
                        (&timeout as *const libc::timeval).cast(),
                        std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                    );
                    let r = libc::connect(
                        fd,
                        (&addr as *const libc::sockaddr_un).cast(),
                        std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
                    );
                    if r == 0 {
                        libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK);
                        libc::write(fd, req.as_ptr().cast(), req.len());
                        ok += 1;
                    }
                }
                libc::write(fds[1], (&ok as *const u32).cast(), 4);
                loop {
                    libc::pause();
                }
            }
        }
        // SAFETY: our pipe ends.
        unsafe { libc::close(fds[1]) };
        let mut connected: u32 = 0;
        // SAFETY: reading 4 bytes into a u32.
        let n = unsafe { libc::read(fds[0], (&mut connected as *mut u32).cast(), 4) };
        // SAFETY: our pipe end.
        unsafe { libc::close(fds[0]) };
        assert_eq!(n, 4, "the hog process failed to start");
        Hog { pid, connected }
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        // SAFETY: a child this test forked.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}
