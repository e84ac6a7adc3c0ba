//! `sipnat loadtest` end to end: the generator in the UA namespace sends through a real
//! sipnat daemon in the gateway namespace, the verifying receiver sits on the carrier's
//! interface (its thread enters the carrier namespace). Short and rate-limited, so it is
//! reliable on a loaded 2-core VM. Also: a gateway that does not rewrite must be caught,
//! and the generator refuses the root network namespace.

mod common;

use std::{
    process::{Command, Output},
    time::{Duration, Instant},
};

use serde_json::Value;

use common::topo::{sipnat_bin, Topo, CAR_IP, EXT_IP, UA_IP};

/// Runs `sipnat loadtest` in the UA namespace, receiving on car0 in the carrier namespace.
fn loadtest(t: &Topo, args: &str) -> Output {
    t.loadtest([UA_IP, CAR_IP, EXT_IP], args)
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64()
        .unwrap_or_else(|| panic!("field `{k}` missing or not a number in {v:#}"))
}

/// The documented JSON fields are there, with the documented types.
fn check_documented_fields(r: &Value) {
    for k in [
        "sent",
        "received",
        "verified",
        "correct",
        "incorrect",
        "foreign",
        "loss",
        "flows",
        "cores",
        "frame_bytes",
        "templates",
    ] {
        common::count(r, k);
    }
    for k in ["offered_pps", "delivered_pps", "loss_pct", "duration_s"] {
        f(r, k);
    }
    for k in ["count", "min", "p50", "p90", "p99", "p999", "max"] {
        common::count(&r["latency_ns"], k);
    }
    let reasons = r["incorrect_by_reason"]
        .as_object()
        .expect("incorrect_by_reason object");
    for k in [
        "ip_checksum",
        "udp_checksum",
        "wrong_source",
        "content_length",
        "private_address_left",
        "external_address_missing",
        "malformed",
    ] {
        assert!(reasons.contains_key(k), "reason {k} missing: {reasons:?}");
    }
    assert!(r["first_incorrect"].is_array());
    assert_eq!(r["tool"], "sipnat-loadtest");
}

#[test]
fn loadtest_through_sipnat_verifies_every_received_packet() {
    let (_s, t, sipnat) = crate::gateway_or_skip!("lt", "", "");
    let report_dir = t.dir.path("report");
    let out = loadtest(
        &t,
        &format!(
            "--rate 20000 --duration 2 --flows 64 --template invite --report {}",
            report_dir.display()
        ),
    );
    let r = common::json_stdout(&out);
    check_documented_fields(&r);
    let (sent, received, verified) = (
        common::count(&r, "sent"),
        common::count(&r, "received"),
        common::count(&r, "verified"),
    );
    eprintln!(
        "loadtest: sent {sent}, received {received}, verified {verified}, offered {:.0} pps, \
         delivered {:.0} pps, p50 {} ns, p99 {} ns",
        f(&r, "offered_pps"),
        f(&r, "delivered_pps"),
        common::count(&r["latency_ns"], "p50"),
        common::count(&r["latency_ns"], "p99")
    );
    // Loose bounds: the VM is shared; these catch a generator or a gateway that stalls.
    assert!(
        sent >= 20_000,
        "20 kpps for 2 s should send ≥ 20000, sent {sent}"
    );
    assert!(
        verified > 0,
        "nothing delivered:\n{r:#}\n{}",
        sipnat.log_text()
    );
    assert_eq!(
        common::count(&r, "incorrect"),
        0,
        "incorrect packets through sipnat:\n{:#}",
        r["first_incorrect"]
    );
    assert_eq!(verified, received, "every received packet is verified");
    assert_eq!(common::count(&r, "correct"), verified);
    assert!(
        verified * 2 >= sent,
        "more than half lost at 20 kpps: {verified} of {sent}"
    );
    assert_eq!(common::count(&r["latency_ns"], "count"), verified);
    assert!(common::count(&r["latency_ns"], "p50") > 0);
    assert_eq!(out.status.code(), Some(0));
    // sipnat rewrote them (the receiver would have flagged unrewritten ones anyway).
    let rewritten = sipnat.counter("sip_rewritten");
    assert!(
        rewritten >= verified,
        "sipnat rewrote {rewritten} messages, the receiver verified {verified}"
    );
    check_report_dir(&report_dir, &r);
}

