#!/usr/bin/env bash
# run-napt.sh: the SIP call-setup rate with NAPT on vs off, i.e. the cost of the binding
# insert path. One topology (--steer napi), then ROUNDS interleaved rounds; in each round
# every variant is measured at every rate, sipnat brought up and down around each run (so
# each run starts with empty tables). Every INVITE is a new call of a new inside endpoint:
# FLOWS (default 60,000) distinct endpoints replayed at RATE INVITEs/s take FLOWS / RATE
# seconds (≥ 3 s) to come round again, longer than a binding lives with
# `flow_idle_timeout = 1` (at most 2 s on the seconds clock), so every INVITE makes a new
# binding (checked: the run's napt_allocated / napt_preserved / flow_inserted counters are
# in the table per INVITE delivered). Variants, all with the rule 10.88.0.0/16 and media
# NAT off (the NAPT path alone):
#   off       [nat] port_range = "" (NAPT off): one source port per endpoint (10.88.0.2,
#             ports 5060 + i), ports kept; each new call is a flow-table insert
#   on-kept   NAPT on, the same traffic: each new call a binding keeping its port
#             (napt_preserved: both binding tables + the flow table)
#   on-alloc  NAPT on, one inside host per endpoint (10.88.1.1, 10.88.1.2, ...), all from
#             port 5060: every call but the first collides on 5060 and allocates a port
#             of port_range (napt_allocated)
#   run-napt.sh --out DIR [--variants "off on-kept on-alloc"] [--rates "10000 20000"]
#               [--rounds 3] [--seconds 5] [--flows 60000] [-- extra load.sh args]
# Results: DIR/runs.jsonl (one JSON line per run, label VARIANT/round N), DIR/napt.md
# (the table), DIR/napt.json.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
# The whole bench is one measurement: it holds the shared measurement lock (load.sh takes
# it per run otherwise), so that another bench on this host neither measures at the same
# time nor takes the topology down between two of its runs.
if [[ -z ${KA_LOCK_HELD:-} ]]; then
  export KA_LOCK_HELD=1
  exec flock "$LOCK_FILE" "$0" "$@"
fi
OUT="" VARIANTS="off on-kept on-alloc" RATES="10000 20000" ROUNDS=3 SECS=5 FLOWS=60000
EXTRA=()
while (($#)); do
  case $1 in
    --out) OUT=$2; shift ;;
    --variants) VARIANTS=$2; shift ;;
    --rates) RATES=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --seconds) SECS=$2; shift ;;
    --flows) FLOWS=$2; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    *) die "unknown option $1" ;;
  esac
  shift
done
start_run

# The variant's sipnat config (sut-sipnat.sh's knobs) and load.sh arguments.
variant() {
  export KA_SIPNAT_MEDIA=false KA_SIPNAT_RULE=10.88.0.0/16
  export KA_SIPNAT_MEDIA_EXTRA='port_range = "60000-65535"'
  case $1 in
    off) export KA_SIPNAT_NAT_EXTRA=$'port_range = ""\nflow_idle_timeout = 1'; HOSTS=() ;;
    on-kept) export KA_SIPNAT_NAT_EXTRA=$'port_range = "1024-59999"\nflow_idle_timeout = 1'; HOSTS=() ;;
    on-alloc) export KA_SIPNAT_NAT_EXTRA=$'port_range = "1024-59999"\nflow_idle_timeout = 1'; HOSTS=(--hosts) ;;
    *) die "unknown variant $1 (off, on-kept, on-alloc)" ;;
  esac
}

"$BENCH_DIR/topo.sh" up --steer napi
for r in $(seq "$ROUNDS"); do
  for v in $VARIANTS; do
    variant "$v"
    for rate in $RATES; do
      CUR=sipnat; "$BENCH_DIR/sut-sipnat.sh" up
      # Warm-up (not measured): one call resolves the next hop, so the timed run starts
      # on the fast path (its one binding is at most one INVITE of the run's).
      "$BENCH_DIR/load.sh" --sut sipnat --pps 100 --seconds 1 --flows 1 --sample 0 --max-wait 0 \
        --label "warmup" --raw-dir "$OUT/raw" --json-out "$OUT/warmup.jsonl" >/dev/null 2>&1 || true
      "$BENCH_DIR/load.sh" --sut sipnat --pps "$rate" --seconds "$SECS" --flows "$FLOWS" "${HOSTS[@]}" \
        --label "$v/round$r" --raw-dir "$OUT/raw" --json-out "$OUT/runs.jsonl" "${EXTRA[@]}" \
        >/dev/null || log "run failed: $v $rate round $r"
      "$BENCH_DIR/sut-sipnat.sh" down; CUR=""
    done
  done
