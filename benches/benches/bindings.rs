//! Micro benchmarks of the binding tables a new call touches: the NAPT table
//! (`sipnat::nat::napt`, one binding per new SIP endpoint) and the media registry
//! (`sipnat::nat::media`, one RTP/RTCP pair per new call, here with an in-memory sink:
//! the daemon's sink adds the `bpf(2)` map updates on top). The end-to-end cost of a new
//! binding, with everything around it, is `cargo xtask bench --e2e --napt`.
//!
//! Inserts are timed with `iter_custom` over blocks of fresh endpoints in fresh tables
//! (the tables are built untimed), so every timed call makes a new binding:
//! - `Napt/existing`: the per-packet path of a bound endpoint (lookup and refresh);
//! - `Napt/new_preserved`: a new endpoint whose port is free (one address, distinct ports);
//! - `Napt/new_allocated`: a new host on port 5060 that collides and takes a port of the
//!   range (distinct addresses, one port);
//! - `Media/bind_new_then_end`: a new call's media pair bound, then its dialog ended;
//! - `Media/bind_existing`: a retransmitted SDP finding its binding.

use std::{
    hint::black_box,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use criterion::Criterion;
use sipnat::nat::{
    media::{call_hash, InMemoryBindings, MediaRegistry},
    napt::{Bound, NaptTable, PortRange},
};

const EXT: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
/// Endpoints per fresh table.
const BLOCK: u32 = 20_000;

fn host(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a58_0000 + 256 + i))
}

/// Times `iters` calls of `f(table, i)`, `BLOCK` per fresh table made by `make`.
fn blocks<T>(iters: u64, make: impl Fn() -> T, f: impl Fn(&T, u32)) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(u64::from(BLOCK)) as u32;
        let t = make();
        let start = Instant::now();
        for i in 0..n {
            f(&t, i);
        }
        total += start.elapsed();
        left -= u64::from(n);
    }
    total
}

fn napt(c: &mut Criterion) {
    let range = PortRange::parse("1024-59999").unwrap();
    let mut g = c.benchmark_group("Napt");
    let table = || NaptTable::new(65_536, 300);
    {
        let t = table();
        let a = host(1);
        assert!(matches!(
            t.outbound(EXT, a, 5060, range, 1),
            Bound::Preserved(5060)
        ));
        g.bench_function("existing", |b| {
            b.iter(|| black_box(t.outbound(EXT, black_box(a), 5060, range, 1)))
        });
    }
    g.bench_function("new_preserved", |b| {
        b.iter_custom(|iters| {
            blocks(iters, table, |t, i| {
                let r = t.outbound(EXT, host(0), 5060 + i as u16, range, 1);
                debug_assert!(matches!(r, Bound::Preserved(_)));
                black_box(r);
            })
        })
    });
    g.bench_function("new_allocated", |b| {
        b.iter_custom(|iters| {
            blocks(
                iters,
                || {
                    let t = table();
                    // 5060 taken: every host after this one allocates.
                    t.outbound(EXT, host(BLOCK + 1), 5060, range, 1);
                    t
                },
                |t, i| {
                    let r = t.outbound(EXT, host(i), 5060, range, 1);
                    debug_assert!(matches!(r, Bound::Allocated(_)));
                    black_box(r);
                },
            )
        })
    });
    g.finish();
}

fn media(c: &mut Criterion) {
    let range = PortRange::parse("30000-39999").unwrap();
    let mut g = c.benchmark_group("Media");
    let sink = InMemoryBindings::default();
    let rtp = |i: u32| SocketAddr::new(host(i), 20_000);
    g.bench_function("bind_new_then_end", |b| {
        b.iter_custom(|iters| {
            blocks(
                iters,
                || MediaRegistry::new(range),
                |r, i| {
                    let call = call_hash(&i.to_be_bytes());
                    let gen = r.begin_sdp();
                    black_box(r.bind(call, gen, rtp(i), EXT, &sink, 1));
                    r.end_call(call, &sink);
                },
            )
        })
    });
    let r = MediaRegistry::new(range);
    let call = call_hash(b"bench@x");
    let gen = r.begin_sdp();
    assert!(r.bind(call, gen, rtp(0), EXT, &sink, 1).is_some());
    g.bench_function("bind_existing", |b| {
        b.iter(|| black_box(r.bind(call, gen, black_box(rtp(0)), EXT, &sink, 1)))
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    napt(&mut c);
    media(&mut c);
    c.final_summary();
}
