//! Multi-queue workers on veth pairs with two RX/TX queues per end: `queues = "all"` gives
//! one worker per queue, each pinned to its own CPU; traffic spread over both queues is
//! served on both (`pass_no_socket` stays 0); one flow's SIP is rewritten the same and
//! shares one flow-table entry whichever queue carries it, out and back; `sipnat status`
//! lists the workers with their queues and CPUs. `two_workers_against_one` measures the
//! delivered rate of one worker (one queue) against two (two queues) in one run and prints
//! it (docs/deploy.md, "Multi-queue NICs": the numbers and this command).

mod common;

use std::{collections::BTreeSet, process::Command};

use serde_json::Value;

use common::topo::{link_stat, sipnat_bin, Topo, CAR_IP, EXT_IP, UA_IP};

/// `sipnat loadtest` from the UA through the gateway, verified on car0 (all of `rx_queues`).
fn loadtest(t: &Topo, rx_queues: &str, args: &str) -> Value {
    let args = format!("--rx-queues {rx_queues} {args}");
    common::json_stdout(&t.loadtest([UA_IP, CAR_IP, EXT_IP], &args))
}

/// A worker counter per queue.
fn per_queue(stats: &Value, counter: &str) -> Vec<(u64, u64)> {
    stats["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .map(|w| {
            (
                common::count(w, "queue"),
                common::count(&w["counters"], counter),
            )
        })
        .collect()
}

fn queue_counter(stats: &Value, queue: u64, counter: &str) -> u64 {
    per_queue(stats, counter)
        .into_iter()
        .find(|(q, _)| *q == queue)
        .unwrap_or_else(|| panic!("no worker for queue {queue}"))
        .1
}

fn rx_queue_count(t: &Topo, ns: &common::netns::Netns, ifname: &str) -> usize {
    let _ = t;
    let out = ns.exec(&["ls", &format!("/sys/class/net/{ifname}/queues")]);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|e| e.starts_with("rx-"))
        .count()
}

/// The CPUs a thread of `pid` named `comm` may run on (its affinity list).
fn thread_affinity(pid: u32, comm: &str) -> Option<String> {
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let p = e.path();
        if std::fs::read_to_string(p.join("comm")).ok()?.trim() == comm {
            let status = std::fs::read_to_string(p.join("status")).ok()?;
            return status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|v| v.trim().to_string());
        }
    }
    None
}

#[test]
fn multi_queue_workers_serve_every_queue_and_agree_on_flows() {
    crate::privileged_or_skip!();
    let _s = common::serial();
    let t = Topo::with_queues("mq", 2);
    // Equal queue counts on both interfaces: "all" = queues 0 and 1.
    assert_eq!(rx_queue_count(&t, &t.gw, "gwin"), 2);
    assert_eq!(rx_queue_count(&t, &t.gw, "gwout"), 2);
    let cfg = t.config("gw", "", "");
    let sipnat = t.start_sipnat(&cfg);

    // Status: one worker per queue, each on its own CPU, pinned there.
    let status: Value = serde_json::from_str(&sipnat.ctl(&["status", "--json"]).unwrap()).unwrap();
    let workers = status["workers"].as_array().expect("workers");
    let queues: BTreeSet<u64> = workers.iter().map(|w| common::count(w, "queue")).collect();
    assert_eq!(queues, BTreeSet::from([0, 1]), "{status:#}");
    let cpus: BTreeSet<u64> = workers.iter().map(|w| common::count(w, "cpu")).collect();
    let allowed = sipnat::sys::allowed_cpus();
    if allowed.len() >= 2 {
        assert_eq!(cpus.len(), 2, "one CPU per worker: {status:#}");
    }
    for w in workers {
        let (q, cpu) = (common::count(w, "queue"), common::count(w, "cpu"));
        assert_eq!(
            thread_affinity(sipnat.pid(), &format!("sipnat-q{q}")),
            Some(cpu.to_string()),
            "worker q{q} pinned to CPU {cpu}"
        );
    }
    let text = sipnat.ctl(&["status"]).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("workers:"))
        .unwrap_or_else(|| panic!("no workers line:\n{text}"));
    assert!(
        line.starts_with("workers:   2 (") && line.contains("q0 cpu") && line.contains("q1 cpu"),
        "{line}"
    );

    // Spread: one generator thread (AF_XDP socket) per queue, 64 flows, 2 s.
    let r = loadtest(
        &t,
        "0,1",
        "--queues 0,1 --rate 20000 --duration 2 --flows 64",
    );
    let (sent, verified) = (common::count(&r, "sent"), common::count(&r, "verified"));
    eprintln!("spread over 2 queues: sent {sent}, verified {verified}");
    assert_eq!(common::count(&r, "incorrect"), 0, "{r:#}");
    assert!(sent >= 20_000 && verified > sent / 2, "{r:#}");
    let stats = sipnat.stats();
    for (q, rx) in per_queue(&stats, "rx_inside") {
        assert!(
            rx >= 2_000,
            "queue {q} received {rx} frames only: {stats:#}"
        );
    }
    for (q, rw) in per_queue(&stats, "sip_rewritten") {
        assert!(rw >= 2_000, "queue {q} rewrote {rw} messages only");
    }
    for side in ["inside", "outside"] {
        assert_eq!(
            common::count(&stats["xdp"][side], "pass_no_socket"),
            0,
            "a queue on {side} had no worker: {:#}",
            stats["xdp"]
        );
    }
    assert!(common::count(&stats["xdp"]["inside"], "redirect_sip") >= verified);

    // One flow (source port 6000), first on queue 0, then on queue 1: both workers
    // rewrite it correctly and share its one flow-table entry.
    let before = sipnat.stats();
    for q in ["0", "1"] {
        let r = loadtest(
            &t,
            "0,1",
            &format!("--queues {q} --flows 1 --src-port 6000 --count 300 --rate 3000"),
        );
        assert_eq!(common::count(&r, "sent"), 300, "{r:#}");
        assert_eq!(common::count(&r, "incorrect"), 0, "queue {q}: {r:#}");
        assert!(common::count(&r, "verified") >= 290, "queue {q}: {r:#}");
    }
    let after = sipnat.stats();
    for q in [0, 1] {
        let d = queue_counter(&after, q, "rx_inside") - queue_counter(&before, q, "rx_inside");
        assert!(d >= 300, "queue {q} carried {d} of the flow's packets");
    }
    let delta = |c: &str| common::count(&after["total"], c) - common::count(&before["total"], c);
    assert_eq!(
        delta("flow_inserted"),
        1,
        "one flow, one entry whatever the queue"
    );
    assert!(delta("flow_refreshed") >= 590);
    assert_eq!(delta("flow_collision"), 0);

    // Replies to it from the carrier, on each queue of gwout: either worker finds the
    // entry the other may have written and maps them back to the UA.
    for q in [0u64, 1] {
        let before = sipnat.stats();
        let ua_rx = link_stat(&t.ua, "ua0", "rx", "packets");
        let out = Command::new("ip")
            .args(["netns", "exec", &t.car.name, sipnat_bin(), "loadtest"])
            .args(["--interface", "car0", "--queues", &q.to_string()])
            .args(["--src-ip", CAR_IP, "--dst-ip", EXT_IP])
            .args(["--src-port", "5060", "--dst-port", "6000"])
            .args(["--template", "200ok", "--count", "200", "--rate", "2000"])
            .args(["--json", "--no-progress"])
            .output()
            .unwrap();
        let r = common::json_stdout(&out);
        assert_eq!(common::count(&r, "sent"), 200, "{r:#}");
        let after = sipnat.stats();
        let hits = queue_counter(&after, q, "flow_hit") - queue_counter(&before, q, "flow_hit");
        assert!(hits >= 195, "queue {q}: {hits} flow hits for 200 replies");
        assert_eq!(
            common::count(&after["total"], "slow_inbound_no_mapping"),
            common::count(&before["total"], "slow_inbound_no_mapping"),
            "queue {q}: replies without a mapping"
        );
        let got = link_stat(&t.ua, "ua0", "rx", "packets") - ua_rx;
        assert!(got >= 195, "queue {q}: the UA got {got} of 200 replies");
        assert_eq!(common::count(&after["xdp"]["outside"], "pass_no_socket"), 0);
    }
    assert_eq!(sipnat.stop(), Some(0));
}