done
python3 - "$OUT" $VARIANTS <<'PY'
import json, statistics, sys, os
out, variants = sys.argv[1], sys.argv[2:]
runs = [json.loads(l) for l in open(os.path.join(out, "runs.jsonl")) if l.strip()]
res = {}
def per_call(r, key):
    n = int(r.get("sut_state", {}).get("total." + key, 0) or 0)
    return n / r["delivered"] if r["delivered"] else None
for v in variants:
    rates = sorted({r["target_pps"] for r in runs if r["label"].split("/")[0] == v})
    for rate in rates:
        rs = [r for r in runs if r["label"].split("/")[0] == v and r["target_pps"] == rate]
        med = lambda f: statistics.median([x for x in (f(r) for r in rs) if x is not None] or [0])
        res[(v, rate)] = {"variant": v, "rate": rate, "runs": len(rs),
            "offered": med(lambda r: r["offered_pps"]), "delivered": med(lambda r: r["delivered_pps"]),
            "loss_pct": med(lambda r: r["loss_pct"]), "gw_busy_pct": med(lambda r: r["gw_cpu_busy_pct"]),
            "ns_per_call": med(lambda r: r["gw_ns_per_pkt"]), "tasks_ns_per_call": med(lambda r: r["gw_tasks_ns_per_pkt"]),
            "allocated": med(lambda r: per_call(r, "napt_allocated")), "preserved": med(lambda r: per_call(r, "napt_preserved")),
            "flow_inserted": med(lambda r: per_call(r, "flow_inserted")),
            "exhausted": max(int(r.get("sut_state", {}).get("total.drop_nat_ports_exhausted", 0) or 0) for r in rs),
            "correct": all(r.get("sample", {}).get("correct") for r in rs),
            "noisy": sum(1 for r in rs if r.get("noisy")),
            "delivered_all": [r["delivered_pps"] for r in rs], "ns_all": [r["gw_ns_per_pkt"] for r in rs],
            "tasks_ns_all": [r["gw_tasks_ns_per_pkt"] for r in rs], "info": rs[0]["sut_info"]}
lines = ["| variant | offered INVITE/s | runs | delivered INVITE/s | loss % | gateway CPU busy | gateway CPU ns/call | gateway tasks ns/call | vs off: ns/call (busy, tasks) | per delivered INVITE: napt_allocated, napt_preserved, flow_inserted | ports exhausted | sample correct | noisy runs |",
         "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---|---:|"]
ratio = lambda a, b: "%.2f×" % (a / b) if a and b else "-"
for (v, rate), x in res.items():
    base = res.get(("off", rate))
    vs = "%s, %s" % (ratio(x["ns_per_call"], base["ns_per_call"]), ratio(x["tasks_ns_per_call"], base["tasks_ns_per_call"])) if base else "-"
    lines.append("| %s | %s | %d | %s | %.2f | %.0f %% | %s | %s | %s | %.2f, %.2f, %.2f | %d | %s | %d |" % (
        v, f'{x["offered"]:,.0f}', x["runs"], f'{x["delivered"]:,.0f}', x["loss_pct"], x["gw_busy_pct"],
        f'{x["ns_per_call"]:,.0f}', f'{x["tasks_ns_per_call"]:,.0f}', vs, x["allocated"], x["preserved"],
        x["flow_inserted"], x["exhausted"], "yes" if x["correct"] else "NO", x["noisy"]))
lines.append("")
for (v, rate), x in res.items():
    lines.append("- %s at %s/s: per round delivered INVITE/s %s, gateway CPU ns/call %s, tasks ns/call %s" % (
        v, rate, x["delivered_all"], x["ns_all"], x["tasks_ns_all"]))
lines.append("- sipnat: %s" % next(iter(res.values()))["info"] if res else "- no runs")
txt = "\n".join(lines) + "\n"
open(os.path.join(out, "napt.md"), "w").write(txt)
json.dump(list(res.values()), open(os.path.join(out, "napt.json"), "w"), indent=1)
print(txt)
PY
