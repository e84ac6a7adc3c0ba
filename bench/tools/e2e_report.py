#!/usr/bin/env python3
"""e2e_report: the comparison table of `cargo xtask bench --e2e` from a matrix's runs.jsonl.

    e2e_report.py RUNS.jsonl [--sut sipnat] [--md OUT.md] [--json OUT.json] [--meta KEY=VALUE ...]

One row per (SUT, rate, flows): medians over the runs. Then the targets of issue 6 for the
SUT under test (default sipnat) against the anchors measured in the same matrix: gateway
CPU per delivered packet vs kernel NAT and nf_nat_sip, delivered pps at max, overload
(rows labelled overload-xF by run-matrix.sh --overload), Kamailio's sustained rate, and
correctness of every sampled packet. A target whose inputs are missing reads "n/a".
With `sipnat-l3` (sipnat with `[rewrite] enabled = false`: the same AF_XDP data path, NAPT
and IP translation, no SIP work) in the run, the SUT's cost per packet is split into the
data path's (sipnat-l3 next to kernel-nat) and the SIP work's (the SUT less sipnat-l3).
"""
import argparse, json, statistics, sys

ORDER = ["sipnat", "sipnat-l3", "kernel-fwd", "kernel-nat", "kernel-alg", "kamailio"]


def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def fmt(v, nd=0):
    if v is None:
        return "-"
    return "{:,.{}f}".format(v, nd)


def load(files):
    rows = []
    for fn in files:
        with open(fn) as f:
            rows += [json.loads(x) for x in f if x.strip().startswith("{")]
    return rows


def rate_of(r):
    lab = r.get("label") or ""
    if lab.startswith("overload"):
        return lab  # e.g. overload-x2
    return str(r["target_pps"])


def rate_key(t):
    if t == "max":
        return (0, 0)
    if t.startswith("overload"):
        return (1, 0)
    return (2, int(t))


def group(rows):
    g = {}
    for r in rows:
        g.setdefault((r["sut"], rate_of(r), r["flows"]), []).append(r)
    out = []
    for k in sorted(g, key=lambda k: (ORDER.index(k[0]) if k[0] in ORDER else 99, rate_key(k[1]), k[2])):
        rs = g[k]
        d = [r["delivered_pps"] for r in rs]
        ok = [r.get("sample", {}).get("correct") for r in rs]
        sampled = sum((r.get("sample", {}).get("sampled") or 0) for r in rs)
        acc = med([r["accepted_pps"] for r in rs])
        gw_out = med([r.get("gw_out_pps") for r in rs])
        out.append({
            "sut": k[0], "rate": k[1], "flows": k[2], "runs": len(rs),
            "target_pps": rs[0]["target_pps"],
            "offered_pps": med([r["offered_pps"] for r in rs]),
            "accepted_pps": acc,
            "delivered_pps": med(d), "delivered_min": min(d), "delivered_max": max(d),
            "gw_ns_per_pkt": med([r["gw_ns_per_pkt"] for r in rs]),
            "gw_tasks_ns_per_pkt": med([r.get("gw_tasks_ns_per_pkt") for r in rs]),
            "gw_ns_per_pkt_min": min([r["gw_ns_per_pkt"] for r in rs if r["gw_ns_per_pkt"]] or [None], key=lambda x: x or 0),
            "gw_busy_pct": med([r["gw_cpu_busy_pct"] for r in rs]),
            "loss_pct": med([r["loss_pct"] for r in rs]),
            "lost_inside_gw_pps": max(0, acc - gw_out) if acc is not None and gw_out is not None else None,
            "correct": all(ok) and sampled > 0, "correct_runs": sum(1 for x in ok if x),
            "sampled": sampled,
            "tshark_bad": sum((r.get("sample_tshark_bad") or 0) for r in rs),
            "noisy_runs": sum(1 for r in rs if r.get("noisy")),
            "foreign_cpu_pct": med([r.get("foreign_cpu_pct") for r in rs]),
        })
    return out


