//! Runs one rewrite in a loop, for profilers (`valgrind --tool=callgrind`, `perf record`):
//! `cargo run --release -p benches --example rewrite_loop -- carrier|header|sdp|packet N`.
//! Instruction counts from callgrind are repeatable whatever the machine's load.

use std::{hint::black_box, net::IpAddr};

use sipnat::{
    nat::{Direction, ExternalAddrs, L3Action, Net, RewriteConfig},
    rewrite::{packet::rewrite_packet, rewrite_message, Context},
    wire::{self, Link},
};

fn input(name: &str) -> Vec<u8> {
    let dir = std::env::var("SIPNAT_BENCH_INPUTS").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/bench-inputs").into()
    });
    let path = format!("{dir}/{name}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("bench input {path}: {e}"))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "carrier".into());
    let n: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let (file, net, ext, rr, from_to) = match which.as_str() {
        "header" => (
            "header-rewriting.sip",
            "192.168.1.100/32",
            "203.0.113.10",
            true,
            false,
        ),
        "sdp" => (
            "sdp-rewriting.sip",
            "192.168.1.100/32",
            "203.0.113.10",
            false,
            false,
        ),
        _ => (
            "carrier-invite-sdp.sip",
            "10.88.0.0/24",
            "198.51.100.1",
            false,
            true,
        ),
    };
    let mut cfg = RewriteConfig::single(Net::parse(net).unwrap());
    cfg.record_route = rr;
    cfg.from_to = from_to;
    let ext_ip: IpAddr = ext.parse().unwrap();
    let ctx = Context {
        config: &cfg,
        external: ExternalAddrs::from_ip(ext_ip),
        direction: Direction::Outbound,
        internal: None,
        local_port: None,
    };
    let msg = input(file);
    if which == "packet" {
        let mut frame = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 88, 0, 2], [198, 51, 100, 2], 64)
            .udp(5060, 5060)
            .write(&mut frame, &msg)
            .unwrap();
        let mut buf = vec![0u8; 4096];
        for _ in 0..n {
            buf[..frame.len()].copy_from_slice(&frame);
            let layout = wire::parse(&buf[..frame.len()], Link::Ethernet).unwrap();
            black_box(
                rewrite_packet(
                    &mut buf,
                    &layout,
                    &ctx,
                    L3Action {
                        src: Some(ext_ip),
                        dst: None,
                    },
                )
                .unwrap(),
            );
        }
        return;
    }
    let mut buf = vec![0u8; msg.len() + 1024];
    for _ in 0..n {
        buf[..msg.len()].copy_from_slice(&msg);
        black_box(rewrite_message(&mut buf, msg.len(), black_box(&ctx)));
    }
}
