//! End to end: sipnat running in a gateway namespace between a UA namespace (10.0.0.2) and a
//! carrier namespace (198.51.100.2), with real SIP user agents (sipp), captures checked
//! with tshark (checksum validation on) and with independent SIP checks.
//!
//! The tests share the host's two cores; they run one at a time (a global lock) so that
//! timing-sensitive steps are not starved by each other.

mod common;

use std::{
    sync::Mutex,
    time::Duration,
};

use common::{
    privileged,
    sipcheck::{cl_and_rest, rewritable_addresses},
    topo::{scenario, sipp, sipp_uas, tshark, Capture, Sipnat, Topo, CAR_IP, EXT_IP, UA_IP},
};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// One captured UDP packet: (ip.src, ip.dst, payload).
struct Pkt {
    src: String,
    dst: String,
    payload: Vec<u8>,
}

fn udp_packets(file: &std::path::Path, filter: &str) -> Vec<Pkt> {
    let out = tshark(file, &["-Y", filter, "-T", "fields", "-E", "separator=|", "-e", "ip.src", "-e", "ip.dst", "-e", "udp.payload"]);
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut f = l.split('|');
            let src = f.next().unwrap_or("").to_string();
            let dst = f.next().unwrap_or("").to_string();
            let hex = f.next().unwrap_or("").replace(':', "");
            let payload = (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
            Pkt { src, dst, payload }
        })
        .collect()
}

/// No packet in the capture has a bad IP or UDP checksum, and `expect_good` packets were
/// verified good (so validation really ran).
fn checksums_ok(file: &std::path::Path, expect_good: usize) {
    let bad = tshark(file, &["-Y", "ip.checksum.status == \"Bad\" || udp.checksum.status == \"Bad\""]);
    assert!(bad.trim().is_empty(), "bad checksums in {}:\n{bad}", file.display());
    let good = tshark(file, &["-Y", "udp.checksum.status == \"Good\""]).lines().count();
    assert!(good >= expect_good, "only {good} UDP checksums verified good, expected ≥ {expect_good}");
}

fn first_line(p: &[u8]) -> String {
    String::from_utf8_lossy(p).lines().next().unwrap_or("").to_string()
}

