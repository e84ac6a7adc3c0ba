//! Runs the carrier INVITE+SDP frame (`carrier-invite-sdp.sip` of the bench inputs, from
//! 10.88.0.2:5060 to the carrier) through a worker's whole per-packet pipeline in a loop:
//! steering checks, flow table, SIP/SDP rewrite, media bindings, checksums, TTL and the
//! next hop's addresses. For instruction counts (`cargo xtask bench --instructions` runs
//! it under callgrind) and profilers:
//!
//! `cargo run --release -p benches --example pipeline_loop -- N [plain|media|copy]`
//!
//! `plain`: the SIP bench's daemon settings (`[media]` off); `media`: media NAT on (the
//! daemon's default), each frame binding its RTP/RTCP pair in the registry (found again
//! from the second frame on, as a retransmission or a re-INVITE of the same call does);
//! `copy`: only the restore of the frame each iteration does, so that the pipeline's own
//! cost is the difference.

use std::hint::black_box;

use sipnat::{
    datapath::{
        pipeline::{Egress, Env, MediaEnv, Pipeline, Route, Side},
        stats::Batch,
        DataplaneSnapshot,
    },
    ip::reasm::ReasmLimits,
    nat::{
        flow::FlowTable,
        media::{InMemoryBindings, MediaRegistry},
        napt::{NaptTable, PortRange},
        ExternalAddrs, Net, RewriteConfig,
    },
    wire::Link,
};

/// Every destination on a directly attached, resolved neighbour.
struct Direct;

impl Egress for Direct {
    fn route(&self, _: Side, _: std::net::IpAddr) -> Route {
        Route::Direct {
            macs: Some(([2, 0, 0, 0, 0, 9], [2, 0, 0, 0, 0, 8])),
            mtu: 1500,
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let mode = args.next().unwrap_or_else(|| "plain".into());
    let media = match mode.as_str() {
        "plain" | "copy" => false,
        "media" => true,
        m => panic!("mode {m:?}: plain, media or copy"),
    };
    let dir = std::env::var("SIPNAT_BENCH_INPUTS").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/bench-inputs").into()
    });
    let path = format!("{dir}/carrier-invite-sdp.sip");
    let msg = std::fs::read(&path).unwrap_or_else(|e| panic!("bench input {path}: {e}"));
    let mut frame = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 88, 0, 2], [198, 51, 100, 2], 64)
        .udp(5060, 5060)
        .write(&mut frame, &msg)
        .expect("a frame");
    let mut cfg = RewriteConfig::single(Net::parse("10.88.0.0/24").expect("a net"));
    cfg.from_to = true;
    let dataplane = DataplaneSnapshot::new(
        cfg,
        ExternalAddrs::from_ip("198.51.100.1".parse().expect("an address")),
        &[5060],
    )
    .with_media(media);
    let flows = FlowTable::new(4096, 300);
    let napt = NaptTable::new(4096, 300);
    let registry = MediaRegistry::new(PortRange {
        first: 30_000,
        last: 39_999,
    });
    let sink = InMemoryBindings::default();
    let env = Env {
        dataplane: &dataplane,
        flows: &flows,
        napt: &napt,
        media: media.then_some(MediaEnv {
            registry: &registry,
            sink: &sink,
        }),
        egress: &Direct,
        link: Link::Ethernet,
        now_ms: 1_000,
    };
    let mut pipe = Pipeline::new(ReasmLimits::default(), 7);
    let mut batch = Batch::default();
    let mut buf = vec![0u8; 4096];
    for _ in 0..n {
        buf[..frame.len()].copy_from_slice(&frame);
        if mode == "copy" {
            black_box(&mut buf);
            continue;
        }
        let a = pipe.process(
            &env,
            Side::Inside,
            black_box(&mut buf),
            frame.len(),
            &mut batch,
        );
        assert!(
            matches!(a, sipnat::datapath::pipeline::Action::Tx { .. }),
            "{a:?}"
        );
    }
    if media {
        assert_eq!(registry.live(), 1, "one RTP/RTCP pair bound");
    }
}
