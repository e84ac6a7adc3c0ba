//! A UDP blaster and a verifying receiver for the throughput smoke test: the sender sends a
//! template with a 10-digit sequence number as fast as one thread can (sendmmsg batches);
//! the receiver compares every datagram with the expected rewrite (sequence masked).

use std::{
    net::UdpSocket,
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

/// Finds the 10-digit sequence placeholder `0000000000` in a message.
pub fn seq_offset(msg: &[u8]) -> usize {
    msg.windows(10)
        .position(|w| w == b"0000000000")
        .expect("sequence placeholder")
}

fn put_seq(buf: &mut [u8], at: usize, mut n: u64) {
    for i in (0..10).rev() {
        buf[at + i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

pub struct Sent {
    pub sent: u64,
    pub errors: u64,
    pub elapsed: Duration,
}

/// Sends `template` from `src` to `dst` for `dur` (call inside the sender's namespace).
pub fn blast(template: &[u8], src: (&str, u16), dst: (&str, u16), dur: Duration) -> Sent {
    const BATCH: usize = 32;
    let s = UdpSocket::bind(src).unwrap();
    s.connect(dst).unwrap();
    let at = seq_offset(template);
    let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| template.to_vec()).collect();
    let (mut sent, mut errors, mut seq) = (0u64, 0u64, 1u64);
    let start = Instant::now();
    while start.elapsed() < dur {
        for b in bufs.iter_mut() {
            put_seq(b, at, seq);
            seq += 1;
        }
        let mut iov: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: zeroed mmsghdr is valid; each points at one iovec of a live buffer.
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        // SAFETY: valid socket and message array.
        let n = unsafe { libc::sendmmsg(s.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0) };
        if n < 0 {
            errors += 1;
            std::thread::yield_now();
            // The sequence numbers of an unsent batch are reused next time.
            seq -= BATCH as u64;
        } else {
            sent += n as u64;
            seq -= (BATCH - n as usize) as u64;
        }
    }
    Sent {
        sent,
        errors,
        elapsed: start.elapsed(),
    }
}

pub struct Received {
    pub received: u64,
    pub incorrect: u64,
    pub first_incorrect: Option<Vec<u8>>,
}

/// Receives on `bind` until `stop` is set and nothing arrived for 500 ms; every datagram
/// must come from `from` and equal `expected` (sequence digits masked).
pub fn receive(
    bind: (&str, u16),
    from: &str,
    expected: &[u8],
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
) -> Received {
    let s = UdpSocket::bind(bind).unwrap();
    let big: i32 = 64 << 20;
    // SAFETY: setsockopt with a local int (RCVBUFFORCE needs CAP_NET_ADMIN: root).
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&big as *const i32).cast(),
            4,
        )
    };
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let at = seq_offset(expected);
    let mut buf = vec![0u8; 4096];
    let (mut received, mut incorrect, mut first_incorrect) = (0u64, 0u64, None);
    let mut last = Instant::now();
    loop {
        match s.recv_from(&mut buf) {
            Ok((n, peer)) => {
                received += 1;
                count.store(received, Ordering::Relaxed);
                last = Instant::now();
                let got = &buf[..n];
                let ok = peer.ip().to_string() == from
                    && n == expected.len()
                    && got[..at] == expected[..at]
                    && got[at + 10..] == expected[at + 10..]
                    && got[at..at + 10].iter().all(u8::is_ascii_digit);
                if !ok {
                    incorrect += 1;
                    first_incorrect.get_or_insert_with(|| got.to_vec());
                }
            }
            Err(_) => {
                if stop.load(Ordering::Relaxed) && last.elapsed() > Duration::from_millis(500) {
                    break;
                }
            }
        }
    }
    Received {
        received,
        incorrect,
        first_incorrect,
    }
}
