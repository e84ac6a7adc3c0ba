//! NAPT end to end: many SIP user agents behind one external address, all on port 5060,
//! calling one carrier at the same time through sipnat (`[nat] port_range`). Every call
//! must complete, each UA must leave from its own external port (its Via and Contact
//! saying the same port), and no private address may cross the outside link.
//!
//! Privileged (network namespaces, XDP); run one at a time like the other e2e tests.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    process::{Command, Stdio},
};

use common::topo::{
    assert_no_packet, await_condition, scenario, sipp_uas, tshark, tshark_fields, Sipnat, Topo,
    BAD_CHECKSUM, CAR_IP, EXT_IP,
};

/// Not one packet of the capture names 10.0.0.0/24, in a header or the payload (the
/// capture's own end markers, sent by the test through the kernel to port 9, aside).
fn assert_no_private_address(capture: &std::path::Path) {
    let private = "(ip.addr == 10.0.0.0/24 || udp contains \"10.0.0.\") && !(udp.dstport == 9)";
    assert_no_packet(capture, private, "private addresses outside");
}

/// The two `fields` of each packet of `capture` that matches `filter`.
fn field_pairs(
    capture: &std::path::Path,
    filter: &str,
    fields: [&str; 2],
) -> Vec<(String, String)> {
    let out = tshark_fields(capture, filter, &fields);
    let pairs = out.lines().filter(|l| !l.is_empty());
    pairs
        .map(|l| l.split_once('|').expect("two fields"))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The inside addresses of `n` UAs: 10.0.0.2, 10.0.0.3, ...
fn ua_ips(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("10.0.0.{}", 2 + i)).collect()
}

/// Puts the UAs' addresses (beyond the topology's own 10.0.0.2) on the inside veth.
fn add_ua_addresses(t: &Topo, ips: &[String]) {
    for a in ips.iter().skip(1) {
        t.ua.exec(&["ip", "addr", "add", &format!("{a}/24"), "dev", "ua0"]);
    }
}

/// Runs one sipp UAC per address at the same time (each `calls` calls of `uac_napt.xml`
/// from ADDRESS:5060 to the carrier); returns each one's (address, exit code, output).
fn calls_at_once(t: &Topo, ips: &[String], calls: u32) -> Vec<(String, i32, String)> {
    let sf = scenario("uac_napt.xml");
    let children: Vec<_> = ips
        .iter()
        .map(|a| {
            let child = Command::new("timeout")
                .args(["90", "ip", "netns", "exec", &t.ua.name, "sipp"])
                .args(["-sf", &sf, &format!("{CAR_IP}:5060"), "-i", a, "-p", "5060"])
                .args(["-m", &calls.to_string(), "-r", "20", "-timeout", "60s"])
                .args(["-mp", "6000", "-cid_str", "napt-%u-%p", "-nostdin"])
                .current_dir(std::env::temp_dir())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run sipp");
            (a.clone(), child)
        })
        .collect();
    children
        .into_iter()
        .map(|(a, c)| {
            let out = c.wait_with_output().expect("wait for sipp");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (a, out.status.code().unwrap_or(-1), text)
        })
        .collect()
}

