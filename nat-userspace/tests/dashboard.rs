//! The Grafana dashboard (`packaging/grafana/sipnat.json`): valid JSON of the shape Grafana
//! imports (panels with targets, a Prometheus data-source variable every query uses), every
//! PromQL expression names only series the daemon exports, and every drop counter the
//! daemon has is on it.

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, Ipv6Addr},
    time::SystemTime,
};

use serde_json::Value;
use sipnat::{
    control::{
        daemon::ExternalState,
        metrics::{render_report, Extra},
        report::{Report, WorkerReport, XskStats},
    },
    datapath::stats::Counter,
    nat::ExternalAddrs,
};

fn dashboard() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/grafana/sipnat.json"
    );
    let text = std::fs::read_to_string(path).expect("packaging/grafana/sipnat.json");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not valid JSON: {e}"))
}

/// One reading with a worker, both interfaces and both address families, so that every
/// family has a sample.
fn exposition() -> String {
    let xsk = Some(XskStats::default());
    let report = Report {
        uptime_s: 12.0,
        enabled: true,
        xdp: vec![
            (
                "inside",
                "eth1".into(),
                nat_common::stat::NAMES.iter().map(|n| (*n, 1)).collect(),
            ),
            (
                "outside",
                "eth0".into(),
                nat_common::stat::NAMES.iter().map(|n| (*n, 1)).collect(),
            ),
        ],
        workers: vec![WorkerReport {
            queue: 0,
            counters: Counter::ALL.iter().map(|c| (c.name(), 1)).collect(),
            xsk_inside: xsk,
            xsk_outside: xsk,
            reasm_memory: 0,
            reasm_limit: 1,
            reasm_in_progress: 0,
            free_frames: 1,
        }],
        totals: Counter::ALL.iter().map(|c| (c.name(), 1)).collect(),
        flows_live: 1,
        bindings: Default::default(),
        external_rejected: 1,
        nexthops: 1,
        external: ExternalState {
            source: "static".into(),
            addrs: ExternalAddrs {
                v4: Some(Ipv4Addr::new(203, 0, 113, 10)),
                v6: Some(Ipv6Addr::LOCALHOST),
            },
            updated: Some(SystemTime::now()),
            stale: false,
        },
    };
    render_report(
        report,
        Extra {
            worker_cpu: vec![(0, Some(0), 1.5)],
            flow_capacity: 65536,
        },
    )
}

/// The series names of an exposition (`name{...} value` or `name value` lines).
fn exported() -> BTreeSet<String> {
    exposition()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            l.split(['{', ' '])
                .next()
                .expect("a sample line has a name")
                .to_string()
        })
        .collect()
}

/// Every panel, rows' nested panels included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("top-level panels array") {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

/// Every PromQL expression with its panel's title.
fn exprs(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                p["title"].as_str().unwrap_or("?").to_string(),
                t["expr"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    out
}

/// The `sipnat_…` names in an expression.
fn metric_names(expr: &str) -> Vec<String> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(at) = expr[i..].find("sipnat_") {
        let start = i + at;
        let boundary =
            start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        if boundary {
            out.push(expr[start..end].to_string());
        }
        i = end;
    }
    out
}

#[test]
fn dashboard_has_the_structure_grafana_imports() {
    let d = dashboard();
    assert_eq!(d["title"], "sipnat");
    assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty()));
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 30));
    // A data-source variable of type prometheus: the import asks for the data source.
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let ds = vars
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a datasource template variable");
    assert_eq!(ds["query"], "prometheus");
    let ds_ref = format!("${{{}}}", ds["name"].as_str().unwrap());
    let names: Vec<&str> = vars.iter().filter_map(|v| v["name"].as_str()).collect();
    let mut ids = BTreeSet::new();
    let mut queries = 0;
    for p in panels(&d) {
        let title = p["title"].as_str().expect("every panel has a title");
        let id = p["id"].as_u64().expect("every panel has a numeric id");
        assert!(ids.insert(id), "panel id {id} used twice ({title})");
        let g = &p["gridPos"];
        for k in ["h", "w", "x", "y"] {
            assert!(g[k].as_u64().is_some(), "{title}: gridPos.{k}");
        }
        assert!(
            g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
            "{title}: wider than the grid"
        );
        let kind = p["type"].as_str().expect("panel type");
        if kind == "row" {
            continue;
        }
        assert!(
            ["timeseries", "stat", "gauge", "table", "bargauge"].contains(&kind),
            "{title}: unexpected panel type {kind}"
        );
        assert_eq!(p["datasource"]["uid"], ds_ref.as_str(), "{title}");
        let targets = p["targets"].as_array().expect("a panel has targets");
        assert!(!targets.is_empty(), "{title}: no targets");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert_eq!(t["datasource"]["type"], "prometheus", "{title}");
            assert_eq!(t["datasource"]["uid"], ds_ref.as_str(), "{title}");
            let r = t["refId"].as_str().expect("refId");
            assert!(refs.insert(r), "{title}: refId {r} twice");
            let e = t["expr"].as_str().expect("expr");
            assert!(!e.trim().is_empty(), "{title}: empty expr");
            // Balanced brackets and only variables the dashboard defines.
            for (open, close) in [('(', ')'), ('{', '}'), ('[', ']')] {
                assert_eq!(
                    e.matches(open).count(),
                    e.matches(close).count(),
                    "{title}: unbalanced {open}{close} in {e}"
                );
            }
            for var in e.split('$').skip(1) {
                let v: String = var
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    names.contains(&v.as_str()) || v == "__rate_interval",
                    "{title}: ${v} is not a dashboard variable"
                );
            }
            queries += 1;
        }
    }
    assert!(queries >= 20, "{queries} queries");
}

