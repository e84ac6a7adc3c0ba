//! End to end: sipnat running in a gateway namespace between a UA namespace (10.0.0.2) and a
//! carrier namespace (198.51.100.2), with real SIP user agents (sipp), captures checked
//! with tshark (checksum validation on) and with independent SIP checks.
//!
//! The tests share the host's two cores; they run one at a time (a global lock) so that
//! timing-sensitive steps are not starved by each other.

mod common;

use common::traffic::{blast_template, expected_rewrite, paced};

use std::time::Duration;

use common::{
    privileged,
    sipcheck::{cl_and_rest, rewritable_addresses},
    topo::{
        assert_no_packet, await_condition, call_carrier, scenario, sipp_uac, sipp_uas, tshark,
        tshark_fields, Capture, Sipnat, Topo, BAD_CHECKSUM, CAR_IP, EXT_IP, UA_IP,
    },
};

/// One captured UDP packet: (ip.src, payload).
struct Pkt {
    src: String,
    payload: Vec<u8>,
}

fn udp_packets(file: &std::path::Path, filter: &str) -> Vec<Pkt> {
    let out = tshark_fields(file, filter, &["ip.src", "ip.dst", "udp.payload"]);
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut f = l.split('|');
            let src = f.next().unwrap_or("").to_string();
            let _dst = f.next();
            let hex = f.next().unwrap_or("").replace(':', "");
            let payload = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            Pkt { src, payload }
        })
        .collect()
}

/// SIP over UDP to the carrier's port 5060 in the capture `outside`.
fn to_carrier(outside: &std::path::Path) -> Vec<Pkt> {
    udp_packets(
        outside,
        &format!("ip.dst == {CAR_IP} && udp.dstport == 5060"),
    )
}

/// SIP over UDP from port 5060 to the UA in the capture `inside`.
fn to_ua(inside: &std::path::Path) -> Vec<Pkt> {
    udp_packets(inside, &format!("ip.dst == {UA_IP} && udp.srcport == 5060"))
}

/// `pkts`, after checking there are at least `n` of them.
fn at_least(pkts: Vec<Pkt>, n: u32, what: &str) -> Vec<Pkt> {
    assert!(
        pkts.len() >= n as usize,
        "expected ≥ {n} {what}, saw {}",
        pkts.len()
    );
    pkts
}

/// The address of the top Via's sent-by.
fn top_via(p: &Pkt) -> std::net::IpAddr {
    let fields = rewritable_addresses(&p.payload);
    let via = fields.iter().find(|(f, _)| f == "via");
    via.unwrap_or_else(|| panic!("no top Via in\n{}", String::from_utf8_lossy(&p.payload)))
        .1
}

/// No packet in the capture has a bad IP or UDP checksum, and `expect_good` packets were
/// verified good (so validation really ran).
fn checksums_ok(file: &std::path::Path, expect_good: usize) {
    assert_no_packet(file, BAD_CHECKSUM, "bad checksums");
    let good = tshark(file, &["-Y", "udp.checksum.status == \"Good\""])
        .lines()
        .count();
    assert!(
        good >= expect_good,
        "only {good} UDP checksums verified good, expected ≥ {expect_good}"
    );
}

fn first_line(p: &[u8]) -> String {
    String::from_utf8_lossy(p)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn sipp_calls_are_rewritten_both_ways() {
    let calls = 100;
    let (_s, mut t, sipnat) = crate::gateway_or_skip!("calls", "", "");
    let (out_cap, in_cap) = t.capture_both("udp");
    sipp_uas(&mut t.car, CAR_IP, &["-sn", "uas"]);
    let (code, log) = call_carrier(&t, "uac_rtcp.xml", (calls, 50, 60), &[]);
    assert_eq!(
        code,
        0,
        "sipp UAC: not every call succeeded:\n{log}\nsipnat log:\n{}",
        sipnat.log_text()
    );
    let stats = sipnat.stats();
    let outside = out_cap.finish(&t);
    let inside = in_cap.finish(&t);

    // Outside: everything from the UA is source-NATed and rewritten.
    let sent = at_least(to_carrier(&outside), 3 * calls, "requests at the carrier");
    let mut invites = 0;
    for p in &sent {
        assert_eq!(
            p.src,
            EXT_IP,
            "source not NATed: {}",
            first_line(&p.payload)
        );
        let text = String::from_utf8_lossy(&p.payload);
        assert!(
            !text.contains("10.0.0.2:") || text.contains("branch"),
            "{text}"
        );
        let fields = rewritable_addresses(&p.payload);
        for (field, a) in &fields {
            assert_ne!(a.to_string(), UA_IP, "{field} still private in\n{text}");
        }
        assert_eq!(top_via(p).to_string(), EXT_IP);
        assert!(
            has_field(&fields, "contact", EXT_IP),
            "Contact not rewritten:\n{text}"
        );
        if text.starts_with("INVITE") {
            invites += 1;
            for want in [
                format!("o=user1 53655765 2353687637 IN IP4 {EXT_IP}"),
                format!("c=IN IP4 {EXT_IP}"),
                format!(" IN IP4 {EXT_IP}\r\n"),
            ] {
                assert!(text.contains(&want), "missing `{want}` in\n{text}");
            }
            // Media NAT on: the RTP/RTCP pair is one of the media range (even, odd).
            let m: u16 = text
                .lines()
                .find_map(|l| l.strip_prefix("m=audio "))
                .and_then(|l| l.split(' ').next())
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("no m=audio port in\n{text}"));
            assert!(
                m.is_multiple_of(2) && (30000..40000).contains(&m),
                "m= port {m}"
            );
            assert!(
                text.contains(&format!("a=rtcp:{} IN IP4 198.51.100.1", m + 1)),
                "a=rtcp not rewritten:\n{text}"
            );
        }
        let (cl, rest) = cl_and_rest(&p.payload).expect("Content-Length");
        assert_eq!(cl, rest, "Content-Length wrong:\n{text}");
    }
    assert!(invites >= calls, "{invites} INVITEs");
    checksums_ok(&outside, sent.len());

    // Inside: the carrier's responses reach the UA with its own address back in the top Via.
    let back = at_least(to_ua(&inside), 3 * calls, "responses at the UA");
    for p in &back {
        assert_eq!(p.src, CAR_IP);
        assert_eq!(top_via(p).to_string(), UA_IP, "top Via not restored");
    }
    checksums_ok(&inside, back.len());

    // Counters: every packet accounted for.
    let total = &stats["total"];
    let rx = total["rx_inside"].as_u64().unwrap() + total["rx_outside"].as_u64().unwrap();
    let tx = total["tx_inside"].as_u64().unwrap() + total["tx_outside"].as_u64().unwrap();
    let slow: u64 = [
        "slow_neighbor_unknown",
        "slow_internal",
        "slow_inbound_no_mapping",
        "slow_route_other_interface",
        "slow_flow_collision",
        "slow_not_udp",
    ]
    .iter()
    .map(|k| total[*k].as_u64().unwrap())
    .sum();
    assert_eq!(
        rx,
        tx + slow,
        "received = transmitted + slow path (stats: {total})"
    );
    assert!(total["rewrite_sdp_rtcp"].as_u64().unwrap() >= calls as u64);
    assert_eq!(sipnat.stop(), Some(0));
}

/// Five REGISTERs with digest authentication through sipnat: the digest `uri` is never
/// rewritten, and of the 200 OK's Contact list only the UA's own binding is restored.
#[test]
fn register_with_digest_auth_and_only_the_uas_own_binding_restored() {
    let (_s, mut t, sipnat) = crate::gateway_or_skip!("reg", "", "");
    let (out_cap, in_cap) = t.capture_both("udp");
    sipp_uas(&mut t.car, CAR_IP, &["-sf", &scenario("reg_uas.xml")]);
    let (code, log) = call_carrier(&t, "reg_uac.xml", (5, 5, 30), &[]);
    assert_eq!(
        code,
        0,
        "REGISTER with digest failed through sipnat:\n{log}\n{}",
        sipnat.log_text()
    );
    let outside = out_cap.finish(&t);
    let inside = in_cap.finish(&t);
    // The authenticated REGISTER left with its Contact rewritten; digest uri untouched.
    let regs = udp_packets(&outside, "sip.Method == \"REGISTER\" && sip.Authorization");
    assert_eq!(regs.len(), 5);
    for p in &regs {
        let text = String::from_utf8_lossy(&p.payload);
        common::assert_contains(&text, &format!("Contact: <sip:alice@{EXT_IP}:5060>"));
        common::assert_contains(&text, &format!("uri=\"sip:{CAR_IP}:5060\""));
    }
    // The 200 OK's Contact list arrives at the UA as the registrar sent it, but for the
    // UA's own binding (the external address and its port), restored so that the UA finds
    // it (RFC 3261 §10.2.4); the other binding of the same address-of-record is untouched.
    let register_ok_contacts = |file| -> Vec<String> {
        let ok = "sip.Status-Code == 200 && sip.CSeq.method == \"REGISTER\"";
        udp_packets(file, ok)
            .iter()
            .map(|p| contact_lines(&p.payload))
            .collect()
    };
    let (ok_out, ok_in) = (
        register_ok_contacts(&outside),
        register_ok_contacts(&inside),
    );
    assert_eq!(ok_out.len(), 5);
    let own = format!("<sip:alice@{EXT_IP}:5060>");
    let restored: Vec<String> = ok_out
        .iter()
        .map(|l| {
            assert!(l.contains(&own), "{l}");
            l.replace(&own, &format!("<sip:alice@{UA_IP}:5060>"))
        })
        .collect();
    assert_eq!(
        ok_in, restored,
        "REGISTER 200: only the UA's own binding is restored"
    );
    assert!(
        ok_in[0].contains(&format!("<sip:alice@{UA_IP}:5060>"))
            && ok_in[0].contains("<sip:alice@10.0.0.99:5070>"),
        "{}",
        ok_in[0]
    );
    checksums_ok(&inside, 10);
    assert_eq!(sipnat.stop(), Some(0));
}