/// The same over IPv6 (inside fd00:88::/64, external 2001:db8:100::1): every received
/// packet verified (UDP checksum over the IPv6 pseudo-header, no fd00::/7 address left,
/// the external address in every field), and sipnat counted them as rewritten.
#[test]
fn loadtest_over_ipv6_verifies_every_received_packet() {
    use common::topo::{CAR_IP6, EXT_IP6, UA_IP6};
    let (_s, t) = crate::topo_or_skip!("lt6");
    let cfg = t.dual_stack_config();
    let sipnat = t.start_sipnat(&cfg);
    for template in ["invite", "register", "200ok"] {
        let before = sipnat.counter("sip_rewritten");
        let out = t.loadtest(
            [UA_IP6, CAR_IP6, EXT_IP6],
            &format!("--rate 5000 --count 5000 --flows 64 --template {template}"),
        );
        let r = common::json_stdout(&out);
        let (sent, received, verified) = (
            common::count(&r, "sent"),
            common::count(&r, "received"),
            common::count(&r, "verified"),
        );
        eprintln!(
            "loadtest over IPv6, {template}: sent {sent}, received {received}, verified {verified}"
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{template}: {r:#}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(sent, 5000, "{template}");
        assert_eq!(
            common::count(&r, "incorrect"),
            0,
            "{template}: incorrect packets through sipnat over IPv6:\n{:#}",
            r["first_incorrect"]
        );
        assert_eq!(
            verified, received,
            "{template}: every received packet is verified"
        );
        assert_eq!(common::count(&r, "foreign"), 0, "{template}: {r:#}");
        assert!(
            verified * 2 >= sent,
            "{template}: more than half lost at 5 kpps: {verified} of {sent}\n{}",
            sipnat.log_text()
        );
        let rewritten = sipnat.counter("sip_rewritten") - before;
        assert!(
            rewritten >= verified,
            "{template}: sipnat rewrote {rewritten}, the receiver verified {verified}"
        );
    }
}

/// `--report DIR`: report.json is the printed report plus per-second samples that add up
/// to it, report.svg plots them.
fn check_report_dir(dir: &std::path::Path, printed: &Value) {
    let text = std::fs::read_to_string(dir.join("report.json")).expect("report.json");
    let file: Value = serde_json::from_str(&text).expect("report.json parses");
    for k in ["sent", "verified", "correct", "incorrect", "received"] {
        assert_eq!(file[k], printed[k], "report.json {k}");
    }
    let per_second = file["per_second"].as_array().expect("per_second samples");
    // 2 s of sending: whole seconds 1 and 2, then the end of the run (drain included).
    assert!(per_second.len() >= 2, "{per_second:#?}");
    let last = per_second.last().unwrap();
    assert_eq!(
        last["sent"], file["sent"],
        "the last sample is the whole run"
    );
    assert_eq!(last["verified"], file["verified"]);
    let mut t_prev = 0.0;
    for s in per_second {
        let t = s["t_s"].as_f64().expect("t_s");
        assert!(t > t_prev, "samples in time order: {per_second:#?}");
        t_prev = t;
    }
    let first = &per_second[0];
    assert!(
        first["offered_pps"].as_f64().unwrap() > 10_000.0,
        "first second offered ~20 kpps: {first:#}"
    );
    let lat = &first["latency_ns"];
    assert!(
        lat["count"].as_u64().unwrap() > 0 && lat["p50"].as_u64().unwrap() > 0,
        "first second's latency: {first:#}"
    );
    let svg = std::fs::read_to_string(dir.join("report.svg")).expect("report.svg");
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(100)]);
    assert!(svg.trim_end().ends_with("</svg>"));
    for series in sipnat::loadtest::report::SVG_RATE_SERIES
        .iter()
        .chain(&sipnat::loadtest::report::SVG_LATENCY_SERIES)
    {
        assert!(
            svg.contains(&format!(">\n{series}\n</text>")),
            "series {series} not in the SVG"
        );
    }
    assert!(svg.matches("<polyline").count() >= 6, "six series drawn");
}

#[test]
fn loadtest_catches_a_gateway_that_does_not_rewrite() {
    let (_s, t, sipnat) = crate::gateway_or_skip!("ltneg", "", "");
    // Steering off: the kernel forwards SIP unrewritten (no NAT configured either).
    sipnat.ctl(&["disable"]).expect("sipnat disable");
    let out = loadtest(&t, "--rate 5000 --duration 1 --flows 8 --samples 2");
    let r = common::json_stdout(&out);
    check_documented_fields(&r);
    let verified = common::count(&r, "verified");
    assert!(verified > 0, "the kernel forwarded nothing:\n{r:#}");
    assert_eq!(
        common::count(&r, "incorrect"),
        verified,
        "every unrewritten packet is incorrect"
    );
    let reasons = &r["incorrect_by_reason"];
    assert_eq!(common::count(reasons, "wrong_source"), verified);
    assert_eq!(common::count(reasons, "private_address_left"), verified);
    assert_eq!(common::count(reasons, "external_address_missing"), verified);
    assert_eq!(
        common::count(reasons, "udp_checksum"),
        0,
        "the kernel forwards valid checksums"
    );
    let first = &r["first_incorrect"];
    assert_eq!(first.as_array().map(Vec::len), Some(2));
    assert_eq!(first[0]["ip_src"], UA_IP);
    assert!(first[0]["message"]
        .as_str()
        .unwrap_or("")
        .starts_with("INVITE "));
    assert_eq!(out.status.code(), Some(3), "exit code 3: incorrect packets");
}

#[test]
fn loadtest_refuses_the_root_network_namespace() {
    crate::privileged_or_skip!();
    let lo_tx = || -> u64 {
        std::fs::read_to_string("/sys/class/net/lo/statistics/tx_packets")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    let before = lo_tx();
    let start = Instant::now();
    let out = Command::new(sipnat_bin())
        .args(["loadtest", "--interface", "lo", "--src-ip", "127.0.0.1"])
        .args(["--dst-ip", "127.0.0.1", "--dst-mac", "00:00:00:00:00:00"])
        .args(["--max", "--count", "1000000", "--json"])
        .output()
        .unwrap();
    let took = start.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(
        err.contains("root network namespace") && err.contains("--i-own-this-link"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "no report: nothing ran");
    assert!(took < Duration::from_secs(5), "refused at once ({took:?})");
    // A million packets were asked for; lo saw at most the host's own background traffic.
    let sent = lo_tx().saturating_sub(before);
    assert!(sent < 10_000, "{sent} packets went out on lo");
}