#[test]
fn every_dashboard_expression_names_an_exported_metric() {
    let exported = exported();
    // The exposition itself: counters carry `_total`, and the families the dashboard is
    // about are there.
    for s in [
        "sipnat_worker_rx_inside_total",
        "sipnat_xdp_verdicts_total",
        "sipnat_queue_cpu_seconds_total",
        "sipnat_flow_table_capacity",
        "sipnat_external_address_age_seconds",
    ] {
        assert!(exported.contains(s), "{s} not exported: {exported:?}");
    }
    let d = dashboard();
    let mut unknown = Vec::new();
    let mut used = BTreeSet::new();
    for (title, e) in exprs(&d) {
        let names = metric_names(&e);
        assert!(!names.is_empty(), "{title}: no sipnat metric in {e}");
        for n in names {
            if !exported.contains(&n) {
                unknown.push(format!("{title}: {n}"));
            }
            used.insert(n);
        }
    }
    assert!(
        unknown.is_empty(),
        "not exported by the daemon: {unknown:#?}"
    );
    // The dashboard covers the areas it promises.
    for must in [
        "sipnat_worker_sip_rewritten_total",
        "sipnat_worker_rewrite_via_total",
        "sipnat_queue_cpu_seconds_total",
        "sipnat_flows_live",
        "sipnat_flow_table_capacity",
        "sipnat_external_address_info",
        "sipnat_external_address_age_seconds",
        "sipnat_xdp_verdicts_total",
    ] {
        assert!(used.contains(must), "dashboard lacks {must}");
    }
    // Every rewrite field has its series.
    for c in Counter::ALL
        .iter()
        .filter(|c| c.name().starts_with("rewrite_"))
    {
        let s = format!("sipnat_worker_{}_total", c.name());
        assert!(used.contains(&s), "rewrites by field: {s} missing");
    }
}

#[test]
fn every_drop_counter_is_on_the_dashboard() {
    let d = dashboard();
    let all: String = exprs(&d)
        .into_iter()
        .map(|(_, e)| e)
        .collect::<Vec<_>>()
        .join("\n");
    let mut missing = Vec::new();
    // Worker counters that count a lost packet, fragment or datagram.
    for c in Counter::ALL {
        let help = c.help().to_ascii_lowercase();
        let drop =
            c.name().starts_with("drop_") || help.contains("dropped") || help.contains("evicted");
        if drop && !all.contains(&format!("sipnat_worker_{}_total", c.name())) {
            missing.push(format!("worker counter {}", c.name()));
        }
    }
    // XDP verdicts that drop.
    for v in nat_common::stat::NAMES
        .iter()
        .filter(|v| v.starts_with("drop"))
    {
        if !all.contains(&format!("verdict=\"{v}\"")) {
            missing.push(format!("XDP verdict {v}"));
        }
    }
    // The kernel's AF_XDP socket drops.
    for x in ["rx_dropped", "rx_ring_full"] {
        if !all.contains(&format!("sipnat_xsk_{x}_total")) {
            missing.push(format!("AF_XDP {x}"));
        }
    }
    assert!(
        missing.is_empty(),
        "drop counters not on the dashboard: {missing:#?}"
    );
}

#[test]
fn metric_names_are_found_in_promql() {
    assert_eq!(
        metric_names("sum by (q) (rate(sipnat_a_total{x=\"sipnat_no\"}[5m])) / sipnat_b"),
        ["sipnat_a_total", "sipnat_no", "sipnat_b"]
    );
    assert_eq!(metric_names("rate(xsipnat_a[1m])"), Vec::<String>::new());
}