def table(groups):
    lines = ["| SUT | rate | flows | runs | offered pps | delivered pps median [min-max] | gw ns/pkt | gw tasks ns/pkt | gw busy % "
             "| loss % | lost inside gw pps | correct (sampled pkts, tshark bad) | noisy runs |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for g in groups:
        corr = "%s %d/%d (%d, %d)" % ("yes" if g["correct"] else "NO", g["correct_runs"], g["runs"],
                                      g["sampled"], g["tshark_bad"])
        lines.append("| %s | %s | %d | %d | %s | %s [%s-%s] | %s | %s | %s | %s | %s | %s | %d |" % (
            g["sut"], g["rate"], g["flows"], g["runs"], fmt(g["offered_pps"]), fmt(g["delivered_pps"]),
            fmt(g["delivered_min"]), fmt(g["delivered_max"]), fmt(g["gw_ns_per_pkt"]),
            fmt(g["gw_tasks_ns_per_pkt"]), fmt(g["gw_busy_pct"]),
            fmt(g["loss_pct"], 1), fmt(g["lost_inside_gw_pps"]), corr, g["noisy_runs"]))
    return lines


def targets(groups, sut):
    by = {(g["sut"], g["rate"], g["flows"]): g for g in groups}
    res = []

    def add(name, value, limit, ok, note=""):
        res.append({"target": name, "value": value, "limit": limit,
                    "status": "n/a" if ok is None else ("PASS" if ok else "MISS"), "note": note})

    flows = sorted({g["flows"] for g in groups if g["sut"] == sut})
    for f in flows:
        s = by.get((sut, "max", f))
        nat = by.get(("kernel-nat", "max", f))
        alg = by.get(("kernel-alg", "max", f))
        sv = s and s["gw_ns_per_pkt"]
        if nat and sv and nat["gw_ns_per_pkt"]:
            add("gw ns/pkt at max <= kernel-nat's, %d flows" % f, sv, nat["gw_ns_per_pkt"],
                sv <= nat["gw_ns_per_pkt"], "ratio %.2f" % (sv / nat["gw_ns_per_pkt"]))
        else:
            add("gw ns/pkt at max <= kernel-nat's, %d flows" % f, sv, None, None)
        if alg and sv and alg["gw_ns_per_pkt"]:
            add("gw ns/pkt at max <= 1/10 of nf_nat_sip's, %d flows" % f, sv, alg["gw_ns_per_pkt"] / 10,
                sv <= alg["gw_ns_per_pkt"] / 10, "ratio %.3f" % (sv / alg["gw_ns_per_pkt"]))
        else:
            add("gw ns/pkt at max <= 1/10 of nf_nat_sip's, %d flows" % f, sv, None, None)
        sd = s and s["delivered_pps"]
        if nat and sd is not None:
            add("delivered pps at max >= kernel-nat's, %d flows" % f, sd, nat["delivered_pps"],
                sd >= nat["delivered_pps"], "ratio %.2f" % (sd / max(nat["delivered_pps"], 1)))
        else:
            add("delivered pps at max >= kernel-nat's, %d flows" % f, sd, None, None)
        if alg and sd is not None:
            add("delivered pps at max >= 8x nf_nat_sip's, %d flows" % f, sd, 8 * alg["delivered_pps"],
                sd >= 8 * alg["delivered_pps"], "ratio %.1f" % (sd / max(alg["delivered_pps"], 1)))
        # same fixed rate: ns/pkt next to kernel-nat (informative: includes wakeup cost)
        for g in groups:
            if g["sut"] == sut and g["flows"] == f and g["rate"] not in ("max",) and not g["rate"].startswith("overload"):
                n = by.get(("kernel-nat", g["rate"], f))
                if n and g["gw_ns_per_pkt"] and n["gw_ns_per_pkt"]:
                    add("gw ns/pkt at %s pps <= kernel-nat's, %d flows" % (g["rate"], f), g["gw_ns_per_pkt"],
                        n["gw_ns_per_pkt"], g["gw_ns_per_pkt"] <= n["gw_ns_per_pkt"],
                        "ratio %.2f" % (g["gw_ns_per_pkt"] / n["gw_ns_per_pkt"]))
        over = [g for g in groups if g["sut"] == sut and g["flows"] == f and g["rate"].startswith("overload")]
        for o in over:
            cap = s and s["delivered_pps"]
            if cap:
                factor = float(o["rate"].split("-x")[-1])
                reached = (o["accepted_pps"] or 0) / cap
                add("%s: delivered >= 90%% of capacity, %d flows" % (o["rate"], f), o["delivered_pps"], 0.9 * cap,
                    o["delivered_pps"] >= 0.9 * cap,
                    "capacity %s pps (max-rate median); offered %s, accepted %s pps = %.2fx capacity%s" % (
                        fmt(cap), fmt(o["offered_pps"]), fmt(o["accepted_pps"]), reached,
                        "" if reached >= factor * 0.95 else " (generator could not reach %gx)" % factor))
    kam = [g for g in groups if g["sut"] == "kamailio" and g["rate"] not in ("max",) and (g["loss_pct"] or 0) < 1.0]
    cap = max([by[(sut, "max", f)]["delivered_pps"] for f in flows if (sut, "max", f) in by] or [0])
    if kam and cap:
        k = max(g["delivered_pps"] for g in kam)
        add(">= 10x Kamailio's sustained rate", cap, 10 * k, cap >= 10 * k,
            "Kamailio sustained %s pps (best fixed rate with < 1 %% loss)" % fmt(k))
    else:
        add(">= 10x Kamailio's sustained rate", cap or None, None, None)
    mine = [g for g in groups if g["sut"] == sut]
    if mine:
        bad = [g for g in mine if not g["correct"] or g["tshark_bad"]]
        add("every sampled packet correct (sipcheck + tshark)", sum(g["sampled"] for g in mine), None, not bad,
            "rows failing: " + ", ".join("%s/%d" % (g["rate"], g["flows"]) for g in bad) if bad else "")
    return res


def split(groups, sut):
    """The SUT's gateway CPU per packet at max split into the data path (sipnat-l3) and the
    SIP work (the difference), each next to kernel-nat's; [] without sipnat-l3 rows. On
    `gw tasks ns/pkt` (the gateway's own tasks: a difference of two rows must not carry
    other load of the host)."""
    by = {(g["sut"], g["rate"], g["flows"]): g for g in groups}
    key = "gw_tasks_ns_per_pkt"
    rows = []
    for f in sorted({g["flows"] for g in groups if g["sut"] == sut}):
        s, l3, nat = (by.get((x, "max", f)) for x in (sut, "sipnat-l3", "kernel-nat"))
        if not (s and l3 and s[key] and l3[key]):
            continue
        n = nat and nat[key]
        ratio = lambda v: "%.2f" % (v / n) if n else "n/a"
        sip = s[key] - l3[key]
        rows.append("| %d | %s | %s | %s (%s) | %s (%s) | %s |" % (
            f, fmt(n), fmt(s[key]), fmt(l3[key]), ratio(l3[key]), fmt(sip), ratio(sip), ratio(s[key])))
    if not rows:
        return []
    return ["", "### Where %s's cost per packet goes (max rate, gw tasks ns/pkt)" % sut, "",
            "sipnat-l3 is sipnat with `[rewrite] enabled = false`: the same AF_XDP data path, NAPT and "
            "IP translation without the SIP work. Ratios are to kernel-nat's gw tasks ns/pkt in this run.", "",
            "| flows | kernel-nat | %s | data path: sipnat-l3 (ratio) | SIP work: %s - sipnat-l3 (ratio) | %s / kernel-nat |" % (sut, sut, sut),
            "|---:|---:|---:|---:|---:|---:|"] + rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--sut", default="sipnat")
    ap.add_argument("--md")
    ap.add_argument("--json")
    ap.add_argument("--meta", action="append", default=[], help="KEY=VALUE lines for the header")
    a = ap.parse_args()
    rows = load(a.files)
    if not rows:
        sys.exit("no runs in %s" % " ".join(a.files))
    groups = group(rows)
    tg = targets(groups, a.sut)
    meta = dict(m.split("=", 1) for m in a.meta if "=" in m)
    first, last = min(r["ts"] for r in rows), max(r["ts"] for r in rows)
    meta.setdefault("runs", str(len(rows)))
    meta.setdefault("measured", "%s .. %s" % (first, last))
    meta.setdefault("kernel", rows[0].get("kernel", "?"))
    meta.setdefault("steer", ",".join(sorted({r["steer"] for r in rows})))
    meta.setdefault("generator", ",".join(sorted({r["gen"] for r in rows})))
    meta.setdefault("noisy runs", "%d of %d" % (sum(1 for r in rows if r.get("noisy")), len(rows)))
    md = ["## End-to-end comparison (one matrix run)", ""]
    md += ["- %s: %s" % (k, v) for k, v in meta.items()]
    md += ["", "`gw ns/pkt` = non-idle time of the gateway CPU / packets delivered to kaout; "
           "`gw tasks ns/pkt` = run time of the gateway's own tasks only (kagw's NAPI threads + the SUT's "
           "processes, per-task schedstat) / delivered: not inflated by other load on the host. "
           "`rate` max = as fast as the generator goes; overload-xF = F x the SUT's max-rate delivered pps.", ""]
    md += table(groups)
    md += ["", "### Targets (%s vs the anchors of this run)" % a.sut, "",
           "| target | value | limit | status | note |", "|---|---:|---:|---|---|"]
    for t in tg:
        md.append("| %s | %s | %s | %s | %s |" % (t["target"], fmt(t["value"]), fmt(t["limit"]), t["status"], t["note"]))
    md += split(groups, a.sut)
    text = "\n".join(md) + "\n"
    print(text)
    if a.md:
        with open(a.md, "w") as f:
            f.write(text)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"meta": meta, "rows": groups, "targets": tg}, f, indent=1)


if __name__ == "__main__":
    main()