/// The port after `host:` in `text` (`host` followed by `:PORT`), if written.
fn port_after(text: &str, host: &str) -> Option<u16> {
    let i = text.find(&format!("{host}:"))? + host.len() + 1;
    let digits: String = text[i..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn header<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.split("\r\n")
        .find(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:")))
}

fn hex_payload(hex: &str) -> String {
    let hex = hex.replace(':', "");
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn many_uas_on_port_5060(tag: &str, n: usize) {
    let (_s, mut t, sipnat) = crate::gateway_or_skip!(tag, "port_range = \"20000-29999\"", "");
    let ips = ua_ips(n);
    add_ua_addresses(&t, &ips);
    let (out_cap, in_cap) = t.capture_both("udp");
    sipp_uas(&mut t.car, CAR_IP, &["-sn", "uas"]);
    let calls = 5;
    let results = calls_at_once(&t, &ips, calls);
    for (a, code, log) in &results {
        assert_eq!(
            *code,
            0,
            "sipp UAC {a}: not every call succeeded:\n{log}\nsipnat log:\n{}",
            sipnat.log_text()
        );
    }
    let stats = sipnat.stats();
    let total = &stats["total"];
    let outside = out_cap.finish(&t);
    let inside = in_cap.finish(&t);

    // Outside: every SIP packet from the gateway leaves from the external address; each
    // UA from its own port, and its Via and Contact name that port.
    let lines = tshark_fields(
        &outside,
        &format!("ip.src == {EXT_IP} && udp.dstport == 5060"),
        &["udp.srcport", "udp.payload"],
    );
    let mut port_of_call: BTreeMap<String, u16> = BTreeMap::new();
    let mut requests = 0;
    for l in lines.lines().filter(|l| !l.is_empty()) {
        let (sport, hex) = l.split_once('|').expect("two fields");
        let sport: u16 = sport.parse().expect("a port");
        let text = hex_payload(hex);
        requests += 1;
        let via = header(&text, "via").unwrap_or_else(|| panic!("no Via in\n{text}"));
        assert_eq!(
            port_after(via, EXT_IP),
            Some(sport),
            "Via port differs from the UDP source port:\n{text}"
        );
        let contact = header(&text, "contact").unwrap_or_else(|| panic!("no Contact in\n{text}"));
        assert_eq!(
            port_after(contact, EXT_IP),
            Some(sport),
            "Contact port differs from the UDP source port:\n{text}"
        );
        let call = header(&text, "call-id").expect("Call-ID").to_string();
        // The sipp process (its pid in the Call-ID) is one UA: one port for all its calls.
        let ua = call.rsplit('-').next().unwrap_or("").to_string();
        let prev = port_of_call.insert(ua.clone(), sport);
        assert!(
            prev.is_none_or(|p| p == sport),
            "UA {ua} left from ports {prev:?} and {sport}"
        );
    }
    assert!(
        requests >= 3 * calls as usize * n,
        "expected ≥ {} requests at the carrier, saw {requests}",
        3 * calls as usize * n
    );
    let ports: BTreeSet<u16> = port_of_call.values().copied().collect();
    assert_eq!(
        (port_of_call.len(), ports.len()),
        (n, n),
        "{n} UAs, distinct external ports: {port_of_call:?}"
    );
    assert!(
        ports.contains(&5060),
        "the first UA keeps its port: {ports:?}"
    );
    assert!(
        ports
            .iter()
            .all(|&p| p == 5060 || (20000..=29999).contains(&p)),
        "{ports:?}"
    );

    assert_no_private_address(&outside);
    assert_no_packet(&outside, BAD_CHECKSUM, "bad checksums");

    // Inside: every reply reaches its UA on port 5060, restored.
    let replies = tshark_fields(
        &inside,
        &format!("ip.src == {CAR_IP} && udp.srcport == 5060"),
        &["ip.dst", "udp.dstport", "udp.payload"],
    );
    let mut reached = BTreeSet::new();
    for l in replies.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = l.split('|').collect();
        assert_eq!(f[1], "5060", "reply to another port: {l}");
        let text = hex_payload(f[2]);
        let via = header(&text, "via").expect("Via");
        assert!(
            via.contains(&format!("{}:5060", f[0])),
            "Via not restored for {}:\n{text}",
            f[0]
        );
        reached.insert(f[0].to_string());
    }
    assert_eq!(reached.len(), n, "replies reached {reached:?}");

    let count = |name: &str| total[name].as_u64().unwrap_or_else(|| panic!("no {name}"));
    assert_eq!(count("napt_preserved"), 1, "{total}");
    assert_eq!(count("napt_allocated"), n as u64 - 1, "{total}");
    assert!(count("napt_translated") > 0);
    assert_eq!(count("drop_nat_ports_exhausted"), 0);
    assert_eq!(count("drop_would_leak"), 0);
    println!(
        "{n} UAs: {requests} requests out, external ports {ports:?}, napt_translated {}",
        count("napt_translated")
    );
    let _ = sipnat.stop();
}

#[test]
fn two_uas_on_port_5060_call_at_once() {
    many_uas_on_port_5060("napt2", 2);
}

#[test]
fn ten_uas_on_port_5060_call_at_once() {
    many_uas_on_port_5060("napt10", 10);
}

/// A range of one port: the first UA keeps 5060, the second gets the range's port, the
/// third finds none: its packets are dropped and counted, never sent (not with its own
/// port, not with another UA's).
#[test]
fn exhausted_range_drops_and_counts() {
    let (_s, mut t, sipnat) = crate::gateway_or_skip!("naptx", "port_range = \"20000-20000\"", "");
    let ips = ua_ips(3);
    add_ua_addresses(&t, &ips);
    let (out_cap, _in_cap) = t.capture_both("udp");
    sipp_uas(&mut t.car, CAR_IP, &["-sn", "uas"]);
    let ok = calls_at_once(&t, &ips[..2], 2);
    for (a, code, log) in &ok {
        assert_eq!(*code, 0, "sipp UAC {a}:\n{log}");
    }
    // The third UA: one call, which cannot complete.
    let sf = scenario("uac_napt.xml");
    let out = Command::new("timeout")
        .args(["30", "ip", "netns", "exec", &t.ua.name, "sipp"])
        .args([
            "-sf",
            &sf,
            &format!("{CAR_IP}:5060"),
            "-i",
            &ips[2],
            "-p",
            "5060",
        ])
        .args(["-m", "1", "-timeout", "4s", "-timeout_error", "-nostdin"])
        .args(["-mp", "6000", "-cid_str", "napt-%u-%p"])
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "the third UA's call completed");
    let dropped = sipnat.counter("drop_nat_ports_exhausted");
    assert!(dropped >= 1, "no exhaustion drop counted");
    let outside = out_cap.finish(&t);
    let srcports = tshark_fields(
        &outside,
        &format!("ip.src == {EXT_IP} && udp.dstport == 5060"),
        &["udp.srcport"],
    );
    let ports: BTreeSet<&str> = srcports.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        ports,
        BTreeSet::from(["20000", "5060"]),
        "only the two bound ports leave"
    );
    let third = tshark(&outside, &["-Y", &format!("udp contains \"{}\"", ips[2])]);
    assert!(third.trim().is_empty(), "{third}");
    let invites = tshark_fields(&outside, "sip.Method == \"INVITE\"", &["sip.Call-ID"]);
    let invites: BTreeSet<&str> = invites.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        invites.len(),
        4,
        "two calls each of the two bound UAs, the third's none: {invites:?}"
    );
    println!("exhausted: drop_nat_ports_exhausted {dropped}");
    let _ = sipnat.stop();
}