#[test]
fn sipp_calls_are_rewritten_both_ways() {
    if !privileged("sipp_calls_are_rewritten_both_ways") {
        return;
    }
    let _s = serial();
    let mut t = Topo::new("calls");
    let cfg = t.config("gw", "", "");
    let sipnat = Sipnat::start(&t.gw, &cfg, t.dir.path("gw.sock"), t.dir.path("gw.log"));
    let out_cap = Capture::start(&t.car, "car0", t.dir.path("outside.pcap"), "udp");
    let in_cap = Capture::start(&t.ua, "ua0", t.dir.path("inside.pcap"), "udp");
    sipp_uas(&mut t.car, CAR_IP, &["-sn", "uas"]);
    let calls = 100;
    let (code, log) = sipp(
        &t.ua,
        &["-sf", &scenario("uac_rtcp.xml"), &format!("{CAR_IP}:5060"), "-i", UA_IP, "-p", "5060", "-m", &calls.to_string(), "-r", "50", "-timeout", "60s", "-mp", "6000"],
        Duration::from_secs(90),
    );
    assert_eq!(code, 0, "sipp UAC: not every call succeeded:\n{log}\nsipnat log:\n{}", sipnat.log_text());
    let stats = sipnat.stats();
    let outside = out_cap.finish(&t);
    let inside = in_cap.finish(&t);

    // Outside: everything from the UA is source-NATed and rewritten.
    let sent = udp_packets(&outside, &format!("ip.dst == {CAR_IP} && udp.dstport == 5060"));
    assert!(sent.len() >= 3 * calls, "expected ≥ {} requests at the carrier, saw {}", 3 * calls, sent.len());
    let mut invites = 0;
    for p in &sent {
        assert_eq!(p.src, EXT_IP, "source not NATed: {}", first_line(&p.payload));
        let text = String::from_utf8_lossy(&p.payload);
        assert!(!text.contains("10.0.0.2:") || text.contains("branch"), "{text}");
        let fields = rewritable_addresses(&p.payload);
        for (field, a) in &fields {
            assert_ne!(a.to_string(), UA_IP, "{field} still private in\n{text}");
        }
        let via = fields.iter().find(|(f, _)| f == "via").expect("a top Via");
        assert_eq!(via.1.to_string(), EXT_IP);
        assert!(fields.iter().any(|(f, a)| f == "contact" && a.to_string() == EXT_IP), "Contact not rewritten:\n{text}");
        if text.starts_with("INVITE") {
            invites += 1;
            for want in [format!("o=user1 53655765 2353687637 IN IP4 {EXT_IP}"), format!("c=IN IP4 {EXT_IP}"), format!(" IN IP4 {EXT_IP}\r\n")] {
                assert!(text.contains(&want), "missing `{want}` in\n{text}");
            }
            assert!(text.contains("a=rtcp:6001 IN IP4 198.51.100.1"), "a=rtcp not rewritten:\n{text}");
        }
        let (cl, rest) = cl_and_rest(&p.payload).expect("Content-Length");
        assert_eq!(cl, rest, "Content-Length wrong:\n{text}");
    }
    assert!(invites >= calls, "{invites} INVITEs");
    checksums_ok(&outside, sent.len());

    // Inside: the carrier's responses reach the UA with its own address back in the top Via.
    let back = udp_packets(&inside, &format!("ip.dst == {UA_IP} && udp.srcport == 5060"));
    assert!(back.len() >= 3 * calls, "expected ≥ {} responses at the UA, saw {}", 3 * calls, back.len());
    for p in &back {
        assert_eq!(p.src, CAR_IP);
        let fields = rewritable_addresses(&p.payload);
        let via = fields.iter().find(|(f, _)| f == "via").expect("a top Via");
        assert_eq!(via.1.to_string(), UA_IP, "top Via not restored:\n{}", String::from_utf8_lossy(&p.payload));
    }
    checksums_ok(&inside, back.len());

    // Counters: every packet accounted for.
    let total = &stats["total"];
    let rx = total["rx_inside"].as_u64().unwrap() + total["rx_outside"].as_u64().unwrap();
    let tx = total["tx_inside"].as_u64().unwrap() + total["tx_outside"].as_u64().unwrap();
    let slow: u64 = ["slow_neighbor_unknown", "slow_internal", "slow_inbound_no_mapping", "slow_route_other_interface", "slow_flow_collision", "slow_not_udp"]
        .iter()
        .map(|k| total[*k].as_u64().unwrap())
        .sum();
    assert_eq!(rx, tx + slow, "received = transmitted + slow path (stats: {total})");
    assert!(total["rewrite_sdp_rtcp"].as_u64().unwrap() >= calls as u64);
    assert_eq!(sipnat.stop(), Some(0));
}

#[test]
fn register_with_digest_auth_and_registrar_contacts_untouched() {
    if !privileged("register_with_digest_auth_and_registrar_contacts_untouched") {
        return;
    }
    let _s = serial();
    let mut t = Topo::new("reg");
    let cfg = t.config("gw", "", "");
    let sipnat = Sipnat::start(&t.gw, &cfg, t.dir.path("gw.sock"), t.dir.path("gw.log"));
    let out_cap = Capture::start(&t.car, "car0", t.dir.path("outside.pcap"), "udp");
    let in_cap = Capture::start(&t.ua, "ua0", t.dir.path("inside.pcap"), "udp");
    sipp_uas(&mut t.car, CAR_IP, &["-sf", &scenario("reg_uas.xml")]);
    let (code, log) = sipp(
        &t.ua,
        &["-sf", &scenario("reg_uac.xml"), &format!("{CAR_IP}:5060"), "-i", UA_IP, "-p", "5060", "-m", "5", "-r", "5", "-timeout", "30s"],
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "REGISTER with digest failed through sipnat:\n{log}\n{}", sipnat.log_text());
    let outside = out_cap.finish(&t);
    let inside = in_cap.finish(&t);
    // The authenticated REGISTER left with its Contact rewritten; digest uri untouched.
    let regs = udp_packets(&outside, "sip.Method == \"REGISTER\" && sip.Authorization");
    assert_eq!(regs.len(), 5);
    for p in &regs {
        let text = String::from_utf8_lossy(&p.payload);
        assert!(text.contains(&format!("Contact: <sip:alice@{EXT_IP}:5060>")), "{text}");
        assert!(text.contains(&format!("uri=\"sip:{CAR_IP}:5060\"")), "{text}");
    }
    // The 200 OK's Contact list arrives at the UA exactly as the registrar sent it.
    let ok_out: Vec<String> = udp_packets(&outside, "sip.Status-Code == 200 && sip.CSeq.method == \"REGISTER\"")
        .iter()
        .map(|p| contact_lines(&p.payload))
        .collect();
    let ok_in: Vec<String> = udp_packets(&inside, "sip.Status-Code == 200 && sip.CSeq.method == \"REGISTER\"")
        .iter()
        .map(|p| contact_lines(&p.payload))
        .collect();
    assert_eq!(ok_out.len(), 5);
    assert_eq!(ok_in, ok_out, "REGISTER 200 Contact list must not be rewritten");
    assert!(ok_in[0].contains(&format!("<sip:alice@{EXT_IP}:5060>")) && ok_in[0].contains("<sip:alice@10.0.0.99:5070>"), "{}", ok_in[0]);
    checksums_ok(&inside, 10);
    assert_eq!(sipnat.stop(), Some(0));
}

