#!/usr/bin/env bash
# run-rtp.sh: the RTP media NAT comparison. One topology (--steer napi), then ROUNDS
# interleaved rounds; in each round every SUT is brought up, measured with one timed
# max-rate run of RTP (214-byte IP packets, FLOWS flows, kagen) and brought down again, so
# that slow drifts of the host hit all SUTs alike. Medians over the rounds per SUT.
#   run-rtp.sh --out DIR [--suts "sipnat-media kernel-masq"] [--gens kagen] [--rounds 3]
#              [--seconds 5] [--flows 4096] [--bytes 186] [--sink xdp] [-- extra load.sh args]
# --gens "xdpgen kagen": every system is measured with each generator in every round
# (xdpgen: kaxgen, XDP frames at the gateway's veth, as from a NIC driver, faster than the
# gateway core can take them, gen-xdpgen.sh; kagen: AF_PACKET frames, skbs at the
# gateway's veth; xdpfwd: kagen's frames redirected by XDP into the generator's veth,
# XDP frames too but at kagen's rate, gen-xdpfwd.sh). Holds the measurement lock for the
# whole run (lock_run in lib.sh). --sink (load.sh's): xdp (default: kaxsink counts and drops
# at XDP on ka-out0, so receiving costs the shared generator + sink core little and the
# generator can offer more), ingress (nft's ingress counter, an skb per packet).
# Results: DIR/runs.jsonl (one JSON line per run), DIR/rtp.md (the table), DIR/rtp.json.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
lock_run "$@"
OUT="" SUTS="sipnat-media kernel-masq" GENS=kagen ROUNDS=3 SECS=5 FLOWS=4096 BYTES=186 SINK=xdp
EXTRA=()
while (($#)); do
  case $1 in
    --out) OUT=$2; shift ;;
    --suts) SUTS=$2; shift ;;
    --gens) GENS=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --seconds) SECS=$2; shift ;;
    --flows) FLOWS=$2; shift ;;
    --bytes) BYTES=$2; shift ;;
    --sink) SINK=$2; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    *) die "unknown option $1" ;;
  esac
  shift
done
start_run

"$BENCH_DIR/topo.sh" up --steer napi
for r in $(seq "$ROUNDS"); do
  for s in $SUTS; do
    hook=$(sut_script "$s")
    CUR=$s; "$hook" up
    for g in $GENS; do
      "$BENCH_DIR/load.sh" --sut "$s" --pps-max --seconds "$SECS" --flows "$FLOWS" --rtp "$BYTES" \
        --gen "$g" --sink "$SINK" --label "round$r" --raw-dir "$OUT/raw" --json-out "$OUT/runs.jsonl" "${EXTRA[@]}" \
        >/dev/null || log "run failed: $s $g round $r"
    done
    "$hook" state > "$OUT/state-$s-round$r.txt" 2>&1 || true
    "$hook" down; CUR=""
  done
done
python3 - "$OUT" "$GENS" $SUTS <<'PY'
import json, statistics, sys, os
out, gens, suts = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
runs = [json.loads(l) for l in open(os.path.join(out, "runs.jsonl")) if l.strip()]
rows, res = [], {}
for g in gens:
  for s in suts:
    rs = [r for r in runs if r["sut"] == s and r.get("gen", "kagen") == g]
    if not rs:
        continue
    med = lambda k: statistics.median(r[k] for r in rs if r.get(k) is not None)
    res[(s, g)] = {"sut": s, "gen": g, "runs": len(rs), "offered_pps": med("offered_pps"), "delivered_pps": med("delivered_pps"),
              "gw_cpu_busy_pct": med("gw_cpu_busy_pct"), "gw_ns_per_pkt": med("gw_ns_per_pkt"),
              "gw_tasks_ns_per_pkt": med("gw_tasks_ns_per_pkt"), "foreign_cpu_pct": med("foreign_cpu_pct"),
              "gw_out_pps": med("gw_out_pps"), "gw_tasks_ns_per_out_pkt": med("gw_tasks_ns_per_out_pkt"),
              "loss_pct": med("loss_pct"),
              "correct": all(r.get("sample", {}).get("correct") for r in rs),
              "noisy": sum(1 for r in rs if r.get("noisy")),
              "delivered_all": [r["delivered_pps"] for r in rs],
              "ns_all": [r["gw_ns_per_pkt"] for r in rs],
              "tasks_ns_all": [r["gw_tasks_ns_per_pkt"] for r in rs],
              "tasks_ns_out_all": [r.get("gw_tasks_ns_per_out_pkt") for r in rs],
              "ip_bytes": rs[0]["ip_bytes"], "flows": rs[0]["flows"], "info": rs[0]["sut_info"]}
lines = ["| generator | system | rounds | offered pps | delivered pps | gateway sent on pps | gateway CPU busy | gateway CPU ns/pkt | gateway tasks ns/pkt | gateway tasks ns/sent-on pkt | vs kernel: pps | vs kernel: CPU/pkt (busy, tasks, tasks/sent-on) | sample correct | noisy runs (other load) |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
ratio = lambda a, b: "%.2f×" % (a / b) if a and b else "-"
for (s, g), v in res.items():
    base = res.get(("kernel-masq", g))
    vs_p = ratio(v["delivered_pps"], base["delivered_pps"]) if base else "-"
    vs_n = "%s, %s, %s" % (ratio(v["gw_ns_per_pkt"], base["gw_ns_per_pkt"]),
                           ratio(v["gw_tasks_ns_per_pkt"], base["gw_tasks_ns_per_pkt"]),
                           ratio(v["gw_tasks_ns_per_out_pkt"], base["gw_tasks_ns_per_out_pkt"])) if base else "-"
    lines.append("| %s | %s | %d | %s | %s | %s | %.0f %% | %s | %s | %s | %s | %s | %s | %d (median %.0f %% other CPU) |" % (
        g, s, v["runs"], f'{v["offered_pps"]:,.0f}', f'{v["delivered_pps"]:,.0f}', f'{v["gw_out_pps"]:,.0f}',
        v["gw_cpu_busy_pct"], f'{v["gw_ns_per_pkt"]:,.0f}', f'{v["gw_tasks_ns_per_pkt"]:,.0f}',
        f'{v["gw_tasks_ns_per_out_pkt"]:,.0f}', vs_p, vs_n,
        "yes" if v["correct"] else "NO", v["noisy"], v["foreign_cpu_pct"]))
lines.append("")
for (s, g), v in res.items():
    lines.append("- %s, %s: %s; per round: delivered pps %s, gateway CPU ns/pkt %s, gateway tasks ns/pkt %s, per sent-on pkt %s" % (
        s, g, v["info"], v["delivered_all"], v["ns_all"], v["tasks_ns_all"], v["tasks_ns_out_all"]))
txt = "\n".join(lines) + "\n"
open(os.path.join(out, "rtp.md"), "w").write(txt)
json.dump(list(res.values()), open(os.path.join(out, "rtp.json"), "w"), indent=1)
print(txt)
PY