/// The G.711 capture sipp's Debian package ships (`dpkg -L sip-tester`), for
/// `play_pcap_audio`.
fn sipp_audio_pcap() -> String {
    let out = Command::new("dpkg")
        .args(["-L", "sip-tester"])
        .output()
        .expect("dpkg -L sip-tester");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.ends_with("/g711a.pcap"))
        .expect("sip-tester ships g711a.pcap")
        .to_string()
}

/// `uac_napt.xml` with `extra` after the ACK (in place of its short pause), written to
/// `t`'s scratch folder.
fn uac_scenario(t: &Topo, name: &str, extra: &str, bye: bool) -> String {
    let mut s = std::fs::read_to_string(scenario("uac_napt.xml")).unwrap();
    let pause = "  <pause milliseconds=\"20\"/>\n";
    let i = s.find(pause).expect("the pause after the ACK");
    let tail = if bye {
        s[i + pause.len()..].to_string()
    } else {
        "</scenario>\n".to_string()
    };
    s.truncate(i);
    s.push_str(extra);
    s.push_str(&tail);
    let p = t.dir.path(name);
    std::fs::write(&p, s).unwrap();
    p.display().to_string()
}

/// One sipp UAC per address at the same time running `sf`; all must succeed.
fn run_uacs(t: &Topo, sipnat: &Sipnat, sf: &str, ips: &[String]) {
    let children: Vec<_> = ips
        .iter()
        .map(|a| {
            Command::new("timeout")
                .args(["60", "ip", "netns", "exec", &t.ua.name, "sipp"])
                .args(["-sf", sf, &format!("{CAR_IP}:5060"), "-i", a, "-p", "5060"])
                .args(["-m", "1", "-timeout", "30s", "-mp", "6000"])
                .args(["-cid_str", "napt-%u-%p", "-nostdin"])
                .current_dir(std::env::temp_dir())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run sipp")
        })
        .collect();
    for (a, c) in ips.iter().zip(children) {
        let out = c.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "sipp UAC {a}:\n{}{}\nsipnat log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            sipnat.log_text()
        );
    }
}