fn contact_lines(p: &[u8]) -> String {
    String::from_utf8_lossy(p).lines().filter(|l| l.starts_with("Contact:")).collect::<Vec<_>>().join("\n")
}

#[test]
fn big_invite_is_reassembled_rewritten_and_refragmented() {
    if !privileged("big_invite_is_reassembled_rewritten_and_refragmented") {
        return;
    }
    let _s = serial();
    let mut t = Topo::new("frag");
    let cfg = t.config("gw", "", "");
    let sipnat = Sipnat::start(&t.gw, &cfg, t.dir.path("gw.sock"), t.dir.path("gw.log"));
    let out_cap = Capture::start(&t.car, "car0", t.dir.path("outside.pcap"), "");
    sipp_uas(&mut t.car, CAR_IP, &["-sn", "uas"]);
    let calls = 10;
    let (code, log) = sipp(
        &t.ua,
        &["-sf", &scenario("uac_big.xml"), &format!("{CAR_IP}:5060"), "-i", UA_IP, "-p", "5060", "-m", &calls.to_string(), "-r", "10", "-timeout", "30s", "-mp", "6000"],
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "big INVITEs failed:\n{log}\n{}", sipnat.log_text());
    let outside = out_cap.finish(&t);
    let total = &sipnat.stats()["total"];
    assert!(total["reasm_complete"].as_u64().unwrap() >= calls, "{total}");
    assert!(total["refragmented"].as_u64().unwrap() >= calls, "{total}");
    // At the carrier: IPv4 fragments from the external address, reassembled by tshark into
    // INVITEs that are rewritten, with valid checksums.
    let frags = tshark(&outside, &["-Y", &format!("ip.flags.mf == 1 && ip.src == {EXT_IP}")]);
    assert!(frags.lines().count() >= calls as usize, "no refragmented packets from the external address:\n{frags}");
    let invites = udp_packets(&outside, "sip.Method == \"INVITE\"");
    assert!(invites.len() >= calls as usize);
    for p in &invites {
        let text = String::from_utf8_lossy(&p.payload);
        assert!(p.payload.len() > 1500, "INVITE not big: {}", p.payload.len());
        assert_eq!(p.src, EXT_IP);
        assert!(!text.contains(&format!("IN IP4 {UA_IP}")), "{text}");
        for (field, a) in rewritable_addresses(&p.payload) {
            assert_ne!(a.to_string(), UA_IP, "{field} not rewritten in\n{text}");
        }
        assert_eq!(text.matches(&format!("c=IN IP4 {EXT_IP}")).count(), 2, "{text}");
        let (cl, rest) = cl_and_rest(&p.payload).unwrap();
        assert_eq!(cl, rest);
    }
    checksums_ok(&outside, invites.len());
    assert_eq!(sipnat.stop(), Some(0));
}