fn contact_lines(p: &[u8]) -> String {
    String::from_utf8_lossy(p)
        .lines()
        .filter(|l| l.starts_with("Contact:"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn big_invite_is_reassembled_rewritten_and_refragmented() {
    let (_s, mut t, sipnat) = crate::gateway_or_skip!("frag", "", "");
    let out_cap = Capture::start(&t.car, "car0", t.dir.path("outside.pcap"), "");
    sipp_uas(&mut t.car, CAR_IP, &["-sn", "uas"]);
    let calls = 10;
    let (code, log) = call_carrier(&t, "uac_big.xml", (calls, 10, 30), &[]);
    assert_eq!(code, 0, "big INVITEs failed:\n{log}\n{}", sipnat.log_text());
    let outside = out_cap.finish(&t);
    let total = &sipnat.stats()["total"];
    assert!(
        total["reasm_complete"].as_u64().unwrap() >= u64::from(calls),
        "{total}"
    );
    assert!(
        total["refragmented"].as_u64().unwrap() >= u64::from(calls),
        "{total}"
    );
    // At the carrier: IPv4 fragments from the external address, reassembled by tshark into
    // INVITEs that are rewritten, with valid checksums.
    let frags = tshark(
        &outside,
        &["-Y", &format!("ip.flags.mf == 1 && ip.src == {EXT_IP}")],
    );
    assert!(
        frags.lines().count() >= calls as usize,
        "no refragmented packets from the external address:\n{frags}"
    );
    let invites = udp_packets(&outside, "sip.Method == \"INVITE\"");
    assert!(invites.len() >= calls as usize);
    for p in &invites {
        let text = String::from_utf8_lossy(&p.payload);
        assert!(
            p.payload.len() > 1500,
            "INVITE not big: {}",
            p.payload.len()
        );
        assert_eq!(p.src, EXT_IP);
        assert!(!text.contains(&format!("IN IP4 {UA_IP}")), "{text}");
        for (field, a) in rewritable_addresses(&p.payload) {
            assert_ne!(a.to_string(), UA_IP, "{field} not rewritten in\n{text}");
        }
        assert_eq!(
            text.matches(&format!("c=IN IP4 {EXT_IP}")).count(),
            2,
            "{text}"
        );
        let (cl, rest) = cl_and_rest(&p.payload).unwrap();
        assert_eq!(cl, rest);
    }
    checksums_ok(&outside, invites.len());
    assert_eq!(sipnat.stop(), Some(0));
}

#[test]
fn bad_fragment_trains_are_dropped_counted_and_bounded() {
    let (_s, t) = crate::topo_or_skip!("badfrag");
    // 64 KiB of reassembly memory = 4 datagrams of 16 KiB; 500 ms timeout.
    let cfg = t.config(
        "gw",
        "",
        "[datapath]\nreassembly_memory = 65536\nreassembly_timeout_ms = 500",
    );
    let sipnat = t.start_sipnat(&cfg);
    let out_cap = Capture::start(
        &t.car,
        "car0",
        t.dir.path("outside.pcap"),
        "ip[6:2] & 0x3fff != 0 or udp port 9",
    );
    let udp_head = |len: u16| {
        let mut d = vec![0x9c, 0x40, 0x13, 0xc4, 0, 0, 0, 0];
        d[4..6].copy_from_slice(&len.to_be_bytes());
        d.extend_from_slice(&[b'x'; 56]);
        d
    };
    let mut pkts = vec![
        // Overlap: the second fragment covers bytes of the first.
        common::topo::ipv4_fragment(100, 0, true, &udp_head(120)),
        common::topo::ipv4_fragment(100, 32, true, &[b'o'; 64]),
        common::topo::ipv4_fragment(100, 96, false, &[b'z'; 24]),
        // Duplicate first fragment.
        common::topo::ipv4_fragment(101, 0, true, &udp_head(120)),
        common::topo::ipv4_fragment(101, 0, true, &udp_head(120)),
    ];
    // Ten incomplete trains (first fragment only) against 4 slots.
    for id in 110..120 {
        pkts.push(common::topo::ipv4_fragment(id, 0, true, &udp_head(3000)));
    }
    common::topo::send_raw_ipv4(&t.ua, pkts);
    let mut max_mem = 0;
    let mut limit = 0;
    await_condition(
        "overlap, duplicate, evictions and timeouts counted",
        Duration::from_secs(10),
        || {
            let st = sipnat.stats();
            let w = &st["workers"][0]["reassembly"];
            max_mem = max_mem.max(w["memory_bytes"].as_u64().unwrap());
            limit = w["memory_limit_bytes"].as_u64().unwrap();
            let c = &st["total"];
            let g = |k: &str| c[k].as_u64().unwrap();
            g("reasm_overlap") >= 2
                && g("reasm_evicted") >= 6
                && g("reasm_timeout") >= 1
                && w["in_progress"].as_u64() == Some(0)
        },
    );
    let st = sipnat.stats();
    let c = &st["total"];
    assert_eq!(c["frag_rx"].as_u64(), Some(15), "{c}");
    assert_eq!(c["reasm_complete"].as_u64(), Some(0), "{c}");
    assert!(
        c["reasm_poisoned"].as_u64().unwrap() >= 1,
        "the overlapped datagram's last fragment is dropped too: {c}"
    );
    assert_eq!(
        c["reasm_evicted"].as_u64().unwrap() + c["reasm_timeout"].as_u64().unwrap(),
        10,
        "{c}"
    );
    assert_eq!(limit, 65536);
    assert!(
        max_mem <= limit,
        "reassembly memory {max_mem} above its limit {limit}"
    );
    assert_eq!(
        st["workers"][0]["reassembly"]["memory_bytes"].as_u64(),
        Some(0)
    );
    // Nothing of these trains reached the carrier.
    let outside = out_cap.finish(&t);
    assert_eq!(
        tshark(&outside, &["-Y", "ip.id >= 100 && ip.id < 120"]).trim(),
        ""
    );
    assert_eq!(sipnat.stop(), Some(0));
}

#[test]
fn non_sip_traffic_passes_unchanged_and_is_counted() {
    let (_s, t, sipnat) = crate::gateway_or_skip!("nonsip", "", "");
    let mut stun = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    stun.extend_from_slice(&[0x5a; 12]);
    // Carrier listeners: UDP 5060, UDP 5061, TCP 5060.
    let (tx, rx) = std::sync::mpsc::channel::<(String, Vec<u8>)>();
    let car = t.car.name.clone();
    let listeners = std::thread::spawn(move || {
        common::netns::Netns::attach_existing(&car).run(move || {
            let u5060 = std::net::UdpSocket::bind((CAR_IP, 5060)).unwrap();
            let u5061 = std::net::UdpSocket::bind((CAR_IP, 5061)).unwrap();
            let tcp = std::net::TcpListener::bind((CAR_IP, 5060)).unwrap();
            for s in [&u5060, &u5061] {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            }
            let mut buf = [0u8; 2048];
            for _ in 0..2 {
                let (n, from) = u5060.recv_from(&mut buf).unwrap();
                tx.send((format!("udp5060 {from}"), buf[..n].to_vec()))
                    .unwrap();
            }
            let (n, from) = u5061.recv_from(&mut buf).unwrap();
            tx.send((format!("udp5061 {from}"), buf[..n].to_vec()))
                .unwrap();
            let (mut c, from) = tcp.accept().unwrap();
            let mut v = Vec::new();
            use std::io::Read;
            c.read_to_end(&mut v).unwrap();
            tx.send((format!("tcp5060 {from}"), v)).unwrap();
        })
    });
    std::thread::sleep(Duration::from_millis(200)); // listeners bound (the sends retry anyway)
    let (stun2, ua) = (stun.clone(), t.ua.name.clone());
    common::netns::Netns::attach_existing(&ua).run(move || {
        let s = std::net::UdpSocket::bind((UA_IP, 5060)).unwrap();
        s.send_to(&stun2, (CAR_IP, 5060)).unwrap();
        s.send_to(b"\r\n\r\n", (CAR_IP, 5060)).unwrap();
        // From an ephemeral port: a SIP port on either side would make it steered.
        std::net::UdpSocket::bind((UA_IP, 0))
            .unwrap()
            .send_to(b"plain udp 5061", (CAR_IP, 5061))
            .unwrap();
        use std::io::Write;
        let mut c = std::net::TcpStream::connect((CAR_IP, 5060)).unwrap();
        c.write_all(b"OPTIONS sip:x@198.51.100.2 SIP/2.0\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
    });
    listeners.join().unwrap();
    let got: Vec<(String, Vec<u8>)> = rx.try_iter().collect();
    let find = |k: &str| {
        got.iter()
            .filter(|(w, _)| w.starts_with(k))
            .cloned()
            .collect::<Vec<_>>()
    };
    let u = find("udp5060");
    assert_eq!(u.len(), 2, "{got:?}");
    for (who, payload) in &u {
        assert!(
            who.ends_with(&format!("{EXT_IP}:5060")),
            "UDP 5060 non-SIP is forwarded with the NATed source: {who}"
        );
        assert!(
            payload == &stun || payload == b"\r\n\r\n",
            "payload changed: {payload:?}"
        );
    }
    let p = find("udp5061");
    assert_eq!(p[0].1, b"plain udp 5061");
    assert!(
        p[0].0.starts_with(&format!("udp5061 {UA_IP}:")),
        "kernel path keeps the source: {}",
        p[0].0
    );
    let tcp = find("tcp5060");
    assert!(
        tcp[0].1.starts_with(b"OPTIONS sip:x@198.51.100.2"),
        "TCP 5060 passes untouched"
    );
    // ICMP through the kernel path as well.
    t.ua.run(|| {
        let s = std::net::UdpSocket::bind((UA_IP, 0)).unwrap();
        let _ = s.send_to(b"to a closed port", (CAR_IP, 9)); // answered by ICMP port unreachable
    });
    await_condition("counters", Duration::from_secs(5), || {
        let st = sipnat.stats();
        let x = &st["xdp"]["inside"];
        let c = &st["total"];
        x["pass_not_sip_port"].as_u64().unwrap() >= 2
            && x["pass_not_udp"].as_u64().unwrap() >= 3
            && st["xdp"]["outside"]["pass_not_udp"].as_u64().unwrap() >= 1
            && c["not_sip_stun"].as_u64() == Some(1)
            && c["not_sip_keepalive"].as_u64() == Some(1)
    });
    assert_eq!(sipnat.stop(), Some(0));
}

/// An OPTIONS of exactly `size` bytes of UDP payload whose Contact lists `n` private
/// addresses (each grows by 4 bytes when rewritten).
fn growing_message(n: usize, size: usize) -> Vec<u8> {
    let contacts: Vec<String> = (0..n).map(|_| format!("<sip:u@{UA_IP}:5060>")).collect();
    let head = format!(
        "OPTIONS sip:carrier@{CAR_IP}:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {UA_IP}:5060;branch=z9hG4bK-grow\r\nCall-ID: grow\r\nCSeq: 1 OPTIONS\r\nContact: {}\r\nX-Pad: ",
        contacts.join(", ")
    );
    let tail = "\r\nContent-Length: 0\r\n\r\n";
    let pad = size - head.len() - tail.len();
    let mut m = head.into_bytes();
    m.extend(std::iter::repeat_n(b'p', pad));
    m.extend_from_slice(tail.as_bytes());
    assert_eq!(m.len(), size);
    m
}

fn set_pmtudisc(s: &std::net::UdpSocket, v: i32) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt on our socket with a local int.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            (&v as *const i32).cast(),
            4,
        )
    };
    assert_eq!(r, 0);
}

#[test]
fn growth_past_the_mtu_is_fragmented_or_answered_with_icmp() {
    let (_s, t, sipnat) = crate::gateway_or_skip!("mtu", "", "");
    // 1460 bytes of SIP (a 1488-byte IP packet) that grow by 31 × 4 = 124 bytes: 1612 > 1500.
    let msg = growing_message(30, 1460);
    let want = expected_rewrite(&msg);
    assert_eq!(want.len(), 1584); // Via + 30 Contacts, 4 bytes each
    let car = t.car.name.clone();
    let s = common::topo::udp_socket_in(&car, (CAR_IP, 5060));
    let receiver = receive_one(s);
    // DF clear: sipnat refragments and the datagram is delivered whole.
    let m = msg.clone();
    t.ua.run(move || {
        let s = std::net::UdpSocket::bind((UA_IP, 5060)).unwrap();
        set_pmtudisc(&s, libc::IP_PMTUDISC_DONT);
        s.send_to(&m, (CAR_IP, 5060)).unwrap();
    });
    let (got, from) = receiver.join().unwrap();
    assert_eq!(from, format!("{EXT_IP}:5060"));
    assert_eq!(
        got, want,
        "delivered datagram differs from the expected rewrite"
    );
    let c = sipnat.stats()["total"].clone();
    assert!(
        c["refragmented"].as_u64().unwrap() >= 1 && c["frag_tx"].as_u64().unwrap() >= 2,
        "{c}"
    );
    // DF set: sipnat answers "fragmentation needed" with the MTU that makes it fit after
    // growth, and the sender's kernel learns that path MTU.
    let m = msg.clone();
    let learned = t.ua.run(move || {
        // A connected socket: the kernel hands it the ICMP and keeps the path MTU.
        let s = std::net::UdpSocket::bind((UA_IP, 5062)).unwrap();
        s.connect((CAR_IP, 5060)).unwrap();
        set_pmtudisc(&s, libc::IP_PMTUDISC_DO);
        s.send(&m).unwrap();
        let end = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            use std::os::fd::AsRawFd;
            let mut mtu: i32 = 0;
            let mut len: libc::socklen_t = 4;
            // SAFETY: getsockopt into a local int.
            unsafe {
                libc::getsockopt(
                    s.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_MTU,
                    (&mut mtu as *mut i32).cast(),
                    &mut len,
                )
            };
            if mtu != 1500 || std::time::Instant::now() > end {
                return mtu;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    assert_eq!(
        learned, 1376,
        "the sender's kernel learns MTU - growth from sipnat's ICMP"
    );
    let c = sipnat.stats()["total"].clone();
    assert_eq!(c["icmp_frag_needed_sent"].as_u64(), Some(1), "{c}");
    assert_eq!(c["drop_too_big_df"].as_u64(), Some(1), "{c}");
    assert_eq!(sipnat.stop(), Some(0));
}

#[test]
fn sigkill_fails_open_and_a_restart_resumes_rewriting() {
    let (_s, mut t) = crate::topo_or_skip!("kill");
    let cfg = t.config("gw", "", "");
    sipp_uas(&mut t.car, CAR_IP, &["-sn", "uas"]);
    let uac = |t: &Topo, calls: u32| {
        call_carrier(
            t,
            "uac_rtcp.xml",
            (calls, 20, 40),
            &["-recv_timeout", "3000"],
        )
    };
    let invite_sources = |file: &std::path::Path| -> Vec<String> {
        tshark(
            file,
            &[
                "-Y",
                "sip.Method == \"INVITE\"",
                "-T",
                "fields",
                "-e",
                "ip.src",
            ],
        )
        .lines()
        .map(str::to_string)
        .collect()
    };
    // 1. Running: calls are rewritten.
    let sipnat = t.start_sipnat(&cfg);
    let cap = Capture::start(&t.car, "car0", t.dir.path("a.pcap"), "udp");
    let (code, log) = uac(&t, 10);
    assert_eq!(code, 0, "{log}");
    let a = cap.finish(&t);
    assert!(invite_sources(&a).iter().all(|s| s == EXT_IP));
    // 2. SIGKILL mid-traffic: traffic keeps flowing, unrewritten, through the kernel.
    let cap = Capture::start(&t.car, "car0", t.dir.path("b.pcap"), "udp");
    let ua = t.ua.name.clone();
    let calls = std::thread::spawn(move || {
        let args = [
            "-sf",
            &scenario("uac_rtcp.xml"),
            &format!("{CAR_IP}:5060"),
            "-i",
            UA_IP,
            "-p",
            "5060",
            "-m",
            "60",
            "-r",
            "20",
            "-timeout",
            "40s",
            "-mp",
            "6000",
            "-recv_timeout",
            "3000",
        ]
        .map(String::from);
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &ua, "sipp"])
            .args(&args)
            .arg("-nostdin")
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    });
    std::thread::sleep(Duration::from_millis(1000)); // calls in progress through sipnat
    sipnat.kill9();
    // The program stays attached (pinned) with empty XSKMAP slots: on_failure = "pass"
    // hands SIP to the kernel, unrewritten.
    let detached = || {
        !String::from_utf8_lossy(&t.gw.exec(&["ip", "-d", "link", "show"]).stdout)
            .contains("prog/xdp")
    };
    assert!(
        !detached(),
        "the pinned program must stay attached after SIGKILL"
    );
    let log = calls.join().unwrap();
    let b = cap.finish(&t);
    let srcs = invite_sources(&b);
    let raw = srcs.iter().filter(|s| *s == UA_IP).count();
    assert!(
        raw >= 20,
        "after the kill, INVITEs must keep flowing unrewritten (saw {raw} of {}):\n{log}",
        srcs.len()
    );
    let ok_raw = tshark(
        &b,
        &[
            "-Y",
            &format!("sip.Status-Code == 200 && ip.dst == {UA_IP}"),
        ],
    )
    .lines()
    .count();
    assert!(
        ok_raw >= 20,
        "answers reach the UA through the kernel path: {ok_raw}"
    );
    // 3. Restart: rewriting resumes.
    let sipnat = Sipnat::start(&t.gw, &cfg, t.dir.path("gw.sock"), t.dir.path("gw2.log"));
    let cap = Capture::start(&t.car, "car0", t.dir.path("c.pcap"), "udp");
    let (code, log) = uac(&t, 10);
    assert_eq!(code, 0, "{log}");
    let c = cap.finish(&t);
    let srcs = invite_sources(&c);
    assert!(
        !srcs.is_empty() && srcs.iter().all(|s| s == EXT_IP),
        "{srcs:?}"
    );
    assert!(std::fs::read_to_string(t.dir.path("gw2.log"))
        .unwrap()
        .contains("adopted the pinned XDP program"));
    // 4. A clean stop leaves nothing attached and nothing pinned.
    assert_eq!(sipnat.stop(), Some(0));
    assert!(detached(), "XDP left attached after a clean stop");
    assert!(
        t.bpffs.pinned().is_empty(),
        "left pinned: {:?}",
        t.bpffs.pinned()
    );
}

#[test]
fn throughput_smoke_every_packet_correct_or_counted() {
    crate::privileged_or_skip!();
    use common::topo::{link_stat, snmp};
    use std::sync::{
        atomic::{AtomicBool, AtomicU64},
        Arc,
    };
    let _s = common::serial();
    let t = Topo::new("smoke");
    let cfg = t.config("gw", "", "");
    let sipnat = t.start_sipnat(&cfg);
    let template = blast_template();
    // Media NAT on: the template's one RTP address (one dialog) gets the range's first
    // pair, at the first packet, and keeps it.
    let expected = String::from_utf8(expected_rewrite(&template))
        .unwrap()
        .replace("m=audio 20000 ", "m=audio 30000 ")
        .replace("a=rtcp:20001 ", "a=rtcp:30001 ")
        .into_bytes();
    // Warm up: the next hop resolves via the slow path, then everything is fast path.
    let (tpl, car) = (template.clone(), t.car.name.clone());
    let _ = t.ua.run(move || {
        common::traffic::blast(
            &tpl,
            (UA_IP, 5060),
            (CAR_IP, 5060),
            Duration::from_millis(200),
        )
    });
    await_condition("next hops resolved", Duration::from_secs(5), || {
        sipnat.stats()["nexthops"].as_u64() >= Some(1)
    });
    std::thread::sleep(Duration::from_millis(300)); // let warm-up packets drain (counters below are deltas)
    let snap = |t: &Topo, s: &Sipnat| -> Vec<u64> {
        let st = s.stats();
        let xsk = &st["workers"][0]["xsk"]["inside"];
        let c = &st["total"];
        let drops: u64 = c
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("drop_"))
            .map(|(_, v)| v.as_u64().unwrap())
            .sum();
        vec![
            link_stat(&t.ua, "ua0", "tx", "dropped"),
            xsk["rx_dropped"].as_u64().unwrap_or(0) + xsk["rx_ring_full"].as_u64().unwrap_or(0),
            drops,
            link_stat(&t.gw, "gwout", "tx", "dropped"),
            link_stat(&t.car, "car0", "rx", "dropped"),
            snmp(&t.car, "Udp", "RcvbufErrors"),
            snmp(&t.car, "Udp", "InCsumErrors"),
            c["slow_send_error"].as_u64().unwrap(),
        ]
    };
    let before = snap(&t, &sipnat);
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let (exp, st, ct) = (expected.clone(), Arc::clone(&stop), Arc::clone(&count));
    let rx = std::thread::spawn(move || {
        common::netns::Netns::attach_existing(&car)
            .run(move || common::traffic::receive((CAR_IP, 5060), EXT_IP, &exp, st, ct))
    });
    std::thread::sleep(Duration::from_millis(200));
    let tpl = template.clone();
    let sent = t.ua.run(move || {
        common::traffic::blast(&tpl, (UA_IP, 5060), (CAR_IP, 5060), Duration::from_secs(10))
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let got = rx.join().unwrap();
    let after = snap(&t, &sipnat);
    let d: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let names = [
        "ua0 tx_dropped",
        "xsk rx dropped/ring full",
        "sipnat drop_*",
        "gwout tx_dropped",
        "car0 rx_dropped",
        "carrier UDP RcvbufErrors",
        "carrier UDP InCsumErrors",
        "slow path send errors",
    ];
    let explained: u64 = d.iter().sum();
    let pps = got.received as f64 / sent.elapsed.as_secs_f64();
    eprintln!(
        "throughput smoke: sent {} ({:.0} pps offered), delivered {} ({pps:.0} pps), incorrect {}; drops: {}",
        sent.sent,
        sent.sent as f64 / sent.elapsed.as_secs_f64(),
        got.received,
        got.incorrect,
        names.iter().zip(&d).map(|(n, v)| format!("{n} {v}")).collect::<Vec<_>>().join(", ")
    );
    assert_eq!(
        got.incorrect,
        0,
        "incorrect packet, first:\n{}",
        String::from_utf8_lossy(&got.first_incorrect.unwrap_or_default())
    );
    assert_eq!(d[6], 0, "bad UDP checksums at the carrier");
    assert_eq!(
        sent.sent,
        got.received + explained,
        "unexplained drops: sent {} ≠ delivered {} + counted drops {explained}",
        sent.sent,
        got.received
    );
    assert!(got.received > 0);
    // Copy mode (AF_XDP on veth) keeps each fill ring at `[datapath] copy_fill` frames
    // (0: 4 × batch, 256) instead of the whole ring (2 × ring_size, 2048), so that the
    // kernel copies into recently freed, cached frames: at rest every other frame of the
    // 8192 is on the free list (full fill rings would leave 8192 − 2 × 2048 there).
    await_condition(
        "the fill rings at copy_fill",
        Duration::from_secs(5),
        || sipnat.stats()["workers"][0]["free_frames"].as_u64() >= Some(8192 - 2 * 256),
    );
    assert_eq!(sipnat.stop(), Some(0));
}

#[test]
fn keep_mode_rewrites_payload_only_and_internal_traffic_is_untouched() {
    let (_s, mut t, sipnat) = crate::gateway_or_skip!("keep", "l3 = \"keep\"", "");
    let (out_cap, in_cap) = t.capture_both("udp");
    sipp_uas(&mut t.car, CAR_IP, &["-sn", "uas"]);
    let (code, log) = call_carrier(&t, "uac_rtcp.xml", (10, 10, 30), &[]);
    assert_eq!(code, 0, "{log}\n{}", sipnat.log_text());
    // Internal traffic (to the gateway's own inside address) is handed to the kernel as is.
    let gw = t.gw.name.clone();
    let s = common::topo::udp_socket_in(&gw, ("10.0.0.1", 5060));
    let listener = receive_one(s);
    let internal_msg = b"OPTIONS sip:gw@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5070\r\nContact: <sip:ua@10.0.0.2:5070>\r\nContent-Length: 0\r\n\r\n".to_vec();
    let m = internal_msg.clone();
    t.ua.run(move || {
        std::net::UdpSocket::bind((UA_IP, 5070))
            .unwrap()
            .send_to(&m, ("10.0.0.1", 5060))
            .unwrap()
    });
    let (got, from) = listener.join().unwrap();
    assert_eq!(got, internal_msg, "internal traffic must not be rewritten");
    assert_eq!(from, format!("{UA_IP}:5070"));
    let outside = out_cap.finish(&t);
    let inside = in_cap.finish(&t);
    // Outbound: IP source kept (an upstream 1:1 NAT translates it), payload rewritten.
    let sent = at_least(to_carrier(&outside), 30, "requests at the carrier");
    for p in &sent {
        assert_eq!(p.src, UA_IP, "keep mode must not touch the IP source");
        for (field, a) in rewritable_addresses(&p.payload) {
            assert_ne!(a.to_string(), UA_IP, "{field} not rewritten");
        }
    }
    // Inbound: the external address in the payload goes back to our own address.
    let back = at_least(to_ua(&inside), 30, "responses at the UA");
    for p in &back {
        assert_eq!(top_via(p).to_string(), UA_IP);
    }
    checksums_ok(&outside, sent.len());
    checksums_ok(&inside, back.len());
    assert!(sipnat.counter("slow_internal") >= 1);
    assert_eq!(sipnat.stop(), Some(0));
}

/// A handover (SIGUSR2) to a second daemon that adopts the pinned program: what the kernel
/// passed in the gap is counted, and cleanup leaves nothing behind.
#[test]
fn hitless_restart_counts_what_the_kernel_passed_and_cleanup_leaves_nothing() {
    let (_s, t) = crate::topo_or_skip!("restart");
    let cfg = t.config("gw", "", "");
    let a = Sipnat::start(&t.gw, &cfg, t.dir.path("gw.sock"), t.dir.path("a.log"));
    let before = a.stats()["xdp"]["inside"]["pass_no_socket"]
        .as_u64()
        .unwrap();
    // Receiver in the carrier: classify by source (rewritten by sipnat / passed by the kernel).
    let car = t.car.name.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let st = std::sync::Arc::clone(&stop);
    let s = common::topo::udp_socket_in(&car, (CAR_IP, 5060));
    let rx = std::thread::spawn(move || {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let (mut nat, mut raw, mut other) = (0u64, 0u64, 0u64);
        let mut idle = 0;
        let mut b = [0u8; 4096];
        loop {
            match s.recv_from(&mut b) {
                Ok((_, from)) => {
                    idle = 0;
                    match from.ip().to_string().as_str() {
                        EXT_IP => nat += 1,
                        UA_IP => raw += 1,
                        _ => other += 1,
                    }
                }
                Err(_) => {
                    idle += 1;
                    if st.load(std::sync::atomic::Ordering::Relaxed) && idle > 3 {
                        return (nat, raw, other);
                    }
                }
            }
        }
    });
    let template = blast_template();
    let ua = t.ua.name.clone();
    let tx = std::thread::spawn(move || {
        common::netns::Netns::attach_existing(&ua)
            .run(move || paced(&template, 1000, Duration::from_secs(6)))
    });
    std::thread::sleep(Duration::from_millis(1500));
    // Handover: A leaves the program attached and pinned; the failure mode covers the gap.
    let a_log = a.log.clone();
    assert_eq!(a.signal_and_wait(libc::SIGUSR2), Some(0), "handover exit");
    assert!(!t.bpffs.pinned().is_empty(), "handover keeps the pins");
    std::thread::sleep(Duration::from_millis(1000));
    let b = Sipnat::start(&t.gw, &cfg, t.dir.path("gw.sock"), t.dir.path("b.log"));
    b.assert_adopted("gwin");
    let sent = tx.join().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (nat, raw, other) = rx.join().unwrap();
    let passed = b.stats()["xdp"]["inside"]["pass_no_socket"]
        .as_u64()
        .unwrap()
        - before;
    eprintln!("restart: sent {sent}, rewritten by sipnat {nat}, passed by the kernel during the gap {raw} (XDP pass_no_socket {passed})");
    assert_eq!(other, 0);
    assert_eq!(
        nat + raw,
        sent,
        "nothing lost across the restart\nA log:\n{}\nB stats: {}",
        std::fs::read_to_string(&a_log).unwrap_or_default(),
        b.stats()
    );
    assert!(raw > 0 && nat > 0);
    assert_eq!(
        raw, passed,
        "every packet the kernel forwarded during the gap is counted"
    );
    // SIGKILL leaves the pins (and the program); --cleanup removes them.
    b.kill9();
    assert!(!t.bpffs.pinned().is_empty());
    let out = t.gw.exec(&[
        common::topo::sipnat_bin(),
        "run",
        "--cleanup",
        "-c",
        cfg.to_str().unwrap(),
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("pins removed"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        t.bpffs.pinned().is_empty(),
        "left pinned: {:?}",
        t.bpffs.pinned()
    );
    assert!(
        !String::from_utf8_lossy(&t.gw.exec(&["ip", "-d", "link", "show"]).stdout)
            .contains("prog/xdp"),
        "still attached after --cleanup"
    );
}

/// The IP packets (link header stripped) of a capture, in order, that match `keep`.
fn ip_packets(file: &std::path::Path, keep: impl Fn(&[u8]) -> bool) -> Vec<Vec<u8>> {
    use pcap_file::pcap::PcapReader;
    let mut r = PcapReader::new(std::fs::File::open(file).unwrap()).unwrap();
    let mut v = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        let ip = &p.data[14..];
        if keep(ip) {
            v.push(ip.to_vec());
        }
    }
    v
}

/// UDP (IPv4, no options) between ports 5060 and 5060.
fn is_sip_udp(ip: &[u8]) -> bool {
    ip.len() > 28 && ip[0] == 0x45 && ip[9] == 17 && ip[20..22] == [0x13, 0xc4]
}

/// The SIP a capture holds (every UDP payload from port 5060 of an internal phone in
/// `aaa.pcap`), sent from the UA through the daemon; the daemon's output on the carrier
/// link equals, byte for byte from the IP header on, what `sipnat rewrite --pcap` makes
/// of the capture of the same packets on the UA link with the same config.
#[test]
fn pcap_sip_through_the_daemon_equals_the_offline_tool() {
    crate::privileged_or_skip!();
    let _s = common::serial();
    let pcap = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/corpus/pcap/aaa.pcap"
    );
    let payloads: Vec<Vec<u8>> = ip_packets(std::path::Path::new(pcap), |ip| {
        is_sip_udp(ip) && ip[12..15] == [192, 168, 1]
    })
    .into_iter()
    .map(|ip| ip[28..].to_vec())
    .collect();
    assert!(
        payloads.len() >= 50,
        "{} SIP payloads in {pcap}",
        payloads.len()
    );
    let t = Topo::new("offline");
    // The phone's own addresses in the captured SIP are 192.168.1.x: a rule for them too.
    let cfg = t.config("gw", "", "[[nat.rule]]\ninternal = \"192.168.1.0/24\"\n");
    let sipnat = t.start_sipnat(&cfg);
    let inside = Capture::start(&t.ua, "ua0", t.dir.path("inside.pcap"), "udp");
    let outside = Capture::start(&t.car, "car0", t.dir.path("outside.pcap"), "udp");
    let n = payloads.len();
    t.ua.run(move || {
        let s = std::net::UdpSocket::bind((UA_IP, 5060)).unwrap();
        for p in &payloads {
            s.send_to(p, (CAR_IP, 5060)).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    await_condition("every datagram handled", Duration::from_secs(10), || {
        sipnat.counter("outbound") >= n as u64
    });
    let inside = inside.finish(&t);
    let outside = outside.finish(&t);
    let offline = t.dir.path("offline.pcap");
    let out = std::process::Command::new(common::topo::sipnat_bin())
        .args(["rewrite", "-c"])
        .arg(&cfg)
        .arg("--pcap")
        .arg(&inside)
        .arg("--out")
        .arg(&offline)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let from_ua = |ip: &[u8]| is_sip_udp(ip) && ip[12..16] == [10, 0, 0, 2];
    let from_gw = |ip: &[u8]| is_sip_udp(ip) && ip[12..16] == [198, 51, 100, 1];
    assert_eq!(
        ip_packets(&inside, from_ua).len(),
        n,
        "the UA link saw every datagram"
    );
    let daemon = ip_packets(&outside, from_gw);
    let tool = ip_packets(&offline, from_gw);
    assert_eq!(daemon.len(), n, "the daemon sent every datagram");
    assert_eq!(tool.len(), n, "{}", String::from_utf8_lossy(&out.stdout));
    for (i, (d, o)) in daemon.iter().zip(&tool).enumerate() {
        assert!(
            d == o,
            "datagram {i} differs:\ndaemon:  {}\noffline: {}",
            String::from_utf8_lossy(&d[28..]),
            String::from_utf8_lossy(&o[28..])
        );
        let text = String::from_utf8_lossy(&d[28..]);
        let leak = common::sipcheck::names_address(&d[28..], "192.168.1.");
        assert!(!leak, "datagram {i} leaks a private address:\n{text}");
    }
    assert_eq!(sipnat.stop(), Some(0));
}

/// IPv6 through the live path (hardening 12): sipp calls over IPv6 (no inside address on
/// the outside, checksums, Content-Length), a fragmented IPv6 INVITE reassembled,
/// rewritten and refragmented, and ICMPv6 "packet too big" when a rewrite outgrows the MTU.
#[test]
fn ipv6_calls_fragments_and_packet_too_big() {
    use common::topo::{CAR_IP6, EXT_IP6, UA_IP6};
    let (_s, mut t) = crate::topo_or_skip!("ipv6");
    let cfg = t.dual_stack_config();
    let sipnat = t.start_sipnat(&cfg);
    let out_cap = Capture::start(&t.car, "car0", t.dir.path("outside.pcap"), "udp");
    sipp_uas(&mut t.car, CAR_IP6, &["-sn", "uas"]);
    let calls = 20;
    let (code, log) = sipp_uac(
        &t.ua,
        "uac_rtcp.xml",
        &format!("[{CAR_IP6}]:5060"),
        UA_IP6,
        calls,
        20,
        60,
        &[],
    );
    assert_eq!(
        code,
        0,
        "sipp over IPv6:\n{log}\nsipnat log:\n{}",
        sipnat.log_text()
    );

    // A 3000-byte INVITE: the UA's kernel fragments it; it arrives whole and rewritten.
    let car = t.car.name.clone();
    let s = common::topo::udp_socket_in(&car, (CAR_IP6, 5070));
    let receiver = std::thread::spawn(move || {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 8192];
        let (n, from) = s.recv_from(&mut buf).unwrap();
        (buf[..n].to_vec(), from.ip().to_string())
    });
    let big = format!(
        "INVITE sip:carrier@[{CAR_IP6}]:5070 SIP/2.0\r\nVia: SIP/2.0/UDP [{UA_IP6}]:5060;branch=z9hG4bK-v6big\r\n\
         Call-ID: v6big\r\nCSeq: 1 INVITE\r\nContact: <sip:u@[{UA_IP6}]:5060>\r\nX-Pad: {}\r\nContent-Length: 0\r\n\r\n",
        "p".repeat(3000)
    );
    let b = big.clone();
    t.ua.run(move || {
        let s = std::net::UdpSocket::bind((UA_IP6, 5060)).unwrap();
        s.send_to(b.as_bytes(), (CAR_IP6, 5070)).unwrap();
    });
    let (got, from) = receiver.join().unwrap();
    assert_eq!(from, EXT_IP6);
    let text = String::from_utf8_lossy(&got);
    common::assert_contains(&text, &format!("Via: SIP/2.0/UDP [{EXT_IP6}]:5060"));
    common::assert_contains(&text, &format!("Contact: <sip:u@[{EXT_IP6}]:5060>"));
    assert!(!text.contains(UA_IP6), "{text}");

    // Growth past the MTU: IPv6 is never fragmented by a router; ICMPv6 packet too big.
    let contacts: Vec<String> = (0..40)
        .map(|_| format!("<sip:u@[{UA_IP6}]:5060>"))
        .collect();
    let head = format!(
        "OPTIONS sip:carrier@[{CAR_IP6}]:5060 SIP/2.0\r\nVia: SIP/2.0/UDP [{UA_IP6}]:5060;branch=z9hG4bK-grow6\r\nCall-ID: grow6\r\nCSeq: 1 OPTIONS\r\nContact: {}\r\nX-Pad: ",
        contacts.join(", ")
    );
    let tail = "\r\nContent-Length: 0\r\n\r\n";
    let size = 1500 - 40 - 8;
    let mut grow = head.into_bytes();
    grow.extend(std::iter::repeat_n(b'p', size - grow.len() - tail.len()));
    grow.extend_from_slice(tail.as_bytes());
    t.ua.run(move || {
        let s = std::net::UdpSocket::bind((UA_IP6, 5062)).unwrap();
        s.send_to(&grow, (CAR_IP6, 5060)).unwrap();
    });
    await_condition("ICMPv6 packet too big", Duration::from_secs(5), || {
        sipnat.counter("icmp6_packet_too_big_sent") >= 1
    });

    let outside = out_cap.finish(&t);
    let sent = tshark_fields(
        &outside,
        &format!("ipv6.dst == {CAR_IP6} && udp.dstport == 5060 && sip"),
        &["ipv6.src", "udp.checksum.status", "udp.payload"],
    );
    let mut n = 0;
    for line in sent.lines().filter(|l| !l.is_empty()) {
        let mut f = line.split('|');
        let (src, status, hex) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap_or(""));
        let hex = hex.replace(':', "");
        let payload: Vec<u8> = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let text = String::from_utf8_lossy(&payload);
        assert_eq!(src, EXT_IP6, "source not NATed: {text}");
        // tshark: 1 = good (validation is on).
        assert_eq!(
            status, "1",
            "UDP checksum not good (tshark status {status}): {text}"
        );
        let fields = rewritable_addresses(&payload);
        for (field, a) in &fields {
            assert_ne!(a.to_string(), UA_IP6, "{field} still private in\n{text}");
        }
        assert!(
            has_field(&fields, "via", EXT_IP6),
            "top Via not rewritten:\n{text}"
        );
        if text.starts_with("INVITE") {
            assert!(text.contains(&format!("c=IN IP6 {EXT_IP6}")), "{text}");
        }
        if let Some((cl, rest)) = cl_and_rest(&payload) {
            assert_eq!(cl, rest, "Content-Length wrong:\n{text}");
        }
        n += 1;
    }
    assert!(n >= 3 * calls, "{n} IPv6 SIP requests seen at the carrier");
    assert_eq!(sipnat.stop(), Some(0));
}

/// The registrar of [`real_ua_registers_calls_holds_and_its_stale_binding_leaks_nothing`]:
/// registrar + usrloc + tm + sl + rr, no nathelper (it stores the Contact it receives).
/// Bindings are granted for at most 300 s, less than the UA asks for, so that the UA's
/// view of its binding shows whether it found it in the 200 OK. A transaction without any
/// answer ends in 2 s with a 408.
fn kamailio_registrar_cfg(dir: &std::path::Path) -> String {
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
children=2
disable_tcp=yes
disable_sctp=yes
auto_aliases=no
listen=udp:{CAR_IP}:5060
alias="{CAR_IP}"
rundir="{dir}"

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"

modparam("usrloc", "db_mode", 0)
modparam("registrar", "max_expires", 300)
modparam("tm", "fr_timer", 2000)
modparam("tm", "fr_inv_timer", 10000)

request_route {{
    if (method == "OPTIONS" && $rU == $null) {{
        sl_send_reply("200", "OK");
        exit;
    }}
    if (method == "REGISTER") {{
        if (!save("location")) {{
            sl_reply_error();
        }}
        exit;
    }}
    if ($tt != $null) {{
        if (loose_route()) {{
            t_relay();
            exit;
        }}
        if (method == "ACK" && t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    if (method == "CANCEL") {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    record_route();
    if (!lookup("location")) {{
        sl_send_reply("404", "Not Found");
        exit;
    }}
    t_relay();
}}
"#,
        dir = dir.display()
    )
}

/// Every frame of a capture (link layer included).
fn frames(file: &std::path::Path) -> Vec<Vec<u8>> {
    use pcap_file::pcap::PcapReader;
    let mut r = PcapReader::new(std::fs::File::open(file).unwrap()).unwrap();
    let mut v = Vec::new();
    while let Some(p) = r.next_packet() {
        v.push(p.unwrap().data.into_owned());
    }
    v
}

/// The SIP messages of one dialog (Call-ID) in a capture: (ip.src, text); not the start
/// of one quoted in an ICMP error.
/// Whether `d` holds an INVITE whose Request-URI names the UA's own address and port 5060.
fn invite_to_ua(d: &[(String, String)]) -> bool {
    d.iter().any(|(_, t)| {
        t.starts_with("INVITE ")
            && t.lines()
                .next()
                .unwrap()
                .contains(&format!("@{UA_IP}:5060 "))
    })
}

/// Receives one datagram on `s` in a thread (10 s at most): (payload, source).
fn receive_one(s: std::net::UdpSocket) -> std::thread::JoinHandle<(Vec<u8>, String)> {
    std::thread::spawn(move || {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 4096];
        let (n, from) = s.recv_from(&mut buf).unwrap();
        (buf[..n].to_vec(), from.to_string())
    })
}

/// Whether `fields` (from `rewritable_addresses`) has `field` naming `addr`.
fn has_field(fields: &[(String, std::net::IpAddr)], field: &str, addr: &str) -> bool {
    fields
        .iter()
        .any(|(f, a)| f == field && a.to_string() == addr)
}

fn dialog(file: &std::path::Path, call_id: &str) -> Vec<(String, String)> {
    udp_packets(file, &format!("sip.Call-ID == \"{call_id}\" && !icmp"))
        .into_iter()
        .map(|p| (p.src, String::from_utf8_lossy(&p.payload).into_owned()))
        .collect()
}

/// What a dialog's messages sent from `src` were, in order: the method of a request, the
/// status code and CSeq method of a response (`200 INVITE`); a retransmission counts once.
fn summary(msgs: &[(String, String)], src: &str) -> Vec<String> {
    let mut sent: Vec<&str> = msgs
        .iter()
        .filter(|(s, _)| s == src)
        .map(|(_, t)| t.as_str())
        .collect();
    sent.dedup();
    sent.iter()
        .map(|t| {
            let first = t.lines().next().unwrap_or("");
            let cseq = t
                .lines()
                .find(|l| l.starts_with("CSeq:"))
                .and_then(|l| l.split_whitespace().nth(2))
                .unwrap_or("");
            if first.starts_with("SIP/2.0") {
                format!("{} {cseq}", first.split_whitespace().nth(1).unwrap_or(""))
            } else {
                first.split_whitespace().next().unwrap_or("").to_string()
            }
        })
        .collect()
}

/// Registers (or with `expires` 0 removes) `contact` for alice at the registrar, from the
/// carrier namespace itself (not through sipnat); returns the 200's Contact lines.
fn register_directly(car: &common::netns::Netns, contact: &str, cseq: u32, expires: u32) -> String {
    let req = format!(
        "REGISTER sip:{CAR_IP} SIP/2.0\r\nVia: SIP/2.0/UDP {CAR_IP}:5099;branch=z9hG4bK-direct{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@{CAR_IP}>;tag=direct\r\nTo: <sip:alice@{CAR_IP}>\r\n\
         Call-ID: direct-binding\r\nCSeq: {cseq} REGISTER\r\nContact: <{contact}>;expires={expires}\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let reply = car.run(move || {
        let s = std::net::UdpSocket::bind((CAR_IP, 5099)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 4096];
        for _ in 0..10 {
            s.send_to(req.as_bytes(), (CAR_IP, 5060)).unwrap();
            if let Ok(n) = s.recv(&mut buf) {
                return buf[..n].to_vec();
            }
        }
        Vec::new()
    });
    assert!(
        reply.starts_with(b"SIP/2.0 200"),
        "direct REGISTER: {}",
        String::from_utf8_lossy(&reply)
    );
    contact_lines(&reply)
}

/// A real UA and a real registrar (hardening 10 and 11). baresip registers from the UA
/// namespace through sipnat to Kamailio (no nathelper) in the carrier namespace; a second
/// baresip on the carrier side calls it through Kamailio and is called by it directly.
/// Register (the registrar stores the external address; the UA finds its own binding in
/// the 200 and takes the granted expiry from it), a call in, a call out with hold and
/// resume, a call to a closed port (the carrier's port unreachable reaches the UA
/// translated), then the UA is killed without unregistering and called again: its
/// kernel's port unreachable is translated by sipnat and the caller gets a 408. Not one
/// internal address crosses the outside link, in IP headers, ICMP quotes or SIP text.
#[test]
fn real_ua_registers_calls_holds_and_its_stale_binding_leaks_nothing() {
    use common::sipua::{Baresip, Kamailio};
    let test = "real_ua_registers_calls_holds_and_its_stale_binding_leaks_nothing";
    if !privileged(test)
        || !common::installed(
            test,
            &[
                ("baresip", "baresip-core"),
                ("kamailio", "kamailio"),
                ("nft", "nftables"),
            ],
        )
    {
        return;
    }
    let _s = common::serial();
    let t = Topo::new("realua");
    // Media is not SIP: it takes the kernel's path, which needs the gateway's own NAT
    // (as a deployment has it). Steered SIP never meets this rule; an ICMP error about a
    // flow the kernel never saw has no conntrack entry, so this rule does not apply to it.
    t.gw.exec(&[
        "nft",
        &format!(
            "add table ip media; add chain ip media post {{ type nat hook postrouting priority srcnat; }}; \
             add rule ip media post oifname \"gwout\" ip saddr 10.0.0.0/24 snat to {EXT_IP}"
        ),
    ]);
    let cfg = t.config("gw", "", "");
    let sipnat = t.start_sipnat(&cfg);
    let out_cap = Capture::start(&t.car, "car0", t.dir.path("outside.pcap"), "");
    let in_cap = Capture::start(&t.ua, "ua0", t.dir.path("inside.pcap"), "udp or icmp");
    let mut kamailio = Kamailio::start(&t.car, &t.dir.0, CAR_IP, &kamailio_registrar_cfg(&t.dir.0));
    let mut bob = Baresip::start(&t.car, &t.dir.0, "bob", &format!("{CAR_IP}:5070"), CAR_IP);
    let mut alice = Baresip::start(&t.ua, &t.dir.0, "alice", &format!("{UA_IP}:5060"), UA_IP);
    let wait = Duration::from_secs(15);

    // 1. Register (asking for 600 s; the registrar grants 300). The address-of-record has
    // another binding at the external address but another port: it is not the UA's and
    // must reach the UA as the registrar sent it.
    let other = format!("sip:alice@{EXT_IP}:5070");
    register_directly(&t.car, &other, 1, 300);
    bob.command(
        "uanew",
        &format!("<sip:bob@{CAR_IP}:5070>;regint=0;answermode=auto"),
    );
    alice.command(
        "uanew",
        &format!("<sip:alice@{CAR_IP}>;regint=600;answermode=auto"),
    );
    let reg = alice.await_event("REGISTER_OK", 1, wait);
    assert!(
        reg["param"].as_str().unwrap_or("").starts_with("200"),
        "{reg}"
    );
    // baresip takes the expiry from the Contact in the 200 that equals its own (its
    // address and port): found only if sipnat restored it (RFC 3261 §10.2.4).
    let info = alice.command("reginfo", "");
    assert!(
        info.contains("Expires 300s"),
        "the UA did not find its own binding in the REGISTER 200: {info}"
    );

    // The other binding goes (so that calls to the AOR are not forked to it).
    let left = register_directly(&t.car, &other, 2, 0);
    assert!(!left.contains(&other) && left.contains("alice"), "{left}");

    // 2. Call in: bob → Kamailio (location lookup) → sipnat → alice, auto-answered.
    bob.command("dial", &format!("sip:alice@{CAR_IP}"));
    let call_in = alice.await_event("CALL_ESTABLISHED", 1, wait);
    bob.await_event("CALL_ESTABLISHED", 1, wait);
    assert_eq!(call_in["direction"], "incoming", "{call_in}");
    bob.command("hangup", "");
    alice.await_event("CALL_CLOSED", 1, wait);
    bob.await_event("CALL_CLOSED", 1, wait);

    // 3 and 4. Call out, directly to bob, put on hold and resumed (re-INVITEs), hung up.
    alice.command("dial", &format!("sip:bob@{CAR_IP}:5070"));
    let call_out = alice.await_event("CALL_ESTABLISHED", 2, wait);
    bob.await_event("CALL_ESTABLISHED", 2, wait);
    assert_eq!(call_out["direction"], "outgoing", "{call_out}");
    let answers = alice.events("CALL_REMOTE_SDP").len();
    alice.command("hold", "");
    alice.await_event("CALL_REMOTE_SDP", answers + 1, wait);
    alice.command("resume", "");
    alice.await_event("CALL_REMOTE_SDP", answers + 2, wait);
    alice.command("hangup", "");
    alice.await_event("CALL_CLOSED", 2, wait);
    bob.await_event("CALL_CLOSED", 2, wait);

    // The other way: the UA's INVITE to a closed port on the outside; the carrier's port
    // unreachable, about a datagram from the external address, is translated and reaches
    // the UA (baresip's unconnected socket does not act on it: the UA hangs up).
    let translated = sipnat.counter("icmp_error_translated");
    alice.command("dial", &format!("sip:nobody@{CAR_IP}:5080"));
    await_condition("the carrier's port unreachable translated", wait, || {
        sipnat.counter("icmp_error_translated") > translated
    });
    alice.command("hangup", "");
    alice.await_event("CALL_CLOSED", 3, wait);

    // 5. Stale binding: alice dies without unregistering; Kamailio still routes her AOR
    // to the external address, sipnat restores the INVITE to her address, her kernel
    // answers port unreachable: translated, and bob gets Kamailio's 408.
    let translated = sipnat.counter("icmp_error_translated");
    let alice_pid = alice.pid();
    alice.kill9();
    assert!(
        !std::path::Path::new(&format!("/proc/{alice_pid}")).exists(),
        "baresip {alice_pid} still running"
    );
    bob.command("dial", &format!("sip:alice@{CAR_IP}"));
    let stale = bob.await_event("CALL_CLOSED", 3, wait);
    assert!(
        stale["param"].as_str().unwrap_or("").starts_with("408"),
        "the caller of a stale binding gets a 408: {stale}"
    );
    await_condition("the UA's port unreachable translated", wait, || {
        sipnat.counter("icmp_error_translated") > translated
    });
    assert_eq!(sipnat.counter("drop_icmp_untranslatable"), 0);

    kamailio.stop();
    let stats = sipnat.stats();
    let outside = out_cap.finish(&t);
    let inside = in_cap.finish(&t);
    // Not one internal address on the outside: no IP header (outer or quoted in an ICMP
    // error) and no byte string naming the inside network, in any frame.
    let leaks = tshark(&outside, &["-Y", "ip.addr == 10.0.0.0/24"]);
    assert!(
        leaks.trim().is_empty(),
        "internal address on the outside:\n{leaks}"
    );
    let all = frames(&outside);
    assert!(all.len() >= 40, "{} frames on the outside", all.len());
    for (i, f) in all.iter().enumerate() {
        assert!(
            !f.windows(7).any(|w| w == b"10.0.0."),
            "frame {} on the outside names the inside network:\n{}",
            i + 1,
            String::from_utf8_lossy(f)
        );
    }
    checksums_ok(&outside, 20);
    let bad_icmp = tshark(&outside, &["-Y", "icmp.checksum.status == \"Bad\""]);
    assert!(
        bad_icmp.trim().is_empty(),
        "bad ICMP checksums:\n{bad_icmp}"
    );
    // Every SIP message of the UA: source, Via, Contact and SDP at the external address,
    // Content-Length right.
    let from_ua = udp_packets(&outside, &format!("sip && !icmp && ip.src == {EXT_IP}"));
    assert!(
        from_ua.len() >= 11,
        "{} SIP messages from the UA",
        from_ua.len()
    );
    for p in &from_ua {
        let text = String::from_utf8_lossy(&p.payload);
        let fields = rewritable_addresses(&p.payload);
        assert!(fields.iter().all(|(_, a)| a.to_string() != UA_IP), "{text}");
        if text.contains("\r\nContact:") {
            assert!(
                fields
                    .iter()
                    .any(|(f, a)| f == "contact" && a.to_string() == EXT_IP),
                "Contact not at the external address:\n{text}"
            );
        }
        if let Some((cl, rest)) = cl_and_rest(&p.payload) {
            assert_eq!(cl, rest, "Content-Length wrong:\n{text}");
        }
    }

    // 1. The registrar stored, and returned, the external address; the UA got its own
    // binding back restored, the rest of the 200 as sent.
    let reg_out = udp_packets(&outside, "sip.CSeq.method == \"REGISTER\" && !icmp");
    let reg_in = udp_packets(&inside, "sip.CSeq.method == \"REGISTER\" && !icmp");
    let (req_out, ok_out): (Vec<_>, Vec<_>) = reg_out
        .iter()
        .partition(|p| p.payload.starts_with(b"REGISTER"));
    let ok_in: Vec<_> = reg_in
        .iter()
        .filter(|p| p.payload.starts_with(b"SIP/2.0 200"))
        .collect();
    assert!(!req_out.is_empty() && !ok_out.is_empty() && !ok_in.is_empty());
    let contact = contact_lines(&req_out[0].payload);
    assert!(contact.contains(&format!("@{EXT_IP}:5060>")), "{contact}");
    let granted = contact_lines(&ok_out[0].payload);
    assert!(
        granted.contains(&format!("@{EXT_IP}:5060>;expires=300")),
        "the registrar's binding: {granted}"
    );
    assert!(granted.contains(&format!("<{other}>")), "{granted}");
    assert_eq!(
        contact_lines(&ok_in[0].payload),
        granted.replace(&format!("@{EXT_IP}:5060>"), &format!("@{UA_IP}:5060>")),
        "REGISTER 200 at the UA: its own binding restored, the other one untouched"
    );

    // 2. Call in: Kamailio's INVITE used the stored binding (the external address) and
    // reached the UA at its own address; answered, acknowledged, hung up.
    let id_in = call_in["id"].as_str().unwrap();
    let d = dialog(&outside, id_in);
    let invite = d
        .iter()
        .find(|(s, t)| s == CAR_IP && t.starts_with("INVITE "))
        .expect("INVITE from the registrar");
    assert!(
        invite
            .1
            .lines()
            .next()
            .unwrap()
            .contains(&format!("@{EXT_IP}:5060 ")),
        "{}",
        invite.1
    );
    assert_eq!(
        summary(&d, EXT_IP),
        ["180 INVITE", "200 INVITE", "200 BYE"],
        "{d:?}"
    );
    assert_eq!(summary(&d, CAR_IP), ["INVITE", "ACK", "BYE"], "{d:?}");
    let d_in = dialog(&inside, id_in);
    assert!(invite_to_ua(&d_in), "{d_in:?}");

    // 3 and 4. Call out with hold: three INVITEs (sendrecv, sendonly, sendrecv), each
    // answered and acknowledged; their SDP names the external address only.
    let id_out = call_out["id"].as_str().unwrap();
    let d = dialog(&outside, id_out);
    assert_eq!(
        summary(&d, EXT_IP),
        ["INVITE", "ACK", "INVITE", "ACK", "INVITE", "ACK", "BYE"],
        "{d:?}"
    );
    assert_eq!(
        summary(&d, CAR_IP),
        [
            "180 INVITE",
            "200 INVITE",
            "200 INVITE",
            "200 INVITE",
            "200 BYE"
        ],
        "{d:?}"
    );
    let directions: Vec<&str> = d
        .iter()
        .filter(|(s, t)| s == EXT_IP && t.starts_with("INVITE "))
        .map(|(_, t)| {
            assert!(t.contains(&format!("c=IN IP4 {EXT_IP}\r\n")), "{t}");
            assert!(t.contains(&format!(" IN IP4 {EXT_IP}\r\n")), "{t}");
            ["a=sendrecv", "a=sendonly", "a=inactive"]
                .into_iter()
                .find(|a| t.contains(&format!("{a}\r\n")))
                .unwrap_or("none")
        })
        .collect();
    assert_eq!(directions, ["a=sendrecv", "a=sendonly", "a=sendrecv"]);
    // The UA itself wrote its own address: the external one is sipnat's doing.
    let d_in = dialog(&inside, id_out);
    let invites_in: Vec<&String> = d_in
        .iter()
        .filter(|(s, t)| s == UA_IP && t.starts_with("INVITE "))
        .map(|(_, t)| t)
        .collect();
    assert!(invites_in.len() >= 3, "{d_in:?}");
    for t in invites_in {
        assert!(t.contains(&format!("c=IN IP4 {UA_IP}\r\n")), "{t}");
    }

    // 5. Stale binding: the INVITE reached the UA's address, its kernel said port
    // unreachable, and that error left translated (from the external address, quoting the
    // datagram as the registrar sent it, cut after the UDP header); the 408 went to bob.
    let id_stale = stale["id"].as_str().unwrap();
    let d = dialog(&outside, id_stale);
    assert!(summary(&d, EXT_IP).is_empty(), "a dead UA answered: {d:?}");
    assert_eq!(summary(&d, CAR_IP), ["INVITE"], "{d:?}");
    let d_in = dialog(&inside, id_stale);
    assert!(
        invite_to_ua(&d_in),
        "the registrar's INVITE did not reach the UA's address: {d_in:?}"
    );
    let icmp_in = tshark(
        &inside,
        &[
            "-Y",
            &format!(
                "icmp.type == 3 && icmp.code == 3 && ip.src == {UA_IP} && udp.srcport == 5060"
            ),
        ],
    );
    assert!(
        !icmp_in.trim().is_empty(),
        "the UA's kernel sent no port unreachable"
    );
    // The carrier's port unreachable for the UA's INVITE to port 5080 reached the UA,
    // addressed to it and quoting its datagram as the UA sent it.
    let refused = tshark_fields(
        &inside,
        "icmp.type == 3 && icmp.code == 3 && udp.dstport == 5080",
        &["ip.src", "ip.dst"],
    );
    let refused: Vec<&str> = refused.lines().filter(|l| !l.is_empty()).collect();
    assert!(!refused.is_empty(), "no port unreachable reached the UA");
    for l in &refused {
        assert_eq!(
            *l,
            format!("{CAR_IP},{UA_IP}|{UA_IP},{CAR_IP}"),
            "inbound ICMP error"
        );
    }
    let icmp_out = tshark_fields(
        &outside,
        "icmp.type == 3 && icmp.code == 3 && udp.srcport == 5060 && udp.dstport == 5060",
        &["ip.src", "ip.dst", "ip.len"],
    );
    let icmps: Vec<&str> = icmp_out.lines().filter(|l| !l.is_empty()).collect();
    assert!(
        !icmps.is_empty(),
        "no translated port unreachable on the outside"
    );
    for l in &icmps {
        // Outer EXT → CAR, 56 bytes (20 + 8, then the quote cut to 20 + 8); quoted CAR →
        // EXT, its header as sent (the whole INVITE's length).
        let f: Vec<&str> = l.split('|').collect();
        assert_eq!(
            f[..2],
            [format!("{EXT_IP},{CAR_IP}"), format!("{CAR_IP},{EXT_IP}")],
            "{l}"
        );
        let lens: Vec<u32> = f[2].split(',').map(|n| n.parse().unwrap()).collect();
        assert!(lens[0] == 56 && lens[1] > 500, "translated ICMP error: {l}");
    }
    common::report(&format!(
        "real UA: baresip registered through sipnat to Kamailio (own binding restored), \
         called in, called out with hold and resume, stale binding: {} ICMP errors \
         translated, {} SIP messages of the UA checked, {} frames on the outside, none \
         naming the inside network",
        stats["total"]["icmp_error_translated"],
        from_ua.len(),
        all.len()
    ));
    drop(alice);
    drop(bob);
    assert_eq!(sipnat.stop(), Some(0));
}