fn xdp_counter(st: &serde_json::Value, side: &str, name: &str) -> u64 {
    st["xdp"][side][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no XDP counter {side}/{name} in {}", st["xdp"]))
}

#[test]
fn rtp_of_two_uas_is_translated_by_xdp_both_ways() {
    rtp_of_uas_is_translated_by_xdp_both_ways("naptrtp", 2);
}

#[test]
fn rtp_of_ten_uas_is_translated_by_xdp_both_ways() {
    rtp_of_uas_is_translated_by_xdp_both_ways("naptrtp10", 10);
}

/// `n` UAs on port 5060 with the same RTP port (6000) call at once and play G.711 to a
/// UAS that echoes it: RTP flows both ways through the XDP media NAT (its counters, not
/// the kernel: no kernel NAT is configured), the outside sees only the external address
/// and the media ports sipnat allocated, and the BYE removes each call's binding.
fn rtp_of_uas_is_translated_by_xdp_both_ways(tag: &str, n: usize) {
    let (_s, mut t, sipnat) = crate::gateway_or_skip!(
        tag,
        "port_range = \"20000-29999\"",
        "[media]\nenabled = true\nport_range = \"30000-39999\"\n",
    );
    let ips = ua_ips(n);
    add_ua_addresses(&t, &ips);
    // A veth receives frames redirected to its peer by XDP (ndo_xdp_xmit) only with NAPI
    // on: GRO enables it (a real NIC needs nothing).
    t.ua.exec(&["ethtool", "-K", "ua0", "gro", "on"]);
    t.car.exec(&["ethtool", "-K", "car0", "gro", "on"]);
    let (out_cap, in_cap) = t.capture_both("udp");
    sipp_uas(
        &mut t.car,
        CAR_IP,
        &["-sn", "uas", "-rtp_echo", "-mp", "6000"],
    );
    let play = format!(
        "  <nop>\n    <action>\n      <exec play_pcap_audio=\"{}\"/>\n    </action>\n  </nop>\n  <pause milliseconds=\"2500\"/>\n",
        sipp_audio_pcap()
    );
    let sf = uac_scenario(&t, "uac_rtp.xml", &play, true);
    let before = sipnat.stats();
    run_uacs(&t, &sipnat, &sf, &ips);
    let st = sipnat.stats();
    let (outside, inside) = (out_cap.finish(&t), in_cap.finish(&t));

    // RTP out: from the external address and an allocated even port, one per UA.
    let rtp_out = format!("ip.dst == {CAR_IP} && udp.dstport == 6000");
    let mut out_ports = BTreeSet::new();
    let mut n_out = 0;
    for (src, port) in field_pairs(&outside, &rtp_out, ["ip.src", "udp.srcport"]) {
        assert_eq!(src, EXT_IP, "RTP left from {src}");
        let port: u16 = port.parse().unwrap();
        assert!(
            (30000..=39999).contains(&port) && port.is_multiple_of(2),
            "RTP from port {port}"
        );
        out_ports.insert(port);
        n_out += 1;
    }
    assert_eq!(out_ports.len(), n, "one media port per UA: {out_ports:?}");
    // RTP back: the echo reaches both UAs on the inside, at their own port 6000.
    let rtp_in = format!("ip.src == {CAR_IP} && udp.srcport == 6000");
    let mut reached = BTreeSet::new();
    let mut n_in = 0;
    for (dst, port) in field_pairs(&inside, &rtp_in, ["ip.dst", "udp.dstport"]) {
        assert_eq!(port, "6000", "echo to port {port}");
        reached.insert(dst.to_string());
        n_in += 1;
    }
    assert_eq!(reached.len(), n, "echo reached {reached:?}");
    assert!(
        n_out >= 50 * n && n_in >= 50 * n,
        "RTP out {n_out}, back {n_in}"
    );
    // SIP or RTP.
    assert_no_private_address(&outside);
    // Translated by XDP, both ways.
    let d = |side: &str| {
        xdp_counter(&st, side, "redirect_media") - xdp_counter(&before, side, "redirect_media")
    };
    let (xin, xout) = (d("inside"), d("outside"));
    println!(
        "{n} UAs, RTP: {n_out} out, {n_in} back; XDP redirect_media inside {xin}, outside {xout}"
    );
    assert!(
        xin >= n_out as u64 && xout >= n_in as u64,
        "XDP redirect_media {xin}/{xout}"
    );
    // The BYEs removed every binding (each LINGER_S after its BYE: the media that
    // trails a BYE stays translated).
    await_condition(
        "the ended calls' bindings removed",
        std::time::Duration::from_secs(10),
        || sipnat.stats()["bindings"]["media_live"] == 0,
    );
    let st = sipnat.stats();
    let b = &st["bindings"];
    assert_eq!(b["media_installed"], n, "{b}");
    assert_eq!(b["media_removed"], n, "{b}");
    assert_eq!(b["media_live"], 0, "{b}");
    let flows = sipnat.ctl(&["flows", "--json"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&flows).unwrap();
    assert_eq!(v["media"].as_array().map(Vec::len), Some(0), "{v}");
    assert_eq!(v["sip"].as_array().map(Vec::len), Some(n), "{v}");
    let _ = sipnat.stop();
}

/// A call that never ends (no BYE) and never sends media: its binding is reaped after
/// media.idle_timeout by the control plane, counted; and a media range of one pair is
/// exhausted by a second call at the same time: counted, that call's SDP keeps its port.
#[test]
fn idle_media_binding_is_reaped_and_a_tiny_range_is_exhausted() {
    let (_s, mut t, sipnat) = crate::gateway_or_skip!(
        "naptreap",
        "port_range = \"20000-29999\"",
        "[media]\nenabled = true\nport_range = \"30000-30001\"\nidle_timeout = 2\n",
    );
    let ips = ua_ips(2);
    add_ua_addresses(&t, &ips);
    sipp_uas(&mut t.car, CAR_IP, &["-sn", "uas"]);
    let sf = uac_scenario(
        &t,
        "uac_nobye.xml",
        "  <pause milliseconds=\"20\"/>\n",
        false,
    );
    run_uacs(&t, &sipnat, &sf, &ips[..1]);
    let b = sipnat.stats()["bindings"].clone();
    assert_eq!(
        (b["media_installed"].as_u64(), b["media_live"].as_u64()),
        (Some(1), Some(1)),
        "{b}"
    );
    let flows = sipnat.ctl(&["flows", "--addr", &ips[0]]).unwrap();
    assert!(flows.contains(&format!("{}:6000", ips[0])), "{flows}");
    // The second UA while the pair is taken: exhausted, counted.
    run_uacs(&t, &sipnat, &sf, &ips[1..]);
    // (Once per INVITE it sent: a retransmission asks again.)
    assert!(sipnat.stats()["bindings"]["media_exhausted"].as_u64() >= Some(1));
    await_condition(
        "the idle binding reaped",
        std::time::Duration::from_secs(20),
        || sipnat.stats()["bindings"]["media_reaped"] == 1,
    );
    let b = sipnat.stats()["bindings"].clone();
    assert_eq!(b["media_live"], 0, "{b}");
    assert_eq!(b["media_removed"], 1, "{b}");
    let _ = sipnat.stop();
}

/// SIP text from `host:port` (Via, Contact) with `method` and `extra` headers.
fn request(method: &str, host: &str, port: u16, call: &str, extra: &str) -> String {
    format!(
        "{method} sip:registrar@{CAR_IP} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{port};rport;branch=z9hG4bK{call}\r\n\
         From: <sip:u@example.com>;tag=1\r\nTo: <sip:u@example.com>\r\nCall-ID: {call}\r\nCSeq: 1 {method}\r\n\
         Contact: <sip:u@{host}:{port}>\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

/// Registration expiry frees the SIP port: with a range of one port and a 2 s idle
/// timeout, a UA whose REGISTER the registrar accepts for 4 s keeps its port past the
/// idle timeout (another endpoint that needs it is dropped and counted), and loses it when
/// the registration ends (then the other endpoint gets it).
#[test]
fn registration_keeps_the_port_until_it_expires() {
    let (_s, t, sipnat) = crate::gateway_or_skip!(
        "naptreg",
        "port_range = \"20000-20000\"\nflow_idle_timeout = 2",
        "",
    );
    add_ua_addresses(&t, &ua_ips(3));
    let sock = common::topo::udp_socket_in;
    let car = sock(&t.car.name, (CAR_IP, 5060));
    car.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let a = sock(&t.ua.name, ("10.0.0.2", 5060));
    let b = sock(&t.ua.name, ("10.0.0.3", 5060));
    b.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let c = sock(&t.ua.name, ("10.0.0.4", 20000));
    let mut buf = vec![0u8; 4096];
    let mut at_car = |what: &str| {
        let (n, from) = car
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        (from, String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    // A takes 5060, B registers and gets the range's one port.
    a.send_to(
        request("OPTIONS", "10.0.0.2", 5060, "a1", "").as_bytes(),
        (CAR_IP, 5060),
    )
    .unwrap();
    assert_eq!(at_car("A").0, format!("{EXT_IP}:5060").parse().unwrap());
    b.send_to(
        request("REGISTER", "10.0.0.3", 5060, "b1", "Expires: 4\r\n").as_bytes(),
        (CAR_IP, 5060),
    )
    .unwrap();
    let (from, text) = at_car("B's REGISTER");
    assert_eq!(from, format!("{EXT_IP}:20000").parse().unwrap());
    common::assert_contains(&text, &format!("Contact: <sip:u@{EXT_IP}:20000>"));
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {EXT_IP}:20000;rport=20000;received={EXT_IP};branch=z9hG4bKb1\r\n\
         From: <sip:u@example.com>;tag=1\r\nTo: <sip:u@example.com>;tag=2\r\nCall-ID: b1\r\nCSeq: 1 REGISTER\r\n\
         Contact: <sip:u@{EXT_IP}:20000>;expires=4\r\nContent-Length: 0\r\n\r\n"
    );
    car.send_to(ok.as_bytes(), from).unwrap();
    let mut rb = vec![0u8; 4096];
    let n = b.recv(&mut rb).expect("B's 200");
    let back = String::from_utf8_lossy(&rb[..n]).into_owned();
    assert!(
        back.contains("Contact: <sip:u@10.0.0.3:5060>;expires=4"),
        "{back}"
    );
    assert!(back.contains("rport=5060;received=10.0.0.3"), "{back}");
    let exhausted = || sipnat.counter("drop_nat_ports_exhausted");
    let try_c = |n: u32| {
        c.send_to(
            request("OPTIONS", "10.0.0.4", 20000, &format!("c{n}"), "").as_bytes(),
            (CAR_IP, 5060),
        )
        .unwrap();
    };
    // C wants port 20000 (its own, and the range's only one): taken by B.
    try_c(1);
    await_condition("C dropped", std::time::Duration::from_secs(5), || {
        exhausted() == 1
    });
    // Past the idle timeout A's binding is gone, B's (registered) is not: still taken.
    let bindings = |who: &str| sipnat.ctl(&["flows", "--addr", who]).unwrap();
    await_condition(
        "A's binding idle",
        std::time::Duration::from_secs(10),
        || !bindings("10.0.0.2").contains("10.0.0.2:5060"),
    );
    assert!(bindings("10.0.0.3").contains(&format!("{EXT_IP}:20000")));
    try_c(2);
    await_condition("C dropped again", std::time::Duration::from_secs(5), || {
        exhausted() == 2
    });
    // The registration ends: the port is free, C gets it.
    await_condition(
        "B's registration over",
        std::time::Duration::from_secs(10),
        || !bindings("10.0.0.3").contains("10.0.0.3:5060"),
    );
    try_c(3);
    let (from, text) = at_car("C after B's registration");
    assert_eq!(from, format!("{EXT_IP}:20000").parse().unwrap(), "{text}");
    assert!(text.contains("Call-ID: c3"), "{text}");
    assert_eq!(exhausted(), 2);
    let _ = sipnat.stop();
}