/// Delivered rate and loss at fixed offered rates: one worker on a one-queue topology
/// against two workers on a two-queue one (one generator thread per queue, the receiver
/// on every queue), in one run, everything sharing this machine's CPUs (generator threads,
/// receiver, workers, the veths' softirqs). Prints a table; asserts only that every run is
/// correct and every queue served.
#[test]
fn two_workers_against_one() {
    crate::privileged_or_skip!();
    let _s = common::serial();
    let mut rows = Vec::new();
    for queues in [1u32, 2] {
        let t = Topo::with_queues(&format!("mqb{queues}"), queues);
        let cfg = t.config("gw", "", "");
        let sipnat = t.start_sipnat(&cfg);
        let list = (0..queues)
            .map(|q| q.to_string())
            .collect::<Vec<_>>()
            .join(",");
        for rate in ["50000", "100000", "200000"] {
            let before = sipnat.stats();
            let r = loadtest(
                &t,
                &list,
                &format!("--queues {list} --rate {rate} --duration 2 --flows 256"),
            );
            assert_eq!(common::count(&r, "incorrect"), 0, "{r:#}");
            assert!(common::count(&r, "verified") > 0, "{r:#}");
            let after = sipnat.stats();
            assert_eq!(after["workers"].as_array().unwrap().len(), queues as usize);
            assert_eq!(common::count(&after["xdp"]["inside"], "pass_no_socket"), 0);
            let d = |side: &str, c: &str| {
                common::count(&after["xdp"][side], c) - common::count(&before["xdp"][side], c)
            };
            let rx: u64 = per_queue(&after, "rx_inside")
                .iter()
                .map(|x| x.1)
                .sum::<u64>()
                - per_queue(&before, "rx_inside")
                    .iter()
                    .map(|x| x.1)
                    .sum::<u64>();
            rows.push(format!(
                "| {queues} | {rate} | {:.0} | {:.0} | {:.2} % | {} | {} | {} |",
                r["offered_pps"].as_f64().unwrap(),
                r["delivered_pps"].as_f64().unwrap(),
                r["loss_pct"].as_f64().unwrap(),
                common::count(&r["latency_ns"], "p50") / 1000,
                common::count(&r["latency_ns"], "p99") / 1000,
                d("inside", "redirect_sip").saturating_sub(rx),
            ));
        }
        assert_eq!(sipnat.stop(), Some(0));
    }
    eprintln!(
        "\n| workers (= queues = generator threads) | target pps | offered pps | delivered pps | \
         loss | p50 µs | p99 µs | redirected, not read by a worker |\n|---|---|---|---|---|---|---|---|"
    );
    for r in rows {
        eprintln!("{r}");
    }
}
