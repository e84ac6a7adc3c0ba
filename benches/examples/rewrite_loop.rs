//! Runs one bench input through the rewriter in a loop, for profilers and instruction
//! counts (`valgrind --tool=callgrind`, `perf record`; `cargo xtask bench --instructions`
//! runs it under callgrind for every input and both paths):
//!
//! `cargo run --release -p benches --example rewrite_loop -- INPUT N [fast|reference|copy]`
//!
//! INPUT: `header` (HeaderRewriting), `sdp` (SDPRewriting), `concurrent` (Concurrent's
//! message, one thread), `fastpath` (rewriting disabled), `private` (PrivateIPDetection:
//! classify the six addresses; `rewrite::classify`), `memory` (MemoryEfficiency), `carrier`
//! (CarrierInviteSdp), `packet` (CarrierInviteSdpPacket: the whole frame). Each of the N
//! iterations restores the input (a copy) and rewrites it once; `copy` only restores, so
//! that the rewrite's own cost is the difference. `fast` (default) uses the fast path
//! with its gate built once, as a worker's snapshot does; `reference` the reference
//! rewriter. Instruction counts from callgrind are repeatable whatever the machine's load.

use std::{hint::black_box, net::IpAddr};

use sipnat::{
    nat::{rules::LocalV4, Direction, ExternalAddrs, L3Action, Net, RewriteConfig},
    rewrite::{
        classify, edits::Edits, packet::rewrite_packet_gated, reference, rewrite_message_in,
        Context, Gate,
    },
    wire::{self, Link},
};

fn input(name: &str) -> Vec<u8> {
    let dir = std::env::var("SIPNAT_BENCH_INPUTS").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/bench-inputs").into()
    });
    let path = format!("{dir}/{name}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("bench input {path}: {e}"))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Fast,
    Reference,
    Copy,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "carrier".into());
    let n: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let mode = match args.next().as_deref() {
        None | Some("fast") => Mode::Fast,
        Some("reference") => Mode::Reference,
        Some("copy") => Mode::Copy,
        Some(m) => panic!("mode {m:?}: fast, reference or copy"),
    };
    if which == "private" {
        let file = String::from_utf8(input("private-ip-detection.txt")).expect("UTF-8");
        let addrs: Vec<&[u8]> = file
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(a, _)| a.as_bytes()))
            .collect();
        // The criterion rows' op: fast with the IPv4 local networks compiled once (as
        // the snapshot does), reference with the plain parse and `is_local`.
        let cfg = RewriteConfig::default();
        let local = LocalV4::of(&cfg);
        for _ in 0..n {
            let mut acc = 0u32;
            for a in black_box(&addrs[..]) {
                let c = match mode {
                    Mode::Fast => classify::classify(black_box(&cfg), &local, a),
                    Mode::Reference => reference::classify(black_box(&cfg), a),
                    Mode::Copy => continue,
                };
                acc = acc << 2 | c as u32;
            }
            black_box(acc);
        }
        return;
    }
    let (file, net, ext, rr, from_to, enabled) = match which.as_str() {
        "header" | "concurrent" | "fastpath" => (
            match which.as_str() {
                "header" => "header-rewriting.sip",
                "concurrent" => "concurrent.sip",
                _ => "fast-path.sip",
            },
            "192.168.1.100/32",
            "203.0.113.10",
            true,
            false,
            which != "fastpath",
        ),
        "sdp" => (
            "sdp-rewriting.sip",
            "192.168.1.100/32",
            "203.0.113.10",
            false,
            false,
            true,
        ),
        "memory" => (
            "memory-efficiency.sip",
            "192.168.1.0/24",
            "203.0.113.10",
            false,
            false,
            true,
        ),
        "carrier" | "packet" => (
            "carrier-invite-sdp.sip",
            "10.88.0.0/24",
            "198.51.100.1",
            false,
            true,
            true,
        ),
        other => {
            panic!("input {other:?}: header sdp concurrent fastpath private memory carrier packet")
        }
    };
    let mut cfg = RewriteConfig::single(Net::parse(net).unwrap());
    cfg.record_route = rr;
    cfg.from_to = from_to;
    cfg.enabled = enabled;
    let ext_ip: IpAddr = ext.parse().unwrap();
    let ctx = Context {
        config: &cfg,
        external: ExternalAddrs::from_ip(ext_ip),
        direction: Direction::Outbound,
        internal: None,
        local_port: None,
        napt: None,
        media: None,
    };
    // Built once, as the worker's snapshot does.
    let gate = Gate::of(&ctx);
    let mut edits = Edits::new();
    let msg = input(file);
    if which == "packet" {
        let mut frame = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 88, 0, 2], [198, 51, 100, 2], 64)
            .udp(5060, 5060)
            .write(&mut frame, &msg)
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let l3 = L3Action {
            src: Some(ext_ip),
            dst: None,
        };
        for _ in 0..n {
            buf[..frame.len()].copy_from_slice(&frame);
            if mode == Mode::Copy {
                black_box(&mut buf);
                continue;
            }
            let layout = wire::parse(black_box(&buf[..frame.len()]), Link::Ethernet).unwrap();
            let r = match mode {
                Mode::Fast => rewrite_packet_gated(&mut buf, &layout, &ctx, l3, &gate, &mut edits),
                _ => reference::rewrite_packet_in(&mut buf, &layout, &ctx, l3, &mut edits),
            };
            black_box(r.unwrap().len);
        }
        return;
    }
    let mut buf = vec![0u8; msg.len() + 1024];
    for _ in 0..n {
        buf[..msg.len()].copy_from_slice(&msg);
        let len = black_box(msg.len());
        let r = match mode {
            Mode::Copy => {
                black_box(&mut buf);
                continue;
            }
            Mode::Fast => rewrite_message_in(&mut buf, len, black_box(&ctx), &gate, &mut edits),
            Mode::Reference => {
                reference::rewrite_message_in(&mut buf, len, black_box(&ctx), &mut edits)
            }
        };
        black_box(r.len);
    }
}
