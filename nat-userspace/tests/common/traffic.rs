//! A UDP blaster and a verifying receiver for the throughput smoke test: the sender sends a
//! template with a 10-digit sequence number as fast as one thread can (sendmmsg batches);
//! the receiver compares every datagram with the expected rewrite (sequence masked).

use super::topo::{CAR_IP, EXT_IP, UA_IP};

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
/// SO_RCVBUFFORCE (needs CAP_NET_ADMIN: root): a receive buffer of `bytes` regardless
/// of net.core.rmem_max, so that a receiver thread the test's own load delays does not
/// overflow.
pub fn force_rcvbuf(s: &UdpSocket, bytes: libc::c_int) {
    // SAFETY: setsockopt on a valid socket with a pointer to a c_int of the given size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
}

pub fn receive(
    bind: (&str, u16),
    from: &str,
    expected: &[u8],
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
) -> Received {
    let s = UdpSocket::bind(bind).unwrap();
    force_rcvbuf(&s, 64 << 20);
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

/// What sipnat should make of `msg` (the library's own rewrite, outbound).
pub fn expected_rewrite(msg: &[u8]) -> Vec<u8> {
    use sipnat::{
        nat::{Direction, ExternalAddrs, Net, RewriteConfig},
        rewrite::{rewrite_message, Context},
    };
    let cfg = RewriteConfig::single(Net::parse("10.0.0.0/24").unwrap());
    let ctx = Context {
        config: &cfg,
        external: ExternalAddrs::from_ip(EXT_IP.parse().unwrap()),
        direction: Direction::Outbound,
        internal: None,
        local_port: None,
        napt: None,
        media: None,
    };
    let mut buf = msg.to_vec();
    buf.resize(msg.len() + 4096, 0);
    let r = rewrite_message(&mut buf, msg.len(), &ctx);
    buf.truncate(r.len);
    buf
}

/// Paced UDP: `rate` datagrams per second of `template` (sequence patched) for `dur`.
pub fn paced(template: &[u8], rate: u64, dur: Duration) -> u64 {
    let s = std::net::UdpSocket::bind((UA_IP, 5060)).unwrap();
    s.connect((CAR_IP, 5060)).unwrap();
    let at = seq_offset(template);
    let mut buf = template.to_vec();
    let start = std::time::Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < dur {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            let digits = format!("{:010}", sent + 1);
            buf[at..at + 10].copy_from_slice(digits.as_bytes());
            // Without a listener the carrier answers port-unreachable; the connected socket
            // reports that on a later send, which then did not go out: send it again.
            match s.send(&buf) {
                Ok(_) => sent += 1,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                Err(e) => panic!("send: {e}"),
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    sent
}

/// An INVITE+SDP like the bench's carrier INVITE, from the UA, with a 10-digit sequence
/// number in its Call-ID.
pub fn blast_template() -> Vec<u8> {
    let body = format!(
        "v=0\r\no=alice 2890844526 2890844526 IN IP4 {UA_IP}\r\ns=call\r\nc=IN IP4 {UA_IP}\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=rtcp:20001 IN IP4 {UA_IP}\r\na=sendrecv\r\n"
    );
    format!(
        "INVITE sip:bob@{CAR_IP}:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {UA_IP}:5060;branch=z9hG4bK-blast;rport\r\nMax-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@{UA_IP}>;tag=1928301774\r\nTo: <sip:bob@{CAR_IP}>\r\nCall-ID: 0000000000@blast\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:alice@{UA_IP}:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
