//! `sipnat rewrite --pcap`: the offline tool runs the daemon's per-packet pipeline, so it
//! touches only what the daemon would see (UDP to or from a SIP port, fragments) and
//! leaves everything else byte for byte as it was.

mod common;

use std::process::Command;

use pcap_file::pcap::PcapReader;

fn packets(file: &std::path::Path) -> Vec<Vec<u8>> {
    let f = std::fs::File::open(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut r = PcapReader::new(f).unwrap();
    let mut v = Vec::new();
    while let Some(p) = r.next_packet() {
        v.push(p.unwrap().data.into_owned());
    }
    v
}

/// UDP source and destination ports of an Ethernet + IPv4 frame.
fn udp_ports(f: &[u8]) -> Option<(u16, u16)> {
    if f.len() < 14 + 20 + 8 || f[12..14] != [0x08, 0x00] || f[14 + 9] != 17 {
        return None;
    }
    let hl = usize::from(f[14] & 0x0f) * 4;
    if u16::from_be_bytes([f[20], f[21]]) & 0x3fff != 0 {
        return None; // a fragment
    }
    let u = &f[14 + hl..];
    Some((
        u16::from_be_bytes([u[0], u[1]]),
        u16::from_be_bytes([u[2], u[3]]),
    ))
}

#[test]
fn rtp_and_other_ports_come_out_byte_identical() {
    let input = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/corpus/pcap/aaa.pcap"
    ));
    let dir = std::env::temp_dir().join(format!("sipnat-offline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("aaa-out.pcap");
    let res = Command::new(env!("CARGO_BIN_EXE_sipnat"))
        .args([
            "rewrite",
            "--internal",
            "192.168.1.0/24",
            "--external",
            "203.0.113.10",
            "--pcap",
        ])
        .arg(input)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&res.stdout).into_owned();
    assert!(
        res.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&res.stderr)
    );
    println!("{stdout}");
    let (a, b) = (packets(input), packets(&out));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        a.len(),
        b.len(),
        "aaa.pcap has no fragments: one packet out per packet in"
    );
    let (mut other, mut rtp, mut sip_changed) = (0, 0, 0);
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        match udp_ports(x) {
            Some((s, d)) if s == 5060 || d == 5060 => {
                if x != y {
                    sip_changed += 1;
                    let leak = common::sipcheck::names_address(y, "192.168.1.2");
                    assert!(
                        !leak,
                        "packet {i}: a private address is left in rewritten SIP"
                    );
                }
            }
            ports => {
                if ports.is_some_and(|(s, _)| s == 30000) {
                    rtp += 1;
                }
                other += 1;
                assert!(
                    x == y,
                    "packet {i} ({ports:?}) is not on a SIP port but changed"
                );
            }
        }
    }
    assert!(
        rtp >= 9,
        "the capture's RTP from port 30000 was checked ({rtp})"
    );
    assert!(other > 500, "{other} packets off the SIP port checked");
    assert!(sip_changed >= 47, "{sip_changed} SIP packets rewritten");
}

#[test]
fn message_mode_uses_src_for_the_rule() {
    // Two rules with their own external addresses: --src picks the rule.
    let dir = std::env::temp_dir().join(format!("sipnat-offline-msg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        "[interfaces]\ninside = \"a\"\noutside = \"b\"\n\n[nat]\nexternal_ip = \"203.0.113.10\"\n\n\
         [[nat.rule]]\ninternal = \"10.0.0.0/24\"\n\n\
         [[nat.rule]]\ninternal = \"10.0.1.0/24\"\nexternal = \"198.51.100.77\"\n",
    )
    .unwrap();
    let msg = dir.join("m.sip");
    std::fs::write(
        &msg,
        "OPTIONS sip:x@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.1.5:5060;branch=z9hG4bK1\r\n\
         Contact: <sip:a@10.0.1.5:5060>\r\nContent-Length: 0\r\n\r\n",
    )
    .unwrap();
    let run = |src: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_sipnat"))
            .args(["rewrite", "-c"])
            .arg(&cfg)
            .args(["--src", src, "--message"])
            .arg(&msg)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let by_rule = run("10.0.1.5");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        by_rule.contains("+Via: SIP/2.0/UDP 198.51.100.77:5060"),
        "{by_rule}"
    );
}
